"""Export: lower a quantized model to integer bytecode (docs/bytecode.md)."""

from keras_nna.export.bytecode import BytecodeError, read_program, write_program
from keras_nna.export.lowering import ExportError, export_model
from keras_nna.export.program import LayerRecord, Program
from keras_nna.export.reference import STAT_NAMES, run_reference

__all__ = [
    "BytecodeError",
    "ExportError",
    "LayerRecord",
    "Program",
    "STAT_NAMES",
    "export_model",
    "read_program",
    "run_reference",
    "write_program",
]
