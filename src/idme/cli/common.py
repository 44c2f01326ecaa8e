"""What every command shares: the stderr console, the common options, settings from flags, error mapping."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any, Callable, TypeVar

import typer
from rich.console import Console

from ..errors import IdmeError

err = Console(stderr=True, highlight=False, soft_wrap=True)

HOME_OPT = typer.Option(None, "--home", help="Data store directory (default $IDME_HOME or the user data dir).")
EMBEDDER_OPT = typer.Option(None, "--embedder", help="Speaker encoder: campplus (bundled) or ecapa "
                                                     "(default $IDME_EMBEDDER, config.toml, or campplus).")
COMPUTE_OPT = typer.Option(None, "--compute", help="Where the ECAPA encoder runs: cpu or cuda "
                                                   "(default $IDME_COMPUTE or cpu).")
CACHE_OPT = typer.Option(None, "--cache-dir", help="Embedding cache (default <home>/cache/embeddings).")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> typer.Exit:
    """Prints ``error: message`` on stderr; returns the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


#: The facades ``make_idme`` made during the running command (``cli_errors`` checks them at its end).
_MADE = threading.local()


def cli_errors(fn: F) -> F:
    """Runs a command, turning IdmeError/OSError into one line on stderr and exit 1 (2 for usage errors).
    Tracebacks only with IDME_DEBUG=1. A command that changed profiles which a linked gallery did not get
    (``identity.links``) says so in one error line per gallery (``report_mirrored``) and, had it succeeded,
    exits 1; a command that failed or exited otherwise keeps its own exit code."""

    @functools.wraps(fn)
    def mapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except IdmeError as exc:
            if os.environ.get("IDME_DEBUG"):
                raise
            raise fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, exc.exit_code) from None
        except OSError as exc:
            if os.environ.get("IDME_DEBUG"):
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            raise fail(f"{exc.strerror or exc}{where}") from None

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_MADE, "facades", None) is not None:  # called from another command: it reports
            return mapped(*args, **kwargs)
        _MADE.facades = []
        try:
            result = mapped(*args, **kwargs)
        except BaseException:
            report_mirrored(_MADE.facades, final=False)
            raise
        else:
            report_mirrored(_MADE.facades, final=True)
            return result
        finally:
            _MADE.facades = None

    return wrapper  # type: ignore[return-value]


def report_mirrored(facades, final: bool) -> None:
    """One error line for each linked gallery (``idme profiles migrate``) that the command's changes of the
    profile store did not reach, saying why and the repair; ``final`` (the command succeeded): exit 1."""
    failures = [f for idme in facades for f in idme.sync_failures]
    if not failures:
        return
    from rich.markup import escape

    for f in failures[:-1] if final else failures:
        err.print(f"[bold red]error:[/] {escape(f.message())}", markup=True, highlight=False)
    if final:
        raise fail(escape(failures[-1].message()))


def make_idme(home: Path | None = None, embedder: str | None = None, compute: str | None = None,
              asr: str | None = None, asr_model: Path | None = None, retention_days: float | None = None,
              report: bool = True):
    """The library facade with settings from these flags (> IDME_* > config file > defaults). report: the
    command ends by reporting linked galleries its changes did not reach (``cli_errors``); the server, which
    logs them as they happen, passes False."""
    from ..api import Idme
    from ..settings import resolve

    idme = Idme(resolve(home, embedder=embedder, compute=compute, asr=asr, asr_model=asr_model,
                        retention_days=retention_days))
    made = getattr(_MADE, "facades", None)
    if made is not None and report:
        made.append(idme)
    return idme
