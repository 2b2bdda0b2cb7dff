"""Format version 2: DAG programs, signed codes and ADD in the writer, reader and numpy reference.

Expected outputs are computed here directly from the integer formulas of the
spec (docs/bytecode.md: requantization, signed clip, ADD), independently of
keras_nna.export.reference; the emulator op must agree with both.
"""

import re
import struct

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.export import BytecodeError, LayerRecord, Program, read_program, write_program
from keras_nna.export.format import CRC, HEADER, INSTR, INSTR_OFFSETS, crc32
from keras_nna.export.limits import held_bytes
from keras_nna.export.reference import run_reference
from keras_nna.runtime import Emulator

RNG = np.random.default_rng(7)


def _conv(src, in_shape, out_c, in_bits, out_bits, out_exp, signed=False, k=3, seed=0,
          in_signed=False, m=None):
    """A 'same' stride-1 conv record with random 4-bit weights and requantization."""
    rng = np.random.default_rng(seed)
    h, w, c = in_shape
    pad = (k - 1) // 2
    return LayerRecord(
        kind="conv", in_shape=in_shape, out_shape=(h, w, out_c), in_bits=in_bits,
        out_bits=out_bits, out_exp=out_exp, kernel_size=(k, k), pads=(pad, pad, k - 1 - pad,
                                                                      k - 1 - pad),
        w_bits=4, weights=rng.integers(-7, 8, (k, k, c, out_c)),
        m=np.asarray(m if m is not None else rng.integers(10, 80, out_c)),
        n=rng.integers(-4000, 4000, out_c), sh=np.full(out_c, 14), src=src,
        out_signed=signed, in_signed=in_signed, name=f"conv_src{src}")


def _add(src, src2, shape, in_bits, out_bits, out_exp, relu):
    return LayerRecord(kind="add", in_shape=shape, out_shape=shape, in_bits=in_bits,
                       out_bits=out_bits, out_exp=out_exp, src=src, src2=src2,
                       out_signed=not relu, name="add")


# ---- direct numpy computation from the formulas -------------------------------------------

def _np_conv(x, rec):
    """acc[n, y, x, o] = Σ codes · weights over the zero-padded window, then requantize."""
    pt, pl, pb, pr = rec.pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    kh, kw = rec.kernel_size
    oh, ow, _ = rec.out_shape
    patches = np.stack([xp[:, y:y + kh, xx:xx + kw, :] for y in range(oh) for xx in range(ow)], 1)
    acc = np.einsum("npijc,ijco->npo", patches, rec.weights).reshape(x.shape[0], oh, ow, -1)
    z = acc * rec.m + rec.n
    b = rec.out_bits
    lo, hi = (-(2 ** (b - 1)), 2 ** (b - 1) - 1) if rec.out_signed else (0, 2 ** b - 1)
    return np.clip(np.floor_divide(z + 2 ** (rec.sh - 1), 2 ** rec.sh), lo, hi)


def _np_add(qa, fa, qb, fb, bo, fo, relu):
    """Spec 1b: F = max(fa, fb); S = qa 2^(F-fa) + qb 2^(F-fb); round-half-up shift by F - fo."""
    big = max(fa, fb)
    total = qa * 2 ** (big - fa) + qb * 2 ** (big - fb)
    d = big - fo
    v = np.floor_divide(total + 2 ** (d - 1), 2 ** d) if d > 0 else total * 2 ** (-d)
    lo, hi = (0, 2 ** bo - 1) if relu else (-(2 ** (bo - 1)), 2 ** (bo - 1) - 1)
    return np.clip(v, lo, hi)


