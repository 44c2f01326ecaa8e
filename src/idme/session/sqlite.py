"""SQLite plumbing of the session store: schema, connection pragmas, transactions, error mapping.

Why WAL with ``synchronous=NORMAL`` while a session records: in WAL mode a commit is an append to the
log, and with NORMAL the log is fsynced only at checkpoints, not at every commit. A commit still survives
``kill -9`` of the writer (the bytes are in the OS page cache, which the kernel writes out); only a
power cut or OS crash can roll back the last few commits, never corrupt the file
(https://www.sqlite.org/pragma.html#pragma_synchronous, https://www.sqlite.org/wal.html). That costs
~0.2 ms per event instead of ~4 ms with FULL (review 2026-12-01, §1.8). ``SessionWriter.finish`` switches
its connection to FULL and checkpoints, so a finished session is on disk for good; maintenance
(rename, delete) always runs with FULL. WAL also lets readers (``idme sessions list``) run while a
listener writes, and ``busy_timeout`` + ``BEGIN IMMEDIATE`` lets two listeners share one store without
"database is locked" failures (https://www.sqlite.org/lang_transaction.html).

Privacy: the file is created 0600 (SQLite gives its -wal/-shm files the same mode) and deleted rows are
overwritten with zeros (``secure_delete``). It is encrypted with SQLCipher 4 (``sqlcipher3``; AES-256-CBC per
page with an HMAC-SHA512 per page, https://www.zetetic.net/sqlcipher/design/) under a raw 256-bit key that
:func:`idme.vault.db_key` derives from the home's data key (HMAC-SHA256 with label ``idme/sessions.db``), so
the database key is never the key that seals the profile files. The -wal file holds encrypted pages too. A
plaintext store from before (its first 16 bytes are ``SQLite format 3\0``) is encrypted on first open
(:func:`encrypt_plaintext`, crash-safe), and key rotation rekeys it (:func:`rekey`).

Layout::

    sessions (id, created_at, status, duration_s, source, settings, models, writer_*)
    segments (session_id, seg_id, start_s, end_s, speaker, kind, score, final, text, words)
    speakers (session_id, label, kind, n, dim, embeddings float32 (n, dim) blob, centroid float32 (dim,),
              durations float32 (n,) blob)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import sqlcipher3

from ..errors import SessionError, StoreError

logger = logging.getLogger(__name__)

#: Bumped whenever the tables change incompatibly; a store written by a newer idme is refused, not misread.
#: A nullable column added later (:data:`_ADDED_COLUMNS`) does not bump it: an older idme names the
#: columns it reads and writes, so it still reads such a store correctly and leaves the new column NULL.
SCHEMA_VERSION = 1

#: Nullable columns added since version 1: (table, column, type). Existing stores get them on open.
_ADDED_COLUMNS = (
    ("speakers", "durations", "BLOB"),  # seconds of speech behind each embedding (naming weights by them)
)

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
        durations  BLOB,                        -- little-endian float32, shape (n,), s; NULL if not kept
        PRIMARY KEY (session_id, label)
    )""",
)


#: Exceptions of either SQLite module: the store runs on ``sqlcipher3``, whose classes are not sqlite3's.
DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, sqlcipher3.Error)
INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, sqlcipher3.IntegrityError)
#: The first 16 bytes of every plaintext SQLite database file.
PLAINTEXT_HEADER = b"SQLite format 3\x00"
#: Test hook: called with a stage name ("checkpointed", "exported", "synced", "renamed") while a plaintext
#: store is encrypted (tests kill the process there).
migration_hook: Callable[[str], None] | None = None


class IdCollision(Exception):
    """The random session id is taken; pick another."""


#: ``PRAGMA synchronous`` levels a connection may ask for.
SYNCHRONOUS = ("NORMAL", "FULL")


def _key_sql(key: bytes) -> str:
    if len(key) != 32:
        raise ValueError("a SQLCipher raw key is 32 bytes")
    return f"\"x'{key.hex()}'\""


