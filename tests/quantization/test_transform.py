"""quantize_model on Sequential, functional and nested models; saving; XLA."""

import keras
import numpy as np
import pytest

from keras_nna.quantization import (
    ProgressiveQuantization,
    QuantizationPolicy,
    QuantizeWrapper,
    quantize_model,
)


def _functional():
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, use_bias=False, name="c0")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="c0_bn")(x)
    x = keras.layers.ReLU(name="c0_relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.SeparableConv2D(6, 3, padding="same", use_bias=False, name="s1")(x)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def _sequential():
    return keras.Sequential([
        keras.Input((10, 10, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(4, 3, activation="relu", name="c0"),
        keras.layers.AveragePooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(3, name="fc"),
    ])


def _nested():
    inner = keras.Sequential([
        keras.Input((8, 8, 4)),
        keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw"),
        keras.layers.BatchNormalization(momentum=0.9, name="dw_bn"),
        keras.layers.ReLU(),
    ], name="inner")
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c0")(inputs)
    x = inner(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


BUILDERS = {"functional": _functional, "sequential": _sequential, "nested": _nested}


def _train(model, steps=2):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 10, 10, 1)).astype("float32")
    y = rng.integers(0, 3, 16)
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=8, epochs=steps, verbose=0)
    return x


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_quantize_model_wraps_and_first_layer_is_8bit(kind):
    qmodel = quantize_model(BUILDERS[kind]())
    wrappers = [layer for layer in qmodel.layers if isinstance(layer, QuantizeWrapper)]
    assert wrappers[0].first_layer and wrappers[0].weight_bits == 8
    assert all(w.weight_bits == 4 for w in wrappers[1:])
    assert not any(isinstance(layer, (keras.layers.BatchNormalization, keras.layers.ReLU))
                   for layer in qmodel.layers)
    x = _train(qmodel)
    assert np.isfinite(qmodel.predict(x, verbose=0)).all()


def test_weights_are_copied_so_outputs_track_float_model():
    model = _functional()
    _train(model, steps=3)
    qmodel = quantize_model(model, QuantizationPolicy(8, 8, 8, activation_max=8.0))
    x = np.random.default_rng(3).integers(0, 256, (8, 10, 10, 1)).astype("float32")
    ref, out = model.predict(x, verbose=0), qmodel.predict(x, verbose=0)
    assert np.corrcoef(ref.ravel(), out.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("jit", [False, True], ids=["eager_graph", "xla"])
def test_save_load_round_trip_identical_predictions(tmp_path, jit):
    qmodel = quantize_model(_functional())
    x = _train(qmodel)
    expected = qmodel.predict(x, verbose=0)
    path = tmp_path / "q.keras"
    qmodel.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects needed
    loaded.compile(jit_compile=jit)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)


def test_unsupported_layer_names_layer_class_and_supported():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    x = keras.layers.LayerNormalization(name="ln")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'ln' \(LayerNormalization\).*Supported: Conv2D"):
        quantize_model(model)


@pytest.mark.parametrize(
    "layer,match",
    [(keras.layers.Rescaling(1 / 127.5, offset=-1), "offset=-1"),
     (keras.layers.LeakyReLU(), "LeakyReLU")],
    ids=["rescaling_offset", "leaky_relu"],
)
def test_other_unsupported(layer, match):
    inputs = keras.Input((8, 8, 1))
    if isinstance(layer, keras.layers.Rescaling):
        x = keras.layers.Conv2D(2, 3)(layer(inputs))
    else:
        x = layer(keras.layers.Conv2D(2, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    with pytest.raises(ValueError, match=match):
        quantize_model(model)


def test_policy_override_for_missing_layer_raises():
    with pytest.raises(ValueError, match=r"\['nope'\].*not in the model"):
        quantize_model(_functional(), QuantizationPolicy(overrides={"nope": {"weight_bits": 5}}))


def test_progressive_quantization_ramps_fraction():
    qmodel = quantize_model(_functional(), QuantizationPolicy(progressive=True))
    cb = ProgressiveQuantization(ramp_epochs=2)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 10, 10, 1)).astype("float32")
    qmodel.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qmodel.fit(x, rng.integers(0, 3, 16), epochs=3, verbose=0, callbacks=[cb])
    assert history.history["quantized_fraction"] == [0.0, 0.5, 1.0]
    assert all(float(w.progress.numpy()) == 1.0 for w in qmodel.layers if isinstance(w, QuantizeWrapper))
    with pytest.raises(ValueError, match="progressive=True"):
        plain = quantize_model(_functional())
        plain.compile("adam", "mse")
        plain.fit(x, np.zeros((16, 3)), epochs=1, verbose=0, callbacks=[ProgressiveQuantization()])


def test_activity_regularizer_moves_to_quantized_output(tmp_path):
    model = _functional()
    model.get_layer("c0_relu").activity_regularizer = keras.regularizers.L1(0.5)
    qmodel = quantize_model(model)
    wrapper = qmodel.get_layer("c0")
    assert isinstance(wrapper.activity_regularizer, keras.regularizers.L1)
    x = np.random.default_rng(0).integers(0, 256, (4, 10, 10, 1)).astype("float32")
    qmodel(x, training=True)
    assert len(qmodel.losses) == 1 and float(qmodel.losses[0]) > 0
    qmodel.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras")
    assert isinstance(loaded.get_layer("c0").activity_regularizer, keras.regularizers.L1)
