"""Reliability under real conditions: a SIGKILLed QAT + pruning run resumes bit-identically, and
the emulator op gives the serial results from many threads and inside tf.data."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, tensorflow as tf, keras
    tf.config.experimental.enable_op_determinism()
    from keras_nna.quantization import quantize_model
    from keras_nna.sparsity import PolynomialDecay, PruneCallback
    from tests.sparsity.helpers import compile_cnn, digits, small_cnn

    out, backup, kill_after, init_seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, as the OOM killer would

    x, y, _, _ = digits()
    x, y = x[:256], y[:256]
    model = quantize_model(small_cnn(seed=init_seed))
    compile_cnn(model)
    keras.utils.set_random_seed(1)  # same data order whether or not this run resumes
    sched = PolynomialDecay(0.0, 0.6, begin_step=0, end_step=24, power=1, frequency=4)
    history = model.fit(x, y, epochs=4, batch_size=32, verbose=0, shuffle=False,
                        callbacks=[PruneCallback(sched), keras.callbacks.BackupAndRestore(backup),
                                   Kill()])
    np.savez(out, *[w for w in model.get_weights()], epochs_run=len(history.history["loss"]))
""")


def _train(tmp_path, name, kill_after, init_seed=0):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = tmp_path / f"{name}.npz"
    proc = subprocess.run([sys.executable, "-c", TRAIN, str(out), str(tmp_path / f"{name}-backup"),
                           str(kill_after), str(init_seed)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    return proc, out


def test_sigkilled_qat_pruning_run_resumes_bit_identically(tmp_path):
    proc, _ = _train(tmp_path, "killed", kill_after=1)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    # Same backup folder, no kill this time, and a model built from other random weights (as a
    # fresh process would): only a real restore at epoch 2 ends where the uninterrupted run does.
    os.rename(tmp_path / "killed-backup", tmp_path / "resumed-backup")
    proc, resumed = _train(tmp_path, "resumed", kill_after=-1, init_seed=5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, straight = _train(tmp_path, "straight", kill_after=-1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = np.load(resumed), np.load(straight)
    assert int(a["epochs_run"]) == 2 and int(b["epochs_run"]) == 4
    assert len(a.files) == len(b.files) > 1
    for key in a.files:
        if key != "epochs_run":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.fixture(scope="module")
def program_and_images():
    from keras_nna.export import export_model
    from tests.model_zoo import make_case

    qmodel, _ = make_case(3, steps=1)
    program = export_model(qmodel)
    h, w, c = program.input_shape
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, h, w, c)).astype(np.uint8)
    images[::2] = np.where(rng.random(images[::2].shape) < 0.9, 0, images[::2])  # sparse: event path
    return program, images


@pytest.mark.parametrize("mode", ["auto", "event", "dense"])
def test_emulator_from_eight_threads_equals_serial(program_and_images, mode):
    from keras_nna.runtime import Emulator

    program, images = program_and_images
    emulator = Emulator(program, mode=mode)
    serial = [emulator.run_with_stats(images[i:i + 4]) for i in range(0, 64, 4)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda i: emulator.run_with_stats(images[i:i + 4]), range(0, 64, 4)))
    for (o1, s1), (o2, s2) in zip(serial, parallel):
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(s1, s2)


def test_emulator_inside_tf_data_equals_eager(program_and_images):
    import tensorflow as tf

    from keras_nna.runtime import Emulator

    program, images = program_and_images
    emulator = Emulator(program)
    eager = emulator.run(images)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(8).map(
        emulator.run, num_parallel_calls=4, deterministic=True)
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in ds]), eager)
