"""NnaRun rejects malformed programs and mismatched inputs, and never crashes."""

import struct

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.export import BytecodeError, read_program
from keras_nna.export.format import HEADER, HEADER_OFFSETS, INSTR, INSTR_OFFSETS
from keras_nna.runtime import nna_run

HEADER_SIZE, INSTR_SIZE = HEADER.size, INSTR.size


def _at(layer, field, plus=0):
    """Byte offset of an instruction field of `layer` in the program."""
    return HEADER_SIZE + INSTR_SIZE * layer + INSTR_OFFSETS[field] + plus


def small_program(nna):
    """conv 3x3 (4-bit, sparse) -> global avgpool -> dense raw; 366 bytes."""
    rng = np.random.default_rng(42)
    w = rng.integers(-7, 8, (3, 3, 2, 4)) * (rng.random((3, 3, 2, 4)) < 0.3)
    layers = [
        dict(kind="conv", w=w, w_bits=4, w_enc=1, pad=(1, 1, 1, 1), out_bits=4, out_exp=2,
             m=np.array([16384, 20000, 30000, 17000]), n=np.array([0, -5000, 100, 7]),
             sh=np.array([14, 15, 16, 14])),
        dict(kind="avgpool", pool=(6, 6), avg_m=1820, avg_sh=16),
        dict(kind="dense", w=np.array([[1, -1, 0], [2, 0, 1], [0, 0, -3], [1, 1, 1]]), w_bits=3,
             out_bits=0, m=np.array([16384, -16384, 20000]), n=np.array([0, 3, -9]),
             sh=np.array([14, 15, 16])),
    ]
    return nna.write((6, 6, 2), layers)


@pytest.fixture(scope="module")
def program(nna):
    return small_program(nna)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 6, 6, 2)).astype(np.uint8)


def _rejects(data, images, match=None):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        nna_run(data, images)


def test_small_program_is_valid(program, images):
    assert 300 <= len(program) <= 400
    out, stats = nna_run(program, images)
    assert out.shape == (2, 3) and stats.shape == (2, 3, 6)


def test_every_truncation_is_rejected(program, images):
    for n in range(len(program)):
        _rejects(program[:n], images)
    _rejects(program + b"\0", images, "size")


def test_every_byte_flip_is_rejected(program, images):
    for i in range(len(program)):
        bad = bytearray(program)
        bad[i] ^= 0xFF
        _rejects(bytes(bad), images)


# Bytes whose corruption (with a recomputed CRC) may still be a valid program:
# input_scale (any finite positive float), out_exp of codes layers, acc_wide
# 0 -> 1, out_bits of the last layer, the version 3 -> 2 (the fixture has no 1-bit kernel) and the
# constant pool (weights and requantization values), checked below for no crash.
def _may_stay_valid(program, i, xor=0):
    n_layers = struct.unpack_from("<H", program, HEADER_OFFSETS["n_layers"])[0]
    pool_start = HEADER_SIZE + INSTR_SIZE * n_layers
    scale = HEADER_OFFSETS["input_scale"]
    if scale <= i < scale + 4 or i >= pool_start:
        return True
    if i == HEADER_OFFSETS["version"]:
        return program[i] ^ xor == 2 and program[i] == 3
    if i >= HEADER_SIZE:
        layer, off = divmod(i - HEADER_SIZE, INSTR_SIZE)
        weighted = program[_at(layer, "kind")] <= 4
        last = layer == n_layers - 1
        # acc_wide 0 -> 1 is always allowed; out_bits/out_exp of a codes layer are free choices.
        return weighted and (off == INSTR_OFFSETS["acc_wide"]
                             or (off == INSTR_OFFSETS["out_exp"] and not last)
                             or (off == INSTR_OFFSETS["out_bits"] and last))
    return False


def _flips(nna, program, xor):
    """Yields `(offset, program with that byte XORed and the CRC recomputed)`."""
    for i in range(len(program) - 4):
        bad = bytearray(program)
        bad[i] ^= xor
        yield i, nna.fix_crc(bad)


XORS = pytest.mark.parametrize("xor", [0xFF, 0x01, 0x80], ids=["xorFF", "xor01", "xor80"])


