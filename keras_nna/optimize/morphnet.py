"""MorphNet on the NNA: shrink with an event-cost-weighted regularizer, expand to a budget.

MorphNet (Gordon et al. 2018) alternates two steps. *Shrink*: train with an L1
penalty on the BatchNorm gammas whose strength per layer is what one channel of
that layer costs, then remove the filters whose gamma went to ~0. *Expand*: grow
every width by one multiplier until the budget is met. The cost here is the
accelerator's, so it counts **events** (non-zero activation codes), not only
FLOPs: a channel that rarely fires is cheap even if its layer is large.

- :func:`event_cost_weights`: energy of one channel of each BN's group on a
  profile (events it emits × synops they trigger + event overhead + its weight
  bytes), normalised to mean 1.
- :func:`shrink`: cost-weighted gamma L1 for a few epochs, then filter surgery.
- :func:`expand_to_budget`: binary search (log scale) on the width multiplier
  with the real cost (:func:`keras_nna.optimize.scale_widths` → ``quantize_model``
  → :func:`keras_nna.optimize.measure_cost`), no training: widening is
  function-preserving, so the trained model's event statistics carry over.
- :func:`morph`: shrink → expand → fine-tune (distilled from the start model),
  for a number of rounds; a :class:`MorphResult` with the final model, its
  multiplier, its measured cost and a per-round history.

Example (a minute on digits; see ``tests/optimize/test_morph.py``)::

    result = morph(float_model, x, y, Budget("nna-1core", energy_uj=0.5), images=x[:128])
    result.model, result.multiplier, result.cost.costs
"""

import dataclasses
import time

import numpy as np
import keras

from keras_nna._checks import check_number
from keras_nna.optimize.budget import Budget, measure_cost
from keras_nna.optimize.widths import _costs, _log, expand_to_budget, scalable_groups, widths
from keras_nna.quantization.layer_kinds import layer_kind, unwrap
from keras_nna.sparsity.activations import quantize_codes
from keras_nna.sparsity.graph import event_fan_out, layer_graph
from keras_nna.sparsity.regularizers import _normalised, add_gamma_regularization

__all__ = ["MorphResult", "event_cost_weights", "shrink", "expand_to_budget", "morph"]


def _profile(profile):
    from keras_nna.runtime.profiles import get_profile

    return get_profile(profile.profile if isinstance(profile, Budget) else profile)


def _policy(policy):
    from keras_nna.quantization import QuantizationPolicy

    return QuantizationPolicy() if policy is None else policy


def _group_bn(model, group):
    for m in group.members:
        layer = model.get_layer(m)
        if layer_kind(unwrap(layer)) == "batchnorm" and unwrap(layer).scale:
            return m
    return None


def _bn_groups(model, what):
    groups = scalable_groups(model, what)
    out = {n: (g, _group_bn(model, g)) for n, g in groups.items()}
    out = {n: v for n, v in out.items() if v[1] is not None}
    if not out:
        raise ValueError(f"Cannot {what} model {model.name!r}: no scalable channel group has a "
                         f"BatchNormalization (with scale) after its producer (first: "
                         f"{next(iter(groups))!r}). Add BatchNormalization after the Conv2D/"
                         "SeparableConv2D/Dense layers to shrink.")
    return out


def _first_layer(graph, name):
    """Whether `name` computes on the model input (only weightless layers in between)."""
    while graph.producers.get(name):
        name = graph.producers[name][0]
        if not graph.producers.get(name):
            return True
        if graph.layers[name].weights:
            return False
    return True


def _weight_bytes(model, graph, group, policy):
    """Bytes of the weights one channel of `group` owns: its filter and its consumers' inputs."""
    def size(layer, keys):
        return sum(int(np.prod(v.shape)) for v in unwrap(layer).weights if v.name in keys)

    producer = model.get_layer(group.producer)
    bits = policy.resolve(group.producer, _first_layer(graph, group.producer))["weight_bits"]
    total = size(producer, ("pointwise_kernel",)) or size(producer, ("kernel",))
    total = total * bits / 8.0 / group.channels
    for c in group.consumers:
        cbits = policy.resolve(c)["weight_bits"]
        total += size(model.get_layer(c), ("kernel", "depthwise_kernel", "pointwise_kernel")
                      ) * cbits / 8.0 / group.channels
    return total


