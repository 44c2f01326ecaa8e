"""Digit challenges the server issues for a liveness verify (issue 14): random digits from the OS CSPRNG,
valid for ``ttl_s`` seconds and for one verify. A plain object (clock injectable), so each rule is tested
on its own."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

#: Verify outcomes of a challenge id that cannot be used.
EXPIRED, REUSED = "challenge_expired", "challenge_reused"


class ChallengeBook:
    """Issued challenges: id -> (digits, deadline). ``redeem`` consumes one; a used id is remembered until
    its deadline so that a second use reads as ``challenge_reused``, not as unknown."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_outstanding: int = 1024) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_outstanding
        self._open: dict[str, tuple[str, float]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> tuple[str, str]:
        """(challenge id, digits); the oldest outstanding challenges are dropped beyond ``max_outstanding``."""
        from ..identity.replay import new_challenge

        cid, digits, now = secrets.token_urlsafe(16), new_challenge(), self._clock()
        with self._lock:
            self._expire(now)
            while len(self._open) >= self._max:
                self._open.pop(next(iter(self._open)))
            self._open[cid] = (digits, now + self.ttl_s)
        return cid, digits

    def redeem(self, cid: str) -> tuple[str | None, str | None]:
        """(digits, None) for a live challenge, consumed now; (None, EXPIRED or REUSED) otherwise. An id never
        issued (or forgotten long after its deadline) reads as expired."""
        now = self._clock()
        with self._lock:
            if cid in self._used and now <= self._used[cid]:
                return None, REUSED
            entry = self._open.pop(cid, None)
            if entry is None or now > entry[1]:
                return None, EXPIRED
            self._used[cid] = entry[1]
            return entry[0], None

    def _expire(self, now: float) -> None:
        for c in [c for c, (_, d) in self._open.items() if d < now]:
            del self._open[c]
        for c in [c for c, d in self._used.items() if d < now]:
            del self._used[c]