@XORS
def test_field_corruption_with_valid_crc_is_rejected(nna, program, images, xor):
    """The CRC is recomputed, so the field checks themselves must catch these."""
    accepted = []
    for i, bad in _flips(nna, program, xor):
        try:
            out, stats = nna_run(bad, images)
        except tf.errors.InvalidArgumentError as err:
            assert "invalid program" in str(err)
            continue
        assert np.isfinite(out.numpy()).all() and stats.shape == (2, 3, 6)
        accepted.append(i)
    unexpected = [i for i in accepted if not _may_stay_valid(program, i, xor)]
    assert not unexpected, f"corrupted bytes accepted at offsets {unexpected}"


H = HEADER_OFFSETS
FIELD_CASES = [
    (H["magic"], b"XNAB", "magic"),
    (H["version"], struct.pack("<H", 4), "version"),
    (H["n_layers"], struct.pack("<H", 0), "n_layers"),
    (H["in_h"], struct.pack("<H", 0), "in_h"),
    (H["in_bits"], b"\x09", "in_bits"),
    (H["flags"], b"\x01", "flags"),
    (H["input_scale"], struct.pack("<f", -1.0), "input_scale"),
    (H["input_scale"], struct.pack("<f", float("nan")), "input_scale"),
    (H["reserved0"], b"\x01", "reserved"),
    (_at(0, "kind"), b"\x09", "kind"),
    (_at(0, "in_bits"), b"\x07", "in_bits"),
    (_at(0, "in_h"), struct.pack("<H", 5), "input shape"),
    (_at(0, "out_h"), struct.pack("<H", 7), "output shape"),
    (_at(0, "kh"), b"\x10", "kernel"),
    (_at(0, "stride_h"), b"\x00", "strides"),
    (_at(0, "pad_top"), b"\x03", "pads"),
    (_at(0, "w_bits"), b"\x09", "w_bits"),
    (_at(0, "w_bits"), b"\x00", "w_bits"),
    (_at(0, "w_enc"), b"\x02", "w_enc"),
    (_at(0, "w_off"), struct.pack("<I", 1 << 30), "outside the constant pool"),
    (_at(0, "w_len"), struct.pack("<I", 3), "length"),
    (_at(0, "w2_off"), struct.pack("<I", 1), "w2"),
    (_at(0, "pool_h"), struct.pack("<H", 2), "pool_h"),
    (_at(0, "acc_wide"), b"\x02", "acc_wide"),
    (_at(0, "reserved", 1), b"\x01", "reserved"),
    (_at(1, "kh"), b"\x02", "kh/kw"),
    (_at(1, "pool_h"), struct.pack("<H", 7), "window"),
    (_at(1, "pad_top"), b"\x01", "pads"),
    (_at(0, "out_bits"), b"\x00", "raw output"),
]
FIELD_IDS = [f"{off}-{match.replace(' ', '_')}" for off, _, match in FIELD_CASES]


@pytest.mark.parametrize("offset,value,match", FIELD_CASES, ids=FIELD_IDS)
def test_field_checks_name_the_field(nna, program, images, offset, value, match):
    bad = bytearray(program)
    bad[offset:offset + len(value)] = value
    _rejects(nna.fix_crc(bad), images, match)
    with pytest.raises(BytecodeError):  # the Python reader rejects it too
        read_program(nna.fix_crc(bad))


def _op_accepts(data, images):
    try:
        nna_run(data, images)
    except tf.errors.InvalidArgumentError:
        return False
    return True


def _reader_accepts(data):
    try:
        read_program(data)
    except BytecodeError:
        return False
    return True


@XORS
def test_reader_and_op_agree_on_corruptions(nna, program, images, xor):
    """read_program and the C++ op accept exactly the same corrupted programs."""
    disagree = [i for i, bad in _flips(nna, program, xor)
                if _reader_accepts(bad) != _op_accepts(bad, images)]
    assert not disagree, f"reader and op disagree on offsets {disagree}"


