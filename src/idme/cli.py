"""The ``idme`` command line: parses options, calls the library, maps errors to one line and an exit code.

stdout carries data only (``--json`` JSON Lines, exports to ``-``); logs, progress and hints go to stderr.
Exit codes: 0 ok, 1 runtime error (one line, no traceback unless IDME_DEBUG=1), 2 usage error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from . import __version__
from .errors import AudioError, EnrollmentError, IdmeError, ProfileError
from .eval.commands import eval_app

log = logging.getLogger("idme")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="idme: who said what, live and local. Labels speech as Me, people you enrolled, "
                       "or new speakers, and transcribes it.")
profiles_app = typer.Typer(no_args_is_help=True, help="List, inspect, rename and delete enrolled profiles.")
sessions_app = typer.Typer(no_args_is_help=True, help="List, inspect and delete recorded sessions.")
models_app = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                         help="Show installed models, or download them.")
app.add_typer(profiles_app, name="profiles")
app.add_typer(sessions_app, name="sessions")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")

err = Console(stderr=True, highlight=False, soft_wrap=True)
HOME_OPT = typer.Option(None, "--home", help="Data store directory (default $IDME_HOME or the user data dir).")
EMBEDDER_OPT = typer.Option(None, "--embedder", help="Speaker encoder: campplus (bundled) or ecapa "
                                                     "(default $IDME_EMBEDDER or campplus).")
DEVICE_OPT = typer.Option("cpu", "--compute", help="Where the ECAPA encoder runs: cpu or cuda.")


# -- plumbing -----------------------------------------------------------------------------------------
def _setup_logging(verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    handler = RichHandler(console=err, show_path=False, show_time=False, markup=False)
    logging.basicConfig(level=level, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("idme").setLevel(logging.DEBUG if verbose else logging.WARNING)


def _print_version(value: bool) -> None:
    # Eager: click checks for a missing subcommand before the group callback runs, so `idme --version`
    # must print and exit while the options are parsed.
    if value:
        typer.echo(f"idme {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging on stderr."),
          version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    _setup_logging(verbose)


def _fail(message: str, code: int = 1) -> "typer.Exit":
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    return typer.Exit(code)


def main() -> None:
    """Console-script entry point: every IdmeError becomes one line on stderr and exit code 1."""
    try:
        app(standalone_mode=True)
    except IdmeError as exc:
        if os.environ.get("IDME_DEBUG"):
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)


def _run(fn):
    """Runs a command body, turning IdmeError/OSError into one line + exit 1 (CliRunner sees it too)."""
    try:
        return fn()
    except typer.Exit:
        raise
    except IdmeError as exc:
        if os.environ.get("IDME_DEBUG"):
            raise
        raise _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    except OSError as exc:
        if os.environ.get("IDME_DEBUG"):
            raise
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        raise _fail(f"{exc.strerror or exc}{where}") from None


def _embedder(name: str | None, device: str = "cpu"):
    from .embed import make_embedder

    return make_embedder(name or os.environ.get("IDME_EMBEDDER") or "campplus", device)


def _home(home: Path | None) -> Path:
    from .paths import home_dir

    return home_dir(home)


# -- enroll -------------------------------------------------------------------------------------------
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
    from .audio.sources import MicrophoneSource

    # Find the device first: a missing microphone is reported at once, not after the prompt and countdown.
    mic = MicrophoneSource(device=device)
    err.print(f"\n[bold]Take {index}/{total}[/]: read this aloud in your normal voice:", markup=True)
    err.print(f"  [italic]{_PROMPTS[(index - 1) % len(_PROMPTS)]}[/]", markup=True)
    for n in (3, 2, 1):
        err.print(f"  starting in {n}…", markup=False)
        time.sleep(1)
    err.print("  [bold red]● recording[/]", markup=True)
    parts, need = [], int(seconds * 16000)
    with mic:
        got = 0
        for frame in mic.frames():
            parts.append(frame.samples)
            got += len(frame.samples)
            if got >= need:
                mic.stop()
    err.print("  done.", markup=False)
    return (np.concatenate(parts)[:need] if parts else np.zeros(0, np.float32)), mic.native_rate


@app.command()
def enroll(
    name: str = typer.Option("me", "--name", "-n", help="Profile to enrol into; 'me' is you, the owner."),
    files: list[Path] = typer.Option([], "--file", "-f", help="Enrollment recording(s); repeat for several takes."),
    takes: int = typer.Option(3, "--takes", min=1, max=10, help="Microphone takes to record."),
    seconds: float = typer.Option(6.0, "--seconds", min=2.0, max=60.0, help="Length of each microphone take."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name)."),
    keep_audio: bool = typer.Option(False, "--keep-audio", help="Keep the enrollment audio (0600) so the "
                                    "profile can be re-embedded with another encoder later."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: str = DEVICE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Enrol a voice: from files (--file) or from the microphone (--takes K --seconds S)."""

    def body() -> None:
        import soundfile as sf

        from .identity.enroll import enroll as do_enroll
        from .identity.profiles import ProfileStore, check_name
        from .identity.thresholds import load

        profile_name = check_name(name)
        store_home = _home(home)
        emb = _embedder(embedder, compute)
        store = ProfileStore(store_home)
        rates: list[int] = []
        if files:
            from .identity.enroll import read_takes

            take_audio, rates = read_takes(files)
        else:
            take_audio = []
            for i in range(1, takes + 1):
                for attempt in range(3):
                    samples, rate = _record_take(device, seconds, i, takes)
                    try:
                        from .identity.enroll import check_take

                        check_take(samples, f"take {i}")
                        break
                    except EnrollmentError as exc:
                        err.print(f"[yellow]{exc}[/]", markup=True)
                        if attempt == 2:
                            raise
                take_audio.append((f"take {i}", samples))
                rates.append(rate)
        profile, reports = do_enroll(store, emb, profile_name, take_audio, load(emb.name, store_home),
                                     native_rates=rates or None)
        if keep_audio:
            adir = store.audio_dir(profile.name)
            start = len(list(adir.glob("*.wav")))
            for k, (_, samples) in enumerate(take_audio):
                path = adir / f"take_{start + k + 1:03d}.wav"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    sf.write(f, samples, 16000, format="WAV", subtype="PCM_16")
        for r in reports:
            err.print(f"  ✓ {r.source}: {r.speech_s:.1f} s of speech, level {r.level_dbfs:.0f} dBFS", markup=False)
        who = "you (Me)" if profile.name == "me" else profile.name
        err.print(f"[green]Enrolled {who}[/]: {len(profile.embeddings)} take(s) with {emb.name}.", markup=True)

    _run(body)


