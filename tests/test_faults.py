"""The fault matrix, through the command line: every bad input, format, environment and interruption is
either processed correctly or refused with ONE line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

import idme.audio.sources
from idme.audio.microphone import MicrophoneSource
from idme.eval.der import score_files

from conftest import open_db, profile_dir, profile_identity
from clihelp import CLEAN_ENV, PROC_ENV, cli, events_of, final_labels, ok, one_error_line, refused

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
MEETING = EXAMPLES / "meeting.wav"
OWNER_TAKES = [EXAMPLES / "enroll" / f"me_{i}.wav" for i in (1, 2, 3)]
#: The example meeting is cut here, in a pause: it holds two turns of the owner and both other people.
CROP_S = 26.0


def sessions(home: Path) -> list[dict]:
    return json.loads(ok(cli("sessions", "list", "--json", "--home", home)).stdout)


def show(home: Path, session: str = "latest") -> dict:
    return json.loads(ok(cli("sessions", "show", session, "--home", home)).stdout)


def assert_owner_found(events: list[dict], min_recall: float = 0.8) -> None:
    """The final labels of the cropped meeting name the owner on the owner's turns, and only there."""
    labels = list(final_labels(events).values())
    assert "Me" in {e["speaker"] for e in labels if e["kind"] == "me"}
    meta = json.loads((EXAMPLES / "meta.json").read_text())
    score = score_files(EXAMPLES / "reference.rttm", labels, meta, uem=[(0.0, CROP_S)])
    assert score["me_recall"] >= min_recall and score["false_me"] <= 0.1, score


def listen_json(home: Path, path: Path, *extra: object):
    return cli("listen", "--file", path, "--json", "--asr", "none", "--home", home, *extra)


