#!/usr/bin/env bash
# demo.sh - fleetmq in two minutes: device shadows and presence, end to end.
#
# Starts a private Mosquitto with the fleetmq plugin on a free loopback port,
# a few simulated devices (fleetmq-sim) and drives them with the operator CLI
# (fleetmq), step by step. Every step checks what it shows; the script exits
# 0 only if every check passed. Everything it starts is stopped on exit, and
# its files live in a temporary directory (kept if a check failed).
#
#   scripts/demo.sh                run the demo with 3 devices
#   scripts/demo.sh --devices 5    more devices (the last one joins late)
#   scripts/demo.sh --keep         leave broker and devices running until Ctrl-C
#
# Installs missing Debian packages first (scripts/setup.sh; skip with
# FLEETMQ_SKIP_SETUP=1), then builds into build/ (override with BUILD=...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
FLEETMQ=$BUILD/tools/fleetmq
SIM=$BUILD/tools/fleetmq-sim
PLUGIN=$BUILD/broker-plugin/fleetmq_plugin.so

DEVICES=3
KEEP=0
INTERVAL_MS=1000              # device report period
WAIT_S=${WAIT_S:-15}          # longest wait for any expected change
DESIRED='{"led":"on","sample_rate_hz":10}'

usage() {
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
		--devices)
			[ $# -ge 2 ] || { echo "demo: --devices needs a number" >&2; exit 2; }
			DEVICES=$2; shift 2 ;;
		--devices=*) DEVICES=${1#*=}; shift ;;
		--keep) KEEP=1; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "demo: unknown argument '$1' (try --help)" >&2; exit 2 ;;
	esac
done
if ! [[ $DEVICES =~ ^[0-9]+$ ]] || [ "$DEVICES" -lt 2 ] || [ "$DEVICES" -gt 50 ]; then
	echo "demo: --devices must be a number from 2 to 50" >&2
	exit 2
fi

# The last device joins late (to show delivery of desired state set while it
# was offline); one of the others is stopped near the end.
LATE=dev-$DEVICES
EARLY=()
for ((i = 1; i < DEVICES; i++)); do EARLY+=("dev-$i"); done
if [ "$DEVICES" -ge 3 ]; then STOPPED=dev-2; else STOPPED=dev-1; fi
ALL=("${EARLY[@]}" "$LATE")

# ---------------------------------------------------------------- output

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B= G= R= D= N=; fi
STEP=0
step() { STEP=$((STEP + 1)); printf '\n%s== %d. %s ==%s\n' "$B" "$STEP" "$*" "$N"; }
note() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }

CHECKS=0
FAILS=0
check() {   # check "what" command...: run command, count and print the result
	local what=$1; shift
	CHECKS=$((CHECKS + 1))
	if "$@"; then
		printf '  %s[ok]%s %s\n' "$G" "$N" "$what"
	else
		FAILS=$((FAILS + 1))
		printf '  %s[FAIL]%s %s\n' "$R" "$N" "$what"
	fi
	return 0
}

# ---------------------------------------------------------------- processes

TMP=
BROKER_PID=
declare -A SIM_PIDS=()