def _images(shape, n=4, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype(np.uint8)


def _check(program, images, expected_codes, out_exp):
    """Round trip (v2, byte-identical), reference output and ADD statistics."""
    data = write_program(program)
    assert data[4] == 3  # the writer writes version 3 (a DAG: version >= 2)
    again = read_program(data)
    assert write_program(again) == data
    out, stats = run_reference(data, images)
    expected = np.ldexp(expected_codes.astype(np.float64), -out_exp).astype(np.float32)
    np.testing.assert_array_equal(out, expected.reshape(out.shape))
    emulator = Emulator(data)
    for mode in ("auto", "event", "dense"):  # the C++ op agrees, statistics included
        emu_out, emu_stats = emulator.run_with_stats(images, mode=mode)
        np.testing.assert_array_equal(emu_out, out)
        np.testing.assert_array_equal(emu_stats, stats)
    return again, out, stats


# ---- DAG programs --------------------------------------------------------------------------

SHAPE = (5, 6, 2)


def _two_convs_add(relu, fa, fb, fo, bits=(4, 5), out_bits=6):
    a = _conv(0, SHAPE, 3, 8, bits[0], fa, seed=1)
    b = _conv(0, SHAPE, 3, 8, bits[1], fb, signed=not relu, seed=2)
    if not relu:
        b.n = b.n - 12000  # signed codes on both sides of zero
    add = _add(1, 2, (5, 6, 3), bits[0], out_bits, fo, relu)
    return Program(SHAPE, 8, [a, b, add]), a, b


ADD_CASES = {
    "relu-same-exp": (True, 2, 2, 2),
    "signed-same-exp": (False, 2, 2, 1),
    "diff-exp-shift-right": (True, 1, 4, 2),
    "diff-exp-shift-left": (False, 1, 0, 2),
    "diff-exp-rounding": (False, 0, 3, 0),
}


@pytest.mark.parametrize("relu,fa,fb,fo", ADD_CASES.values(), ids=list(ADD_CASES))
def test_add_of_two_convs(relu, fa, fb, fo):
    program, a, b = _two_convs_add(relu, fa, fb, fo)
    images = _images(SHAPE)
    qa, qb = _np_conv(images.astype(np.int64), a), _np_conv(images.astype(np.int64), b)
    expected = _np_add(qa, fa, qb, fb, 6, fo, relu)
    assert np.unique(expected).size > 3, "degenerate case"
    again, _, stats = _check(program, images, expected, fo)
    assert [(r.src, r.src2) for r in again.layers] == [(0, 0), (0, 0), (1, 2)]
    # ADD statistics: events of both inputs, one addition per event, 2 MACs per output element.
    ev_a, ev_b = ((q != 0).sum(axis=(1, 2, 3)) for q in (qa, qb))
    np.testing.assert_array_equal(stats.events_in[:, 2], ev_a + ev_b)
    np.testing.assert_array_equal(stats.synops[:, 2], ev_a + ev_b)
    assert (stats.dense_macs[:, 2] == 2 * 5 * 6 * 3).all() and (stats.weight_bytes[:, 2] == 0).all()
    dense = -(-90 * 4 // 8) + -(-90 * 5 // 8)
    sparse = -(-(ev_a * (4 + 16) + ev_b * (5 + 16)) // 8)
    np.testing.assert_array_equal(stats.act_bytes_in[:, 2], np.minimum(dense, sparse))
    np.testing.assert_array_equal(stats.events_out[:, 2], (expected != 0).sum(axis=(1, 2, 3)))
    # Layer 1 reads the image (src 0), not layer 0's output.
    np.testing.assert_array_equal(stats.events_in[:, 1], (images != 0).sum(axis=(1, 2, 3)))


def test_add_with_the_image_as_an_input():
    conv = _conv(0, SHAPE, 2, 8, 8, -2, seed=3)  # step 4: codes of the same magnitude
    add = _add(0, 1, SHAPE, 8, 8, -1, relu=True)
    images = _images(SHAPE)
    q = _np_conv(images.astype(np.int64), conv)
    expected = _np_add(images.astype(np.int64), 0, q, -2, 8, -1, True)
    assert np.unique(expected).size > 3
    again, _, stats = _check(Program(SHAPE, 8, [conv, add]), images, expected, -1)
    assert (again.layers[1].src, again.layers[1].src2, again.layers[1].in_bits) == (0, 1, 8)
    np.testing.assert_array_equal(stats.events_in[:, 1],
                                  (images != 0).sum(axis=(1, 2, 3)) + (q != 0).sum(axis=(1, 2, 3)))


def test_signed_conv_feeds_a_conv_and_an_add():
    """conv0 (signed 5-bit) -> conv1 (signed input) ; add(conv0, conv1) signed; dense raw."""
    c0 = _conv(0, SHAPE, 3, 8, 5, 1, signed=True, seed=4)
    c0.n = c0.n - 60000  # push many codes negative
    c1 = _conv(1, (5, 6, 3), 3, 5, 4, 1, seed=5, in_signed=True)
    add = _add(1, 2, (5, 6, 3), 5, 6, 1, relu=False)
    images = _images(SHAPE)
    q0 = _np_conv(images.astype(np.int64), c0)
    assert q0.min() < 0 < q0.max()
    q1 = _np_conv(q0, c1)
    expected = _np_add(q0, 1, q1, 1, 6, 1, False)
    assert expected.min() < 0 < expected.max()
    again, _, stats = _check(Program(SHAPE, 8, [c0, c1, add]), images, expected, 1)
    assert [r.out_signed for r in again.layers] == [True, False, True]
    assert [r.in_signed for r in again.layers] == [False, True, True]
    assert [(r.src, r.src2) for r in again.layers] == [(0, 0), (1, 0), (1, 2)]
    assert held_bytes(again.layers) == 5 * 6 * 3  # conv0's output outlives conv1
    np.testing.assert_array_equal(stats.events_in[:, 1], (q0 != 0).sum(axis=(1, 2, 3)))


def test_version_1_program_still_reads_and_runs():
    """A chain written as version 1 (bytes 57..63 zero, src implied) runs like its v2 twin."""
    c0 = _conv(None, SHAPE, 3, 8, 4, 1, seed=6)
    c1 = _conv(None, (5, 6, 3), 2, 4, 0, 0, seed=7)
    v2 = write_program(Program(SHAPE, 8, [c0, c1]))
    v1 = _as_version_1(v2)
    assert v1[4] == 1 and v1 != v2
    program = read_program(v1)
    assert [(r.src, r.src2) for r in program.layers] == [(0, 0), (1, 0)]
    assert write_program(program) == v2
    images = _images(SHAPE)
    out1, stats1 = run_reference(v1, images)
    out2, stats2 = run_reference(v2, images)
    np.testing.assert_array_equal(out1, out2)
    np.testing.assert_array_equal(stats1, stats2)
    # The raw last layer against the direct formula z * 2^-sh.
    q0 = _np_conv(images.astype(np.int64), c0)
    pt, pl, pb, pr = c1.pads
    xp = np.pad(q0, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    expected_z = sum(np.einsum("nyxc,co->nyxo", xp[:, i:i + 5, j:j + 6, :], c1.weights[i, j])
                     for i in range(3) for j in range(3)) * c1.m + c1.n
    np.testing.assert_array_equal(out1, np.ldexp(expected_z.astype(np.float64), -14)
                                  .astype(np.float32))


# ---- byte patching helpers -----------------------------------------------------------------

def _fix_crc(body):
    return body + CRC.pack(crc32(body))


def _patch(data, layer, **fields):
    """Sets instruction fields of `layer` (struct formats of INSTR) and recomputes the CRC."""
    data = bytearray(data[:-CRC.size])
    base = HEADER.size + INSTR.size * layer
    letters = [c for c in INSTR.format.lstrip("<") if not c.isdigit()]  # one per field
    for name, value in fields.items():
        at = base + INSTR_OFFSETS[name]
        if name == "reserved":
            data[at: at + 2] = value
        else:
            struct.pack_into("<" + letters[list(INSTR_OFFSETS).index(name)], data, at, value)
    return _fix_crc(bytes(data))


def _as_version_1(v2):
    data = bytearray(v2[:-CRC.size])
    data[4:6] = (1).to_bytes(2, "little")
    n = int.from_bytes(data[6:8], "little")
    for i in range(n):
        at = HEADER.size + INSTR.size * i + 57
        data[at: at + 7] = bytes(7)
    return _fix_crc(bytes(data))


# ---- reader rules of version 2 -------------------------------------------------------------

def _signed_base():
    """conv0 signed -> conv1 ; add(conv0, conv1) signed -> flatten (signed) -> dense raw."""
    c0 = _conv(0, SHAPE, 3, 8, 5, 1, signed=True, seed=4)
    c1 = _conv(1, (5, 6, 3), 3, 5, 4, 1, seed=5, in_signed=True)
    add = _add(1, 2, (5, 6, 3), 5, 6, 1, relu=False)
    flat = LayerRecord("flatten", (5, 6, 3), (1, 1, 90), 6, 6, 1, out_signed=True)
    dense = LayerRecord("dense", (1, 1, 90), (1, 1, 2), 6, 0, w_bits=3,
                        weights=RNG.integers(-3, 4, (90, 2)), m=np.array([3, 5]),
                        n=np.array([0, 7]), sh=np.array([4, 4]), in_signed=True)
    return write_program(Program(SHAPE, 8, [c0, c1, add, flat, dense]))


def _pool_base(signed):
    c0 = _conv(0, SHAPE, 3, 8, 4, 1, signed=signed, seed=4)
    pool = LayerRecord("maxpool", (5, 6, 3), (2, 3, 3), 4, 4, 1, pool=(2, 2), strides=(2, 2))
    return write_program(Program(SHAPE, 8, [c0, pool]))


def _unused():
    c0 = _conv(0, SHAPE, 3, 8, 4, 1, seed=4)
    c1 = _conv(0, SHAPE, 3, 8, 4, 1, seed=5)
    return write_program(Program(SHAPE, 8, [c0, c1]))


def _v1_with_src():
    c0, c1 = _conv(None, SHAPE, 3, 8, 4, 1, seed=6), _conv(None, (5, 6, 3), 2, 4, 4, 1, seed=7)
    return _patch(_as_version_1(write_program(Program(SHAPE, 8, [c0, c1]))), 1, src=1)


REJECTS = [
    ("src-ahead", lambda d: _patch(d, 1, src=2),
     r"layer 1 \(conv\): src 2 received, expected 0..1"),
    ("src2-ahead", lambda d: _patch(d, 2, src2=3),
     r"layer 2 \(add\): src2 3 received, expected 0..2"),
    ("src2-on-conv", lambda d: _patch(d, 1, src2=1),
     r"layer 1 \(conv\): src2 1 received, expected 0 \(only ADD"),
    ("out-signed-2", lambda d: _patch(d, 0, out_signed=2),
     r"layer 0 \(conv\): out_signed 2 received, expected 0 or 1"),
    ("reserved", lambda d: _patch(d, 0, reserved=b"\x01\x00"),
     r"layer 0 \(conv\): reserved bytes 62..63 0100 received, expected 0000"),
    ("v1-bytes-57-63", lambda d: _v1_with_src(),
     r"layer 1 \(conv\): bytes 57..63 must be 0 in a version-1 program \(received out_signed 0, "
     r"src 1"),
    ("producer-shape", lambda d: _patch(d, 1, src=0),
     r"layer 1 \(conv\): input shape \(5, 6, 3\) received, expected \(5, 6, 2\) \(the output of "
     r"the input image \(src 0\)\)"),
    ("producer-bits", lambda d: _patch(d, 2, in_bits=4),
     r"layer 2 \(add\): in_bits 4 received, expected 5 \(the out_bits of layer 0 \(src 1\)\)"),
    ("add-second-shape", lambda d: _patch(d, 2, src2=0),
     r"layer 2 \(add\): second input shape \(5, 6, 2\) \(the output of the input image \(src 0\)"
     r"\) != first input shape \(5, 6, 3\)"),
    ("add-kernel", lambda d: _patch(d, 2, kh=3),
     r"layer 2 \(add\): kh, kw, strides, pads \(3, 1, 1, 1, 0, 0, 0, 0\) received, expected"),
    ("add-out-shape", lambda d: _patch(d, 2, out_c=2),
     r"layer 2 \(add\): output shape \(5, 6, 2\) received, expected \(5, 6, 3\)"),
    ("add-exp-gap", lambda d: _patch(d, 0, out_exp=18),
     r"layer 2 \(add\): input exponents 18 and 1 differ by 17, expected at most 16"),
    ("add-out-exp", lambda d: _patch(d, 2, out_exp=18),
     r"layer 2 \(add\): out_exp 18 received, expected -15..17"),
    ("add-raw", lambda d: _patch(d, 2, out_bits=0),
     r"layer 2 \(add\): raw output \(out_bits 0\) is only allowed on a weighted last layer"),
    ("add-kernel-fields", lambda d: _patch(d, 2, w_bits=4),
     r"layer 2 \(add\): kernel fields must be 0 for pools, flatten and add"),
    ("add-acc-wide", lambda d: _patch(d, 2, acc_wide=1),
     r"layer 2 \(add\): acc_wide must be 0 for pools, flatten and add"),
    ("signed-1-bit", lambda d: _patch(d, 0, out_bits=1),
     r"layer 0 \(conv\): signed output with out_bits 1 received, expected 2..8"),
    ("flatten-signedness", lambda d: _patch(d, 3, out_signed=0),
     r"layer 3 \(flatten\): out_signed 0 received, expected 1 \(flatten keeps"),
    ("raw-signed", lambda d: _patch(d, 4, out_signed=1),
     r"layer 4 \(dense\): raw output must have out_exp 0 and out_signed 0 \(received 0, 1\)"),
    ("pool-signed-input", lambda d: _pool_base(signed=True),
     r"layer 1 \(maxpool\): pools take unsigned \(ReLU\) codes: its input is signed, expected "
     r"unsigned"),
    ("pool-signed-output", lambda d: _patch(_pool_base(signed=False), 1, out_signed=1),
     r"layer 1 \(maxpool\): out_signed 1 received, expected 0 \(pools output unsigned"),
    ("unused-output", lambda d: _unused(),
     r"layer 0 \(conv\): layer 0's output is never used \(expected a later layer with src or "
     r"src2 = 1"),
]


def test_signed_base_is_valid():
    program = read_program(_signed_base())
    assert [r.kind for r in program.layers] == ["conv", "conv", "add", "flatten", "dense"]
    out, _ = run_reference(program, _images(SHAPE))
    assert out.shape == (4, 2)


@pytest.mark.parametrize("corrupt,match", [(c, m) for _, c, m in REJECTS],
                         ids=[name for name, _, _ in REJECTS])
def test_reader_rules_of_version_2(corrupt, match):
    data = corrupt(_signed_base())
    with pytest.raises(BytecodeError, match="Invalid program: " + match):
        read_program(data)
    layer = re.match(r"layer (\d+)", match).group(1)  # the C++ reader refuses the same layer
    with pytest.raises(tf.errors.InvalidArgumentError, match=rf"invalid program: layer {layer} "):
        Emulator(data).run(_images(SHAPE))


def _bound_program(signed):
    """dense 1 -> 166 (8-bit codes, signed or not) -> dense 166 -> 1 with w = 127, m = 2^31 - 1:
    worst |z| = in_max * 166 * 127 * m is < 2^53 for in_max 128 (signed), >= 2^53 for 255."""
    first = LayerRecord("dense", (1, 1, 1), (1, 1, 166), 8, 8, 0, w_bits=2,
                        weights=np.ones((1, 166), np.int64), m=np.ones(166, np.int64),
                        n=np.zeros(166, np.int64), sh=np.ones(166, np.int64), out_signed=signed)
    second = LayerRecord("dense", (1, 1, 166), (1, 1, 1), 8, 0, w_bits=8,
                         weights=np.full((166, 1), 127), m=np.array([(1 << 31) - 1]),
                         n=np.array([0]), sh=np.array([62]), in_signed=signed)
    return write_program(Program((1, 1, 1), 8, [first, second]))


def test_worst_case_bounds_use_the_signed_in_max():
    assert read_program(_bound_program(True)).layers[1].in_signed
    with pytest.raises(BytecodeError, match=r"layer 1 \(dense\): worst-case requantization value "
                                            r"reaches 2\^53"):
        read_program(_bound_program(False))


def test_held_outputs_count_in_the_activation_limit():
    from keras_nna.export.format import instruction
    from keras_nna.export.limits import layer_costs

    data = _signed_base()
    peak = max(layer_costs(instruction(data, i))[1] for i in range(5))
    assert held_bytes(read_program(data).layers) == 90
    read_program(data, limits={"max_activation_bytes": peak + 90})
    with pytest.raises(BytecodeError, match=rf"peak activation bytes \(layer \d\) with 90 bytes of "
                                            rf"held outputs {peak + 90} exceeds the limit"):
        read_program(data, limits={"max_activation_bytes": peak + 89})


def test_chain_programs_hold_nothing():
    c0, c1 = _conv(None, SHAPE, 3, 8, 4, 1, seed=6), _conv(None, (5, 6, 3), 2, 4, 4, 1, seed=7)
    assert held_bytes([c0, c1]) == 0
