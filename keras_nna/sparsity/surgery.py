"""Channel groups and filter-removal surgery.

A *channel group* is the set of tensors that share one channel index space: the
output of a producer (Conv2D, SeparableConv2D, Dense) and of the channel-preserving
layers after it (BatchNormalization, ReLU/Activation, Dropout, padding, pooling,
DepthwiseConv2D with ``depth_multiplier=1``, Flatten), up to the *consumers* that mix
channels (the next Conv2D, SeparableConv2D — depthwise and pointwise — or Dense,
also after GlobalAveragePooling2D or Flatten). :func:`channel_groups` finds them;
filter pruning (:mod:`keras_nna.sparsity.filters`) zeroes a filter across its group.

:func:`remove_pruned_filters` then physically removes every channel that is *dead*
(identically zero) where it enters all its consumers: the producer's filter, the
matching parameters of the BN/depthwise layers in between, and the matching input
channels of the consumers. Because a removed channel only ever contributed zeros,
the smaller model computes the same outputs as the masked one (up to float
summation order). A group whose channels reach a model output or a layer the surgery
does not know (``Add``, ``Concatenate``, ``Reshape``, ...) is left untouched; at least
one channel per layer is kept.

Example:

>>> import numpy as np, keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
...                       keras.layers.Dense(2, name="b")])
>>> k = m.get_layer("a").kernel
>>> _ = k.assign(np.concatenate([k.numpy()[:, :2], np.zeros((4, 1))], 1))
>>> small = remove_pruned_filters(m)
>>> small.get_layer("a").units, small.count_params(), m.count_params()
(2, 16, 23)
"""

import dataclasses

import numpy as np
import keras

from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.sparsity.graph import count_params_and_macs, layer_graph

__all__ = ["ChannelGroup", "channel_groups", "dead_channels", "remove_pruned_filters",
           "compare_models", "rebuild_channels"]

# Layer kinds (keras_nna.quantization.layer_kinds) that create channels, and that keep them.
PRODUCER_KINDS = ("conv", "separable", "dense")
PRESERVING_KINDS = ("batchnorm", "relu", "activation", "passthrough", "padding", "upsampling",
                    "maxpool", "avgpool", "global_avgpool", "global_maxpool", "flatten")


def _kind(layer):
    return layer_kind(unwrap(layer))


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
        producer: Name of the layer creating the channels.
        channels: Number of channels.
        members: Channel-preserving layers, in topological order.
        consumers: Dict consumer name → name of the member (or producer) feeding it.
        repeat: Dict consumer name → spatial repeat of the channels in its input
            (> 1 for a Dense after Flatten).
        blocked: Why channels cannot be removed (`""` if they can).
    """

    producer: str
    channels: int
    members: list
    consumers: dict
    repeat: dict
    blocked: str = ""


def channel_groups(model):
    """Finds the channel groups of a functional or Sequential model.

    Args:
        model: A built functional or Sequential model.

    Returns:
        Dict producer name → :class:`ChannelGroup`.

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
    groups = {}
    for name, layer in graph.layers.items():
        if not graph.producers[name] or not _is_producer(layer):
            continue
        group = ChannelGroup(name, int(graph.output_shape(name)[-1]), [], {}, {})
        frontier = [(name, 1)]
        while frontier:
            src, rep = frontier.pop(0)
            if src in graph.output_layers:
                group.blocked = group.blocked or f"{src!r} is a model output"
            for c in graph.consumers[src]:
                cl = graph.layers[c]
                if _is_producer(cl):
                    group.consumers[c] = src
                    group.repeat[c] = rep
                    if _kind(cl) != "dense" and rep != 1:
                        group.blocked = group.blocked or f"{c!r} consumes flattened channels"
                elif _is_preserving(cl) and len(graph.producers[c]) == 1:
                    group.members.append(c)
                    r = rep
                    if _kind(cl) == "flatten":
                        r = rep * int(np.prod(graph.input_shape(c)[1:-1]))
                    frontier.append((c, r))
                else:
                    group.blocked = group.blocked or (
                        f"{c!r} ({type(unwrap(cl)).__name__}) is not supported by surgery")
        groups[name] = group
    return groups


