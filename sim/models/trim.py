"""Keep a conversation inside the model's context window by trimming the oldest tool results.

The size of the next request is estimated from what the API last reported (the prompt tokens
of the last request plus the tokens of its reply, both exact) plus the characters appended
since, at `_CHARS_PER_TOKEN` (a deliberately low figure, so the estimate errs high). When the
estimate passes `_HIGH` of the room for the prompt (the window minus the reply's `max_tokens`),
the contents of the oldest tool results are replaced by a one-line note, oldest first, until it
is under `_LOW`. Trimming in one batch down to `_LOW`, not one result per turn, means the
prompt-cache prefix changes once per batch instead of at every turn.

The newest message (the results the model is about to read) is never trimmed, and nothing else
is touched: text, tool calls and the task stay. The agent's own copy of the conversation and the
event log keep every result in full; only what is sent shrinks. If trimming every older result
is not enough, the request goes out anyway and the API's error ends the agent.
"""

from __future__ import annotations

import json
from typing import Any

from sim.budget import usage_tokens
from sim.models.base import Message

_CHARS_PER_TOKEN = 3.0
_HIGH, _LOW = 0.75, 0.5


def trimmed_note(chars: int) -> str:
    return (
        f"[sim: this older tool result ({chars} characters) was removed to keep the "
        "conversation inside the context window; run the command again if you need it]"
    )


def _chars(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value))


class ContextTrimmer:
    """One per agent. `prepare` before each request, `observe` after each response."""

    def __init__(self, prompt_room: int) -> None:
        self.room = prompt_room  # tokens the prompt may take: window - max_tokens of a reply
        self.trimmed: dict[str, int] = {}  # tool_use_id -> characters removed
        self._known_tokens = 0  # prompt + reply tokens of the last call (from `usage`)
        self._known_messages = 0  # how many messages those tokens cover

    def estimate(self, messages: list[Message]) -> float:
        new = sum(_chars(m.get("content")) for m in messages[self._known_messages :])
        return self._known_tokens + new / _CHARS_PER_TOKEN

    def prepare(self, messages: list[Message]) -> list[Message]:
        """The messages to send: `messages` itself, or a copy with old results trimmed."""
        estimate = self.estimate(messages)
        if estimate > _HIGH * self.room:
            for block in self._old_results(messages):
                chars = _chars(block.get("content", ""))
                self.trimmed[block["tool_use_id"]] = chars
                estimate -= (chars - len(trimmed_note(chars))) / _CHARS_PER_TOKEN
                if estimate <= _LOW * self.room:
                    break
        if not self.trimmed:
            return messages
        return [self._apply(m) for m in messages]

    def observe(self, usage: dict[str, Any], sent_messages: int) -> None:
        """Record the exact size the API reported for the request just sent and its reply."""
        self._known_tokens = usage_tokens(usage)
        self._known_messages = sent_messages + 1  # the reply is appended next

    def _old_results(self, messages: list[Message]) -> list[dict[str, Any]]:
        out = []
        for message in messages[:-1]:
            content = message.get("content")
            if message.get("role") != "user" or not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") == "tool_result" and block["tool_use_id"] not in self.trimmed:
                    out.append(block)
        return out

    def _apply(self, message: Message) -> Message:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            return message
        if not any(b.get("tool_use_id") in self.trimmed for b in content):
            return message
        blocks = [
            {**b, "content": trimmed_note(self.trimmed[b["tool_use_id"]])}
            if b.get("type") == "tool_result" and b.get("tool_use_id") in self.trimmed
            else b
            for b in content
        ]
        return {**message, "content": blocks}
