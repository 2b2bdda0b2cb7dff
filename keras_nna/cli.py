"""The `keras-nna` command line: export, inspect, run and profile programs.

Installed as the `keras-nna` script (also `python -m keras_nna.cli`). The
first argument is the command:

    keras-nna export  --model model.keras --out model.nnab
    keras-nna inspect model.nnab
    keras-nna run     model.nnab --input batch.npy [--output out.npy]
    keras-nna profile model.nnab --input batch.npy [--profile nna-8core] [--json cost.json]
    keras-nna demo    [-- tutorial arguments]

- `export` loads a quantized model (`keras_nna.quantization.quantize_model`,
  saved with `model.save`) and writes its bytecode.
- `inspect` validates a program and prints one row per layer: kind, shapes,
  bits, weights, constant bytes and the dense/sparse kernel encoding.
- `run` executes a batch (`.npy`, uint8 `[N, H, W, C]`, or one `[H, W, C]`
  image) bit-exactly and prints the output shape and, for up to 10 images,
  the argmax.
- `profile` runs the batch and prints the cost table of
  `keras_nna.runtime.cost` for a hardware profile (`nna-1core`,
  `nna-8core`).
- `demo` runs the quickstart tutorial `tutorials/akidanet_quickstart.py` of
  the source repository.

`run` and `profile` use the compiled emulator op and fall back to the numpy
reference when the op is unavailable (`--executor` chooses explicitly).
Errors print one line, `keras-nna: error: ...`, on stderr and exit with
status 1 (2 for usage errors).

From Python, `main(argv)` runs one command and returns the exit status.

Example:

>>> main(["keras-nna", "frobnicate"])
2
"""

import importlib.util
import os
import struct
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

__all__ = ["COMMANDS", "CliError", "main", "run"]

COMMANDS = ("export", "inspect", "run", "profile", "demo")
"""The sub-commands, in the order `--help` lists them."""

FLAGS = flags.FLAGS
_FLAG_SPECS = (
    ("model", None, "export: path of the quantized Keras model (.keras)."),
    ("out", None, "export: path of the bytecode to write (.nnab)."),
    ("input", None, "run/profile: .npy batch of uint8 images [N, H, W, C]."),
    ("output", None, "run: optional .npy path for the float32 outputs."),
    ("profile", "nna-1core", "profile: hardware profile name (nna-1core, nna-8core)."),
    ("json", None, "profile: optional path for the JSON cost report."),
    ("executor", "auto", "run/profile: 'auto', 'emulator' or 'reference'."),
)
for _name, _default, _help in _FLAG_SPECS:
    if _name not in FLAGS:
        flags.DEFINE_string(_name, _default, _help)

_USAGE = ("usage: keras-nna {export|inspect|run|profile|demo} ...; "
          "e.g. keras-nna inspect model.nnab (see keras-nna --helpfull)")
_TUTORIAL = os.path.join("tutorials", "akidanet_quickstart.py")
_under_app = False