def _act_keeps_zero(layer):
    act = getattr(unwrap(layer), "activation", None)
    if act is None or isinstance(act, str) and act in ("linear", "relu"):
        return True
    try:
        return float(keras.ops.convert_to_numpy(act(keras.ops.zeros((1,))))[0]) == 0.0
    except Exception:  # noqa: BLE001 - unknown activation: assume it does not keep zeros
        return False


def _weight(layer, key):
    for v in unwrap(layer).weights:
        if v.name == key:
            return keras.ops.convert_to_numpy(v)
    return None


def dead_channels(model, groups=None):
    """Finds, per group, the channels that are zero wherever they are consumed.

    Args:
        model: A built functional or Sequential model.
        groups: Result of :func:`channel_groups`. Defaults to `None` (computed).

    Returns:
        Dict producer name → boolean array (True = removable). Blocked groups get all
        False; at least one channel is always kept.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
    ...                       keras.layers.Dense(1, name="b")])
    >>> dead_channels(m)["a"].tolist()
    [False, False]
    """
    groups = channel_groups(model) if groups is None else groups
    out = {}
    for name, g in groups.items():
        p = model.get_layer(name)
        kernel = _weight(p, "pointwise_kernel")
        kernel = _weight(p, "kernel") if kernel is None else kernel
        bias = _weight(p, "bias")
        dead = {name: np.all(kernel.reshape(-1, g.channels) == 0, axis=0)
                & (bias == 0 if bias is not None else True) & _act_keeps_zero(p)}
        for m in g.members:
            layer = model.get_layer(m)
            src = layer._inbound_nodes[0].parent_nodes[0].operation.name
            d = dead[src]
            kind = _kind(layer)
            if kind == "batchnorm":
                inner = unwrap(layer)
                gamma = _weight(layer, "gamma") if inner.scale else np.ones(g.channels)
                beta = _weight(layer, "beta") if inner.center else np.zeros(g.channels)
                mean, var = _weight(layer, "moving_mean"), _weight(layer, "moving_variance")
                const = beta - gamma * mean / np.sqrt(var + inner.epsilon)
                d = ((gamma == 0) & (beta == 0)) | (d & (const == 0))
            elif kind == "depthwise":
                k = _weight(layer, "kernel")
                b = _weight(layer, "bias")
                zero_k = np.all(k.reshape(-1, g.channels) == 0, axis=0)
                d = (d | zero_k) & (b == 0 if b is not None else True) & _act_keeps_zero(layer)
            elif kind in ("relu", "activation"):  # ReLU/LeakyReLU layers have no `activation`: True
                d = d & _act_keeps_zero(layer)
            dead[m] = d
        removable = np.ones(g.channels, bool)
        for c, src in g.consumers.items():
            removable &= dead[src]
        if g.blocked or not g.consumers:
            removable[:] = False
        if removable.all():
            removable[0] = False
        out[name] = removable
    return out


def _slice(value, axis, index):
    return np.take(value, index, axis=axis)


def remove_pruned_filters(model, verbose=False):
    """Returns a smaller copy of a model without its dead (pruned) channels.

    Args:
        model: A built functional or Sequential float model whose pruned filters are
            zero across their channel group (e.g. after
            :func:`keras_nna.sparsity.prune_filters` or a `FilterPruneCallback`).
        verbose: Print parameters and MACs before/after. Defaults to `False`.

    Returns:
        A new model of the same kind with the same layer names, computing the same
        outputs as `model` (allclose), with fewer filters. See :func:`compare_models`.

    Raises:
        ValueError: If the model is not functional/Sequential or shares layers.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(1)])
    >>> remove_pruned_filters(m).count_params() == m.count_params()  # nothing pruned
    True
    """
    groups = channel_groups(model)
    removable = dead_channels(model, groups)
    new = rebuild_channels(model, groups, {n: np.flatnonzero(~r) for n, r in removable.items()})
    if verbose:
        report = compare_models(model, new)
        print(f"params {report['params_before']} -> {report['params_after']}, "
              f"MACs {report['macs_before']} -> {report['macs_after']}")
    return new


