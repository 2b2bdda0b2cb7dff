"""export_model: lower a quantized Keras model to an integer `Program`.

The exporter walks a model produced by `quantize_model` (after `fit`) in
topological order (functional graphs with residual branches, nested models
inlined, or a Sequential chain), asks each `QuantizeWrapper` for its integer
kernel codes and fixed-point requantization (the very tensors its inference
path uses, so the program reproduces `model.predict` bit for bit), tracks the
producer, bits, power-of-two step and signedness of every tensor, and emits
one `LayerRecord` per accelerator instruction, each naming the instruction(s)
it reads (`src`, `src2`). Each layer is lowered by the function
`keras_nna.export.lowerers.LOWERERS` holds for its kind: `QuantizedAdd`
becomes ADD, `ZeroPadding2D` folds into its consumer's padding, Dropout /
Identity / linear activations / no-op Reshape and Flatten of a 1x1 map vanish;
BatchNorm and ReLU are already folded into the wrappers. Finally the program
is serialised and re-read with the package's own reader, so export refuses
exactly what `read_program` and the emulator refuse, naming the Keras layer at
fault.

Example:

>>> from keras_nna.quantization import quantize_model
>>> inputs = keras.Input((6, 6, 1))
>>> x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
>>> x = keras.layers.Flatten()(x)
>>> qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))
>>> program = export_model(qmodel)
>>> [layer.kind for layer in program.layers]
['conv', 'flatten', 'dense']
"""

import keras

from keras_nna.export.lowerers import LOWERERS, Builder, Tensor, no_instruction
from keras_nna.export.program import Program
from keras_nna.export.refusals import ExportError, layer_error, validated_bytes
from keras_nna.quantization.layer_kinds import keras3_type_error, layer_calls, layer_kind
from keras_nna.quantization.wrapper import is_quantize_wrapper

__all__ = ["export_model", "ExportError"]


def _export_kind(layer):
    return "quantized" if is_quantize_wrapper(layer) else layer_kind(layer)


def _tensors(value):
    return list(keras.tree.flatten(value))


def _input_shape(model):
    error = keras3_type_error(model, keras.Model, "export_model")
    if error is not None:
        raise ExportError(str(error))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ExportError("export_model expects a keras.Model with one input and one output; "
                          f"received {len(model.inputs)} inputs and {len(model.outputs)} outputs. "
                          "Export each output path as its own model.")
    in_shape = tuple(model.inputs[0].shape[1:])
    if len(in_shape) != 3 or None in in_shape:
        raise ExportError(
            f"The model input must be a fixed-size image (H, W, C); received {in_shape}. "
            "Build the model with keras.Input((H, W, C))."
        )
    return in_shape


def _check_output(model, builder, out):
    records = builder.records
    if not records:
        raise ExportError("The model has no layer to export.")
    if out.src != len(records) or any(out.pads):
        raise ExportError(
            f"The output of model '{model.name}' is not the last instruction's output (it is "
            f"{'the input image' if out.src == 0 else repr(builder.owners[out.src - 1].name)}"
            f"{' padded' if any(out.pads) else ''}). Fix: make the model end with the layer "
            "computed last (remove dangling branches or a trailing ZeroPadding2D).")
    out_rank = len(model.outputs[0].shape)
    last = records[-1].out_shape
    if out_rank == 4 and last[0] == 1 and last[1] == 1:
        raise ExportError(
            "The model output is a 1x1 feature map; the program returns it as a vector. "
            "Add Flatten or GlobalAveragePooling2D at the end."
        )


def lower(model):
    """Lowers `model` to `(Program, owners)`: the records and the Keras layer of each.

    Raises:
        ExportError: Naming the layer, what it received and the fix.
    """
    in_shape = _input_shape(model)
    builder, alias = Builder(), {}
    values = {id(model.inputs[0]): Tensor(0, in_shape, 8, 0, image=True)}
    on_error = lambda layer: layer_error(  # noqa: E731
        layer, "it is called more than once or not connected", "Call every layer exactly once.")
    for layer, ins, outs, _, _ in layer_calls(model, on_error, alias):
        for t in ins:
            if t not in values:
                raise layer_error(layer, "it reads a tensor that is not computed from the model "
                                  "input", "Build the model from its one keras.Input.")
        lowerer = LOWERERS.get(_export_kind(layer), no_instruction)
        result = lowerer(layer, [values[t] for t in ins], builder)
        for t in outs:
            values[t] = result
    out_id = id(_tensors(model.outputs)[0])
    out = values[alias.get(out_id, out_id)]
    _check_output(model, builder, out)
    scale = 1.0 if builder.input_scale is None else builder.input_scale
    return Program(in_shape, 8, builder.records, scale), builder.owners


def export_model(model, path=None, limits=None):
    """Lowers a quantized model to an integer program (and writes it).

    The program is serialised and re-read with the package's own reader
    (`read_program(write_program(program))`) before it is returned or
    written, so export refuses exactly what `read_program` and the emulator
    would refuse, naming the Keras layer of the failing instruction.

    Args:
        model: A model returned by `quantize_model` (trained or not): a graph
            (a chain, or residual branches merged by `QuantizedAdd`) from one
            uint8 image input to one output.
        path: Optional file path; the bytecode is written there.
        limits: Optional whole-program limits passed to `read_program`
            (`read_program(data, limits=limits)`), to export a trusted program
            larger than the defaults. Defaults to `None` (the reader's defaults).

    Returns:
        The `Program` (call `.to_bytes()` for the bytecode).

    Raises:
        ExportError: If `model` is not a Keras 3 model, a layer is not
            supported (also a layer that Keras' own `model.quantize` rewrote),
            a ZeroPadding2D cannot fold into its consumer, a value range exceeds what the
            accelerator represents, or the program's writer or reader refuses
            an instruction (e.g. a kernel larger than 15, a field wider than
            its bytes, an input beyond the header limits). The message names
            the layer and why.

    Example:

    >>> from keras_nna.quantization import quantize_model
    >>> inputs = keras.Input((4, 4, 1))
    >>> x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    >>> x = keras.layers.Dropout(0.5)(keras.layers.GlobalAveragePooling2D()(x))
    >>> program = export_model(quantize_model(keras.Model(inputs, keras.layers.Dense(2)(x))))
    >>> [(layer.kind, layer.out_shape) for layer in program.layers]
    [('conv', (2, 2, 2)), ('avgpool', (1, 1, 2)), ('dense', (1, 1, 2))]
    """
    program, owners = lower(model)
    data = validated_bytes(model, program, owners, limits)
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return program
