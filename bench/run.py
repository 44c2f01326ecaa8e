#!/usr/bin/env python
"""idme benchmark suite: one command, every number in docs/benchmarks.md.

    python bench/run.py --data ../shared/data [--out bench/results] [--quick]

Writes ``<out>/latest.json`` (and a dated copy), ``docs/benchmarks.md`` and ``docs/stage_costs.png``, and
prints the Markdown report on stdout; progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path

from suite.report import render_markdown, render_plot
from suite.runner import QUICK, Plan, run_all

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent


def _count(text: str) -> int | None:
    """``--asr-meetings`` / ``--latency-meetings`` value: a positive count, or "all"."""
    if text == "all":
        return None
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError("must be a positive number or 'all'")
    return n


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True,
                   help="shared data folder (meetings-dev/, ami-excerpts/, librispeech-*/)")
    p.add_argument("--out", type=Path, default=BENCH / "results", help="where the JSON results go")
    p.add_argument("--docs", type=Path, default=REPO / "docs",
                   help="where benchmarks.md and stage_costs.png go")
    p.add_argument("--scorer", type=Path, default=None,
                   help="score_meeting.py to cross-check DER against (default: <data>/../tools/score_meeting.py)")
    p.add_argument("--quick", action="store_true", help="smaller run (~3 min); live latency only smoke-tested")
    p.add_argument("--asr-meetings", type=_count, default=argparse.SUPPRESS,
                   help="meetings (shortest first) for file mode with a recogniser, or 'all'")
    p.add_argument("--latency-meetings", type=_count, default=argparse.SUPPRESS,
                   help="meetings (shortest first) played live, or 'all'")
    p.add_argument("--speed", type=float, default=argparse.SUPPRESS, dest="latency_speed",
                   help="live playback speed (1.0 = real time, the only comparable setting)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    """The default or quick plan, with any of its counts overridden on the command line."""
    base = QUICK if args.quick else Plan()
    overrides = {k: getattr(args, k) for k in ("asr_meetings", "latency_meetings", "latency_speed") if hasattr(args, k)}
    return dataclasses.replace(base, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not args.verbose:  # idme and faster-whisper log a line per enrolment / segment at INFO
        for name in ("idme", "faster_whisper"):
            logging.getLogger(name).setLevel(logging.WARNING)
    data = args.data.resolve()
    scorer = (args.scorer or data.parent / "tools" / "score_meeting.py").resolve()
    for path in (data / "meetings-dev", data / "ami-excerpts", data / "librispeech-test-other", scorer):
        if not path.exists():
            print(f"error: {path} not found (check --data / --scorer)", file=sys.stderr)
            return 2
    command = "python bench/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    result = run_all(data, scorer, args.out / "hyp", make_plan(args), REPO, command)

    args.out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"
    stamp = result.machine.date.replace(":", "").replace("+0000", "Z")
    for name in ("latest.json", f"{stamp}{'-quick' if args.quick else ''}.json"):
        (args.out / name).write_text(payload, encoding="utf-8")
    page = args.docs / "benchmarks.md"
    markdown = render_markdown(result, page.read_text(encoding="utf-8") if page.exists() else None)
    args.docs.mkdir(parents=True, exist_ok=True)
    (args.docs / "benchmarks.md").write_text(markdown, encoding="utf-8")
    render_plot(result, args.docs / "stage_costs.png")
    sys.stdout.write(markdown)
    logging.getLogger("bench").info("wrote %s, %s and %s", args.out / "latest.json", args.docs / "benchmarks.md",
                                    args.docs / "stage_costs.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