def test_bounds_are_checked(nna):
    """acc_wide=0 with a worst-case accumulator >= 2^31, and |z| reaching 2^53."""
    w = np.full((15, 15, 512, 1), 127)  # 255 * 127 * 15 * 15 * 512 > 2^31
    layer = dict(kind="conv", w=w, w_bits=8, out_bits=0, acc_wide=0,
                 m=np.array([1]), n=np.array([0]), sh=np.array([1]))
    _rejects(nna.write((15, 15, 512), [layer]), np.zeros((1, 15, 15, 512), np.uint8), "2\\^31")
    layer.update(acc_wide=1, m=np.array([2**31 - 1]))
    _rejects(nna.write((15, 15, 512), [layer]), np.zeros((1, 15, 15, 512), np.uint8), "2\\^53")


@pytest.mark.parametrize("blob,enc,match", [
    ([-8] + [0] * 7, 0, "outside"),          # -2^(b-1) is not a valid code
    ([1] * 5, 0, "length"),                  # too few values
    ([1] * 9, 0, "length"),                  # too many values
    (b"\x01" + b"\x00", 1, "non-zero"),      # sparse: the one packed non-zero is 0
    (b"\x07" + b"\x11", 1, "length"),        # sparse: bitmap says 3, two values stored
    (b"\x01\x01\x00", 1, "length"),          # sparse: trailing byte
], ids=["most-negative", "short", "long", "sparse-zero", "sparse-short", "sparse-long"])
def test_kernel_encoding_errors(nna, blob, enc, match):
    if isinstance(blob, list):
        blob = nna.pack_values(blob, 4)
    layer = dict(kind="dense", w=np.ones((8, 1)), w_bits=4, w_enc=enc, w_blob=blob, out_bits=0,
                 m=[1], n=[0], sh=[1])
    _rejects(nna.write((1, 1, 8), [layer]), np.zeros((1, 1, 1, 8), np.uint8), match)


def test_padding_bits_must_be_zero(nna):
    layer = dict(kind="dense", w=np.ones((3, 1)), w_bits=3, out_bits=0, m=[1], n=[0], sh=[1])
    data = bytearray(nna.write((1, 1, 3), [layer]))
    data[HEADER_SIZE + INSTR_SIZE + 1] |= 0x80  # 9 bits used of 16 (the pool starts the kernel)
    _rejects(nna.fix_crc(data), np.zeros((1, 1, 1, 3), np.uint8), "padding")


@pytest.mark.parametrize("shape", [(2, 6, 6, 3), (2, 6, 5, 2), (6, 6, 2), (1, 2, 6, 6, 2)],
                         ids=["channels", "width", "rank3", "rank5"])
def test_wrong_image_shape(program, shape):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match=r"\[N, 6, 6, 2\]|rank"):
        nna_run(program, np.zeros(shape, np.uint8))


def test_wrong_image_dtype(program):
    with pytest.raises((TypeError, tf.errors.InvalidArgumentError, ValueError)):
        nna_run(program, tf.zeros((1, 6, 6, 2), tf.float32))


def test_program_must_be_scalar(program, images):
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError), match="scalar|rank"):
        nna_run(tf.constant([program, program]), images)


def test_input_codes_above_in_bits(nna):
    layer = dict(kind="dense", w=np.ones((2, 1)), w_bits=2, out_bits=0, m=[1], n=[0], sh=[1])
    data = nna.write((1, 1, 2), [layer], in_bits=4)
    nna_run(data, np.full((1, 1, 1, 2), 15, np.uint8))
    _rejects(data, np.full((1, 1, 1, 2), 16, np.uint8), "4-bit input codes")


def test_unknown_mode(program, images):
    with pytest.raises(ValueError, match="mode"):
        nna_run(program, images, mode="fast")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_random_program_corruptions_do_not_crash(nna, seed):
    rng = np.random.default_rng(seed)
    data, _, in_shape, images = nna.random_program(rng, batch=1)
    for i in range(len(data) - 4):
        bad = bytearray(data)
        bad[i] ^= int(rng.integers(1, 256))
        try:
            nna_run(nna.fix_crc(bad), images)
        except tf.errors.InvalidArgumentError:
            pass
