#!/usr/bin/env bash
# Builds the C++ fuzzing binaries into build/fuzz/ (tools/fuzz/README.md):
#   fuzz_program       libFuzzer target: parser/validator + every kernel, with
#                      AddressSanitizer and UBSan (-fno-sanitize-recover).
#   run_program_asan   standalone kernel runner under ASan/UBSan (no TensorFlow).
# Usage: tools/fuzz/build.sh [fuzz_program] [run_program_asan]   (default: both)
# Env: FUZZ_CC_DIR (sources, default keras_nna/runtime/cc), FUZZ_OUT (default build/fuzz).
# A binary is rebuilt only when its sources changed (hash in build/fuzz/<name>.stamp).
# Needs clang with compiler-rt (Debian: apt-get install -y clang libclang-rt-14-dev).
# Sources: every keras_nna/runtime/cc/*.cc except run_op.cc (the TensorFlow
# wrapper), so the harness follows files added to or removed from the runtime.
set -euo pipefail
cd "$(dirname "$0")/../.."
CXX="${CXX_FUZZ:-$(command -v clang++ || true)}"
if [ -z "$CXX" ]; then
  echo "build.sh: clang++ not found; install it: apt-get install -y clang libclang-rt-14-dev" >&2
  exit 3
fi
OUT="${FUZZ_OUT:-build/fuzz}"          # where binaries go
CC_DIR="${FUZZ_CC_DIR:-keras_nna/runtime/cc}"  # sources (long_run.sh: a committed snapshot)
mkdir -p "$OUT"
SRCS=()
for f in "$CC_DIR"/*.cc; do
  [ "$(basename "$f")" = run_op.cc ] || SRCS+=("$f")
done
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
FLAGS="-std=c++17 -O1 -g -fno-omit-frame-pointer -I$CC_DIR -Wno-unused-command-line-argument"
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(fuzz_program run_program_asan)
for t in "${TARGETS[@]}"; do
  case "$t" in
    fuzz_program) main=tools/fuzz/fuzz_program.cc; extra="-fsanitize=fuzzer" ;;
    run_program_asan) main=tools/fuzz/run_program_main.cc; extra="" ;;
    *) echo "build.sh: unknown target $t" >&2; exit 2 ;;
  esac
  stamp=$(cat "$0" "$main" "$CC_DIR"/*.h "${SRCS[@]}" | sha256sum | cut -c1-16)
  if [ -x "$OUT/$t" ] && [ "$(cat "$OUT/$t.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$OUT/$t is up to date"
    continue
  fi
  # shellcheck disable=SC2086
  "$CXX" $FLAGS $SAN $extra "$main" "${SRCS[@]}" -o "$OUT/$t.tmp"
  mv "$OUT/$t.tmp" "$OUT/$t"
  echo "$stamp" > "$OUT/$t.stamp"
  echo "built $OUT/$t ($("$CXX" --version | head -1))"
done
