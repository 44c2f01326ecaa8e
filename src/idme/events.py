"""The ``idme listen --json`` event contract (docs/schema/events.schema.json), shared by every face:
``JsonLinesSink`` (CLI, library callers) writes it, the server's WebSocket sends the same objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Version of the event stream; bumped when a field changes meaning or goes away, not when one is added.
EVENTS_SCHEMA = "idme.events/1"


class EventStream:
    """Turns a session's ``SegmentEvent``s into the documented JSON Lines objects (docs/schema/events.schema.json).

    Every object carries ``type``, ``schema`` and ``session_id``. ``type`` says how to apply it:
    ``segment`` (a new segment, or an interim label being refined: ``final`` false; a not-final one with
    ``text`` carries partial text of the speech so far, live with a recogniser), ``text`` (the
    transcript of a segment already labelled arrived), ``relabel`` (re-clustering changed a final label or
    start), and one ``end`` object last (status, audio seconds, segments, speakers). Later objects with the
    same ``id`` replace earlier ones, as before.
    """

    def __init__(self, session_id: str | None, source: str | None = None) -> None:
        self.session_id = session_id
        self.source = source
        self._final: dict[int, tuple] = {}

    def record(self, event: Any) -> dict:
        """The JSON object for one ``idme.pipeline.SegmentEvent`` (or its ``to_dict()``)."""
        d = event if isinstance(event, dict) else event.to_dict()
        kind = "segment"
        if d["final"]:
            now = (d["speaker"], d["kind"], round(float(d["start"]), 3), d.get("text", ""))
            before = self._final.get(d["id"])
            if before is not None:
                kind = "text" if now[3] != before[3] else "relabel"
            self._final[d["id"]] = now
        return {"type": kind, "schema": EVENTS_SCHEMA, "session_id": self.session_id, **d}

    def end(self, status: str, audio_s: float, speakers: Iterable[str] = ()) -> dict:
        """The last object of the stream."""
        return {"type": "end", "schema": EVENTS_SCHEMA, "session_id": self.session_id, "source": self.source,
                "status": status, "audio_s": round(float(audio_s), 3), "n_segments": len(self._final),
                "speakers": sorted(set(speakers))}
