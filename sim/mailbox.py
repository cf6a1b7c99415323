"""Messages between agents: sent at once, delivered at the recipient's next turn.

Delivery goes through the Messages format, so scripted and Claude agents get the same thing:
at the start of its turn, each message waiting for an agent becomes a text block appended to
the user message the model is about to read, `[message from alice] text` (`[message from alice
to all] ...` for a broadcast, `[message from the harness] ...` for notices such as a broken
lock). The scripted model hands those blocks to its policy as `Observation.inbox`.

Each agent's mailbox is a file, `runs/<id>/mailboxes/<agent>.jsonl`, appended one line per
message (`{"id", "from", "to", "text", "t"}`) and one line per delivery (`{"delivered": [ids],
"turn", "t"}`), each with a single `write`. A Mailbox opened on a run directory that already
has them keeps every message not yet delivered, so a resumed run delivers them.

`wait` parks an agent until a message comes. When every agent still running is waiting for a
message with no timeout, or for a lock that only one of them could release (`lock_stuck`), no
message can ever come, so the message waiters are woken and told so.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from sim.errors import ToolError
from sim.events import AgentEnd, EventLog, Message, Payload

HARNESS = "the harness"  # the sender named on notices from the harness itself
MAX_TEXT_BYTES = 16_000
_DELIVERY = re.compile(r"^\[message from (.+?)(?: to ([^\]]*))?\] ?", re.DOTALL)


@dataclass(frozen=True)
class Letter:
    id: int
    sender: str
    recipients: tuple[str, ...]
    text: str
    broadcast: bool = False

    def block_text(self, reader: str) -> str:
        """The text the recipient reads: `[message from alice] ...` names the sender."""
        if self.broadcast:
            to = " to all"
        elif len(self.recipients) > 1:
            to = " to " + ", ".join("you" if r == reader else r for r in self.recipients)
        else:
            to = ""
        return f"[message from {self.sender}{to}] {self.text}"


def parse_delivery(text: str) -> tuple[str, str] | None:
    """`[message from alice] hi` -> ("alice", "hi"); None for text that is not a message."""
    m = _DELIVERY.match(text)
    return (m.group(1), text[m.end() :]) if m else None


def is_delivery(text: str) -> bool:
    return text.startswith("[message from ")


def append_letters(messages: list[dict[str, Any]], reader: str, letters: Sequence[Letter]) -> None:
    """Append the letters as text blocks to the last (user) message of a conversation. Text
    blocks go after tool results, as the Messages API requires."""
    if not letters:
        return
    last = messages[-1]
    if last.get("role") != "user":  # never the case in the agent loop; kept total
        last = {"role": "user", "content": []}
        messages.append(last)
    if isinstance(last["content"], str):
        last["content"] = [{"type": "text", "text": last["content"]}]
    last["content"].extend({"type": "text", "text": lt.block_text(reader)} for lt in letters)


def _rows(path: Path) -> list[dict[str, Any]]:
    """A mailbox file's lines; a torn last line (a crash mid-write) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _letter(row: dict[str, Any]) -> Letter:
    return Letter(row["id"], row["from"], tuple(row["to"]), row["text"], row.get("all", False))


def deliveries(directory: Path, agent: str) -> dict[int, list[Letter]]:
    """What `agent` was handed at the start of each turn, from its mailbox file: turn ->
    letters, oldest first. A resumed run puts them back into the rebuilt conversation."""
    letters: dict[int, Letter] = {}
    out: dict[int, list[Letter]] = {}
    for row in _rows(directory / f"{agent}.jsonl"):
        if "delivered" in row:
            out.setdefault(int(row["turn"]), []).extend(
                letters[i] for i in row["delivered"] if i in letters
            )
        else:
            letters[row["id"]] = _letter(row)
    return out


