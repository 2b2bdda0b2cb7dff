"""Quantizers: the arithmetic every quantized keras_nna layer shares.

Two families live here, both pure TensorFlow so they run eagerly, in
`tf.function` and under XLA:

* **Fake quantizers** (`fake_quantize_weights`, `fake_quantize_activations`)
  are used while training. They round values to the integer grid in the
  forward pass and let gradients through unchanged inside the clipping range
  (the straight-through estimator, STE).
* **Integer helpers** (`quantize_weights`, `activation_step`, `dyadic`,
  `reciprocal_multiplier`) compute the integer codes and fixed-point
  multipliers of `docs/quantization.md`. The inference path of the layers and
  the exporter both call them, so the Keras model and the bytecode agree bit
  for bit.

Weights are signed, symmetric and per output channel (narrow range: 4 bits
gives codes -7..7; 1 bit gives sign codes -1/+1 with a mean-|w| scale, a
pruned zero staying 0); activations are unsigned codes (ReLU outputs) or signed
two's complement codes (linear hidden outputs, `signed=True`) on a
power-of-two step.

Example:

>>> import numpy as np
>>> codes, scale = quantize_weights(np.array([[0.7, -0.1], [-0.35, 0.05]], "float32"), bits=4)
>>> codes.numpy().tolist()
[[7.0, -7.0], [-4.0, 4.0]]
>>> activation_step(4, activation_max=4.0), activation_step(4, activation_max=4.0, signed=True)
(0.25, 0.5)
"""

import math

import numpy as np
import tensorflow as tf

from keras_nna._checks import check_number

__all__ = [
    "check_bits", "check_step", "step_exponent", "weight_qmax", "activation_qmax",
    "activation_range", "activation_step", "quantize_weights", "fake_quantize_weights",
    "fake_quantize_activations", "dyadic", "exp2", "reciprocal_multiplier", "MANTISSA_BITS",
    "BINARY_STE_CLIP",
]

MANTISSA_BITS = 15
"""Requantization multipliers have ``MANTISSA_BITS`` significant bits."""

BINARY_STE_CLIP = 3.0
"""1-bit weights pass gradient only where ``|w| <= BINARY_STE_CLIP * s_w`` (clipped STE)."""

_BIT_RANGES = {"weight": (1, 8), "activation": (1, 8), "signed_activation": (2, 8),
               "input": (8, 8)}


def check_bits(bits, kind, name=None, arg=None):
    """Validates a bit width and returns it as an `int`.

    Args:
        bits: The requested number of bits.
        kind: One of `"weight"` (1–8), `"activation"` (1–8),
            `"signed_activation"` (2–8, signed codes) or `"input"` (8).
        name: Optional layer name, used in the error message.
        arg: Optional argument name (e.g. `"first_layer_weight_bits"`), used
            in the error message. Defaults to `None` (``f"{kind}_bits"``).

    Returns:
        `bits` as a Python `int`.

    Raises:
        ValueError: If `bits` is not an integer inside the range of `kind`.

    Example:

    >>> check_bits(5, "weight")
    5
    """
    low, high = _BIT_RANGES[kind]
    where = f" for layer '{name}'" if name else ""
    arg = arg or ("activation_bits" if kind == "signed_activation" else f"{kind}_bits")
    if kind == "signed_activation":
        where += " (signed codes need a sign bit)"
    if (isinstance(bits, (bool, np.bool_)) or not isinstance(bits, (int, np.integer))
            or not low <= bits <= high):
        raise ValueError(
            f"Invalid {kind} bit width `{arg}`{where}: expected an integer in [{low}, {high}], "
            f"received {bits!r}. Set a supported width in the QuantizationPolicy."
        )
    return int(bits)


def step_exponent(step):
    """The exponent `f` of a power-of-two step `2^-f` (the `out_exp` of the bytecode).

    Example:

    >>> step_exponent(0.25), step_exponent(4.0)
    (2, -2)
    """
    return -int(round(math.log2(step)))


