"""Liveness and replay-defence rates on the FSDD digit recordings (issue 14).

How the genuine set is built: FSDD holds 6 speakers x 10 digits x 5 takes (8 kHz, ~0.5 s each). Each
speaker is enrolled from take 0 of every digit ("0123456789" with 0.25 s pauses, one enrollment take). An
answer to a 6-digit challenge is that speaker's recordings of those digits from takes 1-4, joined with
0.25-0.45 s pauses: real speech of the enrolled person, never the enrollment audio itself. Challenges are
drawn as idme issues them (6 random digits, at least 4 of them distinct: ``replay.new_challenge``).

Rates printed:
- genuine acceptance: right digits by the enrolled voice, decision ``accept`` (store holds only the
  enrollment fingerprints, so a new attempt is never compared with another that shares its clips);
- sequential: answers built from clips no earlier answer used are accepted one after another, each one's
  fingerprint kept, and none may be flagged ``replay`` (false replay among accepted attempts);
- wrong-digit rejection: an answer checked against another challenge (the enrolled voice, other digits)
  -> ``wrong_content``;
- replay rejection: the enrollment take and each accepted attempt played back through each transform
  (mp3 64 kbit/s, 8 kHz, +15 dB noise, gain -10/+6 dB, synthetic room impulse response, and all chained)
  -> ``replay``.

Held-out check of the content rule (its bar was chosen on takes 1-2): ``--takes 3,4`` builds the genuine
and wrong-digit answers from those takes only; ``--no-replay`` skips the sequential and replay part (the
replay decision comes before the content check, so a content change cannot move it).

Run: .venv/bin/python bench/liveness.py [--attempts N] [--takes 1,2] [--no-replay]
(N genuine answers per speaker, default 40; takes default 1,2,3,4)
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd-8khz"
SR = 16000


def clip(digit: str, speaker: str, take: int) -> np.ndarray:
    x, sr = sf.read(FSDD / f"{digit}_{speaker}_{take}.wav", dtype="float32")
    return soxr.resample(x, sr, SR).astype(np.float32)


def say(digits: str, speaker: str, takes: list[int], rng: random.Random) -> np.ndarray:
    parts = [np.zeros(int(0.3 * SR), np.float32)]
    for d, t in zip(digits, takes):
        parts += [clip(d, speaker, t), np.zeros(int(rng.uniform(0.25, 0.45) * SR), np.float32)]
    return np.concatenate(parts)


def challenge(rng: random.Random) -> str:
    """A 6-digit challenge drawn as ``replay.new_challenge`` draws them (at least MIN_DISTINCT_DIGITS distinct
    digits), from the seeded ``rng``."""
    from idme.identity.replay import MIN_DISTINCT_DIGITS

    while True:
        ds = "".join(rng.choice("0123456789") for _ in range(6))
        if len(set(ds)) >= MIN_DISTINCT_DIGITS:
            return ds


def to_8k(x):
    return soxr.resample(soxr.resample(x, SR, 8000), 8000, SR).astype(np.float32)


def noise(x, snr_db=15.0, seed=0):
    rng = np.random.default_rng(seed)
    active = x[np.abs(x) > 0.1 * np.abs(x).max()] if len(x) else x
    p = float(np.mean(active ** 2)) if len(active) else 1e-6
    return (x + rng.normal(0, np.sqrt(p / 10 ** (snr_db / 10)), len(x))).astype(np.float32)


def gain(x, db):
    return np.clip(x * 10 ** (db / 20), -1, 1).astype(np.float32)


def room(x, rt60_s=0.3, drr_db=3.0, seed=0):
    """Convolution with a synthetic room impulse response: a direct path, then a tail of exponentially
    decaying noise (reverberation time ``rt60_s``) starting 2.5 ms later, its energy ``drr_db`` below the
    direct sound's (a small room, speaker and microphone a metre or so apart)."""
    rng = np.random.default_rng(seed)
    n = int(rt60_s * SR)
    t = np.arange(n) / SR
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60_s)
    tail[: int(0.0025 * SR)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail ** 2))
    h = tail
    h[0] = 1.0
    y = np.convolve(x, h)[: len(x)]
    return (y / max(np.abs(y).max(), 1e-9) * max(np.abs(x).max(), 1e-9)).astype(np.float32)


def mp3(x, kbps=64):
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        st = out.add_stream("libmp3lame", rate=SR)
        st.bit_rate = kbps * 1000
        st.layout = "mono"
        fr = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        fr.sample_rate = SR
        for p in st.encode(fr):
            out.mux(p)
        for p in st.encode(None):
            out.mux(p)
    buf.seek(0)
    with av.open(buf) as inp:
        y = np.concatenate([f.to_ndarray().reshape(-1) for f in inp.decode(audio=0)]).astype(np.float32)
        rate = inp.streams.audio[0].rate
    if y.dtype.kind == "i" or np.abs(y).max() > 2:
        y = y / 32768
    return soxr.resample(y, rate, SR).astype(np.float32) if rate != SR else y


