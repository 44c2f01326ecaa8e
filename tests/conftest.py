"""Shared fixtures: the real bundled CAM++ encoder and the example meeting shipped in examples/."""

from __future__ import annotations

from pathlib import Path

import pytest

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
