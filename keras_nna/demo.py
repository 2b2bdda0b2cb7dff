"""The main job, `keras-nna demo`: train → quantize → export → emulate → report.

The whole keras_nna loop on real, offline data, in one command (also
`python -m keras_nna.demo` and `python tutorials/akidanet_quickstart.py`):

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

    keras-nna demo                        # ~5-10 min on 2 cores
    keras-nna demo --quick                # tiny data, 1 epoch (smoke test, ~30 s)
    keras-nna demo --tasks faces --out_dir reports/faces

The report goes to `--out_dir` (default `./reports/quickstart-<timestamp>`),
printed at the end: `report.md`, `report.json`, and per task the program
`<task>.nnab` and the figure `<task>_events.png` (skipped, with a note, when
matplotlib is not installed). Progress lines show the time since the start and
how long each stage took. The exit status is 0 when every task ran and the
emulator matched Keras bit for bit, 1 otherwise, 2 for a usage error.

Example:

>>> sorted(TASKS)
['faces', 'fashion_mnist']
>>> main(["--tasks", "cifar"])  # usage error: one line on stderr
2
"""

import argparse
import json
import os
import sys
import time

import numpy as np

__all__ = ["PROFILES", "TASKS", "main", "run_demo"]

TASKS = {
    "faces": {"size": 96, "classes": 2, "float_epochs": 40, "qat_epochs": 15, "batch": 16,
              "limit_train": None, "limit_test": None, "lr": 2e-3},
    "fashion_mnist": {"size": 48, "classes": 10, "float_epochs": 4, "qat_epochs": 2, "batch": 64,
                      "limit_train": 20000, "limit_test": 5000, "lr": 2e-3},
}
"""Per task: input size, classes, epochs, batch, data limits and learning rate."""

PROFILES = ("nna-1core", "nna-8core")
"""The hardware profiles the report costs every program on."""


class _Clock:
    """Progress lines: wall time, time since the start, and stage durations."""

    def __init__(self):
        self.start = self.last = time.perf_counter()

    def lap(self):
        """Seconds since the previous lap (or the start)."""
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return seconds

    def log(self, msg):
        elapsed = time.perf_counter() - self.start
        print(f"[{time.strftime('%H:%M:%S')} +{elapsed:6.1f} s] {msg}", flush=True)


def _fit(model, x, y, epochs, lr, batch):
    """Compiles `model` with Adam + cosine decay and fits it quietly."""
    import keras

    steps = max(epochs, 1) * -(-len(x) // batch)
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, steps))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(opt, loss, metrics=["accuracy"])
    if epochs:
        model.fit(x.astype("float32"), y, batch_size=batch, epochs=epochs, verbose=0)
    return model


def _accuracy(model, x, y):
    logits = model.predict(x.astype("float32"), verbose=0, batch_size=256)
    return float(np.mean(logits.argmax(-1) == y))


def _load_task(name, quick):
    """Returns uint8 `(x_train, y_train, x_test, y_test)` for a task of `TASKS`."""
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


def _train_task(name, quick=False, alpha=0.25, clock=None):
    """Runs the loop for one task of `TASKS`.

    Args:
        name: `"faces"` or `"fashion_mnist"`.
        quick: Tiny data and one epoch per training (a smoke test).
        alpha: AkidaNet width multiplier.
        clock: Progress printer shared across tasks (a new one if None).

    Returns:
        `(results, qmodel, program, stats)`: a JSON-native dict of accuracies,
        bit-exactness, program bytes and emulator speed; the quantized Keras
        model; the exported `Program`; the emulator statistics of the test set.
    """
    import keras

    from keras_nna.deployment import deploy
    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model
    from keras_nna.runtime import Emulator

    clock = clock or _Clock()
    cfg = TASKS[name]
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = _load_task(name, quick)
    clock.log(f"{name}: {len(x_train)} train / {len(x_test)} test images of {x_train.shape[1:]} "
              f"(loaded in {clock.lap():.1f} s)")
    model = AkidaNet(input_shape=x_train.shape[1:], alpha=alpha, classes=cfg["classes"])
    epochs = 1 if quick else cfg["float_epochs"]
    clock.log(f"{name}: float training, {epochs} epochs")
    _fit(model, x_train, y_train, epochs, lr=cfg["lr"], batch=cfg["batch"])
    float_acc = _accuracy(model, x_test, y_test)
    clock.log(f"{name}: float accuracy {float_acc:.4f} (float training: {clock.lap():.1f} s)")

    epochs = 1 if quick else cfg["qat_epochs"]
    clock.log(f"{name}: quantization-aware training (4-bit, 8-bit first layer), {epochs} epochs")
    qmodel = _fit(quantize_model(model), x_train, y_train, epochs, lr=cfg["lr"] / 4,
                  batch=cfg["batch"])
    quant_acc = _accuracy(qmodel, x_test, y_test)
    clock.log(f"{name}: Keras quantized accuracy {quant_acc:.4f} "
              f"(quantization-aware training: {clock.lap():.1f} s)")

    result = deploy(qmodel, x_test, y_test, profile=None)  # export, emulate, compare with Keras
    program, stats, emu_acc = result.program, result.stats, float(result.accuracy)
    t0 = time.perf_counter()
    Emulator(program).run(x_test)
    emu_seconds = time.perf_counter() - t0
    bit_exact = result.bit_exact
    clock.log(f"{name}: emulator accuracy {emu_acc:.4f}; bit-exact with Keras: {bit_exact}; "
              f"program {result.program_bytes:,} bytes; {len(x_test) / emu_seconds:.0f} images/s "
              f"(export and emulation: {clock.lap():.1f} s)")
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
        "program_bytes": result.program_bytes,
        "params": int(model.count_params()),
        "emulator_images_per_s": round(len(x_test) / emu_seconds, 1),
    }
    return results, qmodel, program, stats


