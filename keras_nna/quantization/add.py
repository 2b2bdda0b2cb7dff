"""QuantizedAdd: the residual Add of two code tensors, re-quantized exactly.

A residual block adds two activation tensors of the same shape, each made of
unsigned (ReLU) or signed codes on its own power-of-two step. The accelerator
aligns both to the finer step, adds the integers and shifts the sum to the
output step with round-half-up (`docs/quantization.md`, "Residual Add"). The
output is unsigned codes when a ReLU follows the Add (`relu=True`, fused) and
signed codes otherwise.

`quantize_model` replaces every two-input `keras.layers.Add` by a
`QuantizedAdd` whose `bits` and `step` come from the `QuantizationPolicy`
(the activation bits and `activation_max` of the Add layer's name; the signed
step rule when no ReLU follows).

* **Inference** (`training=False`): ``q = clip(floor((a + b) / step + 0.5),
  lo, hi)`` in float64, exact because `a` and `b` are dyadic values, then
  ``q * step`` as float32.
* **Training**: the float sum, fake-quantized to the same grid with a
  straight-through gradient.

Example:

>>> import numpy as np
>>> add = QuantizedAdd(bits=4, step=0.5, relu=False)
>>> a = np.array([[1.25, -3.0, 2.0, 0.25]], "float32")
>>> b = np.array([[0.5, -2.0, 2.0, 0.0]], "float32")
>>> add([a, b], training=False).numpy().tolist()   # ties up, clipped to -4 .. 3.5
[[2.0, -4.0, 3.5, 0.5]]
"""

import keras
import tensorflow as tf

from keras_nna.quantization.layer_kinds import register_kind
from keras_nna.quantization.quantizers import (
    activation_range,
    check_bits,
    check_step,
    fake_quantize_activations,
)

__all__ = ["QuantizedAdd"]


def _shape_text(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape[1:]) + ")"


@register_kind("add")
@keras.saving.register_keras_serializable(package="keras_nna")
class QuantizedAdd(keras.layers.Layer):
    """Exact residual addition of two quantized tensors of the same shape.

    Args:
        bits: Output code bits: 1–8 with `relu`, 2–8 for signed codes.
        step: Output step, a power of two.
        relu: `True` when a ReLU follows the Add (fused: unsigned codes
            ``0 .. 2**bits - 1``), `False` for signed codes
            ``-2**(bits-1) .. 2**(bits-1) - 1``.
        **kwargs: Base layer arguments (`name`, ...). The layer always
            computes in float32 (any `dtype` argument is replaced).

    Raises:
        ValueError: On bits outside the range, a step that is not a power of
            two, or (when called) inputs that are not exactly two tensors of
            the same shape.

    Example:

    >>> import numpy as np
    >>> add = QuantizedAdd(bits=2, step=1.0, relu=True)
    >>> add([np.array([[0.5, -1.0, 2.0]], "float32"), np.array([[0.0, 0.5, 2.0]], "float32")],
    ...     training=False).numpy().tolist()
    [[1.0, 0.0, 3.0]]
    >>> add.get_config()["relu"], add.signed
    (True, False)
    """

    def __init__(self, bits, step, relu, **kwargs):
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.relu = bool(relu)
        self.bits = check_bits(bits, "activation" if self.relu else "signed_activation", self.name)
        self.step = check_step(step, self.name)

    @property
    def signed(self):
        """Whether the output codes are signed (no fused ReLU)."""
        return not self.relu

    def _check_inputs(self, shapes):
        if not isinstance(shapes, (list, tuple)) or len(shapes) != 2 or not all(
                isinstance(s, (list, tuple)) for s in shapes):
            raise ValueError(
                f"QuantizedAdd '{self.name}' adds exactly two tensors; received {shapes!r}. "
                "Call it on a list [a, b].")
        a, b = (tuple(s)[1:] for s in shapes)
        if a != b:
            raise ValueError(
                f"QuantizedAdd '{self.name}' needs two inputs of the same shape; received "
                f"{_shape_text(shapes[0])} and {_shape_text(shapes[1])}. Make both branches "
                "produce the same shape (e.g. a 1x1 conv with matching strides on the shortcut).")

    def build(self, input_shape):
        self._check_inputs(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        self._check_inputs(input_shape)
        return tuple(input_shape[0])

    def call(self, inputs, training=None):
        a, b = inputs
        if training:
            return fake_quantize_activations(a + b, self.bits, self.step, signed=self.signed)
        lo, hi = activation_range(self.bits, self.signed)
        total = tf.cast(a, tf.float64) + tf.cast(b, tf.float64)
        q = tf.clip_by_value(tf.floor(total / self.step + 0.5), float(lo), float(hi))
        return tf.cast(q * self.step, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "step": self.step, "relu": self.relu}
