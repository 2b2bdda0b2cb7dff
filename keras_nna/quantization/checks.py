"""What a `QuantizeWrapper` accepts: the checks that keep the bit-exact contract.

The wrapper's inference must equal the exported program bit for bit, so it
refuses what would silently break that: a layer or configuration the
accelerator does not run (`check_layer`), a Keras 2 (tf_keras) layer, a
compute dtype other than float32 (`float32_dtype`, e.g. from
`keras.mixed_precision`), and Keras' own weight quantization
(`model.quantize("int8")`, see `check_not_keras_quantized` and
`refuse_keras_quantize`).

Example:

>>> check_layer(keras.layers.Conv2D(4, 3))
'conv'
>>> float32_dtype(None, "q")
'float32'
"""

import keras

from keras_nna.quantization.layer_kinds import (
    is_relu_activation,
    keras3_type_error,
    layer_kind,
    quantizable_kind,
)

__all__ = ["SUPPORTED_LAYERS", "activation_error", "check_layer", "check_not_keras_quantized",
           "float32_dtype", "refuse_keras_quantize"]

_ACTIVATION_LAYERS = {"Softmax": "softmax", "ELU": "elu", "PReLU": "prelu",
                      "LeakyReLU": "leaky_relu"}


def _function_name(activation):
    """`None` for no/linear/ReLU activations, else the activation's name."""
    if activation is None or is_relu_activation(activation):
        return None
    name = activation if isinstance(activation, str) else getattr(activation, "__name__", None)
    if name in ("linear", None) and (isinstance(activation, str) or activation is keras.activations.linear):
        return None
    return str(name or type(activation).__name__)


def _unsupported_activation(layer):
    """The name of the non-ReLU, non-linear activation `layer` applies, or `None`."""
    cls = type(layer).__name__
    if isinstance(layer, keras.layers.ReLU):
        if layer_kind(layer) != "activation":
            return None
        cfg = layer.get_config()
        return f"ReLU(negative_slope={cfg.get('negative_slope')}, threshold={cfg.get('threshold')})"
    if isinstance(layer, keras.layers.Activation):
        return _function_name(layer.get_config()["activation"])
    for base in type(layer).__mro__:
        if base.__name__ in _ACTIVATION_LAYERS and base.__module__.startswith("keras"):
            return _ACTIVATION_LAYERS[base.__name__]
    if hasattr(layer, "activation") and "Wrapper" not in cls:
        return _function_name(layer.activation)
    return None


def activation_error(layer, at_output=False):
    """A `ValueError` if `layer` applies an activation the accelerator does not run.

    The accelerator computes ReLU activations (quantized codes) and raw
    outputs (logits) only. A softmax, sigmoid, tanh, ELU, leaky ReLU, ...
    anywhere in the float model would be dropped by quantization, so the
    quantized model and the exported program would compute something else.

    Args:
        layer: A layer of the float model.
        at_output: Whether the layer's output is a model output (the message
            then explains how to get probabilities from logits).

    Returns:
        A `ValueError` naming the layer, its activation and the fix, or
        `None` if the layer applies no activation, a linear one or ReLU.

    Example:

    >>> activation_error(keras.layers.Dense(2, activation="relu")) is None
    True
    >>> print(activation_error(keras.layers.Dense(2, activation="softmax", name="fc"),
    ...                        at_output=True))  # doctest: +ELLIPSIS
    Cannot quantize layer 'fc' (Dense): activation 'softmax' is not supported ... keras.activations.softmax ...
    """
    name = _unsupported_activation(layer)
    if name is None:
        return None
    if layer_kind(layer) in ("activation", "relu", None) or isinstance(layer, keras.layers.Activation):
        build = f"remove the '{layer.name}' layer from the float model"
    else:
        build = f"build the float model with activation=None on layer '{layer.name}'"
    if at_output:
        apply = (f"keras.activations.{name}" if name.isidentifier() and hasattr(keras.activations, name)
                 else "the activation")
        fix = (f"{build} (for keras.applications models pass classifier_activation=None), "
               "train with a loss that takes logits (e.g. keras.losses."
               "SparseCategoricalCrossentropy(from_logits=True)), and apply "
               f"{apply} to the outputs of the quantized model or the program if you need "
               "probabilities")
    else:
        fix = f"{build} or use 'relu' there (hidden layers must be ReLU or linear)"
    return ValueError(
        f"Cannot quantize layer '{layer.name}' ({type(layer).__name__}): activation {name!r} is "
        "not supported (the accelerator outputs ReLU codes or raw logits only; quantize_model "
        f"would drop it, so predict and the exported program would differ). Fix: {fix}."
    )

SUPPORTED_LAYERS = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense")


