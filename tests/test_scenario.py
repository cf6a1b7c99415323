from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sim.errors import ScenarioError
from sim.scenario import load_scenario, validate_scenario
from tests.conftest import run_cli, scenario_dict

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_scenarios_validate() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = load_scenario(path)
        assert scenario.agents, path


def test_replicas_expand_to_numbered_names() -> None:
    data = scenario_dict(agents=[{"name": "w", "replicas": 3, "steps": [{"finish": "x"}]}])
    names = [a.name for a in validate_scenario(data).expanded_agents()]
    assert names == ["w-1", "w-2", "w-3"]


def test_unknown_key_names_file_path_and_allowed_keys(tmp_path: Path) -> None:
    data = scenario_dict()
    data["limits"]["max_turn"] = 3
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, data))
    msg = str(err.value)
    assert "s.yaml" in msg and "limits.max_turn" in msg and "unknown key" in msg
    assert "max_turns" in msg  # what would be right


def test_bad_value_names_key_path_value_and_rule(tmp_path: Path) -> None:
    data = scenario_dict()
    data["agents"][0]["replicas"] = 0
    with pytest.raises(ScenarioError) as err:
        load_scenario(write(tmp_path, data))
    msg = str(err.value)
    assert "agents[0].replicas" in msg and "got 0" in msg and "greater than or equal to 1" in msg


def test_yaml_syntax_error_gives_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"s\.yaml:\d+:\d+: not valid YAML"):
        load_scenario(write(tmp_path, "name: x\nagents: [\n  - {a: 1\n"))


def test_a_key_given_twice_is_an_error_not_the_last_one_silently(tmp_path: Path) -> None:
    text = "name: x\nagents:\n  - name: a\n    steps: [{finish: ok}]\n    name: b\n"
    with pytest.raises(
        ScenarioError, match=r"s\.yaml:5:5: not valid YAML: the key 'name' is given"
    ):
        load_scenario(write(tmp_path, text))


def test_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="a scenario is a YAML mapping"):
        load_scenario(write(tmp_path, "- 1\n- 2\n"))


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the scenario file"):
        load_scenario(tmp_path / "nope.yaml")


def test_scripted_agent_needs_steps_or_policy() -> None:
    with pytest.raises(ScenarioError, match=r"exactly one of `steps` or `policy`"):
        validate_scenario(scenario_dict(agents=[{"name": "a"}]))


def test_bad_step_and_unknown_tool_are_named() -> None:
    with pytest.raises(ScenarioError, match=r"agents\[0\]\.steps.*step 0"):
        validate_scenario(scenario_dict(agents=[{"name": "a", "steps": [{"rm": "-rf /"}]}]))
    with pytest.raises(ScenarioError, match=r"unknown tool 'web'"):
        validate_scenario(
            scenario_dict(agents=[{"name": "a", "tools": ["web"], "steps": [{"finish": ""}]}])
        )


def test_duplicate_agent_names_rejected() -> None:
    agents = [{"name": "a", "steps": [{"finish": ""}]}] * 2
    with pytest.raises(ScenarioError, match="two agents are named 'a'"):
        validate_scenario(scenario_dict(agents=agents))


def test_workspace_paths_cannot_escape() -> None:
    with pytest.raises(ScenarioError, match="must be relative"):
        validate_scenario(scenario_dict(workspace={"shared": {"../x": "1"}}))


def test_overrides_apply_and_validate(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict())
    s = load_scenario(
        path,
        ["limits.max_turns=5", "agents.0.replicas=32", "agents.0.params.use_lock=false"],
    )
    assert s.limits.max_turns == 5
    assert len(s.expanded_agents()) == 32
    assert s.agents[0].params == {"use_lock": False}
    with pytest.raises(ScenarioError, match=r"limits\.max_turns"):
        load_scenario(path, ["limits.max_turns=-1"])
    with pytest.raises(ScenarioError, match="use an index from 0 to 0"):
        load_scenario(path, ["agents.3.replicas=2"])
    with pytest.raises(ScenarioError, match=r"KEY\.PATH=VALUE"):
        load_scenario(path, ["limits.max_turns"])
    # an error a --set brings in names the --set, not only the file
    from_set = r"with --set limits\.max_turn=5: limits\.max_turn: unknown"
    with pytest.raises(ScenarioError, match=from_set):
        load_scenario(path, ["limits.max_turn=5"])
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ScenarioError, match="the file is empty"):
        load_scenario(empty)


def test_cli_validate_and_schema_exit_codes(tmp_path: Path) -> None:
    good = write(tmp_path, scenario_dict(), "good.yaml")
    bad = write(tmp_path, {"name": "x", "agents": [{"name": "A!", "steps": []}]}, "bad.yaml")
    run = run_cli
    ok = run("validate", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    err = run("validate", str(bad))
    assert err.returncode == 2
    assert "bad.yaml: agents[0].name" in err.stderr and "Traceback" not in err.stderr
    schema = run("schema")
    assert schema.returncode == 0 and '"agents"' in schema.stdout


def test_a_policy_that_cannot_be_imported_fails_validate_and_run_up_front(tmp_path: Path) -> None:
    spec = {"name": "p", "agents": [{"name": "a", "policy": "no_such_module_here:fn"}]}
    path = write(tmp_path, spec, "policy.yaml")
    for command in (["validate", str(path)], ["run", str(path), "--runs-dir", str(tmp_path / "r")]):
        proc = run_cli(*command)
        assert proc.returncode == 2, proc.stderr
        assert "agents: a: policy 'no_such_module_here:fn': cannot import" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()  # no run directory for a run that could not start
