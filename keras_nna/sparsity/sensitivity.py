"""Sensitivity analysis: how much does pruning each layer alone cost?

A common recipe (test how well each layer prunes on its own) in three calls:

1. :func:`sensitivity_analysis` prunes one layer at a time, at each ratio, *without
   retraining*, evaluates a metric (accuracy by default) and restores the weights.
   ``kind="weights"`` uses magnitude pruning of the layer's kernels,
   ``kind="filters"`` filter pruning (``criterion="bn_gamma"`` or ``"l1"``).
2. :func:`plot_sensitivity` draws metric vs ratio per layer (needs matplotlib).
3. :func:`propose_ratios` picks, per layer, the largest ratio whose metric stays
   within ``max_drop`` of the unpruned model ("fixed accuracy loss per layer"); feed
   the result to :func:`keras_nna.sparsity.prune_weights` / ``prune_filters`` layer by
   layer, or to a pruning callback per layer, then fine-tune.

The table is a plain dict (JSON-serialisable): ``{"baseline": float, "ratios": [...],
"kind": str, "metric": name of the metric, "metrics": {layer: [metric at each ratio]}}``.

Example:

>>> table = {"baseline": 0.9, "ratios": [0.25, 0.5, 0.75], "kind": "weights",
...          "metrics": {"a": [0.9, 0.89, 0.5], "b": [0.7, 0.9, 0.9]}}
>>> propose_ratios(table, max_drop=0.02)
{'a': 0.5, 'b': 0.0}
"""

import numpy as np
import keras

from keras_nna._checks import check_number
from keras_nna.sparsity import masks as masks_lib
from keras_nna.sparsity.filters import _eligible, prune_filters
from keras_nna.sparsity.pruning import _check_choice, prune_weights
from keras_nna.sparsity.schedules import check_sparsity

__all__ = ["sensitivity_analysis", "plot_sensitivity", "propose_ratios", "accuracy"]


