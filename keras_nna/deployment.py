"""Deploy a quantized model in one call, and see what it will cost before you do.

(The module is `deployment`, not `deploy`, so that the package can export the
function `keras_nna.deploy` without a submodule of the same name replacing it.)

The end of the loop (export → emulate → check → cost) as library calls:

- :func:`deploy` exports a quantized model, runs the program on the emulator op
  (the numpy reference when the op cannot be loaded), checks that its outputs
  equal ``qmodel.predict`` bit for bit, and estimates the cost of one inference
  on a hardware profile. It returns a :class:`DeployResult`.
- :func:`keras_nna.model_summary.summary` prints a per-layer table of a
  quantized model *before* you deploy it (bits, bytes, zero weights, MACs,
  and with images the events, synops, time and energy of every layer).
- :func:`events_per_image` and :func:`model_weight_sparsity` are the two
  numbers to watch while training for the accelerator.

Example:

>>> import keras, numpy as np
>>> from keras_nna.quantization import quantize_model
>>> keras.utils.set_random_seed(0)
>>> model = keras.Sequential([keras.Input((8, 8, 1)),
...     keras.layers.Conv2D(4, 3, strides=2, activation="relu", name="conv"),
...     keras.layers.Flatten(name="flatten"), keras.layers.Dense(3, name="logits")])
>>> qmodel = quantize_model(model)
>>> images = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
>>> result = deploy(qmodel, images, labels=np.zeros(16, int))
>>> result.bit_exact, result.accuracy is not None, result.cost.profile.name
(True, True, 'nna-1core')
>>> result.events_per_image == events_per_image(qmodel, images)
True
"""

import dataclasses
import warnings

import keras
import numpy as np

from keras_nna.export import export_model
from keras_nna.quantization import QuantizeWrapper
from keras_nna.quantization.layer_kinds import WEIGHTED_KINDS, layer_kind, unwrap
from keras_nna.runtime.cost import estimate_cost, get_profile

__all__ = ["DeployResult", "deploy", "events_per_image", "model_weight_sparsity"]


def _run_program(program, images, executor="auto", limits=None):
    """`keras_nna.runtime.emulator.run_program`, warning when it falls back to numpy."""
    from keras_nna.runtime.emulator import run_program

    outputs, stats, used = run_program(program, images, executor=executor, limits=limits)
    if used == "reference" and executor == "auto":
        warnings.warn("The emulator op could not be loaded; ran the numpy reference "
                      "interpreter instead (same results, slower).", stacklevel=3)
    return np.asarray(outputs), stats, used


def _as_images(images, max_images):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if max_images is not None:
        if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
            raise ValueError(f"max_images must be a positive int or None. Received: "
                             f"max_images={max_images!r}.")
        images = images[:max_images]
    if len(images) == 0:
        raise ValueError("Expected at least one image, received an empty batch. Pass images of "
                         "shape (N, H, W, C) with N >= 1.")
    return images


def _accuracy(outputs, labels, n):
    labels = np.asarray(labels)[:n]
    if len(labels) != n:
        raise ValueError(f"Expected one label per image ({n}), received {len(labels)} labels. "
                         "Pass labels aligned with images.")
    if outputs.ndim != 2:
        raise ValueError(f"Accuracy needs class scores of shape (N, classes); the program "
                         f"outputs {outputs.shape}. Pass labels=None for a feature extractor.")
    if labels.ndim == 2:  # one-hot
        labels = labels.argmax(-1)
    return float(np.mean(outputs.argmax(-1) == labels.reshape(-1)))


