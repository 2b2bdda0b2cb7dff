"""The integer IR: a `Program` is a list of `LayerRecord`s forming a DAG.

Each record reads its input from `src` (0 = the input image, j >= 1 = the
output of record j-1; `None` means the previous record, so hand-built chains
need no `src`) and, for `"add"`, a second input from `src2`.

This is the seam between the exporter (which lowers a quantized Keras model
to records), the bytecode (which serialises records, `docs/bytecode.md`) and
the two executors (the numpy reference and the C++ emulator op). A record
holds integer kernel codes, the per-channel requantization ``(m, n, sh)`` and
the shapes — nothing Keras-specific.

Example:

>>> rec = LayerRecord(kind="maxpool", in_shape=(4, 4, 2), out_shape=(2, 2, 2),
...                   in_bits=4, out_bits=4, out_exp=2, pool=(2, 2), strides=(2, 2))
>>> prog = Program(input_shape=(4, 4, 2), input_bits=4, layers=[rec])
>>> prog.output_shape
(2, 2, 2)

`LayerStats` labels what the executors count: an int64 array
`[N, n_layers, 6]` whose last axis is named by `STAT_NAMES`.
"""

import dataclasses

import numpy as np

from keras_nna.export.format import KINDS, STAT_NAMES, WEIGHTED

__all__ = ["LayerRecord", "LayerStats", "Program", "KINDS", "conv_output_size", "same_padding",
           "sources"]


def conv_output_size(size, kernel, stride, pad_before, pad_after):
    """Output length of a strided window over a padded axis."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def same_padding(size, kernel, stride):
    """Keras/TF 'same' padding: returns `(out, pad_before, pad_after)`."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return out, total // 2, total - total // 2


@dataclasses.dataclass
class LayerRecord:
    """One instruction of the integer program.

    Attributes:
        kind: One of `KINDS`.
        in_shape: `(h, w, c)` of the input codes.
        out_shape: `(h, w, c)` of the output.
        in_bits: Bits of the input codes.
        out_bits: Bits of the output codes; 0 for a raw output (last layer).
        out_exp: Output step is ``2**-out_exp`` (0 for raw outputs).
        kernel_size: `(kh, kw)` for conv kinds, `(1, 1)` otherwise.
        strides: `(sh, sw)`.
        pads: `(top, left, bottom, right)`.
        pool: `(ph, pw)` window of pools, `(0, 0)` otherwise.
        w_bits / w2_bits: Kernel bit widths (0 when absent).
        weights / weights2: int64 arrays of codes in the layouts of
            `docs/bytecode.md` (or `None`).
        m, n, sh: int64 arrays, per output channel (kinds 1–4) or of length 1
            (avgpool: `m`, `sh`).
        acc_wide: Whether the accumulator needs 64 bits.
        name: Keras layer name (not serialised).
        const_bytes: Bytes of this layer's constants in the pool (set by the
            reader; computed from the encoding when `None`).
        src: Producer of the input: 0 = the program input image, `j >= 1` =
            the output of record `j - 1`; `None` = the previous record (a
            chain). Defaults to `None`.
        src2: Producer of `"add"`'s second input (same encoding); 0 for every
            other kind. Defaults to `0`.
        out_signed: Whether the output codes are signed
            (`-2^(b-1) .. 2^(b-1) - 1`). Defaults to `False`.
        in_signed: Whether the input codes are signed (its producer's
            `out_signed`; not serialised: the reader and the exporter set it,
            the worst-case bounds use it). Defaults to `False`.
    """

    kind: str
    in_shape: tuple
    out_shape: tuple
    in_bits: int
    out_bits: int
    out_exp: int = 0
    kernel_size: tuple = (1, 1)
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)
    pool: tuple = (0, 0)
    w_bits: int = 0
    w2_bits: int = 0
    weights: np.ndarray = None
    weights2: np.ndarray = None
    m: np.ndarray = None
    n: np.ndarray = None
    sh: np.ndarray = None
    acc_wide: bool = False
    name: str = ""
    const_bytes: int = None
    src: int = None
    src2: int = 0
    out_signed: bool = False
    in_signed: bool = False

    @property
    def dense_macs(self):
        """Dense-equivalent multiply-accumulates of one inference."""
        oh, ow, oc = self.out_shape
        ic = self.in_shape[2]
        kh, kw = self.kernel_size
        if self.kind == "conv":
            return oh * ow * oc * kh * kw * ic
        if self.kind == "depthwise":
            return oh * ow * oc * kh * kw
        if self.kind == "separable":
            return oh * ow * ic * kh * kw + oh * ow * ic * oc
        if self.kind == "dense":
            return int(np.prod(self.in_shape)) * oc
        if self.kind == "add":
            return 2 * oh * ow * oc
        return 0

    @property
    def n_weights(self):
        """Number of weights (both kernels)."""
        total = 0
        for w in (self.weights, self.weights2):
            if w is not None:
                total += w.size
        return total


def sources(layers):
    """The producers `(src, src2)` of each record, `src = None` resolved to its own index.

    Args:
        layers: `LayerRecord`s in execution order.

    Returns:
        A list of `(src, src2)` int pairs (`src2` is 0 except for `"add"`).

    Example:

    >>> a = LayerRecord("conv", (1, 1, 1), (1, 1, 1), 8, 4)
    >>> b = LayerRecord("add", (1, 1, 1), (1, 1, 1), 4, 4, src2=0)
    >>> sources([a, b])
    [(0, 0), (1, 0)]
    """
    return [(i if rec.src is None else int(rec.src), int(rec.src2 or 0))
            for i, rec in enumerate(layers)]


