"""The op refuses version-2 programs that break a rule (docs/bytecode.md, version 2), with
the reason, never crashing; it agrees with `read_program` on corrupted DAG programs."""

import re
import struct

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.export import BytecodeError, read_program
from keras_nna.runtime import nna_run
from tests.runtime.test_op_dag import add_reads_image, long_skip, residual_convs, signed_feeds_all, v1_chain
from tests.runtime.test_op_dag_programs import BASE, HEADER, Dag, held_bytes, patch

OUT_BITS, OUT_EXP, KH, W_BITS, RQ_LEN, ACC_WIDE = 2, 3, 16, 24, 48, 56
SIGNED, SRC, SRC2, RESERVED = 57, 58, 60, 62


def _rejects(data, images, match):
    with pytest.raises(tf.errors.InvalidArgumentError, match=match):
        nna_run(data, images)
    with pytest.raises(BytecodeError):  # the Python reader refuses it too
        read_program(data)


def _header_version(data, version):
    b = bytearray(data[:-4])
    struct.pack_into("<H", b, 4, version)
    return patch(bytes(b) + bytes(4), 0, 0, b[32])  # recomputes the CRC


def _v1_with_add():
    d = Dag(np.ones((1, 2, 2, 1), np.uint8), version=1)
    d.weighted("conv", 0, np.ones((1, 1, 1, 1)), 2, 4, 0)
    d.add(1, 0, 4, 0)
    return d


RES = residual_convs  # 0 conv, 1 conv (signed), 2 ADD(1: a, 2: b), 3 conv, 4 flatten, 5 dense raw
CASES = [
    # (program, layer, offset, value, struct format, expected reason)
    (RES, 0, SIGNED, 2, "<B", "out_signed: expected 0 or 1, got 2"),
    (RES, 3, SRC, 5, "<H", r"layer 3 \(CONV\): src: expected 0-3"),
    (RES, 2, SRC2, 4, "<H", r"layer 2 \(ADD\): src2: expected 0-2"),
    (RES, 3, SRC2, 1, "<H", "src2: expected 0 for this kind"),
    (RES, 1, RESERVED, 1, "<B", "reserved byte 62: expected 0"),
    (RES, 1, RESERVED + 1, 1, "<B", "reserved byte 63: expected 0"),
    (RES, 3, SRC, 1, "<H", r"layer 2 \(ADD\): layer 2's output is never used"),
    (RES, 3, 1, 5, "<B", r"in_bits: expected 4 \(out_bits of its src, layer 2\)"),
    (RES, 3, SRC, 0, "<H", r"in_bits: expected 8 \(out_bits of its src, the image\)"),
    (RES, 2, SRC2, 0, "<H", r"src2 shape: expected 6x6x8 .*got 6x6x3 \(the image\)"),
    (RES, 1, OUT_EXP, 20, "<b", r"input exponents: expected \|fa - fb\| <= 16"),
    (RES, 2, OUT_EXP, -20, "<b", r"out_exp: expected -13 to 19"),
    (RES, 2, RQ_LEN, 5, "<I", r"rq \(off, len\): expected \(0, 0\)"),
    (RES, 2, KH, 2, "<B", "ADD needs kh=kw=stride=1"),
    (RES, 2, ACC_WIDE, 1, "<B", "acc_wide: expected 0 for this kind"),
    (RES, 2, OUT_BITS, 0, "<B", "raw output"),
    (RES, 2, OUT_BITS, 9, "<B", "out_bits: expected 0-8"),
    (RES, 2, W_BITS, 4, "<B", "w_bits/w_enc: expected 0"),
    (RES, 5, SIGNED, 1, "<B", r"out_signed: expected 0 for a raw output"),
    (long_skip, 7, SIGNED, 1, "<B", r"layer 8 \(MAXPOOL\): input: layer 7 outputs signed codes; pools take"),
    (long_skip, 8, SIGNED, 1, "<B", "out_signed: expected 0 for pools"),
    (signed_feeds_all, 5, SIGNED, 0, "<B", "FLATTEN keeps its input's signedness"),
    (signed_feeds_all, 4, SIGNED, 0, "<B", "FLATTEN keeps its input's signedness"),
    (v1_chain, 0, SRC, 1, "<B", "reserved byte 58: expected 0 in a version-1 program"),
]


@pytest.mark.parametrize("make,layer,offset,value,fmt,match", CASES,
                         ids=[f"{m.__name__}-L{l}-{o}={v}" for m, l, o, v, _, _ in CASES])
def test_rule_is_enforced(make, layer, offset, value, fmt, match):
    dag = make(0)
    data, _, _ = dag.program()
    nna_run(data, dag.images)  # valid before the patch
    _rejects(patch(data, layer, offset, value, fmt), dag.images, match)


def test_signed_codes_need_two_bits():
    dag = residual_convs(0)
    data = patch(patch(dag.program()[0], 2, SIGNED, 1), 2, OUT_BITS, 1)
    _rejects(data, dag.images, "out_bits: expected 2-8 for signed codes")


