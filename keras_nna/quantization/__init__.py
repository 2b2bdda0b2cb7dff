"""Quantization-aware training for the NNA.

The integer semantics are written down in `docs/quantization.md`. In short:
4-bit signed per-channel weights (8-bit in the first layer), 4-bit unsigned
activations on a power-of-two step (signed codes for linear hidden outputs),
BatchNorm folded into a 15-bit fixed-point multiplier per channel, residual
Adds re-quantized exactly (`QuantizedAdd`). Typical use::

    from keras_nna.quantization import QuantizationPolicy, quantize_model

    qmodel = quantize_model(float_model, QuantizationPolicy(overrides={"conv_3": {"weight_bits": 6}}))
    qmodel.compile(...)
    qmodel.fit(...)          # fake quantization with straight-through gradients
    qmodel.predict(x)        # exact integer inference, equal to the exported program
"""

from keras_nna.quantization.add import QuantizedAdd
from keras_nna.quantization.checks import check_not_keras_quantized
from keras_nna.quantization.layer_kinds import applies_relu, is_relu, layer_kind, unwrap
from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.pooling import (
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
)
from keras_nna.quantization.progressive import ProgressiveQuantization
from keras_nna.quantization.quantizers import (
    BINARY_STE_CLIP,
    activation_range,
    activation_step,
    fake_quantize_activations,
    fake_quantize_weights,
    quantize_weights,
)
from keras_nna.quantization.transform import quantize_model
from keras_nna.quantization.wrapper import QuantizeWrapper, is_quantize_wrapper

__all__ = [
    "BINARY_STE_CLIP",
    "ProgressiveQuantization",
    "QuantizationPolicy",
    "QuantizeWrapper",
    "QuantizedAdd",
    "QuantizedAveragePooling2D",
    "QuantizedGlobalAveragePooling2D",
    "activation_range",
    "activation_step",
    "applies_relu",
    "check_not_keras_quantized",
    "fake_quantize_activations",
    "fake_quantize_weights",
    "is_quantize_wrapper",
    "is_relu",
    "layer_kind",
    "quantize_model",
    "quantize_weights",
    "unwrap",
]
