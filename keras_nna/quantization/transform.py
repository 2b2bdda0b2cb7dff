"""quantize_model: turn a float Keras model into a quantization-aware one.

`quantize_model` walks a Sequential or functional model (nested models are
flattened into one graph), fuses every ``Conv/Depthwise/Separable/Dense →
[BatchNormalization] → [ReLU]`` chain into one `QuantizeWrapper`, folds a
leading ``Rescaling(scale, offset=0)`` into the first layer, replaces average
pooling by its quantized version and copies all weights. The result trains
with `fit` like the original and, in inference mode, computes the exact
integer semantics the accelerator runs.

Layers passed through unchanged: `InputLayer`, `MaxPooling2D`, `Flatten`,
`Dropout`, `Identity`, `Activation("linear")`. Anything else raises a
`ValueError` that names the layer, its class and what is supported; so does
any activation other than ReLU and linear (softmax, sigmoid, tanh, ...: the
accelerator outputs logits, see `keras_nna.quantization.checks.activation_error`).
Layer kinds come from `keras_nna.quantization.layer_kinds`.

The conversion is a list of small steps, each a pattern (which layer it
starts at) and a replacement (what it emits into the new graph), tried in
order: `_FoldRescaling`, `_FuseConvBatchNormReLU`, `_QuantizeAveragePooling`,
`_CopyPassThrough`, `_RejectMisplaced`. Every layer the steps create computes
in float32, whatever `keras.mixed_precision`'s global policy, so `predict`
stays equal to the exported program.

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

from keras_nna.quantization.checks import SUPPORTED_LAYERS, activation_error
from keras_nna.quantization.layer_kinds import keras3_type_error, layer_kind, quantizable_kind
from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.wrapper import QuantizeWrapper

__all__ = ["quantize_model"]

_SUPPORTED_TEXT = (
    f"{', '.join(SUPPORTED_LAYERS)} (each optionally followed by BatchNormalization and "
    "ReLU), a leading Rescaling(offset=0), MaxPooling2D, AveragePooling2D(padding='valid'), "
    "GlobalAveragePooling2D, Flatten, Dropout"
)


class _Op:
    """One layer call of the flattened graph."""

    def __init__(self, layer, inputs, outputs):
        self.layer, self.inputs, self.outputs = layer, inputs, outputs


def _flatten(model, alias, ops):
    """Appends the layer calls of `model` to `ops`, inlining nested models."""
    for inner, outer in zip(model.inputs, _tensors(alias.get("__inputs__", model.inputs))):
        alias[id(inner)] = _resolve(alias, id(outer))
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            ins, outs = _tensors(layer.input), _tensors(layer.output)
        except (AttributeError, ValueError) as err:
            raise ValueError(
                f"Layer '{layer.name}' is called more than once or not connected; "
                "quantize_model needs each layer called exactly once."
            ) from err
        if isinstance(layer, keras.Model):
            sub_alias = dict(alias)
            sub_alias["__inputs__"] = ins
            _flatten(layer, sub_alias, ops)
            alias.update({k: v for k, v in sub_alias.items() if k != "__inputs__"})
            for inner, outer in zip(_tensors(layer.outputs), outs):
                alias[id(outer)] = _resolve(alias, id(inner))
            continue
        ops.append(_Op(layer, [_resolve(alias, id(t)) for t in ins], [id(t) for t in outs]))


def _tensors(value):
    return list(keras.tree.flatten(value))


def _resolve(alias, key):
    while key in alias and alias[key] != key:
        key = alias[key]
    return key


def _unsupported(layer, why=""):
    return ValueError(
        f"Cannot quantize layer '{layer.name}' ({type(layer).__name__}){why}. "
        f"Supported: {_SUPPORTED_TEXT}."
    )


def _float32_copy(layer, **overrides):
    """A fresh layer with `layer`'s config, computing in float32."""
    return type(layer).from_config({**layer.get_config(), **overrides, "dtype": "float32"})


