"""Speaker-verification robustness of the bundled encoder: EER, minDCF and the error rates at the shipped
"me" threshold, on full utterances and with the test side shortened, band-limited or noisy.

Every utterance is read, resampled to 16 kHz and trimmed to its speech by idme's VAD (``speech_only``, the
same trim enrolment applies) on the *clean* signal; the degradation is applied to that speech. So these
numbers isolate the encoder; how the VAD copes with noise is part of the meeting measurements (meeting04 is
noisy). Each (utterance, variant) is embedded once and reused by every trial and condition that needs it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr

from idme.audio import TARGET_RATE_HZ, StreamResampler, read_audio
from idme.embed.base import Embedder
from idme.eval.metrics import rates_at, summarize
from idme.eval.trials import read_trials, split_scores
from idme.vad import speech_only

log = logging.getLogger(__name__)

#: Rate of the band-limited condition: telephone / Bluetooth-headset audio.
NARROWBAND_HZ = 8000
#: minDCF prior: one trial in a hundred is the claimed speaker (the NIST SRE / VoxSRC operating point).
P_TARGET = 0.01


@dataclass(frozen=True)
class Condition:
    """How a trial's audio is degraded. Only ``narrowband`` touches the enrolment side too."""

    name: str
    #: Test side: keep only the middle ``crop_s`` seconds of its speech (all of it when shorter).
    crop_s: float | None = None
    #: Both sides: down to 8 kHz and back up to 16 kHz, as idme's source converts an 8 kHz input.
    narrowband: bool = False
    #: Test side: add white Gaussian noise at this signal-to-noise ratio (dB, against the segment's power).
    snr_db: float | None = None

    def variant(self, side: str) -> tuple:
        """What is done to the ``side`` ("enroll" or "test") utterance: the cache key of its embedding."""
        if side == "enroll":
            return (None, self.narrowband, None)
        return (self.crop_s, self.narrowband, self.snr_db)


CONDITIONS: tuple[Condition, ...] = (
    Condition("full utterances"),
    Condition("test side 3 s", crop_s=3.0),
    Condition("test side 2 s", crop_s=2.0),
    Condition("test side 1 s", crop_s=1.0),
    Condition("8 kHz, both sides", narrowband=True),
    Condition("test side + white noise 20 dB", snr_db=20.0),
    Condition("test side + white noise 10 dB", snr_db=10.0),
)


@dataclass(frozen=True)
class Utterance:
    """One side of a trial: a file, or the first (0) or second (1) half of its speech."""

    path: Path
    half: int | None = None


@dataclass(frozen=True)
class Pair:
    enroll: Utterance
    test: Utterance
    target: bool


# --------------------------------------------------------------------------------------------- trial lists


def trial_list_pairs(trials_path: Path) -> list[Pair]:
    """A VoxCeleb-format list (``label a b``, paths relative to the list) as whole-file pairs."""
    return [Pair(Utterance(t.enroll), Utterance(t.test), t.target) for t in read_trials(trials_path)]


def half_pairs(files: Sequence[Path], n_nontarget: int, seed: int = 0) -> list[Pair]:
    """Trials from one utterance per speaker: first half vs second half of the same utterance = target;
    first half of speaker i vs second half of speaker j != i = non-target, ``n_nontarget`` of them drawn
    without replacement (seeded)."""
    n = len(files)
    targets = [Pair(Utterance(f, 0), Utterance(f, 1), True) for f in files]
    cross = [(i, j) for i in range(n) for j in range(n) if i != j]
    pick = np.random.default_rng(seed).choice(len(cross), size=min(n_nontarget, len(cross)), replace=False)
    return targets + [Pair(Utterance(files[cross[k][0]], 0), Utterance(files[cross[k][1]], 1), False)
                      for k in sorted(pick)]


# ------------------------------------------------------------------------------------------- degradations


def narrowband(x: np.ndarray) -> np.ndarray:
    """16 kHz -> 8 kHz (soxr HQ, anti-aliased) -> 16 kHz through idme's StreamResampler, as a source would."""
    low = soxr.resample(x, TARGET_RATE_HZ, NARROWBAND_HZ, quality="HQ").astype(np.float32)
    up = StreamResampler(NARROWBAND_HZ, TARGET_RATE_HZ)
    return np.concatenate([up.process(low), up.flush()])


def middle(x: np.ndarray, seconds: float) -> np.ndarray:
    """The middle ``seconds`` of ``x`` (all of it when shorter)."""
    n = int(round(seconds * TARGET_RATE_HZ))
    if len(x) <= n:
        return x
    start = (len(x) - n) // 2
    return x[start:start + n]


