"""Encryption at rest (issue 14): one random 256-bit data key per idme home, wrapped by the OS keyring
and/or a passphrase, and AES-256-GCM for the files that hold voiceprints or personal data.

Key file ``<home>/keys.json`` (0600, written atomically)::

    {"version": 1, "key_id": "<16 hex>", "check": "<b64 HMAC-SHA256(key, 'idme/key-check')[:16]>",
     "wrappings": {"keyring":    {"service": "idme", "username": "<key_id>", "backend": "<class>"},
                   "passphrase": {"kdf": "argon2id", "memory_kib": 65536, "time_cost": 3, "parallelism": 1,
                                  "salt": b64, "nonce": b64, "wrapped": b64}},
     "previous": {... the same fields for the key being rotated away, only while a rotation runs ...}}

The data key itself never touches the disk unwrapped. The passphrase wrapping is AES-256-GCM under an
Argon2id key (RFC 9106; 64 MiB, t=3, p=1 is above the OWASP minimum of 19 MiB, t=2); a wrong passphrase
fails the GCM tag, so it is detected and nothing is overwritten. The keyring wrapping keeps the data key in
the OS keyring (Secret Service, macOS Keychain, Windows Credential Locker); on headless Linux ``keyring``
has only its ``fail`` backend, which counts as no keyring. When a passphrase is set the passphrase copy is
always kept beside the keyring one, so a keyring that changes or disappears never locks the user out.

Encrypted file layout (:func:`seal`)::

    b"IDMEENC1" | key_id (8 bytes) | nonce (12 bytes) | len(identity) (2 bytes, big-endian) | identity
    | AES-256-GCM ciphertext + 16-byte tag, associated data = everything before it

``identity`` names the record (``idme/profile/<dir>/embeddings``, ``<dir>`` the opaque profile directory): a file moved to another record's place
fails authentication instead of being read as that record. It is kept in the header so that rotation can
re-encrypt every file without knowing what each one is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import IdmeError

logger = logging.getLogger(__name__)

KEY_FILE = "keys.json"
MAGIC = b"IDMEENC1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_BYTES = 8
#: Argon2id defaults: 64 MiB, 3 passes, 1 lane (OWASP Password Storage Cheat Sheet lists m=19 MiB, t=2
#: as the minimum; RFC 9106 §4 suggests 64 MiB for memory-constrained settings).
ARGON2_MEMORY_KIB = 65536
ARGON2_TIME_COST = 3
ARGON2_PARALLELISM = 1
#: Test-only: when this variable is "1", new passphrase wrappings use m=1 MiB, t=1 (tests create hundreds
#: of homes). Never set it for real data: the key file records the weak parameters and `keys status` says so.
INSECURE_TEST_KDF_ENV = "IDME_INSECURE_TEST_KDF"
PASSPHRASE_ENV = "IDME_PASSPHRASE"
NEW_PASSPHRASE_ENV = "IDME_NEW_PASSPHRASE"
KEYRING_SERVICE = "idme"
_CHECK_LABEL = b"idme/key-check"
#: Label of the SQLCipher key of ``<home>/sessions.db`` (:func:`db_key`).
DB_KEY_LABEL = b"idme/sessions.db"
DB_FILE = "sessions.db"


class VaultError(IdmeError):
    """A data key that cannot be had (no keyring and no passphrase, wrong passphrase, damaged key file) or
    a file that does not decrypt; the message says what to do."""


# -- primitives -----------------------------------------------------------------------------------------

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"), validate=True)


def _check_value(key: bytes) -> str:
    return _b64(hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:16])


def db_key(data_key: bytes) -> bytes:
    """The raw 256-bit SQLCipher key of ``sessions.db``: HMAC-SHA256(data key, ``idme/sessions.db``), so the
    database key differs from the key that seals files (and learning one does not give the other)."""
    return hmac.new(data_key, DB_KEY_LABEL, hashlib.sha256).digest()


def _kdf(passphrase: str, salt: bytes, memory_kib: int, time_cost: int, parallelism: int) -> bytes:
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(passphrase.encode("utf-8"), salt, time_cost=time_cost, memory_cost=memory_kib,
                           parallelism=parallelism, hash_len=KEY_BYTES, type=Type.ID)


def _kdf_params() -> dict[str, int]:
    if os.environ.get(INSECURE_TEST_KDF_ENV) == "1":
        return {"memory_kib": 1024, "time_cost": 1, "parallelism": 1}
    return {"memory_kib": ARGON2_MEMORY_KIB, "time_cost": ARGON2_TIME_COST, "parallelism": ARGON2_PARALLELISM}


def _wrap_with_passphrase(key: bytes, key_id: str, passphrase: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    params = _kdf_params()
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(NONCE_BYTES)
    kek = _kdf(passphrase, salt, **params)
    wrapped = AESGCM(kek).encrypt(nonce, key, f"idme/key/{key_id}".encode())
    return {"kdf": "argon2id", **params, "salt": _b64(salt), "nonce": _b64(nonce), "wrapped": _b64(wrapped)}


def _unwrap_with_passphrase(w: dict[str, Any], key_id: str, passphrase: str) -> bytes | None:
    """The data key, or None when the passphrase is wrong (the GCM tag fails)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    kek = _kdf(passphrase, _unb64(w["salt"]), int(w["memory_kib"]), int(w["time_cost"]), int(w["parallelism"]))
    try:
        return AESGCM(kek).decrypt(_unb64(w["nonce"]), _unb64(w["wrapped"]), f"idme/key/{key_id}".encode())
    except InvalidTag:
        return None


