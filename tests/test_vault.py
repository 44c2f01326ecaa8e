"""Encryption at rest (issue 14): the data key, its wrappings, sealed files, rotation and migration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from idme import vault as V
from idme.vault import MAGIC, Vault, VaultError, migrate, vault_for

from conftest import BOB_TAKE, EXAMPLES, OWNER_TAKES, open_db, profile_dir


class MemoryKeyring(KeyringBackend):
    """An in-memory OS keyring (a real backend as far as idme can tell)."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.items.get((service, username))

    def set_password(self, service, username, password):
        self.items[(service, username)] = password

    def delete_password(self, service, username):
        self.items.pop((service, username), None)


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test unlocks its keys itself (no key cached by an earlier test), with no OS keyring as on a
    headless Linux (defining MemoryKeyring would otherwise make it keyring's default backend)."""
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    V._CACHE.clear()
    V._VAULTS.clear()
    yield
    keyring.set_keyring(old)
    V._CACHE.clear()
    V._VAULTS.clear()


def _profile_files(home: Path, n: int) -> dict[Path, bytes]:
    files = {}
    for i in range(n):
        d = home / "profiles" / f"p{i}"
        d.mkdir(parents=True, exist_ok=True)
        files[d / "embeddings.npy"] = f"voiceprint {i} ".encode() * 50
    return files


def test_sealed_file_round_trips_and_is_bound_to_its_identity(tmp_path: Path) -> None:
    """A sealed file decrypts to its bytes, never holds them in clear, and refuses another record's identity."""
    v = Vault(tmp_path)
    path = tmp_path / "x.bin"
    v.write(path, b"secret transcript words", "idme/a")
    blob = path.read_bytes()
    assert blob.startswith(MAGIC) and b"secret" not in blob and path.stat().st_mode & 0o777 == 0o600
    assert v.read(path, "idme/a") == b"secret transcript words"
    with pytest.raises(VaultError, match="not 'idme/b'"):
        v.read(path, "idme/b")
    doc = json.loads((tmp_path / "keys.json").read_text())
    assert doc["wrappings"]["passphrase"]["kdf"] == "argon2id" and "passphrase" in doc["wrappings"]


def test_corrupted_ciphertext_is_one_line_error(tmp_path: Path) -> None:
    """One flipped byte of ciphertext fails authentication with a one-line VaultError."""
    v = Vault(tmp_path)
    path = tmp_path / "x.bin"
    v.write(path, b"abc" * 100, "idme/a")
    blob = bytearray(path.read_bytes())
    blob[-20] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(VaultError, match="does not decrypt") as exc:
        v.read(path, "idme/a")
    assert "\n" not in str(exc.value)


def test_wrong_or_missing_passphrase_is_refused_and_nothing_changes(tmp_path: Path, monkeypatch) -> None:
    """A wrong passphrase and a missing one (no keyring, no terminal) are refused; the key file is unchanged."""
    Vault(tmp_path).current()
    before = (tmp_path / "keys.json").read_bytes()
    V._CACHE.clear()
    monkeypatch.setenv("IDME_PASSPHRASE", "not the passphrase")
    with pytest.raises(VaultError, match="wrong passphrase"):
        Vault(tmp_path).current()
    monkeypatch.delenv("IDME_PASSPHRASE")
    with pytest.raises(VaultError, match="IDME_PASSPHRASE"):
        Vault(tmp_path).current()
    with pytest.raises(VaultError, match="IDME_PASSPHRASE"):
        Vault(tmp_path / "new home").current()  # nothing to wrap a new key with either
    assert (tmp_path / "keys.json").read_bytes() == before and not (tmp_path / "new home" / "keys.json").exists()


def test_damaged_key_file_is_one_line_error(tmp_path: Path) -> None:
    """A truncated key file is refused with a line naming it, and left as it is."""
    Vault(tmp_path).current()
    (tmp_path / "keys.json").write_text('{"version": 1, "key_id": ')
    V._CACHE.clear()
    with pytest.raises(VaultError, match="damaged"):
        Vault(tmp_path).current()
    assert (tmp_path / "keys.json").read_text() == '{"version": 1, "key_id": '


def test_keyring_wrapping_with_passphrase_recovery_copy(tmp_path: Path, monkeypatch) -> None:
    """With a keyring the key is kept there and under the passphrase; when the keyring backend changes
    (the entry is gone) the passphrase copy still opens the data."""
    kr = MemoryKeyring()
    old = keyring.get_keyring()  # the fail backend (fresh_cache)
    keyring.set_keyring(kr)
    try:
        v = Vault(tmp_path)
        v.write(tmp_path / "x.bin", b"data", "idme/x")
        doc = json.loads((tmp_path / "keys.json").read_text())
        assert set(doc["wrappings"]) == {"keyring", "passphrase"} and len(kr.items) == 1
        V._CACHE.clear()
        monkeypatch.delenv("IDME_PASSPHRASE")
        assert Vault(tmp_path).read(tmp_path / "x.bin", "idme/x") == b"data"  # from the keyring alone
    finally:
        keyring.set_keyring(old)
    V._CACHE.clear()
    with pytest.raises(VaultError, match="IDME_PASSPHRASE"):
        Vault(tmp_path).current()  # no keyring now, no passphrase: told what to set
    monkeypatch.setenv("IDME_PASSPHRASE", "idme test passphrase")
    assert Vault(tmp_path).read(tmp_path / "x.bin", "idme/x") == b"data"


def test_set_passphrase_replaces_the_wrapping(tmp_path: Path, monkeypatch) -> None:
    """After set-passphrase the new passphrase opens the key and the old one no longer does."""
    v = Vault(tmp_path)
    v.write(tmp_path / "x.bin", b"data", "idme/x")
    v.set_passphrase("a new passphrase")
    V._CACHE.clear()
    with pytest.raises(VaultError, match="wrong passphrase"):
        Vault(tmp_path).current()
    monkeypatch.setenv("IDME_PASSPHRASE", "a new passphrase")
    assert Vault(tmp_path).read(tmp_path / "x.bin", "idme/x") == b"data"


_KILL_AFTER = """
import os, signal, sys
from pathlib import Path
from idme import vault
home, what, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def hook(i, path):
    if i + 1 >= n:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 right after the n-th file

if what == "rotate":
    vault.vault_for(home).rotate(hook=hook)
elif what == "names":
    from idme.identity.profiles import ProfileStore, migrate_names
    migrate_names(ProfileStore(home), hook=lambda i, path: hook(i - 1, path))
else:
    vault.migrate(home, hook=hook)
"""


def _run_killed(home: Path, what: str, n: int) -> None:
    r = subprocess.run([sys.executable, "-c", _KILL_AFTER, str(home), what, str(n)], env=os.environ.copy(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr


def test_rotation_killed_midway_loses_nothing_and_resumes(tmp_path: Path) -> None:
    """kill -9 after 2 of 5 files re-encrypted: every file still reads; rotating again finishes under one
    new key and drops the old one."""
    files = _profile_files(tmp_path, 5)
    v = vault_for(tmp_path)
    for path, data in files.items():
        v.write(path, data, V.identity_for(tmp_path, path))
    old_id = v.status().key_id
    _run_killed(tmp_path, "rotate", 2)
    V._CACHE.clear()
    V._VAULTS.clear()
    v = vault_for(tmp_path)
    status = v.status()
    assert status.rotation_pending and status.key_id != old_id
    for path, data in files.items():
        assert v.read(path, V.identity_for(tmp_path, path)) == data
    done = v.rotate()
    assert not done.rotation_pending and done.key_id == status.key_id and done.encrypted_files == 5
    assert {V.parse_header(p.read_bytes())[0] for p in files} == {done.key_id}
    for path, data in files.items():
        assert v.read(path, V.identity_for(tmp_path, path)) == data


def test_migration_killed_midway_loses_nothing_and_resumes(tmp_path: Path) -> None:
    """kill -9 after 2 of 6 plaintext profile files encrypted: each file is whole (plaintext or sealed); a
    second run encrypts the rest and every file reads back as it was."""
    files = _profile_files(tmp_path, 6)
    for path, data in files.items():
        path.write_bytes(data)
    _run_killed(tmp_path, "migrate", 2)
    sealed = [p for p in files if p.read_bytes().startswith(MAGIC)]
    assert len(sealed) == 2
    assert all(p.read_bytes() == files[p] for p in files if p not in sealed)
    assert migrate(tmp_path) == 4
    v = vault_for(tmp_path)
    assert v.status().plaintext_files == 0
    for path, data in files.items():
        assert path.read_bytes().startswith(MAGIC) and v.read(path, V.identity_for(tmp_path, path)) == data
    assert not list(tmp_path.rglob("*.tmp"))


_MIGRATE_RACE = """
import sys, time
from pathlib import Path
from idme import vault
home, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
print(vault.migrate(home, hook=lambda i, path: time.sleep(0.05)))
"""


def test_two_processes_migrating_one_home_seal_each_file_once(tmp_path: Path) -> None:
    """Two idme processes started together on a plaintext home: between them they seal each file exactly
    once (the second waits for the first and finds nothing left), and every file reads back as it was."""
    home = tmp_path / "home"
    files = _profile_files(home, 8)
    for path, data in files.items():
        path.write_bytes(data)
    vault_for(home).keys()  # the key exists first, so both processes unwrap the same one
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _MIGRATE_RACE, str(home), str(go)], env=os.environ.copy(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    go.touch()
    counts = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        counts.append(int(out.split()[-1]))
    assert sorted(counts) == [0, 8]
    v = vault_for(home)
    for path, data in files.items():
        assert v.read(path, V.identity_for(home, path)) == data


def test_enrollment_leaves_no_voiceprint_or_audio_in_clear(tmp_path: Path, campplus) -> None:
    """After enrolling real speech with kept audio and recording a real session with a transcript, no file
    under the home (sessions.db and its -wal/-shm included) holds a voiceprint's or an unknown speaker's
    float32/float64 values, the kept audio's samples, the take names or the transcript in clear; all of it
    reads back through the key."""
    import numpy as np

    from idme.api import Idme
    from idme.audio.sources import read_audio
    from idme.identity.enroll import read_kept_take
    from idme.identity.replay import FILE_NAME, FingerprintStore
    from idme.settings import resolve

    home = tmp_path / "home"
    idme = Idme(resolve(home, asr="none"), embedder=campplus)
    result = idme.enroll_files("me", OWNER_TAKES, keep_audio=True)
    guest = "Zoë Quintanilla"  # who is enrolled is personal data too: no file name or content may show it
    idme.enroll_files(guest, [BOB_TAKE], keep_audio=True)
    emb = idme.profiles.get("me").embeddings
    np.testing.assert_array_equal(emb, result.profile.embeddings)
    pcm = (np.clip(read_audio(OWNER_TAKES[0]), -1, 1) * 32767).astype("<i2").tobytes()
    needles = [emb[0, i:i + 4].astype("<f4").tobytes() for i in (0, 50, 100, 150)]
    needles += [emb[1, i:i + 2].astype("<f8").tobytes() for i in (10, 90)]
    needles += [pcm[32000:32064], OWNER_TAKES[0].name.encode()]
    # A real session (labels only), then a transcript written through the store: sessions.db (SQLCipher)
    # holds unknown speakers' embeddings and the text, and must show neither in clear, nor its -wal/-shm.
    run = idme.open_live(file=EXAMPLES / "meeting.wav", transcribe=False).run()
    session = idme.sessions.get(run.session_id)
    unknown = [sp.label for sp in session.speakers if sp.kind == "unknown" and sp.n_embeddings]
    assert unknown, session.speakers
    for label in unknown[:3]:
        e = idme.sessions.speaker_embeddings(run.session_id, label)
        needles += [e[0, i:i + 4].astype("<f4").tobytes() for i in (0, 96, 180)]
        needles += [e[-1, 20:22].astype("<f8").tobytes()]
    text = "the pelican recited seven thousand sonnets"
    writer = idme.sessions.create({}, {})
    writer.upsert_segment({"seg_id": 0, "start": 0.0, "end": 1.5, "speaker": "Me", "kind": "me", "score": 0.9,
                           "final": True, "text": "", "words": []})
    assert writer.set_text(0, text)
    assert idme.sessions.get(writer.session_id).segments[0].text == text
    needles += [text.encode(), text.encode("utf-16-le")]
    needles += [guest.encode(), guest.encode("utf-16-le"), b"Quintanilla", guest.encode("unicode_escape")]
    assert not [p for p in home.rglob("*") if "Quintanilla" in p.name or p.name in ("me", "Me")]
    files = [p for p in home.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"sessions.db", "sessions.db-wal", "sessions.db-shm"} <= names and len(files) >= 9, names
    for path in files:
        data = path.read_bytes()
        if path.name == ".in-use":  # the recording lock (idme._fs.SharedHold): always empty
            assert data == b"", path
            continue
        assert path.name == "keys.json" or path.name.startswith("sessions.db") or data.startswith(MAGIC), path
        assert not data.startswith(b"SQLite format 3"), path
        assert not any(n in data for n in needles), path
    writer.close()
    idme.sessions.close()
    take = read_kept_take(idme.profiles, result.kept_audio[0])
    assert np.abs(take[:16000] - read_audio(OWNER_TAKES[0])[:16000]).max() <= 1 / 32768 + 1e-6
    path = profile_dir(home, "me") / FILE_NAME
    assert idme.profiles.names() == ["me", guest]
    assert [lab for lab, _ in FingerprintStore(path.parent).load()] == [f"enroll:{t.name}" for t in OWNER_TAKES]


def _legacy_home(home: Path, names: list[str]) -> dict[str, "np.ndarray"]:
    """Profiles as an idme before issue 14 wrote them: plaintext profile.json and embeddings.npy."""
    import numpy as np

    rng = np.random.default_rng(14)
    embs = {}
    for name in names:
        d = home / "profiles" / name
        d.mkdir(parents=True)
        e = rng.standard_normal((2, 192)).astype(np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        np.save(d / "embeddings.npy", e)
        (d / "profile.json").write_text(json.dumps({"name": name, "kind": "enrolled", "takes": [{}, {}],
                                                    "encoder": {"name": "campplus", "version": "x", "dimension": 192}}))
        embs[name] = e
    return embs


def test_plaintext_profiles_are_migrated_on_first_use_and_a_killed_migration_resumes(tmp_path: Path) -> None:
    """A store of plaintext profiles, migrated by a process killed (-9) after 3 files, is readable in that
    state; the next use of the store encrypts the rest, every voiceprint intact and none left in clear."""
    import numpy as np

    from idme.identity.profiles import ProfileStore

    home = tmp_path / "home"
    embs = _legacy_home(home, ["alice", "bob", "carol"])
    _run_killed(home, "migrate", 3)
    status = vault_for(home).status()
    assert status.encrypted_files == 3 and status.plaintext_files == 3
    V._VAULTS.clear()
    store = ProfileStore(home)
    for name, e in embs.items():
        np.testing.assert_array_equal(store.get(name).embeddings, e)
    assert vault_for(home).status().plaintext_files == 0
    for name, e in embs.items():
        for f in ("embeddings.npy", "profile.json"):
            blob = (profile_dir(home, name) / f).read_bytes()
            assert blob.startswith(MAGIC) and e.tobytes()[:32] not in blob and name.encode() not in blob


# -- sessions.db on SQLCipher ----------------------------------------------------------------------------

_KILL_DB_MIGRATION = """
import os, signal, sys
from idme.session import sqlite
from idme.session.store import SessionStore
stage = sys.argv[2]
def hook(at):
    if at == stage:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 at this point of the encryption
sqlite.migration_hook = hook
SessionStore(sys.argv[1])
"""


def _plaintext_store(home: Path, n: int) -> None:
    """A sessions.db as idme wrote it before issue 14 (plain sqlite3, WAL, frames left in the log)."""
    import sqlite3

    from idme.session import sqlite as S

    home.mkdir(parents=True)
    conn = sqlite3.connect(home / "sessions.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # keep the rows in the -wal file: migration must take them
    for statement in S._SCHEMA:
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {S.SCHEMA_VERSION}")
    for i in range(n):
        sid = f"20260101-0000{i:02d}-abcd"
        conn.execute("INSERT INTO sessions (id, created_at, status, settings, models) VALUES (?, ?, 'complete',"
                     " '{}', '{}')", (sid, f"2026-01-01T00:00:{i:02d}+00:00"))
        conn.execute("INSERT INTO segments (session_id, seg_id, start_s, end_s, speaker, kind, score, final, text)"
                     " VALUES (?, 0, 0, 1, 'Me', 'me', 0.9, 1, ?)", (sid, f"plaintext transcript {i}"))
    return conn  # left open: its log is not checkpointed into the file


@pytest.mark.parametrize("stage", ["checkpointed", "exported", "synced", "renamed", None])
def test_plaintext_sessions_db_is_encrypted_on_open_and_a_kill_loses_nothing(tmp_path: Path, stage) -> None:
    """A plaintext sessions.db (rows still in its -wal) is encrypted on first open; a process killed (-9) at
    any stage of that leaves a store that the next open reads whole, encrypted, with no plaintext left."""
    from idme.session.store import SessionStore

    home = tmp_path / "home"
    legacy = _plaintext_store(home, 4)
    assert (home / "sessions.db-wal").stat().st_size > 0
    if stage is None:
        legacy.close()
    r = subprocess.run([sys.executable, "-c", _KILL_DB_MIGRATION, str(home), str(stage)], env=os.environ.copy(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == (0 if stage is None else -signal.SIGKILL), r.stderr
    if stage is not None:
        legacy.close()
    V._CACHE.clear()
    V._VAULTS.clear()
    with SessionStore(home) as store:
        listed = store.list()
        assert len(listed) == 4
        assert {store.get(x.id).segments[0].text for x in listed} == {f"plaintext transcript {i}" for i in range(4)}
    for p in home.iterdir():
        data = p.read_bytes()
        assert not data.startswith(b"SQLite format 3") and b"plaintext transcript" not in data, p
    assert open_db(home / "sessions.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_rotation_rekeys_sessions_db_and_a_wrong_key_is_one_line(tmp_path: Path) -> None:
    """`keys rotate` re-encrypts sessions.db under the new key (the old key no longer opens it, sessions
    read as before; a rotation interrupted before the rekey leaves it readable and the next one finishes); a key file that does not go with the store is one line and exit 1, nothing changed."""
    import shutil

    from clihelp import cli
    from idme.errors import StoreError
    from idme.session.store import SessionStore

    home = tmp_path / "home"
    with SessionStore(home) as store:
        w = store.create({}, {})
        w.upsert_segment({"seg_id": 0, "start": 0.0, "end": 1.0, "speaker": "Me", "kind": "me", "score": 0.9,
                          "final": True, "text": "kept across rotation", "words": []})
        w.finish()
        w.close()
    old_key = vault_for(home).db_keys()[0]
    shutil.copy(home / "keys.json", tmp_path / "old-keys.json")
    import idme.session.sqlite as S

    real_rekey, S.rekey = S.rekey, None  # a rotation that dies just before the database is rekeyed
    try:
        with pytest.raises(TypeError):
            vault_for(home).rotate()
    finally:
        S.rekey = real_rekey
    assert vault_for(home).status().rotation_pending and len(vault_for(home).db_keys()) == 2
    with SessionStore(home) as store:  # still under the old key, which keys.json still holds
        assert store.get("latest").segments[0].text == "kept across rotation"
    done = vault_for(home).rotate()
    assert not done.rotation_pending
    new_key = vault_for(home).db_keys()
    assert len(new_key) == 1 and new_key[0] != old_key
    V._CACHE.clear()
    V._VAULTS.clear()
    with SessionStore(home) as store:
        assert store.get("latest").segments[0].text == "kept across rotation"
    from idme.session.sqlite import open_raw

    with pytest.raises(StoreError, match="does not decrypt with this home's key"):
        open_raw(home / "sessions.db", [old_key])
    before = (home / "sessions.db").read_bytes()
    shutil.copy(tmp_path / "old-keys.json", home / "keys.json")  # the wrong key file for this store
    V._CACHE.clear()
    V._VAULTS.clear()
    r = cli("sessions", "list", "--home", home)
    assert r.exit_code == 1 and "sessions.db does not decrypt with this home's key" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (home / "sessions.db").read_bytes() == before


def test_named_profile_dirs_become_opaque_and_a_killed_rename_resumes(tmp_path: Path) -> None:
    """An older home's profiles/<name>/ and .history/<name>/ dirs, renamed by a process killed (-9) midway,
    are all renamed on the next use: every profile, saved version and kept take reads back by name, undo
    records stay put, and no enrolled name is left in any path or file under the home."""
    import numpy as np

    from idme.identity.profiles import HISTORY_DIR, ProfileStore, take_identity

    home = tmp_path / "home"
    names = ["alice", "José", "undo"]
    embs = _legacy_home(home, names)
    hist = home / "profiles" / HISTORY_DIR / "alice" / "20260101T000000000000Z"
    hist.mkdir(parents=True)
    for f in ("profile.json", "embeddings.npy"):
        (hist / f).write_bytes((home / "profiles" / "alice" / f).read_bytes())
    (home / "profiles" / "alice" / "audio").mkdir()
    (home / "profiles" / "alice" / "audio" / "take_001.wav").write_bytes(b"RIFF kept take of alice")
    undo = home / "profiles" / HISTORY_DIR / "undo" / "s1.json"
    undo.parent.mkdir(parents=True)
    vault_for(home).write(undo, b'{"name": "alice"}', "idme/undo")
    migrate(home)  # plaintext sealed under the old, name-bound identities (as an idme before this wrote it)
    V._VAULTS.clear()
    _run_killed(home, "names", 4)  # after .history/alice moved and one of José's files was re-sealed
    left = {p.name for p in (home / "profiles").iterdir()}
    assert "alice" in left and "José" in left and "undo" in left and not (hist.parent.exists())
    V._VAULTS.clear()
    store = ProfileStore(home)
    assert store.names() == ["alice", "José", "undo"]
    for name, e in embs.items():
        np.testing.assert_array_equal(store.get(name).embeddings, e)
    saved = sorted(store.history_dir("alice").iterdir())
    assert [p.name for p in saved] == ["20260101T000000000000Z"]
    store.restore("alice", saved[0])
    np.testing.assert_array_equal(store.get("alice").embeddings, embs["alice"])
    take = store.profile_dir("alice") / "audio" / "take_001.wav"
    assert vault_for(home).read(take, take_identity(take.parent.parent.name)) == b"RIFF kept take of alice"
    assert vault_for(home).read(undo, "idme/undo") == b'{"name": "alice"}'
    store.rename("José", "Zoë")
    assert ProfileStore(home).names() == ["alice", "undo", "Zoë"]
    paths = [p.relative_to(home) for p in home.rglob("*")]
    needles = [n.encode() for n in ("alice", "José", "Zoë")] + [n.encode("utf-16-le") for n in ("alice", "Zoë")]
    for rel in paths:
        assert not set(rel.parts[1:]) & {"alice", "José", "Zoë"} and rel.parts[-1] != "undo" or \
            rel == Path("profiles", HISTORY_DIR, "undo"), rel
        if (home / rel).is_file():
            data = (home / rel).read_bytes()
            assert rel.name == "keys.json" or data.startswith(MAGIC), rel
            assert not any(n in data for n in needles), rel


@pytest.mark.parametrize("moved", [False, True])
def test_a_rename_killed_midway_is_settled_on_the_next_read(tmp_path: Path, moved: bool) -> None:
    """A rename stopped after staging the re-sealed files (before or after the directory move) leaves one
    whole profile: the old name when the directory had not moved yet, the new one when it had."""
    import os

    import numpy as np

    from idme.identity.profiles import _RENAMING, Profile, ProfileStore

    store = ProfileStore(tmp_path)
    store.save(Profile("alice", {"name": "campplus", "version": "v"}, np.eye(2, 4, dtype=np.float32)))
    src, dst = store.profile_dir("alice"), store.profile_dir("alicia")
    prof = store.get("alice")
    prof.name = "alicia"
    store._write(prof, src, dst.name, prefix=_RENAMING)  # what rename does before os.replace
    if moved:
        os.replace(src, dst)
    fresh = ProfileStore(tmp_path)
    assert fresh.names() == (["alicia"] if moved else ["alice"])
    np.testing.assert_array_equal(fresh.get(fresh.names()[0]).embeddings, np.eye(2, 4, dtype=np.float32))
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(_RENAMING)]


def test_key_rotation_keeps_profile_directory_names(tmp_path: Path) -> None:
    """`keys rotate` re-seals the dirkey like any file: every profile keeps its directory and reads by name."""
    import numpy as np

    from idme.identity.profiles import DIRKEY_FILE, Profile, ProfileStore

    store = ProfileStore(tmp_path)
    store.save(Profile("Zoë", {"name": "campplus", "version": "v"}, np.eye(1, 4, dtype=np.float32)))
    before = store.profile_dir("Zoë")
    old_id = V.parse_header((tmp_path / "profiles" / DIRKEY_FILE).read_bytes())[0]
    vault_for(tmp_path).rotate()
    V._CACHE.clear()
    V._VAULTS.clear()
    fresh = ProfileStore(tmp_path)
    assert V.parse_header((tmp_path / "profiles" / DIRKEY_FILE).read_bytes())[0] != old_id
    assert fresh.profile_dir("Zoë") == before and fresh.names() == ["Zoë"]
    np.testing.assert_array_equal(fresh.get("Zoë").embeddings, np.eye(1, 4, dtype=np.float32))


def test_kept_takes_and_fingerprints_are_bound_to_their_profile(tmp_path: Path) -> None:
    """Takes and fingerprints sealed by an idme whose identities named no profile are re-bound when the
    directory gets its opaque name; afterwards a take or fingerprint file copied into another profile is
    refused (moved or swapped), and a rename keeps both readable under the new name."""
    import numpy as np

    from idme.errors import IdmeError
    from idme.identity.enroll import read_kept_take
    from idme.identity.profiles import LEGACY_TAKE_AUDIO_IDENTITY, ProfileStore
    from idme.identity.replay import LEGACY_IDENTITY, FingerprintStore, fingerprint

    home = tmp_path / "home"
    _legacy_home(home, ["alice", "bob"])
    migrate(home)  # as stop 17's idme left it: sealed, name-named directories ...
    rng = np.random.default_rng(3)
    take = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, take, 16000, format="WAV", subtype="PCM_16")
    v = vault_for(home)
    for name in ("alice", "bob"):  # ... and takes / fingerprints under identities that named no profile
        (home / "profiles" / name / "audio").mkdir()
        v.write(home / "profiles" / name / "audio" / "take_001.wav", buf.getvalue(), LEGACY_TAKE_AUDIO_IDENTITY)
        fp_buf = io.BytesIO()
        signs = fingerprint(take).signs
        np.savez(fp_buf, signs=signs, offsets=np.array([0]), labels=np.array([f"enroll:{name}"]))
        v.write(home / "profiles" / name / "fingerprints.npz", fp_buf.getvalue(), LEGACY_IDENTITY)
    V._VAULTS.clear()
    store = ProfileStore(home)
    assert store.names() == ["alice", "bob"]
    a, b = store.profile_dir("alice"), store.profile_dir("bob")
    np.testing.assert_allclose(read_kept_take(store, a / "audio" / "take_001.wav"), take, atol=1e-4)
    assert [lab for lab, _ in FingerprintStore(b).load()] == ["enroll:bob"]
    for f in ("audio/take_001.wav", "fingerprints.npz"):
        assert V.parse_header((a / f).read_bytes())[1].startswith(f"idme/profile/{a.name}/")
    (a / "audio" / "take_001.wav").write_bytes((b / "audio" / "take_001.wav").read_bytes())
    (a / "fingerprints.npz").write_bytes((b / "fingerprints.npz").read_bytes())
    with pytest.raises(IdmeError, match="moved or swapped"):
        read_kept_take(store, a / "audio" / "take_001.wav")
    with pytest.raises(IdmeError, match="moved or swapped"):
        FingerprintStore(a).load()
    store.rename("bob", "carol")
    c = store.profile_dir("carol")
    np.testing.assert_allclose(read_kept_take(store, c / "audio" / "take_001.wav"), take, atol=1e-4)
    assert [lab for lab, _ in FingerprintStore(c).load()] == ["enroll:bob"]
    assert not list(c.rglob(".renaming-*"))
