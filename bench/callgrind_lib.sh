# shellcheck shell=bash
# bench/callgrind_lib.sh - sourced by the callgrind_*.sh scripts.
#
# cg_start_broker PLUGIN_SO|"" : Mosquitto 2.0.11 under callgrind on a free
# loopback port, with the fleetmq plugin when PLUGIN_SO is not empty (store
# in the run's directory, operator "ops", other topics allowed, as in
# bench/run.sh). It runs as the mosquitto user, so the output file stays
# writable after the broker drops privileges. Sets CG_DIR (temporary
# directory, holds cg.out), CG_PORT and CG_PID (the valgrind process).
# cg_stop_broker: ends it and waits, so that cg.out is complete.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LG=$ROOT/build-bench/bench/fleetmq-loadgen
[ -x "$LG" ] || { echo "build first: cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release && cmake --build build-bench" >&2; exit 1; }

cg_start_broker() {
	local pl=$1
	CG_DIR=$(mktemp -d /tmp/fleetmq-cg-XXXXXX)
	chmod 777 "$CG_DIR"
	CG_PORT=$("$LG" freeport)
	{
		printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$CG_PORT"
		[ -n "$pl" ] && printf 'plugin %s\nplugin_opt_config_file %s/f.yaml\n' "$pl" "$CG_DIR"
	} >"$CG_DIR/m.conf"
	printf 'store:\n  path: %s/f.db\nsecurity:\n  operator_usernames: [ops]\n  other_topics: allow\n' "$CG_DIR" >"$CG_DIR/f.yaml"
	chmod -R a+rwX "$CG_DIR"
	setpriv --reuid=mosquitto --regid=mosquitto --init-groups \
		valgrind --tool=callgrind --callgrind-out-file="$CG_DIR/cg.out" mosquitto -c "$CG_DIR/m.conf" >"$CG_DIR/broker.log" 2>&1 &
	CG_PID=$!
	for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$CG_PORT") 2>/dev/null && return 0; sleep 0.2; done
	echo "broker under callgrind did not start:" >&2
	cat "$CG_DIR/broker.log" >&2
	exit 1
}

cg_stop_broker() {
	kill -TERM "$CG_PID"
	wait "$CG_PID" || true
}
