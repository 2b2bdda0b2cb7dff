"""Kernel codes of a quantized conv/depthwise/separable/dense layer.

`QuantizeWrapper` keeps the float kernels as trainable variables; these
functions turn them into what the accelerator multiplies by
(`docs/quantization.md`, "Weights"):

* `quantized_kernels`: exact integer codes and per-output-channel scales, in
  float64 (inference and export);
* `fake_kernels`: the same grid with a straight-through gradient (training);
* `apply_kernels`: the layer's convolution / matmul with given kernels.

A separable layer is one fused layer: the depthwise kernel is quantized per
channel and its scales are folded into the pointwise kernel before that one
is quantized per output channel. Every width 1–8 follows the same rules
(1 bit: sign codes, mean-|w| scales, see `quantize_weights`).

Example:

>>> import numpy as np
>>> k = np.array([[0.5, -1.0], [0.25, 0.5]], "float64")
>>> codes, _, scale = quantized_kernels("dense", k, None, bits=4)
>>> codes.numpy().tolist(), scale.numpy().tolist()
([[7.0, -7.0], [4.0, 4.0]], [0.07142857142857142, 0.14285714285714285])
"""

import keras
import tensorflow as tf

from keras_nna.quantization.quantizers import fake_quantize_weights, quantize_weights

__all__ = ["apply_kernels", "batch_norm_in_sync", "fake_kernels", "fold_batch_norm", "live_scale", "quantized_kernels"]


def batch_norm_in_sync(bn, y):
    """Training-mode BatchNorm, moments all-reduced across replicas (docs/distributed.md).

    Per-replica moving statistics drift apart; export reads replica 0's.
    """
    strategy = tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync == 1 or bn.synchronized:
        return bn(y, training=True)
    bn.synchronized = True
    try:
        return bn(y, training=True)
    finally:
        bn.synchronized = False


def fold_batch_norm(kind, bn, k1, k2, bias=None):
    """Folds an inference-mode BatchNorm into (fake-quantized) kernels and bias.

    ``g = gamma / sqrt(moving_variance + epsilon)`` multiplies the output
    channels of the kernel (the pointwise kernel of a separable layer) and
    the bias becomes ``(bias - moving_mean) * g + beta``: one linear op
    computes conv + BatchNorm with frozen statistics, as the integer
    inference does (codes times a per-channel multiplier). Gradients reach
    the kernel, `gamma` and `beta`.

    Args:
        kind: As in `quantized_kernels`.
        bn: A built `keras.layers.BatchNormalization` (channel-last).
        k1: Kernel (depthwise kernel of a separable layer).
        k2: Pointwise kernel of a separable layer, else `None`.
        bias: The layer's bias, or `None`. Defaults to `None`.

    Returns:
        `(k1f, k2f, bias_f)`.

    Example:

    >>> bn = keras.layers.BatchNormalization(epsilon=0.0)
    >>> bn.build((None, 2))
    >>> _ = bn.moving_variance.assign([4.0, 1.0]), bn.moving_mean.assign([1.0, 0.0])
    >>> k, _, b = fold_batch_norm("dense", bn, tf.ones((3, 2)), None)
    >>> k.numpy().tolist(), b.numpy().tolist()
    ([[0.5, 1.0], [0.5, 1.0], [0.5, 1.0]], [-0.5, 0.0])
    """
    g = tf.math.rsqrt(tf.stop_gradient(bn.moving_variance) + bn.epsilon)
    if bn.scale:
        g = g * bn.gamma
    b = -tf.stop_gradient(bn.moving_mean) if bias is None else bias - tf.stop_gradient(bn.moving_mean)
    b = b * g
    if bn.center:
        b = b + bn.beta
    if kind == "separable":
        return k1, k2 * g, b
    if kind == "depthwise":
        return k1 * tf.reshape(g, (1, 1, -1, 1)), k2, b
    return k1 * g, k2, b


