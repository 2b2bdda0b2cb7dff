"""Tutorial 5 — Meet a budget: the best accuracy within X events (or µJ) per inference.

Instead of hand-tuning regularizer strengths, activation steps, widths and
teachers (tutorial 2), tell keras_nna the budget and let it search:

1. train a float AkidaNet 0.25 (the *start model*; Fashion-MNIST at 28×28×1);
2. the **baseline**: the start model with the same fine-tune and QAT epochs as
   the final model, nothing added; its events and energy set the budgets;
3. **search** (:func:`keras_nna.optimize.optimize`, Optuna, multi-objective:
   accuracy vs events, the budget ``events <= --event_fraction x baseline`` as a
   constraint) over width, MorphNet shrink, sensitivity-seeded pruning, Hoyer
   strength, activation step and distillation. Trials are proxies (a train
   subset, few epochs), judged on a validation split of the *training* set;
   ``--workers 2`` runs a second worker process (the ``keras-nna optimize``
   command) on the same SQLite study;
4. **refit** the best point within the budget with the baseline's epochs on all
   training images, and measure it on the test set;
5. **MorphNet** (:func:`keras_nna.optimize.morph`): shrink the start model with
   an event-cost-weighted BN-gamma penalty, expand all widths to the baseline's
   energy on ``nna-1core``, fine-tune distilled from the start model, QAT: more
   accuracy at the same energy?

Every reported point is exported and checked bit-exact on the emulator.

    python tutorials/meet_a_budget.py --workers 2     # full run (see tutorials/README.md)
    python tutorials/meet_a_budget.py --quick         # smoke test, about a minute

Writes ``meet_a_budget.json``, ``meet_a_budget.md``, ``front.png`` (and the
study, every trial's model and program) into ``--out_dir``.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import common


def _parser():
    p = argparse.ArgumentParser(description="Meet a budget: search for the best accuracy "
                                "within an event budget")
    p.add_argument("--quick", action="store_true", help="tiny data and trials (smoke test)")
    p.add_argument("--out_dir", default=os.path.join("reports", "meet_a_budget"))
    p.add_argument("--epochs", type=int, default=10, help="float epochs of the start model")
    p.add_argument("--ft_epochs", type=int, default=10, help="fine-tune epochs: baseline, final")
    p.add_argument("--qat_epochs", type=int, default=2, help="QAT epochs: baseline, final")
    p.add_argument("--trials", type=int, default=24, help="search trials (all workers)")
    p.add_argument("--trial_epochs", type=int, default=2, help="float epochs per trial")
    p.add_argument("--trial_images", type=int, default=12000, help="train images per trial")
    p.add_argument("--val_images", type=int, default=2000, help="validation split (from train)")
    p.add_argument("--event_fraction", type=float, default=0.4,
                   help="budget: events <= this fraction of the baseline's (0.4 = 2.5x fewer)")
    p.add_argument("--workers", type=int, default=1, help="worker processes sharing the study")
    p.add_argument("--skip_morph", action="store_true", help="skip the MorphNet experiment")
    return p


def _start_model(x, y, epochs, path):
    import keras

    from keras_nna.models import AkidaNet

    keras.utils.set_random_seed(0)
    model = AkidaNet(input_shape=x.shape[1:], alpha=0.25, classes=10, bn_momentum=0.9)
    line = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: common.log(
        f"start model epoch {e + 1}/{epochs}: loss {logs['loss']:.4f}"))
    common.fit(model, x, y, epochs, callbacks=[line])
    model.save(path)
    return model


def _spawn_workers(args, start_path, data, budget):
    """Starts `--workers - 1` `keras-nna optimize` processes on the same study."""
    x, y, xv, yv = data
    npz = os.path.join(args.out_dir, "search_data.npz")
    np.savez(npz, x_train=x, y_train=y, x_test=xv, y_test=yv)
    cmd = [sys.executable, "-m", "keras_nna.cli", "optimize", start_path, "--data", npz,
           "--trials", str(args.trials), "--epochs", str(args.trial_epochs),
           "--qat-epochs", "1", "--train-images", str(args.trial_images),
           "--val-images", str(len(xv)), "--storage", os.path.join(args.out_dir, "study.db"),
           "--study", "meet_a_budget", "--out", os.path.join(args.out_dir, "search"),
           "--profile", "nna-1core"] + [f"--budget={k}={v}" for k, v in budget.limits.items()]
    procs = []
    for i in range(1, args.workers):
        log = open(os.path.join(args.out_dir, f"worker_{i}.log"), "w")
        procs.append(subprocess.Popen(cmd + ["--seed", str(i)], stdout=log,
                                      stderr=subprocess.STDOUT))
        common.log(f"worker {i} started: pid {procs[-1].pid} (log worker_{i}.log)")
    return procs


def _search(args, start, start_path, data, budget):
    from keras_nna.optimize import SearchSpace, load_result, optimize

    procs = _spawn_workers(args, start_path, data, budget) if args.workers > 1 else []
    space = SearchSpace(width=(0.75, 2.0), hoyer=(0.0, 2.0))
    result = optimize(start, data, budget, n_trials=args.trials, space=space,
                      epochs=args.trial_epochs, qat_epochs=1, train_images=args.trial_images,
                      val_images=len(data[2]), storage=os.path.join(args.out_dir, "study.db"),
                      study_name="meet_a_budget", out_dir=os.path.join(args.out_dir, "search"))
    for p in procs:
        if p.wait() != 0:
            common.log(f"worker pid {p.pid} exited with {p.returncode}")
    if procs:  # the study now holds every worker's trials
        result = load_result(os.path.join(args.out_dir, "study.db"), "meet_a_budget", budget,
                             out_dir=result.out_dir)
    return result


def _morph(args, start, x, y, xt, yt, baseline):
    from keras_nna.optimize import Budget, Recipe, morph, refit

    budget = Budget("nna-1core", energy_uj=baseline.costs["energy_uj"])
    common.log(f"MorphNet: shrink, expand to {budget.describe()}, fine-tune")
    out = morph(start, x, y, budget, images=x[:128 if args.quick else 1000],
                shrink_epochs=1 if args.quick else 3, strength=0.05, threshold=0.05,
                shrink_lr=1e-2, finetune_epochs=args.ft_epochs, distill=True, verbose=1)
    # (quick: no fine-tune, so no narrowing rounds; the plumbing runs in about 30 s)
    # QAT of the morphed model (distilled from the start model), measured like the others.
    point = refit(Recipe(distill=True), out.model, (x, y, xt, yt), budget, epochs=0,
                  qat_epochs=args.qat_epochs, teacher=start,
                  out_dir=os.path.join(args.out_dir, "morph"))
    point.recipe = {"morph": True, "multiplier": round(float(out.multiplier), 4)}
    return point, out


def _row(label, p, base):
    return {"label": label, "accuracy": p.accuracy, "loss_points": round(100 * (base.accuracy - p.accuracy), 2),
            "events": p.costs["events"], "fewer_events": round(base.costs["events"] / p.costs["events"], 3),
            "energy_uj": p.costs["energy_uj"], "program_bytes": p.costs["program_bytes"],
            "params": p.params, "bit_exact": p.bit_exact, "recipe": p.recipe, "feasible": p.feasible}


def _report(args, rows, result, t0):
    lines = ["| model | accuracy | loss (pt) | events | fewer events | µJ (nna-1core) | program B |"
             " bit-exact |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['accuracy']:.4f} | {r['loss_points']:+.2f} | "
                     f"{r['events']:,.0f} | {r['fewer_events']:.2f}x | {r['energy_uj']:.3f} | "
                     f"{r['program_bytes']:,.0f} | {'yes' if r['bit_exact'] else 'NO'} |")
    text = "\n".join(lines) + "\n\nSearch:\n\n" + result.table() + "\n\n" + result.summary() + "\n"
    print(text)
    with open(os.path.join(args.out_dir, "meet_a_budget.md"), "w") as f:
        f.write(text)
    out = {"rows": rows, "search": result.to_dict(), "minutes": round((time.time() - t0) / 60, 1),
           "date": time.strftime("%Y-%m-%d"), "args": vars(args)}
    with open(os.path.join(args.out_dir, "meet_a_budget.json"), "w") as f:
        json.dump(out, f, indent=2, default=str)
    result.plot(os.path.join(args.out_dir, "front.png"))
    return out


def main(argv=None):  # long: the tutorial's steps, in order
    args = _parser().parse_args(argv)
    if args.quick:
        args.epochs, args.ft_epochs, args.qat_epochs, args.trials = 1, 0, 1, 1
        args.trial_epochs, args.trial_images, args.val_images = 1, 256, 128
    os.makedirs(args.out_dir, exist_ok=True)
    t0 = time.time()
    from keras_nna.optimize import Budget, Recipe, refit

    x, y, xt, yt = common.fashion_mnist(args.quick, limit_train=60000, limit_test=10000)
    split = len(x) - args.val_images
    xs, ys, xv, yv = x[:split], y[:split], x[split:], y[split:]
    common.log(f"data: {len(xs)} train, {len(xv)} validation (search), {len(xt)} test")
    start_path = os.path.join(args.out_dir, "start.keras")
    start = _start_model(xs, ys, args.epochs, start_path)
    common.log(f"start model: {args.epochs} epochs, test accuracy {common.accuracy(start, xt, yt):.4f}")
    full = (xs, ys, xt, yt)
    baseline = refit(Recipe(), start, full, Budget("nna-1core"), epochs=args.ft_epochs,
                     qat_epochs=args.qat_epochs, out_dir=os.path.join(args.out_dir, "baseline"))
    common.log(f"baseline: accuracy {baseline.accuracy:.4f}, events {baseline.costs['events']:,.0f},"
               f" {baseline.costs['energy_uj']:.3f} µJ")
    budget = Budget("nna-1core", events=round(args.event_fraction * baseline.costs["events"], 1))
    result = _search(args, start, start_path, (xs, ys, xv, yv), budget)
    common.log(result.summary())
    rows = [_row("baseline (same epochs)", baseline, baseline)]
    best = result.best_within()
    if best is not None:
        final = refit(best, start, full, budget, epochs=args.ft_epochs, qat_epochs=args.qat_epochs,
                      out_dir=os.path.join(args.out_dir, "final"))
        rows.append(_row(f"search: best within {budget.describe()}", final, baseline))
    if not args.skip_morph:
        point, _ = _morph(args, start, xs, ys, xt, yt, baseline)
        rows.append(_row("MorphNet at the baseline's energy", point, baseline))
    return _report(args, rows, result, t0)


if __name__ == "__main__":
    main()
