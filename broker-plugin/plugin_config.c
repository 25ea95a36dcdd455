/*
 * plugin_config.c - the broker plugin's configuration table.
 *
 * One row per key of fleetmq.yaml (plugin_opt_config_file). The table drives
 * parsing, validation, defaults, the startup log of the effective config and
 * docs/CONFIG.md (generated with `fleetmq-config-doc plugin`).
 */
#include <stddef.h>

#include "fleetmq_plugin.h"

#define OFF(field) offsetof(struct fleetmq_plugin_config, field)

static const char *const sync_choices[] = { "full", "normal", NULL };
static const char *const other_choices[] = { "defer", "allow", NULL };

const struct fleetmq_cfg_option fleetmq_plugin_config_table[] = {
	{ "topic_prefix", FM_CFG_STRING, "fleet", 0, 0, NULL, OFF(topic_prefix), 0, NULL,
		"First topic level of every device topic (<prefix>/<device-id>/...). Must not contain '/', '+' or '#'." },
	{ "store.path", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(store_path), FM_CFG_REQUIRED, NULL,
		"SQLite database file holding devices, shadows, jobs, executions and the audit log; created if missing. Must be writable by the user mosquitto runs as." },
	{ "store.synchronous", FM_CFG_ENUM, "full", 0, 0, sync_choices, OFF(store_synchronous), 0, NULL,
		"full: every acknowledged write survives power loss of the host. normal: survives a broker crash (kill -9) only, faster on slow disks." },
	{ "store.group_commit", FM_CFG_BOOL, "true", 0, 0, NULL, OFF(store_group_commit), 0, NULL,
		"Commit the writes of one broker loop pass in one transaction, then send their acknowledgements. false commits every write on its own (slower, same guarantee)." },
	{ "shadow.max_document_bytes", FM_CFG_INT, "8192", 256, 1048576, NULL, OFF(shadow_max_document_bytes), 0, "bytes",
		"Largest shadow state (desired + reported, compact JSON) a device may have; updates that would exceed it are rejected with TOO_LARGE." },
	{ "shadow.max_depth", FM_CFG_INT, "8", 1, 64, NULL, OFF(shadow_max_depth), 0, "levels",
		"Deepest nesting of objects/arrays in a shadow document (the top-level object is level 1); deeper updates are rejected with TOO_DEEP." },
	{ "shadow.max_payload_bytes", FM_CFG_INT, "65536", 256, 16777216, NULL, OFF(shadow_max_payload_bytes), 0, "bytes",
		"Largest device request payload (hello, shadow get/update, telemetry, job and artifact requests) the plugin decodes; larger ones are rejected with TOO_LARGE before decoding." },
	{ "presence.silence_threshold_ms", FM_CFG_INT, "300000", 100, 604800000, NULL, OFF(presence_silence_threshold_ms), 0, "ms",
		"A connected device that sends nothing for this long is marked silent." },
	{ "presence.check_interval_ms", FM_CFG_INT, "1000", 50, 60000, NULL, OFF(presence_check_interval_ms), 0, "ms",
		"How often connected devices are checked for silence." },
	{ "presence.offline_grace_ms", FM_CFG_INT, "1500", 0, 60000, NULL, OFF(presence_offline_grace_ms), 0, "ms",
		"A disconnect is published as offline only if the device does not come back within this time, so a session takeover (reconnect while the old connection is still open) does not flap presence." },
	{ "presence.flush_interval_ms", FM_CFG_INT, "60000", 1000, 3600000, NULL, OFF(presence_flush_interval_ms), 0, "ms",
		"How often last-seen times of connected devices are written to the store (transitions are written at once). Bounds flash wear and write load." },
	{ "presence.retain", FM_CFG_BOOL, "true", 0, 0, NULL, OFF(presence_retain), 0, NULL,
		"Publish presence retained, so a subscriber to <prefix>/+/presence learns every device's state at once. Each retained message costs Mosquitto about 1.2 KiB of RAM per device (docs/BENCHMARKS.md); false publishes presence as events only, and the current state is read with listDevices/describeDevice. When switching to false, clear the old retained messages (docs/PROTOCOL.md)." },
	{ "delivery.direct", FM_CFG_BOOL, "false", 0, 0, NULL, OFF(delivery_direct), 0, NULL,
		"Send device-bound messages (responses, deltas, job notifications, artifact chunks) straight to the MQTT session that should get them instead of publishing them to subscribers: devices need no fleet/<id>/# subscription (about 0.8 KiB of broker RAM each, docs/BENCHMARKS.md), and responses to an operator's request on a device topic go to that operator. A device gets them only while its own verified session is connected (it catches up at its next hello). Operators then no longer see these messages by subscribing to device topics; presence is still published to subscribers. HelloAccepted tells devices (direct_delivery)." },
	{ "security.operator_usernames", FM_CFG_STRLIST, NULL, 0, 0, NULL, OFF(operator_usernames), 0, NULL,
		"Usernames with the operator role: may use the operator API ($CONTROL/fleetmq/v1), update desired state of any device and read every fleet topic. Authenticate them (password_file, dynamic-security or certificates)." },
	{ "security.require_username_match", FM_CFG_BOOL, "true", 0, 0, NULL, OFF(require_username_match), 0, NULL,
		"A device's MQTT username must equal its client id to use fleet topics, so one device cannot pose as another by choosing its client id." },
	{ "security.other_topics", FM_CFG_ENUM, "defer", 0, 0, other_choices, OFF(other_topics), 0, NULL,
		"Access to topics outside the fleet prefix. defer: left to the other mechanisms (password_file/acl_file, dynamic-security); note that Mosquitto denies what every mechanism defers. allow: granted, only for a broker whose only access control is fleetmq: dynamic-security and acl_file express their default deny as a defer, which allow would turn into a grant." },
	{ "log.rejections", FM_CFG_BOOL, "true", 0, 0, NULL, OFF(log_rejections), 0, NULL,
		"Log every rejected request (device, topic, code, reason) at warning level." },
	{ "control.max_payload_bytes", FM_CFG_INT, "4194304", 1024, 67108864, NULL, OFF(control_max_payload_bytes), 0, "bytes",
		"Largest operator API request ($CONTROL/fleetmq/v1) the plugin parses; larger ones get a TOO_LARGE error." },
	{ "jobs.max_in_progress_per_device", FM_CFG_INT, "1", 1, 64, NULL, OFF(jobs_max_in_progress), 0, NULL,
		"How many job executions one device may run at the same time; the next queued one may start only when fewer are in progress." },
	{ "jobs.fanout_batch", FM_CFG_INT, "500", 10, 1000000, NULL, OFF(jobs_fanout_batch), 0, "devices",
		"Targets resolved per broker loop pass while a new job fans out, so a job for 100k devices never stalls the broker: with 500 a pass stays at a few milliseconds (docs/BENCHMARKS.md)." },
	{ "jobs.release_batch", FM_CFG_INT, "1000", 1, 1000000, NULL, OFF(jobs_release_batch), 0, "executions",
		"Executions released (queued and notified) per job per check, on top of the rollout's rate limit." },
	{ "jobs.check_interval_ms", FM_CFG_INT, "200", 10, 60000, NULL, OFF(jobs_check_interval_ms), 0, "ms",
		"How often rollouts, in-progress timeouts and retries are processed." },
	{ "jobs.max_document_bytes", FM_CFG_INT, "65536", 256, 4194304, NULL, OFF(jobs_max_document_bytes), 0, "bytes",
		"Largest job document (compact JSON)." },
	{ "artifacts.dir", FM_CFG_STRING, "", 0, 0, NULL, OFF(artifacts_dir), 0, NULL,
		"Directory of update artifacts served over MQTT: <dir>/<name> is the payload, <dir>/<name>.json its metadata (see `fleetmq artifacts add`). Empty = artifact serving off." },
	{ "artifacts.max_chunk_bytes", FM_CFG_INT, "65536", 512, 4194304, NULL, OFF(artifacts_max_chunk_bytes), 0, "bytes",
		"Largest chunk sent for one artifact request; devices on narrow links ask for less." },
};

const size_t fleetmq_plugin_config_table_len = sizeof(fleetmq_plugin_config_table) / sizeof(fleetmq_plugin_config_table[0]);
