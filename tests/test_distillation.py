import keras
import numpy as np
import pytest

from keras_nna.distillation import Distiller
from keras_nna.sparsity import ConstantSparsity, PruneCallback, find_prunable_weights
from tests.sparsity.helpers import compile_cnn, digits, small_cnn


@pytest.fixture(scope="module")
def teacher():
    x, y, _, _ = digits()
    model = compile_cnn(small_cnn(filters=(16, 32, 32), seed=1, name="teacher"))
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    return model


def _agreement(a, b, x):
    return float((a.predict(x, verbose=0).argmax(-1) == b.predict(x, verbose=0).argmax(-1)).mean())


def test_distiller_trains_student_with_pruning(teacher, tmp_path):
    x, y, x_te, y_te = digits()
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = small_cnn(filters=(8, 16, 16), seed=2, name="student")
    distiller = Distiller(student, teacher, temperature=4.0, alpha=0.2)
    distiller.compile(keras.optimizers.Adam(3e-3), metrics=["accuracy"])
    cb = PruneCallback(ConstantSparsity(0.5, begin_step=0, end_step=0, frequency=1))
    h = distiller.fit(x, y, epochs=6, batch_size=64, verbose=0, callbacks=[cb])
    assert h.history["distillation_loss"][-1] < h.history["distillation_loss"][0]
    assert {"student_loss", "accuracy", "sparsity/conv1"} <= set(h.history)
    # Only the student is pruned, the teacher is frozen and untouched.
    for w in find_prunable_weights(student):
        assert (w.variable.numpy() == 0).mean() == pytest.approx(0.5, abs=0.01)
    for a, b in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _agreement(student, teacher, x_te) > 0.6  # chance is 0.1
    # The student is what gets saved.
    path = str(tmp_path / "student.keras")
    distiller.student.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x_te[:8], verbose=0), student.predict(x_te[:8], verbose=0),
                               rtol=1e-5, atol=1e-5)


def test_loss_is_the_documented_mix(teacher):
    x, y, _, _ = digits()
    student = small_cnn(filters=(4, 8, 8), seed=3)
    d = Distiller(student, teacher, temperature=2.0, alpha=0.3)
    s, t = student(x[:16]), teacher(x[:16])
    t_p = keras.ops.softmax(t / 2.0).numpy()
    s_logp = keras.ops.log_softmax(s / 2.0).numpy()
    kl = (t_p * (np.log(t_p) - s_logp)).sum(-1).mean() * 4.0
    hard = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y[:16], s).numpy()
    loss = d.compute_loss(x=x[:16], y=y[:16], y_pred=s)
    assert float(loss) == pytest.approx(0.3 * hard + 0.7 * kl, rel=1e-4)


def test_config_round_trip_and_errors(teacher):
    student = small_cnn(filters=(4, 8, 8), seed=3, name="s2")
    d = Distiller(student, teacher, temperature=3.0, alpha=0.5)
    clone = Distiller.from_config(d.get_config())
    assert (clone.temperature, clone.alpha) == (3.0, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="alpha"):
        Distiller(student, teacher, alpha=1.5)
    other = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="output shape"):
        Distiller(other, teacher)
