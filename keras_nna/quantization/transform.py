"""quantize_model: turn a float Keras model into a quantization-aware one.

`quantize_model` walks a Sequential or functional model (nested models are
flattened into one graph), fuses every ``Conv/Depthwise/Separable/Dense →
[BatchNormalization] → [ReLU]`` chain into one `QuantizeWrapper`, folds a
leading ``Rescaling(scale, offset=0)`` into the first layer, replaces average
pooling by its quantized version and copies all weights. The result trains
with `fit` like the original and, in inference mode, computes the exact
integer semantics the accelerator runs.

Layers passed through unchanged: `InputLayer`, `MaxPooling2D`, `Flatten`,
`Dropout`, `Activation("linear")`. Anything else raises a `ValueError` that
names the layer, its class and what is supported.

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

from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.wrapper import SUPPORTED_LAYERS, QuantizeWrapper, layer_kind

__all__ = ["quantize_model"]

_PASS_THROUGH = (
    keras.layers.MaxPooling2D,
    keras.layers.Flatten,
    keras.layers.Dropout,
)
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


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
            return False
        return True
    if isinstance(layer, keras.layers.Activation):
        return layer.get_config()["activation"] == "relu"
    return False


def _unsupported(layer, why=""):
    return ValueError(
        f"Cannot quantize layer '{layer.name}' ({type(layer).__name__}){why}. "
        f"Supported: {_SUPPORTED_TEXT}."
    )


def quantize_model(model, policy=None):
    """Returns a quantization-aware copy of `model`, ready for `fit`.

    Args:
        model: A built Sequential or functional Keras model (nested models
            allowed); each layer must be called once.
        policy: A `QuantizationPolicy`. Defaults to `None` (4-bit weights and
            activations, 8-bit first layer, 8-bit input).

    Returns:
        A new functional `keras.Model` with the same inputs/outputs whose
        quantizable layers are `QuantizeWrapper`s; weights are copied.

    Raises:
        ValueError: If a layer is not supported (the message names it, its
            class and the supported layers), or a policy override names a
            layer that does not exist.
    """
    policy = policy or QuantizationPolicy()
    if not isinstance(policy, QuantizationPolicy):
        raise ValueError(f"policy must be a QuantizationPolicy, received {type(policy).__name__}.")
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Model '{model.name}' has no defined inputs: build it first, e.g. with "
            "keras.Input(shape) as its first layer."
        )
    ops, alias = [], {}
    _flatten(model, alias, ops)
    consumers = {}
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t, []).append(op)
    output_ids = {_resolve(alias, id(t)) for t in _tensors(model.outputs)}
    policy.check_names([op.layer.name for op in ops if layer_kind(op.layer)])

    def single_consumer(tensor_id):
        users = consumers.get(tensor_id, [])
        return users[0] if len(users) == 1 and tensor_id not in output_ids else None

    new_inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]
    tensors = {id(old): new for old, new in zip(model.inputs, new_inputs)}
    info = {id(t): {"raw_input": True, "scale": 1.0} for t in model.inputs}
    absorbed = set()
    copies = []
    for op in ops:
        layer = op.layer
        if id(op) in absorbed:
            continue
        src = op.inputs[0] if op.inputs else None
        src_info = info.get(src, {})
        if isinstance(layer, keras.layers.Rescaling):
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
            tensors[op.outputs[0]] = tensors[src]
            info[op.outputs[0]] = {"raw_input": True, "scale": src_info["scale"] * float(scale)}
            continue
        kind = layer_kind(layer)
        if kind is not None:
            chain_out = op.outputs[0]
            bn = relu = None
            nxt = single_consumer(chain_out)
            if nxt is not None and isinstance(nxt.layer, keras.layers.BatchNormalization):
                bn = nxt
                chain_out = nxt.outputs[0]
                nxt = single_consumer(chain_out)
            if nxt is not None and _is_relu(nxt.layer):
                relu = nxt
                chain_out = nxt.outputs[0]
            for fused in (bn, relu):
                if fused is not None:
                    absorbed.add(id(fused))
            _check_relu_cap(relu, layer, policy)
            inner_cfg = layer.get_config()
            activation = "relu" if relu is not None or inner_cfg.get("activation") == "relu" else None
            # Activity regularization (sparsity) moves onto the quantized output.
            regularizer = relu.layer.activity_regularizer if relu is not None else None
            if regularizer is None and activation:
                regularizer = layer.activity_regularizer
            inner_cfg["activation"] = "linear"
            inner_cfg["activity_regularizer"] = None
            inner = type(layer).from_config(inner_cfg)
            new_bn = None
            if bn is not None:
                new_bn = type(bn.layer).from_config(bn.layer.get_config())
            wrapper = QuantizeWrapper(
                inner,
                policy=policy,
                batch_norm=new_bn,
                activation=activation,
                first_layer=bool(src_info.get("raw_input")),
                input_scale=src_info.get("scale", 1.0),
                activity_regularizer=regularizer,
                name=layer.name,
            )
            tensors[chain_out] = wrapper(tensors[src])
            info[chain_out] = (
                {"bits": wrapper.activation_bits, "step": wrapper.activation_step}
                if activation
                else {}
            )
            copies.append((layer, inner))
            if bn is not None:
                copies.append((bn.layer, new_bn))
            continue
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D)):
            if "bits" not in src_info:
                raise _unsupported(layer, ": its input is not a quantized ReLU activation")
            cfg = layer.get_config()
            if cfg.get("data_format", "channels_last") != "channels_last":
                raise _unsupported(layer, ": data_format must be 'channels_last'")
            if isinstance(layer, keras.layers.GlobalAveragePooling2D):
                new = QuantizedGlobalAveragePooling2D(
                    bits=src_info["bits"], step=src_info["step"], keepdims=cfg.get("keepdims", False),
                    name=layer.name,
                )
            else:
                if cfg["padding"] != "valid":
                    raise _unsupported(layer, ": padding must be 'valid'")
                new = QuantizedAveragePooling2D(
                    pool_size=cfg["pool_size"], strides=cfg["strides"], bits=src_info["bits"],
                    step=src_info["step"], name=layer.name,
                )
            tensors[op.outputs[0]] = new(tensors[src])
            info[op.outputs[0]] = dict(src_info)
            continue
        linear = isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] in (
            "linear", None)
        if isinstance(layer, _PASS_THROUGH) or linear:
            if isinstance(layer, keras.layers.MaxPooling2D) and "bits" not in src_info:
                raise _unsupported(layer, ": its input is not a quantized ReLU activation")
            new = type(layer).from_config(layer.get_config())
            tensors[op.outputs[0]] = new(tensors[src])
            info[op.outputs[0]] = dict(src_info)
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            raise _unsupported(layer, ": BatchNormalization must directly follow a conv/dense layer")
        if _is_relu(layer):
            raise _unsupported(layer, ": ReLU must follow a conv/dense layer (or its BatchNorm)")
        raise _unsupported(layer)

    outputs = keras.tree.map_structure(lambda t: tensors[_resolve(alias, id(t))], model.outputs)
    if len(new_inputs) == 1:
        new_inputs = new_inputs[0]
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    qmodel = keras.Model(new_inputs, outputs, name=f"{model.name}_quantized")
    for old, new in copies:
        new.set_weights(old.get_weights())
    return qmodel


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
