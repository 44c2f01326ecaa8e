"""Transcription off the labelling path: a thread that turns finished segments into text.

idme prints a segment's speaker label as soon as the segment is closed; the text follows as an update of
the same ``seg_id`` whenever the recogniser gets to it. This module is the only place the two meet, and
the contract is one-way: ``submit`` never waits for the recogniser (in live mode), and a slow or failing
recogniser costs text, never labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .base import EMPTY_TRANSCRIPT, SAMPLE_RATE_HZ, Transcriber, Transcript, as_mono_float32

logger = logging.getLogger(__name__)

#: Called with (seg_id, transcript) on the worker thread; see TranscriptionWorker.
ResultCallback = Callable[[int, Transcript], None]

#: A segment's first partial needs this much audio (the VAD's pre-roll included): Moonshine base-en gave
#: text for 69% of the meetings-dev segments at 0.6 s, 92% at 0.9 s (meetings 02 and 04, offline).
FIRST_PARTIAL_MIN_S = 0.6
#: ... and this much while partial jobs are slow (a loaded machine): a try that comes back empty then costs
#: as much as waiting for more speech.
SLOW_FIRST_PARTIAL_MIN_S = 0.9
#: Partial jobs slower than this (seconds of compute per second of audio, running mean) count as slow.
SLOW_PARTIAL_RTF = 0.5
#: A segment's partial jobs go first (before final text) while they come back empty and the audio tried is
#: shorter than this (a cough, laughter, a noise the recogniser writes nothing for ends there); later ones
#: wait like refreshes. Moonshine base-en on meetings-dev turns (0.3 s before the voice onset on): text for
#: 45% at 0.6 s, 68% at 0.8 s, 85% at 1.0 s; until 2026-12-02 a cap of 3 tries (about 1.1 s of audio) left
#: the slowest turns a 0.5 s wait between tries, which set the p95 of first partial text (bench/live_text.py).
MAX_FIRST_PARTIAL_S = 2.0


@dataclass(frozen=True)
class WorkerStats:
    """Counters of a TranscriptionWorker (for the session summary and benchmarks)."""

    #: Jobs accepted by submit().
    submitted: int
    #: Jobs transcribed (failed ones included), each reported through on_result.
    processed: int
    #: Jobs whose transcriber raised; their on_result carried an empty Transcript.
    failed: int
    #: Jobs dropped unprocessed (queue full in live mode, or close(drain=False)); no on_result for them.
    dropped: int
    #: Seconds of audio transcribed.
    audio_s: float
    #: Seconds the transcriber spent on them (wall clock of the worker thread).
    compute_s: float
    #: Partial jobs (text of a segment still being spoken) transcribed and reported through on_partial.
    partials: int = 0
    #: Partial requests never transcribed: superseded by a newer request of the same segment, or dropped
    #: when the segment ended or the worker closed.
    partials_dropped: int = 0
    #: Seconds the transcriber spent on partial jobs (not in ``compute_s``).
    partial_compute_s: float = 0.0
    #: Segments that got partial text (their first non-empty partial).
    first_partials: int = 0

    @property
    def real_time_factor(self) -> float:
        """compute_s / audio_s (below 1 keeps up with live speech); 0.0 before any audio."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


