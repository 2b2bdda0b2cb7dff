"""One regularizer + distillation recipe, from a saved float model: the harness behind the tries.

``eliminate_then_reduce.py`` runs every stage of the tutorial. This script runs a
single "regularizer + KD" variant from the float model that the tutorial saved, so
a recipe can be tried in ~9 minutes on one core (two tries side by side on two
cores). Its defaults are the tutorial's (10 fine-tune + 2 QAT epochs, ``hoyer 1.4,
l1 0.14``, step 1/8 via ``--activation_max 2.0``, the tutorial's saved AkidaNet 0.5
teacher). ``--activation_max`` sets the QAT policy and ``--cap_max`` the one whose
top caps the float ReLUs (default: the same). It also has knobs that are *not* in
the product, for the record of what was tried and did not help:

- ``--capped_l1 S --capped_l1_width W``: adds ``S * mean(min(x, W) / W)``, an L0
  surrogate that pushes small activations to zero and leaves large ones alone;
- ``--ramp F``: the regularizer strength grows linearly from 0 to its value over
  the first fraction ``F`` of the fine-tune steps;
- ``--teacher PATH``: distil from another saved model (``float``: the float model);
- ``--qat_teacher student``: in QAT, distil from the fine-tuned float student
  instead of the float model.

Events are counted as in the tutorial (non-zero 4-bit codes the layers receive,
input pixels included, mean over the first 1,000 test images; they match the
emulator's count to the event). Each run appends one JSON line to ``--out``.

    python tutorials/eliminate_then_reduce.py --jobs 2          # saves the float model
    python experiments/recipe_tries.py --float_model reports/eliminate_then_reduce/float_model.keras \\
        --hoyer 2.0 --l1 0                                       # one try
"""

import argparse
import json
import os
import time

import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tutorials"))
import common  # noqa: E402  (the tutorials' shared steps)


_TRY = {"scale": None, "capped_l1": 0.0, "width": 0.5}  # process-wide: survives clone/quantize


def _try_regularizer_class():
    import keras
    import tensorflow as tf

    from keras_nna import sparsity

    @keras.saving.register_keras_serializable(package="recipe_tries")
    class TryRegularizer(sparsity.ActivityRegularizer):
        """ActivityRegularizer × the ramp scale, + the capped-L1 term (state in _TRY)."""

        def __call__(self, x):
            loss = super().__call__(x)
            if _TRY["capped_l1"]:
                x = tf.cast(x, tf.float32)
                n = tf.cast(tf.reduce_prod(tf.shape(x)[1:]), tf.float32)
                w = _TRY["width"]
                loss += _TRY["capped_l1"] * tf.reduce_sum(tf.minimum(tf.where(x >= 0, x, -x), w)) / w / n
            return _TRY["scale"] * loss

    return TryRegularizer


def _wrap_regularizers(model):
    """Replaces each ActivityRegularizer by one with the try-only terms."""
    from keras_nna import sparsity

    cls = _try_regularizer_class()
    for layer in model.layers:
        reg = layer.activity_regularizer
        if isinstance(reg, sparsity.ActivityRegularizer):
            layer.activity_regularizer = cls(reg.l1, reg.l2, reg.hoyer)


