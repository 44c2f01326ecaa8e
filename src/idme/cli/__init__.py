"""The ``idme`` command line: parses options, calls :mod:`idme.api`, maps errors to one line and an exit code.

stdout carries data only (``--json`` JSON Lines, exports to ``-``); logs, progress and hints go to stderr.
Exit codes: 0 ok, 1 runtime error (one line, no traceback unless IDME_DEBUG=1), 2 usage error.
"""

from __future__ import annotations

import logging
import os
import sys

import typer
from rich.logging import RichHandler

from .. import __version__
from ..errors import IdmeError
from . import enroll as _enroll
from . import eval as _eval
from . import keys as _keys
from . import listen as _listen
from . import models as _models
from . import privacy as _privacy
from . import profiles as _profiles
from . import sessions as _sessions
from . import serve as _serve
from . import verify as _verify
from .common import err

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="idme: who said what, live and local. Labels speech as Me, people you enrolled, "
                       "or new speakers, and transcribes it.")


def _plain_help_types() -> None:
    """Help shows what to type, not Python types: no ``<bool>`` beside flags, ``TEXT`` instead of ``<str>``,
    nothing for list arguments (their name says it). typer draws these from ``display_type_rich``."""
    from typer.core import TyperArgument, TyperOption

    names = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "NUMBER"}

    def plain(original):
        def display(self, ctx):
            if getattr(self, "is_flag", False):
                return None
            shown = original(self, ctx)
            if shown is None or not shown.startswith("<"):
                return shown
            return names.get(shown, None if shown.startswith("<list[") else shown.strip("<>").upper())
        return display

    for cls in (TyperOption, TyperArgument):
        if hasattr(cls, "display_type_rich"):
            cls.display_type_rich = plain(cls.display_type_rich)


_plain_help_types()


def _setup_logging(verbose: bool) -> None:
    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler],
                        format="%(message)s", force=True)
    logging.getLogger("idme").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _print_version(value: bool) -> None:
    # Eager: click checks for a missing subcommand before the group callback runs, so `idme --version`
    # must print and exit while the options are parsed.
    if value:
        typer.echo(f"idme {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _setup_logging(verbose)


app.command()(_enroll.enroll)
app.command()(_listen.listen)
app.command()(_listen.devices)
app.command()(_sessions.name)
app.command()(_sessions.transcript)
app.command()(_verify.verify)
app.command()(_verify.identify)
app.command()(_serve.serve)
app.command("export-data")(_privacy.export_data)
app.command()(_privacy.forget)
app.command()(_privacy.audit)
app.add_typer(_profiles.profiles_app, name="profiles")
app.add_typer(_sessions.sessions_app, name="sessions")
app.add_typer(_models.models_app, name="models")
app.add_typer(_eval.eval_app, name="eval")
app.add_typer(_keys.keys_app, name="keys")


def main() -> None:
    """Console-script entry point: every IdmeError becomes one line on stderr and its exit code."""
    try:
        app(standalone_mode=True)
    except IdmeError as exc:
        if os.environ.get("IDME_DEBUG"):
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)


__all__ = ["app", "main"]
