"""The models idme uses: registry, status, downloads and installs.

Nothing here touches the network at import or at run time: only :func:`download` (called by
``scripts/download_models.py`` and ``idme models download``) fetches anything, and only when asked.

CAM++, the default encoder, ships inside the package (``idme/_models/campplus``, package data), so a
wheel install needs no download; a copy installed under :func:`models_dir` overrides it. Downloaded
models (Vosk, ECAPA) live under :func:`models_dir` (``$IDME_MODELS_DIR``, a checkout's ``models/``, or
the user data directory).

The package is split by job; every name is re-exported here:

- :mod:`.registry`: specs, pins and validity checks (``SPECS``, ``get_spec``, ``check_*``, ``bundled_dir``);
- :mod:`.status`: where each model is and whether it is whole (``model_path``, ``installed``, ``require``);
- :mod:`.fetch`: HTTP downloads with Range resume and size/sha256 checks;
- :mod:`.archives`: safe unpacking of zip/tar/wheel archives;
- :mod:`.install`: atomic installs (``download``, ``install_from``, ``ensure_models``).
"""

from __future__ import annotations

from ..paths import models_dir
from .install import (DEFAULT_KEYS, InstallResult, download, ensure_models, install_from, parse_keys,
                      read_install_record)
from .registry import (BUNDLED_CAMPPLUS, CAMPPLUS_WHEEL, DOWNLOAD_CACHE, ECAPA_REVISION, INSTALL_RECORD,
                       INSTALL_SCRIPT, SPECS, ModelInstallError, ModelSpec, ProgressFn, RemoteFile, bundled_dir,
                       check_campplus, check_ecapa, check_vosk, check_whisper, get_spec, sha256_file)
from .status import ModelStatus, dir_size, installed, list_models, missing_message, model_path, require

__all__ = [
    "BUNDLED_CAMPPLUS", "CAMPPLUS_WHEEL", "DEFAULT_KEYS", "DOWNLOAD_CACHE", "ECAPA_REVISION", "INSTALL_RECORD",
    "INSTALL_SCRIPT", "SPECS", "InstallResult", "ModelInstallError", "ModelSpec", "ModelStatus", "ProgressFn",
    "RemoteFile", "bundled_dir", "check_campplus", "check_ecapa", "check_vosk", "check_whisper", "dir_size",
    "download", "ensure_models", "get_spec", "install_from", "installed", "list_models", "missing_message",
    "model_path", "models_dir", "parse_keys", "read_install_record", "require", "sha256_file",
]
