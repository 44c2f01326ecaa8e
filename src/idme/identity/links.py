"""Galleries a home's profiles were copied into (``idme profiles migrate``), kept in step with the store.

A voiceprint copied into PostgreSQL is outside the home, so deleting a person at home must reach it too: a
demanding user who types ``idme forget NAME`` expects the voice gone everywhere idme put it, not only until
someone remembers ``migrate --prune``. ``migrate`` therefore records the gallery here (``GalleryLinks``); from
then on every change of the profile store (enrol, name, rename, re-embed, undo, delete, forget) is mirrored into
each linked gallery by ``sync``. A change a gallery did not get is never silently skipped: its names are kept
in the record (``GalleryLink.pending``, so any later process on the home retries them first) and reported
(``SyncFailure``) with the command that repairs it.

The record holds each gallery's URL as it was given, password included (libpq needs it to connect again), so
it is a file sealed by the home's vault (``galleries.json``, identity ``idme/galleries``; ``idme keys rotate``
re-seals it like every sealed file). It was never written in plaintext, so a plaintext file there is refused:
whoever can write the home without its key must not be able to point future voiceprints at their server. What
is shown, logged or exported carries the URL without its password.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import IdmeError

log = logging.getLogger(__name__)

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

    #: The PostgreSQL URL as given to ``migrate`` (password included; only ever stored sealed, never in a repr).
    url: str = field(repr=False)
    table: str
    #: Dimension of its voiceprints (opening a gallery needs it; the encoder need not be loaded to delete).
    dimension: int
    #: When ``migrate`` last filled it (UTC, ISO 8601).
    linked_at: str
    #: Profile names whose change it has not got yet (retried first by the next change, from any process).
    pending: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a link: the server without its password, and the table."""
        return redact(self.url), self.table

    @property
    def shown(self) -> str:
        """``table on url`` with the password removed: what messages and listings say."""
        return f"{self.table} on {redact(self.url)}"

    def to_dict(self) -> dict[str, Any]:
        """Without the password (for listings and --json)."""
        return {"url": redact(self.url), "table": self.table, "dimension": self.dimension,
                "linked_at": self.linked_at, "pending": list(self.pending)}


@dataclass(frozen=True)
class SyncFailure:
    """A linked gallery that changes of the store did not reach (or a link record that cannot be read)."""

    #: None: the record itself could not be read, so no gallery was tried.
    link: GalleryLink | None
    #: Profile names whose rows are now stale there (upserts or deletions it missed).
    names: tuple[str, ...]
    #: The one-line reason (connection refused, other encoder, ...).
    reason: str
    #: False: the gallery cannot take these profiles as they are (another encoder), so they are not retried.
    retried: bool = True

    @property
    def fix(self) -> str:
        """The command that puts the gallery back in step once it answers (re-copies every voiceprint and
        deletes the rows of people the store no longer has); the stored password is kept."""
        if self.link is None:
            return ("delete galleries.json from the home, then run `idme profiles migrate --to URL --table T "
                    "--prune` for each gallery")
        return f"idme profiles migrate --to {redact(self.link.url)} --table {self.link.table} --prune"

    def message(self) -> str:
        who = ", ".join(self.names) if len(self.names) <= 5 else f"{len(self.names)} profiles"
        if self.link is None:
            return f"no linked gallery was updated for {who}: {self.reason}; {self.fix}"
        if not self.retried:
            return (f"gallery {self.link.shown} cannot take {who} ({self.reason}): re-embed with its encoder "
                    f"(`idme profiles reembed`) or stop mirroring into it (`idme profiles unlink --from "
                    f"{redact(self.link.url)} --table {self.link.table}`)")
        return (f"gallery {self.link.shown} was not updated for {who} ({self.reason}); their rows there are "
                f"stale until the next change reaches it or you run `{self.fix}`")

    def to_dict(self) -> dict[str, Any]:
        return {"gallery": None if self.link is None else self.link.to_dict(), "names": list(self.names),
                "reason": self.reason, "retried": self.retried, "fix": self.fix}


