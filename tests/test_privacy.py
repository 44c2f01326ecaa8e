"""Privacy of the data store, through the command line: voiceprints, kept audio and sessions are private
to their owner (directories 0700, files 0600), and deleting a profile or a session leaves no byte of it."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.audio.sources import read_audio
from idme.session.store import SessionStore
from idme.transcribe.select import find_models

from clihelp import cli, ok
from conftest import decrypted_pages, profile_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"
OWNER_TAKES = [EXAMPLES / "enroll" / f"me_{i}.wav" for i in (1, 2, 3)]
#: Speaker 2414 of the example meeting, then the owner (speaker 1688) reading a 15 s sentence.
OTHER_CLIP = DATA / "ls_2414_128291-0003.flac"
OTHER_CLIP_2 = DATA / "ls_2414_128291-0009.flac"
OWNER_CLIP = DATA / "asr_1688-142285-0000.flac"
#: A label nobody else uses, so finding its bytes means finding this speaker.
UNIQUE_LABEL = "Quetzalcoatl Xyzzy"


def enroll_owner(home: Path, *extra: object) -> None:
    args: list[object] = ["enroll", "--home", home, *extra]
    for f in OWNER_TAKES:
        args += ["--file", f]
    ok(cli(*args))


def _plain(home: Path, path: Path) -> bytes:
    """A file's bytes, and for an idme-encrypted one (issue 14; sessions.db and its log: every page
    decrypted) its decrypted bytes too: a deletion must leave nothing behind even for someone who has the key."""
    from idme.vault import MAGIC, parse_header, vault_for

    data = path.read_bytes()
    if data.startswith(MAGIC):
        data += vault_for(home).open(data, parse_header(data, path)[1], path)
    elif path.name.startswith("sessions.db") and data:  # SQLCipher pages, free pages and stale log frames too
        data += decrypted_pages(path, home)
    return data


def files_containing(home: Path, needle: bytes) -> list[str]:
    """Every file under ``home`` (names included) whose bytes, or decrypted bytes, contain ``needle``."""
    hits = []
    for path in sorted(home.rglob("*")):
        if needle in str(path.relative_to(home)).encode():
            hits.append(str(path))
        elif path.is_file() and needle in _plain(home, path):
            hits.append(str(path))
    return hits


def whisper_available() -> bool:
    return importlib.util.find_spec("faster_whisper") is not None and any(m.kind == "whisper" for m in find_models())


@pytest.fixture
def permissive_umask():
    """umask 000 for the test, so private modes cannot come from a strict umask by luck."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_store_directories_are_0700_and_files_0600(tmp_path: Path, permissive_umask) -> None:
    """Profiles, kept enrollment audio, sessions.db and its -wal/-shm are 0600 in 0700 directories,
    even under umask 000."""
    home = tmp_path / "home"
    enroll_owner(home, "--keep-audio")
    kept = sorted((profile_dir(home, "me") / "audio").glob("*.wav"))
    assert [p.name for p in kept] == ["take_001.wav", "take_002.wav", "take_003.wav"]
    assert sf.info(io.BytesIO(_plain(home, kept[0])[len(kept[0].read_bytes()):])).samplerate == 16000
    clip = tmp_path / "clip.wav"
    sf.write(clip, read_audio(OWNER_CLIP)[: 5 * 16000], 16000, subtype="PCM_16")
    # An open reader keeps the write-ahead log and its index alive after listen's own connections close.
    with SessionStore(home):
        ok(cli("listen", "--file", clip, "--json", "--asr", "none", "--home", home))
        names = {p.name for p in home.iterdir()}
        assert {"sessions.db", "sessions.db-wal", "sessions.db-shm", "profiles"} <= names
        checked = 0
        for path in [home, *home.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
            checked += 1
    assert checked >= 12  # home, profiles, me, audio, 3 wavs, profile.json, embeddings.npy, db, -wal, -shm


def test_profiles_rm_removes_every_file_of_the_profile(tmp_path: Path) -> None:
    """`profiles rm me` deletes the owner's voiceprints, metadata and kept audio, and nothing else."""
    home = tmp_path / "home"
    enroll_owner(home, "--keep-audio")
    ok(cli("enroll", "--name", "bob", "--file", OTHER_CLIP, "--home", home))
    from idme.identity.profiles import ProfileStore

    voiceprint = ProfileStore(home).get("me").embeddings.astype("<f4").tobytes()
    take = profile_dir(home, "me") / "audio" / "take_002.wav"
    kept_audio = _plain(home, take)[len(take.read_bytes()):][44:2044]  # the decrypted WAV's samples
    assert files_containing(home, voiceprint[:64]) and files_containing(home, kept_audio)  # the search works

    # stdin is not a terminal: no question; the owner's profile needs --force (issue 10)
    result = ok(cli("profiles", "rm", "me", "--force", "--home", home))
    assert "deleted profile me" in result.stderr
    assert not profile_dir(home, "me").exists()
    assert files_containing(home, voiceprint[:64]) == []
    assert files_containing(home, kept_audio) == []
    assert [p["name"] for p in json.loads(ok(cli("profiles", "list", "--json", "--home", home)).stdout)] == ["bob"]
    assert sorted(p.name for p in (home / "profiles").iterdir()) == \
        [".dirkey", profile_dir(home, "bob").name]  # no temporary files either


def test_sessions_rm_leaves_no_trace(tmp_path: Path) -> None:
    """After `sessions rm ID` no byte under the store holds the session id, its unique speaker label, its
    transcript (Whisper, when installed) or its speaker embeddings."""
    home = tmp_path / "home"
    enroll_owner(home)
    # Two utterances of the other speaker: `idme name` needs segments of 1 s or more to build a voiceprint.
    other = np.concatenate([read_audio(OTHER_CLIP), np.zeros(4000, np.float32), read_audio(OTHER_CLIP_2)])
    owner = read_audio(OWNER_CLIP, max_s=8.0)
    clip = tmp_path / "talk.wav"
    sf.write(clip, np.concatenate([other, np.zeros(8000, np.float32), owner]), 16000, subtype="PCM_16")
    asr = "whisper" if whisper_available() else "none"
    ok(cli("listen", "--file", clip, "--json", "--asr", asr, "--home", home))
    ok(cli("name", "latest", "Speaker 1", UNIQUE_LABEL, "--home", home))
    session = json.loads(ok(cli("sessions", "show", "latest", "--home", home)).stdout)
    assert UNIQUE_LABEL in {s["speaker"] for s in session["segments"]}
    assert "Me" in {s["speaker"] for s in session["segments"]}
    needles = {"session id": session["id"].encode(), "label": UNIQUE_LABEL.encode()}
    if asr == "whisper":
        text = max((s["text"] for s in session["segments"] if s["kind"] == "me"), key=len)
        word = max(text.split(), key=len).strip(".,;:!?").encode()
        assert len(word) >= 5, text
        needles["transcript"] = text.encode()
        needles["transcript word"] = word
    with SessionStore(home) as store:
        needles["embeddings"] = store.speaker_embeddings(session["id"], "Me").astype("<f4").tobytes()[:64]
    # The profile `name` made keeps the label and the session it came from; it is deleted first, since
    # the question is what the session leaves behind.
    ok(cli("profiles", "rm", UNIQUE_LABEL, "--home", home))
    for what, needle in needles.items():
        assert files_containing(home, needle), f"{what} not found before deletion: the search would prove nothing"

    result = ok(cli("sessions", "rm", session["id"], "--home", home))
    assert f"deleted session {session['id']}" in result.stderr
    for what, needle in needles.items():
        assert files_containing(home, needle) == [], f"{what} is still on disk"
    assert json.loads(ok(cli("sessions", "list", "--json", "--home", home)).stdout) == []
