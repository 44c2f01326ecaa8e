"""Did the answer say the challenge's digits? A recogniser constrained by what it expects (issue 14).

Free transcription alone keeps too few genuine users in: Whisper tiny.en, greedy, with number words read as
digits and one edit of slack, heard 91.7% of 240 genuine FSDD answers (bench/liveness.py, 2026-12-02);
the misses are one speaker's accent, whose "four" it writes "all" and "five" "bye", and repetition loops
("Bye. Bye. Bye. ..."). So the check also scores the expected answer itself: the challenge is forced
through Whisper's decoder (CTranslate2 ``Whisper.align``, which returns each forced token's probability) and
the mean log probability of its digits' tokens is compared with a bar. A recording of other digits makes
the forced challenge improbable (the decoder has to emit digits it does not hear), so the bar keeps wrong answers out.

Decision: content matches when the free transcription is within ``CONTENT_MAX_EDITS`` of the challenge, or
when the forced challenge scores at least ``FORCED_MIN_LOGPROB``. The bar was chosen on FSDD takes 1-2 and
checked on takes 3-4 (bench/liveness.py --takes 3,4; numbers in docs/privacy.md). Challenges of few
distinct digits are never forced (``MIN_DISTINCT_FOR_FORCED``).

The encoder runs once per answer: the free decode and the forced scores share its output. Nothing
downloads: the model is the Whisper directory ``make_transcriber("whisper")`` finds (tiny.en is bundled
with ``idme[whisper]``).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMissingError
from .replay import CONTENT_MAX_EDITS, MIN_DISTINCT_DIGITS, edit_distance, spoken_digits

logger = logging.getLogger(__name__)

#: Mean log probability (natural log) of the forced challenge's digit tokens at or above which the answer says
#: the challenge, whatever the free transcription heard. Chosen on FSDD takes 1-2 (genuine answers' free
#: misses scored -2.33 to -0.52, wrong answers at most -2.56), checked on takes 3-4; see docs/privacy.md.
FORCED_MIN_LOGPROB = -2.0
#: Tokens the free decode may emit: a 32-digit challenge spoken with commas is under 70 tokens; the cap
#: ends Whisper's repetition loops ("Bye. Bye. Bye. ...") early instead of decoding 448 tokens of them.
MAX_TOKENS = 96
#: Whisper's input window: 30 s of 10 ms mel frames.
_WINDOW_FRAMES = 3000


def forced_pieces(digits: str) -> list[tuple[str, bool]]:
    """The challenge as Whisper writes spoken digits, "4, 7, 2.", cut into pieces (text, is_a_digit): a
    leading space on each digit, as Whisper's tokens carry it."""
    out: list[tuple[str, bool]] = []
    for i, c in enumerate(digits):
        out += [(" " + c, True), ("," if i < len(digits) - 1 else ".", False)]
    return out


#: Challenges with fewer distinct digits than this are held to the free transcription only: Whisper's decoder
#: is a language model, and forced into a run or a pattern ("000000", "121212") it follows it with high
#: probability whatever the audio says (measured: "0, 0, 0, 0, 0, 0." scored like a genuine answer on
#: recordings of other digits). A random 6-digit string has 3 or fewer distinct digits 6.8% of the time, so
#: ``replay.new_challenge`` never issues one.
MIN_DISTINCT_FOR_FORCED = MIN_DISTINCT_DIGITS


@dataclass(frozen=True)
class ContentCheck:
    """What the recogniser made of an answer to a digit challenge."""

    #: The challenge's digits.
    expected: str
    #: Free (greedy) transcription of the answer, and the digits read from it.
    heard: str
    heard_digits: str
    #: Levenshtein distance between ``heard_digits`` and ``expected``.
    edits: int
    #: Mean log probability of the challenge's digit tokens forced through the decoder (None: not scored,
    #: because the free transcription matched or the challenge has too few distinct digits).
    forced_logprob: float | None
    #: The decision: the answer says the challenge.
    matched: bool

    def to_dict(self) -> dict:
        return {"expected": self.expected, "heard": self.heard, "heard_digits": self.heard_digits,
                "edits": self.edits, "matched": self.matched,
                "forced_logprob": None if self.forced_logprob is None else round(self.forced_logprob, 4)}


