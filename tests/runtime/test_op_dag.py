"""The op on version-2 programs: DAGs (skips, held buffers), signed codes and ADD.

Every program is built by `test_op_dag_programs.Dag`, which computes the
expected outputs and statistics with plain numpy; the op must equal them bit
for bit in modes event/dense/auto, with the AVX-512 VNNI kernels (where the CPU
has them) and with the portable ones (`KERAS_NNA_NO_SIMD=1`, a child process),
and so must `keras_nna.export.run_reference`.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_nna.runtime import nna_run
from tests.runtime.test_op_dag_programs import Dag, held_bytes

MODES = ("event", "dense", "auto")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _w(rng, shape, bits, zeros=0.3):
    lim = (1 << (bits - 1)) - 1
    return rng.integers(-lim, lim + 1, shape) * (rng.random(shape) >= zeros)


def _images(rng, shape, n=3, bits=8, zeros=0.3):
    x = rng.integers(0, 1 << bits, (n, *shape)).astype(np.uint8)
    x[rng.random(x.shape) < zeros] = 0
    return x


def residual_convs(seed, acc_wide=0, clip=False):
    """conv -> conv (signed) -> ADD(relu) of both -> conv -> flatten -> dense (raw)."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (6, 6, 3)), seed=seed)
    enc = seed % 2
    a = d.weighted("conv", 0, _w(rng, (3, 3, 3, 8), 4), 4, 4, 2, pad=(1, 1, 1, 1), acc_wide=acc_wide, enc=enc)
    b = d.weighted("conv", a, _w(rng, (3, 3, 8, 8), 5), 5, 4, 3, signed=True, pad=(1, 1, 1, 1),
                   acc_wide=acc_wide, enc=enc, clip=clip)
    s = d.add(b, a, 4, 2, relu=True)
    c = d.weighted("conv", s, _w(rng, (1, 1, 8, 4), 8), 8, 5, 1, acc_wide=acc_wide, clip=clip)
    f = d.flatten(c)
    d.weighted("dense", f, _w(rng, (144, 3), 6), 6, 0, acc_wide=acc_wide)
    return d


def add_reads_image(seed, relu=False, out_exp=-1):
    """ADD of the image (8-bit, exponent 0) and a signed conv of it (exponent 5)."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (5, 5, 2)), seed=seed)
    a = d.weighted("conv", 0, _w(rng, (3, 3, 2, 2), 8), 8, 8, 5, signed=True, pad=(1, 1, 1, 1))
    d.add(0, a, 6, out_exp, relu=relu)
    return d


def signed_feeds_all(seed, acc_wide=0, clip=False):
    """A signed conv output feeds depthwise, separable, conv, ADD, flatten and dense."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (7, 7, 3)), seed=seed)
    enc = seed % 2
    p1 = d.weighted("conv", 0, _w(rng, (3, 3, 3, 6), 4), 4, 5, 2, signed=True, pad=(1, 1, 1, 1),
                    acc_wide=acc_wide, enc=enc)
    p2 = d.weighted("depthwise", p1, _w(rng, (3, 3, 6), 6), 6, 4, 3, signed=True, pad=(1, 1, 1, 1),
                    acc_wide=acc_wide, enc=enc, clip=clip)
    p3 = d.weighted("separable", p2, _w(rng, (3, 3, 6), 3), 3, 4, 1, w2=_w(rng, (6, 5), 7), w2_bits=7,
                    stride=(2, 2), pad=(1, 1, 1, 1), acc_wide=acc_wide, enc=enc)
    p4 = d.weighted("conv", p2, _w(rng, (3, 3, 6, 5), 5), 5, 6, 2, signed=True, stride=(2, 2),
                    pad=(1, 1, 1, 1), acc_wide=acc_wide, enc=enc, clip=clip)
    p5 = d.add(p3, p4, 5, 2, relu=False)
    p6 = d.flatten(p5)
    d.weighted("dense", p6, _w(rng, (80, 4), 8), 8, 0, acc_wide=acc_wide)
    return d


