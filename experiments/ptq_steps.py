"""Which 4-bit activation step suits a model: accuracy quantized without QAT.

A quick check behind the "finer step" finding of ``eliminate_then_reduce.py``:
quantize a saved float model with ``quantize_model`` (no training) for a few
``activation_max`` values and print test accuracy and events per image, plus the
step a mean-squared-error criterion would choose from the float ReLU outputs.

    python experiments/recipe_tries.py --float_model reports/eliminate_then_reduce/float_model.keras \\
        --ft_epochs 5 --activation_max 4 --teacher float --hoyer 1.2 --l1 0.12 --qat_epochs 0 \\
        --save_float reports/reg_float.keras
    python experiments/ptq_steps.py reports/reg_float.keras
"""

import argparse
import os

import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials"))
import common  # noqa: E402  (the tutorials' shared steps)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a saved float Keras model (Fashion-MNIST 28x28x1)")
    p.add_argument("--activation_max", type=float, nargs="+", default=[4.0, 2.0])
    p.add_argument("--images", type=int, default=1000, help="images for events and the MSE")
    args = p.parse_args(argv)
    import keras

    import keras_nna  # noqa: F401 - registers the layers for load_model
    from keras_nna.calibration import activation_step_sweep, format_step_sweep

    _, _, xt, yt = common.fashion_mnist(False, limit_train=1, limit_test=10000)
    model = keras.models.load_model(args.model)
    common.log(f"float: accuracy {common.accuracy(model, xt, yt):.4f}")
    rows = activation_step_sweep(model, xt, yt, activation_max=args.activation_max,
                                 max_images=args.images)
    print(format_step_sweep(rows))
    common.log(f"MSE would choose step {min(rows, key=lambda r: r['relu_mse'])['step']}")
    return rows


if __name__ == "__main__":
    main()
