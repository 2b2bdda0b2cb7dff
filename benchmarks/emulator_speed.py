"""Emulator op speed vs TFLite int8 on the same network, measured side by side (1 thread).

AkidaNet alpha 0.25, 96×96×3, 2 classes, trained briefly on the faces
stand-in (so activations are alive), quantized (4-bit, 8-bit first layer) and
exported. Times: the emulator op at batch 1 and 64 (modes auto / event /
dense), and TFLite int8 (the float model converted with a representative
dataset, XNNPACK, 1 thread) at batch 1. Medians over repeats.

    python benchmarks/emulator_speed.py [--repeats 15]

Prints a table and writes benchmarks/results/emulator_speed.json.
"""

import statistics
import time

from _results import default_path, write_result
from absl import app, flags

flags.DEFINE_integer("repeats", 15, "Timed repeats (median reported).")
flags.DEFINE_integer("epochs", 10, "Float training epochs on the faces data.")
flags.DEFINE_string("out", default_path("emulator_speed"),
                    "JSON output path.")
FLAGS = flags.FLAGS


def _median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _tflite_int8(model, x, one):
    """Converts the float model to TFLite int8 (XNNPACK, 1 thread); returns (bytes, median s)."""
    import numpy as np
    import tensorflow as tf

    def representative():
        for i in range(min(len(x), 100)):
            yield [x[i: i + 1].astype("float32")]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    tflite_model = conv.convert()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    interp = Interpreter(model_content=tflite_model, num_threads=1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    sample = one.astype(inp["dtype"]) if inp["dtype"] != np.float32 else one.astype("float32")

    def tflite_run():
        interp.set_tensor(inp["index"], sample)
        interp.invoke()

    return tflite_model, _median_seconds(tflite_run, FLAGS.repeats * 4)


def main(argv):
    del argv
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras
    import numpy as np

    from keras_nna import datasets
    from keras_nna.export import export_model
    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model
    from keras_nna.runtime import Emulator

    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = datasets.load_faces()
    x, xt = datasets.prepare_for_akidanet(x), datasets.prepare_for_akidanet(xt)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model = AkidaNet(alpha=0.25, classes=2, bn_momentum=0.9)
    model.compile(keras.optimizers.Adam(2e-3), loss)
    model.fit(x.astype("float32"), y, epochs=FLAGS.epochs, batch_size=16, verbose=0)
    qmodel = quantize_model(model)
    qmodel.compile(keras.optimizers.Adam(5e-4), loss)
    qmodel.fit(x.astype("float32"), y, epochs=max(FLAGS.epochs // 3, 1), batch_size=16, verbose=0)
    program = export_model(qmodel)
    data = program.to_bytes()
    emulator = Emulator(data)
    batch64 = np.concatenate([xt, xt])[:64]
    one = xt[:1]
    assert np.array_equal(emulator.run(batch64), qmodel.predict(batch64.astype("float32"), verbose=0))
    _, stats = emulator.run_with_stats(batch64)
    events = stats[:, :, 0].sum(1).mean()
    synops, macs = stats[:, :, 1].sum(1).mean(), stats[:, :, 2].sum(1).mean()

    rows = {}
    for mode in ("auto", "event", "dense"):
        t1 = _median_seconds(lambda: emulator.run(one, mode=mode), FLAGS.repeats)
        t64 = _median_seconds(lambda: emulator.run(batch64, mode=mode), max(FLAGS.repeats // 3, 3))
        rows[mode] = {"batch1_images_per_s": 1 / t1, "batch64_images_per_s": 64 / t64,
                      "batch1_ms": 1e3 * t1}

    tflite_model, t_tfl = _tflite_int8(model, x, one)
    result = {
        "model": "AkidaNet alpha=0.25 96x96x3 classes=2 (4-bit, 8-bit first layer)",
        "program_bytes": len(data),
        "tflite_int8_bytes": len(tflite_model),
        "events_per_inference": float(events),
        "synops_per_inference": float(synops),
        "dense_macs_per_inference": float(macs),
        "emulator": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in rows.items()},
        "tflite_int8_batch1_ms": round(1e3 * t_tfl, 4),
        "emulator_auto_batch1_over_tflite": round(rows["auto"]["batch1_ms"] / (1e3 * t_tfl), 2),
        "threads": 1,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"program {len(data):,} bytes (TFLite int8 {len(tflite_model):,}); events/inference "
          f"{events:,.0f}; synops {synops:,.0f} of {macs:,.0f} dense MACs ({synops / macs:.1%})")
    print("| executor | mode | batch 1 ms | batch 1 img/s | batch 64 img/s |")
    print("|---|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| emulator op | {mode} | {r['batch1_ms']:.3f} | {r['batch1_images_per_s']:.0f} | "
              f"{r['batch64_images_per_s']:.0f} |")
    print(f"| TFLite int8 (XNNPACK) | - | {1e3 * t_tfl:.3f} | {1 / t_tfl:.0f} | - |")
    print(f"emulator (auto, batch 1) / TFLite time ratio: {result['emulator_auto_batch1_over_tflite']}")
    write_result(result, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