# -- the OS keyring -------------------------------------------------------------------------------------

def keyring_backend() -> Any | None:
    """The usable OS keyring backend, or None (no ``keyring``, or only its ``fail``/null backends)."""
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return None
    try:
        kr = keyring.get_keyring()
    except Exception:  # a misconfigured backend must not stop idme: it counts as no keyring
        return None
    if isinstance(kr, fail.Keyring) or type(kr).__name__ in ("Keyring",) and "null" in type(kr).__module__:
        return None
    try:
        if getattr(kr, "priority", 1) <= 0:
            return None
    except Exception:
        return None
    return kr


def keyring_name() -> str:
    kr = keyring_backend()
    return "none" if kr is None else f"{type(kr).__module__}.{type(kr).__name__}"


def _keyring_get(username: str) -> bytes | None:
    kr = keyring_backend()
    if kr is None:
        return None
    try:
        raw = kr.get_password(KEYRING_SERVICE, username)
        return None if raw is None else _unb64(raw)
    except Exception as exc:  # a locked or broken keyring: fall back to the passphrase copy
        logger.warning("the OS keyring could not be read (%s); trying the passphrase", exc)
        return None


def _keyring_set(username: str, key: bytes) -> bool:
    kr = keyring_backend()
    if kr is None:
        return False
    try:
        kr.set_password(KEYRING_SERVICE, username, _b64(key))
        return True
    except Exception as exc:
        logger.warning("the OS keyring refused the key (%s); it is kept under the passphrase only", exc)
        return False


# -- passphrases ----------------------------------------------------------------------------------------

def _passphrase(env: str = PASSPHRASE_ENV, prompt: str = "idme passphrase: ", confirm: bool = False) -> str | None:
    """``$env``, else a prompt when stdin is a terminal, else None."""
    value = os.environ.get(env)
    if value:
        return value
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        first = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != first:
            raise VaultError("the two passphrases differ; nothing was changed")
        return first or None
    return None


_NO_KEY = ("no OS keyring is available and no passphrase was given: set IDME_PASSPHRASE (or run idme in a "
           "terminal to be asked) to protect the voiceprints in {home}")


# -- the key file ---------------------------------------------------------------------------------------

@dataclass
class KeyStatus:
    """What ``idme keys status`` reports."""

    home: str
    key_id: str
    wrappings: list[str]
    keyring_backend: str
    kdf: dict[str, Any] | None
    encrypted_files: int
    plaintext_files: int
    rotation_pending: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "key_id": self.key_id, "wrappings": self.wrappings,
                "keyring_backend": self.keyring_backend, "kdf": self.kdf, "encrypted_files": self.encrypted_files,
                "plaintext_files": self.plaintext_files, "rotation_pending": self.rotation_pending,
                "notes": self.notes}


