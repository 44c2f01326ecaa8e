"""``idme profiles``: list, show, rename, delete and re-embed enrolled profiles."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ProfileError
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, make_idme

profiles_app = typer.Typer(no_args_is_help=True, help="List, inspect, rename and delete enrolled profiles.")


@profiles_app.command("list")
@cli_errors
def profiles_list(as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout."), home: Optional[Path] = HOME_OPT) -> None:
    """List enrolled profiles."""
    profs = make_idme(home).profiles.all()
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in profs]))
        return
    if not profs:
        err.print("no profiles yet: run `idme enroll`", markup=False)
        return
    t = Table("name", "kind", "takes", "encoder", "updated")
    for p in profs:
        t.add_row(p.display, p.kind, str(len(p.embeddings)), f"{p.encoder.get('name')} {p.encoder.get('version')}",
                  p.updated_at)
    Console().print(t)


@profiles_app.command("show")
@cli_errors
def profiles_show(name: str, home: Optional[Path] = HOME_OPT) -> None:
    """Show one profile (takes, encoder, quality); never the voiceprint itself."""
    p = make_idme(home).profiles.get("me" if name.lower() == "me" else name)
    typer.echo(json.dumps(p.to_dict(), indent=1))


@profiles_app.command("rename")
@cli_errors
def profiles_rename(old: str, new: str,
                    force: bool = typer.Option(False, "--force", help="Allow renaming the owner (me)."),
                    home: Optional[Path] = HOME_OPT) -> None:
    """Rename a profile (the owner, me, only with --force)."""
    make_idme(home).profiles.rename(old, new, force=force)
    err.print(f"renamed {old} to {new}", markup=False)


@profiles_app.command("rm")
@cli_errors
def profiles_rm(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (scripts)."),
                force: bool = typer.Option(False, "--force", help="Allow deleting the owner's profile (me)."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Delete a profile: its voiceprints, metadata, kept audio and earlier versions (asks on a terminal)."""
    store = make_idme(home).profiles
    if not store.exists(name):
        raise ProfileError(f"no profile '{name}'; see `idme profiles list`")
    if name.strip().lower() == "me" and not force:
        raise ProfileError("'me' is your own voiceprint (the owner); pass --force to delete it")
    if not yes and sys.stdin.isatty() and not typer.confirm(f"Delete profile {name} and its voiceprints?"):
        raise typer.Exit(1)
    store.remove(name, force=force)
    err.print(f"deleted profile {name}", markup=False)


@profiles_app.command("reembed")
@cli_errors
def profiles_reembed(name: Optional[str] = typer.Argument(None, help="Profile (default: all with kept audio)."),
                     embedder: Optional[str] = EMBEDDER_OPT, compute: Optional[str] = COMPUTE_OPT,
                     home: Optional[Path] = HOME_OPT) -> None:
    """Re-embed profiles from their kept enrollment audio with the current encoder."""
    idme = make_idme(home, embedder, compute)
    done = idme.reembed(name)
    for p in done:
        err.print(f"re-embedded {p.name}: {len(p.embeddings)} take(s) with {idme.embedder.name} "
                  f"{idme.embedder.version}", markup=False)
    if not done:
        err.print("no profile has kept audio (enrol with --keep-audio)", markup=False)


@profiles_app.command("migrate")
@cli_errors
def profiles_migrate(to: str = typer.Option(..., "--to", help="PostgreSQL URL with pgvector, e.g. "
                                            "postgresql://idme@db:5432/idme"),
                     table: str = typer.Option("idme_voiceprints", "--table", help="Table to upsert into."),
                     prune: bool = typer.Option(False, "--prune", help="Also delete the table's rows of people "
                                                "this store no longer has (removed or forgotten)."),
                     as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
                     embedder: Optional[str] = EMBEDDER_OPT, compute: Optional[str] = COMPUTE_OPT,
                     home: Optional[Path] = HOME_OPT) -> None:
    """Copy every profile's voiceprint into a PostgreSQL + pgvector gallery (the local store stays as it is) and
    link it: from then on enrolments, renames, deletions and `idme forget` here reach it too."""
    m = make_idme(home, embedder, compute).migrate_profiles(to, table, prune=prune)
    if as_json:
        typer.echo(json.dumps(m.to_dict()))
        return
    gone = f"; removed {len(m.removed)} row(s) of people no longer here" if prune else ""
    err.print(f"migrated {m.migrated} voiceprint(s) to {m.table} on {m.url} (checked: all {m.migrated} present"
              f"{gone}; the table holds {m.table_rows}); the local store is unchanged", markup=False)
    err.print(f"linked: later enrolments, renames, deletions and forgets here reach {m.table} too "
              f"(`idme profiles galleries` lists links; `idme profiles unlink --from URL --table {m.table}` stops it)",
              markup=False)


@profiles_app.command("galleries")
@cli_errors
def profiles_galleries(as_json: bool = typer.Option(False, "--json", help="One JSON array on stdout."),
                       home: Optional[Path] = HOME_OPT) -> None:
    """List the PostgreSQL galleries this store is mirrored into (URLs shown without passwords)."""
    links = make_idme(home).gallery_links.all()
    if as_json:
        typer.echo(json.dumps([l.to_dict() for l in links]))
        return
    if not links:
        err.print("no linked gallery: `idme profiles migrate --to URL` makes one", markup=False)
        return
    t = Table("url", "table", "dimension", "linked", "pending (changes it has not got yet)")
    for l in links:
        d = l.to_dict()
        t.add_row(d["url"], l.table, str(l.dimension), l.linked_at, ", ".join(l.pending) or "-")
    Console().print(t)


@profiles_app.command("unlink")
@cli_errors
def profiles_unlink(url: str = typer.Option(..., "--from", help="The gallery's PostgreSQL URL (a password in it "
                                            "is ignored)."),
                    table: str = typer.Option("idme_voiceprints", "--table", help="The gallery's table."),
                    home: Optional[Path] = HOME_OPT) -> None:
    """Stop mirroring this store into a gallery. Its rows stay there: delete the table to remove them."""
    link = make_idme(home).unlink_gallery(url, table)
    err.print(f"unlinked {link.shown}: changes here no longer reach it; its rows stay", markup=False)
