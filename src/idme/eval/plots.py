"""Evaluation figures: DET curve with score histogram, and per-stage processing costs.

matplotlib is an optional dependency (the ``eval`` extra); it is imported inside each function, with
the non-interactive Agg backend, so importing this module costs nothing and works on headless machines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IdmeError
from .metrics import det_curve, eer, rates_at

__all__ = ["DET_TICKS_PCT", "plot_det", "plot_stage_costs"]

#: Tick positions of both DET axes, in percent (the usual NIST DET grid).
DET_TICKS_PCT: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 20, 40)
# Axis range of the DET plot, as probabilities: a little beyond the outer ticks.
_DET_LIMITS = (0.0005, 0.6)


def _pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or an IdmeError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise IdmeError("plots need matplotlib: pip install 'idme[eval]'") from None
    matplotlib.use("Agg")  # no display needed; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def _probit(p: np.ndarray) -> np.ndarray:
    """Normal deviate of probabilities, clipped to the axes' range: a rate of 0 (no error at all, as on
    test-other where EER = 0) is drawn on the axis edge instead of off the plot, which left it empty."""
    from scipy.special import ndtri

    eps = _DET_LIMITS[0]
    return ndtri(np.clip(p, eps, 1.0 - eps))


def _save(fig: Any, out_png: str | os.PathLike[str]) -> Path:
    out = Path(out_png)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    except OSError as exc:
        raise IdmeError(f"cannot write plot {out}: {exc.strerror or exc}") from None
    return out


def plot_det(
    tgt: np.ndarray,
    non: np.ndarray,
    out_png: str | os.PathLike[str],
    thresholds: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Path:
    """Writes a two-panel PNG: DET curve (left) and target / non-target score histograms (right).

    tgt, non: target / non-target scores (accept when ``score >= threshold``).
    thresholds: name -> threshold to mark (e.g. the shipped "me" and "named" thresholds); each is drawn
        as its operating point on the DET and as a vertical line on the histogram.
    The DET axes are normal deviates (probit) with ticks labelled in percent (DET_TICKS_PCT); the EER
    point is marked on the diagonal. Returns the path written.
    """
    plt = _pyplot()
    thresholds = dict(thresholds or {})
    tgt = np.asarray(tgt, dtype=np.float64).ravel()
    non = np.asarray(non, dtype=np.float64).ravel()
    far, frr, _ = det_curve(tgt, non)
    eer_rate, eer_thr = eer(tgt, non)

    fig, (ax_det, ax_hist) = plt.subplots(1, 2, figsize=(12, 5.5))
    try:
        ticks = np.asarray(DET_TICKS_PCT) / 100.0
        ax_det.plot(_probit(far), _probit(frr), color="C0", lw=1.8, label="DET")
        lim = _probit(np.asarray(_DET_LIMITS))
        ax_det.plot(lim, lim, color="0.7", lw=0.8, ls=":")  # FAR = FRR
        ax_det.plot(_probit(eer_rate), _probit(eer_rate), "o", color="C3", ms=7,
                    label=f"EER {100 * eer_rate:.2f}% (t={eer_thr:.3f})")
        markers = "sD^v<>p*h"
        for i, (name, thr) in enumerate(thresholds.items()):
            fa, fr = rates_at(tgt, non, thr)
            ax_det.plot(_probit(fa), _probit(fr), markers[i % len(markers)], color=f"C{(i + 4) % 10}", ms=7,
                        label=f"{name} t={thr:.3f}: FAR {100 * fa:.2f}%, FRR {100 * fr:.2f}%")
        ax_det.set_xlim(*lim)
        ax_det.set_ylim(*lim)
        ax_det.set_xticks(_probit(ticks))
        ax_det.set_yticks(_probit(ticks))
        labels = [f"{t:g}" for t in DET_TICKS_PCT]
        ax_det.set_xticklabels(labels)
        ax_det.set_yticklabels(labels)
        ax_det.set_xlabel("False acceptance rate (%)")
        ax_det.set_ylabel("False rejection rate (%)")
        edge = " (rates of 0 drawn on the axis edges)" if eer_rate == 0 else ""
        ax_det.set_title((title or f"DET ({tgt.size} target / {non.size} non-target trials)") + edge)
        ax_det.grid(True, color="0.85", lw=0.6)
        ax_det.set_aspect("equal")
        ax_det.legend(loc="upper right", fontsize=8)

        lo, hi = float(min(tgt.min(), non.min())), float(max(tgt.max(), non.max()))
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 60)
        # density=True: the two classes differ in size by ~10x in a full trial list.
        ax_hist.hist(non, bins=bins, density=True, alpha=0.55, color="C1", label=f"non-target ({non.size})")
        ax_hist.hist(tgt, bins=bins, density=True, alpha=0.55, color="C0", label=f"target ({tgt.size})")
        ax_hist.axvline(eer_thr, color="C3", ls="--", lw=1.2, label="EER threshold")
        for i, (name, thr) in enumerate(thresholds.items()):
            ax_hist.axvline(thr, color=f"C{(i + 4) % 10}", lw=1.4, label=name)
        ax_hist.set_xlabel("score (cosine similarity)")
        ax_hist.set_ylabel("density")
        ax_hist.set_title("Score distributions")
        ax_hist.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, out_png)
    finally:
        plt.close(fig)


def plot_stage_costs(
    stage_ms: Mapping[str, float | Sequence[float]],
    out_png: str | os.PathLike[str],
    title: str = "Processing cost per stage",
    unit: str = "ms",
) -> Path:
    """Writes a horizontal bar chart of per-stage costs, in the mapping's order.

    stage_ms: stage name -> cost in ``unit`` (one number), or a sequence of measurements; for a
        sequence the bar is the median and a whisker reaches the 95th percentile.
    Returns the path written.
    """
    if not stage_ms:
        raise IdmeError("no stage costs to plot")
    plt = _pyplot()
    names = list(stage_ms)
    med, p95 = [], []
    for name in names:
        vals = np.atleast_1d(np.asarray(stage_ms[name], dtype=np.float64))
        if vals.size == 0 or not np.all(np.isfinite(vals)):
            raise IdmeError(f"stage {name!r} has no finite cost values")
        med.append(float(np.median(vals)))
        p95.append(float(np.percentile(vals, 95)))
    med_a, p95_a = np.asarray(med), np.asarray(p95)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    try:
        y = np.arange(len(names))
        ax.barh(y, med_a, color="C0", xerr=[np.zeros_like(med_a), p95_a - med_a], capsize=3,
                error_kw={"ecolor": "0.4", "lw": 1})
        for yi, m, top in zip(y, med_a, p95_a):
            ax.text(max(m, top), yi, f"  {m:.3g}", va="center", fontsize=8)  # right of the whisker
        ax.set_yticks(y)
        ax.set_yticklabels(names)
        ax.invert_yaxis()  # first stage on top, in pipeline order
        ax.set_xlabel(f"{unit} (bar: median, whisker: 95th percentile)")
        ax.set_title(title)
        ax.grid(True, axis="x", color="0.85", lw=0.6)
        ax.set_axisbelow(True)
        ax.set_xlim(0, 1.15 * float(max(p95_a.max(), med_a.max(), 1e-9)))  # room for the value labels
        fig.tight_layout()
        return _save(fig, out_png)
    finally:
        plt.close(fig)