def idme_process(*args: object, **kw) -> subprocess.Popen:
    """``python -m idme.cli ARGS`` as a real process (text pipes unless redirected)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([sys.executable, "-m", "idme.cli", *map(str, args)], text=True, env=PROC_ENV, **kw)


@pytest.fixture(scope="module")
def owner_home(tmp_path_factory) -> Path:
    """A store with the owner enrolled (once for the module)."""
    home = tmp_path_factory.mktemp("faults") / "home"
    args: list[object] = ["enroll", "--home", home]
    for f in OWNER_TAKES:
        args += ["--file", f]
    ok(cli(*args))
    return home


@pytest.fixture
def home(owner_home: Path, tmp_path: Path) -> Path:
    """A private copy of the enrolled store, for tests that add sessions or break things."""
    return Path(shutil.copytree(owner_home, tmp_path / "home"))


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """The first CROP_S seconds of the example meeting: float32, shape (n,), 16 kHz."""
    audio, rate = sf.read(MEETING, dtype="float32", frames=int(CROP_S * 16000))
    assert rate == 16000
    return audio


@pytest.fixture
def crop_wav(crop: np.ndarray, tmp_path: Path) -> Path:
    path = tmp_path / "crop.wav"
    sf.write(path, crop, 16000, subtype="PCM_16")
    return path


# -- files that cannot be audio -----------------------------------------------------------------------


def _empty(d: Path) -> Path:
    (d / "empty.wav").write_bytes(b"")
    return d / "empty.wav"


def _zero_frames(d: Path) -> Path:
    sf.write(d / "zero.wav", np.zeros(0, np.int16), 16000, subtype="PCM_16")
    return d / "zero.wav"


def _header_only(d: Path) -> Path:
    # The 44-byte header of the meeting (it promises 1.5 MB of samples) with no data after it.
    (d / "header.wav").write_bytes(MEETING.read_bytes()[:44])
    return d / "header.wav"


def _text(d: Path) -> Path:
    (d / "notes.wav").write_text("these are meeting notes, not audio\n" * 40)
    return d / "notes.wav"


def _missing(d: Path) -> Path:
    return d / "no such file.wav"


def _directory(d: Path) -> Path:
    (d / "folder.wav").mkdir()
    return d / "folder.wav"


BAD_INPUTS = {
    "empty file": (_empty, "empty (0 bytes)"),
    "zero-length wav": (_zero_frames, "no audio samples"),
    "header-only wav": (_header_only, "no audio samples"),
    "text renamed .wav": (_text, "not a readable audio file"),
    "missing file": (_missing, "not found"),
    "directory": (_directory, "directory"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_unusable_input_is_refused_by_listen_and_enroll(case: str, owner_home: Path, tmp_path: Path) -> None:
    """listen --file and enroll --file refuse an unusable input in one line; nothing is created."""
    make, message = BAD_INPUTS[case]
    path = make(tmp_path)
    before = sessions(owner_home)
    refused(listen_json(owner_home, path), message)
    assert sessions(owner_home) == before  # no session was started for it
    refused(cli("enroll", "--name", "alice", "--file", path, "--home", owner_home), message)
    assert not profile_dir(owner_home, "alice").exists()


def test_truncated_flac_keeps_the_audio_before_the_damage(crop: np.ndarray, home: Path, tmp_path: Path) -> None:
    """A flac cut at 60 % of its bytes is labelled up to the cut, with a warning; exit 0."""
    full = tmp_path / "full.flac"
    sf.write(full, crop, 16000, subtype="PCM_16")
    cut = tmp_path / "cut.flac"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    result = ok(listen_json(home, cut))
    assert "truncated or damaged" in " ".join(result.stderr.split())
    labels = final_labels(events_of(result.stdout))
    assert labels and max(e["end"] for e in labels.values()) < 0.75 * CROP_S
    assert "Me" in {e["speaker"] for e in labels.values()}


# -- formats of the same meeting ----------------------------------------------------------------------


def _variant(crop: np.ndarray, path: Path, kind: str) -> None:
    if kind.startswith("rate "):
        rate = int(kind.split()[1])
        sf.write(path, soxr.resample(crop, 16000, rate), rate, subtype="PCM_16")
    elif kind == "stereo, voice on the left only":
        sf.write(path, np.stack([crop, np.zeros_like(crop)], axis=1), 16000, subtype="PCM_16")
    elif kind == "24-bit":
        sf.write(path, crop, 16000, subtype="PCM_24")
    elif kind == "float32":
        sf.write(path, crop, 16000, subtype="FLOAT")
    elif kind == "DC offset +0.3":
        sf.write(path, crop + np.float32(0.3), 16000, subtype="FLOAT")  # float: +0.3 must not clip
    else:  # pragma: no cover
        raise ValueError(kind)


VARIANTS = ["rate 8000", "rate 44100", "rate 48000", "rate 96000", "stereo, voice on the left only", "24-bit",
            "float32", "DC offset +0.3"]


@pytest.mark.parametrize("kind", VARIANTS)
def test_format_variants_of_the_meeting_still_find_the_owner(kind: str, crop: np.ndarray, home: Path,
                                                            tmp_path: Path) -> None:
    """Other rates, channel layouts, sample formats and a DC offset: processed, and Me is still right."""
    path = tmp_path / "variant.wav"
    _variant(crop, path, kind)
    info = sf.info(path)
    result = ok(listen_json(home, path))
    assert_owner_found(events_of(result.stdout))
    assert f"{info.samplerate} Hz, {info.channels} ch" in show(home)["source"]


def test_clipped_meeting_is_processed(crop: np.ndarray, home: Path, tmp_path: Path) -> None:
    """The meeting amplified x20 and clipped is labelled without a crash (exit 0, well-formed labels)."""
    path = tmp_path / "clipped.wav"
    loud = np.clip(crop * 20.0, -1.0, 1.0)
    assert np.mean(np.abs(loud) >= 1.0) > 0.05  # heavily clipped indeed
    sf.write(path, loud, 16000, subtype="PCM_16")
    result = ok(listen_json(home, path))
    labels = final_labels(events_of(result.stdout))
    assert len(labels) >= 3
    assert all(0.0 <= e["start"] <= e["end"] <= CROP_S + 0.1 for e in labels.values())
    assert show(home)["status"] == "complete"


def test_path_with_spaces_and_non_ascii(crop_wav: Path, home: Path, tmp_path: Path) -> None:
    """A recording called 'réunion du lundi.wav' is labelled, recorded by name, and exported."""
    path = tmp_path / "réunion du lundi.wav"
    crop_wav.rename(path)
    result = ok(listen_json(home, path))
    assert_owner_found(events_of(result.stdout))
    assert "réunion du lundi.wav" in show(home)["source"]
    out = tmp_path / "compte rendu été.md"
    ok(cli("transcript", "--out", out, "--home", home))
    assert "réunion du lundi.wav" in out.read_text(encoding="utf-8")


# -- silence ------------------------------------------------------------------------------------------


def test_ten_seconds_of_silence_is_no_speech(home: Path, tmp_path: Path) -> None:
    """An all-silent 10 s file: exit 0, no segment events (only the closing `end`), 'no speech found',
    an empty session."""
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(10 * 16000, np.int16), 16000, subtype="PCM_16")
    result = ok(listen_json(home, path))
    assert events_of(result.stdout) == []
    assert "no speech found" in result.stderr
    session = show(home)
    assert session["segments"] == [] and session["status"] == "complete"


#: Runs argv[2:] and writes its peak RSS (KiB) to argv[1]. A small wrapper process, because a child forked
#: straight from pytest inherits pytest's high-water mark across exec.
PEAK_RSS = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(child.returncode)
"""


