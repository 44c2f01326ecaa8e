"""Audio input layer: files in every format/rate/layout, bad inputs, real-time pacing, microphone fakes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import types
from functools import partial
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from idme.audio import (
    TARGET_RATE_HZ,
    AudioFrame,
    AudioSource,
    Downmixer,
    FileSource,
    MicrophoneSource,
    RealtimeFileSource,
    StreamResampler,
    list_devices,
    open_source,
    read_audio,
    to_mono,
)
from idme.errors import AudioError, DeviceError

DATA = Path(__file__).parent / "data"
CLIP = DATA / "audio_src_1998.flac"  # LibriSpeech test-other 1998-15444-0007, 16 kHz, 3.17 s


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The reference clip at 16 kHz, float32 (n,)."""
    x, rate = sf.read(CLIP, dtype="float32")
    assert rate == TARGET_RATE_HZ and x.ndim == 1
    return x


def at_rate(x: np.ndarray, rate: int, from_rate: int = TARGET_RATE_HZ) -> np.ndarray:
    """``x`` resampled from ``from_rate`` to ``rate`` with scipy's polyphase filter (independent of soxr)."""
    g = np.gcd(rate, from_rate)
    return resample_poly(x, rate // g, from_rate // g).astype(np.float32)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def collect(frames: list[AudioFrame], frame_samples: int) -> np.ndarray:
    """Check frames are contiguous 16 kHz mono float32 of the expected size, and join them."""
    assert frames, "no frames"
    position = 0
    for i, f in enumerate(frames):
        assert f.sample_rate == TARGET_RATE_HZ and f.samples.dtype == np.float32 and f.samples.ndim == 1
        assert f.start_sample == position
        if i < len(frames) - 1:
            assert len(f.samples) == frame_samples
        position += len(f.samples)
    return np.concatenate([f.samples for f in frames])


def assert_one_line(err: pytest.ExceptionInfo) -> None:
    msg = str(err.value)
    assert msg and "\n" not in msg and "\r" not in msg


# -- files: formats, rates, layouts ----------------------------------------------------------------

FORMAT_CASES = [
    # (file name, rate, format, subtype)
    ("8k_pcm16.wav", 8000, "WAV", "PCM_16"),
    ("22k05_pcm24.wav", 22050, "WAV", "PCM_24"),
    ("16k_pcm32.wav", 16000, "WAV", "PCM_32"),
    ("32k_float.wav", 32000, "WAV", "FLOAT"),
    ("44k1_pcm16.wav", 44100, "WAV", "PCM_16"),
    ("48k_pcm16.wav", 48000, "WAV", "PCM_16"),
    ("96k_pcm24.wav", 96000, "WAV", "PCM_24"),
    ("44k1_pcm24.flac", 44100, "FLAC", "PCM_24"),
    ("48k.ogg", 48000, "OGG", "VORBIS"),
    ("44k1.mp3", 44100, "MP3", "MPEG_LAYER_III"),
]


@pytest.mark.parametrize("name,rate,fmt,subtype", FORMAT_CASES, ids=[c[0] for c in FORMAT_CASES])
def test_file_formats_convert_to_16k_mono(tmp_path, speech, name, rate, fmt, subtype):
    """Every supported format/rate/sample type comes out as contiguous 16 kHz frames matching the speech."""
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}/{subtype}")
    native = at_rate(speech, rate)
    path = tmp_path / name
    sf.write(path, native, rate, format=fmt, subtype=subtype)
    with FileSource(path) as src:
        assert src.native_rate == rate and src.channels == 1 and src.sample_rate == TARGET_RATE_HZ
        assert src.duration_s == pytest.approx(len(native) / rate, abs=0.05)
        out = collect(list(src.frames(block_s=0.25)), 4000)
    # Below 16 kHz the band above rate/2 is gone: compare with the clip band-limited the same way.
    reference = speech if rate >= TARGET_RATE_HZ else at_rate(native, TARGET_RATE_HZ, rate)
    assert abs(len(out) - len(speech)) <= 0.02 * TARGET_RATE_HZ
    lossy = fmt in ("OGG", "MP3")
    assert correlation(out, reference) > (0.98 if lossy else 0.99)


