"""Mixed precision to a budget: choose bits per layer, then QAT.

:func:`allocate_bits` takes a trained float model, validation data and a
:class:`~keras_nna.optimize.Budget`, and returns a
:class:`~keras_nna.quantization.QuantizationPolicy` whose per-layer weight bits
(and, if asked, activation bits) fit the budget with the least predicted loss:

1. **Reference.** Every allocatable layer at its widest option (8-bit weights).
2. **Sensitivity, measured.** For each layer and each narrower option, only
   that layer is lowered and the quantized model's loss (cross-entropy of the
   integer model, i.e. exactly what the chip computes) is measured on the
   validation images; the increase over the reference is the option's value.
   Measured rather than a Hessian-trace proxy: at 1–2 bits the weight change
   is far outside the quadratic region a Hessian describes, while one forward
   pass per option is cheap (≈ 1 s for AkidaNet 0.25 at 28×28).
3. **Price, from the cost model.** Each option is exported, run on the
   emulator over calibration images and priced on the budget's profile
   (:func:`~keras_nna.optimize.measure_cost`); its change against the
   reference is its cost, so activation sparsity counts.
4. **Exact solve.** One option per group, least summed loss increase, summed
   costs within every limit. A negative increase (the lowered layer happened
   to fit the validation images better) counts as 0: it is no evidence that
   fewer bits help after QAT. Among equal values the wider option wins, so
   budget left over buys bits instead of going unused: a multiple-choice knapsack solved exactly
   (:mod:`keras_nna.optimize.knapsack`: DP or ``scipy.optimize.milp``).
5. **Check.** The chosen policy is measured; if the additive prediction
   overshoots a limit, the limit is tightened by the overshoot and the
   knapsack solved again (at most 4 times).

The first layer (the one that reads the 8-bit image) keeps the policy's
``first_layer_weight_bits`` unless ``first_layer=True``.

Example:

>>> import numpy as np, keras
>>> from keras_nna.optimize import Budget, allocate_bits
>>> model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Rescaling(1 / 255),
...     keras.layers.Conv2D(4, 3, activation="relu", name="c0"),
...     keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
...     keras.layers.Flatten(), keras.layers.Dense(3, name="fc")])
>>> rng = np.random.default_rng(0)
>>> x, y = rng.integers(0, 256, (16, 6, 6, 1)).astype("uint8"), rng.integers(0, 3, 16)
>>> a = allocate_bits(model, (x, y), Budget(program_bytes=700), weight_bits=(2, 8), verbose=0)
>>> a.costs["program_bytes"] <= 700, sorted(a.policy.overrides)
(True, ['c1', 'fc'])
"""

import dataclasses
import time

import numpy as np

from keras_nna.optimize.budget import COSTS, Budget, measure_cost
from keras_nna.optimize.knapsack import solve

__all__ = ["BitAllocation", "allocate_bits"]

_TIE_BREAK = 1e-6  # value per unit of (1 - bits / widest): equal values → the wider option


@dataclasses.dataclass
class BitAllocation:
    """The chosen bits, the table they came from, and what they cost.

    Attributes:
        policy: The `QuantizationPolicy` to pass to `quantize_model` (then QAT).
        table: One dict per option: `layer`, `part` (`"weights"` or
            `"activations"`), `bits`, `loss_increase` (measured), `value` (what
            the solver minimizes: the increase clipped at 0, plus a 1e-6 tie-break
            towards wider options), the change of each cost name against the
            reference, and `chosen`.
        reference: `{"loss": ..., **costs}` of the all-widest reference.
        costs: Measured costs of the chosen policy (all of `COSTS`).
        budget: The `Budget`.
        seconds: Wall time of the allocation.
    """

    policy: object
    table: list
    reference: dict
    costs: dict
    budget: object
    seconds: float

    def choice(self):
        """Dict `layer → {"weights": bits, "activations": bits}` of the chosen options."""
        out = {}
        for row in self.table:
            if row["chosen"]:
                out.setdefault(row["layer"], {})[row["part"]] = row["bits"]
        return out

    def summary(self):
        """A markdown table of every option (chosen ones marked `*`) and the totals."""
        names = list(self.budget.limits) or ["program_bytes"]
        lines = ["| layer | part | bits | loss increase | " + " | ".join(f"Δ {n}" for n in names)
                 + " |", "|---|---|---|---|" + "---|" * len(names)]
        for r in self.table:
            mark = "*" if r["chosen"] else ""
            lines.append(f"| {r['layer']} | {r['part']} | {r['bits']}{mark} | "
                         f"{r['loss_increase']:+.4f} | "
                         + " | ".join(f"{r[n]:+,.4g}" for n in names) + " |")
        totals = ", ".join(f"{n} {self.costs[n]:,.6g}" for n in names)
        lines.append(f"\nChosen: {totals} ({self.budget.describe()}); "
                     f"allocation took {self.seconds:.1f} s.")
        return "\n".join(lines)

    def to_dict(self):
        """JSON-compatible dict (the policy as its config)."""
        return {"policy": self.policy.get_config(), "table": self.table,
                "reference": self.reference, "costs": self.costs,
                "budget": self.budget.to_dict(), "seconds": self.seconds}


