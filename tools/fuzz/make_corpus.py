"""Seed corpus for the fuzzers: real exported programs plus mutations.

Writes, under `--out` (default `build/fuzz`):

* `nets/<name>.nnab` — programs exported with `quantize_model` + `export_model`
  from the model zoo (`tests/model_zoo.py`, the bit-exact test nets), the
  wide-layer net of the SIMD bit-exact test, the 32,911-row program of
  `tests/runtime/test_op_bounds.py` (issue 12 defect 1), a small AkidaNet (32x32) and
  AkidaNet 0.25 at 96x96 — each with `<name>.u8` (its uint8 NHWC images,
  raw) and `<name>.json` (image count and shape). `asan_kernels.sh` runs the
  kernels over these.
* `nets/kind_<k>.nnab` — hand-built one- and two-layer programs covering each
  layer kind, raw (float) and code outputs, wide accumulation, and 1-bit
  kernels (format version 3: `kind_dense_1bit`, `kind_binary`).
* `nets/dag_<name>.nnab` — the version-2 programs of `tests/runtime/test_op_dag.py`:
  residual ADDs, ADD of the image, signed codes feeding every kind, held
  outputs over long skips, int32/int64 accumulators.
* `corpus/` — every program above plus `--mutations` structure-aware mutants
  (`mutate.py`, CRC recomputed), the libFuzzer seed corpus.

Usage::

    python tools/fuzz/make_corpus.py [--out build/fuzz] [--zoo 16] [--mutations 2000]
"""

import argparse
import hashlib
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import mutate  # noqa: E402

__all__ = ["dag_built", "hand_built", "main", "zoo_nets"]


def _save(nets_dir, name, data, images):
    with open(os.path.join(nets_dir, name + ".nnab"), "wb") as f:
        f.write(data)
    images = np.ascontiguousarray(images, np.uint8)
    images.tofile(os.path.join(nets_dir, name + ".u8"))
    with open(os.path.join(nets_dir, name + ".json"), "w") as f:
        json.dump({"n": int(images.shape[0]), "shape": list(images.shape[1:])}, f)


def hand_built():
    """Returns [(name, bytes, images)] of small hand-built programs (raw/code outputs, pools)."""
    from keras_nna.export import LayerRecord, Program

    rng = np.random.default_rng(0)
    out = []

    def add(name, in_shape, in_bits, layers):
        try:
            data = Program(in_shape, in_bits, layers).to_bytes()
        except (ValueError, OverflowError) as e:  # keep the corpus going; say why
            print(f"make_corpus: skipped {name}: {e}", file=sys.stderr)
            return
        imgs = rng.integers(0, 1 << in_bits, (4, *in_shape)).astype(np.uint8)
        imgs[0] = 0
        out.append((name, data, imgs))

    def rq(c, sh=14):
        return dict(m=np.full(c, 1 << 13), n=rng.integers(-64, 64, c), sh=np.full(c, sh))

    add("kind_dense_raw", (1, 1, 4), 8, [LayerRecord(
        kind="dense", in_shape=(1, 1, 4), out_shape=(1, 1, 3), in_bits=8, out_bits=0, w_bits=4,
        weights=rng.integers(-7, 8, (4, 3)), **rq(3))])
    conv = LayerRecord(kind="conv", in_shape=(5, 6, 2), out_shape=(3, 3, 3), in_bits=4,
                       out_bits=4, kernel_size=(3, 3), strides=(2, 2), pads=(1, 1, 1, 1),
                       w_bits=3, weights=rng.integers(-3, 4, (3, 3, 2, 3)), **rq(3))
    pool = LayerRecord(kind="maxpool", in_shape=(3, 3, 3), out_shape=(1, 1, 3), in_bits=4,
                       out_bits=4, pool=(3, 3), strides=(3, 3))
    head = LayerRecord(kind="dense", in_shape=(1, 1, 3), out_shape=(1, 1, 2), in_bits=4,
                       out_bits=0, w_bits=8, weights=rng.integers(-127, 128, (3, 2)), **rq(2))
    add("kind_conv_pool_dense", (5, 6, 2), 4, [conv, pool, head])
    add("kind_maxpool", (4, 4, 2), 8, [LayerRecord(
        kind="maxpool", in_shape=(4, 4, 2), out_shape=(2, 2, 2), in_bits=8, out_bits=8,
        pool=(2, 2), strides=(2, 2))])
    add("kind_dense_1bit", (1, 1, 12), 8, [LayerRecord(  # version 3: 1-bit, sparse (has zeros)
        kind="dense", in_shape=(1, 1, 12), out_shape=(1, 1, 3), in_bits=8, out_bits=0, w_bits=1,
        weights=rng.choice([-1, 0, 1], (12, 3)), **rq(3))])
    from tests.export.test_binary_kernels import _binary_program  # 1-bit dense and sparse kernels

    binary = _binary_program()
    out.append(("kind_binary", binary.to_bytes(),
                rng.integers(0, 256, (4, *binary.input_shape)).astype(np.uint8)))
    return out + dag_built()


