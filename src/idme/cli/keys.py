"""``idme keys``: the data key that encrypts voiceprints at rest (issue 14): status, rotate, set-passphrase."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import HOME_OPT, cli_errors, err, make_idme

keys_app = typer.Typer(no_args_is_help=True, help="The data key that encrypts voiceprints at rest.")


def _show(status, as_json: bool) -> None:
    """The status on stdout: one JSON object with --json, else "field: value" lines; notes on stderr."""
    d = status.to_dict()
    if as_json:
        typer.echo(json.dumps(d))
        return
    typer.echo(f"key id: {d['key_id'] or '(none yet)'}")
    typer.echo(f"wrappings: {', '.join(d['wrappings']) or 'none'}")
    typer.echo(f"keyring backend: {d['keyring_backend']}")
    if d["kdf"]:
        k = d["kdf"]
        typer.echo(f"passphrase kdf: {k['kdf']} m={k['memory_kib']} KiB t={k['time_cost']} p={k['parallelism']}")
    typer.echo(f"encrypted files: {d['encrypted_files']}")
    typer.echo(f"plaintext files: {d['plaintext_files']}")
    for note in d["notes"]:
        err.print(f"note: {note}", markup=False)


@keys_app.command("status")
@cli_errors
def keys_status(as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Key id, which wrappings exist (keyring, passphrase), the keyring backend, encrypted file counts."""
    _show(make_idme(home).keys_status(), as_json)


@keys_app.command("rotate")
@cli_errors
def keys_rotate(as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Make a new data key and re-encrypt everything under it (an interrupted rotation: run it again)."""
    status = make_idme(home).keys_rotate()
    err.print(f"rotated: new key {status.key_id}, {status.encrypted_files} file(s) re-encrypted", markup=False)
    _show(status, as_json)


@keys_app.command("set-passphrase")
@cli_errors
def keys_set_passphrase(as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
                        home: Optional[Path] = HOME_OPT) -> None:
    """Add or change the passphrase that wraps the data key (new one from $IDME_NEW_PASSPHRASE or a prompt)."""
    status = make_idme(home).keys_set_passphrase()
    err.print("passphrase set", markup=False)
    _show(status, as_json)
