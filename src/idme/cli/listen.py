"""``idme listen`` (the live view or JSON Lines) and ``idme devices``."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import AudioError
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, make_idme


@contextlib.contextmanager
def stop_on_signals(stop, abort) -> Iterator[list[int]]:
    """Ctrl+C / SIGTERM: the first calls ``stop()`` (everything heard is labelled and saved), the second
    ``abort()`` (end now, keep what was decided). Yields the signals received.

    A handler that only sets a flag cannot land in the middle of a sink call, where Python's default
    KeyboardInterrupt would lose a segment already printed but not yet committed. The previous handlers are
    restored on exit (``listen`` may run inside another program, e.g. a test).
    """
    received: list[int] = []

    def handler(signum, _frame) -> None:
        received.append(signum)
        if len(received) == 1:
            err.print("stopping: finishing what was heard (Ctrl+C again to end now)", markup=False)
            stop()
        elif len(received) == 2:
            err.print("aborting: keeping what was already decided", markup=False)
            abort()

    old = {}
    for sig in (signal.SIGINT, getattr(signal, "SIGTERM", None)):
        if sig is None:
            continue
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: keep the default behaviour
            pass
    try:
        yield received
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


@cli_errors
def listen(
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Label a recording instead of the microphone."),
    realtime: bool = typer.Option(False, "--realtime", help="Play --file through the live path at real-time speed."),
    speed: float = typer.Option(1.0, "--speed", min=0.1, max=100.0, help="Playback speed for --realtime."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per labelled segment."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name); see `idme devices`."),
    asr: Optional[str] = typer.Option(None, "--asr", help="Transcription: auto, vosk, whisper or none "
                                      "(default $IDME_ASR or auto)."),
    asr_model: Optional[Path] = typer.Option(None, "--asr-model", help="Path of a Vosk or Whisper model directory."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not record this session in the store."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Label who is speaking (Me / enrolled / Speaker N), live from the microphone or from a file."""
    from ..sinks import JsonLinesSink
    from .console import LiveView

    if realtime and file is None:
        raise AudioError("--realtime plays a recording: add --file PATH")
    if file is not None and device is not None:
        raise AudioError("--device is for the microphone; drop it when labelling --file")
    idme = make_idme(home, embedder, compute, asr, asr_model)
    view = None
    if as_json:
        sinks = [JsonLinesSink(sys.stdout)]
    else:
        view = LiveView(Console(), "idme")
        sinks = [view]
    session = idme.open_live(file=file, realtime=realtime, speed=speed, device=device, sinks=sinks,
                             save=not no_save)
    for note in session.notes:
        err.print(note, markup=False)
    if view is not None:
        view.title = f"idme · {getattr(session.source, 'description', file or 'microphone')}" + (
            "" if session.session_id is None else f" · session {session.session_id}")
    with stop_on_signals(session.stop, session.abort):
        if view is not None:
            with view:
                result = session.run()
        else:
            result = session.run()
    if not result.latest:
        err.print("no speech found.", markup=False)
    if result.session_id is not None:
        err.print(f"session {result.session_id} saved; export it with "
                  f"`idme transcript --session {result.session_id} --out meeting.md`", markup=False)


@cli_errors
def devices() -> None:
    """List audio input devices (index, name, channels, default rate)."""
    from ..audio.sources import list_devices

    devs = list_devices()
    if not devs:
        raise AudioError("no audio input device found; plug in a microphone")
    t = Table("index", "name", "channels", "rate (Hz)", "default")
    for d in devs:
        t.add_row(str(d.index), d.name, str(d.max_input_channels), str(d.default_samplerate),
                  "✓" if d.is_default else "")
    Console().print(t)
