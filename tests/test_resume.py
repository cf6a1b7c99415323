"""Resume: kill -9 a run at random moments, resume it each time, and it still ends exact."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sim.errors import RunError
from sim.events import read_events
from sim.resume import INTERRUPTED, plan_resume
from tests.conftest import counter_only_file
from tests.conftest import sim_cli as start

ROOT = Path(__file__).resolve().parent.parent
REPLICAS, TIMES = 4, 40


def commands_logged(log: Path) -> int:
    if not log.exists():
        return 0
    return log.read_text().count('"kind":"command"')


def wait_for_commands(proc: subprocess.Popen[str], run_glob: Path, at_least: int) -> Path:
    """Poll until the run has logged `at_least` commands (or ended); return its directory."""
    deadline = time.monotonic() + 60
    while True:
        logs = list(run_glob.parent.glob(run_glob.name))
        log = logs[0] / "events.jsonl" if logs else None
        if log is not None and (commands_logged(log) >= at_least or proc.poll() is not None):
            return log.parent
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run logged too few commands in 60 s"
        time.sleep(0.002)


def kill_9(proc: subprocess.Popen[str]) -> bool:
    """kill -9 the run; False if it had already exited (so there was nothing to kill)."""
    if proc.poll() is not None:
        _, err = proc.communicate()
        assert proc.returncode == 0, err
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def test_kill_9_at_random_moments_and_resume_ends_exact(tmp_path: Path) -> None:
    # The moments are drawn by progress (commands logged), not by time: a fast machine
    # finishes the whole run in well under a second, so a timed kill could miss it.
    rng = random.Random(20261123)
    total = REPLICAS * TIMES * 2  # a read and a write per increment
    runs = tmp_path / "runs"
    scenario = counter_only_file(
        tmp_path, [f"agents.0.replicas={REPLICAS}", f"agents.0.params.times={TIMES}"]
    )
    proc = start("run", str(scenario), "--quiet", "--runs-dir", str(runs))
    run_dir = wait_for_commands(proc, runs / "*", rng.randint(5, total // 3))
    assert kill_9(proc), "the first run ended before it could be killed"
    kills = 1
    for _ in range(2):  # resume, and kill the resumed run too
        log = run_dir / "events.jsonl"
        before = commands_logged(log)
        proc = start("resume", str(run_dir), "--quiet")
        wait_for_commands(proc, run_dir, before + rng.randint(3, max(3, (total - before) // 3)))
        if not kill_9(proc):
            break  # it finished before the kill: nothing left to resume
        if read_events(log).events[-1]["kind"] == "run_end":
            break  # the kill landed while it was exiting, after the run had ended
        kills += 1
    meta = json.loads((run_dir / "meta.json").read_text())
    if meta["status"] == "running":
        final = start("resume", str(run_dir), "--quiet")
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
        assert out.strip() == str(run_dir)
    counter = int((run_dir / "workspace/shared/counter.txt").read_text())
    assert counter == REPLICAS * TIMES
    events = read_events(run_dir / "events.jsonl").events
    assert [e["seq"] for e in events] == list(range(len(events)))  # gap-free across resumes
    ts = [e["t"] for e in events]
    assert ts == sorted(ts)  # t goes on from where the killed run stopped
    assert sum(e["kind"] == "run_resume" for e in events) >= kills
    assert events[-1]["kind"] == "run_end" and events[-1]["status"] == "completed"
    ends = [e for e in events if e["kind"] == "agent_end"]
    assert sorted(e["agent"] for e in ends) == [f"counter-{i}" for i in range(1, REPLICAS + 1)]
    assert {e["reason"] for e in ends} == {"finished"}


def test_a_copied_run_resumed_by_a_relative_path_goes_on_in_the_copy(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    scenario = counter_only_file(tmp_path, ["agents.0.replicas=2", "agents.0.params.times=40"])
    proc = start("run", str(scenario), "--quiet", "--runs-dir", str(runs))
    original = wait_for_commands(proc, runs / "*", 30)
    assert kill_9(proc), "the run ended before it could be killed"
    copy = tmp_path / "elsewhere" / "the-copy"
    shutil.copytree(original, copy, symlinks=True)
    counter_before = (original / "workspace/shared/counter.txt").read_text()
    log_before = (original / "events.jsonl").read_bytes()

    # sim_cli runs from the repository root: a relative path from there
    proc = start("resume", os.path.relpath(copy, ROOT), "--quiet")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.strip() == str(copy.resolve())
    assert int((copy / "workspace/shared/counter.txt").read_text()) == 2 * 40
    events = read_events(copy / "events.jsonl").events
    restarts = [e for e in events if e["kind"] == "shell_restart"]
    assert restarts and all(e["cwd"].startswith(str(copy.resolve())) for e in restarts)
    assert not [e for e in events if e["kind"] == "command" and e["exit_code"] != 0]
    # the original, where the copy came from, is as the kill left it
    assert (original / "workspace/shared/counter.txt").read_text() == counter_before
    assert (original / "events.jsonl").read_bytes() == log_before


def _kill_when_logged(tmp_path: Path, scenario: dict[str, Any], needle: str) -> Path:
    """Run the scenario with the CLI and kill -9 it once `needle` shows in its event log."""
    path = tmp_path / "scenario.yaml"
    path.write_text(json.dumps(scenario))
    runs = tmp_path / "runs"
    proc = start("run", str(path), "--quiet", "--runs-dir", str(runs))
    deadline = time.monotonic() + 30
    while True:
        logs = list(runs.glob("*/events.jsonl"))
        if logs and needle in logs[0].read_text():
            break
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return logs[0].parent


def _kill_mid_command(tmp_path: Path) -> Path:
    """A run killed while its only agent's command runs (deterministically mid-call)."""
    steps = [{"lock": "f.txt"}, {"bash": "cd /tmp && sleep 30"}, {"finish": "done"}]
    run_dir = _kill_when_logged(
        tmp_path,
        {
            "name": "slow",
            "limits": {"command_timeout": 60},
            "workspace": {"shared": {"f.txt": "x"}},
            "agents": [{"name": "a", "steps": steps}],
        },
        '"name":"bash"',
    )
    with (run_dir / "events.jsonl").open("a") as f:
        f.write('{"seq": 99, "kind": "tool_res')  # a torn last line, as a crash can leave
    return run_dir


