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
    #: Where these numbers come from (a measurement, or "calibrated <date> on <trials>").
    source: str = ""


#: Shipped defaults. CAM++ (campplus_cn_en_common): measured with scripts/measure_thresholds.py on
#: ../shared/data (see docs/thresholds.md for the run and the score distributions).
DEFAULTS: dict[str, Thresholds] = {
    "campplus": Thresholds(me=0.60, enrolled=0.60, same_unknown=0.55, merge=0.45, change=0.45,
                           source="defaults measured on ../shared/data (docs/thresholds.md)"),
    # ECAPA (speechbrain/spkrec-ecapa-voxceleb) could not be measured offline here; the values follow
    # SpeechBrain's own verification threshold (0.25) and must be recalibrated with `idme eval calibrate`.
    "ecapa": Thresholds(me=0.45, enrolled=0.45, same_unknown=0.40, merge=0.45, change=0.30,
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
