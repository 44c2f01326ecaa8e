"""SpeechBrain ECAPA encoder: a tiny random ECAPA in SpeechBrain's layout, loaded offline, on real speech."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme import models
from idme.embed.base import Embedder
from idme.embed.ecapa import EcapaEmbedder, weights_version
from idme.errors import AudioError, IdmeError, ModelMissingError

pytestmark = pytest.mark.ecapa

DATA = Path(__file__).resolve().parent / "data"
#: LibriSpeech test-other 1998-15444-0007 (3.17 s) and 1688-142285-0000 (15.0 s), 16 kHz; see data/README.md.
CLIP_1998 = DATA / "audio_src_1998.flac"
CLIP_1688 = DATA / "asr_1688-142285-0000.flac"

HAVE_SPEECHBRAIN = all(importlib.util.find_spec(m) is not None for m in ("torch", "speechbrain"))
needs_speechbrain = pytest.mark.skipif(
    not HAVE_SPEECHBRAIN, reason="speechbrain/torch not installed (pip install 'idme[ecapa]')")


def _speech(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32")
    assert rate == 16000 and samples.ndim == 1
    return samples


@pytest.fixture(scope="module")
def tiny_ecapa(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ECAPA, installed with ``install_from`` into a fresh models directory."""
    if not HAVE_SPEECHBRAIN:
        pytest.skip("speechbrain/torch not installed (pip install 'idme[ecapa]')")
    from tiny_ecapa import write_tiny_ecapa

    source = write_tiny_ecapa(tmp_path_factory.mktemp("tiny_ecapa_src"))
    root = tmp_path_factory.mktemp("models")
    result = models.install_from("ecapa", source, root)
    return Path(result.path)


@pytest.fixture(scope="module")
def embedder(tiny_ecapa: Path) -> EcapaEmbedder:
    return EcapaEmbedder(tiny_ecapa)


def _block_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network access attempted during an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@needs_speechbrain
def test_loads_and_embeds_with_the_network_blocked(tiny_ecapa: Path, monkeypatch: pytest.MonkeyPatch):
    """With every socket connection refused, the model loads from its directory and embeds speech
    (the yaml's hub id in ``pretrained_path`` is overridden, nothing is fetched), and the process's own hub
    settings are left as they were."""
    _block_network(monkeypatch)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = sorted(p.name for p in tiny_ecapa.iterdir())
    encoder = EcapaEmbedder(tiny_ecapa)
    vector = encoder.embed(_speech(CLIP_1998))
    assert vector.shape == (192,)
    assert "HF_HUB_OFFLINE" not in os.environ  # set only while speechbrain is imported
    assert sorted(p.name for p in tiny_ecapa.iterdir()) == before  # nothing linked or written


@needs_speechbrain
def test_embeds_real_speech_to_a_deterministic_unit_vector(embedder: EcapaEmbedder, tiny_ecapa: Path):
    """Real speech gives a float32, 192-d, unit-norm vector, identical across calls and loads."""
    speech = _speech(CLIP_1998)
    first = embedder.embed(speech)
    assert first.dtype == np.float32 and first.shape == (192,)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5
    np.testing.assert_array_equal(embedder.embed(speech), first)
    np.testing.assert_allclose(EcapaEmbedder(tiny_ecapa).embed(speech), first, atol=1e-6)
    other = embedder.embed(_speech(CLIP_1688)[:48000])
    assert float(first @ other) < 0.9999  # different audio, different vector


@needs_speechbrain
def test_reports_embedder_attributes(embedder: EcapaEmbedder, tiny_ecapa: Path):
    """The embedder satisfies the protocol; dimension comes from the model, version from the weights."""
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.sample_rate, embedder.dimension) == ("ecapa", 16000, 192)
    assert embedder.min_input_s == pytest.approx(0.5)
    assert embedder.version == weights_version(tiny_ecapa) and len(embedder.version) == 12


def test_version_changes_with_the_weights(tmp_path: Path):
    """Different weight files give a different version string."""
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "hyperparams.yaml").write_text("n_mels: 80\n")
        (tmp_path / name / "embedding_model.ckpt").write_bytes(name.encode() * 100)
    assert weights_version(tmp_path / "a") != weights_version(tmp_path / "b")


