"""export_model: lower a quantized Keras model to an integer `Program`.

The exporter walks a model produced by `quantize_model` (after `fit`),
asks each `QuantizeWrapper` for its integer kernel codes and fixed-point
requantization (the very tensors its inference path uses, so the program
reproduces `model.predict` bit for bit), tracks the bits and power-of-two
step of every activation, and emits one `LayerRecord` per accelerator
instruction. Each layer is lowered by the function `_LOWERERS` holds for its
kind (`keras_nna.quantization.layer_kinds`; a `QuantizeWrapper` is kind
`"quantized"`). Dropout, Identity and linear activations vanish; BatchNorm and
ReLU are already folded into the wrappers. Finally the program is serialised
and re-read with the package's own reader, so export refuses exactly what
`read_program` and the emulator refuse, naming the Keras layer at fault.

Example:

>>> import numpy as np
>>> from keras_nna.quantization import quantize_model
>>> inputs = keras.Input((6, 6, 1))
>>> x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
>>> x = keras.layers.Flatten()(x)
>>> qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))
>>> program = export_model(qmodel)
>>> [layer.kind for layer in program.layers]
['conv', 'flatten', 'dense']
"""

import math
import re
import struct

import keras
import numpy as np

from keras_nna.export.bytecode import BytecodeError, accumulator_bounds, read_program, write_program
from keras_nna.export.program import LayerRecord, Program, same_padding
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.checks import check_not_keras_quantized
from keras_nna.quantization.layer_kinds import keras3_type_error, layer_kind, unwrap
from keras_nna.quantization.quantizers import reciprocal_multiplier
from keras_nna.quantization.wrapper import is_quantize_wrapper

__all__ = ["export_model", "ExportError"]


class ExportError(ValueError):
    """Raised when a model cannot be lowered to the accelerator."""


def _err(layer, why, fix=""):
    return ExportError(
        f"Cannot export layer '{layer.name}' ({type(layer).__name__}): {why}." + (f" {fix}" if fix else "")
    )


def _spatial(layer, shape, kernel, strides, padding):
    h, w, _ = shape
    if padding == "same":
        oh, pt, pb = same_padding(h, kernel[0], strides[0])
        ow, pl, pr = same_padding(w, kernel[1], strides[1])
    elif padding == "valid":
        oh = (h - kernel[0]) // strides[0] + 1
        ow = (w - kernel[1]) // strides[1] + 1
        pt = pb = pl = pr = 0
    else:
        raise _err(layer, f"padding {padding!r} is not supported", "Use 'same' or 'valid'.")
    if oh < 1 or ow < 1:
        raise _err(layer, f"window {kernel} is larger than its input {shape[:2]}")
    return (oh, ow), (pt, pl, pb, pr)


def _lower_wrapper(layer, shape, bits, f_in):
    s = layer.integer_summary()
    inner = layer.layer
    kind = s["kind"]
    rec = LayerRecord(kind=kind, in_shape=shape, out_shape=None, in_bits=bits, out_bits=0,
                      w_bits=s["weight_bits"], name=layer.name)
    if kind == "dense":
        if shape[0] != 1 or shape[1] != 1:
            raise _err(layer, f"Dense receives a {shape} map", "Add Flatten or "
                       "GlobalAveragePooling2D before the Dense layer.")
        rec.weights = s["kernel"]
        out_c = rec.weights.shape[1]
        rec.out_shape = (1, 1, out_c)
    else:
        kernel = tuple(inner.kernel_size)
        (oh, ow), rec.pads = _spatial(layer, shape, kernel, tuple(inner.strides), inner.padding)
        rec.kernel_size, rec.strides = kernel, tuple(inner.strides)
        if kind == "conv":
            rec.weights = s["kernel"]
        else:
            rec.weights = s["kernel"][..., 0]
        if kind == "separable":
            rec.weights2 = s["kernel2"][0, 0]
            rec.w2_bits = s["weight_bits"]
        out_c = shape[2] if kind == "depthwise" else (rec.weights2 if kind == "separable" else rec.weights).shape[-1]
        rec.out_shape = (oh, ow, out_c)
    _set_requantization(layer, rec, s, f_in)
    if s["activation_bits"]:
        rec.out_bits = s["activation_bits"]
        rec.out_exp = -int(round(math.log2(s["activation_step"])))
    return rec


