"""Every public number argument refuses NaN, ±inf and out-of-range values (issue 12, defect 4).

Each case is `(callable, argument name, out-of-range value)`; the callable
takes the value of the argument under test. A NaN used to pass checks such as
`threshold < 0` (PruneCallback then zeroed every weight); `activation_max=inf`
raised an OverflowError. The error must be a ValueError or TypeError whose
message names the argument.
"""

import math

import keras
import numpy as np
import pytest

from keras_nna import distillation, sparsity
from keras_nna.models import AkidaNet
from keras_nna.quantization import (
    ProgressiveQuantization,
    QuantizationPolicy,
    QuantizedAveragePooling2D,
    QuantizedGlobalAveragePooling2D,
    QuantizeWrapper,
)
from keras_nna.quantization.quantizers import activation_step
from keras_nna.sparsity.activations import quantize_codes
from keras_nna.sparsity.pruning import compute_masks

L = keras.layers


def _cnn():
    inputs = keras.Input((6, 6, 1))
    x = L.Conv2D(4, 3, use_bias=False, name="c0")(inputs)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="r0")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="fc")(x))


def _table():
    return {"baseline": 1.0, "ratios": [0.5], "metrics": {"a": [0.9]}}


_X, _Y = np.ones((2, 6, 6, 1), "float32"), np.zeros(2, int)


def _distiller(**kwargs):
    model = _cnn()
    return distillation.Distiller(model, model, **kwargs)


