"""Tests of the crash-safe session store (idme.session.store)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import decrypted_pages, open_db
from idme.errors import SessionError, StoreError
from idme.session.store import DB_FILENAME, SessionStore

MODELS = {"encoder": {"name": "campplus", "version": "3d6e"}, "asr": {"name": "vosk-small-en", "version": "0.15"}}
SETTINGS = {"threshold_me": 0.52, "vad_aggressiveness": 2}


def seg(seg_id: int, speaker: str = "Me", kind: str = "me", start: float | None = None, **kw) -> dict:
    """A segment event as the pipeline emits it."""
    start = seg_id * 2.0 if start is None else start
    event = {"seg_id": seg_id, "start": start, "end": start + 1.5, "speaker": speaker, "kind": kind,
             "score": 0.7, "final": False, "text": "", "words": []}
    event.update(kw)
    return event


def _integrity(path: Path) -> str:
    """SQLite's own consistency check of a store file, on an independent connection."""
    conn = open_db(path)  # SQLCipher-encrypted (issue 14): opened under the home's key
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path):
    s = SessionStore(tmp_path / "home")
    yield s
    s.close()


def test_round_trip_keeps_latest_labels_text_and_speakers(store: SessionStore) -> None:
    """What a writer commits (segments, transcripts, relabels, speakers, finish) is what get() returns."""
    w = store.create(SETTINGS, MODELS, source="file: meeting.wav")
    w.upsert_segment(seg(1, "Speaker 1", "unknown", start=3.0))
    w.upsert_segment(seg(0, "Me", "me", start=0.5))
    w.set_text(1, "hello there", [{"word": "hello", "start": 3.0, "end": 3.4, "conf": 0.9},
                                  {"word": "there", "start": 3.5, "end": 4.0, "conf": 0.8}])
    # A re-emitted label with text "" (not transcribed yet, from the labeller's view) keeps the transcript.
    w.upsert_segment(seg(1, "Speaker 1", "unknown", start=3.0, score=0.6, final=True))
    w.upsert_segment(seg(2, "Speaker 2", "unknown", start=6.0, text="bye"))
    assert w.relabel([(2, "Speaker 1", "unknown", 0.66), (0, "Me", "me", 0.9), (77, "Me", "me", 0.9)]) == 2
    emb = np.random.default_rng(0).standard_normal((4, 192)).astype(np.float32)
    w.save_speakers({"Speaker 1": {"kind": "unknown", "embeddings": emb}})
    w.finish("complete", duration_s=9.25)
    w.close()

    s = store.get(w.session_id)
    assert s.status == "complete" and s.duration_s == 9.25
    assert s.settings == SETTINGS and s.models == MODELS and s.source == "file: meeting.wav"
    assert [g.seg_id for g in s.segments] == [0, 1, 2]  # sorted by start, not by insertion
    assert [g.speaker for g in s.segments] == ["Me", "Speaker 1", "Speaker 1"]
    assert [g.final for g in s.segments] == [True, True, True]
    assert s.segments[1].text == "hello there" and [x.word for x in s.segments[1].words] == ["hello", "there"]
    assert s.segments[2].text == "bye" and s.segments[2].score == pytest.approx(0.66)
    assert [(p.label, p.kind, p.n_segments, p.n_embeddings, p.dim) for p in s.speakers] == [
        ("Me", "me", 1, 0, 0), ("Speaker 1", "unknown", 2, 4, 192)]
    np.testing.assert_array_equal(store.speaker_embeddings(s.id, "Speaker 1"), emb)
    assert store.speaker_embeddings(s.id, "Speaker 1").dtype == np.float32
    d = s.to_dict()
    assert d["id"] == s.id and d["segments"][1]["words"][0] == {"word": "hello", "start": 3.0, "end": 3.4, "conf": 0.9}


