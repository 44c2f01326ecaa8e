"""Quality-aware score calibration (issue 12, item 2): cosine + test duration + bandwidth + SNR -> a calibrated
log-likelihood ratio, the quality measure function (QMF) of NIST SRE systems (Brummer et al., "ABC system
description for NIST SRE 2010"; Nautsch et al., Interspeech 2016), fitted by weighted logistic regression.

Run time (``QualityCalibration.llr``) is one dot product in numpy; fitting (``fit``) uses scipy's L-BFGS.
The trial lists it is fitted on are built from clean recordings by degrading the test side (``degrade``):
white noise at an SNR, then an 8 kHz telephone channel, then a crop to its middle seconds; the enrolment side
stays clean (enrolment is quality-gated) or goes through the same 8 kHz channel. Noise is added *before* the
channel, as a phone picks up room noise, so ``verify.estimate_bandwidth`` reads the result as narrow-band.
Each degraded side's embedding and measured condition are cached as one ``.npz`` (``FeatureCache``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
import dataclasses
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IdmeError

log = logging.getLogger(__name__)

#: Feature names, in the order of ``QualityCalibration.weights``. ``s`` = cosine; ``nbb`` = profile and test
#: both narrow-band; ``nbt`` = only the test narrow-band; ``dur`` = ln(test speech s / 4), clipped to
#: [ln(1/4), ln(8/4)]; ``snr`` = (test SNR estimate - 20 dB) / 10, clipped to [-2, 2] (5..40 dB). Each
#: quality term enters alone (shifts the score) and times ``s`` (changes its slope): a short, noisy or
#: band-limited test spreads target scores down and pulls non-targets up by different amounts.
FEATURES: tuple[str, ...] = ("bias", "s", "nbb", "s*nbb", "nbt", "s*nbt", "dur", "s*dur", "snr", "s*snr")
#: Duration and SNR clip ranges of the features (outside them the fitted trend is not trusted).
DUR_RANGE_S = (1.0, 8.0)
SNR_RANGE_DB = (0.0, 40.0)


def feature_matrix(cosine: np.ndarray, speech_s: np.ndarray, test_narrowband: np.ndarray,
                   snr_db: np.ndarray, profile_narrowband: np.ndarray) -> np.ndarray:
    """The (n, len(FEATURES)) float64 design matrix; every argument is (n,) or a scalar. ``snr_db`` NaN
    (no estimate) counts as the top of SNR_RANGE_DB."""
    s = np.atleast_1d(np.asarray(cosine, np.float64))
    n = s.shape[0]

    def col(x) -> np.ndarray:
        return np.broadcast_to(np.asarray(x, np.float64), (n,)).astype(np.float64)

    tnb, pnb = col(test_narrowband) > 0.5, col(profile_narrowband) > 0.5
    nbb = (tnb & pnb).astype(np.float64)
    nbt = (tnb & ~pnb).astype(np.float64)
    dur = np.log(np.clip(col(speech_s), *DUR_RANGE_S) / 4.0)
    snr = col(snr_db)
    snr = np.where(np.isfinite(snr), snr, SNR_RANGE_DB[1])
    q = (np.clip(snr, *SNR_RANGE_DB) - 20.0) / 10.0
    return np.stack([np.ones(n), s, nbb, s * nbb, nbt, s * nbt, dur, s * dur, q, s * q], axis=1)


#: AS-norm's top-k when fitting: None = the whole cohort (S-norm over all of it). Chosen on the fitting speakers
#: only (2026-12-03, `bench/calibration.py --score-norm --top-k K`): on both folds the training conditions' mean
#: EER and Cllr fall as k grows (fold A 1.72 / 1.60 / 1.52 / 1.40% mean EER at k = 10 / 20 / 40 / 63 of the
#: clean 63-voice cohort; fold B 0.73 / 0.67 / 0.63% at 20 / 40 / 63). docs/thresholds.md.
FIT_TOP_K: int | None = None


#: Centre voiceprints on the cohort's mean before scoring, when fitting (``ScoreNorm.centre``). Chosen on
#: 2026-12-03 (`bench/calibration.py --score-norm [--no-centre]`): docs/thresholds.md, "Centring".
FIT_CENTRE = True

#: Fewest enrolled voices of a band (the scored profile left out) whose mean ``ScoreNorm.domain_centre`` uses:
#: below it the cohort's mean is the centre. Measured on 2026-12-03 (docs/thresholds.md, "The deployment's
#: own centre"): real 8 kHz FSDD talkers' FAR at the shipped point 8.3% -> 0.3%, unseen AMI talkers' 2 s FAR
#: 1.13% -> 0%, LibriSpeech fold A held out 71 -> 70 of 75 conditions.
DOMAIN_MIN_PROFILES = 3
#: Fitted calibrations centre on the deployment's voices (``ScoreNorm.domain``); files without the key do not.
FIT_DOMAIN = True


@dataclass(frozen=True)
class ScoreNorm:
    """Adaptive s-norm (AS-norm; Matejka et al., Interspeech 2017) against a cohort of voiceprints shipped
    beside the calibration: s' = scale x ((c - mu_p) / sd_p + (c - mu_t) / sd_t), where mu / sd are the mean
    and standard deviation of each side's ``top_k`` best cosines against the cohort (the cohort recorded
    like the profile side: clean, or through the 8 kHz channel for a narrow-band profile).

    ``centre``: c is the cosine of the two voiceprints after each is moved by the cohort's mean voiceprint m
    of that band and length-normalised again (the global-mean subtraction of Kaldi / WeSpeaker back ends; the
    cohort is centred the same way), which removes what every voice of a channel shares. For unit x, y:
    c = (x.y - o_x - o_y) / (n_x n_y) with o = x.m - |m|^2 / 2 and n = |x - m|, one side's numbers each, so
    the statistics of a side are (mu, sd, o, n) and for fixed sides s' stays linear and rising in the raw
    cosine x.y: a cosine bar (``verify.calibrated_bar``) stays exact. Without centring o = 0, n = 1."""

    #: Cohort voiceprints, float32 (2, n, dimension): [0] clean 16 kHz, [1] through the 8 kHz channel.
    cohort: np.ndarray
    #: Best cohort scores each side's statistics are taken over.
    top_k: int = 20
    #: Scale of the normalised score (0.05 keeps its range near the cosine's).
    scale: float = 0.05
    #: Speaker id of each cohort row (a trial's own speakers are left out of the cohort while fitting).
    speakers: tuple[str, ...] = ()
    #: File name of the cohort, next to the calibration JSON.
    file: str = ""
    #: Centre every voiceprint (both sides and the cohort) on the cohort's mean of its band first.
    centre: bool = False
    #: With ``centre``: move that centre toward the mean of the deployment's own enrolled voices
    #: (``domain_centre``, ``verify.Domain``) when they share what the cohort does not.
    domain: bool = False

    def __post_init__(self) -> None:
        coh = np.asarray(self.cohort, np.float64)
        mean = coh.mean(axis=1) if self.centre else np.zeros((coh.shape[0], coh.shape[2]))
        cc = coh - mean[:, None, :]
        cc /= np.maximum(np.linalg.norm(cc, axis=-1, keepdims=True), 1e-12)
        object.__setattr__(self, "_mean", mean)
        object.__setattr__(self, "_centred", cc.astype(np.float32))

    def stats(self, vectors: np.ndarray, narrowband: bool, exclude: np.ndarray | None = None,
              centre_on: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(mean, std, o, n), float64 (m,) each (see the class doc), of unit rows ``vectors`` (m, d): mean and
        std of their ``top_k`` best (centred) cohort cosines; ``exclude``: bool (m, n) cohort entries to leave
        out per row. centre_on: (d,) the point the rows are centred on instead of the cohort's mean (the
        deployment's own, ``domain_centre``; the cohort stays centred on its mean). Both sides of a trial must
        be given the same point (the score is linear in their raw cosine only then)."""
        b = int(bool(narrowband))
        x = np.atleast_2d(np.asarray(vectors, np.float64))
        m = self._mean[b] if centre_on is None or not self.centre else np.asarray(centre_on, np.float64)
        dot = x @ m
        n = np.sqrt(np.maximum(1.0 - 2.0 * dot + m @ m, 1e-12))
        off = dot - 0.5 * float(m @ m)
        xc = ((x - m) / n[:, None]).astype(np.float32)
        sc = (xc @ self._centred[b].T).astype(np.float64)
        k = min(self.top_k, sc.shape[1])
        if exclude is not None:
            sc[exclude] = -np.inf
            # never more than every row has left: an excluded (-inf) entry in the top k would make it NaN
            k = max(1, min(k, int((~np.asarray(exclude, bool)).sum(axis=1).min(initial=k))))
        top = -np.sort(-sc, axis=1)[:, :k]
        return top.mean(axis=1), np.maximum(top.std(axis=1), 1e-6), off, n

    def apply(self, cosine, p_stats: tuple, t_stats: tuple) -> np.ndarray:
        """Normalised scores, float64, for raw cosines (n,) or a scalar and each side's ``stats``."""
        # the centred cosine (o = 0, n = 1 without centring)
        s = (np.asarray(cosine, np.float64) - p_stats[2] - t_stats[2]) / (p_stats[3] * t_stats[3])
        return self.scale * ((s - p_stats[0]) / p_stats[1] + (s - t_stats[0]) / t_stats[1])

    def domain_centre(self, total: np.ndarray, count: int, narrowband: bool) -> np.ndarray | None:
        """Where to centre voiceprints of a deployment whose enrolled voices of this band sum to ``total``
        (d,) over ``count`` unit voiceprints (the profile being scored left out): the cohort's mean moved toward
        theirs by the positive-part James-Stein weight w = max(0, 1 - spread / (count x |their mean - the
        cohort's|^2)), spread = their mean squared distance from their mean. A channel every enrolled voice
        shares (a telephone line, a room, one microphone) moves their mean far from the cohort's and w near 1,
        so it stops reading as likeness; a few voices, or voices recorded like the cohort, leave w near 0.
        None: not centring, fewer than DOMAIN_MIN_PROFILES voices, or w = 0 (the cohort's mean stands)."""
        if not (self.centre and self.domain) or count < DOMAIN_MIN_PROFILES:
            return None
        mb = self._mean[int(bool(narrowband))]
        mean = np.asarray(total, np.float64) / count
        spread = max(0.0, 1.0 - float(mean @ mean)) * count / (count - 1)  # unit rows: E|x - mean|^2
        shift = mean - mb
        d2 = float(shift @ shift)
        w = 0.0 if d2 <= 0.0 else max(0.0, 1.0 - spread / (count * d2))
        return None if w == 0.0 else mb + w * shift

    def to_dict(self) -> dict:
        return {"method": "as-norm", "top_k": self.top_k, "scale": self.scale, "cohort": self.file,
                "cohort_speakers": len(set(self.speakers)) or int(self.cohort.shape[1]), "centre": self.centre,
                "domain": self.domain}

    def to_bytes(self) -> bytes:
        """The cohort as .npz bytes (float32: float16 would move the statistics by ~1e-3)."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, clean=self.cohort[0], narrowband=self.cohort[1],
                            speakers=np.array(self.speakers, dtype=str))
        return buf.getvalue()

    @classmethod
    def from_dict(cls, d: dict, base: Path | None) -> ScoreNorm:
        if d.get("method") != "as-norm":
            raise IdmeError(f"unknown score normalisation {d.get('method')!r} in the calibration")
        path = (base or Path(".")) / str(d["cohort"])
        try:
            stat = path.stat()
            cohort, speakers = _read_cohort(str(path), _version(stat))
        except (OSError, KeyError, ValueError) as exc:
            raise IdmeError(f"cannot read the score-normalisation cohort {path} ({exc}): reinstall idme or "
                            "refit the calibration with `idme eval calibrate --quality`") from None
        return cls(cohort, int(d.get("top_k", 20)), float(d.get("scale", 0.05)), speakers, str(d["cohort"]),
                   bool(d.get("centre", False)), bool(d.get("domain", False)))


@dataclass(frozen=True)
class QualityCalibration:
    """A fitted QMF for one encoder: LLR = weights . features(cosine, condition), and its operating point."""

    #: Encoder it was fitted for, ``"<name>@<version>"`` (a calibration belongs to one set of weights).
    encoder: str
    #: One weight per FEATURES entry (natural-log LLR units).
    weights: tuple[float, ...]
    #: Accept when LLR >= this (natural log). Chosen on the training trials (see ``provenance``).
    threshold: float
    #: Prior the logistic regression was weighted for (the LLR itself is prior-free).
    p_target: float = 0.5
    #: Data, speaker split, command and the training figures behind the numbers.
    provenance: dict = field(default_factory=dict)
    #: (LLR threshold, FAR) pairs measured on the pooled training non-targets, ascending thresholds, FAR > 0:
    #: what ``far_at`` reads to state the open-set risk of a raised threshold.
    far_curve: tuple[tuple[float, float], ...] = ()
    #: Score normalisation applied to the cosine before the QMF (None: the raw cosine is the score).
    norm: ScoreNorm | None = field(default=None, compare=False)

    def far_at(self, threshold: float) -> float:
        """Per-comparison FAR at an LLR ``threshold``: ``far_curve`` interpolated in log FAR; past its last
        point the calibrated-LLR tail, FAR x e^-(t - t_last) (E[e^LLR | non-target] = 1 for a calibrated LLR)."""
        if not self.far_curve:
            return 1.0
        t = np.array([p[0] for p in self.far_curve])
        lf = np.log([p[1] for p in self.far_curve])
        if threshold <= t[0]:
            return float(np.exp(lf[0]))
        if threshold >= t[-1]:
            return float(np.exp(lf[-1] - (threshold - t[-1])))
        return float(np.exp(np.interp(threshold, t, lf)))

    def llr(self, cosine, speech_s, test_narrowband, snr_db, profile_narrowband=False) -> np.ndarray:
        """Calibrated natural-log LLRs, float64 (n,), for (n,) arrays (or scalars) of trial features."""
        x = feature_matrix(cosine, speech_s, test_narrowband, snr_db, profile_narrowband)
        return x @ np.asarray(self.weights, np.float64)

    def llr1(self, cosine: float, speech_s: float, test_narrowband: bool, snr_db: float | None,
             profile_narrowband: bool = False) -> float:
        """``llr`` of one trial, as a float (``snr_db`` None = no estimate)."""
        return float(self.llr(cosine, speech_s, test_narrowband, np.nan if snr_db is None else snr_db,
                              profile_narrowband)[0])

    def to_dict(self) -> dict:
        d = {"encoder": self.encoder, "features": list(FEATURES), "weights": list(self.weights),
             "threshold": self.threshold, "p_target": self.p_target, "provenance": self.provenance,
             "far_curve": [list(p) for p in self.far_curve]}
        if self.norm is not None:
            d["score_norm"] = self.norm.to_dict()
        return d

    def save(self, path: Path) -> None:
        """Writes the calibration as JSON at ``path`` (and its cohort beside it, when normalised)."""
        if self.norm is not None:
            (path.parent / self.norm.file).write_bytes(self.norm.to_bytes())
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, d: dict, base: Path | None = None) -> QualityCalibration:
        """Raises IdmeError when ``d`` is not a calibration of this FEATURES layout. base: the folder of the
        JSON file (where a score-normalisation cohort lies)."""
        try:
            if list(d["features"]) != list(FEATURES):
                raise IdmeError(f"calibration features {d['features']} are not {list(FEATURES)}: refit it with "
                                "`idme eval calibrate --quality`")
            norm = ScoreNorm.from_dict(d["score_norm"], base) if d.get("score_norm") else None
            return cls(str(d["encoder"]), tuple(float(w) for w in d["weights"]), float(d["threshold"]),
                       float(d.get("p_target", 0.5)), dict(d.get("provenance", {})),
                       tuple((float(a), float(b)) for a, b in d.get("far_curve", ())), norm)
        except (KeyError, TypeError, ValueError) as exc:
            raise IdmeError(f"not a quality calibration ({exc}): refit it with `idme eval calibrate "
                            "--quality`") from None


#: The calibration shipped for the bundled CAM++ (fitted by bench/calibration.py; provenance inside).
SHIPPED = Path(__file__).resolve().parent.parent / "identity" / "calibration_campplus.json"
#: The file ``idme eval calibrate --quality`` writes in IDME_HOME; read before the shipped one.
HOME_FILE = "calibration.json"


def load(encoder: str, home: Path | None = None, shipped: bool = True) -> QualityCalibration | None:
    """The calibration for ``encoder`` ("<name>@<version>"): ``<home>/calibration.json`` when it holds one for
    this encoder, else (``shipped``) the shipped one when it matches, else None (cosine thresholds decide)."""
    for path in ([home / HOME_FILE] if home is not None else []) + ([SHIPPED] if shipped else []):
        try:
            stat = path.stat()
        except OSError:
            continue
        if not path.is_file():
            continue
        for entry in _read_json(str(path), _version(stat)):
            if isinstance(entry, dict) and entry.get("encoder") == encoder:
                return QualityCalibration.from_dict(entry, path.parent)
    return None


def _version(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one version of a file from the next: an atomic replace gives a new inode, a rewrite in place
    a new ctime (mtime alone can repeat within a timestamp tick)."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size


@lru_cache(maxsize=16)
def _read_json(path: str, version: tuple) -> tuple:
    """The entries of the calibration file at ``path``, parsed once per ``_version`` of the file: verify and
    identify ask for the calibration on every call."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IdmeError(f"cannot read calibration {path} ({exc}): delete it or refit it with `idme eval "
                        "calibrate --quality`") from None
    return tuple(data) if isinstance(data, list) else (data,)


