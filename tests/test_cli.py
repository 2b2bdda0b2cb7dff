"""Tests of the keras-nna command line (keras_nna.cli)."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_nna import cli
from keras_nna.export import LayerRecord, Program, read_program, run_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _program():
    rng = np.random.default_rng(0)
    conv = LayerRecord(kind="conv", in_shape=(6, 6, 1), out_shape=(4, 4, 2), in_bits=8,
                       out_bits=4, out_exp=0, kernel_size=(3, 3), w_bits=4,
                       weights=rng.integers(-7, 8, (3, 3, 1, 2)) * (rng.random((3, 3, 1, 2)) < 0.5),
                       m=np.ones(2, np.int64), n=np.zeros(2, np.int64), sh=np.full(2, 6),
                       name="conv")
    flat = LayerRecord(kind="flatten", in_shape=(4, 4, 2), out_shape=(1, 1, 32), in_bits=4,
                       out_bits=4, name="flatten")
    dense = LayerRecord(kind="dense", in_shape=(1, 1, 32), out_shape=(1, 1, 3), in_bits=4,
                        out_bits=0, w_bits=2, weights=rng.integers(-1, 2, (32, 3)),
                        m=np.ones(3, np.int64), n=np.zeros(3, np.int64), sh=np.ones(3, np.int64),
                        name="logits")
    return Program((6, 6, 1), 8, [conv, flat, dense])


@pytest.fixture
def files(tmp_path):
    program = _program()
    prog = tmp_path / "prog.nnab"
    size = program.save(prog)
    images = np.random.default_rng(1).integers(0, 256, (4, 6, 6, 1)).astype(np.uint8)
    batch = tmp_path / "batch.npy"
    np.save(batch, images)
    return {"prog": str(prog), "batch": str(batch), "images": images, "size": size,
            "program": program, "dir": tmp_path}


def _main(*args):
    return cli.main(["keras-nna", *map(str, args)])


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-nna: error:") and "\n" not in err, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_inspect(files, capsys):
    assert _main("inspect", files["prog"]) == 0
    out = capsys.readouterr().out
    for text in ("conv", "flatten", "dense", "6x6x1", "4x4x2", "8->4", "4->raw", "Encoding",
                 f"Valid program: {files['size']:,} bytes (3 layers"):
        assert text in out, out
    assert "sparse" in out or "dense" in out


def test_inspect_shows_the_graph_of_a_residual_program(tmp_path, capsys):
    """Each row says which layers it reads ('in' = the image) and marks signed codes."""
    import keras

    from keras_nna.export import export_model
    from keras_nna.quantization import quantize_model

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv2D(2, 1)(x)  # linear: signed codes
    s = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(s)))
    path = tmp_path / "res.nnab"
    export_model(quantize_model(model), str(path))
    assert _main("inspect", path) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:1].isdigit()]
    assert [(r[1], r[2], r[5]) for r in rows] == [
        ("conv", "in", "8->4"), ("conv", "#0", "4->s4"), ("add", "#0+#1", "4->4"),
        ("flatten", "#2", "4->4"), ("dense", "#3", "4->raw")]


def test_run_writes_outputs(files, capsys):
    out_path = files["dir"] / "out.npy"
    assert _main("run", files["prog"], "--input", files["batch"], "--output", out_path) == 0
    text = capsys.readouterr().out
    expected, _ = run_reference(files["program"], files["images"])
    np.testing.assert_array_equal(np.load(out_path), expected)
    assert "outputs (4, 3)" in text
    assert "argmax: " + " ".join(str(k) for k in expected.argmax(1)) in text


def test_run_reference_executor_single_image(files, capsys):
    single = files["dir"] / "one.npy"
    np.save(single, files["images"][0].astype(np.int32))  # whole numbers: converted
    assert _main("run", files["prog"], "--input", single, "--executor", "reference") == 0
    assert "with the reference: outputs (1, 3)" in capsys.readouterr().out


def test_flags_do_not_leak_between_calls(files, capsys):
    out_path = files["dir"] / "out.npy"
    assert _main("run", files["prog"], "--input", files["batch"], "--output", out_path) == 0
    os.remove(out_path)
    assert _main("run", files["prog"], "--input", files["batch"]) == 0
    assert not out_path.exists()


def test_profile_json(files, capsys):
    report_path = files["dir"] / "cost.json"
    assert _main("profile", files["prog"], "--input", files["batch"], "--profile", "nna-8core",
                 "--json", report_path) == 0
    out = capsys.readouterr().out
    assert "Total" in out and "Profile nna-8core" in out and "Energy uJ" in out
    report = json.loads(report_path.read_text())
    assert report["profile"]["name"] == "nna-8core" and report["batch_size"] == 4
    assert [row["name"] for row in report["layers"]] == ["conv_0", "flatten_1", "dense_2"]


def test_export(tmp_path, capsys):
    from keras_nna.quantization import quantize_model

    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    qmodel = quantize_model(keras.Model(inputs, keras.layers.Dense(3)(x)))
    model_path, out_path = tmp_path / "m.keras", tmp_path / "m.nnab"
    qmodel.save(model_path)
    assert _main("export", "--model", model_path, "--out", out_path) == 0
    assert f"{os.path.getsize(out_path):,} bytes, 3 layers" in capsys.readouterr().out
    program = read_program(out_path.read_bytes())
    assert [rec.kind for rec in program.layers] == ["conv", "flatten", "dense"]


def test_export_errors(tmp_path, capsys):
    assert _main("export", "--out", tmp_path / "x.nnab") == 2
    _one_error_line(capsys, "--model PATH")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert _main("export", "--model", bad, "--out", tmp_path / "x.nnab") == 1
    _one_error_line(capsys, "cannot load Keras model")


def test_missing_and_corrupt_program(files, capsys):
    assert _main("inspect", files["dir"] / "nope.nnab") == 1
    _one_error_line(capsys, "not found")
    data = bytearray(open(files["prog"], "rb").read())
    data[40] ^= 0xFF
    corrupt = files["dir"] / "corrupt.nnab"
    corrupt.write_bytes(bytes(data))
    assert _main("inspect", corrupt) == 1
    _one_error_line(capsys, "is not a valid keras_nna program", "CRC-32")


def test_bad_batches(files, capsys):
    wrong_shape = files["dir"] / "shape.npy"
    np.save(wrong_shape, np.zeros((2, 5, 5, 1), np.uint8))
    assert _main("run", files["prog"], "--input", wrong_shape) == 1
    _one_error_line(capsys, "(2, 5, 5, 1)", "(N, 6, 6, 1)")
    floats = files["dir"] / "floats.npy"
    np.save(floats, np.full((1, 6, 6, 1), 0.5, np.float32))
    assert _main("run", files["prog"], "--input", floats) == 1
    _one_error_line(capsys, "float32", "astype(np.uint8)")
    garbage = files["dir"] / "garbage.npy"
    garbage.write_bytes(b"garbage")
    assert _main("profile", files["prog"], "--input", garbage) == 1
    _one_error_line(capsys, "cannot read")
    assert _main("run", files["prog"]) == 2
    _one_error_line(capsys, "--input PATH")


def test_usage_errors(files, capsys):
    assert _main("profile", files["prog"], "--input", files["batch"], "--profile", "tpu") == 2
    _one_error_line(capsys, "Unknown hardware profile 'tpu'", "nna-1core, nna-8core")
    assert _main("frobnicate") == 2
    _one_error_line(capsys, "unknown command 'frobnicate'", "export, inspect, run, profile, optimize, allocate, demo")
    assert cli.main(["keras-nna"]) == 2
    _one_error_line(capsys, "missing command")
    assert _main("inspect", files["prog"], "--nosuchflag=1") == 2
    _one_error_line(capsys, "nosuchflag")
    assert _main("inspect") == 2
    _one_error_line(capsys, "exactly one program path")
    assert _main("run", files["prog"], "--input", files["batch"], "--executor", "gpu") == 2
    _one_error_line(capsys, "--executor")


@pytest.mark.parametrize("argv", [["--help"], ["-h"], []], ids=["--help", "-h", "no-args"])
def test_global_help_lists_every_command(argv, capsys):
    status = _main(*argv)
    if not argv:  # no command: a usage error that points at --help
        assert status == 2
        _one_error_line(capsys, "missing command", "keras-nna --help")
        return
    assert status == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: keras-nna")
    for command in cli.COMMANDS:  # one line each, with its summary
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(command + " "))
        assert len(line.split()) > 2, line


@pytest.mark.parametrize("command,flags", [
    ("export", {"--model", "--out"}),
    ("inspect", {"--limit"}),
    ("run", {"--input", "--output", "--executor", "--limit"}),
    ("profile", {"--input", "--profile", "--json", "--executor", "--limit"}),
    ("demo", {"--quick", "--tasks", "--out_dir"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_command_help_shows_its_own_flags(command, flags, capsys):
    assert _main(command, "--help") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: keras-nna {command}"), out
    assert set(re.findall(r"--[a-z_]+", out)) == flags | {"--help"}, out


def test_version(capsys):
    import keras_nna

    assert _main("--version") == 0
    assert capsys.readouterr().out.strip() == f"keras-nna {keras_nna.__version__}"


@pytest.mark.parametrize("argv,fragments", [
    (["--nosuchflag"], ["unrecognized arguments: --nosuchflag", "keras-nna --help"]),
    (["inspect", "--model", "m.keras"], ["unrecognized arguments: --model", "inspect --help"]),
    (["export", "--model"], ["--model", "expected one argument"]),
    (["demo", "--nosuchflag"], ["unrecognized arguments: --nosuchflag", "demo --help"]),
    (["demo", "--", "--tasks", "cifar"], ["--tasks", "faces, fashion_mnist"]),
], ids=["global-flag", "flag-of-other-command", "flag-without-value", "demo-flag",
        "demo-passthrough"])
def test_usage_errors_exit_2_with_one_line(argv, fragments, capsys):
    assert _main(*argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("keras-nna") and ": error: " in err and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err


def test_run_entry_point_in_process(files, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["keras-nna", "inspect", files["prog"]])
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    assert exit_info.value.code in (0, None)
    assert "Valid program" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["keras-nna", "inspect", str(files["dir"] / "nope.nnab")])
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    assert exit_info.value.code == 1
    # direct calls still parse their own flags afterwards
    assert _main("run", files["prog"], "--input", files["batch"], "--executor", "reference") == 0


@pytest.mark.slow
def test_subprocess_module_entry(files):
    """`python -m keras_nna.cli`: exit status and one stderr line (imports TF: slow)."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "keras_nna.cli", "profile", files["prog"],
                         "--input", files["batch"]], capture_output=True, text=True, env=env,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "Total" in ok.stdout
    missing = str(files["dir"] / "x")
    bad = subprocess.run([sys.executable, "-m", "keras_nna.cli", "inspect", missing],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("keras-nna: error: program")


def _fifo(tmp_path):
    path = tmp_path / "pipe.nnab"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("make_path, fragment", [
    (lambda d: d, "is a directory"),
    (_fifo, "not a regular file"),
    (lambda d: "/dev/zero", "not a regular file"),
], ids=["directory", "fifo", "dev-zero"])
def test_program_path_that_is_not_a_file(files, capsys, make_path, fragment):
    """Was reported as "not found" (and a FIFO would block reading)."""
    assert _main("inspect", make_path(files["dir"])) == 1
    _one_error_line(capsys, fragment)


def test_huge_foreign_file_rejected_from_its_header(files, capsys):
    """A 3 GB non-program was read whole (13 s, 3.9 GB) before its header was rejected."""
    big = files["dir"] / "huge.bin"
    with open(big, "wb") as f:  # sparse: no disk used
        f.write(b"GGUF" + bytes(60))
        f.truncate(3 * 2**30)
    assert _main("inspect", big) == 1
    _one_error_line(capsys, "magic", "not a keras_nna program")
    data = open(files["prog"], "rb").read()
    padded = files["dir"] / "padded.nnab"
    with open(padded, "wb") as f:  # a real header, then 3 GB it does not declare
        f.write(data)
        f.truncate(3 * 2**30)
    assert _main("inspect", padded) == 1
    _one_error_line(capsys, "truncated or padded")


@pytest.mark.parametrize("name", ["adir", "out.npy"], ids=["no-suffix", "npy-suffix"])
def test_run_output_message_names_the_file_written(files, capsys, name):
    """`--output adir` wrote adir.npy but printed "Wrote adir."."""
    out = files["dir"] / name
    assert _main("run", files["prog"], "--input", files["batch"], "--output", out) == 0
    written = str(out) if name.endswith(".npy") else str(out) + ".npy"
    assert f"Wrote {written}." in capsys.readouterr().out
    np.testing.assert_array_equal(np.load(written), run_reference(files["program"],
                                                                  files["images"])[0])


def test_truncated_keras_file_is_named(tmp_path, capsys):
    """A truncated .keras got Keras' "File not found"."""
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    from keras_nna.quantization import quantize_model

    path = tmp_path / "q.keras"
    quantize_model(model).save(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(data[: len(data) // 2])
    assert _main("export", "--model", truncated, "--out", tmp_path / "x.nnab") == 1
    _one_error_line(capsys, "truncated or corrupt", "model.save")


def test_limit_flag_raises_a_program_limit(files, capsys):
    """Over a default limit: the error names the limit and the --limit flag that raises it."""
    limit = "max_constant_bytes=8"
    assert _main("inspect", files["prog"], "--limit", limit) == 1
    err = _one_error_line(capsys, "max_constant_bytes", "--limit max_constant_bytes=VALUE")
    assert "not a valid" not in err
    assert _main("inspect", files["prog"], "--limit", "max_constant_bytes=100000") == 0
    assert _main("run", files["prog"], "--input", files["batch"], "--limit", "max_work=10**9") == 2
    _one_error_line(capsys, "NAME=INTEGER")
    assert _main("run", files["prog"], "--input", files["batch"], "--limit", "max_speed=3") == 2
    _one_error_line(capsys, "max_speed")
