"""The pty plumbing under sim.shell: starting bash on a pty (spawned, or forked for a sandbox's
setup), capped output capture, a timerfd, terminal modes, and killing a session's processes.
Kept apart so shell.py reads as the command protocol."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import math
import os
import resource
import signal
import struct
import termios
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pexpect
import trio
from ptyprocess import PtyProcess

# Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: without resetting them,
# `yes | head` in the shell ends "yes: Broken pipe" instead of quietly.
_IGNORED_BY_PYTHON = (signal.SIGPIPE, signal.SIGXFSZ)


def spawn_on_pty(
    argv: list[str], env: Mapping[str, str], cwd: Path, preexec: Callable[[], None] | None
) -> PtyProcess:
    """Start `argv` (its program looked up on `env`'s PATH) on a new pty, as its session
    leader. posix_spawned, or forked by pexpect when `preexec` must run in the child first
    (the sandbox's setup). Raises what the spawn raises. `cwd` only names where, in errors:
    the program starts in the harness's cwd (see Shell._spawn)."""
    exe = pexpect.which(argv[0], env=env)
    argv = [exe or argv[0], *argv[1:]]
    if preexec is None:
        proc = _spawn_without_fork(argv, env)
    else:
        # In the trio thread, not a worker thread: forking a process that has other threads
        # and then running Python in the child is what CPython documents as unsafe, and
        # warns about from 3.12.
        child_setup = _exec_in_child(argv, env, cwd, preexec)
        proc = pexpect.spawn(argv[0], argv[1:], env=env, preexec_fn=child_setup).ptyproc
    # ptyprocess sleeps 100 ms around close: sim closes only once bash is reaped.
    proc.delayafterclose = proc.delayafterterminate = 0
    return proc


def _exec_in_child(
    argv: list[str], env: Mapping[str, str], cwd: Path, preexec: Callable[[], None] | None
) -> Callable[[], None]:
    """The preexec_fn to give pexpect.spawn: in the child, it sets up the terminal, runs
    `preexec` (the sandbox's setup) and execs `argv` itself; it never returns. No chdir: bash
    goes to `cwd` itself, as the user it runs as (see Shell._spawn).

    ptyprocess holds the harness on a pipe until exec closes it: after the sandbox's setup (the
    first cgroup join of a burst waits ~14 ms for an RCU grace period) and the kernel's
    teardown of the child's copy of the harness (5-7 ms at 45-125 MB). So the child closes that
    pipe itself once the terminal is set up. Whatever fails, even a KeyboardInterrupt, is
    printed on the terminal, where the start's wait for the first prompt reads it, and the
    child exits: it must never return into its copy of the harness."""
    # ptyprocess leaves the child no descriptor above 2 but its pipe, up to this bound:
    max_fd = min(1 << 20, resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    def child_setup() -> None:
        try:
            termios.tcsetattr(0, termios.TCSANOW, wanted_modes(termios.tcgetattr(0)))
            for sig in _IGNORED_BY_PYTHON:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, ())
            os.closerange(3, max_fd)  # the pipe; stdio is all bash inherits anyway
            if preexec is not None:
                preexec()
            os.execve(argv[0], argv, env)
        except BaseException as exc:
            with contextlib.suppress(BaseException):
                why = f"cannot start {argv[0]} in {cwd}: {type(exc).__name__}: {exc}"
                os.write(2, why.encode(errors="replace") + b"\n")  # the terminal makes it CRLF
        finally:
            os._exit(127)

    return child_setup


def _spawn_without_fork(argv: list[str], env: Mapping[str, str]) -> PtyProcess:
    """Start `argv` on a new pty, as its session leader with the pty as its controlling
    terminal, in the harness's cwd (the shell `cd`s itself), with posix_spawn.

    ptyprocess (under pexpect.spawn) forks, and a fork copies the harness's page tables,
    which the child then tears down again at exec: 24 ms of CPU per shell at 160 MB measured
    here (SDK and pandas loaded), against 1.5 ms for posix_spawn, which glibc runs as
    vfork + exec. Nothing of the harness runs in the child, so this is for shells that need
    no setup there (`_exec_in_child` is the other way). An exec that fails raises OSError here.
    The pty is set up as ptyprocess sets it (24x80), with sim's modes. Descriptors the harness
    was handed without close-on-exec reach bash, which closes them first (shell._INIT).
    Unlike a fork, glibc leaves its two internal signals (32 and 33, below SIGRTMIN) ignored
    in the child, and ignored signals survive exec. Programs linked with glibc install their
    own handlers for them; only `kill -32`/`-33` of another program behaves differently."""
    master, slave = os.openpty()  # both close-on-exec: the child gets the slave as 0, 1, 2
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        termios.tcsetattr(slave, termios.TCSANOW, wanted_modes(termios.tcgetattr(slave)))
        pid = os.posix_spawn(
            argv[0],
            argv,
            env,
            # After setsid, opening the terminal makes it the controlling one (as login_tty).
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.ttyname(slave), os.O_RDWR, 0),
                (os.POSIX_SPAWN_DUP2, 0, 1),
                (os.POSIX_SPAWN_DUP2, 0, 2),
            ],
            setsid=True,
            setsigmask=(),
            setsigdef=_IGNORED_BY_PYTHON,
        )
    except BaseException:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return PtyProcess(pid, master)