@lru_cache(maxsize=8)
def _read_cohort(path: str, version: tuple) -> tuple[np.ndarray, tuple[str, ...]]:
    """A score-normalisation cohort file's (read-only float32 (2, n, d) voiceprints, speaker ids), read once
    per version of the file: decompressing it took ~1 ms of a ~40 ms verification."""
    with np.load(path) as z:
        cohort = np.stack([z["clean"], z["narrowband"]]).astype(np.float32)
        speakers = tuple(str(x) for x in z["speakers"]) if "speakers" in z else ()
    cohort.setflags(write=False)  # shared by every calibration loaded from this file
    return cohort, speakers


# -- fitting -----------------------------------------------------------------------------------------------

def fit_weights(x: np.ndarray, labels: np.ndarray, p_target: float = 0.5, l2: float = 1e-7) -> np.ndarray:
    """Prior-weighted logistic regression (the FoCal / BOSARIS objective, whose mean is Cllr at
    ``p_target`` = 0.5): weights w with x @ w = the LLR. x: (n, k) float64; labels: bool (n,)."""
    from scipy.optimize import minimize

    y = np.asarray(labels, bool)
    nt, nn = int(y.sum()), int((~y).sum())
    if nt == 0 or nn == 0:
        raise IdmeError("fitting a calibration needs both target and non-target trials")
    logit_p = math.log(p_target / (1 - p_target))
    wt = np.where(y, p_target / nt, (1 - p_target) / nn)
    sign = np.where(y, 1.0, -1.0)

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = sign * (x @ w + logit_p)
        loss = np.logaddexp(0.0, -z)  # -log sigmoid(z)
        g = -(wt * sign * (1.0 / (1.0 + np.exp(z)))) @ x
        return float(wt @ loss + l2 * w[1:] @ w[1:]), g + 2 * l2 * np.r_[0.0, w[1:]]

    w0 = np.zeros(x.shape[1])
    w0[1] = 10.0
    res = minimize(f, w0, jac=True, method="L-BFGS-B", options={"maxiter": 5000, "ftol": 1e-14, "gtol": 1e-10})
    return res.x


