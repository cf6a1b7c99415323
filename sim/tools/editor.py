"""Anthropic's text editor tool (`text_editor_20250728`, named `str_replace_based_edit_tool`).

Commands: `view` (a file with line numbers, or a directory two levels deep), `create`,
`str_replace` (exactly one match) and `insert`. There is no `undo_edit` in this version.

Paths are absolute, or relative to the agent's shell's current directory, and must stay inside
the agent's own directory or shared/ (`Workspace.confine`). A write to a file under shared/
holds that file's lock for the write (the same lock the `lock` tool and `flock` take; if the
agent holds it already, the write just goes ahead) and is logged as `file_write`. Writes go to
a temporary file that replaces the target, so another agent never reads half a file. Every
read and write goes through `Workspace.open_confined` and directory descriptors, never a bare
path: an agent's process cannot swap a directory for a symlink between check and use.

Files are read and written in the trio thread: they are small text files, capped at
`_MAX_FILE_BYTES`, and a thread hop per edit would cost more than the I/O.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from sim.errors import PathError, ToolError
from sim.events import FileWrite
from sim.tools.base import ToolContext, ToolOutput, require_str
from sim.workspace import LOCKS_DIRNAME

NAME = "str_replace_based_edit_tool"


_MAX_FILE_BYTES = 4 * 1024 * 1024
_SNIPPET_LINES = 4  # lines of context shown around an edit


_SUBDIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _entries(dir_fd: int) -> list[tuple[str, bool]]:
    """The directory's visible entries, sorted: (name, is a directory, not through a link)."""
    with os.scandir(dir_fd) as it:
        return sorted(
            (e.name, e.is_dir(follow_symlinks=False)) for e in it if not e.name.startswith(".")
        )


def _list_dir(fd: int, path: Path) -> str:
    """Like `find PATH -maxdepth 2` of the directory open on `fd`: a symlink is listed, never
    followed, and subdirectories are opened from `fd` with O_NOFOLLOW, not by path: a link
    planted in the directory could lead anywhere, also where the agent's own user may not
    look (the harness may be root)."""
    out = [f"Files and directories up to 2 levels deep in {path}, hidden items excluded:"]
    for name, is_dir in _entries(fd):
        out.append(f"{path}/{name}/" if is_dir else f"{path}/{name}")
        if not is_dir:
            continue
        with contextlib.suppress(OSError):  # unreadable, or swapped since the scan
            sub = os.open(name, _SUBDIR, dir_fd=fd)
            try:
                for inner, inner_dir in _entries(sub):
                    out.append(f"{path}/{name}/{inner}" + ("/" if inner_dir else ""))
            finally:
                os.close(sub)
    return "\n".join(out)


def _too_large(path: Path, what: str) -> ToolError:
    return ToolError(
        f"{path} {what}: too large for the editor (at most {_MAX_FILE_BYTES} bytes); "
        "use bash (head, grep, sed) to look at parts of it"
    )


def _numbered(lines: list[str], first: int) -> str:
    return "\n".join(f"{first + i:6}\t{line}" for i, line in enumerate(lines))


