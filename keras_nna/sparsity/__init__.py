"""Sparsity for the event-based accelerator: eliminate, then reduce.

The accelerator never stores or multiplies a zero weight and never sends a zero
activation, so every zero saves work. This package makes zeros and measures them:

Measure
    :func:`measure_activation_sparsity` (zeros/events per layer, optionally on the
    fixed 4-bit grid), :class:`ActivationSparsityCallback`,
    :func:`count_params_and_macs`.
Activation sparsity (regularization)
    :class:`ActivityRegularizer` (L1, L2 and scale-invariant Hoyer, per-element
    strengths) and :func:`add_activity_regularization` for every ReLU of a model
    (optionally weighted by events or event cost, with ``max_value`` capping the
    ReLUs at the quantized range so QAT does not clip the large activations Hoyer
    favours). See :mod:`keras_nna.sparsity.regularizers` for measured numbers.
Weight sparsity (pruning)
    :class:`PruneCallback` with :class:`ConstantSparsity` / :class:`PolynomialDecay`
    (or tfmot schedules), :func:`prune_weights`, :func:`add_weight_regularization`.
Structured pruning (fewer filters)
    :func:`add_gamma_regularization` (network slimming), :class:`FilterPruneCallback`
    / :func:`prune_filters` (BN-gamma or L1 criterion), then
    :func:`remove_pruned_filters` for a physically smaller model. Residual graphs
    work: producers joined by ``Add`` layers form one channel group
    (:func:`channel_groups`) and lose a filter together or not at all.
Choosing ratios
    :func:`sensitivity_analysis`, :func:`plot_sensitivity`, :func:`propose_ratios`.

A typical run (small data, a few epochs)::

    import keras
    from keras_nna import sparsity

    sparsity.add_activity_regularization(model, l1=0.01, hoyer=0.1, max_value=3.75)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, callbacks=[
        sparsity.PruneCallback(sparsity.PolynomialDecay(0.0, 0.5, 0, 500, frequency=50)),
        sparsity.ActivationSparsityCallback(x[:256], quantization_step=0.25)])
    print(sparsity.measure_activation_sparsity(model, x[:256], 0.25)["total"])

Pruning masks are the zero patterns of the kernels (see :mod:`keras_nna.sparsity.masks`),
so pruned models save, load and resume with ``BackupAndRestore`` as plain Keras models.

Example:

>>> ConstantSparsity(0.5)(0)
(True, 0.5)
"""

from keras_nna.sparsity.activations import (ActivationSparsityCallback, measure_activation_sparsity,
                                            quantize_codes)
from keras_nna.sparsity.filters import FilterPruneCallback, filter_scores, prune_filters
from keras_nna.sparsity.graph import count_params_and_macs, event_fan_out, layer_graph
from keras_nna.sparsity.masks import detach_masks, find_prunable_weights, weight_sparsity
from keras_nna.sparsity.pruning import PruneCallback, compute_masks, prune_weights
from keras_nna.sparsity.regularizers import (ActivityRegularizer, add_activity_regularization,
                                             add_gamma_regularization, add_weight_regularization,
                                             relu_layers)
from keras_nna.sparsity.schedules import ConstantSparsity, PolynomialDecay, evaluate_schedule
from keras_nna.sparsity.sensitivity import plot_sensitivity, propose_ratios, sensitivity_analysis
from keras_nna.sparsity.surgery import (channel_groups, compare_models, dead_channels,
                                        rebuild_channels, remove_pruned_filters)

__all__ = [
    "ActivationSparsityCallback", "ActivityRegularizer", "ConstantSparsity", "FilterPruneCallback",
    "PolynomialDecay", "PruneCallback", "add_activity_regularization", "add_gamma_regularization",
    "add_weight_regularization", "channel_groups", "compare_models", "compute_masks",
    "count_params_and_macs", "dead_channels", "detach_masks", "evaluate_schedule", "event_fan_out", "filter_scores",
    "find_prunable_weights", "layer_graph", "measure_activation_sparsity", "plot_sensitivity",
    "propose_ratios", "prune_filters", "prune_weights", "quantize_codes", "rebuild_channels",
    "relu_layers", "remove_pruned_filters", "sensitivity_analysis", "weight_sparsity",
]
