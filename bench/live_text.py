#!/usr/bin/env python
"""Live text: how soon a turn in progress shows text, and what partial text costs the labels.

    nice -n 10 python bench/live_text.py --data ../shared/data [--meetings 2] [--asr moonshine]

Plays the shortest meetings-dev meetings through ``RealtimeFileSource`` at real time (the path ``idme
listen --file X --realtime`` takes) into the same ``LiveSession`` as ``idme listen``, twice: labels only
(``--asr none``) and with the recogniser (partial text on). It prints, per configuration:

- label latency p50/p95/max: ``latency_ms`` of each segment's first final label (from the arrival of the
  segment's last voiced audio to its label), as bench/run.py section 3 measures it;
- first partial text, two definitions of "speech start":
  - old (segment start): for each segment that got partial text, wall time from its own start (the VAD chunk
    start, which includes up to 0.3 s of VAD pre-roll, so the figure is on the long side; a segment that
    never got partial text is not counted at all, so it is also on the short side);
  - reference (voice onset): for each reference turn (reference.rttm) of at least ``interim_min_s`` (1.5 s),
    wall time from its voice onset (the turn's first 10 ms whose level is within 20 dB of the turn's loud
    level: the reference turns themselves start up to 0.5 s before the voice) to the first not-final event
    with text that started with the turn (event start within 0.5 s of the onset) and covers it. A turn
    without any is counted as "never" (its text came only with the final label);
- first text of any kind (partial or final), per segment of at least 1.5 s and per reference turn;
- partial requests transcribed / superseded or dropped (a newer request of the same segment replaced it, or
  the segment ended first).

Timing uses the source's own clock: ``RealtimeFileSource`` releases sample ``n`` at ``t0 + n / rate``, so
the speech at stream time ``s`` arrived at ``t0 + s``. Targets (issue 15): label p95 stays within the live
label target (previous figures: p50 ~175-185 ms, p95 ~240-250 ms), first partial text <= 1.5 s.
"""

from __future__ import annotations

import os

# Benchmarks enrol into throwaway homes, encrypted at rest like any other (issue 14): give them a passphrase
# when the caller set none, so `make bench` runs headless (a real home never gets this default).
os.environ.setdefault("IDME_PASSPHRASE", "idme-bench-throwaway-home")

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from suite.sessions import enrol_people, load_meetings, shortest  # noqa: E402
from suite.speed import open_recogniser  # noqa: E402

from idme.audio import RealtimeFileSource  # noqa: E402
from idme.eval.der import read_rttm  # noqa: E402
from idme.embed.campplus import CampPlusEmbedder  # noqa: E402
from idme.identity.thresholds import load as load_thresholds  # noqa: E402
from idme.live import LiveSession  # noqa: E402
from idme.pipeline import LabelOptions  # noqa: E402


class _Clock:
    """time.monotonic that remembers its first reading (the realtime source's t0)."""

    def __init__(self) -> None:
        self.t0: float | None = None

    def __call__(self) -> float:
        now = time.monotonic()
        if self.t0 is None:
            self.t0 = now
        return now


class _TracedRecogniser:
    """Forwards to a transcriber and records (start, end wall time, audio s, partial?, text) of every call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[dict] = []
        for attr in ("name", "version", "language"):
            setattr(self, attr, getattr(inner, attr, None))

    def load(self) -> None:
        load = getattr(self.inner, "load", None)
        if callable(load):
            load()

    def _call(self, fn, samples, offset_s, partial: bool):
        t0 = time.monotonic()
        out = fn(samples, offset_s)
        self.calls.append({"t0": t0, "t1": time.monotonic(), "audio_s": len(samples) / 16000,
                           "offset_s": offset_s, "partial": partial, "text": out.text})
        return out

    def transcribe(self, samples, offset_s=0.0):
        return self._call(self.inner.transcribe, samples, offset_s, False)

    def transcribe_partial(self, samples, offset_s=0.0):
        fn = getattr(self.inner, "transcribe_partial", self.inner.transcribe)
        return self._call(fn, samples, offset_s, True)


class _TimedSink:
    """Keeps (receive time, event) for every event."""

    def __init__(self) -> None:
        self.got: list[tuple[float, object]] = []

    def __call__(self, ev) -> None:
        self.got.append((time.monotonic(), ev))


def _pct(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    p50, p95 = np.percentile(values, [50, 95])
    return {"n": len(values), "p50": round(float(p50), 1), "p95": round(float(p95), 1),
            "max": round(float(max(values)), 1)}


def _voice_onsets(meeting, min_s: float) -> list[tuple[float, float]]:
    """(turn start, voice onset) in s of the meeting's reference turns of at least ``min_s``; the onset is
    the first 10 ms step inside
    the turn whose 30 ms level comes within 20 dB of the turn's loud level (95th percentile). The reference
    turns start at the LibriSpeech clip boundary, up to ~0.5 s of near-silence before the voice in about a
    quarter of them; this onset is where the person is heard to start, independent of idme's VAD."""
    from idme.audio import read_audio

    x = read_audio(meeting.wav)
    frames = np.lib.stride_tricks.sliding_window_view(x, 480)[::160]
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    out = []
    for seg in (t for segs in read_rttm(meeting.path / "reference.rttm").values() for t in segs):
        a, b = int(seg.start * 100), min(int(seg.end * 100), len(level))
        if seg.end - seg.start < min_s or b <= a:
            continue
        loud = np.percentile(level[a:b], 95)
        out.append((seg.start, (a + int(np.argmax(level[a:b] > loud - 20.0))) / 100))
    return sorted(out)


