"""Tests of transcript exports (idme.session.export)."""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import srt
import webvtt

from idme.errors import ExportError
import idme.session.export as export_mod
from idme.session.export import EXPORT_FORMATS, MAX_CUE_S, MAX_LINE_CHARS, export, write_export
from idme.session.store import Segment, Session, SessionStore, SpeakerInfo, Word

from conftest import SCORER
LONG_TEXT = ("so the plan for next week is to finish the store first and then move on to the exports "
             "because the command line needs both before the demo on friday")


def _words(text: str, start: float, end: float) -> tuple[Word, ...]:
    toks = text.split()
    step = (end - start) / len(toks)
    return tuple(Word(t, round(start + i * step, 3), round(start + (i + 0.9) * step, 3), 0.9) for i, t in enumerate(toks))


@pytest.fixture
def session() -> Session:
    """Owner, an enrolled person and an unknown speaker; one untranscribed segment; one long segment."""
    segs = (
        Segment(0, 0.50, 2.00, "Me", "me", 0.81, True, "good morning everyone"),
        Segment(1, 2.10, 3.90, "Me", "me", 0.77, True, "shall we start"),
        Segment(2, 4.20, 6.00, "alice", "enrolled", 0.70, True, "yes let's go"),
        Segment(3, 6.30, 7.10, "Speaker 1", "unknown", 0.30, True, ""),
        Segment(4, 7.50, 23.50, "Me", "me", 0.80, True, LONG_TEXT, _words(LONG_TEXT, 7.5, 23.5)),
        Segment(5, 24.00, 26.00, "Speaker 1", "unknown", 0.35, False, "sounds good to me"),
    )
    speakers = (SpeakerInfo("Me", "me", 3, 19.3), SpeakerInfo("alice", "enrolled", 1, 1.8),
                SpeakerInfo("Speaker 1", "unknown", 2, 2.8, 5, 192))
    return Session(id="20261121-054213-ab12", created_at="2026-11-21T05:42:13.000000+00:00", status="complete",
                   duration_s=27.0, source="file: standup.wav", settings={"threshold_me": 0.5},
                   models={"encoder": {"name": "campplus", "version": "3d6e"}, "asr": {"name": "vosk", "version": "0.15"}},
                   speakers=speakers, segments=segs)


EMPTY = Session(id="20261121-060000-0000", created_at="2026-11-21T06:00:00+00:00", status="complete", duration_s=3.0)


def _td(seconds: float) -> timedelta:
    return timedelta(milliseconds=round(seconds * 1000))


def test_srt_parses_with_valid_numbering_times_and_speakers(session: Session) -> None:
    """The SRT parses with the srt package: cues numbered from 1, end > start, one speaker per cue, no
    same-speaker overlap, short segments timed exactly, long ones cut into cues of <= 7 s and 2 lines."""
    subs = list(srt.parse(export(session, "srt")))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert len(subs) > len(session.segments)  # the 16 s segment became several cues
    assert all(s.end > s.start for s in subs)
    speakers = [re.match(r"\[?([^:\]]+)", s.content).group(1) for s in subs]
    assert set(speakers) == {"Me", "alice", "Speaker 1"}
    assert (subs[0].start, subs[0].end, subs[0].content) == (_td(0.5), _td(2.0), "Me: good morning everyone")
    assert any(s.content == "[Speaker 1]" and s.start == _td(6.3) for s in subs)  # untranscribed segment
    long_cues = [s for s in subs if _td(7.5) <= s.start < _td(23.5)]
    assert long_cues[0].start == _td(7.5) and long_cues[-1].end == _td(23.5)
    assert all(s.end - s.start <= _td(MAX_CUE_S) for s in long_cues)
    assert all(len(s.content.split("\n")) <= 2 for s in subs)
    assert " ".join(s.content.replace("\n", " ").removeprefix("Me: ") for s in long_cues) == LONG_TEXT
    for spk in set(speakers):
        mine = [s for s, who in zip(subs, speakers) if who == spk]
        assert all(a.end <= b.start for a, b in zip(mine, mine[1:]))


