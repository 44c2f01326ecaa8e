"""Quality-aware score calibration (issue 12): the QMF's fit and measures, the shipped file, the degradations
its trials are built with, and which calibration verify / identify use."""

from __future__ import annotations

import json

import numpy as np
import pytest

from idme.api import Idme
from idme.audio import read_audio
from idme.errors import IdmeError
from idme.eval import calibration as C
from idme.settings import resolve
from idme.vad import speech_only

from conftest import BOB_TAKE


def test_cllr_and_min_cllr_bound_what_they_should() -> None:
    """An LLR of 0 everywhere costs exactly 1 bit; well-separated, well-scaled LLRs cost almost nothing; minCllr
    never exceeds Cllr and does not change when the LLRs are scaled (it measures discrimination only)."""
    rng = np.random.default_rng(0)
    assert C.cllr(np.zeros(50), np.zeros(500)) == pytest.approx(1.0)
    tgt, non = rng.normal(8, 1, 300), rng.normal(-8, 1, 3000)
    assert C.cllr(tgt, non) < 0.01
    t2, n2 = rng.normal(1, 1, 300), rng.normal(-1, 1, 3000)
    assert C.min_cllr(t2, n2) <= C.cllr(t2, n2) + 1e-9
    assert C.min_cllr(t2 * 5, n2 * 5) == pytest.approx(C.min_cllr(t2, n2), abs=1e-9)


def test_fit_recovers_a_known_calibration() -> None:
    """On cosines drawn from two Gaussians of equal spread, whose true LLR is linear in the score, the
    prior-weighted logistic regression finds that line where the trials lie (quality terms vary at random)."""
    rng = np.random.default_rng(1)
    mt, mn, sd = 0.6, 0.1, 0.1
    s = np.r_[rng.normal(mt, sd, 4000), rng.normal(mn, sd, 20000)]
    y = np.r_[np.ones(4000, bool), np.zeros(20000, bool)]
    x = C.feature_matrix(s, rng.uniform(1, 8, len(s)), np.zeros(len(s)), rng.uniform(5, 40, len(s)), np.zeros(len(s)))
    w = C.fit_weights(x, y)
    true_llr = ((s - mn) ** 2 - (s - mt) ** 2) / (2 * sd ** 2)  # 50 x (s - 0.35)
    mid = np.abs(true_llr) < 5  # where the trials are dense enough to pin the line down
    assert np.abs(x[mid] @ w - true_llr[mid]).mean() < 0.5


def test_the_shipped_calibration_matches_the_bundled_encoder(campplus) -> None:
    """The packaged file is a calibration for the bundled CAM++ version, says where it comes from, and its LLR
    rises with the cosine in every band; FAR at a higher LLR threshold is never higher."""
    cal = C.load(f"{campplus.name}@{campplus.version}")
    assert cal is not None and cal.encoder == f"campplus@{campplus.version}"
    assert {"data", "heldout", "command", "conditions"} <= set(cal.provenance)
    s = np.linspace(-0.2, 0.9, 12)
    for tnb, pnb in ((False, False), (True, True), (True, False)):
        for dur, snr in ((1.0, 5.0), (4.0, 20.0), (20.0, np.nan)):
            assert np.all(np.diff(cal.llr(s, dur, tnb, snr, pnb)) > 0)
    fars = [cal.far_at(t) for t in np.linspace(-5, 25, 31)]
    assert all(a >= b for a, b in zip(fars, fars[1:])) and fars[-1] < 1e-6
    assert C.load("campplus@other-weights") is None


def test_degraded_speech_reads_as_its_condition() -> None:
    """Real speech with 10 dB of noise added before an 8 kHz channel, cropped to 2 s, is measured as
    narrow-band, about 10 dB SNR and 2 s long: the features the calibration is fitted on are what check sees."""
    from idme.identity.verify import audio_condition

    speech = speech_only(read_audio(BOB_TAKE))
    x = C.degrade(speech, C.Degradation(snr_db=10.0, narrowband=True, crop_s=2.0), "bob")
    assert len(x) == 32000
    cond = audio_condition(x)
    assert cond.narrowband and cond.snr_db == pytest.approx(10.0, abs=4.0)
    clean = audio_condition(C.degrade(speech, C.Degradation(), "bob"))
    assert not clean.narrowband and clean.snr_db > 20
    names = {c.name for c in C.condition_grid()}
    assert len(names) == 75 and "8k both, 15 dB, 2 s" in names


