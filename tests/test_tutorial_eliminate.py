"""Smoke test: tutorials/eliminate_then_reduce.py runs end to end on tiny data (1 epoch)."""

import importlib
import os
import sys

TUTORIALS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "tutorials")


def test_eliminate_then_reduce(tmp_path):
    if TUTORIALS not in sys.path:
        sys.path.insert(0, TUTORIALS)
    result = importlib.import_module("eliminate_then_reduce").main(["--quick", "--out_dir", str(tmp_path)])
    rows = result["rows"]
    assert [(r["stage"], r["distillation"]) for r in rows] == [("baseline", False), ("both", True)]
    assert all(r["bit_exact"] for r in rows)
    both = rows[-1]
    # Filters were removed and weights pruned; the regularizer survived quantize_model.
    assert both["float_params"] < rows[0]["float_params"]
    assert both["weight_sparsity"] >= 0.45
    assert both["qat_regularizers"] == 14
    assert both["program_bytes"] < rows[0]["program_bytes"]
    # The regularized stage quantizes with the finer step, the baseline with the default;
    # distillation used the wider teacher the tutorial trained.
    assert (rows[0]["activation_step"], both["activation_step"]) == (0.25, 0.125)
    assert (tmp_path / "teacher_model.keras").exists()
    assert (tmp_path / "eliminate_then_reduce.json").exists()
    assert (tmp_path / "eliminate_then_reduce.png").exists()
