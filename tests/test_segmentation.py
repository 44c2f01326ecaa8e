"""pyannote segmentation-3.0 on onnxruntime: the exported model, powerset decoding, and overlap-aware labelling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme import models
from idme.embed.campplus import CampPlusEmbedder
from idme.eval.der import read_rttm, score_segments, read_hypothesis
from idme.identity.profiles import ProfileStore
from idme.identity.thresholds import load
from idme.segment import SpeechRegion, to_events
from idme.segment.pyannote import (NUM_FRAMES, WINDOW_SAMPLES, PyannoteSegmenter, SegmentationModel, _WindowStream,
                                   decode_powerset, label_file, window_starts)

DATA = Path(__file__).parent / "data"
# 20 s of AMI trn09 (three people, two of them often at once) and its reference, cut at 20 s.
AMI_CLIP = DATA / "ami_trn09_0-20s.flac"
AMI_RTTM = DATA / "ami_trn09_0-20s.rttm"
# Written by scripts/segmentation_reference.py with pyannote.audio 4.0.7's own Model on AMI_CLIP.
REFERENCE = DATA / "segmentation_reference.npz"


def _read(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def model() -> SegmentationModel:
    return SegmentationModel()


@pytest.fixture(scope="module")
def embedder() -> CampPlusEmbedder:
    return CampPlusEmbedder()


@pytest.fixture(scope="module")
def clip_labels(embedder: CampPlusEmbedder) -> list:
    """The AMI clip labelled once (shared by the tests that only read the result)."""
    return PyannoteSegmenter(embedder, load("campplus")).label(_read(AMI_CLIP))


def test_onnx_reproduces_pyannote_audio_on_real_speech(model: SegmentationModel) -> None:
    """On three 10 s windows of a real meeting, the bundled ONNX gives pyannote.audio's log-probabilities
    to within 1e-3, and the decoded speakers agree on at least 99.5% of frames."""
    ref = np.load(REFERENCE)
    meta = json.loads(str(ref["_meta"]))
    assert meta["pyannote.audio"] == "4.0.7" and meta["clip"] == AMI_CLIP.name
    audio = _read(AMI_CLIP)
    windows = np.stack([audio[s:s + WINDOW_SAMPLES] for s in ref["starts"]])
    got = model.log_probs(windows)
    assert got.shape == ref["log_probs"].shape == (3, NUM_FRAMES, 7)
    assert float(np.abs(got - ref["log_probs"]).max()) <= 1e-3
    assert (decode_powerset(got) == decode_powerset(ref["log_probs"])).all(axis=-1).mean() >= 0.995
    # The clip is real overlapped speech: some frames decode to two speakers (a silent model would fail).
    assert (decode_powerset(got).sum(-1) == 2).mean() > 0.05


def test_bundled_model_is_registered_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`idme models` lists segmentation-3.0 as installed from the package copy, whose ONNX matches the
    manifest's sha256; a corrupted copy fails the check."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    rows = {r.key: r for r in models.list_models()}
    row = rows["segmentation-3.0"]
    shipped = models.bundled_dir("segmentation-3.0")
    assert row.installed and row.path == str(shipped) and row.licence == "MIT"
    assert {"LICENSE", "README.md", "manifest.json", "segmentation-3.0.onnx"} <= {p.name for p in shipped.iterdir()}
    manifest = json.loads((shipped / "manifest.json").read_text())
    assert manifest["source"]["pt_sha256"].startswith(manifest["version"])
    copy = tmp_path / "segmentation-3.0"
    copy.mkdir()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "segmentation-3.0.onnx").write_bytes(b"not a model")
    assert not models.get_spec("segmentation").check(copy)


def test_powerset_decoding_maps_classes_to_local_speakers() -> None:
    """Class k of the 7-class powerset decodes to pyannote's speaker sets: none, {0}, {1}, {2}, {0,1},
    {0,2}, {1,2}."""
    log_probs = np.log(np.eye(7, dtype=np.float32) * 0.9 + 0.1 / 7)
    got = decode_powerset(log_probs).astype(int).tolist()
    assert got == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]


@pytest.mark.parametrize("n,step,expected", [
    (16_000, 16_000, [0]),                                  # shorter than a window: one, zero-padded
    (160_000, 16_000, [0]),
    (200_000, 16_000, [0, 16_000, 32_000, 40_000]),         # the last window ends at the last sample
    (192_000, 16_000, [0, 16_000, 32_000]),
])
def test_windows_cover_the_whole_signal(n: int, step: int, expected: list[int]) -> None:
    """Windows start every step and the last one ends exactly at the end of the signal."""
    assert window_starts(n, step).tolist() == expected


@pytest.mark.parametrize("n", [1_000, 159_999, 160_000, 200_000, 437_123])
def test_window_stream_gives_the_windows_of_the_whole_signal(n: int) -> None:
    """Read in blocks of odd sizes, a signal gives exactly window_starts' windows with the samples of the whole
    array (zero-padded past the end of a short one), holding only about a window of it at a time."""
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    step = 40_000
    blocks = (x[i:i + 7_919] for i in range(0, n, 7_919))
    stream = _WindowStream(blocks, step)
    got = list(stream)
    assert [s for s, _, _ in got] == window_starts(n, step).tolist() and stream.n_samples == n
    for s, window, n_valid in got:
        assert n_valid == min(WINDOW_SAMPLES, n - s)
        assert np.array_equal(window[:n_valid], x[s:s + n_valid]) and not window[n_valid:].any()


def test_label_file_streams_the_recording_and_matches_the_whole_signal(
        embedder: CampPlusEmbedder, clip_labels: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """label_file reads the recording in blocks (reading it whole is never called) and gives exactly the
    events of labelling the whole signal at once."""
    import idme.audio.file

    def whole(*a, **k):
        raise AssertionError("label_file read the whole file")

    monkeypatch.setattr(idme.audio.file, "read_audio", whole)
    assert label_file(AMI_CLIP, embedder, [], load("campplus")) == to_events(clip_labels, 16000)


class _SignEmbedder:
    """A stand-in encoder: voice "A" for clips whose mean is negative, voice "B" otherwise."""

    sample_rate, dimension, min_input_s = 16000, 2, 0.5

    def embed_batch(self, clips):
        return np.array([[0.0, 1.0] if np.mean(c) > 0 else [1.0, 0.0] for c in clips], np.float32)


def test_cannot_link_keeps_two_voices_of_one_window_apart() -> None:
    """Two similar voices (cosine ~0.6, above the AHC stop) merge into one cluster, unless one window heard
    both as distinct local speakers: then they stay two, and what joins either keeps the constraint. The
    user's speaker-count bounds steer the same merging."""
    from idme.segment.pyannote import _ahc, solo_seconds

    rng = np.random.default_rng(0)
    base = rng.normal(size=64)
    a, b = (base + rng.normal(size=64) * 0.8 for _ in range(2))
    def rows(v, n):
        x = v + rng.normal(size=(n, 64)) * 0.1
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    vecs = np.vstack([rows(a, 4), rows(b, 4)])
    assert 0.4 < float(vecs[:4].mean(0) @ vecs[4:].mean(0)) / np.linalg.norm(vecs[:4].mean(0)) \
        / np.linalg.norm(vecs[4:].mean(0)) < 0.8
    assert len(set(_ahc(vecs, 0.30, 1, 2000).tolist())) == 1
    cannot = np.zeros((8, 8), bool)
    cannot[0, 4] = cannot[4, 0] = True  # rows 0 and 4: two local speakers of one window
    ids = _ahc(vecs, 0.30, 1, 2000, cannot)
    assert len(set(ids[:4].tolist())) == 1 and len(set(ids[4:].tolist())) == 1 and ids[0] != ids[4]
    # Speaker-count bounds: at least two keeps the two voices apart; at most one wins over cannot-link.
    ids = _ahc(vecs, 0.30, 1, 2000, min_clusters=2)
    assert len(set(ids[:4].tolist())) == 1 and len(set(ids[4:].tolist())) == 1 and ids[0] != ids[4]
    assert len(set(_ahc(vecs, 0.30, 1, 2000, cannot, max_clusters=1).tolist())) == 1
    # Seconds alone per local speaker: frames where only that speaker is on.
    act = np.zeros((1, NUM_FRAMES, 3), bool)
    act[0, :100, 0] = act[0, 50:150, 1] = True
    assert np.allclose(solo_seconds(act)[0], [50 * 270 / 16000, 50 * 270 / 16000, 0.0])


