"""Run an exported keras_nna program bit-exactly on the CPU.

The emulator executes the integer bytecode written by ``keras_nna.export``
(format: ``docs/bytecode.md``) with a compiled TensorFlow op. Its outputs
equal the quantized Keras model's ``predict`` exactly, and it counts what an
event-based accelerator would do, per image and per layer: input events,
synaptic operations, dense-equivalent MACs, constant and activation bytes,
output events.

Quick start::

    from keras_nna.runtime import Emulator

    emu = Emulator("model.nnab")            # bytes, a path, or an export Program
    emu.input_shape, emu.output_shape       # e.g. (96, 96, 3), (2,)
    logits = emu(images_uint8)              # [N, 96, 96, 3] uint8 -> [N, 2] float32
    logits, stats = emu.run_with_stats(images_uint8)
    stats.shape                             # (N, n_layers, 6), columns named by STAT_NAMES
    stats.events_in                         # [N, n_layers] (LayerStats: also .synops, ...)
    stats.summary()["events_in"]            # mean events per image

``run_program(program, images)`` runs on the op, or on the numpy reference
when the op cannot be loaded, and says which it used.

Inputs are uint8 NHWC codes; whole numbers in range of other dtypes are
converted, anything else is refused (``np.clip(np.round(x), 0, 255).astype(np.uint8)``).
NumPy inputs give NumPy outputs; tensors give tensors (eager, ``tf.function``, ``tf.data``).
A program must fit the program limits (docs/bytecode.md); ``limits=`` raises them.

In Keras, wrap the program in :class:`EmulatorLayer`: it serialises the
program (base64) in its config, so a model holding it saves and loads like
any other (TensorFlow backend only).
"""

import base64
import os

import keras
import numpy as np
import tensorflow as tf

from keras_nna.export.format import (
    KIND_NAMES,
    STAT_NAMES,
    BytecodeError,
    instruction,
    peek_header,
    program_bytes,
)
from keras_nna.export.images import check_images, shape_error
from keras_nna.export.limits import resolve_limits
from keras_nna.export.program import LayerStats
from keras_nna.runtime.op import MODES, load_op_library, nna_run

__all__ = ["EXECUTORS", "Emulator", "EmulatorLayer", "KIND_NAMES", "LayerStats", "STAT_NAMES",
           "program_bytes", "run_program"]

EXECUTORS = ("auto", "emulator", "reference")
"""Executors of `run_program`: the compiled op, the numpy reference, or the op if it loads."""


