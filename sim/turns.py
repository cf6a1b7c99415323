"""Turn-order gates: the schedulers `round_robin` and `rounds`.

An agent takes each turn inside `gate.turn(agent)`. Both gates run rounds in which every active
agent takes one turn, in an order drawn per round from the scenario's seed and logged as a
`round` event; they differ inside a round:

- `RoundRobin`: one turn at a time, in the drawn order.
- `Rounds`: the round's agents start their turns in the drawn order and then act at the same
  time; the next round starts when all of them are done (a barrier).

An agent that must wait in the middle of a turn (for a lock, for a message) does it inside
`gate.park(agent)`: its turn counts as taken, the others go on, and it has no place in new
rounds until the wait is over; then it waits for its next slot and finishes its turn there.
Without this, a waiter would hold the turn that the agent it waits for needs.

`max_rounds`: when one more round would begin, `on_max_rounds()` is called instead (the
scheduler ends the run) and the gate lets nobody in again.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ClassVar

import trio

from sim.events import EventLog, Round


class _Gate:
    """What both gates share: the active agents, the seeded order, the round count."""

    label: ClassVar[str]

    def __init__(
        self,
        names: list[str],
        seed: int,
        events: EventLog,
        *,
        max_rounds: int | None = None,
        on_max_rounds: Callable[[], None] | None = None,
        recorded: list[list[str]] | None = None,
    ) -> None:
        self._names = list(names)
        self._recorded = list(recorded or [])  # orders to follow, round by round (a replay)
        self._active = set(names)
        self._rng = random.Random(f"{seed}:{self.label}")
        self._events = events
        self._max_rounds = max_rounds
        self._on_max_rounds = on_max_rounds
        self._over = False
        self._round = 0
        self._waiters: dict[str, trio.Event] = {}
        self._reset()

    def _reset(self) -> None:
        raise NotImplementedError

    def _notify(self) -> None:
        """Wake the one agent that may enter now, if it is waiting. One wake-up per turn: waking
        every waiter cost O(agents) per turn (measured: 32 agents under round_robin used about
        35% more harness CPU).

        When the round is over, a waiter is woken to draw the next one as it runs, not here:
        the agent whose turn just ended may be about to leave the turn order (that was its
        last turn), and the new round must not count on it. Drawn here, a round's members
        depended on whether the others were already waiting, and a replay could differ."""
        nxt = self._next(start=False)
        if nxt is None and self._waiters and self._round_over():
            nxt = next(iter(self._waiters))
        if nxt is not None and nxt in self._waiters:
            self._waiters.pop(nxt).set()

    def _new_order(self) -> list[str] | None:
        """Draw the next round's order, or None if there is nobody or the rounds ran out."""
        if self._over or not self._active:
            return None
        if self._max_rounds is not None and self._round >= self._max_rounds:
            self._over = True
            if self._on_max_rounds is not None:
                self._on_max_rounds()
            return None
        self._round += 1
        order = [name for name in self._names if name in self._active]
        self._rng.shuffle(order)  # drawn even when replaying, to keep the rng in step
        if self._round <= len(self._recorded):
            recorded = self._recorded[self._round - 1]
            order = [a for a in recorded if a in self._active] + [
                a for a in order if a not in recorded
            ]
        self._events.emit(Round(number=self._round, order=order))
        return order

    async def _acquire(self, agent: str) -> None:
        try:
            while not self._try_enter(agent):
                self._notify()  # it may have drawn a round that another agent begins
                woken = self._waiters[agent] = trio.Event()
                await woken.wait()
        finally:
            self._waiters.pop(agent, None)

    def _next(self, start: bool = True) -> str | None:
        """The agent that may enter now, or None. With `start`, begins the next round if the
        last one is over."""
        raise NotImplementedError

    def _round_over(self) -> bool:
        raise NotImplementedError

    def _try_enter(self, agent: str) -> bool:
        raise NotImplementedError

    def _release(self, agent: str) -> None:
        raise NotImplementedError

    @asynccontextmanager
    async def turn(self, agent: str) -> AsyncIterator[None]:
        await self._acquire(agent)
        try:
            yield
        finally:
            self._release(agent)

    @asynccontextmanager
    async def park(self, agent: str) -> AsyncIterator[None]:
        """Step out of the turn order for the block, then wait for a slot to go on in. A cancel
        while waiting for that slot propagates (the agent is ending anyway)."""
        self._active.discard(agent)  # first: the release may start a round, without it
        self._release(agent)
        self._notify()
        try:
            yield
        finally:
            self._active.add(agent)
            self._notify()
            await self._acquire(agent)

    def close(self) -> None:
        """The run is stopping: begin no new round (its `round` event would be a lie)."""
        self._over = True

    def leave(self, agent: str) -> None:
        """An ended agent gives up its place (and its turn, if it was its turn)."""
        self._active.discard(agent)
        self._release(agent)
        self._notify()


class RoundRobin(_Gate):
    """One turn at a time, every active agent once per round, in a seeded order per round."""

    label = "round_robin"

    def _reset(self) -> None:
        self._order: list[str] = []
        self._pos = 0
        self._holder: str | None = None

    def _current(self, start: bool) -> str | None:
        while self._pos < len(self._order) and self._order[self._pos] not in self._active:
            self._pos += 1
        if self._pos >= len(self._order):
            order = self._new_order() if start else None
            if order is None:
                return None
            self._order, self._pos = order, 0
        return self._order[self._pos]

    def _next(self, start: bool = True) -> str | None:
        return self._current(start) if self._holder is None else None

    def _round_over(self) -> bool:
        return self._holder is None and self._current(start=False) is None

    def _try_enter(self, agent: str) -> bool:
        if self._next() != agent:
            return False
        self._holder = agent
        return True

    def _release(self, agent: str) -> None:
        if self._holder == agent:
            self._holder = None
            self._pos += 1
            self._notify()


class Rounds(_Gate):
    """Every active agent acts once per round, concurrently, with a barrier between rounds.
    The round's agents start their turns in the drawn order (the `round` event's order)."""

    label = "rounds"

    def _reset(self) -> None:
        self._order: list[str] = []
        self._started = 0  # how many of _order have begun their turn
        self._pending: set[str] = set()  # members that have not ended their turn this round
        self._in_turn: set[str] = set()

    def _next(self, start: bool = True) -> str | None:
        if not self._pending:  # the barrier: the last round is over
            order = self._new_order() if start else None
            if order is None:
                return None
            self._order, self._started, self._pending = order, 0, set(order)
        # Members that parked or left before their start are skipped.
        while self._started < len(self._order) and self._order[self._started] not in (
            self._pending
        ):
            self._started += 1
        return self._order[self._started] if self._started < len(self._order) else None

    def _round_over(self) -> bool:
        return not self._pending

    def _try_enter(self, agent: str) -> bool:
        if self._next() != agent:
            return False
        self._started += 1
        self._in_turn.add(agent)
        self._notify()  # the next in order may start now
        return True

    def _release(self, agent: str) -> None:
        self._pending.discard(agent)
        self._in_turn.discard(agent)
        self._notify()