def test_path_with_spaces_and_non_ascii(tmp_path, speech):
    """A path with spaces and non-ASCII characters reads like any other."""
    folder = tmp_path / "réunion du lundi"
    folder.mkdir()
    path = folder / "voix enregistrée ünïcode.flac"
    sf.write(path, speech, TARGET_RATE_HZ)
    out = read_audio(path)
    assert len(out) == len(speech)
    assert correlation(out, speech) > 0.999
    with FileSource(path) as src:
        assert "voix enregistrée" in src.description


def test_stereo_voice_on_one_channel_keeps_its_level(tmp_path, speech):
    """Voice on the left channel only (right: -70 dB noise) is not halved by the downmix."""
    rate = 48000
    left = at_rate(speech, rate)
    right = (np.random.default_rng(0).standard_normal(len(left)) * 10 ** (-70 / 20)).astype(np.float32)
    path = tmp_path / "left_only.wav"
    sf.write(path, np.stack([left, right], axis=1), rate, subtype="PCM_16")
    with FileSource(path) as src:
        assert src.channels == 2
        out = collect(list(src.frames()), 8000)
    assert correlation(out, speech) > 0.99
    level = np.sqrt(np.mean(out**2)) / np.sqrt(np.mean(speech**2))
    assert 0.9 < level < 1.1, f"voice level scaled by {level:.2f}"


def test_voice_on_third_of_four_channels(tmp_path, speech):
    """A 4-channel file with the voice on channel 3 only comes out at full level."""
    x = np.zeros((len(speech), 4), dtype=np.float32)
    x[:, 2] = speech
    path = tmp_path / "quad.wav"
    sf.write(path, x, TARGET_RATE_HZ, subtype="FLOAT")
    out = read_audio(path)
    np.testing.assert_allclose(out, speech, atol=1e-6)


def test_identical_channels_and_two_voices_average():
    """Equal channels pass unchanged; two comparable voices are averaged."""
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(4000) * 0.1).astype(np.float32)
    b = (rng.standard_normal(4000) * 0.08).astype(np.float32)
    np.testing.assert_allclose(to_mono(np.stack([a, a], axis=1)), a, atol=1e-7)
    np.testing.assert_allclose(to_mono(np.stack([a, b], axis=1)), (a + b) / 2, atol=1e-7)
    np.testing.assert_allclose(to_mono(np.stack([a, a * 1e-3], axis=1)), a, atol=1e-7)


def test_downmixer_ramps_when_a_channel_goes_dead():
    """When a fading channel drops out of the mix, the weights ramp over a block instead of stepping."""
    rate, n_blocks, block = 16000, 10, 1600
    left = np.ones(n_blocks * block, dtype=np.float32)
    right = np.linspace(0.2, 0.05, n_blocks * block, dtype=np.float32)  # crosses -20 dB (0.1) smoothly
    x = np.stack([left, right], axis=1)
    mix = Downmixer(2, rate, release_s=0.01)
    out = np.concatenate([mix(x[i : i + block]) for i in range(0, len(x), block)])
    assert out[0] == pytest.approx(0.6)  # both live: plain average
    np.testing.assert_allclose(out[-block:], 1.0)  # right now dead: left alone, full level
    # Dropping the channel changes the output by ~0.45; ramped over 1600 samples, no step remains.
    assert np.max(np.abs(np.diff(out))) < 0.01


def test_resampler_is_anti_aliased():
    """A 12 kHz tone at 48 kHz (above the 8 kHz output Nyquist) is removed, not folded to 4 kHz."""
    rate = 48000
    t = np.arange(rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)
    rs = StreamResampler(rate)
    out = np.concatenate([rs.process(tone[i : i + 1440]) for i in range(0, rate, 1440)] + [rs.flush()])
    assert len(out) == TARGET_RATE_HZ
    assert np.sqrt(np.mean(out[1000:-1000] ** 2)) < 1e-3 * np.sqrt(np.mean(tone**2))


