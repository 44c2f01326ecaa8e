"""Where labelled segments go: sink objects a live session hands every ``SegmentEvent`` to, in order.

A sink is any callable taking one event. It may also define ``batch(events)`` (several events that were
ready at once, e.g. a burst of re-clustering corrections: one transaction instead of one per event) and
``speakers(voices)`` (the session's voiceprints after each re-clustering). Sinks run on the thread that
called ``LiveSession.run``; one that raises stops the session, and the error is re-raised after the drain.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import IO, Any, Protocol


from .events import EventStream
from .pipeline import SegmentEvent, deliver  # noqa: F401 - deliver is part of the sink API


class Sink(Protocol):
    def __call__(self, event: SegmentEvent) -> None: ...


class JsonLinesSink:
    """``idme listen --json``: the documented event objects (:mod:`idme.events`: ``type``, ``schema``,
    ``session_id`` and the segment fields), one flushed line each, on ``stream`` (stdout)."""

    def __init__(self, stream: IO[str], session_id: str | None = None, source: str | None = None) -> None:
        self.stream = stream
        self.events = EventStream(session_id, source)

    def __call__(self, event: SegmentEvent) -> None:
        self.write(self.events.record(event))

    def end(self, status: str, audio_s: float, speakers: Iterable[str] = ()) -> None:
        """Writes the stream's last object (status, audio seconds, segments, speakers)."""
        self.write(self.events.end(status, audio_s, speakers))

    def write(self, obj: dict) -> None:
        self.stream.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.stream.flush()


class CallbackSink:
    """Calls ``fn(event.to_dict())`` (or ``fn(event)`` with ``raw=True``): for servers and notebooks."""

    def __init__(self, fn: Callable[[Any], None], raw: bool = False) -> None:
        self.fn = fn
        self.raw = raw

    def __call__(self, event: SegmentEvent) -> None:
        self.fn(event if self.raw else event.to_dict())


class ListSink:
    """Keeps every event in ``events`` (evaluation, benchmarks, tests)."""

    def __init__(self) -> None:
        self.events: list[SegmentEvent] = []

    def __call__(self, event: SegmentEvent) -> None:
        self.events.append(event)

    def dicts(self) -> list[dict]:
        return [e.to_dict() for e in self.events]


class SessionSink:
    """Journals final events into a session of the store (``SessionWriter``), batched per burst.

    Each batch is one transaction; in WAL mode a committed batch survives ``kill -9`` of the process.
    """

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    @staticmethod
    def _row(ev: SegmentEvent) -> dict:
        return {**ev.to_dict(), "seg_id": ev.id, "words": ev.words}

    def __call__(self, event: SegmentEvent) -> None:
        self.batch([event])

    def batch(self, events: Sequence[SegmentEvent]) -> None:
        rows = [self._row(ev) for ev in events if ev.final]
        if not rows:
            return
        many = getattr(self.writer, "upsert_segments", None)
        if many is not None:
            many(rows)
        else:
            for row in rows:
                self.writer.upsert_segment(row)

    def speakers(self, voices: dict) -> None:
        self.writer.save_speakers(voices)
