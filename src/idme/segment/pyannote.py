"""Overlap-aware segmentation with pyannote segmentation-3.0 on onnxruntime, and file-mode labelling on it.

The path (issue 11; pyannote.audio 3.1's SpeakerDiarization is the design reference, no code of it is used):

1. **Windows.** 10 s windows every ``step_s`` (the last one aligned to the end of the file; a file shorter
   than 10 s is zero-padded), each run through the bundled ONNX model: (589, 7) powerset log-probabilities.
2. **Powerset decoding.** The most likely class per frame becomes the set of active *local* speakers
   (at most 3 per window, at most 2 at once): (windows, 589, 3) booleans. The activity that is aggregated
   (step 5) is decoded with ``overlap_bias`` added to the three two-speaker classes; the embeddings use
   the plain decoding.
3. **Local speakers embedded** by the idme encoder (CAM++) on the samples of their frames where nobody else
   talks (overlap excluded), falling back to all their frames when that is too short.
4. **Clustering, enrolled people first.** A local speaker whose embedding reaches a profile's accept
   threshold (``identity.verify``, the same bar the live tracker uses) is that person; the others are
   clustered (average-linkage cosine AHC); a cluster whose voiceprint reaches a profile's threshold joins
   that person, the rest are "Speaker N". Then, as pyannote does, every unknown local speaker is
   re-assigned to the nearest unknown centroid, two local speakers of one window never sharing a label
   (an optimal assignment per window).
5. **Aggregation.** Per label, the window activities are averaged frame by frame over the windows that
   cover the frame (overlap-add), and so is each window's speaker count; on each frame the ``count``
   labels with the highest activity are on (count rounded half up; pyannote's "speaker count" step).
6. **Re-segmentation** (idme's own; the segmentation network sometimes hears two similar voices as one
   local speaker): 1.5 s windows every ``resegment_hop_s`` over single-speaker speech are embedded, and a
   frame where one unknown label is on moves to another unknown label whose centroid the covering windows
   match better by more than ``resegment_margin``.
7. **Regions.** Runs of "on" frames per label, gaps up to ``min_gap_s`` filled, widened by ``pad_start_s``
   and ``pad_end_s`` (unknown speakers only: an enrolled person's regions are not widened into a
   neighbour's turn); regions of different labels may overlap.

The signal is read in blocks, twice at most (steps 1-3, then step 6), so memory does not grow with the
length of the recording beyond the per-window arrays (a few bytes per frame).

Timestamps come from sample counts: frame ``j`` of a window starting at sample ``s`` is the global frame
``round(s / 270) + j``, centred at ``(270 * g + 495) / 16000`` s (270 samples per frame, 991-sample span).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AudioError, ModelMissingError
from .base import LabelledRegion, SpeechRegion, to_events

if TYPE_CHECKING:
    from ..embed.base import Embedder
    from ..identity.profiles import Profile
    from ..identity.thresholds import Thresholds

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
#: Model geometry, as written by scripts/export_segmentation.py into the manifest (checked on load).
WINDOW_SAMPLES = 160_000
NUM_FRAMES = 589
FRAME_STEP_SAMPLES = 270
FRAME_SPAN_SAMPLES = 991
#: Powerset class -> active local speakers (pyannote's order for 3 speakers, at most 2 at once).
POWERSET = ((), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
MAX_LOCAL = 3
#: Re-segmentation window: 1.5 s. On the AMI dev excerpts, whose two voices the network often hears as one
#: local speaker, CAM++ on 1.5 s windows tells them apart ~95% of the time (nearest centroid).
RESEGMENT_SAMPLES = 24_000


@dataclass(frozen=True)
class PyannoteOptions:
    """Settings of the pyannote segmenter (defaults chosen on ami-excerpts trn* only: bench/segmentation.py)."""

    #: Hop between 10 s windows, seconds: 1 s, as pyannote 3.1 (10% of the window). With every other setting
    #: tuned, trn* scored 13.7% / 25.2% (collar 0.25 / 0) at 1 s against 14.5% / 25.7% at 2.5 s, which
    #: costs 40% as much (bench/segmentation.py).
    step_s: float = 1.0
    #: Shortest speech of one local speaker (seconds) worth an embedding; shorter ones are dropped.
    min_embed_s: float = 0.4
    #: AHC stop: unknown clusters whose average-linkage cosine similarity is below this stay apart.
    cluster_similarity: float = 0.30
    #: Clusters with fewer members than this are folded into the most similar larger cluster (when one
    #: exists): a handful of window embeddings is too little to be a speaker of its own.
    min_cluster_size: int = 2
    #: Cannot-link: two local speakers of one window that each speak at least this long alone in it
    #: (seconds) are two people, so AHC never puts them (or what they merge into) in one cluster; 0 turns
    #: it off. Chosen on trn* over {0, 1, 2, 3} s x AHC similarity x smallest cluster, the rest fixed
    #: (`bench/segmentation.py --tune-only cannot_link_s cluster_similarity min_cluster_size`): trn 13.8% /
    #: 24.8% (collar 0.25 / 0) at 1 s against 13.7% / 25.2% off; held-out dev 26.9% against 36.5%, where
    #: AHC had merged the two voices. Every pair with no floor made trn worse (16.4% / 28.9%): a short
    #: local speaker is often a fragment of the window's other voice.
    cannot_link_s: float = 1.0
    #: An embedding is labelled as an enrolled person on its own when it beats that person's accept bar
    #: by this margin; otherwise only its cluster's voiceprint can make it that person. Local-speaker
    #: embeddings are short and noisy: on meetings-dev (enrolled Me) 0.1 cut mean false_me 11.1% -> 5.5% and
    #: mean DER 26.1% -> 23.3% (me_recall 87.3% -> 85.6%); ami-excerpts have no profiles, so it is unaffected.
    #: (Measured on cosine bars; with a calibration the margin is added to the embedding's calibrated bar.)
    embedding_accept_margin: float = 0.1
    #: Added to the log-probabilities of the two-speaker powerset classes when decoding the activity that
    #: is aggregated (not the frames embeddings are taken from): the network under-calls overlap.
    overlap_bias: float = 1.0
    #: Gaps shorter than this (seconds) inside one label's speech are filled (pyannote's min_duration_off).
    min_gap_s: float = 0.0
    #: Regions shorter than this (seconds) are dropped: a lone frame or two (17-34 ms) of an enrolled person, who
    #: gets no padding, is a blip in a transcript, not a turn. At 0.1 (vs 0): AMI excerpts pooled DER 16.17% ->
    #: 16.18%, meetings-dev mean 14.68% -> 14.19% (false alarm 1.73% -> 0.90%), me_recall / false_me unchanged.
    min_region_s: float = 0.1
    #: Each region starts this much (seconds) earlier and ends ``pad_end_s`` later (regions of one label
    #: that then touch are merged): the network's speech lies a little inside the reference's word bounds.
    pad_start_s: float = 0.1
    pad_end_s: float = 0.15
    #: Re-segmentation: hop (seconds) of the 1.5 s windows embedded over single-speaker speech; 0 turns
    #: the step off.
    resegment_hop_s: float = 0.75
    #: Re-segmentation: a frame moves to another unknown label when the windows covering it are closer to
    #: that label's centroid by more than this cosine.
    resegment_margin: float = 0.1
    #: Re-segmentation: a 1.5 s window is used when at least this share of its frames has one label on.
    resegment_single: float = 0.8
    #: Bounds on the speakers a recording gets (``--min/--max/--num-speakers``; enrolled people count):
    #: AHC merges on below ``cluster_similarity`` while more than ``max_speakers`` clusters are left, and
    #: stops at ``min_speakers``. None: no bound.
    min_speakers: int | None = None
    max_speakers: int | None = None
    #: At most this many embeddings enter AHC (its memory is quadratic); the rest join the nearest cluster.
    max_ahc: int = 2000
    #: onnxruntime intra-op threads (0: min(2, cpu count)).
    intra_op_threads: int = 0
    #: Windows per onnxruntime call.
    batch: int = 8


class SegmentationModel:
    """The bundled segmentation-3.0 ONNX network; the session is created lazily, once."""

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, intra_op_threads: int = 0) -> None:
        from .. import models

        self.model_dir = Path(model_dir) if model_dir is not None else models.model_path("segmentation-3.0")
        try:
            manifest = json.loads((self.model_dir / "manifest.json").read_text(encoding="utf-8"))
            self.onnx_path = self.model_dir / str(manifest["file"])
            self._sha256 = str(manifest["onnx_sha256"]).lower()
            geometry = (manifest["window_samples"], manifest["num_frames"], manifest["frame_step_samples"])
        except (OSError, ValueError, KeyError, TypeError):
            raise ModelMissingError(models.missing_message("segmentation-3.0", self.model_dir)) from None
        if not self.onnx_path.is_file():
            raise ModelMissingError(models.missing_message("segmentation-3.0", self.model_dir))
        if tuple(geometry) != (WINDOW_SAMPLES, NUM_FRAMES, FRAME_STEP_SAMPLES):
            raise ModelMissingError(f"{self.model_dir / 'manifest.json'}: window/frame geometry {geometry} is not "
                                    "segmentation-3.0's (160000, 589, 270)")
        self.version: str = str(manifest.get("version") or self._sha256[:12])
        self._threads = intra_op_threads
        self._session: Any = None
        self._lock = threading.Lock()

    def _get_session(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                from .. import models

                if models.sha256_file(self.onnx_path) != self._sha256:
                    raise ModelMissingError(f"{self.onnx_path} does not match the sha256 in its manifest "
                                            "(corrupt or replaced); reinstall idme")
                so = ort.SessionOptions()
                so.intra_op_num_threads = self._threads or min(2, os.cpu_count() or 1)
                so.inter_op_num_threads = 1
                self._session = ort.InferenceSession(str(self.onnx_path), so, providers=["CPUExecutionProvider"])
        return self._session

    def log_probs(self, windows: np.ndarray) -> np.ndarray:
        """windows: float32 (B, 160000), 16 kHz -> float32 (B, 589, 7) powerset log-probabilities."""
        x = np.ascontiguousarray(windows, dtype=np.float32)[:, None, :]
        return self._get_session().run(None, {"waveform": x})[0]


def window_starts(n_samples: int, step_samples: int) -> np.ndarray:
    """Start sample of each 10 s window: every ``step_samples``, plus one ending exactly at the file's end."""
    if n_samples <= WINDOW_SAMPLES:
        return np.zeros(1, dtype=np.int64)
    last = n_samples - WINDOW_SAMPLES
    starts = list(range(0, last + 1, step_samples))
    if starts[-1] != last:
        starts.append(last)
    return np.asarray(starts, dtype=np.int64)