class CliError(Exception):
    """A user error: printed as one line, exit status `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def _existing(path, what, flag=None):
    if not path:
        how = f"--{flag} PATH" if flag else f"a {what} path"
        raise CliError(f"missing {what}: expected {how}. {_USAGE}", 2)
    if not os.path.isfile(path):
        raise CliError(f"{what} '{path}' not found (expected an existing file). "
                       "Check the path and the working directory.")
    return path


def _program_arg(args, command):
    if len(args) != 1:
        raise CliError(f"'{command}' expects exactly one program path, received "
                       f"{len(args)}: {args}. Usage: keras-nna {command} PROGRAM.nnab ...", 2)
    path = _existing(args[0], "program")
    from keras_nna.export import read_program

    from keras_nna.export import BytecodeError

    with open(path, "rb") as f:
        data = f.read()
    try:
        return data, read_program(data)
    except BytecodeError as err:
        raise CliError(f"'{path}' is not a valid keras_nna program: {err}. Re-export it with "
                       "keras-nna export (format: docs/bytecode.md).")


def _load_images(path, program):
    import numpy as np

    _existing(path, "input batch", "input")
    try:
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read '{path}' as a .npy array ({err}). Save the batch with "
                       "np.save(path, images_uint8).")
    if images.ndim == 3:
        images = images[None]
    h, w, c = program.input_shape
    if images.ndim != 4 or tuple(images.shape[1:]) != (h, w, c):
        raise CliError(f"input batch '{path}' has shape {images.shape}; expected "
                       f"(N, {h}, {w}, {c}) uint8 images (or one ({h}, {w}, {c}) image). "
                       "Resize the images to the program's input.")
    if images.dtype != np.uint8:
        whole = np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)
        if not whole or images.size and (not np.all(np.isfinite(images)) or np.any(
                images != np.round(images)) or images.min() < 0 or images.max() > 255):
            raise CliError(f"input batch '{path}' has dtype {images.dtype} with values that are "
                           "not pixel codes 0..255; expected uint8. Convert with "
                           "np.clip(np.round(x), 0, 255).astype(np.uint8).")
        images = images.astype(np.uint8)
    return images


def _execute(data, images):
    """Returns (outputs, stats, executor name)."""
    executor = FLAGS.executor
    if executor not in ("auto", "emulator", "reference"):
        raise CliError(f"unknown --executor={executor!r}; expected auto, emulator or reference.", 2)
    if executor != "reference":
        try:
            from keras_nna.runtime.op import load_op_library

            load_op_library()
        except Exception as err:  # op not built: the reference gives identical results
            if executor == "emulator":
                raise CliError(f"the emulator op is unavailable ({_first_line(err)}). "
                               "Build it (pip install --no-build-isolation .) or pass "
                               "--executor=reference.")
        else:
            from keras_nna.runtime.emulator import Emulator

            outputs, stats = Emulator(data).run_with_stats(images)
            return outputs, stats, "emulator"
    from keras_nna.export import run_reference

    outputs, stats = run_reference(data, images)
    return outputs, stats, "reference"


def _cmd_export(args):
    if args:
        raise CliError(f"'export' takes no positional arguments, received {args}. "
                       "Usage: keras-nna export --model m.keras --out prog.nnab", 2)
    model_path = _existing(FLAGS.model, "model", "model")
    if not FLAGS.out:
        raise CliError("missing output path: expected --out PROGRAM.nnab.", 2)
    import keras

    import keras_nna.quantization  # noqa: F401  (registers the custom layers)
    from keras_nna.export import ExportError, export_model

    try:
        model = keras.models.load_model(model_path)
    except Exception as err:
        raise CliError(f"cannot load Keras model '{model_path}': {_first_line(err)}. Expected a "
                       "model saved with model.save('m.keras') after quantize_model.")
    try:
        program = export_model(model, FLAGS.out)
    except ExportError as err:
        raise CliError(f"cannot export '{model_path}': {err}")
    size = os.path.getsize(FLAGS.out)
    print(f"Wrote {FLAGS.out}: {size:,} bytes, {len(program.layers)} layers, input "
          f"{program.input_shape}, output {program.output_shape}.")


def _encodings(data, n_layers):
    out = []
    for i in range(n_layers):
        w_enc, w2_enc = struct.unpack_from("<BB", data, 32 + 64 * i + 26)
        w_bits = data[32 + 64 * i + 24]
        names = ["sparse" if e else "dense" for e in (w_enc, w2_enc)]
        out.append("" if not w_bits else (names[0] if data[32 + 64 * i] != 3 else "/".join(names)))
    return out


def _fmt_table(headers, rows, right_from):
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if j >= right_from else c.ljust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(headers))
    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def _cmd_inspect(args):
    data, program = _program_arg(args, "inspect")
    import numpy as np

    rows = []
    encodings = _encodings(data, len(program.layers))
    for i, rec in enumerate(program.layers):
        weights = [w for w in (rec.weights, rec.weights2) if w is not None]
        nnz = sum(int(np.count_nonzero(w)) for w in weights)
        n = rec.n_weights
        w_bits = f"{rec.w_bits}/{rec.w2_bits}" if rec.kind == "separable" else str(rec.w_bits or "")
        rows.append([str(i), rec.kind, "x".join(map(str, rec.in_shape)),
                     "x".join(map(str, rec.out_shape)), f"{rec.in_bits}->{rec.out_bits or 'raw'}",
                     w_bits, f"{n:,}", f"{100 * nnz / n:.1f}%" if n else "", encodings[i],
                     f"{rec.const_bytes:,}"])
    headers = ["#", "Kind", "Input", "Output", "Bits", "W bits", "Weights", "Non-zero",
               "Encoding", "Bytes"]
    print(_fmt_table(headers, rows, right_from=6))
    consts = sum(rec.const_bytes for rec in program.layers)
    print(f"Valid program: {len(data):,} bytes ({len(program.layers)} layers, {consts:,} bytes of "
          f"constants); input {program.input_shape} x {program.input_bits} bits, output "
          f"{program.output_shape}.")


def _cmd_run(args):
    import numpy as np

    data, program = _program_arg(args, "run")
    images = _load_images(FLAGS.input, program)
    outputs, _, executor = _execute(data, images)
    print(f"Ran {len(images)} image(s) with the {executor}: outputs {outputs.shape} float32.")
    if 0 < len(images) <= 10:
        top = outputs.reshape(len(images), -1).argmax(axis=1)
        print("argmax: " + " ".join(str(int(k)) for k in top))
    if FLAGS.output:
        np.save(FLAGS.output, outputs)
        print(f"Wrote {FLAGS.output}.")


def _cmd_profile(args):
    from keras_nna.runtime.cost import estimate_cost, get_profile

    try:
        profile = get_profile(FLAGS.profile)
    except ValueError as err:
        raise CliError(str(err), 2)
    data, program = _program_arg(args, "profile")
    images = _load_images(FLAGS.input, program)
    _, stats, _ = _execute(data, images)
    report = estimate_cost(program, stats, profile)
    print(report.table())
    if FLAGS.json:
        report.save(FLAGS.json)
        print(f"Wrote {FLAGS.json}.")


def _cmd_demo(args):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates = [os.path.join(here, _TUTORIAL), os.path.join(os.getcwd(), _TUTORIAL)]
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
        raise CliError(f"the demo tutorial was not found (looked for {' and '.join(candidates)}). "
                       "It ships with the keras_nna source repository: run keras-nna demo from "
                       "a clone, or run python tutorials/akidanet_quickstart.py there.")
    spec = importlib.util.spec_from_file_location("keras_nna_akidanet_quickstart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        raise CliError(f"{path} has no main(argv) function; expected the quickstart tutorial.")
    if args[:1] == ["--"]:
        args = args[1:]
    saved, sys.argv = sys.argv, ["keras-nna demo", *args]  # argparse shows this as `prog`
    try:
        status = module.main(list(args))
    finally:
        sys.argv = saved
    return int(status or 0)


_HANDLERS = {"export": _cmd_export, "inspect": _cmd_inspect, "run": _cmd_run,
             "profile": _cmd_profile, "demo": _cmd_demo}


def _first_line(err):
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def main(argv):
    """Runs one `keras-nna` command.

    Args:
        argv: The command line, program name first, e.g.
            `["keras-nna", "inspect", "model.nnab"]`. Called directly (not
            through `run`), flags in `argv` are parsed and the others reset
            to their defaults.

    Returns:
        The exit status: 0 on success, 1 on an error, 2 on a usage error.
        The error is printed as one line on stderr.

    Example:

    >>> main(["keras-nna", "inspect", "/nonexistent.nnab"])
    1
    """
    try:
        argv = list(argv)
        if not _under_app:
            FLAGS.unparse_flags()
            try:
                if len(argv) > 1 and argv[1] == "demo":  # the tutorial parses its own arguments
                    FLAGS(argv[:1])
                else:
                    argv = FLAGS(argv)
            except flags.Error as err:
                raise CliError(f"{_first_line(err)}. {_USAGE}", 2)
        if len(argv) < 2:
            raise CliError(f"missing command. {_USAGE}", 2)
        command, args = argv[1], argv[2:]
        if command not in _HANDLERS:
            raise CliError(f"unknown command {command!r}; expected one of "
                           f"{', '.join(COMMANDS)}. {_USAGE}", 2)
        return _HANDLERS[command](args) or 0
    except CliError as err:
        print(f"keras-nna: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        print("keras-nna: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # one line instead of a traceback; set KERAS_NNA_DEBUG=1 for it
        if os.environ.get("KERAS_NNA_DEBUG"):
            raise
        print(f"keras-nna: error: {type(err).__name__}: {_first_line(err)} "
              "(set KERAS_NNA_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def run():
    """Entry point of the `keras-nna` script: `absl.app.run(main)`.

    `keras-nna demo ...` hands its arguments to the tutorial unparsed.

    Raises:
        SystemExit: Always, with `main`'s exit status.
    """
    global _under_app
    if len(sys.argv) > 1 and sys.argv[1] == "demo":
        sys.exit(main(sys.argv))
    FLAGS.unparse_flags()
    _under_app = True
    try:
        app.run(main)
    finally:
        _under_app = False


if __name__ == "__main__":
    run()
