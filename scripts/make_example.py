#!/usr/bin/env python3
"""Builds examples/: a 3-person "meeting" from LibriSpeech test-other (CC BY 4.0) for `make demo`.

    python scripts/make_example.py [--data ../shared/data]

The owner (speaker 1688) talks with speakers 1998 and 2414 in turns separated by 0.3-0.8 s gaps; the
owner's enrollment takes are other utterances of the same reader, never reused in the meeting. Writes
meeting.wav, enroll/me_*.wav, reference.rttm and meta.json in the layout of meetings-dev, so
`idme eval meetings examples` scores it too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000
OWNER = "1688"
ENROLL = [("1688", 2), ("1688", 3), ("1688", 4)]
# (speaker, utterance index) in speaking order.
TURNS = [("2414", 0), ("1688", 5), ("1998", 1), ("2414", 6), ("1688", 6), ("1998", 7), ("2414", 8),
         ("1998", 4), ("1688", 8), ("2414", 9)]
GAPS_S = [0.3, 0.5, 0.8, 0.4, 0.6, 0.3, 0.7, 0.5, 0.4]


def utterance(data: Path, spk: str, idx: int) -> np.ndarray:
    files = sorted((data / "librispeech-test-other" / spk).glob("*.flac"))
    x, sr = sf.read(files[idx], dtype="float32")
    assert sr == RATE
    # Trim leading/trailing silence: frames 35 dB below the utterance's loudest 10 ms.
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 20 * np.log10(np.sqrt((frames ** 2).mean(1)) + 1e-9)
    loud = np.where(level > level.max() - 35)[0]
    return x[max(0, loud[0] - 5) * 160: (loud[-1] + 6) * 160]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "examples")
    args = ap.parse_args()
    out: Path = args.out
    (out / "enroll").mkdir(parents=True, exist_ok=True)
    enroll = []
    for k, (spk, idx) in enumerate(ENROLL, 1):
        sf.write(out / "enroll" / f"me_{k}.wav", utterance(args.data, spk, idx), RATE, subtype="PCM_16")
        enroll.append(f"enroll/me_{k}.wav")
    audio = [np.zeros(int(0.5 * RATE), np.float32)]
    t = 0.5
    rttm = []
    for i, (spk, idx) in enumerate(TURNS):
        u = utterance(args.data, spk, idx)
        rttm.append(f"SPEAKER meeting 1 {t:.3f} {len(u) / RATE:.3f} <NA> <NA> {spk} <NA> <NA>")
        audio.append(u)
        t += len(u) / RATE
        gap = GAPS_S[i] if i < len(GAPS_S) else 0.5
        audio.append(np.zeros(int(gap * RATE), np.float32))
        t += gap
    meeting = np.concatenate(audio)
    # A little room noise (-60 dBFS) so silence is not digital zero.
    meeting += np.random.default_rng(0).normal(0, 0.001, len(meeting)).astype(np.float32)
    sf.write(out / "meeting.wav", meeting, RATE, subtype="PCM_16")
    (out / "reference.rttm").write_text("\n".join(rttm) + "\n")
    meta = {"owner": OWNER, "named": {}, "speakers": sorted({s for s, _ in TURNS}),
            "duration_s": round(len(meeting) / RATE, 3), "enroll": {"me": enroll}}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out}: {len(meeting) / RATE:.1f} s, {len(TURNS)} turns")


if __name__ == "__main__":
    main()
