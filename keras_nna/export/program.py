"""The integer IR: a `Program` is a chain of `LayerRecord`s.

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
"""

import dataclasses

import numpy as np

__all__ = ["LayerRecord", "Program", "KINDS", "conv_output_size", "same_padding"]

KINDS = {
    "conv": 1,
    "depthwise": 2,
    "separable": 3,
    "dense": 4,
    "maxpool": 5,
    "avgpool": 6,
    "flatten": 7,
}
WEIGHTED = ("conv", "depthwise", "separable", "dense")


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
        return 0

    @property
    def n_weights(self):
        """Number of weights (both kernels)."""
        total = 0
        for w in (self.weights, self.weights2):
            if w is not None:
                total += w.size
        return total


@dataclasses.dataclass
class Program:
    """A chain of integer layers with its input description.

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
        from keras_nna.export.bytecode import write_program

        return write_program(self)

    def save(self, path):
        """Writes the bytecode to `path` and returns the number of bytes."""
        data = self.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)