def test_three_hours_of_silence_stream_in_bounded_memory(home: Path, tmp_path: Path) -> None:
    """3 h of 8 kHz silence (173 MB): exit 0, 'no speech found', no JSON, and peak RSS stays bounded."""
    path = tmp_path / "three hours.wav"
    minute = np.zeros(60 * 8000, np.int16)
    with sf.SoundFile(path, "w", 8000, 1, subtype="PCM_16") as f:
        for _ in range(180):
            f.write(minute)
    assert path.stat().st_size > 170e6
    out, err, rss = tmp_path / "stdout", tmp_path / "stderr", tmp_path / "rss"
    with out.open("w") as fo, err.open("w") as fe:
        code = subprocess.call([sys.executable, "-c", PEAK_RSS, rss, sys.executable, "-m", "idme.cli", "listen",
                                "--file", path, "--json", "--asr", "none", "--home", home],
                               stdout=fo, stderr=fe, env=PROC_ENV, timeout=300)
    assert code == 0, err.read_text()
    assert events_of(out.read_text()) == []
    assert "no speech found" in err.read_text()
    peak_kib = int(rss.read_text())  # ru_maxrss is in KiB on Linux
    assert peak_kib * 1024 < 600e6, f"peak RSS {peak_kib / 1024:.0f} MiB"
    session = show(home)
    assert session["segments"] == [] and session["duration_s"] == pytest.approx(3 * 3600, abs=1)


# -- the store and the profiles -----------------------------------------------------------------------


def test_listen_without_an_enrolled_owner(crop_wav: Path, tmp_path: Path) -> None:
    """With nobody enrolled, listen labels unknown speakers only and says (on stderr) to run `idme enroll`
    (issue 10: diarization without an owner)."""
    result = ok(listen_json(tmp_path / "empty home", crop_wav))
    assert "idme enroll" in result.stderr
    assert {e["kind"] for e in final_labels(events_of(result.stdout)).values()} == {"unknown"}


def test_profile_from_another_encoder_asks_to_re_enrol(home: Path, crop_wav: Path) -> None:
    """A profile tagged with another encoder version is refused by listen and enroll with the re-enrol hint."""
    from idme.vault import vault_for

    meta_path = profile_dir(home, "me") / "profile.json"
    vault, identity = vault_for(home), profile_identity(home, "me")  # profile.json is encrypted at rest (issue 14)
    meta = json.loads(vault.read(meta_path, identity))
    meta["encoder"]["version"] = "an-older-version"
    vault.write(meta_path, json.dumps(meta).encode(), identity)
    refused(listen_json(home, crop_wav), "re-enrol")
    assert sessions(home) == []
    refused(cli("enroll", "--file", OWNER_TAKES[0], "--home", home), "re-enrol")
    assert json.loads(vault.read(meta_path, identity))["encoder"]["version"] == "an-older-version"


def test_unknown_session_ids_are_refused(owner_home: Path, tmp_path: Path) -> None:
    """transcript / sessions show / sessions rm / name with an unknown session id: one line, exit 1."""
    out = tmp_path / "x.md"
    refused(cli("transcript", "--session", "nope", "--out", out, "--home", owner_home), "no session")
    assert not out.exists()
    refused(cli("sessions", "show", "nope", "--home", owner_home), "no session 'nope'")
    refused(cli("sessions", "rm", "nope", "--home", owner_home), "no session 'nope'")
    refused(cli("name", "nope", "Speaker 1", "carol", "--home", owner_home), "no session 'nope'")
    assert not profile_dir(owner_home, "carol").exists()


