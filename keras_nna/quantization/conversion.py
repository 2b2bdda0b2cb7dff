"""The state of one `quantize_model` run: the flattened float graph and the new one.

`Conversion` flattens a Sequential or functional model (nested models are
inlined) into a list of `Op`s, one per layer call, in topological order, and
records for every float tensor the new tensor standing for it and what it
holds (`info`):

* ``{"raw_input": True, "scale": s}``: the model input (pixels), after any
  folded `Rescaling` (`s` is the real value of one unit);
* ``{"bits": b, "step": s, "signed": bool}``: activation codes on a
  power-of-two step, unsigned (ReLU) or signed;
* ``{"raw": True}``: a raw float output (a model output without ReLU).

The conversion steps of `keras_nna.quantization.steps` read and write this
state; `quantize_model` drives them.

Example:

>>> inputs = keras.Input((4,))
>>> model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(keras.layers.Dense(3)(inputs)))
>>> conv = Conversion(model, QuantizationPolicy())
>>> [(op.layer.name, op.in_shapes) for op in conv.ops][1]
('fc', [(None, 3)])
"""

import keras

from keras_nna.quantization.checks import SUPPORTED_LAYERS
from keras_nna.quantization.layer_kinds import layer_calls
from keras_nna.quantization.policy import QuantizationPolicy  # noqa: F401  (doctest)

__all__ = ["Conversion", "Op", "float32_copy", "unsupported"]

SUPPORTED_TEXT = (
    f"{', '.join(SUPPORTED_LAYERS)} (each optionally followed by BatchNormalization and "
    "ReLU), a leading Rescaling(offset=0), Add of two same-shape quantized tensors (optionally "
    "followed by ReLU), ZeroPadding2D before a conv or MaxPooling2D, MaxPooling2D, "
    "AveragePooling2D(padding='valid'), GlobalAveragePooling2D, Flatten, Reshape to a vector or "
    "(1, 1, n), Dropout"
)

# What to use instead of layers that are common in keras.applications but not supported.
_INSTEAD = {
    "Concatenate": "concatenation is not supported yet; merge branches with Add (same shapes)",
    "Multiply": "element-wise products (e.g. squeeze-and-excitation) are not supported; remove "
                "the block",
    "Subtract": "use Add (the accelerator adds; negate one branch with its conv weights)",
    "GlobalMaxPooling2D": "use GlobalAveragePooling2D",
}


class Op:
    """One layer call of the flattened graph: the layer, input/output tensor ids and shapes."""

    def __init__(self, layer, inputs, outputs, in_shapes=(), out_shapes=()):
        self.layer, self.inputs, self.outputs = layer, inputs, outputs
        self.in_shapes, self.out_shapes = list(in_shapes), list(out_shapes)


def _tensors(value):
    return list(keras.tree.flatten(value))


def _resolve(alias, key):
    while key in alias and alias[key] != key:
        key = alias[key]
    return key


def _flatten(model, alias, ops):
    """Appends the layer calls of `model` to `ops`, inlining nested models (`layer_calls`)."""
    def called_twice(layer):
        return ValueError(f"Layer '{layer.name}' is called more than once or not connected; "
                          "quantize_model needs each layer called exactly once.")

    for layer, ins, outs, in_shapes, out_shapes in layer_calls(model, called_twice, alias):
        ops.append(Op(layer, ins, outs, in_shapes, out_shapes))


def unsupported(layer, why=""):
    """The `ValueError` for a layer `quantize_model` cannot convert (names it and the supported set)."""
    name = type(layer).__name__
    instead = f" ({_INSTEAD[name]})" if name in _INSTEAD and not why else ""
    return ValueError(
        f"Cannot quantize layer '{layer.name}' ({name}){why}{instead}. "
        f"Supported: {SUPPORTED_TEXT}."
    )


def float32_copy(layer, **overrides):
    """A fresh layer with `layer`'s config, computing in float32."""
    return type(layer).from_config({**layer.get_config(), **overrides, "dtype": "float32"})


class Conversion:
    """The flattened float graph and the quantized graph being built from it.

    Args:
        model: The float `keras.Model`.
        policy: The `QuantizationPolicy`.

    Attributes:
        ops: The `Op`s in topological order.
        consumers: Old tensor id -> the ops reading it.
        output_ids: Old tensor ids of the model outputs.
        tensors: Old tensor id -> new tensor.
        info: Old tensor id -> what it holds (see the module docstring).
        absorbed: Ids of ops fused into an earlier op (skipped).
        copies: `(old layer, new layer)` pairs whose weights `build` copies.
    """

    def __init__(self, model, policy):
        self.policy = policy
        self.ops, self.alias = [], {}
        _flatten(model, self.alias, self.ops)
        self.consumers = {}
        for op in self.ops:
            for t in op.inputs:
                self.consumers.setdefault(t, []).append(op)
        self.output_ids = {_resolve(self.alias, id(t)) for t in _tensors(model.outputs)}
        self.new_inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]
        self.tensors = {id(old): new for old, new in zip(model.inputs, self.new_inputs)}
        self.info = {id(t): {"raw_input": True, "scale": 1.0} for t in model.inputs}
        self.absorbed = set()
        self.copies = []

    def single_consumer(self, tensor_id):
        """The only op reading `tensor_id`, or `None` (several, none, or a model output)."""
        users = self.consumers.get(tensor_id, [])
        return users[0] if len(users) == 1 and tensor_id not in self.output_ids else None

    def source(self, op):
        """`(input tensor id, its info)` of `op` (its first input)."""
        src = op.inputs[0] if op.inputs else None
        return src, self.info.get(src, {})

    def emit(self, tensor_id, tensor, info):
        """Records the new tensor standing for old tensor `tensor_id`."""
        self.tensors[tensor_id] = tensor
        self.info[tensor_id] = info

    def build(self, model):
        """The new `keras.Model`, with the float weights copied in."""
        outputs = keras.tree.map_structure(
            lambda t: self.tensors[_resolve(self.alias, id(t))], model.outputs)
        new_inputs = self.new_inputs[0] if len(self.new_inputs) == 1 else self.new_inputs
        if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
            outputs = outputs[0]
        qmodel = keras.Model(new_inputs, outputs, name=f"{model.name}_quantized")
        for old, new in self.copies:
            new.set_weights(old.get_weights())
        return qmodel
