#!/usr/bin/env python
"""Benchmark the bundled CAM++ encoder: latency per call, and EER on a trial list (full and cropped).

Usage (from the repository root)::

    .venv/bin/python scripts/bench_campplus.py [--trials /work/shared/data/librispeech-test-other/trials.txt]
        [--threads 2] [--crops 0.25,0.5,1,2] [--skip-eer]

Latency: ms per ``embed`` of 1 s, 3 s and 10 s of real speech, and per ``embed_windows`` call over 10 s
with 1.5 s windows every 0.25 s (median of several runs, after a warm-up). EER: cosine scoring of the
list with each file embedded once (whole file), then once more per crop length, each file cut to
``crop`` seconds starting 0.5 s in (or earlier when the file is short): whole-file voiceprint against a
crop, and crop against crop, to show how short is too short (``min_input_s``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from idme.embed.campplus import CampPlusEmbedder, CampPlusOptions
from idme.eval.metrics import eer
from idme.eval.trials import read_trials, split_scores

DEFAULT_TRIALS = Path("/work/shared/data/librispeech-test-other/trials.txt")


def _median_ms(fn, reps: int) -> float:
    fn()  # warm-up: first call pays onnxruntime's allocations
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def latency(embedder: CampPlusEmbedder, speech: np.ndarray) -> None:
    for seconds in (1, 3, 10):
        clip = speech[:seconds * 16000]
        ms = _median_ms(lambda: embedder.embed(clip), 7)
        print(f"embed {seconds:>2d} s: {ms:7.1f} ms")
    ten = speech[:160000]
    n = 1 + (len(ten) - 24000) // 4000
    ms = _median_ms(lambda: embedder.embed_windows(ten, 24000, 4000), 5)
    print(f"embed_windows 10 s, 1.5 s / 0.25 s hop ({n} windows): {ms:7.1f} ms ({ms / n:.1f} ms per window)")


def crop(samples: np.ndarray, crop_s: float, rate: int = 16000) -> np.ndarray:
    """``crop_s`` seconds starting 0.5 s in (past the leading silence), or earlier if the file is short."""
    n = int(crop_s * rate)
    start = max(0, min(rate // 2, len(samples) - n))
    return samples[start:start + n]


def report_eer(what: str, trials: list, enroll: dict, test: dict) -> None:
    scores = np.array([float(enroll[t.enroll] @ test[t.test]) for t in trials])
    labels = np.array([t.target for t in trials])
    tgt, non = split_scores(scores, labels)
    rate, threshold = eer(tgt, non)
    print(f"EER {what:>24}: {100 * rate:5.2f}% at cosine {threshold:.3f} "
          f"(target mean {tgt.mean():.3f}, non-target mean {non.mean():.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=Path, default=DEFAULT_TRIALS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--crops", default="0.25,0.5,1,2",
                        help="comma-separated crop lengths in s ('' for none)")
    parser.add_argument("--skip-eer", action="store_true")
    args = parser.parse_args(argv)

    embedder = CampPlusEmbedder(options=CampPlusOptions(intra_op_threads=args.threads))
    t0 = time.perf_counter()
    embedder.load()
    print(f"CAM++ {embedder.version}: session load {1000 * (time.perf_counter() - t0):.0f} ms, "
          f"{args.threads} threads")
    trials = read_trials(args.trials)
    files = sorted({t.enroll for t in trials} | {t.test for t in trials})
    audio = {f: sf.read(f, dtype="float32")[0] for f in files}
    # Real speech for the latency runs: the first files joined to at least 10 s.
    joined = np.cumsum([len(x) for x in audio.values()])
    latency(embedder, np.concatenate(list(audio.values())[:int(np.searchsorted(joined, 160000)) + 1]))
    if args.skip_eer:
        return 0
    t0 = time.perf_counter()
    whole = {f: embedder.embed(x) for f, x in audio.items()}
    print(f"{len(trials)} trials, {len(audio)} files embedded in {time.perf_counter() - t0:.0f} s")
    report_eer("whole files", trials, whole, whole)
    for crop_s in (float(c) for c in args.crops.split(",") if c.strip()):
        short = {f: embedder.embed(crop(x, crop_s)) for f, x in audio.items()}
        report_eer(f"whole vs {crop_s:g} s crop", trials, whole, short)
        report_eer(f"{crop_s:g} s vs {crop_s:g} s crops", trials, short, short)
    return 0


if __name__ == "__main__":
    sys.exit(main())
