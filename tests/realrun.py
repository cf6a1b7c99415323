"""Helpers for tests that run whole scenarios with real shells, users, namespaces, cgroups."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sim.cgroups import detect
from sim.events import read_events
from sim.runner import Run, RunResult
from sim.scenario import validate_scenario

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: Unix users, namespaces and cgroups are made by root"
)


def needs_cgroup(controller: str) -> pytest.MarkDecorator:
    found = detect()
    why = found.missing.get(controller, "")
    return pytest.mark.skipif(
        not IS_ROOT or controller not in found.found,
        reason=f"no usable cgroup {controller} controller here: {why or 'not root'}",
    )


def run_scenario(
    runs_dir: Path, data: dict[str, Any], env: dict[str, str] | None = None, **kw: Any
) -> tuple[RunResult, list[dict[str, Any]]]:
    scenario = validate_scenario(data)

    async def main() -> RunResult:
        run = Run(scenario, runs_dir=runs_dir, env=dict(os.environ) if env is None else env, **kw)
        return await run.execute()

    result = trio.run(main)
    return result, read_events(result.run_dir / "events.jsonl").events


def of(events: list[dict[str, Any]], kind: str, agent: str | None = None) -> list[dict[str, Any]]:
    return [e for e in events if e["kind"] == kind and (agent is None or e["agent"] == agent)]


def outputs(events: list[dict[str, Any]], agent: str) -> list[str]:
    return [e["output"] for e in of(events, "command", agent)]


def steps(*commands: str) -> list[dict[str, str]]:
    return [*({"bash": c} for c in commands), {"finish": "done"}]


def scenario(agents: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "iso",
        "limits": {"max_turns": 20, "wall_time": 60, "command_timeout": 20},
        "agents": agents,
    }
    data.update(top)
    return data


def processes_with(needle: bytes) -> list[int]:
    """Live processes whose command line or environment contains `needle`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                    continue
            blob = Path(f"/proc/{name}/cmdline").read_bytes()
            blob += Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in blob:
            found.append(int(name))
    return found


def sim_users() -> set[str]:
    return {p.pw_name for p in pwd.getpwall() if p.pw_name.startswith("sim-")}


def as_nobody(fn: Callable[[], int]) -> int:
    """Run `fn` in a forked child that dropped root for nobody; return its exit status.
    (The harness's interpreter may sit where nobody cannot exec it, so no exec here.)"""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
