"""Whether anything in shared/ was touched since the clobber detector last looked, from inotify.

The detector scans shared/ after every command (an lstat per file). In a run whose agents
leave shared/ alone that scan was 17% of the harness's CPU (bench/scale.py, 128 agents), and
the kernel already knows whether there is anything to find. So the detector asks this first
and skips the scan when nothing was touched; the scan itself is unchanged.

What counts as touched: anything that could change what a scan finds. Every directory is
watched for entries made, removed, renamed or changed; every file for writes, attribute
changes (the harness's own atime resets too), opens and reads (a read sets the atime that
read marks look at; a read of 0 bytes and an mmap send no IN_ACCESS, but their open is heard).
Files are watched themselves, not only through their directory, because a directory hears
only of changes made through its own path: a write through a hard link elsewhere would be
missed. A file's watch dies with its inode, and a file made anew often gets the same inode
number, so the detector watches a file again at every change it finds. A directory's own
listing is not watched: the scan lists them all, and would wake itself every time.

Not seen, so left to the next scan that something else causes: writes through a shared mmap
(inotify reports none); a read that sends no event (0 bytes, or an mmap) through a descriptor
opened before the last scan; a read of a file removed and made anew with the same inode
number, size and mtime (so no change to find), until it changes. If inotify cannot be had,
or a watch cannot be added (the kernel's `fs.inotify.max_user_watches`), `touched()` says
True from then on: every scan runs, as before.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import threading
from pathlib import Path

# inotify by hand, through libc, as sim.atime does utimensat: Python has no binding, and
# inotify_simple (which would do) finds libc with ctypes.util.find_library, which runs
# `ldconfig -p` in a subprocess at a process's first watch: 2 ms of every replay's ~100.
_libc = ctypes.CDLL(None, use_errno=True)
_IN_ACCESS, _IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE, _IN_OPEN = 0x1, 0x2, 0x4, 0x8, 0x20
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_ONLYDIR, _IN_DONT_FOLLOW = 0x1000000, 0x2000000
_CHANGES = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_CREATE
    | _IN_DELETE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)
_DIR_MASK = _CHANGES | _IN_ONLYDIR | _IN_DONT_FOLLOW
# IN_OPEN too: a read of 0 bytes and an mmap set the atime but send no IN_ACCESS.
_FILE_MASK = _CHANGES | _IN_ACCESS | _IN_OPEN | _IN_DONT_FOLLOW


class ChangeWatch:
    """Watch the directories and files a scan found (`watch_dir` before listing a directory,
    `watch_file` for each file that is new or changed); `touched()` then says whether any of
    them was touched since it was last asked."""

    def __init__(self) -> None:
        fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        # -1: no inotify here, or no instance left (fs.inotify.max_user_instances): scan always
        self._fd: int | None = fd if fd >= 0 else None
        # Asked after every command, and nearly always with nothing queued: a poll says so in
        # a third of the time of a read that fails with BlockingIOError.
        self._queued = select.poll()
        if self._fd is not None:
            self._queued.register(self._fd, select.POLLIN)

    @property
    def watching(self) -> bool:
        return self._fd is not None

    def watch_dir(self, path: Path | str) -> None:
        self._add(path, _DIR_MASK)

    def watch_file(self, path: Path | str) -> None:
        self._add(path, _FILE_MASK)

    def _add(self, path: Path | str, mask: int) -> None:
        if self._fd is None:
            return
        # a path already watched keeps its one watch
        if _libc.inotify_add_watch(self._fd, os.fsencode(path), ctypes.c_uint32(mask)) >= 0:
            return
        if ctypes.get_errno() not in (errno.ENOENT, errno.ENOTDIR):
            self.close()  # ENOSPC: no watch left; without one the answer would be a guess
        # ENOENT, ENOTDIR: gone or replaced since the scan saw it; its directory's watch saw it

    def touched(self) -> bool:
        """Whether anything watched was touched since the last call (always True when not
        watching). Reads, and so forgets, every event queued so far."""
        if self._fd is None:
            return True
        if not self._queued.poll(0):
            return False
        # Drained until the queue is empty (an inotify read never returns 0 bytes): the
        # events themselves do not matter, only that there were some.
        with contextlib.suppress(BlockingIOError):
            while os.read(self._fd, 65536):
                pass
        return True

    def close(self) -> None:
        """Stop watching. Closing an inotify descriptor that has watches waits in the kernel
        for an SRCU grace period (0.2-13 ms here): a thread nobody waits for does it, or the
        end of every run would wait (it was 10% of a replay)."""
        if self._fd is not None:
            self._queued.unregister(self._fd)
            threading.Thread(target=os.close, args=(self._fd,), daemon=True).start()
            self._fd = None
