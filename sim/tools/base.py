"""What every tool gets and returns.

A tool is the harness side of one tool a model can call: its definition (what the model sees;
the description is a prompt, written for the model) and `run`, which does the work. A tool
that fails raises ToolError; the agent loop turns that into an `is_error` tool result.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from sim.clobbers import ClobberDetector
    from sim.events import EventLog
    from sim.isolation import AgentSandbox
    from sim.locks import LockManager
    from sim.mailbox import Mailbox
    from sim.scenario import Limits
    from sim.shell import Shell
    from sim.workspace import Workspace


@dataclass
class ToolContext:
    """The agent-side world a tool acts on. One per agent; `turn` advances each turn."""

    agent: str
    workspace: Workspace
    shell: Shell
    locks: LockManager
    events: EventLog
    limits: Limits
    turn: int = 0
    mailbox: Mailbox | None = None  # None: messages are off (tests of other tools)
    clobbers: ClobberDetector | None = None  # None: the scenario turned clobber detection off
    # Steps out of the turn order while a tool waits (Scheduler.park); a no-op if concurrent.
    park: Callable[[], AbstractAsyncContextManager[None]] = nullcontext
    sandbox: AgentSandbox | None = None  # command policy and resource limits (sim.isolation)


@dataclass(frozen=True)
class ToolOutput:
    content: str
    is_error: bool = False
    finish: bool = False  # the agent is done after this turn


class Tool(Protocol):
    name: str

    def definition(self) -> dict[str, Any]:
        """The tool as the Messages API takes it (Anthropic-defined type, or a JSON schema)."""
        ...

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput: ...


def require_str(args: dict[str, Any], key: str, tool: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        from sim.errors import ToolError

        raise ToolError(f"{tool} needs `{key}` as a string (got {value!r})")
    return value
