"""``idme listen`` (the live view or JSON Lines, one or many recordings) and ``idme devices``."""

from __future__ import annotations

import contextlib
import glob
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import AudioError, IdmeError
from ..sinks import JsonLinesSink
from .common import COMPUTE_OPT, EMBEDDER_OPT, HOME_OPT, cli_errors, err, fail, make_idme

#: What a directory given to ``listen`` is searched for (lower-case extensions).
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".mp4", ".aac", ".webm", ".opus", ".mka",
                    ".aiff", ".aif")


@contextlib.contextmanager
def stop_on_signals(stop, abort, backlog: Callable[[], int] | None = None) -> Iterator[list[int]]:
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
            pending = backlog() if backlog is not None else 0
            what = f"labelling what was read and transcribing {pending} queued turn(s)" if pending else \
                "labelling what was read"
            err.print(f"stopping: {what} (Ctrl+C again to end now, keeping the labels)", markup=False)
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


def expand_inputs(items: list[str]) -> list[str]:
    """Recordings named on the command line: files as given, directories searched (not recursively) for
    audio files, glob patterns expanded (for shells that do not); "-" is standard input. Order kept, each
    file once."""
    out: list[str] = []
    for item in items:
        p = Path(item).expanduser()
        if item == "-":
            found = ["-"]
        elif p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
            if not found:
                raise AudioError(f"no audio files in directory '{item}' (looked for {', '.join(AUDIO_EXTENSIONS)})")
        elif any(ch in item for ch in "*?[") and not p.exists():
            found = sorted(glob.glob(str(p)))
            if not found:
                raise AudioError(f"no file matches '{item}'")
        else:
            found = [item]
        out += [f for f in found if f not in out]
    return out


def output_names(inputs: list[str]) -> dict[str, str]:
    """The export base name of each input: its stem ("meeting" for meeting.wav, the RTTM file id), with the
    parent directory's name in front when two inputs share a stem (meeting01_meeting, meeting02_meeting)."""
    stems = {i: ("stdin" if i == "-" else Path(i).stem) for i in inputs}
    clash = {s for s in stems.values() if list(stems.values()).count(s) > 1}
    return {i: (f"{Path(i).resolve().parent.name}_{s}" if s in clash else s) for i, s in stems.items()}


def parse_formats(value: str | None) -> list[str]:
    """``--format rttm,srt`` -> ["rttm", "srt"]; raises a usage error naming the valid formats."""
    from ..errors import ExportError
    from ..session.export import format_name

    if not value:
        return []
    try:
        return list(dict.fromkeys(format_name(f) for f in value.split(",") if f.strip()))
    except ExportError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None


class _Position:
    """The furthest point of the audio labelled so far (s), from the events (for the progress line)."""

    def __init__(self) -> None:
        self.end_s = 0.0

    def __call__(self, event) -> None:
        if event.final and event.end > self.end_s:
            self.end_s = event.end


_EXAMPLES = """

\b
Examples:
  idme listen                        # the microphone, live
  idme listen talk.m4a               # wav flac ogg mp3 m4a mp4 webm opus ...
  idme listen calls/ --out rttm/ --format rttm,srt
  idme listen meeting.wav --num-speakers 4 --json
  cat call.wav | idme listen - --out call.rttm
"""


