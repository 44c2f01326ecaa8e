"""A real ``idme serve`` (uvicorn, real sockets): the documented Python client streams to it, and its
refusals hold over the wire, not just in the in-process test client."""

from __future__ import annotations

import ast
import json
import os
import re
import ssl
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("uvicorn")
websockets = pytest.importorskip("websockets")

from conftest import BOB_TAKE, OWNER_TAKES, ROOT  # noqa: E402
from server_helpers import collect_cycles, enrolled_home, free_port, serving  # noqa: E402, F401


@pytest.fixture(scope="module")
def server(tmp_path_factory, campplus):
    """``idme serve`` on a free port over a home with the owner enrolled; yields (port, home, token)."""
    root = tmp_path_factory.mktemp("live")
    home = enrolled_home(root, campplus)
    with serving(home, root / "serve.log") as (port, token):
        yield port, home, token, root / "serve.log"


def test_serve_creates_the_token_0600_and_shows_it_once(server) -> None:
    """First start writes <home>/server/token with mode 0600 and prints the page URL with the token in the
    fragment (never in a path or query the server would log)."""
    port, home, token, log = server
    assert stat.S_IMODE((home / "server" / "token").stat().st_mode) == 0o600
    assert f"http://127.0.0.1:{port}/#token={token}" in log.read_text()


def test_the_documented_client_streams_to_a_real_server(server, tmp_path) -> None:
    """The Python client from docs/protocol.md streams owner + bob speech in real time and prints the
    owner's final label, then the end event with the session id."""
    port, home, token, _ = server
    code = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "protocol.md").read_text(), re.S).group(1)
    client = tmp_path / "client.py"
    client.write_text(code)
    me, rate = sf.read(OWNER_TAKES[0], dtype="int16")
    bob, _ = sf.read(BOB_TAKE, dtype="int16")
    wav = tmp_path / "two.wav"
    sf.write(wav, np.concatenate([me, np.zeros(rate // 2, np.int16), bob]), rate)
    out = subprocess.run([sys.executable, str(client), str(wav), token, f"ws://127.0.0.1:{port}/v1/listen"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "'type': 'started'" in lines[0]
    assert any(re.match(r"\s*\d+\.\d\d-\s*\d+\.\d\d\s+Me\b", line) for line in lines), out.stdout
    end = ast.literal_eval(lines[-1])  # the client prints the end event as a dict
    assert end["type"] == "end" and end["status"] == "complete"
    assert (home / "sessions.db").exists()


@pytest.mark.parametrize("headers,status", [
    ({}, 401),
    ({"Origin": "https://evil.example"}, 403),
])
def test_a_real_server_denies_upgrades_with_http_status(server, headers, status) -> None:
    """Over a real socket a refused upgrade is an HTTP 401/403 answer, before any session exists."""
    import asyncio

    port, _, token, _ = server
    if "Origin" in headers:
        headers = {**headers, "Authorization": f"Bearer {token}"}

    async def connect() -> int:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/listen", additional_headers=headers):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(connect()) == status


def test_a_real_server_refuses_a_foreign_host(server) -> None:
    """DNS rebinding over the wire: Host evil.example gets 403 with the forbidden_host code."""
    import httpx

    port, _, token, _ = server
    r = httpx.get(f"http://127.0.0.1:{port}/v1/profiles",
                  headers={"Host": "evil.example", "Authorization": f"Bearer {token}"})
    assert r.status_code == 403 and json.loads(r.text)["code"] == "forbidden_host"


def test_serve_over_tls(tmp_path, campplus) -> None:
    """With --certfile/--keyfile the server speaks https only: a client trusting the certificate gets
    answers, and plain http to the same port gets none."""
    import shutil

    import httpx

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (needed to make a test certificate)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    home = enrolled_home(tmp_path, campplus)
    port = free_port()
    env = {**os.environ, "IDME_HOME": str(home), "IDME_ASR": "none", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "idme", "serve", "--port", str(port), "--certfile", str(cert),
                             "--keyfile", str(key)], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), base_url=f"https://127.0.0.1:{port}", timeout=5) as c:
            for _ in range(300):
                try:
                    if c.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            token = (home / "server" / "token").read_text().strip()
            assert c.get("/v1/info", headers={"Authorization": f"Bearer {token}"}).json()["encoder"]["name"] == "campplus"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(20)


def test_serve_refuses_half_a_tls_pair(tmp_path) -> None:
    """--certfile without --keyfile is a one-line error and exit 1, before anything listens."""
    from typer.testing import CliRunner

    from idme.cli import app

    r = CliRunner().invoke(app, ["serve", "--home", str(tmp_path), "--certfile", str(tmp_path / "c.pem")])
    assert r.exit_code == 1 and "--certfile and --keyfile go together" in r.output
