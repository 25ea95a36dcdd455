#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each one for a
# bounded time on its seed corpus. Exits non-zero if any target crashes,
# leaks, hits undefined behaviour or a property check (see docs/FUZZING.md).
#
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated subset (default: every target)
#   FUZZ_BUILD     build directory (default build-fuzz)
#   FUZZ_CORPUS    directory that keeps the grown corpus between runs
#                  (default: a temporary one, removed at the end; the seeds
#                  in fuzz/corpus are only read)
#   FUZZ_ARGS      extra libFuzzer arguments (e.g. "-jobs=2 -workers=2")
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${FUZZ_SECONDS:-30}
BUILD=${FUZZ_BUILD:-build-fuzz}
ALL="fuzz_device_message fuzz_control fuzz_config fuzz_shadow"
if [ -f common/artifact_sig.c ]; then
  ALL="$ALL fuzz_artifact_meta"
fi
TARGETS=${FUZZ_TARGETS:-$ALL}

max_len() {
  case "$1" in
    fuzz_control) echo 16384 ;;
    fuzz_device_message) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

dict_of() {
  case "$1" in
    fuzz_control) echo fuzz/dict/fuzz_control.dict ;;
    fuzz_config) echo fuzz/dict/fuzz_config.dict ;;
    fuzz_shadow|fuzz_device_message) echo fuzz/dict/fuzz_shadow.dict ;;
    fuzz_artifact_meta) echo fuzz/dict/fuzz_artifact_meta.dict ;;
    *) echo "" ;;
  esac
}

if ! command -v clang >/dev/null; then
  echo "fuzz: clang is required (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi

CC=clang cmake -S . -B "$BUILD" -DFLEETMQ_FUZZ=ON -DFLEETMQ_BUILD_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"$(nproc)" --target $TARGETS

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-fuzzrun-XXXXXX")
trap 'rm -rf "$WORK"' EXIT
CORPUS_ROOT=${FUZZ_CORPUS:-$WORK/corpus}
ARTIFACTS="$BUILD/fuzz-artifacts"
mkdir -p "$ARTIFACTS"

# A small quarantine keeps the per-input leak checks of the stateful plugin
# targets cheap (LSan walks every chunk, quarantined ones too).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:quarantine_size_mb=16}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
passed=0
for t in $TARGETS; do
  mkdir -p "$CORPUS_ROOT/$t" "$WORK/tmp-$t"
  dict=$(dict_of "$t")
  log="$ARTIFACTS/$t.log"
  args=(-max_total_time="$SECS" -max_len="$(max_len "$t")" -timeout=25 -rss_limit_mb=2048
        -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t-")
  [ -n "$dict" ] && args+=(-dict="$dict")
  echo "fuzz: $t for ${SECS}s"
  # The plugin targets keep their SQLite store under TMPDIR.
  # shellcheck disable=SC2086
  if TMPDIR="$WORK/tmp-$t" "$BUILD/fuzz/$t" "${args[@]}" ${FUZZ_ARGS:-} \
       "$CORPUS_ROOT/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz: $t ok: ${runs:-?} executions, ${cov:-cov: ?}"
    passed=$((passed + 1))
  else
    echo "fuzz: $t FAILED (log: $log); reproducer(s):" >&2
    ls "$ARTIFACTS/$t-"* 2>/dev/null >&2 || true
    tail -60 "$log" >&2
    failed+=("$t")
  fi
done

echo "fuzz: $passed passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
