"""QAT training with BatchNorm folded into the kernel (batch_norm_training='folded')."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_nna.quantization import QuantizeWrapper
from keras_nna.quantization.kernels import apply_kernels, fake_kernels
from keras_nna.quantization.quantizers import fake_quantize_activations

KINDS = {
    "conv": lambda: keras.layers.Conv2D(4, 3, padding="same", use_bias=True),
    "depthwise": lambda: keras.layers.DepthwiseConv2D(3, strides=2, padding="same"),
    "separable": lambda: keras.layers.SeparableConv2D(4, 3, use_bias=False),
    "dense": lambda: keras.layers.Dense(4),
}


def _wrapper(kind, mode, activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    layer = KINDS[kind]()
    bn = keras.layers.BatchNormalization(momentum=0.9)
    w = QuantizeWrapper(layer, batch_norm=bn, activation=activation, batch_norm_training=mode)
    shape = (2, 4) if kind == "dense" else (2, 6, 6, 3)
    x = np.random.default_rng(seed).normal(size=shape).astype("float32")
    w.build(x.shape)
    rng = np.random.default_rng(seed + 1)
    c = bn.moving_mean.shape[0]
    bn.moving_mean.assign(rng.normal(size=c).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.2, 3.0, size=c).astype("float32"))
    bn.gamma.assign(rng.uniform(-1.5, 1.5, size=c).astype("float32"))
    bn.beta.assign(rng.normal(size=c).astype("float32"))
    if getattr(layer, "bias", None) is not None:
        layer.bias.assign(rng.normal(size=c).astype("float32"))
    return w, x


def _reference(w, x):
    """Unfolded reference: fake-quantized conv, bias, inference-mode BatchNorm."""
    k1, k2 = fake_kernels(w.kind, *w._kernels(), w.weight_bits)
    if w.kind == "dense":
        y = apply_kernels("dense", x, k1, k2)
    else:
        y = apply_kernels(w.kind, x, k1, k2, w.layer.strides, w.layer.padding)
    if w.layer.get_config().get("use_bias", False):
        y = y + w.layer.bias
    return w.batch_norm(y, training=False)


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_folded_training_equals_conv_then_frozen_batch_norm(kind):
    w, x = _wrapper(kind, "folded")
    got = w(x, training=True).numpy()
    want = _reference(w, x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert np.abs(want).max() > 0.1  # a non-trivial comparison


@pytest.mark.parametrize("mode", ["folded", "batch"], ids=["folded", "batch"])
def test_moving_statistics_frozen_only_when_folded(mode):
    w, x = _wrapper("conv", mode)
    before = w.batch_norm.moving_mean.numpy().copy()
    w(x, training=True)
    changed = not np.allclose(before, w.batch_norm.moving_mean.numpy())
    assert changed == (mode == "batch")


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_folded_gradients_reach_kernel_gamma_and_beta(kind):
    w, x = _wrapper(kind, "folded", activation="relu")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(w(x, training=True)))
    vars_ = [w._kernels()[0], w.batch_norm.gamma, w.batch_norm.beta]
    grads = tape.gradient(loss, vars_)
    for v, g in zip(vars_, grads):
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0, v.name


@pytest.mark.parametrize("kind", list(KINDS), ids=list(KINDS))
def test_folded_training_codes_match_integer_inference(kind):
    w, x = _wrapper(kind, "folded", activation="relu")
    train = w(x, training=True).numpy() / w.activation_step
    exact = w(x, training=False).numpy() / w.activation_step
    assert np.mean(np.abs(train - exact) < 0.5) > 0.9  # rare rounding-boundary flips only
    assert np.abs(train - exact).max() <= 1.0 + 1e-6


def test_batch_mode_uses_batch_statistics():
    w, x = _wrapper("dense", "batch")
    got = w(x, training=True).numpy()
    k1, _ = fake_kernels("dense", w.layer.kernel, None, w.weight_bits)
    y = x @ k1.numpy() + w.layer.bias.numpy()
    bn = w.batch_norm
    want = ((y - y.mean(0)) / np.sqrt(y.var(0) + bn.epsilon) * bn.gamma.numpy() + bn.beta.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_config_round_trip_and_bad_value():
    w, _ = _wrapper("conv", "batch")
    clone = QuantizeWrapper.from_config(w.get_config())
    assert clone.batch_norm_training == "batch"
    with pytest.raises(ValueError, match="batch_norm_training must be 'auto', 'folded' or 'batch'.*'moving'"):
        QuantizeWrapper(keras.layers.Dense(2), batch_norm_training="moving")


def test_fake_quantize_activations_gradient_unchanged():
    x = tf.constant([-1.0, 0.3, 5.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fake_quantize_activations(x, 4, 0.25)
    assert tape.gradient(y, x).numpy().tolist() == [0.0, 1.0, 0.0]


def _unfused(x, bits, step, signed):
    """The documented formula, element-wise in float64."""
    from keras_nna.quantization.quantizers import activation_range
    lo, hi = activation_range(bits, signed)
    return np.clip(np.floor(np.asarray(x, np.float64) / step + 0.5), lo, hi) * step


@pytest.mark.parametrize("bits,signed", [(2, False), (4, False), (8, False), (2, True), (4, True),
                                         (8, True)], ids=["u2", "u4", "u8", "s2", "s4", "s8"])
def test_fused_fake_quantize_activations_matches_formula(bits, signed):
    step = 0.25
    ties = np.arange(-300, 300, dtype=np.float32) / 8  # every half-step tie and beyond the clip
    x = np.concatenate([ties, np.random.default_rng(bits).normal(0, 4, 5000).astype("float32")])
    got = fake_quantize_activations(tf.constant(x), bits, step, signed=signed).numpy()
    np.testing.assert_array_equal(got, _unfused(x, bits, step, signed))


@pytest.mark.parametrize("trained", [False, True], ids=["fresh_stats", "trained_stats"])
def test_auto_folds_only_trained_statistics(trained):
    w, x = _wrapper("conv", "auto")
    if not trained:
        w.batch_norm.moving_mean.assign(np.zeros(4, "float32"))
        w.batch_norm.moving_variance.assign(np.ones(4, "float32"))
    before = w.batch_norm.moving_mean.numpy().copy()
    got = tf.function(lambda t: w(t, training=True))(x).numpy()  # decided at trace time
    assert np.allclose(before, w.batch_norm.moving_mean.numpy()) == trained
    if trained:
        np.testing.assert_allclose(got, _reference(w, x).numpy(), rtol=1e-4, atol=1e-4)
