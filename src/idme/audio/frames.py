"""The one frame type that flows through idme: samples always travel with their sample rate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Every model in idme (webrtcvad, CAM++, ECAPA, Vosk, Whisper) is fed 16 kHz mono.
TARGET_RATE_HZ = 16000


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
