"""One Unix user per agent (`isolation: users`): create, lay out permissions, kill, remove.

    run dir, workspace/, agents/   root, 0711: agents pass through, cannot list
    events.jsonl, meta.json, scenario.yaml   0600: other agents' commands and outputs
    agents/<name>/                 the agent's user, 0700: nobody else gets in
    shared/ (and below)            root:<run group>, 2770 / g+rw: every agent, through the
                                   group; setgid, so new files keep the group (agents' umask
                                   is 007)

Users are named `sim-<token>-<n>` (token: random per run, so two runs never share a user),
created with useradd and removed with userdel at the end of the run, when the workspace is
handed back to the harness's own user (the uids are freed, and a later user must not inherit
these files). Killing a user's processes is `kill(-1, SIGKILL)` sent as that user: the kernel
walks every process once, so a fork loop cannot outrun it, and `setsid`/`nohup` do not hide
from it; a /proc scan then confirms none is left.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import trio

from sim.errors import IsolationError
from sim.workspace import Workspace

_NEEDED_CAPS = {0: "CHOWN", 1: "DAC_OVERRIDE", 3: "FOWNER", 5: "KILL", 6: "SETGID", 7: "SETUID"}


@dataclass(frozen=True)
class AgentUser:
    agent: str
    user: str
    uid: int
    gid: int


def check_privilege() -> None:
    """Raise IsolationError saying what is missing unless users can be made and switched to."""
    if os.geteuid() != 0:
        raise IsolationError(
            f"isolation: users needs the harness to run as root, to create one Unix user per "
            f"agent and run each agent's shell as it; it runs as uid {os.geteuid()}. Run it as "
            "root (in the container: docker run --user root ..., see the README's security "
            "section), or set isolation: none"
        )
    missing = [name for bit, name in _NEEDED_CAPS.items() if not _has_cap(bit)]
    if missing:
        raise IsolationError(
            f"isolation: users needs the capabilities {', '.join(missing)}, which this root "
            f"lacks; add them (docker run --cap-add {' --cap-add '.join(missing)}) or set "
            "isolation: none"
        )
    for tool in ("useradd", "userdel", "groupadd", "groupdel"):
        if shutil.which(tool) is None:
            raise IsolationError(
                f"isolation: users needs {tool} (Debian package passwd); install it, or set "
                "isolation: none"
            )


def check_reachable(run_dir: Path) -> None:
    """Raise IsolationError unless other users may pass through every parent of `run_dir`
    (the agents' users need to, for absolute paths such as $SIM_SHARED)."""
    for parent in run_dir.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise IsolationError(
                f"isolation: users: the agents' users cannot pass through {parent} (mode "
                f"{stat.S_IMODE(mode):o}), so they could not reach the run directory "
                f"{run_dir}; allow it (chmod o+x {parent}) or choose a --runs-dir whose "
                "parents all can be passed through"
            )


def _has_cap(bit: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError):
        pass
    return True  # cannot tell: let the operation itself fail with its own error


async def _tool(*argv: str) -> None:
    """Run useradd and friends. They refuse, rather than wait, while another one holds the
    lock on /etc/passwd (two runs starting at once): retry for a few seconds then."""
    for attempt in range(50):
        result = await trio.run_process(
            list(argv), check=False, capture_stdout=True, stderr=subprocess.STDOUT
        )
        said = result.stdout.decode(errors="replace").strip()
        if result.returncode == 0:
            return
        if "cannot lock" not in said or attempt == 49:
            break
        await trio.sleep(0.1)
    raise IsolationError(f"{' '.join(argv)} failed (exit {result.returncode}): {said}")


class Users:
    """The run's group and its agents' users. `remove` undoes whatever `create` got done."""

    def __init__(self, token: str) -> None:
        self.group = f"sim-{token}"
        self.gid: int | None = None
        self.users: dict[str, AgentUser] = {}

    async def create(self, workspace: Workspace, agents: list[str]) -> None:
        await _tool("groupadd", self.group)
        self.gid = grp.getgrnam(self.group).gr_gid
        for n, agent in enumerate(agents):
            user = f"{self.group}-{n}"
            await _tool(
                "useradd",
                "--no-create-home",
                "--no-log-init",
                "--home-dir",
                str(workspace.agent_dir(agent)),
                "--shell",
                "/bin/bash",
                "--user-group",
                "--groups",
                self.group,
                "--comment",
                f"sim agent {agent}",
                user,
            )
            entry = pwd.getpwnam(user)
            self.users[agent] = AgentUser(agent, user, entry.pw_uid, entry.pw_gid)

    def lay_out(self, workspace: Workspace) -> None:
        """Set owners and modes as the module docstring says (after seeding and setup)."""
        assert self.gid is not None
        for path in (workspace.run_dir, workspace.root, workspace.agents_root):
            os.chmod(path, 0o711)
        for path in (workspace.events_path, workspace.meta_path, workspace.scenario_path):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, 0o600)
        for agent, user in self.users.items():
            _chown_tree(workspace.agent_dir(agent), user.uid, user.gid, shared=False)
            os.chmod(workspace.agent_dir(agent), 0o700)
        _chown_tree(workspace.shared, os.getuid(), self.gid, shared=True)

    async def remove(self, workspace: Workspace) -> None:
        """Kill whatever the users still run, hand the workspace back to the harness's
        user, then delete the users and the group."""
        for user in self.users.values():
            await kill_user(user.uid, user.gid)
        if self.users:
            for agent in self.users:
                with contextlib.suppress(OSError):
                    _chown_tree(workspace.agent_dir(agent), os.getuid(), os.getgid(), None)
            with contextlib.suppress(OSError):
                _chown_tree(workspace.shared, os.getuid(), os.getgid(), None)
        for user in list(self.users.values()):
            with contextlib.suppress(IsolationError):
                await _tool("userdel", user.user)
        self.users.clear()
        if self.gid is not None:
            with contextlib.suppress(IsolationError):
                await _tool("groupdel", self.group)
            self.gid = None


def _chown_tree(top: Path, uid: int, gid: int, shared: bool | None) -> None:
    """lchown everything under `top` (symlinks are not followed: agents may have made them).
    shared=True: dirs 2770 and group bits = owner bits; False: owner only; None: modes kept."""
    for dirpath, dirnames, filenames in os.walk(top):
        for name in [*dirnames, *filenames]:
            _own(os.path.join(dirpath, name), uid, gid, shared)
    _own(str(top), uid, gid, shared)


def _own(path: str, uid: int, gid: int, shared: bool | None) -> None:
    st = os.lstat(path)
    os.lchown(path, uid, gid)
    if shared is None or stat.S_ISLNK(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        os.chmod(path, 0o2770 if shared else 0o700)
    else:
        owner = st.st_mode & 0o700
        os.chmod(path, owner | (owner >> 3) if shared else owner)


def user_pids(uid: int) -> set[int]:
    """Live (non-zombie) processes whose real or effective uid is `uid`."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            status = Path(f"/proc/{name}/status").read_text()
        except OSError:
            continue
        uids: list[str] = []
        zombie = False
        for line in status.splitlines():
            if line.startswith("State:"):
                zombie = line.split()[1] == "Z"
            elif line.startswith("Uid:"):
                uids = line.split()[1:3]
                break
        if not zombie and str(uid) in uids:
            found.add(int(name))
    return found


async def kill_user(uid: int, gid: int, deadline: float = 5.0) -> int:
    """SIGKILL every process of `uid` until none is left; how many there were."""
    seen: set[int] = set()
    with trio.move_on_after(deadline):
        while pids := user_pids(uid):
            seen |= pids
            # bash's builtin kill, run as the user: kill(-1) spares only the sender itself.
            await trio.run_process(
                ["bash", "-c", "kill -KILL -1"],
                user=uid,
                group=gid,
                extra_groups=[],
                check=False,
                capture_stdout=True,
                capture_stderr=True,
            )
            await trio.sleep(0.005)
    return len(seen)
