"""Per-encoder decision thresholds: shipped defaults (measured, see comments) and the user's calibrated ones.

``idme eval calibrate`` writes ``<IDME_HOME>/thresholds.json``; the pipeline reads that file first, then falls
back to the defaults below. Every number here is a cosine similarity between unit embeddings.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Thresholds:
    """What each cut-off decides (all cosine similarities)."""

    #: Accept a segment as the owner (Me) when its score against the owner's voiceprint reaches this.
    #: Raising it lowers false "Me" (FAR) and raises missed "Me" (FRR).
    me: float
    #: Accept a segment as a named profile. Same trade-off as ``me``.
    enrolled: float
    #: Join an existing unknown speaker (Not-Me index) instead of opening a new "Speaker N". Raising it
    #: splits people into duplicates; lowering it merges different people.
    same_unknown: float
    #: Re-clustering: merge two unknown clusters whose centroids are at least this similar.
    merge: float
    #: Speaker change inside a chunk: adjacent windows less similar than this mark a change.
    change: float
    #: ``me`` and ``enrolled`` when both the enrollment and the session are narrow-band (telephone rate,
    #: <= 8 kHz): band-limiting makes every voice score higher against every other. None: same as ``me``.
    narrowband: float | None = None
    #: Where these numbers come from (a measurement, or "calibrated <date> on <trials>").
    source: str = ""


#: Shipped defaults.
#: CAM++ (3D-Speaker campplus_cn_en_common), measured on ../shared/data (docs/thresholds.md has the runs):
#: * me / enrolled = 0.40: the non-target score at FAR 0.1% on librispeech-test-other/trials.txt
#:   (4,950 pairs, VAD-trimmed; `idme eval calibrate --far 0.001` gives 0.386 on whole utterances and
#:   0.401 with the test side cut to 1 s; FAR 1% would give 0.35). At 0.40: FAR 0.02%, FRR 0% on whole
#:   utterances; FAR 0.11%, FRR 4.2% with 1 s test sides.
#: * same_unknown = 0.45, merge = 0.40: chosen on meetings-dev + ami-excerpts (bench/run.py) among
#:   {0.40..0.55} x {0.40..0.50}: lowest pooled AMI DER (41.0%) with meetings-dev unchanged (DER 1.26%);
#:   merge is an average-linkage similarity, so it sits below the per-pair same_unknown.
#: * narrowband = 0.60: both sides of the test-other trials band-limited to 8 kHz raise non-target
#:   scores (at 0.40: FAR 12.2%); the score at FAR 0.1% there is 0.607, and 0.60 gives FAR 0.13%,
#:   FRR 0.67% (bench/run.py, robustness "8 kHz"). A 16 kHz enrollment against an 8 kHz session
#:   keeps ``me``: FAR 0.0%, FRR 3.8% at 0.40.
#: * change = 0.30: non-overlapping 1.5 s windows of one voice score >= 0.6 (p1 of 1 s crops vs a
#:   centroid is 0.40); two voices drop below 0.3 at the turn (tests/test_pipeline.py).
DEFAULTS: dict[str, Thresholds] = {
    "campplus": Thresholds(me=0.40, enrolled=0.40, same_unknown=0.45, merge=0.40, change=0.30, narrowband=0.60,
                           source="defaults measured on ../shared/data (docs/thresholds.md)"),
    # ECAPA (speechbrain/spkrec-ecapa-voxceleb) cannot be measured offline here (no weights): `me` is
    # SpeechBrain's own SpeakerRecognition.verify_files threshold (0.25); the others keep CAM++'s offsets
    # from `me`. Recalibrate with `idme eval calibrate --embedder ecapa` once the model is installed.
    "ecapa": Thresholds(me=0.25, enrolled=0.25, same_unknown=0.30, merge=0.25, change=0.15, narrowband=0.45,
                        source="uncalibrated defaults; run `idme eval calibrate --embedder ecapa`"),
}


def _file(home: Path) -> Path:
    return Path(home) / "thresholds.json"


def load(encoder: str, home: Path | None = None) -> Thresholds:
    """Thresholds for ``encoder``: the calibrated ones in ``home`` if any, else the shipped defaults."""
    base = DEFAULTS.get(encoder) or DEFAULTS["campplus"]
    if home is not None and _file(home).exists():
        try:
            saved = json.loads(_file(home).read_text()).get(encoder)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s (%s)", _file(home), exc)
            saved = None
        if saved:
            known = {f.name for f in fields(Thresholds)}
            return replace(base, **{k: v for k, v in saved.items() if k in known})
    return base


def save(encoder: str, values: Thresholds, home: Path) -> Path:
    """Writes calibrated thresholds for ``encoder`` into ``home/thresholds.json`` (atomic, 0600)."""
    path = _file(home)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[encoder] = asdict(values)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".tmp-")
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path