class _Conversion:
    """The flattened float graph and the quantized graph being built from it.

    `tensors` maps old tensor ids to new tensors; `info` records, per old
    tensor id, whether it is the (rescaled) raw input (`raw_input`, `scale`)
    or a quantized ReLU activation (`bits`, `step`).
    """

    def __init__(self, model, policy):
        self.policy = policy
        self.ops, self.alias = [], {}
        _flatten(model, self.alias, self.ops)
        self.consumers = {}
        for op in self.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.output_ids = {_resolve(self.alias, id(t)) for t in _tensors(model.outputs)}
        self.new_inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]
        self.tensors = {id(old): new for old, new in zip(model.inputs, self.new_inputs)}
        self.info = {id(t): {"raw_input": True, "scale": 1.0} for t in model.inputs}
        self.absorbed = set()
        self.copies = []

    def single_consumer(self, tensor_id):
        """The only op reading `tensor_id`, or `None` (several, none, or a model output)."""
        users = self.consumers.get(tensor_id, [])
        return users[0] if len(users) == 1 and tensor_id not in self.output_ids else None

    def source(self, op):
        """`(input tensor id, its info)` of `op`."""
        src = op.inputs[0] if op.inputs else None
        return src, self.info.get(src, {})

    def emit(self, tensor_id, tensor, info):
        """Records the new tensor standing for old tensor `tensor_id`."""
        self.tensors[tensor_id] = tensor
        self.info[tensor_id] = info

    def build(self, model):
        """The new `keras.Model`, with the float weights copied in."""
        outputs = keras.tree.map_structure(
            lambda t: self.tensors[_resolve(self.alias, id(t))], model.outputs)
        new_inputs = self.new_inputs[0] if len(self.new_inputs) == 1 else self.new_inputs
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        qmodel = keras.Model(new_inputs, outputs, name=f"{model.name}_quantized")
        for old, new in self.copies:
            new.set_weights(old.get_weights())
        return qmodel


class _FoldRescaling:
    """`Rescaling(scale)` right after the input: folded into the first layer's input scale."""

    @staticmethod
    def matches(layer):
        return layer_kind(layer) == "rescaling"

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        cfg = layer.get_config()
        if not src_info.get("raw_input"):
            raise _unsupported(layer, ": Rescaling is only supported right after the input")
        if cfg.get("offset", 0.0) not in (0, 0.0):
            raise _unsupported(
                layer, f": offset={cfg['offset']} (the accelerator takes uint8 pixels; use "
                "Rescaling(scale) with offset 0 and let the network learn the bias)"
            )
        scale = cfg["scale"]
        if not isinstance(scale, (int, float)):
            raise _unsupported(layer, ": per-channel scale (use a single float)")
        conv.emit(op.outputs[0], conv.tensors[src],
                  {"raw_input": True, "scale": src_info["scale"] * float(scale)})


class _FuseConvBatchNormReLU:
    """Conv/Depthwise/Separable/Dense → [BatchNormalization] → [ReLU]: one `QuantizeWrapper`."""

    @staticmethod
    def matches(layer):
        return quantizable_kind(layer) is not None

    @staticmethod
    def _chain(conv, op):
        """The BatchNorm and ReLU ops fused after `op` (or `None`) and the chain's output id."""
        chain_out, bn, relu = op.outputs[0], None, None
        nxt = conv.single_consumer(chain_out)
        if nxt is not None and layer_kind(nxt.layer) == "batchnorm":
            bn, chain_out = nxt, nxt.outputs[0]
            nxt = conv.single_consumer(chain_out)
        if nxt is not None and layer_kind(nxt.layer) == "relu":
            relu, chain_out = nxt, nxt.outputs[0]
        conv.absorbed.update(id(fused) for fused in (bn, relu) if fused is not None)
        return bn, relu, chain_out

    @classmethod
    def replace(cls, conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        bn, relu, chain_out = cls._chain(conv, op)
        _check_relu_cap(relu, layer, conv.policy)
        inner_cfg = layer.get_config()
        if bn is not None and inner_cfg.get("activation") == "relu":
            raise _unsupported(layer, ": it applies ReLU before its BatchNormalization (keras_nna "
                               "fuses conv → BatchNorm → ReLU); build it with activation=None and "
                               "put a ReLU after the BatchNormalization")
        activation = "relu" if relu is not None or inner_cfg.get("activation") == "relu" else None
        # Activity regularization (sparsity) moves onto the quantized output.
        regularizer = relu.layer.activity_regularizer if relu is not None else None
        if regularizer is None and activation:
            regularizer = layer.activity_regularizer
        inner_cfg["activation"] = "linear"
        inner_cfg["activity_regularizer"] = None
        inner = type(layer).from_config(inner_cfg)
        new_bn = None if bn is None else type(bn.layer).from_config(bn.layer.get_config())
        wrapper = QuantizeWrapper(
            inner,
            policy=conv.policy,
            batch_norm=new_bn,
            activation=activation,
            first_layer=bool(src_info.get("raw_input")),
            input_scale=src_info.get("scale", 1.0),
            activity_regularizer=regularizer,
            name=layer.name,
        )
        info = {"bits": wrapper.activation_bits, "step": wrapper.activation_step} if activation else {}
        conv.emit(chain_out, wrapper(conv.tensors[src]), info)
        conv.copies.append((layer, inner))
        if bn is not None:
            conv.copies.append((bn.layer, new_bn))


class _QuantizeAveragePooling:
    """`AveragePooling2D` / `GlobalAveragePooling2D` on a quantized ReLU: the quantized mean."""

    @staticmethod
    def matches(layer):
        return isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D))

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        if "bits" not in src_info:
            raise _unsupported(layer, ": its input is not a quantized ReLU activation")
        cfg = layer.get_config()
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise _unsupported(layer, ": data_format must be 'channels_last'")
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            new = QuantizedGlobalAveragePooling2D(
                bits=src_info["bits"], step=src_info["step"], keepdims=cfg.get("keepdims", False),
                name=layer.name, dtype="float32",
            )
        else:
            if cfg["padding"] != "valid":
                raise _unsupported(layer, ": padding must be 'valid'")
            new = QuantizedAveragePooling2D(
                pool_size=cfg["pool_size"], strides=cfg["strides"], bits=src_info["bits"],
                step=src_info["step"], name=layer.name, dtype="float32",
            )
        conv.emit(op.outputs[0], new(conv.tensors[src]), dict(src_info))


