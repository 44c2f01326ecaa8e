"""Audio pushed in by someone else (a WebSocket client, a notebook): raw PCM bytes in, 16 kHz mono frames out.

The producer (the server's event loop) only decodes bytes to float32 and enqueues them: it never resamples
and never blocks. The consumer thread (the pipeline's source thread) downmixes and resamples once, with the
same :class:`~idme.audio.resample.SourceConverter` the file and microphone sources use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np

from idme.audio.file import MAX_RATE_HZ, frame_samples_for
from idme.audio.frames import MIN_RATE_HZ, TARGET_RATE_HZ, AudioFrame
from idme.audio.resample import DEFAULT_QUALITY, SourceConverter
from idme.errors import AudioError

logger = logging.getLogger(__name__)

#: Wire encodings: little-endian signed 16-bit integers, or little-endian 32-bit floats in [-1, 1]
#: (what an AudioWorklet hands out). Bytes per sample and numpy dtype of each.
ENCODINGS: dict[str, tuple[int, str]] = {"pcm_s16le": (2, "<i2"), "f32le": (4, "<f4")}

#: Most channels accepted (a browser sends 1 or 2; a multichannel interface rarely more than 8).
MAX_CHANNELS = 8

#: Frame length handed downstream: 30 ms, the microphone's block (and a webrtcvad frame length).
DEFAULT_PUSH_BLOCK_S = 0.03

#: Audio that may wait for the labeller before ``push`` refuses more: 10 s. Live audio arrives in real
#: time and is labelled faster than that, so a queue this full means the consumer fell behind for good.
DEFAULT_MAX_QUEUED_S = 10.0

# How long frames() waits on the queue before re-checking the stop flag.
_POLL_S = 0.1


class PushSource:
    """A live source fed by :meth:`push` with raw PCM (``encoding`` at ``sample_rate`` Hz, ``channels``
    interleaved), yielding contiguous 16 kHz mono :class:`AudioFrame` objects.

    Thread-safety: ``push`` / ``end`` / ``stop`` from one producer thread (or event loop), ``frames`` on
    one consumer thread. ``push`` never blocks: it returns False when more than ``max_queued_s`` seconds
    of audio already wait (the caller decides what to do: the server reports ``overload``). Bytes that do
    not make up a whole sample frame are kept for the next push, so any chunking of the stream works.
    ``stop()`` and ``end()`` both mean "no more audio": ``frames()`` drains what was pushed, flushes the
    resampler and returns. ``arrived_at`` is ``time.monotonic()`` at the push of the frame's last sample.
    """

    #: Live sources get interim labels, latency stamps and periodic re-clustering.
    live = True

    def __init__(self, sample_rate: int, channels: int = 1, encoding: str = "pcm_s16le",
                 max_queued_s: float = DEFAULT_MAX_QUEUED_S, label: str = "pushed stream") -> None:
        if not isinstance(encoding, str) or encoding not in ENCODINGS:
            raise AudioError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}")
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) \
                or not MIN_RATE_HZ <= sample_rate <= MAX_RATE_HZ:
            raise AudioError(f"sample_rate must be an integer from {MIN_RATE_HZ} to {MAX_RATE_HZ} Hz, "
                             f"got {sample_rate!r}")
        if not isinstance(channels, int) or isinstance(channels, bool) or not 1 <= channels <= MAX_CHANNELS:
            raise AudioError(f"channels must be an integer from 1 to {MAX_CHANNELS}, got {channels!r}")
        if not max_queued_s > 0:
            raise ValueError(f"max_queued_s must be positive, got {max_queued_s}")
        self.encoding = encoding
        self._rate, self._channels = sample_rate, channels
        self._width, self._dtype = ENCODINGS[encoding]
        self._frame_bytes = self._width * channels
        self._max_queued = int(max_queued_s * sample_rate)  # native sample frames
        self.label = label
        self._queue: deque[tuple[np.ndarray, float]] = deque()
        self._queued = 0  # native sample frames waiting in _queue
        self._cond = threading.Condition()
        self._ended = False
        self._closed = False
        self._rest = b""  # a partial sample frame left over from the last push
        #: Native sample frames accepted so far (``received_s`` in seconds).
        self.received = 0
        #: Pushes refused because the queue was full.
        self.refused = 0

    # -- AudioSource protocol ---------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Rate of the frames this source yields: always 16 kHz."""
        return TARGET_RATE_HZ

    @property
    def native_rate(self) -> int:
        """Rate of the pushed audio, Hz."""
        return self._rate

    @property
    def channels(self) -> int:
        """Channels of the pushed audio (the frames are mono)."""
        return self._channels

    @property
    def duration_s(self) -> None:
        """A live stream has no known length."""
        return None

    @property
    def description(self) -> str:
        """One line for logs and session metadata."""
        return f"{self.label} ({self._rate} Hz, {self._channels} ch, {self.encoding})"

    @property
    def received_s(self) -> float:
        """Seconds of audio accepted so far."""
        return self.received / self._rate

    @property
    def queued_s(self) -> float:
        """Seconds of audio pushed but not yet taken by :meth:`frames` (how far the consumer is behind)."""
        return self._queued / self._rate

    @property
    def bytes_per_s(self) -> int:
        """Bytes of pushed PCM per second of audio."""
        return self._frame_bytes * self._rate

    @property
    def ended(self) -> bool:
        return self._ended

    # -- producer side ------------------------------------------------------------------------------
    def decode(self, data: bytes) -> np.ndarray:
        """Bytes -> float32 (n, channels), keeping an incomplete trailing sample frame for the next call."""
        buf = self._rest + bytes(data)
        whole = len(buf) - len(buf) % self._frame_bytes
        self._rest = buf[whole:]
        x = np.frombuffer(buf[:whole], dtype=self._dtype)
        if self._dtype == "<i2":
            x = x.astype(np.float32) / 32768.0
        else:
            x = x.astype(np.float32)
            # One NaN would poison the resampler's filter state and every embedding after it.
            if not np.isfinite(x).all():
                x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
            np.clip(x, -1.0, 1.0, out=x)
        return x.reshape(-1, self._channels)

    def push(self, data: bytes) -> bool:
        """Queue ``data`` (raw PCM bytes, any length). Never blocks; False (nothing queued) when more than
        ``max_queued_s`` of audio already waits. Raises AudioError after ``end()``/``close()``."""
        if self._ended or self._closed:
            raise AudioError("the stream has ended; no more audio is accepted")
        with self._cond:
            n_new = (len(self._rest) + len(data)) // self._frame_bytes
            if self._queued and self._queued + n_new > self._max_queued:
                self.refused += 1
                return False
            block = self.decode(data)
            if len(block):
                self._queue.append((block, time.monotonic()))
                self._queued += len(block)
                self.received += len(block)
                self._cond.notify()
        return True

    def end(self) -> None:
        """No more audio: ``frames()`` yields what was pushed, flushes and returns. Thread-safe, idempotent."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Same as :meth:`end` (the AudioSource protocol's name for it)."""
        self.end()

    def close(self) -> None:
        """Drops whatever is still queued and ends the stream. Idempotent."""
        with self._cond:
            self._closed = self._ended = True
            self._queue.clear()
            self._queued = 0
            self._cond.notify_all()

    # -- consumer side ------------------------------------------------------------------------------
    def _take(self) -> tuple[np.ndarray, float] | None:
        """The next pushed block, or None once the stream has ended and the queue is empty."""
        with self._cond:
            while not self._queue:
                if self._ended:
                    return None
                self._cond.wait(_POLL_S)
            block, arrived_at = self._queue.popleft()
            self._queued -= len(block)
            return block, arrived_at

    def frames(self, block_s: float | None = None) -> Iterator[AudioFrame]:
        """Yield contiguous 16 kHz mono frames of ``block_s`` s (default 30 ms) until the stream ends.

        Blocks while waiting for audio. ``start_sample`` counts 16 kHz samples from 0; the last frame
        (after ``end()``) may be short.
        """
        conv = SourceConverter(self._rate, self._channels, frame_samples_for(block_s or DEFAULT_PUSH_BLOCK_S))
        if conv.converts:
            logger.info("%s: converting %d Hz, %d ch -> %d Hz mono (soxr %s)", self.description,
                        self._rate, self._channels, TARGET_RATE_HZ, DEFAULT_QUALITY)
        arrived_at: float | None = None
        while (item := self._take()) is not None:
            block, arrived_at = item
            yield from conv.push(block, arrived_at)
        if not self._closed:
            yield from conv.flush(arrived_at)

    def __enter__(self) -> PushSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