def test_vtt_parses_with_webvtt_py(session: Session) -> None:
    """The VTT parses with webvtt-py: header, same cues and times as the SRT, voice tags naming the speaker."""
    text = export(session, "vtt")
    assert text.startswith("WEBVTT\n")
    caps = webvtt.from_buffer(io.StringIO(text)).captions
    subs = list(srt.parse(export(session, "srt")))
    assert len(caps) == len(subs)
    assert [c.start for c in caps] == [srt.timedelta_to_srt_timestamp(s.start).replace(",", ".") for s in subs]
    # The name is in the voice tag only (issue 10): each cue's text is the SRT cue's text after "Name: ".
    assert all(" ".join(s.content.split()).endswith(" ".join(c.text.split())) for c, s in zip(caps, subs))
    assert not any(c.text.startswith(f"{c.voice}:") for c in caps)
    assert [c.voice for c in caps][:3] == ["Me", "Me", "alice"]


def test_vtt_escapes_markup_in_names_and_text() -> None:
    """Angle brackets and ampersands in labels or text are escaped, so the cue still parses as one cue."""
    s = Session(id="x", created_at="", status="complete", duration_s=2.0,
                segments=(Segment(0, 0.0, 1.0, "R&D <lead>", "enrolled", 0.6, True, "a --> b <i>"),))
    caps = webvtt.from_buffer(io.StringIO(export(s, "vtt"))).captions
    assert len(caps) == 1 and html.unescape(caps[0].text) == "a --> b <i>"
    assert html.unescape(caps[0].voice) == "R&D <lead>"
    assert "<i>" not in caps[0].raw_text and "-->" not in caps[0].raw_text


def test_overlapping_segments_of_one_speaker_give_non_overlapping_cues() -> None:
    """Two overlapping segments of one speaker become cues that do not overlap and all last > 0 s."""
    s = Session(id="x", created_at="", status="complete", duration_s=5.0, segments=(
        Segment(0, 0.0, 2.0, "Me", "me", 0.6, True, "one"),
        Segment(1, 1.5, 3.0, "Me", "me", 0.6, True, "two"),
        Segment(2, 1.5, 1.5, "Speaker 1", "unknown", 0.6, True, "zero length"),
        Segment(3, 1.0, 2.5, "Speaker 1", "unknown", 0.6, True, "other voice"),
    ))
    subs = list(srt.parse(export(s, "srt")))
    me = [x for x in subs if x.content.startswith("Me")]
    assert [(x.start, x.end) for x in me] == [(_td(0.0), _td(1.5)), (_td(1.5), _td(3.0))]
    assert all(x.end > x.start for x in subs)


def test_markdown_has_header_and_grouped_turns(session: Session) -> None:
    """Markdown starts with a header (date, duration, speakers with kind, models) and groups one
    speaker's consecutive segments into one stamped turn."""
    md = export(session, "md")
    assert md.startswith("# idme session 20261121-054213-ab12\n")
    assert "- **Date:** 2026-11-21 05:42:13 UTC" in md and "- **Duration:** 00:00:27" in md
    assert "- **Speakers:** Me (owner), alice (enrolled), Speaker 1 (unknown)" in md
    assert "- **Models:** encoder: campplus 3d6e; asr: vosk 0.15" in md
    turns = re.findall(r"^\[(\d\d:\d\d:\d\d)\] \*\*(.+?):\*\* (.*)$", md, flags=re.M)
    assert [(t[0], t[1]) for t in turns] == [("00:00:00", "Me"), ("00:00:04", "alice"), ("00:00:06", "Speaker 1"),
                                             ("00:00:07", "Me"), ("00:00:24", "Speaker 1")]
    assert turns[0][2] == "good morning everyone shall we start"
    assert turns[2][2] == "*(no transcript)*"


def test_txt_has_one_line_per_turn(session: Session) -> None:
    """Plain text is one `[hh:mm:ss] Speaker: text` line per turn."""
    lines = export(session, "txt").splitlines()
    assert lines[0] == "[00:00:00] Me: good morning everyone shall we start"
    assert lines[2] == "[00:00:06] Speaker 1: (no transcript)"
    assert len(lines) == 5 and all(re.match(r"^\[\d\d:\d\d:\d\d\] [^:]+: .+$", x) for x in lines)