def _set_requantization(layer, rec, s, f_in):
    """Integer multiplier, offset and shift of a wrapper's requantization, range-checked."""
    m, e, n = (np.asarray(v, np.int64) for v in (s["m"], s["e"], s["n"]))
    # z_real * 2^e = acc_int * m * 2^-f_in + n  ->  integers with shift sh.
    if f_in >= 0:
        n = n << f_in
        sh = e + f_in
    else:
        m = m << -f_in
        sh = e.copy()
    low = np.maximum(1 - sh, 0)
    m, n, sh = m << low, n << low, sh + low
    if np.any(sh > 62):
        raise _err(layer, "a requantization multiplier is too small to represent (shift > 62)",
                   "Check for dead channels with huge BatchNorm variance.")
    if np.any(np.abs(m) >= 1 << 31):
        raise _err(layer, "a requantization multiplier does not fit 32 bits")
    rec.m, rec.n, rec.sh = m, n, sh
    acc, mid = accumulator_bounds(rec)
    rec.acc_wide = bool(max(int(acc.max(initial=0)), mid) >= 1 << 31)
    worst = max((int(a) * abs(int(mm)) + abs(int(nn)) for a, mm, nn in zip(acc, m, n)), default=0)
    if worst >= 1 << 53:
        raise _err(layer, f"the worst-case requantization value {worst} exceeds 2^53",
                   "Use fewer weight/activation bits for this layer.")


class _Chain:
    """What the instructions lowered so far produce: the next instruction's input."""

    def __init__(self, in_shape):
        self.records = []
        self.owners = []  # the Keras layer that produced each record
        self.shape, self.bits, self.f_in = in_shape, 8, 0
        self.input_scale = 1.0

    def append(self, rec, layer):
        self.records.append(rec)
        self.owners.append(layer)
        self.shape, self.bits, self.f_in = rec.out_shape, rec.out_bits, rec.out_exp


def _no_instruction(layer, chain=None):
    raise _err(layer, "this layer has no accelerator instruction",
               "Quantize the float model with keras_nna.quantization.quantize_model first; "
               "supported after quantization: QuantizeWrapper, MaxPooling2D, "
               "QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D, Flatten, Dropout.")


def _lower_quantized(layer, chain):
    """A `QuantizeWrapper`: conv / depthwise / separable / dense instruction."""
    try:
        check_not_keras_quantized(layer.layer, layer.name)
    except ValueError as err:
        raise ExportError(str(err)) from err
    if layer.first_layer != (not any(r.kind != "flatten" for r in chain.records)):
        raise _err(layer, "first_layer flag does not match its position",
                   "Re-run quantize_model on the float model.")
    if layer.first_layer:
        chain.input_scale = layer.input_scale
    return _lower_wrapper(layer, chain.shape, chain.bits, chain.f_in)


def _lower_maxpool(layer, chain):
    if not isinstance(layer, keras.layers.MaxPooling2D):
        _no_instruction(layer)
    cfg = layer.get_config()
    pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
    (oh, ow), pads = _spatial(layer, chain.shape, pool, strides, cfg["padding"])
    return LayerRecord("maxpool", chain.shape, (oh, ow, chain.shape[2]), chain.bits, chain.bits,
                       chain.f_in, pool=pool, strides=strides, pads=pads, name=layer.name)


def _lower_avgpool(layer, chain):
    """A quantized (global) average pooling; Keras' float ones have no instruction."""
    if not isinstance(layer, (QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D)):
        _no_instruction(layer)
    shape, bits, f_in = chain.shape, chain.bits, chain.f_in
    if (layer.bits, -int(round(math.log2(layer.step)))) != (bits, f_in) or not chain.records:
        raise _err(layer, f"its bits/step ({layer.bits}, {layer.step}) differ from its "
                   f"input's ({bits}, {2.0 ** -f_in})", "Re-run quantize_model.")
    if isinstance(layer, QuantizedGlobalAveragePooling2D):
        pool, strides = shape[:2], (1, 1)
    else:
        pool, strides = layer.pool_size, layer.strides
    (oh, ow), pads = _spatial(layer, shape, pool, strides, "valid")
    m, s = reciprocal_multiplier(pool[0] * pool[1])
    return LayerRecord("avgpool", shape, (oh, ow, shape[2]), bits, bits, f_in, pool=pool,
                       strides=strides, m=np.array([m]), sh=np.array([s]), name=layer.name)


