"""Bytecode writer and validating reader (format: `docs/bytecode.md`).

`write_program` turns a `Program` into bytes of format version 3: a 32-byte
header, 64-byte instructions (each naming its producers `src`/`src2`), a
constant pool (kernels bit-packed at their width, 1 to 8 bits, dense or
bitmap-sparse, whichever is smaller; 13-byte requantization entries) and a
CRC-32. `read_program` parses untrusted bytes of version 1 (a chain), 2 (a
DAG) or 3 (version 2 with 1-bit kernels allowed) back into a `Program` and
raises `BytecodeError` naming the offending field on anything wrong: no
length field is trusted. The per-instruction rules
live in `keras_nna.export.instructions`, the bit packing in
`keras_nna.export.codes`.

Example:

>>> import numpy as np
>>> from keras_nna.export.program import LayerRecord, Program
>>> rec = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=8,
...                   out_bits=0, w_bits=4, weights=np.array([[1, -7], [0, 0], [3, 2]]),
...                   m=np.array([16384, 16384]), n=np.array([0, 5]), sh=np.array([14, 14]))
>>> data = write_program(Program((1, 1, 3), 8, [rec]))
>>> len(data), read_program(data).layers[0].weights.tolist()
(129, [[1, -7], [0, 0], [3, 2]])
>>> data[4], read_program(data).layers[0].src
(3, 0)
"""

import struct

from keras_nna.export.codes import encode_kernel as _encode_kernel
from keras_nna.export.codes import pack_codes, unpack_codes  # noqa: F401  (importable here too)
from keras_nna.export.format import (  # noqa: F401  (MAX_LAYERS...: importable from here too)
    CRC, HEADER, INSTR, KIND_NAMES, KINDS, MAGIC, MAX_LAYERS, POOL_RQ, RQ_ENTRY, VERSION,
    WEIGHTED, BytecodeError, crc32, instruction, peek_header, program_bytes)
from keras_nna.export.format import HEADER_OFFSETS as _AT
from keras_nna.export.format import fail as _fail
from keras_nna.export.instructions import Value, parse_instr, read_constants
from keras_nna.export.limits import (  # noqa: F401  (accumulator_bounds: importable here too)
    MAX_TENSOR_ELEMENTS, accumulator_bounds, check_limits, held_bytes, input_scale_error,
    layer_costs, resolve_limits)
from keras_nna.export.program import Program, sources

__all__ = ["BytecodeError", "load_program", "write_program", "read_program", "pack_codes",
           "unpack_codes"]


def write_program(program):
    """Serialises a `Program` to bytes.

    Args:
        program: The `Program` to write.

    Returns:
        The bytecode as `bytes`.

    Raises:
        BytecodeError: If the program cannot be represented (e.g. a field
            does not fit its width).
    """
    pool = bytearray()
    instrs = []

    def put(blob):
        off = len(pool)
        pool.extend(blob)
        return off, len(blob)

    for rec, (src, src2) in zip(program.layers, sources(program.layers)):
        w = (0, 0, 0)
        w2 = (0, 0, 0)
        if rec.weights is not None:
            enc, blob = _encode_kernel(rec.weights, rec.w_bits)
            w = (enc, *put(blob))
        if rec.weights2 is not None:
            enc, blob = _encode_kernel(rec.weights2, rec.w2_bits)
            w2 = (enc, *put(blob))
        rq = (0, 0)
        if rec.kind in WEIGHTED:
            blob = b"".join(
                RQ_ENTRY.pack(int(m), int(n), int(s)) for m, n, s in zip(rec.m, rec.n, rec.sh)
            )
            rq = put(blob)
        elif rec.kind == "avgpool":
            rq = put(POOL_RQ.pack(int(rec.m[0]), int(rec.sh[0])))
        try:
            instrs.append(
                INSTR.pack(
                    KINDS[rec.kind], rec.in_bits, rec.out_bits, rec.out_exp,
                    *rec.in_shape, *rec.out_shape, *rec.kernel_size, *rec.strides, *rec.pads,
                    rec.w_bits, rec.w2_bits, w[0], w2[0], w[1], w[2], w2[1], w2[2], *rq,
                    *rec.pool, int(bool(rec.acc_wide)), int(bool(rec.out_signed)), src, src2,
                    b"\0" * 2,
                )
            )
        except struct.error as err:
            raise BytecodeError(f"Layer '{rec.name}' ({rec.kind}) does not fit the format: {err}")
    header = HEADER.pack(
        MAGIC, VERSION, len(program.layers), len(pool), *program.input_shape,
        program.input_bits, 0, float(program.input_scale), 0, 0,
    )
    body = header + b"".join(instrs) + bytes(pool)
    return body + CRC.pack(crc32(body))


