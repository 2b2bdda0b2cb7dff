"""Program-wide limits (issue 12, defect 2): small valid programs that would take the
machine hostage are refused by both readers, quickly and before allocating; raising the
limit explicitly makes both accept them; both readers compute the same numbers."""

import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from keras_nna.export import read_program
from keras_nna.export.format import BytecodeError, instruction, peek_header
from keras_nna.export.limits import DEFAULT_LIMITS, layer_costs
from keras_nna.runtime import Emulator
from keras_nna.runtime.op import nna_run

_VALUE = re.compile(r"(\d+) exceeds the limit (\w+) = (\d+)")


def _ones_rq(c):
    return dict(m=np.ones(c, np.int64), n=np.zeros(c, np.int64), sh=np.ones(c, np.int64))


def _deep_depthwise(nna):
    """1,024 chained 15x15 depthwise layers on 512x512x4 (~1.2 MB): ~10^11 operations."""
    layer = dict(kind="depthwise", w=np.ones((15, 15, 4), np.int64), w_bits=2, pad=(7, 7, 7, 7),
                 out_bits=8, **_ones_rq(4))
    return nna.write((512, 512, 4), [dict(layer) for _ in range(1024)])


def _huge_pointwise(nna):
    """A 372-byte 1x1 conv on 4096x4096x16: 2^28-element tensors (GBs of scratch)."""
    w = np.ones((1, 1, 16, 16), np.int64)
    layer = dict(kind="conv", w=w, w_bits=2, out_bits=8, **_ones_rq(16))
    return nna.write((4096, 4096, 16), [layer])


def _grown_pixel(nna):
    """A 1-pixel input grown to 57x57x65,535 by a dense layer and a padded max pool."""
    dense = dict(kind="dense", w=np.ones((1, 65535), np.int64), w_bits=2, out_bits=8,
                 **_ones_rq(65535))
    pool = dict(kind="maxpool", pool=(57, 57), pad=(56, 56, 56, 56))
    return nna.write((1, 1, 1), [dense, pool])


def _sparse_kernel(nna):
    """An 8.4 MB sparse all-zero kernel that decodes to just over 2^26 int16 weights."""
    dense = dict(kind="dense", w=np.zeros((8192, 8193), np.int8), w_bits=2, w_enc=1, out_bits=8,
                 **_ones_rq(8193))
    return nna.write((1, 1, 8192), [dense])


HOSTILE = {"deep_depthwise": (_deep_depthwise, "max_work"),
           "huge_pointwise": (_huge_pointwise, "max_activation_bytes"),
           "grown_pixel": (_grown_pixel, "max_work"),
           "sparse_kernel": (_sparse_kernel, "max_constant_bytes")}

_CHILD = textwrap.dedent("""
    import resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    import numpy as np, tensorflow as tf
    from keras_nna.export import read_program
    from keras_nna.export.format import peek_header
    from keras_nna.runtime.op import load_op_library
    op = load_op_library()
    data = open(sys.argv[1], "rb").read()
    h = peek_header(data)
    images = np.zeros((0, h.in_h, h.in_w, h.in_c), np.uint8)  # parsing is what is tested
    for name, call in (("op", lambda: op.keras_nna_run(program=data, images=images)),
                       ("python", lambda: read_program(data))):
        start = time.perf_counter()
        try:
            call()
            print(name, "ACCEPTED")
        except Exception as err:  # the refusal, with its message on one line
            print(name, round(time.perf_counter() - start, 3), str(err).replace("\\n", " "))
""")


@pytest.mark.parametrize("build,limit", HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_program_refused_fast_without_allocating(nna, tmp_path, build, limit):
    path = tmp_path / "hostile.nnab"
    path.write_bytes(build(nna))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                          text=True, timeout=300, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("op ", "python "))]
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout + proc.stderr[-3000:]
    for line in lines:
        reader, seconds, message = line.split(" ", 2)
        assert seconds != "ACCEPTED", line
        assert float(seconds) < 2.0, line
        assert _VALUE.search(message), line
        value, name, bound = _VALUE.search(message).groups()
        # the op ran without limit attributes: its C++ defaults are Python's
        assert name == limit and int(bound) == DEFAULT_LIMITS[limit], line
        assert "limits={" in message and "per image" in message, line


