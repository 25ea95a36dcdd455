#!/usr/bin/env bash
# bench/agent_idle.sh - resident memory, idle CPU and disk writes of one
# fleetmq-agent.
#
# Builds the plugin and the agent (Release, in build-bench/ unless
# --build-dir; --no-build uses what is there), starts Mosquitto with
# fleetmq_plugin.so on a free loopback port in a temporary directory
# (handed to the mosquitto user when run as root), starts one fleetmq-agent
# with a typical configuration (no TLS on loopback, A/B slots, a release
# key, telemetry every 10 s, log level info), lets it settle, then samples
# /proc/<pid> for the measured period:
#   VmRSS (every second: min / max / last) and VmHWM   /proc/<pid>/status
#   Pss, private pages                                  /proc/<pid>/smaps_rollup
#   utime + stime -> idle CPU percent of one core         /proc/<pid>/stat
#   write_bytes, wchar, syscw deltas                      /proc/<pid>/io
#     (write_bytes = bytes sent to the storage layer; wchar / syscw also
#     count socket writes through write/writev, i.e. the MQTT packets)
#   files of the state dir modified during the period     find -newer
#   telemetry batches seen by an operator subscription    mosquitto_sub
# and prints a summary (Markdown rows on stdout, progress on stderr).
#
# Measurements only: nothing here fails on a large result. All traffic stays
# on 127.0.0.1; the broker and the agent this script starts are stopped on
# exit (by pid); nothing else is touched.
set -euo pipefail

usage() {
	cat <<EOF
usage: bench/agent_idle.sh [options]
  --duration S       measured seconds (60)
  --settle S         seconds between the agent's connection and the first sample (10)
  --interval-ms MS   telemetry.interval_ms of the agent (10000)
  --build-dir DIR    (build-bench)
  --agent BIN        measure this fleetmq-agent binary instead of DIR's
  --no-build         use the existing build
  --keep             keep the temporary directory
EOF
}

DURATION=60
SETTLE=10
INTERVAL_MS=10000
BUILD=1
KEEP=0
AGENT=""
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=$ROOT/build-bench

while [ $# -gt 0 ]; do
	case "$1" in
		--duration) DURATION=$2; shift 2 ;;
		--settle) SETTLE=$2; shift 2 ;;
		--interval-ms) INTERVAL_MS=$2; shift 2 ;;
		--build-dir) BUILD_DIR=$2; shift 2 ;;
		--agent) AGENT=$2; shift 2 ;;
		--no-build) BUILD=0; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

