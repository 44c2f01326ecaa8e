"""The encrypted archive ``idme export-data`` writes: a gzipped tar of JSON, npy and wav files, sealed with
AES-256-GCM under a key derived from a passphrase with Argon2id (RFC 9106). docs/privacy-data.md has the
layout.

File::

    b"IDMEXPT1" | header length (4 bytes, big-endian) | header (UTF-8 JSON) | ciphertext + 16-byte GCM tag

The header holds only the cipher and KDF parameters (salt, nonce, memory, passes, lanes), never a name;
the associated data of the GCM seal is everything before the ciphertext, so a tampered header fails too.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import tarfile
from pathlib import Path, PurePosixPath

from ..errors import IdmeError

MAGIC = b"IDMEXPT1"
#: Argon2id at 64 MiB, 3 passes, 1 lane: above the OWASP minimum (19 MiB, t=2), RFC 9106's 64 MiB option.
MEMORY_KIB, TIME_COST, PARALLELISM = 65536, 3, 1
#: Refused when reading (a crafted header must not make us allocate gigabytes).
MAX_MEMORY_KIB = 4 * 1024 * 1024
MIN_PASSPHRASE_CHARS = 8


class ArchiveError(IdmeError):
    """An export archive that cannot be written or opened (wrong passphrase, damaged file)."""


def _kdf(passphrase: str, salt: bytes, memory_kib: int, time_cost: int, parallelism: int) -> bytes:
    from argon2.low_level import Type, hash_secret_raw

    return hash_secret_raw(passphrase.encode("utf-8"), salt, time_cost=time_cost, memory_cost=memory_kib,
                           parallelism=parallelism, hash_len=32, type=Type.ID)


def pack(files: dict[str, bytes]) -> bytes:
    """A gzipped tar of ``files`` (archive path -> content), in the given order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seal(plain: bytes, passphrase: str) -> bytes:
    """``plain`` encrypted under ``passphrase`` in the archive format above."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise ArchiveError(f"the export passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")
    salt, nonce = secrets.token_bytes(16), secrets.token_bytes(12)
    header = json.dumps({"format": "idme-export", "version": 1, "cipher": "AES-256-GCM", "content": "tar+gzip",
                         "kdf": {"name": "argon2id", "memory_kib": MEMORY_KIB, "time_cost": TIME_COST,
                                 "parallelism": PARALLELISM, "salt": base64.b64encode(salt).decode()},
                         "nonce": base64.b64encode(nonce).decode()}).encode()
    head = MAGIC + len(header).to_bytes(4, "big") + header
    key = _kdf(passphrase, salt, MEMORY_KIB, TIME_COST, PARALLELISM)
    return head + AESGCM(key).encrypt(nonce, plain, head)


def unseal(blob: bytes, passphrase: str, where: str = "archive") -> bytes:
    """The plaintext of a sealed archive; ArchiveError for a wrong passphrase or a damaged file."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ArchiveError(f"{where} is not an idme export archive")
    n = int.from_bytes(blob[8:12], "big")
    head, body = blob[:12 + n], blob[12 + n:]
    try:
        h = json.loads(head[12:])
        k = h["kdf"]
        if h.get("version") != 1 or k.get("name") != "argon2id" or h.get("cipher") != "AES-256-GCM":
            raise ValueError("unsupported version, cipher or KDF")
        mem, t, p = int(k["memory_kib"]), int(k["time_cost"]), int(k["parallelism"])
        if not (8 <= mem <= MAX_MEMORY_KIB and 1 <= t <= 64 and 1 <= p <= 64):
            raise ValueError("KDF parameters out of range")
        salt, nonce = base64.b64decode(k["salt"]), base64.b64decode(h["nonce"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"{where}: damaged archive header ({exc})") from None
    try:
        return AESGCM(_kdf(passphrase, salt, mem, t, p)).decrypt(nonce, body, head)
    except InvalidTag:
        raise ArchiveError(f"{where}: wrong passphrase, or the archive is damaged; nothing was written") from None


def write(path: str | os.PathLike[str], files: dict[str, bytes], passphrase: str) -> Path:
    """Seals ``files`` into ``path`` (0600, written to a temp file then renamed)."""
    from .._fs import atomic_write

    path = Path(path)
    atomic_write(path, seal(pack(files), passphrase), 0o600)
    return path


def open_archive(path: str | os.PathLike[str], to: str | os.PathLike[str], passphrase: str) -> list[Path]:
    """Decrypts ``path`` and unpacks it into directory ``to`` (created 0700); returns the files written.
    Member names are checked: nothing is written outside ``to``."""
    path, to = Path(path), Path(to)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ArchiveError(f"cannot read {path}: {exc.strerror or exc}") from None
    plain = unseal(blob, passphrase, str(path))
    to.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = []
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
        for m in tar.getmembers():
            rel = PurePosixPath(m.name)
            if not m.isfile() or rel.is_absolute() or ".." in rel.parts:
                raise ArchiveError(f"{path}: unexpected member {m.name!r}; not unpacked further")
            dest = to.joinpath(*rel.parts)
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(tar.extractfile(m).read())
            out.append(dest)
    return out
