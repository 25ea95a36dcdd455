#!/usr/bin/env bash
# bench/run.sh - fleetmq benchmarks, one command.
#
# Builds the plugin and the load generator (Release, in build-bench/),
# starts vanilla Mosquitto (same binary, no plugin) and Mosquitto with
# fleetmq_plugin.so on free loopback ports in temporary directories, runs
# every scenario --reps times (median reported), prints the summary table
# and writes bench/results/<date>.md (git-ignored; docs/BENCHMARKS.md is
# written from it by hand).
#
# Measurements only: nothing here fails on a slow result.
# Default full run: about 6 minutes on 2 cores (316 s on 2026-11-25).
#
# All traffic stays on 127.0.0.0/8. Every broker this script starts is
# stopped on exit (by pid); nothing else is touched.
set -euo pipefail

usage() {
	cat <<EOF
usage: bench/run.sh [options]
  --reps N                 repetitions of every scenario (3); medians are reported
  --duration S             measured seconds of the throughput scenarios (5), after 1 s warm-up
  --reconnect-devices N    devices of the reconnect scenario (10000)
  --fanout-devices N       registered devices for fan-out and offline memory (100000)
  --memory-checkpoints L   RSS checkpoints while registering (10000,100000)
  --memory-devices N       extra run: register N devices (e.g. 1000000) with RSS checkpoints
  --shadow-rate R          offered load of the shadow latency measurement (1000 updates/s)
  --connected-devices N    connected devices of the memory scenario (10000; at most ulimit -n - 100:
                           bench/vm.sh runs this script where the limit can be raised)
  --only LIST              comma list of: pubsub,telemetry,shadow,artifact,reconnect,fanout,connected
  --connected-brokers L    brokers of the connected scenario, a comma list of
                           vanilla,vanilla-retained,plugin,plugin-noretain,plugin-direct (all)
  --timeout S              hard time limit of each load generator run (600 s)
  --build-dir DIR          (build-bench)
  --no-build               use the existing build
  --keep                   keep the temporary broker directories
EOF
}

REPS=3
DURATION=5
RECONNECT_N=10000
FANOUT_N=100000
MEM_CHECKPOINTS=10000,100000
MEM_MAX=""
CONNECTED_N=10000
CONNECTED_BROKERS=vanilla,vanilla-retained,plugin,plugin-noretain,plugin-direct
SHADOW_RATE=1000
LG_TIMEOUT=600
ONLY=all
KEEP=0
BUILD=1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build-bench
CMDLINE="bench/run.sh $*"

while [ $# -gt 0 ]; do
	case "$1" in
		--reps) REPS=$2; shift 2 ;;
		--duration) DURATION=$2; shift 2 ;;
		--reconnect-devices) RECONNECT_N=$2; shift 2 ;;
		--fanout-devices) FANOUT_N=$2; shift 2 ;;
		--memory-checkpoints) MEM_CHECKPOINTS=$2; shift 2 ;;
		--memory-devices) MEM_MAX=$2; shift 2 ;;
		--connected-devices) CONNECTED_N=$2; shift 2 ;;
		--connected-brokers) CONNECTED_BROKERS=$2; shift 2 ;;
		--shadow-rate) SHADOW_RATE=$2; shift 2 ;;
		--only) ONLY=$2; shift 2 ;;
		--timeout) LG_TIMEOUT=$2; shift 2 ;;
		--build-dir) BUILD_DIR=$2; shift 2 ;;
		--no-build) BUILD=0; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

[[ "$LG_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || { echo "--timeout wants seconds > 0, not '$LG_TIMEOUT'" >&2; exit 2; }
for b in ${CONNECTED_BROKERS//,/ }; do
	case "$b" in
		vanilla|vanilla-retained|plugin|plugin-noretain|plugin-direct) ;;
		*) echo "unknown broker $b in --connected-brokers" >&2; exit 2 ;;
	esac
done

want() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }
log() { echo "[run.sh $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
	log "building (Release) in $BUILD_DIR"
	cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFLEETMQ_BUILD_TESTS=OFF >/dev/null
	cmake --build "$BUILD_DIR" -j2 --target fleetmq_plugin fleetmq-loadgen >/dev/null
fi
LG=$BUILD_DIR/bench/fleetmq-loadgen
PLUGIN=$BUILD_DIR/broker-plugin/fleetmq_plugin.so
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$LG" ] && [ -f "$PLUGIN" ] && [ -x "$MOSQUITTO" ] || { echo "missing $LG, $PLUGIN or $MOSQUITTO" >&2; exit 1; }

# ---------------------------------------------------------------- environment
# Each client is one descriptor, each broker connection one more.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ]; then
	max=$((NOFILE - 100))
	for v in RECONNECT_N CONNECTED_N; do
		if [ "${!v}" -gt "$max" ]; then
			log "$v=${!v} exceeds ulimit -n $NOFILE; using $max"
			printf -v "$v" '%s' "$max"
		fi
	done
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-bench-XXXXXX")
chmod 755 "$WORK"
RAW=$WORK/raw.txt
: >"$RAW"
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]:-}"; do
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true
	done
	if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

