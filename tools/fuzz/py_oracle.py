"""Differential fuzzing of the Python reader, the compiled op and the reference.

For every mutated program (`mutate.py`: structure-aware, CRC recomputed, from
the exported seeds in `build/fuzz/nets`):

* `keras_nna.export.read_program` must accept it or raise `BytecodeError` —
  any other exception is a finding (`reader_error`);
* the op (`keras_nna.runtime.Emulator`) must accept exactly the programs
  `read_program` accepts (`accept_mismatch` otherwise);
* for an accepted program, on three images (random codes, ~5 % dense,
  all zeros) the op's outputs and statistics in modes auto, event and dense
  must be bit-equal to `keras_nna.export.run_reference` (`output_mismatch`).

Programs run in a child process (one worker, restarted after a crash), each
with a time limit: a crash (`crash`, the child died) or a hang (`hang`, over
`--timeout` s) is reported with its input saved under `--findings`. The
parent imports neither TensorFlow nor the op. The child's peak RSS is
recorded (`peak_rss_mb`, TensorFlow's own footprint included).

Programs whose dense work exceeds `--max-work` (sum of dense MACs and
activation elements) are only checked for acceptance, not run (counted as
`not_run_big`): the reference is numpy and would take minutes.

Usage::

    python tools/fuzz/py_oracle.py --count 300 [--seed 0] [--nets build/fuzz/nets]

Prints one JSON summary line; exit status 1 if there is any finding.
"""

import argparse
import glob
import hashlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

__all__ = ["check_program", "main", "run_oracle"]

FINDINGS = ("reader_error", "accept_mismatch", "output_mismatch", "crash", "hang")


