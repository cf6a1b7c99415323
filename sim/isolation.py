"""What keeps agents apart and within bounds: the run's Sandbox and each agent's share of it.

The run's Sandbox checks the privileges the scenario needs (a clear IsolationError if they
are missing), makes the agents' Unix users (`isolation: users`, sim.users) and cgroups
(sim.cgroups), and undoes all of it at the end. Each AgentSandbox gives the agent's Shell a
ChildSetup, checks commands against the policy (sim.policy), logs the limits that bit, and
when the agent ends kills whatever it left running.

Setting up an agent's bash, in this order (joining a cgroup and making a namespace need the
root that the last step gives up):
  1. join the agent's cgroups (memory, pids)
  2. its rlimits (sim.limits)
  3. `network: false`: a network namespace of its own, loopback up, nothing else
  4. `isolation: users`: setgroups, setgid, setuid to the agent's user; no_new_privs, so no
     setuid program gives root back; umask 007, so shared/ files stay group-writable
With 3 or 4, all of it runs in the child between fork and exec. Without them, bash is not
forked from the harness but posix_spawned (sim._pty), and before it reads its first command
(so they bind all it will run) the harness sets its rlimits, then bash joins its cgroups
itself (see Shell's `pid_files`).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import secrets
import socket
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.cgroups import AgentCgroup, RunCgroups
from sim.errors import IsolationError
from sim.events import ResourceLimit, SandboxEnd, SandboxReport
from sim.limits import SIGNALLED, apply_rlimits, rlimits_for
from sim.policy import CommandPolicy
from sim.scenario import AgentConfig, Resources, Scenario
from sim.users import AgentUser, Users, check_privilege, check_reachable, kill_user
from sim.workspace import Owner, Workspace

if TYPE_CHECKING:
    from sim.shell import CommandResult
    from sim.tools.base import ToolContext

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PR_SET_NO_NEW_PRIVS = 38
# Python 3.11 has no os.unshare (3.12 does) and no prctl: ctypes, as in sim.shell's timerfd.
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ChildSetup:
    """How an agent's bash is confined, in two parts (module docstring). Everything it needs
    is computed in the parent; a failure raises, and Shell reports it as a ShellError."""

    cgroup_procs: tuple[str, ...] = ()
    network: bool = True
    rlimits: tuple[tuple[int, int], ...] = ()
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()

    def shell_kwargs(self) -> dict[str, Any]:
        """The Shell's seams. All of it in the child when part must be done there: that
        makes the start a fork of the harness (~10x the CPU of a posix_spawn), and the harness
        goes on before the child execs, so the parent cannot act on the child safely."""
        if not self.network or self.uid is not None:
            return {"preexec_fn": self.in_child}
        return {"on_spawn": self.set_rlimits, "pid_files": self.cgroup_procs}

    def in_child(self) -> None:
        """Between fork and exec, in the module docstring's order."""
        for path in self.cgroup_procs:
            with open(path, "w") as f:
                f.write(str(os.getpid()))
        self.set_rlimits(0)
        if not self.network:
            _own_network()
        if self.uid is not None and self.gid is not None:
            os.setgroups(list(self.groups))
            os.setgid(self.gid)
            os.setuid(self.uid)
            if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
            os.umask(0o007)

    def set_rlimits(self, pid: int) -> None:
        """Set the rlimits of process `pid` (0: this one)."""
        apply_rlimits(list(self.rlimits), pid)


def _own_network() -> None:
    """A new network namespace with only `lo`, brought up with the SIOCSIFFLAGS ioctl (no
    `ip` binary needed in the image). Raises OSError naming the step that failed."""
    if _libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)} (needs CAP_SYS_ADMIN)")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifreq = struct.pack("16sh22x", b"lo", 0)  # struct ifreq: name, flags, padding
            flags = struct.unpack("16sh22x", fcntl.ioctl(s, _SIOCGIFFLAGS, ifreq))[1]
            fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | _IFF_UP))
    except OSError as exc:
        raise OSError(
            exc.errno, f"bringing up loopback: {exc.strerror} (needs CAP_NET_ADMIN)"
        ) from None


