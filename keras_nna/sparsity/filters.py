"""Structured (filter) pruning: remove whole output channels.

Zero weights inside a filter save MACs on the accelerator; a removed filter also
removes its events and every weight that reads it. keras_nna ranks the channels of
each channel group (:func:`keras_nna.sparsity.channel_groups`: one producer —
Conv2D, SeparableConv2D, Dense; float or ``QuantizeWrapper`` — or several joined by
residual ``Add`` layers) by

- ``criterion="bn_gamma"``: ``|γ|`` of the BatchNormalization after the filter (the
  fused ``batch_norm`` of a ``QuantizeWrapper``, else the first BN after the
  producer) — network slimming, pairs with
  :func:`keras_nna.sparsity.add_gamma_regularization`;
- ``criterion="l1"``: mean ``|w|`` of the filter (the pointwise kernel of a
  separable layer), comparable across layers of different fan-in;

per group (``scope="layer"``: ``round(sparsity × filters)`` per group) or across
groups (``scope="global"``), and prunes a filter by zeroing it *across its channel
group* (see :mod:`keras_nna.sparsity.surgery`): the kernel's output slice and bias,
and the γ and β of the BatchNormalization layers (and the depthwise kernel/bias)
that carry the channel, so the channel is exactly zero where it is consumed. At
least one filter per group is kept. Groups that reach a model output (the
classifier) or are otherwise blocked are never pruned.

**Residual groups.** Producers joined by ``Add`` layers (a ResNet stage and its
shortcut, or a whole stage chained by identity shortcuts) lose a channel together
or not at all, so the tensors added keep equal channels. Their score is the *sum*
over the group: of the producers' ``|γ|`` (producers without a BN of their own,
such as ResNet-8's 1×1 shortcut convolutions, add nothing; a group without any BN
needs ``criterion="l1"``), or of the producers' mean ``|w|``. Results are keyed by
the group's key, its first producer; ``layers=`` accepts any producer of a group.

:func:`prune_filters` prunes once; :class:`FilterPruneCallback` prunes stepwise
during ``fit`` following a sparsity schedule, with masks kept like
:class:`keras_nna.sparsity.PruneCallback` (the zero pattern is the mask; a filter
whose kernel slice and γ are all zero is taken as pruned when training resumes).
:func:`keras_nna.sparsity.remove_pruned_filters` then builds the smaller model.

Example:

>>> import keras
>>> m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="c"),
...     keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="d")])
>>> prune_filters(m, 0.5, criterion="bn_gamma")
{'c': 2}
"""

import numpy as np
import keras

from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.quantization import is_quantize_wrapper
from keras_nna.sparsity import masks as masks_lib
from keras_nna.sparsity.pruning import PruneCallback, _check_choice
from keras_nna.sparsity.schedules import check_sparsity
from keras_nna.sparsity.surgery import channel_groups

__all__ = ["filter_scores", "prune_filters", "FilterPruneCallback", "CRITERIA"]

CRITERIA = ("bn_gamma", "l1")


def _var(layer, key):
    return masks_lib.layer_weight(layer, key)


def _fused_bn(producer):
    """The BatchNorm a `QuantizeWrapper` fused into `producer`, else `None`."""
    return producer.batch_norm if is_quantize_wrapper(producer) else None


def _group_bns(model, group):
    """The BNs scoring a group: each producer's fused BN, else its first BN member."""
    out = [_fused_bn(model.get_layer(p)) for p in _producers(group)]
    out = [b for b in out if b is not None]
    return out + [unwrap(model.get_layer(b)) for b in getattr(group, "bns", [])]


def _producers(group):
    return getattr(group, "producers", None) or [group.producer]


def _kernel(layer):
    v = _var(layer, "pointwise_kernel")
    return v if v is not None else _var(layer, "kernel")


def _eligible(model, layers):
    """Prunable groups by key; `layers` may name any producer of a group."""
    groups = {n: g for n, g in channel_groups(model).items() if not g.blocked and g.consumers}
    if layers is not None:
        key = {p: n for n, g in groups.items() for p in _producers(g)}
        unknown = [n for n in layers if n not in key]
        if unknown:
            raise ValueError(f"Unknown or non-prunable layer name(s) {unknown} for filter pruning. "
                             f"Valid names (producers whose channels do not reach a model "
                             f"output): {sorted(key)}.")
        wanted = {key[n] for n in layers}
        groups = {n: g for n, g in groups.items() if n in wanted}
    return groups


