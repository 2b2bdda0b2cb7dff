"""The one layer-kind table: every row, registration, ReLU rule, wrappers."""

import keras
import pytest

from keras_nna.quantization import QuantizedAdd, QuantizeWrapper, QuantizedGlobalAveragePooling2D
from keras_nna.quantization.layer_kinds import (KINDS, applies_relu, is_relu, layer_kind,
                                                quantizable_kind, register_kind, unwrap)

L = keras.layers
ROWS = {
    "conv2d": (lambda: L.Conv2D(2, 3), "conv"),
    "conv1d": (lambda: L.Conv1D(2, 3), "conv"),
    "conv3d": (lambda: L.Conv3D(2, 3), "conv"),
    "depthwise2d": (lambda: L.DepthwiseConv2D(3), "depthwise"),
    "separable2d": (lambda: L.SeparableConv2D(2, 3), "separable"),
    "dense": (lambda: L.Dense(2), "dense"),
    "batchnorm": (lambda: L.BatchNormalization(), "batchnorm"),
    "relu": (lambda: L.ReLU(), "relu"),
    "relu_max_value": (lambda: L.ReLU(max_value=6.0), "relu"),
    "activation_relu": (lambda: L.Activation("relu"), "relu"),
    "relu_negative_slope": (lambda: L.ReLU(negative_slope=0.1), "activation"),
    "relu_threshold": (lambda: L.ReLU(threshold=0.5), "activation"),
    "leaky_relu": (lambda: L.LeakyReLU(), "activation"),
    "activation_softmax": (lambda: L.Activation("softmax"), "activation"),
    "activation_linear": (lambda: L.Activation("linear"), "passthrough"),
    "maxpool": (lambda: L.MaxPooling2D(), "maxpool"),
    "avgpool": (lambda: L.AveragePooling2D(2), "avgpool"),
    "gap": (lambda: L.GlobalAveragePooling2D(), "global_avgpool"),
    "gmp": (lambda: L.GlobalMaxPooling1D(), "global_maxpool"),
    "quantized_gap": (lambda: QuantizedGlobalAveragePooling2D(), "global_avgpool"),
    "flatten": (lambda: L.Flatten(), "flatten"),
    "reshape": (lambda: L.Reshape((4,)), "reshape"),
    "zero_padding": (lambda: L.ZeroPadding2D(), "padding"),
    "upsampling": (lambda: L.UpSampling2D(), "upsampling"),
    "rescaling": (lambda: L.Rescaling(1 / 255), "rescaling"),
    "dropout": (lambda: L.Dropout(0.1), "passthrough"),
    "spatial_dropout": (lambda: L.SpatialDropout2D(0.1), "passthrough"),
    "identity": (lambda: L.Identity(), "passthrough"),
    "conv2d_transpose": (lambda: L.Conv2DTranspose(2, 3), None),
    "add": (lambda: L.Add(), "add"),
    "quantized_add": (lambda: QuantizedAdd(4, 0.5, relu=False), "add"),
    "multiply": (lambda: L.Multiply(), None),
    "layer_norm": (lambda: L.LayerNormalization(), None),
}


@pytest.mark.parametrize("name", sorted(ROWS))
def test_table_row(name):
    make, kind = ROWS[name]
    assert layer_kind(make()) == kind
    assert kind is None or kind in KINDS


@pytest.mark.parametrize("make,kind", [
    (lambda: L.Conv2D(2, 3), "conv"), (lambda: L.DepthwiseConv2D(3), "depthwise"),
    (lambda: L.SeparableConv2D(2, 3), "separable"), (lambda: L.Dense(2), "dense"),
    (lambda: L.Conv1D(2, 3), None), (lambda: L.SeparableConv1D(2, 3), None),
    (lambda: L.Conv2DTranspose(2, 3), None)],
    ids=["conv2d", "depthwise2d", "separable2d", "dense", "conv1d", "separable1d", "transpose"])
def test_quantizable_kind_is_2d_or_dense(make, kind):
    assert quantizable_kind(make()) == kind


def test_subclass_gets_parent_kind_and_register_kind():
    class MyConv(L.Conv2D):
        pass

    assert layer_kind(MyConv(2, 3)) == "conv"

    @register_kind("passthrough")
    class Noise(L.Layer):
        def call(self, x):
            return x

    assert layer_kind(Noise()) == "passthrough"
    with pytest.raises(ValueError, match=r"Unknown layer kind 'blur'; expected one of conv"):
        register_kind("blur")


@pytest.mark.parametrize("make,expected", [
    (lambda: QuantizeWrapper(L.Dense(2), activation="relu"), True),
    (lambda: QuantizeWrapper(L.Dense(2)), False),
    (lambda: L.Dense(2, activation="relu"), True),
    (lambda: L.Conv2D(2, 3, activation=keras.activations.relu), True),
    (lambda: L.Dense(2, activation="relu6"), False),
    (lambda: L.TimeDistributed(L.ReLU()), True),
    (lambda: L.ReLU(negative_slope=0.2), False)],
    ids=["wrapper_relu", "wrapper_logits", "dense_relu", "conv_relu_fn", "relu6", "time_distributed",
         "leaky"])
def test_applies_relu(make, expected):
    assert applies_relu(make()) is expected


def test_unwrap_and_is_relu_do_not_look_through_wrappers():
    dense = L.Dense(2)
    wrapper = QuantizeWrapper(dense, activation="relu")
    assert unwrap(wrapper) is dense and layer_kind(wrapper) is None and not is_relu(wrapper)
