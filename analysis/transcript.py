"""Each agent's transcript as HTML: what it said, what it called, what came back.

Built from the `events` frame's JSON (every field, as logged), in log order. Long texts are
cut and long transcripts capped so a report of a long run stays a file a browser opens.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

import pandas as pd

MAX_TEXT = 2_000  # characters kept of one text, command output or tool result
MAX_ENTRIES = 400  # entries shown per agent

_SHOWN = {
    "agent_start",
    "model_response",
    "tool_result",
    "command",
    "lock_wait",
    "lock_acquire",
    "lock_release",
    "lock_overdue",
    "message",
    "file_write",
    "clobber",
    "deadlock",
    "interrupted",
    "limit",
    "error",
    "shell_restart",
    "agent_end",
}


def _cut(text: Any) -> str:
    text = "" if text is None else str(text)
    if len(text) <= MAX_TEXT:
        return escape(text)
    return escape(text[:MAX_TEXT]) + f"<em>… ({len(text) - MAX_TEXT:,} more characters)</em>"


def _pre(text: Any, cls: str = "") -> str:
    return f'<pre class="{cls}">{_cut(text)}</pre>'


def _line(t: float, kind: str, body: str) -> str:
    return f'<div class="entry {kind}"><span class="t">{t:9.3f}s</span> {body}</div>'


def _entry(me: str, e: dict[str, Any]) -> str | None:
    kind, t = e["kind"], float(e.get("t") or 0.0)
    if kind == "model_response":
        parts = [f"<b>turn {e.get('turn')}</b> · {escape(str(e.get('model')))}"]
        for block in e.get("content") or []:
            if block.get("type") == "text":
                parts.append(_pre(block.get("text"), "say"))
            elif block.get("type") == "tool_use":
                args = json.dumps(block.get("input"), ensure_ascii=False)
                parts.append(
                    f'<div class="call">→ {escape(str(block.get("name")))} {_cut(args)}</div>'
                )
        return _line(t, kind, "".join(parts))
    if kind == "tool_result":
        cls = "error" if e.get("is_error") else "result"
        return _line(t, kind, f"← {escape(str(e.get('name')))}" + _pre(e.get("content"), cls))
    if kind == "command":
        code = "timed out" if e.get("timed_out") else f"exit {e.get('exit_code')}"
        head = f"$ {_cut(e.get('command'))} <small>({code}, {e.get('duration', 0):.3f} s)</small>"
        return _line(t, kind, head)
    if kind == "message":
        if e.get("agent") == me:
            to = ", ".join(map(str, e.get("recipients") or []))
            return _line(t, kind, f"✉ to {escape(to)}" + _pre(e.get("text"), "say"))
        return _line(t, kind, f"✉ from {escape(str(e.get('agent')))}" + _pre(e.get("text"), "say"))
    if kind == "agent_start":
        return _line(t, kind, f"started · model {escape(str(e.get('model')))}")
    if kind == "agent_end":
        note = f" — {_cut(e.get('message'))}" if e.get("message") else ""
        return _line(t, kind, f"<b>ended: {escape(str(e.get('reason')))}</b>{note}")
    fields = {k: v for k, v in e.items() if k not in ("seq", "t", "ts", "agent", "kind")}
    summary = ", ".join(f"{k}={v}" for k, v in fields.items())
    return _line(t, kind, f"{escape(kind)}: {_cut(summary)}")


_MENTIONS = {"message", "lock_overdue", "deadlock"}  # events that concern other agents too


def _involved(e: dict[str, Any]) -> set[str]:
    """The agents whose transcript shows this event."""
    out = {e["agent"]} if e.get("agent") else set()
    kind = e["kind"]
    if kind == "message":
        out.update(map(str, e.get("recipients") or []))
    elif kind == "lock_overdue" and e.get("holder"):
        out.add(str(e["holder"]))
    elif kind == "deadlock":
        out.update(map(str, e.get("cycle") or []))
    return out


def transcripts(events: pd.DataFrame, agents: list[str]) -> dict[str, str]:
    """Agent name -> its transcript's HTML (entries in log order, at most MAX_ENTRIES).

    Only the events that can be shown are parsed: an agent's own events past its cap are
    counted from the frame, so a report of a million-event run stays quick."""
    wanted = events[events["kind"].isin(_SHOWN)]
    mentions = wanted["kind"].isin(_MENTIONS)
    rank = wanted.groupby("agent").cumcount()
    own_total = wanted[~mentions].groupby("agent").size()
    counts = {a: int(own_total.get(a, 0)) for a in agents}
    entries: dict[str, list[str]] = {a: [] for a in agents}
    shown = mentions | (rank < MAX_ENTRIES)
    for text, mention in zip(wanted["json"][shown], mentions[shown], strict=True):
        event = json.loads(text)
        for me in _involved(event):
            if me not in entries:
                continue
            counts[me] += int(mention)
            if len(entries[me]) < MAX_ENTRIES:
                html = _entry(me, event)
                if html:
                    entries[me].append(html)
    out = {}
    for me in agents:
        hidden = counts[me] - len(entries[me])
        tail = f'<p class="more">… and {hidden:,} more entries</p>' if hidden > 0 else ""
        out[me] = "\n".join(entries[me]) + tail
    return out
