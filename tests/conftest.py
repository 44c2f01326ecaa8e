"""Shared fixtures: the real bundled CAM++ encoder and the example meeting shipped in examples/."""

from __future__ import annotations

from pathlib import Path

import os

import pytest

# Encryption at rest (issue 14): tests run headless with no stdin and no OS keyring, so every home's data key
# is wrapped by this passphrase; set in os.environ at import, so session-scoped fixtures and every `idme`
# subprocess see it too. The cheap Argon2 parameters are test-only (idme.vault.INSECURE_TEST_KDF_ENV): the
# suite creates hundreds of homes, and the default (64 MiB, t=3) costs ~0.3 s each.
os.environ.setdefault("IDME_PASSPHRASE", "idme test passphrase")
os.environ.setdefault("IDME_INSECURE_TEST_KDF", "1")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = Path(__file__).resolve().parent / "data"
OWNER_TAKES = [EXAMPLES / "enroll" / f"me_{i}.wav" for i in (1, 2, 3)]
#: Speaker 2414 of the example meeting; this utterance is not part of the meeting.
BOB_TAKE = DATA / "ls_2414_128291-0003.flac"


@pytest.fixture(scope="session")
def campplus():
    """The real bundled encoder (one onnxruntime session for the whole test run)."""
    from idme.embed.campplus import CampPlusEmbedder

    emb = CampPlusEmbedder()
    emb.load()
    return emb


@pytest.fixture(scope="session")
def example_meeting() -> Path:
    return EXAMPLES

#: The shared evaluation material sits beside the repository (../shared), in CI as here.
SHARED = Path(__file__).resolve().parents[2] / "shared"
SCORER = Path(__import__("os").environ.get("IDME_SCORER", SHARED / "tools" / "score_meeting.py"))


def _hypothesis_skips_lazy_modules() -> None:
    """Hypothesis scans every module in sys.modules for constants (``getattr(module, "__file__", None)``);
    SpeechBrain's lazy modules raise ImportError there (k2 is not installed), which aborts collection as an
    INTERNALERROR once both are imported. Mark them as already seen before each scan."""
    import sys

    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    scan = providers._get_local_constants

    def guarded():
        for module in list(sys.modules.values()):
            if type(module).__module__.startswith("speechbrain."):  # LazyModule and its subclasses
                providers._seen_modules.add(id(module))
        return scan()

    providers._get_local_constants = guarded


_hypothesis_skips_lazy_modules()


def profile_dir(home: Path, name: str) -> Path:
    """The directory of profile ``name`` under ``home`` (opaque, keyed by the home's sealed dirkey, issue 14)."""
    from idme.identity.profiles import ProfileStore

    return ProfileStore(Path(home)).profile_dir(name)


def profile_identity(home: Path, name: str, what: str = "meta") -> str:
    """The sealed-file identity of profile ``name``'s ``what`` ("meta" or "embeddings")."""
    return f"idme/profile/{profile_dir(home, name).name}/{what}"


def set_profile_encoder_version(home: Path, name: str, version: str) -> None:
    """Rewrites profile ``name``'s encoder version (profile.json is encrypted at rest, issue 14), as if
    another encoder had made it."""
    import json

    from idme.vault import vault_for

    path, identity = profile_dir(home, name) / "profile.json", profile_identity(home, name)
    meta = json.loads(vault_for(home).read(path, identity))
    meta["encoder"]["version"] = version
    vault_for(home).write(path, json.dumps(meta).encode(), identity)


def open_db(path: Path, home: Path | None = None, *, read_only: bool = False):
    """A bare ``sqlcipher3`` connection to a session store file (``sessions.db`` is SQLCipher-encrypted,
    issue 14) under the key of ``home`` (default: the file's directory): tests that look inside it."""
    import sqlcipher3

    from idme.vault import vault_for

    key = vault_for(home or Path(path).parent).db_keys()[0]
    target = f"file:{path}?mode=ro" if read_only else str(path)
    conn = sqlcipher3.connect(target, uri=read_only, isolation_level=None)
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    return conn


def decrypted_pages(path: Path, home: Path | None = None) -> bytes:
    """Every page of a SQLCipher file (``sessions.db``, or its ``-wal``: frames), decrypted as it lies on
    disk, free pages and stale log frames included: a scan of these bytes sees what a key holder would."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    from idme.vault import vault_for

    key = vault_for(home or Path(path).parent).db_keys()[0]
    data, page, reserve = Path(path).read_bytes(), 4096, 80  # SQLCipher 4 defaults: 16-byte IV + HMAC-SHA512
    if str(path).endswith("-wal"):
        frames = [(int.from_bytes(data[o:o + 4], "big"), data[o + 24:o + 24 + page])
                  for o in range(32, len(data) - 24 - page + 1, 24 + page)]
    elif str(path).endswith("-shm"):
        return b""  # the log index: page numbers and checksums, no page contents
    else:
        frames = [(i + 1, data[i * page:(i + 1) * page]) for i in range(len(data) // page)]
    out = []
    for number, pg in frames:
        iv, body = pg[page - reserve:page - reserve + 16], pg[16 if number == 1 else 0:page - reserve]
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out.append(dec.update(body) + dec.finalize())
    return b"".join(out)
