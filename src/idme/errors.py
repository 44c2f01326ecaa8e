"""One exception family for idme. Only ``idme.cli`` turns these into messages and exit codes."""

from __future__ import annotations


class IdmeError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 1


class AudioError(IdmeError):
    """Audio input that cannot be read or used (missing file, not audio, bad device)."""


class ModelMissingError(IdmeError):
    """A model is not installed where it was looked for; the message names the path and the fix."""


class ProfileError(IdmeError):
    """Profile store problems: unknown profile, no owner enrolled, encoder mismatch."""


class EnrollmentError(IdmeError):
    """An enrollment take was rejected by the quality gate; the message says how to redo it."""


class SessionError(IdmeError):
    """Unknown session, unreadable journal."""


class StoreError(IdmeError):
    """The data directory cannot be created, read or written."""


class ExportError(IdmeError):
    """Transcript export problems: unknown format, unwritable output path."""


class DeviceError(AudioError):
    """No microphone, unknown or unsupported input device, or the device vanished."""


class ConfigError(IdmeError):
    """A settings value, config file or thresholds file that cannot be used; the message names where it is."""
