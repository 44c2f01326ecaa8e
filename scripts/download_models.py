#!/usr/bin/env python3
"""Install the models idme uses: verify the bundled CAM++, download Vosk and ECAPA, or copy them in.

    python scripts/download_models.py                      # campplus (verify) + vosk + ecapa
    python scripts/download_models.py --only ecapa
    python scripts/download_models.py --only vosk --from ~/Downloads/vosk-model-small-en-us-0.15.zip
    python scripts/download_models.py --only ecapa --from /media/usb/spkrec-ecapa-voxceleb/

Progress and messages go to stderr. Exit status: 0 when every requested model is installed and
verified, 1 when one failed, 2 for a usage error. ``idme models download`` calls :func:`main`'s
library half, :func:`idme.models.ensure_models`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    from idme import models
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from idme import models
from idme.cli.progress import RichProgress


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed so ``idme models download`` can mirror its options)."""
    short_names = ", ".join(spec.short for spec in models.SPECS.values())
    parser = argparse.ArgumentParser(
        prog="download_models.py",
        description="Install idme's models (default: verify campplus, fetch vosk and ecapa).")
    parser.add_argument("--only", action="append", metavar="MODEL",
                        help=f"model to install ({short_names}); repeat or comma-separate")
    parser.add_argument("--from", dest="from_path", metavar="PATH",
                        help="install from a local directory, .zip or .tar.gz instead of "
                             "downloading (needs exactly one --only)")
    parser.add_argument("--dest", metavar="DIR",
                        help=f"models directory (default: {models.models_dir()})")
    parser.add_argument("--force", action="store_true",
                        help="reinstall even if a valid copy is already there")
    parser.add_argument("--no-resume", dest="resume", action="store_false",
                        help="discard partial downloads instead of continuing them")
    parser.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                        help="network timeout for name lookup, connect and each read (default 15)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, install the requested models, print one line per model; exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        specs = models.parse_keys(args.only)
    except ValueError as exc:
        parser.error(str(exc))  # exits 2
    if args.from_path is not None and len(specs) != 1:
        parser.error("--from needs exactly one model: add --only <model>")

    from rich.console import Console

    console = Console(stderr=True, highlight=False)
    with RichProgress() as progress:
        results = models.ensure_models(specs, args.dest, args.from_path, progress,
                                       timeout_s=args.timeout, resume=args.resume, force=args.force)
    for result in results:
        style = "green" if result.ok else "bold red"
        console.print(result.message, style=style, soft_wrap=True, markup=False)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
