"""Bring your own model: keras.applications and MLPerf Tiny networks, end to end on the emulator op.

Each model is used unchanged (`weights=None`, `classifier_activation=None`), quantized, given
realistic BatchNorm statistics by two training steps with momentum 0 (the moving statistics become
the batch statistics, so activations spread over the quantized range instead of saturating), then
exported and run on the emulator op: every output must equal `qmodel.predict` exactly.
"""

import keras
import numpy as np
import pytest

from keras_nna import deploy
from keras_nna.quantization import quantize_model

SHAPE = (96, 96, 3)


def _mobilenet(alpha):
    return lambda: keras.applications.MobileNet(input_shape=SHAPE, alpha=alpha, weights=None,
                                                classes=2, classifier_activation=None)


def _mobilenet_v2(alpha):
    return lambda: keras.applications.MobileNetV2(input_shape=SHAPE, alpha=alpha, weights=None,
                                                  classes=2, classifier_activation=None)


def _resnet50():
    return keras.applications.ResNet50(input_shape=SHAPE, weights=None, classes=2,
                                       classifier_activation=None)


def _mlperf(name):
    def build():
        from keras_nna import models

        if name == "resnet8":
            return models.ResNet8(input_shape=(32, 32, 3), classes=10)
        if name == "ds_cnn":
            return models.DSCNN(input_shape=(49, 10, 1), classes=12)
        return models.DenseAutoencoder(input_shape=(5, 128, 1))

    return build


def _calibrate(qmodel, images, seed=0):
    """Two training steps with BatchNorm momentum 0: moving statistics = batch statistics."""
    for layer in qmodel.layers:
        bn = getattr(layer, "batch_norm", None)
        if bn is not None:
            bn.momentum = 0.0
    out_shape = qmodel.outputs[0].shape[1:]
    rng = np.random.default_rng(seed)
    if len(out_shape) == 1 and qmodel.name.startswith("dense_autoencoder"):
        target, loss = images.reshape(len(images), -1).astype("float32") / 255.0, "mse"
    else:
        target = rng.integers(0, out_shape[-1], len(images))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    qmodel.compile(keras.optimizers.SGD(1e-3), loss)
    qmodel.fit(images.astype("float32"), target, batch_size=len(images), epochs=2, verbose=0)
    return qmodel


def _images(shape, n=8, seed=0):
    """Smooth random images (blobs, not white noise) plus one all-zero and one all-255 image."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (n, 4, 4, shape[2]))
    x = keras.ops.convert_to_numpy(keras.ops.image.resize(low, shape[:2], interpolation="bilinear"))
    x = np.clip(np.rint(x + rng.normal(0, 10, x.shape)), 0, 255).astype(np.uint8)
    x[0], x[1] = 0, 255
    return x


def _check(build, min_layers=1):
    keras.utils.set_random_seed(0)
    model = build()
    images = _images(tuple(model.inputs[0].shape[1:]))
    qmodel = _calibrate(quantize_model(model), images)
    result = deploy(qmodel, images, profile=None, executor="emulator")
    assert result.bit_exact, f"max |emulator - predict| = {result.max_abs_diff}"
    assert len(result.program.layers) >= min_layers
    return result


FAST = {
    "mobilenet_v1_0.25": (_mobilenet(0.25), 28),
    "mobilenet_v2_0.35": (_mobilenet_v2(0.35), 60),
    "resnet8": (_mlperf("resnet8"), 10),
}
SLOW = {
    "mobilenet_v1_0.5": (_mobilenet(0.5), 28),
    "mobilenet_v1_1.0": (_mobilenet(1.0), 28),
    "mobilenet_v2_1.0": (_mobilenet_v2(1.0), 60),
    "resnet50": (_resnet50, 60),
    "ds_cnn": (_mlperf("ds_cnn"), 10),
    "dense_autoencoder": (_mlperf("autoencoder"), 10),
}


_RESULTS = {}


def _fast(name):
    if name not in _RESULTS:
        _RESULTS[name] = _check(*FAST[name])
    return _RESULTS[name]


@pytest.mark.parametrize("name", list(FAST))
def test_bit_exact_on_the_emulator(name):
    _fast(name)


@pytest.mark.slow
@pytest.mark.parametrize("build,min_layers", list(SLOW.values()), ids=list(SLOW))
def test_bit_exact_on_the_emulator_large(build, min_layers):
    _check(build, min_layers)


def test_residual_programs_use_add_instructions():
    """MobileNetV2's residual Adds become ADD instructions reading two earlier tensors."""
    result = _fast("mobilenet_v2_0.35")
    adds = [r for r in result.program.layers if r.kind == "add"]
    assert len(adds) == 10  # keras.applications MobileNetV2 has 10 residual Adds
    assert any(r.out_signed for r in adds)  # linear bottlenecks: signed sums
