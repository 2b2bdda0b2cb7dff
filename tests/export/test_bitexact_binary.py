"""Bit-exactness of 1-bit weights: quantized Keras model == numpy reference == emulator op.

Random networks of tests/model_zoo.py (conv, depthwise, separable, dense;
residual Add graphs) get 1-bit weights on every layer but the first (the
first too in the `*_all1` cases), one training step, then pruning: a random
fraction of the trained weights and one whole output channel are set to 0,
so the export meets zero codes (bitmap-sparse 1-bit kernels), all-zero
channels (scale 1) and zero-free kernels (dense 1-bit). The program must
equal `qmodel.predict` on every image in every emulator mode
(`_check_three_way`).
"""

import functools

import keras
import numpy as np
import pytest

from keras_nna.export.format import weight_encodings
from keras_nna.quantization import QuantizationPolicy, quantize_model
from keras_nna.quantization.wrapper import is_quantize_wrapper
from tests.export.test_bitexact import _check_three_way
from tests.model_zoo import make_float_model, make_residual_float_model

# (family, seed, first layer 1-bit too, pruned fraction)
CASES = {
    "zoo1": ("zoo", 1, False, 0.0),
    "zoo2_all1": ("zoo", 2, True, 0.3),
    "zoo5": ("zoo", 5, False, 0.2),
    "residual4": ("residual", 4, False, 0.2),
    "residual8_all1": ("residual", 8, True, 0.0),
}
SLOW_CASES = {
    **{f"zoo{s}": ("zoo", s, False, 0.25 * (s % 3)) for s in (0, 3, 4, 6, 7, 8, 9)},
    **{f"zoo{s}_all1": ("zoo", s, True, 0.2) for s in (10, 11, 12)},
    **{f"residual{s}": ("residual", s, s % 2 == 1, 0.3) for s in (0, 1, 2, 3, 5, 6, 7)},
}


def _binary_policy(policy, first_layer_one_bit):
    """`policy` with every weight width set to 1 (the first layer's too, if asked)."""
    config = policy.get_config()
    config["weight_bits"] = 1
    if first_layer_one_bit:
        config["first_layer_weight_bits"] = 1
    for spec in config["overrides"].values():
        if "weight_bits" in spec:
            spec["weight_bits"] = 1
    return QuantizationPolicy.from_config(config)


def _kernel_variables(qmodel):
    for layer in qmodel.layers:
        if is_quantize_wrapper(layer):
            inner = layer.layer
            yield from ((inner.depthwise_kernel, inner.pointwise_kernel) if layer.kind == "separable"
                        else (inner.kernel,))


def _prune(qmodel, fraction, rng):
    """Zeroes `fraction` of every kernel and, with `fraction > 0`, one output channel of each."""
    if not fraction:
        return
    for var in _kernel_variables(qmodel):
        k = var.numpy()
        k[rng.random(k.shape) < fraction] = 0.0
        k[..., int(rng.integers(k.shape[-1]))] = 0.0
        var.assign(k)


@functools.lru_cache(maxsize=None)
def _check(case):
    """Builds, trains one step, prunes and checks `case`; returns `(program, kernel encodings)`."""
    family, seed, first_one_bit, fraction = {**CASES, **SLOW_CASES}[case]
    make = make_float_model if family == "zoo" else make_residual_float_model
    keras.utils.set_random_seed(seed)
    model, policy = make(seed)
    qmodel = quantize_model(model, _binary_policy(policy, first_one_bit))
    rng = np.random.default_rng(seed + 3000)
    images = rng.integers(0, 256, (16, *model.inputs[0].shape[1:])).astype(np.uint8)
    labels = rng.integers(0, qmodel.outputs[0].shape[-1], 16)
    qmodel.compile(keras.optimizers.Adam(0.05),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qmodel.fit(images.astype("float32"), labels, batch_size=16, epochs=1, verbose=0)  # one step
    _prune(qmodel, fraction, rng)
    expected, _, program = _check_three_way(qmodel, images)
    assert np.unique(expected).size > 1, "degenerate case: constant outputs"
    data = program.to_bytes()
    assert data[4] == 3  # format version 3: 1-bit kernels
    kernels = [r for r in program.layers if r.w_bits]
    first = kernels[0].w_bits
    assert (first == 1) == first_one_bit
    assert all(r.w_bits == 1 and r.w2_bits in (0, 1) for r in kernels[1:])
    encodings = [e for r, e in zip(program.layers, weight_encodings(data)) if r.w_bits == 1]
    return program, encodings


@pytest.mark.parametrize("case", sorted(CASES))
def test_binary_networks_bit_exact(case):
    _check(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SLOW_CASES))
def test_more_binary_networks_bit_exact(case):
    _check(case)


def test_the_default_cases_cover_every_kind_and_encoding():
    """conv, depthwise, separable, dense and Add with 1-bit kernels; dense and sparse 1-bit kernels."""
    checked = [_check(case) for case in sorted(CASES)]
    kinds = {r.kind for program, _ in checked for r in program.layers if r.w_bits == 1}
    assert {"conv", "depthwise", "separable", "dense"} <= kinds
    assert any(r.kind == "add" for program, _ in checked for r in program.layers)
    encodings = {e for _, encs in checked for enc in encs for e in enc.split("/")}
    assert encodings == {"dense", "sparse"}
