"""Brains: the Model protocol and the factory that picks one for an agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sim.errors import RunError, ScenarioError
from sim.models.base import Model, ModelRequest, Reply
from sim.models.scripted import ScriptedModel, load_policy
from sim.scenario import AgentConfig, Scenario

__all__ = [
    "Model",
    "ModelRequest",
    "Reply",
    "ScriptedModel",
    "check_ready",
    "make_model",
    "open_client",
]


def _claude() -> ModuleType:
    """The Claude backend, imported on first use: importing the anthropic SDK takes ~1.5 s,
    which every offline run and every `sim validate` would pay otherwise."""
    from sim.models import anthropic as claude

    return claude


def _has_claude(scenario: Scenario) -> bool:
    return any(cfg.spec.is_claude for cfg in scenario.expanded_agents())


def check_ready(scenario: Scenario, env: Mapping[str, str]) -> None:
    """RunError, before anything starts, if a Claude scenario cannot run (sim.models.anthropic);
    nothing to check without Claude agents."""
    if _has_claude(scenario):
        _claude().check_ready(scenario, env)


def check_policies(scenario: Scenario, scenario_dir: Path | None) -> None:
    """ScenarioError, before anything starts, if an agent's `policy` cannot be imported."""
    for spec in scenario.agents:
        if spec.policy:
            try:
                load_policy(spec.policy, scenario_dir)
            except ScenarioError as exc:
                raise ScenarioError(f"agents: {spec.name}: {exc}") from None


@asynccontextmanager
async def open_client(scenario: Scenario, env: Mapping[str, str]) -> AsyncIterator[Any]:
    """The run's one AsyncAnthropic, closed afterwards; None when no agent is Claude."""
    if not _has_claude(scenario):
        yield None
        return
    async with _claude().open_client(scenario, env) as client:
        yield client


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
        model: Model = _claude().ClaudeModel(client, model=spec.model, api=scenario.api)
        return model
    if spec.model == "scripted":
        policy = load_policy(spec.policy, scenario_dir) if spec.policy else None
        return ScriptedModel(
            seed=scenario.seed, agent=cfg.name, params=spec.params, steps=spec.steps, policy=policy
        )
    raise ScenarioError(
        f"agents: {cfg.name}: model {spec.model!r} is not available; use model: scripted or "
        "a Claude model such as claude-sonnet-4-5"
    )
