"""QuantizeWrapper: quantization-aware training for one Keras layer.

`QuantizeWrapper` wraps a `Conv2D`, `DepthwiseConv2D`, `SeparableConv2D` or
`Dense` layer and, optionally, the `BatchNormalization` and ReLU that follow
it (`quantize_model` fuses them for you). It has two faces:

* **Training** (`training=True`): the kernel is fake-quantized to
  `weight_bits` with a straight-through gradient, a fused BatchNorm is folded
  into it (frozen moving statistics, trainable gamma/beta: one conv, as the
  integer inference computes it; `batch_norm_training="batch"` runs it with
  batch statistics instead), and the ReLU output is fake-quantized to `activation_bits`
  unsigned codes on a power-of-two step (a `signed=True` output, a linear
  hidden block, to signed codes). This is as cheap as the float layer plus a
  few element-wise ops.
* **Inference** (`training=False`, i.e. `predict`/`evaluate`): the layer
  computes the integer semantics of `docs/quantization.md` exactly — integer
  kernel codes, an exact float64 accumulator, BatchNorm folded into a 15-bit
  fixed-point multiplier per channel, round-half-up, clip. Its output is what
  the exported bytecode produces on the accelerator, bit for bit.

Bit widths come from a `QuantizationPolicy` (resolved by layer name).

Example:

>>> import numpy as np
>>> layer = QuantizeWrapper(keras.layers.Dense(3), activation="relu")
>>> y = layer(np.ones((2, 4), "float32"), training=False)
>>> bool(np.all(np.mod(y.numpy(), layer.activation_step) == 0))
True
"""

import keras
import numpy as np
import tensorflow as tf

from keras_nna._checks import check_number
from keras_nna.quantization.checks import (
    SUPPORTED_LAYERS,
    check_layer,
    check_not_keras_quantized,
    float32_dtype,
    refuse_keras_quantize,
)
from keras_nna.quantization.kernels import (
    apply_kernels,
    batch_norm_in_sync,
    fake_kernels,
    fold_batch_norm,
    quantized_kernels,
)
from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.quantizers import activation_range, dyadic, exp2, fake_quantize_activations

__all__ = ["QuantizeWrapper", "SUPPORTED_LAYERS", "is_quantize_wrapper"]

def is_quantize_wrapper(layer):
    """Whether `layer` is a `QuantizeWrapper` (the contract sparsity/ and export/ rely on).

    A `QuantizeWrapper` exposes `layer` (the float layer), `batch_norm` (the
    fused `BatchNormalization` or `None`), `activation` (`"relu"` or `None`),
    `signed` (signed codes, no ReLU), `weight_bits`, `activation_bits` and
    `activation_step` (`None` for a raw output); its output already lies on
    its activation grid.

    Example:

    >>> is_quantize_wrapper(QuantizeWrapper(keras.layers.Dense(2))), is_quantize_wrapper(keras.layers.Dense(2))
    (True, False)
    """
    return isinstance(layer, QuantizeWrapper)


