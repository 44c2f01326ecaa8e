"""Quality-aware calibration (issue 12): fit on training speakers, check one LLR threshold on held-out ones.

    nice -n 10 python bench/calibration.py ../shared/data [--far 0.005] [--cache-dir /tmp/idme-calib]
        [--write src/idme/identity/calibration_campplus.json] [--swap] [--old-pool] [--baseline FILE]
        [--score-norm] [--top-k K] [--no-centre] [--far-field-cohort RT60_S]

Speakers, never utterances, are split between fitting and checking (``eval.calibration.fit_on_data``):
librispeech-test-other speakers 1688, 2033, 2609, 3080, 367 fit and 1998, 2414, 3005, 3331, 533 are held out
(their cross-utterance trials); librispeech-train-clean-100's 126 one-utterance speakers are split the same
way (alternate ids), each side's long utterances (>= 8 s of speech) giving a same-session target (first half
vs second half: an easier target than two recordings) and all its within-group pairs non-targets.
``--swap`` exchanges the groups (the other fold); ``--old-pool`` is the earlier pool (all 126 train-clean-100
speakers as fitting non-targets, test-other alone held out). Every condition of
``eval.calibration.condition_grid`` (16 kHz / 8 kHz both sides / 8 kHz test only x clean, 20, 15, 10, 5 dB
white noise x whole, 4, 3, 2, 1 s test side). Prints, per held-out condition, Cllr, minCllr, minDCF
(p_target 0.01), EER and FAR / FRR at the one LLR threshold, next to the raw cosine at the shipped bar and
(``--baseline``) another calibration file at its own threshold; then the same counts per trial source.
Embeddings of degraded sides are cached under --cache-dir, so a rerun only scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from idme.embed.campplus import CampPlusEmbedder
from idme.eval.calibration import FIT_TOP_K, Degradation, QualityCalibration, fit_on_data
from idme.identity.thresholds import load as load_thresholds

CLEAN, HARD = "16k, clean, whole", "8k both, 15 dB, 2 s"


def ok(r: dict) -> bool:
    return r["far"] <= 0.01 and r["frr"] <= 0.05


def pct(r: dict) -> str:
    return f"{100 * r['far']:.2f}% / {100 * r['frr']:.2f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--far", type=float, default=0.005, help="FAR target per training condition")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/idme-calib"))
    ap.add_argument("--write", type=Path, default=None, help="write the fitted calibration here")
    ap.add_argument("--json", type=Path, default=None, help="write the full report here")
    ap.add_argument("--swap", action="store_true", help="the other fold: fit on the held-out speakers")
    ap.add_argument("--old-pool", action="store_true", help="the earlier pool (test-other targets only)")
    ap.add_argument("--baseline", type=Path, default=None, help="a calibration file to report alongside")
    ap.add_argument("--score-norm", action="store_true",
                    help="AS-normalise scores against a cohort of the fitting group (kept beside --write)")
    ap.add_argument("--top-k", type=int, default=FIT_TOP_K,
                    help="AS-norm: best cohort scores per side (default: the whole cohort)")
    ap.add_argument("--no-centre", action="store_true",
                    help="AS-norm: score raw voiceprints (not centred on the cohort's mean)")
    ap.add_argument("--far-field-cohort", type=float, default=None, metavar="RT60_S",
                    help="AS-norm: each cohort voice also through a synthetic far-field room of this rt60")
    args = ap.parse_args()
    emb = CampPlusEmbedder()
    emb.load()
    base = None
    if args.baseline is not None:
        d = json.loads(args.baseline.read_text())
        base = QualityCalibration.from_dict(d[0] if isinstance(d, list) else d, args.baseline.parent)
    t0 = time.perf_counter()
    cmd = "python bench/calibration.py " + " ".join(sys.argv[1:])
    fit = fit_on_data(args.data, emb, args.cache_dir, args.far, command=cmd, swap=args.swap,
                      same_session=not args.old_pool, baseline=base, score_norm=args.score_norm, top_k=args.top_k,
                      centre=not args.no_centre,
                      cohort_variants=None if args.far_field_cohort is None else
                      (Degradation(), Degradation(rt60_s=args.far_field_cohort)),
                      thresholds=load_thresholds(emb.name, None, version=emb.version))
    cal = fit.calibration
    print(f"fitted in {time.perf_counter() - t0:.0f} s; LLR threshold {cal.threshold:.3f}; weights "
          + ", ".join(f"{n}={w:+.3f}" for n, w in zip(cal.to_dict()["features"], cal.weights)))
    print(f"fit: {cal.provenance['data']}\nheld out: {cal.provenance['heldout']}\n")
    head = "| held-out condition | Cllr | minCllr | minDCF 0.01 | EER | FAR / FRR at LLR thr | cosine at shipped bar |"
    print(head + (" baseline FAR / FRR (EER) |" if base else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if base else ""))
    n_ok = cos_ok = base_ok = 0
    for name, r in fit.heldout.items():
        c = fit.heldout_cosine.get(name, {})
        n_ok += ok(r)
        cos_ok += bool(c) and ok(c)
        cos = f"{pct(c)} (at {c['threshold']:.2f})" if c else ""
        line = (f"| {name} | {r['cllr']:.3f} | {r['min_cllr']:.3f} | {r['min_dcf_001']:.3f} | {100 * r['eer']:.2f}% "
                f"| {pct(r)}{'' if ok(r) else ' **x**'} | {cos} |")
        if base:
            b = fit.heldout_baseline[name]
            base_ok += ok(b)
            line += f" {pct(b)}{'' if ok(b) else ' **x**'} ({100 * b['eer']:.2f}%) |"
        print(line)
    n = len(fit.heldout)
    print(f"\n{n_ok} of {n} held-out conditions (sources pooled) meet FAR <= 1% and FRR <= 5% at one threshold "
          f"(raw cosine at the shipped bars: {cos_ok}" + (f"; baseline: {base_ok}" if base else "") + ")")
    for src, reps in fit.heldout_by_source.items():
        k = sum(ok(r) for r in reps.values())
        far_ok = sum(r["far"] <= 0.01 for r in reps.values())
        r0 = next(iter(reps.values()))
        print(f"  {src} ({r0['n_target']} target + {r0['n_nontarget']} non-target trials per condition): "
              f"{k} of {n} meet both; FAR <= 1% in {far_ok}")
    print("\n| row | source | FAR / FRR | EER | minDCF 0.01 | Cllr | target |")
    print("|---|---|---|---|---|---|---|")
    for name, target in ((CLEAN, "FAR <= 0.5%, FRR <= 2%"), (HARD, "FAR <= 1%, FRR <= 5%, EER <= 0.7%")):
        for src, reps in [("pooled", fit.heldout)] + list(fit.heldout_by_source.items()):
            r = reps[name]
            print(f"| {name} | {src} | {pct(r)} | {100 * r['eer']:.2f}% | {r['min_dcf_001']:.3f} | {r['cllr']:.3f} "
                  f"| {target} |")
    worst_far = max(r["far"] for r in fit.train.values())
    worst_frr = max(r["frr"] for r in fit.train.values())
    print(f"\ntraining conditions: worst FAR {100 * worst_far:.2f}%, worst FRR {100 * worst_frr:.2f}%; "
          f"{sum(ok(r) for r in fit.train.values())} of {n} meet both")
    if args.json:
        args.json.write_text(json.dumps(fit.to_dict(), indent=1))
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        cal.save(args.write)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
