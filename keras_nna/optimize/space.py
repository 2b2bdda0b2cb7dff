"""Search space: the knobs a search turns, and how one candidate is trained.

A :class:`Recipe` is one candidate: the settings that are otherwise chosen by
hand. :func:`train_candidate` turns a trained float *start model* into a
quantized candidate by following a recipe, always in the same order:

1. **shrink** (``morph_strength > 0``): MorphNet's cost-weighted BatchNorm-gamma
   L1 for ``shrink_epochs``, then the filters it zeroes are removed
   (:func:`keras_nna.optimize.morphnet.shrink`);
2. **width** (``width != 1``): every hidden layer's filters times ``width``
   (:func:`keras_nna.optimize.widths.scale_widths`, function-preserving when
   widening, keeping the best filters when narrowing);
3. **activity regularization** (``hoyer > 0``): Hoyer + L1 (``l1 = hoyer / 10``)
   on every ReLU, capped at the top of the activation range so QAT does not clip
   what Hoyer favours;
4. **weight pruning** (``pruning_drop > 0``): per-layer ratios from a sensitivity
   table of the start model (:func:`keras_nna.sparsity.propose_ratios` with
   ``max_drop=pruning_drop``), kept through QAT; the first layer stays dense;
5. float fine-tune (distilled from the start model when ``distill``), then
   :func:`~keras_nna.quantization.quantize_model` with the recipe's policy
   (4-bit weights and activations, 8-bit first layer, activation range
   ``activation_max``: 4.0 is step 1/4, 2.0 step 1/8) and QAT.

A :class:`SearchSpace` says which knobs vary and over which range; a knob given
one value is fixed. ``SearchSpace.suggest(trial)`` asks an Optuna trial (or
anything with ``suggest_float`` / ``suggest_categorical``) for a recipe.

Example:

>>> space = SearchSpace(width=(0.5, 2.0), hoyer=0.0, distill=(False,))
>>> sorted(space.varying())
['activation_max', 'morph_strength', 'pruning_drop', 'width']
>>> Recipe(width=1.5).to_dict()["width"]
1.5
"""

import dataclasses
import time

import numpy as np

from keras_nna._checks import check_number

__all__ = ["Recipe", "SearchSpace", "train_candidate"]


@dataclasses.dataclass(frozen=True)
class Recipe:
    """One candidate's settings (all JSON-native; see the module guide).

    Attributes:
        width: Multiplier on every hidden layer's filters. Defaults to `1.0`.
        morph_strength: Base L1 strength of the cost-weighted BN-gamma shrink;
            `0` skips the shrink. Defaults to `0.0`.
        pruning_drop: Accuracy drop allowed per layer when choosing weight-pruning
            ratios from the sensitivity table; `0` prunes nothing. Defaults to `0.0`.
        hoyer: Hoyer strength of the activity regularizer (L1 is a tenth of it);
            `0` adds none. Defaults to `0.0`.
        activation_max: Top of the activation range of the quantization policy
            (4-bit: 4.0 is step 1/4, 2.0 step 1/8). Defaults to `4.0`.
        distill: Fine-tune and QAT distilled from the start model. Defaults to `False`.
    """

    width: float = 1.0
    morph_strength: float = 0.0
    pruning_drop: float = 0.0
    hoyer: float = 0.0
    activation_max: float = 4.0
    distill: bool = False

    def __post_init__(self):
        check_number("width", self.width, low=0.0, low_open=True)
        for name in ("morph_strength", "pruning_drop", "hoyer"):
            check_number(name, getattr(self, name), low=0.0)
        check_number("activation_max", self.activation_max, low=0.0, low_open=True)

    def to_dict(self):
        """The recipe as a JSON-native `dict` (inverse: `Recipe(**d)`)."""
        return dataclasses.asdict(self)

    def policy(self):
        """The `QuantizationPolicy` of this recipe."""
        from keras_nna.quantization import QuantizationPolicy

        return QuantizationPolicy(weight_bits=4, activation_bits=4, first_layer_weight_bits=8,
                                  activation_max=self.activation_max)


# Knob -> (Optuna kind, default range). "float" ranges are (low, high); a 0 low end of
# a log-scaled knob is reached through a separate on/off choice.
_KNOBS = {
    "width": ("log", (0.5, 1.5)),
    "morph_strength": ("log0", (1e-3, 1e-1)),
    "pruning_drop": ("float", (0.0, 0.03)),
    "hoyer": ("float", (0.0, 2.0)),
    "activation_max": ("choice", (2.0, 4.0)),
    "distill": ("choice", (False, True)),
}


