"""Verification on trial lists, as the product scores it: embeddings, scores, EER/minDCF reports, calibration.

Every trial file goes through the enrollment audio path (``read_audio`` = decode + resample to 16 kHz mono,
then ``speech_only`` VAD trimming) and is scored with :func:`idme.identity.verify.score`, the function the
tracker and ``idme verify`` use, so calibrated thresholds mean the same thing everywhere.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and the encoder are only needed once something runs
    import numpy as np

    from ..embed.base import Embedder
    from ..identity.thresholds import Thresholds
    from ..vad import VadOptions
    from .trials import Trial

log = logging.getLogger(__name__)

#: minDCF operating points reported (NIST SRE p_target values; c_miss = c_fa = 1).
P_TARGETS: tuple[float, ...] = (0.01, 0.05)
#: The decision thresholds, in the order they are reported.
THRESHOLD_NAMES: tuple[str, ...] = ("me", "enrolled", "same_unknown", "merge", "change")
#: What moving each threshold trades (kept consistent with the README table).
TRADES: dict[str, str] = {
    "me": "higher: fewer false 'Me' (FAR down), more missed 'Me' (FRR up)",
    "enrolled": "same trade as me, for people enrolled by name",
    "same_unknown": "higher: one person split into duplicate 'Speaker N'; lower: different people merged",
    "merge": "higher: more duplicates survive re-clustering; lower: more merging",
    "change": "higher: more speaker-change splits inside a chunk; lower: fewer",
}


# -- the audio path of a verification trial ------------------------------------------------------------
@dataclass(frozen=True)
class EmbedRecipe:
    """How one audio file becomes one embedding for trial scoring: the enroll/listen audio path."""

    #: VAD that trims pauses (the pipeline's defaults unless given).
    vad: VadOptions
    #: Keep only the first this-many seconds of trimmed speech; None keeps the whole utterance.
    crop_s: float | None = None

    def describe(self) -> str:
        """The cache's ``pipeline`` string: anything that changes the embedding must appear here."""
        vad = json.dumps(asdict(self.vad), sort_keys=True)
        crop = "" if self.crop_s is None else f"|first {self.crop_s:g} s"
        return f"read_audio 16k mono|speech_only {vad}|empty->untrimmed{crop}"


def embed_file(path: Path, embedder: Embedder, recipe: EmbedRecipe) -> np.ndarray:
    """Embedding of one file, float32 (dim,): decoded + resampled to 16 kHz mono, VAD-trimmed, cropped.

    When trimming leaves nothing (a clip VAD misses entirely, e.g. very short or quiet), the untrimmed
    audio is embedded instead: a trial list must score every file it names.
    """
    from ..audio.frames import TARGET_RATE_HZ
    from ..audio.sources import read_audio
    from ..errors import AudioError
    from ..vad import speech_only

    audio = read_audio(path)
    if audio.size == 0:
        raise AudioError(f"{path}: the file holds no audio")
    speech = speech_only(audio, recipe.vad)
    if speech.size == 0:
        log.debug("%s: VAD found no speech; embedding the untrimmed audio", path)
        speech = audio
    if recipe.crop_s is not None:
        speech = speech[: int(round(recipe.crop_s * TARGET_RATE_HZ))]
    return embedder.embed(speech)



