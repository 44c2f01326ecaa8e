"""verify (1:1) and identify (1:N, open set) on real speech with the real CAM++ encoder (issue 12)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from idme.api import Idme
from idme.audio import AudioFrame, read_audio
from idme.errors import AudioError, IdmeError, ProfileError
from idme.identity import verify as V
from idme.eval.calibration import SHIPPED as C_SHIPPED
from idme.identity.thresholds import DEFAULTS
from idme.settings import resolve
from idme.vad import speech_only

from clihelp import cli, ok, one_error_line, refused
from conftest import BOB_TAKE, DATA, OWNER_TAKES

BOB_TEST = DATA / "ls_2414_128291-0009.flac"  # speaker 2414, another utterance than BOB_TAKE
STRANGER = DATA / "ls_367_130732-0006.flac"  # speaker 367, never enrolled
CAROL_TAKE = DATA / "ls_3005_163389-0007.flac"  # speaker 3005
DIGIT_8K = DATA / "fsdd_1_george_0.wav"  # 8 kHz, about 0.5 s
TH = DEFAULTS["campplus"]


def _narrowband(x: np.ndarray) -> np.ndarray:
    """16 kHz speech as an 8 kHz recording would carry it (anti-aliased by soxr), float32 at 8 kHz."""
    return soxr.resample(x, 16000, 8000, quality="HQ").astype(np.float32)


@pytest.fixture(scope="module")
def home(tmp_path_factory, campplus) -> Path:
    """A store with the owner (3 takes of examples/enroll), bob (speaker 2414) and carol (speaker 3005)."""
    h = tmp_path_factory.mktemp("verify-home")
    idme = Idme(resolve(h, asr="none"), embedder=campplus)
    idme.enroll_files("me", OWNER_TAKES)
    idme.enroll_files("bob", [BOB_TAKE])
    idme.enroll_files("carol", [CAROL_TAKE])
    return h


@pytest.fixture(scope="module")
def idme(home, campplus) -> Idme:
    return Idme(resolve(home, asr="none"), embedder=campplus)


# -- the condition of the audio -------------------------------------------------------------------------
def test_bandwidth_tells_telephone_audio_from_wideband() -> None:
    """Wideband speech reads about 8 kHz of bandwidth; the same speech through an 8 kHz channel (resampled
    back to 16 kHz) and real 8 kHz recordings read about 4 kHz and count as narrow-band."""
    from idme.audio.resample import StreamResampler

    wide = speech_only(read_audio(BOB_TEST))
    rs = StreamResampler(8000, 16000)
    phone = np.concatenate([rs.process(_narrowband(wide)), rs.flush()])
    assert V.estimate_bandwidth(wide) >= 7000
    assert V.estimate_bandwidth(phone) <= V.NARROWBAND_EDGE_HZ
    assert V.estimate_bandwidth(read_audio(DIGIT_8K)) <= V.NARROWBAND_EDGE_HZ
    assert V.audio_condition(phone).narrowband and not V.audio_condition(wide).narrowband


def test_snr_estimate_follows_added_noise() -> None:
    """White noise added at 20, 10 and 5 dB below the speech power reads within 3 dB of that SNR, and lower
    SNRs read lower."""
    x = read_audio(BOB_TEST)
    power = float(np.mean(speech_only(x).astype(np.float64) ** 2))
    rng = np.random.default_rng(0)
    got = []
    for snr in (20.0, 10.0, 5.0):
        noisy = (x + rng.standard_normal(len(x)) * np.sqrt(power / 10 ** (snr / 10))).astype(np.float32)
        got.append(V.estimate_snr_db(noisy))
        assert abs(got[-1] - snr) <= 3.0, (snr, got[-1])
    assert got[0] > got[1] > got[2]
    assert V.estimate_snr_db(np.zeros(16000, np.float32)) is None


# -- 1:1 -----------------------------------------------------------------------------------------------
def test_verify_accepts_the_same_voice_and_rejects_another(idme, campplus) -> None:
    """Another utterance of bob is accepted as bob, a stranger is rejected; the score is the shipped
    calibration's LLR of the cosine of the trimmed speech's embedding with bob's voiceprint (reported too),
    held to the calibration's one LLR threshold."""
    yes = idme.verify("bob", BOB_TEST)
    no = idme.verify("bob", STRANGER)
    assert (yes.decision, no.decision) == (V.ACCEPT, V.REJECT)
    cal = idme.calibration()
    assert yes.calibrated and yes.threshold == no.threshold == cal.threshold
    bob, emb = idme.profiles.get("bob"), campplus.embed(speech_only(read_audio(BOB_TEST)))
    expected = V.score(bob, emb)
    assert yes.cosine == pytest.approx(expected, abs=1e-6)
    stats = V.norm_stats(cal, bob.centroid, False), V.norm_stats(cal, emb, False)  # None unless AS-normalised
    # rel 1e-6: the centred AS-norm score moves ~160 LLR units per cosine unit, so float32 rounding of the
    # cosine (~1e-8) shows at ~1e-6 in the LLR
    assert yes.score == pytest.approx(V.calibrated_score(cal, expected, yes.speech_s, yes.condition, False, *stats),
                                      rel=1e-6)
    assert yes.score >= yes.threshold > no.score and yes.cosine > no.cosine
    assert yes.speech_s >= 1.0 and yes.condition.native_rate == 16000 and not yes.condition.narrowband
    assert "below the threshold" in no.reason


