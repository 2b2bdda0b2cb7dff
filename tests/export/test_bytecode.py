"""Bytecode layout (export/format.py), writer and validating reader: round trips and BytecodeError."""

import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

import keras_nna.export.bytecode as bytecode
import keras_nna.export.format as fmt
from keras_nna.export import BytecodeError, LayerRecord, Program, read_program, write_program
from keras_nna.export.bytecode import load_program
from keras_nna.export.program import LayerStats
from keras_nna.export.reference import run_reference


def _program(sparse=False):
    """separable (kernel 2 sparse when `sparse`) -> global avgpool -> dense raw."""
    rng = np.random.default_rng(0)
    w2 = rng.integers(-3, 4, (2, 3)) * (np.arange(6).reshape(2, 3) == 0 if sparse else 1)
    sep = LayerRecord(kind="separable", in_shape=(4, 4, 2), out_shape=(4, 4, 3), in_bits=8,
                      out_bits=4, out_exp=1, kernel_size=(3, 3), pads=(1, 1, 1, 1), w_bits=4,
                      w2_bits=3, weights=rng.integers(-7, 8, (3, 3, 2)), weights2=w2,
                      m=np.full(3, 1 << 14), n=np.array([0, -3, 9]), sh=np.full(3, 20))
    pool = LayerRecord(kind="avgpool", in_shape=(4, 4, 3), out_shape=(1, 1, 3), in_bits=4,
                       out_bits=4, out_exp=1, pool=(4, 4), strides=(4, 4), m=np.array([1]),
                       sh=np.array([4]))
    dense = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=4,
                        out_bits=0, w_bits=2, weights=np.array([[1, 0], [0, 0], [-1, 0]]),
                        m=np.array([1, 1]), n=np.array([0, 0]), sh=np.array([1, 1]))
    return Program((4, 4, 2), 8, [sep, pool, dense], 1 / 255)


@pytest.fixture(scope="module")
def data():
    return write_program(_program())


def _with_crc(body):
    return body + fmt.CRC.pack(fmt.crc32(body))


def _header(**fields):
    values = dict(magic=fmt.MAGIC, version=fmt.VERSION, n_layers=1, pool_size=0, in_h=1, in_w=1,
                  in_c=1, in_bits=8, flags=0, input_scale=1.0, reserved0=0, reserved1=0)
    values.update(fields)
    return fmt.HEADER.pack(*(values[name] for name in fmt.HEADER_FIELDS))


def test_round_trip_is_byte_identical(data):
    program = read_program(data)
    assert [r.kind for r in program.layers] == ["separable", "avgpool", "dense"]
    assert write_program(program) == data
    assert program.layers[0].weights2.tolist() == _program().layers[0].weights2.tolist()


def test_layout_constants():
    assert (fmt.HEADER.size, fmt.INSTR.size, fmt.RQ_ENTRY.size, fmt.POOL_RQ.size) == (32, 64, 13, 5)
    assert fmt.INSTR_OFFSETS["out_h"] == 10 and fmt.INSTR_OFFSETS["w_enc"] == 26
    assert fmt.HEADER_OFFSETS["input_scale"] == 20
    assert {fmt.KINDS[name]: name for name in fmt.KINDS} == fmt.KIND_NAMES
    assert bytecode.BytecodeError is fmt.BytecodeError and bytecode.HEADER is fmt.HEADER


def test_peek_header(data):
    header = fmt.peek_header(data)
    assert (header.n_layers, header.in_h, header.in_w, header.in_c, header.in_bits) == (3, 4, 4, 2, 8)
    assert header.pool_size == len(data) - 32 - 3 * 64 - 4
    first = fmt.instruction(data, 0)
    assert fmt.KIND_NAMES[first.kind] == "separable" and (first.out_h, first.out_c) == (4, 3)


@pytest.mark.parametrize("sparse,expected", [(False, ["dense/dense", "", "dense"]),
                                             (True, ["dense/sparse", "", "dense"])],
                         ids=["dense", "sparse-pointwise"])
def test_weight_encodings(sparse, expected):
    assert fmt.weight_encodings(write_program(_program(sparse))) == expected


BAD_PROGRAMS = [
    ("empty", lambda d: b"", r"0 bytes received, expected at least 36"),
    ("short", lambda d: d[:20], r"20 bytes received, expected at least 36"),
    ("magic", lambda d: b"XNAB" + d[4:], r"magic b'XNAB' received, expected b'NNAB'"),
    ("version", lambda d: d[:4] + b"\x04\x00" + d[6:],
     r"unsupported format version 4 \(this reader reads versions 1, 2 and 3\)"),
    ("no-layers", lambda d: d[:6] + b"\x00\x00" + d[8:], r"n_layers 0 received, expected 1..1024"),
    ("many-layers", lambda d: d[:6] + b"\x01\x04" + d[8:], r"n_layers 1025 received"),
    ("truncated", lambda d: d[:-9], r"sizes imply \d+ bytes, the file has \d+ \(truncated"),
    ("padded", lambda d: d + b"\x00", r"sizes imply \d+ bytes, the file has \d+ \(truncated or padded"),
    ("crc", lambda d: d[:-1] + bytes([d[-1] ^ 1]), r"CRC-32 mismatch"),
    ("pool-byte", lambda d: d[:-5] + bytes([d[-5] ^ 0x10]) + d[-4:], r"CRC-32 mismatch"),
    ("kind", lambda d: _with_crc(d[:32] + b"\x09" + d[33:-4]), r"layer 0: unknown kind 9"),
    ("in-shape", lambda d: _with_crc(d[:36] + b"\x05" + d[37:-4]),
     r"layer 0 \(separable\): input shape \(5, 4, 2\) received, expected \(4, 4, 2\) \(the "
     r"output of the input image \(src 0\)\)"),
    ("scale", lambda d: _with_crc(d[:20] + struct.pack("<f", 0.0) + d[24:-4]),
     r"input_scale 0.0 must be finite and > 0"),
]


