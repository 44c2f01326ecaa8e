"""Diarization scoring (idme.eval.der): agreement with score_meeting.py, and multi-speaker DER on AMI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from idme.errors import IdmeError
from idme.eval.der import (
    Segment,
    read_rttm,
    read_uem,
    score_files,
    score_meeting,
    score_rttm_set,
    score_segments,
)

DATA = Path(__file__).parent / "data"
MEETING01 = DATA / "meetings" / "meeting01"  # owner 367, nobody named
MEETING03 = DATA / "meetings" / "meeting03"  # owner 367, "alice" = 3005
AMI = DATA / "ami"
from conftest import SCORER
needs_scorer = pytest.mark.skipif(not SCORER.is_file(), reason=f"reference scorer {SCORER} not present")

Event = dict


def _ref(mdir: Path) -> tuple[list[Segment], dict]:
    meta = json.loads((mdir / "meta.json").read_text())
    return [s for segs in read_rttm(mdir / "reference.rttm").values() for s in segs], meta


def _event(seg: Segment, meta: dict, speaker: str | None = None, **extra) -> Event:
    """The event idme would emit for a reference segment: owner as kind 'me', named by name, else unknown."""
    inv = {v: k for k, v in meta.get("named", {}).items()}
    if seg.speaker == meta["owner"]:
        ev = {"start": seg.start, "end": seg.end, "speaker": "Me", "kind": "me"}
    elif seg.speaker in inv:
        ev = {"start": seg.start, "end": seg.end, "speaker": inv[seg.speaker], "kind": "named"}
    else:
        ev = {"start": seg.start, "end": seg.end, "speaker": f"Speaker {seg.speaker}", "kind": "unknown"}
    if speaker is not None:
        ev["speaker"], ev["kind"] = speaker, "unknown"
    ev.update(extra)
    return ev


# Hypothesis builders: reference segments + meta -> emitted events.
def perfect(ref: list[Segment], meta: dict) -> list[Event]:
    return [_event(s, meta) for s in ref]


def swapped_labels(ref: list[Segment], meta: dict) -> list[Event]:
    # The owner comes out as an unknown, and the first other speaker as "Me": confusion and a missed owner.
    other = next(s.speaker for s in ref if s.speaker != meta["owner"])
    out = []
    for s in ref:
        if s.speaker == meta["owner"]:
            out.append(_event(s, meta, speaker="Speaker 1"))
        elif s.speaker == other:
            out.append({"start": s.start, "end": s.end, "speaker": "Me", "kind": "me"})
        else:
            out.append(_event(s, meta))
    return out


def shifted_boundaries(ref: list[Segment], meta: dict) -> list[Event]:
    # Late starts and early/late ends of a few hundred ms, plus a label after the recording (false alarm).
    out = [_event(s, meta, start=s.start + 0.31 * (i % 3), end=s.end + 0.2 * ((i % 5) - 2))
           for i, s in enumerate(ref)]
    return out + [{"start": ref[-1].end + 0.5, "end": ref[-1].end + 3.0, "speaker": "Speaker 9", "kind": "unknown"}]


def dropped_segments(ref: list[Segment], meta: dict) -> list[Event]:
    return [_event(s, meta) for i, s in enumerate(ref) if i % 3 != 1]


def with_interim_events(ref: list[Segment], meta: dict) -> list[Event]:
    # Wrong interim labels ("final": false) must be ignored entirely, labels included.
    out = []
    for i, s in enumerate(ref):
        if i % 2 == 0:
            out.append(_event(s, meta, speaker="Speaker X", final=False))
        out.append(_event(s, meta, final=True))
    return out


def reemitted_corrections(ref: list[Segment], meta: dict) -> list[Event]:
    # Every segment first comes out wrong; every second one is corrected by a later event, some of them
    # only partly (the correction covers the second half).
    out = [_event(s, meta, speaker=f"Speaker {i % 2}") for i, s in enumerate(ref)]
    for i, s in enumerate(ref):
        if i % 2 == 0:
            out.append(_event(s, meta, start=s.start if i % 4 == 0 else (s.start + s.end) / 2))
    return out


BUILDERS: list[Callable[[list[Segment], dict], list[Event]]] = [
    perfect, swapped_labels, shifted_boundaries, dropped_segments, with_interim_events, reemitted_corrections
]


def _script(mdir: Path, hyp_path: Path) -> dict:
    """What the shared reference scorer prints for this hypothesis."""
    out = subprocess.run([sys.executable, str(SCORER), str(mdir), str(hyp_path)],
                         capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


def _write_jsonl(path: Path, events: list[Event]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_perfect_hypothesis_scores_zero() -> None:
    """A hypothesis equal to the reference has DER 0, every owner frame labelled Me and none falsely."""
    ref, meta = _ref(MEETING01)
    out = score_meeting(MEETING01, perfect(ref, meta))
    assert out == {"der": 0.0, "miss": 0.0, "fa": 0.0, "confusion": 0.0, "me_recall": 1.0, "false_me": 0.0,
                   "n_ref_speakers": 4, "n_hyp_labels": 4}


@needs_scorer
@pytest.mark.parametrize("mdir", [MEETING01, MEETING03], ids=["meeting01", "meeting03-named"])
@pytest.mark.parametrize("build", BUILDERS, ids=lambda f: f.__name__)
def test_agrees_with_score_meeting_script(tmp_path: Path, mdir: Path, build: Callable) -> None:
    """On JSONL hypotheses (and the same events passed as dicts) the numbers equal score_meeting.py's."""
    ref, meta = _ref(mdir)
    events = build(ref, meta)
    hyp = _write_jsonl(tmp_path / "hyp.jsonl", events)
    expected = _script(mdir, hyp)
    assert score_meeting(mdir, hyp) == expected
    assert score_meeting(mdir, events) == expected
    if build in (perfect, with_interim_events):
        assert expected["der"] == 0.0  # interim labels leave no trace, not even in the label count
        assert expected["n_hyp_labels"] == expected["n_ref_speakers"]
    else:
        assert expected["der"] > 0  # the perturbation must actually be scored as an error


