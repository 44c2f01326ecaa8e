"""From audio to labelled segments: the Labeller (a plain object) and the threaded Pipeline around it.

Threads and queues (all bounded)::

    source thread  --frames-->  labeller thread  --events-->  main thread (sinks: console, JSON, session)
                                     |                              ^
                                     +--segments--> ASR worker -----+ (text updates)

* The source thread only reads and resamples (sources resample once, to 16 kHz mono). A file source blocks
  on a full queue (backpressure); a microphone drops its oldest block inside its own queue instead.
* The labeller thread segments (VAD + speaker-change split), embeds and decides. Labels never wait for
  transcription: finished segments are handed to the ASR worker and their text arrives as a later update.
  Live, interim labels also carry the segment so far as a partial request (``TranscriptionWorker.submit_partial``:
  a segment's first partial goes before queued final text, later ones only when no final text waits), and
  its text comes back as a not-final event.
* One stop event plus an end-of-stream sentinel passed down the chain; every thread is joined. ``stop()``
  (the first Ctrl+C) stops the source, then everything already heard is labelled, re-clustered and saved.
  ``abort()`` (the second) ends at once: no further labelling, re-clustering or transcription; events
  already decided are still delivered. A labeller failure stops the source too and is re-raised by ``run``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .audio.frames import TARGET_RATE_HZ, AudioFrame
from .audio.sources import AudioSource
from .embed.base import Embedder
from .identity.tracker import Decision, SpeakerTracker
from .transcribe.base import Transcriber
from .vad import SpeechChunk, SpeechChunker, VadOptions, find_change_points

log = logging.getLogger(__name__)

_END = object()  # end-of-stream sentinel


@dataclass(frozen=True)
class LabelOptions:
    """How speech becomes labelled segments. Times in seconds."""

    #: Speech segmentation (webrtcvad + hysteresis + noise gate).
    vad: VadOptions = VadOptions()
    #: A pause up to this long between two segments of the same speaker is part of their turn (the
    #: reference of a meeting marks whole utterances, pauses included; pyannote calls it min_duration_off).
    fill_gap_s: float = 1.5
    #: Chunks at least this long are searched for speaker changes without a pause (overlapping turns).
    #: Pause-delimited chunks on meetings-dev are single-speaker (turn gaps >= 0.25 s close a chunk), so
    #: the search only matters for long chunks; it costs ~2 embeddings per second of the chunk.
    change_min_chunk_s: float = 4.0
    #: Sliding windows for the speaker-change search. The hop must be a multiple of 10 ms (fbank frames);
    #: windows i and i + win/hop do not overlap and are compared.
    change_win_s: float = 1.5
    change_hop_s: float = 0.75
    #: Shortest piece a change split may leave; shorter pieces stay with their neighbour.
    change_min_piece_s: float = 1.0
    #: Interim labels (live only): first after this much speech in one chunk, then every ``interim_every_s``.
    interim_min_s: float = 1.5
    interim_every_s: float = 1.0
    #: Audio the interim label looks at (the latest part of the chunk), bounding its cost in monologues.
    interim_window_s: float = 3.0
    #: Live with a recogniser: each interim label also asks for partial text of the chunk so far (its latest
    #: ``partial_window_s`` at most, bounding the cost of a partial in monologues); 0 turns partial text off.
    partial_window_s: float = 8.0
    #: Live with a recogniser, the first interim label (and partial text request) comes after this much
    #: speech (VAD pre-roll included) instead of ``interim_min_s``, so that text shows within ~1.5 s of the
    #: speech starting (bench/live_text.py). Moonshine gave text for 69% of meetings-dev segments at 0.6 s,
    #: 92% at 0.9 s; the worker asks for 0.9 s while its partial jobs run slowly (transcribe/worker.py). Until
    #: the segment is ``2 * interim_min_s`` long, interim labels then come every ``interim_every_s / 2``.
    partial_min_s: float = 0.6
    #: Live with a recogniser, while the segment has no partial text yet (the first came back empty, or the
    #: recogniser was busy) and the recogniser is free for it, the speech so far is offered again after this
    #: much more audio, with the last interim's label (no new embedding).
    partial_retry_s: float = 0.2
    #: Live sessions re-cluster every this many seconds of audio (files re-cluster once at the end).
    recluster_every_s: float = 60.0
    #: Bounds on the number of speakers the final re-clustering leaves (``listen --num-speakers`` etc.);
    #: None: as many as the voices say.
    min_speakers: int | None = None
    max_speakers: int | None = None


@dataclass
class SegmentEvent:
    """One labelled segment, as ``idme listen --json`` prints it. Later events with the same ``id``
    replace earlier ones (interim -> final, re-clustering corrections, transcription text)."""

    id: int
    start: float
    end: float
    speaker: str
    kind: str
    score: float
    final: bool
    latency_ms: float | None = None
    text: str = ""
    words: list[dict] = field(default_factory=list)
    #: The segment's audio (16 kHz float32), attached to its first final event for the recogniser only.
    audio: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: Stream time (s) of ``audio``'s first sample (``start`` may be earlier: a filled pause).
    audio_start: float = field(default=0.0, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"id": self.id, "start": round(self.start, 3), "end": round(self.end, 3),
                "speaker": self.speaker, "kind": self.kind, "score": round(float(self.score), 4),
                "final": self.final, "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
                "text": self.text}


@dataclass
class _Segment:
    id: int
    start: float  # speech start (after clamping to the previous segment's end)
    end: float
    decision: Decision
    shown_start: float = 0.0  # start as emitted (after gap filling)


@dataclass
class StageTimes:
    """Seconds spent per stage (for the benchmark)."""

    read_resample: float = 0.0
    vad: float = 0.0
    change_split: float = 0.0
    embed: float = 0.0
    decide: float = 0.0
    asr: float = 0.0
    audio_s: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


class Labeller:
    """Speech -> labelled segments, without threads: ``push`` 16 kHz frames, get ``SegmentEvent``s.

    ``live`` turns on interim labels and periodic re-clustering, and stamps ``latency_ms`` on first labels
    from the frames' ``arrived_at`` (wall time when the source delivered them) and ``clock``.
    """

    def __init__(self, embedder: Embedder, tracker: SpeakerTracker, options: LabelOptions = LabelOptions(),
                 live: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.embedder = embedder
        self.tracker = tracker
        self.opt = options
        tracker.min_speakers, tracker.max_speakers = options.min_speakers, options.max_speakers
        self.live = live
        self.clock = clock
        self.chunker = SpeechChunker(options.vad)
        self.times = StageTimes()
        self.segments: dict[int, _Segment] = {}
        self._order: list[int] = []  # segment ids in time order
        self._next_id = 0
        self._last_end = 0.0  # end (s) of the last segment: the next one may not start earlier
        self._arrivals: deque[tuple[int, float]] = deque(maxlen=4096)  # (end sample of block, arrived_at)
        self._interim_id: int | None = None
        self._interim_start: int | None = None
        self._interim_last_end = 0.0
        self._last_recluster_s = 0.0
        self._stream_end = 0
        #: Attach the open chunk's audio to interim labels, for partial text (set by Pipeline when a
        #: recogniser runs live).
        self.partial_audio = False
        #: Set by Pipeline with a live recogniser: ``partial_wanted(seg_id)`` is True while that segment has no
        #: partial text yet and the recogniser would take a request for it now (see ``partial_retry_s``).
        self.partial_wanted: Callable[[int], bool] | None = None
        self._partial_last_end = 0.0  # stream end (s) of the last partial request
        self._last_interim: SegmentEvent | None = None
        #: Set after each re-clustering: the speakers' voiceprints are worth saving again.
        self.speakers_changed = False

    # -- helpers -------------------------------------------------------------------------------------
    def _arrival_of(self, sample: int) -> float | None:
        """Wall time at which the block holding stream sample ``sample`` arrived (live sources)."""
        for end, t in self._arrivals:
            if end >= sample:
                return t
        return self._arrivals[-1][1] if self._arrivals else None

    def _embed(self, samples: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        e = self.embedder.embed(samples)
        self.times.embed += time.perf_counter() - t0
        return e

    def _split(self, chunk: SpeechChunk) -> list[tuple[int, int]]:
        """Sample ranges (relative to the chunk) of the single-speaker pieces of one chunk."""
        n = len(chunk.samples)
        if chunk.duration_s < self.opt.change_min_chunk_s:
            return [(0, n)]
        t0 = time.perf_counter()
        win = int(self.opt.change_win_s * TARGET_RATE_HZ)
        hop = int(round(self.opt.change_hop_s * 100)) * 160
        embs = self.embedder.embed_windows(chunk.samples, win, hop)
        changes = find_change_points(embs, self.opt.change_hop_s, self.opt.change_win_s, self.tracker.th.change)
        cuts = [0]
        min_piece = int(self.opt.change_min_piece_s * TARGET_RATE_HZ)
        for t in changes:
            c = int(t * TARGET_RATE_HZ)
            if c - cuts[-1] >= min_piece and n - c >= min_piece:
                cuts.append(c)
        cuts.append(n)
        self.times.change_split += time.perf_counter() - t0
        return list(zip(cuts[:-1], cuts[1:]))

    def _shown_start(self, seg: _Segment, prev: _Segment | None) -> float:
        if prev is not None and prev.decision.label == seg.decision.label \
                and seg.start - prev.end <= self.opt.fill_gap_s:
            return prev.end
        return seg.start

    def _event(self, seg: _Segment, final: bool, latency_ms: float | None,
               audio: np.ndarray | None = None) -> SegmentEvent:
        d = seg.decision
        return SegmentEvent(seg.id, seg.shown_start, seg.end, d.label, d.kind, d.score, final, latency_ms,
                            audio=audio, audio_start=seg.start)

    # -- segments ------------------------------------------------------------------------------------
    def _label_chunk(self, chunk: SpeechChunk) -> list[SegmentEvent]:
        # The id announced by this chunk's interim labels carries over to its first final label; an id left
        # over from another chunk is dropped.
        if self._interim_start != chunk.start_sample:
            self._interim_id = None
        # A chunk never starts inside the previous one (pre-roll can reach back across a short gap).
        skip = max(0, int(round(self._last_end * TARGET_RATE_HZ)) - chunk.start_sample)
        if skip >= len(chunk.samples):
            return []
        samples = chunk.samples[skip:]
        start_sample = chunk.start_sample + skip
        events = []
        for a, b in self._split(SpeechChunk(start_sample, samples, chunk.end_arrived_at)):
            piece = samples[a:b]
            start, end = (start_sample + a) / TARGET_RATE_HZ, (start_sample + b) / TARGET_RATE_HZ
            emb = self._embed(piece)
            t0 = time.perf_counter()
            if self._interim_id is not None and not events:
                sid, self._interim_id = self._interim_id, None
            else:
                sid = self._next_id
                self._next_id += 1
            decision = self.tracker.decide(sid, emb, end - start, start, samples=piece)
            self.times.decide += time.perf_counter() - t0
            seg = _Segment(sid, start, end, decision)
            prev = self.segments[self._order[-1]] if self._order else None
            seg.shown_start = self._shown_start(seg, prev)
            self.segments[sid] = seg
            self._order.append(sid)
            self._last_end = end
            latency = None
            if self.live:
                # Measured from the end of the speech, not of the segment: the segment's last piece ends
                # with the post-roll, so counting from its last voiced frame keeps the whole VAD hang-over
                # (end_pause_ms) inside the latency, as a listener experiences it.
                arrived = chunk.end_arrived_at if b == len(samples) and chunk.end_arrived_at is not None \
                    else self._arrival_of(start_sample + b)
                if arrived is not None:
                    latency = (self.clock() - arrived) * 1000.0
            events.append(self._event(seg, True, latency, audio=piece))
        return events

    def _interim(self) -> list[SegmentEvent]:
        first_s = self.opt.interim_min_s
        if self.partial_audio and self.opt.partial_window_s > 0:
            first_s = min(first_s, self.opt.partial_min_s)
        if self.chunker.current_duration_s < first_s:
            if self.chunker.current_duration_s == 0.0:
                self._interim_start = None
            return []
        # Timing is decided from the open chunk's bounds; only the window the interim embeds is copied
        # (concatenating the whole chunk, up to 30 s, every 30 ms frame was the old hot spot).
        bounds = self.chunker.current_bounds
        if bounds is None:
            self._interim_start = None
            return []
        start_sample, end_sample = bounds
        if start_sample != self._interim_start:
            self._interim_start, self._interim_last_end = start_sample, 0.0
            self._interim_id = None
        end_s = end_sample / TARGET_RATE_HZ
        every_s = self.opt.interim_every_s
        if first_s < self.opt.interim_min_s and self.chunker.current_duration_s < 2 * self.opt.interim_min_s:
            # Partial text on: early in a segment, refresh twice as often, so that a first partial that
            # came back empty (under a second of speech) is soon followed by one that is not.
            every_s = every_s / 2
        last = self._last_interim
        if end_s - self._interim_last_end < every_s:
            # No label due. Partial text on and none yet for this segment, the recogniser free for it: offer
            # the speech so far again (the last interim's label, no new embedding).
            if not (self.partial_audio and self.partial_wanted is not None and last is not None
                    and last.id == self._interim_id and end_s - self._partial_last_end >= self.opt.partial_retry_s
                    and self.partial_wanted(last.id)):
                return []
            start = max(start_sample / TARGET_RATE_HZ, self._last_end)
            ev = SegmentEvent(last.id, start, end_s, last.speaker, last.kind, last.score, False, None)
        else:
            cur = self.chunker.current_tail(int(self.opt.interim_window_s * TARGET_RATE_HZ))
            if cur is None:
                return []
            self._interim_last_end = cur.end_s
            if self._interim_id is None:
                self._interim_id = self._next_id
                self._next_id += 1
            tail = cur.samples
            d = self.tracker.peek(self._embed(tail), len(tail) / TARGET_RATE_HZ, samples=tail)
            start = max(start_sample / TARGET_RATE_HZ, self._last_end)
            arrived = self._arrival_of(end_sample)
            latency = None if arrived is None else (self.clock() - arrived) * 1000.0
            ev = SegmentEvent(self._interim_id, start, end_s, d.label, d.kind, d.score, False, latency)
            self._last_interim = ev
        if self.partial_audio and self.opt.partial_window_s > 0:
            self._partial_last_end = end_s
            # The chunk so far (from the start this segment will have), for the recogniser's partial text.
            keep = min(end_sample - int(round(start * TARGET_RATE_HZ)),
                       int(self.opt.partial_window_s * TARGET_RATE_HZ))
            so_far = self.chunker.current_tail(keep) if keep > 0 else None
            if so_far is not None:
                ev.audio, ev.audio_start = so_far.samples, so_far.start_sample / TARGET_RATE_HZ
        return [ev]

    def _corrections(self, changed: dict[int, Decision]) -> list[SegmentEvent]:
        """Applies re-clustering results and re-emits every segment whose label or shown start changed."""
        out = []
        prev = None
        for sid in self._order:
            seg = self.segments[sid]
            old = (seg.decision.label, seg.decision.kind, seg.shown_start)
            if sid in changed:
                seg.decision = changed[sid]
            else:
                seg.decision = self.tracker.label_of(sid)
            # A shown start only ever moves earlier: frames once painted by this segment must stay covered
            # by it, or a consumer applying events in order would keep a stale label there.
            seg.shown_start = min(old[2], self._shown_start(seg, prev))
            if (seg.decision.label, seg.decision.kind, seg.shown_start) != old:
                out.append(self._event(seg, True, None))
            prev = seg
        return out

    # -- streaming API -------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Loads the encoder and runs it once, so the first live label does not pay for it (~1-2 s)."""
        load = getattr(self.embedder, "load", None)
        if load is not None:
            load()
        noise = np.random.default_rng(0).normal(0.0, 0.01, TARGET_RATE_HZ).astype(np.float32)
        self.embedder.embed(noise)

    def push(self, frame: AudioFrame) -> list[SegmentEvent]:
        """Consumes one 16 kHz frame; returns the events it produced (first labels, interims, corrections)."""
        end_sample = frame.start_sample + len(frame.samples)
        self._stream_end = max(self._stream_end, end_sample)
        if frame.arrived_at is not None:
            self._arrivals.append((end_sample, frame.arrived_at))
        t0 = time.perf_counter()
        chunks = self.chunker.push(frame)
        self.times.vad += time.perf_counter() - t0
        events: list[SegmentEvent] = []
        for ch in chunks:
            events += self._label_chunk(ch)
        if self.live:
            events += self._interim()
            now_s = end_sample / TARGET_RATE_HZ
            if now_s - self._last_recluster_s >= self.opt.recluster_every_s:
                self._last_recluster_s = now_s
                events += self._corrections(self.tracker.recluster(final=False))
                self.speakers_changed = True
        return events

    def finish(self) -> list[SegmentEvent]:
        """End of stream: labels the open chunk, re-clusters the whole session, re-emits corrections."""
        events: list[SegmentEvent] = []
        for ch in self.chunker.flush():
            events += self._label_chunk(ch)
        events += self._corrections(self.tracker.recluster(final=True))
        self.speakers_changed = True
        self.times.audio_s = self._stream_end / TARGET_RATE_HZ
        return events

    def speakers(self) -> dict[str, dict]:
        """Final speakers of the session: label -> {"kind", "embeddings" float32 (n, d) of their segments,
        "durations" float32 (n,) seconds of speech behind each embedding}."""
        out: dict[str, dict] = {}
        for sid in self._order:
            seg = self.segments[sid]
            s = self.tracker.segs.get(sid)
            entry = out.setdefault(seg.decision.label, {"kind": seg.decision.kind, "embeddings": [],
                                                        "durations": []})
            if s is not None:
                entry["embeddings"].append(s.emb)
                entry["durations"].append(s.duration_s)
        for v in out.values():
            v["embeddings"] = np.stack(v["embeddings"]).astype(np.float32) if v["embeddings"] else None
            v["durations"] = np.asarray(v["durations"], np.float32) if v["durations"] else None
        return out


