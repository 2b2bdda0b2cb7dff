"""Weight pruning ("coring"): zero the small weights, keep them zero.

On the event-based accelerator a zero weight is never stored nor multiplied, so
unstructured pruning directly saves memory and MACs. :class:`PruneCallback`
prunes kernels during ``fit``:

- **what**: every conv / depthwise / separable (depthwise and pointwise) / dense
  kernel, float or wrapped by ``QuantizeWrapper`` (``layers=[...]`` to choose by name,
  ``exclude_first=True`` to keep the first layer dense);
- **how**: ``method="percentage"`` zeroes the smallest ``sparsity`` fraction of
  weights, per kernel (``scope="layer"``) or across all selected kernels
  (``scope="global"``); ``method="threshold"`` zeroes every ``|w| < threshold``;
- **when**: a sparsity schedule ``schedule(step) -> (should_prune, sparsity)``
  (:class:`ConstantSparsity`, :class:`PolynomialDecay` or a tfmot schedule),
  evaluated on optimizer steps (``granularity="step"``) or epochs
  (``granularity="epoch"``, pruning at the start of the epoch).

Pruned weights stay zero: a mask constraint re-applies the mask after every optimizer
step inside the compiled train step (see :mod:`keras_nna.sparsity.masks` for where
masks live and why they survive saving and ``BackupAndRestore``). Per-kernel sparsity
is added to the epoch logs as ``sparsity/<layer>`` (and ``sparsity/total``), so it is
in ``History`` and, if a ``keras.callbacks.TensorBoard`` callback comes *after* the
``PruneCallback`` in the callbacks list, in TensorBoard as ``epoch_sparsity/<layer>``.
:func:`prune_weights` does the same pruning once, without training.

Example:

>>> import numpy as np, keras
>>> model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8, name="a"),
...                           keras.layers.Dense(2, name="b")])
>>> model.compile("sgd", "mse")
>>> cb = PruneCallback(ConstantSparsity(0.5, frequency=1))
>>> h = model.fit(np.ones((8, 16)), np.ones((8, 2)), epochs=1, verbose=0, callbacks=[cb])
>>> [round(h.history[k][-1], 2) for k in ("sparsity/a", "sparsity/b")]
[0.5, 0.5]
"""

import numpy as np
import keras

from keras_nna._checks import check_choice, check_number
from keras_nna.sparsity import masks as masks_lib
from keras_nna.sparsity.schedules import ConstantSparsity, check_sparsity, evaluate_schedule  # noqa: F401

__all__ = ["PruneCallback", "prune_weights", "compute_masks"]

_METHODS = ("percentage", "threshold")
_SCOPES = ("layer", "global")


_check_choice = check_choice  # kept for filters.py / sensitivity.py


def _check_threshold(threshold):
    return check_number("threshold", threshold, low=0.0,
                        fix="Pass the magnitude under which weights are zeroed, e.g. "
                            "threshold=0.01 (method='threshold').")


def _smallest_k_mask(magnitude, k):
    """1/0 mask zeroing exactly the `k` smallest entries (stable: earlier zeros first)."""
    flat = magnitude.reshape(-1)
    mask = np.ones(flat.shape, "float32")
    if k > 0:
        order = np.argsort(flat, kind="stable")
        mask[order[:k]] = 0.0
    return mask.reshape(magnitude.shape)


