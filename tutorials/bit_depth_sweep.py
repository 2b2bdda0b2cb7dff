"""Tutorial 3 — Bit-depth sweep: how many bits does each tensor need?

A float AkidaNet (alpha 0.25, Fashion-MNIST at its native 28×28×1) is
quantized with weights at 8 / 6 / 5 / 4 / 2 / 1 bits and activations at 4 or 8
bits (first layer always 8-bit weights; with 1-bit weights the classifier keeps
4 bits), once without retraining (post-training quantization: `quantize_model`
then evaluate) and once with a short QAT fine-tune. Then the bits are chosen
per layer instead: `keras_nna.optimize.allocate_bits` measures how much the
loss grows when each layer alone is lowered to 1 / 2 / 4 / 8 bits, prices each
choice with the cost model, and solves the allocation exactly under a program
size budget (the uniform 4-bit size, and 75 % of it); the chosen
`QuantizationPolicy` is then trained with the same QAT. For every variant we
export, emulate and read the cost: accuracy, program size, events and estimated
energy per inference.

    python tutorials/bit_depth_sweep.py            # ~5 min on 2 cores
    python tutorials/bit_depth_sweep.py --quick

Writes `bit_depth_sweep.json` and `bit_depth_sweep.png` into `--out_dir`.
"""

import argparse
import json
import os
import time

import common

WEIGHT_BITS = (8, 6, 5, 4, 2, 1)
ACTIVATION_BITS = (8, 4)
BUDGET_FRACTIONS = (1.0, 0.75)  # allocated rows: program bytes vs the uniform 4-bit program


def _policy(wbits, abits):
    """Uniform weights (8-bit first layer); 1-bit weights keep a 4-bit classifier."""
    from keras_nna.quantization import QuantizationPolicy

    last = {"classifier": {"weight_bits": 4}} if wbits == 1 else None
    return QuantizationPolicy(weight_bits=wbits, activation_bits=abits, overrides=last)


def _row(label, wbits, abits, retrain, qmodel, xt, yt, quick):
    acc = common.accuracy(qmodel, xt, yt)
    deployed, _, _ = common.deploy(qmodel, xt, yt, max_images=200 if quick else 1000)
    row = {"weight_bits": wbits, "activation_bits": abits, "retrained": retrain, "label": label,
           "accuracy": round(acc, 4), **deployed}
    common.log(f"{label} {'QAT' if retrain else 'PTQ'}: acc {acc:.4f}, "
               f"{row['program_bytes']:,} B, "
               f"{1e6 * row['nna-1core'].get('energy_j', float('nan')):.2f} µJ")
    return row


def _allocated_rows(base, x, y, xt, yt, quick, uniform_bytes):
    """QAT of the policies `allocate_bits` chooses under program-size budgets."""
    from keras_nna.optimize import Budget, allocate_bits

    rows, n_val = [], len(x) // 12  # sensitivity on held-out training images, not the test set
    fractions = BUDGET_FRACTIONS[:1] if quick else BUDGET_FRACTIONS
    for fraction in fractions:
        budget = Budget("nna-1core", program_bytes=fraction * uniform_bytes)
        alloc = allocate_bits(base, (x[-n_val:], y[-n_val:]), budget,
                              weight_bits=(1, 8) if quick else (1, 2, 4, 8),
                              max_val=1000, max_images=4 if quick else 64, verbose=0)
        common.log(f"allocated under {budget.describe()} in {alloc.seconds:.0f} s: "
                   + ", ".join(f"{k} w{v['weights']}" for k, v in alloc.choice().items()))
        qmodel = common.qat(common.clone(base), x, y, alloc.policy, epochs=1)
        row = _row(f"mixed ≤{fraction:.0%}", "mixed", 4, True, qmodel, xt, yt, quick)
        row.update(budget_bytes=round(fraction * uniform_bytes), allocation=alloc.choice(),
                   allocation_seconds=round(alloc.seconds, 1))
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description="Bit-depth sweep")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out_dir", default=os.path.join("reports", "bit_depth_sweep"))
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    import keras

    from keras_nna.models import AkidaNet

    keras.utils.set_random_seed(0)
    x, y, xt, yt = common.fashion_mnist(args.quick)
    epochs = 1 if args.quick else 6
    base = AkidaNet(input_shape=x.shape[1:], alpha=0.25, classes=10, bn_momentum=0.9)
    common.fit(base, x, y, epochs)
    float_acc = common.accuracy(base, xt, yt)
    common.log(f"float accuracy {float_acc:.4f}")
    rows = []
    weight_bits = (4, 1) if args.quick else WEIGHT_BITS
    for abits in ACTIVATION_BITS[-1:] if args.quick else ACTIVATION_BITS:
        for wbits in weight_bits:
            for retrain in (False, True):
                qmodel = common.qat(common.clone(base), x, y, _policy(wbits, abits),
                                    epochs=(1 if retrain else 0))
                rows.append(_row(f"w{wbits}/a{abits}", wbits, abits, retrain, qmodel, xt, yt,
                                 args.quick))
    uniform4 = next(r for r in rows if r["label"] == "w4/a4" and r["retrained"])
    rows += _allocated_rows(base, x, y, xt, yt, args.quick, uniform4["program_bytes"])
    print("\n| weights | acts | retrained | accuracy | program bytes | events | energy µJ (1-core) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        wbits = r["label"] if r["weight_bits"] == "mixed" else r["weight_bits"]
        print(f"| {wbits} | {r['activation_bits']} | {'QAT' if r['retrained'] else 'no'} | "
              f"{r['accuracy']:.4f} | {r['program_bytes']:,} | {r['events']:,.0f} | "
              f"{1e6 * r['nna-1core'].get('energy_j', float('nan')):.2f} |")
    result = {"float_accuracy": float_acc, "rows": rows, "date": time.strftime("%Y-%m-%d"),
              "model": f"AkidaNet alpha=0.25 input={tuple(x.shape[1:])}"}
    with open(os.path.join(args.out_dir, "bit_depth_sweep.json"), "w") as f:
        json.dump(result, f, indent=2)
    _plot(rows, float_acc, os.path.join(args.out_dir, "bit_depth_sweep.png"))
    common.log(f"report written to {os.path.abspath(args.out_dir)}")
    return result


def _plot(rows, float_acc, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for abits in ACTIVATION_BITS:
        for retrain, style in ((False, "--"), (True, "-")):
            sel = [r for r in rows if r["activation_bits"] == abits and r["retrained"] == retrain
                   and r["weight_bits"] != "mixed"]
            ax.plot([r["program_bytes"] / 1e3 for r in sel], [100 * r["accuracy"] for r in sel], style,
                    marker="o", label=f"{abits}-bit activations, {'QAT' if retrain else 'no retraining'}")
            for r in sel:
                ax.annotate(f"w{r['weight_bits']}", (r["program_bytes"] / 1e3, 100 * r["accuracy"]),
                            fontsize=7)
    mixed = [r for r in rows if r["weight_bits"] == "mixed"]
    ax.plot([r["program_bytes"] / 1e3 for r in mixed], [100 * r["accuracy"] for r in mixed], "*",
            color="red", markersize=10, label="allocated mix (4-bit activations), QAT")
    for r in mixed:
        ax.annotate(r["label"], (r["program_bytes"] / 1e3, 100 * r["accuracy"]), fontsize=7)
    ax.axhline(100 * float_acc, color="grey", lw=0.8, label="float")
    ax.set_xlabel("program size (kB)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Fashion-MNIST: accuracy vs program size by bit depth")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
