"""The byte layout of a keras_nna program, written once (`docs/bytecode.md`).

Everything Python knows about the bytes lives here: the magic and version,
the header and instruction `struct`s with their field names and offsets, the
constant-pool records, the layer-kind table, the statistic names, a header
peek that validates sizes without parsing layers, and `program_bytes`, the
one loader of bytes, paths and `Program`s. The writer and validating reader
(`keras_nna.export.bytecode`), the numpy reference, the emulator and the CLI
import it. It needs only the standard library, so reading a header is fast.

Example:

>>> peek_header(MAGIC + bytes(HEADER.size))
Traceback (most recent call last):
...
keras_nna.export.format.BytecodeError: Invalid program: header: unsupported format version 0 \
(this reader reads versions 1, 2 and 3)
>>> INSTR_OFFSETS["w_enc"], KIND_NAMES[3], STAT_NAMES[1]
(26, 'separable', 'synops')
"""

import collections
import os
import stat
import struct
import zlib

__all__ = [
    "BytecodeError",
    "CRC",
    "HEADER",
    "HEADER_FIELDS",
    "HEADER_OFFSETS",
    "Header",
    "INSTR",
    "INSTR_FIELDS",
    "INSTR_OFFSETS",
    "Instr",
    "KINDS",
    "KIND_NAMES",
    "MAGIC",
    "MAX_LAYERS",
    "MIN_VERSION_W_BITS_1",
    "POOLS",
    "POOL_RQ",
    "RQ_ENTRY",
    "STAT_NAMES",
    "VERSION",
    "VERSIONS",
    "WEIGHTED",
    "crc32",
    "fail",
    "instruction",
    "peek_header",
    "program_bytes",
    "versions_text",
    "weight_encodings",
]

MAGIC = b"NNAB"
"""The first four bytes of every program."""

VERSION = 3
"""The format version this package writes (every program it writes)."""

VERSIONS = (1, 2, 3)
"""The format versions this package reads (version 1: a chain, bytes 57..63 zero; version 2:
a DAG; version 3: version 2 whose kernels may also be 1-bit, `w_bits`/`w2_bits` 1)."""

MIN_VERSION_W_BITS_1 = 3
"""The first format version whose kernels may be 1-bit (`w_bits` or `w2_bits` 1)."""

MAX_LAYERS = 1024
"""Most instructions a program may hold."""

MAX_EXP_GAP = 16
"""Largest `|fa - fb|` and `|max(fa, fb) - out_exp|` of an ADD (step exponents of its inputs
and output); `quantize_model` checks it when it creates a `QuantizedAdd`, the readers again."""

KINDS = {"conv": 1, "depthwise": 2, "separable": 3, "dense": 4, "maxpool": 5, "avgpool": 6,
         "flatten": 7, "add": 8}
"""Layer kind names and their codes in the instruction's `kind` byte."""

KIND_NAMES = {code: name for name, code in KINDS.items()}
"""Layer kind codes and their names (inverse of `KINDS`)."""

WEIGHTED = ("conv", "depthwise", "separable", "dense")
"""Kinds with kernels and a per-channel requantization record."""

POOLS = ("maxpool", "avgpool")
"""Kinds whose window is `pool_h x pool_w`."""

STAT_NAMES = ("events_in", "synops", "dense_macs", "weight_bytes", "act_bytes_in", "events_out")
"""Names of the statistics' last axis, in order ("Statistics" in docs/bytecode.md)."""

HEADER_FIELDS = ("magic", "version", "n_layers", "pool_size", "in_h", "in_w", "in_c", "in_bits",
                 "flags", "input_scale", "reserved0", "reserved1")
HEADER = struct.Struct("<4sHHIHHHBBfII")
"""The 32-byte header; its fields are `HEADER_FIELDS`."""

INSTR_FIELDS = ("kind", "in_bits", "out_bits", "out_exp", "in_h", "in_w", "in_c", "out_h", "out_w",
                "out_c", "kh", "kw", "stride_h", "stride_w", "pad_top", "pad_left", "pad_bottom",
                "pad_right", "w_bits", "w2_bits", "w_enc", "w2_enc", "w_off", "w_len", "w2_off",
                "w2_len", "rq_off", "rq_len", "pool_h", "pool_w", "acc_wide", "out_signed", "src",
                "src2", "reserved")
INSTR = struct.Struct("<BBBbHHHHHHBBBBBBBBBBBBIIIIIIHHBBHH2s")
"""The 64-byte instruction; its fields are `INSTR_FIELDS`."""

RQ_ENTRY = struct.Struct("<iqB")
"""One output channel's requantization `(m, n, sh)` (13 bytes)."""

POOL_RQ = struct.Struct("<IB")
"""The average pool's requantization `(m, sh)` (5 bytes)."""

CRC = struct.Struct("<I")
"""The trailing CRC-32 of every byte before it."""

