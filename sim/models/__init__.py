"""Brains: the Model protocol and the factory that picks one for an agent."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.errors import RunError, ScenarioError
from sim.models.anthropic import ClaudeModel, check_ready, open_client
from sim.models.base import Model, ModelRequest, Reply
from sim.models.scripted import ScriptedModel, load_policy
from sim.scenario import AgentConfig, Scenario

__all__ = [
    "ClaudeModel",
    "Model",
    "ModelRequest",
    "Reply",
    "ScriptedModel",
    "check_ready",
    "make_model",
    "open_client",
]


def make_model(
    cfg: AgentConfig,
    scenario: Scenario,
    scenario_dir: Path | None,
    env: Mapping[str, str],
    client: Any = None,
) -> Model:
    """The model for one agent, as its spec names it. Claude models need the run's client
    (from `open_client`)."""
    spec = cfg.spec
    if spec.is_claude:
        if client is None:
            raise RunError(f"agent {cfg.name}: a Claude model needs the run's Anthropic client")
        return ClaudeModel(client, model=spec.model, api=scenario.api)
    if spec.model == "scripted":
        policy = load_policy(spec.policy, scenario_dir) if spec.policy else None
        return ScriptedModel(
            seed=scenario.seed, agent=cfg.name, params=spec.params, steps=spec.steps, policy=policy
        )
    raise ScenarioError(
        f"agents: {cfg.name}: model {spec.model!r} is not available; use model: scripted or "
        "a Claude model such as claude-sonnet-4-5"
    )
