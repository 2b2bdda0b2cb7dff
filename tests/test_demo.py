"""The main job, `keras-nna demo` (keras_nna.demo), run for real on tiny data."""

import json
import os
import re
import subprocess
import sys
import sysconfig

import pytest

from keras_nna import cli, demo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _check_report(out_dir, tasks):
    results = json.loads((out_dir / "report.json").read_text())
    assert [r["task"] for r in results] == list(tasks)
    assert all(r["bit_exact"] for r in results)
    for r in results:
        assert set(r["cost"]) == set(demo.PROFILES)
        assert (out_dir / f"{r['task']}.nnab").stat().st_size == r["program_bytes"]
        assert (out_dir / f"{r['task']}_events.png").stat().st_size > 0
    report = (out_dir / "report.md").read_text()
    assert all(f"## {task}" in report for task in tasks)
    return results


def test_demo_quick_in_process(tmp_path, monkeypatch, capsys):
    """`keras-nna demo --quick` through `cli.main`: real training, default report folder."""
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    assert cli.main(["keras-nna", "demo", "--quick", "--tasks", "fashion_mnist"]) == 0
    out = capsys.readouterr().out
    reports = list((tmp_path / "reports").glob("quickstart-*"))
    assert len(reports) == 1 and re.fullmatch(r"quickstart-\d{8}-\d{6}", reports[0].name)
    results = _check_report(reports[0], ["fashion_mnist"])
    assert results[0]["train_images"] == 64 and results[0]["input_shape"] == [48, 48, 3]
    assert f"report written to {reports[0]}" in out  # the folder, printed at the end
    assert re.search(r"\+\s*\d+\.\d s\] fashion_mnist: float accuracy .*\(float training: "
                     r"\d+\.\d s\)", out), out  # progress: elapsed time and stage duration
    new = [m for name, m in sys.modules.items() if name not in before]
    assert not [m for m in new if "tutorials" in str(getattr(m, "__file__", ""))]


def test_demo_exit_status_when_not_bit_exact(tmp_path, monkeypatch, capsys):
    """A mismatch between emulator and Keras is an error (status 1, one line)."""
    def fake_run_demo(out_dir, tasks, quick=False, clock=None):
        return [{"task": t, "bit_exact": t != "faces"} for t in tasks]

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    assert demo.main(["--out_dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert "differs from the quantized Keras model on faces" in err and "\n" not in err


def _console_script():
    script = os.path.join(sysconfig.get_path("scripts"), "keras-nna")
    return [script] if os.path.isfile(script) else [sys.executable, "-m", "keras_nna.cli"]


@pytest.mark.slow
def test_keras_nna_demo_console_script(tmp_path):
    """The README's main job, as a user runs it: the installed script, exit status 0."""
    out_dir = tmp_path / "report"
    done = subprocess.run([*_console_script(), "demo", "--quick", "--out_dir", str(out_dir)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    _check_report(out_dir, ["faces", "fashion_mnist"])
    assert f"report written to {out_dir}" in done.stdout


def test_demo_ships_in_the_package(tmp_path):
    """An installed package has no tutorials/ next to it: `keras-nna demo` still works."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(os.path.join(REPO, "keras_nna"), site / "keras_nna",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "cc"))
    env = dict(os.environ, PYTHONPATH=str(site))
    code = ("import sys, keras_nna; from keras_nna.cli import main; print(keras_nna.__file__); "
            "sys.exit(main(['keras-nna', 'demo', '--help']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(site / "keras_nna")), done.stdout  # the copy, not the repo
    assert "usage: keras-nna demo" in done.stdout and "--quick" in done.stdout
