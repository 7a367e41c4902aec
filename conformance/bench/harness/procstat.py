"""CPU time and resident memory of server processes, from /proc.

CPU per call is the growth of utime+stime of every process of a target over
a measured run, divided by the calls it served. PostgreSQL's share is counted
apart: every process whose parent is the postmaster, plus the postmaster's
own time and the time of the children it has reaped (cutime+cstime), so a
backend that exits between two samples (pgbench closes its connections) is
still counted once.
"""

from __future__ import annotations

import os

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        raw = f.read()
    # The command name is in parentheses and may contain spaces.
    return raw[raw.rindex(")") + 2 :].split()


def cpu_ticks(pid: int, reaped_children: bool = False) -> int:
    """utime+stime of `pid` (and cutime+cstime when `reaped_children`)."""
    try:
        f = _stat_fields(pid)
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    ticks = int(f[11]) + int(f[12])
    if reaped_children:
        ticks += int(f[13]) + int(f[14])
    return ticks


def cpu_seconds(pids: list[int]) -> float:
    """Total CPU seconds used so far by `pids`."""
    return sum(cpu_ticks(p) for p in pids) / TICKS_PER_S


def children_of(parent: int) -> list[int]:
    """The live processes whose parent is `parent`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if int(_stat_fields(int(name))[1]) == parent:
                out.append(int(name))
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return out


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of the whole PostgreSQL server so far (see the module doc)."""
    ticks = cpu_ticks(postmaster, reaped_children=True)
    ticks += sum(cpu_ticks(p) for p in children_of(postmaster))
    return ticks / TICKS_PER_S


def rss_bytes(pids: list[int]) -> int:
    """The sum of VmRSS of `pids`."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total
