"""Encryption at rest (issue 14): what it costs at start-up and per write.

1. Unlocking the data key: Argon2id at the default parameters (64 MiB, t=3, p=1), once per process.
2. Loading voiceprints the way idme loads them: ``ProfileStore.all()`` reads one encrypted profile.json and one
   encrypted embeddings.npy per profile (AES-256-GCM, decrypted on load), against the same store in plaintext.
   Measured on N profiles of 192-d float32 (synthetic unit vectors, 1 take each) for N = 1k and 10k; 1M is
   extrapolated per profile from the 10k run (a million profile directories is two million files).
   The decryption alone is also measured on one 1M x 192 float32 blob (768 MB), the size a single gallery file
   of a million voiceprints would have.
3. Session writes: what SQLCipher adds per event commit (WAL, synchronous=NORMAL) through the real session
   store (``SessionStore`` -> ``SessionWriter.upsert_segment``), against the same store opened without a key.

Run: ``nice -n 10 .venv/bin/python bench/vault.py [--profiles 10000] [--events 2000]``. Prints one line per
figure; times are wall-clock on whatever else the machine is running.
"""

from __future__ import annotations

import argparse
import os
import secrets
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
    """Event commits through the real session store (``SessionStore.create`` -> ``SessionWriter.upsert_segment``:
    one BEGIN IMMEDIATE ... COMMIT per event, WAL, synchronous=NORMAL), on SQLCipher (the store as it is)
    against the same store opened without a key (plain SQLite, the store before issue 14)."""
    import sqlcipher3

    from idme.session.store import SessionStore
    from idme.vault import EphemeralVault

    class Plain(SessionStore):
        def db_keys(self):
            return None  # connect(keys=None): an unencrypted database

    version = sqlcipher3.connect(":memory:").execute("PRAGMA cipher_version").fetchone()[0]
    results: dict[str, list[float]] = {"plain SQLite": [], f"SQLCipher {version}": []}
    for _ in range(2):  # alternated twice: the machine's other load hits both alike
        for label, cls in (("plain SQLite", Plain), (f"SQLCipher {version}", SessionStore)):
            with tempfile.TemporaryDirectory(prefix="idme-bench-db-") as tmp:
                store = cls(tmp, vault=EphemeralVault())
                w = store.create({}, {})
                t = time.perf_counter()
                for i in range(events):
                    w.upsert_segment({"seg_id": i, "start": 2.0 * i, "end": 2.0 * i + 1.5, "speaker": "Speaker 1",
                                      "kind": "unknown", "score": 0.7, "final": True,
                                      "text": "some words of the transcript " * 3, "words": []})
                results[label].append(time.perf_counter() - t)
                t = time.perf_counter()
                w.finish()
                fin = time.perf_counter() - t
                w.close()
                store.close()
                print(f"  {label}: {1e3 * results[label][-1] / events:.3f} ms per event commit, finish() "
                      f"{1e3 * fin:.1f} ms ({events} events)")
    base = min(results["plain SQLite"]) / events
    for label, dts in results.items():
        best = min(dts) / events
        print(f"SessionWriter.upsert_segment {label}: {1e3 * best:.3f} ms per event commit (best of 2; WAL, "
              f"NORMAL, {events} events){'' if label.startswith('plain') else f'; +{1e3 * (best - base):.3f} ms vs plain'}")


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