def check_step(step, name=None):
    """Validates an activation step (a positive power of two) and returns it as a float.

    Args:
        step: The step.
        name: Optional layer name, used in the error message.

    Returns:
        `step` as a Python float.

    Raises:
        ValueError: If `step` is not a positive power of two.
        TypeError: If `step` is not a number.

    Example:

    >>> check_step(0.25)
    0.25
    """
    where = f" of layer '{name}'" if name else ""
    step = check_number("step", step, low=0.0, low_open=True,
                        fix=f"Pass a positive power of two{where}, e.g. step=0.25.")
    if math.frexp(step)[0] != 0.5:
        raise ValueError(f"step{where} must be a power of two (e.g. 0.25), received {step!r}. "
                         "Use activation_step(bits, activation_max) to get one.")
    return float(step)


def weight_qmax(bits):
    """Largest weight code for `bits`: 2**(bits-1) - 1 (symmetric narrow range), 1 for 1 bit."""
    return max(2 ** (int(bits) - 1) - 1, 1)


def activation_qmax(bits):
    """Largest activation code for `bits` (unsigned): 2**bits - 1."""
    return 2 ** int(bits) - 1


def activation_range(bits, signed=False):
    """Smallest and largest activation code: ``(0, 2**b - 1)`` or ``(-2**(b-1), 2**(b-1) - 1)``.

    Example:

    >>> activation_range(4), activation_range(4, signed=True)
    ((0, 15), (-8, 7))
    """
    bits = int(bits)
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, activation_qmax(bits)


def activation_step(bits, activation_max=4.0, signed=False):
    """Returns the power-of-two activation step for `bits` and a target range.

    Unsigned (ReLU) codes: ``2 ** round(log2(activation_max / (2**bits - 1)))``,
    so the codes ``0 .. 2**bits - 1`` cover roughly ``[0, activation_max]``.
    Signed codes: ``2 ** round(log2(activation_max / 2**(bits - 1)))``, so
    the codes ``-2**(bits-1) .. 2**(bits-1) - 1`` cover roughly
    ``[-activation_max, activation_max)``. The exponent is rounded half to
    even (Python's `round`).

    Args:
        bits: Activation bits (1–8; 2–8 when `signed`).
        activation_max: Approximate largest representable activation.
            Defaults to `4.0`.
        signed: Whether the codes are signed (a linear hidden output or a
            residual Add without ReLU). Defaults to `False`.

    Returns:
        The step as a Python float (an exact power of two).

    Example:

    >>> [activation_step(b) for b in (1, 2, 4, 8)]
    [4.0, 1.0, 0.25, 0.015625]
    >>> [activation_step(b, signed=True) for b in (2, 4, 8)]
    [2.0, 0.5, 0.03125]
    """
    activation_max = check_number("activation_max", activation_max, low=0.0, low_open=True,
                                  fix="Pass e.g. activation_max=4.0.")
    levels = 2 ** (int(bits) - 1) if signed else activation_qmax(bits)
    return float(2.0 ** round(math.log2(activation_max / levels)))


def _channel_axes(rank, channel_axes):
    channel_axes = [a % rank for a in channel_axes]
    return [a for a in range(rank) if a not in channel_axes]


def _binary_scale(w, axes):
    """Mean |w| over the non-zero weights of each channel, in float64 (1 for an all-zero channel)."""
    a = tf.abs(tf.cast(w, tf.float64))
    count = tf.reduce_sum(tf.cast(a > 0, tf.float64), axis=axes, keepdims=True)
    total = tf.reduce_sum(a, axis=axes, keepdims=True)
    scale = tf.where(count > 0, total / tf.maximum(count, 1.0), tf.ones_like(total))
    return tf.cast(scale, w.dtype)


