"""End-to-end tests of the ``idme`` command line: enroll, listen, profiles, sessions, name, transcript,
models, devices, --version; run in-process with typer's CliRunner on the real encoder and the example
meeting, and as a real process where the process boundary is the point."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt

import idme.audio.sources
from idme import __version__
from idme.audio.microphone import MicrophoneSource
from idme.audio.sources import read_audio
from idme.eval.der import read_rttm, score_meeting
from idme.identity.enroll import read_kept_take
from idme.identity.profiles import ProfileStore

from clihelp import cli, enroll_args, events_of, final_labels, ok, refused
from conftest import profile_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MEETING = EXAMPLES / "meeting.wav"
OWNER_TAKES = [EXAMPLES / "enroll" / f"me_{i}.wav" for i in (1, 2, 3)]
#: Speaker 2414 of the example meeting (not an utterance of the meeting itself).
BOB_TAKE = Path(__file__).resolve().parent / "data" / "ls_2414_128291-0003.flac"

#: The keys of one ``listen --json`` line, and what each must hold.
EVENT_TYPES = {"type": str, "schema": str, "session_id": (str, type(None)),
               "id": int, "start": float, "end": float, "speaker": str, "kind": str, "score": float,
               "final": bool, "latency_ms": (float, type(None)), "text": str}
KINDS = {"me", "enrolled", "unknown"}
FORMATS = ("md", "txt", "srt", "vtt", "json", "rttm")


def copy_home(src: Path, dst: Path) -> Path:
    """A private copy of a store (profiles and sessions), so a test can change it freely.

    SQLite's -wal/-shm files come and go as connections close (garbage collection of an earlier test's
    store can remove them mid-copy); a file that vanished is simply not copied: its content is in the db.
    """
    def copy(s: str, d: str) -> None:
        try:
            shutil.copy2(s, d)
        except FileNotFoundError:
            pass

    shutil.copytree(src, dst, copy_function=copy)
    return dst


@pytest.fixture(scope="module")
def owner_home(tmp_path_factory) -> Path:
    """A store with the owner enrolled from the three example takes (once for the module)."""
    home = tmp_path_factory.mktemp("owner") / "home"
    result = ok(cli(*enroll_args(home)))
    assert result.stdout == ""
    assert "Enrolled you (Me): 3 take(s) with campplus" in result.stderr
    return home


@pytest.fixture(scope="module")
def meeting(owner_home: Path) -> dict:
    """`listen --file examples/meeting.wav --json --asr none` once: its result, events and session id."""
    result = ok(cli("listen", "--file", MEETING, "--json", "--asr", "none", "--home", owner_home))
    sessions = json.loads(ok(cli("sessions", "list", "--json", "--home", owner_home)).stdout)
    assert len(sessions) == 1
    return {"result": result, "events": events_of(result.stdout), "id": sessions[0]["id"]}


# -- enroll and listen --------------------------------------------------------------------------------


def test_enroll_from_files_creates_the_owner_profile(owner_home: Path) -> None:
    """Enrolling three files makes profile `me` with three takes of the bundled encoder."""
    profiles = json.loads(ok(cli("profiles", "list", "--json", "--home", owner_home)).stdout)
    assert [p["name"] for p in profiles] == ["me"]
    assert profiles[0]["kind"] == "me" and profiles[0]["n_takes"] == 3
    assert profiles[0]["encoder"]["name"] == "campplus"
    assert [t["source"] for t in profiles[0]["takes"]] == [str(f) for f in OWNER_TAKES]


def test_listen_json_lines_have_the_documented_keys_and_types(meeting: dict) -> None:
    """Every stdout line of `listen --file --json` is one JSON object with exactly the documented keys."""
    events = meeting["events"]
    assert len(events) >= 5
    for e in events:
        assert set(e) == set(EVENT_TYPES), e
        for key, kind in EVENT_TYPES.items():
            assert isinstance(e[key], kind), (key, e)
            assert kind is bool or not isinstance(e[key], bool), (key, e)  # True is an int in Python
        assert e["kind"] in KINDS and e["speaker"].strip() == e["speaker"] != ""
        assert 0.0 <= e["start"] <= e["end"] <= 48.3
        assert e["latency_ms"] is None  # file mode has no arrival time
        assert e["final"]  # no interim labels offline
        assert e["text"] == ""  # --asr none
    labels = final_labels(events)
    assert {e["speaker"] for e in labels.values() if e["kind"] == "me"} == {"Me"}
    assert all(e["speaker"].startswith("Speaker ") for e in labels.values() if e["kind"] == "unknown")


def test_listen_json_stdout_holds_only_json_and_logs_go_to_stderr(meeting: dict) -> None:
    """stdout carries nothing but the JSON lines; the 'session saved' hint is on stderr."""
    result = meeting["result"]
    assert result.stdout.strip()
    assert all(line.startswith("{") and line.endswith("}") for line in result.stdout.splitlines())
    assert f"session {meeting['id']} saved" in result.stderr
    assert "saved" not in result.stdout


def test_listen_labels_match_the_reference(meeting: dict) -> None:
    """The final labels of the example meeting find the owner and keep the others apart (scored DER)."""
    score = score_meeting(EXAMPLES, list(final_labels(meeting["events"]).values()))
    assert score["me_recall"] >= 0.9 and score["false_me"] <= 0.05, score
    assert score["der"] <= 0.15, score
    assert score["n_hyp_labels"] == 3, score


def test_listen_text_mode_prints_segments(owner_home: Path, tmp_path: Path) -> None:
    """Without --json, a piped `listen` prints one readable line per final segment, naming Me."""
    clip = tmp_path / "start.wav"
    audio, rate = sf.read(MEETING, dtype="float32", frames=8 * 16000)
    sf.write(clip, audio, rate, subtype="PCM_16")
    result = ok(cli("listen", "--file", clip, "--asr", "none", "--no-save", "--home", copy_home(owner_home, tmp_path / "h")))
    assert "Me" in result.stdout and "{" not in result.stdout
    assert "saved" not in result.stderr  # --no-save


def test_listen_realtime_stamps_latency_and_emits_interim_labels(owner_home: Path, tmp_path: Path) -> None:
    """`--realtime --speed 8`: first labels carry a latency in ms, interim labels (final false) exist."""
    home = copy_home(owner_home, tmp_path / "home")
    before = json.loads(ok(cli("sessions", "list", "--json", "--home", home)).stdout)
    result = ok(cli("listen", "--file", MEETING, "--realtime", "--speed", 8, "--json", "--asr", "none",
                    "--no-save", "--home", home))
    events = events_of(result.stdout)
    assert all(set(e) == set(EVENT_TYPES) for e in events)
    interims = [e for e in events if not e["final"]]
    assert interims, "no interim labels in real-time mode"
    first: dict[int, dict] = {}
    for e in events:
        first.setdefault(e["id"], e)
    for e in first.values():  # the first label of each segment says how late it came
        assert isinstance(e["latency_ms"], float) and e["latency_ms"] >= 0.0, e
    labels = final_labels(events)
    assert {e["id"] for e in interims} & set(labels), "no interim label was replaced by a final one"
    assert "Me" in {e["speaker"] for e in labels.values()}
    # --no-save: the store has no new session.
    assert json.loads(ok(cli("sessions", "list", "--json", "--home", home)).stdout) == before


def test_listen_option_conflicts_are_one_line_errors(owner_home: Path) -> None:
    """--realtime without --file, or --device with --file, is refused with one line and exit 1."""
    refused(cli("listen", "--realtime", "--home", owner_home), contains="--file")
    refused(cli("listen", "--file", MEETING, "--device", "1", "--home", owner_home), contains="--device")


def test_usage_errors_exit_2(owner_home: Path) -> None:
    """Bad options are usage errors: exit code 2, not 1."""
    assert cli("listen", "--speed", "0", "--home", owner_home).exit_code == 2
    assert cli("listen", "--no-such-flag").exit_code == 2
    assert cli("transcript", "--home", owner_home).exit_code == 2  # --out is required


# -- sessions and transcripts -------------------------------------------------------------------------


def test_sessions_list_and_show_match_the_final_labels(meeting: dict, owner_home: Path) -> None:
    """`sessions list/show` report the saved session with exactly the final labels listen printed."""
    listed = json.loads(ok(cli("sessions", "list", "--json", "--home", owner_home)).stdout)
    labels = final_labels(meeting["events"])
    assert listed[0]["status"] == "complete" and listed[0]["n_segments"] == len(labels)
    assert listed[0]["speakers"][0] == "Me"
    shown = json.loads(ok(cli("sessions", "show", meeting["id"], "--home", owner_home)).stdout)
    assert shown == json.loads(ok(cli("sessions", "show", "latest", "--home", owner_home)).stdout)
    assert shown == json.loads(ok(cli("sessions", "show", meeting["id"][:-2], "--home", owner_home)).stdout)
    assert shown["id"] == meeting["id"] and shown["status"] == "complete"
    assert shown["models"]["encoder"]["name"] == "campplus" and shown["models"]["asr"] is None
    saved = {s["seg_id"]: s for s in shown["segments"]}
    assert set(saved) == set(labels)
    for sid, e in labels.items():
        s = saved[sid]
        assert (s["speaker"], s["kind"]) == (e["speaker"], e["kind"])
        assert s["start"] == pytest.approx(e["start"], abs=1e-3) and s["end"] == pytest.approx(e["end"], abs=1e-3)
    assert {s["label"] for s in shown["speakers"]} == {e["speaker"] for e in labels.values()}


def test_sessions_list_plain_and_rm(owner_home: Path, meeting: dict, tmp_path: Path) -> None:
    """`sessions list` prints a table; `sessions rm ID` deletes the session, and show then refuses it."""
    home = copy_home(owner_home, tmp_path / "home")
    table = ok(cli("sessions", "list", "--home", home))
    assert meeting["id"][:8] in table.stdout and "complete" in table.stdout
    assert f"deleted session {meeting['id']}" in ok(cli("sessions", "rm", meeting["id"], "--home", home)).stderr
    assert json.loads(ok(cli("sessions", "list", "--json", "--home", home)).stdout) == []
    refused(cli("sessions", "show", meeting["id"], "--home", home), contains="no session")
    refused(cli("sessions", "show", "latest", "--home", home), contains="idme listen")


def check_export(fmt: str, text: str, session: dict) -> None:
    """Format-specific checks that the export is well formed and holds the session."""
    speakers = {s["speaker"] for s in session["segments"]}
    if fmt == "md":
        assert text.startswith(f"# idme session {session['id']}")
        assert all(f"**{label}:**" in text for label in speakers)
    elif fmt == "txt":
        lines = text.strip().splitlines()
        assert lines and all(line.startswith("[00:00:") for line in lines)
        assert {line.split("] ", 1)[1].split(":", 1)[0] for line in lines} == speakers
    elif fmt == "srt":
        cues = list(srt.parse(text))
        assert len(cues) >= len(speakers)
        assert {c.content.strip("[]") for c in cues} == speakers
        assert cues[0].start.total_seconds() == pytest.approx(session["segments"][0]["start"], abs=0.001)
    elif fmt == "vtt":
        assert text.startswith("WEBVTT")
        cues = webvtt.from_string(text).captions
        assert len(cues) >= len(speakers)
        assert {c.voice for c in cues} == speakers
        h, m, sec = cues[0].start.split(":")
        assert int(h) * 3600 + int(m) * 60 + float(sec) == pytest.approx(session["segments"][0]["start"], abs=0.001)
    elif fmt == "json":
        doc = json.loads(text)
        assert doc["session"]["id"] == session["id"]
        assert doc["segments"] == session["segments"]
    elif fmt == "rttm":
        lines = text.strip().splitlines()
        assert len(lines) == sum(1 for s in session["segments"] if s["end"] > s["start"])
        for line, seg in zip(lines, (s for s in session["segments"] if s["end"] > s["start"])):
            f = line.split()
            assert f[0] == "SPEAKER" and f[1] == Path(session["settings"]["uri"]).name == MEETING.stem and len(f) == 10
            assert float(f[3]) == pytest.approx(seg["start"], abs=1e-3)
            assert f[7] == ("Me" if seg["kind"] == "me" else seg["speaker"].replace(" ", "_"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_transcript_exports_each_format_to_a_file_and_to_stdout(fmt: str, meeting: dict, owner_home: Path,
                                                                tmp_path: Path) -> None:
    """`transcript --out FILE.fmt` writes the format (0600), and `--out - --format fmt` prints the same."""
    session = json.loads(ok(cli("sessions", "show", meeting["id"], "--home", owner_home)).stdout)
    out = tmp_path / f"meeting.{fmt}"
    result = ok(cli("transcript", "--session", meeting["id"], "--out", out, "--home", owner_home))
    assert result.stdout == "" and f"wrote {out}" in result.stderr
    text = out.read_text(encoding="utf-8")
    assert (out.stat().st_mode & 0o777) == 0o600
    check_export(fmt, text, session)
    piped = ok(cli("transcript", "--out", "-", "--format", fmt, "--home", owner_home))  # latest session
    assert piped.stdout == text
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left behind


def test_transcript_format_flag_overrides_the_extension(meeting: dict, owner_home: Path, tmp_path: Path) -> None:
    """`--format json` wins over a .txt extension."""
    out = tmp_path / "notes.txt"
    ok(cli("transcript", "--out", out, "--format", "json", "--home", owner_home))
    assert json.loads(out.read_text())["session"]["id"] == meeting["id"]


def test_rttm_export_scores_like_the_json_final_labels(meeting: dict, owner_home: Path, tmp_path: Path) -> None:
    """The saved session exported as RTTM scores exactly as the final labels `listen --json` printed."""
    rttm = tmp_path / "meeting.rttm"
    ok(cli("transcript", "--out", rttm, "--home", owner_home))
    from_rttm = score_meeting(EXAMPLES, rttm)
    from_json = score_meeting(EXAMPLES, list(final_labels(meeting["events"]).values()))
    assert from_rttm == from_json
    assert from_rttm["me_recall"] >= 0.9


# -- profiles and naming ------------------------------------------------------------------------------


def test_profiles_show_rename_and_rm(owner_home: Path, tmp_path: Path) -> None:
    """A second person is enrolled by name, shown, renamed and deleted; the owner is untouched."""
    home = copy_home(owner_home, tmp_path / "home")
    ok(cli("enroll", "--name", "bob", "--file", BOB_TAKE, "--home", home))
    assert [p["name"] for p in json.loads(ok(cli("profiles", "list", "--json", "--home", home)).stdout)] == ["me", "bob"]
    table = ok(cli("profiles", "list", "--home", home)).stdout
    assert "Me" in table and "bob" in table and "enrolled" in table
    shown = json.loads(ok(cli("profiles", "show", "bob", "--home", home)).stdout)
    assert shown["name"] == "bob" and shown["kind"] == "enrolled" and shown["n_takes"] == 1
    assert "embeddings" not in shown  # never the voiceprint itself
    assert json.loads(ok(cli("profiles", "show", "Me", "--home", home)).stdout)["name"] == "me"

    ok(cli("profiles", "rename", "bob", "robert", "--home", home))
    names = [p["name"] for p in json.loads(ok(cli("profiles", "list", "--json", "--home", home)).stdout)]
    assert names == ["me", "robert"]
    assert json.loads(ok(cli("profiles", "show", "robert", "--home", home)).stdout)["n_takes"] == 1
    assert not profile_dir(home, "bob").exists()
    refused(cli("profiles", "show", "bob", "--home", home), contains="no profile 'bob'")
    refused(cli("profiles", "rename", "robert", "me", "--home", home), contains="already exists")
    refused(cli("profiles", "rename", "robert", "Speaker 3", "--home", home), contains="reserved")

    ok(cli("profiles", "rm", "robert", "--yes", "--home", home))
    assert not profile_dir(home, "robert").exists()
    assert [p["name"] for p in json.loads(ok(cli("profiles", "list", "--json", "--home", home)).stdout)] == ["me"]
    refused(cli("profiles", "rm", "robert", "--yes", "--home", home), contains="no profile")


def _speaker_of(label: str, events: list[dict]) -> str:
    """The reference speaker that a hypothesis label covers most."""
    ref = read_rttm(EXAMPLES / "reference.rttm")["meeting"]
    overlap: dict[str, float] = {}
    for e in events:
        if e["speaker"] == label:
            for r in ref:
                overlap[r.speaker] = overlap.get(r.speaker, 0.0) + max(0.0, min(e["end"], r.end) - max(e["start"], r.start))
    return max(overlap, key=overlap.get)


def test_name_turns_an_unknown_speaker_into_a_profile(meeting: dict, owner_home: Path, tmp_path: Path) -> None:
    """`name latest "Speaker 1" carol` creates profile carol, relabels the session, and the next listen
    of the meeting labels that same person carol (kind enrolled)."""
    home = copy_home(owner_home, tmp_path / "home")
    before = json.loads(ok(cli("sessions", "show", "latest", "--home", home)).stdout)
    n_spk1 = sum(s["speaker"] == "Speaker 1" for s in before["segments"])
    assert n_spk1 > 0
    person = _speaker_of("Speaker 1", before["segments"])

    result = ok(cli("name", "latest", "Speaker 1", "carol", "--home", home))
    assert f"{n_spk1} segment(s) relabelled" in result.stderr
    profiles = json.loads(ok(cli("profiles", "list", "--json", "--home", home)).stdout)
    carol = next(p for p in profiles if p["name"] == "carol")
    assert carol["kind"] == "enrolled" and carol["encoder"]["name"] == "campplus"
    after = json.loads(ok(cli("sessions", "show", "latest", "--home", home)).stdout)
    assert not any(s["speaker"] == "Speaker 1" for s in after["segments"])
    relabelled = [s for s in after["segments"] if s["speaker"] == "carol"]
    assert len(relabelled) == n_spk1 and all(s["kind"] == "enrolled" for s in relabelled)
    refused(cli("name", "latest", "Speaker 9", "dave", "--home", home), contains="Speaker 9")

    again = events_of(ok(cli("listen", "--file", MEETING, "--json", "--asr", "none", "--home", home)).stdout)
    labels = list(final_labels(again).values())
    carol_segs = [e for e in labels if e["speaker"] == "carol"]
    assert carol_segs and all(e["kind"] == "enrolled" for e in carol_segs)
    assert _speaker_of("carol", labels) == person
    assert "Me" in {e["speaker"] for e in labels}


# -- models, devices, version -------------------------------------------------------------------------


def test_models_lists_the_bundled_encoder_as_installed() -> None:
    """`idme models` lists campplus as installed (JSON and table)."""
    rows = json.loads(ok(cli("models", "--json")).stdout)
    camp = next(r for r in rows if r["key"] == "campplus")
    assert camp["installed"] is True and Path(camp["path"]).is_dir()
    assert "campplus" in ok(cli("models")).stdout


def test_devices_without_portaudio_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no PortAudio (sounddevice cannot be imported) `idme devices` says so in one line, exit 1."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # `import sounddevice` raises ImportError
    line = refused(cli("devices"), contains="PortAudio")
    assert line.startswith("error:")


def test_microphone_enroll_without_portaudio_fails_before_the_countdown(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """`enroll` from the microphone with no PortAudio: one line, exit 1, no prompt or countdown first."""
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    sleeps: list[float] = []
    monkeypatch.setattr(time, "sleep", sleeps.append)
    refused(cli("enroll", "--home", tmp_path / "home"), contains="PortAudio")
    assert sleeps == []
    assert not profile_dir(tmp_path / "home", "me").exists()


def test_version_in_process_and_as_a_process() -> None:
    """`idme --version` prints the version and exits 0, also through `python -m idme.cli`."""
    result = ok(cli("--version"))
    assert result.stdout.strip() == f"idme {__version__}"
    env = {k: v for k, v in os.environ.items() if k != "IDME_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "idme.cli", "--version"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"idme {__version__}", proc.stderr


# -- microphone enrollment (a fake input stream feeding real speech) ----------------------------------


class FakeStream:
    """Stands in for sounddevice.InputStream: start() hands every block to the callback at once."""

    def __init__(self, blocks, *, samplerate, blocksize, device, channels, dtype, callback):
        assert dtype == "float32" and channels == 1
        self.blocks, self.callback = blocks, callback
        self.active = False

    def start(self) -> None:
        self.active = True
        for block in self.blocks:
            self.callback(block, len(block), None, None)

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


def fake_microphone(clips: list[Path], opened: list[str]):
    """A MicrophoneSource factory whose n-th microphone plays clips[n] (16 kHz, 30 ms blocks)."""
    queue = list(clips)

    def factory(device=None, **kw):
        clip = queue.pop(0)
        opened.append(clip.name)
        x = read_audio(clip)
        blocks = [x[i:i + 480].reshape(-1, 1) for i in range(0, len(x), 480)]
        return MicrophoneSource(samplerate=16000, queue_blocks=len(blocks) + 1,
                                stream_factory=partial(FakeStream, blocks))

    return factory


def test_enroll_from_the_microphone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`enroll --takes 2 --seconds 3` records two 3 s takes from the microphone, each after a 3-2-1
    countdown, and enrols the owner from them."""
    opened: list[str] = []
    sleeps: list[float] = []
    monkeypatch.setattr(idme.audio.sources, "MicrophoneSource",
                        fake_microphone([OWNER_TAKES[1], OWNER_TAKES[2]], opened))
    monkeypatch.setattr(time, "sleep", sleeps.append)
    home = tmp_path / "home"
    result = ok(cli("enroll", "--takes", 2, "--seconds", 3, "--keep-audio", "--home", home))
    assert opened == ["me_2.wav", "me_3.wav"]
    assert sleeps == [1, 1, 1, 1, 1, 1]
    assert "Take 1/2" in result.stderr and "Take 2/2" in result.stderr and result.stdout == ""
    profile = json.loads(ok(cli("profiles", "show", "me", "--home", home)).stdout)
    assert profile["n_takes"] == 2 and [t["source"] for t in profile["takes"]] == ["take 1", "take 2"]
    assert all(t["speech_s"] >= 1.5 for t in profile["takes"])
    # The kept takes are exactly the first 3 s the microphone delivered.
    kept = sorted((profile_dir(home, "me") / "audio").glob("*.wav"))
    assert len(kept) == 2
    for path, clip in zip(kept, (OWNER_TAKES[1], OWNER_TAKES[2])):
        take = read_kept_take(ProfileStore(home), path)  # kept audio is encrypted at rest (issue 14), 16 kHz
        assert len(take) == 3 * 16000
        np.testing.assert_allclose(take, read_audio(clip)[: 3 * 16000], atol=1 / 32768)


def test_enrollment_never_reports_more_speech_than_recorded(tmp_path: Path) -> None:
    """A 3 s take cannot hold more than 3 s of speech (the first 3 s of me_3.wav has a short pause)."""
    clip = tmp_path / "take.wav"
    sf.write(clip, read_audio(OWNER_TAKES[2])[: 3 * 16000], 16000, subtype="PCM_16")
    home = tmp_path / "home"
    ok(cli("enroll", "--file", clip, "--home", home))
    speech_s = json.loads(ok(cli("profiles", "show", "me", "--home", home)).stdout)["takes"][0]["speech_s"]
    assert speech_s <= 3.0


@pytest.mark.parametrize("command", [["listen"], ["enroll"], ["eval", "trials"], ["models"], ["sessions", "list"]])
def test_help_shows_what_to_type_not_python_types(command: list[str]) -> None:
    """Help pages carry no Python type names such as <bool>, <str> or <list[Path]> (UX review)."""
    result = cli(*command, "--help")
    assert result.exit_code == 0
    for python_type in ("<bool>", "<str>", "<list[", "<int>", "<float>"):
        assert python_type not in result.stdout, f"{command}: {python_type}"
