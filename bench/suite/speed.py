"""File-mode processing cost: seconds per stage per second of audio, and the real-time factor, through the
Pipeline with a FileSource and the transcriber ``make_transcriber`` returns (what ``idme listen --file`` runs).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from idme.audio import FileSource
from idme.embed.base import Embedder
from idme.errors import IdmeError
from idme.identity.profiles import Profile
from idme.identity.thresholds import Thresholds
from idme.transcribe.base import Transcriber
from idme.transcribe.select import make_transcriber

from .sessions import Meeting, SessionRun, run_session

log = logging.getLogger(__name__)

#: StageTimes fields, in pipeline order, with the names the report prints.
STAGES: dict[str, str] = {
    "read_resample": "read + resample",
    "vad": "VAD",
    "change_split": "speaker-change split",
    "embed": "embedding",
    "decide": "FAISS decision",
    "asr": "ASR",
}


@dataclass
class Recogniser:
    """A loaded ``--asr`` choice, shared by the file-mode and live measurements."""

    #: The ``--asr`` value: "none", "whisper" or "vosk".
    asr: str
    #: What ``make_transcriber(asr)`` returned (None for "none" or when unavailable).
    transcriber: Transcriber | None = None
    #: Seconds ``transcriber.load()`` took (model read from disk), measured once, before any session.
    load_s: float | None = None
    #: Why it could not be measured ("" when it can).
    skipped: str = ""
    #: Caveat printed next to its numbers.
    note: str = ""

    @property
    def model(self) -> str | None:
        return getattr(self.transcriber, "version", None)

    @property
    def language(self) -> str | None:
        return getattr(self.transcriber, "language", None)

    @property
    def label(self) -> str:
        if self.asr == "none":
            return "labels only"
        model = (self.model or "").split(";")[0]  # "tiny.en; faster-whisper 1.2.1; ..." -> "tiny.en"
        name = model if model.lower().startswith(self.asr) else f"{self.asr} {model}".strip()
        return name + (f" ({self.language})" if self.language else "")


def open_recogniser(asr: str) -> Recogniser:
    """Builds and loads the transcriber for ``--asr asr``; a missing model is a skip, not a crash."""
    if asr == "none":
        return Recogniser(asr)
    try:
        transcriber, hint = make_transcriber(asr)
    except IdmeError as exc:
        return Recogniser(asr, skipped=str(exc))
    if transcriber is None:
        return Recogniser(asr, skipped=hint or "no model")
    load = getattr(transcriber, "load", None)  # optional in the Transcriber protocol
    t0 = time.perf_counter()
    if callable(load):
        load()
    rec = Recogniser(asr, transcriber, time.perf_counter() - t0)
    if rec.language not in (None, "en", "multi"):
        # The only Vosk model available offline is Korean: on English speech it writes nonsense, so its
        # numbers say how fast Vosk is, not how well it transcribes.
        rec.note = f"{rec.language} model on English speech: speed only, the text is meaningless"
    return rec


@dataclass(frozen=True)
class FileRun:
    """One meeting labelled in file mode."""

    meeting: str
    audio_s: float
    wall_s: float
    #: StageTimes field -> seconds.
    stage_s: dict[str, float]
    final_segments: int
    text_segments: int

    def to_dict(self) -> dict:
        return {"meeting": self.meeting, "audio_s": round(self.audio_s, 3), "wall_s": round(self.wall_s, 3),
                "rtf": round(self.wall_s / self.audio_s, 4),
                "stage_ms_per_audio_s": {k: round(1000 * v / self.audio_s, 3) for k, v in self.stage_s.items()},
                "final_segments": self.final_segments, "text_segments": self.text_segments}


@dataclass
class FileModeResult:
    """File mode with one ``--asr`` choice over a set of meetings."""

    asr: str
    label: str
    model: str | None
    load_s: float | None
    note: str = ""
    skipped: str = ""
    runs: list[FileRun] = field(default_factory=list)

    @property
    def audio_s(self) -> float:
        return sum(r.audio_s for r in self.runs)

    @property
    def wall_s(self) -> float:
        return sum(r.wall_s for r in self.runs)

    @property
    def rtf(self) -> float:
        """Wall seconds per second of audio over all meetings (pooled)."""
        return self.wall_s / self.audio_s if self.runs else float("nan")

    def stage_ms_per_s(self) -> dict[str, float]:
        """Stage -> milliseconds of compute per second of audio, pooled over the meetings."""
        return {k: 1000 * sum(r.stage_s[k] for r in self.runs) / self.audio_s for k in STAGES} if self.runs else {}

    def subset(self, meetings: set[str]) -> FileModeResult:
        """The same configuration restricted to ``meetings`` (to compare stages on equal audio)."""
        return dataclasses.replace(self, runs=[r for r in self.runs if r.meeting in meetings])

    def per_meeting_ms_per_s(self, stage: str) -> list[float]:
        return [1000 * r.stage_s[stage] / r.audio_s for r in self.runs]

    def to_dict(self) -> dict:
        return {"asr": self.asr, "label": self.label, "model": self.model, "note": self.note,
                "skipped": self.skipped or None,
                "load_s": None if self.load_s is None else round(self.load_s, 3),
                "meetings": [r.meeting for r in self.runs], "audio_s": round(self.audio_s, 3),
                "wall_s": round(self.wall_s, 3), "rtf": round(self.rtf, 4) if self.runs else None,
                "stage_ms_per_audio_s": {k: round(v, 3) for k, v in self.stage_ms_per_s().items()},
                "runs": [r.to_dict() for r in self.runs]}


def measure_file_mode(rec: Recogniser, meetings: Sequence[Meeting], embedder: Embedder,
                      profiles: dict[str, list[Profile]], thresholds: Thresholds,
                      ) -> tuple[FileModeResult, dict[str, SessionRun]]:
    """Labels each meeting in file mode with ``rec``'s transcriber; returns the costs and the sessions
    (their events are what the quality section scores)."""
    result = FileModeResult(rec.asr, rec.label, rec.model, rec.load_s, rec.note, rec.skipped)
    sessions: dict[str, SessionRun] = {}
    if rec.skipped:
        log.warning("file mode with --asr %s skipped: %s", rec.asr, rec.skipped)
        return result, sessions
    for m in meetings:
        run = run_session(FileSource(m.wav), embedder, profiles[m.name], thresholds, transcriber=rec.transcriber)
        sessions[m.name] = run
        stage_s = {k: float(getattr(run.times, k)) for k in STAGES}
        result.runs.append(FileRun(m.name, run.audio_s, run.wall_s, stage_s, len(run.final_ids), len(run.texted)))
        log.info("file mode, %s, %s: %.1f s of audio in %.1f s (RTF %.3f)", rec.label, m.name, run.audio_s,
                 run.wall_s, run.rtf)
    return result, sessions