#: Unwrapped keys of this process, by (key_id, check value): Argon2 runs once per key per process, also
#: for copies of one home (the server tests copy a home per test).
_CACHE: dict[tuple[str, str], bytes] = {}
_CACHE_LOCK = threading.Lock()


class Vault:
    """The data key of one idme home and the file encryption under it."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home)
        self.path = self.home / KEY_FILE
        self._lock = threading.RLock()

    # ---- the key file ----
    def _read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise VaultError(f"cannot read the key file {self.path}: {exc.strerror}") from None
        try:
            doc = json.loads(text)
            if doc.get("version") != 1:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            for entry in [doc] + ([doc["previous"]] if doc.get("previous") else []):
                _unb64(entry["check"])
                if not isinstance(entry["key_id"], str) or not isinstance(entry["wrappings"], dict):
                    raise ValueError("bad fields")
            return doc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VaultError(f"the key file {self.path} is damaged ({exc}); restore it from a backup "
                             "(nothing was changed)") from None

    def _write(self, doc: dict[str, Any]) -> None:
        from .._fs import atomic_write

        try:
            atomic_write(self.path, json.dumps(doc, indent=1), 0o600)
        except OSError as exc:
            raise VaultError(f"cannot write the key file {self.path}: {exc.strerror or exc}") from None

    @staticmethod
    def _entry(key: bytes, passphrase: str | None, keyring: bool) -> dict[str, Any]:
        key_id = secrets.token_hex(KEY_ID_BYTES)
        wrappings: dict[str, Any] = {}
        if keyring and _keyring_set(key_id, key):
            wrappings["keyring"] = {"service": KEYRING_SERVICE, "username": key_id, "backend": keyring_name()}
        if passphrase:
            wrappings["passphrase"] = _wrap_with_passphrase(key, key_id, passphrase)
        return {"key_id": key_id, "check": _check_value(key), "wrappings": wrappings}

    def _unwrap(self, entry: dict[str, Any], passphrase: str | None = None) -> bytes:
        """The data key of one key-file entry: from the cache, the keyring, or the passphrase."""
        cache_key = (entry["key_id"], entry["check"])
        with _CACHE_LOCK:
            if cache_key in _CACHE:
                return _CACHE[cache_key]
        w = entry["wrappings"]
        key = None
        if "keyring" in w:
            key = _keyring_get(w["keyring"].get("username", entry["key_id"]))
            if key is not None and _check_value(key) != entry["check"]:
                logger.warning("the OS keyring holds another key under %s; trying the passphrase", entry["key_id"])
                key = None
        if key is None and "passphrase" in w:
            phrase = passphrase or _passphrase()
            if not phrase:
                raise VaultError(_NO_KEY.format(home=self.home) if "keyring" not in w else
                                 f"the OS keyring has no idme key for {self.home} (backend changed?) and no "
                                 "passphrase was given: set IDME_PASSPHRASE to the passphrase you chose")
            key = _unwrap_with_passphrase(w["passphrase"], entry["key_id"], phrase)
            if key is None:
                raise VaultError(f"wrong passphrase for {self.home}: check IDME_PASSPHRASE (nothing was changed)")
        if key is None:
            raise VaultError(f"the OS keyring has no idme key for {self.home} and no passphrase copy exists; "
                             "restore the keyring entry (service 'idme', user "
                             f"{entry['key_id']}) or the data cannot be read")
        if _check_value(key) != entry["check"]:
            raise VaultError(f"the key file {self.path} is damaged (check value mismatch); restore it from a backup")
        with _CACHE_LOCK:
            _CACHE[cache_key] = key
        return key

    def keys(self, create: bool = True) -> dict[str, bytes]:
        """key_id -> data key, for the current key and (during a rotation) the previous one.
        Creates the key file on first use when ``create``."""
        with self._lock:
            doc = self._read()
            if doc is None:
                if not create:
                    raise VaultError(f"{self.home} has no key file yet")
                doc = self._create()
            out = {doc["key_id"]: self._unwrap(doc)}
            if doc.get("previous"):
                out[doc["previous"]["key_id"]] = self._unwrap(doc["previous"])
            return out

    def current(self) -> tuple[str, bytes]:
        """(key_id, data key) that new files are encrypted under."""
        with self._lock:
            keys = self.keys()
            doc = self._read()
            return doc["key_id"], keys[doc["key_id"]]

    def _create(self) -> dict[str, Any]:
        has_keyring = keyring_backend() is not None
        phrase = _passphrase(confirm=True)
        if not has_keyring and not phrase:
            raise VaultError(_NO_KEY.format(home=self.home))
        key = secrets.token_bytes(KEY_BYTES)
        entry = self._entry(key, phrase, has_keyring)
        if not entry["wrappings"]:
            raise VaultError(_NO_KEY.format(home=self.home))
        if "passphrase" not in entry["wrappings"]:
            logger.warning("the data key of %s is kept in the OS keyring only; set a recovery passphrase with "
                           "`idme keys set-passphrase`", self.home)
        doc = {"version": 1, **entry}
        try:
            self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise VaultError(f"cannot create {self.home}: {exc.strerror}") from None
        # Two processes may make a home's first key at once (two listeners on a new home): the key file is
        # written beside and hard-linked into place, which fails if it exists, so only one key wins and
        # the loser reads the winner's key instead of overwriting it.
        tmp = self.path.with_name(f"{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(doc, indent=1))
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                theirs = self._read()
                if theirs is not None:
                    return theirs
                raise
        except OSError as exc:
            raise VaultError(f"cannot write the key file {self.path}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        with _CACHE_LOCK:
            _CACHE[(entry["key_id"], entry["check"])] = key
        logger.info("new data key %s for %s (%s)", entry["key_id"], self.home, ", ".join(entry["wrappings"]))
        return doc

    def db_keys(self) -> list[bytes]:
        """SQLCipher keys of ``sessions.db`` (:func:`db_key`): the current key's first, then the previous one's
        while a rotation runs (the database may still be under it until :meth:`rotate` rekeys it)."""
        with self._lock:
            keys = self.keys()
            current, _ = self.current()
            return [db_key(keys[current])] + [db_key(k) for kid, k in keys.items() if kid != current]

    # ---- files ----
    def seal(self, data: bytes, identity: str) -> bytes:
        """``data`` encrypted under the current key, bound to ``identity`` (see the module doc)."""
        key_id, key = self.current()
        return seal(data, identity, key_id, key)

    def open(self, blob: bytes, identity: str, where: str | os.PathLike[str] = "data") -> bytes:
        """The plaintext of ``blob`` (from :meth:`seal`); VaultError if it is not ``identity`` or is damaged."""
        kid, ident, _ = parse_header(blob, where)
        if ident != identity:
            raise VaultError(f"{where} holds {ident!r}, not {identity!r} (moved or swapped?); restore it from a backup")
        keys = self.keys()
        if kid not in keys:
            raise VaultError(f"{where} is encrypted under key {kid}, which {self.path} does not hold; restore the "
                             "key file that goes with it")
        return unseal(blob, keys[kid], where)

    def write(self, path: str | os.PathLike[str], data: bytes, identity: str) -> Path:
        """Encrypts ``data`` and replaces ``path`` with it atomically (0600)."""
        from .._fs import atomic_write

        return atomic_write(path, self.seal(data, identity), 0o600)

    def read(self, path: str | os.PathLike[str], identity: str) -> bytes:
        """The plaintext of file ``path``: decrypted, or as it is when it is a plaintext file from before
        encryption (it is encrypted when next written, or by :func:`migrate`). FileNotFoundError passes."""
        blob = Path(path).read_bytes()
        if not blob.startswith(MAGIC):
            return blob
        return self.open(blob, identity, path)

    # ---- maintenance ----
    def encrypted_files(self) -> tuple[list[Path], list[Path]]:
        """(files under the home that are sealed, files that should be but are plaintext)."""
        sealed, plain = [], []
        for p in sorted(self.home.rglob("*")):
            if not p.is_file() or p.name == KEY_FILE or p.name.endswith(".tmp"):
                continue
            try:
                with p.open("rb") as fh:
                    head = fh.read(len(MAGIC))
            except OSError:
                continue
            if head == MAGIC:
                sealed.append(p)
            elif _should_be_sealed(p.relative_to(self.home)):
                plain.append(p)
        return sealed, plain

    def status(self) -> KeyStatus:
        doc = self._read()
        sealed, plain = self.encrypted_files() if self.home.is_dir() else ([], [])
        if doc is None:
            return KeyStatus(str(self.home), "", [], keyring_name(), None, len(sealed), len(plain), False,
                             ["no key yet: one is made the first time idme stores a voiceprint"])
        w = doc["wrappings"]
        kdf = {k: w["passphrase"][k] for k in ("kdf", "memory_kib", "time_cost", "parallelism")} \
            if "passphrase" in w else None
        notes = []
        if kdf and kdf["memory_kib"] < 19456:
            notes.append("the passphrase wrapping uses test-only Argon2 parameters: run `idme keys set-passphrase`")
        if "passphrase" not in w:
            notes.append("no recovery passphrase: if the keyring changes the data is lost; run `idme keys set-passphrase`")
        if doc.get("previous"):
            notes.append("a key rotation was interrupted: run `idme keys rotate` to finish it")
        if plain:
            notes.append(f"{len(plain)} file(s) are still plaintext; they are encrypted when next written")
        from ..session.sqlite import is_plaintext

        if is_plaintext(self.home / DB_FILE):
            notes.append(f"{DB_FILE} is still plaintext SQLite; it is encrypted the next time idme opens it")
        return KeyStatus(str(self.home), doc["key_id"], sorted(w), keyring_name(), kdf, len(sealed), len(plain),
                         bool(doc.get("previous")), notes)

    def set_passphrase(self, new: str | None = None) -> KeyStatus:
        """Adds or replaces the passphrase wrapping (``new``, else $IDME_NEW_PASSPHRASE, else a prompt)."""
        with self._lock:
            doc = self._read()
            keys = self.keys()  # unlocks with the old passphrase / keyring first; creates the key if none
            doc = self._read()
            phrase = new or _passphrase(NEW_PASSPHRASE_ENV, "new idme passphrase: ", confirm=True)
            if not phrase:
                raise VaultError("no new passphrase given: set IDME_NEW_PASSPHRASE or run in a terminal")
            for entry in [doc] + ([doc["previous"]] if doc.get("previous") else []):
                entry["wrappings"]["passphrase"] = _wrap_with_passphrase(keys[entry["key_id"]], entry["key_id"], phrase)
            self._write(doc)
            return self.status()

    def rotate(self, hook: Callable[[int, Path], None] | None = None) -> KeyStatus:
        """A new data key; every sealed file is re-encrypted under it, then the old key is dropped.

        Crash-safe: the key file first holds both keys ("previous" = the old one) and each file is replaced
        atomically, so an interrupted rotation leaves every file readable under one of the two keys; running
        ``rotate`` again finishes it (without making yet another key). hook(i, path): called after each file
        (tests use it to kill the process mid-rotation)."""
        from .._fs import HomeInUse, home_exclusive, process_lock

        # One rotation at a time per home, across processes too: two would each make a new key. And none
        # while a session records or a server runs on this home: their open sessions.db connections are
        # under the old key and would fail (or be lost) after the rekey.
        try:
            # process_lock before self._lock, the order every other path takes them in (a link-record edit,
            # identity.links, holds the home's lock and then unseals): the other order deadlocks two threads
            with process_lock(self.home), self._lock, home_exclusive(self.home):
                return self._rotate(hook)
        except HomeInUse:
            raise VaultError(f"{self.home} is in use (a session is recording, or `idme serve` runs on it): "
                             "stop it, then run `idme keys rotate` again (nothing was changed)") from None

    def _rotate(self, hook: Callable[[int, Path], None] | None) -> KeyStatus:
        keys = self.keys()
        doc = self._read()
        if not doc.get("previous"):
            phrase = None
            if "passphrase" in doc["wrappings"]:
                phrase = _passphrase()
                # The key may have come from the keyring or the cache: the passphrase given must be the
                # one set, or the new key would silently be wrapped under another one.
                if not phrase or _unwrap_with_passphrase(doc["wrappings"]["passphrase"], doc["key_id"],
                                                         phrase) is None:
                    raise VaultError(f"wrong or no passphrase for {self.home}: set IDME_PASSPHRASE to the "
                                     "passphrase of this home (nothing was changed)")
            key = secrets.token_bytes(KEY_BYTES)
            entry = self._entry(key, phrase, "keyring" in doc["wrappings"] or keyring_backend() is not None)
            if not entry["wrappings"]:
                raise VaultError(_NO_KEY.format(home=self.home))
            old = {k: doc[k] for k in ("key_id", "check", "wrappings")}
            doc = {"version": 1, **entry, "previous": old}
            self._write(doc)
            with _CACHE_LOCK:
                _CACHE[(entry["key_id"], entry["check"])] = key
            keys[entry["key_id"]] = key
        new_id = doc["key_id"]
        sealed, _ = self.encrypted_files()
        for i, path in enumerate(sealed):
            blob = path.read_bytes()
            kid, ident, _ = parse_header(blob, path)
            if kid != new_id:
                if kid not in keys:
                    raise VaultError(f"{path} is under key {kid}, which the key file does not hold; "
                                     "restore the key file that goes with it")
                from .._fs import atomic_write

                atomic_write(path, seal(unseal(blob, keys[kid], path), ident, new_id, keys[new_id]), 0o600)
            if hook is not None:
                hook(i, path)
        # The session database last: until it is rekeyed the key file keeps "previous" (the key it is
        # under), and PRAGMA rekey is one transaction, so a crash leaves it whole under one of the two.
        from ..session.sqlite import rekey

        rekey(self.home / DB_FILE, [db_key(k) for kid, k in keys.items() if kid != new_id], db_key(keys[new_id]))
        old_entry = doc.pop("previous")
        self._write(doc)
        if "keyring" in old_entry["wrappings"] and keyring_backend() is not None:
            try:
                keyring_backend().delete_password(KEYRING_SERVICE, old_entry["key_id"])
            except Exception:
                pass
        return self.status()


def record_identity(rel: Path) -> str | None:
    """The associated-data identity of a file at ``rel`` (relative to the home) that holds voiceprints or
    personal data, or None for a file that is not sealed. ``<dir>`` in ``idme/profile/<dir>/...`` is the
    profile's directory name (opaque since issue 14: ``identity.profiles.opaque_name``; the person's name
    before, renamed by ``identity.profiles.migrate_names``), so a file is bound to the directory it sits in
    and a header never names the person. The names are the ones the stores use
    (``identity.profiles._identity``, ``profiles.take_identity``, ``identity.replay.identity``,
    ``api.UNDO_IDENTITY``); :func:`migrate` encrypts plaintext files under them."""
    parts = Path(rel).parts
    if parts == ("manifest_state.json",):  # ``identity.manifest``: it names the people enrolled
        return "idme/manifest-state"
    if len(parts) < 3 or parts[0] != "profiles":
        return None
    if parts[1] == ".history":
        if len(parts) == 4 and parts[2] == "undo" and rel.suffix == ".json":
            return "idme/undo"
        # a saved version: .history/<dir>/<time>/<file> (``ProfileStore.backup``), bound like the live file
        if len(parts) in (4, 5) and parts[-1] in ("embeddings.npy", "profile.json"):
            return f"idme/profile/{parts[2]}/{'embeddings' if parts[-1] == 'embeddings.npy' else 'meta'}"
        return None
    if len(parts) == 3 and parts[2] == "embeddings.npy":
        return f"idme/profile/{parts[1]}/embeddings"
    if len(parts) == 3 and parts[2] == "profile.json":
        return f"idme/profile/{parts[1]}/meta"
    if len(parts) == 3 and parts[2] == "fingerprints.npz":
        return f"idme/profile/{parts[1]}/fingerprints"
    if len(parts) == 4 and parts[2] == "audio" and rel.suffix == ".wav":
        return f"idme/profile/{parts[1]}/take-audio"
    return None


def _should_be_sealed(rel: Path) -> bool:
    return record_identity(rel) is not None


def parse_header(blob: bytes, where: Any = "data") -> tuple[str, str, int]:
    """(key id hex, identity, offset of the ciphertext) of a sealed blob; VaultError when damaged."""
    n = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES + 2
    if len(blob) < n or not blob.startswith(MAGIC):
        raise VaultError(f"{where} is not an idme-encrypted file (damaged?); restore it from a backup")
    kid = blob[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].hex()
    ilen = int.from_bytes(blob[n - 2:n], "big")
    if len(blob) < n + ilen + 16:
        raise VaultError(f"{where} is truncated (damaged); restore it from a backup")
    try:
        ident = blob[n:n + ilen].decode("utf-8")
    except UnicodeDecodeError:
        raise VaultError(f"{where} has a damaged header; restore it from a backup") from None
    return kid, ident, n + ilen


def seal(data: bytes, identity: str, key_id: str, key: bytes) -> bytes:
    """``data`` as an idme-encrypted blob under ``key`` (AES-256-GCM, header as associated data)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    ident = identity.encode("utf-8")
    nonce = secrets.token_bytes(NONCE_BYTES)
    header = MAGIC + bytes.fromhex(key_id) + nonce + len(ident).to_bytes(2, "big") + ident
    return header + AESGCM(key).encrypt(nonce, bytes(data), header)


