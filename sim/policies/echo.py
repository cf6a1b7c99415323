"""Run `echo` for `turns` turns, then finish: the load of the scale benchmark."""

from __future__ import annotations

from sim.models.scripted import Observation, Step


def echo_loop(obs: Observation) -> Step:
    turns = int(obs.params.get("turns", 10))
    if obs.turn > turns:
        return {"finish": f"echoed {turns} times"}
    return {"bash": f"echo {obs.agent} turn {obs.turn}"}
