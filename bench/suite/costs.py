"""One-off costs through the library API a user calls (``idme.api.Idme``): enrolling a person (3 takes of 5 s)
and verifying a 3 s utterance, model already loaded, in a home whose vault key already exists."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from idme.api import Idme
from idme.audio import read_audio
from idme.embed.base import Embedder
from idme.settings import resolve

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
    #: Milliseconds of the first enrolment into an empty home: it also creates the vault's key (Argon2id
    #: stretching of a passphrase or a random key file), paid once per home.
    first_enrol_ms: float
    #: How verification decided: "calibrated LLR" (the shipped quality-aware calibration, AS-norm included)
    #: or "cosine".
    verify_scoring: str
    #: What was enrolled and verified.
    enrol_source: str
    verify_source: str

    def to_dict(self) -> dict:
        def summary(xs: list[float]) -> dict:
            return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
                    "max": round(max(xs), 1), "n": len(xs)}

        return {"enrol_3x5s_ms": summary(self.enrol_ms), "verify_3s_ms": summary(self.verify_ms),
                "encoder_load_s": round(self.encoder_load_s, 3), "first_enrol_ms": round(self.first_enrol_ms, 1),
                "verify_scoring": self.verify_scoring, "enrol_source": self.enrol_source,
                "verify_source": self.verify_source}


def measure_costs(embedder: Embedder, encoder_load_s: float, take_paths: list[Path], other_paths: list[Path],
                  verify_path: Path, repeats: int) -> CostResult:
    """Times ``repeats`` calls of ``Idme.enroll`` and of ``Idme.verify`` in a home that holds the owner ("me",
    from ``take_paths``) and one other person (``other_paths``; none: the owner alone).

    Each enrolment re-enrols "me" from scratch with ``replace=True``: VAD trim, quality gate, embedding,
    consistency check, the check that the voice is not the other person's, a backup of the old version,
    encrypted save and replay fingerprints. Each verification scores the first VERIFY_S seconds of
    ``verify_path`` against "me": VAD trim, condition estimate, embedding, calibrated score, audit line.
    Audio is decoded to 16 kHz before the clock starts (decoding depends on the file format, not on idme)."""
    takes = [(p.name, read_audio(p, max_s=TAKE_S)) for p in take_paths]
    others = [(p.name, read_audio(p, max_s=TAKE_S)) for p in other_paths]
    test = read_audio(verify_path, max_s=VERIFY_S)
    with tempfile.TemporaryDirectory(prefix="idme-bench-") as home:
        idme = Idme(resolve(home, asr="none"), embedder=embedder)
        t0 = time.perf_counter()
        idme.enroll("other", others) if others else idme.enroll("me", takes)
        first_enrol_ms = 1000 * (time.perf_counter() - t0)
        enrol_ms = timed_ms(lambda: idme.enroll("me", takes, replace=True), repeats)
        verify_ms = timed_ms(lambda: idme.verify("me", test, sample_rate=16000), repeats)
        scoring = "calibrated LLR" if idme.calibration() is not None else "cosine"
    return CostResult(enrol_ms, verify_ms, encoder_load_s, first_enrol_ms, scoring,
                      enrol_source=", ".join(f"{p.parent.parent.name}/{p.name}" for p in take_paths),
                      verify_source=f"{verify_path.parent.name}/{verify_path.name}")
