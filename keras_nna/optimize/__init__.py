"""Optimize to a budget: the best accuracy within X µJ (or µs, events, bytes) on a profile.

Tell keras_nna what a model may cost per inference on a hardware profile and
let it search, instead of hand-tuning recipes. Costs always come from the real
pipeline (quantize → export → emulator on calibration images → cost model), so
activation sparsity (events) counts, which FLOP- or size-based tools cannot see.

Budget
    :class:`Budget` (profile + limits on ``energy_uj``, ``time_us``, ``events``,
    ``dram_bytes``, ``program_bytes``), :func:`measure_cost`.
MorphNet shrink/expand
    :func:`event_cost_weights` (what a channel costs in events on the profile),
    :func:`shrink` (cost-weighted BN-gamma L1, then filter surgery),
    :func:`scale_widths` (all widths × m; function-preserving when widening),
    :func:`expand_to_budget` (largest m within the budget, no training),
    :func:`morph` (shrink → expand → distilled fine-tune, iterable).
Mixed precision
    :func:`allocate_bits` (per-layer weight/activation bits from a measured
    sensitivity table and the cost model, solved exactly as a multiple-choice
    knapsack) → :class:`BitAllocation` with a ``QuantizationPolicy``.
Search (needs the ``[search]`` extra: Optuna)
    :class:`SearchSpace` of :class:`Recipe` knobs (width, shrink strength,
    per-layer pruning from a sensitivity table, Hoyer strength, activation
    step, distillation), :func:`optimize` (multi-objective Optuna study,
    accuracy vs a cost, the budget as a constraint, storage shared by
    workers), :class:`OptimizeResult` (Pareto front, ``best_within``, table,
    JSON, plot), :func:`refit` (train the chosen point fully).

A search in a few lines::

    from keras_nna.optimize import Budget, optimize, refit

    budget = Budget("nna-1core", events=2500)
    result = optimize(float_model, (x, y, x_val, y_val), budget, n_trials=20,
                      train_images=12000, storage="search/study.db", out_dir="search")
    print(result.summary())
    final = refit(result.best_within(), float_model, (x, y, x_val, y_val), budget)

The same from the shell, on as many workers as you like (they share the study)::

    keras-nna optimize model.keras --data fashion_mnist --budget events=2500 \\
        --trials 20 --storage search/study.db --study s1 --out search

See ``docs/optimize.md`` and ``tutorials/meet_a_budget.py``.

Example:

>>> from keras_nna.optimize import Budget
>>> Budget("nna-1core", energy_uj=1.5).describe()
'energy ≤ 1.5 µJ on nna-1core'
"""

from keras_nna import _lazy

_ATTRIBUTES = {
    "budget": ["Budget", "COSTS", "CandidateCost", "measure_cost"],
    "space": ["Recipe", "SearchSpace", "train_candidate"],
    "result": ["OptimizeResult", "Point"],
    "search": ["load_result", "optimize", "refit"],
    "study": ["open_storage", "run_study", "trial_records", "worker_id"],
    "widths": ["expand_to_budget", "scale_widths"],
    "morphnet": ["MorphResult", "event_cost_weights", "morph", "shrink"],
    "bits": ["BitAllocation", "allocate_bits"],
    "knapsack": ["InfeasibleBudget"],
}

__all__ = sorted(name for names in _ATTRIBUTES.values() for name in names)

# Submodules are imported on first use: `import keras_nna.optimize` loads neither
# TensorFlow nor Optuna.
__getattr__, __dir__ = _lazy(__name__, {name: module for module, names in _ATTRIBUTES.items()
                                        for name in names})
