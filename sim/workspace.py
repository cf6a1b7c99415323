"""The run directory and the workspace inside it, and the rules for paths agents may touch.

    runs/<run-id>/
      scenario.yaml      the resolved scenario (overrides applied)
      meta.json          versions, seed, start, end, status
      events.jsonl       the event log
      workspace/
        agents/<name>/   each agent's own directory (its HOME and starting cwd)
        shared/          the common directory; shared/.locks/ holds the lock files

Run ids are `YYYYmmdd-HHMMSS-ffffff-<scenario>`: they sort by start time, and the directory
is made with mkdir (never reused), so two runs started in the same microsecond still differ
by a suffix.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.errors import PathError, RunError

LOCKS_DIRNAME = ".locks"


def _slug(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]+", "-", text).strip("-")[:40] or "run"


def new_run_dir(runs_dir: Path, scenario_name: str) -> Path:
    """Create and return a fresh `runs_dir/<run-id>/`, as an absolute path (agents get paths
    such as $SIM_SHARED from it, and their shells do not start where the harness did).
    Raises RunError if it cannot."""
    runs_dir = Path(os.path.abspath(runs_dir))
    if runs_dir.exists() and not runs_dir.is_dir():
        raise RunError(f"{runs_dir}: not a directory; --runs-dir needs a directory for runs")
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{runs_dir}: cannot create the runs directory ({exc.strerror})") from exc
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
    base = f"{stamp}-{_slug(scenario_name)}"
    for n in range(1000):
        path = runs_dir / (base if n == 0 else f"{base}.{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunError(f"{runs_dir}: could not find a free run id near {base}")


@dataclass(frozen=True)
class Owner:
    """Who files made for an agent belong to (`isolation: users`): its uid, its group in its
    own directory, the run's group in shared/."""

    uid: int
    gid: int
    shared_gid: int


def real_path(path: Path | str) -> str:
    """`os.path.realpath`, asked of the kernel when the path exists: open it with O_PATH and
    read the name of the descriptor back. One lookup instead of Python's lstat per component
    (a run's files sit a dozen directories deep); a path that does not exist yet, or cannot
    be opened, goes to `os.path.realpath`."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return os.path.realpath(path)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)
    finally:
        os.close(fd)
    # Not a path at all: a pseudo-file's name (`anon_inode:...`), or one removed meanwhile.
    return (
        real if real.startswith("/") and not real.endswith(" (deleted)") else os.path.realpath(path)
    )


def require_run_dir(run_dir: Path, *files: str) -> None:
    """RunError unless `run_dir` is a directory holding `files` (events.jsonl, ...)."""
    if not run_dir.exists():
        raise RunError(f"{run_dir}: no such directory; give a run directory, e.g. runs/<run-id>")
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: not a directory; give a run directory, e.g. runs/<run-id>")
    missing = [name for name in files if not (run_dir / name).exists()]
    if missing:
        raise RunError(f"{run_dir}: no {', '.join(missing)} here; is this a run directory?")


def relative_under(path: str, top: str) -> str | None:
    """`path` relative to the directory `top` ("" for `top` itself), or None when it is not
    inside it. Both are real paths, compared as strings (pathlib's parsing was most of the
    cost of confining a path)."""
    if path == top:
        return ""
    if path.startswith(top) and path[len(top)] == "/":
        return path[len(top) + 1 :]
    return None


def _meta(path: Path) -> dict[str, Any]:
    """meta.json's object; OSError or ValueError (saying why) when it cannot be had."""
    meta = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError("not a JSON object")
    return meta


def load_meta(run_dir: Path) -> dict[str, Any]:
    """A run's meta.json, or {} when it is missing, unreadable or not a JSON object: a run
    killed before writing it, or a damaged one, is still listed, shown and replayed."""
    try:
        return _meta(run_dir / "meta.json")
    except (OSError, ValueError):
        return {}


