"""Mixed precision to a budget and 1-bit weights, against uniform 4-bit (Fashion-MNIST 60k/10k).

Model: AkidaNet alpha 0.25 at the native 28×28×1 input. The float model is
trained on the first 55,000 training images (the last 5,000 are the validation
images `allocate_bits` measures sensitivity on; the test set is never seen until
the end). Then, per configuration and seed, `quantize_model` + the same QAT
recipe, and the quantized model is exported and run on the emulator over all
10,000 test images (accuracy, bit-exactness, program bytes, events, energy):

- `uniform4`: 4-bit weights (8-bit first layer), 4-bit activations: the baseline.
- `mixed_same_bytes`: `allocate_bits` with weights from {1, 2, 4, 8} under
  `program_bytes` = the baseline's program size (before QAT).
- `mixed_75pct`: the same under 75 % of the baseline's program size.
- `binary`: 1-bit weights everywhere but the first (8-bit) and last (4-bit) layer.

Targets (issue 15): mixed_same_bytes ≥ +0.5 point over uniform4, or mixed_75pct
within ±0.2 point; binary within 3 points of uniform4 at ≤ 40 % of its program
bytes and bit-exact on every test image; allocation ≤ 5 min.

    python benchmarks/mixed_precision.py                      # ~35 min on 2 cores
    python benchmarks/mixed_precision.py --limit 2000 --float_epochs 1 --qat_epochs 1 --seeds 1

Prints a table and writes benchmarks/results/mixed_precision.json.
"""

import os
import statistics
import time

from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_integer("float_epochs", 8, "Float training epochs.")
flags.DEFINE_integer("qat_epochs", 3, "QAT epochs (every configuration).")
flags.DEFINE_integer("seeds", 2, "QAT seeds per configuration.")
flags.DEFINE_integer("limit", None, "Use only this many training images (smoke runs).")
flags.DEFINE_string("float_weights", "/tmp/mixed_precision_float.weights.h5",
                    "Cache of the float model's weights (reused when it exists).")
flags.DEFINE_string("out", default_path("mixed_precision"), "JSON output path.")
FLAGS = flags.FLAGS
STARTED = time.monotonic()


def log(text):
    print(f"[{time.monotonic() - STARTED:7.1f} s] {text}", flush=True)


def _float_model(x, y):
    import keras

    from keras_nna.models import AkidaNet

    keras.utils.set_random_seed(0)
    model = AkidaNet(input_shape=x.shape[1:], alpha=0.25, classes=10, bn_momentum=0.9)
    cache = FLAGS.float_weights if not FLAGS.limit else None
    if cache and os.path.exists(cache):
        model.load_weights(cache)
        log(f"float weights loaded from {cache}")
        return model
    steps = FLAGS.float_epochs * -(-len(x) // 128)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, batch_size=128, epochs=FLAGS.float_epochs, verbose=2)
    if cache:
        model.save_weights(cache)
    return model


def _qat(model, policy, x, y, seed):
    import keras

    from keras_nna.quantization import quantize_model

    keras.utils.set_random_seed(seed)
    qmodel = quantize_model(model, policy)
    steps = max(FLAGS.qat_epochs, 1) * -(-len(x) // 128)
    qmodel.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-4, steps)),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    if FLAGS.qat_epochs:
        qmodel.fit(x.astype("float32"), y, batch_size=128, epochs=FLAGS.qat_epochs, verbose=2)
    return qmodel


def _bits(policy, qmodel):
    from keras_nna.quantization import QuantizeWrapper

    return {layer.name: layer.weight_bits for layer in qmodel.layers
            if isinstance(layer, QuantizeWrapper)}


def _row(name, seed, policy, qmodel, xt, yt):
    import numpy as np

    from keras_nna import deploy

    acc = float(np.mean(qmodel.predict(xt.astype("float32"), batch_size=500, verbose=0)
                        .argmax(-1) == yt))
    result = deploy(qmodel, xt, yt, profile="nna-1core")
    total = result.cost.total
    return {"config": name, "seed": seed, "accuracy": round(acc, 4),
            "emulator_accuracy": round(float(result.accuracy), 4),
            "bit_exact": bool(result.bit_exact), "images": int(result.images),
            "program_bytes": int(result.program_bytes),
            "events": round(float(result.events_per_image), 1),
            "energy_uj": round(total["energy_j"] * 1e6, 4),
            "weight_bits": _bits(policy, qmodel)}


def _summary(rows, name):
    accs = [r["accuracy"] for r in rows if r["config"] == name]
    size = [r["program_bytes"] for r in rows if r["config"] == name]
    return {"median_accuracy": statistics.median(accs), "spread": round(max(accs) - min(accs), 4),
            "median_program_bytes": statistics.median(size)}


