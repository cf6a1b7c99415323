"""One agent's loop: ask the model, run its tool calls, append the results, count turns.

    messages = [task]
    while turns remain:
        reply = model.respond(messages)            -> model_request, model_response
        for each tool_use in reply, in order:      -> tool_call, (command...), tool_result
            run the tool; a ToolError becomes an is_error result
        messages += [reply, user(tool results)]
        stop on `finish`, or on a reply with no tool calls

Whatever ends the agent (its own finish, a limit, a crash, the scheduler cancelling it), the
`finally` releases its locks, closes its shell and logs `agent_end` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import trio

from sim.budget import over_budget
from sim.errors import AuthError, ToolError
from sim.events import (
    AgentEnd,
    AgentStart,
    Error,
    Limit,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResult,
)
from sim.mailbox import append_letters
from sim.models.base import Message, Model, Reply
from sim.models.base import ModelRequest as Request
from sim.models.replay import RecordingExhausted
from sim.tally import RunTally
from sim.tools import Tool, ToolContext, ToolOutput


def first_message(task: str) -> Message:
    """The user message every conversation starts with."""
    return {"role": "user", "content": task or "Begin."}


_CUT_SHORT = (
    "[not run: your reply reached its max_tokens limit, so this tool call may be cut short "
    "(the API sends what was written so far); send it again in a shorter reply, e.g. write a "
    "long file in parts]"
)
_STATUS_WHILE = {
    "bash": "running",
    "lock": "waiting for lock",
    "wait_for_message": "waiting for a message",
}

TurnGate = Callable[[str], AbstractAsyncContextManager[None]]


@dataclass
class AgentState:
    """Where an agent is now; counts over the run come from the event log (sim.tally)."""

    name: str
    status: str = "starting"
    turn: int = 0
    end_reason: str | None = None
    messages: list[Message] = field(default_factory=list)


class Agent:
    """Drives one model over one set of tools.

    `run` raises only AuthError (a bad key ends the whole run) and trio's Cancelled; every
    other failure ends this agent with reason `error` and leaves the others running."""

    def __init__(
        self,
        *,
        name: str,
        model: Model,
        model_name: str,
        system: str,
        task: str,
        tools: dict[str, Tool],
        ctx: ToolContext,
        max_turns: int,
        gate: TurnGate,
        leave: Callable[[str], None],
        stop_reason: Callable[[], str],
        tally: RunTally,
        history: list[Message] | None = None,
        turns_used: int = 0,
    ) -> None:
        """`tally` is the run's accounting (budgets are checked against it); `history` and
        `turns_used` continue a conversation (a resumed run)."""
        self.name = name
        self.model = model
        self.model_name = model_name
        self.system = system
        self.tools = tools
        self.ctx = ctx
        self.max_turns = max_turns
        self.gate = gate
        self.leave = leave  # gives up the agent's place in the turn order
        self.stop_reason = stop_reason  # why the scheduler cancelled us, if it did
        self.tally = tally
        self.state = AgentState(name=name, turn=turns_used)
        self.state.messages = list(history) if history else [first_message(task)]
        self._tool_defs = [tool.definition() for tool in tools.values()]

    async def run(self) -> str:
        """Run to the end and return the end reason."""
        events = self.ctx.events
        reason: str | None = None
        message = ""
        try:
            await self.ctx.shell.start()
            events.emit(
                AgentStart(
                    model=self.model_name,
                    tools=list(self.tools),
                    cwd=str(self.ctx.shell.cwd),
                    shell_pid=self.ctx.shell.pid,
                ),
                self.name,
            )
            if self.ctx.sandbox is not None:
                self.ctx.sandbox.begin(self.ctx)
            if self.state.turn:
                await self._catch_up_model()
            reason = await self._loop()
        except AuthError:
            reason, message = "error", "the API rejected the key"
            raise
        except RecordingExhausted as exc:
            reason, message = "recording_end", str(exc)
        except Exception as exc:
            reason, message = "error", f"{type(exc).__name__}: {exc}"
            events.emit(Error(error=type(exc).__name__, message=str(exc), where="agent"), self.name)
        finally:
            # First, before anything awaits: the next round is drawn from the agents still in
            # the turn order, and must not count on one that takes no more turns (the shell's
            # close would otherwise race the other agents' turns, and replays differ).
            self.leave(self.name)
            if reason is None:  # cancelled from outside: the scheduler knows why
                reason = self.stop_reason()
                if reason == "error":  # another agent's error ended the run (a refused key)
                    message = "stopped with the run: another agent's error ended it"
            with trio.CancelScope(shield=True):
                await self.ctx.shell.close()
                self.ctx.locks.release_all(self.name)
                if self.ctx.sandbox is not None:  # the shell is closed: kill what it left
                    await self.ctx.sandbox.end(self.ctx)
                await self.model.aclose()
            self.state.status = "ended"
            self.state.end_reason = reason
            spent = self.tally.agents[self.name]
            events.emit(
                AgentEnd(
                    reason=reason,
                    turns=self.state.turn,
                    message=message,
                    tokens=spent.tokens,
                    cost_usd=spent.cost_usd,
                ),
                self.name,
            )
        return reason

    async def _catch_up_model(self) -> None:
        """A resumed agent's stateful model (a scripted policy) is stepped through the turns
        it had taken, with the same requests, so its memory is where it was at the crash."""
        if not getattr(self.model, "stateful", False):
            return
        turn = 0
        for i, message in enumerate(self.state.messages):
            if message["role"] == "assistant":
                turn += 1
                await self.model.respond(
                    Request(self.name, turn, self.system, self._tool_defs, self.state.messages[:i])
                )

    async def _loop(self) -> str:
        while True:
            if self.state.turn >= self.max_turns:
                self.ctx.events.emit(Limit(limit="max_turns", value=self.max_turns), self.name)
                return "max_turns"
            async with self.gate(self.name):
                spent = self.tally.agents[self.name]
                over = over_budget(
                    self.ctx.limits,
                    tokens=spent.tokens,
                    cost=spent.cost_usd,
                    run_cost=lambda: self.tally.total_cost,
                )
                if over is not None:  # checked inside the gate: just before the call
                    self.ctx.events.emit(Limit(limit=over[0], value=over[1]), self.name)
                    return "budget"
                finished, called_tools = await self._turn()
            if finished or not called_tools:
                return "finished"

    async def _turn(self) -> tuple[bool, bool]:
        state, events = self.state, self.ctx.events
        state.turn += 1
        self.ctx.turn = state.turn
        if self.ctx.mailbox is not None:  # messages arrive at the start of a turn
            append_letters(state.messages, self.name, self.ctx.mailbox.take(self.name, state.turn))
        state.status = "thinking"
        events.emit(
            ModelRequest(turn=state.turn, model=self.model_name, messages=len(state.messages)),
            self.name,
        )
        start = trio.current_time()
        reply = await self.model.respond(
            Request(
                agent=self.name,
                turn=state.turn,
                system=self.system,
                tools=self._tool_defs,
                messages=state.messages,
            )
        )
        self._record_reply(reply, trio.current_time() - start)
        state.messages.append({"role": "assistant", "content": reply.content})
        results: list[dict[str, Any]] = []
        finished = False
        cut = reply.stop_reason == "max_tokens"  # its last tool call may be incomplete
        for block in reply.tool_uses:
            output = await self._call_tool(block, cut)
            finished = finished or output.finish
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block["id"],
                    "content": output.content,
                    **({"is_error": True} if output.is_error else {}),
                }
            )
        if results:
            state.messages.append({"role": "user", "content": results})
        state.status = "idle"
        return finished, bool(results)

    def _record_reply(self, reply: Reply, latency: float) -> None:
        usage = reply.usage
        self.ctx.events.emit(
            ModelResponse(
                turn=self.state.turn,
                model=reply.model or self.model_name,
                content=reply.content,
                stop_reason=reply.stop_reason,
                usage=usage,
                latency=round(latency, 6),
                retries=reply.retries,
                cost_usd=reply.cost_usd,
            ),
            self.name,
        )

    async def _call_tool(self, block: dict[str, Any], cut: bool = False) -> ToolOutput:
        name, args = block.get("name", ""), block.get("input") or {}
        events, turn = self.ctx.events, self.state.turn
        events.emit(ToolCall(turn=turn, tool_use_id=block["id"], name=name, input=args), self.name)
        start = trio.current_time()
        tool = self.tools.get(name)
        self.state.status = _STATUS_WHILE.get(name, f"calling {name}")
        try:
            if tool is None:
                raise ToolError(f"no tool named {name!r}; your tools are {', '.join(self.tools)}")
            if cut:
                raise ToolError(_CUT_SHORT)
            output = await tool.run(self.ctx, args)
        except ToolError as exc:
            output = ToolOutput(str(exc), is_error=True)
        events.emit(
            ToolResult(
                turn=turn,
                tool_use_id=block["id"],
                name=name,
                content=output.content,
                is_error=output.is_error,
                duration=round(trio.current_time() - start, 6),
            ),
            self.name,
        )
        return output
