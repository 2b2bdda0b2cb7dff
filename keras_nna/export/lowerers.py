"""One lowering function per Keras layer kind: a layer call to an instruction (or none).

`export_model` walks the quantized graph and, for every layer call, calls the
function `LOWERERS` holds for the layer's kind with the `Tensor`s it reads; the
function returns the `Tensor` the layer produces, emitting at most one
`LayerRecord` through the `Builder`. A `Tensor` is what the program knows
about a Keras tensor: its producer (`src`: 0 the image, `j` the output of
record `j - 1`), shape, code bits, step exponent, signedness and any
`ZeroPadding2D` pads still to fold into its consumer's padding.

Example:

>>> image = Tensor(0, (4, 4, 1), 8, 0, image=True)
>>> padded = lower_zeropad(keras.layers.ZeroPadding2D(1, name="pad"), [image], Builder())
>>> padded.pads, padded.shape
((1, 1, 1, 1), (4, 4, 1))
"""

import dataclasses

import keras
import numpy as np

from keras_nna.export.bytecode import accumulator_bounds
from keras_nna.export.format import MAX_EXP_GAP
from keras_nna.export.program import LayerRecord, same_padding
from keras_nna.export.refusals import ExportError, layer_error
from keras_nna.quantization.checks import check_not_keras_quantized
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.quantizers import reciprocal_multiplier, step_exponent

__all__ = ["Builder", "LOWERERS", "Tensor", "lower_zeropad", "no_instruction"]

