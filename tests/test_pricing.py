"""Prices: the built-in table, job-file overrides, per-request cost and the cost meter."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

import pytest

from batchrunner.config import RunConfig
from batchrunner.dryrun import dry_run
from batchrunner.engine.run import Engine
from batchrunner.errors import ConfigError
from batchrunner.limits.pricing import (
    DEFAULT_PRICES,
    CostMeter,
    Price,
    cost,
    price_table,
)

COMMON_MODELS = [
    "mistral-small-latest",
    "mistral-medium-latest",
    "mistral-large-latest",
    "ministral-8b-latest",
    "ministral-3b-latest",
    "open-mistral-nemo",
    "codestral-latest",
    "mistral-embed",
]


def test_built_in_table_covers_the_common_models() -> None:
    assert set(COMMON_MODELS) <= set(DEFAULT_PRICES)
    for model, price in DEFAULT_PRICES.items():
        assert 0 < price.input_per_m < 20, model
        assert 0 <= price.output_per_m < 50, model
    assert DEFAULT_PRICES["mistral-embed"].output_per_m == 0.0


def test_built_in_table_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PRICES["mistral-embed"] = Price(0, 0)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_PRICES["mistral-embed"].input_per_m = 0  # type: ignore[misc]


def test_no_overrides_is_the_built_in_table_as_a_fresh_dict() -> None:
    table = price_table(None)
    assert table == dict(DEFAULT_PRICES) == price_table({})
    table["mistral-embed"] = Price(9, 9)
    assert price_table()["mistral-embed"] == DEFAULT_PRICES["mistral-embed"]


def test_job_file_prices_override_and_add_models() -> None:
    job = tomllib.loads(
        """
        [prices."mistral-small-latest"]
        input = 0.1
        output = 0.3

        [prices."ft:open-mistral-nemo:abc123"]
        input = 1
        output = 0

        [prices."mistral-large-latest"]
        output = 6.0
        """
    )
    table = price_table(job["prices"])
    assert table["mistral-small-latest"] == Price(0.1, 0.3)
    assert table["ft:open-mistral-nemo:abc123"] == Price(1.0, 0.0)
    # A built-in model may override one rate; the other stays.
    large = DEFAULT_PRICES["mistral-large-latest"]
    assert table["mistral-large-latest"] == Price(large.input_per_m, 6.0)
    assert table["codestral-latest"] == DEFAULT_PRICES["codestral-latest"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mistral-small-latest": {"inptu": 0.1}}, "unknown key 'inptu'"),
        ({"mistral-small-latest": {"input": 0.1, "currency": "EUR"}}, "unknown key 'currency'"),
        ({"mistral-small-latest": {"input": -0.1}}, ">= 0"),
        ({"mistral-small-latest": {"output": float("nan")}}, "finite"),
        ({"mistral-small-latest": {"output": math.inf}}, "finite"),
        ({"mistral-small-latest": {"input": "0.1"}}, "must be a number"),
        ({"mistral-small-latest": {"input": True}}, "must be a number"),
        ({"mistral-small-latest": 0.1}, "must be a table"),
        ({"my-model": {"input": 1.0}}, "not a built-in model"),
        ({"": {"input": 1.0, "output": 1.0}}, "non-empty"),
    ],
)
def test_bad_overrides_are_one_line_value_errors(overrides: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        price_table(overrides)
    assert "\n" not in str(caught.value)


def test_cost_of_one_request() -> None:
    table = {"m": Price(2.0, 6.0)}
    assert cost("m", 1_000_000, 0, table) == pytest.approx(2.0)
    assert cost("m", 1500, 500, table) == pytest.approx((1500 * 2.0 + 500 * 6.0) / 1e6)
    assert cost("m", 0, 0, table) == 0.0


def test_cost_of_an_unknown_model_is_none_not_a_guess() -> None:
    assert cost("mistral-small-2506", 1000, 1000, price_table()) is None


def test_meter_accumulates_per_model() -> None:
    table = {"a": Price(1.0, 2.0), "b": Price(10.0, 0.0)}
    meter = CostMeter(table)
    assert meter.spent() == 0.0
    meter.add("a", 1000, 500)
    meter.add("a", 3000, 1500)
    meter.add("b", 2000, 0)
    assert meter.spent() == pytest.approx((4000 * 1.0 + 2000 * 2.0 + 2000 * 10.0) / 1e6)
    meter.add("b", 0, 1_000_000)  # b's output is free: its price, not a's, applies to it
    assert meter.spent() == pytest.approx((4000 * 1.0 + 2000 * 2.0 + 2000 * 10.0) / 1e6)
    assert meter.unpriced() == ()


def test_meter_names_unpriced_models_and_leaves_them_out_of_the_sum() -> None:
    meter = CostMeter({"a": Price(1.0, 1.0)})
    meter.add("a", 1_000_000, 0)
    meter.add("zeta", 5_000_000, 5_000_000)
    meter.add("mystery", 1, 1)
    assert meter.spent() == pytest.approx(1.0)
    assert meter.unpriced() == ("mystery", "zeta")


def test_projection_scales_the_spend_per_request() -> None:
    meter = CostMeter({"a": Price(1.0, 1.0)})
    assert meter.projected(0, 100) is None
    for _ in range(10):
        meter.add("a", 500, 500)
    assert meter.spent() == pytest.approx(0.01)
    assert meter.projected(10, 1000) == pytest.approx(1.0)
    assert meter.projected(10, 10) == pytest.approx(meter.spent())


@pytest.mark.parametrize(
    "call",
    [
        lambda m: m.add("a", -1, 0),
        lambda m: m.add("a", 0, -5),
        lambda m: m.projected(-1, 10),
        lambda m: m.projected(1, -10),
    ],
)
def test_meter_rejects_negative_counts(call: Any) -> None:
    with pytest.raises(ValueError):
        call(CostMeter(price_table()))


def test_a_run_refuses_bad_prices_naming_the_entry(tmp_path: Path) -> None:
    config = RunConfig(
        input_path=tmp_path / "in.jsonl",
        output_path=tmp_path / "out.jsonl",
        dead_letter_path=tmp_path / "dead.jsonl",
        prices={"m": {"input": "x", "output": 1}},  # type: ignore[dict-item]
    )
    for refuse in (Engine, dry_run):  # a run, and the dry run that counts its cost
        with pytest.raises(ConfigError) as info:
            refuse(config)
        assert str(info.value) == "prices.\"m\".input must be a number, got 'x'"
    assert info.value.setting == "prices"
