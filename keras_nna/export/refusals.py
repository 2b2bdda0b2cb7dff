"""How export refuses: `ExportError`, and the re-read of every program it writes.

`export_model` serialises each program and re-reads it with the package's
own reader (`validated_bytes`), so it refuses exactly what `read_program`
and the emulator refuse; a refusal becomes an `ExportError` naming the Keras
layer of the failing instruction, what was received and the fix. `layer_error`
builds the errors of the lowering itself.

Example:

>>> print(layer_error(keras.layers.Dense(2, name="fc"), "it reads a 3x3 map",
...                   "Add Flatten before it."))
Cannot export layer 'fc' (Dense): it reads a 3x3 map. Add Flatten before it.
"""

import re
import struct

import keras  # noqa: F401  (doctest)

from keras_nna.export.bytecode import BytecodeError, read_program, write_program
from keras_nna.export.program import Program
from keras_nna.quantization.layer_kinds import unwrap

__all__ = ["ExportError", "layer_error", "validated_bytes"]


class ExportError(ValueError):
    """Raised when a model cannot be lowered to the accelerator."""


def layer_error(layer, why, fix=""):
    """The `ExportError` for Keras layer `layer`: `why` it cannot be exported and the `fix`."""
    return ExportError(f"Cannot export layer '{layer.name}' ({type(unwrap(layer)).__name__}): "
                       f"{why}." + (f" {fix}" if fix else ""))


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


def validated_bytes(model, program, owners, limits):
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
