"""NnaRun op: bit-exactness against the numpy reference, statistics, kernel modes."""

import numpy as np
import pytest

from keras_nna.export import read_program, run_reference, write_program
from keras_nna.runtime import STAT_NAMES, nna_run

EVENTS_IN, SYNOPS, DENSE_MACS, WEIGHT_BYTES, ACT_BYTES_IN, EVENTS_OUT = range(6)
MODES = ("event", "dense", "skip", "auto")
ALL_KINDS = [
    ["conv", "flatten", "dense"],
    ["depthwise", "maxpool", "flatten", "dense"],
    ["separable", "avgpool", "flatten", "dense"],
    ["conv", "separable", "depthwise", "avgpool", "maxpool", "flatten", "dense"],
    ["maxpool", "conv"],
    ["avgpool", "depthwise"],
    ["conv"],
    ["flatten", "dense"],
    ["flatten", "dense", "dense"],
]


def _run(data, images, mode):
    out, stats = nna_run(data, images, mode=mode)
    return out.numpy(), stats.numpy()


def test_stat_names():
    assert STAT_NAMES == ("events_in", "synops", "dense_macs", "weight_bytes", "act_bytes_in",
                          "events_out")


@pytest.mark.parametrize("seed", range(40), ids=lambda s: f"seed{s}")
def test_random_programs_match_reference(nna, seed):
    rng = np.random.default_rng(seed)
    data, layers, in_shape, images = nna.random_program(rng)
    ref_out, ref_stats = nna.run_reference(in_shape, layers, images)
    for mode in MODES:
        out, stats = _run(data, images, mode)
        np.testing.assert_array_equal(out, ref_out, err_msg=mode)
        np.testing.assert_array_equal(stats, ref_stats, err_msg=mode)


def test_generator_is_not_degenerate(nna):
    """Most random programs have events in every layer (else the cross-checks prove little)."""
    alive = 0
    for seed in range(40):
        data, layers, in_shape, images = nna.random_program(np.random.default_rng(seed))
        _, stats = nna.run_reference(in_shape, layers, images)
        alive += bool(stats[:, :, EVENTS_OUT].any(axis=0).all())
    assert alive >= 25


@pytest.mark.parametrize("kinds", ALL_KINDS, ids=lambda k: "-".join(k))
@pytest.mark.parametrize("raw_last", [False, True], ids=["codes", "raw"])
def test_each_kind_matches_reference(nna, kinds, raw_last):
    if raw_last and kinds[-1] not in ("conv", "depthwise", "separable", "dense"):
        pytest.skip("raw output needs a weighted last layer")
    for seed in range(4):
        rng = np.random.default_rng(1000 + seed)
        data, layers, in_shape, images = nna.random_program(rng, kinds=kinds, raw_last=raw_last)
        ref_out, ref_stats = nna.run_reference(in_shape, layers, images)
        for mode in MODES:
            out, stats = _run(data, images, mode)
            np.testing.assert_array_equal(out, ref_out)
            np.testing.assert_array_equal(stats, ref_stats)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40, 400), ids=lambda s: f"seed{s}")
def test_many_random_programs(nna, seed):
    test_random_programs_match_reference(nna, seed)


@pytest.mark.parametrize("seed", range(25), ids=lambda s: f"seed{s}")
def test_export_writer_round_trip(nna, seed):
    """A program read from the test writer's bytes and re-encoded by keras_nna.export's writer
    (which picks dense or sparse kernels itself) runs identically on the op."""
    rng = np.random.default_rng(500 + seed)
    data, _, _, images = nna.random_program(rng, batch=4)
    program = read_program(data)
    rewritten = write_program(program)
    assert read_program(rewritten).layers[-1].out_shape == program.layers[-1].out_shape
    ref_out, ref_stats = run_reference(program, images)
    for mode in MODES:
        out, stats = _run(rewritten, images, mode)
        np.testing.assert_array_equal(out, ref_out)
        # weight_bytes depends on the writer's encoding choice: compare all but that.
        np.testing.assert_array_equal(np.delete(stats, WEIGHT_BYTES, 2),
                                      np.delete(ref_stats, WEIGHT_BYTES, 2))
        np.testing.assert_array_equal(stats[..., WEIGHT_BYTES],
                                      run_reference(rewritten, images)[1].weight_bytes)


def _scatter_synops(image, w, stride, pad, out_hw):
    """Synops by the definition: every input event, every tap landing in the output."""
    syn = 0
    kh, kw = w.shape[:2]
    for y, x, c in zip(*np.nonzero(image)):
        for ky in range(kh):
            for kx in range(kw):
                ty, tx = y + pad[0] - ky, x + pad[1] - kx
                if ty % stride[0] or tx % stride[1]:
                    continue
                oy, ox = ty // stride[0], tx // stride[1]
                if 0 <= oy < out_hw[0] and 0 <= ox < out_hw[1]:
                    syn += int(np.count_nonzero(w[ky, kx, c]))
    return syn


@pytest.mark.parametrize("stride,pad", [((1, 1), (1, 1, 1, 1)), ((2, 2), (1, 1, 1, 1)),
                                        ((2, 1), (0, 2, 2, 0)), ((1, 1), (0, 0, 0, 0))],
                         ids=["s1-same", "s2-same", "asym", "valid"])
