"""``idme sessions``, ``idme name`` and ``idme transcript``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import HOME_OPT, cli_errors, err, make_idme

sessions_app = typer.Typer(no_args_is_help=True, help="List, inspect and delete recorded sessions.")


@sessions_app.command("list")
@cli_errors
def sessions_list(as_json: bool = typer.Option(False, "--json"), home: Optional[Path] = HOME_OPT) -> None:
    """List recorded sessions."""
    rows = make_idme(home).sessions.list()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows]))
        return
    if not rows:
        err.print("no sessions yet: run `idme listen`", markup=False)
        return
    t = Table("id", "created (UTC)", "duration", "segments", "speakers", "status")
    for r in rows:
        t.add_row(r.id, r.created_at[:19], f"{(r.duration_s or 0):.0f} s", str(r.n_segments),
                  ", ".join(r.speakers), r.status)
    Console().print(t)


@sessions_app.command("show")
@cli_errors
def sessions_show(session: str = typer.Argument("latest"), home: Optional[Path] = HOME_OPT) -> None:
    """Show a session (settings, models, speakers, segments) as JSON."""
    typer.echo(json.dumps(make_idme(home).sessions.get(session).to_dict(), indent=1, ensure_ascii=False))


@sessions_app.command("rm")
@cli_errors
def sessions_rm(session: str, home: Optional[Path] = HOME_OPT) -> None:
    """Delete a session: its segments, text and speaker embeddings."""
    store = make_idme(home).sessions
    sid = store.get(session).id
    store.delete(sid)
    err.print(f"deleted session {sid}", markup=False)


@cli_errors
def name(session: str = typer.Argument(..., help="Session id (or 'latest')."),
         speaker: str = typer.Argument(..., help='The unknown speaker, e.g. "Speaker 2".'),
         person: str = typer.Argument(..., help="Name for the new profile, e.g. alice."),
         home: Optional[Path] = HOME_OPT) -> None:
    """Turn an unknown speaker of a session into an enrolled profile, and relabel the session."""
    done = make_idme(home).name_speaker(session, speaker, person)
    err.print(f"{speaker} is now {done.profile.name}: {done.relabelled} segment(s) relabelled; idme will "
              f"recognise {done.profile.name} in later sessions.", markup=False)


@cli_errors
def transcript(session: str = typer.Option("latest", "--session", "-s", help="Session id or 'latest'."),
               out: str = typer.Option(..., "--out", "-o", help="Output file, or - for stdout."),
               fmt: Optional[str] = typer.Option(None, "--format", help="md, txt, srt, vtt, json or rttm "
                                                 "(default: from the --out extension)."),
               home: Optional[Path] = HOME_OPT) -> None:
    """Export a session's transcript with its final speaker labels."""
    path = make_idme(home).export(session, out, fmt)
    if path is not None:
        err.print(f"wrote {path}", markup=False)