def _check_widths(name, widths, kind):
    from keras_nna.quantization.quantizers import check_bits

    if widths is None:
        return None
    try:
        widths = sorted({check_bits(b, kind, arg=name) for b in widths})
    except TypeError:
        raise ValueError(f"`{name}` must be a list of bit widths such as (1, 2, 4, 8), "
                         f"received {widths!r}.") from None
    if not widths:
        raise ValueError(f"`{name}` must name at least one bit width, received {widths!r}.")
    return widths


def _check_data(model, data):
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError("Expected `data` as (x_val, y_val): images [N, H, W, C] (raw pixel "
                         f"values 0-255) and their labels. Received: {type(data).__name__}.") \
            from None
    x, y = np.asarray(x), np.asarray(y)
    want = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or tuple(x.shape[1:]) != want or len(x) != len(y) or not len(x):
        raise ValueError(f"Expected validation images of shape (N, {', '.join(map(str, want))}) "
                         f"with one label each. Received images {x.shape} and {len(y)} labels.")
    return x, y


def _groups(qmodel, weight_bits, activation_bits, first_layer):
    """`[(layer, part, widths)]` in model order."""
    from keras_nna.quantization import QuantizedAdd, QuantizeWrapper

    groups = []
    for layer in qmodel.layers:
        if isinstance(layer, QuantizeWrapper):
            if weight_bits and (first_layer or not layer.first_layer):
                groups.append((layer.name, "weights", weight_bits))
            coded = layer.activation_bits is not None
            if activation_bits and coded:
                low = 2 if layer.signed else 1
                groups.append((layer.name, "activations", [b for b in activation_bits if b >= low]))
        elif isinstance(layer, QuantizedAdd) and activation_bits:
            low = 1 if layer.relu else 2
            groups.append((layer.name, "activations", [b for b in activation_bits if b >= low]))
    return [g for g in groups if g[2]]


def _policy(base, settings):
    from keras_nna.quantization import QuantizationPolicy

    config = base.get_config()
    overrides = {k: dict(v) for k, v in config["overrides"].items()}
    for (layer, part), bits in settings.items():
        key = "weight_bits" if part == "weights" else "activation_bits"
        overrides.setdefault(layer, {})[key] = int(bits)
    return QuantizationPolicy(**{**config, "overrides": overrides})


class _Meter:
    """Loss and costs of one policy: quantize, forward pass, export, emulate, price."""

    def __init__(self, model, x, y, images, budget, loss):
        import keras

        self.model, self.x, self.y, self.images, self.budget = model, x, y, images, budget
        self.loss = loss or (keras.losses.CategoricalCrossentropy(from_logits=True)
                             if y.ndim == 2 else
                             keras.losses.SparseCategoricalCrossentropy(from_logits=True))

    def __call__(self, policy):
        from keras_nna.quantization import quantize_model

        qmodel = quantize_model(self.model, policy)
        losses = []
        for start in range(0, len(self.x), 500):
            xb = self.x[start: start + 500].astype("float32")
            logits = qmodel(xb, training=False)
            losses.append(float(self.loss(self.y[start: start + 500], logits)) * len(xb))
        cost = measure_cost(qmodel, self.images, profile=self.budget)
        return sum(losses) / len(self.x), cost.costs


def _log(verbose, started, text):
    if verbose:
        print(f"[allocate_bits {time.monotonic() - started:6.1f} s] {text}", flush=True)


