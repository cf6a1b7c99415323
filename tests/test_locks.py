"""Locks: FIFO order, timeouts naming the holder, and mutual exclusion with flock(1)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from sim.errors import LockError
from sim.events import EventLog, read_events
from sim.locks import LockManager, lock_file_name
from sim.workspace import Workspace


def manager(
    tmp_path: Path, clock: Any = trio.current_time
) -> tuple[LockManager, EventLog, Workspace]:
    ws = Workspace(tmp_path)
    ws.create(["a", "b", "c"])
    log = EventLog(tmp_path / "events.jsonl", clock)
    return LockManager(ws, log, clock), log, ws


def test_waiters_get_the_lock_in_the_order_they_asked(tmp_path: Path) -> None:
    order: list[str] = []

    async def main() -> None:
        locks, log, _ = manager(tmp_path)
        await locks.acquire("a", "f.txt")

        async def take(agent: str) -> None:
            await locks.acquire(agent, "f.txt")
            order.append(agent)
            await trio.sleep(1)
            locks.release(agent, "f.txt")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "c")
            await trio.sleep(0.5)
            nursery.start_soon(take, "b")
            await trio.sleep(0.5)
            locks.release("a", "f.txt")
        log.close()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert order == ["c", "b"]
    events = read_events(tmp_path / "events.jsonl").events
    acquires = [
        (e["agent"], e["wait"], e["contended"]) for e in events if e["kind"] == "lock_acquire"
    ]
    assert acquires == [("a", 0.0, False), ("c", 1.0, True), ("b", 1.5, True)]
    holds = [(e["agent"], e["hold"]) for e in events if e["kind"] == "lock_release"]
    assert holds == [("a", 1.0), ("c", 1.0), ("b", 1.0)]
    waits = [(e["agent"], e["holder"]) for e in events if e["kind"] == "lock_wait"]
    assert waits == [("c", "a"), ("b", "a")]


def test_timeout_names_the_holder_and_leaves_the_queue(tmp_path: Path) -> None:
    async def main() -> None:
        locks, _, _ = manager(tmp_path)
        await locks.acquire("a", "f.txt")
        with pytest.raises(LockError, match="after 2 s; it is held by a"):
            await locks.acquire("b", "f.txt", timeout=2)
        locks.release("a", "f.txt")
        assert await locks.acquire("c", "f.txt", timeout=0) == 0.0

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_release_of_a_lock_not_held_is_an_error(tmp_path: Path) -> None:
    async def main() -> None:
        locks, _, _ = manager(tmp_path)
        with pytest.raises(LockError, match="nobody holds it"):
            locks.release("a", "f.txt")
        await locks.acquire("a", "f.txt")
        with pytest.raises(LockError, match="held by a"):
            locks.release("b", "f.txt")
        assert await locks.acquire("a", "f.txt") == 0.0  # held already: nothing to wait for
        assert locks.holder("f.txt") == "a"

    trio.run(main)


def test_names_are_paths_in_shared_and_nothing_else(tmp_path: Path) -> None:
    locks, _, ws = manager(tmp_path, clock=time.monotonic)
    assert locks.name_for("a", "notes/x.md") == "notes/x.md"
    assert locks.name_for("a", str(ws.shared / "c.txt")) == "c.txt"
    assert locks.name_for("a", "../../shared/c.txt") == "c.txt"  # relative to a's directory
    for bad in ("", "/etc/passwd", "../b/x", ".locks/c.txt.lock"):
        with pytest.raises(LockError):
            locks.name_for("a", bad)
    assert lock_file_name("notes/x.md") == "notes%2Fx.md.lock"


def _flock_holds(lock_path: Path, seconds: float) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["flock", str(lock_path), "-c", f"echo held; sleep {seconds}"], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    return proc


def test_a_shell_flock_keeps_the_harness_lock_waiting(tmp_path: Path) -> None:
    locks, _, ws = manager(tmp_path, clock=time.monotonic)
    proc = _flock_holds(ws.locks_dir / lock_file_name("c.txt"), 0.4)

    async def main() -> tuple[float, float]:
        start = time.monotonic()
        await locks.acquire("a", "c.txt")
        return start, time.monotonic()

    start, got = trio.run(main)
    assert proc.wait() == 0
    assert got - start >= 0.3  # it waited for flock(1) to let go


def test_the_harness_lock_keeps_a_shell_flock_out(tmp_path: Path) -> None:
    async def main() -> None:
        locks, _, ws = manager(tmp_path)
        await locks.acquire("a", "c.txt")
        path = ws.locks_dir / lock_file_name("c.txt")
        nonblocking = await trio.run_process(["flock", "-n", str(path), "true"], check=False)
        assert nonblocking.returncode == 1  # flock(1) says: held
        locks.release("a", "c.txt")
        after = await trio.run_process(["flock", "-n", str(path), "true"], check=False)
        assert after.returncode == 0

    trio.run(main)
