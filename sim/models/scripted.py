"""The scripted model: deterministic, offline brains that answer in the Messages format.

Two kinds, both deterministic for a seed:

- steps listed in the scenario, one tool call each, in order (`- bash: "echo hi"`,
  `- lock: counter.txt`, `- unlock: counter.txt`, `- finish: "done"`); when the steps run out
  the agent finishes;
- a Python policy, `policy: package.module:function`, called once per turn with an
  `Observation` and returning the next step(s) in the same format (or None to finish).
"""

from __future__ import annotations

import importlib
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.errors import ScenarioError
from sim.mailbox import is_delivery
from sim.models.base import Block, ModelRequest, Reply

# How a step's short form maps to a tool's input: `- lock: counter.txt` -> {"path": ...}.
_SHORT_FORM = {
    "bash": "command",
    "lock": "path",
    "unlock": "path",
    "finish": "summary",
}

Step = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """The result of one tool call, as the policy sees it."""

    name: str
    input: dict[str, Any]
    output: str
    is_error: bool


@dataclass
class Observation:
    """What a policy sees at each turn."""

    agent: str
    turn: int  # 1-based
    results: list[Outcome]  # the previous turn's tool results, in call order
    params: dict[str, Any]
    rng: random.Random  # seeded from the scenario seed and the agent's name
    state: dict[str, Any] = field(default_factory=dict)  # the policy's memory across turns
    # messages from other agents that arrived this turn, "[message from alice] ..." (sim.mailbox)
    inbox: list[str] = field(default_factory=list)

    @property
    def last(self) -> Outcome | None:
        return self.results[-1] if self.results else None


Policy = Callable[[Observation], "Step | Sequence[Step] | None"]


def agent_rng(seed: int, agent: str) -> random.Random:
    # String seeds hash with SHA-512 in `random`, so this is stable across processes/platforms.
    return random.Random(f"{seed}:{agent}")


def step_to_call(step: Step) -> tuple[str, dict[str, Any]]:
    """`{"bash": "echo hi"}` -> ("bash", {"command": "echo hi"}); a dict value is the input."""
    if not isinstance(step, dict) or len(step) != 1:
        raise ScenarioError(f"a step is one tool call such as {{'bash': 'echo hi'}} (got {step!r})")
    name, value = next(iter(step.items()))
    if isinstance(value, dict):
        return name, dict(value)
    key = _SHORT_FORM.get(name)
    if key is None:
        raise ScenarioError(f"step {step!r}: tool {name!r} takes a mapping of its input")
    return name, {key: "" if value is None else str(value)}


def load_policy(ref: str, search_dir: Path | None = None) -> Policy:
    """Import `package.module:function`. The scenario's directory is searched too, so a
    scenario can ship its policy beside it."""
    module_name, _, func_name = ref.partition(":")
    if search_dir is not None and str(search_dir) not in sys.path:
        sys.path.append(str(search_dir))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError(
            f"policy {ref!r}: cannot import module {module_name!r} ({exc}); put it on PYTHONPATH "
            "or beside the scenario file"
        ) from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ScenarioError(f"policy {ref!r}: {module_name} has no function {func_name!r}")
    return func  # type: ignore[no-any-return]


class ScriptedModel:
    """A Model that plays a step list or a policy. One instance per agent (it keeps state)."""

    name = "scripted"
    stateful = True  # a fork steps it through replayed turns to rebuild its memory

    def __init__(
        self,
        *,
        seed: int,
        agent: str,
        params: dict[str, Any],
        steps: list[Step] | None = None,
        policy: Policy | None = None,
    ) -> None:
        if (steps is None) == (policy is None):
            raise ValueError("ScriptedModel needs exactly one of steps or policy")
        self._steps = list(steps or [])
        self._policy = policy
        self._obs = Observation(
            agent=agent, turn=0, results=[], params=dict(params), rng=agent_rng(seed, agent)
        )
        self._last_calls: dict[str, tuple[str, dict[str, Any]]] = {}

    def _observe(self, request: ModelRequest) -> None:
        results: list[Outcome] = []
        inbox: list[str] = []
        last = request.messages[-1] if request.messages else None
        if last is not None and last.get("role") == "user" and isinstance(last["content"], list):
            for block in last["content"]:
                if block.get("type") == "tool_result":
                    name, args = self._last_calls.get(block["tool_use_id"], ("?", {}))
                    results.append(
                        Outcome(name, args, _text_of(block), bool(block.get("is_error")))
                    )
                elif block.get("type") == "text" and is_delivery(block["text"]):
                    inbox.append(block["text"])  # not the task, which is a text block too
        self._obs.turn = request.turn
        self._obs.results = results
        self._obs.inbox = inbox

    def _next_steps(self) -> list[Step]:
        if self._policy is None:
            index = self._obs.turn - 1
            return [self._steps[index]] if index < len(self._steps) else []
        out = self._policy(self._obs)
        if out is None:
            return []
        return [out] if isinstance(out, dict) else list(out)

    async def respond(self, request: ModelRequest) -> Reply:
        self._observe(request)
        self._last_calls.clear()
        steps = self._next_steps() or [{"finish": "no steps left"}]
        content: list[Block] = []
        for i, step in enumerate(steps):
            name, args = step_to_call(step)
            tool_id = f"toolu_{request.agent}_{request.turn}_{i}"
            self._last_calls[tool_id] = (name, args)
            content.append({"type": "tool_use", "id": tool_id, "name": name, "input": args})
        return Reply(content=content, stop_reason="tool_use", usage={}, model="scripted")

    async def aclose(self) -> None:
        return None


def _text_of(block: Block) -> str:
    content = block.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))
