"""Crash-safe session store: one SQLite database, ``<home>/sessions.db``, holding every session.

A running session writes through its :class:`SessionWriter` (WAL, ``synchronous=NORMAL``: every commit
survives ``kill -9`` of the listener; see :mod:`idme.session.sqlite` for why that is enough while
recording); :meth:`SessionWriter.finish` makes the whole session durable with a FULL commit and a
checkpoint. Reads and maintenance go through :class:`SessionStore`.

Privacy: the file is created 0600, deleted rows are overwritten with zeros (``secure_delete``), and
:meth:`SessionStore.delete` checkpoints and truncates the log, so a deleted session leaves no bytes
behind. The file is also rebuilt (``VACUUM``) when no other session is recording; never under a running
listener, whose writes VACUUM would block for the whole rebuild.

The module is split by job: result types in :mod:`~idme.session.model`, SQLite plumbing in
:mod:`~idme.session.sqlite`, writer liveness in :mod:`~idme.session.liveness` and row codecs in
:mod:`~idme.session.rows`. Their public names are re-exported here.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SessionError, StoreError
from ..paths import home_dir
from .liveness import effective_status, this_process
from .model import KINDS, STATUSES, Segment, Session, SessionSummary, SpeakerInfo, Word
from .rows import (array_from_blob, check_kind, clean_label, durations_from_blob, finite, merge_embeddings,
                   ordered_labels, put_speaker, segment_from_row, segment_row, speaker_arrays, speaker_infos,
                   to_json, utc_now, words_json)
from .sqlite import (DB_ERRORS, SCHEMA_VERSION, IdCollision, checkpoint, connect, rollback, set_synchronous,
                     store_error, transaction)

__all__ = ["DB_FILENAME", "KINDS", "SCHEMA_VERSION", "STATUSES", "Segment", "Session", "SessionStore",
           "SessionSummary", "SessionWriter", "SpeakerInfo", "Word"]

logger = logging.getLogger(__name__)

#: File name of the store inside the idme home.
DB_FILENAME = "sessions.db"

# Names of the single-module store (before it was split), still imported by tests and fault scripts.
_transaction = transaction
_store_error = store_error


#: Insert-or-replace of one segment row; "" text and "[]" words keep what is stored (not transcribed yet).
_UPSERT_SEGMENT = (
    "INSERT INTO segments (session_id, seg_id, start_s, end_s, speaker, kind, score, final, text,"
    " words) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (session_id, seg_id) DO UPDATE SET start_s = excluded.start_s,"
    " end_s = excluded.end_s, speaker = excluded.speaker, kind = excluded.kind,"
    " score = excluded.score, final = excluded.final,"
    " text = CASE WHEN excluded.text <> '' THEN excluded.text ELSE segments.text END,"
    " words = CASE WHEN excluded.words <> '[]' THEN excluded.words ELSE segments.words END")


class SessionStore:
    """All sessions of one idme home, in ``<home>/sessions.db``.

    Reads and maintenance (get, list, delete, rename) go through this object; a running session writes
    through the :class:`SessionWriter` that :meth:`create` returns, on its own connection, so a
    listener's writer thread and a reader never share a connection.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 10.0,
                 vault: Any = None) -> None:
        """home: the idme home (``--home``), else ``$IDME_HOME``, else the platform default.

        vault: the ``idme.vault.Vault`` whose data key the database key is derived from (default: the home's
        own, ``idme.vault.vault_for(home)``; a throwaway store may pass ``idme.vault.EphemeralVault()``).

        busy_timeout_s: how long a write waits for another process's transaction before failing.
        Raises StoreError with one line when the home or the database cannot be created or written.
        """
        self.home = home_dir(home)
        self.path = self.home / DB_FILENAME
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._vault = vault
        self._conn: sqlite3.Connection | None = connect(self.path, busy_timeout_s, keys=self.db_keys())

    def db_keys(self) -> list[bytes]:
        """SQLCipher keys of ``sessions.db``: the current one, then (during a key rotation) the previous one."""
        from ..vault import VaultError, vault_for

        if self._vault is None:
            self._vault = vault_for(self.home)
        try:
            return self._vault.db_keys()
        except VaultError as exc:
            raise StoreError(f"cannot open the session store {self.path}: {exc}") from None

    # ---- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the reader connection (idempotent)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the session store {self.path} is closed")
        return self._conn

    # ---- writing ----------------------------------------------------------------------------------

    def create(self, settings: Mapping[str, Any] | None = None, models: Mapping[str, Any] | None = None,
               source: str = "") -> SessionWriter:
        """Starts a new session (status "running") and returns its writer.

        settings: what the session runs with (JSON-serialisable; other values are stored as str).
        models: model names/versions, e.g. {"encoder": {"name", "version"}, "asr": {"name", "version"}}.
        source: a description of the audio source.
        """
        settings_json = to_json(dict(settings or {}), "settings")
        models_json = to_json(dict(models or {}), "models")
        host, pid, started = this_process()
        from .._fs import SharedHold

        # Held while the session records: `idme keys rotate` refuses meanwhile (issue 14; the database is
        # rekeyed under a new key, which this connection would not have).
        hold = SharedHold(self.home)
        # NORMAL while recording: a commit per event without an fsync per event (review 2026-12-01, §1.8).
        try:
            conn = connect(self.path, self.busy_timeout_s, synchronous="NORMAL", keys=self.db_keys())
        except BaseException:
            hold.release()
            raise
        try:
            for _ in range(5):  # the 16-bit random suffix collides only when many start in one second
                now = datetime.now(timezone.utc)
                session_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
                try:
                    with transaction(conn, self.path, "creating a session"):
                        conn.execute(
                            "INSERT INTO sessions (id, created_at, status, source, settings, models,"
                            " writer_host, writer_pid, writer_start) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                            (session_id, now.isoformat(timespec="microseconds"), str(source), settings_json,
                             models_json, host, pid, started))
                    break
                except IdCollision:
                    continue
            else:  # pragma: no cover - needs five collisions in a row
                raise StoreError(f"could not pick a free session id in {self.path}; try again")
        except BaseException:
            conn.close()
            hold.release()
            raise
        logger.info("session %s started in %s", session_id, self.path)
        return SessionWriter(conn, self.path, session_id, hold)

    # ---- reading ----------------------------------------------------------------------------------

    def get(self, session_id: str = "latest") -> Session:
        """The session ``session_id`` (an id, a unique prefix of one, or "latest").

        A session whose writer died without finishing is returned with status "incomplete" and every
        segment that was committed. Raises SessionError for an unknown id.
        """
        with self._read("reading a session") as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute(
                "SELECT id, created_at, status, duration_s, source, settings, models,"
                " writer_host, writer_pid, writer_start FROM sessions WHERE id = ?", (sid,)).fetchone()
            seg_rows = conn.execute(
                "SELECT seg_id, start_s, end_s, speaker, kind, score, final, text, words FROM segments"
                " WHERE session_id = ? ORDER BY start_s, seg_id", (sid,)).fetchall()
            spk_rows = conn.execute(
                "SELECT label, kind, n, dim FROM speakers WHERE session_id = ?", (sid,)).fetchall()
        segments = tuple(segment_from_row(r) for r in seg_rows)
        status = effective_status(row[2], row[7], row[8], row[9])
        last_end = max((s.end for s in segments), default=0.0)
        return Session(
            id=row[0], created_at=row[1], status=status,
            duration_s=float(row[3]) if row[3] is not None else last_end,
            source=row[4], settings=json.loads(row[5]), models=json.loads(row[6]),
            speakers=speaker_infos(segments, spk_rows), segments=segments)

    def list(self) -> builtins.list[SessionSummary]:
        """Every session, oldest first (ids sort the same way)."""
        with self._read("listing sessions") as conn:
            rows = conn.execute(
                "SELECT s.id, s.created_at, s.status, s.duration_s, s.writer_host, s.writer_pid,"
                " s.writer_start, COUNT(g.seg_id), MAX(g.end_s)"
                " FROM sessions s LEFT JOIN segments g ON g.session_id = s.id"
                " GROUP BY s.id ORDER BY s.created_at, s.id").fetchall()
            label_rows = conn.execute(
                "SELECT session_id, speaker, kind, COUNT(*), MIN(start_s) FROM segments"
                " GROUP BY session_id, speaker, kind").fetchall()
        by_session: dict[str, builtins.list[tuple[str, str, int, float]]] = {}
        for sid, label, kind, n, first in label_rows:
            by_session.setdefault(sid, []).append((label, kind, n, first))
        out = []
        for sid, created, status, duration, host, pid, started, n_seg, last_end in rows:
            out.append(SessionSummary(
                id=sid, created_at=created,
                duration_s=float(duration) if duration is not None else float(last_end or 0.0),
                n_segments=int(n_seg), speakers=ordered_labels(by_session.get(sid, [])),
                status=effective_status(status, host, pid, started)))
        return out

    def speaker_embeddings(self, session_id: str, label: str) -> np.ndarray:
        """Saved embeddings of one speaker: float32, shape (n, dim), one row per window."""
        n, dim, blob, _ = self._speaker_row(session_id, label, "reading speaker embeddings")
        return array_from_blob(blob, (n, dim))

    def speaker_durations(self, session_id: str, label: str) -> np.ndarray | None:
        """Seconds of speech behind each saved embedding of one speaker: float32, shape (n,), in the order
        of :meth:`speaker_embeddings`; None when the session kept none (saved by an older idme)."""
        n, _, _, blob = self._speaker_row(session_id, label, "reading speaker durations")
        return durations_from_blob(blob, n)

    def _speaker_row(self, session_id: str, label: str, action: str) -> tuple[int, int, bytes | None, bytes | None]:
        with self._read(action) as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute("SELECT n, dim, embeddings, durations FROM speakers WHERE session_id = ? AND label = ?",
                               (sid, label)).fetchone()
            if row is None:
                saved = [r[0] for r in conn.execute(
                    "SELECT label FROM speakers WHERE session_id = ? ORDER BY label", (sid,))]
                raise SessionError(f"no saved embeddings for speaker '{label}' in session {sid}; "
                                   f"saved: {', '.join(saved) or 'none'}")
        return row

    # ---- maintenance ------------------------------------------------------------------------------

    def rename_speaker(self, session_id: str, old_label: str, new_label: str, kind: str = "enrolled") -> int:
        """Relabels every segment of ``old_label`` as ``new_label`` (kind ``kind``); returns how many.

        Used by ``idme name SESSION "Speaker 2" alice``. When ``new_label`` already exists in the session,
        the two speakers are merged (their saved embeddings are concatenated).
        """
        new_label = clean_label(new_label)
        check_kind(kind)
        with self._write(f"renaming speaker '{old_label}'") as conn:
            sid = self._resolve(conn, session_id)
            n_seg = conn.execute("SELECT COUNT(*) FROM segments WHERE session_id = ? AND speaker = ?",
                                 (sid, old_label)).fetchone()[0]
            old_row = conn.execute("SELECT n, dim, embeddings, durations FROM speakers"
                                   " WHERE session_id = ? AND label = ?", (sid, old_label)).fetchone()
            if n_seg == 0 and old_row is None:
                labels = sorted({r[0] for r in conn.execute(
                    "SELECT speaker FROM segments WHERE session_id = ? UNION SELECT label FROM speakers"
                    " WHERE session_id = ?", (sid, sid))})
                raise SessionError(f"no speaker '{old_label}' in session {sid}; "
                                   f"speakers: {', '.join(labels) or 'none'}")
            conn.execute("UPDATE segments SET speaker = ?, kind = ? WHERE session_id = ? AND speaker = ?",
                         (new_label, kind, sid, old_label))
            if old_row is not None and new_label != old_label:
                new_row = conn.execute("SELECT n, dim, embeddings, durations FROM speakers"
                                       " WHERE session_id = ? AND label = ?",
                                       (sid, new_label)).fetchone()
                if new_row is None:
                    conn.execute("UPDATE speakers SET label = ?, kind = ? WHERE session_id = ? AND label = ?",
                                 (new_label, kind, sid, old_label))
                else:
                    merged = merge_embeddings(new_row, old_row)
                    conn.execute("DELETE FROM speakers WHERE session_id = ? AND label IN (?, ?)",
                                 (sid, old_label, new_label))
                    put_speaker(conn, sid, new_label, kind, merged)
            elif old_row is not None:
                conn.execute("UPDATE speakers SET kind = ? WHERE session_id = ? AND label = ?",
                             (kind, sid, old_label))
        logger.info("session %s: renamed '%s' to '%s' (%s, %d segments)", sid, old_label, new_label, kind, n_seg)
        return int(n_seg)

    def delete(self, session_id: str) -> bool:
        """Deletes a session with its segments, transcripts and embeddings, and scrubs them from disk.

        Returns True when no byte of it is left in the store's files; False (logged) when another
        process kept the write-ahead log from being truncated, in which case the old pages go away
        at that process's next checkpoint. Refuses a session that is still being recorded.

        While another session is being recorded the file is not rebuilt: VACUUM holds the write lock
        for the whole rebuild, and the listener's next write would wait out its busy timeout and stop
        the session (review 2026-12-01, §1.9). secure_delete has zeroed the deleted cells and freed
        pages already, and the TRUNCATE checkpoint removes the older page images from the log.
        """
        with self._write("deleting a session") as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute("SELECT status, writer_host, writer_pid, writer_start FROM sessions WHERE id = ?",
                               (sid,)).fetchone()
            if effective_status(*row) == "running":
                raise SessionError(f"session {sid} is still being recorded (process {row[2]}); stop it first")
            # Children first, so this does not depend on the foreign_keys pragma.
            conn.execute("DELETE FROM segments WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            recording = [r[0] for r in conn.execute(
                "SELECT id, status, writer_host, writer_pid, writer_start FROM sessions WHERE status = 'running'")
                if effective_status(*r[1:]) == "running"]
        with self._lock:
            try:
                if not recording:
                    # Nothing records, so nobody waits: rebuild the file, dropping the (zeroed) free pages.
                    # A listener starting right now waits for the rebuild within its busy timeout.
                    self._db.execute("VACUUM")
                else:
                    logger.info("session %s deleted without compacting the store: %s still recording", sid,
                                ", ".join(recording))
                scrubbed = checkpoint(self._db, "TRUNCATE")
            except DB_ERRORS as exc:
                raise store_error(exc, self.path, f"compacting the store after deleting session {sid}") from exc
        logger.info("session %s deleted", sid)
        if not scrubbed:
            logger.warning("session %s deleted, but another process holds %s open; its old pages leave the "
                           "write-ahead log when that process checkpoints or exits", sid, self.path)
        return scrubbed

    def transaction(self, action: str):
        """A write transaction on the store's connection (BEGIN IMMEDIATE ... COMMIT), for the privacy
        operations of :mod:`idme.session.privacy` (forget, prune, audit) that span tables."""
        return self._write(action)

    def reading(self, action: str):
        """A read transaction on the store's connection (one consistent snapshot)."""
        return self._read(action)

    def scrub(self) -> bool:
        """Rebuilds the file (VACUUM, unless a session is being recorded) and truncates the write-ahead log,
        so rows deleted or rewritten under ``secure_delete`` leave no old page behind; True when the log was
        emptied (see :meth:`delete`)."""
        with self._lock:
            try:
                recording = [r[0] for r in self._db.execute(
                    "SELECT id, status, writer_host, writer_pid, writer_start FROM sessions WHERE status = 'running'")
                    if effective_status(*r[1:]) == "running"]
                if not recording:
                    self._db.execute("VACUUM")
                return checkpoint(self._db, "TRUNCATE") and not recording
            except DB_ERRORS as exc:
                raise store_error(exc, self.path, "scrubbing the session store") from exc

    # ---- internals --------------------------------------------------------------------------------

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        """One read transaction, so a listing sees a single consistent snapshot."""
        with self._lock:
            conn = self._db
            try:
                conn.execute("BEGIN")
                yield conn
                conn.execute("COMMIT")
            except BaseException as exc:
                rollback(conn)
                if isinstance(exc, DB_ERRORS):
                    raise store_error(exc, self.path, action) from exc
                raise

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            with transaction(self._db, self.path, action):
                yield self._db

    @staticmethod
    def _resolve(conn: sqlite3.Connection, ref: str) -> str:
        """An id from an exact id, a unique id prefix, or "latest"."""
        if ref == "latest":
            row = conn.execute("SELECT id FROM sessions ORDER BY created_at DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise SessionError("no sessions recorded yet; run `idme listen` first")
            return row[0]
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (ref,)).fetchone():
            return ref
        matches = [r[0] for r in conn.execute(
            "SELECT id FROM sessions WHERE substr(id, 1, ?) = ? ORDER BY id", (len(ref), ref))] if ref else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise SessionError(f"session '{ref}' is ambiguous ({', '.join(matches[:5])}"
                               f"{', ...' if len(matches) > 5 else ''}); give more of the id")
        raise SessionError(f"no session '{ref}'; run `idme sessions list`")