def quantize_weights(w, bits, channel_axes=(-1,)):
    """Quantizes weights to signed symmetric per-channel integer codes.

    2–8 bits: ``scale = max|w| / (2**(bits-1) - 1)`` per channel and
    ``codes = clip(round(w / scale), -qmax, qmax)`` with round-half-to-even.
    1 bit: ``codes = sign(w)`` (an exact 0, a pruned weight, stays 0) and
    ``scale = mean|w|`` over the channel's non-zero weights, computed in
    float64 (the L2-optimal scale of sign codes). An all-zero channel gets
    scale 1 and codes 0 at every width.

    Args:
        w: Weight tensor.
        bits: Weight bits (1–8).
        channel_axes: Axes that index the channels (one scale per index).
            Defaults to `(-1,)`, the output channels of Keras kernels.

    Returns:
        `(codes, scale)`: tensors of `w`'s dtype; `codes` has the shape of
        `w`, `scale` keeps size-1 reduced axes so that `codes * scale`
        broadcasts.

    Example:

    >>> codes, scale = quantize_weights(np.array([[0.5, 0.0], [-0.25, 0.0]]), bits=1)
    >>> codes.numpy().tolist(), scale.numpy().tolist()
    ([[1.0, 0.0], [-1.0, 0.0]], [[0.375, 1.0]])
    """
    w = tf.convert_to_tensor(w)
    axes = _channel_axes(len(w.shape), channel_axes)
    if int(bits) == 1:
        return tf.sign(w), _binary_scale(w, axes)
    qmax = float(weight_qmax(bits))
    wmax = tf.reduce_max(tf.abs(w), axis=axes, keepdims=True)
    scale = tf.where(wmax > 0, wmax / qmax, tf.ones_like(wmax))
    codes = tf.clip_by_value(tf.round(w / scale), -qmax, qmax)
    return codes, scale


def _straight_through(w, wq, lo, hi, progress):
    """Forward `wq`, gradient 1 where ``lo <= w <= hi`` (everywhere if `lo` is None)."""
    base = w if lo is None else tf.clip_by_value(w, lo, hi)
    if progress is not None:
        keep = tf.random.uniform(tf.shape(w)) < tf.cast(progress, w.dtype)
        wq = tf.where(keep, wq, w)
        base = tf.where(keep, base, w)
    return base + tf.stop_gradient(wq - base)


def fake_quantize_weights(w, bits, channel_axes=(-1,), progress=None):
    """Fake-quantizes weights with a straight-through gradient.

    Forward: ``codes * stop_gradient(scale)`` of `quantize_weights`.
    Backward: the identity for 2–8 bits; for 1 bit the clipped STE, 1 where
    ``|w| <= BINARY_STE_CLIP * scale`` and 0 outside.

    Args:
        w: Weight tensor (a variable's value).
        bits: Weight bits (1–8).
        channel_axes: Channel axes, as in `quantize_weights`. Defaults to `(-1,)`.
        progress: Optional scalar in [0, 1]: the fraction of weights
            quantized (progressive quantization; the others stay float,
            gradient 1). Defaults to `None` (all weights quantized).

    Returns:
        A tensor like `w` whose forward value is on the grid.

    Example:

    >>> w = tf.constant([[0.125], [-0.125], [0.0], [0.125], [1.625]])  # 1 bit: scale 0.5, clip 1.5
    >>> with tf.GradientTape() as tape:
    ...     tape.watch(w)
    ...     y = fake_quantize_weights(w, 1)
    >>> y.numpy().ravel().tolist(), tape.gradient(y, w).numpy().ravel().tolist()
    ([0.5, -0.5, 0.0, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0, 0.0])
    """
    codes, scale = quantize_weights(w, bits, channel_axes)
    scale = tf.stop_gradient(scale)
    lo = hi = None
    if int(bits) == 1:
        hi = BINARY_STE_CLIP * scale
        lo = -hi
    return _straight_through(w, codes * scale, lo, hi, progress)