def test_home_calibration_wins_and_own_cosine_thresholds_turn_the_shipped_one_off(tmp_path, campplus) -> None:
    """verify and identify use <home>/calibration.json for this encoder first; a home whose cosine thresholds
    were calibrated by `idme eval calibrate --far` keeps them (no shipped LLR); a broken file is one error."""
    from idme.identity.thresholds import DEFAULTS, save

    enc = f"{campplus.name}@{campplus.version}"
    a = Idme(resolve(tmp_path / "a", asr="none"), embedder=campplus)
    shipped = a.calibration()
    assert shipped is not None and shipped.encoder == enc
    mine = C.QualityCalibration(enc, tuple([0.0, 10.0] + [0.0] * 8), 2.0, provenance={"data": "mine"})
    (tmp_path / "a" / C.HOME_FILE).write_text(json.dumps(mine.to_dict()))
    assert a.calibration() == mine
    b = Idme(resolve(tmp_path / "b", asr="none"), embedder=campplus)
    from dataclasses import replace

    save(campplus.name, replace(DEFAULTS["campplus"], me=0.42, source="calibrated today"), tmp_path / "b",
         version=campplus.version)
    assert b.calibration() is None
    (tmp_path / "a" / C.HOME_FILE).write_text("{not json")
    with pytest.raises(IdmeError, match="cannot read calibration"):
        a.calibration()


def test_same_session_trials_pair_halves_of_one_file_and_never_cross_groups() -> None:
    """A long one-utterance speaker gives one target (its first half vs its second half) and a short one none;
    every non-target pairs two different files, all from the group given (speakers are split, not utterances)."""
    from pathlib import Path

    files = [Path(f"{spk}-1-0000.flac") for spk in ("11", "22", "33", "44")]
    pairs = C.session_pairs(files, lambda f: f.name[0] != "3")
    targets = [(e, t) for e, t, y in pairs if y]
    assert [(e.path.name, e.half, t.path.name, t.half) for e, t in targets] == \
        [(f.name, 0, f.name, 1) for f in files if f.name[0] != "3"]
    non = [(e, t) for e, t, y in pairs if not y]
    assert len(non) == 12 and all(e.path != t.path and (e.half, t.half) == (0, 1) for e, t in non)
    assert {C.speaker_of(s) for p in pairs for s in p[:2]} == {"11", "22", "33", "44"}
    assert len([p for p in C.session_pairs(files, lambda f: True, n_nontarget=5) if not p[2]]) == 5


