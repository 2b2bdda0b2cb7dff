"""Regularizers that make activations and weights sparse.

Activation sparsity
-------------------
:class:`ActivityRegularizer` is a ``keras.regularizers.Regularizer`` for
``activity_regularizer=`` with three knobs, all **per-element means** (so one strength
works across layers of any size; Keras divides activity losses by the batch size and
the regularizer returns sums over the batch):

- ``l1 * mean(|x|)`` and ``l2 * mean(x²)`` (an L1 + L2 mix);
- ``hoyer * mean_over_samples(‖x‖₁² / ‖x‖₂² / n)``: the Hoyer-square ratio, a
  *scale-invariant* sparsity measure (Kurtz et al. 2020, Yang et al. 2020), between
  ``1/n`` (one non-zero) and ``1`` (all equal).

:func:`add_activity_regularization` attaches it to every ReLU output of an existing
model in one call (``keras.layers.ReLU``, ``Activation("relu")`` and layers with
``activation="relu"``), optionally weighting each layer by the cost of its events
(``weighting="cost"``: MACs an event triggers in the consuming layers, normalised to
mean 1, see :func:`keras_nna.sparsity.event_fan_out`) or by its size
(``weighting="events"``: activations per sample, normalised to mean 1, so every
event costs the same wherever it is and the loss follows the total event count the
accelerator sees — the per-element means alone under-weight the large early maps).
Call it before ``compile``.

Keep the sparse activations inside the quantized range with ``max_value`` (the helper
then caps each regularized ``keras.layers.ReLU`` at the top of that range: a float, or a
:class:`keras_nna.quantization.QuantizationPolicy` for each layer's own range), and
quantize a regularized network with a finer activation step
(``QuantizationPolicy(activation_max=2.0)``: 4-bit step 1/8), chosen by accuracy with
:func:`keras_nna.calibration.activation_step_sweep`. During QAT the regularizer sees
the fake-quantized output; its ``|x|`` has gradient +1 at 0 so activations that round
to code 0 keep being pushed down. Recommended start: ``hoyer=0.1`` (optionally
``l1=0.01``), then tune on the event budget. The measurements behind this advice
(digits CNN table, Fashion-MNIST AkidaNet, caps, steps) are in ``docs/sparsity.md``.

Weight sparsity
---------------
:func:`add_weight_regularization` sets an L1 kernel regularizer (prefers exact zeros,
pairs with :class:`keras_nna.sparsity.PruneCallback`), and
:func:`add_gamma_regularization` an L1 penalty on BatchNormalization gammas (network
slimming, pairs with BN-gamma filter pruning) whose per-layer strength can follow the
cost of the producing layer (``weighting="flops"`` or ``"params"``, normalised to mean 1).

Example:

>>> import numpy as np
>>> reg = ActivityRegularizer(l1=0.5)
>>> float(reg(np.ones((2, 4), "float32")))
1.0
"""

import numpy as np
import keras
import tensorflow as tf

from keras_nna._checks import check_number
from keras_nna.quantization import QuantizationPolicy, is_quantize_wrapper
from keras_nna.quantization.layer_kinds import applies_relu, iter_layers, layer_kind, unwrap
from keras_nna.sparsity.graph import event_fan_out, layer_graph, layer_macs
from keras_nna.sparsity.masks import layer_weight

__all__ = ["ActivityRegularizer", "add_activity_regularization", "add_weight_regularization",
           "add_gamma_regularization", "relu_layers"]


def _check_strength(**kwargs):
    return [check_number(name, value, low=0.0, fix=f"Pass a regularization strength such as "
                         f"{name}=1e-4 (0 disables it).") for name, value in kwargs.items()]


