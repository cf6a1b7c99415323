"""Replay: re-simulation with divergence reports, playback, forks; show and runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from sim.events import read_events
from sim.runner import Run
from sim.scenario import validate_scenario
from tests.conftest import counter_only, run_cli, scenario_dict, sim_cli

ROOT = Path(__file__).resolve().parent.parent


def record(tmp_path: Path, scenario: Any) -> Path:
    async def main() -> Path:
        result = await Run(scenario, runs_dir=tmp_path / "runs").execute()
        assert result.status == "completed"
        return result.run_dir

    return trio.run(main)


def counter_race(tmp_path: Path) -> Path:
    scenario = counter_only(
        ["scheduler=round_robin", "agents.0.replicas=3", "agents.0.params.times=3"]
    )
    return record(tmp_path, scenario)


def test_deterministic_run_replays_with_no_divergence(tmp_path: Path) -> None:
    source = counter_race(tmp_path)
    proc = run_cli("replay", str(source), "--quiet")
    assert proc.returncode == 0, proc.stderr
    new_dir = Path(proc.stdout.strip())
    assert new_dir != source and (new_dir / "events.jsonl").exists()
    report = json.loads((new_dir / "divergence.json").read_text())
    assert report["count"] == 0 and report["compared"] > 30
    assert (new_dir / "workspace/shared/counter.txt").read_text().strip() == "9"
    recorded = [
        e["order"] for e in read_events(source / "events.jsonl").events if e["kind"] == "round"
    ]
    replayed = [
        e["order"] for e in read_events(new_dir / "events.jsonl").events if e["kind"] == "round"
    ]
    assert replayed == recorded


def test_a_planted_divergence_is_found_and_reported(tmp_path: Path) -> None:
    steps = [{"bash": 'cat "$SIM_SHARED/data.txt"'}, {"bash": "echo same"}, {"finish": "ok"}]
    scenario = validate_scenario(
        scenario_dict(
            workspace={"shared": {"data.txt": "apples\n"}}, agents=[{"name": "a", "steps": steps}]
        )
    )
    source = record(tmp_path, scenario)
    # Plant: the replay seeds a different file than the one the recording saw.
    data = yaml.safe_load((source / "scenario.yaml").read_text())
    data["workspace"]["shared"]["data.txt"] = "pears\n"
    (source / "scenario.yaml").write_text(yaml.safe_dump(data))
    proc = run_cli("replay", str(source))
    assert proc.returncode == 3, proc.stderr
    assert "1 divergence(s)" in proc.stdout and "agent a, turn 1" in proc.stdout
    assert "-apples" in proc.stdout and "+pears" in proc.stdout
    new_dir = Path(proc.stdout.split("replay run directory: ")[1].splitlines()[0])
    report = json.loads((new_dir / "divergence.json").read_text())
    first = report["first"]
    assert report["count"] == 1
    assert (first["agent"], first["turn"], first["tool"]) == ("a", 1, "bash")
    assert first["command"] == 'cat "$SIM_SHARED/data.txt"'
    assert (first["expected"], first["actual"]) == ("apples", "pears")


def test_playback_prints_the_recording_without_running_anything(tmp_path: Path) -> None:
    source = counter_race(tmp_path)
    before = sorted(p.name for p in (tmp_path / "runs").iterdir())
    proc = run_cli("replay", "--playback", "--speed", "0", str(source))
    assert proc.returncode == 0, proc.stderr
    assert "counter-1" in proc.stdout and '$ cat "$SIM_SHARED/counter.txt"' in proc.stdout
    assert "run ended: completed" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == before  # no new run


def test_fork_replays_then_goes_live(tmp_path: Path) -> None:
    source = counter_race(tmp_path)
    proc = run_cli("replay", str(source), "--until", "counter-2:5", "--then", "live", "--quiet")
    assert proc.returncode == 0, proc.stderr
    new_dir = Path(proc.stdout.strip())
    assert (new_dir / "workspace/shared/counter.txt").read_text().strip() == "9"
    proc = run_cli("replay", str(source), "--until", "nobody:1", "--then", "live")
    assert proc.returncode == 2 and "no agent named 'nobody'" in proc.stderr


def test_show_filters_and_runs_lists(tmp_path: Path) -> None:
    source = counter_race(tmp_path)
    proc = run_cli("show", str(source), "--agent", "counter-2", "--kind", "tool_call")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert lines and all("counter-2" in line for line in lines)
    assert sum("] lock counter.txt" in line for line in lines) == 3
    # a filter that can match nothing is refused, saying why
    proc = run_cli("show", str(source), "--agent", "zed")
    assert proc.returncode == 2 and "no agent of that name; this run has counter-1" in proc.stderr
    proc = run_cli("show", str(source), "--kind", "Command")
    assert proc.returncode == 2 and "no such event kind; the kinds are" in proc.stderr
    # commands alone (their tool calls filtered out) say what ran
    proc = run_cli("show", str(source), "--agent", "counter-2", "--kind", "command")
    lines = [line for line in proc.stdout.splitlines() if "counter-2" in line]
    assert lines and all("] $ " in line and "(exit 0," in line for line in lines)
    nowhere = str(tmp_path / "nowhere")
    for command in (["show", nowhere], ["runs", "--runs-dir", nowhere], ["resume", nowhere]):
        proc = run_cli(*command)
        assert proc.returncode == 2 and f"{nowhere}: no such directory" in proc.stderr
    proc = run_cli("replay", "--playback", str(source), "--speed", "-1")
    assert proc.returncode == 2 and "--speed -1: give 0" in proc.stderr
    listing = run_cli("runs", "--runs-dir", str(tmp_path / "runs"))
    assert source.name in listing.stdout and "counter_race" in listing.stdout
    assert "completed" in listing.stdout


@pytest.mark.parametrize("command", [["show"], ["replay", "--playback", "--speed", "0"]])
def test_printing_into_a_pipe_that_closes_early_ends_quietly(
    tmp_path: Path, command: list[str]
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    event = {"t": 0.1, "agent": "a", "kind": "command", "turn": 1, "command": "echo x" * 20}
    event |= {"output": "x\n" * 20, "exit_code": 0, "duration": 0.001}
    lines = (json.dumps({"seq": i, **event}) + "\n" for i in range(5000))
    (run_dir / "events.jsonl").write_text("".join(lines))  # far more than a pipe holds
    proc = sim_cli(*command, str(run_dir))
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    assert proc.wait(30) == 0
    assert proc.stderr is not None and proc.stderr.read() == ""


def test_replay_and_report_of_a_log_with_a_torn_last_line_say_so(tmp_path: Path) -> None:
    source = counter_race(tmp_path)
    with (source / "events.jsonl").open("a") as f:
        f.write('{"seq": 999, "kind": "comm')  # what a crash mid-write leaves
    proc = run_cli("replay", str(source), "--quiet")
    assert "last line was torn by a crash and was dropped" in proc.stderr, proc.stderr
    report = run_cli("report", str(source), "-o", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    assert "last line was torn by a crash" in report.stderr


def _damage(run_dir: Path, how: str) -> None:
    log = run_dir / "events.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    if how == "corrupt line":
        lines[3] = '{"seq": garbage\n'
    elif how == "not an object":
        lines[3] = "[1, 2, 3]\n"
    elif how == "no kind":
        lines[3] = "{}\n"
    log.write_text("".join(lines))
    if how == "meta not an object":
        (run_dir / "meta.json").write_text("[1]\n")
    elif how == "scenario not yaml":
        (run_dir / "scenario.yaml").write_text("name: [unclosed\n")


@pytest.mark.parametrize(
    "how", ["corrupt line", "not an object", "no kind", "meta not an object", "scenario not yaml"]
)
def test_a_damaged_run_directory_gets_one_clear_error_line_from_every_command(
    tmp_path: Path, how: str
) -> None:
    source = counter_race(tmp_path)
    _damage(source, how)
    broken_log = how in ("corrupt line", "not an object", "no kind")
    commands: list[list[str]] = [["runs", "--runs-dir", str(source.parent)]]
    if broken_log or how == "scenario not yaml":
        commands += [["replay", str(source), "--quiet"], ["resume", str(source)]]
    if broken_log:
        commands += [["show", str(source)], ["replay", "--playback", "--speed", "0", str(source)]]
    if how == "meta not an object":
        commands += [["show", str(source)], ["report", str(source), "-o", str(tmp_path)]]
    for args in commands:
        proc = run_cli(*args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        if args[0] in ("runs", "report") or (args[0] == "show" and not broken_log):
            assert proc.returncode == 0, (args, proc.stderr)
            if args[0] == "runs":  # the damaged run is listed, not dropped
                assert source.name in proc.stdout, proc.stdout
            continue
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        error = proc.stderr.strip().splitlines()[-1]
        assert error.startswith("error: "), (args, proc.stderr)
        if broken_log:
            assert "events.jsonl:4: not an event" in error, error
        else:
            assert "scenario.yaml:2:1: not valid YAML" in error and "put back" in error, error
    if how == "meta not an object":
        assert (tmp_path / "report.html").exists()  # -o DIR: the report goes into it


def test_a_scenario_file_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\nagents: []\n")
    for command in ("validate", "run"):
        proc = run_cli(command, str(path))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert "not UTF-8 text (byte 0xe9 at offset 9)" in proc.stderr, proc.stderr


@pytest.mark.parametrize("speed", ["nan", "1e-300", "-1", "inf"])
def test_a_playback_speed_that_cannot_be_is_one_clear_error(tmp_path: Path, speed: str) -> None:
    proc = run_cli("replay", "--playback", "--speed", speed, str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"error: --speed {float(speed):g}: give 0"), proc.stderr
