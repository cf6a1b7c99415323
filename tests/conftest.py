"""Shared fixtures: a fake shell for scheduler logic, scenario builders."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from sim.shell import CommandResult


class FakeShell:
    """A Shell stand-in for logic tests under MockClock: `sleep N` takes N virtual seconds,
    `exit N` returns N, anything else echoes itself. No process is involved."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None, **_: Any) -> None:
        self.cwd = cwd
        self.env = env or {}
        self.pid: int | None = None
        self.alive = False
        self.commands: list[str] = []

    async def start(self) -> None:
        self.alive, self.pid = True, 4242

    async def close(self) -> None:
        self.alive = False

    async def restart(self) -> None:
        self.alive = True

    async def __aenter__(self) -> FakeShell:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        with trio.CancelScope(shield=True):
            await self.close()

    async def run(self, command: str, timeout: float) -> CommandResult:
        self.commands.append(command)
        start = trio.current_time()
        m = re.match(r"sleep ([\d.]+)", command)
        timed_out = False
        if m:
            with trio.move_on_after(timeout) as scope:
                await trio.sleep(float(m.group(1)))
            timed_out = scope.cancelled_caught
        m_touch = re.match(r'touch "\$SIM_SHARED/(\w+)"', command)
        if m_touch:  # the one command with a real effect: done_when tests look for the file
            (Path(self.env["SIM_SHARED"]) / m_touch.group(1)).touch()
        m_exit = re.match(r"exit (\d+)", command)
        code = None if timed_out else (int(m_exit.group(1)) if m_exit else 0)
        await trio.lowlevel.checkpoint()
        return CommandResult(
            output="" if m else command,
            exit_code=code,
            duration=trio.current_time() - start,
            timed_out=timed_out,
            truncated=False,
            output_bytes=len(command),
            restarted=False,
        )


@pytest.fixture
def fake_shell_cls() -> type[FakeShell]:
    return FakeShell


def scenario_dict(**overrides: Any) -> dict[str, Any]:
    """A small valid scenario as a dict, with top-level keys overridden."""
    data: dict[str, Any] = {
        "name": "t",
        "seed": 3,
        "limits": {"max_turns": 10, "wall_time": 30, "command_timeout": 5},
        "agents": [{"name": "a", "steps": [{"bash": "echo hi"}, {"finish": "ok"}]}],
    }
    data.update(overrides)
    return data


@pytest.fixture
def runs_dir() -> Iterator[Path]:
    """A runs directory that other users can reach: `isolation: users` refuses pytest's
    tmp_path, which sits in a 0700 directory its agents' users could not pass through."""
    path = Path(tempfile.mkdtemp(prefix="sim-test-runs-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


ROOT = Path(__file__).resolve().parent.parent


def counter_only(overrides: list[str] | None = None) -> Any:
    """counter_race.yaml's first agent spec alone (the locked counters), with overrides."""
    from sim.scenario import load_scenario

    scenario = load_scenario(ROOT / "scenarios/counter_race.yaml", overrides or [])
    return scenario.model_copy(update={"agents": scenario.agents[:1]})


def counter_only_file(tmp_path: Path, overrides: list[str] | None = None) -> Path:
    """The same, written as a scenario file (for tests that run the CLI)."""
    path = tmp_path / "counter_only.yaml"
    path.write_text(counter_only(overrides).to_yaml())
    return path


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`python -m sim ARGS` from the repository root, run to the end."""
    return subprocess.run(
        [sys.executable, "-m", "sim", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sim_cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """`python -m sim ARGS` from the repository root, output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "sim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )
