"""The conversion steps of `quantize_model`: one pattern and one replacement each.

A step has `matches(layer)` (does the pattern start at this layer?) and
`replace(conversion, op)` (emit the quantized layers into the new graph and
record what their output holds, see `keras_nna.quantization.conversion`).
`quantize_model` tries them in the order of `STEPS`:

| step | pattern | replacement |
| --- | --- | --- |
| `FoldRescaling` | `Rescaling(scale)` on the input | folded into the first layer's input scale |
| `FuseConvBatchNormReLU` | conv/dense → [BatchNorm] → [ReLU] | one `QuantizeWrapper` (ReLU codes, signed codes, or raw at a model output) |
| `QuantizeAdd` | `Add` of two code tensors → [ReLU] | one `QuantizedAdd` |
| `QuantizeAveragePooling` | (global) average pooling on ReLU codes | the quantized mean |
| `KeepZeroPadding` | `ZeroPadding2D` before a conv or max pooling | a float32 copy (the exporter folds it) |
| `KeepReshape` | a `Reshape` that does not move memory | a float32 copy |
| `CopyPassThrough` | `MaxPooling2D`, `Flatten`, `Dropout`, ... | a float32 copy |
| `RejectMisplaced` | a BatchNorm or ReLU nothing absorbed | an error |

Example:

>>> [step.__name__ for step in STEPS][:3]
['FoldRescaling', 'FuseConvBatchNormReLU', 'QuantizeAdd']
"""

import keras

from keras_nna.export.format import MAX_EXP_GAP
from keras_nna.quantization.add import QuantizedAdd
from keras_nna.quantization.conversion import float32_copy, unsupported
from keras_nna.quantization.layer_kinds import layer_kind, quantizable_kind
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.quantizers import step_exponent
from keras_nna.quantization.wrapper import QuantizeWrapper

__all__ = ["STEPS", "check_relu_cap"]

_CONV_KINDS = ("conv", "depthwise", "separable")


def check_relu_cap(relu, layer, policy):
    """ReLU(max_value) is allowed only when the cap is at or above the quantization range."""
    if relu is None or not isinstance(relu.layer, keras.layers.ReLU):
        return
    cap = relu.layer.get_config().get("max_value")
    if cap is None:
        return
    top = policy.activation_top(layer.name)
    if cap < top:
        raise unsupported(
            relu.layer,
            f": max_value={cap} is below the quantized range {top} of '{layer.name}' "
            "(activation_max); lower the policy's activation_max or remove the cap",
        )


def _fused_relu(conv, tensor_id):
    """The single-consumer ReLU op reading `tensor_id`, or `None`."""
    nxt = conv.single_consumer(tensor_id)
    return nxt if nxt is not None and layer_kind(nxt.layer) == "relu" else None


def _feeds_output(conv, tensor_id):
    """Whether `tensor_id` is a model output, possibly through Flatten/Reshape/Dropout/... only."""
    while tensor_id not in conv.output_ids:
        nxt = conv.single_consumer(tensor_id)
        if nxt is None or layer_kind(nxt.layer) not in ("passthrough", "flatten", "reshape"):
            return False
        tensor_id = nxt.outputs[0]
    return True


def _codes_info(info):
    return {"bits": info["bits"], "step": info["step"], "signed": info["signed"]}


def _check_not_raw_output(op, info):
    if info.get("raw"):
        raise unsupported(op.layer, ": its input is a raw float model output (a layer without ReLU "
                          "whose output is also a model output has no codes); add a ReLU to that "
                          "layer or make another layer the model output")


class FoldRescaling:
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
            raise unsupported(layer, ": Rescaling is only supported right after the input")
        if cfg.get("offset", 0.0) not in (0, 0.0):
            raise unsupported(
                layer, f": offset={cfg['offset']} (the accelerator takes uint8 pixels; use "
                "Rescaling(scale) with offset 0 and let the network learn the bias)"
            )
        scale = cfg["scale"]
        if not isinstance(scale, (int, float)):
            raise unsupported(layer, ": per-channel scale (use a single float)")
        conv.emit(op.outputs[0], conv.tensors[src],
                  {"raw_input": True, "scale": src_info["scale"] * float(scale)})