class ChallengeRecogniser:
    """Checks spoken digit answers with a CTranslate2 Whisper model (English; tiny.en is bundled).

    model_path: a CTranslate2 Whisper directory (what ``WhisperTranscriber.model_path`` names).
    max_edits / min_logprob: the content rule (see the module docstring).
    Loads lazily and once; one answer at a time (a lock guards the model)."""

    name = "whisper-forced"

    def __init__(self, model_path: str | Path, *, max_edits: int = CONTENT_MAX_EDITS,
                 min_logprob: float = FORCED_MIN_LOGPROB, cpu_threads: int = 2) -> None:
        self.model_path = Path(model_path)
        self.max_edits = max_edits
        self.min_logprob = min_logprob
        self.cpu_threads = cpu_threads
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    def bundled(cls, **kw) -> "ChallengeRecogniser":
        """The recogniser on the Whisper model idme finds; ModelMissingError (with the fix) when none."""
        from ..transcribe.select import make_transcriber

        asr, _ = make_transcriber("whisper")
        return cls(asr.model_path, **kw)

    def _load(self):
        if self._model is None:
            try:
                from faster_whisper import WhisperModel
                from faster_whisper.tokenizer import Tokenizer
            except ImportError:
                raise ModelMissingError("checking a challenge needs faster-whisper: pip install 'idme[whisper]'") \
                    from None
            try:
                wm = WhisperModel(str(self.model_path), device="cpu", compute_type="int8",
                                  cpu_threads=self.cpu_threads, local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelMissingError(f"cannot load the Whisper model in {self.model_path} ({exc})") from None
            tok = Tokenizer(wm.hf_tokenizer, wm.model.is_multilingual, task="transcribe", language="en")
            self._tok = tok
            self._start = list(tok.sot_sequence) + [tok.no_timestamps]
            self._model = wm
        return self._model

    def check(self, samples: np.ndarray, expected: str) -> ContentCheck:
        """samples: float32 (n,), 16 kHz mono, the answer; expected: the challenge's digits."""
        import ctranslate2

        with self._lock:
            wm = self._load()
            tok = self._tok
            feats = wm.feature_extractor(np.asarray(samples, np.float32).reshape(-1))
            n_frames = min(feats.shape[-1], _WINDOW_FRAMES)
            mel = np.zeros((feats.shape[0], _WINDOW_FRAMES), np.float32)
            mel[:, :n_frames] = feats[:, :n_frames]
            enc = wm.model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=False)
            # Greedy, temperature 0: the same audio gives the same text (as WhisperTranscriber decodes).
            res = wm.model.generate(enc, [self._start], beam_size=1, max_length=MAX_TOKENS)[0]
            heard = tok.decode([t for t in res.sequences_ids[0] if t < tok.eot]).strip()
            digits = spoken_digits(heard)
            edits = edit_distance(digits, expected)
            forced = None
            if edits > self.max_edits and len(set(expected)) >= MIN_DISTINCT_FOR_FORCED:
                pieces = [(tok.encode(text), is_digit) for text, is_digit in forced_pieces(expected)]
                tokens = [t for ids, _ in pieces for t in ids]
                digit_at = np.concatenate([np.full(len(ids), is_digit) for ids, is_digit in pieces])
                probs = np.asarray(wm.model.align(enc, self._start, [tokens], n_frames)[0].text_token_probs)
                # Only the digits' tokens count: commas and the full stop are near-certain whatever was said.
                forced = float(np.mean(np.log(np.maximum(probs[digit_at[:len(probs)]], 1e-12))))
        matched = edits <= self.max_edits or (forced is not None and forced >= self.min_logprob)
        logger.debug("challenge %s: heard %r, %d edit(s), forced %s -> %s", expected, heard, edits, forced, matched)
        return ContentCheck(expected, heard, digits, edits, forced, matched)



#: What a Vosk digits grammar lets the recogniser hear (English models): the words people say for 0-9, and
#: "[unk]" so that other speech is not forced onto digits.
VOSK_DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "[unk]")


class VoskDigitRecogniser:
    """Checks spoken digit answers with an English Vosk model constrained to digit words (a grammar).

    Used when the user chose Vosk (``--asr vosk`` / ``IDME_ASR=vosk``) and the model is English; otherwise
    idme checks challenges with :class:`ChallengeRecogniser` (Whisper), the route whose tolerance was
    measured (no English Vosk model can be had offline here, so this one's acceptance rate is not measured:
    docs/privacy.md). The content rule is the free one: the digits heard within ``max_edits`` of the
    challenge. A model built without a dynamic graph (the large Vosk models) ignores the grammar and
    transcribes freely, which the same rule still judges.

    transcriber: the ``VoskTranscriber`` of the model (loaded lazily, shared with transcription)."""

    name = "vosk-digits"

    def __init__(self, transcriber: Any, *, max_edits: int = CONTENT_MAX_EDITS) -> None:
        language = str(getattr(transcriber, "language", "und") or "und")
        if not language.startswith("en"):
            raise ModelMissingError(f"the Vosk model {transcriber.model_path} is for language {language!r}; digit "
                                    "challenges need an English Vosk model (or Whisper: pip install 'idme[whisper]')")
        self.transcriber = transcriber
        self.max_edits = max_edits
        self._lock = threading.Lock()

    def check(self, samples: np.ndarray, expected: str) -> ContentCheck:
        """samples: float32 (n,), 16 kHz mono, the answer; expected: the challenge's digits."""
        import json

        model = self.transcriber.model
        import vosk

        pcm = (np.clip(np.asarray(samples, np.float32).reshape(-1), -1.0, 1.0) * 32767.0).round().astype("<i2")
        with self._lock:
            rec = vosk.KaldiRecognizer(model, 16000.0, json.dumps(list(VOSK_DIGIT_WORDS)))
            parts = []
            step = 8000  # 0.25 s of samples per call
            for i in range(0, len(pcm), step):
                if rec.AcceptWaveform(pcm[i:i + step].tobytes()):
                    parts.append(json.loads(rec.Result()).get("text", ""))
            parts.append(json.loads(rec.FinalResult()).get("text", ""))
        heard = " ".join(p for p in parts if p).replace("[unk]", "").strip()
        digits = spoken_digits(heard)
        edits = edit_distance(digits, expected)
        matched = edits <= self.max_edits
        logger.debug("challenge %s (vosk grammar): heard %r, %d edit(s) -> %s", expected, heard, edits, matched)
        return ContentCheck(expected, " ".join(heard.split()), digits, edits, None, matched)
