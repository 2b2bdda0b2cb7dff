"""Sparsity schedules: when to prune and to which sparsity.

A sparsity schedule is any callable ``schedule(step) -> (should_prune, sparsity)``
where ``step`` is a ``tf.int64`` scalar tensor (the optimizer's iteration count,
or the epoch index for epoch-granular pruning) and the outputs are a boolean and
a float in ``[0, 1)`` (Python values or scalar tensors). This is the interface of
``tensorflow_model_optimization``'s pruning schedules, so a tfmot schedule can be
passed to :class:`keras_nna.sparsity.PruneCallback` as it is (duck typing: keras_nna
never imports tfmot, because importing it switches ``tf.keras`` to legacy Keras).

keras_nna ships its own two schedules, registered Keras-serializable objects:

- :class:`ConstantSparsity`: one target sparsity, pruned every ``frequency`` steps
  from ``begin_step`` to ``end_step``.
- :class:`PolynomialDecay`: sparsity ramps from ``initial_sparsity`` to
  ``final_sparsity`` between ``begin_step`` and ``end_step`` following
  ``final + (initial - final) * (1 - t) ** power`` (Zhu & Gupta, 2017).

``end_step=-1`` means "never stop". Both return Python values when called with a
Python int, and TensorFlow scalars when called with a tensor (graph-friendly).

Example:

>>> s = PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100, frequency=10)
>>> prune, sparsity = evaluate_schedule(s, 50)
>>> prune, round(sparsity, 3)
(True, 0.7)
"""

import numpy as np
import keras
import tensorflow as tf

from keras_nna._checks import check_number

__all__ = ["ConstantSparsity", "PolynomialDecay", "evaluate_schedule", "check_sparsity"]


def check_sparsity(value, name="sparsity"):
    """Validates a sparsity value.

    Args:
        value: Number to check.
        name: Name used in the error message. Defaults to `"sparsity"`.

    Returns:
        The value as a Python float.

    Raises:
        TypeError: If `value` is not a number.
        ValueError: If `value` is NaN or not in `[0, 1)`.

    Example:

    >>> check_sparsity(0.5)
    0.5
    """
    return check_number(
        name, value, low=0.0, high=1.0, high_open=True,
        fix=f"`{name}` is the fraction of weights set to zero, in [0, 1) (1 would remove every "
            f"weight); pass e.g. {name}=0.5.")


def _is_tensor(x):
    return tf.is_tensor(x)


def _in_window(step, begin_step, end_step, frequency):
    """Whether `step` is a pruning step (works for Python ints and tensors)."""
    if _is_tensor(step):
        step = tf.cast(step, tf.int64)
        ok = tf.logical_and(step >= begin_step, tf.equal(tf.math.floormod(step - begin_step, frequency), 0))
        if end_step >= 0:
            ok = tf.logical_and(ok, step <= end_step)
        return ok
    step = int(step)
    ok = step >= begin_step and (step - begin_step) % frequency == 0
    return bool(ok and (end_step < 0 or step <= end_step))


class _Schedule:
    """Shared validation of the step window."""

    def _check_window(self, begin_step, end_step, frequency):
        begin_step = check_number("begin_step", begin_step, low=0, integer=True)
        end_step = check_number("end_step", end_step, low=-1, integer=True)
        frequency = check_number("frequency", frequency, low=1, integer=True)
        if end_step != -1 and end_step < begin_step:
            raise ValueError(
                "`end_step` must be -1 (never stop) or >= `begin_step`. Received: "
                f"begin_step={begin_step}, end_step={end_step}.")
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.frequency = int(frequency)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_nna")
class ConstantSparsity(_Schedule):
    """Prunes to a constant sparsity every `frequency` steps.

    Args:
        target_sparsity: Fraction of weights to zero, in `[0, 1)`.
        begin_step: First pruning step. Defaults to `0`.
        end_step: Last pruning step, `-1` for no end. Defaults to `-1`.
        frequency: Prune every `frequency` steps. Defaults to `100`.

    Raises:
        ValueError: If the sparsity or the step window is invalid.

    Example:

    >>> ConstantSparsity(0.5, begin_step=10, frequency=5)(20)
    (True, 0.5)
    >>> ConstantSparsity(0.5, begin_step=10, frequency=5)(21)
    (False, 0.5)
    """

    def __init__(self, target_sparsity, begin_step=0, end_step=-1, frequency=100):
        self.target_sparsity = check_sparsity(target_sparsity, "target_sparsity")
        self._check_window(begin_step, end_step, frequency)

    def __call__(self, step):
        should = _in_window(step, self.begin_step, self.end_step, self.frequency)
        if _is_tensor(step):
            return should, tf.constant(self.target_sparsity, tf.float32)
        return should, self.target_sparsity

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, "begin_step": self.begin_step,
                "end_step": self.end_step, "frequency": self.frequency}


