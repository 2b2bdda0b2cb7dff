"""keras_nna: train Keras 3 models for an event-based sparse NNA, export, emulate.

The loop, one subpackage per stage::

    models/        AkidaNet and MAC counting
    quantization/  QuantizationPolicy, QuantizeWrapper, quantize_model, ProgressiveQuantization
    sparsity/      pruning callbacks, filter surgery, activity regularizers, sensitivity
    distillation   Distiller (teacher → student)
    export/        export_model → Program → bytecode (docs/bytecode.md), numpy reference
    runtime/       Emulator (the compiled TF op), cost model and hardware profiles

Example:

>>> import keras_nna
>>> sorted(keras_nna.__all__)[:3]
['ActivityRegularizer', 'AkidaNet', 'Distiller']
"""

from importlib import metadata as _metadata

from keras_nna import datasets, sparsity
from keras_nna.distillation import Distiller
from keras_nna.export import Program, export_model, read_program, run_reference
from keras_nna.models import AkidaNet, count_macs
from keras_nna.quantization import (
    ProgressiveQuantization,
    QuantizationPolicy,
    QuantizeWrapper,
    quantize_model,
)
from keras_nna.runtime import Emulator, EmulatorLayer, HardwareProfile, cost_report, estimate_cost
from keras_nna.sparsity import ActivityRegularizer, FilterPruneCallback, PruneCallback

try:
    __version__ = _metadata.version("keras_nna")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = [
    "ActivityRegularizer",
    "AkidaNet",
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
    "__version__",
    "cost_report",
    "count_macs",
    "datasets",
    "estimate_cost",
    "export_model",
    "quantize_model",
    "read_program",
    "run_reference",
    "sparsity",
]
