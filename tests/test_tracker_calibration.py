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

from conftest import BOB_TAKE, OWNER_TAKES


@pytest.fixture(scope="module")
def shipped(campplus) -> C.QualityCalibration:
    cal = C.load(f"{campplus.name}@{campplus.version}")
    assert cal is not None
    return cal


def _at_cosine(p: np.ndarray, c: float, rng: np.random.Generator, toward: np.ndarray | None = None) -> np.ndarray:
    """A unit vector whose cosine with unit ``p`` is exactly ``c``; its other part points at ``toward`` (a real
    voice, so AS-norm's cohort statistics stay those of speech) plus a little noise, or at random."""
    r = rng.standard_normal(len(p)).astype(np.float64)
    if toward is not None:
        r = toward + 0.02 * r
    r -= (r @ p) * p
    r /= np.linalg.norm(r)
    return (c * p + np.sqrt(1 - c * c) * r).astype(np.float32)


def test_the_calibrated_bar_is_where_the_llr_reaches_the_threshold(shipped) -> None:
    """For every band, duration and SNR, the cosine ``calibrated_bar`` gives scores exactly the calibration's
    LLR threshold, so a tracker comparing cosines with it decides as ``verify`` does on LLRs."""
    rng = np.random.default_rng(3)
    p_vec, t_vec = rng.standard_normal((2, shipped.norm.cohort.shape[2] if shipped.norm is not None else 192))
    for nb, pnb in ((False, False), (True, True), (True, False)):
        # AS-normalised calibrations also need each side's cohort statistics (None when not normalised)
        stats = verify.norm_stats(shipped, p_vec, pnb), verify.norm_stats(shipped, t_vec, pnb)
        for dur in (1.0, 2.5, 6.0, 30.0):
            for snr in (None, 8.0, 25.0):
                cond = verify.AudioCondition(4000.0 if nb else 8000.0, nb, snr)
                bar = verify.calibrated_bar(shipped, dur, cond, pnb, None, *stats)
                assert -1.0 < bar < 1.0
                assert verify.calibrated_score(shipped, bar, dur, cond, pnb, *stats) == \
                    pytest.approx(shipped.threshold, abs=1e-9)


def test_a_calibrated_tracker_judges_the_owner_on_the_segments_own_condition(campplus, shipped) -> None:
    """Real speech samples give the segment's condition: on short, noisy 8 kHz speech the calibrated bar is
    lower than the cosine bar (such tests score lower for everyone), so a cosine between the two is the owner
    for the calibrated tracker and an unknown speaker for the cosine one; well above the clean bar both say
    Me; unknown speakers still cluster on cosines."""
    from conftest import OWNER_TAKES

    rng = np.random.default_rng(12)
    # Real voices: the owner's voiceprint from a take, test vectors blended from it and bob's voice.
    p = campplus.embed(speech_only(read_audio(OWNER_TAKES[0]))).astype(np.float64)
    p /= np.linalg.norm(p)
    owner = Profile("me", {}, p.astype(np.float32)[None, :])
    th = thresholds.load("campplus")
    clean = speech_only(read_audio(BOB_TAKE))[: 4 * 16000]
    bob = campplus.embed(clean).astype(np.float64)
    at = lambda c: _at_cosine(p, c, rng, bob)  # noqa: E731
    noisy = C.degrade(clean, C.Degradation(snr_db=8.0, narrowband=True, crop_s=2.0), "tracker-test")
    plain = SpeakerTracker([owner], campplus.dimension, th)
    cal = SpeakerTracker([owner], campplus.dimension, th, calibration=shipped)
    cond, ncond = verify.audio_condition(clean), verify.audio_condition(noisy)

    def bar_for(v, secs, c):
        """The calibrated cosine bar for test voice ``v`` (its AS-norm statistics, when normalised)."""
        return verify.calibrated_bar(shipped, secs, c, False, None, verify.norm_stats(shipped, p, False),
                                     verify.norm_stats(shipped, v, False))

    assert ncond.narrowband and not cond.narrowband
    bar_n = bar_for(at(0.4), 2.0, ncond)
    assert bar_n < th.me - 0.05  # a short, noisy, narrow-band test is held to a lower cosine
    low = at(bar_n - 0.1)
    assert plain.decide(0, low, 2.0, 0.0, samples=noisy).kind == "unknown"
    assert cal.decide(0, low, 2.0, 0.0, samples=noisy).label == "Speaker 1"
    between = at((th.me + bar_n) / 2)
    assert bar_for(between, 2.0, ncond) < float(between @ p) < th.me
    assert plain.decide(1, between, 2.0, 5.0, samples=noisy).kind == "unknown"
    d = cal.decide(1, between, 2.0, 5.0, samples=noisy)
    assert d.label == "Me", d
    assert cal.segs[1].cond is not None and cal.segs[1].cond.narrowband
    high = at(bar_for(at(0.5), 4.0, cond) + 0.1)
    assert float(high @ p) > bar_for(high, 4.0, cond) + 0.05
    assert cal.decide(2, high, 4.0, 10.0, samples=clean).label == "Me"
    assert cal.peek(high, 4.0, samples=clean).label == "Me"  # INTERIM_MARGIN over the calibrated bar
    # the unknown speaker opened by segment 0 takes a close voice, as before (cosine-to-cosine)
    near = _at_cosine(low.astype(np.float64), th.same_unknown + 0.1, rng)
    assert float(near @ p) < bar_for(near, 4.0, cond)
    assert cal.decide(3, near, 4.0, 20.0, samples=clean).label == "Speaker 1"

