"""ChangeWatch on a real directory with real inotify: what counts as touched, and what it does
when a watch cannot be had."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sim.fswatch import ChangeWatch


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[ChangeWatch, Path]]:
    (tmp_path / "sub").mkdir()
    (tmp_path / "f").write_text("0")
    watch = ChangeWatch()
    watch.watch_dir(tmp_path)
    watch.watch_dir(tmp_path / "sub")
    watch.watch_file(tmp_path / "f")
    assert watch.watching and not watch.touched()
    yield watch, tmp_path
    watch.close()


TOUCHES: dict[str, Callable[[Path], object]] = {
    "write": lambda d: (d / "f").write_text("1"),
    "read": lambda d: (d / "f").read_text(),
    "chmod": lambda d: (d / "f").chmod(0o600),
    "create in a subdirectory": lambda d: (d / "sub" / "new").write_text(""),
    "delete": lambda d: (d / "f").unlink(),
    "rename": lambda d: (d / "f").rename(d / "g"),
    "mkdir": lambda d: (d / "sub2").mkdir(),
}


@pytest.mark.parametrize("touch", TOUCHES)
def test_each_touch_is_heard_once(watched: tuple[ChangeWatch, Path], touch: str) -> None:
    watch, d = watched
    TOUCHES[touch](d)
    assert watch.touched()
    assert not watch.touched()  # the events were read: the next look starts afresh


def test_listing_and_stat_are_not_touches(watched: tuple[ChangeWatch, Path]) -> None:
    watch, d = watched
    assert sorted(os.listdir(d)) == ["f", "sub"]
    (d / "f").stat()
    assert not watch.touched()


def test_a_watch_that_cannot_be_added_makes_every_look_a_touch(tmp_path: Path) -> None:
    watch = ChangeWatch()
    watch.watch_dir(tmp_path / "gone")  # vanished before it was watched: not a failure
    assert watch.watching and not watch.touched()
    watch.watch_dir(tmp_path / ("x" * 5000))  # ENAMETOOLONG, as ENOSPC would be
    assert not watch.watching
    assert watch.touched() and watch.touched()


def _inotify(fds: set[int]) -> set[int]:
    """Those of `fds` that are inotify descriptors now."""
    out = set()
    for fd in fds:
        with contextlib.suppress(FileNotFoundError):  # closed
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                out.add(fd)
    return out


def test_close_gives_the_descriptor_back(tmp_path: Path) -> None:
    # The close runs in a thread nobody waits for (it can wait on the kernel): it still runs.
    # Our own descriptors are followed, not a count: an earlier test's may close meanwhile.
    watches = [ChangeWatch() for _ in range(5)]
    for watch in watches:
        watch.watch_dir(tmp_path)
    ours = {watch._fd for watch in watches if watch._fd is not None}
    assert len(ours) == 5 and _inotify(ours) == ours
    for watch in watches:
        watch.close()
    deadline = time.monotonic() + 10
    while _inotify(ours) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _inotify(ours)
