"""Budget: limits, feasibility without tolerance, parsing and its errors; measure_cost."""

import numpy as np
import pytest

from keras_nna.optimize import COSTS, Budget, measure_cost


@pytest.mark.parametrize("costs, feasible", [
    ({"energy_uj": 1.5, "events": 100.0}, True),          # exactly at the limit: feasible
    ({"energy_uj": 1.5000001, "events": 100.0}, False),    # a hair over: infeasible
    ({"energy_uj": 0.1, "events": 100.5}, False),
], ids=["at-limit", "hair-over", "events-over"])
def test_feasible_has_no_tolerance(costs, feasible):
    budget = Budget("nna-1core", energy_uj=1.5, events=100)
    assert budget.feasible(costs) is feasible
    assert (max(budget.violations(costs).values()) <= 0) is feasible


def test_no_limit_is_feasible_everywhere_and_order_is_fixed():
    assert Budget().feasible({}) and Budget().violations({}) == {}
    assert list(Budget(program_bytes=5, energy_uj=1).limits) == ["energy_uj", "program_bytes"]


@pytest.mark.parametrize("kwargs, fragment", [
    ({"energy": 1.0}, "Unknown budget cost 'energy'"),
    ({"energy_uj": -1.0}, "Expected `energy_uj` to be a finite number > 0"),
    ({"events": 0}, "Expected `events` to be a finite number > 0"),
    ({"time_us": float("nan")}, "Received: time_us=nan"),
    ({"profile": "nna-9core", "events": 5}, "nna-9core"),
], ids=["unknown-cost", "negative", "zero", "nan", "unknown-profile"])
def test_bad_budgets_name_what_was_expected(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=None) as info:
        Budget(**kwargs)
    assert fragment in str(info.value)


@pytest.mark.parametrize("items, fragment", [
    (["energy_uj"], "NAME=VALUE"), (["energy_uj=abc"], "Received: 'energy_uj=abc'"),
    (["watts=3"], "Unknown budget cost 'watts'"), ([], None),
], ids=["no-value", "not-a-number", "unknown", "empty"])
def test_parse(items, fragment):
    if fragment is None:
        assert Budget.parse(items).limits == {}
        return
    with pytest.raises(ValueError) as info:
        Budget.parse(items)
    assert fragment in str(info.value)


def test_custom_profile_and_round_trip():
    from keras_nna.runtime.profiles import get_profile

    profile = get_profile("nna-1core").replace(name="slow", clock_hz=1e8)
    budget = Budget(profile, time_us=50)
    assert budget.profile_name() == "slow" and "slow" in repr(budget)
    config = budget.to_dict()
    again = Budget(config.pop("profile"), **config)
    assert again.limits == budget.limits


def test_measure_cost_matches_deploy_and_cost_model():
    """Every cost comes from export -> emulator -> cost model (compared with deploy)."""
    from keras_nna import deploy
    from keras_nna.quantization import quantize_model
    from tests.optimize.helpers import digits, trained_cnn

    x, y, xv, yv = digits()
    qmodel = quantize_model(trained_cnn())
    cost = measure_cost(qmodel, xv, yv, Budget("nna-8core", events=1))
    ref = deploy(qmodel, xv, yv, profile="nna-8core")
    assert cost.bit_exact and cost.images == len(xv)
    assert set(cost.costs) == set(COSTS)
    assert cost.costs["events"] == pytest.approx(ref.events_per_image)
    assert cost.costs["energy_uj"] == pytest.approx(ref.cost.total["energy_j"] * 1e6)
    assert cost.costs["time_us"] == pytest.approx(ref.cost.total["time_s"] * 1e6)
    assert cost.costs["program_bytes"] == len(ref.program.to_bytes())
    assert cost.accuracy == pytest.approx(float(np.mean(ref.outputs.argmax(-1) == yv)))


def test_helpers_model_is_trained():
    """The shared start model of the optimize tests is a real trained model (not chance)."""
    from tests.optimize.helpers import digits, trained_cnn

    _, _, xv, yv = digits()
    logits = trained_cnn().predict(xv.astype("float32"), verbose=0)
    assert np.mean(logits.argmax(-1) == yv) >= 0.8