def dag_built():
    """Returns [(name, bytes, images)] of the version-2 DAG programs of tests/runtime/test_op_dag.py."""
    from tests.runtime.test_op_dag import PROGRAMS

    out = []
    for name, make in PROGRAMS.items():
        dag = make()
        out.append(("dag_" + name.replace("<", "lt").replace(">", "gt"), dag.program()[0], dag.images))
    return out


def _wide_net(bits):
    """The net of tests/export/test_bitexact.py::test_wide_layers_reach_blocked_simd_kernels."""
    from keras_nna.export import export_model
    from tests.model_zoo import make_wide_case

    qmodel, images = make_wide_case(bits)
    return export_model(qmodel).to_bytes(), images


def zoo_nets(zoo, akidanet=True, steps=3):
    """Yields (name, bytes, images) of exported real models."""
    import keras

    from keras_nna.export import export_model
    from keras_nna.models import AkidaNet
    from keras_nna.quantization import quantize_model
    from tests.model_zoo import make_case

    for seed in range(zoo):
        qmodel, images = make_case(seed, steps=steps)
        yield f"zoo{seed}", export_model(qmodel).to_bytes(), images
    for bits in ((4, 4), (8, 8), (2, 3)):
        yield f"wide_w{bits[0]}a{bits[1]}", *_wide_net(bits)
    from tests.runtime.test_op_bounds import IN_H, tall_program  # defect 1 of issue 12

    image = np.random.default_rng(0).integers(1, 256, (1, IN_H, 1, 1)).astype(np.uint8)
    yield "tall_rows", tall_program().to_bytes(), image
    if not akidanet:
        return
    rng = np.random.default_rng(7)
    for name, shape in (("akidanet_32", (32, 32, 3)), ("akidanet_96", (96, 96, 3))):
        keras.utils.set_random_seed(0)
        model = AkidaNet(input_shape=shape, alpha=0.25, classes=2, bn_momentum=0.5)
        qmodel = quantize_model(model)
        images = rng.integers(0, 256, (4, *shape)).astype(np.uint8)
        qmodel.compile(keras.optimizers.Adam(1e-3),
                       keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        qmodel.fit(images.astype("float32"), rng.integers(0, 2, 4), epochs=1, verbose=0)
        yield name, export_model(qmodel).to_bytes(), images


def main(argv=None):
    """Command line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="build/fuzz")
    ap.add_argument("--zoo", type=int, default=16, help="model zoo seeds 0..N-1")
    ap.add_argument("--no-akidanet", action="store_true")
    ap.add_argument("--mutations", type=int, default=2000)
    args = ap.parse_args(argv)
    nets_dir, corpus = os.path.join(args.out, "nets"), os.path.join(args.out, "corpus")
    os.makedirs(nets_dir, exist_ok=True)
    os.makedirs(corpus, exist_ok=True)
    seeds = []
    for name, data, images in list(hand_built()) + list(zoo_nets(args.zoo, not args.no_akidanet)):
        _save(nets_dir, name, data, images)
        seeds.append(data)
    for data in seeds + list(mutate.mutate_many(seeds, args.mutations, seed=1)):
        digest = hashlib.sha1(data).hexdigest()
        with open(os.path.join(corpus, digest), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} programs in {nets_dir}, {len(os.listdir(corpus))} files in {corpus}")


if __name__ == "__main__":
    main()
