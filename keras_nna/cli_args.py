"""The `keras-nna` command line's arguments: commands, flags, usage errors (see `keras_nna.cli`).

Example:

>>> parse_limits(["max_work=1_000"])
{'max_work': 1000}
"""

import argparse

__all__ = ["COMMANDS", "CliError", "build_parser", "parse_limits"]

COMMANDS = ("export", "inspect", "run", "profile", "optimize", "allocate", "demo")
"""The sub-commands, in the order `--help` lists them."""

_SUMMARIES = {
    "export": "write the bytecode of a quantized Keras model (.keras -> .nnab)",
    "inspect": "validate a program and print one row per layer",
    "run": "run a batch of uint8 images on a program, bit-exactly",
    "profile": "run a batch and print the cost per inference on a hardware profile",
    "optimize": "search for the best accuracy within a budget (energy, time, events, bytes)",
    "allocate": "choose bits per layer within a budget (mixed precision), then optionally QAT",
    "demo": "the main job: train, quantize, export, emulate, report (~5-10 min)",
}
_USAGES = {
    "export": "keras-nna export --model MODEL.keras --out PROGRAM.nnab",
    "inspect": "keras-nna inspect PROGRAM.nnab [--limit NAME=VALUE]",
    "run": "keras-nna run PROGRAM.nnab --input BATCH.npy [--output OUT.npy] [--executor E]",
    "profile": "keras-nna profile PROGRAM.nnab --input BATCH.npy [--profile NAME] "
               "[--json COST.json] [--executor E]",
    "optimize": "keras-nna optimize MODEL.keras --data NAME --budget NAME=VALUE [--profile P] "
                "[--trials N] [--storage URL --study NAME] [--out DIR]",
    "allocate": "keras-nna allocate MODEL.keras --data NAME --budget NAME=VALUE "
                "[--weight-bits 1,2,4,8] [--activation-bits 2,4,8] [--qat-epochs N] [--out DIR]",
    "demo": "keras-nna demo [--quick] [--tasks TASKS] [--out_dir DIR]",
}
_USAGE = "See keras-nna --help and keras-nna COMMAND --help."


