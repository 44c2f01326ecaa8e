"""The local profile store: named voiceprints (the owner is the profile ``me``), tagged with their encoder.

Layout under the data store (``idme.paths.home_dir``), every directory 0700 and every file 0600 because
voiceprints are biometric data::

    profiles/<name>/profile.json     name, kind, encoder {name, version, dimension}, takes, timestamps
    profiles/<name>/embeddings.npy   float32 (n_takes, dimension), unit rows
    profiles/<name>/audio/*.wav      enrollment audio, only with ``idme enroll --keep-audio``
    profiles/.history/<name>/<time>/ the profile as it was before ``idme name`` or ``enroll --replace``
                                     changed it (``idme name --undo``); removed with the profile
    profiles/.history/undo/<session>.json  what ``idme name --undo SESSION`` reverts (no voice data)

Writes go to a temp file then ``os.replace`` so a crash never leaves a half-written profile.

Encryption at rest (issue 14): profile.json, embeddings.npy, kept audio and saved versions are AES-256-GCM
files under the home's data key (:mod:`idme.vault`), bound to ``idme/profile/<name>/meta`` and
``.../embeddings`` (kept takes: ``idme/profile/take-audio``). A plaintext file from an idme before that is read
as it is and encrypted when next written (or by ``idme.vault.migrate``). Only directory names (the profile
names) stay readable.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import ProfileError, StoreError

OWNER = "me"
#: Audio recorded at or below this rate carries no speech above 4 kHz (telephone band).
NARROWBAND_MAX_HZ = 8000
#: Longest profile name, in characters (it is a directory name: 64 CJK characters are 192 UTF-8 bytes,
#: well under the 255-byte file-name limit of common file systems).
MAX_NAME_CHARS = 64
#: Punctuation allowed inside a name besides letters, digits and combining marks.
_NAME_PUNCT = " ._-"
#: Where ``backup`` keeps earlier versions of profiles (not a valid profile name, so never listed).
HISTORY_DIR = ".history"


def _name_char_ok(ch: str, first: bool) -> bool:
    """Letters, digits and combining marks of any script (José, 李明, MÉO069); punctuation only inside."""
    cat = unicodedata.category(ch)
    if cat[0] in "LN" or (cat[0] == "M" and not first):
        return True
    return not first and ch in _NAME_PUNCT


@dataclass
class Profile:
    """One enrolled person. embeddings: float32 (n, dimension), unit rows, one per accepted take."""

    name: str
    encoder: dict
    embeddings: np.ndarray
    takes: list[dict] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    @property
    def kind(self) -> str:
        return "me" if self.name == OWNER else "enrolled"

    @property
    def display(self) -> str:
        """The label shown and emitted: "Me" for the owner, the name otherwise."""
        return "Me" if self.name == OWNER else self.name

    @property
    def narrowband(self) -> bool:
        """True when every take was recorded at telephone rate (<= 8 kHz)."""
        rates = [t.get("native_rate") for t in self.takes]
        return bool(rates) and all(r is not None and r <= NARROWBAND_MAX_HZ for r in rates)

    @property
    def centroid(self) -> np.ndarray:
        c = self.embeddings.mean(axis=0)
        return (c / max(float(np.linalg.norm(c)), 1e-12)).astype(np.float32)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "encoder": self.encoder, "n_takes": len(self.embeddings),
                "takes": self.takes, "created_at": self.created_at, "updated_at": self.updated_at}


def check_name(name: str) -> str:
    """Validates a profile name (used as a directory name); returns it stripped."""
    # NFC: "José" typed with a combining accent and with a precomposed é is one profile (one directory).
    name = unicodedata.normalize("NFC", name.strip())
    ok = 0 < len(name) <= MAX_NAME_CHARS and all(_name_char_ok(c, i == 0) for i, c in enumerate(name))
    if not ok:
        # Path separators, "..", control characters and leading dots never pass: a name is one directory.
        raise ProfileError(f"invalid profile name {name!r}: use letters (any alphabet), digits, space, '.', "
                           f"'_' or '-', starting with a letter or digit (at most {MAX_NAME_CHARS} characters)")
    if name.lower() == OWNER:
        name = OWNER  # "Me", "ME": all mean the owner
    if re.fullmatch(r"(?i)speaker \d+", name):
        raise ProfileError(f"{name!r} is reserved for unknown speakers; choose a person's name")
    return name


def _private_write(path: Path, data: bytes) -> None:
    """Writes ``data`` atomically with mode 0600 (temp file in the same directory, fsync, rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None


def _identity(name: str, what: str) -> str:
    """Associated data of a profile file (``idme.vault``): the record it is, so files cannot be swapped."""
    return f"idme/profile/{name}/{what}"


#: Associated data of kept enrollment audio (not name-bound: a rename moves the directory as it is).
TAKE_AUDIO_IDENTITY = "idme/profile/take-audio"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ProfileStore:
    """Named profiles on disk under ``home/profiles``."""

    def __init__(self, home: Path, *, vault=None) -> None:
        """vault: the ``idme.vault.Vault`` whose key encrypts the files (default: the home's own; a throwaway
        store such as ``eval meetings``' passes ``idme.vault.EphemeralVault()``). Unlocked on first use."""
        self.root = Path(home) / "profiles"
        self._vault = vault
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.root}: {exc.strerror}") from None

    @property
    def vault(self):
        """The key of this store; on first use in a process, plaintext files left by an idme from before
        encryption are encrypted (``idme.vault.migrate``: crash-safe, resumes after an interruption)."""
        if self._vault is None:
            from ..vault import migrate, vault_for

            vault = vault_for(self.root.parent)
            if not getattr(vault, "migrated", False):
                migrate(self.root.parent)
                vault.migrated = True
            self._vault = vault
        return self._vault

    def _dir(self, name: str) -> Path:
        # Validated here, for every operation: a name is a directory under profiles/ and nothing else
        # (``rm ..`` must never reach the data store itself).
        return self.root / check_name(name)

    def names(self) -> list[str]:
        """Profile names, the owner first."""
        names = sorted(p.name for p in self.root.iterdir() if (p / "profile.json").exists())
        return sorted(names, key=lambda n: (n != OWNER, n.lower()))

    def exists(self, name: str) -> bool:
        try:
            return (self._dir(name) / "profile.json").exists()
        except ProfileError:
            return False

    def get(self, name: str) -> Profile:
        d = self._dir(name)
        try:
            meta = json.loads(self.vault.read(d / "profile.json", _identity(d.name, "meta")))
            emb = np.load(io.BytesIO(self.vault.read(d / "embeddings.npy", _identity(d.name, "embeddings"))),
                          allow_pickle=False)
        except FileNotFoundError:
            hint = "enrol yourself with `idme enroll`" if name == OWNER else \
                f"enrol them with `idme enroll --name {name}`"
            raise ProfileError(f"no profile '{name}': {hint}") from None
        except (OSError, ValueError) as exc:
            raise ProfileError(f"profile '{name}' is unreadable ({exc}); remove it with "
                               f"`idme profiles rm {name}` and enrol again") from None
        return Profile(name=meta["name"], encoder=meta["encoder"], embeddings=emb.astype(np.float32),
                       takes=meta.get("takes", []), created_at=meta.get("created_at", ""),
                       updated_at=meta.get("updated_at", ""))

    def all(self) -> list[Profile]:
        return [self.get(n) for n in self.names()]

    def save(self, profile: Profile) -> None:
        d = self._dir(profile.name)
        # Sealed first: without a key (no passphrase) nothing, not even the directory, is created.
        emb = self.vault.seal(_npy_bytes(profile.embeddings.astype(np.float32)), _identity(d.name, "embeddings"))
        meta = {"name": profile.name, "kind": profile.kind, "encoder": profile.encoder,
                "takes": profile.takes, "created_at": profile.created_at or _now(), "updated_at": _now()}
        meta_blob = self.vault.seal(json.dumps(meta, indent=1).encode(), _identity(d.name, "meta"))
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_write(d / "embeddings.npy", emb)
        _private_write(d / "profile.json", meta_blob)

    def add(self, name: str, embeddings: np.ndarray, encoder: dict, takes: list[dict]) -> Profile:
        """Adds takes to ``name`` (creating it). Refuses to mix encoders in one profile."""
        name = check_name(name)
        if self.exists(name):
            prof = self.get(name)
            check_encoder(prof, encoder)
            prof.embeddings = np.vstack([prof.embeddings, embeddings]).astype(np.float32)
            prof.takes = prof.takes + takes
        else:
            prof = Profile(name=name, encoder=encoder, embeddings=np.asarray(embeddings, np.float32),
                           takes=takes, created_at=_now())
        self.save(prof)
        return prof

    def audio_dir(self, name: str) -> Path:
        d = self._dir(name) / "audio"
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def rename(self, old: str, new: str, force: bool = False) -> None:
        """Renames a profile. The owner (``me``) is neither renamed away nor replaced unless ``force``:
        without an owner, ``idme listen`` can no longer say which voice is yours."""
        new = check_name(new)
        if not self.exists(old):
            raise ProfileError(f"no profile '{old}'; see `idme profiles list`")
        if self.exists(new):
            raise ProfileError(f"a profile '{new}' already exists; remove it first or pick another name")
        if not force and OWNER in (check_name(old), new):
            raise ProfileError(f"'{OWNER}' is the owner's profile (you): renaming it to or from '{OWNER}' changes "
                               "who idme labels as Me; pass --force if that is what you want")
        prof = self.get(old)
        os.replace(self._dir(old), self._dir(new))
        prof.name = new
        self.save(prof)
        history = self.root / HISTORY_DIR / self._dir(old).name
        if history.is_dir():  # earlier versions follow the profile (and go with it on `rm`)
            os.replace(history, self.root / HISTORY_DIR / new)

    def remove(self, name: str, force: bool = False) -> None:
        """Deletes everything about ``name``: embeddings, metadata, kept audio, earlier versions.
        The owner's profile only with ``force``."""
        d = self._dir(name)
        if not d.exists():
            raise ProfileError(f"no profile '{name}'; see `idme profiles list`")
        if d.name == OWNER and not force:
            raise ProfileError(f"'{OWNER}' is your own voiceprint (the owner); pass --force to delete it")
        shutil.rmtree(d)
        shutil.rmtree(self.root / HISTORY_DIR / d.name, ignore_errors=True)

    def backup(self, name: str) -> Path | None:
        """Copies profile ``name`` (metadata and voiceprints) aside before a change, so it can be
        restored with ``restore``; returns the copy's directory (0700), or None when there is no profile."""
        d = self._dir(name)
        if not (d / "profile.json").exists():
            return None
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        dest = self.root / HISTORY_DIR / d.name / stamp
        dest.mkdir(mode=0o700, parents=True, exist_ok=False)
        for parent in (dest.parent, dest.parent.parent):
            os.chmod(parent, 0o700)
        for f in ("profile.json", "embeddings.npy"):
            _private_write(dest / f, (d / f).read_bytes())
        return dest

    def restore(self, name: str, backup: Path | None) -> None:
        """Puts back the version ``backup`` saved (None: the profile did not exist then, so it is removed).
        Kept audio is left as it is."""
        d = self._dir(name)
        if backup is None:
            for f in ("profile.json", "embeddings.npy"):
                (d / f).unlink(missing_ok=True)
            if d.exists() and not any(d.iterdir()):
                d.rmdir()
            return
        backup = Path(backup)
        if backup.parent.parent != self.root / HISTORY_DIR:
            raise ProfileError(f"{backup} is not a saved profile version of this store")
        if not (backup / "profile.json").is_file():
            raise ProfileError(f"the saved version of profile '{d.name}' is gone (the profile was deleted "
                               "since); nothing to restore")
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        from ..vault import MAGIC, parse_header

        for f, what in (("embeddings.npy", "embeddings"), ("profile.json", "meta")):
            blob = (backup / f).read_bytes()
            if blob.startswith(MAGIC) and parse_header(blob, backup / f)[1] != _identity(d.name, what):
                # re-bound to this name: the version is from before a rename (else restored byte for byte)
                blob = self.vault.seal(self.vault.open(blob, parse_header(blob, backup / f)[1], backup / f),
                                       _identity(d.name, what))
            _private_write(d / f, blob)


def check_encoder(profile: Profile, encoder: dict) -> None:
    """Raises ProfileError if ``profile`` was made by another encoder (or another version of it)."""
    pe = profile.encoder
    if pe.get("name") != encoder.get("name") or pe.get("version") != encoder.get("version"):
        who = "--name " + profile.name if profile.name != OWNER else ""
        raise ProfileError(
            f"profile '{profile.name}' was made with encoder {pe.get('name')} {pe.get('version')}, not "
            f"{encoder.get('name')} {encoder.get('version')}: re-enrol with `idme enroll {who}`".rstrip()
            + " (or `idme profiles reembed` if its audio was kept)")


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    b = io.BytesIO()
    np.save(b, arr, allow_pickle=False)
    return b.getvalue()