def _lower_flatten(layer, chain):
    """Flatten of a 1x1 map computes nothing (no instruction)."""
    shape = chain.shape
    if shape[0] == 1 and shape[1] == 1:
        return None
    return LayerRecord("flatten", shape, (1, 1, int(np.prod(shape))), chain.bits, chain.bits,
                       chain.f_in, name=layer.name)


def _lower_nothing(layer, chain):
    """Dropout, Identity, Activation("linear"): no instruction."""
    return None


# Export kind (see `_export_kind`) -> lowerer(layer, chain) returning a LayerRecord or None.
_LOWERERS = {
    "quantized": _lower_quantized,
    "maxpool": _lower_maxpool,
    "avgpool": _lower_avgpool,
    "global_avgpool": _lower_avgpool,
    "flatten": _lower_flatten,
    "passthrough": _lower_nothing,
}


def _export_kind(layer):
    return "quantized" if is_quantize_wrapper(layer) else layer_kind(layer)


def _input_shape(model):
    error = keras3_type_error(model, keras.Model, "export_model")
    if error is not None:
        raise ExportError(str(error))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("export_model expects a keras.Model with one input and one output.")
    in_shape = tuple(model.inputs[0].shape[1:])
    if len(in_shape) != 3 or None in in_shape:
        raise ExportError(
            f"The model input must be a fixed-size image (H, W, C); received {in_shape}. "
            "Build the model with keras.Input((H, W, C))."
        )
    return in_shape


def _check_output(model, records):
    if not records:
        raise ExportError("The model has no layer to export.")
    out_rank = len(model.outputs[0].shape)
    last = records[-1].out_shape
    if out_rank == 4 and last[0] == 1 and last[1] == 1:
        raise ExportError(
            "The model output is a 1x1 feature map; the program returns it as a vector. "
            "Add Flatten or GlobalAveragePooling2D at the end."
        )


def export_model(model, path=None, limits=None):
    """Lowers a quantized model to an integer program (and writes it).

    The program is serialised and re-read with the package's own reader
    (`read_program(write_program(program))`) before it is returned or
    written, so export refuses exactly what `read_program` and the emulator
    would refuse, naming the Keras layer of the failing instruction.

    Args:
        model: A model returned by `quantize_model` (trained or not): a chain
            from one uint8 image input to one output.
        path: Optional file path; the bytecode is written there.
        limits: Optional whole-program limits passed to `read_program`
            (`read_program(data, limits=limits)`), to export a trusted program
            larger than the defaults. Defaults to `None` (the reader's defaults).

    Returns:
        The `Program` (call `.to_bytes()` for the bytecode).

    Raises:
        ExportError: If `model` is not a Keras 3 model, a layer is not
            supported (also a layer that Keras' own `model.quantize` rewrote),
            the graph is not a chain, a value range exceeds what the
            accelerator represents, or the program's writer or reader refuses
            an instruction (e.g. a kernel larger than 15, a field wider than
            its bytes, an input beyond the header limits). The message names
            the layer and why.

    Example:

    >>> from keras_nna.quantization import quantize_model
    >>> inputs = keras.Input((4, 4, 1))
    >>> x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    >>> x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    >>> program = export_model(quantize_model(keras.Model(inputs, keras.layers.Dense(2)(x))))
    >>> [(layer.kind, layer.out_shape) for layer in program.layers]
    [('conv', (2, 2, 2)), ('avgpool', (1, 1, 2)), ('dense', (1, 1, 2))]
    """
    in_shape = _input_shape(model)
    chain = _Chain(in_shape)
    current = model.inputs[0]
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.input is not current:
            raise _err(layer, "the model is not a simple chain (it has a branch or merge)",
                       "Export supports sequential chains of layers.")
        current = layer.output
        if chain.records and chain.records[-1].out_bits == 0:
            raise _err(layer, "it follows a layer without quantized ReLU output",
                       "Only the last layer may produce raw (non-ReLU) values; add BatchNorm+ReLU.")
        rec = _LOWERERS.get(_export_kind(layer), _no_instruction)(layer, chain)
        if rec is None:
            continue
        if not chain.records and rec.kind in ("maxpool", "avgpool"):
            raise _err(layer, "pooling cannot read the raw input image",
                       "Start the model with a conv or dense layer.")
        chain.append(rec, layer)
    _check_output(model, chain.records)
    program = Program(in_shape, 8, chain.records, chain.input_scale)
    data = _validated_bytes(model, program, chain.owners, limits)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return program


