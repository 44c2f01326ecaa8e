"""The live session as the library assembles it: shutdown, failures, abort, batching, the view, exports.

These reproduce the review's findings (../shared/reviews/2026-12-01-code.md §1.1, 1.2, 1.10, 1.11, 1.14):
each failed before its fix.
"""

from __future__ import annotations

import threading
import time
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from idme.api import Idme
from idme.audio.frames import TARGET_RATE_HZ, AudioFrame
from idme.audio.sources import RealtimeFileSource, read_audio
from idme.errors import EnrollmentError, ProfileError
from idme.identity.enroll import profile_from_speaker
from idme.identity.thresholds import DEFAULTS
from idme.live import LiveSession
from idme.pipeline import SegmentEvent
from idme.settings import resolve
from idme.sinks import ListSink
from idme.transcribe.base import Transcript, Word

from conftest import EXAMPLES, OWNER_TAKES

TH = DEFAULTS["campplus"]


class EndlessSpeech:
    """A live source that never ends by itself (like a microphone): real speech looped until ``stop()``."""

    live = True
    native_rate = 16000
    description = "endless test source"

    def __init__(self, samples: np.ndarray, block_s: float = 0.03) -> None:
        self.samples = samples
        self.block = int(block_s * TARGET_RATE_HZ)
        self.stopped = threading.Event()
        self.closed = False

    def frames(self, block_s: float | None = None):
        pos = 0
        while not self.stopped.is_set():
            i = pos % (len(self.samples) - self.block)
            yield AudioFrame(self.samples[i:i + self.block].copy(), TARGET_RATE_HZ, pos, time.monotonic())
            pos += self.block
            time.sleep(0.001)

    def stop(self) -> None:
        self.stopped.set()

    def close(self) -> None:
        self.closed = True


class FailingEncoder:
    """Wraps a real encoder; raises from the ``fail_at``-th call on."""

    def __init__(self, inner, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.name, self.version, self.dimension = inner.name, inner.version, inner.dimension

    def embed(self, samples):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise RuntimeError("encoder crashed")
        return self.inner.embed(samples)

    def embed_windows(self, samples, win, hop):
        return self.inner.embed_windows(samples, win, hop)


class SlowRecogniser:
    """A recogniser that takes ``delay_s`` per turn (a Whisper backlog in miniature)."""

    name, version, language = "slow", "1", "en"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0

    def transcribe(self, samples, offset_s: float = 0.0):
        self.calls += 1
        time.sleep(self.delay_s)
        return Transcript("word", (Word("word", 0.0, 0.5, 1.0),))


def _owner(tmp_path: Path, campplus) -> Idme:
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    return idme


def test_labeller_failure_stops_an_endless_source(tmp_path, campplus):
    """An encoder that fails mid-session ends run() with that error and stops the source; it does not
    leave a microphone recording forever (before the fix run() never returned)."""
    idme = _owner(tmp_path, campplus)
    source = EndlessSpeech(read_audio(EXAMPLES / "meeting.wav"))
    session = LiveSession(source, FailingEncoder(campplus, fail_at=3), idme.profiles.all(), TH)
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("exc", _raises(session.run)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "run() must return after a labeller failure"
    assert isinstance(box["exc"], RuntimeError) and "encoder crashed" in str(box["exc"])
    assert source.stopped.is_set() and source.closed


def _raises(fn):
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    return None


def test_abort_ends_at_once_and_keeps_what_was_decided(tmp_path, campplus):
    """stop() then abort() (two Ctrl+C) returns within a few seconds even with a long transcription
    backlog, and the segments decided before are saved; stop() alone would wait for every queued turn."""
    idme = _owner(tmp_path, campplus)
    slow = SlowRecogniser(delay_s=2.0)
    source = RealtimeFileSource(EXAMPLES / "meeting.wav", speed=8.0)
    writer = idme.sessions.create({"source": "test"}, {"encoder": idme.encoder_info})
    session = LiveSession(source, campplus, idme.profiles.all(), TH, transcriber=slow, writer=writer)
    timer = threading.Timer(3.0, session.stop)
    timer2 = threading.Timer(4.0, session.abort)
    timer.start(), timer2.start()
    t0 = time.monotonic()
    result = session.run()
    elapsed = time.monotonic() - t0
    assert result.aborted and result.status == "interrupted"
    assert elapsed < 9.0, f"abort took {elapsed:.1f} s"
    saved = idme.sessions.get(writer.session_id)
    assert saved.status == "interrupted"
    decided = {e.id for e in result.latest.values() if e.final}
    assert decided and {s.seg_id for s in saved.segments} == decided


def test_corrections_are_batched_into_one_transaction(tmp_path, campplus):
    """Events that are ready together (the final re-clustering's corrections) reach a batch-taking sink
    in one call, and the journal holds each segment's last version."""
    idme = _owner(tmp_path, campplus)
    calls: list[int] = []

    class Batches(ListSink):
        def batch(self, events):
            calls.append(len(events))
            self.events.extend(events)

    sink = Batches()
    session = idme.open_live(file=EXAMPLES / "meeting.wav", sinks=[sink], transcribe=False)
    result = session.run()
    assert max(calls) > 1, "a burst of events arrives as one batch"
    saved = {s.seg_id: s for s in idme.sessions.get(result.session_id).segments}
    last = {e.id: e for e in sink.events if e.final}
    assert {i: (s.speaker, round(s.start, 3)) for i, s in saved.items()} == \
        {i: (e.speaker, round(e.start, 3)) for i, e in last.items()}


def test_open_live_refuses_without_owner_and_records_the_uri(tmp_path, campplus):
    """Without "me" the CLI's session is refused with one line; a file session records the recording's name,
    which the RTTM export uses as its file id (so it scores against a reference as is)."""
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    with pytest.raises(ProfileError, match="no enrolled owner"):
        idme.open_live(file=EXAMPLES / "meeting.wav")
    idme.enroll_files("me", OWNER_TAKES)
    result = idme.open_live(file=EXAMPLES / "meeting.wav").run()
    out = tmp_path / "out.rttm"
    idme.export(result.session_id, out)
    ids = {line.split()[1] for line in out.read_text().splitlines()}
    assert ids == {"meeting"}


def test_naming_a_speaker_weights_by_duration_and_gates():
    """``idme name`` keeps reliable segments only, makes duration-weighted takes, leaves out a lone
    segment of another voice, and refuses a speaker whose segments are two voices."""
    rng = np.random.default_rng(0)
    a, b = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 192)))

    def noisy(v, n, s=0.02):
        x = v + rng.normal(scale=s, size=(n, 192))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    embs = np.vstack([noisy(a, 9), noisy(b, 3)])
    durations = np.array([3.0] * 9 + [0.4] * 3, np.float32)  # b only in sub-second segments: dropped
    takes, meta = profile_from_speaker(embs, durations, "alice", TH)
    assert len(takes) == 3 and sum(m["segments"] for m in meta) == 9
    assert all(float(t @ a) > 0.95 for t in takes) and all(float(t @ b) < 0.5 for t in takes)
    with pytest.raises(EnrollmentError, match="does not match"):
        profile_from_speaker(np.vstack([noisy(a, 6), noisy(b, 6)]), np.full(12, 2.0, np.float32), "alice", TH)
    # One turn of someone else filed under the speaker is left out; the rest still makes alice's voiceprint.
    takes, meta = profile_from_speaker(np.vstack([noisy(b, 1), noisy(a, 4)]), np.full(5, 2.0, np.float32),
                                       "alice", TH)
    assert sum(m["segments"] for m in meta) == 4 and all(float(t @ a) > 0.95 for t in takes)
    with pytest.raises(EnrollmentError, match="more than one voice"):
        profile_from_speaker(np.vstack([noisy(b, 1), noisy(a, 1)]), np.full(2, 2.0, np.float32), "alice", TH)
    with pytest.raises(EnrollmentError, match="1 s or longer"):
        profile_from_speaker(noisy(a, 4), np.full(4, 0.5, np.float32), "alice", TH)