def _targets(summary, allocation_seconds, rows):
    base = summary["uniform4"]
    same, less, binary = summary["mixed_same_bytes"], summary["mixed_75pct"], summary["binary"]
    gain = 100 * (same["median_accuracy"] - base["median_accuracy"])
    diff75 = 100 * (less["median_accuracy"] - base["median_accuracy"])
    drop1 = 100 * (base["median_accuracy"] - binary["median_accuracy"])
    ratio1 = binary["median_program_bytes"] / base["median_program_bytes"]
    ratio75 = less["median_program_bytes"] / base["median_program_bytes"]
    return {
        "mixed_same_bytes_gain_points": round(gain, 2),
        "mixed_75pct_bytes_ratio": round(ratio75, 3),
        "mixed_75pct_accuracy_diff_points": round(diff75, 2),
        "mixed_target_met": bool(gain >= 0.5 or (ratio75 <= 0.75 and diff75 >= -0.2)),
        "binary_drop_points": round(drop1, 2),
        "binary_bytes_ratio": round(ratio1, 3),
        "binary_target_met": bool(drop1 <= 3.0 and ratio1 <= 0.40 and all(
            r["bit_exact"] for r in rows if r["config"] == "binary")),
        "allocation_seconds": [round(s, 1) for s in allocation_seconds],
        "allocation_target_met": bool(max(allocation_seconds) <= 300),
    }


def main(argv):  # long: the whole benchmark, step by step
    del argv
    from keras_nna.datasets import load_fashion_mnist
    from keras_nna.optimize import Budget, allocate_bits, measure_cost
    from keras_nna.quantization import QuantizationPolicy, quantize_model

    (x, y), (xt, yt) = load_fashion_mnist(limit_train=FLAGS.limit,
                                          limit_test=FLAGS.limit and max(FLAGS.limit // 4, 500))
    n_val = len(x) // 12
    x, y, xv, yv = x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:]
    log(f"data: {len(x)} train, {len(xv)} validation (allocation), {len(xt)} test")
    model = _float_model(x, y)
    base_policy = QuantizationPolicy()
    base_bytes = measure_cost(quantize_model(model, base_policy), xt[:16]).costs["program_bytes"]
    log(f"uniform 4-bit program: {base_bytes:,.0f} bytes")
    policies, allocations, seconds = {"uniform4": base_policy}, {}, []
    for name, limit in (("mixed_same_bytes", base_bytes), ("mixed_75pct", 0.75 * base_bytes)):
        alloc = allocate_bits(model, (xv, yv), Budget("nna-1core", program_bytes=limit),
                              policy=base_policy, weight_bits=(1, 2, 4, 8))
        seconds.append(alloc.seconds)
        policies[name], allocations[name] = alloc.policy, alloc.to_dict()
        log(f"{name}: {alloc.choice()} in {alloc.seconds:.1f} s")
    policies["binary"] = QuantizationPolicy(weight_bits=1, overrides={"classifier": {"weight_bits": 4}})
    rows = []
    for name, policy in policies.items():
        for seed in range(FLAGS.seeds):
            qmodel = _qat(model, policy, x, y, seed)
            rows.append(_row(name, seed, policy, qmodel, xt, yt))
            log(f"{name} seed {seed}: " + ", ".join(f"{k} {v}" for k, v in rows[-1].items()
                                                     if k not in ("config", "seed", "weight_bits")))
    summary = {name: _summary(rows, name) for name in policies}
    targets = _targets(summary, seconds, rows)
    print("\n| config | median accuracy | spread | median program bytes | bytes vs uniform4 |")
    print("|---|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['median_accuracy']:.4f} | {s['spread']:.4f} | "
              f"{s['median_program_bytes']:,.0f} | "
              f"{s['median_program_bytes'] / summary['uniform4']['median_program_bytes']:.3f} |")
    print("\n" + "\n".join(f"{k}: {v}" for k, v in targets.items()))
    write_result({"model": "AkidaNet alpha=0.25 input=(28, 28, 1) classes=10",
                  "train_images": len(x), "validation_images": len(xv), "test_images": len(xt),
                  "float_epochs": FLAGS.float_epochs, "qat_epochs": FLAGS.qat_epochs,
                  "seeds": FLAGS.seeds, "rows": rows, "summary": summary, "targets": targets,
                  "allocations": allocations, "seconds": round(time.monotonic() - STARTED, 1),
                  "command": "python benchmarks/mixed_precision.py", "date": time.strftime("%Y-%m-%d")},
                 FLAGS.out)


if __name__ == "__main__":
    app.run(main)
