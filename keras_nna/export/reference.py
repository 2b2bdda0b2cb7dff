"""Pure-numpy reference interpreter of the bytecode.

`run_reference` executes a `Program` on a uint8 batch with plain int64 numpy
arithmetic, layer by layer, exactly as `docs/bytecode.md` specifies, and
counts the statistics the emulator reports. Each layer reads the tensor its
`src` names (the image or an earlier layer's output; ADD also `src2`), so
residual DAGs, signed codes and ADD run as well as chains. It is slow and simple on
purpose: the tests hold the C++ op and the quantized Keras model to it.

Example:

>>> import numpy as np
>>> from keras_nna.export.program import LayerRecord, Program
>>> rec = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1), in_bits=8,
...                   out_bits=8, pool=(2, 2), strides=(2, 2))
>>> out, stats = run_reference(Program((2, 2, 1), 8, [rec]), np.array([[[[0], [3]], [[5], [0]]]]))
>>> out.tolist(), stats.events_in.tolist(), stats[0, 0].tolist()
([[5.0]], [[2]], [2, 2, 0, 0, 4, 1])
"""

import numpy as np

from keras_nna.export.bytecode import load_program
from keras_nna.export.codes import encode_kernel as _encode_kernel
from keras_nna.export.format import POOL_RQ, RQ_ENTRY, STAT_NAMES, WEIGHTED
from keras_nna.export.images import check_images as _check_images
from keras_nna.export.program import LayerStats, sources

__all__ = ["run_reference", "STAT_NAMES", "check_images"]


def check_images(program, images):
    """Validates a batch against the program's input; returns it as uint8.

    One image `(H, W, C)` gets a batch axis. The rule is
    `keras_nna.export.images.check_images`.

    Args:
        program: The `Program` (its `input_shape` and `input_bits`).
        images: Array-like `(N, H, W, C)` or `(H, W, C)`.

    Returns:
        A uint8 array `(N, H, W, C)`.

    Raises:
        ValueError: On a wrong rank/shape, or values that are not integers
            in [0, 2**input_bits - 1].
    """
    return _check_images(images, program.input_shape, program.input_bits, allow_single=True)


def _windows(x, kh, kw, strides, pads, out_hw):
    """Yields (ky, kx, view) with view[n, oy, ox, c] = padded x at the tap."""
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    oh, ow = out_hw
    sh, sw = strides
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, xp[:, ky: ky + sh * (oh - 1) + 1: sh, kx: kx + sw * (ow - 1) + 1: sw, :]


def _code_range(rec):
    """`(lo, hi)` of the output codes: unsigned `0 .. 2^b-1` or signed `-2^(b-1) .. 2^(b-1)-1`."""
    b = rec.out_bits
    return (-(1 << (b - 1)), (1 << (b - 1)) - 1) if rec.out_signed else (0, (1 << b) - 1)


def _requant(rec, z):
    if rec.out_bits == 0:
        return None, np.ldexp(z.astype(np.float64), -rec.sh).astype(np.float32)
    half = np.left_shift(np.int64(1), rec.sh - 1)
    q = np.clip(np.right_shift(z + half, rec.sh), *_code_range(rec))
    return q, np.ldexp(q.astype(np.float64), -rec.out_exp).astype(np.float32)


def _add(rec, a, b, fa, fb):
    """ADD (kind 8): exact aligned sum, rounding shift by `F - out_exp`, clip."""
    big = max(fa, fb)
    total = (a << (big - fa)) + (b << (big - fb))
    d = big - rec.out_exp
    v = (total + (1 << (d - 1))) >> d if d > 0 else total << -d
    return np.clip(v, *_code_range(rec))


def _layer_bytes(rec):
    if rec.const_bytes is not None:
        return rec.const_bytes
    total = 0
    for w, bits in ((rec.weights, rec.w_bits), (rec.weights2, rec.w2_bits)):
        if w is not None:
            total += len(_encode_kernel(w, bits)[1])
    if rec.kind in WEIGHTED:
        total += RQ_ENTRY.size * rec.out_shape[2]
    elif rec.kind == "avgpool":
        total += POOL_RQ.size
    return total


