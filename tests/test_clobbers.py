"""Clobber detection on a real directory: what counts as a write, whose, and what was lost.

Commands are simulated in-process (Python reads and writes the files between
`before_command` and `after_command`), which is what a shell command does to the files."""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.clobbers import ClobberDetector
from sim.events import EventLog, read_events
from sim.locks import lock_file_name


class Shared:
    """A shared/ directory with a detector watching it, and the events it logged."""

    def __init__(self, root: Path, files: dict[str, str] | None = None) -> None:
        self.dir = root / "shared"
        (self.dir / ".locks").mkdir(parents=True)
        for name, text in (files or {}).items():
            (self.dir / name).write_text(text)
        self.log = EventLog(root / "events.jsonl", lambda: 0.0)
        self.holders: dict[str, str] = {}
        self.detector = ClobberDetector(self.dir, self.log, self.holders.get)
        self._root = root

    def command(self, agent: str, action: Callable[[], Any], text: str = "") -> Any:
        self.detector.before_command(agent, text)
        out = action()
        self.detector.after_command(agent)
        return out

    def read(self, agent: str, name: str) -> str:
        return str(self.command(agent, (self.dir / name).read_text, f"cat {name}"))

    def write(self, agent: str, name: str, text: str) -> None:
        self.command(agent, lambda: (self.dir / name).write_text(text), f"echo > {name}")

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in read_events(self._root / "events.jsonl").events if e["kind"] == kind]


def test_each_change_is_a_file_write_by_the_agent_whose_command_made_it(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"a.txt": "0"})
    s.holders["a.txt"] = "alice"
    s.write("alice", "a.txt", "1")
    s.write("bob", "b.txt", "new file")
    s.command("bob", lambda: (s.dir / "b.txt").unlink())
    s.command("bob", lambda: (s.dir / ".locks" / "x.lock").write_text(""))  # not watched
    s.read("alice", "a.txt")  # reads are not writes
    writes = [
        (e["agent"], e["path"], e["bytes"], e["locked"], e["via"]) for e in s.events("file_write")
    ]
    assert writes == [
        ("alice", "a.txt", 1, True, "bash"),
        ("bob", "b.txt", 8, False, "bash"),
        ("bob", "b.txt", -1, False, "bash"),
    ]
    assert s.events("clobber") == []


def test_a_write_over_a_change_the_writer_had_not_seen_is_a_clobber(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"c.txt": "5"})
    a = int(s.read("alice", "c.txt"))
    b = int(s.read("bob", "c.txt"))
    s.write("alice", "c.txt", str(a + 1))
    s.write("bob", "c.txt", str(b + 1))  # the same bytes, but alice's increment is lost
    (clobber,) = s.events("clobber")
    assert (clobber["agent"], clobber["overwrote"], clobber["path"]) == ("bob", "alice", "c.txt")
    s.read("alice", "c.txt")
    s.write("alice", "c.txt", "7")  # alice saw bob's version first: no clobber
    assert len(s.events("clobber")) == 1 and s.detector.clobbers == 1


def test_a_command_that_reads_then_writes_builds_on_what_it_read(tmp_path: Path) -> None:
    # flock ... -c 'v=$(cat c); echo $((v+1)) > c': the read shows in the file's atime.
    s = Shared(tmp_path, {"c.txt": "0"})
    for agent in ["a", "b", "c", "a", "b", "c"]:
        path = s.dir / "c.txt"
        s.command(agent, lambda p=path: p.write_text(str(int(p.read_text()) + 1)))
    assert (s.dir / "c.txt").read_text() == "6"
    assert len(s.events("file_write")) == 6 and s.events("clobber") == []


def test_an_append_loses_nothing(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"log.txt": ""})

    def append(line: str) -> Callable[[], None]:
        def do() -> None:
            with (s.dir / "log.txt").open("a") as f:
                f.write(line)

        return do

    for agent in ["a", "b", "a", "c"]:
        s.command(agent, append(f"{agent}\n"))
    assert len(s.events("file_write")) == 4 and s.events("clobber") == []
    s.write("b", "log.txt", "overwritten\n")  # b last saw the file after its own append
    assert [e["overwrote"] for e in s.events("clobber")] == ["c", "a"]  # newest first


