"""NnaRun op on 1-bit kernels (format version 3): bit-exact against the numpy reference in
every kernel mode, and the same refusals as `read_program` on corrupted 1-bit programs."""

import numpy as np
import pytest
import tensorflow as tf

import keras_nna.export.format as fmt
from keras_nna.export import BytecodeError, read_program, run_reference, write_program
from keras_nna.runtime import nna_run
from tests.export.test_binary_kernels import _binary_program, _set_field, _with_version
from tests.runtime.test_op import ALL_KINDS, EVENTS_OUT, MODES


def _assert_matches_reference(data, images):
    ref_out, ref_stats = run_reference(data, images)
    for mode in MODES:
        out, stats = nna_run(data, images, mode=mode)
        np.testing.assert_array_equal(out.numpy(), ref_out, err_msg=mode)
        np.testing.assert_array_equal(stats.numpy(), ref_stats, err_msg=mode)
    return ref_out, ref_stats


@pytest.mark.parametrize("kinds", [k for k in ALL_KINDS if set(k) & {"conv", "depthwise",
                                                                      "separable", "dense"}],
                         ids=lambda k: "-".join(k))
@pytest.mark.parametrize("w_bits", [(1,), (1, 2, 8)], ids=["bits1", "bits1-2-8"])
def test_random_binary_programs_match_reference(nna, kinds, w_bits):
    for seed in range(3):
        rng = np.random.default_rng(2000 + seed)
        data, layers, in_shape, images = nna.random_program(rng, kinds=kinds, w_bits=w_bits)
        assert any(L.get("w_bits") == 1 or L.get("w2_bits") == 1 for L in layers) or w_bits != (1,)
        _assert_matches_reference(data, images)


def test_hand_built_program_matches_reference():
    images = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 2)).astype(np.uint8)
    data = write_program(_binary_program())
    _, stats = _assert_matches_reference(data, images)
    assert stats[:, :3, EVENTS_OUT].all()  # every codes layer emits events: not degenerate


def test_dense_signs_golden():
    """acc = sum x * w with w in {-1, 0, +1}; raw out = acc * m / 2^sh (m = 1, n = 0, sh = 1)."""
    from keras_nna.export import LayerRecord, Program

    dense = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=8,
                        out_bits=0, w_bits=1, weights=np.array([[1, 1], [1, 0], [-1, 1]]),
                        m=np.array([1, 1]), n=np.array([0, 0]), sh=np.array([1, 1]))
    data = write_program(Program((1, 1, 3), 8, [dense]))
    for mode in MODES:
        out, _ = nna_run(data, np.array([[[[10, 20, 40]]]], np.uint8), mode=mode)
        np.testing.assert_array_equal(out.numpy().reshape(-1), [-5.0, 25.0], err_msg=mode)


def _kernel_at(data, layer, name="w"):
    """(absolute offset, length) of layer `layer`'s kernel `name` ("w" or "w2") in `data`."""
    base = fmt.HEADER.size + fmt.INSTR.size * layer
    off, length = (int.from_bytes(data[base + fmt.INSTR_OFFSETS[f"{name}_{k}"]:][:4], "little")
                   for k in ("off", "len"))
    n_layers = fmt.peek_header(data).n_layers
    return fmt.HEADER.size + fmt.INSTR.size * n_layers + off, length


def _patch_byte(data, pos, value):
    body = bytearray(data[:-fmt.CRC.size])
    body[pos] = value
    return bytes(body) + fmt.CRC.pack(fmt.crc32(bytes(body)))


def _corruptions():
    data = write_program(_binary_program())
    conv_at, conv_len = _kernel_at(data, 0)  # dense: 54 codes in 7 bytes, 2 padding bits
    pw_at, pw_len = _kernel_at(data, 1, "w2")  # dense: 6 codes in 1 byte, 2 padding bits
    dw_at, dw_len = _kernel_at(data, 1)  # sparse: 12-code bitmap (2 bytes) + values
    assert (conv_len, pw_len) == (7, 1)
    return [
        ("v2", _with_version(data, 2), "w_bits 1 needs format version 3",
         "w_bits 1 needs format version 3"),
        ("v4", _with_version(data, 4), r"versions 1, 2 and 3\)", r"versions 1, 2 and 3\)"),
        ("dense-padding", _patch_byte(data, conv_at + 6, data[conv_at + 6] | 0x80),
         "non-zero padding bit after the packed values", "padding bits after the packed kernel"),
        ("pointwise-padding", _patch_byte(data, pw_at, data[pw_at] | 0x80),
         "non-zero padding bit after the packed values", "padding bits after the packed kernel"),
        ("bitmap-padding", _patch_byte(data, dw_at + 1, data[dw_at + 1] | 0x80),
         "non-zero padding bit after the sparse bitmap", "padding bits in the sparse bitmap"),
        ("dense-length", _set_field(data, 0, "w_len", conv_len + 1),
         "packed values length 8 != 7", "dense kernel length 8, expected 7"),
        ("bits-zero", _set_field(data, 3, "w_bits", 0), "w_bits: expected 1-8", "w_bits 0 received"),
    ]


CORRUPTIONS = _corruptions()


@pytest.mark.parametrize("data,op_match,py_match", [c[1:] for c in CORRUPTIONS],
                         ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_binary_programs_refused(data, op_match, py_match):
    images = np.zeros((1, 4, 4, 2), np.uint8)
    with pytest.raises(tf.errors.InvalidArgumentError, match=op_match):
        nna_run(data, images)
    with pytest.raises(BytecodeError, match=py_match):
        read_program(data)