def main(argv=None):  # long: a research harness, one flat list of flags and steps
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--float_model", required=True, help="the tutorial's saved float model")
    p.add_argument("--name", default="try")
    p.add_argument("--ft_epochs", type=int, default=10)
    p.add_argument("--qat_epochs", type=int, default=2)
    p.add_argument("--ft_lr", type=float, default=1e-3)
    p.add_argument("--qat_lr", type=float, default=5e-4)
    p.add_argument("--hoyer", type=float, default=1.4)
    p.add_argument("--l1", type=float, default=0.14)
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--capped_l1", type=float, default=0.0)
    p.add_argument("--capped_l1_width", type=float, default=0.5)
    p.add_argument("--ramp", type=float, default=0.0, help="fraction of fine-tune steps")
    p.add_argument("--cap", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--activation_max", type=float, default=2.0, help="the QAT policy's")
    p.add_argument("--cap_max", type=float, default=None,
                   help="activation_max of the policy that caps the float ReLUs (default: the same)")
    p.add_argument("--kd", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--kd_alpha", type=float, default=0.5)
    p.add_argument("--qat_kd_alpha", type=float, default=None)
    p.add_argument("--temperature", type=float, default=4.0)
    p.add_argument("--teacher", default="auto",
                   help="saved teacher; 'auto': the tutorial's teacher_model.keras beside the "
                        "float model if there is one, else the float model; 'float': the float model")
    p.add_argument("--qat_teacher", choices=("float", "student"), default="float")
    p.add_argument("--train", type=int, default=60000, help="training images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join("reports", "recipe_tries.jsonl"))
    p.add_argument("--save_float", default=None,
                   help="also save the fine-tuned float student here (input of ptq_steps.py)")
    args = p.parse_args(argv)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras

    import keras_nna  # noqa: F401 - registers the layers for load_model
    from keras_nna import sparsity
    from keras_nna.distillation import Distiller
    from keras_nna.quantization import QuantizationPolicy, quantize_model

    start = time.time()
    x, y, xt, yt = common.fashion_mnist(False, limit_train=args.train, limit_test=10000)
    policy = QuantizationPolicy(weight_bits=4, activation_bits=4, first_layer_weight_bits=8,
                                activation_max=args.activation_max)
    cap_policy = policy if args.cap_max is None else QuantizationPolicy(activation_max=args.cap_max)
    base = keras.models.load_model(args.float_model)
    teacher_path = args.teacher
    if teacher_path == "auto":
        beside = os.path.join(os.path.dirname(args.float_model), "teacher_model.keras")
        teacher_path = beside if os.path.exists(beside) else "float"
    teacher = common.clone(base) if teacher_path == "float" else keras.models.load_model(teacher_path)
    keras.utils.set_random_seed(1)  # as the tutorial's stages
    model = common.clone(base)
    sparsity.add_activity_regularization(model, l1=args.l1, l2=args.l2, hoyer=args.hoyer,
                                         max_value=cap_policy if args.cap else None)
    scale = tf.Variable(0.0 if args.ramp else 1.0, trainable=False)
    _TRY.update(scale=scale, capped_l1=args.capped_l1, width=args.capped_l1_width)
    if args.capped_l1 or args.ramp:
        _wrap_regularizers(model)
    steps = -(-len(x) // 64)

    class Ramp(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0

        def on_train_batch_begin(self, batch, logs=None):
            scale.assign(min(1.0, self.step / (args.ramp * args.ft_epochs * steps)))
            self.step += 1

    def train(m, epochs, lr, teacher, alpha, callbacks=()):
        if args.kd:
            m = Distiller(m, teacher, temperature=args.temperature, alpha=alpha)
        common.fit(m, x, y, epochs, lr=lr, callbacks=callbacks)

    train(model, args.ft_epochs, args.ft_lr, teacher, args.kd_alpha, [Ramp()] if args.ramp else [])
    scale.assign(1.0)
    step = policy.resolve("any")["activation_step"]
    float_acc = common.accuracy(model, xt, yt)
    if args.save_float:
        model.save(args.save_float)
    grid = sparsity.measure_activation_sparsity(model, xt[:1000], quantization_step=step)
    common.log(f"{args.name}: float {float_acc:.4f}, grid events {grid['total']['events']:.0f}")
    qmodel = quantize_model(model, policy)
    if args.qat_teacher == "student":
        teacher = common.clone(model)
        for layer in teacher.layers:
            layer.activity_regularizer = None
    alpha = args.kd_alpha if args.qat_kd_alpha is None else args.qat_kd_alpha
    train(qmodel, args.qat_epochs, args.qat_lr, teacher, alpha)
    acc = common.accuracy(qmodel, xt, yt)
    events = common.events_per_image(qmodel, xt[:1000])
    common.log(f"{args.name}: QAT {acc:.4f}, {events:,.0f} events ({time.time() - start:.0f} s)")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps({**vars(args), "teacher_used": teacher_path, "float_accuracy": float_acc, "accuracy": acc,
                            "grid_events": grid["total"]["events"], "events": events,
                            "seconds": round(time.time() - start)}) + "\n")


if __name__ == "__main__":
    main()