def test_latest_prefix_and_unknown_ids(store: SessionStore) -> None:
    """'latest' is the newest session, a unique prefix resolves, and an unknown id names the fix."""
    with pytest.raises(SessionError, match="no sessions"):
        store.get("latest")
    first = store.create({}, {})
    first.finish()
    second = store.create({}, {})
    second.upsert_segment(seg(0))
    second.finish("interrupted")
    assert store.get("latest").id == second.session_id
    assert store.get(second.session_id).status == "interrupted"
    with pytest.raises(SessionError, match=r"no session 'nope'; run `idme sessions list`"):
        store.get("nope")
    assert [x.id for x in store.list()] == [first.session_id, second.session_id]  # oldest first
    summary = store.list()[-1]
    assert (summary.n_segments, summary.speakers, summary.status) == (1, ("Me",), "interrupted")
    first.close()
    second.close()


def test_session_ids_sort_by_creation_and_prefix_resolves(store: SessionStore) -> None:
    """Session ids look like 20261121-054213-ab12 and a unique prefix of one finds it."""
    w = store.create({}, {})
    assert len(w.session_id) == 20 and w.session_id[8] == "-" and w.session_id[15] == "-"
    assert store.get(w.session_id[:17]).id == w.session_id
    w.close()


_CHILD_SELF_KILL = """
import os, signal, sys
from idme.session.store import SessionStore
w = SessionStore(sys.argv[1]).create({"k": 1}, {"encoder": {"name": "campplus", "version": "1"}})
print(w.session_id, flush=True)
for i in range(25):
    w.upsert_segment({"seg_id": i, "start": i * 1.0, "end": i * 1.0 + 0.8, "speaker": "Speaker 1",
                      "kind": "unknown", "score": 0.5, "final": False, "text": f"words {i}", "words": []})
w.relabel([(i, "Me", "me", 0.9) for i in range(0, 25, 2)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill9_keeps_every_committed_segment(tmp_path: Path) -> None:
    """A writer that dies by SIGKILL mid-session leaves every committed segment readable, status incomplete."""
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", _CHILD_SELF_KILL, str(home)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sid = proc.stdout.split()[0]
    with SessionStore(home) as store:
        s = store.get("latest")
        assert s.id == sid and s.status == "incomplete"
        assert [g.seg_id for g in s.segments] == list(range(25))
        assert [g.text for g in s.segments] == [f"words {i}" for i in range(25)]
        assert [g.speaker for g in s.segments[:3]] == ["Me", "Speaker 1", "Me"]
        assert s.duration_s == pytest.approx(24.8)  # never finished: the end of the last segment
        assert store.list()[0].status == "incomplete"


_CHILD_ENDLESS = """
import sys
from idme.session.store import SessionStore
w = SessionStore(sys.argv[1]).create({}, {})
i = 0
while True:
    w.upsert_segment({"seg_id": i, "start": i * 1.0, "end": i * 1.0 + 0.8, "speaker": "Me", "kind": "me",
                      "score": 0.5, "final": True, "text": "x" * 200, "words": []})
    print(i, flush=True)  # acknowledged: upsert_segment returned, so the segment is committed
    i += 1
"""


def test_kill9_from_outside_loses_at_most_the_segment_in_flight(tmp_path: Path) -> None:
    """Killing a busy writer at an arbitrary moment loses no acknowledged segment, at most the one in flight."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", _CHILD_ENDLESS, str(home)], stdout=subprocess.PIPE, text=True)
    acked = []
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) == 30:
            break
    proc.kill()
    acked += [int(line) for line in proc.stdout]  # what it acknowledged before the signal landed
    proc.wait(timeout=30)
    with SessionStore(home) as store:
        stored = [g.seg_id for g in store.get("latest").segments]
    assert stored[: len(acked)] == acked
    assert len(stored) - len(acked) in (0, 1)


