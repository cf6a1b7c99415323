"""Tools for talking to other agents: send_message and wait_for_message (sim.mailbox)."""

from __future__ import annotations

from typing import Any

from sim.errors import ToolError
from sim.mailbox import Mailbox
from sim.tools.base import ToolContext, ToolOutput, require_str


def _mailbox(ctx: ToolContext, tool: str) -> Mailbox:
    if ctx.mailbox is None:
        raise ToolError(f"{tool} is not available in this run (it has no mailboxes)")
    return ctx.mailbox


class SendMessageTool:
    name = "send_message"

    def definition(self) -> dict[str, Any]:
        return {
            "name": "send_message",
            "description": (
                "Send a short text message to other agents in this run. The recipient reads it "
                "at the start of its next turn, as a note beginning `[message from <your "
                "name>]`; you get messages from others the same way. Use it to hand work on, "
                "ask for something, or say you are done with a shared file. Only the "
                "recipients see it. For long content, write a file in the shared directory and "
                "send its path."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "to": {
                        "anyOf": [
                            {"type": "string"},
                            {"type": "array", "items": {"type": "string"}},
                        ],
                        "description": (
                            'an agent\'s name, a list of names, or "all" for every other '
                            "agent still running"
                        ),
                    },
                    "text": {"type": "string", "description": "the message"},
                },
                "required": ["to", "text"],
            },
        }

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        mailbox = _mailbox(ctx, "send_message")
        text = require_str(args, "text", "send_message")
        if not text.strip():
            raise ToolError("send_message needs a non-empty `text`")
        sent, ended = mailbox.send(ctx.agent, args.get("to"), text)
        note = f"; not sent to {', '.join(ended)}, who ended already" if ended else ""
        return ToolOutput(f"sent to {', '.join(sent)}{note}")


class WaitForMessageTool:
    name = "wait_for_message"

    def definition(self) -> dict[str, Any]:
        return {
            "name": "wait_for_message",
            "description": (
                "Pause until another agent sends you a message, instead of checking again and "
                "again. Waiting does not use up your turns, and other agents keep working "
                "meanwhile. Returns as soon as a message arrives (it follows this result), "
                "when `timeout` seconds have passed, or when no message can come any more "
                "(every other agent has ended or is waiting too). Returns at once if a message "
                "is already waiting."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "timeout": {
                        "type": "number",
                        "description": "seconds to wait at most; omit to wait as long as needed",
                    }
                },
            },
        }

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        mailbox = _mailbox(ctx, "wait_for_message")
        timeout = args.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0
        ):
            raise ToolError(f"`timeout` must be a number of seconds >= 0 (got {timeout!r})")
        if mailbox.pending(ctx.agent):
            outcome = "message"
        elif not mailbox.live(excluding=ctx.agent):
            outcome = "stalemate"
        else:
            async with ctx.park():
                outcome = await mailbox.wait(ctx.agent, timeout)
        if outcome == "message":
            return ToolOutput("a message arrived; your new messages follow this result")
        if outcome == "timeout":
            return ToolOutput(f"no message came within {timeout:g} s")
        return ToolOutput(
            "no message can come: every other agent has ended, or is waiting for a message "
            "too, or for a lock that one of you holds. Stop waiting: unlock what others need, "
            "go on with your task, send a message yourself, or finish."
        )
