"""Live overlap-aware labelling: the rolling-buffer segmenter (idme.segment.live) fed real meeting audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.audio.frames import AudioFrame
from idme.embed.campplus import CampPlusEmbedder
from idme.eval.der import read_hypothesis, read_rttm, score_segments
from idme.identity.thresholds import load
from idme.segment.live import LiveOptions, PyannoteLabeller

DATA = Path(__file__).parent / "data"
AMI_CLIP = DATA / "ami_trn09_0-20s.flac"
AMI_RTTM = DATA / "ami_trn09_0-20s.rttm"
BLOCK = 1600  # 0.1 s


@pytest.fixture(scope="module")
def run() -> tuple[list[tuple[int, object]], dict]:
    """Every (stream sample when emitted, event) of the clip fed in 0.1 s blocks at --latency 2."""
    samples, rate = sf.read(AMI_CLIP, dtype="float32")
    lab = PyannoteLabeller(CampPlusEmbedder(), load("campplus"), [], LiveOptions(latency_s=2.0), live=True)
    lab.warm_up()
    out = []
    for i in range(0, len(samples), BLOCK):
        out += [(i + BLOCK, e) for e in lab.push(AudioFrame(samples[i:i + BLOCK], rate, i, arrived_at=0.0))]
    out += [(len(samples), e) for e in lab.finish()]
    latest = {}
    for _, e in out:
        latest[e.id] = e
    return out, latest


def test_live_labels_overlap_and_score_on_real_meeting(run) -> None:
    """Fed a real AMI clip block by block, the final labels (after corrections) include two speakers at
    once and score a DER (±0.25 s, overlap counted) of at most 35%."""
    _, latest = run
    finals = [e.to_dict() for e in latest.values() if e.final]
    assert finals
    assert any(a["speaker"] != b["speaker"] and a["start"] < b["end"] and b["start"] < a["end"]
               for a in finals for b in finals)
    ref = read_rttm(AMI_RTTM)["ami_trn09_0-20s"]
    assert score_segments(ref, read_hypothesis(finals), overlapping_hyp=True).der <= 0.35


def test_final_labels_come_within_the_latency(run) -> None:
    """Before the end of the stream, each segment's first final event comes at most latency + one step
    (plus a frame) of stream time after the segment's end, and interim events come before finals."""
    events, _ = run
    seen_final: set[int] = set()
    n_interim = 0
    for at, e in events[:-1]:
        if e.final and e.id not in seen_final:
            seen_final.add(e.id)
            if at < events[-1][0]:
                assert at / 16000 - e.end <= 2.0 + 0.5 + 0.11, (at, e)
        elif not e.final:
            n_interim += 1
    assert n_interim > 0 and seen_final


def test_latency_outside_range_is_refused() -> None:
    """A latency outside 0.5-5 s is a ValueError naming the range."""
    with pytest.raises(ValueError, match="0.5 and 5.0"):
        LiveOptions(latency_s=0.2)


def test_cli_live_pyannote_saves_a_session(tmp_path: Path) -> None:
    """`idme listen --file CLIP --realtime --segmenter pyannote --latency 1 --json` streams segment events
    (some not final, finals of two speakers overlapping) and saves a session `idme transcript` can print."""
    from clihelp import cli

    home = ["--home", str(tmp_path / "home")]
    res = cli("listen", "--file", AMI_CLIP, "--realtime", "--speed", "100", "--segmenter", "pyannote",
              "--latency", "1", "--json", "--asr", "none", *home)
    assert res.exit_code == 0, res.output
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    end = objs[-1]
    assert end["type"] == "end" and end["status"] == "complete" and end["session_id"]
    segs = [o for o in objs[:-1] if o["final"]]
    assert segs and any(not o["final"] for o in objs[:-1])
    assert any(a["speaker"] != b["speaker"] and a["start"] < b["end"] and b["start"] < a["end"]
               for a in segs for b in segs)
    rttm = tmp_path / "clip.rttm"
    tr = cli("transcript", "--session", end["session_id"], "--out", rttm, *home)
    assert tr.exit_code == 0, tr.output
    assert any(ln.startswith("SPEAKER") for ln in rttm.read_text().splitlines())


def test_live_labeller_names_the_owner_on_calibrated_bars(tmp_path: Path) -> None:
    """With the shipped calibration (issue 12), the rolling-buffer labeller measures each local voice (seconds,
    band, SNR) and labels the enrolled owner's other take Me, and the other voice that follows an unknown
    speaker, in its final labels."""
    from idme.audio import read_audio
    from idme.eval.calibration import load as load_calibration
    from idme.identity.enroll import enroll
    from idme.identity.profiles import ProfileStore

    embedder = CampPlusEmbedder()
    th = load("campplus")
    store = ProfileStore(tmp_path)
    enroll(store, embedder, "me", [("take1", read_audio(DATA / "ls_2414_128291-0003.flac"))], th)
    cal = load_calibration(f"{embedder.name}@{embedder.version}")
    assert cal is not None
    owner, other = read_audio(DATA / "ls_2414_128291-0009.flac"), read_audio(DATA / "ls_3005_163389-0007.flac")
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([owner, gap, other, gap])
    lab = PyannoteLabeller(embedder, th, store.all(), LiveOptions(latency_s=2.0), live=True, calibration=cal)
    latest = {}
    for i in range(0, len(audio), BLOCK):
        for e in lab.push(AudioFrame(audio[i:i + BLOCK], 16000, i, arrived_at=0.0)):
            latest[e.id] = e
    for e in lab.finish():
        latest[e.id] = e
    q = np.stack(lab._emb_quality)[np.stack(lab._emb_valid)]
    assert len(q) and np.isfinite(q[:, :2]).all()  # every embedded voice was measured
    owner_end = len(owner) / 16000
    finals = [e for e in latest.values() if e.final]
    me_s = sum(min(e.end, owner_end) - e.start for e in finals if e.kind == "me" and e.start < owner_end)
    assert me_s >= 0.6 * owner_end, [(e.start, e.end, e.label, e.kind) for e in finals]
    later = [e for e in finals if e.start >= owner_end + 0.5]
    assert later and all(e.kind == "unknown" for e in later), [(e.start, e.label, e.kind) for e in later]