@keras.saving.register_keras_serializable(package="keras_nna")
class QuantizeWrapper(keras.layers.Wrapper):
    """Quantization-aware wrapper of a conv/depthwise/separable/dense layer.

    Args:
        layer: The layer to wrap (`Conv2D`, `DepthwiseConv2D` with
            `depth_multiplier=1`, `SeparableConv2D` or `Dense`).
        policy: A `QuantizationPolicy` (or its config dict) giving the bit
            widths. Defaults to `None` (the default policy).
        batch_norm: Optional `BatchNormalization` layer fused after the
            wrapped layer. Defaults to `None`.
        activation: `"relu"` to quantize the (ReLU) output to unsigned codes,
            `None` for a raw output layer (logits). A wrapped layer whose own
            activation is `"relu"` implies `"relu"`. Defaults to `None`.
        batch_norm_training: How training computes a fused BatchNorm:
            `"folded"` folds its frozen moving statistics and its trainable
            `gamma`/`beta` into the fake-quantized kernel and bias (one conv,
            no batch moments, the moving statistics stay as they are) or
            `"batch"`: batch statistics, moving statistics updated (the
            default: `"auto"` changed mode when a run resumed). `"auto"`: `"folded"` if the moving statistics differ from
            their initial values (0 and 1) when training is traced (QAT of
            a trained float model), else `"batch"` (QAT from scratch).
        signed: With `activation=None`, quantize the output to signed codes
            ``-2**(b-1) .. 2**(b-1) - 1`` on the policy's signed step (a
            linear hidden block, e.g. before a residual Add) instead of a raw
            output. Defaults to `False`.
        first_layer: Whether the layer consumes the model input (uint8
            pixels): it then gets the policy's first-layer weight bits and
            rounds/clips its input to 0–255 at inference. Defaults to `False`.
        input_scale: Real value of one input unit, folded from a leading
            `Rescaling` layer (e.g. `1/255`). Defaults to `1.0`.
        **kwargs: Base layer arguments (`name`, ...). The wrapper, its layer
            and its BatchNorm always compute in float32, whatever
            `keras.mixed_precision`'s global policy (the integer inference
            must equal the exported program bit for bit).

    Raises:
        TypeError: If `layer` is not a Keras 3 layer (e.g. a tf_keras one).
        ValueError: If the layer or its configuration is not supported,
            `signed=True` with a ReLU or 1 activation bit, a `dtype` other
            than float32 is passed, or Keras' own quantization
            (`model.quantize("int8")`) was applied to the layer. The wrapped
            layer refuses `Model.quantize` with a `ValueError`.

    Example:

    >>> import numpy as np
    >>> layer = QuantizeWrapper(keras.layers.Conv2D(2, 3), batch_norm=keras.layers.BatchNormalization(),
    ...                         activation="relu", first_layer=True, input_scale=1 / 255)
    >>> y = layer(np.full((1, 4, 4, 1), 200.0, "float32"), training=False)
    >>> y.shape, layer.weight_bits, layer.activation_bits, layer.activation_step
    (TensorShape([1, 2, 2, 2]), 8, 4, 0.25)
    >>> layer.integer_summary()["kernel"].shape
    (3, 3, 1, 2)
    >>> linear = QuantizeWrapper(keras.layers.Dense(2), signed=True)
    >>> codes = linear(np.full((1, 3), -9.0, "float32"), training=False) / linear.activation_step
    >>> linear.activation_bits, linear.activation_step, linear.integer_summary()["signed"]
    (4, 0.5, True)
    >>> bool(np.all((codes >= -8) & (codes <= 7)))
    True
    """

    def __init__(
        self,
        layer,
        policy=None,
        batch_norm=None,
        activation=None,
        first_layer=False,
        input_scale=1.0,
        signed=False,
        batch_norm_training="batch",
        **kwargs,
    ):
        kind = check_layer(layer)
        kwargs.setdefault("name", f"quant_{layer.name}")
        # float32 whatever keras.mixed_precision's global policy: mixed_float16
        # would make predict differ from the exported program.
        kwargs["dtype"] = float32_dtype(kwargs.get("dtype"), kwargs["name"])
        check_not_keras_quantized(layer, kwargs["name"])
        if layer.variable_dtype != "float32":
            raise ValueError(
                f"Layer '{layer.name}' keeps its weights in {layer.variable_dtype}; QuantizeWrapper "
                "needs float32 weights. Build the float layer with dtype='float32' (or a mixed "
                "policy, whose weights are float32).")
        layer.dtype_policy = "float32"
        layer.quantize = refuse_keras_quantize(kwargs["name"])
        super().__init__(layer, **kwargs)
        if isinstance(policy, dict):
            policy = QuantizationPolicy.from_config(policy)
        self.policy = policy or QuantizationPolicy()
        if batch_norm is not None and not isinstance(batch_norm, keras.layers.BatchNormalization):
            raise ValueError(
                f"batch_norm must be a keras.layers.BatchNormalization, received "
                f"{type(batch_norm).__name__}."
            )
        if batch_norm is not None and batch_norm.get_config().get("axis", -1) not in (-1, [-1]):
            if batch_norm.get_config()["axis"] not in (3, [3]) or kind == "dense":
                raise ValueError(
                    f"BatchNormalization '{batch_norm.name}' must normalise the channel "
                    f"(last) axis, received axis={batch_norm.get_config()['axis']}."
                )
        if batch_norm is not None:
            batch_norm.dtype_policy = "float32"
        self.batch_norm = batch_norm
        inner_act = layer.get_config().get("activation", "linear")
        if activation not in (None, "relu"):
            raise ValueError(
                f"activation must be 'relu' or None, received {activation!r}."
            )
        if inner_act == "relu":
            if batch_norm is not None:
                raise ValueError(
                    f"Layer '{layer.name}' applies ReLU before BatchNormalization; keras_nna "
                    "quantizes conv → BatchNorm → ReLU. Move the activation after the BatchNorm."
                )
            activation = "relu"
        if signed and activation:
            raise ValueError(
                f"QuantizeWrapper '{kwargs['name']}': signed=True means a linear output (signed "
                "codes), but the block applies ReLU. Pass signed=False for a ReLU output, or "
                "remove the ReLU for signed codes.")
        if batch_norm_training not in ("auto", "folded", "batch"):
            raise ValueError(
                f"batch_norm_training must be 'auto', 'folded' or 'batch', received "
                f"{batch_norm_training!r}. Use 'folded' (frozen moving statistics folded into "
                "the kernel), 'batch' (batch statistics) or 'auto' (folded once trained).")
        self.batch_norm_training = batch_norm_training
        self.activation = activation
        self.signed = bool(signed)
        self.kind = kind
        self.first_layer = bool(first_layer)
        self.input_scale = check_number(
            "input_scale", input_scale, low=0.0, low_open=True,
            fix="Pass the real value of one input unit, e.g. input_scale=1/255.")
        spec = self.policy.resolve(layer.name, first_layer=self.first_layer, signed=self.signed)
        coded = bool(activation) or self.signed
        self.weight_bits = spec["weight_bits"]
        self.activation_bits = spec["activation_bits"] if coded else None
        self.activation_step = spec["activation_step"] if coded else None

    # ------------------------------------------------------------------ build
    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        out_shape = self.layer.compute_output_shape(input_shape)
        if self.batch_norm is not None and not self.batch_norm.built:
            self.batch_norm.build(out_shape)
        if self.policy.progressive:
            self.progress = self.add_weight(
                name="progress", shape=(), initializer="ones", trainable=False
            )
        else:
            self.progress = None
        self.built = True

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    # ------------------------------------------------------- kernel handling
    def _kernels(self):
        if self.kind == "separable":
            return self.layer.depthwise_kernel, self.layer.pointwise_kernel
        return self.layer.kernel, None

    def quantized_kernels(self):
        """Integer kernel codes and per-output-channel scales.

        Computed in float64: an ulp of difference between eager and XLA
        arithmetic (XLA may turn a division into a reciprocal multiply) would
        otherwise flip a code or a multiplier sitting on a rounding boundary.

        Returns:
            `(codes1, codes2, scale)`: float64 tensors. `codes2` is the
            pointwise kernel of a separable layer (else `None`); `scale` has
            one entry per output channel.
        """
        return quantized_kernels(self.kind, *self._kernels(), self.weight_bits)

    def _apply(self, x, k1, k2):
        if self.kind == "dense":
            return apply_kernels("dense", x, k1, k2)
        return apply_kernels(self.kind, x, k1, k2, self.layer.strides, self.layer.padding)

    # ------------------------------------------------------ requantization
    def requantization(self, scale=None):
        """Per-channel fixed-point requantization ``(m, e, n)`` (float64 integers).

        ``z = acc_real * m * 2**-e + n * 2**-e`` where `acc_real` is the
        accumulator of integer kernel codes times real input values.

        Args:
            scale: Per-channel weight scales if already computed by
                `quantized_kernels`. Defaults to `None` (computed here).

        Returns:
            `(m, e, n)` float64 tensors holding integers.
        """
        if scale is None:
            scale = self.quantized_kernels()[2]
        a = tf.cast(scale, tf.float64) * self.input_scale
        b = tf.zeros_like(a)
        if self.layer.get_config().get("use_bias", False):
            b = tf.cast(self.layer.bias, tf.float64)
        bn = self.batch_norm
        if bn is not None:
            var = tf.cast(bn.moving_variance, tf.float64)
            g = 1.0 / tf.sqrt(var + bn.epsilon)
            if bn.scale:
                g = g * tf.cast(bn.gamma, tf.float64)
            b = (b - tf.cast(bn.moving_mean, tf.float64)) * g
            if bn.center:
                b = b + tf.cast(bn.beta, tf.float64)
            a = a * g
        if self.activation_step is not None:
            a = a / self.activation_step
            b = b / self.activation_step
        return dyadic(a, b)

    # ----------------------------------------------------------------- call
    def call(self, inputs, training=None):
        check_not_keras_quantized(self.layer, self.name)
        if training:
            return self._call_train(inputs)
        return self._call_exact(inputs)

    def _call_train(self, x):
        k1, k2 = fake_kernels(self.kind, *self._kernels(), self.weight_bits, self.progress)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        bias = self.layer.bias if self.layer.get_config().get("use_bias", False) else None
        mode = self._batch_norm_mode()
        if mode == "folded":
            k1, k2, bias = fold_batch_norm(self.kind, self.batch_norm, k1, k2, bias)
        y = self._apply(x, k1, k2)
        if bias is not None:
            y = y + bias
        if mode == "batch":
            y = batch_norm_in_sync(self.batch_norm, y)
        if self.activation_step is not None:
            y = fake_quantize_activations(y, self.activation_bits, self.activation_step,
                                          signed=self.signed)
        return y

    def _batch_norm_mode(self):
        """`"folded"`, `"batch"` or `None` (no BatchNorm); "auto" decided at trace time."""
        bn, mode = self.batch_norm, self.batch_norm_training
        if bn is None or mode != "auto":
            return None if bn is None else mode
        with tf.init_scope():  # read the variables' current values even inside tf.function
            fresh = (np.all(bn.moving_mean.numpy() == 0.0)
                     and np.all(bn.moving_variance.numpy() == 1.0))
        return "batch" if fresh else "folded"

    def _call_exact(self, x):
        x = tf.cast(x, tf.float64)
        if self.first_layer:
            x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
        c1, c2, scale = self.quantized_kernels()
        acc = self._apply(x, c1, c2)
        m, e, n = self.requantization(scale)
        unit = exp2(-e)
        z = acc * (m * unit) + n * unit
        if self.activation_step is not None:
            lo, hi = activation_range(self.activation_bits, self.signed)
            q = tf.clip_by_value(tf.floor(z + 0.5), float(lo), float(hi))
            z = q * self.activation_step
        return tf.cast(z, self.compute_dtype)

    # ---------------------------------------------------------------- config
    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "policy": self.policy.get_config(),
                "batch_norm": (
                    None
                    if self.batch_norm is None
                    else keras.saving.serialize_keras_object(self.batch_norm)
                ),
                "activation": self.activation,
                "first_layer": self.first_layer,
                "input_scale": self.input_scale,
                "signed": self.signed,
                "batch_norm_training": self.batch_norm_training,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["dtype"] = "float32"  # also for models saved under a mixed-precision policy
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        if config.get("batch_norm") is not None:
            config["batch_norm"] = keras.saving.deserialize_keras_object(config["batch_norm"])
        return cls(**config)

    def integer_summary(self):
        """Numpy view of the integer layer: codes, scales and requantization.

        Returns:
            A dict with `kind`, `weight_bits`, `kernel` (int codes), `kernel2`
            (pointwise codes or `None`), `m`, `e`, `n` (int64 arrays),
            `activation_bits` and `activation_step` (`None` for raw outputs)
            and `signed` (whether the output codes are signed).

        Raises:
            ValueError: If Keras' own quantization (`Model.quantize`) was
                applied to the wrapped layer.
        """
        check_not_keras_quantized(self.layer, self.name)
        c1, c2, scale = self.quantized_kernels()
        m, e, n = self.requantization(scale)
        return {
            "kind": self.kind,
            "weight_bits": self.weight_bits,
            "kernel": np.asarray(c1.numpy(), np.int64),
            "kernel2": None if c2 is None else np.asarray(c2.numpy(), np.int64),
            "m": np.asarray(m.numpy(), np.int64),
            "e": np.asarray(e.numpy(), np.int64),
            "n": np.asarray(n.numpy(), np.int64),
            "activation_bits": self.activation_bits,
            "activation_step": self.activation_step,
            "signed": self.signed,
        }