def accuracy(y_true, y_pred):
    """Classification accuracy for integer or one-hot labels and logits/probabilities.

    Args:
        y_true: Labels, shape `(n,)` or one-hot `(n, classes)`.
        y_pred: Scores, shape `(n, classes)` (or `(n,)`/`(n, 1)` for binary, threshold 0.5).

    Returns:
        Python float.

    Example:

    >>> accuracy(np.array([0, 1]), np.array([[2.0, 1.0], [0.0, 1.0]]))
    1.0
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        return float(((y_pred.reshape(-1) > 0.5) == y_true.reshape(-1).astype(bool)).mean())
    if y_true.ndim == y_pred.ndim:
        y_true = y_true.argmax(-1)
    return float((y_pred.argmax(-1) == y_true.reshape(-1)).mean())


def _predict(model, x, batch_size):
    outs = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs)


def sensitivity_analysis(model, x, y, ratios=(0.25, 0.5, 0.75, 0.9), kind="weights", metric=None,
                         criterion="bn_gamma", layers=None, batch_size=256):
    """Evaluates the model with each layer pruned alone at each ratio (no retraining).

    Args:
        model: A built model (functional or Sequential for `kind="filters"`).
        x: Evaluation inputs (keep them a few hundred samples).
        y: Evaluation labels.
        ratios: Pruning ratios in `[0, 1)`. Defaults to `(0.25, 0.5, 0.75, 0.9)`.
        kind: `"weights"` (magnitude pruning) or `"filters"`. Defaults to `"weights"`.
        metric: Callable `metric(y_true, y_pred) -> float`, higher is better. Defaults
            to `None` (:func:`accuracy`).
        criterion: Filter criterion for `kind="filters"`. Defaults to `"bn_gamma"`.
        layers: Layer names to analyse. Defaults to `None` (all prunable).
        batch_size: Evaluation batch size. Defaults to `256`.

    Returns:
        The table dict described in the module docstring (`"metric"` is the
        metric function's `__name__`, `"metric"` for a lambda). The model's
        weights are restored.

    Raises:
        TypeError: If a ratio or `batch_size` is not a number (an integer).
        ValueError: On an unknown kind, a ratio outside `[0, 1)` (or NaN), a
            `batch_size` < 1, or an unknown layer name.

    Example:

    >>> import numpy as np, keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, name="a"),
    ...                       keras.layers.Dense(3, name="b")])
    >>> x, y = np.eye(4, dtype="float32"), np.array([0, 1, 2, 0])
    >>> t = sensitivity_analysis(m, x, y, ratios=(0.5,))
    >>> sorted(t["metrics"]), len(t["metrics"]["a"])
    (['a', 'b'], 1)
    """
    _check_choice("kind", kind, ("weights", "filters"))
    ratios = [check_sparsity(r, "ratio") for r in ratios]
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    metric = accuracy if metric is None else metric
    if kind == "weights":
        names = list(dict.fromkeys(w.layer_name for w in masks_lib.find_prunable_weights(model, layers)))
    else:
        names = list(_eligible(model, layers))
    x = np.asarray(x)
    snapshot = model.get_weights()
    table = {"baseline": float(metric(y, _predict(model, x, batch_size))), "ratios": ratios,
             "kind": kind, "metric": _metric_name(metric), "metrics": {}}
    try:
        for name in names:
            values = []
            for r in ratios:
                if kind == "weights":
                    prune_weights(model, sparsity=r, layers=[name])
                else:
                    prune_filters(model, r, criterion=criterion, layers=[name])
                values.append(float(metric(y, _predict(model, x, batch_size))))
                model.set_weights(snapshot)
            table["metrics"][name] = values
    finally:
        model.set_weights(snapshot)
    return table


def _metric_name(metric):
    name = getattr(metric, "__name__", None) or getattr(metric, "name", None)
    return "metric" if not isinstance(name, str) or name.startswith("<") else name


def _line_styles(n):
    """`n` distinct (colour, line style, marker) triples, colours varying fastest."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    styles = ("-", "--", ":", "-.")
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    return [(colors[i % 10], styles[(i // 10) % 4], markers[(i // 10) % 8]) for i in range(n)]


def propose_ratios(table, max_drop=0.01):
    """Per-layer ratios that lose at most `max_drop` of the metric each.

    For each layer, the largest ratio such that it and every smaller ratio of the
    table keep `metric >= baseline - max_drop`; `0.0` if even the smallest fails.

    Args:
        table: Result of :func:`sensitivity_analysis`.
        max_drop: Allowed metric drop per layer (absolute). Defaults to `0.01`.

    Returns:
        Dict layer name → ratio.

    Raises:
        TypeError: If `max_drop` is not a number.
        ValueError: If `max_drop` is negative, NaN or infinite, or the table is
            malformed.

    Example:

    >>> propose_ratios({"baseline": 1.0, "ratios": [0.5], "metrics": {"a": [0.99]}}, 0.05)
    {'a': 0.5}
    """
    max_drop = check_number("max_drop", max_drop, low=0.0,
                            fix="Pass the allowed metric drop per layer, e.g. max_drop=0.01.")
    try:
        base, ratios, metrics = table["baseline"], list(table["ratios"]), table["metrics"]
    except (KeyError, TypeError) as e:
        raise ValueError("`table` must be the dict returned by sensitivity_analysis (keys "
                         f"'baseline', 'ratios', 'metrics'). Missing: {e}.") from None
    order = np.argsort(ratios)
    out = {}
    for name, values in metrics.items():
        best = 0.0
        for i in order:
            if values[i] >= base - max_drop:
                best = float(ratios[i])
            else:
                break
        out[name] = best
    return out


def plot_sensitivity(table, path=None, metric_name=None):
    """Plots metric vs pruning ratio, one line per layer.

    Each line gets its own (colour, line style, marker): ten colours, then the
    next ten layers dashed with another marker, and so on, so up to 40 layers
    stay distinguishable. The y axis is labelled with the metric's name.

    Args:
        table: Result of :func:`sensitivity_analysis`.
        path: File to save the figure to (format from the extension). Defaults to
            `None` (not saved).
        metric_name: Label of the y axis. Defaults to `None`: the table's
            `"metric"` entry (`"accuracy"` for tables without one).

    Returns:
        The `matplotlib.figure.Figure`.

    Raises:
        ImportError: If matplotlib is not installed.

    Example:

    >>> fig = plot_sensitivity({"baseline": 1.0, "ratios": [0.5], "kind": "weights",
    ...                         "metrics": {"a": [0.9]}})
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('weights pruning ratio', 'accuracy')
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plot_sensitivity needs matplotlib: `pip install matplotlib` (or "
                          "`pip install keras_nna[tutorials]`).") from None
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    styles = _line_styles(len(table["metrics"]))
    for (name, values), (color, style, marker) in zip(table["metrics"].items(), styles):
        ax.plot(table["ratios"], values, color=color, linestyle=style, marker=marker, label=name)
    ax.axhline(table["baseline"], color="k", linestyle="--", linewidth=0.8, label="unpruned")
    ax.set_xlabel(f"{table.get('kind', 'weights')} pruning ratio")
    ax.set_ylabel(metric_name or table.get("metric", "accuracy"))
    ax.legend(fontsize="x-small", ncol=2)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
