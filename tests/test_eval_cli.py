"""``idme eval trials | meetings | calibrate`` end to end: real clips, the real CAM++ encoder, the example
meeting, run in-process with typer's CliRunner; scored results checked against the shared scorer and
against what ``idme listen --file`` produces."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from idme.cli import app
from idme.embed.campplus import CampPlusEmbedder
from idme.eval.meetings import find_recordings
from idme.eval.der import score_meeting, score_rttm_set
from idme.errors import IdmeError
from idme.identity import thresholds

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
EXAMPLES = ROOT / "examples"
DATA = TESTS / "data"
from conftest import SCORER  # the shared scorer beside the repository; IDME_SCORER overrides it

#: Real clips of five LibriSpeech speakers; me_* are speaker 1688 (the example meeting's owner).
CLIPS = {
    "me1": EXAMPLES / "enroll" / "me_1.wav",
    "me2": EXAMPLES / "enroll" / "me_2.wav",
    "me3": EXAMPLES / "enroll" / "me_3.wav",
    "2414a": DATA / "ls_2414_128291-0003.flac",
    "2414b": DATA / "ls_2414_128291-0009.flac",
    "3005": DATA / "ls_3005_163389-0007.flac",
    "367": DATA / "ls_367_130732-0006.flac",
    "533": DATA / "ls_533_1066-0000.flac",
    "1998": DATA / "audio_src_1998.flac",
}
#: (enroll, test, same speaker): 4 target and 8 non-target trials over 9 distinct files.
TRIALS = [
    ("me1", "me2", True), ("me1", "me3", True), ("me2", "me3", True), ("2414a", "2414b", True),
    ("me1", "2414a", False), ("me2", "3005", False), ("me3", "367", False), ("2414b", "533", False),
    ("1998", "me1", False), ("1998", "2414a", False), ("3005", "367", False), ("533", "1998", False),
]
N_FILES = len({f for a, b, _ in TRIALS for f in (a, b)})
REPORT_KEYS = {"eer", "min_dcf_001", "min_dcf_005", "far", "frr", "threshold", "n_target", "n_nontarget",
               "operating_points"}

RUNNER = CliRunner(env={"IDME_DEBUG": None, "IDME_HOME": None, "IDME_EMBEDDER": None, "IDME_ASR_LANG": None})


def cli(*args: object):
    """Runs ``idme ARGS`` in-process; stdout and stderr are captured separately."""
    return RUNNER.invoke(app, [str(a) for a in args])


def ok(result) -> str:
    """Asserts exit 0 and returns stdout."""
    assert result.exit_code == 0 and result.exception is None, (
        f"exit {result.exit_code}, {result.exception!r}\nstderr: {result.stderr}")
    return result.stdout


def refused(result, code: int = 1, contains: str = "") -> str:
    """Asserts exit ``code`` with one line on stderr, no traceback and nothing on stdout."""
    assert result.exit_code == code, f"exit {result.exit_code}: {result.stderr}"
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


@pytest.fixture()
def vox_list(tmp_path: Path) -> Path:
    """The trial list in VoxCeleb format (``1 a b``), with absolute paths."""
    p = tmp_path / "vox.txt"
    p.write_text("".join(f"{int(t)} {CLIPS[a]} {CLIPS[b]}\n" for a, b, t in TRIALS))
    return p


@pytest.fixture()
def kaldi_list(tmp_path: Path) -> Path:
    """The same trials in Kaldi format (``a b target|nontarget``), with a comment and a blank line."""
    p = tmp_path / "kaldi.txt"
    lines = [f"{CLIPS[a]} {CLIPS[b]} {'target' if t else 'nontarget'}" for a, b, t in TRIALS]
    p.write_text("# Kaldi trials\n\n" + "\n".join(lines) + "\n")
    return p


@pytest.fixture()
def count_embeds(monkeypatch):
    """Counts calls of the real CAM++ ``embed`` (the encoder still runs)."""
    calls = []
    real = CampPlusEmbedder.embed

    def counting(self, samples):
        calls.append(len(samples))
        return real(self, samples)

    monkeypatch.setattr(CampPlusEmbedder, "embed", counting)
    return calls


# -- trials -------------------------------------------------------------------------------------------
def test_trials_json_both_formats(vox_list: Path, kaldi_list: Path, tmp_path: Path) -> None:
    """Both list formats give the same complete report, with EER 0 on a separable list and rates in [0, 1]."""
    home = tmp_path / "home"
    vox = json.loads(ok(cli("eval", "trials", vox_list, "--json", "--home", home)))
    kaldi = json.loads(ok(cli("eval", "trials", kaldi_list, "--json", "--home", home)))
    assert REPORT_KEYS <= set(vox)
    assert (vox["n_target"], vox["n_nontarget"]) == (4, 8)
    assert vox["eer"] == 0.0 and vox["min_dcf_001"] == 0.0 and vox["min_dcf_005"] == 0.0
    shipped = thresholds.DEFAULTS["campplus"]
    assert vox["threshold"] == shipped.me
    assert set(vox["operating_points"]) == {"me", "enrolled", "same_unknown", "merge", "change"}
    for name, op in vox["operating_points"].items():
        assert op["threshold"] == getattr(shipped, name)
        assert 0.0 <= op["far"] <= 1.0 and 0.0 <= op["frr"] <= 1.0
    assert (vox["far"], vox["frr"]) == (0.0, 0.0)  # same-speaker cosine ~0.75, others <= 0.25
    for key in ("eer", "min_dcf_001", "min_dcf_005", "far", "frr", "operating_points", "n_target"):
        assert kaldi[key] == vox[key], key


def test_trials_table_and_det_png(vox_list: Path, tmp_path: Path) -> None:
    """Without --json a table goes to stdout, and --det writes a non-empty PNG."""
    png = tmp_path / "plots" / "det.png"
    out = ok(cli("eval", "trials", vox_list, "--det", png, "--home", tmp_path / "home"))
    assert "EER" in out and "minDCF" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_trials_cache_skips_the_encoder(vox_list: Path, tmp_path: Path, count_embeds: list) -> None:
    """A second run reads every embedding from the cache; a different pipeline (test crop) does not."""
    cache = tmp_path / "cache"
    args = ("eval", "trials", vox_list, "--json", "--home", tmp_path / "home", "--cache-dir", cache)
    first = json.loads(ok(cli(*args)))
    assert len(count_embeds) == N_FILES
    assert len(list(cache.glob("*.npy"))) == N_FILES
    count_embeds.clear()
    second = json.loads(ok(cli(*args)))
    assert count_embeds == []
    assert second["operating_points"] == first["operating_points"] and second["eer"] == first["eer"]
    ok(cli(*args, "--test-seconds", "1"))
    assert len(count_embeds) == len({b for _, b, _ in TRIALS})  # only the cropped test sides are new
    assert all(n <= 16000 for n in count_embeds)


def test_trials_default_cache_is_in_the_store(vox_list: Path, tmp_path: Path) -> None:
    """Without --cache-dir the embeddings are cached under <home>/cache/embeddings."""
    home = tmp_path / "home"
    ok(cli("eval", "trials", vox_list, "--json", "--home", home))
    assert len(list((home / "cache" / "embeddings").glob("*.npy"))) == N_FILES


def test_trials_bad_list_is_one_line(tmp_path: Path) -> None:
    """A malformed trial list, or one naming a missing file, fails with one line and exit 1."""
    bad = tmp_path / "bad.txt"
    bad.write_text(f"1 {CLIPS['me1']}\n")
    refused(cli("eval", "trials", bad, "--home", tmp_path / "home"), contains="expected 3 fields")
    missing = tmp_path / "missing.txt"
    missing.write_text(f"1 {CLIPS['me1']} nowhere.wav\n")
    refused(cli("eval", "trials", missing, "--home", tmp_path / "home"), contains="not found")
    refused(cli("eval", "trials", tmp_path / "absent.txt", "--home", tmp_path / "home"), contains="cannot read")


# -- meetings -----------------------------------------------------------------------------------------
def test_meetings_example_agrees_with_listen_and_scorer(tmp_path: Path) -> None:
    """`eval meetings examples` finds the owner (me_recall >= 0.95), scores what `listen --file --json`
    scores, and agrees with score_meeting.py on its own hypothesis."""
    home, hyps = tmp_path / "home", tmp_path / "hyp"
    res = json.loads(ok(cli("eval", "meetings", EXAMPLES, "--json", "--home", home, "--hyp-dir", hyps)))
    (m,) = res["meetings"]
    assert m["me_recall"] >= 0.95 and m["false_me"] <= 0.02
    assert m["n_ref_speakers"] == 3 and m["labels"].get("Me", 0) > 0
    assert not (home / "profiles").exists()  # enrolled into a temporary store, never --home
    assert res["overall"]["meetings_mean"]["der"] == m["der"]

    # What `idme listen --file` labels, scored the same way.
    for take in sorted((EXAMPLES / "enroll").glob("me_*.wav")):
        ok(cli("enroll", "--file", take, "--home", home))
    listened = ok(cli("listen", "--file", EXAMPLES / "meeting.wav", "--json", "--asr", "none", "--no-save",
                      "--home", home))
    events = [json.loads(line) for line in listened.splitlines()]
    fields = ("der", "miss", "fa", "confusion", "me_recall", "false_me", "n_ref_speakers", "n_hyp_labels")
    assert {k: m[k] for k in fields} == score_meeting(EXAMPLES, events)

    if not SCORER.is_file():
        pytest.skip(f"{SCORER} not present: agreement with the shared scorer not checked")
    out = subprocess.run([sys.executable, str(SCORER), str(EXAMPLES), str(hyps / "examples.jsonl")],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {k: m[k] for k in fields}


def test_meetings_rttm_set(tmp_path: Path) -> None:
    """An RTTM+UEM set is labelled with nobody enrolled and scored per file plus pooled."""
    rset = tmp_path / "set"
    rset.mkdir()
    ref = (EXAMPLES / "reference.rttm").read_text().replace("SPEAKER meeting ", "SPEAKER ex ")
    (rset / "reference.rttm").write_text(ref)
    (rset / "reference.uem").write_text("ex 1 0.000 40.000\n")
    (rset / "ex.wav").symlink_to(EXAMPLES / "meeting.wav")
    hyps = tmp_path / "hyp"
    res = json.loads(ok(cli("eval", "meetings", rset, "--json", "--home", tmp_path / "home", "--hyp-dir", hyps)))
    assert res["meetings"] == [] and len(res["rttm_sets"]) == 1
    s = res["rttm_sets"][0]
    assert list(s["files"]) == ["ex"] and s["pooled"]["n_files"] == 1
    assert s["pooled"]["me_recall"] is None  # nobody is the owner
    assert "Me" not in s["files"]["ex"]["labels"]
    assert s["pooled"]["der"] < 0.10
    again = score_rttm_set(rset / "reference.rttm", rset / "reference.uem", {"ex": hyps / "set" / "ex.jsonl"})
    assert again["pooled"] == s["pooled"]
    assert res["overall"]["rttm_sets_pooled"] == {"set": s["pooled"]}


def test_find_recordings_kinds(tmp_path: Path) -> None:
    """Meeting folders, RTTM sets and parents of either are told apart; a folder with neither is an error."""
    parent = tmp_path / "parent"
    for name in ("m1", "m2"):
        d = parent / name
        d.mkdir(parents=True)
        for f in ("meeting.wav", "reference.rttm", "meta.json"):
            (d / f).touch()
    rset = tmp_path / "ami"
    rset.mkdir()
    (rset / "reference.rttm").touch()
    (parent / "notes").mkdir()  # neither: skipped inside a parent
    assert find_recordings([parent, rset]) == [("meeting", parent / "m1"), ("meeting", parent / "m2"),
                                               ("rttm_set", rset)]
    with pytest.raises(IdmeError, match="no meeting"):
        find_recordings([parent / "notes"])


def test_meetings_bad_dir_is_one_line(tmp_path: Path) -> None:
    """A folder with no meeting in it fails with one line and exit 1."""
    refused(cli("eval", "meetings", tmp_path, "--home", tmp_path / "home"), contains="no meeting")


# -- calibrate ----------------------------------------------------------------------------------------
def test_calibrate_writes_thresholds_that_listen_uses(vox_list: Path, tmp_path: Path) -> None:
    """calibrate saves thresholds.json in --home; thresholds.load and `idme listen` then use those values."""
    home = tmp_path / "home"
    res = json.loads(ok(cli("eval", "calibrate", "--trials", vox_list, "--far", "0.125", "--json", "--home", home)))
    new = res["new"]
    assert res["written"] == str(home / "thresholds.json") and (home / "thresholds.json").is_file()
    assert new["me"] == new["enrolled"] and res["rates_at_me"]["new"]["far"] <= 0.125
    shipped = thresholds.DEFAULTS["campplus"]
    # shipped offsets from me are kept, narrowband's too (review §1.5: it used to stay behind)
    for name in ("same_unknown", "merge", "change", "narrowband"):
        assert new[name] - new["me"] == pytest.approx(getattr(shipped, name) - shipped.me, abs=1e-9)
    assert new["source"].startswith("calibrated ") and "FAR 0.125" in new["source"]
    version = res["encoder"]["version"]
    assert asdict(thresholds.load("campplus", home, version=version)) == new
    assert f"campplus@{version}" in json.loads((home / "thresholds.json").read_text())

    for take in sorted((EXAMPLES / "enroll").glob("me_*.wav")):
        ok(cli("enroll", "--file", take, "--home", home))
    ok(cli("listen", "--file", CLIPS["2414a"], "--json", "--asr", "none", "--home", home))
    session = json.loads(ok(cli("sessions", "show", "latest", "--home", home)))
    assert session["settings"]["thresholds"] == new


def test_calibrate_dry_run_writes_nothing(vox_list: Path, tmp_path: Path) -> None:
    """--dry-run prints old vs new but leaves no thresholds.json behind."""
    home = tmp_path / "home"
    result = cli("eval", "calibrate", "--trials", vox_list, "--far", "0.125", "--dry-run", "--home", home)
    out = ok(result)
    assert "me" in out and "0.4000" in out  # the old (shipped) me in the old-vs-new table
    assert "dry run" in result.stderr
    assert not (home / "thresholds.json").exists()
    assert thresholds.load("campplus", home) == thresholds.DEFAULTS["campplus"]


def test_calibrate_usage_errors(tmp_path: Path) -> None:
    """No trial list, or a FAR outside (0, 1), is a usage error (exit 2) in one line."""
    refused(cli("eval", "calibrate", "--home", tmp_path), code=2, contains="--trials")
    refused(cli("eval", "calibrate", "--trials", tmp_path / "x.txt", "--far", "1.5", "--home", tmp_path),
            code=2, contains="--far")
    assert not (tmp_path / "thresholds.json").exists()


def test_trials_on_an_audio_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """`idme eval trials some.wav` (a common slip) says it is not a trial list, exit 1, no traceback."""
    result = cli("eval", "trials", EXAMPLES / "meeting.wav", "--home", tmp_path / "home")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is not a trial list" in result.stderr
