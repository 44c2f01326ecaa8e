"""The user's own data inside the session store (issue 14 item 3): the verification audit log, a person's
segments (for ``idme export-data``), forgetting a person in every session, and retention.

Everything goes through :class:`~idme.session.store.SessionStore`'s connection, so it is encrypted with the
rest of the database whenever the store is. The audit table is created here (``CREATE TABLE IF NOT EXISTS``)
rather than in the store's schema: an older idme simply does not see it.

Audit rows hold the time, the operation, the claimed name (verify) or best candidate (identify), the
decision, score, threshold and liveness outcome; never audio, embeddings or recognised text.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ..errors import SessionError
from .liveness import effective_status
from .store import SessionStore

#: What a forgotten person's name becomes in the audit log. Not a hash: names are few and guessable, so a
#: hash of one would be reversed by trying them.
FORGOTTEN = "forgotten"

_AUDIT_TABLE = """CREATE TABLE IF NOT EXISTS audit (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL,     -- ISO 8601 UTC
    op           TEXT NOT NULL,     -- verify | identify
    name         TEXT,              -- claimed name (verify), best candidate (identify), or 'forgotten'
    decision     TEXT NOT NULL,
    score        REAL,
    threshold    REAL,
    liveness     TEXT,              -- NULL (not asked), passed, replay, wrong_content, not_checked
    replay_score REAL
)"""


@dataclass(frozen=True)
class AuditEntry:
    """One verification attempt as the audit log keeps it."""

    #: Row number (grows with time).
    id: int
    #: When, ISO 8601 UTC.
    at: str
    #: "verify" or "identify".
    op: str
    #: The claimed profile (verify) or the best candidate (identify); "forgotten" after ``idme forget``.
    name: str | None
    decision: str
    score: float | None
    threshold: float | None
    #: None when no liveness was asked for; else passed / replay / wrong_content / not_checked.
    liveness: str | None
    replay_score: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ensure_audit(conn) -> None:
    conn.execute(_AUDIT_TABLE)


def liveness_outcome(check: Any) -> tuple[str | None, float | None]:
    """(liveness outcome, replay score) of a verify result; (None, None) for a check without liveness."""
    if str(check.decision).startswith("challenge_"):
        return check.decision, None
    if not hasattr(check, "replay_score"):
        return None, None
    if check.decision in ("replay", "wrong_content"):
        return check.decision, check.replay_score
    if check.decision == "accept":
        return "passed", check.replay_score
    return "not_checked", check.replay_score


def record_attempt(store: SessionStore, op: str, check: Any) -> None:
    """Appends one audit row for ``check`` (an ``identity.verify.Check`` or ``LiveCheck``)."""
    liveness, replay = liveness_outcome(check)
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    with store.transaction("writing the audit log") as conn:
        _ensure_audit(conn)
        conn.execute("INSERT INTO audit (at, op, name, decision, score, threshold, liveness, replay_score)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (at, op, check.name, check.decision, check.score, check.threshold, liveness,
                      None if replay is None else float(replay)))


def audit_entries(store: SessionStore, name: str | None = None) -> list[AuditEntry]:
    """Audit rows, oldest first; only ``name``'s when given."""
    with store.transaction("reading the audit log") as conn:
        _ensure_audit(conn)
        sql = "SELECT id, at, op, name, decision, score, threshold, liveness, replay_score FROM audit"
        rows = conn.execute(sql + (" WHERE name = ? ORDER BY id" if name else " ORDER BY id"),
                            (name,) if name else ()).fetchall()
    return [AuditEntry(*r) for r in rows]


def person_segments(store: SessionStore, label: str) -> list[dict[str, Any]]:
    """Every session where ``label`` speaks: {session_id, created_at, source, status, duration_s, label,
    segments: [their segments only]}, oldest first."""
    with store.reading("reading a person's sessions") as conn:
        sids = [r[0] for r in conn.execute(
            "SELECT DISTINCT s.id FROM sessions s JOIN segments g ON g.session_id = s.id WHERE g.speaker = ?"
            " UNION SELECT session_id FROM speakers WHERE label = ?", (label, label))]
    out = []
    for sid in sorted(sids):
        sess = store.get(sid)
        out.append({"session_id": sess.id, "created_at": sess.created_at, "source": sess.source,
                    "status": sess.status, "duration_s": sess.duration_s, "label": label,
                    "segments": [s.to_dict() for s in sess.segments if s.speaker == label]})
    return out


