"""Smoke tests: every tutorial runs end to end on tiny data (1 epoch)."""

import importlib
import os
import sys


TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tutorials")


def _load(name):
    if TUTORIALS not in sys.path:
        sys.path.insert(0, TUTORIALS)
    return importlib.import_module(name)


def test_quickstart(tmp_path):
    """The tutorial is a thin script over keras_nna.demo: same report, exit status 0."""
    import json

    assert _load("akidanet_quickstart").main(["--quick", "--tasks", "faces",
                                              "--out_dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "report.json").read_text())
    assert [r["task"] for r in results] == ["faces"]
    assert all(r["bit_exact"] for r in results)
    assert results[0]["program_bytes"] <= 143_000
    assert (tmp_path / "report.md").exists() and (tmp_path / "faces_events.png").exists()


def test_bit_depth_sweep(tmp_path):
    result = _load("bit_depth_sweep").main(["--quick", "--out_dir", str(tmp_path)])
    rows = result["rows"]
    assert all(r["bit_exact"] for r in rows)
    by_bits = {(r["weight_bits"], r["activation_bits"], r["retrained"]): r for r in rows}
    # 1-bit weights (8-bit first layer, 4-bit classifier): well under half the 4-bit program.
    assert by_bits[(1, 4, True)]["program_bytes"] < 0.45 * by_bits[(4, 4, True)]["program_bytes"]
    mixed = [r for r in rows if r["weight_bits"] == "mixed"]
    assert mixed and all(r["program_bytes"] <= r["budget_bytes"] for r in mixed)
    assert (tmp_path / "bit_depth_sweep.png").exists()


def test_tradeoff(tmp_path):
    result = _load("tradeoff").main(["--quick", "--out_dir", str(tmp_path)])
    assert all(r["bit_exact"] for r in result["rows"])
    assert (tmp_path / "tradeoff_energy_j.png").exists()
    wide = result["rows"][-1]
    assert wide["filter_pruning"] == 0.5


def test_meet_a_budget(tmp_path):
    """Tutorial 5, quick: start model, baseline, a 1-trial search on a SQLite study, MorphNet."""
    import json

    result = _load("meet_a_budget").main(["--quick", "--out_dir", str(tmp_path)])
    rows = result["rows"]
    assert rows[0]["label"].startswith("baseline") and rows[-1]["label"].startswith("MorphNet")
    assert all(r["bit_exact"] for r in rows)
    search = result["search"]
    assert len(search["points"]) + len(search["failed"]) == 1
    assert all(p["bit_exact"] for p in search["points"])
    assert json.loads((tmp_path / "meet_a_budget.json").read_text())["rows"] == json.loads(
        json.dumps(rows, default=str))
    assert (tmp_path / "front.png").exists() and (tmp_path / "study.db").exists()


def test_bring_your_own_model(tmp_path):
    """Tutorial 6, quick: keras.applications MobileNet and MLPerf Tiny ResNet-8, unchanged, bit-exact."""
    result = _load("bring_your_own_model").main(["--quick", "--tasks", "faces", "--models",
                                                 "MobileNet 0.25,ResNet-8", "--out_dir", str(tmp_path)])
    rows = result["rows"]
    assert [r["model"] for r in rows] == ["MobileNet 0.25", "ResNet-8"]
    assert all(r["bit_exact"] for r in rows)
    assert rows[0]["params"] == 219_058  # keras.applications MobileNet alpha 0.25, 2 classes, 32x32x3
    assert (tmp_path / "bring_your_own_model.md").read_text().count("| faces |") == 2
