"""Replay defence: a landmark fingerprint of a recording, and the per-profile store of fingerprints of
enrollment takes and accepted attempts (issue 14).

A replay is a copy of audio idme already heard (an enrollment take, an accepted attempt) played back,
perhaps re-encoded, resampled to 8 kHz, with noise, a gain change or room echo. A *new* recording of the same
person saying the same words is not a copy: its spectral peaks fall elsewhere in fine time and frequency.

The fingerprint (Wang 2003, the Shazam landmark scheme): the audio is brought to 8 kHz and only the
300-3400 Hz telephone band is kept, so a copy that went through an 8 kHz channel keeps every landmark;
the log spectrogram's local peaks are paired (anchor peak, a later peak in a target zone) and each pair is
hashed as (f1, f2, dt) with its anchor time. Gain does not move peaks; noise 15 dB below the speech and
mild echo move a minority of them. Two recordings match by the largest number of hashes that agree at one
common time offset, divided by the attempt's hash count (``match_score``); a copy scores far above new
speech (bench/liveness.py: replays 0.2-0.9, new recordings of the same speaker below 0.05).

Stored per profile in ``profiles/<name>/fingerprints.npz`` (0600, written atomically): the hashes of each
recording, never its audio, labelled by where it came from.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StoreError

logger = logging.getLogger(__name__)

#: The fingerprint is computed at 8 kHz: an 8 kHz copy of a 16 kHz take then carries the same band.
RATE_HZ = 8000
#: Telephone band kept: a copy through an 8 kHz channel (or a phone speaker) still holds it.
BAND_LO_HZ, BAND_HI_HZ = 300.0, 3400.0
#: 32 ms frames, 8 ms hop at 8 kHz: 31.25 Hz bins, fine enough that two takes rarely share a landmark.
N_FFT, HOP = 256, 64
#: A peak is the maximum of its +-PEAK_T frames x +-PEAK_F bins neighbourhood ...
PEAK_T, PEAK_F = 4, 3
#: ... and within PEAK_RANGE_DB of the recording's loudest bin (silence and noise floor give no peaks).
PEAK_RANGE_DB = 35.0
#: Peaks kept per second of audio (the strongest), and the frequency quantum (bins) of a landmark.
PEAKS_PER_S, F_QUANT = 25, 4
#: Each anchor is paired with up to FAN_OUT later peaks 1..MAX_DT frames ahead, within +-MAX_DF bins.
FAN_OUT, MAX_DT, MAX_DF = 8, 48, 12
#: Time slack (frames, 8 ms each) when counting hashes that agree on an offset.
OFFSET_SLACK = 1
#: A matching score at or above this is a replay. Measured (bench/liveness.py, all FSDD speakers and takes):
#: degraded copies score >= ~0.1, new recordings of the same speaker and digits <= ~0.03.
REPLAY_THRESHOLD = 0.06
#: Fewer hashes than this cannot be judged (a fraction of nothing): such a recording never reads as replay.
MIN_HASHES = 20
FILE_NAME = "fingerprints.npz"


@dataclass(frozen=True)
class Fingerprint:
    """Landmark hashes of one recording: ``hashes`` int64 (n,), their anchor frames ``times`` int32 (n,)."""

    hashes: np.ndarray
    times: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)


def _spectrogram(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-magnitude (dB) spectrogram (frames, bins) of the 300-3400 Hz band at 8 kHz."""
    import soxr

    x = np.asarray(samples, np.float32).reshape(-1)
    if sample_rate != RATE_HZ and len(x):
        x = soxr.resample(x, sample_rate, RATE_HZ, quality="HQ").astype(np.float32)
    if len(x) < N_FFT:
        return np.zeros((0, 0), np.float32)
    n = 1 + (len(x) - N_FFT) // HOP
    frames = x[np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]] * np.hanning(N_FFT).astype(np.float32)
    spec = np.abs(np.fft.rfft(frames, axis=1))
    lo, hi = int(np.ceil(BAND_LO_HZ * N_FFT / RATE_HZ)), int(BAND_HI_HZ * N_FFT / RATE_HZ)
    return (20 * np.log10(spec[:, lo:hi + 1] + 1e-9)).astype(np.float32)


