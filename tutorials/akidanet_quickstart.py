"""Tutorial 1 — AkidaNet quick start: train → quantize → export → emulate → report.

The README's main job: AkidaNet trained in float, quantized (4-bit, 8-bit first
layer) with a short QAT, exported, run on the emulator op, checked bit for bit
and priced on both hardware profiles. The code ships in the package as
`keras_nna.demo` (`keras-nna demo` runs it too); read `keras_nna/demo.py` for
the steps, each a few library calls.

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
