"""Enrollment: turn takes of one person's speech into a profile, behind a quality gate.

A take is rejected, with a message that says how to redo it, when it has too little net speech (after VAD
trimming), when it is clipped, or when its voice does not match the person's other takes (someone else
speaking, or heavy noise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..audio.frames import TARGET_RATE_HZ
from ..embed.base import Embedder
from ..errors import EnrollmentError
from ..vad import VadOptions, speech_only
from .profiles import NARROWBAND_MAX_HZ, OWNER, Profile, ProfileStore, check_encoder, check_name
from .thresholds import Thresholds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QualityGate:
    """What a take needs to be accepted."""

    #: Net speech after VAD trimming. CAM++ EER on LibriSpeech test-other is 0.89% with 1 s of test speech
    #: and 6.2% at 0.5 s (docs/thresholds.md); 1.5 s leaves margin and accepts a short spoken sentence.
    min_speech_s: float = 1.5
    #: Samples at or above this magnitude count as clipped (full scale is 1.0).
    clip_level: float = 0.999
    #: Largest share of clipped samples in the take's speech; 0.1% is a few clicks, more is distortion.
    max_clipped: float = 0.001


@dataclass(frozen=True)
class TakeReport:
    """Quality of one take: net speech (s), share of clipped samples, level (dBFS of speech)."""

    source: str
    speech_s: float
    clipped: float
    level_dbfs: float
    #: Sample rate the take was recorded at (before resampling to 16 kHz), if known.
    native_rate: int | None = None

    def to_dict(self) -> dict:
        return {"source": self.source, "speech_s": round(self.speech_s, 2), "clipped": round(self.clipped, 5),
                "level_dbfs": round(self.level_dbfs, 1), "native_rate": self.native_rate}


def check_take(samples: np.ndarray, source: str, gate: QualityGate = QualityGate(),
               vad: VadOptions = VadOptions(), native_rate: int | None = None) -> tuple[np.ndarray, TakeReport]:
    """Trims a take (16 kHz float32 (n,)) to its speech and checks it; raises EnrollmentError if unusable."""
    speech = speech_only(samples, vad)
    speech_s = len(speech) / TARGET_RATE_HZ
    clipped = float(np.mean(np.abs(speech) >= gate.clip_level)) if len(speech) else 0.0
    level = float(20 * np.log10(np.sqrt(np.mean(speech ** 2)) + 1e-10)) if len(speech) else -200.0
    rep = TakeReport(source, speech_s, clipped, level, native_rate)
    if speech_s < gate.min_speech_s:
        raise EnrollmentError(
            f"{source}: only {speech_s:.1f} s of speech (need {gate.min_speech_s:.1f} s); record again, "
            "speaking continuously, closer to the microphone")
    if clipped > gate.max_clipped:
        raise EnrollmentError(
            f"{source}: {100 * clipped:.1f}% of the speech is clipped (distorted); record again with the "
            "input level lower or further from the microphone")
    return speech, rep


def read_takes(paths: list) -> tuple[list[tuple[str, np.ndarray]], list[int]]:
    """Reads enrollment recordings: ([(path, 16 kHz float32 samples)], [native sample rate of each])."""
    from ..audio.sources import FileSource

    takes, rates = [], []
    for p in paths:
        with FileSource(p) as src:
            rates.append(src.native_rate)
            takes.append((str(p), np.concatenate([f.samples for f in src.frames()] or [np.zeros(0, np.float32)])))
    return takes, rates


def enroll(store: ProfileStore, embedder: Embedder, name: str, takes: list[tuple[str, np.ndarray]],
           thresholds: Thresholds, gate: QualityGate = QualityGate(),
           vad: VadOptions = VadOptions(),
           native_rates: list[int | None] | None = None) -> tuple[Profile, list[TakeReport]]:
    """Checks and embeds ``takes`` ([(source, 16 kHz float32 samples)]) and adds them to profile ``name``.

    native_rates: the rate each take was recorded at (marks telephone-rate profiles, see Thresholds).

    Every take must pass the gate and match the others (and the existing profile, when re-enrolling):
    its cosine with the mean of all the other takes must reach the bar a meeting segment must clear to be
    labelled as this person (``me`` for the owner, ``enrolled`` for others, ``narrowband`` for telephone-rate
    takes). Nothing is saved unless all takes pass.
    """
    name = check_name(name)
    if not takes:
        raise EnrollmentError("no enrollment audio given: pass --file or record with the microphone")
    encoder = {"name": embedder.name, "version": embedder.version, "dimension": embedder.dimension}
    existing = store.get(name) if store.exists(name) else None
    if existing is not None:
        check_encoder(existing, encoder)
    embs, reports = [], []
    rates = native_rates or [None] * len(takes)
    for (source, samples), rate in zip(takes, rates):
        speech, rep = check_take(samples, source, gate, vad, rate)
        embs.append(embedder.embed(speech))
        reports.append(rep)
    embs_a = np.stack(embs).astype(np.float32)
    pool = embs_a if existing is None else np.vstack([existing.embeddings, embs_a])
    narrow = bool(rates) and all(r is not None and r <= NARROWBAND_MAX_HZ for r in rates)
    bar = thresholds.me if name == OWNER else thresholds.enrolled
    if narrow and thresholds.narrowband is not None:
        bar = thresholds.narrowband
    if len(pool) >= 2:
        for i, rep in enumerate(reports):
            j = i + (0 if existing is None else len(existing.embeddings))
            others = np.delete(pool, j, axis=0).mean(axis=0)
            score = float(embs_a[i] @ (others / max(np.linalg.norm(others), 1e-12)))
            if score < bar:
                raise EnrollmentError(
                    f"{rep.source}: the voice does not match the other takes (similarity {score:.2f} < "
                    f"{bar:.2f}); make sure only {('you' if name == 'me' else name)} "
                    "speak(s) in every take, in a quiet room, and record it again")
    takes_meta = [r.to_dict() for r in reports]
    profile = store.add(name, embs_a, encoder, takes_meta)
    log.info("enrolled %d take(s) into profile %s (%d in all)", len(embs), name, len(profile.embeddings))
    return profile, reports
