"""Frame-based diarization scoring: DER (miss / false alarm / confusion), owner recall, false-owner rate.

The rules are those of ``shared/tools/score_meeting.py``, and on references without overlapping speech
the numbers are identical to it (the tests run both):

- time is cut into 10 ms frames; a segment [s, e) covers frames ``round(s / 0.01)`` .. ``round(e / 0.01) - 1``;
- a collar of 0.25 s on each side of every reference segment boundary is not scored;
- a hypothesis label counts as the owner when its event has ``kind == "me"`` or its label is "me" (any
  case); a label that is a key of the meeting's ``named`` map counts as that reference speaker; every
  other label is an unknown speaker, mapped one-to-one onto the remaining reference speakers by the
  assignment that maximises matched frames (Hungarian algorithm, scipy ``linear_sum_assignment``);
- JSON events with ``"final": false`` (interim labels) are skipped; events are painted in emission
  order, so a corrected label re-emitted later overwrites the earlier one on the frames it covers.

Overlapping reference speech (AMI) is scored the standard multi-speaker way (NIST md-eval): on each
scored frame with ``n_ref`` reference speakers, ``n_hyp`` hypothesis labels and ``n_correct`` mapped
labels that match a reference speaker there,

    miss = max(0, n_ref - n_hyp),  false alarm = max(0, n_hyp - n_ref),
    confusion = min(n_ref, n_hyp) - n_correct,

and the denominator is the scored reference speech counted per speaker (sum of ``n_ref``). With at most one
reference speaker and one label per frame this is exactly score_meeting.py's arithmetic. An idme
hypothesis has one label per frame, so on a frame where two people talk at least one is a miss.

Deliberate differences from the script, only on inputs it mishandles: segments starting before 0 are
clipped to 0 (the script's slices would wrap around to the end of the array); an owner who is not among
the reference speakers gives ``me_recall``/``false_me`` None (the script raises).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import IdmeError

__all__ = [
    "DEFAULT_COLLAR_S",
    "FRAME_S",
    "DerResult",
    "Segment",
    "pool_results",
    "read_hypothesis",
    "read_rttm",
    "read_uem",
    "score_files",
    "score_meeting",
    "score_rttm_set",
    "score_segments",
]

logger = logging.getLogger(__name__)

#: Frame step of the scorer, seconds (score_meeting.py: STEP = 0.01).
FRAME_S = 0.01
#: Unscored margin on each side of every reference boundary, seconds (the usual DER collar).
DEFAULT_COLLAR_S = 0.25
#: Digits the scorer rounds its rates to.
ROUND_DIGITS = 4

# What a hypothesis may be: a JSONL/RTTM path, or events (dicts, Segments, objects with ``to_dict()``).
HypothesisSource = Union[str, os.PathLike, Iterable[Any]]


@dataclass(frozen=True)
class Segment:
    """One labelled stretch of time."""

    #: Start, seconds from the beginning of the recording.
    start: float
    #: End, seconds (exclusive).
    end: float
    #: Speaker label (reference speaker id, or the hypothesis label as emitted).
    speaker: str
    #: Hypothesis event kind ("me", "named", "unknown", ...); None for RTTM input.
    kind: str | None = None


# ---------------------------------------------------------------------------------------------- readers


def _rttm_lines(path: Path) -> list[tuple[str, Segment]]:
    """``(file_id, Segment)`` for every SPEAKER line, in file order (order matters for hypotheses)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IdmeError(f"cannot read RTTM file {path}: {exc.strerror or exc}") from None
    return _parse_rttm(text, str(path))


def _parse_rttm(text: str, where: str) -> list[tuple[str, Segment]]:
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        p = line.split()
        if len(p) < 8 or p[0] != "SPEAKER":
            continue  # like the scorer: other RTTM record types and junk lines are ignored
        try:
            start = float(p[3])
            end = start + float(p[4])  # computed exactly as the scorer does, so frames round the same way
        except ValueError:
            raise IdmeError(f"{where}:{lineno}: RTTM onset/duration are not numbers: {line.strip()!r}") from None
        out.append((p[1], Segment(start, end, p[7])))
    return out


