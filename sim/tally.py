"""Per-agent counts over a run, kept up to date from the event stream.

The live view and the closing summary read these; they come from the same events that go
into the log, so the terminal and `analysis/` can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim import events as ev
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
        if tally is None:
            return
        match event:
            case ev.AgentStart():
                tally.status = "running"
            case ev.ModelRequest(turn=turn):
                tally.turns = turn
                tally.status = "thinking"
            case ev.ModelResponse(usage=usage, cost_usd=cost, model=model):
                tally.input_tokens += int(usage.get("input_tokens") or 0)
                tally.output_tokens += int(usage.get("output_tokens") or 0)
                tally.cache_read_tokens += int(usage.get("cache_read_input_tokens") or 0)
                tally.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
                tally.cost_usd = add_cost(tally.cost_usd, cost, model)
            case ev.ToolCall(name=name, input=args):
                tally.status = f"tool: {name}"
                if name == "bash":
                    tally.last_command = str(args.get("command", ""))
            case ev.Command(exit_code=code, timed_out=timed_out):
                tally.commands += 1
                tally.failed_commands += int(code != 0 or timed_out)
            case ev.LockWait(lock=lock):
                tally.lock_waits += 1
                tally.status = f"waiting for {lock}"
            case ev.AgentEnd(reason=reason, message=message):
                tally.status = "ended"
                tally.end_reason = reason
                tally.message = message

    @property
    def total_cost(self) -> float | None:
        costs = [t.cost_usd for t in self.agents.values()]
        return None if any(c is None for c in costs) else sum(c or 0.0 for c in costs)

    @property
    def total_tokens(self) -> int:
        return sum(t.tokens for t in self.agents.values())
