"""Readable lines from events: what `sim show` and `sim replay --playback` print.

Reads the event log only (no shell, no model), so it works on a finished run, a live one
(`follow`) and a crashed one (a torn last line is skipped and reported).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sim.errors import LogError
from sim.events import parse_line, read_events
from sim.workspace import require_run_dir

Event = dict[str, Any]
_MAX_OUTPUT_LINES = 20


def _clip(text: str, lines: int = _MAX_OUTPUT_LINES) -> str:
    parts = text.rstrip("\n").splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    head = parts[: lines // 2]
    tail = parts[-lines // 2 :]
    return "\n".join([*head, f"… {len(parts) - len(head) - len(tail)} more lines …", *tail])


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) if text else ""


def _tool_input(name: str, args: dict[str, Any]) -> str:
    if name == "bash":
        return "$ " + str(args.get("command") or ("(restart)" if args.get("restart") else ""))
    if name in ("lock", "unlock"):
        return str(args.get("path", ""))
    if name == "finish":
        return str(args.get("summary", ""))
    return json.dumps(args, ensure_ascii=False)[:300]


def format_event(e: Event, *, calls_shown: bool = True) -> str | None:
    """One event as text, or None for events that add nothing to a transcript.
    `calls_shown=False`: the tool_call events are filtered out, so a command's own line says
    what ran."""
    who = e.get("agent") or "harness"
    stamp = f"{e.get('t', 0):9.3f}s {who:<12}"
    kind = e.get("kind")
    if kind == "run_start":
        return f"{stamp} run {e['run_id']} of {e['scenario']} ({', '.join(e['agents'])})"
    if kind == "run_end":
        return (
            f"{stamp} run ended: {e['status']} ({e.get('reason', '')}) after {e['duration']:.2f}s"
        )
    if kind == "agent_start":
        return f"{stamp} started ({e['model']}) in {e['cwd']}"
    if kind == "agent_end":
        note = f": {e['message']}" if e.get("message") else ""
        return f"{stamp} ended: {e['reason']} after {e['turns']} turns{note}"
    if kind == "model_response":
        texts = [b.get("text", "") for b in e.get("content", []) if b.get("type") == "text"]
        if not any(t.strip() for t in texts):
            return None
        return f"{stamp} says:\n{_indent(_clip(' '.join(texts)))}"
    if kind == "tool_call":
        return f"{stamp} [{e['turn']}] {e['name']} {_tool_input(e['name'], e.get('input', {}))}"
    if kind == "tool_result":
        if e["name"] == "bash" and not e.get("is_error"):
            return None  # the command event shows the output
        flag = "error: " if e.get("is_error") else ""
        return f"{stamp}   -> {flag}{_clip(e.get('content', ''), 6)}"
    if kind == "command":
        code = "timed out" if e.get("timed_out") else f"exit {e.get('exit_code')}"
        trunc = ", truncated" if e.get("truncated") else ""
        body = _indent(_clip(e.get("output", "")))
        ran = "" if calls_shown else f"[{e['turn']}] $ {_clip(e.get('command', ''), 3)} "
        head = f"{stamp} {ran}" if ran else f"{stamp}   "
        return f"{head}({code}, {e['duration']:.3f}s{trunc})" + (f"\n{body}" if body else "")
    if kind == "lock_wait":
        return f"{stamp} waits for lock {e['lock']} (held by {e.get('holder')})"
    if kind == "message":
        return f"{stamp} -> {', '.join(e['recipients'])}: {_clip(e.get('text', ''), 4)}"
    if kind in ("model_request", "lock_acquire", "lock_release", "setup", "round", "file_write"):
        return None
    fields = {k: v for k, v in e.items() if k not in ("seq", "t", "ts", "agent", "kind")}
    return f"{stamp} {kind}: {json.dumps(fields, ensure_ascii=False)[:300]}"


def load(run_dir: Path) -> tuple[list[Event], str | None]:
    require_run_dir(run_dir, "events.jsonl")
    contents = read_events(run_dir / "events.jsonl")
    return contents.events, contents.torn_line


def select(
    events: list[Event], agent: str | None = None, kinds: list[str] | None = None
) -> list[Event]:
    return [
        e
        for e in events
        if (agent is None or e.get("agent") == agent) and (not kinds or e.get("kind") in kinds)
    ]


def transcript(events: list[Event], by_agent: bool = False) -> Iterator[str]:
    """Lines interleaved by time, or grouped per agent (in order of first appearance)."""
    if by_agent:
        agents = list(dict.fromkeys(e.get("agent") for e in events))
        ordered = [e for a in agents for e in events if e.get("agent") == a]
    else:
        ordered = events
    last_agent: object = object()
    calls_shown = any(e.get("kind") == "tool_call" for e in events)
    for e in ordered:
        line = format_event(e, calls_shown=calls_shown)
        if line is None:
            continue
        if by_agent and e.get("agent") != last_agent:
            last_agent = e.get("agent")
            yield f"\n== {last_agent or 'harness'} =="
        yield line


def follow(
    path: Path,
    emit: Callable[[Event], None],
    poll: float = 0.2,
    stop_at_end: bool = True,
    writer_alive: Callable[[], bool] = lambda: True,
) -> bool:
    """Call `emit` for each event as it is appended (like `tail -f`), until `run_end`: True.
    False once the log has no more and `writer_alive()` says its writer is gone (a run killed
    before it could log its end)."""
    with path.open(encoding="utf-8") as f:
        pending = ""
        while True:
            chunk = f.readline()
            if not chunk:
                if writer_alive():
                    time.sleep(poll)
                    continue
                chunk = f.readline()  # what it wrote just before it went, if anything
                if not chunk:
                    return False
            pending += chunk
            if not pending.endswith("\n"):
                continue  # a line still being written
            try:
                event = parse_line(pending)
            except ValueError as exc:
                raise LogError(f"{path}: a line that is not an event ({exc})") from None
            pending = ""
            emit(event)
            if stop_at_end and event.get("kind") == "run_end":
                return True


def playback(events: list[Event], speed: float, emit: Callable[[str], None]) -> None:
    """Print the transcript with the recorded pauses divided by `speed` (0: no pauses)."""
    previous = None
    for e in events:
        line = format_event(e)
        if line is None:
            continue
        if speed > 0 and previous is not None:
            time.sleep(max(0.0, (e["t"] - previous) / speed))
        previous = e["t"]
        emit(line)