class EditorTool:
    name = NAME

    def definition(self) -> dict[str, Any]:
        # Anthropic-defined: the model knows the commands and their parameters.
        return {"type": "text_editor_20250728", "name": NAME}

    async def run(self, ctx: ToolContext, args: dict[str, Any]) -> ToolOutput:
        command = args.get("command")
        raw_path = require_str(args, "path", NAME)
        path = self._resolve(ctx, raw_path)
        if command == "view":
            shown = self._view(ctx, path, args.get("view_range"))
            if ctx.clobbers is not None:  # (a directory is not a file it tracks)
                ctx.clobbers.saw(ctx.agent, path)  # what it saw, a later edit builds on
            return ToolOutput(self._clip(ctx, shown))
        if command == "create":
            text = require_str(args, "file_text", f"{NAME} create")
            existed = path.exists()
            if path.is_dir():
                raise ToolError(f"{raw_path} is a directory; give a file path to create")
            await self._write(ctx, path, text, create_dirs=True, read_first=False)
            return ToolOutput(f"{'Overwrote' if existed else 'Created'} {path} ({len(text)} chars)")
        if command == "str_replace":
            return ToolOutput(await self._str_replace(ctx, path, args))
        if command == "insert":
            return ToolOutput(await self._insert(ctx, path, args))
        raise ToolError(
            f"unknown command {command!r}; use view, create, str_replace or insert "
            "(undo_edit is not available in this version of the tool)"
        )

    # -- paths and files ------------------------------------------------------------------

    def _resolve(self, ctx: ToolContext, raw: str) -> Path:
        if not raw.strip():
            raise ToolError(f"{NAME} needs `path`, a file or directory path")
        path = ctx.workspace.confine(ctx.agent, raw, ctx.shell.cwd)
        rel = ctx.workspace.shared_relative(path) or ""
        if rel.split("/", 1)[0] == LOCKS_DIRNAME:
            raise PathError(f"{raw!r} is inside shared/{LOCKS_DIRNAME}, the harness's lock files")
        return path

    def _open(self, ctx: ToolContext, path: Path) -> tuple[int, os.stat_result]:
        """A descriptor on `path` (file or directory) and its stat. Opened through
        open_confined, not by path: an agent's process could swap a directory on the way for a
        symlink between confine's check and the open (the harness may be root, under
        `isolation: users`)."""
        try:
            # O_NONBLOCK: a FIFO put where a file was must not hang the harness on open.
            fd = ctx.workspace.open_confined(
                ctx.agent, str(path), os.O_RDONLY | os.O_NONBLOCK, checked=True
            )
        except FileNotFoundError:
            raise ToolError(f"{path} does not exist; create it with the create command") from None
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror}") from None
        return fd, os.fstat(fd)

    def _read(self, ctx: ToolContext, path: Path) -> str:
        return self._read_open(*self._open(ctx, path), path)

    def _read_open(self, fd: int, st: os.stat_result, path: Path) -> str:
        """The text of the file open on `fd`, which this closes."""
        # os.read, not a file object: making one (and its own fstat) was a third of a view.
        parts: list[bytes] = []
        try:
            if stat.S_ISDIR(st.st_mode):
                raise ToolError(f"{path} is a directory; view it, or give a file path")
            if not stat.S_ISREG(st.st_mode):
                raise ToolError(f"{path} is not a regular file (a FIFO, a device?); use bash")
            if st.st_size > _MAX_FILE_BYTES:
                raise _too_large(path, f"is {st.st_size} bytes")
            got = 0  # counted as read: the file may have changed since the fstat
            while got <= _MAX_FILE_BYTES and (
                part := os.read(fd, max(st.st_size + 1 - got, 65536))
            ):
                parts.append(part)
                got += len(part)
            if got > _MAX_FILE_BYTES:
                raise _too_large(path, f"grew to more than {_MAX_FILE_BYTES} bytes as it was read")
        except OSError as exc:
            raise ToolError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        data = b"".join(parts)
        if b"\0" in data:
            raise ToolError(f"{path} is a binary file; the editor edits text files only")
        return data.decode("utf-8", errors="replace")

    async def _write(
        self, ctx: ToolContext, path: Path, text: str, create_dirs: bool, read_first: bool = True
    ) -> None:
        """Write a whole file. A file in shared/ is written holding its lock (waiting parks
        the agent out of the turn order); with clobber detection on, the detector logs the
        `file_write` (and a `clobber` if the agent had not seen the version it replaced);
        `read_first` is False for `create`, a blind write of new content."""
        rel = ctx.workspace.shared_relative(path)
        if rel is None:
            self._replace(ctx, path, text, create_dirs)
            return
        async with ctx.locks.holding(ctx.agent, rel, park=ctx.park):
            if ctx.clobbers is None:
                self._replace(ctx, path, text, create_dirs)
                ctx.events.emit(
                    FileWrite(path=rel, bytes=len(text.encode()), locked=True, via="editor"),
                    ctx.agent,
                )
            else:
                with ctx.clobbers.editing(ctx.agent, path, read_first=read_first):
                    self._replace(ctx, path, text, create_dirs)

    def _replace(self, ctx: ToolContext, path: Path, text: str, create_dirs: bool) -> None:
        """Write `text` to a new file beside `path`, then rename it over `path`. Both go through
        open_confined and the directory's descriptor, never a path, so a symlink swapped in
        meanwhile cannot lead the write outside (see `_read`). New files and directories
        belong to the agent under `isolation: users`."""
        ws, agent = ctx.workspace, ctx.agent
        tmp = f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = ws.open_confined(
                agent,
                str(path.parent / tmp),
                os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                0o666,
                parents=create_dirs,
                checked=True,
            )
        except (FileNotFoundError, NotADirectoryError):
            raise ToolError(f"directory {path.parent} does not exist") from None
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            dfd = ws.open_confined(
                agent, str(path.parent), os.O_RDONLY | os.O_DIRECTORY, checked=True
            )
            try:
                try:  # an edit keeps the file's mode; a new file has what open_confined gave
                    st = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
                    if stat.S_ISREG(st.st_mode):
                        os.fchmod(f.fileno(), st.st_mode & 0o7777)
                except FileNotFoundError:
                    pass
                f.write(text)
                f.flush()
                os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dfd)
                if isinstance(exc, IsADirectoryError):
                    raise ToolError(f"{path} is a directory; give a file path") from None
                raise
            finally:
                os.close(dfd)

    def _clip(self, ctx: ToolContext, text: str) -> str:
        cap = ctx.limits.max_output_bytes
        if len(text) <= cap:
            return text
        return (
            text[:cap] + f"\n<response clipped: {len(text) - cap} more characters; "
            "use view_range to see the rest>"
        )

    # -- commands -------------------------------------------------------------------------

    def _view(self, ctx: ToolContext, path: Path, view_range: Any) -> str:
        fd, st = self._open(ctx, path)
        if stat.S_ISDIR(st.st_mode):
            try:
                if view_range is not None:
                    raise ToolError("view_range applies to files, not directories")
                return _list_dir(fd, path)
            finally:
                os.close(fd)
        lines = _lines(self._read_open(fd, st, path))
        if view_range is None:
            return f"Here's the content of {path} with line numbers:\n" + _numbered(lines, 1)
        if (
            not isinstance(view_range, list)
            or len(view_range) != 2
            or not all(isinstance(n, int) for n in view_range)
        ):
            raise ToolError(f"view_range must be two integers [start, end] (got {view_range!r})")
        start, end = view_range
        if not 1 <= start <= len(lines):
            raise ToolError(f"view_range start {start} must be between 1 and {len(lines)}")
        if end == -1:
            end = len(lines)
        if not start <= end <= len(lines):
            raise ToolError(
                f"view_range end {end} must be -1 or between {start} and {len(lines)} "
                f"(the file has {len(lines)} lines)"
            )
        return _numbered(lines[start - 1 : end], start)

    async def _str_replace(self, ctx: ToolContext, path: Path, args: dict[str, Any]) -> str:
        old = require_str(args, "old_str", f"{NAME} str_replace")
        new = args.get("new_str") or ""
        if not isinstance(new, str):
            raise ToolError(f"{NAME} str_replace needs `new_str` as a string (got {new!r})")
        if not old:
            raise ToolError("old_str is empty; give the exact text to replace")
        text = self._read(ctx, path)
        count = text.count(old)
        if count == 0:
            raise ToolError(
                f"No replacement was performed: old_str did not appear verbatim in {path}. "
                "View the file and copy the text exactly, whitespace included"
            )
        if count > 1:
            lines = [text[:i].count("\n") + 1 for i in _find_all(text, old)]
            raise ToolError(
                f"No replacement was performed: old_str occurs {count} times in {path}, at "
                f"lines {lines}. Include more surrounding lines to make it unique"
            )
        at = text.index(old)
        result = text[:at] + new + text[at + len(old) :]
        await self._write(ctx, path, result, create_dirs=False)
        first = text[:at].count("\n") + 1
        return f"Edited {path}. " + _snippet(result, first, first + new.count("\n"))

    async def _insert(self, ctx: ToolContext, path: Path, args: dict[str, Any]) -> str:
        line = args.get("insert_line")
        # text_editor_20250728 names the text `insert_text`; earlier versions said `new_str`.
        new = args.get("insert_text", args.get("new_str"))
        if not isinstance(new, str):
            raise ToolError(f"{NAME} insert needs `insert_text` as a string (got {new!r})")
        parts = self._read(ctx, path).split("\n")
        lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
        if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line <= len(lines):
            raise ToolError(
                f"insert_line must be a line number from 0 (before the first line) to "
                f"{len(lines)} (after the last; got {line!r})"
            )
        if line == len(lines) and lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        block = new if new.endswith("\n") else new + "\n"
        result = "".join([*lines[:line], block, *lines[line:]])
        await self._write(ctx, path, result, create_dirs=False)
        added = block.count("\n")
        return f"Inserted {added} line(s) after line {line} of {path}. " + _snippet(
            result, line + 1, line + added
        )


def _lines(text: str) -> list[str]:
    """Lines as an editor numbers them: a final newline does not start another line."""
    lines = text.split("\n")
    return lines[:-1] if len(lines) > 1 and lines[-1] == "" else lines


def _snippet(text: str, first: int, last: int) -> str:
    """The edited lines first..last of the new text, with a few lines around them."""
    lines = _lines(text)
    start = max(1, first - _SNIPPET_LINES)
    end = min(len(lines), last + _SNIPPET_LINES)
    return f"Lines {start}-{end} now read:\n" + _numbered(lines[start - 1 : end], start)


def _find_all(text: str, sub: str) -> list[int]:
    out, at = [], text.find(sub)
    while at != -1:
        out.append(at)
        at = text.find(sub, at + 1)
    return out
