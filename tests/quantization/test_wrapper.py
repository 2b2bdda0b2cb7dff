"""QuantizeWrapper: training step, config round trip, exact inference grid."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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


def _identity_dense(units):
    """A Dense layer with an identity kernel: with 2-bit weights, codes 1 and scale 1 (exact)."""
    dense = keras.layers.Dense(units, use_bias=False, name="d")
    dense.build((None, units))
    dense.set_weights([np.eye(units, dtype="float32")])
    return dense


# (activation bits, inputs) -> expected signed codes. Identity kernel with 2-bit weights (scale 1,
# so the multiplier 1/step is exact), activation_max 4: step 0.5 (4 bits, codes -8..7) or 2^-5
# (8 bits, -128..127). Round half up (ties towards +inf: -7.5 -> -7, -0.5 -> 0), clip both ends.
SIGNED_GOLDEN = {
    "4bit": (4, [-9.0, -4.0, -3.75, -0.25, 0.0, 0.24, 0.25, 1.3, 3.5, 3.75, 100.0],
             [-8, -8, -7, 0, 0, 0, 1, 3, 7, 7, 7]),
    "8bit": (8, [-5.0, -4.0, -1 / 64, -1 / 128, 0.0, 1 / 64, 0.1, 3.96875, 3.99, 7.0],
             [-128, -128, 0, 0, 0, 1, 3, 127, 127, 127]),
}


@pytest.mark.parametrize("case", sorted(SIGNED_GOLDEN))
def test_signed_codes_golden(case):
    bits, x, expected = SIGNED_GOLDEN[case]
    n = len(x)
    layer = QuantizeWrapper(_identity_dense(n), signed=True,
                            policy=QuantizationPolicy(2, bits, activation_max=4.0))
    step = 0.5 if bits == 4 else 2.0**-5
    assert (layer.activation_bits, layer.activation_step, layer.signed) == (bits, step, True)
    y = layer(np.array([x], "float32"), training=False).numpy()[0]
    assert (y / step).astype(int).tolist() == expected
    np.testing.assert_array_equal(y, np.array(expected, "float32") * step)
    fake = layer(np.array([x], "float32"), training=True).numpy()[0]
    np.testing.assert_array_equal(fake, y)  # exact multiplier: fake quantization lands on the same codes
    assert layer.integer_summary()["signed"] is True


def test_signed_training_gradient_is_ste_in_range():
    layer = QuantizeWrapper(_identity_dense(4), signed=True, policy=QuantizationPolicy(2, 4))
    x = tf.constant([[-5.0, -1.0, 2.0, 3.6]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(layer(x, training=True))
    assert tape.gradient(y, x).numpy().tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_signed_config_round_trip_and_old_config_loads():
    layer = QuantizeWrapper(keras.layers.Dense(2, name="d"), signed=True)
    config = layer.get_config()
    assert config["signed"] is True
    assert QuantizeWrapper.from_config(config).signed is True
    del config["signed"]  # a config saved before signed codes existed
    old = QuantizeWrapper.from_config(config)
    assert (old.signed, old.activation_bits, old.activation_step) == (False, None, None)


@pytest.mark.parametrize("kwargs,match", [
    ({"activation": "relu", "signed": True}, r"signed=True means a linear output.*applies ReLU"),
    ({"signed": True, "policy": QuantizationPolicy(activation_bits=1)},
     r"layer 'd' \(signed codes need a sign bit\): expected an integer in \[2, 8\], received 1"),
], ids=["relu_and_signed", "one_bit"])
def test_signed_refusals(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizeWrapper(keras.layers.Dense(2, name="d"), **kwargs)