MOSQ_USER=""
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then MOSQ_USER=mosquitto; fi

# start_broker NAME plugin|vanilla [DB-TEMPLATE]: sets BPORT BPID BDIR
start_broker() {
	local name=$1 kind=$2 template=${3:-} i
	BDIR=$WORK/$name
	mkdir -p "$BDIR/artifacts"
	BPORT=$("$LG" freeport)
	{
		echo "listener $BPORT 127.0.0.1"
		echo "allow_anonymous true"
		echo "persistence false"
		echo "set_tcp_nodelay true"
		echo "log_dest file $BDIR/mosquitto.log"
		if [ "$kind" = plugin ]; then
			echo "plugin $PLUGIN"
			echo "plugin_opt_config_file $BDIR/fleetmq.yaml"
		fi
	} >"$BDIR/mosquitto.conf"
	cat >"$BDIR/fleetmq.yaml" <<EOF
store:
  path: $BDIR/fleetmq.db
security:
  operator_usernames: [ops]
  other_topics: allow
artifacts:
  dir: $BDIR/artifacts
${EXTRA_YAML:-}
EOF
	if [ -n "$template" ]; then cp "$template" "$BDIR/fleetmq.db"; fi
	if [ "$kind" = plugin ] && [ -f "$WORK/artifact.bin" ]; then
		cp "$WORK/artifact.bin" "$BDIR/artifacts/bench-fw.bin"
		printf '{"name":"bench-fw.bin","version":"1.0.0","size":%s,"sha256":"%s"}\n' \
			"$(stat -c %s "$WORK/artifact.bin")" "$(sha256sum "$WORK/artifact.bin" | cut -d' ' -f1)" \
			>"$BDIR/artifacts/bench-fw.bin.json"
	fi
	chmod -R a+rX "$BDIR"
	[ -n "$MOSQ_USER" ] && chown -R "$MOSQ_USER" "$BDIR"
	"$MOSQUITTO" -c "$BDIR/mosquitto.conf" >"$BDIR/stderr.log" 2>&1 &
	BPID=$!
	PIDS+=("$BPID")
	for i in $(seq 1 600); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$BPORT") 2>/dev/null; then return 0; fi
		if ! kill -0 "$BPID" 2>/dev/null; then break; fi
		sleep 0.1
	done
	echo "broker $name did not start; log:" >&2
	cat "$BDIR/stderr.log" "$BDIR/mosquitto.log" >&2 2>/dev/null || true
	exit 1
}

stop_broker() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# lg LABEL PORT PID SCENARIO ARGS...: run the load generator, keep RESULT lines
lg() {
	local label=$1 port=$2 pid=$3 sc=$4
	shift 4
	"$LG" "$sc" --label "$label" --port "$port" --broker-pid "$pid" --timeout "$LG_TIMEOUT" "$@" | tee -a "$RAW" | sed 's/^/  /' >&2 || {
		log "scenario $sc on $label failed (exit ${PIPESTATUS[0]}); continuing"
	}
}

T_START=$(date +%s)
log "results in $WORK (raw: $RAW)"

# ---------------------------------------------------------------- 1,2,3,7: throughput
if want pubsub || want telemetry || want shadow || want artifact; then
	head -c $((16 * 1024 * 1024)) /dev/urandom >"$WORK/artifact.bin"
	start_broker vanilla vanilla; VPORT=$BPORT; VPID=$BPID
	start_broker plugin plugin; PPORT=$BPORT; PPID_=$BPID
	for rep in $(seq 1 "$REPS"); do
		# alternate the order so that drift of a shared machine hits both
		if [ $((rep % 2)) = 1 ]; then order="vanilla plugin"; else order="plugin vanilla"; fi
		for b in $order; do
			if [ "$b" = vanilla ]; then port=$VPORT; pid=$VPID; else port=$PPORT; pid=$PPID_; fi
			log "rep $rep/$REPS: throughput scenarios on $b"
			common=(--duration "$DURATION" --warmup 1)
			want pubsub && lg "$b" "$port" "$pid" pubsub --qos 0 "${common[@]}"
			want pubsub && lg "$b" "$port" "$pid" pubsub --qos 1 "${common[@]}"
			want telemetry && lg "$b" "$port" "$pid" telemetry "${common[@]}"
			want shadow && lg "$b" "$port" "$pid" shadow "${common[@]}"
			want shadow && lg "$b" "$port" "$pid" shadow --rate "$SHADOW_RATE" "${common[@]}"
			want artifact && lg "$b" "$port" "$pid" artifact --artifact-file "$WORK/artifact.bin" "${common[@]}"
		done
	done
	stop_broker "$VPID"
	stop_broker "$PPID_"
