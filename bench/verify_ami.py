"""1:1 verification on real far-field meeting speech that nothing in idme was fitted on (issue 12).

    python bench/verify_ami.py ../shared/data [--test-s 2] [--min-enrol-s 8] [--calibration FILE] [--json FILE]

The AMI excerpts (../shared/data/ami-excerpts, CC BY 4.0, Carletta et al. 2005) name their talkers with AMI's
global ids, and several talkers appear in two excerpts (other parts of one meeting, or another meeting), so
cross-recording trials can be built from the reference RTTM:

- each talker's *solo* speech in an excerpt: their reference segments minus every other talker's;
- a profile per (talker, excerpt) with at least ``--min-enrol-s`` of solo speech, enrolled through
  ``Idme.enroll`` from that speech (one take, at most 30 s);
- stores of one profile per talker, as a deployment enrols people (a talker's two profiles never share a
  store: the store's other voices are where the calibration centres a trial, ``verify.Domain``): store k holds
  each talker's k-th profile (their last when they have fewer), and a profile is tested in the first store
  holding it;
- tests: every ``--test-s`` crop of a solo stretch (and every solo stretch of 3 s or more, whole);
- trials through ``Idme.verify`` (the shipped calibration, AS-norm): a test against every profile of *another*
  excerpt of the same talker (target), and against every profile of another talker (non-target, the same
  room included).

Far-field room audio with crosstalk, none of it seen by the calibration (LibriSpeech read speech) or its
cohort. Few talkers have enough speech in two excerpts, so the target count is small: the FRR is a rough
figure, the FAR (hundreds of non-targets) the informative one.
"""

from __future__ import annotations

import os

os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from _store import open_store

from idme.audio import read_audio
from idme.eval.der import read_rttm
from idme.eval.metrics import eer, rates_at

SR = 16000
MAX_ENROL_S = 30.0
MIN_SOLO_S = 0.5


