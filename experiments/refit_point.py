"""Refits one point of a finished meet_a_budget search (e.g. after a fix), as the tutorial does.

    python experiments/refit_point.py --out_dir reports/meet_a_budget --trial 20

Loads the tutorial's start model and search result, retrains the trial's recipe on all
training images with the tutorial's epochs and measures it on the test set.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tutorials"))
import common  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out_dir", default=os.path.join("reports", "meet_a_budget"))
    p.add_argument("--trial", type=int, required=True)
    p.add_argument("--ft_epochs", type=int, default=10)
    p.add_argument("--qat_epochs", type=int, default=2)
    args = p.parse_args(argv)
    import keras

    import keras_nna  # noqa: F401
    from keras_nna.optimize import OptimizeResult, Recipe, refit

    result = OptimizeResult.load(os.path.join(args.out_dir, "search", "result.json"))
    point = next(q for q in result.points if q.number == args.trial)
    x, y, xt, yt = common.fashion_mnist(False, limit_train=60000, limit_test=10000)
    split = len(x) - 2000
    start = keras.models.load_model(os.path.join(args.out_dir, "start.keras"))
    final = refit(Recipe(**point.recipe), start, (x[:split], y[:split], xt, yt), result.budget,
                  epochs=args.ft_epochs, qat_epochs=args.qat_epochs,
                  out_dir=os.path.join(args.out_dir, f"refit_trial_{args.trial}"))
    print(json.dumps(final.to_attrs(), indent=2))
    return final


if __name__ == "__main__":
    main()