def test_verify_owner_from_samples_and_frames(idme) -> None:
    """The owner is verified from raw samples with their rate and from an AudioFrame alike, at the ``me``
    bar; an array without its rate is refused."""
    x = read_audio(OWNER_TAKES[2])
    a = idme.verify("me", x, sample_rate=16000)
    b = idme.verify("Me", AudioFrame(x, 16000))
    assert a.decision == b.decision == V.ACCEPT and a.score == pytest.approx(b.score)
    assert a.threshold == idme.calibration().threshold and a.calibrated
    with pytest.raises(AudioError, match="sample_rate"):
        idme.verify("me", x)


def test_too_little_speech_is_a_decision_not_a_crash(idme) -> None:
    """Empty audio, digital silence and a 0.5 s spoken digit give not_enough_speech with no score; an
    unknown name gives not_enrolled; nothing is embedded or scored for them."""
    for audio in (np.zeros(0, np.float32), np.zeros(3 * 16000, np.float32)):
        c = idme.verify("bob", audio, sample_rate=16000)
        assert c.decision == V.NOT_ENOUGH_SPEECH and c.score is None and c.speech_s == 0.0
        assert "no speech" in c.reason
    short = idme.verify("bob", DIGIT_8K)
    assert short.decision == V.NOT_ENOUGH_SPEECH and 0 < short.speech_s < 1.0
    assert short.condition.narrowband and short.condition.native_rate == 8000
    nobody = idme.verify("dave", BOB_TEST)
    assert nobody.decision == V.NOT_ENROLLED and nobody.name == "dave" and "idme enroll --name dave" in nobody.reason


