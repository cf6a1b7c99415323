"""A recorded run, read back: its resolved scenario and its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sim.errors import RunError
from sim.events import read_events
from sim.scenario import Scenario, validate_scenario, yaml_problem
from sim.workspace import load_meta, require_run_dir

Event = dict[str, Any]


@dataclass
class Recording:
    run_dir: Path
    scenario: Scenario
    events: list[Event]
    torn_line: str | None = None  # a partial last line a crash left, not in `events`
    meta: dict[str, Any] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["kind"] == kind]

    def responses(self, agent: str) -> list[Event]:
        return [e for e in self.of_kind("model_response") if e["agent"] == agent]

    def round_orders(self) -> list[list[str]]:
        return [e["order"] for e in self.of_kind("round")]


def load_recording(run_dir: Path) -> Recording:
    """Read a run directory; RunError if it is not one."""
    require_run_dir(run_dir, "scenario.yaml", "events.jsonl")
    scenario_path, events_path = run_dir / "scenario.yaml", run_dir / "events.jsonl"
    # libyaml's loader, when PyYAML has it: this file is written by the harness, so the pure
    # Python loader's friendlier errors are not needed, and it is ~10x slower (a replay's start).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(scenario_path.read_text(encoding="utf-8"), Loader=loader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else f": {exc}"
        raise RunError(
            f"{scenario_path}{problem}. sim wrote this file: put back the original (it is the "
            "scenario the run ran), or run the scenario anew"
        ) from exc
    scenario = validate_scenario(data, str(scenario_path))
    contents = read_events(events_path)
    meta = load_meta(run_dir)
    return Recording(run_dir, scenario, contents.events, contents.torn_line, meta)
