"""Tools of our own for working beside other agents: lock, unlock, finish."""

from __future__ import annotations

from typing import Any

from sim.errors import ToolError
from sim.tools.base import ToolContext, ToolOutput, require_str


class LockTool:
    name = "lock"

    def definition(self) -> dict[str, Any]:
        return {
            "name": "lock",
            "description": (
                "Take the exclusive lock on a file in the shared directory before you read and "
                "change it, so no other agent changes it under you. Waits while another agent "
                "holds it (other agents wait for you the same way, so unlock as soon as you are "
                'done). The lock is the same one `flock "$SIM_LOCKS/<path>.lock"` takes in '
                "the shell. Paths are relative to the shared directory, e.g. `counter.txt`. "
                "If waiting would deadlock (another agent waits for a lock you hold while "
                "holding this one), the call fails at once and says what to unlock. A run may "
                "take a lock away from an agent that holds it too long; you are told if so."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "file in shared/, e.g. notes.md"},
                    "timeout": {
                        "type": "number",
                        "description": "seconds to wait at most; omit to wait as long as needed",
                    },
                },
                "required": ["path"],
            },
        }

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        name = ctx.locks.name_for(ctx.agent, require_str(args, "path", "lock"), ctx.shell.cwd)
        timeout = args.get("timeout")
        if timeout is not None and (not isinstance(timeout, int | float) or timeout < 0):
            raise ToolError(f"lock `timeout` must be a number of seconds >= 0 (got {timeout!r})")
        # No timings in the text: a replay compares tool results, and waits vary (the
        # lock_acquire event has the wait).
        if ctx.locks.holder(name) == ctx.agent:
            return ToolOutput(f"you already hold the lock on {name}")
        await ctx.locks.acquire(ctx.agent, name, timeout, park=ctx.park)
        return ToolOutput(f"locked {name}")


class UnlockTool:
    name = "unlock"

    def definition(self) -> dict[str, Any]:
        return {
            "name": "unlock",
            "description": (
                "Release a lock you took with the lock tool, so other agents can use the file."
            ),
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string", "description": "the locked file"}},
                "required": ["path"],
            },
        }

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        name = ctx.locks.name_for(ctx.agent, require_str(args, "path", "unlock"), ctx.shell.cwd)
        ctx.locks.release(ctx.agent, name)
        return ToolOutput(f"unlocked {name}")


class FinishTool:
    name = "finish"

    def definition(self) -> dict[str, Any]:
        return {
            "name": "finish",
            "description": (
                "Call this once your task is complete, with a short summary of what you did. "
                "You take no more turns after it; your locks are released."
            ),
            "input_schema": {
                "type": "object",
                "properties": {"summary": {"type": "string", "description": "what you did"}},
                "required": ["summary"],
            },
        }

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        summary = args.get("summary", "")
        return ToolOutput(f"finished: {summary}" if summary else "finished", finish=True)
