"""Brains: the Model protocol and the factory that picks one for an agent."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from sim.errors import ScenarioError
from sim.models.base import Model, ModelRequest, Reply
from sim.models.scripted import ScriptedModel, load_policy
from sim.scenario import AgentConfig, Scenario

__all__ = ["Model", "ModelRequest", "Reply", "ScriptedModel", "make_model"]


def make_model(
    cfg: AgentConfig, scenario: Scenario, scenario_dir: Path | None, env: Mapping[str, str]
) -> Model:
    """The model for one agent, as its spec names it."""
    spec = cfg.spec
    if spec.model == "scripted":
        policy = load_policy(spec.policy, scenario_dir) if spec.policy else None
        return ScriptedModel(
            seed=scenario.seed, agent=cfg.name, params=spec.params, steps=spec.steps, policy=policy
        )
    raise ScenarioError(
        f"agents: {cfg.name}: model {spec.model!r} is not available; use model: scripted"
    )
