import functools

import keras
import numpy as np
import pytest

from keras_nna.sparsity import (ActivityRegularizer, add_activity_regularization,
                                add_gamma_regularization, add_weight_regularization,
                                measure_activation_sparsity, relu_layers)
from tests.sparsity.helpers import compile_cnn, digits, small_cnn

STEP = 0.25  # keras_nna's 4-bit QAT grid: fixed step, range 0-3.75


def _train(reg_kwargs, epochs=6):
    """Same seed, data order and schedule with and without regularization."""
    x, y, x_te, y_te = digits()
    model = small_cnn(seed=0)
    if reg_kwargs:
        add_activity_regularization(model, **reg_kwargs)
    compile_cnn(model)
    keras.utils.set_random_seed(0)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    sparsity = measure_activation_sparsity(model, x_te, quantization_step=STEP, bits=4)
    accuracy = model.evaluate(x_te, y_te, verbose=0)[1]
    return sparsity["total"], accuracy


@functools.lru_cache(maxsize=None)
def _baseline():
    return _train(None)


@pytest.mark.parametrize("reg", [dict(l1=0.2), dict(hoyer=0.3), dict(l1=0.1, l2=0.1, weighting="cost")],
                         ids=["l1", "hoyer", "l1+l2-cost"])
def test_regularizer_increases_quantized_activation_sparsity(reg):
    base, base_acc = _baseline()
    regd, acc = _train(reg)
    assert regd["zeros"] > base["zeros"] + 0.05, (base, regd)
    assert regd["events"] < 0.85 * base["events"]
    assert acc > base_acc - 0.1  # sparser, not broken


def test_activity_regularizer_math_and_batch_normalisation():
    x = np.array([[1.0, -3.0, 0.0, 0.0]], "float32")
    assert float(ActivityRegularizer(l1=1.0)(x)) == pytest.approx(1.0)  # mean |x|
    assert float(ActivityRegularizer(l2=1.0)(x)) == pytest.approx(2.5)  # mean x^2
    assert float(ActivityRegularizer(hoyer=1.0)(x)) == pytest.approx(16 / 10 / 4)
    # Hoyer is scale invariant, L1 is not.
    assert float(ActivityRegularizer(hoyer=1.0)(7 * x)) == pytest.approx(float(ActivityRegularizer(hoyer=1.0)(x)))
    # Keras divides activity losses by the batch size: the layer loss is a per-element mean.
    layer = keras.layers.ReLU(activity_regularizer=ActivityRegularizer(l1=1.0))
    layer(np.ones((8, 3, 3, 2), "float32") * 2.0)
    assert float(layer.losses[0]) == pytest.approx(2.0)


@pytest.mark.parametrize("reg", [dict(l1=1.0), dict(hoyer=1.0)], ids=["l1", "hoyer"])
def test_regularizer_pushes_activations_that_round_to_zero_during_qat(reg):
    """Under QAT the regularizer sees fake-quantized outputs. A pre-activation in
    (0, step/2) rounds to code 0 but is one small step from becoming an event: the
    gradient (through the straight-through estimator) must still push it down.
    With tf.abs (gradient 0 at 0) it is 0 and such activations drift into events."""
    import tensorflow as tf

    from keras_nna.quantization.quantizers import fake_quantize_activations

    pre = tf.Variable([[0.05, 0.1, 1.0, -0.5]])
    with tf.GradientTape() as tape:
        loss = ActivityRegularizer(**reg)(fake_quantize_activations(pre, 4, STEP))
    grad = tape.gradient(loss, pre).numpy()[0]
    assert grad[0] > 0 and grad[1] > 0, grad  # rounds to 0, still pushed down
    assert grad[3] == 0  # below the ReLU: nothing to push


def test_regularizer_config_and_model_round_trip(tmp_path):
    reg = ActivityRegularizer(l1=0.1, l2=0.2, hoyer=0.3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(reg))
    assert clone.get_config() == {"l1": 0.1, "l2": 0.2, "hoyer": 0.3}
    model = small_cnn()
    add_activity_regularization(model, l1=0.01, hoyer=0.1)
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("relu1").activity_regularizer.get_config()["hoyer"] == pytest.approx(0.1)