def test_hand_made_event_and_synop_counts(nna, stride, pad):
    image = np.zeros((1, 7, 6, 2), np.uint8)
    image[0, 0, 0, 0] = 5      # corner
    image[0, 3, 3, 1] = 200    # centre
    image[0, 6, 5, 0] = 1      # far corner
    image[0, 2, 4, :] = 7      # both channels
    w = np.array([[[[1, 0, -1], [0, 0, 0]], [[2, 0, 0], [1, 1, 1]], [[0, 0, 0], [0, 3, 0]]],
                  [[[0, 1, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]], [[-1, -1, -1], [1, 0, 0]]],
                  [[[3, 0, 0], [0, 0, 2]], [[1, 1, 0], [0, -2, 0]], [[0, 0, 1], [1, 1, 1]]]])
    layer = dict(kind="conv", w=w, w_bits=4, stride=stride, pad=pad, out_bits=4, out_exp=0,
                 m=np.full(3, 1 << 14), n=np.zeros(3, np.int64), sh=np.full(3, 14))
    data = nna.write((7, 6, 2), [layer])
    out_hw = layer["out"][:2]
    for mode in MODES:
        _, stats = _run(data, image, mode)
        assert stats[0, 0, EVENTS_IN] == 5
        assert stats[0, 0, SYNOPS] == _scatter_synops(image[0], w, stride, pad, out_hw)
        assert stats[0, 0, DENSE_MACS] == out_hw[0] * out_hw[1] * 3 * 9 * 2
        assert stats[0, 0, WEIGHT_BYTES] == 27 + 39  # 54 weights x 4 bits (dense) + 3 x 13
        assert stats[0, 0, ACT_BYTES_IN] == min(7 * 6 * 2, (5 * 24 + 7) // 8)


def test_all_zero_input_has_no_events_past_first_layer(nna):
    rng = np.random.default_rng(7)
    _, layers, in_shape, _ = nna.random_program(
        rng, kinds=["conv", "separable", "depthwise", "maxpool", "avgpool", "flatten", "dense"])
    for L in layers:
        if "n" in L:
            L["n"] = np.zeros_like(L["n"])  # no bias: zero in, zero out
    data = nna.write(in_shape, layers)
    for mode in MODES:
        out, stats = _run(data, np.zeros((2,) + in_shape, np.uint8), mode)
        assert not out.any()
        assert not stats[:, :, EVENTS_IN].any()
        assert not stats[:, :, SYNOPS].any()
        assert not stats[:, :, EVENTS_OUT].any()
        assert (stats[:, :, ACT_BYTES_IN] == 0).all()


def test_batch_items_are_independent(nna):
    rng = np.random.default_rng(3)
    data, layers, in_shape, _ = nna.random_program(rng)
    images = rng.integers(0, 256, (9,) + in_shape).astype(np.uint8)
    out, stats = _run(data, images, "auto")
    for i in range(0, 9, 4):
        o1, s1 = _run(data, images[i:i + 1], "auto")
        np.testing.assert_array_equal(o1[0], out[i])
        np.testing.assert_array_equal(s1[0], stats[i])


def test_empty_batch(nna):
    rng = np.random.default_rng(4)
    data, layers, in_shape, _ = nna.random_program(rng, kinds=["conv", "conv"])
    out, stats = _run(data, np.zeros((0,) + in_shape, np.uint8), "auto")
    assert out.shape == (0,) + layers[-1]["out"] and stats.shape == (0, 2, 6)


def test_wide_accumulator_matches(nna):
    """8-bit inputs x 8-bit weights over a 15x15x64 window need int64 accumulation."""
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (15, 15, 64, 2))
    layer = dict(kind="conv", w=w, w_bits=8, out_bits=0, acc_wide=1,
                 m=np.array([20000, -30000]), n=np.array([123, -456]), sh=np.array([30, 31]))
    data = nna.write((15, 15, 64), [layer])
    images = np.full((2, 15, 15, 64), 255, np.uint8)
    images[1] = rng.integers(0, 256, (15, 15, 64))
    ref_out, ref_stats = nna.run_reference((15, 15, 64), [layer], images)
    for mode in MODES:
        out, stats = _run(data, images, mode)
        np.testing.assert_array_equal(out, ref_out)
        np.testing.assert_array_equal(stats, ref_stats)


def test_requantization_rounding_golden(nna):
    """Half rounds up (toward +inf) under the arithmetic shift; clipping at 0 and 2^b - 1."""
    # dense 1 -> 8 channels; acc = x * 1; z = acc * m + n; sh = 2
    n = np.array([-6, -5, -3, -2, 1, 2, 5, 60])
    layer = dict(kind="dense", w=np.ones((1, 8), np.int64), w_bits=2, out_bits=3, out_exp=0,
                 m=np.ones(8, np.int64), n=n, sh=np.full(8, 2))
    data = nna.write((1, 1, 1), [layer])
    out, _ = _run(data, np.zeros((1, 1, 1, 1), np.uint8), "auto")
    # (n + 2) >> 2 clipped to [0, 7]: -6->-1->0, -5->-1->0, -3->-1->0, -2->0, 1->0, 2->1, 5->1, 60->15->7
    np.testing.assert_array_equal(out[0], [0, 0, 0, 0, 0, 1, 1, 7])
    raw = dict(layer, out_bits=0)
    data = nna.write((1, 1, 1), [raw])
    out, _ = _run(data, np.zeros((1, 1, 1, 1), np.uint8), "auto")
    np.testing.assert_array_equal(out[0], n / 4.0)
