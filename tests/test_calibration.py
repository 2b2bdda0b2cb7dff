"""activation_step_sweep against references: the policy's step, the emulator's events, numpy."""

import keras
import numpy as np
import pytest

from keras_nna.calibration import activation_step_sweep, format_step_sweep
from keras_nna.deployment import deploy
from keras_nna.quantization import QuantizationPolicy, quantize_model


@pytest.fixture(scope="module")
def model_and_data():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input((10, 10, 1)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(6, 3, name="conv"), keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(name="relu"), keras.layers.Flatten(), keras.layers.Dense(4, name="out")])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (48, 10, 10, 1)).astype("uint8")
    y = rng.integers(0, 4, 48)
    return model, x, y


def test_rows_match_policy_emulator_and_numpy(model_and_data):
    model, x, y = model_and_data
    rows = activation_step_sweep(model, x, y, activation_max=(4.0, 2.0, 1.0), max_images=32)
    relu = keras.Model(model.inputs, model.get_layer("relu").output)
    acts = relu.predict(x[:32].astype("float32"), verbose=0).astype(np.float64).ravel()
    for row, amax in zip(rows, (4.0, 2.0, 1.0)):
        policy = QuantizationPolicy(activation_max=amax)
        step = policy.resolve("any")["activation_step"]
        assert row["step"] == step
        qmodel = quantize_model(model, policy)
        result = deploy(qmodel, x[:32], profile=None)
        assert result.bit_exact
        assert row["events_per_image"] == pytest.approx(result.events_per_image, abs=0)
        logits = qmodel.predict(x.astype("float32"), verbose=0)
        assert row["accuracy"] == np.mean(logits.argmax(-1) == y)
        top = policy.activation_top("any")
        expected = np.mean((np.clip(np.floor(acts / step + 0.5) * step, 0, top) - acts) ** 2)
        assert row["relu_mse"] == pytest.approx(expected, rel=1e-12)
    # A coarser step rounds more activations to zero: never more events.
    assert rows[0]["events_per_image"] <= rows[2]["events_per_image"]
    assert "| 2.0 | 0.125 |" in format_step_sweep(rows)


def test_without_labels_accuracy_is_none(model_and_data):
    model, x, _ = model_and_data
    (row,) = activation_step_sweep(model, x[:8], activation_max=4.0)
    assert row["accuracy"] is None and row["events_per_image"] > 0


@pytest.mark.parametrize("amax, match", [
    ((), "at least one"), ((4.0, -1.0), "finite numbers > 0"), ((float("nan"),), "finite"),
    ((float("inf"),), "finite"), (("4",), "finite"), ((True,), "finite")],
    ids=["empty", "negative", "nan", "inf", "string", "bool"])
def test_bad_candidates_are_named(model_and_data, amax, match):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match=match):
        activation_step_sweep(model, x, y, activation_max=amax)


def test_label_count_mismatch(model_and_data):
    model, x, y = model_and_data
    with pytest.raises(ValueError, match="one label per image"):
        activation_step_sweep(model, x, y[:5])
