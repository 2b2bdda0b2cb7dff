"""Channel groups: the tensors that share one channel index space.

A *channel group* starts at the layers that create channels, its *producers*
(Conv2D, SeparableConv2D, Dense; float or ``QuantizeWrapper``), and holds the
channel-preserving layers after them, its *members* (BatchNormalization,
ReLU/Activation, Dropout, padding, pooling, DepthwiseConv2D with
``depth_multiplier=1``, Flatten), up to the *consumers* that mix channels (the
next Conv2D, SeparableConv2D — depthwise and pointwise — or Dense, also after
GlobalAveragePooling2D or Flatten).

**Residual adds.** The inputs of an ``Add`` (``keras.layers.Add`` or keras_nna's
``QuantizedAdd``) must keep the same channels, so every producer whose output
reaches an ``Add`` — through BN/ReLU/identity chains, and through the ``Add``'s
output feeding the next ``Add`` (ResNet identity shortcuts chain whole stages) —
belongs to ONE group: ``producers`` lists them all, the ``Add`` layers are
members, and filter pruning and surgery remove a channel from all of them or from
none. A group is *blocked* (left alone, with the reason in ``blocked``) when its
channels reach a model output, a layer surgery does not know (``Concatenate``,
``Reshape``, ``Multiply``, ...), a channel-mixing layer after a ``Flatten`` other
than Dense, or an ``Add`` with an input no producer creates (e.g. the model input,
or the output of an unsupported layer): those channels cannot be removed from that
input.

Example:

>>> import keras
>>> inp = keras.Input((6, 6, 3))
>>> a = keras.layers.Conv2D(4, 3, padding="same", name="a")(inp)
>>> b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
>>> s = keras.layers.Add(name="add")([a, b])
>>> out = keras.layers.Dense(2, name="d")(keras.layers.GlobalAveragePooling2D(name="gap")(s))
>>> g = channel_groups(keras.Model(inp, out))["a"]
>>> g.producers, g.members, g.consumers
(['a', 'b'], ['add', 'gap'], {'b': 'a', 'd': 'gap'})
"""

import dataclasses

import numpy as np
import keras

from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.sparsity.graph import layer_graph

__all__ = ["ChannelGroup", "channel_groups", "is_add", "PRODUCER_KINDS", "PRESERVING_KINDS"]

# Layer kinds (keras_nna.quantization.layer_kinds) that create channels, and that keep them.
PRODUCER_KINDS = ("conv", "separable", "dense")
PRESERVING_KINDS = ("batchnorm", "relu", "activation", "passthrough", "padding", "upsampling",
                    "maxpool", "avgpool", "global_avgpool", "global_maxpool", "flatten")


def _kind(layer):
    return layer_kind(unwrap(layer))


def is_add(layer):
    """Whether a layer is a residual add (`keras.layers.Add` or keras_nna's `QuantizedAdd`).

    Example:

    >>> is_add(keras.layers.Add()), is_add(keras.layers.Concatenate())
    (True, False)
    """
    inner = unwrap(layer)
    return (isinstance(inner, keras.layers.Add) or _kind(inner) == "add"
            or type(inner).__name__ == "QuantizedAdd")


def _is_producer(layer):
    return _kind(layer) in PRODUCER_KINDS and getattr(unwrap(layer), "groups", 1) == 1


def _is_preserving(layer):
    kind = _kind(layer)
    if kind == "depthwise":
        return unwrap(layer).depth_multiplier == 1
    if kind == "batchnorm":
        return unwrap(layer).axis in (-1, len(unwrap(layer).input.shape) - 1)
    return kind in PRESERVING_KINDS


@dataclasses.dataclass
class ChannelGroup:
    """Layers sharing one channel index space.

    Attributes:
        producer: Name of the group's first producer (the group's key).
        channels: Number of channels.
        members: Channel-preserving layers and `Add` layers, in topological order.
        consumers: Dict consumer name → name of the member (or producer) feeding it.
        repeat: Dict consumer name → spatial repeat of the channels in its input
            (> 1 for a Dense after Flatten).
        blocked: Why channels cannot be removed (`""` if they can).
        producers: Every producer of the group (several when joined by `Add`
            layers), in topological order; `producers[0] == producer`.
        bns: Names of the BatchNormalization members that directly follow a
            producer (the first BN after each producer, through members and
            `Add` layers; deduplicated), in topological order.
    """

    producer: str
    channels: int
    members: list
    consumers: dict
    repeat: dict
    blocked: str = ""
    producers: list = dataclasses.field(default_factory=list)
    bns: list = dataclasses.field(default_factory=list)