def test_rttm_lines_are_well_formed(session: Session) -> None:
    """One SPEAKER line per segment with 10 fields, final labels, owner as Me, blanks in labels replaced."""
    lines = export(session, "rttm").splitlines()
    assert len(lines) == len(session.segments)
    fields = [x.split() for x in lines]
    assert all(len(f) == 10 and f[0] == "SPEAKER" and f[1] == session.id and f[2] == "1" for f in fields)
    assert [f[7] for f in fields] == ["Me", "Me", "alice", "Speaker_1", "Me", "Speaker_1"]
    assert [(float(f[3]), float(f[4])) for f in fields][2] == (4.2, 1.8)


@pytest.mark.skipif(not SCORER.is_file(), reason=f"reference scorer {SCORER} not present")
def test_rttm_scores_perfectly_with_score_meeting(tmp_path: Path) -> None:
    """An RTTM export of a session that matches a reference scores DER 0 and full owner recall."""
    ref = [(0.5, 2.5, "A"), (3.0, 5.0, "B"), (5.5, 8.0, "C"), (8.5, 10.0, "A"), (10.5, 12.0, "D"), (12.5, 14.0, "C")]
    label = {"A": ("Me", "me"), "B": ("alice", "enrolled"), "C": ("Speaker 1", "unknown"), "D": ("Speaker 2", "unknown")}
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    (meeting / "meta.json").write_text(json.dumps({"owner": "A", "named": {"alice": "B"}, "duration_s": 15.0}))
    (meeting / "reference.rttm").write_text("".join(
        f"SPEAKER meeting 1 {a:.3f} {b - a:.3f} <NA> <NA> {spk} <NA> <NA>\n" for a, b, spk in ref))
    segs = tuple(Segment(i, a, b, *label[spk], 0.6, True, "") for i, (a, b, spk) in enumerate(ref))
    hyp = write_export(Session(id="s", created_at="", status="complete", duration_s=15.0, segments=segs),
                       tmp_path / "hyp.rttm")
    out = subprocess.run([sys.executable, str(SCORER), str(meeting), str(hyp)], capture_output=True, text=True,
                         check=True)
    score = json.loads(out.stdout)
    assert score["der"] == 0.0 and score["me_recall"] == 1.0 and score["false_me"] == 0.0
    assert score["n_hyp_labels"] == 4  # "Speaker 1" and "Speaker 2" stay two labels


def test_json_round_trip(session: Session) -> None:
    """The JSON export loads back to the same session fields and segments, words included."""
    doc = json.loads(export(session, "json"))
    expected = session.to_dict()
    assert doc["segments"] == expected["segments"]
    for key in ("id", "created_at", "duration_s", "status", "settings", "models", "speakers"):
        assert doc["session"][key] == expected[key]
    assert doc["segments"][4]["words"][0] == {"word": "so", "start": 7.5, "end": session.segments[4].words[0].end, "conf": 0.9}
    assert [s["label"] for s in doc["session"]["speakers"]] == ["Me", "alice", "Speaker 1"]


def test_empty_session_is_a_valid_empty_transcript_in_every_format() -> None:
    """A session without speech exports to valid, empty transcripts in every format."""
    assert list(srt.parse(export(EMPTY, "srt"))) == []
    vtt = export(EMPTY, "vtt")
    assert vtt.strip() == "WEBVTT" and webvtt.from_buffer(io.StringIO(vtt)).captions == []
    md = export(EMPTY, "md")
    assert md.startswith("# idme session") and "No speech" in md and "**Speakers:** none" in md
    assert json.loads(export(EMPTY, "json"))["segments"] == []
    assert export(EMPTY, "txt") == "" and export(EMPTY, "rttm") == ""


def test_store_session_exports_end_to_end(tmp_path: Path) -> None:
    """A session read back from the store exports in every format through write_export, format from extension."""
    with SessionStore(tmp_path / "home") as store:
        w = store.create({}, {"encoder": {"name": "campplus", "version": "1"}})
        w.upsert_segment({"seg_id": 0, "start": 0.0, "end": 1.0, "speaker": "Speaker 1", "kind": "unknown",
                          "score": 0.3, "final": False, "text": "hi", "words": []})
        w.relabel([(0, "Me", "me", 0.9)])
        w.finish()
        w.close()
        s = store.get("latest")
    for fmt in EXPORT_FORMATS:
        path = write_export(s, tmp_path / f"out.{fmt}")
        assert path.read_text(encoding="utf-8") == export(s, fmt)
        assert "Speaker 1" not in path.read_text()  # the relabelled (final) label is exported
    assert (tmp_path / "out.txt").read_text() == "[00:00:00] Me: hi\n"


