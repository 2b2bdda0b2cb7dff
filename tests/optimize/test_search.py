"""optimize() end to end on digits: every point trained, exported, bit-exact, priced, saved."""

import json
import os

import numpy as np
import pytest

from keras_nna.optimize import Budget, SearchSpace, load_result, optimize
from tests.optimize.helpers import digits, trained_cnn

# Fixed width / no shrink: the search varies regularizer, step and distillation only (fast).
SPACE = SearchSpace(width=1.0, morph_strength=0.0, pruning_drop=0.0, hoyer=(0.0, 2.0),
                    activation_max=(2.0, 4.0), distill=(False, True))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    out = tmp_path_factory.mktemp("search")
    x, y, xv, yv = digits()
    budget = Budget("nna-1core", events=1e9, program_bytes=1e9)  # everything feasible
    result = optimize(trained_cnn(), (x, y, xv, yv), budget, n_trials=3, space=SPACE, epochs=1,
                      qat_epochs=1, storage=str(out / "study.db"), study_name="t",
                      out_dir=str(out), verbose=0)
    return result, out


def test_every_point_is_exported_bit_exact_and_priced(searched):
    from keras_nna.export.bytecode import load_program
    from keras_nna.optimize import measure_cost

    result, out = searched
    assert len(result.points) == 3 and not result.failed
    for p in result.points:
        assert p.bit_exact and p.feasible and 0 <= p.accuracy <= 1
        assert os.path.isfile(p.model_path) and os.path.isfile(p.program_path)
        assert p.recipe["width"] == 1.0 and 0.0 <= p.recipe["hoyer"] <= 2.0
    # The saved program and model reproduce the reported figures.
    import keras

    import keras_nna  # noqa: F401  (registers the layers)

    p = result.points[0]
    qmodel = keras.models.load_model(p.model_path)
    _, _, xv, yv = digits()
    again = measure_cost(qmodel, xv, yv, "nna-1core")
    assert again.accuracy == pytest.approx(p.accuracy)
    assert again.costs == pytest.approx(p.costs)
    assert load_program(p.program_path).to_bytes() == again.program.to_bytes()
    saved = json.loads((out / "result.json").read_text())
    assert [q["number"] for q in saved["points"]] == [q.number for q in result.points]


def test_results_reload_from_the_shared_storage(searched):
    result, out = searched
    again = load_result(str(out / "study.db"), "t", result.budget)
    assert [p.to_attrs() for p in again.points] == [p.to_attrs() for p in result.points]
    with pytest.raises(ValueError, match="No study named 'nope'"):
        load_result(str(out / "study.db"), "nope", result.budget)


def test_a_budget_no_candidate_meets_is_a_result_not_an_exception(tmp_path):
    x, y, xv, yv = digits()
    result = optimize(trained_cnn(), (x, y, xv, yv), Budget("nna-1core", energy_uj=1e-9),
                      n_trials=1, space=SPACE, epochs=0, qat_epochs=0, out_dir=str(tmp_path),
                      verbose=0)
    assert result.best_within() is None and len(result.points) == 1
    assert "No candidate met the budget" in result.summary()
    assert "energy_uj +" in result.summary()


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"budget": {"events": 5}}, TypeError, "Expected `budget` to be a keras_nna.optimize.Budget"),
    ({"data": (1, 2)}, ValueError, "Expected `data` as (x_train, y_train, x_val, y_val)"),
    ({"n_trials": 0}, ValueError, "Expected `n_trials` to be an integer >= 1"),
    ({"objective": "watts"}, ValueError, "Unknown objective 'watts'"),
    ({"storage": "ftp://host/db"}, ValueError, "Could not open the study storage"),
    ({"space": SearchSpace(width=(0.5, 2.0)), "model": "dense-out"}, ValueError,
     "of layer 'only', is blocked: 'only' is a model output. Expected"),
], ids=["budget-dict", "data", "trials", "objective", "storage", "unshrinkable"])
def test_bad_arguments(kwargs, error, fragment, tmp_path):
    x, y, xv, yv = digits()
    args = {"budget": Budget(events=5), "data": (x, y, xv, yv), "out_dir": str(tmp_path),
            "space": SPACE, "verbose": 0}
    args.update(kwargs)
    model = trained_cnn()
    if args.pop("model", None):  # one Dense layer: its channels are the model's output
        import keras

        model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(10, name="only")])
    with pytest.raises(error) as info:
        optimize(model, args.pop("data"), args.pop("budget"), **args)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)
