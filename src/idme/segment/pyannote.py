"""Overlap-aware segmentation with pyannote segmentation-3.0 on onnxruntime, and file-mode labelling on it.

The path (issue 11; pyannote.audio 3.1's SpeakerDiarization is the design reference, no code of it is used):

1. **Windows.** 10 s windows every ``step_s`` (the last one aligned to the end of the file; a file shorter
   than 10 s is zero-padded), each run through the bundled ONNX model: (589, 7) powerset log-probabilities.
2. **Powerset decoding.** The most likely class per frame becomes the set of active *local* speakers
   (at most 3 per window, at most 2 at once): (windows, 589, 3) booleans.
3. **Local speakers embedded** by the idme encoder (CAM++) on the samples of their frames where nobody else
   talks (overlap excluded), falling back to all their frames when that is too short.
4. **Clustering, enrolled people first.** A local speaker whose embedding reaches a profile's accept
   threshold (``identity.verify``, the same bar the live tracker uses) is that person; the others are
   clustered (average-linkage cosine AHC); a cluster whose voiceprint reaches a profile's threshold joins
   that person, the rest are "Speaker N". Two local speakers of one window never get the same label
   (a cannot-link, resolved per window by an optimal assignment).
5. **Aggregation.** Per label, the window activities are averaged frame by frame over the windows that
   cover the frame (overlap-add), and so is each window's speaker count; on each frame the ``round(count)``
   labels with the highest activity are on. Runs of "on" frames become regions; regions of different
   labels may overlap.

Timestamps come from sample counts: frame ``j`` of a window starting at sample ``s`` is the global frame
``round(s / 270) + j``, centred at ``(270 * g + 495) / 16000`` s (270 samples per frame, 991-sample span).
"""

from __future__ import annotations

import json
import logging
import os
import threading
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


@dataclass(frozen=True)
class PyannoteOptions:
    """Settings of the pyannote segmenter (defaults chosen on ami-excerpts trn* only: bench/segmentation.py)."""

    #: Hop between 10 s windows, seconds. pyannote 3.1 uses 1 s (10% of the window); 2.5 s scored as well
    #: on trn* (15.8% vs 16.0% pooled DER) at 40% of the cost.
    step_s: float = 2.5
    #: Shortest speech of one local speaker (seconds) worth an embedding; shorter ones are dropped.
    min_embed_s: float = 0.4
    #: AHC stop: unknown clusters whose average-linkage cosine similarity is below this stay apart.
    cluster_similarity: float = 0.35
    #: Clusters with fewer members than this are folded into the most similar larger cluster (when one
    #: exists): a handful of window embeddings is too little to be a speaker of its own.
    min_cluster_size: int = 1
    #: An embedding is labelled as an enrolled person on its own when it beats that person's accept bar
    #: by this margin; otherwise only its cluster's voiceprint can make it that person. Local-speaker
    #: embeddings are short and noisy: on meetings-dev (enrolled Me) 0.1 cut mean false_me 11.1% -> 5.5% and
    #: mean DER 26.1% -> 23.3% (me_recall 87.3% -> 85.6%); ami-excerpts have no profiles, so it is unaffected.
    embedding_accept_margin: float = 0.1
    #: Gaps shorter than this (seconds) inside one label's speech are filled.
    min_gap_s: float = 0.0
    #: Regions shorter than this (seconds) are dropped.
    min_region_s: float = 0.0
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