class GalleryLinks:
    """The sealed record of linked galleries in ``home``. Read on every call (a CLI and a server may share one
    home, and what one records the other sees at its next change); every edit is one read-modify-write
    under the home's process lock, so two processes editing it at once lose nothing."""

    def __init__(self, home: Path, vault) -> None:
        """vault: the home's ``idme.vault.Vault``, or a function returning it (unlocked only when the record
        exists or is written)."""
        self.home = Path(home)
        self.path = self.home / LINKS_FILE
        self._vault_of = vault if callable(vault) else (lambda: vault)

    def all(self) -> list[GalleryLink]:
        """The links; IdmeError (one line) for a record that is not sealed by this home or is damaged."""
        from ..vault import MAGIC

        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:  # no vault key is needed (or asked for) by a home that never migrated
            return []
        if not blob.startswith(MAGIC):
            raise IdmeError(f"{self.path} is not sealed by this home (idme never writes it in plaintext): "
                            "delete it and link galleries again with `idme profiles migrate`")
        try:
            doc = json.loads(self._vault_of().open(blob, LINKS_IDENTITY, self.path))
            known = {"url", "table", "dimension", "linked_at", "pending"}
            return [GalleryLink(**{k: (tuple(v) if k == "pending" else v) for k, v in d.items() if k in known})
                    for d in doc.get("galleries", [])]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IdmeError(f"{self.path} is damaged ({type(exc).__name__}); delete it and link galleries "
                            "again with `idme profiles migrate`") from None

    def _save(self, links: Sequence[GalleryLink]) -> None:
        if not links:
            self.path.unlink(missing_ok=True)
            return
        doc = {"galleries": [{"url": l.url, "table": l.table, "dimension": l.dimension, "linked_at": l.linked_at,
                              "pending": list(l.pending)} for l in links]}
        self._vault_of().write(self.path, json.dumps(doc, indent=1).encode(), LINKS_IDENTITY)

    def _edit(self, change) -> Any:
        """Runs ``change(links) -> (new links or None to keep, result)`` under the home's lock; returns result."""
        from .._fs import process_lock

        with process_lock(self.home):
            links = self.all()
            new, result = change(links)
            if new is not None:
                self._save(new)
            return result

    def add(self, url: str, table: str, dimension: int, done: Sequence[str] = ()) -> GalleryLink:
        """Records (or refreshes) the gallery ``table`` at ``url``: one entry per server and table. A URL
        without a password (as messages show it) keeps the one stored. ``done``: pending names the caller
        brought in step (``migrate``); any other pending name stays."""
        def change(links):
            old = next((l for l in links if l.key == (redact(url), table)), None)
            given = old.url if old is not None and redact(url) == url else url
            pending = tuple(n for n in (old.pending if old is not None else ()) if n not in set(done))
            link = GalleryLink(given, table, int(dimension),
                               datetime.now(timezone.utc).isoformat(timespec="seconds"), pending)
            return [l for l in links if l is not old] + [link], link
        return self._edit(change)

    def remove(self, url: str, table: str) -> GalleryLink | None:
        """Stops mirroring into ``table`` at ``url`` (its rows stay); the link removed, or None."""
        def change(links):
            gone = [l for l in links if l.key == (redact(url), table)]
            return ([l for l in links if l not in gone] if gone else None), (gone[0] if gone else None)
        return self._edit(change)

    def update_pending(self, key: tuple[str, str], tried: Sequence[str], missed: Sequence[str]) -> None:
        """Link ``key`` was just brought in step for the names ``tried`` except ``missed``: those leave its
        pending names and ``missed`` join them. A merge, not a replacement: names another process recorded
        meanwhile stay."""
        def change(links):
            hit = [l for l in links if l.key == key]
            if not hit:
                return None, None
            done = set(tried) - set(missed)
            pending = tuple(dict.fromkeys([n for n in hit[0].pending if n not in done] + list(missed)))
            if pending == hit[0].pending:
                return None, None
            return [replace(l, pending=pending) if l.key == key else l for l in links], None
        self._edit(change)


