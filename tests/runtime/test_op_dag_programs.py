"""Hand-built version-2 programs (DAGs, signed codes, ADD) with their expected results.

`Dag` writes the bytes itself (the 57-byte version-1 instruction prefix, then
out_signed, src, src2 and two reserved bytes; docs/bytecode.md) and computes,
layer by layer with plain int64 numpy, the outputs and statistics the op must
return, independently of `keras_nna.export`. Requantization parameters are
calibrated on the batch so the codes spread over their range (some clip).
Used by tests/runtime/test_op_dag*.py (this module holds no tests; its name
follows the test_op_* file pattern of the runtime tests).
"""

import math
import struct
import zlib

import numpy as np

__all__ = ["BASE", "Dag", "FLOW", "HEADER", "patch"]

HEADER = struct.Struct("<4sHHIHHHBBfII")
BASE = struct.Struct("<BBBbHHHHHHBBBBBBBBBBBBIIIIIIHHB")  # bytes 0..56 (versions 1 and 2)
FLOW = struct.Struct("<BHH2s")                              # bytes 57..63: out_signed, src, src2
KIND = {"conv": 1, "depthwise": 2, "separable": 3, "dense": 4, "maxpool": 5, "avgpool": 6,
        "flatten": 7, "add": 8}
assert BASE.size == 57 and FLOW.size == 7 and HEADER.size == 32


def pack(values, bits):
    """`bits`-bit two's complement fields, LSB first (docs/bytecode.md, kernels)."""
    v = np.asarray(values, np.int64).ravel() & ((1 << bits) - 1)
    bitstream = ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return np.packbits(bitstream, bitorder="little").tobytes()


def encode(w, bits, enc):
    w = np.asarray(w).ravel()
    if enc == 0:
        return pack(w, bits)
    return np.packbits(w != 0, bitorder="little").tobytes() + pack(w[w != 0], bits)


def patch(data, layer, offset, value, fmt="<B"):
    """Sets bytes at `offset` of instruction `layer` and recomputes the CRC."""
    b = bytearray(data[:-4])
    struct.pack_into(fmt, b, HEADER.size + 64 * layer + offset, value)
    return bytes(b) + struct.pack("<I", zlib.crc32(bytes(b)))


def _windows(x, kh, kw, stride, pad, out_hw):
    xp = np.pad(x, ((0, 0), (pad[0], pad[2]), (pad[1], pad[3]), (0, 0)))
    (oh, ow), (sy, sx) = out_hw, stride
    for ky in range(kh):
        for kx in range(kw):
            yield ky, kx, xp[:, ky: ky + sy * (oh - 1) + 1: sy, kx: kx + sx * (ow - 1) + 1: sx, :]


def _nz(x):
    return (x.reshape(x.shape[0], -1) != 0).sum(1)


