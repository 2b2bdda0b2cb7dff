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
import zlib

import numpy as np

from keras_nna.export.program import KINDS, WEIGHTED, LayerRecord, Program, conv_output_size

__all__ = ["BytecodeError", "write_program", "read_program", "pack_codes", "unpack_codes"]

MAGIC = b"NNAB"
VERSION = 1
HEADER = struct.Struct("<4sHHIHHHBBfII")
INSTR = struct.Struct("<BBBbHHHHHHBBBBBBBBBBBBIIIIIIHHB7s")
RQ_ENTRY = struct.Struct("<iqB")
POOL_RQ = struct.Struct("<IB")
assert HEADER.size == 32 and INSTR.size == 64 and RQ_ENTRY.size == 13
_KIND_NAMES = {v: k for k, v in KINDS.items()}
MAX_LAYERS = 1024


class BytecodeError(ValueError):
    """Raised when bytes are not a valid keras_nna program."""


def pack_codes(codes, bits):
    """Packs signed codes as `bits`-bit two's complement fields, LSB first."""
    codes = np.asarray(codes, np.int64).ravel()
    fields = (codes & ((1 << bits) - 1)).astype(np.uint64)
    bit_idx = np.arange(bits, dtype=np.uint64)
    stream = ((fields[:, None] >> bit_idx) & 1).astype(np.uint8).ravel()
    return np.packbits(stream, bitorder="little").tobytes()


def unpack_codes(data, count, bits):
    """Inverse of `pack_codes` (`data` must hold at least count*bits bits)."""
    stream = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")[: count * bits]
    fields = stream.reshape(count, bits).astype(np.int64) @ (1 << np.arange(bits, dtype=np.int64))
    return np.where(fields >= 1 << (bits - 1), fields - (1 << bits), fields)


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
    return body + struct.pack("<I", zlib.crc32(body))


def _fail(where, msg):
    raise BytecodeError(f"Invalid program: {where}: {msg}")


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
    bits_all = np.unpackbits(np.frombuffer(blob, np.uint8), bitorder="little")
    if bits_all[tail:].any():
        _fail(where, "non-zero padding bits after the packed kernel")
    qmax = (1 << (bits - 1)) - 1
    if np.any(np.abs(codes) > qmax):
        _fail(where, f"code {int(codes[np.abs(codes) > qmax][0])} outside ±{qmax} for {bits} bits")
    return codes


def read_program(data):
    """Parses and validates bytecode.

    Args:
        data: `bytes` (or bytes-like) of a program.

    Returns:
        The `Program`.

    Raises:
        BytecodeError: If any field is invalid; the message names it.
    """
    data = bytes(data)
    if len(data) < HEADER.size + 4:
        _fail("file", f"{len(data)} bytes is shorter than header + CRC ({HEADER.size + 4})")
    magic, version, n_layers, pool_size, ih, iw, ic, ibits, flags, iscale, r0, r1 = HEADER.unpack_from(data)
    if magic != MAGIC:
        _fail("header", f"magic {magic!r}, expected {MAGIC!r} (not a keras_nna program)")
    if version != VERSION:
        _fail("header", f"format version {version}, this reader supports {VERSION}")
    if not 1 <= n_layers <= MAX_LAYERS:
        _fail("header", f"n_layers {n_layers} outside 1..{MAX_LAYERS}")
    total = HEADER.size + INSTR.size * n_layers + pool_size + 4
    if total != len(data):
        _fail("header", f"sizes imply {total} bytes, file has {len(data)} (truncated or padded)")
    crc = struct.unpack_from("<I", data, len(data) - 4)[0]
    if crc != zlib.crc32(data[:-4]):
        _fail("file", "CRC-32 mismatch (corrupted bytes)")
    if not (1 <= ih <= 4096 and 1 <= iw <= 4096 and 1 <= ic <= 8192):
        _fail("header", f"input shape {(ih, iw, ic)} outside limits")
    if not 1 <= ibits <= 8 or flags or r0 or r1:
        _fail("header", f"in_bits {ibits} / flags {flags} / reserved fields invalid")
    if not np.isfinite(iscale) or iscale <= 0:
        _fail("header", f"input_scale {iscale} must be finite and > 0")
    pool = data[HEADER.size + INSTR.size * n_layers: -4]
    layers = []
    prev_shape, prev_bits, prev_exp = (ih, iw, ic), ibits, None
    for i in range(n_layers):
        f = INSTR.unpack_from(data, HEADER.size + INSTR.size * i)
        rec = _parse_instr(f, i, pool, prev_shape, prev_bits, prev_exp, i == n_layers - 1)
        layers.append(rec)
        prev_shape, prev_bits, prev_exp = rec.out_shape, rec.out_bits, rec.out_exp
    return Program((ih, iw, ic), ibits, layers, float(iscale))


