"""Test helpers for the emulator op: a tiny bytecode writer, an independent
numpy interpreter of docs/bytecode.md and a random program generator.

They are exposed as the ``nna`` fixture (a namespace) so tests stay
independent of ``keras_nna.export`` while it is being written.
"""

import struct
import types
import zlib

import numpy as np
import pytest

KINDS = {"conv": 1, "depthwise": 2, "separable": 3, "dense": 4, "maxpool": 5, "avgpool": 6, "flatten": 7}
HEADER = struct.Struct("<4sHHI3HBBfII")
INSTR = struct.Struct("<3Bb6H8B4B6I2HB7x")
assert HEADER.size == 32 and INSTR.size == 64


def pack_values(values, bits):
    """b-bit two's complement fields, LSB first."""
    v = np.asarray(values, np.int64).ravel() & ((1 << bits) - 1)
    b = ((v[:, None] >> np.arange(bits)) & 1).astype(np.uint8).ravel()
    return np.packbits(b, bitorder="little").tobytes()


def encode_kernel(w, bits, enc):
    w = np.asarray(w).ravel()
    if enc == 0:
        return pack_values(w, bits)
    return np.packbits(w != 0, bitorder="little").tobytes() + pack_values(w[w != 0], bits)


def out_hw(h, w, k, s, pad):
    return (h + pad[0] + pad[2] - k[0]) // s[0] + 1, (w + pad[1] + pad[3] - k[1]) // s[1] + 1


def shapes(in_shape, layers):
    """Fills each layer's "in"/"out" shapes (h, w, c)."""
    cur = tuple(in_shape)
    for L in layers:
        L["in"] = cur
        h, w, c = cur
        kind = L["kind"]
        if kind in ("conv", "depthwise", "separable", "maxpool", "avgpool"):
            win = L["pool"] if kind.endswith("pool") else L["w"].shape[:2]
            oh, ow = out_hw(h, w, win, L.get("stride", (1, 1)), L.get("pad", (0, 0, 0, 0)))
            oc = L["w"].shape[3] if kind == "conv" else L["w2"].shape[1] if kind == "separable" else c
            cur = (oh, ow, oc)
        elif kind == "dense":
            cur = (1, 1, L["w"].shape[1])
        else:
            cur = (1, 1, h * w * c)
        L["out"] = cur
    return layers


def write(in_shape, layers, in_bits=8, input_scale=1 / 255):
    """Serialises layer dicts (numpy weights in Keras layouts) to bytecode."""
    shapes(in_shape, layers)
    pool, instrs = b"", []
    prev_bits, prev_exp = in_bits, 0
    for L in layers:
        kind = L["kind"]
        regions = []
        if kind in ("conv", "depthwise", "separable", "dense"):
            regions.append(L.get("w_blob") or encode_kernel(L["w"], L["w_bits"], L.get("w_enc", 0)))
            regions.append(encode_kernel(L["w2"], L["w2_bits"], L.get("w2_enc", 0)) if kind == "separable" else None)
            rq = b"".join(struct.pack("<iqB", int(m), int(n), int(s)) for m, n, s in zip(L["m"], L["n"], L["sh"]))
            regions.append(rq)
            out_bits, out_exp = L["out_bits"], L.get("out_exp", 0)
        else:
            regions += [None, None, struct.pack("<IB", L["avg_m"], L["avg_sh"]) if kind == "avgpool" else None]
            out_bits, out_exp = prev_bits, prev_exp
        offs = []
        for r in regions:
            offs += [0, 0] if r is None else [len(pool), len(r)]
            pool += r or b""
        kh, kw = L["w"].shape[:2] if kind in ("conv", "depthwise", "separable") else (1, 1)
        stride = L.get("stride", (1, 1))
        instrs.append(INSTR.pack(
            KINDS[kind], prev_bits, out_bits, out_exp, *L["in"], *L["out"], kh, kw, *stride,
            *L.get("pad", (0, 0, 0, 0)), L.get("w_bits", 0), L.get("w2_bits", 0), L.get("w_enc", 0),
            L.get("w2_enc", 0), *offs, *L.get("pool", (0, 0)), L.get("acc_wide", 0)))
        prev_bits, prev_exp = out_bits, out_exp
    body = HEADER.pack(b"NNAB", 1, len(layers), len(pool), *in_shape, in_bits, 0, input_scale, 0, 0)
    body += b"".join(instrs) + pool
    return body + struct.pack("<I", zlib.crc32(body))


def fix_crc(data):
    data = bytes(data)
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _windows(x, k, s, pad):
    """Zero-padded input; yields (ky, kx, slice [oh, ow, C])."""
    h, w = out_hw(x.shape[0], x.shape[1], k, s, pad)
    xp = np.pad(x, ((pad[0], pad[2]), (pad[1], pad[3]), (0, 0)))
    for ky in range(k[0]):
        for kx in range(k[1]):
            yield ky, kx, xp[ky:ky + s[0] * (h - 1) + 1:s[0], kx:kx + s[1] * (w - 1) + 1:s[1]]