def _concurrent_writer(home: str, tag: str, n: int, barrier, queue) -> None:
    store = SessionStore(home)
    w = store.create({"tag": tag}, {})
    barrier.wait(timeout=60)  # both processes write at the same time, not one after the other
    for i in range(n):
        w.upsert_segment(seg(i, "Speaker 1", "unknown", text=f"{tag} {i}"))
        if i % 10 == 9:
            w.relabel([(j, "Me", "me", 0.8) for j in range(i - 9, i + 1, 3)])
    w.save_speakers({"Speaker 1": {"kind": "unknown", "embeddings": np.full((2, 8), float(len(tag)), np.float32)}})
    w.finish()
    w.close()
    store.close()
    queue.put(w.session_id)


def test_two_processes_write_one_store_concurrently(tmp_path: Path) -> None:
    """Two listeners writing one store at the same time both finish with every segment intact."""
    home = str(tmp_path / "home")
    ctx = multiprocessing.get_context("spawn")
    queue, barrier = ctx.Queue(), ctx.Barrier(2)
    procs = [ctx.Process(target=_concurrent_writer, args=(home, tag, 150, barrier, queue)) for tag in ("alpha", "beta")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    ids = {queue.get(timeout=5), queue.get(timeout=5)}
    with SessionStore(home) as store:
        assert {x.id for x in store.list()} == ids
        for sid in ids:
            s = store.get(sid)
            tag = s.settings["tag"]
            assert s.status == "complete"
            assert [g.text for g in s.segments] == [f"{tag} {i}" for i in range(150)]
            assert sum(g.speaker == "Me" for g in s.segments) == 60
            np.testing.assert_array_equal(store.speaker_embeddings(sid, "Speaker 1"),
                                          np.full((2, 8), float(len(tag)), np.float32))
        assert _integrity(store.path) == "ok"


def test_disk_full_raises_store_error_and_keeps_what_was_committed(store: SessionStore) -> None:
    """SQLITE_FULL while writing raises StoreError, and every segment committed before stays readable."""
    w = store.create({}, {})
    for i in range(5):
        w.upsert_segment(seg(i, text="before " * 20))
    # Cap the database at its current size on the writer's connection: the next new page is SQLITE_FULL.
    pages = w._conn.execute("PRAGMA page_count").fetchone()[0]
    w._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="disk .* is full"):
        for i in range(5, 500):
            w.upsert_segment(seg(i, text="after " * 300))
    w.close()
    with SessionStore(store.home) as fresh:
        s = fresh.get(w.session_id)
        texts = [g.text for g in s.segments]
        assert texts[:5] == ["before " * 20] * 5
        assert all(t == "after " * 300 for t in texts[5:])  # nothing half-written
        assert _integrity(fresh.path) == "ok"


