"""Runtime: the bit-exact emulator of exported keras_nna programs, and its cost model.

``Emulator`` runs a program (bytes, a file, or a ``keras_nna.export.Program``)
on uint8 NHWC images and returns float32 outputs and per-layer statistics;
``EmulatorLayer`` wraps it as a serialisable Keras layer; ``nna_run`` is the
raw TensorFlow op. ``estimate_cost`` / ``cost_report`` turn statistics into
time, bytes and energy per inference for a ``HardwareProfile``
(``"nna-1core"``, ``"nna-8core"``).
"""

from keras_nna.runtime.cost import (
    PROFILES,
    CostReport,
    HardwareProfile,
    cost_report,
    estimate_cost,
    get_profile,
)
from keras_nna.runtime.emulator import KIND_NAMES, STAT_NAMES, Emulator, EmulatorLayer, program_bytes
from keras_nna.runtime.op import MODES, load_op_library, nna_run

__all__ = [
    "CostReport",
    "Emulator",
    "EmulatorLayer",
    "HardwareProfile",
    "KIND_NAMES",
    "MODES",
    "PROFILES",
    "STAT_NAMES",
    "cost_report",
    "estimate_cost",
    "get_profile",
    "load_op_library",
    "nna_run",
    "program_bytes",
]
