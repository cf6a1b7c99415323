"""Scheduler and agent-loop logic on a MockClock with fake shells: exact virtual times."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

from sim.events import read_events
from sim.runner import Run, RunResult
from sim.scenario import validate_scenario
from tests.conftest import FakeShell, scenario_dict


def run_fake(
    tmp_path: Path, data: dict[str, Any], *, real_clock: bool = False
) -> tuple[RunResult, list[dict[str, Any]]]:
    scenario = validate_scenario(data)

    async def main() -> RunResult:
        return await Run(scenario, runs_dir=tmp_path, shell_factory=FakeShell, env={}).execute()

    clock = None if real_clock else trio.testing.MockClock(autojump_threshold=0)
    result = trio.run(main, clock=clock)
    return result, read_events(result.run_dir / "events.jsonl").events


def ends(events: list[dict[str, Any]]) -> dict[str, str]:
    return {e["agent"]: e["reason"] for e in events if e["kind"] == "agent_end"}


def test_concurrent_agents_overlap_in_virtual_time(tmp_path: Path) -> None:
    steps = [{"bash": "sleep 4"}, {"finish": "ok"}]
    data = scenario_dict(agents=[{"name": "w", "replicas": 4, "steps": steps}])
    result, events = run_fake(tmp_path, data)
    assert result.status == "completed"
    assert ends(events) == {f"w-{i}": "finished" for i in range(1, 5)}
    run_end = events[-1]
    assert run_end["kind"] == "run_end" and run_end["duration"] == 4.0  # not 16: concurrent


def test_round_robin_takes_one_turn_at_a_time_in_seeded_order(tmp_path: Path) -> None:
    steps = [{"bash": "sleep 1"}, {"bash": "sleep 1"}, {"finish": "ok"}]
    data = scenario_dict(
        scheduler="round_robin", agents=[{"name": "w", "replicas": 3, "steps": steps}]
    )
    _, events = run_fake(tmp_path, data)
    assert events[-1]["duration"] == 6.0  # 3 agents x 2 sleeps, one at a time
    rounds = [e["order"] for e in events if e["kind"] == "round"]
    assert len(rounds) == 3 and all(sorted(r) == ["w-1", "w-2", "w-3"] for r in rounds)
    turns = [e["agent"] for e in events if e["kind"] == "model_request"]
    assert turns == [a for r in rounds for a in r]  # turns follow the drawn order exactly
    # the same seed draws the same order
    _, again = run_fake(tmp_path, data)
    assert [e["order"] for e in again if e["kind"] == "round"] == rounds


def test_max_turns_ends_an_agent_with_its_reason(tmp_path: Path) -> None:
    data = scenario_dict(
        limits={"max_turns": 2},
        agents=[{"name": "a", "steps": [{"bash": "echo 1"}] * 5}],
    )
    _, events = run_fake(tmp_path, data)
    assert ends(events) == {"a": "max_turns"}
    assert sum(e["kind"] == "model_request" for e in events) == 2
    assert any(e["kind"] == "limit" and e["limit"] == "max_turns" for e in events)


def test_wall_time_stops_every_agent_at_the_deadline(tmp_path: Path) -> None:
    data = scenario_dict(
        limits={"wall_time": 25, "command_timeout": 1000},
        agents=[
            {"name": "slow", "steps": [{"bash": "sleep 100"}]},
            {"name": "quick", "steps": [{"finish": "ok"}]},
        ],
    )
    result, events = run_fake(tmp_path, data)
    assert result.status == "completed" and result.reason == "wall_time"
    assert ends(events) == {"slow": "wall_time", "quick": "finished"}
    assert events[-1]["duration"] == 25.0


def test_command_timeout_reports_timed_out_and_agent_goes_on(tmp_path: Path) -> None:
    data = scenario_dict(
        limits={"command_timeout": 3},
        agents=[{"name": "a", "steps": [{"bash": "sleep 60"}, {"bash": "echo after"}]}],
    )
    _, events = run_fake(tmp_path, data)
    commands = [e for e in events if e["kind"] == "command"]
    assert commands[0]["timed_out"] and commands[0]["duration"] == 3.0
    assert commands[1]["output"] == "echo after"
    results = [e for e in events if e["kind"] == "tool_result"]
    assert results[0]["is_error"] and "timed out after 3 s" in results[0]["content"]


def test_a_crashing_agent_ends_with_error_and_others_go_on(tmp_path: Path) -> None:
    data = scenario_dict(
        agents=[
            {"name": "bad", "policy": "tests.policies:explode"},
            {"name": "good", "steps": [{"bash": "sleep 5"}, {"finish": "ok"}]},
        ]
    )
    result, events = run_fake(tmp_path, data)
    assert result.status == "completed"
    assert ends(events) == {"bad": "error", "good": "finished"}
    (error,) = [e for e in events if e["kind"] == "error"]
    assert error["agent"] == "bad" and "policy blew up" in error["message"]


def test_tool_errors_go_back_to_the_model_as_is_error(tmp_path: Path) -> None:
    data = scenario_dict(
        agents=[{"name": "a", "steps": [{"unlock": "x.txt"}, {"lock": "../../etc"}]}]
    )
    _, events = run_fake(tmp_path, data)
    results = [e for e in events if e["kind"] == "tool_result"]
    assert results[0]["is_error"] and "you do not hold the lock on x.txt" in results[0]["content"]
    assert results[1]["is_error"] and "is not a file in shared/" in results[1]["content"]
    assert ends(events) == {"a": "finished"}


def test_done_when_ends_the_run(tmp_path: Path) -> None:
    # done_when runs a real bash, so this test runs on the real clock (short sleeps).
    data = scenario_dict(
        done_when="test -f flag",
        limits={"max_turns": 1000},
        agents=[
            {"name": "a", "steps": [{"bash": "sleep 0.01"}] * 1000},
            {"name": "b", "policy": "tests.policies:touch_flag_at_turn_3"},
        ],
    )
    result, events = run_fake(tmp_path, data, real_clock=True)
    assert result.reason == "done_when"
    assert set(ends(events).values()) == {"done_when"}


def test_locks_are_released_when_an_agent_ends(tmp_path: Path) -> None:
    data = scenario_dict(
        agents=[
            {"name": "a", "steps": [{"lock": "f.txt"}, {"finish": "forgot to unlock"}]},
            {"name": "b", "steps": [{"bash": "sleep 1"}, {"lock": "f.txt"}, {"finish": "ok"}]},
        ]
    )
    _, events = run_fake(tmp_path, data)
    releases = [e for e in events if e["kind"] == "lock_release"]
    assert releases[0]["agent"] == "a" and releases[0]["reason"] == "agent_end"
    assert ends(events) == {"a": "finished", "b": "finished"}


def test_every_turn_is_a_valid_messages_conversation(tmp_path: Path) -> None:
    _, events = run_fake(tmp_path, scenario_dict())
    calls = [e for e in events if e["kind"] == "tool_call"]
    results = [e for e in events if e["kind"] == "tool_result"]
    assert [c["tool_use_id"] for c in calls] == [r["tool_use_id"] for r in results]
    kinds = [e["kind"] for e in events if e["agent"] == "a"]
    assert kinds[0] == "agent_start" and kinds[-1] == "agent_end"


def test_round_robin_lets_others_move_while_one_waits_for_a_lock(tmp_path: Path) -> None:
    # a holds the lock across its turns; b's lock call must not hold the round-robin gate,
    # or a could never take the turn in which it unlocks.
    data = scenario_dict(
        scheduler="round_robin",
        agents=[
            {
                "name": "a",
                "steps": [{"lock": "f"}, {"bash": "sleep 1"}, {"bash": "sleep 1"}, {"unlock": "f"}],
            },
            {"name": "b", "steps": [{"bash": "sleep 1"}, {"lock": "f"}, {"unlock": "f"}]},
        ],
    )
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended"
    assert ends(events) == {"a": "finished", "b": "finished"}
    acquires = [e["agent"] for e in events if e["kind"] == "lock_acquire"]
    assert acquires == ["a", "b"]


class _SlowToClose(FakeShell):
    async def close(self) -> None:
        await trio.sleep(10)  # like a shell whose session takes a while to kill
        await super().close()


def test_an_ended_agent_leaves_the_turn_order_before_its_shell_closes(tmp_path: Path) -> None:
    data = scenario_dict(
        scheduler="round_robin",
        agents=[
            {"name": "short", "steps": [{"finish": "done"}]},
            {"name": "long", "steps": [{"bash": "sleep 1"}] * 3 + [{"finish": "done"}]},
        ],
    )

    async def main() -> RunResult:
        run = Run(validate_scenario(data), runs_dir=tmp_path, shell_factory=_SlowToClose, env={})
        return await run.execute()

    result = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = read_events(result.run_dir / "events.jsonl").events
    rounds = [e["order"] for e in events if e["kind"] == "round"]
    # `short` ended in round 1; while its shell took 10 s to close, `long` went on alone.
    assert len(rounds) == 4 and rounds[1:] == [["long"]] * 3
