"""Everyday inputs (issue 10): DER of `idme listen` on format variants of meetings-dev recordings, with the
owner enrolled and with nobody enrolled (one batch call, `--out DIR --format rttm`), plus wall times.

    python bench/everyday.py --data ../shared/data [--meetings meeting02 meeting04] [--variants wav m4a ...]
    python bench/everyday.py --data ../shared/data --variants --ami trn01 trn07 dev00   # --num-speakers

Prints one JSON object per (meeting, variant, owner) and a summary; numbers, no pass/fail. Variants are made
with soxr and PyAV (FFmpeg) in a temporary folder: wav (as shipped), 8k (8 kHz PCM), 48k-stereo, mp3 (64
kbit/s), opus (Ogg Opus 24 kbit/s), m4a (AAC 64 kbit/s), webm (Opus 32 kbit/s).
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

VARIANTS = ("wav", "8k", "48k-stereo", "mp3", "opus", "m4a", "webm")


def _av_encode(x: np.ndarray, sr: int, dst: Path, fmt: str, codec: str, bit_rate: int, rate: int | None = None) -> None:
    import av

    with av.open(str(dst), "w", format=fmt) as c:
        st = c.add_stream(codec, rate=rate or sr)
        st.layout = "mono"
        st.bit_rate = bit_rate
        for i in range(0, len(x), sr):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[None, i:i + sr]), format="flt", layout="mono")
            fr.sample_rate = sr
            for pkt in st.encode(fr):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)


def make_variant(src: Path, kind: str, out_dir: Path) -> Path:
    """``src`` (16 kHz mono wav) as ``kind``, written under ``out_dir`` with the source's stem."""
    x, sr = sf.read(src, dtype="float32")
    stem = src.parent.name  # meetingNN: the RTTM file id the batch run is scored under
    if kind == "wav":
        dst = out_dir / f"{stem}.wav"
        sf.write(dst, x, sr, subtype="PCM_16")
    elif kind == "8k":
        dst = out_dir / f"{stem}.wav"
        sf.write(dst, soxr.resample(x, sr, 8000), 8000, subtype="PCM_16")
    elif kind == "48k-stereo":
        y = soxr.resample(x, sr, 48000)
        dst = out_dir / f"{stem}.wav"
        sf.write(dst, np.stack([y, 0.8 * y], axis=1), 48000, subtype="PCM_24")
    elif kind == "mp3":
        dst = out_dir / f"{stem}.mp3"
        _av_encode(x, sr, dst, "mp3", "libmp3lame", 64000)
    elif kind == "opus":
        dst = out_dir / f"{stem}.opus"
        _av_encode(x, sr, dst, "ogg", "libopus", 24000, rate=48000)
    elif kind == "m4a":
        dst = out_dir / f"{stem}.m4a"
        _av_encode(x, sr, dst, "mp4", "aac", 64000)
    elif kind == "webm":
        dst = out_dir / f"{stem}.webm"
        _av_encode(x, sr, dst, "webm", "libopus", 32000, rate=48000)
    else:
        raise SystemExit(f"unknown variant {kind!r}; choose from {', '.join(VARIANTS)}")
    return dst


def idme(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "idme.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "IDME_DEBUG": ""})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the shared data folder (holds meetings-dev/)")
    ap.add_argument("--meetings", nargs="*", default=["meeting02"])
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    ap.add_argument("--ami", nargs="*", default=[], metavar="FILE_ID",
                    help="ami-excerpts files to label with and without --num-speakers (the reference count)")
    args = ap.parse_args()
    from idme.eval.der import read_rttm, read_uem, score_files

    with tempfile.TemporaryDirectory() as tmp:
        ami = args.data / "ami-excerpts"
        uem, ref = (read_uem(ami / "reference.uem"), read_rttm(ami / "reference.rttm")) if args.ami else ({}, {})
        for fid in args.ami:
            n = len({seg.speaker for seg in ref[fid]})
            for extra in ([], ["--num-speakers", str(n)]):
                r = idme("listen", ami / f"{fid}.wav", "--json", "--asr", "none", "--no-save", "--home", Path(tmp) / "h", *extra)
                hyp = Path(tmp) / f"{fid}.jsonl"
                hyp.write_text(r.stdout)
                final = {e["id"]: e for e in map(json.loads, r.stdout.splitlines()) if e["type"] != "end" and e["final"]}
                s = score_files(ami / "reference.rttm", hyp, None, uem=uem.get(fid), file_id=fid)
                print(json.dumps({"ami": fid, "ref_speakers": n, "args": " ".join(extra) or "(none)",
                                  "final_labels": len({e["speaker"] for e in final.values()}),
                                  "der": round(s["der"], 4)}), flush=True)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for variant in args.variants:
            vdir = root / variant
            vdir.mkdir()
            files = {m: make_variant(args.data / "meetings-dev" / m / "meeting.wav", variant, vdir) for m in args.meetings}
            # Nobody enrolled: one batch call for every meeting of this variant.
            t0 = time.perf_counter()
            out = root / f"rttm-{variant}"
            r = idme("listen", vdir, "--out", out, "--format", "rttm", "--asr", "none", "--home", root / f"empty-{variant}")
            batch_s = time.perf_counter() - t0
            if r.returncode:
                raise SystemExit(f"batch listen failed on {variant}: {r.stderr.strip()}")
            for m, path in files.items():
                mdir = args.data / "meetings-dev" / m
                meta = json.loads((mdir / "meta.json").read_text())
                no_owner = score_files(mdir / "reference.rttm", out / f"{path.stem}.rttm", {"duration_s": meta["duration_s"]})
                home = root / f"home-{variant}-{m}"
                takes = sorted((mdir / "enroll").glob("*.wav"))
                e = idme("enroll", *[a for t in takes for a in ("--file", t)], "--home", home)
                if e.returncode:
                    raise SystemExit(f"enroll failed for {m}: {e.stderr.strip()}")
                t0 = time.perf_counter()
                r = idme("listen", path, "--json", "--asr", "none", "--no-save", "--home", home)
                wall = time.perf_counter() - t0
                hyp = root / f"{variant}-{m}.jsonl"
                hyp.write_text(r.stdout)
                owner = score_files(mdir / "reference.rttm", hyp, meta)
                row = {"meeting": m, "variant": variant, "der_owner": round(owner["der"], 4),
                       "me_recall": round(owner["me_recall"], 4), "false_me": round(owner["false_me"], 4),
                       "der_no_owner": round(no_owner["der"], 4), "listen_wall_s": round(wall, 2),
                       "batch_wall_s_all_meetings": round(batch_s, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        print(json.dumps({"variant": variant, "mean_der_owner": round(float(np.mean([r["der_owner"] for r in mine])), 4),
                          "mean_der_no_owner": round(float(np.mean([r["der_no_owner"] for r in mine])), 4),
                          "mean_me_recall": round(float(np.mean([r["me_recall"] for r in mine])), 4)}))
    print(json.dumps({"load_average": os.getloadavg()}))


if __name__ == "__main__":
    main()
