"""Turn order: the `rounds` scheduler, max_rounds, and waiters stepping out of the order
(MockClock, fake shells: exact virtual times)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import ScenarioError
from sim.scenario import validate_scenario
from tests.conftest import scenario_dict
from tests.realrun import of
from tests.test_scheduler import ends, run_fake

SLEEPS = [{"bash": "sleep 1"}, {"bash": "sleep 1"}, {"finish": "ok"}]


def test_rounds_let_every_agent_act_once_per_round_at_the_same_time(tmp_path: Path) -> None:
    data = scenario_dict(scheduler="rounds", agents=[{"name": "w", "replicas": 3, "steps": SLEEPS}])
    _, events = run_fake(tmp_path, data)
    assert events[-1]["duration"] == 2.0  # 2 sleeps each, the 3 agents side by side
    rounds = of(events, "round")
    assert [r["number"] for r in rounds] == [1, 2, 3]
    assert all(sorted(r["order"]) == ["w-1", "w-2", "w-3"] for r in rounds)
    starts = [(e["t"], e["agent"]) for e in of(events, "model_request")]
    # Each round's turns start in the round's order, at the round's start time.
    assert starts == [(float(i), a) for i, r in enumerate(rounds) for a in r["order"]]


def test_a_round_waits_for_its_slowest_agent(tmp_path: Path) -> None:
    slow = [{"bash": "sleep 3"}, {"bash": "sleep 1"}, {"finish": "ok"}]
    data = scenario_dict(
        scheduler="rounds",
        agents=[{"name": "fast", "steps": SLEEPS}, {"name": "slow", "steps": slow}],
    )
    _, events = run_fake(tmp_path, data)
    second = {e["agent"]: e["t"] for e in of(events, "model_request") if e["turn"] == 2}
    assert second == {"fast": 3.0, "slow": 3.0}  # the barrier: nobody starts round 2 early
    assert events[-1]["duration"] == 4.0


@pytest.mark.parametrize("mode", ["rounds", "round_robin"])
def test_max_rounds_ends_the_run(tmp_path: Path, mode: str) -> None:
    data = scenario_dict(
        scheduler=mode,
        limits={"max_rounds": 2, "max_turns": 50},
        agents=[{"name": "w", "replicas": 2, "steps": [{"bash": "sleep 1"}] * 10}],
    )
    result, events = run_fake(tmp_path, data)
    assert (result.status, result.reason) == ("completed", "max_rounds")
    assert ends(events) == {"w-1": "max_rounds", "w-2": "max_rounds"}
    assert [r["number"] for r in of(events, "round")] == [1, 2]
    assert len(of(events, "model_request")) == 4
    (limit,) = of(events, "limit")
    assert (limit["limit"], limit["value"]) == ("max_rounds", 2)


def test_max_rounds_needs_a_scheduler_with_rounds() -> None:
    with pytest.raises(ScenarioError, match=r"limits\.max_rounds counts rounds.*scheduler: rounds"):
        validate_scenario(scenario_dict(limits={"max_rounds": 3}))


@pytest.mark.parametrize("mode", ["round_robin", "rounds"])
def test_a_lock_waiter_steps_aside_so_the_holder_gets_its_turns(tmp_path: Path, mode: str) -> None:
    # Before waiters parked, b waiting for f inside its turn kept a from the turn it needed
    # to unlock f: the run hung until wall_time.
    holder = [{"lock": "f"}, {"bash": "sleep 1"}, {"bash": "sleep 1"}, {"unlock": "f"}]
    waiter = [{"bash": "sleep 1"}, {"lock": "f"}, {"unlock": "f"}]  # asks while a holds f
    data = scenario_dict(
        scheduler=mode, agents=[{"name": "a", "steps": holder}, {"name": "b", "steps": waiter}]
    )
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended" and ends(events) == {"a": "finished", "b": "finished"}
    (wait,) = of(events, "lock_wait")
    (release, _) = of(events, "lock_release")
    acquire = of(events, "lock_acquire")[1]
    assert (wait["agent"], wait["holder"], acquire["agent"]) == ("b", "a", "b")
    assert acquire["t"] == release["t"] and acquire["wait"] == release["t"] - wait["t"] > 0
    # b's waiting cost it no turns: sleep, lock, unlock, finish.
    assert [e["turn"] for e in of(events, "model_request") if e["agent"] == "b"] == [1, 2, 3, 4]


_STEP = st.one_of(
    st.sampled_from(["x", "y", "z"]).map(lambda p: {"lock": p}),
    st.sampled_from(["x", "y", "z"]).map(lambda p: {"unlock": p}),
    st.integers(0, 3).map(lambda n: {"bash": f"sleep {n}"}),
    st.integers(0, 4).map(lambda n: {"wait_for_message": {"timeout": n}}),
    st.sampled_from(["a0", "a1", "a2", "all"]).map(
        lambda to: {"send_message": {"to": to, "text": "hi"}}
    ),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    mode=st.sampled_from(["concurrent", "round_robin", "rounds"]),
    scripts=st.lists(st.lists(_STEP, max_size=8), min_size=2, max_size=3),
)
def test_any_mix_of_locks_waits_and_messages_runs_to_the_end(
    tmp_path: Path, mode: str, scripts: list[list[dict[str, Any]]]
) -> None:
    # Finite scripts always end: lock waits end when holders release or end (cycles are
    # refused), message waits time out, and no gate keeps a parked agent's turn.
    tools = ["bash", "lock", "unlock", "send_message", "wait_for_message", "finish"]
    agents = [
        {"name": f"a{i}", "steps": s or [{"finish": "ok"}], "tools": tools}
        for i, s in enumerate(scripts)
    ]
    data = scenario_dict(scheduler=mode, agents=agents, limits={"wall_time": 1000, "max_turns": 20})
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended", result.reason
    assert set(ends(events).values()) <= {"finished"}
    # No lock is held by two agents at once.
    holders: dict[str, str] = {}
    for e in events:
        if e["kind"] == "lock_acquire":
            assert e["lock"] not in holders
            holders[e["lock"]] = e["agent"]
        elif e["kind"] == "lock_release":
            assert holders.pop(e["lock"]) == e["agent"]
