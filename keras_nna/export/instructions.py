"""Validation of one instruction against the tensors it reads (`docs/bytecode.md`).

`parse_instr` checks every field of one 64-byte instruction except its
constants: the version-2 producer fields (`src`, `src2`), agreement with the
producers' shapes, bits and signedness, the output rules of its kind and the
window geometry. `read_constants` then decodes the layer's kernels and
requantization record and proves its worst-case bounds. `Value` describes a
tensor a layer may read: the input image (`Value.image`) or a layer's output.
`keras_nna.export.read_program` runs both over a whole program.

Example:

>>> from keras_nna.export.format import Instr, KINDS
>>> image = Value((2, 2, 1), 8, 0, False, True)
>>> add = Instr(KINDS["add"], 8, 4, 0, 2, 2, 1, 2, 2, 1, 1, 1, 1, 1, *[0] * 14, 0, 0, 0, 0,
...             0, 0, b"\\0\\0")
>>> rec, where = parse_instr(add, 0, 2, [image], last=True)
>>> where, rec.src, rec.src2, rec.out_shape
('layer 0 (add)', 0, 0, (2, 2, 1))
"""

import collections

import numpy as np

from keras_nna.export.codes import read_kernel
from keras_nna.export.format import (KIND_NAMES, KINDS, MAX_EXP_GAP, MIN_VERSION_W_BITS_1, POOL_RQ,
                                     POOLS, RQ_ENTRY, WEIGHTED)
from keras_nna.export.format import fail as _fail
from keras_nna.export.limits import check_bounds, check_layer_size, check_output_exp
from keras_nna.export.program import LayerRecord, conv_output_size

__all__ = ["MAX_EXP_GAP", "Value", "parse_instr", "read_constants", "value_name"]


Value = collections.namedtuple("Value", "shape bits exp signed image")
"""A tensor a layer reads: shape `(h, w, c)`, code bits, step exponent, signedness, and
whether it is the program input image (exponent 0, unsigned)."""


def value_name(src):
    """`"the input image"` for `src = 0`, else `"layer j"` (its producer, `j = src - 1`)."""
    return "the input image (src 0)" if src == 0 else f"layer {src - 1} (src {src})"


def _producers(f, i, version, kind, where):
    """`(src, src2)` after the version's rules for the producer fields."""
    if version == 1:
        if (f.out_signed, f.src, f.src2) != (0, 0, 0) or f.reserved != b"\0\0":
            _fail(where, "bytes 57..63 must be 0 in a version-1 program (received out_signed "
                         f"{f.out_signed}, src {f.src}, src2 {f.src2}, reserved "
                         f"{f.reserved.hex()}); re-export the model (this package writes version 3)")
        if kind == "add":
            _fail(where, "kind 8 (ADD) needs format version 2 (a version-1 program is a chain; "
                         "re-export the model)")
        return i, 0
    if f.reserved != b"\0\0":
        _fail(where, f"reserved bytes 62..63 {f.reserved.hex()} received, expected 0000")
    if f.src > i:
        _fail(where, f"src {f.src} received, expected 0..{i} (0 = the input image, j = the "
                     f"output of layer j-1, an earlier layer)")
    if kind == "add" and f.src2 > i:
        _fail(where, f"src2 {f.src2} received, expected 0..{i} (0 = the input image, j = the "
                     f"output of layer j-1, an earlier layer)")
    if kind != "add" and f.src2:
        _fail(where, f"src2 {f.src2} received, expected 0 (only ADD reads a second input)")
    if f.out_signed > 1:
        _fail(where, f"out_signed {f.out_signed} received, expected 0 or 1")
    return f.src, f.src2


def _check_input(f, where, a, src):
    """The instruction's input fields agree with its producer `a` (a `Value`)."""
    in_shape = (f.in_h, f.in_w, f.in_c)
    if in_shape != tuple(a.shape):
        _fail(where, f"input shape {in_shape} received, expected {tuple(a.shape)} (the output "
                     f"of {value_name(src)})")
    if f.in_bits != a.bits:
        _fail(where, f"in_bits {f.in_bits} received, expected {a.bits} (the out_bits of "
                     f"{value_name(src)})")


