"""Knowledge distillation: train a small (pruned, quantized) student from a teacher.

:class:`Distiller` is a ``keras.Model`` wrapping a *student* and a frozen *teacher*.
Its loss mixes the hard-label loss of the student with the Kullback–Leibler
divergence between the teacher's and the student's softened softmax (Hinton et al.,
2015)::

    loss = alpha * student_loss(y, s) + (1 - alpha) * T² * KL(softmax(t/T) ‖ softmax(s/T))
           + the student's regularization losses

Both models output logits (keras_nna classifiers do; pass
``teacher_from_logits=False`` for a teacher ending in softmax). The distiller is
compiled with ``loss=None`` (the losses are its own) and any metrics, which are
computed on the student's logits. keras_nna's callbacks (``PruneCallback``,
``FilterPruneCallback``, ``ActivationSparsityCallback``, QAT callbacks) act on
``distiller.student`` when given a distiller, so pruning, regularization and
distillation run in one ``fit``. Save and export ``distiller.student``; the logs
include ``student_loss`` and ``distillation_loss``.

Example:

>>> import numpy as np, keras
>>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
>>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
>>> d = Distiller(student, teacher, temperature=2.0, alpha=0.5)
>>> d.compile(keras.optimizers.SGD(0.1), metrics=["accuracy"])
>>> h = d.fit(np.ones((8, 4)), np.zeros(8), epochs=1, verbose=0)
>>> sorted(h.history)
['accuracy', 'distillation_loss', 'loss', 'student_loss']
"""

import keras

from keras_nna._checks import check_number

__all__ = ["Distiller"]


@keras.saving.register_keras_serializable(package="keras_nna")
class Distiller(keras.Model):
    """Trains `student` against a frozen `teacher`'s softened predictions.

    Args:
        student: The model to train (outputs logits).
        teacher: A trained model with the same output shape. It is frozen in place
            (`teacher.trainable = False`); pass a clone if you will train it again.
        temperature: Softmax temperature `T` (> 0). Defaults to `4.0`.
        alpha: Weight of the hard-label loss, in `[0, 1]`; `1 - alpha` weights the
            distillation loss. Defaults to `0.1`.
        student_loss: Hard-label loss (a `keras.losses.Loss` or identifier). Defaults
            to `None`: sparse categorical cross-entropy from logits.
        teacher_from_logits: Whether the teacher outputs logits (else probabilities).
            Defaults to `True`.
        **kwargs: Passed to `keras.Model` (e.g. `name`).

    Raises:
        TypeError: If `temperature` or `alpha` is not a number.
        ValueError: If `temperature` is not a finite number > 0, `alpha` is
            outside `[0, 1]` (or NaN), or the models' output shapes differ.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> Distiller(m, m, temperature=3.0).temperature
    3.0
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.1, student_loss=None,
                 teacher_from_logits=True, **kwargs):
        super().__init__(**kwargs)
        temperature = check_number("temperature", temperature, low=0.0, low_open=True,
                                   fix="Pass the softening temperature, e.g. temperature=4.0.")
        alpha = check_number("alpha", alpha, low=0.0, high=1.0,
                             fix="`alpha` weighs the hard-label loss; pass e.g. alpha=0.1.")
        s_shape = getattr(student, "output_shape", None)
        t_shape = getattr(teacher, "output_shape", None)
        if s_shape is not None and t_shape is not None and tuple(s_shape)[1:] != tuple(t_shape)[1:]:
            raise ValueError(f"Student and teacher must have the same output shape. Received: "
                             f"student {s_shape}, teacher {t_shape}.")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.teacher_from_logits = bool(teacher_from_logits)
        self.student_loss_fn = keras.losses.get(
            student_loss if student_loss is not None
            else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def _teacher_log_probs(self, x):
        t = self.teacher(x, training=False)
        if self.teacher_from_logits:
            return keras.ops.log_softmax(t / self.temperature, axis=-1)
        # Probabilities p: softening p^(1/T) renormalised == softmax(log p / T).
        return keras.ops.log_softmax(keras.ops.log(keras.ops.maximum(t, 1e-12)) / self.temperature, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y_pred is None:
            y_pred = self(x, training=training)
        t_log = keras.ops.stop_gradient(self._teacher_log_probs(x))
        s_log = keras.ops.log_softmax(y_pred / self.temperature, axis=-1)
        per_sample = keras.ops.sum(keras.ops.exp(t_log) * (t_log - s_log), axis=-1)
        soft = keras.ops.mean(per_sample) * (self.temperature ** 2)
        hard = self.student_loss_fn(y, y_pred, sample_weight=sample_weight) if y is not None else 0.0
        self.student_loss_tracker.update_state(hard)
        self.distillation_loss_tracker.update_state(soft)
        total = self.alpha * hard + (1.0 - self.alpha) * soft
        if self.student.losses:  # the student's weight and activity regularization
            total = total + keras.ops.sum(self.student.losses)
        return total

    @property
    def metrics(self):
        return super().metrics + [self.student_loss_tracker, self.distillation_loss_tracker]

    def get_config(self):
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "temperature": self.temperature, "alpha": self.alpha,
            "student_loss": keras.saving.serialize_keras_object(self.student_loss_fn),
            "teacher_from_logits": self.teacher_from_logits, "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("student", "teacher", "student_loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
