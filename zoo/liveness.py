"""Whether the process that wrote something in the store may still be writing it.

Temp dirs and generations are named ``<key>.<pid>@<host>.<random>``; ``zoo gc`` and the next
write remove those whose writer is dead. A pid is judged only on the host (and, on Linux,
the pid namespace) that made it, and only when that process started before the thing was
last written (a reused pid is not the writer).
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path

# A pid whose process started this long after the temp dir was last written is not its writer.
CLOCK_SLACK_S = 60.0


@functools.cache
def host() -> str:
    """Who can judge our pids: this host, and on Linux this pid namespace (containers sharing
    a store volume and a hostname each see other pids as dead)."""
    name = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:63]
    try:
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        return name
    return f"{name}-{namespace}"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def writer_alive(pid: int, last_written: float) -> bool:
    """Whether process ``pid`` may still be the writer of something last written at
    ``last_written``: it runs, and (where the OS tells) it started before that write."""
    if not alive(pid):
        return False
    started = started_at(pid)
    return started is None or started <= last_written + CLOCK_SLACK_S


def started_at(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), on Linux; None where it cannot be told."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")
