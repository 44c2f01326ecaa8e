"""``idme verify`` (1:1: is this NAME?) and ``idme identify`` (1:N, open set: who is this, if anyone?).

Both print the decision on stdout (a table, or one JSON object with ``--json``) and exit 0 once a decision
was made, accept or reject alike: read the decision, not the exit code. Audio with too little speech and a
name nobody enrolled are bad input: one ``error:`` line on stderr (the JSON result still goes to stdout
with ``--json``) and exit 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..identity.verify import ACCEPT, MAX_TOP, NOT_ENOUGH_SPEECH, NOT_ENROLLED, Check
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, fail, make_idme

_JSON_OPT = typer.Option(False, "--json", help="Print the result as one JSON object.")
_DEFAULT_TABLE = "idme_voiceprints"  # identity.gallery.PgVectorGallery's
_FILE_ARG = typer.Argument(..., help="Recording of the voice to check (any format, any rate from 8 kHz).")


def _condition(c: Check) -> str:
    cond = c.condition
    band = "narrow-band (telephone)" if cond.narrowband else "wideband"
    snr = "" if cond.snr_db is None else f", SNR ~{cond.snr_db:.0f} dB"
    return f"{c.speech_s:.1f} s of speech, {band} ~{cond.bandwidth_hz / 1000:.1f} kHz{snr}"


def _score(score: float, threshold: float, c: Check, cosine: float | None = None) -> str:
    """"LLR 3.21 (threshold 2.50; cosine 0.612)" for a calibrated score, "0.612 (threshold 0.400)" otherwise."""
    if not c.calibrated:
        return f"{score:.3f} (threshold {threshold:.3f})"
    cos = c.cosine if cosine is None else cosine
    return f"LLR {score:.2f} (threshold {threshold:.2f}; cosine {cos:.3f})"


def _finish(c: Check, as_json: bool, human) -> None:
    """Prints ``c`` (``--json`` or ``human(c)``); bad input becomes one error line and exit 1."""
    if as_json:
        typer.echo(json.dumps(c.to_dict()))
    if c.decision in (NOT_ENOUGH_SPEECH, NOT_ENROLLED):
        raise fail(c.reason)
    if not as_json:
        human(c)


@cli_errors
def verify(
    file: Optional[Path] = typer.Argument(None, help="Recording of the voice to check (any format, any rate "
                                          "from 8 kHz); not with --challenge."),
    name: str = typer.Option(..., "--name", "-n", help="The profile the speaker claims to be ('me' = you)."),
    expect: Optional[str] = typer.Option(None, "--expect", help="Liveness: the digits FILE must say (a challenge "
                                         "you issued); also refuses replays of earlier recordings."),
    challenge: bool = typer.Option(False, "--challenge", help="Print a fresh random digit challenge and exit "
                                   "(record the answer, then check it with --expect DIGITS FILE), or with "
                                   "--record SECONDS record the answer from the microphone and verify it."),
    record: Optional[float] = typer.Option(None, "--record", min=1.0, max=30.0, help="With --challenge: record "
                                           "the answer from the microphone for SECONDS (the time limit to say "
                                           "it), then verify it."),
    device: Optional[str] = typer.Option(None, "--device", help="Input device for --record (index or name)."),
    as_json: bool = _JSON_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Verify (1:1) that FILE is the voice of profile NAME: accept or reject, with score and threshold.
    With --expect: also the right digits (wrong_content) and not a copy of an earlier recording (replay)."""
    if challenge:
        # Without --record idme records nothing: the challenge is printed, the caller records the answer and
        # checks it with --expect. With --record the microphone runs for exactly that long (the time limit).
        if file is not None or expect is not None:
            raise fail("--challenge only prints a new challenge: check the recorded answer with "
                       f"`idme verify --name {name} --expect DIGITS FILE`", code=2)
        from ..identity.replay import new_challenge

        digits = new_challenge()
        if record is not None:
            idme = make_idme(home, embedder, compute)
            samples = _record_answer(digits, record, device)
            result = idme.verify(name, samples, sample_rate=16000, expect=digits)
            _finish(result, as_json, lambda c: _print_verify(c, name))
            return
        typer.echo(json.dumps({"name": name, "challenge": digits}) if as_json else digits)
        typer.echo(f"say these digits, record them, then run `idme verify --name {name} --expect {digits} "
                   "ANSWER.wav`", err=True)
        return
    if record is not None:
        raise fail("--record records the answer to a --challenge: use both", code=2)
    if file is None:
        raise fail("missing FILE: the recording to verify (or --challenge for a new challenge)", code=2)
    result = make_idme(home, embedder, compute).verify(name, file, expect=expect)
    _finish(result, as_json, lambda c: _print_verify(c, name))


