"""Search: the best accuracy within a budget, found by Optuna.

:func:`optimize` runs a multi-objective Optuna study (accuracy up, one cost
down) over a :class:`~keras_nna.optimize.space.SearchSpace` of recipes, with the
budget as a constraint: a candidate over any limit is infeasible. Every trial
trains a candidate from the start model on a proxy (a data subset, few epochs),
exports it, runs the program on the emulator over the validation images, checks
it bit-exact against Keras and prices it on the budget's profile; its quantized
model and program are saved under ``out_dir/trial_NNNN/``. :func:`refit` then
trains a chosen recipe fully.

Several processes (on one machine or many) can share one study: give each the
same ``storage`` (a SQLite file, a journal file or a database URL; see
:mod:`keras_nna.optimize.study`) and ``study_name``; ``n_trials`` counts the
trials of all of them together.

Example (a few minutes; see ``tutorials/meet_a_budget.py``)::

    from keras_nna.optimize import Budget, SearchSpace, optimize, refit

    budget = Budget("nna-1core", events=2500)
    result = optimize(float_model, (x, y, x_val, y_val), budget, n_trials=20,
                      storage="study.db", out_dir="search")
    print(result.table())
    best = result.best_within()          # None when no candidate met the budget
    final = refit(best, float_model, (x, y, x_val, y_val), budget, epochs=10, qat_epochs=2)
"""

import json
import os
import time

import numpy as np

from keras_nna._checks import check_number
from keras_nna.optimize.budget import COSTS, Budget, measure_cost
from keras_nna.optimize.result import OptimizeResult, Point
from keras_nna.optimize.space import Recipe, SearchSpace, train_candidate

__all__ = ["load_result", "optimize", "refit"]


def _check_data(data):
    try:
        x, y, x_val, y_val = data
    except (TypeError, ValueError):
        raise ValueError("Expected `data` as (x_train, y_train, x_val, y_val): uint8 images "
                         f"[N, H, W, C] and integer labels. Received: {type(data).__name__}."
                         ) from None
    for name, images, labels in (("train", x, y), ("validation", x_val, y_val)):
        if np.ndim(images) != 4 or len(images) != len(labels) or not len(images):
            raise ValueError(f"Expected {name} images [N, H, W, C] with one label each. Received "
                             f"images of shape {np.shape(images)} and {len(labels)} labels.")
    return x, y, x_val, y_val


def _objective_name(budget, objective):
    if objective is None:
        objective = next(iter(budget.limits), "energy_uj")
    if objective not in COSTS:
        raise ValueError(f"Unknown objective {objective!r}. Expected one of {', '.join(COSTS)}.")
    return objective


def _save(qmodel, program, folder):
    os.makedirs(folder, exist_ok=True)
    model_path = os.path.join(folder, "model.keras")
    program_path = os.path.join(folder, "program.nnab")
    qmodel.save(model_path)
    with open(program_path, "wb") as f:
        f.write(program.to_bytes())
    return model_path, program_path


def _evaluate(recipe, model, data, budget, folder, **train_kwargs):
    """Trains, exports, emulates and prices one recipe; returns a :class:`Point`."""
    x, y, x_val, y_val = data
    start = time.time()
    qmodel = train_candidate(recipe, model, x, y, profile=budget.profile, **train_kwargs)
    cost = measure_cost(qmodel, x_val, y_val, budget.profile)
    if not cost.bit_exact:
        raise RuntimeError("the emulator's output differs from the Keras quantized model "
                           "(bit-exact contract broken); the candidate is not reported")
    model_path, program_path = _save(qmodel, cost.program, folder)
    return Point(recipe=recipe.to_dict(), accuracy=float(cost.accuracy), costs=cost.costs,
                 feasible=budget.feasible(cost.costs), bit_exact=True,
                 params=int(qmodel.count_params()), model_path=model_path,
                 program_path=program_path, seconds=round(time.time() - start, 1))


