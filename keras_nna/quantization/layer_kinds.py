"""One table that says what kind of layer a Keras layer is.

Every part of keras_nna that asks "is this a convolution?", "is this a
ReLU?" or "does this layer just pass channels through?" asks this module:
`quantize_model` (which layers it fuses), `export_model` (which instruction a
layer lowers to), the sparsity transforms (channel groups, event fan-out,
activity regularization) and the MAC counter of `keras_nna.models`. It
imports only `keras`, so any module can import it.

| kind | layers |
| --- | --- |
| `"conv"` | `Conv1D`, `Conv2D`, `Conv3D` (not the transposed ones) |
| `"depthwise"` | `DepthwiseConv1D`, `DepthwiseConv2D` |
| `"separable"` | `SeparableConv1D`, `SeparableConv2D` |
| `"dense"` | `Dense` |
| `"batchnorm"` | `BatchNormalization` |
| `"relu"` | `ReLU(max_value=any, negative_slope=0, threshold=0)`, `Activation("relu")` |
| `"activation"` | any other `ReLU`, `LeakyReLU`, `Activation` other than relu/linear |
| `"maxpool"` / `"avgpool"` | `MaxPooling1D/2D` / `AveragePooling1D/2D` |
| `"global_avgpool"` / `"global_maxpool"` | `GlobalAveragePooling1D/2D` / `GlobalMaxPooling1D/2D` |
| `"flatten"` / `"reshape"` | `Flatten` / `Reshape` |
| `"padding"` | `ZeroPadding1D/2D`, `Cropping2D` |
| `"upsampling"` | `UpSampling2D` |
| `"rescaling"` | `Rescaling` |
| `"add"` | `Add` (and keras_nna's `QuantizedAdd`) |
| `"passthrough"` | `InputLayer`, `Dropout` (and spatial dropouts), `Identity`, `Activation("linear")` |

Subclasses get their parent's kind; anything else is `None`. Wrappers
(`keras.layers.Wrapper`, e.g. `QuantizeWrapper`) are not looked through:
call `layer_kind(unwrap(layer))`. Layers defined elsewhere join the table with
`register_kind` (keras_nna's quantized pooling layers do).

The ReLU rule: a layer is a ReLU when it computes ``max(x, 0)``, optionally
capped (`max_value`). A `ReLU` with a `negative_slope` or `threshold` does
not: it is not what the accelerator fuses, and a leaky output has no zeros to
count as missing events.

Example:

>>> layer_kind(keras.layers.Conv2D(4, 3)), layer_kind(keras.layers.ReLU(max_value=6.0))
('conv', 'relu')
>>> layer_kind(keras.layers.ReLU(negative_slope=0.1)), layer_kind(keras.layers.Activation("linear"))
('activation', 'passthrough')
"""

import keras

__all__ = [
    "KINDS",
    "WEIGHTED_KINDS",
    "applies_relu",
    "is_relu",
    "is_relu_activation",
    "iter_layers",
    "keras3_type_error",
    "layer_calls",
    "layer_kind",
    "quantizable_kind",
    "register_kind",
    "unwrap",
]

_L = keras.layers

# (kind, classes), most specific first: the first isinstance match wins.
_TABLE = [
    ("separable", (_L.SeparableConv1D, _L.SeparableConv2D)),
    ("depthwise", (_L.DepthwiseConv1D, _L.DepthwiseConv2D)),
    ("conv", (_L.Conv1D, _L.Conv2D, _L.Conv3D)),
    ("dense", (_L.Dense,)),
    ("batchnorm", (_L.BatchNormalization,)),
    ("maxpool", (_L.MaxPooling1D, _L.MaxPooling2D)),
    ("avgpool", (_L.AveragePooling1D, _L.AveragePooling2D)),
    ("global_avgpool", (_L.GlobalAveragePooling1D, _L.GlobalAveragePooling2D)),
    ("global_maxpool", (_L.GlobalMaxPooling1D, _L.GlobalMaxPooling2D)),
    ("flatten", (_L.Flatten,)),
    ("reshape", (_L.Reshape,)),
    ("padding", (_L.ZeroPadding1D, _L.ZeroPadding2D, _L.Cropping2D)),
    ("upsampling", (_L.UpSampling2D,)),
    ("rescaling", (_L.Rescaling,)),
    ("add", (_L.Add,)),
    ("passthrough", (_L.InputLayer, _L.Dropout, _L.Identity)),
    ("activation", (_L.LeakyReLU,)),
]

