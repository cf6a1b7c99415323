"""How a command reaches a shell's bash: typed into the pty as one line when it fits, else
through a file (`builtin . FILE`). A typed line is cut at 4095 bytes and its control characters
act on the terminal (notes/shell.md); `.` runs the file in the shell itself, keeping cwd,
variables and `exit`. bash reads the whole file before running it, so the next command may
replace it at once."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile

_NEEDS_FILE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # newline, \r and the tty's control chars
_MAX_LINE = 1000  # longer lines go through the file: the pty cuts lines over 4095 bytes


class CommandFile:
    """One per shell, in a directory of its own made on first use and removed by `remove`.

    bash can read the file's path ($BASH_SOURCE). Under `isolation: none` the agent could put
    a symlink there, which an open for writing would follow, or remove the directory: so each
    command unlinks the old file and makes a new one with O_EXCL | O_NOFOLLOW, and the
    directory is made again when it is gone. With `gid` (`isolation: users`, where bash runs
    as the agent's user) the directory stays the harness's and bash's group may only read."""

    def __init__(self, gid: int | None = None) -> None:
        self._gid = gid
        self._dir: str | None = None

    def line(self, command: str) -> bytes:
        """What to type into the pty for `command`: itself, or `builtin . FILE`."""
        try:
            data = command.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no file name could hold
            data = command.encode("utf-8", "replace")
        if len(data) <= _MAX_LINE and not _NEEDS_FILE.search(command):
            return data + b"\n"  # one line: canonical mode, bash reads it like typed input
        return b"builtin . " + shlex.quote(self.write(data)).encode() + b"\n"

    def write(self, data: bytes) -> str:
        """Put `data` in the file; return its path."""
        try:
            return self._write(data)
        except FileNotFoundError:  # the agent removed the directory: make another
            self._dir = None
            return self._write(data)

    def remove(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _write(self, data: bytes) -> str:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="sim-shell-")  # mode 0700
            if self._gid is not None:
                os.chown(self._dir, -1, self._gid)
                os.chmod(self._dir, 0o750)
        path = os.path.join(self._dir, "cmd")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            if self._gid is not None:
                os.fchown(fd, -1, self._gid)
                os.fchmod(fd, 0o640)  # whatever the harness's umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        return path
