"""Meetings, enrolment and labelling sessions, built exactly as ``idme enroll`` / ``idme listen`` build them.

``run_session`` is the benchmark's one way to label audio: the :class:`idme.live.LiveSession` that
``idme listen`` and ``idme eval meetings`` run, over the given profiles, source and transcriber. Every
measurement of cost, quality and latency goes through it.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from idme.audio import AudioSource, read_audio
from idme.embed.base import Embedder
from idme.identity.enroll import enroll
from idme.identity.profiles import Profile, ProfileStore
from idme.identity.thresholds import Thresholds
from idme.live import LiveSession
from idme.pipeline import SegmentEvent, StageTimes
from idme.sinks import ListSink
from idme.transcribe.base import Transcriber


@dataclass(frozen=True)
class Meeting:
    """One ``meetings-dev/meetingNN`` folder: meeting.wav, reference.rttm, meta.json, enroll/*.wav."""

    #: Folder name ("meeting01").
    name: str
    path: Path
    #: meta.json: owner, named, speakers, noise_snr_db, duration_s, enroll.
    meta: dict

    @property
    def wav(self) -> Path:
        return self.path / "meeting.wav"

    @property
    def duration_s(self) -> float:
        return float(self.meta["duration_s"])

    def takes(self) -> dict[str, list[tuple[str, Path]]]:
        """Profile name ("me" or a ``named`` key) -> [(source label, enrolment file)]."""
        return {who: [(f, self.path / f) for f in files] for who, files in self.meta["enroll"].items()}


def load_meetings(root: Path) -> list[Meeting]:
    """Every ``root/meeting*/`` that has a meta.json, in name order."""
    meetings = [Meeting(d.name, d, json.loads((d / "meta.json").read_text(encoding="utf-8")))
                for d in sorted(root.glob("meeting*")) if (d / "meta.json").is_file()]
    if not meetings:
        raise FileNotFoundError(f"no meeting*/meta.json under {root}")
    return meetings


def shortest(meetings: Sequence[Meeting], n: int | None) -> list[Meeting]:
    """The ``n`` shortest meetings (all when n is None), in name order: the cheapest reproducible subset."""
    if n is None or n >= len(meetings):
        return list(meetings)
    picked = sorted(meetings, key=lambda m: m.duration_s)[:n]
    return sorted(picked, key=lambda m: m.name)


def enrol_people(takes: dict[str, list[tuple[str, Path]]], embedder: Embedder,
                 thresholds: Thresholds) -> list[Profile]:
    """Enrols every person (``enroll()`` with its quality gate) into a throw-away store; returns the profiles
    as ``ProfileStore.all()`` loads them for ``idme listen``."""
    with tempfile.TemporaryDirectory(prefix="idme-bench-") as home:
        store = ProfileStore(Path(home))
        for who, files in takes.items():
            enroll(store, embedder, who, [(src, read_audio(path)) for src, path in files], thresholds)
        return store.all()


@dataclass
class SessionRun:
    """What one Pipeline pass over a source produced."""

    #: Every event the sink received, in emission order (first labels, interims, corrections, text).
    events: list[SegmentEvent]
    #: Seconds per stage (the Labeller's counters; ``asr`` is the recogniser's compute time).
    times: StageTimes
    #: Wall-clock seconds of ``Pipeline.run``.
    wall_s: float
    #: Seconds of audio the Labeller consumed.
    audio_s: float
    #: Segment ids whose text arrived non-empty (recogniser runs only).
    texted: set[int] = field(default_factory=set)

    @property
    def rtf(self) -> float:
        """Real-time factor: wall seconds per second of audio (below 1 keeps up with speech)."""
        return self.wall_s / self.audio_s if self.audio_s else float("nan")

    @property
    def final_ids(self) -> set[int]:
        return {e.id for e in self.events if e.final}

    def write_jsonl(self, path: Path) -> Path:
        """The events as ``idme listen --json`` prints them (the scorer's input)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in self.events),
                        encoding="utf-8")
        return path


def run_session(source: AudioSource, embedder: Embedder, profiles: list[Profile], thresholds: Thresholds, *,
                transcriber: Transcriber | None = None, live: bool = False) -> SessionRun:
    """Labels ``source`` (an idme AudioSource) through the same :class:`idme.live.LiveSession` that
    ``idme listen`` runs (default LabelOptions, the narrow-band rule); closes the source."""
    sink = ListSink()
    session = LiveSession(source, embedder, profiles, thresholds, transcriber=transcriber, sinks=[sink], live=live)
    t0 = time.perf_counter()
    result = session.run()
    texted = {e.id for e in sink.events if e.text}
    return SessionRun(sink.events, result.times, time.perf_counter() - t0, result.audio_s, texted)
