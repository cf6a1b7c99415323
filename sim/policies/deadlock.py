"""Take two locks one after the other, and back off when the harness reports a deadlock.

params: `first`, `second` (lock names in shared/), `work` (a shell command run while holding
both, default: append the agent's name to shared/log.txt).

Two agents with the locks in opposite order deadlock: each holds its first lock and waits for
its second. The harness refuses the lock call that closes the cycle; this policy then does
what the error says (unlock the first lock, take both again) and finishes its work.
"""

from __future__ import annotations

from sim.models.scripted import Observation, Step


def two_locks(obs: Observation) -> Step | list[Step] | None:
    first, second = str(obs.params["first"]), str(obs.params["second"])
    work = str(obs.params.get("work", 'echo "$SIM_AGENT" >> "$SIM_SHARED/log.txt"'))
    s = obs.state
    step = s.get("step", "start")
    last = obs.last
    if step == "start":
        s["step"] = "took_first"
        return {"lock": first}
    if step == "took_first":
        s["step"] = "took_second"
        return {"lock": second}
    if step == "took_second":
        if last is not None and last.is_error and "deadlock" in last.output:
            s["backed_off"] = s.get("backed_off", 0) + 1
            s["step"] = "start"
            return {"unlock": first}
        s["step"] = "worked"
        return {"bash": work}
    if step == "worked":
        s["step"] = "released"
        return [{"unlock": second}, {"unlock": first}]
    return {"finish": f"did the work holding {first} and {second}"}
