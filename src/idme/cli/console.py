"""The live rich console of ``idme listen``: who is talking now, and the last segments with their text,
plus the progress of file mode on stderr.

Speakers keep one colour for the whole session (the owner always green), so a glance is enough. The view
fits the terminal: as many recent turns as its height holds, a speaker column as wide as the names
present. When stdout is not a terminal it prints plain lines (one per turn) instead of a table.

The score column is the cosine similarity (-1..1) between the segment and the voiceprint of the speaker
it was given; a new speaker's first segment shows its similarity to the closest voice already known,
which is why it became a new speaker (see README, "Reading the output").
"""

from __future__ import annotations

import bisect
import math
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..pipeline import SegmentEvent

_PALETTE = ("cyan", "magenta", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta", "orange3",
            "turquoise2", "plum2")
#: Speaker column width bounds, characters: "Speaker 1" fits the lower one; longer names are cut at the upper.
_SPEAKER_MIN, _SPEAKER_MAX = 9, 24
#: Terminal lines the table and view need besides its rows: title, header, three rules, the status line,
#: the "talking now" line and one spare for the cursor.
_CHROME_LINES = 8


def speaker_style(label: str, kind: str) -> str:
    """A stable colour per speaker: Me green; others from a fixed palette by a hash of the label."""
    if kind == "me":
        return "bold green"
    return _PALETTE[zlib.crc32(label.encode()) % len(_PALETTE)] + (" bold" if kind == "enrolled" else "")