def test_score_normalised_calibration_saves_its_cohort_and_decides_on_real_speech(tmp_path, campplus) -> None:
    """A calibration that AS-normalises scores writes its cohort beside its JSON and loads back with it; its
    LLR refuses to score without both sides' statistics; the cosine bar the tracker uses gives exactly the
    LLR threshold; and verify / identify on real speech accept the owner's third take and reject another voice."""
    from conftest import OWNER_TAKES

    from idme.identity import verify as V

    enc = f"{campplus.name}@{campplus.version}"
    rng = np.random.default_rng(0)
    coh = rng.normal(size=(2, 40, campplus.dimension)).astype(np.float32)
    coh /= np.linalg.norm(coh, axis=2, keepdims=True)
    norm = C.ScoreNorm(coh, top_k=10, scale=0.05, speakers=tuple(f"s{i}" for i in range(40)),
                       file="cohort_campplus.npz")
    cal = C.QualityCalibration(enc, tuple([-1.0, 2.0] + [0.0] * 8), 1.0, provenance={"data": "test"}, norm=norm)
    home = tmp_path / "home"
    home.mkdir()
    cal.save(home / C.HOME_FILE)
    assert (home / "cohort_campplus.npz").is_file()
    back = C.load(enc, home)
    assert back is not None and back.norm is not None and np.array_equal(back.norm.cohort, coh)
    assert back.to_dict()["score_norm"] == {"method": "as-norm", "top_k": 10, "scale": 0.05,
                                            "cohort": "cohort_campplus.npz", "cohort_speakers": 40,
                                            "centre": False, "domain": False}
    cond = V.AudioCondition(8000.0, False, 30.0)
    with pytest.raises(ValueError, match="norm_stats"):
        V.calibrated_score(back, 0.5, 3.0, cond, False)
    p_vec, t_vec = coh[0, 0], coh[0, 1]
    ps, ts = V.norm_stats(back, p_vec, False), V.norm_stats(back, t_vec, False)
    bar = V.calibrated_bar(back, 3.0, cond, False, profile_stats=ps, test_stats=ts)
    assert V.calibrated_score(back, bar, 3.0, cond, False, ps, ts) == pytest.approx(back.threshold, abs=1e-9)
    idme = Idme(resolve(home, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES[:2])
    assert idme.calibration().norm is not None
    same, other = idme.verify("me", OWNER_TAKES[2]), idme.verify("me", BOB_TAKE)
    assert same.decision == "accept" and same.calibrated, same
    assert other.decision == "reject", other
    found = idme.identify(OWNER_TAKES[2])
    assert found.decision == "accept" and found.name == "me" and found.calibrated, found
    (home / "cohort_campplus.npz").unlink()
    with pytest.raises(IdmeError, match="cohort"):
        C.load(enc, home)


def test_centred_score_norm_is_the_s_norm_of_centred_voiceprints_and_keeps_the_bar_exact(tmp_path) -> None:
    """With ``centre`` the normalised score of a raw cosine equals AS-norm computed by hand on voiceprints moved
    by the cohort's mean and length-normalised again (both sides and the cohort); a channel that every voice
    shares stops counting as likeness; the flag survives a save; the tracker's cosine bar stays exact."""
    from idme.identity import verify as V

    rng = np.random.default_rng(1)
    d = 32
    channel = rng.normal(size=d) * 0.6  # what every recording of one band shares

    def voices(n: int) -> np.ndarray:
        v = rng.normal(size=(n, d)) * 0.25 + channel
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    coh = np.stack([voices(50), voices(50)])
    norm = C.ScoreNorm(coh, top_k=12, scale=0.05, file="cohort_x.npz", centre=True)
    p, t = voices(1)[0], voices(1)[0]  # two new, different voices of the same channel

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    mu = coh[0].astype(np.float64).mean(axis=0)
    pc, tc, cc = unit(p - mu), unit(t - mu), unit(coh[0] - mu)
    top = lambda x: np.sort(cc @ x)[::-1][:12]  # noqa: E731
    want = 0.05 * ((pc @ tc - top(pc).mean()) / top(pc).std() + (pc @ tc - top(tc).mean()) / top(tc).std())
    ps, ts = norm.stats(p[None], False), norm.stats(t[None], False)
    assert float(norm.apply(float(p @ t), ps, ts)[0]) == pytest.approx(want, abs=1e-5)
    assert float(p @ t) > 0.6 and abs(float(pc @ tc)) < 0.4  # the shared channel no longer reads as one voice
    plain = C.ScoreNorm(coh, top_k=12, scale=0.05)
    s_plain = plain.stats(p[None], False)
    assert s_plain[2][0] == 0.0 and s_plain[3][0] == pytest.approx(1.0)  # without centring: the raw cosine
    enc = "campplus@x"
    cal = C.QualityCalibration(enc, tuple([-1.0, 2.0] + [0.0] * 8), 1.0, provenance={"data": "test"}, norm=norm)
    cal.save(tmp_path / C.HOME_FILE)
    back = C.load(enc, tmp_path, shipped=False)
    assert back is not None and back.norm.centre and back.to_dict()["score_norm"]["centre"] is True
    cond = V.AudioCondition(8000.0, False, 30.0)
    ps1, ts1 = V.norm_stats(back, p, False), V.norm_stats(back, t, False)
    assert len(ps1) == 4
    bar = V.calibrated_bar(back, 3.0, cond, False, profile_stats=ps1, test_stats=ts1)
    assert V.calibrated_score(back, bar, 3.0, cond, False, ps1, ts1) == pytest.approx(back.threshold, abs=1e-9)


def test_domain_centre_follows_a_shared_channel_and_leaves_cohort_like_voices_alone(tmp_path) -> None:
    """``ScoreNorm.domain_centre``: enrolled voices that share a channel the cohort lacks move the centre to
    their mean (James-Stein weight near 1) and two of them stop reading as one voice; voices recorded like the
    cohort leave the cohort's mean (w = 0, None); too few voices, or a calibration without the flag, never
    move it. ``verify.Domain`` leaves the scored profile out, and with the same centre on both sides the
    calibrated cosine bar stays exact."""
    from idme.identity import verify as V
    from idme.identity.profiles import Profile

    rng = np.random.default_rng(3)
    d = 32
    base = rng.normal(size=d) * 0.6
    phone = rng.normal(size=d) * 0.6  # a line every deployment voice shares, none of the cohort

    def voices(n: int, extra=0.0) -> np.ndarray:
        v = rng.normal(size=(n, d)) * 0.25 + base + extra
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    coh = np.stack([voices(60), voices(60)])
    norm = C.ScoreNorm(coh, top_k=60, scale=0.05, file="cohort_x.npz", centre=True, domain=True)
    dep = voices(8, phone)
    at = norm.domain_centre(dep[1:].astype(np.float64).sum(axis=0), 7, False)
    assert at is not None
    w = float((at - norm._mean[0]) @ (dep[1:].mean(axis=0) - norm._mean[0])) / float(
        np.sum((dep[1:].mean(axis=0) - norm._mean[0]) ** 2))
    assert 0.8 < w <= 1.0
    p, t = dep[0], voices(1, phone)[0]  # two different voices on the same line
    plain = lambda x: norm.stats(x[None], False)  # noqa: E731
    dom = lambda x: norm.stats(x[None], False, centre_on=at)  # noqa: E731
    s_plain = float(norm.apply(float(p @ t), plain(p), plain(t))[0])
    s_dom = float(norm.apply(float(p @ t), dom(p), dom(t))[0])
    assert s_dom < s_plain - 0.05  # the line no longer counts as likeness
    like = voices(8)  # recorded like the cohort
    assert norm.domain_centre(like[1:].astype(np.float64).sum(axis=0), 7, False) is None
    assert norm.domain_centre(dep[1:3].astype(np.float64).sum(axis=0), 2, False) is None  # too few
    off = C.ScoreNorm(coh, top_k=60, scale=0.05, centre=True)
    assert off.domain_centre(dep[1:].astype(np.float64).sum(axis=0), 7, False) is None
    enc = "campplus@x"
    cal = C.QualityCalibration(enc, tuple([-1.0, 2.0] + [0.0] * 8), 1.0, provenance={"data": "test"}, norm=norm)
    cal.save(tmp_path / C.HOME_FILE)
    back = C.load(enc, tmp_path, shipped=False)
    assert back is not None and back.norm.domain and back.to_dict()["score_norm"]["domain"] is True
    profiles = [Profile(f"p{i}", {"name": "campplus", "version": "x"}, v[None]) for i, v in enumerate(dep)]
    domain = V.Domain(profiles)
    got = domain.centre_for(back, "p0", dep[0], False)
    assert got is not None and np.allclose(got, at)  # p0 itself left out
    cond = V.AudioCondition(8000.0, False, 30.0)
    ps, ts = V.norm_stats(back, p, False, got), V.norm_stats(back, t, False, got)
    bar = V.calibrated_bar(back, 3.0, cond, False, profile_stats=ps, test_stats=ts)
    assert V.calibrated_score(back, bar, 3.0, cond, False, ps, ts) == pytest.approx(back.threshold, abs=1e-9)


def test_far_field_degradation_reverberates_and_keeps_old_cache_keys() -> None:
    """The far-field room (the cohort's second recording) smears speech in time at the same peak level and is
    seeded (the same input gives the same output); a degradation without it keeps the cache key it always had,
    so embeddings cached before it existed stay valid."""
    rng = np.random.default_rng(0)
    x = np.zeros(16000, np.float32)
    x[8000] = 0.5  # a click: the output is the room's impulse response
    y = C.degrade(x, C.Degradation(rt60_s=0.5), "click")
    assert np.array_equal(y, C.degrade(x, C.Degradation(rt60_s=0.5), "click"))
    assert np.abs(y).max() == pytest.approx(0.5, rel=1e-6)
    tail = np.abs(y[8000 + 80:8000 + 4000])
    assert tail.mean() > 1e-3 and np.abs(y[:8000]).max() < 1e-9  # energy after the click, none before (FFT noise)
    speech = rng.standard_normal(16000).astype(np.float32) * 0.1
    assert C.degrade(speech, C.Degradation(), "s").tobytes() == speech.tobytes()
    assert C.Degradation(snr_db=15.0, narrowband=True).key() == "snr=15.0|nb=True|crop=None"
    assert C.Degradation(rt60_s=0.5).key().endswith("|rt60=0.5")
