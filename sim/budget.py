"""Token and USD accounting, and the budget limits an agent checks before each model call.

`limits.max_tokens` and `limits.budget_usd` are per agent, `limits.run_budget_usd` is for the
whole run. A call is not made once the spend so far has reached a limit: the agent ends with
reason `budget` and a `limit` event names which one. The cost of a call is known only after
it, so a run can pass a budget by at most the calls already in flight when it was reached
(one per agent at most).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sim.scenario import Limits

_TOKEN_FIELDS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
)


def usage_tokens(usage: Mapping[str, Any]) -> int:
    """Every token a response counted: fresh input, cache writes, cache reads and output."""
    return sum(int(usage.get(key) or 0) for key in _TOKEN_FIELDS)


def add_cost(total: float | None, cost: float | None, model: str) -> float | None:
    """A running USD total: None (unknown) once any priced model's response had no price.
    Scripted models cost nothing and carry no price."""
    if total is None or (cost is None and model != "scripted"):
        return None
    return total + (cost or 0.0)


def over_budget(
    limits: Limits, *, tokens: int, cost: float | None, run_cost: Callable[[], float | None]
) -> tuple[str, float] | None:
    """The first limit the spend has reached, as (limit name, its value), or None.
    `run_cost` is called only when there is a run budget (it sums over every agent).
    An unknown cost (None) never trips a USD limit; `check_ready` refuses budgets on models
    without a price, so that happens only when a budget was not asked for."""
    if limits.max_tokens is not None and tokens >= limits.max_tokens:
        return "max_tokens", limits.max_tokens
    if limits.budget_usd is not None and cost is not None and cost >= limits.budget_usd:
        return "budget_usd", limits.budget_usd
    if limits.run_budget_usd is not None:
        spent = run_cost()
        if spent is not None and spent >= limits.run_budget_usd:
            return "run_budget_usd", limits.run_budget_usd
    return None
