"""The coordination scenarios end to end, with real shells: counters with and without locks,
flock in the shell, the relay pipeline, the deadlock."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import trio
import trio.testing
import yaml

from sim.events import read_events
from sim.runner import Run, RunResult
from sim.scenario import Scenario, load_scenario, validate_scenario
from tests.conftest import FakeShell, counter_only, scenario_dict

ROOT = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, scenario: Scenario) -> tuple[RunResult, list[dict[str, Any]]]:
    async def main() -> RunResult:
        return await Run(scenario, runs_dir=tmp_path / "runs").execute()

    result = trio.run(main)
    assert result.status == "completed", result.reason
    return result, read_events(result.run_dir / "events.jsonl").events


def shared(result: RunResult, name: str) -> str:
    return (result.run_dir / "workspace/shared" / name).read_text()


def test_32_agents_making_100_locked_increments_end_at_exactly_3200_with_no_clobbers(
    tmp_path: Path,
) -> None:
    scenario = counter_only(["agents.0.replicas=32", "agents.0.params.times=100"])
    result, events = run(tmp_path, scenario)
    assert int(shared(result, "counter.txt")) == 3200
    kinds = Counter(e["kind"] for e in events)
    assert kinds["clobber"] == 0 and kinds["lock_acquire"] == 3200
    writes = [e for e in events if e["kind"] == "file_write"]
    assert len(writes) == 3200  # only the holder runs commands: every version is seen
    assert all(w["locked"] and w["path"] == "counter.txt" for w in writes)


def test_the_same_run_without_locks_counts_every_lost_increment_as_a_clobber(
    tmp_path: Path,
) -> None:
    # round_robin: commands never overlap, so every write is seen and the bound is exact.
    scenario = counter_only(
        [
            "agents.0.replicas=32",
            "agents.0.params.times=100",
            "agents.0.params.use_lock=false",
            "scheduler=round_robin",
        ]
    )
    result, events = run(tmp_path, scenario)
    lost = 3200 - int(shared(result, "counter.txt"))
    kinds = Counter(e["kind"] for e in events)
    assert lost > 0 and kinds["file_write"] == 3200
    assert kinds["clobber"] >= lost
    assert not any(e["kind"] == "file_write" and e["locked"] for e in events)


def test_read_modify_write_under_flock_in_the_shell_is_exact_and_no_clobber(
    tmp_path: Path,
) -> None:
    rmw = """flock "$SIM_LOCKS/c.txt.lock" -c 'v=$(cat c.txt); echo $((v+1)) > c.txt'"""
    scenario = validate_scenario(
        scenario_dict(
            workspace={"shared": {"c.txt": "0\n"}},
            limits={"max_turns": 30, "wall_time": 120},
            agents=[
                {"name": "f", "replicas": 8, "steps": [{"bash": f"cd $SIM_SHARED && {rmw}"}] * 25}
            ],
        )
    )
    result, events = run(tmp_path, scenario)
    assert int(shared(result, "c.txt")) == 200
    assert not any(e["kind"] == "clobber" for e in events)
    assert all(e["exit_code"] == 0 for e in events if e["kind"] == "command")


def test_counter_race_runs_locked_and_unlocked_side_by_side(tmp_path: Path) -> None:
    result, events = run(tmp_path, load_scenario(ROOT / "scenarios/counter_race.yaml"))
    assert int(shared(result, "counter.txt")) == 200
    assert int(shared(result, "race.txt")) < 200
    clobbered = Counter(e["path"] for e in events if e["kind"] == "clobber")
    assert clobbered["counter.txt"] == 0 and clobbered["race.txt"] > 0
    by = Counter(e["agent"].split("-")[0] for e in events if e["kind"] == "clobber")
    assert set(by) == {"racer"}


def test_relay_hands_every_item_down_the_pipeline_in_order(tmp_path: Path) -> None:
    result, events = run(tmp_path, load_scenario(ROOT / "scenarios/relay.yaml"))
    assert shared(result, "relay.txt").splitlines() == [
        "item 1: ELPPA",
        "item 2: ANANAB",
        "item 3: YRREHC",
        "item 4: NOSMAD",
        "item 5: REDLE",
        "item 6: GIF",
    ]
    senders = Counter(e["agent"] for e in events if e["kind"] == "message")
    assert senders == {"source": 7, "upper": 7, "reverse": 7}  # six items and `done`
    assert {e["agent"]: e["reason"] for e in events if e["kind"] == "agent_end"} == {
        "source": "finished",
        "upper": "finished",
        "reverse": "finished",
        "sink": "finished",
    }
    for name in ("upper", "reverse", "sink"):  # every message was delivered
        lines = (result.run_dir / "mailboxes" / f"{name}.jsonl").read_text().splitlines()
        ids = {
            int(x)
            for line in lines
            if "delivered" in line
            for x in yaml.safe_load(line)["delivered"]
        }
        assert len(ids) == 7


def test_deadlock_scenario_is_detected_and_both_agents_finish(tmp_path: Path) -> None:
    result, events = run(tmp_path, load_scenario(ROOT / "scenarios/deadlock.yaml"))
    assert sorted(shared(result, "log.txt").split()) == ["alice", "bob"]
    (deadlock,) = [e for e in events if e["kind"] == "deadlock"]
    victim = deadlock["victim"]
    other = ({"alice", "bob"} - {victim}).pop()
    assert deadlock["cycle"] == [victim, other]
    assert {e["agent"]: e["reason"] for e in events if e["kind"] == "agent_end"} == {
        "alice": "finished",
        "bob": "finished",
    }


def test_a_deadlock_is_detected_in_the_step_that_forms_it(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "scenarios/deadlock.yaml").read_text())
    scenario = validate_scenario(data)

    async def main() -> RunResult:
        return await Run(scenario, runs_dir=tmp_path, shell_factory=FakeShell, env={}).execute()

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = read_events(result.run_dir / "events.jsonl").events
    (deadlock,) = [e for e in events if e["kind"] == "deadlock"]
    before = events[deadlock["seq"] - 1]
    after = events[deadlock["seq"] + 1]
    # The call that closed the cycle, then at once the deadlock, then its failed result.
    assert (before["kind"], before["agent"], before["name"]) == (
        "tool_call",
        deadlock["victim"],
        "lock",
    )
    assert (after["kind"], after["agent"], after["is_error"]) == (
        "tool_result",
        deadlock["victim"],
        True,
    )
    assert before["t"] == deadlock["t"] == after["t"]
    assert "deadlock: you" in after["content"] and "unlock" in after["content"]


def test_an_editor_write_over_an_unseen_version_is_a_clobber(tmp_path: Path) -> None:
    # round_robin, seed 1: round 1 goes a, b and round 2 goes b, a (asserted below). So a
    # views x.txt, b edits it, and a then overwrites it whole (create) without having seen
    # b's edit: b's change is lost, and the log says so.
    x = "../../shared/x.txt"
    edit = "str_replace_based_edit_tool"
    data = scenario_dict(
        seed=1,
        scheduler="round_robin",
        workspace={"shared": {"x.txt": "one\n"}},
        agents=[
            {
                "name": "a",
                "steps": [
                    {edit: {"command": "view", "path": x}},
                    {edit: {"command": "create", "path": x, "file_text": "mine\n"}},
                ],
            },
            {
                "name": "b",
                "steps": [
                    {"bash": "true"},
                    {
                        edit: {
                            "command": "str_replace",
                            "path": x,
                            "old_str": "one",
                            "new_str": "two",
                        }
                    },
                ],
            },
        ],
    )
    result, events = run(tmp_path, validate_scenario(data))
    assert [e["order"] for e in events if e["kind"] == "round"][:2] == [["a", "b"], ["b", "a"]]
    assert shared(result, "x.txt") == "mine\n"
    writes = [(e["agent"], e["via"], e["locked"]) for e in events if e["kind"] == "file_write"]
    assert writes == [("b", "editor", True), ("a", "editor", True)]
    clobbers = [(e["agent"], e["overwrote"], e["via"]) for e in events if e["kind"] == "clobber"]
    assert clobbers == [("a", "b", "editor")]