def is_plaintext(path: Path) -> bool:
    """True when ``path`` is an unencrypted SQLite database (from before issue 14)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == PLAINTEXT_HEADER
    except OSError:
        return False


def _open_keyed(path: Path, key: bytes | None, busy_timeout_s: float):
    conn = sqlcipher3.connect(str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")  # wrong-key attempts must not print to stderr
        if key is not None:
            conn.execute(f"PRAGMA key = {_key_sql(key)}")  # must be the first statement on the database
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads page 1: fails on a wrong key
    except BaseException:
        conn.close()
        raise
    return conn


def open_raw(path: Path, keys: Sequence[bytes] | None, busy_timeout_s: float = 5.0):
    """A bare ``sqlcipher3`` connection to ``path`` under the first of ``keys`` that decrypts it (no
    pragmas, no schema); ``keys`` None: a plaintext database. StoreError when none does."""
    last: Exception | None = None
    for key in (list(keys) if keys is not None else [None]):
        try:
            return _open_keyed(path, key, busy_timeout_s)
        except sqlcipher3.DatabaseError as exc:
            if "not a database" not in str(exc).lower():
                raise
            last = exc
    raise StoreError(f"{path.name} does not decrypt with this home's key: {path} is under another key or "
                     f"damaged ({last}); restore the keys.json that goes with it, or move it away to start a new "
                     "store (nothing was changed)")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def encrypt_plaintext(path: Path, key: bytes, busy_timeout_s: float = 10.0) -> None:
    """Replaces the plaintext store ``path`` by a SQLCipher copy under ``key``.

    Crash-safe: the log is checkpointed into the file, the copy is written beside it
    (``sqlcipher_export``), fsynced and renamed over the old file, so ``kill -9`` at any point leaves
    either the whole plaintext store (encrypted on the next open) or the whole encrypted one."""
    tmp = path.with_name(path.name + ".enc.tmp")
    for leftover in (tmp, Path(f"{tmp}-journal")):
        leftover.unlink(missing_ok=True)  # from an interrupted earlier run: it was never renamed
    logger.warning("encrypting the plaintext session store %s (issue 14)", path)
    hook = migration_hook or (lambda stage: None)
    conn = sqlcipher3.connect(str(path), timeout=busy_timeout_s, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        hook("checkpointed")
        conn.execute(f"ATTACH DATABASE ? AS enc KEY {_key_sql(key)}", (str(tmp),))
        conn.execute("SELECT sqlcipher_export('enc')")
        conn.execute(f"PRAGMA enc.user_version = {version}")  # sqlcipher_export does not copy it
        conn.execute("DETACH DATABASE enc")
        hook("exported")
    except BaseException:
        conn.close()
        tmp.unlink(missing_ok=True)
        raise
    conn.close()  # the last connection removes the (checkpointed, empty) log
    restrict_mode(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    hook("synced")
    for suffix in ("-wal", "-shm"):  # the plaintext store's: fully checkpointed above, nothing in them
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    hook("renamed")


def rekey(path: Path, old_keys: Sequence[bytes], new_key: bytes, busy_timeout_s: float = 10.0) -> bool:
    """Re-encrypts the store under ``new_key`` (``PRAGMA rekey``: one transaction, so a crash leaves it
    whole under the old or the new key); True if it was rekeyed, False if already under ``new_key`` or absent.
    A plaintext store is left for :func:`connect` to encrypt."""
    if not path.exists() or path.stat().st_size == 0 or is_plaintext(path):
        return False
    try:
        _open_keyed(path, new_key, busy_timeout_s).close()
        return False  # already under the new key (a rotation that was interrupted after the rekey)
    except sqlcipher3.DatabaseError as exc:
        if "not a database" not in str(exc).lower():
            raise
    conn = open_raw(path, list(old_keys), busy_timeout_s)
    try:
        conn.execute(f"PRAGMA rekey = {_key_sql(new_key)}")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True
    finally:
        conn.close()


def connect(path: Path, busy_timeout_s: float, synchronous: str = "FULL",
            keys: Sequence[bytes] | None = None) -> sqlite3.Connection:
    """Opens (creating 0600 if needed) the store with the durability and privacy pragmas set.

    keys: SQLCipher raw keys (:func:`idme.vault.db_key`), the current one first (during a key rotation the
    previous one follows); the store is opened under the first that decrypts it, and a plaintext store is
    encrypted under the first. None: an unencrypted store (benchmarks only).

    synchronous: "FULL" (fsync the log at every commit) or "NORMAL" (fsync at checkpoints only; a
    session writer while recording). NORMAL is used only in WAL mode: with a rollback journal it could
    corrupt the file on a power cut, so such a connection stays FULL.
    """
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
    try:
        # Create the file ourselves: SQLite would create it 0644 under the usual umask, and it gives the
        # -wal and -shm files the mode of the main file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        restrict_mode(path)
    except OSError as exc:
        raise StoreError(f"cannot open the session store {path}: {exc.strerror}; "
                         "set IDME_HOME or --home to a writable directory") from exc
    # isolation_level=None: the sqlite3 module must not open transactions behind our back; every
    # write below is an explicit BEGIN IMMEDIATE ... COMMIT.
    try:
        if keys is not None and is_plaintext(path):
            from .._fs import process_lock

            # Two processes opening a plaintext store at once would both export it to the same temporary
            # copy; the second, after waiting, finds it already encrypted.
            with process_lock(path.parent):
                if is_plaintext(path):
                    encrypt_plaintext(path, keys[0], busy_timeout_s)
        conn = open_raw(path, keys, busy_timeout_s)
    except DB_ERRORS as exc:
        raise store_error(exc, path, "opening the session store") from exc
    except OSError as exc:
        raise StoreError(f"cannot encrypt the session store {path}: {exc.strerror or exc}") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            logger.warning("%s: the file system does not support SQLite's write-ahead log; using journal "
                           "mode %s (still durable, slower with several writers)", path, mode)
            synchronous = "FULL"
        for pragma in (f"synchronous={synchronous}",
                       "foreign_keys=ON",
                       "secure_delete=ON",      # overwrite deleted rows with zeros (voiceprints, transcripts)
                       "temp_store=MEMORY"):    # VACUUM's temporary copy stays out of /tmp
            conn.execute(f"PRAGMA {pragma}")
        ensure_schema(conn, path)
        for suffix in ("-wal", "-shm"):
            restrict_mode(Path(f"{path}{suffix}"))
    except DB_ERRORS as exc:
        conn.close()
        raise store_error(exc, path, "opening the session store") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Creates the tables of an empty store, adds the columns an older store lacks, refuses a newer one."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} was written by a newer idme (store version {version}); upgrade idme")
    if version < SCHEMA_VERSION:
        with transaction(conn, path, "creating the session store"):
            # Re-read under the write lock: another process may have created the tables meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    if _missing_columns(conn):
        with transaction(conn, path, "upgrading the session store"):
            for table, column, kind in _missing_columns(conn):  # again under the write lock
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    have: dict[str, set[str]] = {}
    for table, _, _ in _ADDED_COLUMNS:
        if table not in have:
            have[table] = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    return [(t, c, k) for t, c, k in _ADDED_COLUMNS if c not in have[t]]


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path, action: str) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT; rolls back and maps SQLite errors to StoreError / SessionError.

    IMMEDIATE takes the write lock up front, so the busy timeout covers the wait; a deferred
    transaction that upgrades from read to write can fail at once with SQLITE_BUSY in WAL mode.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("COMMIT")
    except BaseException as exc:
        rollback(conn)
        if isinstance(exc, INTEGRITY_ERRORS):
            if "UNIQUE" in str(exc) and "sessions.id" in str(exc):
                raise IdCollision() from exc
            if "FOREIGN KEY" in str(exc):
                raise SessionError(f"{action} failed: the session no longer exists in {path} (deleted?)") from exc
            raise SessionError(f"{action} failed: {exc}") from exc
        if isinstance(exc, DB_ERRORS):
            raise store_error(exc, path, action) from exc
        raise


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except DB_ERRORS:  # SQLite may already have rolled back (e.g. after SQLITE_FULL)
            pass


def store_error(exc: sqlite3.Error, path: Path, action: str) -> StoreError:
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


def restrict_mode(path: Path) -> None:
    """chmod 0600 a store file we own that is readable by others (it holds voiceprints)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and (not hasattr(os, "getuid") or st.st_uid == os.getuid()):
        os.chmod(path, 0o600)


def set_synchronous(conn: sqlite3.Connection, level: str) -> None:
    """Switches an open connection's ``PRAGMA synchronous`` (outside a transaction)."""
    if level not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {level!r}")
    conn.execute(f"PRAGMA synchronous={level}")


def checkpoint(conn: sqlite3.Connection, mode: str = "FULL") -> bool:
    """``PRAGMA wal_checkpoint(mode)``; True when every frame of the log reached the database file.

    FULL copies the whole log into the database file and fsyncs it (it waits, up to the busy timeout,
    for other connections' transactions to end); TRUNCATE also empties the log file. False means another
    connection kept part of the log (it is checkpointed later, by it or by the next checkpoint). A store
    that is not in WAL mode has nothing to checkpoint: True.
    """
    if mode not in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
        raise ValueError(f"unknown checkpoint mode {mode!r}")
    for attempt in range(10):
        busy, log_frames, done = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
        # SQLITE_BUSY comes back at once, without the busy handler, while another connection runs its own
        # (auto-)checkpoint; that one ends within milliseconds, so try again briefly.
        if not busy or mode == "PASSIVE":
            break
        time.sleep(0.02 * (attempt + 1))
    return not busy and (log_frames == -1 or done == log_frames)

