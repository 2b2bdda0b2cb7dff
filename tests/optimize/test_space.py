"""SearchSpace.suggest and train_candidate: each knob does what the recipe says."""

import numpy as np
import pytest

from keras_nna.optimize import Recipe, SearchSpace, train_candidate


class FakeTrial:
    """Answers suggest_* with the low end (or a fixed choice) and records the questions."""

    def __init__(self, pick=0):
        self.asked, self.pick = [], pick

    def suggest_float(self, name, low, high, log=False):
        self.asked.append((name, low, high, log))
        return [low, high][self.pick]

    def suggest_categorical(self, name, choices):
        self.asked.append((name, tuple(choices)))
        return choices[self.pick]


@pytest.mark.parametrize("pick", [0, 1], ids=["low", "high"])
def test_suggest_asks_only_varying_knobs(pick):
    space = SearchSpace(width=(0.5, 2.0), hoyer=0.3, pruning_drop=(0.0, 0.02),
                        activation_max=(2.0,), distill=(False, True))
    trial = FakeTrial(pick)
    recipe = space.suggest(trial)
    names = [q[0] for q in trial.asked]
    assert "hoyer" not in names and "activation_max" not in names
    assert recipe.hoyer == 0.3 and recipe.activation_max == 2.0
    assert recipe.width == [0.5, 2.0][pick] and recipe.distill is [False, True][pick]
    assert ("width", 0.5, 2.0, True) in trial.asked  # the width is log-scaled
    # morph_strength: an on/off choice, then a log-scaled strength only when on.
    assert recipe.morph_strength == [0.0, 1e-1][pick]
    assert ("morph_strength" in names) is bool(pick)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"width": (2.0, 0.5)}, "low <= high"),
    ({"width": (0.0, 1.0)}, "Expected `width` to be a finite number > 0"),
    ({"hoyer": -1.0}, "Expected `hoyer` to be a finite number >= 0"),
    ({"pruning_drop": (0.0, 0.01, 0.02)}, "(low, high)"),
], ids=["reversed", "zero-width", "negative", "three-values"])
def test_bad_spaces(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        SearchSpace(**kwargs)
    assert fragment in str(info.value)


def test_recipe_round_trip_and_policy():
    recipe = Recipe(width=1.25, hoyer=0.5, activation_max=2.0, distill=True)
    assert Recipe(**recipe.to_dict()) == recipe
    assert recipe.policy().resolve("any")["activation_step"] == pytest.approx(0.125)


def _zeros(qmodel, name):
    s = qmodel.get_layer(name).integer_summary()
    k = s["kernel2"] if s["kernel2"] is not None else s["kernel"]
    return float(np.mean(k == 0))


def test_train_candidate_applies_regularizer_pruning_and_distillation():
    from keras_nna.sparsity import sensitivity_analysis
    from tests.optimize.helpers import digits, trained_cnn

    x, y, xv, yv = digits()
    start = trained_cnn()
    before = [w.copy() for w in start.get_weights()]
    table = sensitivity_analysis(start, xv.astype("float32"), yv, ratios=(0.5, 0.9))
    plain = train_candidate(Recipe(), start, x, y, epochs=1, qat_epochs=1)
    tuned = train_candidate(Recipe(hoyer=1.0, pruning_drop=1.0, distill=True,
                                   activation_max=2.0), start, x, y, epochs=1, qat_epochs=1,
                            sensitivity=table)
    # The start model is untouched.
    assert all(np.array_equal(a, b) for a, b in zip(before, start.get_weights()))
    # Hoyer: the ReLUs' activity regularizers are carried onto the quantized layers.
    assert sum(getattr(l, "activity_regularizer", None) is not None for l in tuned.layers) >= 2
    assert not any(getattr(l, "activity_regularizer", None) for l in plain.layers)
    # Pruning (max_drop=1: every layer at the table's largest ratio), first layer dense.
    assert _zeros(tuned, "sep") >= 0.85 and _zeros(plain, "sep") < 0.5
    assert _zeros(tuned, "conv") < 0.5
    with pytest.raises(ValueError, match="sensitivity table"):
        train_candidate(Recipe(pruning_drop=0.01), start, x, y)