def decode_powerset(log_probs: np.ndarray) -> np.ndarray:
    """(..., 7) log-probabilities -> (..., 3) bool: local speakers of the most likely powerset class."""
    mapping = np.zeros((len(POWERSET), MAX_LOCAL), dtype=bool)
    for k, members in enumerate(POWERSET):
        mapping[k, list(members)] = True
    return mapping[np.argmax(log_probs, axis=-1)]


@dataclass
class WindowActivity:
    """Segmentation of a whole signal: ``starts`` int64 (W,) window start samples, ``active`` bool
    (W, 589, 3) local speakers per frame, ``n_samples`` the signal's length."""

    starts: np.ndarray
    active: np.ndarray
    n_samples: int

    def global_frames(self) -> np.ndarray:
        """int64 (W,): global frame index of each window's first frame."""
        return np.rint(self.starts / FRAME_STEP_SAMPLES).astype(np.int64)

    @property
    def n_frames(self) -> int:
        """Frames of the global grid (those any window covers)."""
        return int(self.global_frames()[-1]) + NUM_FRAMES


def frame_bounds(g: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
    """Sample span [start, end) that global frame(s) ``g`` stand for: the 270 samples around its centre."""
    centre = np.asarray(g) * FRAME_STEP_SAMPLES + FRAME_SPAN_SAMPLES // 2
    return centre - FRAME_STEP_SAMPLES // 2, centre + FRAME_STEP_SAMPLES - FRAME_STEP_SAMPLES // 2


@dataclass
class _Labels:
    """Final labels: display ``names``, ``kinds``, ``scores`` and unit voiceprints ``centroids`` (L, D)."""

    names: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    centroids: list[np.ndarray] = field(default_factory=list)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(n, 1e-12)


#: A signal that can be read more than once: each call returns a fresh iterator of consecutive float32
#: 16 kHz mono blocks (any lengths). ``label_blocks`` reads it twice at most.
Blocks = Callable[[], Iterable[np.ndarray]]


class _WindowStream:
    """The 10 s windows of a block stream, in ``window_starts`` order: ``(start, window, n_valid)`` with
    ``window`` float32 (160000,) (zero-padded past the end of a short signal) and ``n_valid`` the samples of
    it inside the signal. Holds at most one window, one hop and one block; ``n_samples`` is the signal's
    length once the stream is exhausted."""

    def __init__(self, blocks: Iterable[np.ndarray], step_samples: int) -> None:
        self.blocks = blocks
        self.step = step_samples
        self.n_samples = 0

    def __iter__(self) -> Iterator[tuple[int, np.ndarray, int]]:
        parts: list[np.ndarray] = []
        buf, buf_start, n, nxt, last_done = np.zeros(0, np.float32), 0, 0, 0, -1
        for block in self.blocks:
            block = np.asarray(block, dtype=np.float32)
            if block.ndim != 1:
                raise AudioError(f"expected mono samples of shape (n,), got shape {block.shape}")
            if not len(block):
                continue
            parts.append(block)
            n += len(block)
            if nxt + WINDOW_SAMPLES > n:
                continue
            buf = parts[0] if not len(buf) and len(parts) == 1 else np.concatenate([buf, *parts])
            parts = []
            while nxt + WINDOW_SAMPLES <= n:
                o = nxt - buf_start
                yield nxt, buf[o:o + WINDOW_SAMPLES], WINDOW_SAMPLES
                last_done, nxt = nxt, nxt + self.step
            # Keep what the next window, or the last one (aligned to the end), can still need.
            keep = max(buf_start, min(nxt, n - WINDOW_SAMPLES))
            buf, buf_start = buf[keep - buf_start:], keep
        self.n_samples = n
        if parts:
            buf = np.concatenate([buf, *parts])
        if n == 0:
            return
        if n < WINDOW_SAMPLES:
            window = np.zeros(WINDOW_SAMPLES, np.float32)
            window[:n] = buf[:n]
            yield 0, window, n
        elif n - WINDOW_SAMPLES != last_done:
            o = n - WINDOW_SAMPLES - buf_start
            yield n - WINDOW_SAMPLES, buf[o:o + WINDOW_SAMPLES], WINDOW_SAMPLES


@dataclass
class Analysis:
    """Steps 1-3 of one signal: ``wa`` the plainly decoded window activity (embedding frames), ``agg`` bool
    (W, 589, 3) the activity that is aggregated (``overlap_bias`` decoding), ``emb`` float32 (W, 3, D) and
    ``valid`` bool (W, 3) the local-speaker embeddings (None when not embedded)."""

    wa: WindowActivity
    agg: np.ndarray
    emb: np.ndarray | None = None
    valid: np.ndarray | None = None
    #: float32 (W, 3, 3): per local speaker the seconds embedded, narrow-band (1.0 / 0.0) and SNR dB (NaN: no
    #: estimate), what a calibration needs to score it (``clip_quality``). The band and SNR are measured only
    #: by a segmenter with a calibration (NaN otherwise: such voices get the cosine bars).
    quality: np.ndarray | None = None


#: ``clip_quality`` columns.
Q_SPEECH, Q_NARROW, Q_SNR = 0, 1, 2


def clip_quality(clip: np.ndarray, narrowband: bool) -> np.ndarray:
    """float32 (3,): seconds, narrow-band, SNR dB of one local speaker's 16 kHz clip (``verify.audio_condition``,
    the condition verify and the tracker measure on a test segment)."""
    from ..identity.verify import audio_condition

    c = audio_condition(clip, None, 8000 if narrowband else None)
    return np.array([len(clip) / SAMPLE_RATE_HZ, float(c.narrowband), np.nan if c.snr_db is None else c.snr_db],
                    np.float32)


class PyannoteSegmenter:
    """segmentation-3.0 + idme's encoder and thresholds: labels whole recordings with overlapping speakers.

    Works on a whole signal (file mode), given as an array or as blocks read in turn (``label_blocks``,
    ``label_file``: memory bounded on long recordings); it keeps no state between calls.
    """

    name = "pyannote"
    sample_rate = SAMPLE_RATE_HZ

    def __init__(self, embedder: Embedder, thresholds: Thresholds, profiles: list[Profile] | None = None,
                 options: PyannoteOptions | None = None, model: SegmentationModel | None = None,
                 calibration: Any = None, narrowband: bool = False) -> None:
        """calibration: an ``eval.calibration.QualityCalibration`` (``Idme.calibration``): a local voice is
        held to the cosine at which its calibrated LLR (its seconds, bandwidth and SNR) reaches the
        calibration's threshold, as ``verify`` and the live tracker hold a segment; None: the cosine bars of
        ``thresholds``. narrowband: telephone-rate audio (narrow-band profiles' own bars)."""
        if embedder.sample_rate != SAMPLE_RATE_HZ:
            raise ValueError(f"the segmenter works at 16 kHz; the encoder expects {embedder.sample_rate} Hz")
        self.embedder = embedder
        self.thresholds = thresholds
        self.profiles = list(profiles or [])
        self.calibration = calibration
        self.narrowband = narrowband
        self.options = options or PyannoteOptions()
        if self.options.step_s <= 0 or self.options.step_s > WINDOW_SAMPLES / SAMPLE_RATE_HZ:
            raise ValueError(f"step_s must be in (0, 10], got {self.options.step_s}")
        self.model = model or SegmentationModel(intra_op_threads=self.options.intra_op_threads)

    # -- 1-3: windows, powerset decoding, local-speaker embeddings (one pass over the signal) ----------

    def analyse(self, blocks: Iterable[np.ndarray], embed: bool = True) -> Analysis:
        """Segments a block stream (and embeds its local speakers when ``embed``), one read of it."""
        opts = self.options
        stream = _WindowStream(blocks, max(1, round(opts.step_s * SAMPLE_RATE_HZ)))
        bias = np.zeros(len(POWERSET), np.float32)
        bias[[k for k, members in enumerate(POWERSET) if len(members) == 2]] = opts.overlap_bias
        starts: list[int] = []
        acts, aggs, embs, valids, quals = [], [], [], [], []
        pending: list[tuple[int, np.ndarray, int]] = []

        def flush() -> None:
            lp = self.model.log_probs(np.stack([w for _, w, _ in pending]))
            act = decode_powerset(lp)
            acts.append(act)
            aggs.append(decode_powerset(lp + bias) if opts.overlap_bias else act)
            if embed:
                e, v, q = self._embed_windows([(w, nv) for _, w, nv in pending], act)
                embs.append(e)
                valids.append(v)
                quals.append(q)
            starts.extend(s for s, _, _ in pending)
            pending.clear()

        for item in stream:
            pending.append(item)
            if len(pending) >= opts.batch:
                flush()
        if pending:
            flush()
        if not starts:  # empty signal
            z = np.zeros((0, NUM_FRAMES, MAX_LOCAL), dtype=bool)
            wa = WindowActivity(np.zeros(0, np.int64), z, 0)
            e0 = np.zeros((0, MAX_LOCAL, self.embedder.dimension), np.float32) if embed else None
            return Analysis(wa, z, e0, np.zeros((0, MAX_LOCAL), bool) if embed else None)
        wa = WindowActivity(np.asarray(starts, np.int64), np.concatenate(acts), stream.n_samples)
        return Analysis(wa, np.concatenate(aggs), np.concatenate(embs) if embed else None,
                        np.concatenate(valids) if embed else None, np.concatenate(quals) if embed else None)

    def segment(self, samples: np.ndarray) -> WindowActivity:
        """samples: float32 (n,), 16 kHz -> local-speaker activity of every window (plain decoding)."""
        return self.analyse([_mono(samples)], embed=False).wa

    def _embed_windows(self, windows: list[tuple[np.ndarray, int]], act: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings of the local speakers of a batch of windows ((window, n_valid), act (B, 589, 3)):
        float32 (B, 3, D), bool (B, 3) (embedded or not) and their ``clip_quality`` float32 (B, 3, 3) (the
        condition is measured only for a calibration: NaN otherwise)."""
        min_samples = max(round(self.options.min_embed_s * SAMPLE_RATE_HZ),
                          round(self.embedder.min_input_s * SAMPLE_RATE_HZ * 0.5), 1)
        emb = np.zeros((len(windows), MAX_LOCAL, self.embedder.dimension), dtype=np.float32)
        valid = np.zeros((len(windows), MAX_LOCAL), dtype=bool)
        quality = np.full((len(windows), MAX_LOCAL, 3), np.nan, dtype=np.float32)
        # Sample span of each local frame (the 270 samples around its centre), relative to the window.
        lo, hi = frame_bounds(np.arange(NUM_FRAMES))
        clips: list[np.ndarray] = []
        where: list[tuple[int, int]] = []
        for w, (window, n_valid) in enumerate(windows):
            a = act[w]
            alone = a & (a.sum(axis=1, keepdims=True) == 1)
            for k in range(MAX_LOCAL):
                for frames in (alone[:, k], a[:, k]):  # overlap excluded first; all its frames if too short
                    if frames.sum() * FRAME_STEP_SAMPLES < min_samples:
                        continue
                    idx = np.concatenate([np.arange(p, q) for p, q in zip(lo[frames], hi[frames])])
                    idx = idx[(idx >= 0) & (idx < n_valid)]
                    if len(idx) >= min_samples:
                        clips.append(window[idx])
                        where.append((w, k))
                        quality[w, k, Q_SPEECH] = len(idx) / SAMPLE_RATE_HZ
                        if self.calibration is not None:
                            quality[w, k] = clip_quality(clips[-1], self.narrowband)
                    break
        if clips:
            for (cw, ck), v in zip(where, _embed_all(self.embedder, clips)):
                emb[cw, ck], valid[cw, ck] = v, True
        return emb, valid, quality

    def embed_local(self, samples: np.ndarray, wa: WindowActivity) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of each window's local speakers: float32 (W, 3, D) and bool (W, 3) (embedded or not)
        (their quality: ``analyse``)."""
        samples = _mono(samples)
        emb = np.zeros((len(wa.starts), MAX_LOCAL, self.embedder.dimension), dtype=np.float32)
        valid = np.zeros((len(wa.starts), MAX_LOCAL), dtype=bool)
        for b in range(0, len(wa.starts), self.options.batch):
            wins = []
            for s in wa.starts[b:b + self.options.batch]:
                window = np.zeros(WINDOW_SAMPLES, np.float32)
                chunk = samples[s:s + WINDOW_SAMPLES]
                window[:len(chunk)] = chunk
                wins.append((window, min(WINDOW_SAMPLES, wa.n_samples - int(s))))
            e, v, _ = self._embed_windows(wins, wa.active[b:b + len(wins)])
            emb[b:b + len(wins)], valid[b:b + len(wins)] = e, v
        return emb, valid

    # -- 4: clustering, enrolled people first ---------------------------------------------------

    def bars(self, vecs: np.ndarray, quality: np.ndarray | None) -> np.ndarray:
        """float64 (P, n): the cosine each profile needs from each unit voice ``vecs`` (n, D) whose
        ``clip_quality`` rows are ``quality`` (n, 3). Calibrated (``calibration`` set and the quality measured):
        the cosine at which the voice's calibrated LLR reaches the threshold (``verify.calibrated_bars``);
        otherwise the profile's cosine bar."""
        from ..identity.verify import Domain, calibrated_bars, norm_stats, threshold

        n, cal = len(vecs), self.calibration
        q = None if quality is None else np.asarray(quality, np.float64).reshape(-1, 3)
        if not self.profiles:
            return np.zeros((0, n), np.float64)
        if cal is None or q is None or not np.isfinite(q[:, [Q_SPEECH, Q_NARROW]]).all():
            return np.array([[threshold(self.thresholds, p, self.narrowband)] * n for p in self.profiles],
                            np.float64).reshape(len(self.profiles), n)
        narrow = q[:, Q_NARROW]
        norm = getattr(cal, "norm", None)
        rows = []
        domain = Domain(self.profiles)
        test_stats: dict[tuple, tuple] = {}  # per cohort band (the profile's) and centre, computed once
        for p in self.profiles:
            ps = ts = None
            if norm is not None:
                at = domain.centre_for(cal, p.name, p.centroid, p.narrowband)
                ps = norm_stats(cal, p.centroid, p.narrowband, at)
                key = (p.narrowband, None if at is None else p.name)
                if key not in test_stats:
                    test_stats[key] = norm.stats(np.asarray(vecs, np.float32), p.narrowband, centre_on=at)
                ts = test_stats[key]
            rows.append(calibrated_bars(cal, q[:, Q_SPEECH], narrow, q[:, Q_SNR], p.narrowband, profile_stats=ps,
                                        test_stats=ts))
        return np.stack(rows)

    def cluster(self, emb: np.ndarray, valid: np.ndarray, solo_s: np.ndarray | None = None,
                quality: np.ndarray | None = None, overlap: float | None = None) -> tuple[np.ndarray, _Labels]:
        """Label of every (window, local speaker): int64 (W, 3), -1 where not embedded; and the labels.

        solo_s: float (W, 3), seconds each local speaker speaks alone in its window (``solo_seconds``), for
        the cannot-link constraint (``PyannoteOptions.cannot_link_s``); None: no constraint.
        quality: float32 (W, 3, 3), each local speaker's ``clip_quality`` (``Analysis.quality``), for a
        calibration's bars; None: the cosine bars. overlap: how many embeddings hear each moment of speech
        (a cluster's seconds are its members' seconds over this); None: window over step (file mode)."""
        from ..identity.verify import score

        opts = self.options
        W = emb.shape[0]
        flat = np.flatnonzero(valid.ravel())
        vecs = _unit(emb.reshape(-1, emb.shape[-1])[flat].astype(np.float64))
        q = None if quality is None else np.asarray(quality, np.float64).reshape(-1, 3)[flat]
        n = len(flat)
        assign = np.full(n, -1, dtype=np.int64)
        labels = _Labels()
        # Enrolled people first: an embedding that reaches a profile's bar is that person.
        prof_index: dict[str, int] = {}
        if self.profiles and n:
            sims = np.stack([[score(p, v) for v in vecs] for p in self.profiles])      # (P, n)
            bars = self.bars(vecs, q)                                                    # (P, n)
            best = np.argmax(sims - bars, axis=0)
            ok = (sims - bars)[best, np.arange(n)] >= opts.embedding_accept_margin
            for i in np.flatnonzero(ok):
                p = self.profiles[best[i]]
                if p.name not in prof_index:
                    prof_index[p.name] = _add_label(labels, p.display, p.kind, p.centroid)
                assign[i] = prof_index[p.name]
        rest = np.flatnonzero(assign < 0)
        cannot = None
        if solo_s is not None and opts.cannot_link_s > 0 and len(rest) > 1:
            win = flat[rest] // MAX_LOCAL
            sure = np.asarray(solo_s, np.float64).ravel()[flat[rest]] >= opts.cannot_link_s
            cannot = (win[:, None] == win[None, :]) & sure[:, None] & sure[None, :]
            np.fill_diagonal(cannot, False)
        # Speaker-count bounds apply to everyone heard: enrolled people already found count against them.
        found = len(prof_index)
        lo = max(1, opts.min_speakers - found) if opts.min_speakers else None
        hi = max(1, opts.max_speakers - found) if opts.max_speakers else None
        groups = _ahc(vecs[rest], opts.cluster_similarity, opts.min_cluster_size, opts.max_ahc, cannot, lo, hi)
        n_unknown = 0
        for g in range(int(groups.max()) + 1 if len(groups) else 0):
            members = rest[groups == g]
            centroid = _unit(vecs[members].mean(axis=0))
            # A cluster whose voiceprint reaches a profile's bar is that person after all.
            target = None
            if self.profiles:
                gq = None if q is None else group_quality(q[members], overlap or WINDOW_SAMPLES / SAMPLE_RATE_HZ
                                                          / opts.step_s)
                gbar = self.bars(centroid[None, :], gq)[:, 0]
                margins = [score(p, centroid) - b for p, b in zip(self.profiles, gbar)]
                j = int(np.argmax(margins))
                if margins[j] >= 0:
                    p = self.profiles[j]
                    if p.name not in prof_index:
                        prof_index[p.name] = _add_label(labels, p.display, p.kind, p.centroid)
                    target = prof_index[p.name]
            if target is None:
                n_unknown += 1
                target = _add_label(labels, f"Speaker {n_unknown}", "unknown", centroid)
            assign[members] = target
        out = np.full(W * MAX_LOCAL, -1, dtype=np.int64)
        out[flat] = assign
        out = out.reshape(W, MAX_LOCAL)
        _reassign_unknown(out, emb, labels)
        _cannot_link(out, emb, valid, labels)
        for li in range(len(labels.names)):
            members = vecs[out.ravel()[flat] == li]
            labels.scores[li] = float(np.mean(members @ labels.centroids[li])) if len(members) else 0.0
        _renumber_unknown(out, labels)
        return out, labels

    # -- 5: aggregation -------------------------------------------------------------------------

    def aggregate(self, wa: WindowActivity, assign: np.ndarray, n_labels: int,
                  agg: np.ndarray | None = None) -> np.ndarray:
        """bool (frames, labels): who speaks on each global frame (overlap-add of window activity ``agg``,
        default ``wa.active``; top-k by the averaged speaker count, rounded half up)."""
        act_all = wa.active if agg is None else agg
        T = wa.n_frames
        g0 = wa.global_frames()
        L = max(n_labels, 1)
        score = np.zeros((T, L), dtype=np.float32)
        count = np.zeros(T, dtype=np.float32)
        cover = np.zeros(T, dtype=np.float32)
        for w, g in enumerate(g0):
            act = act_all[w]
            count[g:g + NUM_FRAMES] += act.sum(axis=1)
            cover[g:g + NUM_FRAMES] += 1
            for k in range(MAX_LOCAL):
                if assign[w, k] >= 0:  # distinct within a window (cannot-link), so a plain sum
                    score[g:g + NUM_FRAMES, assign[w, k]] += act[:, k]
        cover = np.maximum(cover, 1)
        score /= cover[:, None]
        k_on = np.minimum(np.floor(count / cover + 0.5).astype(np.int64), MAX_LOCAL - 1)
        on = np.zeros((T, L), dtype=bool)
        rows = np.arange(T)
        masked = score.copy()
        for k in range(1, min(MAX_LOCAL, L + 1)):  # the k-th most active label where k speakers talk
            top = np.argmax(masked, axis=1)
            sel = k_on >= k
            on[rows[sel], top[sel]] = True
            masked[rows, top] = -1.0
        on &= score > 0
        # Frames beyond the end of the signal (a zero-padded short file) are never speech.
        _, hi = frame_bounds(np.arange(T))
        on[hi - FRAME_STEP_SAMPLES >= wa.n_samples] = False
        return on[:, :n_labels]

    # -- 6: re-segmentation ---------------------------------------------------------------------

    def resegment(self, on: np.ndarray, labels: _Labels, blocks: Blocks, n_samples: int,
                  cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """In place and returned: frames where one unknown label is on move to the unknown label whose centroid
        the 1.5 s windows over them match best, when it beats the current one by ``resegment_margin``.

        Only windows with at least ``resegment_single`` single-label frames are embedded (one more read of
        ``blocks``); ``cache`` (window start -> embedding) lets a caller that re-labels one signal many
        times embed each window once."""
        opts = self.options
        unknown = [li for li, kind in enumerate(labels.kinds) if kind == "unknown"]
        hop = round(opts.resegment_hop_s * SAMPLE_RATE_HZ)
        if len(unknown) < 2 or hop <= 0 or n_samples < RESEGMENT_SAMPLES or not len(on):
            return on
        T = on.shape[0]
        single = on.sum(axis=1) == 1
        cur = np.argmax(on, axis=1)
        is_unknown = np.zeros(on.shape[1], dtype=bool)
        is_unknown[unknown] = True
        movable = single & is_unknown[cur]
        # Frame t is centred on sample 270 t + 495; window [a, a + 24000) covers the centres inside it.
        centre0 = FRAME_SPAN_SAMPLES // 2
        starts, spans = [], []
        for a in range(0, n_samples - RESEGMENT_SAMPLES + 1, hop):
            t0 = max(0, -(-(a - centre0) // FRAME_STEP_SAMPLES))
            t1 = min(T, -(-(a + RESEGMENT_SAMPLES - centre0) // FRAME_STEP_SAMPLES))
            if t1 > t0 and single[t0:t1].mean() >= opts.resegment_single and movable[t0:t1].any():
                starts.append(a)
                spans.append((t0, t1))
        if not starts:
            return on
        emb = _embed_spans(self.embedder, blocks, starts, RESEGMENT_SAMPLES, cache)
        cents = np.stack([labels.centroids[li] for li in unknown])              # (U, D)
        sims = _unit(emb.astype(np.float64)) @ cents.T                          # (J, U)
        total = np.zeros((T, len(unknown)), dtype=np.float32)
        seen = np.zeros(T, dtype=np.int32)
        for (t0, t1), row in zip(spans, sims):
            total[t0:t1] += row.astype(np.float32)
            seen[t0:t1] += 1
        pos = {li: i for i, li in enumerate(unknown)}
        frames = np.flatnonzero(movable & (seen > 0))
        if not len(frames):
            return on
        mean = total[frames] / seen[frames, None]
        best = np.argmax(mean, axis=1)
        now = np.array([pos[int(c)] for c in cur[frames]])
        gain = mean[np.arange(len(frames)), best] - mean[np.arange(len(frames)), now]
        flip = (best != now) & (gain > opts.resegment_margin)
        f = frames[flip]
        on[f] = False
        on[f, np.asarray(unknown)[best[flip]]] = True
        return on

    # -- 7: regions -------------------------------------------------------------------------------

    def to_regions(self, on: np.ndarray, n_samples: int, unpadded: Iterable[int] = ()) -> list[SpeechRegion]:
        """Runs of "on" frames per label -> regions (short gaps filled, short regions dropped, then widened
        by ``pad_start_s`` / ``pad_end_s``, except for the labels in ``unpadded``); a region is flagged
        ``overlap`` when a region of another label shares time with it."""
        keep = set(unpadded)
        gap = round(self.options.min_gap_s * SAMPLE_RATE_HZ)
        shortest = round(self.options.min_region_s * SAMPLE_RATE_HZ)
        pad0 = round(self.options.pad_start_s * SAMPLE_RATE_HZ)
        pad1 = round(self.options.pad_end_s * SAMPLE_RATE_HZ)
        lo, hi = frame_bounds(np.arange(on.shape[0]))
        spans: list[tuple[int, int, int]] = []
        for label in range(on.shape[1]):
            col = on[:, label].astype(np.int8)
            edges = np.diff(np.concatenate([[0], col, [0]]))
            runs: list[list[int]] = []
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                s, e = max(int(lo[a]), 0), min(int(hi[b - 1]), n_samples)
                if runs and s - runs[-1][1] <= gap:
                    runs[-1][1] = e
                elif e > s:
                    runs.append([s, e])
            widened: list[list[int]] = []
            for s, e in runs:
                if e - s < max(shortest, 1):
                    continue
                if label not in keep:
                    s, e = max(0, s - pad0), min(n_samples, e + pad1)
                if widened and s <= widened[-1][1]:
                    widened[-1][1] = max(widened[-1][1], e)
                else:
                    widened.append([s, e])
            spans += [(s, e, label) for s, e in widened]
        spans.sort()
        # Overlap flag: a sweep over the spans sorted by start.
        busy = [False] * len(spans)
        open_: list[int] = []
        for i, (s, e, label) in enumerate(spans):
            open_ = [j for j in open_ if spans[j][1] > s]
            for j in open_:
                if spans[j][2] != label:
                    busy[i] = busy[j] = True
            open_.append(i)
        return [SpeechRegion(s, e - s, label, busy[i]) for i, (s, e, label) in enumerate(spans)]

    # -- whole path -----------------------------------------------------------------------------

    def label_analysis(self, an: Analysis, blocks: Blocks,
                       cache: dict[int, np.ndarray] | None = None) -> list[LabelledRegion]:
        """Steps 4-7 on an :class:`Analysis` of ``blocks`` (read again for the re-segmentation)."""
        return self._label_analysis(an, blocks, cache)[0]

    def _label_analysis(self, an: Analysis, blocks: Blocks, cache: dict[int, np.ndarray] | None = None
                        ) -> tuple[list[LabelledRegion], dict[str, dict[str, Any]]]:
        """(labelled regions, voices): voices maps each label to {"kind", "embeddings" float32 (n, D),
        "durations" float32 (n,)}: its local speakers' embeddings and the seconds each spoke alone in its
        window (what a session keeps so that ``idme name`` can make a profile of the speaker)."""
        if an.emb is None or an.valid is None:
            raise ValueError("label_analysis needs an Analysis with embeddings (analyse(..., embed=True))")
        solo = solo_seconds(an.wa.active)
        assign, labels = self.cluster(an.emb, an.valid, solo, an.quality)
        if not labels.names:
            return [], {}
        voices = {}
        for li, (name, kind) in enumerate(zip(labels.names, labels.kinds)):
            mine = assign == li
            voices[name] = {"kind": kind, "embeddings": an.emb[mine].astype(np.float32),
                            "durations": solo[mine].astype(np.float32)}
        on = self.aggregate(an.wa, assign, len(labels.names), an.agg)
        on = self.resegment(on, labels, blocks, an.wa.n_samples, cache)
        # An enrolled person's regions are what the network heard, never widened into a neighbour's turn:
        # idme holds "Me" on other people's speech (false_me) to a stricter bar than DER.
        enrolled = [li for li, kind in enumerate(labels.kinds) if kind != "unknown"]
        logger.debug("pyannote segmenter: %d windows, %d local speakers embedded, labels %s", len(an.wa.starts),
                     int(an.valid.sum()), labels.names)
        regions = [LabelledRegion(r, labels.names[r.speaker], labels.kinds[r.speaker], labels.scores[r.speaker])
                   for r in self.to_regions(on, an.wa.n_samples, enrolled)]
        heard = {r.label for r in regions}
        return regions, {name: v for name, v in voices.items() if name in heard}

    def label_blocks(self, blocks: Blocks) -> list[LabelledRegion]:
        """Labels a signal given as blocks (``blocks()`` gives a fresh iterator; called twice at most):
        labelled regions (may overlap in time); [] for silence or an empty signal."""
        return self.label_voices(blocks)[0]

    def label_voices(self, blocks: Blocks) -> tuple[list[LabelledRegion], dict[str, dict[str, Any]]]:
        """:meth:`label_blocks` and each label's voice samples (see ``_label_analysis``)."""
        an = self.analyse(blocks())
        if not an.wa.n_samples:
            return [], {}
        return self._label_analysis(an, blocks)

    def label(self, samples: np.ndarray) -> list[LabelledRegion]:
        """samples: float32 (n,), 16 kHz -> labelled regions (may overlap in time); [] for silence."""
        samples = _mono(samples)
        if samples.size == 0:
            return []
        return self.label_blocks(lambda: [samples])

    def regions(self, samples: np.ndarray) -> list[SpeechRegion]:
        """Segmenter protocol: the regions of :meth:`label`, with file-level speaker indices."""
        return [r.region for r in self.label(samples)]

    def events(self, samples: np.ndarray) -> list[dict[str, Any]]:
        """``listen --json`` events for the signal (final only; events of different speakers may overlap)."""
        return to_events(self.label(samples), SAMPLE_RATE_HZ)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def _mono(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"expected mono samples of shape (n,), got shape {samples.shape}")
    return samples


def _embed_spans(embedder: Embedder, blocks: Blocks, starts: list[int], length: int,
                 cache: dict[int, np.ndarray] | None = None) -> np.ndarray:
    """float32 (len(starts), D): embeddings of ``[s, s + length)`` for each start (ascending), read from one
    pass over ``blocks()`` holding one span plus one block (skipped when ``cache`` has every start)."""
    out = np.zeros((len(starts), embedder.dimension), dtype=np.float32)
    todo = [i for i, s in enumerate(starts) if cache is None or s not in cache]
    for i in range(len(starts)):
        if cache is not None and starts[i] in cache:
            out[i] = cache[starts[i]]
    if not todo:
        return out
    clips: list[np.ndarray] = []
    where: list[int] = []

    def flush() -> None:
        for i, v in zip(where, _embed_all(embedder, clips)):
            out[i] = v
            if cache is not None:
                cache[starts[i]] = v
        clips.clear()
        where.clear()

    parts: list[np.ndarray] = []
    buf, buf_start, n, q = np.zeros(0, np.float32), 0, 0, 0
    for block in blocks():
        block = np.asarray(block, dtype=np.float32)
        if not len(block):
            continue
        parts.append(block)
        n += len(block)
        if starts[todo[q]] + length > n:
            continue
        buf = parts[0] if not len(buf) and len(parts) == 1 else np.concatenate([buf, *parts])
        parts = []
        while q < len(todo) and starts[todo[q]] + length <= n:
            o = starts[todo[q]] - buf_start
            clips.append(buf[o:o + length].copy())
            where.append(todo[q])
            q += 1
            if len(clips) >= 32:
                flush()
        if q == len(todo):
            break
        keep = max(buf_start, min(starts[todo[q]], n))
        buf, buf_start = buf[keep - buf_start:], keep
    if clips:
        flush()
    return out


def _embed_all(embedder: Embedder, clips: list[np.ndarray]) -> np.ndarray:
    batch = getattr(embedder, "embed_batch", None)
    if callable(batch):
        return np.asarray(batch(clips), dtype=np.float32)
    return np.stack([embedder.embed(c) for c in clips]).astype(np.float32)


def _add_label(labels: _Labels, name: str, kind: str, centroid: np.ndarray) -> int:
    labels.names.append(name)
    labels.kinds.append(kind)
    labels.scores.append(0.0)
    labels.centroids.append(_unit(np.asarray(centroid, dtype=np.float64)))
    return len(labels.names) - 1


def group_quality(q: np.ndarray, overlap: float = 1.0) -> np.ndarray:
    """float64 (1, 3): the ``clip_quality`` of a group of local voices q (m, 3) heard as one voiceprint. Its
    seconds: the members' seconds over ``overlap`` (overlapping windows hear the same speech ``overlap`` times),
    at least the longest member's; narrow-band by duration-weighted majority of the measured members (NaN if
    none was measured); the duration-weighted mean SNR (NaN if none)."""
    w = np.nan_to_num(q[:, Q_SPEECH])
    seconds = max(float(w.sum()) / max(overlap, 1.0), float(w.max(initial=0.0)))
    measured = np.isfinite(q[:, Q_NARROW])
    narrow = (float(np.dot(w[measured], q[measured, Q_NARROW]) > 0.5 * float(w[measured].sum()))
              if measured.any() else np.nan)
    snr_ok = np.isfinite(q[:, Q_SNR]) & (w > 0)
    snr = float(np.average(q[snr_ok, Q_SNR], weights=w[snr_ok])) if snr_ok.any() else np.nan
    return np.array([[seconds, narrow, snr]])


def solo_seconds(active: np.ndarray) -> np.ndarray:
    """float (W, 3): seconds each local speaker of ``active`` (bool (W, 589, 3)) speaks with nobody else."""
    alone = active & (active.sum(axis=-1, keepdims=True) == 1)
    return alone.sum(axis=-2) * (FRAME_STEP_SAMPLES / SAMPLE_RATE_HZ)


def _ahc(vecs: np.ndarray, similarity: float, min_size: int, max_n: int,
         cannot: np.ndarray | None = None, min_clusters: int | None = None,
         max_clusters: int | None = None) -> np.ndarray:
    """Average-linkage cosine AHC of unit rows ``vecs`` (n, D) -> int64 (n,) cluster ids 0..C-1.

    cannot: bool (n, n), rows that must stay in different clusters (two people one window told apart);
    with such pairs, or with cluster-count bounds, the merging is idme's ``Agglomeration`` (unit weights:
    the same UPGMA linkage), else scipy's. min_clusters / max_clusters: merging stops at ``min_clusters``
    and goes on below ``similarity`` while more than ``max_clusters`` are left (cannot-link pairs still
    never merge). Clusters smaller than ``min_size`` join the most similar large cluster (when there is one,
    and never below ``min_clusters``).
    Above ``max_n`` rows, the first ``max_n`` (evenly spread) are clustered and the others join the nearest
    centroid, so memory stays bounded on long recordings.
    """
    n = len(vecs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    pick = np.arange(n) if n <= max_n else np.linspace(0, n - 1, max_n).round().astype(np.int64)
    constrained = cannot is not None and cannot[np.ix_(pick, pick)].any()
    if constrained or min_clusters or max_clusters:
        from ..identity.agglomeration import Agglomeration

        agg = Agglomeration(vecs[pick].astype(np.float32), np.ones(len(pick)), np.full(len(pick), -1),
                            cannot[np.ix_(pick, pick)] if constrained else None)
        left = len(pick)
        while left > (min_clusters or 1):
            a, b, sim = agg.best()
            if not np.isfinite(sim) or (sim < similarity and (max_clusters is None or left <= max_clusters)):
                break
            agg.merge(a, b)
            left -= 1
        ids = np.zeros(len(pick), dtype=np.int64)
        for c, k in enumerate(np.flatnonzero(agg.alive)):
            ids[agg.members[k]] = c
    else:
        from scipy.cluster.hierarchy import fcluster, linkage

        z = linkage(vecs[pick], method="average", metric="cosine")
        ids = fcluster(z, t=1.0 - similarity, criterion="distance") - 1
    sizes = np.bincount(ids)
    large = np.flatnonzero(sizes >= min_size)
    cents = _unit(np.stack([vecs[pick][ids == c].mean(axis=0) for c in range(len(sizes))]))
    if len(large) and len(large) < len(sizes):
        small = np.flatnonzero(sizes < min_size)
        # With a lower bound, only as many small clusters fold as keep min_clusters (the smallest first).
        n_fold = len(small) if not min_clusters else max(0, min(len(small), len(sizes) - min_clusters))
        for c in small[np.argsort(sizes[small], kind="stable")][:n_fold]:
            ids[ids == c] = large[np.argmax(cents[large] @ cents[c])]
    # The user's upper bound wins over cannot-link: the smallest clusters fold into their nearest one.
    while max_clusters and len(np.unique(ids)) > max_clusters:
        alive = np.unique(ids)
        sizes = np.bincount(ids, minlength=int(alive.max()) + 1)
        c = alive[np.argmin(sizes[alive])]
        others = alive[alive != c]
        ids[ids == c] = others[np.argmax(cents[others] @ cents[c])]
    keep = np.unique(ids)
    remap = {int(c): i for i, c in enumerate(keep)}
    ids = np.array([remap[int(c)] for c in ids], dtype=np.int64)
    if len(pick) == n:
        return ids
    cents = _unit(np.stack([vecs[pick][ids == c].mean(axis=0) for c in range(len(keep))]))
    out = np.argmax(vecs @ cents.T, axis=1).astype(np.int64)
    out[pick] = ids
    return out


def _reassign_unknown(assign: np.ndarray, emb: np.ndarray, labels: _Labels) -> None:
    """In place: every local speaker labelled as an unknown speaker moves to the nearest unknown centroid,
    two of one window never to the same one (optimal assignment per window; pyannote's reassignment after
    clustering). Enrolled people's local speakers stay as they are."""
    from scipy.optimize import linear_sum_assignment

    unknown = np.array([li for li, kind in enumerate(labels.kinds) if kind == "unknown"], dtype=np.int64)
    if len(unknown) < 2:
        return
    cents = np.stack([labels.centroids[li] for li in unknown])
    is_unknown = np.zeros(len(labels.kinds), dtype=bool)
    is_unknown[unknown] = True
    for w in range(assign.shape[0]):
        ks = np.flatnonzero((assign[w] >= 0) & is_unknown[np.maximum(assign[w], 0)])
        if not len(ks):
            continue
        sims = _unit(emb[w, ks].astype(np.float64)) @ cents.T          # (k, U)
        rows, cols = linear_sum_assignment(-sims)
        assign[w, ks] = -1                                             # more local speakers than labels
        assign[w, ks[rows]] = unknown[cols]


def _cannot_link(assign: np.ndarray, emb: np.ndarray, valid: np.ndarray, labels: _Labels) -> None:
    """In place: where two local speakers of one window share a label, re-assign that window's speakers to
    distinct labels by the assignment that maximises cosine to the labels' voiceprints."""
    from scipy.optimize import linear_sum_assignment

    if len(labels.names) < 2:
        for w in range(assign.shape[0]):
            taken = assign[w][assign[w] >= 0]
            if len(taken) > 1:  # one label only: keep the speaker with the most similar voice
                ks = np.flatnonzero(assign[w] >= 0)
                sims = _unit(emb[w, ks].astype(np.float64)) @ labels.centroids[0]
                for k in ks[np.arange(len(ks)) != int(np.argmax(sims))]:
                    assign[w, k] = -1
        return
    cents = np.stack(labels.centroids)
    for w in range(assign.shape[0]):
        ks = np.flatnonzero(assign[w] >= 0)
        if len(ks) < 2 or len(set(assign[w, ks].tolist())) == len(ks):
            continue
        sims = _unit(emb[w, ks].astype(np.float64)) @ cents.T          # (k, L)
        sims[np.arange(len(ks)), assign[w, ks]] += 1.0                 # prefer the clustering's own choice
        rows, cols = linear_sum_assignment(-sims)
        assign[w, ks] = -1
        assign[w, ks[rows]] = cols


def _renumber_unknown(assign: np.ndarray, labels: _Labels) -> None:
    """In place: "Speaker N" numbered by first appearance in time (windows in order)."""
    order: list[int] = []
    for li in assign.ravel():
        if li >= 0 and labels.kinds[li] == "unknown" and li not in order:
            order.append(int(li))
    for n, li in enumerate(order, start=1):
        labels.names[li] = f"Speaker {n}"


def file_blocks(path: str | os.PathLike[str]) -> Blocks:
    """A recording as :data:`Blocks`: each call opens it again and yields 16 kHz mono blocks (resampled and
    downmixed as every idme source is), so a file is never held whole in memory."""
    from ..audio.file import STDIN, FileSource, read_audio

    if str(path) == STDIN:  # standard input can be read once only: buffered (as FileSource does anyway)
        samples = read_audio(path)
        return lambda: [samples]
    source = FileSource(path)  # opened and validated now: a bad file fails before any work
    source.close()

    def blocks() -> Iterator[np.ndarray]:
        with FileSource(path) as src:
            for frame in src.frames():
                yield frame.samples

    return blocks


def label_file(path: str | os.PathLike[str], embedder: Embedder, profiles: list[Profile], th: Thresholds,
               options: PyannoteOptions | None = None, model: SegmentationModel | None = None,
               calibration: Any = None) -> list[dict[str, Any]]:
    """Labels a recording with the pyannote segmenter: ``listen --json`` events (final, may overlap).
    calibration: see ``PyannoteSegmenter``.

    The file is read in blocks (twice), never whole: the same events as ``events(read_audio(path))``."""
    from ..audio.file import STDIN, FileSource
    from ..identity.profiles import NARROWBAND_MAX_HZ

    narrowband = False
    if str(path) != STDIN:  # telephone-rate files: narrow-band bars, as LiveSession gives them
        with FileSource(path) as src:
            narrowband = getattr(src, "native_rate", 16000) <= NARROWBAND_MAX_HZ
    seg = PyannoteSegmenter(embedder, th, profiles, options, model, calibration=calibration, narrowband=narrowband)
    labelled = seg.label_blocks(file_blocks(path))
    return to_events(labelled, SAMPLE_RATE_HZ)
