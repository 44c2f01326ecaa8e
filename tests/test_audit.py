"""The verification audit log (issue 14): every verify and identify leaves one row in the session database
with the decision, score, threshold and liveness outcome, and nothing of the audio."""

from __future__ import annotations

from idme.api import Idme
from idme.settings import resolve

from conftest import BOB_TAKE, OWNER_TAKES


def test_verify_identify_and_liveness_are_audited(tmp_path, campplus) -> None:
    """A plain accept, a liveness replay (an enrollment take sent back) and an identify each add one row, in
    order, with the claimed name or top candidate; the rows carry no audio or embedding field."""
    idme = Idme(resolve(tmp_path / "home", asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES[:2])
    assert idme.verify("me", OWNER_TAKES[2]).decision == "accept"
    assert idme.verify("me", OWNER_TAKES[0], liveness=True).decision == "replay"
    top = idme.identify(BOB_TAKE)
    rows = idme.audit()
    assert [(r.op, r.name, r.decision, r.liveness) for r in rows] == [
        ("verify", "me", "accept", None), ("verify", "me", "replay", "replay"),
        ("identify", top.name, top.decision, None)]
    assert rows[1].replay_score is not None and rows[1].replay_score >= 0.11
    assert all(r.threshold is not None for r in rows)
    assert set(rows[0].to_dict()) == {"id", "at", "op", "name", "decision", "score", "threshold", "liveness",
                                      "replay_score"}
    assert [r.decision for r in idme.audit("me")] == ["accept", "replay"] + (["accept"] if top.name == "me" else [])
