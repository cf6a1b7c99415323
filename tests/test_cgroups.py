"""Which cgroup offers memory and pids: v1, v2, hybrid, none (fake /proc and cgroupfs trees),
and the real thing where this machine has it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from sim.cgroups import Detected, Hierarchy, RunCgroups, detect
from tests.realrun import needs_cgroup


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    lines = [f"{30 + i} 23 0:{40 + i} {m}" for i, m in enumerate(mounts)]
    (proc / "mountinfo").write_text("\n".join(lines) + "\n")
    return proc


def test_hybrid_finds_each_controller_on_v1_under_the_harness_cgroup(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    (fs / "memory/jobs/me").mkdir(parents=True)
    (fs / "pids").mkdir(parents=True)
    (fs / "unified").mkdir()
    (fs / "unified/cgroup.controllers").write_text("")
    proc = fake_proc(
        tmp_path,
        "4:memory:/jobs/me\n8:pids:/\n1:cpu,cpuacct:/\n0::/\n",
        [
            f"/ {fs}/memory rw,relatime - cgroup cgroup rw,memory",
            f"/ {fs}/pids rw,relatime - cgroup cgroup rw,pids",
            f"/ {fs}/unified rw,relatime - cgroup2 cgroup2 rw",
        ],
    )
    found = detect(proc)
    assert found.found == {
        "memory": Hierarchy("memory", 1, fs / "memory/jobs/me"),
        "pids": Hierarchy("pids", 1, fs / "pids"),
    }
    assert found.missing == {}


def test_pure_v2_uses_the_controllers_the_cgroup_offers(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    (fs / "user.slice/sim.scope").mkdir(parents=True)
    (fs / "user.slice/sim.scope/cgroup.controllers").write_text("cpu io memory\n")
    proc = fake_proc(
        tmp_path,
        "0::/user.slice/sim.scope\n",
        [f"/ {fs} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"],
    )
    found = detect(proc)
    assert found.found == {"memory": Hierarchy("memory", 2, fs / "user.slice/sim.scope")}
    assert "no cgroup v1 or v2 hierarchy here offers it" in found.missing["pids"]


def test_a_container_mount_of_its_own_subtree_is_followed(tmp_path: Path) -> None:
    # Without a cgroup namespace, a container sees its own path and a mount rooted at it.
    fs = tmp_path / "fs"
    (fs / "pids").mkdir(parents=True)
    proc = fake_proc(
        tmp_path,
        "8:pids:/docker/abc\n",
        [f"/docker/abc {fs}/pids ro,relatime - cgroup cgroup ro,pids"],
    )
    assert detect(proc).found["pids"] == Hierarchy("pids", 1, fs / "pids")


def test_no_cgroup_filesystem_reports_why(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, "0::/\n", [])
    found = detect(proc)
    assert found.found == {}
    assert set(found.missing) == {"memory", "pids"}
    missing = detect(tmp_path / "nowhere").missing["memory"]
    assert "cannot read" in missing and "nowhere/cgroup" in missing


def test_a_hierarchy_that_cannot_be_used_is_reported_unavailable(tmp_path: Path) -> None:
    gone = tmp_path / "gone" / "cgroup"  # as when the mount vanished or is not ours
    cgroups = RunCgroups("t", Detected(found={"pids": Hierarchy("pids", 1, gone)}))
    assert cgroups.controllers == []
    assert cgroups.unavailable["pids"].startswith(f"pids: cgroup v1 at {gone}: cannot use it (")
    agent = cgroups.for_agent("a", memory_mb=64, pids=10)
    assert agent.dirs == {} and agent.limits == {} and agent.procs_files() == ()


@needs_cgroup("pids")
def test_real_agent_cgroup_is_made_limited_and_removed() -> None:
    cgroups = RunCgroups("testreal")
    assert "pids" in cgroups.controllers
    agent = cgroups.for_agent("a", memory_mb=None, pids=17)
    pids_dir = agent.dirs["pids"]
    assert (pids_dir / "pids.max").read_text().strip() == "17"
    assert agent.limits == {"pids": 17} and agent.counters() == {"pids": 0}

    async def cleanup() -> None:
        assert await agent.kill_all() == 0
        await cgroups.remove()

    trio.run(cleanup)
    assert not pids_dir.exists() and not pids_dir.parent.exists()


@pytest.mark.parametrize("controller", ["memory", "pids"])
def test_this_machine_says_where_each_controller_is(controller: str) -> None:
    found = detect()
    # Either a usable directory or a reason: never silence.
    assert (controller in found.found) != (controller in found.missing)
    if controller in found.found:
        assert found.found[controller].path.is_dir()
    else:
        assert found.missing[controller]
