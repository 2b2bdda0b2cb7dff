"""Measuring activation sparsity: zeros and events per layer.

The accelerator sends one event per non-zero activation code, so the number of
events, not the number of activations, is what costs time and energy.
:func:`measure_activation_sparsity` runs a model on data in inference mode and
reports, for every measured layer, the fraction of zero outputs and the mean number
of events per sample:

- float models: the ReLU outputs (``keras.layers.ReLU``, ``Activation("relu")``,
  ``activation="relu"``; the ReLU after a residual ``Add`` is one) and the outputs
  of ``Add`` layers not followed by a ReLU (signed codes once quantized). With
  ``quantization_step`` the outputs are first mapped to the fixed grid the
  accelerator uses, ``code = clip(floor(x / step + 1/2), 0, 2**bits - 1)`` (round
  half up, as the requantization of keras_nna; ``-2**(bits-1) .. 2**(bits-1) - 1``
  for those ``Add`` outputs), so an activation below half a step is not an event;
- quantized models (``QuantizeWrapper``, the quantized pools and
  ``QuantizedAdd``, the residual add): their outputs are already codes × step, so
  exact zeros are counted (no extra quantization).

:class:`ActivationSparsityCallback` logs the same numbers after each epoch as
``activation_zeros/<layer>``, ``activation_zeros/total`` and ``events/total``.

``"total"`` sums the *outputs* of the measured layers. The emulator counts the
events each accelerator instruction *receives* instead: the input pixels and the
output of every instruction but the last, where ``MaxPooling2D`` and ``Flatten``
are instructions too. For that number on a quantized model use
:func:`keras_nna.deployment.events_per_image` (the emulator's count, measured in Keras).

Example:

>>> import numpy as np, keras
>>> m = keras.Sequential([keras.Input((2,)), keras.layers.ReLU(name="r")])
>>> s = measure_activation_sparsity(m, np.array([[-1.0, 0.1], [2.0, 3.0]], "float32"),
...                                 quantization_step=0.25)
>>> s["r"]["zeros"], s["total"]["events"]
(0.5, 1.0)
"""

import numpy as np
import keras
import tensorflow as tf

from keras_nna._checks import check_number
from keras_nna.quantization.add import QuantizedAdd
from keras_nna.quantization.layer_kinds import is_relu, iter_layers, unwrap
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.wrapper import is_quantize_wrapper
from keras_nna.sparsity.graph import layer_graph
from keras_nna.sparsity.groups import is_add
from keras_nna.sparsity.masks import training_target
from keras_nna.sparsity.regularizers import relu_layers

__all__ = ["measure_activation_sparsity", "ActivationSparsityCallback", "quantize_codes"]


def quantize_codes(x, step, bits=4, signed=False):
    """Maps activations to unsigned (or signed) codes on a fixed grid.

    Args:
        x: Array of activations.
        step: Quantization step (e.g. `0.25`).
        bits: Code width. Defaults to `4`.
        signed: Signed codes in `[-2**(bits-1), 2**(bits-1) - 1]` (the outputs
            of layers without ReLU, e.g. a residual `Add`). Defaults to `False`.

    Returns:
        Integer NumPy array of codes in `[0, 2**bits - 1]` (or the signed range).

    Raises:
        TypeError: If `step` or `bits` is not a number (`bits`: an integer).
        ValueError: If `step` is not a finite number > 0 or `bits` is not in 1..16.

    Example:

    >>> quantize_codes(np.array([0.1, 0.125, 0.3, 9.0]), 0.25)
    array([ 0,  1,  1, 15])
    >>> quantize_codes(np.array([-9.0, -0.1, 0.3]), 0.25, signed=True)
    array([-8,  0,  1])
    """
    step, bits = _check_grid(step, bits)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    return np.clip(np.floor(np.asarray(x, "float64") / step + 0.5), lo, hi).astype("int64")


def _check_grid(step, bits, allow_none=False):
    """Validated `(quantization_step, bits)`."""
    step = check_number("quantization_step", step, low=0.0, low_open=True, allow_none=allow_none,
                        fix="Pass the activation grid step, e.g. quantization_step=0.25.")
    bits = check_number("bits", bits, low=1, high=16, integer=True,
                        fix="Pass the code width, e.g. bits=4.")
    return step, bits


def _measured_layers(model):
    quantized = [l.name for l in iter_layers(model) if is_quantize_wrapper(l) or isinstance(
        l, (QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D, QuantizedAdd))]
    if quantized:
        return quantized, True
    wanted = set(_signed_adds(model)) | set(relu_layers(model))
    return [l.name for l in iter_layers(model) if l.name in wanted], False


def _signed_adds(model):
    """Float `Add` layers whose output is not (only) fed to a ReLU: signed codes when quantized."""
    adds = [l.name for l in iter_layers(model) if is_add(l)]
    if not adds:
        return []
    try:
        graph = layer_graph(model)
    except ValueError:  # not a functional/Sequential graph: measure ReLU outputs only
        return []
    out = []
    for name in adds:
        consumers = graph.consumers.get(name, [])
        if not (len(consumers) == 1 and is_relu(unwrap(graph.layers[consumers[0]]))):
            out.append(name)
    return out


