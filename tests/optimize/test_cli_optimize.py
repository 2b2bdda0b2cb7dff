"""`keras-nna optimize`: the real command, in-process and as two worker processes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from keras_nna.cli import main
from tests.optimize.helpers import digits, trained_cnn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXED = ["--epochs", "1", "--qat-epochs", "1", "--val-images", "60"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    trained_cnn().save(d / "start.keras")
    x, y, xv, yv = digits()
    np.savez(d / "data.npz", x_train=x[:400], y_train=y[:400], x_test=xv, y_test=yv)
    return d


def _one_line_error(capsys, code, status, *fragments):
    err = capsys.readouterr().err.strip()
    assert status == code, err
    assert err.startswith("keras-nna: error:") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_optimize_writes_result_table_and_plot(files, capsys):
    out = files / "run"
    status = main(["keras-nna", "optimize", str(files / "start.keras"), "--data",
                   str(files / "data.npz"), "--budget", "events=1e9", "--trials", "2",
                   "--out", str(out), *FIXED])
    text = capsys.readouterr().out
    assert status == 0
    assert "Best within budget: trial" in text and "| trial | front |" in text
    result = json.loads((out / "result.json").read_text())
    assert len(result["points"]) == 2 and all(p["bit_exact"] for p in result["points"])
    assert (out / "front.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv, code, fragments", [
    (["--data", "mnist", "--budget", "events=5"], 2, ["unknown --data 'mnist'", "fashion_mnist"]),
    (["--data", "digits", "--budget", "events"], 2, ["NAME=VALUE"]),
    (["--data", "digits", "--budget", "joules=1"], 2, ["Unknown budget cost 'joules'"]),
    (["--data", "digits", "--budget", "events=5", "--profile", "nna-3core"], 2, ["nna-3core"]),
    (["--data", "digits", "--budget", "events=5", "--trials", "0"], 2, ["--trials must be >= 1"]),
    (["--data", "digits"], 2, ["missing --budget NAME=VALUE"]),
    (["--data", "nowhere.npz", "--budget", "events=5"], 1, ["data file 'nowhere.npz' not found"]),
    (["--data", "digits", "--budget", "events=5", "--storage", "ftp://x/y", "--trials", "1"], 1,
     ["Could not open the study storage"]),
], ids=["unknown-data", "budget-no-value", "budget-unknown", "profile", "trials", "no-budget", "npz-missing",
        "storage"])
def test_one_line_errors(files, capsys, argv, code, fragments):
    status = main(["keras-nna", "optimize", str(files / "start.keras"), *argv, "--out",
                   str(files / "err"), *FIXED])
    _one_line_error(capsys, code, status, *fragments)


def test_refuses_a_missing_or_quantized_model(files, capsys):
    _one_line_error(capsys, 1, main(["keras-nna", "optimize", str(files / "none.keras"),
                                     "--data", "digits", "--budget", "events=5"]), "not found")
    from keras_nna.quantization import quantize_model

    quantize_model(trained_cnn()).save(files / "q.keras")
    _one_line_error(capsys, 1, main(["keras-nna", "optimize", str(files / "q.keras"), "--data",
                                     "digits", "--budget", "events=5"]), "already quantized",
                    "float model")


def test_two_worker_processes_share_one_study(files):
    """The real command twice on one SQLite study: 4 trials in all, each run once."""
    out, db = files / "shared", files / "shared.db"
    cmd = [sys.executable, "-m", "keras_nna.cli", "optimize", str(files / "start.keras"),
           "--data", str(files / "data.npz"), "--budget", "energy_uj=1e9", "--trials", "4",
           "--storage", str(db), "--study", "two", "--out", str(out), *FIXED]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd + ["--seed", str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for i in (1, 2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(l[-2000:] for l in logs)
    from keras_nna.optimize import Budget, load_result

    result = load_result(str(db), "two", Budget(energy_uj=1e9), out_dir=str(out))
    numbers = sorted(p.number for p in result.points)
    assert numbers == [0, 1, 2, 3] and not result.failed
    workers = {p.number: None for p in result.points}
    assert len(workers) == 4
    assert all(os.path.isfile(p.program_path) for p in result.points)
