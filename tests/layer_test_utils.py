"""One small helper for layer tests: build, one train step, config round trip."""

import keras
import numpy as np


def check_layer(layer, input_shape, *, batch=4, seed=0, training_kwargs=None):
    """Builds `layer` in a model, runs a train step and a config round trip.

    Returns the model (inputs → layer) after one `fit` step so callers can
    make further assertions. Fails if the step produces NaNs, if trainable
    weights do not change, or if `from_config(get_config())` does not give
    the same outputs in inference.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (batch, *input_shape)).astype("float32")
    inputs = keras.Input(input_shape)
    outputs = layer(inputs)
    model = keras.Model(inputs, outputs)
    target = rng.normal(size=(batch, *outputs.shape[1:])).astype("float32")
    model.compile(keras.optimizers.SGD(0.1), "mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, target, epochs=1, batch_size=batch, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = model.get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before, after)]
    assert any(changed), "a train step changed no weight"
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    clone_model = keras.Model(inputs, clone(inputs))
    clone_model.set_weights(model.get_weights())
    np.testing.assert_array_equal(model.predict(x, verbose=0), clone_model.predict(x, verbose=0))
    return model, x