def test_resegmentation_moves_frames_to_the_voice_the_audio_matches() -> None:
    """Where one unknown label covers two voices (6 s heard as one local speaker), the frames of the
    second voice move to the label whose centroid its 1.5 s windows match; the first voice's frames stay."""
    from idme.segment.pyannote import FRAME_STEP_SAMPLES, _Labels

    x = np.concatenate([np.full(48_000, -0.1, np.float32), np.full(48_000, 0.1, np.float32)])
    seg = PyannoteSegmenter(_SignEmbedder(), load("campplus"))
    labels = _Labels(["Speaker 1", "Speaker 2"], ["unknown"] * 2, [0.0, 0.0],
                     [np.array([1.0, 0.0]), np.array([0.0, 1.0])])
    T = len(x) // FRAME_STEP_SAMPLES
    on = np.zeros((T, 2), bool)
    on[:, 0] = True
    seg.resegment(on, labels, lambda: [x], len(x))
    centre_s = (np.arange(T) * FRAME_STEP_SAMPLES + 495) / 16000
    assert on[centre_s < 2.2, 0].all() and not on[centre_s < 2.2, 1].any()
    second = (centre_s > 3.8) & (centre_s < 5.9)  # the windows (every 0.75 s, 1.5 s long) end at 6 s
    assert on[second, 1].all() and not on[second, 0].any()
    assert (on.sum(axis=1) == 1).all()