@pytest.mark.parametrize("kind", ["sequential", "functional", "inline-activation", "akidanet"])
def test_add_activity_regularization_covers_every_relu(kind):
    if kind == "akidanet":
        from keras_nna.models import AkidaNet
        model = AkidaNet(input_shape=(32, 32, 3), alpha=0.25, classes=2)
        expected = 14
    elif kind == "inline-activation":
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="a"),
                                  keras.layers.Activation("relu", name="b"), keras.layers.Dense(2)])
        expected = 2
    else:
        model = small_cnn(functional=kind == "functional")
        expected = 3
    attached = add_activity_regularization(model, l1=0.01, l2=0.02)
    assert len(attached) == expected == len(relu_layers(model))
    for name in attached:
        assert model.get_layer(name).activity_regularizer.l1 == pytest.approx(0.01)


RELU_RULE = {  # layer after a conv -> is it a ReLU? (one rule for quantize_model and relu_layers)
    "relu": (lambda: keras.layers.ReLU(), True),
    "relu_max_value": (lambda: keras.layers.ReLU(max_value=6.0), True),
    "activation_relu": (lambda: keras.layers.Activation("relu"), True),
    "relu_negative_slope": (lambda: keras.layers.ReLU(negative_slope=0.1), False),
    "relu_threshold": (lambda: keras.layers.ReLU(threshold=0.5), False),
    "leaky_relu": (lambda: keras.layers.LeakyReLU(), False),
    "relu6": (lambda: keras.layers.Activation("relu6"), False),
}


@pytest.mark.parametrize("name", sorted(RELU_RULE))
def test_relu_layers_and_quantize_model_agree_on_what_a_relu_is(name):
    """A leaky or thresholded ReLU is not a ReLU output (it was, for relu_layers only)."""
    from keras_nna.quantization import quantize_model

    make, is_relu = RELU_RULE[name]
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = make()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    assert (len(relu_layers(model)) == 1) is is_relu
    if is_relu:
        assert quantize_model(model).get_layer("conv").activation == "relu"
    else:
        with pytest.raises(ValueError, match="Cannot quantize layer"):
            quantize_model(model)


def test_cost_weighting_follows_fan_out():
    model = small_cnn()
    attached = add_activity_regularization(model, l1=1.0, weighting="cost")
    # Consumers: relu0 -> conv1 (9*16), relu1 -> conv2 stride 2 (9*16/4), relu2 -> GAP (1).
    fan = np.array([144.0, 36.0, 1.0])
    np.testing.assert_allclose([attached[f"relu{i}"].l1 for i in range(3)], fan / fan.mean(), rtol=1e-6)


def test_events_weighting_follows_map_size():
    model = small_cnn()
    attached = add_activity_regularization(model, hoyer=1.0, l1=2.0, weighting="events")
    # relu0 8x8x8, relu1 8x8x16, relu2 4x4x16 (stride 2) activations per sample.
    size = np.array([512.0, 1024.0, 256.0])
    np.testing.assert_allclose([attached[f"relu{i}"].hoyer for i in range(3)], size / size.mean(),
                               rtol=1e-6)
    np.testing.assert_allclose([attached[f"relu{i}"].l1 for i in range(3)], 2 * size / size.mean(),
                               rtol=1e-6)


def test_max_value_caps_relus_at_the_quantized_range():
    from keras_nna.quantization import QuantizationPolicy, quantize_model

    model = small_cnn()
    add_activity_regularization(model, hoyer=0.1, max_value=3.75)
    assert [model.get_layer(f"relu{i}").max_value for i in range(3)] == [3.75] * 3
    big = np.full((2, 8, 8, 1), 16.0, "float32")
    model.get_layer("conv0").set_weights([np.full((3, 3, 1, 8), 5.0, "float32")])
    probe = keras.Model(model.inputs, model.get_layer("relu0").output)
    assert float(np.max(probe(big))) == 3.75  # the cap is read at call time
    # A policy caps each ReLU at its own layer's range top (conv1: 5 bits, step 2^-3 -> 3.875).
    policy = QuantizationPolicy(overrides={"conv1": {"activation_bits": 5}})
    model = small_cnn()
    add_activity_regularization(model, hoyer=0.1, max_value=policy)
    assert [model.get_layer(f"relu{i}").max_value for i in range(3)] == [3.75, 3.875, 3.75]
    qmodel = quantize_model(model, policy)  # the caps sit at the ranges' tops: accepted
    # On a quantized model the wrappers clip by themselves: nothing to cap, no error.
    assert len(add_activity_regularization(qmodel, hoyer=0.1, max_value=policy)) == 3


