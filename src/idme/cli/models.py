"""``idme models``: what is installed, and downloads (or installs --from a local copy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .common import cli_errors, err, fail

models_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                         help="Show installed models, or download them.")


@models_app.callback()
@cli_errors
def models_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="JSON on stdout instead of a table.")) -> None:
    """List the models idme knows: installed or not, path, size, version, licence, used by."""
    if ctx.invoked_subcommand is not None:
        return
    from .. import models

    rows = models.list_models()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in rows]))
        return
    # One block per model rather than a 7-column table: at 80 columns the table cut paths and versions
    # to "…", and a missing model's install command was only in --json (UX review 2026-12-01).
    console = Console(soft_wrap=False)
    for r in rows:
        d = r.to_dict()
        size = d.get("size_bytes") or 0
        mark = "[green]✓[/]" if d.get("installed") else "[red]✗[/]"
        head = f"{mark} [bold]{d.get('key', '')}[/]  {d.get('version', '')}"
        console.print(head + (f"  ({size / 1e6:.1f} MB)" if size else ""), markup=True, highlight=False)
        console.print(f"    path: {d.get('path', '')}", markup=False, highlight=False, overflow="fold")
        console.print(f"    licence: {d.get('licence', '')}; used by: {', '.join(d.get('used_by', []) or [])}",
                      markup=False, highlight=False, overflow="fold")
        if not d.get("installed") and d.get("install_command"):
            console.print(f"    install: {d['install_command']}", markup=False, highlight=False, overflow="fold")


@models_app.command("download")
@cli_errors
def models_download(only: list[str] = typer.Option([], "--only", help="campplus, ecapa, vosk or whisper; repeatable."),
                    from_path: Optional[Path] = typer.Option(None, "--from", help="Install from a directory or archive."),
                    timeout: float = typer.Option(15.0, "--timeout", help="Network timeout, seconds."),
                    force: bool = typer.Option(False, "--force", help="Reinstall even if the model is already installed.")) -> None:
    """Download (or install --from a local copy) the models idme uses."""
    from .. import models
    from .progress import RichProgress

    try:
        specs = models.parse_keys(only or None)
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    if from_path is not None and len(specs) != 1:
        raise fail("--from needs exactly one model: add --only <model>", 2)
    with RichProgress() as progress:
        results = models.ensure_models(specs, None, from_path, progress, timeout_s=timeout, force=force)
    for r in results:
        err.print(r.message, style="green" if r.ok else "bold red", markup=False)
    if not all(r.ok for r in results):
        raise typer.Exit(1)
