"""A parametrized family of small random networks covering every layer kind.

`make_case(seed)` returns a trained-for-a-few-steps quantized model and a
uint8 batch. Each seed picks bit widths 2–8, strides, padding modes, odd
spatial sizes and a layer mix, so bit-exactness is exercised broadly.
"""

import keras
import numpy as np

from keras_nna.quantization import QuantizationPolicy, quantize_model


def _block(x, rng, name, kind, filters):
    pad = str(rng.choice(["same", "valid"]))
    stride = int(rng.choice([1, 1, 2]))
    k = int(rng.choice([1, 3, 3, 5]))
    if min(x.shape[1], x.shape[2]) < k + 1:
        k, pad = 1, "same"
    if kind == "conv":
        layer = keras.layers.Conv2D(filters, k, strides=stride, padding=pad, use_bias=bool(rng.random() < 0.3), name=name)
    elif kind == "depthwise":
        layer = keras.layers.DepthwiseConv2D(k, strides=stride, padding=pad, use_bias=False, name=name)
    else:
        layer = keras.layers.SeparableConv2D(filters, k, strides=stride, padding=pad, use_bias=False, name=name)
    x = layer(x)
    if rng.random() < 0.8:
        x = keras.layers.BatchNormalization(momentum=0.5, name=name + "_bn")(x)
    return keras.layers.ReLU(name=name + "_relu")(x)


def make_float_model(seed):
    """Returns (float model, policy) for `seed`."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(7, 20)), int(rng.integers(7, 20))
    c = int(rng.choice([1, 2, 3]))
    inputs = keras.Input((h, w, c))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = _block(x, rng, "l0", "conv", int(rng.integers(3, 9)))
    overrides = {}
    for i in range(1, int(rng.integers(2, 5))):
        kind = str(rng.choice(["conv", "depthwise", "separable"]))
        x = _block(x, rng, f"l{i}", kind, int(rng.integers(3, 12)))
        overrides[f"l{i}"] = {
            "weight_bits": int(rng.integers(2, 9)),
            "activation_bits": int(rng.integers(1, 9)),
        }
        if rng.random() < 0.25 and min(x.shape[1], x.shape[2]) >= 2:
            x = keras.layers.MaxPooling2D(2, padding=str(rng.choice(["same", "valid"])))(x)
    head = rng.choice(["gap", "flatten", "avgpool"])
    if head == "avgpool" and min(x.shape[1], x.shape[2]) >= 2:
        x = keras.layers.AveragePooling2D(2)(x)
        x = keras.layers.Flatten()(x)
    elif head == "gap":
        x = keras.layers.GlobalAveragePooling2D()(x)
    else:
        x = keras.layers.Flatten()(x)
    if rng.random() < 0.5:
        x = keras.layers.Dense(int(rng.integers(4, 16)), activation="relu", name="hidden")(x)
        overrides["hidden"] = {"weight_bits": int(rng.integers(2, 9))}
    outputs = keras.layers.Dense(int(rng.integers(2, 6)), name="logits")(x)
    policy = QuantizationPolicy(
        weight_bits=int(rng.integers(2, 9)),
        activation_bits=int(rng.integers(1, 9)),
        first_layer_weight_bits=int(rng.integers(2, 9)),
        activation_max=float(rng.choice([2.0, 4.0, 6.0])),
        overrides=overrides,
    )
    return keras.Model(inputs, outputs, name=f"zoo_{seed}"), policy


def make_case(seed, steps=3):
    """Returns (quantized model after a few training steps, uint8 images)."""
    model, policy = make_float_model(seed)
    qmodel = quantize_model(model, policy)
    rng = np.random.default_rng(seed + 1000)
    shape = model.inputs[0].shape[1:]
    images = rng.integers(0, 256, (16, *shape)).astype(np.uint8)
    labels = rng.integers(0, qmodel.outputs[0].shape[-1], 16)
    qmodel.compile(keras.optimizers.Adam(0.05),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qmodel.fit(images.astype("float32"), labels, batch_size=8, epochs=steps, verbose=0)
    return qmodel, images


def make_wide_case(bits, epochs=3):
    """A net with channel counts above 64 (multi-block VNNI kernels), briefly trained.

    Returns:
        `(qmodel, images)`: the quantized model and its 12 uint8 training images.
    """
    keras.utils.set_random_seed(1)
    inputs = keras.Input((13, 11, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    for layer in (keras.layers.Conv2D(40, 3, strides=2, padding="same", use_bias=False),
                  keras.layers.Conv2D(70, 3, padding="same", use_bias=False),
                  keras.layers.SeparableConv2D(96, 3, strides=2, padding="valid", use_bias=False)):
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.5)(layer(x)))
    x = keras.layers.Dense(70, activation="relu")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, keras.layers.Dense(5)(x))
    qmodel = quantize_model(model, QuantizationPolicy(weight_bits=bits[0], activation_bits=bits[1]))
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (12, 13, 11, 3)).astype(np.uint8)
    qmodel.compile(keras.optimizers.Adam(0.02),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qmodel.fit(images.astype("float32"), rng.integers(0, 5, 12), epochs=epochs, verbose=0)
    return qmodel, images
