#!/usr/bin/env bash
# bench/callgrind_hello.sh - instructions the broker spends per device hello
# when open continuous jobs must be matched against the device.
#
#   bench/callgrind_hello.sh [plugin.so ...]      (default: build-bench's)
#
# For each plugin: Mosquitto under callgrind (as the mosquitto user, so the
# output file stays writable after the broker drops privileges), 20
# continuous config jobs targeting group "g1" created through $CONTROL, then
# 300 devices connect, subscribe and say hello once (fleetmq-loadgen
# connected). Prints the inclusive instruction counts of the hello path.
# Instruction counts do not depend on machine load; run times do.
set -euo pipefail
# shellcheck source=bench/callgrind_lib.sh
. "$(dirname "$0")/callgrind_lib.sh"
[ $# -gt 0 ] || set -- "$ROOT/build-bench/broker-plugin/fleetmq_plugin.so"
DEVICES=300
for PL in "$@"; do
	cg_start_broker "$PL"
	D=$CG_DIR P=$CG_PORT BP=$CG_PID
	J='{"commands":['
	for i in $(seq 1 20); do
		J="$J{\"command\":\"createJob\",\"jobId\":\"c$i\",\"type\":\"config\",\"continuous\":true,\"document\":{\"set\":{\"k$i\":\"v\"}},\"targets\":{\"groups\":[\"g1\"]}}"
		[ "$i" -lt 20 ] && J="$J,"
	done
	mosquitto_pub -p "$P" -u ops -i ops -V mqttv5 -q 1 -t '$CONTROL/fleetmq/v1' -m "$J]}"
	sleep 2
	"$LG" connected --label plugin --port "$P" --broker-pid "$(pgrep -P "$BP" -f mosquitto || echo "$BP")" \
		--devices "$DEVICES" --hold 1 --shadow-every 0 --timeout 120 >"$D/lg.out" 2>&1
	cg_stop_broker
	echo "== $PL ($DEVICES hellos, 20 open continuous jobs)"
	callgrind_annotate --inclusive=yes "$D/cg.out" 2>/dev/null |
		grep -E "PROGRAM TOTALS|handlers__message|job__on_hello " |
		awk -v n="$DEVICES" '{gsub(",", "", $1); name = "broker total"; for(i = 2; i <= NF; i++) if($i ~ /^[?].*:/){ name = $i; sub(/^.*:/, "", name) }
			printf "  %-20s %12d instructions, %8d per hello\n", name, $1, $1 / n}'
	rm -rf "$D"
done
