"""The user's own data (issue 14 item 3) on real audio: export-data, forget, retention and the audit log,
through the command line and the library, over a home with two people enrolled and a session where both
speak (the example meeting: the owner 1688 and speaker 2414, enrolled here as "zebediah")."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from idme.api import Idme
from idme.settings import resolve

from clihelp import cli, ok, refused
from conftest import BOB_TAKE, EXAMPLES, OWNER_TAKES, decrypted_pages

#: An unusual name, so that finding its bytes in the database file cannot be chance.
NAME = "zebediah"
PASS = "correct horse battery staple"


@pytest.fixture(scope="module")
def template(tmp_path_factory, campplus) -> Path:
    """'me' and NAME enrolled (NAME's take kept), one session of the example meeting, one verify each way."""
    home = tmp_path_factory.mktemp("userdata") / "home"
    idme = Idme(resolve(home, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files(NAME, [BOB_TAKE], keep_audio=True)
    idme.open_live(file=EXAMPLES / "meeting.wav", transcribe=False).run()
    assert idme.verify(NAME, EXAMPLES / "enroll" / "me_1.wav").decision == "reject"
    idme.sessions.close()
    return home


@pytest.fixture
def home(template: Path, tmp_path: Path, campplus) -> tuple[Path, Idme]:
    dst = tmp_path / "home"
    shutil.copytree(template, dst, ignore=shutil.ignore_patterns("*.db-shm"))
    return dst, Idme(resolve(dst, asr="none"), embedder=campplus)


def test_export_holds_the_profile_and_only_their_segments(home, tmp_path: Path, monkeypatch) -> None:
    """export-data NAME writes an archive that opens with the passphrase into their profile, kept take,
    fingerprints, their segments only and their audit rows; a wrong passphrase fails with one line."""
    h, idme = home
    monkeypatch.setenv("IDME_EXPORT_PASSPHRASE", PASS)
    out = tmp_path / "z.idmex"
    ok(cli("export-data", NAME, "--out", out, "--home", h))
    assert NAME.encode() not in out.read_bytes()
    ok(cli("export-data", "--open", out, "--to", tmp_path / "x", "--home", h))
    x = tmp_path / "x"
    manifest = json.loads((x / "manifest.json").read_text())
    assert manifest["name"] == NAME and manifest["counts"]["takes"] == 1
    prof = json.loads((x / "profile" / "profile.json").read_text())
    assert prof["name"] == NAME
    emb = np.load(x / "profile" / "embeddings.npy")
    assert emb.shape == (1, 192)
    assert (x / "takes" / "take_001.wav").stat().st_size > 1000
    assert json.loads((x / "fingerprints" / "labels.json").read_text())
    sessions = json.loads((x / "sessions.json").read_text())
    assert len(sessions) == 1 and sessions[0]["segments"]
    assert all(s["speaker"] == NAME for s in sessions[0]["segments"])
    assert np.load(x / sessions[0]["voice_embeddings"]).shape[1] == 192
    audit = json.loads((x / "audit.json").read_text())
    assert [a["decision"] for a in audit] == ["reject"] and audit[0]["name"] == NAME

    monkeypatch.setenv("IDME_EXPORT_PASSPHRASE", "not the passphrase")
    refused(cli("export-data", "--open", out, "--to", tmp_path / "y", "--home", h), contains="wrong passphrase")
    assert not (tmp_path / "y").exists()
    monkeypatch.delenv("IDME_EXPORT_PASSPHRASE")
    refused(cli("export-data", NAME, "--out", tmp_path / "w", "--home", h), contains="IDME_EXPORT_PASSPHRASE")


def test_forget_relabels_scrubs_and_leaves_no_byte_of_the_name(home) -> None:
    """forget without --yes and no terminal changes nothing; with --yes the profile is gone, their segments
    are a new "Speaker N" without saved voice samples, the audit row says forgotten, and the name's bytes
    are in no file under the home."""
    h, idme = home
    before = idme.sessions.get("latest")
    n_theirs = sum(s.speaker == NAME for s in before.segments)
    assert n_theirs > 0
    db = (h / "sessions.db").read_bytes()
    if db.startswith(b"SQLite format 3"):  # plaintext store (before SQLCipher): the scan below must bite
        assert NAME.encode() in db
    else:  # SQLCipher (issue 14): the scan below reads every page decrypted, so it must find the name now
        assert any(NAME.encode() in decrypted_pages(p, h) for p in h.glob("sessions.db*"))
    refused(cli("forget", NAME, "--home", h), contains="--yes")
    assert idme.profiles.exists(NAME)
    ok(cli("forget", NAME, "--yes", "--home", h))
    assert not idme.profiles.exists(NAME)
    after = idme.sessions.get(before.id)
    assert not any(s.speaker == NAME for s in after.segments)
    new = [lab for lab in {s.speaker for s in after.segments} - {s.speaker for s in before.segments}]
    assert len(new) == 1 and new[0].startswith("Speaker ")
    assert sum(s.speaker == new[0] for s in after.segments) == n_theirs
    assert all(sp.n_embeddings == 0 for sp in after.speakers if sp.label == new[0])
    assert NAME not in after.settings["profiles"]
    assert [a.name for a in idme.audit()] == ["forgotten"]
    idme.sessions.close()
    for p in h.rglob("*"):
        if p.is_file():
            assert NAME.encode() not in p.read_bytes(), p
            if p.name.startswith("sessions.db"):  # SQLCipher pages, decrypted (free pages and old log frames too)
                assert NAME.encode() not in decrypted_pages(p, h), p
    refused(cli("forget", NAME, "--yes", "--home", h), contains="nothing")


def test_forget_drop_text_empties_their_words_and_keeps_other_namings_undoable(home) -> None:
    """forget --drop-text empties the text and words of their segments only (everyone else's stay), and
    an `idme name` of another speaker in the same session can still be undone afterwards."""
    h, idme = home
    sess = idme.sessions.get("latest")
    with idme.sessions.transaction("giving every segment text") as conn:  # the template ran without ASR
        conn.execute("UPDATE segments SET text = 'words of ' || speaker, words = '[]'")
    other = next(sp.label for sp in sess.speakers if sp.label.startswith("Speaker ") and sp.n_embeddings)
    idme.name_speaker(sess.id, other, "carol", force=True)
    ok(cli("forget", NAME, "--yes", "--drop-text", "--home", h))
    after = idme.sessions.get(sess.id)
    ids = {s.seg_id for s in sess.segments if s.speaker == NAME}
    theirs = [s for s in after.segments if s.seg_id in ids]
    assert theirs and all(s.text == "" and not s.words and s.speaker.startswith("Speaker ") for s in theirs)
    assert all(s.text == f"words of {other}" for s in after.segments if s.speaker == "carol")
    assert any(s.text == "words of Me" for s in after.segments)
    undone = idme.undo_name(sess.id)
    assert undone["person"] == "carol" and not idme.profiles.exists("carol")
    idme.sessions.close()
    for p in h.glob("sessions.db*"):
        assert f"words of {NAME}".encode() not in decrypted_pages(p, h), p


def test_retention_prunes_only_old_sessions(home, monkeypatch) -> None:
    """prune deletes the sessions created before the cut-off and keeps the newer one; `sessions prune`
    without a retention says how to set one."""
    h, idme = home
    monkeypatch.delenv("IDME_RETENTION_DAYS", raising=False)
    idme.open_live(file=OWNER_TAKES[0], transcribe=False).run()
    old, new = idme.sessions.list()
    t_old = datetime.fromisoformat(old.created_at)
    t_new = datetime.fromisoformat(new.created_at)
    cut = t_old + (t_new - t_old) / 2
    done = idme.prune_sessions(1, now=cut + timedelta(days=1))
    assert done.deleted == (old.id,)
    assert [s.id for s in idme.sessions.list()] == [new.id]
    r = ok(cli("sessions", "prune", "--home", h))
    assert "no retention" in r.stderr
    r = ok(cli("sessions", "prune", "--older-than", "30", "--home", h))
    assert "pruned 0 session(s)" in r.stderr
    r = ok(cli("sessions", "list", "--home", h, env={"IDME_RETENTION_DAYS": "30"}))
    assert "retention: sessions older than 30 days" in r.stderr and "0 due now" in r.stderr


def test_listen_retention_days_flag_prunes_before_saving(home, monkeypatch) -> None:
    """`listen --retention-days 5` deletes a 10-day-old session before saving the new one; with --no-save
    it is a usage error."""
    h, idme = home
    monkeypatch.delenv("IDME_RETENTION_DAYS", raising=False)
    before = {s.id for s in idme.sessions.list()}
    with idme.sessions.transaction("backdating") as conn:
        conn.execute("UPDATE sessions SET created_at = ?",
                     ((datetime.now().astimezone() - timedelta(days=10)).isoformat(),))
    assert cli("listen", str(OWNER_TAKES[0]), "--no-save", "--retention-days", "5", "--home", h).exit_code == 2
    ok(cli("listen", str(OWNER_TAKES[0]), "--asr", "none", "--retention-days", "5", "--home", h))
    idme.sessions.close()
    after = [s.id for s in Idme(resolve(h)).sessions.list()]
    assert len(after) == 1 and after[0] not in before


def test_audit_lists_accepts_and_rejects(home) -> None:
    """verify leaves one audit row per attempt (decision, score, threshold; no audio), and `idme audit
    --name --json` lists them."""
    h, idme = home
    assert idme.verify("me", OWNER_TAKES[2]).decision == "accept"
    rows = [json.loads(line) for line in ok(cli("audit", "--json", "--home", h)).stdout.splitlines()]
    assert [(r["name"], r["decision"]) for r in rows] == [(NAME, "reject"), ("me", "accept")]
    assert all(r["score"] is not None and r["threshold"] is not None and r["liveness"] is None for r in rows)
    mine = [json.loads(line) for line in ok(cli("audit", "--name", "me", "--json", "--home", h)).stdout.splitlines()]
    assert [r["decision"] for r in mine] == ["accept"]


def test_retention_days_setting_precedence(tmp_path: Path, monkeypatch) -> None:
    """retention_days: the flag beats $IDME_RETENTION_DAYS, which beats config.toml; default none; a
    non-positive value is one ConfigError line naming where it came from."""
    from idme.errors import ConfigError

    monkeypatch.delenv("IDME_RETENTION_DAYS", raising=False)
    home = tmp_path / "h"
    assert resolve(home).retention_days is None
    (home / "config.toml").write_text("retention_days = 30\n")
    assert resolve(home).retention_days == 30
    monkeypatch.setenv("IDME_RETENTION_DAYS", "7")
    assert resolve(home).retention_days == 7
    assert resolve(home, retention_days=2).retention_days == 2
    monkeypatch.setenv("IDME_RETENTION_DAYS", "0")
    with pytest.raises(ConfigError, match="IDME_RETENTION_DAYS"):
        resolve(home)
