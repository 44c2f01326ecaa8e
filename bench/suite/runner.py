"""The whole benchmark: what a run measures (Plan), in which order, and everything it found (BenchResult)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from idme.embed.campplus import CampPlusEmbedder
from idme.identity.thresholds import load as load_thresholds

from .costs import CostResult, measure_costs
from .latency import LatencyResult, measure_latency
from .machine import MachineInfo, machine_info, peak_rss_mib
from .quality import AmiQuality, MeetingQuality, score_ami, score_meetings
from .robustness import CONDITIONS, RobustnessResult, evaluate, half_pairs, trial_list_pairs
from .sessions import enrol_people, load_meetings, shortest
from .speed import FileModeResult, Recogniser, measure_file_mode, open_recogniser

log = logging.getLogger(__name__)

#: Largest growth of the live label p50 that adding a recogniser may cause, ms: labels must never wait
#: for text (the issue's acceptance bar).
MAX_P50_GROWTH_MS = 50.0


@dataclass(frozen=True)
class Plan:
    """How much of each measurement one run does (the default run, or ``QUICK``)."""

    #: ``--asr`` values measured in file mode besides "none" (always measured, on every meeting).
    recognisers: tuple[str, ...] = ("moonshine", "whisper", "vosk")
    #: File mode with a recogniser runs on this many of the shortest meetings (None: all). Recognisers
    #: cost 0.5-1 s per second of audio on 2 shared cores, so all six meetings would take ~25 minutes.
    asr_meetings: int | None = 2
    #: The recogniser the live latency is measured with (beside labels only).
    live_asr: str = "moonshine"
    #: Live runs play this many of the shortest meetings (each takes its duration / speed of wall time).
    latency_meetings: int | None = 2
    #: Live playback speed; only 1.0 gives latencies comparable to live use.
    latency_speed: float = 1.0
    #: AMI excerpts scored (first in UEM order; None: all).
    ami_files: int | None = None
    #: Verification conditions (names from robustness.CONDITIONS).
    conditions: tuple[str, ...] = tuple(c.name for c in CONDITIONS)
    #: train-clean-100 speakers used for the unseen-speaker trials (None: all).
    unseen_speakers: int | None = None
    #: Non-target trials drawn for the unseen-speaker check.
    unseen_nontarget: int = 5000
    #: Repeats of each one-off cost timing.
    repeats: int = 7


#: The --quick plan: under ~3 minutes; live latency at 4x speed is only a smoke test of the live path.
QUICK = Plan(recognisers=("moonshine",), asr_meetings=1, latency_meetings=1, latency_speed=4.0, ami_files=4,
             conditions=("full utterances", "test side 2 s"), unseen_speakers=30, repeats=3)


@dataclass
class BenchResult:
    """Everything one run measured; ``to_dict`` is bench/results/latest.json."""

    machine: MachineInfo
    plan: Plan
    command: str
    file_mode: list[FileModeResult] = field(default_factory=list)
    meetings: MeetingQuality | None = None
    ami: AmiQuality | None = None
    latency: list[LatencyResult] = field(default_factory=list)
    costs: CostResult | None = None
    robustness: list[RobustnessResult] = field(default_factory=list)
    #: Wall seconds per section, and peak RSS (MiB) of the process after it.
    section_s: dict[str, float] = field(default_factory=dict)
    rss_after_mib: dict[str, float] = field(default_factory=dict)
    load_avg_end: tuple[float, float, float] | None = None
    elapsed_s: float = 0.0

    @property
    def peak_rss_mib(self) -> float:
        return max(self.rss_after_mib.values(), default=0.0)

    def latency_growth_ms(self) -> float | None:
        """Live label p50 with the recogniser minus without (None unless both ran)."""
        p50 = {r.asr: r.to_dict()["label_latency_ms"]["p50"] for r in self.latency if not r.skipped}
        if "none" not in p50 or self.plan.live_asr not in p50 or None in (p50["none"], p50[self.plan.live_asr]):
            return None
        return p50[self.plan.live_asr] - p50["none"]

    def to_dict(self) -> dict:
        growth = self.latency_growth_ms()

        def opt(x):
            return None if x is None else x.to_dict()

        return {
            "machine": self.machine.to_dict(), "plan": asdict(self.plan), "command": self.command,
            "elapsed_s": round(self.elapsed_s, 1), "load_avg_end": self.load_avg_end,
            "peak_rss_mib": round(self.peak_rss_mib, 1),
            "section_s": {k: round(v, 1) for k, v in self.section_s.items()},
            "rss_after_mib": {k: round(v, 1) for k, v in self.rss_after_mib.items()},
            "file_mode": [r.to_dict() for r in self.file_mode],
            "meetings_dev": opt(self.meetings), "ami": opt(self.ami),
            "latency": [r.to_dict() for r in self.latency],
            "latency_check": {"label_p50_growth_ms": growth, "max_ms": MAX_P50_GROWTH_MS,
                              "ok": None if growth is None else growth <= MAX_P50_GROWTH_MS},
            "costs": opt(self.costs),
            "robustness": [r.to_dict() for r in self.robustness],
        }


@contextmanager
def section(result: BenchResult, name: str) -> Iterator[None]:
    """Times one section and records the process's peak RSS after it."""
    log.info("== %s", name)
    t0 = time.perf_counter()
    yield
    result.section_s[name] = time.perf_counter() - t0
    result.rss_after_mib[name] = peak_rss_mib()
    log.info("== %s done in %.1f s", name, result.section_s[name])


