"""MLPerf Tiny reference models, built for keras_nna.

Three builders reproduce the reference architectures of MLPerf Tiny
(`mlcommons/tiny`, `benchmark/training/*/keras_model.py`) layer for layer,
with the same parameter counts as the trained reference models the benchmark
ships (counted from `image_classification/trained_models/pretrainedResnet.h5`,
`keyword_spotting/trained_models/kws_ref_model/` and
`anomaly_detection/trained_models/ad01.h5`):

| builder | task | reference | parameters |
| --- | --- | --- | --- |
| `ResNet8()` | CIFAR-10 image classification | `resnet_v1_eembc` (16 filters) | 78,666 |
| `DSCNN()` | keyword spotting, 49×10 MFCC | `ds_cnn` (DS-CNN small, 64 filters) | 24,908 |
| `DenseAutoencoder()` | anomaly detection, 5×128 log-mel | `get_model(640)` | 269,992 |

    import keras
    from keras_nna.models import ResNet8

    model = ResNet8()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])

Deviations from the references, all required by keras_nna:

- **Logits out, no softmax** (keras_nna refuses a final softmax): compile with
  `from_logits=True` and apply `keras.ops.softmax` after `predict`.
- **uint8 input**: the accelerator takes a uint8 image `(H, W, C)`, so each
  model starts with `Rescaling(rescaling)` (default `1/255`; `None` for no
  layer). The autoencoder takes its 640 features as a `(5, 128, 1)` image
  (5 frames × 128 mel bins, frame-major as the reference's feature vector)
  and flattens it; its output is the raw `Dense(640)` reconstruction.
- **BatchNormalization momentum 0.9** (Keras: 0.99), configurable with
  `bn_momentum`; see `keras_nna.models.AkidaNet` for why 0.9 suits short runs.
- ReLUs are `keras.layers.ReLU` layers (the references use
  `Activation("relu")`; same function, and `max_value` can cap them).

Everything else (kernel sizes, strides, "same" padding, biases, the 1×1
shortcut convolutions without BatchNormalization, the L2 weight decay 1e-4,
dropouts, the DS-CNN's average pool of `(H // 2, W // 2)`) is as in the
references.
"""

import keras

from keras_nna._checks import check_number

__all__ = ["ResNet8", "DSCNN", "DenseAutoencoder"]

_L = keras.layers


def _check_common(input_shape, classes, bn_momentum, rescaling, weight_decay=0.0):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                       for d in input_shape)):
        raise ValueError(f"`input_shape` must be (height, width, channels) with positive ints, "
                         f"received {input_shape!r}. Pass e.g. `input_shape=(32, 32, 3)`.")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int)
                                or classes < 1):
        raise ValueError(f"`classes` must be a positive int, received {classes!r}. Pass e.g. "
                         f"`classes=10`.")
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0, low_open=True, high_open=True,
                 fix="Use 0.9 (the default, converges in ~50 steps) or 0.99 for long training.")
    check_number("rescaling", rescaling, low=0.0, low_open=True, allow_none=True,
                 fix="Pass the input scale, e.g. 1/255 for uint8 inputs, or None for no "
                     "Rescaling layer.")
    check_number("weight_decay", weight_decay, low=0.0,
                 fix="Pass the L2 strength of the kernels, e.g. 1e-4, or 0 for none.")


def _input(input_shape, rescaling):
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = inputs if rescaling is None else _L.Rescaling(rescaling, name="rescaling")(inputs)
    return inputs, x


def _conv(x, filters, kernel, stride, name, weight_decay):
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    return _L.Conv2D(filters, kernel, strides=stride, padding="same", name=name,
                     kernel_initializer="he_normal", kernel_regularizer=reg)(x)


def _bn(x, momentum, name):
    return _L.BatchNormalization(momentum=momentum, name=name)(x)