def test_narrowband_profile_and_test_use_the_narrowband_bar(tmp_path, campplus) -> None:
    """A profile enrolled from 8 kHz audio, tested on 8 kHz audio, is accepted with the calibration's
    both-narrow-band terms (the LLR differs from the same cosine scored as wideband); without a calibration
    it is held to the ``narrowband`` cosine bar, and on wideband audio to the ``enrolled`` bar."""
    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    take = _narrowband(read_audio(BOB_TAKE))
    idme.enroll("bob", [("bob 8k", soxr.resample(take, 8000, 16000).astype(np.float32))], [8000])
    phone = idme.verify("bob", AudioFrame(_narrowband(read_audio(BOB_TEST)), 8000))
    assert phone.condition.narrowband and phone.decision == V.ACCEPT and phone.calibrated
    cal = idme.calibration()
    bob, emb = idme.profiles.get("bob"), campplus.embed(speech_only(soxr.resample(
        _narrowband(read_audio(BOB_TEST)), 8000, 16000).astype(np.float32)))
    both = V.calibrated_score(cal, phone.cosine, phone.speech_s, phone.condition, True,
                              V.norm_stats(cal, bob.centroid, True), V.norm_stats(cal, emb, True))
    wide = V.AudioCondition(8000.0, False, phone.condition.snr_db)
    as_wide = V.calibrated_score(cal, phone.cosine, phone.speech_s, wide, False,
                                 V.norm_stats(cal, bob.centroid, False), V.norm_stats(cal, emb, False))
    # (this embedding is resampled by soxr, verify's by the stream resampler: AS-norm statistics move a little)
    assert phone.score == pytest.approx(both, abs=0.05) and abs(phone.score - as_wide) > 0.2
    x = _narrowband(read_audio(BOB_TEST))
    raw = V.check(idme.profiles.get("bob"), soxr.resample(x, 8000, 16000).astype(np.float32), campplus, TH,
                  native_rate=8000)
    wide = V.check(idme.profiles.get("bob"), read_audio(BOB_TEST), campplus, TH, native_rate=16000)
    assert raw.threshold == TH.narrowband and not raw.calibrated and raw.score == raw.cosine
    assert not wide.condition.narrowband and wide.threshold == TH.enrolled


def _digits(talker: str, take: int, digits) -> np.ndarray:
    """FSDD clips of one talker and take joined by 0.1 s of silence, float32 at 8 kHz."""
    gap = np.zeros(800, np.float32)
    parts = [sf.read(DATA / f"fsdd_{d}_{talker}_{take}.wav", dtype="float32")[0] for d in digits]
    return np.concatenate([x for part in parts for x in (part, gap)][:-1])


def test_a_channel_all_enrolled_voices_share_does_not_let_one_pass_for_another(tmp_path, campplus) -> None:
    """Four real telephone-rate (8 kHz FSDD) talkers enrolled in one store, each tested on six digits of a take
    never enrolled: the shared line and wording make george and yweweler score like one voice against the
    read-speech cohort (both impostor trials pass with the store's centring turned off), but centred on the
    store's other voices (``verify.Domain``) both are rejected while both still pass as themselves."""
    files = {}
    for talker in ("george", "jackson", "nicolas", "yweweler"):
        files[talker] = tmp_path / f"{talker}.wav"
        sf.write(files[talker], _digits(talker, 0, range(10)), 8000, subtype="PCM_16")
    tests = {t: (_digits(t, 3, range(1, 7)), 8000) for t in ("george", "yweweler")}
    homes = {}
    for how in ("store", "cohort"):
        h = tmp_path / how
        h.mkdir()
        idme = Idme(resolve(h, asr="none"), embedder=campplus)
        if how == "cohort":  # the shipped calibration with the store's centring turned off
            cal = json.loads(C_SHIPPED.read_text())
            cal["score_norm"]["domain"] = False
            (h / "calibration.json").write_text(json.dumps(cal))
            shutil.copy(C_SHIPPED.parent / cal["score_norm"]["cohort"], h)
        for talker, f in files.items():
            idme.enroll_files(talker, [f], force=True)
        homes[how] = idme
    assert homes["store"].calibration().norm.domain and not homes["cohort"].calibration().norm.domain
    for test, claim in (("george", "yweweler"), ("yweweler", "george")):
        x, rate = tests[test]
        assert homes["cohort"].verify(claim, x, sample_rate=rate, remember=False).decision == V.ACCEPT
        r = homes["store"].verify(claim, x, sample_rate=rate, remember=False)
        assert r.decision == V.REJECT and r.condition.narrowband and r.calibrated, r
        own = homes["store"].verify(test, x, sample_rate=rate, remember=False)
        assert own.decision == V.ACCEPT and own.score > r.score + 10.0
    who = homes["store"].identify(tests["george"][0], sample_rate=8000)
    assert who.decision == V.ACCEPT and who.name == "george"


