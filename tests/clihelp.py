"""Helpers shared by the CLI test files: run ``idme`` in-process and check its outcome."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from idme.cli import app

from conftest import OWNER_TAKES

# IDME_DEBUG would turn one-line errors into tracebacks; IDME_HOME must never point at a real store.
CLEAN_ENV = {"IDME_DEBUG": None, "IDME_HOME": None, "IDME_EMBEDDER": None, "IDME_ASR_LANG": None,
             "IDME_COMPUTE": None, "IDME_ASR": None, "IDME_ASR_MODEL": None, "IDME_CONFIG": None}
RUNNER = CliRunner(env=CLEAN_ENV)
#: The environment for ``idme`` subprocesses: the same variables removed.
PROC_ENV = {k: v for k, v in os.environ.items() if k not in CLEAN_ENV}


def cli(*args: object, env: dict | None = None):
    """Runs ``idme ARGS`` in-process; stdout and stderr are captured separately."""
    return RUNNER.invoke(app, [str(a) for a in args], env=env)


def ok(result):
    """Asserts a clean exit 0 and returns the result."""
    assert result.exit_code == 0 and result.exception is None, (
        f"exit {result.exit_code}, {result.exception!r}\nstderr: {result.stderr}")
    assert "Traceback" not in result.output
    return result


def one_error_line(stderr: str, contains: str = "") -> str:
    """Asserts stderr is exactly one 'error: ...' line (containing ``contains``) and returns it."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), lines[0]
    assert contains.lower() in lines[0].lower(), lines[0]
    return lines[0]


def refused(result, contains: str = "") -> str:
    """Asserts exit 1, one line on stderr, nothing on stdout and no escaped exception; returns the line."""
    assert result.exit_code == 1, f"exit {result.exit_code}: {result.stderr}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.stdout == ""
    return one_error_line(result.stderr, contains)


def events_of(stdout: str, with_end: bool = False) -> list[dict]:
    """The JSON Lines of ``listen --json`` stdout; fails on any line that is not a JSON object.
    The closing ``{"type": "end"}`` object (at most one, last) is left out unless ``with_end``."""
    assert stdout == "" or stdout.endswith("\n")
    out = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        out.append(obj)
    ends = [i for i, e in enumerate(out) if e.get("type") == "end"]
    assert ends in ([], [len(out) - 1]), ends
    return out if with_end else [e for e in out if e.get("type") != "end"]


def final_labels(events: list[dict]) -> dict[int, dict]:
    """The latest final event of every segment id (later events replace earlier ones)."""
    latest: dict[int, dict] = {}
    for e in events:
        if e["final"]:
            latest[e["id"]] = e
    return latest


def enroll_args(home: Path) -> list[object]:
    """``enroll`` arguments that enrol the example meeting's owner into ``home``."""
    args: list[object] = ["enroll", "--home", home]
    for f in OWNER_TAKES:
        args += ["--file", f]
    return args
