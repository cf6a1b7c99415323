"""Named locks over paths in shared/, the same locks `flock(1)` takes in an agent's shell.

A lock named `counter.txt` is `flock(2)` on `shared/.locks/counter.txt.lock` (a name with
slashes has them written as `%2F`). filelock takes that flock for the harness; an agent's shell
can take the very same one with `flock "$SIM_LOCKS/counter.txt.lock" -c '...'`, so a lock taken
in a shell and one taken through the `lock` tool exclude each other.

Inside the harness, waiters queue per lock in the order they asked (first come, first served),
and only the head of the queue polls the flock. Polling is the one hand-written part: filelock
offers a blocking acquire (a thread we could not cancel) or a non-blocking try, and trio has no
way to wait on a flock, so the head of the queue retries the non-blocking try with a short
back-off while someone outside the harness holds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import trio
from filelock import FileLock, Timeout

from sim.errors import LockError
from sim.events import EventLog, LockAcquire, LockRelease, LockWait
from sim.workspace import Workspace

EXTERNAL = "external"  # the holder named when a flock outside the harness keeps a lock
_POLL_MIN, _POLL_MAX = 0.001, 0.02


def lock_file_name(name: str) -> str:
    return quote(name, safe="") + ".lock"


@dataclass
class _Lock:
    name: str
    file: FileLock
    holder: str | None = None
    acquired_at: float = 0.0
    waiters: deque[str] = field(default_factory=deque)
    changed: trio.Event = field(default_factory=trio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class LockManager:
    """Acquire and release named locks for agents, logging `lock_wait`, `lock_acquire`,
    `lock_release`. All methods run in the trio thread."""

    def __init__(
        self,
        workspace: Workspace,
        events: EventLog,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._workspace = workspace
        self._events = events
        self._clock = clock
        self._locks: dict[str, _Lock] = {}

    def name_for(self, agent: str, path: str, cwd: Path | None = None) -> str:
        """The lock name for a path an agent gave: relative to shared/. Paths outside shared/
        are refused, since only shared files are contended."""
        if not path.strip():
            raise LockError("lock needs a path inside shared/, e.g. counter.txt")
        candidate = Path(path)
        if not candidate.is_absolute() and not path.startswith(("./", "../")):
            # A bare name (`counter.txt`) means shared/counter.txt, whatever the agent's cwd.
            resolved = (self._workspace.shared / candidate).resolve()
        else:
            resolved = ((cwd or self._workspace.agent_dir(agent)) / candidate).resolve()
        rel = self._workspace.shared_relative(resolved)
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

    def held_by(self, agent: str) -> list[str]:
        return [name for name, lock in self._locks.items() if lock.holder == agent]

    async def acquire(
        self,
        agent: str,
        name: str,
        timeout: float | None = None,
        park: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
    ) -> float:
        """Wait for the lock, first come first served, and return the seconds waited.

        `park(agent)` is entered when the lock turns out to be contended and left once it is
        taken (the scheduler lets other agents move meanwhile). An agent that holds the lock
        already gets it at once. Raises LockError if `timeout` passes (naming the holder).
        On cancel the agent leaves the queue and holds nothing."""
        lock = self._get(name)
        if lock.holder == agent:
            return 0.0  # holding it already is what the caller wants (and a resumed redo)
        start = self._clock()
        lock.waiters.append(agent)
        logged_wait = False
        poll = _POLL_MIN
        parking = AsyncExitStack()
        try:
            with trio.move_on_after(timeout if timeout is not None else float("inf")):
                while True:
                    if lock.waiters[0] == agent and lock.holder is None:
                        try:
                            lock.file.acquire(timeout=0)
                            break
                        except Timeout:
                            holder = EXTERNAL
                    else:
                        holder = lock.holder or lock.waiters[0]
                    if not logged_wait:
                        self._events.emit(LockWait(lock=name, holder=holder), agent)
                        logged_wait = True
                        if park is not None:
                            await parking.enter_async_context(park(agent))
                    if holder == EXTERNAL:
                        await trio.sleep(poll)
                        poll = min(poll * 2, _POLL_MAX)
                    else:
                        await lock.changed.wait()
                lock.holder = agent
                lock.acquired_at = self._clock()
                wait = lock.acquired_at - start
                self._events.emit(
                    LockAcquire(lock=name, wait=round(wait, 6), contended=logged_wait), agent
                )
                return wait
            holder = lock.holder or EXTERNAL
            raise LockError(
                f"gave up waiting for the lock on {name} after {timeout:g} s; it is held by "
                f"{holder}. Try again later, or work on something else first"
            )
        finally:
            if agent in lock.waiters:
                lock.waiters.remove(agent)
                lock.notify()
            await parking.aclose()

    def release(self, agent: str, name: str, reason: str = "unlock") -> float:
        """Release a lock the agent holds; return how long it was held. LockError if not held."""
        lock = self._locks.get(name)
        if lock is None or lock.holder != agent:
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
    async def holding(self, agent: str, name: str) -> AsyncIterator[None]:
        """Hold `name` for the block, unless the agent holds it already (then do nothing)."""
        if self.holder(name) == agent:
            yield
            return
        await self.acquire(agent, name)
        try:
            yield
        finally:
            self.release(agent, name)
