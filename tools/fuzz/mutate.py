"""Structure-aware mutations of keras_nna programs that keep the CRC valid.

A program (docs/bytecode.md, `keras_nna.export.format`) is a 32-byte header,
`n_layers` 64-byte instructions, a constant pool and a trailing CRC-32 of
everything before it. Random byte flips almost always fail the CRC check and
never reach the validator; these mutations pick a *field* of the header or an
instruction (by the offsets in `format.HEADER_OFFSETS` / `INSTR_OFFSETS`) or a
region (pool, instructions), change it in a way a hostile or broken writer
might, and recompute the CRC, so the mutated bytes test the validator itself.

Used by `make_corpus.py` (seed corpus for libFuzzer) and `py_oracle.py`
(Python reader vs op vs reference).

Example:

>>> import random
>>> from keras_nna.export.format import crc32
>>> seed = make_tiny_program()
>>> m = mutate(seed, random.Random(0))
>>> crc32(m[:-4]) == int.from_bytes(m[-4:], "little")
True
"""

import random
import struct

from keras_nna.export.format import (CRC, HEADER, HEADER_FIELDS, HEADER_OFFSETS, INSTR,
                                     INSTR_FIELDS, INSTR_OFFSETS, crc32)

__all__ = ["fix_crc", "make_tiny_program", "mutate", "mutate_many"]

_INTERESTING = (0, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 127, 128, 129, 255, 256,
                257, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 8193, 16383, 32767, 32768,
                65535, 2**31 - 1, 2**31, 2**32 - 1)


def _codes(st):
    """(field code, size) per field of a `struct.Struct`, in order."""
    out, count = [], ""
    for ch in st.format.lstrip("<"):
        if ch.isdigit():
            count += ch
            continue
        out.append((ch, struct.calcsize("<" + count + ch)))
        count = ""
    return out


_HEADER_CODES = dict(zip(HEADER_FIELDS, _codes(HEADER)))
_INSTR_CODES = dict(zip(INSTR_FIELDS, _codes(INSTR)))


def fix_crc(data):
    """Returns `data` with its last four bytes set to the CRC-32 of the rest.

    Args:
        data: bytes-like, at least 4 bytes (shorter inputs are returned as is).

    Returns:
        `bytes`.
    """
    data = bytes(data)
    if len(data) < CRC.size:
        return data
    return data[:-CRC.size] + CRC.pack(crc32(data[:-CRC.size]))


def make_tiny_program():
    """A valid one-layer program (2x2x1 max pool), for doctests and tests.

    Returns:
        The bytecode.
    """
    from keras_nna.export import LayerRecord, Program

    rec = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1), in_bits=8,
                      out_bits=8, pool=(2, 2), strides=(2, 2))
    return Program((2, 2, 1), 8, [rec]).to_bytes()


def _new_value(rng, code, size, old):
    if code in "fd":
        return rng.choice([0.0, -0.0, 1e-45, 1.1754942e-38, 1.0, 2.0 ** -126, 3.4e38, float("inf"),
                           float("nan"), -1.0, old * 2, old / 2])
    bits = 8 * size
    signed = code.islower() and code not in "s"
    r = rng.random()
    if r < 0.35:
        v = old + rng.choice([-2, -1, 1, 2, rng.randint(-16, 16)])
    elif r < 0.85:
        v = rng.choice(_INTERESTING) + rng.choice([0, 0, 0, -1, 1])
    else:
        v = rng.getrandbits(bits)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    v &= (1 << bits) - 1
    if signed and v > hi:
        v -= 1 << bits
    return max(lo, min(hi, v))


def _set_field(data, base, code, size, rng):
    if code == "s":  # magic / reserved bytes
        pos = base + rng.randrange(size)
        data[pos] = rng.getrandbits(8)
        return
    fmt = "<" + code
    old = struct.unpack_from(fmt, data, base)[0]
    struct.pack_into(fmt, data, base, _new_value(rng, code, size, old))


def _n_layers(data):
    n = struct.unpack_from("<H", data, HEADER_OFFSETS["n_layers"])[0]
    avail = max(0, (len(data) - HEADER.size - CRC.size) // INSTR.size)
    return min(n, avail)


def _mutate_header(data, rng):
    name = rng.choice(HEADER_FIELDS)
    _set_field(data, HEADER_OFFSETS[name], *_HEADER_CODES[name], rng)


def _mutate_instr(data, rng):
    n = _n_layers(data)
    if n == 0:
        return _mutate_header(data, rng)
    name = rng.choice(INSTR_FIELDS)
    base = HEADER.size + INSTR.size * rng.randrange(n) + INSTR_OFFSETS[name]
    _set_field(data, base, *_INSTR_CODES[name], rng)


def _pool_range(data):
    start = HEADER.size + INSTR.size * _n_layers(data)
    return start, len(data) - CRC.size


def _mutate_pool(data, rng):
    start, end = _pool_range(data)
    if end <= start:
        return _mutate_instr(data, rng)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        pos = rng.randrange(start, end)
        data[pos] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.getrandbits(8), data[pos] ^ (1 << rng.randrange(8))])