def test_stdout_export(session: Session, capsys: pytest.CaptureFixture[str]) -> None:
    """`-` writes the transcript to stdout and no file."""
    assert write_export(session, "-", "txt") is None
    assert capsys.readouterr().out == export(session, "txt")


def test_unknown_format_lists_the_valid_ones(session: Session, tmp_path: Path) -> None:
    """An unknown format, by name or by extension, is an ExportError naming every valid format; no file."""
    with pytest.raises(ExportError, match="md, txt, srt, vtt, json, rttm"):
        export(session, "docx")
    with pytest.raises(ExportError, match="docx"):
        write_export(session, tmp_path / "t.docx")
    with pytest.raises(ExportError, match="no extension"):
        write_export(session, tmp_path / "transcript")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_paths_raise_export_error_and_leave_nothing(session: Session, tmp_path: Path) -> None:
    """A missing directory, a file in the way, or a directory as target is a one-line ExportError."""
    (tmp_path / "a_file").write_text("x")
    for bad in (tmp_path / "missing" / "t.md", tmp_path / "a_file" / "t.md"):
        with pytest.raises(ExportError, match="cannot write"):
            write_export(session, bad)
    (tmp_path / "t.md").mkdir()
    with pytest.raises(ExportError, match="is a directory"):
        write_export(session, tmp_path / "t.md")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a_file", "t.md"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_raises_export_error(session: Session, tmp_path: Path) -> None:
    """A read-only output directory is an ExportError and stays empty."""
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    try:
        with pytest.raises(ExportError, match="cannot write"):
            write_export(session, ro / "t.srt")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_failed_replace_removes_the_temporary_file(session: Session, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """When the final rename fails, the old file is untouched and no temporary file is left."""
    target = tmp_path / "t.md"
    target.write_text("old transcript")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_mod.os, "replace", refuse)
    with pytest.raises(ExportError, match="No space left"):
        write_export(session, target)
    assert [p.name for p in tmp_path.iterdir()] == ["t.md"] and target.read_text() == "old transcript"


def test_overwrite_keeps_mode_and_new_files_are_private(session: Session, tmp_path: Path) -> None:
    """Replacing an existing export keeps its mode; a new export is created 0600."""
    shared = tmp_path / "shared.txt"
    shared.write_text("old")
    shared.chmod(0o644)
    write_export(session, shared)
    assert shared.stat().st_mode & 0o777 == 0o644 and shared.read_text() == export(session, "txt")
    assert write_export(session, tmp_path / "new.srt").stat().st_mode & 0o777 == 0o600


def test_subtitle_lines_respect_the_line_length(session: Session) -> None:
    """Every subtitle line with blanks to break at stays within the two-line, 42-character layout."""
    for sub in srt.parse(export(session, "srt")):
        lines = sub.content.split("\n")
        assert len(lines) <= 2
        assert all(len(x) <= MAX_LINE_CHARS for x in lines)


def _timed(spec: list[tuple[str, float, float]]) -> tuple[Word, ...]:
    return tuple(Word(w, a, b, 0.9) for w, a, b in spec)


def _two_sentences_with_a_pause() -> Session:
    spec = [("We", 0.0, 0.2), ("moved", 0.25, 0.6), ("the", 0.65, 0.75), ("servers", 0.8, 1.3),
            ("yesterday.", 1.35, 2.0), ("Nobody", 2.1, 2.5), ("noticed", 2.55, 3.0), ("anything", 3.05, 3.5),
            ("at", 4.6, 4.7), ("all", 4.75, 5.0), ("luckily", 5.05, 5.6)]
    words = _timed(spec)
    seg = Segment(0, 0.0, 5.6, "Me", "me", 0.8, True, " ".join(w for w, _, _ in spec), words)
    return Session(id="s", created_at="2026-11-21T06:00:00+00:00", status="complete", duration_s=6.0,
                   models={"asr": {"name": "moonshine"}}, segments=(seg,))


