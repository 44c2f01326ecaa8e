"""Crash-safe session store: one SQLite database, ``<home>/sessions.db``, holding every session.

Why SQLite in WAL mode with ``synchronous=FULL``: each segment is committed as its own short
transaction and the write-ahead log is fsynced at every commit, so ``kill -9`` (or a power cut) in the
middle of ``idme listen`` loses at most the segment being written. WAL also lets readers
(``idme sessions list``) run while a listener writes, and ``busy_timeout`` + ``BEGIN IMMEDIATE``
lets two listeners share one store without "database is locked" failures
(https://www.sqlite.org/wal.html, https://www.sqlite.org/lang_transaction.html).

Privacy: the file is created 0600 (SQLite gives its -wal/-shm files the same mode), deleted rows are
overwritten with zeros (``secure_delete``), and :meth:`SessionStore.delete` rebuilds the file
(``VACUUM``) and truncates the log, so a deleted session leaves no bytes behind.

Layout::

    sessions (id, created_at, status, duration_s, source, settings, models, writer_*)
    segments (session_id, seg_id, start_s, end_s, speaker, kind, score, final, text, words)
    speakers (session_id, label, kind, n, dim, embeddings float32 (n, dim) blob, centroid float32 (dim,))
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import os
import secrets
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SessionError, StoreError
from ..paths import home_dir

logger = logging.getLogger(__name__)

#: File name of the store inside the idme home.
DB_FILENAME = "sessions.db"
#: Bumped whenever the tables change; a store written by a newer idme is refused, not misread.
SCHEMA_VERSION = 1
#: Speaker kinds, in the order speakers are listed (owner first, then enrolled people, then unknowns).
KINDS = ("me", "enrolled", "unknown")
#: Session status values. "incomplete" is never stored: it is how a session whose writer died without
#: calling :meth:`SessionWriter.finish` is reported.
STATUSES = ("running", "complete", "interrupted", "incomplete")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        id           TEXT PRIMARY KEY,
        created_at   TEXT NOT NULL,             -- ISO 8601, UTC, microseconds
        status       TEXT NOT NULL,             -- running | complete | interrupted
        duration_s   REAL,                      -- NULL until finish()
        finished_at  TEXT,
        source       TEXT NOT NULL DEFAULT '',
        settings     TEXT NOT NULL,             -- JSON object
        models       TEXT NOT NULL,             -- JSON object
        writer_host  TEXT NOT NULL DEFAULT '',  -- who writes it, to tell "running" from "crashed"
        writer_pid   INTEGER NOT NULL DEFAULT 0,
        writer_start TEXT NOT NULL DEFAULT ''   -- process start time (Linux), guards against pid reuse
    )""",
    "CREATE INDEX IF NOT EXISTS sessions_by_created ON sessions(created_at, id)",
    """CREATE TABLE IF NOT EXISTS segments (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        seg_id     INTEGER NOT NULL,
        start_s    REAL NOT NULL,
        end_s      REAL NOT NULL,
        speaker    TEXT NOT NULL,
        kind       TEXT NOT NULL,
        score      REAL NOT NULL,
        final      INTEGER NOT NULL,
        text       TEXT NOT NULL DEFAULT '',
        words      TEXT NOT NULL DEFAULT '[]',  -- JSON list of {word, start, end, conf}
        PRIMARY KEY (session_id, seg_id)
    )""",
    """CREATE TABLE IF NOT EXISTS speakers (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        label      TEXT NOT NULL,
        kind       TEXT NOT NULL,
        n          INTEGER NOT NULL,            -- rows of embeddings
        dim        INTEGER NOT NULL,
        embeddings BLOB,                        -- little-endian float32, shape (n, dim)
        centroid   BLOB,                        -- little-endian float32, shape (dim,)
        PRIMARY KEY (session_id, label)
    )""",
)