fi

# ---------------------------------------------------------------- 4: reconnect
if want reconnect; then
	for rep in $(seq 1 "$REPS"); do
		log "rep $rep/$REPS: reconnect with $RECONNECT_N devices (vanilla reference: connect + subscribe + hello)"
		for b in vanilla plugin; do
			start_broker "reconnect-$b-$rep" "$b"
			lg "$b" "$BPORT" "$BPID" reconnect --devices "$RECONNECT_N"
			stop_broker "$BPID"
			rm -rf "$WORK/reconnect-$b-$rep"
		done
	done
fi

# ---------------------------------------------------------------- 5,6: registry, fan-out, offline memory
if want fanout; then
	log "registering $FANOUT_N devices via \$CONTROL setDeviceAttributes (RSS at $MEM_CHECKPOINTS)"
	start_broker registry plugin
	lg plugin "$BPORT" "$BPID" register --devices "$FANOUT_N" --checkpoints "$MEM_CHECKPOINTS"
	stop_broker "$BPID"
	cp "$WORK/registry/fleetmq.db" "$WORK/template.db"
	rm -rf "$WORK/registry"
	for rep in $(seq 1 "$REPS"); do
		log "rep $rep/$REPS: fan-out to $FANOUT_N devices"
		start_broker "fanout-$rep" plugin "$WORK/template.db"
		lg plugin "$BPORT" "$BPID" fanout --devices "$FANOUT_N"
		stop_broker "$BPID"
		rm -rf "$WORK/fanout-$rep"
	done
	rm -f "$WORK/template.db"
	if [ -n "$MEM_MAX" ]; then
		log "registering $MEM_MAX devices for the large memory run"
		start_broker registry-large plugin
		lg plugin "$BPORT" "$BPID" register --devices "$MEM_MAX" --checkpoints "$MEM_CHECKPOINTS,$MEM_MAX" --timeout "$((LG_TIMEOUT > 3600 ? LG_TIMEOUT : 3600))"
		stop_broker "$BPID"
		rm -rf "$WORK/registry-large"
	fi
fi

# ---------------------------------------------------------------- 6: connected memory
if want connected; then
	# vanilla-retained: each device also publishes one retained message of a
	# Presence record's size, to attribute that part of the plugin's memory
	# plugin-noretain: the plugin with presence.retain false (events only);
	# plugin-direct: also delivery.direct true, devices do not subscribe
	for b in ${CONNECTED_BROKERS//,/ }; do
		log "memory: $CONNECTED_N connected devices on $b"
		kind=${b%-*}
		extra=()
		EXTRA_YAML=""
		[ "$b" = vanilla-retained ] && extra=(--retained)
		if [ "$b" = plugin-noretain ]; then
			extra=(--tag noretain)
			EXTRA_YAML=$'presence:\n  retain: false\n'
		fi
		if [ "$b" = plugin-direct ]; then
			extra=(--tag direct --no-subscribe)
			EXTRA_YAML=$'presence:\n  retain: false\ndelivery:\n  direct: true\n'
		fi
		start_broker "connected-$b" "$kind"
		lg "$kind" "$BPORT" "$BPID" connected --devices "$CONNECTED_N" "${extra[@]}"
		stop_broker "$BPID"
		rm -rf "$WORK/connected-$b"
	done
fi

# ---------------------------------------------------------------- report
T_END=$(date +%s)
mkdir -p "$ROOT/bench/results"
DATE=$(date -u +%Y-%m-%dT%H%M%SZ)
OUT=$ROOT/bench/results/$DATE.md
{
	echo "# fleetmq benchmark run $DATE"
	echo
	echo "- command: \`$CMDLINE\` (took $((T_END - T_START)) s)"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), kernel $(uname -r), $(free -g | awk '/^Mem:/{print $2}') GiB RAM"
	echo "- mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1), ulimit -n $NOFILE"
	echo "- source: ${BENCH_SOURCE:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + local changes')}"
	echo "- repetitions: $REPS (medians), throughput windows ${DURATION} s after 1 s warm-up"
	echo
	"$LG" report "$RAW"
	echo
	echo "<details><summary>raw RESULT lines</summary>"
	echo
	echo '```'
	cat "$RAW"
	echo '```'
	echo "</details>"
} >"$OUT"
"$LG" report "$RAW"
log "wrote $OUT"
