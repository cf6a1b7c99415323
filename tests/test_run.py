"""Whole runs with real shells: the shipped scenarios, secrets, the CLI, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sim.events import read_events
from sim.runner import Run, RunResult
from sim.scenario import load_scenario, validate_scenario
from tests.conftest import counter_only, scenario_dict, sim_cli

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-ant-test-0123456789-DO-NOT-LEAK"


def run(tmp_path: Path, scenario: Any, env: dict[str, str] | None = None) -> RunResult:
    async def main() -> RunResult:
        return await Run(scenario, runs_dir=tmp_path / "runs", env=env).execute()

    return trio.run(main)


def events_of(result: RunResult) -> list[dict[str, Any]]:
    return read_events(result.run_dir / "events.jsonl").events


def counter(result: RunResult) -> int:
    return int((result.run_dir / "workspace/shared/counter.txt").read_text())


def test_quickstart_assembles_the_report_under_the_lock(tmp_path: Path) -> None:
    result = run(tmp_path, load_scenario(ROOT / "scenarios/quickstart.yaml"))
    assert result.status == "completed"
    report = (result.run_dir / "workspace/shared/report.md").read_text()
    assert report.count("## ") == 3
    for name in ("alice", "bob", "carol"):
        assert (result.run_dir / f"workspace/agents/{name}/section.md").exists()
    events = events_of(result)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert {e["agent"]: e["reason"] for e in events if e["kind"] == "agent_end"} == {
        "alice": "finished",
        "bob": "finished",
        "carol": "finished",
    }
    meta = json.loads((result.run_dir / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["seed"] == 7 and meta["end"]
    assert (result.run_dir / "scenario.yaml").read_text().startswith("name: quickstart")


def test_counter_race_with_lock_is_exact(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios/counter_race.yaml")
    result = run(tmp_path, scenario)
    assert result.status == "completed"
    assert counter(result) == 200


def test_counter_race_without_lock_loses_updates(tmp_path: Path) -> None:
    # round_robin makes the interleaving a function of the seed: read, read, write, write.
    scenario = counter_only(
        [
            "agents.0.params.use_lock=false",
            "agents.0.params.times=5",
            "agents.0.replicas=4",
            "scheduler=round_robin",
        ]
    )
    result = run(tmp_path, scenario)
    assert result.status == "completed"
    assert counter(result) < 20
    assert not any(e["kind"] == "lock_acquire" for e in events_of(result))


@pytest.mark.parametrize("mode", ["round_robin", "rounds"])
def test_done_when_is_checked_before_the_next_turn_in_the_round_modes(
    tmp_path: Path, mode: str
) -> None:
    # The turns after the flag take about a millisecond and the check (a bash) far longer:
    # checked beside the agents, the run would go on for a turn or a round past the flag.
    later = [{"bash": 'echo "$SIM_AGENT" >> "$SIM_SHARED/after"'}] * 3 + [{"finish": "ok"}]
    data = scenario_dict(
        scheduler=mode,
        done_when="test -f flag",
        agents=[
            {"name": "a", "steps": [{"bash": 'touch "$SIM_SHARED/flag"'}, *later]},
            {"name": "b", "steps": [{"bash": "true"}, *later]},
        ],
    )
    result = run(tmp_path, validate_scenario(data))
    assert (result.status, result.reason) == ("completed", "done_when")
    assert not (result.run_dir / "workspace/shared/after").exists()
    assert sum(e["kind"] == "round" for e in events_of(result)) == 1


def test_a_done_when_check_that_hangs_is_killed_and_the_run_goes_on(tmp_path: Path) -> None:
    # A hostile agent turns the file the condition reads into a FIFO: `grep` then blocks on
    # opening it. Under round_robin every turn waits for the check, so it must give up.
    data = scenario_dict(
        scheduler="round_robin",
        done_when="grep -q done status",
        limits={"command_timeout": 1, "wall_time": 20},
        agents=[
            {"name": "a", "steps": [{"bash": 'mkfifo "$SIM_SHARED/status"'}, {"finish": "ok"}]}
        ],
    )
    result = run(tmp_path, validate_scenario(data))
    assert (result.status, result.reason) == ("completed", "all_ended")
    errors = [e for e in events_of(result) if e["kind"] == "error"]
    assert errors and {e["where"] for e in errors} == {"done_when"}
    assert "did not finish within 1 s" in errors[0]["message"]


def test_what_a_background_job_prints_between_commands_reaches_the_log_and_the_agent(
    tmp_path: Path,
) -> None:
    # a's job prints while a waits for b's lock, with no command of a's running: the log
    # and the model see it with a's next command, as a terminal would show it.
    holder = [{"lock": "x"}, {"bash": "sleep 1"}, {"unlock": "x"}, {"finish": "done"}]
    waiter = [
        {"bash": "sleep 0.2"},  # b takes the lock meanwhile
        {"bash": "(sleep 0.3; echo LATE_BG) &"},
        {"lock": "x"},
        {"bash": "echo next"},
        {"finish": "done"},
    ]
    data = scenario_dict(agents=[{"name": "b", "steps": holder}, {"name": "a", "steps": waiter}])
    events = events_of(run(tmp_path, validate_scenario(data)))
    last = [e for e in events if e["kind"] == "command" and e["agent"] == "a"][-1]
    assert last["late_output"] == "LATE_BG\n" and last["output"].startswith("next\n"), last
    shown = [e for e in events if e["kind"] == "tool_result" and e["agent"] == "a"][-2]
    assert shown["content"].startswith("LATE_BG\nnext\n"), shown


def test_an_offline_run_does_not_import_the_anthropic_sdk(tmp_path: Path) -> None:
    # Importing the SDK takes over a second; only runs with Claude agents should pay it.
    code = (
        "import sys, trio\n"
        "from sim.cli import main\n"
        "from sim.runner import Run\n"
        "from pathlib import Path\n"
        "from sim.scenario import load_scenario\n"
        "run = Run(load_scenario('scenarios/quickstart.yaml'), runs_dir=Path(sys.argv[1]))\n"
        "print(trio.run(run.execute).status, 'anthropic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["completed", "False"]


def test_no_secret_reaches_the_shell_or_the_run_directory(tmp_path: Path) -> None:
    env = dict(os.environ, ANTHROPIC_API_KEY=SECRET, GITHUB_TOKEN=SECRET, DB_PASSWORD=SECRET)
    scenario = validate_scenario(
        scenario_dict(agents=[{"name": "a", "steps": [{"bash": "env; cat /proc/$$/environ"}]}])
    )
    result = run(tmp_path, scenario, env=env)
    (command,) = [e for e in events_of(result) if e["kind"] == "command"]
    assert "PATH=" in command["output"] and "SIM_SHARED=" in command["output"]
    for path in result.run_dir.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


def test_setup_failure_is_a_clear_error_and_the_log_is_complete(tmp_path: Path) -> None:
    scenario = validate_scenario(scenario_dict(workspace={"setup": ["echo nope; exit 3"]}))
    result = run(tmp_path, scenario)
    assert result.status == "error" and result.exit_code == 1
    assert "exit code 3" in result.reason and "nope" in result.reason
    kinds = [e["kind"] for e in events_of(result)]
    assert kinds == ["run_start", "setup", "error", "run_end"]


def test_cli_quiet_prints_only_the_run_directory(tmp_path: Path) -> None:
    proc = sim_cli(
        "run", "scenarios/quickstart.yaml", "--quiet", "--runs-dir", str(tmp_path / "runs")
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    (line,) = out.strip().splitlines()
    assert Path(line).is_dir() and (Path(line) / "events.jsonl").exists()


def test_cli_bad_override_is_one_clear_line(tmp_path: Path) -> None:
    proc = sim_cli("run", "scenarios/quickstart.yaml", "--set", "limits.max_turns=zero")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "limits.max_turns" in err and "Traceback" not in err


def _wait_for_log(runs: Path, ready: Callable[[list[dict[str, Any]]], bool]) -> Path:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        logs = list(runs.glob("*/events.jsonl"))
        if logs and ready(read_events(logs[0]).events):
            return logs[0]
        time.sleep(0.05)
    raise AssertionError(f"no run in {runs} got that far")


@pytest.mark.parametrize(
    ("signals", "code", "reason"),
    [
        ([signal.SIGINT], 130, "Ctrl-C"),
        # more Ctrl-C while the run ends: each used to raise inside the cleanup
        ([signal.SIGINT] * 3, 130, "Ctrl-C"),
        ([signal.SIGTERM, signal.SIGINT], 143, "SIGTERM"),
    ],
    ids=["ctrl-c", "ctrl-c-thrice", "sigterm"],
)
def test_a_signal_ends_the_run_cleanly(
    tmp_path: Path, signals: list[signal.Signals], code: int, reason: str
) -> None:
    # The command ignores SIGINT and SIGTERM, so the run takes ~0.4 s to end (SIGKILL): the
    # signals after the first come while it ends.
    command = "sleep 987 & bash -c \"trap '' INT TERM; sleep 60\""
    scenario = tmp_path / "slow.yaml"
    scenario.write_text(
        json.dumps(
            scenario_dict(
                agents=[{"name": "s", "replicas": 2, "steps": [{"bash": command}]}],
                limits={"command_timeout": 100, "wall_time": 100},
            )
        )
    )
    proc = sim_cli("run", str(scenario), "--quiet", "--runs-dir", str(tmp_path / "runs"))
    log = _wait_for_log(
        tmp_path / "runs", lambda events: sum(e["kind"] == "tool_call" for e in events) >= 2
    )
    for signum in signals:
        proc.send_signal(signum)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"run interrupted: {reason}" in err
    events = read_events(log).events
    end = events[-1]
    assert end["kind"] == "run_end" and (end["status"], end["reason"]) == ("interrupted", reason)
    assert [e["reason"] for e in events if e["kind"] == "agent_end"] == ["interrupted"] * 2
    meta = json.loads((log.parent / "meta.json").read_text())
    assert (meta["status"], meta["reason"]) == ("interrupted", reason)
    pids = [e["shell_pid"] for e in events if e["kind"] == "agent_start"]
    time.sleep(0.2)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    sleepers = subprocess.run(["pgrep", "-f", "sleep 987"], capture_output=True, text=True)
    assert sleepers.stdout.strip() == ""


def test_ctrl_c_during_the_workspace_setup_ends_the_run_cleanly(tmp_path: Path) -> None:
    scenario = tmp_path / "slow_setup.yaml"
    scenario.write_text(
        json.dumps(scenario_dict(workspace={"setup": ["sleep 986 & sleep 985; echo no"]}))
    )
    proc = sim_cli("run", str(scenario), "--quiet", "--runs-dir", str(tmp_path / "runs"))
    log = _wait_for_log(tmp_path / "runs", lambda events: bool(events))
    time.sleep(0.3)  # the setup command runs
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "Traceback" not in err, err
    end = read_events(log).events[-1]
    assert end["kind"] == "run_end" and (end["status"], end["reason"]) == ("interrupted", "Ctrl-C")
    sleepers = subprocess.run(["pgrep", "-f", "sleep 98[56]"], capture_output=True, text=True)
    assert sleepers.stdout.strip() == ""


def test_a_setup_command_that_hangs_is_killed_at_the_command_timeout(tmp_path: Path) -> None:
    data = scenario_dict(
        workspace={"setup": ["sleep 984 & sleep 983"]},
        limits={"command_timeout": 0.5, "wall_time": 30, "max_turns": 5},
    )
    result = run(tmp_path, validate_scenario(data))
    assert result.status == "error"
    assert "did not finish within 0.5 s (limits.command_timeout)" in result.reason
    assert events_of(result)[-1]["kind"] == "run_end"
    sleepers = subprocess.run(["pgrep", "-f", "sleep 98[34]"], capture_output=True, text=True)
    assert sleepers.stdout.strip() == ""