# --------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the session."""

    #: The word as the recogniser wrote it (Whisper words keep their leading space).
    word: str
    #: Start time, s.
    start: float
    #: End time, s.
    end: float
    #: Recogniser confidence in [0, 1], or None when it gives none.
    conf: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """One labelled speech segment with its latest label and transcript."""

    #: Identifier, unique within the session.
    seg_id: int
    #: Start time, s from the start of the session.
    start: float
    #: End time, s.
    end: float
    #: Display label: "Me", an enrolled name, or "Speaker N".
    speaker: str
    #: "me" | "enrolled" | "unknown".
    kind: str
    #: Score of the decision (cosine similarity to the chosen speaker).
    score: float
    #: False while the label is interim (a later re-clustering may change it).
    final: bool
    #: Transcript, "" until (or unless) transcription lands.
    text: str = ""
    #: Word timings, empty when the recogniser gives none.
    words: tuple[Word, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass(frozen=True)
class SpeakerInfo:
    """One speaker of a session, as listed in headers and ``idme sessions show``."""

    #: Display label.
    label: str
    #: "me" | "enrolled" | "unknown".
    kind: str
    #: Segments carrying this label.
    n_segments: int = 0
    #: Total speech, s.
    speech_s: float = 0.0
    #: Saved embeddings (see :meth:`SessionStore.speaker_embeddings`); 0 when none were saved.
    n_embeddings: int = 0
    #: Embedding dimension, 0 when none were saved.
    dim: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Session:
    """A whole session as read back from the store (or built by hand for exports)."""

    #: Session id, e.g. "20261121-054213-ab12" (UTC creation time + random suffix; sorts by time).
    id: str
    #: Creation time, ISO 8601 UTC.
    created_at: str
    #: One of :data:`STATUSES`.
    status: str
    #: Length of the session, s (for a session that never finished: end of its last segment).
    duration_s: float
    #: Where the audio came from, e.g. "microphone: MacBook Pro Microphone" or a file path.
    source: str = ""
    #: Settings the session ran with (thresholds, options).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Model names and versions, e.g. {"encoder": {"name": "campplus", "version": "..."}, "asr": {...}}.
    models: dict[str, Any] = field(default_factory=dict)
    #: Speakers, owner first, then enrolled people, then unknown speakers in order of appearance.
    speakers: tuple[SpeakerInfo, ...] = ()
    #: Segments sorted by start time, each with its latest (final when re-clustered) label.
    segments: tuple[Segment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "duration_s": self.duration_s,
            "status": self.status,
            "source": self.source,
            "settings": self.settings,
            "models": self.models,
            "speakers": [s.to_dict() for s in self.speakers],
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``idme sessions list``."""

    #: Session id.
    id: str
    #: Creation time, ISO 8601 UTC.
    created_at: str
    #: Length, s (end of the last segment when the session never finished).
    duration_s: float
    #: Number of segments.
    n_segments: int
    #: Speaker labels, owner first, then enrolled, then unknown in order of appearance.
    speakers: tuple[str, ...]
    #: One of :data:`STATUSES`.
    status: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speakers"] = builtins.list(self.speakers)
        return d


# --------------------------------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------------------------------


class SessionStore:
    """All sessions of one idme home, in ``<home>/sessions.db``.

    Reads and maintenance (get, list, delete, rename) go through this object; a running session writes
    through the :class:`SessionWriter` that :meth:`create` returns, on its own connection, so a
    listener's writer thread and a reader never share a connection.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 10.0) -> None:
        """home: the idme home (``--home``), else ``$IDME_HOME``, else the platform default.

        busy_timeout_s: how long a write waits for another process's transaction before failing.
        Raises StoreError with one line when the home or the database cannot be created or written.
        """
        self.home = home_dir(home)
        self.path = self.home / DB_FILENAME
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self.path, busy_timeout_s)

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
        settings_json = _to_json(dict(settings or {}), "settings")
        models_json = _to_json(dict(models or {}), "models")
        host, pid, started = _this_process()
        conn = _connect(self.path, self.busy_timeout_s)
        try:
            for _ in range(5):  # the 16-bit random suffix collides only when many start in one second
                now = datetime.now(timezone.utc)
                session_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
                try:
                    with _transaction(conn, self.path, "creating a session"):
                        conn.execute(
                            "INSERT INTO sessions (id, created_at, status, source, settings, models,"
                            " writer_host, writer_pid, writer_start) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                            (session_id, now.isoformat(timespec="microseconds"), str(source), settings_json,
                             models_json, host, pid, started))
                    break
                except _IdCollision:
                    continue
            else:  # pragma: no cover - needs five collisions in a row
                raise StoreError(f"could not pick a free session id in {self.path}; try again")
        except BaseException:
            conn.close()
            raise
        logger.info("session %s started in %s", session_id, self.path)
        return SessionWriter(conn, self.path, session_id)

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
        segments = tuple(_segment_from_row(r) for r in seg_rows)
        status = _effective_status(row[2], row[7], row[8], row[9])
        last_end = max((s.end for s in segments), default=0.0)
        return Session(
            id=row[0], created_at=row[1], status=status,
            duration_s=float(row[3]) if row[3] is not None else last_end,
            source=row[4], settings=json.loads(row[5]), models=json.loads(row[6]),
            speakers=_speaker_infos(segments, spk_rows), segments=segments)

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
                n_segments=int(n_seg), speakers=_ordered_labels(by_session.get(sid, [])),
                status=_effective_status(status, host, pid, started)))
        return out

    def speaker_embeddings(self, session_id: str, label: str) -> np.ndarray:
        """Saved embeddings of one speaker: float32, shape (n, dim), one row per window."""
        with self._read("reading speaker embeddings") as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute("SELECT n, dim, embeddings FROM speakers WHERE session_id = ? AND label = ?",
                               (sid, label)).fetchone()
            if row is None:
                saved = [r[0] for r in conn.execute(
                    "SELECT label FROM speakers WHERE session_id = ? ORDER BY label", (sid,))]
                raise SessionError(f"no saved embeddings for speaker '{label}' in session {sid}; "
                                   f"saved: {', '.join(saved) or 'none'}")
        return _array_from_blob(row[2], (row[0], row[1]))

    # ---- maintenance ------------------------------------------------------------------------------

    def rename_speaker(self, session_id: str, old_label: str, new_label: str, kind: str = "enrolled") -> int:
        """Relabels every segment of ``old_label`` as ``new_label`` (kind ``kind``); returns how many.

        Used by ``idme name SESSION "Speaker 2" alice``. When ``new_label`` already exists in the session,
        the two speakers are merged (their saved embeddings are concatenated).
        """
        new_label = _clean_label(new_label)
        _check_kind(kind)
        with self._write(f"renaming speaker '{old_label}'") as conn:
            sid = self._resolve(conn, session_id)
            n_seg = conn.execute("SELECT COUNT(*) FROM segments WHERE session_id = ? AND speaker = ?",
                                 (sid, old_label)).fetchone()[0]
            old_row = conn.execute("SELECT n, dim, embeddings FROM speakers WHERE session_id = ? AND label = ?",
                                   (sid, old_label)).fetchone()
            if n_seg == 0 and old_row is None:
                labels = sorted({r[0] for r in conn.execute(
                    "SELECT speaker FROM segments WHERE session_id = ? UNION SELECT label FROM speakers"
                    " WHERE session_id = ?", (sid, sid))})
                raise SessionError(f"no speaker '{old_label}' in session {sid}; "
                                   f"speakers: {', '.join(labels) or 'none'}")
            conn.execute("UPDATE segments SET speaker = ?, kind = ? WHERE session_id = ? AND speaker = ?",
                         (new_label, kind, sid, old_label))
            if old_row is not None and new_label != old_label:
                new_row = conn.execute("SELECT n, dim, embeddings FROM speakers WHERE session_id = ? AND label = ?",
                                       (sid, new_label)).fetchone()
                if new_row is None:
                    conn.execute("UPDATE speakers SET label = ?, kind = ? WHERE session_id = ? AND label = ?",
                                 (new_label, kind, sid, old_label))
                else:
                    merged = _merge_embeddings(new_row, old_row)
                    conn.execute("DELETE FROM speakers WHERE session_id = ? AND label IN (?, ?)",
                                 (sid, old_label, new_label))
                    _put_speaker(conn, sid, new_label, kind, merged)
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
        """
        with self._write("deleting a session") as conn:
            sid = self._resolve(conn, session_id)
            row = conn.execute("SELECT status, writer_host, writer_pid, writer_start FROM sessions WHERE id = ?",
                               (sid,)).fetchone()
            if _effective_status(*row) == "running":
                raise SessionError(f"session {sid} is still being recorded (process {row[2]}); stop it first")
            # Children first, so this does not depend on the foreign_keys pragma.
            conn.execute("DELETE FROM segments WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
        # secure_delete zeroed the freed cells, but earlier page images still sit in the WAL and freed
        # pages in the file: VACUUM rebuilds the file, TRUNCATE checkpoints and empties the log.
        with self._lock:
            try:
                self._db.execute("VACUUM")
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path, f"compacting the store after deleting session {sid}") from exc
        logger.info("session %s deleted", sid)
        if busy:
            logger.warning("session %s deleted, but another process holds %s open; its old pages leave the "
                           "write-ahead log when that process checkpoints or exits", sid, self.path)
        return not busy

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
                _rollback(conn)
                if isinstance(exc, sqlite3.Error):
                    raise _store_error(exc, self.path, action) from exc
                raise

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            with _transaction(self._db, self.path, action):
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
    """Writes one running session. Every call is one committed transaction.

    Thread-safe (one lock), so it may be created on one thread and fed from the pipeline's sink thread.
    Use as a context manager: leaving the block because of an exception finishes the session as
    "interrupted"; otherwise call :meth:`finish` yourself.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, session_id: str) -> None:
        self._conn: sqlite3.Connection | None = conn
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
            with _transaction(self._conn, self.path, f"{action} (session {self.session_id})"):
                yield self._conn

    def upsert_segment(self, seg: Mapping[str, Any]) -> None:
        """Inserts a segment event, or replaces the one with the same ``seg_id``; committed on return.

        seg: {seg_id, start, end, speaker, kind, score, final, text, words}; other keys are ignored.
        An event with empty text (or no words) keeps the text (words) already stored: "" means
        "not transcribed yet", so a re-emitted label must not erase a transcript that landed first.
        """
        row = _segment_row(seg)
        with self._tx(f"saving segment {row[0]}") as conn:
            conn.execute(
                "INSERT INTO segments (session_id, seg_id, start_s, end_s, speaker, kind, score, final, text,"
                " words) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id, seg_id) DO UPDATE SET start_s = excluded.start_s,"
                " end_s = excluded.end_s, speaker = excluded.speaker, kind = excluded.kind,"
                " score = excluded.score, final = excluded.final,"
                " text = CASE WHEN excluded.text <> '' THEN excluded.text ELSE segments.text END,"
                " words = CASE WHEN excluded.words <> '[]' THEN excluded.words ELSE segments.words END",
                (self.session_id, *row))

    def set_text(self, seg_id: int, text: str, words: Iterable[Mapping[str, Any]] = ()) -> bool:
        """Stores the transcript of a segment; False (and a log line) when the segment is unknown."""
        words_json = _words_json(words, seg_id)
        with self._tx(f"saving the transcript of segment {seg_id}") as conn:
            cur = conn.execute("UPDATE segments SET text = ?, words = ? WHERE session_id = ? AND seg_id = ?",
                               (str(text), words_json, self.session_id, int(seg_id)))
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
            _check_kind(kind)
            rows.append((_clean_label(speaker), kind, _finite(score, "score", seg_id), self.session_id, int(seg_id)))
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

        speakers: label -> {"kind", "embeddings": float32 (n, d) or None, "centroid": float32 (d,) or None}.
        A missing centroid is the L2-normalised mean of the embeddings.
        """
        prepared = []
        for label, info in speakers.items():
            kind = info.get("kind", "unknown")
            _check_kind(kind)
            prepared.append((_clean_label(label), kind, _speaker_arrays(label, info)))
        with self._tx(f"saving {len(prepared)} speakers") as conn:
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (self.session_id,))
            for label, kind, arrays in prepared:
                _put_speaker(conn, self.session_id, label, kind, arrays)

    def finish(self, status: str = "complete", duration_s: float | None = None) -> None:
        """Marks the session "complete" or "interrupted" and records its length.

        duration_s: length of the audio processed, s; defaults to the end of the last segment.
        """
        if status not in ("complete", "interrupted"):
            raise SessionError(f"finish status must be 'complete' or 'interrupted', got '{status}'")
        with self._tx("finishing") as conn:
            if duration_s is None:
                duration_s = conn.execute("SELECT COALESCE(MAX(end_s), 0) FROM segments WHERE session_id = ?",
                                          (self.session_id,)).fetchone()[0]
            conn.execute("UPDATE sessions SET status = ?, duration_s = ?, finished_at = ? WHERE id = ?",
                         (status, _finite(duration_s, "duration_s"), _utc_now(), self.session_id))
        self._finished = True
        logger.info("session %s %s", self.session_id, status)

    def close(self) -> None:
        """Closes the connection (idempotent). An unfinished session stays readable as "incomplete"."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# --------------------------------------------------------------------------------------------------
