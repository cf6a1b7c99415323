"""Policies used by the tests."""

from __future__ import annotations

from sim.models.scripted import Observation, Step


def explode(obs: Observation) -> Step:
    raise RuntimeError("policy blew up")


def touch_flag_at_turn_3(obs: Observation) -> Step:
    if obs.turn == 3:
        return {"bash": 'touch "$SIM_SHARED/flag"'}
    return {"bash": "sleep 0.01"}
