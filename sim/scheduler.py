"""The nursery of agents: turn order, run-wide limits and termination.

Turn order is a gate each agent passes through for every turn (sim.turns):
- `concurrent`: no gate; each agent moves as fast as its model and tools.
- `round_robin`: one turn at a time, every active agent once per round, in an order drawn
  for each round from the scenario's seed (logged as a `round` event).
- `rounds`: every active agent acts once per round, all at the same time, with a barrier
  between rounds. Both round modes stop the run after `max_rounds` rounds, if set.
An agent waiting for a lock or a message steps out of the turn order (`park`).

The run stops when every agent has ended, when `wall_time` passes, when `done_when` holds
(checked in shared/ after turns), or when `stop()` is called (Ctrl-C). Agents cancelled by the
stop end with its reason. Under `concurrent`, a watcher checks `done_when` beside the agents
(checks never overlap, so a burst of turns costs one check). Under the round modes the check
runs inside the gate, before the next turn (round_robin) or round (rounds) may start, so a run
ends after the same turn, or in the same round, however slow the machine is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path

import trio

from sim.agent import Agent
from sim.errors import AuthError
from sim.events import Error, EventLog, Limit
from sim.turns import RoundRobin, Rounds


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
        done_when_timeout: float = 30.0,
        shared_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        max_rounds: int | None = None,
        round_orders: list[list[str]] | None = None,
    ) -> None:
        self.events = events
        self.wall_time = wall_time
        self.done_when = done_when
        self.done_when_timeout = done_when_timeout
        self.shared_dir = shared_dir
        self.env = dict(env or {})
        gates = {"round_robin": RoundRobin, "rounds": Rounds}
        self.turns = (
            gates[mode](
                agent_names,
                seed,
                events,
                max_rounds=max_rounds,
                on_max_rounds=self._rounds_out,
                recorded=round_orders,
            )
            if mode in gates
            else None
        )
        self.max_rounds = max_rounds
        self.status: str | None = None  # why the run stopped early, if it did
        self.fatal: AuthError | None = None  # an error that ends the whole run
        self._scope = trio.CancelScope()
        self._turn_done = trio.Event()  # wakes the concurrent-mode watcher
        self._turns_ended = 0  # for the round modes: turns ended, and covered by a check
        self._turns_checked = 0
        self._check_lock = trio.Lock()
        self._ungated = _Ungated(self)

    def gate(self, agent: str) -> AbstractAsyncContextManager[None]:
        return self._gated(agent) if self.turns is not None else self._ungated

    @asynccontextmanager
    async def _gated(self, agent: str) -> AsyncIterator[None]:
        assert self.turns is not None
        async with self.turns.turn(agent):
            yield
            if self.done_when:
                await self._check_in_turn()

    def leave(self, agent: str) -> None:
        """The agent takes no more turns: the turn order goes on without it."""
        if self.turns:
            self.turns.leave(agent)

    def park(self, agent: str) -> AbstractAsyncContextManager[None]:
        """Step out of the turn order while waiting (for a lock, for a message): see sim.turns."""
        return self.turns.park(agent) if self.turns else nullcontext()

    def _rounds_out(self) -> None:
        self.events.emit(Limit(limit="max_rounds", value=self.max_rounds))
        self.stop("max_rounds")

    def stop_reason(self) -> str:
        """Why agents are being cancelled: the stop's status, or `wall_time` past the deadline."""
        if self.status is None and trio.current_time() >= self._scope.deadline:
            self.status = "wall_time"
        return self.status or "interrupted"

    def stop(self, status: str) -> None:
        """End the run now; agents end with reason `status`. The first reason given wins."""
        if self.status is None:
            self.status = status
        if self.turns is not None:
            self.turns.close()
        self._scope.cancel()

    async def run(self, agents: list[Agent]) -> str | None:
        """Run every agent; return the early-stop status (`wall_time`, `done_when`,
        `interrupted`) or None when all agents ended on their own."""
        with self._scope:
            self._scope.deadline = trio.current_time() + self.wall_time
            async with trio.open_nursery() as nursery:
                if self.done_when and self.turns is None:
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
            self._turn_done.set()

    async def _watch_done_when(self) -> None:
        while True:
            await self._turn_done.wait()
            self._turn_done = trio.Event()
            if await self._done_when_holds():
                return

    async def _check_in_turn(self) -> None:
        """Check `done_when` before the gate lets the next turn in. Under `rounds` several
        turns end at once: a check that began after this turn ended already covers it."""
        self._turns_ended += 1
        ended = self._turns_ended
        async with self._check_lock:
            if self._turns_checked < ended:
                self._turns_checked = self._turns_ended
                await self._done_when_holds()

    async def _done_when_holds(self) -> bool:
        """Run the condition in shared/; if it holds, log it and stop the run. A check that
        outlasts `done_when_timeout` (an agent made the file it reads a FIFO, say) is killed
        and counts as false, logged as an `error`: under the round modes every agent waits
        for it."""
        assert self.done_when is not None
        result = None
        with trio.move_on_after(self.done_when_timeout):
            result = await trio.run_process(
                ["bash", "-c", self.done_when],
                cwd=self.shared_dir,
                env=self.env,
                check=False,
                capture_stdout=True,
                capture_stderr=True,
            )
        if result is None:
            message = (
                f"done_when {self.done_when!r} did not finish within {self.done_when_timeout:g} "
                "s (limits.command_timeout) and was killed; taken as not done"
            )
            self.events.emit(Error(error="DoneWhenTimeout", message=message, where="done_when"))
            return False
        if result.returncode != 0:
            return False
        self.events.emit(Limit(limit="done_when", value=self.done_when))
        self.stop("done_when")
        return True


class _Ungated(AbstractAsyncContextManager[None]):
    """The `concurrent` mode's gate: a turn goes in at once, and its end wakes the `done_when`
    watcher. A class and one instance, not an @asynccontextmanager: it is passed every turn,
    and an async generator per turn (which trio registers, to finalize it) was 4% of the
    harness's CPU with 128 agents."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        self._scheduler._turn_done.set()
