"""One-off costs: enrolling a person (3 takes of 5 s) and verifying a 3 s utterance, model already loaded."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idme.audio import read_audio
from idme.embed.base import Embedder
from idme.identity.enroll import enroll
from idme.identity.profiles import ProfileStore
from idme.identity.thresholds import Thresholds
from idme.vad import speech_only

#: Length of each enrolment take and of the verification utterance, seconds (the brief's sizes).
TAKE_S = 5.0
VERIFY_S = 3.0


def timed_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn``, after one untimed warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return out


@dataclass(frozen=True)
class CostResult:
    """Enrolment and 1:1 verification times (ms, one value per repeat)."""

    enrol_ms: list[float]
    verify_ms: list[float]
    #: Seconds to create the CAM++ onnxruntime session (paid once per process).
    encoder_load_s: float
    #: What was enrolled and verified.
    enrol_source: str
    verify_source: str

    def to_dict(self) -> dict:
        def summary(xs: list[float]) -> dict:
            return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
                    "max": round(max(xs), 1), "n": len(xs)}

        return {"enrol_3x5s_ms": summary(self.enrol_ms), "verify_3s_ms": summary(self.verify_ms),
                "encoder_load_s": round(self.encoder_load_s, 3), "enrol_source": self.enrol_source,
                "verify_source": self.verify_source}


def enrol_once(embedder: Embedder, takes: list[tuple[str, np.ndarray]], thresholds: Thresholds) -> np.ndarray:
    """Enrols ``takes`` as "me" into a fresh store (VAD trim, quality gate, embedding, consistency check,
    atomic save); returns the profile's centroid."""
    with tempfile.TemporaryDirectory(prefix="idme-bench-") as home:
        profile, _ = enroll(ProfileStore(Path(home)), embedder, "me", takes, thresholds)
        return profile.centroid


def verify_once(embedder: Embedder, path: Path, voiceprint: np.ndarray) -> float:
    """1:1 verification of the first ``VERIFY_S`` seconds of ``path``: read, VAD trim, embed, cosine score."""
    speech = speech_only(read_audio(path, max_s=VERIFY_S))
    return float(embedder.embed(speech) @ voiceprint)


def measure_costs(embedder: Embedder, encoder_load_s: float, take_paths: list[Path], verify_path: Path,
                  thresholds: Thresholds, repeats: int) -> CostResult:
    """Times ``repeats`` enrolments of the takes (each cut to TAKE_S; reading them is not timed) and
    ``repeats`` verifications of ``verify_path`` against the enrolled voiceprint."""
    takes = [(p.name, read_audio(p, max_s=TAKE_S)) for p in take_paths]
    voiceprint = enrol_once(embedder, takes, thresholds)
    enrol_ms = timed_ms(lambda: enrol_once(embedder, takes, thresholds), repeats)
    verify_ms = timed_ms(lambda: verify_once(embedder, verify_path, voiceprint), repeats)
    return CostResult(enrol_ms, verify_ms, encoder_load_s,
                      enrol_source=", ".join(f"{p.parent.parent.name}/{p.name}" for p in take_paths),
                      verify_source=f"{verify_path.parent.name}/{verify_path.name}")
