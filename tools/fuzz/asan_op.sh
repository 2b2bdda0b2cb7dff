#!/usr/bin/env bash
# Builds the TensorFlow op itself (all of keras_nna/runtime/cc, run_op.cc
# included) with g++ -fsanitize=address,undefined into build/fuzz/asan_op/,
# then runs tools/fuzz/asan_op_check.py in a Python with libasan/libubsan
# preloaded: the ASan op replaces the normal one (keras_nna.runtime.op._module)
# and runs every net in build/fuzz/nets through Emulator (modes auto, event,
# dense, TensorFlow's thread pool) against run_reference, bit for bit.
# Complements asan_kernels.sh (kernels without TensorFlow).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=build/fuzz/asan_op
mkdir -p "$OUT"
FLAGS=$(python -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags()))" 2>/dev/null)
LINK=$(python -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_link_flags()))" 2>/dev/null)
stamp=$(cat "$0" keras_nna/runtime/cc/* | sha256sum | cut -c1-16)
if [ ! -f "$OUT/_nna_ops.so" ] || [ "$(cat "$OUT/stamp" 2>/dev/null)" != "$stamp" ]; then
  # run_op.cc (TensorFlow headers) with ASan only: g++'s UBSan breaks absl's
  # constexpr hash-policy checks in TF 2.21's headers. The kernels and the
  # parser (no TensorFlow includes) get ASan + UBSan.
  COMMON="-O1 -g -fno-omit-frame-pointer -fPIC -Ikeras_nna/runtime/cc -Wno-deprecated-declarations -Wno-interference-size -Wno-unused-result"
  OBJS=()
  for f in keras_nna/runtime/cc/*.cc; do
    o="$OUT/$(basename "$f" .cc).o"
    if [ "$(basename "$f")" = run_op.cc ]; then
      # shellcheck disable=SC2086
      g++ -c "$f" -o "$o" $FLAGS $COMMON -fsanitize=address &
    else
      # shellcheck disable=SC2086
      g++ -c "$f" -o "$o" $FLAGS $COMMON -fsanitize=address,undefined -fno-sanitize-recover=undefined &
    fi
    OBJS+=("$o")
    [ "$(jobs -r | wc -l)" -ge 2 ] && wait -n
  done
  wait
  # shellcheck disable=SC2086
  g++ -shared "${OBJS[@]}" -o "$OUT/_nna_ops.so.tmp" -fsanitize=address,undefined $LINK
  mv "$OUT/_nna_ops.so.tmp" "$OUT/_nna_ops.so"
  echo "$stamp" > "$OUT/stamp"
fi
[ -d build/fuzz/nets ] || python tools/fuzz/make_corpus.py --mutations 0
echo "commit $(git rev-parse HEAD) (working tree: $(git status --short keras_nna/runtime/cc | wc -l) modified runtime files)"
PRE="$(g++ -print-file-name=libasan.so):$(g++ -print-file-name=libubsan.so)"
LD_PRELOAD="$PRE" ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:verify_asan_link_order=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" TF_CPP_MIN_LOG_LEVEL=3 \
  python tools/fuzz/asan_op_check.py "$OUT/_nna_ops.so" "$@"