@dataclass
class TextUpdate:
    """Transcription result for segment ``id`` (from the ASR worker)."""

    id: int
    text: str
    words: list[dict]


@dataclass
class PartialText:
    """Partial transcription of segment ``id`` while it is still being spoken (from the ASR worker)."""

    id: int
    text: str


@dataclass
class _Speakers:
    """A snapshot of ``Labeller.speakers()`` travelling from the labeller thread to the main thread."""

    speakers: dict


@dataclass
class _Turn:
    """Consecutive segments of one speaker sent to the recogniser together."""

    id: int
    label: str
    pieces: list[tuple[int, float, np.ndarray]] = field(default_factory=list)  # (seg_id, start_s, audio)

    @property
    def end_s(self) -> float:
        seg_id, start, audio = self.pieces[-1]
        return start + len(audio) / TARGET_RATE_HZ

    @property
    def duration_s(self) -> float:
        return sum(len(a) for _, _, a in self.pieces) / TARGET_RATE_HZ

    def audio(self) -> np.ndarray:
        """The pieces back to back (pauses between them left out)."""
        return np.concatenate([a for _, _, a in self.pieces])

    def assign(self, words: list[dict]) -> dict[int, list[dict]]:
        """Maps words timed on ``audio()`` to their segments, with times back on the stream's clock."""
        out: dict[int, list[dict]] = {sid: [] for sid, _, _ in self.pieces}
        offsets = np.cumsum([0] + [len(a) for _, _, a in self.pieces]) / TARGET_RATE_HZ
        for w in words:
            mid = (float(w["start"]) + float(w["end"])) / 2
            k = int(np.clip(np.searchsorted(offsets, mid, side="right") - 1, 0, len(self.pieces) - 1))
            sid, start, audio = self.pieces[k]
            shift = start - offsets[k]
            piece_end = start + len(audio) / TARGET_RATE_HZ
            out[sid].append({**w, "start": round(max(start, float(w["start"]) + shift), 3),
                             "end": round(min(piece_end, float(w["end"]) + shift), 3)})
        return out