@keras.saving.register_keras_serializable(package="keras_nna")
class ActivityRegularizer(keras.regularizers.Regularizer):
    """L1 + L2 + Hoyer activity regularizer with per-element-mean strengths.

    Args:
        l1: Strength of `mean(|x|)`. Defaults to `0.0`.
        l2: Strength of `mean(x²)`. Defaults to `0.0`.
        hoyer: Strength of the scale-invariant Hoyer-square ratio
            `‖x‖₁² / (‖x‖₂² · n)` per sample. Defaults to `0.0`.

    Raises:
        TypeError: If a strength is not a number.
        ValueError: If a strength is negative, NaN or infinite.

    Example:

    >>> import numpy as np
    >>> x = np.array([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], "float32")
    >>> float(ActivityRegularizer(hoyer=1.0)(x))  # 1/4 + 1, summed over the batch
    1.25
    """

    def __init__(self, l1=0.0, l2=0.0, hoyer=0.0):
        self.l1, self.l2, self.hoyer = _check_strength(l1=l1, l2=l2, hoyer=hoyer)

    def __call__(self, x):
        x = tf.cast(x, tf.float32)
        if x.shape.rank == 0:
            x = tf.reshape(x, (1, 1))
        elif x.shape.rank == 1:
            x = x[None]
        n = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
        # |x| whose gradient at 0 is +1, not tf.abs's 0: a fake-quantized
        # activation that rounds to 0 (pre-activation in (0, step/2)) still gets
        # pushed down through the straight-through estimator instead of drifting
        # up into an event during QAT.
        magnitude = tf.where(x >= 0, x, -x)
        loss = tf.constant(0.0)
        if self.l1:
            loss += self.l1 * tf.reduce_sum(magnitude) / n
        if self.l2:
            loss += self.l2 * tf.reduce_sum(tf.square(x)) / n
        if self.hoyer:
            axes = list(range(1, x.shape.rank))
            s1 = tf.reduce_sum(magnitude, axes)
            s2 = tf.reduce_sum(tf.square(x), axes)
            loss += self.hoyer * tf.reduce_sum(tf.math.divide_no_nan(s1 * s1, s2)) / n
        return loss

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2, "hoyer": self.hoyer}

    def __repr__(self):
        return f"<ActivityRegularizer l1={self.l1:.3g} l2={self.l2:.3g} hoyer={self.hoyer:.3g}>"


def relu_layers(model):
    """Names of the layers whose output is a ReLU output.

    The rule is `keras_nna.quantization.layer_kinds.applies_relu`, the one
    `quantize_model` fuses by: a `ReLU` layer (any `max_value`, but no
    `negative_slope` or `threshold`), `Activation("relu")`, `activation="relu"`,
    or a `QuantizeWrapper` with a ReLU output; and a quantized residual add
    with its ReLU fused (`keras_nna.quantization.QuantizedAdd(relu=True)`: in the
    float model it is the ReLU after the `Add`, already on this list).

    Args:
        model: A Keras model.

    Returns:
        List of layer names.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu", name="a"),
    ...                       keras.layers.Dense(2, name="b"), keras.layers.ReLU(name="r")])
    >>> relu_layers(m)
    ['a', 'r']
    """
    return [l.name for l in iter_layers(model) if applies_relu(l) or _is_relu_add(l)]


def _is_relu_add(layer):
    """A quantized residual add with its ReLU fused (`QuantizedAdd(relu=True)`)."""
    inner = unwrap(layer)
    return layer_kind(inner) == "add" and getattr(inner, "relu", False) is True


def _normalised(weights):
    mean = float(np.mean(list(weights.values()))) if weights else 1.0
    return {k: v / mean if mean > 0 else 1.0 for k, v in weights.items()}


def _range_top(policy, graph, relu_name):
    """Top of the quantized range of the layer a ReLU will be fused into."""
    name = relu_name
    while graph.producers.get(name):
        name = graph.producers[name][0]
        if layer_kind(unwrap(graph.layers[name])) not in ("batchnorm", "passthrough"):
            break
    return policy.activation_top(name)


def _cap_relus(model, names, max_value):
    layers = {l.name: l for l in iter_layers(model)}
    # Quantized layers (QuantizeWrapper, QuantizedAdd) already clip at their range's top.
    names = [n for n in names if not is_quantize_wrapper(layers[n]) and not _is_relu_add(layers[n])]
    not_relu_layers = [n for n in names if not isinstance(unwrap(layers[n]), keras.layers.ReLU)]
    if not_relu_layers:
        raise ValueError(f"`max_value` caps keras.layers.ReLU layers only; {not_relu_layers} apply "
                         "ReLU as an activation. Build the model with separate keras.layers.ReLU "
                         "layers (as AkidaNet does), or pass max_value=None.")
    if isinstance(max_value, QuantizationPolicy):
        graph = layer_graph(model)
        caps = {n: _range_top(max_value, graph, n) for n in names}
    else:
        caps = {n: float(max_value) for n in names}
    for n, cap in caps.items():
        relu = unwrap(layers[n])
        if relu.max_value is None or relu.max_value > cap:
            relu.max_value = cap  # read at call time: the next compile/fit traces the capped ReLU
    return caps


