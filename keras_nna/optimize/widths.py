"""Width scaling: every channel group of a float model × one multiplier.

:func:`scale_widths` returns a copy of a float model in which every channel
group that filter surgery can change (see :func:`keras_nna.sparsity.channel_groups`:
not blocked, with consumers) has ``max(1, round(multiplier × channels))``
channels, or the channel counts given per producer in a dict. The model's
outputs (the classifier) never change width.

- **Widening** (Net2WiderNet, Chen et al. 2016) replicates existing channels,
  most important first (by ``scores``): the producer's filter, the BatchNorm and
  depthwise parameters in between, and the consumers' input weights, which are
  divided by the channel's replication count. With ``noise=0`` the wider model
  computes the same function (allclose); the default small multiplicative
  noise on the new replicas' filters breaks their symmetry for training.
  Because the function (and so each channel's activation statistics) is kept,
  the events of a trained model scale predictably, which is what
  :func:`keras_nna.optimize.expand_to_budget` relies on.
- **Narrowing** keeps the highest-scoring channels
  (:func:`keras_nna.sparsity.filter_scores`: ``"bn_gamma"``, else ``"l1"``
  for a group without BatchNorm) and removes the others.

:func:`expand_to_budget` searches the largest multiplier whose quantized cost
meets a :class:`keras_nna.optimize.Budget` (no training).

Scale the float model, then quantize it (``quantize_model``); a quantized
model is refused. Layer names are preserved. The re-indexing itself is
:func:`keras_nna.sparsity.surgery.rebuild_channels`, the rule filter removal
uses.

Example:

>>> import numpy as np, keras
>>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="a"),
...                       keras.layers.ReLU(), keras.layers.Dense(2, name="b")])
>>> wide = scale_widths(m, 2.0, noise=0.0)
>>> wide.get_layer("a").units, wide.get_layer("b").units
(6, 2)
>>> x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
>>> bool(np.allclose(wide.predict(x, verbose=0), m.predict(x, verbose=0), atol=1e-5))
True
>>> scale_widths(m, {"a": 1}).get_layer("a").units
1
"""

import math
import time

import numpy as np
import keras

from keras_nna._checks import check_number
from keras_nna.optimize.budget import Budget, measure_cost
from keras_nna.optimize.space import _log
from keras_nna.quantization import is_quantize_wrapper
from keras_nna.quantization.layer_kinds import iter_layers
from keras_nna.sparsity.filters import filter_scores
from keras_nna.sparsity.surgery import channel_groups, rebuild_channels

__all__ = ["scale_widths", "expand_to_budget"]


def scalable_groups(model, what="scale"):
    """The channel groups surgery can change; raises if there is none.

    Args:
        model: A float functional or Sequential model.
        what: Verb for the error message. Defaults to `"scale"`.

    Returns:
        Dict producer name → `ChannelGroup` (not blocked, with consumers).

    Raises:
        TypeError: If `model` is quantized.
        ValueError: If no group can change (names the first layer and why).
    """
    if any(is_quantize_wrapper(l) for l in iter_layers(model)):
        raise TypeError(f"Expected a float model; received the quantized model {model.name!r} "
                        f"(QuantizeWrapper layers). {what.capitalize()} the float model before "
                        "keras_nna.quantization.quantize_model, then quantize the result.")
    groups = channel_groups(model)
    ok = {n: g for n, g in groups.items() if not g.blocked and g.consumers}
    if not ok:
        if not groups:
            raise ValueError(f"Cannot {what} model {model.name!r}: it has no Conv2D, "
                             "SeparableConv2D or Dense layer whose channels surgery can change.")
        first = next(iter(groups.values()))
        why = first.blocked or "its channels feed no Conv2D/SeparableConv2D/Dense consumer"
        raise ValueError(f"Cannot {what} model {model.name!r}: no channel group can change. The "
                         f"first, of layer {first.producer!r}, is blocked: {why.rstrip('.')}. Expected "
                         "Conv2D/SeparableConv2D/DepthwiseConv2D/Dense/BN/ReLU/pooling stacks "
                         "(see keras_nna.sparsity.channel_groups).")
    return ok


def group_scores(model, groups, scores="bn_gamma"):
    """Per-filter scores of each group: `scores` criterion, `"l1"` for groups without BN."""
    out = {}
    for name in groups:
        try:
            out[name] = filter_scores(model, scores, layers=[name])[name]
        except ValueError:
            if scores != "bn_gamma":
                raise
            out[name] = filter_scores(model, "l1", layers=[name])[name]
    return out


