"""Speech-to-text for finished segments, behind one Transcriber protocol (Moonshine, Vosk, Whisper).

Engines import their libraries lazily, so importing this package loads no model and no ASR library.
"""

from .base import EMPTY_TRANSCRIPT, SAMPLE_RATE_HZ, Transcriber, Transcript, Word
from .moonshine import MoonshineTranscriber
from .select import ASR_CHOICES, FoundModel, find_models, make_transcriber
from .vosk import VoskTranscriber
from .whisper import WhisperTranscriber
from .worker import TranscriptionWorker, WorkerStats

__all__ = [
    "ASR_CHOICES", "EMPTY_TRANSCRIPT", "SAMPLE_RATE_HZ", "FoundModel", "MoonshineTranscriber", "Transcriber",
    "Transcript", "TranscriptionWorker", "VoskTranscriber", "WhisperTranscriber", "Word", "WorkerStats",
    "find_models", "make_transcriber",
]
