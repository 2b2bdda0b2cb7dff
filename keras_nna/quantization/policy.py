"""QuantizationPolicy: one small object that decides every bit width.

A policy holds the defaults of a model — 4-bit weights, 4-bit activations,
8-bit weights in the first layer (which sees the 8-bit input image) — and
per-layer overrides by layer name. Layers never take bit widths as ad-hoc
keyword arguments; `quantize_model` asks the policy for each layer.

Example:

>>> policy = QuantizationPolicy(overrides={"conv_3": {"weight_bits": 6}})
>>> policy.resolve("conv_3")
{'weight_bits': 6, 'activation_bits': 4, 'activation_step': 0.25}
>>> policy.resolve("conv_0", first_layer=True)["weight_bits"]
8
"""

import keras

from keras_nna._checks import check_number
from keras_nna.quantization.quantizers import activation_qmax, activation_step, check_bits

__all__ = ["QuantizationPolicy"]

_OVERRIDE_KEYS = ("weight_bits", "activation_bits", "activation_max")


def _check_activation_max(value, layer=None):
    where = f" (override of layer '{layer}')" if layer else ""
    return check_number("activation_max", value, low=0.0, low_open=True,
                        fix=f"Pass a finite top of the ReLU range{where}, e.g. activation_max=4.0.")


@keras.saving.register_keras_serializable(package="keras_nna")
class QuantizationPolicy:
    """Bit widths and activation ranges for a quantized model.

    Args:
        weight_bits: Bits of weights (1–8; 1 bit = sign codes ±1 with a
            mean-|w| scale, see `quantize_weights`). Defaults to `4`.
        activation_bits: Bits of ReLU activations (1–8). Defaults to `4`.
        first_layer_weight_bits: Bits of weights (1–8) of the layers that
            consume the model input. Defaults to `8`.
        input_bits: Bits of the input image; the accelerator takes uint8.
            Defaults to `8`.
        activation_max: Approximate top of the activation range; the step is
            the power of two nearest to ``activation_max / (2**bits - 1)``.
            Defaults to `4.0`.
        progressive: If `True`, wrappers support progressive quantization
            (see `ProgressiveQuantization`). Defaults to `False`.
        overrides: Optional dict ``{layer_name: {"weight_bits": ...,
            "activation_bits": ..., "activation_max": ...}}``. Defaults to
            `None`.

    Raises:
        ValueError: On a bit width that is not an integer inside its range
            (a float, a bool or NaN included), an `activation_max` that is not
            a finite number > 0, or an unknown override key.
        TypeError: If `activation_max` is not a number.

    Example:

    >>> policy = QuantizationPolicy(activation_bits=3, overrides={"fc": {"weight_bits": 8}})
    >>> policy.resolve("fc")["weight_bits"], policy.resolve("conv")["activation_step"]
    (8, 0.5)
    >>> QuantizationPolicy.from_config(policy.get_config()).resolve("fc") == policy.resolve("fc")
    True
    >>> binary = QuantizationPolicy(weight_bits=1, overrides={"fc": {"weight_bits": 8}})
    >>> binary.resolve("conv_1")["weight_bits"], binary.resolve("fc")["weight_bits"]
    (1, 8)
    """

    def __init__(
        self,
        weight_bits=4,
        activation_bits=4,
        first_layer_weight_bits=8,
        input_bits=8,
        activation_max=4.0,
        progressive=False,
        overrides=None,
    ):
        self.weight_bits = check_bits(weight_bits, "weight")
        self.activation_bits = check_bits(activation_bits, "activation")
        self.first_layer_weight_bits = check_bits(first_layer_weight_bits, "weight",
                                                  arg="first_layer_weight_bits")
        self.input_bits = check_bits(input_bits, "input")
        self.activation_max = _check_activation_max(activation_max)
        self.progressive = bool(progressive)
        self.overrides = {}
        for name, spec in dict(overrides or {}).items():
            if not isinstance(spec, dict):
                raise ValueError(
                    f"Override for layer '{name}' must be a dict such as "
                    f"{{'weight_bits': 6}}, received {spec!r}."
                )
            unknown = sorted(set(spec) - set(_OVERRIDE_KEYS))
            if unknown:
                raise ValueError(
                    f"Unknown override keys {unknown} for layer '{name}': expected any of "
                    f"{list(_OVERRIDE_KEYS)}."
                )
            if "weight_bits" in spec:
                check_bits(spec["weight_bits"], "weight", name)
            if "activation_bits" in spec:
                check_bits(spec["activation_bits"], "activation", name)
            if "activation_max" in spec:
                _check_activation_max(spec["activation_max"], name)
            self.overrides[str(name)] = {k: spec[k] for k in _OVERRIDE_KEYS if k in spec}

    def resolve(self, name, first_layer=False, signed=False):
        """Returns the quantization settings of one layer.

        Args:
            name: The layer name (overrides are looked up by name).
            first_layer: Whether the layer consumes the model input.
                Defaults to `False`.
            signed: Whether the layer outputs signed codes (no ReLU, not a
                model output): the step then follows the signed rule of
                `activation_step`. Defaults to `False`.

        Returns:
            A dict with `weight_bits`, `activation_bits` and `activation_step`.

        Raises:
            ValueError: If `signed` and the layer's activation bits are 1
                (signed codes need at least 2 bits).

        Example:

        >>> QuantizationPolicy().resolve("add", signed=True)["activation_step"]
        0.5
        """
        spec = self.overrides.get(name, {})
        default_w = self.first_layer_weight_bits if first_layer else self.weight_bits
        bits = int(spec.get("activation_bits", self.activation_bits))
        amax = float(spec.get("activation_max", self.activation_max))
        if signed:
            check_bits(bits, "signed_activation", name)
        return {
            "weight_bits": int(spec.get("weight_bits", default_w)),
            "activation_bits": bits,
            "activation_step": activation_step(bits, amax, signed=signed),
        }

    def activation_top(self, name):
        """Largest activation layer `name` can output: ``(2**bits - 1) * step``.

        Args:
            name: The layer name.

        Returns:
            The top of the layer's quantized activation range, as a float.

        Example:

        >>> QuantizationPolicy(overrides={"c": {"activation_bits": 5}}).activation_top("c")
        3.875
        """
        spec = self.resolve(name)
        return activation_qmax(spec["activation_bits"]) * spec["activation_step"]

    def check_names(self, names):
        """Raises if an override names a layer that is not in `names`."""
        missing = sorted(set(self.overrides) - set(names))
        if missing:
            raise ValueError(
                f"QuantizationPolicy overrides name layers {missing} that are not in the "
                f"model. Layers that can be quantized: {sorted(names)}."
            )

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "first_layer_weight_bits": self.first_layer_weight_bits,
            "input_bits": self.input_bits,
            "activation_max": self.activation_max,
            "progressive": self.progressive,
            "overrides": {k: dict(v) for k, v in self.overrides.items()},
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"QuantizationPolicy({args})"

    def __eq__(self, other):
        return isinstance(other, QuantizationPolicy) and self.get_config() == other.get_config()
