"""Resource limits for real: rlimits in the shell, cgroups around the agent, hostile loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from sim.errors import ScenarioError
from sim.scenario import validate_scenario
from tests.realrun import (
    needs_cgroup,
    needs_root,
    of,
    outputs,
    processes_with,
    run_scenario,
    scenario,
    steps,
)

NO_CGROUP = {"memory_mb": None, "pids": None}
# Fork without end; each copy also waits on the terminal, so none exits on its own.
FORK_BOMB = "bomb() { bomb | bomb & }; bomb"
# A builtin wait (no fork: the agent's process table is full).
WAIT = "read -t 2 x < /dev/tty; echo still-here"
# Builtins only: the agent's own count of its processes, and its pids cgroup's.
COUNT_OWN = "n=0; for d in /proc/[0-9]*; do [[ -O $d ]] && ((n++)); done; echo $n"
COUNT_CGROUP = (
    "while IFS=: read -r _ c p; do [[ $c == pids ]] && "
    "read -r n < /sys/fs/cgroup/pids$p/pids.current; done < /proc/self/cgroup; echo $n"
)


def test_rlimits_reach_the_shell_and_what_they_stop_is_logged(tmp_path: Path) -> None:
    res = {
        **NO_CGROUP,
        "cpu_seconds": 1,
        "file_size_mb": 1,
        "address_space_mb": 1024,
        "open_files": 64,
    }
    data = scenario(
        [
            {
                "name": "a",
                "steps": steps(
                    "echo $(ulimit -t) $(ulimit -f) $(ulimit -v) $(ulimit -n)",
                    "head -c 3000000 /dev/zero > big.bin",
                    "python3 -c \"b = b'x' * (2048 * 2**20)\" 2>&1 | tail -n 1",
                    "bash -c 'while :; do :; done'",
                    "echo survived",
                ),
            }
        ],
        resources=res,
    )
    result, events = run_scenario(tmp_path, data)
    assert result.status == "completed"
    out = outputs(events, "a")
    assert out[0].split() == ["1", str(1024), str(1024 * 1024), "64"]  # -f and -v in KiB
    assert (result.run_dir / "workspace/agents/a/big.bin").stat().st_size == 1024 * 1024
    assert out[2].strip() == "MemoryError"
    assert out[4].strip() == "survived"
    codes = [c["exit_code"] for c in of(events, "command", "a")]
    assert codes[1] == 128 + 25 and codes[3] == 128 + 24  # SIGXFSZ, SIGXCPU
    hits = [(e["limit"], e["turn"]) for e in of(events, "resource_limit", "a")]
    assert hits == [("file_size_mb", 2), ("cpu_seconds", 4)]
    (report,) = of(events, "sandbox", "a")
    assert report["limits"]["cpu_seconds"] == 1 and report["limits"]["open_files"] == 64


def count(output: str) -> int:
    """The number a counting command printed, on a line of its own. The bomb's processes
    share the terminal and may print `bash: fork: retry: ...` before or after it."""
    return int(re.findall(r"^\d+$", output, re.MULTILINE)[-1])


@needs_cgroup("pids")
def test_fork_bomb_is_held_by_the_agents_pids_cgroup(runs_dir: Path) -> None:
    data = scenario(
        [{"name": "a", "steps": steps(FORK_BOMB, WAIT, COUNT_CGROUP)}],
        resources={"pids": 48, "memory_mb": None},
    )
    result, events = run_scenario(runs_dir, data)
    out = outputs(events, "a")
    assert result.status == "completed", result.reason
    assert "Resource temporarily unavailable" in "".join(out), out
    assert 10 <= count(out[2]) <= 48, out  # it ran wild in its cgroup, no further
    hits = of(events, "resource_limit", "a")
    assert hits and hits[0]["limit"] == "pids" and hits[0]["count"] >= 1
    assert "pids=48" in hits[0]["detail"]
    assert of(events, "agent_end", "a")[0]["reason"] == "finished"
    assert processes_with(str(result.run_dir).encode()) == []  # nothing of it is left


@needs_root
def test_fork_bomb_is_held_by_nproc_under_users_isolation(runs_dir: Path) -> None:
    data = scenario(
        [
            {"name": "a", "steps": steps(FORK_BOMB, WAIT, COUNT_OWN)},
            {"name": "b", "steps": steps(WAIT, "ls / | wc -l")},
        ],
        isolation="users",
        resources={**NO_CGROUP, "processes": 40},
    )
    result, events = run_scenario(runs_dir, data)
    out = outputs(events, "a")
    assert result.status == "completed", result.reason
    assert "Resource temporarily unavailable" in "".join(out), out
    assert 10 <= count(out[2]) <= 40, out  # it ran wild in its quota, no further
    assert int(outputs(events, "b")[1]) > 5, outputs(events, "b")  # another user still forks
    assert processes_with(str(result.run_dir).encode()) == []


@needs_cgroup("memory")
def test_memory_hog_is_oom_killed_inside_its_cgroup_and_the_harness_goes_on(
    runs_dir: Path,
) -> None:
    hog = "python3 -c \"b = b'x' * (400 * 2**20); print('allocated')\""
    data = scenario(
        [{"name": "a", "steps": steps(hog, "echo after")}, {"name": "b", "steps": steps("true")}],
        resources={"memory_mb": 96, "pids": None, "address_space_mb": None},
    )
    result, events = run_scenario(runs_dir, data)
    assert result.status == "completed"
    first = of(events, "command", "a")[0]
    assert first["exit_code"] == 137 and "allocated" not in first["output"]
    assert outputs(events, "a")[1].strip() == "after"
    (hit,) = of(events, "resource_limit", "a")
    assert hit["limit"] == "memory" and hit["count"] >= 1 and hit["turn"] == 1
    assert "memory_mb=96" in hit["detail"]
    (end,) = of(events, "sandbox_end", "a")
    assert end["peak_memory_mb"] is not None and 50 < end["peak_memory_mb"] <= 96
    assert {e["agent"]: e["reason"] for e in of(events, "agent_end")} == {
        "a": "finished",
        "b": "finished",
    }


@pytest.mark.parametrize(
    ("resources", "where"),
    [
        ({"pids": 0}, "resources.pids: Input should be greater than 0"),
        ({"open_files": 8}, "resources.open_files: Input should be greater than or equal to 32"),
        ({"memory": 64}, "resources.memory: unknown key; allowed keys here: address_space_mb"),
    ],
)
def test_bad_limits_name_the_key(resources: dict[str, Any], where: str) -> None:
    with pytest.raises(ScenarioError, match=where):
        validate_scenario(scenario([{"name": "a", "steps": steps("true")}], resources=resources))


def test_agent_resources_override_only_the_keys_they_name() -> None:
    data = scenario(
        [
            {"name": "a", "steps": steps("true"), "resources": {"pids": None, "cpu_seconds": 9}},
            {"name": "b", "steps": steps("true")},
        ],
        resources={"pids": 100, "memory_mb": 500},
    )
    s = validate_scenario(data)
    a, b = (s.resources_for(spec) for spec in s.agents)
    assert (a.pids, a.cpu_seconds, a.memory_mb, a.open_files) == (None, 9, 500, 1024)
    assert (b.pids, b.cpu_seconds, b.memory_mb) == (100, 3600, 500)


def test_processes_limit_is_reported_unbound_for_root_agents(tmp_path: Path) -> None:
    data = scenario([{"name": "a", "steps": steps("true")}], resources=NO_CGROUP)
    _, events = run_scenario(tmp_path, data)
    (report,) = of(events, "sandbox", "a")
    if os.geteuid() == 0:
        assert "processes" not in report["limits"]
        assert any(u.startswith("processes: RLIMIT_NPROC") for u in report["unavailable"])
    else:
        assert report["limits"]["processes"] == 1024 and report["unavailable"] == []
