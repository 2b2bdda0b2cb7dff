"""Prunable weights and the masks that keep pruned weights at zero.

keras_nna prunes the kernels of convolution, depthwise, separable (depthwise and
pointwise) and dense layers, float or wrapped (``keras.layers.Wrapper`` such as
``keras_nna.quantization.QuantizeWrapper``: the kernels are reached through
``.layer``). :func:`find_prunable_weights` lists them in model order.

Where masks live
----------------
The mask of a pruned kernel *is its zero pattern*: a pruned weight is stored as an
exact ``0.0`` in the kernel itself, so ``model.save``/``load_model``,
``save_weights`` and ``keras.callbacks.BackupAndRestore`` carry the masks with no
extra variables, no custom objects and no change of the model's config. While
training, each pruned kernel gets one non-trainable ``tf.Variable`` mask (created in
the model's distribution strategy scope, so it is mirrored like the kernel) wrapped
in a constraint set on the kernel variable (``variable.constraint``). Keras 3
optimizers apply variable constraints right after each update *inside* the compiled
train step, so the mask is re-applied after every optimizer step, also with
``jit_compile=True`` and ``steps_per_execution > 1`` (where callbacks run only once
per execution). At the start of training the masks are recovered from the zero
pattern (:func:`mask_from_zeros`), which is how a resumed or re-loaded run continues
with the same masks. The cost is one mask per pruned kernel while training, none at
rest. The constraints stay on the kernels after ``fit`` (later fine-tuning in the same
session keeps the zeros); :func:`detach_masks` removes them. The only ambiguity, a
trained weight that is exactly ``0.0`` by chance, is harmless: it is treated as pruned
and stays zero. Alternative rejected: masks as non-trainable model variables would
change the saved weights layout and need custom objects to load.

Example:

>>> import keras
>>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
>>> [(w.layer_name, w.key) for w in find_prunable_weights(model)]
[('d', 'kernel')]
"""

import dataclasses

import numpy as np
import keras
import tensorflow as tf

from keras_nna.quantization.layer_kinds import iter_layers, unwrap

__all__ = ["PrunableWeight", "find_prunable_weights", "mask_from_zeros", "weight_sparsity",
           "attach_mask", "detach_masks", "training_target"]

_KERNEL_KEYS = {
    "Conv1D": ("kernel",), "Conv2D": ("kernel",), "Conv3D": ("kernel",),
    "Conv2DTranspose": ("kernel",), "DepthwiseConv2D": ("kernel",),
    "DepthwiseConv1D": ("kernel",), "SeparableConv2D": ("depthwise_kernel", "pointwise_kernel"),
    "SeparableConv1D": ("depthwise_kernel", "pointwise_kernel"), "Dense": ("kernel",),
}


@dataclasses.dataclass
class PrunableWeight:
    """A kernel that can be pruned.

    Attributes:
        layer_name: Name of the (outer) layer in the model.
        key: Which kernel: `"kernel"`, `"depthwise_kernel"` or `"pointwise_kernel"`.
        variable: The `keras.Variable` holding it.
        layer: The layer that owns the variable (the inner layer of a wrapper).
    """

    layer_name: str
    key: str
    variable: object
    layer: object

    @property
    def name(self):
        """`layer_name` for single-kernel layers, `layer_name/key` otherwise."""
        if self.key == "kernel":
            return self.layer_name
        return f"{self.layer_name}/{self.key}"


def layer_weight(layer, key):
    """Returns the variable named `key` of `layer` (or of its inner layer), or None."""
    for candidate in (layer, unwrap(layer)):
        for v in candidate.weights:
            if v.name == key:
                return v
    return None


def training_target(model):
    """The model whose weights a callback acts on: `model.student` for a distiller.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    >>> training_target(m) is m
    True
    """
    student = getattr(model, "student", None)
    return student if isinstance(student, keras.Model) else model