@dataclasses.dataclass
class SearchSpace:
    """Which recipe knobs a search varies, and over which ranges.

    Each knob is a fixed value, a `(low, high)` range (floats) or a tuple of
    choices (`activation_max`, `distill`; a 1-tuple fixes it). Defaults vary
    every knob over the ranges that worked by hand on Fashion-MNIST AkidaNet.

    Args:
        width: Width multiplier range (log scale). Defaults to `(0.5, 1.5)`.
        morph_strength: Shrink strength range (log scale; 0 = no shrink is one
            more choice). Defaults to `(1e-3, 1e-1)`.
        pruning_drop: Per-layer accuracy drop for pruning ratios. Defaults to
            `(0.0, 0.03)`.
        hoyer: Hoyer strength range. Defaults to `(0.0, 2.0)`.
        activation_max: Choices of activation range top. Defaults to `(2.0, 4.0)`.
        distill: Choices. Defaults to `(False, True)`.

    Raises:
        ValueError: For a range with low > high or a value a recipe refuses.
    """

    width: object = (0.5, 1.5)
    morph_strength: object = (1e-3, 1e-1)
    pruning_drop: object = (0.0, 0.03)
    hoyer: object = (0.0, 2.0)
    activation_max: object = (2.0, 4.0)
    distill: object = (False, True)

    def __post_init__(self):
        for name in _KNOBS:
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                setattr(self, name, value)
            values = value if isinstance(value, tuple) else (value,)
            Recipe(**{name: values[0]}), Recipe(**{name: values[-1]})  # validates the ends
            kind = _KNOBS[name][0]
            if kind != "choice" and isinstance(value, tuple) and (
                    len(value) != 2 or value[0] > value[1]):
                raise ValueError(f"Expected `{name}` to be a value or a (low, high) range with "
                                 f"low <= high. Received: {name}={value!r}.")

    def varying(self):
        """Names of the knobs that take more than one value."""
        return [n for n in _KNOBS if isinstance(getattr(self, n), tuple)
                and len(set(getattr(self, n))) > 1]

    def suggest(self, trial):
        """Asks `trial` (Optuna-like) for a :class:`Recipe` in this space."""
        values = {}
        for name, (kind, _) in _KNOBS.items():
            value = getattr(self, name)
            if name not in self.varying():
                values[name] = value[0] if isinstance(value, tuple) else value
            elif kind == "choice":
                values[name] = trial.suggest_categorical(name, list(value))
            elif kind == "log0":
                on = trial.suggest_categorical(f"{name}_on", [False, True])
                values[name] = trial.suggest_float(name, *value, log=True) if on else 0.0
            else:
                values[name] = trial.suggest_float(name, *value, log=kind == "log")
        return Recipe(**values)

    def to_dict(self):
        """JSON-native `dict` of the knobs (tuples become lists)."""
        return {n: list(v) if isinstance(v, tuple) else v for n, v in
                dataclasses.asdict(self).items()}


def _log(verbose, start, msg):
    if verbose:
        print(f"[{time.strftime('%H:%M:%S')} +{time.time() - start:6.1f} s] {msg}", flush=True)


def _fit(model, x, y, epochs, lr, batch_size, callbacks, teacher, progress=None):
    import keras

    from keras_nna.distillation import Distiller

    if not epochs:
        return
    target = model if teacher is None else Distiller(model, teacher)
    steps = epochs * -(-len(x) // batch_size)
    target.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                   None if teacher is not None else
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks = list(callbacks)
    if progress is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: progress(
                f"epoch {epoch + 1}/{epochs}: loss {(logs or {}).get('loss', 0.0):.4f}")))
    target.fit(np.asarray(x, "float32"), y, batch_size=batch_size, epochs=epochs, verbose=0,
               callbacks=callbacks)


def _prune_callbacks(ratios):
    from keras_nna.sparsity import ConstantSparsity, PruneCallback

    by_ratio = {}
    for name, ratio in sorted(ratios.items()):
        if ratio > 0:
            by_ratio.setdefault(round(float(ratio), 4), []).append(name)
    return [PruneCallback(ConstantSparsity(r), layers=names) for r, names in by_ratio.items()]


def _teacher(start_model):
    import keras

    teacher = keras.models.clone_model(start_model)
    teacher.set_weights(start_model.get_weights())
    return teacher