def _check_output(f, kind, where, a, last):
    """out_bits, out_signed and out_exp rules of the kind; `a` is the input `Value`."""
    weighted = kind in WEIGHTED
    if f.out_bits == 0:
        if not (weighted and last):
            _fail(where, "raw output (out_bits 0) is only allowed on a weighted last layer")
        if f.out_exp != 0 or f.out_signed:
            _fail(where, f"raw output must have out_exp 0 and out_signed 0 (received "
                         f"{f.out_exp}, {f.out_signed})")
    elif not 1 <= f.out_bits <= 8:
        _fail(where, f"out_bits {f.out_bits} outside 1..8")
    if f.out_signed and (weighted or kind == "add") and f.out_bits < 2:
        _fail(where, f"signed output with out_bits {f.out_bits} received, expected 2..8")
    if kind in POOLS:
        if a.signed:
            _fail(where, "pools take unsigned (ReLU) codes: its input is signed, expected "
                         "unsigned")
        if f.out_signed:
            _fail(where, "out_signed 1 received, expected 0 (pools output unsigned codes)")
    if kind == "flatten" and bool(f.out_signed) != a.signed:
        _fail(where, f"out_signed {f.out_signed} received, expected {int(a.signed)} (flatten "
                     "keeps its input's signedness)")
    if last:
        check_output_exp(f.out_bits, f.out_exp, where)
    if kind in POOLS + ("flatten",) and (
            f.out_bits != f.in_bits or (not a.image and f.out_exp != a.exp)):
        _fail(where, f"pools and flatten keep the input's bits and step: out_bits/out_exp "
                     f"{f.out_bits}/{f.out_exp} received, expected {f.in_bits}/{a.exp}")


def _check_add(f, where, a, b, src2):
    """ADD: second producer's shape, kernel-less geometry and the exponent bounds."""
    shape = (f.in_h, f.in_w, f.in_c)
    if tuple(b.shape) != shape:
        _fail(where, f"second input shape {tuple(b.shape)} (the output of {value_name(src2)}) "
                     f"!= first input shape {shape}; ADD adds tensors of the same shape")
    geometry = (f.kh, f.kw, f.stride_h, f.stride_w, *_pads(f))
    if geometry != (1, 1, 1, 1, 0, 0, 0, 0):
        _fail(where, f"kh, kw, strides, pads {geometry} received, expected (1, 1, 1, 1, 0, 0, "
                     "0, 0)")
    if (f.out_h, f.out_w, f.out_c) != shape:
        _fail(where, f"output shape {(f.out_h, f.out_w, f.out_c)} received, expected {shape} "
                     "(the input shape)")
    fa, fb, fo = a.exp, b.exp, f.out_exp
    if abs(fa - fb) > MAX_EXP_GAP:
        _fail(where, f"input exponents {fa} and {fb} differ by {abs(fa - fb)}, expected at most "
                     f"{MAX_EXP_GAP}")
    if abs(max(fa, fb) - fo) > MAX_EXP_GAP:
        _fail(where, f"out_exp {fo} received, expected {max(fa, fb) - MAX_EXP_GAP}.."
                     f"{max(fa, fb) + MAX_EXP_GAP} (within {MAX_EXP_GAP} of max(fa, fb) = "
                     f"{max(fa, fb)})")


def parse_instr(f, i, version, values, last):
    """Validates instruction `f` (an `Instr`), all but its constants.

    Args:
        f: The `Instr` of layer `i`.
        i: Its index.
        version: The program's format version (1, 2 or 3).
        values: `Value`s of the tensors produced so far: `values[0]` the input
            image, `values[j]` the output of layer `j - 1` (`j <= i`).
        last: Whether `f` is the program's last instruction.

    Returns:
        `(LayerRecord, where)`; the record's `src`, `src2`, `in_signed` and
        `out_signed` are set.

    Raises:
        BytecodeError: Naming the layer, what was received and what was expected.
    """
    kind = KIND_NAMES.get(f.kind)
    if kind is None:
        _fail(f"layer {i}", f"unknown kind {f.kind} (expected 1..{len(KINDS)})")
    where = f"layer {i} ({kind})"
    src, src2 = _producers(f, i, version, kind, where)
    a = values[src]
    _check_input(f, where, a, src)
    if f.acc_wide > 1:
        _fail(where, f"acc_wide {f.acc_wide} received, expected 0 or 1")
    out_shape = (f.out_h, f.out_w, f.out_c)
    if min(out_shape) < 1:
        _fail(where, f"output shape {out_shape} has a zero dimension")
    _check_output(f, kind, where, a, last)
    if kind == "add":
        _check_add(f, where, a, values[src2], src2)
    else:
        _SHAPE_CHECKS[kind](f, kind, where)
    if kind not in POOLS and (f.pool_h or f.pool_w):
        _fail(where, "pool window set on a non-pool layer")
    if kind in POOLS and (f.kh, f.kw) != (1, 1):
        _fail(where, f"pools keep kh = kw = 1 (window in pool_h/pool_w), got {(f.kh, f.kw)}")
    if kind not in WEIGHTED and f.acc_wide:
        _fail(where, "acc_wide must be 0 for pools, flatten and add")
    if kind in WEIGHTED:
        _check_weight_bits(f, version, where)
    check_layer_size(f, where)
    rec = LayerRecord(kind, (f.in_h, f.in_w, f.in_c), out_shape, f.in_bits, f.out_bits,
                      f.out_exp, (f.kh, f.kw), (f.stride_h, f.stride_w), _pads(f),
                      (f.pool_h, f.pool_w), f.w_bits, f.w2_bits, acc_wide=bool(f.acc_wide),
                      name=f"{kind}_{i}", const_bytes=f.w_len + f.w2_len + f.rq_len, src=src,
                      src2=src2, out_signed=bool(f.out_signed), in_signed=a.signed)
    return rec, where