def fake_quantize_activations(x, bits, step, signed=False):
    """Fake quantization to unsigned (ReLU) or signed codes on a power-of-two grid.

    Forward: ``clip(floor(x / step + 0.5), lo, hi) * step`` with ``(lo, hi) =
    activation_range(bits, signed)`` (unsigned: the clip at 0 is the ReLU).
    Backward: the gradient is 1 where ``lo * step < x < hi * step`` and 0
    outside (STE). 2–8 bits on float32: one fused `fake_quant_with_min_max_args`
    (its scale is exactly `step`; signed codes may differ within an ulp of a tie).

    Args:
        x: Pre-activation tensor.
        bits: Activation bits (1–8; 2–8 when `signed`).
        step: Grid step (a power of two).
        signed: Signed codes (no ReLU). Defaults to `False`.

    Returns:
        The fake-quantized activation.

    Example:

    >>> x = tf.constant([-9.0, -1.0, 0.1, 0.125, 0.13, 2.0, 9.0])
    >>> fake_quantize_activations(x, 4, 0.25).numpy().tolist()
    [0.0, 0.0, 0.0, 0.25, 0.25, 2.0, 3.75]
    >>> fake_quantize_activations(x, 4, 0.5, signed=True).numpy().tolist()
    [-4.0, -1.0, 0.0, 0.0, 0.0, 2.0, 3.5]
    """
    lo, hi = activation_range(bits, signed)
    fused = isinstance(step, (int, float)) and getattr(x, "dtype", None) == tf.float32
    if int(bits) >= 2 and fused:  # one XLA-compilable op: same grid, round-half-up and STE
        return tf.quantization.fake_quant_with_min_max_args(
            x, min=lo * step, max=hi * step, num_bits=int(bits))
    clipped = tf.clip_by_value(x, lo * step, hi * step)
    q = tf.floor(clipped / step + 0.5) * step
    return clipped + tf.stop_gradient(q - clipped)


def _floor_log2(x):
    """Exact floor(log2(|x|)) of float64 values via the exponent bits (x != 0)."""
    bits = tf.bitcast(tf.abs(x), tf.int64)
    return tf.bitwise.right_shift(bits, 52) - 1023


def exp2(e):
    """Exact ``2.0 ** e`` in float64 for integer-valued `e` in [-1022, 1023].

    Built from the exponent bits: unlike `tf.pow`, which XLA may lower to
    ``exp(e * log 2)``, the result is always an exact power of two.

    Example:

    >>> exp2(tf.constant([-3.0, 0.0, 10.0], tf.float64)).numpy().tolist()
    [0.125, 1.0, 1024.0]
    """
    e = tf.cast(tf.convert_to_tensor(e), tf.int64)
    return tf.bitcast(tf.bitwise.left_shift(e + 1023, tf.constant(52, tf.int64)), tf.float64)


def dyadic(a, b=None):
    """Rounds per-channel multipliers to ``m * 2**-e`` with a 15-bit mantissa.

    Used for requantization: ``A = m * 2**-e`` with ``2**14 <= |m| <= 2**15``
    and, when given, the offset ``B`` rounded to the same grid, ``n * 2**-e``.
    Computed in float64 from exact exponent bits, so eager, graph and XLA
    runs give the same integers.

    Args:
        a: float64 tensor of multipliers (zeros allowed).
        b: Optional float64 tensor of offsets, same shape as `a`.

    Returns:
        `(m, e, n)` float64 tensors holding integers (`n` is `None` when
        `b` is `None`).

    Example:

    >>> m, e, n = dyadic(tf.constant([0.1, 3.0], tf.float64), tf.constant([0.5, -1.25], tf.float64))
    >>> m.numpy().tolist(), e.numpy().tolist(), n.numpy().tolist()
    ([26214.0, 24576.0], [18.0, 13.0], [131072.0, -10240.0])
    """
    a = tf.convert_to_tensor(a, tf.float64)
    safe = tf.where(a == 0, tf.ones_like(a), a)
    e = tf.cast(MANTISSA_BITS - 1 - _floor_log2(safe), tf.float64)
    e = tf.where(a == 0, tf.zeros_like(e), e)
    m = tf.round(a * exp2(e))
    n = None
    if b is not None:
        b = tf.convert_to_tensor(b, tf.float64)
        n = tf.round(b * exp2(e))
    return m, e, n


def reciprocal_multiplier(count):
    """Returns `(m, shift)` with ``m / 2**shift`` ≈ ``1 / count`` (15-bit m).

    Args:
        count: Number of values averaged (a positive integer).

    Returns:
        Python ints `(m, shift)`, ``2**14 <= m <= 2**15``.

    Example:

    >>> reciprocal_multiplier(9)
    (29127, 18)
    >>> reciprocal_multiplier(4)
    (16384, 16)
    """
    count = int(count)
    if count < 1:
        raise ValueError(f"count must be >= 1, received {count}.")
    shift = MANTISSA_BITS - 1 + (count - 1).bit_length()
    if count & (count - 1) == 0:
        shift = MANTISSA_BITS - 1 + count.bit_length() - 1
    m = int(round(2**shift / count))
    return m, shift
