#!/usr/bin/env bash
# Runs the op's kernels once under AddressSanitizer + UBSan over the bit-exact
# test nets (tools/fuzz/asan_kernels.py): builds build/fuzz/run_program_asan,
# exports the nets if build/fuzz/nets is missing, runs every program in the
# six kernel configurations and compares with run_reference bit for bit.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools/fuzz/build.sh run_program_asan
[ -d build/fuzz/nets ] || python tools/fuzz/make_corpus.py --mutations 0
echo "commit $(git rev-parse HEAD) (working tree: $(git status --short keras_nna/runtime/cc | wc -l) modified runtime files)"
python tools/fuzz/asan_kernels.py "$@"