def test_every_unseen_version_lost_is_one_clobber(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"c.txt": "0"})
    s.read("a", "c.txt")
    for i, agent in enumerate(["b", "c", "b"], start=1):
        s.read(agent, "c.txt")
        s.write(agent, "c.txt", str(i))
    s.write("a", "c.txt", "1")  # on the version it read: three changes lost
    assert [e["overwrote"] for e in s.events("clobber")] == ["b", "c", "b"]


def test_overlapping_commands_blame_the_lock_holder_then_the_commands_naming_the_file(
    tmp_path: Path,
) -> None:
    s = Shared(tmp_path, {"x.txt": "0", "y.txt": "0", "z.txt": "0"})
    d = s.detector
    d.before_command("holder", "cat x.txt")
    d.before_command("namer", "echo 1 > y.txt")
    d.before_command("other", "cat y.txt")
    s.holders["x.txt"] = "holder"
    for name in ("x.txt", "y.txt", "z.txt"):
        (s.dir / name).write_text("1")
    d.after_command("other")  # its scan finds all three changes while the others still run
    writes = {e["path"]: (e["agent"], e["also_running"]) for e in s.events("file_write")}
    assert writes == {
        "x.txt": ("holder", []),  # the lock holder, the only command naming it
        "y.txt": ("other", ["namer"]),  # two name it: the one whose command ended is blamed
        "z.txt": ("other", ["holder", "namer"]),  # nobody names it: everyone is plausible
    }


def test_the_editor_seam_knows_its_writer_and_whether_it_read(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"notes.md": "v0"})
    d = s.detector
    s.read("ed", "notes.md")
    s.write("bob", "notes.md", "v1")
    with d.editing("ed", s.dir / "notes.md"):  # str_replace: reads the current content
        (s.dir / "notes.md").write_text("v1 edited")
    assert s.events("clobber") == []
    s.read("bob", "notes.md")
    s.write("bob", "notes.md", "v2")
    with d.editing("ed", "notes.md", read_first=False):  # create: whole new content, blind
        (s.dir / "notes.md").write_text("fresh")
    (clobber,) = s.events("clobber")
    assert (clobber["agent"], clobber["overwrote"], clobber["via"]) == ("ed", "bob", "editor")
    vias = [(e["agent"], e["via"]) for e in s.events("file_write")]
    assert vias == [("bob", "bash"), ("ed", "editor"), ("bob", "bash"), ("ed", "editor")]
    d.saw("ed", "notes.md")  # a view
    d.after_write("ed", tmp_path / "elsewhere.txt")  # outside shared/: ignored


def test_a_change_by_a_running_command_is_not_blamed_on_the_editor(tmp_path: Path) -> None:
    s = Shared(tmp_path, {"n.md": "0"})
    s.detector.before_command("bob", "echo 1 > n.md")
    (s.dir / "n.md").write_text("1")  # bob's command writes, and is still running
    with s.detector.editing("ed", "n.md"):
        (s.dir / "n.md").write_text("1 and more")
    assert [(e["agent"], e["via"]) for e in s.events("file_write")] == [
        ("bob", "bash"),
        ("ed", "editor"),
    ]


def test_a_write_through_a_hard_link_outside_shared_is_found(tmp_path: Path) -> None:
    # A directory hears only of changes through its own path: the file's own watch hears this.
    s = Shared(tmp_path, {"c.txt": "0"})
    os.link(s.dir / "c.txt", tmp_path / "mine.txt")
    s.command("bob", lambda: (tmp_path / "mine.txt").write_text("1"), "echo 1 > ../mine.txt")
    assert [(e["agent"], e["path"]) for e in s.events("file_write")] == [("bob", "c.txt")]


def test_a_changed_subdirectory_and_a_file_made_in_a_new_one_are_found(tmp_path: Path) -> None:
    s = Shared(tmp_path, {})
    (s.dir / "old").mkdir()
    s.command("a", lambda: (s.dir / "old" / "x").write_text("x"))
    s.command("a", lambda: (s.dir / "new" / "deeper").mkdir(parents=True))
    s.command("b", lambda: (s.dir / "new" / "deeper" / "y").write_text("y"))
    writes = [(e["agent"], e["path"]) for e in s.events("file_write")]
    assert writes == [("a", "old/x"), ("b", "new/deeper/y")]