@keras.saving.register_keras_serializable(package="keras_nna")
class PolynomialDecay(_Schedule):
    """Ramps sparsity polynomially from `initial_sparsity` to `final_sparsity`.

    ``sparsity(step) = final + (initial - final) * (1 - t) ** power`` with
    ``t = clip((step - begin_step) / (end_step - begin_step), 0, 1)``. Pruning
    happens every `frequency` steps inside ``[begin_step, end_step]``, and at
    ``end_step`` itself so the final sparsity is always reached.

    Args:
        initial_sparsity: Sparsity at `begin_step`, in `[0, 1)`.
        final_sparsity: Sparsity at `end_step`, in `[0, 1)`.
        begin_step: First pruning step. Defaults to `0`.
        end_step: Step at which `final_sparsity` is reached (must be > `begin_step`).
            Defaults to `1000`.
        power: Exponent of the ramp. Defaults to `3`.
        frequency: Prune every `frequency` steps. Defaults to `100`.

    Raises:
        ValueError: If a sparsity or the step window is invalid.

    Example:

    >>> s = PolynomialDecay(0.0, 0.5, begin_step=0, end_step=10, power=1, frequency=1)
    >>> s(5)
    (True, 0.25)
    """

    def __init__(self, initial_sparsity, final_sparsity, begin_step=0, end_step=1000,
                 power=3, frequency=100):
        self.initial_sparsity = check_sparsity(initial_sparsity, "initial_sparsity")
        self.final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
        self._check_window(begin_step, end_step, frequency)
        if self.end_step <= self.begin_step:
            raise ValueError(
                "PolynomialDecay needs `end_step` > `begin_step` (the ramp needs a length). "
                f"Received: begin_step={begin_step}, end_step={end_step}.")
        self.power = check_number("power", power, low=0.0, low_open=True,
                                  fix="Pass the ramp's exponent, e.g. power=3.")

    def __call__(self, step):
        span = float(self.end_step - self.begin_step)
        if _is_tensor(step):
            s = tf.cast(step, tf.int64)
            t = tf.clip_by_value(tf.cast(s - self.begin_step, tf.float32) / span, 0.0, 1.0)
            ramp = (1.0 - t) ** self.power
            sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * ramp
            should = tf.logical_or(_in_window(s, self.begin_step, self.end_step, self.frequency),
                                   tf.equal(s, self.end_step))
            return should, tf.cast(sparsity, tf.float32)
        step = int(step)
        t = min(max((step - self.begin_step) / span, 0.0), 1.0)
        ramp = (1.0 - t) ** self.power
        sparsity = self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * ramp
        should = (_in_window(step, self.begin_step, self.end_step, self.frequency)
                  or step == self.end_step)
        return should, float(sparsity)

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "begin_step": self.begin_step, "end_step": self.end_step, "power": self.power,
                "frequency": self.frequency}


def evaluate_schedule(schedule, step):
    """Calls any schedule (keras_nna, tfmot or a plain function) and returns Python values.

    The schedule is called with a ``tf.int64`` scalar tensor, as tfmot schedules expect;
    tensor outputs are converted to Python.

    Args:
        schedule: Callable ``schedule(step) -> (should_prune, sparsity)``.
        step: Integer step.

    Returns:
        Tuple ``(should_prune: bool, sparsity: float)``.

    Raises:
        TypeError: If `schedule` is not callable or does not return a pair.
        ValueError: If the returned sparsity is outside `[0, 1)`.

    Example:

    >>> evaluate_schedule(lambda step: (True, 0.25), 3)
    (True, 0.25)
    """
    if not callable(schedule):
        raise TypeError(
            "A sparsity schedule must be callable as `schedule(step) -> (should_prune, sparsity)` "
            f"(e.g. keras_nna.sparsity.ConstantSparsity(0.5)). Received: {schedule!r}.")
    out = schedule(tf.constant(int(step), tf.int64))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(
            "A sparsity schedule must return a pair `(should_prune, sparsity)`. "
            f"Received: {out!r} from {schedule!r}.")
    should, sparsity = out
    should = bool(np.asarray(should))
    sparsity = check_sparsity(np.asarray(sparsity), "sparsity returned by the schedule")
    return should, sparsity
