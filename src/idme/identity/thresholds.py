"""Per-encoder decision thresholds: shipped defaults (measured, see comments) and the user's calibrated ones.

``idme eval calibrate`` writes ``<IDME_HOME>/thresholds.json``, one entry per encoder keyed
``"<name>@<version>"`` (calibrated numbers belong to one set of weights, as profiles do); the pipeline reads
that file first, then falls back to the defaults below. Every number here is a cosine similarity between unit
embeddings, so it lies in [-1, 1].
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

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

    def accept_for(self, owner: bool, profile_narrowband: bool = False, session_narrowband: bool = False) -> float:
        """The score a segment needs to be labelled as a profile: ``narrowband`` when both the profile's
        enrollment and the session are telephone-rate (and it is set), else ``me`` for the owner and
        ``enrolled`` for anyone else."""
        if profile_narrowband and session_narrowband and self.narrowband is not None:
            return self.narrowband
        return self.me if owner else self.enrolled


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


#: The cosine cut-offs (each a float in [-1, 1]; ``narrowband`` may be None); ``source`` is free text.
CUTOFFS = tuple(f.name for f in fields(Thresholds) if f.name != "source")


def _file(home: Path) -> Path:
    return Path(home) / "thresholds.json"


def entry_key(encoder: str, version: str | None = None) -> str:
    """The thresholds.json key of an encoder: ``"<name>@<version>"``, or the bare name without a version."""
    return f"{encoder}@{version}" if version else encoder


def _bad_cutoff(value: Any, nullable: bool) -> bool:
    if value is None:
        return not nullable
    # bool is an int subclass, and JSON's true/false are no thresholds; NaN fails the range test.
    return isinstance(value, bool) or not isinstance(value, (int, float)) or not -1.0 <= value <= 1.0


def _check_entry(where: str | Path, key: str, entry: Any) -> dict[str, Any]:
    """Validates one encoder's entry; returns it with the cut-offs as floats. Raises ConfigError whose message
    starts with ``where`` (the file)."""
    path = where
    fix = "fix or delete the file (`idme eval calibrate` writes it)"
    if not key:
        raise ConfigError(f"{path}: an empty encoder key; {fix}")
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: {key!r} must be an object of thresholds, got {type(entry).__name__}; {fix}")
    unknown = sorted(set(entry) - set(CUTOFFS) - {"source"})
    if unknown:
        raise ConfigError(f"{path}: {key!r} has unknown key(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(CUTOFFS)}, source); {fix}")
    out: dict[str, Any] = {}
    for name, value in entry.items():
        if name == "source":
            if not isinstance(value, str):
                raise ConfigError(f"{path}: {key!r}.source must be a string, got {value!r}; {fix}")
            out[name] = value
        elif _bad_cutoff(value, nullable=name == "narrowband"):
            raise ConfigError(f"{path}: {key!r}.{name} must be a number in [-1, 1], got {value!r} "
                              f"({type(value).__name__}); {fix}")
        else:
            out[name] = None if value is None else float(value)
    return out


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """Reads and validates a thresholds file: {encoder key: {cut-off: float, "source": str}}; {} if absent.

    Raises ConfigError, one line naming ``path`` and what is wrong: unreadable, not JSON, not an object, an
    unknown key, or a cut-off that is not a number in [-1, 1].
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ConfigError(f"{path} is not valid JSON ({msg}{where}); fix or delete the file "
                          "(`idme eval calibrate` writes it)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of encoder -> thresholds, got {type(data).__name__}; "
                          "fix or delete the file (`idme eval calibrate` writes it)")
    return {key: _check_entry(path, key, entry) for key, entry in data.items()}


def load(encoder: str, home: Path | None = None, version: str | None = None) -> Thresholds:
    """Thresholds for ``encoder``: the calibrated ones in ``home`` if any, else the shipped defaults.

    version: the encoder's weights version (``Embedder.version``). The entry ``"<encoder>@<version>"`` is used
    first; an entry under the bare name (written before entries carried a version) is used with a warning.
    Without ``version`` only the bare name is looked up. Raises ConfigError for a malformed file.
    """
    base = DEFAULTS.get(encoder) or DEFAULTS["campplus"]
    if home is None:
        return base
    path = _file(home)
    data = read_file(path)
    saved = data.get(entry_key(encoder, version)) if version else None
    if saved is None and encoder in data:
        saved = data[encoder]
        if version:
            log.warning("%s has no thresholds for %s; using the ones saved for %s without a weights version "
                        "(rerun `idme eval calibrate` to key them by version)", path, entry_key(encoder, version),
                        encoder)
    if saved is None:
        others = sorted(k for k in data if k.startswith(encoder + "@"))
        if others:
            log.warning("%s holds thresholds for %s, not %s: using the shipped defaults (rerun "
                        "`idme eval calibrate`)", path, ", ".join(others), entry_key(encoder, version))
        return base
    return replace(base, **saved)


def calibrated(old: Thresholds, base: Thresholds, me: float, source: str) -> Thresholds:
    """Thresholds moved to a measured ``me`` (= ``enrolled``).

    ``same_unknown``, ``merge``, ``change`` and ``narrowband`` keep the offsets from ``me`` that the shipped
    defaults ``base`` have (CAM++: +0.05, +0.00, -0.10, +0.20), so the relations tuned on meetings and on
    8 kHz trials survive a different score scale; a narrow-band bar left behind would sit below a raised
    ``me`` and accept telephone-rate voices more easily than wideband ones (review §1.5). Each value is
    rounded to 4 decimals and clipped to [-1, 1]. ``narrowband`` stays ``old``'s when ``base`` has none.
    """
    def clip(x: float) -> float:
        return float(min(1.0, max(-1.0, x)))

    moved = {n: clip(round(me + getattr(base, n) - base.me, 4)) for n in ("same_unknown", "merge", "change")}
    if base.narrowband is not None:
        moved["narrowband"] = clip(round(me + base.narrowband - base.me, 4))
    return replace(old, me=clip(me), enrolled=clip(me), source=source, **moved)


def save(encoder: str, values: Thresholds, home: Path, version: str | None = None) -> Path:
    """Writes calibrated thresholds for ``encoder`` into ``home/thresholds.json`` (atomic, 0600), under the key
    ``"<encoder>@<version>"`` (the bare name without ``version``); other entries are kept.

    Raises ConfigError if the existing file is malformed or ``values`` holds a cut-off outside [-1, 1].
    """
    path = _file(home)
    key = entry_key(encoder, version)
    entry = _check_entry(f"thresholds to save in {path}", key, asdict(values))
    data = read_file(path)
    data[key] = entry
    from .._fs import atomic_write

    return atomic_write(path, json.dumps(data, indent=1), mode=0o600)
