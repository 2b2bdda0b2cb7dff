"""export_model on residual graphs: the records it emits, and what it refuses (naming the layer)."""

import keras
import numpy as np
import pytest

from keras_nna.export import ExportError, export_model, read_program, run_reference
from keras_nna.quantization import QuantizedAdd, QuantizeWrapper, quantize_model

L = keras.layers


def _residual(pad=1, kernel=3):
    inputs = keras.Input((8, 8, 1))
    x = L.Rescaling(1 / 255)(inputs)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(x)
    y = L.Conv2D(4, 1, name="c1")(x)  # linear: signed codes into the Add
    s = L.ReLU(name="relu")(L.Add(name="add")([x, y]))
    z = L.ZeroPadding2D(pad, name="pad")(s)
    z = L.Conv2D(3, kernel, strides=2, activation="relu", name="c2")(z)
    g = L.GlobalAveragePooling2D(keepdims=True, name="gap")(z)
    g = L.Reshape((5,), name="rs")(L.Conv2D(5, 1, activation="relu", name="c3")(g))
    return keras.Model(inputs, L.Dense(2, name="fc")(L.Dropout(0.1)(g)))


def test_residual_records():
    """src/src2 name producers, the ReLU fuses into the ADD, the pads fold into c2."""
    program = export_model(quantize_model(_residual()))
    got = [(r.name, r.kind, r.src, r.src2, r.out_signed, r.in_signed, r.pads)
           for r in program.layers]
    assert got == [
        ("c0", "conv", 0, 0, False, False, (1, 1, 1, 1)),
        ("c1", "conv", 1, 0, True, False, (0, 0, 0, 0)),
        ("add", "add", 1, 2, False, False, (0, 0, 0, 0)),
        ("c2", "conv", 3, 0, False, False, (1, 1, 1, 1)),  # valid conv on a ZeroPadding2D(1)
        ("gap", "avgpool", 4, 0, False, False, (0, 0, 0, 0)),
        ("c3", "conv", 5, 0, False, False, (0, 0, 0, 0)),  # reads the keepdims 1x1 map
        ("fc", "dense", 6, 0, False, False, (0, 0, 0, 0)),  # Reshape and Dropout vanish
    ]
    assert read_program(program.to_bytes()).layers[2].in_bits == program.layers[0].out_bits


def test_nested_model_exports_like_the_flat_one():
    qmodel = quantize_model(_residual())
    inputs = keras.Input((8, 8, 1))
    outer = keras.Model(inputs, qmodel(inputs))
    assert export_model(outer).to_bytes() == export_model(qmodel).to_bytes()
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.uint8)
    np.testing.assert_array_equal(run_reference(export_model(outer), images)[0],
                                  qmodel.predict(images.astype("float32"), verbose=0))


def test_mobilenet_head_raw_conv_then_reshape():
    """keras.applications.MobileNet's head: GAP(keepdims) -> Dropout -> 1x1 conv (raw) -> Reshape."""
    inputs = keras.Input((6, 6, 2))
    x = L.Conv2D(4, 3, activation="relu", name="conv")(L.Rescaling(1 / 255)(inputs))
    x = L.Dropout(0.1)(L.GlobalAveragePooling2D(keepdims=True, name="gap")(x))
    x = L.Reshape((3,), name="rs")(L.Conv2D(3, 1, name="preds")(x))
    qmodel = quantize_model(keras.Model(inputs, x))
    program = export_model(qmodel)
    assert [(r.name, r.out_bits == 0) for r in program.layers] == [
        ("conv", False), ("gap", False), ("preds", True)]
    images = np.random.default_rng(1).integers(0, 256, (4, 6, 6, 2)).astype(np.uint8)
    np.testing.assert_array_equal(run_reference(program, images)[0],
                                  qmodel.predict(images.astype("float32"), verbose=0))


def _wrapped(layer, **kwargs):
    return QuantizeWrapper(layer, **kwargs)


def _signed_then_pool():
    inputs = keras.Input((6, 6, 1))
    x = _wrapped(L.Conv2D(2, 3, padding="same"), signed=True, first_layer=True, name="lin")(inputs)
    x = L.MaxPooling2D(2, name="pool")(x)
    return keras.Model(inputs, _wrapped(L.Dense(2), name="fc")(L.Flatten()(x)))


def _reshape_moves_data():
    inputs = keras.Input((4, 4, 1))
    x = _wrapped(L.Conv2D(2, 3, padding="same"), activation="relu", first_layer=True,
                 name="conv")(inputs)
    x = L.Flatten()(L.Reshape((8, 4), name="rs")(x))
    return keras.Model(inputs, _wrapped(L.Dense(2), name="fc")(x))


