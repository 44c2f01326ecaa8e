"""Transcription off the labelling path: a thread that turns finished segments into text.

idme prints a segment's speaker label as soon as the segment is closed; the text follows as an update of
the same ``seg_id`` whenever the recogniser gets to it. This module is the only place the two meet, and
the contract is one-way: ``submit`` never waits for the recogniser (in live mode), and a slow or failing
recogniser costs text, never labels.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .base import EMPTY_TRANSCRIPT, SAMPLE_RATE_HZ, Transcriber, Transcript, as_mono_float32

logger = logging.getLogger(__name__)

#: Called with (seg_id, transcript) on the worker thread; see TranscriptionWorker.
ResultCallback = Callable[[int, Transcript], None]

#: Marks a job as a partial (low-priority) one: text of a segment still being spoken.
_FINAL, _PARTIAL = False, True

# End-of-stream marker put on the queue by close(); a unique object, so no job can be mistaken for it.
_END = object()


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
    #: Partial jobs refused or skipped because final text was being or waiting to be transcribed.
    partials_dropped: int = 0
    #: Seconds the transcriber spent on partial jobs (not in ``compute_s``).
    partial_compute_s: float = 0.0

    @property
    def real_time_factor(self) -> float:
        """compute_s / audio_s (below 1 keeps up with live speech); 0.0 before any audio."""
        return self.compute_s / self.audio_s if self.audio_s > 0 else 0.0


class TranscriptionWorker:
    """Runs a Transcriber on its own thread, fed through a bounded queue of (seg_id, samples, offset_s).

    transcriber: the recogniser; only this worker's thread calls it. If it has a ``load()`` method, the
        thread calls it first, so the model loads while the first labels are already being printed.
    on_result: called as ``on_result(seg_id, transcript)`` once per processed segment, in submission
        order, **on the worker thread**. Thread safety is the caller's business: hand the result to your
        own queue or take your own lock; keep it short, since the next segment waits for it.
    maxsize: pending segments the queue holds (the one being transcribed not counted).
    block_when_full: what ``submit`` does when the queue is full. False (live mode): drop the oldest
        pending segment, log it and return at once, because a label must never wait for text. True (file
        mode): block until there is room; back-pressure keeps runs deterministic.

    on_partial: called as ``on_partial(seg_id, transcript)`` on the worker thread for each partial job
        (``submit_partial``) that was transcribed.

    A transcriber exception is logged and that segment is reported with an empty Transcript; the worker
    goes on. The thread starts in the constructor; ``close()`` (or leaving a ``with`` block) ends it.
    """

    def __init__(self, transcriber: Transcriber, on_result: ResultCallback, *, maxsize: int = 32,
                 block_when_full: bool = False, name: str = "idme-transcribe",
                 on_partial: ResultCallback | None = None) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._transcriber = transcriber
        self._on_result = on_result
        self._on_partial = on_partial
        self._busy = False  # the worker thread is transcribing a job (read without a lock: a hint only)
        self._partials = self._partials_dropped = 0
        self._partial_compute_s = 0.0
        self._block_when_full = block_when_full
        self._queue: queue.Queue[object] = queue.Queue(maxsize=maxsize)
        # Serialises producers so that "drop the oldest, then put" is one step, and orders close()
        # after any submit in progress.
        self._submit_lock = threading.Lock()
        self._closed = False
        self._submitted = self._processed = self._failed = self._dropped = 0
        self._audio_s = self._compute_s = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- producer side ---------------------------------------------------------------------------------

    def submit(self, seg_id: int, samples: np.ndarray, offset_s: float) -> None:
        """Queues one segment: samples float32 (n,) 16 kHz mono (copied), offset_s = session time of
        samples[0] in seconds. Returns at once unless ``block_when_full`` and the queue is full.
        Raises RuntimeError after close()."""
        job = (int(seg_id), np.array(as_mono_float32(samples), copy=True), float(offset_s), _FINAL)
        with self._submit_lock:
            if self._closed:
                raise RuntimeError("TranscriptionWorker.submit() after close()")
            if self._block_when_full:
                self._queue.put(job)
            else:
                while True:
                    try:
                        self._queue.put_nowait(job)
                        break
                    except queue.Full:
                        self._drop_oldest("queue full: the recogniser is slower than the speech")
            self._submitted += 1

    def submit_partial(self, seg_id: int, samples: np.ndarray, offset_s: float) -> bool:
        """Queues a low-priority job: the audio so far of a segment still being spoken (copied).

        Never waits: the job is refused (False) when the worker is busy or has jobs waiting, so partial text
        never delays final text, and a refused request is simply superseded by the next, longer one. A
        partial job still queued when a final job arrives is skipped. The result goes to ``on_partial``."""
        if self._on_partial is None:
            return False
        with self._submit_lock:
            if self._closed or self._busy or not self._queue.empty():
                self._partials_dropped += 1
                return False
            try:
                self._queue.put_nowait((int(seg_id), np.array(as_mono_float32(samples), copy=True),
                                        float(offset_s), _PARTIAL))
            except queue.Full:
                self._partials_dropped += 1
                return False
        return True

    def _drop_oldest(self, why: str) -> None:
        try:
            old = self._queue.get_nowait()
        except queue.Empty:  # the worker took it meanwhile; the retry will find room
            return
        if old is _END:  # cannot happen while not closed; put it back rather than lose the stop signal
            self._queue.put_nowait(old)
            return
        seg_id, samples, offset_s, partial = old  # type: ignore[misc]
        if partial:
            self._partials_dropped += 1
            return
        self._dropped += 1
        logger.warning("no text for segment %d (%.2f s at %.2f s): %s", seg_id,
                       len(samples) / SAMPLE_RATE_HZ, offset_s, why)

    @property
    def pending(self) -> int:
        """Segments waiting in the queue (approximate, as any queue size read from another thread)."""
        return self._queue.qsize()

    def stats(self) -> WorkerStats:
        """A snapshot of the counters."""
        return WorkerStats(submitted=self._submitted, processed=self._processed, failed=self._failed,
                           dropped=self._dropped, audio_s=self._audio_s, compute_s=self._compute_s,
                           partials=self._partials, partials_dropped=self._partials_dropped,
                           partial_compute_s=self._partial_compute_s)

    def close(self, drain: bool = True, timeout: float | None = None) -> bool:
        """Stops the worker: with ``drain`` every queued segment is transcribed and reported first;
        without, queued segments are dropped (the one in progress still finishes). Waits up to
        ``timeout`` seconds (None: for ever) and returns True when the thread has ended. Idempotent."""
        with self._submit_lock:
            if not self._closed:
                self._closed = True
                if not drain:
                    while True:
                        try:
                            old = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if old is not _END and not old[3]:  # type: ignore[index]
                            self._dropped += 1
                # Blocks only while the queue is full, which the running worker resolves.
                self._queue.put(_END)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def cancel(self) -> int:
        """Drops every queued segment now (the one in progress still finishes), also while another thread
        waits in ``close(drain=True)``: its end marker is kept, so that close returns soon. Returns how
        many segments were dropped."""
        dropped, end = 0, False
        while True:
            try:
                old = self._queue.get_nowait()
            except queue.Empty:
                break
            if old is _END:
                end = True
            elif not old[3]:  # type: ignore[index]
                dropped += 1
        self._dropped += dropped
        if end:
            self._queue.put(_END)
        return dropped

    def __enter__(self) -> TranscriptionWorker:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # On an error the caller is unwinding; finishing the backlog would only delay it.
        self.close(drain=exc_type is None)

    # -- worker thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        last_error: str | None = None
        load = getattr(self._transcriber, "load", None)
        if callable(load):
            try:
                load()
            except Exception as exc:  # keep the thread alive: every segment will then report "" below
                last_error = f"{type(exc).__name__}: {exc}"
                logger.error("the speech recogniser could not load, segments will have no text: %s", exc)
        while True:
            job = self._queue.get()
            if job is _END:
                break
            seg_id, samples, offset_s, partial = job  # type: ignore[misc]
            if partial:
                self._run_partial(seg_id, samples, offset_s)
                continue
            self._busy = True
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
            self._compute_s += time.perf_counter() - started
            self._audio_s += len(samples) / SAMPLE_RATE_HZ
            self._processed += 1
            self._busy = False
            try:
                self._on_result(seg_id, result)
            except Exception:  # the caller's bug, but the next segments still deserve their text
                logger.exception("on_result callback failed for segment %d", seg_id)

    def _run_partial(self, seg_id: int, samples: np.ndarray, offset_s: float) -> None:
        """One partial job, unless final work is waiting or the worker is closing (then it is skipped)."""
        if self._closed or not self._queue.empty():
            self._partials_dropped += 1
            return
        self._busy = True
        started = time.perf_counter()
        try:
            # A recogniser may offer a cheaper preview path (Moonshine: no fallback recogniser).
            transcribe = getattr(self._transcriber, "transcribe_partial", self._transcriber.transcribe)
            result = transcribe(samples, offset_s)
        except Exception as exc:  # partial text is a preview: a failure costs the preview only
            logger.debug("partial transcription of segment %d failed: %s", seg_id, exc)
            result = None
        finally:
            self._partial_compute_s += time.perf_counter() - started
            self._busy = False
        if result is None:
            return
        self._partials += 1
        try:
            self._on_partial(seg_id, result)  # type: ignore[misc]
        except Exception:
            logger.exception("on_partial callback failed for segment %d", seg_id)
