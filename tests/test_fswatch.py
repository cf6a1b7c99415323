"""ChangeWatch on a real directory with real inotify: what counts as touched, and what it does
when a watch cannot be had."""

from __future__ import annotations

import os
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
