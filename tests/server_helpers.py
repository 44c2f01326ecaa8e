"""Shared by the server tests: a home with the owner enrolled (once per run), and apps over copies of it."""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from idme.api import Idme
from idme.settings import resolve

from conftest import OWNER_TAKES, profile_dir

TOKEN = "test-token-" + "x" * 32
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: The Host a browser on this machine sends; the TestClient's default ("testserver") is refused.
BASE_URL = "http://127.0.0.1:8765"


def enrolled_home(root: Path, campplus) -> Path:
    """A home with 'me' enrolled from the example's owner takes."""
    home = root / "enrolled-home"
    if not profile_dir(home, "me").exists():
        Idme(resolve(home, asr="none"), embedder=campplus).enroll_files("me", OWNER_TAKES)
    return home


def make_client(template: Path, dest: Path, campplus, **options):
    """A TestClient over an app on a copy of ``template`` (each test may change its own store)."""
    from fastapi.testclient import TestClient

    from idme.server import ServerOptions, create_app

    home = dest / "home"
    if not home.exists():
        shutil.copytree(template, home)
    idme = Idme(resolve(home, asr="none"), embedder=campplus)
    app = create_app(options=ServerOptions(**options), idme=idme, token=TOKEN)
    return TestClient(app, base_url=BASE_URL), idme


@pytest.fixture(scope="module", autouse=True)
def collect_cycles():
    """Refused uploads and aborted streams leave exception/frame cycles holding soxr resamplers; collect
    them when the module ends, or nanobind reports them as leaks when the interpreter exits."""
    yield
    gc.collect()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(home: Path, log_path: Path):
    """A real ``idme serve`` process over ``home`` (labels only) on a free port; yields (port, token) once
    ``/health`` answers, and stops it on exit. Its output goes to ``log_path``."""
    import httpx

    port = free_port()
    env = {**os.environ, "IDME_HOME": str(home), "IDME_ASR": "none", "HF_HUB_OFFLINE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "idme", "serve", "--port", str(port)], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise AssertionError(log_path.read_text())
                time.sleep(0.1)
            yield port, (home / "server" / "token").read_text().strip()
        finally:
            proc.terminate()
            proc.wait(20)
