"""Read marks: whether a file in shared/ was read since the last scan, from its atime.

After each scan the clobber detector sets the atime of every file that was read to 0 (keeping
its mtime); under the kernel's `relatime` rule the next read of the file sets the atime again
(atime <= mtime), so a nonzero atime at the next scan means "read in between". On a `noatime`
mount nothing is ever marked read, which makes every write count as blind: the detector's
plain rule.

A file whose lock is held right now (`flock` in a shell, or the harness's lock, which is the
same flock) keeps its mark: someone is inside a read-modify-write on it, and clearing the mark
between its read and its write would make that write look blind. The holders come from
/proc/locks (read at most once per flush, and only while other commands run and a read file
has a lock file), so the check never takes a lock itself and cannot make an agent's
`flock -n` fail.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

from sim.locks import lock_file_name


# utimensat(2) with UTIME_OMIT for the mtime: os.utime can only set both times, and setting the
# mtime back to what a scan saw would hide a write that landed between the scan and the reset.
class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _AT_SYMLINK_NOFOLLOW, _UTIME_OMIT = -100, 0x100, (1 << 30) - 2
_ZERO_ATIME = (_Timespec * 2)(_Timespec(0, 0), _Timespec(0, _UTIME_OMIT))


def set_atime_zero(path: Path) -> bool:
    """Set the file's atime to 0, leaving its mtime; False if not permitted."""
    rc = _libc.utimensat(_AT_FDCWD, os.fsencode(path), _ZERO_ATIME, _AT_SYMLINK_NOFOLLOW)
    return rc == 0 or ctypes.get_errno() == errno.ENOENT


def flocked() -> set[tuple[int, int, int]]:
    """(major, minor, inode) of every file with a flock now (empty if /proc/locks cannot be
    read). Lines look like `1: FLOCK  ADVISORY  WRITE 1234 fd:01:56789 0 EOF`. Reading it
    costs 0.1 ms or more, so callers read it only when they must."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return set()
    out = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK":
            try:
                major, minor, inode = parts[5].split(":")
                out.add((int(major, 16), int(minor, 16), int(inode)))
            except ValueError:
                continue
    return out


def _key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class ReadMarks:
    """Queue files to clear during a scan (`clear_later`, with the stat the scan saw), then
    `flush` once at its end."""

    def __init__(self, shared: Path, locks_dir: Path) -> None:
        self._shared = shared
        self._locks_dir = locks_dir
        self._pending: list[tuple[str, tuple[int, int, int]]] = []

    def clear_later(self, rel: str, st: os.stat_result) -> None:
        if st.st_atime_ns != 0:
            self._pending.append((rel, _key(st)))

    def flush(self, others_running: bool) -> tuple[list[str], list[str], list[str]]:
        """Clear the queued marks, except on files written since the scan saw them (their mark
        belongs to that write) and, while other commands run, files whose lock is held.
        Returns (files whose atime cannot be set: their marks are unreliable, files written
        while their mark was being cleared: their next write may have read them first, files
        whose mark was kept for a held lock: a later scan must try again)."""
        if not self._pending:
            return [], [], []
        pending, self._pending = self._pending, []
        held: set[tuple[int, int, int]] | None = None
        failed, unsure, kept = [], [], []
        for rel, key in pending:
            if others_running:  # with nothing else running, no flock can be held mid-command
                lock = self._lock_file(rel)
                if lock is not None:  # a file never locked has no lock file: skip /proc/locks
                    held = flocked() if held is None else held
                    if lock in held:
                        kept.append(rel)
                        continue
            path = self._shared / rel
            if _stat_key(path) != key:
                continue
            if not set_atime_zero(path):
                failed.append(rel)
            elif _stat_key(path) != key:
                unsure.append(rel)
        return failed, unsure, kept

    def _lock_file(self, rel: str) -> tuple[int, int, int] | None:
        """(major, minor, inode) of the file's lock file, `shared/.locks/<name>.lock`."""
        try:
            st = os.stat(self._locks_dir / lock_file_name(rel))
        except OSError:
            return None
        return (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        return _key(os.lstat(path))
    except OSError:
        return None