def _check_weight_bits(f, version, where):
    """`w_bits` (and `w2_bits` of a separable) in 1..8; 1 only from format version 3."""
    fields = (("w_bits", f.w_bits),) + ((("w2_bits", f.w2_bits),)
                                        if KIND_NAMES[f.kind] == "separable" else ())
    for name, bits in fields:
        if not 1 <= bits <= 8:
            _fail(where, f"{name} {bits} received, expected 1..8 (1 needs format version "
                         f"{MIN_VERSION_W_BITS_1})")
        if bits == 1 and version < MIN_VERSION_W_BITS_1:
            _fail(where, f"{name} 1 needs format version {MIN_VERSION_W_BITS_1} (received a "
                         f"version-{version} program, whose kernels have 2..8 bits); re-export "
                         "the model")


def _pads(f):
    return (f.pad_top, f.pad_left, f.pad_bottom, f.pad_right)


def _check_dense_shape(f, kind, where):
    geometry = (f.in_h, f.in_w, f.out_h, f.out_w, f.kh, f.kw, f.stride_h, f.stride_w, *_pads(f))
    if geometry != (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0):
        _fail(where, "dense needs 1x1 input/output, 1x1 kernel, stride 1, no padding")


def _check_flatten_shape(f, kind, where):
    size = f.in_h * f.in_w * f.in_c
    if ((f.out_h, f.out_w, f.out_c) != (1, 1, size) or (f.kh, f.kw, f.stride_h, f.stride_w)
            != (1, 1, 1, 1) or any(_pads(f))):
        _fail(where, f"flatten output must be (1, 1, {size}) with unit kernel/stride")


def _check_window_shape(f, kind, where):
    """Conv kinds and pools: window, strides, padding and the output shape they imply."""
    weighted = kind in WEIGHTED
    win = (f.kh, f.kw) if weighted else (f.pool_h, f.pool_w)
    pt, pl, pb, pr = _pads(f)
    if weighted and not (1 <= f.kh <= 15 and 1 <= f.kw <= 15):
        _fail(where, f"kernel {f.kh}x{f.kw} outside 1..15")
    if not weighted and not (1 <= f.pool_h <= 4096 and 1 <= f.pool_w <= 4096):
        _fail(where, f"pool window {f.pool_h}x{f.pool_w} outside 1..4096")
    if not (1 <= f.stride_h <= 15 and 1 <= f.stride_w <= 15):
        _fail(where, f"strides {(f.stride_h, f.stride_w)} outside 1..15")
    if pt >= win[0] or pb >= win[0] or pl >= win[1] or pr >= win[1]:
        _fail(where, f"padding {(pt, pl, pb, pr)} not smaller than the window {win}")
    if kind == "avgpool" and any((pt, pl, pb, pr)):
        _fail(where, "average pooling must not be padded")
    if f.in_h + pt + pb < win[0] or f.in_w + pl + pr < win[1]:
        _fail(where, f"window {win} larger than the padded input")
    eh = conv_output_size(f.in_h, win[0], f.stride_h, pt, pb)
    ew = conv_output_size(f.in_w, win[1], f.stride_w, pl, pr)
    ec = f.out_c if kind in ("conv", "separable") else f.in_c
    if (f.out_h, f.out_w, f.out_c) != (eh, ew, ec):
        _fail(where, f"output shape {(f.out_h, f.out_w, f.out_c)}, expected {(eh, ew, ec)}")


