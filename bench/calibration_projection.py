"""Voiceprint projections fitted on the fitting speakers (issue 12, docs/thresholds.md "Projections of the
voiceprints"): NAP, WCCN or LDA applied to every embedding (both sides, cohort, centre) as
y = unit(A (x - mean)) before the whole quality-aware fit and held-out report run unchanged.

    nice -n 10 python bench/calibration_projection.py ../shared/data --method {none,nap,napc,napw,wccn,lda}
        --k K [--alpha 0.1] [--swap] [--cache-dir /tmp/idme-calib] --json OUT.json

Everything is fitted on the fold's fitting speakers only (the same split as ``eval.calibration.fit_on_data``):
nap = the top k directions of each recording's scatter across its degradations projected out; napc = the same
after each degradation's mean shift is removed; napw = the within-speaker scatter; wccn = whitening by the
within-speaker covariance (shrunk ``alpha`` toward a scaled identity); lda = k discriminant directions. The
transform is hooked into ``FeatureCache.get``; embeddings come from the cache ``bench/calibration.py`` fills
(a cold cache is filled first, ~20 min on 2 cores). Prints held-out conditions meeting FAR <= 1% and
FRR <= 5%, mean EER, the hard condition (8k both, 15 dB, 2 s) and the clean one.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from idme.embed.campplus import CampPlusEmbedder
from idme.eval import calibration as C

CLEAN, HARD = "16k, clean, whole", "8k both, 15 dB, 2 s"


def fitting_sides(data: Path, swap: bool):
    """(side, speaker) of every fitting-speaker recording, exactly as fit_on_data splits them."""
    train_files = sorted((data / C.TRAIN_DIR).rglob("*.flac"))
    listed = C.list_pairs(data / C.HELDOUT_LIST)
    fit_spk, held_spk = C.split_speakers(listed)
    tc_spk = sorted({C.speaker_of(C.Side(f)) for f in train_files})
    tc_fit, tc_held = set(tc_spk[0::2]), set(tc_spk[1::2])
    if swap:
        fit_spk, held_spk, tc_fit, tc_held = held_spk, fit_spk, tc_held, tc_fit
    sides = {}
    for e, t, _ in listed:
        for s in (e, t):
            if C.speaker_of(s) in fit_spk:
                sides[s] = C.speaker_of(s)
    for f in train_files:
        sp = C.speaker_of(C.Side(f))
        if sp in tc_fit:
            sides[C.Side(f, 0)] = sp
            sides[C.Side(f, 1)] = sp
    return sides, fit_spk | tc_fit, held_spk | tc_held


def collect(data, swap, cache: C.FeatureCache):
    """Embeddings of the fitting sides under every degradation the grid uses."""
    sides, fit_set, held_set = fitting_sides(data, swap)
    degs = {C.Degradation()} | {C.Degradation(narrowband=True)}
    for c in C.condition_grid():
        degs.add(c.test)
    degs = sorted(degs, key=lambda d: d.key())
    X, spk, rec, deg = [], [], [], []
    for s, sp in sides.items():
        if sp not in fit_set or sp in held_set:
            raise SystemExit(f"speaker {sp} is not a fitting speaker of this fold")
        for j, d in enumerate(degs):
            e = cache.get(s, d)[0]
            X.append(np.asarray(e, np.float64)), spk.append(sp), rec.append((str(s.path), s.half)), deg.append(j)
    return np.array(X), np.array(spk), rec, np.array(deg), degs


def unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def scatter(X, groups):
    """Within-group scatter (d, d) of rows X, groups: hashable labels."""
    idx = defaultdict(list)
    for i, g in enumerate(groups):
        idx[g].append(i)
    d = X.shape[1]
    S = np.zeros((d, d))
    n = 0
    for ii in idx.values():
        if len(ii) < 2:
            continue
        Y = X[ii] - X[ii].mean(axis=0)
        S += Y.T @ Y
        n += len(ii)
    return S / max(n, 1)


def fit_transform(method, k, X, spk, rec, deg, alpha):
    """Returns (mu, A): transform y = unit(A (x - mu))."""
    d = X.shape[1]
    mu = X.mean(axis=0)
    Xc = X - mu
    if method == "none":
        return np.zeros(d), np.eye(d)
    if method in ("nap", "napc", "napw"):
        if method == "nap":  # scatter of each recording across its degradations
            S = scatter(Xc, [tuple(r) for r in rec])
        elif method == "napc":  # same, systematic per-degradation shift removed first
            Y = Xc.copy()
            for j in np.unique(deg):
                Y[deg == j] -= Y[deg == j].mean(axis=0)
            S = scatter(Y, [tuple(r) for r in rec])
        else:  # within-speaker scatter (recordings + degradations)
            S = scatter(Xc, list(spk))
        w, V = np.linalg.eigh(S)
        U = V[:, ::-1][:, :k]
        print(f"{method}: top eigenvalues {np.round(w[::-1][:max(k, 5)], 5)}; share of trace of top {k}: "
              f"{w[::-1][:k].sum() / w.sum():.3f}", flush=True)
        return mu, np.eye(d) - U @ U.T
    if method == "wccn":
        W = scatter(Xc, list(spk))
        W = (1 - alpha) * W + alpha * np.trace(W) / d * np.eye(d)
        w, V = np.linalg.eigh(W)
        return mu, (V / np.sqrt(w)) @ V.T  # W^{-1/2}, symmetric
    if method == "lda":
        W = scatter(Xc, list(spk))
        W = (1 - alpha) * W + alpha * np.trace(W) / d * np.eye(d)
        T = Xc.T @ Xc / len(Xc)
        B = T - W
        # generalised eigenproblem B v = l W v
        wl, Vl = np.linalg.eigh(W)
        Wih = (Vl / np.sqrt(wl)) @ Vl.T
        l, V = np.linalg.eigh(Wih @ B @ Wih)
        V = V[:, ::-1][:, :k]
        print(f"lda: top eigen {np.round(l[::-1][:5], 3)}, {k}th {l[::-1][k - 1]:.4f}", flush=True)
        return mu, (Wih @ V).T  # (k, d): whitened within-class, unit within-class variance per direction
    raise ValueError(method)


def summary(fit) -> dict:
    held = fit.heldout
    ok = lambda r: r["far"] <= 0.01 and r["frr"] <= 0.05  # noqa: E731
    out = {"n_ok": sum(ok(r) for r in held.values()), "n": len(held),
           "mean_eer": float(np.mean([r["eer"] for r in held.values()])),
           "mean_cllr": float(np.mean([r["cllr"] for r in held.values()])),
           "hard": {k: held[HARD][k] for k in ("eer", "far", "frr", "cllr", "min_dcf_001", "n_target", "n_nontarget")},
           "clean": {k: held[CLEAN][k] for k in ("eer", "far", "frr")},
           "hard_by_source": {s: {k: r[HARD][k] for k in ("eer", "far", "frr")} for s, r in fit.heldout_by_source.items()},
           "threshold": fit.calibration.threshold,
           "train_n_ok": sum(ok(r) for r in fit.train.values()),
           "train_mean_eer": float(np.mean([r["eer"] for r in fit.train.values()])),
           "per_cond_eer": {n: r["eer"] for n, r in held.items()},
           "per_cond_ok": {n: ok(r) for n, r in held.items()}}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--method", default="none")
    ap.add_argument("--k", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=0.1, help="WCCN/LDA shrinkage toward a scaled identity")
    ap.add_argument("--swap", action="store_true")
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/idme-calib"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    emb = CampPlusEmbedder()
    emb.load()
    t0 = time.perf_counter()
    X, spk, rec, deg, degs = collect(args.data, args.swap, C.FeatureCache(emb, args.cache_dir))
    print(f"fitting embeddings: {X.shape} from {len(set(spk))} speakers, {len(set(map(tuple, rec)))} recordings, "
          f"{len(degs)} degradations", flush=True)
    mu, A = fit_transform(args.method, args.k, X, spk, rec, deg, args.alpha)

    orig_get = C.FeatureCache.get
    memo = {}

    def get(self, side, d):
        key = (side, d)
        if key not in memo:
            e, dur, nb, snr = orig_get(self, side, d)
            y = unit(A @ (np.asarray(e, np.float64) - mu)).astype(np.float32)
            memo[key] = (y, dur, nb, snr)
        return memo[key]

    if args.method != "none":
        C.FeatureCache.get = get
    fit = C.fit_on_data(args.data, emb, args.cache_dir, 0.005, swap=args.swap, score_norm=True,
                        top_k=C.FIT_TOP_K, centre=C.FIT_CENTRE)
    s = summary(fit)
    s.update(method=args.method, k=args.k, alpha=args.alpha, swap=args.swap, seconds=time.perf_counter() - t0)
    args.json.write_text(json.dumps(s, indent=1))
    h = s["hard"]
    print(f"{args.method} k={args.k} a={args.alpha} swap={args.swap}: {s['n_ok']}/{s['n']} ok, mean EER "
          f"{100 * s['mean_eer']:.3f}%, hard EER {100 * h['eer']:.2f}% FAR/FRR {100 * h['far']:.2f}/{100 * h['frr']:.2f}%, "
          f"clean FAR/FRR {100 * s['clean']['far']:.2f}/{100 * s['clean']['frr']:.2f}%; by source "
          + "; ".join(f"{k}: {100 * v['eer']:.2f}%" for k, v in s["hard_by_source"].items())
          + f"; train {s['train_n_ok']} ok, mean EER {100 * s['train_mean_eer']:.3f}%", flush=True)


if __name__ == "__main__":
    main()
