"""The one frame type that flows through idme: samples always travel with their sample rate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Every model in idme (webrtcvad, CAM++, ECAPA, Vosk, Whisper) is fed 16 kHz mono.
TARGET_RATE_HZ = 16000

#: Lowest input rate idme accepts: below telephone rate (8 kHz) speech loses the band the models rely on.
MIN_RATE_HZ = 8000


@dataclass(frozen=True)
class AudioFrame:
    """A block of mono audio.

    samples: float32, shape (n,), in [-1, 1].
    sample_rate: Hz of ``samples``.
    start_sample: index of the first sample in the stream at ``sample_rate`` (timestamps come from sample
        counts, never from the wall clock).
    arrived_at: ``time.monotonic()`` when the source delivered the block's last sample (live sources), or
        None in plain file mode; used for latency measurements only.
    """

    samples: np.ndarray
    sample_rate: int
    start_sample: int = 0
    arrived_at: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.samples.ndim != 1:
            raise ValueError(f"AudioFrame samples must be 1-D (mono), got shape {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def start_s(self) -> float:
        return self.start_sample / self.sample_rate

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end_s(self) -> float:
        return (self.start_sample + len(self.samples)) / self.sample_rate


class FrameAssembler:
    """Cuts a stream of variable-length chunks into frames of exactly ``frame_samples`` samples.

    A resampler returns a slightly different number of samples per call (its filter holds some back), so
    sources push whatever it produced and get back fixed-size, contiguous frames whose ``start_sample``
    comes from the running sample count. Only the last frame of a stream (from :meth:`flush`) may be short.
    """

    def __init__(self, frame_samples: int, sample_rate: int = TARGET_RATE_HZ, start_sample: int = 0) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self._next_start = start_sample
        self._pending: list[np.ndarray] = []
        self._n_pending = 0

    @property
    def next_start_sample(self) -> int:
        """Stream index of the first sample of the next frame to be emitted."""
        return self._next_start

    def push(self, samples: np.ndarray, arrived_at: float | None = None) -> list[AudioFrame]:
        """Add ``samples`` (float32, shape (n,)) and return every frame they complete.

        Completed frames are stamped with ``arrived_at``: their last sample arrived with this chunk.
        Frames may be views of ``samples``; callers hand over fresh arrays and do not modify them afterwards.
        """
        if len(samples) == 0:
            return []
        self._pending.append(np.asarray(samples, dtype=np.float32))
        self._n_pending += len(samples)
        if self._n_pending < self.frame_samples:
            return []
        buf = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        n_full = len(buf) // self.frame_samples
        frames = [self._emit(buf[i * self.frame_samples : (i + 1) * self.frame_samples], arrived_at)
                  for i in range(n_full)]
        rest = buf[n_full * self.frame_samples :]
        # Copy the short remainder so the pending list never pins a large input block in memory.
        self._pending = [rest.copy()] if len(rest) else []
        self._n_pending = len(rest)
        return frames

    def flush(self, arrived_at: float | None = None) -> AudioFrame | None:
        """Return the remaining samples as a last (short) frame, or None if nothing is pending."""
        if self._n_pending == 0:
            return None
        buf = np.concatenate(self._pending)
        self._pending, self._n_pending = [], 0
        return self._emit(buf, arrived_at)

    def _emit(self, samples: np.ndarray, arrived_at: float | None) -> AudioFrame:
        frame = AudioFrame(samples, self.sample_rate, self._next_start, arrived_at)
        self._next_start += len(samples)
        return frame
