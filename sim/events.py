"""The event log: one JSON object per line, appended and flushed as it happens.

Every line carries `seq` (gap-free from 0), `t` (seconds since the run started, from the
harness clock), `ts` (wall clock, ISO 8601 UTC), `agent` (null for the harness) and `kind`,
then the fields of its kind. The payload types below are the schema: one pydantic model per
kind, registered by its `kind` literal. The log is the only contract between `sim/` and
`analysis/`, so a field added here is a column there.

The writer does one `os.write` per event on an `O_APPEND` descriptor: a killed run leaves
every event it wrote in the kernel's page cache, and at worst a torn last line, which the
reader drops and reports.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from sim.errors import LogError

# ---------------------------------------------------------------------------------------------
# Payloads: one model per kind. Field names are column names in analysis/.


class Payload(BaseModel):
    """Base of every event payload. Subclasses set `kind` as a Literal default."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    kind: str
    registry: ClassVar[dict[str, type[Payload]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        kind = cls.model_fields["kind"].default
        if isinstance(kind, str):
            Payload.registry[kind] = cls


class RunStart(Payload):
    kind: Literal["run_start"] = "run_start"
    run_id: str
    scenario: str
    seed: int
    agents: list[str]
    scheduler: str


class RunResume(Payload):
    kind: Literal["run_resume"] = "run_resume"
    torn_line_dropped: bool  # the log's last line was cut by the crash and was removed
    agents: list[str]  # the agents that go on (the others had ended)
    locks: dict[str, list[str]]  # locks taken again for their holders before anyone moved
    interrupted: int  # tool calls that were in flight at the crash


class RunEnd(Payload):
    kind: Literal["run_end"] = "run_end"
    status: str  # completed | interrupted | error | wall_time | done_when
    reason: str = ""
    duration: float
    tokens: int = 0  # every agent's tokens (input, cache writes and reads, output)
    cost_usd: float | None = None  # USD for the run; None when a price was unknown


class AgentStart(Payload):
    kind: Literal["agent_start"] = "agent_start"
    model: str
    tools: list[str]
    cwd: str
    shell_pid: int | None = None


class AgentEnd(Payload):
    kind: Literal["agent_end"] = "agent_end"
    # finished | max_turns | max_rounds | wall_time | done_when | error | budget | interrupted
    reason: str
    turns: int
    message: str = ""
    tokens: int = 0  # this agent's tokens (input, cache writes and reads, output)
    cost_usd: float | None = None  # this agent's USD; None when a price was unknown


class ModelRequest(Payload):
    kind: Literal["model_request"] = "model_request"
    turn: int
    model: str
    messages: int  # length of the conversation sent


class ModelResponse(Payload):
    kind: Literal["model_response"] = "model_response"
    turn: int
    model: str
    content: list[dict[str, Any]]  # Anthropic content blocks, verbatim: replay returns these
    stop_reason: str | None
    usage: dict[str, Any]
    latency: float
    retries: int = 0
    cost_usd: float | None = None  # None: unknown model price, never guessed as zero


class ToolCall(Payload):
    kind: Literal["tool_call"] = "tool_call"
    turn: int
    tool_use_id: str
    name: str
    input: dict[str, Any]


class ToolResult(Payload):
    kind: Literal["tool_result"] = "tool_result"
    turn: int
    tool_use_id: str
    name: str
    content: str
    is_error: bool
    duration: float


class Command(Payload):
    kind: Literal["command"] = "command"
    turn: int
    command: str
    output: str
    exit_code: int | None
    duration: float
    bytes: int
    timed_out: bool
    truncated: bool
    restarted: bool = False
    cwd: str = ""
    late_output: str = ""  # printed since the last command (background jobs), shown before


class ShellRestart(Payload):
    kind: Literal["shell_restart"] = "shell_restart"
    reason: str
    cwd: str
    shell_pid: int | None = None


class LockWait(Payload):
    kind: Literal["lock_wait"] = "lock_wait"
    lock: str
    holder: str | None = None  # an agent, "external" for a flock(1) outside the harness, or None


class LockAcquire(Payload):
    kind: Literal["lock_acquire"] = "lock_acquire"
    lock: str
    wait: float
    contended: bool


class LockRelease(Payload):
    kind: Literal["lock_release"] = "lock_release"
    lock: str
    hold: float
    reason: str = "unlock"  # unlock | agent_end | broken (held past its lease)


class Limit(Payload):
    kind: Literal["limit"] = "limit"
    limit: str  # max_turns | max_rounds | wall_time | done_when | budget
    value: float | str | None = None


class Round(Payload):
    kind: Literal["round"] = "round"
    number: int
    order: list[str]  # the agents' turn order in this round


class Message(Payload):
    kind: Literal["message"] = "message"  # `agent` is the sender
    recipients: list[str]
    size: int  # bytes of text
    text: str


class FileWrite(Payload):
    kind: Literal["file_write"] = "file_write"  # `agent` is the writer
    path: str  # relative to shared/
    bytes: int  # the file's size after the write (-1: deleted)
    locked: bool  # the writer held this file's lock
    via: str  # bash | editor
    # Other agents whose commands were running when the change happened and could have made
    # it instead (those naming the file, if any does): a scan cannot tell overlapping commands
    # apart. Empty when the writer is certain.
    also_running: list[str] = []


class Clobber(Payload):
    kind: Literal["clobber"] = "clobber"  # `agent` wrote over a version it had not seen
    path: str
    overwrote: str  # the agent whose change was lost
    locked: bool
    via: str


class Deadlock(Payload):
    kind: Literal["deadlock"] = "deadlock"
    cycle: list[str]  # agents in the wait-for cycle, in order
    locks: list[str]  # the locks they wait for, in the same order
    victim: str  # the waiter whose lock call was failed to break the cycle


class LockOverdue(Payload):
    kind: Literal["lock_overdue"] = "lock_overdue"
    lock: str
    holder: str
    held: float
    broken: bool  # the harness took the lock away


class Interrupted(Payload):
    kind: Literal["interrupted"] = "interrupted"  # a tool call in flight when the run died
    tool_use_id: str
    name: str
    turn: int


class Error(Payload):
    kind: Literal["error"] = "error"
    error: str  # the exception's class name
    message: str
    where: str = ""


class Setup(Payload):
    kind: Literal["setup"] = "setup"
    command: str
    output: str
    exit_code: int | None


class CommandDenied(Payload):
    kind: Literal["command_denied"] = "command_denied"  # the command policy refused it
    turn: int
    command: str
    rule: str  # its scenario key: commands.deny[0], agents[1].commands.allow, ...
    pattern: str = ""  # the deny pattern that matched; "" when no allow pattern did


class SandboxReport(Payload):
    kind: Literal["sandbox"] = "sandbox"  # what confines this agent, after agent_start
    isolation: str  # none | users
    user: str  # the Unix user its shell runs as
    uid: int
    network: bool  # false: its own network namespace, loopback only
    limits: dict[str, Any]  # in force: name -> value in the scenario's units, None = none
    unavailable: list[str]  # limits asked for that this machine cannot enforce, and why


class ResourceLimit(Payload):
    kind: Literal["resource_limit"] = "resource_limit"  # a limit bit
    limit: str  # memory | pids | cpu_seconds | file_size_mb
    count: int  # how many times since the last report: OOM kills, refused forks, signals
    turn: int  # 0: noticed when the agent ended
    detail: str = ""


class SandboxEnd(Payload):
    kind: Literal["sandbox_end"] = "sandbox_end"  # after the shell closed, before agent_end
    killed: int  # processes of the agent still alive (setsid, nohup), killed now
    peak_memory_mb: float | None = None  # the agent's whole tree, where a cgroup measured it


# ---------------------------------------------------------------------------------------------
# Writing


class EventLog:
    """Append-only writer of `events.jsonl`.

    `clock` gives seconds on the harness clock (trio.current_time in a run, so a MockClock
    makes `t` exact in tests); `t` is measured from the clock's value when the log opens.
    `emit` writes the line before it returns and never buffers, so a crash loses nothing that
    `emit` returned from. Listeners (the live view, the tally) get `(agent, payload)` after.
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float],
        *,
        start_seq: int = 0,
        start_t: float = 0.0,
    ) -> None:
        """`start_seq` and `start_t` continue an existing log (a resumed run)."""
        self.path = path
        self._clock = clock
        self._t0 = clock() - start_t
        self._seq = start_seq
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._listeners: list[Callable[[str | None, Payload], None]] = []
        # `ts` is formatted once a second and patched with microseconds:
        # `datetime.now().isoformat()` per event was a tenth of the cost of emitting one.
        self._second = -1
        self._second_iso = b""
        self._agent_json: dict[str | None, bytes] = {None: b"null"}

    def subscribe(self, listener: Callable[[str | None, Payload], None]) -> None:
        self._listeners.append(listener)

    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    def emit(self, payload: Payload, agent: str | None = None) -> int:
        """Write one event; return its `seq`. Raises ValueError once the log is closed."""
        if self._fd is None:
            raise ValueError(f"{self.path}: the event log is closed")
        seq = self._seq
        agent_json = self._agent_json.get(agent)
        if agent_json is None:
            agent_json = self._agent_json[agent] = json.dumps(agent, ensure_ascii=False).encode()
        t = self._clock() - self._t0
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        # The envelope is formatted here, as bytes, and the payload serialised by pydantic (in
        # Rust), then spliced: this is the hottest path of a run. Building one dict for
        # json.dumps cost twice as much, and an f-string then encode() a third more.
        head = b'{"seq":%d,"t":%.6f,"ts":"%b.%06d+00:00","agent":%b,' % (
            seq,
            t,
            self._second_iso,
            int((now - second) * 1e6),
            agent_json,
        )
        body = payload.__pydantic_serializer__.to_json(payload)
        os.write(self._fd, head + body[1:] + b"\n")
        self._seq += 1
        for listener in self._listeners:
            listener(agent, payload)
        return seq

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class LogContents:
    """What `read_events` found: the events, and whether a torn last line was dropped."""

    events: list[dict[str, Any]] = field(default_factory=list)
    torn_line: str | None = None  # the partial last line, if the writer died mid-write


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as f:
        yield from enumerate(f, start=1)


def read_events(path: Path) -> LogContents:
    """Read an event log. A last line that is not a complete event is dropped and reported in
    `torn_line`; a bad line anywhere else raises LogError (a ValueError) naming the file and
    line."""
    out = LogContents()
    lines = list(iter_lines(path))
    for number, line in lines:
        try:
            out.events.append(parse_line(line))
        except ValueError as exc:
            if number == len(lines):
                out.torn_line = line
            else:
                raise LogError(
                    f"{path}:{number}: not an event ({exc}); the log is corrupt before its "
                    "last line, which a crash cannot cause"
                ) from exc
    return out


def parse_line(line: str) -> dict[str, Any]:
    """One line of a log as an event: a JSON object with a string `kind` (ValueError if not)."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("kind"), str):
        raise ValueError("an event is a JSON object with a string `kind`")
    return event


def parse_payload(event: dict[str, Any]) -> Payload:
    """Validate one event's payload against its kind's schema (raises for an unknown kind)."""
    kind = event.get("kind")
    cls = Payload.registry.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r}; known: {sorted(Payload.registry)}")
    fields = {k: v for k, v in event.items() if k not in ("seq", "t", "ts", "agent")}
    return cls.model_validate(fields)