def trial_scores(trials: Sequence[Trial], embedder: Embedder, cache_dir: Path, vad: VadOptions,
                 test_crop_s: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(target, nontarget)`` cosine scores, float64, each distinct file embedded once and cached on disk.

    test_crop_s: when given, the test side of every trial keeps only its first ``test_crop_s`` seconds of
        speech while the enrollment side stays whole (a file on both sides is embedded both ways).
    """
    import numpy as np

    from ..errors import IdmeError
    from .trials import EmbeddingCache, score_trials, split_scores

    def cached(recipe: EmbedRecipe) -> tuple[EmbeddingCache, Callable[[Path], np.ndarray]]:
        cache = EmbeddingCache(cache_dir, embedder.name, embedder.version, recipe.describe())
        return cache, lambda p: embed_file(p, embedder, recipe)

    full_cache, full = cached(EmbedRecipe(vad))
    if test_crop_s is None:
        return split_scores(*score_trials(trials, full, full_cache, progress))

    crop_cache, crop = cached(EmbedRecipe(vad, test_crop_s))
    enroll_files = list(dict.fromkeys(t.enroll for t in trials))
    test_files = list(dict.fromkeys(t.test for t in trials))
    total = len(enroll_files) + len(test_files)

    def unit_rows(files: list[Path], cache: EmbeddingCache, fn: Callable[[Path], np.ndarray],
                  done0: int) -> dict[Path, np.ndarray]:
        rows = {}
        for i, f in enumerate(files):
            e = np.asarray(cache.get_or_compute(f, fn), dtype=np.float64)
            norm = float(np.linalg.norm(e))
            if not np.isfinite(norm) or norm == 0.0:
                raise IdmeError(f"embedding of {f} is zero or not finite; is the file silent or too short?")
            rows[f] = e / norm
            if progress is not None:
                progress(done0 + i + 1, total)
        return rows

    enr = unit_rows(enroll_files, full_cache, full, 0)
    tst = unit_rows(test_files, crop_cache, crop, len(enroll_files))
    from ..identity.verify import score

    scores = np.array([score(enr[t.enroll], tst[t.test]) for t in trials])
    labels = np.array([t.target for t in trials], dtype=bool)
    return split_scores(scores, labels)


def read_lists(lists: Sequence[Path]) -> list[Trial]:
    from .trials import read_trials

    out: list[Trial] = []
    for p in lists:
        out += read_trials(p)
    return out


def dcf_key(p_target: float) -> str:
    """JSON key of the minDCF at ``p_target``: 0.01 -> "min_dcf_001", 0.05 -> "min_dcf_005"."""
    return "min_dcf_" + f"{p_target:g}".replace(".", "")


def _finite(x: float) -> float | None:
    """JSON has no infinity: a threshold of +inf (reject everything) becomes None."""
    return None if math.isinf(x) else x


def verification_report(tgt: np.ndarray, non: np.ndarray, th: Thresholds) -> dict[str, Any]:
    """EER, minDCF at P_TARGETS, FAR/FRR at ``th.me`` and at every threshold of ``th``; rates are fractions."""
    from .metrics import rates_at, summarize

    m = summarize(tgt, non, P_TARGETS)
    far, frr = rates_at(tgt, non, th.me)
    out: dict[str, Any] = {"eer": m.eer, "eer_threshold": _finite(m.eer_threshold)}
    for p, (value, thr) in m.min_dcf.items():
        key = dcf_key(p)
        out[key] = value
        out[f"{key}_threshold"] = _finite(thr)
    out.update({"far": far, "frr": frr, "threshold": th.me, "n_target": m.n_target,
                "n_nontarget": m.n_nontarget, "operating_points": {}})
    for name in THRESHOLD_NAMES:
        t = getattr(th, name)
        fa, fr = rates_at(tgt, non, t)
        out["operating_points"][name] = {"threshold": t, "far": fa, "frr": fr}
    out["thresholds_source"] = th.source
    return out


def det_marks(th: Thresholds) -> dict[str, float]:
    """Threshold label -> value for the DET plot, names sharing a value drawn once ("me/enrolled/merge")."""
    by_value: dict[float, list[str]] = {}
    for name in THRESHOLD_NAMES:
        by_value.setdefault(getattr(th, name), []).append(name)
    return {"/".join(names): value for value, names in by_value.items()}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


# -- calibration -----------------------------------------------------------------------------------------


def ceil_to(x: float, digits: int = 4) -> float:
    """Rounds up, so a threshold with FAR <= target keeps it (raising a threshold never accepts more)."""
    q = 10.0 ** digits
    return math.ceil(x * q) / q



def score_lists(lists: Sequence[Path], embedder: Embedder, cache_dir: Path, test_seconds: float | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads trial lists and scores them with ``embedder`` (embeddings cached under ``cache_dir``):
    ``(target, non-target)`` scores. Shared by ``idme eval trials`` and ``idme eval calibrate``."""
    from ..vad import VadOptions

    return trial_scores(read_lists(lists), embedder, cache_dir, VadOptions(), test_crop_s=test_seconds,
                        progress=progress)


@dataclass
class Calibration:
    """The outcome of ``idme eval calibrate``: old and new thresholds and their rates on the trials."""

    old: Thresholds
    new: Thresholds
    far_target: float
    n_target: int
    n_nontarget: int
    #: "old"/"new" -> {"far", "frr"} at that ``me``.
    rates_at_me: dict[str, dict[str, float]]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"far_target": self.far_target, "n_target": self.n_target, "n_nontarget": self.n_nontarget,
                "old": asdict(self.old), "new": asdict(self.new), "rates_at_me": self.rates_at_me,
                "notes": self.notes}


def calibrate(tgt: np.ndarray, non: np.ndarray, old: Thresholds, base: Thresholds, far: float,
              described: str) -> Calibration:
    """Thresholds with ``me`` = ``enrolled`` at false-accept rate ``far`` on these scores; the others keep
    the shipped offsets from ``me`` (``base``). ``described`` names the trials in the new ``source``."""
    from ..errors import IdmeError
    from ..identity.thresholds import calibrated
    from .metrics import rates_at, threshold_at_far

    if not 0.0 < far < 1.0:
        raise IdmeError(f"the target FAR is a fraction strictly between 0 and 1 (0.01 = 1%), got {far:g}")
    me = ceil_to(threshold_at_far(non, far))
    source = (f"calibrated {_dt.date.today().isoformat()} at FAR {far:g} on {described} "
              f"({len(tgt)} target / {len(non)} non-target trials); same_unknown, merge, change and "
              "narrowband keep the shipped offsets from me")
    new = calibrated(old, base, me, source)
    notes = []
    if far * len(non) < 1:
        notes.append(f"only {len(non)} non-target trials: FAR {far:g} is below one false accept, so me sits "
                     "just above the highest non-target score; use a longer list")
    rates = {label: dict(zip(("far", "frr"), rates_at(tgt, non, t_.me))) for label, t_ in (("old", old), ("new", new))}
    return Calibration(old, new, far, int(len(tgt)), int(len(non)), rates, notes)
