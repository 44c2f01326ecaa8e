#!/usr/bin/env python
"""webrtc vs pyannote segmenter on real meetings: pooled DER on ami-excerpts, and real-time factors.

    .venv/bin/python bench/segmentation.py --data ../shared/data [--json out.json] [--no-tune]

Each AMI excerpt is labelled with nobody enrolled (as ``idme eval meetings`` does) by

- ``webrtc``: today's path, ``idme.eval.meetings.label_file`` (one label per frame);
- ``pyannote``: ``idme.segment.pyannote`` (segmentation-3.0 + CAM++, overlapping labels),

and scored with idme's scorer (``idme.eval.der``, overlap counted; collar 0.25 s and 0). The pyannote
settings (window hop, overlap bias, AHC similarity, smallest cluster, region padding, re-segmentation on or
off, cannot-link floor) are tuned on the ``trn*`` files only (lowest mean of the pooled DERs at collar 0.25 s and 0, both being
targets); ``dev*`` files are reported separately and never used to choose anything. Segmentation, local-speaker
embeddings and re-segmentation embeddings are cached in ``$IDME_BENCH_CACHE`` (default /tmp/idme-bench-seg,
keyed by model versions and settings), so a rerun only re-clusters. The timed run labels each file as
``idme.segment.pyannote.label_file`` does (read in blocks, twice), with nothing cached.
RTF = wall seconds to label a file (reading it included) / its duration, summed over the files; "CPU s /
audio s" is the process CPU time over the same span (all threads), which moves less with the machine's load.
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from idme.audio.file import read_audio  # noqa: E402
from idme.embed.campplus import CampPlusEmbedder  # noqa: E402
from idme.eval.der import pooled_by_collar, read_uem  # noqa: E402
from idme.eval.meetings import label_file  # noqa: E402
from idme.identity.thresholds import load  # noqa: E402
from idme.segment.base import to_events  # noqa: E402
from idme.segment.pyannote import PyannoteOptions, PyannoteSegmenter, SegmentationModel, file_blocks  # noqa: E402

COLLARS = (0.25, 0.0)
GRID = {"step_s": (1.0, 2.5), "overlap_bias": (0.0, 1.0),
        "cluster_similarity": (0.30, 0.35, 0.40, 0.45, 0.50), "min_cluster_size": (1, 2, 3),
        "pad_start_s": (0.0, 0.05, 0.1), "pad_end_s": (0.0, 0.1, 0.15), "resegment_hop_s": (0.0, 0.75),
        "cannot_link_s": (0.0, 1.0, 2.0, 3.0)}
CACHE = Path(os.environ.get("IDME_BENCH_CACHE", "/tmp/idme-bench-seg"))


def pooled(ref: Path, uem: dict, hyps: dict, fids: list[str], overlapping: bool) -> dict:
    """Pooled DER (and its parts) per collar over ``fids``."""
    return pooled_by_collar(ref, uem, hyps, fids, collars_s=COLLARS, overlapping_hyp=overlapping)


def cached_analyses(embedder, th, ami: Path, fids: list[str], step: float, bias: float, model) -> dict:
    """file id -> Analysis at this hop and overlap bias (embeddings taken once per hop: they do not depend on
    the bias), from CACHE when there."""
    from idme.segment.pyannote import Analysis, WindowActivity, file_blocks

    def one(f: str, b: float, embed: bool):
        key = CACHE / (f"{f}_{model.version}_{embedder.version}_step{step:g}_emb{PyannoteOptions().min_embed_s:g}"
                       f"_ob{b:g}.npz")
        if key.exists():
            z = np.load(key)
            wa = WindowActivity(z["starts"], z["active"], int(z["n_samples"]))
            return Analysis(wa, z["agg"], z["emb"] if "emb" in z else None, z["valid"] if "valid" in z else None)
        seg = PyannoteSegmenter(embedder, th, [], dataclasses.replace(PyannoteOptions(), step_s=step, overlap_bias=b),
                                model=model)
        an = seg.analyse(file_blocks(ami / f"{f}.wav")(), embed=embed)
        CACHE.mkdir(parents=True, exist_ok=True)
        extra = {"emb": an.emb, "valid": an.valid} if embed else {}
        tmp = key.with_suffix(f".{os.getpid()}.npz")  # another run may read the cache meanwhile
        np.savez(tmp, starts=an.wa.starts, active=an.wa.active, n_samples=an.wa.n_samples, agg=an.agg, **extra)
        os.replace(tmp, key)
        return an

    out = {}
    for f in fids:
        base = one(f, 0.0, True)
        out[f] = base if bias == 0 else dataclasses.replace(base, agg=one(f, bias, False).agg)
    return out


def reseg_cache(embedder, f: str, load_it: bool = True) -> tuple[Path, dict]:
    """(path, window start -> embedding) of the re-segmentation windows of file ``f`` (1.5 s, any hop)."""
    path = CACHE / f"{f}_{embedder.version}_reseg.npz"
    cache: dict = {}
    if load_it and path.exists():
        z = np.load(path)
        cache = {int(s): e for s, e in zip(z["starts"], z["emb"])}
    return path, cache


def save_reseg_cache(path: Path, cache: dict) -> None:
    if cache:
        keys = sorted(cache)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.npz")
        np.savez(tmp, starts=np.asarray(keys), emb=np.stack([cache[k] for k in keys]))
        os.replace(tmp, path)


def live_bench(embedder, th, audio: dict, ref: Path, uem: dict, fids: list[str], trn: list[str],
               dev: list[str], latency_s: float) -> dict:
    """The rolling-buffer labeller (idme.segment.live) fed each file in 0.1 s blocks as fast as possible.

    DER is scored on each segment's last event (corrections applied, as a saved session holds them).
    Label latency of a segment = stream seconds from its end to the push that emitted its first final
    event, plus the wall time that push took (what a real-time source would add); p50/p95 over segments.
    """
    import numpy as np

    from idme.audio.frames import AudioFrame
    from idme.segment.live import LiveOptions, PyannoteLabeller

    hyps, lat = {}, []
    t0, c0 = time.perf_counter(), time.process_time()
    for f in fids:
        x = audio[f]
        lab = PyannoteLabeller(embedder, th, [], LiveOptions(latency_s=latency_s), live=True)
        latest, seen = {}, set()
        starts = list(range(0, len(x), 1600))
        for i in starts + [None]:
            w0 = time.perf_counter()
            evs = lab.push(AudioFrame(x[i:i + 1600], 16000, i)) if i is not None else lab.finish()
            took = time.perf_counter() - w0
            at = (len(x) if i is None else min(i + 1600, len(x))) / 16000
            for e in evs:
                latest[e.id] = e
                if e.final and e.id not in seen:
                    seen.add(e.id)
                    lat.append(max(0.0, at - e.end) + took)
        hyps[f] = [e.to_dict() for e in latest.values() if e.final]
    dur = sum(len(a) for a in audio.values()) / 16000
    out = {"latency_s": latency_s, "rtf": (time.perf_counter() - t0) / dur,
           "cpu_rtf": (time.process_time() - c0) / dur,
           "label_latency_p50_s": float(np.percentile(lat, 50)) if lat else None,
           "label_latency_p95_s": float(np.percentile(lat, 95)) if lat else None,
           "trn": pooled(ref, uem, hyps, trn, True), "dev": pooled(ref, uem, hyps, dev, True),
           "all": pooled(ref, uem, hyps, fids, True)}
    for part in ("trn", "dev", "all"):
        a, b = out[part]["collar_0.25"], out[part]["collar_0.0"]
        print(f"| pyannote live {latency_s:g} s | {part} | {a['der']:.1%} | {a['miss']:.1%} | {a['fa']:.1%} "
              f"| {a['confusion']:.1%} | {b['der']:.1%} | {out['rtf']:.3f} | {out['cpu_rtf']:.3f} |")
    print(f"live label latency (end of speech -> final label): p50 {out['label_latency_p50_s']:.2f} s, "
          f"p95 {out['label_latency_p95_s']:.2f} s over {len(lat)} segments")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="shared data folder (holds ami-excerpts/)")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--no-tune", action="store_true", help="only the shipped PyannoteOptions defaults")
    ap.add_argument("--tune-only", nargs="+", choices=sorted(GRID), metavar="SETTING",
                    help="tune only these settings over the grid, the others at their shipped defaults")
    ap.add_argument("--live-only", action="store_true", help="only the live rolling-buffer measurement")
    ap.add_argument("--latency", type=float, default=2.0, help="live latency, seconds (default 2)")
    ap.add_argument("--no-live", action="store_true", help="skip the live rolling-buffer measurement")
    ap.add_argument("--anchor", type=Path, default=REPO / "bench" / "results" / "anchor_pyannote.json",
                    help="pyannote.audio anchor JSON (bench/anchor_pyannote.py; made in .venv-anchor when missing)")
    ap.add_argument("--no-anchor", action="store_true", help="skip the side-by-side pyannote.audio anchor")
    args = ap.parse_args(argv)

    ami = args.data / "ami-excerpts"
    ref, uem = ami / "reference.rttm", read_uem(ami / "reference.uem")
    fids = list(uem)
    trn, dev = [f for f in fids if f.startswith("trn")], [f for f in fids if f.startswith("dev")]
    embedder, th = CampPlusEmbedder(), load("campplus")
    embedder.load()
    audio = {f: read_audio(ami / f"{f}.wav") for f in fids}
    dur = sum(len(a) for a in audio.values()) / 16000
    print(f"# {len(fids)} AMI excerpts ({len(trn)} trn, {len(dev)} dev), {dur:.0f} s; cpus={os.cpu_count()}, "
          f"load={os.getloadavg()[0]:.2f}", file=sys.stderr)

    result: dict = {"files": {"trn": trn, "dev": dev}, "audio_s": dur}
    if not args.no_live:
        result["live"] = live_bench(embedder, th, audio, ref, uem, fids, trn, dev, args.latency)
    if args.live_only:
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return 0
    # webrtc: today's default path.
    t0, c0 = time.perf_counter(), time.process_time()
    web = {f: label_file(ami / f"{f}.wav", embedder, [], th) for f in fids}
    result["webrtc"] = {"rtf": (time.perf_counter() - t0) / dur, "cpu_rtf": (time.process_time() - c0) / dur,
                        "trn": pooled(ref, uem, web, trn, False), "dev": pooled(ref, uem, web, dev, False),
                        "all": pooled(ref, uem, web, fids, False)}

    # pyannote: tune on trn* over the grid (analyses and re-segmentation embeddings cached, see CACHE).
    defaults = PyannoteOptions()
    grid = {k: (getattr(defaults, k),) for k in GRID} if args.no_tune else GRID
    if args.tune_only and not args.no_tune:
        grid = {k: GRID[k] if k in args.tune_only else (getattr(defaults, k),) for k in GRID}
    model = SegmentationModel()
    blocks = {f: file_blocks(ami / f"{f}.wav") for f in trn}
    resegs = {f: reseg_cache(embedder, f) for f in trn}
    tried = []
    for step, bias in itertools.product(grid["step_s"], grid["overlap_bias"]):
        an = cached_analyses(embedder, th, ami, trn, step, bias, model)
        rest = [k for k in GRID if k not in ("step_s", "overlap_bias")]
        for vals in itertools.product(*(grid[k] for k in rest)):
            point = {"step_s": step, "overlap_bias": bias, **dict(zip(rest, vals))}
            seg = PyannoteSegmenter(embedder, th, [], dataclasses.replace(defaults, **point), model=model)
            hyps = {f: to_events(seg.label_analysis(an[f], blocks[f], resegs[f][1]), 16000) for f in trn}
            r = pooled(ref, uem, hyps, trn, True)
            a, b = r["collar_0.25"]["der"], r["collar_0.0"]["der"]
            tried.append({**point, "trn_der": a, "trn_der_collar0": b})
            print(f"  {json.dumps(point)}: trn DER {a:.4f} / collar 0 {b:.4f}", file=sys.stderr)
    for path, cache in resegs.values():
        save_reseg_cache(path, cache)
    best = min(tried, key=lambda r: (r["trn_der"] + r["trn_der_collar0"], -r["step_s"]))
    opts = dataclasses.replace(defaults, **{k: best[k] for k in GRID})
    seg = PyannoteSegmenter(embedder, th, [], opts, model=model)
    t0, c0 = time.perf_counter(), time.process_time()
    pya = {f: to_events(seg.label_blocks(file_blocks(ami / f"{f}.wav")), 16000) for f in fids}
    rtf, cpu_rtf = (time.perf_counter() - t0) / dur, (time.process_time() - c0) / dur
    result["pyannote"] = {"options": dataclasses.asdict(opts), "rtf": rtf, "cpu_rtf": cpu_rtf, "grid": tried,
                          "trn": pooled(ref, uem, pya, trn, True), "dev": pooled(ref, uem, pya, dev, True),
                          "all": pooled(ref, uem, pya, fids, True)}

    print("| segmenter | files | DER ±0.25 s | miss | FA | conf | DER collar 0 | RTF (wall) | CPU s / audio s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ("webrtc", "pyannote"):
        r = result[name]
        for part in ("trn", "dev", "all"):
            a, b = r[part]["collar_0.25"], r[part]["collar_0.0"]
            print(f"| {name} | {part} | {a['der']:.1%} | {a['miss']:.1%} | {a['fa']:.1%} | {a['confusion']:.1%} "
                  f"| {b['der']:.1%} | {r['rtf']:.3f} | {r['cpu_rtf']:.3f} |")
    print(f"\npyannote options (chosen on trn only): {json.dumps({k: best[k] for k in GRID})}")
    print(f"load average at end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cpus")
    if not args.no_anchor:  # issue 11 item 5: idme's file mode next to pyannote.audio's own pipeline, and the ratio
        from anchor_pyannote import side_by_side

        result["anchor"] = side_by_side(result, args.data, args.anchor)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
