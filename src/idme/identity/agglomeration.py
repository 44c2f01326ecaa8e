"""Greedy average-linkage agglomerative clustering with anchors and cannot-link pairs.

Shared by the live tracker's re-clustering (``identity.tracker``: enrolled voiceprints as anchors) and the
pyannote segmenter's clustering of local speakers (``segment.pyannote``: two speakers one window tells
apart are cannot-link). Numpy only; O(n^2) memory, so callers bound n.
"""

from __future__ import annotations

import numpy as np


class Agglomeration:
    """State of a greedy weighted-average-linkage clustering with anchors (O(n^2) memory).

    ``sim`` holds the linkage similarity of every pair (float32, Lance-Williams updated); ``eff`` is ``sim``
    with the pairs that may not merge set to -inf: dead clusters, two anchored clusters (cannot-link),
    ``cannot`` pairs (clusters holding two rows the caller said are different people; the constraint is
    inherited by what they merge into) and ``blocked`` pairs (an unanchored cluster that failed an anchor's
    check). Each row caches its best partner (``rowarg``, the first column holding ``rowmax``), so picking
    the next merge costs O(n) and a merge rescans only the rows whose best partner changed: ~O(n^2) in all
    instead of O(n^3). The pick equals ``argmax`` over the whole of ``eff`` (first row, then first column,
    on ties).
    """

    def __init__(self, x: np.ndarray, w: np.ndarray, anchor: np.ndarray, cannot: np.ndarray | None = None) -> None:
        """x: float32 (n, dimension) unit rows; w: float64 (n,) weights (seconds, or 1 for plain average
        linkage); anchor: (n,) int, the profile index of an anchor row, -1 for a segment; cannot: bool (n, n),
        symmetric, True where two rows must never end up in one cluster (None: no such pairs)."""
        n = len(x)
        self.sim = x @ x.T
        np.fill_diagonal(self.sim, -np.inf)
        self.w = w.copy()
        self.anchor = anchor.copy()
        self.sums = x * self.w[:, None]  # duration-weighted sum of each cluster's vectors (its centroid)
        self.members = [[k] for k in range(n)]
        self.alive = np.ones(n, bool)
        self.blocked = np.zeros((n, n), bool)
        self.cannot = np.zeros((n, n), bool) if cannot is None else np.array(cannot, bool)
        self.eff = self.sim.copy()
        anchored = self.anchor >= 0
        self.eff[np.ix_(anchored, anchored)] = -np.inf
        self.eff[self.cannot] = -np.inf
        self.rowarg = np.zeros(n, np.int64)
        self.rowmax = np.full(n, -np.inf, self.eff.dtype)
        self._rescan(np.arange(n))

    def _rescan(self, rows: np.ndarray) -> None:
        if len(rows):
            sub = self.eff[rows]
            arg = sub.argmax(axis=1)
            self.rowarg[rows] = arg
            self.rowmax[rows] = sub[np.arange(len(rows)), arg]

    def best(self) -> tuple[int, int, np.floating]:
        """(a, b, similarity) of the most similar pair that may merge; similarity -inf when none may."""
        r = int(np.argmax(self.rowmax))
        return r, int(self.rowarg[r]), self.rowmax[r]

    def block(self, a: int, b: int) -> None:
        """Forbids merging ``a`` and ``b`` until one of them merges with another cluster."""
        self.blocked[a, b] = self.blocked[b, a] = True
        self.eff[a, b] = self.eff[b, a] = -np.inf
        self._rescan(np.array([a, b]))

    def merge(self, a: int, b: int) -> None:
        """Merges cluster ``b`` into ``a`` (the anchored one, if either is)."""
        row = (self.w[a] * self.sim[a] + self.w[b] * self.sim[b]) / (self.w[a] + self.w[b])
        self.sim[a, :], self.sim[:, a] = row, row
        self.sim[a, a] = -np.inf
        self.w[a] += self.w[b]
        self.sums[a] += self.sums[b]
        self.anchor[a] = max(self.anchor[a], self.anchor[b])
        self.members[a] += self.members[b]
        self.members[b] = []
        self.cannot[a] |= self.cannot[b]
        self.cannot[:, a] = self.cannot[a]
        self.alive[b] = False
        # The anchor check compares the joining cluster with the profile's voiceprint, so an anchored
        # cluster's blocks still hold after it grew; an unanchored one has a new centroid: check it again.
        if self.anchor[a] < 0:
            self.blocked[a, :] = self.blocked[:, a] = False
        self.blocked[b, :] = self.blocked[:, b] = False
        valid = self.alive & ~self.blocked[a] & ~self.cannot[a]
        valid[a] = False
        if self.anchor[a] >= 0:
            valid &= self.anchor < 0
        col = np.where(valid, self.sim[a], -np.inf).astype(self.eff.dtype)
        self.eff[a, :], self.eff[:, a] = col, col
        self.eff[b, :], self.eff[:, b] = -np.inf, -np.inf
        self.rowmax[b] = -np.inf
        others = self.alive.copy()
        others[a] = False
        # Rows whose best partner was b, or was a and dropped, look again; the rest only compare with a.
        stale = others & ((self.rowarg == b) | ((self.rowarg == a) & (col < self.rowmax)))
        better = others & ~stale & ((col > self.rowmax) | ((col == self.rowmax) & (a < self.rowarg)))
        self.rowmax[better] = col[better]
        self.rowarg[better] = a
        self._rescan(np.append(np.flatnonzero(stale), a))
