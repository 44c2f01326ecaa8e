"""Live overlap-aware labelling with segmentation-3.0: a rolling buffer (diart's design), without threads.

``PyannoteLabeller`` has the interface :class:`idme.pipeline.Pipeline` drives (``push`` a 16 kHz frame, get
``SegmentEvent``s; ``finish``; ``warm_up``; ``speakers``), so :mod:`idme.live` assembles it like the webrtc
``Labeller`` and sinks, transcription and the session store work unchanged. Events may overlap in time.

Every ``step_s`` (0.5 s) of new audio:

1. the latest ``window_s`` (10 s) of the stream (zero-padded on the left at the start)
   goes through the segmentation network; powerset decoding gives up to 3 local speakers per frame;
2. each local speaker with at least ``min_embed_s`` of speech alone in the window's last ``embed_s`` is
   embedded by the idme encoder and assigned, with a cannot-link inside the window (optimal assignment),
   to an enrolled person (their accept bar), an existing unknown cluster (cosine >= ``new_similarity``) or
   a new "Speaker N"; unknown centroids are running means;
3. its frames are added (overlap-add) to the per-label activity and speaker count of the global frames;
4. frames older than ``latency_s - step_s`` are final: per frame the ``round(count)`` most active labels
   are on. A label's run of final "on" frames is one segment; it gets interim events while it lasts
   and its final event when it ends (``latency_s`` + at most one step after the speech ends).

Re-clustering (every ``recluster_every_s`` and at the end) runs the file-mode clustering
(:meth:`PyannoteSegmenter.cluster`, enrolled people first) over every stored local-speaker embedding;
each online cluster takes the label most of its embeddings got, and segments whose label changed are
re-emitted (same id, final) as corrections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import AudioError
from ..pipeline import SegmentEvent, StageTimes
from .pyannote import (FRAME_STEP_SAMPLES, MAX_LOCAL, NUM_FRAMES, SAMPLE_RATE_HZ, WINDOW_SAMPLES, PyannoteOptions,
                       PyannoteSegmenter, SegmentationModel, _unit, clip_quality, decode_powerset,
                       frame_bounds)

if TYPE_CHECKING:
    from ..audio.frames import AudioFrame
    from ..embed.base import Embedder
    from ..identity.profiles import Profile
    from ..identity.thresholds import Thresholds

#: Range of ``--latency`` (seconds): one step at least, one diart window at most.
LATENCY_RANGE_S = (0.5, 5.0)

#: A local speaker's audio whose spectrum hardly changes from one frame to the next (median total-variation
#: distance of successive normalised power spectra, 128 ms frames every 32 ms, below this) is a tone, a held
#: chord or a hum, not speech: segmentation-3.0 fires on such sounds (a 440 Hz tone became "Speaker 1", a
#: sawtooth a 2.5 s "speaker"). Tones, a sawtooth and a three-note chord measure 0.000-0.007 (with noise at
#: 30 dB SNR). The reference speech of the AMI training excerpts (trn*) measures 0.113 at the lowest per
#: region of >= 0.5 s and 0.041 per 0.5 s piece (780 pieces); held out (dev*): 0.264 and 0.109.
MIN_SPECTRAL_FLUX = 0.03


def spectral_flux(samples: np.ndarray) -> float:
    """Median change of the normalised power spectrum between successive 128 ms frames (32 ms hop, 60 Hz to
    8 kHz, frames within 30 dB of the loudest): ~0 for steady tones, 0.1-0.6 for speech and noise; 1.0 for
    audio too short or too quiet to tell (treated as speech-like). About 6 ms of CPU for 5 s of audio (looking
    at the last 2 s only halves that, but moved one dev excerpt's labels: DER 18.1% -> 26.2%)."""
    x = np.asarray(samples, dtype=np.float32)
    n, hop = 2048, 512
    if len(x) < n + 2 * hop:
        return 1.0
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n).astype(np.float32)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2)[:, 60 * n // SAMPLE_RATE_HZ:n // 2]
    energy = power.sum(axis=1)
    keep = energy > max(float(energy.max()) * 1e-3, 1e-10)
    if keep.sum() < 3:
        return 1.0
    shape = power[keep] / energy[keep, None]
    return float(np.median(0.5 * np.abs(np.diff(shape, axis=0)).sum(axis=1)))


@dataclass(frozen=True)
class LiveOptions:
    """Settings of the rolling-buffer segmenter (seconds)."""

    #: Delay before a frame's labels are final: more windows have seen it (0.5-5).
    latency_s: float = 2.0
    #: Hop between windows.
    step_s: float = 0.5
    #: Audio the network sees per step (<= 10 s). diart uses 5 s; the model's own 10 s scored better on
    #: ami-excerpts trn* at --latency 2 (pooled DER 22.5% vs 24.1%; the cost per step is the same, the ONNX
    #: input is fixed at 10 s).
    window_s: float = 10.0
    #: Part of the window (its end) the local speakers are embedded on.
    embed_s: float = 5.0
    #: Shortest speech of a local speaker (inside ``embed_s``) worth an embedding.
    min_embed_s: float = 0.5
    #: A local speaker joins the most similar unknown cluster at or above this cosine, else opens one.
    new_similarity: float = 0.35
    #: Interim events of an open segment come at most this often (every step while a recogniser runs and
    #: the segment has no partial text yet).
    interim_every_s: float = 1.0
    #: Live with a recogniser: interim events carry the segment's audio so far (its latest
    #: ``partial_window_s``, at most what the buffer holds) for partial text; 0 turns partial text off.
    partial_window_s: float = 8.0
    #: Live sessions re-cluster every this many seconds of audio (and once at the end).
    recluster_every_s: float = 60.0
    #: A pause up to this long between two segments of one speaker joins them into one turn for the
    #: recogniser (Pipeline's turn buffer).
    fill_gap_s: float = 1.5
    #: Options of the file-mode clustering used for re-clustering.
    file: PyannoteOptions = field(default_factory=PyannoteOptions)

    def __post_init__(self) -> None:
        lo, hi = LATENCY_RANGE_S
        if not lo <= self.latency_s <= hi:
            raise ValueError(f"latency must be between {lo} and {hi} seconds, got {self.latency_s}")
        if not 0 < self.step_s <= self.latency_s:
            raise ValueError(f"step_s must be in (0, latency_s], got {self.step_s}")
        if not self.step_s < self.window_s <= WINDOW_SAMPLES / SAMPLE_RATE_HZ:
            raise ValueError(f"window_s must be in (step_s, 10], got {self.window_s}")


@dataclass
class _Open:
    """A segment being spoken: one label's run of final "on" frames."""

    id: int
    label: int
    first: int        # first global frame
    last: int         # last global frame that was on
    last_interim_s: float = -1e9


class _Chunker:
    """``current_bounds`` for Pipeline's turn buffer: the open segments' sample span, or None."""

    def __init__(self, owner: PyannoteLabeller) -> None:
        self.owner = owner

    @property
    def current_bounds(self) -> tuple[int, int] | None:
        o = self.owner
        if not o._open:
            return None
        first = min(s.first for s in o._open.values())
        return max(0, int(frame_bounds(first)[0])), o._stream_end


class PyannoteLabeller:
    """Rolling-buffer labeller: ``push`` 16 kHz frames, get ``SegmentEvent``s (they may overlap in time).

    live: stamp ``latency_ms`` (from the frames' ``arrived_at`` and ``clock``), interim events and periodic
    re-clustering; a plain file runs the same path without them.
    """

    def __init__(self, embedder: Embedder, thresholds: Thresholds, profiles: list[Profile] | None = None,
                 options: LiveOptions | None = None, live: bool = True, model: SegmentationModel | None = None,
                 clock=time.monotonic, narrowband: bool = False, calibration=None) -> None:
        """calibration: Me / named decisions on calibrated LLRs, as ``PyannoteSegmenter`` takes them."""
        self.opt = options or LiveOptions()
        self.seg = PyannoteSegmenter(embedder, thresholds, profiles, self.opt.file, model, calibration=calibration,
                                     narrowband=narrowband)
        self.embedder = embedder
        self.thresholds = thresholds
        self.profiles = list(profiles or [])
        self.narrowband = narrowband
        self.live = live
        self.clock = clock
        self.times = StageTimes()
        self.chunker = _Chunker(self)
        #: Set by Pipeline when a recogniser runs live: interim events carry the segment's audio so far, for
        #: the recogniser's partial text.
        self.partial_audio = False
        #: Set by Pipeline with the recogniser: ``partial_wanted(seg_id)`` is True while that segment has no
        #: partial text yet and the recogniser is free for it (then interims come every step).
        self.partial_wanted = None
        self.speakers_changed = False
        self._step = int(round(self.opt.step_s * SAMPLE_RATE_HZ))
        self._win = int(round(self.opt.window_s * SAMPLE_RATE_HZ))
        self._hist = max(self._win, int(round((self.opt.latency_s + 1.0) * SAMPLE_RATE_HZ)))
        self._audio = np.zeros(0, dtype=np.float32)   # the stream's last samples
        self._audio_start = 0                          # stream sample of _audio[0]
        self._stream_end = 0
        self._next_step = self._step                   # stream sample at which the next window ends
        self._arrivals: list[tuple[int, float]] = []
        # Per global frame from _base: label activity sums, speaker-count sums, window cover.
        self._base = 0
        self._score = np.zeros((0, 0), dtype=np.float32)
        self._count = np.zeros(0, dtype=np.float32)
        self._cover = np.zeros(0, dtype=np.float32)
        self._final = 0                                # first global frame not yet final
        # Online clusters: kind/name/key and running sums.
        self._names: list[str] = []
        self._kinds: list[str] = []
        self._keys: list[str | None] = []              # profile name, or None for unknown
        self._sums: list[np.ndarray] = []
        self._counts: list[int] = []
        self._pending: dict[int, int] = {}             # label -> id announced by interims before final frames
        self._interim_at: dict[tuple, float] = {}
        self._n_unknown = 0
        self._display: list[int] = []                  # online cluster -> cluster whose name it shows
        # Stored local-speaker embeddings for re-clustering: rows of (window, local k), online cluster.
        self._emb: list[np.ndarray] = []
        self._emb_valid: list[np.ndarray] = []
        self._emb_label: list[np.ndarray] = []
        self._emb_solo: list[np.ndarray] = []   # seconds each local speaker spoke alone (cannot-link)
        self._emb_quality: list[np.ndarray] = []  # (3, 3) each local speaker's clip_quality (calibrated bars)
        self._open: dict[int, _Open] = {}
        self._segs: dict[int, tuple[int, int, int]] = {}   # id -> (first frame, last frame, online label)
        self._shown: dict[int, tuple[str, str]] = {}       # id -> (label, kind) as last emitted
        self._seg_embs: dict[int, list[tuple[np.ndarray, float]]] = {}
        self._next_id = 0
        self._last_recluster_s = 0.0

    # -- Labeller interface --------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Loads the encoder and the network and runs each once."""
        load = getattr(self.embedder, "load", None)
        if load is not None:
            load()
        self.embedder.embed(np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE_HZ).astype(np.float32))
        self.seg.model.log_probs(np.zeros((1, WINDOW_SAMPLES), dtype=np.float32))

    def push(self, frame: AudioFrame) -> list[SegmentEvent]:
        """Consumes one 16 kHz frame; returns the events it produced (interims, finals, corrections)."""
        x = np.asarray(frame.samples, dtype=np.float32)
        if getattr(frame, "sample_rate", SAMPLE_RATE_HZ) != SAMPLE_RATE_HZ:
            raise AudioError(f"the pyannote segmenter takes 16 kHz frames, got {frame.sample_rate} Hz: resample the "
                             "input first (idme listen --file does)")
        end = frame.start_sample + len(x)
        if frame.arrived_at is not None:
            self._arrivals.append((end, frame.arrived_at))
            self._arrivals = self._arrivals[-512:]
        self._audio = np.concatenate([self._audio, x])
        self._stream_end = end
        events: list[SegmentEvent] = []
        while self._stream_end >= self._next_step:
            events += self._run_step(self._next_step)
            self._next_step += self._step
        keep = self._audio_start + len(self._audio) - self._hist
        if keep > self._audio_start:
            self._audio = self._audio[keep - self._audio_start:]
            self._audio_start = keep
        if self.live and end / SAMPLE_RATE_HZ - self._last_recluster_s >= self.opt.recluster_every_s:
            self._last_recluster_s = end / SAMPLE_RATE_HZ
            events += self._recluster()
        return events

    def finish(self) -> list[SegmentEvent]:
        """End of stream: a last window at the end, every frame final, every segment closed, re-clustered."""
        events: list[SegmentEvent] = []
        if self._stream_end > self._next_step - self._step or self._stream_end == 0:
            if self._stream_end > 0:
                events += self._run_step(self._stream_end, finalize=False)
        last = -(-self._stream_end // FRAME_STEP_SAMPLES)
        events += self._finalize_to(max(self._final, last))
        for o in list(self._open.values()):
            events.append(self._close(o))
        events += self._recluster()
        self.times.audio_s = self._stream_end / SAMPLE_RATE_HZ
        return events

    def speakers(self) -> dict[str, dict]:
        """Final speakers: label -> {"kind", "embeddings" (n, d), "durations" (n,)} of their segments."""
        out: dict[str, dict] = {}
        for sid, (name, kind) in self._shown.items():
            entry = out.setdefault(name, {"kind": kind, "embeddings": [], "durations": []})
            for e, d in self._seg_embs.get(sid, []):
                entry["embeddings"].append(e)
                entry["durations"].append(d)
        for v in out.values():
            v["embeddings"] = np.stack(v["embeddings"]).astype(np.float32) if v["embeddings"] else None
            v["durations"] = np.asarray(v["durations"], np.float32) if v["durations"] else None
        return out

    # -- one step ------------------------------------------------------------------------------------
    def _window(self, end: int) -> tuple[np.ndarray, int]:
        """The model input ending at stream sample ``end`` (10 s, the last ``window_s`` real) and its start."""
        start = end - WINDOW_SAMPLES
        buf = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        a = max(end - self._win, self._audio_start, 0)
        chunk = self._audio[a - self._audio_start:end - self._audio_start]
        buf[WINDOW_SAMPLES - (end - a):WINDOW_SAMPLES - (end - a) + len(chunk)] = chunk
        return buf, start

    def _run_step(self, end: int, finalize: bool = True) -> list[SegmentEvent]:
        t0 = time.perf_counter()
        buf, start = self._window(end)
        act = decode_powerset(self.seg.model.log_probs(buf[None])[0])          # (589, 3)
        g0 = int(round(start / FRAME_STEP_SAMPLES))
        lo, hi = frame_bounds(np.arange(NUM_FRAMES))
        real = lo + start >= end - self._win                                    # frames of real audio
        act = act & real[:, None]
        self.times.vad += time.perf_counter() - t0
        # Embed local speakers on their frames alone inside the window's last embed_s.
        t0 = time.perf_counter()
        tail = lo + start >= end - int(round(self.opt.embed_s * SAMPLE_RATE_HZ))
        alone = act & (act.sum(axis=1, keepdims=True) == 1) & tail[:, None]
        min_frames = self.opt.min_embed_s * SAMPLE_RATE_HZ / FRAME_STEP_SAMPLES
        ks, clips = [], []
        quality = np.full((MAX_LOCAL, 3), np.nan, dtype=np.float32)
        for k in range(MAX_LOCAL):
            frames = alone[:, k]
            if frames.sum() < min_frames:
                continue
            idx = np.concatenate([np.arange(a, b) for a, b in zip(lo[frames], hi[frames])])
            clip = buf[idx[(idx >= 0) & (idx < WINDOW_SAMPLES)]]
            if spectral_flux(clip) < MIN_SPECTRAL_FLUX:
                continue  # a tone or a held note: no speaker (its frames stay unlabelled, so never "on")
            ks.append(k)
            clips.append(clip)
            quality[k] = (clip_quality(clip, self.narrowband) if self.seg.calibration is not None
                          else (len(clip) / SAMPLE_RATE_HZ, np.nan, np.nan))
        embs = [self.embedder.embed(c) for c in clips]
        self.times.embed += time.perf_counter() - t0
        t0 = time.perf_counter()
        assign = self._assign(ks, embs, quality[ks])
        row = np.zeros((MAX_LOCAL, self.embedder.dimension), dtype=np.float32)
        valid = np.zeros(MAX_LOCAL, dtype=bool)
        labels = np.full(MAX_LOCAL, -1, dtype=np.int64)
        for k, e, lab in zip(ks, embs, assign):
            row[k], valid[k], labels[k] = e, True, lab
        self._emb.append(row)
        self._emb_valid.append(valid)
        self._emb_label.append(labels)
        self._emb_solo.append(alone.sum(axis=0) * (FRAME_STEP_SAMPLES / SAMPLE_RATE_HZ))
        self._emb_quality.append(quality)
        # Overlap-add into the global frame grid (frames before the stream start are dropped).
        self._grow(g0 + NUM_FRAMES)
        for j0 in range(NUM_FRAMES):
            if real[j0]:
                break
        gs = np.arange(g0 + j0, g0 + NUM_FRAMES)
        keep = (gs >= self._final)
        gs, sl = gs[keep], np.arange(j0, NUM_FRAMES)[keep]
        rel = gs - self._base
        self._count[rel] += act[sl].sum(axis=1)
        self._cover[rel] += 1
        for k in range(MAX_LOCAL):
            if labels[k] >= 0:
                self._score[rel, labels[k]] += act[sl, k]
                if sl.size:
                    self._attach(labels[k], embs[ks.index(k)], float(alone[:, k].sum()) * FRAME_STEP_SAMPLES
                                 / SAMPLE_RATE_HZ)
        self.times.decide += time.perf_counter() - t0
        events: list[SegmentEvent] = []
        if finalize:
            frontier = end - int(round((self.opt.latency_s - self.opt.step_s) * SAMPLE_RATE_HZ))
            # Frames whose span ends by the frontier are final.
            last = int((frontier - FRAME_STEP_SAMPLES // 2 - 495) // FRAME_STEP_SAMPLES)
            events += self._finalize_to(max(self._final, last))
        if self.live:
            events += self._interims(end)
        return events

    def _attach(self, label: int, emb: np.ndarray, dur_s: float) -> None:
        """Keeps one embedding per open segment of ``label`` per step (for speakers(), bounded)."""
        for o in self._open.values():
            if o.label == label:
                lst = self._seg_embs.setdefault(o.id, [])
                if len(lst) < 16:
                    lst.append((_unit(np.asarray(emb, np.float32)), dur_s))

    def _grow(self, upto: int) -> None:
        """Extends the frame arrays to global frame ``upto`` (exclusive) and drops final frames."""
        drop = self._final - self._base
        if drop > 0:
            self._score, self._count, self._cover = self._score[drop:], self._count[drop:], self._cover[drop:]
            self._base = self._final
        n = upto - self._base
        if n > len(self._count):
            extra = n - len(self._count)
            self._score = np.concatenate([self._score, np.zeros((extra, self._score.shape[1]), np.float32)])
            self._count = np.concatenate([self._count, np.zeros(extra, np.float32)])
            self._cover = np.concatenate([self._cover, np.zeros(extra, np.float32)])
        if self._score.shape[1] < len(self._names):
            self._score = np.concatenate([self._score, np.zeros((len(self._score), len(self._names)
                                                                  - self._score.shape[1]), np.float32)], axis=1)

    # -- clustering ------------------------------------------------------------------------------------
    def _assign(self, ks: list[int], embs: list[np.ndarray], quality: np.ndarray | None = None) -> list[int]:
        """Online cluster of each local speaker: enrolled first, then unknown clusters; distinct per window.
        quality: (len(ks), 3) their ``clip_quality`` (the calibrated bars)."""
        from scipy.optimize import linear_sum_assignment

        from ..identity.verify import score

        if not ks:
            return []
        vecs = _unit(np.stack(embs).astype(np.float64))
        cols: list[tuple[str, object]] = []
        rows = []
        bars = self.seg.bars(vecs, quality)
        for p, bar in zip(self.seg.profiles, bars):
            rows.append([score(p, v) - b for v, b in zip(vecs, bar)])
            cols.append(("profile", p))
        unknown = [i for i, k in enumerate(self._keys) if k is None]
        for i in unknown:
            c = _unit(self._sums[i])
            rows.append(list(vecs @ c - self.opt.new_similarity))
            cols.append(("cluster", i))
        for _ in ks:
            rows.append([0.0] * len(ks))  # a new cluster: margin 0
            cols.append(("new", None))
        margins = np.asarray(rows, dtype=np.float64).T                    # (local, candidates)
        margins[:, :len(cols) - len(ks)][margins[:, :len(cols) - len(ks)] < 0] = -1e6
        r, c = linear_sum_assignment(-margins)
        out = [-1] * len(ks)
        for i, j in zip(r, c):
            kind, what = cols[j]
            if kind == "profile":
                out[i] = self._profile_label(what)
            elif kind == "cluster":
                out[i] = what
            else:
                self._n_unknown += 1
                out[i] = self._new_label(f"Speaker {self._n_unknown}", "unknown", None)
            self._sums[out[i]] = self._sums[out[i]] + vecs[i]
            self._counts[out[i]] += 1
        return out

    def _profile_label(self, p) -> int:
        if p.name in self._keys:
            return self._keys.index(p.name)
        return self._new_label(p.display, p.kind, p.name)

    def _new_label(self, name: str, kind: str, key: str | None) -> int:
        self._names.append(name)
        self._kinds.append(kind)
        self._keys.append(key)
        self._sums.append(np.zeros(self.embedder.dimension, dtype=np.float64))
        self._counts.append(0)
        self._display.append(len(self._names) - 1)
        self._score = np.concatenate([self._score, np.zeros((len(self._score), 1), np.float32)], axis=1)
        return len(self._names) - 1

    def _shown_of(self, label: int) -> tuple[str, str]:
        d = self._display[label]
        return self._names[d], self._kinds[d]

    def _recluster(self) -> list[SegmentEvent]:
        """Re-clusters every stored embedding (file-mode clustering); re-emits segments whose label changed."""
        if not self._emb or not any(v.any() for v in self._emb_valid):
            return []
        emb, valid, online = np.stack(self._emb), np.stack(self._emb_valid), np.stack(self._emb_label)
        assign, labels = self.seg.cluster(emb, valid, np.stack(self._emb_solo), np.stack(self._emb_quality),
                                          overlap=self.opt.embed_s / self.opt.step_s)
        # Each online cluster takes the new label most of its embeddings got.
        target: dict[int, int] = {}
        for lab in range(len(self._names)):
            got = assign[(online == lab) & (assign >= 0)]
            if len(got):
                target[lab] = int(np.bincount(got).argmax())
        # New label -> the online cluster whose name it shows (an enrolled one, else the earliest).
        owner: dict[int, int] = {}
        for lab in sorted(target, key=lambda x: (self._kinds[x] == "unknown", x)):
            owner.setdefault(target[lab], lab)
        for lab, t in target.items():
            d = owner[t]
            if labels.kinds[t] != "unknown" and self._kinds[d] == "unknown":  # the cluster is an enrolled person
                self._names[d], self._kinds[d] = labels.names[t], labels.kinds[t]
            self._display[lab] = d
        self.speakers_changed = True
        out = []
        for sid, (first, last, lab) in sorted(self._segs.items()):
            shown = self._shown_of(lab)
            if shown != self._shown.get(sid):
                out.append(self._event(sid, first, last, lab, True, None))
        return out

    # -- frames -> segments --------------------------------------------------------------------------
    def _on(self, a: int, b: int) -> np.ndarray:
        """bool (b - a, labels): labels on for global frames [a, b) (their aggregation so far)."""
        rel = np.arange(a, b) - self._base
        ok = (rel >= 0) & (rel < len(self._count))
        n_lab = len(self._names)
        on = np.zeros((b - a, n_lab), dtype=bool)
        if n_lab == 0 or not ok.any():
            return on
        rel = rel[ok]
        cover = np.maximum(self._cover[rel], 1)
        score = self._score[rel, :n_lab] / cover[:, None]
        k_on = np.minimum(np.rint(self._count[rel] / cover).astype(np.int64), MAX_LOCAL - 1)
        order = np.argsort(-score, axis=1)
        sub = np.zeros_like(score, dtype=bool)
        for k in range(1, min(MAX_LOCAL, n_lab + 1)):
            r = np.flatnonzero(k_on >= k)
            sub[r, order[r, k - 1]] = True
        sub &= score > 0
        on[ok] = sub
        return on

    def _finalize_to(self, upto: int) -> list[SegmentEvent]:
        """Makes frames [final, upto) final; opens and closes segments on them."""
        if upto <= self._final:
            return []
        on = self._on(self._final, upto)
        events = []
        for j in range(on.shape[0]):
            g = self._final + j
            for lab in np.flatnonzero(on[j]):
                o = self._open.get(int(lab))
                if o is None:
                    o = self._open[int(lab)] = _Open(self._pending_id(int(lab)), int(lab), g, g)
                o.last = g
            for lab, o in list(self._open.items()):
                if o.last < g:
                    events.append(self._close(o))
        self._final = upto
        return events

    def _pending_id(self, label: int) -> int:
        pid = self._pending.pop(label, None)
        if pid is not None:
            return pid
        sid, self._next_id = self._next_id, self._next_id + 1
        return sid

    def _close(self, o: _Open) -> SegmentEvent:
        self._open.pop(o.label, None)
        self._segs[o.id] = (o.first, o.last, o.label)
        latency = None
        end_sample = int(frame_bounds(o.last)[1])
        if self.live and self._arrivals:
            arrived = next((t for e, t in self._arrivals if e >= end_sample), self._arrivals[-1][1])
            latency = (self.clock() - arrived) * 1000.0
        ev = self._event(o.id, o.first, o.last, o.label, True, latency)
        s, e = max(0, int(frame_bounds(o.first)[0])), min(end_sample, self._stream_end)
        a = s - self._audio_start
        if a >= 0 and e > s:
            ev.audio, ev.audio_start = self._audio[a:e - self._audio_start].copy(), s / SAMPLE_RATE_HZ
        return ev

    def _event(self, sid: int, first: int, last: int, label: int, final: bool,
               latency: float | None) -> SegmentEvent:
        name, kind = self._shown_of(label)
        s = max(0, int(frame_bounds(first)[0])) / SAMPLE_RATE_HZ
        e = min(int(frame_bounds(last)[1]), self._stream_end) / SAMPLE_RATE_HZ
        sc = float(self._score_of(label))
        if final:
            self._shown[sid] = (name, kind)
        return SegmentEvent(sid, s, max(e, s), name, kind, sc, final, latency)

    def _score_of(self, label: int) -> float:
        # Mean resultant length of the cluster's unit embeddings: 1.0 when they all agree.
        d = self._display[label]
        return float(np.linalg.norm(self._sums[d]) / self._counts[d]) if self._counts[d] else 0.0

    def _interims(self, end: int) -> list[SegmentEvent]:
        """Not-final events for segments being spoken (open ones, and speech heard but not yet final)."""
        now_s = end / SAMPLE_RATE_HZ
        last_g = int((end - 495 - FRAME_STEP_SAMPLES // 2) // FRAME_STEP_SAMPLES)
        ahead = self._on(self._final, max(self._final, last_g)) if last_g > self._final else None
        pending = self._pending
        out = []
        for lab in range(len(self._names)):
            active = ahead is not None and bool(ahead[:, lab].any())
            o = self._open.get(lab)
            if o is None and not active:
                continue
            if o is None:
                if lab not in pending:
                    pending[lab] = self._take_id()
                sid = pending[lab]
                first = self._final + int(np.flatnonzero(ahead[:, lab])[0])
                last_seen = self._final + int(np.flatnonzero(ahead[:, lab])[-1])
                key = ("p", lab)
            else:
                sid, first = o.id, o.first
                last_seen = o.last if not active else self._final + int(np.flatnonzero(ahead[:, lab])[-1])
                key = ("o", lab)
            stamp = self._interim_at
            partial = self.partial_audio and self.opt.partial_window_s > 0
            if now_s - stamp.get((key, sid), -1e9) < self.opt.interim_every_s and not (
                    partial and self.partial_wanted is not None and self.partial_wanted(sid)):
                continue
            stamp[(key, sid)] = now_s
            arrived = self._arrivals[-1][1] if self._arrivals else None
            latency = None if arrived is None else (self.clock() - arrived) * 1000.0
            ev = self._event(sid, first, last_seen, lab, False, latency)
            if partial:
                # The segment's audio so far (to the stream end: its speech may go on past the frames the
                # network has placed), for the recogniser's partial text.
                s = max(int(frame_bounds(first)[0]), self._audio_start, end - int(self.opt.partial_window_s
                                                                                   * SAMPLE_RATE_HZ))
                if end > s:
                    ev.audio = self._audio[s - self._audio_start:end - self._audio_start].copy()
                    ev.audio_start = s / SAMPLE_RATE_HZ
            out.append(ev)
        return out

    def _take_id(self) -> int:
        sid, self._next_id = self._next_id, self._next_id + 1
        return sid


class PyannoteFileLabeller:
    """File mode through the same Pipeline: collects the stream, labels it whole at ``finish`` with
    :class:`PyannoteSegmenter` (windows every 2.5 s, AHC, enrolled first), final events with their audio
    (so each region, overlapping ones included, is transcribed on its own audio)."""

    live = False

    def __init__(self, embedder: Embedder, thresholds: Thresholds, profiles: list[Profile] | None = None,
                 options: LiveOptions | None = None, model: SegmentationModel | None = None,
                 calibration=None, narrowband: bool = False) -> None:
        """calibration, narrowband: as ``PyannoteSegmenter`` takes them."""
        self.opt = options or LiveOptions()
        self.seg = PyannoteSegmenter(embedder, thresholds, profiles, self.opt.file, model, calibration=calibration,
                                     narrowband=narrowband)
        self.embedder = embedder
        self.times = StageTimes()
        self.partial_audio = False
        self.speakers_changed = False
        self.chunker = _Chunker(self)
        self._open: dict = {}
        self._stream_end = 0
        self._blocks: list[np.ndarray] = []
        self._labels: list[tuple[str, str]] = []
        self._voices: dict[str, dict] = {}

    def warm_up(self) -> None:
        load = getattr(self.embedder, "load", None)
        if load is not None:
            load()

    def push(self, frame: AudioFrame) -> list[SegmentEvent]:
        self._blocks.append(np.asarray(frame.samples, dtype=np.float32))
        self._stream_end = frame.start_sample + len(frame.samples)
        return []

    def finish(self) -> list[SegmentEvent]:
        x = np.concatenate(self._blocks) if self._blocks else np.zeros(0, np.float32)
        self._blocks = []
        self.times.audio_s = len(x) / SAMPLE_RATE_HZ
        if not len(x):
            return []
        t0 = time.perf_counter()
        labelled, self._voices = self.seg.label_voices(lambda: [x])
        self.times.embed += time.perf_counter() - t0
        out = []
        for i, r in enumerate(sorted(labelled, key=lambda r: (r.region.start_sample, r.label))):
            s, e = r.region.start_sample, r.region.end_sample
            ev = SegmentEvent(i, s / SAMPLE_RATE_HZ, e / SAMPLE_RATE_HZ, r.label, r.kind, r.score, True, None)
            ev.audio, ev.audio_start = x[s:e].copy(), s / SAMPLE_RATE_HZ
            out.append(ev)
            self._labels.append((r.label, r.kind))
        self.speakers_changed = True
        return out

    def speakers(self) -> dict[str, dict]:
        """Final speakers: label -> {"kind", "embeddings" (n, d), "durations" (n,)}: each label's local-speaker
        embeddings and the seconds each spoke alone in its window (None when it has none)."""
        out = {}
        for name, kind in self._labels:
            v = self._voices.get(name, {})
            has = v.get("embeddings") is not None and len(v["embeddings"])
            out[name] = {"kind": kind, "embeddings": v["embeddings"] if has else None,
                         "durations": v["durations"] if has else None}
        return out
