"""Width scaling (Net2Wider / top-channel narrowing) and MorphNet shrink/expand to a budget."""

import keras
import numpy as np
import pytest

from keras_nna.models import AkidaNet
from keras_nna.optimize.budget import Budget, measure_cost
from keras_nna.optimize.morphnet import event_cost_weights, expand_to_budget, morph, shrink
from keras_nna.optimize.widths import scale_widths
from keras_nna.quantization import quantize_model
from keras_nna.sparsity import add_gamma_regularization, channel_groups
from tests.optimize.helpers import digits, small_cnn, trained_cnn
from tests.sparsity.helpers import randomize_bn


def _akidanet():
    keras.utils.set_random_seed(0)
    return randomize_bn(AkidaNet((32, 32, 1), alpha=0.25, classes=10))


def _stack():
    """Sequential: conv, separable, depthwise (members), dense after flatten, dense."""
    keras.utils.set_random_seed(1)
    L = keras.layers
    return randomize_bn(keras.Sequential([
        keras.Input((8, 8, 1)), L.Rescaling(1 / 255),
        L.Conv2D(4, 3, padding="same", name="c"), L.BatchNormalization(name="bn_c"),
        L.ReLU(),
        L.SeparableConv2D(6, 3, padding="same", name="s"), L.BatchNormalization(name="bn_s"),
        L.ReLU(), L.DepthwiseConv2D(3, padding="same", name="dw"),
        L.BatchNormalization(name="bn_dw"), L.ReLU(), L.MaxPooling2D(name="pool"),
        L.Flatten(name="flat"), L.Dense(5, name="d"), L.ReLU(), L.Dense(3, name="head")]))


def _images(shape, n=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("float32")


MODELS = {"akidanet": (_akidanet, (32, 32, 1)), "sequential": (_stack, (8, 8, 1))}


@pytest.mark.parametrize("multiplier", [1.5, 2.0], ids=["x1.5", "x2"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_widening_is_function_preserving(name, multiplier):
    build, shape = MODELS[name]
    model = build()
    wide = scale_widths(model, multiplier, noise=0.0)
    x = _images(shape)
    ref = model.predict(x, verbose=0)
    np.testing.assert_allclose(wide.predict(x, verbose=0), ref, atol=1e-4 * np.abs(ref).max())
    before, after = channel_groups(model), channel_groups(wide)
    for n, g in before.items():
        expected = g.channels if g.blocked else max(1, round(multiplier * g.channels))
        assert after[n].channels == expected, n
    assert [l.name for l in wide.layers] == [l.name for l in model.layers]
    assert type(wide) is type(model)


def test_widening_grows_inner_params_quadratically():
    model = _akidanet()
    wide = scale_widths(model, 2.0)
    for name in ("conv_1", "conv_2", "separable_5"):
        k0 = model.get_layer(name).weights[0].shape
        k1 = wide.get_layer(name).weights[0].shape
        factor = 2 if name.startswith("separable") else 4  # depthwise grows with inputs only
        assert np.prod(k1) == factor * np.prod(k0), name
        pw0, pw1 = model.get_layer(name).weights[-1].shape, wide.get_layer(name).weights[-1].shape
        assert np.prod(pw1) == 4 * np.prod(pw0), name
    assert 3.5 < wide.count_params() / model.count_params() < 4.0


def test_widening_noise_perturbs_only_replicas():
    model = _stack()
    wide = scale_widths(model, 2.0, noise=0.05, seed=3)
    k0 = model.get_layer("c").kernel.numpy()
    k1 = wide.get_layer("c").kernel.numpy()
    np.testing.assert_array_equal(k1[..., :4], k0)
    assert not np.allclose(k1[..., 4:], k0[..., np.argsort(-np.abs(
        model.get_layer("bn_c").gamma.numpy()), kind="stable")])
    np.testing.assert_allclose(k1[..., 4:], k0[..., np.argsort(-np.abs(
        model.get_layer("bn_c").gamma.numpy()), kind="stable")], rtol=0.5, atol=1e-6)


def test_narrowing_keeps_the_top_gamma_channels():
    model = _stack()
    gamma = np.array([0.1, 2.0, 0.3, 1.0], "float32")
    bn = model.get_layer("bn_c")
    bn.set_weights([gamma] + bn.get_weights()[1:])
    small = scale_widths(model, 0.5)
    np.testing.assert_array_equal(small.get_layer("c").kernel.numpy(),
                                  model.get_layer("c").kernel.numpy()[..., [1, 3]])
    np.testing.assert_array_equal(small.get_layer("bn_c").gamma.numpy(), gamma[[1, 3]])
    assert small.get_layer("s").filters == 3 and small.get_layer("d").units == 2
    assert small.get_layer("head").units == 3


def test_dict_multiplier_scales_named_layers_only():
    model = _stack()
    out = scale_widths(model, {"c": 7, "d": 1}, noise=0.0)
    assert (out.get_layer("c").filters, out.get_layer("s").filters, out.get_layer("d").units) == (7, 6, 1)
    x = _images((8, 8, 1))
    assert np.isfinite(out.predict(x, verbose=0)).all()


@pytest.mark.parametrize("multiplier", [0, -1.0, float("nan"), float("inf")],
                         ids=["zero", "negative", "nan", "inf"])
def test_scale_widths_rejects_bad_multipliers(multiplier):
    with pytest.raises(ValueError, match="multiplier"):
        scale_widths(_stack(), multiplier)


def test_scale_widths_errors():
    model = _stack()
    with pytest.raises(ValueError, match="Unknown or non-scalable.*'head'"):
        scale_widths(model, {"head": 4})
    with pytest.raises(TypeError, match="before keras_nna.quantization.quantize_model"):
        scale_widths(quantize_model(model), 2.0)
    blocked = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="only")])
    with pytest.raises(ValueError, match="'only'.*model output"):
        scale_widths(blocked, 2.0)


