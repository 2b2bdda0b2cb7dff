#!/usr/bin/env bash
# Long fuzzing run (tools/fuzz/README.md): libFuzzer over the C++ parser and
# kernels (ASan + UBSan) for at least RUNS executions, then the Python
# reader/op/reference oracle on ORACLE programs. Records crashes, sanitizer
# reports, hangs over 10 s (-timeout=10), peak RSS (-rss_limit_mb=1024) and
# the git commit (plus modified runtime files) it ran on, into
# build/fuzz/long_run/<UTC time>/summary.txt.
#
# Usage: tools/fuzz/long_run.sh [RUNS=1000000] [ORACLE=20000] [JOBS=1]
#   JOBS>1 runs that many libFuzzer workers (-fork), RUNS split between them.
# Env: FUZZ_COMMIT (default HEAD): libFuzzer runs on the parser and kernels
#   of that commit (git archive of keras_nna/runtime/cc), not the working tree;
#   the Python oracle uses an op built from the same sources and the Python
#   reader/reference of the working tree (modified files listed in the summary).
set -uo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-1000000}
ORACLE=${2:-20000}
JOBS=${3:-1}
OUT=build/fuzz/long_run/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/artifacts" "$OUT/corpus"
COMMIT=$(git rev-parse "${FUZZ_COMMIT:-HEAD}")
SRC=build/fuzz/src/$COMMIT
if [ ! -d "$SRC" ]; then
  mkdir -p "$SRC.tmp" && git archive "$COMMIT" keras_nna/runtime/cc | tar -x -C "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
fi
FUZZ_CC_DIR="$SRC/keras_nna/runtime/cc" FUZZ_OUT="build/fuzz/bin-$COMMIT" tools/fuzz/build.sh fuzz_program || exit 3
BIN="build/fuzz/bin-$COMMIT/fuzz_program"
# The op for the Python oracle, from the same committed sources (g++ -O3, as the package builds it).
OP_SO="build/fuzz/bin-$COMMIT/_nna_ops.so"
if [ ! -f "$OP_SO" ]; then
  TFFLAGS=$(python -c "import tensorflow as tf; print(' '.join(tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()))" 2>/dev/null)
  # shellcheck disable=SC2086
  g++ "$SRC"/keras_nna/runtime/cc/*.cc -I"$SRC/keras_nna/runtime/cc" -o "$OP_SO.tmp" -O3 -g0 -fPIC -shared \
    -Wno-deprecated-declarations -Wno-interference-size -Wno-unused-result $TFFLAGS || exit 3
  mv "$OP_SO.tmp" "$OP_SO"
fi
[ -d build/fuzz/corpus ] || python tools/fuzz/make_corpus.py || exit 3
# The 96x96 AkidaNet (~140 KB) is left out of the libFuzzer corpus: parse-only
# and slow under ASan; the smaller nets cover the same kinds.
find build/fuzz/corpus -type f -size -65k -exec cp {} "$OUT/corpus/" \;
{
  echo "libFuzzer on commit: $COMMIT (keras_nna/runtime/cc from git, not the working tree)"
  echo "python oracle: op built from that commit ($OP_SO), Python reader/reference from the working tree at HEAD $(git rev-parse HEAD)"
  echo "modified runtime/reader files: $(git status --short keras_nna/runtime/cc keras_nna/export | tr '\n' ' ')"
  echo "start: $(date -u +%FT%TZ)  runs: $RUNS  oracle programs: $ORACLE  jobs: $JOBS"
} | tee "$OUT/summary.txt"
start=$(date +%s)
if [ "$JOBS" -gt 1 ]; then
  FORK="-fork=$JOBS -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1"
  LIMIT="-runs=$RUNS"
else
  FORK=""
  LIMIT="-runs=$RUNS"
fi
# shellcheck disable=SC2086
"$BIN" "$OUT/corpus" $LIMIT $FORK -timeout=10 -rss_limit_mb=1024 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$OUT/artifacts/" > "$OUT/libfuzzer.log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$OUT/libfuzzer.log" | awk '{s+=$2} END {print s+0}')
[ "$execs" -eq 0 ] && execs=$(grep -o '^#[0-9]*' "$OUT/libfuzzer.log" | tail -1 | tr -d '#')
rss=$(grep -o 'stat::peak_rss_mb: *[0-9]*' "$OUT/libfuzzer.log" | awk '{print $2}' | sort -n | tail -1)
[ -z "$rss" ] && rss=$(grep -o 'rss: [0-9]*Mb' "$OUT/libfuzzer.log" | tr -dc '0-9\n' | sort -n | tail -1)
{
  echo "libFuzzer: exit $rc, executions $execs in ${secs}s ($(( execs / (secs > 0 ? secs : 1) )) exec/s), peak RSS ${rss} MB"
  echo "  ASan reports: $(grep -c 'ERROR: AddressSanitizer' "$OUT/libfuzzer.log")" \
       " UBSan reports: $(grep -c 'runtime error:' "$OUT/libfuzzer.log")" \
       " kernel mismatches: $(grep -c 'MISMATCH' "$OUT/libfuzzer.log")" \
       " timeouts (>10 s): $(grep -c 'ERROR: libFuzzer: timeout' "$OUT/libfuzzer.log")" \
       " out-of-memory (>1024 MB): $(grep -c 'ERROR: libFuzzer: out-of-memory' "$OUT/libfuzzer.log")" \
       " deadly signals: $(grep -c 'deadly signal' "$OUT/libfuzzer.log")"
  echo "  $(grep -h '^fuzz_program:' "$OUT/libfuzzer.log" | tail -1)"
  echo "  artifacts: $(ls "$OUT/artifacts" | wc -l) in $OUT/artifacts"
} | tee -a "$OUT/summary.txt"
ostart=$(date +%s)
python tools/fuzz/py_oracle.py --count "$ORACLE" --seed 1000 --findings "$OUT/findings" --op-so "$OP_SO" \
  > "$OUT/oracle.json" 2> "$OUT/oracle.log"
orc=$?
echo "python oracle: exit $orc in $(( $(date +%s) - ostart ))s: $(cat "$OUT/oracle.json")" | tee -a "$OUT/summary.txt"
echo "end: $(date -u +%FT%TZ)" | tee -a "$OUT/summary.txt"
[ $rc -eq 0 ] && [ $orc -eq 0 ]
