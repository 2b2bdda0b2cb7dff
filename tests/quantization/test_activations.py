"""quantize_model refuses every activation but ReLU/linear instead of dropping it (issue 12, defect 3)."""

import re

import keras
import numpy as np
import pytest

from keras_nna.quantization import quantize_model

L = keras.layers


def _head(last):
    """conv → relu → flatten → `last(x)` (a callable building the tail of the model)."""
    inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c0")(inputs)
    x = L.Flatten()(x)
    return keras.Model(inputs, last(x))


OUTPUT_CASES = {
    "dense_softmax": (lambda x: L.Dense(3, activation="softmax", name="fc")(x), "fc", "softmax"),
    "dense_sigmoid": (lambda x: L.Dense(3, activation="sigmoid", name="fc")(x), "fc", "sigmoid"),
    "dense_tanh": (lambda x: L.Dense(3, activation="tanh", name="fc")(x), "fc", "tanh"),
    "activation_softmax": (lambda x: L.Activation("softmax", name="act")(L.Dense(3)(x)), "act",
                           "softmax"),
    "activation_sigmoid": (lambda x: L.Activation("sigmoid", name="act")(L.Dense(3)(x)), "act",
                           "sigmoid"),
    "softmax_layer": (lambda x: L.Softmax(name="sm")(L.Dense(3)(x)), "sm", "softmax"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_output_activation_is_refused_with_the_logits_fix(case):
    build, layer, act = OUTPUT_CASES[case]
    with pytest.raises(ValueError, match=rf"layer '{layer}'.*activation '{act}'.*Fix:") as info:
        quantize_model(_head(build))
    message = str(info.value)
    assert "from_logits=True" in message and f"keras.activations.{act}" in message


def _hidden(make):
    inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, name="c0")(inputs)
    x = make()(x)
    return keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))


HIDDEN_CASES = {
    "conv_tanh": (lambda: L.Conv2D(4, 1, activation="tanh", name="h"), "tanh"),
    "conv_relu6": (lambda: L.Conv2D(4, 1, activation="relu6", name="h"), "relu6"),
    "conv_gelu": (lambda: L.Conv2D(4, 1, activation=keras.activations.gelu, name="h"), "gelu"),
    "activation_sigmoid": (lambda: L.Activation("sigmoid", name="h"), "sigmoid"),
    "activation_swish": (lambda: L.Activation("swish", name="h"), "silu"),
    "elu_layer": (lambda: L.ELU(name="h"), "elu"),
    "prelu_layer": (lambda: L.PReLU(name="h"), "prelu"),
    "leaky_relu_layer": (lambda: L.LeakyReLU(name="h"), "leaky_relu"),
    "relu_negative_slope": (lambda: L.ReLU(negative_slope=0.1, name="h"), "ReLU(negative_slope"),
    "softmax_layer": (lambda: L.Softmax(name="h"), "softmax"),
}


@pytest.mark.parametrize("case", sorted(HIDDEN_CASES))
def test_hidden_activation_is_refused(case):
    make, act = HIDDEN_CASES[case]
    with pytest.raises(ValueError, match=rf"layer 'h'.*activation '{re.escape(act)}.*Fix:.*'relu'"):
        quantize_model(_hidden(make))


@pytest.mark.parametrize("make", [lambda: L.Activation("linear"), lambda: L.Activation("relu"),
                                  lambda: L.ReLU(), lambda: L.ReLU(max_value=8.0),
                                  lambda: L.Conv2D(4, 1, activation="relu")],
                         ids=["linear", "activation_relu", "relu", "relu_capped", "conv_relu"])
def test_relu_and_linear_are_accepted(make):
    qmodel = quantize_model(_hidden(make))
    assert np.isfinite(qmodel.predict(np.ones((1, 6, 6, 1), "float32"), verbose=0)).all()


def test_relu_before_batchnorm_is_refused():
    inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, activation="relu", name="c0")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'c0'.*ReLU before its BatchNormalization"):
        quantize_model(model)
