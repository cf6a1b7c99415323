"""Clobber detection: which files in shared/ changed, who changed them, which changes were lost.

After every bash command (and around every editor write) the detector compares shared/ with its
last snapshot: one `lstat` per file, (inode, size, mtime_ns) per file, and a content hash only
for files whose stat changed. `shared/.locks` is skipped. The scan after a command is skipped
when inotify heard nothing in shared/ touched since the last one (sim/fswatch.py): it would
have found nothing. Each change is a new *version* of the file and is logged as `file_write`.
A rewrite with the same bytes is no change, except a blind one (below): two agents that both
read 5 and both write 6 lose an update with no new bytes.

Who wrote it: the agent whose command just ended, if no other agent had a command running
meanwhile (then it is certain). When commands overlap, a scan cannot tell them apart. The
plausible writers are the running commands that name the file (all of them if none does); the
writer is the one holding the file's lock, else the agent whose command just ended if
plausible, else the first plausible one; the other plausible ones go in `also_running`.

What was lost. Every version has a parent: the version its writer based it on. A writer is
taken to have seen the versions that were current when any of its commands ended (the newest of
those is its *base* for the file); an editor view or write sees that one file. Two kinds of
write build on the version they replace instead: an append (the new bytes start with the old
ones), and a command that read the file before writing it (the harness resets each file's atime
to 0 after a scan, so a nonzero atime at the next scan means the file was read in between).
The versions a write loses are those in the history (parent chain) of the version it replaces
but not in its base's history; each one written by another agent is one `clobber`, a lost
update.

Why `clobbers >= lost increments` for a read-modify-write counter (tests/test_clobbers.py
checks it): let write k read version r(k) and set value(r(k)) + 1, and L(k) = k - value(k), the
increments missing after k writes. Then L(k) = L(r(k)) + (k - 1 - r(k)) <= L(r(k)) + the versions
between r(k) and k, so every lost increment is a version that left the current history at some
write, and that write counted it (when the commands did not overlap, so every version was
seen; under `concurrent` with overlapping commands it is an estimate).

Limits, said plainly: a command that writes a file without reading it, after another agent
changed the file since this agent's last command, counts as a clobber even if it built the
content some other way; "seen" means "current when your command ended", whether or not you
looked; a rename over the file (new inode) cannot show a read and counts as blind; a
background job's writes are blamed on whoever's command is running when they are found; a
write through a shared mmap is found only by the next scan something else causes.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_mod
from bisect import bisect_right
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sim.atime import ReadMarks
from sim.events import Clobber, EventLog, FileWrite
from sim.fswatch import ChangeWatch
from sim.workspace import LOCKS_DIRNAME, real_path, relative_under

_HASH_LIMIT = 64 << 20  # bigger files are compared by stat only
_CHUNK = 1 << 20


@dataclass(slots=True, eq=False)
class _Version:
    gseq: int  # detection order over all files
    writer: str | None  # None: seeded, outside the harness, or unknown
    parent: _Version | None  # the version its writer based it on
    depth: int
    size: int  # -1: deleted
    digest: bytes | None


@dataclass(slots=True)
class _File:
    key: tuple[int, int, int] | None  # (inode, size, mtime_ns) at the last scan; None: deleted
    versions: list[_Version] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)  # the versions' gseq, for bisect
    atime_unreliable: bool = False  # its atime could not be reset: writes count as blind
    maybe_read: bool = False  # written while its read mark was cleared: the write may have read

    @property
    def current(self) -> _Version | None:
        return self.versions[-1] if self.versions else None


class ClobberDetector:
    """Finds writes to shared/ and lost updates. Call `before_command`/`after_command` around
    every shell command, and `editing` (or `before_write`/`after_write`) around every editor
    write. All methods are synchronous and cheap; they run in the trio thread."""

    def __init__(
        self, shared: Path, events: EventLog, lock_holder: Callable[[str], str | None]
    ) -> None:
        self.shared = shared
        self._shared_real = real_path(shared)
        self._events = events
        self._lock_holder = lock_holder
        self._files: dict[str, _File] = {}
        self._gseq = 0
        self._seen: dict[str, int] = {}  # agent -> gseq when its last command ended
        self._seen_file: dict[tuple[str, str], _Version] = {}  # editor views and writes
        self._running: dict[str, str] = {}  # agent -> its command in flight
        self._marks = ReadMarks(shared, shared / LOCKS_DIRNAME)
        self._marks_kept = False  # a mark was kept for a held lock: the next scan must run
        self._watch = ChangeWatch()  # made before the first walk, so it misses nothing after
        self.writes = 0
        self.clobbers = 0
        for rel, st in self._walk():  # the starting state: versions by nobody
            self._watch.watch_file(self.shared / rel)
            self._files[rel] = f = _File(_key(st))
            self._add(f, None, None, st.st_size, self._digest(rel, st.st_size))
            self._reset_atime(rel, f, st)
        self._flush_marks()

    def close(self) -> None:
        """Stop watching shared/ (later scans still work: they just always run)."""
        self._watch.close()

    # -- the seams ------------------------------------------------------------------------------

    def before_command(self, agent: str, command: str) -> None:
        self._running[agent] = command

    def after_command(self, agent: str, via: str = "bash") -> None:
        """Scan shared/ after `agent`'s command ended; afterwards it has seen every file."""
        self._running.setdefault(agent, "")  # a candidate even without before_command
        try:
            self._scan(agent, via)
        finally:
            del self._running[agent]
        self._seen[agent] = self._gseq

    def before_write(self, agent: str, path: Path | str) -> None:
        """Before an editor reads and writes `path`: pick up a change made meanwhile by a
        running command, so it is not blamed on the editor."""
        rel = self._relative(path)
        if rel is not None:
            self._sync(rel, writer=None, via="bash")

    def after_write(
        self, agent: str, path: Path | str, *, via: str = "editor", read_first: bool = True
    ) -> None:
        """After an editor write to `path` (anything outside shared/ is ignored).
        `read_first`: the edit changed the file's current content (str_replace, insert); False
        for a write of whole new content (create), which is blind like `echo > file`."""
        rel = self._relative(path)
        if rel is not None:
            self._sync(rel, writer=agent, via=via, read_first=read_first)
            self._saw(agent, rel)

    def saw(self, agent: str, path: Path | str) -> None:
        """An editor view: `agent` has seen the current version of `path`."""
        rel = self._relative(path)
        if rel is not None:
            self._sync(rel, writer=None, via="bash")
            self._saw(agent, rel)

    def _saw(self, agent: str, rel: str) -> None:
        f = self._files.get(rel)
        if f is not None and f.current is not None:
            self._seen_file[(agent, rel)] = f.current

    @contextmanager
    def editing(self, agent: str, path: Path | str, *, read_first: bool = True) -> Iterator[None]:
        """`with detector.editing(agent, path): write it` = before_write + after_write."""
        self.before_write(agent, path)
        try:
            yield
        finally:  # a write that failed half-way may still have changed the file
            self.after_write(agent, path, read_first=read_first)

    # -- scanning -------------------------------------------------------------------------------

    def _relative(self, path: Path | str) -> str | None:
        """`path` relative to shared/, or None outside it. `path` is relative to shared/, or
        real, as Workspace.confine returns it (the editor's paths are): it is not resolved
        again, for this runs on every editor call."""
        # join keeps an absolute path as it is
        rel = relative_under(os.path.join(self._shared_real, path), self._shared_real)
        return None if not rel or rel.split("/", 1)[0] == LOCKS_DIRNAME else rel

    def _walk(
        self, directory: Path | None = None, prefix: str = ""
    ) -> Iterator[tuple[str, os.stat_result]]:
        directory = directory or self.shared
        self._watch.watch_dir(directory)  # before the listing: a change after it is heard
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if not prefix and entry.name == LOCKS_DIRNAME:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat_mod.S_ISDIR(st.st_mode):
                yield from self._walk(Path(entry.path), f"{prefix}{entry.name}/")
            elif stat_mod.S_ISREG(st.st_mode):
                yield f"{prefix}{entry.name}", st

    def _scan(self, trigger: str, via: str) -> None:
        if not self._watch.touched() and not self._marks_kept:
            return  # nothing in shared/ was touched since the last scan: it would find nothing
        self._marks_kept = False  # this scan queues every mark still set, the kept ones too
        found = dict(self._walk())
        for rel, st in found.items():
            f = self._files.get(rel)
            if f is None or f.key != _key(st):
                self._change(rel, st, trigger, via, read_first=None)
            else:
                self._reset_atime(rel, f, st)
        for rel, f in list(self._files.items()):
            if f.key is not None and rel not in found:
                self._change(rel, None, trigger, via, read_first=None)
        self._flush_marks(trigger)

    def _sync(self, rel: str, writer: str | None, via: str, read_first: bool | None = None) -> None:
        """Check one file. `writer`: who certainly changed it (an editor write), or None to
        blame the running commands."""
        try:
            st: os.stat_result | None = os.lstat(self.shared / rel)
        except FileNotFoundError:
            st = None
        if st is not None and not stat_mod.S_ISREG(st.st_mode):
            return
        f = self._files.get(rel)
        if (st is None and (f is None or f.key is None)) or (
            st is not None and f is not None and f.key == _key(st)
        ):
            if st is not None and f is not None:
                self._reset_atime(rel, f, st)
        elif writer is None:
            self._change(rel, st, None, via, read_first)
        else:
            self._change(rel, st, writer, via, read_first, certain=True)
        self._flush_marks()

    def _change(
        self,
        rel: str,
        st: os.stat_result | None,
        trigger: str | None,
        via: str,
        read_first: bool | None,
        certain: bool = False,
    ) -> None:
        """Record what a scan found for one file whose stat changed. The writer is `trigger`
        if `certain`, else chosen among the running commands and `trigger`."""
        f = self._files.get(rel)
        if f is None:
            f = self._files[rel] = _File(None)
        previous = f.current
        size = -1 if st is None else st.st_size
        digest, prefix = (None, None) if st is None else self._digest_with_prefix(rel, st, previous)
        same_inode = st is not None and f.key is not None and f.key[0] == st.st_ino
        if st is not None:
            # Watched again: a file removed and made anew may have got the same inode number.
            self._watch.watch_file(self.shared / rel)
            if read_first is None:  # a command: did it read the file (atime set since reset)?
                read_first = (
                    same_inode and not f.atime_unreliable and (st.st_atime_ns != 0 or f.maybe_read)
                )
            f.maybe_read = False
            f.key = _key(st)
            self._reset_atime(rel, f, st)
        else:
            f.key = None
        same = (
            previous is not None
            and previous.size == size
            and digest is not None
            and digest == previous.digest
        )
        writer, also = (trigger, []) if certain else self._writer(rel, trigger)
        appended = (
            previous is not None
            and 0 <= previous.size < size
            and previous.digest is not None
            and prefix == previous.digest
        )
        blind = writer is not None and not appended and not read_first
        if same and not blind:
            return  # the same bytes again, built on what was there: nothing happened
        base = self._base(writer, rel, f) if blind and writer is not None else previous
        self._add(f, writer, base, size, digest)
        locked = writer is not None and self._lock_holder(rel) == writer
        self.writes += 1
        self._events.emit(
            FileWrite(path=rel, bytes=size, locked=locked, via=via, also_running=also), writer
        )
        for lost in _lost(previous, base):
            if lost.writer is not None and lost.writer != writer:
                self.clobbers += 1
                self._events.emit(
                    Clobber(path=rel, overwrote=lost.writer, locked=locked, via=via), writer
                )

    def _writer(self, rel: str, trigger: str | None) -> tuple[str | None, list[str]]:
        """(writer, the other plausible writers) among the running commands and `trigger`.
        Plausible: the commands that name the file, if any does, else all of them."""
        candidates = list(self._running)
        if trigger is not None and trigger not in candidates:
            candidates.insert(0, trigger)
        if len(candidates) <= 1:
            return (candidates[0] if candidates else None), []
        name = rel.rsplit("/", 1)[-1]
        plausible = [a for a in candidates if name in self._running.get(a, "")] or candidates
        holder = self._lock_holder(rel)
        if holder in candidates:
            writer = holder
        elif trigger in plausible:
            writer = trigger
        else:
            writer = plausible[0]
        return writer, [a for a in plausible if a != writer]

    def _base(self, agent: str, rel: str, f: _File) -> _Version | None:
        """The newest version of the file `agent` has seen."""
        i = bisect_right(f.stamps, self._seen.get(agent, -1)) - 1
        by_command = f.versions[i] if i >= 0 else None
        by_editor = self._seen_file.get((agent, rel))
        if by_editor is not None and (by_command is None or by_editor.gseq > by_command.gseq):
            return by_editor
        return by_command

    def _add(
        self,
        f: _File,
        writer: str | None,
        parent: _Version | None,
        size: int,
        digest: bytes | None,
    ) -> None:
        self._gseq += 1
        depth = parent.depth + 1 if parent is not None else 0
        f.versions.append(_Version(self._gseq, writer, parent, depth, size, digest))
        f.stamps.append(self._gseq)

    # -- file contents and atime ----------------------------------------------------------------

    def _digest(self, rel: str, size: int) -> bytes | None:
        return self._digest_with_prefix_size(rel, size, -1)[0]

    def _digest_with_prefix(
        self, rel: str, st: os.stat_result, previous: _Version | None
    ) -> tuple[bytes | None, bytes | None]:
        old = previous.size if previous is not None and previous.size >= 0 else -1
        return self._digest_with_prefix_size(rel, st.st_size, old if old <= st.st_size else -1)

    def _digest_with_prefix_size(
        self, rel: str, size: int, prefix_size: int
    ) -> tuple[bytes | None, bytes | None]:
        """The hash of the file, and of its first `prefix_size` bytes (to spot an append), in
        one read. Read with O_NOATIME so the harness's own read is not taken for an agent's."""
        if size > _HASH_LIMIT:
            return None, None
        path = self.shared / rel
        try:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOATIME | os.O_NOFOLLOW)
            except PermissionError:  # O_NOATIME needs the file's owner; its atime is reset later
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None, None
        h = hashlib.blake2b(digest_size=16)
        prefix = h.digest() if prefix_size == 0 else None
        done = 0
        try:
            while chunk := os.read(fd, _CHUNK):
                if prefix_size > 0 and done < prefix_size <= done + len(chunk):
                    cut = prefix_size - done
                    h.update(chunk[:cut])
                    prefix = h.digest()
                    h.update(chunk[cut:])
                else:
                    h.update(chunk)
                done += len(chunk)
        finally:
            os.close(fd)
        return h.digest(), prefix

    def _reset_atime(self, rel: str, f: _File, st: os.stat_result) -> None:
        if not f.atime_unreliable:
            self._marks.clear_later(rel, st)

    def _flush_marks(self, trigger: str | None = None) -> None:
        others = any(agent != trigger for agent in self._running)
        failed, unsure, kept = self._marks.flush(others_running=others)
        self._marks_kept = self._marks_kept or bool(kept)
        for rel in failed:
            self._files[rel].atime_unreliable = True
        for rel in unsure:
            self._files[rel].maybe_read = True


def _key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _lost(current: _Version | None, base: _Version | None) -> list[_Version]:
    """Versions in `current`'s history and not in `base`'s: what a write on `base` loses."""
    out = []
    a, b = current, base
    while a is not None and a is not b:
        if b is not None and b.depth > a.depth:
            b = b.parent
            continue
        out.append(a)
        if b is not None and b.depth == a.depth:
            b = b.parent
        a = a.parent
    return out
