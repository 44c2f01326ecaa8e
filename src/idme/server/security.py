"""What keeps a local server local: the bearer token, single-use WebSocket tickets, Host/Origin checks and
rate limits. Plain objects with no FastAPI in them, so each rule is tested on its own.

Threat model: the server binds 127.0.0.1, but any web page the user opens can make the browser send
requests to it. A bearer token (never a cookie) stops cross-site requests; the Host check stops DNS
rebinding (evil.example resolving to 127.0.0.1); the Origin check stops a foreign page from opening the
WebSocket; the browser's WebSocket cannot set headers, so it gets a ticket: short-lived, single-use, bound
to nothing the URL would leak for long.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError

#: Bytes of randomness in a token (256 bits) and a ticket (128 bits).
TOKEN_BYTES = 32
TICKET_BYTES = 16

#: Names a browser on this machine uses for a loopback server.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def load_or_create_token(path: Path) -> tuple[str, bool]:
    """The token stored in ``path``, created (0600, in a 0700 directory) when absent.

    Returns (token, created). Raises ConfigError for a token file that is empty or readable by others.
    """
    path = Path(path)
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise ConfigError(f"the token file {path} is readable by others (mode {mode:o}); "
                              f"run `chmod 600 {path}`")
        token = path.read_text(encoding="utf-8").strip()
        if len(token) < 16:
            raise ConfigError(f"the token file {path} holds no usable token (16+ characters); delete it to "
                              "get a new one")
        return token, False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token, True


def token_matches(expected: str, authorization: str | None) -> bool:
    """True when an ``Authorization`` header carries ``Bearer <expected>`` (constant-time comparison)."""
    if not authorization:
        return False
    scheme, _, value = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), expected.encode())


def host_name(host_header: str | None) -> str | None:
    """The host name of a ``Host`` header, lower-cased, without port or IPv6 brackets."""
    if not host_header:
        return None
    try:
        name = urlsplit("//" + host_header.strip()).hostname
    except ValueError:
        return None
    return name.lower() if name else None


def allowed_hosts(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names requests may name: loopback, the bound address (unless a wildcard) and ``extra``."""
    hosts = set(LOOPBACK_HOSTS) | {h.lower() for h in extra}
    if bind_host not in ("0.0.0.0", "::", ""):
        hosts.add(bind_host.lower().strip("[]"))
    return frozenset(hosts)


def origin_allowed(origin: str | None, hosts: frozenset[str]) -> bool:
    """A WebSocket's ``Origin``: absent (not a browser) or an http(s) page served from an allowed host."""
    if origin is None:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and (parts.hostname or "").lower() in hosts


class TicketBook:
    """Single-use tickets for the browser's WebSocket (it cannot send an Authorization header).

    A ticket is valid for ``ttl_s`` seconds and for one connection; ``redeem`` consumes it either way.
    """

    def __init__(self, ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 max_outstanding: int = 256) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_outstanding
        self._tickets: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new ticket; the oldest outstanding ones are dropped beyond ``max_outstanding``."""
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        now = self._clock()
        with self._lock:
            self._expire(now)
            while len(self._tickets) >= self._max:
                self._tickets.pop(next(iter(self._tickets)))
            self._tickets[ticket] = now + self.ttl_s
        return ticket

    def redeem(self, ticket: str | None) -> bool:
        """True (once) for a ticket issued less than ``ttl_s`` ago."""
        if not ticket:
            return False
        now = self._clock()
        with self._lock:
            deadline = self._tickets.pop(ticket, None)
        return deadline is not None and now <= deadline

    def _expire(self, now: float) -> None:
        for t in [t for t, d in self._tickets.items() if d < now]:
            del self._tickets[t]


class RateLimit:
    """At most ``per_minute`` events in any sliding 60 s window (verify is an authenticator: no brute force)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Counts one event; False (not counted) when the window is full."""
        now = self._clock()
        with self._lock:
            while self._times and self._times[0] <= now - 60.0:
                self._times.popleft()
            if len(self._times) >= self.per_minute:
                return False
            self._times.append(now)
            return True

    def retry_after_s(self) -> int:
        """Whole seconds until the window has room again."""
        with self._lock:
            if not self._times:
                return 0
            return max(1, int(self._times[0] + 60.0 - self._clock()) + 1)
