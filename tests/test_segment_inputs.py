"""Bad input and limits for the pyannote segmenter: too short, silence, non-speech, one speaker, five
speakers, 8 kHz; through ``api.Idme.label_file``, the live ``PyannoteLabeller`` and ``idme listen``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from idme.api import Idme
from idme.audio.frames import AudioFrame
from idme.embed.campplus import CampPlusEmbedder
from idme.errors import AudioError
from idme.identity.thresholds import load
from idme.segment.live import LiveOptions, PyannoteLabeller
from idme.settings import resolve

DATA = Path(__file__).parent / "data"
RATE = 16000
#: Five different LibriSpeech speakers (2414, 3005, 367, 533, 1998), already in tests/data.
FIVE = ["ls_2414_128291-0003.flac", "ls_3005_163389-0007.flac", "ls_367_130732-0006.flac",
        "ls_533_1066-0000.flac", "audio_src_1998.flac"]


def _read(name: str) -> np.ndarray:
    x, rate = sf.read(DATA / name, dtype="float32")
    assert rate == RATE
    return x


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The bad inputs written as files: short (0.3 s, 2 s), silence, noise, tone, five speakers, 8 kHz."""
    d = tmp_path_factory.mktemp("inputs")
    speech = _read("ls_2414_128291-0003.flac")
    t = np.arange(6 * RATE) / RATE
    gap = np.zeros(RATE // 2, np.float32)
    made = {
        "short03": (speech[RATE:RATE + int(0.3 * RATE)], RATE),
        "short2": (speech[:2 * RATE], RATE),
        "silence": (np.zeros(5 * RATE, np.float32), RATE),
        "noise": ((0.1 * np.random.default_rng(0).standard_normal(6 * RATE)).astype(np.float32), RATE),
        "tone": ((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE),
        "five": (np.concatenate([p for n in FIVE for p in (_read(n), gap)]), RATE),
        "8k": (resample_poly(speech, 1, 2).astype(np.float32), 8000),
    }
    out = {}
    for k, (x, rate) in made.items():
        out[k] = d / f"{k}.flac"
        sf.write(out[k], x, rate)
    return out


@pytest.fixture(scope="module")
def idme(tmp_path_factory) -> Idme:
    return Idme(resolve(tmp_path_factory.mktemp("home")))


def _speakers(events) -> set[str]:
    return {e["speaker"] for e in events}


def test_file_mode_handles_bad_input(idme, clips) -> None:
    """label_file gives no labels for 0.3 s, silence, noise and a tone, one speaker for 2 s and for 8 kHz
    speech, and at least four speakers for five people one after another."""
    for k in ("short03", "silence", "noise", "tone"):
        assert idme.label_file(clips[k], segmenter="pyannote") == [], k
    for k in ("short2", "8k"):
        assert len(_speakers(idme.label_file(clips[k], segmenter="pyannote"))) == 1, k
    assert len(_speakers(idme.label_file(clips["five"], segmenter="pyannote"))) >= 4


def _live(samples: np.ndarray, rate: int = RATE) -> list:
    lab = PyannoteLabeller(CampPlusEmbedder(), load("campplus"), [], LiveOptions(latency_s=2.0), live=True)
    out = []
    for i in range(0, len(samples), rate // 10):
        out += lab.push(AudioFrame(samples[i:i + rate // 10], rate, i, arrived_at=0.0))
    out += lab.finish()
    return [e for e in {e.id: e for e in out}.values() if e.final]


def test_live_handles_bad_input(clips) -> None:
    """The live labeller gives nothing for 0.3 s, silence and a pure tone, at least four speakers for five
    people, and a one-line AudioError (not a crash deep inside) for 8 kHz frames."""
    for k in ("short03", "silence", "tone"):
        assert _live(sf.read(clips[k], dtype="float32")[0]) == [], k
    assert len({e.speaker for e in _live(sf.read(clips["five"], dtype="float32")[0])}) >= 4
    with pytest.raises(AudioError, match="16 kHz"):
        _live(sf.read(clips["8k"], dtype="float32")[0], 8000)


def test_listen_reports_no_speech_in_one_line(clips, tmp_path) -> None:
    """`idme listen --file silence --segmenter pyannote --asr none` exits 0, prints no labels and says why
    on stderr in one line, without a traceback."""
    env = dict(os.environ, IDME_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "idme", "listen", "--file", str(clips["silence"]), "--segmenter",
                        "pyannote", "--asr", "none", "--json", "--no-save"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "no speech" in r.stderr
    assert not [json.loads(line) for line in r.stdout.splitlines() if line.strip() and json.loads(line).get("final")]


def test_steady_tones_are_not_speech_like_and_speech_is() -> None:
    """The spectral-flux check that keeps tones from becoming speakers scores a tone, a sawtooth and a held
    chord below MIN_SPECTRAL_FLUX and every LibriSpeech clip of the five speakers above it."""
    from idme.segment.live import MIN_SPECTRAL_FLUX, spectral_flux

    t = np.arange(3 * RATE) / RATE
    tones = [np.sin(2 * np.pi * 440 * t), sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 20)),
             sum(np.sin(2 * np.pi * f * t) for f in (262, 330, 392))]
    assert all(spectral_flux(0.1 * x) < MIN_SPECTRAL_FLUX for x in tones)
    assert all(spectral_flux(_read(n)) > 5 * MIN_SPECTRAL_FLUX for n in FIVE)
