"""1:1 verification on real telephone-rate (8 kHz) recordings that nothing in idme was fitted on (issue 12).

    python bench/verify_fsdd.py ../shared/data [--digits 4 6] [--shuffles 6] [--calibration FILE] [--json FILE]

The Free Spoken Digit Dataset (../shared/data/fsdd-8khz, CC BY-SA 4.0) has six male talkers, each saying the
digits 0-9 five times (takes 0-4), recorded at 8 kHz: a real narrow-band microphone channel, where the
calibration only saw LibriSpeech put through a simulated one. Six voices of one sex make every non-target a
hard one, and digits are a small phonetic set.

- two splits, each its own store; in each, every talker gets a profile (``Idme.enroll_files``: three takes, one 8 kHz WAV per take
  index, its ten digits joined by 0.1 s of silence) and is tested on the other takes, never heard in enrolment:
  split a enrols takes 0-2 and tests on 3-4, split b enrols 2-4 and tests on 0-1;
- a test joins ``--digits`` N digit clips of one talker (0.1 s gaps; ~0.4-0.6 s of speech a digit), drawn
  without repeats from that talker's test takes, ``--shuffles`` times with different seeds;
- every test through ``Idme.verify`` (the file, as a user passes it: the 8 kHz WAV) against every profile of
  its split: one target and five non-targets each.

Prints, per test length: target / non-target counts, FAR and FRR at the shipped operating point (or
``--calibration``'s), the EER, and the raw cosine's rates at the named-profile bar for comparison.
"""

from __future__ import annotations

import os

os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import json
import random
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
from _store import open_store

from idme.eval.metrics import eer, rates_at

RATE = 8000
GAP = np.zeros(int(0.1 * RATE), np.float32)
SPLITS = {"a": ((0, 1, 2), (3, 4)), "b": ((2, 3, 4), (0, 1))}


def joined(files: list[Path]) -> np.ndarray:
    parts = []
    for f in files:
        x, sr = sf.read(f, dtype="float32", always_2d=True)
        if sr != RATE:
            raise SystemExit(f"{f}: {sr} Hz, expected {RATE}: is this ../shared/data/fsdd-8khz?")
        parts += [x.mean(axis=1), GAP]
    return np.concatenate(parts[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--digits", type=int, nargs="+", default=[4, 6], help="digit clips per test")
    ap.add_argument("--shuffles", type=int, default=6, help="draws of the test groups per talker and split")
    ap.add_argument("--calibration", type=Path, default=None,
                    help="a calibration JSON (its cohort beside it) to decide with instead of the shipped one")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    root = args.data / "fsdd-8khz"
    clips: dict[str, dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for f in sorted(root.glob("*_*_*.wav")):
        digit, talker, take = f.stem.split("_")
        clips[talker][int(take)].append(f)
    if not clips:
        raise SystemExit(f"no FSDD clips under {root}: point at ../shared/data")
    results: dict[str, list] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    with tempfile.TemporaryDirectory(prefix="idme-fsdd-") as tmp:
        wavs = Path(tmp) / "wav"
        wavs.mkdir()
        for split, (enrol_takes, test_takes) in SPLITS.items():
            idme = open_store(Path(tmp) / f"home-{split}", args.calibration)  # one store per split
            bar = idme.thresholds().accept_for(False, True, True)  # a named profile's bar, 8 kHz on both sides
            for talker in sorted(clips):
                takes = []
                for t in enrol_takes:
                    path = wavs / f"{talker}-take{t}.wav"
                    sf.write(path, joined(sorted(clips[talker][t])), RATE, subtype="PCM_16")
                    takes.append(path)
                idme.enroll_files(f"{talker}-{split}", takes, force=True)  # six male voices: some sound alike
            for talker in sorted(clips):
                pool = sorted(f for t in test_takes for f in clips[talker][t])
                for n in args.digits:
                    for seed in range(args.shuffles):
                        order = pool[:]
                        random.Random(f"{talker}|{split}|{n}|{seed}").shuffle(order)
                        for g in range(len(order) // n):
                            path = wavs / f"test-{talker}-{split}-{n}-{seed}-{g}.wav"
                            x = joined(order[g * n:(g + 1) * n])
                            sf.write(path, x, RATE, subtype="PCM_16")
                            for other in sorted(clips):
                                r = idme.verify(f"{other}-{split}", str(path), remember=False)
                                if r.decision not in ("accept", "reject"):
                                    skipped[f"{n} digits: {r.decision}"] += 1
                                    continue
                                results[f"{n} digits"].append(
                                    (other == talker, float(r.score), float(r.threshold), r.decision == "accept",
                                     float(r.cosine), float(r.speech_s)))
                            path.unlink()
    report = {"talkers": sorted(clips), "splits": {k: {"enrol_takes": v[0], "test_takes": v[1]}
                                                   for k, v in SPLITS.items()},
              "skipped": dict(skipped), "by_test": {}}
    print(f"FSDD 8 kHz: {len(clips)} talkers ({', '.join(sorted(clips))}), splits {SPLITS}")
    for kind, rows in results.items():
        t = np.array([r[1] for r in rows if r[0]])
        n = np.array([r[1] for r in rows if not r[0]])
        thr = rows[0][2]
        far, frr = rates_at(t, n, thr)
        assert abs(far - np.mean([r[3] for r in rows if not r[0]])) < 1e-9  # decisions are score vs threshold
        e = eer(t, n)[0]
        ct = np.array([r[4] for r in rows if r[0]])
        cn = np.array([r[4] for r in rows if not r[0]])
        cfa, cfr = rates_at(ct, cn, bar)
        speech = float(np.median([r[5] for r in rows]))
        report["by_test"][kind] = {"n_target": int(len(t)), "n_nontarget": int(len(n)), "threshold": thr,
                                   "far": far, "frr": frr, "eer": e, "median_speech_s": speech,
                                   "cosine_bar": bar, "cosine_far": cfa, "cosine_frr": cfr}
        print(f"tests of {kind} (median {speech:.2f} s of speech): {len(t)} target + {len(n)} non-target trials; "
              f"at LLR {thr:.2f}: FAR {100 * far:.2f}%, FRR {100 * frr:.2f}%; EER {100 * e:.2f}%; raw cosine at "
              f"the shipped bar {bar:.2f}: FAR {100 * cfa:.2f}%, FRR {100 * cfr:.2f}%")
    for what, count in sorted(skipped.items()):
        print(f"  not scored: {what} x {count}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