# -- listen -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _stop_on_signals(stop) -> Iterator[list[int]]:
    """Ctrl+C and SIGTERM end a session normally: the first one calls ``stop()`` (the source stops, and
    everything already heard is labelled, saved and printed), a second one aborts. Yields the signals
    received.

    A handler that only sets a flag, instead of Python's default KeyboardInterrupt, cannot land in the
    middle of a sink call, where it would lose a segment already printed but not yet committed. The
    previous handlers are restored on exit (``listen`` may run inside another program, e.g. a test).
    """
    received: list[int] = []

    def handler(signum, _frame) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        stop()

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


@app.command()
def listen(
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="Label a recording instead of the microphone."),
    realtime: bool = typer.Option(False, "--realtime", help="Play --file through the live path at real-time speed."),
    speed: float = typer.Option(1.0, "--speed", min=0.1, max=100.0, help="Playback speed for --realtime."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout, one object per labelled segment."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="Input device (index or name); see `idme devices`."),
    asr: str = typer.Option("auto", "--asr", help="Transcription: auto, vosk, whisper or none."),
    asr_model: Optional[Path] = typer.Option(None, "--asr-model", help="Path of a Vosk or Whisper model directory."),
    no_save: bool = typer.Option(False, "--no-save", help="Do not record this session in the store."),
    embedder: Optional[str] = EMBEDDER_OPT,
    compute: str = DEVICE_OPT,
    home: Optional[Path] = HOME_OPT,
) -> None:
    """Label who is speaking (Me / enrolled / Speaker N), live from the microphone or from a file."""

    def body() -> None:
        from .audio.sources import open_source
        from .console import LiveView
        from .identity.profiles import ProfileStore, check_encoder
        from .identity.thresholds import load
        from .identity.tracker import SpeakerTracker
        from .pipeline import Labeller, LabelOptions, Pipeline
        from .session.store import SessionStore
        from .transcribe.select import make_transcriber

        if realtime and file is None:
            raise AudioError("--realtime plays a recording: add --file PATH")
        if file is not None and device is not None:
            raise AudioError("--device is for the microphone; drop it when labelling --file")
        store_home = _home(home)
        emb = _embedder(embedder, compute)
        encoder = {"name": emb.name, "version": emb.version, "dimension": emb.dimension}
        pstore = ProfileStore(store_home)
        profiles = pstore.all()
        if not any(p.name == "me" for p in profiles):
            raise ProfileError("no enrolled owner: run `idme enroll` (microphone) or `idme enroll --file me.wav` first")
        for p in profiles:
            check_encoder(p, encoder)
        source = open_source(file=file, realtime=realtime, device=device, **({"speed": speed} if realtime else {}))
        live = file is None or realtime
        transcriber, hint = make_transcriber(asr, asr_model)
        if hint:
            err.print(hint, markup=False)
        th = load(emb.name, store_home)
        options = LabelOptions()
        from .identity.profiles import NARROWBAND_MAX_HZ

        narrowband = getattr(source, "native_rate", 16000) <= NARROWBAND_MAX_HZ
        tracker = SpeakerTracker(profiles, emb.dimension, th, narrowband=narrowband)
        labeller = Labeller(emb, tracker, options, live=live)
        models = {"encoder": encoder,
                  "asr": None if transcriber is None else {"name": transcriber.name, "version": transcriber.version,
                                                           "language": getattr(transcriber, "language", None)}}
        settings = {"source": getattr(source, "description", str(file or device or "microphone")),
                    "realtime": realtime, "live": live, "thresholds": th.__dict__, "narrowband": narrowband,
                    "vad": options.vad.__dict__, "fill_gap_s": options.fill_gap_s,
                    "profiles": [p.name for p in profiles]}
        sstore = None if no_save else SessionStore(store_home)
        writer = None if sstore is None else sstore.create(settings, models, source=settings["source"])
        out = sys.stdout
        sink_errors: list[BaseException] = []

        def save(ev) -> None:
            if writer is not None and ev.final:
                writer.upsert_segment({**ev.to_dict(), "seg_id": ev.id, "words": ev.words})

        def guarded(emit):
            # A failing sink (disk full, stdout closed) must not escape Pipeline.run: its threads would
            # still be running (onnxruntime aborts the process when the interpreter exits under it).
            # Stop listening instead, let the pipeline drain and join, and report the error afterwards.
            def sink(ev) -> None:
                if sink_errors:
                    return
                try:
                    emit(ev)
                except Exception as exc:
                    sink_errors.append(exc)
                    pipeline.stop()
            return sink

        if as_json:
            def emit(ev) -> None:
                out.write(json.dumps(ev.to_dict(), ensure_ascii=False) + "\n")
                out.flush()
                save(ev)
            view = None
        else:
            title = f"idme · {settings['source']}" + ("" if writer is None else f" · session {writer.session_id}")
            view = LiveView(Console(), title)

            def emit(ev) -> None:
                view(ev)
                save(ev)

        pipeline = Pipeline(source, labeller, guarded(emit), transcriber=transcriber,
                            on_speakers=None if writer is None else guarded(writer.save_speakers))
        status = "complete"
        try:
            with _stop_on_signals(pipeline.stop) as signals:
                if view is not None:
                    with view:
                        pipeline.run()
                else:
                    pipeline.run()
            if signals:
                status = "interrupted"
        except KeyboardInterrupt:
            status = "interrupted"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            try:
                if writer is not None:
                    try:
                        if sink_errors:  # best effort: the store may be what failed
                            with contextlib.suppress(IdmeError):
                                writer.finish("interrupted", duration_s=labeller.times.audio_s or None)
                        else:
                            writer.save_speakers(labeller.speakers())
                            writer.finish(status, duration_s=labeller.times.audio_s or None)
                    finally:
                        writer.close()
            finally:
                source.close()
        if sink_errors:
            raise sink_errors[0]
        if not pipeline.latest:
            err.print("no speech found.", markup=False)
        if writer is not None:
            err.print(f"session {writer.session_id} saved; export it with "
                      f"`idme transcript --session {writer.session_id} --out meeting.md`", markup=False)

    _run(body)


