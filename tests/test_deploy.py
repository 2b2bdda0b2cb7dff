"""Tests of keras_nna.deployment (deploy, events_per_image, model_weight_sparsity) and
keras_nna.model_summary.summary, held to the exported program and the emulator."""

import json
import warnings

import keras
import numpy as np
import pytest

from keras_nna import deployment as deploy_lib
from keras_nna.deployment import DeployResult, deploy, events_per_image, model_weight_sparsity
from keras_nna.export import ExportError, export_model, read_program
from keras_nna.model_summary import summary
from keras_nna.models import count_macs
from keras_nna.models.summary import layer_macs
from keras_nna.quantization import QuantizationPolicy, quantize_model
from keras_nna.runtime import Emulator
from keras_nna.runtime.cost import CostReport, estimate_cost


def _float_model(head):
    """Conv → MaxPool → Separable → Depthwise → (GAP | Flatten → hidden Dense) → Dense."""
    inputs = keras.Input((12, 12, 2))
    x = keras.layers.Rescaling(1 / 255, name="rescaling")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.5, name="conv_bn")(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu",
                                     name="sep")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid", activation="relu", name="dw")(x)
    if head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(7, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(0.1, name="dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))


def _case(head, prune=0.0):
    model = _float_model(head)
    if prune:
        for layer in model.layers:
            for w in layer.weights:
                if "kernel" in w.name:
                    value = keras.ops.convert_to_numpy(w)
                    value[np.abs(value) < np.quantile(np.abs(value), prune)] = 0
                    w.assign(value)
    qmodel = quantize_model(model, QuantizationPolicy(overrides={"sep": {"weight_bits": 6}}))
    images = np.random.default_rng(1).integers(0, 256, (24, 12, 12, 2)).astype(np.uint8)
    images[:, :3] = 0  # some zero pixels, so events differ from pixels
    labels = np.random.default_rng(2).integers(0, 3, 24)
    return qmodel, images, labels


HEADS = pytest.mark.parametrize("head", ["gap", "flatten"], ids=["gap-head", "flatten-head"])


@HEADS
def test_deploy_matches_program_emulator_and_keras(head):
    qmodel, images, labels = _case(head)
    result = deploy(qmodel, images, labels, profile="nna-8core")
    assert isinstance(result, DeployResult) and result.executor == "emulator"
    assert result.bit_exact and result.max_abs_diff == 0.0
    np.testing.assert_array_equal(result.outputs, qmodel.predict(images.astype("float32"),
                                                                 verbose=0))
    outputs, stats = Emulator(export_model(qmodel)).run_with_stats(images)
    np.testing.assert_array_equal(result.outputs, outputs)
    np.testing.assert_array_equal(result.stats, stats)
    assert result.events_per_image == pytest.approx(stats[:, :, 0].sum(1).mean())
    assert result.synops_per_image == pytest.approx(stats[:, :, 1].sum(1).mean())
    assert result.dense_macs_per_image == count_macs(qmodel)
    assert result.accuracy == pytest.approx(np.mean(outputs.argmax(-1) == labels))
    assert result.program_bytes == len(export_model(qmodel).to_bytes())
    assert isinstance(result.cost, CostReport) and result.cost.profile.name == "nna-8core"
    assert result.cost.total == estimate_cost(result.program, stats, "nna-8core").total
    data = json.loads(json.dumps(result.to_dict()))
    assert data["images"] == 24 and data["profile"] == "nna-8core" and data["bit_exact"]
    assert "bit_exact=True" in repr(result) and "nna-8core" in repr(result)
    text = result.table()
    assert "bit-exact" in text and "Dense MACs" in text and "logits" in text


def test_deploy_options_and_errors():
    qmodel, images, labels = _case("gap")
    result = deploy(qmodel, images, profile=None, max_images=5)
    assert result.images == 5 and result.accuracy is None and result.cost is None
    assert "accuracy=None" in repr(result) and result.table().count("\n") == 0
    one_hot = np.eye(3)[labels]
    assert deploy(qmodel, images, one_hot, profile=None).accuracy == \
        deploy(qmodel, images, labels, profile=None).accuracy
    with pytest.raises(ValueError, match="one label per image"):
        deploy(qmodel, images, labels[:3])
    with pytest.raises(ValueError, match="Unknown hardware profile"):
        deploy(qmodel, images, profile="nna-99core")
    with pytest.raises(ValueError, match="max_images"):
        deploy(qmodel, images, max_images=0)
    with pytest.raises(ExportError):
        deploy(_float_model("gap"), images)


def test_deploy_falls_back_to_the_reference_without_the_op(monkeypatch):
    import keras_nna.runtime.emulator as emulator

    qmodel, images, labels = _case("flatten")
    expected = deploy(qmodel, images, labels)
    assert expected.stats.events_in.shape == (24, len(expected.program.layers))
    chosen = deploy(qmodel, images, labels, executor="reference")
    assert chosen.executor == "reference" and chosen.bit_exact

    def broken():
        raise OSError("no op here")

    monkeypatch.setattr(emulator, "load_op_library", broken)
    with pytest.warns(UserWarning, match="numpy reference"):
        result = deploy(qmodel, images, labels)
    assert result.executor == "reference" and result.bit_exact
    np.testing.assert_array_equal(result.stats, expected.stats)
    assert result.cost.total == expected.cost.total
    with pytest.raises(RuntimeError, match="unavailable"):
        deploy(qmodel, images, executor="emulator")


def test_deploy_reports_and_warns_when_not_bit_exact(monkeypatch):
    qmodel, images, _ = _case("gap")
    run = deploy_lib._run_program

    def off_by_one(program, x, executor, limits=None):
        outputs, stats, executor = run(program, x, executor, limits)
        return outputs + 1.0, stats, executor

    monkeypatch.setattr(deploy_lib, "_run_program", off_by_one)
    with pytest.warns(UserWarning, match="bit-exact"):
        result = deploy(qmodel, images)
    assert not result.bit_exact and result.max_abs_diff == 1.0
    assert "NOT bit-exact" in result.table()


@HEADS
def test_events_per_image_equals_the_emulator_count(head):
    qmodel, images, _ = _case(head)
    _, stats = Emulator(export_model(qmodel)).run_with_stats(images)
    assert events_per_image(qmodel, images, batch_size=7) == \
        pytest.approx(stats[:, :, 0].sum(1).mean())


def test_model_weight_sparsity_counts_stored_zeros():
    qmodel, _, _ = _case("flatten", prune=0.5)
    overall, per_layer = model_weight_sparsity(qmodel, per_layer=True)
    assert set(per_layer) == {"conv", "sep", "dw", "hidden", "logits"}
    program = export_model(qmodel)
    codes = [w for rec in program.layers for w in (rec.weights, rec.weights2) if w is not None]
    zeros = sum(int((w == 0).sum()) for w in codes)
    assert overall == pytest.approx(zeros / sum(w.size for w in codes))
    assert overall > 0.45  # about half pruned, plus weights that round to code 0
    float_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    float_model.get_layer("d").kernel.assign(np.array([[0, 1], [0, 0], [2, 3]], "float32"))
    assert model_weight_sparsity(float_model) == pytest.approx(0.5)
    assert model_weight_sparsity(keras.Sequential([keras.Input((3,)),
                                                   keras.layers.ReLU()])) == 0.0


@HEADS
def test_summary_matches_export_macs_and_emulator(head):
    qmodel, images, _ = _case(head, prune=0.3)
    printed = []
    rows = summary(qmodel, images, "nna-1core", print_fn=printed.append)
    by_name = {row["name"]: row for row in rows}
    assert [row["name"] for row in rows] == [l.name for l in qmodel.layers[1:]]
    program = export_model(qmodel)
    stored = read_program(program.to_bytes())
    outputs, stats = Emulator(program).run_with_stats(images)
    report = estimate_cost(program, stats, "nna-1core")
    for i, rec in enumerate(program.layers):
        row = by_name[rec.name]
        assert row["kind"] == rec.kind
        assert row["packed_bytes"] == stored.layers[i].const_bytes == stats[0, i, 3]
        assert row["events_in"] == pytest.approx(stats[:, i, 0].mean())
        assert row["synops"] == pytest.approx(stats[:, i, 1].mean())
        assert row["time_s"] == pytest.approx(report.layers[i]["time_s"])
        assert row["energy_j"] == pytest.approx(report.layers[i]["energy_j"])
        assert row["activation_bits"] == (rec.out_bits or None)
        if rec.w_bits:
            assert row["weight_bits"] == rec.w_bits
            codes = [w for w in (rec.weights, rec.weights2) if w is not None]
            assert row["weight_sparsity"] == pytest.approx(
                sum(int((w == 0).sum()) for w in codes) / sum(w.size for w in codes))
    assert by_name["sep"]["weight_bits"] == 6 and by_name["conv"]["weight_bits"] == 8
    assert {n: r["macs"] for n, r in by_name.items() if r["macs"] is not None} == \
        layer_macs(qmodel)
    assert sum(r["macs"] for r in rows if r["macs"]) == count_macs(qmodel)
    assert sum(r["params"] for r in rows) == qmodel.count_params()
    text = printed[0]
    assert "Events in" in text and "Energy uJ" in text and f"{len(program.to_bytes()):,}" in text
    total_line = [line for line in text.splitlines() if line.startswith("Total")][0]
    assert f"{sum(r['packed_bytes'] or 0 for r in rows):,}" in total_line
    if head == "flatten":
        assert by_name["dropout"]["packed_bytes"] is None
        assert by_name["dropout"]["events_in"] is None


def test_summary_without_images_and_on_a_float_model(capsys):
    qmodel, images, _ = _case("gap")
    rows = summary(qmodel)
    out = capsys.readouterr().out
    assert "Bytes" in out and "Events in" not in out
    assert all("events_in" not in row for row in rows)
    float_model = _float_model("gap")
    rows = summary(float_model)
    out = capsys.readouterr().out
    assert "Not exportable yet" in out and "rescaling" in out
    assert all(row["packed_bytes"] is None for row in rows)
    assert {r["name"]: r["macs"] for r in rows if r["macs"]} == layer_macs(float_model)
    with pytest.raises(ExportError, match="runs the exported program"):
        summary(float_model, images, print_fn=None)
    with pytest.raises(ValueError, match="needs images"):
        summary(qmodel, profile="nna-1core", print_fn=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert summary(qmodel, images[:2], print_fn=None)[0]["events_in"] > 0
