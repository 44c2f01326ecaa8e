"""Where audio comes from: sources, the frame type and resampling to 16 kHz mono.

Importing this package never imports sounddevice (PortAudio); only opening a microphone does.
"""

from idme.audio.frames import MIN_RATE_HZ, TARGET_RATE_HZ, AudioFrame, FrameAssembler
from idme.audio.resample import Downmixer, StreamResampler, to_mono
from idme.audio.sources import (
    AudioSource,
    DeviceInfo,
    FileSource,
    MicrophoneSource,
    RealtimeFileSource,
    list_devices,
    open_source,
    read_audio,
)

__all__ = [
    "MIN_RATE_HZ",
    "TARGET_RATE_HZ",
    "AudioFrame",
    "AudioSource",
    "DeviceInfo",
    "Downmixer",
    "FileSource",
    "FrameAssembler",
    "MicrophoneSource",
    "RealtimeFileSource",
    "StreamResampler",
    "list_devices",
    "open_source",
    "read_audio",
    "to_mono",
]
