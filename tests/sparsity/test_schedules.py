import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_nna.sparsity import ConstantSparsity, PolynomialDecay, evaluate_schedule


def test_constant_sparsity_window_and_frequency():
    s = ConstantSparsity(0.6, begin_step=10, end_step=30, frequency=10)
    assert [s(i)[0] for i in (0, 9, 10, 15, 20, 30, 40)] == [False, False, True, False, True, True, False]
    assert s(10)[1] == 0.6


def test_polynomial_decay_values():
    s = PolynomialDecay(0.1, 0.9, begin_step=100, end_step=200, power=2, frequency=7)
    assert s(100) == (True, pytest.approx(0.1))
    assert s(150)[1] == pytest.approx(0.9 - 0.8 * 0.25)
    assert s(200) == (True, pytest.approx(0.9))  # end_step always prunes
    assert s(500)[1] == pytest.approx(0.9)
    assert s(101)[0] is False


@pytest.mark.parametrize("schedule", [ConstantSparsity(0.3, 2, 20, 3),
                                      PolynomialDecay(0.0, 0.7, 5, 50, 3, 5)], ids=["constant", "poly"])
def test_tensor_and_python_calls_agree(schedule):
    for step in range(0, 60, 1):
        p_should, p_sparsity = schedule(step)
        t_should, t_sparsity = schedule(tf.constant(step, tf.int64))
        assert bool(t_should) == p_should
        assert float(t_sparsity) == pytest.approx(p_sparsity, abs=1e-6)


@pytest.mark.parametrize("schedule", [ConstantSparsity(0.3, 2, 20, 3),
                                      PolynomialDecay(0.0, 0.7, 5, 50, 2.0, 5)], ids=["constant", "poly"])
def test_schedules_serialize(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    assert config["config"] == schedule.get_config()
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(schedule) and clone.get_config() == schedule.get_config()


def test_duck_typed_tensor_schedule():
    def tfmot_like(step):  # what tfmot's schedules return: tensors
        return tf.equal(step % 2, 0), tf.constant(0.25)

    assert evaluate_schedule(tfmot_like, 4) == (True, 0.25)
    assert evaluate_schedule(tfmot_like, 3) == (False, 0.25)


@pytest.mark.parametrize("make", [
    lambda: ConstantSparsity(1.0), lambda: ConstantSparsity(-0.1),
    lambda: PolynomialDecay(0.0, 1.2), lambda: PolynomialDecay(0.0, 0.5, begin_step=10, end_step=10),
    lambda: ConstantSparsity(0.5, frequency=0), lambda: ConstantSparsity(0.5, begin_step=5, end_step=2),
], ids=["one", "negative", "final>1", "empty-ramp", "frequency0", "end<begin"])
def test_invalid_schedules(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("bad", [lambda s: 0.5, lambda s: (True, 1.5), "not callable"],
                         ids=["not-pair", "sparsity>1", "not-callable"])
def test_evaluate_schedule_rejects(bad):
    with pytest.raises((TypeError, ValueError)):
        evaluate_schedule(bad, 0)


def test_sparsity_error_message_says_how_to_fix():
    with pytest.raises(ValueError, match=r"\[0, 1\).*Received: target_sparsity=1.0"):
        ConstantSparsity(1.0)
    assert np.isclose(ConstantSparsity(0.0)(0)[1], 0.0)
