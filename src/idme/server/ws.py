"""``WS /v1/listen``: audio in, labelled segments out; one live session per connection (docs/protocol.md).

Threads: the event loop only decodes bytes into the connection's :class:`~idme.audio.push.PushSource` and
sends JSON. The session (resampling, VAD, embedding, transcription) runs on its own thread through
``Idme.open_live(source=...)``; its sink hands events back with ``loop.call_soon_threadsafe`` and never
blocks. Both directions are bounded: audio waiting for the labeller (``max_queued_s``) and events waiting
for the client (``max_pending_events``); past either the client gets ``overload`` and a clean close.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..audio.push import PushSource
from ..errors import AudioError, IdmeError, ProfileError
from ..events import EventStream
from .security import host_name, origin_allowed, token_matches
from .state import ServerState

log = logging.getLogger(__name__)

router = APIRouter()

#: WebSocket close codes (RFC 6455 §7.4.1): normal, policy (bad start or message), too big, internal,
#: try again later (overload, too many streams).
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_AGAIN = 1000, 1008, 1009, 1011, 1013

#: Audio waiting to be labelled, seconds, that makes a ``lag`` event worth sending.
LAG_MIN_S = 0.5

_CLOSE = object()  # sender sentinel


class LoopSink:
    """A session sink that hands events to the event loop (``fn(list of dicts)`` runs there)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fn: Callable[[list[dict]], None]) -> None:
        self.loop = loop
        self.fn = fn

    def __call__(self, event: Any) -> None:
        self.batch([event])

    def batch(self, events: Sequence[Any]) -> None:
        # call_soon_threadsafe never blocks; a closed loop raises, which stops the session (the client is gone).
        self.loop.call_soon_threadsafe(self.fn, [e.to_dict() for e in events])


def refusal(ws: WebSocket, state: ServerState) -> tuple[int, str, str] | None:
    """Why an upgrade is refused (status, code, detail), or None: Host, then Origin, then token or ticket."""
    headers = ws.headers
    if host_name(headers.get("host")) not in state.hosts:
        return 403, "forbidden_host", f"Host {headers.get('host')!r} is not served here"
    if not origin_allowed(headers.get("origin"), state.hosts):
        return 403, "forbidden_origin", f"Origin {headers.get('origin')!r} may not open a stream"
    if token_matches(state.token, headers.get("authorization")):
        return None
    if state.tickets.redeem(ws.query_params.get("ticket")):
        return None
    return 401, "unauthorized", "send `Authorization: Bearer <token>` or ?ticket= from POST /v1/tickets"


@router.websocket("/v1/listen")
async def listen(websocket: WebSocket) -> None:
    state: ServerState = websocket.app.state.idme_server
    refused = refusal(websocket, state)
    if refused is not None:
        status, code, detail = refused
        try:
            await websocket.send_denial_response(JSONResponse({"code": code, "detail": detail}, status_code=status))
        except RuntimeError:  # a server without the denial-response extension: a plain refusal (HTTP 403)
            await websocket.close(code=CLOSE_POLICY, reason=code)
        return
    await websocket.accept()
    if not state.acquire_stream():
        await _send_and_close(websocket, {"type": "error", "code": "too_many_streams",
                                          "detail": f"{state.options.max_streams} streams are already open; "
                                                    "try again later"}, CLOSE_AGAIN)
        return
    try:
        await _Connection(websocket, state).run()
    finally:
        state.release_stream()


async def _send_and_close(ws: WebSocket, message: dict | None, code: int, timeout_s: float = 2.0) -> None:
    """Best effort: a last message and a close frame, never waiting more than ``timeout_s`` on a stuck client."""
    with contextlib.suppress(Exception):
        if message is not None:
            await asyncio.wait_for(ws.send_text(json.dumps(message, ensure_ascii=False)), timeout_s)
        await asyncio.wait_for(ws.close(code=code, reason=(message or {}).get("code", "")[:120]), timeout_s)