def read_rttm(path: str | os.PathLike[str]) -> dict[str, list[Segment]]:
    """Reads an RTTM file: file id -> its SPEAKER segments, in file order."""
    by_file: dict[str, list[Segment]] = {}
    for fid, seg in _rttm_lines(Path(path)):
        by_file.setdefault(fid, []).append(seg)
    return by_file


def read_uem(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float]]]:
    """Reads a UEM file (``file_id channel start end`` per line): file id -> scored (start, end) regions."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise IdmeError(f"cannot read UEM file {path}: {exc.strerror or exc}") from None
    out: dict[str, list[tuple[float, float]]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        p = line.split()
        if not p or p[0].startswith(";;"):
            continue
        if len(p) != 4:
            raise IdmeError(f"{path}:{lineno}: expected 'file_id channel start end', got {line.strip()!r}")
        try:
            start, end = float(p[2]), float(p[3])
        except ValueError:
            raise IdmeError(f"{path}:{lineno}: UEM start/end are not numbers: {line.strip()!r}") from None
        out.setdefault(p[0], []).append((start, end))
    return out


def _event_segment(e: Mapping[str, Any]) -> Segment | None:
    """The Segment of a hypothesis event, or None for events the scorer skips."""
    if "start" not in e or "end" not in e or "speaker" not in e:
        return None  # status / transcript-only events
    if e.get("final", True) is False:
        return None  # interim label: a final event for the same speech follows
    try:
        return Segment(float(e["start"]), float(e["end"]), str(e["speaker"]), e.get("kind"))
    except (TypeError, ValueError):
        raise IdmeError(f"hypothesis event has a non-numeric start/end: {dict(e)!r}") from None


def read_hypothesis(source: HypothesisSource, file_id: str | None = None) -> list[Segment]:
    """Hypothesis segments in emission order.

    source: a path to ``idme listen --json`` output (JSON Lines) or to an RTTM file (detected as the
        scorer does: the text starts with "SPEAKER", or is empty); or an iterable of event dicts
        (``start``, ``end``, ``speaker``, optional ``kind``, ``final``), Segments, or objects with
        ``to_dict()`` returning such a dict.
    file_id: with an RTTM path, keep only that file's lines (default: every line, as the scorer does).
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise IdmeError(f"cannot read hypothesis {path}: {exc.strerror or exc}") from None
        if not text or text.startswith("SPEAKER"):
            return [s for fid, s in _parse_rttm(text, str(path)) if file_id is None or fid == file_id]
        segs = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError as exc:
                raise IdmeError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            seg = _event_segment(event)
            if seg is not None:
                segs.append(seg)
        return segs
    segs = []
    for item in source:
        if isinstance(item, Segment):
            segs.append(item)
            continue
        if not isinstance(item, Mapping) and hasattr(item, "to_dict"):
            item = item.to_dict()
        if not isinstance(item, Mapping):
            raise IdmeError(f"hypothesis items must be dicts or Segments, got {type(item).__name__}")
        seg = _event_segment(item)
        if seg is not None:
            segs.append(seg)
    return segs


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class DerResult:
    """Frame counts of one scoring run (one recording, or several pooled); rates via ``to_dict()``.

    All counts are 10 ms frames inside the scored region (UEM minus collars). Speech is counted per
    reference speaker, so a frame where two people talk counts twice.
    """

    #: Scored reference speech (the DER denominator).
    speech_frames: int
    #: Reference speech with too few hypothesis labels.
    miss_frames: int
    #: Hypothesis labels in excess of the reference speakers (including labels on silence).
    fa_frames: int
    #: Labelled reference speech given the wrong (or an unmapped) speaker.
    confusion_frames: int
    #: Distinct reference speakers.
    n_ref_speakers: int
    #: Distinct hypothesis speakers (owner, each named person, each unknown label).
    n_hyp_labels: int
    #: Owner speech frames; None when there is no owner in the reference.
    owner_frames: int | None = None
    #: Owner speech frames labelled as the owner.
    owner_as_me_frames: int | None = None
    #: Frames where someone other than the owner talks (and the owner does not).
    other_frames: int | None = None
    #: Of those, frames labelled as the owner.
    other_as_me_frames: int | None = None
    #: Hypothesis label -> reference speaker it was scored as (None: left unmapped).
    mapping: dict[str, str | None] = field(default_factory=dict, compare=False)

    @property
    def der(self) -> float:
        """(miss + false alarm + confusion) / scored speech, unrounded."""
        return (self.miss_frames + self.fa_frames + self.confusion_frames) / max(1, self.speech_frames)

    def to_dict(self) -> dict[str, Any]:
        """The scorer's output object: der, miss, fa, confusion, me_recall, false_me (rounded to 4
        digits; me_* None without an owner), n_ref_speakers, n_hyp_labels."""
        tot = max(1, self.speech_frames)

        def rate(num: int | None, den: int | None) -> float | None:
            return None if num is None or den is None else round(num / max(1, den), ROUND_DIGITS)

        return {
            "der": round((self.miss_frames + self.fa_frames + self.confusion_frames) / tot, ROUND_DIGITS),
            "miss": round(self.miss_frames / tot, ROUND_DIGITS),
            "fa": round(self.fa_frames / tot, ROUND_DIGITS),
            "confusion": round(self.confusion_frames / tot, ROUND_DIGITS),
            "me_recall": rate(self.owner_as_me_frames, self.owner_frames),
            "false_me": rate(self.other_as_me_frames, self.other_frames),
            "n_ref_speakers": self.n_ref_speakers,
            "n_hyp_labels": self.n_hyp_labels,
        }


