"""Small models and data shared by the sparsity tests (fast: sklearn digits, 8×8)."""

import functools

import keras
import numpy as np


@functools.lru_cache(maxsize=1)
def digits():
    """Returns (x_train, y_train, x_test, y_test): 8×8×1 float32 images (0–16), int labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.images.astype("float32")[..., None]
    x_tr, x_te, y_tr, y_te = train_test_split(x, d.target, test_size=0.2, random_state=0)
    return x_tr, y_tr, x_te, y_te


def small_cnn(filters=(8, 16, 16), functional=True, dense_head="gap", seed=0, name="cnn"):
    """Rescaling → [Conv2D(no bias) → BN(0.9) → ReLU] × n → GAP|Flatten → Dense(10)."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Rescaling(1 / 16, name="rescale")]
    for i, f in enumerate(filters):
        layers += [keras.layers.Conv2D(f, 3, strides=2 if i == 2 else 1, padding="same",
                                       use_bias=False, name=f"conv{i}"),
                   keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}"),
                   keras.layers.ReLU(name=f"relu{i}")]
    layers.append(keras.layers.GlobalAveragePooling2D(name="gap") if dense_head == "gap"
                  else keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(10, name="logits"))
    if not functional:
        return keras.Sequential([keras.Input((8, 8, 1))] + layers, name=name)
    inp = keras.Input((8, 8, 1), name="image")
    x = inp
    for layer in layers:
        x = layer(x)
    return keras.Model(inp, x, name=name)


def compile_cnn(model, lr=3e-3, **kwargs):
    model.compile(keras.optimizers.Adam(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], **kwargs)
    return model


def randomize_bn(model, seed=1):
    """Gives every BatchNormalization non-trivial gamma/beta/moving statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)])
    return model
