"""Runtime: the bit-exact emulator of exported keras_nna programs.

``Emulator`` runs a program (bytes, a file, or a ``keras_nna.export.Program``)
on uint8 NHWC images and returns float32 outputs and per-layer statistics;
``EmulatorLayer`` wraps it as a serialisable Keras layer; ``nna_run`` is the
raw TensorFlow op.
"""

from keras_nna.runtime.emulator import KIND_NAMES, STAT_NAMES, Emulator, EmulatorLayer, program_bytes
from keras_nna.runtime.op import MODES, load_op_library, nna_run

__all__ = [
    "Emulator",
    "EmulatorLayer",
    "KIND_NAMES",
    "MODES",
    "STAT_NAMES",
    "load_op_library",
    "nna_run",
    "program_bytes",
]
