"""Policies used by the tests."""

from __future__ import annotations

import shlex

from sim.models.scripted import Observation, Step


def explode(obs: Observation) -> Step:
    raise RuntimeError("policy blew up")


def touch_flag_at_turn_3(obs: Observation) -> Step:
    if obs.turn == 3:
        return {"bash": 'touch "$SIM_SHARED/flag"'}
    return {"bash": "sleep 0.01"}


def steps_echoing_inbox(obs: Observation) -> list[Step] | None:
    """Play params['steps'] in order, one a turn; when messages arrive, echo them in the shell
    first, so what the policy saw shows up in `command` events."""
    out: list[Step] = []
    if obs.inbox:
        out.append({"bash": "echo " + shlex.quote(" || ".join(obs.inbox))})
    i = obs.state.get("i", 0)
    steps = obs.params["steps"]
    if i < len(steps):
        out.append(steps[i])
        obs.state["i"] = i + 1
    return out or None
