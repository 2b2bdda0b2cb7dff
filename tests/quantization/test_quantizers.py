"""Golden tables pinning the quantizers' exact outputs and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.quantization.quantizers import (
    activation_step,
    check_bits,
    dyadic,
    fake_quantize_activations,
    fake_quantize_weights,
    quantize_weights,
    reciprocal_multiplier,
)

W = np.array([[1.0], [0.5], [0.25], [0.2], [-0.125], [-0.9], [0.0], [0.07]], np.float32)

# Codes of W (one channel, max |w| = 1): round-half-to-even of the float32 quotient
# w / (1 / qmax). Exact halves in real arithmetic land just below .5 after the float32
# division for qmax 7 and 15 (0.5 / (1/7) = 3.4999998), which these rows pin.
WEIGHT_GOLDEN = {
    2: [1, 0, 0, 0, 0, -1, 0, 0],  # qmax 1: 0.5 -> 0 (half to even)
    4: [7, 3, 2, 1, -1, -6, 0, 0],  # qmax 7: 3.4999998 -> 3, 1.75 -> 2, 1.4 -> 1, -6.3 -> -6
    5: [15, 7, 4, 3, -2, -13, 0, 1],  # qmax 15: 7.4999995 -> 7, -13.499999 -> -13, 1.05 -> 1
    8: [127, 64, 32, 25, -16, -114, 0, 9],  # qmax 127: 63.5 -> 64 (even), 31.75, 25.4, 8.89
}


@pytest.mark.parametrize("bits", sorted(WEIGHT_GOLDEN), ids=lambda b: f"{b}bit")
def test_weight_codes_golden(bits):
    codes, scale = quantize_weights(W, bits)
    assert codes.numpy().ravel().astype(int).tolist() == WEIGHT_GOLDEN[bits]
    np.testing.assert_allclose(scale.numpy().ravel(), [1.0 / (2 ** (bits - 1) - 1)], rtol=1e-7)


def test_weight_scales_per_output_channel_and_zero_channel():
    w = np.array([[0.5, 0.0, -2.0], [-0.25, 0.0, 1.0]], np.float32)
    codes, scale = quantize_weights(w, 4)
    np.testing.assert_allclose(scale.numpy().ravel(), [0.5 / 7, 1.0, 2.0 / 7])
    assert codes.numpy().astype(int).tolist() == [[7, 0, -7], [-3, 0, 3]]  # 3.4999998 after division


# (x, bits, step) -> expected fake-quantized activation (round half up, clip [0, qmax*step]).
ACT_GOLDEN = [
    ([-1.0, 0.0, 0.1, 0.125, 0.13, 1.0, 3.74, 3.8, 100.0], 4, 0.25,
     [0.0, 0.0, 0.0, 0.25, 0.25, 1.0, 3.75, 3.75, 3.75]),
    ([0.0, 0.24, 0.26, 0.76, 2.9, 3.2], 2, 1.0, [0.0, 0.0, 0.0, 1.0, 3.0, 3.0]),
    ([0.0, 0.49, 0.5, 0.51, 1.7], 5, 0.125, [0.0, 0.5, 0.5, 0.5, 1.75]),
    ([0.0, 1 / 128, 3 / 128, 0.5, 4.1], 8, 1 / 64, [0.0, 1 / 64, 1 / 32, 0.5, 255 / 64]),
    ([0.0, 1.9, 2.0, 7.0], 1, 4.0, [0.0, 0.0, 4.0, 4.0]),
]


@pytest.mark.parametrize("x,bits,step,expected", ACT_GOLDEN, ids=[f"{g[1]}bit" for g in ACT_GOLDEN])
def test_activation_golden(x, bits, step, expected):
    out = fake_quantize_activations(tf.constant(x, tf.float32), bits, step)
    np.testing.assert_array_equal(out.numpy(), np.array(expected, np.float32))


def test_activation_ste_gradient():
    x = tf.constant([-0.5, 0.1, 1.0, 3.7, 3.8, 10.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fake_quantize_activations(x, 4, 0.25)
    assert tape.gradient(y, x).numpy().tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_weight_ste_gradient_is_identity():
    w = tf.Variable(W)
    with tf.GradientTape() as tape:
        y = tf.reduce_sum(fake_quantize_weights(w, 4) * tf.range(8, dtype=tf.float32)[:, None])
    np.testing.assert_array_equal(tape.gradient(y, w).numpy().ravel(), np.arange(8))


def test_progressive_zero_keeps_float_weights():
    out = fake_quantize_weights(tf.constant(W), 4, progress=0.0)
    np.testing.assert_array_equal(out.numpy(), W)
    full = fake_quantize_weights(tf.constant(W), 4, progress=1.0)
    np.testing.assert_allclose(full.numpy().ravel(), np.array(WEIGHT_GOLDEN[4]) / 7, rtol=1e-6)


@pytest.mark.parametrize("bits,expected", [(1, 4.0), (2, 1.0), (4, 0.25), (5, 0.125), (6, 0.0625), (8, 2**-6)])
def test_activation_step(bits, expected):
    assert activation_step(bits, 4.0) == expected


@pytest.mark.parametrize("value", [0.1, 3.0, -7.5, 1e-6, 12345.678])
def test_dyadic_is_15_bit_and_close(value):
    m, e, n = dyadic(tf.constant([value], tf.float64), tf.constant([value], tf.float64))
    m, e, n = float(m[0]), float(e[0]), float(n[0])
    assert 2**14 <= abs(m) <= 2**15 and m == int(m) and n == int(n)
    assert abs(m * 2**-e - value) <= 2 ** -(e + 1)


@pytest.mark.parametrize("count", [1, 2, 3, 9, 36, 49, 144])
def test_reciprocal_multiplier(count):
    m, s = reciprocal_multiplier(count)
    assert 2**14 <= m <= 2**15
    assert abs(m / 2**s - 1 / count) <= 2 ** -(s + 1)


@pytest.mark.parametrize("bits,kind", [(0, "weight"), (9, "weight"), (1, "signed_activation"), (0, "activation"),
                                       (9, "activation"), (4.0, "weight"), (True, "activation")],
                         ids=lambda v: str(v))
def test_bad_bits_raise_clear_error(bits, kind):
    with pytest.raises(ValueError, match=r"expected an integer in \[\d, 8\], received"):
        check_bits(bits, kind)