def _frame(t: float) -> int:
    # Python's round() is round-half-even on the double t / 0.01, exactly what the scorer computes.
    return int(round(t / FRAME_S))


def _span(seg_start: float, seg_end: float, n_frames: int) -> tuple[int, int]:
    """Frame slice [a, b) of a time span, clipped to the timeline."""
    return min(max(0, _frame(seg_start)), n_frames), min(max(0, _frame(seg_end)), n_frames)


def score_segments(
    ref: Sequence[Segment],
    hyp: Sequence[Segment],
    *,
    owner: str | None = None,
    named: Mapping[str, str] | None = None,
    duration_s: float = 0.0,
    uem: Sequence[tuple[float, float]] | None = None,
    collar_s: float = DEFAULT_COLLAR_S,
    overlapping_hyp: bool = False,
) -> DerResult:
    """Scores one recording.

    ref: reference segments (may overlap); hyp: hypothesis segments in emission order.
    owner: reference speaker id of the owner ("me"), or None when nobody is the owner (then "me" labels
        are one more unknown speaker and the me_* rates are None).
    named: hypothesis label -> reference speaker id for people enrolled by name.
    duration_s: recording length; the timeline runs to max(duration, last segment end) like the scorer's.
    uem: scored (start, end) regions, seconds; None scores the whole timeline.
    collar_s: unscored margin on each side of every reference boundary.
    overlapping_hyp: False (idme, and the scorer): a later hypothesis segment overwrites earlier ones on
        the frames it covers, so there is one label per frame. True: overlapping hypothesis segments are
        simultaneous speakers (for systems that output overlap, md-eval semantics).
    """
    named = dict(named or {})
    spk_ids = sorted({s.speaker for s in ref})
    spk_index = {s: j for j, s in enumerate(spk_ids)}

    ends = [s.end for s in ref] + [s.end for s in hyp] + [duration_s]
    if uem:
        ends += [e for _, e in uem]
    n_frames = int(math.ceil(max(ends) / FRAME_S)) + 1

    # Reference: one boolean column per speaker, so overlapping speech is kept.
    ref_on = np.zeros((n_frames, len(spk_ids)), dtype=bool)
    # The collar is cut around both ends of every reference segment via a difference array (+1 where an
    # unscored run starts, -1 where it ends): O(segments + frames).
    collar = int(round(collar_s / FRAME_S))
    cut = np.zeros(n_frames + 1, dtype=np.int64)
    for seg in ref:
        a, b = _span(seg.start, seg.end, n_frames)
        ref_on[a:b, spk_index[seg.speaker]] = True
        if collar > 0:
            for x in (_frame(seg.start), _frame(seg.end)):
                lo, hi = min(max(0, x - collar), n_frames), min(max(0, x + collar), n_frames)
                cut[lo] += 1
                cut[hi] -= 1
    scored = np.cumsum(cut[:-1]) == 0
    if uem is not None:
        in_uem = np.zeros(n_frames, dtype=bool)
        for start, end in uem:
            a, b = _span(start, end, n_frames)
            in_uem[a:b] = True
        scored &= in_uem

    # Hypothesis labels, keyed as the scorer keys them, numbered in order of first appearance.
    keys: list[tuple[str, str]] = []
    key_index: dict[tuple[str, str], int] = {}
    shown: list[str] = []  # the label text first seen for each key, for the mapping report
    seg_label = []
    for seg in hyp:
        if seg.kind == "me" or seg.speaker.lower() == "me":
            key = ("ref", owner) if owner is not None else ("unk", "me")
        elif seg.speaker in named:
            key = ("ref", named[seg.speaker])
        else:
            key = ("unk", seg.speaker)
        if key not in key_index:
            key_index[key] = len(keys)
            keys.append(key)
            shown.append(seg.speaker)
        seg_label.append(key_index[key])

    hyp_on = np.zeros((n_frames, len(keys)), dtype=bool)
    if overlapping_hyp:
        for seg, lab in zip(hyp, seg_label):
            a, b = _span(seg.start, seg.end, n_frames)
            hyp_on[a:b, lab] = True
    else:
        last = np.full(n_frames, -1, dtype=np.int64)
        for seg, lab in zip(hyp, seg_label):  # emission order: later events overwrite
            a, b = _span(seg.start, seg.end, n_frames)
            last[a:b] = lab
        labelled = last >= 0
        hyp_on[np.flatnonzero(labelled), last[labelled]] = True

    r = ref_on[scored]
    h = hyp_on[scored]
    # overlap[i, j]: scored frames where hypothesis label i and reference speaker j are both active.
    overlap = h.T.astype(np.int64) @ r.astype(np.int64)

    mapped = np.full(len(keys), -1, dtype=np.int64)
    for i, (kind, name) in enumerate(keys):
        if kind == "ref" and name in spk_index:
            mapped[i] = spk_index[name]
    unknown = [i for i, (kind, _) in enumerate(keys) if kind == "unk"]
    taken = set(mapped.tolist())
    free = [j for j in range(len(spk_ids)) if j not in taken]
    if unknown and free:
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(overlap[np.ix_(unknown, free)], maximize=True)
        for a, b in zip(rows, cols):
            mapped[unknown[a]] = free[b]

    n_ref = r.sum(axis=1)
    n_hyp = h.sum(axis=1)
    # n_correct: active labels whose mapped speaker is active on the same frame (mapping is one-to-one).
    is_mapped = mapped >= 0
    n_correct = np.zeros(r.shape[0], dtype=np.int64)
    if is_mapped.any():
        n_correct = (h[:, is_mapped] & r[:, mapped[is_mapped]]).sum(axis=1)
    miss = int(np.maximum(n_ref - n_hyp, 0).sum())
    fa = int(np.maximum(n_hyp - n_ref, 0).sum())
    conf = int((np.minimum(n_ref, n_hyp) - n_correct).sum())

    owner_frames = owner_as_me = other_frames = other_as_me = None
    if owner is not None and owner in spk_index:
        oi = spk_index[owner]
        me = key_index.get(("ref", owner))
        is_me = h[:, me] if me is not None else np.zeros(r.shape[0], dtype=bool)
        own = r[:, oi]
        other = np.delete(r, oi, axis=1).any(axis=1) & ~own
        owner_frames, owner_as_me = int(own.sum()), int((own & is_me).sum())
        other_frames, other_as_me = int(other.sum()), int((other & is_me).sum())
    elif owner is not None:
        logger.warning("owner %r has no reference segments; me_recall/false_me are not defined", owner)

    return DerResult(
        speech_frames=int(n_ref.sum()),
        miss_frames=miss,
        fa_frames=fa,
        confusion_frames=conf,
        n_ref_speakers=len(spk_ids),
        n_hyp_labels=len(keys),
        owner_frames=owner_frames,
        owner_as_me_frames=owner_as_me,
        other_frames=other_frames,
        other_as_me_frames=other_as_me,
        mapping={shown[i]: (spk_ids[j] if j >= 0 else None) for i, j in enumerate(mapped.tolist())},
    )