class Dag:
    """A program under construction; producer 0 is the image, j >= 1 layer j-1's output.

    Args:
        images: uint8 `(N, H, W, C)`.
        in_bits: header in_bits. Defaults to `8`.
        version: header version (1 writes zero flow bytes: a chain). Defaults to `2`.
        seed: requantization calibration seed. Defaults to `0`.
    """

    def __init__(self, images, in_bits=8, version=2, seed=0):
        self.images, self.in_bits, self.version = images, in_bits, version
        self.rng = np.random.default_rng(seed)
        self.vals = [dict(x=images.astype(np.int64), bits=in_bits, exp=0, signed=False)]
        self.instrs, self.pool, self.stats, self.values = [], b"", [], None

    def _region(self, blob):
        if blob is None:
            return [0, 0]
        off = len(self.pool)
        self.pool += blob
        return [off, len(blob)]

    def _emit(self, kind, src, src2, q, bits, exp, signed, stats, kh=1, kw=1, stride=(1, 1),
              pad=(0, 0, 0, 0), wb=(0, 0, 0, 0), blobs=(None, None, None), pool=(0, 0), acc_wide=0):
        v = self.vals[src]
        offs = sum((self._region(b) for b in blobs), [])
        out_shape = q.shape[1:] if q is not None else self.raw_shape
        self.instrs.append(BASE.pack(KIND[kind], v["bits"], bits, exp, *v["x"].shape[1:], *out_shape,
                                     kh, kw, *stride, *pad, *wb, *offs, *pool, acc_wide)
                           + (FLOW.pack(int(signed), src, src2, b"\0\0") if self.version == 2
                              else bytes(7)))
        self.stats.append(np.stack(stats, 1))
        self.vals.append(dict(x=q, bits=bits, exp=exp, signed=signed))
        return len(self.vals) - 1

    def _act_bytes(self, src, ev):
        v = self.vals[src]
        el = int(np.prod(v["x"].shape[1:]))
        return np.minimum(-(-el * v["bits"] // 8), -(-ev * (v["bits"] + 16) // 8))

    def _calibrate(self, acc, bits, signed, clip):
        o = acc.shape[-1]
        a = np.abs(acc.reshape(-1, o)).max(0) + 1
        m = self.rng.integers(1 << 14, 1 << 15, o)
        target = (1 << (bits - 1)) if signed else (1 << bits) if bits else 64
        sh = np.clip(np.ceil(np.log2(a * m / target)).astype(np.int64) + 1 - 2 * clip, 1, 40)
        lo, hi = (-0.25, 0.25) if signed else (-0.4, 0.3)
        n = (self.rng.uniform(lo, hi, o) * (a * m)).astype(np.int64)
        return m, n, sh

    def weighted(self, kind, src, w, w_bits, out_bits=4, out_exp=2, signed=False, w2=None,
                 w2_bits=None, stride=(1, 1), pad=(0, 0, 0, 0), acc_wide=0, enc=0, clip=False):
        """CONV / DEPTHWISE / SEPARABLE / DENSE reading producer `src`; returns its index.

        `out_bits=0` makes a raw (float) last layer.
        """
        x = self.vals[src]["x"]
        n = x.shape[0]
        w = np.asarray(w, np.int64)
        syn = np.zeros(n, np.int64)
        if kind == "dense":
            xf = x.reshape(n, -1)
            acc = (xf @ w).reshape(n, 1, 1, -1)
            syn += (xf != 0) @ (w != 0).sum(1)
            macs, kh, kw = w.size, 1, 1
        else:
            kh, kw = w.shape[:2]
            oh = (x.shape[1] + pad[0] + pad[2] - kh) // stride[0] + 1
            ow = (x.shape[2] + pad[1] + pad[3] - kw) // stride[1] + 1
            c = x.shape[3]
            if kind == "conv":
                acc = np.zeros((n, oh, ow, w.shape[3]), np.int64)
                for ky, kx, view in _windows(x, kh, kw, stride, pad, (oh, ow)):
                    acc += view @ w[ky, kx]
                    syn += ((view != 0) @ (w[ky, kx] != 0).sum(1)).sum((1, 2))
                macs = oh * ow * w.size
            else:
                acc = np.zeros((n, oh, ow, c), np.int64)
                for ky, kx, view in _windows(x, kh, kw, stride, pad, (oh, ow)):
                    acc += view * w[ky, kx]
                    syn += ((view != 0) * (w[ky, kx] != 0)).sum((1, 2, 3))
                macs = oh * ow * c * kh * kw
                if kind == "separable":
                    w2 = np.asarray(w2, np.int64)
                    syn += ((acc != 0) @ (w2 != 0).sum(1)).sum((1, 2))
                    acc = acc @ w2
                    macs += oh * ow * w2.size
        m, nn, sh = self._calibrate(acc, out_bits, signed, clip)
        z = acc * m + nn
        rq = b"".join(struct.pack("<iqB", int(a), int(b), int(s)) for a, b, s in zip(m, nn, sh))
        blobs = (encode(w, w_bits, enc), encode(w2, w2_bits, enc) if kind == "separable" else None, rq)
        if out_bits == 0:
            q, self.values, self.raw_shape = None, np.ldexp(z.astype(np.float64), -sh).astype(np.float32), z.shape[1:]
            ev_out = _nz(z)
        else:
            lo, hi = (-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1) if signed else (0, (1 << out_bits) - 1)
            q = np.clip((z + (np.int64(1) << (sh - 1))) >> sh, lo, hi)
            ev_out = _nz(q)
        ev = _nz(x)
        wbytes = sum(len(b) for b in blobs if b is not None)
        stats = [ev, syn, np.full(n, macs), np.full(n, wbytes), self._act_bytes(src, ev), ev_out]
        wb = (w_bits, w2_bits or 0, enc, enc if kind == "separable" else 0)
        return self._emit(kind, src, 0, q, out_bits, 0 if out_bits == 0 else out_exp, signed, stats,
                          kh, kw, stride, pad, wb, blobs, acc_wide=acc_wide)

    def add(self, a, b, out_bits=4, out_exp=2, relu=True):
        """ADD of producers `a` and `b` (docs/bytecode.md, kind 8); returns its index."""
        va, vb = self.vals[a], self.vals[b]
        f = max(va["exp"], vb["exp"])
        s = va["x"] * (1 << (f - va["exp"])) + vb["x"] * (1 << (f - vb["exp"]))
        d = f - out_exp
        v = (s + (1 << (d - 1))) >> d if d > 0 else s * (1 << -d)
        lo, hi = (0, (1 << out_bits) - 1) if relu else (-(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1)
        q = np.clip(v, lo, hi)
        ea, eb = _nz(va["x"]), _nz(vb["x"])
        el = int(np.prod(q.shape[1:]))
        dense = -(-el * va["bits"] // 8) + -(-el * vb["bits"] // 8)
        sparse = -(-(ea * (va["bits"] + 16) + eb * (vb["bits"] + 16)) // 8)
        n = q.shape[0]
        stats = [ea + eb, ea + eb, np.full(n, 2 * el), np.zeros(n, np.int64), np.minimum(dense, sparse), _nz(q)]
        return self._emit("add", a, b, q, out_bits, out_exp, not relu, stats)

    def flatten(self, src):
        v = self.vals[src]
        q = v["x"].reshape(v["x"].shape[0], 1, 1, -1)
        ev = _nz(q)
        z = np.zeros_like(ev)
        return self._emit("flatten", src, 0, q, v["bits"], v["exp"], v["signed"],
                          [ev, z, z, z, self._act_bytes(src, ev), ev])

    def maxpool(self, src, size, stride):
        v = self.vals[src]
        x = v["x"]
        oh, ow = (x.shape[1] - size) // stride + 1, (x.shape[2] - size) // stride + 1
        views = [view for _, _, view in _windows(x, size, size, (stride, stride), (0,) * 4, (oh, ow))]
        q = np.max(np.stack(views), 0)
        syn = sum((view != 0).sum((1, 2, 3)) for view in views)
        ev = _nz(x)
        z = np.zeros_like(ev)
        return self._emit("maxpool", src, 0, q, v["bits"], v["exp"], False,
                          [ev, syn, z, z, self._act_bytes(src, ev), _nz(q)], stride=(stride, stride),
                          pool=(size, size))

    def program(self):
        """Returns `(bytes, expected outputs, expected stats)`."""
        h, w, c = self.images.shape[1:]
        body = HEADER.pack(b"NNAB", self.version, len(self.instrs), len(self.pool), h, w, c, self.in_bits,
                           0, 1 / 255, 0, 0) + b"".join(self.instrs) + self.pool
        last = self.vals[-1]
        n = self.images.shape[0]
        if last["x"] is None:
            out = self.values
        else:
            out = np.ldexp(last["x"].astype(np.float64), -last["exp"]).astype(np.float32)
        if out.shape[1:3] == (1, 1):
            out = out.reshape(n, -1)
        return body + struct.pack("<I", zlib.crc32(body)), out, np.stack(self.stats, 1)


def held_bytes(dag):
    """HELD: elements of every output read by a layer later than the next one."""
    last_use = {}
    for k, ins in enumerate(dag.instrs):
        _, src, src2, _ = FLOW.unpack(ins[57:])
        for s in ((src, src2) if ins[0] == KIND["add"] else (src,)):
            if s:
                last_use[s - 1] = max(last_use.get(s - 1, -1), k)
    return sum(int(math.prod(dag.vals[j + 1]["x"].shape[1:])) for j, k in last_use.items() if k > j + 1)
