"""The microphone source (PortAudio through python-sounddevice) and input device listing.

sounddevice is imported inside the functions that need it, never at module import: it raises OSError at
import when the PortAudio library is missing, and tests, servers and CI run without it.

Threading: PortAudio calls :meth:`MicrophoneSource._callback` on its own real-time thread. PortAudio's
docs say a callback must not block, lock for long, allocate much or do I/O, so it only copies the block
into a bounded queue, stamps its arrival time and counts problems. Everything else (downmix, resampling,
framing, logging, error checks) happens in :meth:`MicrophoneSource.frames`, on the consumer's thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any

import numpy as np

from idme.audio.file import frame_samples_for, one_line
from idme.audio.frames import MIN_RATE_HZ, TARGET_RATE_HZ, AudioFrame
from idme.audio.resample import DEFAULT_QUALITY, SourceConverter
from idme.errors import DeviceError

logger = logging.getLogger(__name__)

#: Microphone block length: 30 ms is a webrtcvad frame length and short enough for live latency.
DEFAULT_MIC_BLOCK_S = 0.03

#: Queue between the PortAudio callback and the consumer: 100 blocks of 30 ms = 3 s of slack before the
#: oldest audio is dropped (a consumer stalled longer than that is behind anyway).
DEFAULT_QUEUE_BLOCKS = 100

#: With no block for this long while the stream claims to run, the device is treated as gone (some
#: host APIs, ALSA among them, keep an unplugged device's stream "active" but stop calling back).
DEFAULT_STALL_TIMEOUT_S = 2.0

#: At most this many input channels are opened by default: a stereo interface may carry the voice on one
#: input only (the downmix handles that); multichannel arrays beyond 2 are not mixed by default.
DEFAULT_MAX_CHANNELS = 2

# How long frames() waits on the queue before re-checking the stop flag and the stream's health.
_POLL_S = 0.1

_PORTAUDIO_HINT = "install PortAudio: apt install libportaudio2 / brew install portaudio"


@dataclass(frozen=True)
class DeviceInfo:
    """An audio input device, as listed by ``idme devices``."""

    index: int
    """PortAudio device index (pass it, or the name, as ``device``)."""
    name: str
    """Device name as the host API reports it."""
    max_input_channels: int
    """Number of input channels the device offers."""
    default_samplerate: int
    """The device's default rate, Hz (the microphone source records at it unless told otherwise)."""
    is_default: bool
    """True for the system's default input device."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import_sounddevice() -> ModuleType:
    """Import sounddevice on demand; a missing PortAudio becomes a DeviceError saying how to install it."""
    try:
        import sounddevice
    except (ImportError, OSError) as e:  # OSError: "PortAudio library not found"
        raise DeviceError(f"audio input is unavailable ({one_line(e)}); {_PORTAUDIO_HINT}") from None
    return sounddevice


def _default_input_index(sd: ModuleType) -> int | None:
    try:
        index = sd.default.device[0]
    except (TypeError, IndexError):
        index = sd.default.device
    return int(index) if index is not None and int(index) >= 0 else None


def _query_inputs(sd: ModuleType) -> list[DeviceInfo]:
    try:
        devices = list(sd.query_devices())
    except Exception as e:  # sd.PortAudioError; the class is only reachable through the lazy import
        raise DeviceError(f"cannot list audio devices ({one_line(e)}); {_PORTAUDIO_HINT}") from None
    default = _default_input_index(sd)
    return [
        DeviceInfo(
            index=i,
            name=str(d["name"]),
            max_input_channels=int(d["max_input_channels"]),
            default_samplerate=int(round(float(d["default_samplerate"]))),
            is_default=(i == default),
        )
        for i, d in enumerate(devices)
        if int(d["max_input_channels"]) > 0
    ]


def list_devices() -> list[DeviceInfo]:
    """Input-capable audio devices (output-only devices are left out). Raises DeviceError without PortAudio."""
    return _query_inputs(_import_sounddevice())


def _resolve_device(inputs: list[DeviceInfo], device: int | str | None) -> DeviceInfo:
    """Pick the input device by index, by name (exact, then unique substring, case-insensitive) or default."""
    if not inputs:
        raise DeviceError("no audio input devices found; connect a microphone (see `idme devices`)")
    if device is None:
        for d in inputs:
            if d.is_default:
                return d
        logger.info("no default input device; using %s", inputs[0].name)
        return inputs[0]
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if isinstance(device, int):
        for d in inputs:
            if d.index == device:
                return d
        raise DeviceError(f"no input device with index {device}; run `idme devices` to list them")
    wanted = device.strip().lower()
    exact = [d for d in inputs if d.name.lower() == wanted]
    matches = exact or [d for d in inputs if wanted in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"no input device named '{one_line(device)}'; run `idme devices` to list them")
    names = ", ".join(f"{d.index}: {d.name}" for d in matches)
    raise DeviceError(f"input device name '{one_line(device)}' is ambiguous ({names}); give the index instead")


class MicrophoneSource:
    """Live audio from an input device as 16 kHz mono frames.

    The device records at its default rate (or ``samplerate``) with up to two channels; frames are
    downmixed and resampled to 16 kHz here, once. ``arrived_at`` is ``time.monotonic()`` when PortAudio
    delivered the block holding the frame's last sample.

    When the consumer falls behind and the queue (``queue_blocks`` blocks) is full, the callback drops the
    OLDEST queued block (never blocks) and counts it in ``dropped_blocks``. Each block carries its
    position in the capture, and :meth:`frames` replaces dropped audio with the same length of silence,
    so ``start_sample`` keeps matching real time and the frames stay contiguous.

    ``stream_factory`` replaces ``sounddevice.InputStream`` (tests pass a fake): it is called with
    ``samplerate, blocksize, device, channels, dtype, callback`` keywords and must return an object with
    ``start()``, ``stop()``, ``close()`` and ``active``. With a factory, sounddevice is never imported and
    ``samplerate`` is required.
    """

    #: Live sources get interim labels, latency stamps and periodic re-clustering.
    live = True

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: int | None = None,
        block_s: float = DEFAULT_MIC_BLOCK_S,
        queue_blocks: int = DEFAULT_QUEUE_BLOCKS,
        stream_factory: Callable[..., Any] | None = None,
        channels: int | None = None,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
    ) -> None:
        if queue_blocks < 1:
            raise ValueError(f"queue_blocks must be >= 1, got {queue_blocks}")
        self.block_s = block_s
        self.stall_timeout_s = max(stall_timeout_s, 10 * block_s)
        if stream_factory is None:
            sd = _import_sounddevice()
            info = _resolve_device(_query_inputs(sd), device)
            rate = int(samplerate or info.default_samplerate)
            n_channels = int(channels or min(info.max_input_channels, DEFAULT_MAX_CHANNELS))
            self._check_settings(sd, info, n_channels, rate)
            self._factory: Callable[..., Any] = sd.InputStream
            self._device_arg: int | str | None = info.index
            self.device_name = info.name
        else:
            if samplerate is None:
                raise ValueError("samplerate is required with stream_factory")
            rate, n_channels = int(samplerate), int(channels or 1)
            self._factory, self._device_arg = stream_factory, device
            self.device_name = str(device) if device is not None else "injected stream"
        if rate < MIN_RATE_HZ:
            raise DeviceError(f"input rate {rate} Hz is too low; idme needs at least {MIN_RATE_HZ} Hz")
        self._rate, self._channels = rate, n_channels
        self._blocksize = frame_samples_for(block_s, rate)
        self._queue: queue.Queue[tuple[np.ndarray, float, int]] = queue.Queue(maxsize=queue_blocks)
        self._stop = threading.Event()
        self._stream: Any = None
        # Written only by the PortAudio thread (plain int updates are atomic under the GIL).
        self._captured = 0  # native samples delivered by PortAudio so far
        self.dropped_blocks = 0
        """Blocks dropped because the queue was full (the consumer fell behind)."""
        self.overflows = 0
        """Callbacks in which PortAudio reported a status flag (input overflow/underflow)."""

    @staticmethod
    def _check_settings(sd: ModuleType, info: DeviceInfo, channels: int, rate: int) -> None:
        try:
            sd.check_input_settings(device=info.index, channels=channels, dtype="float32", samplerate=rate)
        except Exception as e:  # sd.PortAudioError or ValueError, depending on what PortAudio rejects
            raise DeviceError(
                f"input device '{info.name}' rejects {rate} Hz, {channels} ch ({one_line(e)}); "
                f"its default rate is {info.default_samplerate} Hz"
            ) from None

    # -- AudioSource protocol ---------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Rate of the frames this source yields: always 16 kHz."""
        return TARGET_RATE_HZ

    @property
    def native_rate(self) -> int:
        """Rate the device records at, Hz."""
        return self._rate

    @property
    def channels(self) -> int:
        """Channels recorded from the device (the frames are mono)."""
        return self._channels

    @property
    def duration_s(self) -> None:
        """A live source has no known length."""
        return None

    @property
    def description(self) -> str:
        """One line for logs and session metadata."""
        return f"microphone '{self.device_name}' ({self._rate} Hz, {self._channels} ch)"

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # Runs on PortAudio's thread: copy, stamp, enqueue, count. No logging, no blocking.
        arrived_at = time.monotonic()
        if status:
            self.overflows += 1
        item = (indata.copy(), arrived_at, self._captured)
        self._captured += len(indata)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            try:
                self._queue.get_nowait()  # drop the oldest block: fresh audio matters more live
            except queue.Empty:  # the consumer emptied it meanwhile
                pass
            else:
                self.dropped_blocks += 1
            self._queue.put_nowait(item)  # cannot be full: this thread is the only producer

    def frames(self, block_s: float | None = None) -> Iterator[AudioFrame]:
        """Record and yield contiguous 16 kHz mono frames of ``block_s`` s (default: the device block).

        Runs until :meth:`stop` (then drains what was captured, flushes and returns). Raises DeviceError
        if the stream cannot be opened, stops by itself, fails, or delivers nothing for
        ``stall_timeout_s``. The stream is closed when the iteration ends, however it ends.
        """
        conv = SourceConverter(self._rate, self._channels, frame_samples_for(block_s or self.block_s))
        if conv.converts:
            logger.info("%s: converting %d Hz, %d ch -> %d Hz mono (soxr %s)", self.description,
                        self._rate, self._channels, TARGET_RATE_HZ, DEFAULT_QUALITY)
        self._open()
        expected = 0  # native sample position the next block should start at
        reported_drops = reported_overflows = 0
        last_block_at = time.monotonic()
        arrived_at: float | None = None
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    block, arrived_at, position = self._queue.get(block=not stopping, timeout=_POLL_S)
                except queue.Empty:
                    if stopping:
                        break
                    self._check_alive(time.monotonic() - last_block_at)
                    continue
                last_block_at = time.monotonic()
                if position > expected:  # blocks were dropped: keep the timeline with silence
                    yield from conv.push(np.zeros((position - expected, self._channels), np.float32), arrived_at)
                expected = position + len(block)
                yield from conv.push(block, arrived_at)
                if self.dropped_blocks != reported_drops or self.overflows != reported_overflows:
                    reported_drops, reported_overflows = self.dropped_blocks, self.overflows
                    logger.warning("%s: %d block(s) dropped (processing fell behind), %d PortAudio overflow(s)",
                                   self.description, reported_drops, reported_overflows)
            yield from conv.flush(arrived_at)
        finally:
            self._close_stream()

    def record(self, seconds: float) -> np.ndarray:
        """Records exactly ``seconds`` of 16 kHz mono (float32 (n,)), then stops and closes the stream;
        shorter only if the stream ends first (DeviceError as :meth:`frames` raises it)."""
        parts, need, got = [], int(round(seconds * TARGET_RATE_HZ)), 0
        with self:
            for frame in self.frames():
                parts.append(frame.samples)
                got += len(frame.samples)
                if got >= need:
                    self.stop()
        return np.concatenate(parts)[:need] if parts else np.zeros(0, np.float32)

    def stop(self) -> None:
        """Stop recording (thread-safe, e.g. on Ctrl+C): frames() drains the queue, flushes and returns."""
        self._stop.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.stop()
            except Exception as e:  # a dying device may refuse; frames() still ends via the stop flag
                logger.debug("stopping the input stream failed: %s", e)

    def close(self) -> None:
        """Stop and release the device. Idempotent."""
        self._stop.set()
        self._close_stream()

    def __enter__(self) -> MicrophoneSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if self._stream is not None:
            raise RuntimeError("MicrophoneSource.frames() is already running")
        try:
            self._stream = self._factory(
                samplerate=self._rate, blocksize=self._blocksize, device=self._device_arg,
                channels=self._channels, dtype="float32", callback=self._callback,
            )
            self._stream.start()
        except Exception as e:  # PortAudioError / a fake's error: report it as a device problem
            self._close_stream()
            raise DeviceError(f"cannot open input device '{self.device_name}': {one_line(e)}") from None

    def _check_alive(self, silent_s: float) -> None:
        """Raise DeviceError if the stream has died; called when no block arrived within the poll."""
        try:
            active = bool(self._stream.active)
        except Exception as e:  # PortAudioError from a vanished device, or a fake raising
            raise DeviceError(f"input device '{self.device_name}' failed: {one_line(e)}") from None
        if not active and not self._stop.is_set():
            raise DeviceError(f"input device '{self.device_name}' stopped unexpectedly (unplugged?)")
        if silent_s > self.stall_timeout_s:
            raise DeviceError(f"no audio from input device '{self.device_name}' for {silent_s:.1f} s (unplugged?)")

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        for method in ("stop", "close"):
            try:
                getattr(stream, method)()
            except Exception as e:  # closing must not mask the error that ended the stream
                logger.debug("input stream %s() failed: %s", method, e)