# id -> (callable(value), argument name, an out-of-range value)
CASES = {
    "PruneCallback.threshold": (lambda v: sparsity.PruneCallback(method="threshold", threshold=v),
                                "threshold", -1.0),
    "compute_masks.threshold": (lambda v: compute_masks([np.ones(4)], threshold=v), "threshold", -0.5),
    "compute_masks.sparsity": (lambda v: compute_masks([np.ones(4)], sparsity=v), "sparsity", 1.0),
    "prune_weights.sparsity": (lambda v: sparsity.prune_weights(_cnn(), sparsity=v), "sparsity", 1.5),
    "prune_weights.threshold": (lambda v: sparsity.prune_weights(_cnn(), threshold=v), "threshold",
                                -1.0),
    "prune_filters.sparsity": (lambda v: sparsity.prune_filters(_cnn(), v), "sparsity", 1.0),
    "ConstantSparsity.target_sparsity": (lambda v: sparsity.ConstantSparsity(v), "target_sparsity",
                                         1.0),
    "ConstantSparsity.begin_step": (lambda v: sparsity.ConstantSparsity(0.5, begin_step=v),
                                    "begin_step", -1),
    "ConstantSparsity.frequency": (lambda v: sparsity.ConstantSparsity(0.5, frequency=v),
                                   "frequency", 0),
    "PolynomialDecay.initial_sparsity": (lambda v: sparsity.PolynomialDecay(v, 0.5),
                                         "initial_sparsity", -0.1),
    "PolynomialDecay.final_sparsity": (lambda v: sparsity.PolynomialDecay(0.0, v),
                                       "final_sparsity", 1.0),
    "PolynomialDecay.power": (lambda v: sparsity.PolynomialDecay(0.0, 0.5, power=v), "power", -1.0),
    "PolynomialDecay.end_step": (lambda v: sparsity.PolynomialDecay(0.0, 0.5, end_step=v), "end_step",
                                 -2),
    "FilterPruneCallback.schedule": (
        lambda v: sparsity.FilterPruneCallback(sparsity.ConstantSparsity(v)), "target_sparsity", 1.0),
    "ActivityRegularizer.l1": (lambda v: sparsity.ActivityRegularizer(l1=v), "l1", -1.0),
    "ActivityRegularizer.l2": (lambda v: sparsity.ActivityRegularizer(l2=v), "l2", -1.0),
    "ActivityRegularizer.hoyer": (lambda v: sparsity.ActivityRegularizer(hoyer=v), "hoyer", -1.0),
    "add_activity_regularization.l1": (lambda v: sparsity.add_activity_regularization(_cnn(), l1=v),
                                       "l1", -1.0),
    "add_activity_regularization.hoyer": (
        lambda v: sparsity.add_activity_regularization(_cnn(), hoyer=v), "hoyer", -0.5),
    "add_activity_regularization.max_value": (
        lambda v: sparsity.add_activity_regularization(_cnn(), hoyer=0.1, max_value=v), "max_value",
        0.0),
    "add_weight_regularization.l1": (lambda v: sparsity.add_weight_regularization(_cnn(), l1=v), "l1",
                                     -1.0),
    "add_gamma_regularization.l1": (lambda v: sparsity.add_gamma_regularization(_cnn(), l1=v), "l1",
                                    -1.0),
    "sensitivity_analysis.ratios": (lambda v: sparsity.sensitivity_analysis(_cnn(), _X, _Y, ratios=(v,)),
                                    "ratio", 1.0),
    "sensitivity_analysis.batch_size": (
        lambda v: sparsity.sensitivity_analysis(_cnn(), _X, _Y, ratios=(0.5,), batch_size=v),
        "batch_size", 0),
    "propose_ratios.max_drop": (lambda v: sparsity.propose_ratios(_table(), max_drop=v), "max_drop",
                                -0.1),
    "quantize_codes.step": (lambda v: quantize_codes(np.ones(3), v), "quantization_step", 0.0),
    "quantize_codes.bits": (lambda v: quantize_codes(np.ones(3), 0.25, bits=v), "bits", 17),
    "measure_activation_sparsity.quantization_step": (
        lambda v: sparsity.measure_activation_sparsity(_cnn(), _X, quantization_step=v),
        "quantization_step", -0.25),
    "measure_activation_sparsity.max_samples": (
        lambda v: sparsity.measure_activation_sparsity(_cnn(), _X, max_samples=v), "max_samples", 0),
    "ActivationSparsityCallback.quantization_step": (
        lambda v: sparsity.ActivationSparsityCallback(_X, quantization_step=v), "quantization_step",
        0.0),
    "ActivationSparsityCallback.frequency": (
        lambda v: sparsity.ActivationSparsityCallback(_X, frequency=v), "frequency", 0),
    "Distiller.temperature": (lambda v: _distiller(temperature=v), "temperature", 0.0),
    "Distiller.alpha": (lambda v: _distiller(alpha=v), "alpha", 1.5),
    "AkidaNet.alpha": (lambda v: AkidaNet(input_shape=(32, 32, 3), alpha=v), "alpha", -0.25),
    "AkidaNet.bn_momentum": (lambda v: AkidaNet(input_shape=(32, 32, 3), bn_momentum=v),
                             "bn_momentum", 1.0),
    "AkidaNet.dropout": (lambda v: AkidaNet(input_shape=(32, 32, 3), dropout=v), "dropout", 1.0),
    "QuantizationPolicy.activation_max": (lambda v: QuantizationPolicy(activation_max=v),
                                          "activation_max", 0.0),
    "QuantizationPolicy.override_activation_max": (
        lambda v: QuantizationPolicy(overrides={"c0": {"activation_max": v}}), "activation_max", -4.0),
    "activation_step.activation_max": (lambda v: activation_step(4, v), "activation_max", 0.0),
    "QuantizeWrapper.input_scale": (lambda v: QuantizeWrapper(L.Dense(2), input_scale=v),
                                    "input_scale", 0.0),
    "QuantizedGlobalAveragePooling2D.step": (lambda v: QuantizedGlobalAveragePooling2D(step=v), "step",
                                             -0.25),
    "QuantizedAveragePooling2D.step": (lambda v: QuantizedAveragePooling2D(step=v), "step", 0.0),
    "ProgressiveQuantization.start": (lambda v: ProgressiveQuantization(start=v), "start", 1.5),
    "ProgressiveQuantization.ramp_epochs": (lambda v: ProgressiveQuantization(ramp_epochs=v),
                                            "ramp_epochs", 0),
}

VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@pytest.mark.parametrize("value", [*VALUES, "out_of_range"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_number_argument_is_refused_naming_it(case, value):
    call, name, bad = CASES[case]
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b") as info:
        call(VALUES.get(value, bad))
    assert not isinstance(info.value, OverflowError)


BIT_ARGS = ("weight_bits", "activation_bits", "first_layer_weight_bits", "input_bits")


@pytest.mark.parametrize("value", [math.nan, math.inf, 4.0, True, np.float32(8.0), 9, 0, "4"],
                         ids=["nan", "inf", "float", "bool", "np_float", "nine", "zero", "string"])
@pytest.mark.parametrize("arg", BIT_ARGS)
def test_bit_widths_must_be_integers_in_range(arg, value):
    with pytest.raises((ValueError, TypeError), match=rf"`{arg}`"):
        QuantizationPolicy(**{arg: value})


def test_nan_threshold_no_longer_zeroes_every_weight():
    model = _cnn()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="threshold"):
        sparsity.prune_weights(model, threshold=float("nan"))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