def reference(layers, image):
    """Numpy interpreter of one image: returns (output float32 array, stats [n, 6])."""
    x = image.astype(np.int64)
    stats = []
    for i, L in enumerate(layers):
        kind, (_, _, c) = L["kind"], L["in"]
        bits = L.get("in_bits_", None)
        ev = int(np.count_nonzero(x))
        nz = (x != 0).astype(np.int64)
        s, pad = L.get("stride", (1, 1)), L.get("pad", (0, 0, 0, 0))
        syn, macs = 0, 0
        raw = None
        if kind in ("conv", "depthwise", "separable", "dense"):
            wt = np.asarray(L["w"], np.int64)
            if kind == "dense":
                acc = (x.reshape(-1) @ wt).reshape(1, 1, -1)
                syn = int(nz.reshape(-1) @ (wt != 0).sum(1))
                macs = wt.size
            else:
                oh, ow, _ = L["out"]
                acc = 0
                for ky, kx, sl in _windows(x, wt.shape[:2], s, pad):
                    nzs = (sl != 0).astype(np.int64)
                    if kind == "conv":
                        acc = acc + sl @ wt[ky, kx]
                        syn += int((nzs @ (wt[ky, kx] != 0).sum(1)).sum())
                    else:
                        acc = acc + sl * wt[ky, kx]
                        syn += int((nzs * (wt[ky, kx] != 0)).sum())
                macs = oh * ow * wt.shape[0] * wt.shape[1] * c * (wt.shape[3] if kind == "conv" else 1)
                if kind == "separable":
                    w2 = np.asarray(L["w2"], np.int64)
                    syn += int(((acc != 0).astype(np.int64) @ (w2 != 0).sum(1)).sum())
                    acc = acc @ w2
                    macs += oh * ow * w2.size
            m, n, sh = (np.asarray(L[k], np.int64) for k in ("m", "n", "sh"))
            z = acc * m + n
            if L["out_bits"] == 0:
                raw = np.ldexp(z.astype(np.float64), -sh).astype(np.float32)
                y = z
            else:
                y = np.clip((z + (1 << (sh - 1))) >> sh, 0, (1 << L["out_bits"]) - 1)
        elif kind in ("maxpool", "avgpool"):
            oh, ow, _ = L["out"]
            y = np.zeros((oh, ow, c), np.int64)
            for ky, kx, sl in _windows(x, L["pool"], s, pad):
                y = np.maximum(y, sl) if kind == "maxpool" else y + sl
                syn += int(np.count_nonzero(sl))
            if kind == "avgpool":
                y = np.minimum((y * L["avg_m"] + (1 << (L["avg_sh"] - 1))) >> L["avg_sh"], (1 << bits) - 1)
        else:
            y = x.reshape(1, 1, -1)
        weight_bytes = L.get("weight_bytes_", 0)
        act = min((x.size * bits + 7) // 8, (ev * (bits + 16) + 7) // 8)
        stats.append([ev, syn, macs, weight_bytes, act, int(np.count_nonzero(y))])
        x = y
    last = layers[-1]
    out = raw if raw is not None else np.ldexp(x.astype(np.float32), -last["out_exp_"])
    out = out.astype(np.float32)
    if out.shape[0] == 1 and out.shape[1] == 1:
        out = out.reshape(-1)
    return out, np.array(stats, np.int64)


def annotate(in_shape, layers, in_bits=8):
    """Fills the derived fields the reference needs (bits, steps, constant sizes)."""
    shapes(in_shape, layers)
    bits, exp = in_bits, 0
    for L in layers:
        L["in_bits_"] = bits
        kind = L["kind"]
        if kind in ("conv", "depthwise", "separable", "dense"):
            size = len(encode_kernel(L["w"], L["w_bits"], L.get("w_enc", 0))) + 13 * L["out"][2]
            if kind == "separable":
                size += len(encode_kernel(L["w2"], L["w2_bits"], L.get("w2_enc", 0)))
            bits, exp = L["out_bits"], L.get("out_exp", 0)
        else:
            size = 5 if kind == "avgpool" else 0
        L["weight_bytes_"] = size
        L["out_exp_"] = exp
    return layers


def run_reference(in_shape, layers, images, in_bits=8):
    annotate(in_shape, layers, in_bits)
    outs, stats = zip(*(reference(layers, im) for im in images))
    return np.stack(outs), np.stack(stats)


def _calibrate(L, acc_sample, rng):
    """Per-channel m, n, sh so the sample's outputs spread over the codes (some zeros)."""
    o = L["out"][2]
    a = np.abs(acc_sample.reshape(-1, o)).max(0) + 1
    m = rng.integers(1 << 14, 1 << 15, o)
    target = (1 << L["out_bits"]) if L["out_bits"] else 64
    sh = np.clip(np.ceil(np.log2(a * m / target)).astype(np.int64) + 1, 1, 40)
    n = (rng.uniform(-0.4, 0.3, o) * (a * m)).astype(np.int64)
    L["m"], L["n"], L["sh"] = m, n, sh


def random_program(rng, kinds=None, in_shape=None, batch=3, raw_last=None):
    """A random valid chain with calibrated requantization; returns (bytes, layers, in_shape, images)."""
    in_shape = in_shape or (int(rng.integers(5, 10)), int(rng.integers(5, 10)), int(rng.integers(1, 4)))
    images = rng.integers(0, 256, (batch,) + in_shape).astype(np.uint8)
    images[rng.random(images.shape) < 0.3] = 0
    if kinds is None:
        mid = ["conv", "depthwise", "separable", "maxpool", "avgpool"]
        kinds = ["conv"] + list(rng.choice(mid, int(rng.integers(1, 4)))) + ["flatten", "dense"]
    raw_last = bool(rng.integers(0, 2)) if raw_last is None else raw_last
    layers = []
    for i, kind in enumerate(kinds):
        cur = shapes(in_shape, layers)[-1]["out"] if layers else in_shape
        last = i == len(kinds) - 1
        L = {"kind": kind}
        if kind in ("conv", "depthwise", "separable"):
            k = [int(rng.integers(1, min(4, d + 1) + 1)) for d in cur[:2]]
            k = [min(kk, d) for kk, d in zip(k, cur[:2])]
            L["stride"] = tuple(int(rng.integers(1, 3)) for _ in range(2))
            L["pad"] = tuple(int(rng.integers(0, kk)) for kk in (k[0], k[1], k[0], k[1]))
            oc = cur[2] if kind == "depthwise" else int(rng.integers(1, 7))
            shape = (k[0], k[1], cur[2], oc) if kind == "conv" else (k[0], k[1], cur[2])
        elif kind == "dense":
            oc = int(rng.integers(1, 7))
            shape = (cur[2], oc)
        if kind in ("conv", "depthwise", "separable", "dense"):
            L["w_bits"] = int(rng.integers(2, 9))
            lim = (1 << (L["w_bits"] - 1)) - 1
            L["w"] = rng.integers(-lim, lim + 1, shape) * (rng.random(shape) < rng.uniform(0.3, 1))
            L["w_enc"] = int(rng.integers(0, 2))
            if kind == "separable":
                L["w2_bits"] = int(rng.integers(2, 9))
                lim2 = (1 << (L["w2_bits"] - 1)) - 1
                L["w2"] = rng.integers(-lim2, lim2 + 1, (cur[2], oc)) * (rng.random((cur[2], oc)) < 0.7)
                L["w2_enc"] = int(rng.integers(0, 2))
            L["out_bits"] = 0 if (last and raw_last) else int(rng.integers(1, 9))
            L["out_exp"] = 0 if L["out_bits"] == 0 else int(rng.integers(-3, 8))
            L["acc_wide"] = int(rng.integers(0, 2))
            L.update(m=np.ones(oc, np.int64), n=np.zeros(oc, np.int64), sh=np.ones(oc, np.int64))
        elif kind in ("maxpool", "avgpool"):
            p = [int(rng.integers(1, min(3, d) + 1)) for d in cur[:2]]
            L["pool"] = tuple(p)
            L["stride"] = tuple(int(rng.integers(1, 3)) for _ in range(2))
            if kind == "maxpool":
                L["pad"] = tuple(int(rng.integers(0, pp)) for pp in (p[0], p[1], p[0], p[1]))
            else:
                L["avg_m"], L["avg_sh"] = int(rng.integers(1, 1 << 16)), int(rng.integers(1, 20))
        layers.append(L)
        if "m" in L:  # calibrate on the reference's accumulator (z with m=1, n=0, sh=1)
            saved = L["out_bits"]
            L["out_bits"] = 0
            annotate(in_shape, layers)
            acc = np.stack([_accumulator(layers, im) for im in images[:2]])
            L["out_bits"] = saved
            _calibrate(L, acc, rng)
    return write(in_shape, layers), layers, in_shape, images


def _accumulator(layers, image):
    out, _ = reference(layers, image)  # last layer raw with m=1, n=0, sh=1: out = acc / 2
    return (out.astype(np.float64) * 2).astype(np.int64)


@pytest.fixture(scope="session")
def nna():
    return types.SimpleNamespace(
        write=write, fix_crc=fix_crc, run_reference=run_reference, random_program=random_program,
        pack_values=pack_values, shapes=shapes, INSTR=INSTR, HEADER=HEADER)
