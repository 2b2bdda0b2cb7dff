"""Shared steps of the tutorials: data, float training, QAT, export + emulate + cost.

Each tutorial is a script with a `main(argv)` and a `--quick` mode (tiny data,
one epoch) that the test suite runs so no tutorial rots.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROFILES = ("nna-1core", "nna-8core")


def log(msg):
    """Prints a time-stamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fashion_mnist(quick, limit_train=20000, limit_test=5000, size=None, rgb=False):
    """Returns uint8 Fashion-MNIST `(x, y, x_test, y_test)`, optionally resized / tiled."""
    from keras_nna import datasets

    if quick:
        limit_train, limit_test = 256, 128
    (x, y), (xt, yt) = datasets.load_fashion_mnist(limit_train=limit_train, limit_test=limit_test)
    if size:
        x, xt = datasets.resize_images(x, size), datasets.resize_images(xt, size)
    if rgb:
        x, xt = datasets.to_rgb(x), datasets.to_rgb(xt)
    return x, y, xt, yt


def clone(model):
    """A fresh copy of `model` (new layers and variables) with its weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _loss():
    import keras

    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fit(model, x, y, epochs, lr=2e-3, batch=64, callbacks=(), **compile_kwargs):
    """Compiles `model` with Adam + cosine decay and fits it quietly."""
    import keras

    steps = max(epochs, 1) * -(-len(x) // batch)
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps))
    model.compile(opt, _loss(), metrics=["accuracy"], **compile_kwargs)
    if epochs:
        model.fit(x.astype("float32"), y, batch_size=batch, epochs=epochs, verbose=0,
                  callbacks=list(callbacks))
    return model


def events_per_image(qmodel, x):
    """Mean events per image of a quantized model, as the emulator counts them (library call)."""
    from keras_nna import events_per_image as count

    return count(qmodel, x)


def accuracy(model, x, y):
    """Top-1 accuracy of a Keras model (quantized models: exact integer inference)."""
    logits = model.predict(x.astype("float32"), verbose=0, batch_size=256)
    return float(np.mean(logits.argmax(-1) == y))


def qat(model, x, y, policy=None, epochs=2, lr=5e-4, batch=64, callbacks=()):
    """Quantizes `model` with `policy` and fine-tunes it; returns the quantized model."""
    from keras_nna.quantization import quantize_model

    qmodel = quantize_model(model, policy)
    return fit(qmodel, x, y, epochs, lr=lr, batch=batch, callbacks=callbacks)


def deploy(qmodel, x_test, y_test, max_images=1000):
    """Exports, emulates and costs a quantized model (`keras_nna.deploy`) on both profiles.

    Returns:
        `(row, program, stats)`: row is a dict with the emulator accuracy,
        bit-exactness vs Keras, program bytes, events / synops / dense MACs per
        inference, and per-profile estimated time (s), energy (J) and external
        bytes per inference.
    """
    from keras_nna import deploy as deploy_model
    from keras_nna.runtime.cost import estimate_cost

    result = deploy_model(qmodel, x_test, y_test, profile=None, max_images=max_images)
    stats = result.stats
    row = {
        "emulator_accuracy": result.accuracy,
        "bit_exact": result.bit_exact,
        "program_bytes": result.program_bytes,
        "events": float(stats[:, :, 0].sum(1).mean()),
        "synops": float(stats[:, :, 1].sum(1).mean()),
        "dense_macs": float(stats[:, :, 2].sum(1).mean()),
    }
    for name in PROFILES:
        total = estimate_cost(result.program, stats, name).total
        row[name] = {k: total[k] for k in ("time_s", "energy_j", "dram_bytes") if k in total}
    return row, result.program, stats
