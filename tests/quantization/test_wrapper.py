"""QuantizeWrapper: training step, config round trip, exact inference grid."""

import keras
import numpy as np
import pytest

from keras_nna.quantization import QuantizationPolicy, QuantizeWrapper
from tests.layer_test_utils import check_layer

CASES = {
    "conv": (lambda: keras.layers.Conv2D(4, 3, padding="same"), (6, 6, 2)),
    "conv_stride2_valid": (lambda: keras.layers.Conv2D(3, 3, strides=2), (7, 7, 3)),
    "depthwise": (lambda: keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False), (5, 5, 3)),
    "separable": (lambda: keras.layers.SeparableConv2D(5, 3, strides=2, padding="same"), (7, 5, 2)),
    "dense": (lambda: keras.layers.Dense(3), (6,)),
}


@pytest.mark.parametrize("with_bn", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_wrapper_train_step_and_round_trip(name, with_bn):
    make, shape = CASES[name]
    layer = QuantizeWrapper(
        make(),
        policy=QuantizationPolicy(weight_bits=5, activation_bits=6),
        batch_norm=keras.layers.BatchNormalization() if with_bn else None,
        activation="relu",
    )
    model, x = check_layer(layer, shape)
    y = model.predict(x, verbose=0)
    codes = y / layer.activation_step
    np.testing.assert_array_equal(codes, np.round(codes))
    assert codes.min() >= 0 and codes.max() <= 63


@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_close_to_training_path_without_bn(name):
    """Both paths implement the same formula; they differ only by the 15-bit multiplier."""
    make, shape = CASES[name]
    layer = QuantizeWrapper(make(), activation=None)
    x = np.random.default_rng(1).uniform(0, 2, (3, *shape)).astype("float32")
    exact = layer(x, training=False).numpy()
    train = layer(x, training=True).numpy()
    np.testing.assert_allclose(exact, train, rtol=1e-3, atol=1e-4)


def test_first_layer_rounds_and_clips_input():
    layer = QuantizeWrapper(keras.layers.Dense(2), first_layer=True, input_scale=1 / 255)
    x = np.array([[0.4, 254.6, 300.0]], "float32")
    ref = np.array([[0.0, 255.0, 255.0]], "float32")
    np.testing.assert_array_equal(layer(x, training=False), layer(ref, training=False))
    assert layer.weight_bits == 8


def test_inner_relu_implies_quantized_output():
    layer = QuantizeWrapper(keras.layers.Dense(2, activation="relu"))
    assert layer.activation == "relu" and layer.activation_bits == 4


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: keras.layers.Conv1D(2, 3), "expected one of Conv2D"),
        (lambda: keras.layers.Conv2D(2, 3, dilation_rate=2), "dilation_rate"),
        (lambda: keras.layers.DepthwiseConv2D(3, depth_multiplier=2), "depth_multiplier"),
        (lambda: keras.layers.Dense(2, activation="tanh"), "activation='tanh'"),
    ],
    ids=["conv1d", "dilation", "depth_multiplier", "tanh"],
)
def test_unsupported_layers_raise(make, match):
    with pytest.raises(ValueError, match=match):
        QuantizeWrapper(make())


def test_policy_overrides_and_errors():
    policy = QuantizationPolicy(overrides={"d": {"weight_bits": 6, "activation_bits": 5}})
    layer = QuantizeWrapper(keras.layers.Dense(2, name="d"), policy=policy, activation="relu")
    assert (layer.weight_bits, layer.activation_bits, layer.activation_step) == (6, 5, 0.125)
    with pytest.raises(ValueError, match="Unknown override keys"):
        QuantizationPolicy(overrides={"d": {"bits": 4}})
    with pytest.raises(ValueError, match=r"received 9"):
        QuantizationPolicy(overrides={"d": {"activation_bits": 9}})
    with pytest.raises(ValueError, match=r"received 0"):
        QuantizationPolicy(weight_bits=0)
    assert QuantizationPolicy.from_config(policy.get_config()) == policy


@pytest.mark.parametrize("training", [False, True], ids=["exact", "fake_quant"])
def test_separable_with_dead_depthwise_channel_stays_accurate(training):
    """A pruned (all-zero) depthwise channel must not swamp the pointwise scales."""
    rng = np.random.default_rng(0)
    dw = rng.normal(size=(3, 3, 4, 1)).astype("float32")
    dw[..., 1, :] = 0.0
    pw = rng.normal(size=(1, 1, 4, 6)).astype("float32")
    ref = keras.layers.SeparableConv2D(6, 3, padding="same", use_bias=False)
    ref.build((None, 5, 5, 4))
    ref.set_weights([dw, pw])
    inner = keras.layers.SeparableConv2D.from_config(ref.get_config())
    inner.build((None, 5, 5, 4))
    inner.set_weights([dw, pw])
    layer = QuantizeWrapper(inner, policy=QuantizationPolicy(8, 8, 8))
    x = rng.uniform(0, 1, (2, 5, 5, 4)).astype("float32")
    expected = ref(x).numpy()
    np.testing.assert_allclose(layer(x, training=training).numpy(), expected,
                               atol=0.02 * np.abs(expected).max())