class Emulator:
    """Bit-exact emulator of a keras_nna program.

    The program is validated when the emulator is created (by the C++ op, the
    same code that runs it), so a corrupted file fails here with a reason.

    Args:
        program: bytecode ``bytes``, a path to a bytecode file, or a
            ``keras_nna.export.Program``.
        mode: kernel choice, ``"auto"`` (default, per layer by input density),
            ``"event"`` or ``"dense"``. Results and statistics are identical.
        limits: optional dict raising program limits for a trusted program, e.g.
            ``{"max_work": 2**38}`` (keys and defaults: ``keras_nna.export.limits``).

    Raises:
        tf.errors.InvalidArgumentError: if the program is invalid or over a limit.
        ValueError: for an unknown ``mode`` or limit.
        FileNotFoundError / IsADirectoryError: for a path that is not a file.
        TypeError: for a ``program`` of another type.

    Example:

    >>> from keras_nna.export import LayerRecord, Program
    >>> rec = LayerRecord(kind="dense", in_shape=(1, 1, 2), out_shape=(1, 1, 2), in_bits=8,
    ...                   out_bits=0, w_bits=3, weights=np.array([[1, 2], [-3, 0]]),
    ...                   m=np.array([1 << 14] * 2), n=np.array([0, 0]), sh=np.array([14, 14]))
    >>> emu = Emulator(Program((1, 1, 2), 8, [rec]))
    >>> emu.input_shape, emu.output_shape, emu.layer_kinds
    ((1, 1, 2), (2,), ('dense',))
    >>> emu(np.array([[[[3, 1]]]], np.uint8)).tolist()
    [[0.0, 6.0]]
    """

    def __init__(self, program, mode="auto", limits=None):
        self.mode, self.limits = mode, resolve_limits(limits)  # nna_run below checks both
        names = ([getattr(rec, "name", "") or None for rec in program.layers]
                 if hasattr(program, "layers") and hasattr(program, "to_bytes") else None)
        data = self._bytes = program_bytes(program)
        self._program_tensor = None  # one tf.constant per emulator: the op's cache key
        try:
            header = peek_header(data)
        except BytecodeError:  # the op below rejects it with its own reason
            header = None
        n_layers = header.n_layers if header else 0
        h, w, c = (header.in_h, header.in_w, header.in_c) if header else (1, 1, 1)
        # Validation by the op itself: an empty batch parses the whole program.
        empty = tf.zeros((0, max(h, 1), max(w, 1), max(c, 1)), tf.uint8)
        nna_run(self._program_arg(), empty, mode=mode, limits=self.limits)
        self._input_shape = (h, w, c)
        self._input_bits = header.in_bits if header else 8
        self._input_scale = float(header.input_scale if header else 1.0)
        instrs = [instruction(data, i) for i in range(n_layers)]
        self._layer_kinds = tuple(KIND_NAMES[f.kind] for f in instrs)
        if names is None or len(names) != n_layers or not all(names):
            names = [f"{k}_{i}" for i, k in enumerate(self._layer_kinds)]
        self._layer_names = tuple(names)
        shape = (instrs[-1].out_h, instrs[-1].out_w, instrs[-1].out_c)
        self._output_shape = (shape[2],) if shape[:2] == (1, 1) else shape

    @property
    def program(self):
        """The program bytecode (``bytes``)."""
        return self._bytes

    @property
    def input_shape(self):
        """``(H, W, C)`` of one input image."""
        return self._input_shape

    @property
    def input_bits(self):
        """Bits of the input codes (8 for images)."""
        return self._input_bits

    @property
    def input_scale(self):
        """Real value of one input code (informative)."""
        return self._input_scale

    @property
    def output_shape(self):
        """Shape of one output: ``(C,)`` when the last layer is 1x1, else ``(H, W, C)``."""
        return self._output_shape

    @property
    def layer_kinds(self):
        """Kind of each layer (``"conv"``, ``"depthwise"``, ...)."""
        return self._layer_kinds

    @property
    def layer_names(self):
        """Names of the layers (Keras names when built from a Program, else ``kind_i``)."""
        return self._layer_names

    @property
    def n_layers(self):
        """Number of layers (instructions)."""
        return len(self._layer_kinds)

    def __repr__(self):
        return (f"Emulator(input_shape={self.input_shape}, output_shape={self.output_shape}, "
                f"layers={list(self.layer_kinds)}, {len(self._bytes)} bytes)")

    def __call__(self, images):
        """Same as :meth:`run`."""
        return self.run(images)

    def run(self, images, mode=None):
        """Runs a batch.

        Args:
            images: uint8 ``[N, H, W, C]`` (NumPy array or tensor); whole-number
                integer/float values in range are converted.
            mode: overrides the emulator's kernel choice for this call.

        Returns:
            float32 outputs ``[N, *output_shape]`` (NumPy for NumPy inputs).

        Raises:
            ValueError: for images of the wrong shape, dtype or values.
        """
        return self.run_with_stats(images, mode=mode)[0]

    def run_with_stats(self, images, mode=None):
        """Runs a batch and returns per-layer statistics as well.

        Args:
            images: as for :meth:`run`.
            mode: overrides the emulator's kernel choice for this call.

        Returns:
            ``(outputs, stats)``: float32 ``[N, *output_shape]`` and int64
            ``[N, n_layers, 6]`` ordered as :data:`STAT_NAMES`. For NumPy
            inputs ``stats`` is a :class:`LayerStats` (an ``np.ndarray``
            with named columns: ``stats.events_in``, ``stats.synops``, ...,
            ``stats.summary()``); tensors stay tensors.

        Raises:
            ValueError: for images of the wrong shape, dtype or values.

        Example:

        >>> from keras_nna.export import LayerRecord, Program
        >>> rec = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1),
        ...                   in_bits=8, out_bits=8, pool=(2, 2), strides=(2, 2))
        >>> images = np.array([[[[0], [3]], [[5], [0]]]], np.uint8)
        >>> outputs, stats = Emulator(Program((2, 2, 1), 8, [rec])).run_with_stats(images)
        >>> outputs.tolist(), stats.events_in.tolist(), stats.summary()["synops"]
        ([[5.0]], [[2]], 2.0)
        """
        mode = mode or self.mode
        if tf.executing_eagerly() and self._ready(images):  # fast path: the op takes it as is
            out, stats = nna_run(self._program_arg(), images, mode=mode, limits=self.limits)
            numpy = isinstance(images, np.ndarray)
            return (out.numpy(), LayerStats(stats.numpy())) if numpy else (out, stats)
        as_numpy = not tf.is_tensor(images)
        x = self.to_uint8(images)
        outputs, stats = nna_run(self._program_arg(), x, mode=mode, limits=self.limits)
        outputs.set_shape((x.shape[0],) + self.output_shape)
        stats.set_shape((x.shape[0], self.n_layers, len(STAT_NAMES)))
        if as_numpy and tf.executing_eagerly():
            return outputs.numpy(), LayerStats(stats.numpy())
        return outputs, stats

    def _ready(self, images):
        """True for a NumPy array or eager tensor of uint8 codes the op takes as it is."""
        eager = isinstance(images, tf.Tensor) and hasattr(images, "numpy")
        if self._input_bits != 8 or not (eager or isinstance(images, np.ndarray)):
            return False
        shape = tuple(images.shape)
        return images.dtype == np.uint8 and len(shape) == 4 and shape[1:] == self._input_shape

    def _program_arg(self):
        if tf.executing_eagerly():
            if self._program_tensor is None:
                self._program_tensor = tf.constant(self._bytes)
            return self._program_tensor
        return self._bytes  # a graph constant: the op's shape function sees it

    def to_uint8(self, images):
        """Checks images against the program input and returns a uint8 tensor.

        Args:
            images: array or tensor ``[N, H, W, C]``.

        Returns:
            A uint8 tensor. Symbolic (graph) inputs get run-time checks.

        Raises:
            ValueError: wrong rank/shape, non-numeric dtype, or values that are
                not whole numbers in ``[0, 2**input_bits - 1]``.
        """
        if tf.is_tensor(images) and not hasattr(images, "numpy"):  # symbolic
            return _symbolic_uint8(images, self.input_shape, self.input_bits)
        return tf.convert_to_tensor(check_images(images, self.input_shape, self.input_bits))


