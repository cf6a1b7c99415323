"""One persistent bash on a pty, driven from trio without threads.

bash is started on a pty in its own session, with the pty as its controlling terminal
(sim._pty: posix_spawn, or pexpect's fork when a sandbox must set up the child), then its
master fd is read and written directly: `wait_readable` + non-blocking `os.read`, never
pexpect's `expect()` (threads, ~51 ms a command: notes/shell.md).

End of command: the prompt itself is the marker, `RS __SIM_<key><n>:<$?>:<$PWD> US`, where <key>
is random per shell and <n> counts prompts, so each command's nonce is fresh and known in
advance. The command line is sent as typed (no `cmd; echo marker` surgery, which breaks on
`cmd &`), so `$?`, `$_` and PIPESTATUS read as in a terminal. A marker with a foreign key is
ordinary output; one of ours with an old count is stale and dropped. A command that reads the
key can still fake an end on purpose; its remaining output then shows up as late output.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import signal
import termios
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from ptyprocess import PtyProcess

from sim._pty import Capture as _Capture
from sim._pty import Timer as _Timer
from sim._pty import exited as _exited
from sim._pty import foreground as _foreground
from sim._pty import kill_session as _kill_session
from sim._pty import spawn_on_pty as _spawn_on_pty
from sim._pty import stderr_lost as _stderr_lost
from sim._pty import wanted_modes as _wanted_modes
from sim.command_file import CommandFile
from sim.errors import ShellError

# $PWD may hold RS; a US in it cuts the cwd short. (${PWD//[\036\037]/?} in PS1 would cover
# both, but cost bash ~2.4 us a prompt, ~5% of a round trip.)
_MARK = re.compile(rb"\x1e__SIM_([0-9a-f]{12})(\d+):(\d+):([^\x1f]*)\x1f")
_MAX_MARK = 16384  # an unterminated RS older than this is output, not a marker in transit
_START_DEADLINE = 10.0
_ESCALATION = ((signal.SIGINT, 0.2), (signal.SIGTERM, 0.2), (signal.SIGKILL, 1.0))
_SETTLE = 0.05  # after a ^C: time for the extra prompt of a command that had just ended
_INCOMPLETE = (
    "[incomplete command: bash was waiting for more input (unclosed quote or bracket, "
    "heredoc without its end line, or trailing | && \\); it was cancelled and nothing ran]"
)
# Sent once per shell. The marker is PS1, not PROMPT_COMMAND: bash parses PROMPT_COMMAND anew
# at every prompt, which cost ~12 µs of a ~45 µs round trip here, while PS1 is only expanded.
# PS1 goes to stderr, so `exec >/dev/null` cannot lose it; `exec 2>/dev/null` can, and is
# repaired at the command's timeout (see _recover). PS2 is a marker too, so an incomplete
# command ends at once. `declare -r` keeps `source ~/.bashrc` from replacing them. First, bash
# goes to its cwd, or its first one if it cannot (deleted, or no longer searchable by its
# user), closes every descriptor but its terminal's, and writes its pid files (see _spawn and
# Shell). It goes from `/`, so a cwd that resolves through /proc/self/cwd leads to `/`, not to
# the harness's own directory. The descriptors are those the harness was handed without
# close-on-exec (Python makes its own with it): bash lists only those, where finding them in
# the harness took ~3 us for each of its own, 1.5 ms a start at 128 agents.
_INIT = (
    r"""builtin cd / && { builtin cd -P -- "$__sim_cwd" || builtin cd -P -- "$__sim_home"; } """
    r"""|| exit 1; for __sim_f in /proc/$$/fd/*; do __sim_f=${__sim_f##*/}; case $__sim_f in """
    r"""0|1|2|255) ;; *) exec {__sim_f}>&- ;; esac; done; for __sim_f in "${!__sim_pid_file@}"; """
    r"""do builtin echo $$ >"${!__sim_f}" || exit 1; done; unset ${!__sim_pid_file@} __sim_f; """
    r"""unset __sim_cwd __sim_home OLDPWD; """
    r"""__sim_k=@KEY@; __sim_c=0; """
    r"""PS1='\036__SIM_${__sim_k}$((++__sim_c)):$?:${PWD}\037'; """
    r"""PS2='\036__SIM2_${__sim_k}\037'; declare -r PS1 PS2 __sim_k; unset PROMPT_COMMAND PS0; """
    r"""__sim_ret() { return $1; }; declare -fr __sim_ret; set +H +o history; """
    r"""unset HISTFILE MAILCHECK; unset TMOUT 2>/dev/null"""
    "\n"
)
# Run at a timeout when bash's own stderr no longer is the terminal (so prompts are lost): fd
# 255 is bash's close-on-exec handle on its terminal, opened from /dev/tty at start.
_REPAIR = b"__sim_s=$?; exec 2>&255; __sim_ret $__sim_s\n"
_REDIRECTED = (
    "[bash's own stderr had been redirected (exec 2>...), which hides the shell prompt that "
    "ends each command; it was pointed back at the terminal]"
)


@dataclass(frozen=True, slots=True)
class CommandResult:
    output: str  # stdout+stderr as the pty saw it; head + "[... N bytes dropped ...]" + tail
    exit_code: int | None  # None when timed out or the shell died
    duration: float  # seconds, trio clock
    timed_out: bool
    truncated: bool
    output_bytes: int  # total bytes the command produced, before truncation
    restarted: bool  # the shell died (or would not stop) during this command and was restarted
    late_output: str = ""  # stale bytes drained before the command was sent


_Event = tuple[str, int, bytes]  # ("done", $?, $PWD) | ("ps2", 2, b"") | ("dead", -1, b"")
_DEAD: _Event = ("dead", -1, b"")


class Shell:
    """A persistent interactive bash in `cwd` with exactly `env` (see sim.environment).

    `cwd`, exported variables and functions persist between commands. Use `async with`.
    Where bash cannot go to `cwd` at a start or restart, it goes to `home` (default: `cwd`).
    `pid` is the spawned process: bash, or `argv_prefix[0]` if that one forks instead of exec.
    Deadlines run on the real clock (a timerfd), as real processes do: not for MockClock.

    The sandbox's two seams: `preexec_fn` runs in the child before exec (a user switch, a
    network namespace), and makes the start a fork of the harness; without it bash starts by
    posix_spawn, ~10x cheaper. `on_spawn(pid)` runs in the harness once bash is spawned and
    before it reads a command (rlimits set with prlimit); an OSError it raises fails the start.
    Not both: a forked child may not have exec'd yet when the start goes on. `pid_files`: bash
    writes its pid to each before its first command, and fails to start if it cannot. For
    cgroup.procs: the first join of a burst waits ~10 ms for an RCU grace period, and bash
    waits there instead of the harness.
    """

    def __init__(
        self,
        cwd: Path,
        env: Mapping[str, str],
        *,
        home: Path | None = None,
        max_output_bytes: int = 1_000_000,
        preexec_fn: Callable[[], None] | None = None,
        on_spawn: Callable[[int], None] | None = None,
        pid_files: Sequence[str] = (),
        argv_prefix: Sequence[str] = (),
        command_file_gid: int | None = None,
    ) -> None:
        if preexec_fn is not None and on_spawn is not None:
            raise ValueError("preexec_fn or on_spawn, not both: see the docstring")
        self.cwd = Path(cwd)
        self._home = Path(home) if home is not None else self.cwd  # if bash cannot go to cwd
        self._pwd = b""  # $PWD of the last marker, as bytes
        self._env = dict(env)
        self.max_output_bytes = max_output_bytes
        self._preexec_fn = preexec_fn
        self._on_spawn = on_spawn
        self._pid_files = {f"__sim_pid_file{i}": path for i, path in enumerate(pid_files)}
        self._argv = [*argv_prefix, "bash", "--noediting", "--norc", "--noprofile", "-i"]
        self._proc: PtyProcess | None = None
        self._fd = -1  # the pty master
        self._pidfd = -1
        self._ep: select.epoll | None = None  # pty, pidfd and timer: what a reader waits on
        self._timer: _Timer | None = None
        self._modes: list[Any] = []
        self._key = secrets.token_hex(6).encode()  # 12 hex digits, as _MARK expects
        self._ps2 = b"\x1e__SIM2_%s\x1f" % self._key
        self._seen = 0  # the highest prompt count seen: markers up to it are stale
        self._pending = bytearray()  # bytes read after the last marker: late output
        self._busy = False
        # When bash runs as another user (preexec_fn switches), the directory of the file long
        # commands go through is given to this group, read-only: bash reads, cannot swap.
        self._command_file = CommandFile(command_file_gid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and not _exited(self._pidfd)

    async def __aenter__(self) -> Shell:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn bash in `cwd` and wait (10 s at most) for its first marker; no-op if started.
        Raises ShellError naming the cwd and what bash printed when it cannot start. If
        cancelled, the half-started bash is killed and Cancelled propagates."""
        if self._proc is None:
            await self._spawn(self.cwd)

    async def restart(self) -> None:
        """Kill the whole tree and start a fresh bash in the last known cwd, or `home` if
        bash cannot go there (shielded). Raises ShellError if bash cannot start."""
        with trio.CancelScope(shield=True):
            await self._kill_tree()
            await self._spawn(self.cwd)

    async def close(self) -> None:
        """Kill bash and every process of its session, reap bash, close the pty. Idempotent;
        shielded, so it completes even when the caller is cancelled."""
        await self._kill_tree()
        if self._timer is not None:
            os.close(self._timer.fd)
            self._timer = None
        self._command_file.remove()

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run one command for at most `timeout` seconds.

        On timeout: SIGINT, then SIGTERM, then SIGKILL to the terminal's foreground process
        group (^C when bash itself is in the foreground: `read x`, a builtin loop), and
        timed_out=True; the shell keeps its cwd and variables. If nothing stops it, or bash
        dies (`exit`, `kill -9 $$`), bash is restarted in the last cwd and restarted=True.
        On cancellation by the caller the command is interrupted the same way (shielded), then
        Cancelled propagates. Raises ShellError if the shell is not started, is busy with
        another command, or cannot be restarted.
        """
        if self._proc is None or self._ep is None:
            raise ShellError(f"shell in {self.cwd} is not started: use `async with Shell(...)`")
        if self._busy:
            raise ShellError(f"shell {self.pid} is already running a command; run() one at a time")
        if not timeout > 0:
            raise ValueError(f"Shell.run: timeout must be > 0 seconds (got {timeout!r})")
        self._busy = True
        try:
            # Stale bytes only if the pty is readable: epoll.poll(0) is 5x cheaper than a read
            # that fails with EAGAIN, and this is the hot path.
            late = died = ""
            if self._pending or self._ep.poll(0):  # (a dead bash's pidfd is readable too)
                late = self._drain()
                died = await self._revive()
            fd = self._fd
            # Programs leave stty changes behind (notes): one ioctl to check, one more to fix.
            if termios.tcgetattr(fd) != self._modes:
                termios.tcsetattr(fd, termios.TCSANOW, self._modes)
            start = trio.current_time()
            cap = _Capture(self.max_output_bytes)
            await self._write(self._command_file.line(command))
            code: int | None
            try:
                ev = await self._wait_end(cap, start + timeout, ps2=True)
                if ev is not None and ev[0] == "done":
                    code, timed_out, restarted, note = ev[1], False, False, ""
                else:
                    ev, code, timed_out, restarted, note = await self._recover(cap, ev)
            except BaseException:  # Cancelled, KeyboardInterrupt: leave no command running
                with trio.CancelScope(shield=True):
                    if await self._interrupt(cap) in (None, _DEAD):
                        with contextlib.suppress(ShellError):  # it stays closed; run() says so
                            await self.restart()
                raise
            if ev is not None and ev[0] == "done" and ev[2] != self._pwd:
                self._pwd, self.cwd = ev[2], Path(os.fsdecode(ev[2]))
            output, truncated = cap.text()
            output = died + output
            if note:
                output += ("\n" if output and not output.endswith("\n") else "") + note
            return CommandResult(
                output=output,
                exit_code=code,
                duration=trio.current_time() - start,
                timed_out=timed_out,
                truncated=truncated,
                output_bytes=cap.total,
                restarted=restarted or bool(died),
                late_output=late,
            )
        finally:
            self._busy = False

    async def _recover(
        self, cap: _Capture, ev: _Event | None
    ) -> tuple[_Event | None, int | None, bool, bool, str]:
        """The slow paths of run(): timeout, incomplete command, dead shell. Returns the final
        event, exit code, timed_out, restarted and a note for the output."""
        timed_out, restarted, code, note = False, False, None, ""
        if ev is None:  # a marker may have come with the deadline: look before signalling
            ev = await self._wait_end(cap, trio.current_time(), ps2=False)
        if ev is None:
            timed_out = True
            if _stderr_lost(self.pid) and _foreground(self._fd) == self.pid:
                # `exec 2>/dev/null` sent the prompts away: bash may well be idle. ^C stops a
                # `read` or builtin loop, if any; then a line sets stderr back.
                await self._write(b"\x03")
                await trio.sleep(_SETTLE)
            else:
                ev = await self._interrupt(cap)
            if ev is None and _stderr_lost(self.pid):
                await self._write(_REPAIR)
                ev = await self._wait_end(cap, trio.current_time() + 1.0, ps2=False)
                note = _REDIRECTED if ev is not None and ev[0] == "done" else ""
        if ev is None or ev[0] == "dead":
            restarted = True
            if ev is None:
                note += "[the command did not stop after SIGINT, SIGTERM and SIGKILL; shell killed"
            else:
                code, how = await self._reap()
                note = f"[{how}"
            await self.restart()
            note += f"; restarted in {self.cwd}]"
        elif ev[0] == "ps2":
            await self._write(b"\x03")  # ^C makes bash drop the partial command, then a prompt
            ev = await self._wait_end(cap, trio.current_time() + 2.0, ps2=False)
            if ev is None or ev[0] == "dead":
                await self.restart()
                restarted = True
            code, note = 2, _INCOMPLETE
            cap.head, cap.tail, cap.total = bytearray(), bytearray(), 0  # nothing ran
        elif not timed_out:
            code = ev[1]
        return ev, code, timed_out, restarted, note

    async def _revive(self) -> str:
        """Restart a bash that ended since its last prompt (`exec 0</dev/null`, a kill from
        elsewhere); say so for the next command's output, or "" if it is alive."""
        if not _exited(self._pidfd):
            return ""
        _, how = await self._reap()
        await self.restart()
        return f"[{how} after the last command; restarted in {self.cwd}]\n"

    async def _reap(self) -> tuple[int | None, str]:
        """Close the tree of a bash that exited: its exit status, and "shell exited (...)"."""
        proc = self._proc
        await self._kill_tree()  # reaps bash: its exit status is known after this
        code, sig = (proc.exitstatus, proc.signalstatus) if proc else (None, None)
        return code, f"shell exited ({f'status {code}' if sig is None else f'signal {sig}'})"

    async def _write(self, data: bytes) -> None:
        """Write all of `data` to the pty (no checkpoint when it fits, the usual case)."""
        while data:
            try:
                data = data[os.write(self._fd, data) :]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._fd)
            except OSError:  # EIO: bash died since the last command; the reader will see it
                return

    def _drain(self) -> str:
        """Stale bytes (job notices, output after a faked marker), read without waiting."""
        data, cap = self._pending, self.max_output_bytes
        self._pending = bytearray()
        while len(data) < 2 * cap:  # bounded: a background `yes` never runs dry
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:  # EAGAIN, or EIO from a dead shell: the next read says so
                break
            if not chunk:
                break
            data += chunk
        if not data:
            return ""
        late = _Capture(cap)
        late.add(_MARK.sub(self._stale, data))
        return late.text()[0]

    def _stale(self, m: re.Match[bytes]) -> bytes:
        """re.sub callback: drop our own stale markers (e.g. the prompt after a ^C that came
        as a command ended) and note their count; keep imitations with a foreign key."""
        if m[1] != self._key:
            return m[0]
        self._seen = max(self._seen, int(m[2]))
        return b""

    def _feed(self, cap: _Capture, data: bytes, ps2: bool) -> _Event | None:
        """Take read bytes: output to `cap`, and the event if they end the command."""
        if cap.win:
            data, cap.win = cap.win + data, b""
        pos = 0
        while (m := _MARK.search(data, pos)) is not None:
            if m[1] == self._key and (n := int(m[2])) > self._seen:
                self._seen = n
                if m.start():
                    cap.add(self._unmark(data[: m.start()]))
                if m.end() < len(data):
                    self._pending += data[m.end() :]
                return ("done", int(m[3]), m[4])
            pos = m.end()
        if ps2 and data.endswith(self._ps2):
            return ("ps2", 2, b"")
        keep = data.rfind(b"\x1e")  # a marker may be split across reads: hold it back
        if keep < 0 or data.find(b"\x1f", keep) >= 0 or len(data) - keep > _MAX_MARK:
            keep = len(data)
        cap.add(self._unmark(data[:keep]))
        cap.win = data[keep:]
        return None

    def _unmark(self, data: bytes) -> bytes:
        return _MARK.sub(self._stale, data) if b"\x1e" in data else data

    async def _wait_end(self, cap: _Capture, deadline: float, ps2: bool) -> _Event | None:
        """Read until a fresh marker, PS2 or bash's death; None at `deadline` (trio time).
        wait_readable parks the task on every read (a schedule point), so a chatty shell
        cannot starve the others (notes). Cancellable by the caller's scope."""
        assert self._ep is not None and self._timer is not None and self._proc is not None
        fd, ep, pidfd, timer = self._fd, self._ep.fileno(), self._pidfd, self._timer
        timer.arm_by(deadline, trio.current_time())
        while True:
            await trio.lowlevel.wait_readable(ep)
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:  # the timer, or bash's pidfd
                now = trio.current_time()
                if now >= deadline:
                    return None
                if _exited(pidfd):
                    return _DEAD
                timer.arm_by(deadline, now, force=True)  # fired early: clear it, wait on
                continue
            except OSError:  # EIO: every slave fd is closed, bash is gone
                return _DEAD
            if not data:
                return _DEAD
            if (ev := self._feed(cap, data, ps2)) is not None:
                return ev
            if trio.current_time() >= deadline:  # a flood (`yes`) never lets read() fail
                return None

    async def _interrupt(self, cap: _Capture) -> _Event | None:
        """SIGINT, SIGTERM, SIGKILL the foreground process group (^C if it is bash itself),
        waiting for the marker after each: nested shells and REPLs ignore SIGINT (notes).
        Shielded, ~1.5 s at most. None if no marker came (`trap '' INT` in bash itself)."""
        with trio.CancelScope(shield=True):
            if self._proc is None:
                return None
            sent_ctrl_c = False
            for sig, grace in _ESCALATION:
                fg = _foreground(self._fd)
                if fg in (self._proc.pid, -1):
                    await self._write(b"\x03")
                    sent_ctrl_c = True
                else:
                    with contextlib.suppress(OSError):  # the group may have just ended
                        os.killpg(fg, sig)
                ev = await self._wait_end(cap, trio.current_time() + grace, ps2=False)
                if ev is not None:
                    if sent_ctrl_c and ev[0] == "done":
                        # The command may have ended just before the ^C, which then makes a
                        # second prompt: let it arrive now, so the next drain marks it stale.
                        await trio.sleep(_SETTLE)
                    return ev
        return None

    async def _spawn(self, cwd: Path) -> None:
        # bash starts where the harness is and goes to `cwd` itself (posix_spawn has no
        # chdir). Paths are passed in its environment, which holds any bytes (the pty would act
        # on the control characters in one), and _INIT unsets them.
        env = {
            **self._env,
            **self._pid_files,
            "__sim_cwd": os.path.abspath(cwd),
            "__sim_home": os.path.abspath(self._home),
        }
        try:
            proc = _spawn_on_pty(self._argv, env, cwd, self._preexec_fn)
        except Exception as e:  # no such program, or no fork (the child's own errors it prints)
            raise ShellError(f"cannot start {' '.join(self._argv)} in {cwd}: {e}") from e
        try:  # before anything else: closing the shell needs it (see _pty.kill_session)
            self._pidfd = os.pidfd_open(proc.pid)
        except OSError as e:  # out of descriptors, say
            proc.close(force=True)
            raise ShellError(f"cannot watch the bash it started: pidfd_open: {e}") from e
        self._proc, self._fd, self._pending, self._seen = proc, proc.fd, bytearray(), 0
        os.set_blocking(self._fd, False)
        if self._timer is None:
            self._timer = _Timer()
        self._ep = select.epoll()
        for fd in (self._fd, self._pidfd, self._timer.fd):
            self._ep.register(fd, select.EPOLLIN)
        cap = _Capture(65536)
        ev: _Event | None = None
        try:
            if self._on_spawn is not None:
                try:
                    self._on_spawn(proc.pid)
                except OSError as e:
                    raise ShellError(f"cannot confine the bash it started in {cwd}: {e}") from e
            # bash reads nothing before this line, so what on_spawn set binds all it runs.
            await self._write(_INIT.replace("@KEY@", self._key.decode()).encode())
            ev = await self._wait_end(cap, trio.current_time() + _START_DEADLINE, ps2=False)
        finally:
            if ev is None or ev[0] != "done":
                await self._kill_tree()
        if ev is None or ev[0] != "done":
            said = cap.text()[0][-500:].strip()
            why = "it exited" if ev else f"no prompt within {_START_DEADLINE} s"
            raise ShellError(f"bash did not start in {cwd} ({self._argv}): {why}; said {said!r}")
        self._pwd, self.cwd = ev[2], Path(os.fsdecode(ev[2]))
        self._modes = _wanted_modes(termios.tcgetattr(self._fd))
        termios.tcsetattr(self._fd, termios.TCSANOW, self._modes)

    async def _kill_tree(self) -> None:
        """SIGKILL bash and its whole session (background and nohup'd jobs keep the session),
        reap bash, close the pty. Shielded. `setsid` escapes need `isolation: users`."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        await _kill_session(proc, self._pidfd)
        if self._ep is not None:
            trio.lowlevel.notify_closing(self._ep.fileno())
            self._ep.close()
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._ep, self._pidfd = None, -1
        trio.lowlevel.notify_closing(self._fd)
        self._fd = -1
        with contextlib.suppress(Exception):  # bash is reaped: this only closes the pty
            proc.close(force=True)