KINDS = ("conv", "depthwise", "separable", "dense", "batchnorm", "relu", "activation", "maxpool",
         "avgpool", "global_avgpool", "global_maxpool", "flatten", "reshape", "padding",
         "upsampling", "rescaling", "passthrough", "add")
"""Every kind `layer_kind` returns (besides `None`)."""

WEIGHTED_KINDS = ("conv", "depthwise", "separable", "dense")
"""Kinds with a kernel: the layers that multiply (and that keras_nna quantizes)."""

_QUANTIZABLE = (_L.Conv2D, _L.DepthwiseConv2D, _L.SeparableConv2D, _L.Dense)


def register_kind(kind):
    """Class decorator adding a layer class to the table under `kind`.

    Args:
        kind: One of `KINDS`.

    Returns:
        The decorator (it returns the class unchanged).

    Raises:
        ValueError: If `kind` is not one of `KINDS`.

    Example:

    >>> @register_kind("passthrough")
    ... class MyNoise(keras.layers.Layer):
    ...     def call(self, x):
    ...         return x
    >>> layer_kind(MyNoise())
    'passthrough'
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown layer kind {kind!r}; expected one of {', '.join(KINDS)}.")

    def decorate(cls):
        _TABLE.insert(0, (kind, (cls,)))
        return cls

    return decorate


def is_relu_activation(activation):
    """Whether an activation (string or function) is plain ReLU.

    Args:
        activation: A layer's `activation` attribute or config entry.

    Returns:
        `True` for `"relu"`, `keras.activations.relu` or a function named `relu`.

    Example:

    >>> is_relu_activation("relu"), is_relu_activation(keras.activations.relu6)
    (True, False)
    """
    if isinstance(activation, str):
        return activation == "relu"
    return activation is keras.activations.relu or getattr(activation, "__name__", "") == "relu"


def _activation_kind(layer):
    if isinstance(layer, _L.ReLU):
        cfg = layer.get_config()
        plain = not cfg.get("negative_slope", 0.0) and not cfg.get("threshold", 0.0)
        return "relu" if plain else "activation"
    if isinstance(layer, _L.Activation):
        act = layer.get_config()["activation"]
        if act in ("linear", None):
            return "passthrough"
        return "relu" if is_relu_activation(act) else "activation"
    return None


def layer_kind(layer):
    """The kind of a Keras layer (see the module table), or `None`.

    Args:
        layer: A Keras layer. Wrappers are not looked through (see `unwrap`).

    Returns:
        A string from `KINDS`, or `None` for layers the table does not know.

    Example:

    >>> layer_kind(keras.layers.SeparableConv2D(4, 3)), layer_kind(keras.layers.Multiply())
    ('separable', None)
    """
    kind = _activation_kind(layer)
    if kind is not None:
        return kind
    for kind, classes in _TABLE:
        if isinstance(layer, classes):
            return kind
    return None


def is_relu(layer):
    """Whether a layer is a ReLU layer (`ReLU` without slope/threshold, `Activation("relu")`).

    Example:

    >>> is_relu(keras.layers.ReLU(max_value=3.75)), is_relu(keras.layers.LeakyReLU())
    (True, False)
    """
    return layer_kind(layer) == "relu"


def applies_relu(layer):
    """Whether a layer's output is a ReLU output: a ReLU layer or `activation="relu"`.

    Wrappers are looked through (the wrapper and the layers it wraps are
    checked); a `keras_nna.quantization.QuantizeWrapper` applies ReLU when its
    own `activation` is `"relu"`.

    Args:
        layer: A Keras layer.

    Returns:
        A bool.

    Example:

    >>> applies_relu(keras.layers.Dense(2, activation="relu")), applies_relu(keras.layers.Dense(2))
    (True, False)
    """
    candidate = layer
    while True:
        if is_relu(candidate) or is_relu_activation(getattr(candidate, "activation", None)):
            return True
        if not isinstance(candidate, _L.Wrapper):
            return False
        candidate = candidate.layer


def unwrap(layer):
    """The layer behind any `keras.layers.Wrapper`s (e.g. a `QuantizeWrapper`).

    Example:

    >>> dense = keras.layers.Dense(2)
    >>> unwrap(keras.layers.TimeDistributed(dense)) is dense
    True
    """
    while isinstance(layer, _L.Wrapper):
        layer = layer.layer
    return layer


def _tensors(value):
    return list(keras.tree.flatten(value))


def layer_calls(model, on_error=None, alias=None):
    """Yields every layer call of `model` in topological order, nested models inlined.

    One walk for `quantize_model` and `export_model`. A nested model's own
    input and output tensors are aliased to the outer tensors of its call, so
    every id a caller sees is the id of one tensor of the flattened graph.

    Args:
        model: A built functional or Sequential Keras model.
        on_error: `layer -> Exception` raised for a layer that is called more
            than once or not connected. Defaults to `None` (a `ValueError`
            naming the layer).
        alias: Dict filled during the walk with `{tensor id: id it stands
            for}`; pass one to resolve the model's output ids afterwards.
            Defaults to `None` (a private dict).

    Yields:
        `(layer, input ids, output ids, input shapes, output shapes)`.

    Example:

    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="b")], name="inner")
    >>> x = keras.Input((3,))
    >>> outer = keras.Model(x, keras.layers.Dense(1, name="c")(inner(x)))
    >>> calls = list(layer_calls(outer))
    >>> [layer.name for layer, *_ in calls], calls[1][1] == calls[0][2]
    (['b', 'c'], True)
    """
    alias = {} if alias is None else alias
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        try:
            ins, outs = _tensors(layer.input), _tensors(layer.output)
            if isinstance(layer, keras.Model):  # .input/.output are its own tensors: use its call
                node = layer._inbound_nodes[0]  # (one call, as keras_nna.sparsity.graph reads it)
                ins, outs = _tensors(node.input_tensors), _tensors(node.output_tensors)
        except (AttributeError, ValueError, IndexError) as err:
            if on_error is not None:
                raise on_error(layer) from err
            raise ValueError(f"Layer '{layer.name}' ({type(layer).__name__}) is called more than "
                             "once or not connected; expected every layer called exactly once. "
                             "Build the model so that each layer is called once.") from err
        if isinstance(layer, keras.Model):
            for inner, outer in zip(_tensors(layer.inputs), ins):
                alias[id(inner)] = alias.get(id(outer), id(outer))
            yield from layer_calls(layer, on_error, alias)
            for inner, outer in zip(_tensors(layer.outputs), outs):
                alias[id(outer)] = alias.get(id(inner), id(inner))
            continue
        yield (layer, [alias.get(id(t), id(t)) for t in ins], [id(t) for t in outs],
               [tuple(t.shape) for t in ins], [tuple(t.shape) for t in outs])


def iter_layers(model):
    """Yields the layers of `model` in order, descending into nested models.

    Example:

    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="b")], name="inner")
    >>> outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1, name="c")])
    >>> [layer.name for layer in iter_layers(outer)]
    ['b', 'c']
    """
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def quantizable_kind(layer):
    """The kind of a layer keras_nna can quantize, else `None`.

    Only the 2-D layers (`Conv2D` but not `Conv2DTranspose`, `DepthwiseConv2D`,
    `SeparableConv2D`) and `Dense` are quantizable.

    Example:

    >>> quantizable_kind(keras.layers.DepthwiseConv2D(3)), quantizable_kind(keras.layers.Conv1D(2, 3))
    ('depthwise', None)
    """
    if isinstance(layer, _QUANTIZABLE):
        return layer_kind(layer)
    return None


_KERAS2_MODULES = ("tf_keras", "keras.src.engine", "keras.engine", "tensorflow.python.keras",
                   "tensorflow.keras")


def keras3_type_error(value, expected, caller):
    """A `TypeError` for a value that is not a Keras 3 object, or `None` if it is.

    Args:
        value: What the user passed.
        expected: The Keras 3 class(es) expected, e.g. `keras.Model`.
        caller: Name of the function or class, for the message.

    Returns:
        `None` when `value` is an instance of `expected`, else a `TypeError`
        naming what was expected and received; a Keras 2 (`tf_keras`) object
        gets an explanation of how to rebuild it with Keras 3.

    Example:

    >>> keras3_type_error(keras.layers.Dense(2), keras.layers.Layer, "f") is None
    True
    >>> print(keras3_type_error("x", keras.Model, "quantize_model"))
    quantize_model expects a Keras 3 Model; received str ('x').
    """
    if isinstance(value, expected):
        return None
    names = " or ".join(c.__name__ for c in (expected if isinstance(expected, tuple) else (expected,)))
    module = type(value).__module__ or ""
    if module.startswith(_KERAS2_MODULES):
        return TypeError(
            f"keras_nna needs a Keras 3 model; {caller} received a tf_keras (Keras 2) object "
            f"({module}.{type(value).__name__}). Keras 2 models and layers are not supported: "
            "rebuild it with `import keras` (Keras 3) and load its weights, e.g. "
            "model3.set_weights(model2.get_weights()) (and do not set TF_USE_LEGACY_KERAS=1).")
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return TypeError(f"{caller} expects a Keras 3 {names}; received {type(value).__name__} ({shown}).")
