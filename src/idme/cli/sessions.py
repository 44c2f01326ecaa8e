"""``idme sessions``, ``idme name`` and ``idme transcript``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import HOME_OPT, cli_errors, err, make_idme

sessions_app = typer.Typer(no_args_is_help=True, help="List, inspect and delete recorded sessions.")


@sessions_app.command("list")
@cli_errors
def sessions_list(as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout."), home: Optional[Path] = HOME_OPT) -> None:
    """List recorded sessions."""
    idme = make_idme(home)
    rows = idme.sessions.list()
    if idme.settings.retention_days is not None:  # issue 14: say what retention will delete
        from datetime import datetime, timedelta, timezone

        cut = (datetime.now(timezone.utc) - timedelta(days=idme.settings.retention_days)).isoformat()
        due = sum(r.created_at < cut for r in rows)
        err.print(f"retention: sessions older than {idme.settings.retention_days:g} days are deleted when a "
                  f"session starts; {due} due now (`idme sessions prune`)", markup=False)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows]))
        return
    if not rows:
        err.print("no sessions yet: run `idme listen`", markup=False)
        return
    # The id is what people copy (it also says when, in UTC): never cut it; the speakers column wraps.
    t = Table("id", "length", "segs", "speakers", "status")
    t.columns[0].no_wrap = True
    t.columns[0].min_width = max(len(r.id) for r in rows)
    for r in rows:
        t.add_row(r.id, f"{(r.duration_s or 0):.0f} s", str(r.n_segments), ", ".join(r.speakers), r.status)
    Console().print(t)


@sessions_app.command("show")
@cli_errors
def sessions_show(session: str = typer.Argument("latest"), home: Optional[Path] = HOME_OPT) -> None:
    """Show a session (settings, models, speakers, segments) as JSON."""
    typer.echo(json.dumps(make_idme(home).sessions.get(session).to_dict(), indent=1, ensure_ascii=False))


@sessions_app.command("rm")
@cli_errors
def sessions_rm(session: str = typer.Argument(..., help="Session id (a unique prefix will do) or 'latest'."),
                yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (scripts)."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Delete a session: its segments, text and speaker embeddings (voice data: asks on a terminal)."""
    idme = make_idme(home)
    store = idme.sessions
    sid = store.get(session).id
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Delete session {sid} with its voice data?"):
        raise typer.Exit(1)
    store.delete(sid)
    idme.forget_undo(sid)  # the undo record names the session: it goes with it
    err.print(f"deleted session {sid}", markup=False)


@sessions_app.command("prune")
@cli_errors
def sessions_prune(older_than: Optional[float] = typer.Option(None, "--older-than", help="Days; default the "
                                                             "retention_days setting ($IDME_RETENTION_DAYS)."),
                   home: Optional[Path] = HOME_OPT) -> None:
    """Delete (and scrub) every session older than N days; running sessions are kept."""
    done = make_idme(home).prune_sessions(older_than)
    if done is None:
        err.print("no retention set: pass --older-than DAYS or set IDME_RETENTION_DAYS", markup=False)
        return
    err.print(f"pruned {len(done.deleted)} session(s) older than {done.older_than_days:g} days"
              + (f": {', '.join(done.deleted)}" if done.deleted else ""), markup=False)


@cli_errors
def name(session: str = typer.Argument(..., help="Session id (or 'latest')."),
         speaker: Optional[str] = typer.Argument(None, help='The unknown speaker, e.g. "Speaker 2".'),
         person: Optional[str] = typer.Argument(None, help="Name for the profile, e.g. alice (any alphabet)."),
         undo: bool = typer.Option(False, "--undo", help="Undo the last `idme name` on SESSION: the profile "
                                   "goes back to what it was and the session gets its old label."),
         force: bool = typer.Option(False, "--force", help="Name even when the voice does not match the "
                                    "existing profile, matches another one, or involves the owner (Me)."),
         home: Optional[Path] = HOME_OPT) -> None:
    """Turn an unknown speaker of a session into an enrolled profile, and relabel the session.

    Adding a speaker to an existing profile needs their voice to match it; the owner (Me) is never named
    or merged without --force. `idme name --undo SESSION` takes the last naming back."""
    idme = make_idme(home)
    if undo:
        if speaker is not None or person is not None:
            raise typer.BadParameter("--undo takes only the session", param_hint="--undo")
        rec = idme.undo_name(session)
        what = "restored" if rec["backup"] else "removed"
        note = "" if not rec["merged_in_session"] else \
            f"; {rec['person']} was already a speaker of that session, so its labels stay merged"
        err.print(f"undone: profile {rec['person']} {what}, {rec['person']} is {rec['speaker']} again in session "
                  f"{rec['session_id']}{note}", markup=False)
        return
    if speaker is None or person is None:
        raise typer.BadParameter("give SESSION SPEAKER PERSON (or --undo SESSION)", param_hint="SPEAKER PERSON")
    done = idme.name_speaker(session, speaker, person, force=force)
    err.print(f"{speaker} is now {done.profile.name}: {done.relabelled} segment(s) relabelled; idme will "
              f"recognise {done.profile.name} in later sessions (undo: `idme name --undo {done.session_id}`).",
              markup=False)


@cli_errors
def transcript(session: str = typer.Option("latest", "--session", "-s", help="Session id or 'latest'."),
               out: str = typer.Option(..., "--out", "-o", help="Output file, or - for stdout."),
               fmt: Optional[str] = typer.Option(None, "--format", help="md, txt, srt, vtt, json or rttm "
                                                 "(default: from the --out extension; txt for -)."),
               home: Optional[Path] = HOME_OPT) -> None:
    """Export a session's transcript with its final speaker labels."""
    path = make_idme(home).export(session, out, fmt)
    if path is not None:
        err.print(f"wrote {path}", markup=False)
