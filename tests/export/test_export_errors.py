"""export_model rejects what the accelerator cannot run with an ExportError naming the layer and the fix."""

import keras
import pytest

from keras_nna.export import ExportError, export_model
from keras_nna.quantization import QuantizeWrapper, quantize_model


def _float_conv():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv")(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))


def _quantized_then_upsampling():
    """A layer quantize_model never produces, spliced after a quantized conv."""
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu", padding="same", name="conv")(inputs)
    qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x))))
    y = keras.layers.UpSampling2D(name="up")(qmodel.get_layer("conv").output)
    return keras.Model(qmodel.inputs[0], keras.layers.Flatten()(y))


def _two_inputs():
    a, b = keras.Input((4, 4, 1)), keras.Input((4, 4, 1))
    return keras.Model([a, b], keras.layers.Add()([a, b]))


def _dynamic_shape():
    inputs = keras.Input((None, None, 1))
    return keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))


def _raw_then_dense():
    """A raw (float) wrapper output feeding another wrapper (quantize_model makes it signed)."""
    inputs = keras.Input((1, 1, 3))
    x = keras.layers.Flatten()(inputs)
    x = QuantizeWrapper(keras.layers.Dense(4), first_layer=True, name="raw")(x)
    return keras.Model(inputs, QuantizeWrapper(keras.layers.Dense(2), name="after")(x))


def _map_output():
    inputs = keras.Input((3, 3, 1))
    return quantize_model(keras.Model(inputs, keras.layers.Conv2D(2, 3, name="conv")(inputs)))


CASES = [
    ("not-a-model", lambda: "model.keras", r"export_model expects a Keras 3 Model; received str"),
    ("float-model", _float_conv, r"Cannot export layer 'conv' \(Conv2D\): this layer has no "
                                 r"accelerator instruction.*quantize_model"),
    ("unsupported-layer", _quantized_then_upsampling,
     r"Cannot export layer 'up' \(UpSampling2D\): this layer has no accelerator instruction"),
    ("two-inputs", _two_inputs, r"one input and one output"),
    ("dynamic-shape", _dynamic_shape, r"fixed-size image \(H, W, C\); received \(None, None, 1\)"),
    ("raw-then-dense", _raw_then_dense, r"'after'.*follows a layer without quantized ReLU output"),
    ("1x1-map-output", _map_output, r"1x1 feature map.*Add Flatten"),
]


@pytest.mark.parametrize("make,match", [(m, r) for _, m, r in CASES], ids=[c[0] for c in CASES])
def test_export_error(make, match):
    with pytest.raises(ExportError, match=match):
        export_model(make())


def test_export_error_is_a_value_error():
    assert issubclass(ExportError, ValueError)
