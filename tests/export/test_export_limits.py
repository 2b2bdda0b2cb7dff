"""export_model refuses what its own reader refuses, naming the layer (issue 12, defect 5).

Export validates with one rule: `read_program(write_program(program))`, so a
program it returns or writes always loads.
"""

import inspect

import keras
import pytest

from keras_nna.export import ExportError, export_model, read_program
from keras_nna.quantization import quantize_model

L = keras.layers

_HAS_LIMITS = "limits" in inspect.signature(read_program).parameters


def _kernel17_stride16():
    return keras.Sequential([keras.Input((40, 40, 1)),
                             L.Conv2D(2, 17, strides=16, activation="relu", name="conv"),
                             L.Flatten(), L.Dense(2, name="fc")])


def _tall_input():
    return keras.Sequential([keras.Input((5000, 1, 1)), L.Conv2D(2, 1, activation="relu", name="conv"),
                             L.GlobalAveragePooling2D(), L.Dense(2, name="fc")])


def _dense_70000():
    return keras.Sequential([keras.Input((1, 1, 1)), L.Flatten(), L.Dense(70000, name="fc")])


CASES = {
    "kernel17_stride16": (_kernel17_stride16, r"layer 'conv' \(Conv2D, instruction 0\).*kernel 17x17"),
    "input_5000x1x1": (_tall_input, r"input layer .*\(shape \(5000, 1, 1\)\).*input shape"),
    "dense_70000_units": (_dense_70000, r"layer 'fc' \(Dense, instruction 0\).*70000.*65535"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_export_refuses_what_the_reader_refuses(case, tmp_path):
    build, match = CASES[case]
    path = tmp_path / "model.nnab"
    with pytest.raises(ExportError, match=match) as info:
        export_model(quantize_model(build()), path)
    assert "Fix:" in str(info.value)
    assert not path.exists()


def test_exported_program_always_loads(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(3, 3, activation="relu"),
                              L.GlobalAveragePooling2D(), L.Dense(2)])
    path = tmp_path / "ok.nnab"
    program = export_model(quantize_model(model), path)
    assert read_program(path.read_bytes()).output_shape == program.output_shape == (2,)


def _heavy():
    """Four 3x3 convs on 1024x1024x16: each layer within the per-layer bounds (2^28
    elements, 2^40 work), the program over the default whole-program limits."""
    layers = [keras.Input((1024, 1024, 16))]
    layers += [L.Conv2D(64 if i else 16, 3, padding="same", activation="relu", name=f"c{i}")
               for i in range(4)]
    return keras.Sequential(layers + [L.GlobalAveragePooling2D(), L.Dense(2)])


@pytest.mark.skipif(not _HAS_LIMITS, reason="read_program has no whole-program limits yet")
def test_export_refuses_a_program_over_the_whole_program_limits():
    qmodel = quantize_model(_heavy())
    with pytest.raises(ExportError, match=r"exceeds the limit max_.*Fix:.*export_model\(model, limits="):
        export_model(qmodel)
    trusted = {"max_work": 1 << 40, "max_activation_bytes": 1 << 34}
    program = export_model(qmodel, limits=trusted)  # a trusted program: limits raised
    assert len(program.layers) == 6


@pytest.mark.skipif(not _HAS_LIMITS, reason="read_program has no whole-program limits yet")
@pytest.mark.parametrize("limits,match", [
    ({"max_work": 10}, r"model '.*': .*max_work"),
    ({"max_activation_bytes": 10}, r"layer 'conv' \(Conv2D, instruction 0\).*max_activation_bytes"),
], ids=["work", "activation_bytes"])
def test_export_applies_given_limits(limits, match):
    model = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 3, activation="relu", name="conv"),
                              L.Flatten(), L.Dense(3)])
    with pytest.raises(ExportError, match=match):
        export_model(quantize_model(model), limits=limits)
