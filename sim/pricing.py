"""USD per million tokens for Claude models, and the cost of one response's `usage`.

Figures: Anthropic's pricing page and per-model overview pages on platform.claude.com
(https://platform.claude.com/docs/en/about-claude/pricing, /docs/*/models/<model>/overview),
read through the docs index in November 2026. Columns are the page's own: base input, 5-minute
cache write, 1-hour cache write, cache hits and refreshes, output. Two rows needed judgement:

- Claude Sonnet 5.5 cache reads: the overview snapshot we could read says $0.20, but it predates
  Haiku 5.5 (7 Oct 2026); price trackers that re-read the live pricing page on 2026-10-24 report
  the cut to $0.10 from 2026-10-07, so $0.10 is used.
- Claude Haiku 5.5 is priced by prompt length: a request whose prompt (input + cache reads +
  cache writes) exceeds 100,000 tokens pays the higher row on every token, output included.

Prices change: when one does, edit `_PRICES` and the date above. A model missing from the table
gets a warning once and a cost of None ("unknown"), never zero, so totals never hide it.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_MILLION = 1_000_000
DEFAULT_CONTEXT_WINDOW = 200_000


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    output: float


@dataclass(frozen=True)
class ModelFacts:
    price: Price
    context_window: int
    long_prompt: tuple[int, Price] | None = None  # (threshold, price above it)


def _p(inp: float, w5: float, w1: float, read: float, out: float) -> Price:
    return Price(inp, w5, w1, read, out)


_1M, _200K = 1_000_000, 200_000
_FABLE_51 = ModelFacts(_p(10, 12.5, 20, 0.25, 50), _1M)
_FABLE_5 = ModelFacts(_p(10, 12.5, 20, 1.0, 50), _1M)
_OPUS_5 = ModelFacts(_p(5, 6.25, 10, 0.5, 25), _1M)
_OPUS_45 = ModelFacts(_p(5, 6.25, 10, 0.5, 25), _200K)
_OPUS_4 = ModelFacts(_p(15, 18.75, 30, 1.5, 75), _200K)
_SONNET_5 = ModelFacts(_p(2, 2.5, 4, 0.2, 10), _1M)
_SONNET_4 = ModelFacts(_p(3, 3.75, 6, 0.3, 15), _200K)

# Model ids as the API takes them, without a date suffix (`-20250929`) or `-latest`.
_MODELS: dict[str, ModelFacts] = {
    "claude-fable-5-1": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-opus-5-5": ModelFacts(_p(4, 5, 8, 0.2, 20), _1M),
    "claude-opus-5": _OPUS_5,
    "claude-opus-4-8": _OPUS_5,
    "claude-opus-4-7": _OPUS_5,
    "claude-opus-4-6": _OPUS_5,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-sonnet-5-5": ModelFacts(_p(2, 2.5, 4, 0.1, 10), _1M),
    "claude-sonnet-5": _SONNET_5,
    "claude-sonnet-4-6": ModelFacts(_p(3, 3.75, 6, 0.3, 15), _1M),
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-haiku-5-5": ModelFacts(
        _p(0.1, 0.125, 0.2, 0.01, 0.5), _1M, long_prompt=(100_000, _p(0.5, 0.625, 1.0, 0.05, 2.5))
    ),
    "claude-haiku-4-5": ModelFacts(_p(1, 1.25, 2, 0.1, 5), _200K),
    "claude-3-5-haiku": ModelFacts(_p(0.8, 1, 1.6, 0.08, 4), _200K),
    "claude-3-haiku": ModelFacts(_p(0.25, 0.3, 0.5, 0.03, 1.25), _200K),
}
_SUFFIX = re.compile(r"-(\d{8}|latest)$")
_warned: set[str] = set()


class UnknownPriceWarning(UserWarning):
    """A model has no price in sim/pricing.py; its cost is recorded as unknown."""


def facts(model: str) -> ModelFacts | None:
    """The table row for a model id, dated (`claude-sonnet-4-5-20250929`) or not."""
    return _MODELS.get(_SUFFIX.sub("", model.strip().lower()))


def is_priced(model: str) -> bool:
    return facts(model) is not None


def context_window(model: str) -> int:
    """Tokens the model reads at most; 200,000 (the smallest current window) when unknown."""
    row = facts(model)
    return row.context_window if row else DEFAULT_CONTEXT_WINDOW


def _count(usage: Mapping[str, Any], key: str) -> int:
    value = usage.get(key)
    return int(value) if isinstance(value, int | float) else 0


def cost_usd(model: str, usage: Mapping[str, Any]) -> float | None:
    """USD for one response's `usage`, or None (with a warning, once per model) when the
    model's price is unknown.

    Cache writes are split by TTL from `usage.cache_creation` when the API gives the split;
    otherwise every written token is priced at the 5-minute rate."""
    row = facts(model)
    if row is None:
        if model not in _warned:
            _warned.add(model)
            warnings.warn(
                f"no price for model {model!r} in sim/pricing.py: its cost is recorded as "
                "unknown (budgets cannot be enforced for it); add the model to the table",
                UnknownPriceWarning,
                stacklevel=2,
            )
        return None
    written = _count(usage, "cache_creation_input_tokens")
    split = usage.get("cache_creation")
    if isinstance(split, Mapping):
        w1h = _count(split, "ephemeral_1h_input_tokens")
        w5m = _count(split, "ephemeral_5m_input_tokens")
        w5m += max(0, written - w5m - w1h)  # any remainder the split does not name
    else:
        w1h, w5m = 0, written
    read = _count(usage, "cache_read_input_tokens")
    fresh = _count(usage, "input_tokens")
    price = row.price
    if row.long_prompt is not None and fresh + written + read > row.long_prompt[0]:
        price = row.long_prompt[1]
    total = (
        fresh * price.input
        + w5m * price.cache_write_5m
        + w1h * price.cache_write_1h
        + read * price.cache_read
        + _count(usage, "output_tokens") * price.output
    )
    return total / _MILLION
