"""``idme export-data``, ``idme forget`` and ``idme audit``: the user's own data (issue 14 item 3)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from .common import HOME_OPT, cli_errors, err, fail, make_idme

EXPORT_PASSPHRASE_ENV = "IDME_EXPORT_PASSPHRASE"


def _passphrase(confirm: bool) -> str:
    """$IDME_EXPORT_PASSPHRASE, else a prompt on a terminal, else one line saying what to do."""
    value = os.environ.get(EXPORT_PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise fail(f"the archive needs a passphrase: set {EXPORT_PASSPHRASE_ENV} or run this on a terminal")
    import getpass

    value = getpass.getpass("archive passphrase: ")
    if confirm and getpass.getpass("again: ") != value:
        raise fail("the two passphrases differ; nothing was written")
    return value


@cli_errors
def export_data(name: Optional[str] = typer.Argument(None, help="The person (profile name; 'me' = you)."),
                out: Optional[Path] = typer.Option(None, "--out", "-o", help="The encrypted archive to write."),
                open_: Optional[Path] = typer.Option(None, "--open", help="Decrypt this archive instead..."),
                to: Optional[Path] = typer.Option(None, "--to", help="...into this directory."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Export everything idme holds about NAME (profile, kept takes, replay fingerprints, their session
    segments, audit entries) as one passphrase-encrypted archive; --open FILE --to DIR unpacks one."""
    if open_ is not None:
        if to is None or name is not None or out is not None:
            raise fail("give --open ARCHIVE --to DIR (and no NAME or --out)", code=2)
        files = make_idme(home).open_export(open_, to, _passphrase(confirm=False))
        err.print(f"unpacked {len(files)} file(s) into {to}", markup=False)
        return
    if name is None or out is None:
        raise fail("give NAME --out FILE (or --open ARCHIVE --to DIR)", code=2)
    manifest = make_idme(home).export_person(name, out, _passphrase(confirm=True))
    c = manifest["counts"]
    err.print(f"wrote {out}: profile {'yes' if c['profile'] else 'no'}, {c['takes']} take(s), "
              f"{c['fingerprints']} fingerprint(s), {c['segments']} segment(s) in {c['sessions']} session(s), "
              f"{c['audit']} audit entr{'y' if c['audit'] == 1 else 'ies'}", markup=False)


@cli_errors
def forget(name: str = typer.Argument(..., help="The person to forget (profile name)."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (scripts)."),
           force: bool = typer.Option(False, "--force", help="Allow forgetting the owner 'me'."),
           drop_text: bool = typer.Option(False, "--drop-text",
                                          help="Delete what they said too (their segments stay, untranscribed)."),
           home: Optional[Path] = HOME_OPT) -> None:
    """Forget NAME: profile, kept takes and fingerprints removed; in every session their segments become a
    new "Speaker N" and their voice samples are deleted (their words too with --drop-text); audit rows
    anonymised; the database scrubbed; their rows deleted from every linked gallery (`idme profiles galleries`)."""
    if not yes:
        if not sys.stdin.isatty():
            raise fail(f"forgetting {name} cannot be undone: pass --yes to confirm")
        if not typer.confirm(f"Forget {name} everywhere? This cannot be undone"):
            raise typer.Exit(1)
    done = make_idme(home).forget_person(name, force=force, drop_text=drop_text)
    err.print(f"forgot {done['name']}: profile {'removed' if done['profile_removed'] else 'was absent'}, "
              f"{done['segments']} segment(s) in {len(done['relabelled'])} session(s) relabelled"
              + (" and their text deleted, " if drop_text else ", ") +
              f"{done['audit_rows']} audit row(s) anonymised"
              + (f", {done['gallery_rows_removed']} row(s) deleted from linked galleries"
                 if done.get("gallery_rows_removed") else "")
              + ("" if done["scrubbed"] else "; a session is recording, so the store is compacted later"),
              markup=False)


@cli_errors
def audit(name: Optional[str] = typer.Option(None, "--name", "-n", help="Only this person's attempts."),
          as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout."),
          home: Optional[Path] = HOME_OPT) -> None:
    """List verification attempts (time, name, decision, score, threshold, liveness; never audio)."""
    rows = make_idme(home).audit(name)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r.to_dict()))
        return
    if not rows:
        err.print("no verification attempts recorded", markup=False)
        return
    t = Table("time", "op", "name", "decision", "score", "threshold", "liveness")
    for r in rows:
        t.add_row(r.at[:19], r.op, r.name or "-", r.decision, "-" if r.score is None else f"{r.score:.3f}",
                  "-" if r.threshold is None else f"{r.threshold:.3f}", r.liveness or "-")
    Console().print(t)