@dataclass
class Synced:
    """What ``sync`` did to one gallery."""

    upserted: list[str] = field(default_factory=list)
    #: Rows deleted, by name.
    removed: dict[str, int] = field(default_factory=dict)
    #: Names not brought in step for now (the server refused the row, the profile could not be read), with
    #: the one-line reason: retried later.
    failed: dict[str, str] = field(default_factory=dict)
    #: Profiles that this gallery cannot take (made by another encoder), with the reason: not retried.
    refused: dict[str, str] = field(default_factory=dict)


def sync(gallery, store, names: Sequence[str]) -> Synced:
    """Brings ``gallery``'s rows for ``names`` in line with the profile ``store``. Deletions come first (a
    person removed here must leave even if another name cannot be copied): a name the store no longer has is
    deleted; then each profile it has is upserted (its centroid, band and own encoder). A profile made by an
    encoder other than the gallery's is not copied (``refused``); a row the server refuses or a profile that
    cannot be read is ``failed``. GalleryError when the gallery itself cannot be used (its connection lost
    and not opened again): nothing is known then about the names not yet done."""
    from .gallery import GalleryError
    from .profiles import same_encoder

    def unusable() -> bool:
        return bool(getattr(gallery, "closed", False))

    out = Synced()
    names = list(dict.fromkeys(names))
    gone = [n for n in names if not store.exists(n)]
    for n in gone:
        out.removed[n] = int(gallery.remove([n]))  # GalleryError here: the gallery cannot be used
    held = getattr(gallery, "encoder", None)
    for n in names:
        if n in gone:
            continue
        try:
            p = store.get(n)
        except Exception as exc:  # a damaged or vanished profile must not stop the other names
            out.failed[n] = f"profile {n} cannot be read ({str(exc).splitlines()[0] if str(exc) else exc!r})"
            continue
        if held is not None and not same_encoder(held, p.encoder):
            out.refused[n] = (f"made by encoder {p.encoder.get('name')} {p.encoder.get('version')}, the gallery "
                              f"holds {held.get('name')} {held.get('version')}")
            continue
        try:
            gallery.add([p.name], p.centroid[None, :].astype(np.float32), [bool(p.narrowband)], encoder=p.encoder)
            out.upserted.append(p.name)
        except GalleryError as exc:
            if unusable():
                raise
            out.failed[n] = str(exc).splitlines()[0]
    return out