def test_a_read_mark_kept_for_a_held_lock_is_cleared_once_the_lock_is_free(
    tmp_path: Path,
) -> None:
    # a reads x under its lock while b runs: the mark is kept (a may write next). b's command
    # then touches nothing in shared/, yet its scan must clear the mark now that the lock is
    # free; otherwise c's blind write later would pass for one that read x first.
    s = Shared(tmp_path, {"x.txt": "0", "y.txt": "y"})
    s.read("c", "x.txt")  # c saw version 0
    s.write("b", "x.txt", "1")
    with (s.dir / ".locks" / lock_file_name("x.txt")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        s.detector.before_command("b", "sleep 1")
        s.read("a", "x.txt")
        s.detector.saw("ed", "y.txt")  # an editor view in between checks one file only
        fcntl.flock(lock, fcntl.LOCK_UN)
    s.detector.after_command("b")
    s.write("c", "x.txt", "1")  # blind, on version 0: b's version is lost
    assert [(e["agent"], e["overwrote"]) for e in s.events("clobber")] == [("c", "b")]


def _remake(path: Path) -> None:
    path.unlink()  # ext4 gives the new file the freed inode number: the watch died with it
    path.write_text("1")


def _mmap_read(path: Path) -> None:
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        m[:]


@pytest.mark.parametrize(
    ("name", "write", "read"),
    [
        ("a file made anew, then read", _remake, lambda p: p.read_text()),
        ("an empty file read (0 bytes)", lambda p: p.write_text(""), lambda p: p.read_text()),
        ("a file read through mmap", lambda p: p.write_text("1"), _mmap_read),
    ],
)
def test_every_read_that_sets_the_atime_is_seen(
    tmp_path: Path, name: str, write: Callable[[Path], None], read: Callable[[Path], None]
) -> None:
    # a's read sets the file's atime; its scan must clear it, or b's blind write after it
    # would pass for one that read the file first, and c's version would be lost unseen.
    s = Shared(tmp_path, {"c.txt": "0"})
    path = s.dir / "c.txt"
    s.command("b", lambda: None, "true")  # b saw version 0
    s.command("c", lambda: write(path), name)
    s.command("x", lambda: None, "true")
    s.command("a", lambda: read(path), name)
    s.write("b", "c.txt", "")  # (empty: a write over an empty file would be an append)
    assert [(e["agent"], e["overwrote"]) for e in s.events("clobber")] == [("b", "c")]


def _counter_race(schedule: list[int], agents: int, one_command: bool) -> tuple[int, int, int]:
    """Agents increment a counter in the order `schedule` gives, each step one command: a read
    then a write (split), or both in one command. Returns (writes, final value, clobbers)."""
    with tempfile.TemporaryDirectory() as tmp:
        s = Shared(Path(tmp), {"c": "0"})
        path = s.dir / "c"
        read_value: dict[int, int] = {}
        writes = 0
        for step in schedule:
            agent = step % agents
            name = f"a{agent}"
            if one_command:
                s.command(name, lambda: path.write_text(str(int(path.read_text()) + 1)))
                writes += 1
            elif agent not in read_value:
                read_value[agent] = int(s.read(name, "c"))
            else:
                s.write(name, "c", str(read_value.pop(agent) + 1))
                writes += 1
        final = int(path.read_text())
        s.detector.close()
        s.log.close()
        return writes, final, s.detector.clobbers


@settings(max_examples=60, deadline=None)
@given(agents=st.integers(1, 5), schedule=st.lists(st.integers(0, 4), max_size=40))
def test_clobbers_count_at_least_every_lost_increment(agents: int, schedule: list[int]) -> None:
    writes, final, clobbers = _counter_race(schedule, agents, one_command=False)
    assert clobbers >= writes - final >= 0


@settings(max_examples=30, deadline=None)
@given(agents=st.integers(1, 5), schedule=st.lists(st.integers(0, 4), max_size=30))
def test_atomic_read_modify_writes_are_never_clobbers(agents: int, schedule: list[int]) -> None:
    writes, final, clobbers = _counter_race(schedule, agents, one_command=True)
    assert (final, clobbers) == (writes, 0)


def test_a_lost_increment_race_by_hand_gives_exact_figures() -> None:
    # a and b read 0; a writes 1; c reads 1, writes 2; b writes 1: c's and a's work is lost.
    schedule = [0, 1, 0, 2, 2, 1]
    assert _counter_race(schedule, 3, one_command=False) == (3, 1, 2)
