"""Edge values (issue 12, defect 6): one rule in both readers. Every output code of the
last layer, q * 2^-out_exp, and input_scale must be normal finite float32s; raw outputs
z * 2^-sh always are. Both readers accept or refuse alike, and an accepted program's
outputs equal the numpy reference bit for bit (sign of zero included)."""

import struct

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.export import BytecodeError, LayerRecord, Program, read_program, write_program
from keras_nna.export.format import CRC, HEADER_OFFSETS, crc32
from keras_nna.export.reference import run_reference
from keras_nna.runtime.op import nna_run

IMAGES = np.arange(256, dtype=np.uint8).reshape(256, 1, 1, 1)  # every input code


def _dense(out_bits, out_exp, m=1, n=0, sh=1, w=1, acc_wide=0):
    """1 -> 2 channels: acc = +-x * w, z = acc * m + n, then codes or raw floats."""
    return dict(kind="dense", w=np.array([[w, -w]]), w_bits=8, out_bits=out_bits, out_exp=out_exp,
                m=np.array([m, m]), n=np.array([n, n]), sh=np.array([sh, sh]), acc_wide=acc_wide)


def write(in_shape, layers, in_bits=8):
    """A chain of dense layers (dicts of `_dense`) and 1x1 max pools, unvalidated bytes."""
    records, shape, bits, exp = [], tuple(in_shape), in_bits, 0
    for layer in layers:
        if layer["kind"] == "maxpool":
            rec = LayerRecord("maxpool", shape, shape, bits, bits, exp, pool=layer["pool"])
        else:
            w = layer["w"]
            rec = LayerRecord("dense", shape, (1, 1, w.shape[1]), bits, layer["out_bits"],
                              layer["out_exp"], w_bits=layer["w_bits"], weights=w, m=layer["m"],
                              n=layer["n"], sh=layer["sh"], acc_wide=bool(layer["acc_wide"]))
        records.append(rec)
        shape, bits, exp = rec.out_shape, rec.out_bits, rec.out_exp
    return write_program(Program(tuple(in_shape), in_bits, records, 1 / 255))


def _verdicts(data):
    """(op accepts, read_program accepts, op outputs or None)."""
    try:
        out = nna_run(data, IMAGES)[0].numpy()
        op_ok = True
    except tf.errors.InvalidArgumentError as err:
        assert "invalid program" in str(err)
        out, op_ok = None, False
    try:
        read_program(data)
        py_ok = True
    except BytecodeError:
        py_ok = False
    return op_ok, py_ok, out


def _check(data, accepted):
    op_ok, py_ok, out = _verdicts(data)
    assert (op_ok, py_ok) == (accepted, accepted)
    if accepted:
        ref = run_reference(data, IMAGES)[0]
        assert out.dtype == ref.dtype == np.float32
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))  # bits, signed zeros too
        assert np.all(np.isfinite(out))
        nonzero = out[out != 0]
        assert np.all(np.abs(nonzero) >= np.finfo(np.float32).tiny)  # no denormal output


# (out_bits, out_exp, accepted): accepted iff out_bits - 128 <= out_exp <= 126.
OUT_EXP_CASES = [
    (1, -128, False), (1, -127, True), (2, -127, False), (2, -126, True), (8, -121, False),
    (8, -120, True), (1, 126, True), (1, 127, False), (8, 126, True), (8, 127, False),
    (4, 0, True),
]


@pytest.mark.parametrize("out_bits,out_exp,accepted", OUT_EXP_CASES,
                         ids=[f"bits{b}_exp{e}" for b, e, _ in OUT_EXP_CASES])
def test_codes_last_layer_out_exp(out_bits, out_exp, accepted):
    _check(write((1, 1, 1), [_dense(out_bits, out_exp)]), accepted)


@pytest.mark.parametrize("out_exp", [-128, 127], ids=["exp-128", "exp127"])
def test_out_exp_of_a_pool_after_the_last_codes_layer(out_exp):
    """The rule is the last layer's, whatever its kind (a pool inherits the step)."""
    layers = [_dense(1, out_exp), dict(kind="maxpool", pool=(1, 1))]
    _check(write((1, 1, 1), layers), False)


def test_intermediate_out_exp_is_free():
    layers = [_dense(8, 127), _dense(8, 3)]
    layers[1]["w"] = np.array([[1, -1], [1, 1]])
    layers[1]["m"], layers[1]["n"], layers[1]["sh"] = (np.array([1, 1]), np.array([0, 0]),
                                                       np.array([1, 1]))
    _check(write((1, 1, 1), layers), True)


# Raw last layer: z = acc*m + n with |z| < 2^53, sh 1..62: always normal or +0.
RAW_CASES = {
    "sh62_tiny": dict(sh=62),
    "sh1": dict(sh=1),
    "big_z": dict(m=(1 << 31) - 1, w=127, sh=1, acc_wide=1),
    "negative_n_zero_crossing": dict(n=-1000, m=8, sh=62),
    "z_zero_everywhere": dict(m=0, sh=30),
}


@pytest.mark.parametrize("kw", RAW_CASES.values(), ids=list(RAW_CASES))
def test_raw_last_layer_is_bit_exact(kw):
    _check(write((1, 1, 1), [_dense(0, 0, **kw)]), True)


def _with_scale_bits(data, bits):
    data = bytearray(data)
    data[HEADER_OFFSETS["input_scale"]: HEADER_OFFSETS["input_scale"] + 4] = struct.pack("<I", bits)
    body = bytes(data[:-CRC.size])
    return body + CRC.pack(crc32(body))


SCALE_CASES = {
    "one": (0x3F800000, True), "smallest_normal": (0x00800000, True),
    "largest_finite": (0x7F7FFFFF, True), "largest_denormal": (0x007FFFFF, False),
    "smallest_denormal": (0x00000001, False), "zero": (0, False), "minus_zero": (0x80000000, False),
    "negative": (0xBF800000, False), "inf": (0x7F800000, False), "nan": (0x7FC00000, False),
}


@pytest.mark.parametrize("bits,accepted", SCALE_CASES.values(), ids=list(SCALE_CASES))
def test_input_scale(bits, accepted):
    data = _with_scale_bits(write((1, 1, 1), [_dense(4, 0)]), bits)
    _check(data, accepted)