def read_program(data, limits=None):
    """Parses and validates bytecode.

    The whole program is held to the program limits (`keras_nna.export.limits`,
    "Program limits" in `docs/bytecode.md`) from its shapes, before any
    constant is decoded.

    Args:
        data: `bytes` (or bytes-like) of a program.
        limits: Optional dict raising some of `DEFAULT_LIMITS` (`max_work`,
            `max_activation_bytes`, `max_constant_bytes`) for a trusted program.

    Returns:
        The `Program`.

    Raises:
        BytecodeError: If any field is invalid or a limit is exceeded; the
            message names it.
        ValueError: For an unknown limit or one that is not an integer >= 1.
    """
    data, limits = bytes(data), resolve_limits(limits)
    header = peek_header(data)
    if CRC.unpack_from(data, len(data) - CRC.size)[0] != crc32(data[:-CRC.size]):
        _fail("file", "CRC-32 mismatch (corrupted bytes)")
    ih, iw, ic, ibits = header.in_h, header.in_w, header.in_c, header.in_bits
    iscale = header.input_scale
    if not (1 <= ih <= 4096 and 1 <= iw <= 4096 and 1 <= ic <= 8192):
        _fail("header", f"input shape {(ih, iw, ic)} outside limits")
    if not 1 <= ibits <= 8 or header.flags or header.reserved0 or header.reserved1:
        _fail("header", f"in_bits {ibits} / flags {header.flags} / reserved fields invalid")
    scale_error = input_scale_error(struct.unpack_from("<I", data, _AT["input_scale"])[0])
    if scale_error:
        _fail("header", scale_error)
    if ih * iw * ic > MAX_TENSOR_ELEMENTS:
        _fail("header", f"input of {ih * iw * ic} elements exceeds {MAX_TENSOR_ELEMENTS}")
    pool = data[HEADER.size + INSTR.size * header.n_layers: -CRC.size]
    layers, costs = [], []
    values = [Value((ih, iw, ic), ibits, 0, False, True)]
    for i in range(header.n_layers):  # shapes first: limits are checked before decoding
        f = instruction(data, i)
        rec, where = parse_instr(f, i, header.version, values, i == header.n_layers - 1)
        layers.append((rec, f, where))
        costs.append(layer_costs(f))
        values.append(Value(rec.out_shape, rec.out_bits, rec.out_exp, rec.out_signed, False))
    records = [rec for rec, _, _ in layers]
    _check_consumed(records)
    check_limits(costs, limits, held_bytes(records))
    for rec, f, where in layers:
        read_constants(rec, f, pool, where)
    return Program((ih, iw, ic), ibits, records, float(iscale))


def _check_consumed(records):
    """Every layer but the last is read by a later layer (its `src` or `src2`)."""
    used = {s for rec in records for s in (rec.src, rec.src2 if rec.kind == "add" else None)}
    for j, rec in enumerate(records[:-1]):
        if j + 1 not in used:
            _fail(f"layer {j} ({rec.kind})", f"layer {j}'s output is never used (expected a "
                  f"later layer with src or src2 = {j + 1}; only the last layer is the output)")


def load_program(program, limits=None):
    """Returns a `Program` from bytecode, a path to a bytecode file, or a `Program`.

    Args:
        program: `bytes`-like bytecode, a path (`str` or `os.PathLike`), or a
            `Program` (returned as is).
        limits: Program limits for bytes (see `read_program`).

    Returns:
        The `Program` (validated when read from bytes).

    Raises:
        BytecodeError: If the bytes are not a valid program.
        FileNotFoundError / IsADirectoryError: For a bad path.
        TypeError: For any other type.

    Example:

    >>> load_program(b"NNAB")
    Traceback (most recent call last):
    ...
    keras_nna.export.format.BytecodeError: Invalid program: file: 4 bytes received, expected at \
least 36 (header + CRC): the file is truncated or not a program
    """
    if isinstance(program, Program) or (hasattr(program, "layers")
                                        and hasattr(program, "input_shape")):
        return program
    return read_program(program_bytes(program), limits)
