"""1-bit kernels (format version 3, docs/bytecode.md): packing, encoder rule, reader checks."""

import struct

import numpy as np
import pytest

import keras_nna.export.format as fmt
from keras_nna.export import BytecodeError, LayerRecord, Program, read_program, write_program
from keras_nna.export.codes import encode_kernel, pack_codes, read_kernel, unpack_codes
from keras_nna.export.reference import run_reference


@pytest.mark.parametrize("codes,expected", [
    ([1, -1, -1, 1, 1, 1, 1, 1, -1], b"\xf9\x00"),  # bit 1 = +1, bit 0 = -1, LSB first
    ([1] * 8, b"\xff"),
    ([-1] * 8, b"\x00"),
    ([-1, 1, -1], b"\x02"),  # zero padding bits after the last field
    ([1] * 9, b"\xff\x01"),
], ids=["mixed9", "plus8", "minus8", "three", "plus9"])
def test_pack_golden(codes, expected):
    assert pack_codes(codes, 1) == expected
    assert unpack_codes(expected, len(codes), 1).tolist() == codes


def test_pack_refuses_zero_and_wide_codes():
    for bad in ([1, 0, -1], [2, 1]):
        with pytest.raises(ValueError, match=r"1-bit codes must be -1 or \+1, received"):
            pack_codes(bad, 1)


@pytest.mark.parametrize("count", [1, 7, 8, 9, 63, 1000], ids=lambda n: f"n{n}")
def test_unpack_round_trip(count):
    codes = np.random.default_rng(count).choice([-1, 1], count)
    data = pack_codes(codes, 1)
    assert len(data) == -(-count // 8)
    np.testing.assert_array_equal(unpack_codes(data, count, 1), codes)


@pytest.mark.parametrize("codes,enc,blob", [
    ([1, -1, -1, 1, 1, 1, 1, 1, -1], 0, b"\xf9\x00"),  # no zero: dense (smaller than sparse)
    ([1, 0, -1], 1, b"\x05\x01"),  # bitmap 101, values +1, -1
    ([0] * 9 + [-1], 1, b"\x00\x02\x00"),
    ([0, 0, 0], 1, b"\x00"),  # all zero: bitmap only
    ([1, 1, 1, 1, 1, 1, 1, 1, 0], 1, b"\xff\x00\xff"),  # one zero forces sparse although larger
], ids=["dense", "sparse", "sparse-one", "all-zero", "forced-sparse"])
def test_encoder_rule(codes, enc, blob):
    assert encode_kernel(codes, 1) == (enc, blob)
    np.testing.assert_array_equal(read_kernel(blob, "k", 0, len(blob), enc, 1, len(codes)), codes)


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
def test_encoder_round_trip(seed):
    rng = np.random.default_rng(seed)
    codes = rng.choice([-1, 1], 50) * (rng.random(50) < (1.0 if seed % 2 else 0.6))
    enc, blob = encode_kernel(codes, 1)
    assert enc == (0 if np.all(codes) else 1)
    np.testing.assert_array_equal(read_kernel(blob, "k", 0, len(blob), enc, 1, 50), codes)


@pytest.mark.parametrize("blob,enc,count,match", [
    (b"\xf9\x02", 0, 9, "non-zero padding bits after the packed kernel"),
    (b"\xf9", 0, 9, "dense kernel length 1, expected 2"),
    (b"\xf9\x00\x00", 0, 9, "dense kernel length 3, expected 2"),
    (b"\x05\x05", 1, 3, "non-zero padding bits after the packed kernel"),
    (b"\x0d\x01", 1, 3, "non-zero padding bits in the sparse bitmap"),
    (b"\x05", 1, 3, r"sparse kernel length 1, expected 2 for 2 non-zeros"),
    (b"\x05\x01\x00", 1, 3, r"sparse kernel length 3, expected 2 for 2 non-zeros"),
    (b"\x05\x01", 2, 3, "unknown weight encoding 2"),
], ids=["dense-padding", "dense-short", "dense-long", "values-padding", "bitmap-padding",
        "sparse-short", "sparse-long", "encoding"])
def test_read_kernel_rejects(blob, enc, count, match):
    with pytest.raises(BytecodeError, match="Invalid program: k: " + match):
        read_kernel(blob, "k", 0, len(blob), enc, 1, count)


def _binary_program():
    """conv (1-bit dense) -> separable (1-bit sparse / 1-bit dense) -> flatten -> dense (1-bit)."""
    rng = np.random.default_rng(3)
    conv = LayerRecord(kind="conv", in_shape=(4, 4, 2), out_shape=(4, 4, 3), in_bits=8,
                       out_bits=4, out_exp=2, kernel_size=(3, 3), pads=(1, 1, 1, 1), w_bits=1,
                       weights=rng.choice([-1, 1], (3, 3, 2, 3)), m=np.full(3, 1 << 14),
                       n=np.array([0, 1 << 16, -(1 << 15)]), sh=np.full(3, 24))
    sep = LayerRecord(kind="separable", in_shape=(4, 4, 3), out_shape=(2, 2, 2), in_bits=4,
                      out_bits=3, out_exp=3, kernel_size=(2, 2), strides=(2, 2), w_bits=1,
                      w2_bits=1, weights=rng.choice([-1, 0, 1], (2, 2, 3)),
                      weights2=rng.choice([-1, 1], (3, 2)), m=np.full(2, 1 << 14),
                      n=np.array([1 << 18, 0]), sh=np.full(2, 19))
    flat = LayerRecord(kind="flatten", in_shape=(2, 2, 2), out_shape=(1, 1, 8), in_bits=3,
                       out_bits=3, out_exp=3)
    dense = LayerRecord(kind="dense", in_shape=(1, 1, 8), out_shape=(1, 1, 2), in_bits=3,
                        out_bits=0, w_bits=1, weights=np.array([[1, -1]] * 4 + [[-1, 0]] * 4),
                        m=np.array([3, 5]), n=np.array([0, 7]), sh=np.array([2, 3]))
    return Program((4, 4, 2), 8, [conv, sep, flat, dense], 1 / 255)


def _with_version(data, version):
    body = bytearray(data[:-fmt.CRC.size])
    struct.pack_into("<H", body, fmt.HEADER_OFFSETS["version"], version)
    return bytes(body) + fmt.CRC.pack(fmt.crc32(bytes(body)))


def _set_field(data, layer, name, value):
    body = bytearray(data[:-fmt.CRC.size])
    body[fmt.HEADER.size + fmt.INSTR.size * layer + fmt.INSTR_OFFSETS[name]] = value
    return bytes(body) + fmt.CRC.pack(fmt.crc32(bytes(body)))


def test_program_round_trip():
    program = _binary_program()
    data = write_program(program)
    assert data[4:6] == b"\x03\x00"  # the writer writes version 3
    assert fmt.weight_encodings(data) == ["dense", "sparse/dense", "", "sparse"]
    back = read_program(data)
    for a, b in zip(program.layers, back.layers):
        assert (a.w_bits, a.w2_bits) == (b.w_bits, b.w2_bits)
        for wa, wb in ((a.weights, b.weights), (a.weights2, b.weights2)):
            if wa is not None:
                np.testing.assert_array_equal(wa, wb)
    assert write_program(back) == data


def test_reference_uses_signs():
    """Dense 1-bit layer, raw output: z = acc * m + n, out = z / 2^sh with acc = sum x * w."""
    dense = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=8,
                        out_bits=0, w_bits=1, weights=np.array([[1, 1], [1, 0], [-1, 1]]),
                        m=np.array([1, 1]), n=np.array([0, 0]), sh=np.array([1, 1]))
    out, _ = run_reference(write_program(Program((1, 1, 3), 8, [dense])),
                           np.array([[[[10, 20, 40]]]], np.uint8))
    np.testing.assert_array_equal(out.reshape(-1), [-10 / 2, 50 / 2])


