"""sim.shell against real bash processes: each hostile case from notes/shell.md, one test each.

pytest-trio is not installed: every test is a sync function that runs its body with trio.run.
Timeouts are short (0.3 s); the whole file runs in a few seconds.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import time
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sim._pty import exited, kill_session
from sim.environment import scrubbed_env
from sim.errors import ShellError
from sim.shell import CommandResult, Shell, _Capture

T = 0.3  # the timeout of commands that are meant to hang


def run(body: Callable[[Shell], Awaitable[None]], cwd: Path, **kw: Any) -> None:
    """Run `body(shell)` under trio with a started shell in `cwd`."""

    async def main() -> None:
        async with Shell(cwd, scrubbed_env(os.environ, cwd), **kw) as sh:
            await body(sh)

    trio.run(main)


def start_fails(cwd: Path, match: str, **kw: Any) -> None:
    """Starting a shell in `cwd` raises a ShellError whose message matches `match`."""

    async def main() -> None:
        with pytest.raises(ShellError, match=match):
            async with Shell(cwd, {"PATH": os.defpath}, **kw):
                pass

    trio.run(main)


def forking(forked: bool) -> dict[str, Any]:
    """Shell arguments that start bash by a fork (a preexec_fn that does nothing), or not."""
    return {"preexec_fn": lambda: None} if forked else {}


def ok(r: CommandResult) -> str:
    assert r.exit_code == 0 and not r.timed_out and not r.restarted, r
    return r.output


def gone(pid: int, within: float = 2.0) -> bool:
    """The process has exited (or is a zombie waiting for init to reap it)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rpartition(")")[2].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.01)
    return False