@pytest.mark.parametrize("corrupt,match", [(c, m) for _, c, m in BAD_PROGRAMS],
                         ids=[name for name, _, _ in BAD_PROGRAMS])
def test_read_program_rejects(data, corrupt, match):
    with pytest.raises(BytecodeError, match="Invalid program: .*" + match):
        read_program(corrupt(data))


@pytest.mark.parametrize("header,match", [
    (_header(magic=b"ONNX") + bytes(68), "magic b'ONNX' received"),
    (_header(version=0) + bytes(68), r"unsupported format version 0 \(this reader reads "
                                     r"versions 1, 2 and 3\)"),
    (_header(pool_size=10) + bytes(68), "sizes imply 110 bytes, the file has 100"),
], ids=["magic", "version", "size"])
def test_peek_header_rejects(header, match):
    with pytest.raises(BytecodeError, match=match):
        fmt.peek_header(header)


def test_every_truncation_is_rejected(data):
    for n in range(len(data)):
        with pytest.raises(BytecodeError):
            read_program(data[:n])


def test_writer_rejects_fields_that_do_not_fit():
    rec = LayerRecord(kind="maxpool", in_shape=(70000, 1, 1), out_shape=(70000, 1, 1), in_bits=8,
                      out_bits=8, pool=(1, 1), name="too_tall")
    with pytest.raises(BytecodeError, match="Layer 'too_tall' \\(maxpool\\) does not fit"):
        write_program(Program((70000, 1, 1), 8, [rec]))


@pytest.mark.parametrize("source", ["bytes", "bytearray", "memoryview", "str", "pathlike", "program"])
def test_program_sources(data, tmp_path, source):
    path = tmp_path / "p.nnab"
    path.write_bytes(data)
    program = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
               "str": str(path), "pathlike": path, "program": read_program(data)}[source]
    assert fmt.program_bytes(program) == data
    assert write_program(load_program(program)) == data


@pytest.mark.parametrize("make,error,match", [
    (lambda d: str(d / "missing.nnab"), FileNotFoundError, "program file '.*missing.nnab' not found"),
    (lambda d: d, IsADirectoryError, "is a directory"),
    (lambda d: 12, TypeError, r"to_bytes\(\).*Received: <class 'int'>"),
], ids=["missing", "directory", "int"])
def test_program_loader_errors(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        fmt.program_bytes(make(tmp_path))
    with pytest.raises(error, match=match):
        load_program(make(tmp_path))


def test_run_reference_accepts_a_path(data, tmp_path):
    path = tmp_path / "p.nnab"
    path.write_bytes(data)
    images = np.random.default_rng(1).integers(0, 256, (2, 4, 4, 2)).astype(np.uint8)
    out, stats = run_reference(str(path), images)
    ref_out, ref_stats = run_reference(data, images)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(stats, ref_stats)


def test_format_imports_only_the_standard_library():
    """The CLI's inspect reads headers through format.py: it must not pull numpy/TF/Keras."""
    path = os.path.join(os.path.dirname(fmt.__file__), "format.py")
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('fmt', {path!r})\n"
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
            "heavy = {m.split('.')[0] for m in sys.modules} & {'numpy', 'tensorflow', 'keras'}\n"
            "print(sorted(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- LayerStats ----------------------------------------------------------------------------

COUNTS = np.arange(2 * 3 * 6).reshape(2, 3, 6)


def test_layer_stats_columns_and_summaries():
    stats = LayerStats(COUNTS)
    assert stats.dtype == np.int64 and stats.shape == (2, 3, 6) and stats.names == fmt.STAT_NAMES
    for i, name in enumerate(fmt.STAT_NAMES):
        column = getattr(stats, name)
        assert type(column) is np.ndarray and column.tolist() == COUNTS[:, :, i].tolist()
    per_image = stats.per_image()
    assert per_image["synops"].tolist() == COUNTS[:, :, 1].sum(1).tolist()
    assert stats.per_layer()["events_out"].tolist() == COUNTS[:, :, 5].mean(0).tolist()
    assert stats.summary()["events_in"] == float(COUNTS[:, :, 0].sum(1).mean())


@pytest.mark.parametrize("index,labelled", [
    ((slice(None), slice(None), 0), False),
    ((slice(0, 1),), True),
    ((0,), True),
    ((slice(None), 1), True),
    ((Ellipsis, 2), False),
    ((0, 0), False),
], ids=["column", "images", "one-image", "one-layer", "ellipsis", "one-row"])
def test_layer_stats_indexing(index, labelled):
    stats = LayerStats(COUNTS)
    part = stats[index]
    assert isinstance(part, LayerStats) == labelled
    np.testing.assert_array_equal(part, COUNTS[index])


def test_layer_stats_stays_an_array():
    stats = LayerStats(COUNTS)
    assert type(stats + 1) is np.ndarray and type(stats.sum(axis=2)) is np.ndarray
    assert isinstance(stats.sum(), np.integer) and stats.astype(np.float64).mean(axis=0).shape == (3, 6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(stats)), COUNTS)
    with pytest.raises(ValueError, match="last axis of 6.*Received shape \\(2, 5\\)"):
        LayerStats(np.zeros((2, 5)))


def test_run_reference_returns_layer_stats(data):
    images = np.random.default_rng(2).integers(0, 256, (3, 4, 4, 2)).astype(np.uint8)
    _, stats = run_reference(data, images)
    assert isinstance(stats, LayerStats)
    np.testing.assert_array_equal(stats.events_in[:, 0], (images != 0).sum(axis=(1, 2, 3)))
