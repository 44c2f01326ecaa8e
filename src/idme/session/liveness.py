"""Which process writes a session, to tell a live recording from one whose writer crashed.

A session row records its writer's host, pid and (on Linux) the process start time from
``/proc/<pid>/stat``. A "running" session whose writer is gone (or is a zombie, or whose pid now belongs
to a process started at another time) is reported as "incomplete". A writer on another host cannot be
checked, so it is assumed alive: never call a session dead that might still be recording.
"""

from __future__ import annotations

import os
import socket
import sys


def this_process() -> tuple[str, int, str]:
    """(host name, pid, start time) of this process, as stored in a session row."""
    pid = os.getpid()
    return socket.gethostname(), pid, linux_start_time(pid)[1] or ""


def linux_start_time(pid: int) -> tuple[str, str | None]:
    """(state, start time in clock ticks) from /proc/<pid>/stat; ("", None) when not on Linux / gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return "", None
    # Field 2 (comm) is in parentheses and may contain spaces: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("", None)


def writer_alive(host: str, pid: int, started: str) -> bool:
    """False only when the writer is known to be gone: same host, and no such process (or another one)."""
    if not pid or host != socket.gethostname():
        return True  # another machine (or unknown): cannot tell, so do not call it dead
    if sys.platform.startswith("linux"):
        state, ticks = linux_start_time(pid)
        if ticks is None or state in ("Z", "X"):  # gone, or a zombie nobody has reaped yet
            return False
        return not started or ticks == started  # a different start time: the pid was reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. Windows semantics
        return True
    return True


def effective_status(status: str, host: str, pid: int, started: str) -> str:
    """The stored status, or "incomplete" for a "running" session whose writer is gone."""
    if status == "running" and not writer_alive(host, pid, started):
        return "incomplete"
    return status
