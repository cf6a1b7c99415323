"""How many agent turns per second sim sustains: N scripted agents, each doing `turns` turns
of `echo` through its own real bash, with full event logging.

    python bench/scale.py [--agents 1 8 32 128] [--turns 200] [--no-clobbers]

Goal: 128 agents at 5,000 turns/s or more on 2 cores. `--no-clobbers` turns clobber detection
off (scenario `detect_clobbers: false`), to measure what the scan after each command costs.

Besides turns/s it prints the CPU each turn costs. "harness": this process, over the agents'
working time, like turns/s. The harness is one thread, so "ceiling" = 1 / that is the most
turns/s it allows. "shells": bash and what it ran, counted once the shells are reaped, so over
the whole run, each shell's start and close included (~6 ms a shell). The last line: the CPUs
this process may use, and the most turns/s they could carry at harness + shells per turn,
however the harness were split. Both bounds leave out kernel work done in other threads (the
pty's), so they are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.events import Payload, read_events
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


@dataclass
class Measured:
    rate: float  # turns/s over the agents' working time
    wall: float  # the whole run, start-up and teardown included
    events: int
    harness_us: float  # CPU of this process per turn, over the agents' working time
    shells_us: float  # CPU of the shells and their commands per turn, over the whole run

    @property
    def ceiling(self) -> float:
        """The most turns/s one harness thread allows at this CPU per turn."""
        return 1e6 / self.harness_us


CPUS = len(os.sched_getaffinity(0))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime  # children: those reaped so far, with their own


def measure(agents: int, turns: int, runs_dir: Path, clobbers: bool = True) -> Measured:
    spec = validate_scenario(scenario(agents, turns, clobbers))
    # The harness's CPU is read over the same window as the rate: from the first turn to the
    # last agent_end, from the live event stream.
    window: dict[str, float] = {}

    def listen(agent: str | None, payload: Payload) -> None:
        if payload.kind == "model_request":
            if "cpu0" not in window:  # (setdefault would read the clock at every turn)
                window["cpu0"] = time.process_time()
        elif payload.kind == "agent_end":
            window["cpu1"] = time.process_time()

    async def main() -> Path:
        run = Run(spec, runs_dir=runs_dir, on_start=lambda r: r.events.subscribe(listen))
        result = await run.execute()
        assert result.status == "completed", result.reason
        return result.run_dir

    start = time.perf_counter()
    shells0 = _cpu(resource.RUSAGE_CHILDREN)
    run_dir = trio.run(main)
    shells = _cpu(resource.RUSAGE_CHILDREN) - shells0
    wall = time.perf_counter() - start
    events = read_events(run_dir / "events.jsonl").events
    done = sum(e["kind"] == "model_request" for e in events)
    commands = sum(e["kind"] == "command" for e in events)
    assert commands == agents * turns, (commands, agents * turns)
    # turns/s over the agents' working time: from the first turn to the last agent_end.
    first = next(e["t"] for e in events if e["kind"] == "model_request")
    last = max(e["t"] for e in events if e["kind"] == "agent_end")
    harness = window["cpu1"] - window["cpu0"]
    return Measured(
        done / (last - first), wall, len(events), harness / done * 1e6, shells / done * 1e6
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--no-clobbers", action="store_true", help="detect_clobbers: false")
    args = parser.parse_args()
    print(
        f"{'agents':>6} {'turns':>7} {'events':>8} {'wall s':>7} {'turns/s':>9} "
        f"{'CPU us/turn: harness':>21} {'shells':>7} {'ceiling':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.agents:
            m = measure(n, args.turns, Path(tmp), not args.no_clobbers)
            print(
                f"{n:>6} {n * (args.turns + 1):>7} {m.events:>8} {m.wall:>7.2f} {m.rate:>9.0f} "
                f"{m.harness_us:>21.0f} {m.shells_us:>7.0f} {m.ceiling:>8.0f}"
            )
    machine = CPUS * 1e6 / (m.harness_us + m.shells_us)
    print(
        f"{CPUS} CPUs: at most {machine:,.0f} turns/s at {n} agents' harness + shells CPU per "
        "turn, however the harness were split"
    )
    print("goal: 128 agents at >= 5,000 turns/s")


if __name__ == "__main__":
    main()
