import json

import numpy as np
import pytest

from keras_nna.sparsity import plot_sensitivity, propose_ratios, sensitivity_analysis
from tests.sparsity.helpers import compile_cnn, digits, small_cnn


@pytest.fixture(scope="module")
def trained():
    x, y, x_te, y_te = digits()
    model = compile_cnn(small_cnn())
    model.fit(x, y, epochs=4, batch_size=64, verbose=0)
    return model, x_te[:200], y_te[:200]


@pytest.mark.parametrize("kind", ["weights", "filters"])
def test_table_restores_weights_and_degrades_with_ratio(trained, kind):
    model, x, y = trained
    before = [w.copy() for w in model.get_weights()]
    table = sensitivity_analysis(model, x, y, ratios=(0.1, 0.9), kind=kind)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    json.dumps(table)
    assert table["baseline"] > 0.5
    expected = ["conv0", "conv1", "conv2"] + (["logits"] if kind == "weights" else [])
    assert list(table["metrics"]) == expected
    drops = [table["metrics"][n][0] - table["metrics"][n][1] for n in expected]
    assert max(drops) > 0.05  # pruning 90 % of some layer hurts


def test_propose_and_plot(trained, tmp_path):
    model, x, y = trained
    table = sensitivity_analysis(model, x, y, ratios=(0.25, 0.5, 0.95), kind="weights")
    ratios = propose_ratios(table, max_drop=0.02)
    assert set(ratios) == set(table["metrics"])
    for name, r in ratios.items():
        values = dict(zip(table["ratios"], table["metrics"][name]))
        assert r == 0.0 or values[r] >= table["baseline"] - 0.02
    assert propose_ratios(table, max_drop=1.0) == {n: 0.95 for n in table["metrics"]}
    path = tmp_path / "sens.png"
    plot_sensitivity(table, str(path))
    assert path.stat().st_size > 1000


def test_custom_metric_and_errors(trained):
    model, x, y = trained
    table = sensitivity_analysis(model, x, y, ratios=(0.5,), layers=["conv1"], metric=lambda t, p: 1.0)
    assert table["metrics"] == {"conv1": [1.0]}
    with pytest.raises(ValueError, match="kind"):
        sensitivity_analysis(model, x, y, kind="channels")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sensitivity_analysis(model, x, y, ratios=(1.0,))
    with pytest.raises(ValueError, match="max_drop"):
        propose_ratios(table, max_drop=-1)


def _table(n_layers, **extra):
    ratios = [0.25, 0.5, 0.75]
    return dict({"baseline": 0.9, "ratios": ratios, "kind": "weights",
                 "metrics": {f"layer_{i}": [0.9, 0.8 - 0.01 * i, 0.5] for i in range(n_layers)}},
                **extra)


@pytest.mark.parametrize("table, metric_name, label", [
    (_table(2), None, "accuracy"),
    (_table(2, metric="top_5"), None, "top_5"),
    (_table(2, metric="top_5"), "AUC", "AUC"),
], ids=["no-metric-entry", "table-metric", "explicit-name"])
def test_plot_labels_y_axis_with_the_metric_name(table, metric_name, label):
    import matplotlib
    matplotlib.use("Agg")
    fig = plot_sensitivity(table, metric_name=metric_name)
    assert fig.axes[0].get_ylabel() == label


def test_analysis_records_the_metric_name(trained):
    model, x, y = trained

    def top1(t, p):
        return float(np.mean(p.argmax(-1) == t))

    assert sensitivity_analysis(model, x, y, ratios=(0.5,), layers=["conv1"])["metric"] == \
        "accuracy"
    assert sensitivity_analysis(model, x, y, ratios=(0.5,), layers=["conv1"],
                                metric=top1)["metric"] == "top1"
    assert sensitivity_analysis(model, x, y, ratios=(0.5,), layers=["conv1"],
                                metric=lambda t, p: 1.0)["metric"] == "metric"


@pytest.mark.parametrize("n_layers", [15, 40], ids=["15-layers", "40-layers"])
def test_plot_gives_every_layer_a_distinct_line(n_layers):
    import matplotlib
    from matplotlib.colors import to_hex
    matplotlib.use("Agg")
    fig = plot_sensitivity(_table(n_layers))
    lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("layer_")]
    assert len(lines) == n_layers
    looks = {(to_hex(line.get_color()), line.get_linestyle(), line.get_marker()) for line in lines}
    assert len(looks) == n_layers
    assert len({(to_hex(line.get_color()), line.get_linestyle()) for line in lines}) == n_layers
