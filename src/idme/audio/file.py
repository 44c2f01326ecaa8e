"""Audio files as sources: read in blocks (never whole), converted to 16 kHz mono once, here.

``FileSource`` reads as fast as the consumer pulls (offline processing, evaluation). ``RealtimeFileSource``
plays the same file through the live path, releasing each block when its last sample would have arrived
from a microphone, so latency can be measured and the live pipeline tested without hardware.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from idme.audio.frames import MIN_RATE_HZ, TARGET_RATE_HZ, AudioFrame
from idme.audio.resample import DEFAULT_QUALITY, SourceConverter
from idme.errors import AudioError

logger = logging.getLogger(__name__)

#: Frame length for offline file reading: long enough that per-block Python overhead is negligible
#: (a 3-hour file is ~21,600 blocks), short enough that a block is small in memory (0.5 s at 96 kHz
#: stereo float32 is 384 KB).
DEFAULT_FILE_BLOCK_S = 0.5

#: Frame length when a file plays at real-time speed: the same 30 ms a microphone delivers (and one of
#: the 10/20/30 ms frame lengths webrtcvad accepts).
DEFAULT_LIVE_BLOCK_S = 0.03

#: Highest native rate accepted. Nothing records above 384 kHz; a larger value means a corrupt header.
MAX_RATE_HZ = 384_000

#: Formats the installed libsndfile (>= 1.1) decodes and idme documents; others it can read work too.
SUPPORTED_FORMATS = "wav, flac, ogg, mp3"
#: Formats read through PyAV (FFmpeg) when it is installed (``pip install idme[formats]``; faster-whisper
#: brings it too): what phones, Zoom and browsers record.
AV_FORMATS = "m4a, mp4, aac, webm, opus, mka"
#: Files decoded by PyAV even though libsndfile opens them: libmpg123 prints dozens of
#: "part2_3_length ... too large" lines on stderr for valid ffmpeg-made mp3s (review 2026-12-01 item 9),
#: from C, where no Python logging setting reaches.
_PREFER_AV = {".mp3"}
#: ``-`` as a path: read the recording from standard input (buffered whole in memory first: formats
#: such as mp4 need to seek).
STDIN = "-"

# libsndfile reports a frame count of SF_COUNT_MAX when the length is unknown (pipes, some streams).
_UNKNOWN_FRAMES = 2**62


def one_line(text: object) -> str:
    """``str(text)`` with line breaks collapsed, for one-line error messages."""
    return " ".join(str(text).split())


def frame_samples_for(block_s: float, rate: int = TARGET_RATE_HZ) -> int:
    """Samples in a block of ``block_s`` seconds at ``rate`` Hz (at least 1)."""
    if not block_s > 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    return max(1, round(block_s * rate))


class AvFile:
    """A recording decoded by PyAV (FFmpeg), with the part of ``soundfile.SoundFile``'s interface that
    :class:`FileSource` uses: ``samplerate``, ``channels``, ``frames``, ``format``, ``subtype``, ``closed``,
    ``read(n, dtype="float32", always_2d=True)`` -> float32 (n, channels), ``seek(0)``, ``tell()``, ``close()``.

    Decoding failures mid-file raise RuntimeError, as libsndfile's do, so FileSource keeps what came before.
    """

    def __init__(self, source: str | io.BytesIO, name: str) -> None:
        import av  # optional (idme[formats]); imported only for files libsndfile cannot read

        self._av = av
        self._source = source
        self._name = name
        self.closed = False
        self._open()
        stream = self._stream
        self.samplerate = int(stream.rate or stream.codec_context.sample_rate or 0)
        self.channels = int(stream.codec_context.channels or len(stream.layout.channels) or 1)
        self.format = (self._container.format.name or "av").split(",")[0].upper()
        self.subtype = (stream.codec_context.name or "").upper()
        seconds = None
        if stream.duration is not None and stream.time_base is not None:
            seconds = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            seconds = self._container.duration / 1_000_000  # av.time_base: microseconds
        self.frames = int(round(seconds * self.samplerate)) if seconds else _UNKNOWN_FRAMES

    def _open(self) -> None:
        if isinstance(self._source, io.BytesIO):
            self._source.seek(0)
        self._container = self._av.open(self._source, mode="r")
        if not self._container.streams.audio:
            self._container.close()
            raise AudioError(f"'{self._name}' has no audio stream")
        self._stream = self._container.streams.audio[0]
        self._decoded = self._container.decode(self._stream)
        # Packed float32 at the stream's own rate and layout: resampling to 16 kHz stays in one place
        # (SourceConverter), as for every other source.
        self._resampler = self._av.AudioResampler(format="flt")
        self._pending = np.zeros((0, 0), np.float32)
        self._pos = 0

    def _next_block(self) -> np.ndarray | None:
        try:
            frame = next(self._decoded)
        except StopIteration:
            return None
        except self._av.FFmpegError as e:
            raise RuntimeError(one_line(e)) from None
        parts = [f.to_ndarray().reshape(-1, self.channels) for f in self._resampler.resample(frame)]
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)

    def read(self, n: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        parts, have = [self._pending] if len(self._pending) else [], len(self._pending)
        while have < n:
            block = self._next_block()
            if block is None:
                break
            parts.append(block)
            have += len(block)
        out = np.concatenate(parts) if parts else np.zeros((0, self.channels), np.float32)
        out, self._pending = out[:n], out[n:]
        self._pos += len(out)
        return out.astype(np.float32, copy=False)

    def tell(self) -> int:
        return self._pos

    def seek(self, position: int) -> None:
        """Rewinds to ``position`` (frames) by decoding again from the start (FileSource seeks rarely)."""
        self._container.close()
        self._open()
        while self._pos < position and len(self.read(min(position - self._pos, 65536))):
            pass

    def close(self) -> None:
        if not self.closed:
            self._container.close()
            self.closed = True


def _has_av() -> bool:
    import importlib.util

    return importlib.util.find_spec("av") is not None


def _open_av(source: str | io.BytesIO, name: str, why: str) -> AvFile | None:
    """PyAV's reader for ``source``, or None when PyAV is not installed or cannot read it either."""
    try:
        import av
    except ImportError:
        logger.debug("PyAV not installed; cannot try it on %s (%s)", name, why)
        return None
    try:
        return AvFile(source, name)
    except (av.FFmpegError, OSError, ValueError, IndexError) as e:
        logger.debug("PyAV cannot read %s either: %s", name, one_line(e))
        return None