@app.command()
def devices() -> None:
    """List audio input devices (index, name, channels, default rate)."""

    def body() -> None:
        from .audio.sources import list_devices

        devs = list_devices()
        if not devs:
            raise AudioError("no audio input device found; plug in a microphone")
        t = Table("index", "name", "channels", "rate (Hz)", "default")
        for d in devs:
            t.add_row(str(d.index), d.name, str(d.max_input_channels), str(d.default_samplerate),
                      "✓" if d.is_default else "")
        Console().print(t)

    _run(body)


# -- profiles -----------------------------------------------------------------------------------------
@profiles_app.command("list")
def profiles_list(as_json: bool = typer.Option(False, "--json"), home: Optional[Path] = HOME_OPT) -> None:
    """List enrolled profiles."""

    def body() -> None:
        from .identity.profiles import ProfileStore

        profs = ProfileStore(_home(home)).all()
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

    _run(body)


@profiles_app.command("show")
def profiles_show(name: str, home: Optional[Path] = HOME_OPT) -> None:
    """Show one profile (takes, encoder, quality); never the voiceprint itself."""

    def body() -> None:
        from .identity.profiles import ProfileStore

        p = ProfileStore(_home(home)).get("me" if name.lower() == "me" else name)
        typer.echo(json.dumps(p.to_dict(), indent=1))

    _run(body)