def filter_scores(model, criterion="bn_gamma", layers=None):
    """Scores every filter of the prunable layers (small = pruned first).

    Args:
        model: A built functional or Sequential model.
        criterion: `"bn_gamma"` or `"l1"`. Defaults to `"bn_gamma"`.
        layers: Producer layer names. Defaults to `None` (all eligible).

    Returns:
        Dict group key (first producer) → float array of per-filter scores, summed
        over the group's producers (see the module docstring).

    Raises:
        ValueError: On an unknown criterion or layer name, or `"bn_gamma"` for a layer
            without BatchNormalization.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, name="a"),
    ...                       keras.layers.Dense(1)])
    >>> filter_scores(m, "l1")["a"].shape
    (3,)
    """
    _check_choice("criterion", criterion, CRITERIA)
    scores = {}
    for name, g in _eligible(model, layers).items():
        if criterion == "bn_gamma":
            bns = [bn for bn in _group_bns(model, g) if bn.scale]
            if not bns:
                raise ValueError(f"criterion='bn_gamma' needs a BatchNormalization (with scale) "
                                 f"after layer {name!r}; use criterion='l1' for it.")
            scores[name] = sum(np.abs(keras.ops.convert_to_numpy(bn.gamma)) for bn in bns)
        else:
            scores[name] = sum(
                np.abs(keras.ops.convert_to_numpy(_kernel(model.get_layer(p)))
                       .reshape(-1, g.channels)).mean(axis=0) for p in _producers(g))
    return scores


def _pruned_counts(scores, sparsity, scope):
    if scope == "layer":
        return {n: min(int(round(sparsity * s.size)), s.size - 1) for n, s in scores.items()}
    names = list(scores)
    flat = np.concatenate([scores[n] for n in names]) if names else np.zeros(0)
    owner = np.concatenate([[i] * scores[n].size for i, n in enumerate(names)]).astype(int) \
        if names else np.zeros(0, int)
    k = int(round(sparsity * flat.size))
    counts = [0] * len(names)
    for i in np.argsort(flat, kind="stable"):  # skip layers down to their last filter
        if k == 0:
            break
        o = owner[i]
        if counts[o] < scores[names[o]].size - 1:
            counts[o] += 1
            k -= 1
    return dict(zip(names, counts))


def _filter_masks(scores, sparsity, scope):
    masks = {}
    for n, c in _pruned_counts(scores, sparsity, scope).items():
        m = np.ones(scores[n].size, "float32")
        m[np.argsort(scores[n], kind="stable")[:c]] = 0.0
        masks[n] = m
    return masks


def _group_variables(model, group):
    """(variable, reshape) pairs carrying the group's channels."""
    out = []
    for p in _producers(group):
        producer = model.get_layer(p)
        out += [(_kernel(producer), None), (_var(producer, "bias"), None)]
        fused = _fused_bn(producer)
        if fused is not None:
            out += [(_var(fused, "gamma"), None), (_var(fused, "beta"), None)]
    for m in group.members:
        layer = model.get_layer(m)
        kind = layer_kind(unwrap(layer))
        if kind == "batchnorm":
            out += [(_var(layer, "gamma"), None), (_var(layer, "beta"), None)]
        elif kind == "depthwise":
            out += [(_var(layer, "kernel"), (-1, 1)), (_var(layer, "bias"), None)]
    return [(v, r) for v, r in out if v is not None]


def _apply(model, groups, masks, keep_masks, owner=None):
    for n, m in masks.items():
        for v, shape in _group_variables(model, groups[n]):
            mm = m.reshape(shape) if shape else m
            if keep_masks:
                masks_lib.attach_mask(owner or model, v, mm)
            else:
                v.assign(keras.ops.convert_to_numpy(v) * mm)