def allocate_bits(model, data, budget, *, policy=None, weight_bits=(1, 2, 4, 8),  # long: checks + 5 steps
                  activation_bits=None, first_layer=False, loss=None, max_val=1000,
                  max_images=64, verbose=1):
    """Chooses per-layer bit widths that fit `budget` with the least measured loss.

    Args:
        model: A trained float Keras model that `quantize_model` accepts.
        data: `(x_val, y_val)`: images (raw pixel values 0–255, as the model
            takes them) and labels (integers, or one-hot).
        budget: A `Budget` (profile and limits); with no limit every layer gets
            its widest option.
        policy: Base `QuantizationPolicy` (activation range, first-layer bits,
            defaults for layers not allocated). Defaults to `None` (the default
            policy).
        weight_bits: Candidate weight widths (each 1–8), or `None` to keep the
            policy's. Defaults to `(1, 2, 4, 8)`.
        activation_bits: Candidate activation widths, e.g. `(2, 4, 8)`, or
            `None` to keep the policy's. Defaults to `None`.
        first_layer: Also allocate the weights of the layer that reads the
            image. Defaults to `False` (it keeps `first_layer_weight_bits`).
        loss: Loss `loss(y_true, logits) -> scalar`. Defaults to `None`
            (cross-entropy from logits).
        max_val: Validation images used for the sensitivity. Defaults to `1000`.
        max_images: Calibration images the emulator runs to price each option.
            Defaults to `64`.
        verbose: Print a line per layer with elapsed time. Defaults to `1`.

    Returns:
        A :class:`BitAllocation` (policy, table, measured costs).

    Raises:
        ValueError: On bad data, widths outside 1–8 (2–8 for signed codes are
            filtered out), or a `budget` that is not a `Budget`.
        keras_nna.optimize.knapsack.InfeasibleBudget: If the budget is below
            the cost of the fewest bits everywhere (the message shows that cost).
    """
    from keras_nna.quantization import QuantizationPolicy, quantize_model

    if not isinstance(budget, Budget):
        raise ValueError(f"budget must be a keras_nna.optimize.Budget, e.g. "
                         f"Budget('nna-1core', program_bytes=50000). Received {budget!r}.")
    policy = policy or QuantizationPolicy()
    weight_bits = _check_widths("weight_bits", weight_bits, "weight")
    activation_bits = _check_widths("activation_bits", activation_bits, "activation")
    x, y = _check_data(model, data)
    started = time.monotonic()
    images = np.clip(np.round(x[:max_images]), 0, 255).astype(np.uint8)
    meter = _Meter(model, x[:max_val], y[:max_val], images, budget, loss)
    groups = _groups(quantize_model(model, policy), weight_bits, activation_bits, first_layer)
    widest = {(layer, part): max(bits) for layer, part, bits in groups}
    ref_loss, ref_costs = meter(_policy(policy, widest))
    _log(verbose, started, f"reference (widest everywhere): loss {ref_loss:.4f}, "
         + ", ".join(f"{k} {ref_costs[k]:,.6g}" for k in budget.limits))
    table = []
    for layer, part, bits in groups:
        for b in bits:
            row = {"layer": layer, "part": part, "bits": b, "loss_increase": 0.0,
                   **{k: 0.0 for k in COSTS}, "chosen": False}
            if b != widest[(layer, part)]:
                lossb, costs = meter(_policy(policy, {**widest, (layer, part): b}))
                row["loss_increase"] = lossb - ref_loss
                row.update({k: costs[k] - ref_costs[k] for k in COSTS})
            row["value"] = (max(row["loss_increase"], 0.0)
                            + _TIE_BREAK * (1 - b / widest[(layer, part)]))
            table.append(row)
        _log(verbose, started, f"{layer} {part}: " + ", ".join(
            f"{r['bits']}b {r['loss_increase']:+.3f}" for r in table[-len(bits):]))
    names = list(budget.limits)
    limits = np.array([budget.limits[k] for k in names])
    rows = [[r for r in table if (r["layer"], r["part"]) == (layer, part)]
            for layer, part, _ in groups]
    for _ in range(5):
        pick = solve([[r["value"] for r in g] for g in rows],
                     [[[r[k] for k in names] for r in g] for g in rows], limits, names=names,
                     offset=[ref_costs[k] for k in names]) if groups else []
        chosen = {(layer, part): g[o]["bits"] for (layer, part, _), g, o in zip(groups, rows, pick)}
        result = _policy(policy, chosen)
        _, costs = meter(result)
        over = np.array([costs[k] - budget.limits[k] for k in names])
        if budget.feasible(costs):
            break
        _log(verbose, started, "measured cost over the additive prediction; tightening by "
             + ", ".join(f"{k} {v:,.6g}" for k, v in zip(names, over) if v > 0))
        limits = limits - np.maximum(over, 0)
    else:
        raise ValueError(f"Could not fit {budget.describe()}: the measured cost of the chosen "
                         f"widths stays over the limits ({costs}). Loosen the budget.")
    for g, o in zip(rows, pick):
        g[o]["chosen"] = True
    _log(verbose, started, "chosen: " + ", ".join(f"{k} {costs[k]:,.6g}" for k in names))
    return BitAllocation(policy=result, table=table, reference={"loss": ref_loss, **ref_costs},
                         costs=costs, budget=budget, seconds=time.monotonic() - started)