def test_cues_break_at_sentence_ends_and_pauses_never_inside_a_word() -> None:
    """With word times, a turn's cues end at a sentence end and before a long pause; every cue is whole
    words of the turn, at most 7 s and two lines."""
    subs = list(srt.parse(export(_two_sentences_with_a_pause(), "srt")))
    texts = [s.content.replace("\n", " ") for s in subs]
    assert texts == ["Me: We moved the servers yesterday.", "Me: Nobody noticed anything", "Me: at all luckily"]
    assert subs[0].start == _td(0.0) and subs[-1].end == _td(5.6)
    assert subs[1].end == _td(3.5) and subs[2].start == _td(4.6)  # the 1.1 s pause stays a gap
    for s in subs:
        assert s.end - s.start <= _td(MAX_CUE_S) and all(len(line) <= MAX_LINE_CHARS for line in s.content.split("\n"))


def test_long_turn_cues_respect_time_and_length_and_keep_every_word(session: Session) -> None:
    """A 16 s turn without punctuation is cut into cues of at most 7 s and 2 x 42 characters, in order, with
    no word lost, split or repeated."""
    subs = [s for s in srt.parse(export(session, "srt")) if _td(7.5) <= s.start < _td(23.5)]
    words = " ".join(s.content.replace("\n", " ").removeprefix("Me: ") for s in subs).split()
    assert words == LONG_TEXT.split()
    assert all(s.end - s.start <= _td(MAX_CUE_S) for s in subs)


def _overlap_session() -> Session:
    # Me talks 0-4 s; Speaker 1 cuts in at 3.0 s and goes on to 6 s. Both recognisers heard "right" (3.2 s),
    # said in the overlap while Me's turn goes on.
    me = Segment(0, 0.0, 4.0, "Me", "me", 0.8, True, "so this is the plan right",
                 _timed([("so", 0.2, 0.4), ("this", 0.5, 0.8), ("is", 0.9, 1.0), ("the", 1.1, 1.2),
                         ("plan", 1.3, 1.8), ("right", 3.1, 3.4)]))
    other = Segment(1, 3.0, 6.0, "Speaker 1", "unknown", 0.4, True, "right sounds good",
                    _timed([("right", 3.1, 3.4), ("sounds", 4.2, 4.6), ("good", 4.7, 5.2)]))
    return Session(id="ov", created_at="2026-11-21T06:00:00+00:00", status="complete", duration_s=6.0,
                   models={"asr": {"name": "moonshine"}}, settings={"uri": "ov"}, segments=(me, other))


def test_overlapping_speakers_each_show_their_words_and_rttm_json_keep_the_overlap() -> None:
    """Two overlapping segments stay overlapping in RTTM and JSON; in md, txt, srt and vtt a word heard in the
    overlap is shown once, under the speaker whose turn it continues."""
    ses = _overlap_session()
    rttm = [line.split() for line in export(ses, "rttm").splitlines()]
    assert [(float(r[3]), float(r[4]), r[7]) for r in rttm] == [(0.0, 4.0, "Me"), (3.0, 3.0, "Speaker_1")]
    doc = json.loads(export(ses, "json"))
    assert [(s["start"], s["end"]) for s in doc["segments"]] == [(0.0, 4.0), (3.0, 6.0)]
    assert [w["word"] for w in doc["segments"][1]["words"]] == ["right", "sounds", "good"]
    txt = export(ses, "txt")
    assert "Me: so this is the plan right" in txt and "Speaker 1: sounds good" in txt
    md = export(ses, "md")
    assert "**Speaker 1:** sounds good" in md
    cues = [(s.start, s.content.replace("\n", " ")) for s in srt.parse(export(ses, "srt"))]
    assert sorted(c for _, c in cues) == ["Me: right", "Me: so this is the plan", "Speaker 1: sounds good"]
    vtt = list(webvtt.from_buffer(io.StringIO(export(ses, "vtt"))))
    assert {c.voice for c in vtt} == {"Me", "Speaker 1"}
    assert [c.text for c in vtt if c.voice == "Speaker 1"] == ["sounds good"]