def _costs(data):
    return [layer_costs(instruction(data, i)) for i in range(peek_header(data).n_layers)]


@pytest.mark.parametrize("build,limit", HOSTILE.values(), ids=list(HOSTILE))
def test_raised_limits_accept_hostile_program(nna, build, limit):
    data = build(nna)
    costs = _costs(data)
    raised = {"max_work": sum(c[0] for c in costs),
              "max_activation_bytes": max(c[1] for c in costs),
              "max_constant_bytes": sum(c[2] for c in costs)}
    assert raised[limit] > DEFAULT_LIMITS[limit]
    assert len(read_program(data, limits=raised).layers) == len(costs)
    emu = Emulator(data, limits=raised)  # validated by the op; not run
    assert emu.n_layers == len(costs)


def _messages(data, limits):
    """The (value, name, limit) each reader reports, or None when it accepts."""
    out = []
    try:
        nna_run(data, tf.zeros((0, *peek_header(data)[4:7]), tf.uint8), limits=limits)
        out.append(None)
    except tf.errors.InvalidArgumentError as err:
        out.append(_VALUE.search(str(err)).groups())
    try:
        read_program(data, limits=limits)
        out.append(None)
    except BytecodeError as err:
        out.append(_VALUE.search(str(err)).groups())
    return out


@pytest.mark.parametrize("seed", range(6), ids=lambda s: f"seed{s}")
def test_both_readers_compute_the_same_costs(nna, seed):
    """At exactly the program's value both accept; one below, both refuse naming it."""
    data = nna.random_program(np.random.default_rng(seed))[0]
    costs = _costs(data)
    values = {"max_work": sum(c[0] for c in costs),
              "max_activation_bytes": max(c[1] for c in costs),
              "max_constant_bytes": sum(c[2] for c in costs)}
    for name, value in values.items():
        assert _messages(data, {name: value}) == [None, None]
        expect = (str(value), name, str(value - 1))
        assert _messages(data, {name: value - 1}) == [expect, expect]


@pytest.mark.parametrize("limits,match", [
    ({"max_flops": 1}, "Unknown limit"),
    ({"max_work": 0}, "integer >= 1"),
    ({"max_work": True}, "integer >= 1"),
    ({"max_constant_bytes": 1.5}, "integer >= 1"),
], ids=["unknown", "zero", "bool", "float"])
def test_bad_limits_are_refused(nna, limits, match):
    data = nna.write((2, 2, 1), [dict(kind="maxpool", pool=(1, 1))])
    with pytest.raises(ValueError, match=match):
        Emulator(data, limits=limits)
    with pytest.raises(ValueError, match=match):
        read_program(data, limits=limits)


def test_limits_reach_every_entry_point(nna):
    """EmulatorLayer (and its config), run_program on both executors, run_reference."""
    from keras_nna.export.reference import run_reference
    from keras_nna.runtime.emulator import EmulatorLayer, run_program

    data, _, in_shape, images = nna.random_program(np.random.default_rng(7))
    work = sum(c[0] for c in _costs(data))
    layer = EmulatorLayer(data, limits={"max_work": work})
    clone = EmulatorLayer.from_config(layer.get_config())
    assert clone.get_config()["limits"] == {"max_work": work}
    assert np.array_equal(clone(images).numpy(), run_reference(data, images)[0])
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_work"):
        EmulatorLayer(data, limits={"max_work": work - 1})
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_work"):
        run_program(data, images, "emulator", limits={"max_work": work - 1})
    with pytest.raises(BytecodeError, match="max_work"):
        run_program(data, images, "reference", limits={"max_work": work - 1})
    assert run_program(data, images, "reference", limits={"max_work": work})[2] == "reference"
