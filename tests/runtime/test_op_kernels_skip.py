"""Every kernel choice of the op is bit-exact: event, dense, zero-skipping ("skip") and auto.

The zero-skipping AVX-512 VNNI kernel skips all-zero windows and all-zero
4-channel groups; these tests feed inputs with many such zeros (and wide
layers, so that a pixel holds several groups) and compare every mode with the
numpy reference. Signed-input CONV/DENSE layers run the VNNI kernel on codes +
128 (dense, skip and auto modes); the signed programs check it against the
expected results of the DAG builder. Without AVX-512 VNNI every mode runs the
portable kernels and the tests still compare them with the reference.
"""

import numpy as np
import pytest

from keras_nna.runtime import MODES, nna_run
from tests.runtime.test_op_dag_programs import Dag

CHANNELS = [4, 8, 13, 16, 40, 64, 130, 260]


def _group_zeros(rng, images, p_group=0.7, p_pixel=0.3):
    """Zeroes whole 4-channel groups (probability p_group) and whole pixels (p_pixel)."""
    x = images.copy()
    n, h, w, c = x.shape
    groups = rng.random((n, h, w, (c + 3) // 4)) < p_group
    x[np.repeat(groups, 4, axis=-1)[..., :c]] = 0
    x[rng.random((n, h, w)) < p_pixel] = 0
    return x


def _check_all_modes(data, images, out, stats):
    for mode in MODES:
        got, got_stats = nna_run(data, images, mode=mode)
        np.testing.assert_array_equal(got.numpy(), out, err_msg=mode)
        np.testing.assert_array_equal(got_stats.numpy(), stats, err_msg=mode)


def test_modes_include_skip():
    assert MODES == ("auto", "event", "dense", "skip")


@pytest.mark.parametrize("channels", CHANNELS, ids=lambda c: f"c{c}")
@pytest.mark.parametrize("zeros", ["groups", "none", "all"])
def test_wide_conv_dense_every_mode(nna, channels, zeros):
    rng = np.random.default_rng(channels)
    for trial in range(3):
        kinds = [["conv", "flatten", "dense"], ["conv", "conv"], ["flatten", "dense"]][trial]
        data, layers, in_shape, images = nna.random_program(
            rng, kinds=kinds, in_shape=(int(rng.integers(3, 8)), int(rng.integers(3, 8)), channels))
        if zeros == "groups":
            images = _group_zeros(rng, images)
        elif zeros == "all":
            images = np.zeros_like(images)
        else:
            images = np.maximum(images, 1)
        out, stats = nna.run_reference(in_shape, layers, images)
        _check_all_modes(data, images, out, stats)


@pytest.mark.parametrize("seed", range(12), ids=lambda s: f"seed{s}")
def test_random_programs_group_zero_inputs(nna, seed):
    rng = np.random.default_rng(1000 + seed)
    data, layers, in_shape, images = nna.random_program(
        rng, in_shape=(int(rng.integers(5, 10)), int(rng.integers(5, 10)), int(rng.integers(4, 24))))
    images = _group_zeros(rng, images, p_group=float(rng.uniform(0.3, 0.95)))
    out, stats = nna.run_reference(in_shape, layers, images)
    _check_all_modes(data, images, out, stats)


def _w(rng, shape, bits, zeros=0.3):
    lim = (1 << (bits - 1)) - 1
    return rng.integers(-lim, lim + 1, shape) * (rng.random(shape) >= zeros)


def _signed_chain(seed, c_mid, w_bits):
    """conv -> signed conv (c_mid channels) -> conv of signed codes -> flatten -> dense of signed codes."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (3, 6, 6, 5)).astype(np.uint8)
    x[rng.random(x.shape) < 0.3] = 0
    d = Dag(x, seed=seed)
    a = d.weighted("conv", 0, _w(rng, (3, 3, 5, c_mid), 4), 4, 8, 2, signed=True, pad=(1, 1, 1, 1))
    b = d.weighted("conv", a, _w(rng, (3, 3, c_mid, 6), w_bits), w_bits, 8, 3, signed=True,
                   pad=(1, 0, 1, 0), stride=(2, 2))
    f = d.flatten(b)
    d.weighted("dense", f, _w(rng, (d.vals[f]["x"][0].size, 3), w_bits), w_bits, 0)
    return d


@pytest.mark.parametrize("c_mid", [3, 8, 21, 64], ids=lambda c: f"c{c}")
@pytest.mark.parametrize("w_bits", [2, 8], ids=lambda b: f"w{b}")
def test_signed_input_vnni_every_mode(c_mid, w_bits):
    d = _signed_chain(c_mid * 10 + w_bits, c_mid, w_bits)
    data, out, stats = d.program()
    assert any(v["signed"] and (v["x"] < 0).any() for v in d.vals[1:])  # negative codes reach a conv
    _check_all_modes(data, d.images, out, stats)
