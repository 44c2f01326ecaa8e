"""``idme eval``: verification metrics on trial lists, labelled meetings end to end, threshold calibration.

Every command measures the product as it runs, not a re-implementation of it:

- ``trials`` embeds each file through the enrollment path (``read_audio`` = decode + resample to 16 kHz
  mono, then ``speech_only`` VAD trimming) and scores trials by cosine similarity;
- ``meetings`` enrols the meeting's people into a throw-away store and labels the recording with the same
  ``Pipeline``/``Labeller``/``LabelOptions``/thresholds that ``idme listen --file`` uses, then scores it with
  :mod:`idme.eval.der` (identical to ``shared/tools/score_meeting.py``);
- ``calibrate`` sets ``me``/``enrolled`` at a target false-accept rate on trial lists and writes them where
  the pipeline reads them (``<home>/thresholds.json``).

Only the typer commands live here; the library calls are in :mod:`idme.eval.metrics`, ``trials`` and ``der``.
Helpers of :mod:`idme.cli` (error mapping, store, encoder) are imported inside the commands: ``idme.cli``
imports this module, so a top-level import would be circular.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:  # numpy and the encoder are only needed once a command runs
    import numpy as np

    from ..embed.base import Embedder
    from ..identity.profiles import Profile
    from ..identity.thresholds import Thresholds
    from ..vad import VadOptions
    from .trials import Trial

log = logging.getLogger(__name__)

eval_app = typer.Typer(no_args_is_help=True, help="Measure accuracy: verification trials, meetings, calibration.")

# Same wording as the options of idme.cli (which cannot be imported here at module level, see above).
HOME_OPT = typer.Option(None, "--home", help="Data store directory (default $IDME_HOME or the user data dir).")
EMBEDDER_OPT = typer.Option(None, "--embedder", help="Speaker encoder: campplus (bundled) or ecapa "
                                                     "(default $IDME_EMBEDDER or campplus).")
DEVICE_OPT = typer.Option("cpu", "--compute", help="Where the ECAPA encoder runs: cpu or cuda.")
CACHE_OPT = typer.Option(None, "--cache-dir", help="Embedding cache (default <home>/cache/embeddings).")

#: minDCF operating points reported (NIST SRE p_target values; c_miss = c_fa = 1).
P_TARGETS: tuple[float, ...] = (0.01, 0.05)
#: The decision thresholds, in the order they are reported.
THRESHOLD_NAMES: tuple[str, ...] = ("me", "enrolled", "same_unknown", "merge", "change")
#: What moving each threshold trades (kept consistent with the README table).
TRADES: dict[str, str] = {
    "me": "higher: fewer false 'Me' (FAR down), more missed 'Me' (FRR up)",
    "enrolled": "same trade as me, for people enrolled by name",
    "same_unknown": "higher: one person split into duplicate 'Speaker N'; lower: different people merged",
    "merge": "higher: more duplicates survive re-clustering; lower: more merging",
    "change": "higher: more speaker-change splits inside a chunk; lower: fewer",
}


# -- the audio path of a verification trial ------------------------------------------------------------
@dataclass(frozen=True)
class EmbedRecipe:
    """How one audio file becomes one embedding for trial scoring: the enroll/listen audio path."""

    #: VAD that trims pauses (the pipeline's defaults unless given).
    vad: VadOptions
    #: Keep only the first this-many seconds of trimmed speech; None keeps the whole utterance.
    crop_s: float | None = None

    def describe(self) -> str:
        """The cache's ``pipeline`` string: anything that changes the embedding must appear here."""
        vad = json.dumps(asdict(self.vad), sort_keys=True)
        crop = "" if self.crop_s is None else f"|first {self.crop_s:g} s"
        return f"read_audio 16k mono|speech_only {vad}|empty->untrimmed{crop}"


