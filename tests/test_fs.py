"""Tests of the one atomic-write helper (idme._fs.atomic_write) that the stores and exporters share."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from idme._fs import atomic_write


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_is_private_and_text_is_utf8(tmp_path: Path) -> None:
    """A new file gets mode 0600 even under umask 000, and str data is written as UTF-8."""
    old = os.umask(0)
    try:
        path = atomic_write(tmp_path / "t.md", "Zoë sagt: hallo\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == "Zoë sagt: hallo\n".encode("utf-8")
    assert _mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.md"]  # no temporary file left


def test_replace_sets_mode_or_keeps_the_old_one(tmp_path: Path) -> None:
    """Replacing a file gives it ``mode``, or its previous mode with keep_mode=True."""
    path = tmp_path / "profile.json"
    path.write_bytes(b"old")
    path.chmod(0o644)
    atomic_write(path, b"new", keep_mode=True)
    assert path.read_bytes() == b"new" and _mode(path) == 0o644
    atomic_write(path, b"newer", mode=0o600)
    assert path.read_bytes() == b"newer" and _mode(path) == 0o600


def test_failure_raises_oserror_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A write that cannot complete raises OSError, keeps the old file and leaves nothing behind."""
    with pytest.raises(OSError):
        atomic_write(tmp_path / "missing" / "t.txt", b"x")
    target = tmp_path / "a_dir"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(target, b"x")  # os.replace cannot put a file over a non-empty directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir"]
    assert (target / "inside").read_text() == "keep"
