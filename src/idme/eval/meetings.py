"""Labelled meetings end to end: enrol the meeting's people, label the recording as ``idme listen --file``
does (one :class:`idme.live.LiveSession`), score it with :mod:`idme.eval.der` (identical to
``shared/tools/score_meeting.py``).
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..embed.base import Embedder
    from ..identity.profiles import Profile
    from ..identity.thresholds import Thresholds

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


def label_file(path: Path, embedder: Embedder, profiles: list[Profile], th: Thresholds,
               segmenter: str = "webrtc", calibration: Any = None) -> list[dict[str, Any]]:
    """Labels a recording as ``idme listen --file PATH --json`` does; returns its events in emission order.

    segmenter: "webrtc" (the live pipeline, one label per instant) or "pyannote" (``idme.segment.pyannote``,
    file mode; events of different speakers may overlap in time). calibration: the Me / named decisions on
    calibrated LLRs (``Idme.calibration``), either segmenter; None: on cosine thresholds."""
    if segmenter == "pyannote":
        from ..segment.pyannote import label_file as label_segmented

        return label_segmented(path, embedder, profiles, th, calibration=calibration)
    from ..audio.sources import open_source
    from ..live import LiveSession
    from ..sinks import ListSink

    sink = ListSink()
    LiveSession(open_source(file=path), embedder, profiles, th, sinks=[sink], calibration=calibration).run()
    return sink.dicts()


def label_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    """Final label -> number of segments carrying it (the last event of each segment id wins)."""
    last: dict[int, dict[str, Any]] = {}
    for e in events:
        if e.get("final", True):
            last[e["id"]] = e
    return dict(sorted(Counter(e["speaker"] for e in last.values()).items()))


def _write_hyp(path: Path, events: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events), encoding="utf-8")


def eval_meeting(mdir: Path, embedder: Embedder, th: Thresholds, hyp_dir: Path | None = None,
                 segmenter: str = "webrtc", calibration: Any = None) -> dict[str, Any]:
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
        from ..vault import EphemeralVault

        store = ProfileStore(Path(tmp), vault=EphemeralVault())  # no key file, no passphrase (issue 14)
        for who in people:
            if not clips.get(who):
                raise IdmeError(f"{mdir / 'meta.json'}: no enrollment clips for {who!r} under 'enroll'")
            takes, rates = read_takes([mdir / f for f in clips[who]])
            enroll(store, embedder, who, takes, th, native_rates=rates)
        events = label_file(mdir / "meeting.wav", embedder, store.all(), th, segmenter, calibration)
    if hyp_dir is not None:
        _write_hyp(hyp_dir / f"{mdir.name}.jsonl", events)
    if segmenter != "webrtc":  # overlapping labels are simultaneous speakers, not later corrections
        from .der import score_files

        scored = score_files(mdir / "reference.rttm", events, meta, overlapping_hyp=True)
    else:
        scored = score_meeting(mdir, events)
    return {"name": mdir.name, "path": str(mdir), **scored, "labels": label_counts(events)}


def eval_rttm_set(d: Path, embedder: Embedder, th: Thresholds, hyp_dir: Path | None = None,
                  tick: Callable[[str], None] | None = None, segmenter: str = "webrtc",
                  calibration: Any = None) -> dict[str, Any]:
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
        hyp[fid] = label_file(audio, embedder, [], th, segmenter, calibration)
        labels[fid] = label_counts(hyp[fid])
        if hyp_dir is not None:
            _write_hyp(hyp_dir / d.name / f"{fid}.jsonl", hyp[fid])
    res = score_rttm_set(d / "reference.rttm", uem, hyp, overlapping_hyp=segmenter != "webrtc")
    for fid, r in res["files"].items():
        r["labels"] = labels.get(fid, {})
    return {"name": d.name, "path": str(d), **res}


RATES = ("der", "miss", "fa", "confusion", "me_recall", "false_me")


def mean_over(meetings: list[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean of each rate over meetings (None values skipped), plus worst me_recall/false_me."""
    out: dict[str, Any] = {"n": len(meetings)}
    for k in RATES:
        vals = [m[k] for m in meetings if m.get(k) is not None]
        out[k] = round(sum(vals) / len(vals), 4) if vals else None
    recalls = [m["me_recall"] for m in meetings if m.get("me_recall") is not None]
    false_me = [m["false_me"] for m in meetings if m.get("false_me") is not None]
    out["me_recall_min"] = min(recalls) if recalls else None
    out["false_me_max"] = max(false_me) if false_me else None
    return out



def evaluate(dirs: Sequence[Path], embedder: Embedder, th: Thresholds, hyp_dir: Path | None = None,
             say: Callable[[str], None] | None = None, segmenter: str = "webrtc",
             calibration: Any = None) -> dict[str, Any]:
    """``idme eval meetings``: every meeting and RTTM set found under ``dirs``, labelled and scored."""
    from dataclasses import asdict

    say = say or (lambda _msg: None)
    meetings, sets = [], []
    for kind, d in find_recordings(dirs):
        if kind == "meeting":
            say(f"labelling {d} …")
            meetings.append(eval_meeting(d, embedder, th, hyp_dir, segmenter, calibration))
        else:
            sets.append(eval_rttm_set(d, embedder, th, hyp_dir, tick=lambda fid, d=d: say(f"labelling {d}/{fid} …"),
                                      segmenter=segmenter, calibration=calibration))
    return {"encoder": {"name": embedder.name, "version": embedder.version}, "thresholds": asdict(th),
            "segmenter": segmenter, "calibrated": calibration is not None,
            "meetings": meetings, "rttm_sets": sets,
            "overall": {"meetings_mean": mean_over(meetings) if meetings else None,
                        "rttm_sets_pooled": {s["name"]: s["pooled"] for s in sets}}}
