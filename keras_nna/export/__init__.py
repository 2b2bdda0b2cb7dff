"""Export: lower a quantized model to integer bytecode (docs/bytecode.md).

Submodules are imported on first use: reading a program (`read_program`,
`Program`, `run_reference`) needs only numpy; `export_model` imports Keras.
"""

from keras_nna import _lazy

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

__getattr__, __dir__ = _lazy(__name__, {
    "BytecodeError": "bytecode",
    "read_program": "bytecode",
    "write_program": "bytecode",
    "ExportError": "lowering",
    "export_model": "lowering",
    "LayerRecord": "program",
    "Program": "program",
    "STAT_NAMES": "reference",
    "run_reference": "reference",
})
