"""keras_nna: train Keras 3 models for an event-based sparse NNA, export, emulate.

The loop, one subpackage per stage::

    models/        AkidaNet, the MLPerf Tiny ResNet8 / DSCNN / DenseAutoencoder, MAC counting
    quantization/  QuantizationPolicy, QuantizeWrapper, QuantizedAdd, quantize_model, ProgressiveQuantization
    sparsity/      pruning callbacks, filter surgery, activity regularizers, sensitivity
    distillation   Distiller (teacher → student)
    export/        export_model → Program → bytecode (docs/bytecode.md), numpy reference
    runtime/       Emulator (the compiled TF op), cost model and hardware profiles
    deployment     deploy(): export → emulate → bit-exact check → cost, in one call
    model_summary  summary(): per-layer bits, bytes, zero weights, MACs (and events, cost)
    calibration    activation_step_sweep(): choose the activation step before QAT
    optimize/      budgets, MorphNet shrink/expand, Optuna search: best accuracy within a budget
    demo           the main job (`keras-nna demo`): train → quantize → export → emulate → report

`import keras_nna` is cheap: it does not import TensorFlow or Keras. The names
in `__all__` (and the subpackages) are imported on first use, so
`from keras_nna import quantize_model` or `keras_nna.Emulator` work as usual.

Saved models load with plain `keras.models.load_model` once `keras_nna` is
imported: when Keras is (or gets) imported, the subpackages that define Keras
objects are imported too, which registers those objects with Keras. Whichever
order the two packages are imported in.

Example:

>>> import keras_nna
>>> sorted(keras_nna.__all__)[:3]
['ActivityRegularizer', 'AkidaNet', 'DSCNN']
"""

import importlib
import importlib.abc
import importlib.util
import sys
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("keras_nna")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = [
    "ActivityRegularizer",
    "AkidaNet",
    "DSCNN",
    "DenseAutoencoder",
    "DeployResult",
    "Distiller",
    "Emulator",
    "EmulatorLayer",
    "FilterPruneCallback",
    "HardwareProfile",
    "Program",
    "PruneCallback",
    "ProgressiveQuantization",
    "QuantizationPolicy",
    "QuantizeWrapper",
    "QuantizedAdd",
    "ResNet8",
    "__version__",
    "activation_step_sweep",
    "cost_report",
    "count_macs",
    "datasets",
    "deploy",
    "estimate_cost",
    "events_per_image",
    "export_model",
    "model_weight_sparsity",
    "optimize",
    "quantize_model",
    "read_program",
    "run_reference",
    "sparsity",
    "summary",
]

# Where each lazily imported public name lives (relative to this package).
_ATTRIBUTES = {
    "ActivityRegularizer": "sparsity",
    "AkidaNet": "models",
    "DSCNN": "models",
    "DenseAutoencoder": "models",
    "ResNet8": "models",
    "QuantizedAdd": "quantization",
    "Distiller": "distillation",
    "Emulator": "runtime",
    "EmulatorLayer": "runtime",
    "FilterPruneCallback": "sparsity",
    "HardwareProfile": "runtime",
    "Program": "export",
    "PruneCallback": "sparsity",
    "ProgressiveQuantization": "quantization",
    "QuantizationPolicy": "quantization",
    "QuantizeWrapper": "quantization",
    "DeployResult": "deployment",
    "activation_step_sweep": "calibration",
    "cost_report": "runtime",
    "deploy": "deployment",
    "events_per_image": "deployment",
    "model_weight_sparsity": "deployment",
    "summary": "model_summary",
    "count_macs": "models",
    "estimate_cost": "runtime",
    "export_model": "export",
    "quantize_model": "quantization",
    "read_program": "export",
    "run_reference": "export",
}

# The modules that define Keras objects (`register_keras_serializable`):
# imported as soon as both keras_nna and keras are, so `load_model` finds them.
_KERAS_FACING = (
    "keras_nna.quantization",
    "keras_nna.sparsity",
    "keras_nna.distillation",
    "keras_nna.models",
    "keras_nna.export.lowering",
    "keras_nna.runtime.emulator",
)


def _lazy(package, attributes):
    """Makes a package import its submodules on first use (PEP 562).

    Args:
        package: The package's `__name__`.
        attributes: `{public name: submodule}`, the submodule relative to
            `package`; the name is read from that submodule on first access
            and cached in the package. Any other public name that is a
            submodule of `package` is imported on first access too.

    Returns:
        The `(__getattr__, __dir__)` pair to assign in the package's namespace.

    Example:

    >>> getattr_, dir_ = _lazy("keras_nna.export", {"Program": "program"})
    >>> getattr_("Program").__name__
    'Program'
    >>> "Program" in dir_()
    True
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name):
        if name in attributes:
            value = getattr(importlib.import_module(f"{package}.{attributes[name]}"), name)
            namespace[name] = value
            return value
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}") is not None:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(namespace.get("__all__", ())) | set(attributes))

    return __getattr__, __dir__


__getattr__, __dir__ = _lazy(__name__, _ATTRIBUTES)


def _register_with_keras():
    """Imports the modules that register keras_nna's objects with Keras."""
    for name in _KERAS_FACING:
        importlib.import_module(name)


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Calls `_register_with_keras` right after `keras` finishes importing.

    Installed on `sys.meta_path` while keras_nna is imported and Keras is not.
    It finds nothing itself: it asks the other finders and wraps the
    `exec_module` of the module it gets back. When `keras` is imported from
    inside a keras_nna module (`import keras_nna.quantization` before Keras),
    registering at once would re-enter that half-imported module, so the
    registration waits until the outermost keras_nna import has finished.
    The hook removes itself once the registration has run.
    """

    def __init__(self):
        self._depth = 0  # keras_nna modules being executed right now
        self._pending = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" and not name.startswith("keras_nna."):
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = getattr(spec.loader, "exec_module", None)
        if exec_module is not None and not hasattr(exec_module, "_keras_nna_hook"):
            spec.loader.exec_module = self._wrap(exec_module, is_keras=name == "keras")
        return spec

    def _wrap(self, exec_module, is_keras):
        def wrapped(module):
            if is_keras:
                exec_module(module)
                self._pending = True
            else:
                self._depth += 1
                try:
                    exec_module(module)
                finally:
                    self._depth -= 1
            if self._pending and self._depth == 0:
                self._pending = False
                self.uninstall()
                _register_with_keras()

        wrapped._keras_nna_hook = True
        return wrapped

    def uninstall(self):
        """Removes the hook from `sys.meta_path` (no-op if absent)."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)


if "keras" in sys.modules:
    _register_with_keras()
elif not any(type(f).__name__ == "_KerasImportHook" for f in sys.meta_path):  # once per process
    sys.meta_path.insert(0, _KerasImportHook())
