"""quantize_model: turn a float Keras model into a quantization-aware one.

`quantize_model` walks a Sequential or functional model (nested models are
flattened into one graph; branches and residual connections are fine), fuses
every ``Conv/Depthwise/Separable/Dense → [BatchNormalization] → [ReLU]``
chain into one `QuantizeWrapper`, turns every two-input ``Add → [ReLU]`` into
one `QuantizedAdd`, folds a leading ``Rescaling(scale, offset=0)`` into the
first layer, replaces average pooling by its quantized version and copies all
weights. The result trains with `fit` like the original and, in inference
mode, computes the exact integer semantics the accelerator runs.

A block without ReLU outputs signed codes (e.g. the linear bottleneck of
MobileNetV2, ResNet's conv → BN before the Add), unless its output is a model
output (then a raw float output, e.g. logits). Layers passed through
unchanged: `InputLayer`, `MaxPooling2D` (on ReLU codes), `Flatten`,
`ZeroPadding2D` (before a conv or max pooling: the exporter folds it),
`Reshape` (to a vector or (1, 1, n)), `Dropout`, `Identity`,
`Activation("linear")`. Anything else raises a `ValueError` that names the
layer, its class, what is supported and the fix; so does any activation other
than ReLU and linear (softmax, sigmoid, tanh, ...: the accelerator outputs
logits, see `keras_nna.quantization.checks.activation_error`). Layer kinds come
from `keras_nna.quantization.layer_kinds`.

The conversion is a list of small steps, each a pattern (which layer it
starts at) and a replacement (what it emits into the new graph), tried in
order (`keras_nna.quantization.steps.STEPS`). Every layer the steps create
computes in float32, whatever `keras.mixed_precision`'s global policy, so
`predict` stays equal to the exported program.

Example:

>>> inputs = keras.Input((8, 8, 1))
>>> x = keras.layers.Rescaling(1 / 255)(inputs)
>>> x = keras.layers.Conv2D(4, 3, use_bias=False)(x)
>>> x = keras.layers.BatchNormalization()(x)
>>> x = keras.layers.ReLU()(x)
>>> x = keras.layers.GlobalAveragePooling2D()(x)
>>> outputs = keras.layers.Dense(2)(x)
>>> qmodel = quantize_model(keras.Model(inputs, outputs))
>>> [type(layer).__name__ for layer in qmodel.layers]
['InputLayer', 'QuantizeWrapper', 'QuantizedGlobalAveragePooling2D', 'QuantizeWrapper']
>>> qmodel.layers[1].weight_bits, qmodel.layers[3].weight_bits
(8, 4)
"""

import keras

from keras_nna.quantization.checks import activation_error
from keras_nna.quantization.conversion import Conversion, unsupported
from keras_nna.quantization.layer_kinds import keras3_type_error, layer_kind, quantizable_kind
from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.steps import STEPS

__all__ = ["quantize_model"]


def _check_arguments(model, policy):
    error = keras3_type_error(model, keras.Model, "quantize_model")
    if error is not None:
        raise error
    policy = policy or QuantizationPolicy()
    if not isinstance(policy, QuantizationPolicy):
        raise ValueError(f"policy must be a QuantizationPolicy, received {type(policy).__name__}.")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Model '{model.name}' has no defined inputs: build it first, e.g. with "
            "keras.Input(shape) as its first layer."
        )
    return policy


def quantize_model(model, policy=None):
    """Returns a quantization-aware copy of `model`, ready for `fit`.

    Args:
        model: A built Keras 3 Sequential or functional model (nested models
            allowed); each layer must be called once.
        policy: A `QuantizationPolicy`. Defaults to `None` (4-bit weights and
            activations, 8-bit first layer, 8-bit input). Overrides may name
            conv/dense layers and `Add` layers.

    Returns:
        A new functional `keras.Model` with the same inputs/outputs whose
        quantizable layers are `QuantizeWrapper`s and whose `Add` layers are
        `QuantizedAdd`s; weights are copied. It computes in float32 even
        under a `keras.mixed_precision` policy.

    Raises:
        TypeError: If `model` is not a Keras 3 `keras.Model` (a tf_keras /
            Keras 2 model gets a message on how to rebuild it).
        ValueError: If a layer is not supported (the message names it, its
            class, what was expected and the fix), a layer applies an
            activation other than ReLU or linear (softmax, sigmoid, tanh, ...
            as an `activation=` argument or an `Activation`/`Softmax` layer:
            the accelerator outputs logits; the message says how to get
            probabilities), or a policy override names a layer that does
            not exist.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
    ...                           keras.layers.Dense(3), keras.layers.Dense(2)])
    >>> [(layer.activation, layer.signed) for layer in quantize_model(model).layers[1:]]
    [('relu', False), (None, True), (None, False)]
    """
    policy = _check_arguments(model, policy)
    conv = Conversion(model, policy)
    policy.check_names([op.layer.name for op in conv.ops
                        if quantizable_kind(op.layer) or layer_kind(op.layer) == "add"])
    for op in conv.ops:
        error = activation_error(op.layer, at_output=bool(set(op.outputs) & conv.output_ids))
        if error is not None:
            raise error
    for op in conv.ops:
        if id(op) in conv.absorbed:
            continue
        step = next((s for s in STEPS if s.matches(op.layer)), None)
        if step is None:
            raise unsupported(op.layer)
        step.replace(conv, op)
    return conv.build(model)
