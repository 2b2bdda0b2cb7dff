"""`keras-nna allocate`: the real command on a small trained model."""

import json

import numpy as np
import pytest

from keras_nna.cli import main
from keras_nna.quantization import QuantizationPolicy
from tests.optimize.helpers import digits, trained_cnn


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_allocate")
    trained_cnn().save(d / "start.keras")
    x, y, xv, yv = digits()
    np.savez(d / "data.npz", x_train=x[:300], y_train=y[:300], x_test=xv[:60], y_test=yv[:60])
    return d


def test_allocate_writes_a_policy_that_fits_then_trains_it(files, capsys):
    out = files / "run"
    status = main(["keras-nna", "allocate", str(files / "start.keras"), "--data",
                   str(files / "data.npz"), "--budget", "program_bytes=1100", "--weight-bits",
                   "2,8", "--val-images", "60", "--qat-epochs", "1", "--out", str(out)])
    text = capsys.readouterr().out
    assert status == 0, text
    assert "| layer | part | bits |" in text and "QAT: accuracy" in text and "bit-exact: yes" in text
    policy = QuantizationPolicy.from_config(json.loads((out / "policy.json").read_text()))
    table = json.loads((out / "allocation.json").read_text())
    assert table["costs"]["program_bytes"] <= 1100
    assert {r["layer"] for r in table["table"] if r["chosen"]} == set(policy.overrides)
    assert (out / "program.nnab").stat().st_size <= 1100


@pytest.mark.parametrize("argv, fragments", [
    (["--budget", "program_bytes=10"], ["fewest bits everywhere, program_bytes is"]),
    (["--budget", "program_bytes=1e6", "--weight-bits", "1,two"], ["--weight-bits expects"]),
    (["--budget", "program_bytes=1e6", "--weight-bits", "0,4"], ["received 0"]),
    ([], ["missing --budget"]),
], ids=["infeasible", "not_ints", "zero_bits", "no_budget"])
def test_allocate_user_errors_are_one_line(files, capsys, argv, fragments):
    status = main(["keras-nna", "allocate", str(files / "start.keras"), "--data",
                   str(files / "data.npz"), "--val-images", "30", "--out",
                   str(files / "bad"), *argv])
    err = capsys.readouterr().err.strip()
    assert status != 0 and err.startswith("keras-nna: error:") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err
