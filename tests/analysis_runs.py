"""Real runs for the analysis tests: the shipped scenarios, run through sim.runner.Run."""

from __future__ import annotations

from pathlib import Path

import trio

from sim.runner import Run
from sim.scenario import load_scenario
from tests.conftest import counter_only

ROOT = Path(__file__).resolve().parent.parent


def real_run(runs_dir: Path, scenario: str, overrides: list[str] | None = None) -> Path:
    """Run `scenarios/<scenario>.yaml` with `--set` style overrides; return the run dir.
    counter_race runs its locked `counter` agents alone (see tests.conftest.counter_only)."""
    if scenario == "counter_race":
        spec = counter_only(overrides)
    else:
        spec = load_scenario(ROOT / "scenarios" / f"{scenario}.yaml", overrides or [])

    async def main() -> Path:
        result = await Run(spec, runs_dir=runs_dir).execute()
        assert result.status == "completed", result.reason
        return result.run_dir

    return trio.run(main)


def counter_race(runs_dir: Path, *, seed: int, use_lock: bool, replicas: int = 4) -> Path:
    """A small counter_race; unlocked runs take turns round robin so updates are lost in an
    order the seed decides."""
    overrides = [
        f"seed={seed}",
        f"agents.0.replicas={replicas}",
        "agents.0.params.times=5",
        f"agents.0.params.use_lock={'true' if use_lock else 'false'}",
    ]
    if not use_lock:
        overrides.append("scheduler=round_robin")
    return real_run(runs_dir, "counter_race", overrides)