_SHAPE_CHECKS = {"conv": _check_window_shape, "depthwise": _check_window_shape,
                 "separable": _check_window_shape, "dense": _check_dense_shape,
                 "maxpool": _check_window_shape, "avgpool": _check_window_shape,
                 "flatten": _check_flatten_shape}

_KERNEL_SHAPES = {
    "conv": lambda f: (f.kh, f.kw, f.in_c, f.out_c),
    "depthwise": lambda f: (f.kh, f.kw, f.in_c),
    "separable": lambda f: (f.kh, f.kw, f.in_c),
    "dense": lambda f: (f.in_c, f.out_c),
}


def _read_weighted(rec, f, pool, where):
    """Kernels (two for separable) and the per-channel requantization record."""
    shape = _KERNEL_SHAPES[rec.kind](f)
    codes = read_kernel(pool, where + " kernel", f.w_off, f.w_len, f.w_enc, f.w_bits,
                        int(np.prod(shape)))
    rec.weights = codes.reshape(shape)
    if rec.kind == "separable":
        codes2 = read_kernel(pool, where + " pointwise", f.w2_off, f.w2_len, f.w2_enc, f.w2_bits,
                             f.in_c * f.out_c)
        rec.weights2 = codes2.reshape(f.in_c, f.out_c)
    elif (f.w2_bits, f.w2_enc, f.w2_off, f.w2_len) != (0, 0, 0, 0):
        _fail(where, "second kernel fields must be 0")
    oc = f.out_c
    if f.rq_len != RQ_ENTRY.size * oc or f.rq_off + f.rq_len > len(pool):
        _fail(where, f"requantization record ({f.rq_off}, {f.rq_len}) must be "
                     f"{RQ_ENTRY.size * oc} bytes inside the pool")
    entries = [RQ_ENTRY.unpack_from(pool, f.rq_off + RQ_ENTRY.size * c) for c in range(oc)]
    rec.m, rec.n, rec.sh = (np.array(v, np.int64) for v in zip(*entries))
    if np.any(rec.sh < 1) or np.any(rec.sh > 62):
        _fail(where, "requantization shift outside 1..62")
    check_bounds(rec, where)


def _check_no_kernels(f, where):
    if (f.w_bits, f.w2_bits, f.w_enc, f.w2_enc, f.w_off, f.w_len, f.w2_off, f.w2_len) != (0,) * 8:
        _fail(where, "kernel fields must be 0 for pools, flatten and add")


def _read_avgpool(rec, f, pool, where):
    """The average pool's `(m, sh)` record."""
    _check_no_kernels(f, where)
    if f.rq_len != POOL_RQ.size or f.rq_off + f.rq_len > len(pool):
        _fail(where, f"average-pool record must be {POOL_RQ.size} bytes inside the pool")
    m, s = POOL_RQ.unpack_from(pool, f.rq_off)
    worst = f.pool_h * f.pool_w * ((1 << f.in_bits) - 1) * m
    if not 1 <= s <= 40 or worst + (1 << (s - 1)) >= 1 << 62:
        _fail(where, f"average-pool multiplier {m} / shift {s} out of range")
    rec.m, rec.sh = np.array([m], np.int64), np.array([s], np.int64)


def _read_no_constants(rec, f, pool, where):
    """Max pools, flatten and add: every constant field is 0."""
    _check_no_kernels(f, where)
    if (f.rq_off, f.rq_len) != (0, 0):
        _fail(where, "requantization fields must be 0")


_CONSTANT_READERS = {"conv": _read_weighted, "depthwise": _read_weighted,
                     "separable": _read_weighted, "dense": _read_weighted,
                     "maxpool": _read_no_constants, "avgpool": _read_avgpool,
                     "flatten": _read_no_constants, "add": _read_no_constants}
assert set(_CONSTANT_READERS) == set(KINDS) == set(_SHAPE_CHECKS) | {"add"}


def read_constants(rec, f, pool, where):
    """Decodes layer `rec`'s constants from `pool` (the bytes after the instructions)
    and proves its worst-case bounds (`keras_nna.export.limits.check_bounds`).

    Raises:
        BytecodeError: Naming `where` and the offending field.
    """
    _CONSTANT_READERS[rec.kind](rec, f, pool, where)
