"""Kernel codes in the constant pool: bit packing, dense and sparse encodings.

Kernel codes of `b = 2..8` bits are signed two's complement fields packed
LSB first (`docs/bytecode.md`, "Kernels in the pool"). 1-bit codes (format
version 3) are `{-1, +1}`: bit 1 = `+1`, bit 0 = `-1` (not two's
complement), so a dense 1-bit kernel cannot hold a zero. `encode_kernel`
picks the smaller of the dense packing and the bitmap-sparse one (always
the sparse one for a 1-bit kernel with a zero code); `read_kernel` decodes
untrusted bytes and refuses any inexact length, padding bit or code.

Example:

>>> pack_codes([1, -1, 3], 3).hex()
'f900'
>>> unpack_codes(pack_codes([1, -1, 3], 3), 3, 3).tolist()
[1, -1, 3]
>>> encode_kernel([0, 0, 0, 0, 0, 0, 0, 0, 0, 5], 4)
(1, b'\\x00\\x02\\x05')
>>> pack_codes([1, -1, -1, 1, 1, 1, 1, 1, -1], 1).hex()
'f900'
>>> encode_kernel([1, 0, -1], 1)
(1, b'\\x05\\x01')
"""

import numpy as np

from keras_nna.export.format import fail as _fail

__all__ = ["encode_kernel", "pack_codes", "read_kernel", "unpack_codes"]


def pack_codes(codes, bits):
    """Packs signed codes as `bits`-bit fields, LSB first, zero padding bits after the last.

    Fields are two's complement for `bits >= 2`; for `bits = 1` bit 1 is code
    `+1` and bit 0 is code `-1`.

    Raises:
        ValueError: If `bits` is 1 and a code is not -1 or +1 (a 1-bit kernel
            with zeros must use the sparse encoding, see `encode_kernel`).
    """
    codes = np.asarray(codes, np.int64).ravel()
    if bits == 1:
        if np.any(np.abs(codes) != 1):
            bad = int(codes[np.abs(codes) != 1][0])
            raise ValueError(f"1-bit codes must be -1 or +1, received {bad}. Expected a code "
                             "in {-1, +1}; encode kernels with zeros with encode_kernel "
                             "(bitmap-sparse encoding).")
        codes = (codes > 0).astype(np.int64)
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
    if bits == 1:
        return 2 * out - 1  # bit 1 = +1, bit 0 = -1
    out[out >= 1 << (bits - 1)] -= 1 << bits
    return out


def encode_kernel(codes, bits):
    """Returns `(encoding, bytes)`: dense packing (0) or bitmap + non-zeros (1).

    The smaller of the two, the dense one on a tie; a 1-bit kernel with a
    zero code is always sparse (a dense 1-bit field holds only -1 or +1).
    """
    flat = np.asarray(codes, np.int64).ravel()
    nz = flat != 0
    sparse = np.packbits(nz, bitorder="little").tobytes() + pack_codes(flat[nz], bits)
    if bits == 1 and not nz.all():
        return 1, sparse
    dense = pack_codes(flat, bits)
    return (1, sparse) if len(sparse) < len(dense) else (0, dense)


def read_kernel(pool, where, off, length, enc, bits, count):
    """Decodes one kernel of `count` codes at `pool[off: off + length]`.

    Raises:
        BytecodeError: Naming `where` and the offending length, bit or code.
    """
    if not 1 <= bits <= 8:
        _fail(where, f"kernel bits must be 1..8, got {bits}")
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
    qmax = max(1, (1 << (bits - 1)) - 1)  # 1 bit: -1 or +1 by construction
    if np.any(np.abs(codes) > qmax):
        _fail(where, f"code {int(codes[np.abs(codes) > qmax][0])} outside ±{qmax} for {bits} bits")
    return codes
