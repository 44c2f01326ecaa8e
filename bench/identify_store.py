"""`Idme.identify` over a local store of N profiles: the store's cached gallery against reading every profile.

    nice -n 10 python bench/identify_store.py ../shared/data --sizes 100 1000 5000

A store holds the 10 librispeech-test-other speakers (each enrolled through ``Idme.enroll_files`` from
three utterances) plus N - 10 distractor profiles drawn like bench/identify_scale.py's (a Gaussian fitted
to real CAM++ voiceprints; its cache of them is reused), saved through the store as any profile is
(sealed when the home has a key). Queries: 3 s crops of the speakers' other utterances, through the whole
``Idme.identify`` path (read, VAD, embed, search, calibrate, audit).

For each N it prints: the first identify of a fresh ``Idme`` (reads the store, builds the gallery), the
next ones (p50 / p95, the store unchanged), and the same queries through ``verify.check`` over
``profiles.all()`` read per query (what ``Idme.identify`` did before the store gallery), plus how many
queries named the same person with the same LLR on both paths and how many named the right speaker.
One query at a time, one thread; wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The throwaway stores' data key is wrapped by this passphrase (no keyring here); it protects nothing.
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

from _store import open_store  # noqa: E402
from identify_scale import distractors, real_voices  # noqa: E402

from idme.api import Idme  # noqa: E402
from idme.audio import read_audio  # noqa: E402
from idme.identity.profiles import Profile  # noqa: E402
from idme.identity.verify import check  # noqa: E402
from idme.settings import resolve  # noqa: E402


def pct(x: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(x) * 1000, p))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the shared data folder (../shared/data)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 5000])
    ap.add_argument("--queries", type=int, default=20, help="query crops (3 s each)")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "idme-bench-identify",
                    help="bench/identify_scale.py's cache of real voiceprints (made when missing)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import faiss

    faiss.omp_set_num_threads(1)
    _, prints, _, _ = real_voices(args.data, args.cache / "real_voices.npz")
    by_spk: dict[str, list[Path]] = {}
    for f in sorted((args.data / "librispeech-test-other").glob("*/*.flac")):
        by_spk.setdefault(f.parent.name, []).append(f)
    queries = []
    for spk, files in sorted(by_spk.items()):
        for f in files[3:]:
            x = read_audio(f)
            queries.append((spk, x[16000:16000 * 4] if len(x) >= 16000 * 4 else x))
    queries = queries[:: max(1, len(queries) // args.queries)][: args.queries]
    print("| profiles | first identify (reads the store) | next identifies p50 / p95 | reading every profile "
          "per query p50 / p95 | same name and LLR | right speaker |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            home = Path(tmp) / f"store-{n}"
            idme = open_store(home)
            for spk, files in sorted(by_spk.items()):
                idme.enroll_files(f"spk{spk}", files[:3], force=True)
            enc = dict(idme.encoder_info)
            for i, v in enumerate(distractors(prints, max(0, n - len(by_spk)), seed=n)):
                idme.profiles.save(Profile(f"d{i}", enc, v[None, :], [{"native_rate": 16000}]))
            fresh = Idme(resolve(home, asr="none"))
            t0 = time.perf_counter()
            fresh.identify(queries[0][1], sample_rate=16000)
            first = time.perf_counter() - t0
            warm, cold, same, right = [], [], 0, 0
            for spk, x in queries:
                t0 = time.perf_counter()
                a = fresh.identify(x, sample_rate=16000)
                warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                b = check(fresh.profiles.all(), x, fresh.embedder, fresh.thresholds(), top=5,
                          calibration=fresh.calibration())
                cold.append(time.perf_counter() - t0)
                same += a.name == b.name and abs((a.score or 0) - (b.score or 0)) < 1e-2
                right += a.name == f"spk{spk}"
            print(f"| {n:,} | {first * 1000:.0f} ms | {pct(warm, 50):.0f} / {pct(warm, 95):.0f} ms | "
                  f"{pct(cold, 50):.0f} / {pct(cold, 95):.0f} ms | {same} / {len(queries)} | {right} / {len(queries)} |",
                  flush=True)


if __name__ == "__main__":
    main()