Header = collections.namedtuple("Header", HEADER_FIELDS)
Instr = collections.namedtuple("Instr", INSTR_FIELDS)


def _offsets(fmt, names):
    offsets, pos = {}, 0
    codes = [c for c in struct.Struct(fmt).format.lstrip("<") if c != " "]
    i = 0
    for name in names:
        count = ""
        while codes[i].isdigit():
            count += codes[i]
            i += 1
        offsets[name] = pos
        pos += struct.calcsize("<" + count + codes[i])
        i += 1
    return offsets


HEADER_OFFSETS = _offsets(HEADER.format, HEADER_FIELDS)
"""Byte offset of each header field."""

INSTR_OFFSETS = _offsets(INSTR.format, INSTR_FIELDS)
"""Byte offset of each instruction field inside its 64-byte record."""

assert HEADER.size == 32 and INSTR.size == 64 and RQ_ENTRY.size == 13 and POOL_RQ.size == 5
assert INSTR_OFFSETS["w_bits"] == 24 and INSTR_OFFSETS["acc_wide"] == 56
assert (INSTR_OFFSETS["out_signed"], INSTR_OFFSETS["src"], INSTR_OFFSETS["src2"],
        INSTR_OFFSETS["reserved"]) == (57, 58, 60, 62)


class BytecodeError(ValueError):
    """Raised when bytes are not a valid keras_nna program."""


def fail(where, msg):
    """Raises the reader's error for one field.

    Args:
        where: The part of the program (`"header"`, `"layer 3 (conv)"`, ...).
        msg: What was received and what was expected.

    Raises:
        BytecodeError: `"Invalid program: {where}: {msg}"`, always.

    Example:

    >>> fail("header", "flags 1 received, expected 0")
    Traceback (most recent call last):
    ...
    keras_nna.export.format.BytecodeError: Invalid program: header: flags 1 received, expected 0
    """
    raise BytecodeError(f"Invalid program: {where}: {msg}")


def versions_text():
    """The versions this package reads, in words.

    Returns:
        `"1, 2 and 3"` for `VERSIONS = (1, 2, 3)`.

    Example:

    >>> versions_text()
    '1, 2 and 3'
    """
    *head, last = (str(v) for v in VERSIONS)
    return f"{', '.join(head)} and {last}" if head else last


def crc32(data):
    """CRC-32 (zlib polynomial) as stored in a program's last four bytes.

    Args:
        data: The bytes before the CRC.

    Returns:
        The unsigned 32-bit checksum.

    Example:

    >>> hex(crc32(b"NNAB"))
    '0x513b0e20'
    """
    return zlib.crc32(data) & 0xFFFFFFFF


def peek_header(data):
    """Reads and checks the header without parsing the layers.

    Checks, in the order of `docs/bytecode.md`: size, magic, version,
    `n_layers`, total size. The CRC and every other field are left to
    `keras_nna.export.read_program` (and the C++ op).

    Args:
        data: `bytes`-like program.

    Returns:
        A `Header` named tuple (`magic`, `version`, `n_layers`, `pool_size`,
        `in_h`, `in_w`, `in_c`, `in_bits`, `flags`, `input_scale`, ...).

    Raises:
        BytecodeError: Naming the field, the value received and the value
            expected.

    Example:

    >>> h = peek_header(HEADER.pack(MAGIC, 2, 1, 0, 2, 2, 1, 8, 0, 1.0, 0, 0) + bytes(64 + 4))
    >>> h.n_layers, (h.in_h, h.in_w, h.in_c)
    (1, (2, 2, 1))
    """
    size = len(data)
    if size < HEADER.size + CRC.size:
        fail("file", f"{size} bytes received, expected at least {HEADER.size + CRC.size} "
                     "(header + CRC): the file is truncated or not a program")
    header = Header(*HEADER.unpack_from(data))
    if header.magic != MAGIC:
        fail("header", f"magic {header.magic!r} received, expected {MAGIC!r} "
                       "(not a keras_nna program)")
    if header.version not in VERSIONS:
        fail("header", f"unsupported format version {header.version} (this reader reads "
                       f"versions {versions_text()})")
    if not 1 <= header.n_layers <= MAX_LAYERS:
        fail("header", f"n_layers {header.n_layers} received, expected 1..{MAX_LAYERS}")
    total = HEADER.size + INSTR.size * header.n_layers + header.pool_size + CRC.size
    if total != size:
        fail("header", f"sizes imply {total} bytes, the file has {size} (truncated or padded)")
    return header


