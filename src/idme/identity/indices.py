"""The two voiceprint indices of the user's design.

* ``EnrolledIndex`` ("Me" index): the owner's and the named profiles' voiceprints. It holds every enrollment
  embedding (ids map back to profiles) and scores a query against each profile's centroid: the mean of a
  profile's takes is a steadier voiceprint than any single take (3D-Speaker and SpeechBrain score
  verification the same way). Exact inner-product search (FAISS ``IndexFlatIP``) on unit vectors = cosine.
  At millions of voices this becomes an IVF/HNSW index over centroids; the interface stays.
* ``UnknownIndex`` ("Not-Me" index): unknown speakers met in this session, one centroid per cluster, updated
  in place as a cluster grows. A session meets tens of people, so this is a plain numpy (k, dimension)
  matrix: FAISS's ``IndexIDMap::search`` opens an OpenMP region even for one query against 5 vectors
  (faiss#2823), ~1 ms under load against 3 us for the matrix product (code review 2026-12-01, §1.4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from .profiles import Profile

#: FAISS searches of indices smaller than this run on one OpenMP thread: a query against a few thousand
#: vectors takes microseconds, less than waking an OpenMP team (on a busy 2-core machine a 5-vector search
#: took 840-2000 us with 2 threads and 4 us with 1, review §1.4).
SINGLE_THREAD_MAX_VECTORS = 10_000


@contextlib.contextmanager
def _single_omp_thread(ntotal: int) -> Iterator[None]:
    """Runs the enclosed FAISS call on one OpenMP thread when the index holds < SINGLE_THREAD_MAX_VECTORS.

    Set per call and restored, not once at import: OpenMP's thread count is a per-thread setting
    (libgomp keeps it in each thread's ICVs), so a call at import in the main thread would not reach the
    labeller thread that searches, and the caller's own OpenMP code keeps the count it chose.
    """
    if ntotal >= SINGLE_THREAD_MAX_VECTORS:
        yield
        return
    before = faiss.omp_get_max_threads()
    if before == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


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

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with _single_omp_thread(self.centroids.ntotal):
            return self.centroids.search(_unit(q)[None, :], k)

    def scores(self, q: np.ndarray) -> dict[str, float]:
        """Cosine of ``q`` (dimension,) with every profile centroid."""
        if not self._names:
            return {}
        d, i = self._search(q, len(self._names))
        return {self._names[j]: float(s) for s, j in zip(d[0], i[0]) if j >= 0}

    def best(self, q: np.ndarray) -> Match | None:
        if not self._names:
            return None
        d, i = self._search(q, 1)
        return Match(self._names[int(i[0, 0])], float(d[0, 0]))


class UnknownIndex:
    """Centroids of this session's unknown speakers, keyed by integer cluster id (exact inner product).

    Rows keep the order FAISS's ``IndexIDMap2`` gave them (a replaced centroid moves to the end), so a tie
    between two clusters resolves to the same one as before.
    """

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension
        self._mat = np.zeros((0, dimension), np.float32)  # (k, dimension), unit rows
        self._row_ids: list[int] = []  # cluster id of each row

    def __len__(self) -> int:
        return len(self._row_ids)

    def __contains__(self, cid: object) -> bool:
        return cid in self._row_ids

    def set(self, cid: int, centroid: np.ndarray) -> None:
        """Adds or replaces cluster ``cid``'s centroid (normalised here)."""
        self.remove(cid)
        self._mat = np.vstack([self._mat, _unit(centroid)[None, :]])
        self._row_ids.append(int(cid))

    def remove(self, cid: int) -> None:
        if cid in self._row_ids:
            r = self._row_ids.index(cid)
            self._mat = np.delete(self._mat, r, axis=0)
            del self._row_ids[r]

    def get(self, cid: int) -> np.ndarray:
        """Cluster ``cid``'s stored unit centroid, float32 (dimension,); KeyError if absent."""
        if cid not in self._row_ids:
            raise KeyError(cid)
        return self._mat[self._row_ids.index(cid)].copy()

    def best(self, q: np.ndarray) -> Match | None:
        if not self._row_ids:
            return None
        s = self._mat @ _unit(q)
        r = int(np.argmax(s))  # the first row on ties, as FAISS's flat search
        return Match(self._row_ids[r], float(s[r]))

    def search(self, q: np.ndarray, k: int) -> list[Match]:
        """The ``k`` closest clusters, best first."""
        if not self._row_ids:
            return []
        s = self._mat @ _unit(q)
        order = np.argsort(-s, kind="stable")[: min(k, len(self._row_ids))]
        return [Match(self._row_ids[r], float(s[r])) for r in order]
