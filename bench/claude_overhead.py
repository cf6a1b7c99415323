"""What sim costs on the Claude path: requests/s of N sim agents vs a bare SDK loop.

    python bench/claude_overhead.py [--agents 1 8 32 64] [--turns 30] [--repeat 7]
                                    [--bare-reads-json]

A fake Messages API (tests/fake_anthropic.py) runs in its own process and answers at once:
`turns` calls of the text editor's `view` on a small file, then `finish`. Against it, in this
process, alternating, `repeat` times each:

- bare: N trio tasks sharing one AsyncAnthropic, each sending the same growing conversation as
  a sim agent would (same system prompt, tools and tool-result text), nothing else. It reads
  each reply as the SDK's typed Message, as the SDK's README does; sim reads the reply's JSON
  and checks it itself, which costs less (~0.2 ms a call). `--bare-reads-json` makes the bare
  loop read JSON too, to show what sim's own work costs apart from that saving;
- sim: a run of N Claude agents: one shared client, a real shell per agent, the tool calls,
  event log, tally, budget checks, cache marks and trimming estimate.

Reported (medians): requests/s and CPU ms per request. Sim's steady figures cover the time
while every agent runs: from the last agent's start to the first `finish` call (read from the
live event stream); "whole run" adds start-up and teardown (run directory, shells, client,
closing). Bare has no start-up but its client, which is left out of its figures too.
The ratios sim/bare use the steady figures, each taken between a sim run and the bare run next
to it (the machine's speed drifts over seconds), and give the median and range of those pairs;
CPU per request is the figure that holds when the machine is shared (throughput then depends
on what else runs). Goal: sim at 90% of bare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from anthropic import AsyncAnthropic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.events import Payload, ToolCall  # noqa: E402
from sim.runner import Run  # noqa: E402
from sim.scenario import validate_scenario  # noqa: E402
from sim.tools import build_tools  # noqa: E402
from tests.fake_anthropic import KEY  # noqa: E402  (the fake server accepts only its key)

MODEL = "claude-sonnet-5-5"
SYSTEM = "You are a benchmark agent. Look at note.txt with the editor until told to stop."
TOOLS = ["str_replace_based_edit_tool", "finish"]


@dataclass
class Sample:
    rate: float  # requests per second
    cpu_ms: float  # CPU of this process per request


def start_server(turns: int) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_anthropic", "--turns", str(turns)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def scenario(agents: int, turns: int, base_url: str) -> Any:
    return validate_scenario(
        {
            "name": f"claude-overhead-{agents}",
            "base_url": base_url,
            "limits": {"max_turns": turns + 2, "wall_time": 600},
            "workspace": {"agents": {"note.txt": "hello from the benchmark\n"}},
            "agents": [
                {
                    "name": "bench",
                    "replicas": agents,
                    "model": MODEL,
                    "system": SYSTEM,
                    "task": "Begin.",
                    "tools": TOOLS,
                }
            ],
        }
    )


def run_sim(agents: int, turns: int, base_url: str, runs_dir: Path) -> tuple[Sample, Sample]:
    """(steady state, whole run)."""
    spec = scenario(agents, turns, base_url)
    env = dict(os.environ, ANTHROPIC_API_KEY=KEY)
    marks: dict[str, float] = {"n": 0}

    def listen(agent: str | None, payload: Payload) -> None:
        # The window opens when the last agent starts and closes at the first `finish` call:
        # while every agent is running, with no shell being started or closed. The clocks are
        # read at the edges only: process_time() is a system call, charged to sim otherwise.
        if payload.kind == "agent_start":
            marks.update(n=0, t0=time.perf_counter(), cpu0=time.process_time())
        elif "t1" in marks:
            return
        elif payload.kind == "model_response":
            marks["n"] += 1
        elif isinstance(payload, ToolCall) and payload.name == "finish":
            marks.update(t1=time.perf_counter(), cpu1=time.process_time())

    async def main() -> Any:
        run = Run(spec, runs_dir=runs_dir, env=env, on_start=lambda r: r.events.subscribe(listen))
        result = await run.execute()
        assert result.status == "completed", result.reason
        return result

    wall, cpu = time.perf_counter(), time.process_time()
    result = trio.run(main)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    total = sum(t.turns for t in result.tally.agents.values())
    assert total == agents * (turns + 1), total
    n = marks["n"]
    steady = Sample(n / (marks["t1"] - marks["t0"]), (marks["cpu1"] - marks["cpu0"]) / n * 1e3)
    return steady, Sample(total / wall, cpu / total * 1e3)


def run_bare(agents: int, turns: int, base_url: str, read_json: bool = False) -> Sample:
    tools = [tool.definition() for tool in build_tools(TOOLS).values()]
    # The very text sim's editor returns, with a path as long as a run directory's.
    path = f"{tempfile.gettempdir()}/tmpabcdefgh/20261123-085900-757964-claude-overhead-{agents}"
    path += f"/workspace/agents/bench-{agents}/note.txt"
    result = f"Here's the content of {path} with line numbers:\n     1\thello from the benchmark"

    async def one(client: AsyncAnthropic) -> int:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Begin."}]
        calls = 0
        while True:
            request: dict[str, Any] = {
                "model": MODEL,
                "max_tokens": 8192,
                "system": SYSTEM,
                "tools": tools,
                "messages": messages,
            }
            if read_json:  # as sim reads a reply: its JSON, not the SDK's typed Message
                raw = await client.messages.with_raw_response.create(**request)
                content = json.loads(raw.http_response.content)["content"]
            else:  # the SDK as its README shows it
                msg = await client.messages.create(**request)
                content = [block.to_dict(mode="json") for block in msg.content]
            calls += 1
            messages.append({"role": "assistant", "content": content})
            uses = [b for b in content if b["type"] == "tool_use"]
            if any(b["name"] == "finish" for b in uses):
                return calls
            results = [
                {"type": "tool_result", "tool_use_id": b["id"], "content": result} for b in uses
            ]
            messages.append({"role": "user", "content": results})

    async def main() -> Sample:
        async with AsyncAnthropic(api_key=KEY, base_url=base_url, max_retries=2) as client:
            counts: list[int] = []

            async def task() -> None:
                counts.append(await one(client))

            wall, cpu = time.perf_counter(), time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(agents):
                    nursery.start_soon(task)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        total = sum(counts)
        assert total == agents * (turns + 1)
        return Sample(total / wall, cpu / total * 1e3)

    return trio.run(main)


def _median(samples: list[Sample]) -> Sample:
    return Sample(
        statistics.median(s.rate for s in samples), statistics.median(s.cpu_ms for s in samples)
    )


def _spread(ratios: list[float]) -> str:
    """The median of the paired ratios, and their range."""
    return f"{statistics.median(ratios):.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--bare-reads-json",
        action="store_true",
        help="the bare loop reads each reply's JSON, as sim does, instead of the SDK's Message",
    )
    args = parser.parse_args()
    server, base_url = start_server(args.turns)
    print(f"fake API at {base_url} (own process); {args.turns} editor turns + finish per agent")
    how = "its JSON, as sim does" if args.bare_reads_json else "the SDK's typed Message"
    print(f"bare reads each reply as {how}")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    head = (
        "agents",
        "bare req/s",
        "sim req/s",
        "ratio (range)",
        "bare cpu",
        "sim cpu",
        "ratio (range)",
        "whole run",
    )
    print("{:>6} {:>10} {:>9} {:>16} {:>9} {:>8} {:>16}  {}".format(*head))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.agents:
                bare, steady, whole = [], [], []
                for i in range(args.repeat):
                    # Adjacent runs are compared, sim first every other time: this machine's
                    # speed drifts over seconds, less between neighbours than across the table.
                    if i % 2:
                        s, w = run_sim(n, args.turns, base_url, Path(tmp))
                        bare.append(run_bare(n, args.turns, base_url, args.bare_reads_json))
                    else:
                        bare.append(run_bare(n, args.turns, base_url, args.bare_reads_json))
                        s, w = run_sim(n, args.turns, base_url, Path(tmp))
                    steady.append(s)
                    whole.append(w)
                rates = sorted(s.rate / b.rate for s, b in zip(steady, bare, strict=True))
                cpus = sorted(b.cpu_ms / s.cpu_ms for s, b in zip(steady, bare, strict=True))
                b, s, w = _median(bare), _median(steady), _median(whole)
                print(
                    f"{n:>6} {b.rate:>10.0f} {s.rate:>9.0f} {_spread(rates):>16} "
                    f"{b.cpu_ms:>7.2f}ms {s.cpu_ms:>6.2f}ms {_spread(cpus):>16}  "
                    f"{w.rate:.0f} req/s, {w.cpu_ms:.2f} ms cpu/req"
                )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