def _can_make_network() -> str | None:
    """None if this process can give an agent its own network, else why not. Tried for real
    in a forked child (no exec: the interpreter may not be executable by every user; the
    child is gone in about a millisecond, so the wait blocks no one)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            _own_network()
        except OSError as exc:
            os.write(write_end, str(exc.strerror or exc).encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        said = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return said or f"the probe ended with status {status}"


@dataclass
class AgentSandbox:
    """One agent's confinement. `shell_kwargs` go to its Shell; `admit` and
    `after_command` wrap each bash command; `begin` and `end` bracket its life."""

    name: str
    policy: CommandPolicy
    setup: ChildSetup
    report: SandboxReport
    cgroup: AgentCgroup | None = None
    user: AgentUser | None = None
    _seen: dict[str, int] = field(default_factory=dict, init=False)  # counters reported

    def shell_kwargs(self) -> dict[str, Any]:
        kwargs = self.setup.shell_kwargs()
        if self.user is not None:  # bash must read the files long commands are sent through
            kwargs["command_file_gid"] = self.user.gid
        return kwargs

    def begin(self, ctx: ToolContext) -> None:
        ctx.events.emit(self.report, ctx.agent)

    def admit(self, ctx: ToolContext, command: str) -> None:
        """Raise PolicyError (logged as command_denied) if the policy refuses `command`."""
        self.policy.enforce(ctx, command)

    def after_command(self, ctx: ToolContext, result: CommandResult) -> None:
        """Log the limits that bit during a command. Only a command that failed is checked:
        reading the counters costs more than a fast command (the last check is at `end`)."""
        if result.exit_code == 0 and not result.timed_out and not result.restarted:
            return
        if (limit := SIGNALLED.get(result.exit_code or 0)) is not None:
            value = self.report.limits.get(limit)
            signame = "SIGXCPU" if limit == "cpu_seconds" else "SIGXFSZ"
            detail = f"exit code {result.exit_code} (128 + {signame}): {limit}={value} was hit"
            event = ResourceLimit(limit=limit, count=1, turn=ctx.turn, detail=detail)
            ctx.events.emit(event, ctx.agent)
        self._counters(ctx, ctx.turn)

    async def end(self, ctx: ToolContext) -> None:
        """After the shell closed: kill what is left of the agent (its user's processes, its
        cgroup), log the last limit counts and `sandbox_end`, remove its cgroup. Shielded
        by the caller."""
        killed = 0
        if self.user is not None:
            killed += await kill_user(self.user.uid, self.user.gid)
        if self.cgroup is not None:
            killed += await self.cgroup.kill_all()
            self._counters(ctx, 0)
        peak = self.cgroup.peak_memory_mb() if self.cgroup is not None else None
        ctx.events.emit(SandboxEnd(killed=killed, peak_memory_mb=peak), ctx.agent)
        if self.cgroup is not None:
            await self.cgroup.remove()

    def _counters(self, ctx: ToolContext, turn: int) -> None:
        if self.cgroup is None:
            return
        for limit, count in self.cgroup.counters().items():
            new = count - self._seen.get(limit, 0)
            if new <= 0:
                continue
            self._seen[limit] = count
            key = "memory_mb" if limit == "memory" else "pids"
            value = self.cgroup.limits.get(key)
            what = "processes killed by the OOM killer" if limit == "memory" else "forks refused"
            detail = f"the agent's process tree reached {key}={value}: {new} {what}"
            event = ResourceLimit(limit=limit, count=new, turn=turn, detail=detail)
            ctx.events.emit(event, ctx.agent)


class Sandbox:
    """The run's isolation. `await prepare()` after the workspace is seeded and set up;
    `await close()` at the end undoes what was done, even after a failed prepare."""

    def __init__(self, scenario: Scenario, workspace: Workspace, agents: list[AgentConfig]):
        self.scenario = scenario
        self.workspace = workspace
        self.configs = agents
        self.token = secrets.token_hex(4)
        self.users: Users | None = None
        self.cgroups: RunCgroups | None = None
        self.agents: dict[str, AgentSandbox] = {}

    async def prepare(self) -> None:
        """Raises IsolationError when the scenario asks for what this process cannot do."""
        scenario, configs = self.scenario, self.configs
        users_mode = scenario.isolation == "users"
        if users_mode:
            check_privilege()
            check_reachable(self.workspace.run_dir)
        offline = [c.name for c in configs if not c.spec.network]
        if offline and (why := _can_make_network()) is not None:
            raise IsolationError(
                f"network: false (agents {', '.join(offline)}) needs a network namespace per "
                f"agent, and this harness cannot make one ({why}). Run it as root, or in a "
                "container with --cap-add SYS_ADMIN --cap-add NET_ADMIN (see the README's "
                "security section), or remove network: false"
            )
        resources = {c.name: scenario.resources_for(c.spec) for c in configs}
        if any(r.memory_mb is not None or r.pids is not None for r in resources.values()):
            self.cgroups = RunCgroups(self.token)
        if users_mode:
            self.users = Users(self.token)
            await self.users.create(self.workspace, [c.name for c in configs])
            self.users.lay_out(self.workspace)
            shared_gid = self.users.gid if self.users.gid is not None else os.getgid()
            self.workspace.owners = {
                a: Owner(u.uid, u.gid, shared_gid) for a, u in self.users.users.items()
            }
        for cfg in configs:
            self.agents[cfg.name] = self._agent(cfg, resources[cfg.name])

    def _agent(self, cfg: AgentConfig, res: Resources) -> AgentSandbox:
        pairs, limits = rlimits_for(res)
        unavailable = []
        cgroup = None
        failed = ""
        if self.cgroups is not None and (res.memory_mb is not None or res.pids is not None):
            try:
                cgroup = self.cgroups.for_agent(cfg.name, res.memory_mb, res.pids)
                limits.update(cgroup.limits)
            except OSError as exc:  # the run's cgroup was made, the agent's could not be
                failed = f"cannot make the agent's cgroup: {exc}"
        for key, controller in (("memory_mb", "memory"), ("pids", "pids")):
            if getattr(res, key) is not None and (cgroup is None or key not in cgroup.limits):
                why = failed or (self.cgroups.unavailable if self.cgroups else {}).get(
                    controller, ""
                )
                unavailable.append(f"{key}: no cgroup for it here ({why})")
        user = self.users.users[cfg.name] if self.users is not None else None
        if user is None and os.geteuid() == 0:
            if limits.pop("processes", None) is not None:
                unavailable.append(
                    "processes: RLIMIT_NPROC does not bind root, and the agent runs as root "
                    "(isolation: users gives each agent a user it binds)"
                )
            if not cfg.spec.network:
                unavailable.append(
                    "network: the agent runs as root, so it could leave its namespace "
                    "(nsenter); isolation: users closes that"
                )
        setup = ChildSetup(
            cgroup_procs=cgroup.procs_files() if cgroup is not None else (),
            network=cfg.spec.network,
            rlimits=tuple(pairs),
            uid=user.uid if user else None,
            gid=user.gid if user else None,
            groups=(self.users.gid,) if user and self.users and self.users.gid is not None else (),
        )
        report = SandboxReport(
            isolation=self.scenario.isolation,
            user=user.user if user else _user_name(os.geteuid()),
            uid=user.uid if user else os.geteuid(),
            network=cfg.spec.network,
            limits=limits,
            unavailable=unavailable,
        )
        policy = CommandPolicy.for_agent(self.scenario, cfg)
        return AgentSandbox(cfg.name, policy, setup, report, cgroup, user)

    async def close(self) -> None:
        """Remove the users (handing their files back) and the run's cgroups. Never raises:
        it runs while the run ends, and the log must still get its `run_end`."""
        with contextlib.suppress(OSError):
            if self.users is not None:
                await self.users.remove(self.workspace)
        with contextlib.suppress(OSError):
            if self.cgroups is not None:
                for agent in self.agents.values():
                    if agent.cgroup is not None:
                        await agent.cgroup.kill_all()
                        await agent.cgroup.remove()
                await self.cgroups.remove()


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
