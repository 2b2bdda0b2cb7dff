"""Every serializable Keras object of keras_nna through one harness (tests/layer_test_utils.py).

Layers: build, call, a train step, a JSON config round trip and a `.keras` round trip
with identical outputs. Non-layer objects (policy, regularizer, schedules): the JSON
config round trip and identical behaviour. The Distiller (a Model): a fit step and both
round trips. `test_every_registered_object_is_covered` fails when a new object is
registered with Keras under the "keras_nna" package without a case here.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_nna  # noqa: F401  (registers every object with Keras)
from keras_nna.distillation import Distiller
from keras_nna.quantization import QuantizationPolicy, QuantizedAdd, QuantizeWrapper
from keras_nna.quantization.pooling import (QuantizedAveragePooling2D,
                                            QuantizedGlobalAveragePooling2D)
from keras_nna.sparsity import ActivityRegularizer, ConstantSparsity, PolynomialDecay
from tests.layer_test_utils import config_round_trip, keras_file_round_trip, run_layer_test

POLICY = QuantizationPolicy(weight_bits=5, activation_bits=3, activation_max=2.0,
                            overrides={"c": {"weight_bits": 6}})


def _emulator_layer(return_stats=False):
    from keras_nna.export import export_model
    from keras_nna.quantization import quantize_model
    from keras_nna.runtime import EmulatorLayer

    model = keras.Sequential([keras.Input((6, 6, 1)),
                              keras.layers.Conv2D(3, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    return EmulatorLayer(export_model(quantize_model(model)), return_stats=return_stats)


# id -> (layer factory, input shape, harness keyword arguments)
LAYERS = {
    "QuantizeWrapper-conv-bn-relu": (lambda: QuantizeWrapper(
        keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c"), policy=POLICY,
        batch_norm=keras.layers.BatchNormalization(), activation="relu"), (6, 6, 2), {}),
    "QuantizeWrapper-depthwise": (lambda: QuantizeWrapper(
        keras.layers.DepthwiseConv2D(3, strides=2, padding="same"), activation="relu"),
        (7, 7, 3), {}),
    "QuantizeWrapper-separable": (lambda: QuantizeWrapper(
        keras.layers.SeparableConv2D(5, 3, padding="valid", activation="relu")), (6, 5, 2), {}),
    "QuantizeWrapper-dense-logits": (lambda: QuantizeWrapper(keras.layers.Dense(3)), (6,),
                                     {"expected_output_shape": (3,)}),
    "QuantizeWrapper-signed": (lambda: QuantizeWrapper(
        keras.layers.Conv2D(3, 3, padding="same", name="c"), policy=POLICY,
        batch_norm=keras.layers.BatchNormalization(), signed=True), (5, 5, 2), {}),
    "QuantizeWrapper-first-layer": (lambda: QuantizeWrapper(
        keras.layers.Conv2D(2, 3), first_layer=True, input_scale=1 / 255, activation="relu"),
        (5, 5, 1), {"input_data": "pixels"}),
    "QuantizeWrapper-progressive": (lambda: QuantizeWrapper(
        keras.layers.Dense(4), policy=QuantizationPolicy(progressive=True), activation="relu"),
        (5,), {"expected_num_non_trainable_weights": 1}),
    "QuantizedGlobalAveragePooling2D": (lambda: QuantizedGlobalAveragePooling2D(
        bits=4, step=0.25), (4, 4, 3), {"expected_output_shape": (3,)}),
    "QuantizedGlobalAveragePooling2D-keepdims": (lambda: QuantizedGlobalAveragePooling2D(
        bits=3, step=0.5, keepdims=True), (3, 5, 2), {"expected_output_shape": (1, 1, 2)}),
    "QuantizedAveragePooling2D": (lambda: QuantizedAveragePooling2D(
        pool_size=2, strides=2, bits=4, step=0.125), (6, 4, 2), {"expected_output_shape": (3, 2, 2)}),
    "Dense-with-ActivityRegularizer": (lambda: keras.layers.Dense(
        4, activation="relu", activity_regularizer=ActivityRegularizer(l1=0.1, hoyer=0.2)),
        (3,), {}),
    "EmulatorLayer": (_emulator_layer, (6, 6, 1),
                      {"input_data": "uint8", "run_training_check": False,
                       "expected_output_shape": (2,)}),
    "EmulatorLayer-return-stats": (lambda: _emulator_layer(return_stats=True), (6, 6, 1),
                                   {"input_data": "uint8", "run_training_check": False}),
}


@pytest.mark.parametrize("make, input_shape, kwargs", LAYERS.values(), ids=list(LAYERS))
def test_layer(make, input_shape, kwargs):
    run_layer_test(make(), input_shape, **kwargs)


@pytest.mark.parametrize("relu", [False, True], ids=["signed", "relu"])
def test_quantized_add(relu):
    """QuantizedAdd takes two tensors: call, gradient, config and .keras round trips by hand."""
    rng = np.random.default_rng(0)
    x = [rng.uniform(-2, 2, (4, 3, 3, 2)).astype("float32") for _ in range(2)]
    inputs = [keras.Input((3, 3, 2)), keras.Input((3, 3, 2))]
    layer = QuantizedAdd(bits=4, step=0.25 if relu else 0.5, relu=relu, name="add")
    model = keras.Model(inputs, layer(inputs))
    eager = layer(x, training=False).numpy()
    assert model.outputs[0].shape[1:] == eager.shape[1:] == (3, 3, 2)
    codes = eager / layer.step
    np.testing.assert_array_equal(codes, np.round(codes))
    lo, hi = (0, 15) if relu else (-8, 7)
    assert lo <= codes.min() and codes.max() <= hi
    xt = [tf.constant(v) for v in x]
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = tf.reduce_sum(model(xt, training=True))
    grads = tape.gradient(y, xt)
    total = x[0] + x[1]
    inside = (total > (0 if relu else -4)) & (total < (3.75 if relu else 3.5))
    for g in grads:
        np.testing.assert_array_equal(g.numpy(), inside.astype("float32"))
    clone = config_round_trip(layer)
    assert (clone.bits, clone.step, clone.relu, clone.signed) == (4, layer.step, relu, not relu)
    np.testing.assert_array_equal(clone(x, training=False).numpy(), eager)
    keras_file_round_trip(model, x)


def _same_schedule(a, b):
    return all(a(step) == b(step) for step in (0, 1, 5, 50, 99, 100, 1000))


def _same_regularizer(a, b):
    x = np.random.default_rng(0).normal(size=(3, 5)).astype("float32")
    return float(a(x)) == float(b(x))


def _same_policy(a, b):
    return a == b and all(a.resolve(n, first) == b.resolve(n, first)
                          for n in ("c", "d") for first in (False, True))


# id -> (object factory, behaviour check(original, clone))
OBJECTS = {
    "QuantizationPolicy": (lambda: POLICY, _same_policy),
    "ActivityRegularizer": (lambda: ActivityRegularizer(l1=0.1, l2=0.2, hoyer=0.3),
                            _same_regularizer),
    "ConstantSparsity": (lambda: ConstantSparsity(0.5, begin_step=5, frequency=10),
                         _same_schedule),
    "PolynomialDecay": (lambda: PolynomialDecay(0.1, 0.8, begin_step=1, end_step=100,
                                                power=2, frequency=3), _same_schedule),
}


@pytest.mark.parametrize("make, same", OBJECTS.values(), ids=list(OBJECTS))
def test_object_config_round_trip(make, same):
    obj = make()
    assert same(obj, config_round_trip(obj))


def test_distiller_fit_step_and_round_trips():
    def net(name):
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation="relu"),
                                 keras.layers.Dense(3)], name=name)

    distiller = Distiller(net("student"), net("teacher"), temperature=2.0, alpha=0.3)
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 3
    distiller.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
    before = [w.copy() for w in distiller.student.get_weights()]
    history = distiller.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, distiller.student.get_weights()))
    clone = config_round_trip(distiller)
    assert (clone.temperature, clone.alpha) == (2.0, 0.3)
    loaded = keras_file_round_trip(distiller, x)
    assert isinstance(loaded, Distiller) and not loaded.teacher.trainable


COVERED = {"QuantizeWrapper", "QuantizedAdd", "QuantizedGlobalAveragePooling2D", "QuantizedAveragePooling2D",
           "EmulatorLayer", "Distiller", *OBJECTS}


def test_every_registered_object_is_covered():
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(keras_nna.__path__, "keras_nna."):
        private = module.name.rsplit(".", 1)[-1].startswith("_")  # e.g. the op's .so
        if not private and not module.name.startswith(("keras_nna.cli", "keras_nna.demo")):
            importlib.import_module(module.name)
    registered = {name.split(">", 1)[1] for name in keras.saving.get_custom_objects()
                  if name.startswith("keras_nna>")}
    assert registered, "nothing registered under the keras_nna package"
    missing = sorted(registered - COVERED)
    assert not missing, f"add a case to tests/test_layers.py for: {missing}"