def _two_branches(add):
    inputs = keras.Input((4, 4, 1))
    a = _wrapped(L.Conv2D(2, 3, padding="same"), activation="relu", first_layer=True,
                 name="a")(inputs)
    b = _wrapped(L.Conv2D(2, 1), activation="relu", name="b")(a)
    x = L.Flatten()(add([a, b]))
    return keras.Model(inputs, _wrapped(L.Dense(2), name="fc")(x))


def _pad_then_flatten():
    inputs = keras.Input((4, 4, 1))
    x = _wrapped(L.Conv2D(2, 3, padding="same"), activation="relu", first_layer=True,
                 name="conv")(inputs)
    x = L.Flatten(name="flat")(L.ZeroPadding2D(1, name="pad")(x))
    return keras.Model(inputs, _wrapped(L.Dense(2), name="fc")(x))


CASES = {
    "pad-not-below-kernel": (lambda: quantize_model(_residual(pad=3)),
                             r"Cannot export layer 'pad' \(ZeroPadding2D\) into layer 'c2': the "
                             r"total padding .* \(3, 3, 3, 3\) must be smaller than the window "
                             r"\(3, 3\).*Fix: pad less"),
    "pool-on-signed": (_signed_then_pool,
                       r"Cannot export layer 'pool' \(MaxPooling2D\): its input holds signed "
                       r"codes .*pools take ReLU outputs. Add a ReLU"),
    "reshape-moves-data": (_reshape_moves_data,
                           r"Cannot export layer 'rs' \(Reshape\): Reshape from \(4, 4, 2\) to "
                           r"\(8, 4\) moves data.*use Flatten"),
    "float-add": (lambda: _two_branches(L.Add(name="plus")),
                  r"Cannot export layer 'plus' \(Add\): this layer has no accelerator "
                  r"instruction.*quantize_model"),
    "add-exponent-gap": (lambda: _two_branches(QuantizedAdd(8, 2.0 ** -24, True, name="plus")),
                         r"Cannot export layer 'plus' \(QuantizedAdd\): its input steps 2\^-\d+, "
                         r"2\^-\d+ and output step 2\^-24 are too far apart: exponent gaps .* "
                         r"received, expected at most 16. Use closer activation_max"),
    "pad-into-flatten": (_pad_then_flatten,
                         r"Cannot export layer 'flat' \(Flatten\): it reads the output of "
                         r"ZeroPadding2D 'pad', which folds only into a convolution or "
                         r"MaxPooling2D. Move the ZeroPadding2D"),
}


@pytest.mark.parametrize("make,match", CASES.values(), ids=list(CASES))
def test_export_refuses(make, match):
    with pytest.raises(ExportError, match=match):
        export_model(make())


@pytest.mark.parametrize("pool,strides", [((3, 2), (3, 2)), ((2, 2), (1, 2)), ((25, 5), (15, 15))],
                         ids=["3x2", "unequal-strides", "ds-cnn-head"])
def test_average_pooling_with_unequal_windows_and_strides(pool, strides):
    """TensorFlow's depthwise conv needs equal strides; the quantized pool subsamples instead."""
    inputs = keras.Input((25, 10, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(L.Rescaling(1 / 255)(inputs))
    x = L.Flatten()(L.AveragePooling2D(pool, strides=strides)(x))
    qmodel = quantize_model(keras.Model(inputs, L.Dense(3)(x)))
    images = np.random.default_rng(0).integers(0, 256, (6, 25, 10, 1)).astype(np.uint8)
    outputs, _ = run_reference(export_model(qmodel), images)
    np.testing.assert_array_equal(outputs, qmodel.predict(images.astype("float32"), verbose=0))


@pytest.mark.parametrize("pool,padding", [("avg", "valid"), ("max", "valid"), ("max", "same")],
                         ids=["avgpool", "maxpool-valid", "maxpool-same"])
def test_pool_over_the_whole_map_with_a_stride_beyond_the_format(pool, padding):
    """ResNet-8 at 96x96 averages a 24x24 map with stride 24: one window, exported with the
    smallest equivalent stride (the format holds 1..15), same output."""
    inputs = keras.Input((24, 24, 1))
    x = L.Conv2D(3, 3, padding="same", activation="relu")(L.Rescaling(1 / 255)(inputs))
    layer = L.AveragePooling2D(24) if pool == "avg" else L.MaxPooling2D(24, padding=padding)
    qmodel = quantize_model(keras.Model(inputs, L.Dense(2)(L.Flatten()(layer(x)))))
    program = export_model(qmodel)
    assert program.layers[1].strides == (1, 1)  # 24 + pads 0 - window 24 + 1
    images = np.random.default_rng(0).integers(0, 256, (4, 24, 24, 1)).astype(np.uint8)
    outputs, _ = run_reference(program, images)
    np.testing.assert_array_equal(outputs, qmodel.predict(images.astype("float32"), verbose=0))
