"""Runs the op's kernels under AddressSanitizer/UBSan over real programs.

For every `<name>.nnab` in `--nets` (written by `make_corpus.py`: the model
zoo of the bit-exact tests, the wide-layer SIMD net, AkidaNet 0.25 at 32x32
and 96x96, hand-built programs) with its images `<name>.u8`, runs
`build/fuzz/run_program_asan` (the kernels compiled with
`-fsanitize=address,undefined -fno-sanitize-recover=undefined`, no
TensorFlow) with the portable kernels and the prepared AVX-512 VNNI layouts,
each in modes event, dense and auto, and checks outputs and statistics
bit-equal to `keras_nna.export.run_reference`. Any sanitizer report makes the
runner exit non-zero and is printed.

Usage::

    python tools/fuzz/asan_kernels.py [--nets build/fuzz/nets] [--binary build/fuzz/run_program_asan]

Prints one line per (program, configuration) that fails and a JSON summary;
exit status 1 on any failure.
"""

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

__all__ = ["main", "run_net"]


def run_net(binary, path, tmp):
    """Runs one program in six kernel configurations; returns a list of failures."""
    from keras_nna.export import read_program, run_reference

    stem = path[:-len(".nnab")]
    with open(stem + ".json") as f:
        meta = json.load(f)
    with open(path, "rb") as f:
        program = read_program(f.read())
    images = np.fromfile(stem + ".u8", np.uint8).reshape(meta["n"], *meta["shape"])
    ref_out, ref_stats = run_reference(program, images)
    ref_out = np.asarray(ref_out, np.float32).reshape(meta["n"], -1)
    ref_stats = np.asarray(ref_stats).reshape(meta["n"], -1)
    failures = []
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    for simd in ("0", "1"):
        for mode in ("event", "dense", "auto"):
            prefix = os.path.join(tmp, "out")
            r = subprocess.run([binary, path, stem + ".u8", str(meta["n"]), mode, simd, prefix],
                               capture_output=True, text=True, env=env, check=False)
            where = f"{os.path.basename(path)} simd={simd} mode={mode}"
            if r.returncode != 0 or r.stderr.strip():
                failures.append(f"{where}: exit {r.returncode}\n{r.stderr[-3000:]}")
                continue
            out = np.fromfile(prefix + ".f32", np.float32).reshape(meta["n"], -1)
            stats = np.fromfile(prefix + ".i64", np.int64).reshape(meta["n"], -1)
            if not np.array_equal(out.view(np.uint32), ref_out.view(np.uint32)):
                failures.append(f"{where}: outputs differ from run_reference")
            if not np.array_equal(stats, ref_stats):
                failures.append(f"{where}: statistics differ from run_reference")
    return failures


def main(argv=None):
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", default=os.path.join(ROOT, "build", "fuzz", "nets"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "fuzz", "run_program_asan"))
    args = ap.parse_args(argv)
    paths = sorted(glob.glob(os.path.join(args.nets, "*.nnab")))
    if not paths:
        raise SystemExit(f"asan_kernels: no programs in {args.nets}; run tools/fuzz/make_corpus.py")
    failures, images = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            failures += run_net(args.binary, path, tmp)
            with open(path[:-len(".nnab")] + ".json") as f:
                images += json.load(f)["n"]
    for line in failures:
        print(line)
    print(json.dumps({"programs": len(paths), "images": images, "runs": len(paths) * 6,
                      "failures": len(failures)}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
