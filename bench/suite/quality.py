"""Labelling quality: DER and the owner rates on meetings-dev (cross-checked against the shared scorer), and
pooled DER on the AMI excerpts, where nobody is enrolled and every talker is an unknown speaker.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idme.audio import FileSource
from idme.embed.base import Embedder
from idme.eval.der import read_uem, score_meeting, score_rttm_set
from idme.identity.thresholds import Thresholds

from .sessions import Meeting, SessionRun, run_session

log = logging.getLogger(__name__)

#: The scorer's rates, averaged over meetings in the report.
RATES = ("der", "miss", "fa", "confusion", "me_recall", "false_me")
#: Both scorers round to 4 digits; a difference above this is a disagreement.
AGREE_TOL = 1.5e-4


@dataclass(frozen=True)
class MeetingScore:
    """One meeting scored by ``idme.eval.der.score_meeting`` and by the shared tool."""

    meeting: str
    n_speakers: int
    noise_snr_db: float | None
    named: int
    #: idme.eval.der.score_meeting's dict (der, miss, fa, confusion, me_recall, false_me, n_ref_speakers,
    #: n_hyp_labels).
    scores: dict
    #: The shared score_meeting.py's output on the same JSONL.
    tool: dict
    #: Keys on which the two differ by more than AGREE_TOL (empty: they agree).
    disagree: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"meeting": self.meeting, "n_speakers": self.n_speakers, "noise_snr_db": self.noise_snr_db,
                "named": self.named, "scores": self.scores, "tool": self.tool, "disagree": list(self.disagree)}


@dataclass
class MeetingQuality:
    """meetings-dev, every meeting labelled in file mode with its owner and named people enrolled."""

    scorer: str
    meetings: list[MeetingScore] = field(default_factory=list)

    def mean(self) -> dict[str, float]:
        """Unweighted mean of each rate over the meetings."""
        return {k: float(np.mean([m.scores[k] for m in self.meetings])) for k in RATES}

    @property
    def agree(self) -> bool:
        return all(not m.disagree for m in self.meetings)

    def to_dict(self) -> dict:
        return {"scorer": self.scorer, "agree": self.agree,
                "mean": {k: round(v, 4) for k, v in self.mean().items()},
                "meetings": [m.to_dict() for m in self.meetings]}


def run_tool(scorer: Path, meeting_dir: Path, hyp: Path) -> dict:
    """Runs ``scorer MEETING_DIR HYP`` in a subprocess and parses the JSON it prints."""
    out = subprocess.run([sys.executable, str(scorer), str(meeting_dir), str(hyp)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def disagreements(ours: Mapping, theirs: Mapping, tol: float = AGREE_TOL) -> tuple[str, ...]:
    """Keys of ``theirs`` whose value in ``ours`` is missing or differs by more than ``tol``."""
    bad = []
    for k, v in theirs.items():
        mine = ours.get(k)
        if mine is None or abs(float(mine) - float(v)) > tol:
            bad.append(k)
    return tuple(bad)


def score_meetings(meetings: Sequence[Meeting], sessions: Mapping[str, SessionRun], scorer: Path,
                   hyp_dir: Path) -> MeetingQuality:
    """Scores each meeting's session both ways; the JSONL hypotheses are kept in ``hyp_dir``."""
    quality = MeetingQuality(str(scorer))
    for m in meetings:
        hyp = sessions[m.name].write_jsonl(hyp_dir / f"{m.name}.jsonl")
        ours = score_meeting(m.path, hyp)
        tool = run_tool(scorer, m.path, hyp)
        bad = disagreements(ours, tool)
        if bad:
            log.warning("%s: idme.eval.der and %s disagree on %s", m.name, scorer.name, ", ".join(bad))
        quality.meetings.append(MeetingScore(m.name, len(m.meta["speakers"]), m.meta.get("noise_snr_db"),
                                             len(m.meta.get("named") or {}), ours, tool, bad))
    return quality


@dataclass
class AmiQuality:
    """AMI excerpts labelled with zero profiles, scored on the UEM regions (md-eval style, overlap counted)."""

    #: File id -> scorer dict.
    files: dict[str, dict]
    #: Pooled over files: total errors / total scored speech.
    pooled: dict
    #: Seconds of audio labelled and wall seconds it took.
    audio_s: float
    wall_s: float
    #: Label kinds the zero-profile sessions produced (expected: only "unknown").
    kinds: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"pooled": self.pooled, "files": self.files, "audio_s": round(self.audio_s, 2),
                "wall_s": round(self.wall_s, 2), "kinds": list(self.kinds)}


def score_ami(ami_dir: Path, embedder: Embedder, thresholds: Thresholds, hyp_dir: Path,
              max_files: int | None = None) -> AmiQuality:
    """Labels each wav the UEM names with an empty profile list and scores them against reference.rttm.

    ``max_files`` scores only the first files of the UEM (the UEM passed to the scorer is cut to match).
    """
    uem = read_uem(ami_dir / "reference.uem")
    fids = sorted(uem)[:max_files]
    hyps: dict[str, list[dict]] = {}
    audio_s = wall_s = 0.0
    kinds: set[str] = set()
    for fid in fids:
        run = run_session(FileSource(ami_dir / f"{fid}.wav"), embedder, [], thresholds)
        run.write_jsonl(hyp_dir / f"ami_{fid}.jsonl")
        hyps[fid] = [e.to_dict() for e in run.events]
        kinds |= {e.kind for e in run.events}
        audio_s += run.audio_s
        wall_s += run.wall_s
    scored = score_rttm_set(ami_dir / "reference.rttm", {f: uem[f] for f in fids}, hyps)
    log.info("AMI: %d files, pooled DER %.3f", len(fids), scored["pooled"]["der"])
    return AmiQuality(scored["files"], scored["pooled"], audio_s, wall_s, tuple(sorted(kinds)))
