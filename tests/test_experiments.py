"""The research harnesses in experiments/ still start (their imports and flags rot otherwise)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("script", ["recipe_tries.py", "ptq_steps.py", "refit_point.py"],
                         ids=["recipe_tries", "ptq_steps", "refit_point"])
def test_experiment_script_help(script):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", script), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout
