"""``idme eval``: verification trials, labelled meetings end to end, threshold calibration.

Only the commands live here; they call :class:`idme.api.Idme`, which measures the product as it runs
(:mod:`idme.eval.verification`, :mod:`idme.eval.meetings`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..eval.verification import P_TARGETS, THRESHOLD_NAMES, TRADES, dcf_key, det_marks, pct
from .common import CACHE_OPT, COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, fail, make_idme

eval_app = typer.Typer(no_args_is_help=True, help="Measure accuracy: verification trials, meetings, calibration.")


@contextlib.contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich bar on stderr driven by ``tick(done, total)``; yields None (no bar) when not enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _check_test_seconds(test_seconds: float | None) -> None:
    if test_seconds is not None and test_seconds <= 0:
        raise fail(f"--test-seconds must be positive, got {test_seconds:g}", 2)


@eval_app.command("trials")
@cli_errors
def trials_cmd(
    lists: list[Path] = typer.Argument(..., help="Trial list(s): VoxCeleb '1 a.wav b.wav' "
                                       "or Kaldi 'a b target|nontarget'; paths relative to the list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (rates as fractions)."),
    det: Optional[Path] = typer.Option(None, "--det", help="Write the DET curve + score histogram to this PNG."),
    score_norm: bool = typer.Option(False, "--score-norm", help="With --quality: AS-normalise scores against a "
                                    "cohort of the fitting speakers (saved beside the calibration)."),
    test_seconds: Optional[float] = typer.Option(None, "--test-seconds", help="Cut the test side of every trial "
                                                 "to its first S seconds of speech (enrollment side whole)."),
    cache_dir: Optional[Path] = CACHE_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Score a verification trial list: EER, minDCF, and FAR/FRR at the thresholds in use."""
    _check_test_seconds(test_seconds)
    idme = make_idme(home, embedder, compute)
    emb = idme.embedder
    with _progress(not as_json, f"embedding ({emb.name})") as tick:
        report, tgt, non = idme.eval_trials(lists, test_seconds, cache_dir, tick)
    th = idme.thresholds()
    report["det"] = None
    if det is not None:
        from ..eval.plots import plot_det

        report["det"] = str(plot_det(tgt, non, det, det_marks(th),
                                     title=f"{emb.name}: {', '.join(p.name for p in lists)}"
                                           + ("" if test_seconds is None else f", test side {test_seconds:g} s")))
    if as_json:
        typer.echo(json.dumps(report))
        return
    t = Table("metric", "value", title=f"{emb.name} {emb.version} on {', '.join(map(str, lists))}")
    t.add_row("trials", f"{report['n_target']} target / {report['n_nontarget']} non-target")
    t.add_row("EER", f"{pct(report['eer'])} (threshold {report['eer_threshold']:.3f})")
    for p in P_TARGETS:
        key = dcf_key(p)
        thr = report[f"{key}_threshold"]
        t.add_row(f"minDCF (p_target {p:g})",
                  f"{report[key]:.4f} (threshold {'reject all' if thr is None else f'{thr:.3f}'})")
    for name, op in report["operating_points"].items():
        t.add_row(f"at {name} = {op['threshold']:.3f}", f"FAR {pct(op['far'])}, FRR {pct(op['frr'])}")
    Console().print(t)
    err.print(f"thresholds: {th.source}", markup=False)
    if report["det"]:
        err.print(f"wrote {report['det']}", markup=False)