class PyannoteSegmenter:
    """segmentation-3.0 + idme's encoder and thresholds: labels whole recordings with overlapping speakers.

    Works on a whole signal (file mode); it keeps no state between calls.
    """

    name = "pyannote"
    sample_rate = SAMPLE_RATE_HZ

    def __init__(self, embedder: Embedder, thresholds: Thresholds, profiles: list[Profile] | None = None,
                 options: PyannoteOptions | None = None, model: SegmentationModel | None = None) -> None:
        if embedder.sample_rate != SAMPLE_RATE_HZ:
            raise ValueError(f"the segmenter works at 16 kHz; the encoder expects {embedder.sample_rate} Hz")
        self.embedder = embedder
        self.thresholds = thresholds
        self.profiles = list(profiles or [])
        self.options = options or PyannoteOptions()
        if self.options.step_s <= 0 or self.options.step_s > WINDOW_SAMPLES / SAMPLE_RATE_HZ:
            raise ValueError(f"step_s must be in (0, 10], got {self.options.step_s}")
        self.model = model or SegmentationModel(intra_op_threads=self.options.intra_op_threads)

    # -- 1-2: windows and powerset decoding ---------------------------------------------------------

    def segment(self, samples: np.ndarray) -> WindowActivity:
        """samples: float32 (n,), 16 kHz -> local-speaker activity of every window."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise AudioError(f"expected mono samples of shape (n,), got shape {samples.shape}")
        step = max(1, round(self.options.step_s * SAMPLE_RATE_HZ))
        starts = window_starts(len(samples), step)
        active = np.zeros((len(starts), NUM_FRAMES, MAX_LOCAL), dtype=bool)
        for b in range(0, len(starts), self.options.batch):
            batch = np.zeros((len(starts[b:b + self.options.batch]), WINDOW_SAMPLES), dtype=np.float32)
            for i, s in enumerate(starts[b:b + self.options.batch]):
                chunk = samples[s:s + WINDOW_SAMPLES]
                batch[i, :len(chunk)] = chunk  # a file shorter than 10 s is zero-padded
            active[b:b + len(batch)] = decode_powerset(self.model.log_probs(batch))
        return WindowActivity(starts, active, len(samples))

    # -- 3: local-speaker embeddings ------------------------------------------------------------

    def embed_local(self, samples: np.ndarray, wa: WindowActivity) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of each window's local speakers: float32 (W, 3, D) and bool (W, 3) (embedded or not)."""
        min_samples = max(round(self.options.min_embed_s * SAMPLE_RATE_HZ),
                          round(self.embedder.min_input_s * SAMPLE_RATE_HZ * 0.5), 1)
        emb = np.zeros((len(wa.starts), MAX_LOCAL, self.embedder.dimension), dtype=np.float32)
        valid = np.zeros((len(wa.starts), MAX_LOCAL), dtype=bool)
        # Sample span of each local frame (the 270 samples around its centre), relative to the window.
        lo, hi = frame_bounds(np.arange(NUM_FRAMES))
        clips: list[np.ndarray] = []
        where: list[tuple[int, int]] = []
        for w, s in enumerate(wa.starts):
            act = wa.active[w]
            alone = act & (act.sum(axis=1, keepdims=True) == 1)
            for k in range(MAX_LOCAL):
                for frames in (alone[:, k], act[:, k]):  # overlap excluded first; all its frames if too short
                    if frames.sum() * FRAME_STEP_SAMPLES < min_samples:
                        continue
                    idx = np.concatenate([np.arange(a, b) for a, b in zip(lo[frames], hi[frames])]) + s
                    idx = idx[(idx >= 0) & (idx < wa.n_samples)]
                    if len(idx) >= min_samples:
                        clips.append(samples[idx])
                        where.append((w, k))
                    break
            # Embed in small groups so a long recording never holds all its clips at once.
            if len(clips) >= 32 or (w == len(wa.starts) - 1 and clips):
                for (cw, ck), v in zip(where, _embed_all(self.embedder, clips)):
                    emb[cw, ck], valid[cw, ck] = v, True
                clips, where = [], []
        return emb, valid

    # -- 4: clustering, enrolled people first ---------------------------------------------------

    def cluster(self, emb: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, _Labels]:
        """Label of every (window, local speaker): int64 (W, 3), -1 where not embedded; and the labels."""
        from ..identity.verify import score, threshold

        opts = self.options
        W = emb.shape[0]
        flat = np.flatnonzero(valid.ravel())
        vecs = _unit(emb.reshape(-1, emb.shape[-1])[flat].astype(np.float64))
        n = len(flat)
        assign = np.full(n, -1, dtype=np.int64)
        labels = _Labels()
        # Enrolled people first: an embedding that reaches a profile's bar is that person.
        prof_index: dict[str, int] = {}
        if self.profiles and n:
            sims = np.stack([[score(p, v) for v in vecs] for p in self.profiles])      # (P, n)
            bars = np.array([threshold(self.thresholds, p) for p in self.profiles])[:, None]
            best = np.argmax(sims - bars, axis=0)
            ok = (sims - bars)[best, np.arange(n)] >= opts.embedding_accept_margin
            for i in np.flatnonzero(ok):
                p = self.profiles[best[i]]
                if p.name not in prof_index:
                    prof_index[p.name] = _add_label(labels, p.display, p.kind, p.centroid)
                assign[i] = prof_index[p.name]
        rest = np.flatnonzero(assign < 0)
        groups = _ahc(vecs[rest], opts.cluster_similarity, opts.min_cluster_size, opts.max_ahc)
        n_unknown = 0
        for g in range(int(groups.max()) + 1 if len(groups) else 0):
            members = rest[groups == g]
            centroid = _unit(vecs[members].mean(axis=0))
            # A cluster whose voiceprint reaches a profile's bar is that person after all.
            target = None
            if self.profiles:
                margins = [score(p, centroid) - threshold(self.thresholds, p) for p in self.profiles]
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
        for li in range(len(labels.names)):
            members = vecs[assign == li]
            labels.scores[li] = float(np.mean(members @ labels.centroids[li])) if len(members) else 0.0
        out = np.full(W * MAX_LOCAL, -1, dtype=np.int64)
        out[flat] = assign
        out = out.reshape(W, MAX_LOCAL)
        _cannot_link(out, emb, valid, labels)
        _renumber_unknown(out, labels)
        return out, labels

    # -- 5: aggregation -------------------------------------------------------------------------

    def aggregate(self, wa: WindowActivity, assign: np.ndarray, n_labels: int) -> np.ndarray:
        """bool (frames, labels): who speaks on each global frame (overlap-add of window activity, top-k by
        the averaged speaker count)."""
        T = wa.n_frames
        g0 = wa.global_frames()
        score = np.zeros((T, max(n_labels, 1)), dtype=np.float32)
        count = np.zeros(T, dtype=np.float32)
        cover = np.zeros(T, dtype=np.float32)
        for w, g in enumerate(g0):
            act = wa.active[w]
            count[g:g + NUM_FRAMES] += act.sum(axis=1)
            cover[g:g + NUM_FRAMES] += 1
            for k in range(MAX_LOCAL):
                if assign[w, k] >= 0:  # distinct within a window (cannot-link), so a plain sum
                    score[g:g + NUM_FRAMES, assign[w, k]] += act[:, k]
        cover = np.maximum(cover, 1)
        score /= cover[:, None]
        k_on = np.minimum(np.rint(count / cover).astype(np.int64), MAX_LOCAL - 1)
        on = np.zeros_like(score, dtype=bool)
        order = np.argsort(-score, axis=1)
        for k in range(1, min(MAX_LOCAL, score.shape[1] + 1)):
            rows = np.flatnonzero(k_on >= k)
            on[rows, order[rows, k - 1]] = True
        on &= score > 0
        # Frames beyond the end of the signal (a zero-padded short file) are never speech.
        _, hi = frame_bounds(np.arange(T))
        on[hi - FRAME_STEP_SAMPLES >= wa.n_samples] = False
        return on[:, :n_labels]

    def to_regions(self, on: np.ndarray, n_samples: int) -> list[SpeechRegion]:
        """Runs of "on" frames per label -> regions (short gaps filled, short regions dropped)."""
        gap = round(self.options.min_gap_s * SAMPLE_RATE_HZ)
        shortest = round(self.options.min_region_s * SAMPLE_RATE_HZ)
        lo, hi = frame_bounds(np.arange(on.shape[0]))
        spans: list[tuple[int, int, int]] = []
        for label in range(on.shape[1]):
            col = on[:, label].astype(np.int8)
            edges = np.diff(np.concatenate([[0], col, [0]]))
            runs = []
            for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                s, e = max(int(lo[a]), 0), min(int(hi[b - 1]), n_samples)
                if runs and s - runs[-1][1] <= gap:
                    runs[-1][1] = e
                elif e > s:
                    runs.append([s, e])
            spans += [(s, e, label) for s, e in runs if e - s >= max(shortest, 1)]
        spans.sort()
        # Overlap flag: on some frame of the region another label is on too.
        busy = on.sum(axis=1) >= 2
        out = []
        for s, e, label in spans:
            a = max(0, (s - int(lo[0])) // FRAME_STEP_SAMPLES)
            b = max(a + 1, -(-(e - int(lo[0])) // FRAME_STEP_SAMPLES))
            out.append(SpeechRegion(s, e - s, label, bool(busy[a:b].any())))
        return out

    # -- whole path -----------------------------------------------------------------------------

    def label(self, samples: np.ndarray) -> list[LabelledRegion]:
        """samples: float32 (n,), 16 kHz -> labelled regions (may overlap in time); [] for silence."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return []
        wa = self.segment(samples)
        emb, valid = self.embed_local(samples, wa)
        assign, labels = self.cluster(emb, valid)
        if not labels.names:
            return []
        on = self.aggregate(wa, assign, len(labels.names))
        logger.debug("pyannote segmenter: %d windows, %d local speakers embedded, labels %s", len(wa.starts),
                     int(valid.sum()), labels.names)
        return [LabelledRegion(r, labels.names[r.speaker], labels.kinds[r.speaker], labels.scores[r.speaker])
                for r in self.to_regions(on, len(samples))]

    def regions(self, samples: np.ndarray) -> list[SpeechRegion]:
        """Segmenter protocol: the regions of :meth:`label`, with file-level speaker indices."""
        return [r.region for r in self.label(samples)]

    def events(self, samples: np.ndarray) -> list[dict[str, Any]]:
        """``listen --json`` events for the signal (final only; events of different speakers may overlap)."""
        return to_events(self.label(samples), SAMPLE_RATE_HZ)


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


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


def _ahc(vecs: np.ndarray, similarity: float, min_size: int, max_n: int) -> np.ndarray:
    """Average-linkage cosine AHC of unit rows ``vecs`` (n, D) -> int64 (n,) cluster ids 0..C-1.

    Clusters smaller than ``min_size`` join the most similar large cluster (when there is one). Above
    ``max_n`` rows, the first ``max_n`` (evenly spread) are clustered and the others join the nearest
    centroid, so memory stays bounded on long recordings.
    """
    n = len(vecs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage

    pick = np.arange(n) if n <= max_n else np.linspace(0, n - 1, max_n).round().astype(np.int64)
    z = linkage(vecs[pick], method="average", metric="cosine")
    ids = fcluster(z, t=1.0 - similarity, criterion="distance") - 1
    sizes = np.bincount(ids)
    large = np.flatnonzero(sizes >= min_size)
    cents = _unit(np.stack([vecs[pick][ids == c].mean(axis=0) for c in range(len(sizes))]))
    if len(large) and len(large) < len(sizes):
        for c in np.flatnonzero(sizes < min_size):
            ids[ids == c] = large[np.argmax(cents[large] @ cents[c])]
    keep = np.unique(ids)
    remap = {int(c): i for i, c in enumerate(keep)}
    ids = np.array([remap[int(c)] for c in ids], dtype=np.int64)
    if len(pick) == n:
        return ids
    cents = _unit(np.stack([vecs[pick][ids == c].mean(axis=0) for c in range(len(keep))]))
    out = np.argmax(vecs @ cents.T, axis=1).astype(np.int64)
    out[pick] = ids
    return out


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


def label_file(path: str | os.PathLike[str], embedder: Embedder, profiles: list[Profile], th: Thresholds,
               options: PyannoteOptions | None = None,
               model: SegmentationModel | None = None) -> list[dict[str, Any]]:
    """Labels a recording with the pyannote segmenter: ``listen --json`` events (final, may overlap)."""
    from ..audio.file import read_audio

    samples = read_audio(path)
    return PyannoteSegmenter(embedder, th, profiles, options, model).events(samples)
