"""The REST face (/v1) over the real encoder and store: profiles, enrolment, verify/identify, sessions,
and the security rules (token, Host, caps, rate limit), each refusal leaving nothing stored."""

from __future__ import annotations

import json
import stat

import pytest

pytest.importorskip("fastapi")

from idme.api import Idme  # noqa: E402
from idme.settings import resolve  # noqa: E402

from conftest import BOB_TAKE, DATA, EXAMPLES, OWNER_TAKES  # noqa: E402
from server_helpers import AUTH, TOKEN, collect_cycles, enrolled_home, make_client  # noqa: E402, F401


@pytest.fixture(scope="module")
def template(tmp_path_factory, campplus):
    return enrolled_home(tmp_path_factory.mktemp("server"), campplus)


@pytest.fixture
def client(template, tmp_path, campplus):
    c, _ = make_client(template, tmp_path, campplus)
    return c


def _file(path, name=None):
    return (name or path.name, path.read_bytes(), "application/octet-stream")


def _no_embeddings(obj) -> bool:
    text = json.dumps(obj)
    return "embedding" not in text.replace("n_embeddings", "") and "voiceprint" not in text


# -- security ----------------------------------------------------------------------------------------
def test_health_needs_no_token_but_every_v1_route_does(client) -> None:
    """/health answers without a token; /v1 routes answer 401 with a reason for a missing or wrong token."""
    assert client.get("/health").json() == {"status": "ok"}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = client.get("/v1/profiles", headers=headers)
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/profiles", headers=AUTH).status_code == 200