def _symbolic_uint8(images, input_shape, input_bits):
    """The graph-mode twin of `check_images`: static shape checks, run-time value checks."""
    top = 2 ** input_bits - 1
    fix = f"Convert with np.clip(np.round(x), 0, {top}).astype(np.uint8)."
    shape, dtype = images.shape, images.dtype
    if shape.rank is not None and (shape.rank != 4
                                   or not shape[1:].is_compatible_with(input_shape)):
        raise shape_error(shape.as_list(), input_shape)
    if dtype == tf.uint8 and top == 255:
        return images
    if not (dtype.is_integer or dtype.is_floating):
        raise ValueError(f"Expected uint8 images. Received dtype {dtype.name}. {fix}")
    x = tf.cast(images, tf.float64 if dtype.is_floating else tf.int64)
    ok = (x >= 0) & (x <= top)
    if dtype.is_floating:
        ok = ok & (tf.round(x) == x)
    with tf.control_dependencies([tf.debugging.Assert(tf.reduce_all(ok), [
            f"Expected whole-number pixel codes in [0, {top}]. {fix}"])]):
        return tf.cast(x, tf.uint8)


@keras.saving.register_keras_serializable(package="keras_nna")
class EmulatorLayer(keras.layers.Layer):
    """A Keras layer that runs an exported program (TensorFlow backend).

    Its config holds the program as a base64 string, so models containing it
    save to ``.keras`` and load with ``keras.saving.load_model``.

    Args:
        program: bytecode ``bytes``, a path, a ``keras_nna.export.Program``, or
            the base64 string found in a config.
        mode: ``"auto"``, ``"event"`` or ``"dense"`` (see :class:`Emulator`).
        return_stats: if True the layer returns ``(outputs, stats)``.
        limits: program limits raised for a trusted program (see :class:`Emulator`).
        **kwargs: standard layer arguments (``name``, ...).

    Example:

    >>> import keras                                   # doctest: +SKIP
    >>> inputs = keras.Input((96, 96, 3), dtype="uint8")  # doctest: +SKIP
    >>> model = keras.Model(inputs, EmulatorLayer("model.nnab")(inputs))  # doctest: +SKIP
    """

    def __init__(self, program, mode="auto", return_stats=False, limits=None, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        if isinstance(program, str) and not os.path.exists(program):
            try:
                program = base64.b64decode(program.encode("ascii"), validate=True)
            except (ValueError, UnicodeEncodeError):  # neither base64 nor a file: say so
                program_bytes(program)
                raise
        self.emulator = Emulator(program, mode=mode, limits=limits)
        self.limits = dict(limits or {})
        self.mode = mode
        self.return_stats = bool(return_stats)

    def call(self, inputs):
        outputs, stats = self.emulator.run_with_stats(inputs)
        return (outputs, stats) if self.return_stats else outputs

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        out = (batch,) + self.emulator.output_shape
        if self.return_stats:
            return out, (batch, self.emulator.n_layers, len(STAT_NAMES))
        return out

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(tuple(inputs.shape))
        if self.return_stats:
            return (keras.KerasTensor(shape[0], dtype="float32"),
                    keras.KerasTensor(shape[1], dtype="int64"))
        return keras.KerasTensor(shape, dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(program=base64.b64encode(self.emulator.program).decode("ascii"),
                      mode=self.mode, return_stats=self.return_stats, limits=self.limits)
        return config


def run_program(program, images, executor="auto", mode="auto", limits=None):
    """Runs a program on the emulator op, or on the numpy reference.

    The one "emulator, else reference" rule of the package: the two give
    identical outputs and statistics (the reference is slower), so code that
    only needs results runs anywhere.

    Args:
        program: Bytecode ``bytes``, a path to a bytecode file, or a
            ``keras_nna.export.Program``.
        images: uint8 ``[N, H, W, C]`` (one ``[H, W, C]`` image is accepted);
            whole-number integer/float values in range are converted.
        executor: ``"emulator"`` (the compiled op), ``"reference"`` (numpy
            ``keras_nna.export.run_reference``) or ``"auto"`` (the op, or the
            reference when the op cannot be loaded). Defaults to ``"auto"``.
        mode: Kernel choice of the op (see :class:`Emulator`). Defaults to
            ``"auto"``.
        limits: Program limits raised for a trusted program (see :class:`Emulator`).

    Returns:
        ``(outputs, stats, executor_name)``: float32 outputs, a
        :class:`LayerStats` ``[N, n_layers, 6]`` and ``"emulator"`` or
        ``"reference"``.

    Raises:
        ValueError: For an unknown executor or images that do not match.
        RuntimeError: With ``executor="emulator"`` when the op cannot be loaded.

    Example:

    >>> from keras_nna.export import LayerRecord, Program
    >>> rec = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1),
    ...                   in_bits=8, out_bits=8, pool=(2, 2), strides=(2, 2))
    >>> outputs, stats, used = run_program(Program((2, 2, 1), 8, [rec]),
    ...                                    np.array([[[0], [3]], [[5], [0]]]), "reference")
    >>> outputs.tolist(), stats.events_in.tolist(), used
    ([[5.0]], [[2]], 'reference')
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}. "
                         f"Received: executor={executor!r}.")
    if not tf.is_tensor(images):
        images = np.asarray(images)
        images = images[None] if images.ndim == 3 else images
    if executor != "reference":
        try:
            load_op_library()
        except Exception as err:  # op not built / no compiler / other TF: the reference is exact
            if executor == "emulator":
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise RuntimeError(f"The emulator op is unavailable ({first}). Build it with "
                                   "`pip install --no-build-isolation .` or pass "
                                   "executor='reference'.") from err
        else:
            outputs, stats = Emulator(program, mode=mode, limits=limits).run_with_stats(images)
            return outputs, stats, "emulator"
    from keras_nna.export.reference import run_reference

    outputs, stats = run_reference(program, images, limits=limits)
    return outputs, stats, "reference"
