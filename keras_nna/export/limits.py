"""Program-wide limits and the edge-value rule, written once for Python.

Both readers hold a program to the same rules: this module for
`keras_nna.export.read_program`, `program_parse*.cc` for the C++ op (the
same numbers, defaults and formulas; `tests/runtime/test_op_limits.py` checks
they agree). `docs/bytecode.md` ("Program limits", "Output") states them.

- Limits (`DEFAULT_LIMITS`, raised per call for a trusted program):
  `max_work`, the worst-case operations of one image summed over the layers;
  `max_activation_bytes`, the largest working set of one layer (one image, one
  thread) plus the outputs held for a later consumer (`held_bytes`, 0 for a
  chain); `max_constant_bytes`, the decoded constants. `layer_costs` gives a
  layer's three numbers from its shapes alone, so a program is refused before
  any constant is decoded.
- Edge values: `input_scale` is a normal positive finite float32
  (`input_scale_error`), and every output code of the last layer,
  `q * 2^-out_exp`, is a normal finite float32 (`check_output_exp`).

Example:

>>> costs = [(10, 100, 0), (5, 300, 64)]
>>> check_limits(costs, {"max_activation_bytes": 200})
Traceback (most recent call last):
...
keras_nna.export.format.BytecodeError: Invalid program: program: peak activation bytes \
(layer 1) 300 exceeds the limit max_activation_bytes = 200 (docs/bytecode.md, "Program \
limits"). For a trusted program raise it, e.g. read_program(data, limits=\
{'max_activation_bytes': 300}) or Emulator(program, limits={'max_activation_bytes': 300}); \
work is per image: a batch costs N times as much
"""

import struct

import numpy as np

from keras_nna.export.format import KIND_NAMES, WEIGHTED, fail
from keras_nna.export.program import sources

__all__ = ["DEFAULT_LIMITS", "MAX_LAYER_WORK", "MAX_TENSOR_ELEMENTS", "accumulator_bounds",
           "check_bounds", "check_layer_size", "check_limits", "check_output_exp", "held_bytes",
           "in_max", "input_scale_error", "layer_costs", "resolve_limits"]

MAX_TENSOR_ELEMENTS = 1 << 28
"""Most elements of one activation or accumulator tensor (`kMaxTensorElements`, not raisable)."""

MAX_LAYER_WORK = 1 << 40
"""Most worst-case operations of one layer and image (`kMaxLayerWork`, not raisable)."""

DEFAULT_LIMITS = {"max_work": 1 << 35, "max_activation_bytes": 1 << 30,
                  "max_constant_bytes": 1 << 27}
"""Program-wide limits of both readers ("Program limits" in `docs/bytecode.md`; the C++
op's `KERAS_NNA_DEFAULT_MAX_*`): worst-case operations per image summed over layers, the
largest layer working set in bytes (one image, one thread), decoded constant bytes."""


def resolve_limits(limits=None):
    """Returns `DEFAULT_LIMITS` updated by `limits` (a dict of some of its keys, or None).

    Raises:
        ValueError: For an unknown key or a value that is not an integer >= 1.

    Example:

    >>> resolve_limits({"max_work": 10})["max_work"], resolve_limits()["max_constant_bytes"]
    (10, 134217728)
    """
    out = dict(DEFAULT_LIMITS)
    for key, value in dict(limits or {}).items():
        if key not in out:
            raise ValueError(f"Unknown limit {key!r}. Expected some of {sorted(out)}.")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Limit {key} must be an integer >= 1. Received: {value!r}.")
        out[key] = int(value)
    return out