def embed_file(path: Path, embedder: Embedder, recipe: EmbedRecipe) -> np.ndarray:
    """Embedding of one file, float32 (dim,): decoded + resampled to 16 kHz mono, VAD-trimmed, cropped.

    When trimming leaves nothing (a clip VAD misses entirely, e.g. very short or quiet), the untrimmed
    audio is embedded instead: a trial list must score every file it names.
    """
    from ..audio.frames import TARGET_RATE_HZ
    from ..audio.sources import read_audio
    from ..errors import AudioError
    from ..vad import speech_only

    audio = read_audio(path)
    if audio.size == 0:
        raise AudioError(f"{path}: the file holds no audio")
    speech = speech_only(audio, recipe.vad)
    if speech.size == 0:
        log.debug("%s: VAD found no speech; embedding the untrimmed audio", path)
        speech = audio
    if recipe.crop_s is not None:
        speech = speech[: int(round(recipe.crop_s * TARGET_RATE_HZ))]
    return embedder.embed(speech)


@contextlib.contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich bar on stderr driven by ``tick(done, total)``; yields None (no bar) when not enabled."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..cli import err

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def trial_scores(trials: Sequence[Trial], embedder: Embedder, cache_dir: Path, vad: VadOptions,
                 test_crop_s: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(target, nontarget)`` cosine scores, float64, each distinct file embedded once and cached on disk.

    test_crop_s: when given, the test side of every trial keeps only its first ``test_crop_s`` seconds of
        speech while the enrollment side stays whole (a file on both sides is embedded both ways).
    """
    import numpy as np

    from ..errors import IdmeError
    from .trials import EmbeddingCache, score_trials, split_scores

    def cached(recipe: EmbedRecipe) -> tuple[EmbeddingCache, Callable[[Path], np.ndarray]]:
        cache = EmbeddingCache(cache_dir, embedder.name, embedder.version, recipe.describe())
        return cache, lambda p: embed_file(p, embedder, recipe)

    full_cache, full = cached(EmbedRecipe(vad))
    if test_crop_s is None:
        return split_scores(*score_trials(trials, full, full_cache, progress))

    crop_cache, crop = cached(EmbedRecipe(vad, test_crop_s))
    enroll_files = list(dict.fromkeys(t.enroll for t in trials))
    test_files = list(dict.fromkeys(t.test for t in trials))
    total = len(enroll_files) + len(test_files)

    def unit_rows(files: list[Path], cache: EmbeddingCache, fn: Callable[[Path], np.ndarray],
                  done0: int) -> dict[Path, np.ndarray]:
        rows = {}
        for i, f in enumerate(files):
            e = np.asarray(cache.get_or_compute(f, fn), dtype=np.float64)
            norm = float(np.linalg.norm(e))
            if not np.isfinite(norm) or norm == 0.0:
                raise IdmeError(f"embedding of {f} is zero or not finite; is the file silent or too short?")
            rows[f] = e / norm
            if progress is not None:
                progress(done0 + i + 1, total)
        return rows

    enr = unit_rows(enroll_files, full_cache, full, 0)
    tst = unit_rows(test_files, crop_cache, crop, len(enroll_files))
    scores = np.array([float(enr[t.enroll] @ tst[t.test]) for t in trials])
    labels = np.array([t.target for t in trials], dtype=bool)
    return split_scores(scores, labels)


def _read_lists(lists: Sequence[Path]) -> list[Trial]:
    from .trials import read_trials

    out: list[Trial] = []
    for p in lists:
        out += read_trials(p)
    return out


def dcf_key(p_target: float) -> str:
    """JSON key of the minDCF at ``p_target``: 0.01 -> "min_dcf_001", 0.05 -> "min_dcf_005"."""
    return "min_dcf_" + f"{p_target:g}".replace(".", "")


def _finite(x: float) -> float | None:
    """JSON has no infinity: a threshold of +inf (reject everything) becomes None."""
    return None if math.isinf(x) else x


def verification_report(tgt: np.ndarray, non: np.ndarray, th: Thresholds) -> dict[str, Any]:
    """EER, minDCF at P_TARGETS, FAR/FRR at ``th.me`` and at every threshold of ``th``; rates are fractions."""
    from .metrics import rates_at, summarize

    m = summarize(tgt, non, P_TARGETS)
    far, frr = rates_at(tgt, non, th.me)
    out: dict[str, Any] = {"eer": m.eer, "eer_threshold": _finite(m.eer_threshold)}
    for p, (value, thr) in m.min_dcf.items():
        key = dcf_key(p)
        out[key] = value
        out[f"{key}_threshold"] = _finite(thr)
    out.update({"far": far, "frr": frr, "threshold": th.me, "n_target": m.n_target,
                "n_nontarget": m.n_nontarget, "operating_points": {}})
    for name in THRESHOLD_NAMES:
        t = getattr(th, name)
        fa, fr = rates_at(tgt, non, t)
        out["operating_points"][name] = {"threshold": t, "far": fa, "frr": fr}
    out["thresholds_source"] = th.source
    return out


def _det_marks(th: Thresholds) -> dict[str, float]:
    """Threshold label -> value for the DET plot, names sharing a value drawn once ("me/enrolled/merge")."""
    by_value: dict[float, list[str]] = {}
    for name in THRESHOLD_NAMES:
        by_value.setdefault(getattr(th, name), []).append(name)
    return {"/".join(names): value for value, names in by_value.items()}


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


# -- idme eval trials ----------------------------------------------------------------------------------

def _score_lists(lists: list[Path], embedder: str | None, compute: str, home: Path | None, cache_dir: Path | None,
                 test_seconds: float | None, quiet: bool):
    """Reads trial lists and scores them with the chosen encoder (embeddings cached under the store):
    returns (embedder, store path, target scores, non-target scores). Shared by ``trials`` and ``calibrate``."""
    from ..cli import _embedder, _home
    from ..vad import VadOptions

    trials = _read_lists(lists)
    store = _home(home)
    emb = _embedder(embedder, compute)
    with _progress(not quiet, f"embedding ({emb.name})") as tick:
        tgt, non = trial_scores(trials, emb, cache_dir or store / "cache" / "embeddings", VadOptions(),
                                test_crop_s=test_seconds, progress=tick)
    return emb, store, tgt, non

@eval_app.command("trials")
def trials_cmd(
    lists: list[Path] = typer.Argument(..., help="Trial list(s): VoxCeleb '1 a.wav b.wav' "
                                       "or Kaldi 'a b target|nontarget'; paths relative to the list."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout (rates as fractions)."),
    det: Optional[Path] = typer.Option(None, "--det", help="Write the DET curve + score histogram to this PNG."),
    test_seconds: Optional[float] = typer.Option(None, "--test-seconds", help="Cut the test side of every trial "
                                                 "to its first S seconds of speech (enrollment side whole)."),
    cache_dir: Optional[Path] = CACHE_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: str = DEVICE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Score a verification trial list: EER, minDCF, and FAR/FRR at the thresholds in use."""
    from ..cli import _fail, _run, err

    if test_seconds is not None and test_seconds <= 0:
        raise _fail(f"--test-seconds must be positive, got {test_seconds:g}", 2)

    def body() -> None:
        from rich.console import Console
        from rich.table import Table

        from ..identity.thresholds import load

        emb, store, tgt, non = _score_lists(lists, embedder, compute, home, cache_dir, test_seconds, as_json)
        th = load(emb.name, store)
        report = verification_report(tgt, non, th)
        report = {"trials": [str(p) for p in lists], "encoder": {"name": emb.name, "version": emb.version},
                  "test_seconds": test_seconds, **report, "det": None}
        if det is not None:
            from .plots import plot_det

            report["det"] = str(plot_det(tgt, non, det, _det_marks(th),
                                         title=f"{emb.name}: {', '.join(p.name for p in lists)}"
                                               + ("" if test_seconds is None else f", test side {test_seconds:g} s")))
        if as_json:
            typer.echo(json.dumps(report))
            return
        t = Table("metric", "value", title=f"{emb.name} {emb.version} on {', '.join(map(str, lists))}")
        t.add_row("trials", f"{report['n_target']} target / {report['n_nontarget']} non-target")
        t.add_row("EER", f"{_pct(report['eer'])} (threshold {report['eer_threshold']:.3f})")
        for p in P_TARGETS:
            key = dcf_key(p)
            thr = report[f"{key}_threshold"]
            t.add_row(f"minDCF (p_target {p:g})",
                      f"{report[key]:.4f} (threshold {'reject all' if thr is None else f'{thr:.3f}'})")
        for name, op in report["operating_points"].items():
            t.add_row(f"at {name} = {op['threshold']:.3f}", f"FAR {_pct(op['far'])}, FRR {_pct(op['frr'])}")
        Console().print(t)
        err.print(f"thresholds: {th.source}", markup=False)
        if report["det"]:
            err.print(f"wrote {report['det']}", markup=False)

    _run(body)


# -- idme eval meetings --------------------------------------------------------------------------------
def _is_meeting(d: Path) -> bool:
    return (d / "meeting.wav").is_file() and (d / "reference.rttm").is_file() and (d / "meta.json").is_file()


def _is_rttm_set(d: Path) -> bool:
    return (d / "reference.rttm").is_file() and not (d / "meta.json").exists()


def find_recordings(dirs: Sequence[Path]) -> list[tuple[str, Path]]:
    """``("meeting" | "rttm_set", folder)`` for each DIR, or for each such folder directly inside it."""
    from ..errors import IdmeError

    found: list[tuple[str, Path]] = []
    for d in dirs:
        if not d.is_dir():
            raise IdmeError(f"{d} is not a directory")
        if _is_meeting(d):
            found.append(("meeting", d))
        elif _is_rttm_set(d):
            found.append(("rttm_set", d))
        else:
            inner = [("meeting", c) if _is_meeting(c) else ("rttm_set", c)
                     for c in sorted(p for p in d.iterdir() if p.is_dir()) if _is_meeting(c) or _is_rttm_set(c)]
            if not inner:
                raise IdmeError(f"{d}: no meeting (meeting.wav + reference.rttm + meta.json) or RTTM set "
                                "(reference.rttm [+ reference.uem] + <file_id>.wav) in it or directly below it")
            found += inner
    return found


def label_file(path: Path, embedder: Embedder, profiles: list[Profile], th: Thresholds) -> list[dict[str, Any]]:
    """Labels a recording as ``idme listen --file PATH --json`` does; returns its events in emission order."""
    from ..audio.sources import open_source
    from ..identity.tracker import SpeakerTracker
    from ..pipeline import Labeller, LabelOptions, Pipeline

    events: list[dict[str, Any]] = []
    source = open_source(file=path)
    try:
        from ..identity.profiles import NARROWBAND_MAX_HZ

        narrowband = getattr(source, "native_rate", 16000) <= NARROWBAND_MAX_HZ
        tracker = SpeakerTracker(profiles, embedder.dimension, th, narrowband=narrowband)
        labeller = Labeller(embedder, tracker, LabelOptions(), live=False)
        Pipeline(source, labeller, lambda ev: events.append(ev.to_dict())).run()
    finally:
        source.close()
    return events


def _label_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    """Final label -> number of segments carrying it (the last event of each segment id wins)."""
    last: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("final", True):
            last[e["id"]] = e
    return dict(sorted(Counter(e["speaker"] for e in last.values()).items()))


def _write_hyp(path: Path, events: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")


def eval_meeting(mdir: Path, embedder: Embedder, th: Thresholds, hyp_dir: Path | None = None) -> dict[str, Any]:
    """Enrols ``me`` and each ``named`` person of ``meta.json`` into a temporary store, labels meeting.wav,
    scores it (score_meeting.py's dict) and adds ``labels`` (final label -> segments)."""
    from ..errors import IdmeError
    from ..identity.enroll import enroll, read_takes
    from ..identity.profiles import ProfileStore
    from .der import score_meeting

    try:
        meta = json.loads((mdir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IdmeError(f"cannot read {mdir / 'meta.json'}: {exc}") from None
    clips = meta.get("enroll") or {}
    people = ["me", *sorted(meta.get("named") or {})]
    # A temporary store: evaluating must never touch the user's own profiles.
    with tempfile.TemporaryDirectory(prefix="idme-eval-") as tmp:
        store = ProfileStore(Path(tmp))
        for who in people:
            if not clips.get(who):
                raise IdmeError(f"{mdir / 'meta.json'}: no enrollment clips for {who!r} under 'enroll'")
            takes, rates = read_takes([mdir / f for f in clips[who]])
            enroll(store, embedder, who, takes, th, native_rates=rates)
        events = label_file(mdir / "meeting.wav", embedder, store.all(), th)
    if hyp_dir is not None:
        _write_hyp(hyp_dir / f"{mdir.name}.jsonl", events)
    return {"name": mdir.name, "path": str(mdir), **score_meeting(mdir, events), "labels": _label_counts(events)}


def eval_rttm_set(d: Path, embedder: Embedder, th: Thresholds, hyp_dir: Path | None = None,
                  tick: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Labels every recording of an RTTM(+UEM) set with nobody enrolled; returns score_rttm_set's dict."""
    from ..errors import AudioError
    from .der import read_rttm, read_uem, score_rttm_set
    from .trials import AUDIO_EXTENSIONS

    uem = read_uem(d / "reference.uem") if (d / "reference.uem").is_file() else None
    file_ids = list(uem) if uem is not None else sorted(read_rttm(d / "reference.rttm"))
    hyp: dict[str, list[dict[str, Any]]] = {}
    labels: dict[str, dict[str, int]] = {}
    for fid in file_ids:
        audio = next((d / f"{fid}{ext}" for ext in AUDIO_EXTENSIONS if (d / f"{fid}{ext}").is_file()), None)
        if audio is None:
            raise AudioError(f"{d}: no audio for file id {fid!r} (looked for {fid}.wav/.flac/.ogg/.mp3)")
        if tick is not None:
            tick(fid)
        hyp[fid] = label_file(audio, embedder, [], th)
        labels[fid] = _label_counts(hyp[fid])
        if hyp_dir is not None:
            _write_hyp(hyp_dir / d.name / f"{fid}.jsonl", hyp[fid])
    res = score_rttm_set(d / "reference.rttm", uem, hyp)
    for fid, r in res["files"].items():
        r["labels"] = labels.get(fid, {})
    return {"name": d.name, "path": str(d), **res}


_RATES = ("der", "miss", "fa", "confusion", "me_recall", "false_me")


def _mean_over(meetings: list[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean of each rate over meetings (None values skipped), plus worst me_recall/false_me."""
    out: dict[str, Any] = {"n": len(meetings)}
    for k in _RATES:
        vals = [m[k] for m in meetings if m.get(k) is not None]
        out[k] = round(sum(vals) / len(vals), 4) if vals else None
    recalls = [m["me_recall"] for m in meetings if m.get("me_recall") is not None]
    false_me = [m["false_me"] for m in meetings if m.get("false_me") is not None]
    out["me_recall_min"] = min(recalls) if recalls else None
    out["false_me_max"] = max(false_me) if false_me else None
    return out


@eval_app.command("meetings")
def meetings_cmd(
    dirs: list[Path] = typer.Argument(..., help="A meeting folder (meeting.wav, "
                                      "reference.rttm, meta.json), an RTTM set (reference.rttm, reference.uem, "
                                      "<file_id>.wav), or a folder holding several."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    hyp_dir: Optional[Path] = typer.Option(None, "--hyp-dir", help="Also write each hypothesis as "
                                           "`listen --json` lines (<name>.jsonl) here, e.g. for score_meeting.py."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: str = DEVICE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Label meetings as `idme listen --file` does and score them: DER, me_recall, false_me."""
    from ..cli import _embedder, _home, _run, err

    def body() -> None:
        from rich.console import Console
        from rich.table import Table

        from ..identity.thresholds import load

        found = find_recordings(dirs)
        emb = _embedder(embedder, compute)
        # The thresholds `idme listen` would use with this --home (calibrated ones if any); profiles go to a
        # temporary store instead.
        th = load(emb.name, _home(home))

        def say(msg: str) -> None:
            if not as_json:
                err.print(msg, markup=False)

        meetings, sets = [], []
        for kind, d in found:
            if kind == "meeting":
                say(f"labelling {d} …")
                meetings.append(eval_meeting(d, emb, th, hyp_dir))
            else:
                sets.append(eval_rttm_set(d, emb, th, hyp_dir, tick=lambda fid, d=d: say(f"labelling {d}/{fid} …")))
        result = {"encoder": {"name": emb.name, "version": emb.version}, "thresholds": asdict(th),
                  "meetings": meetings, "rttm_sets": sets,
                  "overall": {"meetings_mean": _mean_over(meetings) if meetings else None,
                              "rttm_sets_pooled": {s["name"]: s["pooled"] for s in sets}}}
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
            return
        console = Console()
        # Per-label segment counts are in --json; the table keeps to what fits 80 columns.
        cols = ("DER", "miss", "FA", "conf.", "me rec.", "false me", "ref", "hyp")

        def row(t: Table, name: str, r: dict[str, Any]) -> None:
            t.add_row(name, *(_pct(r.get(k)) for k in ("der", "miss", "fa", "confusion")),
                      "-" if r.get("me_recall") is None else f"{r['me_recall']:.3f}", _pct(r.get("false_me")),
                      str(r.get("n_ref_speakers", "")), str(r.get("n_hyp_labels", "")))
        if meetings:
            t = Table("meeting", *cols, title="meetings (ref/hyp: speakers in the reference / labels emitted)")
            for m in meetings:
                row(t, m["name"], m)
            mean = result["overall"]["meetings_mean"]
            row(t, f"mean of {mean['n']}", mean)
            console.print(t)
        for s in sets:
            t = Table("file", *cols, title=f"{s['name']}: nobody enrolled; pooled = all errors / all speech")
            for fid, r in s["files"].items():
                row(t, fid, r)
            row(t, f"pooled ({s['pooled']['n_files']})", s["pooled"])
            console.print(t)
        err.print(f"thresholds: {th.source}", markup=False)

    _run(body)


# -- idme eval calibrate -------------------------------------------------------------------------------
def _ceil(x: float, digits: int = 4) -> float:
    """Rounds up, so a threshold with FAR <= target keeps it (raising a threshold never accepts more)."""
    q = 10.0 ** digits
    return math.ceil(x * q) / q


def calibrated(old: Thresholds, base: Thresholds, me: float, source: str) -> Thresholds:
    """New thresholds: ``me`` = ``enrolled`` = the measured value; ``same_unknown``, ``merge`` and ``change``
    keep the offsets from ``me`` that the shipped defaults ``base`` have (for CAM++: +0.05, +0.00, -0.10),
    so the relations tuned on meetings survive a different score scale."""
    offsets = {n: getattr(base, n) - base.me for n in ("same_unknown", "merge", "change")}
    return replace(old, me=me, enrolled=me, source=source,
                   **{n: round(me + off, 4) for n, off in offsets.items()})


@eval_app.command("calibrate")
def calibrate_cmd(
    lists: list[Path] = typer.Option([], "--trials", help="Trial list (VoxCeleb or Kaldi format); repeatable, "
                                     "lists are pooled."),
    far: float = typer.Option(0.01, "--far", help="Target false-accept rate for me/enrolled (fraction: 0.01 = 1%)."),
    test_seconds: Optional[float] = typer.Option(None, "--test-seconds", help="Cut the test side of every trial "
                                                 "to its first S seconds of speech (enrollment side whole)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print old vs new; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    cache_dir: Optional[Path] = CACHE_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: str = DEVICE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Derive thresholds at a target false-accept rate from trial lists and save them to <home>/thresholds.json."""
    from ..cli import _fail, _run, err

    if not lists:
        raise _fail("no trial list given: pass --trials LIST (e.g. --trials "
                    "../shared/data/librispeech-test-other/trials.txt)", 2)
    if not 0.0 < far < 1.0:
        raise _fail(f"--far is a fraction strictly between 0 and 1 (0.01 = 1%), got {far:g}", 2)
    if test_seconds is not None and test_seconds <= 0:
        raise _fail(f"--test-seconds must be positive, got {test_seconds:g}", 2)

    def body() -> None:
        from rich.console import Console
        from rich.table import Table

        from ..identity.thresholds import DEFAULTS, load, save
        from .metrics import rates_at, threshold_at_far

        emb, store, tgt, non = _score_lists(lists, embedder, compute, home, cache_dir, test_seconds, as_json)
        old = load(emb.name, store)
        base = DEFAULTS.get(emb.name) or DEFAULTS["campplus"]
        me = _ceil(threshold_at_far(non, far))
        crop = "" if test_seconds is None else f", test side cut to {test_seconds:g} s"
        source = (f"calibrated {_dt.date.today().isoformat()} at FAR {far:g} on {', '.join(map(str, lists))}"
                  f" ({len(tgt)} target / {len(non)} non-target trials{crop}); same_unknown, merge, change keep "
                  "the shipped offsets from me")
        new = calibrated(old, base, me, source)
        notes = []
        if far * len(non) < 1:
            notes.append(f"only {len(non)} non-target trials: FAR {far:g} is below one false accept, so me sits "
                         "just above the highest non-target score; use a longer list")
        rates = {label: dict(zip(("far", "frr"), rates_at(tgt, non, t_.me)))
                 for label, t_ in (("old", old), ("new", new))}
        path = None if dry_run else save(emb.name, new, store)
        result = {"encoder": {"name": emb.name, "version": emb.version}, "far_target": far,
                  "test_seconds": test_seconds, "trials": [str(p) for p in lists], "n_target": int(len(tgt)),
                  "n_nontarget": int(len(non)), "old": asdict(old), "new": asdict(new), "rates_at_me": rates,
                  "written": None if path is None else str(path), "dry_run": dry_run, "notes": notes}
        if as_json:
            typer.echo(json.dumps(result))
            return
        t = Table("threshold", "old", "new", "what it trades", title=f"{emb.name}: thresholds at FAR {far:g}")
        for f in fields(new):
            if f.name in THRESHOLD_NAMES:
                t.add_row(f.name, f"{getattr(old, f.name):.4f}", f"{getattr(new, f.name):.4f}", TRADES[f.name])
        Console().print(t)
        for label, t_ in (("old", old), ("new", new)):
            r = rates[label]
            err.print(f"{label} me = {t_.me:.4f}: FAR {_pct(r['far'])}, FRR {_pct(r['frr'])} on these trials",
                      markup=False)
        err.print(f"old source: {old.source}", markup=False)
        err.print(f"new source: {new.source}", markup=False)
        for n in notes:
            err.print(f"note: {n}", markup=False)
        err.print("dry run: nothing written" if path is None else f"wrote {path}; `idme listen` uses it from now on",
                  markup=False)

    _run(body)
