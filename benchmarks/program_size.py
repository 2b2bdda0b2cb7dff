"""Program bytes per parameter: keras.applications MobileNet 0.25 vs AkidaNet 0.25 (issue 14).

Both models at 96×96×3, 2 classes, quantized with the default policy (4-bit weights and
activations, 8-bit first layer) and exported untrained (sizes do not depend on training unless
pruning makes kernels sparse). Splits each program into kernels, requantization records (13 bytes
per output channel of a conv/dense instruction) and the rest (header, instructions, pool records,
CRC), so the difference per parameter can be attributed.

    python benchmarks/program_size.py          # ~30 s; writes benchmarks/results/program_size.json
"""

import argparse
import time

import _results

RQ_BYTES_PER_CHANNEL = 13  # i32 m, i64 n, u8 sh (docs/bytecode.md)


def measure(name, model):
    from keras_nna.export import export_model, read_program
    from keras_nna.quantization import quantize_model

    data = export_model(quantize_model(model)).to_bytes()
    program = read_program(data)  # the reader fills in each layer's constant bytes
    total = len(data)
    weighted = [r for r in program.layers if r.kind in ("conv", "depthwise", "separable", "dense")]
    rq = sum(RQ_BYTES_PER_CHANNEL * r.out_shape[2] for r in weighted)
    kernels = sum(r.const_bytes for r in weighted) - rq
    params = int(model.count_params())
    return {"model": name, "params": params, "program_bytes": total, "kernel_bytes": kernels,
            "rq_bytes": rq, "other_bytes": total - kernels - rq,
            "instructions": len(program.layers),
            "depthwise_channels": sum(r.out_shape[2] for r in weighted if r.kind == "depthwise"),
            "bytes_per_param": round(total / params, 4),
            "bytes_per_param_without_rq": round((total - rq) / params, 4)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=_results.default_path("program_size"))
    args = parser.parse_args(argv)
    import keras

    from keras_nna.models import AkidaNet

    shape = (96, 96, 3)
    rows = [
        measure("AkidaNet 0.25", AkidaNet(input_shape=shape, alpha=0.25, classes=2)),
        measure("MobileNet 0.25 (keras.applications)", keras.applications.MobileNet(
            input_shape=shape, alpha=0.25, weights=None, classes=2, classifier_activation=None)),
    ]
    print("| model | params | program bytes | kernels | rq records | other | bytes/param | "
          "without rq |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['params']:,} | {r['program_bytes']:,} | {r['kernel_bytes']:,} | "
              f"{r['rq_bytes']:,} | {r['other_bytes']:,} | {r['bytes_per_param']:.3f} | "
              f"{r['bytes_per_param_without_rq']:.3f} |")
    ratio = rows[1]["bytes_per_param"] / rows[0]["bytes_per_param"]
    print(f"MobileNet / AkidaNet bytes per parameter: {ratio:.3f} (target <= 1.05: "
          f"{'met' if ratio <= 1.05 else 'missed'})")
    _results.write_result({"command": "python benchmarks/program_size.py",
                           "date": time.strftime("%Y-%m-%d"), "input": list(shape), "rows": rows,
                           "ratio": round(ratio, 4), "target": "<= 1.05"}, args.out)


if __name__ == "__main__":
    main()