class CliError(Exception):
    """A user error: printed as one line, exit status `code`."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def parse_limits(pairs):
    """`--limit NAME=VALUE` flags as the `limits=` dict of the readers (None without any)."""
    if not pairs:
        return None
    limits = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            if not sep:
                raise ValueError
            limits[name.strip()] = int(value.replace("_", ""))
        except ValueError:
            raise CliError(f"--limit expects NAME=INTEGER (e.g. --limit max_work=68719476736), "
                           f"received {pair!r}.", 2)
    from keras_nna.export.limits import resolve_limits

    try:
        resolve_limits(limits)
    except ValueError as err:
        raise CliError(f"--limit: {err}", 2)
    return limits


class _Parser(argparse.ArgumentParser):
    """Raises usage errors as `CliError` (one line, status 2) instead of exiting."""

    def error(self, message):
        raise CliError(f"{message}. See {self.prog} --help.", 2)


def _add_batch_flags(parser, output):
    parser.add_argument("--input", metavar="BATCH.npy",
                        help="uint8 images [N, H, W, C] (or one [H, W, C] image) in a .npy file")
    if output:
        parser.add_argument("--output", metavar="OUT.npy", help="write the float32 outputs here")
    parser.add_argument("--executor", default="auto", metavar="E",
                        help="auto (the emulator op, else the numpy reference), emulator or "
                             "reference (default: auto)")


def build_parser():
    from keras_nna import __version__

    listing = "\n".join(f"  {name:<9} {_SUMMARIES[name]}" for name in COMMANDS)
    parser = _Parser(prog="keras-nna", usage="keras-nna [-h] [--version] COMMAND [ARGS]",
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description="Export, inspect, run and profile keras_nna programs (bytecode "
                     f"for the event-based NNA); run the demo.\n\ncommands:\n{listing}",
                     epilog="Run keras-nna COMMAND --help for a command's flags.")
    parser.add_argument("--version", action="version", version=f"keras-nna {__version__}")
    commands = parser.add_subparsers(dest="command", help=argparse.SUPPRESS)
    sub = {name: commands.add_parser(name, prog=f"keras-nna {name}", usage=_USAGES[name],
                                     description=_SUMMARIES[name]) for name in COMMANDS}
    sub["export"].add_argument("--model", metavar="MODEL.keras",
                               help="the quantized Keras model (saved with model.save)")
    sub["export"].add_argument("--out", metavar="PROGRAM.nnab", help="the bytecode to write")
    for name in ("inspect", "run", "profile"):
        sub[name].add_argument("program", nargs="*", metavar="PROGRAM.nnab",
                               help="an exported program")
        sub[name].add_argument("--limit", action="append", metavar="NAME=VALUE",
                               help="raise a program limit for a trusted program: max_work, "
                                    "max_activation_bytes or max_constant_bytes "
                                    "(docs/bytecode.md, \"Program limits\"); repeatable")
    _add_batch_flags(sub["run"], output=True)
    _add_batch_flags(sub["profile"], output=False)
    sub["profile"].add_argument("--profile", default="nna-1core", metavar="NAME",
                                help="hardware profile: nna-1core or nna-8core "
                                     "(default: nna-1core)")
    sub["profile"].add_argument("--json", metavar="COST.json",
                                help="also write the cost report as JSON")
    sub["demo"].add_argument("args", nargs="*", help="see keras-nna demo --help")
    _add_optimize_flags(sub["optimize"])
    _add_allocate_flags(sub["allocate"])
    return parser, sub


def _add_model_data_budget_flags(parser, model_help):
    """MODEL.keras, --data, --budget and --profile: shared by optimize and allocate."""
    add = parser.add_argument
    add("model", nargs="?", metavar="MODEL.keras", help=model_help)
    add("--data", metavar="NAME", help="fashion_mnist, digits, faces or a .npz file with x_train, "
        "y_train, x_test, y_test (images are resized to the model's input)")
    add("--budget", action="append", default=[], metavar="NAME=VALUE", help="a limit per inference: "
        "energy_uj, time_us, events, dram_bytes or program_bytes; repeatable")
    add("--profile", default="nna-1core", metavar="NAME", help="hardware profile (default: nna-1core)")
    return add


def _add_allocate_flags(parser):
    add = _add_model_data_budget_flags(parser, "the trained float Keras model")
    add("--weight-bits", default="1,2,4,8", metavar="B,B", help="candidate weight widths "
        "(default: 1,2,4,8)")
    add("--activation-bits", metavar="B,B", help="candidate activation widths, e.g. 2,4,8 "
        "(default: keep the policy's)")
    add("--first-layer", action="store_true", help="also allocate the first layer's weights "
        "(default: it keeps 8 bits)")
    add("--val-images", type=int, default=1000, metavar="N", help="held-out training images for "
        "the sensitivity (default: 1000)")
    add("--qat-epochs", type=int, default=0, metavar="N", help="then quantize with the chosen "
        "policy and fine-tune N epochs (default: 0)")
    add("--out", default="allocate", metavar="DIR", help="output folder (default: allocate)")


def _add_optimize_flags(parser):
    add = _add_model_data_budget_flags(parser, "the trained float Keras model to start from")
    add("--objective", metavar="NAME", help="cost to minimise next to accuracy (default: the first "
        "budget limit)")
    add("--trials", type=int, default=20, metavar="N", help="trials in the study, all workers "
        "together (default: 20)")
    add("--epochs", type=int, default=2, metavar="N", help="float epochs per trial (default: 2)")
    add("--qat-epochs", type=int, default=1, metavar="N", help="QAT epochs per trial (default: 1)")
    add("--train-images", type=int, metavar="N", help="train trials on the first N images only")
    add("--val-images", type=int, default=1000, metavar="N", help="validation images (default: 1000)")
    add("--final-epochs", type=int, default=0, metavar="N", help="then train the best point within "
        "the budget with N float epochs on all data (default: 0, no final training)")
    add("--storage", metavar="URL", help="shared study storage: study.db (SQLite), study.log "
        "(journal) or a database URL; start the same command on N machines to share the trials")
    add("--study", default="keras_nna", metavar="NAME", help="study name (default: keras_nna)")
    add("--out", default="optimize", metavar="DIR", help="output folder (default: optimize)")
    add("--seed", type=int, default=0, help="seed (default: 0)")
