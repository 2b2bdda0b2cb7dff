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


def _conv_bn(x, rng, name, filters, kernel=3, strides=1, padding="same", relu=True, cap=None):
    """Conv2D -> BatchNorm (-> ReLU, capped at `cap` when given)."""
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                            use_bias=bool(rng.random() < 0.3), name=name)(x)
    x = keras.layers.BatchNormalization(momentum=0.5, name=name + "_bn")(x)
    return keras.layers.ReLU(max_value=cap, name=name + "_relu")(x) if relu else x


def _residual_block(x, rng, name, signed):
    """One random residual block; returns `(output, output is signed)`."""
    c = x.shape[-1]
    block = str(rng.choice(["basic", "down", "bottleneck", "pad"]))
    if block == "basic":  # conv-BN-ReLU, conv-BN (signed), Add, optional fused ReLU
        y = _conv_bn(x, rng, name + "_a", c)
        y = _conv_bn(y, rng, name + "_b", c, relu=False)
        x = keras.layers.Add(name=name + "_add")([x, y])
        relu = bool(rng.random() < 0.6)
        if relu:
            x = keras.layers.ReLU(name=name + "_add_relu")(x)
        return x, not relu
    if block == "down":  # stride-2 branch + 1x1 stride-2 conv-BN shortcut, Add + ReLU
        f = int(rng.integers(3, 9))
        y = _conv_bn(x, rng, name + "_a", f, strides=2)
        y = _conv_bn(y, rng, name + "_b", f, relu=False)
        s = _conv_bn(x, rng, name + "_short", f, kernel=1, strides=2, relu=False)
        x = keras.layers.Add(name=name + "_add")([s, y])
        return keras.layers.Activation("relu", name=name + "_add_relu")(x), False
    if block == "bottleneck":  # expand (ReLU6), depthwise, linear projection (signed)
        y = _conv_bn(x, rng, name + "_expand", 2 * c, kernel=1, cap=6.0)
        y = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=name + "_dw")(y)
        y = keras.layers.ReLU(6.0, name=name + "_dw_relu")(
            keras.layers.BatchNormalization(momentum=0.5, name=name + "_dw_bn")(y))
        y = _conv_bn(y, rng, name + "_project", c, kernel=1, relu=False)
        if rng.random() < 0.5:
            return keras.layers.Add(name=name + "_add")([x, y]), True
        return y, True  # the linear bottleneck feeds the next conv directly
    pad = int(rng.integers(1, 3))  # ZeroPadding2D + a valid conv or max pool
    x = keras.layers.ZeroPadding2D(pad, name=name + "_pad")(x)
    if not signed and rng.random() < 0.5:
        return keras.layers.MaxPooling2D(pad + 1, strides=1, name=name + "_pool")(x), False
    return _conv_bn(x, rng, name + "_conv", c, kernel=pad + 1 + int(rng.integers(0, 2)),
                    padding="valid"), False


def make_residual_float_model(seed):
    """Returns `(float model, policy)`: a random residual network for `seed`.

    A conv stem, then 2-3 random blocks: Add of conv-BN branches with or without
    the fused ReLU, a stride-2 block with a 1x1 stride-2 conv shortcut, a
    MobileNetV2-style linear bottleneck (signed codes) added or feeding a conv,
    ZeroPadding2D before a valid conv or max pool; then GAP and a Dense.
    """
    rng = np.random.default_rng(seed)
    h, w, c = int(rng.integers(8, 15)), int(rng.integers(8, 15)), int(rng.choice([1, 2, 3]))
    inputs = keras.Input((h, w, c))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = _conv_bn(x, rng, "stem", int(rng.integers(3, 7)))
    signed = False
    for i in range(int(rng.integers(2, 4))):
        x, signed = _residual_block(x, rng, f"b{i}", signed)
    if signed or rng.random() < 0.3:
        x = _conv_bn(x, rng, "head", int(rng.integers(3, 9)), kernel=1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(int(rng.integers(2, 6)), name="logits")(x)
    model = keras.Model(inputs, outputs, name=f"residual_{seed}")
    overrides = {layer.name: {"activation_bits": int(rng.integers(3, 9))}
                 for layer in model.layers if layer.name.endswith("_add") and rng.random() < 0.5}
    policy = QuantizationPolicy(
        weight_bits=int(rng.integers(3, 9)),
        activation_bits=int(rng.integers(3, 9)),
        first_layer_weight_bits=int(rng.integers(4, 9)),
        activation_max=float(rng.choice([2.0, 3.0, 4.0])),  # <= the ReLU6 caps' range
        overrides=overrides,
    )
    return model, policy


def make_residual_case(seed, steps=3):
    """Returns `(quantized residual model after a few training steps, uint8 images)`."""
    model, policy = make_residual_float_model(seed)
    qmodel = quantize_model(model, policy)
    rng = np.random.default_rng(seed + 2000)
    images = rng.integers(0, 256, (16, *model.inputs[0].shape[1:])).astype(np.uint8)
    labels = rng.integers(0, qmodel.outputs[0].shape[-1], 16)
    qmodel.compile(keras.optimizers.Adam(0.05),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qmodel.fit(images.astype("float32"), labels, batch_size=8, epochs=steps, verbose=0)
    return qmodel, images