def check_layer(layer):
    """Checks that `layer` can be wrapped and returns its kind.

    Args:
        layer: The layer to wrap.

    Returns:
        `"conv"`, `"depthwise"`, `"separable"` or `"dense"`.

    Raises:
        TypeError: If `layer` is not a Keras 3 layer.
        ValueError: If its class or configuration is not supported.

    Example:

    >>> check_layer(keras.layers.Dense(2))
    'dense'
    """
    error = keras3_type_error(layer, keras.layers.Layer, "QuantizeWrapper")
    if error is not None:
        raise error
    kind = quantizable_kind(layer)
    if kind is None:
        raise ValueError(
            f"QuantizeWrapper cannot wrap layer '{layer.name}' of class "
            f"{type(layer).__name__}: expected one of {', '.join(SUPPORTED_LAYERS)}."
        )
    cfg = layer.get_config()
    problems = []
    if kind != "dense":
        if cfg.get("data_format", "channels_last") != "channels_last":
            problems.append(f"data_format={cfg['data_format']!r} (expected 'channels_last')")
        if tuple(cfg.get("dilation_rate", (1, 1))) not in ((1, 1), (1,)):
            problems.append(f"dilation_rate={cfg['dilation_rate']} (expected (1, 1))")
        if cfg.get("groups", 1) != 1:
            problems.append(f"groups={cfg['groups']} (expected 1)")
        if cfg.get("depth_multiplier", 1) != 1:
            problems.append(f"depth_multiplier={cfg['depth_multiplier']} (expected 1)")
        if cfg.get("padding") not in ("same", "valid"):
            problems.append(f"padding={cfg.get('padding')!r} (expected 'same' or 'valid')")
        if kind == "separable" and cfg["strides"][0] != cfg["strides"][1]:
            problems.append(f"strides={cfg['strides']} (separable needs equal strides)")
    act = cfg.get("activation", "linear")
    if act not in ("linear", "relu", None):
        problems.append(f"activation={act!r} (expected 'linear' or 'relu')")
    if problems:
        raise ValueError(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be quantized: "
            + "; ".join(problems)
            + ". Change the layer configuration before quantize_model."
        )
    return kind


def check_not_keras_quantized(layer, wrapper_name):
    """Raises if Keras' own quantization (`Model.quantize`) touched `layer`.

    Args:
        layer: The layer inside a `QuantizeWrapper` (or the layer about to be wrapped).
        wrapper_name: Name of the wrapper, for the message.

    Raises:
        ValueError: If `layer.quantization_mode` is set (e.g. `"int8"`).

    Example:

    >>> check_not_keras_quantized(keras.layers.Dense(2), "fc")  # a float layer passes
    """
    mode = getattr(layer, "quantization_mode", None)
    if mode is not None:
        raise ValueError(
            f"Keras quantization mode {mode!r} was applied to the layer '{layer.name}' inside "
            f"QuantizeWrapper '{wrapper_name}': Keras replaced its kernel with its own "
            "quantized one, which breaks keras_nna's integer semantics and the exported program. "
            "Expected a float layer. Quantize with keras_nna's quantize_model only (do not call "
            "model.quantize(...) on its result); rebuild the quantized model from the float "
            "model with keras_nna.quantization.quantize_model(float_model).")


def refuse_keras_quantize(wrapper_name):
    """A `quantize` method for the wrapped layer that refuses Keras' quantization.

    `Model.quantize` calls `quantize` on every leaf layer, so the layer inside
    a wrapper would be rewritten behind the wrapper's back; it catches
    `NotImplementedError`/`AttributeError` (a warning), hence a `ValueError`.

    Args:
        wrapper_name: Name of the wrapper, for the message.

    Returns:
        A function to set as the wrapped layer's `quantize` attribute.

    Example:

    >>> refuse = refuse_keras_quantize("fc")
    >>> refuse("int8")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Keras quantization mode 'int8' cannot be applied to the layer inside QuantizeWrapper 'fc': ...
    """

    def quantize(mode=None, type_check=True, config=None):
        raise ValueError(
            f"Keras quantization mode {mode!r} cannot be applied to the layer inside "
            f"QuantizeWrapper '{wrapper_name}': keras_nna already quantizes it for the accelerator "
            "(docs/quantization.md), and Keras' kernel rewrite would make predict differ from the "
            "exported program. Use keras_nna's quantize_model only, on the float model.")

    return quantize


def float32_dtype(dtype, name):
    """Returns `"float32"`; refuses an explicit dtype that computes in another precision.

    Args:
        dtype: The `dtype` passed to the wrapper, or `None`.
        name: The wrapper's name, for the message.

    Returns:
        `"float32"`.

    Raises:
        ValueError: If `dtype` computes or stores in another precision.

    Example:

    >>> float32_dtype("float32", "q")
    'float32'
    """
    if dtype is not None:
        policy = keras.dtype_policies.get(dtype)
        if policy.compute_dtype != "float32" or policy.variable_dtype != "float32":
            raise ValueError(
                f"QuantizeWrapper '{name}' computes in float32 (its inference is exact integer "
                f"arithmetic that must equal the exported program bit for bit); received "
                f"dtype={policy.name!r}. Remove the dtype argument: the wrapper ignores "
                "keras.mixed_precision's global policy.")
    return "float32"
