"""Live text: partial text of the segment being spoken, at low priority, and final text when it ends."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.audio.frames import TARGET_RATE_HZ, AudioFrame
from idme.audio.sources import RealtimeFileSource, read_audio
from idme.events import EventStream
from idme.identity.thresholds import DEFAULTS
from idme.identity.tracker import SpeakerTracker
from idme.live import LiveSession
from idme.pipeline import Labeller, LabelOptions
from idme.sinks import ListSink
from idme.transcribe.base import Transcript, Word
from idme.transcribe.moonshine import MoonshineTranscriber, package_model_dir
from idme.transcribe.worker import TranscriptionWorker

from conftest import EXAMPLES

TH = DEFAULTS["campplus"]
CLIP = Path(__file__).parent / "data" / "asr_1688-142285-0000.flac"


class GatedRecogniser:
    """Writes one word per half second of audio; waits for ``gate`` first when one is given."""

    name, version, language = "gated", "test", "en"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.started = threading.Event()

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(10)
        n = max(1, int(len(samples) / TARGET_RATE_HZ / 0.5))
        words = tuple(Word(f"w{k}", offset_s + 0.5 * k, offset_s + 0.5 * k + 0.4, 0.9) for k in range(n))
        return Transcript(" ".join(w.word for w in words), words)


class Gate:
    """A recogniser that blocks its first call on ``gate`` and logs every call as (seg offset, seconds)."""

    name, version, language = "gate", "test", "en"

    def __init__(self) -> None:
        self.gate, self.started, self.calls = threading.Event(), threading.Event(), []

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        self.started.set()
        self.gate.wait(10)
        self.calls.append((offset_s, round(len(samples) / TARGET_RATE_HZ, 2)))
        return Transcript(f"w{offset_s:g}", (Word(f"w{offset_s:g}", offset_s, offset_s + 0.1, 0.9),))


def test_a_first_partial_goes_before_waiting_final_text_and_a_refresh_after_it():
    """While the worker is busy, a segment's first partial request (0.6 s of audio at least) waits in its
    slot (a newer request of the same segment replaces it) and then runs before queued final text; once the
    segment has partial text, its next request waits until no final job is queued; a request of a segment
    that ended is dropped."""
    rec = Gate()
    finals, partials = [], []
    worker = TranscriptionWorker(rec, lambda i, t: finals.append(i), on_partial=lambda i, t: partials.append(i))
    sec = np.zeros(TARGET_RATE_HZ, np.float32)
    worker.submit(1, sec, 1.0)
    assert rec.started.wait(5)
    worker.submit(2, sec, 2.0)
    assert worker.wants_partial(10)
    assert not worker.submit_partial(10, sec[:4800], 10.0)  # 0.3 s: too short for a first partial
    assert worker.submit_partial(10, sec[:11200], 10.0) and worker.submit_partial(10, sec, 10.0)
    assert not worker.wants_partial(10) and not worker.wants_partial(11)
    worker.submit_partial(11, sec, 11.0)
    worker.drop_partial(11)  # segment 11 ended before its request ran
    rec.gate.set()
    while worker.stats().processed < 2:
        threading.Event().wait(0.01)
    assert rec.calls == [(1.0, 1.0), (10.0, 1.0), (2.0, 1.0)]
    rec.gate.clear()
    worker.submit(3, sec, 3.0)
    assert not worker.wants_partial(10)  # segment 10 has partial text already
    worker.submit_partial(10, sec, 10.5)
    worker.submit(4, sec, 4.0)
    rec.gate.set()
    worker.close()
    assert rec.calls[3:5] == [(3.0, 1.0), (4.0, 1.0)]  # the refresh (10.5) after them, or dropped by close
    assert finals == [1, 2, 3, 4] and 11 not in partials and partials[0] == 10
    stats = worker.stats()
    assert stats.first_partials == 1 and stats.partials_dropped >= 2


def test_a_looping_preview_is_no_partial_text():
    """A partial that is one word over and over (a decoder loop on too little audio) is not shown, and the
    segment keeps asking for its first partial text."""

    class Loop:
        name, version, language = "loop", "test", "en"

        def transcribe(self, samples, offset_s=0.0):
            return Transcript("Him, him, him, him,", ())

    got, done = [], threading.Event()
    worker = TranscriptionWorker(Loop(), lambda i, t: done.set(), on_partial=lambda i, t: got.append(t.text))
    assert worker.submit_partial(5, np.zeros(TARGET_RATE_HZ, np.float32), 0.0)
    worker.submit(6, np.zeros(TARGET_RATE_HZ, np.float32), 0.0)  # after the partial: it goes first
    assert done.wait(5)
    assert worker.wants_partial(5) and not any(t.strip() for t in got)
    worker.close()
    assert worker.stats().first_partials == 0


def test_a_worker_without_on_partial_takes_no_partial_jobs():
    """File mode (no on_partial) refuses partial requests, so partial text costs file mode nothing."""
    worker = TranscriptionWorker(GatedRecogniser(), lambda i, t: None)
    assert worker.submit_partial(0, np.zeros(8000, np.float32), 0.0) is False
    worker.close()


def test_live_session_streams_partial_text_then_final_text(tmp_path, campplus):
    """Live with a recogniser, segments being spoken get not-final events with text (``segment`` objects in
    the JSON stream), a final label never carries partial text, and every final segment gets final text."""
    audio = read_audio(EXAMPLES / "meeting.wav")
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio[: 16 * TARGET_RATE_HZ], TARGET_RATE_HZ)
    sink = ListSink()
    session = LiveSession(RealtimeFileSource(clip, speed=3.0), campplus, [], TH, transcriber=GatedRecogniser(),
                          sinks=[sink], live=True)
    session.run()
    partial = [e for e in sink.events if not e.final and e.text]
    assert partial, "no partial text"
    first_final: dict[int, object] = {}
    for e in sink.events:
        if e.final:
            first_final.setdefault(e.id, e)
    assert all(e.text == "" for e in first_final.values())
    assert {e.id for e in partial} <= set(first_final)
    assert all(session.pipeline.latest[i].text for i in first_final)
    stream = EventStream(None)
    kinds = {(d["type"], d["final"]) for d in (stream.record(e) for e in sink.events) if not d["final"] and d["text"]}
    assert kinds == {("segment", False)}


@pytest.mark.skipif(package_model_dir() is None, reason="moonshine-cpp is not installed")
def test_moonshine_partial_text_of_the_speech_so_far_begins_like_the_final_text(campplus):
    """The audio an interim label carries (the segment so far) gives Moonshine text whose first words are
    words of the whole utterance, in the same order: the partial is a preview of the same speech."""
    audio = read_audio(CLIP)
    labeller = Labeller(campplus, SpeakerTracker([], campplus.dimension, TH), LabelOptions(), live=True)
    labeller.partial_audio = True
    block = 480
    interims = []
    for pos in range(0, len(audio) - block, block):
        for ev in labeller.push(AudioFrame(audio[pos:pos + block], TARGET_RATE_HZ, pos, 0.0)):
            if not ev.final and ev.audio is not None:
                interims.append(ev)
    assert interims, "no interim label carried audio"
    long = [ev for ev in interims if len(ev.audio) >= 1.5 * TARGET_RATE_HZ]  # a first preview may be one word
    mid = long[len(long) // 2]
    assert mid.audio_start <= mid.start + 1e-6 and len(mid.audio) / TARGET_RATE_HZ >= mid.end - mid.start - 0.05
    moonshine = MoonshineTranscriber(package_model_dir(), cpu_threads=2)
    part = moonshine.transcribe(mid.audio, mid.audio_start)
    whole = moonshine.transcribe(audio, 0.0)
    norm = [w.strip(".,;:!?").lower() for w in part.text.split()]
    ref = [w.strip(".,;:!?").lower() for w in whole.text.split()]
    assert len(norm) >= 3
    assert any(ref[k:k + 3] == norm[:3] for k in range(len(ref) - 2)), (part.text, whole.text)
    assert all(mid.audio_start <= w.start <= w.end <= mid.audio_start + len(mid.audio) / TARGET_RATE_HZ + 1e-3
               for w in part.words)


def test_live_view_shows_partial_text_and_both_speakers_of_an_overlap():
    """The console shows a partial text on the "talking now" line of each segment being spoken (two lines
    when two segments overlap), keeps it on the row once the label is final, and replaces it with the
    final text when that arrives."""
    from io import StringIO

    from rich.console import Console

    from idme.cli.console import LiveView
    from idme.pipeline import SegmentEvent

    out = StringIO()
    view = LiveView(Console(file=out, width=120, force_terminal=False), "t", rows=5)

    def ev(i, start, end, who, final, text=""):
        return SegmentEvent(i, start, end, who, "unknown", 0.9, final, None, text)

    view(ev(0, 0.0, 1.5, "Speaker 1", False))
    view(ev(0, 0.0, 1.5, "Speaker 1", False, "so the plan"))
    view(ev(1, 1.0, 2.0, "Speaker 2", False, "right"))
    view(ev(0, 0.0, 2.5, "Speaker 1", False))  # a refined interim label keeps its partial text
    assert sorted((e.speaker, e.text) for e in view.talking.values()) == [("Speaker 1", "so the plan"),
                                                                          ("Speaker 2", "right")]
    rendered = StringIO()
    Console(file=rendered, width=120).print(view._render())
    assert rendered.getvalue().count("talking now") == 2
    view(ev(0, 0.0, 3.0, "Speaker 1", True))
    assert [e.speaker for e in view.talking.values()] == ["Speaker 2"]
    turn = view._last_turns(None)[0]
    assert (turn.text, turn.partial) == ("so the plan", True)
    view(ev(0, 0.0, 3.0, "Speaker 1", True, "so the plan is fine"))
    turn = view._last_turns(None)[0]
    assert (turn.text, turn.partial) == ("so the plan is fine", False)


def test_live_pyannote_session_streams_partial_text_of_the_region_in_progress(tmp_path, campplus):
    """With ``segmenter="pyannote"`` live and a recogniser, regions being spoken get not-final events with
    text before their final label (speech heard but never made final may have some too: the console drops
    those), a final label never carries partial text, and every final region gets final text."""
    audio = read_audio(EXAMPLES / "meeting.wav")
    clip = tmp_path / "clip.wav"
    sf.write(clip, audio[: 12 * TARGET_RATE_HZ], TARGET_RATE_HZ)
    sink = ListSink()
    session = LiveSession(RealtimeFileSource(clip, speed=4.0), campplus, [], TH, transcriber=GatedRecogniser(),
                          sinks=[sink], live=True, segmenter="pyannote")
    session.run()
    partial = [e for e in sink.events if not e.final and e.text]
    assert partial, "no partial text"
    first_final: dict[int, int] = {}
    for k, e in enumerate(sink.events):
        if e.final:
            first_final.setdefault(e.id, k)
    previewed = {e.id for e in partial} & set(first_final)
    assert previewed, "no final region had partial text"
    assert all(sink.events[first_final[i]].text == "" for i in first_final)
    assert all(session.pipeline.latest[i].text for i in first_final)
