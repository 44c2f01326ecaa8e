"""Labelling real speech end to end: enrollment, Me / named / unknown, re-clustering, rates, realtime path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import soxr

from idme.audio.sources import FileSource, RealtimeFileSource, read_audio
from idme.errors import EnrollmentError
from idme.eval.der import score_meeting
from idme.identity.enroll import enroll
from idme.identity.profiles import Profile, ProfileStore
from idme.identity.thresholds import load
from idme.identity.tracker import SpeakerTracker
from idme.pipeline import Labeller, Pipeline

from conftest import BOB_TAKE, DATA, EXAMPLES, OWNER_TAKES

DATA_CLIP_1998 = DATA / "audio_src_1998.flac"


def _profiles(tmp_path, emb, with_bob=False):
    store = ProfileStore(tmp_path)
    th = load(emb.name)
    enroll(store, emb, "me", [(str(p), read_audio(p)) for p in OWNER_TAKES], th)
    if with_bob:
        enroll(store, emb, "bob", [(str(BOB_TAKE), read_audio(BOB_TAKE))], th)
    return store.all(), th


def _label_file(path, emb, profiles, th, **kw):
    lab = Labeller(emb, SpeakerTracker(profiles, emb.dimension, th), **kw)
    events = []
    with FileSource(path) as src:
        for frame in src.frames():
            events += lab.push(frame)
    events += lab.finish()
    return events, lab


def _final(events):
    last = {}
    for e in events:
        if e.final:
            last[e.id] = e
    return sorted(last.values(), key=lambda e: e.start)


def _ref():
    return [(float(l.split()[3]), float(l.split()[3]) + float(l.split()[4]), l.split()[7])
            for l in (EXAMPLES / "reference.rttm").read_text().splitlines()]


def _who(seg, ref):
    """The reference speaker talking most during ``seg``."""
    ov = {}
    for s, e, k in ref:
        ov[k] = ov.get(k, 0.0) + max(0.0, min(e, seg.end) - max(s, seg.start))
    return max(ov, key=ov.get)


def test_example_meeting_owner_labelled_me(tmp_path, campplus):
    """The owner's turns come out as Me and nobody else's do; DER on the example meeting is low."""
    profiles, th = _profiles(tmp_path, campplus)
    events, _ = _label_file(EXAMPLES / "meeting.wav", campplus, profiles, th)
    res = score_meeting(EXAMPLES, [e.to_dict() for e in events])
    assert res["me_recall"] >= 0.95
    assert res["false_me"] == 0.0
    assert res["der"] < 0.05
    finals = _final(events)
    # Two other people, each one stable unknown label after re-clustering.
    unknown = {e.speaker for e in finals if e.kind == "unknown"}
    assert len(unknown) == 2


def test_named_profile_and_unknown_speaker(tmp_path, campplus):
    """With bob (2414) enrolled by name, his turns are 'bob' (enrolled), 1998 is one unknown 'Speaker 1'."""
    profiles, th = _profiles(tmp_path, campplus, with_bob=True)
    events, _ = _label_file(EXAMPLES / "meeting.wav", campplus, profiles, th)
    ref = _ref()
    by_ref: dict[str, dict[str, float]] = {}
    for seg in _final(events):
        d = by_ref.setdefault(_who(seg, ref), {})
        d[(seg.speaker, seg.kind)] = d.get((seg.speaker, seg.kind), 0.0) + seg.end - seg.start
    top = {k: max(v, key=v.get) for k, v in by_ref.items()}
    assert top["1688"] == ("Me", "me")
    assert top["2414"] == ("bob", "enrolled")
    assert top["1998"] == ("Speaker 1", "unknown")
    # and the time each person got their right label is nearly all of their speech
    for k, want in top.items():
        assert by_ref[k][want] / sum(by_ref[k].values()) > 0.9


@pytest.mark.parametrize("rate,channels", [(8000, 1), (44100, 2), (48000, 1)])
def test_labels_survive_resampling(tmp_path, campplus, rate, channels):
    """The example meeting at 8 / 44.1 kHz stereo / 48 kHz is resampled once and labelled just as well."""
    x, sr = sf.read(EXAMPLES / "meeting.wav", dtype="float32")
    y = soxr.resample(x, sr, rate, "HQ")
    if channels == 2:
        y = np.stack([y, 0.5 * y], axis=1)
    path = tmp_path / f"meeting_{rate}.wav"
    sf.write(path, y, rate, subtype="PCM_16")
    profiles, th = _profiles(tmp_path, campplus)
    events, lab = _label_file(path, campplus, profiles, th)
    assert abs(lab.times.audio_s - len(x) / sr) < 0.1
    res = score_meeting(EXAMPLES, [e.to_dict() for e in events])
    assert res["me_recall"] >= 0.9 and res["false_me"] <= 0.01
    assert res["der"] < 0.1


def test_realtime_path_emits_latency_and_interims(tmp_path, campplus):
    """A recording played through the live path (threads, realtime source) gives first labels with a
    measured latency, interim labels for long turns, and the same final labelling as file mode."""
    profiles, th = _profiles(tmp_path, campplus)
    lab = Labeller(campplus, SpeakerTracker(profiles, campplus.dimension, th), live=True)
    got = []
    src = RealtimeFileSource(EXAMPLES / "meeting.wav", speed=8.0)
    Pipeline(src, lab, got.append).run()
    firsts = [e for e in got if e.latency_ms is not None and e.final]
    assert firsts and all(e.latency_ms >= 0 for e in firsts)
    assert any(not e.final for e in got), "long turns must produce interim labels"
    res = score_meeting(EXAMPLES, [e.to_dict() for e in got])
    assert res["me_recall"] >= 0.95 and res["false_me"] == 0.0


def test_pipeline_stop_drains_what_was_heard(tmp_path, campplus):
    """Stopping mid-stream (Ctrl+C) still labels and emits the speech already read, then returns."""
    profiles, th = _profiles(tmp_path, campplus)
    lab = Labeller(campplus, SpeakerTracker(profiles, campplus.dimension, th), live=True)
    got = []
    src = RealtimeFileSource(EXAMPLES / "meeting.wav", speed=8.0)
    pipe = Pipeline(src, lab, lambda e: (got.append(e), e.end > 10 and pipe.stop()))
    pipe.run()
    assert got, "segments heard before the stop are emitted"
    assert max(e.end for e in got) < 40, "the source stopped early"


def test_enroll_rejects_other_voice_and_silence(tmp_path, campplus):
    """The quality gate refuses a take of somebody else, and a silent take, saying how to redo it."""
    store = ProfileStore(tmp_path)
    th = load(campplus.name)
    takes = [(str(p), read_audio(p)) for p in OWNER_TAKES[:2]] + [(str(BOB_TAKE), read_audio(BOB_TAKE))]
    with pytest.raises(EnrollmentError, match="does not match"):
        enroll(store, campplus, "me", takes, th)
    assert not store.exists("me"), "nothing is saved when a take fails"
    with pytest.raises(EnrollmentError, match="speech"):
        enroll(store, campplus, "me", [("silence", np.zeros(16000 * 5, np.float32))], th)
    clipped = np.clip(read_audio(OWNER_TAKES[0]) * 40, -1, 1)
    with pytest.raises(EnrollmentError, match="clipped"):
        enroll(store, campplus, "me", [("loud", clipped)], th)


def test_reenrolling_adds_takes(tmp_path, campplus):
    """Enrolling again adds takes to the same profile."""
    store = ProfileStore(tmp_path)
    th = load(campplus.name)
    enroll(store, campplus, "me", [(str(OWNER_TAKES[0]), read_audio(OWNER_TAKES[0]))], th)
    enroll(store, campplus, "me", [(str(p), read_audio(p)) for p in OWNER_TAKES[1:]], th)
    assert len(store.get("me").embeddings) == 3


# -- decision logic with a fake encoder (diart's DummyEmbeddingModel idea) ------------------------------
def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


DIM = 64
_BASIS = np.linalg.qr(np.random.default_rng(42).normal(size=(DIM, DIM)))[0].T.astype(np.float32)


def _voice(k):
    """Voice ``k``: orthogonal to every other voice, as different speakers roughly are (cosine ~0)."""
    return _BASIS[k]


def _noisy(v, rng, amount=0.35):
    return _unit(v + amount * rng.normal(size=v.shape) / np.sqrt(len(v)) * 3)


def test_decisions_me_named_unknown():
    """Me, a named profile and an unknown voice are told apart; the same unknown voice keeps its label."""
    rng = np.random.default_rng(0)
    me, bob, stranger = _voice(1), _voice(2), _voice(3)
    profiles = [Profile("me", {}, np.stack([_noisy(me, rng) for _ in range(3)])),
                Profile("bob", {}, np.stack([_noisy(bob, rng) for _ in range(3)]))]
    th = replace(load("campplus"))
    tr = SpeakerTracker(profiles, DIM, th)
    d = [tr.decide(i, _noisy(v, rng, 0.2), 2.0, 2.0 * i) for i, v in enumerate([me, bob, stranger, stranger])]
    assert [(x.label, x.kind) for x in d] == [("Me", "me"), ("bob", "enrolled"), ("Speaker 1", "unknown"),
                                              ("Speaker 1", "unknown")]


def test_reclustering_merges_a_duplicate_speaker():
    """A voice first split in two clusters (drifting embeddings) is merged by re-clustering and renumbered."""
    rng = np.random.default_rng(1)
    me, a = _voice(1), _voice(4)
    drift = _voice(5)
    profiles = [Profile("me", {}, np.stack([_noisy(me, rng) for _ in range(3)]))]
    th = replace(load("campplus"), same_unknown=0.95)  # online: strict, so the voice splits
    tr = SpeakerTracker(profiles, DIM, th)
    for i in range(8):
        v = _unit(a + (0.4 if i % 2 else 0.0) * drift)
        tr.decide(i, _noisy(v, rng, 0.05), 2.0, 2.0 * i)
    assert len({tr.label_of(i).label for i in range(8)}) > 1
    changed = tr.recluster(final=True)
    assert changed
    assert {tr.label_of(i).label for i in range(8)} == {"Speaker 1"}


def test_short_segment_takes_its_neighbours_speaker():
    """A segment too short to trust (0.4 s) between two owner segments is labelled from its context."""
    rng = np.random.default_rng(2)
    me, other = _voice(1), _voice(6)
    profiles = [Profile("me", {}, np.stack([_noisy(me, rng) for _ in range(3)]))]
    tr = SpeakerTracker(profiles, DIM, load("campplus"))
    tr.decide(0, _noisy(other, rng, 0.1), 3.0, 0.0)
    tr.decide(1, _noisy(me, rng, 0.1), 3.0, 3.5)
    # ambiguous short piece, closer to the owner than to the other voice but under the owner threshold
    amb = _unit(0.55 * me + 0.45 * other)
    tr.decide(2, amb, 0.4, 6.6)
    tr.decide(3, _noisy(me, rng, 0.1), 3.0, 7.2)
    tr.recluster(final=True)
    assert tr.label_of(2).kind == "me"
    assert tr.label_of(0).kind == "unknown"


def test_speaker_change_without_a_pause_is_split(tmp_path, campplus):
    """Two people talking back to back with no pause (one VAD chunk) get two labels, split near the turn."""
    from idme.audio.frames import AudioFrame
    from idme.vad import speech_only

    a = speech_only(read_audio(OWNER_TAKES[1]))[: 16000 * 5]
    b = speech_only(read_audio(DATA_CLIP_1998))[: 16000 * 3]
    x = np.concatenate([np.zeros(8000, np.float32), a, b, np.zeros(16000, np.float32)])
    profiles, th = _profiles(tmp_path, campplus)
    lab = Labeller(campplus, SpeakerTracker(profiles, campplus.dimension, th))
    events = lab.push(AudioFrame(x, 16000, 0)) + lab.finish()
    finals = _final(events)
    labels = [(e.speaker, round(e.start, 2), round(e.end, 2)) for e in finals]
    assert {e.kind for e in finals} == {"me", "unknown"}, labels
    turn = 0.5 + len(a) / 16000
    me_end = max(e.end for e in finals if e.kind == "me")
    assert abs(me_end - turn) < 0.8, labels


def test_telephone_rate_enrollment_and_meeting_use_the_narrowband_threshold(tmp_path, campplus):
    """Owner enrolled from 8 kHz takes, meeting at 8 kHz: the profile is marked narrow-band, the session's
    tracker holds it to the narrow-band threshold, and the owner is still found with no false Me."""
    from idme.identity.enroll import read_takes

    def to_8k(src, dst):
        x, sr = sf.read(src, dtype="float32")
        sf.write(dst, soxr.resample(x, sr, 8000, "HQ"), 8000, subtype="PCM_16")
        return dst

    takes, rates = read_takes([to_8k(p, tmp_path / p.name) for p in OWNER_TAKES])
    store = ProfileStore(tmp_path / "home")
    th = load(campplus.name)
    enroll(store, campplus, "me", takes, th, native_rates=rates)
    me = store.get("me")
    assert rates == [8000] * 3 and me.narrowband
    meeting = to_8k(EXAMPLES / "meeting.wav", tmp_path / "meeting8k.wav")
    tracker = SpeakerTracker(store.all(), campplus.dimension, th, narrowband=True)
    assert tracker._accept("me") == th.narrowband > th.me
    lab = Labeller(campplus, tracker)
    events = []
    with FileSource(meeting) as src:
        for frame in src.frames():
            events += lab.push(frame)
    events += lab.finish()
    res = score_meeting(EXAMPLES, [e.to_dict() for e in events])
    assert res["me_recall"] >= 0.9 and res["false_me"] <= 0.01, res


def test_live_session_hands_over_speakers_after_each_reclustering(tmp_path, campplus):
    """Live, every periodic re-clustering passes the speakers' voiceprints to ``on_speakers`` while the
    session runs (so a session killed later still has them), and once more at the end."""
    from idme.pipeline import LabelOptions

    profiles, th = _profiles(tmp_path, campplus)
    lab = Labeller(campplus, SpeakerTracker(profiles, campplus.dimension, th),
                   LabelOptions(recluster_every_s=15.0), live=True)
    got, snapshots = [], []
    src = RealtimeFileSource(EXAMPLES / "meeting.wav", speed=8.0)
    Pipeline(src, lab, got.append, on_speakers=lambda sp: snapshots.append((len(got), sp))).run()
    assert len(snapshots) >= 3, "periodic passes at 15, 30, 45 s plus the final one"
    first_at, first = snapshots[0]
    assert first_at < len(got), "the first snapshot arrives mid-session, before the last events"
    assert "Me" in first and first["Me"]["embeddings"].shape[1] == campplus.dimension
    final = snapshots[-1][1]
    assert {k for k, v in final.items() if v["kind"] == "unknown"} == {"Speaker 1", "Speaker 2"}


def test_short_unlike_segment_does_not_inherit_the_owner():
    """A sub-second segment right after the owner but with a voice unlike the owner's (cosine below the
    floor) is not labelled Me, though its only neighbour is Me."""
    from idme.identity.tracker import SHORT_ENROLLED_FLOOR

    rng = np.random.default_rng(3)
    me, other = _voice(1), _voice(7)
    profiles = [Profile("me", {}, np.stack([_noisy(me, rng) for _ in range(3)]))]
    tr = SpeakerTracker(profiles, DIM, load("campplus"))
    tr.decide(0, _noisy(me, rng, 0.1), 3.0, 0.0)
    assert float(other @ profiles[0].centroid) < SHORT_ENROLLED_FLOOR
    d = tr.decide(1, other, 0.6, 3.2)
    assert d.kind == "unknown"
    tr.recluster(final=True)
    assert tr.label_of(1).kind != "me"