@dataclasses.dataclass
class DeployResult:
    """What :func:`deploy` measured. Per-image figures are means over the images.

    Attributes:
        program: The exported `keras_nna.export.Program`.
        outputs: Emulator outputs, float32 `[N, *output_shape]`.
        stats: Statistics `[N, n_layers, 6]`, a `keras_nna.export.program.LayerStats`
            (int64 array with named columns: `stats.events_in`, ...).
        bit_exact: Whether `outputs` equal `qmodel.predict` exactly.
        max_abs_diff: Largest `|emulator - Keras|` (0.0 when bit-exact).
        accuracy: Top-1 accuracy of the emulator outputs, `None` without labels.
        events_per_image: Non-zero activation codes sent per image (input pixels
            included), summed over the layers.
        synops_per_image: Synaptic operations (event × non-zero weight) per image.
        dense_macs_per_image: MACs a dense engine would do per image.
        program_bytes: Size of the bytecode.
        cost: `keras_nna.runtime.CostReport` for the profile (`None` if no profile).
        executor: `"emulator"` (the compiled op) or `"reference"` (numpy).
    """

    program: object
    outputs: np.ndarray
    stats: np.ndarray
    bit_exact: bool
    max_abs_diff: float
    accuracy: object
    events_per_image: float
    synops_per_image: float
    dense_macs_per_image: float
    program_bytes: int
    cost: object = None
    executor: str = "emulator"

    @property
    def images(self):
        """Number of images run."""
        return int(self.stats.shape[0])

    def to_dict(self):
        """The scalar results as a JSON-compatible `dict` (cost: its totals)."""
        out = {k: getattr(self, k) for k in (
            "images", "bit_exact", "max_abs_diff", "accuracy", "events_per_image",
            "synops_per_image", "dense_macs_per_image", "program_bytes", "executor")}
        if self.cost is not None:
            out["profile"] = self.cost.profile.name
            out["cost"] = {k: self.cost.total[k] for k in ("time_s", "energy_j", "dram_bytes")}
        return out

    def _headline(self):
        acc = "" if self.accuracy is None else f", accuracy {self.accuracy:.4f}"
        exact = ("bit-exact" if self.bit_exact
                 else f"NOT bit-exact (max |diff| {self.max_abs_diff:g})")
        return (f"{self.images} image(s) on the {self.executor}: {exact}{acc}; "
                f"{self.events_per_image:,.1f} events, {self.synops_per_image:,.0f} synops, "
                f"{self.dense_macs_per_image:,.0f} dense MACs per image; "
                f"program {self.program_bytes:,} bytes")

    def table(self):
        """Returns the headline and, with a cost report, its per-layer table."""
        lines = [self._headline()]
        if self.cost is not None:
            lines.append(self.cost.table())
        return "\n".join(lines)

    def __repr__(self):
        cost = ""
        if self.cost is not None:
            cost = (f", time_us={self.cost.total['time_s'] * 1e6:.3f}, energy_uj="
                    f"{self.cost.total['energy_j'] * 1e6:.3f} on {self.cost.profile.name!r}")
        acc = "None" if self.accuracy is None else f"{self.accuracy:.4f}"
        return (f"DeployResult(images={self.images}, bit_exact={self.bit_exact}, accuracy={acc}, "
                f"events_per_image={self.events_per_image:.1f}, synops_per_image="
                f"{self.synops_per_image:.0f}, program_bytes={self.program_bytes}{cost})")

    def __str__(self):
        return self.table()


def deploy(qmodel, images, labels=None, *, profile="nna-1core", max_images=None,
           executor="auto", limits=None):
    """Exports, emulates, checks bit-exactness and costs a quantized model.

    Args:
        qmodel: A model returned by `keras_nna.quantization.quantize_model`.
        images: uint8 images `[N, H, W, C]` (whole-number arrays in 0..255 are
            accepted).
        labels: Optional integer (or one-hot) labels, for the accuracy.
            Defaults to `None`.
        profile: Hardware profile name, `HardwareProfile` or `dict` for the cost
            estimate, or `None` for no cost. Defaults to `"nna-1core"`.
        max_images: Use only the first `max_images` images. Defaults to `None`.
        executor: `"auto"` (the emulator op, else the numpy reference with a
            warning), `"emulator"` or `"reference"`. Defaults to `"auto"`.
        limits: Raised program limits for a large, trusted model (`max_work`,
            `max_activation_bytes`, `max_constant_bytes`; docs/bytecode.md,
            "Program limits"), used by export and the emulator. Defaults to
            `None` (the readers' defaults).

    Returns:
        A :class:`DeployResult`. A warning is issued when the emulator and
        Keras disagree.

    Raises:
        keras_nna.export.ExportError: If the model cannot be exported.
        ValueError: For images that do not match the model, misaligned labels,
            an unknown profile or executor.
        RuntimeError: With `executor="emulator"` when the op cannot be loaded.

    Example:

    >>> import numpy as np
    >>> from keras_nna.quantization import quantize_model
    >>> qmodel = quantize_model(keras.Sequential([keras.Input((4, 4, 1)),
    ...     keras.layers.Flatten(), keras.layers.Dense(2)]))
    >>> result = deploy(qmodel, np.full((2, 4, 4, 1), 7, np.uint8), profile=None)
    >>> result.bit_exact, result.events_per_image, result.cost  # Flatten 16 + Dense 16
    (True, 32.0, None)
    """
    if profile is not None:
        profile = get_profile(profile)  # fail before the work on a bad profile
    images = _as_images(images, max_images)
    program = export_model(qmodel, limits=limits)
    outputs, stats, executor = _run_program(program, images, executor, limits)
    expected = keras.ops.convert_to_numpy(
        qmodel.predict(images.astype("float32"), batch_size=256, verbose=0))
    expected = expected.reshape(outputs.shape)
    bit_exact = bool(np.array_equal(outputs, expected))
    diff = float(np.max(np.abs(outputs.astype(np.float64) - expected))) if outputs.size else 0.0
    if not bit_exact:
        warnings.warn(f"The emulator outputs differ from qmodel.predict by up to {diff:g}: the "
                      "bit-exact contract is broken (check keras.mixed_precision policies and "
                      "layers changed after quantize_model).", stacklevel=2)
    per_image = np.asarray(stats, np.float64).sum(axis=1).mean(axis=0)
    return DeployResult(
        program=program, outputs=outputs, stats=stats, bit_exact=bit_exact, max_abs_diff=diff,
        accuracy=None if labels is None else _accuracy(outputs, labels, len(images)),
        events_per_image=float(per_image[0]), synops_per_image=float(per_image[1]),
        dense_macs_per_image=float(per_image[2]), program_bytes=len(program.to_bytes()),
        cost=None if profile is None else estimate_cost(program, stats, profile),
        executor=executor)


