"""Start-up cost of the package and the CLI, in fresh interpreters (wall time, median of runs).

Measures `python -c "import keras_nna"`, `python -m keras_nna.cli inspect PROGRAM` on a small
exported program, and `python -c "import tensorflow"` for scale, each in a new process, and checks
that neither of the first two loaded TensorFlow. Prints a table and writes JSON.

    python benchmarks/startup_time.py [--runs 5] [--out benchmarks/results/startup_time.json]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _results import default_path, write_result


def _median_seconds(cmd, runs, env):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _program_path(directory):
    from keras_nna.export import LayerRecord, Program

    rec = LayerRecord(kind="maxpool", in_shape=(8, 8, 1), out_shape=(4, 4, 1), in_bits=8,
                      out_bits=8, pool=(2, 2), strides=(2, 2))
    path = os.path.join(directory, "pool.nnab")
    Program((8, 8, 1), 8, [rec]).save(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=default_path("startup_time"))
    args = parser.parse_args(argv)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    with tempfile.TemporaryDirectory() as directory:
        program = _program_path(directory)
        probe = ("import sys, keras_nna; from keras_nna import cli; "
                 f"cli.main(['keras-nna', 'inspect', {program!r}]); "
                 "sys.exit('tensorflow' in sys.modules)")
        subprocess.run([sys.executable, "-c", probe], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # exits 1 if TensorFlow was imported
        rows = {
            "import keras_nna": [sys.executable, "-c", "import keras_nna"],
            "keras-nna inspect": [sys.executable, "-m", "keras_nna.cli", "inspect", program],
            "import tensorflow (scale)": [sys.executable, "-c", "import tensorflow"],
            "python -c pass (scale)": [sys.executable, "-c", "pass"],
        }
        result = {name: round(_median_seconds(cmd, args.runs, env), 3) for name, cmd in rows.items()}
    print(f"| command | median wall time, s ({args.runs} runs) |\n|---|---|")
    for name, seconds in result.items():
        print(f"| {name} | {seconds:.3f} |")
    write_result({"median_seconds": result, "runs": args.runs,
                  "date": time.strftime("%Y-%m-%d")}, args.out)


if __name__ == "__main__":
    main()
