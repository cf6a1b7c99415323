"""Whole Claude runs with real shells: the shipped Claude scenarios, end to end against the fake
API with scripted replies, and the secrets test through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from sim.events import read_events
from sim.runner import Run, RunResult
from sim.scenario import load_scenario
from tests.conftest import run_cli
from tests.fake_anthropic import FakeAnthropic, bash, edit, finish, tool_use, turn

ROOT = Path(__file__).resolve().parent.parent
SHARED = "../../shared"  # from an agent's directory, where its shell starts

TEXTSTATS = """import math
import re
from collections import Counter

_WORD = re.compile(r"[A-Za-z0-9']+")


def _words(text):
    return [w.lower() for w in _WORD.findall(text)]


def word_count(text):
    return len(_words(text))


def top_words(text, n=3):
    counts = Counter(_words(text))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def reading_time(text, wpm=200):
    if wpm <= 0:
        raise ValueError("wpm must be positive")
    return math.ceil(word_count(text) / wpm)
"""

TESTS = """import unittest

from textstats import reading_time, top_words, word_count


class TextStatsTest(unittest.TestCase):
    def test_word_count(self):
        self.assertEqual(word_count("It's a cat, a CAT!"), 5)

    def test_top_words(self):
        self.assertEqual(top_words("b a b c a b", 2), [("b", 3), ("a", 2)])

    def test_reading_time(self):
        self.assertEqual(reading_time("word " * 201), 2)
        self.assertEqual(reading_time(""), 0)
        with self.assertRaises(ValueError):
            reading_time("x", wpm=0)
