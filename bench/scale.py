"""How many agent turns per second sim sustains: N scripted agents, each doing `turns` turns
of `echo` through its own real bash, with full event logging.

    python bench/scale.py [--agents 1 8 32 128] [--turns 200] [--no-clobbers]

Goal: 128 agents at 5,000 turns/s or more on 2 cores. `--no-clobbers` turns clobber detection
off (scenario `detect_clobbers: false`), to measure what the scan after each command costs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.events import read_events
from sim.runner import Run
from sim.scenario import validate_scenario


def scenario(agents: int, turns: int, clobbers: bool = True) -> dict[str, object]:
    return {
        "name": f"scale-{agents}",
        "detect_clobbers": clobbers,
        "limits": {"max_turns": turns + 1, "wall_time": 600, "command_timeout": 30},
        "agents": [
            {
                "name": "echo",
                "replicas": agents,
                "policy": "sim.policies.echo:echo_loop",
                "params": {"turns": turns},
            }
        ],
    }


def measure(
    agents: int, turns: int, runs_dir: Path, clobbers: bool = True
) -> tuple[float, float, int]:
    spec = validate_scenario(scenario(agents, turns, clobbers))

    async def main() -> Path:
        result = await Run(spec, runs_dir=runs_dir).execute()
        assert result.status == "completed", result.reason
        return result.run_dir

    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    run_dir = trio.run(main)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - start
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    events = read_events(run_dir / "events.jsonl").events
    done = sum(e["kind"] == "model_request" for e in events)
    commands = sum(e["kind"] == "command" for e in events)
    assert commands == agents * turns, (commands, agents * turns)
    # turns/s over the agents' working time: from the first turn to the last agent_end.
    first = next(e["t"] for e in events if e["kind"] == "model_request")
    last = max(e["t"] for e in events if e["kind"] == "agent_end")
    return done / (last - first), wall, len(events), cpu / done * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--no-clobbers", action="store_true", help="detect_clobbers: false")
    args = parser.parse_args()
    print(
        f"{'agents':>6} {'turns':>7} {'events':>8} {'wall s':>7} {'turns/s':>9} "
        f"{'harness CPU us/turn':>20}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.agents:
            rate, wall, events, cpu_us = measure(n, args.turns, Path(tmp), not args.no_clobbers)
            print(
                f"{n:>6} {n * (args.turns + 1):>7} {events:>8} {wall:>7.2f} {rate:>9.0f} "
                f"{cpu_us:>20.0f}"
            )
    print("goal: 128 agents at >= 5,000 turns/s")


if __name__ == "__main__":
    main()