class _TurnBuffer:
    """Collects first-final segments into turns and hands each finished turn to ``submit``."""

    def __init__(self, submit: Callable[[_Turn], None], max_gap_s: float, max_turn_s: float) -> None:
        self.submit = submit
        self.max_gap_s = max_gap_s
        self.max_turn_s = max_turn_s
        self.current: _Turn | None = None
        self._next = 0

    def add(self, ev: SegmentEvent) -> None:
        cur = self.current
        if cur is not None and (cur.label != ev.speaker or ev.audio_start - cur.end_s > self.max_gap_s
                                or cur.duration_s >= self.max_turn_s):
            self.flush()
            cur = None
        if cur is None:
            cur = self.current = _Turn(self._next, ev.speaker)
            self._next += 1
        cur.pieces.append((ev.id, ev.audio_start, ev.audio))

    def flush_if_over(self, stream_sample: int, open_chunk: tuple[int, int] | None) -> None:
        """Live: hands the current turn over as soon as no later segment can join it (the stream is more
        than ``max_gap_s`` past its end and no chunk opened within that gap), so its final text does not wait
        for the next speaker. Gives the same turns as waiting would."""
        cur = self.current
        if cur is None or not cur.pieces:
            return
        limit = cur.end_s + self.max_gap_s
        if stream_sample / TARGET_RATE_HZ > limit and (open_chunk is None or open_chunk[0] / TARGET_RATE_HZ > limit):
            self.flush()

    def flush(self) -> None:
        if self.current is not None and self.current.pieces:
            self.submit(self.current)
        self.current = None