def test_the_store_domain_is_read_once_and_follows_changes(tmp_path, campplus) -> None:
    """``Idme.verify`` and ``Idme.identify`` search and centre on the store's voices without reading every
    profile per call: the same store gallery while the store's files are unchanged, a new one (with the new
    voice and its sum) after an enrolment or removal."""
    from idme.identity.profiles import Profile

    idme = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    rng = np.random.default_rng(0)

    def add(name: str) -> None:
        v = rng.normal(size=(1, campplus.dimension)).astype(np.float32)
        idme.profiles.save(Profile(name, dict(idme.encoder_info), v / np.linalg.norm(v), [{"native_rate": 16000}]))

    for n in ("a", "b", "c"):
        add(n)
    first = idme._store_cache()[1].get()
    assert idme._store_cache()[1].get() is first and idme._domain()._count == {False: 3}
    add("d")
    second = idme._store_cache()[1].get()
    assert second is not first and idme._domain()._count == {False: 4} and len(second) == 4
    idme.profiles.remove("d", force=True)
    assert idme._domain()._count == {False: 3} and len(idme._store_cache()[1].get()) == 3


def test_a_profile_of_another_encoder_is_refused(tmp_path, home, campplus) -> None:
    """A profile whose encoder version differs from the running encoder's is refused with a ProfileError
    saying how to re-enrol, for verify and identify alike."""
    h = tmp_path / "store"
    shutil.copytree(home, h)
    from conftest import set_profile_encoder_version

    set_profile_encoder_version(h, "bob", "other-weights")
    idme = Idme(resolve(h, asr="none"), embedder=campplus)
    with pytest.raises(ProfileError, match="re-enrol"):
        idme.verify("bob", BOB_TEST)
    with pytest.raises(ProfileError, match="re-enrol"):
        idme.identify(BOB_TEST)


# -- 1:N -----------------------------------------------------------------------------------------------
def test_identify_names_the_speaker_or_nobody(idme) -> None:
    """Bob's voice is identified as bob; a stranger is nobody (reject) with every profile still listed best
    first; both results state the gallery size, the threshold raised by ln N over the 1:1 one, and
    FPIR = N x FAR at that raised threshold."""
    import math

    c = idme.identify(BOB_TEST, top=5)
    assert c.decision == V.ACCEPT and c.name == "bob"
    assert [m.name for m in c.candidates][0] == "bob" and len(c.candidates) == 3
    cal = idme.calibration()
    assert c.base_threshold == cal.threshold and c.threshold == pytest.approx(cal.threshold + math.log(3))
    assert c.gallery_size == 3 and c.expected_fpir == pytest.approx(3 * cal.far_at(c.threshold))
    assert cal.far_at(c.threshold) < cal.far_at(cal.threshold) and "rises with the gallery" in c.reason
    s = idme.identify(STRANGER, top=2)
    assert s.decision == V.REJECT and s.name is None and len(s.candidates) == 2
    assert s.candidates[0].score >= s.candidates[1].score and not s.candidates[0].accepted
    assert "nobody enrolled matches" in s.reason and "gallery size x FAR" in s.reason


def test_identify_top_is_capped_and_empty_gallery_is_not_enrolled(idme, tmp_path, campplus) -> None:
    """top must lie in 1..50 (Azure's cap); a store with nobody enrolled answers not_enrolled."""
    for bad in (0, V.MAX_TOP + 1):
        with pytest.raises(IdmeError, match="top must be"):
            idme.identify(BOB_TEST, top=bad)
    empty = Idme(resolve(tmp_path, asr="none"), embedder=campplus).identify(BOB_TEST)
    assert empty.decision == V.NOT_ENROLLED and empty.gallery_size == 0


