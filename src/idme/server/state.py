"""What the server's routes share: the state object on ``app.state``, API errors and their Problem bodies."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from ..api import Idme
from ..errors import AudioError, ConfigError, EnrollmentError, ExportError, IdmeError, ProfileError, SessionError
from .challenges import ChallengeBook
from .options import ServerOptions
from .security import RateLimit, TicketBook

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An HTTP error with a Problem body: ``status``, machine-readable ``code``, one-line ``detail``."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


@dataclass
class ServerState:
    """What every request shares: the facade (one encoder for all), the token, tickets and counters."""

    idme: Idme
    options: ServerOptions
    token: str
    token_created: bool
    hosts: frozenset[str]
    tickets: TicketBook
    verify_limit: RateLimit
    #: What ``POST /v1/identify`` searches: an ``identity.gallery`` backend (``idme serve --gallery``), or
    #: None for the home's own profiles.
    gallery: Any = None
    streams: int = 0
    #: Liveness challenges issued by ``POST /v1/challenges`` (one use each, 60 s).
    challenges: ChallengeBook = field(default_factory=ChallengeBook)
    #: Held while an upload is decoded and embedded (``ServerOptions.max_parallel_embeds`` at once).
    compute: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(2))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _warm: threading.Lock = field(default_factory=threading.Lock)

    def mirror(self, *names: str) -> None:
        """Keeps the gallery (``idme serve --gallery``) in step with the home for profiles ``names`` that a
        request just enrolled, grew, renamed or deleted: each is upserted from the store (with its band and
        the encoder) or, gone from the store, removed, so a deleted person is not identified any more. A
        linked gallery of the home (``identity.links``) that did not get the change is logged as a warning."""
        for f in self.idme.sync_failures:  # the home's linked galleries, mirrored by the store itself
            log.warning("%s", f.message())
        if self.gallery is None:
            return
        from ..identity.links import sync

        done = sync(self.gallery, self.idme.profiles, names)
        for n, why in done.failed.items():
            log.warning("the served gallery %s was not updated for %s: %s", self.gallery.table, n, why)

    def ready_idme(self) -> Idme:
        """The facade with its encoder loaded (once, under a lock: requests arrive on many threads)."""
        with self._warm:
            _ = self.idme.embedder
        return self.idme

    def acquire_stream(self) -> bool:
        with self._lock:
            if self.streams >= self.options.max_streams:
                return False
            self.streams += 1
            return True

    def release_stream(self) -> None:
        with self._lock:
            self.streams -= 1


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "detail": detail}, status_code=status, headers=headers)


def status_of(exc: IdmeError) -> tuple[int, str]:
    """HTTP status and code for a library error (the messages are already one line)."""
    msg = str(exc)
    if isinstance(exc, (ProfileError, SessionError)):
        if msg.startswith(("no profile", "no session", "no sessions", "no speaker", "no saved")):
            return 404, "not_found"
        if msg.startswith("invalid profile name") or "reserved" in msg:
            return 400, "bad_name"
        return 409, "conflict"
    if isinstance(exc, EnrollmentError):
        return 422, "rejected"
    if isinstance(exc, AudioError):
        return 415, "bad_audio"
    if isinstance(exc, ExportError):
        return 400, "bad_format"
    if isinstance(exc, ConfigError):
        return 503, "not_ready"
    return 400, "bad_request"