def _cost_section(program, stats):
    """Cost tables on both hardware profiles; returns (markdown, json dict)."""
    from keras_nna.runtime.cost import estimate_cost

    md, js = [], {}
    for profile in PROFILES:
        report = estimate_cost(program, stats, profile)
        md.append(f"### Cost on `{profile}`\n\n```\n{report.table()}\n```\n")
        js[profile] = json.loads(report.to_json())
    return "\n".join(md), js


def _plot_events(program, stats, path):
    """Bar chart of events and synaptic ops per layer (PNG); False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
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
    return True


def _task_markdown(name, results, cost_md, figure):
    image = f"![events]({name}_events.png)\n" if figure else ""
    return (f"## {name}\n\n| float | Keras quantized | emulator | bit-exact | program bytes |\n"
            f"|---|---|---|---|---|\n| {results['float_accuracy']:.4f} | "
            f"{results['quantized_accuracy']:.4f} | {results['emulator_accuracy']:.4f} | "
            f"{results['bit_exact']} | {results['program_bytes']:,} |\n\n{cost_md}\n{image}")


def run_demo(out_dir, tasks=tuple(TASKS), quick=False, clock=None):
    """Runs every task and writes the report to `out_dir`.

    Args:
        out_dir: Directory of the report (created if missing): `report.md`,
            `report.json`, `<task>.nnab`, `<task>_events.png`.
        tasks: Names of `TASKS` to run, in order.
        quick: Tiny data and one epoch per training (a smoke test).
        clock: Progress printer (a new one if None).

    Returns:
        The list of per-task result dicts written to `report.json` (see
        `_train_task`), each with a `"cost"` entry per hardware profile.

    Raises:
        ValueError: If a task name is not in `TASKS`.

    Example (trains two networks; tests/test_demo.py runs it):

    >>> results = run_demo("reports/quick", quick=True)  # doctest: +SKIP
    >>> [(r["task"], r["bit_exact"]) for r in results]  # doctest: +SKIP
    [('faces', True), ('fashion_mnist', True)]
    >>> run_demo("reports/x", tasks=["cifar"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown task(s) ['cifar']; expected names from ['faces', 'fashion_mnist'], ...
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; expected names from {sorted(TASKS)}, "
                         "e.g. --tasks faces,fashion_mnist.")
    clock = clock or _Clock()
    os.makedirs(out_dir, exist_ok=True)
    all_results, md = [], ["# keras_nna quick start report\n"]
    for name in tasks:
        results, _, program, stats = _train_task(name, quick=quick, clock=clock)
        cost_md, cost_js = _cost_section(program, stats)
        results["cost"] = cost_js
        all_results.append(results)
        program.save(os.path.join(out_dir, f"{name}.nnab"))
        figure = _plot_events(program, stats, os.path.join(out_dir, f"{name}_events.png"))
        if not figure:
            clock.log(f"{name}: figure skipped (matplotlib not installed: "
                      "pip install 'keras_nna[tutorials]')")
        md.append(_task_markdown(name, results, cost_md, figure))
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
    return all_results


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser(prog):
    parser = _Parser(prog=prog, description="The main job: train → quantize → export → "
                     "emulate → report, on faces and Fashion-MNIST (offline data).")
    parser.add_argument("--quick", action="store_true",
                        help="tiny data, 1 epoch per training (smoke test, ~30 s)")
    parser.add_argument("--tasks", default=",".join(TASKS),
                        help=f"comma-separated tasks among {', '.join(TASKS)} (default: both)")
    parser.add_argument("--out_dir", default=None,
                        help="report directory (default: ./reports/quickstart-<timestamp>)")
    return parser


def main(argv=None, prog="keras-nna demo"):
    """Runs the demo from command-line arguments.

    Args:
        argv: The arguments after the command (`["--quick", ...]`); None reads
            `sys.argv[1:]`. `--help` lists them.
        prog: The program name shown in help and error messages.

    Returns:
        The exit status: 0 when every task ran and the emulator matched Keras
        bit for bit, 1 otherwise, 2 for a usage error (one line on stderr).

    Example:

    >>> main(["--quick", "--nosuchflag"])
    2
    """
    try:
        args = _parser(prog).parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    tasks = [t for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        print(f"{prog}: error: --tasks={args.tasks!r} names unknown task(s) {unknown}; expected "
              f"a comma-separated list of {', '.join(TASKS)} (see {prog} --help)", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: no C++ log lines
    out_dir = args.out_dir or os.path.join("reports",
                                           f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}")
    clock = _Clock()
    clock.log(f"keras_nna demo: tasks {', '.join(tasks)}{' (quick)' if args.quick else ''}; "
              f"report to {os.path.abspath(out_dir)}")
    results = run_demo(out_dir, tasks, quick=args.quick, clock=clock)
    clock.log(f"done in {time.perf_counter() - clock.start:.0f} s; report written to "
              f"{os.path.abspath(out_dir)}")
    differ = [r["task"] for r in results if not r["bit_exact"]]
    if differ:
        print(f"{prog}: error: the emulator output differs from the quantized Keras model on "
              f"{', '.join(differ)}; expected bit-exact outputs. Please report it with "
              f"{os.path.join(os.path.abspath(out_dir), 'report.json')}.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m keras_nna.demo"))