def target_widths(groups, multiplier):
    """Dict producer name → new channel count (validated `multiplier`: number or dict)."""
    if isinstance(multiplier, dict):
        unknown = sorted(set(multiplier) - set(groups))
        if unknown:
            raise ValueError(f"Unknown or non-scalable layer name(s) {unknown} in `multiplier`. "
                             f"Expected producers whose channels surgery can change: "
                             f"{sorted(groups)}.")
        return {n: check_number(f"multiplier[{n!r}]", c, low=1, integer=True,
                                fix="Pass the new channel count of each layer, e.g. {'conv': 16}.")
                for n, c in multiplier.items()}
    m = check_number("multiplier", multiplier, low=0.0, low_open=True,
                     fix="Pass a width multiplier such as 1.5 (wider) or 0.5 (narrower).")
    return {n: max(1, int(round(m * g.channels))) for n, g in groups.items()}


def _index(score, target):
    """Old-channel index of every new channel, and the replication count of each."""
    channels = len(score)
    order = np.argsort(-np.asarray(score), kind="stable")
    if target <= channels:
        index = np.sort(order[:target])
    else:
        index = np.concatenate([np.arange(channels), order[np.arange(target - channels) % channels]])
    counts = np.bincount(index, minlength=channels)
    return index, 1.0 / counts[index]


def _perturb(model, name, start, noise, rng):
    """Multiplies the filters (and bias) of channels `start:` of `name` by `1 + noise·N(0,1)`."""
    layer = model.get_layer(name)
    for v in layer.weights:
        if v.name in ("kernel", "pointwise_kernel", "bias"):
            w = keras.ops.convert_to_numpy(v)
            extra = w.shape[-1] - start
            if extra > 0:
                w[..., start:] *= 1.0 + noise * rng.standard_normal(extra).astype(w.dtype)
                v.assign(w)


def scale_widths(model, multiplier, *, scores="bn_gamma", noise=0.01, seed=0):
    """Scales the width of every channel group of a float model (see the module guide).

    Args:
        model: A built float functional or Sequential model.
        multiplier: A finite number > 0 (all scalable groups get
            `max(1, round(multiplier × channels))` channels) or a dict
            `{producer layer name: channels}` (other groups unchanged).
        scores: Filter importance for choosing channels to keep or replicate,
            `"bn_gamma"` (`"l1"` for groups without BN) or `"l1"`. Defaults to
            `"bn_gamma"`.
        noise: Relative std of the multiplicative noise on the new replicas'
            filters (`0` = exactly function-preserving). Defaults to `0.01`.
        seed: Seed of the noise. Defaults to `0`.

    Returns:
        A new float `keras.Model` (same kind, same layer names).

    Raises:
        TypeError: If `model` is quantized (scale before `quantize_model`) or a
            number is not a number.
        ValueError: If `multiplier` is not finite and > 0 (or a dict with
            unknown names or counts < 1), `noise` < 0, or no group can change
            (the message names the first blocked layer and why).

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="c"),
    ...     keras.layers.BatchNormalization(), keras.layers.ReLU(),
    ...     keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, name="d")])
    >>> scale_widths(m, 0.5).get_layer("c").filters
    2
    """
    noise = check_number("noise", noise, low=0.0, fix="Pass e.g. noise=0.01, or 0 for none.")
    groups = scalable_groups(model)
    targets = target_widths(groups, multiplier)
    score = group_scores(model, {n: groups[n] for n in targets}, scores)
    out_index, in_scale = {}, {}
    for name, target in targets.items():
        out_index[name], in_scale[name] = _index(score[name], target)
    new = rebuild_channels(model, channel_groups(model), out_index, in_scale)
    if noise > 0:
        rng = np.random.default_rng(seed)
        for name in out_index:
            _perturb(new, name, groups[name].channels, noise, rng)
    return new


def widths(model):
    """Dict producer name → channel count of every Conv2D/SeparableConv2D/Dense layer."""
    return {n: g.channels for n, g in channel_groups(model).items()}


def _check_bounds(low, high, tolerance, max_steps):
    low = check_number("low", low, low=0.0, low_open=True, fix="Pass e.g. low=0.25.")
    high = check_number("high", high, low=low, fix=f"Pass a `high` >= low={low:g}, e.g. 4.0.")
    tolerance = check_number("tolerance", tolerance, low=0.0, low_open=True,
                             fix="Pass a relative tolerance such as 0.02.")
    max_steps = check_number("max_steps", max_steps, low=1, integer=True, fix="Pass e.g. 12.")
    return low, high, tolerance, max_steps