def _record_answer(digits: str, seconds: float, device: str | None):
    """Shows ``digits`` on stderr and records ``seconds`` of microphone audio (the time limit for the answer,
    counted in samples): float32 (n,) at 16 kHz."""
    from ..audio import sources

    mic = sources.MicrophoneSource(device=device)  # a missing microphone is reported before the prompt
    err = Console(stderr=True)
    err.print(f"say these digits now, within {seconds:.0f} s: [bold]{' '.join(digits)}[/]", markup=True)
    samples = mic.record(seconds)
    err.print("recorded.", markup=False)
    return samples


def _print_verify(c: Check, name: str) -> None:
    """The human-readable verify result (a table on stdout)."""
    who = "you (Me)" if c.name == "me" else c.name
    verdict = "[bold green]ACCEPT[/]" if c.decision == ACCEPT else "[bold red]REJECT[/]"
    t = Table(show_header=False, box=None)
    if c.decision in ("replay", "wrong_content"):
        t.add_row("decision", f"[bold red]{c.decision.upper()}[/]: {escape(c.reason)}")
    else:
        t.add_row("decision", f"{verdict}: {'is' if c.decision == ACCEPT else 'is not'} {who}")
    if c.score is not None:
        t.add_row("score", _score(c.score, c.threshold, c))
    if getattr(c, "expected", None) is not None:
        heard = "not checked" if c.heard is None else f"heard {c.heard_digits or '-'} ({c.heard!r})"
        t.add_row("content", escape(f"asked {c.expected}, {heard}"))
    if getattr(c, "replay_score", None) is not None:
        t.add_row("replay", f"closest earlier recording {c.replay_of} at {c.replay_score:.2f} "
                  f"(replay at >= {c.replay_threshold:.2f})")
    t.add_row("audio", _condition(c))
    Console().print(t, markup=True, highlight=False)


@cli_errors
def identify(
    file: Path = _FILE_ARG,
    top: int = typer.Option(5, "--top", "-k", min=1, max=MAX_TOP, help=f"Candidates to list (at most {MAX_TOP})."),
    gallery: Optional[str] = typer.Option(None, "--gallery", help="Search the PostgreSQL + pgvector gallery at "
                                          "this URL (filled by `idme profiles migrate --to URL`) instead of "
                                          "the local profiles."),
    table: str = typer.Option(_DEFAULT_TABLE, "--table", help="The gallery's table (with --gallery)."),
    as_json: bool = _JSON_OPT,
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Identify (1:N, open set) who among the enrolled profiles speaks in FILE, or nobody."""
    if gallery is None and table != _DEFAULT_TABLE:
        raise typer.BadParameter("--table goes with --gallery", param_hint="--table")
    idme = make_idme(home, embedder, compute)
    if gallery is None:
        result = idme.identify(file, top=top)
    else:
        with idme.open_gallery(gallery, table) as pg:
            result = idme.identify(file, top=top, gallery=pg)

    def human(c: Check) -> None:
        con = Console()
        if c.decision == ACCEPT:
            con.print(f"[bold green]{'you (Me)' if c.name == 'me' else c.name}[/] "
                      f"({_score(c.score, c.threshold, c)})")
        else:
            con.print("[bold yellow]nobody enrolled[/] matches this voice")
        cal = c.calibrated
        t = Table("#", "profile", "LLR" if cal else "score", "threshold", *(["cosine"] if cal else []), "passes")
        for i, m in enumerate(c.candidates, 1):
            t.add_row(str(i), "Me" if m.name == "me" else m.name, f"{m.score:.3f}", f"{m.threshold:.3f}",
                      *([f"{m.cosine:.3f}"] if cal else []), "yes" if m.accepted else "no")
        con.print(t)
        con.print(f"audio: {_condition(c)}", markup=False, highlight=False)
        if cal:
            con.print(f"gallery: {c.gallery_size} profile(s); the threshold rises with the gallery (LLR "
                      f"{c.base_threshold:.2f} + ln {c.gallery_size} = {c.threshold:.2f}) so that false matches of "
                      f"people not enrolled stay about {c.expected_fpir:.2%}", markup=False, highlight=False)
        else:
            con.print(f"gallery: {c.gallery_size} profile(s); false matches of people not enrolled grow about "
                      f"{c.gallery_size} x FAR (~{c.expected_fpir:.2%})", markup=False, highlight=False)

    _finish(result, as_json, human)
