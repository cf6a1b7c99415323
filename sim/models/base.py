"""The Model protocol: every brain answers in the Anthropic Messages format.

A model gets the conversation so far (system prompt, tool schemas, messages as the Messages
API takes them) and returns one assistant message: `text` and `tool_use` content blocks, a
`stop_reason` and `usage`. The scripted model builds the same blocks from a policy, the replay
model returns recorded ones, and the Claude model asks the API, so the agent loop has one code
path and the transcript of any run is a valid Messages conversation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Content blocks and messages are plain dicts in the Messages wire format: that format is the
# contract (it goes to the API and into the log verbatim), and the SDK's TypedDicts type it.
Block = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class ModelRequest:
    """What an agent asks its model for one turn."""

    agent: str
    turn: int  # 1-based
    system: str
    tools: list[dict[str, Any]]  # tool definitions as the API takes them
    messages: list[Message]


@dataclass(frozen=True)
class Reply:
    """One assistant message."""

    content: list[Block]
    stop_reason: str | None = "tool_use"
    usage: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    retries: int = 0  # how many times the call was retried before this answer
    cost_usd: float | None = None  # None when the price is unknown (never guessed as zero)

    @property
    def tool_uses(self) -> list[Block]:
        return [b for b in self.content if b.get("type") == "tool_use"]


class Model(Protocol):
    """A brain. `respond` may raise ModelError (the agent ends with reason `error`) or
    AuthError (the run ends). It must honour trio cancellation."""

    name: str

    async def respond(self, request: ModelRequest) -> Reply: ...

    async def aclose(self) -> None: ...
