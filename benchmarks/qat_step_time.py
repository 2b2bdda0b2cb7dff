"""QAT training-step time vs plain `fit` of the same model, side by side.

Builds AkidaNet (alpha 0.25, 96×96×3, 2 classes), makes a quantized copy
with `quantize_model` (4-bit, 8-bit first layer) after two float steps (so
BatchNorm has trained statistics and QAT folds it) and times `fit` on the same
batches, alternating float and QAT rounds so machine noise hits both alike.
Reports the median seconds per step and the median of per-round ratios.

    python benchmarks/qat_step_time.py [--rounds 7 --steps 10 --batch_size 32]

Prints a table and writes benchmarks/results/qat_step_time.json.
"""

import statistics
import time

from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_integer("rounds", 7, "Alternating measurement rounds.")
flags.DEFINE_integer("steps", 10, "Training steps per round.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_float("alpha", 0.25, "AkidaNet width.")
flags.DEFINE_integer("size", 96, "Input height and width.")
flags.DEFINE_string("out", default_path("qat_step_time"),
                    "JSON output path.")
FLAGS = flags.FLAGS


def _fit_seconds(model, x, y, batch_size):
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
    return time.perf_counter() - t0


def main(argv):
    del argv
    import keras
    import numpy as np

    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model

    keras.utils.set_random_seed(0)
    shape = (FLAGS.size, FLAGS.size, 3)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (FLAGS.steps * FLAGS.batch_size, *shape)).astype("float32")
    y = rng.integers(0, 2, len(x))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fmodel = AkidaNet(input_shape=shape, alpha=FLAGS.alpha, classes=2, bn_momentum=0.9)
    # QAT fine-tunes a trained float model: a few float steps give BatchNorm trained moving
    # statistics, so quantize_model's blocks fold it (batch_norm_training="auto").
    fmodel.compile(keras.optimizers.Adam(1e-3), loss)
    _fit_seconds(fmodel, x[: 2 * FLAGS.batch_size], y[: 2 * FLAGS.batch_size], FLAGS.batch_size)
    qmodel = quantize_model(fmodel)
    models = {"float": fmodel, "qat": qmodel}
    for model in models.values():
        model.compile(keras.optimizers.Adam(1e-3), loss)
        _fit_seconds(model, x[: 2 * FLAGS.batch_size], y[: 2 * FLAGS.batch_size], FLAGS.batch_size)
    times = {name: [] for name in models}
    for r in range(FLAGS.rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            times[name].append(_fit_seconds(models[name], x, y, FLAGS.batch_size) / FLAGS.steps)
    ratios = [q / f for q, f in zip(times["qat"], times["float"])]
    result = {
        "model": f"AkidaNet alpha={FLAGS.alpha} input={shape} classes=2",
        "batch_size": FLAGS.batch_size,
        "rounds": FLAGS.rounds,
        "steps_per_round": FLAGS.steps,
        "float_s_per_step_median": round(statistics.median(times["float"]), 4),
        "qat_s_per_step_median": round(statistics.median(times["qat"]), 4),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios": [round(r, 3) for r in ratios],
        "date": time.strftime("%Y-%m-%d"),
    }
    print("| model | batch | float s/step | QAT s/step | QAT/float (median of rounds) |")
    print("|---|---|---|---|---|")
    print(f"| {result['model']} | {FLAGS.batch_size} | {result['float_s_per_step_median']} | "
          f"{result['qat_s_per_step_median']} | {result['ratio_median']} |")
    write_result(result, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