class FuseConvBatchNormReLU:
    """Conv/Depthwise/Separable/Dense → [BatchNormalization] → [ReLU]: one `QuantizeWrapper`.

    Without ReLU the output is signed codes, unless it is a model output (raw).
    """

    @staticmethod
    def matches(layer):
        return quantizable_kind(layer) is not None

    @staticmethod
    def _chain(conv, op):
        """The BatchNorm and ReLU ops fused after `op` (or `None`) and the chain's output id."""
        chain_out, bn = op.outputs[0], None
        nxt = conv.single_consumer(chain_out)
        if nxt is not None and layer_kind(nxt.layer) == "batchnorm":
            bn, chain_out = nxt, nxt.outputs[0]
        relu = _fused_relu(conv, chain_out)
        if relu is not None:
            chain_out = relu.outputs[0]
        conv.absorbed.update(id(fused) for fused in (bn, relu) if fused is not None)
        return bn, relu, chain_out

    @classmethod
    def replace(cls, conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        _check_not_raw_output(op, src_info)
        bn, relu, chain_out = cls._chain(conv, op)
        check_relu_cap(relu, layer, conv.policy)
        inner_cfg = layer.get_config()
        if bn is not None and inner_cfg.get("activation") == "relu":
            raise unsupported(layer, ": it applies ReLU before its BatchNormalization (keras_nna "
                              "fuses conv → BatchNorm → ReLU); build it with activation=None and "
                              "put a ReLU after the BatchNormalization")
        activation = "relu" if relu is not None or inner_cfg.get("activation") == "relu" else None
        signed = activation is None and not _feeds_output(conv, chain_out)
        # Activity regularization (sparsity) moves onto the quantized output.
        regularizer = relu.layer.activity_regularizer if relu is not None else None
        if regularizer is None and activation:
            regularizer = layer.activity_regularizer
        inner_cfg["activation"] = "linear"
        inner_cfg["activity_regularizer"] = None
        inner = type(layer).from_config(inner_cfg)
        new_bn = None if bn is None else type(bn.layer).from_config(bn.layer.get_config())
        wrapper = QuantizeWrapper(
            inner, policy=conv.policy, batch_norm=new_bn, activation=activation,
            first_layer=bool(src_info.get("raw_input")), input_scale=src_info.get("scale", 1.0),
            signed=signed, activity_regularizer=regularizer, name=layer.name,
        )
        coded = wrapper.activation_step is not None
        info = ({"bits": wrapper.activation_bits, "step": wrapper.activation_step, "signed": signed}
                if coded else {"raw": True})
        conv.emit(chain_out, wrapper(conv.tensors[src]), info)
        conv.copies.append((layer, inner))
        if bn is not None:
            conv.copies.append((bn.layer, new_bn))


class QuantizeAdd:
    """`Add` of two same-shape code tensors → [ReLU]: one `QuantizedAdd` (ReLU fused)."""

    @staticmethod
    def matches(layer):
        return isinstance(layer, keras.layers.Add)

    @staticmethod
    def _check(conv, op):
        layer = op.layer
        if len(op.inputs) != 2:
            raise unsupported(layer, f": it adds {len(op.inputs)} tensors, expected exactly 2 "
                              "(chain two-input Adds instead, e.g. Add()([Add()([a, b]), c]))")
        shapes = [s[1:] for s in op.in_shapes]
        if shapes[0] != shapes[1]:
            raise unsupported(layer, f": its inputs have shapes {shapes[0]} and {shapes[1]}, "
                              "expected the same shape (Keras broadcasting is not supported); "
                              "make both branches produce the same shape")
        for tensor_id in op.inputs:
            info = conv.info.get(tensor_id, {})
            if "bits" not in info:
                what = "the model input (float pixels)" if info.get("raw_input") else \
                    "a raw float model output"
                raise unsupported(layer, f": one of its inputs is {what}, expected activation "
                                  "codes (the output of a quantized conv/dense layer or Add); put "
                                  "a conv layer on that branch")

    @classmethod
    def replace(cls, conv, op):
        layer = op.layer
        cls._check(conv, op)
        relu = _fused_relu(conv, op.outputs[0])
        check_relu_cap(relu, layer, conv.policy)
        spec = conv.policy.resolve(layer.name, signed=relu is None)
        regularizer = relu.layer.activity_regularizer if relu is not None else None
        _check_exponent_gaps(layer, [conv.info[t]["step"] for t in op.inputs],
                             spec["activation_step"])
        new = QuantizedAdd(spec["activation_bits"], spec["activation_step"], relu is not None,
                           name=layer.name, activity_regularizer=regularizer)
        out = relu.outputs[0] if relu is not None else op.outputs[0]
        if relu is not None:
            conv.absorbed.add(id(relu))
        conv.emit(out, new([conv.tensors[t] for t in op.inputs]),
                  {"bits": new.bits, "step": new.step, "signed": new.signed})


def _check_exponent_gaps(layer, in_steps, out_step):
    """The ADD's step exponents must be within `MAX_EXP_GAP` (docs/bytecode.md): checked now,
    not at export, so the policy can still be fixed."""
    fa, fb = (step_exponent(s) for s in in_steps)
    fo = step_exponent(out_step)
    if abs(fa - fb) > MAX_EXP_GAP or abs(max(fa, fb) - fo) > MAX_EXP_GAP:
        raise unsupported(layer, f": its input steps {in_steps[0]} and {in_steps[1]} and output "
                          f"step {out_step} are more than 2^{MAX_EXP_GAP} apart (the accelerator "
                          f"aligns them with shifts of at most {MAX_EXP_GAP}); use closer "
                          "activation_max / activation bits for the layers around it in the policy")


def _check_unsigned_codes(layer, info):
    if "bits" not in info:
        raise unsupported(layer, ": its input is not a quantized ReLU activation")
    if info["signed"]:
        raise unsupported(layer, ": its input is signed codes (a conv/dense/Add without ReLU), "
                          "but pools take ReLU outputs; put a ReLU before the pooling layer")


class QuantizeAveragePooling:
    """`AveragePooling2D` / `GlobalAveragePooling2D` on a quantized ReLU: the quantized mean."""

    @staticmethod
    def matches(layer):
        return isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.AveragePooling2D))

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        _check_unsigned_codes(layer, src_info)
        cfg = layer.get_config()
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise unsupported(layer, ": data_format must be 'channels_last'")
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            new = QuantizedGlobalAveragePooling2D(
                bits=src_info["bits"], step=src_info["step"], keepdims=cfg.get("keepdims", False),
                name=layer.name, dtype="float32",
            )
        else:
            if cfg["padding"] != "valid":
                raise unsupported(layer, ": padding must be 'valid'")
            new = QuantizedAveragePooling2D(
                pool_size=cfg["pool_size"], strides=cfg["strides"], bits=src_info["bits"],
                step=src_info["step"], name=layer.name, dtype="float32",
            )
        conv.emit(op.outputs[0], new(conv.tensors[src]), _codes_info(src_info))


