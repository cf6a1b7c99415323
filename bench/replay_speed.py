"""How much faster a replay is than the run it replays: the model's time is not spent again.

Records a Claude run against the local fake Messages API (tests/fake_anthropic.py, real HTTP
on 127.0.0.1) that answers each call after `--latency` seconds, like a real model, then
re-simulates it with `sim.replay.resimulate` (recorded responses, real shells) and prints the
two run durations and their ratio.

    python bench/replay_speed.py [--agents 4] [--turns 10] [--latency 1.0]

Goal: the replay 100x faster or more.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.replay import resimulate
from sim.runner import Run
from sim.scenario import validate_scenario
from tests.fake_anthropic import FakeAnthropic, Turn, bash, finish


def scenario(agents: int, turns: int) -> dict[str, Any]:
    return {
        "name": "replay-speed",
        "limits": {"max_turns": turns + 5, "wall_time": 3600},
        "agents": [
            {
                "name": "worker",
                "replicas": agents,
                "model": "claude-sonnet-4-5",
                "task": "Count your files, a few times.",
                "tools": ["bash", "finish"],
            }
        ],
    }


def slow_model(turns: int, latency: float) -> Any:
    def respond(body: dict[str, Any]) -> Turn:
        done = sum(m.get("role") == "assistant" for m in body.get("messages", []))
        if done >= turns:
            return Turn([finish("done")], delay=latency)
        return Turn([bash(f"ls -la | wc -l; echo turn {done}")], delay=latency)

    return respond


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    args = parser.parse_args()
    spec = validate_scenario(scenario(args.agents, args.turns))
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeAnthropic(respond=slow_model(args.turns, args.latency)) as api,
    ):
        env = {
            "ANTHROPIC_API_KEY": api.key,
            "ANTHROPIC_BASE_URL": api.base_url,
            "PATH": "/usr/bin:/bin",
        }

        async def record() -> Any:
            return await Run(spec, runs_dir=Path(tmp), env=env).execute()

        start = time.perf_counter()
        original = trio.run(record)
        recorded = time.perf_counter() - start
        assert original.status == "completed", original.reason

        async def replay() -> Any:
            return await resimulate(
                original.run_dir, runs_dir=Path(tmp), env={"PATH": "/usr/bin:/bin"}
            )

        start = time.perf_counter()
        result, report = trio.run(replay)
        replayed = time.perf_counter() - start
        assert result.status == "completed", result.reason
    calls = args.agents * (args.turns + 1)
    print(f"{args.agents} agents x {args.turns + 1} model calls, {args.latency:g} s latency each")
    print(f"recorded run: {recorded:8.3f} s   ({calls} calls)")
    print(f"replay:       {replayed:8.3f} s   ({len(report.divergences)} divergences)")
    print(f"ratio:        {recorded / replayed:8.0f}x   (goal: 100x or more)")


if __name__ == "__main__":
    main()
