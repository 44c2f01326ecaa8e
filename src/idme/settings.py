"""Settings resolved in one place, for every face of idme (CLI, server, benchmark).

Precedence for each field: an explicit value (a flag) > the ``IDME_*`` environment variable > the config
file > the default. The config file is ``$IDME_CONFIG`` if set, else ``<home>/config.toml``; its keys are the
field names (``embedder = "ecapa"``). ``home`` itself comes from the flag, ``IDME_HOME`` or the platform's
user data dir (it cannot come from the file that lives inside it).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Speaker encoders and recognisers accepted by name (the modules behind them validate the rest).
EMBEDDERS = ("campplus", "ecapa")
ASR_CHOICES = ("auto", "moonshine", "vosk", "whisper", "none")
COMPUTE_CHOICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Settings:
    """What a session, an enrolment or an evaluation runs with."""

    #: The data store (profiles, sessions, calibrations); created 0700 on first use.
    home: Path
    #: Speaker encoder: ``campplus`` (bundled) or ``ecapa`` (the [ecapa] extra plus downloaded weights).
    embedder: str = "campplus"
    #: Where ECAPA runs: ``cpu`` or ``cuda`` (CAM++ is CPU only).
    compute: str = "cpu"
    #: Transcription: ``auto`` (the best installed recogniser), ``vosk``, ``whisper`` or ``none``.
    asr: str = "auto"
    #: A Vosk or Whisper model directory; None lets ``asr`` pick an installed one.
    asr_model: Path | None = None
    #: Where the config file values came from (for messages); None when no file was read.
    config_file: Path | None = None
    #: Retention (issue 14): sessions older than this many days are deleted (scrubbed) when a saved session
    #: starts and by ``idme sessions prune``; None keeps every session.
    retention_days: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"home": str(self.home), "embedder": self.embedder, "compute": self.compute, "asr": self.asr,
                "asr_model": None if self.asr_model is None else str(self.asr_model),
                "config_file": None if self.config_file is None else str(self.config_file),
                "retention_days": self.retention_days}


_ENV = {"embedder": "IDME_EMBEDDER", "compute": "IDME_COMPUTE", "asr": "IDME_ASR", "asr_model": "IDME_ASR_MODEL"}
_CHOICES = {"embedder": EMBEDDERS, "compute": COMPUTE_CHOICES, "asr": ASR_CHOICES}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    allowed = set(_ENV) | {"retention_days"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"the config file {path} has unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(allowed))}")
    for key, value in data.items():
        if key == "retention_days" and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        if not isinstance(value, str):
            raise ConfigError(f"the config file {path}: {key} must be a string, got {type(value).__name__}")
    return data


def _check(field: str, value: str, origin: str) -> str:
    choices = _CHOICES.get(field)
    if choices is not None and value not in choices:
        raise ConfigError(f"{origin}: unknown {field} {value!r}; choose one of {', '.join(choices)}")
    return value


def resolve(home: str | os.PathLike[str] | None = None, *, embedder: str | None = None,
            compute: str | None = None, asr: str | None = None,
            asr_model: str | os.PathLike[str] | None = None, create_home: bool = True,
            retention_days: float | None = None) -> Settings:
    """Settings from flags (the arguments; None = not given) > ``IDME_*`` > config file > defaults.

    Raises ConfigError (one line naming the origin of the bad value) for unknown choices or a broken file.
    """
    from .paths import home_dir

    home_path = home_dir(home, create=create_home)
    cfg_env = os.environ.get("IDME_CONFIG")
    cfg_path = Path(cfg_env).expanduser() if cfg_env else home_path / "config.toml"
    cfg = _read_config(cfg_path)
    flags = {"embedder": embedder, "compute": compute, "asr": asr,
             "asr_model": None if asr_model is None else str(asr_model)}
    values: dict[str, Any] = {}
    for field, flag in flags.items():
        env = os.environ.get(_ENV[field]) or None
        if flag is not None:
            value, origin = flag, f"--{field.replace('_', '-')}"
        elif env is not None:
            value, origin = env, f"${_ENV[field]}"
        elif field in cfg:
            value, origin = cfg[field], str(cfg_path)
        else:
            continue
        values[field] = _check(field, value, origin)
    if "asr_model" in values:
        values["asr_model"] = Path(values["asr_model"]).expanduser()
    days = _retention(retention_days, cfg, cfg_path)
    if days is not None:
        values["retention_days"] = days
    return Settings(home=home_path, config_file=cfg_path if cfg else None, **values)


def _retention(flag: float | None, cfg: dict[str, Any], cfg_path: Path) -> float | None:
    """retention_days from the flag > $IDME_RETENTION_DAYS > the config file; a positive number or None."""
    env = os.environ.get("IDME_RETENTION_DAYS") or None
    for value, origin in ((flag, "--retention-days"), (env, "$IDME_RETENTION_DAYS"),
                          (cfg.get("retention_days"), str(cfg_path))):
        if value is None:
            continue
        try:
            days = float(value)
        except (TypeError, ValueError):
            days = float("nan")
        if not days > 0 or days == float("inf"):
            raise ConfigError(f"{origin}: retention_days must be a positive number of days, got {value!r}")
        return days
    return None


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A copy with the given fields replaced (None values are ignored)."""
    names = {f.name for f in fields(Settings)}
    return replace(settings, **{k: v for k, v in changes.items() if v is not None and k in names})
