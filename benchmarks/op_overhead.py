"""Fixed cost of a batch-1 emulator call, over the kernels themselves (1 thread).

Three programs: a one-layer 2x2 max pool (kernel time ~0, so a call's time is
all overhead), AkidaNet alpha 0.25 at 96x96x3 (quantized, exported; the
weights are untrained, which does not change the kernels' work) and one
8-bit dense layer 1024 -> 2048 (a 2 MB program: a cache that compared the
program's bytes on every call would show here). For each,
batch-1 calls through every entry point, medians of many calls taken in
interleaved rounds:

- ``kernels``: the op at batch 64 with tensor inputs, per image (the kernels
  themselves, with the fixed cost spread over 64 images);
- ``raw op``: the loaded op with a prebuilt program tensor and image tensor
  (TensorFlow's eager dispatch plus the op's own fixed cost);
- ``nna_run(bytes, numpy)``, ``Emulator.run(numpy)``,
  ``Emulator.run_with_stats(numpy)``, ``Emulator.run(eager tensor)``;
- ``tf.function(Emulator.run)``, and an empty ``tf.function`` (identity) on
  the same input: TensorFlow's own cost of calling a function.

Overhead = median - kernels (for the tf.function row: median - kernels - the
empty tf.function's median). For the 2 MB program it also holds a memory
effect, not work: back-to-back raw calls keep the weights in the L2 cache, and
any Python between calls (even 2 µs of unrelated work) makes the next call
~13 µs slower here.

    python benchmarks/op_overhead.py [--rounds 7] [--calls 300]

Prints a table and writes benchmarks/results/op_overhead.json.
"""

import statistics
import time

from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_integer("rounds", 7, "Interleaved rounds (every entry point once per round).")
flags.DEFINE_integer("calls", 300, "Timed calls per entry point and round (tiny program; "
                     "the others use a quarter).")
flags.DEFINE_string("out", default_path("op_overhead"), "JSON output path.")
FLAGS = flags.FLAGS


def _programs():
    """(name, program bytes, 64 images) for the three programs."""
    import keras
    import numpy as np

    from keras_nna.export import LayerRecord, Program, export_model, write_program
    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model

    rng = np.random.default_rng(0)
    pool = LayerRecord(kind="maxpool", in_shape=(2, 2, 1), out_shape=(1, 1, 1), in_bits=8,
                       out_bits=8, pool=(2, 2), strides=(2, 2))
    tiny = write_program(Program((2, 2, 1), 8, [pool]))
    keras.utils.set_random_seed(0)
    qmodel = quantize_model(AkidaNet(input_shape=(96, 96, 3), alpha=0.25, classes=2,
                                     bn_momentum=0.9))
    images = rng.integers(0, 256, (64, 96, 96, 3)).astype(np.uint8)
    qmodel(images[:2].astype("float32"), training=True)  # builds and sets activation ranges
    akida = export_model(qmodel).to_bytes()
    dense = LayerRecord(kind="dense", in_shape=(1, 1, 1024), out_shape=(1, 1, 2048), in_bits=8,
                        out_bits=0, w_bits=8, weights=rng.integers(-127, 128, (1024, 2048)),
                        m=np.full(2048, 1 << 14), n=np.zeros(2048, np.int64), sh=np.full(2048, 24))
    wide = write_program(Program((1, 1, 1024), 8, [dense]))
    return [("maxpool 2x2 (1 layer)", tiny, rng.integers(0, 256, (64, 2, 2, 1)).astype(np.uint8)),
            ("AkidaNet 0.25 96x96x3", akida, images),
            ("dense 1024->2048 8-bit", wide, rng.integers(0, 256, (64, 1, 1, 1024)).astype(np.uint8))]


def _entry_points(data, images):
    """name -> zero-argument callable, each one batch-1 call (batch 64 for `kernels`)."""
    import tensorflow as tf

    from keras_nna.runtime import Emulator
    from keras_nna.runtime.op import load_op_library, nna_run

    op = load_op_library().keras_nna_run
    emu = Emulator(data)
    one, program_t = images[:1], tf.constant(data)
    one_t, batch_t = tf.constant(one), tf.constant(images)
    run_fn, empty_fn = tf.function(emu.run), tf.function(tf.identity)
    return {
        "kernels": lambda: op(program=program_t, images=batch_t),
        "raw op": lambda: op(program=program_t, images=one_t),
        "nna_run(bytes, numpy)": lambda: nna_run(data, one),
        "Emulator.run(numpy)": lambda: emu.run(one),
        "Emulator.run_with_stats(numpy)": lambda: emu.run_with_stats(one),
        "Emulator.run(eager tensor)": lambda: emu.run(one_t),
        "tf.function(Emulator.run)": lambda: run_fn(one_t),
        "empty tf.function": lambda: empty_fn(one_t),
    }


def _medians_us(fns, rounds, calls):
    """Median microseconds per call of each callable, over interleaved rounds."""
    samples = {name: [] for name in fns}
    for fn in fns.values():  # warm-up: tracing, caches
        for _ in range(20):
            fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            n = max(calls // 16, 5) if name == "kernels" else calls
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    return {name: 1e6 * statistics.median(s) for name, s in samples.items()}


def main(argv):
    del argv
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rows = []
    for name, data, images in _programs():
        calls = FLAGS.calls if len(data) < 1000 else max(FLAGS.calls // 4, 20)
        med = _medians_us(_entry_points(data, images), FLAGS.rounds, calls)
        kernels = med.pop("kernels") / len(images)
        empty = med.pop("empty tf.function")
        for entry, us in med.items():
            base = kernels + (empty if entry.startswith("tf.function") else 0.0)
            rows.append({"program": name, "program_bytes": len(data), "entry": entry,
                         "median_us": round(us, 1), "kernels_us": round(kernels, 1),
                         "overhead_us": round(us - base, 1)})
        rows.append({"program": name, "program_bytes": len(data), "entry": "empty tf.function",
                     "median_us": round(empty, 1), "kernels_us": 0.0, "overhead_us": round(empty, 1)})
    print("| program | entry (batch 1) | median µs | kernels µs | overhead µs |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['program']} | {r['entry']} | {r['median_us']:.1f} | {r['kernels_us']:.1f} | "
              f"{r['overhead_us']:.1f} |")
    print("overhead = median - kernels (batch-64 time per image); tf.function rows also minus the "
          "empty tf.function (TensorFlow's own call cost)")
    write_result({"rows": rows, "threads": 1, "rounds": FLAGS.rounds, "calls": FLAGS.calls,
                  "tensorflow": tf.__version__, "date": time.strftime("%Y-%m-%d")}, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