def find_prunable_weights(model, layers=None, exclude_first=False):
    """Lists the prunable kernels of a model.

    Args:
        model: A built Keras model.
        layers: Optional list of layer names to restrict to. Defaults to `None` (all).
        exclude_first: Skip the first prunable layer (often the most sensitive; on the
            accelerator its input is the dense image). Defaults to `False`.

    Returns:
        List of :class:`PrunableWeight`, in model order.

    Raises:
        ValueError: If the model is not built, or a name in `layers` is not a
            prunable layer (the message lists the valid names).

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="c"),
    ...                       keras.layers.Flatten(), keras.layers.Dense(2, name="d")])
    >>> [w.name for w in find_prunable_weights(m, exclude_first=True)]
    ['d']
    """
    if not model.built:
        raise ValueError("The model must be built before pruning: call it on data or "
                         "create it with `keras.Input`.")
    found = []
    for layer in iter_layers(model):
        inner = unwrap(layer)
        for key in _KERNEL_KEYS.get(type(inner).__name__, ()):
            var = layer_weight(inner, key)
            if var is not None:
                found.append(PrunableWeight(layer.name, key, var, inner))
    if exclude_first and found:
        first = found[0].layer_name
        found = [w for w in found if w.layer_name != first]
    if layers is not None:
        if isinstance(layers, str):
            layers = [layers]
        valid = sorted({w.layer_name for w in found})
        unknown = [n for n in layers if n not in valid]
        if unknown:
            raise ValueError(
                f"Unknown or non-prunable layer name(s) {unknown}. Expected names of "
                f"conv/depthwise/separable/dense layers; valid names: {valid}.")
        found = [w for w in found if w.layer_name in set(layers)]
    return found


def mask_from_zeros(variable):
    """Returns the mask implied by a kernel's zero pattern (1 where non-zero).

    Args:
        variable: A kernel variable or array.

    Returns:
        A float32 NumPy array of the kernel's shape.

    Example:

    >>> mask_from_zeros(np.array([0.0, 2.0, -1.0]))
    array([0., 1., 1.], dtype=float32)
    """
    return (np.asarray(keras.ops.convert_to_numpy(variable)) != 0).astype("float32")


def weight_sparsity(variable):
    """Fraction of exact zeros in a weight.

    Args:
        variable: A variable or array.

    Returns:
        Python float in `[0, 1]`.

    Example:

    >>> weight_sparsity(np.array([0.0, 1.0, 0.0, 3.0]))
    0.5
    """
    value = np.asarray(keras.ops.convert_to_numpy(variable))
    return float((value == 0).mean()) if value.size else 0.0


class _MaskConstraint(keras.constraints.Constraint):
    """Multiplies a weight by a mask after the inner constraint (internal, not saved)."""

    def __init__(self, mask, inner=None):
        self.mask = mask
        self.inner = inner

    def __call__(self, w):
        if self.inner is not None:
            w = self.inner(w)
        return w * tf.cast(self.mask, w.dtype)

    def get_config(self):
        return {}


def _strategy_scope(model):
    strategy = getattr(model, "distribute_strategy", None) or tf.distribute.get_strategy()
    return strategy.scope()


def attach_mask(model, variable, mask):
    """Sets (or updates) the mask constraint of a variable and zeroes the masked weights.

    The mask is a non-trainable `tf.Variable` broadcastable to the weight (full shape
    for weight pruning, ``(filters,)`` for filter masks of last-axis filters).

    Args:
        model: The model (its distribution strategy scope owns the mask variable).
        variable: The `keras.Variable` to mask.
        mask: Array of 0/1, broadcastable to the variable's shape.

    Returns:
        The mask `tf.Variable`.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    >>> k = m.layers[0].kernel
    >>> _ = attach_mask(m, k, np.array([1.0, 0.0]))
    >>> float(np.abs(k.numpy()[:, 1]).sum())
    0.0
    >>> detach_masks(m)
    1
    """
    mask = np.asarray(mask, dtype="float32")
    constraint = variable.constraint
    existing = None
    c = constraint
    while isinstance(c, _MaskConstraint):
        if tuple(c.mask.shape) == mask.shape:
            existing = c
            break
        c = c.inner
    if existing is not None:
        existing.mask.assign(mask)
        mask_var = existing.mask
    else:
        with _strategy_scope(model):
            mask_var = tf.Variable(mask, trainable=False, dtype=tf.float32,
                                   name="nna_mask", synchronization=tf.VariableSynchronization.ON_WRITE,
                                   aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        variable.constraint = _MaskConstraint(mask_var, inner=constraint)
    variable.assign(keras.ops.convert_to_numpy(variable) * mask)
    return mask_var


def detach_masks(model):
    """Removes every mask constraint from a model's variables (the zeros stay).

    Args:
        model: A Keras model.

    Returns:
        Number of variables whose masks were removed.

    Example:

    >>> import keras
    >>> detach_masks(keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)]))
    0
    """
    count = 0
    for v in model.weights:
        c = v.constraint
        if isinstance(c, _MaskConstraint):
            while isinstance(c, _MaskConstraint):
                c = c.inner
            v.constraint = c
            count += 1
    return count