def prune_filters(model, sparsity, criterion="bn_gamma", scope="layer", layers=None):
    """Zeroes the lowest-scoring filters once, in place (see the module docstring).

    Args:
        model: A built functional or Sequential model.
        sparsity: Fraction of filters to prune, in `[0, 1)`.
        criterion: `"bn_gamma"` or `"l1"`. Defaults to `"bn_gamma"`.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.
        layers: Producer layer names. Defaults to `None` (all eligible).

    Returns:
        Dict group key (first producer) → number of pruned filters (removed from
        every producer of the group).

    Raises:
        ValueError: On invalid sparsity, criterion, scope or layer names.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(4, name="a"),
    ...                       keras.layers.Dense(1)])
    >>> prune_filters(m, 0.25, criterion="l1")
    {'a': 1}
    """
    sparsity = check_sparsity(sparsity)
    _check_choice("scope", scope, ("layer", "global"))
    scores = filter_scores(model, criterion, layers)
    masks = _filter_masks(scores, sparsity, scope)
    _apply(model, channel_groups(model), masks, keep_masks=False)
    return {n: int((m == 0).sum()) for n, m in masks.items()}


class FilterPruneCallback(PruneCallback):
    """Prunes whole filters during training following a sparsity schedule.

    Args:
        schedule: Callable ``schedule(step) -> (should_prune, sparsity)`` where
            sparsity is the fraction of filters (see :class:`PruneCallback`).
        criterion: `"bn_gamma"` or `"l1"`. Defaults to `"bn_gamma"`.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.
        layers: Producer layer names. Defaults to `None` (all eligible).
        granularity: `"step"` or `"epoch"`. Defaults to `"step"`.
        log: Add `filter_sparsity/<layer>` to the epoch logs. Defaults to `True`.

    Raises:
        ValueError: On an unknown criterion/scope/granularity or a missing schedule.

    Example:

    >>> from keras_nna.sparsity import ConstantSparsity
    >>> FilterPruneCallback(ConstantSparsity(0.25), criterion="l1").criterion
    'l1'
    """

    def __init__(self, schedule, criterion="bn_gamma", scope="layer", layers=None,
                 granularity="step", log=True):
        super().__init__(schedule, "percentage", None, scope, layers, False, granularity, log)
        _check_choice("criterion", criterion, CRITERIA)
        self.criterion = criterion
        self._groups = None

    def _setup(self):
        target = masks_lib.training_target(self.model)
        self._target = target
        self._groups = _eligible(target, self.layers)
        if self.criterion == "bn_gamma":
            filter_scores(target, self.criterion, list(self._groups))  # fail early without BN
        masks = {}
        for n, g in self._groups.items():
            pruned = np.ones(g.channels, bool)
            for p in _producers(g):
                k = keras.ops.convert_to_numpy(_kernel(target.get_layer(p)))
                pruned &= np.all(k.reshape(-1, g.channels) == 0, axis=0)
            for bn in _group_bns(target, g):
                if bn.scale:
                    pruned &= keras.ops.convert_to_numpy(bn.gamma) == 0
            masks[n] = (~pruned).astype("float32")
        fresh = any(not isinstance(v.constraint, masks_lib._MaskConstraint)
                    for g in self._groups.values() for v, _ in _group_variables(target, g))
        _apply(target, self._groups, masks, keep_masks=True, owner=self.model)
        self._masks = masks
        self._weights = list(self._groups)  # marks setup as done
        if fresh and getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)

    def prune(self, sparsity):
        """Prunes filters now to `sparsity` (pruned filters stay pruned)."""
        scores = filter_scores(self._target, self.criterion, list(self._groups))
        for n in scores:  # already-pruned filters rank first
            scores[n] = np.where(self._masks[n] == 0, -1.0, scores[n])
        new = _filter_masks(scores, sparsity, self.scope)
        self._masks = {n: new[n] * self._masks[n] for n in new}
        _apply(self._target, self._groups, self._masks, keep_masks=True, owner=self.model)

    def sparsities(self):
        """Returns `{layer: fraction of pruned filters}`."""
        return {n: float((m == 0).mean()) for n, m in getattr(self, "_masks", {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        if self.log and logs is not None:
            for n, s in self.sparsities().items():
                logs[f"filter_sparsity/{n}"] = s
