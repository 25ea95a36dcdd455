#!/usr/bin/env bash
# demo.sh - fleetmq in two minutes: a small fleet of real device agents gets
# a signed software update (canary first), a configuration change and a
# feature switch, end to end.
#
# Starts a private Mosquitto with the fleetmq plugin on a free loopback port
# and N fleetmq-agent processes (sensors and a gateway; each has its own state
# directory and A/B slot directory with version 1.0.0 installed), then drives
# them with the operator CLI (fleetmq), step by step:
#   - a release key, and sensor firmware 2.0.0 signed with it;
#   - an update job for every device with one canary first: the sensors
#     install 2.0.0, the gateway rejects it (wrong device type), and a sensor
#     that was offline gets it when it comes back, mid-rollout;
#   - a config job (sample_rate_hz) and a feature job (bluetooth off);
#   - a table of every device and what happened to it.
# Every step checks what it shows; the script exits 0 only if every check
# passed. Everything it starts is stopped on exit (also on Ctrl-C); its files
# live in a temporary directory (kept if something failed, for its logs).
#
#   scripts/demo.sh                5 devices: sensor-1..4 (sensor-4 offline at first), gateway-1
#   scripts/demo.sh --devices N    N devices, 3..50 (one gateway per 5 devices, the rest sensors)
#   scripts/demo.sh --keep         leave everything running until Ctrl-C, to try the CLI
#   scripts/demo.sh --help         this text
#
# Installs missing Debian packages first (scripts/setup.sh; skip with
# FLEETMQ_SKIP_SETUP=1), then builds into build/ (override with BUILD=...).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac    # the demo runs in its temp dir
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
FLEETMQ=$BUILD/tools/fleetmq
AGENT=$BUILD/device-client/fleetmq-agent
PLUGIN=$BUILD/broker-plugin/fleetmq_plugin.so

DEVICES=5
KEEP=0
WAIT_S=${WAIT_S:-30}          # longest wait for any expected change
TELEMETRY_MS=1000             # agents' telemetry period (keeps presence fresh)
WATCH_MS=500                  # jobs watch polling period

FW_VERSION=2.0.0
FW_NAME=sensor-fw-$FW_VERSION.bin
JOB_UPDATE=fw-$FW_VERSION
JOB_CONFIG=sample-rate-10
JOB_FEATURE=bluetooth-off

usage() {
	awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
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
if ! [[ $DEVICES =~ ^[0-9]+$ ]] || [ "$DEVICES" -lt 3 ] || [ "$DEVICES" -gt 50 ]; then
	echo "demo: --devices must be a number from 3 to 50 (at least 1 gateway and 2 sensors)" >&2
	exit 2
fi

# The fleet: one gateway per 5 devices (at least one), the rest sensors. The
# last sensor is offline when the rollout starts and comes back during it.
GATEWAYS=$((DEVICES / 5)); [ "$GATEWAYS" -ge 1 ] || GATEWAYS=1
SENSORS=$((DEVICES - GATEWAYS))
SENSOR_IDS=()
GATEWAY_IDS=()
declare -A TYPE=()
for ((i = 1; i <= SENSORS; i++)); do SENSOR_IDS+=("sensor-$i"); TYPE[sensor-$i]=sensor-v2; done
for ((i = 1; i <= GATEWAYS; i++)); do GATEWAY_IDS+=("gateway-$i"); TYPE[gateway-$i]=gateway-v1; done
ALL=("${SENSOR_IDS[@]}" "${GATEWAY_IDS[@]}")
OFFLINE=sensor-$SENSORS
CANARY=sensor-1               # registered first, so the first target of --all

# ---------------------------------------------------------------- output

if [ -t 1 ]; then B=$'\e[1m'; G=$'\e[32m'; R=$'\e[31m'; D=$'\e[2m'; N=$'\e[0m'; else B= G= R= D= N=; fi
STEP=0
step() { STEP=$((STEP + 1)); printf '\n%s== %d. %s ==%s\n' "$B" "$STEP" "$*" "$N"; }
note() { printf '%s\n' "$*"; }
indent() { sed 's/^/    /'; }
plural() { if [ "$1" -eq 1 ]; then printf '%s' "$2"; else printf '%s' "$3"; fi; }   # plural N ONE MANY

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
WATCH_PID=
declare -A AGENT_PIDS=()
T0=$SECONDS

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
	[ -n "$WATCH_PID" ] && stop_pid "$WATCH_PID"
	for id in "${!AGENT_PIDS[@]}"; do stop_pid "${AGENT_PIDS[$id]}"; done
	[ -n "$BROKER_PID" ] && stop_pid "$BROKER_PID"
	if [ -n "$TMP" ] && [ -d "$TMP" ]; then
		cd /
		# kept when something went wrong, not after a plain Ctrl-C
		if [ "$FAILS" -eq 0 ] && { [ "$rc" -eq 0 ] || [ "$rc" -eq 130 ] || [ "$rc" -eq 143 ]; }; then
			rm -rf "$TMP"
		else
			echo "demo: files kept in $TMP (broker/mosquitto.log, devices/<id>/agent.log)" >&2
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted" >&2; exit 130' INT
trap 'echo "demo: terminated" >&2; exit 143' TERM

# Every fleetmq command runs in $TMP (relative paths) against the demo broker
# (FLEETMQ_PORT, exported once the broker is up).
cli() { "$FLEETMQ" --timeout-ms 5000 "$@"; }

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
	cli "$@" >"$TMP/show.out" 2>&1 || rc=$?
	indent <"$TMP/show.out"
	return "$rc"
}

