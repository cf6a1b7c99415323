"""How much faster a replay is than the run it replays: the model's time is not spent again.

Records a Claude run against the local fake Messages API (tests/fake_anthropic.py, real HTTP
on 127.0.0.1) that answers each call after `--latency` seconds, like a real model, then
re-simulates it with `sim.replay.resimulate` (recorded responses, real shells) and prints the
two run durations and their ratio.

    python bench/replay_speed.py [--agents 4] [--turns 10] [--latency 1.0] [--repeat 5]

The recording is replayed `repeat` times; the figures are the median replay and the range.

The replay runs in a fresh process, as `python -m sim replay` does: after recording, this
process holds the SDK and the whole recorded run in memory, and every shell's fork copies the
page tables of all of it (each start took 15-27 ms here instead of ~9). Both durations leave
out the interpreter's start and the imports.

Goal: the replay 100x faster or more.

It also prints the CPU the replay cost: the harness's (its process) and the shells' (bash and
the recorded commands run again, counted once the shells are reaped). The commands must run
for real, so the replay cannot take less than the larger of the harness's CPU (one thread) and
all of it spread over the CPUs it may use: "best possible" is the ratio that floor allows, an
upper bound (kernel work done in other threads, the pty's, is not counted).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
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


CPUS = len(os.sched_getaffinity(0))  # the CPUs this process may run on


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def _replay_elsewhere(run_dir: Path, runs_dir: Path) -> dict[str, Any]:
    """Re-simulate `run_dir` in a fresh Python process; what `_replay_here` measured there."""
    out = subprocess.run(
        [sys.executable, __file__, "--replay", str(run_dir), "--runs-dir", str(runs_dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.splitlines()[-1]))


def _replay_here(run_dir: Path, runs_dir: Path) -> None:
    async def replay() -> Any:
        return await resimulate(run_dir, runs_dir=runs_dir, env={"PATH": "/usr/bin:/bin"})

    start = time.perf_counter()
    harness, shells = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    result, report = trio.run(replay)
    measured = {
        "wall": time.perf_counter() - start,
        "harness": _cpu(resource.RUSAGE_SELF) - harness,
        "shells": _cpu(resource.RUSAGE_CHILDREN) - shells,
        "status": result.status,
        "reason": result.reason,
        "divergences": len(report.divergences),
    }
    print(json.dumps(measured))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds per model call")
    parser.add_argument("--repeat", type=int, default=5, help="replays of the one recording")
    parser.add_argument("--replay", type=Path, help=argparse.SUPPRESS)  # the fresh process
    parser.add_argument("--runs-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replay:
        _replay_here(args.replay, args.runs_dir)
        return
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
        replays = [_replay_elsewhere(original.run_dir, Path(tmp)) for _ in range(args.repeat)]
    for replayed in replays:
        assert replayed["status"] == "completed", replayed["reason"]
    walls = sorted(r["wall"] for r in replays)
    median = statistics.median(walls)
    harness = statistics.median(r["harness"] for r in replays)
    shells = statistics.median(r["shells"] for r in replays)
    floor = max(harness, (harness + shells) / CPUS)
    divergences = max(r["divergences"] for r in replays)
    calls = args.agents * (args.turns + 1)
    print(f"{args.agents} agents x {args.turns + 1} model calls, {args.latency:g} s latency each")
    print(f"recorded run: {recorded:8.3f} s   ({calls} calls)")
    print(
        f"replay:       {median:8.3f} s   (median of {len(walls)}: "
        f"{walls[0]:.3f}-{walls[-1]:.3f} s; {divergences} divergences)"
    )
    print(
        f"ratio:        {recorded / median:8.0f}x   ({recorded / walls[-1]:.0f}x-"
        f"{recorded / walls[0]:.0f}x; goal: 100x or more)"
    )
    print(
        f"replay CPU:   harness {harness * 1e3:.0f} ms, shells and commands {shells * 1e3:.0f} ms "
        f"on {CPUS} CPUs (medians): best possible {recorded / floor:.0f}x (an upper bound)"
    )


if __name__ == "__main__":
    main()
