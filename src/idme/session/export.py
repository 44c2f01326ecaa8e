"""Transcript exports of a :class:`~idme.session.model.Session`: md, txt, srt, vtt, json, rttm.

Every format is a pure function of the session (``export``); ``write_export`` adds the file handling:
format from the extension, atomic replace (a crash never leaves half a transcript), ``-`` for stdout.

Conventions shared by the formats:
- A *turn* (md, txt) is a run of consecutive segments with the same speaker label.
- A *cue* (srt, vtt) is a piece of a speaker's turn of at most ``MAX_CUE_S`` seconds and two lines of
  ``MAX_LINE_CHARS``, following the usual subtitle guidance (BBC subtitle guidelines: two lines of
  about 37-42 characters; Netflix timed-text style guide: at most 7 s per event). With word times, cues
  break at sentence ends and pauses (``CUE_PAUSE_S``) within the turn, never inside a word; without them
  a segment is cut at the word boundaries nearest equal lengths. A segment without a transcript still
  gets a cue, ``[Speaker 2]``, so a viewer sees who is talking.
- Overlap: segments of two speakers may overlap in time (the pyannote segmenter labels overlapped
  speech). RTTM and JSON keep every segment as is. md, txt, srt and vtt show each speaker's words, a word
  going to the speaker whose speech covers it; where two speakers' segments cover it, to the one whose
  turn it continues (the segment that started first), so a word both recognisers heard is shown once.
- RTTM uses the label ``Me`` for the owner and replaces blanks in labels with ``_`` (RTTM is split on
  whitespace, so "Speaker 2" would otherwise become two fields).
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .._fs import atomic_write
from ..errors import ExportError
from ..events import EVENTS_SCHEMA, EventStream  # noqa: F401 - re-exported (the event contract)
from .model import Segment, Session

#: Formats ``export`` writes, by name (also the file extension).
EXPORT_FORMATS = ("md", "txt", "srt", "vtt", "json", "rttm")
#: What ``--out -`` writes when no format is given: plain text reads best in a terminal and a pipe.
STDOUT_FORMAT = "txt"
#: Version of the JSON export's layout (docs/schema/session.schema.json); bumped when a field changes
#: meaning or goes away, not when one is added.
SESSION_SCHEMA = "idme.session/1"
#: Other names accepted for a format (extension or ``fmt`` argument).
_ALIASES = {"markdown": "md", "text": "txt", "webvtt": "vtt"}
#: Longest subtitle cue, s (Netflix timed-text style guide: 7 s maximum duration).
MAX_CUE_S = 7.0
#: Characters per subtitle line; a cue has at most two (BBC guidelines: 37-42 characters per line).
MAX_LINE_CHARS = 42
#: A pause between two words at least this long ends a cue (s): subtitles follow the rhythm of speech.
CUE_PAUSE_S = 0.6
#: A sentence end (``.``, ``?``, ``!``) ends a cue once the cue holds at least this many characters.
CUE_SENTENCE_MIN_CHARS = 16
#: Marker for a turn whose speech was not transcribed (md, txt).
NO_TRANSCRIPT = "(no transcript)"
_KIND_NAMES = {"me": "owner", "enrolled": "enrolled", "unknown": "unknown"}


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def export(session: Session, fmt: str) -> str:
    """The session rendered as ``fmt`` (one of :data:`EXPORT_FORMATS`); an empty session gives a valid,
    empty transcript (an empty SRT, a bare ``WEBVTT`` header, a markdown header saying "no speech")."""
    return _RENDERERS[_normalise_format(fmt)](session)


def write_export(session: Session, out: str | os.PathLike[str], fmt: str | None = None) -> Path | None:
    """Writes ``export(session, fmt)`` to ``out`` and returns the path (None for stdout).

    out: a file path, or "-" for stdout. fmt: a format name; None takes it from the extension of ``out``
        (``STDOUT_FORMAT`` for stdout).
    The file is replaced atomically (temporary file in the same directory, fsync, ``os.replace``); a new
    file is created 0600, an existing one keeps its mode. Raises ExportError with one line for an
    unknown format or an unwritable path, leaving nothing behind.
    """
    to_stdout = str(out) == "-"
    if fmt is None and to_stdout:
        fmt = STDOUT_FORMAT
    if fmt is None:
        suffix = Path(out).suffix.lstrip(".")
        if not suffix:
            raise ExportError(f"cannot tell the export format of '{out}' (no extension); "
                              f"use one of {', '.join('.' + f for f in EXPORT_FORMATS)} or pass a format")
        fmt = suffix
    text = export(session, fmt)
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    path = Path(out).expanduser()
    _atomic_write(path, text.encode("utf-8"), hint=f"{session.id}.{_normalise_format(fmt)}")
    return path


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------


def format_name(fmt: str) -> str:
    """The canonical name of export format ``fmt`` ("markdown" -> "md", ".VTT" -> "vtt"); ExportError naming
    the valid ones otherwise."""
    return _normalise_format(fmt)


def _normalise_format(fmt: str) -> str:
    name = str(fmt).lower().lstrip(".")
    name = _ALIASES.get(name, name)
    if name not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; use one of {', '.join(EXPORT_FORMATS)}")
    return name


def _clock(seconds: float) -> str:
    """hh:mm:ss (hours grow past 99 rather than wrap)."""
    s = max(0, int(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _join_words(words: Iterable[str]) -> str:
    """Joins recogniser words: Whisper words carry their own leading space (and none in Chinese or
    Japanese), Vosk words carry none and need one."""
    words = list(words)
    if any(w[:1].isspace() for w in words):
        return _one_line("".join(words))
    return _one_line(" ".join(words))


def _shown_words(segments: list[Segment]) -> dict[int, list]:
    """seg_id -> the words each segment shows, after the overlap rule of the module docstring.

    A word is dropped from its segment when, at the word's middle, a segment of another speaker that
    started earlier covers it (that speaker's turn is the one it continues)."""
    out: dict[int, list] = {}
    ordered = sorted(segments, key=lambda seg: (seg.start, seg.seg_id))
    for seg in ordered:
        rivals = [o for o in ordered if o.speaker != seg.speaker and o.start < seg.end and o.end > seg.start
                  and (o.start, o.seg_id) < (seg.start, seg.seg_id)]
        kept = []
        for w in seg.words:
            mid = (w.start + w.end) / 2
            if not any(o.start <= mid <= o.end for o in rivals):
                kept.append(w)
        out[seg.seg_id] = kept
    return out


def _seg_text(seg: Segment, shown: dict[int, list] | None) -> str:
    """The segment's text as shown: its words after the overlap rule when it has words, else its text."""
    if shown is None or not seg.words:
        return _one_line(seg.text)
    kept = shown.get(seg.seg_id, list(seg.words))
    if len(kept) == len(seg.words):
        return _one_line(seg.text)
    return _join_words(w.word for w in kept)


@dataclass(frozen=True)
class _Turn:
    """Consecutive segments of one speaker."""

    speaker: str
    kind: str
    start: float
    end: float
    text: str  # "" when none of its segments was transcribed


def _turns(segments: Iterable[Segment]) -> list[_Turn]:
    segments = sorted(segments, key=lambda seg: (seg.start, seg.seg_id))
    shown = _shown_words(segments)
    turns: list[_Turn] = []
    texts: list[str] = []
    for seg in segments:
        text = _seg_text(seg, shown)
        if turns and turns[-1].speaker == seg.speaker:
            last = turns[-1]
            texts[-1] = f"{texts[-1]} {text}".strip()
            turns[-1] = _Turn(last.speaker, last.kind, last.start, max(last.end, seg.end), texts[-1])
        else:
            texts.append(text)
            turns.append(_Turn(seg.speaker, seg.kind, seg.start, seg.end, text))
    return turns


# --------------------------------------------------------------------------------------------------
# md, txt
# --------------------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def _md_escape(text: str) -> str:
    """Backslash-escapes the characters that would turn a transcript or a name into markup."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def _display_date(created_at: str) -> str:
    try:
        when = datetime.fromisoformat(created_at)
    except ValueError:
        return created_at
    zone = "UTC" if when.utcoffset() is not None and not when.utcoffset() else when.strftime("%z")
    return f"{when:%Y-%m-%d %H:%M:%S} {zone}".strip()


def _model_line(models: dict) -> str:
    parts = []
    for role, info in models.items():
        if info is None:
            parts.append(f"{role}: none")
        elif isinstance(info, dict) and info.get("name"):
            version = f" {info['version']}" if info.get("version") not in (None, "") else ""
            parts.append(f"{role}: {info['name']}{version}")
        else:
            parts.append(f"{role}: {json.dumps(info, ensure_ascii=False, default=str)}")
    return "; ".join(parts) or "not recorded"


def _to_md(session: Session) -> str:
    speakers = ", ".join(f"{_md_escape(s.label)} ({_KIND_NAMES.get(s.kind, s.kind)})" for s in session.speakers)
    lines = [
        f"# idme session {session.id}",
        "",
        f"- **Date:** {_display_date(session.created_at)}",
        f"- **Duration:** {_clock(session.duration_s)}",
        f"- **Status:** {session.status}",
    ]
    if session.source:
        lines.append(f"- **Source:** {_md_escape(_one_line(session.source))}")
    lines += [
        f"- **Speakers:** {speakers or 'none'}",
        f"- **Models:** {_md_escape(_model_line(session.models))}",
        "",
        "## Transcript",
        "",
    ]
    turns = _turns(session.segments)
    if not turns:
        lines += ["_No speech was recorded._", ""]
    if _labels_only(session):
        # Who spoke when, nothing to read: each turn with its end time, no "(no transcript)" on every line.
        lines += [f"[{_clock(t.start)}-{_clock(t.end)}] **{_md_escape(t.speaker)}:**\n" for t in turns]
        return "\n".join(lines)
    for turn in turns:
        text = _md_escape(turn.text) if turn.text else f"*{NO_TRANSCRIPT}*"
        # One paragraph per turn: a blank line between turns keeps them apart in every renderer.
        lines += [f"[{_clock(turn.start)}] **{_md_escape(turn.speaker)}:** {text}", ""]
    return "\n".join(lines)


def _labels_only(session: Session) -> bool:
    """True for a session run without a recogniser (``--asr none``): no segment can have text."""
    return not (session.models or {}).get("asr") and not any(seg.text for seg in session.segments)


def _to_txt(session: Session) -> str:
    turns = _turns(session.segments)
    if _labels_only(session):
        return "".join(f"[{_clock(t.start)}-{_clock(t.end)}] {t.speaker}\n" for t in turns)
    return "".join(f"[{_clock(t.start)}] {t.speaker}: {t.text or NO_TRANSCRIPT}\n" for t in turns)


# --------------------------------------------------------------------------------------------------
# srt, vtt
# --------------------------------------------------------------------------------------------------


@dataclass
class _Cue:
    start_ms: int
    end_ms: int
    speaker: str
    text: str  # "" when the segment has no transcript


def _ms(seconds: float) -> int:
    return max(0, int(round(seconds * 1000)))


def _tokens(text: str, budget: int) -> list[tuple[str, str]]:
    """(separator, token) pairs; a token longer than ``budget`` (text without blanks, e.g. Chinese) is
    cut into pieces joined with no separator."""
    out = []
    for m in re.finditer(r"\S+", text):
        sep = " " if out else ""
        tok = m.group()
        for i in range(0, len(tok), budget):
            out.append((sep if i == 0 else "", tok[i:i + budget]))
    return out


def _balanced_cuts(offsets: list[int], total: int, n_pieces: int) -> list[int]:
    """Token indices where pieces start: the token boundary nearest each k * total / n_pieces."""
    cuts = [0]
    for k in range(1, n_pieces):
        goal = k * total / n_pieces
        best = min(range(cuts[-1] + 1, len(offsets)), key=lambda i: abs(offsets[i] - goal), default=None)
        if best is None:
            break
        cuts.append(best)
    return cuts


def _chunk_segment(seg: Segment, budget: int) -> list[tuple[float, float, str]]:
    """(start_s, end_s, text) pieces of one segment that each fit a cue.

    A long segment is cut into the fewest pieces of at most ``budget`` characters and ``MAX_CUE_S``
    seconds, cut at the word boundaries nearest equal lengths, so the last cue is not a one-word stub.
    """
    text = _one_line(seg.text)
    dur = seg.end - seg.start
    if not text or (len(text) <= budget and dur <= MAX_CUE_S):
        return [(seg.start, seg.end, text)]
    words = [w for w in seg.words if w.word.strip()]
    if words:  # times from the recogniser's word timings
        pieces = [(w.word, w.start, w.end) for w in words]
        join = _join_words
    else:  # no word timings: spread the time in proportion to the characters
        tokens = _tokens(text, budget)
        pieces, pos = [], 0
        for sep, tok in tokens:
            pos += len(sep)
            pieces.append((sep + tok, seg.start + dur * pos / len(text), seg.start + dur * (pos + len(tok)) / len(text)))
            pos += len(tok)
        join = lambda parts: "".join(parts).strip()  # noqa: E731 - separators are already in the tokens
    offsets, pos = [], 0
    for word, _, _ in pieces:
        offsets.append(pos)
        pos += len(word.strip()) + 1
    n_pieces = max(math.ceil(len(text) / budget), math.ceil(dur / MAX_CUE_S))
    while True:
        cuts = _balanced_cuts(offsets, pos, n_pieces)
        groups = [pieces[a:b] for a, b in zip(cuts, cuts[1:] + [len(pieces)])]
        fits = all(len(join(w for w, _, _ in g)) <= budget and g[-1][2] - g[0][1] <= MAX_CUE_S for g in groups)
        if fits or n_pieces >= len(pieces):
            break
        n_pieces += 1
    # Each chunk runs until the next one starts, so the cues of a segment cover it without gaps.
    starts = [seg.start] + [min(max(g[0][1], seg.start), seg.end) for g in groups[1:]]
    ends = starts[1:] + [seg.end]
    return [(a, b, join(w for w, _, _ in g)) for a, b, g in zip(starts, ends, groups)]


def _word_cues(words: list, budget: int) -> list[tuple[float, float, str]]:
    """(start_s, end_s, text) cues of one speaker's turn from its words in time order: a cue ends at a
    sentence end (once it holds ``CUE_SENTENCE_MIN_CHARS``), before a pause of ``CUE_PAUSE_S``, and before
    a word that would take it past ``budget`` characters or ``MAX_CUE_S`` seconds; never inside a word."""
    out: list[tuple[float, float, str]] = []
    cur: list = []

    def close() -> None:
        if cur:
            out.append((cur[0].start, cur[-1].end, _join_words(w.word for w in cur)))
            cur.clear()

    for w in words:
        if cur:
            too_long = len(_join_words([*(x.word for x in cur), w.word])) > budget or w.end - cur[0].start > MAX_CUE_S
            if too_long or w.start - cur[-1].end >= CUE_PAUSE_S:
                close()
        cur.append(w)
        text = w.word.strip()
        if text[-1:] in ".?!" and len(_join_words(x.word for x in cur)) >= CUE_SENTENCE_MIN_CHARS:
            close()
    close()
    return out


def _cues(session: Session) -> list[_Cue]:
    cues: list[_Cue] = []
    segments = sorted(session.segments, key=lambda seg: (seg.start, seg.seg_id))
    shown = _shown_words(segments)
    run: list = []  # words of the current run of one speaker's segments (a turn)
    run_speaker = None
    span = [0.0, 0.0]  # start of the run's first worded segment, end of its last

    def flush_run() -> None:
        if not run:
            return
        budget = max(2 * MAX_LINE_CHARS - len(run_speaker) - 2, MAX_LINE_CHARS)
        pieces = _word_cues(sorted(run, key=lambda w: (w.start, w.end)), budget)
        # The turn's cues cover it: the first starts with the turn, the last ends with it, and a cue runs on
        # to the next one unless a pause separates them.
        pieces[0] = (min(pieces[0][0], span[0]), *pieces[0][1:])
        pieces[-1] = (pieces[-1][0], max(pieces[-1][1], span[1]), pieces[-1][2])
        for k in range(len(pieces) - 1):
            a, b, text = pieces[k]
            if pieces[k + 1][0] - b < CUE_PAUSE_S:
                pieces[k] = (a, pieces[k + 1][0], text)
        for a, b, text in pieces:
            cues.append(_Cue(_ms(a), _ms(b), run_speaker, text))
        run.clear()

    for seg in segments:
        speaker = _one_line(seg.speaker)
        if speaker != run_speaker:
            flush_run()
            run_speaker = speaker
        words = [w for w in shown.get(seg.seg_id, ()) if w.word.strip()]
        if words:
            if not run:
                span[0] = seg.start
            span[1] = seg.end
            run.extend(words)
            continue
        if seg.words and seg.text:  # every word went to an overlapping speaker: nothing of its own to show
            continue
        budget = max(2 * MAX_LINE_CHARS - len(speaker) - 2, MAX_LINE_CHARS)
        for a, b, text in _chunk_segment(seg, budget):
            cues.append(_Cue(_ms(a), _ms(b), speaker, text))
    flush_run()
    cues.sort(key=lambda c: (c.start_ms, c.end_ms))
    # One speaker cannot say two things at once: clip a cue where the next cue of the same speaker
    # starts (or merge the two when they start together), then make every cue last at least 1 ms.
    last: dict[str, _Cue] = {}
    kept: list[_Cue] = []
    for cue in cues:
        prev = last.get(cue.speaker)
        if prev is not None and cue.start_ms < prev.end_ms:
            if cue.start_ms > prev.start_ms:
                prev.end_ms = cue.start_ms
            else:
                prev.end_ms = max(prev.end_ms, cue.end_ms)
                prev.text = f"{prev.text} {cue.text}".strip()
                continue
        last[cue.speaker] = cue
        kept.append(cue)
    for cue in kept:
        cue.end_ms = max(cue.end_ms, cue.start_ms + 1)
    return kept


def _wrap(text: str) -> list[str]:
    """At most two lines: one when it fits, else broken at the blank nearest the middle."""
    if len(text) <= MAX_LINE_CHARS or " " not in text:
        return [text]
    mid = len(text) / 2
    cut = min((i for i, ch in enumerate(text) if ch == " "), key=lambda i: abs(i - mid))
    return [text[:cut], text[cut + 1:]]


def _cue_text(cue: _Cue, voice_tag: bool = False) -> str:
    """The cue's words with a visible "Speaker:" prefix (srt); with ``voice_tag`` (vtt) the name is in the
    ``<v Name>`` tag instead, so players that show voices do not show it twice."""
    if voice_tag:
        return cue.text or f"[{cue.speaker}]"
    return f"{cue.speaker}: {cue.text}" if cue.text else f"[{cue.speaker}]"


def _stamp(ms: int, sep: str) -> str:
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _to_srt(session: Session) -> str:
    blocks = []
    for i, cue in enumerate(_cues(session), start=1):
        lines = "\n".join(_wrap(_cue_text(cue)))
        blocks.append(f"{i}\n{_stamp(cue.start_ms, ',')} --> {_stamp(cue.end_ms, ',')}\n{lines}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text: & and < start entities/tags; ">" is escaped too so "-->" can never appear.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _to_vtt(session: Session) -> str:
    blocks = ["WEBVTT\n"]
    for cue in _cues(session):
        lines = "\n".join(_vtt_escape(line) for line in _wrap(_cue_text(cue, voice_tag=True)))
        # <v Speaker> names the voice once (players render it, webvtt-py reads it as ``voice``); a visible
        # "Speaker:" prefix as well showed the name twice (review 2026-12-01 item 13).
        blocks.append(f"{_stamp(cue.start_ms, '.')} --> {_stamp(cue.end_ms, '.')}\n"
                      f"<v {_vtt_escape(cue.speaker)}>{lines}\n")
    return "\n".join(blocks)


# --------------------------------------------------------------------------------------------------
# json, rttm
# --------------------------------------------------------------------------------------------------


def _to_json(session: Session) -> str:
    head = session.to_dict()
    del head["segments"]
    from .. import __version__

    doc = {"schema": SESSION_SCHEMA, "idme_version": __version__, "session": head,
           "segments": [s.to_dict() for s in session.segments]}
    return json.dumps(doc, ensure_ascii=False, indent=2, default=str) + "\n"


def _rttm_token(text: str) -> str:
    return "_".join(str(text).split()) or "NA"


def _to_rttm(session: Session) -> str:
    # The recording's name (what a reference RTTM calls it) when the session came from a file, so the
    # export scores against a reference as is; the session id otherwise (microphone sessions).
    file_id = _rttm_token((session.settings or {}).get("uri") or session.id)
    lines = []
    for seg in session.segments:
        start, dur = round(seg.start, 3), round(seg.end - seg.start, 3)
        if dur <= 0:  # RTTM turns have positive duration; a zero-length segment says nothing
            continue
        label = "Me" if seg.kind == "me" else _rttm_token(seg.speaker)
        lines.append(f"SPEAKER {file_id} 1 {start:.3f} {dur:.3f} <NA> <NA> {label} <NA> <NA>\n")
    return "".join(lines)


_RENDERERS: dict[str, Callable[[Session], str]] = {
    "md": _to_md, "txt": _to_txt, "srt": _to_srt, "vtt": _to_vtt, "json": _to_json, "rttm": _to_rttm,
}


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes, hint: str) -> None:
    """Writes the export atomically (see :func:`idme._fs.atomic_write`); a replaced file keeps its mode,
    a new one is 0600."""
    if path.is_dir():
        raise ExportError(f"cannot write {path}: it is a directory; give a file name such as {path / hint}")
    parent = path.parent
    if not parent.is_dir():
        raise ExportError(f"cannot write {path}: directory {parent} does not exist")
    try:
        atomic_write(path, data, 0o600, keep_mode=True)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from exc