def ResNet8(input_shape=(32, 32, 3), classes=10, filters=16, bn_momentum=0.9,  # long: docstring
            weight_decay=1e-4, rescaling=1.0 / 255.0, name="resnet8"):
    """Builds MLPerf Tiny's ResNet-8 image classifier (ResNet v1, 3 stages).

    `conv_0` (3×3, `filters`) → BN → ReLU, then three stages `s` = 1, 2, 3 of
    `filters · 2^(s-1)` channels (stride 1, 2, 2): `stage{s}_conv1` (3×3) →
    BN → ReLU → `stage{s}_conv2` (3×3) → `stage{s}_bn2`, added (`stage{s}_add`)
    to the shortcut — the stage input itself in stage 1, a 1×1 convolution
    `stage{s}_shortcut` (stride 2, no BatchNormalization, as in the reference)
    in stages 2 and 3 — then `stage{s}_relu`. Head: `avg_pool` (8×8 for a
    32×32 input), `flatten`, `classifier` (Dense logits). All convolutions
    have biases, "he_normal" kernels and L2 `weight_decay` as in the
    reference. Stage 1's identity shortcut puts `conv_0` and `stage1_conv2`
    in one channel group (`keras_nna.sparsity.channel_groups`).

    Args:
        input_shape: `(height, width, channels)` of the uint8 images.
            Defaults to `(32, 32, 3)`.
        classes: Number of logits. Defaults to `10`.
        filters: Channels of the first stage (the reference's 16; 26 is its
            "large" variant). Defaults to `16`.
        bn_momentum: Momentum of every BatchNormalization. Defaults to `0.9`.
        weight_decay: L2 strength on every convolution kernel (`0` for none).
            Defaults to `1e-4`.
        rescaling: Scale of a leading `Rescaling` layer, `None` for none.
            Defaults to `1/255`.
        name: Model name. Defaults to `"resnet8"`.

    Returns:
        A functional `keras.Model` mapping images to logits `(batch, classes)`.

    Raises:
        TypeError: If a numeric argument is not a number.
        ValueError: If an argument is out of range (the message says which).

    Example:

    >>> model = ResNet8()
    >>> model.count_params(), model.output.shape
    (78666, (None, 10))
    >>> [layer.name for layer in model.layers if isinstance(layer, keras.layers.Add)]
    ['stage1_add', 'stage2_add', 'stage3_add']
    """
    _check_common(input_shape, classes, bn_momentum, rescaling, weight_decay)
    filters = int(check_number("filters", filters, low=1, integer=True,
                               fix="Pass the first stage's channels, e.g. filters=16."))
    inputs, x = _input(input_shape, rescaling)
    x = _conv(x, filters, 3, 1, "conv_0", weight_decay)
    x = _L.ReLU(name="conv_0_relu")(_bn(x, bn_momentum, "conv_0_bn"))
    for stage in (1, 2, 3):
        width, stride = filters * 2 ** (stage - 1), 1 if stage == 1 else 2
        y = _conv(x, width, 3, stride, f"stage{stage}_conv1", weight_decay)
        y = _L.ReLU(name=f"stage{stage}_relu1")(_bn(y, bn_momentum, f"stage{stage}_bn1"))
        y = _conv(y, width, 3, 1, f"stage{stage}_conv2", weight_decay)
        y = _bn(y, bn_momentum, f"stage{stage}_bn2")
        if stage > 1:
            x = _conv(x, width, 1, stride, f"stage{stage}_shortcut", weight_decay)
        x = _L.Add(name=f"stage{stage}_add")([x, y])
        x = _L.ReLU(name=f"stage{stage}_relu")(x)
    x = _L.AveragePooling2D(pool_size=min(x.shape[1:3]), name="avg_pool")(x)
    x = _L.Flatten(name="flatten")(x)
    x = _L.Dense(classes, kernel_initializer="he_normal", name="classifier")(x)
    return keras.Model(inputs, x, name=name)