def stamp(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass
class _Turn:
    start: float
    end: float
    speaker: str
    kind: str
    score: float
    text: str
    #: The text is (partly) partial: heard while the segment was spoken, its final text not in yet.
    partial: bool = False


def _turns(segs: list[SegmentEvent], max_gap_s: float = 2.0,
           partial: dict[int, str] | None = None) -> list[_Turn]:
    """Consecutive segments of one speaker, shown as one row (score: duration-weighted mean)."""
    out: list[_Turn] = []
    partial = partial or {}
    for e in segs:
        last = out[-1] if out else None
        text, is_partial = e.text, False
        if not text and e.id in partial:
            text, is_partial = partial[e.id], True
        if last is not None and last.speaker == e.speaker and e.start - last.end <= max_gap_s:
            d0, d1 = last.end - last.start, e.end - e.start
            last.score = (last.score * d0 + e.score * d1) / max(d0 + d1, 1e-9)
            last.end = e.end
            last.text = " ".join(t for t in (last.text, text) if t)
            last.partial = last.partial or is_partial
        else:
            out.append(_Turn(e.start, e.end, e.speaker, e.kind, e.score, text, is_partial))
    return out


def plain_line(t: _Turn) -> str:
    """One turn as a plain line: ``[00:00:01-00:00:05] Me (0.72): text``."""
    text = f": {t.text}" if t.text else ""
    return f"[{stamp(t.start)}-{stamp(t.end)}] {t.speaker} ({t.score:.2f}){text}"


class LiveView:
    """A sink for SegmentEvents that renders a live table (terminal) or prints plain lines (pipe, file).

    rows: how many recent turns to show; None fits them to the terminal's height (wrapped text counted).
    """

    def __init__(self, console: Console, title: str, rows: int | None = None) -> None:
        self.console = console
        self.title = title
        self.rows = rows
        self.segments: dict[int, SegmentEvent] = {}
        #: Partial text of segments whose final text has not arrived (shown dim until it does).
        self._partial: dict[int, str] = {}
        #: (start, id) of every final segment, kept sorted as events arrive (no re-sort per event).
        self._keys: list[tuple[float, int]] = []
        #: Segments being spoken (interim labels) by id: two when two people talk at once.
        self.talking: dict[int, SegmentEvent] = {}
        self._live: Live | None = None
        self._t0 = time.monotonic()
        #: Extra status shown under the table (file mode: position, transcription backlog, ETA).
        self.status: Callable[[], str] | None = None
        #: False when nothing transcribes: rows then show no "…" waiting for text.
        self.expect_text = True
        # Events arrive on the session's thread while rich's refresh thread renders.
        self._lock = threading.Lock()
        self._closing = False

    def __enter__(self) -> "LiveView":
        self._t0 = time.monotonic()
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False,
                              get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self.talking.clear()
            self._closing = True  # the last refresh shows every turn, without the status line
            self._live.refresh()
            self._live.__exit__(*exc)
        else:
            # Not a terminal (redirected to a file, piped): plain lines a script or a reader can use.
            for t in self._last_turns(None):
                self.console.print(plain_line(t), markup=False, highlight=False, soft_wrap=True)

    def __call__(self, ev: SegmentEvent) -> None:
        with self._lock:
            self._add(ev)

    def _add(self, ev: SegmentEvent) -> None:
        if ev.final:
            old = self.segments.get(ev.id)
            self.segments[ev.id] = ev
            if old is None or old.start != ev.start:
                if old is not None:
                    self._keys.pop(bisect.bisect_left(self._keys, (old.start, ev.id)))
                bisect.insort(self._keys, (ev.start, ev.id))
            if ev.text or (old is not None and old.text):
                self._partial.pop(ev.id, None)
            self.talking.pop(ev.id, None)
        else:
            before = self.talking.get(ev.id)
            if ev.text:
                self._partial[ev.id] = ev.text
            elif before is not None and before.text:
                ev = SegmentEvent(ev.id, ev.start, ev.end, ev.speaker, ev.kind, ev.score, False, ev.latency_ms,
                                  before.text)  # a refined interim label keeps the partial text so far
            # Segments still "talking" that ended before this one began are over (an interim label whose
            # chunk was labelled under another id); ones that overlap it are two people at once.
            for sid in [i for i, e in self.talking.items() if i != ev.id and e.end < ev.start]:
                del self.talking[sid]
            self.talking[ev.id] = ev

    def _last_turns(self, n: int | None) -> list[_Turn]:
        """The last ``n`` turns (all when None), grouping only as many recent segments as that needs."""
        if n is None:
            return _turns([self.segments[i] for _, i in self._keys], partial=self._partial)
        take = 4 * n
        while True:
            turns = _turns([self.segments[i] for _, i in self._keys[-take:]], partial=self._partial)
            if len(turns) > n or take >= len(self._keys):
                return turns[-n:]
            take *= 2

    def _speaker_width(self) -> int:
        names = {e.speaker for e in self.segments.values()} | {e.speaker for e in self.talking.values()}
        return max(_SPEAKER_MIN, min(_SPEAKER_MAX, max((len(n) for n in names), default=0)))

    def _fitting_turns(self, speaker_w: int) -> list[_Turn]:
        """The latest turns that fit the terminal's height, counting the lines their wrapped text takes."""
        if self.rows is not None:
            return self._last_turns(self.rows)
        budget = max(3, self.console.height - _CHROME_LINES)
        text_w = max(10, self.console.width - (8 + speaker_w + 5 + 13))  # other columns, padding, borders
        out: list[_Turn] = []
        used = 0
        for t in reversed(self._last_turns(budget)):
            lines = max(1, math.ceil(len(t.text or "…") / text_w))
            if used + lines > budget:
                break
            out.append(t)
            used += lines
        return out[::-1]

    def _render(self, all_rows: bool = False) -> Group:
        with self._lock:
            return self._render_locked(all_rows)

    def _render_locked(self, all_rows: bool = False) -> Group:
        all_rows = all_rows or self._closing
        speaker_w = self._speaker_width()
        title = Text(self.title, no_wrap=True, overflow="ellipsis")
        title.truncate(max(10, self.console.width - 2), overflow="ellipsis")
        table = Table(title=title, expand=True, show_lines=False, title_justify="left")
        table.add_column("time", width=8, no_wrap=True, style="dim")
        table.add_column("speaker", width=speaker_w, no_wrap=True, overflow="ellipsis")
        table.add_column("score", width=5, justify="right", style="dim")
        table.add_column("text", ratio=1)
        turns = self._last_turns(None) if all_rows else self._fitting_turns(speaker_w)
        for t in turns:
            text = Text(t.text, style="dim italic") if t.text and t.partial else t.text
            table.add_row(stamp(t.start), Text(t.speaker, style=speaker_style(t.speaker, t.kind)),
                          f"{t.score:.2f}", text or Text("…" if self.expect_text else "", style="dim"))
        parts: list = [table]
        for now in sorted(self.talking.values(), key=lambda e: (e.start, e.id)):
            parts.append(Text.assemble(
                ("● talking now: ", "dim"), (now.speaker, speaker_style(now.speaker, now.kind)),
                (f"  ({stamp(now.start)}, {now.end - now.start:.0f} s)", "dim"),
                (f"  {now.text}" if now.text else "", "italic")))
        if not all_rows:
            extra = self.status() if self.status is not None else ""
            parts.append(Text(f"elapsed {stamp(time.monotonic() - self._t0)}" + (f" · {extra}" if extra else "")
                              + " · Ctrl+C to stop", style="dim", no_wrap=True, overflow="ellipsis"))
        return Group(*parts)


def progress_text(position_s: float, total_s: float | None, backlog: int, elapsed_s: float) -> str:
    """``labelled 00:16:33 of 00:28:24 (58%) · transcribing 3 turn(s) · ETA 00:04:10``."""
    parts = [f"labelled {stamp(position_s)}" + (f" of {stamp(total_s)}" if total_s else "")]
    if total_s:
        parts[0] += f" ({min(100.0, 100.0 * position_s / total_s):.0f}%)"
    if backlog:
        parts.append(f"transcribing {backlog} turn(s)")
    if total_s and 0 < position_s < total_s and elapsed_s > 1.0:
        parts.append(f"ETA {stamp(elapsed_s * (total_s - position_s) / position_s)}")
    return " · ".join(parts)


class FileProgress:
    """File-mode progress on stderr while a session runs, when stderr is a terminal: a live status line,
    then one closing line. Redirected stderr (logs, scripts, CI) stays free of it: there it would only
    bury the one-line errors. ``position()`` is the audio labelled so far (s), ``backlog()`` the turns
    waiting for their text; both are read from this object's own thread."""

    def __init__(self, console: Console, label: str, total_s: float | None, position: Callable[[], float],
                 backlog: Callable[[], int], every_s: float = 0.5) -> None:
        self.console = console
        self.label = label
        self.total_s = total_s
        self.position = position
        self.backlog = backlog
        self.every_s = every_s
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def text(self) -> str:
        return progress_text(self.position(), self.total_s, self.backlog(), time.monotonic() - self._t0)

    def __enter__(self) -> "FileProgress":
        self._t0 = time.monotonic()
        if not self.console.is_terminal:
            return self
        self._thread = threading.Thread(target=self._run, name="idme-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is None:
            return
        self._thread.join()
        elapsed = time.monotonic() - self._t0
        audio = f"{stamp(self.total_s)} of audio" if self.total_s else "the recording"
        self.console.print(f"{self.label}: done, {audio} in {stamp(elapsed)}", markup=False, highlight=False)

    def _run(self) -> None:
        with self.console.status(self.label, spinner="dots") as status:
            while not self._done.wait(self.every_s):
                status.update(f"{self.label}: {self.text()}")