def test_reembed_refuses_when_some_takes_have_no_audio(tmp_path, campplus):
    """A profile with one take enrolled without --keep-audio and two with it is refused, not silently cut
    to two takes (review §1.10); with audio for every take it is re-embedded whole."""
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES[:1])
    idme.enroll_files("me", OWNER_TAKES[1:], keep_audio=True)
    with pytest.raises(ProfileError, match="3 takes but kept audio for 2"):
        idme.reembed("me")
    assert len(idme.profiles.get("me").embeddings) == 3
    other = Idme(resolve(tmp_path / "b", asr="none"), embedder=campplus)
    other.enroll_files("me", OWNER_TAKES, keep_audio=True)
    (done,) = other.reembed("me")
    assert len(done.embeddings) == 3 and len(done.takes) == 3


def test_live_view_keeps_segments_in_time_order_without_resorting():
    """Events arriving out of time order, and a correction that moves a segment's start, render in time
    order; the view only groups the latest turns for a redraw."""
    from idme.cli.console import LiveView

    view = LiveView(Console(file=StringIO(), width=100), "t", rows=2)

    def ev(i, start, end, who):
        return SegmentEvent(i, start, end, who, "unknown", 0.9, True)

    for e in (ev(2, 10, 12, "B"), ev(0, 0, 2, "A"), ev(1, 5, 7, "C"), ev(3, 20, 22, "A")):
        view(e)
    view(ev(1, 3, 7, "C"))  # a correction moving the start earlier
    assert [s for s, _ in view._keys] == [0, 3, 10, 20]
    assert [t.speaker for t in view._last_turns(2)] == ["B", "A"]
    assert [t.speaker for t in view._last_turns(None)] == ["A", "C", "B", "A"]


def test_interim_copies_only_the_tail_of_the_open_chunk():
    """The chunker's tail is the last samples of the open chunk, with its true stream position."""
    from idme.vad import SpeechChunker, VadOptions

    speech = read_audio(OWNER_TAKES[0])[: 5 * TARGET_RATE_HZ]
    ch = SpeechChunker(VadOptions())
    for i in range(0, len(speech) - 480, 480):
        ch.push(AudioFrame(speech[i:i + 480], TARGET_RATE_HZ, i, None))
        cur = ch.current
        if cur is not None and cur.duration_s > 2.0:
            tail = ch.current_tail(16000)
            np.testing.assert_array_equal(tail.samples, cur.samples[-16000:])
            assert tail.end_s == cur.end_s
            assert ch.current_bounds == (cur.start_sample, cur.start_sample + len(cur.samples))
            return
    pytest.fail("no open chunk longer than 2 s")
