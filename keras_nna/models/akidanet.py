"""AkidaNet: a MobileNet V1 shaped for an event-based sparse accelerator.

AkidaNet is MobileNet V1 in which the first separable blocks are replaced by
standard 3×3 convolutions (cheap on the accelerator, and better at extracting
features from a raw image), followed by ten `SeparableConv2D` blocks. Every
convolution is bias-free with "same" padding and is followed by its own
`BatchNormalization` and `ReLU` layers, which the keras_nna quantizer folds
into the integer layer. The model takes **raw uint8 pixels** (0–255): its
first layer is `Rescaling(1 / 255)`.

    import keras
    from keras_nna.datasets import load_faces, prepare_for_akidanet
    from keras_nna.models import AkidaNet

    (x_train, y_train), (x_test, y_test) = load_faces()
    model = AkidaNet(input_shape=(96, 96, 3), alpha=0.25, classes=2)
    model.compile("adam",
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(prepare_for_akidanet(x_train), y_train, epochs=5)

The classifier outputs **logits** (no softmax): compile with
`from_logits=True`, and apply `keras.ops.softmax` for probabilities.

**BatchNormalization momentum defaults to 0.9, not Keras' 0.99.** Evaluation
(`predict`, `evaluate`, quantization, export) uses the BatchNorm *moving*
statistics, and after `k` training steps they still hold `momentum**k` of
their initial values (mean 0, variance 1). With 0.99 that is 50 % after 69
steps and 1 % only after ~460, so a short run on small data evaluates near
chance while `fit` (batch statistics) reports progress: sklearn digits,
3 epochs (69 steps), eval accuracy 0.10 with 0.99 versus 0.87 with 0.9.
With 0.9 the moving statistics are within 1 % after ~44 steps. For long
ImageNet-scale training, where smoother statistics can help slightly, pass
`bn_momentum=0.99`.

Layer table (filters for `alpha`; `alpha=0.25` in brackets):

| layers | kind | stride | filters |
| --- | --- | --- | --- |
| `conv_0` | Conv2D 3×3 | 2 | 32α [8] |
| `conv_1` | Conv2D 3×3 | 1 | 64α [16] |
| `conv_2` | Conv2D 3×3 | 2 | 128α [32] |
| `conv_3` | Conv2D 3×3 | 1 | 128α [32] |
| `separable_4`, `separable_5` | SeparableConv2D 3×3 | 2, 1 | 256α [64] |
| `separable_6` … `separable_11` | SeparableConv2D 3×3 | 2, then 1 | 512α [128] |
| `separable_12`, `separable_13` | SeparableConv2D 3×3 | 2, 1 | 1024α [256] |
| `global_avg_pool`, (`dropout`), `classifier` | pooling, Dense | | `classes` |

Each `conv_i` / `separable_i` is followed by `<name>_bn` and `<name>_relu`.
Filters are `int(base * alpha)` as in Keras' MobileNet. At 96×96×3 with two
classes, `alpha` 0.25 / 0.5 / 1.0 give 226,906 / 872,882 / 3,422,050
parameters; `alpha=0.25` costs 16.51 M MACs (`keras_nna.models.count_macs`).
"""

import keras

from keras_nna._checks import check_number

__all__ = ["AkidaNet"]

# (name, kind, base filters, stride) of the feature extractor.
_BLOCKS = (
    [("conv_0", "conv", 32, 2), ("conv_1", "conv", 64, 1),
     ("conv_2", "conv", 128, 2), ("conv_3", "conv", 128, 1),
     ("separable_4", "separable", 256, 2), ("separable_5", "separable", 256, 1),
     ("separable_6", "separable", 512, 2)]
    + [(f"separable_{i}", "separable", 512, 1) for i in range(7, 12)]
    + [("separable_12", "separable", 1024, 2), ("separable_13", "separable", 1024, 1)]
)