def test_input_shape_from_src():
    dag = residual_convs(0)
    data = patch(patch(dag.program()[0], 3, SRC, 0, "<H"), 3, 1, 8)
    _rejects(data, dag.images, r"input shape: expected 6x6x3 \(output of its src, the image\), got 6x6x8")


def test_versions():
    dag = residual_convs(0)
    data = dag.program()[0]
    _rejects(_header_version(data, 4), dag.images,
             r"unsupported format version 4 \(this reader reads versions 1, 2 and 3\)")
    _rejects(_header_version(data, 1), dag.images, "reserved byte 57: expected 0 in a version-1 program")
    d = _v1_with_add()  # version 1 has no src2: ADD cannot be expressed (the op's rule)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"kind 8 \(ADD\) needs format version 2"):
        nna_run(d.program()[0], d.images)


def test_add_exponent_edges_are_accepted():
    """|fa - fb| = 16 and |F - out_exp| = 16 are inside the rule."""
    for out_exp in (5 - 16, 5 + 16):  # F = max(0, 5) = 5
        dag = add_reads_image(0, relu=True, out_exp=out_exp)
        data, out, stats = dag.program()
        got, got_stats = nna_run(data, dag.images)
        np.testing.assert_array_equal(got.numpy(), out)
        np.testing.assert_array_equal(got_stats.numpy(), stats)
    dag = residual_convs(0)
    data = patch(dag.program()[0], 1, OUT_EXP, 18)  # fb = 18, fa = 2
    nna_run(patch(data, 2, OUT_EXP, 18), dag.images)


def _signed_bound_program():
    """A 15x15x400 conv of 8-bit codes, weights 127, acc_wide 0: worst |acc| = in_max * 127 * 90,000,
    < 2^31 for signed input (in_max 128), >= 2^31 for unsigned (in_max 255)."""
    rng = np.random.default_rng(0)
    d = Dag(rng.integers(0, 256, (2, 15, 15, 1)).astype(np.uint8))
    d.weighted("conv", 0, rng.integers(-127, 128, (1, 1, 1, 400)), 8, 8, 0, signed=True)
    d.weighted("conv", 1, np.full((15, 15, 400, 1), 127), 8, 0)
    return d


def test_worst_case_bound_uses_the_signed_input_range():
    dag = _signed_bound_program()
    data, out, stats = dag.program()
    got, got_stats = nna_run(data, dag.images)
    np.testing.assert_array_equal(got.numpy(), out)
    np.testing.assert_array_equal(got_stats.numpy(), stats)
    _rejects(patch(data, 0, SIGNED, 0), dag.images, "acc_wide=0 but the worst-case accumulator reaches 2")


def _working_set(instr):
    f = BASE.unpack(instr[:BASE.size])
    kind, (ih, iw, ic), (oh, ow, oc), (kh, kw) = f[0], f[4:7], f[7:10], f[10:12]
    pt, pl, pb, pr = f[14:18]
    mid = oh * ow * ic if kind == 3 else 0
    padded = (ih + pt + pb) * (iw + pl + pr) * (-(-ic // 4) * 4) if kind <= 4 else 0
    return 18 * max(ih * iw * ic, oh * ow * oc, mid) + padded


@pytest.mark.parametrize("make", [long_skip, residual_convs, v1_chain], ids=lambda m: m.__name__)
def test_held_outputs_count_in_activation_bytes(make):
    dag = make(0)
    data = dag.program()[0]
    expected = max(_working_set(i) for i in dag.instrs) + held_bytes(dag)
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        nna_run(data, dag.images, limits={"max_activation_bytes": expected - 1})
    got = re.search(r"(\d+) exceeds the limit max_activation_bytes", str(err.value))
    assert got and int(got.group(1)) == expected
    nna_run(data, dag.images, limits={"max_activation_bytes": expected})


@pytest.mark.parametrize("xor", [0xFF, 0x01, 0x80], ids=["xorFF", "xor01", "xor80"])
def test_reader_and_op_agree_on_corrupted_instructions(xor):
    """Every header/instruction byte of a DAG program flipped (CRC fixed): no crash, and the
    op accepts exactly what read_program accepts."""
    dag = signed_feeds_all(0)
    data = dag.program()[0]
    disagree = []
    for i in range(HEADER.size + 64 * len(dag.instrs)):
        b = bytearray(data[:-4])
        b[i] ^= xor
        bad = patch(bytes(b) + bytes(4), 0, 0, b[HEADER.size])
        try:
            nna_run(bad, dag.images)
            op_ok = True
        except tf.errors.InvalidArgumentError as e:
            assert "invalid program" in str(e) or "images" in str(e)
            op_ok = False
        try:
            read_program(bad)
            reader_ok = True
        except BytecodeError:
            reader_ok = False
        if op_ok != reader_ok:
            disagree.append(i)
    assert not disagree, f"reader and op disagree at byte offsets {disagree}"