def event_cost_weights(model, images, profile="nna-1core", policy=None):
    """MorphNet resource weight of one channel of each BN's group, in events and energy.

    For each channel group surgery can change with a BatchNormalization ``bn``
    (producer ``p``, ``C`` channels), the energy of one channel per inference is::

        e      = events per channel per image at the group's output, on the
                 quantized grid (codes ≠ 0 of `quantize_codes(x, step)`, the
                 policy's activation step and bits of `p`), measured on `images`
        f      = synops one event triggers in the consumers (`event_fan_out`)
        bytes  = (filter of p + the consumers' input weights of the channel)
                 × weight bits / 8        (weights are read once per inference)
        weight = e·f·energy_per_synop_j
               + e·(f / synops_per_cycle_per_core + n_consumers·event_overhead_cycles)
                   / (cores·clock_hz) · static_power_w
               + bytes·energy_per_sram_byte_j

    and the weights are divided by their mean (mean 1).

    Args:
        model: A float functional or Sequential model.
        images: Calibration images `[N, H, W, C]` (uint8 for a model that starts
            with `Rescaling`, as AkidaNet does); a few hundred are enough.
        profile: Hardware profile (name, `HardwareProfile`, dict or `Budget`).
            Defaults to `"nna-1core"`.
        policy: The `QuantizationPolicy` the model will be quantized with.
            Defaults to `None` (`QuantizationPolicy()`).

    Returns:
        Dict `{BN layer name: weight > 0}` with mean 1 (BNs of groups that cannot
        change are left out).

    Raises:
        TypeError: If `model` is quantized.
        ValueError: For an unknown profile, empty images, or a model without a
            changeable group with BN (names the layer).

    Example:

    >>> import numpy as np, keras
    >>> m = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(4, 3, name="c"),
    ...     keras.layers.BatchNormalization(name="bn"), keras.layers.ReLU(),
    ...     keras.layers.Conv2D(4, 3, name="c2"), keras.layers.BatchNormalization(name="bn2"),
    ...     keras.layers.ReLU(), keras.layers.Flatten(), keras.layers.Dense(2)])
    >>> w = event_cost_weights(m, np.ones((2, 6, 6, 1), "float32"))
    >>> sorted(w), round(sum(w.values()) / len(w), 6)
    (['bn', 'bn2'], 1.0)
    """
    p, policy = _profile(profile), _policy(policy)
    images = np.asarray(images, "float32")
    if images.ndim < 2 or not len(images):
        raise ValueError(f"Expected calibration images [N, H, W, C] with N >= 1. Received shape "
                         f"{images.shape}.")
    bn_groups = _bn_groups(model, "weight")
    graph = layer_graph(model)
    srcs = sorted({s for g, _ in bn_groups.values() for s in g.consumers.values()})
    probe = keras.Model(model.inputs, [graph.layers[s].output for s in srcs])
    outs = probe.predict(images, batch_size=128, verbose=0)
    outs = dict(zip(srcs, outs if isinstance(outs, (list, tuple)) else [outs]))
    costs = {}
    for name, (g, bn) in bn_groups.items():
        spec = policy.resolve(name)
        energy = _weight_bytes(model, graph, g, policy) * p.energy_per_sram_byte_j
        for src in sorted(set(g.consumers.values())):
            codes = quantize_codes(outs[src], spec["activation_step"], spec["activation_bits"])
            e = float(np.count_nonzero(codes)) / len(images) / g.channels
            f = event_fan_out(graph, src)
            n = sum(1 for s in g.consumers.values() if s == src)
            cycles = e * (f / p.synops_per_cycle_per_core + n * p.event_overhead_cycles)
            energy += e * f * p.energy_per_synop_j + (
                cycles / (p.cores * p.clock_hz) * p.static_power_w)
        costs[bn] = energy
    return _normalised(costs)


