"""Count the multiply-accumulates (MACs) of a Keras model.

The accelerator's cost is dominated by the MACs of its convolutions and dense
layers, so this is the number to compare models by (alongside
`model.count_params()`). One MAC is one multiply-and-add of a weight with an
input value; biases, batch normalization, activations and pooling are not
counted.

    model = keras_nna.models.AkidaNet()
    print(format_macs(count_macs(model)))   # "16.51 M"
    print(macs_summary(model))              # one line per layer

Counted layers (nested models are walked into, wrappers looked through; the
kinds of `keras_nna.quantization.layer_kinds`, so 1-D and 3-D convolutions
count as well):

| layer | MACs |
| --- | --- |
| `Conv1D/2D/3D` | output positions · kernel positions · (c_in / groups) · c_out |
| `DepthwiseConv1D/2D` | output positions · kernel positions · c_in · depth_multiplier |
| `SeparableConv1D/2D` | depthwise part above + output positions · c_in · depth_multiplier · c_out |
| `Dense` | (input positions) · c_in · units |

The model must be built with fully known input and output shapes (no `None`
besides the batch axis). A layer called several times is counted once, at its
first call.
"""

import keras

from keras_nna.quantization.layer_kinds import WEIGHTED_KINDS, iter_layers, layer_kind, unwrap

__all__ = ["count_macs", "format_macs", "layer_macs", "macs_for_shapes", "macs_summary"]


def _known(shape, layer, what):
    dims = tuple(shape)[1:]
    if any(d is None for d in dims):
        raise ValueError(f"Cannot count the MACs of layer '{layer.name}': expected a fully "
                         f"known {what} shape besides the batch axis, received "
                         f"{tuple(shape)}. Build the model with a fixed input shape, e.g. "
                         f"`keras.Input((96, 96, 3))`.")
    return dims


def _prod(values):
    out = 1
    for v in values:
        out *= int(v)
    return out


def macs_for_shapes(layer, input_shape, output_shape):
    """MACs of one layer for one sample, from its input and output shapes.

    Wrappers (such as `keras_nna.quantization.QuantizeWrapper`) are looked
    through to the layer they wrap.

    Args:
        layer: A Keras layer.
        input_shape: Its input shape, batch axis first.
        output_shape: Its output shape, batch axis first.

    Returns:
        The MAC count, or `None` for layer types that are not counted.

    Raises:
        ValueError: If a counted layer has an unknown (`None`) dimension.

    Example:

    >>> macs_for_shapes(keras.layers.Dense(3), (None, 4), (None, 3))
    12
    """
    inner = unwrap(layer)
    kind = layer_kind(inner)
    if kind not in WEIGHTED_KINDS:
        return None
    dims_in = _known(input_shape, layer, "input")
    out = _known(output_shape, layer, "output")
    c_in = dims_in[-1]
    if kind == "separable":
        positions = _prod(out[:-1])
        mid = c_in * inner.depth_multiplier
        return positions * _prod(inner.kernel_size) * mid + positions * mid * out[-1]
    if kind == "depthwise":
        return _prod(out[:-1]) * _prod(inner.kernel_size) * c_in * inner.depth_multiplier
    if kind == "conv":
        if inner.data_format == "channels_first":
            c_in = dims_in[0]
            out = out[1:] + out[:1]
        return _prod(out[:-1]) * _prod(inner.kernel_size) * (c_in // inner.groups) * out[-1]
    return _prod(dims_in[:-1]) * c_in * inner.units


def _single_layer_macs(layer):
    """MACs of one counted layer of a built model, or `None` for layers that are not counted."""
    if layer_kind(unwrap(layer)) not in WEIGHTED_KINDS:
        return None
    return macs_for_shapes(layer, layer.input.shape, layer.output.shape)


def layer_macs(model):
    """Returns the MACs of every counted layer of a model.

    Args:
        model: A built `keras.Model` (functional or sequential) with known shapes.

    Returns:
        A dict `{layer name: MACs}` in layer order, holding only the counted
        layer types (see the module docstring).

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If a counted layer has an unknown (`None`) dimension.

    Example:

    >>> model = keras.Sequential([keras.Input((4, 4, 2)),
    ...                           keras.layers.Conv2D(3, 3, padding="same", name="c"),
    ...                           keras.layers.Flatten(),
    ...                           keras.layers.Dense(5, name="d")])
    >>> layer_macs(model)
    {'c': 864, 'd': 240}
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a built `keras.Model`, received {type(model).__name__}. "
                        f"Wrap layers in `keras.Sequential([...])` or a functional model first.")
    out = {}
    for layer in iter_layers(model):
        macs = _single_layer_macs(layer)
        if macs is not None:
            out[layer.name] = int(macs)
    return out


def count_macs(model):
    """Returns the total MACs of one inference of a model on one sample.

    Args:
        model: A built `keras.Model` with known shapes.

    Returns:
        The number of multiply-accumulates, an int.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If a counted layer has an unknown (`None`) dimension.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> count_macs(model)
    32
    """
    return sum(layer_macs(model).values())


def format_macs(macs, digits=2):
    """Formats a MAC count with a unit: `K`, `M` or `G` (powers of 1000).

    Args:
        macs: The number of MACs.
        digits: Decimals printed. Defaults to `2`.

    Returns:
        A string such as `"16.51 M"`.

    Example:

    >>> format_macs(16_512_345), format_macs(950)
    ('16.51 M', '950')
    """
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if macs >= scale:
            return f"{macs / scale:.{digits}f} {unit}"
    return str(int(macs))


def macs_summary(model):
    """Returns a text table of the MACs of every counted layer and their total.

    Args:
        model: A built `keras.Model` with known shapes.

    Returns:
        A multi-line string: layer name, layer class, MACs, share of the total.

    Raises:
        TypeError: If `model` is not a `keras.Model`.
        ValueError: If a counted layer has an unknown (`None`) dimension.

    Example:

    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="fc")])
    >>> print(macs_summary(model))
    layer  type   MACs  share
    fc     Dense    32 100.0%
    total           32
    """
    per_layer = layer_macs(model)
    classes = {layer.name: type(layer).__name__ for layer in iter_layers(model)}
    total = sum(per_layer.values())
    rows = [(name, classes[name], f"{macs:,}", f"{100.0 * macs / max(total, 1):.1f}%")
            for name, macs in per_layer.items()]
    header = ("layer", "type", "MACs", "share")
    footer = ("total", "", f"{total:,}", "")
    widths = [max(len(r[i]) for r in rows + [header, footer]) for i in range(4)]

    def line(r):
        return (f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}} "
                f"{r[3]:>{widths[3]}}").rstrip()

    return "\n".join([line(header)] + [line(r) for r in rows] + [line(footer)])