class TranscriptionWorker:
    """Runs a Transcriber on its own thread, fed with final jobs (seg_id, samples, offset_s) through a bounded
    FIFO queue, and with partial jobs (the speech so far of a segment still being spoken) through one slot per
    segment.

    transcriber: the recogniser; only this worker's thread calls it. If it has a ``load()`` method, the
        thread calls it first, so the model loads while the first labels are already being printed.
    on_result: called as ``on_result(seg_id, transcript)`` once per processed segment, in submission
        order, **on the worker thread**. Thread safety is the caller's business: hand the result to your
        own queue or take your own lock; keep it short, since the next segment waits for it.
    maxsize: pending final jobs the queue holds (the one being transcribed not counted).
    block_when_full: what ``submit`` does when the queue is full. False (live mode): drop the oldest
        pending segment, log it and return at once, because a label must never wait for text. True (file
        mode): block until there is room; back-pressure keeps runs deterministic.
    on_partial: called as ``on_partial(seg_id, transcript)`` on the worker thread for each partial job
        (``submit_partial``) that was transcribed.
    nice: raise the worker thread's nice value by this much (Linux, best effort: elsewhere, or refused, it
        stays as it is), so that on a busy machine the labelling threads get the CPU before the recogniser.

    Which job runs next: a *first* partial (a segment that has no partial text yet, while the audio tried
    is under ``MAX_FIRST_PARTIAL_S``) before anything else, so that the turn just starting shows text soon
    and never waits behind the final text of the turn before (a short preview costs that final text ~0.1 s
    on an idle machine); then final jobs in order; then *refresh* partials (the segment transcribed longest
    ago first), only while no final job waits. A first partial needs ``FIRST_PARTIAL_MIN_S`` of audio
    (``SLOW_FIRST_PARTIAL_MIN_S`` while partial jobs run slowly); shorter requests are refused.

    A transcriber exception is logged and that segment is reported with an empty Transcript; the worker
    goes on. The thread starts in the constructor; ``close()`` (or leaving a ``with`` block) ends it.
    """

    def __init__(self, transcriber: Transcriber, on_result: ResultCallback, *, maxsize: int = 32,
                 block_when_full: bool = False, name: str = "idme-transcribe",
                 on_partial: ResultCallback | None = None, nice: int = 0) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._transcriber = transcriber
        self._on_result = on_result
        self._on_partial = on_partial
        self._maxsize = maxsize
        self._nice = int(nice)
        self._block_when_full = block_when_full
        # One condition guards the final queue, the partial slots and the flags below; producers never hold
        # it for longer than a few list operations, and the worker never holds it while transcribing.
        self._cv = threading.Condition()
        self._finals: deque[tuple[int, np.ndarray, float]] = deque()
        #: seg_id -> (order of the first request, samples, offset_s): the latest request of each segment.
        self._partial_jobs: dict[int, tuple[int, np.ndarray, float]] = {}
        #: seg_id -> when (job counter) its last partial text came back; a segment absent here has none yet.
        self._partial_shown: dict[int, int] = {}
        #: seg_id -> audio (s) of the longest first-partial job run for it (empty results included); first
        #: jobs stop at MAX_FIRST_PARTIAL_S.
        self._partial_tries: dict[int, float] = {}
        self._jobs_done = 0
        self._partial_order = 0
        self._busy = False
        self._running_partial: int | None = None  # seg_id of the partial job being transcribed
        self._closed = False  # close() was called: the worker stops once the final queue is empty
        self._submitted = self._processed = self._failed = self._dropped = 0
        self._partials = self._partials_dropped = self._first_partials = 0
        self._audio_s = self._compute_s = self._partial_compute_s = 0.0
        self._partial_rtf: float | None = None  # running mean of compute / audio of recent partial jobs
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- producer side ---------------------------------------------------------------------------------

    def submit(self, seg_id: int, samples: np.ndarray, offset_s: float) -> None:
        """Queues one segment: samples float32 (n,) 16 kHz mono (copied), offset_s = session time of
        samples[0] in seconds. Returns at once unless ``block_when_full`` and the queue is full.
        Raises RuntimeError after close()."""
        job = (int(seg_id), np.array(as_mono_float32(samples), copy=True), float(offset_s))
        with self._cv:
            if self._closed:
                raise RuntimeError("TranscriptionWorker.submit() after close()")
            if self._block_when_full:
                while len(self._finals) >= self._maxsize and not self._closed:
                    self._cv.wait()
            else:
                while len(self._finals) >= self._maxsize:
                    old_id, old, old_offset = self._finals.popleft()
                    self._dropped += 1
                    logger.warning("no text for segment %d (%.2f s at %.2f s): %s", old_id,
                                   len(old) / SAMPLE_RATE_HZ, old_offset,
                                   "queue full: the recogniser is slower than the speech")
            self._finals.append(job)
            self._submitted += 1
            self._cv.notify_all()

    def submit_partial(self, seg_id: int, samples: np.ndarray, offset_s: float) -> bool:
        """Offers a low-priority job: the audio so far of a segment still being spoken (copied).

        Never waits. The request takes the segment's slot, replacing (superseding) an older request of the
        same segment that has not started; False when the worker takes no partial jobs (no ``on_partial``)
        or is closing. The result goes to ``on_partial``. See the class docstring for the order of jobs."""
        if self._on_partial is None:
            return False
        audio = np.array(as_mono_float32(samples), copy=True)
        with self._cv:
            if self._closed:
                return False
            sid = int(seg_id)
            if self._is_first(sid) and len(audio) < self._first_partial_min_s() * SAMPLE_RATE_HZ:
                return False  # too short for this recogniser's speed: the caller offers more audio soon
            old = self._partial_jobs.get(sid)
            if old is not None:
                self._partials_dropped += 1
                order = old[0]
            else:
                order = self._partial_order = self._partial_order + 1
            self._partial_jobs[sid] = (order, audio, float(offset_s))
            self._cv.notify_all()
        return True

    def _is_first(self, seg_id: int) -> bool:
        """Segment ``seg_id`` has no partial text yet and has not used up its first tries (holds _cv)."""
        return seg_id not in self._partial_shown and self._partial_tries.get(seg_id, 0.0) < MAX_FIRST_PARTIAL_S

    def _first_partial_min_s(self) -> float:
        """Shortest audio worth a first partial: ``FIRST_PARTIAL_MIN_S`` while partial jobs run fast, else
        ``SLOW_FIRST_PARTIAL_MIN_S`` (a first try that comes back empty then costs more than waiting)."""
        if self._partial_rtf is not None and self._partial_rtf > SLOW_PARTIAL_RTF:
            return SLOW_FIRST_PARTIAL_MIN_S
        return FIRST_PARTIAL_MIN_S

    def wants_partial(self, seg_id: int) -> bool:
        """True while segment ``seg_id`` has no partial text yet and no request of it is waiting, and the
        worker is free for it (no first partial of another segment waiting): a request now would be taken
        next. Lets a caller offer the speech so far as soon as it is worth it, without flooding the worker.
        A hint (read without waiting on the worker)."""
        if self._on_partial is None or self._closed:
            return False
        with self._cv:
            sid = int(seg_id)
            if not self._is_first(sid) or sid in self._partial_jobs or sid == self._running_partial:
                return False
            return not any(self._is_first(k) for k in self._partial_jobs)

    def drop_partial(self, seg_id: int) -> None:
        """Segment ``seg_id`` has ended (its final label is out): its waiting partial request, if any, is
        dropped, and it is forgotten."""
        with self._cv:
            if self._partial_jobs.pop(int(seg_id), None) is not None:
                self._partials_dropped += 1
            self._partial_shown.pop(int(seg_id), None)
            self._partial_tries.pop(int(seg_id), None)

    @property
    def pending(self) -> int:
        """Final jobs waiting (approximate, as any queue size read from another thread)."""
        return len(self._finals)

    def stats(self) -> WorkerStats:
        """A snapshot of the counters."""
        with self._cv:
            return WorkerStats(submitted=self._submitted, processed=self._processed, failed=self._failed,
                               dropped=self._dropped, audio_s=self._audio_s, compute_s=self._compute_s,
                               partials=self._partials, partials_dropped=self._partials_dropped,
                               partial_compute_s=self._partial_compute_s, first_partials=self._first_partials)

    def close(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stops the worker: with ``drain`` every queued segment is transcribed and reported first;
        without, queued segments are dropped (the one in progress still finishes). Waiting partial requests
        are dropped either way. Waits up to ``timeout`` seconds (None: for ever) and returns True when the
        thread has ended. Idempotent."""
        with self._cv:
            if not self._closed:
                self._closed = True
                self._partials_dropped += len(self._partial_jobs)
                self._partial_jobs.clear()
                if not drain:
                    self._dropped += len(self._finals)
                    self._finals.clear()
                self._cv.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def cancel(self) -> int:
        """Drops every queued segment now (the one in progress still finishes), also while another thread
        waits in ``close(drain=True)``, so that close returns soon. Returns how many segments were dropped."""
        with self._cv:
            dropped = len(self._finals)
            self._finals.clear()
            self._dropped += dropped
            self._partials_dropped += len(self._partial_jobs)
            self._partial_jobs.clear()
            self._cv.notify_all()
        return dropped

    def __enter__(self) -> TranscriptionWorker:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On an error the caller is unwinding; finishing the backlog would only delay it.
        self.close(drain=exc_type is None)

    # -- worker thread ---------------------------------------------------------------------------------

    def _next_job(self) -> tuple[bool, int, np.ndarray, float, bool] | None:
        """Waits for the next job: (partial, seg_id, samples, offset_s, first); None at the end. Holds _cv."""
        while True:
            if not self._closed and self._partial_jobs:
                first = [(job[0], sid) for sid, job in self._partial_jobs.items() if self._is_first(sid)]
                if first:
                    sid = min(first)[1]
                    _, samples, offset_s = self._partial_jobs.pop(sid)
                    self._partial_tries[sid] = max(self._partial_tries.get(sid, 0.0), len(samples) / SAMPLE_RATE_HZ)
                    while len(self._partial_tries) > 256:  # segments that never reported their end
                        self._partial_tries.pop(next(iter(self._partial_tries)))
                    return True, sid, samples, offset_s, True
            if self._finals:
                seg_id, samples, offset_s = self._finals.popleft()
                self._cv.notify_all()  # a blocked submit may go on
                return False, seg_id, samples, offset_s, False
            if self._closed:
                return None
            if self._partial_jobs:
                sid = min(self._partial_jobs, key=lambda k: (self._partial_shown.get(k, -1), k))
                _, samples, offset_s = self._partial_jobs.pop(sid)
                return True, sid, samples, offset_s, False
            self._cv.wait()

    def _run(self) -> None:
        last_error: str | None = None
        if self._nice > 0:
            _lower_thread_priority(self._nice)
        load = getattr(self._transcriber, "load", None)
        if callable(load):
            try:
                load()
            except Exception as exc:  # keep the thread alive: every segment will then report "" below
                last_error = f"{type(exc).__name__}: {exc}"
                logger.error("the speech recogniser could not load, segments will have no text: %s", exc)
        while True:
            with self._cv:
                job = self._next_job()
                if job is None:
                    break
                self._busy = True
                self._running_partial = job[1] if job[0] else None
            partial, seg_id, samples, offset_s, first = job
            try:
                if partial:
                    self._run_partial(seg_id, samples, offset_s, first)
                    continue
                started = time.perf_counter()
                try:
                    result = self._transcriber.transcribe(samples, offset_s)
                except Exception as exc:  # one bad segment must not end transcription for the session
                    self._failed += 1
                    result = EMPTY_TRANSCRIPT
                    message = f"{type(exc).__name__}: {exc}"
                    # The same failure on every segment (e.g. a model that will not load) is logged once.
                    level = logging.DEBUG if message == last_error else logging.WARNING
                    logger.log(level, "transcription of segment %d failed, its text stays empty: %s", seg_id,
                               message, exc_info=logger.isEnabledFor(logging.DEBUG))
                    last_error = message
                with self._cv:
                    self._compute_s += time.perf_counter() - started
                    self._audio_s += len(samples) / SAMPLE_RATE_HZ
                    self._processed += 1
                    self._jobs_done += 1
                try:
                    self._on_result(seg_id, result)
                except Exception:  # the caller's bug, but the next segments still deserve their text
                    logger.exception("on_result callback failed for segment %d", seg_id)
            finally:
                self._busy = False
                self._running_partial = None

    def _run_partial(self, seg_id: int, samples: np.ndarray, offset_s: float, first: bool) -> None:
        """One partial job; its text (when not empty) goes to on_partial."""
        started = time.perf_counter()
        try:
            # A recogniser may offer a cheaper preview path (Moonshine: no fallback recogniser).
            transcribe = getattr(self._transcriber, "transcribe_partial", self._transcriber.transcribe)
            result = transcribe(samples, offset_s)
        except Exception as exc:  # partial text is a preview: a failure costs the preview only
            logger.debug("partial transcription of segment %d failed: %s", seg_id, exc)
            result = None
        if result is not None and _degenerate(result.text):
            result = EMPTY_TRANSCRIPT  # a loop on too little audio ("him, him, him, him"): no preview yet
        with self._cv:
            spent = time.perf_counter() - started
            self._partial_compute_s += spent
            self._jobs_done += 1
            rtf = spent / max(len(samples) / SAMPLE_RATE_HZ, 0.1)
            self._partial_rtf = rtf if self._partial_rtf is None else 0.7 * self._partial_rtf + 0.3 * rtf
            if result is None:
                return
            self._partials += 1
            if result.text.strip():
                if seg_id not in self._partial_shown:
                    self._first_partials += 1
                self._partial_shown[seg_id] = self._jobs_done
                # Bounded: segments that never reported their end (drop_partial) are forgotten oldest first.
                while len(self._partial_shown) > 256:
                    self._partial_shown.pop(next(iter(self._partial_shown)))
        try:
            self._on_partial(seg_id, result)  # type: ignore[misc]
        except Exception:
            logger.exception("on_partial callback failed for segment %d", seg_id)


def _lower_thread_priority(increment: int) -> None:
    """Raises the calling thread's nice value by ``increment`` (Linux threads have their own); best effort."""
    import os

    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + increment))
    except (AttributeError, OSError) as exc:  # no per-thread priority on this platform, or not allowed
        logger.debug("could not lower the transcription thread's priority: %s", exc)


def _degenerate(text: str) -> bool:
    """True for a decoder loop: three or more words, all the same word (punctuation and case aside)."""
    words = [w.strip(".,;:!?\"'").lower() for w in text.split()]
    return len(words) >= 3 and len(set(words)) == 1