@eval_app.command("meetings")
@cli_errors
def meetings_cmd(
    dirs: list[Path] = typer.Argument(..., help="A meeting folder (meeting.wav, "
                                      "reference.rttm, meta.json), an RTTM set (reference.rttm, reference.uem, "
                                      "<file_id>.wav), or a folder holding several."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    hyp_dir: Optional[Path] = typer.Option(None, "--hyp-dir", help="Also write each hypothesis as "
                                           "`listen --json` lines (<name>.jsonl) here, e.g. for score_meeting.py."),
    segmenter: str = typer.Option("webrtc", "--segmenter",
                                  help="webrtc (live pipeline, one label at a time) or pyannote (segmentation-3.0, "
                                       "file mode, overlapping speakers)."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Label meetings as `idme listen --file` does and score them: DER, me_recall, false_me."""
    # The thresholds `idme listen` would use with this --home (calibrated ones if any); profiles go to a
    # temporary store instead.
    idme = make_idme(home, embedder, compute)
    if segmenter not in ("webrtc", "pyannote"):
        raise fail(f"--segmenter must be webrtc or pyannote, got {segmenter!r}", 2)
    result = idme.eval_meetings(dirs, hyp_dir, say=None if as_json else (lambda m: err.print(m, markup=False)),
                                segmenter=segmenter)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    console = Console()
    # Per-label segment counts are in --json; the table keeps to what fits 80 columns.
    cols = ("DER", "miss", "FA", "conf.", "me rec.", "false me", "ref", "hyp")

    def row(t: Table, name: str, r: dict[str, Any]) -> None:
        t.add_row(name, *(pct(r.get(k)) for k in ("der", "miss", "fa", "confusion")),
                  "-" if r.get("me_recall") is None else f"{r['me_recall']:.3f}", pct(r.get("false_me")),
                  str(r.get("n_ref_speakers", "")), str(r.get("n_hyp_labels", "")))
    if result["meetings"]:
        t = Table("meeting", *cols, title="meetings (ref/hyp: speakers in the reference / labels emitted)")
        for m in result["meetings"]:
            row(t, m["name"], m)
        mean = result["overall"]["meetings_mean"]
        row(t, f"mean of {mean['n']}", mean)
        console.print(t)
    for s in result["rttm_sets"]:
        t = Table("file", *cols, title=f"{s['name']}: nobody enrolled; pooled = all errors / all speech")
        for fid, r in s["files"].items():
            row(t, fid, r)
        row(t, f"pooled ({s['pooled']['n_files']})", s["pooled"])
        console.print(t)
    err.print(f"thresholds: {idme.thresholds().source}", markup=False)


@eval_app.command("calibrate")
@cli_errors
def calibrate_cmd(
    lists: list[Path] = typer.Option([], "--trials", help="Trial list (VoxCeleb or Kaldi format); repeatable, "
                                     "lists are pooled."),
    far: float = typer.Option(0.001, "--far", help="Target false-accept rate for me/enrolled (fraction: 0.001 = "
                              "0.1%, the shipped operating point; 0.01 = 1% loosens it)."),
    condition_far: float = typer.Option(0.005, "--condition-far", help="With --quality: the FAR the LLR threshold "
                                        "aims for in each degraded training condition."),
    quality: Optional[Path] = typer.Option(None, "--quality", help="Fit the quality-aware calibration (cosine + "
                                           "duration + bandwidth + SNR -> LLR) on degraded trials built from this "
                                           "data folder (../shared/data) and save it to <home>/calibration.json."),
    test_seconds: Optional[float] = typer.Option(None, "--test-seconds", help="Cut the test side of every trial "
                                                 "to its first S seconds of speech (enrollment side whole)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print old vs new; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    cache_dir: Optional[Path] = CACHE_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Derive thresholds at a target false-accept rate from trial lists and save them to <home>/thresholds.json;
    with --quality DATA, fit the calibrated-LLR scoring verify and identify use."""
    if quality is not None:
        _calibrate_quality(quality, condition_far, dry_run, as_json, cache_dir, embedder, compute, home, score_norm)
        return
    if not lists:
        raise fail("no trial list given: pass --trials LIST (e.g. --trials "
                   "../shared/data/librispeech-test-other/trials.txt)", 2)
    if not 0.0 < far < 1.0:
        raise fail(f"--far is a fraction strictly between 0 and 1 (0.01 = 1%), got {far:g}", 2)
    _check_test_seconds(test_seconds)
    idme = make_idme(home, embedder, compute)
    emb = idme.embedder
    with _progress(not as_json, f"embedding ({emb.name})") as tick:
        cal, path = idme.calibrate(lists, far, test_seconds, cache_dir, dry_run, tick)
    old, new = cal.old, cal.new
    result = {"encoder": {"name": emb.name, "version": emb.version}, "test_seconds": test_seconds,
              "trials": [str(p) for p in lists], **cal.to_dict(),
              "written": None if path is None else str(path), "dry_run": dry_run}
    if as_json:
        typer.echo(json.dumps(result))
        return
    t = Table("threshold", "old", "new", "what it trades", title=f"{emb.name}: thresholds at FAR {far:g}")
    for f in fields(new):
        if f.name in THRESHOLD_NAMES:
            t.add_row(f.name, f"{getattr(old, f.name):.4f}", f"{getattr(new, f.name):.4f}", TRADES[f.name])
    if new.narrowband is not None:
        t.add_row("narrowband", "-" if old.narrowband is None else f"{old.narrowband:.4f}", f"{new.narrowband:.4f}",
                  "me for telephone-rate (<= 8 kHz) profiles in telephone-rate sessions")
    Console().print(t)
    for label, t_ in (("old", old), ("new", new)):
        r = cal.rates_at_me[label]
        err.print(f"{label} me = {t_.me:.4f}: FAR {pct(r['far'])}, FRR {pct(r['frr'])} on these trials",
                  markup=False)
    err.print(f"old source: {old.source}", markup=False)
    err.print(f"new source: {new.source}", markup=False)
    for n in cal.notes:
        err.print(f"note: {n}", markup=False)
    err.print("dry run: nothing written" if path is None else f"wrote {path}; `idme listen` uses it from now on",
              markup=False)


def _calibrate_quality(data: Path, far: float, dry_run: bool, as_json: bool, cache_dir: Optional[Path],
                       embedder: Optional[str], compute: Optional[str], home: Optional[Path],
                       score_norm: bool = False) -> None:
    """``idme eval calibrate --quality DATA``: fit, print the held-out conditions, save."""
    import sys

    if not 0.0 < far < 1.0:
        raise fail(f"--condition-far is a fraction strictly between 0 and 1 (0.01 = 1%), got {far:g}", 2)
    idme = make_idme(home, embedder, compute)
    emb = idme.embedder
    with _progress(not as_json, f"degraded trials ({emb.name})") as tick:
        fit, path = idme.calibrate_quality(data, far, cache_dir, dry_run, command="idme " + " ".join(sys.argv[1:]),
                                           progress=tick, score_norm=score_norm)
    if as_json:
        typer.echo(json.dumps({**fit.to_dict(), "written": None if path is None else str(path)}))
        return
    cal = fit.calibration
    t = Table("held-out condition", "Cllr", "minCllr", "minDCF", "EER", "FAR", "FRR",
              title=f"{emb.name}: calibrated LLR, one threshold {cal.threshold:.2f} (held-out speakers)")
    for name, r in fit.heldout.items():
        bad = r["far"] > 0.01 or r["frr"] > 0.05
        t.add_row(name, f"{r['cllr']:.3f}", f"{r['min_cllr']:.3f}", f"{r['min_dcf_001']:.3f}", pct(r["eer"]),
                  pct(r["far"]), pct(r["frr"]) + (" x" if bad else ""))
    Console().print(t)
    ok = sum(r["far"] <= 0.01 and r["frr"] <= 0.05 for r in fit.heldout.values())
    err.print(f"{ok} of {len(fit.heldout)} held-out conditions meet FAR <= 1% and FRR <= 5%", markup=False)
    err.print("dry run: nothing written" if path is None else
              f"wrote {path}; `idme verify` and `idme identify` use it from now on", markup=False)