def _check_args(input_shape, alpha, classes, include_top, dropout, bn_momentum):
    if (not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3
            or not all(d is None or (isinstance(d, int) and d > 0) for d in input_shape[:2])
            or not (isinstance(input_shape[2], int) and input_shape[2] > 0)):
        raise ValueError(f"`input_shape` must be (height, width, channels) with positive ints "
                         f"(height and width may be None), received {input_shape!r}. Pass e.g. "
                         f"`input_shape=(96, 96, 3)`.")
    alpha = check_number("alpha", alpha, low=0.0, low_open=True,
                         fix="`alpha` is the width multiplier; use e.g. 0.25, 0.5 or 1.0.")
    if int(32 * alpha) < 1:
        raise ValueError(f"`alpha` must be at least 1/32 so that `conv_0` has a filter, "
                         f"received {alpha!r}. Use e.g. `alpha=0.25`.")
    if include_top and (isinstance(classes, bool) or not isinstance(classes, int)
                        or classes < 1):
        raise ValueError(f"`classes` must be a positive int when `include_top=True`, received "
                         f"{classes!r}. Pass e.g. `classes=2`, or `include_top=False` for a "
                         f"feature extractor.")
    check_number("dropout", dropout, low=0.0, high=1.0, high_open=True,
                 fix="`dropout` is a rate: pass e.g. `dropout=0.2`, or 0 for no Dropout layer.")
    check_number("bn_momentum", bn_momentum, low=0.0, high=1.0, low_open=True, high_open=True,
                 fix="Use 0.9 (the default, converges in ~50 steps) or 0.99 for long "
                     "ImageNet-scale training.")


def AkidaNet(input_shape=(96, 96, 3), alpha=0.25, classes=2, include_top=True, dropout=0.0,
             bn_momentum=0.9, name="akidanet"):
    """Builds an AkidaNet (MobileNet V1 with standard first convolutions).

    See the module docstring for the layer table. All convolutions are
    `use_bias=False`, "same" padding, each followed by `BatchNormalization`
    and `ReLU` layers named after it (`conv_0_bn`, `conv_0_relu`, ...).

    Args:
        input_shape: `(height, width, channels)` of the uint8 input images.
            Defaults to `(96, 96, 3)`.
        alpha: Width multiplier of every layer's filters (MobileNet's alpha).
            Defaults to `0.25`.
        classes: Number of classes (logits) of the classifier. Defaults to `2`.
        include_top: Add global average pooling, the optional dropout and the
            Dense classifier. If false, the model outputs the ReLU feature map
            of `separable_13`. Defaults to `True`.
        dropout: Rate of a `Dropout` layer before the classifier; `0` adds no
            layer. Defaults to `0.0`.
        bn_momentum: Momentum of the moving mean and variance of every
            `BatchNormalization` layer. `0.9` converges in about 50 training
            steps, so short runs on small data evaluate correctly; Keras'
            own default `0.99` needs ~460 steps and suits only long
            ImageNet-scale training (see the module docstring).
            Defaults to `0.9`.
        name: Name of the model. Defaults to `"akidanet"`.

    Returns:
        A functional `keras.Model` mapping uint8 pixel values to logits of
        shape `(batch, classes)` (or to the feature map if `include_top` is
        false).

    Raises:
        TypeError: If `alpha`, `dropout` or `bn_momentum` is not a number.
        ValueError: If an argument is out of range, NaN or infinite (the
            message says which).

    Example:

    >>> model = AkidaNet(input_shape=(32, 32, 3), alpha=0.25, classes=3)
    >>> model.output.shape
    (None, 3)
    >>> [layer.name for layer in model.layers[:5]]
    ['input', 'rescaling', 'conv_0', 'conv_0_bn', 'conv_0_relu']
    >>> model.count_params()
    227163
    >>> model.get_layer("conv_0_bn").momentum  # converges on small data too
    0.9

    A feature extractor, and a classifier with dropout:

    >>> AkidaNet(input_shape=(64, 64, 1), include_top=False).output.shape
    (None, 2, 2, 256)
    >>> head = AkidaNet(input_shape=(32, 32, 3), dropout=0.2)
    >>> [layer.name for layer in head.layers[-3:]]
    ['global_avg_pool', 'dropout', 'classifier']
    """
    _check_args(input_shape, alpha, classes, include_top, dropout, bn_momentum)
    inputs = keras.Input(shape=tuple(input_shape), name="input")
    x = keras.layers.Rescaling(1.0 / 255.0, offset=0.0, name="rescaling")(inputs)
    for layer_name, kind, base, stride in _BLOCKS:
        filters = max(1, int(base * alpha))
        if kind == "conv":
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                    name=layer_name)(x)
        else:
            x = keras.layers.SeparableConv2D(filters, 3, strides=stride, padding="same",
                                             use_bias=False, name=layer_name)(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{layer_name}_bn")(x)
        x = keras.layers.ReLU(name=f"{layer_name}_relu")(x)
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="global_avg_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="dropout")(x)
        x = keras.layers.Dense(classes, name="classifier")(x)
    return keras.Model(inputs, x, name=name)
