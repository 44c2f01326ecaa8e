"""Voiceprint galleries for 1:N identification: one interface, three backends (issue 12).

* ``FlatGallery``: FAISS exact inner product (``IndexFlatIP``). Exact, no training; cost grows with the
  gallery (p50 90-156 ms a query at 1M 192-d vectors on one loaded core), so it is the default while small.
* ``IvfPqGallery``: FAISS IVF-PQ (an inverted file of ``nlist`` lists, 4-bit fast-scan product-quantised codes)
  whose ``rerank`` best candidates are re-scored exactly against the stored float32 vectors
  (``IndexRefineFlat``), so the scores it returns are exact cosines and only the candidate list is
  approximate. ``make_gallery`` picks it from ``APPROX_MIN`` vectors up (bench/identify_scale.py measured
  where exact search stops being cheap).
* ``PgVectorGallery``: PostgreSQL + pgvector, for galleries that outgrow one machine (replicas,
  partitioning, Citus). An IVFFlat index (``vector_ip_ops``) finds candidates; pgvector computes their
  distances from the full vectors, so the returned scores are exact too.

Every backend stores unit vectors under string keys (profile names) and returns ``Hit``s, best first,
whose ``score`` is the cosine ``verify.score`` computes. Keys are unique: adding a key again replaces it.

A gallery also keeps what a calibrated decision needs besides the vectors, so that identifying through it
gives the scores identifying among the local profiles gives: each voiceprint's band (``narrowband``: enrolled
from telephone-rate audio, held to the narrow-band bar and cohort), the per-band sum and count of its unit
voiceprints (``domain``: where a score-normalised calibration centres trials, ``verify.Domain``), and the
encoder that made them (``encoder``: a voiceprint of another encoder, even of the same dimension, scores
as nothing meaningful).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import faiss
import numpy as np

from ..errors import IdmeError
from .indices import _single_omp_thread, _unit
from .profiles import same_encoder

log = logging.getLogger(__name__)

#: From this many vectors on, ``make_gallery`` builds an IVF-PQ gallery instead of an exact one. Measured
#: with bench/identify_scale.py (one query at a time, one thread, 2 shared cores at load 5-9): exact search
#: p50 0.13 ms at 10k, 6.7 ms at 100k, 59 ms at 1M (linear: ~1 ms near 20k, under load up to 3x more);
#: IVF-PQ fast-scan + re-ranking p50 0.07-0.09 ms at 10k and 0.14 ms at 100k, but with recall@1 below 1
#: and a training step (1 s at 10k, 7 s at 100k, 68 s at 1M). Exact while it costs about a millisecond.
#: (Those IVF-PQ figures are of the former PQ48x4fs / 4 sqrt(n) lists settings; at 1M the current ones,
#: OPQ32 + sqrt(n) lists, cost 1.1 ms CPU p50 against 34-37 ms for exact search. Not re-measured below 1M.)
APPROX_MIN = 20_000


class GalleryError(IdmeError):
    """A gallery that cannot be built, reached or searched (bad vectors, a database without pgvector)."""


@dataclass(frozen=True)
class Hit:
    """One gallery entry found for a query: its ``key`` and the exact cosine ``score``."""

    key: str
    score: float
    #: The voiceprint was enrolled from telephone-band audio (``Profile.narrowband``).
    narrowband: bool = False


class Gallery(Protocol):
    """A searchable set of unit voiceprints under string keys."""

    #: Backend name, e.g. "faiss-flat", "faiss-ivfpq", "pgvector".
    kind: str
    #: Vector dimension (the encoder's ``dimension``).
    dimension: int

    def __len__(self) -> int:
        """Number of voiceprints held."""
        ...

    #: The encoder that made the voiceprints (``Embedder.info()``: name, version, ...), None when not recorded.
    encoder: dict | None

    def add(self, keys: Sequence[str], vectors: np.ndarray, narrowband: Sequence[bool] | None = None) -> None:
        """Adds (or replaces) voiceprints: ``vectors`` float32 (n, dimension), normalised here; ``narrowband``
        (n,) each one's band (default: all wideband)."""
        ...

    def domain(self) -> dict[bool, tuple[np.ndarray, int]]:
        """Per band (narrowband: True / False), the float64 (dimension,) sum of the held unit voiceprints and
        their count; bands with none are left out."""
        ...

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        """The ``k`` best entries for ``query`` (dimension,), best first, with exact cosine scores."""
        ...

    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored unit voiceprints of ``keys`` (float32 (dimension,) each; keys not held are left out):
        what a score-normalised calibration needs of each candidate (``verify.norm_stats``)."""
        ...


def _check_vectors(keys: Sequence[str], vectors: np.ndarray, dimension: int) -> np.ndarray:
    v = np.atleast_2d(np.asarray(vectors, np.float32))
    if v.shape != (len(keys), dimension):
        raise GalleryError(f"expected {len(keys)} vectors of dimension {dimension}, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise GalleryError("voiceprints must be finite numbers")
    if len(set(keys)) != len(keys):
        raise GalleryError("keys must be unique within one add()")
    return _unit(v)


def _check_bands(keys: Sequence[str], narrowband: Sequence[bool] | None) -> list[bool]:
    if narrowband is None:
        return [False] * len(keys)
    bands = [bool(b) for b in narrowband]
    if len(bands) != len(keys):
        raise GalleryError(f"expected {len(keys)} band flags, got {len(bands)}")
    return bands


def _sums(v: np.ndarray, bands: Sequence[bool]) -> dict[bool, tuple[np.ndarray, int]]:
    """``Gallery.domain`` of unit rows ``v`` (n, d) with their ``bands``."""
    b = np.asarray(bands, bool)
    return {nb: (v[b == nb].astype(np.float64).sum(axis=0), int((b == nb).sum())) for nb in (False, True)
            if (b == nb).any()}


class _FaissGallery:
    """Shared key bookkeeping of the FAISS backends: row ids are positions in ``_keys``; a replaced key's
    old row is masked out of results (the FAISS indices here cannot remove rows cheaply)."""

    kind = "faiss"

    def __init__(self, dimension: int, encoder: dict | None = None) -> None:
        self.dimension = int(dimension)
        self.encoder = None if encoder is None else dict(encoder)
        self._keys: list[str] = []
        self._nb: list[bool] = []  # each row's band
        self._row: dict[str, int] = {}
        self._dead: set[int] = set()
        self._sum: dict[bool, np.ndarray] = {}  # live rows' unit vectors, per band (domain())
        self._count: dict[bool, int] = {}
        self.index: faiss.Index

    def __len__(self) -> int:
        return len(self._row)

    def keys(self) -> list[str]:
        return list(self._row)

    def _register(self, keys: Sequence[str], bands: Sequence[bool], v: np.ndarray | None = None) -> None:
        """The index's last len(keys) rows (unit vectors ``v``; None: read back from the index) under ``keys``
        with their ``bands``; a replaced key's old row is masked out and leaves the band sums."""
        first = self.index.ntotal - len(keys)
        for k in keys:
            if k in self._row:
                old = self._row[k]
                self._dead.add(old)
                if old < first:  # counted already (a row of this batch is never counted once masked)
                    nb = self._nb[old]
                    self._sum[nb] = self._sum[nb] - self.index.reconstruct(old).astype(np.float64)
                    self._count[nb] -= 1
            self._row[k] = len(self._keys)
            self._keys.append(k)
        self._nb.extend(bands)
        for s in range(0, len(keys), 100_000):  # bounded temporaries when read back (1M rows: 768 MB)
            e = min(len(keys), s + 100_000)
            rows = v[s:e] if v is not None else self.index.reconstruct_n(first + s, e - s)
            live = [first + i not in self._dead for i in range(s, e)]
            for nb, (total, n) in _sums(rows[live], [b for b, ok in zip(bands[s:e], live) if ok]).items():
                self._sum[nb] = self._sum.get(nb, 0.0) + total
                self._count[nb] = self._count.get(nb, 0) + n

    def add(self, keys: Sequence[str], vectors: np.ndarray, narrowband: Sequence[bool] | None = None) -> None:
        v = _check_vectors(keys, vectors, self.dimension)
        bands = _check_bands(keys, narrowband)
        self._add(v)
        self._register(list(keys), bands, v)

    def domain(self) -> dict[bool, tuple[np.ndarray, int]]:
        return {nb: (self._sum[nb].copy(), n) for nb, n in self._count.items() if n > 0}

    def _add(self, v: np.ndarray) -> None:
        self.index.add(v)

    def _raw_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        with _single_omp_thread(self.index.ntotal):
            return self.index.search(q[None, :], k)

    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        # IndexFlatIP and IndexRefineFlat (the exact re-rank copy) both give back the stored vector.
        return {k: np.asarray(self.index.reconstruct(self._row[k]), np.float32) for k in keys if k in self._row}

    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        if k < 1:
            raise GalleryError(f"k must be at least 1 (got {k})")
        if not self._row:
            return []
        q = _unit(np.asarray(query, np.float32).reshape(-1))
        if q.shape != (self.dimension,):
            raise GalleryError(f"query has dimension {q.shape[0]}, the gallery {self.dimension}")
        d, i = self._raw_search(q, min(k + len(self._dead), self.index.ntotal))
        hits = [Hit(self._keys[j], float(s), self._nb[j]) for s, j in zip(d[0], i[0])
                if j >= 0 and j not in self._dead]
        return hits[:k]


