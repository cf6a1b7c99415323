"""The nursery of agents: turn order, run-wide limits and termination.

Turn order is a gate each agent passes through for every turn:
- `concurrent`: no gate; each agent moves as fast as its model and tools.
- `round_robin`: one turn at a time, every active agent once per round, in an order drawn
  for each round from the scenario's seed (logged as a `round` event).

The run stops when every agent has ended, when `wall_time` passes, when `done_when` holds
(checked in shared/ after turns; checks never overlap, so a burst of turns costs one check),
or when `stop()` is called (Ctrl-C). Agents cancelled by the stop end with its reason.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import trio

from sim.agent import Agent
from sim.errors import AuthError
from sim.events import EventLog, Limit, Round


class RoundRobin:
    """A gate that lets one agent take a turn at a time, in a seeded order per round."""

    def __init__(
        self,
        names: list[str],
        seed: int,
        events: EventLog,
        recorded: list[list[str]] | None = None,
    ) -> None:
        self._active = list(names)
        self._recorded = list(recorded or [])  # orders to follow, round by round (replay)
        self._rng = random.Random(f"{seed}:round_robin")
        self._events = events
        self._order: list[str] = []
        self._pos = 0
        self._round = 0
        self._changed = trio.Event()

    def _current(self) -> str | None:
        while self._pos < len(self._order) and self._order[self._pos] not in self._active:
            self._pos += 1
        if self._pos >= len(self._order):
            if not self._active:
                return None
            self._round += 1
            self._order = list(self._active)
            self._rng.shuffle(self._order)  # drawn even when replaying, to keep the rng in step
            if self._round <= len(self._recorded):
                recorded = self._recorded[self._round - 1]
                self._order = [a for a in recorded if a in self._active] + [
                    a for a in self._order if a not in recorded
                ]
            self._pos = 0
            self._events.emit(Round(number=self._round, order=self._order))
        return self._order[self._pos]

    def _advance(self) -> None:
        self._pos += 1
        self._changed.set()
        self._changed = trio.Event()

    @asynccontextmanager
    async def turn(self, agent: str) -> AsyncIterator[None]:
        while self._current() != agent:
            await self._changed.wait()
        try:
            yield
        finally:
            self._advance()

    @asynccontextmanager
    async def parked(self, agent: str) -> AsyncIterator[None]:
        """Inside a turn: give the turn away while the agent waits (for a lock, a message),
        so the others move on; afterwards, wait for this agent's next slot to go on."""
        self.leave(agent)
        self._advance()
        try:
            yield
        finally:
            self._active.append(agent)  # joins from the next round's draw on
            while self._current() != agent:
                await self._changed.wait()

    def leave(self, agent: str) -> None:
        """An ended agent gives up its place (and its turn, if it was its turn)."""
        if agent in self._active:
            self._active.remove(agent)
            self._changed.set()
            self._changed = trio.Event()


@asynccontextmanager
async def _no_gate(agent: str) -> AsyncIterator[None]:
    yield


class Scheduler:
    """Runs agents to the end. `stop_reason` tells a cancelled agent why it was stopped."""

    def __init__(
        self,
        events: EventLog,
        *,
        mode: str,
        seed: int,
        agent_names: list[str],
        wall_time: float,
        done_when: str | None = None,
        shared_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        round_orders: list[list[str]] | None = None,
    ) -> None:
        self.events = events
        self.wall_time = wall_time
        self.done_when = done_when
        self.shared_dir = shared_dir
        self.env = dict(env or {})
        self.round_robin = (
            RoundRobin(agent_names, seed, events, round_orders) if mode == "round_robin" else None
        )
        self.status: str | None = None  # why the run stopped early, if it did
        self.fatal: AuthError | None = None  # an error that ends the whole run
        self._scope = trio.CancelScope()
        self._turn_done = trio.Event()

    def gate(self, agent: str) -> AbstractAsyncContextManager[None]:
        return self._gated(agent)

    @asynccontextmanager
    async def _gated(self, agent: str) -> AsyncIterator[None]:
        gate = self.round_robin.turn(agent) if self.round_robin else _no_gate(agent)
        async with gate:
            yield
        self._turn_done.set()

    def parked(self, agent: str) -> AbstractAsyncContextManager[None]:
        """Let others take turns while `agent` waits inside its turn (a no-op unless turns
        are taken one at a time)."""
        return self.round_robin.parked(agent) if self.round_robin else _no_gate(agent)

    def stop_reason(self) -> str:
        """Why agents are being cancelled: the stop's status, or `wall_time` past the deadline."""
        if self.status is None and trio.current_time() >= self._scope.deadline:
            self.status = "wall_time"
        return self.status or "interrupted"

    def stop(self, status: str) -> None:
        """End the run now; agents end with reason `status`. The first reason given wins."""
        if self.status is None:
            self.status = status
        self._scope.cancel()

    async def run(self, agents: list[Agent]) -> str | None:
        """Run every agent; return the early-stop status (`wall_time`, `done_when`,
        `interrupted`) or None when all agents ended on their own."""
        with self._scope:
            self._scope.deadline = trio.current_time() + self.wall_time
            async with trio.open_nursery() as nursery:
                if self.done_when:
                    nursery.start_soon(self._watch_done_when)
                async with trio.open_nursery() as agent_nursery:
                    for agent in agents:
                        agent_nursery.start_soon(self._run_agent, agent)
                nursery.cancel_scope.cancel()  # all agents ended: stop the watcher
        if self.status == "wall_time" or (self._scope.cancelled_caught and self.status is None):
            self.status = "wall_time"
            self.events.emit(Limit(limit="wall_time", value=self.wall_time))
        return self.status

    async def _run_agent(self, agent: Agent) -> None:
        try:
            await agent.run()
        except AuthError as exc:
            self.fatal = self.fatal or exc
            self.stop("error")
        finally:
            if self.round_robin:
                self.round_robin.leave(agent.name)
            self._turn_done.set()

    async def _watch_done_when(self) -> None:
        assert self.done_when is not None
        while True:
            await self._turn_done.wait()
            self._turn_done = trio.Event()
            result = await trio.run_process(
                ["bash", "-c", self.done_when],
                cwd=self.shared_dir,
                env=self.env,
                check=False,
                capture_stdout=True,
                capture_stderr=True,
            )
            if result.returncode == 0:
                self.events.emit(Limit(limit="done_when", value=self.done_when))
                self.stop("done_when")
                return
