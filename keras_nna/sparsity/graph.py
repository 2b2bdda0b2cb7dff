"""Layer graph of a functional or Sequential model: who feeds whom, and what it costs.

Whole-model transforms of :mod:`keras_nna.sparsity` (cost-weighted regularization,
filter pruning, surgery) need the producer → consumer relations between layers and
each layer's MAC count. :func:`layer_graph` reads them from the model's Keras nodes
(one inbound node per layer; shared layers are not supported), and
:func:`count_params_and_macs` counts parameters and multiply-accumulates of
convolution, depthwise, separable and dense layers (batch size 1, dense inputs: the
upper bound an event-based accelerator improves on).

Example:

>>> import keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
...                       keras.layers.Dense(2, name="b")])
>>> g = layer_graph(m)
>>> g.consumers["a"], g.producers["b"], g.output_layers
(['b'], ['a'], ['b'])
>>> count_params_and_macs(m)
{'params': 23, 'macs': 18}
"""

import dataclasses

import numpy as np
import keras

from keras_nna.models.summary import macs_for_shapes
from keras_nna.quantization.layer_kinds import layer_kind, unwrap

__all__ = ["LayerGraph", "layer_graph", "layer_macs", "count_params_and_macs", "event_fan_out"]


@dataclasses.dataclass
class LayerGraph:
    """Producer/consumer relations of a model's layers.

    Attributes:
        layers: Dict name → layer, in topological order (input layers included).
        producers: Dict name → list of names of the layers feeding it.
        consumers: Dict name → list of names of the layers it feeds.
        output_layers: Names of the layers producing the model's outputs.
    """

    layers: dict
    producers: dict
    consumers: dict
    output_layers: list

    def output_shape(self, name):
        """Static output shape of a layer (a tuple with `None` batch)."""
        layer = self.layers[name]
        return tuple(layer._inbound_nodes[0].output_tensors[0].shape)

    def input_shape(self, name):
        """Static input shape of a layer (its first input)."""
        return self.output_shape(self.producers[name][0])


def layer_graph(model):
    """Builds the :class:`LayerGraph` of a functional or Sequential model.

    Args:
        model: A built functional or Sequential Keras model.

    Returns:
        A :class:`LayerGraph`.

    Raises:
        ValueError: If the model is not built with known inputs, or a layer is shared
            (called more than once).

    Example:

    >>> import keras
    >>> inp = keras.Input((8,), name="x")
    >>> m = keras.Model(inp, keras.layers.Dense(2, name="d")(inp))
    >>> list(layer_graph(m).layers)
    ['x', 'd']
    """
    try:
        model_outputs = model.outputs
    except (AttributeError, ValueError):
        model_outputs = None
    if not model_outputs:
        raise ValueError(
            "This transform needs a functional or Sequential model with known inputs "
            f"(build it with `keras.Input`). Received: {type(model).__name__} {model.name!r}.")
    layers = {}
    producers, consumers = {}, {}
    names = {id(l) for l in model.layers}
    all_layers = list(model.layers)
    for layer in list(all_layers):
        nodes = layer._inbound_nodes
        if len(nodes) != 1:
            ok = [n for n in nodes if all(id(p.operation) in names or
                                           isinstance(p.operation, keras.layers.InputLayer)
                                           for p in n.parent_nodes)]
            if len(ok) != 1:
                raise ValueError(f"Layer {layer.name!r} is called {len(nodes)} times (shared "
                                 "layer); this transform supports layers called once.")
        node = layer._inbound_nodes[0]
        parents = [p.operation for p in node.parent_nodes]
        for p in parents:
            if p.name not in layers and isinstance(p, keras.layers.InputLayer):
                layers[p.name] = p
                producers[p.name] = []
                consumers.setdefault(p.name, [])
        layers[layer.name] = layer
        producers[layer.name] = [p.name for p in parents]
        consumers.setdefault(layer.name, [])
        for p in parents:
            consumers.setdefault(p.name, []).append(layer.name)
    outputs = [t._keras_history.operation.name for t in model_outputs]
    return LayerGraph(layers, producers, consumers, outputs)


def _conv_geometry(layer):
    ks = tuple(getattr(layer, "kernel_size", (1,)))
    strides = tuple(getattr(layer, "strides", (1,) * len(ks)))
    return int(np.prod(ks)), int(np.prod(strides))


def layer_macs(layer, input_shape, output_shape):
    """Multiply-accumulates of one layer for one sample (dense inputs).

    Delegates to :func:`keras_nna.models.summary.macs_for_shapes` (one MAC
    formula for the whole package).

    Args:
        layer: A Keras layer (wrappers are unwrapped).
        input_shape: Its input shape (batch first).
        output_shape: Its output shape (batch first).

    Returns:
        Integer MAC count (0 for layers without kernels).

    Example:

    >>> import keras
    >>> layer_macs(keras.layers.Dense(3), (None, 4), (None, 3))
    12
    """
    return int(macs_for_shapes(layer, input_shape, output_shape) or 0)


def count_params_and_macs(model):
    """Counts parameters and MACs of a functional or Sequential model.

    Args:
        model: A built model.

    Returns:
        Dict with `params` (all weights) and `macs` (per sample).

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3)])
    >>> count_params_and_macs(m)
    {'params': 20, 'macs': 288}
    """
    g = layer_graph(model)
    macs = 0
    for name, layer in g.layers.items():
        if g.producers[name]:
            macs += layer_macs(layer, g.input_shape(name), g.output_shape(name))
    return {"params": int(model.count_params()), "macs": int(macs)}


# Layer kinds that pass each event on unchanged (keras_nna.quantization.layer_kinds).
_PASS_THROUGH_KINDS = ("passthrough", "padding", "flatten", "reshape", "batchnorm", "relu",
                       "activation")


def event_fan_out(graph, name):
    """MACs triggered by one non-zero activation (event) at the output of a layer.

    Sum over consuming layers: Conv2D ``kh·kw·filters/stride²``, DepthwiseConv2D and
    the depthwise half of SeparableConv2D ``kh·kw·multiplier/stride²`` (the pointwise
    half works on the depthwise accumulators, not on events), Dense ``units``; pooling
    and a residual ``Add`` (one addition per event) count 1, pass-through layers (dropout, padding, flatten, reshape, BatchNorm,
    activations) are looked through.

    Args:
        graph: A :class:`LayerGraph`.
        name: Name of the producing layer.

    Returns:
        Float fan-out (1.0 for a model output).

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.ReLU(name="r"),
    ...                       keras.layers.Dense(5)])
    >>> event_fan_out(layer_graph(m), "r")
    5.0
    """
    total = 0.0
    if name in graph.output_layers:
        total += 1.0
    for c in graph.consumers[name]:
        layer = unwrap(graph.layers[c])
        kind = layer_kind(layer)
        if kind == "conv":
            k, s = _conv_geometry(layer)
            total += k * layer.filters / s
        elif kind in ("depthwise", "separable"):
            k, s = _conv_geometry(layer)
            total += k * layer.depth_multiplier / s
        elif kind == "dense":
            total += layer.units
        elif kind in _PASS_THROUGH_KINDS:
            total += event_fan_out(graph, c)
        else:  # pools; a residual Add: one addition per input event (its output
            total += 1.0  # events are counted at the Add, or at the ReLU after it)
    return float(total)
