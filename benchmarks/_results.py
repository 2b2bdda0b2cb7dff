"""Shared by the benchmark scripts: where results go and how they are written."""

import json
import os
import sys

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
# Let `python benchmarks/<script>.py` import keras_nna from the source tree.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_path(name):
    """Default JSON path of a benchmark's results."""
    return os.path.join(RESULTS_DIR, f"{name}.json")


def write_result(result, path):
    """Writes `result` as indented JSON to `path` and says where."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {path}")
