"""Whether anything in shared/ was touched since the clobber detector last looked, from inotify.

The detector scans shared/ after every command (an lstat per file). In a run whose agents
leave shared/ alone that scan was a tenth of the harness's CPU, and the kernel already knows
whether there is anything to find. So the detector asks this first and skips the scan when
nothing was touched; the scan itself is unchanged.

What counts as touched: anything that could change what a scan finds. Every directory is
watched for entries made, removed, renamed or changed; every file for writes, attribute
changes (the harness's own atime resets too) and reads (a read sets the atime that read marks
look at). Files are watched themselves, not only through their directory, because a directory
hears only of changes made through its own path: a write through a hard link elsewhere would
be missed. A directory's own listing is not watched: the scan lists them all, and would wake
itself every time.

Not seen, so left to the next scan that something else causes: writes through a shared mmap
(inotify reports none). If inotify cannot be had, or a watch cannot be added (the kernel's
`fs.inotify.max_user_watches`), `touched()` says True from then on: every scan runs, as before.
"""

from __future__ import annotations

from pathlib import Path

from inotify_simple import INotify, flags

_CHANGES = (
    flags.MODIFY
    | flags.ATTRIB
    | flags.CLOSE_WRITE
    | flags.CREATE
    | flags.DELETE
    | flags.MOVED_FROM
    | flags.MOVED_TO
    | flags.DELETE_SELF
    | flags.MOVE_SELF
)
_DIR_MASK = _CHANGES | flags.ONLYDIR | flags.DONT_FOLLOW
_FILE_MASK = _CHANGES | flags.ACCESS | flags.DONT_FOLLOW


class ChangeWatch:
    """Watch the directories and files a scan found (`watch_dir` before listing a directory,
    `watch_file` for each file that is new or changed); `touched()` then says whether any of
    them was touched since it was last asked."""

    def __init__(self) -> None:
        try:
            self._inotify: INotify | None = INotify(nonblocking=True)
        except OSError:  # no inotify here (or no instance left): scan every time
            self._inotify = None

    @property
    def watching(self) -> bool:
        return self._inotify is not None

    def watch_dir(self, path: Path | str) -> None:
        self._add(path, _DIR_MASK)

    def watch_file(self, path: Path | str) -> None:
        self._add(path, _FILE_MASK)

    def _add(self, path: Path | str, mask: int) -> None:
        if self._inotify is None:
            return
        try:
            self._inotify.add_watch(path, mask)  # a path already watched keeps its one watch
        except (FileNotFoundError, NotADirectoryError):
            pass  # gone or replaced since the scan saw it: its directory's watch saw that
        except OSError:  # ENOSPC: no watch left; without one the answer would be a guess
            self.close()

    def touched(self) -> bool:
        """Whether anything watched was touched since the last call (always True when not
        watching). Reads, and so forgets, every event queued so far."""
        if self._inotify is None:
            return True
        return bool(self._inotify.read(timeout=0))

    def close(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
