"""Runtime: the bit-exact emulator of exported keras_nna programs, and its cost model.

``Emulator`` runs a program (bytes, a file, or a ``keras_nna.export.Program``)
on uint8 NHWC images and returns float32 outputs and per-layer statistics;
``EmulatorLayer`` wraps it as a serialisable Keras layer; ``nna_run`` is the
raw TensorFlow op. ``estimate_cost`` / ``cost_report`` turn statistics into
time, bytes and energy per inference for a ``HardwareProfile``
(``"nna-1core"``, ``"nna-8core"``).

Submodules are imported on first use: the cost model needs only numpy; the
emulator and the op import TensorFlow.
"""

from keras_nna import _lazy

__all__ = [
    "CostReport",
    "EXECUTORS",
    "Emulator",
    "EmulatorLayer",
    "HardwareProfile",
    "KIND_NAMES",
    "LayerStats",
    "MODES",
    "PROFILES",
    "STAT_NAMES",
    "cost_report",
    "estimate_cost",
    "get_profile",
    "load_op_library",
    "nna_run",
    "program_bytes",
    "run_program",
]

__getattr__, __dir__ = _lazy(__name__, {
    "CostReport": "cost",
    "HardwareProfile": "profiles",
    "PROFILES": "profiles",
    "cost_report": "cost",
    "estimate_cost": "cost",
    "get_profile": "profiles",
    "Emulator": "emulator",
    "EmulatorLayer": "emulator",
    "KIND_NAMES": "emulator",
    "STAT_NAMES": "emulator",
    "program_bytes": "emulator",
    "run_program": "emulator",
    "EXECUTORS": "emulator",
    "LayerStats": "emulator",
    "MODES": "op",
    "load_op_library": "op",
    "nna_run": "op",
})
