"""MLPerf Tiny reference models: float vs 4-bit QAT, exported and emulated bit-exact.

Runs `keras_nna.models.ResNet8`, `DSCNN` and `DenseAutoencoder` through
float training → `quantize_model` (default policy: 4-bit weights and
activations, 8-bit first layer) → QAT fine-tune → `keras_nna.deploy`
(export + emulator op, bit-exactness vs `predict`, nna-1core cost).
Target (issue): quantized metric within 1.5 points of float.

Nothing is downloaded, so the MLPerf Tiny data sets are replaced by offline
stand-ins built from Fashion-MNIST (`/usr/share/datasets/fashion-mnist`):

- ResNet-8 (CIFAR-10 stand-in): Fashion-MNIST resized to 32×32, tiled to RGB.
- DS-CNN (keyword-spotting stand-in, **shape only**: no audio offline):
  Fashion-MNIST resized to a 49×10×1 map, the size of the 49×10 MFCC input,
  10 classes.
- DenseAutoencoder (anomaly-detection stand-in): Fashion-MNIST resized to
  20×32 (640 values) and reshaped to (5, 128, 1); trained on one "normal"
  class only (class 0, T-shirt/top) with an MSE loss on `x / 255` targets;
  anomaly score = reconstruction MSE; metric = ROC AUC (normal test class vs
  all other test classes) in points (×100).

If a model misses the target with the default policy, ONE fix is tried
(`--fix`: `a8` = 8-bit activations, `QuantizationPolicy(activation_bits=8)`,
from the same float model, same QAT epochs; or `more_qat` = 3× the QAT
epochs) and both rows are reported. Nothing is tuned on the test set.

    python benchmarks/mlperf_tiny.py            # full run (~20-25 min on 2 shared cores)
    python benchmarks/mlperf_tiny.py --quick    # smoke run: tiny data, 1 epoch

Prints a markdown table and writes benchmarks/results/mlperf_tiny.json
(`--quick` writes /tmp/mlperf_tiny_quick.json unless `--out` is given).
"""

import os
import subprocess
import sys
import time

import numpy as np
from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_bool("quick", False, "Tiny data and 1 epoch (smoke run).")
flags.DEFINE_integer("train", 20000, "Training images (classifiers).")
flags.DEFINE_integer("test", 5000, "Test images.")
flags.DEFINE_integer("deploy_images", 1000, "Test images run on the emulator.")
flags.DEFINE_integer("float_epochs", 8, "Float epochs (classifiers).")
flags.DEFINE_integer("qat_epochs", 2, "QAT epochs (classifiers).")
flags.DEFINE_integer("ae_float_epochs", 30, "Float epochs (autoencoder).")
flags.DEFINE_integer("ae_qat_epochs", 6, "QAT epochs (autoencoder).")
flags.DEFINE_integer("normal_class", 0, "Fashion-MNIST class used as 'normal' (autoencoder).")
flags.DEFINE_enum("fix", "a8", ["a8", "more_qat", "none"], "The one fix tried on a missed target.")
flags.DEFINE_list("models", ["resnet8", "dscnn", "autoencoder"], "Models to run.")
flags.DEFINE_float("target_points", 1.5, "Allowed float - quantized drop, in points.")
flags.DEFINE_string("out", default_path("mlperf_tiny"), "JSON output path.")
FLAGS = flags.FLAGS

T0 = time.perf_counter()
BATCH = 128
DATA = {
    "resnet8": "Fashion-MNIST resized to 32x32 and tiled to RGB (CIFAR-10 stand-in), 10 classes",
    "dscnn": "Fashion-MNIST resized to 49x10x1 (SHAPE stand-in for the 49x10 MFCC keyword-"
             "spotting input; no audio offline), 10 classes (classes=10, reference: 12)",
    "autoencoder": "Fashion-MNIST resized to 20x32 = 640 values, reshaped to (5,128,1); trained "
                   "on the normal class only; score = reconstruction MSE vs x/255; "
                   "metric = ROC AUC x100, normal test class vs all other test classes",
}


def log(msg):
    """Prints a progress line with the elapsed time."""
    print(f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - T0:6.0f}s] {msg}", flush=True)


def roc_auc(normal_scores, anomaly_scores):
    """ROC AUC of `anomaly > normal` (ties count half), by exact pair counting."""
    n, a = np.asarray(normal_scores)[None, :], np.asarray(anomaly_scores)[:, None]
    return float(np.mean((a > n) + 0.5 * (a == n)))


