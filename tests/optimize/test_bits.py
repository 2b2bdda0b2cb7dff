"""allocate_bits: measured sensitivity + cost model + exact knapsack → a QuantizationPolicy."""

import functools

import numpy as np
import pytest

from keras_nna.optimize import Budget, InfeasibleBudget, allocate_bits, measure_cost
from keras_nna.quantization import QuantizationPolicy, quantize_model
from tests.optimize.helpers import digits, trained_cnn

WIDTHS = (2, 4, 8)


@functools.lru_cache(maxsize=None)
def _allocation(limit, first_layer=False, activation_bits=None):
    _, _, xv, yv = digits()
    budget = Budget("nna-1core", program_bytes=limit) if limit else Budget("nna-1core")
    return allocate_bits(trained_cnn(), (xv, yv), budget, weight_bits=WIDTHS,
                         activation_bits=activation_bits, first_layer=first_layer,
                         max_val=120, max_images=16, verbose=0)


def _limit(fraction):
    """Program bytes `fraction` of the way from the fewest-bits cost to the widest."""
    a = _allocation(None)
    widest = a.reference["program_bytes"]
    low = {}
    for r in a.table:
        low[r["layer"]] = min(low.get(r["layer"], 0.0), r["program_bytes"])
    return int(widest + (1 - fraction) * sum(low.values()))


def test_no_limit_keeps_every_layer_at_its_widest():
    a = _allocation(None)
    assert a.choice() == {"sep": {"weights": 8}, "head": {"weights": 8}}
    assert a.costs["program_bytes"] == a.reference["program_bytes"]


@pytest.mark.parametrize("fraction", [0.9, 0.5, 0.1], ids=["90pct", "50pct", "10pct"])
def test_chosen_policy_fits_and_costs_what_the_table_predicts(fraction):
    limit = _limit(fraction)
    a = _allocation(limit)
    assert a.costs["program_bytes"] <= limit
    chosen = [r for r in a.table if r["chosen"]]
    assert len(chosen) == 2  # one option per group: sep and head weights (conv is first)
    # Program bytes are additive over layers: the table's changes predict the total exactly.
    predicted = a.reference["program_bytes"] + sum(r["program_bytes"] for r in chosen)
    assert a.costs["program_bytes"] == predicted
    # The returned policy is what was measured.
    _, _, xv, _ = digits()
    again = measure_cost(quantize_model(trained_cnn(), a.policy), xv[:16])
    assert again.costs["program_bytes"] == a.costs["program_bytes"]


def test_tighter_budget_never_adds_bits_or_lowers_loss():
    loose, tight = _allocation(_limit(0.9)), _allocation(_limit(0.5))
    bits = [sum(v["weights"] for v in a.choice().values()) for a in (loose, tight)]
    assert bits[1] <= bits[0] < 16
    loss = [sum(r["value"] for r in a.table if r["chosen"]) for a in (loose, tight)]
    assert loss[1] >= loss[0]


def test_first_layer_is_kept_unless_asked():
    a = _allocation(_limit(0.5))
    assert a.policy.resolve("conv", first_layer=True)["weight_bits"] == 8
    b = _allocation(None, first_layer=True)
    assert "conv" in b.choice()


def test_activation_bits_are_allocated_too():
    a = _allocation(None, activation_bits=(2, 4, 8))
    parts = {(r["layer"], r["part"]) for r in a.table}
    assert {("conv", "activations"), ("sep", "activations")} <= parts
    assert ("head", "activations") not in parts  # raw logits have no activation codes
    assert "| layer | part | bits |" in a.summary()


def test_budget_below_the_fewest_bits_says_what_that_costs():
    _, _, xv, yv = digits()
    with pytest.raises(InfeasibleBudget, match=r"fewest bits everywhere, program_bytes is [\d,]+ "
                                               r"\(limit 100\)"):
        allocate_bits(trained_cnn(), (xv, yv), Budget(program_bytes=100), weight_bits=WIDTHS,
                      max_val=32, max_images=4, verbose=0)


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_bits": (0, 4)}, r"expected an integer in \[\d, 8\], received 0"),
    ({"weight_bits": (4, 9)}, r"received 9"),
    ({"activation_bits": (2.5,)}, r"activation_bits.*received 2.5"),
    ({"weight_bits": ()}, r"at least one bit width"),
    ({"policy": QuantizationPolicy(overrides={"nope": {"weight_bits": 4}})}, r"\['nope'\]"),
], ids=["zero", "nine", "float", "empty", "unknown_layer"])
def test_bad_arguments_name_expected_and_received(kwargs, match):
    _, _, xv, yv = digits()
    with pytest.raises(ValueError, match=match):
        allocate_bits(trained_cnn(), (xv, yv), Budget(program_bytes=1e6), verbose=0, **kwargs)


@pytest.mark.parametrize("data, match", [
    ("images", r"Expected `data` as \(x_val, y_val\)"),
    ((np.zeros((4, 9, 9, 1)), np.zeros(4)), r"shape \(N, 8, 8, 1\).*\(4, 9, 9, 1\)"),
], ids=["not_a_pair", "wrong_shape"])
def test_bad_data(data, match):
    with pytest.raises(ValueError, match=match):
        allocate_bits(trained_cnn(), data, Budget(program_bytes=1e6), verbose=0)


def test_budget_must_be_a_budget():
    _, _, xv, yv = digits()
    with pytest.raises(ValueError, match="Budget"):
        allocate_bits(trained_cnn(), (xv, yv), {"program_bytes": 1e6}, verbose=0)