def test_runner_up_passing_its_own_bar_is_not_taken() -> None:
    """identify takes the best-scoring profile only if it passes its own bar, like the tracker: a runner-up
    with a lower bar does not win (decision logic, fixed vectors)."""
    from idme.identity.profiles import Profile

    enc = {"name": "t", "version": "1", "dimension": 2}
    owner = Profile("me", enc, np.array([[1.0, 0.0]], np.float32))
    ann = Profile("ann", enc, np.array([[0.0, 1.0]], np.float32))
    th = DEFAULTS["campplus"].__class__(me=0.9, enrolled=0.3, same_unknown=0.5, merge=0.5, change=0.3)
    q = np.array([0.8, 0.6], np.float32)  # me 0.8 (< 0.9), ann 0.6 (>= 0.3)
    matches = V.identify([owner, ann], q, th)
    c = V._identified(matches, 2.0, V.AudioCondition(8000.0, False, 30.0), 2)
    assert c.decision == V.REJECT and [m.name for m in c.candidates] == ["me", "ann"]


# -- the CLI -------------------------------------------------------------------------------------------
def test_cli_verify_and_identify(home) -> None:
    """`idme verify` prints accept/reject (exit 0 either way), `--json` one object; `idme identify --json`
    lists the candidates with the gallery size."""
    r = ok(cli("verify", "--home", home, "--name", "bob", BOB_TEST))
    assert "ACCEPT" in r.stdout and "LLR" in r.stdout and "cosine" in r.stdout
    r = ok(cli("verify", "--home", home, "--name", "bob", STRANGER, "--json"))
    obj = json.loads(r.stdout)
    from idme.eval.calibration import SHIPPED

    assert obj["decision"] == "reject" and obj["threshold"] == json.loads(SHIPPED.read_text())["threshold"]
    assert obj["calibrated"] and obj["score"] < obj["threshold"] and -1 <= obj["cosine"] <= 1
    assert obj["speech_s"] > 1
    assert set(obj["condition"]) == {"bandwidth_hz", "narrowband", "snr_db", "native_rate"}
    r = ok(cli("identify", "--home", home, BOB_TEST, "--top", "2", "--json"))
    obj = json.loads(r.stdout)
    assert obj["name"] == "bob" and obj["gallery_size"] == 3 and len(obj["candidates"]) == 2
    r = ok(cli("identify", "--home", home, STRANGER))
    assert "nobody enrolled" in r.stdout and "ln 3" in r.stdout


def test_cli_bad_input_is_one_line_and_exit_1(home, tmp_path) -> None:
    """An unknown name, silent audio, a spoken digit too short to score, an empty file and a profile made by
    another encoder: exit 1 with one error line; `--top 51` is a usage error (exit 2)."""
    other = tmp_path / "other-encoder"
    shutil.copytree(home, other)
    from conftest import set_profile_encoder_version

    set_profile_encoder_version(other, "carol", "other-weights")
    refused(cli("verify", "--home", other, "--name", "carol", BOB_TEST), "re-enrol")
    refused(cli("identify", "--home", other, BOB_TEST), "re-enrol")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(2 * 16000, np.float32), 16000)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    refused(cli("verify", "--home", home, "--name", "dave", BOB_TEST), "no profile 'dave'")
    refused(cli("verify", "--home", home, "--name", "bob", silent), "no speech")
    refused(cli("identify", "--home", home, DIGIT_8K), "only 0.5 s of speech")
    r = cli("verify", "--home", home, "--name", "bob", empty)
    assert r.exit_code == 1 and r.stdout == ""
    one_error_line(r.stderr)
    r = cli("verify", "--home", home, "--name", "bob", silent, "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["decision"] == "not_enough_speech"
    one_error_line(r.stderr, "no speech")
    assert cli("identify", "--home", home, BOB_TEST, "--top", "51").exit_code == 2