"""

UNITTEST = "python3 -m unittest discover -s tests -t . 2>&1 | tail -n 1"


def run_with(scenario: Any, env: dict[str, str], runs: Path) -> RunResult:
    async def main() -> RunResult:
        return await Run(scenario, runs_dir=runs, env=env).execute()

    return trio.run(main)


def env_for(api: FakeAnthropic) -> dict[str, str]:
    # This interpreter's directory first: a pyenv shim `python3` costs ~0.3 s a start.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    return {"PATH": path, "ANTHROPIC_API_KEY": api.key}


def append(path: str, line: str) -> list[dict[str, Any]]:
    """Three parallel tool calls: lock the shared file, append a line, unlock it."""
    return [
        tool_use("lock", path=path),
        bash(f"echo '{line}' >> \"$SIM_SHARED/{path}\""),
        tool_use("unlock", path=path),
    ]


def test_pair_programming_runs_end_to_end(tmp_path: Path) -> None:
    wait_for_code = (
        "for i in $(seq 200); do test -f textstats/__init__.py && break; sleep 0.05; done"
    )
    scripts = {
        "You are the coder": [
            turn(bash('cat "$SIM_SHARED/SPEC.md"')),
            turn(
                edit(command="create", path=f"{SHARED}/textstats/__init__.py", file_text=TEXTSTATS)
            ),
            turn(*append("NOTES.md", "[coder] textstats is written")),
            turn(finish("wrote textstats")),
        ],
        "You are the tester": [
            turn(
                edit(command="create", path=f"{SHARED}/tests/__init__.py", file_text=""),
                edit(command="create", path=f"{SHARED}/tests/test_textstats.py", file_text=TESTS),
            ),
            turn(bash(f'cd "$SIM_SHARED" && {wait_for_code} && {UNITTEST}')),
            turn(*append("NOTES.md", "DONE: all 3 tests pass")),
            turn(finish("tests pass")),
        ],
    }
    with FakeAnthropic(scripts) as api:
        spec = load_scenario(ROOT / "scenarios/pair_programming.yaml", [f"base_url={api.base_url}"])
        result = run_with(spec, env_for(api), tmp_path / "runs")
    assert result.status == "completed", result.reason
    events = read_events(result.run_dir / "events.jsonl").events
    assert not [e for e in events if e["kind"] == "error"]
    outputs = [
        e["output"].strip() for e in events if e["kind"] == "command" and "unittest" in e["command"]
    ]
    assert outputs == ["OK"]
    shared = result.run_dir / "workspace/shared"
    assert "DONE: all 3 tests pass" in (shared / "NOTES.md").read_text()
    writes = {e["path"] for e in events if e["kind"] == "file_write"}
    assert writes >= {"textstats/__init__.py", "tests/test_textstats.py"}
    check = subprocess.run(
        [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."],
        cwd=shared,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    models = {e["model"] for e in events if e["kind"] == "model_request"}
    assert models == {"claude-sonnet-5-5"}


def test_fishing_commons_runs_a_whole_season(tmp_path: Path) -> None:
    fish = 'python3 "$SIM_SHARED/lake.py" fish "$SIM_AGENT" 2'
    season = [turn(*append("harbour.md", "[me] two fish each, every round?"), bash(fish))]
    season += [turn(bash(fish)) for _ in range(7)] + [turn(finish("the season is over"))]
    with FakeAnthropic({"You are a fisher": season}) as api:
        spec = load_scenario(ROOT / "scenarios/fishing_commons.yaml", [f"base_url={api.base_url}"])
        result = run_with(spec, env_for(api), tmp_path / "runs")
    assert result.status == "completed" and result.reason == "done_when"
    shared = result.run_dir / "workspace/shared"
    lake = json.loads((shared / "lake.json").read_text())
    assert lake["round"] == 9 and lake["stock"] == 100
    assert lake["totals"] == {f"fisher-{i}": 16 for i in range(1, 5)}
    assert (shared / "harbour.md").read_text().count("[me] two fish") == 4
    events = read_events(result.run_dir / "events.jsonl").events
    assert sum(e["kind"] == "round" for e in events) >= 8


def test_the_key_reaches_no_shell_and_no_file_of_the_run(tmp_path: Path) -> None:
    secret = "sk-ant-api03-" + "S3CR3T" * 8
    look = (
        "env; cat /proc/$$/environ /proc/$PPID/environ | tr '\\0' '\\n'; "
        "ps e -p $PPID -o args= 2>/dev/null; echo END"
    )
    scripts = {"agent spy": [turn(bash(look)), turn(finish("looked"))]}
    scenario = {
        "name": "spy",
        "limits": {"wall_time": 60},
        "agents": [{"name": "spy", "model": "claude-sonnet-5-5", "system": "You are agent spy."}],
    }
    path = tmp_path / "spy.yaml"
    path.write_text(json.dumps(scenario))
    with FakeAnthropic(scripts, key=secret) as api:
        env = dict(os.environ, ANTHROPIC_API_KEY=secret, ANTHROPIC_BASE_URL=api.base_url)
        proc = run_cli("run", str(path), "--quiet", "--runs-dir", str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr
    assert secret not in proc.stdout + proc.stderr
    run_dir = Path(proc.stdout.strip())
    events = read_events(run_dir / "events.jsonl").events
    (command,) = [e for e in events if e["kind"] == "command"]
    output = command["output"]
    assert "SIM_AGENT=spy" in output and output.rstrip().endswith("END")
    assert "S3CR3T" not in output
    assert len(api.requests) == 2 and all(r.status == 200 for r in api.requests)  # key was used
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"events.jsonl", "meta.json", "scenario.yaml"}
    for file in files:
        assert b"S3CR3T" not in file.read_bytes(), file


def test_the_cli_refuses_a_claude_scenario_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    runs = tmp_path / "runs"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sim",
            "run",
            "scenarios/pair_programming.yaml",
            "--runs-dir",
            str(runs),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "ANTHROPIC_API_KEY is not set" in proc.stderr and "Traceback" not in proc.stderr
    assert "scenarios/quickstart.yaml" in proc.stderr and "sim replay" in proc.stderr
    assert not runs.exists()
