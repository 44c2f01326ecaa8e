"""PushSource: raw PCM bytes pushed in any chunking, rate and channel count come out as 16 kHz mono frames."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile as sf

from idme.api import Idme
from idme.audio.frames import TARGET_RATE_HZ
from idme.audio.push import PushSource
from idme.audio.resample import SourceConverter
from idme.audio.sources import AudioSource, read_audio
from idme.errors import AudioError
from idme.settings import resolve
from idme.sinks import ListSink

from conftest import EXAMPLES, OWNER_TAKES


def _speech_at(rate: int, channels: int) -> np.ndarray:
    """Real speech (the owner's first take) resampled to ``rate``, on ``channels`` channels: float32 (n, ch)."""
    import soxr

    x = soxr.resample(read_audio(OWNER_TAKES[0]), TARGET_RATE_HZ, rate).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def _collect(src: PushSource) -> np.ndarray:
    frames = list(src.frames())
    for a, b in zip(frames, frames[1:]):
        assert b.start_sample == a.start_sample + len(a.samples)
    assert all(f.sample_rate == TARGET_RATE_HZ for f in frames)
    return np.concatenate([f.samples for f in frames])


def test_push_source_follows_the_audio_source_protocol() -> None:
    """A PushSource is an AudioSource and a live one (interim labels, latency stamps)."""
    src = PushSource(48000, 2, "f32le")
    assert isinstance(src, AudioSource)
    assert src.live is True and src.native_rate == 48000 and src.channels == 2
    assert "48000 Hz, 2 ch, f32le" in src.description


@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1), (8000, 1), (16000, 2)])
def test_s16le_in_odd_chunks_equals_converting_the_whole_signal(rate: int, channels: int) -> None:
    """Bytes cut at arbitrary places (mid-sample, mid-frame) give the same 16 kHz mono audio as converting
    the whole int16 signal at once."""
    x = _speech_at(rate, channels)
    pcm = np.round(x * 32767).astype("<i2")
    data = pcm.tobytes()
    src = PushSource(rate, channels, "pcm_s16le")
    rng = np.random.default_rng(rate + channels)
    pos = 0
    while pos < len(data):
        n = int(rng.integers(1, 4000))
        assert src.push(data[pos:pos + n])
        pos += n
    src.end()
    got = _collect(src)
    conv = SourceConverter(rate, channels, 480)
    ref = np.concatenate([f.samples for f in conv.push(pcm.astype(np.float32) / 32768.0) + conv.flush()])
    assert abs(len(got) - round(len(pcm) * TARGET_RATE_HZ / rate)) <= 1
    assert len(got) == len(ref)
    np.testing.assert_allclose(got, ref, atol=2e-4)
    assert np.abs(got).max() > 0.05  # speech, not silence


def test_f32le_non_finite_samples_are_replaced_and_clipped() -> None:
    """NaN and inf in float input never reach the resampler: the frames stay finite and within [-1, 1]."""
    x = _speech_at(48000, 1)[:, 0].copy()
    x[1000:1010] = np.nan
    x[2000] = np.inf
    x[3000] = 7.0
    src = PushSource(48000, 1, "f32le")
    assert src.push(x.astype("<f4").tobytes())
    src.end()
    got = _collect(src)
    assert np.isfinite(got).all() and np.abs(got).max() <= 1.01


def test_a_full_queue_refuses_without_blocking_or_storing() -> None:
    """Past ``max_queued_s`` of waiting audio ``push`` returns False at once and keeps nothing of that push."""
    src = PushSource(16000, 1, "pcm_s16le", max_queued_s=1.0)
    second = np.zeros(16000, "<i2").tobytes()
    assert src.push(second)
    assert src.queued_s == pytest.approx(1.0)
    assert src.push(b"\x00\x00") is False
    assert src.refused == 1 and src.received == 16000 and src.queued_s == pytest.approx(1.0)
    src.end()
    assert len(_collect(src)) == 16000


@pytest.mark.parametrize("kwargs,needle", [
    ({"sample_rate": 16000, "encoding": "mulaw"}, "unknown encoding"),
    ({"sample_rate": 4000}, "sample_rate"),
    ({"sample_rate": 10**7}, "sample_rate"),
    ({"sample_rate": 16000.5}, "sample_rate"),
    ({"sample_rate": 16000, "channels": 0}, "channels"),
    ({"sample_rate": 16000, "channels": 99}, "channels"),
])
def test_bad_stream_formats_are_one_line_audio_errors(kwargs: dict, needle: str) -> None:
    """An unknown encoding, an impossible rate or channel count is refused with a message naming it."""
    with pytest.raises(AudioError, match=needle):
        PushSource(**kwargs)


def test_push_after_end_is_refused_and_close_drops_the_queue() -> None:
    """After ``end()`` no audio is accepted; ``close()`` drops what waits and ends ``frames()`` at once."""
    src = PushSource(16000)
    src.end()
    with pytest.raises(AudioError, match="ended"):
        src.push(b"\x00\x00")
    other = PushSource(16000)
    other.push(np.ones(8000, "<i2").tobytes())
    other.close()
    assert list(other.frames()) == []


def test_frames_wait_for_audio_pushed_from_another_thread() -> None:
    """The consumer blocks until audio arrives and returns once the producer ends the stream."""
    src = PushSource(22050, 1, "pcm_s16le")
    x = np.round(_speech_at(22050, 1)[:, 0] * 32767).astype("<i2")

    def feed() -> None:
        for i in range(0, len(x), 1024):
            src.push(x[i:i + 1024].tobytes())
        src.end()

    t = threading.Thread(target=feed)
    t.start()
    got = _collect(src)
    t.join()
    assert abs(len(got) - round(len(x) * TARGET_RATE_HZ / 22050)) <= 1


def test_a_live_session_labels_pushed_48k_stereo_audio(tmp_path, campplus) -> None:
    """The example meeting pushed as 48 kHz stereo int16 through a live session has the owner labelled Me."""
    import soxr

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    audio, rate = sf.read(EXAMPLES / "meeting.wav", dtype="float32")
    x48 = soxr.resample(audio[: 20 * rate], rate, 48000).astype(np.float32)
    pcm = np.round(np.repeat(x48[:, None], 2, axis=1) * 32767).astype("<i2").tobytes()
    src = PushSource(48000, 2, "pcm_s16le", max_queued_s=30.0, label="test push")
    sink = ListSink()
    session = idme.open_live(source=src, sinks=[sink], transcribe=False)
    chunk = 48000 * 4 // 10  # 100 ms of 48 kHz stereo int16

    def feed() -> None:
        for i in range(0, len(pcm), chunk):
            while not src.push(pcm[i:i + chunk]):
                threading.Event().wait(0.05)
        src.end()

    t = threading.Thread(target=feed)
    t.start()
    result = session.run()
    t.join()
    finals = [e for e in result.latest.values() if e.final]
    assert result.status == "complete" and result.session_id
    # The reference (examples/reference.rttm) has the owner (1688) at 3.0-7.3 s and 17.5-25.6 s.
    me = [e for e in finals if e.kind == "me"]
    assert me and any(e.start < 5.0 < e.end for e in me)
    assert idme.sessions.get(result.session_id).settings["source"].startswith("test push (48000 Hz, 2 ch")
