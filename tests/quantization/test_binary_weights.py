"""Golden tables of 1-bit weights: sign codes, mean-|w| scales, the clipped STE (docs/quantization.md)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_nna.quantization import QuantizationPolicy, QuantizeWrapper
from keras_nna.quantization.kernels import fake_kernels, quantized_kernels
from keras_nna.quantization.quantizers import (
    BINARY_STE_CLIP,
    check_bits,
    fake_quantize_weights,
    quantize_weights,
)

# Three output channels: a pruned zero in channels 0 and 2, channel 1 all zero.
W1 = np.array([[0.5, 0.0, -0.75],
               [-0.25, 0.0, 0.25],
               [0.0, 0.0, 0.125],
               [1.0, 0.0, -0.375]])
W1_CODES = [[1, 0, -1], [-1, 0, 1], [0, 0, 1], [1, 0, -1]]
# Mean |w| over the NON-ZERO weights: (0.5 + 0.25 + 1) / 3 (the zero is not counted; counting it
# would give 0.4375), all-zero channel -> 1, (0.75 + 0.25 + 0.125 + 0.375) / 4.
W1_SCALES = [1.75 / 3, 1.0, 0.375]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_codes_and_scales_golden(dtype):
    codes, scale = quantize_weights(W1.astype(dtype), 1)
    assert codes.dtype == scale.dtype == tf.as_dtype(dtype)
    assert codes.numpy().astype(int).tolist() == W1_CODES
    np.testing.assert_array_equal(scale.numpy().ravel(), np.array(W1_SCALES, dtype))


def test_binary_kernel_codes_are_exact_float64():
    codes, _, scale = quantized_kernels("dense", W1.astype("float32"), None, bits=1)
    assert codes.dtype == scale.dtype == tf.float64
    assert codes.numpy().astype(int).tolist() == W1_CODES
    assert scale.numpy().tolist() == W1_SCALES  # exact: 1.75 / 3 in float64


def test_binary_scale_is_accumulated_in_float64():
    """The mean of 4096 float32 weights, taken in float32, misses the float64 one by ulps."""
    w = np.random.default_rng(0).normal(0, 1, (4096, 2)).astype("float32")
    w[::7] = 0.0
    _, scale = quantize_weights(w, 1)
    a = np.abs(w.astype(np.float64))
    ref = np.array([a[:, c][a[:, c] > 0].mean() for c in range(2)]).astype("float32")
    np.testing.assert_array_equal(scale.numpy().ravel(), ref)
    f32 = tf.reduce_sum(tf.abs(w), 0) / tf.reduce_sum(tf.cast(w != 0, tf.float32), 0)
    assert not np.array_equal(f32.numpy(), ref), "data too easy: float32 would pass too"


@pytest.mark.parametrize("kind,shape,axes", [("conv", (2, 2, 1, 3), (0, 1, 2)),
                                             ("depthwise", (2, 2, 3, 1), (0, 1, 3))],
                         ids=["conv", "depthwise"])
def test_binary_channel_axes(kind, shape, axes):
    """Conv: one scale per output channel; depthwise: per input channel (axes (2, 3))."""
    k = np.random.default_rng(1).normal(0, 1, shape)
    if kind == "depthwise":
        k[:, :, 0, :] = 0.0  # an all-zero channel
    else:
        k[..., 0] = 0.0
    codes, _, scale = quantized_kernels(kind, k, None, bits=1)
    np.testing.assert_array_equal(codes.numpy(), np.sign(k))
    chans = np.moveaxis(np.abs(k), 2 if kind == "depthwise" else 3, 0).reshape(3, -1)
    expected = [c[c > 0].mean() if (c > 0).any() else 1.0 for c in chans]
    np.testing.assert_allclose(scale.numpy(), expected, rtol=1e-15)
    assert scale.numpy()[0] == 1.0


def test_binary_separable_fused_golden():
    """Depthwise s_d = (0.5, 0.25, dead); pointwise kernel diag(s_d)·w_pw, the dead row zeroed."""
    k1 = np.array([0.5, -0.25, 0.0]).reshape(1, 1, 3, 1)
    k2 = np.array([[0.5, -1.0], [2.0, 0.0], [7.0, 9.0]]).reshape(1, 1, 3, 2)
    d, p, scale = quantized_kernels("separable", k1, k2, bits=1)
    assert d.numpy().ravel().tolist() == [1.0, -1.0, 0.0]
    assert p.numpy()[0, 0].tolist() == [[1.0, -1.0], [1.0, 0.0], [0.0, 0.0]]
    assert scale.numpy().tolist() == [0.375, 0.5]  # (0.25 + 0.5) / 2, 0.5 / 1


# One channel per column, mean |w| over the 8 non-zeros = (6 * 0.25 + 3 + 3.5) / 8 = 1, so the
# clip is 3: |w| = 3 sits on it (gradient 1), 3.5 is outside (0); the pruned zero passes gradient.
STE_W = np.array([[0.25, -0.25], [-0.25, 0.25], [0.25, 0.25], [-0.25, -0.25], [0.25, 0.25],
                  [0.25, -0.25], [-3.0, 3.0], [3.5, -3.5], [0.0, 0.0]], "float32")
STE_FORWARD = [[1, -1], [-1, 1], [1, 1], [-1, -1], [1, 1], [1, -1], [-1, 1], [1, -1], [0, 0]]
STE_GRAD = [1, 1, 1, 1, 1, 1, 1, 0, 1]


def _value_and_grad(fn, w):
    w = tf.Variable(w)
    with tf.GradientTape() as tape:
        y = fn(w)
        loss = tf.reduce_sum(y * tf.reshape(tf.range(1, w.shape[0] + 1, dtype=w.dtype),
                                            (-1,) + (1,) * (len(w.shape) - 1)))
    return y.numpy(), tape.gradient(loss, w).numpy()


def test_binary_ste_mask_at_the_clip():
    assert BINARY_STE_CLIP == 3.0
    y, g = _value_and_grad(lambda w: fake_quantize_weights(w, 1), STE_W)
    np.testing.assert_array_equal(y, np.array(STE_FORWARD, "float32"))  # scale 1
    rows = np.arange(1, 10, dtype="float32")[:, None]
    np.testing.assert_array_equal(g, np.array(STE_GRAD, "float32")[:, None] * rows * np.ones((1, 2)))


def test_binary_ste_in_separable_depthwise_codes():
    """The fused separable's depthwise codes get the same clipped STE, scaled by 1 / s_d."""
    k1 = STE_W[:, :1].reshape(3, 3, 1, 1) * 2.0  # s_d = 2, clip 6
    k2 = np.ones((1, 1, 1, 2), "float32")
    y, g = _value_and_grad(lambda k: fake_kernels("separable", k, k2, 1)[0], k1)
    np.testing.assert_allclose(y.ravel(), np.array(STE_FORWARD)[:, 0], rtol=1e-7)
    np.testing.assert_array_equal(g.ravel(), np.array(STE_GRAD) * np.arange(1, 4).repeat(3) / 2.0)


