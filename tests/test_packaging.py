"""Packaging checks: declared extras resolve, metadata is complete, the API docs build.

These run the real tools (pip's resolver, mkdocs, tensorflow-model-optimization) in
subprocesses, so the user's environment is never changed.
"""

import os
import subprocess
import sys
import textwrap
import tomllib

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFMOT_DIR = os.path.join(ROOT, "build", "tfmot-interop")


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def test_every_declared_extra_resolves_with_pip():
    """`pip install "keras_nna[tfmot]"` was unresolvable (absl-py pins): resolve them all at once.

    A set of requirements that resolves together resolves in every subset, so one
    dry run of the base dependencies plus every extra covers each extra.
    """
    project = _pyproject()
    reqs = list(project["dependencies"])
    for extra, deps in sorted(project["optional-dependencies"].items()):
        reqs += deps
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--disable-pip-version-check", "-q", *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    if proc.returncode and "ResolutionImpossible" not in out and (
            "NewConnectionError" in out or "Temporary failure in name resolution" in out):
        pytest.skip(f"no package index reachable: {out.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"extras do not resolve together:\n{out[-3000:]}"


def test_metadata_is_complete():
    project = _pyproject()
    assert project["license"]
    assert any(c.startswith("License :: OSI Approved") for c in project["classifiers"])
    assert os.path.isfile(os.path.join(ROOT, "LICENSE"))
    assert os.path.isfile(os.path.join(ROOT, "CHANGELOG.md"))
    with open(os.path.join(ROOT, "CHANGELOG.md")) as f:
        assert f"## [{project['version']}]" in f.read(), "CHANGELOG has no entry for this version"


def test_api_reference_builds_without_warnings(tmp_path):
    """mkdocs + mkdocstrings render every docstring; `--strict` turns warnings into errors."""
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-d", str(tmp_path / "site")], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "quantization" / "index.html").exists()


@pytest.mark.skipif(not os.path.isdir(TFMOT_DIR), reason=(
    f"{TFMOT_DIR} missing: tools/install.sh installs tensorflow-model-optimization there "
    "(apart from the main environment, because importing it switches tf.keras to tf_keras)"))
def test_real_tfmot_schedule_drives_prune_callback():
    """The duck-typed schedule contract against the real tfmot PolynomialDecay, in a child process."""
    code = textwrap.dedent("""
        import keras, numpy as np
        from tensorflow_model_optimization.sparsity.keras import PolynomialDecay
        from keras_nna.sparsity import PruneCallback
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="d1"),
                                  keras.layers.Dense(2, name="d2")])
        model.compile("sgd", "mse")
        sched = PolynomialDecay(0.0, 0.75, begin_step=0, end_step=4, frequency=1)
        x, y = np.ones((32, 8), "float32"), np.zeros((32, 2), "float32")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[PruneCallback(sched)])
        k = model.get_layer("d1").kernel.numpy()
        print("ZEROS", int((k == 0).sum()), k.size)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TFMOT_DIR, ROOT]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    zeros, size = map(int, proc.stdout.split("ZEROS")[1].split())
    assert zeros == round(0.75 * size)
