"""File-system helpers shared by the stores and exporters."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
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


_HELD: dict[str, list] = {}  # lock path -> [threading.RLock, depth, fd]: one kernel lock per path per process
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def process_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Holds an exclusive advisory lock on ``path`` for the ``with`` block. ``path`` is best a directory
    (the home): locking it leaves no file behind; a file path is created 0600 if missing.

    Serialises one-time work that two idme processes could otherwise do at once on the same home (the
    plaintext-to-encrypted migration, a key rotation): the second waits, then finds the work done. The lock
    is the kernel's (``flock``; ``msvcrt.locking`` on Windows), so a process killed with -9 releases it.
    Re-entrant within a thread, and threads of one process queue on it too: ``flock`` alone would let a
    second descriptor of the same process deadlock against the first.
    """
    key = os.path.abspath(path)
    with _HELD_GUARD:
        entry = _HELD.setdefault(key, [threading.RLock(), 0, -1])
    entry[0].acquire()
    try:
        if entry[1] == 0:
            if os.path.isdir(key) and os.name == "nt":  # pragma: no cover - Windows cannot open a directory
                key = os.path.join(key, ".idme.lock")
            if os.path.isdir(key):
                fd = os.open(key, os.O_RDONLY)  # flock works on a directory's descriptor (Linux, macOS, BSD)
            else:
                fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                _lock_fd(fd)
            except BaseException:
                os.close(fd)
                raise
            entry[2] = fd
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                fd, entry[2] = entry[2], -1
                try:
                    _unlock_fd(fd)
                finally:
                    os.close(fd)
    finally:
        entry[0].release()


def _lock_fd(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows only
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after ~10 s: keep waiting, as flock does
                continue
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)


def _unlock_fd(fd: int) -> None:
    if os.name == "nt":  # pragma: no cover - Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


#: A home's "in use" lock file: every process recording a session (``SessionStore.create``) or serving the
#: home (``idme serve``) holds a shared lock on it; a key rotation needs it exclusively (issue 14), since a
#: process that opened sessions.db under the old key cannot write after the database is rekeyed.
IN_USE_FILE = ".in-use"


class HomeInUse(Exception):
    """Another process holds the home's in-use lock (see :func:`home_exclusive`)."""


class SharedHold:
    """A shared ``flock`` on ``<home>/.in-use``, held until :meth:`release` (idempotent). On Windows
    (no shared ``msvcrt`` locks) it holds nothing."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self._fd = -1
        if os.name == "nt":  # pragma: no cover - Windows only
            return
        import fcntl

        # Under the home's process lock, so that :func:`home_exclusive` (which runs under it too) may take a
        # missing file for "nobody holds it" without creating one.
        with process_lock(home):
            fd = os.open(os.path.join(home, IN_USE_FILE), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # closing the descriptor drops the lock


@contextlib.contextmanager
def home_exclusive(home: str | os.PathLike[str]) -> Iterator[None]:
    """Holds ``<home>/.in-use`` exclusively for the block, or raises :class:`HomeInUse` at once when a
    process (this one included) holds it shared. Never waits: the caller refuses, saying why. Call it
    under ``process_lock(home)``; it creates no file (a home nobody recorded in has none)."""
    if os.name == "nt":  # pragma: no cover - Windows only
        yield
        return
    import fcntl

    try:
        fd = os.open(os.path.join(home, IN_USE_FILE), os.O_RDWR)
    except FileNotFoundError:  # never held: a holder makes it under process_lock, which the caller holds
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise HomeInUse(str(home)) from None
        yield
    finally:
        os.close(fd)