def add_activity_regularization(model, l1=0.0, l2=0.0, hoyer=0.0, weighting=None,
                                max_value=None):
    """Attaches an :class:`ActivityRegularizer` to every ReLU output of a model, in place.

    Args:
        model: A functional or Sequential model (any model for `weighting=None`).
        l1: L1 strength (per element). Defaults to `0.0`.
        l2: L2 strength (per element). Defaults to `0.0`.
        hoyer: Hoyer-square strength. Defaults to `0.0`.
        weighting: `None` (same strength everywhere), `"cost"` (strength × events'
            fan-out in MACs) or `"events"` (strength × activations per sample), both
            normalised to mean 1 over the regularized layers. Defaults to `None`.
        max_value: Also cap every regularized `keras.layers.ReLU` at this value: a
            float (e.g. `3.75`, the top of the 4-bit range) or a
            `QuantizationPolicy` (each layer's own range top; pass the policy the
            model will be quantized with, e.g. `activation_max=2.0`, the finer
            step that suits a regularized network, see the module guide). A lower
            existing cap is kept. `None` leaves the ReLUs as they are. Defaults to
            `None`.

    Returns:
        Dict `{layer name: ActivityRegularizer}` that was attached.

    Raises:
        TypeError: If a strength or `max_value` is not a number (or a policy).
        ValueError: On a negative, NaN or infinite strength, a `max_value` that is
            not a finite number > 0, an unknown weighting, a model without ReLUs,
            or `max_value` with a ReLU that is not a `keras.layers.ReLU` layer.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="d"),
    ...                       keras.layers.ReLU(name="r"), keras.layers.Dense(2)])
    >>> add_activity_regularization(m, l1=0.01, max_value=3.75)
    {'r': <ActivityRegularizer l1=0.01 l2=0 hoyer=0>}
    >>> m.get_layer("r").max_value
    3.75
    >>> from keras_nna.quantization import QuantizationPolicy
    >>> _ = add_activity_regularization(m, hoyer=0.5, max_value=QuantizationPolicy(activation_max=2.0))
    >>> m.get_layer("r").max_value
    1.875
    """
    l1, l2, hoyer = _check_strength(l1=l1, l2=l2, hoyer=hoyer)
    if max_value is not None and not isinstance(max_value, QuantizationPolicy):
        max_value = check_number(
            "max_value", max_value, low=0.0, low_open=True,
            fix="Pass a number > 0 or a QuantizationPolicy; use e.g. 3.75, the top of the 4-bit "
                "range.")
    if weighting not in (None, "cost", "events"):
        raise ValueError(f"Unknown `weighting`={weighting!r}. Expected None, 'cost' or 'events'.")
    names = relu_layers(model)
    if not names:
        raise ValueError(f"Model {model.name!r} has no ReLU output to regularize (expected "
                         "keras.layers.ReLU, Activation('relu') or activation='relu').")
    if max_value is not None:
        _cap_relus(model, names, max_value)
    factors = {n: 1.0 for n in names}
    if weighting == "cost":
        graph = layer_graph(model)
        factors = _normalised({n: event_fan_out(graph, n) for n in names})
    elif weighting == "events":
        graph = layer_graph(model)
        factors = _normalised({n: float(np.prod(graph.output_shape(n)[1:])) for n in names})
    attached = {}
    layers = {l.name: l for l in iter_layers(model)}
    for n in names:
        f = factors[n]
        reg = ActivityRegularizer(l1 * f, l2 * f, hoyer * f)
        layers[n].activity_regularizer = reg
        attached[n] = reg
    return attached


def _set_weight_regularizer(layer, key, attr, regularizer):
    var = layer_weight(layer, key)
    if var is None:
        return False
    var.regularizer = regularizer
    setattr(unwrap(layer), attr, regularizer)
    return True


