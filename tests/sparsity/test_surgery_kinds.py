"""Surgery, event fan-out and MAC counting classify layers with quantization.layer_kinds."""

import keras
import numpy as np
import pytest

from keras_nna.models.summary import count_macs
from keras_nna.quantization import quantize_model
from keras_nna.sparsity import channel_groups
from keras_nna.sparsity.graph import count_params_and_macs, event_fan_out, layer_graph

L = keras.layers


@pytest.mark.parametrize("make", [lambda: L.LeakyReLU(), lambda: L.ReLU(negative_slope=0.1),
                                  lambda: L.SpatialDropout2D(0.1), lambda: L.Activation("linear"),
                                  lambda: L.Identity()],
                         ids=["leaky_relu", "relu_slope", "spatial_dropout", "linear", "identity"])
def test_event_fan_out_looks_through_activations_and_dropouts(make):
    model = keras.Sequential([keras.Input((6, 6, 2)), L.ReLU(name="r"), make(),
                              L.Conv2D(4, 3, padding="same")])
    assert event_fan_out(layer_graph(model), "r") == 9 * 4


def test_one_dimensional_convolutions_are_counted():
    model = keras.Sequential([keras.Input((10, 3)), L.Conv1D(4, 3, name="c"),
                              L.SeparableConv1D(5, 3, name="s")])
    conv = 8 * 3 * 3 * 4
    separable = 6 * 3 * 4 + 6 * 4 * 5
    assert count_macs(model) == conv + separable
    assert count_params_and_macs(model)["macs"] == conv + separable


def test_channel_groups_of_a_quantized_model_cross_its_pooling():
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, use_bias=False, name="c0")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.AveragePooling2D(2, name="pool")(x)
    x = L.Conv2D(6, 1, activation="relu", name="c1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    qmodel = quantize_model(keras.Model(inputs, L.Dense(2, name="fc")(x)))
    groups = channel_groups(qmodel)
    assert (groups["c0"].members, groups["c0"].consumers) == (["pool"], {"c1": "pool"})
    assert (groups["c1"].members, groups["c1"].consumers) == (["gap"], {"fc": "gap"})
    assert not groups["c0"].blocked and not groups["c1"].blocked


def test_unsupported_layer_blocks_with_its_class_name():
    inputs = keras.Input((6, 6, 1))
    a = L.Conv2D(2, 3, name="a")(inputs)
    out = L.Concatenate(name="cat")([a, L.Conv2D(2, 3, name="b")(inputs)])
    groups = channel_groups(keras.Model(inputs, L.Dense(3, name="d")(L.Flatten()(out))))
    assert groups["a"].blocked == "'cat' (Concatenate) is not supported by surgery"
    assert groups["b"].blocked == "'cat' (Concatenate) is not supported by surgery"
    assert np.all([not g.consumers for n, g in groups.items() if n != "d"])
