"""The Me / named / unknown decision, unknown-speaker clusters, and re-clustering.

Each segment's embedding is scored against the enrolled profiles (the "Me" index). If no profile accepts it,
it joins the closest unknown speaker (the "Not-Me" index) or opens a new one. Unknown speakers are clusters
whose centroid is the duration-weighted mean of their members, so they improve as people talk instead of
being frozen at their first embedding. ``recluster`` revisits every segment with the full session in view:
it merges duplicate unknown clusters, hands clusters that match a profile to that profile, reassigns
segments to their best centroid, and renumbers "Speaker N" by first appearance.

Segments shorter than ``min_reliable_s`` give noisy embeddings (on meetings-dev, target scores of sub-second
chunks overlap the non-target range, docs/thresholds.md), so they never open a new speaker or move a
centroid: they take the best-scoring existing speaker.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .indices import EnrolledIndex, UnknownIndex, _unit
from .profiles import OWNER, Profile
from .thresholds import Thresholds


@dataclass(frozen=True)
class Decision:
    """Who a segment is: ``label`` ("Me", a profile name or "Speaker N"), ``kind`` ("me"|"enrolled"|
    "unknown"), ``score`` (cosine with the chosen voiceprint) and ``key`` (profile name or cluster id)."""

    label: str
    kind: str
    score: float
    key: str | int


@dataclass
class _Seg:
    emb: np.ndarray
    duration_s: float
    start_s: float
    key: str | int
    score: float


@dataclass
class _Cluster:
    members: list[int] = field(default_factory=list)
    number: int = 0  # the N of "Speaker N"


class SpeakerTracker:
    """Decides and remembers who each segment of one session is."""

    def __init__(self, profiles: list[Profile], dimension: int, thresholds: Thresholds,
                 min_reliable_s: float = 1.0, context_s: float = 2.0) -> None:
        self.th = thresholds
        self.context_s = context_s
        self.dimension = dimension
        self.min_reliable_s = min_reliable_s
        self.enrolled = EnrolledIndex(profiles, dimension)
        self.unknown = UnknownIndex(dimension)
        self.segs: dict[int, _Seg] = {}
        self.clusters: dict[int, _Cluster] = {}
        self._next_cid = 0
        self._next_number = 1

    # -- helpers -------------------------------------------------------------------------------------
    def _accept(self, name: str) -> float:
        return self.th.me if name == OWNER else self.th.enrolled

    def _decision(self, key: str | int, score: float) -> Decision:
        if isinstance(key, str):
            p = self.enrolled.profiles[key]
            return Decision(p.display, p.kind, score, key)
        return Decision(f"Speaker {self.clusters[key].number}", "unknown", score, key)

    def _centroid(self, cid: int) -> np.ndarray | None:
        members = [self.segs[i] for i in self.clusters[cid].members if self.segs[i].duration_s >= self.min_reliable_s]
        if not members:
            members = [self.segs[i] for i in self.clusters[cid].members]
        if not members:
            return None
        w = np.array([m.duration_s for m in members], np.float32)
        return _unit((np.stack([m.emb for m in members]) * w[:, None]).sum(0))

    def _refresh(self, cid: int) -> None:
        c = self._centroid(cid)
        if c is None:
            self.unknown.remove(cid)
            del self.clusters[cid]
        else:
            self.unknown.set(cid, c)

    def _new_cluster(self) -> int:
        cid = self._next_cid
        self._next_cid += 1
        self.clusters[cid] = _Cluster(number=self._next_number)
        self._next_number += 1
        return cid

    def _best_any(self, emb: np.ndarray) -> tuple[str | int, float] | None:
        """The best voiceprint of all, enrolled or unknown, with its score."""
        cands: list[tuple[str | int, float]] = list(self.enrolled.scores(emb).items())
        m = self.unknown.best(emb)
        if m is not None:
            cands.append((m.key, m.score))
        return max(cands, key=lambda kv: kv[1]) if cands else None

    def _score_key(self, emb: np.ndarray, key: str | int) -> float:
        if isinstance(key, str):
            return float(emb @ self.enrolled.profiles[key].centroid)
        return float(emb @ self.unknown.index.reconstruct(key)) if key in self.clusters else -1.0

    def _neighbours(self, start_s: float, end_s: float, exclude: int | None = None) -> list[str | int]:
        """Speakers of the closest reliable segments before and after [start_s, end_s), within
        ``context_s``: a short segment is most likely one of the people talking right around it."""
        before = after = None
        for sid, s in self.segs.items():
            if sid == exclude or s.duration_s < self.min_reliable_s:
                continue
            s_end = s.start_s + s.duration_s
            if s_end <= start_s + 1e-6 and start_s - s_end <= self.context_s:
                if before is None or s_end > before[0]:
                    before = (s_end, s.key)
            elif s.start_s >= end_s - 1e-6 and s.start_s - end_s <= self.context_s:
                if after is None or s.start_s < after[0]:
                    after = (s.start_s, s.key)
        keys: list[str | int] = []
        for n in (before, after):
            if n is not None and n[1] not in keys and (isinstance(n[1], str) or n[1] in self.clusters):
                keys.append(n[1])
        return keys

    def _choose(self, emb: np.ndarray, duration_s: float, start_s: float | None = None,
                exclude: int | None = None) -> tuple[str | int | None, float]:
        """(key, score) for a segment; key None means "open a new unknown speaker"."""
        best = self.enrolled.best(emb)
        if best is not None and best.score >= self._accept(str(best.key)):
            return best.key, best.score
        if duration_s < self.min_reliable_s and start_s is not None:
            near = self._neighbours(start_s, start_s + duration_s, exclude)
            if near:
                scored = [(k, self._score_key(emb, k)) for k in near]
                return max(scored, key=lambda kv: kv[1])
        if duration_s < self.min_reliable_s:
            anyb = self._best_any(emb)
            if anyb is not None:
                # Too short to trust an absolute threshold: take the closest voiceprint, but never call a
                # short segment the owner unless it passed the owner's threshold above.
                if isinstance(anyb[0], str):
                    m = self.unknown.best(emb)
                    if m is not None:
                        return m.key, m.score
                    return None, anyb[1]
                return anyb
            return None, 0.0
        m = self.unknown.best(emb)
        if m is not None and m.score >= self.th.same_unknown:
            return m.key, m.score
        return None, (m.score if m is not None else 0.0)

    # -- online --------------------------------------------------------------------------------------
    def peek(self, emb: np.ndarray, duration_s: float) -> Decision:
        """The decision for a segment in progress (interim label); changes nothing."""
        key, score = self._choose(emb, duration_s)
        if key is None:
            return Decision(f"Speaker {self._next_number}", "unknown", score, -1)
        return self._decision(key, score)

    def decide(self, seg_id: int, emb: np.ndarray, duration_s: float, start_s: float) -> Decision:
        """Labels a finished segment and updates the unknown clusters. emb: float32 (dimension,), unit norm."""
        emb = _unit(emb)
        key, score = self._choose(emb, duration_s, start_s)
        if key is None:
            key = self._new_cluster()
        self.segs[seg_id] = _Seg(emb, duration_s, start_s, key, score)
        if isinstance(key, int):
            self.clusters[key].members.append(seg_id)
            self._refresh(key)
            score = float(emb @ self.unknown.index.reconstruct(key)) if key in self.clusters else score
            self.segs[seg_id].score = score
        return self._decision(key, score)

    def label_of(self, seg_id: int) -> Decision:
        s = self.segs[seg_id]
        return self._decision(s.key, s.score)

    # -- re-clustering -------------------------------------------------------------------------------
    def recluster(self, final: bool = False) -> dict[int, Decision]:
        """Revisits every segment; returns {seg_id: new decision} for the segments whose label changed.

        ``final`` (end of a file or session) also renumbers unknown speakers by first appearance.
        """
        before = {i: self.label_of(i) for i in self.segs}
        for _ in range(3):
            self._merge_clusters()
            moved = self._reassign()
            if not moved:
                break
        if final:
            self._renumber()
        after = {i: self.label_of(i) for i in self.segs}
        return {i: d for i, d in after.items() if (d.label, d.kind) != (before[i].label, before[i].kind)}

    def _merge_clusters(self) -> None:
        """Merges unknown clusters that are the same voice, and clusters that are an enrolled profile."""
        while True:
            cids = sorted(self.clusters)
            cents = {c: self.unknown.index.reconstruct(c) for c in cids}
            # A cluster's centroid averages several segments, so it is scored like a long segment.
            absorbed = False
            for c in cids:
                best = self.enrolled.best(cents[c])
                if best is not None and best.score >= self._accept(str(best.key)):
                    self._move_all(c, best.key)
                    absorbed = True
            if absorbed:
                continue
            best_pair, best_sim = None, self.th.merge
            for i, a in enumerate(cids):
                for b in cids[i + 1:]:
                    s = float(cents[a] @ cents[b])
                    if s >= best_sim:
                        best_pair, best_sim = (a, b), s
            if best_pair is None:
                return
            keep, drop = sorted(best_pair, key=lambda c: self.clusters[c].number)
            self._move_all(drop, keep)

    def _move_all(self, cid: int, to: str | int) -> None:
        for sid in self.clusters[cid].members:
            self.segs[sid].key = to
            if isinstance(to, int):
                self.clusters[to].members.append(sid)
        self.clusters[cid].members = []
        self._refresh(cid)
        if isinstance(to, int):
            self._refresh(to)

    def _reassign(self) -> bool:
        """Moves each segment to its best voiceprint under the same rules as online. True if any moved."""
        moved = False
        order = sorted(self.segs, key=lambda i: -self.segs[i].duration_s)
        for sid in order:
            s = self.segs[sid]
            best = self.enrolled.best(s.emb)
            target: str | int | None = None
            score = 0.0
            if s.duration_s < self.min_reliable_s:
                target, score = self._choose(s.emb, s.duration_s, s.start_s, exclude=sid)
            elif best is not None and best.score >= self._accept(str(best.key)):
                target, score = best.key, best.score
            else:
                # Score against the other clusters' centroids and this cluster's centroid without s.
                m = self.unknown.search(s.emb, 3)
                for cand in m:
                    if cand.score >= self.th.same_unknown or s.duration_s < self.min_reliable_s:
                        target, score = cand.key, cand.score
                        break
                if target is None and isinstance(s.key, str):
                    # An enrolled label that no longer passes its threshold becomes its own unknown speaker.
                    target = self._new_cluster()
            if target is None or target == s.key:
                s.score = score or s.score
                continue
            old = s.key
            if isinstance(old, int) and old in self.clusters:
                self.clusters[old].members.remove(sid)
                self._refresh(old)
            s.key, s.score = target, score
            if isinstance(target, int):
                self.clusters[target].members.append(sid)
                self._refresh(target)
            moved = True
        return moved

    def _renumber(self) -> None:
        first = {}
        for sid, s in sorted(self.segs.items(), key=lambda kv: kv[1].start_s):
            if isinstance(s.key, int) and s.key not in first:
                first[s.key] = len(first) + 1
        for cid, c in self.clusters.items():
            c.number = first.get(cid, c.number)
        self._next_number = len(first) + 1
