"""Export: lower a quantized model to integer bytecode (docs/bytecode.md).

Submodules are imported on first use: reading a program (`read_program`,
`Program`, `run_reference`) needs only numpy; `export_model` imports Keras.
"""

from keras_nna import _lazy

__all__ = [
    "BytecodeError",
    "ExportError",
    "LayerRecord",
    "LayerStats",
    "Program",
    "STAT_NAMES",
    "check_images",
    "export_model",
    "load_program",
    "peek_header",
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
    "LayerStats": "program",
    "load_program": "bytecode",
    "check_images": "images",
    "peek_header": "format",
    "STAT_NAMES": "reference",
    "run_reference": "reference",
})
