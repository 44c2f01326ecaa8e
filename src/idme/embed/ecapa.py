"""SpeechBrain ECAPA-TDNN speaker encoder (optional; needs the ``[ecapa]`` extra: torch + torchaudio).

Desplanques et al., "ECAPA-TDNN: Emphasized Channel Attention, Propagation and Aggregation in TDNN
Based Speaker Verification", Interspeech 2020; weights ``speechbrain/spkrec-ecapa-voxceleb``
(VoxCeleb 1+2, Apache-2.0), installed by ``python scripts/download_models.py --only ecapa``.

Importing this module is cheap: torch and SpeechBrain are imported when an :class:`EcapaEmbedder`
is constructed, so the default (CAM++/ONNX) path never pays for them.

Offline by construction: the Hugging Face hub is switched off in the environment before SpeechBrain
is imported, the hub id that the upstream ``hyperparams.yaml`` carries in ``pretrained_path`` is
overridden with the local directory, SpeechBrain's fetcher is told ``allow_network=False``, and
nothing is linked or copied (``LocalStrategy.NO_LINK``), so the model directory may be read-only.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import models
from ..errors import AudioError, IdmeError, ModelMissingError

logger = logging.getLogger(__name__)

#: SpeechBrain's Fbank front end and the VoxCeleb training data are 16 kHz.
SAMPLE_RATE_HZ = 16000
#: Shortest input that gives a usable voiceprint (the same 0.5 s as CAM++): 50 feature frames;
#: much shorter and the attentive statistics pooling averages too few frames to be stable.
MIN_INPUT_S = 0.5
#: Fewest samples the network runs on at all (40 ms): SpeechBrain's centred Fbank gives
#: 1 + n // 160 frames, and the dilation-4 TDNN layer reflect-pads 4 frames, which needs >= 5.
MIN_SAMPLES = 640
#: Windows embedded per forward pass in ``embed_windows`` (bounds memory: 16 x 1.5 s is small).
BATCH_WINDOWS = 16

_EXTRA_HINT = ("the ECAPA encoder needs the ecapa extra: pip install 'idme[ecapa]' "
               "(installs torch+torchaudio, ~4.6 GB)")


def _import_backend() -> tuple[Any, Any, Any, Any]:
    """torch, EncoderClassifier, FetchConfig and LocalStrategy, imported with the hub switched off."""
    # huggingface_hub reads these once, at its import, so they only bind if set before speechbrain
    # (or anything else) imports it; the hard guarantee is FetchConfig(allow_network=False) below.
    # They are set for the import only and restored after: a server or notebook that imports idme keeps its
    # own hub settings (review 2026-12-01 §1.14).
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")}
    os.environ.update({k: "1" for k in saved})
    try:
        import torch
        from speechbrain.inference.speaker import EncoderClassifier
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy
    except ImportError as exc:
        raise IdmeError(f"{_EXTRA_HINT} ({exc})") from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return torch, EncoderClassifier, FetchConfig, LocalStrategy


def weights_version(model_dir: str | os.PathLike[str]) -> str:
    """12 hex digits of sha256 over ``hyperparams.yaml`` and ``embedding_model.ckpt``.

    Taken from the files themselves, so two installs of the same weights agree however they were
    installed, and any other weights (another revision, a test model) differ.
    """
    digest = hashlib.sha256()
    for name in ("hyperparams.yaml", "embedding_model.ckpt"):
        digest.update(models.sha256_file(Path(model_dir) / name).encode("ascii"))
    return digest.hexdigest()[:12]


class EcapaEmbedder:
    """SpeechBrain ECAPA-TDNN behind idme's Embedder protocol.

    Embeddings are SpeechBrain's raw x-vectors (``encode_batch(normalize=False)``, as its own
    ``SpeakerRecognition.verify_batch`` scores them), L2-normalised here.
    """

    name = "ecapa"
    sample_rate = SAMPLE_RATE_HZ
    min_input_s = MIN_INPUT_S

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, device: str = "cpu") -> None:
        """Load the model in ``model_dir`` (default: the installed ``ecapa`` model) on ``device``.

        device: "cpu", or "cuda"/"cuda:N" when torch sees a CUDA GPU. Raises ModelMissingError
        (path and install command) when files are missing, IdmeError when torch/SpeechBrain are
        not installed or the device is unavailable.
        """
        spec = models.get_spec("ecapa")
        self.model_dir = Path(model_dir) if model_dir is not None else models.model_path(spec)
        if not (self.model_dir.is_dir() and spec.check(self.model_dir)):
            raise ModelMissingError(models.missing_message(spec, self.model_dir))
        torch, encoder_cls, fetch_config, local_strategy = _import_backend()
        self._torch = torch
        self.device = _check_device(torch, device)
        self.version = weights_version(self.model_dir)

        hyperparams = (self.model_dir / "hyperparams.yaml").read_text(encoding="utf-8")
        # The upstream file names the hub repository here; loading from it would download.
        overrides = ({"pretrained_path": str(self.model_dir)}
                     if "\npretrained_path:" in f"\n{hyperparams}" else {})
        try:
            self._model = encoder_cls.from_hparams(
                source=str(self.model_dir), savedir=None, overrides=overrides,
                local_strategy=local_strategy.NO_LINK,
                fetch_config=fetch_config(allow_network=False),
                run_opts={"device": self.device})
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise ModelMissingError(
                f"cannot load the ECAPA model in {self.model_dir}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}; reinstall it with "
                f"`{spec.install_command()} --force`") from None
        self._model.eval()
        # Read the dimension from the network rather than trusting a constant (tiny test models,
        # other ECAPA variants): one forward pass on MIN_INPUT_S of low-level noise.
        probe = np.random.default_rng(0).standard_normal(int(MIN_INPUT_S * SAMPLE_RATE_HZ))
        self.dimension = int(self._forward(probe[None, :].astype(np.float32) * 0.1).shape[1])
        logger.info("ECAPA loaded from %s on %s (version %s, %d-d)", self.model_dir, self.device,
                    self.version, self.dimension)

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """batch: float32 (b, n) at 16 kHz, equal lengths -> float32 (b, dim), unit-norm rows."""
        torch = self._torch
        with torch.inference_mode():
            wavs = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            lens = torch.ones(wavs.shape[0], device=self.device)
            out = self._model.encode_batch(wavs, lens, normalize=False)
        emb = out.reshape(out.shape[0], -1).float().cpu().numpy().astype(np.float64)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if not np.all(np.isfinite(emb)) or np.any(norms == 0.0):
            raise AudioError("the ECAPA encoder produced an invalid embedding (NaN or zero vector)")
        return (emb / norms).astype(np.float32)

    def _validate(self, samples: np.ndarray, what: str = "audio") -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"ECAPA expects mono samples of shape (n,), got shape {samples.shape}")
        if not np.all(np.isfinite(samples)):
            raise AudioError("ECAPA input contains NaN or infinite samples")
        _require_length(samples.shape[0], what)
        return samples

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """samples: float32, shape (n,), 16 kHz -> float32 (dimension,), unit norm.

        Raises AudioError below ``MIN_SAMPLES`` (40 ms); input shorter than ``min_input_s`` is
        embedded but unreliable, and callers should not enrol or decide on it.
        """
        return self._forward(self._validate(samples)[None, :])[0]

    def embed_windows(self, samples: np.ndarray, win_samples: int, hop_samples: int) -> np.ndarray:
        """Embeds windows [i*hop, i*hop + win) of ``samples`` (float32 (n,), 16 kHz).

        Returns float32 (n_windows, dimension), unit-norm rows; (0, dimension) when the signal is
        shorter than one window. Windows are embedded ``BATCH_WINDOWS`` at a time; each row equals
        ``embed`` of its window up to float rounding (same length, so no padding is involved).
        """
        if win_samples <= 0 or hop_samples <= 0:
            raise ValueError(f"win_samples and hop_samples must be positive, got "
                             f"{win_samples} and {hop_samples}")
        _require_length(win_samples, "window")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"ECAPA expects mono samples of shape (n,), got shape {samples.shape}")
        if samples.shape[0] < win_samples:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if not np.all(np.isfinite(samples)):
            raise AudioError("ECAPA input contains NaN or infinite samples")
        windows = np.lib.stride_tricks.sliding_window_view(samples, win_samples)[::hop_samples]
        rows = [self._forward(windows[i:i + BATCH_WINDOWS])
                for i in range(0, windows.shape[0], BATCH_WINDOWS)]
        return np.concatenate(rows, axis=0)


def _require_length(n_samples: int, what: str) -> None:
    if n_samples < MIN_SAMPLES:
        raise AudioError(f"{what} too short for an embedding: {n_samples} samples "
                         f"({1000 * n_samples / SAMPLE_RATE_HZ:.0f} ms) at {SAMPLE_RATE_HZ} Hz; "
                         f"ECAPA needs at least {MIN_SAMPLES} (40 ms)")


def _check_device(torch: Any, device: str) -> str:
    """``device`` if torch can use it; IdmeError with one line otherwise."""
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise IdmeError(f"ECAPA device {device!r} requested but torch {torch.__version__} "
                            "sees no CUDA GPU; use device='cpu'")
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise IdmeError(f"ECAPA device {device!r}: only {torch.cuda.device_count()} CUDA "
                            "device(s) visible")
        return device
    raise IdmeError(f"unsupported ECAPA device {device!r}; use 'cpu' or 'cuda'")
