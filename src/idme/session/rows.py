"""Values <-> rows of the session store: validation of segment and speaker events, JSON and float32 blobs.

Everything a writer is handed is checked here before a transaction starts, so a malformed event raises
a one-line SessionError and stores nothing. Arrays are stored little-endian float32, whatever the host.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import SessionError
from .model import KINDS, Segment, SpeakerInfo, Word


def utc_now() -> str:
    """Now, ISO 8601 UTC with microseconds (the format of ``created_at`` / ``finished_at``)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def to_json(value: dict[str, Any], what: str) -> str:
    """``value`` as JSON text; SessionError naming ``what`` when it cannot be (NaN, infinity)."""
    try:
        # default=str: a Path or enum in the settings is recorded as text rather than refused.
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError as exc:
        raise SessionError(f"{what} cannot be saved as JSON: {exc}") from exc


def check_kind(kind: str) -> None:
    """SessionError unless ``kind`` is one of :data:`KINDS`."""
    if kind not in KINDS:
        raise SessionError(f"speaker kind must be one of {', '.join(KINDS)}, got '{kind}'")


def clean_label(label: Any) -> str:
    """Labels end up in one-line formats (txt, srt, rttm): no newlines, no surrounding blanks."""
    text = " ".join(str(label).split())
    if not text:
        raise SessionError("speaker label must not be empty")
    return text


def finite(value: Any, name: str, seg_id: Any = None) -> float:
    """``value`` as a finite float, or SessionError naming the field (and the segment)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x):
        where = f"segment {seg_id}: " if seg_id is not None else ""
        raise SessionError(f"{where}{name} must be a finite number, got {value!r}")
    return x


def words_json(words: Iterable[Mapping[str, Any]] | None, seg_id: Any) -> str:
    """Word timings as the compact JSON list stored in ``segments.words``; ``probability`` is read as ``conf``."""
    out = []
    for w in words or ():
        try:
            conf = w.get("conf", w.get("probability"))  # faster-whisper calls it probability
            out.append({"word": str(w["word"]), "start": finite(w["start"], "word start", seg_id),
                        "end": finite(w["end"], "word end", seg_id),
                        "conf": None if conf is None else finite(conf, "word conf", seg_id)})
        except KeyError as exc:
            raise SessionError(f"segment {seg_id}: a word has no '{exc.args[0]}'") from None
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def segment_row(seg: Mapping[str, Any]) -> tuple[Any, ...]:
    """(seg_id, start, end, speaker, kind, score, final, text, words_json) from a segment event."""
    try:
        seg_id = int(seg["seg_id"])
        start, end = finite(seg["start"], "start", seg_id), finite(seg["end"], "end", seg_id)
        speaker, kind = clean_label(seg["speaker"]), seg["kind"]
    except KeyError as exc:
        raise SessionError(f"segment event has no '{exc.args[0]}': {dict(seg)!r}"[:200]) from None
    check_kind(kind)
    if end < start:
        raise SessionError(f"segment {seg_id}: end {end:.3f} s is before start {start:.3f} s")
    return (seg_id, start, end, speaker, kind, finite(seg.get("score", 0.0), "score", seg_id),
            int(bool(seg.get("final", False))), str(seg.get("text") or ""),
            words_json(seg.get("words"), seg_id))


def segment_from_row(r: tuple[Any, ...]) -> Segment:
    """A :class:`Segment` from a ``segments`` row (seg_id, start_s, end_s, speaker, kind, score, final, text, words)."""
    words = tuple(Word(w["word"], w["start"], w["end"], w.get("conf")) for w in json.loads(r[8]))
    return Segment(seg_id=r[0], start=r[1], end=r[2], speaker=r[3], kind=r[4], score=r[5], final=bool(r[6]),
                   text=r[7], words=words)


def kind_order(kind: str) -> int:
    """Sort key of a speaker kind: owner, enrolled, unknown, then anything else."""
    return KINDS.index(kind) if kind in KINDS else len(KINDS)


def ordered_labels(rows: Iterable[tuple[str, str, int, float]]) -> tuple[str, ...]:
    """Labels from (label, kind, n, first_start) rows: owner, enrolled, unknown; then by first appearance."""
    best: dict[str, tuple[int, str, float]] = {}
    for label, kind, n, first in rows:
        n0, kind0, first0 = best.get(label, (0, kind, first))
        best[label] = (n0 + n, kind if n > n0 else kind0, min(first, first0))
    return tuple(sorted(best, key=lambda lab: (kind_order(best[lab][1]), best[lab][2], lab)))


def speaker_infos(segments: tuple[Segment, ...], spk_rows: Iterable[tuple[str, str, int, int]]) -> tuple[SpeakerInfo, ...]:
    """Speakers of a session from its segments and its ``speakers`` rows (label, kind, n, dim), listed
    owner first, then enrolled, then unknown, each group by first appearance."""
    kinds: dict[str, dict[str, int]] = {}
    stats: dict[str, list[float]] = {}  # label -> [n_segments, speech_s, first_start]
    for s in segments:
        kinds.setdefault(s.speaker, {}).setdefault(s.kind, 0)
        kinds[s.speaker][s.kind] += 1
        st = stats.setdefault(s.speaker, [0, 0.0, s.start])
        st[0] += 1
        st[1] += s.end - s.start
    saved = {label: (kind, n, dim) for label, kind, n, dim in spk_rows}
    infos = []
    for label in dict.fromkeys([*stats, *saved]):
        n_seg, speech, first = stats.get(label, [0, 0.0, math.inf])
        if label in saved:
            kind, n_emb, dim = saved[label]
        else:
            kind, n_emb, dim = max(kinds[label].items(), key=lambda kv: kv[1])[0], 0, 0
        infos.append((first, SpeakerInfo(label, kind, int(n_seg), round(speech, 3), n_emb, dim)))
    infos.sort(key=lambda fi: (kind_order(fi[1].kind), fi[0], fi[1].label))
    return tuple(info for _, info in infos)


#: What :func:`speaker_arrays` returns: embeddings float32 (n, d), centroid float32 (d,) or None, and
#: durations float32 (n,) (s of speech behind each embedding) or None when they were not given.
SpeakerArrays = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None"]


def speaker_arrays(label: str, info: Mapping[str, Any]) -> SpeakerArrays:
    """(embeddings float32 (n, d), centroid float32 (d,) or None, durations float32 (n,) or None), validated.

    info: {"embeddings", "centroid" (optional), "durations" (optional)}; a missing centroid is the
    L2-normalised mean of the embeddings.
    """
    emb = info.get("embeddings")
    cen = info.get("centroid")
    dur = info.get("durations")
    emb = np.zeros((0, 0), np.float32) if emb is None else np.asarray(emb, dtype=np.float32)
    if emb.ndim == 1:
        emb = emb[None, :]
    if emb.ndim != 2:
        raise SessionError(f"speaker '{label}': embeddings must have shape (n, dim), got {emb.shape}")
    if cen is not None:
        cen = np.asarray(cen, dtype=np.float32).reshape(-1)
    elif len(emb):
        mean = emb.mean(axis=0)
        cen = mean / max(float(np.linalg.norm(mean)), 1e-12)
    if cen is not None and len(emb) and cen.shape[0] != emb.shape[1]:
        raise SessionError(f"speaker '{label}': centroid has {cen.shape[0]} values, embeddings {emb.shape[1]}")
    if not np.all(np.isfinite(emb)) or (cen is not None and not np.all(np.isfinite(cen))):
        raise SessionError(f"speaker '{label}': embeddings contain NaN or infinity")
    if dur is not None:
        dur = np.asarray(dur, dtype=np.float32).reshape(-1)
        if len(dur) != len(emb):
            raise SessionError(f"speaker '{label}': {len(dur)} durations for {len(emb)} embeddings")
        if not np.all(np.isfinite(dur)) or np.any(dur < 0):
            raise SessionError(f"speaker '{label}': durations must be finite and >= 0 s")
    return emb, cen, dur


def put_speaker(conn: sqlite3.Connection, session_id: str, label: str, kind: str, arrays: SpeakerArrays) -> None:
    """Inserts one ``speakers`` row (inside the caller's transaction)."""
    emb, cen, dur = arrays
    dim = emb.shape[1] if len(emb) else (0 if cen is None else cen.shape[0])
    conn.execute("INSERT INTO speakers (session_id, label, kind, n, dim, embeddings, centroid, durations)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (session_id, label, kind, int(len(emb)), int(dim),
                  emb.astype("<f4").tobytes() if len(emb) else None,
                  None if cen is None else cen.astype("<f4").tobytes(),
                  None if dur is None or not len(emb) else dur.astype("<f4").tobytes()))