def pool_results(results: Iterable[DerResult]) -> DerResult:
    """Sums the frame counts of several recordings (pooled DER = total errors / total scored speech).

    Speaker and label counts are summed too (speakers are counted per recording); owner counts are
    summed when every recording has an owner, else None. The mapping is not pooled.
    """
    results = list(results)

    def total(name: str) -> int | None:
        vals = [getattr(r, name) for r in results]
        return None if any(v is None for v in vals) else int(sum(vals))

    return DerResult(
        speech_frames=total("speech_frames") or 0,
        miss_frames=total("miss_frames") or 0,
        fa_frames=total("fa_frames") or 0,
        confusion_frames=total("confusion_frames") or 0,
        n_ref_speakers=total("n_ref_speakers") or 0,
        n_hyp_labels=total("n_hyp_labels") or 0,
        owner_frames=total("owner_frames") if results else None,
        owner_as_me_frames=total("owner_as_me_frames") if results else None,
        other_frames=total("other_frames") if results else None,
        other_as_me_frames=total("other_as_me_frames") if results else None,
    )


# ------------------------------------------------------------------------------------------ entry points


def score_files(
    ref_rttm: str | os.PathLike[str],
    hyp: HypothesisSource,
    meta: Mapping[str, Any] | None = None,
    uem: Sequence[tuple[float, float]] | None = None,
    *,
    file_id: str | None = None,
    collar_s: float = DEFAULT_COLLAR_S,
    overlapping_hyp: bool = False,
) -> dict[str, Any]:
    """Scores a hypothesis against a reference RTTM; returns the scorer's dict (see ``DerResult.to_dict``).

    meta: a meetings-dev ``meta.json`` dict (``owner``, ``named``, ``duration_s``), or None: no owner.
    uem: scored (start, end) regions in seconds, or None for everything.
    file_id: score only that RTTM file id (reference, and hypothesis when it is an RTTM path); None uses
        every SPEAKER line regardless of file id, as score_meeting.py does.
    """
    lines = _rttm_lines(Path(ref_rttm))
    ref = [s for fid, s in lines if file_id is None or fid == file_id]
    meta = meta or {}
    return score_segments(
        ref,
        read_hypothesis(hyp, file_id=file_id),
        owner=meta.get("owner"),
        named=meta.get("named") or {},
        duration_s=float(meta.get("duration_s", 0.0)),
        uem=uem,
        collar_s=collar_s,
        overlapping_hyp=overlapping_hyp,
    ).to_dict()


