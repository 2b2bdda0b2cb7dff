"""One harness for every custom Keras layer of keras_nna, as keras' `run_layer_test`.

`run_layer_test(layer, input_shape)` checks, in order:

1. **build**: the layer builds on `(None, *input_shape)` (optionally with the
   expected numbers of trainable / non-trainable weights);
2. **call**: an eager call and a symbolic (functional) call agree on the output
   shape, which matches `compute_output_shape`, and the outputs are finite;
3. **train step**: one `fit` step of the functional model gives a finite loss and
   changes a trainable weight (or, for a layer without trainable weights, the
   gradient with respect to its input is defined and finite);
4. **config round trip**: `serialize_keras_object(layer)` survives `json.dumps`
   / `json.loads` (JSON-native config), deserializes to the same class with the
   same config, and the rebuilt layer with the same weights gives identical
   inference outputs;
5. **.keras round trip**: the model saved to a `.keras` file loads with plain
   `keras.models.load_model` (no `custom_objects`) and gives identical outputs.

`config_round_trip(obj)` and `keras_file_round_trip(model, x)` are the last two
steps on their own, for non-layer objects (policies, regularizers, schedules) and
models (the `Distiller`).
"""

import json
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

__all__ = ["check_layer", "config_round_trip", "keras_file_round_trip", "run_layer_test"]


def _json_normal(config):
    return json.loads(json.dumps(config, sort_keys=True))


def config_round_trip(obj):
    """Serializes `obj`, checks the config is JSON-native, returns the deserialized clone.

    The clone must be of the same class and give the same (JSON-normalised) config.
    """
    config = keras.saving.serialize_keras_object(obj)
    try:
        text = json.dumps(config)
    except TypeError as err:
        raise AssertionError(f"{type(obj).__name__}.get_config() is not JSON-native: {err}")
    clone = keras.saving.deserialize_keras_object(json.loads(text))
    assert type(clone) is type(obj), f"round trip gave {type(clone).__name__}"
    assert _json_normal(keras.saving.serialize_keras_object(clone)) == _json_normal(config)
    return clone


def _outputs(model, x):
    out = model(x, training=False)
    return [keras.ops.convert_to_numpy(o) for o in tf.nest.flatten(out)]


def _assert_same_outputs(a, b, what):
    for i, (u, v) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(u, v, err_msg=f"{what}: output {i} differs")


def keras_file_round_trip(model, x):
    """Saves `model` to a `.keras` file, loads it without custom_objects, compares outputs.

    Returns:
        The loaded model.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
    _assert_same_outputs(_outputs(model, x), _outputs(loaded, x), ".keras round trip")
    return loaded


def _check_build(layer, input_shape, trainable, non_trainable):
    if not layer.built:
        layer.build((None, *input_shape))
    assert layer.built
    if trainable is not None:
        assert len(layer.trainable_weights) == trainable, layer.trainable_weights
    if non_trainable is not None:
        assert len(layer.non_trainable_weights) == non_trainable, layer.non_trainable_weights


def _check_call(layer, x, inputs, expected_output_shape):
    eager = tf.nest.flatten(layer(x, training=False))
    symbolic = tf.nest.flatten(layer(inputs))
    static = layer.compute_output_shape((None, *x.shape[1:]))
    if not (static and isinstance(static[0], (tuple, list))):
        static = [static]  # one output
    shapes = [tuple(s.shape) for s in symbolic]
    assert len(eager) == len(symbolic) == len(static)
    for e, s, st in zip(eager, shapes, static):
        assert tuple(e.shape)[1:] == s[1:] == tuple(st)[1:], (e.shape, s, st)
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(e)))
    if expected_output_shape is not None:
        assert shapes[0][1:] == tuple(expected_output_shape)
    return symbolic


def _check_train_step(model, layer, x, rng):
    if not layer.trainable_weights:
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            y = tf.nest.flatten(model(xt, training=True))[0]
            loss = tf.reduce_sum(tf.cast(y, tf.float32))
        grad = tape.gradient(loss, xt)
        assert grad is not None and np.all(np.isfinite(grad.numpy())), "no input gradient"
        return
    target = rng.normal(size=(x.shape[0], *model.outputs[0].shape[1:])).astype("float32")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, target, epochs=1, batch_size=x.shape[0], verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, b) for a, b in zip(before, model.get_weights())]
    assert any(changed), "a train step changed no weight"


def run_layer_test(layer, input_shape, *, input_data=None, batch=4, seed=0,
                   expected_output_shape=None, expected_num_trainable_weights=None,
                   expected_num_non_trainable_weights=None, run_training_check=True,
                   run_save_check=True):
    """Runs build, call, train step, config and `.keras` round trips on `layer`.

    Args:
        layer: A fresh (unbuilt or built) layer instance.
        input_shape: Shape of one sample (no batch axis).
        input_data: Optional batch to use. Defaults to uniform [0, 1) float32;
            `"pixels"` gives whole-number float32 pixel values 0..255 and
            `"uint8"` the same as uint8 (with a uint8 `keras.Input`).
        batch: Batch size of the generated data.
        seed: Seed of the generated data and targets.
        expected_output_shape: Optional output shape of one sample.
        expected_num_trainable_weights: Optional count after build.
        expected_num_non_trainable_weights: Optional count after build.
        run_training_check: Run the train step (off for non-differentiable ops).
        run_save_check: Run the `.keras` round trip.

    Returns:
        `(model, x)`: the functional model around the layer (after the train
        step) and the input batch.
    """
    rng = np.random.default_rng(seed)
    if input_data is None or isinstance(input_data, str):
        if input_data in ("uint8", "pixels"):
            x = rng.integers(0, 256, (batch, *input_shape))
            x = x.astype("uint8" if input_data == "uint8" else "float32")
        else:
            x = rng.uniform(0, 1, (batch, *input_shape)).astype("float32")
    else:
        x = np.asarray(input_data)
    _check_build(layer, input_shape, expected_num_trainable_weights,
                 expected_num_non_trainable_weights)
    inputs = keras.Input(input_shape, dtype=str(x.dtype))
    outputs = _check_call(layer, x, inputs, expected_output_shape)
    model = keras.Model(inputs, outputs[0] if len(outputs) == 1 else outputs)
    if run_training_check:
        _check_train_step(model, layer, x, rng)
    clone = config_round_trip(layer)
    clone_model = keras.Model(inputs, clone(inputs))
    clone_model.set_weights(model.get_weights())
    _assert_same_outputs(_outputs(model, x), _outputs(clone_model, x), "config round trip")
    if run_save_check:
        keras_file_round_trip(model, x)
    return model, x


def check_layer(layer, input_shape, *, batch=4, seed=0, training_kwargs=None):
    """Backward-compatible name of `run_layer_test` (build, train step, round trips)."""
    del training_kwargs  # unused, kept for callers
    return run_layer_test(layer, input_shape, batch=batch, seed=seed)
