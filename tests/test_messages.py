"""Messages: the mailbox (delivery, persistence, resume), the two tools, and parked waiting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from sim.errors import ToolError
from sim.events import AgentEnd, EventLog, read_events
from sim.mailbox import Letter, Mailbox, append_letters, parse_delivery
from sim.tools import build_tools
from tests.conftest import scenario_dict
from tests.test_scheduler import ends, run_fake
from tests.test_turns import of

TOOLS = ["bash", "lock", "unlock", "send_message", "wait_for_message", "finish"]


def mailbox(tmp_path: Path, names: tuple[str, ...] = ("a", "b", "c")) -> tuple[Mailbox, EventLog]:
    log = EventLog(tmp_path / "events.jsonl", lambda: 0.0)
    return Mailbox(tmp_path / "mailboxes", list(names), log), log


def test_a_message_waits_in_the_mailbox_until_taken_then_is_marked_delivered(
    tmp_path: Path,
) -> None:
    box, log = mailbox(tmp_path)
    assert box.send("a", "b", "hello") == (["b"], [])
    assert box.send("a", ["b", "c"], "to both") == (["b", "c"], [])
    assert box.pending("b") == 2
    letters = box.take("b", turn=3)
    assert [(lt.sender, lt.text) for lt in letters] == [("a", "hello"), ("a", "to both")]
    assert box.take("b", turn=4) == [] and box.pending("c") == 1
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "mailboxes/b.jsonl").read_text().splitlines()]
    assert [r.get("text") for r in rows] == ["hello", "to both", None]
    assert rows[2] == {"delivered": [1, 2], "turn": 3, "t": 0.0}
    messages = [e for e in read_events(tmp_path / "events.jsonl").events if e["kind"] == "message"]
    assert [(m["agent"], m["recipients"], m["size"]) for m in messages] == [
        ("a", ["b"], 5),
        ("a", ["b", "c"], 7),
    ]


def test_a_resumed_run_keeps_the_messages_not_yet_delivered(tmp_path: Path) -> None:
    box, _ = mailbox(tmp_path)
    box.send("a", "b", "one")
    box.send("a", "c", "two")
    box.take("b", turn=1)
    with (tmp_path / "mailboxes/c.jsonl").open("a") as f:
        f.write('{"id": 9, "fr')  # a crash mid-write leaves a torn last line
    again, _ = mailbox(tmp_path)  # the run is resumed: same run directory
    assert again.pending("b") == 0
    assert [(lt.id, lt.text) for lt in again.take("c", turn=1)] == [(2, "two")]
    again.send("b", "a", "three")  # ids go on after the highest one on disk
    assert [lt.id for lt in again.take("a", turn=1)] == [3]


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ("zed", "no agent named zed; the agents are a, b, c"),
        (["b", "zed"], "no agent named zed"),
        ("a", "cannot send a message to yourself"),
        ([], "`to` must be an agent name, a list of names"),
        (7, "`to` must be an agent name"),
    ],
)
def test_bad_recipients_are_refused_with_the_reason(tmp_path: Path, to: Any, error: str) -> None:
    box, _ = mailbox(tmp_path)
    with pytest.raises(ToolError, match=error):
        box.send("a", to, "x")


def test_all_means_every_other_agent_still_running(tmp_path: Path) -> None:
    box, _ = mailbox(tmp_path)
    box.on_event("c", AgentEnd(reason="finished", turns=1))
    assert box.send("a", "all", "hi") == (["b"], [])
    assert box.send("a", ["b", "c"], "hi") == (["b"], ["c"])
    with pytest.raises(ToolError, match="c ended already"):
        box.send("a", "c", "hi")
    box.on_event("b", AgentEnd(reason="finished", turns=1))
    with pytest.raises(ToolError, match="no other agent is still running"):
        box.send("a", "all", "hi")
    with pytest.raises(ToolError, match="keep it under 16000"):
        box.send("b", "a", "x" * 16_001)


def test_delivery_is_a_text_block_naming_the_sender_after_the_tool_results() -> None:
    direct = Letter(1, "alice", ("bob",), "hi")
    both = Letter(2, "alice", ("bob", "carol"), "to you two")
    everyone = Letter(3, "alice", ("bob", "carol"), "all hands", broadcast=True)
    conversation: list[dict[str, Any]] = [
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}
    ]
    append_letters(conversation, "bob", [direct, both, everyone])
    blocks = conversation[0]["content"]
    assert blocks[0]["type"] == "tool_result"
    assert [b["text"] for b in blocks[1:]] == [
        "[message from alice] hi",
        "[message from alice to you, carol] to you two",
        "[message from alice to all] all hands",
    ]
    assert parse_delivery(blocks[2]["text"]) == ("alice", "to you two")
    assert parse_delivery("ordinary text") is None
    first_turn: list[dict[str, Any]] = [{"role": "user", "content": "Your task."}]
    append_letters(first_turn, "bob", [direct])
    assert first_turn[0]["content"] == [
        {"type": "text", "text": "Your task."},
        {"type": "text", "text": "[message from alice] hi"},
    ]


def test_the_message_tools_are_described_for_the_model() -> None:
    tools = build_tools(["send_message", "wait_for_message"])
    send = tools["send_message"].definition()
    wait = tools["wait_for_message"].definition()
    assert send["input_schema"]["required"] == ["to", "text"]
    assert "[message from <your name>]" in send["description"]
    assert "does not use up your turns" in wait["description"]
    assert "timeout" in wait["input_schema"]["properties"]


@pytest.mark.parametrize("mode", ["concurrent", "round_robin", "rounds"])
def test_a_parked_agent_uses_no_turns_and_blocks_nobody(tmp_path: Path, mode: str) -> None:
    waiter = {
        "name": "w",
        "tools": TOOLS,
        "policy": "tests.policies:steps_echoing_inbox",
        "params": {"steps": [{"wait_for_message": {}}]},
    }
    sender = {
        "name": "s",
        "tools": TOOLS,
        "steps": [{"bash": "sleep 1"}] * 5 + [{"send_message": {"to": "w", "text": "go on"}}],
    }
    data = scenario_dict(scheduler=mode, agents=[waiter, sender])
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended" and ends(events) == {"w": "finished", "s": "finished"}
    turns = {a: [e["turn"] for e in of(events, "model_request") if e["agent"] == a] for a in "ws"}
    assert turns == {"w": [1, 2, 3], "s": [1, 2, 3, 4, 5, 6, 7]}  # s was never held up
    (waited,) = [e for e in of(events, "tool_result") if e["name"] == "wait_for_message"]
    (message,) = of(events, "message")
    assert message["t"] == waited["t"] == 5.0  # it woke when the message came, not later
    assert waited["content"].startswith("a message arrived")
    (echo,) = [e for e in of(events, "command") if e["agent"] == "w"]
    assert "[message from s] go on" in echo["command"]  # delivered through the conversation
    box = result.run_dir / "mailboxes/w.jsonl"
    assert '"delivered": [1], "turn": 2' in box.read_text()


def test_waiting_agents_that_nobody_can_wake_are_told_so(tmp_path: Path) -> None:
    steps = [{"wait_for_message": {}}]
    data = scenario_dict(
        agents=[{"name": n, "tools": TOOLS, "steps": steps} for n in ("a", "b")],
        limits={"wall_time": 500},
    )
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended" and events[-1]["duration"] == 0.0
    contents = [e["content"] for e in of(events, "tool_result") if e["name"] != "finish"]
    assert len(contents) == 2 and all(c.startswith("no message can come") for c in contents)


def test_a_lock_holder_waiting_for_a_message_nobody_can_send_is_woken(tmp_path: Path) -> None:
    # a holds f and waits for a message; b, the only other agent, waits for f. Nobody can
    # send a, so a is told at once instead of both hanging until wall_time.
    a = [{"lock": "f"}, {"wait_for_message": {}}, {"unlock": "f"}]
    b = [{"bash": "sleep 1"}, {"lock": "f"}, {"unlock": "f"}]
    data = scenario_dict(
        agents=[
            {"name": "a", "tools": TOOLS, "steps": a},
            {"name": "b", "tools": TOOLS, "steps": b},
        ],
        limits={"wall_time": 500},
    )
    result, events = run_fake(tmp_path, data)
    assert result.reason == "all_ended" and events[-1]["duration"] == 1.0
    (waited,) = [e for e in of(events, "tool_result") if e["name"] == "wait_for_message"]
    assert waited["content"].startswith("no message can come") and waited["t"] == 1.0


def test_a_wait_with_a_timeout_ends_when_it_passes(tmp_path: Path) -> None:
    data = scenario_dict(
        agents=[
            {"name": "w", "tools": TOOLS, "steps": [{"wait_for_message": {"timeout": 3}}]},
            {"name": "busy", "steps": [{"bash": "sleep 10"}]},
        ]
    )
    _, events = run_fake(tmp_path, data)
    (waited,) = [e for e in of(events, "tool_result") if e["name"] == "wait_for_message"]
    assert (waited["content"], waited["duration"]) == ("no message came within 3 s", 3.0)


def test_a_broken_lock_is_reported_to_its_holder_as_a_message(tmp_path: Path) -> None:
    holder = {
        "name": "slow",
        "tools": TOOLS,
        "policy": "tests.policies:steps_echoing_inbox",
        "params": {"steps": [{"lock": "f"}, {"bash": "sleep 5"}, {"unlock": "f"}]},
    }
    data = scenario_dict(locks={"lease": 2, "break_overdue": True}, agents=[holder])
    _, events = run_fake(tmp_path, data)
    (overdue,) = of(events, "lock_overdue")
    assert (overdue["t"], overdue["broken"]) == (2.0, True)
    unlock = next(e for e in of(events, "tool_result") if e["name"] == "unlock")
    assert unlock["is_error"] and "your lock on f was broken" in unlock["content"]
    notice = [e for e in of(events, "command") if "[message from the harness]" in e["command"]]
    assert len(notice) == 1 and "longer than its lease of 2 s" in notice[0]["command"]


def test_a_lease_without_break_reports_and_keeps_the_lock(tmp_path: Path) -> None:
    steps = [{"lock": "f"}, {"bash": "sleep 5"}, {"unlock": "f"}]
    data = scenario_dict(locks={"lease": 2}, agents=[{"name": "a", "steps": steps}])
    _, events = run_fake(tmp_path, data)
    assert [(e["held"], e["broken"]) for e in of(events, "lock_overdue")] == [(2.0, False)]
    assert [e["reason"] for e in of(events, "lock_release")] == ["unlock"]


def test_break_overdue_needs_a_lease() -> None:
    from sim.errors import ScenarioError
    from sim.scenario import validate_scenario

    with pytest.raises(ScenarioError, match="break_overdue needs a lease"):
        validate_scenario(scenario_dict(locks={"break_overdue": True}))


def test_messages_cannot_be_sent_in_a_run_without_mailboxes() -> None:
    from sim.tools.base import ToolContext

    ctx = ToolContext(agent="a", workspace=None, shell=None, locks=None, events=None, limits=None)  # type: ignore[arg-type]
    tool = build_tools(["send_message"])["send_message"]
    with pytest.raises(ToolError, match="not available in this run"):
        trio.run(tool.run, ctx, {"to": "b", "text": "hi"})
