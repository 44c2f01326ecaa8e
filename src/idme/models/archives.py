"""Unpacking model archives (zip, tar, wheels) without letting an entry escape the destination."""

from __future__ import annotations

import stat
import tarfile
import zipfile
from pathlib import Path

from .registry import ModelInstallError, ModelSpec

_ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def is_archive(path: Path) -> bool:
    return path.name.lower().endswith(_ARCHIVE_SUFFIXES) or path.suffix.lower() == ".whl"


def _safe_member(name: str) -> bool:
    parts = Path(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ".." not in parts and ":" not in parts[0]


def extract(archive: Path, dest: Path) -> None:
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


def find_root(base: Path, spec: ModelSpec, max_depth: int = 2) -> Path | None:
    """The first directory at or below ``base`` (breadth first) for which ``spec.check`` holds."""
    level = [base]
    for _depth in range(max_depth + 1):
        for candidate in level:
            if spec.check(candidate):
                return candidate
        level = [child for parent in level for child in sorted(parent.iterdir())
                 if child.is_dir() and not child.is_symlink() and child.name != "__MACOSX"]
    return None
