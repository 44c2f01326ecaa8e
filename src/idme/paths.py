"""Where idme keeps things: the private data store (profiles, sessions) and the models directory.

Precedence everywhere: explicit argument (a ``--home`` flag) > environment (``IDME_HOME``,
``IDME_MODELS_DIR``) > default.
"""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

from .errors import StoreError

#: Two levels above the package: the repository root when idme runs from a checkout (``src/idme``);
#: in a wheel install, site-packages' parent, which is no checkout (see :func:`checkout_root`).
_REPO_ROOT = Path(__file__).resolve().parents[2]


def checkout_root() -> Path | None:
    """The repository checkout idme runs from (an editable install or ``src`` on the path), else None.

    A wheel install has no ``scripts/``, ``models/`` or ``pyproject.toml`` next to it: it gets None.
    """
    package = Path(__file__).resolve().parent
    if package.parent.name == "src" and (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT
    return None


def home_dir(home: str | os.PathLike[str] | None = None, create: bool = True) -> Path:
    """The idme data store: ``home`` > ``$IDME_HOME`` > the platform's user data dir.

    Created with mode 0700 (voiceprints are biometric data). Raises StoreError with one line if it
    cannot be created or written.
    """
    raw = home or os.environ.get("IDME_HOME") or user_data_dir("idme", appauthor=False)
    path = Path(raw).expanduser()
    if create:
        ensure_writable_dir(path, "idme data directory", "set IDME_HOME or --home to a writable directory",
                            StoreError, mode=0o700)
    return path


def ensure_writable_dir(path: Path, what: str, fix: str, error: type[Exception] = StoreError,
                        mode: int = 0o777) -> None:
    """Creates ``path`` (and parents) if needed and checks it is writable; raises ``error`` with one line
    naming ``what`` it is and the ``fix`` otherwise."""
    try:
        path.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"cannot create the {what} {path}: {exc.strerror}; {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise error(f"the {what} {path} is not writable; {fix}")


def models_dir() -> Path:
    """Models directory: ``$IDME_MODELS_DIR`` > the checkout's ``models/`` > the user data dir's ``models/``.

    It holds downloaded models (Vosk, ECAPA) and any CAM++ installed to override the copy shipped
    inside the package (``idme/_models/campplus``, see :func:`idme.models.bundled_dir`).
    """
    env = os.environ.get("IDME_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    checkout = checkout_root()
    if checkout is not None:
        return checkout / "models"
    return Path(user_data_dir("idme", appauthor=False)) / "models"
