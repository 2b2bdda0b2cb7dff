#!/usr/bin/env bash
# Installs keras_nna on a fresh machine: Debian data package, TensorFlow (CPU),
# the package itself with its emulator op compiled against that TensorFlow,
# and the test/tutorial extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages: the Fashion-MNIST data (tests, tutorials) and clang with its sanitizer/libFuzzer
# runtime (the fuzzing harness in tools/fuzz; without them its tests skip, saying why).
APT_NEED=""
[ -d /usr/share/datasets/fashion-mnist ] || APT_NEED="dataset-fashion-mnist"
if ! command -v clang >/dev/null || ! dpkg -s libclang-rt-14-dev >/dev/null 2>&1; then
  APT_NEED="$APT_NEED clang libclang-rt-14-dev"
fi
if [ -n "$APT_NEED" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq $APT_NEED >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq $APT_NEED >/dev/null; } || {
    [ -d /usr/share/datasets/fashion-mnist ] || exit 1
    echo "install.sh: could not install clang (the fuzzing tests will skip)" >&2; }
fi
PIP="python -m pip install -q --disable-pip-version-check"
# TensorFlow first: the op is compiled against the TensorFlow that is installed.
$PIP "tensorflow-cpu==2.21.*"
$PIP setuptools wheel
$PIP --no-build-isolation -e ".[cpu,search,test,tutorials]"
# tensorflow-model-optimization only for the schedule-interop test, apart from this environment:
# importing it switches tf.keras to tf_keras (TF_USE_LEGACY_KERAS=1), and its tf_keras would pull
# the full `tensorflow` wheel next to tensorflow-cpu. Users who want it: pip install "keras_nna[tfmot]".
[ -d build/tfmot-interop/tensorflow_model_optimization ] || $PIP --no-deps --target build/tfmot-interop \
  "tensorflow-model-optimization==0.8.*" "tf_keras==2.21.*" "dm-tree>=0.1.8"
# Editable installs do not always place the op next to the sources: build it in place.
python setup.py -q build_ext --inplace
python -c "import keras_nna.runtime as r; r.load_op_library(); print('keras_nna installed; emulator op loads')"