class _Spaces:
    """Union-find over producers: which channel space each layer's output is in."""

    def __init__(self):
        self.parent = {}
        self.space = {}   # layer name -> a producer name (find() gives the root) or None
        self.repeat = {}
        self.reasons = {}  # producer name -> list of reasons (merged by root at the end)

    def find(self, name):
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def block(self, name, reason):
        self.reasons.setdefault(name, []).append(reason)

    def root(self, layer_name):
        s = self.space.get(layer_name)
        return None if s is None else self.find(s)


def _assign_spaces(graph):
    sp = _Spaces()
    for name, layer in graph.layers.items():
        srcs = graph.producers[name]
        spaces = [sp.space.get(s) for s in srcs]
        sp.space[name] = None
        if not srcs:
            continue
        if _is_producer(layer):
            sp.parent[name] = sp.space[name] = name
            sp.repeat[name] = 1
        elif is_add(layer) and any(s is not None for s in spaces):
            known = [(s, src) for s, src in zip(spaces, srcs) if s is not None]
            for s, _ in known[1:]:
                sp.union(known[0][0], s)
            sp.space[name] = known[0][0]
            sp.repeat[name] = sp.repeat[known[0][1]]
            bad = [src for s, src in zip(spaces, srcs) if s is None]
            if bad:
                sp.block(known[0][0], f"{name!r} (Add) also adds {bad}, whose channels no "
                                      "prunable layer creates")
        elif _is_preserving(layer) and len(srcs) == 1 and spaces[0] is not None:
            sp.space[name] = spaces[0]
            rep = sp.repeat[srcs[0]]
            if _kind(layer) == "flatten":
                rep *= int(np.prod(graph.input_shape(name)[1:-1]))
            sp.repeat[name] = rep
    return sp


def channel_groups(model):
    """Finds the channel groups of a functional or Sequential model.

    Args:
        model: A built functional or Sequential model.

    Returns:
        Dict group key (its first producer's name) → :class:`ChannelGroup`.
        Producers joined by `Add` layers share one group (see the module
        docstring); the other producers are listed in `producers`, not as keys.

    Raises:
        ValueError: If the model is not functional/Sequential or shares layers.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="c"),
    ...     keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(name="r"),
    ...     keras.layers.GlobalAveragePooling2D(name="gap"), keras.layers.Dense(2, name="d")])
    >>> g = channel_groups(m)["c"]
    >>> g.members, g.consumers, g.blocked
    (['bn', 'r', 'gap'], {'d': 'gap'}, '')
    """
    graph = layer_graph(model)
    sp = _assign_spaces(graph)
    for name, layer in graph.layers.items():
        for src in graph.producers[name]:
            root = sp.root(src)
            if root is None or _is_producer(layer) or sp.root(name) == root:
                continue
            sp.block(root, f"{name!r} ({type(unwrap(layer)).__name__}) is not supported by "
                           "surgery")
    for out in graph.output_layers:
        if sp.root(out) is not None:
            sp.block(sp.root(out), f"{out!r} is a model output")
    groups = {}
    for name, layer in graph.layers.items():
        root = sp.root(name)
        if root is None:
            continue
        if root not in groups:
            groups[root] = ChannelGroup(name, int(graph.output_shape(name)[-1]), [], {}, {})
        g = groups[root]
        if _is_producer(layer):
            g.producers.append(name)
        else:
            g.members.append(name)
    for name, layer in graph.layers.items():  # consumers: producers fed by a group's tensor
        src = graph.producers[name][0] if graph.producers[name] else None
        if _is_producer(layer) and src is not None and sp.root(src) is not None:
            g = groups[sp.root(src)]
            g.consumers[name], g.repeat[name] = src, sp.repeat[src]
            if _kind(layer) != "dense" and sp.repeat[src] != 1:
                sp.block(sp.root(src), f"{name!r} consumes flattened channels")
    for name, reasons in sp.reasons.items():
        g = groups[sp.find(name)]
        g.blocked = "; ".join(dict.fromkeys(([g.blocked] if g.blocked else []) + reasons))
    out = {}
    for g in groups.values():
        g.producer = g.producers[0]
        g.bns = _first_bns(graph, g)
        out[g.producer] = g
    return out


def _first_bns(graph, group):
    """The first BatchNormalization member after each producer (deduplicated, in order)."""
    members = set(group.members)
    found = set()
    for p in group.producers:
        frontier = [p]
        while frontier:
            name = frontier.pop(0)
            for c in graph.consumers[name]:
                if c not in members:
                    continue
                if _kind(graph.layers[c]) == "batchnorm":
                    found.add(c)
                else:
                    frontier.append(c)
    return [m for m in group.members if m in found]
