"""Quantization-aware training under tf.distribute.MirroredStrategy (two logical CPUs), end to end.

The documented one-machine path (docs/distributed.md): the quantized model trains with
plain `fit` under MirroredStrategy, keeps its activity regularizer, and still exports a
program the emulator runs bit for bit. Logical devices must be configured before
TensorFlow initialises, so the check runs in a fresh interpreter.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from keras_nna import deploy, quantize_model
    from keras_nna.sparsity import add_activity_regularization

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 12, 12, 1)).astype("uint8")
    y = (x.reshape(128, -1).mean(1) > 127).astype("int32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        model = keras.Sequential([
            keras.Input((12, 12, 1)), keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, strides=2, use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9), keras.layers.ReLU(),
            keras.layers.Conv2D(8, 3, use_bias=False),
            keras.layers.BatchNormalization(momentum=0.9), keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
        add_activity_regularization(model, l1=0.01)  # in place
        qmodel = quantize_model(model)
        qmodel.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qmodel.fit(x.astype("float32"), y, epochs=2, batch_size=32, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    assert qmodel.losses, "the activity regularizer must survive quantize_model"
    result = deploy(qmodel, x[:32], y[:32], profile=None)
    assert result.bit_exact, result
    print("MIRRORED-QAT-OK", history.history["loss"][-1])
""")


def test_qat_fit_under_mirrored_strategy_exports_bit_exact():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600, cwd=root)
    assert proc.returncode == 0 and "MIRRORED-QAT-OK" in proc.stdout, proc.stderr[-4000:]