def test_echo_gives_output_exit_code_and_duration(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        r = await sh.run("echo hello; echo oops >&2", 5)
        assert r.output == "hello\noops\n" and r.exit_code == 0
        assert 0 < r.duration < 1 and r.output_bytes == 11 and not r.truncated
        assert (await sh.run("exit_code() { return 7; }; exit_code", 5)).exit_code == 7
        assert (await sh.run("false | true; echo ${PIPESTATUS[@]} $?", 5)).output == "1 0 0\n"
        assert (await sh.run("false", 5)).exit_code == 1
        assert ok(await sh.run("echo $?", 5)) == "1\n"  # $? is the previous command's
        assert sh.alive and sh.pid is not None

    run(body, tmp_path)


def test_cwd_exported_variables_and_functions_persist(tmp_path: Path) -> None:
    (tmp_path / "sub dir").mkdir()

    async def body(sh: Shell) -> None:
        ok(await sh.run("cd 'sub dir'; export FOO=bar; greet() { echo hi $1; }", 5))
        assert sh.cwd == tmp_path / "sub dir"
        assert ok(await sh.run('pwd; echo $FOO; greet you; sh -c "echo $FOO"', 5)) == (
            f"{tmp_path}/sub dir\nbar\nhi you\nbar\n"
        )

    run(body, tmp_path)


def test_hanging_command_times_out_and_shell_keeps_cwd_and_variables(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run("cd /tmp; X=42", 5))
        r = await sh.run("echo started; sleep 30", T)
        assert r.timed_out and r.exit_code is None and not r.restarted
        assert r.output.startswith("started\n") and T <= r.duration < T + 1
        assert ok(await sh.run("echo $X; pwd", 5)) == "42\n/tmp\n"
        r = await sh.run("while :; do :; done", T)  # a builtin loop: bash itself is foreground
        assert r.timed_out and ok(await sh.run("echo $X", 5)) == "42\n"

    run(body, tmp_path)


def test_program_ignoring_sigint_is_terminated(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        r = await sh.run("X=1; bash -c 'trap \"\" INT; sleep 30'", T)
        assert r.timed_out and not r.restarted and r.duration < T + 1
        assert ok(await sh.run("echo $X", 5)) == "1\n"

    run(body, tmp_path)


def test_commands_reading_stdin_end_at_timeout(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        for command in ("cat", "read x", "head -1"):
            r = await sh.run(command, T)
            assert r.timed_out and not r.restarted, (command, r)
            assert ok(await sh.run("echo next", 5)) == "next\n"

    run(body, tmp_path)


def test_yes_flood_is_capped_keeping_head_and_tail(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        r = await sh.run("seq 1 200000; yes | head -c 3000000; echo THE-END", 20)
        assert r.exit_code == 0 and r.truncated
        assert r.output.startswith("1\n2\n3\n") and r.output.endswith("y\nTHE-END\n")
        m = re.search(r"\n\[\.\.\. (\d+) bytes dropped \.\.\.\]\n", r.output)
        assert m and r.output_bytes == 1288895 + 3000000 + 8
        assert int(m[1]) == r.output_bytes - 10_000
        assert len(r.output) < 10_000 + 100
        r = await sh.run("yes", T)  # endless: capped while reading, then interrupted
        assert r.timed_out and r.truncated and r.output_bytes > 10_000 and len(r.output) < 10_100

    run(body, tmp_path, max_output_bytes=10_000)


def test_capture_memory_stays_flat() -> None:
    cap = _Capture(1000)
    for _ in range(10_000):
        cap.add(b"x" * 4096)
        assert len(cap.head) + len(cap.tail) <= 1000 + 500 + 4096
    text, truncated = cap.text()
    assert truncated and cap.total == 40_960_000 and len(text) < 1100


def test_exit_and_kill_restart_the_shell_in_the_same_cwd(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run(f"cd {tmp_path}/d", 5))
        for command, code in (("exit 3", 3), ("kill -9 $$", None), ("set -e; false", 1)):
            old = sh.pid
            r = await sh.run(command, 5)
            assert r.restarted and r.exit_code == code and not r.timed_out, (command, r)
            assert "shell exited" in r.output and f"restarted in {tmp_path}/d" in r.output
            assert sh.pid != old and sh.alive and gone(old or 0)
            assert ok(await sh.run("pwd", 5)) == f"{tmp_path}/d\n"

    (tmp_path / "d").mkdir()
    run(body, tmp_path)


def test_shell_killed_between_commands_is_restarted_at_the_next(tmp_path: Path) -> None:
    (tmp_path / "doomed").mkdir()

    async def body(sh: Shell) -> None:
        ok(await sh.run("cd doomed; rmdir ../doomed", 5))
        os.kill(sh.pid or 0, 9)
        await trio.sleep(0.1)
        r = await sh.run("echo hi", 5)
        assert r.restarted and r.exit_code == 0  # the command ran, in the new shell
        assert (
            r.output
            == f"[shell exited (signal 9) after the last command; restarted in {tmp_path}]\nhi\n"
        )  # its cwd is gone
        assert ok(await sh.run("echo hi; pwd", 5)) == f"hi\n{tmp_path}\n"

    run(body, tmp_path)


def test_a_shell_that_ends_itself_between_commands_is_not_blamed_on_the_next(
    tmp_path: Path,
) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run("X=1; exec 0</dev/null", 5))  # bash exits at the end of that input
        await trio.sleep(0.2)
        r = await sh.run("echo $X; echo ran", 5)
        assert r.restarted and r.exit_code == 0, r
        assert (
            r.output
            == f"[shell exited (status 0) after the last command; restarted in {tmp_path}]\n\nran\n"
        )
        assert ok(await sh.run("echo again", 5)) == "again\n"

    run(body, tmp_path)


@pytest.mark.parametrize(
    "setup",
    [
        # bash itself resolves /proc/self: it must not land in the harness's own directory
        "cd /proc/self/cwd",
        # deeper than PATH_MAX: cd fails with ENAMETOOLONG (and so would a check by path)
        "for i in $(seq 300); do mkdir -p dddddddddddddddd && cd dddddddddddddddd; done",
    ],
    ids=["proc-self-cwd", "too-long"],
)
def test_a_restart_never_lands_where_the_agent_could_not_go_itself(
    tmp_path: Path, setup: str
) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run(setup, 10))
        r = await sh.run("kill -9 $$", 5)
        assert r.restarted, r
        where = ok(await sh.run("pwd", 5)).strip()
        assert where != os.getcwd() and where in ("/", str(tmp_path))

    run(body, tmp_path)


def test_bash_goes_home_when_it_cannot_go_to_its_cwd(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")

    async def main() -> None:
        async with Shell(not_a_dir, {"PATH": os.defpath}, home=tmp_path) as sh:
            assert sh.cwd == tmp_path
            assert ok(await sh.run("pwd", 5)) == f"{tmp_path}\n"

    trio.run(main)


def test_exit_with_a_background_job_holding_the_pty_is_noticed(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        r = await sh.run("sleep 30 & exit", 10)  # no EIO: sleep keeps the pty open
        assert r.restarted and r.duration < 1, r
        assert ok(await sh.run("echo back", 5)) == "back\n"

    run(body, tmp_path)


def test_sentinel_imitations_do_not_end_the_command(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        fake = r"printf '\036__SIM_0123456789ab7:0:/x\037'"  # right shape, foreign key
        r = await sh.run(f"{fake}; sleep 0.1; echo after", 5)
        assert ok(r) == "\x1e__SIM_0123456789ab7:0:/x\x1fafter\n"
        stale = r"printf '\036__SIM_%s1:0:/x\037' $__sim_k"  # our key, an old count
        assert ok(await sh.run(f"{stale}; echo after", 5)) == "after\n"
        half = r"printf '\036__SIM_'; sleep 0.1; echo ' tail'"  # split like a marker in transit
        assert ok(await sh.run(half, 5)) == "\x1e__SIM_ tail\n"
        assert ok(await sh.run("echo 'bash-5.2$ '; echo '$ '", 5)) == "bash-5.2$ \n$ \n"
        # A deliberate fake (key and next count read from the shell) ends the command early;
        # what the command prints afterwards is late output of the next one.
        deliberate = r"printf '\036__SIM_%s%d:0:%s\037' $__sim_k $((__sim_c + 1)) $PWD"
        r = await sh.run(f"{deliberate}; sleep 0.1; echo rest", 5)
        assert ok(r) == "" and r.duration < 0.1
        await trio.sleep(0.3)
        r = await sh.run("echo next", 5)
        assert r.late_output == "rest\n" and ok(r) == "next\n"
        assert ok(await sh.run("echo $PS1 | wc -l", 5)) == "1\n"

    run(body, tmp_path)


def test_close_kills_background_and_nohup_jobs(tmp_path: Path) -> None:
    pids: list[int] = []

    async def body(sh: Shell) -> None:
        # the third is an orphan: its subshell ended, so bash is not its parent any more
        r = await sh.run(
            "sleep 999 & echo $!; nohup sleep 999 >/dev/null 2>&1 & echo $!; (sleep 999 & echo $!)",
            5,
        )
        pids.extend(int(line) for line in ok(r).splitlines() if line.isdigit())
        assert len(pids) == 3 and not any(gone(p, 0.05) for p in pids)
        pids.append(sh.pid or 0)

    run(body, tmp_path)  # closes the shell on the way out
    assert all(gone(p) for p in pids), pids


def test_close_is_idempotent_and_run_after_close_raises(tmp_path: Path) -> None:
    async def main() -> None:
        sh = Shell(tmp_path, scrubbed_env(os.environ, tmp_path))
        with pytest.raises(ShellError, match="not started"):
            await sh.run("true", 1)
        await sh.start()
        await sh.close()
        await sh.close()
        assert not sh.alive and sh.pid is None
        with pytest.raises(ShellError, match="not started"):
            await sh.run("true", 1)

    trio.run(main)


def test_preexec_fn_and_argv_prefix_shape_the_child(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        assert ok(await sh.run("umask; echo $SIM_VIA", 5)) == "0077\nenv\n"

    # `env NAME=value --`: a prefix that execs bash in the same process, as `unshare -n --` does
    run(body, tmp_path, preexec_fn=lambda: os.umask(0o077), argv_prefix=["env", "SIM_VIA=env"])


def test_a_second_concurrent_run_is_refused(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sh.run, "sleep 0.2", 5)
            await trio.sleep(0.05)
            with pytest.raises(ShellError, match="already running"):
                await sh.run("true", 5)

    run(body, tmp_path)


def test_start_in_a_missing_directory_raises_shell_error(tmp_path: Path) -> None:
    start_fails(tmp_path / "nowhere", "nowhere")


def test_a_failing_preexec_fn_fails_the_start_with_its_reason(tmp_path: Path) -> None:
    def refuse() -> None:
        raise PermissionError("no such user, say")

    start_fails(tmp_path, r"said .*PermissionError: no such user, say", preexec_fn=refuse)


@pytest.mark.parametrize("forked", [False, True], ids=["posix_spawn", "fork"])
def test_a_program_that_cannot_exec_fails_the_start_with_its_reason(
    tmp_path: Path, forked: bool
) -> None:
    # Found on PATH and executable, so it fails at the exec itself. posix_spawn reports that
    # at once; a forked child has let the harness go on by then, so its reason comes back
    # through the terminal.
    wrapper = tmp_path / "wrapper"
    wrapper.write_text("#!/nonexistent/interpreter\n")
    wrapper.chmod(0o755)
    said = r"it exited; said .*cannot start .*wrapper" if forked else r"cannot start .*wrapper"
    start_fails(tmp_path, said, argv_prefix=[str(wrapper)], **forking(forked))


@pytest.mark.parametrize("forked", [False, True], ids=["posix_spawn", "fork"])
def test_bash_inherits_no_descriptor_of_the_harness(tmp_path: Path, forked: bool) -> None:
    async def body(sh: Shell) -> None:
        # 255 is bash's own handle on its terminal; every other one is stdio
        assert ok(await sh.run("ls /proc/$$/fd", 5)).split() == ["0", "1", "2", "255"]

    # One the harness was handed without close-on-exec, as a parent process may do.
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    try:
        run(body, tmp_path, **forking(forked))
    finally:
        os.close(read_end)
        os.close(write_end)


def test_on_spawn_acts_on_bash_before_its_first_command(tmp_path: Path) -> None:
    seen: list[int] = []

    def admit(pid: int) -> None:
        seen.append(pid)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (64, 64))

    async def body(sh: Shell) -> None:
        assert seen == [sh.pid]
        assert ok(await sh.run("ulimit -n; ulimit -Hn", 5)).split() == ["64", "64"]

    run(body, tmp_path, on_spawn=admit)


def test_a_failing_on_spawn_fails_the_start_and_leaves_no_bash(tmp_path: Path) -> None:
    pids: list[int] = []

    def refuse(pid: int) -> None:
        pids.append(pid)
        raise PermissionError("cgroup.procs is read-only, say")

    start_fails(tmp_path, r"cannot confine .*read-only, say", on_spawn=refuse)
    assert len(pids) == 1 and not Path(f"/proc/{pids[0]}").exists()


def test_bash_writes_its_pid_to_each_pid_file_before_its_first_command(tmp_path: Path) -> None:
    files = [tmp_path / "one", tmp_path / "two files"]

    async def body(sh: Shell) -> None:
        assert [f.read_text() for f in files] == [f"{sh.pid}\n"] * 2
        assert ok(await sh.run("echo $(compgen -v __sim_)", 5)) == "__sim_c __sim_k\n"

    run(body, tmp_path, pid_files=[str(f) for f in files])


def test_a_pid_file_bash_cannot_write_fails_the_start_with_its_reason(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere/cgroup.procs")
    start_fails(tmp_path, r"it exited; said .*nowhere/cgroup.procs", pid_files=[missing])


@pytest.mark.parametrize("forked", [False, True], ids=["posix_spawn", "fork"])
def test_bash_starts_in_a_directory_whose_name_the_terminal_would_act_on(
    tmp_path: Path, forked: bool
) -> None:
    # Sent as typed, \x03 would be ^C and \x15 would erase the line; a quote and $( ) would
    # be bash syntax. An agent can make such a directory and then kill its own bash.
    odd = tmp_path / "a'b\x03c\x15d $(touch pwned) \\e\nf"
    odd.mkdir()

    async def body(sh: Shell) -> None:
        assert sh.cwd == odd
        assert ok(await sh.run('printf %s "$PWD"', 5)) == str(odd)
        assert ok(await sh.run("echo ${__sim_cwd-unset} ${OLDPWD-unset}", 5)) == "unset unset\n"

    run(body, odd, **forking(forked))
    assert not (odd / "pwned").exists() and not Path("pwned").exists()


def test_exec_redirecting_stdout_does_not_hang_the_shell(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run("X=1; exec >/dev/null", 5))
        # What happens next: stdout of later commands is discarded, stderr still shows,
        # until the command itself points stdout back at the terminal.
        assert ok(await sh.run("echo lost; echo seen >&2", 5)) == "seen\n"
        assert ok(await sh.run("exec >/dev/tty; echo $X", 5)) == "1\n"

    run(body, tmp_path)


def test_exec_redirecting_stderr_is_repaired_at_the_timeout(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        r = await sh.run("X=1; exec 2>/dev/null", T)  # the prompt, on stderr, is lost
        assert r.timed_out and not r.restarted and "stderr" in r.output and r.duration < 1
        assert ok(await sh.run("echo $X; echo err >&2", 5)) == "1\nerr\n"

    run(body, tmp_path)


def test_a_directory_named_with_the_markers_own_bytes_does_not_break_the_shell(
    tmp_path: Path,
) -> None:
    async def body(sh: Shell) -> None:
        for name in ("r\x1es", "u\x1fv"):  # an RS is kept in the cwd, a US cuts it
            (tmp_path / name).mkdir()
            r = await sh.run(f"cd {tmp_path}/{name[0]}?{name[2]} && X=1 && echo in", 5)
            assert ok(r) == "in\n"  # not a timeout and a restart
            assert name[1] == "\x1f" or sh.cwd == tmp_path / name
            assert ok(await sh.run("echo $X; cd ..", 5)) == "1\n" and sh.cwd == tmp_path

    run(body, tmp_path)


def test_long_command_runs_intact(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        words = " ".join(f"w{i}" for i in range(2000))  # ~11,000 bytes, past the 4095 cut
        r = await sh.run(f"X=5; echo {words} | wc -w; cd /tmp", 5)
        assert ok(r) == "2000\n" and sh.cwd == Path("/tmp")
        assert ok(await sh.run("echo $X", 5)) == "5\n"

    run(body, tmp_path)


def test_multiline_command_with_heredoc(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        command = "cat > notes.txt <<'EOF'\nline $one\n\tindented\nEOF\nY=2\nwc -l < notes.txt\n"
        assert ok(await sh.run(command, 5)) == "2\n"
        assert (tmp_path / "notes.txt").read_text() == "line $one\n\tindented\n"
        assert ok(await sh.run("echo $Y", 5)) == "2\n"

    run(body, tmp_path)


def test_the_command_file_cannot_be_turned_against_the_harness(tmp_path: Path) -> None:
    # Multi-line commands go through a file whose path bash shows ($BASH_SOURCE). A symlink
    # put in its place is not written through, and a removed directory is made again.
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")

    async def body(sh: Shell) -> None:
        ok(await sh.run(f'echo x\nln -sf {victim} "$BASH_SOURCE"', 5))
        assert ok(await sh.run("echo y\necho z", 5)) == "y\nz\n"
        assert victim.read_text() == "untouched"
        ok(await sh.run('echo x\nrm -rf "$(dirname "$BASH_SOURCE")"', 5))
        assert ok(await sh.run("echo after\necho removal", 5)) == "after\nremoval\n"

    run(body, tmp_path)


def test_unclosed_quote_ends_with_a_clear_error(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run("X=1", 5))
        for command in ('echo "unclosed', "cat <<EOF", "echo a |"):
            r = await sh.run(command, 5)
            assert r.exit_code == 2 and not r.timed_out and r.duration < 1, (command, r)
            assert "incomplete command" in r.output
            assert ok(await sh.run("echo $X", 5)) == "1\n"
        r = await sh.run("echo 'two\nlines", 5)  # multi-line: sent as a file, a syntax error
        assert r.exit_code == 2 and "unexpected EOF" in r.output
        assert ok(await sh.run("echo $X", 5)) == "1\n"

    run(body, tmp_path)


def test_output_has_no_crlf_and_keeps_tabs_and_bytes(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        assert ok(await sh.run(r"printf 'a\tb\nc\n'", 5)) == "a\tb\nc\n"
        assert ok(await sh.run("printf 'x\ty'", 5)) == "x\ty"  # a TAB typed in the command
        assert ok(await sh.run(r"printf '\001\002\r\n\377'", 5)) == "\x01\x02\r\n\ufffd"
        ok(await sh.run("stty onlcr echo", 5))  # a program leaves the terminal changed
        assert ok(await sh.run("echo one; echo two", 5)) == "one\ntwo\n"

    run(body, tmp_path)


def test_scrubbed_env_drops_secrets() -> None:
    base = {
        "ANTHROPIC_API_KEY": "sk-ant-1",
        "ANTHROPIC_BASE_URL": "http://x",
        "MY_TOKEN": "t",
        "DB_PASSWORD": "p",
        "AWS_SECRET_ACCESS_KEY": "s",
        "ssh_key_path": "k",
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "PS1": "$ ",
        "PROMPT_COMMAND": "date",
    }
    env = scrubbed_env(base, Path("/agents/a"), {"SIM_AGENT": "a"})
    assert env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/agents/a",
        "TERM": "dumb",
        "SIM_AGENT": "a",
    }


def test_env_inside_the_shell_shows_no_parent_secret(tmp_path: Path) -> None:
    base = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-s3cr3t", "GITHUB_TOKEN": "ghp-s3cr3t"}

    async def main() -> None:
        async with Shell(tmp_path, scrubbed_env(base, tmp_path)) as sh:
            out = ok(await sh.run("env; set", 5))
            assert "s3cr3t" not in out and f"HOME={tmp_path}\n" in out

    trio.run(main)


def test_cancellation_interrupts_the_command_and_the_shell_stays_usable(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        ok(await sh.run("X=9", 5))
        start = trio.current_time()
        with trio.move_on_after(T) as scope:
            await sh.run("sleep 30", 60)
        assert scope.cancelled_caught and trio.current_time() - start < T + 1
        assert ok(await sh.run("echo $X; jobs | wc -l", 5)) == "9\n0\n"

    run(body, tmp_path)


def test_output_after_the_end_of_a_command_is_late_output_of_the_next(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        assert ok(await sh.run("(sleep 0.1; echo late) & echo started", 5)).endswith("started\n")
        await trio.sleep(0.4)
        r = await sh.run("echo now", 5)
        assert r.late_output == "late\n" and ok(r).startswith("now\n")
        assert "[1]+  Done" in r.output  # bash reports the ended job before its next prompt
        assert (await sh.run("echo again", 5)).late_output == ""

    run(body, tmp_path)


def test_restart_kills_jobs_and_keeps_cwd(tmp_path: Path) -> None:
    async def body(sh: Shell) -> None:
        pid = int(ok(await sh.run("cd /tmp; sleep 999 & echo $!", 5)).split()[-1])
        await sh.restart()
        assert gone(pid) and ok(await sh.run("pwd", 5)) == "/tmp\n"

    run(body, tmp_path)


def test_many_shells_run_side_by_side_without_starving(tmp_path: Path) -> None:
    worst: list[float] = []

    async def chatty(sh: Shell) -> None:
        for _ in range(2):
            r = await sh.run("yes | head -c 5000000", 20)
            assert r.exit_code == 0 and r.output_bytes == 5_000_000

    async def quiet(sh: Shell, stop: trio.Event) -> None:
        while not stop.is_set():
            start = trio.current_time()
            assert ok(await sh.run("echo hi", 5)) == "hi\n"
            worst.append(trio.current_time() - start)
            await trio.sleep(0.01)  # an agent thinks between commands

    async def main() -> None:
        shells = [Shell(tmp_path, scrubbed_env(os.environ, tmp_path)) for _ in range(16)]
        async with trio.open_nursery() as nursery:
            for sh in shells:
                nursery.start_soon(sh.start)
        try:
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                for sh in shells[1:]:
                    nursery.start_soon(quiet, sh, stop)
                await chatty(shells[0])
                stop.set()
        finally:
            for sh in shells:
                await sh.close()

    trio.run(main)
    assert len(worst) > 100 and max(worst) < 1.0, max(worst)
    print(f"{len(worst)} echo round trips beside the flood, worst {max(worst) * 1000:.1f} ms")


def test_exited_tells_a_dead_child_without_reaping_it() -> None:
    # Unreaped, bash keeps its pid, the id of its session, while the session is killed.
    child = subprocess.Popen(["sleep", "0.05"])
    pidfd = os.pidfd_open(child.pid)
    try:
        assert not exited(pidfd)
        deadline = time.monotonic() + 5
        while not exited(pidfd) and time.monotonic() < deadline:
            time.sleep(0.01)
        with open(f"/proc/{child.pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"  # a zombie: still unreaped
        assert child.wait(1) == 0
        assert exited(pidfd)  # and once reaped, still ended
    finally:
        os.close(pidfd)


def test_closing_a_session_whose_leader_was_reaped_elsewhere_spares_that_session_id() -> None:
    # Once bash is reaped its pid, the session id, may go to a new session, say another
    # agent's bash: killing "the members of that session" could hit it. So nothing is killed.
    leader = subprocess.Popen(
        ["bash", "-c", "sleep 999 & echo $!; sleep 0.05"],
        start_new_session=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert leader.stdout is not None
    member = int(leader.stdout.readline())
    pidfd = os.pidfd_open(leader.pid)
    try:
        assert leader.wait(5) == 0  # reaped here, not by kill_session
        trio.run(kill_session, types.SimpleNamespace(pid=leader.pid, isalive=lambda: False), pidfd)
        assert not gone(member, 0.2)
    finally:
        os.close(pidfd)
        os.kill(member, 9)