def rebuild_channels(model, groups, out_index, in_scale=None):
    """A copy of `model` whose channel groups are re-indexed (the one slicing rule).

    Channel `k` of group `n` in the new model is channel `out_index[n][k]` of the old
    one: the producer's filter, the BN/depthwise parameters of the members and the
    consumers' input weights are taken with these indices, so an index array that
    drops channels removes them (:func:`remove_pruned_filters`) and one that repeats
    channels replicates them (:func:`keras_nna.optimize.scale_widths`).

    Args:
        model: A built functional or Sequential model.
        groups: Its :func:`channel_groups`.
        out_index: Dict producer name → integer index array (groups not listed keep
            all their channels).
        in_scale: Optional dict producer name → float array (one per new channel)
            multiplying the consumers' input weights of that channel. Defaults to
            `None`.

    Returns:
        The new model (same kind, same layer names).

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
    ...                       keras.layers.Dense(1, name="b")])
    >>> wide = rebuild_channels(m, channel_groups(m), {"a": [0, 1, 1]}, {"a": [1, .5, .5]})
    >>> wide.get_layer("a").units
    3
    """
    in_scale = in_scale or {}
    out_keep = {n: np.asarray(i, int) for n, i in out_index.items()}
    # Channels at the input of each layer: (channel indices, channel count, repeat, scale).
    in_keep = {}
    for n, g in groups.items():
        if n not in out_keep:
            continue
        for m in g.members:
            in_keep[m] = (out_keep[n], g.channels, 1, None)
        for c in g.consumers:
            in_keep[c] = (out_keep[n], g.channels, g.repeat[c], in_scale.get(n))

    def clone(layer):
        cfg = layer.get_config()
        if layer.name in out_keep:
            key = "units" if _kind(layer) == "dense" else "filters"
            cfg[key] = int(len(out_keep[layer.name]))
        return layer.__class__.from_config(cfg)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if layer.weights:
            new.get_layer(layer.name).set_weights(
                [_reindex(layer, v, out_keep.get(layer.name), in_keep.get(layer.name))
                 for v in layer.weights])
    return new


def _reindex(layer, v, ok, ik):
    """One weight of `layer` with its output (`ok`) and input (`ik`) channels re-indexed."""
    w = keras.ops.convert_to_numpy(v)
    kind = _kind(layer)
    if ik is not None and (kind == "batchnorm" or (kind == "depthwise" and v.name == "bias")):
        return _slice(w, -1, ik[0])
    if ik is not None and kind == "depthwise":
        return _slice(w, w.ndim - 2, ik[0])
    if v.name == "bias" and ok is not None:
        w = _slice(w, 0, ok)
    if v.name in ("kernel", "pointwise_kernel") and ok is not None:
        w = _slice(w, w.ndim - 1, ok)
    if ik is not None and v.name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
        index, channels, rep, scale = ik
        if v.name == "pointwise_kernel":
            mult = unwrap(layer).depth_multiplier
            index = (index[:, None] * mult + np.arange(mult)[None]).reshape(-1)
            scale = None if scale is None else np.repeat(scale, mult)
        elif rep > 1:
            index = (np.arange(rep)[:, None] * channels + index[None]).reshape(-1)
            scale = None if scale is None else np.tile(scale, rep)
        axis = 0 if kind == "dense" else w.ndim - 2
        w = _slice(w, axis, index)
        if scale is not None and v.name != "depthwise_kernel":
            shape = [1] * w.ndim
            shape[axis] = -1
            w = w * np.reshape(scale, shape).astype(w.dtype)
    return w


def compare_models(before, after):
    """Parameters and MACs of two models (e.g. before/after surgery).

    Args:
        before: Original model.
        after: Reduced model.

    Returns:
        Dict with `params_before`, `params_after`, `macs_before`, `macs_after`.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> compare_models(m, m)["params_after"]
    8
    """
    a, b = count_params_and_macs(before), count_params_and_macs(after)
    return {"params_before": a["params"], "params_after": b["params"],
            "macs_before": a["macs"], "macs_after": b["macs"]}
