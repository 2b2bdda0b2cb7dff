"""Exact multiple-choice knapsack: DP and MILP against brute force."""

import itertools

import numpy as np
import pytest

from keras_nna.optimize.knapsack import InfeasibleBudget, solve, solve_dp, solve_milp


def _instance(seed, groups=5, options=4, costs=1, integer=True):
    rng = np.random.default_rng(seed)
    values = [rng.normal(size=options).round(3) for _ in range(groups)]
    draw = (lambda s: rng.integers(0, 40, s).astype(float)) if integer else \
        (lambda s: rng.uniform(-5, 40, s))
    cost = [draw((options, costs)) for _ in range(groups)]
    cheapest = sum(c.min(axis=0) for c in cost)
    dearest = sum(c.max(axis=0) for c in cost)
    limits = cheapest + rng.uniform(0.2, 0.7, costs) * (dearest - cheapest)
    return values, cost, limits


def _brute(values, costs, limits):
    best, arg = np.inf, None
    for pick in itertools.product(*[range(len(v)) for v in values]):
        total = sum(c[o] for c, o in zip(costs, pick))
        value = sum(v[o] for v, o in zip(values, pick))
        if np.all(total <= limits + 1e-9) and value < best - 1e-12:
            best, arg = value, list(pick)
    return best, arg


def _value(values, pick):
    return sum(v[o] for v, o in zip(values, pick))


@pytest.mark.parametrize("seed", range(8), ids=lambda s: f"seed{s}")
def test_dp_and_milp_match_brute_force_one_integer_cost(seed):
    values, costs, limits = _instance(seed)
    best, _ = _brute(values, costs, limits)
    dp = solve_dp(values, [c[:, 0] for c in costs], int(limits[0]))
    milp = solve_milp(values, costs, limits)
    assert _value(values, dp) == pytest.approx(best)
    assert _value(values, milp) == pytest.approx(best)
    assert sum(c[o, 0] for c, o in zip(costs, dp)) <= limits[0]


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
def test_solve_two_real_costs_matches_brute_force(seed):
    values, costs, limits = _instance(seed + 100, groups=4, costs=2, integer=False)
    best, _ = _brute(values, costs, limits)
    pick = solve(values, costs, limits)
    assert _value(values, pick) == pytest.approx(best)
    assert np.all(sum(c[o] for c, o in zip(costs, pick)) <= limits + 1e-9)


def test_offset_and_negative_changes():
    # Costs as changes from a reference of 100 bytes: option 1 saves 5 bytes for +3 loss.
    assert solve([[0.0, 3.0]], [[[20.0], [-5.0]]], [120.0], offset=[100.0]) == [0]
    assert solve([[0.0, 3.0]], [[[20.0], [-5.0]]], [119.0], offset=[100.0]) == [1]


def test_no_limit_takes_the_least_value():
    assert solve([[1.0, 0.5], [0.0, 2.0]], [[[1.0], [9.0]], [[9.0], [1.0]]], [np.inf]) == [1, 0]


def test_infeasible_budget_names_the_cheapest_cost():
    with pytest.raises(InfeasibleBudget, match=r"program_bytes is 95 \(limit 90\)"):
        solve([[0.0, 3.0]], [[[20.0], [-5.0]]], [90.0], names=["program_bytes"], offset=[100.0])


@pytest.mark.parametrize("bad", ["negative", "fraction"])
def test_dp_refuses_costs_it_cannot_solve_exactly(bad):
    cost = [-1.0, 2.0] if bad == "negative" else [0.5, 2.0]
    with pytest.raises(ValueError, match="non-negative integer costs"):
        solve_dp([[0.0, 1.0]], [cost], 3)