def score_meeting(
    meeting_dir: str | os.PathLike[str], hyp: HypothesisSource, *, collar_s: float = DEFAULT_COLLAR_S
) -> dict[str, Any]:
    """Scores a hypothesis on a meetings-dev style folder (``reference.rttm`` + ``meta.json``).

    hyp: JSONL/RTTM path or events (see :func:`read_hypothesis`). Returns the same dict as
    ``score_meeting.py MEETING_DIR HYP`` prints.
    """
    mdir = Path(meeting_dir)
    try:
        meta = json.loads((mdir / "meta.json").read_text(encoding="utf-8"))
    except OSError as exc:
        raise IdmeError(f"cannot read {mdir / 'meta.json'}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise IdmeError(f"{mdir / 'meta.json'} is not valid JSON ({exc.msg})") from None
    return score_files(mdir / "reference.rttm", hyp, meta, collar_s=collar_s)


def score_rttm_set(
    ref_rttm: str | os.PathLike[str],
    uem: str | os.PathLike[str] | Mapping[str, Sequence[tuple[float, float]]] | None,
    hyp_by_file: Mapping[str, HypothesisSource] | str | os.PathLike[str],
    *,
    collar_s: float = DEFAULT_COLLAR_S,
    overlapping_hyp: bool = False,
) -> dict[str, Any]:
    """Scores a multi-file reference (e.g. ami-excerpts), each file with its own speaker mapping.

    ref_rttm: RTTM with one file id per recording; nobody is the owner (me_* rates are None).
    uem: UEM path or file id -> regions; when given, exactly its files are scored (md-eval's rule);
        when None, every file of the reference and of the hypothesis is scored in full.
    hyp_by_file: file id -> hypothesis (path or events; a path is read whole, whatever file ids its RTTM
        lines carry), or one RTTM path holding all files, split by file id. A file with no hypothesis is
        scored as silence (all miss).
    Returns ``{"files": {file_id: dict}, "pooled": dict}``; dicts as ``DerResult.to_dict`` and pooled
    = total errors / total scored speech (speaker/label counts summed over files, plus ``n_files``).
    """
    ref = read_rttm(ref_rttm)
    if uem is not None and not isinstance(uem, Mapping):
        uem = read_uem(uem)
    if isinstance(hyp_by_file, (str, os.PathLike)):
        hyp_by_file = read_rttm(hyp_by_file)
    files = list(uem) if uem is not None else sorted(set(ref) | set(hyp_by_file))
    stray = sorted(set(hyp_by_file) - set(files))
    if stray:
        raise IdmeError(
            f"hypothesis file id(s) {', '.join(stray[:5])} are not in the reference/UEM; "
            "file ids must match the RTTM's second column"
        )
    results = {}
    for fid in files:
        hyp = read_hypothesis(hyp_by_file.get(fid, []))
        results[fid] = score_segments(
            ref.get(fid, []),
            hyp,
            uem=None if uem is None else uem[fid],
            collar_s=collar_s,
            overlapping_hyp=overlapping_hyp,
        )
    pooled = pool_results(results.values()).to_dict()
    pooled["n_files"] = len(results)
    return {"files": {fid: r.to_dict() for fid, r in results.items()}, "pooled": pooled}


def pooled_by_collar(ref_rttm: str | os.PathLike[str], uem: Mapping[str, Sequence[tuple[float, float]]],
                     hyp_by_file: Mapping[str, HypothesisSource], file_ids: Sequence[str], *,
                     collars_s: Sequence[float] = (DEFAULT_COLLAR_S, 0.0),
                     overlapping_hyp: bool = True) -> dict[str, dict[str, float]]:
    """Pooled DER and its parts over ``file_ids``, per collar: ``{"collar_0.25": {"der", "miss", "fa",
    "confusion"}, ...}`` (fractions). The benchmarks' one summary of a multi-file set (score_rttm_set)."""
    out = {}
    for c in collars_s:
        r = score_rttm_set(ref_rttm, {f: uem[f] for f in file_ids}, {f: hyp_by_file[f] for f in file_ids},
                           collar_s=c, overlapping_hyp=overlapping_hyp)["pooled"]
        out[f"collar_{c}"] = {k: r[k] for k in ("der", "miss", "fa", "confusion")}
    return out
