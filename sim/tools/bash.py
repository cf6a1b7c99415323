"""Anthropic's bash tool over the agent's persistent shell."""

from __future__ import annotations

from typing import Any

from sim.errors import ToolError
from sim.events import Command, ShellRestart
from sim.tools.base import ToolContext, ToolOutput


def format_result(output: str, exit_code: int | None, timed_out: bool, timeout: float) -> str:
    """What the model reads: the output, then a note when the command did not end cleanly."""
    notes = []
    if timed_out:
        notes.append(f"[timed out after {timeout:g} s; the command was interrupted]")
    elif exit_code not in (0, None):
        notes.append(f"[exit code {exit_code}]")
    return "\n".join([output.rstrip("\n"), *notes]).strip("\n") or "(no output)"


class BashTool:
    name = "bash"

    def definition(self) -> dict[str, Any]:
        # Anthropic-defined: the model already knows its schema (command, restart).
        return {"type": "bash_20250124", "name": "bash"}

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        if args.get("restart"):
            await ctx.shell.restart()
            ctx.events.emit(
                ShellRestart(reason="requested", cwd=str(ctx.shell.cwd), shell_pid=ctx.shell.pid),
                ctx.agent,
            )
            return ToolOutput(f"the shell was restarted in {ctx.shell.cwd}")
        command = args.get("command")
        if not isinstance(command, str) or not command.strip():
            raise ToolError("bash needs `command`, a non-empty string (or `restart: true`)")
        if ctx.sandbox is not None:
            ctx.sandbox.admit(ctx, command)  # PolicyError: the command does not run
        timeout = ctx.limits.command_timeout
        if ctx.clobbers is not None:
            ctx.clobbers.before_command(ctx.agent, command)
        try:
            result = await ctx.shell.run(command, timeout=timeout)
        except BaseException:
            if ctx.clobbers is not None:  # cancelled: still log what it wrote so far
                ctx.clobbers.after_command(ctx.agent)
            raise
        ctx.events.emit(
            Command(
                turn=ctx.turn,
                command=command,
                output=result.output,
                exit_code=result.exit_code,
                duration=round(result.duration, 6),
                bytes=result.output_bytes,
                timed_out=result.timed_out,
                truncated=result.truncated,
                restarted=result.restarted,
                cwd=str(ctx.shell.cwd),
                late_output=result.late_output,
            ),
            ctx.agent,
        )
        if ctx.clobbers is not None:  # after `command`, so its file writes follow it in the log
            ctx.clobbers.after_command(ctx.agent)
        if ctx.sandbox is not None:
            ctx.sandbox.after_command(ctx, result)
        if result.restarted:
            ctx.events.emit(
                ShellRestart(reason="died", cwd=str(ctx.shell.cwd), shell_pid=ctx.shell.pid),
                ctx.agent,
            )
        # Output printed since the last command (a background job's) comes first, as a
        # terminal would have shown it: it is the agent's, and nothing else shows it to it.
        output = result.output
        if result.late_output:
            output = result.late_output.rstrip("\n") + "\n" + output
        text = format_result(output, result.exit_code, result.timed_out, timeout)
        return ToolOutput(text, is_error=result.timed_out)