class Mailbox:
    """The mailboxes of one run. All methods run in the trio thread."""

    def __init__(
        self,
        directory: Path,
        agents: list[str],
        events: EventLog,
    ) -> None:
        self.directory = directory
        self._agents = list(agents)
        self._events = events
        self._pending: dict[str, list[Letter]] = {name: [] for name in agents}
        self._arrived = {name: trio.Event() for name in agents}
        self._ended: set[str] = set()
        self._waiting: dict[str, bool] = {}  # agent -> waits with a timeout
        self._stalemate: set[str] = set()  # waiters woken because no message can come
        # Is an agent stuck in a lock wait (LockManager.stuck)? Set by the run.
        self.lock_stuck: Callable[[str], bool] = lambda agent: False
        directory.mkdir(parents=True, exist_ok=True)
        self._next_id = 1 + max((self._load(name) for name in agents), default=0)

    def _path(self, agent: str) -> Path:
        return self.directory / f"{agent}.jsonl"

    def _load(self, agent: str) -> int:
        """Read an existing mailbox (a resumed run): keep what was not delivered. Returns the
        highest message id seen. A torn last line (a crash mid-write) is ignored."""
        letters: dict[int, Letter] = {}
        top = 0
        for row in _rows(self._path(agent)):
            if "delivered" in row:
                for i in row["delivered"]:
                    letters.pop(i, None)
            else:
                top = max(top, row["id"])
                letters[row["id"]] = _letter(row)
        self._pending[agent] = list(letters.values())
        if letters:
            self._arrived[agent].set()
        return top

    def _append(self, agent: str, row: dict[str, Any]) -> None:
        # One write per line on O_APPEND, as the event log does: a crash loses no whole line.
        fd = os.open(self._path(agent), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(row, ensure_ascii=False) + "\n").encode())
        finally:
            os.close(fd)

    def live(self, excluding: str | None = None) -> list[str]:
        return [a for a in self._agents if a not in self._ended and a != excluding]

    def resolve(self, sender: str, to: object) -> tuple[list[str], list[str], bool]:
        """(recipients still running, named recipients that have ended, broadcast?) for a
        `to` of one name, a list of names, or "all". ToolError for anything else."""
        if to == "all" or to == ["all"]:
            live = self.live(excluding=sender)
            if not live:
                raise ToolError("no other agent is still running; nobody would read a message")
            return live, [], True
        names = [to] if isinstance(to, str) else to
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ToolError(f'`to` must be an agent name, a list of names, or "all" (got {to!r})')
        unknown = [n for n in names if n not in self._pending]
        if unknown:
            raise ToolError(
                f"no agent named {', '.join(unknown)}; the agents are {', '.join(self._agents)}"
            )
        if sender in names:
            raise ToolError("you cannot send a message to yourself")
        unique = list(dict.fromkeys(names))
        ended = [n for n in unique if n in self._ended]
        if len(ended) == len(unique):
            raise ToolError(f"{', '.join(ended)} ended already and will read no more messages")
        return [n for n in unique if n not in self._ended], ended, False

    def send(self, sender: str, to: object, text: str) -> tuple[list[str], list[str]]:
        """Send `text` from an agent; log `message`. Returns (delivered to, ended recipients
        skipped). ToolError for bad recipients or a text too long."""
        size = len(text.encode())
        if size > MAX_TEXT_BYTES:
            raise ToolError(
                f"the message is {size} bytes; keep it under {MAX_TEXT_BYTES}, or write it to a "
                "file in shared/ and send its path"
            )
        recipients, ended, broadcast = self.resolve(sender, to)
        self._post(sender, recipients, text, broadcast, agent=sender)
        return recipients, ended

    def notify(self, agent: str, text: str) -> None:
        """A notice from the harness to one agent (e.g. its lock was broken)."""
        if agent in self._pending and agent not in self._ended:
            self._post(HARNESS, [agent], text, False, agent=None)

    def _post(
        self, sender: str, to: list[str], text: str, broadcast: bool, agent: str | None
    ) -> None:
        letter = Letter(self._next_id, sender, tuple(to), text, broadcast)
        self._next_id += 1
        t = round(self._events.elapsed, 6)
        row = {"id": letter.id, "from": sender, "to": to, "text": text, "t": t}
        if broadcast:
            row["all"] = True
        for name in to:
            self._append(name, row)
            self._pending[name].append(letter)
            self._arrived[name].set()
        self._events.emit(Message(recipients=to, size=len(text.encode()), text=text), agent)

    def pending(self, agent: str) -> int:
        return len(self._pending[agent])

    def take(self, agent: str, turn: int) -> list[Letter]:
        """Every message waiting for `agent`, oldest first, marked delivered."""
        letters = self._pending[agent]
        if not letters:
            return []
        self._pending[agent] = []
        self._arrived[agent] = trio.Event()
        t = round(self._events.elapsed, 6)
        self._append(agent, {"delivered": [lt.id for lt in letters], "turn": turn, "t": t})
        return letters

    async def wait(self, agent: str, timeout: float | None) -> str:
        """Park-free part of `wait_for_message`: wait until a message is pending. Returns
        "message", "timeout", or "stalemate" (every running agent is waiting, none with a
        timeout, so no message can come)."""
        if self._pending[agent]:
            return "message"
        self._waiting[agent] = timeout is not None
        try:
            self.check_stalemate()
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                await self._arrived[agent].wait()
        finally:
            del self._waiting[agent]
        if self._pending[agent]:
            self._stalemate.discard(agent)
            return "message"
        self._arrived[agent] = trio.Event()  # a stalemate wake-up set it with nothing pending
        if agent in self._stalemate:
            self._stalemate.discard(agent)
            return "stalemate"
        return "timeout"

    def check_stalemate(self) -> None:
        """Wake the message waiters if no running agent could ever send them a message."""
        live = self.live()
        waiters = [a for a in live if a in self._waiting]
        if waiters and all(
            (a in self._waiting and not self._waiting[a]) or self.lock_stuck(a) for a in live
        ):
            for a in waiters:
                self._stalemate.add(a)
                self._arrived[a].set()

    def on_event(self, agent: str | None, event: Payload) -> None:
        """EventLog listener: an agent that ended gets no more mail and counts as gone."""
        if isinstance(event, AgentEnd) and agent in self._pending:
            self._ended.add(agent)
            self.check_stalemate()
