"""The Me / named / unknown decision, unknown-speaker clusters, and re-clustering.

A segment is the best-scoring profile if that profile accepts it (``verify.accept``), else it joins the
closest unknown speaker above ``same_unknown`` or opens a new one. An unknown speaker's centroid is the
duration-weighted mean of its members. Segments shorter than ``min_reliable_s`` never move a centroid and
open a speaker only when there is no other: they take the best speaker talking around them (an enrolled one
only above ``SHORT_ENROLLED_FLOOR``). ``recluster`` revisits the session as a whole.

With a ``calibration`` (``eval.calibration.QualityCalibration``, what ``Idme.calibration`` returns), the Me /
named decision is the one ``idme verify`` makes: ``verify.calibrated_score`` of the cosine with the segment's
duration, bandwidth and SNR (measured on its samples) against the calibration's LLR threshold; the tracker
holds cosines to ``verify.calibrated_bar``, the cosine at which that LLR reaches the threshold, so its
cosine margins keep their meaning. Unknown-speaker decisions (``same_unknown``, ``merge``) stay cosine-to-cosine.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from . import verify
from .agglomeration import Agglomeration
from .indices import EnrolledIndex, UnknownIndex, _unit
from .profiles import Profile
from .thresholds import Thresholds


#: Cosine a segment shorter than ``min_reliable_s`` needs against an enrolled neighbour's voiceprint to
#: inherit that person. Sub-second VAD chunks of meetings-dev plus 6 synthetic meetings of unseen speakers
#: (`scripts/make_synthetic_meetings.py 1`), scored against the owner's 3-take centroid: the owner's score
#: median 0.26 (p10 0.05), other people's median 0.08; 0.10 drops the clearly-other half.
SHORT_ENROLLED_FLOOR = 0.10
#: An interim (partial-window) label names an enrolled person only this far above their threshold: a few
#: seconds of a turn score noisily, and meeting01 showed interim false "Me" at 0.4027 and 0.4094 against
#: ``me`` = 0.40 whose final labels were another speaker (issue 10, item 6).
INTERIM_MARGIN = 0.05


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
    #: The segment's measured condition (calibrated tracker only), else None (the session's).
    cond: verify.AudioCondition | None = None


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
                 min_speaker_s: float = 2.0, live_window: int = 400, narrowband: bool = False,
                 calibration=None) -> None:
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
        calibration: an ``eval.calibration.QualityCalibration`` for this encoder: enrolled people are
            accepted on calibrated LLRs (segment duration, bandwidth, SNR); None: on ``thresholds``' cosines.
        """
        self.narrowband = narrowband
        self.calibration = calibration
        #: The condition assumed for a segment whose samples were not given: the session's band, no SNR.
        self._session_cond = verify.AudioCondition(4000.0 if narrowband else 8000.0, narrowband, None)
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
        #: Bounds on the speakers the final re-clustering leaves (``LabelOptions.min/max_speakers``).
        self.min_speakers: int | None = None
        self.max_speakers: int | None = None
        #: AS-norm statistics of each profile's voiceprint (a score-normalised calibration), by name.
        self._pstats: dict[str, tuple[float, ...] | None] = {}
        #: Where each profile's trials are centred (``verify.Domain``: the other enrolled voices), by name.
        self._domain = verify.Domain(profiles)
        self._centre: dict[str, np.ndarray | None] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def _accept(self, name: str, speech_s: float | None = None,
                cond: verify.AudioCondition | None = None, vec: np.ndarray | None = None) -> float:
        """The cosine profile ``name`` needs in this session (narrow-band or not); calibrated: the cosine at
        which the calibrated LLR of ``speech_s`` seconds under ``cond`` reaches the LLR threshold. vec: the
        voice being scored (unit (dimension,)), needed by a calibration that AS-normalises scores (without
        it such a calibration falls back to the cosine bar)."""
        p = self.enrolled.profiles[name]
        norm = getattr(self.calibration, "norm", None)
        if self.calibration is None or speech_s is None or (norm is not None and vec is None):
            return verify.threshold(self.th, p, self.narrowband)
        if norm is not None:
            if name not in self._pstats:
                self._centre[name] = self._domain.centre_for(self.calibration, name, p.centroid, p.narrowband)
                self._pstats[name] = verify.norm_stats(self.calibration, p.centroid, p.narrowband,
                                                       self._centre[name])
            return verify.calibrated_bar(self.calibration, speech_s, cond or self._session_cond, p.narrowband,
                                         profile_stats=self._pstats[name],
                                         test_stats=verify.norm_stats(self.calibration, vec, p.narrowband,
                                                                      self._centre[name]))
        return verify.calibrated_bar(self.calibration, speech_s, cond or self._session_cond, p.narrowband)

    def _condition(self, samples: np.ndarray | None) -> verify.AudioCondition | None:
        """The measured condition of a segment's 16 kHz ``samples`` (calibrated tracker only)."""
        if self.calibration is None or samples is None or len(samples) == 0:
            return None
        return verify.audio_condition(np.asarray(samples, np.float32), None, 8000 if self.narrowband else None)

    def _cluster_cond(self, sids: list[int]) -> verify.AudioCondition:
        """A group of segments' condition: narrow-band by duration-weighted majority, the weighted mean SNR."""
        conds = [(self.segs[i].duration_s, self.segs[i].cond) for i in sids if self.segs[i].cond is not None]
        if not conds:
            return self._session_cond
        w = np.array([d for d, _ in conds])
        nb = float(np.dot(w, [c.narrowband for _, c in conds])) > 0.5 * float(w.sum())
        snrs = [(d, c.snr_db) for d, c in conds if c.snr_db is not None]
        snr = float(np.average([q for _, q in snrs], weights=[d for d, _ in snrs])) if snrs else None
        return verify.AudioCondition(4000.0 if nb else 8000.0, nb, snr)

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
            return verify.score(self.enrolled.profiles[key], emb)
        return verify.score(self.unknown.get(key), emb) if key in self.clusters else -1.0

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
                exclude: int | None = None, cond: verify.AudioCondition | None = None,
                speech_s: float | None = None) -> tuple[str | int | None, float]:
        """(key, score) for a segment; key None means "open a new unknown speaker". cond / speech_s: the
        segment's measured condition and its real duration (default ``duration_s``) for a calibrated bar."""
        best = self.enrolled.best(emb)
        if best is not None and best.score >= self._accept(str(best.key), speech_s or duration_s, cond, emb):
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
    def peek(self, emb: np.ndarray, duration_s: float, samples: np.ndarray | None = None) -> Decision:
        """The decision for a segment in progress (interim label); changes nothing. An enrolled person
        needs ``INTERIM_MARGIN`` over their threshold here; below it the segment shows as unknown.
        samples: the 16 kHz audio ``emb`` came from (its condition, for a calibrated tracker)."""
        cond = self._condition(samples)
        key, score = self._choose(emb, duration_s, cond=cond)
        if isinstance(key, str) and score < self._accept(key, duration_s, cond, emb) + INTERIM_MARGIN:
            m = self.unknown.best(emb)
            key, score = (m.key, m.score) if m is not None and m.score >= self.th.same_unknown else (None, score)
        if key is None:
            return Decision(f"Speaker {self._next_number}", "unknown", score, -1)
        return self._decision(key, score)

    def decide(self, seg_id: int, emb: np.ndarray, duration_s: float, start_s: float,
               samples: np.ndarray | None = None) -> Decision:
        """Labels a finished segment and updates the unknown clusters. emb: float32 (dimension,), unit norm.
        samples: the segment's 16 kHz audio (its measured condition, for a calibrated tracker)."""
        emb = _unit(emb)
        cond = self._condition(samples)
        key, score = self._choose(emb, duration_s, start_s, cond=cond)
        opened = key is None
        if opened:
            key = self._new_cluster()
        self.segs[seg_id] = _Seg(emb, duration_s, start_s, key, score, cond)
        if self._reliable(seg_id):
            bisect.insort(self._reliable_by_start, (start_s, seg_id))
        if isinstance(key, int):
            self.clusters[key].add(seg_id, self.segs[seg_id], self._reliable(seg_id))
            self._refresh(key)
            # A new speaker's first segment would score 1.00 against its own voiceprint; it keeps the
            # score of the closest voice already known instead (why it became a new speaker).
            if not opened:
                score = verify.score(self.unknown.get(key), emb) if key in self.clusters else score
            self.segs[seg_id].score = score
        return self._decision(key, score)

    def label_of(self, seg_id: int) -> Decision:
        s = self.segs[seg_id]
        return self._decision(s.key, s.score)

    # -- re-clustering -------------------------------------------------------------------------------
    def recluster(self, final: bool = False) -> dict[int, Decision]:
        """Revisits every segment; returns {seg_id: new decision} for the segments whose label changed.

        Reliable segments are clustered (``_ahc``), with each profile's voiceprint as an anchor: a cluster
        holding an anchor is that person. Unknown clusters keep their earlier number where they overlap an
        earlier cluster; ``final`` renumbers them by first appearance. Short segments then take the best of
        the speakers talking around them.
        """
        before = {i: self.label_of(i) for i in self.segs}
        long_ids = [i for i, s in self.segs.items() if s.duration_s >= self.min_reliable_s]
        if not final and len(long_ids) > self.live_window:
            # Periodic passes of a long live session revisit only the latest segments, which bounds their
            # cost (AHC is quadratic in memory and worse in time); the final pass revisits everything.
            long_ids = sorted(long_ids, key=lambda i: self.segs[i].start_s)[-self.live_window:]
        if long_ids:
            assignment = self._ahc(long_ids, bounded=final)
            # A "speaker" heard for less than min_speaker_s in all is far more often a stray segment of
            # someone present than a new person: its segments are treated like short ones below (not
            # when the user said how many speakers there are at least).
            stray = set()
            for name, segs in assignment:
                if name is None and sum(self.segs[i].duration_s for i in segs) < self.min_speaker_s \
                        and len(assignment) > 1 and not (final and self.min_speakers):
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
                                          exclude=sid, cond=s.cond, speech_s=s.duration_s)
                if key is None:
                    continue
                self._move(sid, key, score)
        if final and self.max_speakers:
            self._fold_extra_speakers(self.max_speakers)
        if final:
            self._renumber()
        after = {i: self.label_of(i) for i in self.segs}
        return {i: d for i, d in after.items() if (d.label, d.kind) != (before[i].label, before[i].kind)}

    def _ahc(self, ids: list[int], bounded: bool = False) -> list[tuple[str | None, list[int]]]:
        """Clusters segments ``ids``; returns [(profile name or None, member ids)].

        Duration-weighted average linkage on cosine, merging the most similar pair until none reaches
        ``merge``; each profile's voiceprint is an anchor weighing ``anchor_weight_s``, and two anchors never
        merge. A cluster joins an anchor only if its own centroid passes that profile's threshold against
        the voiceprint: on narrow-band (8 kHz) audio every voice of a session resembles the others more than
        any enrollment, so linkage alone would hand strangers to the owner.

        bounded: honour ``min_speakers`` / ``max_speakers`` (final pass): merging goes on below ``merge``
        while more than ``max_speakers`` clusters hold segments, and never leaves fewer than ``min_speakers``.
        """
        names = list(self.enrolled.profiles)
        vecs = [self.enrolled.profiles[n].centroid for n in names] + [self.segs[i].emb for i in ids]
        # An anchor weighs like one long segment: enough to pull its person's segments together, not so
        # much that it outvotes the session's own evidence.
        w = np.array([self.anchor_weight_s] * len(names) + [self.segs[i].duration_s for i in ids], np.float64)
        x = np.stack(vecs).astype(np.float32)
        anchor = np.full(len(vecs), -1)
        anchor[: len(names)] = np.arange(len(names))  # row k < len(names) is profile k's voiceprint
        agg = Agglomeration(x, w, anchor)
        has_segs = np.arange(len(vecs)) >= len(names)
        n_speakers = len(ids)  # clusters holding segments (an anchor alone is nobody heard)
        lo = (self.min_speakers or 0) if bounded else 0
        hi = self.max_speakers if bounded and self.max_speakers else None
        while True:
            a, b, sim = agg.best()
            if not np.isfinite(sim) or (sim < self.th.merge and (hi is None or n_speakers <= hi)):
                break
            if has_segs[a] and has_segs[b] and n_speakers <= lo:
                agg.block(a, b)  # one speaker fewer than the user said: look for another pair
                continue
            if agg.anchor[b] >= 0 and agg.anchor[a] < 0:
                a, b = b, a  # the anchored cluster survives the merge
            if agg.anchor[a] >= 0 and agg.anchor[b] < 0:
                c = agg.sums[b] / max(float(np.linalg.norm(agg.sums[b])), 1e-12)
                sids = [ids[m - len(names)] for m in agg.members[b] if m >= len(names)] \
                    if self.calibration is not None else []
                bar = self._accept(names[agg.anchor[a]], float(agg.w[b]), self._cluster_cond(sids), c) \
                    if sids else self._accept(names[agg.anchor[a]])
                if verify.score(x[agg.anchor[a]], c) < bar:
                    agg.block(a, b)  # until b grows: a bigger cluster is checked again on its new centroid
                    continue
            n_speakers -= int(has_segs[a] and has_segs[b])
            has_segs[a] |= has_segs[b]
            agg.merge(a, b)
        out: list[tuple[str | None, list[int]]] = []
        for k in np.flatnonzero(agg.alive):
            segs = [ids[m - len(names)] for m in agg.members[k] if m >= len(names)]
            if segs:
                out.append((names[agg.anchor[k]] if agg.anchor[k] >= 0 else None, segs))
        return out

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

    def _fold_extra_speakers(self, limit: int) -> None:
        """``max_speakers``: while more than ``limit`` speakers hold segments (short segments can keep a
        speaker of their own that clustering never saw), the unknown one with the least speech is folded,
        segment by segment, into the closest remaining speaker."""
        while True:
            speech: dict[str | int, float] = {}
            for seg in self.segs.values():
                speech[seg.key] = speech.get(seg.key, 0.0) + seg.duration_s
            unknown = [k for k in speech if not isinstance(k, str)]
            if len(speech) <= limit or not unknown:
                return
            victim = min(unknown, key=lambda k: speech[k])
            rest = [k for k in speech if k != victim]
            for sid, seg in list(self.segs.items()):
                if seg.key == victim:
                    best = max(rest, key=lambda k: self._score_key(seg.emb, k))
                    self._move(sid, best, self._score_key(seg.emb, best))

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