class KeepZeroPadding:
    """`ZeroPadding2D` feeding one conv or `MaxPooling2D`: kept (zero codes are real zeros)."""

    @staticmethod
    def matches(layer):
        return isinstance(layer, keras.layers.ZeroPadding2D)

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        _check_not_raw_output(op, src_info)
        if layer.get_config().get("data_format", "channels_last") != "channels_last":
            raise unsupported(layer, ": data_format must be 'channels_last'")
        users = conv.consumers.get(op.outputs[0], [])
        nxt = conv.single_consumer(op.outputs[0])
        if nxt is None or not (quantizable_kind(nxt.layer) in _CONV_KINDS
                               or isinstance(nxt.layer, keras.layers.MaxPooling2D)):
            fed = ", ".join(f"'{u.layer.name}' ({type(u.layer).__name__})" for u in users)
            raise unsupported(layer, f": it feeds {fed or 'no layer (a model output)'}, expected "
                              "exactly one Conv2D, DepthwiseConv2D, SeparableConv2D or MaxPooling2D "
                              "(the exporter folds the padding into that layer's pads); move the "
                              "padding right before such a layer")
        conv.emit(op.outputs[0], float32_copy(layer)(conv.tensors[src]), dict(src_info))


class KeepReshape:
    """A `Reshape` to a vector, or to (1, 1, n) from a vector or 1x1 map: a no-op on NHWC memory."""

    @staticmethod
    def matches(layer):
        return isinstance(layer, keras.layers.Reshape)

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        before, after = op.in_shapes[0][1:], op.out_shapes[0][1:]
        to_map = len(after) == 3 and after[:2] == (1, 1) and (len(before) == 1 or before[:2] == (1, 1))
        if len(after) != 1 and not to_map:
            raise unsupported(layer, f": it reshapes {before} to {after}, expected a reshape that "
                              "keeps the NHWC memory order (to a vector, or to (1, 1, n) from a "
                              "vector or a 1x1 map); use Flatten")
        conv.emit(op.outputs[0], float32_copy(layer)(conv.tensors[src]), dict(src_info))


class CopyPassThrough:
    """`MaxPooling2D`, `Flatten` and layers that compute nothing (`Dropout`, ...): copied."""

    @staticmethod
    def matches(layer):
        return (isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.Flatten))
                or layer_kind(layer) == "passthrough")

    @staticmethod
    def replace(conv, op):
        layer = op.layer
        src, src_info = conv.source(op)
        if isinstance(layer, keras.layers.MaxPooling2D):
            _check_unsigned_codes(layer, src_info)
        conv.emit(op.outputs[0], float32_copy(layer)(conv.tensors[src]), dict(src_info))


class RejectMisplaced:
    """A BatchNormalization or ReLU that no conv/dense layer or Add absorbed: an error."""

    @staticmethod
    def matches(layer):
        return layer_kind(layer) in ("batchnorm", "relu")

    @staticmethod
    def replace(conv, op):
        if layer_kind(op.layer) == "batchnorm":
            raise unsupported(op.layer, ": BatchNormalization must directly follow a conv/dense "
                              "layer (as its only consumer)")
        raise unsupported(op.layer, ": ReLU must directly follow a conv/dense layer, its "
                          "BatchNorm or an Add (as its only consumer)")


STEPS = (FoldRescaling, FuseConvBatchNormReLU, QuantizeAdd, QuantizeAveragePooling,
         KeepZeroPadding, KeepReshape, CopyPassThrough, RejectMisplaced)
"""The steps, in the order `quantize_model` tries them."""
