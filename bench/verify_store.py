"""The shipped calibration's held-out LibriSpeech trials scored inside a store, as ``idme verify`` scores them
(issue 12): does centring on the store's other voices (``verify.Domain``) cost anything where the store is
recorded like the cohort?

    python bench/verify_store.py ../shared/data [--calibration FILE] [--cache DIR]

The trials are those ``bench/calibration.py --score-norm`` holds out for the shipped fit (fold A: test-other
group B and the odd train-clean-100 speakers, every degraded condition); the store holds one profile per
held-out speaker, the mean of that speaker's enrolment sides in the condition's profile band. Each trial is
scored twice with the same calibration: centred on the cohort's mean only, and on the store's other voices
(``Domain.centre_for``, the profile left out). Prints, for both: conditions meeting FAR <= 1% and FRR <= 5% at the
threshold, mean EER and Cllr, the hard condition (8 kHz both sides, 15 dB, 2 s) and clean 16 kHz, and the
spread of the James-Stein weights the store got. Reads embeddings from the calibration cache (``--cache``,
default /tmp/idme-calib; missing ones are computed, ~25 min cold).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from idme.embed.campplus import CampPlusEmbedder
from idme.eval import calibration as C
from idme.eval.metrics import eer, rates_at
from idme.identity.profiles import Profile
from idme.identity.verify import Domain

HARD, CLEAN = "8k both, 15 dB, 2 s", "16k, clean, whole"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--calibration", type=Path, default=C.SHIPPED)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/idme-calib"))
    args = ap.parse_args()
    emb = CampPlusEmbedder()
    emb.load()
    enc = f"{emb.name}@{emb.version}"
    cal = C.load(enc, args.calibration.parent, shipped=False) if args.calibration != C.SHIPPED else C.load(enc)
    if cal is None or cal.norm is None or not cal.norm.centre:
        raise SystemExit(f"{args.calibration}: no centred, score-normalised calibration for {enc}")
    cache = C.FeatureCache(emb, args.cache)
    train = sorted((args.data / C.TRAIN_DIR).rglob("*.flac"))
    listed = C.list_pairs(args.data / C.HELDOUT_LIST)
    _, held = C.split_speakers(listed)
    tc_held = set(sorted({C.speaker_of(C.Side(f)) for f in train})[1::2])
    long_enough = lambda f: len(cache.speech(C.Side(f))) >= C.SESSION_MIN_SPEECH_S * 16000  # noqa: E731
    pairs = [p for p in listed if C.speaker_of(p[0]) in held and C.speaker_of(p[1]) in held] + \
        C.session_pairs([f for f in train if C.speaker_of(C.Side(f)) in tc_held], long_enough)
    norm, info = cal.norm, {"name": "campplus", "version": emb.version}
    rows: dict[str, list] = {"cohort mean": [], "store": []}
    weights = []
    for cond in C.condition_grid():
        nb = cond.enroll_narrowband
        E = np.stack([cache.get(e, C.Degradation(narrowband=nb))[0] for e, _, _ in pairs]).astype(np.float64)
        got = [cache.get(t, cond.test) for _, t, _ in pairs]
        T = np.stack([g[0] for g in got]).astype(np.float64)
        dur, tnb, snr = (np.array([g[i] for g in got], np.float64) for i in (1, 2, 3))
        y = np.array([lab for _, _, lab in pairs])
        spk = [C.speaker_of(e) for e, _, _ in pairs]
        sides = defaultdict(list)
        for s, v in zip(spk, E):
            sides[s].append(v)
        rate = 8000 if nb else 16000  # the profile's band is the condition's
        profiles = {s: Profile(s, info, np.stack(v).astype(np.float32), [{"native_rate": rate}] * len(v))
                    for s, v in sides.items()}
        domain = Domain(profiles.values())
        cos = np.sum(E * T, axis=1)
        for how in rows:
            ps, ts = [np.zeros(len(E)) for _ in range(4)], [np.zeros(len(E)) for _ in range(4)]
            for s, p in profiles.items():
                idx = np.array([k for k, x in enumerate(spk) if x == s])
                at = domain.centre_for(cal, s, p.centroid, nb) if how == "store" else None
                if how == "store":
                    mb = norm._mean[int(nb)]
                    mean = (domain._sum[nb] - p.centroid / np.linalg.norm(p.centroid)) / (domain._count[nb] - 1)
                    weights.append(0.0 if at is None else float((at - mb) @ (mean - mb) / ((mean - mb) @ (mean - mb))))
                a, b = norm.stats(E[idx], nb, centre_on=at), norm.stats(T[idx], nb, centre_on=at)
                for j in range(4):
                    ps[j][idx], ts[j][idx] = a[j], b[j]
            llr = cal.llr(norm.apply(cos, tuple(ps), tuple(ts)), dur, tnb, snr, np.full(len(cos), nb))
            fa, fr = rates_at(llr[y], llr[~y], cal.threshold)
            rows[how].append((cond.name, fa, fr, eer(llr[y], llr[~y])[0], C.cllr(llr[y], llr[~y])))
    print(f"{len(pairs)} trials per condition ({int(sum(p[2] for p in pairs))} target), store of {len(profiles)} "
          f"profiles; threshold {cal.threshold:.2f}; store weights (min / median / max) "
          f"{np.min(weights):.2f} / {np.median(weights):.2f} / {np.max(weights):.2f}")
    for how, r in rows.items():
        ok = [x for x in r if x[1] <= 0.01 and x[2] <= 0.05]
        h, c = next(x for x in r if x[0] == HARD), next(x for x in r if x[0] == CLEAN)
        print(f"centred on the {how}: {len(ok)}/{len(r)} conditions meet both, mean EER "
              f"{100 * np.mean([x[3] for x in r]):.2f}%, Cllr {np.mean([x[4] for x in r]):.3f}; hard FAR / FRR "
              f"{100 * h[1]:.2f}% / {100 * h[2]:.2f}%, EER {100 * h[3]:.2f}%; clean {100 * c[1]:.2f}% / "
              f"{100 * c[2]:.2f}%; misses: {', '.join(x[0] for x in r if x not in ok)}")


if __name__ == "__main__":
    sys.exit(main())