def _sensitivity(model, x_val, y_val, space, out_dir):
    """The start model's per-layer weight-pruning sensitivity (cached in `out_dir`)."""
    if "pruning_drop" not in space.varying() and not space.pruning_drop:
        return None
    path = os.path.join(out_dir, "sensitivity.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    from keras_nna.sparsity import sensitivity_analysis

    table = sensitivity_analysis(model, np.asarray(x_val[:500], "float32"), y_val[:500])
    table = json.loads(json.dumps(table, default=float))
    os.makedirs(out_dir, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(table, f)
    os.replace(tmp, path)  # atomic: workers sharing out_dir never read half a file
    return table


def optimize(model, data, budget, *, n_trials=20, space=None, objective=None, epochs=2,  # long: argument checks + study
             qat_epochs=1, train_images=None, val_images=1000, storage=None,
             study_name="keras_nna", out_dir="optimize", seed=0, timeout=None, verbose=1):
    """Searches recipes for the best accuracy within a budget (Optuna, multi-objective).

    Args:
        model: The trained float Keras model to start every candidate from (and
            the distillation teacher). Functional or Sequential, logits out.
        data: `(x_train, y_train, x_val, y_val)`, uint8 images and integer labels.
        budget: A :class:`~keras_nna.optimize.Budget` (its profile prices every
            candidate; its limits are the constraints; no limit maps the whole
            trade-off line).
        n_trials: Trials in the study, counted over every worker sharing it.
            Defaults to `20`.
        space: A :class:`~keras_nna.optimize.SearchSpace`. Defaults to `None`
            (every knob over its default range).
        objective: The cost minimised next to accuracy. Defaults to `None`: the
            budget's first limited cost, else `"energy_uj"`.
        epochs: Float fine-tune epochs per trial (a proxy). Defaults to `2`.
        qat_epochs: QAT epochs per trial. Defaults to `1`.
        train_images: Train each trial on the first `train_images` images only.
            Defaults to `None` (all).
        val_images: Images for accuracy and cost (emulator). Defaults to `1000`.
        storage: Study storage shared by workers: `None` (in memory), a SQLite
            file (`study.db`), a journal file (`study.log`) or a database URL.
            Defaults to `None`.
        study_name: Name of the study in the storage. Defaults to `"keras_nna"`.
        out_dir: Folder for every trial's model and program and the result.
            Defaults to `"optimize"`.
        seed: Sampler and training seed. Defaults to `0`.
        timeout: Stop this worker after this many seconds. Defaults to `None`.
        verbose: Print a line per trial. Defaults to `1`.

    Returns:
        An :class:`~keras_nna.optimize.OptimizeResult` over every finished trial
        of the study (also written to `out_dir/result.json`).

    Raises:
        TypeError: If `budget` is not a `Budget`.
        ValueError: For malformed data, an unknown objective, bad counts, a
            storage that cannot be opened, or a space that varies the width or
            the shrink of a model surgery cannot change (the layer is named).
        ImportError: If Optuna is not installed (`pip install "keras_nna[search]"`).
    """
    from keras_nna.optimize.study import run_study

    if not isinstance(budget, Budget):
        raise TypeError(f"Expected `budget` to be a keras_nna.optimize.Budget, e.g. "
                        f"Budget('nna-1core', energy_uj=1.5). Received: {budget!r}.")
    x, y, x_val, y_val = _check_data(data)
    n_trials = check_number("n_trials", n_trials, low=1, integer=True)
    val_images = check_number("val_images", val_images, low=1, integer=True)
    if train_images is not None:
        train_images = check_number("train_images", train_images, low=1, integer=True)
        x, y = x[:train_images], y[:train_images]
    x_val, y_val = x_val[:val_images], y_val[:val_images]
    space = SearchSpace() if space is None else space
    objective = _objective_name(budget, objective)
    if {"width", "morph_strength"} & set(space.varying()) or space.width != 1.0:
        from keras_nna.optimize.widths import scalable_groups

        scalable_groups(model, "scale or shrink")  # names the blocking layer before any trial
    os.makedirs(out_dir, exist_ok=True)
    sensitivity = _sensitivity(model, x_val, y_val, space, out_dir)

    def trial_fn(trial):
        recipe = space.suggest(trial)
        point = _evaluate(recipe, model, (x, y, x_val, y_val), budget,
                          os.path.join(out_dir, f"trial_{trial.number:04d}"), epochs=epochs,
                          qat_epochs=qat_epochs, sensitivity=sensitivity, seed=seed)
        return {"values": [point.accuracy, point.costs[objective]],
                "constraints": list(budget.violations(point.costs).values()),
                "attrs": point.to_attrs()}

    study = run_study(trial_fn, metric_names=["accuracy", objective],
                      directions=["maximize", "minimize"], n_trials=n_trials, storage=storage,
                      study_name=study_name, seed=seed, timeout=timeout,
                      log=print if verbose else (lambda *a, **k: None))
    result = OptimizeResult.from_study(study, budget, objective, out_dir=out_dir)
    result.save(os.path.join(out_dir, "result.json"))
    return result


def load_result(storage, study_name, budget, objective=None, out_dir=""):
    """Reads every finished trial of a shared study into an `OptimizeResult`.

    Use it once all workers are done (a worker's own `optimize` returns the
    trials finished when it stopped).

    Args:
        storage: The study's storage (as for :func:`optimize`).
        study_name: The study's name.
        budget: The search's :class:`~keras_nna.optimize.Budget`.
        objective: The minimised cost. Defaults to `None` (as in `optimize`).
        out_dir: Where the trials were saved. Defaults to `""`.

    Returns:
        An :class:`~keras_nna.optimize.OptimizeResult`.

    Raises:
        ValueError: If the storage cannot be opened or holds no such study.
    """
    import optuna

    from keras_nna.optimize.study import open_storage

    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise ValueError(f"No study named {study_name!r} in the storage {storage!r}. Check "
                         "--study / study_name.") from None
    return OptimizeResult.from_study(study, budget, _objective_name(budget, objective), out_dir)


def refit(point, model, data, budget, *, epochs=10, qat_epochs=2, out_dir="optimize/final",
          seed=0, verbose=1, **train_kwargs):
    """Trains a chosen point's recipe fully (all data, more epochs) and measures it.

    Args:
        point: A :class:`~keras_nna.optimize.Point` (e.g. `result.best_within()`)
            or a :class:`~keras_nna.optimize.Recipe`.
        model: The same trained float start model the search used.
        data: `(x_train, y_train, x_val, y_val)`; accuracy and cost are measured
            on all validation images.
        budget: The :class:`~keras_nna.optimize.Budget` (profile and limits).
        epochs: Float fine-tune epochs. Defaults to `10`.
        qat_epochs: QAT epochs. Defaults to `2`.
        out_dir: Where the model and program are saved. Defaults to `"optimize/final"`.
        seed: Training seed. Defaults to `0`.
        verbose: Print a line per stage. Defaults to `1`.
        **train_kwargs: More arguments of
            :func:`~keras_nna.optimize.space.train_candidate` (e.g. `sensitivity`).

    Returns:
        A :class:`~keras_nna.optimize.Point` (its `feasible` says whether the
        fully trained model still meets the budget).

    Raises:
        ValueError: If `point` is `None` (no candidate met the budget) or malformed data.
    """
    if point is None:
        raise ValueError("No point to refit: no candidate met the budget. Loosen the budget, "
                         "widen the search space or run more trials (result.cheapest() shows "
                         "the cheapest candidate found).")
    recipe = point if isinstance(point, Recipe) else Recipe(**point.recipe)
    if recipe.pruning_drop > 0 and "sensitivity" not in train_kwargs:
        x_val, y_val = _check_data(data)[2:]
        train_kwargs["sensitivity"] = _sensitivity(model, x_val, y_val,
                                                   SearchSpace(pruning_drop=recipe.pruning_drop),
                                                   os.path.dirname(out_dir) or ".")
    return _evaluate(recipe, model, _check_data(data), budget, out_dir, epochs=epochs,
                     qat_epochs=qat_epochs, seed=seed, verbose=verbose, **train_kwargs)
