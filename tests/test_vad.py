"""webrtcvad chunking: an open chunk continues through a short loud unvoiced tail (a word-final "s")."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from idme.audio.sources import read_audio
from idme.vad import VadOptions, chunk_audio

from conftest import DATA

RATE = 16000
OFF = replace(VadOptions(), continue_margin_db=None)


def _hiss(seconds: float, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """6-8 kHz noise: fricative-like energy that webrtcvad (aggressiveness 3) calls unvoiced."""
    sos = butter(6, [6000, 7900], btype="band", fs=RATE, output="sos")
    n = sosfilt(sos, rng.normal(0.0, 1.0, int(seconds * RATE)))
    return (n / np.sqrt(np.mean(n ** 2)) * 10 ** (level_dbfs / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def speech_then() -> tuple[np.ndarray, float]:
    """Real speech (LibriSpeech 1998) cut at its last voiced frame, and that time in seconds."""
    x = read_audio(DATA / "audio_src_1998.flac")
    (chunk,) = chunk_audio(x, OFF)
    end = chunk.end_s - OFF.post_roll_ms / 1000
    return x[: int(end * RATE)], end


def _with_tail(speech: np.ndarray, tail: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    y = np.concatenate([speech, tail, np.zeros(RATE, np.float32)])
    return y + rng.normal(0.0, 10 ** (-60 / 20), len(y)).astype(np.float32)  # a faint noise floor


@pytest.mark.parametrize("tail_s", [0.12])
def test_loud_unvoiced_tail_continues_the_chunk(speech_then, tail_s: float) -> None:
    """A 120 ms hiss 28 dB above the clip's noise floor right after the speech keeps the chunk open: its
    post-roll follows the hiss, not the last voiced frame as without continuation."""
    speech, end = speech_then
    y = _with_tail(speech, _hiss(tail_s, -20.0, np.random.default_rng(0)))
    on, off = chunk_audio(y), chunk_audio(y, OFF)
    post_s, frame_s = VadOptions().post_roll_ms / 1000, VadOptions().frame_ms / 1000
    assert len(on) == len(off) == 1
    assert on[0].end_s >= end + tail_s + post_s - frame_s
    assert off[0].end_s <= end + post_s + frame_s


def test_long_loud_noise_is_not_followed(speech_then) -> None:
    """A 2 s hiss after the speech extends the chunk by at most continue_max_ms plus the post-roll."""
    speech, end = speech_then
    y = _with_tail(speech, _hiss(2.0, -20.0, np.random.default_rng(0)))
    opt = VadOptions()
    chunks = chunk_audio(y)
    assert len(chunks) == 1
    assert chunks[0].end_s <= end + (opt.continue_max_ms + opt.post_roll_ms + opt.frame_ms) / 1000
