#!/usr/bin/env python3
"""Builds synthetic meetings of *unseen* speakers (LibriSpeech train-clean-100) in the meetings-dev layout.

    python scripts/make_synthetic_meetings.py SEED [--data ../shared/data] [--out /tmp/synth]

Each speaker has one long utterance: its first 30% enrols the owner (and "alice" in meetings of 4+), the rest
is cut at pauses into 2-4 s turns, levels vary by +-6 dB, turn gaps 0.25-1 s, and every third meeting gets
white noise at 20 or 10 dB SNR. A check of idme on speakers nobody tuned on:
`idme eval meetings /tmp/synth`. Derived audio stays local (LibriSpeech, CC BY 4.0).
"""
import argparse, json, glob, numpy as np, soundfile as sf
from pathlib import Path
from idme.vad import chunk_audio
ap = argparse.ArgumentParser()
ap.add_argument("seed", type=int, nargs="?", default=1)
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
ap.add_argument("--out", default="/tmp/synth")
args = ap.parse_args()
rng = np.random.default_rng(args.seed)
files = [f for f in sorted(glob.glob(args.data + "/librispeech-train-clean-100/*.flac")) if sf.info(f).duration >= 13]
print(len(files), "long utterances")
out = Path(args.out); out.mkdir(exist_ok=True)
for m in range(6):
    n = int(rng.integers(2, 6))
    pick = rng.choice(len(files), n, replace=False)
    spk = [Path(files[i]).stem.split("-")[0] for i in pick]
    d = out / f"m{m:02d}"; (d / "enroll").mkdir(parents=True, exist_ok=True)
    owner = spk[0]; named = {"alice": spk[1]} if n >= 4 else {}
    pieces = {}
    enroll = {"me": []}
    if named: enroll["alice"] = []
    for s, i in zip(spk, pick):
        x, sr = sf.read(files[i], dtype="float32")
        cut = int(len(x) * 0.3)
        who = "me" if s == owner else ("alice" if named and s == named["alice"] else None)
        if who:
            sf.write(d / "enroll" / f"{who}_1.wav", x[:cut], sr); enroll[who].append(f"enroll/{who}_1.wav")
        rest = x[cut:]
        ch = chunk_audio(rest)
        # group chunks into turns of ~2-4 s
        turns, cur = [], []
        for c in ch:
            cur.append(c)
            if cur[-1].end_s - cur[0].start_s >= rng.uniform(2, 4):
                turns.append(rest[int(cur[0].start_s*16000):int(cur[-1].end_s*16000)]); cur = []
        if cur: turns.append(rest[int(cur[0].start_s*16000):int(cur[-1].end_s*16000)])
        gain = 10 ** (rng.uniform(-6, 6) / 20)
        pieces[s] = [t * gain for t in turns]
    audio = [np.zeros(8000, np.float32)]; t = 0.5; rttm = []
    order = []
    while any(pieces.values()):
        cands = [s for s in spk if pieces[s] and (not order or s != order[-1] or sum(1 for v in pieces.values() if v) == 1)]
        s = cands[int(rng.integers(len(cands)))]; order.append(s)
        u = pieces[s].pop(0)
        rttm.append(f"SPEAKER meeting 1 {t:.3f} {len(u)/16000:.3f} <NA> <NA> {s} <NA> <NA>")
        gap = rng.uniform(0.25, 1.0)
        audio += [u, np.zeros(int(gap * 16000), np.float32)]; t += len(u) / 16000 + gap
    x = np.concatenate(audio)
    snr = [None, 20, 10][m % 3]
    if snr:
        p = np.mean(np.concatenate([np.asarray(a) for a in audio]) ** 2)
        x = x + rng.normal(0, np.sqrt(p / 10 ** (snr / 10)), len(x)).astype(np.float32)
    sf.write(d / "meeting.wav", np.clip(x, -1, 1), 16000, subtype="PCM_16")
    (d / "reference.rttm").write_text("\n".join(rttm) + "\n")
    json.dump({"owner": owner, "named": named, "speakers": sorted(spk), "noise_snr_db": snr,
               "duration_s": round(len(x) / 16000, 3), "enroll": enroll}, open(d / "meta.json", "w"))
    print(d, n, "speakers", round(len(x)/16000,1), "s", "snr", snr)
