"""quantize_model on branching graphs: residual Adds, signed codes, the small layers (issue 14).

Every hidden QuantizeWrapper / QuantizedAdd output of a quantized model must lie exactly on its
grid in inference mode (codes * step inside the code range), and every QuantizedAdd output must
equal the integer formula of docs/quantization.md applied to its inputs' codes.
"""

import keras
import numpy as np
import pytest

from keras_nna.quantization import (QuantizationPolicy, QuantizedAdd,
                                    QuantizedGlobalAveragePooling2D, QuantizeWrapper,
                                    quantize_model)

L = keras.layers


def _cbn(x, filters, name, relu=True, strides=1):
    x = L.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = L.BatchNormalization(name=f"{name}_bn")(x)
    return L.ReLU(name=f"{name}_relu")(x) if relu else x


def _resnet_block():
    """conv-BN-ReLU, conv-BN (signed), Add with the shortcut, ReLU (fused): ResNet's identity block."""
    inputs = keras.Input((8, 8, 1))
    x = _cbn(L.Rescaling(1 / 255)(inputs), 4, "stem")
    y = _cbn(x, 4, "c1")
    y = _cbn(y, 4, "c2", relu=False)
    x = L.Activation("relu", name="add_relu")(L.Add(name="add")([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(3, name="fc")(x))


def _linear_bottleneck():
    """MobileNetV2-style: two signed projections added (signed Add) feeding a conv."""
    inputs = keras.Input((8, 8, 1))
    x = _cbn(inputs, 4, "stem", relu=False)
    y = _cbn(_cbn(x, 8, "expand"), 4, "project", relu=False)
    x = L.Add(name="add")([x, y])
    x = _cbn(x, 6, "head")
    x = L.Flatten()(x)
    return keras.Model(inputs, L.Dense(3, name="fc")(x))


def _images(n=4, shape=(8, 8, 1), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("float32")


def _coded_layers(qmodel):
    return [layer for layer in qmodel.layers
            if isinstance(layer, QuantizedAdd)
            or (isinstance(layer, QuantizeWrapper) and layer.activation_step is not None)]


def _grid(layer):
    if isinstance(layer, QuantizedAdd):
        return layer.bits, layer.step, layer.signed
    return layer.activation_bits, layer.activation_step, layer.signed


def _integer_add(qa, fa, qb, fb, bits, fo, relu):
    """docs/quantization.md, Residual Add (exact integers)."""
    big_f = max(fa, fb)
    total = qa * 2 ** (big_f - fa) + qb * 2 ** (big_f - fb)
    d = big_f - fo
    v = (total + 2 ** (d - 1)) // 2**d if d > 0 else total * 2 ** (-d)
    lo, hi = (0, 2**bits - 1) if relu else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return np.clip(v, lo, hi)


def assert_on_grid(qmodel, images):
    """Every coded output is codes * step in range; every QuantizedAdd equals the integer formula."""
    layers = _coded_layers(qmodel)
    probe = keras.Model(qmodel.inputs, [layer.output for layer in layers])
    values = dict(zip([layer.name for layer in layers], probe.predict(images, verbose=0)))
    grids = {}
    for layer in layers:
        bits, step, signed = _grid(layer)
        codes = values[layer.name].astype(np.float64) / step
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        np.testing.assert_array_equal(codes, np.round(codes), err_msg=layer.name)
        assert lo <= codes.min() and codes.max() <= hi, layer.name
        grids[id(layer.output)] = (codes.astype(np.int64), -int(np.log2(step)))
    for layer in layers:
        if isinstance(layer, QuantizedAdd):
            (qa, fa), (qb, fb) = (grids[id(t)] for t in layer.input)
            (q, fo) = grids[id(layer.output)]
            np.testing.assert_array_equal(q, _integer_add(qa, fa, qb, fb, layer.bits, fo, layer.relu))
    return layers


def _fit_one_step(qmodel, images, classes):
    qmodel.compile(keras.optimizers.SGD(0.01),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in qmodel.trainable_weights]
    history = qmodel.fit(images, np.arange(len(images)) % classes, batch_size=len(images),
                         epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, qmodel.trainable_weights))


def test_resnet_block_structure_and_grid():
    # activation_max 8 for the Add: step 0.5 while its inputs have steps 0.25 and 0.5, so the
    # integer formula's rounding shift (d = 1) is exercised.
    qmodel = quantize_model(_resnet_block(), QuantizationPolicy(overrides={"add": {"activation_max": 8.0}}))
    add = qmodel.get_layer("add")
    assert isinstance(add, QuantizedAdd) and (add.bits, add.step, add.relu) == (4, 0.5, True)
    assert (qmodel.get_layer("c2").signed, qmodel.get_layer("c2").activation_step) == (True, 0.5)
    assert not qmodel.get_layer("c1").signed and qmodel.get_layer("fc").activation_step is None
    assert not any(isinstance(layer, (L.ReLU, L.Activation, L.Add)) for layer in qmodel.layers)
    images = _images()
    _fit_one_step(qmodel, images, 3)
    assert_on_grid(qmodel, images)


def test_linear_bottleneck_signed_add_feeds_a_conv():
    qmodel = quantize_model(_linear_bottleneck(), QuantizationPolicy(
        overrides={"add": {"activation_bits": 8, "activation_max": 2.0}}))
    add = qmodel.get_layer("add")
    assert (add.bits, add.step, add.relu, add.signed) == (8, 2.0**-6, False, True)
    assert qmodel.get_layer("stem").signed and qmodel.get_layer("project").signed
    layers = assert_on_grid(qmodel, _images())
    assert sum(layer.signed for layer in layers) == 3


@pytest.mark.parametrize("jit", [False, True], ids=["eager_graph", "xla"])
def test_residual_save_load_identical(tmp_path, jit):
    qmodel = quantize_model(_resnet_block())
    images = _images()
    expected = qmodel.predict(images, verbose=0)
    qmodel.save(tmp_path / "r.keras")
    loaded = keras.models.load_model(tmp_path / "r.keras")  # no custom_objects needed
    loaded.compile(jit_compile=jit)
    np.testing.assert_array_equal(loaded.predict(images, verbose=0), expected)
    assert loaded.get_layer("c2").signed and loaded.get_layer("add").relu


@pytest.mark.parametrize("relu,ok", [(lambda: L.ReLU(max_value=6.0), True),
                                     (lambda: L.ReLU(max_value=2.0), False)],
                         ids=["cap_above_range", "cap_below_range"])
def test_relu_cap_after_add(relu, ok):
    inputs = keras.Input((4, 4, 1))
    x = _cbn(inputs, 2, "a")
    x = relu()(L.Add(name="add")([x, _cbn(x, 2, "b", relu=False)]))
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(x)))
    if ok:
        assert quantize_model(model).get_layer("add").relu
    else:
        with pytest.raises(ValueError, match=r"max_value=2.0 is below the quantized range 3.75 of "
                                             r"'add'.*activation_max"):
            quantize_model(model)


