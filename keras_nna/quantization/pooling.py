"""Quantized average pooling: the mean re-quantized to the input's grid.

Max pooling needs no special layer (the max of codes is a code), but an
average is not: `QuantizedAveragePooling2D` and
`QuantizedGlobalAveragePooling2D` compute the mean of their input codes with
a 15-bit fixed-point reciprocal of the window size and round it back to the
same bits and step as their input (`docs/quantization.md`, "Pooling").
`quantize_model` swaps Keras' pooling layers for these and copies the
producer's bits and step.

Example:

>>> import numpy as np
>>> pool = QuantizedGlobalAveragePooling2D(bits=4, step=0.25)
>>> x = np.full((1, 3, 3, 2), 0.25, "float32")
>>> x[0, 0, 0, 0] = 3.75
>>> pool(x, training=False).numpy().tolist()
[[0.75, 0.25]]
"""

import keras
import tensorflow as tf

from keras_nna.quantization.layer_kinds import register_kind
from keras_nna.quantization.quantizers import (
    activation_qmax,
    check_bits,
    check_step,
    fake_quantize_activations,
    reciprocal_multiplier,
)

__all__ = ["QuantizedAveragePooling2D", "QuantizedGlobalAveragePooling2D"]


class _QuantizedMean:
    """Shared exact requantization of a window sum (mixin)."""

    def _init_quant(self, bits, step):
        self.bits = check_bits(bits, "activation", getattr(self, "name", None))
        self.step = check_step(step, getattr(self, "name", None))

    def _requantize(self, window_sum, count, training):
        if training:
            return fake_quantize_activations(window_sum / count, self.bits, self.step)
        m, shift = reciprocal_multiplier(count)
        codes_sum = tf.cast(window_sum, tf.float64) / self.step
        z = codes_sum * m + 2.0 ** (shift - 1)
        q = tf.floor(z * 2.0**-shift)
        q = tf.clip_by_value(q, 0.0, activation_qmax(self.bits))
        return tf.cast(q * self.step, self.compute_dtype)

    def _quant_config(self):
        return {"bits": self.bits, "step": self.step}


@register_kind("global_avgpool")
@keras.saving.register_keras_serializable(package="keras_nna")
class QuantizedGlobalAveragePooling2D(_QuantizedMean, keras.layers.Layer):
    """Global average pooling whose output is re-quantized to the input grid.

    Args:
        bits: Activation bits of the input (and output). Defaults to `4`.
        step: Power-of-two step of the input codes. Defaults to `0.25`.
        keepdims: Keep the spatial axes (size 1). Defaults to `False`.
        **kwargs: Base layer arguments.
    """

    def __init__(self, bits=4, step=0.25, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self._init_quant(bits, step)
        self.keepdims = bool(keepdims)

    def call(self, inputs, training=None):
        count = int(inputs.shape[1]) * int(inputs.shape[2])
        if training:
            total = tf.reduce_sum(inputs, axis=(1, 2), keepdims=self.keepdims)
        else:
            total = tf.reduce_sum(tf.cast(inputs, tf.float64), axis=(1, 2), keepdims=self.keepdims)
        return self._requantize(total, count, training)

    def compute_output_shape(self, input_shape):
        if self.keepdims:
            return (input_shape[0], 1, 1, input_shape[3])
        return (input_shape[0], input_shape[3])

    def get_config(self):
        return {**super().get_config(), **self._quant_config(), "keepdims": self.keepdims}


@register_kind("avgpool")
@keras.saving.register_keras_serializable(package="keras_nna")
class QuantizedAveragePooling2D(_QuantizedMean, keras.layers.Layer):
    """Average pooling (`padding="valid"`) re-quantized to the input grid.

    Args:
        pool_size: Window size, int or pair. Defaults to `2`.
        strides: Strides, int or pair. Defaults to `None` (= `pool_size`).
        bits: Activation bits of the input. Defaults to `4`.
        step: Power-of-two step of the input codes. Defaults to `0.25`.
        **kwargs: Base layer arguments.

    Raises:
        ValueError: On invalid sizes, bits or step.
    """

    def __init__(self, pool_size=2, strides=None, bits=4, step=0.25, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = _pair(strides if strides is not None else pool_size, "strides")
        self._init_quant(bits, step)

    def call(self, inputs, training=None):
        count = self.pool_size[0] * self.pool_size[1]
        x = inputs if training else tf.cast(inputs, tf.float64)
        # Window sums via a ones depthwise kernel: exact in float64.
        channels = int(inputs.shape[-1])
        ones = tf.ones((*self.pool_size, channels, 1), x.dtype)
        sh, sw = self.strides
        if sh == sw:
            total = tf.nn.depthwise_conv2d(x, ones, (1, sh, sw, 1), "VALID")
        else:  # TensorFlow's depthwise conv needs equal strides: every window, then subsample
            total = tf.nn.depthwise_conv2d(x, ones, (1, 1, 1, 1), "VALID")[:, ::sh, ::sw, :]
        return self._requantize(total, count, training)

    def compute_output_shape(self, input_shape):
        h = None if input_shape[1] is None else (input_shape[1] - self.pool_size[0]) // self.strides[0] + 1
        w = None if input_shape[2] is None else (input_shape[2] - self.pool_size[1]) // self.strides[1] + 1
        return (input_shape[0], h, w, input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            **self._quant_config(),
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
        }


def _pair(value, name):
    if isinstance(value, int):
        value = (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2 or min(value) < 1:
        raise ValueError(f"{name} must be a positive int or pair, received {value!r}.")
    return value