@profiles_app.command("rename")
def profiles_rename(old: str, new: str, home: Optional[Path] = HOME_OPT) -> None:
    """Rename a profile."""
    _run(lambda: (__import__("idme.identity.profiles", fromlist=["ProfileStore"]).ProfileStore(_home(home)).rename(old, new),
                  err.print(f"renamed {old} to {new}", markup=False)))


@profiles_app.command("rm")
def profiles_rm(name: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
                home: Optional[Path] = HOME_OPT) -> None:
    """Delete a profile: its voiceprints, metadata and any kept audio."""

    def body() -> None:
        from .identity.profiles import ProfileStore

        store = ProfileStore(_home(home))
        if not store.exists(name):
            raise ProfileError(f"no profile '{name}'; see `idme profiles list`")
        if not yes and sys.stdin.isatty() and not typer.confirm(f"Delete profile {name} and its voiceprints?"):
            raise typer.Exit(1)
        store.remove(name)
        err.print(f"deleted profile {name}", markup=False)

    _run(body)


@profiles_app.command("reembed")
def profiles_reembed(name: Optional[str] = typer.Argument(None, help="Profile (default: all with kept audio)."),
                     embedder: Optional[str] = EMBEDDER_OPT, compute: str = DEVICE_OPT,
                     home: Optional[Path] = HOME_OPT) -> None:
    """Re-embed profiles from their kept enrollment audio with the current encoder."""

    def body() -> None:
        from .audio.sources import read_audio
        from .identity.enroll import check_take
        from .identity.profiles import Profile, ProfileStore

        store = ProfileStore(_home(home))
        emb = _embedder(embedder, compute)
        names = [name] if name else store.names()
        done = 0
        for n in names:
            p = store.get(n)
            wavs = sorted((store.root / n / "audio").glob("*.wav"))
            if not wavs:
                if name:
                    raise ProfileError(f"profile '{n}' has no kept audio; enrol again with "
                                       f"`idme enroll --name {n} --keep-audio`")
                continue
            embs = [emb.embed(check_take(read_audio(w), str(w))[0]) for w in wavs]
            store.save(Profile(n, {"name": emb.name, "version": emb.version, "dimension": emb.dimension},
                               np.stack(embs), p.takes, p.created_at))
            done += 1
            err.print(f"re-embedded {n}: {len(embs)} take(s) with {emb.name} {emb.version}", markup=False)
        if not done:
            err.print("no profile has kept audio (enrol with --keep-audio)", markup=False)

    _run(body)


# -- sessions, naming, transcripts --------------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(as_json: bool = typer.Option(False, "--json"), home: Optional[Path] = HOME_OPT) -> None:
    """List recorded sessions."""

    def body() -> None:
        from .session.store import SessionStore

        rows = SessionStore(_home(home)).list()
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

    _run(body)


@sessions_app.command("show")
def sessions_show(session: str = typer.Argument("latest"), home: Optional[Path] = HOME_OPT) -> None:
    """Show a session (settings, models, speakers, segments) as JSON."""

    def body() -> None:
        from .session.store import SessionStore

        typer.echo(json.dumps(SessionStore(_home(home)).get(session).to_dict(), indent=1, ensure_ascii=False))

    _run(body)


