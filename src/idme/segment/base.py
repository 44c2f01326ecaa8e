"""What a segmenter produces: speech regions that carry a speaker index and may overlap in time.

The webrtc path (``idme.vad`` + the change split inside ``idme.pipeline``) gives one speaker per instant;
an overlap-aware segmenter (``idme.segment.pyannote``) gives regions of several speakers at once. Both are
turned into the same ``listen --json`` events (``id``, ``start``, ``end``, ``speaker``, ``kind``, ``score``,
``final``, ``latency_ms``, ``text``); with an overlap-aware segmenter events may overlap in time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SpeechRegion:
    """One speaker talking over ``[start_sample, start_sample + samples)`` of the input (16 kHz samples)."""

    #: First sample of the region in the input signal.
    start_sample: int
    #: Length in samples (> 0).
    samples: int
    #: Speaker index, consistent within one ``regions`` call (a file-level cluster, not a person).
    speaker: int
    #: True when another speaker talks during part of this region.
    overlap: bool

    @property
    def end_sample(self) -> int:
        """One past the last sample."""
        return self.start_sample + self.samples

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelledRegion:
    """A region with its final label: ``label`` "Me", a profile name or "Speaker N"; ``kind`` "me" |
    "enrolled" | "unknown"; ``score`` the cosine that decided it (cluster voiceprint vs the label's)."""

    region: SpeechRegion
    label: str
    kind: str
    score: float


@runtime_checkable
class Segmenter(Protocol):
    """Cuts a whole signal into speaker-homogeneous, possibly overlapping regions."""

    #: Short name used by ``--segmenter`` ("pyannote").
    name: str
    #: Rate the segmenter expects, Hz.
    sample_rate: int

    def regions(self, samples: np.ndarray) -> list[SpeechRegion]:
        """samples: float32 (n,) at ``sample_rate`` -> regions sorted by start (may overlap in time)."""
        ...


def to_events(labelled: list[LabelledRegion], sample_rate: int) -> list[dict[str, Any]]:
    """``listen --json`` event dicts, one final event per region, sorted by start then label; ids from 1."""
    order = sorted(labelled, key=lambda r: (r.region.start_sample, r.label))
    out = []
    for i, r in enumerate(order, start=1):
        out.append({"id": i, "start": round(r.region.start_sample / sample_rate, 3),
                    "end": round(r.region.end_sample / sample_rate, 3), "speaker": r.label, "kind": r.kind,
                    "score": round(float(r.score), 4), "final": True, "latency_ms": None, "text": ""})
    return out