def instruction(data, i):
    """Reads one instruction without checking it.

    Args:
        data: `bytes`-like program whose header `peek_header` accepted.
        i: Layer index, `0 <= i < n_layers`.

    Returns:
        An `Instr` named tuple with the fields `INSTR_FIELDS`.

    Example:

    >>> raw = INSTR.pack(5, 8, 8, 0, 2, 2, 1, 1, 1, 1, *[1] * 4, *[0] * 4, *[0] * 4, *[0] * 6,
    ...                  2, 2, 0, 0, 1, 0, bytes(2))
    >>> f = instruction(bytes(HEADER.size) + raw, 0)
    >>> KIND_NAMES[f.kind], (f.pool_h, f.pool_w), f.out_c
    ('maxpool', (2, 2), 1)
    """
    return Instr(*INSTR.unpack_from(data, HEADER.size + INSTR.size * i))


def weight_encodings(data):
    """Names the kernel encodings of each layer, as `keras-nna inspect` shows them.

    Args:
        data: `bytes`-like program (the header is checked with `peek_header`).

    Returns:
        One string per layer: `""` for layers without kernels, `"dense"` or
        `"sparse"`, and `"dense/sparse"`-style pairs for separable layers.

    Raises:
        BytecodeError: If the header is invalid.

    Example:

    >>> rec = INSTR.pack(4, 8, 0, 0, 1, 1, 3, 1, 1, 2, *[1] * 4, *[0] * 4, 4, 0, 1, 0,
    ...                  *[0] * 6, 0, 0, 0, 0, 0, 0, bytes(2))
    >>> weight_encodings(HEADER.pack(MAGIC, 2, 1, 0, 1, 1, 3, 8, 0, 1.0, 0, 0) + rec + bytes(4))
    ['sparse']
    """
    names = ("dense", "sparse")
    out = []
    for i in range(peek_header(data).n_layers):
        f = instruction(data, i)
        encs = [names[e] if e < 2 else f"enc{e}" for e in (f.w_enc, f.w2_enc)]
        if not f.w_bits:
            out.append("")
        else:
            out.append("/".join(encs) if KIND_NAMES.get(f.kind) == "separable" else encs[0])
    return out


def _read_program_file(path):
    """Reads a program file, refusing non-files and foreign files before reading them whole."""
    mode = os.stat(path).st_mode  # before open(): opening a FIFO would block
    if not stat.S_ISREG(mode):
        raise ValueError(f"program path '{path}' is not a regular file (a device, FIFO or "
                         "socket). Expected a bytecode file (.nnab) written by export_model.")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(HEADER.size)
        if len(head) == HEADER.size and size >= HEADER.size + CRC.size:
            header = Header(*HEADER.unpack_from(head))
            if header.magic != MAGIC:
                fail("header", f"magic {header.magic!r} received, expected {MAGIC!r} "
                               f"(not a keras_nna program: '{path}')")
            total = HEADER.size + INSTR.size * header.n_layers + header.pool_size + CRC.size
            if total != size:
                fail("header", f"sizes imply {total} bytes, the file '{path}' has {size} "
                               "(truncated or padded)")
        return head + f.read()


def program_bytes(program):
    """Returns the bytecode of a program given as bytes, a path or a `Program`.

    The one loader every entry point uses (emulator, reference, cost model,
    CLI). The bytes are not validated here.

    Args:
        program: `bytes`-like bytecode, a path (`str` or `os.PathLike`) to a
            bytecode file, or an object with a `to_bytes()` method (a
            `keras_nna.export.Program`).

    Returns:
        The program `bytes`.

    Raises:
        FileNotFoundError: If a path does not exist.
        IsADirectoryError: If a path is a directory.
        ValueError: If a path is not a regular file (device, FIFO, socket).
        BytecodeError: If a file's header shows it is not a program, or its
            size disagrees with the header (checked before reading it whole).
        TypeError: For any other type.

    Example:

    >>> program_bytes(bytearray(b"NNAB"))
    b'NNAB'
    >>> program_bytes("/no/such/model.nnab")
    Traceback (most recent call last):
    ...
    FileNotFoundError: program file '/no/such/model.nnab' not found. Expected an existing \
bytecode file (.nnab); check the path and the working directory.
    """
    if isinstance(program, (bytes, bytearray, memoryview)):
        return bytes(program)
    if isinstance(program, (str, os.PathLike)):
        path = os.fspath(program)
        if os.path.isdir(path):
            raise IsADirectoryError(f"program path '{path}' is a directory. Expected a bytecode "
                                    "file (.nnab) inside it, e.g. written by export_model.")
        if not os.path.exists(path):
            raise FileNotFoundError(f"program file '{path}' not found. Expected an existing "
                                    "bytecode file (.nnab); check the path and the working "
                                    "directory.")
        return _read_program_file(path)
    if hasattr(program, "to_bytes") and not isinstance(program, int):  # int.to_bytes exists
        return bytes(program.to_bytes())
    raise TypeError("program must be bytecode bytes, a path to a bytecode file, or an object "
                    f"with .to_bytes() (keras_nna.export.Program). Received: {type(program)}")
