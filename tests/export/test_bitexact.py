"""Bit-exactness: quantized Keras model == numpy reference == emulator op."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_nna import datasets
from keras_nna.export import export_model, read_program, run_reference
from keras_nna.models import AkidaNet
from keras_nna.quantization import quantize_model
from keras_nna.runtime import Emulator
from tests.model_zoo import make_case, make_wide_case

SEEDS = list(range(16))


def _check_three_way(qmodel, images):
    expected = qmodel.predict(images.astype("float32"), verbose=0)
    xla = tf.function(lambda x: qmodel(x, training=False), jit_compile=True)
    np.testing.assert_array_equal(xla(images.astype("float32")).numpy(), expected)
    data = export_model(qmodel).to_bytes()
    program = read_program(data)
    ref_out, ref_stats = run_reference(program, images)
    assert ref_out.shape == expected.shape
    np.testing.assert_array_equal(ref_out, expected)
    emulator = Emulator(data)
    for mode in ("auto", "event", "dense"):
        out, stats = emulator.run_with_stats(images, mode=mode)
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(stats, ref_stats)
    return expected, ref_stats, program


@pytest.mark.parametrize("seed", SEEDS, ids=[f"zoo{s}" for s in SEEDS])
def test_random_networks_bit_exact(seed):
    qmodel, images = make_case(seed)
    expected, stats, program = _check_three_way(qmodel, images)
    assert np.unique(expected).size > 1, "degenerate case: constant outputs"
    assert stats.shape == (len(images), len(program.layers), 6)
    # The first layer sees every non-zero pixel as an event.
    np.testing.assert_array_equal(stats[:, 0, 0], (images != 0).reshape(len(images), -1).sum(1))


def test_akidanet_trained_on_faces_bit_exact():
    """AkidaNet 0.25 at 96x96x3, trained briefly on real data so activations are alive."""
    keras.utils.set_random_seed(0)
    (x, y), (xt, _) = datasets.load_faces()
    x, xt = datasets.prepare_for_akidanet(x[:48]), datasets.prepare_for_akidanet(xt[:12])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = AkidaNet(alpha=0.25, classes=2, bn_momentum=0.5)
    model.compile(keras.optimizers.Adam(2e-3), loss)
    model.fit(x.astype("float32"), y[:48], epochs=2, batch_size=16, verbose=0)
    qmodel = quantize_model(model)
    qmodel.compile(keras.optimizers.Adam(5e-4), loss)
    qmodel.fit(x.astype("float32"), y[:48], epochs=1, batch_size=16, verbose=0)
    _, stats, program = _check_three_way(qmodel, xt)
    assert len(program.to_bytes()) <= 143_000
    events = stats[:, 1:, 0].sum(axis=1)
    dense_inputs = sum(np.prod(r.in_shape) for r in program.layers[1:])
    assert 0 < events.min() and events.max() < dense_inputs  # alive and sparse
    assert stats[:, :, 2].sum(axis=1)[0] == 16_512_128  # dense-equivalent MACs


def test_all_zero_input_has_no_events_past_first_layer():
    qmodel, images = make_case(3)
    zeros = np.zeros_like(images[:2])
    _, stats, _ = _check_three_way(qmodel, zeros)
    assert stats[:, 0, 0].sum() == 0 and stats[:, 0, 1].sum() == 0


@pytest.mark.parametrize("bits", [(4, 4), (8, 8), (2, 3)], ids=["w4a4", "w8a8", "w2a3"])
def test_wide_layers_reach_blocked_simd_kernels(bits):
    """Channel counts above 64 exercise the multi-block VNNI conv/pointwise/dense kernels."""
    qmodel, images = make_wide_case(bits)
    expected, _, _ = _check_three_way(qmodel, images)
    assert np.unique(expected).size > 1