def DSCNN(input_shape=(49, 10, 1), classes=12, filters=64, bn_momentum=0.9,  # long: docstring
          weight_decay=1e-4, rescaling=1.0 / 255.0, name="dscnn"):
    """Builds MLPerf Tiny's DS-CNN keyword-spotting model (DS-CNN small).

    `conv_0` (10×4, stride 2, `filters`) → BN → ReLU → `dropout_0` (0.2),
    then four depthwise-separable blocks `i` = 1..4: `dw_{i}`
    (DepthwiseConv2D 3×3) → BN → ReLU → `pw_{i}` (Conv2D 1×1) → BN → ReLU;
    head: `dropout` (0.4), `avg_pool` of `(H // 2, W // 2)` (as the reference:
    24×5 on the 25×5 map, its last row is not averaged; the exporter writes
    the one window with a stride the bytecode holds),
    `flatten`,
    `classifier` (Dense logits). Convolutions have biases and L2
    `weight_decay` as in the reference. The input is the 49-frame ×
    10-coefficient MFCC map as a uint8 image.

    Args:
        input_shape: `(frames, coefficients, 1)`. Defaults to `(49, 10, 1)`.
        classes: Number of logits (the reference's 12 keywords). Defaults to `12`.
        filters: Channels of every layer. Defaults to `64`.
        bn_momentum: Momentum of every BatchNormalization. Defaults to `0.9`.
        weight_decay: L2 strength on every kernel (`0` for none). Defaults to
            `1e-4`.
        rescaling: Scale of a leading `Rescaling` layer, `None` for none.
            Defaults to `1/255`.
        name: Model name. Defaults to `"dscnn"`.

    Returns:
        A functional `keras.Model` mapping MFCC images to logits `(batch, classes)`.

    Raises:
        TypeError: If a numeric argument is not a number.
        ValueError: If an argument is out of range (the message says which).

    Example:

    >>> model = DSCNN()
    >>> model.count_params(), model.output.shape
    (24908, (None, 12))
    >>> model.get_layer("avg_pool").pool_size
    (24, 5)
    """
    _check_common(input_shape, classes, bn_momentum, rescaling, weight_decay)
    filters = int(check_number("filters", filters, low=1, integer=True,
                               fix="Pass the channels of every layer, e.g. filters=64."))
    reg = keras.regularizers.L2(weight_decay) if weight_decay else None
    inputs, x = _input(input_shape, rescaling)
    x = _L.Conv2D(filters, (10, 4), strides=2, padding="same", kernel_regularizer=reg,
                  name="conv_0")(x)
    x = _L.ReLU(name="conv_0_relu")(_bn(x, bn_momentum, "conv_0_bn"))
    x = _L.Dropout(0.2, name="dropout_0")(x)
    for i in range(1, 5):
        x = _L.DepthwiseConv2D(3, padding="same", depthwise_regularizer=reg, name=f"dw_{i}")(x)
        x = _L.ReLU(name=f"dw_{i}_relu")(_bn(x, bn_momentum, f"dw_{i}_bn"))
        x = _L.Conv2D(filters, 1, padding="same", kernel_regularizer=reg, name=f"pw_{i}")(x)
        x = _L.ReLU(name=f"pw_{i}_relu")(_bn(x, bn_momentum, f"pw_{i}_bn"))
    x = _L.Dropout(0.4, name="dropout")(x)
    pool = (max(1, input_shape[0] // 2), max(1, input_shape[1] // 2))
    x = _L.AveragePooling2D(pool_size=pool, name="avg_pool")(x)
    x = _L.Flatten(name="flatten")(x)
    x = _L.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, x, name=name)


def DenseAutoencoder(input_shape=(5, 128, 1), units=128, bottleneck=8,  # long: docstring
                     bn_momentum=0.9, rescaling=1.0 / 255.0, name="dense_autoencoder"):
    """Builds MLPerf Tiny's anomaly-detection autoencoder (fully connected).

    `flatten` (the `(5, 128, 1)` image to the reference's 640-vector), then
    `encoder_1` … `encoder_4` (Dense `units`), `bottleneck` (Dense
    `bottleneck`), `decoder_1` … `decoder_4` (Dense `units`), each followed by
    `<name>_bn` and `<name>_relu`, and `reconstruction`, a raw Dense of
    `H·W·C` outputs (640): the anomaly score is the reconstruction error,
    e.g. `mean((model(x) - x / 255) ** 2)` when trained on `x / 255` targets.

    Args:
        input_shape: `(frames, mel bins, 1)` of the uint8 log-mel features.
            Defaults to `(5, 128, 1)`.
        units: Width of the hidden layers. Defaults to `128`.
        bottleneck: Width of the code layer. Defaults to `8`.
        bn_momentum: Momentum of every BatchNormalization. Defaults to `0.9`.
        rescaling: Scale of a leading `Rescaling` layer, `None` for none.
            Defaults to `1/255`.
        name: Model name. Defaults to `"dense_autoencoder"`.

    Returns:
        A functional `keras.Model` mapping `(batch, *input_shape)` to
        `(batch, H·W·C)` reconstructions.

    Raises:
        TypeError: If a numeric argument is not a number.
        ValueError: If an argument is out of range (the message says which).

    Example:

    >>> model = DenseAutoencoder()
    >>> model.count_params(), model.output.shape
    (269992, (None, 640))
    """
    _check_common(input_shape, None, bn_momentum, rescaling)
    units = int(check_number("units", units, low=1, integer=True,
                             fix="Pass the hidden width, e.g. units=128."))
    bottleneck = int(check_number("bottleneck", bottleneck, low=1, integer=True,
                                  fix="Pass the code width, e.g. bottleneck=8."))
    inputs, x = _input(input_shape, rescaling)
    x = _L.Flatten(name="flatten")(x)
    widths = [(f"encoder_{i}", units) for i in range(1, 5)] + [("bottleneck", bottleneck)]
    widths += [(f"decoder_{i}", units) for i in range(1, 5)]
    for layer_name, width in widths:
        x = _L.Dense(width, name=layer_name)(x)
        x = _L.ReLU(name=f"{layer_name}_relu")(_bn(x, bn_momentum, f"{layer_name}_bn"))
    outputs = _L.Dense(_size(input_shape), name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=name)


def _size(shape):
    out = 1
    for d in shape:
        out *= int(d)
    return out
