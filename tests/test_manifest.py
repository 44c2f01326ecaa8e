"""Bulk enrollment from a CSV manifest (issue 12): `idme enroll --manifest people.csv`."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from idme.identity.manifest import STATE_FILE, read_manifest

from clihelp import cli, ok
from conftest import BOB_TAKE, DATA, OWNER_TAKES, profile_dir


def _manifest(tmp_path, carol: str) -> object:
    """me with three files on one row, bob with one file per row (name repeated), carol from ``carol``."""
    m = tmp_path / "people.csv"
    m.write_text("name,file\n"
                 f"me,{','.join(str(f) for f in OWNER_TAKES)}\n"
                 f"bob,{BOB_TAKE}\n"
                 f"bob,{DATA / 'ls_2414_128291-0009.flac'}\n"
                 "# carol's recording is relative to the manifest\n"
                 f"carol,{carol}\n", encoding="utf-8")
    return m


def test_manifest_rows_merge_by_name_and_paths_are_relative(tmp_path) -> None:
    """Rows of one name are one person with all their files, in order; relative paths are taken from the
    manifest's folder; the header and comment lines are skipped."""
    rows = read_manifest(_manifest(tmp_path, "carol.wav"))
    assert [r.name for r in rows] == ["me", "bob", "carol"]
    assert len(rows[0].files) == 3 and len(rows[1].files) == 2 and rows[1].lines == (3, 4)
    assert rows[2].files == (tmp_path / "carol.wav",)


def test_cli_manifest_reports_refusals_resumes_and_writes_nothing_for_a_failed_row(tmp_path) -> None:
    """A manifest run enrols the good people, reports the one whose audio the gate refuses (exit 1, no profile
    for them); a rerun skips the people already enrolled from the same files; once the bad recording is
    replaced, the rerun enrols only that person and exits 0."""
    home = tmp_path / "home"
    sf.write(tmp_path / "carol.wav", np.zeros(3 * 16000, np.float32), 16000)  # silence: no speech
    m = _manifest(tmp_path, "carol.wav")
    r = cli("enroll", "--manifest", m, "--json", "--home", home)
    assert r.exit_code == 1, r.stderr
    rep = json.loads(r.stdout)
    status = {row["name"]: row["status"] for row in rep["rows"]}
    assert status == {"me": "enrolled", "bob": "enrolled", "carol": "failed"}
    carol = next(row for row in rep["rows"] if row["name"] == "carol")
    assert "speech" in carol["reason"] and not profile_dir(home, "carol").exists()
    assert len(next(row for row in rep["rows"] if row["name"] == "bob")["takes"]) == 2
    from idme.vault import vault_for  # the state names the people enrolled: sealed at rest (issue 14)

    assert json.loads(vault_for(home).read(home / STATE_FILE, "idme/manifest-state")).keys() == {"me", "bob"}
    again = json.loads(cli("enroll", "--manifest", m, "--json", "--home", home).stdout)
    assert [row["status"] for row in again["rows"]] == ["skipped", "skipped", "failed"]
    (tmp_path / "carol.wav").unlink()
    (tmp_path / "carol.flac").write_bytes((DATA / "ls_533_1066-0000.flac").read_bytes())
    m = _manifest(tmp_path, "carol.flac")
    r = ok(cli("enroll", "--manifest", m, "--home", home))
    assert "carol" in r.stdout and "enrolled" in r.stdout and "1 enrolled, 2 already enrolled, 0 failed" in r.stderr
