"""Synthetic run directories for the analysis tests and the load benchmark.

No shipped scenario emits Claude-like turns (text, tokens, cost), messages, file writes,
clobbers, deadlocks, overdue locks or interrupted calls yet, so `write_run` simulates agents
that do all of that, on a virtual clock, and writes the events through sim's own `EventLog`:
the log has the real format, every kind the log declares, and a known ground truth.

The simulation is a small discrete-event loop: each agent is a generator that yields either
seconds to sleep or `("lock", name)`; the loop keeps first-come-first-served lock queues,
detects wait-for cycles (failing the newest waiter's call, like a deadlock breaker would) and
flags holds past `OVERDUE` seconds. Everything is drawn from `random.Random(seed)`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
from collections import deque
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim import events as ev
from sim.events import EventLog, Payload

OVERDUE = 20.0  # seconds a hold may last before lock_overdue
FILES = ("counter.txt", "notes.md", "plan.md", "data/results.csv")
PRICES = {"claude-sonnet-4-5": (3.0, 15.0, 3.75, 0.30)}  # USD/Mtok: in, out, cache w, cache r
_SAYINGS = (
    "Let me look at the shared files first.",
    "I'll take the lock before I change the counter.",
    "The tests pass; moving on to the next step.",
    "That failed. I will check the error and try again.",
    "Telling the others what I changed.",
)
_COMMANDS = ("ls -la", "cat counter.txt", "python3 -m pytest -q", "grep -rn TODO .", "make")

Op = float | tuple[str, str]  # seconds to sleep, or ("lock", name)
AgentGen = Generator[Op, Any, None]


@dataclass
class _Lock:
    holder: str | None = None
    acquired: float = 0.0
    hold_id: int = 0
    queue: deque[tuple[str, float]] = field(default_factory=deque)


class _World:
    """The virtual clock, the event queue and the locks of one synthetic run."""

    def __init__(self, log_path: Path, seed: int) -> None:
        self.now = 0.0
        self.log = EventLog(log_path, lambda: self.now)
        self.rng = random.Random(seed)
        self.locks: dict[str, _Lock] = {}
        self.waiting: dict[str, str] = {}  # agent -> lock it waits for
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self.in_flight: dict[str, ev.ToolCall] = {}
        self._resume: dict[str, AgentGen] = {}  # waiters' generators, resumed on grant
        self.last_writer: dict[str, str] = {}  # shared path -> the agent that wrote it last

    def emit(self, payload: Payload, agent: str | None = None) -> None:
        self.log.emit(payload, agent)

    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._order), action))

    def start(self, agent: str, gen: AgentGen) -> None:
        self.at(self.rng.uniform(0.0, 0.2), lambda: self._step(agent, gen, None))

    def _step(self, agent: str, gen: AgentGen, value: Any) -> None:
        try:
            op = gen.send(value)
        except StopIteration:
            return
        if isinstance(op, tuple):
            self._request(agent, op[1], gen)
        else:
            self.at(self.now + op, lambda: self._step(agent, gen, None))

    def _request(self, agent: str, name: str, gen: AgentGen) -> None:
        lock = self.locks.setdefault(name, _Lock())
        if lock.holder is None and not lock.queue:
            self._grant(agent, name, self.now, contended=False)
            self.at(self.now, lambda: self._step(agent, gen, True))
            return
        self.emit(ev.LockWait(lock=name, holder=lock.holder or lock.queue[0][0]), agent)
        cycle = self._cycle(agent, name)
        if cycle:
            agents, locks = cycle
            self.emit(ev.Deadlock(cycle=agents, locks=locks, victim=agent))
            self.at(self.now + 0.001, lambda: self._step(agent, gen, False))
            return
        self.waiting[agent] = name
        lock.queue.append((agent, self.now))
        self._resume[agent] = gen

    def _cycle(self, agent: str, name: str) -> tuple[list[str], list[str]] | None:
        agents, locks = [agent], [name]
        holder = self.locks[name].holder
        while holder is not None and holder not in agents:
            wanted = self.waiting.get(holder)
            if wanted is None:
                return None
            agents.append(holder)
            locks.append(wanted)
            holder = self.locks[wanted].holder
        return (agents, locks) if holder == agent else None

    def _grant(self, agent: str, name: str, requested: float, *, contended: bool) -> None:
        lock = self.locks[name]
        lock.holder, lock.acquired = agent, self.now
        lock.hold_id += 1
        hold_id = lock.hold_id
        wait = round(self.now - requested, 6)
        self.emit(ev.LockAcquire(lock=name, wait=wait, contended=contended), agent)

        def overdue() -> None:
            if lock.holder == agent and lock.hold_id == hold_id:
                held = round(self.now - lock.acquired, 6)
                self.emit(ev.LockOverdue(lock=name, holder=agent, held=held, broken=False))

        self.at(self.now + OVERDUE, overdue)

    def release(self, agent: str, name: str, reason: str = "unlock") -> None:
        lock = self.locks[name]
        assert lock.holder == agent, (agent, name, lock.holder)
        hold = round(self.now - lock.acquired, 6)
        self.emit(ev.LockRelease(lock=name, hold=hold, reason=reason), agent)
        lock.holder = None
        if lock.queue:
            waiter, requested = lock.queue.popleft()
            del self.waiting[waiter]
            self._grant(waiter, name, requested, contended=True)
            gen = self._resume.pop(waiter)
            self.at(self.now, lambda: self._step(waiter, gen, True))

    def run(self, until: float | None) -> None:
        while self._queue:
            when, _, action = heapq.heappop(self._queue)
            if until is not None and when > until:
                return
            self.now = when
            action()


def _usage(rng: random.Random, turn: int) -> dict[str, int]:
    return {
        "input_tokens": rng.randint(5, 400),
        "output_tokens": rng.randint(20, 600),
        "cache_read_input_tokens": 800 * turn,
        "cache_creation_input_tokens": rng.randint(100, 900),
    }


def _cost(model: str, usage: dict[str, int]) -> float | None:
    price = PRICES.get(model)
    if price is None:
        return None
    keys = ("input_tokens", "output_tokens", "cache_creation_input_tokens")
    total = sum(usage[k] * p for k, p in zip(keys, price, strict=False))
    return round((total + usage["cache_read_input_tokens"] * price[3]) / 1e6, 8)


def _plan(rng: random.Random, held: list[str], names: list[str], me: str) -> list[dict[str, Any]]:
    """The tool calls of one turn, as (name, input) dicts."""
    r = rng.random()
    if held:
        if r < 0.3 and len(held) == 1:  # a second lock: the way deadlocks happen
            other = rng.choice([f for f in FILES if f not in held])
            return [{"name": "lock", "input": {"path": other}}]
        if r < 0.6:
            path = rng.choice(held)
            return [{"name": "bash", "input": {"command": f'echo {turn_word(rng)} >> "{path}"'}}]
        return [{"name": "unlock", "input": {"path": rng.choice(held)}}]
    if r < 0.45:
        return [{"name": "bash", "input": {"command": rng.choice(_COMMANDS)}}]
    if r < 0.65:
        return [{"name": "lock", "input": {"path": rng.choice(FILES)}}]
    if r < 0.8:
        others = [n for n in names if n != me] or [me]
        to = rng.sample(others, k=min(len(others), rng.choice((1, 1, 1, 2))))
        return [{"name": "message", "input": {"to": to, "text": rng.choice(_SAYINGS)}}]
    if r < 0.92:
        path = rng.choice(FILES)
        return [{"name": "bash", "input": {"command": f'echo {turn_word(rng)} > "{path}"'}}]
    return [
        {"name": "str_replace_based_edit_tool", "input": {"command": "view", "path": "notes.md"}}
    ]


def turn_word(rng: random.Random) -> str:
    return rng.choice(("alpha", "beta", "gamma", "delta"))


def _agent(w: _World, me: str, model: str, turns: int, names: list[str]) -> AgentGen:
    rng = random.Random(f"{w.rng.random()}:{me}")
    held: list[str] = []
    w.emit(ev.AgentStart(model=model, tools=["bash", "lock", "unlock", "message"], cwd=me), me)
    for turn in range(1, turns + 1):
        w.emit(ev.ModelRequest(turn=turn, model=model, messages=2 * turn - 1), me)
        latency = rng.uniform(0.05, 0.4) if model == "scripted" else rng.uniform(0.5, 4.0)
        yield latency
        if turn == turns:
            calls = [{"name": "unlock", "input": {"path": p}} for p in held]
            calls.append({"name": "finish", "input": {"summary": "done"}})
        else:
            calls = _plan(rng, held, names, me)
        blocks: list[dict[str, Any]] = []
        if model != "scripted":
            blocks.append({"type": "text", "text": rng.choice(_SAYINGS)})
        for i, call in enumerate(calls):
            blocks.append({"type": "tool_use", "id": f"toolu_{me}_{turn}_{i}", **call})
        usage = {} if model == "scripted" else _usage(rng, turn)
        w.emit(
            ev.ModelResponse(
                turn=turn,
                model=model,
                content=blocks,
                stop_reason="tool_use",
                usage=usage,
                latency=round(latency, 6),
                retries=int(rng.random() < 0.05),
                cost_usd=_cost(model, usage) if usage else None,
            ),
            me,
        )
        for block in blocks[1:] if model != "scripted" else blocks:
            yield from _tool(w, rng, me, turn, block, held)
    w.emit(ev.AgentEnd(reason="finished", turns=turns), me)


def _tool(
    w: _World,
    rng: random.Random,
    me: str,
    turn: int,
    block: dict[str, Any],
    held: list[str],
) -> Iterator[Op]:
    name, args, tid = block["name"], block["input"], block["id"]
    call = ev.ToolCall(turn=turn, tool_use_id=tid, name=name, input=args)
    w.emit(call, me)
    w.in_flight[me] = call
    start, content, is_error = w.now, "ok", False
    if name == "bash":
        yield from _command(w, rng, me, turn, args["command"], held)
    elif name == "lock":
        got = yield ("lock", args["path"])
        if got:
            held.append(args["path"])
            content = f"locked {args['path']}"
        else:
            content, is_error = "deadlock: your lock call was failed to break a cycle", True
    elif name == "unlock":
        w.release(me, args["path"])
        held.remove(args["path"])
    elif name == "message":
        text = args["text"]
        w.emit(ev.Message(recipients=args["to"], size=len(text.encode()), text=text), me)
    else:
        yield rng.uniform(0.001, 0.01)
    del w.in_flight[me]
    w.emit(
        ev.ToolResult(
            turn=turn,
            tool_use_id=tid,
            name=name,
            content=content,
            is_error=is_error,
            duration=round(w.now - start, 6),
        ),
        me,
    )


def _command(
    w: _World,
    rng: random.Random,
    me: str,
    turn: int,
    command: str,
    held: list[str],
) -> Iterator[Op]:
    duration = rng.expovariate(2.0)
    r = rng.random()
    timed_out = r < 0.02
    exit_code = None if timed_out else (0 if r < 0.8 else rng.choice((1, 2, 127)))
    yield duration
    output = f"{command}: {'ok' if exit_code == 0 else 'failed'}\n" * rng.randint(1, 3)
    w.emit(
        ev.Command(
            turn=turn,
            command=command,
            output=output,
            exit_code=exit_code,
            duration=round(duration, 6),
            bytes=len(output),
            timed_out=timed_out,
            truncated=rng.random() < 0.03,
        ),
        me,
    )
    if ">" in command:
        path = command.rsplit('"', 2)[-2]
        locked = path in held
        w.emit(ev.FileWrite(path=path, bytes=rng.randint(1, 4000), locked=locked, via="bash"), me)
        previous = w.last_writer.get(path)
        if not locked and previous not in (None, me) and rng.random() < 0.5:
            w.emit(ev.Clobber(path=path, overwrote=previous, locked=False, via="bash"), me)
        w.last_writer[path] = me


def write_run(
    runs_dir: Path,
    *,
    agents: int = 4,
    turns: int = 20,
    seed: int = 0,
    name: str = "synthetic",
    crash_at: float | None = None,
    models: tuple[str, ...] = ("claude-sonnet-4-5", "claude-sonnet-4-5", "claude-x-unpriced"),
) -> Path:
    """Write `runs_dir/<name>/` with events.jsonl and meta.json; return the run directory.

    Agents are `agent-01`..; agent i uses `models[i % len(models)]` (a model missing from
    PRICES logs `cost_usd: null`, "scripted" logs no usage). With `crash_at`, the run dies at
    that virtual second: the tool calls in flight get `interrupted` events, no agent_end or
    run_end follows, and the log ends in a torn line, as a killed writer leaves it."""
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    names = [f"agent-{i:02d}" for i in range(1, agents + 1)]
    w = _World(run_dir / "events.jsonl", seed)
    w.emit(ev.RunStart(run_id=name, scenario=name, seed=seed, agents=names, scheduler="concurrent"))
    for i, agent in enumerate(names):
        w.start(agent, _agent(w, agent, models[i % len(models)], turns, names))
    w.run(until=crash_at)
    status = "completed"
    if crash_at is not None and w._queue:
        status = "running"
        for agent, call in sorted(w.in_flight.items()):
            interrupted = ev.Interrupted(
                tool_use_id=call.tool_use_id, name=call.name, turn=call.turn
            )
            w.emit(interrupted, agent)
        w.log.close()
        with (run_dir / "events.jsonl").open("a") as f:
            f.write('{"seq":999999,"t":1.0,"ts":"2026-01-01T00:0')
    else:
        w.emit(ev.RunEnd(status="completed", reason="all_ended", duration=round(w.now, 6)))
        w.log.close()
    meta = {"run_id": name, "scenario": name, "seed": seed, "agents": names, "status": status}
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return run_dir
