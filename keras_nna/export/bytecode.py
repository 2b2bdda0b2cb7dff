"""Bytecode writer and validating reader (format: `docs/bytecode.md`).

`write_program` turns a `Program` into bytes: a 32-byte header, 64-byte
instructions, a constant pool (kernels bit-packed at their width, dense or
bitmap-sparse, whichever is smaller; 13-byte requantization entries) and a
CRC-32. `read_program` parses untrusted bytes back into a `Program` and
raises `BytecodeError` naming the offending field on anything wrong: no
length field is trusted.

Example:

>>> import numpy as np
>>> from keras_nna.export.program import LayerRecord, Program
>>> rec = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=8,
...                   out_bits=0, w_bits=4, weights=np.array([[1, -7], [0, 0], [3, 2]]),
...                   m=np.array([16384, 16384]), n=np.array([0, 5]), sh=np.array([14, 14]))
>>> data = write_program(Program((1, 1, 3), 8, [rec]))
>>> len(data), read_program(data).layers[0].weights.tolist()
(129, [[1, -7], [0, 0], [3, 2]])
"""

import struct

import numpy as np

from keras_nna.export.format import (  # noqa: F401  (MAX_LAYERS...: importable from here too)
    CRC, HEADER, INSTR, KIND_NAMES, KINDS, MAGIC, MAX_LAYERS, POOL_RQ, POOLS, RQ_ENTRY, VERSION,
    WEIGHTED, BytecodeError, crc32, instruction, peek_header, program_bytes)
from keras_nna.export.format import HEADER_OFFSETS as _AT
from keras_nna.export.format import fail as _fail
from keras_nna.export.limits import (  # noqa: F401  (accumulator_bounds: importable here too)
    MAX_TENSOR_ELEMENTS, accumulator_bounds, check_bounds, check_layer_size, check_limits,
    check_output_exp, input_scale_error, layer_costs, resolve_limits)
from keras_nna.export.program import LayerRecord, Program, conv_output_size

__all__ = ["BytecodeError", "load_program", "write_program", "read_program", "pack_codes",
           "unpack_codes"]


def pack_codes(codes, bits):
    """Packs signed codes as `bits`-bit two's complement fields, LSB first."""
    codes = np.asarray(codes, np.int64).ravel()
    fields = (codes & ((1 << bits) - 1)).astype(np.uint64)
    bit_idx = np.arange(bits, dtype=np.uint64)
    stream = ((fields[:, None] >> bit_idx) & 1).astype(np.uint8).ravel()
    return np.packbits(stream, bitorder="little").tobytes()