def unseal(blob: bytes, key: bytes, where: Any = "data") -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    _, _, off = parse_header(blob, where)
    nonce = blob[len(MAGIC) + KEY_ID_BYTES:len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[off:], blob[:off])
    except InvalidTag:
        raise VaultError(f"{where} does not decrypt (damaged or altered); restore it from a backup") from None


class EphemeralVault(Vault):
    """A random key that lives in this process only, for throwaway stores (``eval meetings``' temporary
    profiles): their files are encrypted, no key file is written and no passphrase is asked for."""

    def __init__(self) -> None:
        super().__init__(Path("(ephemeral)"))
        self._key_id, self._key = secrets.token_hex(KEY_ID_BYTES), secrets.token_bytes(KEY_BYTES)

    def keys(self, create: bool = True) -> dict[str, bytes]:
        return {self._key_id: self._key}

    def current(self) -> tuple[str, bytes]:
        return self._key_id, self._key


_VAULTS: dict[Path, Vault] = {}
_VAULTS_LOCK = threading.Lock()


def vault_for(home: str | os.PathLike[str]) -> Vault:
    """The Vault of ``home`` (one object per home per process)."""
    p = Path(home).expanduser().absolute()
    with _VAULTS_LOCK:
        v = _VAULTS.get(p)
        if v is None:
            v = _VAULTS[p] = Vault(p)
        return v


