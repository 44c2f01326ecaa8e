"""``create_app(settings)``: the HTTP + WebSocket face of idme, a thin caller of :class:`idme.api.Idme`.

Secure by default (see :mod:`idme.server.security`): every request must name a loopback (or explicitly
allowed) Host, every /v1 route needs the bearer token, the WebSocket also takes a single-use ticket and
checks Origin, and uploads, audio length, streams and verify attempts are capped (:class:`ServerOptions`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import PurePath
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..api import Idme
from ..errors import IdmeError
from ..settings import Settings
from .options import ServerOptions
from .security import RateLimit, TicketBook, allowed_hosts, host_name, load_or_create_token
from .state import ApiError, ServerState, problem, status_of

log = logging.getLogger(__name__)


class GuardMiddleware:
    """Pure ASGI: refuses foreign ``Host`` headers (DNS rebinding) and bodies over ``max_upload_bytes``,
    before any route runs. WebSocket upgrades are checked by the WebSocket route itself."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        name = host_name(headers.get("host"))
        if name not in self.state.hosts:
            await problem(403, "forbidden_host", f"Host {headers.get('host')!r} is not served here; open "
                          f"http://127.0.0.1:{self.state.options.port}/ instead")(scope, receive, send)
            return
        cap = self.state.options.max_upload_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await problem(413, "too_large", f"the upload is larger than {cap} bytes")(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted_receive() -> dict:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > cap:
                    raise _TooLarge
            return msg

        async def watched_send(msg: dict) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if not started:
                await problem(413, "too_large", f"the upload is larger than {cap} bytes")(scope, receive, send)


class _TooLarge(BaseException):
    """Raised by the body counter. A BaseException: FastAPI turns any Exception raised while it parses a
    body into "400 error parsing the body", and an oversize upload must be a 413."""


def create_app(settings: Settings | None = None, options: ServerOptions | None = None, *,
               idme: Idme | None = None, token: str | None = None, gallery: Any = None) -> FastAPI:
    """The app. settings: None resolves them (flag > IDME_* > config file > default); idme: a facade to
    share (tests pass one with the encoder already loaded); token: None reads or creates the token file;
    gallery: an ``identity.gallery`` backend (``Idme.open_gallery``: PostgreSQL + pgvector) that
    ``POST /v1/identify`` searches instead of the home's profiles (the caller closes it)."""
    from .rest import health_router, router
    from .ws import router as ws_router

    options = options or ServerOptions()
    idme = idme or Idme(settings)
    created = False
    if token is None:
        token, created = load_or_create_token(options.token_file or idme.home / "server" / "token")
    state = ServerState(idme=idme, options=options, token=token, token_created=created, gallery=gallery,
                        hosts=allowed_hosts(options.host, options.extra_hosts),
                        tickets=TicketBook(options.ticket_ttl_s), verify_limit=RateLimit(options.verify_per_minute),
                        compute=threading.BoundedSemaphore(options.max_parallel_embeds or os.cpu_count() or 2))
    # No /docs or /redoc (their pages load scripts from a CDN) and the schema only with the token, like
    # every other route but /health and the page: GET /v1/openapi.json (rest.py).
    app = FastAPI(title="idme", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  description="Who said what, live and local: profiles, sessions, verify/identify and a "
                              "WebSocket stream (see docs/protocol.md). Every /v1 route needs the bearer token.")
    app.state.idme_server = state

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(IdmeError)
    async def _idme_error(request: Request, exc: IdmeError) -> JSONResponse:
        status, code = status_of(exc)
        return problem(status, code, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return problem(422, "invalid", f"{where}: {first.get('msg', 'invalid request')}" if where else
                       str(first.get("msg", "invalid request")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return problem(exc.status_code, codes.get(exc.status_code, "error"), str(exc.detail), exc.headers)

    app.include_router(health_router)
    app.include_router(router)
    app.include_router(ws_router)
    _mount_page(app)
    app.add_middleware(GuardMiddleware, state=state)
    return app


def _mount_page(app: FastAPI) -> None:
    """The browser page at ``/`` and its scripts, from package data (no CDN: works offline)."""
    from importlib import resources

    from fastapi.responses import HTMLResponse, Response

    static = resources.files("idme.server") / "static"
    types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
    files = {p.name: p for p in static.iterdir() if p.is_file()} if static.is_dir() else {}
    # The page holds no data (the token stays in the browser), so it needs no token; a strict CSP keeps
    # anything injected into it from loading or sending elsewhere.
    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
           "img-src 'self' data:; media-src 'self' blob:; frame-ancestors 'none'")
    headers = {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = files.get("index.html")
        if page is None:
            return HTMLResponse("<p>idme server: the browser page is not installed</p>", headers=headers)
        return HTMLResponse(page.read_text(encoding="utf-8"), headers=headers)

    @app.get("/static/{name}", include_in_schema=False)
    def static_file(name: str) -> Response:
        page = files.get(name)
        suffix = PurePath(name).suffix
        if page is None or suffix not in types:
            raise ApiError(404, "not_found", f"no static file {name!r}")
        return Response(page.read_bytes(), media_type=types[suffix], headers=headers)

