"""Increment a number in a shared file, reading and writing in separate shell commands.

params: `times` (increments to make), `use_lock` (take the file's lock around each
read-modify-write), `file` (default counter.txt, in shared/).

Without the lock, two agents can read the same value and both write value+1: a lost update.
The write is an absolute value (`echo 7 > counter.txt`), so redoing an interrupted write
with the same value is safe while the lock is held.
"""

from __future__ import annotations

import re

from sim.models.scripted import Observation, Step

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
    while True:
        if s["done"] >= times:
            return {"finish": f"incremented {path} {times} times"}
        phase = s["phase"]
        s["phase"] = _PHASES[(_PHASES.index(phase) + 1) % len(_PHASES)]
        if phase == "lock" and use_lock:
            return {"lock": path}
        if phase == "read":
            return {"bash": f'cat "$SIM_SHARED/{path}"'}
        if phase == "write":
            # A read racing a write (`echo 7 > f` truncates first) can see an empty file: 0.
            digits = re.match(r"\d+", last.output.strip()) if last and not last.is_error else None
            value = int(digits.group()) + 1 if digits else 1
            s["value"] = value
            return {"bash": f'echo {value} > "$SIM_SHARED/{path}"'}
        if phase == "unlock":
            s["done"] += 1
            if use_lock:
                return {"unlock": path}