@needs_speechbrain
def test_embed_windows_rows_match_embed(embedder: EcapaEmbedder):
    """``embed_windows`` returns one unit row per window, each equal to ``embed`` of that window."""
    speech = _speech(CLIP_1688)[: 16000 * 6]
    win, hop = 24000, 8000
    rows = embedder.embed_windows(speech, win, hop)
    assert rows.shape == (1 + (len(speech) - win) // hop, 192) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    for i in (0, rows.shape[0] - 1):
        np.testing.assert_allclose(rows[i], embedder.embed(speech[i * hop: i * hop + win]), atol=1e-4)
    assert embedder.embed_windows(speech[:1000], win, hop).shape == (0, 192)


@needs_speechbrain
def test_too_short_or_malformed_input_is_refused(embedder: EcapaEmbedder):
    """Input under 40 ms, stereo arrays and windows under 40 ms are refused with a reason, while
    short input above that floor (0.25 s) is still embedded."""
    speech = _speech(CLIP_1998)
    with pytest.raises(AudioError, match="too short for an embedding: 500 samples"):
        embedder.embed(speech[:500])
    with pytest.raises(AudioError, match="mono"):
        embedder.embed(np.zeros((16000, 2), dtype=np.float32))
    with pytest.raises(AudioError, match="window too short"):
        embedder.embed_windows(speech, 320, 160)
    assert embedder.embed(speech[:4000]).shape == (192,)


def test_missing_directory_names_path_and_install_command(tmp_path: Path):
    """A missing model directory raises ModelMissingError naming the model, the path and the command."""
    where = tmp_path / "spkrec-ecapa-voxceleb"
    with pytest.raises(ModelMissingError) as failure:
        EcapaEmbedder(where)
    message = str(failure.value)
    assert "ecapa" in message and str(where) in message
    assert "python scripts/download_models.py --only ecapa" in message


@needs_speechbrain
def test_missing_checkpoint_is_a_missing_model(tiny_ecapa: Path, tmp_path: Path):
    """A directory without a checkpoint its pretrainer needs is reported as a missing model."""
    copy = Path(shutil.copytree(tiny_ecapa, tmp_path / "ecapa"))
    (copy / "classifier.ckpt").unlink()
    with pytest.raises(ModelMissingError, match="classifier.ckpt"):
        EcapaEmbedder(copy)


def test_without_the_extra_the_error_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Without speechbrain importable, construction fails with the pip extra to install."""
    model = tmp_path / "ecapa"
    model.mkdir()
    (model / "hyperparams.yaml").write_text("pretrained_path: x\n")
    (model / "embedding_model.ckpt").write_bytes(b"\0" * 64)
    monkeypatch.setitem(sys.modules, "speechbrain", None)  # makes `import speechbrain...` fail
    monkeypatch.setitem(sys.modules, "speechbrain.inference", None)
    monkeypatch.setitem(sys.modules, "speechbrain.inference.speaker", None)
    with pytest.raises(IdmeError, match=r"pip install 'idme\[ecapa\]'"):
        EcapaEmbedder(model)


@needs_speechbrain
def test_cuda_without_a_gpu_is_a_clear_error(tiny_ecapa: Path):
    """Asking for CUDA where torch sees no GPU fails with one line instead of a torch traceback."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(IdmeError, match="sees no CUDA GPU"):
        EcapaEmbedder(tiny_ecapa, device="cuda")
    with pytest.raises(IdmeError, match="unsupported ECAPA device"):
        EcapaEmbedder(tiny_ecapa, device="tpu")


def test_importing_the_module_does_not_import_torch():
    """``import idme.embed.ecapa`` leaves torch and speechbrain unimported (the default path stays light)."""
    code = ("import sys, idme.embed.ecapa; "
            "print(sorted(m for m in ('torch', 'speechbrain', 'torchaudio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@needs_speechbrain
def test_real_ecapa_tells_speakers_apart():
    """With the real spkrec-ecapa-voxceleb installed, two halves of one talker outscore two talkers."""
    ok, path, _ = models.installed("ecapa")
    if not ok:
        pytest.skip(f"the real ECAPA model is not installed in {path}")
    encoder = EcapaEmbedder(path)
    long_clip = _speech(CLIP_1688)
    first, second = encoder.embed(long_clip[:16000 * 7]), encoder.embed(long_clip[16000 * 7:])
    other = encoder.embed(_speech(CLIP_1998))
    assert float(first @ second) > float(first @ other) + 0.2