def migrate(home: str | os.PathLike[str], hook: Callable[[int, Path], None] | None = None) -> int:
    """Encrypts every plaintext file of ``home`` that should be sealed; returns how many.

    Crash-safe and resumable: each file is replaced by its encrypted copy with an atomic rename (the
    encrypted copy is written beside it and fsynced first), so ``kill -9`` leaves every file either the old
    plaintext or the new ciphertext, whole, and the next run encrypts the rest."""
    from .._fs import atomic_write, process_lock

    v = vault_for(home)
    if not v.encrypted_files()[1]:
        return 0
    # Two idme processes may start on the same plaintext home at once: without the lock both would seal,
    # and the slower one would read the other's ciphertext as "plaintext" and seal it a second time.
    with process_lock(Path(home)):
        _, plain = v.encrypted_files()  # again, under the lock: another process may have done it meanwhile
        if plain:
            logger.warning("encrypting %d plaintext file(s) of %s (voiceprints, kept audio)", len(plain), home)
        done = 0
        for i, path in enumerate(plain):
            data = path.read_bytes()
            if data.startswith(MAGIC):
                continue
            atomic_write(path, v.seal(data, identity_for(Path(home), path)), 0o600)
            done += 1
            if hook is not None:
                hook(i, path)
        return done


def identity_for(home: Path, path: Path) -> str:
    """The associated-data identity of a file under ``home``: :func:`record_identity` of its place, else
    ``idme/`` + its path relative to the home."""
    rel = Path(path).absolute().relative_to(Path(home).absolute())
    return record_identity(rel) or "idme/" + rel.as_posix()


__all__ = ["DB_KEY_LABEL", "KEY_FILE", "MAGIC", "db_key", "EphemeralVault", "KeyStatus", "Vault", "VaultError", "identity_for",
           "record_identity", "keyring_backend", "migrate",
           "parse_header", "seal", "unseal", "vault_for"]