def _tail_model(tail, shape=(6, 6, 1)):
    inputs = keras.Input(shape)
    x = L.Conv2D(2, 3, activation="relu", name="c0")(inputs)
    return keras.Model(inputs, tail(x))


def _signed(x):
    return L.Conv2D(2, 1, name="lin")(x)


REFUSALS = {
    "add_three_inputs": (lambda x: L.Dense(2)(L.Flatten()(L.Add(name="bad")([x, x, _signed(x)]))),
                         r"'bad' \(Add\): it adds 3 tensors, expected exactly 2.*chain"),
    "add_broadcast": (lambda x: L.Dense(2)(L.Flatten()(L.Add(name="bad")([
        x, L.GlobalAveragePooling2D(keepdims=True)(x)]))),
        r"'bad' \(Add\): its inputs have shapes \(4, 4, 2\) and \(1, 1, 2\), expected the same"),
    "maxpool_signed": (lambda x: L.Flatten()(L.MaxPooling2D(name="bad")(_signed(x))),
                       r"'bad' \(MaxPooling2D\): its input is signed codes.*pools take ReLU outputs"),
    "avgpool_signed": (lambda x: L.Flatten()(L.AveragePooling2D(2, name="bad")(_signed(x))),
                       r"'bad' \(AveragePooling2D\).*pools take ReLU outputs"),
    "gap_signed": (lambda x: L.Dense(2)(L.GlobalAveragePooling2D(name="bad")(_signed(x))),
                   r"'bad' \(GlobalAveragePooling2D\).*pools take ReLU outputs; put a ReLU"),
    "zeropad_before_flatten": (lambda x: L.Dense(2)(L.Flatten(name="f")(L.ZeroPadding2D(name="bad")(x))),
                               r"'bad' \(ZeroPadding2D\): it feeds 'f' \(Flatten\), expected exactly "
                               r"one Conv2D.*move the padding"),
    "zeropad_two_consumers": (lambda x: (lambda p: L.Add()([L.Conv2D(2, 3, name="u")(p),
                                                             L.Conv2D(2, 3, name="v")(p)]))(
        L.ZeroPadding2D(name="bad")(x)), r"'bad' \(ZeroPadding2D\): it feeds 'u' \(Conv2D\), 'v'"),
    "reshape_moves_memory": (lambda x: L.Reshape((2, 4, 4), name="bad")(x),
                             r"'bad' \(Reshape\): it reshapes \(4, 4, 2\) to \(2, 4, 4\).*use Flatten"),
    "concatenate": (lambda x: L.Concatenate(name="bad")([x, x]),
                    r"'bad' \(Concatenate\) \(concatenation is not supported yet; merge branches "
                    r"with Add"),
    "multiply": (lambda x: L.Multiply(name="bad")([x, x]),
                 r"'bad' \(Multiply\) \(element-wise products"),
    "relu_after_shared_add": (lambda x: (lambda a: L.Add()([L.ReLU(name="bad")(a), a]))(
        L.Add()([x, _signed(x)])), r"'bad' \(ReLU\): ReLU must directly follow.*or an Add"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_name_layer_expectation_and_fix(case):
    tail, match = REFUSALS[case]
    with pytest.raises(ValueError, match=match):
        quantize_model(_tail_model(tail))


def test_add_of_the_raw_input_is_refused():
    inputs = keras.Input((4, 4, 1))
    x = L.Add(name="bad")([inputs, L.Conv2D(1, 1, name="c")(inputs)])
    model = keras.Model(inputs, L.Dense(2)(L.Flatten()(L.ReLU()(x))))
    with pytest.raises(ValueError, match=r"'bad' \(Add\): one of its inputs is the model input "
                                         r"\(float pixels\), expected activation codes.*put a conv"):
        quantize_model(model)


def _padded(x):
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", name="dw")(x)
    x = L.ReLU()(x)
    x = L.ZeroPadding2D(1, name="pool_pad")(x)
    return L.MaxPooling2D(3, strides=2, name="pool")(x)


SMALL_LAYERS = {
    "zeropad_conv_and_maxpool": (lambda x: L.Dense(2)(L.Flatten()(_padded(x))), ["pad", "pool_pad"]),
    "zeropad_on_input": (None, ["in_pad"]),
    "reshape_to_vector": (lambda x: L.Dense(2)(L.Reshape((-1,), name="r")(x)), ["r"]),
    "reshape_vector_to_map": (lambda x: L.Reshape((2,), name="r2")(L.Conv2D(2, 1, name="head")(
        L.Reshape((1, 1, 32), name="r")(L.Flatten()(x)))), ["r", "r2"]),
    "gap_keepdims": (lambda x: L.Flatten()(L.Conv2D(2, 1, name="head")(
        L.GlobalAveragePooling2D(keepdims=True, name="gap")(x))), []),
}


@pytest.mark.parametrize("case", sorted(SMALL_LAYERS))
def test_small_layers_kept_and_on_grid(case):
    tail, kept = SMALL_LAYERS[case]
    if tail is None:  # ResNet's stem: ZeroPadding2D on the raw input before the first conv
        inputs = keras.Input((6, 6, 1))
        x = L.Conv2D(2, 3, strides=2, name="c0")(L.ZeroPadding2D(1, name="in_pad")(inputs))
        model = keras.Model(inputs, L.Dense(2)(L.Flatten()(L.ReLU()(x))))
    else:
        model = _tail_model(tail)
    qmodel = quantize_model(model)
    for name in kept:
        assert type(qmodel.get_layer(name)) is type(model.get_layer(name))
        assert qmodel.get_layer(name).compute_dtype == "float32"
    if case == "gap_keepdims":
        gap = qmodel.get_layer("gap")
        assert isinstance(gap, QuantizedGlobalAveragePooling2D) and gap.keepdims
        assert tuple(gap.output.shape) == (None, 1, 1, 2)
    if tail is None:
        assert qmodel.get_layer("c0").first_layer
    images = _images(shape=(6, 6, 1))
    expected = model.predict(images, verbose=0)  # shapes agree with the float model
    assert qmodel.predict(images, verbose=0).shape == expected.shape
    assert_on_grid(qmodel, images)


@pytest.mark.parametrize("tail", [lambda x: L.Activation(None)(L.Reshape((2,))(
    L.Conv2D(2, 1, name="head")(L.GlobalAveragePooling2D(keepdims=True)(x)))),
    lambda x: L.Dropout(0.1)(L.Dense(2, name="head")(L.Flatten()(x)))],
    ids=["mobilenet_head", "dropout_after_logits"])
def test_output_through_passthrough_layers_stays_raw(tail):
    wrapper = quantize_model(_tail_model(tail)).get_layer("head")
    assert (wrapper.signed, wrapper.activation_step) == (False, None)


def test_applications_softmax_refusal_says_classifier_activation_none():
    model = keras.applications.MobileNet(input_shape=(32, 32, 3), alpha=0.25, weights=None,
                                         classes=2)
    with pytest.raises(ValueError, match=r"'predictions'.*activation 'softmax'.*for "
                                         r"keras.applications models pass classifier_activation=None"):
        quantize_model(model)


APPLICATIONS = {
    "mobilenet": (lambda: keras.applications.MobileNet(alpha=0.25, **APP_ARGS), 27, 0, 0),
    "mobilenet_v2": (lambda: keras.applications.MobileNetV2(alpha=0.35, **APP_ARGS), 62, 27, 10),
    "resnet50": (lambda: keras.applications.ResNet50(**APP_ARGS), 69, 20, 16),
}
APP_ARGS = {"input_shape": (96, 96, 3), "weights": None, "classes": 2,
            "classifier_activation": None}


@pytest.mark.parametrize("name", [  # all slow: tests/test_applications.py runs MobileNet by default
    pytest.param("mobilenet", marks=pytest.mark.slow),
    pytest.param("mobilenet_v2", marks=pytest.mark.slow),
    pytest.param("resnet50", marks=pytest.mark.slow),
])
def test_keras_applications_quantize_predict_fit_on_grid(name):
    """keras.applications models (no Rescaling: the first layer takes raw 0..255 pixels)."""
    make, n_coded, n_signed, n_adds = APPLICATIONS[name]
    qmodel = quantize_model(make())
    first = next(layer for layer in qmodel.layers if isinstance(layer, QuantizeWrapper))
    assert first.first_layer and first.input_scale == 1.0
    images = _images(n=2, shape=(96, 96, 3))
    logits = qmodel.predict(images, verbose=0)
    assert logits.shape == (2, 2) and np.isfinite(logits).all()
    layers = assert_on_grid(qmodel, images)
    assert (len(layers), sum(layer.signed for layer in layers),
            sum(isinstance(layer, QuantizedAdd) for layer in layers)) == (n_coded, n_signed, n_adds)
    _fit_one_step(qmodel, images, 2)


def test_add_steps_too_far_apart_are_refused_at_quantize_time():
    """The ADD aligns its steps with shifts of at most 16: a policy asking for more fails now,
    naming the Add and both steps, not later at export or emulation."""
    model = _tail_model(lambda x: L.Flatten()(L.ReLU()(L.Add(name="bad")([x, _signed(x)]))))
    policy = QuantizationPolicy(overrides={"bad": {"activation_max": 2.0 ** 20}})
    with pytest.raises(ValueError, match=r"'bad' \(Add\): its input steps 0\.25 and 0\.5 and "
                                         r"output step 65536\.0 are more than 2\^16 apart"):
        quantize_model(model, policy)
    quantize_model(model, QuantizationPolicy(overrides={"bad": {"activation_max": 2.0 ** 12}}))


def test_nested_residual_model_is_flattened_with_the_outer_rescaling_folded():
    """One graph walk (layer_kinds.layer_calls) for quantize_model and export_model: a residual
    block inside a nested model connects to the outer tensors of its call."""
    from keras_nna import deploy

    i = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", activation="relu")(i)
    inner = keras.Model(i, L.ReLU()(L.Add()([x, L.Conv2D(4, 1)(x)])), name="inner")
    outer_in = keras.Input((8, 8, 3))
    y = L.Dense(2)(L.Flatten()(inner(L.Rescaling(1 / 255)(outer_in))))
    qmodel = quantize_model(keras.Model(outer_in, y))
    assert qmodel.layers[1].input_scale == pytest.approx(1 / 255)
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype(np.uint8)
    result = deploy(qmodel, images, profile=None, executor="reference")
    assert result.bit_exact
    assert [r.kind for r in result.program.layers] == ["conv", "conv", "add", "flatten", "dense"]
