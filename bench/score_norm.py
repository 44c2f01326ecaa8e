"""Does adaptive s-norm make one threshold hold across conditions? Unseen speakers, raw cosine vs s-norm.

    python bench/score_norm.py ../shared/data [--top-k 30 60]

Test trials: librispeech-test-other/trials.txt (10 unseen speakers, 4,950 pairs) under the conditions of
bench/suite/robustness.py (clean; test side 2 s; 8 kHz both sides; white noise 15 dB; and all three
together, "hard"). Cohort: the 126 librispeech-train-clean-100 speakers (disjoint from test-other), one
whole utterance each, embedded clean and 8 kHz (the 8 kHz cohort scores 8 kHz trials). Adaptive s-norm
(Matejka et al., 2017): s' = ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2, mu and sd over each side's
``top_k`` best cohort scores.

One operating point per scoring: the score at FAR 0.5% on pooled calibration trials built from
train-clean-100 (first half vs second half of each utterance, 4,000 non-target pairs, every condition),
the trial's own speakers left out of the cohort. It is then applied to the unseen test-other trials.
Also printed: FAR / FRR at the shipped cosine bars 0.40 (``me``) and 0.60 (``narrowband``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from idme.embed.campplus import CampPlusEmbedder
from idme.eval.metrics import eer, rates_at, threshold_at_far
from suite.robustness import Condition, Utterance, VariantEmbedder, half_pairs, trial_list_pairs

CONDITIONS = (Condition("clean"), Condition("2 s", crop_s=2.0), Condition("8 kHz", narrowband=True),
              Condition("noise 15 dB", snr_db=15.0),
              Condition("hard: 8 kHz + 15 dB + 2 s", crop_s=2.0, narrowband=True, snr_db=15.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--top-k", type=int, nargs="*", default=[30, 60])
    ap.add_argument("--far", type=float, default=0.005)
    args = ap.parse_args()
    emb = CampPlusEmbedder()
    emb.load()
    enc = VariantEmbedder(emb)
    tests = trial_list_pairs(args.data / "librispeech-test-other" / "trials.txt")
    train = sorted((args.data / "librispeech-train-clean-100").rglob("*.flac"))
    cal = half_pairs(train, 4000, seed=0)
    cohort = {nb: np.stack([enc.embed(Utterance(f), (None, nb, None)) for f in train]) for nb in (False, True)}
    row = {f: i for i, f in enumerate(train)}

    def scores(pairs, cond: Condition, k: int, leave_out: bool):
        raw, norm, lab = [], [], []
        for p in pairs:
            e, t = enc.embed(p.enroll, cond.variant("enroll")), enc.embed(p.test, cond.variant("test"))
            c = cohort[cond.narrowband]
            if leave_out:
                c = np.delete(c, sorted({row[p.enroll.path], row[p.test.path]}), axis=0)
            s = float(e @ t)
            ce, ct = np.sort(c @ e)[-k:], np.sort(c @ t)[-k:]
            raw.append(s)
            norm.append(0.5 * ((s - ce.mean()) / ce.std() + (s - ct.mean()) / ct.std()))
            lab.append(p.target)
        return np.array(raw), np.array(norm), np.array(lab, bool)

    print("| top-k | condition | scoring | EER | FAR / FRR at the one operating point | at 0.40 | at 0.60 |")
    print("|---|---|---|---|---|---|---|")
    for k in args.top_k:
        calib = [scores(cal, c, k, True) for c in CONDITIONS]
        thr = {i: threshold_at_far(np.concatenate([s[i][~s[2]] for s in calib]), args.far) for i in (0, 1)}
        for cond in CONDITIONS:
            raw, norm, lab = scores(tests, cond, k, False)
            for i, name, s in ((0, "cosine", raw), (1, "s-norm", norm)):
                e, _ = eer(s[lab], s[~lab])
                far, frr = rates_at(s[lab], s[~lab], thr[i])
                fixed = [rates_at(s[lab], s[~lab], b) for b in (0.40, 0.60)] if i == 0 else [("", "")] * 2
                cells = [f"{100 * a:.2f}% / {100 * r:.2f}%" if a != "" else "" for a, r in fixed]
                print(f"| {k} | {cond.name} | {name} | {100 * e:.2f}% | {100 * far:.2f}% / {100 * frr:.2f}% "
                      f"(at {thr[i]:.3f}) | {cells[0]} | {cells[1]} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
