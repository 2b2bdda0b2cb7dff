"""Keras features that would silently break the bit-exact contract fail loudly or keep it.

Mixed precision keeps it (the quantized model computes in float32); Keras' own
`model.quantize("int8")` and Keras 2 (tf_keras) models fail with messages that say
what happened and how to fix it.
"""

import keras
import numpy as np
import pytest

from keras_nna.export import ExportError, export_model, run_reference
from keras_nna.quantization import QuantizeWrapper, quantize_model
from keras_nna.runtime import Emulator


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _float_model():
    inputs = keras.Input((10, 10, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, use_bias=False, name="c0")(x)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="s1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.1)(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))


def _images(n=16):
    return np.random.default_rng(0).integers(0, 256, (n, 10, 10, 1)).astype(np.uint8)


def _assert_emulator_equals(qmodel, images):
    """The exported program (numpy reference and emulator op) equals `predict` bit for bit."""
    expected = qmodel.predict(images.astype("float32"), verbose=0)
    assert expected.dtype == np.float32
    program = export_model(qmodel)
    np.testing.assert_array_equal(run_reference(program, images)[0], expected)
    np.testing.assert_array_equal(Emulator(program.to_bytes()).run(images), expected)
    return program


def _train(qmodel, images):
    qmodel.compile(keras.optimizers.Adam(0.05),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    labels = np.random.default_rng(1).integers(0, 3, len(images))
    qmodel.fit(images.astype("float32"), labels, batch_size=8, epochs=2, verbose=0)


def test_mixed_float16_quantized_model_equals_emulator(mixed_float16):
    model = _float_model()
    assert model.get_layer("c0").compute_dtype == "float16"
    qmodel = quantize_model(model)
    assert {layer.compute_dtype for layer in qmodel.layers[1:]} == {"float32"}
    images = _images()
    _train(qmodel, images)
    _assert_emulator_equals(qmodel, images)


def test_wrapper_built_under_mixed_policy_computes_float32(mixed_float16):
    layer = QuantizeWrapper(keras.layers.Dense(3), batch_norm=keras.layers.BatchNormalization(),
                            activation="relu")
    assert (layer.compute_dtype, layer.layer.compute_dtype, layer.batch_norm.compute_dtype) == (
        "float32", "float32", "float32")
    y = layer(np.ones((2, 4), "float32"), training=True)
    assert y.dtype == "float32"


@pytest.mark.parametrize("dtype", ["float16", "mixed_float16", "bfloat16"])
def test_wrapper_refuses_explicit_low_precision_dtype(dtype):
    with pytest.raises(ValueError, match=rf"computes in float32.*dtype='{dtype}'.*Remove the dtype"):
        QuantizeWrapper(keras.layers.Dense(3), dtype=dtype)


def test_saved_wrapper_config_with_mixed_dtype_loads_as_float32():
    config = QuantizeWrapper(keras.layers.Dense(3), name="q").get_config()
    mixed = keras.dtype_policies.DTypePolicy("mixed_float16")
    config["dtype"] = keras.saving.serialize_keras_object(mixed)
    assert QuantizeWrapper.from_config(config).compute_dtype == "float32"


def _quantized_dense_model():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c0")(inputs)
    x = keras.layers.Flatten()(x)
    return quantize_model(keras.Model(inputs, keras.layers.Dense(3, name="fc")(x)))


@pytest.mark.parametrize("reload", [False, True], ids=["fresh", "loaded"])
def test_keras_model_quantize_is_refused_and_model_untouched(reload, tmp_path):
    qmodel = _quantized_dense_model()
    if reload:
        qmodel.save(tmp_path / "q.keras")
        qmodel = keras.models.load_model(tmp_path / "q.keras")
    with pytest.raises(ValueError, match=r"Keras quantization mode 'int8' cannot be applied to the "
                                         r"layer inside QuantizeWrapper 'c0'.*quantize_model only"):
        qmodel.quantize("int8")
    assert qmodel.get_layer("fc").layer.quantization_mode is None
    export_model(qmodel)  # still exportable


def test_keras_quantized_inner_layer_fails_call_and_export():
    """A layer quantized behind the guard's back: Keras' Model.quantize without the guard."""
    qmodel = _quantized_dense_model()
    inner = qmodel.get_layer("fc").layer
    inner._tracker.unlock()  # what Keras' own quantize wrapper does around Dense.quantize
    type(inner).quantize(inner, "int8")
    inner._tracker.lock()
    assert inner.quantization_mode == "int8"
    match = (r"Keras quantization mode 'int8' was applied to the layer 'fc' inside QuantizeWrapper "
             r"'fc'.*quantize_model only.*rebuild the quantized model from the float model")
    with pytest.raises(ExportError, match=match):
        export_model(qmodel)
    with pytest.raises(ValueError, match=match):
        qmodel(np.zeros((1, 6, 6, 1), "float32"), training=False)


def test_wrapper_refuses_a_keras_quantized_layer():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    dense.quantize("int8")
    with pytest.raises(ValueError, match="Keras quantization mode 'int8' was applied"):
        QuantizeWrapper(dense)


def _fake_keras2(module):
    cls = type("Functional", (), {"__module__": module, "name": "model", "layers": []})
    return cls()


@pytest.mark.parametrize("module", ["tf_keras.src.engine.functional", "keras.src.engine.sequential",
                                    "tensorflow.python.keras.engine.functional"],
                         ids=["tf_keras", "keras2_src_engine", "tf_python_keras"])
def test_keras2_model_gets_a_rebuild_message(module):
    with pytest.raises(TypeError, match=r"keras_nna needs a Keras 3 model; quantize_model received a "
                                        r"tf_keras \(Keras 2\) object.*rebuild it with `import keras`"):
        quantize_model(_fake_keras2(module))
    with pytest.raises(ExportError, match=r"tf_keras \(Keras 2\)"):
        export_model(_fake_keras2(module))


def test_keras2_layer_in_wrapper_gets_a_rebuild_message():
    with pytest.raises(TypeError, match=r"QuantizeWrapper received a tf_keras \(Keras 2\) object"):
        QuantizeWrapper(_fake_keras2("tf_keras.src.layers.core.dense"))


@pytest.mark.parametrize("value,received", [("x", r"str \('x'\)"), (None, "NoneType"),
                                            (keras.layers.Dense(2), "Dense")],
                         ids=["string", "none", "layer"])
def test_non_model_input_is_a_type_error(value, received):
    with pytest.raises(TypeError, match=rf"quantize_model expects a Keras 3 Model; received {received}"):
        quantize_model(value)


def test_identity_passes_through_quantize_and_export():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Identity()(keras.layers.Flatten()(x))
    qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))
    images = np.random.default_rng(0).integers(0, 256, (4, 6, 6, 1)).astype(np.uint8)
    program = _assert_emulator_equals(qmodel, images)
    assert [layer.kind for layer in program.layers] == ["conv", "flatten", "dense"]
