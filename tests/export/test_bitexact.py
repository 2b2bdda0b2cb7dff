"""Bit-exactness: quantized Keras model == numpy reference of the exported program."""

import numpy as np
import pytest

from keras_nna.export import export_model, read_program, run_reference
from tests.model_zoo import make_case

SEEDS = list(range(12))


@pytest.mark.parametrize("seed", SEEDS, ids=[f"zoo{s}" for s in SEEDS])
def test_reference_equals_keras(seed):
    qmodel, images = make_case(seed)
    expected = qmodel.predict(images.astype("float32"), verbose=0)
    program = read_program(export_model(qmodel).to_bytes())
    outputs, stats = run_reference(program, images)
    assert outputs.shape == expected.shape
    assert np.unique(expected).size > 1, "degenerate case: constant outputs"
    np.testing.assert_array_equal(outputs, expected)
    assert stats.shape == (len(images), len(program.layers), 6)
    # The first layer sees every non-zero pixel as an event.
    np.testing.assert_array_equal(stats[:, 0, 0], (images != 0).reshape(len(images), -1).sum(1))