def expand_to_budget(model, budget, images, *, policy=None, low=0.25, high=4.0, tolerance=0.02,  # long: one search
                     max_steps=12, noise=0.01, seed=0, verbose=0):
    """Finds the largest width multiplier whose quantized cost meets the budget (no training).

    Each candidate is `scale_widths(model, m, noise=noise)` → `quantize_model(policy)`
    → `measure_cost(images, budget.profile)`, feasible when `budget.feasible` holds.
    The small noise on the replicas (needed so that fine-tuning can tell them
    apart) barely moves the function, so the trained model's events carry over;
    the returned cost is that of the returned model.
    The search bisects `[low, high]` on a log scale until `high/low <= 1 + tolerance`
    or `max_steps` candidates after the two ends; widths that round to the same
    channel counts are measured once.

    Args:
        model: A float functional or Sequential model (trained: its event
            statistics are what the search prices).
        budget: A :class:`Budget` with at least one limit.
        images: uint8 calibration images `[N, H, W, C]`.
        policy: `QuantizationPolicy` for `quantize_model`. Defaults to `None`.
        low: Smallest multiplier tried. Defaults to `0.25`.
        high: Largest multiplier tried. Defaults to `4.0`.
        tolerance: Relative precision of the multiplier. Defaults to `0.02`.
        max_steps: Bisection steps at most. Defaults to `12`.
        noise: `scale_widths` noise on the new replicas (`0`: exactly
            function-preserving). Defaults to `0.01`.
        seed: Seed of the noise. Defaults to `0`.
        verbose: Print a line per candidate. Defaults to `0`.

    Returns:
        `(model, multiplier, cost)`: the scaled float model, its multiplier and
        its `CandidateCost`. If `high` itself is within budget it is returned
        (pass a larger `high` to grow further).

    Raises:
        TypeError: If `model` is quantized or `budget` is not a `Budget`.
        ValueError: If the budget has no limit, a bound is bad, or even `low` is
            over budget (the message shows its cost).

    Example:

    >>> import numpy as np, keras
    >>> from keras_nna.optimize import Budget
    >>> L = keras.layers
    >>> m = keras.Sequential([keras.Input((4, 4, 1)), L.Rescaling(1 / 255), L.Flatten(),
    ...     L.Dense(8, name="d"), L.BatchNormalization(), L.ReLU(), L.Dense(2)])
    >>> x = np.random.default_rng(0).integers(0, 256, (16, 4, 4, 1)).astype("uint8")
    >>> wide, m_best, cost = expand_to_budget(m, Budget(events=40), x)
    >>> wide.get_layer("d").units > 8, m_best > 1, cost.costs["events"] <= 40, cost.bit_exact
    (True, True, True, True)
    """
    from keras_nna.quantization import quantize_model

    if not isinstance(budget, Budget):
        raise TypeError(f"Expected a keras_nna.optimize.Budget. Received: {type(budget).__name__}.")
    if not budget.limits:
        raise ValueError("expand_to_budget needs a budget with at least one limit, e.g. "
                         "Budget('nna-1core', energy_uj=1.5). Received: a budget with no limit.")
    low, high, tolerance, max_steps = _check_bounds(low, high, tolerance, max_steps)
    groups = scalable_groups(model, "expand")
    start, cache = time.time(), {}

    def measure(m):
        key = tuple(sorted(target_widths(groups, m).items()))
        if key not in cache:
            scaled = scale_widths(model, m, noise=noise, seed=seed)
            cost = measure_cost(quantize_model(scaled, policy), images, profile=budget.profile)
            cache[key] = (scaled, cost, budget.feasible(cost.costs))
            _log(verbose, start, f"x{m:.3f}: {_costs(cost)} "
                 f"{'within' if cache[key][2] else 'over'} budget")
        return cache[key]

    best = measure(low)
    if not best[2]:
        raise ValueError(f"Even the narrowest width (multiplier low={low:g}) is over the budget "
                         f"({budget.describe()}): it costs {_costs(best[1])}. Lower `low`, shrink "
                         "the model first, or raise the budget.")
    lo, top = low, measure(high)
    if top[2]:
        return top[0], float(high), top[1]
    hi = high
    for _ in range(max_steps):
        if hi / lo <= 1.0 + tolerance:
            break
        mid = math.sqrt(lo * hi)
        cand = measure(mid)
        if cand[2]:
            lo, best = mid, cand
        else:
            hi = mid
    return best[0], float(lo), best[1]


def _costs(cost):
    return ", ".join(f"{k} {v:.4g}" for k, v in cost.costs.items())
