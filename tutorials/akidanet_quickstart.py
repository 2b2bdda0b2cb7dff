"""Tutorial 1 — AkidaNet quick start: train → quantize → export → emulate → report.

The whole keras_nna loop on real, offline data, in one script: the README's
main job, shipped in the package as `keras_nna.demo` (`keras-nna demo` runs
the same code). Read `keras_nna/demo.py` for the steps:

1. Build AkidaNet (alpha 0.25) and train it in float.
2. `quantize_model`: 4-bit weights and activations, 8-bit first layer, then a
   short quantization-aware fine-tune.
3. `export_model` → bytecode; run it on the emulator op.
4. Check the emulator equals the quantized Keras model bit for bit, and read
   the cost: events, synaptic ops, bytes, time and energy per inference on
   both hardware profiles.

    python tutorials/akidanet_quickstart.py            # ~5-10 min on 2 cores
    python tutorials/akidanet_quickstart.py --quick    # tiny data, 1 epoch (smoke test)
    python tutorials/akidanet_quickstart.py --help     # --tasks, --out_dir

The report (markdown, JSON and PNG) goes to `--out_dir` (default
`./reports/quickstart-<timestamp>`), printed at the end.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone
from keras_nna import demo  # noqa: E402


def main(argv=None):
    """Runs the quick start; returns the exit status (0: done, bit-exact)."""
    return demo.main(argv, prog="python tutorials/akidanet_quickstart.py")


if __name__ == "__main__":
    sys.exit(main())
