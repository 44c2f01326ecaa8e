"""The local profile store: named voiceprints (the owner is the profile ``me``), tagged with their encoder.

Layout under the data store (``idme.paths.home_dir``), every directory 0700 and every file 0600 because
voiceprints are biometric data::

    profiles/.dirkey                 sealed random 256-bit key that names the profile directories
    profiles/<dir>/profile.json      name, kind, encoder {name, version, dimension}, takes, timestamps
    profiles/<dir>/embeddings.npy    float32 (n_takes, dimension), unit rows
    profiles/<dir>/audio/*.wav       enrollment audio, only with ``idme enroll --keep-audio``
    profiles/.history/<dir>/<time>/  the profile as it was before ``idme name`` or ``enroll --replace``
                                     changed it (``idme name --undo``); removed with the profile
    profiles/.history/undo/<session>.json  what ``idme name --undo SESSION`` reverts (no voice data)

``<dir>`` is opaque (issue 14: who is enrolled is personal data too): ``_`` + 32 hex digits of
HMAC-SHA256(dirkey, "idme/profile-dir" NUL NFC name). No valid name starts with ``_`` (:func:`check_name`),
so an opaque directory never collides with a name-named one from an idme before it, which is renamed to
its opaque name on first use (:func:`migrate_names`). Looking a name up needs no index; the name itself is
only inside the sealed profile.json, and :meth:`ProfileStore.names` decrypts those.

Writes go to a temp file then ``os.replace`` so a crash never leaves a half-written profile.

Encryption at rest (issue 14): profile.json, embeddings.npy, kept audio and saved versions are AES-256-GCM
files under the home's data key (:mod:`idme.vault`), bound to ``idme/profile/<name>/meta`` and
``.../embeddings`` (kept takes: ``.../take-audio``, fingerprints: ``.../fingerprints``). A plaintext file from an idme before that is read
as it is and encrypted when next written (or by ``idme.vault.migrate``). ``<name>`` in those identities
is the opaque directory name, so no file header names the person either.

Why a separate sealed dirkey, not HMAC(data key): the data key changes on ``idme keys rotate``, and every
directory would then have to be renamed in step with the re-encryption. The dirkey is one more sealed file,
which rotation re-encrypts like any other without changing it, so the directory names never move.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import secrets
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ProfileError, StoreError

log = logging.getLogger(__name__)

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
#: The sealed key naming profile directories (a leading dot: never a profile name, never listed).
DIRKEY_FILE = ".dirkey"
DIRKEY_IDENTITY = "idme/profile-dir-key"
_DIR_LABEL = b"idme/profile-dir\0"
#: Prefix of an opaque profile directory: no valid name starts with it (check_name: letter or digit first).
OPAQUE_PREFIX = "_"
#: Prefix of the re-sealed profile files a rename stages before it moves the directory.
_RENAMING = ".renaming-"
#: Where undo records live inside HISTORY_DIR (also a valid profile name: its old history dirs sat there).
UNDO_DIR = "undo"


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


#: Associated data of kept enrollment audio written before it was bound to its profile (issue 14); such a
#: file is re-sealed under :func:`take_identity` when its directory gets its opaque name (migrate_names).
LEGACY_TAKE_AUDIO_IDENTITY = "idme/profile/take-audio"


#: The replay fingerprints of a profile (``identity.replay.FingerprintStore``), in its directory.
FINGERPRINT_FILE = "fingerprints.npz"
#: ... and their associated data before it was bound to the profile (re-sealed by migrate_names).
LEGACY_FINGERPRINT_IDENTITY = "idme/profile/fingerprints"


def fingerprint_identity(dir_name: str) -> str:
    """Associated data of the fingerprint file of profile directory ``dir_name`` (a rename re-seals it):
    another profile's fingerprints copied over this one's do not decrypt."""
    return _identity(dir_name, "fingerprints")


def take_identity(dir_name: str) -> str:
    """Associated data of a kept enrollment take in profile directory ``dir_name``: a take moved into
    another profile's ``audio/`` does not decrypt as that profile's."""
    return _identity(dir_name, "take-audio")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ProfileStore:
    """Named profiles on disk under ``home/profiles``."""

    def __init__(self, home: Path, *, vault=None) -> None:
        """vault: the ``idme.vault.Vault`` whose key encrypts the files (default: the home's own; a throwaway
        store such as ``eval meetings``' passes ``idme.vault.EphemeralVault()``). Unlocked on first use."""
        self.root = Path(home) / "profiles"
        self._vault = vault
        #: Called with the names a change touched, after each save, rename, remove or restore (``idme.api``
        #: mirrors them into linked galleries, ``identity.links``); it must not raise.
        self.on_change: Callable[[tuple[str, ...]], Any] | None = None
        self._key_for_dirs: bytes | None = None
        self._names_checked = False
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

    # ---- directory names (opaque, issue 14) ----
    def _dirkey(self, create: bool = False) -> bytes | None:
        """The key naming directories, read once per store (None when there is none yet and not ``create``).
        The first time, name-named directories of an older idme are renamed (:func:`migrate_names`)."""
        if self._key_for_dirs is not None:
            return self._key_for_dirs
        path = self.root / DIRKEY_FILE
        if not self._names_checked:
            self._names_checked = True
            if _legacy_entries(self.root):
                migrate_names(self)
                return self._key_for_dirs
        if not path.exists():
            if any(p.name.startswith(OPAQUE_PREFIX) for p in self.root.iterdir()):
                raise StoreError(f"{path} is missing but {self.root} holds profiles named by it; restore it "
                                 "from a backup (nothing was changed)")
            if not create:
                return None
        from .._fs import atomic_write, process_lock

        vault = self.vault  # unlocked (and plaintext files sealed) before the lock is taken
        if not path.exists():
            with process_lock(self.root.parent):  # two processes must not make two different keys
                if not path.exists():
                    atomic_write(path, vault.seal(secrets.token_bytes(32), DIRKEY_IDENTITY), 0o600)
        try:
            key = vault.read(path, DIRKEY_IDENTITY)
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(key) != 32:
            raise StoreError(f"{path} is damaged; restore it from a backup")
        self._key_for_dirs = key
        return key

    def dir_name(self, name: str, create: bool = False) -> str | None:
        """The opaque directory name of profile ``name`` (None: no key yet, so no profile either)."""
        name = check_name(name)
        key = self._dirkey(create)
        if key is None:
            return None
        return opaque_name(key, name)

    def _dir(self, name: str, create: bool = False) -> Path:
        # Validated here, for every operation: a name is a directory under profiles/ and nothing else
        # (``rm ..`` must never reach the data store itself). Before any key exists there is no profile:
        # the path returned then is one that cannot exist.
        d = self.dir_name(name, create)
        return self.root / (d if d is not None else OPAQUE_PREFIX + "none")

    def profile_dir(self, name: str) -> Path:
        """The directory of profile ``name`` (it may not exist): kept audio, fingerprints, metadata."""
        return self._dir(name)

    def history_dir(self, name: str) -> Path:
        """Where earlier versions of ``name`` are kept (``backup``); it may not exist."""
        return self.root / HISTORY_DIR / self._dir(name).name

    def names(self) -> list[str]:
        """Profile names, the owner first (read from the sealed profile.json of each directory)."""
        return [n for n, _, _ in self._scan()]

    def _scan(self) -> list[tuple[str, dict, Path]]:
        """(name, metadata, directory) of every profile, the owner first: each directory's sealed profile.json."""
        if self._dirkey() is None:
            return []
        found = []
        for p in self.root.iterdir():
            if not p.name.startswith(OPAQUE_PREFIX):
                continue
            self._settle(p)
            if not (p / "profile.json").exists():
                continue
            try:
                meta = json.loads(self.vault.read(p / "profile.json", _identity(p.name, "meta")))
                name = check_name(meta["name"])
                meta["name"] = name
            except (OSError, ValueError, KeyError, TypeError, ProfileError) as exc:
                log.warning("skipping unreadable profile directory %s (%s)", p, exc)
                continue
            if opaque_name(self._key_for_dirs, name) != p.name:
                log.warning("skipping %s: it holds another directory's profile", p)
                continue
            found.append((name, meta, p))
        found.sort(key=lambda nm: nm[0])
        return sorted(found, key=lambda nm: (nm[0] != OWNER, nm[0].lower()))

    def exists(self, name: str) -> bool:
        try:
            return (self._dir(name) / "profile.json").exists()
        except ProfileError:
            return False

    def get(self, name: str) -> Profile:
        d = self._dir(name)
        self._settle(d)
        return self._load(name, d)

    def _load(self, name: str, d: Path, meta: dict | None = None) -> Profile:
        """Profile ``name`` from its directory ``d``; ``meta``: its profile.json already decrypted (``all``)."""
        try:
            if meta is None:
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
        return [self._load(n, d, meta) for n, meta, d in self._scan()]

    def state(self) -> tuple:
        """A cheap fingerprint of every profile on disk (directory, size and change time of its two files):
        equal fingerprints mean ``all()`` would read the same profiles, so a caller may keep what it derived
        from them. Reads no file (stat only)."""
        # os.scandir and plain strings, not pathlib: at 5,000 profiles pathlib's objects cost ~140 ms a call
        # here, scandir ~25 ms (bench/identify_store.py), and identify / verify take this on every request.
        out = []
        root = os.fspath(self.root)
        try:
            with os.scandir(root) as it:
                dirs = sorted(e.name for e in it if e.name.startswith(OPAQUE_PREFIX))
        except OSError:
            return ()
        for d in dirs:
            for f in ("profile.json", "embeddings.npy"):
                try:
                    st = os.stat(f"{root}/{d}/{f}")
                except OSError:
                    continue
                out.append((d, f, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        return tuple(out)

    def _changed(self, *names: str) -> Any:
        return None if self.on_change is None else self.on_change(tuple(names))

    def save(self, profile: Profile) -> None:
        d = self._dir(profile.name, create=True)
        self._write(profile, d, d.name)
        self._changed(profile.name)

    def _write(self, profile: Profile, d: Path, bound_to: str, prefix: str = "") -> None:
        """Seals ``profile`` for directory ``bound_to`` and writes it into ``d`` (file names + ``prefix``)."""
        # Sealed first: without a key (no passphrase) nothing, not even the directory, is created.
        emb = self.vault.seal(_npy_bytes(profile.embeddings.astype(np.float32)), _identity(bound_to, "embeddings"))
        meta = {"name": profile.name, "kind": profile.kind, "encoder": profile.encoder,
                "takes": profile.takes, "created_at": profile.created_at or _now(), "updated_at": _now()}
        meta_blob = self.vault.seal(json.dumps(meta, indent=1).encode(), _identity(bound_to, "meta"))
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private_write(d / (prefix + "embeddings.npy"), emb)
        _private_write(d / (prefix + "profile.json"), meta_blob)

    def _stage_bound(self, src: Path, bound_to: str) -> None:
        """Re-seals ``src``'s kept takes and fingerprints for directory ``bound_to`` beside them (prefix
        ``_RENAMING``), for ``rename``; profile.json is staged last by ``_write``, and marks the stage whole."""
        from ..vault import MAGIC, parse_header

        vault = self.vault
        files = sorted((src / "audio").glob("take_*.wav")) + [src / FINGERPRINT_FILE]
        for f in files:
            if not f.is_file():
                continue
            blob = f.read_bytes()
            if blob.startswith(MAGIC):
                what = "fingerprints" if f.name == FINGERPRINT_FILE else "take-audio"
                blob = vault.seal(vault.open(blob, parse_header(blob, f)[1], f), _identity(bound_to, what))
            _private_write(f.with_name(_RENAMING + f.name), blob)

    def _settle(self, d: Path) -> None:
        """Finishes (or undoes) a rename killed midway in directory ``d`` (see ``rename``)."""
        staged = [p for p in list(d.glob(_RENAMING + "*")) + list((d / "audio").glob(_RENAMING + "*"))
                  if p.is_file()]
        if not staged:
            return
        from ..vault import parse_header

        meta = d / (_RENAMING + "profile.json")
        moved = meta.exists() and parse_header(meta.read_bytes(), meta)[1] == _identity(d.name, "meta")
        # profile.json goes over last: while it is staged, a second kill still settles the same way
        for p in sorted(staged, key=lambda p: p == meta):
            if moved:  # the directory reached its new place: the new files go over the old
                os.replace(p, p.with_name(p.name[len(_RENAMING):]))
            else:  # killed before the move: the old profile is whole, the staged copies go
                p.unlink(missing_ok=True)

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
        """The kept-audio directory of ``name``, created (0700)."""
        d = self._dir(name, create=True) / "audio"
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
        # The directory moves to the new name's opaque name and every file is re-sealed there (its name
        # and its files' identities change, kept takes and fingerprints included: they are bound to it).
        # Crash-safe: the re-sealed files are staged beside the old ones, the directory moves with one
        # os.replace, then they go over the old ones. A kill -9 anywhere is settled on the next read
        # (``_settle``: finished when the directory moved, undone when it did not).
        src, dst = self._dir(old), self._dir(new)
        prof.name = new
        self._stage_bound(src, dst.name)
        self._write(prof, src, dst.name, prefix=_RENAMING)
        os.replace(src, dst)
        self._settle(dst)
        history = self.history_dir(old)
        if history.is_dir():  # earlier versions follow the profile (and go with it on `rm`)
            os.replace(history, self.history_dir(new))
        self._changed(check_name(old), new)

    def remove(self, name: str, force: bool = False) -> Any:
        """Deletes everything about ``name``: embeddings, metadata, kept audio, earlier versions.
        The owner's profile only with ``force``. Returns what ``on_change`` returned (``idme.api``: the rows
        deleted from linked galleries, by name), or None."""
        d = self._dir(name)
        if not d.exists():
            raise ProfileError(f"no profile '{name}'; see `idme profiles list`")
        if check_name(name) == OWNER and not force:
            raise ProfileError(f"'{OWNER}' is your own voiceprint (the owner); pass --force to delete it")
        shutil.rmtree(d)
        shutil.rmtree(self.root / HISTORY_DIR / d.name, ignore_errors=True)
        return self._changed(check_name(name))

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
        d = self._dir(name, create=backup is not None)
        if backup is None:
            for f in ("profile.json", "embeddings.npy"):
                (d / f).unlink(missing_ok=True)
            if d.exists() and not any(d.iterdir()):
                d.rmdir()
            self._changed(check_name(name))
            return
        backup = Path(backup)
        if backup.parent.parent != self.root / HISTORY_DIR:
            raise ProfileError(f"{backup} is not a saved profile version of this store")
        if not (backup / "profile.json").is_file():
            raise ProfileError(f"the saved version of profile '{check_name(name)}' is gone (the profile was deleted "
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
        self._changed(check_name(name))


def opaque_name(dirkey: bytes, name: str) -> str:
    """The directory name of profile ``name`` (already ``check_name``-ed): ``_`` + 128 bits of HMAC-SHA256."""
    mac = hmac.new(dirkey, _DIR_LABEL + name.encode("utf-8"), hashlib.sha256).hexdigest()
    return OPAQUE_PREFIX + mac[:32]


def _legacy_entries(root: Path) -> list[Path]:
    """Directories named after a person that an idme before opaque names left: ``profiles/<name>/``,
    ``profiles/.history/<name>/`` and (a profile named "undo") ``profiles/.history/undo/<time>/``."""
    out: list[Path] = []
    try:
        out += [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", OPAQUE_PREFIX))]
        hist = root / HISTORY_DIR
        if hist.is_dir():
            out += [p for p in hist.iterdir()
                    if p.is_dir() and not p.name.startswith((".", OPAQUE_PREFIX)) and p.name != UNDO_DIR]
            if (hist / UNDO_DIR).is_dir():
                out += [p for p in (hist / UNDO_DIR).iterdir() if p.is_dir()]
    except FileNotFoundError:
        pass
    return sorted(out)


def migrate_names(store: "ProfileStore", hook=None) -> int:
    """Renames the name-named directories of an older idme to their opaque names; returns how many moved.

    Crash-safe and resumable (under the home's inter-process lock, as ``idme.vault.migrate``): first each
    sealed file inside is re-sealed, atomically, to the identity of its new place (``idme/profile/<dir>/...``),
    then the directory is moved with one ``os.replace``. ``kill -9`` leaves either the directory under its
    old name (some files already re-sealed, which a rerun skips) or under its new one, whole.
    hook(i, path): called after each step (tests kill the process there)."""
    from .._fs import atomic_write, fsync_dir, process_lock
    from ..vault import MAGIC, parse_header

    vault = store.vault  # plaintext files are sealed first (idme.vault.migrate), under their old identities
    moved = step = 0
    with process_lock(store.root.parent):
        store._names_checked = True  # this is that check: _dirkey must not start another migration
        key = store._dirkey(create=True)
        entries = _legacy_entries(store.root)
        if entries:
            log.warning("renaming %d profile director(y/ies) of %s to opaque names", len(entries), store.root)
        for src in entries:
            undo_stamp = src.parent.name == UNDO_DIR and src.parent.parent.name == HISTORY_DIR
            raw = UNDO_DIR if undo_stamp else src.name
            try:
                name = check_name(raw)
            except ProfileError:
                log.warning("leaving %s as it is: not a profile name", src)
                continue
            opaque = opaque_name(key, name)
            old_prefix, new_prefix = f"idme/profile/{raw}/", f"idme/profile/{opaque}/"
            for f in sorted(src.rglob("*")):
                if not f.is_file() or f.name.startswith("."):
                    continue
                blob = f.read_bytes()
                if not blob.startswith(MAGIC):
                    continue
                ident = parse_header(blob, f)[1]
                bound = None
                if ident.startswith(old_prefix):
                    bound = new_prefix + ident[len(old_prefix):]
                elif ident in (LEGACY_TAKE_AUDIO_IDENTITY, LEGACY_FINGERPRINT_IDENTITY) and src.parent == store.root:
                    bound = new_prefix + ident.rsplit("/", 1)[1]  # bound to the profile from now on
                if bound is not None:
                    atomic_write(f, vault.seal(vault.open(blob, ident, f), bound))
                    step += 1
                    if hook is not None:
                        hook(step, f)
            if undo_stamp:
                dst = store.root / HISTORY_DIR / opaque / src.name
            elif src.parent == store.root:
                dst = store.root / opaque
            else:
                dst = store.root / HISTORY_DIR / opaque
            dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if dst.exists() and src.parent != store.root:
                # history already under the opaque name: the saved versions move one by one
                for child in sorted(src.iterdir()):
                    os.replace(child, dst / child.name)
                src.rmdir()
            elif dst.exists():
                log.warning("leaving %s as it is: profile %r exists under its opaque name too", src, name)
                continue
            else:
                os.replace(src, dst)
            fsync_dir(src.parent)
            fsync_dir(dst.parent)
            moved += 1
            step += 1
            if hook is not None:
                hook(step, dst)
    return moved


def same_encoder(a: dict, b: dict) -> bool:
    """Do encoder records ``a`` and ``b`` (``Embedder.info()``) name one encoder, same name and version?
    Only then are their voiceprints comparable (CAM++ and ECAPA are both 192-d)."""
    return a.get("name") == b.get("name") and a.get("version") == b.get("version")


def check_encoder(profile: Profile, encoder: dict) -> None:
    """Raises ProfileError if ``profile`` was made by another encoder (or another version of it)."""
    pe = profile.encoder
    if not same_encoder(pe, encoder):
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
