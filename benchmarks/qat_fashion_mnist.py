"""Float vs 4-bit QAT accuracy on Fashion-MNIST (all 60k train / 10k test).

Model: AkidaNet (keras_nna.models.AkidaNet) at the native 28×28×1 input,
alpha 0.25 by default, 10 classes. The float model is trained first; then
`quantize_model` (4-bit weights and activations, 8-bit first layer) and a
short QAT fine-tune. Accuracy of the quantized model is measured in inference
mode, i.e. with the exact integer semantics the accelerator runs.

    python benchmarks/qat_fashion_mnist.py                 # full run (~5-10 min on 2 cores)
    python benchmarks/qat_fashion_mnist.py --limit 2000 --float_epochs 1 --qat_epochs 1

Prints a table and writes benchmarks/results/qat_fashion_mnist.json.
"""

import time

from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_float("alpha", 0.25, "AkidaNet width multiplier.")
flags.DEFINE_integer("float_epochs", 8, "Float training epochs.")
flags.DEFINE_integer("qat_epochs", 3, "QAT fine-tuning epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_integer("limit", None, "Use only this many training images (smoke runs).")
flags.DEFINE_string("out", default_path("qat_fashion_mnist"),
                    "JSON output path.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras

    from keras_nna.datasets import load_fashion_mnist
    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model

    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(
        limit_train=FLAGS.limit, limit_test=FLAGS.limit and max(FLAGS.limit // 4, 500))
    x_train, x_test = x_train.astype("float32"), x_test.astype("float32")
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    model = AkidaNet(input_shape=x_train.shape[1:], alpha=FLAGS.alpha, classes=10, bn_momentum=0.9)
    steps = FLAGS.float_epochs * -(-len(x_train) // FLAGS.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps)
    model.compile(keras.optimizers.Adam(schedule), loss, metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=FLAGS.float_epochs, verbose=2)
    float_time = time.perf_counter() - t0
    float_acc = model.evaluate(x_test, y_test, verbose=0)[1]

    qmodel = quantize_model(model)
    qat_before = None
    qmodel.compile(metrics=["accuracy"], loss=loss)
    qat_before = qmodel.evaluate(x_test, y_test, verbose=0)[1]
    steps = max(FLAGS.qat_epochs, 1) * -(-len(x_train) // FLAGS.batch_size)
    qmodel.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(5e-4, steps)),
                   loss, metrics=["accuracy"])
    t0 = time.perf_counter()
    if FLAGS.qat_epochs:
        qmodel.fit(x_train, y_train, batch_size=FLAGS.batch_size, epochs=FLAGS.qat_epochs, verbose=2)
    qat_time = time.perf_counter() - t0
    qat_acc = qmodel.evaluate(x_test, y_test, verbose=0)[1]

    result = {
        "model": f"AkidaNet alpha={FLAGS.alpha} input={tuple(x_train.shape[1:])} classes=10",
        "train_images": int(len(x_train)),
        "test_images": int(len(x_test)),
        "float_epochs": FLAGS.float_epochs,
        "qat_epochs": FLAGS.qat_epochs,
        "float_accuracy": round(float(float_acc), 4),
        "quantized_before_qat_accuracy": round(float(qat_before), 4),
        "qat_accuracy": round(float(qat_acc), 4),
        "gap_points": round(100 * (float(float_acc) - float(qat_acc)), 2),
        "float_train_seconds": round(float_time, 1),
        "qat_train_seconds": round(qat_time, 1),
        "policy": "4-bit weights, 4-bit activations, 8-bit first layer, 8-bit input",
        "date": time.strftime("%Y-%m-%d"),
    }
    print("\n| model | float acc | 4-bit (PTQ) acc | 4-bit QAT acc | gap (points) |")
    print("|---|---|---|---|---|")
    print(f"| {result['model']} | {float_acc:.4f} | {qat_before:.4f} | {qat_acc:.4f} | {result['gap_points']} |")
    write_result(result, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