def test_gamma_regularization_dict_weighting():
    model = _stack()
    out = add_gamma_regularization(model, 1e-3, weighting={"bn_c": 2.0, "bn_s": 0.5})
    assert out == pytest.approx({"bn_c": 2e-3, "bn_s": 5e-4, "bn_dw": 0.0})
    assert float(model.get_layer("bn_c").gamma.regularizer.l1) == pytest.approx(2e-3)
    assert model.get_layer("bn_dw").gamma.regularizer is None
    with pytest.raises(ValueError, match="\\['c'\\], which are not BatchNormalization"):
        add_gamma_regularization(model, 1e-3, weighting={"c": 1.0})
    with pytest.raises(ValueError, match="weighting\\['bn_c'\\]"):
        add_gamma_regularization(model, 1e-3, weighting={"bn_c": -1.0})


def _chain(fan_out_c=32, beta_a=0.0, beta_b=0.0):
    """conv a -> bn_a -> relu -> conv b -> bn_b -> relu -> conv c (fan_out_c filters) -> ..."""
    keras.utils.set_random_seed(2)
    L = keras.layers
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        L.Conv2D(4, 3, padding="same", name="a"), L.BatchNormalization(name="bn_a"), L.ReLU(),
        L.Conv2D(4, 3, padding="same", name="b"), L.BatchNormalization(name="bn_b"),
        L.ReLU(),
        L.Conv2D(fan_out_c, 3, padding="same", name="c"), L.BatchNormalization(name="bn_c"),
        L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(2, name="head")])
    for name, beta in (("bn_a", beta_a), ("bn_b", beta_b), ("bn_c", 0.0)):
        bn = model.get_layer(name)
        n = bn.gamma.shape[0]  # gamma 0, beta sets every output: events fully controlled
        bn.set_weights([np.zeros(n), np.full(n, beta), np.zeros(n), np.ones(n)])
    return model


def test_event_cost_weights_follow_events_and_fan_out():
    x = np.ones((3, 6, 6, 1), "float32")
    w = event_cost_weights(_chain(beta_a=1.0), x)
    assert set(w) == {"bn_a", "bn_b", "bn_c"}
    assert all(v > 0 for v in w.values()) and np.mean(list(w.values())) == pytest.approx(1.0)
    # bn_a fires everywhere (beta 1 -> code 4 of step 0.25); bn_c never: only weight bytes.
    silent = event_cost_weights(_chain(beta_a=0.0), x)
    assert w["bn_a"] / w["bn_c"] > 10 * silent["bn_a"] / silent["bn_c"]
    # Same events, larger consumer -> larger weight.
    small = event_cost_weights(_chain(fan_out_c=4, beta_a=1.0, beta_b=1.0), x)
    big = event_cost_weights(_chain(fan_out_c=64, beta_a=1.0, beta_b=1.0), x)
    assert big["bn_b"] / big["bn_a"] > small["bn_b"] / small["bn_a"]


def test_event_cost_weights_more_events_weigh_more():
    x = np.ones((2, 6, 6, 1), "float32")
    quiet = event_cost_weights(_chain(beta_a=1.0, beta_b=0.0), x)
    busy = event_cost_weights(_chain(beta_a=1.0, beta_b=2.0), x)
    assert busy["bn_b"] / busy["bn_a"] > 2 * quiet["bn_b"] / quiet["bn_a"]


