"""QuantizedAdd: golden tables and the integer formula of docs/quantization.md ("Residual Add")."""

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.quantization import QuantizedAdd

# id -> (bits, step, relu, a, b, expected output codes). Inputs are exact dyadic values.
GOLDEN = {
    # a on step 2^-2, b on 2^-1, output 2^-1: 0.75 + 1.0 = 1.75 -> 3.5 -> 4 (tie up)
    "different_exponents": (4, 0.5, False, [0.75, 0.25, -1.25, 2.5], [1.0, 0.5, -0.5, -3.0],
                            [4, 2, -3, -1]),
    # output step finer than both inputs (d < 0): exact, no rounding
    "finer_output": (8, 0.125, False, [1.0, -2.0, 3.5], [0.5, 1.5, -4.0], [12, -4, -4]),
    # ties go up (towards +inf) also for negative sums: -0.5 -> 0, -1.5 -> -1, 2.5 -> 3
    "ties_up": (4, 1.0, False, [-0.25, -1.0, 2.0, 0.25], [-0.25, -0.5, 0.5, 0.25], [0, -1, 3, 1]),
    # signed 4-bit, step 0.5: codes clip to -8 .. 7
    "clip_signed": (4, 0.5, False, [3.0, -3.0, 3.5, -4.0], [1.0, -2.0, 0.25, -0.25], [7, -8, 7, -8]),
    # relu 4-bit, step 0.25: codes clip to 0 .. 15
    "clip_relu": (4, 0.25, True, [3.0, -3.0, 0.5, -0.125], [1.0, -2.0, 0.25, 0.0], [15, 0, 3, 0]),
    # the same sums, relu vs signed
    "relu": (3, 0.5, True, [-1.0, 0.5, 1.5, 4.0], [0.25, 0.25, 0.5, 0.0], [0, 2, 4, 7]),
    "signed": (3, 0.5, False, [-1.0, 0.5, 1.5, 4.0], [0.25, 0.25, 0.5, 0.0], [-1, 2, 3, 3]),
    # 2-bit signed: codes -2 .. 1
    "two_bit_signed": (2, 1.0, False, [-5.0, -1.5, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0], [-2, -1, 1, 1]),
}


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_golden(case):
    bits, step, relu, a, b, expected = GOLDEN[case]
    layer = QuantizedAdd(bits, step, relu)
    a, b = (np.array([v], "float32") for v in (a, b))
    out = layer([a, b], training=False).numpy()[0]
    assert out.dtype == np.float32
    assert (out / step).tolist() == [float(q) for q in expected]


def _integer_add(qa, fa, qb, fb, bits, fo, relu):
    """docs/quantization.md, Residual Add: the integer formula the accelerator runs."""
    big_f = max(fa, fb)
    total = qa * 2 ** (big_f - fa) + qb * 2 ** (big_f - fb)
    d = big_f - fo
    v = (total + 2 ** (d - 1)) >> d if d > 0 else total * 2 ** (-d)
    lo, hi = (0, 2**bits - 1) if relu else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return np.clip(v, lo, hi)


@pytest.mark.parametrize("relu", [False, True], ids=["signed", "relu"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_integer_formula(seed, relu):
    rng = np.random.default_rng(seed)
    fa, fb, fo = (int(v) for v in rng.integers(-3, 7, 3))
    bits = int(rng.integers(2, 9))
    a_signed, b_signed = rng.integers(0, 2, 2)
    qa = rng.integers(-128 if a_signed else 0, 128 if a_signed else 256, (64,))
    qb = rng.integers(-8 if b_signed else 0, 8 if b_signed else 16, (64,))
    expected = _integer_add(qa, fa, qb, fb, bits, fo, relu)
    layer = QuantizedAdd(bits, 2.0**-fo, relu)
    xa = (qa * 2.0**-fa).astype("float32")[None]
    xb = (qb * 2.0**-fb).astype("float32")[None]
    out = layer([xa, xb], training=False).numpy()[0]
    np.testing.assert_array_equal(out * 2.0**fo, expected)


def test_training_fake_quantizes_the_sum_with_ste():
    layer = QuantizedAdd(4, 0.5, relu=False)
    a = tf.constant([[-5.0, 0.3, 1.0, 3.0]])
    b = tf.constant([[0.0, 0.0, 0.2, 1.0]])
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = layer([a, b], training=True)
    assert y.numpy().tolist() == [[-4.0, 0.5, 1.0, 3.5]]
    assert tape.gradient(y, a).numpy().tolist() == [[0.0, 1.0, 1.0, 0.0]]


@pytest.mark.parametrize("kwargs,match", [
    ({"bits": 1, "step": 1.0, "relu": False}, r"signed codes need a sign bit.*\[2, 8\], received 1"),
    ({"bits": 9, "step": 1.0, "relu": True}, r"\[1, 8\], received 9"),
    ({"bits": 4, "step": 0.3, "relu": True}, r"step of layer 'add' must be a power of two"),
], ids=["signed_one_bit", "nine_bits", "step_not_power_of_two"])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuantizedAdd(name="add", **kwargs)


@pytest.mark.parametrize("shapes,match", [
    ([(None, 4, 4, 2), (None, 4, 4, 3)], r"same shape; received \(4, 4, 2\) and \(4, 4, 3\)"),
    ([(None, 4, 4, 2)] * 3, "exactly two tensors"),
], ids=["shape_mismatch", "three_inputs"])
def test_bad_inputs(shapes, match):
    with pytest.raises(ValueError, match=match):
        QuantizedAdd(4, 0.5, False, name="add").build(shapes)
