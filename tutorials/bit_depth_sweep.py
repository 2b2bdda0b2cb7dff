"""Tutorial 3 — Bit-depth sweep: how many bits does each tensor need?

A float AkidaNet (alpha 0.25, Fashion-MNIST at its native 28×28×1) is
quantized with weights at 8 / 6 / 5 / 4 bits and activations at 4 or 8 bits
(first layer always 8-bit weights), once without retraining (post-training
quantization: `quantize_model` then evaluate) and once with a short QAT
fine-tune. For every variant we export, emulate and read the cost: accuracy,
program size and estimated energy per inference.

    python tutorials/bit_depth_sweep.py            # ~5 min on 2 cores
    python tutorials/bit_depth_sweep.py --quick

Writes `bit_depth_sweep.json` and `bit_depth_sweep.png` into `--out_dir`.
"""

import argparse
import json
import os
import time

import common

WEIGHT_BITS = (8, 6, 5, 4)
ACTIVATION_BITS = (8, 4)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Bit-depth sweep")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out_dir", default=os.path.join("reports", "bit_depth_sweep"))
    args = parser.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    import keras

    from keras_nna.models import AkidaNet
    from keras_nna.quantization import QuantizationPolicy

    keras.utils.set_random_seed(0)
    x, y, xt, yt = common.fashion_mnist(args.quick)
    epochs = 1 if args.quick else 6
    base = AkidaNet(input_shape=x.shape[1:], alpha=0.25, classes=10, bn_momentum=0.9)
    common.fit(base, x, y, epochs)
    float_acc = common.accuracy(base, xt, yt)
    common.log(f"float accuracy {float_acc:.4f}")
    rows = []
    weight_bits = WEIGHT_BITS[-2:] if args.quick else WEIGHT_BITS
    for abits in ACTIVATION_BITS:
        for wbits in weight_bits:
            policy = QuantizationPolicy(weight_bits=wbits, activation_bits=abits)
            for retrain in (False, True):
                qmodel = common.qat(common.clone(base), x, y, policy, epochs=(1 if retrain else 0))
                acc = common.accuracy(qmodel, xt, yt)
                deployed, _, _ = common.deploy(qmodel, xt, yt, max_images=200 if args.quick else 1000)
                row = {"weight_bits": wbits, "activation_bits": abits, "retrained": retrain,
                       "accuracy": round(acc, 4), **deployed}
                rows.append(row)
                common.log(f"w{wbits}/a{abits} {'QAT' if retrain else 'PTQ'}: acc {acc:.4f}, "
                           f"{row['program_bytes']:,} B, "
                           f"{1e6 * row['nna-1core'].get('energy_j', float('nan')):.2f} µJ")
    print("\n| weights | acts | retrained | accuracy | program bytes | events | energy µJ (1-core) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['weight_bits']} | {r['activation_bits']} | {'QAT' if r['retrained'] else 'no'} | "
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
            sel = [r for r in rows if r["activation_bits"] == abits and r["retrained"] == retrain]
            ax.plot([r["program_bytes"] / 1e3 for r in sel], [100 * r["accuracy"] for r in sel], style,
                    marker="o", label=f"{abits}-bit activations, {'QAT' if retrain else 'no retraining'}")
            for r in sel:
                ax.annotate(f"w{r['weight_bits']}", (r["program_bytes"] / 1e3, 100 * r["accuracy"]),
                            fontsize=7)
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