wait_until() {   # wait_until SECONDS command...: poll every 0.2 s
	local deadline=$((SECONDS + $1)); shift
	while ! "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

free_port() {
	python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# ---------------------------------------------------------------- devices

# A device: devices/<id>/ with agent.yaml, agent.log, state/ (the agent's
# persistent state) and slots/ (built-in A/B handler: a/ holds version 1.0.0,
# current -> a), and app-config.json (what config jobs write).
make_device() {   # make_device ID TYPE
	local id=$1 type=$2 dir=$TMP/devices/$1
	mkdir -p "$dir/state" "$dir/slots/a"
	echo 1.0.0 >"$dir/slots/a/VERSION"
	ln -s a "$dir/slots/current"
	cat >"$dir/agent.yaml" <<EOF
broker:
  host: 127.0.0.1
  port: $PORT
  reconnect_min_ms: 100
  reconnect_max_ms: 1000
device:
  id: $id
  type: $type
  hw_revision: rev-b
  software_name: firmware
  software_version: 1.0.0
state_dir: $dir/state
update:
  slots_dir: $dir/slots
  public_keys: [$TMP/keys/release.pub.pem]
  read_timeout_ms: 3000
  health_timeout_ms: 5000
config:
  file: $dir/app-config.json
features:
  file: $dir/state/features.json
telemetry:
  interval_ms: $TELEMETRY_MS
log:
  level: info
EOF
}

start_agent() {   # start_agent ID
	"$AGENT" --config "$TMP/devices/$1/agent.yaml" >>"$TMP/devices/$1/agent.log" 2>&1 &
	AGENT_PIDS[$1]=$!
}

stop_agent() {   # stop_agent ID
	stop_pid "${AGENT_PIDS[$1]}"
	unset "AGENT_PIDS[$1]"
}

# The CLI's text tables are read with awk: starting python for every poll
# would cost more than the poll itself on a slow machine.
presence_states() {   # presence_states ID...: "device state" lines
	cli devices presence "$@" 2>/dev/null | awk 'NR > 1 && NF >= 2 { print $1, $2 }'
}
all_in_presence() {   # all_in_presence STATE ID...
	local want=$1; shift
	[ "$(presence_states "$@" | awk -v w="$want" '$2 == w' | wc -l)" -eq $# ]
}

# The devices are registered and their hello seen (devices list: SOFTWARE).
all_say_firmware() {   # all_say_firmware VERSION ID...
	local want=$1; shift
	cli devices list 2>/dev/null | awk -v w="$want" -v ids="$*" '
		BEGIN { n = split(ids, a, " "); for (i = 1; i <= n; i++) need[a[i]] = 1 }
		($1 in need) && $(NF - 1) == "firmware" && $NF == w { c++ }
		END { exit c != n }'
}

exec_statuses() {   # exec_statuses JOB: "device status" lines of its executions
	cli jobs show "$1" --executions 2>/dev/null |
		awk '$1 == "DEVICE" && $2 == "STATUS" { t = 1; next } t && NF >= 2 { print $1, $2 }'
}
exec_status() { exec_statuses "$1" | awk -v d="$2" '$1 == d { print $2 }'; }

fetch_shadows() {   # fetch_shadows ID...: into $TMP/shadows/<id>.json
	local id
	mkdir -p "$TMP/shadows"
	for id in "$@"; do
		cli --json shadow get "$id" >"$TMP/shadows/$id.json" 2>/dev/null || echo '{}' >"$TMP/shadows/$id.json"
	done
}

# reported_all PATH WANT ID...: reported.PATH (dotted) is WANT (JSON; strings
# bare) in every device's shadow. The values land in $TMP/reported.txt.
reported_all() {
	local path=$1 want=$2; shift 2
	fetch_shadows "$@"
	python3 -c 'import json, sys
shadows, path, ids = sys.argv[1], sys.argv[2], sys.argv[3:]
for i in ids:
    try:
        v = json.load(open(f"{shadows}/{i}.json"))["state"]["reported"]
        for k in path.split("."):
            v = v[k]
        v = v if isinstance(v, str) else json.dumps(v)
    except (OSError, ValueError, KeyError, TypeError):
        v = "(none)"
    print(i, v)' "$TMP/shadows" "$path" "$@" >"$TMP/reported.txt"
	! awk -v w="$want" '$2 != w' "$TMP/reported.txt" | grep -q .
}

check_reported() {   # check_reported WHAT PATH WANT ID...: wait for it, then check
	local what=$1 path=$2 want=$3; shift 3
	if wait_until "$WAIT_S" reported_all "$path" "$want" "$@"; then
		check "$what" true
	else
		check "$what" false
		awk -v w="$want" -v p="$path" '$2 != w { print "    " $1 ": reported." p " is " $2 }' "$TMP/reported.txt"
	fi
}

slot_version() { cat "$TMP/devices/$1/slots/current/VERSION" 2>/dev/null || echo '?'; }

# ---------------------------------------------------------------- jobs

# watch_start JOB: `fleetmq jobs watch JOB` in the background (WATCH_PID); on a
# terminal it redraws a live view in place, otherwise it prints one line per
# change. Nothing else may print until watch_wait.
watch_start() {
	printf '%s$ fleetmq jobs watch %s --interval-ms %d%s\n' "$D" "$1" "$WATCH_MS" "$N"
	# the binary itself, not the cli function: a function would run in a
	# subshell, and $! would not be the watch
	"$FLEETMQ" --timeout-ms 5000 jobs watch "$1" --interval-ms "$WATCH_MS" --until-timeout $((WAIT_S * 2000)) &
	WATCH_PID=$!
}
watch_wait() {   # watch_wait: the exit status of the watch
	local rc=0
	wait "$WATCH_PID" || rc=$?
	WATCH_PID=
	return "$rc"
}

# ================================================================ the demo

printf '%sfleetmq demo: a fleet of %d device agents, a canary rollout, a config change, a feature switch%s\n' \
	"$B" "$DEVICES" "$N"
note "A broker with the fleetmq plugin, $SENSORS sensors and $GATEWAYS $(plural "$GATEWAYS" gateway gateways) running the real"
note "device agent (fleetmq-agent), and the operator CLI (fleetmq)."

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fleetmq-demo.XXXXXX")
chmod 755 "$TMP"
mkdir -p "$TMP/broker" "$TMP/artifacts" "$TMP/keys" "$TMP/firmware" "$TMP/devices"
cd "$TMP"

# ---------------------------------------------------------------- build
step "Install what is missing and build"
if [ "${FLEETMQ_SKIP_SETUP:-0}" != 1 ]; then
	note "  scripts/setup.sh: installs the Debian packages that are missing"
	bash "$ROOT/scripts/setup.sh" >"$TMP/setup.log" 2>&1 || { tail -30 "$TMP/setup.log" >&2; exit 1; }
	note "  $(grep '^setup:' "$TMP/setup.log" | tail -1)"
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
	note "  configuring $BUILD"
	cmake -S "$ROOT" -B "$BUILD" >"$TMP/build.log" 2>&1 || { tail -30 "$TMP/build.log" >&2; exit 1; }
fi
if ! cmake --build "$BUILD" -j2 --target fleetmq_plugin fleetmq fleetmq-agent >>"$TMP/build.log" 2>&1; then
	tail -30 "$TMP/build.log" >&2
	echo "demo: build failed (full log: $TMP/build.log)" >&2
	exit 1
fi
note "  broker plugin  ${PLUGIN#$ROOT/}"
note "  device agent   ${AGENT#$ROOT/}"
note "  operator CLI   ${FLEETMQ#$ROOT/}"
[ -x "$MOSQUITTO" ] || { echo "demo: $MOSQUITTO not found (apt-get install mosquitto, or set MOSQUITTO=)" >&2; exit 1; }

# ---------------------------------------------------------------- broker
step "Start Mosquitto with the fleetmq plugin"
# start_broker PORT: write the configuration, start mosquitto, wait until the
# plugin is ready and the port accepts connections.
start_broker() {
	local port=$1 i
	cat >"$TMP/broker/fleetmq.yaml" <<EOF
store:
  path: $TMP/broker/fleetmq.db   # devices, shadows, jobs, audit log
  synchronous: normal
security:
  operator_usernames: [ops]      # the CLI connects as user "ops"
  other_topics: allow            # no other access control on this demo broker
presence:
  silence_threshold_ms: 5000     # connected but quiet for 5 s: "silent"
  check_interval_ms: 200
  offline_grace_ms: 500          # disconnected for 0.5 s: "offline"
jobs:
  check_interval_ms: 50          # rollouts advance every 50 ms
artifacts:
  dir: $TMP/artifacts            # signed update payloads, served over MQTT
EOF
	{
		echo "listener $port 127.0.0.1"
		echo "allow_anonymous true"
		# Small request/response messages (job updates, artifact chunks) go
		# out at once instead of waiting for the peer's delayed ACK (~40 ms).
		echo "set_tcp_nodelay true"
		echo "persistence false"
		echo "log_dest file $TMP/broker/mosquitto.log"
		echo "connection_messages true"
		echo "plugin $PLUGIN"
		echo "plugin_opt_config_file $TMP/broker/fleetmq.yaml"
	} >"$TMP/broker/mosquitto.conf"
	rm -f "$TMP/broker/mosquitto.log"
	if [ "$(id -u)" -eq 0 ]; then
		# As root, mosquitto switches to user "mosquitto" before it opens its
		# log and the plugin's store: give that user the broker's directory.
		if id mosquitto >/dev/null 2>&1; then
			chown -R mosquitto: "$TMP/broker"
		else
			echo "user root" >>"$TMP/broker/mosquitto.conf"
		fi
	fi
	"$MOSQUITTO" -c "$TMP/broker/mosquitto.conf" >"$TMP/broker/mosquitto.out" 2>&1 &
	BROKER_PID=$!
	for ((i = 0; i < 100; i++)); do
		kill -0 "$BROKER_PID" 2>/dev/null || break
		if grep -q 'fleetmq: ready' "$TMP/broker/mosquitto.log" 2>/dev/null \
				&& (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	stop_pid "$BROKER_PID"
	BROKER_PID=
	return 1
}
# A port probed free may be taken before mosquitto binds it: then try another.
for attempt in 1 2 3; do
	PORT=$(free_port)
	start_broker "$PORT" && break
	if [ "$attempt" -eq 3 ] || ! grep -qi 'address already in use' "$TMP/broker/mosquitto.log" "$TMP/broker/mosquitto.out" 2>/dev/null; then
		echo "demo: mosquitto did not start; its log:" >&2
		cat "$TMP/broker/mosquitto.out" "$TMP/broker/mosquitto.log" 2>/dev/null | tail -20 >&2
		exit 1
	fi
done
export FLEETMQ_PORT=$PORT
note "  listening on 127.0.0.1:$PORT; store, log and config in $TMP/broker/"
note "  plugin says: $(grep -o 'fleetmq: ready.*' "$TMP/broker/mosquitto.log" | head -1)"
note "  artifacts are served from $TMP/artifacts/"
note "  (FLEETMQ_PORT=$PORT is exported: every fleetmq command below talks to this broker;"
note "   they run in $TMP)"

# ---------------------------------------------------------------- release key
step "Create a release signing key"
note "Devices install only artifacts signed by a key they trust: the private key"
note "stays with the release manager, the public key goes into every device image."
check "release key generated" show keys generate keys/release.key.pem keys/release.pub.pem

# ---------------------------------------------------------------- fleet
step "Start the fleet: $DEVICES fleetmq-agent processes"
note "Each device has its own state directory and A/B slot directory (slot a holds"
note "version 1.0.0, current -> a) and trusts keys/release.pub.pem."
for id in "${ALL[@]}"; do make_device "$id" "${TYPE[$id]}"; done
# $CANARY registers (says hello) first: it is then the first target of a job
# for --all, which makes it the canary of --canary-count 1.
start_agent "$CANARY"
wait_until "$WAIT_S" all_say_firmware 1.0.0 "$CANARY" || true
for id in "${ALL[@]}"; do [ "$id" = "$CANARY" ] || start_agent "$id"; done
note "  started ${ALL[*]} (logs: devices/<id>/agent.log)"
check "all $DEVICES agents connected and said hello (firmware 1.0.0)" \
	wait_until "$WAIT_S" all_say_firmware 1.0.0 "${ALL[@]}"
note "$OFFLINE loses its network: we stop its agent. The registry keeps it, and"
note "jobs for it wait in its queue until it comes back."
stop_agent "$OFFLINE"
check "$OFFLINE is offline" wait_until "$WAIT_S" all_in_presence offline "$OFFLINE"
show devices list || true

# ---------------------------------------------------------------- artifact
step "Build and sign sensor firmware $FW_VERSION"
note "A 256 KiB image, signed (Ed25519) and put into the broker's artifact store;"
note "its signed metadata says which device types may install it."
{ echo "sensor-v2 firmware $FW_VERSION"; head -c 262144 /dev/urandom; } >"firmware/$FW_NAME"
check "artifact signed and stored" show artifacts add "firmware/$FW_NAME" --version "$FW_VERSION" \
	--device-types sensor-v2 --key keys/release.key.pem --dir artifacts
show artifacts list --dir artifacts --key keys/release.pub.pem || true

# ---------------------------------------------------------------- update
step "Roll out $FW_VERSION to every device, one canary first"
note "The job targets all $DEVICES devices. $CANARY is the canary: the others stay pending"
note "until it has succeeded. Sensors download, verify and install into their other"
note "A/B slot. $(plural "$GATEWAYS" "The gateway rejects" "Gateways reject") the update: the artifact is not made for"
note "$(plural "$GATEWAYS" its their) device type. $OFFLINE is offline: its job waits in its queue."
check "update job created" show jobs create --id "$JOB_UPDATE" --artifact "$FW_NAME" --artifacts-dir artifacts \
	--all --canary-count 1 --description "sensor firmware $FW_VERSION"
note "Watch it: first 1 in progress (the canary) and $((DEVICES - 1)) pending, then the rest."
watch_start "$JOB_UPDATE"
# While the watch runs (and prints): once every device but $OFFLINE is done,
# bring $OFFLINE back.
others_done() {
	exec_statuses "$JOB_UPDATE" >"$TMP/statuses.txt"
	[ -s "$TMP/statuses.txt" ] && ! awk -v o="$OFFLINE" '$1 != o && $2 !~ /^(SUCCEEDED|FAILED|REJECTED|TIMED_OUT|CANCELED)$/' \
		"$TMP/statuses.txt" | grep -q .
}
others_ok=0
wait_until "$WAIT_S" others_done && others_ok=1
offline_status=$(exec_status "$JOB_UPDATE" "$OFFLINE" || true)
sleep 1
back_at=$(date -u '+%H:%M:%S')
# (on a terminal the watch redraws its view in place: print nothing during it)
[ -t 1 ] || note "  >>> $OFFLINE comes back online: its agent starts again and says hello"
start_agent "$OFFLINE"
update_rc=0
watch_wait || update_rc=$?
note "$OFFLINE came back online at ${back_at}Z, in the middle of the rollout, and got its job."
check "the rollout got everywhere else while $OFFLINE was offline (its execution: ${offline_status:-?})" \
	test "$others_ok/$offline_status" = 1/QUEUED
check "the job completed with $GATEWAYS $(plural "$GATEWAYS" rejection rejections): jobs watch exited $update_rc (5 = completed with failures)" \
	test "$update_rc" -eq 5
show jobs show "$JOB_UPDATE" --executions || true
check_reported "every sensor reports firmware $FW_VERSION" software.firmware "$FW_VERSION" "${SENSOR_IDS[@]}"
rejected_ok=1
for id in "${GATEWAY_IDS[@]}"; do
	[ "$(exec_status "$JOB_UPDATE" "$id")/$(slot_version "$id")" = REJECTED/1.0.0 ] || rejected_ok=0
done
check "$(plural "$GATEWAYS" "the gateway" "every gateway") rejected it and still runs 1.0.0" test "$rejected_ok" = 1

# ---------------------------------------------------------------- config
step "Change configuration on every device: sample_rate_hz = 10"
note "A config job: each agent writes its config file atomically and reports the"
note "new values in its shadow."
check "config job created" show jobs create --id "$JOB_CONFIG" --type config \
	--document '{"set":{"sample_rate_hz":10}}' --all
watch_start "$JOB_CONFIG"
config_rc=0
watch_wait || config_rc=$?
check "the config job succeeded on every device: jobs watch exited $config_rc (0 = all succeeded)" test "$config_rc" -eq 0
check_reported "every device reports config.sample_rate_hz 10" config.sample_rate_hz 10 "${ALL[@]}"
note "  devices/$CANARY/app-config.json: $(tr -d ' \t\n' <"devices/$CANARY/app-config.json" 2>/dev/null || echo '(missing)')"

# ---------------------------------------------------------------- feature
step "Switch a feature off on every device: bluetooth"
note "A feature job: each agent persists the switch and reports it in its shadow."
check "feature job created" show jobs create --id "$JOB_FEATURE" --type feature \
	--document '{"disable":["bluetooth"]}' --all
watch_start "$JOB_FEATURE"
feature_rc=0
watch_wait || feature_rc=$?
check "the feature job succeeded on every device: jobs watch exited $feature_rc (0 = all succeeded)" test "$feature_rc" -eq 0
check_reported "every device reports features.bluetooth false" features.bluetooth false "${ALL[@]}"

# ---------------------------------------------------------------- summary
step "Summary: every device"
cli --json devices list >"$TMP/devices.json" 2>/dev/null || echo '{}' >"$TMP/devices.json"
for job in "$JOB_UPDATE" "$JOB_CONFIG" "$JOB_FEATURE"; do
	cli --json jobs show "$job" --executions >"$TMP/job-$job.json" 2>/dev/null || echo '{}' >"$TMP/job-$job.json"
done
fetch_shadows "${ALL[@]}"
# One row per device: id, type, presence, version (reported.software.firmware,
# and the slot's VERSION file when they differ), then the three job statuses.
python3 - "$TMP" "$JOB_UPDATE" "$JOB_CONFIG" "$JOB_FEATURE" "${ALL[@]}" >"$TMP/summary.tsv" <<'EOF'
import json, sys
tmp, jobs, ids = sys.argv[1], sys.argv[2:5], sys.argv[5:]
def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return {}
devs = {d["deviceId"]: d for d in load(f"{tmp}/devices.json").get("devices", [])}
status = {}
canaries = []
for j in jobs:
    for e in load(f"{tmp}/job-{j}.json").get("executions", []):
        status[(j, e["deviceId"])] = e["status"]
        if j == jobs[0] and e.get("canary"):
            canaries.append(e["deviceId"])
open(f"{tmp}/canaries.txt", "w").write(" ".join(canaries) + "\n")
for i in ids:
    d = devs.get(i, {})
    rep = load(f"{tmp}/shadows/{i}.json").get("state", {}).get("reported", {}).get("software", {}).get("firmware", "?")
    try:
        slot = open(f"{tmp}/devices/{i}/slots/current/VERSION").read().strip()
    except OSError:
        slot = "?"
    ver = rep if rep == slot else f"{rep} (slot {slot})"
    print("\t".join([i, d.get("deviceType", "?"), d.get("presence", "?"), ver]
                    + [status.get((j, i), "-") for j in jobs]))
EOF
note "VERSION: what the device reports (reported.software.firmware), checked against"
note "its A/B slots (current/VERSION). UPDATE = job $JOB_UPDATE, CONFIG = job $JOB_CONFIG,"
note "FEATURE = job $JOB_FEATURE."
echo
fmt='  %-10s  %-10s  %-8s  %-7s  %-9s  %-9s  %s\n'
printf "$fmt" DEVICE TYPE PRESENCE VERSION UPDATE CONFIG FEATURE
while IFS=$'\t' read -r id type presence version upd cfg feat; do
	printf "$fmt" "$id" "$type" "$presence" "$version" "$upd" "$cfg" "$feat"
done <"$TMP/summary.tsv"
echo
check "$CANARY was the canary of $JOB_UPDATE" test "$(cat "$TMP/canaries.txt")" = "$CANARY"
while IFS=$'\t' read -r id type presence version upd cfg feat; do
	if [ "${TYPE[$id]}" = sensor-v2 ]; then want_ver=$FW_VERSION want_upd=SUCCEEDED; else want_ver=1.0.0 want_upd=REJECTED; fi
	check "$id: online, $want_ver, update $want_upd, config and feature SUCCEEDED" \
		test "$presence/$version/$upd/$cfg/$feat" = "online/$want_ver/$want_upd/SUCCEEDED/SUCCEEDED"
done <"$TMP/summary.tsv"

echo
if [ "$FAILS" -eq 0 ]; then
	printf '%sAll %d checks passed (%d s).%s\n' "$G" "$CHECKS" $((SECONDS - T0)) "$N"
else
	printf '%s%d of %d checks failed.%s\n' "$R" "$FAILS" "$CHECKS" "$N"
fi

if [ "$KEEP" -eq 1 ]; then
	echo
	note "Still running (--keep): the broker on 127.0.0.1:$PORT and the agents. In another terminal:"
	note "  cd $TMP"
	note "  export PATH=$BUILD/tools:\$PATH FLEETMQ_PORT=$PORT"
	note "  fleetmq devices list"
	note "  fleetmq jobs list"
	note "  fleetmq jobs show $JOB_UPDATE --executions"
	note "  fleetmq shadow get $CANARY"
	note "  fleetmq jobs create --type config --document '{\"set\":{\"sample_rate_hz\":20}}' --all --watch"
	note "  fleetmq jobs create --type feature --document '{\"enable\":[\"bluetooth\"]}' --devices $CANARY --watch"
	note "  fleetmq audit --limit 20"
	note "  tail -f devices/$CANARY/agent.log"
	note "Press Ctrl-C to stop everything."
	trap 'echo; exit $((FAILS > 0))' INT TERM
	while true; do sleep 1; done
fi

[ "$FAILS" -eq 0 ]
