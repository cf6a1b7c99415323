"""Named locks over paths in shared/, the same locks `flock(1)` takes in an agent's shell.

A lock named `counter.txt` is `flock(2)` on `shared/.locks/counter.txt.lock` (a name with
slashes has them written as `%2F`). filelock takes that flock for the harness; an agent's shell
can take the very same one with `flock "$SIM_LOCKS/counter.txt.lock" -c '...'`, so a lock taken
in a shell and one taken through the `lock` tool exclude each other.

Inside the harness, waiters queue per lock in the order they asked (first come, first served),
and only the head of the queue polls the flock. The manager keeps the wait-for graph
(sim.waitfor) and refuses, at once, the lock call that would close a cycle; it reports locks
held past the scenario's lease (`lock_overdue`) and, if told to, breaks them.

Polling is the one hand-written part: filelock offers a blocking acquire (a thread we could not
cancel) or a non-blocking try, and trio has no way to wait on a flock, so the head of the queue
retries the non-blocking try with a short back-off while someone outside the harness holds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import trio
from filelock import FileLock, Timeout

from sim.errors import LockError
from sim.events import Deadlock, EventLog, LockAcquire, LockOverdue, LockRelease, LockWait
from sim.waitfor import WaitForGraph
from sim.workspace import Workspace

EXTERNAL = "external"  # the holder named when a flock outside the harness keeps a lock
_POLL_MIN, _POLL_MAX = 0.001, 0.02

# Lets an agent step out of the turn order while it waits (see Scheduler.park): under
# round_robin and rounds a waiter must not keep the others, and so the holder, from their turns.
Park = Callable[[], AbstractAsyncContextManager[None]]


def _no_park() -> AbstractAsyncContextManager[None]:
    return nullcontext()


def lock_file_name(name: str) -> str:
    return quote(name, safe="") + ".lock"


@dataclass
class _Lock:
    name: str
    file: FileLock
    holder: str | None = None
    acquired_at: float = 0.0
    overdue: bool = False  # lock_overdue was reported for the current holding
    waiters: deque[str] = field(default_factory=deque)
    wakers: dict[str, trio.Event] = field(default_factory=dict)  # waiters asleep

    def notify(self) -> None:
        """Wake the head of the queue, the only waiter that can take the lock (waking every
        waiter would cost O(waiters) per release for nothing)."""
        if self.waiters:
            woken = self.wakers.pop(self.waiters[0], None)
            if woken is not None:
                woken.set()


class LockManager:
    """Acquire and release named locks for agents, logging `lock_wait`, `lock_acquire`,
    `lock_release`, `deadlock` and `lock_overdue`. All methods run in the trio thread.

    `lease`: seconds a lock may be held before `watch_leases` reports it; `break_overdue`: then
    take it away, and tell the holder through `on_broken(agent, text)`."""

    def __init__(
        self,
        workspace: Workspace,
        events: EventLog,
        clock: Callable[[], float] = trio.current_time,
        *,
        lease: float | None = None,
        break_overdue: bool = False,
        on_broken: Callable[[str, str], None] | None = None,
    ) -> None:
        self._workspace = workspace
        self._shared = workspace.shared.resolve()
        self._events = events
        self._clock = clock
        self._locks: dict[str, _Lock] = {}
        self.graph = WaitForGraph(self.holder)
        self._lease = lease
        self._break = break_overdue
        self._on_broken = on_broken
        self._broken: dict[tuple[str, str], str] = {}  # (agent, lock) -> why, for its unlock
        self._forever: set[str] = set()  # waiting with no timeout, and no lease to break it
        self.on_wait_forever: Callable[[], None] | None = None  # the mailbox checks stalemates
        self._lease_changed = trio.Event()

    def name_for(self, agent: str, path: str, cwd: Path | None = None) -> str:
        """The lock name for a path an agent gave: relative to shared/. Paths outside shared/
        are refused, since only shared files are contended."""
        if not path.strip():
            raise LockError("lock needs a path inside shared/, e.g. counter.txt")
        candidate = Path(path)
        if not candidate.is_absolute() and not path.startswith(("./", "../")):
            # A bare name (`counter.txt`) means shared/counter.txt, whatever the agent's cwd.
            resolved = (self._shared / candidate).resolve()
        else:
            resolved = ((cwd or self._workspace.agent_dir(agent)) / candidate).resolve()
        # shared/ resolved once: Path.resolve costs an lstat per path component, per call.
        rel = (
            str(resolved.relative_to(self._shared))
            if resolved.is_relative_to(self._shared)
            else None
        )
        if rel is None or rel == "." or rel.startswith(".locks"):
            raise LockError(
                f"{path!r} is not a file in shared/ ({self._workspace.shared}); locks name "
                "shared files, e.g. lock counter.txt"
            )
        return rel

    def _get(self, name: str) -> _Lock:
        lock = self._locks.get(name)
        if lock is None:
            path = self._workspace.locks_dir / lock_file_name(name)
            lock = self._locks[name] = _Lock(name, FileLock(path, thread_local=False))
        return lock

    def holder(self, name: str) -> str | None:
        lock = self._locks.get(name)
        return lock.holder if lock else None

    def stuck(self, agent: str) -> bool:
        """Is `agent` in a lock wait that only another agent's unlock can end (no timeout, no
        lease to break the lock, held by an agent rather than a flock outside the harness)?"""
        name = self.graph.waiting_for(agent)
        return agent in self._forever and name is not None and self.holder(name) is not None

    def held_by(self, agent: str) -> list[str]:
        return [name for name, lock in self._locks.items() if lock.holder == agent]

    async def acquire(
        self, agent: str, name: str, timeout: float | None = None, park: Park = _no_park
    ) -> float:
        """Wait for the lock, first come first served, and return the seconds waited.

        Raises LockError if the agent already holds it, if `timeout` passes (naming the
        holder), or at once if waiting would close a cycle of waiters (a deadlock, logged).
        While it waits the agent is inside `park()`, out of the turn order. On cancel while
        waiting it leaves the queue and holds nothing; a cancel that lands after the grant
        (while `park` waits for the agent's turn) leaves it holding the lock, which the
        agent's end releases."""
        lock = self._get(name)
        if lock.holder == agent:
            raise LockError(f"you already hold the lock on {name}; unlock it before locking again")
        self._broken.pop((agent, name), None)
        start = self._clock()
        lock.waiters.append(agent)
        try:
            if self._try_take(lock, agent):
                return self._granted(lock, agent, start, contended=False)
            cycle = self.graph.start_waiting(agent, name)
            if cycle is not None:
                self._events.emit(
                    Deadlock(cycle=cycle.agents, locks=cycle.locks, victim=agent), agent
                )
                raise LockError(cycle.explain())
            ahead = lock.waiters[0] if lock.waiters[0] != agent else EXTERNAL
            self._events.emit(LockWait(lock=name, holder=lock.holder or ahead), agent)
            if timeout is None and not self._break:
                self._forever.add(agent)
                if self.on_wait_forever is not None:
                    self.on_wait_forever()
            wait: float | None = None
            async with park():
                with trio.move_on_after(timeout if timeout is not None else float("inf")):
                    await self._wait_turn(lock, agent)
                    wait = self._granted(lock, agent, start, contended=True)
            if wait is not None:
                return wait
            holder = lock.holder or EXTERNAL
            raise LockError(
                f"gave up waiting for the lock on {name} after {timeout:g} s; it is held by "
                f"{holder}. Try again later, or work on something else first"
            )
        finally:
            self.graph.stop_waiting(agent)
            self._forever.discard(agent)
            if agent in lock.waiters:
                lock.waiters.remove(agent)
                lock.notify()

    def _try_take(self, lock: _Lock, agent: str) -> bool:
        if lock.waiters[0] != agent or lock.holder is not None:
            return False
        try:
            lock.file.acquire(timeout=0)
        except Timeout:
            return False  # a flock(1) outside the harness holds it
        return True

    async def _wait_turn(self, lock: _Lock, agent: str) -> None:
        poll = _POLL_MIN
        while not self._try_take(lock, agent):
            if lock.waiters[0] == agent and lock.holder is None:
                await trio.sleep(poll)  # held outside the harness: poll (see the module doc)
                poll = min(poll * 2, _POLL_MAX)
            else:
                woken = lock.wakers[agent] = trio.Event()
                try:
                    await woken.wait()
                finally:
                    lock.wakers.pop(agent, None)

    def _granted(self, lock: _Lock, agent: str, start: float, contended: bool) -> float:
        lock.holder = agent
        lock.acquired_at = self._clock()
        lock.overdue = False
        lock.waiters.remove(agent)
        self.graph.stop_waiting(agent)
        self._forever.discard(agent)
        wait = lock.acquired_at - start
        self._events.emit(
            LockAcquire(lock=lock.name, wait=round(wait, 6), contended=contended), agent
        )
        if self._lease is not None:
            self._lease_changed.set()
            self._lease_changed = trio.Event()
        return wait

    def release(self, agent: str, name: str, reason: str = "unlock") -> float:
        """Release a lock the agent holds; return how long it was held. LockError if not held
        (saying so when the harness broke it)."""
        lock = self._locks.get(name)
        if lock is None or lock.holder != agent:
            broken = self._broken.pop((agent, name), None)
            if broken:
                raise LockError(f"{broken} There is nothing to unlock.")
            holder = lock.holder if lock else None
            held = f"it is held by {holder}" if holder else "nobody holds it"
            raise LockError(f"you do not hold the lock on {name} ({held}); nothing to unlock")
        lock.file.release()
        hold = self._clock() - lock.acquired_at
        lock.holder = None
        lock.notify()
        self._events.emit(LockRelease(lock=name, hold=round(hold, 6), reason=reason), agent)
        return hold

    def release_all(self, agent: str, reason: str = "agent_end") -> list[str]:
        names = self.held_by(agent)
        for name in names:
            self.release(agent, name, reason)
        return names

    @asynccontextmanager
    async def holding(self, agent: str, name: str, park: Park = _no_park) -> AsyncIterator[None]:
        """Hold `name` for the block, unless the agent holds it already (then do nothing)."""
        if self.holder(name) == agent:
            yield
            return
        await self.acquire(agent, name, park=park)
        try:
            yield
        finally:
            if self.holder(name) == agent:  # the lease may have broken it meanwhile
                self.release(agent, name)

    async def watch_leases(self) -> None:
        """Report each lock held longer than the lease once (`lock_overdue`), and break it if
        configured. Runs until cancelled; returns at once without a lease."""
        if self._lease is None:
            return
        while True:
            due = [
                (lock.acquired_at + self._lease, lock.name)
                for lock in self._locks.values()
                if lock.holder is not None and not lock.overdue
            ]
            changed = self._lease_changed
            if not due:
                await changed.wait()
                continue
            deadline, name = min(due)
            if trio.current_time() < deadline:
                with trio.move_on_at(deadline):
                    await changed.wait()
                continue
            self._overdue(self._locks[name])

    def _overdue(self, lock: _Lock) -> None:
        holder, lease = lock.holder, self._lease
        assert holder is not None and lease is not None
        held = round(self._clock() - lock.acquired_at, 6)
        lock.overdue = True
        self._events.emit(
            LockOverdue(lock=lock.name, holder=holder, held=held, broken=self._break), holder
        )
        if not self._break:
            return
        lock.file.release()
        lock.holder = None
        lock.notify()
        self._events.emit(LockRelease(lock=lock.name, hold=held, reason="broken"), holder)
        note = (
            f"your lock on {lock.name} was broken: you held it {held:.1f} s, longer than its "
            f"lease of {lease:g} s, so other agents may change {lock.name} now. Lock it again "
            "before you change it, and unlock sooner."
        )
        self._broken[(holder, lock.name)] = note
        if self._on_broken is not None:
            self._on_broken(holder, note)
