"""`keras-nna allocate`: per-layer bit widths within a budget, from the command line.

    keras-nna allocate model.keras --data fashion_mnist --budget program_bytes=99000 \\
        --weight-bits 1,2,4,8 --out bits

`model.keras` is a trained float model (logits out). Sensitivity is measured on
the last `--val-images` training images; each option is priced on `--profile`
(`keras_nna.optimize.allocate_bits`). Writes `policy.json` (the
`QuantizationPolicy` config: `QuantizationPolicy.from_config(json.load(f))`)
and `allocation.json` (the table) to `--out`. With `--qat-epochs N` the model is
then quantized with that policy, fine-tuned on the other training images,
measured on the test images, and saved as `model.keras` and `program.nnab`.
"""

import json
import os

from keras_nna.cli_args import CliError
from keras_nna.cli_optimize import _budget, _load_model, load_data

__all__ = ["run_allocate"]


def _widths(text, flag):
    if text is None:
        return None
    try:
        return tuple(int(b) for b in text.split(","))
    except ValueError:
        raise CliError(f"{flag} expects comma-separated bit widths such as 1,2,4,8; "
                       f"received {text!r}.", 2) from None


def _qat(model, policy, data, epochs, out, profile):
    import keras
    import numpy as np

    from keras_nna.optimize import measure_cost
    from keras_nna.quantization import quantize_model

    x, y, xt, yt = data
    qmodel = quantize_model(model, policy)
    qmodel.compile(keras.optimizers.Adam(5e-4),
                   keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    qmodel.fit(x.astype("float32"), y, batch_size=128, epochs=epochs, verbose=2)
    cost = measure_cost(qmodel, xt, yt, profile=profile)
    qmodel.save(os.path.join(out, "model.keras"))
    with open(os.path.join(out, "program.nnab"), "wb") as f:
        f.write(cost.program.to_bytes())
    acc = float(np.mean(qmodel.predict(xt.astype("float32"), verbose=0).argmax(-1) == yt))
    print(f"QAT: accuracy {acc:.4f} on {len(xt)} test images, bit-exact: "
          f"{'yes' if cost.bit_exact else 'NO'}, "
          + ", ".join(f"{k} {v:,.4g}" for k, v in cost.costs.items()))


def run_allocate(args):
    """Runs `keras-nna allocate` from parsed arguments; returns the exit status."""
    from keras_nna.optimize import allocate_bits

    if not args.budget:
        raise CliError("missing --budget NAME=VALUE: a limit per inference such as "
                       "program_bytes=99000 or energy_uj=0.8 (repeatable).", 2)
    budget = _budget(args)
    weight_bits = _widths(args.weight_bits, "--weight-bits")
    activation_bits = _widths(args.activation_bits, "--activation-bits")
    if args.val_images < 1 or args.qat_epochs < 0:
        raise CliError(f"--val-images must be >= 1 and --qat-epochs >= 0; received "
                       f"{args.val_images} and {args.qat_epochs}.", 2)
    if not args.model:
        raise CliError("missing MODEL.keras: the trained float model to allocate bits for.", 2)
    model = _load_model(args.model)
    x, y, xt, yt = load_data(args.data, model.input_shape[1:])
    n_val = min(args.val_images, len(x) // 2)
    print(f"allocate: budget {budget.describe()}, sensitivity on {n_val} held-out training images")
    try:
        alloc = allocate_bits(model, (x[-n_val:], y[-n_val:]), budget, weight_bits=weight_bits,
                              activation_bits=activation_bits, first_layer=args.first_layer)
    except (ValueError, ImportError) as err:
        raise CliError(str(err).splitlines()[0])
    print(alloc.summary())
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "policy.json"), "w") as f:
        json.dump(alloc.policy.get_config(), f, indent=2)
    with open(os.path.join(args.out, "allocation.json"), "w") as f:
        json.dump(alloc.to_dict(), f, indent=2)
    if args.qat_epochs:
        _qat(model, alloc.policy, (x[:-n_val], y[:-n_val], xt, yt), args.qat_epochs, args.out,
             budget.profile)
    print(f"Wrote {os.path.join(args.out, 'policy.json')} and allocation.json.")
    return 0
