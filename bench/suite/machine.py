"""What a benchmark ran on: timings only mean something next to the machine, its load and the versions."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import resource
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

#: Distributions whose versions change the numbers (encoder runtime, maths, index, recognisers, resampler).
VERSIONED = ("idme", "onnxruntime", "numpy", "faiss-cpu", "faster-whisper", "ctranslate2", "vosk", "soxr",
             "webrtcvad-wheels")


@dataclass(frozen=True)
class MachineInfo:
    """The machine and software a run measured."""

    #: When the run started, ISO 8601 in UTC.
    date: str
    #: ``os.cpu_count()``: logical CPUs visible to the process.
    cpu_count: int | None
    #: First "model name" line of /proc/cpuinfo ("unknown" elsewhere).
    cpu_model: str
    #: 1-, 5- and 15-minute load averages when the run started: on a shared machine, other people's jobs.
    load_avg_start: tuple[float, float, float]
    python: str
    platform: str
    #: Distribution -> version (None when not installed).
    versions: dict[str, str | None]
    #: ``git describe``-style commit of the checkout, "+dirty" when it has local changes; None outside git.
    commit: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_commit(repo: Path) -> str | None:
    """Short commit hash of ``repo``, with "+dirty" when tracked files differ from it; None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def machine_info(repo: Path) -> MachineInfo:
    """Snapshot of the machine now (call it first: the load average is the load before the run)."""
    return MachineInfo(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        cpu_count=os.cpu_count(),
        cpu_model=cpu_model(),
        load_avg_start=tuple(round(x, 2) for x in os.getloadavg()),
        python=platform.python_version(),
        platform=platform.platform(),
        versions={d: _version(d) for d in VERSIONED},
        commit=git_commit(repo),
    )


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
