"""Rebuild a killed run's state from its event log, so `python -m sim resume` can go on.

What the log tells, per agent: its conversation (task, then each model response and the tool
results that answered it; the messages handed to it at the start of each turn come from its
mailbox file, sim.mailbox), how many turns it used, its shell's last working directory, the
locks it held (acquired, never released), and the tool calls that were logged without a
result: those were in flight when the run died. Their effect is unknown, so they are not run
again silently: the agent gets an error result saying so, and the log records `interrupted`.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.agent import first_message
from sim.errors import RunError
from sim.mailbox import Letter, append_letters, deliveries
from sim.models.base import Message
from sim.recording import load_recording
from sim.scenario import Scenario
from sim.workspace import Workspace, relative_under

Event = dict[str, Any]

INTERRUPTED = (
    "[interrupted] the harness restarted while this call ran, so its effect is unknown. "
    "Check the state (files, locks) before you repeat it."
)
NOT_STARTED = "[not run] the harness restarted before this call started; call it again if needed."


@dataclass
class AgentResume:
    name: str
    messages: list[Message]
    turns: int = 0
    cwd: str | None = None
    locks: list[str] = field(default_factory=list)
    interrupted: list[Event] = field(default_factory=list)  # the tool_call events cut short
    ended: bool = False


@dataclass
class ResumePlan:
    run_dir: Path
    scenario: Scenario
    events: list[Event]
    torn_line: str | None
    agents: dict[str, AgentResume]
    meta: dict[str, Any] = field(default_factory=dict)  # meta.json; {} if the crash came first

    @property
    def next_seq(self) -> int:
        return self.events[-1]["seq"] + 1 if self.events else 0

    @property
    def elapsed(self) -> float:
        return float(self.events[-1]["t"]) if self.events else 0.0

    def cut_torn_line(self) -> None:
        """Cut a partial last line off the log, so appended events start on a line of their
        own. Planning only reads; the run that goes on calls this before it appends."""
        path = self.run_dir / "events.jsonl"
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
                os.fsync(f.fileno())


def _rebuild(
    agent: str, task: str, events: list[Event], delivered: dict[int, list[Letter]]
) -> AgentResume:
    """The agent's conversation as its model last saw it: responses, tool results (or an
    interrupted note), and the messages it was handed at the start of each turn."""
    state = AgentResume(agent, [first_message(task)])
    calls: dict[str, Event] = {}
    pending: list[dict[str, Any]] = []  # tool_use blocks of the last response
    results: dict[str, dict[str, Any]] = {}
    held: dict[str, None] = {}

    def flush() -> None:
        blocks = []
        for block in pending:
            result = results.get(block["id"])
            if result is None:
                call = calls.get(block["id"])
                if call is not None:
                    state.interrupted.append(call)
                text = INTERRUPTED if call is not None else NOT_STARTED
                result = {"type": "tool_result", "tool_use_id": block["id"], "content": text,
                          "is_error": True}  # fmt: skip
            blocks.append(result)
        if blocks:
            state.messages.append({"role": "user", "content": blocks})
        pending.clear()
        results.clear()

    for e in events:
        kind = e["kind"]
        if kind == "model_response":
            flush()
            append_letters(state.messages, agent, delivered.pop(int(e["turn"]), []))
            state.turns = int(e["turn"])
            state.messages.append({"role": "assistant", "content": e["content"]})
            pending.extend(b for b in e["content"] if b.get("type") == "tool_use")
        elif kind == "tool_call":
            calls[e["tool_use_id"]] = e
        elif kind == "tool_result":
            block: dict[str, Any] = {
                "type": "tool_result", "tool_use_id": e["tool_use_id"], "content": e["content"],
            }  # fmt: skip
            if e.get("is_error"):
                block["is_error"] = True
            results[e["tool_use_id"]] = block
        elif kind in ("command", "shell_restart") and e.get("cwd"):
            state.cwd = e["cwd"]
        elif kind == "lock_acquire":
            held[e["lock"]] = None
        elif kind == "lock_release":
            held.pop(e["lock"], None)
        elif kind == "agent_end":
            state.ended = True
    flush()
    # Handed over for a turn whose request never got its answer (the crash came first): the
    # mailbox has them as delivered, so they go into the conversation the next turn sends.
    for turn in sorted(delivered):
        append_letters(state.messages, agent, delivered[turn])
    state.locks = list(held)
    return state


def _moved(cwd: str | None, first_home: str | None, home: Path) -> str | None:
    """`cwd` as recorded, moved to where the run directory is now (a run can be copied or
    moved before it is resumed: its agents go on in it, not in the original). A cwd outside
    the run (/tmp, say) stays; None, so the shell starts at home, for one inside some run's
    workspace but not this one's (recorded before an earlier move): the agent's shell never
    starts among another run's files."""
    if cwd is None:
        return None
    new_root = os.path.realpath(home.parent.parent)  # workspace/, as bash's $PWD spells it
    if first_home is not None and Path(first_home).name == home.name:
        rel = relative_under(cwd, str(Path(first_home).parent.parent))
        if rel is not None:
            return os.path.join(new_root, rel) if rel else new_root
    if relative_under(cwd, new_root) is not None:
        return cwd
    pairs = itertools.pairwise(cwd.split("/"))
    in_a_run = any(a == "workspace" and b in ("agents", "shared") for a, b in pairs)
    return None if in_a_run else cwd


def plan_resume(run_dir: Path) -> ResumePlan:
    """Read a run directory and rebuild every agent. Raises RunError if it cannot be resumed."""
    run_dir = Path(os.path.abspath(run_dir))  # without `..`: it is printed and logged
    recording = load_recording(run_dir)
    if any(e["kind"] == "run_end" for e in recording.events[-1:]):
        raise RunError(
            f"{run_dir}: this run ended ({recording.events[-1].get('status')}); only a run "
            "that was killed partway can be resumed. Use `python -m sim replay` to run it again"
        )
    setup = recording.scenario.workspace.setup
    done = sum(e["kind"] == "setup" for e in recording.events)
    if done < len(setup):  # each finished command logs one; its agents never started
        raise RunError(
            f"{run_dir}: this run was killed during its workspace setup ({done} of {len(setup)} "
            "setup commands had finished), so its agents never started and there is nothing to "
            f"go on with; run the scenario anew: python -m sim run {run_dir}/scenario.yaml"
        )
    by_agent: dict[str, list[Event]] = {}
    for e in recording.events:
        if e.get("agent"):
            by_agent.setdefault(e["agent"], []).append(e)
    agents = {
        cfg.name: _rebuild(
            cfg.name,
            cfg.spec.task,
            by_agent.get(cfg.name, []),
            deliveries(run_dir / "mailboxes", cfg.name),
        )
        for cfg in recording.scenario.expanded_agents()
    }
    for name, agent in agents.items():
        first_home = next(
            (e["cwd"] for e in by_agent.get(name, []) if e["kind"] == "agent_start"), None
        )
        agent.cwd = _moved(agent.cwd, first_home, Workspace(run_dir).agent_dir(name))
    return ResumePlan(
        run_dir, recording.scenario, recording.events, recording.torn_line, agents, recording.meta
    )
