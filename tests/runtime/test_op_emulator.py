"""Emulator and EmulatorLayer: inputs, graph/tf.data use, Keras integration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_nna.runtime.emulator as emulator_module
from keras_nna.export.program import LayerStats
from keras_nna.runtime import Emulator, EmulatorLayer, STAT_NAMES
from keras_nna.runtime.emulator import run_program


@pytest.fixture(scope="module")
def case(nna):
    rng = np.random.default_rng(11)
    data, layers, in_shape, images = nna.random_program(
        rng, kinds=["conv", "separable", "maxpool", "flatten", "dense"], batch=5)
    ref_out, ref_stats = nna.run_reference(in_shape, layers, images)
    return data, in_shape, images, ref_out, ref_stats


@pytest.fixture(scope="module")
def spatial_case(nna):
    rng = np.random.default_rng(12)
    data, layers, in_shape, images = nna.random_program(rng, kinds=["conv", "depthwise"], batch=3,
                                                        in_shape=(8, 7, 2))
    return data, layers, images


def test_properties(case):
    data, in_shape, _, ref_out, _ = case
    emu = Emulator(data)
    assert emu.input_shape == in_shape and emu.input_bits == 8
    assert emu.output_shape == ref_out.shape[1:]
    assert emu.layer_kinds == ("conv", "separable", "maxpool", "flatten", "dense")
    assert emu.layer_names[0] == "conv_0" and emu.n_layers == 5
    assert emu.program == data
    assert "Emulator(" in repr(emu)


def test_spatial_output_shape(spatial_case):
    data, layers, images = spatial_case
    emu = Emulator(data)
    assert emu.output_shape == layers[-1]["out"]
    assert emu(images).shape == (3,) + layers[-1]["out"]


@pytest.mark.parametrize("source", ["bytes", "bytearray", "path", "to_bytes"])
def test_program_sources(case, tmp_path, source):
    data, _, images, ref_out, _ = case
    if source == "path":
        path = tmp_path / "p.nnab"
        path.write_bytes(data)
        program = str(path)
    elif source == "to_bytes":
        program = type("P", (), {"to_bytes": lambda self: data})()
    else:
        program = {"bytes": data, "bytearray": bytearray(data)}[source]
    np.testing.assert_array_equal(Emulator(program)(images), ref_out)


def test_invalid_program_fails_at_construction(nna, case):
    with pytest.raises(tf.errors.InvalidArgumentError, match="CRC"):
        Emulator(case[0][:-1] + bytes([case[0][-1] ^ 1]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="too short"):
        Emulator(b"NNAB")
    with pytest.raises(TypeError, match="to_bytes"):
        Emulator(123)
    with pytest.raises(ValueError, match="mode"):
        Emulator(case[0], mode="turbo")


def test_run_with_stats(case):
    data, _, images, ref_out, ref_stats = case
    out, stats = Emulator(data).run_with_stats(images)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert stats.dtype == np.int64 and stats.shape[2] == len(STAT_NAMES)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(stats, ref_stats)


@pytest.mark.parametrize("dtype", ["int32", "float32", "float64", "int64"])
def test_whole_number_inputs_are_converted(case, dtype):
    data, _, images, ref_out, _ = case
    np.testing.assert_array_equal(Emulator(data)(images.astype(dtype)), ref_out)


@pytest.mark.parametrize("bad,match", [
    (lambda x: x.astype(np.float32) + 0.5, "whole numbers"),
    (lambda x: x.astype(np.int32) + 256, "whole numbers"),
    (lambda x: x.astype(np.int32) - 256, "whole numbers"),
    (lambda x: np.full(x.shape, np.nan, np.float32), "whole numbers"),
    (lambda x: x[0], "x\\[None\\]"),
    (lambda x: x[:, :-1], "Expected images of shape"),
    (lambda x: x.astype(str), "dtype"),
], ids=["fraction", "above", "negative", "nan", "rank3", "height", "strings"])
def test_bad_inputs_have_clear_errors(case, bad, match):
    data, _, images, _, _ = case
    with pytest.raises(ValueError, match=match) as err:
        Emulator(data)(bad(images))
    if "whole" in match:
        assert "np.clip" in str(err.value)


def test_tensor_in_tensor_out(case):
    data, _, images, ref_out, _ = case
    out = Emulator(data)(tf.constant(images))
    assert tf.is_tensor(out)
    np.testing.assert_array_equal(out.numpy(), ref_out)


def test_tf_function(case):
    data, in_shape, images, ref_out, ref_stats = case
    emu = Emulator(data)

    @tf.function(input_signature=[tf.TensorSpec((None,) + in_shape, tf.uint8)])
    def f(x):
        return emu.run_with_stats(x)

    out, stats = f(tf.constant(images))
    assert f.get_concrete_function().structured_outputs[0].shape.as_list() == [None, *ref_out.shape[1:]]
    np.testing.assert_array_equal(out.numpy(), ref_out)
    np.testing.assert_array_equal(stats.numpy(), ref_stats)


def test_tf_function_float_input_checked_at_run_time(case):
    data, _, images, ref_out, _ = case
    emu = Emulator(data)
    f = tf.function(lambda x: emu(x))
    np.testing.assert_array_equal(f(tf.constant(images, tf.float32)).numpy(), ref_out)
    with pytest.raises(tf.errors.InvalidArgumentError, match="whole-number"):
        f(tf.constant(images, tf.float32) + 0.25)


def test_tf_data_map(case):
    data, _, images, ref_out, _ = case
    emu = Emulator(data)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(2).map(emu)
    out = np.concatenate([b.numpy() for b in ds])
    np.testing.assert_array_equal(out, ref_out)


def test_modes_identical(case):
    data, _, images, _, _ = case
    results = [Emulator(data, mode=m).run_with_stats(images) for m in ("event", "dense", "auto")]
    for out, stats in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(stats, results[0][1])


def test_layer_in_functional_model(case, tmp_path):
    data, in_shape, images, ref_out, _ = case
    inputs = keras.Input(in_shape, dtype="uint8")
    outputs = EmulatorLayer(data, name="emu")(inputs)
    assert tuple(outputs.shape) == (None,) + ref_out.shape[1:]
    model = keras.Model(inputs, outputs)
    np.testing.assert_array_equal(model.predict(images, verbose=0), ref_out)
    np.testing.assert_array_equal(model(images).numpy(), ref_out)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), ref_out)


def test_layer_float_input_and_stats(case):
    data, in_shape, images, ref_out, ref_stats = case
    inputs = keras.Input(in_shape)  # float32 pixels 0..255
    out, stats = EmulatorLayer(data, return_stats=True)(inputs)
    assert tuple(stats.shape) == (None, 5, 6) and stats.dtype == "int64"
    model = keras.Model(inputs, [out, stats])
    got_out, got_stats = model.predict(images.astype(np.float32), verbose=0)
    np.testing.assert_array_equal(got_out, ref_out)
    np.testing.assert_array_equal(got_stats, ref_stats)


def test_layer_config_round_trip(case):
    data, _, images, ref_out, _ = case
    layer = EmulatorLayer(data, mode="event", name="emu")
    config = layer.get_config()
    assert isinstance(config["program"], str) and config["mode"] == "event"
    clone = EmulatorLayer.from_config(config)
    assert clone.emulator.program == data and clone.name == "emu"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(restored, EmulatorLayer)
    np.testing.assert_array_equal(restored(images).numpy(), ref_out)


@pytest.mark.slow
def test_compile_on_first_use(tmp_path):
    """The fallback build (no prebuilt .so) compiles the sources with tf.sysconfig flags."""
    from keras_nna.runtime import op

    target = tmp_path / "tf" / "_nna_ops-test.so"
    op._compile(str(target))
    assert target.stat().st_size > 10_000
    assert not [p for p in target.parent.iterdir() if p.name != target.name]  # no temp leftovers


def test_run_with_stats_names_the_columns(case):
    data, _, images, _, ref_stats = case
    _, stats = Emulator(data).run_with_stats(images)
    assert isinstance(stats, LayerStats) and stats.names == STAT_NAMES
    for i, name in enumerate(STAT_NAMES):
        np.testing.assert_array_equal(getattr(stats, name), ref_stats[:, :, i])
    np.testing.assert_array_equal(stats[:, :, 0], stats.events_in)  # old-style indexing still works
    assert stats.summary()["events_in"] == float(ref_stats[:, :, 0].sum(1).mean())
    _, tensor_stats = Emulator(data).run_with_stats(tf.constant(images))
    assert tf.is_tensor(tensor_stats)


@pytest.mark.parametrize("executor", ["auto", "emulator", "reference"])
def test_run_program_executors_agree(case, executor):
    data, _, images, ref_out, ref_stats = case
    out, stats, used = run_program(data, images, executor)
    assert used == ("reference" if executor == "reference" else "emulator")
    assert isinstance(stats, LayerStats)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(stats, ref_stats)
    out1, _, _ = run_program(data, images[0], executor)  # one image gets a batch axis
    np.testing.assert_array_equal(out1, ref_out[:1])


def test_run_program_falls_back_without_the_op(case, monkeypatch):
    data, _, images, ref_out, _ = case

    def missing():
        raise RuntimeError("keras_nna: the emulator op is not compiled and no C++ compiler was found.")

    monkeypatch.setattr(emulator_module, "load_op_library", missing)
    out, _, used = run_program(data, images)
    assert used == "reference"
    np.testing.assert_array_equal(out, ref_out)
    with pytest.raises(RuntimeError, match="op is unavailable \\(keras_nna: the emulator op is not "
                                           "compiled.*executor='reference'"):
        run_program(data, images, "emulator")
    with pytest.raises(ValueError, match="executor must be one of auto, emulator, reference. "
                                         "Received: executor='gpu'"):
        run_program(data, images, "gpu")


def test_program_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="program file '.*nope.nnab' not found"):
        Emulator(str(tmp_path / "nope.nnab"))
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Emulator(tmp_path)
    with pytest.raises(FileNotFoundError, match="program file '.*nope.nnab' not found"):
        EmulatorLayer(str(tmp_path / "nope.nnab"))  # neither a file nor base64
