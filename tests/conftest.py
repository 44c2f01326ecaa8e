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