@pytest.fixture(scope="module")
def listened_home(owner_home: Path, tmp_path_factory) -> Path:
    """A store holding one session of the cropped meeting."""
    home = Path(shutil.copytree(owner_home, tmp_path_factory.mktemp("listened") / "home"))
    wav = home.parent / "crop.wav"
    audio, _ = sf.read(MEETING, dtype="float32", frames=int(CROP_S * 16000))
    sf.write(wav, audio, 16000, subtype="PCM_16")
    ok(listen_json(home, wav))
    return home


@pytest.mark.parametrize("args, message", [
    (["--out", "{d}/meeting.docx"], "unknown export format 'docx'"),
    (["--out", "-", "--format", "pdf"], "unknown export format 'pdf'"),
    (["--out", "{d}/meeting"], "no extension"),
])
def test_unknown_export_format_writes_nothing(args: list[str], message: str, listened_home: Path,
                                              tmp_path: Path) -> None:
    """An unknown or missing export format is refused in one line and nothing is written."""
    d = tmp_path / "out"
    d.mkdir()
    refused(cli("transcript", *[a.format(d=d) for a in args], "--home", listened_home), message)
    assert list(d.iterdir()) == []


def test_unwritable_output_path_writes_nothing(listened_home: Path, tmp_path: Path) -> None:
    """An output path under a regular file, in a missing folder, or naming a folder: refused, nothing written."""
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    refused(cli("transcript", "--out", afile / "x.md", "--home", listened_home), "cannot write")
    refused(cli("transcript", "--out", tmp_path / "missing" / "x.md", "--home", listened_home), "does not exist")
    folder = tmp_path / "folder.md"
    folder.mkdir()
    refused(cli("transcript", "--out", folder, "--home", listened_home), "directory")
    assert afile.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "folder.md"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("where", ["under a regular file", "in /proc"])
def test_unusable_idme_home_is_one_line(where: str, tmp_path: Path, crop_wav: Path) -> None:
    """IDME_HOME where nothing can be created: every command says so in one line (StoreError), exit 1."""
    if where == "in /proc":
        store = Path("/proc/idme-test-home")
        if not Path("/proc/self").exists():
            pytest.skip("no /proc on this system")
    else:
        (tmp_path / "afile").write_text("")
        store = tmp_path / "afile" / "home"
    env = {**CLEAN_ENV, "IDME_HOME": str(store)}
    for args in (["enroll", "--file", OWNER_TAKES[0]], ["listen", "--file", crop_wav, "--json"],
                 ["sessions", "list"], ["profiles", "list"], ["transcript", "--out", "-", "--format", "md"]):
        line = refused(cli(*args, env=env))
        assert str(store) in line and ("IDME_HOME" in line or "--home" in line), line
    assert not store.exists()


# -- the microphone goes away -------------------------------------------------------------------------


class DyingStream:
    """Stands in for sounddevice.InputStream: delivers its blocks at start(), then reports itself stopped
    (what PortAudio does when the device is unplugged)."""

    def __init__(self, blocks, *, samplerate, blocksize, device, channels, dtype, callback):
        self.blocks, self.callback = blocks, callback
        self.active = False

    def start(self) -> None:
        self.active = True
        for block in self.blocks:
            self.callback(block, len(block), None, None)
        self.active = False  # the device vanished after these blocks

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        pass