def test_labels_a_real_meeting_with_overlap(clip_labels: list) -> None:
    """On 20 s of a real AMI meeting the segmenter labels overlapping speech of two people at once and
    scores a DER (±0.25 s collar, overlap counted) of at most 25% (webrtc path, one label per frame: ~40%)."""
    events = to_events(clip_labels, 16000)
    assert events and all(set(e) == {"id", "start", "end", "speaker", "kind", "score", "final", "latency_ms",
                                      "text"} for e in events)
    assert all(e["kind"] == "unknown" and e["speaker"].startswith("Speaker ") for e in events)
    overlapping = [(a, b) for a in events for b in events
                   if a["speaker"] < b["speaker"] and a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "no two speakers labelled at the same time"
    ref = read_rttm(AMI_RTTM)["ami_trn09_0-20s"]
    result = score_segments(ref, read_hypothesis(events), overlapping_hyp=True)
    assert result.der <= 0.25, result.to_dict()


@pytest.mark.parametrize("calibrated", [False, True], ids=["cosine-bars", "calibrated-bars"])
def test_enrolled_person_is_named_and_others_stay_unknown(embedder: CampPlusEmbedder, tmp_path: Path,
                                                          calibrated: bool) -> None:
    """With the owner enrolled from one LibriSpeech take, the owner's other take inside a three-voice
    recording is labelled Me (kind "me") and the two other voices, which overlap, are unknown speakers: on the
    cosine bars and on the shipped calibration's bars (each local voice's own seconds, band and SNR)."""
    from idme.eval.calibration import load as load_calibration
    from idme.identity.enroll import enroll

    th = load("campplus")
    store = ProfileStore(tmp_path)
    enroll(store, embedder, "me", [("take1", _read(DATA / "ls_2414_128291-0003.flac"))], th)
    owner = _read(DATA / "ls_2414_128291-0009.flac")
    b, c = _read(DATA / "ls_3005_163389-0007.flac"), _read(DATA / "ls_367_130732-0006.flac")
    gap = np.zeros(8000, np.float32)
    mix = np.zeros(len(b) + 16000 + len(c) // 2, np.float32)   # c starts 1 s into b: ~1 s of overlap
    mix[:len(b)] += b
    mix[16000:16000 + len(c)] += c[: len(mix) - 16000]
    audio = np.concatenate([owner, gap, mix, gap])
    cal = load_calibration(f"{embedder.name}@{embedder.version}") if calibrated else None
    assert cal is not None or not calibrated
    seg = PyannoteSegmenter(embedder, th, store.all(), calibration=cal)
    events = seg.events(audio)
    if calibrated:  # the voices were measured, so the calibrated bars were the ones used
        an = seg.analyse([audio])
        assert np.isfinite(an.quality[an.valid][:, 1]).all()
    owner_end = len(owner) / 16000
    me = [e for e in events if e["kind"] == "me"]
    assert me and all(e["speaker"] == "Me" for e in me)
    me_s = sum(min(e["end"], owner_end) - e["start"] for e in me if e["start"] < owner_end)
    assert me_s >= 0.6 * owner_end  # the take has leading and trailing silence
    later = [e for e in events if e["start"] >= owner_end]
    assert later and all(e["kind"] == "unknown" for e in later)
    assert len({e["speaker"] for e in later}) >= 2


@pytest.mark.parametrize("audio", [
    np.zeros(0, np.float32),                       # empty
    np.zeros(12 * 16000, np.float32),              # silence longer than a window
    np.zeros(4000, np.float32),                    # a quarter second of silence
], ids=["empty", "silence-12s", "silence-0.25s"])
def test_no_speech_gives_no_events(embedder: CampPlusEmbedder, audio: np.ndarray) -> None:
    """Empty input and silence give no events (and no error)."""
    assert PyannoteSegmenter(embedder, load("campplus")).events(audio) == []


def test_short_speech_is_padded_and_labelled(embedder: CampPlusEmbedder) -> None:
    """Speech shorter than one window is zero-padded, labelled as one speaker, and no region runs past the
    end of the input."""
    audio = _read(DATA / "ls_533_1066-0000.flac")
    regions = PyannoteSegmenter(embedder, load("campplus")).regions(audio)
    assert regions and all(isinstance(r, SpeechRegion) for r in regions)
    assert {r.speaker for r in regions} == {0}
    assert all(0 <= r.start_sample < r.end_sample <= len(audio) for r in regions)
    assert sum(r.samples for r in regions) >= 0.5 * len(audio)


def test_eval_meetings_cli_scores_overlapping_labels(tmp_path: Path) -> None:
    """`idme eval meetings --segmenter pyannote --json` scores the AMI clip with overlap counted and beats
    the webrtc default on it; an unknown segmenter is a usage error (exit 2)."""
    from clihelp import cli  # the CLI in-process, with IDME_* variables cleared

    rttm_set = tmp_path / "ami"
    rttm_set.mkdir()
    (rttm_set / "ami_trn09_0-20s.flac").write_bytes(AMI_CLIP.read_bytes())
    (rttm_set / "reference.rttm").write_bytes(AMI_RTTM.read_bytes())
    home = ["--home", str(tmp_path / "home")]
    ders = {}
    for name in ("webrtc", "pyannote"):
        res = cli("eval", "meetings", rttm_set, "--segmenter", name, "--json", *home)
        assert res.exit_code == 0, res.output
        out = json.loads(res.stdout)
        assert out["segmenter"] == name
        ders[name] = out["rttm_sets"][0]["pooled"]["der"]
    assert ders["pyannote"] < ders["webrtc"]
    bad = cli("eval", "meetings", rttm_set, "--segmenter", "nope", *home)
    assert bad.exit_code == 2 and "--segmenter" in bad.stderr


def test_overlap_flag_marks_regions_that_share_time(clip_labels: list) -> None:
    """On the AMI clip some regions are flagged as overlapped, and each flagged region shares time with a
    region of another speaker while unflagged ones share none."""
    regions = [r.region for r in clip_labels]
    assert any(r.overlap for r in regions)
    for r in regions:
        shares = any(o.speaker != r.speaker and o.start_sample < r.end_sample and r.start_sample < o.end_sample
                     for o in regions)
        assert r.overlap == shares, r


def test_listen_file_with_pyannote_prints_overlapping_events(tmp_path: Path) -> None:
    """`idme listen --file CLIP --segmenter pyannote --json` prints segment events of two speakers that overlap
    in time, then one end object; --latency without --segmenter pyannote is a usage error (exit 2)."""
    from clihelp import cli

    home = ["--home", str(tmp_path / "home")]
    res = cli("listen", "--file", AMI_CLIP, "--segmenter", "pyannote", "--json", "--asr", "none", *home)
    assert res.exit_code == 0, res.output
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    segs, end = objs[:-1], objs[-1]
    assert end["type"] == "end" and end["status"] == "complete" and end["audio_s"] == pytest.approx(20.0)
    assert segs and all(o["type"] == "segment" and o["final"] for o in segs)
    assert any(a["speaker"] != b["speaker"] and a["start"] < b["end"] and b["start"] < a["end"]
               for a in segs for b in segs)
    assert set(end["speakers"]) == {o["speaker"] for o in segs}
    bad = cli("listen", "--file", AMI_CLIP, "--latency", "1", *home)
    assert bad.exit_code == 2 and "--latency" in bad.stderr


def test_webrtc_segmenter_regions_match_the_webrtc_path(embedder: CampPlusEmbedder) -> None:
    """WebrtcSegmenter implements the Segmenter protocol, and on a real AMI clip its regions are the webrtc
    path's final segments: same ends, same starts (where no pause was filled) within 30 ms, same labels."""
    from idme.eval.meetings import label_file
    from idme.segment import Segmenter
    from idme.segment.webrtc import WebrtcSegmenter

    th = load("campplus")
    seg = WebrtcSegmenter(embedder, th, [])
    assert isinstance(seg, Segmenter)
    regions = seg.regions(_read(AMI_CLIP))
    latest = {}
    for e in label_file(AMI_CLIP, embedder, [], th, "webrtc"):
        latest[e["id"]] = e
    events = sorted(latest.values(), key=lambda e: e["start"])
    assert len(regions) == len(events) >= 3
    assert len({r.speaker for r in regions}) >= 2
    prev_end = None
    for r, label, e in zip(regions, seg.labels, events):
        assert abs(r.end_sample / 16000 - e["end"]) <= 0.03
        if e["start"] != prev_end:  # a filled pause shows the segment from the previous one's end
            assert abs(r.start_sample / 16000 - e["start"]) <= 0.03
        assert e["start"] <= r.start_sample / 16000 + 0.03 and not r.overlap
        assert label == e["speaker"]
        prev_end = e["end"]


def test_pyannote_file_session_keeps_voices_so_a_speaker_can_be_named(tmp_path: Path) -> None:
    """A recording labelled with `--segmenter pyannote` keeps each speaker's voice samples, so `idme name`
    turns its most-heard unknown speaker into a profile that the next labelling of the recording uses."""
    from clihelp import cli
    from conftest import EXAMPLES

    home = ["--home", str(tmp_path / "home")]
    wav = tmp_path / "meeting.wav"
    x, rate = sf.read(EXAMPLES / "meeting.wav", dtype="float32")
    sf.write(wav, x[: 30 * rate], rate)
    res = cli("listen", "--file", wav, "--segmenter", "pyannote", "--json", "--asr", "none", *home)
    assert res.exit_code == 0, res.output
    segs = [json.loads(line) for line in res.stdout.splitlines()][:-1]
    speech: dict[str, float] = {}
    for o in segs:
        speech[o["speaker"]] = speech.get(o["speaker"], 0.0) + o["end"] - o["start"]
    most = max(speech, key=speech.get)
    named = cli("name", "latest", most, "alice", *home)
    assert named.exit_code == 0, named.output
    again = cli("listen", "--file", wav, "--segmenter", "pyannote", "--json", "--asr", "none", *home)
    labels = {json.loads(line).get("speaker") for line in again.stdout.splitlines()[:-1]}
    assert again.exit_code == 0, again.output
    assert "alice" in labels, labels