def events_per_image(qmodel, images, batch_size=256):
    """Mean events per image, as the emulator counts them, measured in Keras.

    The events of a layer are the non-zero codes it receives; they are summed
    over the program's layers (input pixels included, the raw output excluded;
    a `Flatten` is an instruction, so its events count again at the next layer).
    Equal to `deploy(...).events_per_image` without exporting to the emulator,
    so it also works while training.

    Args:
        qmodel: A model returned by `quantize_model` (exportable).
        images: Images `[N, H, W, C]` (uint8 or whole-number floats).
        batch_size: Images per forward pass. Defaults to `256`.

    Returns:
        A Python float.

    Raises:
        keras_nna.export.ExportError: If the model cannot be exported.

    Example:

    >>> from keras_nna.quantization import quantize_model
    >>> qmodel = quantize_model(keras.Sequential([keras.Input((2, 2, 1)),
    ...     keras.layers.Flatten(), keras.layers.Dense(2)]))
    >>> events_per_image(qmodel, np.array([[[[0], [5]], [[9], [0]]]], np.uint8))
    4.0
    """
    names = [rec.name for rec in export_model(qmodel).layers]
    inputs = qmodel.inputs[0] if len(qmodel.inputs) == 1 else qmodel.inputs
    probe = keras.Model(inputs, [qmodel.get_layer(n).input for n in names])
    images = _as_images(images, None)
    total = 0
    for i in range(0, len(images), batch_size):
        outs = probe(images[i:i + batch_size].astype("float32"), training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        total += sum(int(np.count_nonzero(keras.ops.convert_to_numpy(o))) for o in outs)
    return total / len(images)


def _kernels(layer):
    """Stored weights of a layer: integer codes of a QuantizeWrapper, else float kernels."""
    if isinstance(layer, QuantizeWrapper):
        s = layer.integer_summary()
        return [k for k in (s["kernel"], s["kernel2"]) if k is not None]
    inner = unwrap(layer)
    if layer_kind(inner) not in WEIGHTED_KINDS:
        return []
    names = ("kernel", "depthwise_kernel", "pointwise_kernel")
    return [keras.ops.convert_to_numpy(w) for w in inner.weights if w.name in names]


def _zeros(layer):
    """`(zero weights, weights)` as export stores them (see `_kernels`)."""
    kernels = _kernels(layer)
    return (sum(int(np.sum(k == 0)) for k in kernels), sum(int(k.size) for k in kernels))


def model_weight_sparsity(model, per_layer=False):
    """Fraction of zero weights, as the accelerator stores them.

    Quantized layers count zero integer kernel codes (pruned weights and the
    small weights that round to 0: never stored, never multiplied); other
    layers with kernels count exact zeros. Biases and BatchNorm are excluded.

    Args:
        model: A Keras model (quantized or float).
        per_layer: Also return the fraction of every layer with kernels.
            Defaults to `False`.

    Returns:
        A float in `[0, 1]`, or `(total, {layer name: fraction})` with `per_layer`.

    Example:

    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, name="d")])
    >>> _ = model.get_layer("d").kernel.assign([[0.0, 1.0], [0.0, 2.0]])
    >>> model_weight_sparsity(model, per_layer=True)
    (0.5, {'d': 0.5})
    """
    counts = {layer.name: _zeros(layer) for layer in model.layers}
    counts = {name: c for name, c in counts.items() if c[1]}
    zeros, total = sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())
    overall = zeros / total if total else 0.0
    if per_layer:
        return overall, {name: z / n for name, (z, n) in counts.items()}
    return overall