def add_weight_regularization(model, l1=1e-5, layers=None):
    """Adds an L1 kernel regularizer (prefers exact zeros) to prunable layers, in place.

    Args:
        model: A built Keras model.
        l1: Strength (Keras semantics: `l1 * sum(|w|)`). Defaults to `1e-5`.
        layers: Layer names, `None` for every conv/depthwise/separable/dense layer.
            Defaults to `None`.

    Returns:
        List of regularized layer names.

    Raises:
        TypeError: If `l1` is not a number.
        ValueError: On a negative, NaN or infinite strength or unknown layer names.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="d")])
    >>> add_weight_regularization(m, l1=1e-4)
    ['d']
    """
    from keras_nna.sparsity.masks import find_prunable_weights

    (l1,) = _check_strength(l1=l1)
    done = []
    for w in find_prunable_weights(model, layers):
        attr = "kernel_regularizer" if w.key == "kernel" else w.key + "_regularizer"
        w.variable.regularizer = keras.regularizers.L1(l1)
        setattr(w.layer, attr, w.variable.regularizer)
        if w.layer_name not in done:
            done.append(w.layer_name)
    return done


def add_gamma_regularization(model, l1=1e-4, weighting=None):
    """Adds L1 on every BatchNormalization gamma (network slimming), in place.

    With a weighting, each BN's strength is multiplied by the cost of the layer that
    produces its input (MACs for `"flops"`, parameters for `"params"`; normalised to
    mean 1), so expensive layers are pushed harder towards prunable filters. A
    dict gives the factors directly (e.g.
    :func:`keras_nna.optimize.event_cost_weights`): they are used as given, and a
    BN missing from the dict gets factor 0 (no regularizer attached).

    Args:
        model: A built model (functional or Sequential for a weighting).
        l1: Base strength (Keras semantics: `l1 * sum(|gamma|)`). Defaults to `1e-4`.
        weighting: `None`, `"flops"`, `"params"` or a dict `{BN layer name:
            factor >= 0}`. Defaults to `None`.

    Returns:
        Dict `{BN layer name: strength}` (0 for a BN missing from a dict weighting).

    Raises:
        TypeError: If `l1` or a dict factor is not a number.
        ValueError: On a negative, NaN or infinite strength or factor, unknown
            weighting, a dict naming a layer that is not a BN with gamma, or a
            model without BN.

    Example:

    >>> import keras
    >>> m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
    ...                       keras.layers.BatchNormalization(name="bn")])
    >>> add_gamma_regularization(m, l1=1e-3)
    {'bn': 0.001}
    >>> add_gamma_regularization(m, l1=1e-3, weighting={"bn": 2.0})
    {'bn': 0.002}
    """
    (l1,) = _check_strength(l1=l1)
    if not isinstance(weighting, dict) and weighting not in (None, "flops", "params"):
        raise ValueError(f"Unknown `weighting`={weighting!r}. Expected None, 'flops' or 'params'.")
    bns = [l for l in iter_layers(model)
           if layer_kind(unwrap(l)) == "batchnorm" and layer_weight(l, "gamma") is not None]
    if not bns:
        raise ValueError(f"Model {model.name!r} has no BatchNormalization layer with a gamma.")
    factors = {l.name: 1.0 for l in bns}
    if isinstance(weighting, dict):
        unknown = sorted(set(weighting) - set(factors))
        if unknown:
            raise ValueError(f"`weighting` names {unknown}, which are not BatchNormalization "
                             f"layers with a gamma. Expected names among {sorted(factors)}.")
        factors = {n: check_number(f"weighting[{n!r}]", weighting.get(n, 0.0), low=0.0,
                                   fix="Pass a factor >= 0 per BN layer, e.g. {'bn': 1.0}.")
                   for n in factors}
    elif weighting is not None:
        graph = layer_graph(model)
        costs = {}
        for l in bns:
            prod = graph.producers[l.name][0] if graph.producers.get(l.name) else None
            p = graph.layers.get(prod)
            if p is None:
                costs[l.name] = 0.0
            elif weighting == "params":
                costs[l.name] = float(p.count_params())
            else:
                costs[l.name] = float(layer_macs(p, graph.input_shape(prod), graph.output_shape(prod))
                                      if graph.producers[prod] else 0.0)
        factors = _normalised(costs)
    out = {}
    for l in bns:
        strength = float(l1) * factors[l.name]
        if strength > 0 or not isinstance(weighting, dict):
            _set_weight_regularizer(l, "gamma", "gamma_regularizer", keras.regularizers.L1(strength))
        out[l.name] = strength
    return out