def layer_costs(f):
    """`(work, activation_bytes, constant_bytes)` of one instruction (an `Instr` whose
    geometry is valid), the formulas of `SetCosts` in the C++ parser.

    Example:

    >>> from keras_nna.export.format import Instr
    >>> layer_costs(Instr(5, 8, 8, 0, 2, 2, 1, 1, 1, 1, 1, 1, 2, 2, *[0] * 14, 2, 2, 0, 0, 1, 0,
    ...                   b""))
    (9, 72, 0)
    """
    kind = KIND_NAMES[f.kind]
    in_elems, out_elems = f.in_h * f.in_w * f.in_c, f.out_h * f.out_w * f.out_c
    positions, taps = f.out_h * f.out_w, f.kh * f.kw
    weights = {"conv": taps * f.in_c * f.out_c, "depthwise": taps * f.in_c,
               "separable": taps * f.in_c + f.in_c * f.out_c,
               "dense": f.in_c * f.out_c}.get(kind, 0)
    macs = {"conv": positions * weights, "depthwise": positions * weights,
            "separable": positions * f.in_c * (taps + f.out_c), "dense": weights,
            "maxpool": out_elems * f.pool_h * f.pool_w, "avgpool": out_elems * f.pool_h * f.pool_w,
            "add": 2 * out_elems}
    mid = positions * f.in_c if kind == "separable" else 0
    padded = 0
    if kind in WEIGHTED:
        padded = ((f.in_h + f.pad_top + f.pad_bottom) * (f.in_w + f.pad_left + f.pad_right)
                  * -(-f.in_c // 4) * 4)
    constant = 2 * weights + 16 * f.out_c if kind in WEIGHTED else 0
    return (macs.get(kind, 0) + in_elems + out_elems, 18 * max(in_elems, out_elems, mid) + padded,
            constant)


def held_bytes(records):
    """HELD of "Program limits": Σ `out_elems` of every layer `j` read by a layer `k > j + 1`.

    Such an output outlives the two ping-pong buffers and is kept in its own
    buffer (one byte per code). A chain holds nothing.

    Args:
        records: The program's `LayerRecord`s (`src = None` is the previous layer).

    Returns:
        The held bytes (an int).

    Example:

    >>> from keras_nna.export.program import LayerRecord
    >>> conv = LayerRecord("conv", (2, 2, 1), (2, 2, 3), 8, 4)
    >>> add = LayerRecord("add", (2, 2, 3), (2, 2, 3), 4, 4, src2=1)
    >>> held_bytes([conv, conv, add]), held_bytes([conv, conv])
    (12, 0)
    """
    held = set()
    for k, pair in enumerate(sources(records)):
        for s in set(pair) if records[k].kind == "add" else {pair[0]}:
            if s >= 1 and k > s:  # producer j = s - 1, consumer k > j + 1
                held.add(s - 1)
    return sum(int(np.prod(records[j].out_shape)) for j in held)


def check_limits(costs, limits=None, held=0):
    """Holds a program's per-layer `layer_costs` (and its `held_bytes`) to
    `resolve_limits(limits)`.

    Raises:
        BytecodeError: Naming the limit, the program's value and how to raise it.
    """
    limits = resolve_limits(limits)
    peak = max(range(len(costs)), key=lambda i: costs[i][1])
    what = f"peak activation bytes (layer {peak})" + (
        f" with {held} bytes of held outputs" if held else "")
    values = (("max_work", "worst-case work per image (operations)", sum(c[0] for c in costs)),
              ("max_activation_bytes", what, costs[peak][1] + held),
              ("max_constant_bytes", "decoded constant bytes", sum(c[2] for c in costs)))
    for name, what, value in values:
        if value > limits[name]:
            fail("program", f"{what} {value} exceeds the limit {name} = {limits[name]} "
                            "(docs/bytecode.md, \"Program limits\"). For a trusted program raise "
                            f"it, e.g. read_program(data, limits={{'{name}': {value}}}) or "
                            f"Emulator(program, limits={{'{name}': {value}}}); work is per image: "
                            "a batch costs N times as much")


def input_scale_error(bits):
    """Why the float32 bits of `input_scale` are refused (None if a normal positive finite).

    Example:

    >>> input_scale_error(0x3F800000), input_scale_error(1) is not None
    (None, True)
    """
    exp = (bits >> 23) & 0xFF
    if bits >> 31 or exp in (0, 0xFF):
        value = struct.unpack("<f", struct.pack("<I", bits))[0]
        return (f"input_scale {value} must be finite and > 0, a normal float32 of 1.18e-38 to "
                f"3.4e38 (bits {bits:#010x} received); re-export with a positive input scale")
    return None


def check_output_exp(out_bits, out_exp, where):
    """The edge-value rule of the last layer: `q * 2^-out_exp` is a normal finite float32
    for every code `q = 1 .. 2^out_bits - 1`, i.e. `out_bits - 128 <= out_exp <= 126`.

    Raises:
        BytecodeError: If a codes layer (`out_bits > 0`) breaks the rule.
    """
    if out_bits and not out_bits - 128 <= out_exp <= 126:
        fail(where, f"out_exp {out_exp} received, expected {out_bits - 128}..126 on the last "
                    f"layer (every output code q * 2^-out_exp must be a normal finite float32 "
                    f"for out_bits {out_bits})")


def check_layer_size(f, where):
    """The per-layer implementation limits of both readers (not raisable): every tensor
    (and SEPARABLE's depthwise intermediate) at most `MAX_TENSOR_ELEMENTS`, the layer's
    worst-case work at most `MAX_LAYER_WORK` operations per image.

    Raises:
        BytecodeError: Naming the size and the limit.
    """
    kind = KIND_NAMES[f.kind]
    out_elems, positions = f.out_h * f.out_w * f.out_c, f.out_h * f.out_w
    if out_elems > MAX_TENSOR_ELEMENTS or (kind == "separable"
                                           and positions * f.in_c > MAX_TENSOR_ELEMENTS):
        fail(where, f"output of {out_elems} elements exceeds this emulator's limit of "
                    f"{MAX_TENSOR_ELEMENTS}")
    work = layer_costs(f)[0] - f.in_h * f.in_w * f.in_c - out_elems
    if work > MAX_LAYER_WORK:
        fail(where, f"worst-case work of {work} operations per image exceeds this emulator's "
                    f"limit of {MAX_LAYER_WORK}")


def in_max(bits, signed):
    """Largest |input code|: `2^b - 1` (unsigned) or `2^(b-1)` (signed two's complement).

    Example:

    >>> in_max(8, False), in_max(8, True), in_max(4, True)
    (255, 128, 8)
    """
    return (1 << (bits - 1)) if signed else (1 << bits) - 1


def accumulator_bounds(rec):
    """Worst-case |accumulator| per output channel (and of the depthwise stage); the input
    codes' bound is `in_max(rec.in_bits, rec.in_signed)`."""
    top = in_max(rec.in_bits, bool(getattr(rec, "in_signed", False)))
    w = np.abs(rec.weights)
    if rec.kind == "conv":
        return top * w.sum(axis=(0, 1, 2)), 0
    if rec.kind == "depthwise":
        return top * w.sum(axis=(0, 1)), 0
    if rec.kind == "dense":
        return top * w.sum(axis=0), 0
    dw = top * w.sum(axis=(0, 1))
    return dw @ np.abs(rec.weights2), int(dw.max(initial=0))


def check_bounds(rec, where):
    """Refuses a layer whose worst-case accumulator needs int64 without `acc_wide`, or whose
    requantization `|acc|·|m| + |n|` reaches 2^53 (raw outputs convert to double exactly).

    Raises:
        BytecodeError: Naming the bound.
    """
    acc, mid = accumulator_bounds(rec)
    worst_acc = max(int(acc.max(initial=0)), mid)
    if worst_acc >= 1 << 31 and not rec.acc_wide:
        fail(where, f"accumulator bound {worst_acc} needs acc_wide=1")
    z = [int(a) * abs(int(m)) + abs(int(n)) for a, m, n in zip(acc, rec.m, rec.n)]
    if max(z, default=0) >= 1 << 53:
        fail(where, "worst-case requantization value reaches 2^53")
