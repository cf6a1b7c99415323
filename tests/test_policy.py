"""The command policy: deny regexes and allow lists, per scenario and per agent (fake shells)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from sim.errors import ScenarioError
from sim.events import read_events
from sim.runner import Run
from sim.scenario import validate_scenario
from tests.conftest import FakeShell, scenario_dict
from tests.realrun import of, steps

SHELLS: list[FakeShell] = []


def _recording_shell(cwd: Path, env: dict[str, str] | None = None, **kw: Any) -> FakeShell:
    shell = FakeShell(cwd, env, **kw)
    SHELLS.append(shell)
    return shell


def run_policy(tmp_path: Path, data: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Run on fake shells; return the events and every command that reached a shell."""
    SHELLS.clear()
    scenario = validate_scenario(data)

    async def main() -> Path:
        run = Run(scenario, runs_dir=tmp_path, shell_factory=_recording_shell, env={})
        return (await run.execute()).run_dir

    run_dir = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ran = [c for shell in SHELLS for c in shell.commands]
    return read_events(run_dir / "events.jsonl").events, ran


def test_denied_command_never_runs_and_the_model_is_told_the_rule(tmp_path: Path) -> None:
    data = scenario_dict(
        commands={"deny": [r"\brm\s+-rf\b", r"curl"]},
        agents=[{"name": "a", "steps": steps("echo before", "rm -rf /tmp/x", "echo after")}],
    )
    events, ran = run_policy(tmp_path, data)
    assert ran == ["echo before", "echo after"]
    (denied,) = of(events, "command_denied")
    assert denied["agent"] == "a" and denied["command"] == "rm -rf /tmp/x"
    assert denied["rule"] == "commands.deny[0]" and denied["pattern"] == r"\brm\s+-rf\b"
    (result,) = [r for r in of(events, "tool_result") if r["is_error"]]
    assert "commands.deny[0]" in result["content"] and r"\\brm\\s+-rf\\b" in result["content"]
    assert "Nothing was run" in result["content"]
    # The denial is in the log before the tool result the model reads.
    assert denied["seq"] < result["seq"]
    assert not any(c["command"] == "rm -rf /tmp/x" for c in of(events, "command"))


def test_allow_list_admits_only_matching_commands(tmp_path: Path) -> None:
    data = scenario_dict(
        commands={"allow": [r"^echo ", r"^ls\b"]},
        agents=[{"name": "a", "steps": steps("echo ok", "ls -la", "cat /etc/passwd")}],
    )
    events, ran = run_policy(tmp_path, data)
    assert ran == ["echo ok", "ls -la"]
    (denied,) = of(events, "command_denied")
    assert denied["rule"] == "commands.allow" and denied["pattern"] == ""
    (result,) = [r for r in of(events, "tool_result") if r["is_error"]]
    assert "allow list commands.allow" in result["content"] and "'^echo '" in result["content"]


def test_deny_wins_over_allow(tmp_path: Path) -> None:
    data = scenario_dict(
        commands={"allow": [r"^echo"], "deny": [r"secret"]},
        agents=[{"name": "a", "steps": steps("echo secret", "echo fine")}],
    )
    events, ran = run_policy(tmp_path, data)
    assert ran == ["echo fine"]
    assert [d["rule"] for d in of(events, "command_denied")] == ["commands.deny[0]"]


def test_agent_rules_add_deny_and_replace_allow(tmp_path: Path) -> None:
    data = scenario_dict(
        commands={"deny": ["^wget"], "allow": ["^echo"]},
        agents=[
            {"name": "a", "steps": steps("echo a", "wget x", "ls")},
            {
                "name": "b",
                "commands": {"deny": ["^ls -l"], "allow": ["^ls", "^wget"]},
                "steps": steps("echo b", "wget x", "ls -l", "ls"),
            },
        ],
    )
    events, ran = run_policy(tmp_path, data)
    assert sorted(ran) == ["echo a", "ls"]
    rules = {(d["agent"], d["command"]): d["rule"] for d in of(events, "command_denied")}
    assert rules == {
        ("a", "wget x"): "commands.deny[0]",
        ("a", "ls"): "commands.allow",
        ("b", "echo b"): "agents[1].commands.allow",
        ("b", "wget x"): "commands.deny[0]",  # the scenario's deny still applies
        ("b", "ls -l"): "agents[1].commands.deny[0]",
    }


def test_empty_policy_lets_everything_through(tmp_path: Path) -> None:
    events, ran = run_policy(tmp_path, scenario_dict())
    assert ran == ["echo hi"] and not of(events, "command_denied")


@pytest.mark.parametrize(
    ("commands", "where"),
    [
        ({"deny": ["ok", "("]}, "commands.deny: pattern 1 '('"),
        ({"allow": ["[a-"]}, "commands.allow: pattern 0 '[a-'"),
        ({"deny": "rm"}, "commands.deny"),
        ({"block": ["rm"]}, "commands.block: unknown key; allowed keys here: allow, deny"),
    ],
)
def test_bad_policy_names_the_key_and_the_fix(commands: dict[str, Any], where: str) -> None:
    with pytest.raises(ScenarioError) as err:
        validate_scenario(scenario_dict(commands=commands))
    assert where in str(err.value)
    if "pattern" in where:
        assert "not a valid regular expression" in str(err.value)
        assert "escape special characters" in str(err.value)
