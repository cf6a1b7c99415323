"""What isolation costs: shell start-up with each confinement, users per agent, policy checks.

    sudo python bench/isolation.py [--spawns 20] [--agents 16]

Needs root for users, network namespaces and cgroups (the rows it cannot measure say so).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.cgroups import RunCgroups
from sim.environment import scrubbed_env
from sim.isolation import ChildSetup, _can_make_network
from sim.limits import rlimits_for
from sim.policy import CommandPolicy
from sim.scenario import Resources, validate_scenario
from sim.shell import Shell
from sim.users import Users
from sim.workspace import Workspace


async def spawn_ms(setup: ChildSetup | None, cwd: Path, n: int, **kw: object) -> float:
    """Median milliseconds from spawn to the first prompt, then one `true`."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        seams = setup.shell_kwargs() if setup is not None else {}
        async with Shell(cwd, scrubbed_env(os.environ, cwd), **seams, **kw) as shell:
            await shell.run("true", timeout=10)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main(spawns: int, agents: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="sim-bench-"))
    root.chmod(0o711)
    ws = Workspace(root / "run")
    names = [f"a{i}" for i in range(agents)]
    ws.create(names)
    pairs, _ = rlimits_for(Resources())  # type: ignore[call-arg]
    cwd = ws.agent_dir("a0")
    rows: list[tuple[str, str]] = []
    rows.append(("shell start, nothing", f"{await spawn_ms(None, cwd, spawns):.1f} ms"))
    limited = ChildSetup(rlimits=tuple(pairs))
    rows.append(("  + rlimits", f"{await spawn_ms(limited, cwd, spawns):.1f} ms"))
    cgroups = RunCgroups("bench")
    if cgroups.controllers:
        group = cgroups.for_agent("a0", memory_mb=512, pids=128)
        caged = ChildSetup(cgroup_procs=group.procs_files(), rlimits=tuple(pairs))
        rows.append(("  + cgroup join", f"{await spawn_ms(caged, cwd, spawns):.1f} ms"))
        await group.remove()
    else:
        rows.append(("  + cgroup join", f"n/a: {cgroups.unavailable}"))
    await cgroups.remove()
    if (why := _can_make_network()) is None:
        offline = ChildSetup(network=False, rlimits=tuple(pairs))
        rows.append(("  + network namespace", f"{await spawn_ms(offline, cwd, spawns):.1f} ms"))
    else:
        rows.append(("  + network namespace", f"n/a: {why}"))
    if os.geteuid() == 0:
        users = Users("bench")
        start = time.perf_counter()
        await users.create(ws, names)
        made = time.perf_counter() - start
        users.lay_out(ws)
        user = users.users["a0"]
        as_user = ChildSetup(uid=user.uid, gid=user.gid, groups=(users.gid or 0,))
        ms = await spawn_ms(as_user, cwd, spawns, command_file_gid=user.gid)
        rows.append(("  + own Unix user", f"{ms:.1f} ms"))
        start = time.perf_counter()
        await users.remove(ws)
        gone = time.perf_counter() - start
        rows.append((f"users: create {agents}", f"{made * 1000 / agents:.0f} ms per agent"))
        rows.append((f"users: remove {agents}", f"{gone * 1000 / agents:.0f} ms per agent"))
    data = {"name": "b", "commands": {"deny": [rf"\bcmd{i}\b" for i in range(20)]}}
    data["agents"] = [{"name": "a", "steps": [{"finish": "x"}]}]
    scenario = validate_scenario(data)
    policy = CommandPolicy.for_agent(scenario, scenario.expanded_agents()[0])
    command = "cd src && make -j2 test 2>&1 | tail -n 20"
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        policy.violation(command)
    per = (time.perf_counter() - start) / n * 1e6
    rows.append(("policy check, 20 deny rules", f"{per:.1f} µs per command"))
    for name, value in rows:
        print(f"{name:32} {value}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spawns", type=int, default=20)
    parser.add_argument("--agents", type=int, default=16)
    args = parser.parse_args()
    trio.run(main, args.spawns, args.agents)
