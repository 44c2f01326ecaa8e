"""The one verification score and accept rule: the tracker, ``verify`` (1:1) and ``identify`` (1:N) use these,
so a threshold calibrated on ``score`` means the same thing wherever it is applied (review §1.7).

The score is the cosine between a unit embedding and a profile's voiceprint, the L2-normalised mean of its
take embeddings (``Profile.centroid``). ``EnrolledIndex`` computes the same cosine with FAISS for the live
1:N search; the two agree to float32 rounding (~1e-7).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from .indices import _unit
from .profiles import OWNER, Profile
from .thresholds import Thresholds


def voiceprint(takes: np.ndarray) -> np.ndarray:
    """The L2-normalised mean of take embeddings ``takes`` float32 (n, dimension) (or one (dimension,) take):
    float32 (dimension,), unit norm. Computed exactly as ``Profile.centroid``."""
    e = np.atleast_2d(np.asarray(takes, np.float32))
    c = e.mean(axis=0)
    return (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)


def score(voice: Profile | np.ndarray, embedding: np.ndarray) -> float:
    """Cosine of ``embedding`` (dimension,), unit norm as every ``Embedder`` returns it, with a voiceprint.

    voice: a Profile (its centroid), take embeddings (n, dimension) (their ``voiceprint``), or a unit
    voiceprint (dimension,) used as it is (e.g. a cluster centroid, or one enrollment file's embedding).
    """
    if isinstance(voice, Profile):
        vp = voice.centroid
    else:
        vp = np.asarray(voice)
        if vp.ndim == 2:
            vp = voiceprint(vp)
    # embedding first: the tracker's numbers (float32 sdot, or float64 for a re-clustering centroid) stay
    # bit-identical to what it computed before this module existed.
    return float(np.asarray(embedding) @ vp)


def threshold(thresholds: Thresholds, profile: Profile, session_narrowband: bool = False) -> float:
    """The score ``profile`` must reach: see ``Thresholds.accept_for``."""
    return thresholds.accept_for(profile.name == OWNER, profile.narrowband, session_narrowband)


def accept(thresholds: Thresholds, score: float, *, is_owner: bool, profile_narrowband: bool = False,
           session_narrowband: bool = False) -> bool:
    """Whether ``score`` labels a segment as the profile (owner or not, narrow-band or not)."""
    return score >= thresholds.accept_for(is_owner, profile_narrowband, session_narrowband)


@dataclass(frozen=True)
class Verdict:
    """A 1:1 verification: cosine ``score``, the ``threshold`` it was held to, and whether it ``accepted``."""

    score: float
    threshold: float
    accepted: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Match:
    """One profile's result in a 1:N identification (``name``: the profile name, "me" for the owner)."""

    name: str
    score: float
    threshold: float
    accepted: bool
    #: The raw cosine, when ``score`` is a calibrated LLR (``Check.calibrated``); None otherwise.
    cosine: float | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.cosine is None:  # a cosine Match reads as it did before calibration existed
            del d["cosine"]
        return d


def verify(profile: Profile, embedding: np.ndarray, thresholds: Thresholds,
           session_narrowband: bool = False) -> Verdict:
    """Is ``embedding`` (dimension,) ``profile``'s voice? Held to the bar the tracker uses for that profile.

    session_narrowband: the audio the embedding came from is telephone-rate (<= 8 kHz).
    """
    s = score(profile, _unit(embedding))
    t = threshold(thresholds, profile, session_narrowband)
    return Verdict(s, t, s >= t)


def identify(profiles: Iterable[Profile], embedding: np.ndarray, thresholds: Thresholds, top: int = 5,
             session_narrowband: bool = False) -> list[Match]:
    """The ``top`` best-scoring profiles for ``embedding`` (dimension,), best first (ties: given order).

    Every profile is scored with ``score`` (a local store holds few people; ``EnrolledIndex`` is the FAISS
    path for many), so each Match equals ``verify`` of that profile.
    """
    e = _unit(embedding)
    out = []
    for p in profiles:
        s = score(p, e)
        t = threshold(thresholds, p, session_narrowband)
        out.append(Match(p.name, s, t, s >= t))
    out.sort(key=lambda m: -m.score)  # stable
    return out[: max(top, 0)]


# -- 1:1 and 1:N checks on audio (issue 12) ---------------------------------------------------------------
#
# ``check`` is the one path from audio to a decision: ``idme verify`` / ``idme identify``, ``Idme.verify`` /
# ``Idme.identify`` and the server call it. It trims the audio to its speech with the enrollment VAD, refuses
# too little of it, measures the recording condition, embeds once and scores with ``score`` against the bar
# ``threshold`` gives (the tracker's accept rule), so a calibrated threshold means the same thing everywhere.

#: Decisions, as AWS Voice ID named them (ACCEPT, REJECT, NOT_ENOUGH_SPEECH, SPEAKER_NOT_ENROLLED).
ACCEPT, REJECT, NOT_ENOUGH_SPEECH, NOT_ENROLLED = "accept", "reject", "not_enough_speech", "not_enrolled"
#: Azure Speaker Recognition returned at most 50 candidates per identification; idme keeps that cap.
MAX_TOP = 50
#: Per-comparison false-accept rate the shipped ``me`` / ``enrolled`` bar was chosen at (thresholds.py:
#: the non-target score at FAR 0.1% on librispeech-test-other). Used only to state the open-set risk.
DESIGN_FAR = 0.001
#: An estimated bandwidth at or below this counts as narrow-band: 8 kHz-native audio carries nothing above
#: 4 kHz (its Nyquist), and the 250 Hz analysis bands put that edge at 4.0 kHz; 4.5 kHz leaves one band spare.
NARROWBAND_EDGE_HZ = 4500.0
#: A 250 Hz band is part of the signal's bandwidth when its loud frames (90th percentile) are within this
#: many dB of the loudest band's. Resampled 8 kHz speech drops 60-110 dB above 4 kHz (soxr/StreamResampler
#: stop band); clean wideband LibriSpeech stays within 15-40 dB up to 8 kHz (measured on test-other).
BAND_FLOOR_DB = 60.0
#: The SNR estimate's noise power is the mean of the quietest 10% of 32 ms frames (minimum statistics);
#: speech with no pause at all reads a few dB low. Capped: digital silence would read as infinite.
NOISE_QUANTILE = 0.10
MAX_SNR_DB = 60.0
_FFT = 512  # 32 ms at 16 kHz: 31.25 Hz bins, 8 per 250 Hz band
_HOP = 256


@dataclass(frozen=True)
class VerifyOptions:
    """What a test utterance needs before it is scored."""

    #: Net speech after VAD trimming. CAM++ EER on LibriSpeech test-other is 0.89% with 1 s of test speech
    #: and 6.2% at 0.5 s (docs/thresholds.md), so below 1 s a decision is not worth giving.
    min_speech_s: float = 1.0


@dataclass(frozen=True)
class AudioCondition:
    """The recording condition measured on a test utterance's speech."""

    #: Highest frequency (Hz) the speech carries energy to (250 Hz resolution); 8000 = full 16 kHz band.
    bandwidth_hz: float
    #: Telephone-band audio: estimated ``bandwidth_hz`` <= NARROWBAND_EDGE_HZ, or a native rate <= 8 kHz.
    narrowband: bool
    #: Signal-to-noise ratio estimate (dB, minimum statistics; capped at MAX_SNR_DB); None without audio.
    snr_db: float | None
    #: The rate the audio was recorded at, when known (a file); None for samples handed over as 16 kHz.
    native_rate: int | None = None

    def to_dict(self) -> dict:
        return {"bandwidth_hz": self.bandwidth_hz, "narrowband": self.narrowband,
                "snr_db": None if self.snr_db is None else round(self.snr_db, 1), "native_rate": self.native_rate}


def _frames(x: np.ndarray) -> np.ndarray:
    """Overlapping 32 ms frames of ``x`` (n,) as float64 (n_frames, _FFT); zero-padded when shorter."""
    x = np.asarray(x, np.float64)
    if len(x) < _FFT:
        x = np.pad(x, (0, _FFT - len(x)))
    n = 1 + (len(x) - _FFT) // _HOP
    return x[np.arange(_FFT)[None, :] + _HOP * np.arange(n)[:, None]]


def estimate_bandwidth(samples: np.ndarray, sample_rate: int = 16000) -> float:
    """Effective bandwidth (Hz) of ``samples`` float32 (n,) at ``sample_rate``: the upper edge of the highest
    250 Hz band whose 90th-percentile frame level is within BAND_FLOOR_DB of the loudest band's.

    Audio recorded at 8 kHz and resampled to 16 kHz reads 4000; full-band speech reads about 8000. Wideband
    noise added *after* band-limiting fills the empty band and reads as wideband: the audio then carries
    energy up to 8 kHz, though not speech (telephone noise, picked up before the channel, does not).
    """
    f = _frames(samples)
    spec = np.abs(np.fft.rfft(f * np.hanning(_FFT), axis=1)) ** 2  # (n_frames, _FFT/2 + 1)
    per = int(round(250 * _FFT / sample_rate))
    nb = (spec.shape[1] - 1) // per
    bands = spec[:, 1:1 + nb * per].reshape(len(spec), nb, per).mean(axis=2)
    level = np.percentile(10 * np.log10(bands + 1e-20), 90, axis=0)
    inside = np.flatnonzero(level >= level.max() - BAND_FLOOR_DB)
    return float((inside[-1] + 1) * per * sample_rate / _FFT) if len(inside) else 0.0


def estimate_snr_db(samples: np.ndarray) -> float | None:
    """Signal-to-noise ratio (dB) of ``samples`` float32 (n,): noise power = mean of the quietest
    NOISE_QUANTILE of 32 ms frames, signal = the mean power above it. None for empty or all-zero audio.

    On LibriSpeech with white noise added at 5-20 dB it reads within about 1.5 dB (low by 1-2 dB on speech
    with its pauses cut out); at 30 dB and above it reads the recording's own background noise.
    """
    if len(samples) == 0:
        return None
    power = np.sort((_frames(samples) ** 2).mean(axis=1))
    total = float(power.mean())
    if total <= 0.0:
        return None
    noise = float(power[: max(1, int(len(power) * NOISE_QUANTILE))].mean())
    if noise <= total * 10 ** (-MAX_SNR_DB / 10):
        return MAX_SNR_DB
    return float(min(MAX_SNR_DB, 10 * np.log10(max(total - noise, 1e-20) / noise)))


def audio_condition(speech: np.ndarray, audio: np.ndarray | None = None,
                    native_rate: int | None = None) -> AudioCondition:
    """The condition of a test utterance: bandwidth from its ``speech`` (VAD-trimmed, 16 kHz float32), SNR
    from the untrimmed ``audio`` when given (its pauses hold the noise), else from ``speech``."""
    from .profiles import NARROWBAND_MAX_HZ

    if len(speech) == 0:
        return AudioCondition(0.0, bool(native_rate and native_rate <= NARROWBAND_MAX_HZ), None, native_rate)
    bw = estimate_bandwidth(speech)
    narrow = bw <= NARROWBAND_EDGE_HZ or bool(native_rate and native_rate <= NARROWBAND_MAX_HZ)
    return AudioCondition(bw, narrow, estimate_snr_db(speech if audio is None else audio), native_rate)


@dataclass(frozen=True)
class Check:
    """The outcome of a 1:1 verification or a 1:N identification of one utterance.

    decision: ``accept`` (the claimed profile, or the best candidate, passed), ``reject`` (it did not; for
    identify: nobody enrolled matches), ``not_enough_speech`` (nothing was scored) or ``not_enrolled`` (no
    such profile / an empty gallery).
    """

    decision: str
    #: The claimed profile (verify) or the best candidate (identify); None when there is none.
    name: str | None
    #: Cosine score against ``name``'s voiceprint (None when nothing was scored) and the bar it was held to.
    score: float | None
    threshold: float | None
    #: Net speech in the test audio after VAD trimming, seconds.
    speech_s: float
    condition: AudioCondition
    #: Why, in one line a user can act on (empty for a plain accept).
    reason: str = ""
    #: identify only: the best candidates, best first (``Match.accepted`` = passed its own bar).
    candidates: tuple[Match, ...] = ()
    #: identify only: how many profiles were searched.
    gallery_size: int | None = None
    #: identify only: the chance that somebody who is not enrolled is taken for one of the ``gallery_size``
    #: people, about ``gallery_size`` x the per-comparison FAR at ``threshold``, capped at 1.
    expected_fpir: float | None = None
    #: The raw cosine against ``name``'s voiceprint; equal to ``score`` when ``calibrated`` is False.
    cosine: float | None = None
    #: True: ``score`` is a calibrated log-likelihood ratio (natural log; > 0 favours the same speaker) from
    #: ``eval.calibration`` (cosine + speech duration + bandwidth + SNR) and ``threshold`` an LLR threshold.
    #: False: both are cosines (no calibration for this encoder).
    calibrated: bool = False
    #: identify only: the 1:1 threshold before it was raised for the gallery size (``open_set_threshold``).
    base_threshold: float | None = None

    @property
    def accepted(self) -> bool:
        return self.decision == ACCEPT

    def to_dict(self) -> dict:
        d = {"decision": self.decision, "name": self.name,
             "score": None if self.score is None else round(self.score, 4),
             "threshold": None if self.threshold is None else round(self.threshold, 4),
             "speech_s": round(self.speech_s, 2), "condition": self.condition.to_dict(), "reason": self.reason,
             "cosine": None if self.cosine is None else round(self.cosine, 4), "calibrated": self.calibrated}
        if self.gallery_size is not None:
            d["candidates"] = [{"name": m.name, "score": round(m.score, 4), "threshold": round(m.threshold, 4),
                                "accepted": m.accepted,
                                "cosine": None if m.cosine is None else round(m.cosine, 4)} for m in self.candidates]
            d["gallery_size"] = self.gallery_size
            d["expected_fpir"] = self.expected_fpir
            d["base_threshold"] = None if self.base_threshold is None else round(self.base_threshold, 4)
        return d


def open_set_note(gallery_size: int, far: float = DESIGN_FAR) -> str:
    """One line on the open-set risk of a gallery of ``gallery_size`` people at per-comparison ``far``."""
    return (f"searched {gallery_size} profile(s): the chance that someone not enrolled matches one of them is "
            f"about {gallery_size} x FAR = {min(1.0, gallery_size * far):.2%}")


def identify_in(hits, thresholds: Thresholds, session_narrowband: bool = False) -> list[Match]:
    """``identify`` of a ``gallery.Gallery``'s search ``hits`` (keys are profile names, best first): each held
    to its own bar (``OWNER`` = the ``me`` bar; ``Hit.narrowband``: enrolled at telephone rate). Scores are
    the galleries' exact cosines."""
    out = []
    for h in hits:
        t = thresholds.accept_for(h.key == OWNER, h.narrowband, session_narrowband)
        out.append(Match(h.key, h.score, t, h.score >= t))
    return out


def open_set_threshold(threshold: float, gallery_size: int) -> float:
    """The LLR a best candidate needs among ``gallery_size`` people: the 1:1 ``threshold`` + ln(gallery size).

    An unknown voice gets ``gallery_size`` chances to pass, so the false-positive identification rate grows
    about gallery size x FAR; dividing the prior of each candidate by the gallery size (the Bayes decision for
    one of N equally likely people) moves a calibrated LLR threshold up by ln N and keeps FPIR near the 1:1
    FAR (for a calibrated LLR, FAR(t + ln N) <= FAR-tail / N). One person: the 1:1 threshold."""
    import math

    return threshold + math.log(max(gallery_size, 1))


class Domain:
    """The enrolled voices a decision is made among (one store's profiles), as a sum and a count of unit
    voiceprints per band: where a score-normalised calibration centres both sides of a trial
    (``ScoreNorm.domain_centre``), the scored profile itself left out. ``verify``, ``identify``, the live
    tracker and the pyannote segmenter all take their centre from here."""

    def __init__(self, profiles: Iterable[Profile] = ()) -> None:
        self._sum: dict[bool, np.ndarray] = {}
        self._count: dict[bool, int] = {}
        #: Names of the voices summed; None: every voice scored is one of them (a gallery's search hits).
        self._names: set[str] | None = set()
        for p in profiles:
            nb = bool(p.narrowband)
            v = _unit(np.asarray(p.centroid, np.float64).reshape(-1))
            self._sum[nb] = self._sum.get(nb, 0.0) + v
            self._count[nb] = self._count.get(nb, 0) + 1
            self._names.add(p.name)

    @classmethod
    def of_gallery(cls, gallery) -> Domain:
        """The domain of every voiceprint a ``gallery.Gallery`` holds (its ``domain()`` sums, kept by the
        gallery as rows come and go: a million rows are never summed per query)."""
        d = cls()
        for nb, (total, count) in gallery.domain().items():
            d._sum[bool(nb)], d._count[bool(nb)] = np.asarray(total, np.float64), int(count)
        d._names = None
        return d

    def centre_for(self, calibration, name: str, voiceprint: np.ndarray, narrowband: bool) -> np.ndarray | None:
        """The centre for trials against profile ``name`` (its ``voiceprint``, left out when it is one of the
        domain's) of that band. None: the cohort's mean, or no score normalisation."""
        norm = getattr(calibration, "norm", None)
        nb = bool(narrowband)
        if norm is None or nb not in self._sum:
            return None
        total, count = self._sum[nb], self._count[nb]
        if self._names is None or name in self._names:
            total, count = total - _unit(np.asarray(voiceprint, np.float64).reshape(-1)), count - 1
        return norm.domain_centre(total, count, nb)


def norm_stats(calibration, vector: np.ndarray | None, narrowband: bool,
               centre_on: np.ndarray | None = None) -> tuple[float, ...] | None:
    """One side's AS-norm statistics (mean, std of its best cohort cosines, and its centring terms:
    ``ScoreNorm.stats``) for a calibration that normalises
    scores (``QualityCalibration.norm``); None when it does not, or when no vector is given. narrowband: the
    profile side's band (the cohort is recorded like the profile). centre_on: both sides' centre
    (``Domain.centre_for``; None: the cohort's mean)."""
    norm = getattr(calibration, "norm", None)
    if norm is None or vector is None:
        return None
    return tuple(float(v[0]) for v in norm.stats(_unit(np.asarray(vector, np.float32).reshape(-1))[None, :],
                                                 narrowband, centre_on=centre_on))


def calibrated_score(calibration, cosine: float, speech_s: float, condition: AudioCondition,
                     profile_narrowband: bool, profile_stats: tuple[float, ...] | None = None,
                     test_stats: tuple[float, ...] | None = None) -> float:
    """The calibrated LLR of one cosine under the measured test ``condition`` (``eval.calibration`` QMF):
    the one function ``check`` and segment-level scoring use. A calibration with score normalisation needs
    both sides' ``norm_stats``: without them the LLR of the raw cosine would be meaningless, so that raises."""
    if getattr(calibration, "norm", None) is not None:
        if profile_stats is None or test_stats is None:
            raise ValueError("this calibration AS-normalises scores: pass both sides' norm_stats")
        cosine = float(calibration.norm.apply(cosine, profile_stats, test_stats))
    return calibration.llr1(cosine, speech_s, condition.narrowband, condition.snr_db, profile_narrowband)


def calibrated_bar(calibration, speech_s: float, condition: AudioCondition, profile_narrowband: bool,
                   threshold: float | None = None, profile_stats: tuple[float, ...] | None = None,
                   test_stats: tuple[float, ...] | None = None) -> float:
    """The cosine at which ``calibrated_score`` reaches ``threshold`` (default: the calibration's own) under
    ``condition``: for fixed quality inputs (and fixed sides, under score normalisation) the LLR is linear
    and rising in the cosine, so ``cosine >= bar`` is exactly ``calibrated_score(...) >= threshold``. The
    tracker compares cosines with this bar, which keeps its cosine margins (interim labels, re-clustering
    anchors) meaningful. One voice of ``calibrated_bars``."""
    snr = np.nan if condition.snr_db is None else condition.snr_db
    ts = None if test_stats is None else tuple(np.array([v]) for v in test_stats)
    return float(calibrated_bars(calibration, speech_s, condition.narrowband, snr, profile_narrowband,
                                 profile_stats=profile_stats, test_stats=ts, threshold=threshold)[0])


def calibrated_bars(calibration, speech_s, narrowband, snr_db, profile_narrowband: bool, *,
                    profile_stats: tuple[float, ...] | None = None,
                    test_stats: tuple[np.ndarray, ...] | None = None,
                    threshold: float | None = None) -> np.ndarray:
    """``calibrated_bar`` of n test voices against one profile at once, float64 (n,): speech_s, narrowband
    and snr_db are (n,) (snr NaN: no estimate); under score normalisation ``test_stats`` is the test side's
    ``norm.stats`` (arrays (n,)) and ``profile_stats`` the profile's (``norm_stats``). The LLR is linear
    in the cosine for fixed quality and sides, so the bar is where the line through cosines 0 and 1 reaches
    the threshold (inf when it does not rise)."""
    speech_s = np.atleast_1d(np.asarray(speech_s, np.float64))
    zero, one = np.zeros_like(speech_s), np.ones_like(speech_s)
    norm = getattr(calibration, "norm", None)
    if norm is not None:
        if profile_stats is None or test_stats is None:
            raise ValueError("this calibration AS-normalises scores: pass both sides' norm_stats")
        zero, one = norm.apply(zero, profile_stats, test_stats), norm.apply(one, profile_stats, test_stats)
    lo = calibration.llr(zero, speech_s, narrowband, snr_db, profile_narrowband)
    slope = calibration.llr(one, speech_s, narrowband, snr_db, profile_narrowband) - lo
    t = calibration.threshold if threshold is None else threshold
    return np.where(slope > 0, (t - lo) / np.where(slope > 0, slope, 1.0), np.inf)


def check(voice: Profile | Iterable[Profile] | None, samples: np.ndarray, embedder, thresholds: Thresholds, *,
          native_rate: int | None = None, top: int = 5, options: VerifyOptions = VerifyOptions(),
          name: str | None = None, calibration=None, domain: Domain | None = None) -> Check:
    """Verifies (``voice`` a Profile) or identifies (``voice`` several profiles, or a ``gallery.Gallery``
    keyed by profile name) 16 kHz ``samples``.

    samples: float32 (n,), 16 kHz mono (``idme.audio.read_audio`` gives that from any file).
    embedder: an ``Embedder`` (its ``embed`` turns speech into a unit vector).
    native_rate: the rate the audio was recorded at, if known: <= 8 kHz marks it narrow-band outright.
    top: identify only, how many candidates to return (1..MAX_TOP).
    name: verify only, the claimed name to report when ``voice`` is None (not enrolled).
    calibration: an ``eval.calibration.QualityCalibration`` for this encoder: scores become calibrated LLRs
        held to its threshold (raised by ln N for N profiles in identify); None: cosines held to ``thresholds``.
    domain: the enrolled voices the profile is scored among (``Domain`` of the whole store), for a
        score-normalised calibration's centre; identify among profiles defaults to those profiles, through a
        gallery to the gallery's own voices (``Domain.of_gallery``), verify to none (the cohort's mean).
    Raises IdmeError for ``top`` outside 1..MAX_TOP; every other outcome is a ``Check`` with its reason.
    """
    from ..errors import IdmeError
    from ..vad import speech_only

    if not 1 <= top <= MAX_TOP:
        raise IdmeError(f"top must be between 1 and {MAX_TOP} (got {top})")
    audio = np.asarray(samples, np.float32).reshape(-1)
    speech = speech_only(audio) if len(audio) else audio
    speech_s = len(speech) / 16000
    cond = audio_condition(speech, audio, native_rate)
    identifying = voice is not None and not isinstance(voice, Profile)
    gallery = voice if identifying and hasattr(voice, "search") else None
    profiles = [] if gallery is not None else list(voice) if identifying else ([] if voice is None else [voice])
    size = len(gallery) if gallery is not None else len(profiles)
    extra: dict = {"gallery_size": size, "expected_fpir": min(1.0, size * DESIGN_FAR)} if identifying else {}
    if not size:
        why = "nobody is enrolled: run `idme enroll` first" if identifying else \
            f"no profile '{name}': enrol them with `idme enroll --name {name}`" if name else "no profile given"
        return Check(NOT_ENROLLED, None if identifying else name, None, None, speech_s, cond, why, **extra)
    need = max(options.min_speech_s, float(getattr(embedder, "min_input_s", 0.0)))
    if speech_s < need:
        what = "no speech" if speech_s == 0 else f"only {speech_s:.1f} s of speech"
        return Check(NOT_ENOUGH_SPEECH, None if identifying else profiles[0].name, None, None, speech_s, cond,
                     f"{what} in the audio (need {need:.1f} s): record a longer sample, speaking continuously",
                     **extra)
    emb = embedder.embed(speech)
    if not identifying:
        v = verify(profiles[0], emb, thresholds, session_narrowband=cond.narrowband)
        cos, sc, thr, cal = v.score, v.score, v.threshold, calibration is not None
        if cal:
            p = profiles[0]
            at = None if domain is None else domain.centre_for(calibration, p.name, p.centroid, p.narrowband)
            sc = calibrated_score(calibration, cos, speech_s, cond, p.narrowband,
                                  norm_stats(calibration, p.centroid, p.narrowband, at),
                                  norm_stats(calibration, emb, p.narrowband, at))
            thr = calibration.threshold
        ok = sc >= thr
        what = "calibrated score (LLR)" if cal else "score"
        why = "" if ok else f"{what} {sc:.2f} is below the threshold {thr:.2f}" + (f" (cosine {cos:.3f})" if cal else "")
        return Check(ACCEPT if ok else REJECT, profiles[0].name, sc, thr, speech_s, cond, why, cosine=cos,
                     calibrated=cal)
    if gallery is not None:
        hits = gallery.search(_unit(emb), top)
        nb_keys = frozenset(h.key for h in hits if h.narrowband)
        matches = identify_in(hits, thresholds, cond.narrowband)
    else:
        nb_keys = frozenset(p.name for p in profiles if p.narrowband)
        matches = identify(profiles, emb, thresholds, top=top, session_narrowband=cond.narrowband)
    if calibration is None:
        return _identified(matches, speech_s, cond, size)
    t_n = open_set_threshold(calibration.threshold, size)
    vecs: dict[str, np.ndarray] = {}
    if getattr(calibration, "norm", None) is not None:  # each candidate's voiceprint, for its AS-norm side
        if gallery is not None:
            if not hasattr(gallery, "vectors"):
                raise IdmeError(f"{type(gallery).__name__} cannot give back its voiceprints (no vectors()), which "
                                "the AS-normalised calibration needs for each candidate")
            vecs = gallery.vectors([m.name for m in matches])
        else:
            vecs = {p.name: p.centroid for p in profiles if p.name in {m.name for m in matches}}
        matches = [m for m in matches if m.name in vecs]  # a row removed since the search has no voice
        if not matches:
            return Check(REJECT, None, None, None, speech_s, cond, "no candidate's voiceprint could be read back "
                         "from the gallery (removed meanwhile?): try again", (), size, 0.0)
    if domain is None and getattr(getattr(calibration, "norm", None), "domain", False):
        domain = Domain(profiles) if gallery is None else \
            Domain.of_gallery(gallery) if hasattr(gallery, "domain") else None
    at = {m.name: None if domain is None or m.name not in vecs else
          domain.centre_for(calibration, m.name, vecs[m.name], m.name in nb_keys) for m in matches}
    llrs = [calibrated_score(calibration, m.score, speech_s, cond, m.name in nb_keys,
                             norm_stats(calibration, vecs.get(m.name), m.name in nb_keys, at[m.name]),
                             norm_stats(calibration, emb, m.name in nb_keys, at[m.name])) for m in matches]
    cal_matches = sorted((Match(m.name, llr, t_n, llr >= t_n, cosine=m.score) for m, llr in zip(matches, llrs)),
                         key=lambda m: -m.score)
    return _identified(cal_matches, speech_s, cond, size, calibration)


def _identified(matches: list[Match], speech_s: float, cond: AudioCondition, gallery_size: int,
                calibration=None) -> Check:
    """The identify Check from candidates (best first): the best-scoring profile if it passes its own bar,
    else nobody (the tracker's rule: a runner-up that passes a lower bar is not taken instead)."""
    best = matches[0]
    if calibration is None:
        fpir = min(1.0, gallery_size * DESIGN_FAR)
        note = open_set_note(gallery_size)
        extra: dict = {"cosine": best.score}
    else:
        fpir = min(1.0, gallery_size * calibration.far_at(best.threshold))
        note = (f"searched {gallery_size} profile(s): the bar rises with the gallery, LLR {calibration.threshold:.2f} "
                f"+ ln {gallery_size} = {best.threshold:.2f}, so someone not enrolled matches with a chance of "
                f"about {fpir:.2%} (gallery size x FAR at that bar)")
        extra = {"cosine": best.cosine, "calibrated": True, "base_threshold": calibration.threshold}
    if not best.accepted:
        top = best
        return Check(REJECT, None, top.score, top.threshold, speech_s, cond,
                     f"nobody enrolled matches (best: {top.name} at {top.score:.2f} < {top.threshold:.2f}); {note}",
                     tuple(matches), gallery_size, fpir, **extra)
    return Check(ACCEPT, best.name, best.score, best.threshold, speech_s, cond, note, tuple(matches),
                 gallery_size, fpir, **extra)