@dataclass(frozen=True)
class Forgotten:
    """What ``forget_in_sessions`` changed."""

    #: session id -> the "Speaker N" label the person now has there.
    relabelled: dict[str, str]
    #: Segments relabelled, speaker embedding rows deleted, audit rows anonymised.
    segments: int
    embeddings: int
    audit_rows: int
    #: False when a running session kept the store from being rebuilt (the old rows are zeroed, not compacted).
    scrubbed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _next_speaker(conn, sid: str) -> str:
    labels = [r[0] for r in conn.execute(
        "SELECT speaker FROM segments WHERE session_id = ? UNION SELECT label FROM speakers WHERE session_id = ?",
        (sid, sid))]
    nums = [int(m.group(1)) for lab in labels if (m := re.fullmatch(r"Speaker (\d+)", lab))]
    return f"Speaker {max(nums, default=0) + 1}"


def forget_in_sessions(store: SessionStore, label: str, name: str, drop_text: bool = False) -> Forgotten:
    """Relabels ``label``'s segments in every session to a fresh "Speaker N" (kind unknown), deletes the
    session speaker embeddings saved under ``label``, drops ``name`` from each session's recorded profile
    list and replaces it by "forgotten" in the audit log (``drop_text``: their segments' text and words are
    emptied too), in one transaction; then scrubs the file
    (``secure_delete`` zeroes the old cells, VACUUM drops the free pages, the log is truncated).

    Refuses (SessionError, nothing changed) while a session the person appears in is being recorded."""
    relabelled: dict[str, str] = {}
    n_seg = n_emb = n_audit = 0
    with store.transaction(f"forgetting {name}") as conn:
        _ensure_audit(conn)
        conn.execute("PRAGMA secure_delete=ON")  # set by connect() too; forget must not depend on it
        rows = conn.execute(
            "SELECT id, status, writer_host, writer_pid, writer_start, settings FROM sessions WHERE id IN"
            " (SELECT session_id FROM segments WHERE speaker = ? UNION SELECT session_id FROM speakers"
            " WHERE label = ?) OR settings LIKE ?", (label, label, f"%{json.dumps(name)[1:-1]}%")).fetchall()
        for sid, status, host, pid, started, _ in rows:
            if effective_status(status, host, pid, started) == "running":
                raise SessionError(f"session {sid} is still being recorded; stop it, then forget {name}")
        for sid, _, _, _, _, settings in rows:
            if conn.execute("SELECT 1 FROM segments WHERE session_id = ? AND speaker = ? UNION"
                            " SELECT 1 FROM speakers WHERE session_id = ? AND label = ?",
                            (sid, label, sid, label)).fetchone():
                new = _next_speaker(conn, sid)
                blank = ", text = '', words = '[]'" if drop_text else ""
                n_seg += conn.execute(f"UPDATE segments SET speaker = ?, kind = 'unknown'{blank} WHERE"
                                      " session_id = ? AND speaker = ?", (new, sid, label)).rowcount
                n_emb += conn.execute("DELETE FROM speakers WHERE session_id = ? AND label = ?",
                                      (sid, label)).rowcount
                relabelled[sid] = new
            cfg = json.loads(settings)
            if isinstance(cfg.get("profiles"), list) and name in cfg["profiles"]:
                cfg["profiles"] = [p for p in cfg["profiles"] if p != name]
                conn.execute("UPDATE sessions SET settings = ? WHERE id = ?",
                             (json.dumps(cfg, ensure_ascii=False, default=str), sid))
        n_audit = conn.execute("UPDATE audit SET name = ? WHERE name = ?", (FORGOTTEN, name)).rowcount
    scrubbed = store.scrub()
    return Forgotten(relabelled, n_seg, n_emb, n_audit, scrubbed)


@dataclass(frozen=True)
class Pruned:
    """What retention deleted."""

    #: Sessions deleted, oldest first.
    deleted: tuple[str, ...]
    #: Sessions created before this (ISO 8601 UTC) were due.
    cutoff: str
    older_than_days: float
    scrubbed: bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["deleted"] = list(self.deleted)
        return d


def prune(store: SessionStore, older_than_days: float, now: datetime | None = None) -> Pruned:
    """Deletes every session created more than ``older_than_days`` days before ``now`` (default: now),
    except one still being recorded, and scrubs the file as ``SessionStore.delete`` does."""
    if not older_than_days > 0:
        raise SessionError(f"retention must be a positive number of days, got {older_than_days!r}")
    now = now or datetime.now(timezone.utc)
    cutoff = (now - timedelta(days=float(older_than_days))).isoformat(timespec="microseconds")
    with store.transaction("pruning old sessions") as conn:
        rows = conn.execute("SELECT id, status, writer_host, writer_pid, writer_start FROM sessions"
                            " WHERE created_at < ? ORDER BY created_at, id", (cutoff,)).fetchall()
        due = [r[0] for r in rows if effective_status(*r[1:]) != "running"]
        for sid in due:
            conn.execute("DELETE FROM segments WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM speakers WHERE session_id = ?", (sid,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (sid,))
    scrubbed = store.scrub() if due else True
    return Pruned(tuple(due), cutoff, float(older_than_days), scrubbed)