def test_unwritable_home_raises_store_error(tmp_path: Path) -> None:
    """A home that cannot be created (a file is in the way) is a one-line StoreError."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError) as err:
        SessionStore(blocker / "home")
    assert "\n" not in str(err.value) and "IDME_HOME" in str(err.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_home_raises_store_error(tmp_path: Path) -> None:
    """A read-only home is a one-line StoreError, not a sqlite3 traceback."""
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    try:
        with pytest.raises(StoreError, match="writable"):
            SessionStore(home)
    finally:
        home.chmod(0o700)


def test_read_only_database_file_raises_store_error(tmp_path: Path) -> None:
    """A store file SQLite may only read (opened read-only) maps to StoreError on write."""
    home = tmp_path / "home"
    SessionStore(home).close()
    ro = open_db(home / DB_FILENAME, read_only=True)
    from idme.session.store import _transaction
    with pytest.raises(StoreError, match="read-only"):
        with _transaction(ro, home / DB_FILENAME, "writing"):
            ro.execute("INSERT INTO sessions (id, created_at, status, settings, models) VALUES ('a','b','c','{}','{}')")
    ro.close()


def test_delete_leaves_no_trace_in_the_files(store: SessionStore) -> None:
    """After delete, no byte of the session's label, transcript or embeddings is left in db, wal or shm, read
    raw or with every page decrypted."""
    label, text = "Zorbulon Quaxley", "the pelican recited 7713 sonnets"
    emb = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    keep = store.create({}, {})
    keep.upsert_segment(seg(0, text="a session that stays"))
    keep.finish()
    w = store.create({"note": label}, {})
    for i in range(40):
        w.upsert_segment(seg(i, label, "unknown", text=f"{text} {i}"))
    w.relabel([(i, label, "unknown", 0.5) for i in range(40)])
    w.save_speakers({label: {"kind": "unknown", "embeddings": emb}})
    w.finish()
    w.close()
    files = [store.path, Path(f"{store.path}-wal"), Path(f"{store.path}-shm")]
    raw = b"".join(p.read_bytes() for p in files if p.exists())
    assert label.encode() not in raw and emb[1].tobytes() not in raw  # SQLCipher: nothing in clear (issue 14)
    # Every page decrypted, free pages and old log frames included: what someone with the key would see.
    before = b"".join(decrypted_pages(p, store.home) for p in files if p.exists())
    assert label.encode() in before and emb[1].tobytes() in before  # the search below can find them

    assert store.delete(w.session_id) is True
    after = b"".join(p.read_bytes() + decrypted_pages(p, store.home) for p in files if p.exists())
    for needle in (label.encode(), text.encode(), emb[0].tobytes(), emb[1].tobytes(), w.session_id.encode()):
        assert needle not in after
    with pytest.raises(SessionError):
        store.get(w.session_id)
    assert store.get(keep.session_id).segments[0].text == "a session that stays"
    keep.close()


def test_delete_refuses_a_session_still_being_recorded(store: SessionStore) -> None:
    """A session whose writer is alive reads as running and cannot be deleted under it."""
    w = store.create({}, {})
    w.upsert_segment(seg(0))
    assert store.get("latest").status == "running"
    with pytest.raises(SessionError, match="still being recorded"):
        store.delete(w.session_id)
    w.finish()
    w.close()
    assert store.delete(w.session_id)


def test_store_files_are_private(tmp_path: Path) -> None:
    """sessions.db and its -wal/-shm files are 0600 even under a permissive umask."""
    old = os.umask(0o022)
    try:
        store = SessionStore(tmp_path / "home")
        w = store.create({}, {})
        w.upsert_segment(seg(0))
        for suffix in ("", "-wal", "-shm"):
            path = Path(f"{store.path}{suffix}")
            assert path.exists() and (path.stat().st_mode & 0o777) == 0o600, suffix
        w.close()
        store.close()
    finally:
        os.umask(old)


def test_rename_speaker_relabels_and_merges_embeddings(store: SessionStore) -> None:
    """Renaming 'Speaker 2' to an existing name merges both speakers' segments and embeddings."""
    w = store.create({}, {})
    w.upsert_segment(seg(0, "alice", "enrolled"))
    w.upsert_segment(seg(1, "Speaker 2", "unknown"))
    w.upsert_segment(seg(2, "Speaker 2", "unknown"))
    a, b = np.ones((2, 4), np.float32), -np.ones((1, 4), np.float32)
    w.save_speakers({"alice": {"kind": "enrolled", "embeddings": a}, "Speaker 2": {"kind": "unknown", "embeddings": b}})
    w.finish()
    w.close()
    assert store.rename_speaker(w.session_id, "Speaker 2", "alice") == 2
    s = store.get(w.session_id)
    assert {(g.speaker, g.kind) for g in s.segments} == {("alice", "enrolled")}
    assert [(p.label, p.n_segments, p.n_embeddings) for p in s.speakers] == [("alice", 3, 3)]
    np.testing.assert_array_equal(store.speaker_embeddings(s.id, "alice"), np.concatenate([a, b]))
    with pytest.raises(SessionError, match="no speaker 'Speaker 9'.*alice"):
        store.rename_speaker(s.id, "Speaker 9", "bob")