def test_pyannote_segmenter_holds_each_local_voice_to_its_calibrated_bar(campplus, shipped) -> None:
    """The pyannote segmenter's bars (issue 12: segment-level scoring on the same calibrated LLR): with a
    calibration each local voice gets ``verify.calibrated_bar`` of its own seconds, band, SNR and cohort
    statistics (a short noisy 8 kHz clip a lower bar than a long clean one); without a calibration, or with
    unmeasured voices, every voice gets the profile's cosine bar."""
    from idme.segment.pyannote import PyannoteSegmenter, clip_quality, group_quality

    p = campplus.embed(speech_only(read_audio(OWNER_TAKES[0]))).astype(np.float64)
    p /= np.linalg.norm(p)
    owner = Profile("me", {}, p.astype(np.float32)[None, :])
    th = thresholds.load("campplus")
    clean = speech_only(read_audio(OWNER_TAKES[1]))[: 6 * 16000]  # another take of the owner
    noisy = C.degrade(speech_only(read_audio(BOB_TAKE)), C.Degradation(snr_db=8.0, narrowband=True, crop_s=2.0),
                      "segmenter-test")
    vecs = np.stack([campplus.embed(clean), campplus.embed(noisy)]).astype(np.float64)
    q = np.stack([clip_quality(clean, False), clip_quality(noisy, False)])
    assert q[0, 0] == pytest.approx(len(clean) / 16000) and q[1, 1] == 1.0 and q[0, 1] == 0.0
    seg = PyannoteSegmenter(campplus, th, [owner], calibration=shipped)
    bars = seg.bars(vecs, q)
    assert bars.shape == (1, 2)
    for v, row, bar in zip(vecs, q, bars[0]):
        cond = verify.AudioCondition(4000.0 if row[1] else 8000.0, bool(row[1]), float(row[2]))
        want = verify.calibrated_bar(shipped, float(row[0]), cond, False, None, verify.norm_stats(shipped, p, False),
                                     verify.norm_stats(shipped, v, False))
        assert bar == pytest.approx(want, abs=1e-6)
    assert bars[0, 1] < bars[0, 0]
    # a group of voices: seconds add up, the band is the duration-weighted majority
    g = group_quality(q.astype(np.float64))
    assert g[0, 0] == pytest.approx(q[0, 0] + q[1, 0]) and g[0, 1] == float(q[1, 0] > q[0, 0])
    cosine_bar = verify.threshold(th, owner)
    assert np.all(PyannoteSegmenter(campplus, th, [owner]).bars(vecs, q) == cosine_bar)
    assert np.all(seg.bars(vecs, None) == cosine_bar)