def _train(model, x, y, epochs, lr, batch_size, teacher, start, verbose, what):
    from keras_nna.optimize.space import _fit, _teacher

    progress = (lambda msg: _log(verbose, start, f"{what} {msg}")) if verbose else None
    _fit(model, x, y, epochs, lr, batch_size, [], None if teacher is None else _teacher(teacher),
         progress)


def _strip_gamma_regularizers(model, names):
    for n in names:
        layer = unwrap(model.get_layer(n))
        layer.gamma_regularizer = None
        layer.gamma.regularizer = None


def shrink(model, x, y, *, images=None, profile="nna-1core", strength=1e-4, epochs=2,  # long: one pipeline
           threshold=1e-2, batch_size=64, teacher=None, policy=None, lr=1e-3, verbose=1):
    """Trains with event-cost-weighted BN-gamma L1, then removes the filters it zeroed.

    A channel is removed when its `|gamma|` is below `threshold` (absolute, as in
    MorphNet); each group keeps at least its largest-gamma channel. Only groups
    surgery can change (see :func:`keras_nna.sparsity.channel_groups`) are shrunk.

    Args:
        model: A trained float functional or Sequential model (logits out); not
            modified.
        x: Training images.
        y: Integer training labels.
        images: Calibration images for :func:`event_cost_weights`. Defaults to
            `None` (the first 256 of `x`).
        profile: Hardware profile that weights the regularizer. Defaults to
            `"nna-1core"`.
        strength: Base L1 strength (× each BN's cost weight, mean 1). Defaults to
            `1e-4`.
        epochs: Training epochs with the regularizer. Defaults to `2`.
        threshold: Absolute `|gamma|` below which a filter is removed. Defaults
            to `1e-2`.
        batch_size: Batch size. Defaults to `64`.
        teacher: Distil from this model while shrinking. Defaults to `None`.
        policy: The `QuantizationPolicy` for the event grid. Defaults to `None`.
        lr: Learning rate (cosine decay). Defaults to `1e-3`.
        verbose: Print a line per epoch and stage with elapsed time. Defaults to `1`.

    Returns:
        The smaller float model, without the regularizers.

    Raises:
        TypeError: If `model` is quantized or a number is not a number.
        ValueError: On a bad number, or if no group can be shrunk (names the layer).

    Example:

    >>> import numpy as np, keras
    >>> L = keras.layers
    >>> m = keras.Sequential([keras.Input((4,)), L.Dense(8, name="d"),
    ...     L.BatchNormalization(name="bn"), L.ReLU(), L.Dense(2)])
    >>> _ = m.get_layer("bn").gamma.assign(np.r_[np.zeros(5), np.ones(3)].astype("float32"))
    >>> small = shrink(m, np.ones((8, 4)), np.zeros(8, int), epochs=0, verbose=0)
    >>> small.get_layer("d").units
    3
    """
    start = time.time()
    strength = check_number("strength", strength, low=0.0, fix="Pass e.g. strength=1e-4.")
    epochs = check_number("epochs", epochs, low=0, integer=True, fix="Pass e.g. epochs=2.")
    threshold = check_number("threshold", threshold, low=0.0, fix="Pass e.g. threshold=1e-2.")
    bn_groups = _bn_groups(model, "shrink")
    from keras_nna.optimize.space import _teacher as _clone  # clone with weights

    student = _clone(model)
    weights = event_cost_weights(student, x[:256] if images is None else images, profile, policy)
    add_gamma_regularization(student, strength, weighting=weights)
    _log(verbose, start, "cost weights " + ", ".join(f"{k} {v:.2f}" for k, v in weights.items()))
    _train(student, x, y, epochs, lr, batch_size, teacher, start, verbose, "shrink")
    _strip_gamma_regularizers(student, weights)
    from keras_nna.sparsity.filters import _apply
    from keras_nna.sparsity.surgery import remove_pruned_filters

    masks = {}
    for name, (g, bn) in bn_groups.items():
        gamma = np.abs(keras.ops.convert_to_numpy(unwrap(student.get_layer(bn)).gamma))
        keep = gamma >= threshold
        keep[np.argmax(gamma)] = True
        masks[name] = keep.astype("float32")
    _apply(student, {n: g for n, (g, _) in bn_groups.items()}, masks, keep_masks=False)
    small = remove_pruned_filters(student)
    _log(verbose, start, f"shrunk {model.count_params():,} -> {small.count_params():,} parameters "
         f"({sum(int(m.size - m.sum()) for m in masks.values())} filters removed)")
    return small


