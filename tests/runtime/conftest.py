"""Test helpers for the emulator op: a permissive bytecode writer and a random
program generator, exposed as the ``nna`` fixture (a namespace).

The writer is built on the one layout, ``keras_nna.export.format``, but does
not validate: tests use it to craft malformed programs (``w_blob`` replaces a
kernel's bytes, any field may be out of range). Expected results come from
``keras_nna.export.reference``, the package's numpy interpreter.
"""

import types

import numpy as np
import pytest

from keras_nna.export.bytecode import pack_codes, read_program
from keras_nna.export.format import (CRC, HEADER, INSTR, KINDS, MAGIC, POOL_RQ, RQ_ENTRY, VERSION,
                                     WEIGHTED, crc32)
from keras_nna.export.reference import run_reference as _reference

pack_values = pack_codes  # b-bit two's complement fields, LSB first (1 bit: 1 = +1, 0 = -1)


def random_codes(rng, bits, shape, density):
    """Random `bits`-bit kernel codes (1 bit: -1/+1), about `density` of them non-zero
    (half the 1-bit kernels have no zero: the dense 1-bit encoding)."""
    lim = max(1, (1 << (bits - 1)) - 1)
    w = rng.integers(-lim, lim + 1, shape)
    if bits == 1:
        w[w == 0] = 1
        density = 1.0 if rng.random() < 0.5 else density
    return w * (rng.random(shape) < density)


def kernel_encoding(rng, w, bits):
    """A random encoding (0 dense, 1 sparse); sparse when a 1-bit kernel has a zero code."""
    enc = int(rng.integers(0, 2))
    return 1 if bits == 1 and not np.all(w) else enc


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
        if kind in WEIGHTED:
            regions.append(L.get("w_blob") or encode_kernel(L["w"], L["w_bits"], L.get("w_enc", 0)))
            regions.append(encode_kernel(L["w2"], L["w2_bits"], L.get("w2_enc", 0)) if kind == "separable" else None)
            rq = b"".join(RQ_ENTRY.pack(int(m), int(n), int(s)) for m, n, s in zip(L["m"], L["n"], L["sh"]))
            regions.append(rq)
            out_bits, out_exp = L["out_bits"], L.get("out_exp", 0)
        else:
            regions += [None, None, POOL_RQ.pack(L["avg_m"], L["avg_sh"]) if kind == "avgpool" else None]
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
            L.get("w2_enc", 0), *offs, *L.get("pool", (0, 0)), L.get("acc_wide", 0), 0, len(instrs), 0,
            bytes(2)))
        prev_bits, prev_exp = out_bits, out_exp
    body = HEADER.pack(MAGIC, VERSION, len(layers), len(pool), *in_shape, in_bits, 0, input_scale, 0, 0)
    body += b"".join(instrs) + pool
    return body + CRC.pack(crc32(body))


def fix_crc(data):
    """Recomputes the trailing CRC (to test the field checks behind it)."""
    data = bytes(data)
    return data[:-CRC.size] + CRC.pack(crc32(data[:-CRC.size]))


def run_reference(in_shape, layers, images, in_bits=8):
    """Runs layer dicts on keras_nna.export's numpy reference: `(outputs, LayerStats)`.

    The bytes of `write` are read back with the validating reader, so weight
    bytes follow each layer's chosen encoding.
    """
    return _reference(read_program(write(in_shape, layers, in_bits)), images)


def _calibrate(L, acc_sample, rng):
    """Per-channel m, n, sh so the sample's outputs spread over the codes (some zeros)."""
    o = L["out"][2]
    a = np.abs(acc_sample.reshape(-1, o)).max(0) + 1
    m = rng.integers(1 << 14, 1 << 15, o)
    target = (1 << L["out_bits"]) if L["out_bits"] else 64
    sh = np.clip(np.ceil(np.log2(a * m / target)).astype(np.int64) + 1, 1, 40)
    n = (rng.uniform(-0.4, 0.3, o) * (a * m)).astype(np.int64)
    L["m"], L["n"], L["sh"] = m, n, sh


def random_program(rng, kinds=None, in_shape=None, batch=3, raw_last=None, w_bits=None):
    """A random valid chain with calibrated requantization; returns (bytes, layers, in_shape, images).

    Kernel widths are drawn from 1..8, or from the sequence `w_bits` when given.
    """
    def draw_bits():
        return int(rng.integers(1, 9)) if w_bits is None else int(rng.choice(w_bits))

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
        if kind in WEIGHTED:
            L["w_bits"] = draw_bits()  # 1..8 (1: codes -1/+1, format version 3)
            L["w"] = random_codes(rng, L["w_bits"], shape, rng.uniform(0.3, 1))
            L["w_enc"] = kernel_encoding(rng, L["w"], L["w_bits"])
            if kind == "separable":
                L["w2_bits"] = draw_bits()
                L["w2"] = random_codes(rng, L["w2_bits"], (cur[2], oc), 0.7)
                L["w2_enc"] = kernel_encoding(rng, L["w2"], L["w2_bits"])
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
            saved = L["out_bits"], L["out_exp"]
            L["out_bits"], L["out_exp"] = 0, 0
            out, _ = run_reference(in_shape, layers, images[:2])  # raw last layer: out = acc / 2
            L["out_bits"], L["out_exp"] = saved
            _calibrate(L, (out.astype(np.float64) * 2).astype(np.int64), rng)
    return write(in_shape, layers), layers, in_shape, images


@pytest.fixture(scope="session")
def nna():
    return types.SimpleNamespace(
        write=write, fix_crc=fix_crc, run_reference=run_reference,
        random_program=random_program, random_codes=random_codes, pack_values=pack_values,
        shapes=shapes, INSTR=INSTR, HEADER=HEADER, KINDS=KINDS)
