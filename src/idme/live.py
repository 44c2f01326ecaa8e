"""A live session, assembled in one place: source -> Labeller -> Pipeline -> sink objects.

``idme listen``, ``idme eval meetings``, the benchmark and the server all build their sessions here (through
:meth:`idme.api.Idme.open_live`), so they label audio the same way: the same narrow-band rule, the same
options, the same journal. ``stop()`` is a normal end (everything heard is labelled, re-clustered and
saved); ``abort()`` ends at once and keeps what was already decided.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .audio.sources import AudioSource
from .embed.base import Embedder
from .errors import IdmeError
from .identity.profiles import NARROWBAND_MAX_HZ, Profile
from .identity.thresholds import Thresholds
from .identity.tracker import SpeakerTracker
from .pipeline import Labeller, LabelOptions, Pipeline, SegmentEvent, StageTimes, deliver
from .sinks import SessionSink
from .transcribe.base import Transcriber

log = logging.getLogger(__name__)


@dataclass
class LiveResult:
    """How a session ended."""

    #: "complete" (the stream ended), "interrupted" (stopped or aborted early).
    status: str
    #: The session's id in the store, or None when it was not saved.
    session_id: str | None
    #: Seconds of audio labelled.
    audio_s: float
    #: Seconds spent per stage.
    times: StageTimes
    #: True when ``abort()`` cut the session short (no final re-clustering).
    aborted: bool = False
    #: The last event of each segment id (interim ones included), in id order.
    latest: dict[int, SegmentEvent] = field(default_factory=dict, repr=False)

    @property
    def n_segments(self) -> int:
        return sum(1 for e in self.latest.values() if e.final)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "session_id": self.session_id, "audio_s": round(self.audio_s, 3),
                "n_segments": self.n_segments, "aborted": self.aborted, "times": self.times.to_dict()}


class _FanOut:
    """Hands each batch to every sink; the first sink that raises stops the session (see LiveSession)."""

    def __init__(self, sinks: Sequence[Any], on_error) -> None:
        self.sinks = list(sinks)
        self.on_error = on_error
        self.errors: list[BaseException] = []

    def __call__(self, event: SegmentEvent) -> None:
        self.batch([event])

    def batch(self, events: Sequence[SegmentEvent]) -> None:
        if self.errors:
            return
        try:
            for sink in self.sinks:
                deliver(sink, events)
        except Exception as exc:  # disk full, stdout closed, a client gone: stop, report after the drain
            self.errors.append(exc)
            self.on_error()

    def speakers(self, voices: dict) -> None:
        if self.errors:
            return
        try:
            for sink in self.sinks:
                fn = getattr(sink, "speakers", None)
                if fn is not None:
                    fn(voices)
        except Exception as exc:
            self.errors.append(exc)
            self.on_error()


class LiveSession:
    """One labelling session over ``source``; ``run()`` blocks until the stream ends, ``stop()`` or ``abort()``.

    sinks: objects of :mod:`idme.sinks` (or any callable taking a SegmentEvent).
    writer: a ``SessionWriter`` to journal the session into (its ``SessionSink`` is added to ``sinks``); it is
        finished and closed by ``run()``.
    live: interim labels, latency stamps and periodic re-clustering; default: True unless the source is a
        plain (as-fast-as-possible) file.
    segmenter / latency_s: "pyannote" labels with the rolling-buffer overlap-aware segmenter
        (:mod:`idme.segment.live`), final labels ``latency_s`` (0.5-5) after the speech.
    """

    def __init__(self, source: AudioSource, embedder: Embedder, profiles: Sequence[Profile],
                 thresholds: Thresholds, *, transcriber: Transcriber | None = None, sinks: Sequence[Any] = (),
                 writer: Any = None, live: bool | None = None, options: LabelOptions = LabelOptions(),
                 segmenter: str = "webrtc", latency_s: float = 2.0, calibration: Any = None) -> None:
        self.source = source
        self.embedder = embedder
        self.thresholds = thresholds
        self.transcriber = transcriber
        self.writer = writer
        self.options = options
        self.live = bool(getattr(source, "live", True)) if live is None else live
        #: One-line hints for the user (set by ``Idme.open_live``), e.g. how to add a transcription model.
        self.notes: list[str] = []
        #: Telephone-rate audio: profiles enrolled at <= 8 kHz are held to ``thresholds.narrowband``.
        self.narrowband = is_narrowband(source)
        #: ``calibration``: the tracker's Me / named decisions on calibrated LLRs (``Idme.calibration``).
        self.tracker = SpeakerTracker(list(profiles), embedder.dimension, thresholds, narrowband=self.narrowband,
                                      calibration=calibration)
        #: "webrtc" (VAD chunks + change split, one speaker at a time) or "pyannote" (rolling-buffer
        #: segmentation-3.0, overlapping speakers, final labels ``latency_s`` after the speech).
        self.segmenter = segmenter
        if segmenter == "pyannote":
            from .segment.live import LiveOptions, PyannoteFileLabeller, PyannoteLabeller
            from .segment.pyannote import PyannoteOptions

            from .errors import ConfigError

            try:
                # The user's speaker counts bound the file-mode clustering that (re-)labels the session.
                counts = PyannoteOptions(min_speakers=options.min_speakers, max_speakers=options.max_speakers)
                opts = LiveOptions(latency_s=float(latency_s), file=counts)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if self.live:
                self.labeller = PyannoteLabeller(embedder, thresholds, list(profiles), opts, live=True,
                                                 narrowband=self.narrowband, calibration=calibration)
            else:  # a plain file: labelled whole (more accurate than the rolling buffer)
                self.labeller = PyannoteFileLabeller(embedder, thresholds, list(profiles), opts,
                                                     calibration=calibration, narrowband=self.narrowband)
        elif segmenter == "webrtc":
            self.labeller = Labeller(embedder, self.tracker, options, live=self.live)
        else:
            from .errors import ConfigError

            raise ConfigError(f"unknown segmenter {segmenter!r}; choose webrtc or pyannote")
        all_sinks = list(sinks) + ([SessionSink(writer)] if writer is not None else [])
        self._fan = _FanOut(all_sinks, self._sink_failed)
        self.pipeline = Pipeline(source, self.labeller, self._fan, transcriber=transcriber,
                                 on_speakers=self._fan.speakers)
        self._stopped = threading.Event()

    @property
    def session_id(self) -> str | None:
        return None if self.writer is None else self.writer.session_id

    def _sink_failed(self) -> None:
        self.pipeline.stop()

    def stop(self) -> None:
        """Stops listening; everything already heard is labelled, re-clustered and saved."""
        self._stopped.set()
        self.pipeline.stop()

    def abort(self) -> None:
        """Ends now: nothing more is labelled or transcribed; what was decided is saved."""
        self._stopped.set()
        self.pipeline.abort()

    def run(self) -> LiveResult:
        """Runs the session to its end; raises the first error of a stage or a sink (after saving)."""
        status = "complete"
        try:
            self.pipeline.run()
            if self._stopped.is_set() or self._fan.errors:
                status = "interrupted"
        except BaseException:
            status = "interrupted"
            raise
        finally:
            try:
                self._finish(status)
            finally:
                self.source.close()
        if self._fan.errors:
            raise self._fan.errors[0]
        return LiveResult(status, self.session_id, self.labeller.times.audio_s, self.labeller.times,
                          self.pipeline.aborted, dict(sorted(self.pipeline.latest.items())))

    def _finish(self, status: str) -> None:
        w = self.writer
        if w is None:
            return
        duration = self.labeller.times.audio_s or None
        try:
            if self._fan.errors:  # best effort: the store may be what failed
                with contextlib.suppress(IdmeError, OSError):
                    w.finish("interrupted", duration_s=duration)
            else:
                w.save_speakers(self.labeller.speakers())
                w.finish(status, duration_s=duration)
        finally:
            w.close()


def is_narrowband(source: AudioSource) -> bool:
    """True for telephone-rate sources (native rate <= 8 kHz)."""
    return getattr(source, "native_rate", 16000) <= NARROWBAND_MAX_HZ


def session_settings(source: AudioSource, thresholds: Thresholds, options: LabelOptions, live: bool,
                     narrowband: bool, profiles: Sequence[Profile], **extra: Any) -> dict[str, Any]:
    """What a saved session records about how it ran."""
    return {"source": getattr(source, "description", "audio"), "live": live, "thresholds": asdict(thresholds),
            "narrowband": narrowband, "vad": asdict(options.vad), "fill_gap_s": options.fill_gap_s,
            "profiles": [p.name for p in profiles], **extra}
