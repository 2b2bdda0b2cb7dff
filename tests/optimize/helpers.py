"""A tiny trained float model and data for the optimize tests (digits, 8x8x1)."""

import functools

import keras
import numpy as np


@functools.lru_cache(maxsize=1)
def digits():
    """`(x, y, x_val, y_val)`: scikit-learn digits as uint8 8x8x1 images."""
    from keras_nna import datasets

    (x, y), (xt, yt) = datasets.load_digits()
    return x, y, xt[:120], yt[:120]


def small_cnn(width=8, seed=0):
    """Conv-BN-ReLU, separable-BN-ReLU, GAP, Dense: every kind the search touches."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Rescaling(1 / 255)(inputs)
    h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv")(h)
    h = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(momentum=0.9, name="bn")(h))
    h = keras.layers.SeparableConv2D(2 * width, 3, strides=2, padding="same", use_bias=False,
                                     name="sep")(h)
    h = keras.layers.ReLU(name="relu2")(keras.layers.BatchNormalization(momentum=0.9,
                                                                        name="bn2")(h))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inputs, keras.layers.Dense(10, name="head")(h))


@functools.lru_cache(maxsize=1)
def trained_cnn_weights():
    model = small_cnn()
    x, y, _, _ = digits()
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, batch_size=32, epochs=12, verbose=0)
    return model.get_weights()


def trained_cnn():
    """A fresh copy of the small CNN trained 12 epochs on digits (validation accuracy measured in test_helpers_model_is_trained)."""
    model = small_cnn()
    model.set_weights(trained_cnn_weights())
    return model
