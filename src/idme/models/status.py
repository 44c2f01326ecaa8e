"""Which models are installed, where, and the one-line message when one is missing (``idme models``)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModelMissingError
from ..paths import models_dir
from .registry import bundled_dir
from .registry import SPECS, ModelSpec, get_spec

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


def models_root(dest_root: str | os.PathLike[str] | None) -> Path:
    """``dest_root`` (a ``--dest``), else :func:`idme.paths.models_dir`."""
    return Path(dest_root).expanduser() if dest_root is not None else models_dir()


def _package_model_dir(spec: ModelSpec) -> Path | None:
    """Model directory provided by an installed Python package, or None if not importable."""
    if spec.package is None:
        return None
    try:
        found = importlib.util.find_spec(spec.package)
    except (ImportError, ValueError):
        return None
    if found is None:
        return None
    if spec.package_subdir is not None:  # located, never imported
        if not found.submodule_search_locations:
            return None
        return Path(next(iter(found.submodule_search_locations))) / spec.package_subdir
    module = importlib.import_module(spec.package)
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else Path(module.__file__).parent / "model"


def model_path(spec: ModelSpec | str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``spec`` is (or would be) installed: ``<root>/<install_subdir>``.

    For a model that comes as a Python package, the package's directory when it is importable. For a
    model idme ships (CAM++), the shipped copy, unless ``<root>/<install_subdir>`` exists: a copy
    installed there (``download_models.py --only campplus --force``, or ``--from``) overrides it.
    """
    spec = get_spec(spec) if isinstance(spec, str) else spec
    if spec.method == "package":
        packaged = _package_model_dir(spec)
        if packaged is not None and spec.check(packaged):
            return packaged
    local = models_root(root) / spec.install_subdir
    if spec.bundled is not None and not local.exists():
        # Installs are atomic, so an existing directory is a whole, deliberate override: it is used as is
        # (and named by the error if it is broken) rather than silently skipped.
        shipped = bundled_dir(spec)
        if shipped is not None:
            return shipped
    return local


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
    if spec.bundled is not None:
        extra = (f" (idme ships it in idme/{spec.bundled}: reinstall idme, or in a checkout restore it with "
                 f"git checkout -- src/idme/{spec.bundled})")
    return (f"{spec.title} ('{spec.key}') is not installed: looked in {where} for {spec.layout}; "
            f"install it with `{spec.install_command()}`{extra}")


def require(spec: ModelSpec | str, root: str | os.PathLike[str] | None = None) -> Path:
    """The installed model's directory, or ModelMissingError naming the path and the fix."""
    spec = get_spec(spec) if isinstance(spec, str) else spec
    ok, path, _ = installed(spec, root)
    if not ok:
        raise ModelMissingError(missing_message(spec, path))
    return path
