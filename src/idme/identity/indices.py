"""The two FAISS indices of the user's design.

* ``EnrolledIndex`` ("Me" index): the owner's and the named profiles' voiceprints. It holds every enrollment
  embedding (ids map back to profiles) and scores a query against each profile's centroid: the mean of a
  profile's takes is a steadier voiceprint than any single take (3D-Speaker and SpeechBrain score
  verification the same way). Exact inner-product search (``IndexFlatIP``) on unit vectors = cosine.
  At millions of voices this becomes an IVF/HNSW index over centroids; the interface stays.
* ``UnknownIndex`` ("Not-Me" index): unknown speakers met in this session, one centroid per cluster, updated
  in place as a cluster grows (``IndexIDMap2`` supports remove + add by id).
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from .profiles import Profile


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Match:
    """A query's best match: ``key`` (profile name or cluster id), cosine ``score``."""

    key: str | int
    score: float


class EnrolledIndex:
    """Profiles' voiceprints; ``best(q)`` returns the best-scoring profile."""

    def __init__(self, profiles: list[Profile], dimension: int) -> None:
        self.dimension = dimension
        self.profiles = {p.name: p for p in profiles}
        self._names = [p.name for p in profiles]
        # All takes, for inspection and future k-NN scoring; ids are row numbers into _take_owner.
        self.takes = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._take_owner: list[str] = []
        # One centroid per profile: the scoring index.
        self.centroids = faiss.IndexFlatIP(dimension)
        for p in profiles:
            if p.embeddings.shape[1] != dimension:
                raise ValueError(f"profile {p.name} has dimension {p.embeddings.shape[1]}, index {dimension}")
            ids = np.arange(len(self._take_owner), len(self._take_owner) + len(p.embeddings), dtype=np.int64)
            self.takes.add_with_ids(_unit(p.embeddings), ids)
            self._take_owner += [p.name] * len(p.embeddings)
            self.centroids.add(p.centroid[None, :])

    def __len__(self) -> int:
        return len(self._names)

    def scores(self, q: np.ndarray) -> dict[str, float]:
        """Cosine of ``q`` (dimension,) with every profile centroid."""
        if not self._names:
            return {}
        d, i = self.centroids.search(_unit(q)[None, :], len(self._names))
        return {self._names[j]: float(s) for s, j in zip(d[0], i[0]) if j >= 0}

    def best(self, q: np.ndarray) -> Match | None:
        if not self._names:
            return None
        d, i = self.centroids.search(_unit(q)[None, :], 1)
        return Match(self._names[int(i[0, 0])], float(d[0, 0]))


class UnknownIndex:
    """Centroids of this session's unknown speakers, keyed by integer cluster id."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self.index = faiss.IndexIDMap2(faiss.IndexFlatIP(dimension))
        self._ids: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def set(self, cid: int, centroid: np.ndarray) -> None:
        """Adds or replaces cluster ``cid``'s centroid."""
        ids = np.array([cid], dtype=np.int64)
        if cid in self._ids:
            self.index.remove_ids(ids)
        self.index.add_with_ids(_unit(centroid)[None, :], ids)
        self._ids.add(cid)

    def remove(self, cid: int) -> None:
        if cid in self._ids:
            self.index.remove_ids(np.array([cid], dtype=np.int64))
            self._ids.discard(cid)

    def best(self, q: np.ndarray) -> Match | None:
        if not self._ids:
            return None
        d, i = self.index.search(_unit(q)[None, :], 1)
        return Match(int(i[0, 0]), float(d[0, 0]))

    def search(self, q: np.ndarray, k: int) -> list[Match]:
        if not self._ids:
            return []
        d, i = self.index.search(_unit(q)[None, :], min(k, len(self._ids)))
        return [Match(int(j), float(s)) for s, j in zip(d[0], i[0]) if j >= 0]