class Mirror:
    """Keeps every gallery linked to a home in step with its profile store, for one process: the store's
    ``on_change`` hook (``changed``). Holds the open connections and what each gallery has not got yet.

    Never raises from ``changed`` (the local change is done, and a forget must finish its sessions): what a
    gallery did not get is kept in its link record (``GalleryLink.pending``, retried first by the next change
    from any process) and in ``failures``. Changes are mirrored one at a time, each reading the store as it
    then is, so the last one leaves every gallery as the store is."""

    #: Seconds a gallery found down (connecting failed, or its connection was lost for good) is left alone
    #: before a change tries it again (its names wait in the record meanwhile): a burst of changes against a
    #: server that is down does not wait for the connection timeout each time.
    retry_s: float = 30.0
    #: Connection and statement time limits (a stuck database must not hold a change up).
    timeout_s: float = 5.0

    def __init__(self, links: GalleryLinks, store_of) -> None:
        """store_of: a function returning the ``ProfileStore`` (read when a change is mirrored)."""
        self.links = links
        self._store_of = store_of
        self._io = threading.Lock()  # one mirror at a time
        self._lock = threading.Lock()  # guards _failed for readers on other threads
        #: By link key (None: the record could not be read): (SyncFailure, monotonic time the gallery itself
        #: was found down, or None when it only refused some profiles).
        self._failed: dict[Any, tuple[SyncFailure, float | None]] = {}
        self._open: dict[tuple[str, str, str], Any] = {}  # (url, *link key) -> PgVectorGallery

    @property
    def failures(self) -> list[SyncFailure]:
        """What changes mirrored by this process have not brought to each gallery yet."""
        with self._lock:
            return [f for f, _ in self._failed.values()]

    def changed(self, names: Sequence[str]) -> dict[str, int]:
        """Mirrors the change of ``names`` (and what each gallery still had pending) into every linked
        gallery; returns the rows deleted for ``names``, by name."""
        with self._io:
            with self._lock:  # names no gallery got while the record could not be read
                carried = self._failed.pop(None, (None, None))[0]
            names = tuple(dict.fromkeys((carried.names if carried else ()) + tuple(names)))
            try:
                links = self.links.all()
            except Exception as exc:  # unreadable record: nothing can be mirrored; report it, never raise
                with self._lock:
                    self._failed[None] = (SyncFailure(None, names, _first_line(exc)), None)
                return {}
            self._forget_unlinked(links)
            removed: dict[str, int] = {}
            for link in links:
                done = self._one(link, names)
                for n, rows in done.removed.items():
                    if n in names:
                        removed[n] = removed.get(n, 0) + rows
        return removed

    def _forget_unlinked(self, links: Sequence[GalleryLink]) -> None:
        """Drops connections and failures of links gone from the record (or stored with another password)."""
        urls = {l.key: l.url for l in links}
        for key in [k for k in self._open if urls.get(k[1:]) != k[0]]:
            self._open.pop(key).close()
        with self._lock:
            for key in [k for k in self._failed if k not in urls]:
                self._failed.pop(key)

    def _one(self, link: GalleryLink, names: tuple[str, ...]) -> Synced:
        """Brings one gallery in step for ``names`` and what it had pending; records what it did not get."""
        from .gallery import PgVectorGallery

        with self._lock:
            prev, down_since = self._failed.get(link.key, (None, None))
        carry = prev.names if prev is not None and prev.retried else ()
        todo = tuple(dict.fromkeys(link.pending + carry + names))
        if down_since is not None and time.monotonic() - down_since < self.retry_s:
            done, down = Synced(failed={n: prev.reason for n in todo}), down_since
        else:
            down, conn_key = None, (link.url,) + link.key
            try:
                pg = self._open.get(conn_key)
                if pg is None:
                    pg = self._open[conn_key] = PgVectorGallery(
                        link.url, link.dimension, table=link.table, create=False,
                        connect_timeout_s=self.timeout_s, statement_timeout_s=self.timeout_s)
                done = sync(pg, self._store_of(), todo)
            except Exception as exc:  # the gallery cannot be used now: every name waits
                bad = self._open.pop(conn_key, None)
                if bad is not None:
                    bad.close()
                done, down = Synced(failed={n: _first_line(exc) for n in todo}), time.monotonic()
        with self._lock:
            if done.failed:
                reason = "; ".join(dict.fromkeys(done.failed.values()))
                self._failed[link.key] = (SyncFailure(link, tuple(done.failed), reason), down)
            elif done.refused:
                reason = "; ".join(dict.fromkeys(done.refused.values()))
                self._failed[link.key] = (SyncFailure(link, tuple(done.refused), reason, False), None)
            else:
                self._failed.pop(link.key, None)
        if set(link.pending) != set(done.failed):
            try:
                self.links.update_pending(link.key, todo, tuple(done.failed))
            except Exception as exc:  # the failure itself is still reported through ``failures``
                log.warning("could not record what %s still has to get: %s", link.shown, _first_line(exc))
        log.info("gallery %s: %d upserted, %d row(s) deleted, %d to retry, %d refused", link.shown,
                 len(done.upserted), sum(done.removed.values()), len(done.failed), len(done.refused))
        return done

    def in_step(self, key: tuple[str, str]) -> None:
        """Link ``key`` was just brought in step by other means (``migrate``): its failure is over."""
        with self._lock:
            self._failed.pop(key, None)

    def unlink(self, url: str, table: str) -> GalleryLink | None:
        """Removes the link (its rows stay) and closes its connection; the link removed, or None."""
        link = self.links.remove(url, table)
        if link is not None:
            with self._io:
                for key in [k for k in self._open if k[1:] == link.key]:
                    self._open.pop(key).close()
                self.in_step(link.key)
        return link


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


__all__ = ["LINKS_FILE", "LINKS_IDENTITY", "GalleryLink", "GalleryLinks", "Mirror", "SyncFailure", "Synced",
           "redact", "sync"]