def _images(shape, in_bits, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    hi = 1 << in_bits
    dense = rng.integers(0, hi, (1, *shape))
    sparse = rng.integers(0, hi, (1, *shape)) * (rng.random((1, *shape)) < 0.05)
    return np.concatenate([dense, sparse, np.zeros((1, *shape), np.int64)]).astype(np.uint8)


def _work(program):
    import numpy as np

    total = int(np.prod(program.input_shape))
    for rec in program.layers:
        total += rec.dense_macs + int(np.prod(rec.out_shape)) + int(np.prod(rec.in_shape))
    return total


def check_program(data, max_work, seed=0):
    """Checks one program: reader vs op acceptance, op vs reference outputs.

    Args:
        data: Program bytes.
        max_work: Programs with more dense work are not run (see module doc).
        seed: Seed of the random images.

    Returns:
        A dict: `status` ("rejected", "ran", "not_run_big" or a finding name
        from `FINDINGS`) and `detail`.
    """
    import numpy as np
    import tensorflow as tf

    from keras_nna.export import BytecodeError, read_program, run_reference
    from keras_nna.runtime import Emulator

    try:
        program = read_program(data)
        py_error = None
    except BytecodeError as e:
        program, py_error = None, str(e)
    except Exception as e:  # noqa: BLE001 - the finding is that it is not a BytecodeError
        return {"status": "reader_error", "detail": f"{type(e).__name__}: {e}"[:500]}
    try:
        emulator = Emulator(data)
        op_error = None
    except tf.errors.InvalidArgumentError as e:
        emulator, op_error = None, e.message
    if (py_error is None) != (op_error is None):
        return {"status": "accept_mismatch",
                "detail": f"read_program: {py_error or 'accepted'} | op: {op_error or 'accepted'}"[:800]}
    if program is None:
        return {"status": "rejected", "detail": py_error[:200]}
    if _work(program) > max_work:
        return {"status": "not_run_big", "detail": ""}
    images = _images(program.input_shape, program.input_bits, seed)
    ref_out, ref_stats = run_reference(program, images)
    ref_out = np.asarray(ref_out, np.float32)
    for mode in ("auto", "event", "dense"):
        out, stats = emulator.run_with_stats(images, mode=mode)
        out = np.asarray(out, np.float32)
        if out.shape != ref_out.shape or not np.array_equal(out.view(np.uint32), ref_out.view(np.uint32)):
            bad = np.flatnonzero(out.reshape(-1).view(np.uint32) != ref_out.reshape(-1).view(np.uint32)) \
                if out.shape == ref_out.shape else []
            return {"status": "output_mismatch",
                    "detail": f"mode {mode}: outputs differ at {len(bad)} places, first "
                              f"op {out.reshape(-1)[bad[0]] if len(bad) else out.shape} ref "
                              f"{ref_out.reshape(-1)[bad[0]] if len(bad) else ref_out.shape}"}
        if not np.array_equal(np.asarray(stats), np.asarray(ref_stats)):
            return {"status": "output_mismatch", "detail": f"mode {mode}: statistics differ"}
    return {"status": "ran", "detail": ""}


def _worker(max_work, op_so=None):
    """Child: reads program paths on stdin, writes one JSON result per line."""
    import tensorflow as tf

    if op_so:  # an op built from other sources (long_run.sh: the committed ones)
        from keras_nna.runtime import op

        with op._lock:  # noqa: SLF001 - harness swaps in the op under test
            op._module = tf.load_op_library(os.path.abspath(op_so))  # noqa: SLF001

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    print("ready", flush=True)
    for line in sys.stdin:
        path = line.strip()
        with open(path, "rb") as f:
            data = f.read()
        result = check_program(data, max_work, seed=int(hashlib.sha1(data).hexdigest()[:8], 16))
        print(json.dumps(result), flush=True)


class _Child:
    def __init__(self, max_work, op_so=None):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
        extra = ["--op-so", op_so] if op_so else []
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", "--max-work", str(max_work)] + extra,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env=env, cwd=ROOT)
        if self.readline(300) != "ready":
            raise RuntimeError("py_oracle: the worker did not start")

    def readline(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        return self.proc.stdout.readline().strip()

    def peak_rss_mb(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def _save(findings_dir, kind, data, detail):
    os.makedirs(findings_dir, exist_ok=True)
    name = f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
    with open(os.path.join(findings_dir, name + ".nnab"), "wb") as f:
        f.write(data)
    with open(os.path.join(findings_dir, name + ".txt"), "w") as f:
        f.write(detail + "\n")
    return name


def _load_seeds(nets, max_seed_bytes):
    seeds = []
    for path in sorted(glob.glob(os.path.join(nets, "*.nnab"))):
        if os.path.getsize(path) <= max_seed_bytes:
            with open(path, "rb") as f:
                seeds.append(f.read())
    if not seeds:
        raise SystemExit(f"py_oracle: no seed programs in {nets}; run tools/fuzz/make_corpus.py")
    return seeds


def run_oracle(seeds, count, seed=0, timeout=10.0, max_work=2_000_000, findings_dir="build/fuzz/findings",
               time_budget=None, op_so=None):
    """Runs `count` mutated programs through the oracle; returns the summary dict.

    Args:
        seeds: Seed programs (bytes).
        count: Number of mutated programs.
        seed: Mutation seed.
        timeout: Seconds one program may take before it counts as a hang.
        max_work: Dense-work bound above which a program is not run.
        findings_dir: Where inputs of findings are saved.
        time_budget: Optional seconds after which to stop early.
        op_so: Optional path of an op library to test instead of the installed one.

    Returns:
        Counts per status, `peak_rss_mb`, `programs`, `seconds`, `findings`
        (names of saved inputs).
    """
    import mutate

    summary = {k: 0 for k in ("rejected", "ran", "not_run_big") + FINDINGS}
    summary.update(programs=0, peak_rss_mb=0.0, findings=[])
    start = time.time()
    child = _Child(max_work, op_so)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "program.nnab")
        for data in mutate.mutate_many(seeds, count, seed=seed):
            if time_budget is not None and time.time() - start > time_budget:
                break
            with open(path, "wb") as f:
                f.write(data)
            child.proc.stdin.write(path + "\n")
            child.proc.stdin.flush()
            line = child.readline(timeout)
            summary["peak_rss_mb"] = max(summary["peak_rss_mb"], child.peak_rss_mb())
            if not line:
                kind = "hang" if child.proc.poll() is None else "crash"
                detail = f"{kind}: exit status {child.proc.poll()}"
                child.kill()
                child = _Child(max_work, op_so)
                result = {"status": kind, "detail": detail}
            else:
                result = json.loads(line)
            summary[result["status"]] += 1
            summary["programs"] += 1
            if result["status"] in FINDINGS:
                summary["findings"].append(_save(findings_dir, result["status"], data, result["detail"]))
    child.kill()
    summary["seconds"] = round(time.time() - start, 1)
    summary["peak_rss_mb"] = round(summary["peak_rss_mb"], 1)
    return summary


def main(argv=None):
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nets", default=os.path.join(ROOT, "build", "fuzz", "nets"))
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--max-work", type=int, default=2_000_000)
    ap.add_argument("--max-seed-bytes", type=int, default=65536)
    ap.add_argument("--time-budget", type=float, default=None)
    ap.add_argument("--op-so", default=None, help="op library to test (default: the installed op)")
    ap.add_argument("--findings", default=os.path.join(ROOT, "build", "fuzz", "findings"))
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args.max_work, args.op_so)
    seeds = _load_seeds(args.nets, args.max_seed_bytes)
    summary = run_oracle(seeds, args.count, args.seed, args.timeout, args.max_work, args.findings,
                         args.time_budget, args.op_so)
    print(json.dumps(summary))
    return 1 if any(summary[k] for k in FINDINGS) else 0


if __name__ == "__main__":
    sys.exit(main())
