"""Tutorial 6 — Bring your own Keras model: keras.applications and MLPerf Tiny through the loop.

The models users already know go through the same loop as AkidaNet, unchanged:
`keras.applications.MobileNet` (alpha 0.25) and `MobileNetV2` (alpha 0.35, residual
Adds with signed linear bottlenecks), and the MLPerf Tiny ResNet-8
(`keras_nna.models.ResNet8`, residual Adds). Each is trained in float, quantized
(4-bit activations and weights, 8-bit first layer), fine-tuned (QAT), exported,
run on the emulator op (bit-exact against `predict`) and costed on nna-1core,
next to AkidaNet 0.25 on the same data.

Two keras.applications arguments matter, and neither changes the network:
`weights=None` (nothing is downloaded) and `classifier_activation=None` (the
accelerator returns logits; apply softmax after the emulator if you need
probabilities). BatchNormalization momentum is set to 0.9 (Keras' 0.99 leaves the
moving statistics at their initial values after a few hundred steps on small data).

    python tutorials/bring_your_own_model.py             # faces and Fashion-MNIST
    python tutorials/bring_your_own_model.py --quick     # tiny data, one epoch

Writes `bring_your_own_model.json` and `bring_your_own_model.md` into `--out_dir`.
"""

import argparse
import json
import os
import time

import numpy as np

import common

MODELS = ("AkidaNet 0.25", "MobileNet 0.25", "MobileNetV2 0.35", "ResNet-8")


def build(name, input_shape, classes):
    """The float model `name` for `input_shape` and `classes` (logits output)."""
    import keras

    from keras_nna.models import AkidaNet, ResNet8

    if name == "AkidaNet 0.25":
        return AkidaNet(input_shape=input_shape, alpha=0.25, classes=classes, bn_momentum=0.9)
    if name == "MobileNet 0.25":
        model = keras.applications.MobileNet(input_shape=input_shape, alpha=0.25, weights=None,
                                             classes=classes, classifier_activation=None)
    elif name == "MobileNetV2 0.35":
        model = keras.applications.MobileNetV2(input_shape=input_shape, alpha=0.35, weights=None,
                                               classes=classes, classifier_activation=None)
    else:
        return ResNet8(input_shape=input_shape, classes=classes, bn_momentum=0.9)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.9
    return model


def data(task, quick):
    """uint8 `(x, y, x_test, y_test)` of `task` at the tutorial's resolution (RGB)."""
    from keras_nna import datasets

    if task == "faces":
        (x, y), (xt, yt) = datasets.load_faces()
        size = (32, 32) if quick else (96, 96)
        x, xt = datasets.resize_images(x, size), datasets.resize_images(xt, size)
        return datasets.to_rgb(x), y, datasets.to_rgb(xt), yt
    return common.fashion_mnist(quick, limit_train=10000, limit_test=2000, size=(32, 32), rgb=True)


def run_one(name, task, quick):
    """Float training, QAT, deployment of one model on one task; returns its row."""
    from keras_nna.quantization import QuantizationPolicy

    x, y, xt, yt = data(task, quick)
    classes = int(y.max()) + 1
    epochs = (1, 1) if quick else ((40, 8) if task == "faces" else (6, 2))
    start = time.time()
    model = build(name, x.shape[1:], classes)
    common.fit(model, x, y, epochs[0], batch=32 if task == "faces" else 64)
    float_acc = common.accuracy(model, xt, yt)
    qmodel = common.qat(common.clone(model), x, y, QuantizationPolicy(), epochs=epochs[1],
                        batch=32 if task == "faces" else 64)
    acc = common.accuracy(qmodel, xt, yt)
    row, _, _ = common.deploy(qmodel, xt, yt, max_images=64 if quick else 1000)
    params = int(model.count_params())
    row = {"model": name, "task": task, "input": list(x.shape[1:]), "params": params,
           "float_accuracy": round(float_acc, 4), "accuracy": round(acc, 4), **row,
           "program_bytes_per_param": round(row["program_bytes"] / params, 4),
           "seconds": round(time.time() - start, 1)}
    common.log(f"{name} on {task}: float {float_acc:.4f}, quantized {acc:.4f}, bit-exact "
               f"{row['bit_exact']}, {row['program_bytes']:,} B, {row['events']:,.0f} events, "
               f"{1e6 * row['nna-1core'].get('energy_j', float('nan')):.2f} µJ "
               f"({row['seconds']:.0f} s)")
    return row


def table(rows):
    """A markdown table of the rows."""
    lines = ["| task | model | params | float acc | quantized acc | bit-exact | events | program bytes "
             "| bytes/param | µJ (nna-1core) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['model']} | {r['params']:,} | {r['float_accuracy']:.4f} | "
                     f"{r['accuracy']:.4f} | {r['bit_exact']} | {r['events']:,.0f} | "
                     f"{r['program_bytes']:,} | {r['program_bytes_per_param']:.3f} | "
                     f"{1e6 * r['nna-1core'].get('energy_j', float('nan')):.3f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Bring your own Keras model")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", default="faces,fashion_mnist")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out_dir", default=os.path.join("reports", "bring_your_own_model"))
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    import keras

    rows = []
    for task in args.tasks.split(","):
        for name in args.models.split(","):
            keras.utils.set_random_seed(0)
            rows.append(run_one(name, task, args.quick))
    text = table(rows)
    print("\n" + text)
    result = {"rows": rows, "date": time.strftime("%Y-%m-%d"), "quick": args.quick}
    with open(os.path.join(args.out_dir, "bring_your_own_model.json"), "w") as f:
        json.dump(result, f, indent=2, default=float)
    with open(os.path.join(args.out_dir, "bring_your_own_model.md"), "w") as f:
        f.write(text + "\n")
    common.log(f"report written to {os.path.abspath(args.out_dir)}")
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