def fingerprint(samples: np.ndarray, sample_rate: int = 16000) -> Fingerprint:
    """The landmark fingerprint of ``samples`` float32 (n,) at ``sample_rate`` (any rate; 8 kHz used).
    Silence or audio shorter than one frame gives an empty fingerprint."""
    from scipy.ndimage import maximum_filter

    s = _spectrogram(samples, sample_rate)
    if s.size == 0:
        return Fingerprint(np.zeros(0, np.int64), np.zeros(0, np.int32))
    local = maximum_filter(s, size=(2 * PEAK_T + 1, 2 * PEAK_F + 1), mode="constant", cval=-np.inf)
    t, f = np.nonzero((s == local) & (s >= s.max() - PEAK_RANGE_DB))
    # Keep the strongest PEAKS_PER_S peaks per second: noise adds weak peaks, speech keeps the strong ones.
    keep = max(1, int(PEAKS_PER_S * s.shape[0] * HOP / RATE_HZ))
    if len(t) > keep:
        top = np.argsort(-s[t, f], kind="stable")[:keep]
        t, f = t[top], f[top]
    f = f // F_QUANT
    order = np.lexsort((f, t))
    t, f = t[order], f[order]
    hashes, times = [], []
    for i in range(len(t)):
        j = i + 1
        paired = 0
        while j < len(t) and t[j] - t[i] <= MAX_DT and paired < FAN_OUT:
            dt = t[j] - t[i]
            if dt >= 2 and abs(int(f[j]) - int(f[i])) <= MAX_DF:
                hashes.append((int(f[i]) << 16) | (int(f[j]) << 8) | int(dt // 2))
                times.append(int(t[i]))
                paired += 1
            j += 1
    return Fingerprint(np.asarray(hashes, np.int64), np.asarray(times, np.int32))


def match_score(attempt: Fingerprint, reference: Fingerprint) -> float:
    """Share of ``attempt``'s hashes found in ``reference`` at one common time offset (0..1; the best
    offset), relative to the smaller of the two. 0.0 when the attempt has fewer than MIN_HASHES hashes."""
    if len(attempt) < MIN_HASHES or len(reference) == 0:
        return 0.0
    ref_order = np.argsort(reference.hashes, kind="stable")
    ref_h, ref_t = reference.hashes[ref_order], reference.times[ref_order]
    lo = np.searchsorted(ref_h, attempt.hashes, "left")
    hi = np.searchsorted(ref_h, attempt.hashes, "right")
    counts = hi - lo
    if not counts.any():
        return 0.0
    idx = np.repeat(np.arange(len(attempt)), counts)
    pos = np.concatenate([np.arange(a, b) for a, b in zip(lo[counts > 0], hi[counts > 0])])
    offsets = ref_t[pos] - attempt.times[idx]
    # Count each attempt hash at most once per offset, then take the best offset.
    # Echo and resampling shift a peak by a frame or so: offsets within +-OFFSET_SLACK frames count as one.
    offsets = offsets.astype(np.int64)
    base = offsets.min() - OFFSET_SLACK
    pairs = np.unique((offsets - base) * (1 << 32) + idx)
    hist = np.bincount(pairs >> 32)
    best = np.convolve(hist, np.ones(2 * OFFSET_SLACK + 1, np.int64), mode="same").max()
    return float(best) / min(len(attempt), len(reference))


@dataclass(frozen=True)
class ReplayMatch:
    """The closest stored recording to an attempt: its ``label``, the ``score`` and whether it is a replay."""

    label: str | None
    score: float
    threshold: float

    @property
    def replay(self) -> bool:
        return self.label is not None and self.score >= self.threshold


class FingerprintStore:
    """Fingerprints of one profile's enrollment takes and accepted attempts, in ``profile_dir``/FILE_NAME.

    The file is an npz of three arrays: ``hashes`` and ``times`` concatenated over recordings, ``offsets``
    (where each recording starts) and ``labels`` (e.g. "enroll:take1.wav", "attempt:2026-12-01T20:00Z")."""

    def __init__(self, profile_dir: str | Path) -> None:
        self.path = Path(profile_dir) / FILE_NAME

    def load(self) -> list[tuple[str, Fingerprint]]:
        """The stored (label, fingerprint) pairs; none when there is no file yet."""
        if not self.path.exists():
            return []
        try:
            with np.load(self.path, allow_pickle=False) as z:
                hashes, times, offsets, labels = z["hashes"], z["times"], z["offsets"], z["labels"]
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"cannot read replay fingerprints {self.path} ({exc}); delete the file to start "
                             "over (replays of earlier recordings are then no longer caught)") from None
        bounds = list(offsets) + [len(hashes)]
        return [(str(labels[i]), Fingerprint(hashes[bounds[i]:bounds[i + 1]], times[bounds[i]:bounds[i + 1]]))
                for i in range(len(labels))]

    def add(self, label: str, fp: Fingerprint) -> None:
        """Appends ``fp`` under ``label`` and rewrites the file atomically (0600)."""
        from .._fs import atomic_write

        items = self.load() + [(label, fp)]
        buf = io.BytesIO()
        np.savez(buf, hashes=np.concatenate([f.hashes for _, f in items]).astype(np.int64),
                 times=np.concatenate([f.times for _, f in items]).astype(np.int32),
                 offsets=np.cumsum([0] + [len(f) for _, f in items[:-1]]).astype(np.int64),
                 labels=np.asarray([lab for lab, _ in items], dtype=str))
        if not self.path.parent.is_dir():
            raise StoreError(f"no profile directory {self.path.parent}: enrol the profile first")
        try:
            atomic_write(self.path, buf.getvalue())
        except OSError as exc:
            raise StoreError(f"cannot write {self.path} ({exc})") from None

    def closest(self, fp: Fingerprint, threshold: float = REPLAY_THRESHOLD) -> ReplayMatch:
        """The stored recording ``fp`` matches best (label None when nothing is stored)."""
        best: tuple[str | None, float] = (None, 0.0)
        for label, ref in self.load():
            s = match_score(fp, ref)
            if best[0] is None or s > best[1]:
                best = (label, s)
        return ReplayMatch(best[0], best[1], threshold)