_FIX = ("Fix: change this layer (kernel size, strides, padding, number of units or channels) or "
        "the model input so that every instruction stays within the limits of docs/bytecode.md.")
_WHERE = re.compile(r"^Invalid program: (?:layer (\d+) \([^)]*\)|([a-z ]+)): ")


def _write_failure(program):
    """Index of the first record `write_program` cannot encode (`None`: the header).

    A prefix fails once it holds a failing record, so a bisection over prefix
    lengths finds it with O(log n) writes.
    """
    def fails(end):
        try:
            write_program(Program(program.input_shape, program.input_bits, program.layers[:end],
                                  program.input_scale))
        except (BytecodeError, struct.error):
            return True
        return False

    if fails(0):
        return None
    lo, hi = 0, len(program.layers)  # fails(lo) is False, fails(hi) is True
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(mid) else (mid, hi)
    return hi - 1


_LIMITS_FIX = ("Fix: make the model smaller (input size, channels, layers) to fit the reader's "
               "whole-program limits (docs/bytecode.md, \"Program limits\"), or, for a program "
               "you trust, raise them with export_model(model, limits={...}).")


def _refusal(model, owners, index, reason, fix=_FIX):
    """The `ExportError` for a program the package's own writer or reader refuses."""
    if index is not None and 0 <= index < len(owners):
        layer = owners[index]
        return ExportError(f"Cannot export layer '{layer.name}' ({type(unwrap(layer)).__name__}, "
                           f"instruction {index}): {reason}. {fix}")
    if fix is _LIMITS_FIX:
        return ExportError(f"Cannot export model '{model.name}': {reason}. {fix}")
    shape = tuple(model.inputs[0].shape[1:])
    return ExportError(f"Cannot export the input layer of model '{model.name}' (shape {shape}): "
                       f"{reason}. Fix: resize the model input to fit the header limits of "
                       "docs/bytecode.md.")


def _validated_bytes(model, program, owners, limits):
    """Serialises `program` and re-reads it with the package's reader (one rule for every limit).

    A program the writer cannot encode or the reader refuses becomes an
    `ExportError` naming the Keras layer of the failing instruction.
    """
    try:
        data = write_program(program)
    except (BytecodeError, struct.error) as err:
        reason = str(err).split("does not fit the format: ")[-1]
        index = _write_failure(program)
        rec = program.layers[index] if index is not None else None
        what = (f"its instruction ({rec.kind}, in_shape {tuple(rec.in_shape)}, out_shape "
                f"{tuple(rec.out_shape)}) does not fit the bytecode fields" if rec is not None
                else "the program header does not fit the bytecode fields")
        raise _refusal(model, owners, index, f"{what} ({reason})") from err
    try:
        read_program(data) if limits is None else read_program(data, limits=limits)
    except BytecodeError as err:
        match = _WHERE.match(str(err))
        reason = str(err)[match.end():] if match else str(err)
        if match and match.group(1):
            index, fix = int(match.group(1)), _FIX
        elif match and match.group(2) == "header":
            index, fix = None, _FIX
        else:  # a whole-program limit; a per-layer one says "(layer i)"
            layer = re.search(r"\(layer (\d+)\)", reason)
            index, fix = (int(layer.group(1)) if layer else None), _LIMITS_FIX
        raise _refusal(model, owners, index, f"the program reader refuses it: {reason}",
                       fix) from err
    return data