@pytest.mark.parametrize("version", [1, 2], ids=["v1", "v2"])
def test_old_versions_refuse_one_bit(version):
    data = write_program(_binary_program())
    if version == 1:  # a chain: clear the data-flow bytes (src of layer i is i)
        body = bytearray(data[:-4])
        for i in range(4):
            start = fmt.HEADER.size + fmt.INSTR.size * i
            body[start + 57: start + fmt.INSTR.size] = bytes(7)
        data = bytes(body) + bytes(4)
    with pytest.raises(BytecodeError, match=rf"layer 0 \(conv\): w_bits 1 needs format version 3 "
                                            rf"\(received a version-{version} program"):
        read_program(_with_version(data, version))


def test_v2_refuses_one_bit_pointwise():
    program = _binary_program()
    for rec in program.layers:  # every kernel in 2 bits but the separable's pointwise one
        rec.w_bits = 2 if rec.w_bits else 0
    data = _with_version(write_program(program), 2)
    with pytest.raises(BytecodeError, match=r"layer 1 \(separable\): w2_bits 1 needs format "
                                            r"version 3 \(received a version-2 program"):
        read_program(data)


def test_v2_without_one_bit_still_reads():
    program = _binary_program()
    for rec in program.layers:
        rec.w_bits, rec.w2_bits = (2 if rec.w_bits else 0), (2 if rec.w2_bits else 0)
    data = _with_version(write_program(program), 2)
    assert [r.w_bits for r in read_program(data).layers] == [2, 2, 0, 2]


@pytest.mark.parametrize("bits", [0, 9], ids=["zero", "nine"])
def test_weight_bits_range(bits):
    data = _set_field(write_program(_binary_program()), 3, "w_bits", bits)
    with pytest.raises(BytecodeError, match=rf"layer 3 \(dense\): w_bits {bits} received, "
                                            r"expected 1..8"):
        read_program(data)


def test_unsupported_version_names_all():
    with pytest.raises(BytecodeError, match=r"unsupported format version 4 \(this reader reads "
                                            r"versions 1, 2 and 3\)"):
        read_program(_with_version(write_program(_binary_program()), 4))
