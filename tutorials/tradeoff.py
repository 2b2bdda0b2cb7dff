"""Tutorial 4 — The accuracy-vs-cost trade-off line.

Several AkidaNet widths (alpha 0.25 / 0.5 / 1.0, Fashion-MNIST at 28×28×1 to
fit the time) and weight-pruning levels (0 / 50 / 80 %), each trained in
float, quantized (4-bit, 8-bit first layer) with a short QAT, exported and run
on the emulator. Every point gets its estimated time, external bandwidth and
energy per inference on both hardware profiles. The plots mark the Pareto
front (no other point is both cheaper and more accurate).

One more point asks a classic question: a wider network (alpha 0.5) whose
filters are pruned (BatchNorm-gamma criterion, then physically removed) down
to about the baseline's (alpha 0.25) cost — does it beat the baseline's
accuracy at equal cost?

    python tutorials/tradeoff.py            # ~30-40 min on 2 cores (alpha 1.0 dominates)
    python tutorials/tradeoff.py --quick

Writes `tradeoff.json` and `tradeoff_<cost>.png` into `--out_dir`.
"""

import argparse
import json
import os
import time

import common

ALPHAS = (0.25, 0.5, 1.0)
PRUNING = (0.0, 0.5, 0.8)
COSTS = {"time_s": ("estimated time per inference", "µs", 1e6),
         "dram_bytes": ("external memory traffic per inference", "kB", 1e-3),
         "energy_j": ("estimated energy per inference", "µJ", 1e6)}


