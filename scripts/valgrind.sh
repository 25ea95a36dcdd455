#!/usr/bin/env bash
# scripts/valgrind.sh - the end-to-end suites once under valgrind (memcheck):
# no leaks, no invalid access, in the plugin and in the agent.
#
#   1. broker: test_e2e_shadow, test_e2e_jobs, test_e2e_security,
#      test_e2e_presence and test_client (direct delivery) with every
#      broker they start (the stock mosquitto + fleetmq_plugin.so) under
#      valgrind, through the harness's FLEETMQ_BROKER_WRAPPER. Leaks made by
#      mosquitto itself are suppressed (tests/valgrind-mosquitto.supp); any
#      other definite leak or memory error makes the broker exit with 99,
#      which fails the suite (harness: "exited with the wrapper's error
#      code"). Harness timeouts are multiplied by 5 under the wrapper.
#   2. agent: test_agent_e2e with every fleetmq-agent under valgrind
#      (FLEETMQ_AGENT_WRAPPER; the broker runs natively). An agent that exits
#      with 99 fails its test (agent_stop checks the exit status).
#
# Every valgrind log is kept: <out>/broker-<pid>.log, <out>/agent-<pid>.log,
# plus each suite's output <out>/<suite>.out. The script scans them all
# (a process killed by a test's kill -9 has no summary, but the errors it
# printed before are still found) and exits non-zero on any finding or
# failed suite. About 3-4 minutes on 2 cores.
#
#   scripts/valgrind.sh                        everything, build/ (RelWithDebInfo)
#   scripts/valgrind.sh --suites test_e2e_jobs --no-agent
#   scripts/valgrind.sh --no-broker            the agent run only
set -euo pipefail

usage() {
	cat <<EOF
usage: scripts/valgrind.sh [options]
  --build-dir DIR   build directory (build; configured RelWithDebInfo if new)
  --no-build        use the existing build
  --suites LIST     comma list of broker e2e suites
                    (test_e2e_shadow,test_e2e_jobs,test_e2e_security,test_e2e_presence,test_client)
  --no-broker       skip the broker suites
  --no-agent        skip the agent suite (test_agent_e2e)
  --out DIR         log directory (<build>/valgrind/<UTC time>)
EOF
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build
BUILD=1
SUITES=test_e2e_shadow,test_e2e_jobs,test_e2e_security,test_e2e_presence,test_client
BROKER=1
AGENT=1
OUT=""

while [ $# -gt 0 ]; do
	case "$1" in
		--build-dir) BUILD_DIR=$2; shift 2 ;;
		--no-build) BUILD=0; shift ;;
		--suites) SUITES=$2; shift 2 ;;
		--no-broker) BROKER=0; shift ;;
		--no-agent) AGENT=0; shift ;;
		--out) OUT=$2; shift 2 ;;
		-h|--help) usage; exit 0 ;;
		*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

log() { echo "[valgrind.sh $(date +%H:%M:%S)] $*" >&2; }

if ! command -v valgrind >/dev/null 2>&1; then
	log "valgrind is not installed: installing the Debian package"
	SUDO=""
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends valgrind
fi
VALGRIND=$(command -v valgrind)

case "$BUILD_DIR" in /*) ;; *) BUILD_DIR=$PWD/$BUILD_DIR ;; esac
[ -n "$OUT" ] || OUT=$BUILD_DIR/valgrind/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# the broker drops privileges after valgrind opened its log: keep the dir
# writable anyway for any later file
chmod 1777 "$OUT"
SUPP=$ROOT/tests/valgrind-mosquitto.supp
# the wrappers are split on blanks by the harness
for p in "$VALGRIND" "$OUT" "$SUPP"; do
	case "$p" in *[[:space:]]*) echo "path with a blank, not supported: $p" >&2; exit 2 ;; esac
done

IFS=, read -r -a SUITE_LIST <<<"$SUITES"
if [ "$BUILD" = 1 ]; then
	if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
		cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	fi
	targets=(fleetmq_plugin fleetmq-agent)
	[ "$BROKER" = 1 ] && targets+=("${SUITE_LIST[@]}")
	[ "$AGENT" = 1 ] && targets+=(test_agent_e2e)
	log "building ${targets[*]} in $BUILD_DIR"
	cmake --build "$BUILD_DIR" -j"$(nproc)" --target "${targets[@]}" >"$OUT/build.log" 2>&1 || {
		tail -40 "$OUT/build.log" >&2
		exit 1
	}
fi

COMMON="$VALGRIND --tool=memcheck --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
COMMON+=" --show-leak-kinds=definite --num-callers=40 --vgdb=no --child-silent-after-fork=yes"
BROKER_WRAPPER="$COMMON --suppressions=$SUPP --log-file=$OUT/broker-%p.log"
AGENT_WRAPPER="$COMMON --log-file=$OUT/agent-%p.log"

FAILED=()
run_suite() {
	local name=$1 t0 rc
	shift
	t0=$(date +%s)
	log "$name (${1%%=*} set)"
	set +e
	(cd "$BUILD_DIR" && env "$@" "./tests/$name") >"$OUT/$name.out" 2>&1
	rc=$?
	set -e
	grep -E '^  Test: |^ +tests ' "$OUT/$name.out" | grep -E 'FAILED|tests ' | sed 's/^/    /' >&2 || true
	log "$name: exit $rc in $(( $(date +%s) - t0 )) s"
	[ "$rc" = 0 ] || FAILED+=("$name (exit $rc, see $OUT/$name.out)")
}

if [ "$BROKER" = 1 ]; then
	for s in "${SUITE_LIST[@]}"; do
		run_suite "$s" FLEETMQ_BROKER_WRAPPER="$BROKER_WRAPPER"
	done
fi
if [ "$AGENT" = 1 ]; then
	run_suite test_agent_e2e FLEETMQ_AGENT_WRAPPER="$AGENT_WRAPPER"
fi

# ---------------------------------------------------------------- scan the logs
# a valgrind error starts with one of these lines
ERR_RE='== (Invalid (read|write|free)|Mismatched free|Conditional jump|Use of uninitialised|Syscall param|Source and destination overlap|Argument .* of function|[0-9,]+ (\([0-9,]+ direct, [0-9,]+ indirect\) )?bytes in [0-9,]+ blocks are definitely lost|Process terminating with default action of signal (6|7|11))'
n_logs=0; n_summary=0; bad=()
for f in "$OUT"/broker-*.log "$OUT"/agent-*.log; do
	[ -f "$f" ] || continue
	n_logs=$((n_logs + 1))
	grep -q 'ERROR SUMMARY:' "$f" && n_summary=$((n_summary + 1))
	if grep -Eq "$ERR_RE" "$f" || grep -Eq 'ERROR SUMMARY: [1-9]' "$f"; then bad+=("$f"); fi
done

echo
echo "valgrind logs: $OUT"
echo "  processes: $n_logs ($n_summary exited normally, $((n_logs - n_summary)) killed by their test)"
if [ ${#bad[@]} -gt 0 ]; then
	echo "  FINDINGS in ${#bad[@]} log(s):"
	for f in "${bad[@]}"; do
		echo "  --- $f"
		grep -E "$ERR_RE" -A14 "$f" | sed 's/^/    /' | head -60
	done
fi
if [ ${#FAILED[@]} -gt 0 ]; then
	echo "  failed suites:"
	printf '    %s\n' "${FAILED[@]}"
fi
if [ ${#bad[@]} -gt 0 ] || [ ${#FAILED[@]} -gt 0 ]; then exit 1; fi
echo "  no leaks, no invalid access: OK"
