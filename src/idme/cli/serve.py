"""``idme serve``: the REST + WebSocket server and its browser page (the [serve] extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import ConfigError
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, make_idme

#: Addresses that only this machine can reach.
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@cli_errors
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (default: this machine only)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="TCP port."),
    token_file: Optional[Path] = typer.Option(None, "--token-file",
                                              help="Bearer token file (default <home>/server/token, created 0600)."),
    certfile: Optional[Path] = typer.Option(None, "--certfile", help="TLS certificate (PEM): serve https/wss."),
    keyfile: Optional[Path] = typer.Option(None, "--keyfile", help="TLS private key (PEM) for --certfile."),
    allow_host: list[str] = typer.Option([], "--allow-host",
                                         help="Another host name clients may use (repeatable), e.g. behind TLS."),
    max_streams: int = typer.Option(4, "--max-streams", min=1, help="WebSocket streams at once."),
    asr: Optional[str] = typer.Option(None, "--asr", help="Transcription: auto, vosk, whisper or none."),
    gallery: Optional[str] = typer.Option(None, "--gallery", help="POST /v1/identify searches the PostgreSQL + "
                                          "pgvector gallery at this URL (filled by `idme profiles migrate`) "
                                          "instead of the home's profiles."),
    table: str = typer.Option("idme_voiceprints", "--table", help="The gallery's table (with --gallery)."),
    home: Optional[Path] = HOME_OPT, embedder: Optional[str] = EMBEDDER_OPT, compute: Optional[str] = COMPUTE_OPT,
) -> None:
    """Serve the API (/v1, OpenAPI at /v1/openapi.json) and the browser page at / on HOST:PORT."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("--certfile and --keyfile go together")
    if gallery is None and table != "idme_voiceprints":
        raise typer.BadParameter("--table goes with --gallery", param_hint="--table")
    try:
        import uvicorn  # noqa: F401  (the [serve] extra: checked before anything else happens)

        from ..server import ServerOptions
    except ImportError as exc:
        raise ConfigError(f"the server needs the [serve] extra ({exc.name} is missing): "
                          "pip install 'idme[serve]'") from None
    idme = make_idme(home, embedder, compute, asr, report=False)  # the server logs gallery failures
    options = ServerOptions(host=host, port=port, token_file=token_file, extra_hosts=tuple(allow_host),
                            max_streams=max_streams)
    # Opened (and checked: server, pgvector, table, encoder) before anything is served; closed on exit.
    pg = None if gallery is None else idme.open_gallery(gallery, table)
    try:
        _serve(idme, options, pg, certfile, keyfile)
    finally:
        if pg is not None:
            pg.close()


def _serve(idme, options, pg, certfile: Optional[Path], keyfile: Optional[Path]) -> None:
    """Creates the app over ``idme`` (and gallery ``pg``), says where it is, and serves until stopped."""
    import uvicorn

    from ..server import create_app

    host, port, token_file = options.host, options.port, options.token_file
    app = create_app(options=options, idme=idme, gallery=pg)
    state = app.state.idme_server
    scheme = "https" if certfile else "http"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"{scheme}://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if host not in _LOOPBACK:
        err.print(f"warning: binding {host} lets other machines reach idme (the token still guards it)"
                  + ("" if certfile else "; add --certfile/--keyfile so the token never travels in clear"),
                  markup=False)
    token_path = token_file or idme.home / "server" / "token"
    if state.token_created:
        # Shown once: the fragment (#token=) never leaves the browser, so it is not in any server log.
        err.print(f"new API token saved to {token_path} (0600). Open {url}#token={state.token}", markup=False)
    else:
        err.print(f"serving {url} (token in {token_path})", markup=False)
    state.ready_idme()  # load the encoder now, not on the first request
    from .._fs import SharedHold

    hold = SharedHold(idme.home)  # `idme keys rotate` refuses while the server holds the database open
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning",
                    ssl_certfile=None if certfile is None else str(certfile),
                    ssl_keyfile=None if keyfile is None else str(keyfile))
    finally:
        hold.release()