log() { echo "[agent_idle.sh $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- build
if [ "$BUILD" = 1 ]; then
	log "building (Release) in $BUILD_DIR"
	if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
		cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DFLEETMQ_BUILD_TESTS=OFF >/dev/null
	fi
	cmake --build "$BUILD_DIR" -j2 --target fleetmq_plugin fleetmq-agent >/dev/null
fi
PLUGIN=$BUILD_DIR/broker-plugin/fleetmq_plugin.so
[ -n "$AGENT" ] || AGENT=$BUILD_DIR/device-client/fleetmq-agent
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
if [ ! -x "$AGENT" ] || [ ! -f "$PLUGIN" ] || [ ! -x "$MOSQUITTO" ]; then echo "missing $AGENT, $PLUGIN or $MOSQUITTO" >&2; exit 1; fi

# ---------------------------------------------------------------- environment
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-agent-idle-XXXXXX")
chmod 755 "$WORK"
PIDS=()

cleanup() {
	local p i
	# the agent first (it may be under a wrapper that writes a report at exit)
	for p in $(printf '%s\n' "${PIDS[@]:-}" | tac); do
		[ -n "$p" ] || continue
		kill -TERM "$p" 2>/dev/null || continue
		for i in $(seq 1 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else log "kept $WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FSTYPE=$(stat -f -c %T "$WORK")
if [ "$FSTYPE" = tmpfs ]; then
	log "warning: $WORK is on tmpfs: write_bytes stays 0 whatever the agent does; set TMPDIR to a disk"
fi

free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
		return
	fi
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# ---------------------------------------------------------------- broker
BDIR=$WORK/broker
mkdir -p "$BDIR/artifacts"
PORT=$(free_port)
cat >"$BDIR/mosquitto.conf" <<EOF
listener $PORT 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
persistence false
log_dest file $BDIR/mosquitto.log
connection_messages true
plugin $PLUGIN
plugin_opt_config_file $BDIR/fleetmq.yaml
EOF
cat >"$BDIR/fleetmq.yaml" <<EOF
store:
  path: $BDIR/fleetmq.db
security:
  operator_usernames: [ops]
  other_topics: allow
artifacts:
  dir: $BDIR/artifacts
EOF
chmod -R a+rX "$BDIR"
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then chown -R mosquitto "$BDIR"; fi
"$MOSQUITTO" -c "$BDIR/mosquitto.conf" >"$BDIR/stderr.log" 2>&1 &
BPID=$!
PIDS+=("$BPID")
for i in $(seq 1 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
	if ! kill -0 "$BPID" 2>/dev/null || [ "$i" = 100 ]; then
		echo "the broker did not start; log:" >&2
		cat "$BDIR/stderr.log" "$BDIR/mosquitto.log" >&2 2>/dev/null || true
		exit 1
	fi
	sleep 0.1
done
log "broker pid $BPID on 127.0.0.1:$PORT"

# ---------------------------------------------------------------- agent
DEV=bench-dev-1
ADIR=$WORK/agent
mkdir -p "$ADIR/state" "$ADIR/slots/a" "$ADIR/etc"
echo 1.0.0 >"$ADIR/slots/a/VERSION"
ln -s a "$ADIR/slots/current"
KEYS=""
if command -v openssl >/dev/null 2>&1 \
		&& openssl genpkey -algorithm ed25519 -out "$ADIR/etc/release.key.pem" 2>/dev/null \
		&& openssl pkey -in "$ADIR/etc/release.key.pem" -pubout -out "$ADIR/etc/release.pub.pem" 2>/dev/null; then
	KEYS=$ADIR/etc/release.pub.pem
fi
echo '{}' >"$ADIR/etc/app-config.json"
cat >"$ADIR/etc/agent.yaml" <<EOF
broker:
  host: 127.0.0.1
  port: $PORT
device:
  id: $DEV
  type: sensor-v2
  hw_revision: r2
  software_name: firmware
  software_version: 1.0.0
state_dir: $ADIR/state
update:
  slots_dir: $ADIR/slots
  public_keys: [$KEYS]
  chunk_bytes: 32768
  persist_every_chunks: 16
  policy: auto
config:
  file: $ADIR/etc/app-config.json
telemetry:
  interval_ms: $INTERVAL_MS
log:
  level: info
EOF

SUB_OUT=$WORK/telemetry.txt
SUBPID=""
if command -v mosquitto_sub >/dev/null 2>&1; then
	mosquitto_sub -h 127.0.0.1 -p "$PORT" -V mqttv5 -u ops -i ops-agent-idle -q 1 \
		-t "fleet/$DEV/telemetry" -F '%U %t' >"$SUB_OUT" 2>/dev/null &
	SUBPID=$!
	PIDS+=("$SUBPID")
fi

"$AGENT" --config "$ADIR/etc/agent.yaml" >"$ADIR/agent.log" 2>&1 &
APID=$!
PIDS+=("$APID")
for i in $(seq 1 100); do
	if grep -q "connected (shadow version" "$ADIR/agent.log" 2>/dev/null; then break; fi
	if ! kill -0 "$APID" 2>/dev/null || [ "$i" = 100 ]; then
		echo "the agent did not connect; log:" >&2
		cat "$ADIR/agent.log" >&2
		exit 1
	fi
	sleep 0.1
done
log "agent pid $APID connected; settling ${SETTLE}s"
sleep "$SETTLE"

# ---------------------------------------------------------------- sample
CLK_TCK=$(getconf CLK_TCK)
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$APID/status"; }
cpu_ticks() { sed 's/^.*) //' "/proc/$APID/stat" | awk '{ print $12 + $13 }'; }    # utime + stime
io_field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$APID/io"; }
ns_now() { date +%s%N; }

touch "$WORK/marker"
sleep 0.05
t0=$(ns_now)
c0=$(cpu_ticks)
wb0=$(io_field write_bytes); wc0=$(io_field wchar); sw0=$(io_field syscw)
tel0=$( [ -f "$SUB_OUT" ] && wc -l <"$SUB_OUT" || echo 0)
rss_min=""; rss_max=0
log "sampling ${DURATION}s"
for _ in $(seq 1 "$DURATION"); do
	sleep 1
	kill -0 "$APID" 2>/dev/null || { echo "the agent exited during the measurement" >&2; cat "$ADIR/agent.log" >&2; exit 1; }
	r=$(status_kb VmRSS)
	if [ -z "$rss_min" ] || [ "$r" -lt "$rss_min" ]; then rss_min=$r; fi
	if [ "$r" -gt "$rss_max" ]; then rss_max=$r; fi
done
t1=$(ns_now)
c1=$(cpu_ticks)
wb1=$(io_field write_bytes); wc1=$(io_field wchar); sw1=$(io_field syscw)
tel1=$( [ -f "$SUB_OUT" ] && wc -l <"$SUB_OUT" || echo 0)
rss=$(status_kb VmRSS); hwm=$(status_kb VmHWM); vsz=$(status_kb VmSize)
anon=$(status_kb RssAnon); filerss=$(status_kb RssFile)
threads=$(status_kb Threads)
rollup() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$APID/smaps_rollup" 2>/dev/null || true; }
pss=$(rollup Pss); pss_anon=$(rollup Pss_Anon); pss_file=$(rollup Pss_File); priv=$(( $(rollup Private_Clean) + $(rollup Private_Dirty) ))
changed=$(find "$ADIR/state" "$ADIR/etc" "$ADIR/slots" -newer "$WORK/marker" \( -type f -o -type l \) 2>/dev/null | sed "s|$WORK/||" | tr '\n' ' ')

elapsed_ms=$(( (t1 - t0) / 1000000 ))
cpu_ms=$(( (c1 - c0) * 1000 / CLK_TCK ))
cpu_pct=$(awk -v c="$cpu_ms" -v e="$elapsed_ms" 'BEGIN { printf "%.3f", 100 * c / e }')
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cat <<EOF

## agent_idle: $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) x ${CPU_MODEL:-unknown CPU}, $(uname -r), $FSTYPE
agent: $AGENT ($(file -b "$AGENT" 2>/dev/null | grep -o 'not stripped\|stripped' || true))
telemetry.interval_ms $INTERVAL_MS, settle ${SETTLE}s, measured ${elapsed_ms} ms

| metric | value |
| --- | --- |
| VmRSS at the end | $rss KiB ($(mib "$rss") MiB: anon $anon KiB, file $filerss KiB) |
| VmRSS during the period (1 s samples) | min $rss_min KiB, max $rss_max KiB |
| VmHWM (peak since start) | $hwm KiB ($(mib "$hwm") MiB) |
| Pss (shared pages divided among their users) | $pss KiB (anon $pss_anon KiB, file $pss_file KiB) |
| private (clean + dirty) | $priv KiB |
| VmSize / threads | $vsz KiB / $threads |
| CPU time (utime+stime) | $cpu_ms ms in $elapsed_ms ms = $cpu_pct % of one core |
| write_bytes (to the storage layer) | $((wb1 - wb0)) |
| wchar / syscw (write(2)-family calls: Paho writes MQTT packets with writev) | $((wc1 - wc0)) bytes / $((sw1 - sw0)) calls |
| files modified under state_dir, etc, slots | ${changed:-none} |
| telemetry batches published | $((tel1 - tel0)) |
EOF
