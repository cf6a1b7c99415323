"""Increment a number in a shared file, reading and writing in separate shell commands.

params: `times` (increments to make), `use_lock` (take the file's lock around each
read-modify-write), `file` (default counter.txt, in shared/).

Without the lock, two agents can read the same value and both write value+1: a lost update.
The write is an absolute value (`echo 7 > counter.txt`), so redoing an interrupted write
with the same value is safe while the lock is held.
"""

from __future__ import annotations

import re
from typing import Any

from sim.models.scripted import Observation, Outcome, Step

_PHASES = ("lock", "read", "write", "unlock")


def increment(obs: Observation) -> Step:
    times = int(obs.params.get("times", 10))
    use_lock = bool(obs.params.get("use_lock", True))
    path = str(obs.params.get("file", "counter.txt"))
    s = obs.state
    s.setdefault("done", 0)
    s.setdefault("phase", "lock")
    last = obs.last
    if last is not None and last.is_error and last.name == "lock":
        return {"lock": path}  # the lock timed out: ask again
    if last is not None and last.output.startswith(("[interrupted]", "[not run]")):
        # The harness restarted mid-call (a resumed run): do the same step again. A write is
        # an absolute value and the lock is still ours, so redoing it is safe.
        return dict(s["last_step"])
    s["last_step"] = step = _next_step(s, times, use_lock, path, last)
    return step


def _next_step(s: dict[str, Any], times: int, use_lock: bool, path: str, last: object) -> Step:
    while True:
        if int(s["done"]) >= times:
            return {"finish": f"incremented {path} {times} times"}
        phase = str(s["phase"])
        s["phase"] = _PHASES[(_PHASES.index(phase) + 1) % len(_PHASES)]
        if phase == "lock" and use_lock:
            return {"lock": path}
        if phase == "read":
            return {"bash": f'cat "$SIM_SHARED/{path}"'}
        if phase == "write":
            # A read racing a write (`echo 7 > f` truncates first) can see an empty file: 0.
            ok = isinstance(last, Outcome) and not last.is_error
            digits = (
                re.match(r"\d+", last.output.strip()) if isinstance(last, Outcome) and ok else None
            )
            value = int(digits.group()) + 1 if digits else 1
            s["value"] = value
            return {"bash": f'echo {value} > "$SIM_SHARED/{path}"'}
        if phase == "unlock":
            s["done"] = int(s["done"]) + 1
            if use_lock:
                return {"unlock": path}
