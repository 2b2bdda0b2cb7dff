"""Quantization-aware training for the NNA (see docs/quantization.md)."""
from keras_nna.quantization.policy import QuantizationPolicy
from keras_nna.quantization.quantizers import activation_step, fake_quantize_activations, fake_quantize_weights, quantize_weights
from keras_nna.quantization.wrapper import QuantizeWrapper
from keras_nna.quantization.pooling import QuantizedAveragePooling2D, QuantizedGlobalAveragePooling2D
from keras_nna.quantization.transform import quantize_model
from keras_nna.quantization.progressive import ProgressiveQuantization
