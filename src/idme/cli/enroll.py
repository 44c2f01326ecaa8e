"""``idme enroll``: files or microphone takes into a profile, behind the quality gate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import EnrollmentError
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, fail, make_idme

#: Below this estimated SNR a take is flagged (accepted all the same): the review's 0 dB take still
#: worked, but the owner then scored 0.57 instead of 0.75 (review 2026-12-01, smaller items).
NOISY_SNR_DB = 10.0

_PROMPTS = (
    "The quick brown fox jumps over the lazy dog, and then runs back into the quiet forest.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "I usually start my day with a cup of coffee and a look at the news from around the world.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "We talked about the budget, the schedule and who will take care of the next release.",
)


def _record_take(device: str | None, seconds: float, index: int, total: int) -> tuple[np.ndarray, int]:
    """Records one take from the microphone with a countdown; returns (16 kHz float32 samples, the
    microphone's native rate)."""
    from ..audio.sources import MicrophoneSource

    # Find the device first: a missing microphone is reported at once, not after the prompt and countdown.
    mic = MicrophoneSource(device=device)
    err.print(f"\n[bold]Take {index}/{total}[/]: read this aloud in your normal voice:", markup=True)
    err.print(f"  [italic]{_PROMPTS[(index - 1) % len(_PROMPTS)]}[/]", markup=True)
    for n in (3, 2, 1):
        err.print(f"  starting in {n}…", markup=False)
        time.sleep(1)
    err.print("  [bold red]● recording[/]", markup=True)
    samples = mic.record(seconds)
    err.print("  done.", markup=False)
    return samples, mic.native_rate


def _microphone_takes(device: str | None, takes: int, seconds: float) -> tuple[list, list[int]]:
    """Records ``takes`` takes, each retried up to 3 times until it passes the gate's speech checks."""
    from ..identity.enroll import check_take

    take_audio, rates = [], []
    for i in range(1, takes + 1):
        for attempt in range(3):
            samples, rate = _record_take(device, seconds, i, takes)
            try:
                check_take(samples, f"take {i}")
                break
            except EnrollmentError as exc:
                err.print(f"[yellow]{exc}[/]", markup=True)
                if attempt == 2:
                    raise
        take_audio.append((f"take {i}", samples))
        rates.append(rate)
    return take_audio, rates


@cli_errors
def enroll(
    name: str = typer.Option("me", "--name", "-n", help="Profile to enrol into; 'me' is you, the owner."),
    files: list[Path] = typer.Option([], "--file", "-f", metavar="PATH", show_default=False,
                                     help="Enrollment recording(s); repeat for several takes (- for stdin)."),
    takes: int = typer.Option(3, "--takes", min=1, max=10, help="Microphone takes to record."),
    seconds: float = typer.Option(6.0, "--seconds", min=2.0, max=60.0, help="Length of each microphone take."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    keep_audio: bool = typer.Option(False, "--keep-audio", help="Keep the enrollment audio (0600) so the "
                                    "profile can be re-embedded with another encoder later."),
    force: bool = typer.Option(False, "--force", help="Enrol even if this voice already matches another profile."),
    replace: bool = typer.Option(False, "--replace", help="Replace the profile's takes instead of adding to them."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Bulk: a CSV of 'name,file[,file...]' "
                                            "rows (or one file per row, names repeated); resumable."),
    as_json: bool = typer.Option(False, "--json", help="With --manifest: the per-person report as one JSON object."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Enrol a voice: from files (--file), from the microphone (--takes K --seconds S), or many people from a
    CSV manifest (--manifest people.csv; exit 1 when some of them failed)."""
    from ..identity.profiles import check_name

    if manifest is not None:
        if files:
            raise fail("--manifest names the files itself: drop --file", 2)
        _manifest(make_idme(home, embedder, compute), manifest, keep_audio, force, as_json)
        return
    check_name(name)
    idme = make_idme(home, embedder, compute)
    if files:
        result = idme.enroll_files(name, files, keep_audio=keep_audio, force=force, replace=replace)
    else:
        take_audio, rates = _microphone_takes(device, takes, seconds)
        result = idme.enroll(name, take_audio, rates, keep_audio=keep_audio, force=force, replace=replace)
    for r in result.reports:
        err.print(f"  ✓ {r.source}: {r.speech_s:.1f} s of speech, level {r.level_dbfs:.0f} dBFS", markup=False)
        if r.snr_db is not None and r.snr_db < NOISY_SNR_DB:
            err.print(f"    [yellow]noisy take (SNR ~{r.snr_db:.0f} dB): it was accepted, but a take in a quieter "
                      "room gives a voiceprint that scores higher[/]", markup=True)
    profile = result.profile
    who = "you (Me)" if profile.name == "me" else profile.name
    err.print(f"[green]Enrolled {who}[/]: {len(profile.embeddings)} take(s) with {idme.embedder.name}.", markup=True)


def _manifest(idme, manifest: Path, keep_audio: bool, force: bool, as_json: bool) -> None:
    """``enroll --manifest``: a progress bar on stderr, then the per-person table (or JSON) on stdout."""
    import json

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True) as bar:
        task = bar.add_task("enrolling", total=None)
        report = idme.enroll_manifest(manifest, keep_audio=keep_audio, force=force,
                                      progress=lambda done, total, who: bar.update(
                                          task, completed=done, total=total, description=f"enrolling {who}"))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        t = Table("name", "files", "status", "what the quality gate said", title=f"enrolled from {manifest}")
        style = {"enrolled": "green", "skipped": "dim", "failed": "red"}
        for r in report.rows:
            takes = ", ".join(f"{d['speech_s']:.1f} s" for d in r.takes)
            t.add_row(r.name, str(len(r.files)), f"[{style[r.status]}]{r.status}[/]",
                      escape(r.reason) or (f"takes of {takes} speech" if takes else ""))
        Console().print(t)
    d = report.to_dict()
    err.print(f"{d['enrolled']} enrolled, {d['skipped']} already enrolled, {d['failed']} failed", markup=False)
    if report.failed:
        raise typer.Exit(1)
