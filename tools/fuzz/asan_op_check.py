"""Runs the nets of build/fuzz/nets through an ASan-built op (see asan_op.sh).

Usage: python tools/fuzz/asan_op_check.py OP_SO [--nets build/fuzz/nets]

Loads OP_SO with `tf.load_op_library`, installs it as the op keras_nna uses,
and checks every program's outputs and statistics (modes auto, event, dense,
the whole image batch through TensorFlow's thread pool) bit-equal to
`run_reference`. Prints a JSON summary; exit status 1 on any difference (a
sanitizer report aborts the process).
"""

import argparse
import glob
import json
import os
import sys

import numpy as np
import tensorflow as tf

from keras_nna.export import read_program, run_reference
from keras_nna.runtime import Emulator, op

__all__ = ["main"]


def main(argv=None):
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("op_so")
    ap.add_argument("--nets", default=os.path.join("build", "fuzz", "nets"))
    args = ap.parse_args(argv)
    with op._lock:  # noqa: SLF001 - a test harness swapping in the instrumented op
        op._module = tf.load_op_library(os.path.abspath(args.op_so))  # noqa: SLF001
    failures, runs, images_total = [], 0, 0
    for path in sorted(glob.glob(os.path.join(args.nets, "*.nnab"))):
        stem = path[:-len(".nnab")]
        with open(stem + ".json") as f:
            meta = json.load(f)
        with open(path, "rb") as f:
            data = f.read()
        images = np.fromfile(stem + ".u8", np.uint8).reshape(meta["n"], *meta["shape"])
        ref_out, ref_stats = run_reference(read_program(data), images)
        emulator = Emulator(data)
        images_total += len(images)
        for mode in ("auto", "event", "dense"):
            out, stats = emulator.run_with_stats(images, mode=mode)
            runs += 1
            same = np.array_equal(np.asarray(out, np.float32).view(np.uint32),
                                  np.asarray(ref_out, np.float32).view(np.uint32))
            if not same or not np.array_equal(stats, ref_stats):
                failures.append(f"{os.path.basename(path)} mode={mode}: differs from run_reference")
    for line in failures:
        print(line)
    print(json.dumps({"programs": runs // 3, "images": images_total, "runs": runs,
                      "failures": len(failures)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
