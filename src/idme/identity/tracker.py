"""The Me / named / unknown decision, unknown-speaker clusters, and re-clustering.

Each segment's embedding is scored against the enrolled profiles (the "Me" index). If no profile accepts it,
it joins the closest unknown speaker (the "Not-Me" index) or opens a new one. Unknown speakers are clusters
whose centroid is the duration-weighted mean of their members, so they improve as people talk instead of
being frozen at their first embedding. ``recluster`` revisits every segment with the full session in view:
it merges duplicate unknown clusters, hands clusters that match a profile to that profile, reassigns
segments to their best centroid, and renumbers "Speaker N" by first appearance.

Segments shorter than ``min_reliable_s`` give noisy embeddings (on meetings-dev, target scores of sub-second
chunks overlap the non-target range), so they do not move a centroid and open a new speaker only when there is
no other: they take the best-scoring speaker talking around them (an enrolled one only above
``SHORT_ENROLLED_FLOOR``), else the closest unknown speaker.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from .indices import EnrolledIndex, UnknownIndex, _unit
from .profiles import OWNER, Profile
from .thresholds import Thresholds


#: Cosine a segment shorter than ``min_reliable_s`` needs against an enrolled neighbour's voiceprint to
#: inherit that person. Sub-second VAD chunks of meetings-dev plus 6 synthetic meetings of unseen speakers
#: (`scripts/make_synthetic_meetings.py 1`), scored against the owner's 3-take centroid: the owner's score
#: median 0.26 (p10 0.05), other people's median 0.08; 0.10 drops the clearly-other half.
SHORT_ENROLLED_FLOOR = 0.10


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
    """An unknown speaker. Keeps duration-weighted sums of its members' embeddings (reliable ones, and all),
    so adding or removing a segment updates its centroid in O(dimension), not O(members)."""

    members: list[int] = field(default_factory=list)
    number: int = 0  # the N of "Speaker N"
    sum_reliable: np.ndarray | None = None
    n_reliable: int = 0
    sum_all: np.ndarray | None = None

    def add(self, sid: int, seg: "_Seg", reliable: bool) -> None:
        self.members.append(sid)
        self._update(seg, reliable, +1.0)

    def remove(self, sid: int, seg: "_Seg", reliable: bool) -> None:
        self.members.remove(sid)
        self._update(seg, reliable, -1.0)

    def _update(self, seg: "_Seg", reliable: bool, sign: float) -> None:
        v = sign * seg.duration_s * seg.emb.astype(np.float64)
        self.sum_all = v if self.sum_all is None else self.sum_all + v
        if reliable:
            self.sum_reliable = v if self.sum_reliable is None else self.sum_reliable + v
            self.n_reliable += int(sign)


class SpeakerTracker:
    """Decides and remembers who each segment of one session is."""

    def __init__(self, profiles: list[Profile], dimension: int, thresholds: Thresholds,
                 min_reliable_s: float = 1.0, context_s: float = 2.0, anchor_weight_s: float = 3.0,
                 min_speaker_s: float = 2.0, live_window: int = 400, narrowband: bool = False) -> None:
        """profiles: enrolled people (may be empty); dimension: the encoder's embedding size.

        min_reliable_s: shorter segments never open a speaker or move a centroid (sub-second CAM++
            embeddings are unreliable: EER 6.2% with a 0.5 s test side vs 0.89% at 1 s, docs/thresholds.md).
        context_s: how far around a short segment its neighbours are looked for.
        anchor_weight_s: how much an enrolled voiceprint weighs in re-clustering, in seconds of speech.
        min_speaker_s: an unknown "speaker" with less speech than this after re-clustering is folded
            into its neighbours (a stray segment far more often than a new person).
        live_window: periodic (non-final) re-clustering revisits at most this many latest segments.
        narrowband: the session's audio is telephone-rate (<= 8 kHz); profiles enrolled narrow-band are
            then held to ``thresholds.narrowband``.
        """
        self.narrowband = narrowband
        self.th = thresholds
        self.min_speaker_s = min_speaker_s
        self.live_window = live_window
        self.anchor_weight_s = anchor_weight_s
        self.context_s = context_s
        self.dimension = dimension
        self.min_reliable_s = min_reliable_s
        self.enrolled = EnrolledIndex(profiles, dimension)
        self.unknown = UnknownIndex(dimension)
        self.segs: dict[int, _Seg] = {}
        #: (start_s, seg_id) of the reliable segments, in time order (for the neighbour search).
        self._reliable_by_start: list[tuple[float, int]] = []
        self.clusters: dict[int, _Cluster] = {}
        self._next_cid = 0
        self._next_number = 1

    # -- helpers -------------------------------------------------------------------------------------
    def _accept(self, name: str) -> float:
        if self.narrowband and self.th.narrowband is not None and self.enrolled.profiles[name].narrowband:
            return self.th.narrowband
        return self.th.me if name == OWNER else self.th.enrolled

    def _decision(self, key: str | int, score: float) -> Decision:
        if isinstance(key, str):
            p = self.enrolled.profiles[key]
            return Decision(p.display, p.kind, score, key)
        return Decision(f"Speaker {self.clusters[key].number}", "unknown", score, key)

    def _centroid(self, cid: int) -> np.ndarray | None:
        """Duration-weighted mean of the cluster's reliable members (of all members if none is reliable)."""
        c = self.clusters[cid]
        if not c.members:
            return None
        return _unit(c.sum_reliable if c.n_reliable > 0 else c.sum_all)

    def _reliable(self, sid: int) -> bool:
        return self.segs[sid].duration_s >= self.min_reliable_s

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
        # Segments never overlap (each starts where the previous one ended at the earliest), so the closest
        # one before is the last to start before start_s, and the closest after the first to start after.
        order = self._reliable_by_start
        before = after = None
        i = bisect.bisect_right(order, (start_s + 1e-6, float("inf"))) - 1
        while i >= 0:
            s = self.segs[order[i][1]]
            if order[i][1] != exclude and s.start_s + s.duration_s <= start_s + 1e-6:
                if start_s - (s.start_s + s.duration_s) <= self.context_s:
                    before = s.key
                break
            i -= 1
        j = bisect.bisect_left(order, (end_s - 1e-6, -1))
        while j < len(order):
            s = self.segs[order[j][1]]
            if order[j][1] != exclude:
                if s.start_s - end_s <= self.context_s:
                    after = s.key
                break
            j += 1
        keys: list[str | int] = []
        for k in (before, after):
            if k is not None and k not in keys and (isinstance(k, str) or k in self.clusters):
                keys.append(k)
        return keys

    def _choose(self, emb: np.ndarray, duration_s: float, start_s: float | None = None,
                exclude: int | None = None) -> tuple[str | int | None, float]:
        """(key, score) for a segment; key None means "open a new unknown speaker"."""
        best = self.enrolled.best(emb)
        if best is not None and best.score >= self._accept(str(best.key)):
            return best.key, best.score
        if duration_s < self.min_reliable_s and start_s is not None:
            near = self._neighbours(start_s, start_s + duration_s, exclude)
            # An enrolled neighbour is inherited only above a floor, so a voice unlike the owner's never
            # becomes "Me" just by following the owner.
            scored = [(k, self._score_key(emb, k)) for k in near]
            scored = [(k, s) for k, s in scored if not isinstance(k, str) or s >= SHORT_ENROLLED_FLOOR]
            if scored:
                return max(scored, key=lambda kv: kv[1])
        if duration_s < self.min_reliable_s:
            anyb = self._best_any(emb)
            if anyb is not None:
                # Too short to trust an absolute threshold, and no speaker around it: take the closest
                # unknown voiceprint (never an enrolled one below its threshold), or open a new speaker.
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
        if self._reliable(seg_id):
            bisect.insort(self._reliable_by_start, (start_s, seg_id))
        if isinstance(key, int):
            self.clusters[key].add(seg_id, self.segs[seg_id], self._reliable(seg_id))
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

        Agglomerative clustering (duration-weighted average linkage on cosine) of all reliable segments,
        with each enrolled profile's voiceprint as an anchor that two profiles never share. A cluster that
        holds an anchor is that person; this lets a segment that scored just under the owner's threshold
        join the owner through the owner's other segments in this session (same room, same microphone).
        Other clusters are unknown speakers; they keep their earlier number where they overlap an earlier
        cluster, and ``final`` renumbers them by first appearance. Short segments then take the best of the
        speakers talking around them.
        """
        before = {i: self.label_of(i) for i in self.segs}
        long_ids = [i for i, s in self.segs.items() if s.duration_s >= self.min_reliable_s]
        if not final and len(long_ids) > self.live_window:
            # Periodic passes of a long live session revisit only the latest segments, which bounds their
            # cost (AHC is quadratic in memory and worse in time); the final pass revisits everything.
            long_ids = sorted(long_ids, key=lambda i: self.segs[i].start_s)[-self.live_window:]
        if long_ids:
            assignment = self._ahc(long_ids)
            # A "speaker" heard for less than min_speaker_s in all is far more often a stray segment of
            # someone present than a new person: its segments are treated like short ones below.
            stray = set()
            for name, segs in assignment:
                if name is None and sum(self.segs[i].duration_s for i in segs) < self.min_speaker_s \
                        and len(assignment) > 1:
                    stray.update(segs)
            self._apply([(n, [i for i in segs if i not in stray]) for n, segs in assignment])
        else:
            stray = set()
        since = min((self.segs[i].start_s for i in long_ids), default=0.0) if not final else -1.0
        for sid, s in self.segs.items():
            if s.start_s < since:
                continue
            if s.duration_s < self.min_reliable_s or sid in stray:
                key, score = self._choose(s.emb, min(s.duration_s, self.min_reliable_s - 1e-3), s.start_s,
                                          exclude=sid)
                if key is None:
                    continue
                self._move(sid, key, score)
        if final:
            self._renumber()
        after = {i: self.label_of(i) for i in self.segs}
        return {i: d for i, d in after.items() if (d.label, d.kind) != (before[i].label, before[i].kind)}

    def _ahc(self, ids: list[int]) -> list[tuple[str | None, list[int]]]:
        """Clusters segments ``ids``; returns [(profile name or None, member ids)]."""
        names = list(self.enrolled.profiles)
        vecs = [self.enrolled.profiles[n].centroid for n in names] + [self.segs[i].emb for i in ids]
        # An anchor weighs like one long segment: enough to pull its person's segments together, not so
        # much that it outvotes the session's own evidence.
        w = np.array([self.anchor_weight_s] * len(names) + [self.segs[i].duration_s for i in ids], np.float64)
        x = np.stack(vecs).astype(np.float32)
        sim = x @ x.T
        n = len(vecs)
        np.fill_diagonal(sim, -np.inf)
        anchor = np.full(n, -1)
        anchor[: len(names)] = np.arange(len(names))
        for a in range(len(names)):  # cannot-link: two profiles never merge
            for b in range(len(names)):
                if a != b:
                    sim[a, b] = -np.inf
        alive = np.ones(n, bool)
        members = [[k] for k in range(n)]
        sums = x * w[:, None]  # duration-weighted sum of each cluster's vectors (its centroid's direction)
        while True:
            flat = int(np.argmax(sim))
            a, b = divmod(flat, n)
            if not np.isfinite(sim[a, b]) or sim[a, b] < self.th.merge:
                break
            if anchor[b] >= 0 and anchor[a] < 0:
                a, b = b, a  # the anchored cluster survives the merge
            if anchor[a] >= 0 and anchor[b] < 0:
                # Joining a person needs the joining cluster itself to pass that person's threshold against
                # the enrolled voiceprint. Average linkage alone is not enough: on narrow-band (8 kHz) audio
                # every voice of a session resembles the others more than it resembles any enrollment.
                c = sums[b] / max(float(np.linalg.norm(sums[b])), 1e-12)
                if float(c @ x[a if len(members[a]) == 1 else self._anchor_row(members[a], len(names))]) \
                        < self._accept(names[anchor[a]]):
                    sim[a, b] = sim[b, a] = -np.inf
                    continue
            # Lance-Williams update for weighted average linkage.
            row = (w[a] * sim[a] + w[b] * sim[b]) / (w[a] + w[b])
            keep_inf = ~np.isfinite(sim[a]) | ~np.isfinite(sim[b])  # cannot-links of either side persist
            row[keep_inf] = -np.inf
            sim[a, :], sim[:, a] = row, row
            sim[a, a] = -np.inf
            sim[b, :], sim[:, b] = -np.inf, -np.inf
            w[a] += w[b]
            sums[a] += sums[b]
            anchor[a] = max(anchor[a], anchor[b])
            members[a] += members[b]
            members[b] = []
            alive[b] = False
            if anchor[a] >= 0:
                # The merged cluster now holds an anchor: it may never merge with another anchored one.
                for c in np.where(alive & (anchor >= 0))[0]:
                    if c != a:
                        sim[a, c] = sim[c, a] = -np.inf
        out: list[tuple[str | None, list[int]]] = []
        for k in np.where(alive)[0]:
            segs = [ids[m - len(names)] for m in members[k] if m >= len(names)]
            if segs:
                out.append((names[anchor[k]] if anchor[k] >= 0 else None, segs))
        return out

    @staticmethod
    def _anchor_row(members: list[int], n_anchors: int) -> int:
        """The anchor (profile voiceprint row) among a cluster's members."""
        return next(m for m in members if m < n_anchors)

    def _apply(self, assignment: list[tuple[str | None, list[int]]]) -> None:
        """Rewrites keys from a clustering, keeping unknown cluster ids (numbers) where they overlap."""
        old_dur: dict[int, dict[int, float]] = {}
        for k, (name, segs) in enumerate(assignment):
            if name is None:
                for sid in segs:
                    ok = self.segs[sid].key
                    if isinstance(ok, int):
                        old_dur.setdefault(k, {})
                        old_dur[k][ok] = old_dur[k].get(ok, 0.0) + self.segs[sid].duration_s
        taken: set[int] = set()
        target: dict[int, str | int] = {}
        order = sorted(old_dur, key=lambda k: -max(old_dur[k].values()))
        for k in order:
            for cid, _ in sorted(old_dur[k].items(), key=lambda kv: -kv[1]):
                if cid not in taken and cid in self.clusters:
                    target[k] = cid
                    taken.add(cid)
                    break
        for k, (name, segs) in enumerate(assignment):
            if name is not None:
                target[k] = name
            elif k not in target:
                target[k] = self._new_cluster()
        for k, (name, segs) in enumerate(assignment):
            for sid in segs:
                self._move(sid, target[k], None, refresh=False)
        for cid in list(self.clusters):
            self._refresh(cid)
        for k, (name, segs) in enumerate(assignment):
            for sid in segs:
                s = self.segs[sid]
                s.score = self._score_key(s.emb, s.key)

    def _move(self, sid: int, key: str | int, score: float | None, refresh: bool = True) -> None:
        s = self.segs[sid]
        old = s.key
        if old != key:
            if isinstance(old, int) and old in self.clusters and sid in self.clusters[old].members:
                self.clusters[old].remove(sid, s, self._reliable(sid))
                if refresh:
                    self._refresh(old)
            if isinstance(key, int):
                self.clusters[key].add(sid, s, self._reliable(sid))
                if refresh:
                    self._refresh(key)
            s.key = key
        if score is not None:
            s.score = score

    def _renumber(self) -> None:
        first = {}
        for sid, s in sorted(self.segs.items(), key=lambda kv: kv[1].start_s):
            if isinstance(s.key, int) and s.key not in first:
                first[s.key] = len(first) + 1
        for cid, c in self.clusters.items():
            c.number = first.get(cid, c.number)
        self._next_number = len(first) + 1