def unpack_codes(data, count, bits):
    """Inverse of `pack_codes` (`data` must hold at least count*bits bits), in 2^20-value
    chunks: the result (int64) is the only allocation that grows with `count`."""
    buf, out = np.frombuffer(data, np.uint8), np.empty(count, np.int64)
    place = 1 << np.arange(bits, dtype=np.int64)
    for start in range(0, count, 1 << 20):  # chunks start on byte boundaries
        n, b0 = min(1 << 20, count - start), start * bits // 8
        stream = np.unpackbits(buf[b0: b0 + -(-n * bits // 8)], bitorder="little")[: n * bits]
        out[start: start + n] = stream.reshape(n, bits).astype(np.int64) @ place
    out[out >= 1 << (bits - 1)] -= 1 << bits
    return out


def _encode_kernel(codes, bits):
    """Returns `(encoding, bytes)`: dense packing or bitmap + non-zeros."""
    flat = np.asarray(codes, np.int64).ravel()
    dense = pack_codes(flat, bits)
    nz = flat != 0
    sparse = np.packbits(nz, bitorder="little").tobytes() + pack_codes(flat[nz], bits)
    return (1, sparse) if len(sparse) < len(dense) else (0, dense)


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

    for rec in program.layers:
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
                    *rec.pool, int(bool(rec.acc_wide)), b"\0" * 7,
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


def _read_kernel(pool, where, off, length, enc, bits, count):
    if not 2 <= bits <= 8:
        _fail(where, f"kernel bits must be 2..8, got {bits}")
    if off + length > len(pool):
        _fail(where, f"kernel bytes [{off}, {off + length}) exceed the pool ({len(pool)} bytes)")
    blob = pool[off: off + length]
    if enc == 0:
        expect = -(-count * bits // 8)
        if length != expect:
            _fail(where, f"dense kernel length {length}, expected {expect}")
        codes = unpack_codes(blob, count, bits)
        tail = count * bits
    elif enc == 1:
        nbm = -(-count // 8)
        if length < nbm:
            _fail(where, f"sparse kernel length {length} shorter than its bitmap ({nbm})")
        mask = np.unpackbits(np.frombuffer(blob[:nbm], np.uint8), bitorder="little")
        if mask[count:].any():
            _fail(where, "non-zero padding bits in the sparse bitmap")
        mask = mask[:count].astype(bool)
        nnz = int(mask.sum())
        expect = nbm + -(-nnz * bits // 8)
        if length != expect:
            _fail(where, f"sparse kernel length {length}, expected {expect} for {nnz} non-zeros")
        values = unpack_codes(blob[nbm:], nnz, bits)
        if np.any(values == 0):
            _fail(where, "a zero value among the packed non-zeros of a sparse kernel")
        codes = np.zeros(count, np.int64)
        codes[mask] = values
        blob, tail = blob[nbm:], nnz * bits
    else:
        _fail(where, f"unknown weight encoding {enc}")
    if tail % 8 and blob[tail // 8] >> (tail % 8):  # lengths are exact: one partial byte
        _fail(where, "non-zero padding bits after the packed kernel")
    qmax = (1 << (bits - 1)) - 1
    if np.any(np.abs(codes) > qmax):
        _fail(where, f"code {int(codes[np.abs(codes) > qmax][0])} outside ±{qmax} for {bits} bits")
    return codes


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
    prev = ((ih, iw, ic), ibits, None)
    for i in range(header.n_layers):  # shapes first: limits are checked before decoding
        f = instruction(data, i)
        rec, where = _parse_instr(f, i, prev, i == header.n_layers - 1)
        layers.append((rec, f, where))
        costs.append(layer_costs(f))
        prev = (rec.out_shape, rec.out_bits, rec.out_exp)
    check_limits(costs, limits)
    for rec, f, where in layers:
        _READERS[rec.kind][1](rec, f, pool, where)
    return Program((ih, iw, ic), ibits, [rec for rec, _, _ in layers], float(iscale))


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


def _parse_instr(f, i, prev, last):
    """Validates instruction `f` (an `Instr`) after `prev = (shape, bits, exp)`, all but
    its constants; returns `(LayerRecord, where)`."""
    kind = KIND_NAMES.get(f.kind)
    if kind is None:
        _fail(f"layer {i}", f"unknown kind {f.kind} (expected 1..{len(KINDS)})")
    where = f"layer {i} ({kind})"
    in_shape, out_shape = (f.in_h, f.in_w, f.in_c), (f.out_h, f.out_w, f.out_c)
    prev_shape, prev_bits, prev_exp = prev
    if in_shape != tuple(prev_shape):
        _fail(where, f"input shape {in_shape} != previous output {tuple(prev_shape)}")
    if f.in_bits != prev_bits:
        _fail(where, f"in_bits {f.in_bits} != previous out_bits {prev_bits}")
    if f.reserved != b"\0" * 7 or f.acc_wide > 1:
        _fail(where, "reserved bytes must be 0 and acc_wide 0 or 1")
    if min(out_shape) < 1:
        _fail(where, f"output shape {out_shape} has a zero dimension")
    rec = LayerRecord(kind, in_shape, out_shape, f.in_bits, f.out_bits, f.out_exp, (f.kh, f.kw),
                      (f.stride_h, f.stride_w), _pads(f), (f.pool_h, f.pool_w), f.w_bits,
                      f.w2_bits, acc_wide=bool(f.acc_wide), name=f"{kind}_{i}",
                      const_bytes=f.w_len + f.w2_len + f.rq_len)
    weighted = kind in WEIGHTED
    if f.out_bits == 0:
        if not (weighted and last):
            _fail(where, "raw output (out_bits 0) is only allowed on a weighted last layer")
        if f.out_exp != 0:
            _fail(where, "raw output must have out_exp 0")
    elif not 1 <= f.out_bits <= 8:
        _fail(where, f"out_bits {f.out_bits} outside 1..8")
    if last:
        check_output_exp(f.out_bits, f.out_exp, where)
    if not weighted and (f.out_bits != f.in_bits
                         or (prev_exp is not None and f.out_exp != prev_exp)):
        _fail(where, "pools and flatten keep the input's bits and step")
    _READERS[kind][0](f, kind, where)
    if kind not in POOLS and (f.pool_h or f.pool_w):
        _fail(where, "pool window set on a non-pool layer")
    if kind in POOLS and (f.kh, f.kw) != (1, 1):
        _fail(where, f"pools keep kh = kw = 1 (window in pool_h/pool_w), got {(f.kh, f.kw)}")
    if not weighted and f.acc_wide:
        _fail(where, "acc_wide must be 0 for pools and flatten")
    check_layer_size(f, where)
    return rec, where


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


_KERNEL_SHAPES = {
    "conv": lambda f: (f.kh, f.kw, f.in_c, f.out_c),
    "depthwise": lambda f: (f.kh, f.kw, f.in_c),
    "separable": lambda f: (f.kh, f.kw, f.in_c),
    "dense": lambda f: (f.in_c, f.out_c),
}


def _read_weighted(rec, f, pool, where):
    """Kernels (two for separable) and the per-channel requantization record."""
    shape = _KERNEL_SHAPES[rec.kind](f)
    codes = _read_kernel(pool, where + " kernel", f.w_off, f.w_len, f.w_enc, f.w_bits,
                         int(np.prod(shape)))
    rec.weights = codes.reshape(shape)
    if rec.kind == "separable":
        codes2 = _read_kernel(pool, where + " pointwise", f.w2_off, f.w2_len, f.w2_enc, f.w2_bits,
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
        _fail(where, "kernel fields must be 0 for pools/flatten")


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
    """Max pools and flatten: every constant field is 0."""
    _check_no_kernels(f, where)
    if (f.rq_off, f.rq_len) != (0, 0):
        _fail(where, "requantization fields must be 0")


_READERS = {
    "conv": (_check_window_shape, _read_weighted),
    "depthwise": (_check_window_shape, _read_weighted),
    "separable": (_check_window_shape, _read_weighted),
    "dense": (_check_dense_shape, _read_weighted),
    "maxpool": (_check_window_shape, _read_no_constants),
    "avgpool": (_check_window_shape, _read_avgpool),
    "flatten": (_check_flatten_shape, _read_no_constants),
}
"""Per layer kind: `(shape check, constant reader)`."""
assert set(_READERS) == set(KINDS)