@dataclasses.dataclass
class MorphResult:
    """What :func:`morph` returns.

    Attributes:
        model: The final float model (quantize it with the same policy for QAT).
        multiplier: The last round's width multiplier.
        cost: `CandidateCost` of `quantize_model(model, policy)` on the images.
        history: One dict per round: `params_shrunk`, `widths_shrunk`,
            `multiplier` (product of the expansion and any narrowing; channel
            counts are rounded), `params`, `widths`, `expand_costs` (before
            fine-tune), `costs` (after), `narrowed` (how many times the fine-tuned
            model had to be narrowed back into the budget).
        accuracy: Emulator accuracy of the quantized final model on
            `(x_val, y_val)`, or `None`.
    """

    model: object
    multiplier: float
    cost: object
    history: list
    accuracy: object = None


def morph(model, x, y, budget, *, images, rounds=1, strength=1e-4, shrink_epochs=2,  # long: one pipeline
          finetune_epochs=2, distill=True, policy=None, x_val=None, y_val=None, verbose=1,
          lr=1e-3, shrink_lr=None, batch_size=64, threshold=1e-2):
    """MorphNet to a budget: shrink → expand to the budget → fine-tune, `rounds` times.

    Fine-tuning moves the event statistics, so after it the cost is measured again;
    a model over budget is narrowed back (:func:`expand_to_budget` with
    `high=1`, keeping the highest-gamma channels) and fine-tuned again, at most
    twice; a third narrowing is final (no training). The round records how many
    narrowings it needed (`narrowed`). The final model always meets the budget.

    Args:
        model: A trained float functional or Sequential model (logits out);
            also the distillation teacher. Not modified.
        x: Training images (uint8 for a model starting with `Rescaling`).
        y: Integer labels.
        budget: A :class:`Budget` with at least one limit.
        images: uint8 calibration images for the costs.
        rounds: Shrink/expand rounds. Defaults to `1`.
        strength: Shrink L1 strength. Defaults to `1e-4`.
        shrink_epochs: Epochs of each shrink. Defaults to `2`.
        finetune_epochs: Epochs of each fine-tune. Defaults to `2`.
        distill: Distil from `model` while shrinking and fine-tuning. Defaults to `True`.
        policy: `QuantizationPolicy`. Defaults to `None`.
        x_val: Validation images for the final accuracy. Defaults to `None`.
        y_val: Validation labels. Defaults to `None`.
        verbose: Progress lines with elapsed time. Defaults to `1`.
        lr: Fine-tune learning rate (cosine decay). Defaults to `1e-3`.
        shrink_lr: Shrink learning rate. With Adam a gamma moves by about
            `shrink_lr` per step at most, so `shrink_epochs × steps × shrink_lr`
            must exceed the gammas (≈ 1) for filters to reach the threshold.
            Defaults to `None` (`lr`).
        batch_size: Batch size. Defaults to `64`.
        threshold: Shrink's `|gamma|` threshold. Defaults to `1e-2`.

    Returns:
        A :class:`MorphResult`.

    Raises:
        TypeError: If `model` is quantized or `budget` is not a `Budget`.
        ValueError: If the budget has no limit or cannot be met, or the model
            cannot be shrunk (names the layer).

    Example (no training here, just the plumbing):

    >>> import numpy as np, keras
    >>> from keras_nna.optimize import Budget
    >>> L = keras.layers
    >>> m = keras.Sequential([keras.Input((4, 4, 1)), L.Rescaling(1 / 255), L.Flatten(),
    ...     L.Dense(8, name="d"), L.BatchNormalization(), L.ReLU(), L.Dense(2)])
    >>> x = np.random.default_rng(0).integers(0, 256, (16, 4, 4, 1)).astype("uint8")
    >>> r = morph(m, x, np.zeros(16, int), Budget(events=40), images=x, shrink_epochs=0,
    ...           finetune_epochs=0, verbose=0)
    >>> r.multiplier > 1, r.cost.costs["events"] <= 40, r.cost.bit_exact
    (True, True, True)
    """
    from keras_nna.quantization import quantize_model

    rounds = check_number("rounds", rounds, low=1, integer=True, fix="Pass e.g. rounds=1.")
    if not isinstance(budget, Budget) or not budget.limits:
        expand_to_budget(model, budget, images)  # raises the one error message
    start, current, history = time.time(), model, []
    teacher = model if distill else None
    for r in range(rounds):
        small = shrink(current, x, y, images=images, profile=budget.profile, strength=strength,
                       epochs=shrink_epochs, threshold=threshold, batch_size=batch_size,
                       teacher=teacher, policy=policy, lr=lr if shrink_lr is None else shrink_lr,
                       verbose=verbose)
        entry = {"round": r + 1, "params_shrunk": small.count_params(),
                 "widths_shrunk": widths(small)}
        _log(verbose, start, f"round {r + 1}: shrunk to {entry['params_shrunk']:,} parameters")
        # Room to grow back past the start width, whatever the shrink removed.
        ratio = max(a / b for a, b in zip(widths(current).values(), widths(small).values()))
        wide, m, cost = expand_to_budget(small, budget, images, policy=policy,
                                         high=max(4.0, 2.0 * ratio))
        entry.update(multiplier=m, expand_costs=dict(cost.costs))
        _log(verbose, start, f"round {r + 1}: expanded x{m:.3f} -> {wide.count_params():,} "
             f"parameters, {_costs(cost)}")
        _train(wide, x, y, finetune_epochs, lr, batch_size, teacher, start, verbose, "fine-tune")
        cost = measure_cost(quantize_model(wide, policy), images, profile=budget.profile)
        entry["narrowed"] = 0
        while not budget.feasible(cost.costs):
            wide, m2, cost = expand_to_budget(wide, budget, images, policy=policy, high=1.0)
            m, entry["narrowed"] = m * m2, entry["narrowed"] + 1
            _log(verbose, start, f"round {r + 1}: over budget after fine-tuning: narrowed "
                 f"x{m2:.3f}, {_costs(cost)}")
            if entry["narrowed"] == 3:
                break
            # A short recovery (a quarter of the fine-tune): the narrowing removed only a few
            # channels, and full re-training would multiply the fine-tune time.
            _train(wide, x, y, max(1, finetune_epochs // 4), lr, batch_size, teacher, start,
                   verbose, "recovery")
            cost = measure_cost(quantize_model(wide, policy), images, profile=budget.profile)
        entry.update(multiplier=m, params=wide.count_params(), widths=widths(wide),
                     costs=dict(cost.costs))
        _log(verbose, start, f"round {r + 1}: fine-tuned, {_costs(cost)}")
        history.append(entry)
        current = wide
    accuracy = None
    if x_val is not None and y_val is not None:
        accuracy = measure_cost(quantize_model(current, policy), x_val, y_val,
                                profile=budget.profile).accuracy
        _log(verbose, start, f"quantized (no QAT) emulator accuracy {accuracy:.4f}")
    return MorphResult(model=current, multiplier=float(m), cost=cost, history=history,
                       accuracy=accuracy)