def solo_spans(segs, speaker: str) -> list[tuple[float, float]]:
    """``speaker``'s reference time (s) with no other talker speaking, as sorted (start, end) spans."""
    mine = sorted((s.start, s.end) for s in segs if s.speaker == speaker)
    others = sorted((s.start, s.end) for s in segs if s.speaker != speaker)
    out = []
    for a, b in mine:
        cur = [(a, b)]
        for oa, ob in others:
            nxt = []
            for x, y in cur:
                if ob <= x or oa >= y:
                    nxt.append((x, y))
                    continue
                if oa > x:
                    nxt.append((x, oa))
                if ob < y:
                    nxt.append((ob, y))
            cur = nxt
        out += [(x, y) for x, y in cur if y - x >= MIN_SOLO_S]
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--test-s", type=float, default=2.0, help="test crop length, seconds")
    ap.add_argument("--min-enrol-s", type=float, default=8.0, help="solo speech a profile needs, seconds")
    ap.add_argument("--calibration", type=Path, default=None,
                    help="a calibration JSON (its cohort beside it) to decide with instead of the shipped one")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    root = args.data / "ami-excerpts"
    ref = read_rttm(root / "reference.rttm")
    audio = {fid: read_audio(root / f"{fid}.wav") for fid in ref}
    solo = {(spk, fid): solo_spans(segs, spk) for fid, segs in ref.items() for spk in {s.speaker for s in segs}}

    def clip(fid: str, spans) -> np.ndarray:
        x = audio[fid]
        return np.concatenate([x[int(a * SR):int(b * SR)] for a, b in spans]) if spans else np.zeros(0, np.float32)

    tests = []  # (talker, excerpt, samples, label)
    crop = int(args.test_s * SR)
    for (spk, fid), spans in sorted(solo.items()):
        for a, b in spans:
            x = audio[fid][int(a * SR):int(b * SR)]
            tests += [(spk, fid, x[i:i + crop], f"{args.test_s:g} s") for i in range(0, len(x) - crop + 1, crop)]
            if b - a >= 3.0:
                tests.append((spk, fid, x, "whole"))
    results: dict[str, list] = defaultdict(list)
    refused = []
    with tempfile.TemporaryDirectory(prefix="idme-ami-") as home:
        by_talker: dict[str, list[str]] = defaultdict(list)
        for (spk, fid), spans in sorted(solo.items()):
            if sum(b - a for a, b in spans) >= args.min_enrol_s:
                by_talker[spk].append(fid)
        layers = [{spk: fids[min(k, len(fids) - 1)] for spk, fids in by_talker.items()}
                  for k in range(max((len(f) for f in by_talker.values()), default=0))]
        stores, profiles = [], {}  # profiles: name -> (talker, excerpt, the store it is tested in)
        for k, layer in enumerate(layers):
            idme = open_store(Path(home) / f"store{k}", args.calibration)
            for spk, fid in sorted(layer.items()):
                name = f"{spk}-{fid}".lower().replace("é", "e")
                try:
                    idme.enroll(name, [(f"{fid} solo", clip(fid, solo[(spk, fid)])[: int(MAX_ENROL_S * SR)])],
                                force=True)
                except Exception as exc:  # noqa: BLE001 - a refused enrolment is a result, reported below
                    refused.append(f"{name}: {exc}")
                    continue
                profiles.setdefault(name, (spk, fid, k))
            stores.append(idme)
        idme_bar = stores[0].thresholds().accept_for(False, False, False) if stores else float("nan")
        for spk, fid, x, kind in tests:
            for name, (pspk, pfid, k) in profiles.items():
                if pspk == spk and pfid == fid:
                    continue  # same recording, same talker: a same-session target, not asked here
                target = pspk == spk
                r = stores[k].verify(name, x, sample_rate=SR, remember=False)
                if r.decision not in ("accept", "reject"):
                    results["skipped"].append(r.decision)
                    continue
                results[kind].append((target, float(r.score), float(r.threshold), r.decision == "accept",
                                      float(getattr(r, "cosine", np.nan)), pfid == fid))
    report = {"profiles": sorted(profiles), "refused": refused, "skipped": len(results.pop("skipped", [])),
              "by_test": {}}
    print(f"{len(profiles)} profiles from AMI solo speech (>= {args.min_enrol_s:g} s) in {len(layers)} store(s) of "
          f"one per talker: {', '.join(f'{n} (store {v[2]})' for n, v in sorted(profiles.items()))}")
    for line in refused:
        print("  refused:", line)
    for kind, rows in results.items():
        t = np.array([r[1] for r in rows if r[0]])
        n = np.array([r[1] for r in rows if not r[0]])
        thr = rows[0][2]
        fa = float(np.mean([r[3] for r in rows if not r[0]])) if len(n) else float("nan")
        fr = float(np.mean([not r[3] for r in rows if r[0]])) if len(t) else float("nan")
        same_room = [r for r in rows if not r[0] and r[5]]
        fa_room = float(np.mean([r[3] for r in same_room])) if same_room else float("nan")
        e = eer(t, n)[0] if len(t) and len(n) else float("nan")
        bar = idme_bar
        ct = np.array([r[4] for r in rows if r[0]])
        cn = np.array([r[4] for r in rows if not r[0]])
        cfa, cfr = rates_at(ct, cn, bar) if len(ct) and len(cn) else (float("nan"), float("nan"))
        report["by_test"][kind] = {"n_target": int(len(t)), "n_nontarget": int(len(n)), "threshold": thr,
                                   "far": fa, "frr": fr, "far_same_room": fa_room,
                                   "n_same_room": len(same_room), "eer": e,
                                   "cosine_bar": bar, "cosine_far": cfa, "cosine_frr": cfr}
        print(f"tests {kind}: {len(t)} target + {len(n)} non-target trials ({len(same_room)} non-targets from the "
              f"profile's own excerpt); at LLR {thr:.2f}: FAR {100 * fa:.2f}% (same room {100 * fa_room:.2f}%), "
              f"FRR {100 * fr:.2f}%; EER {100 * e:.2f}%; raw cosine at the shipped bar {bar:.2f}: FAR "
              f"{100 * cfa:.2f}%, FRR {100 * cfr:.2f}%")
        if len(t) and len(n):
            far_t, frr_t = rates_at(t, n, thr)
            assert abs(far_t - fa) < 1e-9 and abs(frr_t - fr) < 1e-9  # the decisions are the score vs threshold
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    sys.exit(main())