class SessionWriter:
    """Writes one running session. Every call is one committed transaction; batch calls
    (:meth:`upsert_segments`, :meth:`relabel`, :meth:`save_speakers`) commit many rows in one.

    Its connection runs with ``synchronous=NORMAL`` (WAL): a committed call survives ``kill -9`` of this
    process, and only a power cut could roll back the last few commits. :meth:`finish` commits with
    FULL and checkpoints the log into the database file, so a finished session survives a power cut too.

    Thread-safe (one lock), so it may be created on one thread and fed from the pipeline's sink thread.
    Use as a context manager: leaving the block because of an exception finishes the session as
    "interrupted"; otherwise call :meth:`finish` yourself.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, session_id: str, hold: Any = None) -> None:
        """hold: the home's in-use lock (``idme._fs.SharedHold``), released by :meth:`close`."""
        self._conn: sqlite3.Connection | None = conn
        self._hold = hold
        self.path = path
        self.session_id = session_id
        self._lock = threading.Lock()
        self._finished = False

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        try:
            if exc_type is not None and not self._finished and self._conn is not None:
                self.finish("interrupted")
        finally:
            self.close()

    @contextmanager
    def _tx(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreError(f"session {self.session_id} is closed; it can no longer be written")
            with transaction(self._conn, self.path, f"{action} (session {self.session_id})"):
                yield self._conn

    def upsert_segment(self, seg: Mapping[str, Any]) -> None:
        """Inserts a segment event, or replaces the one with the same ``seg_id``; committed on return.

        seg: {seg_id, start, end, speaker, kind, score, final, text, words}; other keys are ignored.
        An event with empty text (or no words) keeps the text (words) already stored: "" means
        "not transcribed yet", so a re-emitted label must not erase a transcript that landed first.
        """
        row = segment_row(seg)
        with self._tx(f"saving segment {row[0]}") as conn:
            conn.execute(_UPSERT_SEGMENT, (self.session_id, *row))

    def upsert_segments(self, segs: Iterable[Mapping[str, Any]]) -> int:
        """Upserts many segment events in ONE transaction (one commit); returns how many were given.

        For bursts, such as the corrections a re-clustering re-emits: N events cost one commit instead
        of N. Each event is handled as by :meth:`upsert_segment`, in order (a later event with the same
        ``seg_id`` wins). Every event is validated first: one malformed event raises SessionError and
        stores none of them.
        """
        rows = [(self.session_id, *segment_row(seg)) for seg in segs]
        if not rows:
            return 0
        action = f"saving segment {rows[0][1]}" if len(rows) == 1 else f"saving {len(rows)} segments"
        with self._tx(action) as conn:
            conn.executemany(_UPSERT_SEGMENT, rows)
        return len(rows)

    def set_text(self, seg_id: int, text: str, words: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Stores the transcript of a segment; False (and a log line) when the segment is unknown."""
        words = words_json(words, seg_id)
        with self._tx(f"saving the transcript of segment {seg_id}") as conn:
            cur = conn.execute("UPDATE segments SET text = ?, words = ? WHERE session_id = ? AND seg_id = ?",
                               (str(text), words, self.session_id, int(seg_id)))
        if cur.rowcount == 0:
            logger.warning("session %s: transcript for unknown segment %s dropped", self.session_id, seg_id)
        return cur.rowcount > 0

    def relabel(self, changes: Iterable[tuple[int, str, str, float]]) -> int:
        """Applies re-clustering results ``(seg_id, speaker, kind, score)`` in ONE transaction.

        Every changed segment becomes final. Returns how many segments were updated (unknown seg_ids
        are skipped).
        """
        rows = []
        for seg_id, speaker, kind, score in changes:
            check_kind(kind)
            rows.append((clean_label(speaker), kind, finite(score, "score", seg_id), self.session_id, int(seg_id)))
        if not rows:
            return 0
        with self._tx(f"relabelling {len(rows)} segments") as conn:
            before = conn.total_changes
            conn.executemany("UPDATE segments SET speaker = ?, kind = ?, score = ?, final = 1"
                             " WHERE session_id = ? AND seg_id = ?", rows)
            updated = conn.total_changes - before
        if updated < len(rows):
            logger.debug("session %s: %d relabelled segments were not stored", self.session_id, len(rows) - updated)
        return updated

    def save_speakers(self, speakers: Mapping[str, Mapping[str, Any]]) -> None:
        """Replaces the session's speaker table in one transaction.

        speakers: label -> {"kind", "embeddings": float32 (n, d) or None, "centroid": float32 (d,) or None,
        "durations": float32 (n,) seconds behind each embedding, or None}.
        A missing centroid is the L2-normalised mean of the embeddings.
        """
        prepared = []
        for label, info in speakers.items():
            kind = info.get("kind", "unknown")
            check_kind(kind)
            prepared.append((clean_label(label), kind, speaker_arrays(label, info)))
        with self._tx(f"saving {len(prepared)} speakers") as conn:
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (self.session_id,))
            for label, kind, arrays in prepared:
                put_speaker(conn, self.session_id, label, kind, arrays)

    def finish(self, status: str = "complete", duration_s: float | None = None) -> None:
        """Marks the session "complete" or "interrupted", records its length and makes it durable.

        duration_s: length of the audio processed, s; defaults to the end of the last segment.
        The closing commit runs with ``synchronous=FULL``, which fsyncs the write-ahead log and with it
        every commit made before under NORMAL; a FULL checkpoint then copies the log into the database
        file. A checkpoint held up by another process is logged, not raised: the session is durable
        already, and its pages reach the main file at the next checkpoint.
        """
        if status not in ("complete", "interrupted"):
            raise SessionError(f"finish status must be 'complete' or 'interrupted', got '{status}'")
        with self._lock:
            if self._conn is not None:
                try:
                    set_synchronous(self._conn, "FULL")
                except DB_ERRORS as exc:
                    raise store_error(exc, self.path, f"finishing (session {self.session_id})") from exc
        with self._tx("finishing") as conn:
            if duration_s is None:
                duration_s = conn.execute("SELECT COALESCE(MAX(end_s), 0) FROM segments WHERE session_id = ?",
                                          (self.session_id,)).fetchone()[0]
            conn.execute("UPDATE sessions SET status = ?, duration_s = ?, finished_at = ? WHERE id = ?",
                         (status, finite(duration_s, "duration_s"), utc_now(), self.session_id))
        self._finished = True
        with self._lock:
            try:
                if self._conn is not None and not checkpoint(self._conn, "FULL"):
                    logger.info("session %s: another process holds part of the write-ahead log of %s; "
                                "it is checkpointed later", self.session_id, self.path)
            except DB_ERRORS as exc:  # e.g. a full disk: the finished session is in the fsynced log
                logger.info("session %s: checkpoint of %s failed (%s); the session is saved in its "
                            "write-ahead log", self.session_id, self.path, exc)
        logger.info("session %s %s", self.session_id, status)

    def close(self) -> None:
        """Closes the connection (idempotent). An unfinished session stays readable as "incomplete"."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._hold is not None:
                self._hold.release()
                self._hold = None
