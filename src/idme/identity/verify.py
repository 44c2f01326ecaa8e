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

    def to_dict(self) -> dict:
        return asdict(self)


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