async def _cancelled(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


class _Connection:
    """One client's stream: start message, audio, events, stop, end."""

    def __init__(self, ws: WebSocket, state: ServerState) -> None:
        self.ws = ws
        self.state = state
        self.options = state.options
        self.loop = asyncio.get_running_loop()
        self.out: asyncio.Queue = asyncio.Queue()
        self.pending = 0  # events in ``out`` (the queue is unbounded; the bound is checked here, never blocking)
        self.failure: dict | None = None  # the message that ends the stream (overload, error)
        self.failed = asyncio.Event()
        self.stream = EventStream(None)
        self.source: PushSource | None = None
        self.session: Any = None
        self.started: asyncio.Future = self.loop.create_future()
        self.done: asyncio.Future = self.loop.create_future()

    # -- outbound ----------------------------------------------------------------------------------
    def put(self, message: Any) -> None:
        """Queue a message for the client (on the loop); past the bound the client is too slow: overload."""
        if self.failure is not None:
            return
        if message is not _CLOSE and self.pending >= self.options.max_pending_events:
            self.fail({"type": "overload", "code": "overload",
                       "detail": f"more than {self.options.max_pending_events} events wait for this client; "
                                 "read them faster"})
            return
        self.pending += 1
        self.out.put_nowait(message)

    def fail(self, message: dict) -> None:
        if self.failure is None:
            self.failure = message
            self.failed.set()

    def on_events(self, events: list[dict]) -> None:
        """Runs on the loop: types each event (segment / relabel / text) and queues it."""
        for d in events:  # the same typing as `idme listen --json` (idme.events)
            self.put(self.stream.record(d))

    async def sender(self) -> None:
        while True:
            item = await self.out.get()
            self.pending -= 1
            if item is _CLOSE:
                return
            await self.ws.send_text(json.dumps(item, ensure_ascii=False))

    # -- the session thread --------------------------------------------------------------------------
    def _resolve(self, fut: asyncio.Future, value: Any = None, exc: BaseException | None = None) -> None:
        def apply() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(apply)

    def _run_session(self, start: dict) -> None:
        """Session thread: open (the store's writer is created on this thread) and run to the end."""
        try:
            session = self.state.ready_idme().open_live(
                source=self.source, sinks=[LoopSink(self.loop, self.on_events)],
                transcribe=self.options.transcribe and bool(start.get("transcribe", True)),
                require_owner=bool(start.get("require_owner", True)))
        except BaseException as exc:  # handed to the loop, which reports it to the client
            self._resolve(self.started, exc=exc)
            return
        self.session = session
        self.stream.session_id = session.session_id
        self._resolve(self.started, session.session_id)
        try:
            self._resolve(self.done, session.run())
        except BaseException as exc:
            self._resolve(self.done, exc=exc)

    # -- inbound -------------------------------------------------------------------------------------
    async def read_start(self) -> dict | None:
        try:
            msg = await asyncio.wait_for(self.ws.receive(), self.options.start_timeout_s)
        except asyncio.TimeoutError:
            await self.close_with("bad_start", f"no start message within {self.options.start_timeout_s:g} s")
            return None
        if msg["type"] == "websocket.disconnect":
            return None
        text = msg.get("text")
        start: Any = None
        if text is not None:
            with contextlib.suppress(ValueError):
                start = json.loads(text)
        if not isinstance(start, dict) or start.get("type") != "start":
            await self.close_with("bad_start", 'the first message must be JSON {"type": "start", "encoding": '
                                  '"pcm_s16le"|"f32le", "sample_rate": N, "channels": C}')
            return None
        return start

    async def close_with(self, code: str, detail: str, close: int = CLOSE_POLICY) -> None:
        await _send_and_close(self.ws, {"type": "error", "code": code, "detail": detail}, close)

    async def receiver(self) -> str:
        """Reads until stop ("stop"), the audio cap ("limit"), a fatal message ("fatal") or the client leaves
        ("gone"). Non-fatal problems (unknown or malformed text) are reported and reading goes on."""
        src = self.source
        assert src is not None
        cap_s = self.options.max_stream_audio_s
        every_s = self.options.lag_every_s
        next_lag = time.monotonic() + every_s
        while True:
            try:
                msg = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return "gone"
            if msg["type"] == "websocket.disconnect":
                return "gone"
            data = msg.get("bytes")
            if data is not None:
                if len(data) > self.options.max_frame_bytes:
                    self.fail({"type": "error", "code": "frame_too_large",
                               "detail": f"binary messages are limited to {self.options.max_frame_bytes} bytes"})
                    return "fatal"
                if src.received_s + len(data) / src.bytes_per_s > cap_s:
                    self.put({"type": "error", "code": "audio_limit",
                              "detail": f"a stream may carry {cap_s:g} s of audio; ending it"})
                    return "limit"
                if not src.push(data):
                    self.fail({"type": "overload", "code": "overload",
                               "detail": f"more than {self.options.max_queued_s:g} s of audio wait to be "
                                         "labelled; send in real time"})
                    return "fatal"
                now = time.monotonic()
                if now >= next_lag:
                    next_lag = now + every_s
                    if src.queued_s >= LAG_MIN_S:
                        self.put({"type": "lag", "queued_s": round(src.queued_s, 2)})
                continue
            text = msg.get("text")
            parsed: Any = None
            with contextlib.suppress(ValueError):
                parsed = json.loads(text) if text is not None else None
            if isinstance(parsed, dict) and parsed.get("type") == "stop":
                return "stop"
            if isinstance(parsed, dict) and parsed.get("type") == "start":
                self.put({"type": "error", "code": "already_started", "detail": "the stream has already started"})
            else:
                self.put({"type": "error", "code": "bad_message",
                          "detail": 'text messages are JSON {"type": "stop"}; audio goes in binary messages'})

    # -- the whole connection ------------------------------------------------------------------------
    async def run(self) -> None:
        start = await self.read_start()
        if start is None:
            return
        try:
            self.source = PushSource(start.get("sample_rate"), start.get("channels", 1),
                                     start.get("encoding", "pcm_s16le"), max_queued_s=self.options.max_queued_s,
                                     label="websocket stream")
        except AudioError as exc:
            await self.close_with("bad_start", str(exc))
            return
        thread = threading.Thread(target=self._run_session, args=(start,), name="idme-ws-session", daemon=True)
        thread.start()
        try:
            session_id = await self.started
        except IdmeError as exc:
            code = "no_owner" if isinstance(exc, ProfileError) and "owner" in str(exc) else "not_ready"
            await self.close_with(code, str(exc).splitlines()[0], CLOSE_INTERNAL)
            return
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged with its traceback
            log.exception("cannot start a session")
            await self.close_with("internal", f"cannot start a session ({type(exc).__name__})", CLOSE_INTERNAL)
            return
        self.put({"type": "started", "session_id": session_id, "sample_rate": self.source.native_rate,
                  "channels": self.source.channels, "encoding": self.source.encoding})
        sender = asyncio.create_task(self.sender())
        receiver = asyncio.create_task(self.receiver())
        failed = asyncio.create_task(self.failed.wait())
        try:
            await self._serve(sender, receiver, failed, thread)
        finally:
            for t in (sender, receiver, failed):
                t.cancel()
            if self.source is not None:
                self.source.close()
            if self.session is not None and not self.done.done():
                self.session.abort()
            await asyncio.to_thread(thread.join, 30)

    async def _serve(self, sender: asyncio.Task, receiver: asyncio.Task, failed: asyncio.Task,
                     thread: threading.Thread) -> None:
        done, _ = await asyncio.wait({receiver, failed, self.done, sender}, return_when=asyncio.FIRST_COMPLETED)
        how = receiver.result() if receiver in done else None
        if how == "gone" or (sender in done and sender.exception() is not None):
            return  # the client left: the finally block aborts the session (what was decided is saved)
        if how in ("stop", "limit"):
            self.source.end()  # everything received is labelled, re-clustered and saved
            done, _ = await asyncio.wait({failed, self.done, sender}, return_when=asyncio.FIRST_COMPLETED)
        if self.failure is not None or (self.done.done() and self.done.exception() is not None):
            await _cancelled(sender)  # one writer at a time: the last message goes out alone
        if self.failure is not None:
            self.session.abort()
            await _send_and_close(self.ws, self.failure,
                                  CLOSE_TOO_BIG if self.failure["code"] == "frame_too_large" else CLOSE_AGAIN)
            return
        if self.done in done and self.done.exception() is not None:
            exc = self.done.exception()
            log.error("stream session failed: %s", exc)
            detail = str(exc).splitlines()[0] if isinstance(exc, IdmeError) else type(exc).__name__
            await self.close_with("internal", f"the session failed ({detail})", CLOSE_INTERNAL)
            return
        if not self.done.done():  # the sender ended by itself: nothing left to do but wait
            await self.done
        result = self.done.result()
        self.put({"type": "end", **result.to_dict()})
        self.put(_CLOSE)
        with contextlib.suppress(Exception):
            await sender
        if self.ws.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(code=CLOSE_NORMAL), 2.0)
