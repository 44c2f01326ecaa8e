#!/usr/bin/env python
"""Peak memory of file-mode pyannote labelling (issue 11: "memory stays bounded on a 3-hour file").

    nice -n 10 .venv/bin/python bench/segmentation_memory.py --data ../shared/data [--minutes 20 60] [--json F]

For each length it writes a 16 kHz mono 16-bit wav made by concatenating the AMI excerpts (a real meeting's
speakers, repeated; into ``--tmp``, default /tmp) and, in a fresh child process, loads the models, records
the resident set size, then runs ``idme.segment.pyannote.label_file`` (what ``idme eval meetings`` and
``Idme.label_file`` run) and records the peak RSS (``ru_maxrss``). Growth = peak - RSS after loading; a
linear fit of growth over length gives MB per audio hour. For scale: holding the signal whole as float32
costs 230 MB per hour (3 h: 690 MB), so a reader that loads the file shows at least that slope.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def rss_mb() -> float:
    """Current resident set size, MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def build(data: Path, minutes: float, out: Path) -> Path:
    """A wav of ``minutes`` made of the AMI excerpts in turn (written block by block)."""
    import soundfile as sf

    from idme.audio.file import read_audio

    path = out / f"idme-segmem-{minutes:g}min.wav"
    want = round(minutes * 60 * 16000)
    if path.exists() and sf.info(str(path)).frames == want:
        return path
    ami = data / "ami-excerpts"
    clips = [read_audio(p) for p in sorted(ami.glob("*.wav")) if p.stem != "empty"]
    done = 0
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as f:
        while done < want:
            for c in clips:
                c = c[:want - done]
                f.write(c)
                done += len(c)
                if done >= want:
                    break
    return path


def child(path: str) -> None:
    """Runs in a fresh process: prints one JSON line of figures."""
    from idme.embed.campplus import CampPlusEmbedder
    from idme.identity.thresholds import load
    from idme.segment.pyannote import SegmentationModel, label_file

    import numpy as np

    emb = CampPlusEmbedder()
    emb.load()
    model = SegmentationModel()
    # Sessions created and their arenas grown (a full batch of windows, a 10 s clip) before the baseline,
    # so that growth is what depends on the recording's length.
    model.log_probs(np.zeros((8, 160000), np.float32))
    emb.embed_batch([np.random.default_rng(0).standard_normal(160000).astype(np.float32) * 0.1] * 2)
    base = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    events = label_file(path, emb, [], load("campplus"), model=model)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"baseline_mb": base, "peak_mb": peak_mb(), "wall_s": wall, "cpu_s": cpu,
                      "events": len(events), "speakers": len({e["speaker"] for e in events})}))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="shared data folder (holds ami-excerpts/)")
    ap.add_argument("--minutes", type=float, nargs="+", default=[20.0, 60.0], help="lengths to measure")
    ap.add_argument("--tmp", type=Path, default=Path("/tmp"), help="where the long wavs are written")
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.data is None:
        ap.error("--data is required")
    rows = []
    for m in args.minutes:
        path = build(args.data, m, args.tmp)
        out = subprocess.run([sys.executable, __file__, "--child", str(path)], check=True, capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
        r = {"minutes": m, **json.loads(out)}
        r["growth_mb"] = r["peak_mb"] - r["baseline_mb"]
        r["cpu_per_audio_s"] = r["cpu_s"] / (m * 60)
        rows.append(r)
        print(f"# {m:g} min: peak {r['peak_mb']:.0f} MB (after loading {r['baseline_mb']:.0f} MB, growth "
              f"{r['growth_mb']:.0f} MB), wall {r['wall_s']:.0f} s, CPU {r['cpu_s']:.0f} s", file=sys.stderr)
    print("| audio | RSS after loading | peak RSS | growth | wall s | CPU s / audio s | speakers |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['minutes']:g} min | {r['baseline_mb']:.0f} MB | {r['peak_mb']:.0f} MB | {r['growth_mb']:.0f} MB "
              f"| {r['wall_s']:.0f} | {r['cpu_per_audio_s']:.3f} | {r['speakers']} |")
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        slope = (b["growth_mb"] - a["growth_mb"]) / ((b["minutes"] - a["minutes"]) / 60)
        print(f"\ngrowth slope {slope:.0f} MB per audio hour (signal held whole as float32: 230 MB per hour); "
              f"extrapolated growth at 3 h: {a['growth_mb'] + slope * (180 - a['minutes']) / 60:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
