"""WS /v1/listen: real speech streamed in, labelled events out, and every way a stream is refused or ended."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")

from starlette.testclient import WebSocketDenialResponse  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from conftest import EXAMPLES  # noqa: E402
from server_helpers import AUTH, collect_cycles, enrolled_home, make_client  # noqa: E402, F401

WS = "ws://127.0.0.1:8765/v1/listen"
START = {"type": "start", "encoding": "pcm_s16le", "sample_rate": 48000, "channels": 2}


@pytest.fixture(scope="module")
def template(tmp_path_factory, campplus):
    return enrolled_home(tmp_path_factory.mktemp("ws"), campplus)


@pytest.fixture(scope="module")
def meeting_48k_stereo() -> bytes:
    """The first 20 s of the example meeting as 48 kHz stereo int16 (what a browser sends, rate-wise)."""
    import soxr

    audio, rate = sf.read(EXAMPLES / "meeting.wav", dtype="float32")
    x = soxr.resample(audio[: 20 * rate], rate, 48000).astype(np.float32)
    return np.round(np.repeat(x[:, None], 2, axis=1) * 32767).astype("<i2").tobytes()


def _chunks(data: bytes, n: int = 19200):  # 100 ms of 48 kHz stereo int16
    for i in range(0, len(data), n):
        yield data[i:i + n]


def _until(ws, kind: str) -> list[dict]:
    out = []
    while True:
        msg = ws.receive_json()
        out.append(msg)
        if msg["type"] == kind:
            return out


def test_a_stream_is_labelled_and_saved(template, tmp_path, campplus, meeting_48k_stereo) -> None:
    """48 kHz stereo speech gives started, segment events with the owner as Me, then end with the session
    id after stop; the session is in the store with its segments."""
    client, idme = make_client(template, tmp_path, campplus, max_queued_s=60.0)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        started = ws.receive_json()
        assert started["type"] == "started" and started["session_id"] and started["sample_rate"] == 48000
        for chunk in _chunks(meeting_48k_stereo):
            ws.send_bytes(chunk)
        ws.send_text("this is not JSON")  # reported, and the stream goes on
        ws.send_json({"type": "stop"})
        events = _until(ws, "end")
    assert any(e["type"] == "error" and e["code"] == "bad_message" for e in events)
    end = events[-1]
    assert end["session_id"] == started["session_id"] and end["status"] == "complete"
    assert abs(end["audio_s"] - 20.0) < 0.1
    segs = [e for e in events if e["type"] in ("segment", "relabel", "text")]
    assert {"id", "start", "end", "speaker", "kind", "score", "final"} <= set(segs[0])
    final = {}
    for e in segs:
        final[e["id"]] = e
    me = [e for e in final.values() if e["kind"] == "me" and e["final"]]
    assert me and any(e["start"] < 5.0 < e["end"] for e in me)  # the owner speaks 3.0-7.3 s
    saved = idme.sessions.get(started["session_id"])
    assert saved.status == "complete" and len(saved.segments) == sum(1 for e in final.values() if e["final"])


def test_a_ticket_opens_one_stream_only(template, tmp_path, campplus) -> None:
    """A ticket from POST /v1/tickets opens a stream once; replayed it is refused with 401."""
    client, _ = make_client(template, tmp_path, campplus)
    ticket = client.post("/v1/tickets", headers=AUTH).json()["ticket"]
    with client.websocket_connect(f"{WS}?ticket={ticket}") as ws:
        ws.send_json({**START, "sample_rate": 16000, "channels": 1})
        assert ws.receive_json()["type"] == "started"
        ws.send_json({"type": "stop"})
        assert _until(ws, "end")[-1]["n_segments"] == 0
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(f"{WS}?ticket={ticket}"):
            pass
    assert denied.value.status_code == 401 and denied.value.json()["code"] == "unauthorized"


@pytest.mark.parametrize("headers,status,code", [
    ({}, 401, "unauthorized"),
    ({"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ({**AUTH, "Origin": "https://evil.example"}, 403, "forbidden_origin"),
    ({**AUTH, "Origin": "null"}, 403, "forbidden_origin"),
    ({**AUTH, "Host": "evil.example:8765"}, 403, "forbidden_host"),
])
def test_upgrades_are_refused_without_token_or_from_foreign_pages(template, tmp_path, campplus, headers,
                                                                   status, code) -> None:
    """No token, a wrong token, a foreign Origin or Host: the upgrade is denied with the status and a
    reason, and no session is created."""
    client, idme = make_client(template, tmp_path, campplus)
    with pytest.raises(WebSocketDenialResponse) as denied:
        with client.websocket_connect(WS, headers=headers):
            pass
    assert denied.value.status_code == status and denied.value.json()["code"] == code
    assert idme.sessions.list() == []


def test_the_own_page_origin_is_accepted(template, tmp_path, campplus) -> None:
    """The page served from the server itself (Origin http://127.0.0.1:8765) may open a stream."""
    client, _ = make_client(template, tmp_path, campplus)
    with client.websocket_connect(WS, headers={**AUTH, "Origin": "http://127.0.0.1:8765"}) as ws:
        ws.send_json({**START, "sample_rate": 16000, "channels": 1})
        assert ws.receive_json()["type"] == "started"


def test_too_many_streams_are_refused(template, tmp_path, campplus) -> None:
    """With max_streams=1 a second stream gets error too_many_streams and close 1013; no second session."""
    client, idme = make_client(template, tmp_path, campplus, max_streams=1)
    with client.websocket_connect(WS, headers=AUTH) as first:
        first.send_json(START)
        assert first.receive_json()["type"] == "started"
        with client.websocket_connect(WS, headers=AUTH) as second:
            msg = second.receive_json()
            assert msg["type"] == "error" and msg["code"] == "too_many_streams"
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_json()
            assert closed.value.code == 1013
        assert len(idme.sessions.list()) == 1
        first.send_json({"type": "stop"})
        _until(first, "end")


@pytest.mark.parametrize("first", [
    "hello",
    '{"type": "stop"}',
    '{"type": "start", "encoding": "mulaw", "sample_rate": 16000, "channels": 1}',
    '{"type": "start", "encoding": "pcm_s16le", "sample_rate": 1000, "channels": 1}',
    '{"type": "start", "encoding": ["x"], "sample_rate": "fast", "channels": 1}',
    '{"type": "start", "encoding": "f32le", "sample_rate": 48000, "channels": 0}',
    b"\x00\x01",
])
def test_a_bad_start_message_is_an_error_and_a_policy_close(template, tmp_path, campplus, first) -> None:
    """Anything but a valid start message first: error bad_start with a reason, close 1008, no session."""
    client, idme = make_client(template, tmp_path, campplus)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == "bad_start" and msg["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
    assert idme.sessions.list() == []


def test_a_huge_frame_ends_the_stream_with_1009(template, tmp_path, campplus) -> None:
    """A binary message over max_frame_bytes gets error frame_too_large and close 1009."""
    client, _ = make_client(template, tmp_path, campplus, max_frame_bytes=4096)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        assert ws.receive_json()["type"] == "started"
        ws.send_bytes(b"\x00" * 5000)
        events = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                events.append(ws.receive_json())
        assert closed.value.code == 1009 and events[-1]["code"] == "frame_too_large"


def test_a_client_sending_faster_than_labelling_gets_overload(template, tmp_path, campplus,
                                                              meeting_48k_stereo) -> None:
    """Audio far beyond max_queued_s sent at once: overload, close 1013, and the session saved interrupted."""
    client, idme = make_client(template, tmp_path, campplus, max_queued_s=0.5)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        sid = ws.receive_json()["session_id"]
        for chunk in _chunks(meeting_48k_stereo, 192000):  # 1 s per message
            ws.send_bytes(chunk)
        events = []
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                events.append(ws.receive_json())
    assert closed.value.code == 1013 and events[-1]["type"] == "overload"
    assert idme.sessions.get(sid).status == "interrupted"


def test_nobody_enrolled_is_a_clear_error(tmp_path, campplus) -> None:
    """A home with no owner gets error no_owner at start, unless the client asks for require_owner false."""
    (tmp_path / "empty").mkdir()
    client, _ = make_client(tmp_path / "empty", tmp_path, campplus)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["code"] == "no_owner" and "enroll" in msg["detail"]
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json({**START, "require_owner": False})
        assert ws.receive_json()["type"] == "started"
        ws.send_json({"type": "stop"})
        assert _until(ws, "end")[-1]["status"] == "complete"


def test_a_client_that_leaves_mid_stream_leaves_a_saved_session(template, tmp_path, campplus,
                                                                 meeting_48k_stereo) -> None:
    """Closing the socket without stop aborts the session; what was decided is saved, the slot is freed."""
    client, idme = make_client(template, tmp_path, campplus, max_queued_s=60.0, max_streams=1)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        sid = ws.receive_json()["session_id"]
        for chunk in list(_chunks(meeting_48k_stereo))[:50]:
            ws.send_bytes(chunk)
    with client.websocket_connect(WS, headers=AUTH) as ws:  # the slot was released
        ws.send_json(START)
        assert ws.receive_json()["type"] == "started"
    assert idme.sessions.get(sid).status in ("interrupted", "complete")


def test_a_stream_past_its_audio_cap_ends_like_a_stop(template, tmp_path, campplus, meeting_48k_stereo) -> None:
    """With max_stream_audio_s=5 the client gets error audio_limit, then the labels of those 5 s and end."""
    client, _ = make_client(template, tmp_path, campplus, max_stream_audio_s=5.0, max_queued_s=60.0)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        assert ws.receive_json()["type"] == "started"
        for chunk in list(_chunks(meeting_48k_stereo))[:80]:  # 8 s
            ws.send_bytes(chunk)
        events = _until(ws, "end")
    assert any(e.get("code") == "audio_limit" for e in events)
    assert events[-1]["status"] == "complete" and abs(events[-1]["audio_s"] - 5.0) < 0.05


def test_events_past_the_bound_for_a_slow_client_mean_overload(template, tmp_path, campplus) -> None:
    """Decision logic only: once max_pending_events wait unsent, the next event turns into an overload
    failure (never a blocking put), and events after it are dropped."""
    import asyncio

    from idme.server.ws import _Connection

    client, _ = make_client(template, tmp_path, campplus, max_pending_events=2)
    state = client.app.state.idme_server

    async def scenario() -> _Connection:
        conn = _Connection(ws=None, state=state)
        ev = {"id": 1, "start": 0.0, "end": 1.0, "speaker": "Me", "kind": "me", "score": 0.9, "final": True,
              "latency_ms": None, "text": ""}
        conn.on_events([ev, {**ev, "speaker": "Speaker 1", "kind": "unknown"}, {**ev, "id": 2}, {**ev, "id": 3}])
        return conn

    conn = asyncio.run(scenario())
    assert conn.pending == 2 and conn.failed.is_set() and conn.failure["type"] == "overload"
    first, second = conn.out.get_nowait(), conn.out.get_nowait()
    assert (first["type"], second["type"]) == ("segment", "relabel")  # same id, new speaker: a relabel


def test_two_clients_at_once_get_their_own_sessions(template, tmp_path, campplus, meeting_48k_stereo) -> None:
    """Two streams at the same time each end with their own session id, both saved complete with labels."""
    client, idme = make_client(template, tmp_path, campplus, max_queued_s=60.0)
    chunks = list(_chunks(meeting_48k_stereo))[:80]  # 8 s: the owner speaks from 3.0 s
    with client.websocket_connect(WS, headers=AUTH) as a, client.websocket_connect(WS, headers=AUTH) as b:
        for ws in (a, b):
            ws.send_json(START)
        ids = [a.receive_json()["session_id"], b.receive_json()["session_id"]]
        for chunk in chunks:
            a.send_bytes(chunk)
            b.send_bytes(chunk)
        for ws in (a, b):
            ws.send_json({"type": "stop"})
        ends = [_until(a, "end")[-1], _until(b, "end")[-1]]
    assert [e["session_id"] for e in ends] == ids and ids[0] != ids[1]
    for sid in ids:
        s = idme.sessions.get(sid)
        assert s.status == "complete" and any(g.kind == "me" for g in s.segments)


def test_a_backlog_is_reported_as_lag(template, tmp_path, campplus, meeting_48k_stereo) -> None:
    """Audio sent faster than it is labelled produces lag events with the seconds waiting."""
    client, _ = make_client(template, tmp_path, campplus, max_queued_s=60.0, lag_every_s=0.0)
    with client.websocket_connect(WS, headers=AUTH) as ws:
        ws.send_json(START)
        ws.receive_json()
        for chunk in _chunks(meeting_48k_stereo, 192000):  # 1 s per message, all at once
            ws.send_bytes(chunk)
        ws.send_json({"type": "stop"})
        events = _until(ws, "end")
    lags = [e for e in events if e["type"] == "lag"]
    assert lags and all(e["queued_s"] >= 0.5 for e in lags)
