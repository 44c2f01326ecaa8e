"""What a saved session reads back as: plain frozen dataclasses with ``to_dict()``, no SQLite in sight.

:class:`Session` (with its :class:`Segment`, :class:`Word` and :class:`SpeakerInfo`) is also what the
exporters take, so a session can be built by hand for them; :class:`SessionSummary` is one line of
``idme sessions list``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: Speaker kinds, in the order speakers are listed (owner first, then enrolled people, then unknowns).
KINDS = ("me", "enrolled", "unknown")
#: Session status values. "incomplete" is never stored: it is how a session whose writer died without
#: calling :meth:`~idme.session.store.SessionWriter.finish` is reported.
STATUSES = ("running", "complete", "interrupted", "incomplete")


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the session."""

    #: The word as the recogniser wrote it (Whisper words keep their leading space).
    word: str
    #: Start time, s.
    start: float
    #: End time, s.
    end: float
    #: Recogniser confidence in [0, 1], or None when it gives none.
    conf: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Segment:
    """One labelled speech segment with its latest label and transcript."""

    #: Identifier, unique within the session.
    seg_id: int
    #: Start time, s from the start of the session.
    start: float
    #: End time, s.
    end: float
    #: Display label: "Me", an enrolled name, or "Speaker N".
    speaker: str
    #: "me" | "enrolled" | "unknown".
    kind: str
    #: Score of the decision (cosine similarity to the chosen speaker).
    score: float
    #: False while the label is interim (a later re-clustering may change it).
    final: bool
    #: Transcript, "" until (or unless) transcription lands.
    text: str = ""
    #: Word timings, empty when the recogniser gives none.
    words: tuple[Word, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass(frozen=True)
class SpeakerInfo:
    """One speaker of a session, as listed in headers and ``idme sessions show``."""

    #: Display label.
    label: str
    #: "me" | "enrolled" | "unknown".
    kind: str
    #: Segments carrying this label.
    n_segments: int = 0
    #: Total speech, s.
    speech_s: float = 0.0
    #: Saved embeddings (see :meth:`~idme.session.store.SessionStore.speaker_embeddings`); 0 when none were saved.
    n_embeddings: int = 0
    #: Embedding dimension, 0 when none were saved.
    dim: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Session:
    """A whole session as read back from the store (or built by hand for exports)."""

    #: Session id, e.g. "20261121-054213-ab12" (UTC creation time + random suffix; sorts by time).
    id: str
    #: Creation time, ISO 8601 UTC.
    created_at: str
    #: One of :data:`STATUSES`.
    status: str
    #: Length of the session, s (for a session that never finished: end of its last segment).
    duration_s: float
    #: Where the audio came from, e.g. "microphone: MacBook Pro Microphone" or a file path.
    source: str = ""
    #: Settings the session ran with (thresholds, options).
    settings: dict[str, Any] = field(default_factory=dict)
    #: Model names and versions, e.g. {"encoder": {"name": "campplus", "version": "..."}, "asr": {...}}.
    models: dict[str, Any] = field(default_factory=dict)
    #: Speakers, owner first, then enrolled people, then unknown speakers in order of appearance.
    speakers: tuple[SpeakerInfo, ...] = ()
    #: Segments sorted by start time, each with its latest (final when re-clustered) label.
    segments: tuple[Segment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "duration_s": self.duration_s,
            "status": self.status,
            "source": self.source,
            "settings": self.settings,
            "models": self.models,
            "speakers": [s.to_dict() for s in self.speakers],
            "segments": [s.to_dict() for s in self.segments],
        }


@dataclass(frozen=True)
class SessionSummary:
    """One line of ``idme sessions list``."""

    #: Session id.
    id: str
    #: Creation time, ISO 8601 UTC.
    created_at: str
    #: Length, s (end of the last segment when the session never finished).
    duration_s: float
    #: Number of segments.
    n_segments: int
    #: Speaker labels, owner first, then enrolled, then unknown in order of appearance.
    speakers: tuple[str, ...]
    #: One of :data:`STATUSES`.
    status: str

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speakers"] = list(self.speakers)
        return d