class FlatGallery(_FaissGallery):
    """Exact search (FAISS ``IndexFlatIP`` on unit vectors = cosine)."""

    kind = "faiss-flat"

    def __init__(self, dimension: int, encoder: dict | None = None) -> None:
        super().__init__(dimension, encoder)
        self.index = faiss.IndexFlatIP(self.dimension)


class IvfPqGallery(_FaissGallery):
    """IVF-PQ candidates re-ranked exactly: ``nprobe`` of ``nlist`` lists are scanned with PQ codes of ``m``
    sub-vectors (4-bit fast-scan by default, ``fast_scan=False`` for classic ``nbits``-bit codes), and the
    best ``rerank`` candidates are re-scored against the float32 vectors. With ``opq`` (the default) the
    vectors are first rotated by a trained orthogonal matrix (OPQ) that balances the variance across the
    sub-vectors; a rotation keeps inner products, so the coarse lists and the re-ranked scores are the same.

    The index must be trained before vectors are added: ``build(keys, vectors)`` trains on (a sample of)
    the vectors it is given and adds them. Later ``add`` calls reuse the trained lists.
    """

    kind = "faiss-ivfpq"

    def __init__(self, dimension: int, nlist: int, m: int = 32, nprobe: int | None = None, rerank: int = 400,
                 nbits: int = 4, fast_scan: bool = True, opq: bool = True, encoder: dict | None = None) -> None:
        super().__init__(dimension, encoder)
        if self.dimension % m:
            raise GalleryError(f"m={m} must divide the dimension {self.dimension}")
        if fast_scan and nbits != 4:
            raise GalleryError("fast_scan takes 4-bit codes (nbits=4)")
        # Defaults measured at 1M (bench/identify_scale.py, one query at a time, one thread; issue 12 report):
        # 220 real CAM++ queries (full utterances, the tuning set) and 282 held-out 3 s crops against the
        # 142 real voices plus drawn distractors. With 1024 lists the list holding exact search's best entry
        # ranked <= 67 for 99% of the tuning queries and 158 / 192 for the last two; with 4096 lists up to
        # 574 (14% of the lists), so fewer, larger lists scan less for the same recall here. OPQ32,IVF1024,
        # PQ32x4fs: nprobe 96 / rerank 100 gave recall@1 0.982 (tuning) / 1.000 (held out); nprobe 160 /
        # rerank 200 gave 0.9955 / 1.000 at 1.09 / 1.16 ms CPU p50 and 1.44 / 1.46 ms p95. PQ16/PQ24
        # without OPQ stayed at 0.92-0.95 whatever the re-rank. nprobe: 5/32 of the lists (160 at 1M).
        # 220 queries: one miss is 0.9955; 282 of 282 means a miss rate below ~1.1% (rule of three), not zero.
        # A rebuilt gallery on another machine (2026-12-02, quiet) missed 2 of 220 at rerank 200 (0.991, wall
        # p95 1.24 ms) and 1 at rerank 400 (0.9955 / 1.000, wall p95 1.28 / 1.31 ms): re-ranking 400 exactly
        # costs ~0.05-0.3 ms more and holds recall@1 >= 0.995 on both query sets, so it is the default.
        nprobe = max(1, 5 * int(nlist) // 32) if nprobe is None else int(nprobe)
        self.nlist, self.m, self.nprobe, self.rerank, self.nbits = int(nlist), int(m), nprobe, int(rerank), int(nbits)
        self.opq = bool(opq)
        # "np": no polysemous training (FAISS's factory default for classic codes; 14 s on 2,000 vectors)
        codes = f"PQ{self.m}x4fs" if fast_scan else f"PQ{self.m}x{self.nbits}np"
        self.factory = f"{'OPQ%d,' % self.m if opq else ''}IVF{self.nlist},{codes}"
        base = faiss.index_factory(self.dimension, self.factory, faiss.METRIC_INNER_PRODUCT)
        self._wrap(faiss.IndexRefineFlat(base))

    def _wrap(self, index: faiss.IndexRefineFlat) -> None:
        self.index = index
        self._base = faiss.downcast_index(index.base_index)  # IndexRefineFlat keeps its base alive
        self._ivf = faiss.extract_index_ivf(self._base)
        if self.opq:
            # OPQ training: 10 alternations on at most 32k vectors (FAISS's default: 50 on 65k).
            # Its internal PQ has 4-bit codes like the index's (OPQMatrix's own is 8-bit: 256 centroids a
            # sub-space, 60 s of training for 5,000 vectors).
            opq = faiss.downcast_VectorTransform(self._base.chain.at(0))
            opq.niter, opq.max_train_points = 10, 32_768
            if self.index.ntotal == 0 and not self.index.is_trained:
                self._opq_pq = faiss.ProductQuantizer(self.dimension, self.m, 4)  # opq.pq does not own it
                opq.pq = self._opq_pq
        self._ivf.nprobe = self.nprobe

    @classmethod
    def from_index(cls, index: faiss.Index, keys: Sequence[str], nprobe: int | None = None,
                   rerank: int = 400, narrowband: Sequence[bool] | None = None,
                   encoder: dict | None = None) -> IvfPqGallery:
        """Wraps a trained and filled index that an ``IvfPqGallery`` built (``faiss.write_index(g.index,
        path)``, then ``faiss.read_index``) holding one row per key of ``keys``, in order (``narrowband``: their
        bands, default all wideband)."""
        owner = index  # the proxy that owns the C++ index: a downcast one does not, so keep this alive
        index = faiss.downcast_index(index)
        if not isinstance(index, faiss.IndexRefineFlat) or index.ntotal != len(keys):
            raise GalleryError(f"not an IVF-PQ gallery index of {len(keys)} vectors")
        ivf = faiss.extract_index_ivf(index.base_index)
        g = cls.__new__(cls)
        _FaissGallery.__init__(g, index.d, encoder)
        base = faiss.downcast_index(index.base_index)
        g.opq = isinstance(base, faiss.IndexPreTransform)
        pq = faiss.downcast_index(ivf)
        g.nlist, g.m, g.nbits = int(ivf.nlist), int(pq.pq.M), int(pq.pq.nbits)
        g.nprobe = max(1, 5 * g.nlist // 32) if nprobe is None else int(nprobe)
        g.rerank = int(rerank)
        fs = "fs" if isinstance(pq, faiss.IndexIVFPQFastScan) else "np"
        g.factory = f"{'OPQ%d,' % g.m if g.opq else ''}IVF{g.nlist},PQ{g.m}x{g.nbits}{fs}"
        g._owner = owner
        g._wrap(index)
        bands = _check_bands(keys, narrowband)
        g._register(list(keys), bands)
        return g

    @staticmethod
    def default_nlist(n: int) -> int:
        """Lists for ``n`` vectors: about sqrt(n) rounded to a power of two, at least 16; 1M -> 1024,
        100k -> 256. FAISS's guideline is 4-16 sqrt(n), but on voiceprints (1M: real voices plus drawn
        distractors; 99% of 220 queries) 1024 lists needed 6-7% of the lists scanned to reach the query's
        exact best entry (two k-means runs), 2048 lists 4%, 4096 lists 12%, and the worst query needed
        8-19% / 19% / 14%: no gain from more lists, and k-means for 1024 trains several times faster."""
        return int(max(16, 2 ** round(np.log2(np.sqrt(max(n, 1))))))

    @classmethod
    def build(cls, keys: Sequence[str], vectors: np.ndarray, nlist: int | None = None, m: int = 32,
              nprobe: int | None = None, rerank: int = 400, train_max: int = 100_000, seed: int = 0,
              nbits: int = 4, fast_scan: bool = True, opq: bool = True, narrowband: Sequence[bool] | None = None,
              encoder: dict | None = None) -> IvfPqGallery:
        """Trains on at most ``train_max`` of ``vectors`` (float32 (n, d)) and adds them all under ``keys``."""
        v = np.atleast_2d(np.asarray(vectors, np.float32))
        g = cls(v.shape[1], nlist or cls.default_nlist(len(v)), m, nprobe, rerank, nbits, fast_scan, opq, encoder)
        g.train(v, train_max, seed)
        g.add(keys, v, narrowband)
        return g

    def train(self, vectors: np.ndarray, train_max: int = 100_000, seed: int = 0) -> None:
        """Trains the rotation, the coarse lists and the PQ codebooks on (a seeded sample of) ``vectors``."""
        v = _unit(np.atleast_2d(np.asarray(vectors, np.float32)))
        need = max(self.nlist, 2 ** self.nbits)  # k-means needs a point per centroid (PQ: 2^nbits codes)
        if len(v) < need:
            raise GalleryError(f"IVF-PQ with {self.nlist} lists needs at least {need} training vectors, got "
                               f"{len(v)}; use a FlatGallery (exact) for a gallery this small")
        if len(v) > train_max:
            v = v[np.random.default_rng(seed).choice(len(v), train_max, replace=False)]
        self.index.train(v)

    def _add(self, v: np.ndarray) -> None:
        for s in range(0, len(v), 100_000):  # bounded temporaries (the OPQ rotation copies its input)
            self.index.add(v[s:s + 100_000])

    def _raw_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # k_factor: IndexRefineFlat asks the IVF-PQ index for k * k_factor candidates, then re-scores them.
        # Passed per search, not set on the shared index: a server's threads search it at once with their
        # own k. (With OPQ the IVF index sits behind the rotation, which forwards search parameters.)
        params = faiss.IndexRefineSearchParameters(k_factor=max(1.0, self.rerank / max(k, 1)),
                                                   base_index_params=faiss.SearchParametersIVF(nprobe=self.nprobe))
        # One query: one OpenMP thread whatever the gallery's size (FAISS would split the probed lists across
        # threads; on a shared machine waking a team costs more than the scan, review §1.4).
        with _single_omp_thread(0):
            return self.index.search(q[None, :], k, params=params)


def make_gallery(keys: Sequence[str], vectors: np.ndarray, dimension: int | None = None,
                 approx_min: int = APPROX_MIN, narrowband: Sequence[bool] | None = None,
                 encoder: dict | None = None, **ivfpq: int) -> FlatGallery | IvfPqGallery:
    """A FAISS gallery holding ``vectors`` (n, d) under ``keys`` (``narrowband``: their bands; ``encoder``: the
    encoder that made them): exact below ``approx_min`` vectors, IVF-PQ with exact re-ranking from there on
    (trained on the vectors themselves; ``ivfpq``: options of ``IvfPqGallery.build``)."""
    v = np.asarray(vectors, np.float32).reshape(len(keys), -1) if len(keys) else \
        np.zeros((0, dimension or 0), np.float32)
    dim = dimension or v.shape[1]
    if len(keys) >= approx_min:
        log.info("gallery of %d voiceprints: IVF-PQ with exact re-ranking", len(keys))
        return IvfPqGallery.build(keys, v, narrowband=narrowband, encoder=encoder, **ivfpq)
    g = FlatGallery(dim, encoder)
    if len(keys):
        g.add(keys, v, narrowband)
    return g


# -- PostgreSQL + pgvector --------------------------------------------------------------------------------
_TABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _vec_text(v: np.ndarray) -> str:
    """pgvector's text form of a vector, '[x1,x2,...]', with float32 round-trip precision."""
    return "[" + ",".join(f"{x:.9g}" for x in np.asarray(v, np.float32)) + "]"


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _copy_binary(keys: Sequence[str], v: np.ndarray, bands: Sequence[bool], header: bool, trailer: bool) -> bytes:
    """Rows (key text, embedding vector, narrowband boolean) in COPY's binary format: pgvector's binary input
    is int16 dimension, int16 0, then big-endian float32s; a boolean is one byte. 1M voiceprints load in
    seconds instead of minutes of text formatting."""
    d = v.shape[1]
    field = struct.pack(">ihh", 4 + 4 * d, d, 0)
    body = np.ascontiguousarray(v, ">f4")
    parts = [_COPY_SIGNATURE] if header else []
    for k, row, nb in zip(keys, body, bands):
        kb = k.encode()
        parts += [struct.pack(">hi", 3, len(kb)), kb, field, row.tobytes(), struct.pack(">ib", 1, int(nb))]
    if trailer:
        parts.append(b"\xff\xff")
    return b"".join(parts)


#: Rows per IVFFlat list over a trained gallery's leading coordinates (``PgVectorGallery.index(dims=...)``):
#: at 1M, 4000 lists (250 rows each) scanned at 120 probes reached recall@1 0.9955 / 0.9965 (tuning /
#: held-out queries) at wall p95 16.5 / 15.5 ms, where 1000 lists needed 80 probes for 0.991 / 0.989 at
#: 67 / 75 ms on the same machine (fewer rows scanned for the same recall); the build takes 286 s instead
#: of 40 s (pgvector's k-means over more lists). bench/identify_scale.py, 2026-12-02.
SUB_ROWS_PER_LIST = 250


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _locked(method):
    """Runs a ``PgVectorGallery`` method under the gallery's lock (one connection shared by threads). A
    connection the server dropped (restart, idle timeout, network) is opened again and the call retried
    once; any other database error becomes one GalleryError line."""
    import functools

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        import psycopg

        with self._lock:
            for attempt in (0, 1):
                try:
                    return method(self, *args, **kwargs)
                except psycopg.Error as exc:
                    if attempt == 0 and self._conn.closed:
                        log.warning("PostgreSQL connection lost (%s); connecting again",
                                    _scrub(_first_line(exc), self._url))
                        self._connect()
                        continue
                    raise GalleryError(f"PostgreSQL ({self.table}): {_scrub(_first_line(exc), self._url)}") from None
    return run


class PgVectorGallery:
    """Voiceprints in a PostgreSQL table ``table(key text primary key, embedding vector(d))``.

    ``index()`` builds an IVFFlat index (inner product); a search scans ``probes`` of its lists (default:
    an eighth of them; 100k rows, 1024 lists: probes 128 gave recall@1 1.000 vs exact, 64 gave 0.98-0.995)
    and returns the ``k`` best with the exact scores pgvector computes from the stored vectors (so
    candidates are re-ranked exactly by construction). ``index_hnsw()`` builds an HNSW index instead
    (``ef_search`` candidates per query). Without an index, search is an exact sequential scan.

    At a million voiceprints both are slow to build or to search on full 192-d vectors (issue 12: HNSW took
    1,431 s to build; IVFFlat, 1000 lists, needed 45-70 ms of CPU a query for recall@1 0.98-0.99), so a
    large gallery is trained first: ``train(vectors)`` stores an orthogonal basis (the eigenvectors of the
    voiceprints' second moments, strongest first) in ``{table}_basis``, rows are stored rotated into it
    (a rotation keeps inner products: scores stay exact cosines), and ``index(dims=48)`` or
    ``index_hnsw(dims=48)`` indexes only the first ``dims`` coordinates (``subvector``), which hold 80% of
    the energy: exact search's best entry ranked <= 8th by them for every one of 220 real queries at 1M.
    A search then takes the ``rerank`` best rows by those coordinates from the index and orders them by
    the full vectors in SQL. At 1M (bench/identify_scale.py): IVFFlat 4000 lists on 48 coordinates (the
    default there) built in 286 s and reached recall@1 0.9955 / 0.9965 (tuning / held-out queries) at
    probes 120 (the default) for wall p95 16.5 / 15.5 ms on an idle machine; 1000 lists built in 40-69 s
    and needed probes 80 for 0.991 at 67-75 ms; HNSW (m 16, ef_construction 64) on them took 1,226 s and
    reached 0.968-0.993 at ef_search 400-800 for 21-39 ms CPU.
    Beside the table: ``{table}_domain`` keeps the per-band sum and count of its voiceprints (``domain``),
    updated in each ``add``'s transaction, so a search never aggregates the whole table; ``{table}_meta``
    records the encoder that made them (``add(..., encoder=...)``). Tables made before these existed are brought up
    to date when opened (each row wideband, as they were scored then).
    Needs psycopg 3 (``pip install 'idme[pg]'``) and a server with the ``vector`` extension (created here
    when the role may).
    """

    kind = "pgvector"

    def __init__(self, url: str, dimension: int, table: str = "idme_voiceprints", probes: int | None = None,
                 connect_timeout_s: float = 5.0, create: bool = True, statement_timeout_s: float | None = None
                 ) -> None:
        """Connects and sets ``table`` up (``create`` False: it must exist already; GalleryError otherwise).
        statement_timeout_s: the server cancels any statement (lock waits included) that runs longer, so a
        caller that must not hang on a stuck database gets a GalleryError instead (None: no limit)."""
        try:
            import psycopg
        except ImportError:
            raise GalleryError("the PostgreSQL gallery needs psycopg: pip install 'idme[pg]'") from None
        if not _TABLE_RE.match(table):
            raise GalleryError(f"invalid table name {table!r}: lower-case letters, digits and '_'")
        self.dimension, self.table = int(dimension), table
        self.probes = None if probes is None else int(probes)
        #: HNSW candidates visited per search (``index_hnsw``); pgvector's default is 40.
        self.ef_search = 100
        #: Rows re-scored on the full vectors after an HNSW search of a trained gallery's leading coordinates.
        self.rerank = 100
        self._lists: int | None = None
        self._basis: np.ndarray | None = None  # (d, d) float32 rows = basis vectors, when trained
        self._sub: int | None = None  # dims of the HNSW index over subvector(embedding, 1, dims), if any
        self.encoder: dict | None = None  # recorded in {table}_meta (add(..., encoder=...))
        # One connection, many threads (a server's requests): psycopg serialises single statements, but a
        # search's SET LOCAL + SELECT transaction must not interleave with another thread's.
        self._lock = threading.RLock()
        self._url, self._timeout_s, self._statement_timeout_s = url, connect_timeout_s, statement_timeout_s
        self._connect()
        try:
            self._setup(create)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> None:
        import psycopg

        try:
            extra = {} if self._statement_timeout_s is None else {
                "options": f"-c statement_timeout={max(1, round(1000 * self._statement_timeout_s))}"}
            self._conn = psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, round(self._timeout_s)),
                                         **extra)
        except psycopg.Error as exc:
            raise GalleryError(f"cannot connect to PostgreSQL ({_scrub(_first_line(exc), self._url)}); check the "
                               "URL and that the server is running") from None

    def _setup(self, create: bool) -> None:
        import psycopg

        t = self.table
        try:
            if not self._conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone():
                if not self._conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
                    raise GalleryError("this PostgreSQL server has no pgvector extension: install it (Debian: "
                                       "postgresql-NN-pgvector) or use a server that has it")
                self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            exists = self._conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0] is not None
            if not exists and not create:
                raise GalleryError(f"there is no table {t} on that server: move a store there first with "
                                   f"`idme profiles migrate --to URL --table {t}`")
            if not exists:
                self._conn.execute(f"CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, "
                                   f"embedding vector({self.dimension}) NOT NULL, "
                                   "narrowband boolean NOT NULL DEFAULT false)")
            row = self._conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                (t,)).fetchone()
            if row and row[0] != self.dimension:
                raise GalleryError(f"table {t} holds {row[0]}-d vectors, not {self.dimension}-d: another "
                                   "encoder's gallery; use another table")
            self._upgrade()
            if self._conn.execute("SELECT to_regclass(%s)", (f"{t}_basis",)).fetchone()[0]:
                blob = self._conn.execute(f"SELECT basis FROM {t}_basis").fetchone()
                if blob:
                    self._basis = np.frombuffer(blob[0], np.float32).reshape(self.dimension, self.dimension)
            self._sub = self._indexed_dims()
            meta = self._conn.execute(f"SELECT value FROM {t}_meta WHERE name = 'encoder'").fetchone()
        except psycopg.Error as exc:
            raise GalleryError(f"PostgreSQL refused to open table {t}: {_scrub(_first_line(exc), self._url)}") from None
        self.encoder = json.loads(meta[0]) if meta else None

    def _upgrade(self) -> None:
        """Adds what a table made by an earlier idme lacks: the band column (its rows were scored as
        wideband), the metadata table and the band sums (filled from the rows once, under a lock that holds
        writers off). Writes nothing to a table that has them all, so a read-only replica opens too."""
        t, domain = self.table, f"{self.table}_domain"
        has_band = self._conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = %s::regclass AND "
                                      "attname = 'narrowband' AND NOT attisdropped", (t,)).fetchone()
        if not has_band:
            self._conn.execute(f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS narrowband boolean NOT NULL DEFAULT false")
        if not self._conn.execute("SELECT to_regclass(%s)", (f"{t}_meta",)).fetchone()[0]:
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {t}_meta (name text PRIMARY KEY, value text NOT NULL)")
        if self._conn.execute("SELECT to_regclass(%s)", (domain,)).fetchone()[0]:
            return
        with self._conn.transaction():
            self._conn.execute(f"LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE")
            if self._conn.execute("SELECT to_regclass(%s)", (domain,)).fetchone()[0]:
                return  # another connection made it meanwhile
            self._conn.execute(f"CREATE TABLE {domain} (narrowband boolean PRIMARY KEY, "
                               f"total vector({self.dimension}) NOT NULL, n bigint NOT NULL)")
            self._fill_domain()

    def _record_encoder(self, encoder: dict) -> None:
        """Inside a writer's transaction (``add``, after its lock): records the encoder (``Embedder.info()``)
        that made the voiceprints being added; raises GalleryError when the table records another one (name
        or version), whose voiceprints cannot be mixed with these. Read under the lock, so two writers of
        different encoders cannot both pass."""
        row = self._conn.execute(f"SELECT value FROM {self.table}_meta WHERE name = 'encoder'").fetchone()
        held = json.loads(row[0]) if row else None
        if held is not None and not same_encoder(held, encoder):
            raise GalleryError(f"table {self.table} holds voiceprints of encoder {held.get('name')} "
                               f"{held.get('version')}, not {encoder.get('name')} {encoder.get('version')}: "
                               "use another table (--table)")
        self._conn.execute(f"INSERT INTO {self.table}_meta VALUES ('encoder', %s) ON CONFLICT (name) DO UPDATE "
                           "SET value = EXCLUDED.value", (json.dumps(dict(encoder), sort_keys=True),))

    @_locked
    def refresh_domain(self) -> None:
        """Recomputes the band sums from the rows (one scan): the repair after rows were changed by anything
        but this class (plain SQL, an older idme)."""
        dom = f"{self.table}_domain"
        with self._conn.transaction():
            self._conn.execute(f"LOCK TABLE {dom} IN SHARE ROW EXCLUSIVE MODE")
            self._conn.execute(f"LOCK TABLE {self.table} IN SHARE MODE")
            self._conn.execute(f"DELETE FROM {dom}")
            self._fill_domain()

    @_locked
    def domain(self) -> dict[bool, tuple[np.ndarray, int]]:
        rows = self._conn.execute(f"SELECT narrowband, total::text, n FROM {self.table}_domain WHERE n > 0").fetchall()
        out = {}
        for nb, text, n in rows:
            total = np.asarray(json.loads(text), np.float64)
            out[bool(nb)] = (total if self._basis is None else total @ self._basis.astype(np.float64), int(n))
        return out

    def _indexed_dims(self) -> int | None:
        row = self._conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname IN (%s, %s)",
                                 (f"{self.table}_hnsw", f"{self.table}_ivf")).fetchone()
        m = re.search(r"subvector\(embedding, 1, (\d+)\)", row[0]) if row else None
        return int(m.group(1)) if m else None

    def _rotate(self, v: np.ndarray) -> np.ndarray:
        return v if self._basis is None else np.ascontiguousarray(v @ self._basis.T, np.float32)

    @_locked
    def train(self, vectors: np.ndarray, sample: int = 100_000, seed: int = 0) -> None:
        """Fits and stores the gallery's basis from (a seeded sample of) ``vectors`` (n, d), before any row
        is added: the eigenvectors of the unit vectors' second-moment matrix, strongest first (uncentred:
        inner products, not distances to a mean, are what the index ranks)."""
        if len(self):
            raise GalleryError(f"table {self.table} already holds voiceprints: train an empty gallery, then add")
        v = np.atleast_2d(np.asarray(vectors, np.float32))
        if v.ndim != 2 or v.shape[1] != self.dimension or not np.isfinite(v).all():
            raise GalleryError(f"expected finite vectors of dimension {self.dimension}, got shape {v.shape}")
        if len(v) < self.dimension:
            raise GalleryError(f"training needs at least {self.dimension} voiceprints, got {len(v)}")
        if len(v) > sample:
            v = v[np.random.default_rng(seed).choice(len(v), sample, replace=False)]
        x = _unit(v).astype(np.float64)
        _, vecs = np.linalg.eigh(x.T @ x / len(x))
        basis = np.ascontiguousarray(vecs[:, ::-1].T, np.float32)
        with self._conn.transaction():
            self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table}_basis (basis bytea NOT NULL)")
            self._conn.execute(f"DELETE FROM {self.table}_basis")
            self._conn.execute(f"INSERT INTO {self.table}_basis VALUES (%s)", (basis.tobytes(),))
            self._conn.execute(f"DELETE FROM {self.table}_domain")  # sums of the old basis, of no rows
        self._basis = basis

    def close(self) -> None:
        self._conn.close()

    @property
    def closed(self) -> bool:
        """The connection is gone (closed, or lost and not opened again): the gallery cannot be used."""
        return bool(self._conn.closed)

    def __enter__(self) -> PgVectorGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @_locked
    def __len__(self) -> int:
        # The band counts, not count(*): identify asks for the gallery size on every query, and count(*)
        # scans the table (~30-50 ms at 1M rows).
        return int(self._conn.execute(f"SELECT coalesce(sum(n), 0) FROM {self.table}_domain").fetchone()[0])

    @_locked
    def count_keys(self, keys: Sequence[str]) -> int:
        """How many of ``keys`` the table holds (a migration's check that every row arrived)."""
        return int(self._conn.execute(f"SELECT count(*) FROM {self.table} WHERE key = ANY(%s)",
                                      (list(keys),)).fetchone()[0])

    @_locked
    def add(self, keys: Sequence[str], vectors: np.ndarray, narrowband: Sequence[bool] | None = None,
            encoder: dict | None = None) -> None:
        """Upserts voiceprints in one transaction (COPY into a temp table, then INSERT ... ON CONFLICT); the
        band sums (``{table}_domain``) lose the rows replaced and gain the rows added in the same transaction,
        under a lock that serialises writers (readers are not held up). encoder: the encoder that made them,
        recorded in the same transaction (GalleryError, nothing written, when the table records another)."""
        v = self._rotate(_check_vectors(keys, vectors, self.dimension))
        bands = _check_bands(keys, narrowband)
        t, dom = self.table, f"{self.table}_domain"
        with self._conn.transaction():
            self._conn.execute(f"LOCK TABLE {dom} IN SHARE ROW EXCLUSIVE MODE")
            if encoder is not None:
                self._record_encoder(encoder)
            self._conn.execute(f"CREATE TEMP TABLE _idme_load (key text, embedding vector({self.dimension}), "
                               "narrowband boolean) ON COMMIT DROP")
            with self._conn.cursor().copy("COPY _idme_load (key, embedding, narrowband) FROM STDIN "
                                          "(FORMAT BINARY)") as cp:
                for s in range(0, len(keys), 10_000):
                    cp.write(_copy_binary(keys[s:s + 10_000], v[s:s + 10_000], bands[s:s + 10_000],
                                          header=s == 0, trailer=s + 10_000 >= len(keys)))
            self._conn.execute(self._subtract_sql(f"SELECT t.narrowband, t.embedding FROM {t} t JOIN _idme_load "
                                                  "USING (key)"))
            self._conn.execute(f"INSERT INTO {dom} SELECT narrowband, sum(embedding), count(*) FROM _idme_load "
                               f"GROUP BY narrowband ON CONFLICT (narrowband) DO UPDATE SET "
                               f"total = {dom}.total + EXCLUDED.total, n = {dom}.n + EXCLUDED.n")
            self._conn.execute(f"INSERT INTO {t} SELECT key, embedding, narrowband FROM _idme_load "
                               "ON CONFLICT (key) DO UPDATE SET embedding = EXCLUDED.embedding, "
                               "narrowband = EXCLUDED.narrowband")
        if encoder is not None:
            self.encoder = dict(encoder)

    @_locked
    def keys_except(self, keep: Sequence[str]) -> list[str]:
        """The keys held that are not in ``keep`` (``migrate(prune=True)``: rows of people no longer in the
        store)."""
        return [r[0] for r in self._conn.execute(f"SELECT key FROM {self.table} WHERE NOT (key = ANY(%s))",
                                                  (list(keep),)).fetchall()]

    @_locked
    def remove(self, keys: Sequence[str]) -> int:
        """Deletes the voiceprints of ``keys`` (those held; others are ignored) and takes them out of the
        band sums, in one transaction; returns how many rows went."""
        if not keys:
            return 0
        with self._conn.transaction():
            self._conn.execute(f"LOCK TABLE {self.table}_domain IN SHARE ROW EXCLUSIVE MODE")
            n = self._conn.execute(f"SELECT count(*) FROM {self.table} WHERE key = ANY(%s)", (list(keys),)).fetchone()[0]
            self._conn.execute(f"WITH gone AS (DELETE FROM {self.table} WHERE key = ANY(%s) RETURNING narrowband, "
                               f"embedding) {self._subtract_sql('SELECT narrowband, embedding FROM gone')}",
                               (list(keys),))
        return int(n)

    def _subtract_sql(self, rows: str) -> str:
        """SQL taking ``rows`` (a query of narrowband, embedding) out of the band sums (a writer, under its lock)."""
        dom = f"{self.table}_domain"
        return (f"UPDATE {dom} d SET total = d.total - o.total, n = d.n - o.n FROM (SELECT narrowband, "
                f"sum(embedding) AS total, count(*) AS n FROM ({rows}) r GROUP BY narrowband) o "
                "WHERE d.narrowband = o.narrowband")

    def _fill_domain(self) -> None:
        """The band sums computed from every row (a writer's transaction, holding writers off)."""
        self._conn.execute(f"INSERT INTO {self.table}_domain SELECT narrowband, sum(embedding), count(*) "
                           f"FROM {self.table} GROUP BY narrowband")

    @_locked
    def index(self, lists: int | None = None, work_mem_mb: int = 1024, workers: int = 2,
              dims: int | None = None) -> None:
        """Builds (or rebuilds) the IVFFlat index over what the table holds now; ``lists`` defaults to
        ``IvfPqGallery.default_nlist`` of the row count (at most rows/39, k-means' minimum per list), or,
        over a trained gallery's leading ``dims``, to one list per ``SUB_ROWS_PER_LIST`` rows (4000 at 1M).

        work_mem_mb: ``maintenance_work_mem`` for this build only: pgvector's k-means holds its sample in it
        (100k 192-d rows with 1024 lists needed 245 MB, over the server's 64 MB default). dims: as for
        ``index_hnsw``, lists over the first ``dims`` coordinates of a trained gallery, then a re-rank."""
        self._check_dims(dims)
        n = len(self)
        if dims is not None and not lists:
            lists = max(1, n // SUB_ROWS_PER_LIST)
        lists = int(lists or max(1, min(IvfPqGallery.default_nlist(n), max(1, n // 39))))
        self._conn.execute(f"SET maintenance_work_mem = '{int(work_mem_mb)}MB'")
        self._conn.execute(f"DROP INDEX IF EXISTS {self.table}_ivf")
        self._conn.execute(f"DROP INDEX IF EXISTS {self.table}_hnsw")
        self._conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        self._conn.execute(f"CREATE INDEX {self.table}_ivf ON {self.table} "
                           f"USING ivfflat ({self._column(dims)} vector_ip_ops) WITH (lists = {lists})")
        self._conn.execute("RESET maintenance_work_mem")
        self._conn.execute("RESET max_parallel_maintenance_workers")
        self._lists, self._sub = lists, None if dims is None else int(dims)

    def _check_dims(self, dims: int | None) -> None:
        if dims is not None and (self._basis is None or not 0 < int(dims) < self.dimension):
            raise GalleryError(f"dims={dims} needs a trained gallery (train()) and 0 < dims < {self.dimension}")

    @staticmethod
    def _column(dims: int | None) -> str:
        return "embedding" if dims is None else f"(subvector(embedding, 1, {int(dims)})::vector({int(dims)}))"

    @_locked
    def index_hnsw(self, m: int = 16, ef_construction: int = 64, work_mem_mb: int = 1024, dims: int | None = None,
                   workers: int = 2) -> None:
        """Builds an HNSW index instead (pgvector's defaults m=16, ef_construction=64); searches then visit
        ``ef_search`` candidates. At 100k rows (real + drawn voiceprints) it built in 37-57 s and reached
        recall@1 0.982-0.995 vs exact at ef_search 100 (two builds) and 1.000 at 200; IVFFlat with probes
        128 reached 1.000 after a 12-19 s build (bench/identify_scale.py).

        dims: index only the first ``dims`` coordinates of a trained gallery (``train``), re-ranking the
        ``rerank`` best on the full vectors. work_mem_mb: the graph is built in memory when it fits there
        (pgvector warns and slows down otherwise); workers: parallel build workers."""
        self._check_dims(dims)
        self._conn.execute(f"SET maintenance_work_mem = '{int(work_mem_mb)}MB'")
        self._conn.execute(f"SET max_parallel_maintenance_workers = {int(workers)}")
        self._conn.execute(f"DROP INDEX IF EXISTS {self.table}_ivf")
        self._conn.execute(f"DROP INDEX IF EXISTS {self.table}_hnsw")
        self._conn.execute(f"CREATE INDEX {self.table}_hnsw ON {self.table} USING hnsw "
                           f"({self._column(dims)} vector_ip_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)})")
        self._conn.execute("RESET maintenance_work_mem")
        self._conn.execute("RESET max_parallel_maintenance_workers")
        self._sub = None if dims is None else int(dims)

    def _probes(self) -> int:
        """Lists to scan: ``probes`` if given, else an eighth of the index's lists (read once)."""
        if self.probes is not None:
            return self.probes
        if self._lists is None:
            row = self._conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s",
                                     (f"{self.table}_ivf",)).fetchone()
            opts = dict(o.split("=", 1) for o in (row[0] or [])) if row else {}
            self._lists = int(opts.get("lists", 8))
        # An index over a trained gallery's leading coordinates: 3% of the lists (120 of 4000 at 1M: recall@1
        # 0.9955 / 0.9965, p95 15-16 ms; 1000 lists needed 80 probes for 0.991 at 67-75 ms); else an eighth.
        if self._sub is not None:
            return max(8, self._lists * 3 // 100)
        return max(1, self._lists // 8)

    @_locked
    def vectors(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        if not keys:
            return {}
        rows = self._conn.execute(f"SELECT key, embedding::text FROM {self.table} WHERE key = ANY(%s)",
                                  (list(keys),)).fetchall()
        out = {}
        for key, text in rows:
            v = np.asarray(json.loads(text), np.float32)
            out[key] = v if self._basis is None else np.ascontiguousarray(v @ self._basis, np.float32)
        return out

    @_locked
    def search(self, query: np.ndarray, k: int) -> list[Hit]:
        if k < 1:
            raise GalleryError(f"k must be at least 1 (got {k})")
        q = _unit(np.asarray(query, np.float32).reshape(-1))
        if q.shape != (self.dimension,):
            raise GalleryError(f"query has dimension {q.shape[0]}, the gallery {self.dimension}")
        qt = _vec_text(self._rotate(q))
        with self._conn.transaction():
            # SET LOCAL: the probe count holds for this query's transaction only.
            self._conn.execute(f"SET LOCAL ivfflat.probes = {self._probes()}")
            if self._sub is None:
                self._conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), k)}")
                rows = self._conn.execute(
                    f"SELECT key, -(embedding <#> %(q)s::vector) AS score, narrowband FROM {self.table} "
                    "ORDER BY embedding <#> %(q)s::vector LIMIT %(k)s", {"q": qt, "k": k}).fetchall()
            else:
                # The HNSW index over the leading coordinates yields candidates; the full vectors rank them.
                r = max(int(self.rerank), k)
                self._conn.execute(f"SET LOCAL hnsw.ef_search = {max(int(self.ef_search), r)}")
                sub = f"subvector(%(q)s::vector, 1, {self._sub})::vector({self._sub})"
                rows = self._conn.execute(
                    f"SELECT key, -(embedding <#> %(q)s::vector) AS score, narrowband FROM (SELECT key, embedding, "
                    f"narrowband FROM "
                    f"{self.table} ORDER BY subvector(embedding, 1, {self._sub})::vector({self._sub}) <#> {sub} "
                    "LIMIT %(r)s) AS candidates ORDER BY embedding <#> %(q)s::vector LIMIT %(k)s",
                    {"q": qt, "r": r, "k": k}).fetchall()
        return [Hit(key, float(s), bool(nb)) for key, s, nb in rows]


# -- moving a local store into PostgreSQL (issue 12, `idme profiles migrate`) ------------------------------

@dataclass(frozen=True)
class Migration:
    """What ``migrate`` copied: ``migrated`` voiceprints into ``table`` (which now holds ``table_rows``)."""

    #: The server, with any password removed.
    url: str
    table: str
    #: Profile names copied (their voiceprints upserted, keyed by name).
    names: tuple[str, ...]
    migrated: int
    table_rows: int
    #: Rows deleted because no profile of the store has their name (``prune``).
    removed: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"url": self.url, "table": self.table, "names": list(self.names), "migrated": self.migrated,
                "table_rows": self.table_rows, "removed": list(self.removed)}


def _redact(url: str) -> str:
    """``url`` without a password: neither in the user part (postgresql://user:secret@host ->
    postgresql://user@host) nor as a ``password`` or ``sslpassword`` parameter, in a URL's query or in a
    keyword connection string (``host=h password=secret``)."""
    url = re.sub(r"(://[^:/@]*):[^@]*@", r"\1@", url)
    while True:  # one parameter per pass: each match uses the separator the previous one left
        shorter = re.sub(r"(?i)([?&])(?:ssl)?password=[^&#]*(?:&|(?=#)|$)", r"\1", url, count=1)
        if shorter == url:
            break
        url = shorter
    url = re.sub(r"[?&]$", "", url)
    return re.sub(r"(?i)(^|\s)(?:ssl)?password\s*=\s*(?:'(?:[^'\\]|\\.)*'|\S+)", r"\1", url).strip()


def _secrets_of(url: str) -> list[str]:
    """The password strings in ``url`` (user part, query or keyword form), raw and percent-decoded: what an
    error message from libpq, which may quote them, must not carry."""
    from urllib.parse import unquote

    found = re.findall(r"://[^:/@]*:([^@]*)@", url)
    found += re.findall(r"(?i)[?&](?:ssl)?password=([^&#]*)", url)
    found += re.findall(r"(?i)(?:^|\s)(?:ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url)
    out = {x for f in found for x in (f, unquote(f), f.strip("'")) if x}
    return sorted(out, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    """``text`` (an error about ``url``) with every password of ``url`` replaced by ``***``."""
    for secret in _secrets_of(url):
        text = text.replace(secret, "***")
    return text


def check_url(url: str) -> None:
    """Raises GalleryError unless ``url`` is a postgresql:// (or postgres://) URL."""
    if not re.match(r"^postgres(ql)?://", url):
        raise GalleryError(f"not a PostgreSQL URL: {_redact(url)!r}; give postgresql://user@host:port/dbname")


def migrate(profiles: Sequence, url: str, dimension: int, table: str = "idme_voiceprints",
            connect_timeout_s: float = 5.0, encoder: dict | None = None, prune: bool = False) -> Migration:
    """Copies every profile's voiceprint (``Profile.centroid``, keyed by name, with its band) into a pgvector
    table in one transaction, records ``encoder`` (the one that made them) beside it, then checks that every
    name is there. The local store is only read.

    Raises GalleryError (one line) for a URL that is not postgresql://, a server that does not answer, one
    without pgvector, or a table of another dimension or encoder: nothing is written then, since connecting
    and those checks come first; a failed copy rolls back as one transaction. prune: afterwards, delete the
    rows whose name no profile of the store has (people removed or forgotten since the last migration)."""
    check_url(url)
    keys = [p.name for p in profiles]
    with PgVectorGallery(url, dimension, table=table, connect_timeout_s=connect_timeout_s) as pg:
        if keys:
            pg.add(keys, np.stack([p.centroid for p in profiles]), [bool(p.narrowband) for p in profiles],
                   encoder=encoder)
        found = pg.count_keys(keys) if keys else 0
        if found != len(keys):
            raise GalleryError(f"migration check failed: {found} of {len(keys)} voiceprints are in {table}")
        removed = pg.keys_except(keys) if prune else []
        pg.remove(removed)
        return Migration(_redact(url), table, tuple(keys), len(keys), len(pg), tuple(removed))