def _sniff(head: bytes) -> str | None:
    """What a file that no decoder reads looks like, for the error message (the true reason)."""
    if not head.strip():
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return "it is a text file, not audio" if all(c.isprintable() or c.isspace() for c in text[:512]) else None


def read_stdin() -> io.BytesIO:
    """Standard input as an in-memory file (``--file -``); AudioError when nothing was piped in."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    if stream is None or sys.stdin.isatty():
        raise AudioError("'-' reads a recording from standard input: pipe one in, e.g. `cat talk.m4a | idme listen -`")
    data = stream.read()
    if not data:
        raise AudioError("standard input is empty (0 bytes): pipe a recording in")
    return io.BytesIO(data)


def open_sound_file(path: str | os.PathLike[str], data: io.BytesIO | None = None) -> sf.SoundFile | AvFile:
    """Open ``path`` for block reading, turning every way it can be unusable into a one-line AudioError.

    libsndfile first (wav, flac, ogg, mp3 ...), PyAV for what it cannot read (m4a, mp4, webm, opus ...) and
    for mp3. ``data``: the recording's bytes instead of a file (``path`` then only names it: stdin).
    """
    p = Path(path)
    name = "standard input" if data is not None else one_line(p)
    if data is None:
        if not p.exists():
            raise AudioError(f"audio file not found: '{name}'")
        if p.is_dir():
            raise AudioError(f"'{name}' is a directory, not an audio file")
        if not os.access(p, os.R_OK):
            raise AudioError(f"cannot read '{name}': permission denied")
        if p.is_file() and p.stat().st_size == 0:
            raise AudioError(f"'{name}' is empty (0 bytes)")
        if not p.is_file():  # a pipe or a device (/dev/stdin): buffer it, it can be read only once
            with open(p, "rb") as fh:
                data = io.BytesIO(fh.read())
            if not data.getbuffer().nbytes:
                raise AudioError(f"'{name}' gave no data (0 bytes)")
    f: sf.SoundFile | AvFile | None = None
    av_tried = False
    if p.suffix.lower() in _PREFER_AV and _has_av():
        av_tried = True
        f = _open_av(data if data is not None else str(p), name, "preferred for mp3")
    if f is None:
        try:
            if av_tried:  # libmpg123 would only add its stderr noise to the same verdict
                raise sf.LibsndfileError(0, "format not recognised")
            if data is not None:
                data.seek(0)
            f = sf.SoundFile(data if data is not None else str(p))
        except sf.LibsndfileError as e:
            reason = "format not recognised" if av_tried else (one_line(e.error_string).rstrip(".") or "unknown format")
            f = None if av_tried else _open_av(data if data is not None else str(p), name, reason)
            if f is None:
                if data is not None:
                    head = data.getvalue()[:512]
                else:
                    with open(p, "rb") as fh:
                        head = fh.read(512)
                # libsndfile's own text for an unknown mp3 is "File does not exist or is not a regular
                # file (possibly a pipe?)", which is never the reason here: say what the bytes look like.
                reason = _sniff(head) or ("format not recognised" if "regular file" in reason else reason)
                raise AudioError(
                    f"'{name}' is not a readable audio file or is damaged ({reason}); supported: "
                    f"{SUPPORTED_FORMATS}, and {AV_FORMATS} with PyAV (pip install 'idme[formats]')"
                ) from None
        except (OSError, RuntimeError, TypeError) as e:
            raise AudioError(f"cannot open '{name}': {one_line(e)}") from None
    try:
        if f.samplerate < MIN_RATE_HZ:
            raise AudioError(f"'{name}' is sampled at {f.samplerate} Hz; idme needs at least {MIN_RATE_HZ} Hz")
        if f.samplerate > MAX_RATE_HZ:
            raise AudioError(f"'{name}' claims {f.samplerate} Hz, above {MAX_RATE_HZ} Hz; corrupt header?")
        if f.frames == 0:
            raise AudioError(f"'{name}' contains no audio samples (header only)")
    except AudioError:
        f.close()
        raise
    return f


class FileSource:
    """A wav/flac/ogg/mp3 file (anything libsndfile decodes; m4a/mp4/aac/webm/opus and mp3 through PyAV
    when it is installed), or ``-`` (standard input), read block by block as 16 kHz mono frames.

    Any rate from 8 kHz up (96 kHz included), any channel count, int16/int24/int32/float samples.
    Construction opens and validates the file (errors are one-line :class:`AudioError` s); the file stays
    open until :meth:`close`. Memory use does not depend on the file's length.

    Decode errors mid-file (a truncated or damaged flac/mp3): the audio decoded so far is kept, a warning
    is logged and the stream ends there, as for a file cut short (at most 1/16 of ``block_s`` before the
    damage is lost). A file that fails before any audio decodes raises AudioError.
    Non-finite float samples (NaN/inf in float files) are replaced by 0/±1 with a warning.
    """

    #: Live sources get interim labels, latency stamps and periodic re-clustering.
    live = False

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """path: a file, or ``-`` for standard input."""
        self.path = Path(path)
        data = read_stdin() if str(path) == STDIN else None
        self._file = open_sound_file(self.path, data)
        self._stop = threading.Event()
        self._warned_nonfinite = False

    # -- AudioSource protocol ---------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        """Rate of the frames this source yields: always 16 kHz."""
        return TARGET_RATE_HZ

    @property
    def native_rate(self) -> int:
        """Rate stored in the file, Hz."""
        return int(self._file.samplerate)

    @property
    def channels(self) -> int:
        """Channels stored in the file (the frames are mono)."""
        return int(self._file.channels)

    @property
    def duration_s(self) -> float | None:
        """Length from the file header in seconds, or None when the format does not say."""
        n = self._file.frames
        return n / self._file.samplerate if 0 < n < _UNKNOWN_FRAMES else None

    @property
    def description(self) -> str:
        """One line for logs and session metadata, e.g. ``talk.flac (44100 Hz, 2 ch, FLAC PCM_24, 63.2 s)``."""
        dur = self.duration_s
        length = f", {dur:.1f} s" if dur is not None else ""
        name = "standard input" if str(self.path) == STDIN else self.path.name
        return (f"{name} ({self.native_rate} Hz, {self.channels} ch, "
                f"{self._file.format} {self._file.subtype}{length})")

    def frames(self, block_s: float = DEFAULT_FILE_BLOCK_S) -> Iterator[AudioFrame]:
        """Yield the file as contiguous 16 kHz mono frames of ``block_s`` seconds (the last may be shorter).

        Each call starts again from the beginning of the file; ``start_sample`` counts 16 kHz samples from
        0. ``arrived_at`` is None (file mode has no arrival time). Raises AudioError if nothing decodes.
        """
        if self._file.closed:
            raise AudioError(f"'{one_line(self.path)}' was already closed")
        out_samples = frame_samples_for(block_s)
        read_frames = frame_samples_for(block_s, self.native_rate)
        conv = SourceConverter(self.native_rate, self.channels, out_samples)
        if conv.converts:
            logger.info("%s: converting %d Hz, %d ch -> %d Hz mono (soxr %s)", self.path.name,
                        self.native_rate, self.channels, TARGET_RATE_HZ, DEFAULT_QUALITY)
        if self._file.tell() != 0:
            self._file.seek(0)
        decoded = 0
        while not self._stop.is_set():
            try:
                block = self._file.read(read_frames, dtype="float32", always_2d=True)
            except RuntimeError as e:  # LibsndfileError: the decoder lost sync (truncated / damaged file)
                reason = one_line(getattr(e, "error_string", e))
                if decoded == 0:
                    raise AudioError(f"'{one_line(self.path)}' cannot be decoded ({reason})") from None
                tail = self._salvage(decoded, read_frames)
                decoded += len(tail)
                yield from conv.push(self._finite(tail))
                logger.warning("%s: decoding stopped at %.2f s (%s); file truncated or damaged, keeping the "
                               "audio read so far", self.path.name, decoded / self.native_rate, reason)
                break
            if len(block) == 0:
                break
            decoded += len(block)
            yield from conv.push(self._finite(block))
        if decoded == 0 and not self._stop.is_set():
            raise AudioError(f"'{one_line(self.path)}' contains no decodable audio")
        yield from conv.flush()

    def stop(self) -> None:
        """End iteration after the current block (thread-safe); the source yields nothing afterwards."""
        self._stop.set()

    def close(self) -> None:
        """Close the file. Idempotent."""
        self._file.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _salvage(self, position: int, read_frames: int) -> np.ndarray:
        """After a decode error, re-read from ``position`` in small steps to keep what precedes the damage.

        The failed read discarded its whole block; libsndfile can seek back and decode up to the damaged
        point, so the loss shrinks from one block to 1/16 of one. Returns float32 (n, channels), maybe empty.
        """
        step = max(1, read_frames // 16)
        parts = []
        try:
            self._file.seek(position)
            while len(piece := self._file.read(step, dtype="float32", always_2d=True)):
                parts.append(piece)
        except RuntimeError:  # LibsndfileError again at the damage: everything before it is in parts
            pass
        return np.concatenate(parts) if parts else np.zeros((0, self.channels), dtype=np.float32)

    def _finite(self, block: np.ndarray) -> np.ndarray:
        # Only float files can hold NaN/inf; one NaN would poison the resampler's filter state and every
        # embedding after it, so it is cheaper to check each block than to debug that downstream.
        if np.isfinite(block).all():
            return block
        if not self._warned_nonfinite:
            logger.warning("%s: non-finite samples (NaN/inf) replaced", self.path.name)
            self._warned_nonfinite = True
        return np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)


class RealtimeFileSource:
    """Plays a file through the live path at ``speed`` x real time, as if it came from a microphone.

    Frames are released when their last sample would have arrived: at ``t0 + end_s / speed`` on
    ``clock`` (t0 = when iteration started). Deadlines are computed from the sample count, not by adding
    up sleeps, so oversleeping never accumulates into drift. ``arrived_at`` is ``clock()`` at release.
    ``clock`` and ``sleep`` are injectable so tests can run on a fake clock.
    """

    #: Live sources get interim labels, latency stamps and periodic re-clustering.
    live = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.speed = float(speed)
        self._clock = clock
        self._sleep = sleep
        self._source = FileSource(path)
        self._stop = threading.Event()

    @property
    def sample_rate(self) -> int:
        """Rate of the frames this source yields: always 16 kHz."""
        return TARGET_RATE_HZ

    @property
    def native_rate(self) -> int:
        """Rate stored in the file, Hz."""
        return self._source.native_rate

    @property
    def channels(self) -> int:
        """Channels stored in the file (the frames are mono)."""
        return self._source.channels

    @property
    def duration_s(self) -> float | None:
        """Length of the file in seconds (playback takes ``duration_s / speed``), or None if unknown."""
        return self._source.duration_s

    @property
    def description(self) -> str:
        """One line for logs and session metadata."""
        return f"{self._source.description}, real time x{self.speed:g}"

    def frames(self, block_s: float = DEFAULT_LIVE_BLOCK_S) -> Iterator[AudioFrame]:
        """Yield 16 kHz mono frames of ``block_s`` seconds, each released at its real-time deadline."""
        t0 = self._clock()
        for frame in self._source.frames(block_s):
            if self._stop.is_set():
                return
            wait = t0 + frame.end_s / self.speed - self._clock()
            if wait > 0:
                self._sleep(wait)
            yield dataclasses.replace(frame, arrived_at=self._clock())

    def stop(self) -> None:
        """End iteration before the next frame (thread-safe); the source yields nothing afterwards."""
        self._stop.set()
        self._source.stop()

    def close(self) -> None:
        """Close the file. Idempotent."""
        self._source.close()

    def __enter__(self) -> RealtimeFileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_audio(path: str | os.PathLike[str], max_s: float | None = None) -> np.ndarray:
    """Read a whole (short) file as 16 kHz mono: float32, shape (n,). For enrollment clips and evaluation.

    ``max_s`` stops reading after that many seconds (the rest of the file is never decoded).
    Raises AudioError for anything :class:`FileSource` rejects.
    """
    limit = None if max_s is None else max(0, round(max_s * TARGET_RATE_HZ))
    parts: list[np.ndarray] = []
    n = 0
    with FileSource(path) as source:
        for frame in source.frames():
            parts.append(frame.samples)
            n += len(frame.samples)
            if limit is not None and n >= limit:
                break
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio[:limit] if limit is not None else audio