@dataclasses.dataclass
class Program:
    """A DAG of integer layers with its input description.

    Attributes:
        input_shape: `(h, w, c)` of the uint8 input.
        input_bits: Bits of the input codes (8 for images).
        layers: The `LayerRecord`s, in execution order.
        input_scale: Real value of one input code (informative).
    """

    input_shape: tuple
    input_bits: int
    layers: list
    input_scale: float = 1.0

    @property
    def output_shape(self):
        """Shape of one output (without the batch axis)."""
        h, w, c = self.layers[-1].out_shape
        return (c,) if h == 1 and w == 1 else (h, w, c)

    def to_bytes(self):
        """Serialises the program (see `keras_nna.export.write_program`)."""
        from keras_nna.export.bytecode import write_program  # lazy: the writer imports this module

        return write_program(self)

    def save(self, path):
        """Writes the bytecode to `path` and returns the number of bytes."""
        data = self.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)


def _stat(index, doc):
    def get(self):
        return np.asarray(self)[..., index]

    return property(get, doc=doc)


class LayerStats(np.ndarray):
    """Per-image, per-layer statistics with named columns.

    An int64 `numpy.ndarray` of shape `[N, n_layers, 6]` (`Emulator.run_with_stats`,
    `run_reference`), so code that indexes `stats[:, :, 0]` keeps working; the
    properties name the columns (`docs/bytecode.md`, "Statistics"). Each column
    property is a plain array `[N, n_layers]`. Arithmetic, reductions and slices
    that cut the last axis give plain arrays; slicing images or layers keeps the
    labels.

    Attributes:
        events_in: Non-zero input codes of each layer.
        synops: Multiply-accumulates an event-based engine performs.
        dense_macs: Dense-equivalent multiply-accumulates.
        weight_bytes: Bytes of the layer's constants.
        act_bytes_in: Bytes to move the layer's input (min of dense, sparse).
        events_out: Non-zero output codes.
        names: The column names, `STAT_NAMES`.

    Example:

    >>> stats = LayerStats([[[3, 6, 8, 10, 3, 2], [2, 2, 4, 5, 1, 1]],
    ...                     [[1, 2, 8, 10, 1, 0], [0, 0, 4, 5, 1, 0]]])
    >>> stats.events_in.tolist(), stats[:, :, 0].tolist()
    ([[3, 2], [1, 0]], [[3, 2], [1, 0]])
    >>> stats.per_image()["synops"].tolist()
    [8, 2]
    >>> stats.per_layer()["events_in"].tolist()
    [2.0, 1.0]
    >>> stats.summary()["events_in"]
    3.0
    """

    names = STAT_NAMES

    def __new__(cls, counts):
        """Wraps `counts` (`[..., 6]`, e.g. `[N, n_layers, 6]`) as int64 `LayerStats`."""
        array = np.asarray(counts, np.int64)
        if array.ndim < 1 or array.shape[-1] != len(STAT_NAMES):
            raise ValueError(f"Expected statistics with a last axis of {len(STAT_NAMES)} "
                             f"({', '.join(STAT_NAMES)}). Received shape {array.shape}.")
        return array.view(cls)

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        if return_scalar:
            return obj[()]
        return np.asarray(obj).view(np.ndarray)

    def __getitem__(self, key):
        out = super().__getitem__(key)
        keys = key if isinstance(key, tuple) else (key,)
        keeps_last = len(keys) < self.ndim and all(
            k is not Ellipsis and k is not None for k in keys)
        if isinstance(out, LayerStats) and not (keeps_last and out.ndim >= 2):
            return out.view(np.ndarray)
        return out

    events_in = _stat(0, "`[N, n_layers]` non-zero input codes.")
    synops = _stat(1, "`[N, n_layers]` synaptic operations.")
    dense_macs = _stat(2, "`[N, n_layers]` dense-equivalent MACs.")
    weight_bytes = _stat(3, "`[N, n_layers]` constant bytes.")
    act_bytes_in = _stat(4, "`[N, n_layers]` bytes moved for the input.")
    events_out = _stat(5, "`[N, n_layers]` non-zero output codes.")

    def per_image(self):
        """Totals over the layers, per image.

        Returns:
            `{name: int64 array [N]}` for each of `STAT_NAMES`.
        """
        totals = np.asarray(self).sum(axis=-2)
        return {name: totals[..., i] for i, name in enumerate(STAT_NAMES)}

    def per_layer(self):
        """Means over the images, per layer.

        Returns:
            `{name: float64 array [n_layers]}` for each of `STAT_NAMES`.
        """
        means = np.asarray(self, np.float64).reshape(-1, *self.shape[-2:]).mean(axis=0)
        return {name: means[:, i] for i, name in enumerate(STAT_NAMES)}

    def summary(self):
        """Means over the images of the per-image totals: `{name: float}`.

        `summary()["events_in"]` is the mean number of events one image
        sends through the network (its input pixels included).

        Returns:
            `{name: float}` for each of `STAT_NAMES`.
        """
        return {name: float(np.mean(v)) for name, v in self.per_image().items()}
