"""Turning whatever a source delivers into idme's one format: 16 kHz mono float32.

Two steps, in this order, once, at the source: mix the channels down to mono (so the resampler filters one
channel, not several), then resample with soxr's streaming, anti-aliased resampler.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import soxr

from idme.audio.frames import TARGET_RATE_HZ, AudioFrame, FrameAssembler

logger = logging.getLogger(__name__)

#: soxr "HQ": 20-bit precision, steep anti-alias low-pass just below the output Nyquist (8 kHz at 16 kHz).
#: VHQ (28-bit) buys nothing audible for 16-bit speech models and costs more CPU.
DEFAULT_QUALITY = "HQ"

#: A channel whose (peak-held) level is this far below the loudest channel is treated as dead/unconnected
#: and left out of the mix. At -20 dB it adds at most 10 % amplitude, while averaging it in would cost the
#: live channel 6 dB (a voice recorded on one input of a stereo interface would come out at half level).
DEAD_CHANNEL_DB = -20.0

#: How slowly a channel's tracked level decays after it goes quiet. Long enough that a pause in speech on
#: the live channel does not flip the mix back to a plain average for a few hundred milliseconds.
LEVEL_RELEASE_S = 10.0

# Mean-square level below which a whole block counts as digital silence (about -100 dBFS): then all
# channels are averaged, because there is nothing to tell a live channel from a dead one.
_SILENCE_MS = 1e-10


class StreamResampler:
    """Streaming, anti-aliased resampler for one mono stream (wraps ``soxr.ResampleStream``).

    Feed consecutive blocks to :meth:`process`; call :meth:`flush` once at the end of the stream to get
    the samples the filter still holds. The output is time-aligned with the input (soxr compensates its
    own filter delay), and over a whole stream has ``round(n_in * out_rate / in_rate)`` samples.
    When ``in_rate == out_rate`` blocks pass through unchanged, with no delay.
    """

    def __init__(self, in_rate: int, out_rate: int = TARGET_RATE_HZ, quality: str = DEFAULT_QUALITY) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.quality = quality
        self._stream = (
            None
            if self.in_rate == self.out_rate
            else soxr.ResampleStream(self.in_rate, self.out_rate, 1, dtype="float32", quality=quality)
        )

    @property
    def passthrough(self) -> bool:
        """True when no resampling is needed (input already at ``out_rate``)."""
        return self._stream is None

    def process(self, block: np.ndarray) -> np.ndarray:
        """Resample the next block. block: float32, shape (n,), at ``in_rate``; returns float32 (m,)."""
        x = np.ascontiguousarray(block, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"StreamResampler takes mono blocks of shape (n,), got {x.shape}")
        if self._stream is None:
            return x
        return self._stream.resample_chunk(x)

    def flush(self) -> np.ndarray:
        """End the stream: return the held-back tail (float32 (m,)) and reset for a new stream."""
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        tail = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        self._stream.clear()
        return tail


def _mix_weights(levels: np.ndarray, dead_channel_db: float) -> np.ndarray:
    """Equal weights over the live channels (those within ``dead_channel_db`` of the loudest)."""
    loudest = float(levels.max())
    if loudest < _SILENCE_MS:
        live = np.ones(len(levels), dtype=bool)
    else:
        live = levels >= loudest * 10.0 ** (dead_channel_db / 10.0)
    return (live / live.sum()).astype(np.float32)


def to_mono(block: np.ndarray, dead_channel_db: float = DEAD_CHANNEL_DB) -> np.ndarray:
    """Mix one block down to mono. block: float32 (n, ch) (or (n,), returned as is); returns float32 (n,).

    The live channels are averaged; a channel more than ``-dead_channel_db`` dB below the loudest one over
    this block is left out, so a voice present on one channel only keeps its level instead of being
    halved. Identical channels come out unchanged. Channels in opposite phase would cancel, as in any
    sum-based downmix; microphones do not produce that in practice. Streams should use
    :class:`Downmixer`, which tracks levels across blocks and avoids gain steps between them.
    """
    x = np.asarray(block, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"to_mono takes (n,) or (n, channels), got {x.shape}")
    if x.shape[1] == 1:
        return np.ascontiguousarray(x[:, 0])
    levels = np.mean(np.square(x, dtype=np.float64), axis=0)
    return x @ _mix_weights(levels, dead_channel_db)


class Downmixer:
    """Stateful version of :func:`to_mono` for a stream of blocks from one source.

    Each channel's mean-square level is peak-held (instant attack, ``release_s`` exponential release), so
    the live/dead decision reflects the recording setup rather than the current syllable. When the set of
    live channels changes, the mix weights are ramped across one block, so the level never jumps.
    """

    def __init__(
        self,
        channels: int,
        sample_rate: int,
        dead_channel_db: float = DEAD_CHANNEL_DB,
        release_s: float = LEVEL_RELEASE_S,
    ) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels
        self.sample_rate = sample_rate
        self.dead_channel_db = dead_channel_db
        self.release_s = release_s
        self._levels: np.ndarray | None = None
        self._weights: np.ndarray | None = None

    def __call__(self, block: np.ndarray) -> np.ndarray:
        """Mix block float32 (n, channels) at ``sample_rate`` to float32 (n,)."""
        x = np.asarray(block, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.channels:
            raise ValueError(f"expected a block of shape (n, {self.channels}), got {x.shape}")
        if self.channels == 1:
            return np.ascontiguousarray(x[:, 0])
        n = x.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        block_ms = np.mean(np.square(x, dtype=np.float64), axis=0)
        if self._levels is None:
            self._levels = block_ms
        else:
            decay = math.exp(-n / (self.release_s * self.sample_rate))
            self._levels = np.maximum(block_ms, self._levels * decay)
        weights = _mix_weights(self._levels, self.dead_channel_db)
        previous, self._weights = self._weights, weights
        if previous is None or np.array_equal(previous, weights):
            return x @ weights
        logger.debug("downmix: live channels now %s", np.flatnonzero(weights).tolist())
        old, new = x @ previous, x @ weights
        ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
        return old + (new - old) * ramp


class SourceConverter:
    """What every source does to its native blocks: downmix, resample to 16 kHz, cut into fixed frames.

    Native blocks (float32 (n, channels) at ``native_rate``) go in through :meth:`push`; contiguous
    16 kHz mono :class:`AudioFrame` objects of exactly ``frame_samples`` samples come out, with
    ``start_sample`` counted from the samples produced. :meth:`flush` ends the stream.
    """

    def __init__(
        self, native_rate: int, channels: int, frame_samples: int, out_rate: int = TARGET_RATE_HZ
    ) -> None:
        self.downmix = Downmixer(channels, native_rate)
        self.resampler = StreamResampler(native_rate, out_rate)
        self.assembler = FrameAssembler(frame_samples, out_rate)

    @property
    def converts(self) -> bool:
        """True when the source is not already 16 kHz mono (so the conversion is worth logging)."""
        return self.downmix.channels > 1 or not self.resampler.passthrough

    def push(self, block: np.ndarray, arrived_at: float | None = None) -> list[AudioFrame]:
        """Convert one native block; returns the frames it completes (possibly none)."""
        return self.assembler.push(self.resampler.process(self.downmix(block)), arrived_at)

    def flush(self, arrived_at: float | None = None) -> list[AudioFrame]:
        """End of stream: the resampler's tail and the last, possibly short, frame."""
        frames = self.assembler.push(self.resampler.flush(), arrived_at)
        last = self.assembler.flush(arrived_at)
        return frames + ([last] if last is not None else [])
