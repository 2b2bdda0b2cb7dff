"""Tutorial 1 — AkidaNet quick start: train → quantize → export → emulate → report.

The whole keras_nna loop on real, offline data, in one script (the README's
main job, also `keras-nna demo`):

1. Build AkidaNet (alpha 0.25) and train it in float.
2. `quantize_model`: 4-bit weights and activations, 8-bit first layer, then a
   short quantization-aware fine-tune.
3. `export_model` → bytecode; run it on the emulator op.
4. Check the emulator equals the quantized Keras model bit for bit, and read
   the cost: events, synaptic ops, bytes, time and energy per inference on
   both hardware profiles.

Two tasks: the person-detection stand-in (scikit-image `lfw_subset`, faces vs
non-faces, 96×96×3) and Fashion-MNIST (28×28 grey resized and tiled to
48×48×3). Each prints float / Keras-quantized / emulator accuracy.

    python tutorials/akidanet_quickstart.py            # ~5-10 min on 2 cores
    python tutorials/akidanet_quickstart.py --quick    # tiny data, 1 epoch (smoke test)

The report (markdown, JSON and PNG) goes to `--out_dir`, printed at the end.
"""

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (also puts the repository on sys.path)
from common import log  # noqa: E402

TASKS = {
    "faces": {"size": 96, "classes": 2, "float_epochs": 40, "qat_epochs": 15, "batch": 16,
              "limit_train": None, "limit_test": None, "lr": 2e-3},
    "fashion_mnist": {"size": 48, "classes": 10, "float_epochs": 4, "qat_epochs": 2, "batch": 64,
                      "limit_train": 20000, "limit_test": 5000, "lr": 2e-3},
}


