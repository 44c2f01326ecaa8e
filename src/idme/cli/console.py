"""The live rich console of ``idme listen``: who is talking now, and the last segments with their text.

Speakers keep one colour for the whole session (the owner always green), so a glance is enough.
"""

from __future__ import annotations

import bisect
import zlib
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..pipeline import SegmentEvent

_PALETTE = ("cyan", "magenta", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta", "orange3",
            "turquoise2", "plum2")


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


def _turns(segs: list[SegmentEvent], max_gap_s: float = 2.0) -> list[_Turn]:
    """Consecutive segments of one speaker, shown as one row (score: duration-weighted mean)."""
    out: list[_Turn] = []
    for e in segs:
        last = out[-1] if out else None
        if last is not None and last.speaker == e.speaker and e.start - last.end <= max_gap_s:
            d0, d1 = last.end - last.start, e.end - e.start
            last.score = (last.score * d0 + e.score * d1) / max(d0 + d1, 1e-9)
            last.end = e.end
            last.text = " ".join(t for t in (last.text, e.text) if t)
        else:
            out.append(_Turn(e.start, e.end, e.speaker, e.kind, e.score, e.text))
    return out


class LiveView:
    """A sink for SegmentEvents that renders a live table (terminal) or prints final segments (pipe)."""

    def __init__(self, console: Console, title: str, rows: int = 14) -> None:
        self.console = console
        self.title = title
        self.rows = rows
        self.segments: dict[int, SegmentEvent] = {}
        #: (start, id) of every final segment, kept sorted as events arrive (no re-sort per event).
        self._keys: list[tuple[float, int]] = []
        self.now: SegmentEvent | None = None
        self._live: Live | None = None

    def __enter__(self) -> "LiveView":
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self.now = None
            self._live.update(self._render(all_rows=True))
            self._live.__exit__(*exc)
        else:
            self.console.print(self._render(all_rows=True))

    def __call__(self, ev: SegmentEvent) -> None:
        if ev.final:
            old = self.segments.get(ev.id)
            self.segments[ev.id] = ev
            if old is None or old.start != ev.start:
                if old is not None:
                    self._keys.pop(bisect.bisect_left(self._keys, (old.start, ev.id)))
                bisect.insort(self._keys, (ev.start, ev.id))
            if self.now is not None and self.now.id == ev.id:
                self.now = None
        else:
            self.now = ev
        if self._live is not None:
            self._live.update(self._render())

    def _last_turns(self, n: int | None) -> list[_Turn]:
        """The last ``n`` turns (all when None), grouping only as many recent segments as that needs."""
        if n is None:
            return _turns([self.segments[i] for _, i in self._keys])
        take = 4 * n
        while True:
            turns = _turns([self.segments[i] for _, i in self._keys[-take:]])
            if len(turns) > n or take >= len(self._keys):
                return turns[-n:]
            take *= 2

    def _render(self, all_rows: bool = False) -> Group | Table:
        table = Table(title=self.title, expand=True, show_lines=False, title_justify="left")
        table.add_column("time", width=8, no_wrap=True, style="dim")
        table.add_column("speaker", width=14, no_wrap=True)
        table.add_column("score", width=5, justify="right", style="dim")
        table.add_column("text", ratio=1)
        turns = self._last_turns(None if all_rows else self.rows)
        for t in turns:
            table.add_row(stamp(t.start), Text(t.speaker, style=speaker_style(t.speaker, t.kind)),
                          f"{t.score:.2f}", t.text or Text("…", style="dim"))
        if self.now is None:
            return table
        now = Text.assemble(("● talking now: ", "dim"), (self.now.speaker, speaker_style(self.now.speaker, self.now.kind)),
                            (f"  ({stamp(self.now.start)}, {self.now.end - self.now.start:.0f} s)", "dim"))
        return Group(table, now)
