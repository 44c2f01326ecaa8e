"""Does adaptive s-norm help the quality-aware calibration on unseen speakers? Cosine vs AS-norm vs test-side
normalisation as the score the QMF (``eval.calibration``) calibrates, both folds of the speaker split.

    nice -n 10 python bench/score_norm.py ../shared/data [--top-k 20] [--cache-dir /tmp/idme-calib]

Trials and split are bench/calibration.py's (``eval.calibration.fit_on_data``): speaker groups A (test-other
1688, 2033, 2609, 3080, 367 + alternate train-clean-100 speakers from the first) and B (the rest); test-other
cross-utterance trials plus train-clean-100 same-session trials (first half vs second half of one
utterance) and within-group non-targets, under the 75 conditions of ``condition_grid``. Fold A fits on A
and checks on B; fold B the other way round.

Cohort: the fitting group's train-clean-100 speakers, one embedding each (the first half of the utterance,
clean, or through the 8 kHz channel for an 8 kHz profile side), never a held-out speaker; on fitting
trials the trial's own speakers are left out of it. Adaptive s-norm (Matejka et al., Interspeech 2017):
s' = ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2 over each side's ``top_k`` best cohort scores; "t-norm"
keeps only the test side's term (what a gallery search can compute without per-profile cohort statistics).
The normalised score (x 0.1, so its range is near the cosine's) replaces the cosine in the QMF features;
the LLR threshold is chosen on the fitting trials exactly as for the shipped calibration.
Embeddings come from bench/calibration.py's cache (run that first; nothing new is embedded when it is warm).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from idme.embed.campplus import CampPlusEmbedder
from idme.eval import calibration as C
from idme.eval.metrics import rates_at

HARD, CLEAN = "8k both, 15 dB, 2 s", "16k, clean, whole"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--far", type=float, default=0.005)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/idme-calib"))
    args = ap.parse_args()
    emb = CampPlusEmbedder()
    cache = C.FeatureCache(emb, args.cache_dir)
    conds = C.condition_grid()
    files = sorted((args.data / C.TRAIN_DIR).rglob("*.flac"))
    listed = C.list_pairs(args.data / C.HELDOUT_LIST)
    to = dict(zip("AB", C.split_speakers(listed)))
    tc_all = sorted({C.speaker_of(C.Side(f)) for f in files})
    tc = {"A": set(tc_all[0::2]), "B": set(tc_all[1::2])}
    long_enough = lambda f: len(cache.speech(C.Side(f))) >= C.SESSION_MIN_SPEECH_S * 16000  # noqa: E731
    pairs = {g: [p for p in listed if C.speaker_of(p[0]) in to[g] and C.speaker_of(p[1]) in to[g]]
             + C.session_pairs([f for f in files if C.speaker_of(C.Side(f)) in tc[g]], long_enough) for g in "AB"}
    n_cross = {g: sum(1 for p in listed if C.speaker_of(p[0]) in to[g] and C.speaker_of(p[1]) in to[g]) for g in "AB"}
    k = args.top_k

    def features(g: str, cond: C.Condition, coh_spk: np.ndarray, coh: np.ndarray) -> dict:
        ed = C.Degradation(narrowband=cond.enroll_narrowband)
        e_v, t_v, out = [], [], {"lab": [], "dur": [], "tnb": [], "snr": []}
        for e, t, y in pairs[g]:
            e_v.append(cache.get(e, ed)[0])
            te, d, nb, q = cache.get(t, cond.test)
            t_v.append(te)
            out["lab"].append(y), out["dur"].append(d), out["tnb"].append(nb), out["snr"].append(q)
        ev, tv = np.stack(e_v), np.stack(t_v)
        cos = np.einsum("ij,ij->i", ev, tv)
        # The shipped normalisation's own code (eval.calibration.ScoreNorm); a fitting trial's own speakers
        # never score against themselves.
        norm = C.ScoreNorm(np.stack([coh, coh]), k, 0.05)
        es, ts = norm.stats(ev, False, own_mask[g]), norm.stats(tv, False, own_mask[g])
        return {"cosine": cos, "as-norm": norm.apply(cos, es, ts), "t-norm": 0.1 * (cos - ts[0]) / ts[1],
                "lab": np.array(out["lab"], bool), "dur": np.array(out["dur"]), "tnb": np.array(out["tnb"], bool),
                "snr": np.array(out["snr"]), "pnb": np.full(len(cos), cond.enroll_narrowband)}

    print(f"| fold | score | threshold | held-out conditions meeting FAR <= 1% and FRR <= 5% (test-other only) "
          f"| mean EER | mean Cllr | {HARD}: FAR / FRR, EER | {CLEAN}: FAR / FRR |")
    print("|---|---|---|---|---|---|---|---|")
    t0 = time.perf_counter()
    for fit_g, held_g in (("A", "B"), ("B", "A")):
        coh_files = [f for f in files if C.speaker_of(C.Side(f)) in tc[fit_g]]
        coh_spk = np.array([C.speaker_of(C.Side(f)) for f in coh_files])
        own_mask = {g: np.array([[s in (C.speaker_of(e), C.speaker_of(t)) for s in coh_spk] for e, t, _ in pairs[g]])
                    for g in (fit_g, held_g)}
        coh = {nb: np.stack([cache.get(C.Side(f, 0), C.Degradation(narrowband=nb))[0] for f in coh_files])
               for nb in (False, True)}
        feats = {g: [features(g, c, coh_spk, coh[c.enroll_narrowband]) for c in conds] for g in (fit_g, held_g)}
        for name in ("cosine", "as-norm", "t-norm"):
            def sets(g: str) -> list[C.TrialSet]:
                return [C.TrialSet(c, f[name], f["lab"], f["dur"], f["tnb"], f["snr"], f["pnb"])
                        for c, f in zip(conds, feats[g])]

            fit_sets, held_sets = sets(fit_g), sets(held_g)
            w = C.fit_weights(np.concatenate([ts.x() for ts in fit_sets]),
                              np.concatenate([ts.labels for ts in fit_sets]))
            cal = C.QualityCalibration("x", tuple(float(v) for v in w), 0.0)
            llr = lambda ts: cal.llr(ts.cosine, ts.speech_s, ts.test_narrowband, ts.snr_db, ts.profile_narrowband)  # noqa: E731
            thr = C.pick_threshold(fit_sets, [llr(ts) for ts in fit_sets], args.far)
            reps, ok, ok_x = {}, 0, 0
            for ts in held_sets:
                lv = llr(ts)
                r = reps[ts.condition.name] = C.condition_report(lv[ts.labels], lv[~ts.labels], thr)
                ok += r["far"] <= 0.01 and r["frr"] <= 0.05
                a, b = lv[: n_cross[held_g]], ts.labels[: n_cross[held_g]]
                fa, fr = rates_at(a[b], a[~b], thr)
                ok_x += fa <= 0.01 and fr <= 0.05
            h, c = reps[HARD], reps[CLEAN]
            print(f"| fit {fit_g}, check {held_g} | {name} | {thr:.2f} | {ok} of 75 ({ok_x}) "
                  f"| {100 * np.mean([r['eer'] for r in reps.values()]):.2f}% | {np.mean([r['cllr'] for r in reps.values()]):.3f} "
                  f"| {100 * h['far']:.2f}% / {100 * h['frr']:.2f}%, {100 * h['eer']:.2f}% "
                  f"| {100 * c['far']:.2f}% / {100 * c['frr']:.2f}% |")
            sys.stdout.flush()
    print(f"\n({time.perf_counter() - t0:.0f} s; top-k {k}, cohort {len(coh_files)} speakers per fold)")


if __name__ == "__main__":
    main()