def signed_last(seed):
    """The last layer outputs signed codes (negative floats), from a signed input."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (4, 4, 2)), seed=seed)
    p = d.weighted("conv", 0, _w(rng, (2, 2, 2, 3), 4), 4, 3, 1, signed=True)
    p = d.flatten(p)
    d.weighted("dense", p, _w(rng, (27, 4), 5), 5, 7, 4, signed=True)
    return d


def long_skip(seed, acc_wide=0, n=3):
    """Two outputs held across several layers at once, and an ADD of the image at the end."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (6, 6, 4), n=n), seed=seed)
    p = [d.weighted("conv", 0, _w(rng, (1, 1, 4, 4), 6), 6, 4, 2, acc_wide=acc_wide)]
    for k in range(4):
        p.append(d.weighted("depthwise", p[-1], _w(rng, (3, 3, 4), 4), 4, 4, 2, pad=(1, 1, 1, 1),
                            signed=k == 3, acc_wide=acc_wide))
    s1 = d.add(p[0], p[-1], 4, 2)              # p[0] held over four layers
    s2 = d.add(s1, p[2], 4, 3, relu=False)     # p[2] held too
    s3 = d.add(s2, 0, 8, 0)                    # the image, exponent 0
    mp = d.maxpool(s3, 2, 2)
    f = d.flatten(mp)
    d.weighted("dense", f, _w(rng, (36, 2), 8), 8, 0)
    return d


def v1_chain(seed):
    """A version-1 chain built the same way (flow bytes zero)."""
    rng = np.random.default_rng(seed)
    d = Dag(_images(rng, (5, 5, 2)), version=1, seed=seed)
    p = d.weighted("conv", 0, _w(rng, (3, 3, 2, 4), 4), 4, 4, 2)
    p = d.maxpool(p, 2, 1)
    p = d.flatten(p)
    d.weighted("dense", p, _w(rng, (16, 3), 4), 4, 0)
    return d


PROGRAMS = {
    "residual": lambda: residual_convs(1),
    "residual-int64": lambda: residual_convs(2, acc_wide=1),
    "residual-clip": lambda: residual_convs(3, clip=True),
    "add-image-signed": lambda: add_reads_image(4),
    "add-image-relu-d<0": lambda: add_reads_image(5, relu=True, out_exp=7),
    "add-image-relu-d>0": lambda: add_reads_image(6, relu=True, out_exp=2),
    "signed-feeds-all": lambda: signed_feeds_all(7),
    "signed-feeds-all-int64": lambda: signed_feeds_all(8, acc_wide=1),
    "signed-feeds-all-clip": lambda: signed_feeds_all(9, clip=True),
    "signed-last": lambda: signed_last(10),
    "long-skip": lambda: long_skip(11),
    "long-skip-int64": lambda: long_skip(12, acc_wide=1),
    "v1-chain": lambda: v1_chain(13),
}


@pytest.fixture(scope="module")
def programs():
    return {name: make() for name, make in PROGRAMS.items()}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_op_equals_expected(programs, name):
    dag = programs[name]
    data, out, stats = dag.program()
    for mode in MODES:
        got, got_stats = nna_run(data, dag.images, mode=mode)
        np.testing.assert_array_equal(got.numpy(), out, err_msg=f"{name} {mode}")
        np.testing.assert_array_equal(got_stats.numpy(), stats, err_msg=f"{name} {mode}")


def test_programs_are_not_degenerate(programs):
    """Codes spread over their range: negatives, clipped values and events in every layer."""
    negatives = clipped = 0
    for dag in programs.values():
        _, _, stats = dag.program()
        assert stats[:, :, 5].sum(0).all(), "a layer without output events"
        for v in dag.vals[1:]:
            if v["x"] is None or not v["signed"]:
                continue
            lo = -(1 << (v["bits"] - 1))
            negatives += int((v["x"] < 0).sum())
            clipped += int(((v["x"] == lo) | (v["x"] == -lo - 1)).sum())
    assert negatives > 100 and clipped > 10, (negatives, clipped)