def test_messages_handed_over_before_the_crash_are_in_the_rebuilt_conversation(
    tmp_path: Path,
) -> None:
    tools = ["bash", "send_message", "wait_for_message", "finish"]
    run_dir = _kill_when_logged(
        tmp_path,
        {
            "name": "talk",
            "limits": {"command_timeout": 60},
            "agents": [
                {
                    "name": "a",
                    "tools": tools,
                    "steps": [{"send_message": {"to": "b", "text": "hello b"}}, {"finish": "ok"}],
                },
                {
                    "name": "b",
                    "tools": tools,
                    "steps": [
                        {"wait_for_message": {}},
                        {"bash": "sleep 30"},
                        {"finish": "ok"},
                    ],
                },
            ],
        },
        '"command":"sleep 30"',
    )
    # b is handed the message at the start of turn 1 or 2, as the two agents happen to go;
    # the mailbox says which, and the letter must sit just before b's reply of that turn.
    rows = [json.loads(line) for line in (run_dir / "mailboxes/b.jsonl").read_text().splitlines()]
    (turn,) = [row["turn"] for row in rows if "delivered" in row]
    b = plan_resume(run_dir).agents["b"]
    assert b.turns == 2  # the sleep's turn, either way
    replies = [i for i, m in enumerate(b.messages) if m["role"] == "assistant"]
    before_reply = b.messages[replies[turn - 1] - 1]
    assert before_reply["role"] == "user"
    assert before_reply["content"][-1] == {"type": "text", "text": "[message from a] hello b"}
    letters = [
        block
        for m in b.messages
        if isinstance(m["content"], list)
        for block in m["content"]
        if block.get("type") == "text" and block["text"].startswith("[message from")
    ]
    assert len(letters) == 1  # once, not again at the end
    proc = start("resume", str(run_dir), "--quiet")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    events = read_events(run_dir / "events.jsonl").events
    ends = {e["agent"]: e["reason"] for e in events if e["kind"] == "agent_end"}
    assert ends == {"a": "finished", "b": "finished"}


