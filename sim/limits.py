"""Per-process resource limits (prlimit) for an agent's shell and everything it starts.

They are worked out in the harness (clamped to the harness's own hard limits: without
CAP_SYS_RESOURCE a limit can be lowered, never raised, notes/container.md) and set on bash
before it reads its first command (see sim.isolation), so all it starts inherits them. Soft
and hard are the same: an agent cannot raise its own limit back.

What each one does when hit:
- cpu_seconds: the process gets SIGXCPU (exit code 152 in bash) after that much CPU time,
  SIGKILL one second later if it ignores that.
- address_space_mb: allocations fail (MemoryError in Python, ENOMEM in C).
- processes: fork fails with EAGAIN once the agent's Unix user has that many processes. It
  counts every process of the user, so it is exact with `isolation: users`, counts the
  harness too without it, and binds nothing for root.
- file_size_mb: a write past it gets SIGXFSZ (exit code 153 in bash).
- open_files: open fails with EMFILE.
"""

from __future__ import annotations

import resource
import signal

from sim.scenario import Resources

_MIB = 1024 * 1024
# scenario field -> (rlimit, unit in bytes or 1)
RLIMITS: dict[str, tuple[int, int]] = {
    "cpu_seconds": (resource.RLIMIT_CPU, 1),
    "address_space_mb": (resource.RLIMIT_AS, _MIB),
    "processes": (resource.RLIMIT_NPROC, 1),
    "file_size_mb": (resource.RLIMIT_FSIZE, _MIB),
    "open_files": (resource.RLIMIT_NOFILE, 1),
}
# Exit codes bash reports for a child killed by an rlimit's signal -> the limit's name.
SIGNALLED = {
    128 + signal.SIGXCPU: "cpu_seconds",
    128 + signal.SIGXFSZ: "file_size_mb",
}


def rlimits_for(res: Resources) -> tuple[list[tuple[int, int]], dict[str, int | None]]:
    """The (rlimit, value) pairs to set on the agent's bash, and the effective value of each limit
    in the scenario's units (None: unlimited). A value above the harness's own hard limit is
    lowered to it, since raising a hard limit needs a privilege the harness may not have."""
    pairs: list[tuple[int, int]] = []
    effective: dict[str, int | None] = {}
    for name, (which, unit) in RLIMITS.items():
        wanted: int | None = getattr(res, name)
        hard = resource.getrlimit(which)[1]
        if wanted is None:
            effective[name] = None if hard == resource.RLIM_INFINITY else hard // unit
            continue
        value = wanted * unit
        if hard != resource.RLIM_INFINITY and value > hard:
            value = hard
        pairs.append((which, value))
        effective[name] = value // unit
    return pairs, effective


def apply_rlimits(pairs: list[tuple[int, int]], pid: int) -> None:
    """Set each limit of process `pid` (0: this one), soft = hard, except that CPU time gets
    one second of grace: at soft the kernel sends SIGXCPU (which says what happened), at
    hard SIGKILL, which would read like any other kill. Children inherit them at fork."""
    for which, value in pairs:
        hard = value
        if which == resource.RLIMIT_CPU:
            ceiling = resource.getrlimit(which)[1]
            hard = value + 1 if ceiling == resource.RLIM_INFINITY else min(value + 1, ceiling)
        resource.prlimit(pid, which, (value, hard))