@cli_errors
def listen(
    inputs: Optional[list[str]] = typer.Argument(None, metavar="RECORDING...", show_default=False,
                                                 help="Recordings to label, each its own session: files, "
                                                      "directories, globs, or - for standard input."),
    file: Optional[list[Path]] = typer.Option(None, "--file", "-f", metavar="PATH", show_default=False,
                                              help="A recording to label (repeatable; same as RECORDING)."),
    realtime: bool = typer.Option(False, "--realtime", help="Play the recording through the live path at real-time speed."),
    speed: Optional[float] = typer.Option(None, "--speed", min=0.1, max=100.0, metavar="X",
                                          help="Playback speed for --realtime (default 1)."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout: one object per event, typed "
                                 "(segment, text, relabel, end); schema in docs/schema/events.schema.json."),
    out: Optional[str] = typer.Option(None, "--out", "-o", metavar="PATH",
                                      help="Also export each session: a directory (one file per recording and "
                                           "format), a file such as talk.rttm (one recording), or - (stdout)."),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="FMT[,FMT]",
                                      help="Export formats for --out: md, txt, srt, vtt, json, rttm (default: "
                                           "from the --out extension, else rttm)."),
    num_speakers: Optional[int] = typer.Option(None, "--num-speakers", min=1, metavar="N",
                                               help="Exactly this many speakers (a hint to the final clustering)."),
    min_speakers: Optional[int] = typer.Option(None, "--min-speakers", min=1, metavar="N",
                                               help="At least this many speakers."),
    max_speakers: Optional[int] = typer.Option(None, "--max-speakers", min=1, metavar="N",
                                               help="At most this many speakers."),
    device: Optional[str] = typer.Option(None, "--device", "-d", metavar="DEVICE",
                                         help="Input device (index or name); see `idme devices`."),
    asr: Optional[str] = typer.Option(None, "--asr", metavar="ENGINE", help="Transcription: auto, vosk, whisper, "
                                      "moonshine or none (default $IDME_ASR or auto)."),
    asr_model: Optional[Path] = typer.Option(None, "--asr-model", metavar="DIR",
                                             help="Path of a Vosk or Whisper model directory."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not record the session in the store."),
    retention_days: Optional[float] = typer.Option(None, "--retention-days", min=0.001, metavar="DAYS",
                                                   help="Delete saved sessions older than DAYS before this one "
                                                        "starts (default: $IDME_RETENTION_DAYS or config.toml; "
                                                        "none: keep all)."),
    segmenter: str = typer.Option("webrtc", "--segmenter", metavar="NAME",
                                  help="webrtc (default) or pyannote (overlapping speakers; live with a "
                                       "rolling buffer, final labels --latency seconds after the speech)."),
    latency: Optional[float] = typer.Option(None, "--latency", min=0.5, max=5.0, metavar="SECONDS",
                                            help="With --segmenter pyannote: delay of final labels, 0.5-5 "
                                                 "(default 2; longer is more accurate)."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: Optional[str] = COMPUTE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Label who is speaking (Me / enrolled / Speaker N), live from the microphone or from recordings.

    Works with nobody enrolled too (speakers are then Speaker 1, 2, ...)."""
    items = expand_inputs(list(inputs or []) + [str(f) for f in (file or [])])
    formats = parse_formats(fmt)
    if num_speakers is not None:
        if min_speakers is not None or max_speakers is not None:
            raise typer.BadParameter("give --num-speakers alone, or --min-speakers/--max-speakers",
                                     param_hint="--num-speakers")
        min_speakers = max_speakers = num_speakers
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise typer.BadParameter(f"--min-speakers {min_speakers} is more than --max-speakers {max_speakers}",
                                 param_hint="--min-speakers")
    if realtime and not items:
        raise AudioError("--realtime plays a recording: add RECORDING or --file PATH")
    if speed is not None and not realtime:
        raise typer.BadParameter("--speed only applies with --realtime", param_hint="--speed")
    if items and device is not None:
        raise AudioError("--device is for the microphone; drop it when labelling a recording")
    if items.count("-") and realtime:
        raise AudioError("--realtime cannot play standard input; give a file")
    if segmenter != "webrtc":
        _check_segmented(segmenter)
    elif latency is not None:
        raise typer.BadParameter("--latency applies to --segmenter pyannote (webrtc labels within ~200 ms)",
                                 param_hint="--latency")
    plan = _export_plan(items, out, formats, no_save, as_json)
    if retention_days is not None and no_save:
        raise typer.BadParameter("--retention-days prunes the session store before saving: drop --no-save",
                                 param_hint="--retention-days")
    idme = make_idme(home, embedder, compute, asr, asr_model, retention_days)
    if not idme.profiles.exists("me"):
        err.print("note: no owner enrolled, so nobody is labelled Me (speakers are Speaker 1, 2, ...; enrolled "
                  "people by name); run `idme enroll` so idme can tell which voice is yours", markup=False)
    failed = 0
    for n, item in enumerate(items or [None]):
        try:
            stopped = _listen_one(idme, item, realtime, speed or 1.0, device, as_json, no_save, plan,
                                  min_speakers, max_speakers, batch=len(items) > 1, segmenter=segmenter,
                                  latency_s=2.0 if latency is None else latency)
        except IdmeError as exc:
            if len(items) <= 1:
                raise
            failed += 1
            err.print(f"error: {item}: {str(exc).splitlines()[0]}", markup=False)
            continue
        if stopped and n + 1 < len(items):
            err.print(f"stopped: {len(items) - n - 1} recording(s) not labelled", markup=False)
            break
    if failed:
        raise fail(f"{failed} of {len(items)} recording(s) could not be labelled (see above)")


def _export_plan(items: list[str], out: str | None, formats: list[str], no_save: bool,
                 as_json: bool) -> Callable[[str | None], list[tuple[str, str]]] | None:
    """Checks --out/--format and returns a function: input -> [(output path or "-", format)]; None without --out."""
    from ..session.export import EXPORT_FORMATS, format_name

    if out is None:
        if formats:
            raise typer.BadParameter("--format needs --out (a directory, a file or -)", param_hint="--format")
        return None
    if no_save:
        raise typer.BadParameter("--out exports the saved session: drop --no-save", param_hint="--out")
    if out == "-":
        if as_json:
            raise typer.BadParameter("--json already uses stdout; give --out a directory or a file", param_hint="--out")
        if len(items) > 1:
            raise typer.BadParameter("--out - takes one recording; give a directory for several", param_hint="--out")
        chosen = formats or ["txt"]
        return lambda item: [("-", f) for f in chosen]
    path = Path(out).expanduser()
    suffix = path.suffix.lstrip(".").lower()
    as_file = suffix in EXPORT_FORMATS or suffix in ("markdown", "text", "webvtt")
    if as_file and not path.is_dir():
        if len(items) > 1:
            raise typer.BadParameter(f"'{out}' is one file but {len(items)} recordings were given; "
                                     "give a directory to --out", param_hint="--out")
        if len(formats) > 1:
            raise typer.BadParameter("one output file takes one --format; give a directory to --out",
                                     param_hint="--out")
        chosen = formats[0] if formats else format_name(suffix)
        return lambda item: [(str(path), chosen)]
    if not items:
        raise typer.BadParameter("--out DIR labels recordings: name them (or give --out a file name)",
                                 param_hint="--out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot create directory '{out}': {exc.strerror or exc}", param_hint="--out") from None
    names = output_names(items)
    chosen = formats or ["rttm"]
    return lambda item: [(str(path / f"{names[item]}.{f}"), f) for f in chosen]


def _check_segmented(segmenter: str) -> None:
    """Usage checks for ``--segmenter pyannote``."""
    if segmenter != "pyannote":
        raise fail(f"--segmenter must be webrtc or pyannote, got {segmenter!r}", 2)


def _listen_one(idme, item: str | None, realtime: bool, speed: float, device: str | None, as_json: bool,
                no_save: bool, plan, min_speakers: int | None, max_speakers: int | None, batch: bool,
                segmenter: str = "webrtc", latency_s: float = 2.0) -> bool:
    """One session over ``item`` (None: the microphone); returns True when the user stopped it."""
    from .console import FileProgress, LiveView, progress_text

    stdout_used = plan is not None and any(p == "-" for p, _ in plan(item))
    position = _Position()
    view = None
    json_sink = None
    sinks: list = [position]
    if as_json:
        json_sink = JsonLinesSink(sys.stdout)
        sinks.append(json_sink)
    elif not stdout_used:
        view = LiveView(Console(), "idme")
        sinks.append(view)
    session = idme.open_live(file=item, realtime=realtime, speed=speed, device=device, sinks=sinks,
                             save=not no_save, require_owner=False, min_speakers=min_speakers,
                             max_speakers=max_speakers, segmenter=segmenter, latency_s=latency_s)
    for note in session.notes:
        err.print(note, markup=False)
    source = getattr(session.source, "description", item or "microphone")
    if json_sink is not None:
        json_sink.events.session_id = session.session_id
        json_sink.events.source = source
    pipeline = session.pipeline
    backlog = lambda: pipeline.pending_transcriptions  # noqa: E731
    total_s = getattr(session.source, "duration_s", None)
    file_mode = item is not None and not realtime
    progress = contextlib.nullcontext()
    if view is not None:
        view.title = f"idme · {source}" + ("" if session.session_id is None else f" · session {session.session_id}")
        view.expect_text = session.transcriber is not None
        if file_mode:
            view.status = lambda: progress_text(position.end_s, total_s, backlog(), 0.0)
    if file_mode and (view is None or not view.console.is_terminal):
        label = Path(item).name if item != "-" else "stdin"
        progress = FileProgress(err, label, total_s, lambda: position.end_s, backlog)
    with stop_on_signals(session.stop, session.abort, backlog) as received:
        with progress, (view if view is not None else contextlib.nullcontext()):
            result = session.run()
    if json_sink is not None:
        speakers = {e.speaker for e in result.latest.values() if e.final}
        json_sink.end(result.status, result.audio_s, speakers)
    if not result.latest:
        err.print(f"{item + ': ' if batch else ''}no speech found.", markup=False)
    if result.session_id is not None:
        if plan is not None:
            for path, f in plan(item):
                written = idme.export(result.session_id, path, f)
                if written is not None:
                    err.print(f"wrote {written}", markup=False)
        else:
            err.print(f"session {result.session_id} saved; export it with "
                      f"`idme transcript --session {result.session_id} --out meeting.md`", markup=False)
    return bool(received)


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


listen.__doc__ = (listen.__doc__ or "") + _EXAMPLES
