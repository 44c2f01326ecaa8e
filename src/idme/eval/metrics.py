"""Speaker-verification metrics from target and non-target score arrays.

Convention everywhere in this module: a trial is **accepted when ``score >= threshold``**.

- FAR(t) = #{non-target scores >= t} / #non-target   (false acceptance rate, "false alarm")
- FRR(t) = #{target scores < t} / #target            (false rejection rate, "miss")

The operating points are obtained by sweeping ``t`` over every distinct score, ascending, followed by
``t = +inf`` (reject everything). The first point accepts everything (FAR = 1, FRR = 0), the last rejects
everything (FAR = 0, FRR = 1). Sorting makes every function O(n log n); tied target and non-target
scores move together in one step, so results do not depend on the order of tied trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import IdmeError

__all__ = [
    "VerificationMetrics",
    "det_curve",
    "eer",
    "min_dcf",
    "rates_at",
    "summarize",
    "threshold_at_far",
]


def _scores(x: np.ndarray, what: str) -> np.ndarray:
    """Validates one score array: 1-D, non-empty, finite; returns it as float64."""
    arr = np.asarray(x, dtype=np.float64).ravel()
    if arr.size == 0:
        raise IdmeError(f"no {what} scores: every metric needs at least one {what} trial")
    if not np.all(np.isfinite(arr)):
        raise IdmeError(f"{what} scores contain NaN or infinite values; check the embeddings that produced them")
    return arr


def det_curve(tgt: np.ndarray, non: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All operating points of the score sweep.

    tgt, non: target / non-target scores, any shape (flattened), finite.
    Returns ``(far, frr, thresholds)``, three float64 arrays of shape (m + 1,) where m is the number of
    distinct scores: ``thresholds`` ascending (the distinct scores, then ``+inf``), ``far`` non-increasing
    from 1 to 0, ``frr`` non-decreasing from 0 to 1; point i is what accepting ``score >= thresholds[i]``
    gives.
    """
    t = np.sort(_scores(tgt, "target"))
    n = np.sort(_scores(non, "non-target"))
    thresholds = np.append(np.unique(np.concatenate([t, n])), np.inf)
    # searchsorted(side="left") counts scores strictly below each threshold.
    frr = np.searchsorted(t, thresholds, side="left") / t.size
    far = (n.size - np.searchsorted(n, thresholds, side="left")) / n.size
    return far, frr, thresholds


def eer(tgt: np.ndarray, non: np.ndarray) -> tuple[float, float]:
    """Equal error rate and a threshold that realises it.

    The operating points of :func:`det_curve`, joined by straight lines in (FAR, FRR) space, form a
    staircase-with-diagonals from (1, 0) to (0, 1); the EER is where that polyline crosses FAR = FRR.
    ``FRR - FAR`` is non-decreasing along the sweep, so the crossing is unique: either an operating
    point has FAR = FRR exactly (EER = that rate, threshold = its threshold), or it lies on the segment
    between consecutive points k-1 and k, interpolated linearly. In the latter case the EER is only
    reachable by randomising between the two thresholds; the returned threshold is interpolated with
    the same weight, so it lies strictly between them and ``rates_at`` there gives point k, the first
    point with FRR >= FAR.

    Returns ``(eer, threshold)``; eer is a fraction in [0, 1] (not %).
    """
    far, frr, thr = det_curve(tgt, non)
    diff = frr - far  # non-decreasing, -1 at the first point, +1 at the last
    k = int(np.searchsorted(diff, 0.0, side="left"))
    if diff[k] == 0.0:
        return float(far[k]), float(thr[k])
    # diff[k-1] < 0 < diff[k]: intersect the segment (k-1 -> k) with the diagonal.
    alpha = -diff[k - 1] / (diff[k] - diff[k - 1])
    rate = far[k - 1] + alpha * (far[k] - far[k - 1])
    lo, hi = thr[k - 1], thr[k]
    above_lo = float(np.nextafter(lo, np.inf))
    if math.isinf(hi):
        threshold = above_lo  # anything above the top score rejects everything
    else:
        # max() keeps the threshold strictly above lo even when alpha * (hi - lo) underflows.
        threshold = max(float(lo + alpha * (hi - lo)), above_lo)
    return float(rate), threshold


