"""Does the search's front dominate tutorials/tradeoff.py's hand-made line? (issue-13 target)

The hand-made line (tutorials/README.md, section 4): Fashion-MNIST 12k train / 2k
test at 28×28×1, AkidaNet alpha 0.25/0.5/1.0 × weight pruning 0/50/80 % and one
wide-then-filter-pruned point, each 5 float + 1 QAT epochs, energy on nna-1core.

The search here gets the same data and the same epochs per point: a start model
(AkidaNet 0.25, 3 epochs), then every trial 2 fine-tune + 1 QAT epochs from it,
with no budget limit (it maps the whole line) and energy as its cost. Trials are
judged on a validation split of the training set (2,000 images not among the
12k); every front point's saved model is then measured on the 2k test images, and
for each energy of the hand-made line the best front accuracy within that energy
is compared with the hand-made point's.

    python benchmarks/optimize_tradeoff.py --trials 24     # about 20 min on 2 cores

Prints a table and writes ``benchmarks/results/optimize_tradeoff.json``.
"""

import argparse
import os
import sys
import time

from _results import default_path, write_result

# tutorials/README.md section 4 (nna-1core energy µJ, test accuracy), 2026-11-22.
HAND_LINE = [("alpha 0.25, 0 %", 1.66, 0.8585), ("alpha 0.25, 50 %", 1.33, 0.8420),
             ("alpha 0.25, 80 %", 1.06, 0.8285), ("alpha 0.5, 0 %", 4.58, 0.8790),
             ("alpha 0.5, 50 %", 3.29, 0.8690), ("alpha 0.5, 80 %", 2.32, 0.8530),
             ("alpha 1.0, 0 %", 310.24, 0.8900), ("alpha 1.0, 50 %", 226.03, 0.8830),
             ("alpha 1.0, 80 %", 5.77, 0.8735), ("alpha 0.5, 50 % filters removed", 1.67, 0.8800)]


def _data(quick):
    from keras_nna import datasets

    n_train, n_val, n_test = (256, 128, 128) if quick else (12000, 2000, 2000)
    (x, y), (xt, yt) = datasets.load_fashion_mnist(limit_train=n_train + n_val, limit_test=n_test)
    x, xt = (a[..., None] if a.ndim == 3 else a for a in (x, xt))
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], xt, yt


def _start(x, y, epochs):
    import keras

    from keras_nna.models import AkidaNet

    keras.utils.set_random_seed(0)
    model = AkidaNet(input_shape=x.shape[1:], alpha=0.25, classes=10, bn_momentum=0.9)
    steps = epochs * -(-len(x) // 64)
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32"), y, batch_size=64, epochs=epochs, verbose=0)
    return model


def _test_front(result, xt, yt):
    """Each front point's saved quantized model measured on the test images."""
    import keras

    import keras_nna  # noqa: F401  (registers the layers)
    from keras_nna.optimize import measure_cost

    rows = []
    for p in result.front("energy_uj"):
        cost = measure_cost(keras.models.load_model(p.model_path), xt, yt, "nna-1core")
        rows.append({"trial": p.number, "recipe": p.recipe, "val_accuracy": p.accuracy,
                     "test_accuracy": cost.accuracy, "energy_uj": cost.costs["energy_uj"],
                     "events": cost.costs["events"], "bit_exact": cost.bit_exact})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--out_dir", default=os.path.join("reports", "optimize_tradeoff"))
    parser.add_argument("--json", default=default_path("optimize_tradeoff"))
    args = parser.parse_args(argv)
    from keras_nna.optimize import Budget, SearchSpace, optimize

    t0 = time.time()
    x, y, xv, yv, xt, yt = _data(args.quick)
    start = _start(x, y, 1 if args.quick else 3)
    print(f"[{time.time() - t0:6.0f} s] start model trained; searching {args.trials} trials")
    result = optimize(start, (x, y, xv, yv), Budget("nna-1core"), n_trials=args.trials,
                      space=SearchSpace(width=(0.75, 2.0)), objective="energy_uj",
                      epochs=1 if args.quick else 2, qat_epochs=1, val_images=len(xv),
                      storage=os.path.join(args.out_dir, "study.db"), study_name="tradeoff",
                      out_dir=args.out_dir)
    front = _test_front(result, xt, yt)
    result.plot(os.path.join(args.out_dir, "front.png"),
                reference=sorted([(n, e, a) for n, e, a in HAND_LINE if e < 10], key=lambda r: r[1]))
    print("\n| hand-made point | µJ | accuracy | best search front point within µJ | accuracy | wins |")
    print("|---|---|---|---|---|---|")
    compared, wins = [], 0
    for name, energy, acc in HAND_LINE:
        ok = [r for r in front if r["energy_uj"] <= energy]
        best = max(ok, key=lambda r: r["test_accuracy"], default=None)
        win = best is not None and best["test_accuracy"] > acc
        wins += win
        compared.append({"hand": name, "energy_uj": energy, "accuracy": acc, "search": best,
                         "search_wins": win})
        print(f"| {name} | {energy:.2f} | {acc:.4f} | "
              + (f"trial {best['trial']}, {best['energy_uj']:.2f} µJ | {best['test_accuracy']:.4f}"
                 if best else "none | -") + f" | {'yes' if win else 'no'} |")
    print(f"\nthe search's front is more accurate at {wins} of {len(HAND_LINE)} budgets "
          f"(target: >= 3); {len(result.points)} trials, {(time.time() - t0) / 60:.1f} min")
    out = {"command": "python benchmarks/optimize_tradeoff.py " + " ".join(argv or sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d"), "minutes": round((time.time() - t0) / 60, 1),
           "trials": len(result.points) + len(result.failed), "front_on_test": front,
           "compared": compared, "wins": wins, "target_met": wins >= 3}
    if not args.quick:
        write_result(out, args.json)
    return out


if __name__ == "__main__":
    main()