def _compile_fit(model, x, y, epochs, lr, loss, metrics=()):
    import keras

    steps = max(epochs, 1) * -(-len(x) // BATCH)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps)),
                  loss, metrics=list(metrics))
    if epochs:
        model.fit(x.astype("float32"), y, batch_size=BATCH, epochs=epochs, verbose=0)
    return model


class Task:
    """One model + data + metric (points, higher is better)."""

    def __init__(self, key, build, x, y, xt, yt, kind):
        self.key, self.build, self.kind = key, build, kind
        self.x, self.y, self.xt, self.yt = x, y, xt, yt

    def loss(self):
        import keras

        if self.kind == "ae":
            return keras.losses.MeanSquaredError()
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def fit(self, model, epochs, lr):
        return _compile_fit(model, self.x, self.y, epochs, lr, self.loss())

    def metric(self, model):
        """Accuracy or ROC AUC in points; quantized models run exact integer inference."""
        out = model.predict(self.xt.astype("float32"), verbose=0, batch_size=256)
        return self.score(out)

    def score(self, out, n=None):
        n = len(out) if n is None else n
        if self.kind == "ae":
            target = self.xt[:n].reshape(n, -1).astype("float32") / 255.0
            err = np.mean((out[:n] - target) ** 2, axis=1)
            normal = self.yt[:n] == FLAGS.normal_class
            return 100.0 * roc_auc(err[normal], err[~normal])
        return 100.0 * float(np.mean(out[:n].argmax(-1) == self.yt[:n]))


def _tasks(quick):
    from keras_nna import datasets
    from keras_nna.models import DSCNN, DenseAutoencoder, ResNet8

    n_train, n_test = (512, 256) if quick else (FLAGS.train, FLAGS.test)
    (x, y), (xt, yt) = datasets.load_fashion_mnist(limit_test=n_test)
    tasks = {}
    if "resnet8" in FLAGS.models:
        rx = datasets.to_rgb(datasets.resize_images(x[:n_train], (32, 32)))
        rxt = datasets.to_rgb(datasets.resize_images(xt, (32, 32)))
        tasks["resnet8"] = Task("resnet8", lambda: ResNet8(input_shape=(32, 32, 3), classes=10),
                                rx, y[:n_train], rxt, yt, "cls")
    if "dscnn" in FLAGS.models:
        dx, dxt = (datasets.resize_images(a, (49, 10)) for a in (x[:n_train], xt))
        tasks["dscnn"] = Task("dscnn", lambda: DSCNN(input_shape=(49, 10, 1), classes=10),
                              dx, y[:n_train], dxt, yt, "cls")
    if "autoencoder" in FLAGS.models:
        normal = x[y == FLAGS.normal_class][: 256 if quick else None]
        ax = datasets.resize_images(normal, (20, 32)).reshape(-1, 5, 128, 1)
        axt = datasets.resize_images(xt, (20, 32)).reshape(-1, 5, 128, 1)
        target = ax.reshape(len(ax), -1).astype("float32") / 255.0
        tasks["autoencoder"] = Task("autoencoder",
                                    lambda: DenseAutoencoder(input_shape=(5, 128, 1)),
                                    ax, target, axt, yt, "ae")
    return tasks


def _deploy(task, qmodel, n):
    from keras_nna import deploy

    labels = task.yt[:n] if task.kind == "cls" else None
    res = deploy(qmodel, task.xt[:n], labels, profile="nna-1core", executor="emulator")
    return {
        "deploy_images": res.images,
        "bit_exact": bool(res.bit_exact),
        "max_abs_diff": float(res.max_abs_diff),
        "emulator_metric_on_deploy_images": round(task.score(res.outputs, n), 2),
        "events_per_inference": round(float(res.events_per_image), 1),
        "synops_per_inference": round(float(res.synops_per_image), 1),
        "program_bytes": int(res.program_bytes),
        "energy_uj": round(float(res.cost.total["energy_j"]) * 1e6, 3),
        "time_us": round(float(res.cost.total["time_s"]) * 1e6, 3),
    }


def _quantized_row(task, model, float_metric, label, policy, epochs, lr):
    from keras_nna.quantization import quantize_model

    qmodel = quantize_model(model, policy)
    ptq = task.metric(qmodel)
    log(f"{task.key} [{label}] quantized before QAT: {ptq:.2f}; QAT {epochs} epoch(s)")
    task.fit(qmodel, epochs, lr)
    q = task.metric(qmodel)
    drop = float_metric - q
    log(f"{task.key} [{label}] QAT: {q:.2f} (drop {drop:+.2f} points); deploying")
    row = {"policy": label, "qat_epochs": epochs, "quantized_before_qat": round(ptq, 2),
           "quantized_metric": round(q, 2), "drop_points": round(drop, 2),
           "target_met": bool(drop <= FLAGS.target_points)}
    row.update(_deploy(task, qmodel, min(FLAGS.deploy_images, len(task.xt))))
    log(f"{task.key} [{label}] bit_exact={row['bit_exact']} events={row['events_per_inference']}")
    return row


