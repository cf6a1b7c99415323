"""Memory and process-count limits for each agent as a whole, through cgroups.

An rlimit binds one process; a cgroup binds an agent's whole tree, whatever it forks or
`setsid`s. Machines differ: cgroup v2 alone, v1 alone, or a hybrid where each controller lives
on one of them (notes/container.md: here memory and pids are on v1, v2 has neither). So each
controller is looked up on its own, under the harness's own cgroup (never above it), and one
that is missing, read-only or cannot be delegated is reported with the reason, never guessed.

    <harness cgroup>/sim-<token>/<agent>/   one per agent; its bash is put in it at start

Nothing here blocks for long: cgroup files are in memory, and the only waits (killing and
removing) are trio sleeps.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import trio

CONTROLLERS = ("memory", "pids")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Hierarchy:
    """Where one controller can be used: the harness's own cgroup directory for it."""

    controller: str
    version: int  # 1 or 2
    path: Path

    def describe(self) -> str:
        return f"{self.controller}: cgroup v{self.version} at {self.path}"


@dataclass
class Detected:
    found: dict[str, Hierarchy] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # controller -> why it is unavailable


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, root, mount point, super options) of every cgroup mount in a mountinfo text."""
    out = []
    for line in mountinfo.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, tail = pre.split(), post.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            out.append((tail[0], fields[3], fields[4], set(tail[2].split(","))))
    return out


def _inside(mount_point: str, mount_root: str, cgroup_path: str) -> Path | None:
    """The directory of `cgroup_path` under a mount of `mount_root`, if the mount shows it."""
    root = mount_root.rstrip("/")
    if cgroup_path != root and not cgroup_path.startswith(root + "/"):
        return None
    return Path(mount_point + cgroup_path[len(root) :])


def detect(proc: Path = Path("/proc/self")) -> Detected:
    """Find, for each of memory and pids, the harness's cgroup directory that offers it."""
    out = Detected()
    try:
        own = (proc / "cgroup").read_text()
        mounts = _mounts((proc / "mountinfo").read_text())
    except OSError as exc:
        for c in CONTROLLERS:
            out.missing[c] = f"cannot read {proc}/cgroup or mountinfo ({exc.strerror})"
        return out
    v1: dict[str, str] = {}
    v2_path: str | None = None
    for line in own.splitlines():
        hid, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if hid == "0" and not names:
            v2_path = path
        for name in names.split(","):
            v1[name] = path
    for c in CONTROLLERS:
        out.missing[c] = "no cgroup v1 or v2 hierarchy here offers it"
        for fstype, root, point, opts in mounts:
            if fstype == "cgroup" and c in opts and c in v1:
                where = _inside(point, root, v1[c])
                if where is not None and where.is_dir():
                    out.found[c] = Hierarchy(c, 1, where)
                    break
            elif fstype == "cgroup2" and v2_path is not None:
                where = _inside(point, root, v2_path)
                if where is None or not where.is_dir():
                    continue
                try:
                    offered = (where / "cgroup.controllers").read_text().split()
                except OSError:
                    offered = []
                if c in offered:
                    out.found[c] = Hierarchy(c, 2, where)
                    break
        if c in out.found:
            del out.missing[c]
    return out


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_counter(path: Path, key: str) -> int:
    """`key N` from a flat-keyed cgroup file such as memory.events; 0 if absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class AgentCgroup:
    """One agent's cgroup directories (one per hierarchy that holds a controller we use)."""

    dirs: dict[str, Path]  # controller -> directory
    versions: dict[str, int]
    limits: dict[str, int]  # memory_mb, pids: what was written

    def procs_files(self) -> tuple[str, ...]:
        """Files bash's pid is written to, before bash runs a command (see sim.isolation)."""
        return tuple(sorted({str(d / "cgroup.procs") for d in self.dirs.values()}))

    def counters(self) -> dict[str, int]:
        """How often each limit bit: memory -> OOM kills, pids -> refused forks."""
        out = {}
        if (d := self.dirs.get("memory")) is not None:
            if self.versions["memory"] == 1:
                out["memory"] = _read_counter(d / "memory.oom_control", "oom_kill")
            else:
                out["memory"] = _read_counter(d / "memory.events", "oom_kill")
        if (d := self.dirs.get("pids")) is not None:
            out["pids"] = _read_counter(d / "pids.events", "max")
        return out

    def peak_memory_mb(self) -> float | None:
        if (d := self.dirs.get("memory")) is None:
            return None
        name = "memory.max_usage_in_bytes" if self.versions["memory"] == 1 else "memory.peak"
        try:
            return round(int((d / name).read_text()) / _MIB, 1)
        except (OSError, ValueError):
            return None

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in set(self.dirs.values()):
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
        return found

    async def kill_all(self, deadline: float = 5.0) -> int:
        """SIGKILL every process in the cgroup until none is left; how many were killed.
        v2 has cgroup.kill; v1 is a loop, which converges because forks are capped."""
        killed: set[int] = set()
        with trio.move_on_after(deadline):
            while victims := self.pids():
                for d in set(self.dirs.values()):
                    if (d / "cgroup.kill").exists():
                        with contextlib.suppress(OSError):
                            _write(d / "cgroup.kill", "1")
                for pid in victims:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                killed |= victims
                await trio.sleep(0.005)
        return len(killed)

    async def remove(self) -> None:
        """rmdir each directory; a cgroup lingers briefly while its last tasks exit."""
        for d in set(self.dirs.values()):
            await _rmdir(d)


