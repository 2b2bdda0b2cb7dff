"""Progressive quantization: clamp a growing share of the weights to the grid.

Switching every weight to its 4-bit value at once is a shock to a trained
float network. With ``QuantizationPolicy(progressive=True)`` each
`QuantizeWrapper` quantizes, at every training step, only a random subset of
its kernel (the fraction is the wrapper's non-trainable `progress` variable;
the other weights stay float). `ProgressiveQuantization` ramps that fraction
from `start` to 1 over the first epochs, so the network adapts before every
weight sits on the grid. Inference always uses fully quantized weights.

Example:

>>> cb = ProgressiveQuantization(ramp_epochs=4)
>>> [cb.fraction(epoch) for epoch in range(6)]
[0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
"""

import keras

from keras_nna._checks import check_number
from keras_nna.quantization.wrapper import QuantizeWrapper

__all__ = ["ProgressiveQuantization"]


def _wrappers(model):
    found = []
    for layer in model.layers:
        if isinstance(layer, QuantizeWrapper):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(_wrappers(layer))
    return found


class ProgressiveQuantization(keras.callbacks.Callback):
    """Ramps the quantized fraction of every kernel from `start` to 1.

    The fraction grows linearly per epoch: ``start + (1 - start) * epoch /
    ramp_epochs`` (clipped to 1) and is logged as `quantized_fraction`.

    Args:
        ramp_epochs: Epochs until all weights are quantized. Defaults to `5`.
        start: Fraction quantized in the first epoch. Defaults to `0.0`.

    Raises:
        TypeError: If `ramp_epochs` is not an int or `start` not a number.
        ValueError: On an out-of-range, NaN or infinite argument, or (at train begin) if the model
            has no wrapper built with ``QuantizationPolicy(progressive=True)``.
    """

    def __init__(self, ramp_epochs=5, start=0.0):
        super().__init__()
        self.ramp_epochs = check_number("ramp_epochs", ramp_epochs, low=1, integer=True,
                                        fix="Pass a number of epochs, e.g. ramp_epochs=5.")
        self.start = check_number("start", start, low=0.0, high=1.0,
                                  fix="Pass the fraction quantized in the first epoch, e.g. 0.0.")

    def fraction(self, epoch):
        """Fraction of weights quantized during `epoch` (0-based)."""
        return min(1.0, self.start + (1.0 - self.start) * epoch / self.ramp_epochs)

    def _targets(self):
        targets = [w for w in _wrappers(self.model) if getattr(w, "progress", None) is not None]
        if not targets:
            raise ValueError(
                "ProgressiveQuantization found no progressive QuantizeWrapper: quantize the "
                "model with quantize_model(model, QuantizationPolicy(progressive=True))."
            )
        return targets

    def on_train_begin(self, logs=None):
        self._wrappers = self._targets()

    def on_epoch_begin(self, epoch, logs=None):
        value = self.fraction(epoch)
        for wrapper in self._wrappers:
            wrapper.progress.assign(value)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["quantized_fraction"] = self.fraction(epoch)

    def on_train_end(self, logs=None):
        for wrapper in self._wrappers:
            wrapper.progress.assign(1.0)