def min_dcf(
    tgt: np.ndarray, non: np.ndarray, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0
) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST SRE definition) and the threshold that reaches it.

    DCF(t) = c_miss * p_target * FRR(t) + c_fa * (1 - p_target) * FAR(t), divided by
    min(c_miss * p_target, c_fa * (1 - p_target)), the cost of the better of "accept all" and
    "reject all"; so the normalised value is <= 1, and 1 means the scores are no better than a fixed
    decision. Minimised over every operating point of :func:`det_curve` (ties: the lowest threshold).

    Returns ``(min_dcf, threshold)``; the threshold is a score value, or ``+inf`` when rejecting every
    trial is optimal.
    """
    if not 0.0 < p_target < 1.0:
        raise IdmeError(f"p_target must be strictly between 0 and 1, got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise IdmeError(f"c_miss and c_fa must be positive, got c_miss={c_miss}, c_fa={c_fa}")
    far, frr, thr = det_curve(tgt, non)
    dcf = c_miss * p_target * frr + c_fa * (1.0 - p_target) * far
    k = int(np.argmin(dcf))
    norm = min(c_miss * p_target, c_fa * (1.0 - p_target))
    return float(dcf[k] / norm), float(thr[k])


def rates_at(tgt: np.ndarray, non: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(far, frr)`` when accepting ``score >= threshold``; fractions in [0, 1]."""
    t = _scores(tgt, "target")
    n = _scores(non, "non-target")
    return float(np.mean(n >= threshold)), float(np.mean(t < threshold))


def threshold_at_far(non: np.ndarray, far_target: float) -> float:
    """The lowest threshold whose FAR does not exceed ``far_target``.

    non: non-target scores; far_target: a fraction in [0, 1). With N non-target scores at most
    k = floor(far_target * N) of them may be accepted, so the threshold must sit just above the
    (k+1)-th highest score: the result is ``nextafter(that score, +inf)``, which never coincides with a
    score. Tied scores are accepted or rejected together, so the achieved FAR can be below the target.
    """
    n = _scores(non, "non-target")
    if not 0.0 <= far_target < 1.0:
        raise IdmeError(f"far_target must be a fraction in [0, 1), got {far_target}")
    # The epsilon absorbs representation error such as 0.29 * 100 = 28.999999999999996.
    k = int(math.floor(far_target * n.size + 1e-9))
    if k >= n.size:  # only possible when far_target * N rounds up to N
        k = n.size - 1
    kth_highest = np.partition(n, n.size - 1 - k)[n.size - 1 - k]
    return float(np.nextafter(kth_highest, np.inf))


@dataclass(frozen=True)
class VerificationMetrics:
    """Summary of one verification run, ready for a report or ``--json``."""

    #: Number of target (same-speaker) trials.
    n_target: int
    #: Number of non-target (different-speaker) trials.
    n_nontarget: int
    #: Equal error rate, fraction in [0, 1].
    eer: float
    #: Threshold at the EER (see :func:`eer`).
    eer_threshold: float
    #: p_target -> (normalised minDCF, threshold), with c_miss = c_fa = 1.
    min_dcf: dict[float, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; thresholds of ``+inf`` become None."""

        def _thr(x: float) -> float | None:
            return None if math.isinf(x) else x

        return {
            "n_target": self.n_target,
            "n_nontarget": self.n_nontarget,
            "eer": self.eer,
            "eer_threshold": _thr(self.eer_threshold),
            "min_dcf": {str(p): {"value": v, "threshold": _thr(t)} for p, (v, t) in self.min_dcf.items()},
        }


def summarize(
    tgt: np.ndarray, non: np.ndarray, p_targets: tuple[float, ...] = (0.01, 0.05)
) -> VerificationMetrics:
    """EER and minDCF at each ``p_targets`` in one call."""
    e, e_thr = eer(tgt, non)
    return VerificationMetrics(
        n_target=int(np.size(tgt)),
        n_nontarget=int(np.size(non)),
        eer=e,
        eer_threshold=e_thr,
        min_dcf={p: min_dcf(tgt, non, p) for p in p_targets},
    )