def deliver(sink: Callable[[SegmentEvent], None], events: list[SegmentEvent]) -> None:
    """Hands ``events`` to ``sink``: in one call when it has ``batch(events)``, else one by one."""
    batch = getattr(sink, "batch", None)
    if batch is not None:
        batch(events)
    else:
        for ev in events:
            sink(ev)


class Pipeline:
    """Runs source -> labeller -> sinks on threads; ``run`` blocks until the stream ends or ``stop``.

    sink: called on the caller's thread with each ``SegmentEvent`` (label events and text updates merged
    into full segment events), in order.
    """

    #: The recogniser hears whole turns (consecutive segments of one speaker) up to this long: Whisper and
    #: Vosk both transcribe better with the context of a sentence than pause-delimited fragments of it.
    max_turn_s = 20.0
    #: Turns awaiting their text; the ASR worker's own queue (32 jobs) is smaller.
    max_pending_turns = 64

    #: Events handed to the sink at once, at most (a burst of corrections becomes one batch).
    max_batch = 256
    #: Live, the transcription thread can run this much nicer than the labelling threads (Linux; best
    #: effort), so that on a busy machine labels get the CPU first and text waits. Off: at 5, on a machine at
    #: load 15-19 label p95 went 3.0 -> 2.0 s but the first text came 12 -> 39 s late, and at load ~8 labels
    #: gained nothing (bench/live_text.py --asr-nice).
    transcribe_nice = 0

    def __init__(self, source: AudioSource, labeller: Labeller, sink: Callable[[SegmentEvent], None],
                 transcriber: Transcriber | None = None, queue_blocks: int = 64, block_s: float | None = None,
                 on_speakers: Callable[[dict], None] | None = None) -> None:
        """sink: a callable taking one event; if it also has ``batch(events)``, events that are ready
        together are handed over in one call (see :mod:`idme.sinks`)."""
        self.source = source
        self.labeller = labeller
        self.sink = sink
        self.transcriber = transcriber
        #: Called on the caller's thread with ``Labeller.speakers()`` after every re-clustering (every minute
        #: live, once at the end), so a session killed later still has its speakers' voiceprints on disk.
        self.on_speakers = on_speakers
        self.block_s = block_s
        self._frames: queue.Queue = queue.Queue(maxsize=queue_blocks)
        self._out: queue.Queue = queue.Queue(maxsize=1024)
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._errors: list[BaseException] = []
        self._worker = None
        self._turn: _TurnBuffer | None = None
        # Written by the labeller thread (_submit_turn), read by the ASR worker thread (_on_text).
        self._turns: dict[int, _Turn] = {}
        self._turns_lock = threading.Lock()
        self.latest: dict[int, SegmentEvent] = {}

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    @property
    def pending_transcriptions(self) -> int:
        """Turns still waiting for their text (the ASR backlog), for progress displays; any thread."""
        with self._turns_lock:
            return len(self._turns)

    def stop(self) -> None:
        """Asks the source to stop; everything already read is still labelled and emitted."""
        self._stop.set()
        stop = getattr(self.source, "stop", None)
        if stop is not None:
            stop()

    def abort(self) -> None:
        """Ends as soon as possible: the source stops, frames not yet labelled are dropped, there is no
        final re-clustering and queued transcriptions are dropped. Events already decided are delivered."""
        self._abort.set()
        self.stop()
        worker = self._worker
        if worker is not None:  # the labeller thread may already wait for the backlog in close(drain=True)
            worker.cancel()

    # -- threads -------------------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item) -> None:
        q.put(item)

    def _read(self) -> None:
        times = self.labeller.times
        try:
            it = self.source.frames(self.block_s) if self.block_s else self.source.frames()
            t0 = time.perf_counter()
            for frame in it:
                times.read_resample += time.perf_counter() - t0
                self._put(self._frames, frame)
                if self._stop.is_set():
                    break
                t0 = time.perf_counter()
        except BaseException as exc:  # handed to the main thread, which reports it
            self._errors.append(exc)
        finally:
            self._put(self._frames, _END)

    def _label(self) -> None:
        try:
            while True:
                frame = self._frames.get()
                if frame is _END or self._abort.is_set():
                    break
                for ev in self.labeller.push(frame):
                    self._emit(ev)
                if self._turn is not None and self.labeller.live:
                    self._turn.flush_if_over(frame.start_sample + len(frame.samples),
                                             self.labeller.chunker.current_bounds)
                self._snapshot_speakers()
            if frame is not _END:  # aborted: let the source thread finish, label nothing more
                self._discard_frames()
            else:
                for ev in self.labeller.finish():
                    self._emit(ev)
                self._snapshot_speakers()
        except BaseException as exc:
            self._errors.append(exc)
            # A live source never ends by itself: stop it, or run() would wait for it forever while the
            # microphone keeps recording (review 2026-12-01 §1.1). Then keep reading so the source thread
            # never blocks on a full queue.
            self.stop()
            self._discard_frames()
        finally:
            if self._worker is not None:
                clean = not self._errors and not self._abort.is_set()
                if clean:
                    self._turn.flush()
                self._worker.close(drain=clean)
            self._put(self._out, _END)

    def _discard_frames(self) -> None:
        while self._frames.get() is not _END:
            pass

    def _snapshot_speakers(self) -> None:
        """Labeller thread: hands a consistent copy of the speakers to the main thread after re-clustering."""
        if self.labeller.speakers_changed and self.on_speakers is not None:
            self.labeller.speakers_changed = False
            self._put(self._out, _Speakers(self.labeller.speakers()))

    def _emit(self, ev: SegmentEvent) -> None:
        if not ev.final and ev.audio is not None:
            # An interim label carrying the chunk so far: ask for partial text (it waits in the segment's slot,
            # see TranscriptionWorker.submit_partial), and keep the audio away from the sinks.
            if self._worker is not None:
                self._worker.submit_partial(ev.id, ev.audio, ev.audio_start)
            ev = replace(ev, audio=None)
        elif ev.final and ev.audio is not None and self._worker is not None:
            self._worker.drop_partial(ev.id)  # the segment ended: its partial text would come too late
        self._put(self._out, ev)
        if ev.final and ev.audio is not None and self._worker is not None:
            self._turn.add(ev)

    def _submit_turn(self, turn: _Turn) -> None:
        with self._turns_lock:
            self._turns[turn.id] = turn
            # A live worker that falls behind drops its oldest jobs without a callback: forget those too.
            while len(self._turns) > self.max_pending_turns:
                self._turns.pop(next(iter(self._turns)))
        self._worker.submit(turn.id, turn.audio(), 0.0)

    def _on_text(self, turn_id: int, transcript) -> None:
        """Splits a turn's transcript back onto its segments by word time (worker thread)."""
        with self._turns_lock:
            turn = self._turns.pop(turn_id, None)
        if turn is None:
            return
        d = transcript.to_dict() if hasattr(transcript, "to_dict") else dict(transcript)
        for seg_id, words in turn.assign(list(d.get("words", []))).items():
            text = "".join(w["word"] if w["word"][:1].isspace() else " " + w["word"] for w in words).strip()
            self._put(self._out, TextUpdate(seg_id, text, words))

    def _on_partial(self, seg_id: int, transcript) -> None:
        """Partial text of a segment still being spoken (worker thread)."""
        text = " ".join(str(getattr(transcript, "text", "") or "").split())
        if text:
            self._put(self._out, PartialText(seg_id, text))

    # -- main ----------------------------------------------------------------------------------------
    def run(self) -> StageTimes:
        """Runs until the stream ends (or ``stop``); re-raises the first error of a worker thread."""
        self.labeller.warm_up()  # before any thread starts: a broken model fails here, leaving nothing running
        if self.transcriber is not None:
            from .transcribe.worker import TranscriptionWorker

            live = self.labeller.live
            self._worker = TranscriptionWorker(self.transcriber, self._on_text, block_when_full=not live,
                                               on_partial=self._on_partial if live else None,
                                               nice=self.transcribe_nice if live else 0)
            self.labeller.partial_audio = live
            if live:
                self.labeller.partial_wanted = self._worker.wants_partial
            self._turn = _TurnBuffer(self._submit_turn, self.labeller.opt.fill_gap_s, self.max_turn_s)
        threads = [threading.Thread(target=self._read, name="idme-source", daemon=True),
                   threading.Thread(target=self._label, name="idme-label", daemon=True)]
        for t in threads:
            t.start()
        try:
            try:
                self._drain()
            except KeyboardInterrupt:
                # Ctrl+C is a normal stop: stop listening, then label, re-cluster and save what was heard.
                log.info("stopping: finishing the segments already heard")
                self.stop()
                try:
                    self._drain()
                except KeyboardInterrupt:  # a second one: end now, keeping what was decided
                    log.info("aborting: saving the segments already decided")
                    self.abort()
                    self._drain()
        except BaseException:
            # A failing sink: stop the source and let the threads finish (their events are dropped), so
            # no thread outlives run(); then re-raise.
            self.stop()
            self._drain(keep=False)
            raise
        finally:
            for t in threads:
                t.join()
        if self._worker is not None:
            self.labeller.times.asr = self._worker.stats().compute_s
        if self._errors:
            raise self._errors[0]
        return self.labeller.times

    def _drain(self, keep: bool = True) -> None:
        """Hands events to the sink until the labeller thread's end marker (or just discards them).

        Whatever is queued together (up to ``max_batch`` items) goes to the sink as one batch."""
        done = False
        while not done:
            try:
                items = [self._out.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(items) < self.max_batch:
                try:
                    items.append(self._out.get_nowait())
                except queue.Empty:
                    break
            if _END in items:
                items = items[: items.index(_END)]
                done = True
            if not keep:
                continue
            batch: list[SegmentEvent] = []
            for item in items:
                if isinstance(item, _Speakers):
                    deliver(self.sink, batch)  # events before the snapshot are saved before it
                    batch = []
                    self.on_speakers(item.speakers)
                    continue
                ev = self._merge(item)
                if ev is not None:
                    # The sinks see the segment's audio once; what is kept has none (a 4-hour stream would
                    # otherwise hold every second of it until the end, ~55 KB per second).
                    self.latest[ev.id] = replace(ev, audio=None) if ev.audio is not None else ev
                    batch.append(ev)
            if batch:
                deliver(self.sink, batch)

    def _merge(self, item: SegmentEvent | TextUpdate | PartialText) -> SegmentEvent | None:
        """A label event or a text update, as the full segment event the sink receives.

        Partial text becomes a not-final event of the segment being spoken; it is dropped once the segment
        has its final label (its final text follows), and it is never carried onto a final event."""
        base = self.latest.get(item.id)
        if isinstance(item, PartialText):
            if base is None or base.final:
                return None
            return SegmentEvent(base.id, base.start, base.end, base.speaker, base.kind, base.score,
                                False, None, item.text)
        if isinstance(item, TextUpdate):
            if base is None:
                return None
            return SegmentEvent(base.id, base.start, base.end, base.speaker, base.kind, base.score,
                                base.final, None, item.text, item.words)
        if base is not None and base.text and not item.text and (base.final or not item.final):
            return SegmentEvent(item.id, item.start, item.end, item.speaker, item.kind, item.score,
                                item.final, item.latency_ms, base.text, base.words)
        return item
