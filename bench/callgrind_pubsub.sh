#!/usr/bin/env bash
# bench/callgrind_pubsub.sh - instructions Mosquitto spends per plain-topic
# message (bench/run.sh scenario 1) without and with the fleetmq plugin.
#
#   bench/callgrind_pubsub.sh [QOS (0)] [plugin.so (build-bench's)]
#
# Runs fleetmq-loadgen pubsub (8 publisher/subscriber pairs, 64 B) for 5 s
# against vanilla Mosquitto and against Mosquitto with the plugin, each under
# callgrind, and prints instructions per message (the number of
# handle__publish calls) of the broker's main loop and of the plugin's
# callbacks. Instruction counts do not depend on machine load; run times and
# throughput do (and the kernel's share of the CPU is not counted here).
set -euo pipefail
# shellcheck source=bench/callgrind_lib.sh
. "$(dirname "$0")/callgrind_lib.sh"
QOS=${1:-0}
PL=${2:-$ROOT/build-bench/broker-plugin/fleetmq_plugin.so}
for kind in vanilla plugin; do
	if [ "$kind" = plugin ]; then cg_start_broker "$PL"; else cg_start_broker ""; fi
	"$LG" pubsub --label "$kind" --port "$CG_PORT" --qos "$QOS" --duration 4 --warmup 1 --timeout 120 >"$CG_DIR/lg.out" 2>&1 || true
	cg_stop_broker
	callgrind_annotate --inclusive=yes --tree=calling "$CG_DIR/cg.out" 2>/dev/null >"$CG_DIR/tree.txt"
	msgs=$(grep -m1 -E '> +[^ ]*:handle__publish \(' "$CG_DIR/tree.txt" | sed -E 's/.*\(([0-9,]+)x\).*/\1/' | tr -d , || true)
	if [ -z "$msgs" ] || [ "$msgs" = 0 ]; then
		echo "$kind: no handle__publish calls in the profile (load generator: $(tail -1 "$CG_DIR/lg.out"))" >&2
		exit 1
	fi
	echo "== $kind, QoS $QOS: $msgs messages published"
	grep -E '^ *[0-9,]+ .*\* +[^ ]*:(mosquitto_main_loop|handle__publish|sub__messages_queue|mosquitto_acl_check|plugin__handle_message|cb_acl_check|cb_message) ' "$CG_DIR/tree.txt" |
		awk -v n="$msgs" '{gsub(",", "", $1); name = $0; sub(/^.*\* +[^ ]*:/, "", name); sub(/ .*/, "", name)
			printf "  %-24s %6d instructions per message\n", name, $1 / n}'
	rm -rf "$CG_DIR"
done