_NO_PADS = (0, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A Keras tensor as the program sees it.

    Attributes:
        src: Producer: 0 = the input image, `j >= 1` = the output of record `j - 1`.
        shape: `(h, w, c)` of the producer's output (before pending pads).
        bits: Code bits (0: a raw float output).
        exp: Step exponent `f` (step `2^-f`).
        signed: Whether the codes are signed.
        image: Whether it is the input image (or a Flatten of it).
        pads: `ZeroPadding2D` pads `(top, left, bottom, right)` not yet folded.
        pad_layer: The `ZeroPadding2D` layer that set `pads` (for messages).
    """

    src: int
    shape: tuple
    bits: int
    exp: int
    signed: bool = False
    image: bool = False
    pads: tuple = _NO_PADS
    pad_layer: object = None


class Builder:
    """The records emitted so far, the Keras layer of each, and the input scale."""

    def __init__(self):
        self.records, self.owners, self.input_scale = [], [], None

    def emit(self, rec, layer, image=False):
        """Appends `rec` (its `src` set by the caller) and returns the `Tensor` it produces."""
        self.records.append(rec)
        self.owners.append(layer)
        return Tensor(len(self.records), tuple(rec.out_shape), rec.out_bits, rec.out_exp,
                      bool(rec.out_signed), image)


def _no_instruction(layer, ins=None, builder=None):
    raise layer_error(layer, "this layer has no accelerator instruction",
                      "Quantize the float model with keras_nna.quantization.quantize_model "
                      "first; supported after quantization: QuantizeWrapper, QuantizedAdd, "
                      "MaxPooling2D, QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D, "
                      "ZeroPadding2D, Flatten, Reshape, Dropout.")


def _one_input(layer, ins, pads_ok=False, raw_ok=False):
    """The single input `Tensor` of `layer`; refuses raw inputs (unless `raw_ok`: a layer
    that emits nothing) and unfoldable pads."""
    if len(ins) != 1:
        raise layer_error(layer, f"it reads {len(ins)} tensors, expected 1",
                          "Merge branches with Add only.")
    t = ins[0]
    if t.bits == 0 and not t.image and not raw_ok:
        raise layer_error(layer, "it follows a layer without quantized ReLU output (a raw "
                          "float output)", "Only the last layer may produce raw values; add "
                          "BatchNorm+ReLU, or quantize_model a linear block to signed codes.")
    if any(t.pads) and not pads_ok:
        raise layer_error(layer, f"it reads the output of ZeroPadding2D '{t.pad_layer.name}', "
                          "which folds only into a convolution or MaxPooling2D",
                          "Move the ZeroPadding2D directly before a conv or max-pooling layer.")
    return t


def _spatial(layer, t, kernel, strides, padding):
    """Output size and total pads of a window over `t` (its pending pads included)."""
    zt, zl, zb, zr = t.pads
    h, w = t.shape[0] + zt + zb, t.shape[1] + zl + zr
    if padding == "same":
        oh, pt, pb = same_padding(h, kernel[0], strides[0])
        ow, pl, pr = same_padding(w, kernel[1], strides[1])
    elif padding == "valid":
        oh, ow = (h - kernel[0]) // strides[0] + 1, (w - kernel[1]) // strides[1] + 1
        pt = pb = pl = pr = 0
    else:
        raise layer_error(layer, f"padding {padding!r} is not supported", "Use 'same' or 'valid'.")
    if oh < 1 or ow < 1:
        raise layer_error(layer, f"window {kernel} is larger than its input {(h, w)}")
    pads = (pt + zt, pl + zl, pb + zb, pr + zr)
    if any(t.pads) and (max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]):
        raise ExportError(
            f"Cannot export layer '{t.pad_layer.name}' (ZeroPadding2D) into layer '{layer.name}': "
            f"the total padding (top, left, bottom, right) {pads} must be smaller than the "
            f"window {tuple(kernel)} on every side. Fix: pad less (at most window - 1 per side), "
            "or use padding='same' on the consumer.")
    return (oh, ow), pads


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
        raise layer_error(layer, "a requantization multiplier is too small to represent (shift > "
                          "62)", "Check for dead channels with huge BatchNorm variance.")
    if np.any(np.abs(m) >= 1 << 31):
        raise layer_error(layer, "a requantization multiplier does not fit 32 bits")
    rec.m, rec.n, rec.sh = m, n, sh
    acc, mid = accumulator_bounds(rec)
    rec.acc_wide = bool(max(int(acc.max(initial=0)), mid) >= 1 << 31)
    worst = max((int(a) * abs(int(mm)) + abs(int(nn)) for a, mm, nn in zip(acc, m, n)), default=0)
    if worst >= 1 << 53:
        raise layer_error(layer, f"the worst-case requantization value {worst} exceeds 2^53",
                          "Use fewer weight/activation bits for this layer.")


def _wrapper_record(layer, t):
    """The conv / depthwise / separable / dense record of a `QuantizeWrapper` reading `t`."""
    s = layer.integer_summary()
    inner, kind, shape = layer.layer, s["kind"], t.shape
    rec = LayerRecord(kind=kind, in_shape=shape, out_shape=None, in_bits=t.bits, out_bits=0,
                      w_bits=s["weight_bits"], name=layer.name, src=t.src, in_signed=t.signed)
    if kind == "dense":
        if shape[0] != 1 or shape[1] != 1:
            raise layer_error(layer, f"Dense receives a {shape} map", "Add Flatten or "
                              "GlobalAveragePooling2D before the Dense layer.")
        rec.weights = s["kernel"]
        rec.out_shape = (1, 1, rec.weights.shape[1])
    else:
        kernel = tuple(inner.kernel_size)
        (oh, ow), rec.pads = _spatial(layer, t, kernel, tuple(inner.strides), inner.padding)
        rec.kernel_size, rec.strides = kernel, tuple(inner.strides)
        rec.weights = s["kernel"] if kind == "conv" else s["kernel"][..., 0]
        if kind == "separable":
            rec.weights2, rec.w2_bits = s["kernel2"][0, 0], s["weight_bits"]
        last = rec.weights2 if kind == "separable" else rec.weights
        rec.out_shape = (oh, ow, shape[2] if kind == "depthwise" else last.shape[-1])
    _set_requantization(layer, rec, s, t.exp)
    if s["activation_bits"]:
        rec.out_bits = s["activation_bits"]
        rec.out_exp = step_exponent(s["activation_step"])
        rec.out_signed = bool(s.get("signed", False))
    return rec


def lower_quantized(layer, ins, builder):
    """A `QuantizeWrapper`: conv / depthwise / separable / dense instruction."""
    try:
        check_not_keras_quantized(layer.layer, layer.name)
    except ValueError as err:
        raise ExportError(str(err)) from err
    t = _one_input(layer, ins, pads_ok=layer.integer_summary()["kind"] != "dense")
    if layer.first_layer != t.image:
        where = "reads the input image" if t.image else "does not read the input image"
        raise layer_error(layer, f"first_layer={layer.first_layer} but it {where}",
                          "Re-run quantize_model on the float model.")
    if layer.first_layer and builder.input_scale is None:
        builder.input_scale = layer.input_scale
    return builder.emit(_wrapper_record(layer, t), layer)


def _unsigned_codes(layer, t):
    if t.image:
        raise layer_error(layer, "pooling cannot read the raw input image",
                          "Start the model with a conv or dense layer.")
    if t.signed:
        raise layer_error(layer, "its input holds signed codes (a block without ReLU); pools "
                          "take ReLU outputs", "Add a ReLU before the pooling layer.")


def _single_window_strides(t, pool, strides, out_hw, pads):
    """Strides of an axis with one output position do not matter: the smallest equivalent one.

    ResNet-8's head averages a 24x24 map with stride 24 (the format holds 1..15). With the
    explicit pads of the instruction, stride `padded size - window + 1` gives the same single
    window (`out = (padded - k) // s + 1 = 1`).
    """
    padded = (t.shape[0] + pads[0] + pads[2], t.shape[1] + pads[1] + pads[3])
    return tuple(s if o != 1 else min(s, n - k + 1)
                 for s, o, n, k in zip(strides, out_hw, padded, pool))


def lower_maxpool(layer, ins, builder):
    if not isinstance(layer, keras.layers.MaxPooling2D):
        _no_instruction(layer)
    t = _one_input(layer, ins, pads_ok=True)
    _unsigned_codes(layer, t)
    cfg = layer.get_config()
    pool, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
    (oh, ow), pads = _spatial(layer, t, pool, strides, cfg["padding"])
    strides = _single_window_strides(t, pool, strides, (oh, ow), pads)
    return builder.emit(LayerRecord("maxpool", t.shape, (oh, ow, t.shape[2]), t.bits, t.bits,
                                    t.exp, pool=pool, strides=strides, pads=pads,
                                    name=layer.name, src=t.src), layer)


def lower_avgpool(layer, ins, builder):
    """A quantized (global) average pooling; Keras' float ones have no instruction."""
    if not isinstance(layer, (QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D)):
        _no_instruction(layer)
    t = _one_input(layer, ins)
    _unsigned_codes(layer, t)
    if (layer.bits, step_exponent(layer.step)) != (t.bits, t.exp):
        raise layer_error(layer, f"its bits/step ({layer.bits}, {layer.step}) differ from its "
                          f"input's ({t.bits}, {2.0 ** -t.exp})", "Re-run quantize_model.")
    if isinstance(layer, QuantizedGlobalAveragePooling2D):
        pool, strides = t.shape[:2], (1, 1)
    else:
        pool, strides = layer.pool_size, layer.strides
    (oh, ow), pads = _spatial(layer, t, pool, strides, "valid")
    strides = _single_window_strides(t, pool, strides, (oh, ow), pads)
    m, s = reciprocal_multiplier(pool[0] * pool[1])
    return builder.emit(LayerRecord("avgpool", t.shape, (oh, ow, t.shape[2]), t.bits, t.bits,
                                    t.exp, pool=pool, strides=strides, m=np.array([m]),
                                    sh=np.array([s]), name=layer.name, src=t.src), layer)


def lower_flatten(layer, ins, builder):
    """Flatten of a 1x1 map computes nothing (no instruction)."""
    t = _one_input(layer, ins, raw_ok=True)
    if t.shape[0] == 1 and t.shape[1] == 1:
        return t
    t = _one_input(layer, ins)  # a FLATTEN instruction reads codes
    rec = LayerRecord("flatten", t.shape, (1, 1, int(np.prod(t.shape))), t.bits, t.bits, t.exp,
                      name=layer.name, src=t.src, out_signed=t.signed, in_signed=t.signed)
    return builder.emit(rec, layer, image=t.image)


def lower_reshape(layer, ins, builder):
    """A `Reshape` that is a no-op on NHWC memory: to a vector (a Flatten) or to (1, 1, n)."""
    t = _one_input(layer, ins, raw_ok=True)
    target = tuple(layer.get_config()["target_shape"])
    if len(target) == 1:
        return lower_flatten(layer, ins, builder)
    if target[:2] == (1, 1) and len(target) == 3 and t.shape[:2] == (1, 1):
        return t
    raise layer_error(layer, f"Reshape from {t.shape} to {target} moves data",
                      "Only a Reshape to a vector or from a vector to (1, 1, n) is supported; "
                      "use Flatten.")


def lower_zeropad(layer, ins, builder):
    """`ZeroPadding2D`: pads kept on the tensor, folded into the consumer's padding."""
    if not isinstance(layer, keras.layers.ZeroPadding2D):
        _no_instruction(layer)
    t = _one_input(layer, ins, pads_ok=True)
    (top, bottom), (left, right) = layer.get_config()["padding"]
    pads = tuple(a + b for a, b in zip(t.pads, (top, left, bottom, right)))
    return dataclasses.replace(t, pads=pads, pad_layer=layer)


def lower_passthrough(layer, ins, builder):
    """Dropout, Identity, Activation("linear"): no instruction."""
    return _one_input(layer, ins, pads_ok=True, raw_ok=True)


def lower_add(layer, ins, builder):
    """`QuantizedAdd` -> ADD; Keras' float `Add` has no instruction."""
    if not all(hasattr(layer, a) for a in ("bits", "step", "relu")):
        _no_instruction(layer)
    if len(ins) != 2:
        raise layer_error(layer, f"it adds {len(ins)} tensors, expected 2",
                          "Re-run quantize_model (it adds two tensors per Add).")
    a, b = (_one_input(layer, [t]) for t in ins)
    if a.shape != b.shape:
        raise layer_error(layer, f"its inputs have shapes {a.shape} and {b.shape}, expected equal")
    fo = step_exponent(layer.step)
    big = max(a.exp, b.exp)
    if abs(a.exp - b.exp) > MAX_EXP_GAP or abs(big - fo) > MAX_EXP_GAP:
        raise layer_error(layer, f"its input steps 2^-{a.exp}, 2^-{b.exp} and output step "
                          f"2^-{fo} are too far apart: exponent gaps |fa - fb| = "
                          f"{abs(a.exp - b.exp)} and |max(fa, fb) - fo| = {abs(big - fo)} "
                          f"received, expected at most {MAX_EXP_GAP}",
                          "Use closer activation_max values for the two branches and the Add.")
    rec = LayerRecord("add", a.shape, a.shape, a.bits, int(layer.bits), fo, name=layer.name,
                      src=a.src, src2=b.src, out_signed=not layer.relu, in_signed=a.signed)
    return builder.emit(rec, layer)


LOWERERS = {
    "quantized": lower_quantized,
    "maxpool": lower_maxpool,
    "avgpool": lower_avgpool,
    "global_avgpool": lower_avgpool,
    "flatten": lower_flatten,
    "reshape": lower_reshape,
    "padding": lower_zeropad,
    "passthrough": lower_passthrough,
    "add": lower_add,
}
"""Export kind (a `QuantizeWrapper` is `"quantized"`, else `layer_kind`) -> lowerer."""


def no_instruction(layer, ins, builder):
    """The lowerer of every other layer: an `ExportError` naming it."""
    _no_instruction(layer)
