"""The wait-for graph of the harness's locks, and the cycle (deadlock) a new wait would close.

An agent waits for at most one lock at a time and a lock has at most one holder, so the graph
is a set of chains: agent -> the lock it waits for -> that lock's holder -> the lock the holder
waits for -> ... A cycle can only form when an agent starts to wait: granting a lock to a
waiter adds no edge out of it (it waits for nothing any more), and only redirects the edges
of the other waiters to it. So following the one chain from a new waiter finds every cycle the
moment it forms, at the cost of the chain's length. A holder outside the harness (`flock(1)` in
a shell) ends a chain: it is not an agent, and the harness could not break its hold anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Cycle:
    """A deadlock: `agents[i]` waits for `locks[i]`, held by `agents[i + 1]` (wrapping around).
    `agents[0]` is the waiter whose wait closed the cycle."""

    agents: list[str]
    locks: list[str]

    def explain(self) -> str:
        """The error for `agents[0]`, in words a model can act on."""
        me, n = self.agents[0], len(self.agents)

        def holds(i: int) -> str:
            return "you hold" if i % n == 0 else f"{self.agents[i % n]} holds"

        hops = [f"{self.locks[0]}, which {holds(1)}"] + [
            f"{self.agents[i]} is waiting for {self.locks[i]}, which {holds(i + 1)}"
            for i in range(1, n)
        ]
        mine = self.locks[-1]
        order = " before ".join(sorted(set(self.locks)))
        return (
            f"deadlock: you ({me}) asked for {'; '.join(hops)}. None of you can go on, so this "
            f"lock call was refused and you do not hold {self.locks[0]}. To get out: unlock "
            f"{mine} (and any other lock you hold), let the others finish, then lock again, "
            f"taking locks in the same order as everyone else (for example alphabetical: "
            f"{order})."
        )


class WaitForGraph:
    """Edges agent -> lock it waits for; `holder(lock)` gives the agent holding a lock."""

    def __init__(self, holder: Callable[[str], str | None]) -> None:
        self._holder = holder
        self._waits: dict[str, str] = {}

    def waiting_for(self, agent: str) -> str | None:
        return self._waits.get(agent)

    def start_waiting(self, agent: str, lock: str) -> Cycle | None:
        """Record that `agent` waits for `lock`, unless that closes a cycle: then record
        nothing and return the cycle."""
        agents, locks = [agent], [lock]
        holder = self._holder(lock)
        # Each hop visits a distinct waiting agent, so the chain is at most len(_waits) long.
        for _ in range(len(self._waits) + 1):
            if holder is None:
                break
            if holder == agent:
                return Cycle(agents, locks)
            wanted = self._waits.get(holder)
            if wanted is None:
                break
            agents.append(holder)
            locks.append(wanted)
            holder = self._holder(wanted)
        self._waits[agent] = lock
        return None

    def stop_waiting(self, agent: str) -> None:
        self._waits.pop(agent, None)
