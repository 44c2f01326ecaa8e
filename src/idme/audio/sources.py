"""Where audio comes from: the AudioSource protocol and the factory the CLI and pipeline call.

Every source converts to 16 kHz mono at the source, so everything downstream (VAD, encoders,
recognisers) sees one format: :class:`~idme.audio.frames.AudioFrame` objects at ``TARGET_RATE_HZ``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from idme.audio.file import (
    DEFAULT_FILE_BLOCK_S,
    DEFAULT_LIVE_BLOCK_S,
    FileSource,
    RealtimeFileSource,
    read_audio,
)
from idme.audio.frames import AudioFrame
from idme.audio.microphone import DEFAULT_MIC_BLOCK_S, DeviceInfo, MicrophoneSource, list_devices
from idme.errors import AudioError

__all__ = [
    "DEFAULT_FILE_BLOCK_S",
    "DEFAULT_LIVE_BLOCK_S",
    "DEFAULT_MIC_BLOCK_S",
    "AudioSource",
    "DeviceInfo",
    "FileSource",
    "MicrophoneSource",
    "RealtimeFileSource",
    "list_devices",
    "open_source",
    "read_audio",
]


@runtime_checkable
class AudioSource(Protocol):
    """Anything that yields 16 kHz mono float32 frames: a file, a file played in real time, a microphone.

    Frames from one ``frames()`` iteration are contiguous: ``start_sample`` (16 kHz samples) starts at 0
    and each frame starts where the previous one ended. Sources are context managers (``close`` on exit).
    """

    @property
    def sample_rate(self) -> int:
        """Rate of the yielded frames: always ``TARGET_RATE_HZ`` (16 kHz)."""
        ...

    @property
    def native_rate(self) -> int:
        """Rate of the underlying file or device, Hz, before resampling."""
        ...

    @property
    def channels(self) -> int:
        """Channels of the underlying file or device, before downmixing."""
        ...

    @property
    def description(self) -> str:
        """One human-readable line (for logs and session metadata)."""
        ...

    @property
    def duration_s(self) -> float | None:
        """Length in seconds when known (files), else None (microphones)."""
        ...

    def frames(self, block_s: float = ...) -> Iterator[AudioFrame]:
        """Yield contiguous frames of ``block_s`` seconds (the last may be shorter)."""
        ...

    def stop(self) -> None:
        """Thread-safe request to end iteration: ``frames()`` drains, flushes and returns."""
        ...

    def close(self) -> None:
        """Release the file or device. Idempotent."""
        ...

    def __enter__(self) -> AudioSource: ...

    def __exit__(self, *exc: object) -> None: ...


def open_source(
    file: str | os.PathLike[str] | None = None,
    realtime: bool = False,
    device: int | str | None = None,
    **kw: Any,
) -> AudioSource:
    """Open the source the user asked for: a file (as fast as possible, or in real time) or a microphone.

    ``kw`` goes to the chosen class: ``speed``/``clock``/``sleep`` for :class:`RealtimeFileSource`;
    ``samplerate``, ``block_s``, ``queue_blocks``, ``channels``, ``stream_factory`` for
    :class:`MicrophoneSource`. Raises AudioError/DeviceError with a one-line message.
    """
    if file is not None:
        if device is not None:
            raise AudioError("choose either an audio file or an input device, not both")
        if realtime:
            return RealtimeFileSource(file, **kw)
        if kw:
            raise TypeError(f"FileSource takes no options, got {sorted(kw)}")
        return FileSource(file)
    if realtime:
        raise AudioError("real-time playback needs an audio file")
    return MicrophoneSource(device=device, **kw)