def run_task(task, quick):  # long: one model's float → QAT → deploy (→ one fix) pipeline
    """Float training, default-policy QAT + deploy, and the one fix if the target is missed."""
    import keras

    from keras_nna.quantization import QuantizationPolicy

    keras.utils.set_random_seed(0)
    ae = task.kind == "ae"
    f_ep = 1 if quick else (FLAGS.ae_float_epochs if ae else FLAGS.float_epochs)
    q_ep = 1 if quick else (FLAGS.ae_qat_epochs if ae else FLAGS.qat_epochs)
    model = task.build()
    log(f"{task.key}: {model.count_params():,} params, {len(task.x)} train / {len(task.xt)} "
        f"test; float {f_ep} epoch(s)")
    t = time.perf_counter()
    task.fit(model, f_ep, 2e-3)
    float_seconds = time.perf_counter() - t
    float_metric = task.metric(model)
    log(f"{task.key} float: {float_metric:.2f} ({float_seconds:.0f}s)")
    rows = [_quantized_row(task, model, float_metric, "default (w4/a4, first layer w8)",
                           None, q_ep, 5e-4)]
    if not rows[0]["target_met"] and FLAGS.fix != "none":
        if FLAGS.fix == "a8":
            label, policy, ep = "fix: 8-bit activations (w4/a8, first layer w8)", \
                QuantizationPolicy(activation_bits=8), q_ep
        else:
            label, policy, ep = f"fix: {3 * q_ep} QAT epochs (w4/a4)", None, 3 * q_ep
        rows.append(_quantized_row(task, model, float_metric, label, policy, ep, 5e-4))
    return {"model": model.name, "params": int(model.count_params()),
            "metric": "ROC AUC x100" if ae else "top-1 accuracy %",
            "data": DATA[task.key], "train_samples": int(len(task.x)),
            "test_samples": int(len(task.xt)), "float_epochs": f_ep,
            "float_train_seconds": round(float_seconds, 1),
            "float_metric": round(float_metric, 2), "rows": rows}


def _table(results):
    lines = ["| model | params | metric | policy | float | quantized | drop (pts) | target met "
             "| bit-exact (N) | events/inf | program bytes | energy µJ |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results.values():
        for row in r["rows"]:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['metric']} | {row['policy']} | "
                f"{r['float_metric']:.2f} | {row['quantized_metric']:.2f} | "
                f"{row['drop_points']:+.2f} | {'yes' if row['target_met'] else 'no'} | "
                f"{'yes' if row['bit_exact'] else 'NO'} ({row['deploy_images']}) | "
                f"{row['events_per_inference']:,.0f} | {row['program_bytes']:,} | "
                f"{row['energy_uj']:.3f} |")
    return "\n".join(lines)


def _git_commit():
    """The source tree's HEAD commit, or None outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__)),
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv):
    del argv
    quick = FLAGS.quick
    commit = _git_commit()  # at start: the code this run imports
    log("loading and resizing Fashion-MNIST")
    tasks = _tasks(quick)
    results = {}
    for key, task in tasks.items():
        results[key] = run_task(task, quick)
    table = _table(results)
    print("\n" + table)
    out = {
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "git_commit": commit,
        "data": "Offline stand-ins built from Fashion-MNIST (/usr/share/datasets/fashion-mnist), "
                "not the MLPerf Tiny data sets (nothing downloaded): " + "; ".join(
                    f"{k}: {v}" for k, v in DATA.items() if k in results),
        "recipe": f"Adam + cosine decay, lr 2e-3 float / 5e-4 QAT, batch {BATCH}, BN momentum 0.9; "
                  "quantized metrics from predict (exact integer inference) on all test samples",
        "target": f"quantized within {FLAGS.target_points} points of float",
        "profile": "nna-1core", "executor": "emulator",
        "total_seconds": round(time.perf_counter() - T0, 1),
        "models": results, "table": table,
    }
    write_result(out, FLAGS.out if not quick or FLAGS.out != default_path("mlperf_tiny")
                 else "/tmp/mlperf_tiny_quick.json")


if __name__ == "__main__":
    app.run(main)
