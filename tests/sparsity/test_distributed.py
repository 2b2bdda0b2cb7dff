"""PruneCallback under tf.distribute.MirroredStrategy with two logical CPU devices.

Logical devices must be configured before TensorFlow initialises, so the check runs
in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_nna.sparsity import ConstantSparsity, PruneCallback, find_prunable_weights
    from tests.sparsity.helpers import compile_cnn, digits, small_cnn

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    x, y, _, _ = digits()
    with strategy.scope():
        model = compile_cnn(small_cnn())
    cb = PruneCallback(ConstantSparsity(0.5, begin_step=0, end_step=0, frequency=1))
    model.fit(x[:128], y[:128], epochs=1, batch_size=32, verbose=0, callbacks=[cb])
    pattern = {w.name: w.variable.numpy() == 0 for w in find_prunable_weights(model)}
    model.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    for w in find_prunable_weights(model):
        # every replica's copy holds the same, still-masked kernel
        values = [v.numpy() for v in strategy.experimental_local_results(w.variable.value)]
        assert len(values) == 2 and np.array_equal(values[0], values[1]), w.name
        assert np.array_equal(values[0] == 0, pattern[w.name]), w.name
        assert (values[0] == 0).sum() == round(0.5 * values[0].size), w.name
    print("MIRRORED-OK")
""")


@pytest.mark.slow
def test_prune_callback_under_mirrored_strategy():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0 and "MIRRORED-OK" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