def compute_masks(kernels, sparsity=None, threshold=None, scope="layer"):
    """Computes pruning masks for a list of kernels (NumPy arrays).

    Already-zero weights count as pruned (they are the smallest), so masks only grow.

    Args:
        kernels: List of arrays.
        sparsity: Fraction to zero (percentage method), in `[0, 1)`. Defaults to `None`.
        threshold: Zero every `|w| < threshold` (threshold method). Defaults to `None`.
        scope: `"layer"` (each kernel gets exactly `round(sparsity * size)` zeros) or
            `"global"` (the smallest fraction over all kernels together). Defaults to
            `"layer"`.

    Returns:
        List of float32 0/1 masks of the kernels' shapes.

    Raises:
        ValueError: If neither or both of `sparsity` and `threshold` are given, or an
            argument is out of range.

    Example:

    >>> compute_masks([np.array([3.0, -1.0, 0.5, 2.0])], sparsity=0.5)[0]
    array([1., 0., 0., 1.], dtype=float32)
    """
    if (sparsity is None) == (threshold is None):
        raise ValueError("Pass exactly one of `sparsity` (percentage pruning) or `threshold` "
                         f"(magnitude pruning). Received: sparsity={sparsity}, threshold={threshold}.")
    _check_choice("scope", scope, _SCOPES)
    mags = [np.abs(np.asarray(k, "float32")) for k in kernels]
    if threshold is not None:
        threshold = _check_threshold(threshold)
        return [(m >= threshold).astype("float32") for m in mags]
    sparsity = check_sparsity(sparsity)
    if scope == "layer":
        return [_smallest_k_mask(m, int(round(sparsity * m.size))) for m in mags]
    flat = np.concatenate([m.reshape(-1) for m in mags]) if mags else np.zeros(0)
    mask = _smallest_k_mask(flat, int(round(sparsity * flat.size)))
    out, start = [], 0
    for m in mags:
        out.append(mask[start:start + m.size].reshape(m.shape))
        start += m.size
    return out


def prune_weights(model, sparsity=None, threshold=None, scope="layer", layers=None,
                  exclude_first=False):
    """Prunes a model's kernels once, in place (no masks are kept).

    Args:
        model: A built Keras model.
        sparsity: Fraction of weights to zero. Defaults to `None`.
        threshold: Magnitude threshold. Defaults to `None`.
        scope: `"layer"` or `"global"`. Defaults to `"layer"`.
        layers: Layer names to prune, `None` for all prunable layers. Defaults to `None`.
        exclude_first: Keep the first prunable layer dense. Defaults to `False`.

    Returns:
        Dict `{kernel name: sparsity}` after pruning.

    Raises:
        ValueError: On invalid arguments or unknown layer names.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((10,)), keras.layers.Dense(10, name="d")])
    >>> prune_weights(m, sparsity=0.3)
    {'d': 0.3}
    """
    weights = masks_lib.find_prunable_weights(model, layers, exclude_first)
    values = [keras.ops.convert_to_numpy(w.variable) for w in weights]
    for w, v, m in zip(weights, values, compute_masks(values, sparsity, threshold, scope)):
        w.variable.assign(v * m)
    return {w.name: masks_lib.weight_sparsity(w.variable) for w in weights}