def live_scale(depthwise_kernel, scale):
    """Depthwise scales with dead (all-zero, e.g. pruned) channels set to 0.

    A dead channel's codes are 0 whatever its scale; folding the placeholder
    scale 1 into the pointwise kernel would let that unused row dominate the
    pointwise quantization range of every output channel.
    """
    alive = tf.reduce_max(tf.abs(depthwise_kernel), axis=(0, 1), keepdims=True) > 0
    return tf.where(alive, scale, tf.zeros_like(scale))


def _channel_axes(kind):
    return (2, 3) if kind == "depthwise" else (-1,)


def quantized_kernels(kind, k1, k2, bits):
    """Integer kernel codes and per-output-channel scales, in float64.

    Args:
        kind: `"conv"`, `"depthwise"`, `"separable"` or `"dense"`.
        k1: The kernel (the depthwise kernel of a separable layer).
        k2: The pointwise kernel of a separable layer, else `None`.
        bits: Weight bits (1–8).

    Returns:
        `(codes1, codes2, scale)`: float64 tensors; `codes2` is `None`
        unless `kind` is `"separable"`; `scale` has one entry per output
        channel.
    """
    k1, k2 = (None if k is None else tf.cast(k, tf.float64) for k in (k1, k2))
    if kind == "separable":
        d_codes, s_d = quantize_weights(k1, bits, channel_axes=(2, 3))
        pw_eff = k2 * tf.reshape(live_scale(k1, s_d), (1, 1, -1, 1))
        p_codes, s_p = quantize_weights(pw_eff, bits)
        return d_codes, p_codes, tf.reshape(s_p, (-1,))
    codes, scale = quantize_weights(k1, bits, channel_axes=_channel_axes(kind))
    return codes, None, tf.reshape(scale, (-1,))


def fake_kernels(kind, k1, k2, bits, progress=None):
    """Fake-quantized kernels (straight-through gradient) for training.

    Args:
        kind: As in `quantized_kernels`.
        k1: The kernel variable (depthwise kernel of a separable layer).
        k2: The pointwise kernel of a separable layer, else `None`.
        bits: Weight bits (1–8).
        progress: Fraction of weights quantized (progressive quantization).
            Defaults to `None` (all).

    Returns:
        `(k1q, k2q)`; for a separable layer `k1q` holds depthwise codes
        (real units folded into `k2q`), else `k2q` is `None`.
    """
    if kind == "separable":
        _, s_d = quantize_weights(k1, bits, channel_axes=(2, 3))
        s_d = tf.stop_gradient(s_d)
        # Depthwise codes (gradient / s_d): the same STE as every kernel, 1 bit's clip included.
        d = fake_quantize_weights(k1, bits, channel_axes=(2, 3), progress=progress) / s_d
        p = fake_quantize_weights(k2 * tf.reshape(live_scale(k1, s_d), (1, 1, -1, 1)), bits,
                                  progress=progress)
        return d, p
    return fake_quantize_weights(k1, bits, channel_axes=_channel_axes(kind), progress=progress), None


def apply_kernels(kind, x, k1, k2, strides=(1, 1), padding="valid"):
    """The layer's linear operation on `x` with kernels `k1` (and `k2`).

    Args:
        kind: As in `quantized_kernels`.
        x: Input tensor (NHWC, or `[N, features]` for dense).
        k1: Kernel (depthwise kernel of a separable layer).
        k2: Pointwise kernel of a separable layer, else `None`.
        strides: Spatial strides. Defaults to `(1, 1)`.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.

    Returns:
        The accumulator tensor.
    """
    if kind == "dense":
        return keras.ops.matmul(x, k1)
    strides = (1, *strides, 1)
    padding = padding.upper()
    if kind == "conv":
        return tf.nn.conv2d(x, k1, strides, padding)
    if kind == "depthwise":
        return tf.nn.depthwise_conv2d(x, k1, strides, padding)
    return tf.nn.separable_conv2d(x, k1, k2, strides, padding)
