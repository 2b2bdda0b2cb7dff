"""Filter pruning and surgery on residual graphs: producers joined by Add are one group."""

import keras
import numpy as np
import pytest

from keras_nna.models import ResNet8
from keras_nna.quantization import quantize_model
from keras_nna.sparsity import (ConstantSparsity, FilterPruneCallback, add_activity_regularization,
                                channel_groups, compare_models, dead_channels, filter_scores,
                                measure_activation_sparsity, propose_ratios, prune_filters,
                                relu_layers, remove_pruned_filters, sensitivity_analysis)
from keras_nna.sparsity.groups import is_add
from keras_nna.sparsity.surgery import rebuild_channels
from tests.sparsity.helpers import compile_cnn, digits, randomize_bn

L = keras.layers


def residual_cnn(seed=0):
    """a → [b → add1] → [d → add2] (identity shortcuts chain a, b, d) → e (stride 2) → Dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = L.Rescaling(1 / 16, name="rescale")(inp)

    def conv_bn(x, name, filters=8, stride=1):
        x = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=name)(x)
        return L.BatchNormalization(momentum=0.9, name=f"bn_{name}")(x)

    x = L.ReLU(name="relu_a")(conv_bn(x, "a"))
    x = L.ReLU(name="relu1")(L.Add(name="add1")([x, conv_bn(x, "b")]))
    x = L.ReLU(name="relu2")(L.Add(name="add2")([x, conv_bn(x, "d")]))
    x = L.ReLU(name="relu_e")(conv_bn(x, "e", 16, 2))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="residual_cnn")


def _images(model, n=8):
    shape = model.input.shape[1:]
    return np.random.default_rng(0).integers(0, 256 if shape[-1] == 3 else 17,
                                             (n,) + tuple(shape)).astype("float32")


def _kernel_dead(model, name):
    layer = model.get_layer(name)
    return np.all(layer.kernel.numpy().reshape(-1, layer.filters) == 0, axis=0)


def _assert_add_inputs_agree(model):
    for layer in model.layers:
        if is_add(layer):
            channels = {int(t.shape[-1]) for t in layer.input}
            assert len(channels) == 1, (layer.name, channels)


def test_groups_of_chained_identity_shortcuts():
    groups = channel_groups(residual_cnn())
    assert set(groups) == {"a", "e", "logits"}
    g = groups["a"]
    assert g.producers == ["a", "b", "d"] and g.blocked == ""
    assert g.consumers == {"b": "relu_a", "d": "relu1", "e": "relu2"}
    assert {"add1", "add2", "relu1", "relu2"} <= set(g.members)
    assert g.bns == ["bn_a", "bn_b", "bn_d"]


def test_resnet8_groups():
    groups = channel_groups(ResNet8())
    residual = {k: g for k, g in groups.items() if len(g.producers) > 1}
    assert sorted(sorted(g.producers) for g in residual.values()) == [
        ["conv_0", "stage1_conv2"], ["stage2_conv2", "stage2_shortcut"],
        ["stage3_conv2", "stage3_shortcut"]]
    stage2 = next(g for g in residual.values() if "stage2_shortcut" in g.producers)
    assert stage2.bns == ["stage2_bn2"]  # the 1x1 shortcut has no BatchNormalization
    assert set(stage2.consumers) == {"stage3_conv1", "stage3_shortcut"}
    assert not any(g.blocked for k, g in groups.items() if k != "classifier")


@pytest.mark.parametrize("criterion", ["bn_gamma", "l1"])
def test_scores_are_summed_over_the_group(criterion):
    model = randomize_bn(residual_cnn())
    scores = filter_scores(model, criterion)
    assert set(scores) == {"a", "e"}
    if criterion == "bn_gamma":
        expected = sum(np.abs(model.get_layer(f"bn_{n}").gamma.numpy()) for n in "abd")
    else:
        expected = sum(np.abs(model.get_layer(n).kernel.numpy().reshape(-1, 8)).mean(0)
                       for n in "abd")
    np.testing.assert_allclose(scores["a"], expected, rtol=1e-6)
    assert set(filter_scores(model, criterion, layers=["d"])) == {"a"}  # any producer names it


@pytest.mark.parametrize("criterion", ["bn_gamma", "l1"])
def test_prune_and_remove_residual_cnn(criterion):
    model = randomize_bn(residual_cnn())
    assert prune_filters(model, 0.5, criterion=criterion) == {"a": 4, "e": 8}
    pruned = _kernel_dead(model, "a")
    assert pruned.sum() == 4
    for name in "bd":  # the same filters, in every producer of the group
        np.testing.assert_array_equal(_kernel_dead(model, name), pruned)
        np.testing.assert_array_equal(model.get_layer(f"bn_{name}").gamma.numpy()[pruned], 0)
    small = remove_pruned_filters(model)
    assert [small.get_layer(n).filters for n in "abde"] == [4, 4, 4, 8]
    _assert_add_inputs_agree(small)
    x = _images(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


def _kill_channel(model, name, channel):
    """Zeroes a filter and the gamma/beta of its BN, as prune_filters does."""
    for v in (model.get_layer(name).kernel, model.get_layer(f"bn_{name}").gamma,
              model.get_layer(f"bn_{name}").beta):
        value = v.numpy()
        value[..., channel] = 0.0
        v.assign(value)


def test_a_channel_alive_in_one_producer_is_kept():
    model = randomize_bn(residual_cnn())
    for name in "ab":  # channel 3 dead in a and b, but d still writes it into add2
        _kill_channel(model, name, 3)
    assert not dead_channels(model)["a"].any()
    assert remove_pruned_filters(model).get_layer("b").filters == 8
    _kill_channel(model, "d", 3)
    assert dead_channels(model)["a"].tolist() == [i == 3 for i in range(8)]
    assert [remove_pruned_filters(model).get_layer(n).filters for n in "abd"] == [7, 7, 7]


def test_resnet8_prune_and_remove():
    model = randomize_bn(ResNet8())
    counts = prune_filters(model, 0.5, criterion="bn_gamma")
    assert "classifier" not in counts and sum(counts.values()) == 8 + 8 + 16 + 16 + 32 + 32
    small = remove_pruned_filters(model)
    _assert_add_inputs_agree(small)
    assert small.get_layer("stage3_shortcut").filters == small.get_layer("stage3_conv2").filters \
        == 32
    report = compare_models(model, small)
    assert report["params_after"] < 0.35 * report["params_before"]
    x = _images(model)
    np.testing.assert_allclose(small.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_replicating_channels_keeps_add_inputs_equal():
    model = randomize_bn(residual_cnn())
    groups = channel_groups(model)
    index = np.array([0, 1, 2, 3, 4, 5, 6, 7, 7])
    scale = np.array([1.0] * 7 + [0.5, 0.5])
    wide = rebuild_channels(model, groups, {"a": index}, {"a": scale})
    assert [wide.get_layer(n).filters for n in "abd"] == [9, 9, 9]
    _assert_add_inputs_agree(wide)
    x = _images(model)
    np.testing.assert_allclose(wide.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_add_fed_by_the_model_input_is_left_alone():
    inp = keras.Input((6, 6, 4), name="image")
    a = L.Conv2D(4, 3, padding="same", name="a")(inp)
    x = L.ReLU(name="r")(L.Add(name="add")([inp, a]))
    x = L.Conv2D(3, 1, name="c")(x)
    model = keras.Model(inp, L.Dense(2, name="d")(L.GlobalAveragePooling2D()(x)))
    g = channel_groups(model)["a"]
    assert g.blocked == "'add' (Add) also adds ['image'], whose channels no prunable layer creates"
    assert set(filter_scores(model, "l1")) == {"c"}
    with pytest.raises(ValueError, match=r"\['a'\].*Valid names.*\['c'\]"):
        prune_filters(model, 0.5, criterion="l1", layers=["a"])


def test_filter_prune_callback_on_residual_cnn():
    x, y, x_te, _ = digits()
    model = compile_cnn(residual_cnn())
    cb = FilterPruneCallback(ConstantSparsity(0.5, begin_step=2, end_step=2, frequency=1),
                             criterion="bn_gamma")
    model.fit(x[:128], y[:128], epochs=2, batch_size=32, verbose=0, callbacks=[cb])
    assert cb.sparsities() == {"a": 0.5, "e": 0.5}
    pruned = _kernel_dead(model, "a")
    assert pruned.sum() == 4
    for name in "bd":
        np.testing.assert_array_equal(_kernel_dead(model, name), pruned)
    small = remove_pruned_filters(model)
    _assert_add_inputs_agree(small)
    np.testing.assert_allclose(small.predict(x_te[:32], verbose=0),
                               model.predict(x_te[:32], verbose=0), rtol=1e-4, atol=1e-4)


def test_float_add_outputs_are_measured():
    # ResNet-8: every Add is followed by its ReLU, which is the measured ReLU output.
    names = [n for n in measure_activation_sparsity(ResNet8(), np.zeros((1, 32, 32, 3))) if
             n != "total"]
    assert {"stage1_relu", "stage2_relu", "stage3_relu"} <= set(names)
    assert not any(n.endswith("_add") for n in names)
    assert {"stage1_relu", "stage3_relu"} <= set(relu_layers(ResNet8()))
    # A linear Add (no ReLU after it) gives signed codes: -2.0 is an event, not a zero.
    inp = keras.Input((4,))
    a = L.Dense(4, use_bias=False, kernel_initializer="identity", name="a")(inp)
    b = L.Dense(4, use_bias=False, kernel_initializer="identity", name="b")(a)
    model = keras.Model(inp, L.Dense(2, name="out")(L.Add(name="add")([a, b])))
    x = np.array([[-1.0, 0.0, 0.2, 3.0]], "float32")  # add = [-2, 0, 0.4, 6]
    result = measure_activation_sparsity(model, x, quantization_step=0.25)
    assert list(result) == ["add", "total"]
    assert result["add"]["events"] == 3 and result["add"]["zeros"] == 0.25


def test_quantized_adds_are_measured_and_regularized():
    qmodel = quantize_model(residual_cnn())
    assert [type(qmodel.get_layer(n)).__name__ for n in ("add1", "add2")] == ["QuantizedAdd"] * 2
    measured = measure_activation_sparsity(qmodel, digits()[2][:8])
    assert {"add1", "add2"} <= set(measured)
    assert relu_layers(qmodel) == ["a", "add1", "add2", "e"]  # the ReLUs fused into the adds
    attached = add_activity_regularization(qmodel, hoyer=0.1, max_value=3.75)
    assert set(attached) == {"a", "add1", "add2", "e"}
    assert qmodel.get_layer("add2").activity_regularizer is attached["add2"]


def test_filter_pruning_of_a_quantized_residual_model():
    qmodel = quantize_model(randomize_bn(residual_cnn()))
    groups = channel_groups(qmodel)
    assert groups["a"].producers == ["a", "b", "d"] and groups["a"].members == ["add1", "add2"]
    expected = sum(np.abs(qmodel.get_layer(n).batch_norm.gamma.numpy()) for n in "abd")
    np.testing.assert_allclose(filter_scores(qmodel)["a"], expected, rtol=1e-6)
    assert prune_filters(qmodel, 0.5) == {"a": 4, "e": 8}
    dead = [np.all(qmodel.get_layer(n).layer.kernel.numpy().reshape(-1, 8) == 0, axis=0)
            for n in "abd"]
    assert dead[0].sum() == 4 and all(np.array_equal(d, dead[0]) for d in dead)
    probe = keras.Model(qmodel.input, qmodel.get_layer("add2").output)
    out = keras.ops.convert_to_numpy(probe(digits()[2][:8], training=False))
    assert np.all(out[..., dead[0]] == 0) and np.any(out[..., ~dead[0]] != 0)


def test_sensitivity_of_residual_groups():
    model = randomize_bn(residual_cnn())
    before = [w.copy() for w in model.get_weights()]
    x, y = digits()[2][:32], digits()[3][:32]
    table = sensitivity_analysis(model, x, y, ratios=(0.5,), kind="filters", criterion="l1")
    assert list(table["metrics"]) == ["a", "e"]  # one entry per group, keyed by its first producer
    assert set(propose_ratios(table, max_drop=1.0).values()) == {0.5}
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
