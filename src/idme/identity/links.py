"""Galleries a home's profiles were copied into (``idme profiles migrate``), kept in step with the store.

A voiceprint copied into PostgreSQL is outside the home, so deleting a person at home must reach it too: a
demanding user who types ``idme forget NAME`` expects the voice gone everywhere idme put it, not only until
someone remembers ``migrate --prune``. ``migrate`` therefore records the gallery here (``GalleryLinks``); from
then on every change of the profile store (enrol, name, rename, re-embed, undo, delete, forget) is mirrored into
each linked gallery by ``sync``, and a gallery that cannot be reached is reported (``SyncFailure``) with the
command that brings it back in step, never silently skipped.

The record holds each gallery's URL as it was given, password included (libpq needs it to connect again), so
it is a file sealed by the home's vault (``galleries.json``, identity ``idme/galleries``; rotated with the other
sealed files, ``idme.vault.record_identity``). What is shown or exported carries the URL without its password.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: The record's file in the home, and the associated-data identity it is sealed under (``idme.vault``).
LINKS_FILE = "galleries.json"
LINKS_IDENTITY = "idme/galleries"


def redact(url: str) -> str:
    """``url`` without its password (``identity.gallery``'s rule, one place)."""
    from .gallery import _redact

    return _redact(url)


@dataclass(frozen=True)
class GalleryLink:
    """One gallery the store is mirrored into."""

    #: The PostgreSQL URL as given to ``migrate`` (password included; only ever stored sealed).
    url: str
    table: str
    #: Dimension of its voiceprints (opening a gallery needs it; the encoder need not be loaded to delete).
    dimension: int
    #: When ``migrate`` last filled it (UTC, ISO 8601).
    linked_at: str

    @property
    def shown(self) -> str:
        """``table on url`` with the password removed: what messages and listings say."""
        return f"{self.table} on {redact(self.url)}"

    def to_dict(self) -> dict[str, Any]:
        """Without the password (for listings and --json)."""
        return {"url": redact(self.url), "table": self.table, "dimension": self.dimension,
                "linked_at": self.linked_at}


@dataclass(frozen=True)
class SyncFailure:
    """A linked gallery that a change of the store did not reach."""

    link: GalleryLink
    #: Profile names whose rows are now stale there (upserts or deletions it missed).
    names: tuple[str, ...]
    #: The one-line reason (connection refused, other encoder, ...).
    reason: str

    @property
    def fix(self) -> str:
        """The command that puts the gallery back in step once it answers (re-copies every voiceprint and
        deletes the rows of people the store no longer has)."""
        return f"idme profiles migrate --to {redact(self.link.url)} --table {self.link.table} --prune"

    def message(self) -> str:
        who = ", ".join(self.names) if len(self.names) <= 5 else f"{len(self.names)} profiles"
        return (f"gallery {self.link.shown} was not updated for {who} ({self.reason}); their rows there are "
                f"stale until you run `{self.fix}`")

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": self.link.to_dict(), "names": list(self.names), "reason": self.reason,
                "fix": self.fix}


class GalleryLinks:
    """The sealed record of linked galleries in ``home`` (read on every call: a CLI and a server may share
    one home, and a record changed by one is seen by the other at its next change)."""

    def __init__(self, home: Path, vault) -> None:
        self.path = Path(home) / LINKS_FILE
        self._vault = vault

    def all(self) -> list[GalleryLink]:
        if not self.path.exists():  # no vault key is needed (or asked for) by a home that never migrated
            return []
        doc = json.loads(self._vault.read(self.path, LINKS_IDENTITY))
        return [GalleryLink(**d) for d in doc.get("galleries", [])]

    def _save(self, links: Sequence[GalleryLink]) -> None:
        if not links:
            self.path.unlink(missing_ok=True)
            return
        doc = {"galleries": [{"url": l.url, "table": l.table, "dimension": l.dimension, "linked_at": l.linked_at}
                             for l in links]}
        self._vault.write(self.path, json.dumps(doc, indent=1).encode(), LINKS_IDENTITY)

    def add(self, url: str, table: str, dimension: int) -> GalleryLink:
        """Records (or refreshes) the gallery ``table`` at ``url``; one entry per server and table, whatever
        password the URL carries (the latest one is kept)."""
        link = GalleryLink(url, table, int(dimension), datetime.now(timezone.utc).isoformat(timespec="seconds"))
        kept = [l for l in self.all() if (redact(l.url), l.table) != (redact(url), table)]
        self._save(kept + [link])
        return link

    def remove(self, url: str, table: str) -> GalleryLink | None:
        """Stops mirroring into ``table`` at ``url`` (its rows stay); the link removed, or None."""
        links = self.all()
        gone = [l for l in links if (redact(l.url), l.table) == (redact(url), table)]
        if gone:
            self._save([l for l in links if l not in gone])
        return gone[0] if gone else None


def sync(gallery, store, names: Sequence[str]) -> tuple[list[str], int]:
    """Brings ``gallery``'s rows for ``names`` in line with the profile ``store``: a profile it has is
    upserted (its centroid, band and own encoder, which a gallery of another encoder refuses), a name it has
    not is removed. Returns (names upserted, rows removed)."""
    kept = [store.get(n) for n in dict.fromkeys(names) if store.exists(n)]
    gone = [n for n in dict.fromkeys(names) if not store.exists(n)]
    for p in kept:  # one add per profile: a gallery records one encoder, and each profile names its own
        gallery.add([p.name], p.centroid[None, :].astype(np.float32), [bool(p.narrowband)], encoder=p.encoder)
    return [p.name for p in kept], int(gallery.remove(gone)) if gone else 0


__all__ = ["LINKS_FILE", "LINKS_IDENTITY", "GalleryLink", "GalleryLinks", "SyncFailure", "redact", "sync"]