def test_binary_progressive_zero_and_one():
    y, g = _value_and_grad(lambda w: fake_quantize_weights(w, 1, progress=0.0), STE_W)
    np.testing.assert_array_equal(y, STE_W)  # float weights, identity gradient
    assert np.all(g != 0)
    y, _ = _value_and_grad(lambda w: fake_quantize_weights(w, 1, progress=1.0), STE_W)
    np.testing.assert_array_equal(y, np.array(STE_FORWARD, "float32"))


@pytest.mark.parametrize("kwargs", [{"weight_bits": 1}, {"first_layer_weight_bits": 1},
                                    {"overrides": {"fc": {"weight_bits": 1}}}],
                         ids=["weight_bits", "first_layer", "override"])
def test_policy_accepts_one_bit_weights(kwargs):
    policy = QuantizationPolicy(**kwargs)
    first = "first_layer_weight_bits" in kwargs
    assert policy.resolve("fc", first_layer=first)["weight_bits"] == 1
    assert check_bits(1, "weight") == 1
    with pytest.raises(ValueError, match=r"expected an integer in \[1, 8\], received 0"):
        QuantizationPolicy(**{k: 0 if k != "overrides" else {"fc": {"weight_bits": 0}}
                              for k in kwargs})


def test_wrapper_one_bit_codes_and_add_subtract_identity():
    """acc = Σ x·w_q = 2·Σ_{w=+1} x − Σ_{w≠0} x: a 1-bit layer needs only adds and subtracts."""
    keras.utils.set_random_seed(3)
    layer = QuantizeWrapper(keras.layers.Dense(5, use_bias=False, name="fc"),
                            QuantizationPolicy(weight_bits=1), activation="relu")
    layer.build((None, 16))
    kernel = layer.layer.kernel.numpy()
    kernel[[2, 9], 1] = 0.0  # pruned weights
    layer.layer.kernel.assign(kernel)
    codes = layer.integer_summary()["kernel"]
    np.testing.assert_array_equal(codes, np.sign(kernel).astype(np.int64))
    x = np.random.default_rng(4).integers(0, 16, (6, 16))
    acc = 2 * x @ (codes == 1) - x @ (codes != 0)
    np.testing.assert_array_equal(acc, x @ codes)
    y = layer(x.astype("float32"), training=False).numpy()
    assert np.all(np.mod(y, layer.activation_step) == 0) and np.unique(y).size > 1