def test_an_in_flight_call_is_reported_interrupted_not_rerun(tmp_path: Path) -> None:
    run_dir = _kill_mid_command(tmp_path)
    plan = plan_resume(run_dir)
    assert plan.torn_line == '{"seq": 99, "kind": "tool_res'
    agent = plan.agents["a"]
    assert agent.turns == 2 and agent.locks == ["f.txt"]
    assert [c["name"] for c in agent.interrupted] == ["bash"]
    assert agent.messages[-1]["content"][0]["content"] == INTERRUPTED
    proc = start("resume", str(run_dir))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "torn by the crash and was dropped" in err
    events = read_events(run_dir / "events.jsonl").events
    resumed = events[[e["kind"] for e in events].index("run_resume") :]
    kinds = [e["kind"] for e in resumed]
    assert kinds.index("lock_acquire") < kinds.index("agent_start")  # lock back before moving
    (interrupted,) = [e for e in resumed if e["kind"] == "interrupted"]
    assert interrupted["name"] == "bash" and interrupted["turn"] == 2
    assert sum(e["kind"] == "command" for e in resumed) == 0  # the sleep was not run again
    (restart,) = [e for e in resumed if e["kind"] == "shell_restart"]
    assert restart["cwd"] == str(run_dir / "workspace/agents/a")
    (end,) = [e for e in resumed if e["kind"] == "agent_end"]
    assert end["reason"] == "finished" and end["turns"] == 3


def test_a_finished_run_cannot_be_resumed(tmp_path: Path) -> None:
    proc = start("run", "scenarios/quickstart.yaml", "--quiet", "--runs-dir", str(tmp_path))
    out, _ = proc.communicate(timeout=60)
    with pytest.raises(RunError, match="only a run that was killed partway can be resumed"):
        plan_resume(Path(out.strip()))


def test_following_a_killed_run_ends_once_its_log_is_read(tmp_path: Path) -> None:
    run_dir = _kill_mid_command(tmp_path)
    proc = start("show", str(run_dir), "--follow")
    out, err = proc.communicate(timeout=30)  # before: it waited for a run_end forever
    assert proc.returncode == 0, err
    assert "[2] bash $ cd /tmp && sleep 30" in out
    assert "the run's process is gone" in err


def test_a_recorded_cwd_follows_the_run_it_was_recorded_in(tmp_path: Path) -> None:
    from sim.resume import _moved

    home = tmp_path / "copy/workspace/agents/a"  # where agent a's home is now
    home.mkdir(parents=True)
    now = str(home.resolve())
    old = "/old/run/workspace/agents/a"  # its home when the run started
    assert _moved(old + "/src", old, home) == now + "/src"  # moved with the run
    shared = str(home.resolve().parent.parent / "shared")
    assert _moved("/old/run/workspace/shared", old, home) == shared
    assert _moved("/tmp", old, home) == "/tmp"  # outside any run: stays
    assert _moved(now + "/src", old, home) == now + "/src"  # recorded here already
    # inside a run's workspace, but neither this one nor where it started: never go there
    assert _moved("/elsewhere/workspace/agents/a", old, home) is None
    assert _moved(None, old, home) is None


def test_a_run_killed_during_its_setup_is_not_resumed_as_if_set_up(tmp_path: Path) -> None:
    scenario = tmp_path / "slow_setup.yaml"
    scenario.write_text(
        json.dumps(
            {
                "name": "slow-setup",
                "workspace": {"setup": ["true", "sleep 981; echo ok > setup_done"]},
                "agents": [{"name": "a", "steps": [{"bash": "cat setup_done"}]}],
            }
        )
    )
    proc = start("run", str(scenario), "--quiet", "--runs-dir", str(tmp_path / "runs"))
    deadline = time.monotonic() + 30
    while '"kind":"setup"' not in "".join(
        p.read_text() for p in (tmp_path / "runs").glob("*/events.jsonl")
    ):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    kill_9(proc)
    subprocess.run(["pkill", "-f", "sleep 981"], check=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    with pytest.raises(RunError, match=r"killed during its workspace setup \(1 of 2 setup"):
        plan_resume(run_dir)