def test_bad_events_raise_session_error(store: SessionStore) -> None:
    """Malformed segment events are refused with a one-line SessionError and nothing is stored."""
    w = store.create({}, {})
    with pytest.raises(SessionError, match="kind"):
        w.upsert_segment(seg(0, kind="stranger"))
    with pytest.raises(SessionError, match="before start"):
        w.upsert_segment(seg(1, start=5.0, end=4.0))
    with pytest.raises(SessionError, match="no 'speaker'"):
        w.upsert_segment({"seg_id": 2, "start": 0.0, "end": 1.0, "kind": "me"})
    with pytest.raises(SessionError, match="finite"):
        w.upsert_segment(seg(3, score=float("nan")))
    w.close()
    assert store.get(w.session_id).segments == ()


def test_store_from_a_newer_idme_is_refused(tmp_path: Path) -> None:
    """A store whose schema version is newer than this idme is refused rather than misread."""
    home = tmp_path / "home"
    SessionStore(home).close()
    conn = open_db(home / DB_FILENAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer idme"):
        SessionStore(home)


def test_writer_context_marks_a_crashed_block_interrupted(store: SessionStore) -> None:
    """Leaving a writer's with-block by an exception records the session as interrupted."""
    with pytest.raises(RuntimeError):
        with store.create({}, {}) as w:
            w.upsert_segment(seg(0))
            raise RuntimeError("device vanished")
    s = store.get(w.session_id)
    assert s.status == "interrupted" and s.duration_s == pytest.approx(1.5)



def _count_commits(conn: sqlite3.Connection) -> list[str]:
    """Every COMMIT that ``conn`` executes from now on (sqlite3's trace callback sees each statement)."""
    commits: list[str] = []
    conn.set_trace_callback(lambda sql: commits.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return commits


def test_upsert_segments_commits_a_burst_once(store: SessionStore) -> None:
    """N segment events given to upsert_segments are one transaction, one COMMIT, and all are stored."""
    w = store.create({}, {})
    w.upsert_segment(seg(0, "Speaker 1", "unknown", text="kept transcript"))
    commits = _count_commits(w._conn)
    burst = [seg(i, "Me", "me", final=True) for i in range(40)]  # a re-clustering re-emits every segment
    assert w.upsert_segments(burst) == 40
    assert len(commits) == 1
    s = store.get(w.session_id)
    assert [(g.seg_id, g.speaker, g.final) for g in s.segments] == [(i, "Me", True) for i in range(40)]
    assert s.segments[0].text == "kept transcript"  # "" in a correction does not erase a transcript
    assert w.upsert_segments([]) == 0 and len(commits) == 1
    w.close()


def test_upsert_segments_stores_nothing_when_one_event_is_bad(store: SessionStore) -> None:
    """A malformed event anywhere in a burst raises SessionError before anything is written."""
    w = store.create({}, {})
    with pytest.raises(SessionError, match="kind"):
        w.upsert_segments([seg(0), seg(1), seg(2, kind="stranger")])
    assert store.get(w.session_id).segments == ()
    w.close()


def test_writer_records_with_normal_sync_and_finish_checkpoints(store: SessionStore, tmp_path: Path) -> None:
    """A writer records with synchronous=NORMAL (WAL); finish() switches to FULL and checkpoints, so the
    main database file alone, without its write-ahead log, holds the finished session."""
    w = store.create({}, {})
    conn = w._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # maintenance stays FULL
    w.upsert_segments([seg(i, text=f"said {i}") for i in range(30)])
    w.finish("complete", duration_s=61.0)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    w.close()
    copy = tmp_path / "main-file-only.db"
    copy.write_bytes(store.path.read_bytes())  # no -wal next to it: only checkpointed pages are seen
    db = open_db(copy, store.home)
    try:
        assert db.execute("SELECT status, duration_s FROM sessions WHERE id = ?",
                          (w.session_id,)).fetchone() == ("complete", 61.0)
        assert db.execute("SELECT COUNT(*) FROM segments WHERE session_id = ?", (w.session_id,)).fetchone()[0] == 30
    finally:
        db.close()


_CHILD_BATCH_KILL = """
import os, signal, sys
from idme.session.store import SessionStore
w = SessionStore(sys.argv[1]).create({}, {})
print(w.session_id, w._conn.execute("PRAGMA synchronous").fetchone()[0], flush=True)
seg = lambda i, spk, kind, final: {"seg_id": i, "start": i * 1.0, "end": i * 1.0 + 0.8, "speaker": spk,
                                   "kind": kind, "score": 0.5, "final": final, "text": "", "words": []}
for i in range(20):
    w.upsert_segment({**seg(i, "Speaker 1", "unknown", False), "text": f"words {i}"})
w.upsert_segments([seg(i, "Me" if i % 2 else "Speaker 1", "me" if i % 2 else "unknown", True) for i in range(20)])
w.upsert_segments([seg(i, "Speaker 2", "unknown", True) for i in range(20, 60)])
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill9_after_batched_writes_keeps_every_event(tmp_path: Path) -> None:
    """A writer on synchronous=NORMAL killed by SIGKILL before finish() loses nothing it committed,
    single events and batches alike."""
    home = tmp_path / "home"
    proc = subprocess.run([sys.executable, "-c", _CHILD_BATCH_KILL, str(home)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    sid, sync = proc.stdout.split()
    assert sync == "1"  # the child really recorded with NORMAL
    with SessionStore(home) as store:
        s = store.get(sid)
    assert s.status == "incomplete"
    assert [g.seg_id for g in s.segments] == list(range(60))
    assert all(g.final for g in s.segments)
    assert [g.speaker for g in s.segments[:4]] == ["Speaker 1", "Me", "Speaker 1", "Me"]
    assert [g.text for g in s.segments[:20]] == [f"words {i}" for i in range(20)]
    assert {g.speaker for g in s.segments[20:]} == {"Speaker 2"}


_CHILD_RECORDING = """
import sys
from idme.session.store import SessionStore
# A short busy timeout: a delete that held the write lock for long would make a write fail here.
w = SessionStore(sys.argv[1], busy_timeout_s=2.0).create({}, {})
i = 0
while True:
    w.upsert_segment({"seg_id": i, "start": i * 1.0, "end": i * 1.0 + 0.8, "speaker": "Me", "kind": "me",
                      "score": 0.5, "final": True, "text": "x" * 200, "words": []})
    print(i, flush=True)
    i += 1
"""


def test_delete_while_another_session_records(tmp_path: Path) -> None:
    """Deleting a finished session while another process records one does not VACUUM (which would hold
    the write lock for the whole rebuild), the listener keeps writing, and the deleted session's text,
    label and embeddings are still gone from the store's files."""
    home = tmp_path / "home"
    label, text = "Zorbulon Quaxley", "the pelican recited 7713 sonnets"
    emb = np.random.default_rng(7).standard_normal((3, 16)).astype(np.float32)
    with SessionStore(home) as store:
        old = store.create({}, {})
        for i in range(60):
            old.upsert_segment(seg(i, label, "unknown", text=f"{text} {i}"))
        old.save_speakers({label: {"kind": "unknown", "embeddings": emb}})
        old.finish()
        old.close()
        files = [store.path, Path(f"{store.path}-wal"), Path(f"{store.path}-shm")]
        assert label.encode() in b"".join(decrypted_pages(p, home) for p in files if p.exists())

        proc = subprocess.Popen([sys.executable, "-c", _CHILD_RECORDING, str(home)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            acked = [int(proc.stdout.readline()) for _ in range(20)]
            assert store.list()[-1].status == "running"
            statements: list[str] = []
            store._db.set_trace_callback(statements.append)
            assert store.delete(old.session_id) is True
            store._db.set_trace_callback(None)
            assert not any(sql.strip().upper().startswith("VACUUM") for sql in statements)
            after = [int(proc.stdout.readline()) for _ in range(20)]  # the listener still writes
            assert after[0] == acked[-1] + 1 and proc.poll() is None
            leftover = b"".join(p.read_bytes() + decrypted_pages(p, home) for p in files if p.exists())
            for needle in (label.encode(), text.encode(), emb[0].tobytes(), emb[2].tobytes(),
                           old.session_id.encode()):
                assert needle not in leftover
        finally:
            proc.kill()
            _, stderr = proc.communicate(timeout=30)
        assert "Error" not in stderr, stderr
        s = store.get("latest")
        assert s.status == "incomplete" and len(s.segments) >= 40
        assert [x.id for x in store.list()] == [s.id]
        # With nothing recording any more, a delete compacts the file again.
        statements = []
        store._db.set_trace_callback(statements.append)
        assert store.delete(s.id) is True
        assert any(sql.strip().upper().startswith("VACUUM") for sql in statements)


def test_speaker_durations_round_trip_and_merge(store: SessionStore) -> None:
    """Durations saved with a speaker's embeddings come back in order, None when none were given; a
    rename that merges two speakers concatenates them; a wrong count is refused."""
    w = store.create({}, {})
    w.upsert_segments([seg(0, "alice", "enrolled"), seg(1, "Speaker 2", "unknown"), seg(2, "Speaker 3", "unknown")])
    a, b = np.ones((2, 4), np.float32), -np.ones((3, 4), np.float32)
    with pytest.raises(SessionError, match="2 durations for 3 embeddings"):
        w.save_speakers({"Speaker 2": {"kind": "unknown", "embeddings": b, "durations": [1.0, 2.0]}})
    w.save_speakers({"alice": {"kind": "enrolled", "embeddings": a, "durations": np.array([1.5, 0.5])},
                     "Speaker 2": {"kind": "unknown", "embeddings": b, "durations": [2.0, 0.25, 4.0]},
                     "Speaker 3": {"kind": "unknown", "embeddings": a}})
    w.finish()
    w.close()
    sid = w.session_id
    np.testing.assert_array_equal(store.speaker_durations(sid, "alice"), np.array([1.5, 0.5], np.float32))
    assert store.speaker_durations(sid, "alice").dtype == np.float32
    assert store.speaker_durations(sid, "Speaker 3") is None
    with pytest.raises(SessionError, match="no saved embeddings for speaker 'nobody'"):
        store.speaker_durations(sid, "nobody")
    store.rename_speaker(sid, "Speaker 2", "alice")
    np.testing.assert_array_equal(store.speaker_durations(sid, "alice"),
                                  np.array([1.5, 0.5, 2.0, 0.25, 4.0], np.float32))
    assert len(store.speaker_embeddings(sid, "alice")) == 5
    store.rename_speaker(sid, "Speaker 3", "alice")  # one side kept no durations: equal weights from now on
    assert store.speaker_durations(sid, "alice") is None and len(store.speaker_embeddings(sid, "alice")) == 7


def test_store_without_the_durations_column_is_upgraded(tmp_path: Path) -> None:
    """A store made before durations were kept gains the column on open; its speakers read as None."""
    home = tmp_path / "home"
    SessionStore(home).close()
    conn = open_db(home / DB_FILENAME)
    conn.execute("DROP TABLE speakers")
    conn.execute("CREATE TABLE speakers (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
                 " label TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, dim INTEGER NOT NULL,"
                 " embeddings BLOB, centroid BLOB, PRIMARY KEY (session_id, label))")
    conn.execute("INSERT INTO sessions (id, created_at, status, settings, models) VALUES"
                 " ('20260101-000000-abcd', '2026-01-01T00:00:00+00:00', 'complete', '{}', '{}')")
    conn.execute("INSERT INTO speakers VALUES ('20260101-000000-abcd', 'Me', 'me', 1, 2, ?, NULL)",
                 (np.ones(2, "<f4").tobytes(),))
    conn.commit()
    conn.close()
    with SessionStore(home) as store:
        assert store.speaker_durations("latest", "Me") is None
        np.testing.assert_array_equal(store.speaker_embeddings("latest", "Me"), np.ones((1, 2), np.float32))
    assert _integrity(home / DB_FILENAME) == "ok"
