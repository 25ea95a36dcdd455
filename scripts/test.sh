#!/usr/bin/env bash
# Set up (Debian packages), build and run every fleetmq test.
#   scripts/test.sh            unit + end-to-end suites
#   scripts/test.sh --asan     the same under AddressSanitizer + UBSan
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=build
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--asan" ]; then
  BUILD=build-asan
  CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Debug -DFLEETMQ_SANITIZE=ON)
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

bash scripts/setup.sh
cmake -S . -B "$BUILD" "${CMAKE_ARGS[@]}"
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j2
