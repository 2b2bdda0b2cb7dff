"""`keras-nna optimize`: the best accuracy within a budget, from the command line.

    keras-nna optimize model.keras --data fashion_mnist --budget events=2500 \\
        --trials 30 --epochs 2 --train-images 12000 --final-epochs 10 --out search

`model.keras` is a trained float model (logits out). Every trial trains a
candidate from it (see `keras_nna.optimize`), exports it, runs it on the
emulator and prices it on `--profile`; the result table, `result.json` and
`front.png` go to `--out`. With `--final-epochs N` the best point within the
budget is trained again on all data and measured.

Several workers share one study: give each the same `--storage` and `--study`
(`--trials` counts all of them), e.g. two processes on one machine::

    keras-nna optimize m.keras --data fashion_mnist --budget energy_uj=1.2 \\
        --storage search/study.db --study s1 --out search &   # and the same again

or one per machine with `--storage postgresql://user@host/db`.
"""

import os

from keras_nna.cli_args import CliError

__all__ = ["run_optimize"]

DATASETS = ("fashion_mnist", "digits", "faces")


def _load_npz(path):
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            return tuple(f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except KeyError as err:
        raise CliError(f"'{path}' lacks the array {err}: expected x_train, y_train, x_test, "
                       "y_test (uint8 images [N, H, W, C] and integer labels).")
    except (ValueError, OSError) as err:
        raise CliError(f"cannot read '{path}' as a .npz file ({str(err).splitlines()[0]}). "
                       "Save it with np.savez(path, x_train=..., y_train=..., x_test=..., "
                       "y_test=...).")


def load_data(name, input_shape):
    """`(x, y, x_test, y_test)` for `--data`, resized to `input_shape` (H, W, C)."""
    from keras_nna import datasets

    if name is None:
        raise CliError(f"missing --data: expected one of {', '.join(DATASETS)} or a .npz file.", 2)
    if name.endswith(".npz"):
        if not os.path.isfile(name):
            raise CliError(f"data file '{name}' not found (expected an existing .npz file).")
        x, y, xt, yt = _load_npz(name)
    elif name in DATASETS:
        (x, y), (xt, yt) = getattr(datasets, f"load_{name}")()
    else:
        raise CliError(f"unknown --data {name!r}: expected one of {', '.join(DATASETS)} or a "
                       "path ending in .npz.", 2)
    if x.ndim == 3:
        x, xt = x[..., None], xt[..., None]
    h, w, c = input_shape
    if x.shape[1:3] != (h, w):
        x, xt = datasets.resize_images(x, (h, w)), datasets.resize_images(xt, (h, w))
    if x.shape[-1] == 1 and c == 3:
        x, xt = datasets.to_rgb(x), datasets.to_rgb(xt)
    if x.shape[1:] != tuple(input_shape):
        raise CliError(f"--data {name} gives images of shape {x.shape[1:]}, the model expects "
                       f"{tuple(input_shape)}; pass data with {input_shape[-1]} channel(s).")
    return x, y, xt, yt


def _load_model(path):
    from keras_nna.cli import _existing, load_keras_model
    from keras_nna.quantization import is_quantize_wrapper
    from keras_nna.quantization.layer_kinds import iter_layers

    _existing(path, "model")
    model = load_keras_model(path, "a trained float model saved with model.save('m.keras')")
    if any(is_quantize_wrapper(layer) for layer in iter_layers(model)):
        raise CliError(f"'{path}' is already quantized; optimize starts from the float model "
                       "(before quantize_model).")
    return model


def _budget(args):
    from keras_nna.optimize import Budget

    try:
        return Budget.parse(args.budget, profile=args.profile)
    except ValueError as err:
        raise CliError(str(err), 2)


def run_optimize(args):
    """Runs `keras-nna optimize` from parsed arguments; returns the exit status."""
    from keras_nna.optimize import OptimizeResult, optimize, refit

    if not args.budget:
        raise CliError("missing --budget NAME=VALUE: a limit per inference such as "
                       "energy_uj=1.5, time_us=20, events=2500, dram_bytes=1e6 or "
                       "program_bytes=150000 (repeatable).", 2)
    budget = _budget(args)  # usage errors before the slow imports and loads
    for flag in ("trials", "epochs", "qat_epochs", "val_images", "final_epochs"):
        if getattr(args, flag) < (1 if flag in ("trials", "val_images") else 0):
            raise CliError(f"--{flag.replace('_', '-')} must be "
                           f"{'>= 1' if flag in ('trials', 'val_images') else '>= 0'}; received "
                           f"{getattr(args, flag)}.", 2)
    if not args.model:
        raise CliError("missing MODEL.keras: the trained float model to start from.", 2)
    model = _load_model(args.model)
    data = load_data(args.data, model.input_shape[1:])
    print(f"optimize: {args.trials} trials, budget {budget.describe()}, data {args.data} "
          f"({len(data[0])} train / {min(len(data[2]), args.val_images)} validation images)")
    try:
        result = optimize(model, data, budget, n_trials=args.trials, objective=args.objective,
                          epochs=args.epochs, qat_epochs=args.qat_epochs,
                          train_images=args.train_images, val_images=args.val_images,
                          storage=args.storage, study_name=args.study, out_dir=args.out,
                          seed=args.seed)
    except (ValueError, ImportError) as err:
        raise CliError(str(err).splitlines()[0])
    assert isinstance(result, OptimizeResult)
    if not result.points:
        raise CliError(f"no trial finished ({len(result.failed)} failed); the first error: "
                       f"{result.failed[0]['error'] if result.failed else 'none recorded'}")
    print(result.table())
    result.plot(os.path.join(args.out, "front.png"))
    print(result.summary())
    best = result.best_within()
    if args.final_epochs and best is not None:
        final = refit(best, model, data[:2] + (data[2][:args.val_images], data[3][:args.val_images]),
                      budget, epochs=args.final_epochs, qat_epochs=max(args.qat_epochs, 1),
                      out_dir=os.path.join(args.out, "final"), seed=args.seed)
        print(f"final: accuracy {final.accuracy:.4f}, "
              + ", ".join(f"{k} {v:,.4g}" for k, v in final.costs.items())
              + f", within budget: {'yes' if final.feasible else 'NO'}; saved {final.model_path}")
    print(f"Wrote {os.path.join(args.out, 'result.json')} and front.png.")
    return 0
