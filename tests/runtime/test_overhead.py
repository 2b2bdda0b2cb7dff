"""The op's program cache and the Python fast paths: reuse without staleness.

A call reuses the parsed program when its program tensor shares the buffer
the cache holds, or when its bytes equal a cached program's; it must never
run another program's bytes (buffers freed and reallocated, variables
reassigned, many programs cycling through the 8-entry cache). Functional
only: the speed is measured by benchmarks/op_overhead.py.
"""

import numpy as np
import pytest
import tensorflow as tf

import keras_nna.runtime.op as op_module
from keras_nna.export import LayerRecord, Program, write_program
from keras_nna.export.reference import run_reference
from keras_nna.runtime import Emulator, nna_run

IMAGES = np.array([[[[3, 1]]], [[[0, 7]]], [[[5, 2]]]], np.uint8)


def dense_program(seed, in_bits=8):
    """A 2 -> 3 dense program whose 4-bit weights come from `seed` (same size for every seed)."""
    rng = np.random.default_rng(seed)
    rec = LayerRecord(kind="dense", in_shape=(1, 1, 2), out_shape=(1, 1, 3), in_bits=in_bits,
                      out_bits=0, w_bits=4, weights=rng.integers(-7, 8, (2, 3)),
                      m=np.array([1 << 14] * 3), n=np.zeros(3, np.int64), sh=np.array([14] * 3))
    return write_program(Program((1, 1, 2), in_bits, [rec]))


@pytest.fixture(scope="module")
def programs():
    """Ten same-size programs with pairwise different outputs on IMAGES, and those outputs."""
    out = [(data, run_reference(data, IMAGES)[0]) for data in map(dense_program, range(10))]
    assert len({len(d) for d, _ in out}) == 1
    assert len({o.tobytes() for _, o in out}) == len(out)
    return out


@pytest.mark.parametrize("batch", [0, 1, 3], ids=["empty", "one", "three"])
@pytest.mark.parametrize("kind", ["numpy", "eager"])
def test_fast_path_matches_reference(programs, batch, kind):
    data, ref = programs[0]
    ref_stats = run_reference(data, IMAGES)[1]
    emu = Emulator(data)
    x = IMAGES[:batch] if kind == "numpy" else tf.constant(IMAGES[:batch])
    for _ in range(3):  # first call fills the cache, the next ones hit it
        out, stats = emu.run_with_stats(x)
        assert isinstance(out, np.ndarray) == (kind == "numpy")
        np.testing.assert_array_equal(np.asarray(out), ref[:batch])
        np.testing.assert_array_equal(np.asarray(stats), ref_stats[:batch])
    if kind == "numpy":
        assert stats.events_in.shape == (batch, 1)


def test_emulators_alternate_beyond_cache_capacity(programs):
    emus = [Emulator(data) for data, _ in programs]  # 10 programs > 8 cache entries
    for _ in range(3):
        for emu, (_, ref) in zip(emus, programs):
            np.testing.assert_array_equal(emu.run(IMAGES), ref)
            np.testing.assert_array_equal(emu(IMAGES[:1]), ref[:1])


def test_fresh_tensors_never_run_a_stale_program(programs):
    # Each tensor is dropped right after its call, so the allocator may hand its
    # buffer (same size) to the next program's tensor.
    for i in range(40):
        data, ref = programs[i % 3]
        out, _ = nna_run(tf.constant(data), IMAGES)
        np.testing.assert_array_equal(out.numpy(), ref)


def test_reassigned_variable_runs_the_new_program(programs):
    var = tf.Variable(programs[0][0])
    run = tf.function(lambda x: nna_run(var.read_value(), x)[0])
    for i in [0, 1, 1, 2, 0, 3]:
        data, ref = programs[i]
        var.assign(data)
        np.testing.assert_array_equal(nna_run(var.read_value(), IMAGES)[0].numpy(), ref)
        np.testing.assert_array_equal(run(tf.constant(IMAGES)).numpy(), ref)


def test_nna_run_bytes_objects(programs):
    for i in range(12):  # more bytes objects than nna_run keeps tensors for
        data, ref = programs[i % 6]
        for program in (data, bytes(bytearray(data)), bytearray(data), memoryview(data)):
            np.testing.assert_array_equal(nna_run(program, IMAGES)[0].numpy(), ref)
    assert len(op_module._tensors) <= op_module._MAX_TENSORS
    assert all(t.numpy() == d for d, t in op_module._tensors.values())


def test_graph_mode_uses_the_program(programs):
    (data_a, ref_a), (data_b, ref_b) = programs[:2]
    emu_a, emu_b = Emulator(data_a), Emulator(data_b)
    run_a, run_b = tf.function(emu_a.run), tf.function(emu_b.run)
    x = tf.constant(IMAGES)
    for _ in range(2):
        np.testing.assert_array_equal(run_a(x).numpy(), ref_a)
        np.testing.assert_array_equal(run_b(x).numpy(), ref_b)
        np.testing.assert_array_equal(run_a(x[:1]).numpy(), ref_a[:1])


def test_limits_are_part_of_the_key(programs):
    data, ref = programs[0]
    np.testing.assert_array_equal(Emulator(data).run(IMAGES), ref)
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_work"):
        Emulator(data, limits={"max_work": 1})
    np.testing.assert_array_equal(Emulator(data, limits={"max_work": 10**6}).run(IMAGES), ref)


@pytest.mark.parametrize("images, match", [
    (IMAGES[0], r"shape \(N, 1, 1, 2\)"),
    (np.zeros((1, 1, 1, 3), np.uint8), r"shape \(N, 1, 1, 2\)"),
    (tf.zeros((1, 1, 2, 2), tf.uint8), r"shape \(N, 1, 1, 2\)"),
    (np.full((1, 1, 1, 2), 0.5), "whole numbers"),
    (np.full((1, 1, 1, 2), 300), "whole numbers"),
], ids=["rank3", "channels", "eager-width", "fraction", "over-255"])
def test_refused_images(programs, images, match):
    with pytest.raises(ValueError, match=match):
        Emulator(programs[0][0]).run(images)


def test_refused_mode(programs):
    emu = Emulator(programs[0][0])
    with pytest.raises(ValueError, match="mode must be one of"):
        emu.run(IMAGES, mode="turbo")
    with pytest.raises(ValueError, match="mode must be one of"):
        Emulator(programs[0][0], mode="turbo")


def test_low_bit_input_keeps_value_checks():
    data = dense_program(0, in_bits=4)
    emu = Emulator(data)
    ok = np.array([[[[15, 3]]]], np.uint8)
    np.testing.assert_array_equal(emu.run(ok), run_reference(data, ok)[0])
    with pytest.raises(ValueError, match=r"\[0, 15\]"):
        emu.run(np.array([[[[16, 3]]]], np.uint8))


def test_converted_inputs_match(programs):
    data, ref = programs[0]
    emu = Emulator(data)
    for x in (IMAGES.astype(np.int64), IMAGES.astype(np.float32), tf.constant(IMAGES, tf.int32)):
        np.testing.assert_array_equal(np.asarray(emu.run(x)), ref)
