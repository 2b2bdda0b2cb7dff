"""Bit-exactness of residual graphs: quantized Keras model == numpy reference == emulator op.

Random residual networks (tests/model_zoo.py, `make_residual_case`): Add of
conv-BN branches with and without the fused ReLU, stride-2 blocks with 1x1
stride-2 conv shortcuts, MobileNetV2-style linear bottlenecks (signed codes)
added or feeding a conv, ZeroPadding2D folded into a valid conv or max pool.
"""

import functools

import numpy as np
import pytest

from keras_nna.export.format import VERSION
from tests.export.test_bitexact import _check_three_way
from tests.model_zoo import make_residual_case

SEEDS = [4, 8]  # the two that cover every block (test below); the rest run with -m slow
SLOW_SEEDS = [0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15]


@functools.lru_cache(maxsize=None)
def _check(seed):
    """Checks seed's case three ways (once per session) and returns its program."""
    qmodel, images = make_residual_case(seed)
    expected, stats, program = _check_three_way(qmodel, images)
    assert np.unique(expected).size > 1, "degenerate case: constant outputs"
    kinds = [r.kind for r in program.layers]
    assert "add" in kinds or "maxpool" in kinds or any(r.out_signed for r in program.layers)
    assert program.to_bytes()[4] == VERSION  # the writer always writes the current version
    # The first layer sees every non-zero pixel; an ADD counts the events of both inputs.
    np.testing.assert_array_equal(stats[:, 0, 0], (images != 0).reshape(len(images), -1).sum(1))
    for i, rec in enumerate(program.layers):
        if rec.kind == "add":
            np.testing.assert_array_equal(stats.events_in[:, i], stats.events_out[:, rec.src - 1]
                                          + stats.events_out[:, rec.src2 - 1])
    return program


@pytest.mark.parametrize("seed", SEEDS, ids=[f"residual{s}" for s in SEEDS])
def test_residual_networks_bit_exact(seed):
    _check(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS, ids=[f"residual{s}" for s in SLOW_SEEDS])
def test_more_residual_networks_bit_exact(seed):
    _check(seed)


def test_the_default_seeds_cover_every_block():
    """Signed ADD, ReLU ADD, a signed input to a conv, folded pads on a max pool (cached runs)."""
    programs = [_check(seed) for seed in (4, 8)]
    layers = [r for p in programs for r in p.layers]
    adds = [r for r in layers if r.kind == "add"]
    assert {r.out_signed for r in adds} == {True, False}
    assert any(r.in_signed and r.kind == "conv" for r in layers)
    assert any(r.kind == "maxpool" and any(r.pads) for r in layers)
