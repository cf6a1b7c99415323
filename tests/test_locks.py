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
        with pytest.raises(LockError, match="already hold"):
            await locks.acquire("a", "f.txt")

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


def test_a_shell_flock_waits_while_the_harness_holds_the_lock(tmp_path: Path) -> None:
    # The other direction of exclusion, blocking this time: flock(1) without -n waits.
    locks, _, ws = manager(tmp_path, clock=time.monotonic)
    path = ws.locks_dir / lock_file_name("c.txt")

    async def main() -> None:
        await locks.acquire("a", "c.txt")
        proc = subprocess.Popen(["flock", str(path), "-c", "true"])
        try:
            await trio.sleep(0.3)
            assert proc.poll() is None  # still waiting for the harness's lock
        finally:
            locks.release("a", "c.txt")
        assert proc.wait(timeout=10) == 0

    trio.run(main)


async def _hold_two(locks: LockManager) -> None:
    await locks.acquire("a", "x")
    await locks.acquire("b", "y")


def test_a_deadlock_fails_the_closing_lock_call_in_the_same_scheduler_step(tmp_path: Path) -> None:
    async def main() -> None:
        locks, log, _ = manager(tmp_path)
        await _hold_two(locks)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(locks.acquire, "a", "y")  # a waits for y, held by b
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            # Cancelled before it starts: had acquire reached any checkpoint (a wait, a sleep)
            # it would raise Cancelled. LockError proves the cycle was found synchronously.
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(LockError) as err:
                    await locks.acquire("b", "x")
            assert trio.current_time() == start
            assert locks.graph.waiting_for("b") is None and locks.holder("x") == "a"
            locks.release("b", "y")  # b does what the error says; a gets y
        assert locks.holder("y") == "a"
        log.close()
        message = str(err.value)
        assert message.startswith("deadlock: you (b) asked for x, which a holds; a is waiting")
        assert "y, which you hold" in message and "unlock y" in message

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = read_events(tmp_path / "events.jsonl").events
    (deadlock,) = [e for e in events if e["kind"] == "deadlock"]
    assert (deadlock["cycle"], deadlock["locks"], deadlock["victim"]) == (
        ["b", "a"],
        ["x", "y"],
        "b",
    )
    assert deadlock["agent"] == "b"
    # b never waited: its lock call was refused before it joined the queue.
    assert [e["agent"] for e in events if e["kind"] == "lock_wait"] == ["a"]


def test_a_three_agent_cycle_is_found_and_explained_hop_by_hop(tmp_path: Path) -> None:
    async def main() -> str:
        locks, _, _ = manager(tmp_path)
        for agent, name in (("a", "x"), ("b", "y"), ("c", "z")):
            await locks.acquire(agent, name)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(locks.acquire, "a", "y")
            nursery.start_soon(locks.acquire, "b", "z")
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(LockError) as err:
                await locks.acquire("c", "x")
            nursery.cancel_scope.cancel()
        return str(err.value)

    message = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert (
        "you (c) asked for x, which a holds; a is waiting for y, which b holds; b is waiting "
        "for z, which you hold" in message
    )
    assert "alphabetical: x before y before z" in message


def test_waiting_on_an_external_flock_is_no_cycle(tmp_path: Path) -> None:
    # a holds x and waits for e.txt, which flock(1) holds outside the harness; b then waits for
    # x. The chain b -> a -> (external) ends outside the graph: b just waits (here: times out).
    locks, log, ws = manager(tmp_path, clock=time.monotonic)
    proc = _flock_holds(ws.locks_dir / lock_file_name("e.txt"), 0.5)

    async def main() -> None:
        await locks.acquire("a", "x")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(locks.acquire, "a", "e.txt")
            await trio.sleep(0.05)
            with pytest.raises(LockError, match=r"after 0\.05 s; it is held by a"):
                await locks.acquire("b", "x", timeout=0.05)
        assert locks.holder("e.txt") == "a"  # once flock(1) let go

    trio.run(main)
    log.close()
    assert proc.wait() == 0
    events = read_events(tmp_path / "events.jsonl").events
    assert not any(e["kind"] == "deadlock" for e in events)
    waits = [(e["agent"], e["holder"]) for e in events if e["kind"] == "lock_wait"]
    assert waits == [("a", "external"), ("b", "a")]


def lease_manager(tmp_path: Path, **kw: Any) -> tuple[LockManager, EventLog, list[tuple[str, str]]]:
    ws = Workspace(tmp_path)
    ws.create(["a", "b"])
    log = EventLog(tmp_path / "events.jsonl", trio.current_time)
    notes: list[tuple[str, str]] = []
    locks = LockManager(ws, log, on_broken=lambda agent, text: notes.append((agent, text)), **kw)
    return locks, log, notes


def test_a_lock_held_past_its_lease_is_reported_once(tmp_path: Path) -> None:
    async def main() -> None:
        locks, log, notes = lease_manager(tmp_path, lease=5.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(locks.watch_leases)
            await locks.acquire("a", "f")
            await trio.sleep(12)
            assert locks.holder("f") == "a"  # reported, not broken
            locks.release("a", "f")
            nursery.cancel_scope.cancel()
        log.close()
        assert notes == []

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = read_events(tmp_path / "events.jsonl").events
    (overdue,) = [e for e in events if e["kind"] == "lock_overdue"]
    assert (overdue["t"], overdue["holder"], overdue["held"], overdue["broken"]) == (
        5.0,
        "a",
        5.0,
        False,
    )


def test_an_overdue_lock_is_broken_and_the_next_waiter_gets_it(tmp_path: Path) -> None:
    async def main() -> None:
        locks, log, notes = lease_manager(tmp_path, lease=5.0, break_overdue=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(locks.watch_leases)
            await locks.acquire("a", "f")
            await trio.sleep(1)
            assert await locks.acquire("b", "f") == 4.0  # waited from t=1 to the break at t=5
            with pytest.raises(LockError, match=r"was broken: you held it 5\.0 s, longer than"):
                locks.release("a", "f")
            locks.release("b", "f")
            nursery.cancel_scope.cancel()
        log.close()
        assert [agent for agent, _ in notes] == ["a"] and "lock it again" in notes[0][1].lower()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    events = read_events(tmp_path / "events.jsonl").events
    kinds = [(e["kind"], e["agent"]) for e in events if e["kind"] != "lock_wait"]
    assert kinds == [
        ("lock_acquire", "a"),
        ("lock_overdue", "a"),
        ("lock_release", "a"),
        ("lock_acquire", "b"),
        ("lock_release", "b"),
    ]
    assert [e["reason"] for e in events if e["kind"] == "lock_release"] == ["broken", "unlock"]
