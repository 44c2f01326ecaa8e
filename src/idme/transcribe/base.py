"""What every speech recogniser in idme looks like: the Transcriber protocol and its result types.

idme labels a segment first and transcribes it later (see ``worker.py``), so a transcriber only ever sees
one finished speech segment at a time: 16 kHz mono float32 that the source already resampled once. It
returns words with times that are absolute in the session, so the caller can attach them to the segment's
label without any arithmetic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..audio.frames import TARGET_RATE_HZ

#: Rate every transcriber is fed, Hz. idme resamples once at the source (STYLE.md); nothing here resamples.
SAMPLE_RATE_HZ = TARGET_RATE_HZ

#: Shorter input is returned as an empty Transcript without calling the model: 0.1 s is under one
#: syllable, and Whisper in particular tends to invent text ("you", "Thank you.") for such scraps.
MIN_INPUT_S = 0.1


@dataclass(frozen=True)
class Word:
    """One recognised word."""

    #: The word as the model spelled it, surrounding whitespace removed.
    word: str
    #: Start time in seconds from the start of the session (offset_s + time inside the segment).
    start: float
    #: End time in seconds from the start of the session; ``end >= start``.
    end: float
    #: Model confidence in [0, 1]: Vosk's word posterior, Whisper's word probability.
    conf: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; times rounded to milliseconds, confidence to three decimals."""
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3),
                "conf": round(self.conf, 3)}


@dataclass(frozen=True)
class Transcript:
    """The text of one speech segment. An empty Transcript (``text == ""``, no words) is a normal result:
    silence, audio shorter than ``MIN_INPUT_S``, or a segment whose recognition failed."""

    #: Full text of the segment, words separated the way the model writes them ("" when nothing was heard).
    text: str = ""
    #: The words in time order, with absolute session times.
    words: tuple[Word, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True when nothing was recognised."""
        return not self.text and not self.words

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"text": str, "words": [Word.to_dict(), ...]}``."""
        return {"text": self.text, "words": [w.to_dict() for w in self.words]}


#: The result for silence, too-short audio and failed segments.
EMPTY_TRANSCRIPT = Transcript()


@runtime_checkable
class Transcriber(Protocol):
    """Turns one speech segment into text with word times.

    Implementations load their model lazily and once, and may offer a ``load()`` method that does it
    eagerly (``TranscriptionWorker`` calls it, when present, as the first thing its thread does).
    A transcriber is used from one thread at a time; it is not required to be re-entrant.
    """

    #: Engine identifier stored with sessions: "vosk" or "whisper".
    name: str
    #: Model id (directory or package name) plus library version, e.g. "tiny.en; faster-whisper 1.2.1; int8".
    version: str
    #: ISO 639-1 code of the text produced ("en", "ko"); "multi" when a multilingual model detects the
    #: language per segment; "und" when the model's language is unknown.
    language: str

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """samples: float32, shape (n,), 16 kHz mono in [-1, 1]; offset_s: session time of samples[0], s.

        Returns the segment's Transcript with word times in session seconds (offset_s + local time).
        Empty or too-short audio returns an empty Transcript; it is not an error.
        """
        ...


def as_mono_float32(samples: np.ndarray) -> np.ndarray:
    """Checks a segment and returns it as contiguous float32 of shape (n,).

    Raises ValueError for anything but a 1-D array (a caller bug: multichannel or framed audio must be
    mixed down and flattened at the source, where the sample rate is also known).
    """
    arr = np.asarray(samples)
    if arr.ndim != 1:
        raise ValueError(f"transcriber input must be mono, shape (n,), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def is_too_short(samples: np.ndarray, min_input_s: float = MIN_INPUT_S) -> bool:
    """True when ``samples`` (16 kHz) are shorter than ``min_input_s`` seconds."""
    return samples.shape[0] < int(round(min_input_s * SAMPLE_RATE_HZ))


def clamp_word(word: str, start: float, end: float, conf: float, duration_s: float,
               offset_s: float, prev_start: float) -> Word:
    """Builds a Word from segment-local times, kept inside [0, duration_s] and in time order.

    Both engines can place a boundary a frame or two past the end of the audio (Whisper's alignment works
    on 20 ms tokens, Vosk on 30 ms subsampled frames); clamping keeps every word inside its segment.
    """
    start = min(max(start, prev_start, 0.0), duration_s)
    end = min(max(end, start), duration_s)
    return Word(word=word, start=offset_s + start, end=offset_s + end, conf=float(min(max(conf, 0.0), 1.0)))