def test_microphone_disappearing_mid_session_saves_what_was_heard(crop: np.ndarray, home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The input device dies after 20 s: the segments so far are printed and saved (status interrupted),
    the error is one line, exit 1."""
    heard = crop[: 20 * 16000]
    blocks = [heard[i:i + 480].reshape(-1, 1) for i in range(0, len(heard), 480)]

    def microphone(device=None, **kw):
        return MicrophoneSource(samplerate=16000, queue_blocks=len(blocks) + 1,
                                stream_factory=partial(DyingStream, blocks))

    monkeypatch.setattr(idme.audio.sources, "MicrophoneSource", microphone)
    result = cli("listen", "--json", "--asr", "none", "--home", home)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (result.exception, result.stderr)
    one_error_line(result.stderr, "unplugged")
    labels = final_labels(events_of(result.stdout))
    assert labels and "Me" in {e["speaker"] for e in labels.values()}
    session = show(home)
    assert session["status"] == "interrupted" and session["source"].startswith("microphone")
    saved = {s["seg_id"]: (s["speaker"], s["start"], s["end"]) for s in session["segments"]}
    assert saved == {i: (e["speaker"], e["start"], e["end"]) for i, e in labels.items()}
    assert max(end for _, _, end in saved.values()) <= 20.0 + 0.05
    assert session["duration_s"] == pytest.approx(20.0, abs=0.1)


# -- the disk fills up --------------------------------------------------------------------------------

#: Runs `idme ARGS` with a session store that reports "disk full" after LIMIT segments (argv[1]): the
#: sqlite3 error goes through the store's own error mapping, as a real SQLITE_FULL would.
DISK_FULL_AFTER = """
import sqlite3, sys
from idme.session import store

LIMIT = int(sys.argv[1])
saved = []
upsert = store.SessionWriter.upsert_segment

def full(self, *args, **kwargs):
    raise store._store_error(sqlite3.OperationalError("database or disk is full"), self.path,
                             f"saving (session {self.session_id})")

def limited(self, seg):
    if len(saved) >= LIMIT:
        full(self)
    upsert(self, seg)
    saved.append(seg["seg_id"])

upsert_many = store.SessionWriter.upsert_segments

def limited_many(self, segs):
    # A batch is one transaction: one that does not fit fails whole, as on a real full disk.
    segs = list(segs)
    if len(saved) + len(segs) > LIMIT:
        full(self)
    upsert_many(self, segs)
    saved.extend(seg["seg_id"] for seg in segs)
    return len(segs)

store.SessionWriter.upsert_segment = limited
store.SessionWriter.upsert_segments = limited_many
store.SessionWriter.save_speakers = full
store.SessionWriter.finish = full
from idme.cli import main
sys.argv = ["idme", *sys.argv[2:]]
main()
"""


def test_disk_full_while_writing_keeps_what_was_saved(home: Path, crop_wav: Path) -> None:
    """The store fills up after 3 segments: one line naming the full disk, exit 1, and the 3 segments
    stay readable with `idme sessions show` (status incomplete)."""
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_AFTER, "3", "listen", "--file", str(crop_wav), "--json",
                           "--asr", "none", "--home", str(home)], capture_output=True, text=True, env=PROC_ENV,
                          timeout=300)
    assert proc.returncode == 1, proc.stderr
    one_error_line(proc.stderr, "is full; everything saved before is kept")
    printed = [e for e in events_of(proc.stdout) if e["final"]]
    assert len(printed) >= 4  # the fourth final label is the one that could not be saved
    session = show(home)
    assert session["status"] == "incomplete"
    assert [(s["seg_id"], s["speaker"]) for s in session["segments"]] == [(e["id"], e["speaker"]) for e in printed[:3]]
    md = ok(cli("transcript", "--out", "-", "--format", "md", "--home", home)).stdout
    assert "**Status:** incomplete" in md


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A 1 MiB tmpfs (needs root and mount rights; skipped elsewhere), unmounted afterwards."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_really_full_disk_keeps_what_was_saved(owner_home: Path, crop_wav: Path, tiny_fs: Path) -> None:
    """On a real file system left with 64 KiB free, listen stops at the full disk with one line, exit 1;
    every segment it committed is readable."""
    shutil.copytree(owner_home / "profiles", tiny_fs / "profiles")
    shutil.copy2(owner_home / "keys.json", tiny_fs / "keys.json")  # the profiles' data key (issue 14)
    ok(cli("sessions", "list", "--home", tiny_fs))  # creates the (empty) store
    free_kib = os.statvfs(tiny_fs).f_bavail * os.statvfs(tiny_fs).f_frsize // 1024
    with open(tiny_fs / "filler", "wb") as f:
        f.write(b"\0" * (free_kib - 64) * 1024)
    proc = idme_process("listen", "--file", crop_wav, "--json", "--asr", "none", "--home", tiny_fs)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr
    one_error_line(stderr, "full")
    printed = final_labels(events_of(stdout))
    session = show(tiny_fs)  # reading needs no free space
    # Marking the session finished is best effort on a full disk: it may or may not fit.
    assert session["status"] in ("incomplete", "interrupted") and session["segments"]
    for s in session["segments"]:
        assert printed[s["seg_id"]]["speaker"] == s["speaker"]


# -- several processes, and processes that are stopped -----------------------------------------------


def _integrity(db: Path) -> str:
    conn = open_db(db)  # SQLCipher-encrypted (issue 14): opened under the home's key
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def test_two_listeners_share_one_store(home: Path, crop_wav: Path) -> None:
    """Two `listen` processes writing one store at once both complete, and the store stays intact."""
    procs = [idme_process("listen", "--file", crop_wav, "--json", "--asr", "none", "--home", home) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert all(line.startswith("{") for line in stdout.splitlines())  # stdout: JSON only, at fd level
    listed = sessions(home)
    assert len(listed) == 2 and {s["status"] for s in listed} == {"complete"}
    counts = sorted(len(final_labels(events_of(out))) for out, _ in outputs)
    assert sorted(s["n_segments"] for s in listed) == counts and counts[0] > 0
    for s in listed:
        assert show(home, s["id"])["segments"]
    assert _integrity(home / "sessions.db") == "ok"


class LineReader:
    """Collects a process's stdout lines on a thread, so the test can wait for a number of final labels."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self.lines.append("")  # EOF marker
            self._cond.notify_all()

    def wait_finals(self, n: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum('"final": true' in line for line in self.lines) < n:
                assert "" not in self.lines, "the process ended early"
                assert self._cond.wait(max(0.0, deadline - time.monotonic())), "timed out waiting for labels"

    def events(self) -> list[dict]:
        self._thread.join(60)
        return events_of("".join(self.lines))


def test_sigkill_mid_session_leaves_a_readable_incomplete_session(home: Path, crop_wav: Path) -> None:
    """`kill -9` of a real-time listen: `sessions show latest` reads every segment decided before the
    kill (the one being written at that instant excepted), with status incomplete."""
    proc = idme_process("listen", "--file", crop_wav, "--realtime", "--speed", 4, "--json", "--asr", "none",
                        "--home", home)
    reader = LineReader(proc)
    reader.wait_finals(3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    printed = [e for e in reader.events() if e["final"]]
    assert len(printed) >= 3
    session = show(home)
    assert session["status"] == "incomplete"
    saved = {s["seg_id"]: s for s in session["segments"]}
    decided = final_labels(printed[:-1])  # the last printed label may not have been committed yet
    assert set(decided) <= set(saved) <= {e["id"] for e in printed}
    for seg_id, e in decided.items():
        assert saved[seg_id]["speaker"] == e["speaker"]
        assert saved[seg_id]["end"] == pytest.approx(e["end"], abs=1e-3)
    assert max(s["end"] for s in saved.values()) < CROP_S - 2  # killed part-way indeed
    assert "Status:** incomplete" in ok(cli("transcript", "--out", "-", "--format", "md", "--home", home)).stdout


def test_sigint_mid_session_saves_every_segment_heard(home: Path, crop_wav: Path) -> None:
    """Ctrl+C during a real-time listen: exit 0, and the session (status interrupted) holds every segment
    of the part heard, exactly as the last labels printed."""
    proc = idme_process("listen", "--file", crop_wav, "--realtime", "--speed", 4, "--json", "--asr", "none",
                        "--home", home)
    reader = LineReader(proc)
    reader.wait_finals(2)
    proc.send_signal(signal.SIGINT)
    stderr = proc.stderr.read()
    proc.wait(120)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "saved" in stderr
    labels = final_labels(reader.events())
    assert len(labels) >= 2
    session = show(home)
    assert session["status"] == "interrupted"
    saved = {s["seg_id"]: (s["speaker"], s["kind"], s["start"], s["end"]) for s in session["segments"]}
    assert saved == {i: (e["speaker"], e["kind"], e["start"], e["end"]) for i, e in labels.items()}
    heard = session["duration_s"]
    assert heard < CROP_S - 2  # stopped part-way
    assert max(end for *_, end in saved.values()) <= heard + 0.05