def train_candidate(recipe, start_model, x, y, *, epochs=2, qat_epochs=1, sensitivity=None,  # long: one pipeline
                    profile="nna-1core", images=None, shrink_epochs=1, shrink_lr=1e-2,
                    shrink_images=12000, lr=1e-3,
                    qat_lr=5e-4,
                    batch_size=64, seed=0, teacher=None, verbose=0):
    """Trains one candidate from a trained float model, following a recipe.

    Args:
        recipe: A :class:`Recipe`.
        start_model: The trained float Keras model (functional or Sequential,
            logits out); it is not modified. It is also the distillation teacher.
        x: uint8 (or float) training images.
        y: Integer training labels.
        epochs: Float fine-tune epochs. Defaults to `2`.
        qat_epochs: Quantization-aware epochs. Defaults to `1`.
        sensitivity: A `keras_nna.sparsity.sensitivity_analysis` table of the
            start model, needed when `recipe.pruning_drop > 0`. Defaults to `None`.
        profile: Hardware profile that weights the shrink. Defaults to `"nna-1core"`.
        images: Calibration images for the shrink's event weights. Defaults to
            `None` (the first 256 training images).
        shrink_epochs: Epochs of the shrink step. Defaults to `1`.
        shrink_lr: Learning rate of the shrink step: Adam moves a gamma by about
            the learning rate per step whatever the L1 strength, so a short shrink
            needs a large one to bring gammas under the threshold. Defaults to `1e-2`.
        shrink_images: The shrink trains on the first `shrink_images` images only,
            so a recipe found on a proxy subset shrinks the same amount when it is
            refitted on all data (the shrink's strength grows with its steps).
            Defaults to `12000`.
        lr: Fine-tune learning rate (cosine decay). Defaults to `1e-3`.
        qat_lr: QAT learning rate. Defaults to `5e-4`.
        batch_size: Batch size. Defaults to `64`.
        seed: Random seed (`keras.utils.set_random_seed`). Defaults to `0`.
        teacher: The distillation teacher when `recipe.distill`. Defaults to
            `None` (the start model).
        verbose: Print a line per stage with elapsed time. Defaults to `0`.

    Returns:
        The quantized, trained Keras model.

    Raises:
        ValueError: If `recipe.pruning_drop > 0` without a sensitivity table, or
            the model cannot be shrunk or scaled (the message names the layer).
    """
    import keras

    from keras_nna import sparsity
    from keras_nna.quantization import quantize_model

    if recipe.pruning_drop > 0 and sensitivity is None:
        raise ValueError("recipe.pruning_drop > 0 needs the start model's sensitivity table: "
                         "pass sensitivity=keras_nna.sparsity.sensitivity_analysis(model, x, y).")
    start = time.time()
    keras.utils.set_random_seed(seed)
    model = _teacher(start_model)
    images = x[:256] if images is None else images
    if recipe.morph_strength > 0:
        from keras_nna.optimize.morphnet import shrink

        model = shrink(model, x[:shrink_images], y[:shrink_images], images=images, profile=profile,
                             strength=recipe.morph_strength, epochs=shrink_epochs,
                             lr=shrink_lr, batch_size=batch_size, verbose=0)
        _log(verbose, start, f"shrunk to {model.count_params():,} parameters")
    if recipe.width != 1.0:
        from keras_nna.optimize.widths import scale_widths

        model = scale_widths(model, recipe.width, seed=seed)
        _log(verbose, start, f"width x{recipe.width:.3f}: {model.count_params():,} parameters")
    policy = recipe.policy()
    if recipe.hoyer > 0:
        sparsity.add_activity_regularization(model, l1=recipe.hoyer / 10, hoyer=recipe.hoyer,
                                             max_value=policy)
    ratios = {}
    if recipe.pruning_drop > 0:
        names = {l.name for l in model.layers}
        first = sparsity.find_prunable_weights(model)[0].layer_name
        ratios = {n: r for n, r in sparsity.propose_ratios(sensitivity, recipe.pruning_drop).items()
                  if n in names and n != first}
    teacher = _teacher(start_model if teacher is None else teacher) if recipe.distill else None
    def progress(stage):
        return (lambda msg: _log(verbose, start, f"{stage} {msg}")) if verbose else None

    _fit(model, x, y, epochs, lr, batch_size, _prune_callbacks(ratios), teacher,
         progress("fine-tune"))
    _log(verbose, start, f"float fine-tune: {epochs} epochs")
    qmodel = quantize_model(model, policy)
    _fit(qmodel, x, y, qat_epochs, qat_lr, batch_size, _prune_callbacks(ratios), teacher,
         progress("QAT"))
    _log(verbose, start, f"QAT: {qat_epochs} epochs")
    return qmodel