class _CopyPassThrough:
    """`MaxPooling2D`, `Flatten` and layers that compute nothing (`Dropout`, ...): copied."""

    @staticmethod
    def matches(layer):
        return (isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.Flatten))
                or layer_kind(layer) == "passthrough")

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        if isinstance(layer, keras.layers.MaxPooling2D) and "bits" not in src_info:
            raise _unsupported(layer, ": its input is not a quantized ReLU activation")
        conv.emit(op.outputs[0], _float32_copy(layer)(conv.tensors[src]), dict(src_info))


class _RejectMisplaced:
    """A BatchNormalization or ReLU that no conv/dense layer absorbed: an error."""

    @staticmethod
    def matches(layer):
        return layer_kind(layer) in ("batchnorm", "relu")

    @staticmethod
    def replace(conv, op):
        if layer_kind(op.layer) == "batchnorm":
            raise _unsupported(op.layer, ": BatchNormalization must directly follow a conv/dense layer")
        raise _unsupported(op.layer, ": ReLU must follow a conv/dense layer (or its BatchNorm)")


_STEPS = (_FoldRescaling, _FuseConvBatchNormReLU, _QuantizeAveragePooling, _CopyPassThrough,
          _RejectMisplaced)


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
            activations, 8-bit first layer, 8-bit input).

    Returns:
        A new functional `keras.Model` with the same inputs/outputs whose
        quantizable layers are `QuantizeWrapper`s; weights are copied. It
        computes in float32 even under a `keras.mixed_precision` policy.

    Raises:
        TypeError: If `model` is not a Keras 3 `keras.Model` (a tf_keras /
            Keras 2 model gets a message on how to rebuild it).
        ValueError: If a layer is not supported (the message names it, its
            class and the supported layers), a layer applies an activation
            other than ReLU or linear (softmax, sigmoid, tanh, ... as an
            `activation=` argument or an `Activation`/`Softmax` layer: the
            accelerator outputs logits; the message says how to get
            probabilities), or a policy override names a layer that does
            not exist.

    Example:

    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
    ...                           keras.layers.Dense(2)])
    >>> [layer.activation for layer in quantize_model(model).layers[1:]]
    ['relu', None]
    """
    policy = _check_arguments(model, policy)
    conv = _Conversion(model, policy)
    policy.check_names([op.layer.name for op in conv.ops if quantizable_kind(op.layer)])
    for op in conv.ops:
        error = activation_error(op.layer, at_output=bool(set(op.outputs) & conv.output_ids))
        if error is not None:
            raise error
    for op in conv.ops:
        if id(op) in conv.absorbed:
            continue
        step = next((s for s in _STEPS if s.matches(op.layer)), None)
        if step is None:
            raise _unsupported(op.layer)
        step.replace(conv, op)
    return conv.build(model)


def _check_relu_cap(relu, layer, policy):
    """ReLU(max_value) is allowed only when the cap is above the quantization range."""
    if relu is None or not isinstance(relu.layer, keras.layers.ReLU):
        return
    cap = relu.layer.get_config().get("max_value")
    if cap is None:
        return
    top = policy.activation_top(layer.name)
    if cap < top:
        raise _unsupported(
            relu.layer,
            f": max_value={cap} is below the quantized range {top} (activation_max); lower "
            "the policy's activation_max or remove the cap",
        )