class Capture:
    """Output capped while reading: the first half kept, the last half in a trimmed buffer.
    `win` holds bytes not yet committed: maybe the start of a marker split across reads."""

    __slots__ = ("head", "head_cap", "tail", "tail_cap", "total", "win")

    def __init__(self, cap: int) -> None:
        self.head_cap, self.tail_cap = cap // 2, cap - cap // 2
        self.head, self.tail, self.win, self.total = bytearray(), bytearray(), b"", 0

    def add(self, data: bytes | bytearray) -> None:
        self.total += len(data)
        room = self.head_cap - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > 2 * self.tail_cap:  # trim in batches: memory stays flat
                del self.tail[: len(self.tail) - self.tail_cap]

    def text(self) -> tuple[str, bool]:
        if not self.total:
            return "", False
        del self.tail[: max(0, len(self.tail) - self.tail_cap)]
        dropped = self.total - len(self.head) - len(self.tail)
        if not dropped:
            return (self.head + self.tail).decode("utf-8", "replace"), False
        head, tail = self.head.decode("utf-8", "replace"), self.tail.decode("utf-8", "replace")
        return f"{head}\n[... {dropped} bytes dropped ...]\n{tail}", True


class _ITimerSpec(ctypes.Structure):
    _fields_ = [(f"{a}_{b}", ctypes.c_long) for a in ("interval", "value") for b in ("s", "ns")]


class Timer:
    """A timerfd, armed per wait. With the pty and a pidfd of bash in one epoll set that trio
    waits on, a command needs no cancel scope (about 20 µs of CPU each here, a third of a
    round trip) and bash's death wakes the reader even when a background job keeps the pty
    open (`sleep 99 & exit` gives no EIO). ctypes: os.timerfd_* only arrive in Python 3.13."""

    _libc = ctypes.CDLL(None, use_errno=True)

    def __init__(self) -> None:
        flags = os.O_NONBLOCK | os.O_CLOEXEC  # TFD_NONBLOCK and TFD_CLOEXEC have these values
        self.fd = self._libc.timerfd_create(ctypes.c_int(1), ctypes.c_int(flags))  # MONOTONIC
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self._spec = _ITimerSpec()
        self._ref = ctypes.byref(self._spec)
        self._at = -math.inf  # when it fires (trio time); -inf: fired or never armed

    def arm_by(self, deadline: float, now: float, force: bool = False) -> None:
        """Make sure it fires at `deadline` or before. A timer still set for an earlier moment
        is left alone: it will wake the reader early, which then re-arms (force=True). Saves
        a ctypes call (~3.5 µs) on most commands, when timeouts are alike."""
        if not force and now < self._at <= deadline:
            return
        seconds = min(max(deadline - now, 1e-6), 1e9)  # 0 would disarm
        self._spec.value_s = int(seconds)
        self._spec.value_ns = int((seconds - int(seconds)) * 1e9)
        self._libc.timerfd_settime(self.fd, 0, self._ref, None)  # also clears a past expiry
        self._at = now + seconds


def wanted_modes(attrs: list[Any]) -> list[Any]:
    """No echo, no output post-processing (no \\r\\n, binary intact), ISIG kept for ^C."""
    new = list(attrs)
    new[1] = attrs[1] & ~termios.OPOST
    new[3] = (attrs[3] & ~(termios.ECHO | termios.ECHONL)) | termios.ISIG
    return new


def foreground(fd: int) -> int:
    """The terminal's foreground process group (bash's pid when bash itself is); -1 if the
    terminal is gone."""
    try:
        return os.tcgetpgrp(fd)
    except OSError:
        return -1


def stderr_lost(pid: int | None) -> bool:
    """Is bash's own stderr, where its prompts go, no longer its terminal (fd 255)?"""
    proc = f"/proc/{pid}/fd/"
    try:
        tty = os.stat(proc + "255").st_rdev
    except OSError:
        return False  # no handle to repair it with
    try:
        return os.stat(proc + "2").st_rdev != tty
    except OSError:
        return True  # `exec 2>&-`


def session_members(sid: int) -> set[int]:
    """Live (non-zombie) processes whose session id is `sid`, from /proc/*/stat. os.open and
    os.read, not open(): this runs over every process on the machine (~20 µs each here)."""
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{name}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = stat[stat.rfind(b")") + 2 :].split(maxsplit=4)  # comm may hold ") "
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == sid:
            found.add(int(name))
    return found


def _state(pidfd: int) -> str:
    """ "running", "ended" (a zombie, not reaped: it keeps its pid, which for bash is its
    session's id too, from being reused; pid_max may be 32768) or "reaped"."""
    try:
        ended = os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "reaped"
    return "running" if ended is None else "ended"


def exited(pidfd: int) -> bool:
    """Has the process behind `pidfd` ended? It is not reaped (see `_state`)."""
    return _state(pidfd) != "running"


async def kill_session(proc: Any, pidfd: int) -> None:
    """SIGKILL a pty child (bash, a session leader) and every live process of its session,
    and reap it; shielded, 5 s at most (a process in D state cannot be helped). `pidfd` is
    the child's pidfd: the caller closes it (after `trio.lowlevel.notify_closing`).

    Bash goes first, so it starts nothing more, and its death, not a fixed nap, ends the wait.
    It is reaped last: until then its pid, the session's id that the scan looks for, cannot
    be taken by a new session. With nothing else left in the session, that is one scan.
    Should something else have reaped bash, the scan is skipped: that id may be another's."""
    with trio.CancelScope(shield=True):
        with contextlib.suppress(OSError):  # (a pidfd never signals a reused pid)
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        with trio.move_on_after(1.0):  # bash in D state: its jobs are killed all the same
            while not exited(pidfd):
                with trio.move_on_after(0.05):
                    await trio.lowlevel.wait_readable(pidfd)
        with trio.move_on_after(4.0):
            while _state(pidfd) != "reaped" and (victims := session_members(proc.pid)):
                for pid in victims:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                await trio.sleep(0.002)
    with contextlib.suppress(Exception):
        proc.isalive()  # reaps bash