@sessions_app.command("rm")
def sessions_rm(session: str, home: Optional[Path] = HOME_OPT) -> None:
    """Delete a session: its segments, text and speaker embeddings."""

    def body() -> None:
        from .session.store import SessionStore

        store = SessionStore(_home(home))
        sid = store.get(session).id
        store.delete(sid)
        err.print(f"deleted session {sid}", markup=False)

    _run(body)


@app.command()
def name(session: str = typer.Argument(..., help="Session id (or 'latest')."),
         speaker: str = typer.Argument(..., help='The unknown speaker, e.g. "Speaker 2".'),
         person: str = typer.Argument(..., help="Name for the new profile, e.g. alice."),
         home: Optional[Path] = HOME_OPT) -> None:
    """Turn an unknown speaker of a session into an enrolled profile, and relabel the session."""

    def body() -> None:
        from .identity.profiles import ProfileStore, check_name
        from .session.store import SessionStore

        person_name = check_name(person)
        store_home = _home(home)
        sstore = SessionStore(store_home)
        sess = sstore.get(session)
        embs = sstore.speaker_embeddings(sess.id, speaker)
        if embs is None or len(embs) == 0:
            raise ProfileError(f"session {sess.id} has no voice samples for '{speaker}'; "
                               f"see `idme sessions show {sess.id}`")
        encoder = dict(sess.models.get("encoder") or {})
        ProfileStore(store_home).add(person_name, np.asarray(embs, np.float32), encoder,
                                     [{"source": f"named from {speaker} of a session", "segments": int(len(embs))}])
        n = sstore.rename_speaker(sess.id, speaker, person_name, kind="me" if person_name == "me" else "enrolled")
        err.print(f"{speaker} is now {person_name}: {n} segment(s) relabelled; idme will recognise "
                  f"{person_name} in later sessions.", markup=False)

    _run(body)


@app.command()
def transcript(session: str = typer.Option("latest", "--session", "-s", help="Session id or 'latest'."),
               out: str = typer.Option(..., "--out", "-o", help="Output file, or - for stdout."),
               fmt: Optional[str] = typer.Option(None, "--format", help="md, txt, srt, vtt, json or rttm "
                                                 "(default: from the --out extension)."),
               home: Optional[Path] = HOME_OPT) -> None:
    """Export a session's transcript with its final speaker labels."""

    def body() -> None:
        from .session.export import write_export
        from .session.store import SessionStore

        sess = SessionStore(_home(home)).get(session)
        path = write_export(sess, out, fmt)
        if path is not None:
            err.print(f"wrote {path}", markup=False)

    _run(body)


# -- models -------------------------------------------------------------------------------------------
@models_app.callback()
def models_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the models idme knows: installed or not, path, size, version, licence, used by."""
    if ctx.invoked_subcommand is not None:
        return

    def body() -> None:
        from . import models

        rows = models.list_models()
        if as_json:
            typer.echo(json.dumps([r.to_dict() for r in rows]))
            return
        t = Table("model", "installed", "path", "size", "version", "licence", "used by")
        for r in rows:
            d = r.to_dict()
            size = d.get("size_bytes") or 0
            t.add_row(d.get("key", ""), "✓" if d.get("installed") else "✗", str(d.get("path", "")),
                      f"{size / 1e6:.1f} MB" if size else "", str(d.get("version", "")), str(d.get("licence", "")),
                      ", ".join(d.get("used_by", []) or []))
        Console().print(t)

    _run(body)


@models_app.command("download")
def models_download(only: list[str] = typer.Option([], "--only", help="campplus, ecapa, vosk or whisper; repeatable."),
                    from_path: Optional[Path] = typer.Option(None, "--from", help="Install from a directory or archive."),
                    timeout: float = typer.Option(15.0, "--timeout", help="Network timeout, seconds."),
                    force: bool = typer.Option(False, "--force")) -> None:
    """Download (or install --from a local copy) the models idme uses."""

    def body() -> None:
        from . import models
        from .progress import RichProgress

        try:
            specs = models.parse_keys(only or None)
        except ValueError as exc:
            raise _fail(str(exc), 2) from None
        if from_path is not None and len(specs) != 1:
            raise _fail("--from needs exactly one model: add --only <model>", 2)
        with RichProgress() as progress:
            results = models.ensure_models(specs, None, from_path, progress, timeout_s=timeout, force=force)
        for r in results:
            err.print(r.message, style="green" if r.ok else "bold red", markup=False)
        if not all(r.ok for r in results):
            raise typer.Exit(1)

    _run(body)


if __name__ == "__main__":
    main()
