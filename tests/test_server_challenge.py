"""The server's liveness verify (issue 14): POST /v1/challenges issues a fresh digit challenge; a verify with
its challenge_id is held to those digits once, within the time limit; expired, unknown and reused ids are
refused with a clear decision, and every attempt is audited."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from idme.server.challenges import EXPIRED, REUSED, ChallengeBook  # noqa: E402

from conftest import OWNER_TAKES  # noqa: E402
from server_helpers import AUTH, collect_cycles, enrolled_home, make_client  # noqa: E402,F401


@pytest.fixture(scope="module")
def template(tmp_path_factory, campplus):
    return enrolled_home(tmp_path_factory.mktemp("challenge"), campplus)


def _file(path):
    return (path.name, path.read_bytes(), "audio/wav")


def test_challenge_book_rules() -> None:
    """A challenge is 6 digits, redeemable once before its deadline; after that it reads as reused, and
    after the deadline (or never issued) as expired."""
    now = [0.0]
    book = ChallengeBook(ttl_s=60, clock=lambda: now[0])
    cid, digits = book.issue()
    assert len(digits) == 6 and digits.isdigit()
    assert book.redeem(cid) == (digits, None)
    assert book.redeem(cid) == (None, REUSED)
    late, _ = book.issue()
    now[0] = 61.0
    assert book.redeem(late) == (None, EXPIRED)
    assert book.redeem("never-issued") == (None, EXPIRED)


def test_verify_with_a_challenge_id(template, tmp_path, campplus) -> None:
    """The issued challenge is answered once: the owner's own enrollment take sent back is a replay; the same id again is challenge_reused, an expired one challenge_expired,
    expect with challenge_id is 422; the audit log holds each attempt."""
    c, idme = make_client(template, tmp_path, campplus)
    r = c.post("/v1/challenges", headers=AUTH)
    assert r.status_code == 200
    body = r.json()
    assert len(body["digits"]) == 6 and body["expires_in_s"] == 60
    files = {"file": _file(OWNER_TAKES[2])}
    first = c.post("/v1/verify", headers=AUTH, data={"name": "me", "challenge_id": body["challenge_id"]},
                   files=files)
    assert first.status_code == 200, first.text
    assert first.json()["decision"] == "replay"  # an enrollment take played back
    assert first.json()["expected"] == body["digits"]
    again = c.post("/v1/verify", headers=AUTH, data={"name": "me", "challenge_id": body["challenge_id"]},
                   files={"file": _file(OWNER_TAKES[2])}).json()
    assert again["decision"] == "challenge_reused" and "POST /v1/challenges" in again["reason"]
    now = [0.0]
    c.app.state.idme_server.challenges = ChallengeBook(ttl_s=60, clock=lambda: now[0])
    cid = c.post("/v1/challenges", headers=AUTH).json()["challenge_id"]
    now[0] = 120.0
    late = c.post("/v1/verify", headers=AUTH, data={"name": "me", "challenge_id": cid},
                  files={"file": _file(OWNER_TAKES[2])}).json()
    assert late["decision"] == "challenge_expired"
    both = c.post("/v1/verify", headers=AUTH, data={"name": "me", "challenge_id": cid, "expect": "123456"},
                  files={"file": _file(OWNER_TAKES[2])})
    assert both.status_code == 422
    decisions = [(a.name, a.decision, a.liveness) for a in idme.audit()]
    assert decisions[1:] == [("me", "challenge_reused", "challenge_reused"),
                             ("me", "challenge_expired", "challenge_expired")]
    assert decisions[0][1] == first.json()["decision"]