class PruneCallback(keras.callbacks.Callback):
    """Prunes kernels during training following a sparsity schedule.

    Args:
        schedule: Callable ``schedule(step) -> (should_prune, sparsity)``: a
            :class:`ConstantSparsity`, :class:`PolynomialDecay` or tfmot schedule. For
            the threshold method only `should_prune` is used. Defaults to `None`:
            required for `"percentage"`, prune every step for `"threshold"`.
        method: `"percentage"` or `"threshold"`. Defaults to `"percentage"`.
        threshold: Magnitude under which weights are zeroed (threshold method).
            Defaults to `None`.
        scope: `"layer"` (per-kernel sparsity) or `"global"` (one ranking across the
            selected kernels). Defaults to `"layer"`.
        layers: Names of the layers to prune. Defaults to `None` (all prunable).
        exclude_first: Keep the first prunable layer dense. Defaults to `False`.
        granularity: `"step"` (schedule steps are optimizer iterations) or `"epoch"`
            (schedule steps are epoch indices; pruning at epoch start). Defaults to `"step"`.
        log: Add `sparsity/<layer>` entries to the epoch logs. Defaults to `True`.

    Raises:
        ValueError: On an unknown method/scope/granularity, a missing threshold or
            schedule, or (at train begin) unknown layer names.

    Example:

    >>> cb = PruneCallback(threshold=0.01, method="threshold")
    >>> cb.method, cb.granularity
    ('threshold', 'step')
    """

    def __init__(self, schedule=None, method="percentage", threshold=None, scope="layer",
                 layers=None, exclude_first=False, granularity="step", log=True):
        super().__init__()
        _check_choice("method", method, _METHODS)
        _check_choice("scope", scope, _SCOPES)
        _check_choice("granularity", granularity, ("step", "epoch"))
        if method == "percentage" and schedule is None:
            raise ValueError("method='percentage' needs a `schedule`, e.g. "
                             "keras_nna.sparsity.ConstantSparsity(0.5).")
        if method == "threshold":
            threshold = _check_threshold(threshold)
            if schedule is None:
                schedule = lambda step: (True, 0.0)  # noqa: E731
        elif threshold is not None:
            raise ValueError("`threshold` is only used with method='threshold'. Received: "
                             f"method={method!r}, threshold={threshold}.")
        if schedule is not None and not callable(schedule):
            raise TypeError("`schedule` must be callable as schedule(step) -> (should_prune, "
                            f"sparsity). Received: {schedule!r}.")
        self.schedule = schedule
        self.method = method
        self.threshold = threshold
        self.scope = scope
        self.layers = layers
        self.exclude_first = exclude_first
        self.granularity = granularity
        self.log = log
        self._weights = None
        self._last_step = None

    # -- mask management -------------------------------------------------
    def _setup(self):
        """Selects kernels and attaches masks recovered from their zero patterns."""
        target = masks_lib.training_target(self.model)
        self._weights = masks_lib.find_prunable_weights(target, self.layers, self.exclude_first)
        new = False
        for w in self._weights:
            if not _has_mask(w.variable):
                new = True
            masks_lib.attach_mask(self.model, w.variable, masks_lib.mask_from_zeros(w.variable))
        if new and getattr(self.model, "train_function", None) is not None:
            self.model.make_train_function(force=True)

    def prune(self, sparsity):
        """Prunes the selected kernels now (percentage: to `sparsity`).

        Args:
            sparsity: Target sparsity (ignored by the threshold method).
        """
        values = [keras.ops.convert_to_numpy(w.variable) for w in self._weights]
        if self.method == "threshold":
            new_masks = compute_masks(values, threshold=self.threshold)
        else:
            new_masks = compute_masks(values, sparsity=sparsity, scope=self.scope)
        for w, v, m in zip(self._weights, values, new_masks):
            m = m * (v != 0)  # once zero stays zero
            masks_lib.attach_mask(self.model, w.variable, m)

    def _maybe_prune(self, step):
        first = step if self._last_step is None else self._last_step + 1
        target = None
        for s in range(first, step + 1):  # catches steps skipped by steps_per_execution
            should, sparsity = evaluate_schedule(self.schedule, s)
            if should:
                target = sparsity
        self._last_step = step
        if target is not None:
            self.prune(target)

    # -- callback hooks --------------------------------------------------
    def on_train_begin(self, logs=None):
        self._weights = None
        self._last_step = None

    def on_epoch_begin(self, epoch, logs=None):
        # Set up here (not in on_train_begin) so BackupAndRestore has restored weights.
        if self._weights is None:
            self._setup()
        if self.granularity == "epoch":
            self._maybe_prune(int(epoch))

    def on_train_batch_begin(self, batch, logs=None):
        if self.granularity == "step":
            self._maybe_prune(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    def sparsities(self):
        """Returns `{kernel name: sparsity}` of the pruned kernels."""
        return {w.name: masks_lib.weight_sparsity(w.variable) for w in (self._weights or [])}

    def on_epoch_end(self, epoch, logs=None):
        if not self.log or logs is None or not self._weights:
            return
        total = zeros = 0
        for w in self._weights:
            value = keras.ops.convert_to_numpy(w.variable)
            logs[f"sparsity/{w.name}"] = float((value == 0).mean())
            total += value.size
            zeros += int((value == 0).sum())
        logs["sparsity/total"] = zeros / max(total, 1)


def _has_mask(variable):
    return isinstance(variable.constraint, masks_lib._MaskConstraint)