@needs_scorer
def test_agrees_with_script_on_rttm_hypothesis(tmp_path: Path) -> None:
    """An RTTM hypothesis (labels only, no kind; 'me' by name) scores as the script scores it."""
    ref, meta = _ref(MEETING01)
    lines = []
    for i, s in enumerate(ref):
        if i % 4 == 3:
            continue
        label = "me" if s.speaker == meta["owner"] else f"spk_{s.speaker[::-1]}"
        lines.append(f"SPEAKER meeting 1 {s.start + 0.12:.3f} {s.end - s.start:.3f} <NA> <NA> {label} <NA> <NA>\n")
    hyp = tmp_path / "hyp.rttm"
    hyp.write_text("".join(lines))
    expected = _script(MEETING01, hyp)
    assert score_meeting(MEETING01, hyp) == expected
    assert expected["me_recall"] < 1.0 and expected["miss"] > 0


def test_owner_metrics_on_swapped_labels() -> None:
    """Labelling the owner as a stranger zeroes me_recall; labelling someone else Me raises false_me."""
    ref, meta = _ref(MEETING01)
    out = score_meeting(MEETING01, swapped_labels(ref, meta))
    assert out["me_recall"] == 0.0
    assert 0.0 < out["false_me"] < 1.0
    assert out["confusion"] > 0.0


def test_hand_computed_overlap_case() -> None:
    """Ref A [0,10) and B [6,12), hyp x [0,6) then y [6,12): 400 of 1600 speaker-frames missed, no confusion."""
    ref = [Segment(0.0, 10.0, "A"), Segment(6.0, 12.0, "B")]
    hyp = [Segment(0.0, 6.0, "x"), Segment(6.0, 12.0, "y")]
    res = score_segments(ref, hyp, collar_s=0.0)
    assert (res.speech_frames, res.miss_frames, res.fa_frames, res.confusion_frames) == (1600, 400, 0, 0)
    assert res.mapping == {"x": "A", "y": "B"}
    assert res.to_dict()["der"] == 0.25
    # With hypothesis overlap allowed, a second label on the overlap removes the miss.
    both = score_segments(ref, hyp + [Segment(6.0, 10.0, "x")], collar_s=0.0, overlapping_hyp=True)
    assert both.der == 0.0


def _expected_overlap_miss(segs: list[Segment], uem: list[tuple[float, float]], collar_s: float = 0.25):
    """(extra speaker-frames, scored speaker-frames) counted directly from the reference segments."""
    n = int(math.ceil(max(s.end for s in segs + [Segment(0, e, "") for _, e in uem]) / 0.01)) + 1
    count = np.zeros(n, dtype=int)
    scored = np.zeros(n, dtype=bool)
    for a, b in uem:
        scored[round(a / 0.01): round(b / 0.01)] = True
    c = round(collar_s / 0.01)
    for s in segs:
        count[round(s.start / 0.01): round(s.end / 0.01)] += 1
        for x in (round(s.start / 0.01), round(s.end / 0.01)):
            scored[max(0, x - c): x + c] = False
    return int(np.maximum(count[scored] - 1, 0).sum()), int(count[scored].sum())