def _drop_or_dup_instr(data, rng):
    """Removes or duplicates one instruction, keeping n_layers and sizes consistent."""
    n = _n_layers(data)
    if n == 0:
        return _mutate_header(data, rng)
    i = rng.randrange(n)
    lo = HEADER.size + INSTR.size * i
    rec = bytes(data[lo:lo + INSTR.size])
    if rng.random() < 0.5 and n > 1:
        del data[lo:lo + INSTR.size]
        n -= 1
    else:
        data[lo:lo] = rec
        n += 1
    struct.pack_into("<H", data, HEADER_OFFSETS["n_layers"], n)


def _resize(data, rng):
    """Truncates or extends the pool, with or without fixing pool_size."""
    start, end = _pool_range(data)
    if rng.random() < 0.5 and end > start:
        k = rng.randint(1, max(1, min(64, end - start)))
        del data[end - k:end]
        delta = -k
    else:
        k = rng.choice([1, 4, 13, 64])
        data[end:end] = bytes(rng.getrandbits(8) for _ in range(k))
        delta = k
    if rng.random() < 0.8:
        old = struct.unpack_from("<I", data, HEADER_OFFSETS["pool_size"])[0]
        struct.pack_into("<I", data, HEADER_OFFSETS["pool_size"], (old + delta) % 2**32)


def _binarize(data, rng):
    """Turns one kernel into a dense 1-bit kernel (format version 3) over the same pool bytes.

    Sets `w_bits` (or a separable's `w2_bits`) to 1, the encoding to dense and the length to
    `ceil(count / 8)` (every 1-bit field is a valid code: bit 1 = +1, bit 0 = -1), clears the
    padding bits, and usually sets the header version to 3 (else a version-1/2 program with a
    1-bit kernel, which readers must refuse).
    """
    n = _n_layers(data)
    if n == 0:
        return _mutate_header(data, rng)
    base = HEADER.size + INSTR.size * rng.randrange(n)
    f = INSTR.unpack_from(data, base)
    f = dict(zip(INSTR_FIELDS, f))
    if not 1 <= f["kind"] <= 4:
        return _mutate_instr(data, rng)
    second = f["kind"] == 3 and rng.random() < 0.5
    taps = f["kh"] * f["kw"]
    count = {1: taps * f["in_c"] * f["out_c"], 2: taps * f["in_c"], 3: taps * f["in_c"],
             4: f["in_c"] * f["out_c"]}[f["kind"]]
    count = f["in_c"] * f["out_c"] if second else count
    length = -(-count // 8)
    if count == 0 or length >= 1 << 32:
        return _mutate_instr(data, rng)
    w = "w2" if second else "w"
    data[base + INSTR_OFFSETS[w + "_bits"]] = 1
    data[base + INSTR_OFFSETS[w + "_enc"]] = 0
    struct.pack_into("<I", data, base + INSTR_OFFSETS[w + "_len"], length)
    last = _pool_range(data)[0] + f[w + "_off"] + length - 1
    if count % 8 and last < len(data) - CRC.size:
        data[last] &= (1 << (count % 8)) - 1
    if rng.random() < 0.85:
        struct.pack_into("<H", data, HEADER_OFFSETS["version"], 3)


def _splice(data, rng, other):
    """Copies one instruction or a pool stretch from another program."""
    if other is None or len(other) < HEADER.size + INSTR.size + CRC.size:
        return _mutate_instr(data, rng)
    n, m = _n_layers(data), _n_layers(bytearray(other))
    if n and m:
        dst = HEADER.size + INSTR.size * rng.randrange(n)
        src = HEADER.size + INSTR.size * rng.randrange(m)
        data[dst:dst + INSTR.size] = other[src:src + INSTR.size]


_MUTATORS = ((_mutate_instr, 0.4), (_mutate_header, 0.12), (_mutate_pool, 0.2),
             (_drop_or_dup_instr, 0.08), (_resize, 0.05), (_binarize, 0.05), (_splice, 0.1))


def mutate(data, rng, other=None, max_ops=3):
    """Applies 1..`max_ops` structure-aware mutations, then fixes the CRC.

    Args:
        data: A program (ideally valid) to start from.
        rng: A `random.Random`.
        other: Optional second program for splicing instructions.
        max_ops: Most mutations stacked on one output.

    Returns:
        The mutated bytes, CRC recomputed (rarely, 1 in 50, left stale so the
        CRC check stays covered).
    """
    out = bytearray(data)
    for _ in range(1 if rng.random() < 0.6 else rng.randint(1, max_ops)):
        r, acc = rng.random(), 0.0
        for fn, p in _MUTATORS:
            acc += p
            if r < acc or fn is _MUTATORS[-1][0]:
                if fn is _splice:
                    fn(out, rng, other)
                else:
                    fn(out, rng)
                break
    if rng.random() < 0.02:
        return bytes(out)
    return fix_crc(out)


def mutate_many(seeds, count, seed=0, max_ops=3):
    """Yields `count` mutated programs from `seeds`, reproducibly.

    Args:
        seeds: A non-empty list of programs.
        count: How many to yield.
        seed: Random seed (same seed, same outputs).
        max_ops: Passed to `mutate`.

    Yields:
        `bytes`.
    """
    rng = random.Random(seed)
    for _ in range(count):
        base = rng.choice(seeds)
        yield mutate(base, rng, other=rng.choice(seeds), max_ops=max_ops)