def _parse_instr(f, i, pool, prev_shape, prev_bits, prev_exp, last):
    (kind_id, in_bits, out_bits, out_exp, ih, iw, ic, oh, ow, oc, kh, kw, sh_, sw_, pt, pl, pb, pr,
     w_bits, w2_bits, w_enc, w2_enc, w_off, w_len, w2_off, w2_len, rq_off, rq_len, ph, pw,
     acc_wide, reserved) = f
    where = f"layer {i}"
    kind = _KIND_NAMES.get(kind_id)
    if kind is None:
        _fail(where, f"unknown kind {kind_id} (expected 1..7)")
    where = f"layer {i} ({kind})"
    if (ih, iw, ic) != tuple(prev_shape):
        _fail(where, f"input shape {(ih, iw, ic)} != previous output {tuple(prev_shape)}")
    if in_bits != prev_bits:
        _fail(where, f"in_bits {in_bits} != previous out_bits {prev_bits}")
    if reserved != b"\0" * 7 or acc_wide > 1:
        _fail(where, "reserved bytes must be 0 and acc_wide 0 or 1")
    if min(oh, ow, oc) < 1:
        _fail(where, f"output shape {(oh, ow, oc)} has a zero dimension")
    rec = LayerRecord(kind, (ih, iw, ic), (oh, ow, oc), in_bits, out_bits, out_exp, (kh, kw),
                      (sh_, sw_), (pt, pl, pb, pr), (ph, pw), w_bits, w2_bits, acc_wide=bool(acc_wide),
                      name=f"{kind}_{i}", const_bytes=w_len + w2_len + rq_len)
    weighted = kind in WEIGHTED
    if out_bits == 0:
        if not (weighted and last):
            _fail(where, "raw output (out_bits 0) is only allowed on a weighted last layer")
        if out_exp != 0:
            _fail(where, "raw output must have out_exp 0")
    elif not 1 <= out_bits <= 8:
        _fail(where, f"out_bits {out_bits} outside 1..8")
    if not weighted and (out_bits != in_bits or (prev_exp is not None and out_exp != prev_exp)):
        _fail(where, "pools and flatten keep the input's bits and step")
    if kind == "dense":
        if (ih, iw, oh, ow, kh, kw, sh_, sw_, pt, pl, pb, pr) != (1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0):
            _fail(where, "dense needs 1x1 input/output, 1x1 kernel, stride 1, no padding")
    elif kind == "flatten":
        if (oh, ow, oc) != (1, 1, ih * iw * ic) or (kh, kw, sh_, sw_) != (1, 1, 1, 1) or any((pt, pl, pb, pr)):
            _fail(where, f"flatten output must be (1, 1, {ih * iw * ic}) with unit kernel/stride")
    else:
        win = (kh, kw) if weighted else (ph, pw)
        if weighted and not (1 <= kh <= 15 and 1 <= kw <= 15):
            _fail(where, f"kernel {kh}x{kw} outside 1..15")
        if not weighted and not (1 <= ph <= 4096 and 1 <= pw <= 4096):
            _fail(where, f"pool window {ph}x{pw} outside 1..4096")
        if not (1 <= sh_ <= 15 and 1 <= sw_ <= 15):
            _fail(where, f"strides {(sh_, sw_)} outside 1..15")
        if pt >= win[0] or pb >= win[0] or pl >= win[1] or pr >= win[1]:
            _fail(where, f"padding {(pt, pl, pb, pr)} not smaller than the window {win}")
        if kind == "avgpool" and any((pt, pl, pb, pr)):
            _fail(where, "average pooling must not be padded")
        if ih + pt + pb < win[0] or iw + pl + pr < win[1]:
            _fail(where, f"window {win} larger than the padded input")
        eh = conv_output_size(ih, win[0], sh_, pt, pb)
        ew = conv_output_size(iw, win[1], sw_, pl, pr)
        ec = oc if kind in ("conv", "separable") else ic
        if (oh, ow, oc) != (eh, ew, ec):
            _fail(where, f"output shape {(oh, ow, oc)}, expected {(eh, ew, ec)}")
    if kind not in ("maxpool", "avgpool") and (ph or pw):
        _fail(where, "pool window set on a non-pool layer")
    if kind in ("maxpool", "avgpool") and (kh, kw) != (1, 1):
        _fail(where, f"pools keep kh = kw = 1 (window in pool_h/pool_w), got {(kh, kw)}")
    if not weighted and acc_wide:
        _fail(where, "acc_wide must be 0 for pools and flatten")
    # constants
    if weighted:
        k1_count = {"conv": kh * kw * ic * oc, "depthwise": kh * kw * ic,
                    "separable": kh * kw * ic, "dense": ic * oc}[kind]
        codes = _read_kernel(pool, where + " kernel", w_off, w_len, w_enc, w_bits, k1_count)
        shape = {"conv": (kh, kw, ic, oc), "depthwise": (kh, kw, ic), "separable": (kh, kw, ic),
                 "dense": (ic, oc)}[kind]
        rec.weights = codes.reshape(shape)
        if kind == "separable":
            codes2 = _read_kernel(pool, where + " pointwise", w2_off, w2_len, w2_enc, w2_bits, ic * oc)
            rec.weights2 = codes2.reshape(ic, oc)
        elif (w2_bits, w2_enc, w2_off, w2_len) != (0, 0, 0, 0):
            _fail(where, "second kernel fields must be 0")
        if rq_len != RQ_ENTRY.size * oc or rq_off + rq_len > len(pool):
            _fail(where, f"requantization record ({rq_off}, {rq_len}) must be {RQ_ENTRY.size * oc} bytes inside the pool")
        entries = [RQ_ENTRY.unpack_from(pool, rq_off + RQ_ENTRY.size * c) for c in range(oc)]
        rec.m, rec.n, rec.sh = (np.array(v, np.int64) for v in zip(*entries))
        if np.any(rec.sh < 1) or np.any(rec.sh > 62):
            _fail(where, "requantization shift outside 1..62")
        _check_bounds(rec, where)
    else:
        if (w_bits, w2_bits, w_enc, w2_enc, w_off, w_len, w2_off, w2_len) != (0,) * 8:
            _fail(where, "kernel fields must be 0 for pools/flatten")
        if kind == "avgpool":
            if rq_len != POOL_RQ.size or rq_off + rq_len > len(pool):
                _fail(where, f"average-pool record must be {POOL_RQ.size} bytes inside the pool")
            m, s = POOL_RQ.unpack_from(pool, rq_off)
            if not 1 <= s <= 40 or ph * pw * ((1 << in_bits) - 1) * m + (1 << (s - 1)) >= 1 << 62:
                _fail(where, f"average-pool multiplier {m} / shift {s} out of range")
            rec.m, rec.sh = np.array([m], np.int64), np.array([s], np.int64)
        elif (rq_off, rq_len) != (0, 0):
            _fail(where, "requantization fields must be 0")
    return rec


def accumulator_bounds(rec):
    """Worst-case |accumulator| per output channel (and of the depthwise stage)."""
    in_max = (1 << rec.in_bits) - 1
    w = np.abs(rec.weights)
    if rec.kind == "conv":
        return in_max * w.sum(axis=(0, 1, 2)), 0
    if rec.kind == "depthwise":
        return in_max * w.sum(axis=(0, 1)), 0
    if rec.kind == "dense":
        return in_max * w.sum(axis=0), 0
    dw = in_max * w.sum(axis=(0, 1))
    return dw @ np.abs(rec.weights2), int(dw.max(initial=0))


def _check_bounds(rec, where):
    acc, mid = accumulator_bounds(rec)
    worst_acc = max(int(acc.max(initial=0)), mid)
    if worst_acc >= 1 << 31 and not rec.acc_wide:
        _fail(where, f"accumulator bound {worst_acc} needs acc_wide=1")
    z = [int(a) * abs(int(m)) + abs(int(n)) for a, m, n in zip(acc, rec.m, rec.n)]
    if max(z, default=0) >= 1 << 53:
        _fail(where, "worst-case requantization value reaches 2^53")
