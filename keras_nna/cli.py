"""The `keras-nna` command line: export, inspect, run and profile programs; the demo.

Installed as the `keras-nna` script (also `python -m keras_nna.cli`). The
first argument is the command; `keras-nna --help` lists them and
`keras-nna COMMAND --help` shows a command's flags:

    keras-nna export  --model model.keras --out model.nnab
    keras-nna inspect model.nnab
    keras-nna run     model.nnab --input batch.npy [--output out.npy] [--executor auto]
    keras-nna profile model.nnab --input batch.npy [--profile nna-8core] [--json cost.json]
    keras-nna optimize model.keras --data fashion_mnist --budget events=2500 [--trials 20]
    keras-nna allocate model.keras --data fashion_mnist --budget program_bytes=99000 [--qat-epochs 3]
    keras-nna demo    [--quick] [--tasks faces,fashion_mnist] [--out_dir DIR]
    keras-nna --version

- `export` loads a quantized model (`keras_nna.quantization.quantize_model`,
  saved with `model.save`) and writes its bytecode.
- `inspect` validates a program and prints one row per layer: kind, shapes,
  bits, weights, constant bytes and the dense/sparse kernel encoding. It only
  reads bytes and does not load TensorFlow (well under a second).
- `run` executes a batch (`.npy`, uint8 `[N, H, W, C]`, or one `[H, W, C]`
  image) bit-exactly and prints the output shape and, for up to 10 images,
  the argmax.
- `profile` runs the batch and prints the cost table of
  `keras_nna.runtime.cost` for a hardware profile (`nna-1core`,
  `nna-8core`).
- `optimize` searches for the most accurate model within a budget on a
  profile, starting from a trained float model (`keras_nna.cli_optimize`,
  `keras_nna.optimize`); workers share trials through `--storage`.
- `allocate` chooses weight (and activation) bits per layer within a budget
  (`keras_nna.cli_allocate`, `keras_nna.optimize.allocate_bits`) and writes the
  `QuantizationPolicy` as JSON; `--qat-epochs N` then trains and exports it.
- `demo` is the main job, `keras_nna.demo`: train → quantize → export →
  emulate → report on two offline datasets (~5-10 min on 2 cores; `--quick`
  for a smoke test). Its arguments pass through (`keras-nna demo -- ARGS`
  works too); the report directory is printed at the end.

A program over one of the reader's limits (docs/bytecode.md, "Program limits") is
refused with the limit named; for a trusted program `inspect`, `run` and `profile`
take `--limit NAME=VALUE` (repeatable) to raise it.

`run` and `profile` use the compiled emulator op and fall back to the numpy
reference when the op is unavailable (`--executor` chooses explicitly).

Exit status: 0 on success; 1 on an error, printed as one line
`keras-nna: error: ...` on stderr (set `KERAS_NNA_DEBUG=1` for a traceback);
2 on a usage error (unknown command or flag, missing argument), also one line;
130 when interrupted. TensorFlow's C++ log lines are silenced
(`TF_CPP_MIN_LOG_LEVEL=2` unless already set).

From Python, `main(argv)` runs one command and returns the exit status.

Example:

>>> main(["keras-nna", "frobnicate"])
2
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import sys  # noqa: E402

from keras_nna.cli_args import (  # noqa: E402  (standard library only: no TensorFlow)
    _USAGE,
    COMMANDS,
    CliError,
    build_parser,
    parse_limits,
)

__all__ = ["COMMANDS", "CliError", "main", "run"]

def _existing(path, what, flag=None):
    if not path:
        how = f"--{flag} PATH" if flag else f"a {what} path"
        raise CliError(f"missing {what}: expected {how}. {_USAGE}", 2)
    if os.path.isdir(path):
        raise CliError(f"{what} '{path}' is a directory; expected a file inside it.")
    if not os.path.exists(path):
        raise CliError(f"{what} '{path}' not found (expected an existing file). "
                       "Check the path and the working directory.")
    if not os.path.isfile(path):
        raise CliError(f"{what} '{path}' is not a regular file (a device, FIFO or socket); "
                       "expected a file.")
    return path


def _program_arg(paths, command, limits=None):
    if len(paths) != 1:
        raise CliError(f"'{command}' expects exactly one program path, received "
                       f"{len(paths)}: {paths}. Usage: keras-nna {command} PROGRAM.nnab ...", 2)
    path = _existing(paths[0], "program")
    from keras_nna.export.bytecode import BytecodeError, load_program  # numpy only

    try:
        return load_program(path, limits=limits)
    except (BytecodeError, ValueError) as err:
        text = _first_line(err)
        if "exceeds the limit" in text:
            name = text.split("exceeds the limit ")[1].split(" ")[0]
            raise CliError(f"'{path}' exceeds a program limit: {text.split('. For a')[0]}. For a "
                           f"trusted program raise it with --limit {name}=VALUE.")
        raise CliError(f"'{path}' is not a valid keras_nna program: {text}. "
                       "Re-export it with keras-nna export (format: docs/bytecode.md).")


def _load_images(path, program):
    import numpy as np

    from keras_nna.export.images import check_images

    _existing(path, "input batch", "input")
    try:
        images = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read '{path}' as a .npy array ({_first_line(err)}). Save the "
                       "batch with np.save(path, images_uint8).")
    try:
        return check_images(images, program.input_shape, program.input_bits, allow_single=True,
                            where=f"input batch '{path}': ")
    except ValueError as err:
        raise CliError(str(err))


def _execute(program, images, executor, limits=None):
    """Returns (outputs, stats, executor name)."""
    from keras_nna.runtime.emulator import EXECUTORS, run_program

    if executor not in EXECUTORS:
        raise CliError(f"unknown --executor={executor!r}; expected one of "
                       f"{', '.join(EXECUTORS)}.", 2)
    try:
        return run_program(program, images, executor=executor, limits=limits)
    except RuntimeError as err:
        raise CliError(_first_line(err))


def _check_keras_archive(path):
    """A .keras file is a zip archive: name a truncated/corrupt one (Keras says "File not found")."""
    import zipfile

    if not path.endswith(".keras"):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        bad = str(err)
    if bad:
        raise CliError(f"cannot load Keras model '{path}': it is not a complete .keras archive "
                       f"(zip check failed: {bad}); the file is truncated or corrupt. Save the "
                       "model again with model.save('m.keras').")


def load_keras_model(path, expected):
    """Loads a `.keras` model for a command, naming a corrupt or foreign file in one line."""
    import keras

    import keras_nna.quantization  # noqa: F401  (registers the custom layers)

    _check_keras_archive(path)
    try:
        return keras.models.load_model(path)
    except Exception as err:
        raise CliError(f"cannot load Keras model '{path}': {_first_line(err).rstrip('.')}. "
                       f"Expected {expected}.")


def _cmd_export(args):
    model_path = _existing(args.model, "model", "model")
    if not args.out:
        raise CliError("missing output path: expected --out PROGRAM.nnab.", 2)
    from keras_nna.export import ExportError, export_model

    model = load_keras_model(model_path, "a model saved with model.save('m.keras') after "
                                         "quantize_model")
    try:
        program = export_model(model, args.out)
    except ExportError as err:
        raise CliError(f"cannot export '{model_path}': {err}")
    size = os.path.getsize(args.out)
    print(f"Wrote {args.out}: {size:,} bytes, {len(program.layers)} layers, input "
          f"{program.input_shape}, output {program.output_shape}.")


def _fmt_table(headers, rows, right_from):
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if j >= right_from else c.ljust(w)
                         for j, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(headers))
    return "\n".join([rule, line(headers), rule, *(line(r) for r in rows), rule])


def _cmd_inspect(args):
    import numpy as np

    from keras_nna.export.format import weight_encodings
    from keras_nna.export.program import sources

    program = _program_arg(args.program, "inspect", parse_limits(args.limit))
    data = program.to_bytes()
    rows = []
    encodings = weight_encodings(data)
    producers = sources(program.layers)
    for i, rec in enumerate(program.layers):
        weights = [w for w in (rec.weights, rec.weights2) if w is not None]
        nnz = sum(int(np.count_nonzero(w)) for w in weights)
        n = rec.n_weights
        w_bits = f"{rec.w_bits}/{rec.w2_bits}" if rec.kind == "separable" else str(rec.w_bits or "")
        reads = producers[i][:2] if rec.kind == "add" else producers[i][:1]
        out_bits = f"s{rec.out_bits}" if rec.out_signed else str(rec.out_bits or "raw")
        rows.append([str(i), rec.kind, "+".join("in" if s == 0 else f"#{s - 1}" for s in reads),
                     "x".join(map(str, rec.in_shape)), "x".join(map(str, rec.out_shape)),
                     f"{'s' if rec.in_signed else ''}{rec.in_bits}->{out_bits}",
                     w_bits, f"{n:,}", f"{100 * nnz / n:.1f}%" if n else "", encodings[i],
                     f"{rec.const_bytes:,}"])
    headers = ["#", "Kind", "From", "Input", "Output", "Bits", "W bits", "Weights", "Non-zero",
               "Encoding", "Bytes"]
    print(_fmt_table(headers, rows, right_from=7))
    print("From: the layers read ('in' = the input image); Bits: sN = signed N-bit codes.")
    consts = sum(rec.const_bytes for rec in program.layers)
    print(f"Valid program: {len(data):,} bytes ({len(program.layers)} layers, {consts:,} bytes of "
          f"constants); input {program.input_shape} x {program.input_bits} bits, output "
          f"{program.output_shape}.")


def _cmd_run(args):
    import numpy as np

    program = _program_arg(args.program, "run", parse_limits(args.limit))
    images = _load_images(args.input, program)
    outputs, _, executor = _execute(program, images, args.executor, parse_limits(args.limit))
    print(f"Ran {len(images)} image(s) with the {executor}: outputs {outputs.shape} float32.")
    if 0 < len(images) <= 10:
        top = outputs.reshape(len(images), -1).argmax(axis=1)
        print("argmax: " + " ".join(str(int(k)) for k in top))
    if args.output:
        path = args.output if args.output.endswith(".npy") else args.output + ".npy"
        np.save(path, outputs)  # np.save appends .npy: say the name it really wrote
        print(f"Wrote {path}.")


def _cmd_profile(args):
    from keras_nna.runtime.cost import estimate_cost, get_profile

    try:
        profile = get_profile(args.profile)
    except ValueError as err:
        raise CliError(str(err), 2)
    program = _program_arg(args.program, "profile", parse_limits(args.limit))
    images = _load_images(args.input, program)
    _, stats, _ = _execute(program, images, args.executor, parse_limits(args.limit))
    report = estimate_cost(program, stats, profile)
    print(report.table())
    if args.json:
        report.save(args.json)
        print(f"Wrote {args.json}.")


def _cmd_optimize(args):
    from keras_nna.cli_optimize import run_optimize

    return run_optimize(args)


def _cmd_allocate(args):
    from keras_nna.cli_allocate import run_allocate

    return run_allocate(args)


def _cmd_demo(args):
    from keras_nna import demo

    if args[:1] == ["--"]:
        args = args[1:]
    return demo.main(args, prog="keras-nna demo")


_HANDLERS = {"export": _cmd_export, "inspect": _cmd_inspect, "run": _cmd_run,
             "profile": _cmd_profile, "optimize": _cmd_optimize, "allocate": _cmd_allocate,
             "demo": _cmd_demo}


def _first_line(err):
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _dispatch(argv):
    args = argv[1:]
    if not args:
        raise CliError(f"missing command; expected one of {', '.join(COMMANDS)}. {_USAGE}", 2)
    if not args[0].startswith("-") and args[0] not in COMMANDS:
        raise CliError(f"unknown command {args[0]!r}; expected one of "
                       f"{', '.join(COMMANDS)}. {_USAGE}", 2)
    if args[0] == "demo":  # the demo parses its own arguments
        return _cmd_demo(args[1:])
    parser, sub = build_parser()
    namespace, extra = parser.parse_known_args(args)
    if extra or namespace.command is None:
        where = sub[namespace.command] if namespace.command else parser
        where.error(f"unrecognized arguments: {' '.join(extra)}" if extra else "missing command")
    return _HANDLERS[namespace.command](namespace)


def main(argv):
    """Runs one `keras-nna` command.

    Args:
        argv: The command line, program name first, e.g.
            `["keras-nna", "inspect", "model.nnab"]`.

    Returns:
        The exit status: 0 on success (`--help` and `--version` included),
        1 on an error, 2 on a usage error, 130 when interrupted. An error is
        printed as one line on stderr.

    Example:

    >>> main(["keras-nna", "inspect", "/nonexistent.nnab"])
    1
    >>> main(["keras-nna", "inspect", "--nosuchflag"])
    2
    """
    try:
        return _dispatch(list(argv)) or 0
    except SystemExit as exit_:  # --help / --version: printed by argparse
        return exit_.code if isinstance(exit_.code, int) else 0
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
    """Entry point of the `keras-nna` script: `sys.exit(main(sys.argv))`.

    Raises:
        SystemExit: Always, with `main`'s exit status.
    """
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