def _batches(data, batch_size, max_samples):
    if isinstance(data, tf.data.Dataset):
        seen = 0
        for item in data:
            x = item[0] if isinstance(item, (tuple, list)) else item
            yield x
            seen += int(x.shape[0])
            if max_samples is not None and seen >= max_samples:
                return
        return
    if isinstance(data, (tuple, list)) and len(data) == 2 and not np.isscalar(data[0]):
        data = data[0]
    x = np.asarray(data)
    if max_samples is not None:
        x = x[:max_samples]
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


def measure_activation_sparsity(model, data, quantization_step=None, bits=4, layers=None,
                                batch_size=128, max_samples=None):
    """Measures zeros and events of a model's activations.

    Args:
        model: A functional or Sequential model (float or quantized).
        data: Inputs: an array, an `(x, y)` pair, or a `tf.data.Dataset` of batches
            (`x` or `(x, y)`).
        quantization_step: Fixed step to quantize float activations with before
            counting (e.g. `0.25` for keras_nna's 4-bit QAT); `None` counts exact
            zeros. Ignored for quantized layers. Defaults to `None`.
        bits: Code width for `quantization_step`. Defaults to `4`.
        layers: Names of the layers to measure. Defaults to `None` (ReLU outputs of a
            float model, quantized layers of a QAT model).
        batch_size: Batch size for arrays. Defaults to `128`.
        max_samples: Measure at most this many samples. Defaults to `None` (all).

    Returns:
        Dict `{layer: {"zeros", "events", "elements"}}` plus a `"total"` entry:
        `zeros` is the zero fraction, `events` the mean number of non-zero codes per
        sample, `elements` the activations per sample.

    Raises:
        TypeError: If a numeric argument is not a number (or not an integer).
        ValueError: If a numeric argument is NaN, infinite or out of range, no
            layer can be measured, a name is unknown, or the data is empty.

    Example:

    >>> import numpy as np, keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu", name="d")])
    >>> sorted(measure_activation_sparsity(m, np.zeros((5, 3)))["d"])
    ['elements', 'events', 'zeros']
    """
    quantization_step, bits = _check_grid(quantization_step, bits, allow_none=True)
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    max_samples = check_number("max_samples", max_samples, low=1, integer=True, allow_none=True)
    names, quantized = _measured_layers(model)
    signed = set() if quantized else set(_signed_adds(model))
    if layers is not None:
        valid = [l.name for l in iter_layers(model)]
        unknown = [n for n in layers if n not in valid]
        if unknown:
            raise ValueError(f"Unknown layer name(s) {unknown}. Valid names: {valid}.")
        names = list(layers)
    if not names:
        raise ValueError(f"Model {model.name!r} has no ReLU or quantized layer to measure; pass "
                         "`layers=[...]`.")
    by_name = {l.name: l for l in iter_layers(model)}
    inputs = model.inputs if len(model.inputs) > 1 else model.inputs[0]
    probe = keras.Model(inputs, [by_name[n].output for n in names])
    zeros = {n: 0 for n in names}
    counts = {n: 0 for n in names}
    elements = {}
    samples = 0
    for x in _batches(data, batch_size, max_samples):
        outs = probe(x, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        for n, o in zip(names, outs):
            o = keras.ops.convert_to_numpy(o)
            if quantization_step is not None and not quantized:
                o = quantize_codes(o, quantization_step, bits, signed=n in signed)
            zeros[n] += int((o == 0).sum())
            counts[n] += o.size
            elements[n] = int(np.prod(o.shape[1:]))
        samples += int(np.shape(x)[0])
    if samples == 0:
        raise ValueError("`data` is empty: nothing to measure.")
    result = {}
    for n in names:
        result[n] = {"zeros": zeros[n] / counts[n], "events": (counts[n] - zeros[n]) / samples,
                     "elements": elements[n]}
    tz, tc = sum(zeros.values()), sum(counts.values())
    result["total"] = {"zeros": tz / tc, "events": (tc - tz) / samples,
                       "elements": sum(elements.values())}
    return result


class ActivationSparsityCallback(keras.callbacks.Callback):
    """Logs activation zeros and events on fixed data after each epoch.

    Args:
        data: Inputs to measure on (see :func:`measure_activation_sparsity`); keep it
            small (a few hundred samples).
        quantization_step: Fixed grid step for float activations. Defaults to `None`.
        bits: Code width. Defaults to `4`.
        per_layer: Also log `activation_zeros/<layer>`. Defaults to `True`.
        frequency: Measure every `frequency` epochs. Defaults to `1`.

    Raises:
        TypeError: If a numeric argument is not a number (or not an integer).
        ValueError: If `quantization_step` is not a finite number > 0, `bits`
            is not in 1..16 or `frequency` < 1.

    Example:

    >>> import numpy as np
    >>> cb = ActivationSparsityCallback(np.zeros((4, 3)), quantization_step=0.25)
    >>> cb.frequency
    1
    """

    def __init__(self, data, quantization_step=None, bits=4, per_layer=True, frequency=1):
        super().__init__()
        self.data = data
        self.quantization_step, self.bits = _check_grid(quantization_step, bits, allow_none=True)
        self.per_layer = per_layer
        self.frequency = check_number("frequency", frequency, low=1, integer=True)
        self.last = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency:
            return
        self.last = measure_activation_sparsity(training_target(self.model), self.data,
                                                self.quantization_step, self.bits)
        if logs is None:
            return
        for n, v in self.last.items():
            if n == "total" or self.per_layer:
                logs[f"activation_zeros/{n}"] = v["zeros"]
        logs["events/total"] = self.last["total"]["events"]