def load_task(name, quick):
    """Returns uint8 (x_train, y_train, x_test, y_test) for a task."""
    from keras_nna import datasets

    cfg = TASKS[name]
    if name == "faces":
        (x_train, y_train), (x_test, y_test) = datasets.load_faces()
    else:
        limit_train = 256 if quick else cfg["limit_train"]
        limit_test = 128 if quick else cfg["limit_test"]
        (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(
            limit_train=limit_train, limit_test=limit_test)
    if quick:
        x_train, y_train, x_test, y_test = x_train[:64], y_train[:64], x_test[:32], y_test[:32]
    size = (cfg["size"], cfg["size"])
    return (datasets.prepare_for_akidanet(x_train, size), y_train,
            datasets.prepare_for_akidanet(x_test, size), y_test)


def train_task(name, quick=False, alpha=0.25):
    """Runs the loop for one task; returns (results dict, quantized model, program, x_test)."""
    import keras

    from keras_nna.export import export_model
    from keras_nna.models import AkidaNet
    from keras_nna.runtime import Emulator

    cfg = TASKS[name]
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = load_task(name, quick)
    log(f"{name}: {len(x_train)} train / {len(x_test)} test images of {x_train.shape[1:]}")
    model = AkidaNet(input_shape=x_train.shape[1:], alpha=alpha, classes=cfg["classes"],
                     bn_momentum=0.9)
    epochs = 1 if quick else cfg["float_epochs"]
    log(f"{name}: float training, {epochs} epochs")
    common.fit(model, x_train, y_train, epochs, lr=cfg["lr"], batch=cfg["batch"])
    float_acc = common.accuracy(model, x_test, y_test)
    log(f"{name}: float accuracy {float_acc:.4f}")

    epochs = 1 if quick else cfg["qat_epochs"]
    log(f"{name}: quantization-aware training (4-bit, 8-bit first layer), {epochs} epochs")
    qmodel = common.qat(model, x_train, y_train, epochs=epochs, lr=cfg["lr"] / 4, batch=cfg["batch"])
    keras_logits = qmodel.predict(x_test.astype("float32"), verbose=0, batch_size=256)
    quant_acc = float(np.mean(keras_logits.argmax(-1) == y_test))
    log(f"{name}: Keras quantized accuracy {quant_acc:.4f}")

    program = export_model(qmodel)
    data = program.to_bytes()
    emulator = Emulator(data)
    t0 = time.perf_counter()
    emu_logits, stats = emulator.run_with_stats(x_test)
    emu_seconds = time.perf_counter() - t0
    emu_acc = float(np.mean(emu_logits.argmax(-1) == y_test))
    bit_exact = bool(np.array_equal(emu_logits, keras_logits))
    log(f"{name}: emulator accuracy {emu_acc:.4f}; bit-exact with Keras: {bit_exact}; "
        f"program {len(data):,} bytes; {len(x_test) / emu_seconds:.0f} images/s")
    results = {
        "task": name,
        "input_shape": list(x_train.shape[1:]),
        "alpha": alpha,
        "train_images": int(len(x_train)),
        "test_images": int(len(x_test)),
        "float_accuracy": round(float(float_acc), 4),
        "quantized_accuracy": round(quant_acc, 4),
        "emulator_accuracy": round(emu_acc, 4),
        "bit_exact": bit_exact,
        "program_bytes": len(data),
        "params": int(model.count_params()),
        "emulator_images_per_s": round(len(x_test) / emu_seconds, 1),
    }
    return results, qmodel, program, stats


def cost_section(program, stats):
    """Cost tables on both hardware profiles; returns (markdown, json dict)."""
    from keras_nna.runtime.cost import estimate_cost

    md, js = [], {}
    for profile in common.PROFILES:
        report = estimate_cost(program, stats, profile)
        md.append(f"### Cost on `{profile}`\n\n```\n{report.table()}\n```\n")
        js[profile] = json.loads(report.to_json())
    return "\n".join(md), js


def plot_events(program, stats, path):
    """Bar chart of events and synaptic ops per layer (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = stats.mean(axis=0)
    names = [rec.name or f"{rec.kind}_{i}" for i, rec in enumerate(program.layers)]
    fig, ax = plt.subplots(figsize=(10, 4))
    idx = np.arange(len(names))
    ax.bar(idx - 0.2, mean[:, 1] / 1e3, 0.4, label="synaptic ops performed (k)")
    ax.bar(idx + 0.2, mean[:, 2] / 1e3, 0.4, label="dense-equivalent MACs (k)")
    ax.set_xticks(idx, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("operations per inference (thousands)")
    ax.set_title("Event-based work vs dense work per layer (test-set mean)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data, 1 epoch (smoke test)")
    parser.add_argument("--tasks", default="faces,fashion_mnist")
    parser.add_argument("--out_dir", default=None)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or os.path.join("reports", f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(out_dir, exist_ok=True)
    t_start = time.perf_counter()
    all_results, md = [], ["# keras_nna quick start report\n"]
    for name in args.tasks.split(","):
        results, qmodel, program, stats = train_task(name, quick=args.quick)
        cost_md, cost_js = cost_section(program, stats)
        results["cost"] = cost_js
        all_results.append(results)
        program.save(os.path.join(out_dir, f"{name}.nnab"))
        plot_events(program, stats, os.path.join(out_dir, f"{name}_events.png"))
        md.append(f"## {name}\n\n| float | Keras quantized | emulator | bit-exact | program bytes |\n"
                  f"|---|---|---|---|---|\n| {results['float_accuracy']:.4f} | "
                  f"{results['quantized_accuracy']:.4f} | {results['emulator_accuracy']:.4f} | "
                  f"{results['bit_exact']} | {results['program_bytes']:,} |\n\n{cost_md}\n"
                  f"![events]({name}_events.png)\n")
        print(cost_md)
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(all_results, f, indent=2)
    print("\n| task | float | Keras quantized | emulator | bit-exact | program bytes |")
    print("|---|---|---|---|---|---|")
    for r in all_results:
        print(f"| {r['task']} | {r['float_accuracy']:.4f} | {r['quantized_accuracy']:.4f} | "
              f"{r['emulator_accuracy']:.4f} | {r['bit_exact']} | {r['program_bytes']:,} |")
    log(f"done in {time.perf_counter() - t_start:.0f} s; report written to {os.path.abspath(out_dir)}")
    if not all(r["bit_exact"] for r in all_results):
        raise SystemExit("emulator output differs from the quantized Keras model")
    return all_results


if __name__ == "__main__":
    main()