def _train_point(x, y, xt, yt, alpha, prune, epochs, qat_epochs, filter_prune=0.0):
    import keras

    from keras_nna import sparsity
    from keras_nna.models import AkidaNet

    keras.utils.set_random_seed(0)
    model = AkidaNet(input_shape=x.shape[1:], alpha=alpha, classes=10, bn_momentum=0.9)
    def callbacks():
        if not prune:
            return []
        return [sparsity.PruneCallback(sparsity.ConstantSparsity(prune), exclude_first=True)]

    common.fit(model, x, y, epochs, callbacks=callbacks())
    if filter_prune:
        sparsity.prune_filters(model, filter_prune, criterion="bn_gamma", scope="layer")
        model = sparsity.remove_pruned_filters(model)
        common.fit(model, x, y, max(epochs // 2, 1), lr=1e-3)
    float_acc = common.accuracy(model, x=xt, y=yt)
    # The pruning callback also runs during QAT so pruned weights stay zero.
    qmodel = common.qat(model, x, y, epochs=qat_epochs, callbacks=callbacks())
    acc = common.accuracy(qmodel, xt, yt)
    row, _, _ = common.deploy(qmodel, xt, yt)
    return {"alpha": alpha, "weight_pruning": prune, "filter_pruning": filter_prune,
            "params": int(model.count_params()), "float_accuracy": round(float_acc, 4),
            "accuracy": round(acc, 4), **row}


def pareto(rows, cost_key, profile):
    """Rows on the Pareto front of (cost low, accuracy high)."""
    front = []
    for r in sorted(rows, key=lambda r: (r[profile][cost_key], -r["accuracy"])):
        if not front or r["accuracy"] > front[-1]["accuracy"]:
            front.append(r)
    return front


def main(argv=None):
    parser = argparse.ArgumentParser(description="Accuracy-vs-cost trade-off")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out_dir", default=os.path.join("reports", "tradeoff"))
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    x, y, xt, yt = common.fashion_mnist(args.quick, limit_train=12000, limit_test=2000)
    epochs, qat_epochs = (1, 1) if args.quick else (5, 1)
    alphas, levels = ((0.25, 0.5), (0.0, 0.5)) if args.quick else (ALPHAS, PRUNING)
    rows = []
    for alpha in alphas:
        for prune in levels:
            row = _train_point(x, y, xt, yt, alpha, prune, epochs, qat_epochs)
            rows.append(row)
            common.log(f"alpha {alpha} pruning {prune:.0%}: acc {row['accuracy']:.4f}, "
                       f"events {row['events']:,.0f}, energy "
                       f"{1e6 * row['nna-1core']['energy_j']:.2f} µJ")
    wide_pruned = _train_point(x, y, xt, yt, 0.5, 0.0, epochs, qat_epochs, filter_prune=0.5)
    wide_pruned["label"] = "alpha 0.5, 50% filters removed"
    rows.append(wide_pruned)
    base = next(r for r in rows if r["alpha"] == 0.25 and r["weight_pruning"] == 0.0)
    verdict = {
        "baseline": {"accuracy": base["accuracy"], "energy_uJ": 1e6 * base["nna-1core"]["energy_j"]},
        "wide_pruned": {"accuracy": wide_pruned["accuracy"],
                        "energy_uJ": 1e6 * wide_pruned["nna-1core"]["energy_j"]},
    }
    verdict["energy_ratio"] = verdict["wide_pruned"]["energy_uJ"] / verdict["baseline"]["energy_uJ"]
    verdict["accuracy_gain_points"] = 100 * (wide_pruned["accuracy"] - base["accuracy"])
    common.log(f"wide-then-pruned vs baseline: {verdict}")
    _print(rows)
    for key in COSTS:
        _plot(rows, key, os.path.join(args.out_dir, f"tradeoff_{key}.png"))
    result = {"rows": rows, "wide_pruned_experiment": verdict, "date": time.strftime("%Y-%m-%d"),
              "data": f"Fashion-MNIST {len(x)} train / {len(xt)} test, 28x28x1"}
    with open(os.path.join(args.out_dir, "tradeoff.json"), "w") as f:
        json.dump(result, f, indent=2)
    common.log(f"report written to {os.path.abspath(args.out_dir)}")
    return result


def _print(rows):
    print("\n| alpha | weight pruning | filters removed | accuracy | events | synops | program B | "
          "µs 1-core | µJ 1-core | µs 8-core | µJ 8-core |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["nna-1core"], r["nna-8core"]
        print(f"| {r['alpha']} | {r['weight_pruning']:.0%} | {r['filter_pruning']:.0%} | "
              f"{r['accuracy']:.4f} | {r['events']:,.0f} | {r['synops']:,.0f} | "
              f"{r['program_bytes']:,} | {1e6 * a['time_s']:.1f} | {1e6 * a['energy_j']:.2f} | "
              f"{1e6 * b['time_s']:.1f} | {1e6 * b['energy_j']:.2f} |")


def _plot(rows, key, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    title, unit, scale = COSTS[key]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, profile in zip(axes, common.PROFILES):
        for alpha, marker in zip(ALPHAS, "os^"):
            sel = [r for r in rows if r["alpha"] == alpha and not r["filter_pruning"]]
            ax.scatter([scale * r[profile][key] for r in sel], [100 * r["accuracy"] for r in sel],
                       marker=marker, label=f"alpha {alpha} (weight pruning 0/50/80 %)")
        wide = [r for r in rows if r["filter_pruning"]]
        ax.scatter([scale * r[profile][key] for r in wide], [100 * r["accuracy"] for r in wide],
                   marker="*", s=120, label="alpha 0.5, 50 % filters removed")
        front = pareto(rows, key, profile)
        ax.plot([scale * r[profile][key] for r in front], [100 * r["accuracy"] for r in front],
                "k--", lw=1, label="Pareto front")
        costs = np.array([scale * r[profile][key] for r in rows])
        accs = np.array([100 * r["accuracy"] for r in rows])
        if len(rows) > 2 and np.all(costs > 0):
            k, c = np.polyfit(np.log10(costs), accs, 1)
            grid = np.linspace(np.log10(costs.min()), np.log10(costs.max()), 20)
            ax.plot(10**grid, k * grid + c, ":", color="grey", label="fitted trade-off line")
        ax.set_xscale("log")
        ax.set_xlabel(f"{title} ({unit}), log scale")
        ax.set_title(f"profile {profile}")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Fashion-MNIST accuracy vs {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