def test_a_foreign_host_is_refused_even_with_the_token(client) -> None:
    """DNS rebinding: a request naming another Host gets 403, on /health and /v1 alike."""
    for path in ("/health", "/v1/profiles", "/"):
        r = client.get(path, headers={**AUTH, "Host": "evil.example:8765"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden_host"
    assert client.get("/health", headers={"Host": "localhost:8765"}).status_code == 200


def test_the_token_file_is_created_0600_and_reused(tmp_path, campplus) -> None:
    """Without a token the app creates one in <home>/server/token, mode 0600, and reads it back next time."""
    from idme.server import create_app

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    first = create_app(idme=idme).state.idme_server
    path = tmp_path / "server" / "token"
    assert first.token_created and stat.S_IMODE(path.stat().st_mode) == 0o600
    second = create_app(idme=idme).state.idme_server
    assert not second.token_created and second.token == first.token == path.read_text().strip()


def test_an_oversize_upload_is_refused_and_stores_nothing(template, tmp_path, campplus) -> None:
    """An enrolment upload over max_upload_bytes gets 413 before it is read; no profile, no temp file."""
    c, idme = make_client(template, tmp_path, campplus, max_upload_bytes=20_000)
    r = c.post("/v1/profiles/bob/enroll", headers=AUTH, files=[("files", _file(BOB_TAKE))])
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert not idme.profiles.exists("bob")
    tmp = idme.home / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


def test_an_oversize_chunked_upload_is_refused_while_it_streams(template, tmp_path, campplus) -> None:
    """Without a Content-Length (chunked), the body is counted as it arrives: 413, not a parse error."""
    c, idme = make_client(template, tmp_path, campplus, max_upload_bytes=20_000)
    head = ('--XyZ\r\nContent-Disposition: form-data; name="files"; filename="bob.flac"\r\n'
            'Content-Type: audio/flac\r\n\r\n').encode()
    body = head + BOB_TAKE.read_bytes() + b"\r\n--XyZ--\r\n"
    r = c.post("/v1/profiles/bob/enroll", content=(body[i:i + 4096] for i in range(0, len(body), 4096)),
               headers={**AUTH, "Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    assert not idme.profiles.exists("bob")


def test_too_long_audio_is_refused(template, tmp_path, campplus) -> None:
    """A file with more seconds than max_upload_audio_s gets 413 and no profile."""
    c, idme = make_client(template, tmp_path, campplus, max_upload_audio_s=2.0)
    r = c.post("/v1/profiles/bob/enroll", headers=AUTH, files=[("files", _file(BOB_TAKE))])
    assert r.status_code == 413 and r.json()["code"] == "too_long" and BOB_TAKE.name in r.json()["detail"]
    assert not idme.profiles.exists("bob") and not list((idme.home / "tmp").iterdir())


def test_verify_is_rate_limited(template, tmp_path, campplus) -> None:
    """Past verify_per_minute, verify and identify get 429 with Retry-After."""
    c, _ = make_client(template, tmp_path, campplus, verify_per_minute=2)
    for _ in range(2):
        r = c.post("/v1/verify", headers=AUTH, data={"name": "me"}, files={"file": _file(OWNER_TAKES[2])})
        assert r.status_code == 200
    r = c.post("/v1/verify", headers=AUTH, data={"name": "me"}, files={"file": _file(OWNER_TAKES[2])})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited" and int(r.headers["retry-after"]) >= 1
    assert c.post("/v1/identify", headers=AUTH, files={"file": _file(OWNER_TAKES[2])}).status_code == 429


# -- profiles ----------------------------------------------------------------------------------------
def test_profiles_list_show_rename_delete(client) -> None:
    """Profiles are listed and shown without voiceprints, renamed, and deleted (the owner only with force)."""
    profiles = client.get("/v1/profiles", headers=AUTH).json()
    assert [p["name"] for p in profiles] == ["me"] and profiles[0]["kind"] == "me"
    assert _no_embeddings(profiles)
    me = client.get("/v1/profiles/Me", headers=AUTH).json()
    assert me["n_takes"] == 3 and _no_embeddings(me)
    assert client.get("/v1/profiles/nobody", headers=AUTH).status_code == 404
    r = client.post("/v1/profiles/me/rename", headers=AUTH, json={"new_name": "owner"})
    assert r.status_code == 409  # renaming the owner away needs force
    r = client.post("/v1/profiles/me/rename?force=true", headers=AUTH, json={"new_name": "José"})
    assert r.status_code == 200 and r.json()["name"] == "José"
    r = client.delete("/v1/profiles/José", headers=AUTH)
    assert r.status_code == 200 and r.json()["deleted"] == "José"
    assert client.get("/v1/profiles", headers=AUTH).json() == []
    assert client.post("/v1/profiles/../etc/rename", headers=AUTH, json={"new_name": "x"}).status_code in (400, 404)


def test_enrol_over_http_then_verify_and_identify(client) -> None:
    """Enrolling bob from an upload says enrolled; verify accepts bob's other take and rejects the owner's;
    identify ranks bob first."""
    r = client.post("/v1/profiles/bob/enroll", headers=AUTH,
                    files=[("files", _file(BOB_TAKE)), ("files", _file(DATA / "ls_2414_128291-0009.flac"))])
    body = r.json()
    assert r.status_code == 200 and body["status"] == "enrolled", body
    assert body["profile"]["n_takes"] == 2 and body["takes"][0]["speech_s"] > 1.5 and _no_embeddings(body)
    test = EXAMPLES / "meeting.wav"  # 0.5-2.7 s is bob (2414); a cut of it keeps the verify upload small
    import soundfile as sf

    audio, rate = sf.read(test, dtype="int16")
    cut = client.app.state.idme_server.idme.home / "bob-test.wav"
    sf.write(cut, audio[int(0.5 * rate):int(2.7 * rate)], rate)
    v = client.post("/v1/verify", headers=AUTH, data={"name": "bob"}, files={"file": _file(cut)}).json()
    assert v["decision"] == "accept" and v["score"] >= v["threshold"], v
    v = client.post("/v1/verify", headers=AUTH, data={"name": "bob"}, files={"file": _file(OWNER_TAKES[0])}).json()
    assert v["decision"] == "reject"
    v = client.post("/v1/verify", headers=AUTH, data={"name": "carol"}, files={"file": _file(cut)}).json()
    assert v["decision"] == "not_enrolled"
    ident = client.post("/v1/identify", headers=AUTH, files={"file": _file(cut)}, data={"top": "2"}).json()
    assert ident["decision"] == "accept" and ident["name"] == "bob" and ident["candidates"][0]["name"] == "bob"
    assert _no_embeddings(ident)


def test_a_take_the_gate_rejects_says_why_and_stores_nothing(client) -> None:
    """A half-second digit is 'rejected' with the net-speech reason, and no profile is created."""
    r = client.post("/v1/profiles/george/enroll", headers=AUTH, files=[("files", _file(DATA / "fsdd_1_george_0.wav"))])
    body = r.json()
    assert r.status_code == 200 and body["status"] == "rejected" and "speech" in body["reason"]
    assert "tmp" not in body["reason"]  # the message names the uploaded file, not the server's temp path
    assert client.get("/v1/profiles/george", headers=AUTH).status_code == 404


def test_an_upload_that_is_not_audio_is_415(client) -> None:
    """A text file posted as a take gets 415 with a one-line reason naming the upload, and nothing stored."""
    r = client.post("/v1/profiles/bob/enroll", headers=AUTH, files=[("files", ("notes.wav", b"hello " * 100, "audio/wav"))])
    assert r.status_code == 415 and r.json()["code"] == "bad_audio" and "notes.wav" in r.json()["detail"]
    assert client.get("/v1/profiles/bob", headers=AUTH).status_code == 404


# -- sessions ----------------------------------------------------------------------------------------
def test_sessions_list_show_export_name_delete(client) -> None:
    """A labelled session is listed, shown, exported in every format, its unknown speaker named, then deleted."""
    idme = client.app.state.idme_server.idme
    result = idme.open_live(file=EXAMPLES / "meeting.wav", transcribe=False).run()
    sid = result.session_id
    listed = client.get("/v1/sessions", headers=AUTH).json()
    assert [s["id"] for s in listed] == [sid]
    shown = client.get(f"/v1/sessions/{sid[:10]}", headers=AUTH).json()
    assert shown["id"] == sid and shown["segments"] and _no_embeddings(shown)
    assert "Me" in {s["label"] for s in shown["speakers"]} or "me" in {s["kind"] for s in shown["speakers"]}
    for fmt in ("md", "txt", "srt", "vtt", "json", "rttm"):
        r = client.get(f"/v1/sessions/{sid}/export/{fmt}", headers=AUTH)
        assert r.status_code == 200 and r.text and sid in r.headers["content-disposition"]
    assert client.get(f"/v1/sessions/{sid}/export/docx", headers=AUTH).status_code == 422
    unknown = next(s["label"] for s in shown["speakers"] if s["kind"] == "unknown")
    r = client.post(f"/v1/sessions/{sid}/name", headers=AUTH, json={"speaker": unknown, "person": "carol"})
    assert r.status_code == 200 and r.json()["relabelled"] >= 1 and r.json()["profile"]["name"] == "carol"
    r = client.post(f"/v1/sessions/{sid}/name", headers=AUTH, json={"speaker": "Speaker 99", "person": "dan"})
    assert r.status_code == 404
    assert client.delete(f"/v1/sessions/{sid}", headers=AUTH).json()["deleted"] == sid
    assert client.get(f"/v1/sessions/{sid}", headers=AUTH).status_code == 404


def test_info_reports_encoder_thresholds_and_limits(client) -> None:
    """/v1/info names the encoder, the thresholds in force with their source, and the caps."""
    info = client.get("/v1/info", headers=AUTH).json()
    assert info["encoder"]["name"] == "campplus" and info["thresholds"]["source"]
    assert info["limits"]["max_streams"] == 4 and "pcm_s16le" in info["encodings"]


def test_openapi_declares_every_error_status(client) -> None:
    """Every /v1 operation documents 401, 403 and 422 with the Problem body, and no schema has embeddings."""
    assert client.get("/v1/openapi.json").status_code == 401
    assert client.get("/openapi.json").status_code == 404 and client.get("/docs").status_code == 404
    spec = client.get("/v1/openapi.json", headers=AUTH).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path.startswith("/v1"):
                assert {"401", "403", "422"} <= codes, (method, path, codes)
    schemas = json.dumps(spec["components"]["schemas"])
    assert "embeddings\"" not in schemas.replace("n_embeddings\"", "")


# -- the rules themselves (pure logic, a fake clock) ----------------------------------------------------
def test_tickets_are_single_use_and_expire() -> None:
    """A ticket redeems once, not after its lifetime, and unknown or empty tickets never."""
    from idme.server.security import TicketBook

    now = [0.0]
    book = TicketBook(ttl_s=30.0, clock=lambda: now[0])
    t = book.issue()
    assert book.redeem(t) and not book.redeem(t)
    late = book.issue()
    now[0] = 31.0
    assert not book.redeem(late) and not book.redeem("") and not book.redeem(None) and not book.redeem("x" * 22)


def test_the_rate_limit_is_a_sliding_minute() -> None:
    """per_minute events pass, the next is refused until the oldest is a minute old."""
    from idme.server.security import RateLimit

    now = [0.0]
    limit = RateLimit(3, clock=lambda: now[0])
    allowed = []
    for t in (0.0, 10.0, 20.0, 30.0):
        now[0] = t
        allowed.append(limit.allow())
    assert allowed == [True, True, True, False]
    assert limit.retry_after_s() == 31  # the event at t=0 leaves the window at t=60
    now[0] = 60.5
    assert limit.allow() and not limit.allow()


@pytest.mark.parametrize("header,allowed", [
    ("127.0.0.1:8765", True), ("localhost", True), ("[::1]:8765", True), ("LOCALHOST:1", True),
    ("evil.example", False), ("127.0.0.1.evil.example", False), ("", False), (None, False), ("[::1", False),
])
def test_host_names_are_parsed_before_matching(header, allowed) -> None:
    """Only loopback names pass the Host rule, whatever the port or case; look-alikes and junk do not."""
    from idme.server.security import allowed_hosts, host_name

    assert (host_name(header) in allowed_hosts("127.0.0.1")) is allowed


@pytest.mark.parametrize("origin,allowed", [
    (None, True), ("http://127.0.0.1:8765", True), ("https://localhost", True),
    ("https://evil.example", False), ("null", False), ("file://", False), ("http://127.0.0.1.evil.example", False),
])
def test_origins_from_loopback_pages_only(origin, allowed) -> None:
    """A WebSocket Origin must be an http(s) page on an allowed host (or absent: not a browser)."""
    from idme.server.security import allowed_hosts, origin_allowed

    assert origin_allowed(origin, allowed_hosts("127.0.0.1")) is allowed


def test_a_token_file_readable_by_others_is_refused(tmp_path) -> None:
    """A token file with group/other permissions is a ConfigError naming the chmod fix."""
    from idme.errors import ConfigError
    from idme.server.security import load_or_create_token

    path = tmp_path / "token"
    path.write_text("a" * 40)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_token(path)
