"""Prices per model, dated ids, cache-write TTLs, long prompts, and unknown models."""

from __future__ import annotations

import warnings

import pytest

from sim.budget import add_cost, over_budget, usage_tokens
from sim.pricing import context_window, cost_usd, is_priced
from sim.scenario import Limits


def test_dated_and_latest_ids_share_their_model_row() -> None:
    usage = {"input_tokens": 1_000_000, "output_tokens": 1_000_000}
    assert cost_usd("claude-sonnet-4-5-20250929", usage) == cost_usd("claude-sonnet-4-5", usage)
    assert cost_usd("claude-opus-4-20250514", usage) == pytest.approx(15 + 75)
    assert cost_usd("claude-3-5-haiku-latest", usage) == pytest.approx(0.8 + 4)
    assert not is_priced("claude-sonnet-4-55")  # a prefix is not a match


def test_cache_writes_are_priced_by_ttl() -> None:
    split = {"ephemeral_5m_input_tokens": 600_000, "ephemeral_1h_input_tokens": 400_000}
    usage = {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 1_000_000}
    assert cost_usd("claude-opus-5", usage) == pytest.approx(6.25)  # no split: 5-minute rate
    with_split = {**usage, "cache_creation": split}
    assert cost_usd("claude-opus-5", with_split) == pytest.approx(0.6 * 6.25 + 0.4 * 10)
    reads = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 1_000_000}
    assert cost_usd("claude-fable-5-1", reads) == pytest.approx(0.25)


def test_haiku_5_5_prices_a_long_prompt_at_the_higher_rate_throughout() -> None:
    short = {"input_tokens": 100_000, "output_tokens": 1000}
    long = {"input_tokens": 60_000, "cache_read_input_tokens": 40_001, "output_tokens": 1000}
    assert cost_usd("claude-haiku-5-5", short) == pytest.approx((100_000 * 0.1 + 1000 * 0.5) / 1e6)
    expected = (60_000 * 0.5 + 40_001 * 0.05 + 1000 * 2.5) / 1e6
    assert cost_usd("claude-haiku-5-5", long) == pytest.approx(expected)


def test_an_unknown_model_warns_once_and_costs_none() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cost_usd("claude-unheard-of-1", {"input_tokens": 5}) is None
        assert cost_usd("claude-unheard-of-1", {"input_tokens": 5}) is None
    assert len(caught) == 1 and "claude-unheard-of-1" in str(caught[0].message)
    assert context_window("claude-unheard-of-1") == 200_000
    assert context_window("claude-sonnet-5-5") == 1_000_000


def test_running_totals_and_limits() -> None:
    assert usage_tokens({"input_tokens": 1, "output_tokens": 2, "cache_read_input_tokens": 3}) == 6
    assert add_cost(0.5, 0.25, "claude-x") == 0.75
    assert add_cost(0.5, None, "scripted") == 0.5  # scripted models are free
    assert add_cost(0.5, None, "claude-x") is None  # unknown stays unknown
    limits = Limits(max_tokens=100, budget_usd=1.0, run_budget_usd=2.0)
    assert over_budget(limits, tokens=99, cost=0.9, run_cost=lambda: 1.9) is None
    assert over_budget(limits, tokens=100, cost=0, run_cost=lambda: 0) == ("max_tokens", 100)
    assert over_budget(limits, tokens=0, cost=1.0, run_cost=lambda: 0) == ("budget_usd", 1.0)
    assert over_budget(limits, tokens=0, cost=0, run_cost=lambda: 2.0) == ("run_budget_usd", 2.0)
    assert over_budget(limits, tokens=0, cost=None, run_cost=lambda: None) is None