TRANSFORMS = {
    "mp3": lambda x, s: mp3(x),
    "8k": lambda x, s: to_8k(x),
    "noise15": lambda x, s: noise(x, 15, s),
    "gain-10": lambda x, s: gain(x, -10),
    "gain+6": lambda x, s: gain(x, 6),
    "room": lambda x, s: room(x, 0.3, 3.0, s),
    "chain": lambda x, s: gain(noise(room(to_8k(mp3(x)), 0.3, 3.0, s), 15, s), -6),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=40, help="genuine answers per speaker")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--takes", default="1,2,3,4", help="FSDD takes the genuine answers are built from")
    ap.add_argument("--no-replay", action="store_true", help="skip the sequential and replay part")
    args = ap.parse_args()

    from idme.api import Idme
    from idme.identity.challenge import FORCED_MIN_LOGPROB
    from idme.identity.replay import CONTENT_MAX_EDITS, REPLAY_THRESHOLD, edit_distance
    from idme.settings import resolve

    speakers = sorted({p.stem.split("_")[1] for p in FSDD.glob("*.wav")})
    rng = random.Random(args.seed)
    home = Path(tempfile.mkdtemp(prefix="idme-liveness-"))
    idme = Idme(resolve(home, asr="none"))
    tally: dict[str, list[int]] = {k: [0, 0] for k in ("genuine", "sequential", "wrong", "replay")}
    per_transform: dict[str, list[int]] = {k: [0, 0] for k in TRANSFORMS}
    takes = [int(t) for t in args.takes.split(",")]
    misses: list[str] = []
    forced: list[float] = []
    edits: list[int] = []
    genuine_scores: list[float] = []
    replay_scores: list[float] = []
    t0 = time.time()
    for spk in speakers:
        enroll_take = say("0123456789", spk, [0] * 10, rng)
        idme.enroll(spk, [("fsdd-take0", enroll_take)], native_rates=[8000])
        # 1. genuine acceptance, fresh store state (enrollment fingerprint only).
        for _ in range(args.attempts):
            ds = challenge(rng)
            x = say(ds, spk, [rng.choice(takes) for _ in ds], rng)
            c = idme.verify(spk, x, sample_rate=SR, expect=ds, remember=False)
            if c.replay_score is not None:
                genuine_scores.append(c.replay_score)
            if c.heard_digits is not None:
                edits.append(edit_distance(c.heard_digits, ds))
            tally["genuine"][0] += c.decision == "accept"
            tally["genuine"][1] += 1
            if c.decision != "accept":
                misses.append(f"genuine {spk} {ds}: {c.decision} ({c.reason}) heard {c.heard!r}")
            # wrong digits: same voice, another string.
            wrong = ds
            while wrong == ds:
                wrong = challenge(rng)
            c = idme.verify(spk, x, sample_rate=SR, expect=wrong, remember=False)
            tally["wrong"][0] += c.decision == "wrong_content"
            tally["wrong"][1] += 1
            if c.decision != "wrong_content":
                misses.append(f"wrong {spk} {ds} asked {wrong}: {c.decision} (forced {c.content_logprob})")
            elif c.content_logprob is not None:
                forced.append(c.content_logprob)
        if args.no_replay:
            print(f"{spk}: done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
            continue
        # 2. sequential accepted attempts from disjoint clips; each kept, then replayed.
        pool = [(d, t) for d in "0123456789" for t in (1, 2, 3, 4)]
        rng.shuffle(pool)
        accepted = [("enroll", enroll_take)]
        while len(pool) >= 6:
            chosen, pool = pool[:6], pool[6:]
            ds = "".join(d for d, _ in chosen)
            x = say(ds, spk, [t for _, t in chosen], rng)
            c = idme.verify(spk, x, sample_rate=SR, expect=ds)
            tally["sequential"][0] += c.decision != "replay"
            tally["sequential"][1] += 1
            if c.decision == "replay":
                misses.append(f"sequential {spk} {ds}: flagged replay ({c.reason})")
            if c.decision == "accept":
                accepted.append((ds, x))
        for i, (ds, x) in enumerate(accepted):
            expect = ds if ds != "enroll" else "0123456789"
            for name, fn in TRANSFORMS.items():
                y = fn(x, i)
                c = idme.verify(spk, y, sample_rate=SR, expect=expect, remember=False)
                hit = c.decision == "replay"
                if c.replay_score is not None:
                    replay_scores.append(c.replay_score)
                tally["replay"][0] += hit
                tally["replay"][1] += 1
                per_transform[name][0] += hit
                per_transform[name][1] += 1
                if not hit:
                    misses.append(f"replay {spk} {ds} {name}: {c.decision} (replay score {c.replay_score})")
        print(f"{spk}: done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    def rate(k, d):
        ok, n = d[k]
        return f"{100 * ok / max(n, 1):.1f}% ({ok}/{n})"

    print(f"speakers: {len(speakers)}; genuine answers per speaker: {args.attempts} (takes {args.takes}); "
          f"seed {args.seed}")
    print(f"genuine acceptance (right digits, enrolled voice): {rate('genuine', tally)}")
    print(f"wrong-digit rejection (wrong_content): {rate('wrong', tally)}")
    if not args.no_replay:
        print(f"accepted attempts not flagged as replay (sequential): {rate('sequential', tally)}")
        print(f"replay rejection (all transforms): {rate('replay', tally)}")
        for k in TRANSFORMS:
            print(f"  replay via {k}: {rate(k, per_transform)}")
    if forced:
        print(f"forced challenge log prob of wrong answers: max {max(forced):.2f} (accepted at >= "
              f"{FORCED_MIN_LOGPROB})")
    if replay_scores:
        print(f"fingerprint match score: replays min {min(replay_scores):.3f} / median "
              f"{np.median(replay_scores):.3f}; new genuine answers max {max(genuine_scores):.3f} (replay at >= "
              f"{REPLAY_THRESHOLD})")
    e = np.asarray(edits)
    print(f"content tolerance (allowed edits = {CONTENT_MAX_EDITS}); genuine answers whose heard digits are within "
          + ", ".join(f"{k} edit(s): {100 * np.mean(e <= k):.1f}%" for k in (0, 1, 2)) + f" of {len(e)}")
    print(f"time: {time.time() - t0:.0f} s")
    for m in misses[:40]:
        print("  miss:", m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