# -- measures of calibrated LLRs ---------------------------------------------------------------------------

def cllr(tgt_llr: np.ndarray, non_llr: np.ndarray) -> float:
    """Cost of the log-likelihood ratio (bits; 0 = perfect, 1 = uninformative). Natural-log LLR inputs."""
    t, n = np.asarray(tgt_llr, np.float64), np.asarray(non_llr, np.float64)
    return float((np.logaddexp(0, -t).mean() + np.logaddexp(0, n).mean()) / (2 * math.log(2)))


def _pav(y: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing least-squares fit of ``y`` (already in score order)."""
    vals, wts, lens = [], [], []
    for v in y.astype(np.float64):
        vals.append(v), wts.append(1.0), lens.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            wts[-2], lens[-2] = w, lens[-2] + lens[-1]
            vals.pop(), wts.pop(), lens.pop()
    return np.repeat(vals, lens)


def min_cllr(tgt: np.ndarray, non: np.ndarray) -> float:
    """Cllr after the best monotone recalibration (PAV, as BOSARIS's ``min_cllr``): discrimination only."""
    t, n = np.asarray(tgt, np.float64), np.asarray(non, np.float64)
    s = np.r_[t, n]
    y = np.r_[np.ones(len(t)), np.zeros(len(n))]
    order = np.lexsort((-y, s))  # ties: targets first, the pessimistic order BOSARIS uses
    p = _pav(y[order])
    eps = 1e-12
    post = np.clip(p, eps, 1 - eps)
    llr = np.log(post / (1 - post)) - math.log(len(t) / len(n))
    out = np.empty_like(llr)
    out[order] = llr
    return cllr(out[: len(t)], out[len(t):])


# -- degraded trials ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Degradation:
    """What is done to one side of a trial: a room (reverberation time, s), noise (dB), then an 8 kHz channel,
    then a middle crop (s)."""

    snr_db: float | None = None
    narrowband: bool = False
    crop_s: float | None = None
    #: Reverberation time of a synthetic far-field room (``far_field``); None: none.
    rt60_s: float | None = None

    def key(self) -> str:
        base = f"snr={self.snr_db}|nb={self.narrowband}|crop={self.crop_s}"
        return base if self.rt60_s is None else f"{base}|rt60={self.rt60_s}"


#: How each cohort voice is recorded, by default: as read (LibriSpeech). Adding a recording through a synthetic
#: far-field room (``Degradation(rt60_s=0.5)``, `bench/calibration.py --far-field-cohort 0.5`) was measured on
#: 2026-12-03 and not adopted: held out, mean EER and Cllr improve a little on both folds and unseen AMI talkers'
#: 2 s FAR falls 1.13% -> 0.75% (one trial of 266), but fewer conditions meet both rates (fold A 69 -> 68,
#: fold B 39 -> 36). docs/thresholds.md.
FIT_COHORT_VARIANTS: tuple[Degradation, ...] = (Degradation(),)


#: Direct-to-reverberant ratio of the synthetic far-field room (dB): as much reverberant as direct sound, a
#: talker a few metres from a table microphone.
FAR_FIELD_DRR_DB = 0.0


def far_field(x: np.ndarray, rt60_s: float, seed: int) -> np.ndarray:
    """``x`` float32 (n,) 16 kHz through a synthetic room impulse response: the direct path, then exponentially
    decaying noise (60 dB down after ``rt60_s``) from 2.5 ms on, FAR_FIELD_DRR_DB below it; peak level kept."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    n = max(2, int(rt60_s * 16000))
    t = np.arange(n) / 16000
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    h[: int(0.0025 * 16000)] = 0.0
    h *= math.sqrt(10 ** (-FAR_FIELD_DRR_DB / 10) / float(np.sum(h ** 2)))
    h[0] = 1.0
    y = fftconvolve(np.asarray(x, np.float64), h)[: len(x)]
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (y / max(float(np.abs(y).max()), 1e-9) * max(peak, 1e-9)).astype(np.float32)


@dataclass(frozen=True)
class Condition:
    """A trial condition: the test side's degradation and whether the profile side is 8 kHz too."""

    test: Degradation
    #: The enrolment side goes through the 8 kHz channel (a telephone-rate profile).
    enroll_narrowband: bool = False

    @property
    def name(self) -> str:
        band = "8k both" if self.enroll_narrowband and self.test.narrowband else \
            "8k test" if self.test.narrowband else "16k"
        snr = "clean" if self.test.snr_db is None else f"{self.test.snr_db:g} dB"
        crop = "whole" if self.test.crop_s is None else f"{self.test.crop_s:g} s"
        return f"{band}, {snr}, {crop}"


def condition_grid(crops: Sequence[float | None] = (None, 4.0, 3.0, 2.0, 1.0),
                   snrs: Sequence[float | None] = (None, 20.0, 15.0, 10.0, 5.0)) -> list[Condition]:
    """Every combination of band (16 kHz; 8 kHz both sides; 8 kHz test, 16 kHz profile), noise and crop."""
    out = []
    for band in ("16k", "8k both", "8k test"):
        for snr in snrs:
            for crop in crops:
                out.append(Condition(Degradation(snr, band != "16k", crop), band == "8k both"))
    return out


def degrade(speech: np.ndarray, d: Degradation, seed_text: str) -> np.ndarray:
    """``speech`` float32 (n,) 16 kHz, degraded by ``d``: white noise at ``d.snr_db`` below its mean power
    (seeded by ``seed_text``), then down to 8 kHz and back (soxr HQ, then idme's StreamResampler, as a source
    converts an 8 kHz input), then the middle ``d.crop_s`` seconds (all of it when shorter)."""
    import soxr

    from ..audio import StreamResampler

    x = np.asarray(speech, np.float32)
    if d.rt60_s is not None:
        x = far_field(x, d.rt60_s, zlib.crc32(f"{seed_text}|rt60".encode()))
    if d.snr_db is not None:
        rng = np.random.default_rng(zlib.crc32(f"{seed_text}|{d.snr_db}".encode()))
        power = float(np.mean(x.astype(np.float64) ** 2))
        x = (x + rng.standard_normal(len(x)) * math.sqrt(power / 10 ** (d.snr_db / 10))).astype(np.float32)
    if d.narrowband:
        low = soxr.resample(x, 16000, 8000, quality="HQ").astype(np.float32)
        up = StreamResampler(8000, 16000)
        x = np.concatenate([up.process(low), up.flush()])
    if d.crop_s is not None:
        n = int(round(d.crop_s * 16000))
        if len(x) > n:
            start = (len(x) - n) // 2
            x = x[start:start + n]
    return x


@dataclass(frozen=True)
class Side:
    """One side of a trial: a file, or the first (0) / second (1) half of its speech."""

    path: Path
    half: int | None = None


class FeatureCache:
    """(side, degradation) -> (unit embedding, speech s, measured narrow-band, SNR dB), memory + ``.npz``."""

    def __init__(self, embedder, cache_dir: Path) -> None:
        self.embedder = embedder
        self.dir = Path(cache_dir) / f"{embedder.name}-{embedder.version}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._speech: dict[Path, np.ndarray] = {}
        self._mem: dict[tuple, tuple] = {}
        self.computed = 0

    def speech(self, side: Side) -> np.ndarray:
        """The VAD-trimmed speech of ``side`` (the untrimmed audio when VAD keeps under 2 s)."""
        from ..audio import read_audio
        from ..vad import speech_only

        if side.path not in self._speech:
            audio = read_audio(side.path)
            sp = speech_only(audio)
            self._speech[side.path] = sp if len(sp) >= 32000 else audio
        sp = self._speech[side.path]
        if side.half is None:
            return sp
        mid = len(sp) // 2
        return sp[:mid] if side.half == 0 else sp[mid:]

    def get(self, side: Side, d: Degradation) -> tuple[np.ndarray, float, bool, float]:
        """Embedding (dim,) and condition of ``side`` degraded by ``d``, measured as ``verify.check`` does."""
        from ..identity.verify import audio_condition

        k = (side, d)
        if k in self._mem:
            return self._mem[k]
        h = hashlib.sha256(f"{side.path.resolve()}|{side.half}|{d.key()}".encode()).hexdigest()[:32]
        f = self.dir / f"{h}.npz"
        if f.is_file():
            z = np.load(f)
            out = (z["e"], float(z["dur"]), bool(z["nb"]), float(z["snr"]))
        else:
            x = degrade(self.speech(side), d, f"{side.path.name}|{side.half}")
            cond = audio_condition(x, None, 8000 if d.narrowband else None)
            e = np.asarray(self.embedder.embed(x), np.float32)
            snr = np.nan if cond.snr_db is None else cond.snr_db
            out = (e, len(x) / 16000, bool(cond.narrowband), float(snr))
            tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")  # unique: two fits may share a cache
            np.savez(tmp, e=e, dur=out[1], nb=out[2], snr=out[3])
            tmp.replace(f)
            self.computed += 1
        self._mem[k] = out
        return out


@dataclass(frozen=True)
class TrialSet:
    """Features of every trial of a list under one condition (arrays (n,))."""

    condition: Condition
    cosine: np.ndarray
    labels: np.ndarray
    speech_s: np.ndarray
    test_narrowband: np.ndarray
    snr_db: np.ndarray
    profile_narrowband: np.ndarray

    def x(self) -> np.ndarray:
        return feature_matrix(self.cosine, self.speech_s, self.test_narrowband, self.snr_db,
                              self.profile_narrowband)


def build(pairs: Sequence[tuple[Side, Side, bool]], cond: Condition, cache: FeatureCache,
          tick: Callable[[], None] | None = None, norm: ScoreNorm | None = None) -> TrialSet:
    """Scores ``pairs`` (enrol side, test side, target) under ``cond`` with the features ``check`` measures.
    The profile's narrow-band flag is the known enrolment rate (``Profile.narrowband`` reads it from takes).
    norm: score the trials AS-normalised (``TrialSet.cosine`` then holds the normalised score); a trial's own
    speakers are left out of the cohort."""
    from ..identity.verify import score

    enroll_d = Degradation(narrowband=cond.enroll_narrowband)
    cos, lab, dur, tnb, snr, ev, tv = [], [], [], [], [], [], []
    for e, t, target in pairs:
        ee = cache.get(e, enroll_d)[0]
        te, d, nb, q = cache.get(t, cond.test)
        cos.append(score(ee, te))
        ev.append(ee), tv.append(te)
        lab.append(target), dur.append(d), tnb.append(nb), snr.append(q)
        if tick is not None:
            tick()
    n = len(pairs)
    sc = np.array(cos)
    if norm is not None and n:
        spk = np.array(norm.speakers)
        own = np.array([[sp in (speaker_of(e), speaker_of(t)) for sp in spk] for e, t, _ in pairs]) \
            if len(spk) else None
        sc = norm.apply(sc, norm.stats(np.stack(ev), cond.enroll_narrowband, own),
                        norm.stats(np.stack(tv), cond.enroll_narrowband, own))
    return TrialSet(cond, sc, np.array(lab, bool), np.array(dur), np.array(tnb, bool),
                    np.array(snr), np.full(n, cond.enroll_narrowband))


def half_pairs(files: Sequence[Path], n_nontarget: int, seed: int = 0) -> list[tuple[Side, Side, bool]]:
    """Trials from one utterance per speaker: its first half vs its second half = target; first half of i vs
    second half of j != i = non-target (``n_nontarget`` drawn without replacement, seeded)."""
    n = len(files)
    out = [(Side(f, 0), Side(f, 1), True) for f in files]
    cross = [(i, j) for i in range(n) for j in range(n) if i != j]
    pick = np.random.default_rng(seed).choice(len(cross), size=min(n_nontarget, len(cross)), replace=False)
    return out + [(Side(files[cross[k][0]], 0), Side(files[cross[k][1]], 1), False) for k in sorted(pick)]


def list_pairs(trials_path: Path) -> list[tuple[Side, Side, bool]]:
    """A VoxCeleb / Kaldi trial list as whole-file pairs."""
    from .trials import read_trials

    return [(Side(t.enroll), Side(t.test), t.target) for t in read_trials(trials_path)]


def condition_report(tgt_llr: np.ndarray, non_llr: np.ndarray, threshold: float) -> dict[str, Any]:
    """Cllr, minCllr, minDCF (p_target 0.01), EER, and FAR / FRR at ``threshold``, for one condition."""
    from .metrics import eer, min_dcf, rates_at

    far, frr = rates_at(tgt_llr, non_llr, threshold)
    return {"n_target": int(len(tgt_llr)), "n_nontarget": int(len(non_llr)), "cllr": cllr(tgt_llr, non_llr),
            "min_cllr": min_cllr(tgt_llr, non_llr), "min_dcf_001": min_dcf(tgt_llr, non_llr, 0.01)[0],
            "eer": eer(tgt_llr, non_llr)[0], "far": far, "frr": frr}


def pick_threshold(sets: Sequence[TrialSet], llrs: Sequence[np.ndarray], far: float,
                   frr: float = 0.05) -> float:
    """The one operating point: the LLR threshold (0.05 steps) at which the most conditions have FAR <= ``far``
    and FRR <= ``frr`` (ties: the highest, fewer false accepts). The lowest threshold with FAR <= ``far``
    everywhere would serve the hardest condition (1 s at 8 kHz, EER 3-9%) and reject a third of everyone
    elsewhere; no threshold meets both rates where the scores do not separate that well."""
    from .metrics import rates_at

    def ok(t: float) -> int:
        return sum((lambda fa, fr: fa <= far and fr <= frr)(*rates_at(llr[ts.labels], llr[~ts.labels], t))
                   for ts, llr in zip(sets, llrs))

    return float(max(np.arange(-5.0, 10.0, 0.05), key=lambda t: (ok(t), t)))


def fit(sets: Sequence[TrialSet], encoder: str, far: float, provenance: dict,
        p_target: float = 0.5, norm: ScoreNorm | None = None) -> QualityCalibration:
    """Fits the QMF on pooled training ``sets`` and sets its threshold at FAR ``far`` in every condition.
    norm: the score normalisation the sets were scored with (kept in the calibration)."""
    x = np.concatenate([ts.x() for ts in sets])
    y = np.concatenate([ts.labels for ts in sets])
    w = fit_weights(x, y, p_target)
    cal = QualityCalibration(encoder, tuple(float(v) for v in w), 0.0, p_target, provenance)
    llrs = [cal.llr(ts.cosine, ts.speech_s, ts.test_narrowband, ts.snr_db, ts.profile_narrowband) for ts in sets]
    thr = round(pick_threshold(sets, llrs, far), 3)
    non = np.concatenate([llr[~ts.labels] for ts, llr in zip(sets, llrs)])
    curve = tuple((float(t), float(np.mean(non >= t))) for t in np.arange(-10.0, 20.01, 0.5) if np.any(non >= t))
    return QualityCalibration(encoder, cal.weights, thr, p_target, provenance, curve, norm)


# -- the whole procedure: ``idme eval calibrate --quality`` and bench/calibration.py ----------------------

#: Trial data, split by speaker (never by utterance) between fitting and checking:
#: - librispeech-test-other (10 speakers x 10 utterances): cross-utterance trials of ``HELDOUT_LIST``; the
#:   alternate speakers in sorted id order starting with the first (1688, 2033, 2609, 3080, 367) fit, the
#:   others (1998, 2414, 3005, 3331, 533) are checked.
#: - librispeech-train-clean-100 (126 speakers, one 1.6-17 s utterance each), split the same way (alternate
#:   speakers in sorted id order): a speaker with at least ``SESSION_MIN_SPEECH_S`` of speech gives one target
#:   trial, the first half of its speech vs the second half (*same session*, non-overlapping parts: an
#:   easier target than two recordings of a voice); every speaker of a group gives non-target trials, first
#:   half of one vs second half of another of the same group.
HELDOUT_LIST = "librispeech-test-other/trials.txt"
TRAIN_DIR = "librispeech-train-clean-100"
#: Speech (after VAD) a train-clean-100 utterance needs to give a same-session target: two halves of >= 4 s,
#: so that the 1-4 s test crops are crops of the second half. 102 of the 126 speakers have it.
SESSION_MIN_SPEECH_S = 8.0
#: The trial sources, as the per-source reports name them.
CROSS, SESSION = "test-other (cross-utterance)", "train-clean-100 (same session)"


def speaker_of(side: Side) -> str:
    """LibriSpeech speaker id of a file (``SPEAKER-CHAPTER-UTT.flac``)."""
    return side.path.name.split("-")[0]


def split_speakers(pairs: Sequence[tuple[Side, Side, bool]]) -> tuple[set[str], set[str]]:
    """(fit, held-out) speaker sets: alternate speakers in sorted id order."""
    spk = sorted({speaker_of(x) for e, t, _ in pairs for x in (e, t)})
    return set(spk[0::2]), set(spk[1::2])


def session_pairs(files: Sequence[Path], long_enough: Callable[[Path], bool],
                  n_nontarget: int | None = None, seed: int = 0) -> list[tuple[Side, Side, bool]]:
    """Trials among one-utterance speakers ``files``: first half vs second half of each file that is
    ``long_enough`` = target (same session); first half of i vs second half of j != i = non-target (all of
    them, or ``n_nontarget`` drawn without replacement, seeded)."""
    n = len(files)
    out = [(Side(f, 0), Side(f, 1), True) for f in files if long_enough(f)]
    cross = [(i, j) for i in range(n) for j in range(n) if i != j]
    if n_nontarget is not None and n_nontarget < len(cross):
        pick = np.random.default_rng(seed).choice(len(cross), size=n_nontarget, replace=False)
        cross = [cross[k] for k in sorted(pick)]
    return out + [(Side(files[i], 0), Side(files[j], 1), False) for i, j in cross]


def pooled(sets: Sequence[TrialSet]) -> TrialSet:
    """One TrialSet of several of the same condition (e.g. both trial sources)."""
    cat = lambda a: np.concatenate([getattr(ts, a) for ts in sets])  # noqa: E731
    return TrialSet(sets[0].condition, cat("cosine"), cat("labels"), cat("speech_s"), cat("test_narrowband"),
                    cat("snr_db"), cat("profile_narrowband"))


@dataclass(frozen=True)
class QualityFit:
    """A fitted calibration and its per-condition figures on the training and the held-out trials."""

    calibration: QualityCalibration
    #: condition name -> condition_report(...) at the calibration's threshold (all sources pooled).
    train: dict[str, dict]
    heldout: dict[str, dict]
    #: held-out: condition name -> FAR / FRR of the raw cosine at the shipped bar (``accept_for``).
    heldout_cosine: dict[str, dict]
    #: held-out, per trial source (CROSS, SESSION): condition name -> condition_report(...).
    heldout_by_source: dict[str, dict[str, dict]] = field(default_factory=dict)
    #: held-out: condition name -> condition_report of the ``baseline`` calibration at its own threshold.
    heldout_baseline: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"calibration": self.calibration.to_dict(), "train": self.train, "heldout": self.heldout,
                "heldout_cosine": self.heldout_cosine, "heldout_by_source": self.heldout_by_source,
                "heldout_baseline": self.heldout_baseline}


def fit_on_data(data: Path, embedder, cache_dir: Path, far: float = 0.005, n_nontarget: int = 4000,
                conditions: Sequence[Condition] | None = None, command: str = "",
                progress: Callable[[int, int], None] | None = None, thresholds=None,
                swap: bool = False, same_session: bool = True,
                baseline: QualityCalibration | None = None, score_norm: bool = False,
                top_k: int | None = FIT_TOP_K, centre: bool = FIT_CENTRE, domain: bool = FIT_DOMAIN,
                cohort_variants: Sequence[Degradation] | None = None) -> QualityFit:
    """Builds degraded trials from ``data``, fits the QMF on the fitting speakers, puts its threshold where
    the most training conditions meet FAR ``far`` and FRR 5%, and reports each condition on both speaker
    groups. ``thresholds``: cosine bars to report alongside (``Thresholds``), or None.
    swap: fit on the held-out speakers and check on the fitting ones (the other fold of the split).
    same_session: the train-clean-100 speakers are split too and give same-session targets and within-group
    non-targets to both sides (False: the earlier pool, all 126 speakers as ``n_nontarget`` fitting
    non-targets and test-other alone held out). baseline: another calibration to report on the held-out
    trials (e.g. the shipped one), at its own threshold. score_norm: AS-normalise every score against a
    cohort of the fitting group's train-clean-100 speakers (first half of each utterance, clean and through
    the 8 kHz channel; ``top_k`` best cohort scores per side, None: all), kept in the calibration.
    cohort_variants: how each cohort voice is recorded (``FIT_COHORT_VARIANTS`` by default; the band is set per
    cohort half). centre: centre every voiceprint on the cohort's mean first (``ScoreNorm.centre``). domain:
    the calibration moves that centre toward a deployment's own voices at run time (``ScoreNorm.domain``; the
    fitting trials have no deployment, so it does not change the fit)."""
    from .metrics import rates_at

    data = Path(data)
    train_files = sorted((data / TRAIN_DIR).rglob("*.flac"))
    list_path = data / HELDOUT_LIST
    if not train_files or not list_path.is_file():
        raise IdmeError(f"no {TRAIN_DIR}/ or {HELDOUT_LIST} under {data}: point at ../shared/data")
    conds = list(conditions or condition_grid())
    listed = list_pairs(list_path)
    fit_spk, held_spk = split_speakers(listed)
    tc_spk = sorted({speaker_of(Side(f)) for f in train_files})
    tc_fit, tc_held = set(tc_spk[0::2]), set(tc_spk[1::2])
    if swap:  # the other fold: how much the figures depend on which speakers fit
        fit_spk, held_spk, tc_fit, tc_held = held_spk, fit_spk, tc_held, tc_fit
    within = lambda group: [p for p in listed if speaker_of(p[0]) in group and speaker_of(p[1]) in group]  # noqa: E731
    cache = FeatureCache(embedder, cache_dir)
    long_enough = lambda f: len(cache.speech(Side(f))) >= SESSION_MIN_SPEECH_S * 16000  # noqa: E731
    if same_session:
        tc_pairs = {g: session_pairs([f for f in train_files if speaker_of(Side(f)) in grp], long_enough)
                    for g, grp in (("fit", tc_fit), ("held", tc_held))}
    else:
        tc_pairs = {"fit": [p for p in half_pairs(train_files, n_nontarget, seed=0) if not p[2]], "held": []}
    sources = {"fit": [(CROSS, within(fit_spk)), (SESSION, tc_pairs["fit"])],
               "held": [(CROSS, within(held_spk)), (SESSION, tc_pairs["held"])]}
    total = len(conds) * sum(len(p) for side in sources.values() for _, p in side)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None and done[0] % 500 == 0:
            progress(done[0], total)

    norm = None
    if score_norm:
        coh_files = [f for f in train_files if speaker_of(Side(f)) in tc_fit]
        variants = [dataclasses.replace(v, narrowband=False) for v in (cohort_variants or FIT_COHORT_VARIANTS)]
        cohort = np.stack([np.stack([cache.get(Side(f, 0), dataclasses.replace(v, narrowband=nb))[0]
                                     for v in variants for f in coh_files])
                           for nb in (False, True)]).astype(np.float32)
        norm = ScoreNorm(cohort, top_k or cohort.shape[1], 0.05, tuple(speaker_of(Side(f)) for _ in variants for f in coh_files),
                         f"cohort_{re.sub(r'[^A-Za-z0-9_.-]', '_', embedder.name)}.npz", centre, centre and domain)
    built = {side: {src: [build(p, c, cache, tick, norm) for c in conds] for src, p in lst if p}
             for side, lst in sources.items()}
    train = [pooled([built["fit"][s][k] for s in built["fit"]]) for k in range(len(conds))]
    held = [pooled([built["held"][s][k] for s in built["held"]]) for k in range(len(conds))]
    # The raw-cosine column scores raw cosines, also when the calibration normalises them (the baseline
    # column scores with the baseline's own normalisation, below).
    held_raw = held if norm is None else \
        [pooled([build(p, conds[k], cache) for _, p in sources["held"] if p]) for k in range(len(conds))]

    def describe(lst: list) -> str:
        parts = []
        for src, p in lst:
            if p:
                nt = sum(x[2] for x in p)
                parts.append(f"{src}: {nt} target + {len(p) - nt} non-target trials per condition")
        return "; ".join(parts)

    prov = {"data": f"fit on {HELDOUT_LIST} speakers {sorted(fit_spk)} and {TRAIN_DIR} speakers "
                    f"{sorted(tc_fit) if same_session else 'all ' + str(len(train_files)) + ' (non-targets only)'}"
                    f" ({describe(sources['fit'])})",
            "heldout": f"{HELDOUT_LIST} speakers {sorted(held_spk)}"
                       + (f" and {TRAIN_DIR} speakers {sorted(tc_held)}" if same_session else "")
                       + f" ({describe(sources['held'])}), never seen in fitting",
            "same_session_targets": (f"{TRAIN_DIR} utterances with >= {SESSION_MIN_SPEECH_S:g} s of speech: first "
                                     "half vs second half (same session: easier than cross-utterance)")
            if same_session else "none",
            "conditions": [c.name for c in conds],
            "degradation": "test side: white noise, then 8 kHz channel (soxr + StreamResampler), then middle crop; "
                           "features measured on the degraded speech as verify.check does",
            "operating_point": f"the LLR threshold meeting FAR <= {far:g} and FRR <= 0.05 in the most training "
                               "conditions (both sources pooled)",
            "command": command, "encoder": f"{embedder.name}@{embedder.version}"}
    if norm is not None:
        prov["score_norm"] = (f"AS-norm, top {norm.top_k} of a cohort of {len(set(norm.speakers))} {TRAIN_DIR} speakers "
                              f"x {len(variants)} recordings ({', '.join(v.key() for v in variants)}) "
                              f"of the fitting group (first half of each utterance; LibriSpeech, CC BY 4.0, "
                              f"V. Panayotov et al.): {sorted(set(norm.speakers))}"
                              + ("; every voiceprint centred on the cohort's mean of its band first" if centre else ""))
    cal = fit(train, f"{embedder.name}@{embedder.version}", far, prov, norm=norm)

    def rep(sets: list[TrialSet], c: QualityCalibration = cal) -> dict[str, dict]:
        out = {}
        for ts in sets:
            llr = c.llr(ts.cosine, ts.speech_s, ts.test_narrowband, ts.snr_db, ts.profile_narrowband)
            out[ts.condition.name] = condition_report(llr[ts.labels], llr[~ts.labels], c.threshold)
        return out

    cos = {}
    if thresholds is not None:
        for ts in held_raw:
            bar = thresholds.accept_for(True, ts.condition.enroll_narrowband, bool(np.mean(ts.test_narrowband) > 0.5))
            fa, fr = rates_at(ts.cosine[ts.labels], ts.cosine[~ts.labels], bar)
            cos[ts.condition.name] = {"threshold": bar, "far": fa, "frr": fr}
    by_source = {src: rep(sets) for src, sets in built["held"].items()}
    held_base = held_raw
    if baseline is not None and baseline.norm is not None:  # a baseline scores as it would at run time
        held_base = [pooled([build(p, conds[k], cache, None, baseline.norm) for _, p in sources["held"] if p])
                     for k in range(len(conds))]
    return QualityFit(cal, rep(train), rep(held), cos, by_source, rep(held_base, baseline) if baseline else {})