def test_ami_perfect_hypothesis_misses_only_overlap() -> None:
    """A single-label copy of the AMI reference errs only by missing the extra speakers of overlapped frames."""
    ref = read_rttm(AMI / "reference.rttm")
    uem = read_uem(AMI / "reference.uem")
    # One label per reference speaker, named differently so that the mapping has to find them.
    hyp = {fid: [{"start": s.start, "end": s.end, "speaker": f"h_{s.speaker}"} for s in segs]
           for fid, segs in ref.items()}
    out = score_rttm_set(AMI / "reference.rttm", AMI / "reference.uem", hyp)
    assert set(out["files"]) == set(uem)
    total_miss = total_speech = 0
    for fid, res in out["files"].items():
        miss, speech = _expected_overlap_miss(ref.get(fid, []), uem[fid])
        total_miss, total_speech = total_miss + miss, total_speech + speech
        assert res["fa"] == 0.0 and res["confusion"] == 0.0
        assert res["miss"] == res["der"] == round(miss / max(1, speech), 4)
        assert res["me_recall"] is None and res["false_me"] is None
    assert out["pooled"]["der"] == round(total_miss / total_speech, 4)
    assert out["pooled"]["der"] > 0.05  # the excerpts do contain a good deal of overlapped speech
    # The reference itself as an overlapping hypothesis is perfect.
    exact = score_rttm_set(AMI / "reference.rttm", AMI / "reference.uem", AMI / "reference.rttm",
                           overlapping_hyp=True)
    assert exact["pooled"]["der"] == 0.0


def test_ami_uem_region_respected() -> None:
    """Labels outside the UEM change nothing, and a shorter UEM scores only the speech inside it."""
    ref = read_rttm(AMI / "reference.rttm")
    segs = ref["trn00"]
    hyp = [{"start": s.start, "end": s.end, "speaker": s.speaker} for s in segs]
    full = score_files(AMI / "reference.rttm", hyp, uem=[(0.0, 30.0)], file_id="trn00")
    noisy = hyp + [{"start": 31.0, "end": 59.0, "speaker": "ghost"}]
    assert score_files(AMI / "reference.rttm", noisy, uem=[(0.0, 30.0)], file_id="trn00") == {**full,
                                                                                            "n_hyp_labels": 4}
    assert score_files(AMI / "reference.rttm", noisy, file_id="trn00")["fa"] > 0  # no UEM: it is scored
    first_half = score_segments(segs, [Segment(s.start, s.end, s.speaker) for s in segs], uem=[(0.0, 15.0)])
    miss, speech = _expected_overlap_miss(segs, [(0.0, 15.0)])
    assert (first_half.miss_frames, first_half.speech_frames) == (miss, speech)
    assert speech < _expected_overlap_miss(segs, [(0.0, 30.0)])[1]


def test_reduces_to_single_speaker_rules_without_overlap() -> None:
    """On a non-overlapping reference the multi-speaker formulas give miss/fa/confusion frame by frame."""
    ref = [Segment(0.0, 2.0, "A"), Segment(2.0, 4.0, "B")]
    hyp = [Segment(0.5, 2.0, "u"), Segment(2.0, 3.0, "u"), Segment(3.0, 5.0, "v")]
    res = score_segments(ref, hyp, collar_s=0.0)
    # u maps to A (150 frames) rather than B (100); v to B (100). Miss A[0,0.5)=50, conf B[2,3)=100,
    # false alarm [4,5)=100, of 400 speech frames.
    assert (res.miss_frames, res.confusion_frames, res.fa_frames, res.speech_frames) == (50, 100, 100, 400)


def test_bad_inputs() -> None:
    """Unknown hypothesis file ids, unreadable JSON lines and a missing meeting raise IdmeError."""
    with pytest.raises(IdmeError, match="not in the reference/UEM"):
        score_rttm_set(AMI / "reference.rttm", AMI / "reference.uem", {"trn99": []})
    with pytest.raises(IdmeError, match="meta.json"):
        score_meeting(DATA / "no-such-meeting", [])


def test_invalid_jsonl_line(tmp_path: Path) -> None:
    """A corrupt JSON line is reported with its line number."""
    bad = tmp_path / "hyp.jsonl"
    bad.write_text('{"start": 0, "end": 1, "speaker": "Me"}\n{"start": 2,\n')
    with pytest.raises(IdmeError, match=r"hyp.jsonl:2: not valid JSON"):
        score_meeting(MEETING01, bad)
