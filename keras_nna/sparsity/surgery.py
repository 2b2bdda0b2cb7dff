"""Filter-removal surgery: a physically smaller model without the pruned channels.

Channels are handled per *channel group* (:func:`keras_nna.sparsity.channel_groups`,
defined in :mod:`keras_nna.sparsity.groups`): the producers that create them, the
channel-preserving layers after them and the ``Add`` layers that join producers
(ResNet shortcuts), up to the consumers that mix channels. Filter pruning
(:mod:`keras_nna.sparsity.filters`) zeroes a filter across its group.

:func:`remove_pruned_filters` then physically removes every channel that is *dead*
(identically zero) where it enters all its consumers: the filter of every producer
of the group, the matching parameters of the BN/depthwise layers in between, and the
matching input channels of the consumers; the tensors joined by an ``Add`` keep equal
channel counts. Because a removed channel only ever contributed zeros, the smaller
model computes the same outputs as the masked one (up to float summation order). A
blocked group (its channels reach a model output, a layer the surgery does not know
such as ``Concatenate`` or ``Reshape``, or an ``Add`` fed by a tensor no producer
creates, e.g. the model input) is left untouched, the reason in its ``blocked``; at
least one channel per group is kept.

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

import numpy as np
import keras

from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.sparsity.graph import count_params_and_macs, layer_graph
from keras_nna.sparsity.groups import ChannelGroup, channel_groups, is_add  # noqa: F401

__all__ = ["ChannelGroup", "channel_groups", "dead_channels", "remove_pruned_filters",
           "compare_models", "rebuild_channels"]  # ChannelGroup, channel_groups: from .groups



def _kind(layer):
    return layer_kind(unwrap(layer))


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
        Dict group key → boolean array (True = removable from every producer of
        the group). Blocked groups get all False; at least one channel is always
        kept.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a"),
    ...                       keras.layers.Dense(1, name="b")])
    >>> dead_channels(m)["a"].tolist()
    [False, False]
    """
    groups = channel_groups(model) if groups is None else groups
    graph = layer_graph(model)
    out = {}
    for name, g in groups.items():
        dead = {p: _producer_dead(model.get_layer(p), g.channels)
                for p in (g.producers or [name])}
        for m in g.members:
            layer = model.get_layer(m)
            srcs = graph.producers[m]
            if is_add(layer):  # a sum is zero where all its inputs are
                dead[m] = np.logical_and.reduce(
                    [dead.get(s, np.zeros(g.channels, bool)) for s in srcs]) & _act_keeps_zero(layer)
            else:
                dead[m] = _member_dead(layer, dead[srcs[0]], g.channels)
        removable = np.ones(g.channels, bool)
        for c, src in g.consumers.items():
            removable &= dead[src]
        if g.blocked or not g.consumers:
            removable[:] = False
        if removable.all():
            removable[0] = False
        out[name] = removable
    return out


def _producer_dead(p, channels):
    kernel = _weight(p, "pointwise_kernel")
    kernel = _weight(p, "kernel") if kernel is None else kernel
    bias = _weight(p, "bias")
    return (np.all(kernel.reshape(-1, channels) == 0, axis=0)
            & (bias == 0 if bias is not None else True) & _act_keeps_zero(p))


def _member_dead(layer, d, channels):
    """Channels dead at the output of a channel-preserving layer whose input has `d` dead."""
    kind = _kind(layer)
    if kind == "batchnorm":
        inner = unwrap(layer)
        gamma = _weight(layer, "gamma") if inner.scale else np.ones(channels)
        beta = _weight(layer, "beta") if inner.center else np.zeros(channels)
        mean, var = _weight(layer, "moving_mean"), _weight(layer, "moving_variance")
        const = beta - gamma * mean / np.sqrt(var + inner.epsilon)
        return ((gamma == 0) & (beta == 0)) | (d & (const == 0))
    if kind == "depthwise":
        k = _weight(layer, "kernel")
        b = _weight(layer, "bias")
        zero_k = np.all(k.reshape(-1, channels) == 0, axis=0)
        return (d | zero_k) & (b == 0 if b is not None else True) & _act_keeps_zero(layer)
    if kind in ("relu", "activation"):  # ReLU/LeakyReLU layers have no `activation`: True
        return d & _act_keeps_zero(layer)
    return d


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
        out_index: Dict group key (see :func:`channel_groups`) → integer index
            array, applied to every producer of the group (groups not listed keep
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
        for p in g.producers[1:]:  # producers joined by Add layers: the same channels
            out_keep[p] = out_keep[n]
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