def test_read_audio_max_s(tmp_path, speech):
    """read_audio stops after max_s seconds of 16 kHz output."""
    path = tmp_path / "44k.wav"
    sf.write(path, at_rate(speech, 44100), 44100)
    out = read_audio(path, max_s=1.0)
    assert out.dtype == np.float32 and len(out) == TARGET_RATE_HZ
    assert correlation(out, speech[:TARGET_RATE_HZ]) > 0.99


# -- files: bad inputs ------------------------------------------------------------------------------


def test_bad_inputs_raise_one_line_audio_errors(tmp_path, speech):
    """Missing, directory, empty, header-only, non-audio and too-low-rate files raise one-line AudioErrors."""
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.wav"
    sf.write(header_only, np.zeros(0, np.float32), 16000, subtype="PCM_16")
    text = tmp_path / "notes.wav"
    text.write_text("this is a text file, not audio\n" * 20)
    low = tmp_path / "4k.wav"
    sf.write(low, at_rate(speech, 4000), 4000)
    cases = {
        tmp_path / "missing.wav": "not found",
        tmp_path: "directory",
        empty: "empty",
        header_only: "no audio samples",
        text: "not a readable audio file",
        low: "8000 Hz",
    }
    for path, expected in cases.items():
        with pytest.raises(AudioError, match=expected) as err:
            FileSource(path)
        assert_one_line(err)
        with pytest.raises(AudioError):
            read_audio(path)


def test_unreadable_file(tmp_path, speech, monkeypatch):
    """A file without read permission raises a one-line AudioError."""
    path = tmp_path / "secret.wav"
    sf.write(path, speech, TARGET_RATE_HZ)
    path.chmod(0)
    if os.name != "posix" or os.geteuid() == 0:  # root reads anything: make the access check say no
        monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(AudioError, match="permission") as err:
        FileSource(path)
    assert_one_line(err)


def test_truncated_flac_keeps_readable_part(tmp_path, speech, caplog):
    """A flac cut in half yields the audio before the cut and logs a warning instead of failing."""
    data = CLIP.read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    decodable = 0  # what libsndfile can decode before the cut, found in 100-sample steps
    with sf.SoundFile(path) as f:
        try:
            while len(piece := f.read(100)):
                decodable += len(piece)
        except RuntimeError:
            pass
    with caplog.at_level(logging.WARNING, logger="idme.audio.file"):
        out = read_audio(path)  # 0.5 s read blocks
    assert decodable - 0.5 * TARGET_RATE_HZ / 16 <= len(out) <= decodable
    assert correlation(out, speech[: len(out)]) > 0.999
    assert any("truncated" in r.getMessage() for r in caplog.records)


def test_flac_cut_inside_first_frame_raises(tmp_path):
    """A flac cut before its first decodable frame raises a one-line AudioError."""
    path = tmp_path / "stub.flac"
    path.write_bytes(CLIP.read_bytes()[:2000])
    with pytest.raises(AudioError) as err:
        read_audio(path)
    assert_one_line(err)