def test_shrink_removes_zero_gamma_channels_and_keeps_the_others():
    model = _stack()
    bn = model.get_layer("bn_c")
    gamma, beta, mean, var = bn.get_weights()
    gamma[[0, 2]] = 0.0
    bn.set_weights([gamma, beta, mean, var])
    masked = keras.models.clone_model(model)
    masked.set_weights(model.get_weights())
    beta[[0, 2]] = 0.0  # what shrink zeroes: the whole filter across its group
    masked.get_layer("bn_c").set_weights([gamma, beta, mean, var])
    x = _images((8, 8, 1), n=16)
    small = shrink(model, x, np.zeros(16, int), epochs=0, verbose=0)
    assert small.get_layer("c").filters == 2
    assert small.get_layer("s").filters == 6 and small.get_layer("d").units == 5
    assert small.losses == []
    np.testing.assert_allclose(small.get_layer("bn_c").gamma.numpy(), gamma[[1, 3]])
    np.testing.assert_allclose(small.predict(x, verbose=0), masked.predict(x, verbose=0),
                               atol=1e-5)


def test_shrink_trains_with_the_regularizer(capsys):
    x, y, _, _ = digits()
    model = trained_cnn()
    small = shrink(model, x[:256], y[:256], strength=1.0, epochs=2, threshold=0.5, lr=0.05, batch_size=16,
                   verbose=1)
    assert small.count_params() < model.count_params()
    out = capsys.readouterr().out
    assert "shrink epoch 2/2" in out and "shrunk" in out


def test_shrink_errors():
    x = _images((8, 8, 1))
    with pytest.raises(TypeError, match="quantized"):
        shrink(quantize_model(_stack()), x, np.zeros(4, int))
    no_bn = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d1"),
                              keras.layers.ReLU(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="'d1'.*BatchNormalization"):
        shrink(no_bn, np.ones((4, 4)), np.zeros(4, int), epochs=0)
    blocked = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="only")])
    with pytest.raises(ValueError, match="'only'"):
        shrink(blocked, np.ones((4, 4)), np.zeros(4, int), epochs=0)


def _cost(model, m, images):
    return measure_cost(quantize_model(scale_widths(model, m)), images)  # expand's noise


def test_expand_to_budget_is_within_budget_and_maximal():
    x, _, _, _ = digits()
    images = x[:48]
    model = trained_cnn()
    budget = Budget("nna-1core", energy_uj=_cost(model, 1.6, images).costs["energy_uj"] * 1.001)
    wide, m, cost = expand_to_budget(model, budget, images, tolerance=0.02)
    assert budget.feasible(cost.costs) and cost.bit_exact
    assert 1.3 < m < 2.2
    assert wide.get_layer("conv").filters == max(1, round(8 * m))
    assert not budget.feasible(_cost(model, m * 1.02, images).costs)
    assert _cost(model, m, images).costs == cost.costs


def test_expand_to_budget_errors():
    x, _, _, _ = digits()
    model = trained_cnn()
    with pytest.raises(ValueError, match="at least one limit"):
        expand_to_budget(model, Budget("nna-1core"), x[:8])
    with pytest.raises(ValueError, match="low=0.25.*over the budget.*energy_uj"):
        expand_to_budget(model, Budget("nna-1core", energy_uj=1e-6), x[:8])
    with pytest.raises(TypeError, match="quantized"):
        expand_to_budget(quantize_model(model), Budget("nna-1core", events=1e6), x[:8])
    with pytest.raises(TypeError, match="Budget"):
        expand_to_budget(model, {"energy_uj": 1.0}, x[:8])


@pytest.mark.slow
def test_morph_end_to_end_on_digits(capsys):
    x, y, xv, yv = digits()
    images = xv[:64]
    model = small_cnn()  # trained longer than trained_cnn(): a start model worth keeping
    model.compile(keras.optimizers.Adam(3e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, batch_size=32, epochs=15, verbose=0)
    base = measure_cost(quantize_model(model), images)
    budget = Budget("nna-1core", energy_uj=base.costs["energy_uj"])
    # Adam moves a gamma by at most ~lr per step: a fast shrink needs a large shrink_lr.
    result = morph(model, x, y, budget, images=images, strength=0.1, shrink_epochs=2,
                   finetune_epochs=3, lr=3e-3, shrink_lr=0.02, batch_size=32, threshold=0.1,
                   x_val=xv, y_val=yv)
    assert budget.feasible(result.cost.costs) and result.cost.bit_exact
    final = measure_cost(quantize_model(result.model), images)
    assert final.bit_exact and final.costs == result.cost.costs
    (entry,) = result.history
    assert entry["params_shrunk"] < model.count_params() < entry["params"]
    assert result.multiplier > 1.0 and entry["multiplier"] == result.multiplier
    assert entry["widths"]["head"] == 10 and entry["costs"] == result.cost.costs
    float_acc = np.mean(result.model.predict(xv.astype("float32"), verbose=0).argmax(1) == yv)
    assert float_acc > 0.6 and result.accuracy > 0.4  # start: 0.84 float, 0.78 quantized
    out = capsys.readouterr().out
    assert "expanded" in out and "fine-tune epoch 3/3" in out