class Workspace:
    """Paths of one run directory, and path confinement for agents."""

    def __init__(self, run_dir: Path) -> None:
        # Absolute: agents get paths such as $SIM_SHARED from it, and their shells do not
        # start where the harness did (`sim resume runs/<id>` gives a relative one).
        self.run_dir = run_dir = Path(os.path.abspath(run_dir))
        self.root = run_dir / "workspace"
        self.shared = self.root / "shared"
        self.agents_root = self.root / "agents"
        self.locks_dir = self.shared / LOCKS_DIRNAME
        self.events_path = run_dir / "events.jsonl"
        self.meta_path = run_dir / "meta.json"
        self.scenario_path = run_dir / "scenario.yaml"
        self.owners: dict[str, Owner] = {}  # set by sim.isolation under `isolation: users`
        self._real_root: str | None = None
        self._allowed_dirs: dict[str, tuple[str, str]] = {}

    def create(self, agent_names: list[str]) -> None:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        for name in agent_names:
            self.agent_dir(name).mkdir(parents=True, exist_ok=True)

    def agent_dir(self, name: str) -> Path:
        return self.agents_root / name

    def seed(self, directory: Path, files: dict[str, str]) -> None:
        for rel, content in files.items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")

    def write_meta(self, meta: dict[str, Any]) -> None:
        # Write-then-rename so a crash never leaves a half-written meta.json.
        tmp = self.meta_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, self.meta_path)

    def read_meta(self) -> dict[str, Any]:
        """meta.json, or RunError saying why it cannot be had (see also `load_meta`)."""
        try:
            return _meta(self.meta_path)
        except (OSError, ValueError) as exc:
            raise RunError(f"{self.meta_path}: cannot read the run's meta.json ({exc})") from exc

    def confine(self, agent: str, path: str, cwd: Path | None = None) -> Path:
        """Resolve `path` as the agent means it and return it if it lies inside the agent's
        own directory or shared/; raise PathError otherwise.

        `path` is absolute, or relative to `cwd` (the agent's shell cwd; default its own
        directory). Every symlink is resolved before the check, so `..`, a link to outside,
        a linked parent directory, `/proc/self/root/...` and the like are escapes wherever
        they lead outside; so is a path into another agent's directory. The check compares
        real paths, so an agent that swaps its own directory for a symlink gains nothing.

        The answer holds when given: a process of the agent may swap a directory for a
        symlink a moment later. To act on the file, use `open_confined`, which re-checks
        every component as it opens them."""
        return Path(self._confine(agent, path, cwd)[0])

    def _confine(
        self, agent: str, path: str, cwd: Path | str | None, *, checked: bool = False
    ) -> tuple[str, str, str]:
        """(the real path, the allowed directory it lies in, the path relative to that).
        `checked`: `path` is one that `confine` returned, so it is not resolved again."""
        own, shared = self._allowed(agent)
        if "\0" in path:
            raise PathError(f"{path!r} contains a NUL byte, which no file name can hold")
        real = path
        if not checked:
            try:
                real = real_path(os.path.join(own if cwd is None else cwd, path))
            except (OSError, ValueError) as exc:
                raise PathError(f"{path!r} cannot be resolved ({exc})") from exc
        for top in (own, shared):
            rel = relative_under(real, top)
            if rel is not None:
                return real, top, rel
        self._check_allowed_dirs(agent)  # a swapped directory explains the refusal best
        where = f"outside your directory ({own}) and the shared directory ({shared})"
        other = relative_under(real, self._resolved_root() + "/agents")
        if other:
            where = f"in agent {other.split('/')[0]}'s directory, {where}"
        raise PathError(f"{path!r} resolves to {real}, {where}; use a path inside one of those")

    def open_confined(
        self,
        agent: str,
        path: str,
        flags: int = os.O_RDONLY,
        mode: int = 0o666,
        cwd: Path | None = None,
        *,
        parents: bool = False,
        checked: bool = False,
    ) -> int:
        """`confine`, then open the file and return its descriptor, without a race: from the
        allowed directory down, each component is opened with O_NOFOLLOW, so a symlink put in
        after the check fails the open (PathError) instead of leading out. `parents=True`
        makes missing directories. `checked=True` says `path` came from `confine` (or is a
        plain name inside such a path) and need not be resolved again: the walk is what
        makes the open safe. Files and directories made here belong to the agent under
        `isolation: users` (see `owners`). Other OSErrors (no such file...) propagate."""
        _, top, rel = self._confine(agent, path, cwd, checked=checked)
        in_shared = top == self._allowed(agent)[1]
        parts = rel.split("/") if rel else []
        if any(part in ("", ".", "..") for part in parts):  # never in a resolved path
            raise PathError(f"{path!r} is not a resolved path (it has '.', '..' or '//')")
        owner = self.owners.get(agent)
        gid = (owner.shared_gid if in_shared else owner.gid) if owner else -1
        dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = self._open_step(top, dir_flags, 0, None, path)
        try:
            for part in parts[:-1]:
                try:
                    step = self._open_step(part, dir_flags, 0, fd, path)
                except FileNotFoundError:
                    if not parents:
                        raise
                    os.mkdir(part, 0o777, dir_fd=fd)
                    if owner is not None:
                        os.chown(part, owner.uid, gid, dir_fd=fd, follow_symlinks=False)
                        os.chmod(part, 0o2770 if in_shared else 0o700, dir_fd=fd)
                    step = self._open_step(part, dir_flags, 0, fd, path)
                os.close(fd)
                fd = step
            if not parts:
                return self._open_step(".", flags, mode, fd, path)
            flags |= os.O_NOFOLLOW | os.O_CLOEXEC
            if flags & os.O_CREAT and not flags & os.O_EXCL:
                try:  # make it, so that we know to hand it to the agent
                    created = self._open_step(parts[-1], flags | os.O_EXCL, mode, fd, path)
                except FileExistsError:
                    return self._open_step(parts[-1], flags & ~os.O_CREAT, mode, fd, path)
            else:
                created = self._open_step(parts[-1], flags, mode, fd, path)
                if not flags & os.O_CREAT:
                    return created
            if owner is not None:
                os.fchown(created, owner.uid, gid)
                os.fchmod(created, mode & 0o770)  # as the agent's umask 007 would
            return created
        finally:
            os.close(fd)

    @staticmethod
    def _open_step(name: str, flags: int, mode: int, dir_fd: int | None, path: str) -> int:
        try:
            return os.open(name, flags, mode, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and flags & os.O_NOFOLLOW:
                raise PathError(
                    f"{path!r}: {name!r} is not a plain directory or file any more (a symlink "
                    "or a file put in its place?); nothing was opened"
                ) from exc
            raise

    def _resolved_root(self) -> str:
        if self._real_root is None:
            self._real_root = real_path(self.root)
        return self._real_root

    def _allowed(self, agent: str) -> tuple[str, str]:
        """The real paths of the agent's own directory and of shared/."""
        # Resolved once (it walked a dozen components on every editor call). Should the root
        # move later, only paths under its old real path pass (agents cannot move it under
        # `isolation: users`; without it they run as the harness user and can do anything).
        dirs = self._allowed_dirs.get(agent)
        if dirs is None:
            root = self._resolved_root()
            dirs = self._allowed_dirs[agent] = (f"{root}/agents/{agent}", f"{root}/shared")
        return dirs

    def _check_allowed_dirs(self, agent: str) -> None:
        """Raise PathError if the agent's directory or shared/ is no longer a directory (a
        symlink or a file put in its place): then that, not the path, is what is wrong."""
        for path, what in zip(self._allowed(agent), ("your directory", "shared/"), strict=True):
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # not made yet: nothing in it can lead elsewhere
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise PathError(
                    f"{what} {path} is no longer a directory (replaced by a symlink or a file?); "
                    "no path can be used until it is a directory again"
                )

    def shared_relative(self, path: Path) -> str | None:
        """A path `confine` returned, relative to shared/ ("." for shared/ itself), or None
        when it is not inside shared/. It is real already, so it is not resolved again."""
        rel = relative_under(str(path), self._resolved_root() + "/shared")
        return "." if rel == "" else rel
