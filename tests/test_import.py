"""Import-time behaviour: `import keras_nna` is cheap, names load lazily, layers register.

The subprocess tests start fresh interpreters, where the import order is
under control (this process has imported Keras long ago).
"""

import importlib
import json
import os
import pkgutil
import subprocess
import sys
import textwrap

import keras
import pytest

import keras_nna
import keras_nna.export
import keras_nna.runtime

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("tensorflow", "keras")


def _python(code, *args, env=None, cwd=None):
    """Runs `python -c code args` in a fresh interpreter; returns the CompletedProcess."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # show what a user sees
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _imported(importtime_stderr):
    """Top-level package names in `-X importtime` output."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def test_import_keras_nna_does_not_load_tensorflow_or_keras():
    done = _python("""
        import sys, keras_nna
        print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
        print(keras_nna.__version__)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "[]", done.stdout
    assert done.stderr == "", done.stderr  # no TensorFlow C++ log lines


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A quantized model saved as .keras and exported to .nnab."""
    from keras_nna.export import export_model
    from keras_nna.quantization import quantize_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))
    folder = tmp_path_factory.mktemp("exported")
    qmodel.save(folder / "q.keras")
    export_model(qmodel, str(folder / "q.nnab"))
    return folder


def test_cli_inspect_does_not_load_tensorflow(exported):
    """`keras-nna inspect` parses bytes only (PYTHONPROFILEIMPORTTIME lists every import)."""
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    done = _python("from keras_nna.cli import run; run()", "inspect", exported / "q.nnab",
                   env=env)
    assert done.returncode == 0, done.stderr
    assert "Valid program" in done.stdout
    imported = _imported(done.stderr)
    assert "keras_nna" in imported and "numpy" in imported  # the check sees imports
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert [line for line in done.stderr.splitlines()
            if not line.startswith("import time:")] == []


def _all_registered():
    """keras_nna's Keras objects once every module of the package is imported."""
    for info in pkgutil.walk_packages(keras_nna.__path__, "keras_nna."):
        if not info.name.endswith("._nna_ops"):  # the op library, not a Python module
            importlib.import_module(info.name)
    return sorted(k for k in keras.saving.get_custom_objects() if k.startswith("keras_nna>"))


LOAD = """
    import json, sys
    {imports}
    model = keras.models.load_model(sys.argv[1])
    print(json.dumps({{
        "layers": [type(layer).__name__ for layer in model.layers],
        "registered": sorted(k for k in keras.saving.get_custom_objects()
                             if k.startswith("keras_nna>")),
        "hooks": [type(f).__name__ for f in sys.meta_path if "KerasImportHook" in type(f).__name__],
    }}))
"""


@pytest.mark.parametrize("imports", [
    "import keras; import keras_nna",
    "import keras_nna; import keras",
    "import keras_nna.quantization; import keras",  # keras imported from inside keras_nna
    "from keras_nna.runtime import estimate_cost; import keras",
], ids=["keras-first", "keras_nna-first", "subpackage-first", "numpy-only-subpackage-first"])
def test_saved_model_loads_with_plain_load_model(exported, imports):
    done = _python(LOAD.format(imports=imports), exported / "q.keras")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "QuantizeWrapper" in result["layers"]
    assert result["registered"] == _all_registered()  # every Keras object, not just the wrapper
    assert result["hooks"] == []  # the import hook removed itself


def test_without_keras_nna_the_model_does_not_load(exported):
    """The check above is meaningful: plain Keras cannot load the model alone."""
    done = _python(LOAD.format(imports="import keras"), exported / "q.keras")
    assert done.returncode != 0
    assert "QuantizeWrapper" in done.stderr


@pytest.mark.parametrize("package", [keras_nna, keras_nna.export, keras_nna.runtime],
                         ids=["keras_nna", "export", "runtime"])
def test_lazy_names_resolve(package):
    for name in package.__all__:
        value = getattr(package, name)
        assert value is not None
        namespace = {}
        exec(f"from {package.__name__} import {name}", namespace)
        assert namespace[name] is value
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("package", [keras_nna, keras_nna.export, keras_nna.runtime],
                         ids=["keras_nna", "export", "runtime"])
def test_unknown_attribute_raises_attribute_error(package):
    with pytest.raises(AttributeError, match=f"module '{package.__name__}' has no attribute"):
        package.no_such_name  # noqa: B018
    assert not hasattr(package, "_nna_ops")  # private names never trigger an import


def test_subpackages_are_attributes():
    assert keras_nna.quantization.QuantizeWrapper is keras_nna.QuantizeWrapper
    assert keras_nna.export.lowering.export_model is keras_nna.export_model
    assert keras_nna.runtime.cost.estimate_cost is keras_nna.estimate_cost
