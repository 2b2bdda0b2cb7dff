"""The op stays in bounds at the largest shapes the parser accepts (issue 12, defect 1).

A layer may be up to 65,535 rows high although the input header caps the height
at 4,096: stride-1 max-pools grow it by ``window - 1`` rows each. Output rows
past 32,767 once wrapped negative in the event kernels (int16 output
coordinates) and the op wrote before its accumulator buffer. The program below
grows a 4,096 x 1 x 1 input past 32,768 rows and then runs two 1x1 convs on it:
the first sees dense input (``auto`` picks a dense kernel, ``event`` the event
kernel), the second sees one non-zero channel in 32 (``auto`` picks the event
kernel). The modes run in a child process so that a crash fails the test
instead of killing pytest.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from keras_nna.export import LayerRecord, Program, read_program, run_reference, write_program

WINDOW = 256  # pool window; pads WINDOW - 1 = 255 (the u8 maximum) add 255 rows per pool
IN_H = 4096
N_POOLS = 113  # 4,096 + 113 * 255 = 32,911 rows > 32,767
WIDE_C = 32  # channels after the first conv: one in 32 is non-zero (density < 4 %)
MODES = ("event", "auto")

_CHILD = r"""
import sys
import numpy as np
from keras_nna.runtime import nna_run
data = open(sys.argv[1], "rb").read()
image = np.load(sys.argv[2])
for mode in sys.argv[4:]:
    out, stats = nna_run(data, image, mode=mode)
    np.savez(f"{sys.argv[3]}/{mode}.npz", out=out.numpy(), stats=stats.numpy())
"""


def tall_program():
    """Max-pools grow the height past 2^15, then two 1x1 convs (8-bit codes, then raw)."""
    layers, h = [], IN_H
    for i in range(N_POOLS):
        oh = h + WINDOW - 1
        layers.append(LayerRecord(
            kind="maxpool", in_shape=(h, 1, 1), out_shape=(oh, 1, 1), in_bits=8, out_bits=8,
            pool=(WINDOW, 1), pads=(WINDOW - 1, 0, WINDOW - 1, 0), name=f"pool{i}"))
        h = oh
    assert h > 2**15
    w1 = np.zeros((1, 1, 1, WIDE_C), np.int64)
    w1[0, 0, 0, 0] = 1  # channel 0 copies the input, the others stay zero
    layers.append(LayerRecord(
        kind="conv", in_shape=(h, 1, 1), out_shape=(h, 1, WIDE_C), in_bits=8, out_bits=8,
        w_bits=2, weights=w1, m=np.full(WIDE_C, 2), n=np.zeros(WIDE_C, np.int64),
        sh=np.ones(WIDE_C, np.int64), name="spread"))  # code = (2 * acc + 1) >> 1 = acc
    w2 = np.zeros((1, 1, WIDE_C, 2), np.int64)
    w2[0, 0, 0] = (3, -2)
    w2[0, 0, 1:] = 1
    layers.append(LayerRecord(
        kind="conv", in_shape=(h, 1, WIDE_C), out_shape=(h, 1, 2), in_bits=8, out_bits=0,
        w_bits=3, weights=w2, m=np.array([1, 1]), n=np.array([0, 5]), sh=np.array([1, 1]),
        name="head"))
    return Program((IN_H, 1, 1), 8, layers)


@pytest.fixture(scope="module")
def tall(tmp_path_factory):
    """Runs the modes in order in one child process; returns (exit, stderr, dir, reference)."""
    tmp = tmp_path_factory.mktemp("tall")
    program = tall_program()
    data = write_program(program)
    read_program(data)  # the Python reader accepts it too
    image = np.random.default_rng(0).integers(1, 256, (1, IN_H, 1, 1)).astype(np.uint8)
    (tmp / "p.nnab").write_bytes(data)
    np.save(tmp / "x.npy", image)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp / "p.nnab"), str(tmp / "x.npy"), str(tmp), *MODES],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ref_out, ref_stats = run_reference(program, image)  # while the child runs
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err.decode(errors="replace")[-2000:], tmp, (ref_out, ref_stats)


@pytest.mark.parametrize("mode", MODES)
def test_tall_layers_match_reference(tall, mode):
    code, err, tmp, (ref_out, ref_stats) = tall
    path = tmp / f"{mode}.npz"
    assert path.exists(), (f"mode={mode} did not finish: the op's process exited with {code} "
                           f"(negative: killed by that signal)\n{err}")
    got = np.load(path)
    np.testing.assert_array_equal(got["stats"], ref_stats)
    np.testing.assert_array_equal(got["out"], ref_out)


def test_tall_program_exercises_the_event_kernel(tall):
    """The head conv's input is sparse enough that `auto` takes the event kernel (< 4 %)."""
    ref_stats = tall[3][1]
    events, elems = ref_stats[0, -1, 0], (IN_H + N_POOLS * (WINDOW - 1)) * WIDE_C
    assert 0 < events / elems < 0.04


def test_op_is_registered_under_its_namespace():
    """The op is `KerasNna>Run` (TensorFlow's namespaced custom-op name), `keras_nna_run` in Python."""
    import tensorflow as tf

    from keras_nna.runtime import nna_run
    from keras_nna.runtime.op import load_op_library

    assert hasattr(load_op_library(), "keras_nna_run")
    data = write_program(Program((1, 1, 1), 8, [LayerRecord(
        kind="maxpool", in_shape=(1, 1, 1), out_shape=(1, 1, 1), in_bits=8, out_bits=8, pool=(1, 1))]))
    graph = tf.function(lambda x: nna_run(data, x)).get_concrete_function(
        tf.TensorSpec((1, 1, 1, 1), tf.uint8)).graph
    assert "KerasNna>Run" in {op.type for op in graph.get_operations()}