def array_from_blob(blob: bytes | None, shape: tuple[int, int]) -> np.ndarray:
    """float32 array of ``shape`` (n, dim) from a little-endian blob; an empty (0, dim) one for None."""
    n, dim = shape
    if blob is None or n == 0:
        return np.zeros((0, dim), np.float32)
    return np.frombuffer(blob, dtype="<f4").reshape(n, dim).astype(np.float32)


def durations_from_blob(blob: bytes | None, n: int) -> np.ndarray | None:
    """float32 (n,) durations from a little-endian blob; None when none were kept."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<f4").reshape(n).astype(np.float32)


#: A ``speakers`` row as :func:`merge_embeddings` reads it: (n, dim, embeddings blob, durations blob).
SpeakerRow = tuple[int, int, "bytes | None", "bytes | None"]


def merge_embeddings(a: SpeakerRow, b: SpeakerRow) -> SpeakerArrays:
    """Embeddings of two speakers found to be one person; the centroid is recomputed from all rows.

    Durations are kept when both sides have them (or one side has no embeddings), else dropped: a
    profile made from the merged speaker then weighs every embedding alike.
    """
    ea, eb = array_from_blob(a[2], (a[0], a[1])), array_from_blob(b[2], (b[0], b[1]))
    if len(ea) and len(eb) and ea.shape[1] != eb.shape[1]:
        raise SessionError(f"cannot merge speakers with {ea.shape[1]}- and {eb.shape[1]}-dim embeddings")
    both = np.concatenate([e for e in (ea, eb) if len(e)]) if (len(ea) or len(eb)) else ea
    da, db = durations_from_blob(a[3], a[0]), durations_from_blob(b[3], b[0])
    parts = [d for e, d in ((ea, da), (eb, db)) if len(e)]
    dur = np.concatenate(parts) if parts and all(d is not None for d in parts) else None
    return speaker_arrays("merged", {"embeddings": both, "durations": dur})