def _run_layer(rec, x):
    """Returns (codes or None, float output, synops per image)."""
    n = x.shape[0]
    oh, ow, oc = rec.out_shape
    nz = (x != 0).astype(np.int64)
    synops = np.zeros(n, np.int64)
    kind = rec.kind
    if kind == "flatten":
        codes = x.reshape(n, 1, 1, -1)
        return codes, None, synops
    if kind == "dense":
        xf = x.reshape(n, -1)
        acc = xf @ rec.weights
        synops += nz.reshape(n, -1) @ (rec.weights != 0).sum(axis=1)
        return _finish(rec, acc.reshape(n, 1, 1, oc), synops)
    if kind in ("maxpool", "avgpool"):
        ph, pw = rec.pool
        taps = list(_windows(x, ph, pw, rec.strides, rec.pads, (oh, ow)))
        for _, _, view in taps:
            synops += (view != 0).sum(axis=(1, 2, 3))
        if kind == "maxpool":
            codes = np.max(np.stack([v for _, _, v in taps]), axis=0)
            return codes, None, synops
        total = np.sum(np.stack([v for _, _, v in taps]), axis=0)
        s = int(rec.sh[0])
        codes = np.clip((total * int(rec.m[0]) + (1 << (s - 1))) >> s, 0, (1 << rec.out_bits) - 1)
        return codes, None, synops
    kh, kw = rec.kernel_size
    w = rec.weights
    if kind == "conv":
        acc = np.zeros((n, oh, ow, oc), np.int64)
        wnz = (w != 0).sum(axis=3)
        for ky, kx, view in _windows(x, kh, kw, rec.strides, rec.pads, (oh, ow)):
            acc += view @ w[ky, kx]
            synops += ((view != 0) @ wnz[ky, kx]).sum(axis=(1, 2))
        return _finish(rec, acc, synops)
    c = rec.in_shape[2]
    dacc = np.zeros((n, oh, ow, c), np.int64)
    for ky, kx, view in _windows(x, kh, kw, rec.strides, rec.pads, (oh, ow)):
        dacc += view * w[ky, kx]
        synops += ((view != 0) * (w[ky, kx] != 0)).sum(axis=(1, 2, 3))
    if kind == "depthwise":
        return _finish(rec, dacc, synops)
    acc = dacc @ rec.weights2
    synops += ((dacc != 0) @ (rec.weights2 != 0).sum(axis=1)).sum(axis=(1, 2))
    return _finish(rec, acc, synops)


def _finish(rec, acc, synops):
    codes, values = _requant(rec, acc * rec.m + rec.n)
    return codes, values, synops


def run_reference(program, images, limits=None):
    """Runs a program on a batch with numpy.

    Args:
        program: A `Program`, bytecode (`bytes`, validated first) or a path
            to a bytecode file.
        images: uint8 array `(N, H, W, C)` (or one image `(H, W, C)`).
        limits: Program limits raised for trusted bytecode (see `read_program`).

    Returns:
        `(outputs, stats)`: float32 outputs `(N, *program.output_shape)` and
        `LayerStats`, int64 statistics `(N, n_layers, 6)` ordered as
        `STAT_NAMES` (`stats.events_in`, `stats.synops`, ...).

    Raises:
        ValueError: If the images do not match the program's input.
        keras_nna.export.BytecodeError: If `program` is invalid bytecode.
        FileNotFoundError: If a program path does not exist.
    """
    program = load_program(program, limits)
    image = check_images(program, images).astype(np.int64)
    n = image.shape[0]
    tensors, exps = [image], [0]  # tensors[j]: the image (j = 0) or layer j-1's codes
    stats = np.zeros((n, len(program.layers), len(STAT_NAMES)), np.int64)
    values = None
    for i, (rec, (src, src2)) in enumerate(zip(program.layers, sources(program.layers))):
        x = tensors[src]
        events = (x != 0).sum(axis=(1, 2, 3))
        dense_bytes = -(-x[0].size * rec.in_bits // 8)
        sparse_bits = events * (rec.in_bits + 16)
        if rec.kind == "add":
            x2, bits2 = tensors[src2], _bits(program, src2)
            codes, values = _add(rec, x, tensors[src2], exps[src], exps[src2]), None
            events2 = (x2 != 0).sum(axis=(1, 2, 3))
            events, synops = events + events2, events + events2
            dense_bytes += -(-x2[0].size * bits2 // 8)
            sparse_bits = sparse_bits + events2 * (bits2 + 16)
        else:
            codes, values, synops = _run_layer(rec, x)
        out = codes if codes is not None else values
        stats[:, i] = np.stack(
            [
                events,
                synops,
                np.full(n, rec.dense_macs),
                np.full(n, _layer_bytes(rec)),
                np.minimum(dense_bytes, -(-sparse_bits // 8)),
                (out.reshape(n, -1) != 0).sum(axis=1),
            ],
            axis=1,
        )
        tensors.append(codes)
        exps.append(rec.out_exp)
    last = program.layers[-1]
    if values is None:
        values = np.ldexp(tensors[-1].astype(np.float64), -last.out_exp).astype(np.float32)
    return values.reshape((n, *program.output_shape)), LayerStats(stats)


def _bits(program, src):
    """Code bits of tensor `src` (0: the image)."""
    return program.input_bits if src == 0 else program.layers[src - 1].out_bits