def test_truncated_wav_reads_what_is_there(tmp_path, speech):
    """A wav whose data chunk is cut short reads the samples present."""
    path = tmp_path / "full.wav"
    sf.write(path, speech, TARGET_RATE_HZ, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(path.read_bytes()[: 44 + 2 * 20000])
    out = read_audio(cut)
    assert len(out) == 20000
    assert correlation(out, speech[:20000]) > 0.999


def test_three_hour_file_streams_in_bounded_memory(tmp_path):
    """A 3-hour 8 kHz wav (~170 MB) streams to the end without its size showing up in memory."""
    rate, hours = 8000, 3
    path = tmp_path / "three_hours.wav"
    chunk = np.zeros(rate * 60, dtype=np.int16)
    with sf.SoundFile(path, "w", samplerate=rate, channels=1, subtype="PCM_16") as f:
        for _ in range(hours * 60):
            f.write(chunk)
    assert path.stat().st_size > 170e6
    proc = psutil.Process()
    before = proc.memory_info().rss
    peak = before
    n = 0
    with FileSource(path) as src:
        assert src.duration_s == pytest.approx(hours * 3600)
        for i, frame in enumerate(src.frames()):
            n += len(frame.samples)
            if i % 500 == 0:
                peak = max(peak, proc.memory_info().rss)
    assert n == hours * 3600 * TARGET_RATE_HZ
    # The whole file at 16 kHz float32 would be 691 MB; streaming needs a few MB.
    assert peak - before < 50e6, f"RSS grew by {(peak - before) / 1e6:.0f} MB"


# -- real-time file playback -------------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only advances when slept on (optionally oversleeping each time)."""

    def __init__(self, oversleep_s: float = 0.0) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self.oversleep_s = oversleep_s

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds + self.oversleep_s


@pytest.mark.parametrize("speed", [1.0, 2.0])
def test_realtime_source_paces_by_sample_count(speech, speed):
    """Frames are released at t0 + end_s / speed, arrival times rise, and total sleep equals the duration."""
    clock = FakeClock()
    with RealtimeFileSource(CLIP, speed=speed, clock=clock, sleep=clock.sleep) as src:
        frames = list(src.frames(block_s=0.03))
    out = collect(frames, 480)
    np.testing.assert_allclose(out, speech, atol=1e-6)
    arrivals = np.array([f.arrived_at for f in frames])
    assert np.all(np.diff(arrivals) > 0)
    deadlines = 1000.0 + np.array([f.end_s for f in frames]) / speed
    np.testing.assert_allclose(arrivals, deadlines, atol=1e-9)
    assert clock.slept == pytest.approx(len(speech) / TARGET_RATE_HZ / speed, abs=1e-6)


def test_realtime_source_does_not_accumulate_drift():
    """Oversleeping 5 ms on every block never makes a frame later than 5 ms behind its deadline."""
    clock = FakeClock(oversleep_s=0.005)
    with RealtimeFileSource(CLIP, clock=clock, sleep=clock.sleep) as src:
        frames = list(src.frames(block_s=0.02))
    lateness = np.array([f.arrived_at - (1000.0 + f.end_s) for f in frames])
    assert lateness.max() <= 0.005 + 1e-9
    assert clock.now - 1000.0 == pytest.approx(len(frames) * 0.02, abs=0.03)


def test_realtime_source_stop_ends_iteration():
    """stop() during real-time playback ends the iteration before the file's end."""
    clock = FakeClock()
    src = RealtimeFileSource(CLIP, clock=clock, sleep=clock.sleep)
    got = []
    for frame in src.frames(block_s=0.03):
        got.append(frame)
        if len(got) == 10:
            src.stop()
    src.close()
    assert 10 <= len(got) <= 12


# -- microphone with a fake stream ---------------------------------------------------------------


class FakeStream:
    """Stands in for sounddevice.InputStream: start() delivers the given blocks through the callback."""

    def __init__(self, blocks, *, samplerate, blocksize, device, channels, dtype, callback,
                 status=None, die_after=None, raise_on_active=False, threaded=False):
        assert dtype == "float32"
        self.blocks, self.callback = blocks, callback
        self.samplerate, self.blocksize, self.channels = samplerate, blocksize, channels
        self.status = status or (lambda i: None)
        self.die_after, self.raise_on_active, self.threaded = die_after, raise_on_active, threaded
        self._active = False
        self.stopped = self.closed = False
        self._thread = None

    @property
    def active(self) -> bool:
        if self.raise_on_active and not self.stopped:
            raise RuntimeError("Unanticipated host error [PaErrorCode -9999]")
        return self._active

    def _deliver(self) -> None:
        for i, block in enumerate(self.blocks):
            if self.stopped or (self.die_after is not None and i >= self.die_after):
                break
            self.callback(block, len(block), None, self.status(i))
        if self.die_after is not None:
            self._active = False

    def start(self) -> None:
        self._active = True
        if self.threaded:
            self._thread = threading.Thread(target=self._deliver, daemon=True)
            self._thread.start()
        else:
            self._deliver()

    def stop(self) -> None:
        self.stopped = True
        self._active = False

    def close(self) -> None:
        self.closed = True


def blocks_of(x: np.ndarray, n: int) -> list[np.ndarray]:
    return [x[i : i + n].reshape(-1, 1) for i in range(0, len(x), n)]


def test_microphone_resamples_48k_to_16k(speech):
    """A 48 kHz stream comes out as contiguous 16 kHz frames matching the speech, stamped on arrival."""
    x48 = at_rate(speech, 48000)
    factory = partial(FakeStream, blocks_of(x48, 1440))
    src = MicrophoneSource(samplerate=48000, block_s=0.03, queue_blocks=1000, stream_factory=factory)
    assert src.native_rate == 48000 and src.sample_rate == TARGET_RATE_HZ
    frames = []
    for frame in src.frames():
        frames.append(frame)
        src.stop()  # every block is already queued: stop must drain them all, then flush
    out = collect(frames, 480)
    assert len(out) == len(speech)
    assert correlation(out, speech) > 0.99
    arrivals = [f.arrived_at for f in frames]
    assert all(a is not None for a in arrivals) and arrivals == sorted(arrivals)
    assert src.dropped_blocks == 0


def test_microphone_overflow_drops_oldest_and_keeps_timeline():
    """With a full queue the oldest blocks are dropped and counted; silence keeps start_sample on time."""
    blocks = [np.full((480, 1), i + 1, dtype=np.float32) for i in range(10)]
    status = lambda i: "input overflow" if i == 0 else None  # noqa: E731 - a truthy CallbackFlags stand-in
    factory = partial(FakeStream, blocks, status=status)
    src = MicrophoneSource(samplerate=16000, block_s=0.03, queue_blocks=4, stream_factory=factory)
    frames = []
    for frame in src.frames():
        frames.append(frame)
        src.stop()
    assert src.dropped_blocks == 6 and src.overflows == 1
    out = collect(frames, 480)
    assert len(out) == 10 * 480
    np.testing.assert_array_equal(out[: 6 * 480], 0.0)  # the six oldest blocks, replaced by silence
    np.testing.assert_array_equal(out[6 * 480 :], np.repeat([7.0, 8.0, 9.0, 10.0], 480))


def test_microphone_stream_dying_raises_device_error(speech):
    """A stream that goes inactive mid-session raises DeviceError after the audio it delivered."""
    factory = partial(FakeStream, blocks_of(speech, 480), die_after=5)
    src = MicrophoneSource(samplerate=16000, stream_factory=factory)
    got = []
    with pytest.raises(DeviceError, match="stopped unexpectedly") as err:
        for frame in src.frames():
            got.append(frame)
    assert_one_line(err)
    assert len(got) == 5


def test_microphone_stream_error_raises_device_error(speech):
    """A stream whose status query raises (device vanished) ends with a one-line DeviceError."""
    factory = partial(FakeStream, blocks_of(speech, 480)[:3], raise_on_active=True)
    src = MicrophoneSource(samplerate=16000, stream_factory=factory)
    with pytest.raises(DeviceError, match="host error") as err:
        list(src.frames())
    assert_one_line(err)


def test_microphone_stall_raises_device_error():
    """A stream that stays 'active' but delivers nothing raises DeviceError after the stall timeout."""
    src = MicrophoneSource(samplerate=16000, stream_factory=partial(FakeStream, []), stall_timeout_s=0.2)
    with pytest.raises(DeviceError, match="no audio"):
        list(src.frames())


def test_microphone_factory_failure_raises_device_error():
    """A stream that cannot be opened raises a one-line DeviceError."""

    def broken(**kw):
        raise RuntimeError("Invalid sample rate [PaErrorCode -9997]\nmore detail")

    src = MicrophoneSource(samplerate=44100, stream_factory=broken)
    with pytest.raises(DeviceError, match="cannot open input device") as err:
        list(src.frames())
    assert_one_line(err)


def test_microphone_stop_from_another_thread(speech):
    """stop() from another thread (Ctrl+C) ends a live iteration and closes the stream."""
    endless = blocks_of(np.tile(speech, 50), 480)
    streams = []

    def factory(**kw):
        streams.append(FakeStream(endless, threaded=True, **kw))
        return streams[-1]

    src = MicrophoneSource(samplerate=16000, stream_factory=factory)
    first = threading.Event()
    got = []

    def consume():
        for frame in src.frames():
            got.append(frame)
            first.set()

    t = threading.Thread(target=consume)
    t.start()
    assert first.wait(10)
    src.stop()
    t.join(10)
    assert not t.is_alive()
    assert streams[0].stopped and streams[0].closed
    collect(got, 480)


def test_importing_audio_does_not_import_sounddevice():
    """Importing idme.audio and using a fake-stream microphone never imports sounddevice."""
    code = (
        "import sys, idme.audio as a\n"
        "a.MicrophoneSource(samplerate=48000, stream_factory=lambda **kw: None)\n"
        "print('sounddevice' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -- device listing and selection (a fake sounddevice module) -------------------------------------


def fake_sounddevice(devices, default_input=0, rejected_rates=()):
    """A stand-in for the sounddevice module with the given devices."""

    def check_input_settings(device, channels, dtype, samplerate):
        if samplerate in rejected_rates:
            raise ValueError("Invalid sample rate")

    return types.SimpleNamespace(
        query_devices=lambda: devices,
        default=types.SimpleNamespace(device=[default_input, -1]),
        check_input_settings=check_input_settings,
        InputStream=partial(FakeStream, []),
    )


DEVICES = [
    {"name": "HDMI output", "max_input_channels": 0, "default_samplerate": 48000.0},
    {"name": "Built-in Microphone", "max_input_channels": 1, "default_samplerate": 44100.0},
    {"name": "USB Audio Interface", "max_input_channels": 4, "default_samplerate": 48000.0},
]


def test_list_devices_without_portaudio(monkeypatch):
    """Without PortAudio, list_devices raises a DeviceError that says how to install it."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    with pytest.raises(DeviceError, match="install PortAudio") as err:
        list_devices()
    assert_one_line(err)
    with pytest.raises(DeviceError):
        MicrophoneSource()


def test_list_devices_and_device_selection(monkeypatch):
    """Input devices are listed with the default marked, and chosen by default, index or name."""
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(DEVICES, default_input=1))
    listed = list_devices()
    assert [(d.index, d.name, d.is_default) for d in listed] == [
        (1, "Built-in Microphone", True), (2, "USB Audio Interface", False)]
    assert listed[1].to_dict()["default_samplerate"] == 48000
    mic = MicrophoneSource()
    assert mic.native_rate == 44100 and mic.channels == 1 and "Built-in" in mic.description
    usb = MicrophoneSource(device="usb")
    assert usb.native_rate == 48000 and usb.channels == 2
    assert MicrophoneSource(device="2", samplerate=16000).native_rate == 16000


def test_device_errors(monkeypatch):
    """No inputs, unknown index or name, and a rejected rate raise one-line DeviceErrors."""
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(DEVICES, rejected_rates=(12345,)))
    for kwargs, expected in [
        ({"device": 7}, "no input device with index 7"),
        ({"device": 0}, "no input device with index 0"),  # an output-only device
        ({"device": "Bluetooth"}, "no input device named"),
        ({"device": "i"}, "ambiguous"),
        ({"device": 2, "samplerate": 12345}, "rejects 12345 Hz"),
    ]:
        with pytest.raises(DeviceError, match=expected) as err:
            MicrophoneSource(**kwargs)
        assert_one_line(err)
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(DEVICES[:1]))
    with pytest.raises(DeviceError, match="no audio input devices"):
        MicrophoneSource()


# -- factory ----------------------------------------------------------------------------------------


def test_open_source_picks_the_right_source(tmp_path):
    """open_source returns a file, real-time file or microphone source, and rejects contradictory asks."""
    with open_source(file=CLIP) as src:
        assert isinstance(src, FileSource) and isinstance(src, AudioSource)
        assert src.duration_s == pytest.approx(3.17)
    clock = FakeClock()
    with open_source(file=CLIP, realtime=True, clock=clock, sleep=clock.sleep) as src:
        assert isinstance(src, RealtimeFileSource)
    mic = open_source(device="fake", samplerate=48000, stream_factory=partial(FakeStream, []))
    assert isinstance(mic, MicrophoneSource) and isinstance(mic, AudioSource)
    with pytest.raises(AudioError):
        open_source(file=CLIP, device=1)
    with pytest.raises(AudioError):
        open_source(realtime=True)