async def _rmdir(path: Path, tries: int = 200) -> None:
    for _ in range(tries):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
            await trio.sleep(0.005)


class RunCgroups:
    """The run's cgroup (`sim-<token>`) in each hierarchy; per-agent children on demand."""

    def __init__(self, token: str, detected: Detected | None = None) -> None:
        self.detected = detected if detected is not None else detect()
        self.unavailable: dict[str, str] = dict(self.detected.missing)
        self._roots: dict[str, Path] = {}  # controller -> the run's directory
        self._versions: dict[str, int] = {}
        for controller, hier in self.detected.found.items():
            root = hier.path / f"sim-{token}"
            try:
                root.mkdir(exist_ok=True)
                if hier.version == 2:  # v2 delegates controllers down, one level at a time
                    _write(hier.path / "cgroup.subtree_control", f"+{controller}")
                    _write(root / "cgroup.subtree_control", f"+{controller}")
            except OSError as exc:
                why = exc.strerror or str(exc)
                if exc.errno == errno.EBUSY:
                    why += (
                        " (the harness's cgroup holds processes; start it in a cgroup of its own)"
                    )
                self.unavailable[controller] = f"{hier.describe()}: cannot use it ({why})"
                continue
            self._roots[controller] = root
            self._versions[controller] = hier.version

    @property
    def controllers(self) -> list[str]:
        return sorted(self._roots)

    def for_agent(self, name: str, memory_mb: int | None, pids: int | None) -> AgentCgroup:
        """Make the agent's cgroup with these limits (None: no limit, no cgroup for it)."""
        wanted = {"memory": memory_mb, "pids": pids}
        dirs: dict[str, Path] = {}
        written: dict[str, int] = {}
        for controller, root in self._roots.items():
            value = wanted[controller]
            if value is None:
                continue
            d = root / name
            d.mkdir(exist_ok=True)
            dirs[controller] = d
            if controller == "pids":
                _write(d / "pids.max", str(value))
            elif self._versions[controller] == 1:
                _write(d / "memory.limit_in_bytes", str(value * _MIB))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    _write(d / "memory.memsw.limit_in_bytes", str(value * _MIB))
            else:
                _write(d / "memory.max", str(value * _MIB))
                with contextlib.suppress(OSError):
                    _write(d / "memory.swap.max", "0")
            written["memory_mb" if controller == "memory" else "pids"] = value
        return AgentCgroup(dirs, {c: self._versions[c] for c in dirs}, written)

    async def remove(self) -> None:
        for root in set(self._roots.values()):
            for child in [p for p in root.iterdir() if p.is_dir()]:
                await _rmdir(child)
            await _rmdir(root)
