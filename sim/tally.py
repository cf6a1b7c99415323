"""Per-agent counts over a run, kept up to date from the event stream.

The live view and the closing summary read these; they come from the same events that go
into the log, so the terminal and `analysis/` can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sim.budget import add_cost
from sim.events import Payload


@dataclass
class AgentTally:
    name: str
    status: str = "starting"
    turns: int = 0
    commands: int = 0
    failed_commands: int = 0
    lock_waits: int = 0
    last_command: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float | None = 0.0  # None once any response had an unknown price
    end_reason: str | None = None
    message: str = ""

    @property
    def tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


class RunTally:
    """Subscribe `RunTally.on_event` to an EventLog."""

    def __init__(self, agents: list[str]) -> None:
        self.agents = {name: AgentTally(name) for name in agents}

    def on_event(self, agent: str | None, event: Payload) -> None:
        tally = self.agents.get(agent or "")
        if tally is not None:
            handler = self._handlers.get(event.kind)
            if handler is not None:
                handler(tally, event)

    # One handler per kind, looked up by `kind`: a `match` over classes tried every case in
    # turn for every event, and this runs for each of them.

    @staticmethod
    def _agent_start(tally: AgentTally, event: Any) -> None:
        tally.status = "running"

    @staticmethod
    def _model_request(tally: AgentTally, event: Any) -> None:
        tally.turns = event.turn
        tally.status = "thinking"

    @staticmethod
    def _model_response(tally: AgentTally, event: Any) -> None:
        usage = event.usage
        if usage:
            tally.input_tokens += int(usage.get("input_tokens") or 0)
            tally.output_tokens += int(usage.get("output_tokens") or 0)
            tally.cache_read_tokens += int(usage.get("cache_read_input_tokens") or 0)
            tally.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
        tally.cost_usd = add_cost(tally.cost_usd, event.cost_usd, event.model)

    @staticmethod
    def _tool_call(tally: AgentTally, event: Any) -> None:
        tally.status = f"tool: {event.name}"
        if event.name == "bash":
            tally.last_command = str(event.input.get("command", ""))

    @staticmethod
    def _command(tally: AgentTally, event: Any) -> None:
        tally.commands += 1
        tally.failed_commands += int(event.exit_code != 0 or event.timed_out)

    @staticmethod
    def _lock_wait(tally: AgentTally, event: Any) -> None:
        tally.lock_waits += 1
        tally.status = f"waiting for {event.lock}"

    @staticmethod
    def _agent_end(tally: AgentTally, event: Any) -> None:
        tally.status = "ended"
        tally.end_reason = event.reason
        tally.message = event.message

    _handlers: ClassVar[dict[str, Callable[[AgentTally, Any], None]]] = {
        "agent_start": _agent_start,
        "model_request": _model_request,
        "model_response": _model_response,
        "tool_call": _tool_call,
        "command": _command,
        "lock_wait": _lock_wait,
        "agent_end": _agent_end,
    }

    @property
    def total_cost(self) -> float | None:
        costs = [t.cost_usd for t in self.agents.values()]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def total_tokens(self) -> int:
        return sum(t.tokens for t in self.agents.values())