def add_white_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus white Gaussian noise whose power is ``snr_db`` below the mean power of ``x``."""
    power = float(np.mean(x.astype(np.float64) ** 2))
    noise = rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


class VariantEmbedder:
    """Embeds utterances under a condition's variant, each (utterance, variant) once."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._speech: dict[Utterance, np.ndarray] = {}
        self._embeddings: dict[tuple[Utterance, tuple], np.ndarray] = {}
        #: Seconds of audio each (utterance, variant) embedding saw.
        self.seconds: dict[tuple[Utterance, tuple], float] = {}
        #: Seconds spent embedding (fresh variants only) and how many were computed.
        self.embed_s = 0.0
        self.computed = 0
        #: Utterances whose VAD found too little speech, embedded from the whole signal instead.
        self.untrimmed: set[Path] = set()

    def speech(self, utt: Utterance) -> np.ndarray:
        """The clean speech of ``utt`` after VAD trimming (its half, for half utterances)."""
        if utt not in self._speech:
            whole = Utterance(utt.path)
            if whole not in self._speech:
                audio = read_audio(utt.path)
                speech = speech_only(audio)
                if len(speech) < 2 * self.embedder.min_input_s * TARGET_RATE_HZ:
                    self.untrimmed.add(utt.path)
                    speech = audio
                self._speech[whole] = speech
            if utt.half is not None:
                full = self._speech[whole]
                mid = len(full) // 2
                self._speech[utt] = full[:mid] if utt.half == 0 else full[mid:]
        return self._speech[utt]

    def degraded(self, utt: Utterance, variant: tuple) -> np.ndarray:
        """The speech of ``utt`` with ``variant`` = (crop_s, narrowband, snr_db) applied, in that order."""
        crop_s, band, snr_db = variant
        x = self.speech(utt)
        if band:
            x = narrowband(x)
        if crop_s is not None:
            x = middle(x, crop_s)
        if snr_db is not None:
            # Seeded per utterance and SNR: the same noise on every run, different noise per file.
            seed = zlib.crc32(f"{utt.path.name}|{utt.half}|{snr_db}".encode())
            x = add_white_noise(x, snr_db, np.random.default_rng(seed))
        return x

    def embed(self, utt: Utterance, variant: tuple) -> np.ndarray:
        key = (utt, variant)
        if key not in self._embeddings:
            x = self.degraded(utt, variant)
            t0 = time.perf_counter()
            self._embeddings[key] = self.embedder.embed(x)
            self.embed_s += time.perf_counter() - t0
            self.seconds[key] = len(x) / TARGET_RATE_HZ
            self.computed += 1
        return self._embeddings[key]


# ---------------------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class ConditionResult:
    """Verification metrics of one condition (rates are fractions)."""

    condition: str
    n_target: int
    n_nontarget: int
    eer: float
    eer_threshold: float
    min_dcf: float
    #: False acceptance / false rejection when accepting ``score >= threshold``.
    far_at_me: float
    frr_at_me: float
    #: The shipped threshold idme applies to this condition (``narrowband`` when both sides are 8 kHz).
    threshold: float
    #: Mean seconds of speech on the test side (shows what a crop actually left).
    test_speech_s: float
    #: Embeddings computed for this condition (reused ones not counted) and seconds spent on them.
    embedded: int
    embed_s: float

    def to_dict(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class RobustnessResult:
    """All conditions on one data set."""

    dataset: str
    description: str
    me_threshold: float
    conditions: list[ConditionResult] = field(default_factory=list)
    #: Files embedded without VAD trimming (the VAD found too little speech).
    untrimmed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "description": self.description, "me_threshold": self.me_threshold,
                "conditions": [c.to_dict() for c in self.conditions], "untrimmed": self.untrimmed}


def score_condition(pairs: Sequence[Pair], cond: Condition, enc: VariantEmbedder,
                    me_threshold: float) -> ConditionResult:
    """Cosine-scores every pair under ``cond``; EER, minDCF(P_TARGET) and FAR/FRR at ``me_threshold``."""
    before_n, before_s = enc.computed, enc.embed_s
    scores = np.array([float(enc.embed(p.enroll, cond.variant("enroll")) @ enc.embed(p.test, cond.variant("test")))
                       for p in pairs])
    labels = np.array([p.target for p in pairs])
    tgt, non = split_scores(scores, labels)
    summary = summarize(tgt, non, p_targets=(P_TARGET,))
    far, frr = rates_at(tgt, non, me_threshold)
    test_s = float(np.mean([enc.seconds[(u, cond.variant("test"))] for u in {p.test for p in pairs}]))
    return ConditionResult(cond.name, summary.n_target, summary.n_nontarget, summary.eer, summary.eer_threshold,
                           summary.min_dcf[P_TARGET][0], far, frr, me_threshold, test_s, enc.computed - before_n,
                           enc.embed_s - before_s)


def evaluate(dataset: str, description: str, pairs: Sequence[Pair], conditions: Sequence[Condition],
             embedder: Embedder, me_threshold: float, narrowband_threshold: float | None = None) -> RobustnessResult:
    """Scores ``pairs`` under every condition, each at the threshold idme would apply to it."""
    enc = VariantEmbedder(embedder)
    result = RobustnessResult(dataset, description, me_threshold)
    for cond in conditions:
        thr = narrowband_threshold if cond.narrowband and narrowband_threshold is not None else me_threshold
        res = score_condition(pairs, cond, enc, thr)
        result.conditions.append(res)
        log.info("%s, %s: EER %.2f%%, FAR %.2f%% / FRR %.2f%% at %.2f", dataset, cond.name, 100 * res.eer,
                 100 * res.far_at_me, 100 * res.frr_at_me, thr)
    result.untrimmed = sorted(str(p.name) for p in enc.untrimmed)
    return result
