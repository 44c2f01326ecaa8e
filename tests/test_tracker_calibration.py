"""The live tracker's Me / named decision on the calibrated LLR verify uses (issue 12): the cosine bar it
holds segments to, measured on the segment's own samples, and what a live session passes it."""

from __future__ import annotations

import numpy as np
import pytest

from idme.audio import read_audio
from idme.eval import calibration as C
from idme.identity import thresholds, verify
from idme.identity.profiles import Profile
from idme.identity.tracker import SpeakerTracker
from idme.vad import speech_only

from conftest import BOB_TAKE


@pytest.fixture(scope="module")
def shipped(campplus) -> C.QualityCalibration:
    cal = C.load(f"{campplus.name}@{campplus.version}")
    assert cal is not None
    return cal


def _at_cosine(p: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with unit ``p`` is exactly ``c``."""
    r = rng.standard_normal(len(p)).astype(np.float64)
    r -= (r @ p) * p
    r /= np.linalg.norm(r)
    return (c * p + np.sqrt(1 - c * c) * r).astype(np.float32)


def test_the_calibrated_bar_is_where_the_llr_reaches_the_threshold(shipped) -> None:
    """For every band, duration and SNR, the cosine ``calibrated_bar`` gives scores exactly the calibration's
    LLR threshold, so a tracker comparing cosines with it decides as ``verify`` does on LLRs."""
    for nb, pnb in ((False, False), (True, True), (True, False)):
        for dur in (1.0, 2.5, 6.0, 30.0):
            for snr in (None, 8.0, 25.0):
                cond = verify.AudioCondition(4000.0 if nb else 8000.0, nb, snr)
                bar = verify.calibrated_bar(shipped, dur, cond, pnb)
                assert -1.0 < bar < 1.0
                assert verify.calibrated_score(shipped, bar, dur, cond, pnb) == pytest.approx(shipped.threshold,
                                                                                             abs=1e-9)


def test_a_calibrated_tracker_judges_the_owner_on_the_segments_own_condition(campplus, shipped) -> None:
    """Real speech samples give the segment's condition: a cosine between the two bars is the owner for the
    cosine tracker and an unknown speaker for the calibrated one; well above the bar both say Me; the same
    cosine on noisy 8 kHz speech meets a lower bar (short, noisy, narrow-band tests score lower for everyone);
    unknown speakers still cluster on cosines."""
    rng = np.random.default_rng(12)
    p = rng.standard_normal(campplus.dimension)
    p /= np.linalg.norm(p)
    owner = Profile("me", {}, p.astype(np.float32)[None, :])
    th = thresholds.load("campplus")
    clean = speech_only(read_audio(BOB_TAKE))[: 4 * 16000]
    noisy = C.degrade(clean, C.Degradation(snr_db=8.0, narrowband=True, crop_s=2.0), "tracker-test")
    plain = SpeakerTracker([owner], campplus.dimension, th)
    cal = SpeakerTracker([owner], campplus.dimension, th, calibration=shipped)
    cond = verify.audio_condition(clean)
    bar = verify.calibrated_bar(shipped, 4.0, cond, False)
    assert not cond.narrowband and bar > th.me + 0.02  # a clean 4 s test needs more than the cosine bar
    between = _at_cosine(p, (th.me + bar) / 2, rng)
    assert plain.decide(0, between, 4.0, 0.0, samples=clean).label == "Me"
    d = cal.decide(0, between, 4.0, 0.0, samples=clean)
    assert d.kind == "unknown" and d.score == pytest.approx(0.0)
    assert cal.segs[0].cond is not None and not cal.segs[0].cond.narrowband
    high = _at_cosine(p, bar + 0.08, rng)
    assert cal.decide(1, high, 4.0, 10.0, samples=clean).label == "Me"
    assert cal.peek(high, 4.0, samples=clean).label == "Me"  # INTERIM_MARGIN over the calibrated bar
    ncond = verify.audio_condition(noisy)
    assert ncond.narrowband and verify.calibrated_bar(shipped, 2.0, ncond, False) < bar
    # the unknown speaker opened by segment 0 takes a close voice, as before (cosine-to-cosine)
    near = _at_cosine(between.astype(np.float64), th.same_unknown + 0.1, rng)
    assert float(near @ p) < bar
    assert cal.decide(2, near, 4.0, 20.0, samples=clean).label == "Speaker 1"