@pytest.mark.parametrize("max_value,match", [(0.0, "> 0"), ("3.75", "> 0"), (True, "> 0"),
                                             (float("nan"), "max_value=nan"),
                                             (float("inf"), "max_value=inf")],
                         ids=["zero", "string", "bool", "nan", "inf"])
def test_max_value_invalid(max_value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        add_activity_regularization(small_cnn(), hoyer=0.1, max_value=max_value)


def test_max_value_needs_relu_layers():
    m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu", name="d"),
                          keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"\['d'\].*keras.layers.ReLU"):
        add_activity_regularization(m, hoyer=0.1, max_value=3.75)


def test_gamma_and_weight_regularization():
    model = small_cnn()
    strengths = add_gamma_regularization(model, l1=1e-3, weighting="flops")
    macs = np.array([8 * 8 * 9 * 1 * 8, 8 * 8 * 9 * 8 * 16, 4 * 4 * 9 * 16 * 16], float)
    np.testing.assert_allclose([strengths[f"bn{i}"] for i in range(3)], 1e-3 * macs / macs.mean())
    assert model.get_layer("bn1").gamma.regularizer is not None
    assert add_weight_regularization(model, l1=1e-4) == ["conv0", "conv1", "conv2", "logits"]
    model(np.zeros((1, 8, 8, 1), "float32"))
    assert len(model.losses) == 7  # 3 gammas + 4 kernels
    params = add_gamma_regularization(model, l1=1.0, weighting="params")
    assert params["bn2"] > params["bn1"] > params["bn0"]


@pytest.mark.parametrize("call,match", [
    (lambda m: add_activity_regularization(m, l1=-1.0), "l1"),
    (lambda m: add_activity_regularization(m, l1=0.1, weighting="flops"), "weighting"),
    (lambda m: add_gamma_regularization(m, weighting="time"), "weighting"),
    (lambda m: ActivityRegularizer(hoyer=-0.5), "hoyer"),
    (lambda m: add_activity_regularization(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
                                           l1=0.1), "no ReLU"),
], ids=["negative", "activity-weighting", "gamma-weighting", "hoyer", "no-relu"])
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(small_cnn())


@pytest.mark.slow
def test_regularizer_table_30_epochs(capsys):
    """The table of keras_nna.sparsity.regularizers' docstring (~1 min on 2 cores).

    Run: ``pytest -m slow tests/sparsity/test_regularizers.py -k table -s``.
    """
    x, y, x_te, y_te = digits()
    rows = {}
    for name, reg in [("none", None), ("l1=0.03", dict(l1=0.03)), ("l1=0.1", dict(l1=0.1)),
                      ("hoyer=0.1", dict(hoyer=0.1)), ("hoyer=0.3", dict(hoyer=0.3))]:
        model = small_cnn(filters=(16, 32, 32, 64), seed=0)
        if reg:
            add_activity_regularization(model, **reg)
        compile_cnn(model)
        keras.utils.set_random_seed(0)
        model.fit(x, y, epochs=30, batch_size=64, verbose=0)
        s = measure_activation_sparsity(model, x_te, quantization_step=STEP)["total"]
        rows[name] = (s["zeros"], s["events"], model.evaluate(x_te, y_te, verbose=0)[1])
        with capsys.disabled():
            print(f"{name:10s} q-zeros {s['zeros']:.3f} events/img {s['events']:7.1f} "
                  f"float acc {rows[name][2]:.3f}")
    assert all(rows[n][0] > rows["none"][0] + 0.1 for n in rows if n != "none")