# SQLite plumbing
# --------------------------------------------------------------------------------------------------


class _IdCollision(Exception):
    """The random session id is taken; pick another."""


def _connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Opens (creating 0600 if needed) the store with the durability and privacy pragmas set."""
    try:
        # Create the file ourselves: SQLite would create it 0644 under the usual umask, and it gives the
        # -wal and -shm files the mode of the main file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        _restrict_mode(path)
    except OSError as exc:
        raise StoreError(f"cannot open the session store {path}: {exc.strerror}; "
                         "set IDME_HOME or --home to a writable directory") from exc
    # isolation_level=None: the sqlite3 module must not open transactions behind our back; every
    # write below is an explicit BEGIN IMMEDIATE ... COMMIT.
    conn = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("%s: the file system does not support SQLite's write-ahead log; using journal "
                           "mode %s (still durable, slower with several writers)", path, mode)
        for pragma in ("synchronous=FULL",      # fsync the log at every commit: a commit survives a crash
                       "foreign_keys=ON",
                       "secure_delete=ON",      # overwrite deleted rows with zeros (voiceprints, transcripts)
                       "temp_store=MEMORY"):    # VACUUM's temporary copy stays out of /tmp
            conn.execute(f"PRAGMA {pragma}")
        _ensure_schema(conn, path)
        for suffix in ("-wal", "-shm"):
            _restrict_mode(Path(f"{path}{suffix}"))
    except sqlite3.Error as exc:
        conn.close()
        raise _store_error(exc, path, "opening the session store") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer idme (store version {version}); upgrade idme")
    if version == SCHEMA_VERSION:
        return
    with _transaction(conn, path, "creating the session store"):
        # Re-read under the write lock: another process may have created the tables meanwhile.
        if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


@contextmanager
def _transaction(conn: sqlite3.Connection, path: Path, action: str) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; rolls back and maps SQLite errors to StoreError / SessionError.

    IMMEDIATE takes the write lock up front, so the busy timeout covers the wait; a deferred
    transaction that upgrades from read to write can fail at once with SQLITE_BUSY in WAL mode.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        _rollback(conn)
        if isinstance(exc, sqlite3.IntegrityError):
            if "UNIQUE" in str(exc) and "sessions.id" in str(exc):
                raise _IdCollision() from exc
            if "FOREIGN KEY" in str(exc):
                raise SessionError(f"{action} failed: the session no longer exists in {path} (deleted?)") from exc
            raise SessionError(f"{action} failed: {exc}") from exc
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc, path, action) from exc
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite may already have rolled back (e.g. after SQLITE_FULL)
            pass


def _store_error(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
    """One actionable line for a SQLite failure (Python < 3.11 has no error codes: match the text)."""
    msg = str(exc)
    low = msg.lower()
    if "full" in low:
        text = (f"{action} failed: the disk holding {path} is full; everything saved before is kept. "
                "Free some space and start again")
    elif "locked" in low or "busy" in low:
        text = f"{action} failed: {path} is locked by another process; try again"
    elif "readonly" in low or "read-only" in low:
        text = f"{action} failed: {path} is read-only; set IDME_HOME or --home to a writable directory"
    elif "not a database" in low or "malformed" in low:
        text = f"{action} failed: {path} is damaged ({msg}); move it away to start a new store"
    elif "unable to open" in low:
        text = f"{action} failed: cannot open {path}; set IDME_HOME or --home to a writable directory"
    else:
        text = f"{action} failed on {path}: {msg}"
    return StoreError(text)


def _restrict_mode(path: Path) -> None:
    """chmod 0600 a store file we own that is readable by others (it holds voiceprints)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
        os.chmod(path, 0o600)


