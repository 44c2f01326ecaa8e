"""`idme keys status|rotate|set-passphrase` (issue 14): what they report, and one line + exit 1 on every key
problem with nothing overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idme import vault as V

from clihelp import cli, ok


@pytest.fixture(autouse=True)
def no_keyring():
    """No OS keyring, as on headless Linux, and no key cached from an earlier test."""
    import keyring
    from keyring.backends import fail

    old = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    V._CACHE.clear()
    yield
    keyring.set_keyring(old)
    V._CACHE.clear()


def _home_with_files(tmp_path: Path, n: int = 3) -> tuple[Path, dict[Path, bytes]]:
    home = tmp_path / "home"
    files = {}
    for i in range(n):
        d = home / "profiles" / f"p{i}"
        d.mkdir(parents=True)
        files[d / "embeddings.npy"] = f"voiceprint {i}".encode() * 20
    v = V.Vault(home)
    for path, data in files.items():
        v.write(path, data, V.identity_for(home, path))
    return home, files


def _snapshot(home: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file()}


def _one_line_failure(result, contains: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and contains in lines[0] and "Traceback" not in result.output, result.output


def test_status_reports_key_wrappings_and_counts(tmp_path: Path) -> None:
    """status --json gives the key id, the passphrase wrapping with its Argon2id parameters, no keyring and
    the number of encrypted files."""
    home, files = _home_with_files(tmp_path)
    d = json.loads(ok(cli("keys", "status", "--json", "--home", home)).stdout)
    assert d["key_id"] == json.loads((home / "keys.json").read_text())["key_id"]
    assert d["wrappings"] == ["passphrase"] and d["keyring_backend"] == "none"
    assert d["kdf"]["kdf"] == "argon2id" and d["encrypted_files"] == len(files) and d["plaintext_files"] == 0


def test_rotate_reencrypts_every_file_under_a_new_key(tmp_path: Path) -> None:
    """rotate makes a new key id and every file decrypts to the same bytes under it."""
    home, files = _home_with_files(tmp_path)
    old = json.loads(ok(cli("keys", "status", "--json", "--home", home)).stdout)["key_id"]
    new = json.loads(ok(cli("keys", "rotate", "--json", "--home", home)).stdout)
    assert new["key_id"] != old and not new["rotation_pending"]
    V._CACHE.clear()
    v = V.Vault(home)
    for path, data in files.items():
        assert V.parse_header(path.read_bytes())[0] == new["key_id"]
        assert v.read(path, V.identity_for(home, path)) == data


def test_set_passphrase_then_only_the_new_one_opens(tmp_path: Path) -> None:
    """set-passphrase with IDME_NEW_PASSPHRASE: afterwards the old passphrase is refused, the new one works."""
    home, _ = _home_with_files(tmp_path)
    ok(cli("keys", "set-passphrase", "--home", home, env={"IDME_NEW_PASSPHRASE": "correct horse battery"}))
    V._CACHE.clear()
    _one_line_failure(cli("keys", "rotate", "--home", home), "wrong passphrase")
    V._CACHE.clear()
    ok(cli("keys", "rotate", "--home", home, env={"IDME_PASSPHRASE": "correct horse battery"}))


def test_key_problems_are_one_line_and_change_nothing(tmp_path: Path) -> None:
    """Wrong passphrase, no passphrase (no keyring, no terminal), a damaged key file and a damaged encrypted
    file each give one line and exit 1, and no file of the home changes."""
    home, files = _home_with_files(tmp_path)
    before = _snapshot(home)
    V._CACHE.clear()
    _one_line_failure(cli("keys", "rotate", "--home", home, env={"IDME_PASSPHRASE": "guess"}), "wrong passphrase")
    _one_line_failure(cli("keys", "set-passphrase", "--home", home, env={"IDME_PASSPHRASE": None}),
                      "IDME_PASSPHRASE")
    assert _snapshot(home) == before

    key_file = (home / "keys.json").read_bytes()
    (home / "keys.json").write_bytes(key_file[: len(key_file) // 2])
    damaged = _snapshot(home)
    _one_line_failure(cli("keys", "rotate", "--home", home), "damaged")
    _one_line_failure(cli("keys", "status", "--home", home), "damaged")
    assert _snapshot(home) == damaged
    (home / "keys.json").write_bytes(key_file)

    victim = next(iter(files))
    blob = bytearray(victim.read_bytes())
    blob[-5] ^= 0xFF
    victim.write_bytes(bytes(blob))
    corrupted = _snapshot(home)
    V._CACHE.clear()
    _one_line_failure(cli("keys", "rotate", "--home", home), "does not decrypt")
    # The rotation stopped at the damaged file: every other file still reads, under one of the two keys.
    V._CACHE.clear()
    v = V.Vault(home)
    for path, data in files.items():
        if path != victim:
            assert v.read(path, V.identity_for(home, path)) == data
    assert victim.read_bytes() == corrupted[str(victim)]


def test_rotate_refuses_while_a_session_records(tmp_path: Path) -> None:
    """While a session is recording (in this process or another one) `keys rotate` gives one line, exit 1,
    and changes nothing; once the recording ends it rotates, and the session reads under the new key."""
    import subprocess
    import sys

    from idme.session.store import SessionStore

    home, files = _home_with_files(tmp_path)
    store = SessionStore(home)
    writer = store.create({}, {})
    writer.upsert_segment({"seg_id": 0, "start": 0.0, "end": 1.0, "speaker": "Me", "kind": "me", "score": 0.9,
                           "final": True, "text": "said during the refusal", "words": []})
    before = _snapshot(home)
    _one_line_failure(cli("keys", "rotate", "--home", home), "a session is recording")
    assert _snapshot(home) == before
    writer.finish()
    writer.close()
    store.close()
    # another process holding the home (a recorder or `idme serve`) is refused just the same
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from idme._fs import SharedHold; "
                               f"h = SharedHold({str(home)!r}); print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _one_line_failure(cli("keys", "rotate", "--home", home), "in use")
    finally:
        holder.communicate("")
    new = json.loads(ok(cli("keys", "rotate", "--json", "--home", home)).stdout)
    assert not new["rotation_pending"]
    with SessionStore(home) as again:
        assert again.get("latest").segments[0].text == "said during the refusal"