def play(meeting, embedder, profiles, thresholds, transcriber, trace: bool = False,
         segmenter: str = "webrtc") -> dict:
    """One meeting at real time; the raw figures of one run."""
    clock = _Clock()
    source = RealtimeFileSource(meeting.wav, speed=1.0, clock=clock)
    sink = _TimedSink()
    traced = _TracedRecogniser(transcriber) if (trace and transcriber is not None) else transcriber
    session = LiveSession(source, embedder, profiles, thresholds, transcriber=traced, sinks=[sink], live=True,
                          segmenter=segmenter)
    result = session.run()
    t0 = clock.t0
    labels, first_partial, first_text = [], [], []
    seen_final: set[int] = set()
    partial_at: dict[int, float] = {}
    text_at: dict[int, float] = {}
    shown_start: dict[int, float] = {}
    final_span: dict[int, float] = {}
    for at, ev in sink.got:
        if ev.final:
            if ev.id not in seen_final:
                seen_final.add(ev.id)
                shown_start[ev.id] = ev.audio_start  # the segment's speech start (before any gap filling)
                if ev.latency_ms is not None:
                    labels.append(ev.latency_ms)
                final_span[ev.id] = ev.end - ev.audio_start
        elif ev.text:
            partial_at.setdefault(ev.id, at)
        if ev.text:
            text_at.setdefault(ev.id, at)
    for sid, at in partial_at.items():
        if sid not in shown_start:
            continue
        first_partial.append((at - (t0 + shown_start[sid])) * 1000.0)
    min_s = LabelOptions().interim_min_s
    for sid, span in final_span.items():
        if span >= min_s and sid in text_at:
            first_text.append((text_at[sid] - (t0 + shown_start[sid])) * 1000.0)
    # The reference definition: from the voice onset of each reference turn of >= min_s (the moment the
    # person is heard to start, independent of idme's VAD and its pre-roll) to the first not-final event with
    # text that started with that turn and covers the onset; a turn that never gets partial text counts as
    # "never". "Started with that turn": the event starts between 0.5 s before the reference turn's start
    # (VAD pre-roll) and 0.5 s after the onset. (Until 2026-12-02 only within 0.5 s of the onset, which missed
    # segments the VAD rightly opened at the turn's start, up to 0.8 s before a quiet onset.)
    onsets = _voice_onsets(meeting, min_s)
    ref_partial, ref_text, ref_missed = [], [], 0
    for turn_start, onset in onsets:
        covers = [(at, ev) for at, ev in sink.got
                  if ev.text and turn_start - 0.5 <= ev.start <= onset + 0.5 and ev.end > onset]
        hit = next((at for at, ev in covers if not ev.final), None)
        if hit is None:
            ref_missed += 1
        else:
            ref_partial.append((hit - (t0 + onset)) * 1000.0)
        if covers:
            ref_text.append((covers[0][0] - (t0 + onset)) * 1000.0)
    worker = session.pipeline._worker  # counters of partial requests (bench only)
    stats = worker.stats() if worker is not None else None
    out = {"meeting": meeting.name, "audio_s": result.audio_s, "labels": labels, "first_partial": first_partial,
           "first_text": first_text, "segments": len(seen_final), "ref_partial": ref_partial,
           "ref_text": ref_text, "ref_missed": ref_missed, "ref_turns": len(onsets),
           "long_segments": sum(1 for s in final_span.values() if s >= min_s),
           "partials": stats.partials if stats else 0, "partials_refused": stats.partials_dropped if stats else 0}
    if trace:
        out["trace"] = {
            "calls": [{**c, "t0": round(c["t0"] - t0, 3), "t1": round(c["t1"] - t0, 3)}
                      for c in getattr(traced, "calls", [])],
            "events": [{"at": round(at - t0, 3), **ev.to_dict(), "audio_start": round(ev.audio_start, 3)}
                       for at, ev in sink.got],
            "onsets": onsets}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="shared data folder (meetings-dev/)")
    p.add_argument("--meetings", type=int, default=2, help="shortest meetings to play (default 2)")
    p.add_argument("--asr", default="moonshine", help="recogniser for the partial-text run (default moonshine)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--trace", action="store_true",
                   help="with --json: also record every recogniser call and event (for diagnosis)")
    p.add_argument("--text-only", action="store_true", help="skip the labels-only run")
    p.add_argument("--asr-nice", type=int, default=None,
                   help="nice increment of the transcription thread (default: Pipeline.transcribe_nice)")
    p.add_argument("--segmenter", default="webrtc", choices=("webrtc", "pyannote"),
                   help="live labeller, as `idme listen --segmenter` (default webrtc; pyannote at --latency 2)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.asr_nice is not None:
        from idme.pipeline import Pipeline

        Pipeline.transcribe_nice = args.asr_nice
    thresholds = load_thresholds("campplus")
    embedder = CampPlusEmbedder()
    embedder.load()
    meetings = shortest(load_meetings(args.data / "meetings-dev"), args.meetings)
    profiles = {m.name: enrol_people(m.takes(), embedder, thresholds) for m in meetings}
    rec = open_recogniser(args.asr)
    if rec.skipped:
        print(f"error: --asr {args.asr}: {rec.skipped}", file=sys.stderr)
        return 2
    report = {"meetings": [m.name for m in meetings], "asr": rec.model, "segmenter": args.segmenter, "configs": {}}
    configs = [("labels only", None)] if not args.text_only else []
    for name, transcriber in configs + [(rec.label, rec.transcriber)]:
        runs = [play(m, embedder, profiles[m.name], thresholds, transcriber, trace=args.trace,
                     segmenter=args.segmenter) for m in meetings]
        cfg = {"audio_s": round(sum(r["audio_s"] for r in runs), 1),
               "segments": sum(r["segments"] for r in runs),
               "label_ms": _pct([x for r in runs for x in r["labels"]]),
               "first_partial_ms": _pct([x for r in runs for x in r["first_partial"]]),
               "first_text_ms": _pct([x for r in runs for x in r["first_text"]]),
               "long_segments": sum(r["long_segments"] for r in runs),
               "ref_partial_ms": _pct([x for r in runs for x in r["ref_partial"]]),
               "ref_missed": sum(r["ref_missed"] for r in runs),
               "ref_text_ms": _pct([x for r in runs for x in r["ref_text"]]),
               "ref_turns": sum(r["ref_turns"] for r in runs),
               "partials": sum(r["partials"] for r in runs),
               "partials_refused": sum(r["partials_refused"] for r in runs)}
        if args.trace:
            cfg["runs"] = runs
        report["configs"][name] = cfg
        lab, fp, ft = cfg["label_ms"], cfg["first_partial_ms"], cfg["first_text_ms"]
        print(f"{name}: {cfg['audio_s']} s audio, {cfg['segments']} segments | label latency p50 {lab['p50']} "
              f"p95 {lab['p95']} max {lab['max']} ms", flush=True)
        if transcriber is not None:
            print(f"  speech start -> first partial text: n={fp['n']} p50 {fp['p50']} p95 {fp['p95']} "
                  f"max {fp['max']} ms (target <= 1500)", flush=True)
            rp = cfg["ref_partial_ms"]
            print(f"  voice onset -> first partial text (reference turns >= 1.5 s): n={rp['n']} "
                  f"(+{cfg['ref_missed']} never) p50 {rp['p50']} p95 {rp['p95']} max {rp['max']} ms", flush=True)
            rt = cfg["ref_text_ms"]
            print(f"  voice onset -> first text of any kind: n={rt['n']}/{cfg['ref_turns']} "
                  f"p50 {rt['p50']} p95 {rt['p95']} max {rt['max']} ms", flush=True)
            print(f"  speech start -> first text, segments >= 1.5 s: n={ft['n']}/{cfg['long_segments']} "
                  f"p50 {ft['p50']} p95 {ft['p95']} max {ft['max']} ms", flush=True)
            print(f"  partial requests transcribed {cfg['partials']}, superseded or dropped "
                  f"{cfg['partials_refused']}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
