"""Choose the activation step of a model before quantization-aware training.

An activation of `b` bits is a code `q ∈ [0, 2^b − 1]` times a power-of-two
step (docs/quantization.md); `QuantizationPolicy(activation_max=...)` sets it.
The step decides what survives quantization: a coarse step rounds small
activations to zero (fewer events, less accuracy), a fine one clips large
activations at the top of the range. Which one suits a model is measured, not
guessed: networks trained for sparse activations keep their information in many
small values and often want the finer step, dense ones the coarser.

:func:`activation_step_sweep` quantizes a trained float model *without
training* for each candidate `activation_max`, and reports per candidate the
step, the accuracy, the events per image (as the emulator counts them) and the
mean squared error of the model's ReLU outputs against their quantized values.
Pick the row you want and pass its `activation_max` to `quantize_model` before
QAT. The MSE is only a hint: on a sparse Fashion-MNIST AkidaNet it preferred the
step that lost 4 points more accuracy without QAT (experiments/
eliminate_then_reduce.md), so rank by accuracy.

Example:

>>> import keras, numpy as np
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
...     keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.Flatten(),
...     keras.layers.Dense(3)])
>>> x = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1)).astype("uint8")
>>> rows = activation_step_sweep(model, x, np.zeros(32, int), activation_max=(4.0, 2.0))
>>> [(r["activation_max"], r["step"]) for r in rows]
[(4.0, 0.25), (2.0, 0.125)]
>>> sorted(rows[0])
['accuracy', 'activation_max', 'events_per_image', 'relu_mse', 'step']
"""

import math

import numpy as np

__all__ = ["activation_step_sweep", "format_step_sweep"]


def _check_candidates(activation_max):
    values = [activation_max] if np.isscalar(activation_max) else list(activation_max)
    if not values:
        raise ValueError("activation_step_sweep needs at least one activation_max value. "
                         "Received an empty sequence; pass e.g. activation_max=(4.0, 2.0).")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(v)) or float(v) <= 0:
            raise ValueError(f"Expected activation_max values that are finite numbers > 0. "
                             f"Received: {v!r}. Pass e.g. activation_max=(4.0, 2.0).")
    return [float(v) for v in values]


def _relu_outputs(model, images, batch_size):
    import keras

    from keras_nna.sparsity import relu_layers

    names = relu_layers(model)
    if not names:
        return None
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    outs = probe.predict(images.astype("float32"), verbose=0, batch_size=batch_size)
    outs = outs if isinstance(outs, list) else [outs]
    return np.concatenate([np.asarray(o, np.float64).ravel() for o in outs])


def activation_step_sweep(model, images, labels=None, activation_max=(4.0, 2.0), *, policy=None,
                          max_images=1000, batch_size=256):
    """Accuracy, events and ReLU error of `model` quantized with several activation steps.

    No training happens: each candidate is `quantize_model(model, policy)` with
    the policy's `activation_max` replaced, evaluated as exact integer inference.

    Args:
        model: A trained float Keras 3 model that `quantize_model` accepts.
        images: uint8 images `[N, H, W, C]` (whole-number pixel values 0–255).
        labels: Optional integer class labels `[N]`; without them the
            `accuracy` of every row is `None`. Defaults to `None`.
        activation_max: The candidate `activation_max` values (each gives the
            step `2^round(log2(activation_max / (2^b − 1)))`). Defaults to
            `(4.0, 2.0)`: steps 1/4 and 1/8 at 4 bits.
        policy: A `QuantizationPolicy` whose other settings (bit widths, first
            layer) every candidate keeps. Defaults to `QuantizationPolicy()`.
        max_images: Events and the ReLU error use at most this many images
            (accuracy uses all). Defaults to `1000`.
        batch_size: Prediction batch size. Defaults to `256`.

    Returns:
        A list of dicts, one per candidate in the given order, with keys
        `activation_max`, `step`, `accuracy`, `events_per_image` and
        `relu_mse` (`None` when the model has no ReLU).

    Raises:
        ValueError: For an empty or non-positive/non-finite `activation_max`,
            or `labels` whose length differs from `images`.
    """
    from keras_nna.deployment import events_per_image
    from keras_nna.quantization import QuantizationPolicy, quantize_model

    candidates = _check_candidates(activation_max)
    images = np.asarray(images)
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(images):
            raise ValueError(f"Expected one label per image ({len(images)}). Received "
                             f"{len(labels)} labels. Pass labels[:len(images)].")
    base = (policy or QuantizationPolicy()).get_config()
    sample = images[:max_images]
    acts = _relu_outputs(model, sample, batch_size)
    rows = []
    for amax in candidates:
        cand = QuantizationPolicy.from_config({**base, "activation_max": amax})
        step = float(cand.resolve("any")["activation_step"])
        mse = None
        if acts is not None:
            quantized = np.clip(np.floor(acts / step + 0.5) * step, 0, cand.activation_top("any"))
            mse = float(np.mean((quantized - acts) ** 2))
        qmodel = quantize_model(model, cand)
        accuracy = None
        if labels is not None:
            logits = qmodel.predict(images.astype("float32"), verbose=0, batch_size=batch_size)
            accuracy = float(np.mean(np.asarray(logits).reshape(len(images), -1).argmax(-1)
                                     == labels))
        rows.append({"activation_max": amax, "step": step, "accuracy": accuracy,
                     "events_per_image": float(events_per_image(qmodel, sample, batch_size)),
                     "relu_mse": mse})
    return rows


def format_step_sweep(rows):
    """Formats the rows of :func:`activation_step_sweep` as a markdown table.

    Args:
        rows: The list :func:`activation_step_sweep` returned.

    Returns:
        The table as a string.

    Example:

    >>> print(format_step_sweep([{"activation_max": 4.0, "step": 0.25, "accuracy": 0.9,
    ...     "events_per_image": 1234.5, "relu_mse": 0.001}]))
    | activation_max | step | accuracy (no QAT) | events / image | MSE of ReLU outputs |
    |---|---|---|---|---|
    | 4.0 | 0.25 | 0.9000 | 1,234 | 1.00e-03 |
    """
    lines = ["| activation_max | step | accuracy (no QAT) | events / image | MSE of ReLU outputs |",
             "|---|---|---|---|---|"]
    for r in rows:
        acc = "–" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        mse = "–" if r["relu_mse"] is None else f"{r['relu_mse']:.2e}"
        lines.append(f"| {r['activation_max']} | {r['step']} | {acc} | "
                     f"{r['events_per_image']:,.0f} | {mse} |")
    return "\n".join(lines)
