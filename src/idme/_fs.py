"""File-system helpers shared by the stores and exporters."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: bytes | str, mode: int = 0o600, *,
                 keep_mode: bool = False) -> Path:
    """Replaces ``path`` with ``data`` so that a crash leaves either the old file or the new one, whole.

    A temporary file in the target's directory (same file system, so the rename is atomic) is written,
    fsynced, given ``mode`` and renamed over ``path`` with ``os.replace``; then the directory is fsynced so
    the rename itself survives a power cut (best effort: not every platform can fsync a directory).

    data: bytes, or str written as UTF-8. mode: permission bits of the new file (0600 by default: profiles,
    thresholds and transcripts are private). keep_mode: when ``path`` already exists, keep its mode instead.
    Raises OSError (the caller turns it into its own one-line error); the temporary file is removed.
    Returns ``path``.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    parent = path.parent
    # mkstemp creates the file 0600, whatever the umask: nobody else can open it before the chmod below.
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        final_mode = mode
        if keep_mode:
            try:
                final_mode = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                pass
        os.chmod(tmp, final_mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(parent)
    return path


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsyncs a directory, making renames and creations inside it durable; a no-op where unsupported."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