stop_pid() {   # stop_pid PID: SIGTERM, then SIGKILL after 5 s
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? id
	trap - EXIT INT TERM
	for id in "${!SIM_PIDS[@]}"; do stop_pid "${SIM_PIDS[$id]}"; done
	[ -n "$BROKER_PID" ] && stop_pid "$BROKER_PID"
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		if [ "$rc" -eq 0 ] && [ "$FAILS" -eq 0 ]; then
			rm -rf "$TMP"
		else
			echo "demo: logs kept in $TMP (mosquitto.log, dev-*.log)" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT TERM

cli() { "$FLEETMQ" --port "$PORT" --timeout-ms 3000 "$@"; }

quoted() {   # the arguments as one would type them in a shell
	local a out=()
	for a in "$@"; do
		if [[ $a =~ ^[A-Za-z0-9._/:=,@+-]+$ ]]; then out+=("$a"); else out+=("'${a//\'/\'\\\'\'}'"); fi
	done
	printf '%s' "${out[*]}"
}

show() {   # show fleetmq ARGS...: print the command, run it, indent its output
	local rc=0
	printf '%s$ fleetmq %s%s\n' "$D" "$(quoted "$@")" "$N"
	cli "$@" 2>&1 | indent || rc=$?
	return "$rc"
}

json_get() {   # json_get 'python expression over d' < json
	python3 -c 'import json, sys
d = json.load(sys.stdin)
v = eval(sys.argv[1])
print("" if v is None else v)' "$1"
}

start_device() {   # start_device ID TYPE
	"$SIM" --port "$PORT" --id "$1" --type "$2" --hw rev-b --interval-ms "$INTERVAL_MS" \
		--state-dir "$TMP/state" >>"$TMP/$1.log" 2>&1 &
	SIM_PIDS[$1]=$!
	note "  started $1 (type $2), log: $TMP/$1.log"
}

device_type() { if [ "$1" = "$LATE" ] && [ "$DEVICES" -ge 3 ]; then echo gateway-v1; else echo sensor-v2; fi; }

presence_of() { cli --json devices presence "$1" 2>/dev/null | json_get 'd[0]["state"]'; }
is_presence() { [ "$(presence_of "$1")" = "$2" ]; }

# in sync: no delta, and every desired key of $DESIRED reported with its value
in_sync() {
	cli --json shadow get "$1" 2>/dev/null | DESIRED=$DESIRED json_get '
"yes" if d["delta"] is None and all(d["state"]["reported"].get(k) == v
	for k, v in json.loads(__import__("os").environ["DESIRED"]).items()) else "no"' | grep -qx yes
}
has_delta() {
	[ "$(cli --json shadow get "$1" 2>/dev/null | json_get '"yes" if d["delta"] else "no"')" = yes ]
}

wait_until() {   # wait_until SECONDS command...: poll every 0.25 s
	local deadline=$((SECONDS + $1)); shift
	while ! "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.25
	done
}

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ================================================================ the demo

printf '%sfleetmq demo: device shadows and presence%s\n' "$B" "$N"
note "A broker with the fleetmq plugin, $DEVICES simulated devices, and the operator CLI."

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-demo.XXXXXX")
mkdir -p "$TMP/state"

# ---------------------------------------------------------------- build
step "Build the plugin, the CLI and the device simulator"
if [ "${FLEETMQ_SKIP_SETUP:-0}" != 1 ]; then
	note "  installing missing Debian packages (scripts/setup.sh)"
	bash "$ROOT/scripts/setup.sh" >"$TMP/setup.log" 2>&1 || { tail -30 "$TMP/setup.log" >&2; exit 1; }
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	note "  configuring $BUILD"
	cmake -S "$ROOT" -B "$BUILD" >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log" >&2; exit 1; }
fi
if ! cmake --build "$BUILD" -j2 --target fleetmq_plugin fleetmq fleetmq-sim >>"$TMP/build.log" 2>&1; then
	tail -30 "$TMP/build.log" >&2
	echo "demo: build failed (full log: $TMP/build.log)" >&2
	exit 1
fi
note "  built: ${PLUGIN#$ROOT/}, ${FLEETMQ#$ROOT/}, ${SIM#$ROOT/}"
[ -x "$MOSQUITTO" ] || { echo "demo: $MOSQUITTO not found (apt-get install mosquitto, or set MOSQUITTO=)" >&2; exit 1; }

# ---------------------------------------------------------------- broker
step "Start Mosquitto with the fleetmq plugin"
PORT=$(free_port)
cat >"$TMP/fleetmq.yaml" <<EOF
store:
  path: $TMP/fleetmq.db
security:
  operator_usernames: [ops]      # the CLI connects as user "ops"
presence:
  silence_threshold_ms: 5000     # connected but quiet for 5 s: "silent"
  offline_grace_ms: 500          # disconnected for 0.5 s: "offline"
EOF
{
	echo "listener $PORT 127.0.0.1"
	echo "allow_anonymous true"
	echo "persistence false"
	# As root, mosquitto would switch to user "mosquitto", who cannot write
	# this private temp dir: stay the current user instead.
	[ "$(id -u)" -eq 0 ] && echo "user $(id -un)"
	echo "log_dest file $TMP/mosquitto.log"
	echo "plugin $PLUGIN"
	echo "plugin_opt_config_file $TMP/fleetmq.yaml"
} >"$TMP/mosquitto.conf"
"$MOSQUITTO" -c "$TMP/mosquitto.conf" >"$TMP/mosquitto.out" 2>&1 &
BROKER_PID=$!
ready=0
for ((i = 0; i < 100; i++)); do
	if ! kill -0 "$BROKER_PID" 2>/dev/null; then break; fi
	if grep -q 'fleetmq: ready' "$TMP/mosquitto.log" 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
		ready=1
		break
	fi
	sleep 0.1
done
if [ "$ready" -ne 1 ]; then
	echo "demo: mosquitto did not start; its log:" >&2
	cat "$TMP/mosquitto.out" "$TMP/mosquitto.log" 2>/dev/null | tail -20 >&2
	exit 1
fi
note "  listening on 127.0.0.1:$PORT, plugin store $TMP/fleetmq.db"
note "  plugin says: $(grep -o 'fleetmq: ready.*' "$TMP/mosquitto.log" | head -1)"
note "  (every fleetmq command below also gets --port $PORT)"

# ---------------------------------------------------------------- devices
step "Start ${#EARLY[@]} simulated devices ($LATE stays offline for now)"
note "Each device connects as client id = username = its id, says hello and"
note "reports {temperature, uptime_s} every ${INTERVAL_MS} ms."
for id in "${EARLY[@]}"; do start_device "$id" "$(device_type "$id")"; done
for id in "${EARLY[@]}"; do
	check "$id is online" wait_until "$WAIT_S" is_presence "$id" online
done

step "Presence: which devices are online?"
note "The plugin keeps a retained Presence record per device on fleet/<id>/presence."
show devices presence "${ALL[@]}" || true
check "$LATE has no presence record yet (never connected)" is_presence "$LATE" unknown

# ---------------------------------------------------------------- desired state
step "Set desired state on ${EARLY[*]}"
note "The operator writes desired state; the plugin stores it, bumps the shadow"
note "version and pushes a delta (desired minus reported) to each connected device."
for id in "${EARLY[@]}"; do
	check "plugin accepted desired state for $id" show shadow set-desired "$id" "$DESIRED"
done

step "Wait for the devices to apply it (the delta closes)"
note "A device applies the delta and reports the new values back; when reported"
note "matches desired, the delta is gone."
for id in "${EARLY[@]}"; do
	check "$id converged: reported matches desired, no delta" wait_until "$WAIT_S" in_sync "$id"
done
show shadow get "${EARLY[0]}" || true
note "What the devices logged:"
for id in "${EARLY[@]}"; do grep -h 'applied desired' "$TMP/$id.log" | indent || true; done

# ---------------------------------------------------------------- offline device
step "Set desired state on $LATE while it is offline"
check "plugin accepted desired state for offline $LATE" show shadow set-desired "$LATE" "$DESIRED"
show shadow get "$LATE" || true
check "$LATE has a pending delta" has_delta "$LATE"

step "Start $LATE: it says hello and catches up"
note "Its hello carries the last shadow version it applied (none yet); the plugin"
note "answers with what it missed, and the device applies it."
start_device "$LATE" "$(device_type "$LATE")"
check "$LATE is online" wait_until "$WAIT_S" is_presence "$LATE" online
check "$LATE converged: reported matches desired, no delta" wait_until "$WAIT_S" in_sync "$LATE"
note "What $LATE logged:"
grep -hE 'hello accepted|applied desired' "$TMP/$LATE.log" | indent || true

# ---------------------------------------------------------------- stop a device
step "Stop $STOPPED: presence goes offline"
note "The device disconnects cleanly; after the grace period (0.5 s) the plugin"
note "publishes it as offline."
stop_pid "${SIM_PIDS[$STOPPED]}"
unset "SIM_PIDS[$STOPPED]"
check "$STOPPED is offline" wait_until "$WAIT_S" is_presence "$STOPPED" offline
show devices presence "${ALL[@]}" || true

# ---------------------------------------------------------------- summary
step "Summary"
declare -A PRESENCE=() SYNC=()
printf '  %-8s  %-9s  %-14s  %s\n' DEVICE PRESENCE "SHADOW VERSION" "DESIRED = REPORTED"
for id in "${ALL[@]}"; do
	PRESENCE[$id]=$(presence_of "$id" || true)
	version=$(cli --json shadow get "$id" 2>/dev/null | json_get 'd["version"]' || true)
	if in_sync "$id"; then SYNC[$id]=yes; else SYNC[$id]=no; fi
	printf '  %-8s  %-9s  %-14s  %s\n' "$id" "${PRESENCE[$id]:-?}" "${version:-?}" "${SYNC[$id]}"
done
for id in "${ALL[@]}"; do
	if [ "$id" = "$STOPPED" ]; then want=offline; else want=online; fi
	check "$id: $want and in sync" test "${PRESENCE[$id]}/${SYNC[$id]}" = "$want/yes"
done

echo
if [ "$FAILS" -eq 0 ]; then
	printf '%sAll %d checks passed.%s\n' "$G" "$CHECKS" "$N"
else
	printf '%s%d of %d checks failed.%s\n' "$R" "$FAILS" "$CHECKS" "$N"
fi

if [ "$KEEP" -eq 1 ]; then
	echo
	note "Still running (--keep). Try:"
	note "  $FLEETMQ --port $PORT devices presence ${ALL[*]}"
	note "  $FLEETMQ --port $PORT shadow set-desired ${EARLY[0]} '{\"led\":\"off\"}'"
	note "  tail -f $TMP/${EARLY[0]}.log"
	note "Press Ctrl-C to stop everything."
	trap 'echo; exit $((FAILS > 0))' INT TERM
	while true; do sleep 1; done
fi

[ "$FAILS" -eq 0 ]