# --------------------------------------------------------------------------------------------------
# Which process writes a session (to tell a live session from a crashed one)
# --------------------------------------------------------------------------------------------------


def _this_process() -> tuple[str, int, str]:
    pid = os.getpid()
    return socket.gethostname(), pid, _linux_start_time(pid)[1] or ""


def _linux_start_time(pid: int) -> tuple[str, str | None]:
    """(state, start time in clock ticks) from /proc/<pid>/stat; ("", None) when not on Linux / gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return "", None
    # Field 2 (comm) is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("", None)


def _writer_alive(host: str, pid: int, started: str) -> bool:
    if not pid or host != socket.gethostname():
        return True  # another machine (or unknown): cannot tell, so do not call it dead
    if sys.platform.startswith("linux"):
        state, ticks = _linux_start_time(pid)
        if ticks is None or state in ("Z", "X"):  # gone, or a zombie nobody has reaped yet
            return False
        return not started or ticks == started  # a different start time: the pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. Windows semantics
        return True
    return True


def _effective_status(status: str, host: str, pid: int, started: str) -> str:
    if status == "running" and not _writer_alive(host, pid, started):
        return "incomplete"
    return status


# --------------------------------------------------------------------------------------------------
# Rows <-> values
# --------------------------------------------------------------------------------------------------


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _to_json(value: dict[str, Any], what: str) -> str:
    try:
        # default=str: a Path or enum in the settings is recorded as text rather than refused.
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError as exc:
        raise SessionError(f"{what} cannot be saved as JSON: {exc}") from exc


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise SessionError(f"speaker kind must be one of {', '.join(KINDS)}, got '{kind}'")


def _clean_label(label: Any) -> str:
    """Labels end up in one-line formats (txt, srt, rttm): no newlines, no surrounding blanks."""
    text = " ".join(str(label).split())
    if not text:
        raise SessionError("speaker label must not be empty")
    return text


def _finite(value: Any, name: str, seg_id: Any = None) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        where = f"segment {seg_id}: " if seg_id is not None else ""
        raise SessionError(f"{where}{name} must be a finite number, got {value!r}")
    return x


def _words_json(words: Iterable[Mapping[str, Any]] | None, seg_id: Any) -> str:
    out = []
    for w in words or ():
        try:
            conf = w.get("conf", w.get("probability"))  # faster-whisper calls it probability
            out.append({"word": str(w["word"]), "start": _finite(w["start"], "word start", seg_id),
                        "end": _finite(w["end"], "word end", seg_id),
                        "conf": None if conf is None else _finite(conf, "word conf", seg_id)})
        except KeyError as exc:
            raise SessionError(f"segment {seg_id}: a word has no '{exc.args[0]}'") from None
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _segment_row(seg: Mapping[str, Any]) -> tuple[Any, ...]:
    """(seg_id, start, end, speaker, kind, score, final, text, words_json) from a segment event."""
    try:
        seg_id = int(seg["seg_id"])
        start, end = _finite(seg["start"], "start", seg_id), _finite(seg["end"], "end", seg_id)
        speaker, kind = _clean_label(seg["speaker"]), seg["kind"]
    except KeyError as exc:
        raise SessionError(f"segment event has no '{exc.args[0]}': {dict(seg)!r}"[:200]) from None
    _check_kind(kind)
    if end < start:
        raise SessionError(f"segment {seg_id}: end {end:.3f} s is before start {start:.3f} s")
    return (seg_id, start, end, speaker, kind, _finite(seg.get("score", 0.0), "score", seg_id),
            int(bool(seg.get("final", False))), str(seg.get("text") or ""),
            _words_json(seg.get("words"), seg_id))


def _segment_from_row(r: tuple[Any, ...]) -> Segment:
    words = tuple(Word(w["word"], w["start"], w["end"], w.get("conf")) for w in json.loads(r[8]))
    return Segment(seg_id=r[0], start=r[1], end=r[2], speaker=r[3], kind=r[4], score=r[5], final=bool(r[6]),
                   text=r[7], words=words)


def _kind_order(kind: str) -> int:
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def _ordered_labels(rows: Iterable[tuple[str, str, int, float]]) -> tuple[str, ...]:
    """Labels from (label, kind, n, first_start) rows: owner, enrolled, unknown; then by first appearance."""
    best: dict[str, tuple[int, str, float]] = {}
    for label, kind, n, first in rows:
        n0, kind0, first0 = best.get(label, (0, kind, first))
        best[label] = (n0 + n, kind if n > n0 else kind0, min(first, first0))
    return tuple(sorted(best, key=lambda lab: (_kind_order(best[lab][1]), best[lab][2], lab)))


def _speaker_infos(segments: tuple[Segment, ...], spk_rows: Iterable[tuple[str, str, int, int]]) -> tuple[SpeakerInfo, ...]:
    kinds: dict[str, dict[str, int]] = {}
    stats: dict[str, list[float]] = {}  # label -> [n_segments, speech_s, first_start]
    for s in segments:
        kinds.setdefault(s.speaker, {}).setdefault(s.kind, 0)
        kinds[s.speaker][s.kind] += 1
        st = stats.setdefault(s.speaker, [0, 0.0, s.start])
        st[0] += 1
        st[1] += s.end - s.start
    saved = {label: (kind, n, dim) for label, kind, n, dim in spk_rows}
    infos = []
    for label in dict.fromkeys([*stats, *saved]):
        n_seg, speech, first = stats.get(label, [0, 0.0, math.inf])
        if label in saved:
            kind, n_emb, dim = saved[label]
        else:
            kind, n_emb, dim = max(kinds[label].items(), key=lambda kv: kv[1])[0], 0, 0
        infos.append((first, SpeakerInfo(label, kind, int(n_seg), round(speech, 3), n_emb, dim)))
    infos.sort(key=lambda fi: (_kind_order(fi[1].kind), fi[0], fi[1].label))
    return tuple(info for _, info in infos)


def _speaker_arrays(label: str, info: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """(embeddings float32 (n, d), centroid float32 (d,) or None), validated."""
    emb = info.get("embeddings")
    cen = info.get("centroid")
    emb = np.zeros((0, 0), np.float32) if emb is None else np.asarray(emb, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2:
        raise SessionError(f"speaker '{label}': embeddings must have shape (n, dim), got {emb.shape}")
    if cen is not None:
        cen = np.asarray(cen, dtype=np.float32).reshape(-1)
    elif len(emb):
        mean = emb.mean(axis=0)
        cen = mean / max(float(np.linalg.norm(mean)), 1e-12)
    if cen is not None and len(emb) and cen.shape[0] != emb.shape[1]:
        raise SessionError(f"speaker '{label}': centroid has {cen.shape[0]} values, embeddings {emb.shape[1]}")
    if not np.all(np.isfinite(emb)) or (cen is not None and not np.all(np.isfinite(cen))):
        raise SessionError(f"speaker '{label}': embeddings contain NaN or infinity")
    return emb, cen


def _put_speaker(conn: sqlite3.Connection, session_id: str, label: str, kind: str,
                 arrays: tuple[np.ndarray, np.ndarray | None]) -> None:
    emb, cen = arrays
    dim = emb.shape[1] if len(emb) else (0 if cen is None else cen.shape[0])
    conn.execute("INSERT INTO speakers (session_id, label, kind, n, dim, embeddings, centroid)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (session_id, label, kind, int(len(emb)), int(dim),
                  emb.astype("<f4").tobytes() if len(emb) else None,
                  None if cen is None else cen.astype("<f4").tobytes()))


def _array_from_blob(blob: bytes | None, shape: tuple[int, int]) -> np.ndarray:
    n, dim = shape
    if blob is None or n == 0:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(blob, dtype="<f4").reshape(n, dim).astype(np.float32)


def _merge_embeddings(a: tuple[int, int, bytes | None], b: tuple[int, int, bytes | None]) -> tuple[np.ndarray, np.ndarray | None]:
    """Embeddings of two speakers found to be one person; the centroid is recomputed from all rows."""
    ea, eb = _array_from_blob(a[2], (a[0], a[1])), _array_from_blob(b[2], (b[0], b[1]))
    if len(ea) and len(eb) and ea.shape[1] != eb.shape[1]:
        raise SessionError(f"cannot merge speakers with {ea.shape[1]}- and {eb.shape[1]}-dim embeddings")
    both = np.concatenate([e for e in (ea, eb) if len(e)]) if (len(ea) or len(eb)) else ea
    return _speaker_arrays("merged", {"embeddings": both})