def test_held_buffers_are_exercised(programs):
    assert held_bytes(programs["long-skip"]) == 2 * 6 * 6 * 4
    assert held_bytes(programs["residual"]) == 6 * 6 * 8
    assert held_bytes(programs["v1-chain"]) == 0


_CHILD = r"""
import sys, numpy as np
from keras_nna.runtime import nna_run
z = np.load(sys.argv[1])
res = {}
for key in z.files:
    if key.startswith("p_"):
        name = key[2:]
        for mode in ("event", "dense", "auto"):
            o, s = nna_run(z[key].tobytes(), z["i_" + name], mode=mode)
            res[f"o_{name}_{mode}"], res[f"s_{name}_{mode}"] = o.numpy(), s.numpy()
np.savez(sys.argv[2], **res)
"""


def test_portable_kernels_equal_expected(programs, tmp_path):
    """KERAS_NNA_NO_SIMD=1 (portable kernels only) in a child process."""
    arrays, expect = {}, {}
    for name, dag in programs.items():
        data, out, stats = dag.program()
        arrays["p_" + name] = np.frombuffer(data, np.uint8)
        arrays["i_" + name] = dag.images
        expect[name] = out, stats
    np.savez(tmp_path / "in.npz", **arrays)
    env = dict(os.environ, KERAS_NNA_NO_SIMD="1", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                   check=True, env=env, timeout=300)
    got = np.load(tmp_path / "out.npz")
    for name, (out, stats) in expect.items():
        for mode in MODES:
            np.testing.assert_array_equal(got[f"o_{name}_{mode}"], out, err_msg=f"{name} {mode}")
            np.testing.assert_array_equal(got[f"s_{name}_{mode}"], stats, err_msg=f"{name} {mode}")


def test_run_reference_agrees(programs):
    """keras_nna.export's numpy reference gives the same outputs and statistics."""
    from keras_nna.export import BytecodeError, run_reference

    for name, dag in programs.items():
        data, out, stats = dag.program()
        try:
            ref_out, ref_stats = run_reference(data, dag.images)
        except BytecodeError as err:
            if "version" in str(err) and name != "v1-chain":
                pytest.skip(f"run_reference does not read version 2 yet: {err}")
            raise
        np.testing.assert_array_equal(ref_out, out, err_msg=name)
        np.testing.assert_array_equal(np.asarray(ref_stats), stats, err_msg=name)


def test_export_writer_round_trip(programs):
    """keras_nna.export reads each program and writes it again (its own encoding choices, version
    3); the op runs the rewritten bytes to the same outputs and statistics but weight_bytes."""
    from keras_nna.export import read_program, write_program

    for name, dag in programs.items():
        data, out, stats = dag.program()
        rewritten = write_program(read_program(data))
        assert rewritten[4:6] == b"\x03\x00", name  # the writer writes version 3
        got, got_stats = nna_run(rewritten, dag.images)
        np.testing.assert_array_equal(got.numpy(), out, err_msg=name)
        np.testing.assert_array_equal(np.delete(got_stats.numpy(), 3, 2), np.delete(stats, 3, 2), err_msg=name)


def test_large_batch_across_threads():
    """64 images of a program with held outputs, sharded over TensorFlow's thread pool (each
    worker thread has its own ping-pong and held buffers)."""
    dag = long_skip(21, n=64)
    data, out, stats = dag.program()
    for mode in MODES:
        got, got_stats = nna_run(data, dag.images, mode=mode)
        np.testing.assert_array_equal(got.numpy(), out, err_msg=mode)
        np.testing.assert_array_equal(got_stats.numpy(), stats, err_msg=mode)
