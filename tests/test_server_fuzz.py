"""Fuzzing the server: schemathesis over every REST operation (no 5xx, every answer as documented), and
hypothesis over the WebSocket protocol (whatever a client sends, the server answers with a documented
message or a clean close, and never crashes)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from idme.api import Idme  # noqa: E402
from idme.server import ServerOptions, create_app  # noqa: E402
from idme.settings import resolve  # noqa: E402

from conftest import OWNER_TAKES  # noqa: E402
from server_helpers import AUTH, BASE_URL, TOKEN  # noqa: E402

_state: dict = {}


def _app():
    """One app for the whole module over a home with the owner enrolled (schemathesis needs it at import)."""
    if "app" not in _state:
        import tempfile

        from idme.embed.campplus import CampPlusEmbedder

        emb = CampPlusEmbedder()
        emb.load()
        home = tempfile.mkdtemp(prefix="idme-fuzz-")
        idme = Idme(resolve(home, asr="none"), embedder=emb)
        idme.enroll_files("me", OWNER_TAKES)
        idme.open_live(file=OWNER_TAKES[1], transcribe=False).run()  # one saved session to show and export
        # "testserver": the Host schemathesis's in-process client sends (the Host rule has its own tests).
        _state["app"] = create_app(options=ServerOptions(verify_per_minute=10_000, max_upload_bytes=1 << 20,
                                                         extra_hosts=("testserver",)), idme=idme, token=TOKEN)
    return _state["app"]


@pytest.fixture(scope="module", autouse=True)
def _collect_cycles():
    """Rejected uploads leave exception/frame cycles holding soxr resamplers; collect them before the
    interpreter exits, or nanobind reports them as leaks."""
    yield
    import gc

    gc.collect()


schema = schemathesis.openapi.from_asgi("/v1/openapi.json", _app(), headers=AUTH)
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_rest_operation_answers_as_documented(case) -> None:
    """Generated requests (with the token) never get a 5xx, and each answer's status, content type and body
    match the OpenAPI document."""
    # The token replaces whatever Authorization schemathesis generated from the security scheme.
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
    response = case.call(headers=AUTH)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    case.validate_response(response, checks=CHECKS)


# -- the WebSocket protocol --------------------------------------------------------------------------
WS = "ws://127.0.0.1:8765/v1/listen"
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=8)
_start = st.fixed_dictionaries({"type": st.just("start")}, optional={
    "encoding": st.sampled_from(["pcm_s16le", "f32le", "mulaw", "", "PCM_S16LE"]) | _json,
    "sample_rate": st.sampled_from([8000, 16000, 44100, 48000, 7999, 0, -1, 10**9]) | _json,
    "channels": st.sampled_from([1, 2, 0, 9]) | _json,
    "transcribe": st.booleans(), "require_owner": st.booleans()})
_first = _start | _json.map(json.dumps) | st.binary(max_size=64) | st.text(max_size=40)
_message = (st.binary(max_size=6000) | st.sampled_from([b"", b"\x00", b"\x00" * 70_000])
            | st.sampled_from(['{"type": "stop"}', '{"type": "start"}', "", "[]", "stop"]) | st.text(max_size=20))
_KNOWN = {"started", "segment", "relabel", "text", "lag", "error", "overload", "end"}


def _send(ws, m) -> None:
    if isinstance(m, dict):
        ws.send_json(m)
    elif isinstance(m, bytes):
        ws.send_bytes(m)
    else:
        ws.send_text(m)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=_first, rest=st.lists(_message, max_size=6), stop=st.booleans())
def test_the_stream_protocol_survives_anything(first, rest, stop) -> None:
    """Malformed or missing starts, wrong rates and encodings, odd or huge frames, text where binary belongs,
    early close, no stop: every server message is a known type and the server stays up for the next client."""
    from fastapi.testclient import TestClient

    app = _app()
    client = TestClient(app, base_url=BASE_URL)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        _send(ws, first)
        for m in rest:
            _send(ws, m)
        if stop:
            ws.send_json({"type": "stop"})
            try:
                while True:
                    msg = ws.receive_json()
                    assert msg["type"] in _KNOWN, msg
                    if msg["type"] in ("end", "overload") or msg.get("code") in ("bad_start", "no_owner"):
                        break
            except WebSocketDisconnect as closed:
                assert closed.code in (1000, 1008, 1009, 1011, 1013)
    assert client.get("/health").status_code == 200
    assert app.state.idme_server.streams <= 1
