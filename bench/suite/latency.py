"""Live label latency: meetings played through RealtimeFileSource (the live path ``idme listen --realtime``
takes), with and without a recogniser.

A segment's latency is the ``latency_ms`` of its first final event: from the moment the block holding the
segment's last sample arrived to the moment its label was decided (queueing, change split, embedding and
the FAISS decision). The VAD's end pause (``VadOptions.end_pause_ms``, 150 ms of silence that closes a
segment) comes before that and is not included. Interim labels (live monologues) are reported apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from idme.audio import RealtimeFileSource
from idme.embed.base import Embedder
from idme.identity.profiles import Profile
from idme.identity.thresholds import Thresholds
from idme.pipeline import SegmentEvent

from .sessions import Meeting, run_session
from .speed import Recogniser

log = logging.getLogger(__name__)


def first_label_latencies(events: Iterable[SegmentEvent]) -> list[float]:
    """``latency_ms`` of each segment's first final event (segments whose first final has none are left out)."""
    seen: set[int] = set()
    out: list[float] = []
    for ev in events:
        if ev.final and ev.id not in seen:
            seen.add(ev.id)
            if ev.latency_ms is not None:
                out.append(ev.latency_ms)
    return out


def interim_latencies(events: Iterable[SegmentEvent]) -> list[float]:
    """``latency_ms`` of every interim (not final) label."""
    return [ev.latency_ms for ev in events if not ev.final and ev.latency_ms is not None]


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and max in ms (None when there are no values)."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "max": round(float(max(values)), 1),
            "n": len(values)}


@dataclass
class LatencyResult:
    """One live configuration over a set of meetings."""

    asr: str
    label: str
    #: Playback speed; latencies at speed > 1 are not comparable to live use (the audio arrives faster
    #: than speech, so queues fill sooner and every stage has less time).
    speed: float
    meetings: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    wall_s: float = 0.0
    label_ms: list[float] = field(default_factory=list)
    interim_ms: list[float] = field(default_factory=list)
    final_segments: int = 0
    text_segments: int = 0
    skipped: str = ""
    note: str = ""

    def to_dict(self) -> dict:
        return {"asr": self.asr, "label": self.label, "speed": self.speed, "meetings": self.meetings,
                "audio_s": round(self.audio_s, 2), "wall_s": round(self.wall_s, 2),
                "label_latency_ms": percentiles(self.label_ms), "interim_latency_ms": percentiles(self.interim_ms),
                "final_segments": self.final_segments, "text_segments": self.text_segments,
                "skipped": self.skipped or None, "note": self.note,
                "raw_label_ms": [round(x, 1) for x in self.label_ms],
                "raw_interim_ms": [round(x, 1) for x in self.interim_ms]}


def measure_latency(rec: Recogniser, meetings: Sequence[Meeting], speed: float, embedder: Embedder,
                    profiles: dict[str, list[Profile]], thresholds: Thresholds) -> LatencyResult:
    """Plays each meeting at ``speed`` x real time through the live Pipeline with ``rec``'s transcriber."""
    result = LatencyResult(rec.asr, rec.label, speed, skipped=rec.skipped, note=rec.note)
    if rec.skipped:
        return result
    for m in meetings:
        run = run_session(RealtimeFileSource(m.wav, speed=speed), embedder, profiles[m.name], thresholds,
                          transcriber=rec.transcriber, live=True)
        result.meetings.append(m.name)
        result.audio_s += run.audio_s
        result.wall_s += run.wall_s
        result.label_ms += first_label_latencies(run.events)
        result.interim_ms += interim_latencies(run.events)
        result.final_segments += len(run.final_ids)
        result.text_segments += len(run.texted)
        log.info("live x%g, %s, %s: label p50 %s ms", speed, rec.label, m.name,
                 percentiles(result.label_ms)["p50"])
    return result
