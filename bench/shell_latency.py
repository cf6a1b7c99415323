"""Round-trip latency of sim's Shell beside a bare pexpect + wait_readable loop.

    python bench/shell_latency.py [--n 2000] [--warmup 200]

For each of `true`, `echo hi` and `/bin/true`, runs --n commands through `sim.shell.Shell` and
through a bare loop (pexpect-spawned bash, PROMPT_COMMAND printing a fixed sentinel, one
os.write, wait_readable + os.read until the sentinel), alternating in blocks of 20 so both
see the same machine noise. Prints p50/p99 in microseconds and sim_p50 / bare_p50 (goal <= 1.5).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pexpect
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sim.environment import scrubbed_env
from sim.shell import Shell

COMMANDS = ("true", "echo hi", "/bin/true")
BLOCK = 20
_SENTINEL = re.compile(rb"\x1e(\d+)\x1f")


class BareShell:
    """The floor: what any pty + sentinel design costs, with nothing else."""

    def __init__(self, cwd: str, env: dict[str, str]) -> None:
        self.proc = pexpect.spawn(
            "bash", ["--noediting", "--norc", "--noprofile", "-i"], cwd=cwd, env=env, echo=False
        )
        self.fd = self.proc.child_fd
        os.set_blocking(self.fd, False)

    async def start(self) -> None:
        os.write(self.fd, b"PS1=; PROMPT_COMMAND='printf \"\\036%s\\037\" $?'\n")
        await self.run(b"true")
        await self.run(b"true")

    async def run(self, command: bytes) -> bytes:
        os.write(self.fd, command + b"\n")
        buf = b""
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            buf += os.read(self.fd, 65536)
            if _SENTINEL.search(buf):
                return buf

    def close(self) -> None:
        self.proc.close(force=True)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _measure(n: int, warmup: int) -> dict[str, tuple[list[float], list[float]]]:
    tmp = tempfile.mkdtemp(prefix="sim-bench-")
    env = scrubbed_env(os.environ, Path(tmp))
    bare = BareShell(tmp, env)
    await bare.start()
    out: dict[str, tuple[list[float], list[float]]] = {}
    async with Shell(Path(tmp), env) as sh:
        for cmd in COMMANDS:
            raw = cmd.encode()
            for _ in range(warmup):
                await sh.run(cmd, 10)
                await bare.run(raw)
            sim_t: list[float] = []
            bare_t: list[float] = []
            while len(sim_t) < n:
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    r = await sh.run(cmd, 10)
                    sim_t.append(time.perf_counter() - t0)
                    assert r.exit_code == 0, r
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    await bare.run(raw)
                    bare_t.append(time.perf_counter() - t0)
            out[cmd] = (sim_t, bare_t)
    bare.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="measured commands per kind (>= 1000)")
    ap.add_argument("--warmup", type=int, default=200)
    args = ap.parse_args()
    results = trio.run(_measure, args.n, args.warmup)
    cols = ("sim p50", "sim p99", "bare p50", "bare p99")
    print(f"{'command':<10} " + " ".join(f"{c:>9}" for c in cols) + f" {'ratio':>6}")
    print(f"{'':<10} " + " ".join(f"{'(µs)':>9}" for _ in cols) + f" {'p50':>6}")
    for cmd, (sim_t, bare_t) in results.items():
        s50, b50 = statistics.median(sim_t), statistics.median(bare_t)
        print(
            f"{cmd:<10} {s50 * 1e6:9.0f} {_pct(sim_t, 0.99) * 1e6:9.0f} "
            f"{b50 * 1e6:9.0f} {_pct(bare_t, 0.99) * 1e6:9.0f} {s50 / b50:6.2f}"
        )
    print(f"goal: ratio <= 1.5; {args.n} commands of each kind after {args.warmup} warmup")


if __name__ == "__main__":
    main()
