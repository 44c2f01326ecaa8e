"""Encryption at rest (issue 14): what it costs at start-up and per write.

1. Unlocking the data key: Argon2id at the default parameters (64 MiB, t=3, p=1), once per process.
2. Loading voiceprints the way idme loads them: ``ProfileStore.all()`` reads one encrypted profile.json and one
   encrypted embeddings.npy per profile (AES-256-GCM, decrypted on load), against the same store in plaintext.
   Measured on N profiles of 192-d float32 (synthetic unit vectors, 1 take each) for N = 1k and 10k; 1M is
   extrapolated per profile from the 10k run (a million profile directories is two million files).
   The decryption alone is also measured on one 1M x 192 float32 blob (768 MB), the size a single gallery file
   of a million voiceprints would have.
3. Session writes: what SQLCipher would add per event commit (WAL, synchronous=NORMAL) against plain sqlite3,
   measured with sqlcipher3 directly (the session store itself is not on SQLCipher yet).

Run: ``nice -n 10 .venv/bin/python bench/vault.py [--profiles 10000] [--events 2000]``. Prints one line per
figure; times are wall-clock on whatever else the machine is running.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np


def _store(home: Path, n: int, encrypted: bool):
    from idme.identity.profiles import Profile, ProfileStore
    from idme.vault import EphemeralVault

    class Plain(EphemeralVault):
        """Writes and reads files as they are (the store before issue 14)."""

        def seal(self, data, identity):
            return data

        def read(self, path, identity):
            return Path(path).read_bytes()

    store = ProfileStore(home, vault=EphemeralVault() if encrypted else Plain())
    rng = np.random.default_rng(0)
    enc = {"name": "campplus", "version": "bench", "dimension": 192}
    for i in range(n):
        e = rng.standard_normal((1, 192)).astype(np.float32)
        store.save(Profile(f"p{i:07d}", enc, e / np.linalg.norm(e), [{"source": "bench"}]))
    return store


def bench_profiles(n: int) -> None:
    for encrypted in (False, True, False, True):  # twice each: the first runs also warm the page cache
        with tempfile.TemporaryDirectory(prefix="idme-bench-vault-") as tmp:
            store = _store(Path(tmp), n, encrypted)
            os.sync()
            t = time.perf_counter()
            profiles = store.all()
            dt = time.perf_counter() - t
            assert len(profiles) == n
            label = "encrypted" if encrypted else "plaintext"
            print(f"ProfileStore.all() {n} profiles {label}: {dt:.2f} s ({1e6 * dt / n:.0f} us/profile); "
                  f"1M profiles extrapolated: {dt / n * 1e6 / 60:.1f} min")


def bench_blob(n: int) -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, nonce = AESGCM.generate_key(256), secrets.token_bytes(12)
    data = np.random.default_rng(1).standard_normal((n, 192)).astype(np.float32).tobytes()
    blob = AESGCM(key).encrypt(nonce, data, b"idme/gallery")
    t = time.perf_counter()
    out = AESGCM(key).decrypt(nonce, blob, b"idme/gallery")
    dt = time.perf_counter() - t
    assert len(out) == len(data)
    print(f"AES-256-GCM decrypt of one {n} x 192 float32 blob ({len(data) / 1e6:.0f} MB): {dt:.3f} s "
          f"({len(data) / dt / 1e9:.2f} GB/s)")


def bench_kdf() -> None:
    from idme.vault import ARGON2_MEMORY_KIB, ARGON2_PARALLELISM, ARGON2_TIME_COST, _kdf

    t = time.perf_counter()
    _kdf("bench passphrase", secrets.token_bytes(16), ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM)
    print(f"Argon2id unlock (m={ARGON2_MEMORY_KIB} KiB, t={ARGON2_TIME_COST}, p={ARGON2_PARALLELISM}): "
          f"{time.perf_counter() - t:.3f} s, once per process")


def bench_db(events: int) -> None:
    import sqlcipher3

    row = (0.0, 1.5, "Speaker 1", "unknown", 0.7, 0, "some words of the transcript " * 3, "[]")
    for name, module in (("sqlite3", sqlite3), ("sqlcipher3", sqlcipher3)):
        with tempfile.TemporaryDirectory(prefix="idme-bench-db-") as tmp:
            conn = module.connect(str(Path(tmp) / "s.db"), isolation_level=None)
            if module is sqlcipher3:
                conn.execute(f"PRAGMA key = \"x'{secrets.token_hex(32)}'\"")
                version = conn.execute("PRAGMA cipher_version").fetchone()[0]
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE segments (seg_id INTEGER PRIMARY KEY, start_s REAL, end_s REAL, speaker TEXT,"
                         " kind TEXT, score REAL, final INTEGER, text TEXT, words TEXT)")
            t = time.perf_counter()
            for i in range(events):
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO segments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (i, *row))
                conn.execute("COMMIT")
            dt = time.perf_counter() - t
            conn.close()
            extra = f" (SQLCipher {version})" if module is sqlcipher3 else ""
            print(f"{name}{extra}: {1e3 * dt / events:.3f} ms per event commit (WAL, NORMAL, {events} events)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", type=int, nargs="*", default=[1000, 10000])
    ap.add_argument("--blob", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=2000)
    args = ap.parse_args()
    bench_kdf()
    for n in args.profiles:
        bench_profiles(n)
    bench_blob(10_000)
    bench_blob(args.blob)
    bench_db(args.events)


if __name__ == "__main__":
    main()