def run_all(data: Path, scorer: Path, hyp_dir: Path, plan: Plan, repo: Path, command: str) -> BenchResult:
    """Runs every section on the data under ``data`` (the shared data folder); see bench/README.md."""
    t_start = time.perf_counter()
    result = BenchResult(machine_info(repo), plan, command)
    thresholds = load_thresholds("campplus")  # shipped defaults: no user calibration is read

    with section(result, "setup: encoder, enrolment"):
        embedder = CampPlusEmbedder()
        t0 = time.perf_counter()
        embedder.load()
        encoder_load_s = time.perf_counter() - t0
        meetings = load_meetings(data / "meetings-dev")
        profiles = {m.name: enrol_people(m.takes(), embedder, thresholds) for m in meetings}

    with section(result, "enrolment and verification cost"):
        # The first meeting with a named guest: its owner is enrolled and re-enrolled, the guest is the
        # other profile every enrolment must be told apart from.
        first = next((m for m in meetings if len(m.takes()) > 1), meetings[0])
        take_paths = [path for _, path in first.takes()["me"]]
        other_paths = [path for who, takes in first.takes().items() if who != "me" for _, path in takes]
        verify_path = trial_list_pairs(data / "librispeech-test-other" / "trials.txt")[0].test.path
        result.costs = measure_costs(embedder, encoder_load_s, take_paths, other_paths, verify_path, plan.repeats)

    with section(result, "file mode, labels only, meetings-dev"):
        labels_only, sessions = measure_file_mode(Recogniser("none"), meetings, embedder, profiles, thresholds)
        result.file_mode.append(labels_only)

    with section(result, "quality: meetings-dev"):
        result.meetings = score_meetings(meetings, sessions, scorer, hyp_dir)

    with section(result, "quality: AMI excerpts (no profiles)"):
        result.ami = score_ami(data / "ami-excerpts", embedder, thresholds, hyp_dir, plan.ami_files)

    recognisers = {"none": Recogniser("none")}  # each model is loaded once, for file mode and live runs

    def recogniser(asr: str) -> Recogniser:
        if asr not in recognisers:
            recognisers[asr] = open_recogniser(asr)
        return recognisers[asr]

    for asr in plan.recognisers:
        with section(result, f"file mode, --asr {asr}"):
            fm, _ = measure_file_mode(recogniser(asr), shortest(meetings, plan.asr_meetings), embedder, profiles,
                                      thresholds)
            result.file_mode.append(fm)

    live_meetings = shortest(meetings, plan.latency_meetings)
    for asr in ("none", plan.live_asr):
        with section(result, f"live latency, --asr {asr}, x{plan.latency_speed:g}"):
            result.latency.append(measure_latency(recogniser(asr), live_meetings, plan.latency_speed, embedder,
                                                  profiles, thresholds))

    with section(result, "verification robustness"):
        conditions = [c for c in CONDITIONS if c.name in plan.conditions]
        ls = data / "librispeech-test-other"
        result.robustness.append(evaluate(
            "librispeech-test-other", "trials.txt: whole files, 10 speakers",
            trial_list_pairs(ls / "trials.txt"), conditions, embedder, thresholds.me, thresholds.narrowband))
        files = sorted((data / "librispeech-train-clean-100").glob("*.flac"))[:plan.unseen_speakers]
        result.robustness.append(evaluate(
            "librispeech-train-clean-100", f"unseen speakers: halves of one utterance each, {len(files)} speakers",
            half_pairs(files, plan.unseen_nontarget), conditions, embedder, thresholds.me, thresholds.narrowband))

    result.load_avg_end = tuple(round(x, 2) for x in os.getloadavg())
    result.elapsed_s = time.perf_counter() - t_start
    return result
