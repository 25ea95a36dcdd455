/*
 * fleetmq_plugin.h - private header of the Mosquitto plugin adapter.
 *
 * Declares the plugin state (one struct passed as callback userdata; no
 * globals) and the cross-file functions, one banner per module. Only the
 * files of broker-plugin/ that talk to Mosquitto include this header; the
 * pure core (shadow, presence, topic, acl) and the store do not.
 */
#ifndef FLEETMQ_PLUGIN_H
#define FLEETMQ_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>
#include <cjson/cJSON.h>

#include "fleetmq_config.h"
#include "fleetmq_status.h"
#include "presence.h"
#include "shadow.h"
#include "store.h"
#include "topic.h"

struct mosquitto;

/* ================================================================
 * Configuration (plugin_config.c)
 * ================================================================ */
struct fleetmq_plugin_config {
	char *topic_prefix;
	char *store_path;
	int store_synchronous;                 /* enum fleetmq_store_sync */
	bool store_group_commit;
	long long shadow_max_document_bytes;
	long long shadow_max_depth;
	long long shadow_max_payload_bytes;
	long long presence_silence_threshold_ms;
	long long presence_check_interval_ms;
	long long presence_offline_grace_ms;
	long long presence_flush_interval_ms;
	bool presence_retain;
	bool delivery_direct;
	struct fleetmq_strlist operator_usernames;
	bool require_username_match;
	int other_topics;                      /* 0 = defer, 1 = allow */
	bool other_topics_allow;
	bool log_rejections;
	long long control_max_payload_bytes;
	long long jobs_max_in_progress;
	long long jobs_fanout_batch;
	long long jobs_release_batch;
	long long jobs_check_interval_ms;
	long long jobs_max_document_bytes;
	char *artifacts_dir;
	long long artifacts_max_chunk_bytes;
};

#define FLEETMQ_CONTROL_TOPIC "$CONTROL/fleetmq/v1"
#define FLEETMQ_CONTROL_CREATE_PB_TOPIC "$CONTROL/fleetmq/v1/jobs/create"
#define FLEETMQ_CONTROL_RESPONSE_TOPIC "$CONTROL/fleetmq/v1/response"

extern const struct fleetmq_cfg_option fleetmq_plugin_config_table[];
extern const size_t fleetmq_plugin_config_table_len;

/* ================================================================
 * Devices (device.c): in-memory registry, a cache of the store.
 * ================================================================ */
/* One per registered device, for the broker's lifetime: kept small (about
 * 180 bytes with a short id) because a site broker holds every device of its
 * fleet. device_type and agent_version are interned (device__intern). */
struct fleetmq_device {
	UT_hash_handle hh;
	struct fleetmq_device *prev, *next;    /* connected list, oldest activity first */
	const struct mosquitto *conn;          /* session we last heard from */
	const char *device_type;               /* interned, never NULL */
	const char *agent_version;             /* interned, never NULL */
	struct fleetmq_presence presence;
	uint64_t shadow_version;
	uint64_t persisted_last_seen_ms;
	uint64_t disconnect_at_ms;             /* pending OFFLINE (grace), 0 = none */
	bool hello_seen;                       /* hello received on conn */
	bool in_connected_list;
	char id[];                             /* the hash key */
};

/* ================================================================
 * Output queue (publish.c): responses wait for the group commit.
 * ================================================================ */
struct fleetmq_outmsg {
	struct fleetmq_outmsg *next;
	char *topic;
	void *payload;                         /* mosquitto_malloc'd */
	uint32_t payloadlen;
	uint8_t qos;
	bool retain;
	void *props;                           /* mosquitto_property list, owned */
	char *clientid;                        /* delivery.direct: the one session to get it */
};

struct fleetmq_job;
struct fm_interned;

struct fleetmq_plugin {
	void *identifier;                      /* mosquitto_plugin_id_t * */
	struct fleetmq_plugin_config cfg;
	struct fleetmq_shadow_limits limits;
	struct fleetmq_store *store;
	struct fleetmq_device *devices;        /* uthash by id */
	struct fm_interned *interned;          /* uthash: device types, agent versions */
	const char *requester_id;              /* client id of the message being handled */
	struct fleetmq_device *connected;      /* utlist DL, LRU by last_seen */
	size_t device_count;
	struct fleetmq_outmsg *out_head, *out_tail;
	size_t out_count;
	uint64_t last_tick_mono_ms;
	uint64_t next_silence_check_ms;
	uint64_t next_flush_ms;
	bool startup_done;
	struct fleetmq_job *jobs;              /* uthash by id: open jobs, plus closed ones when looked up */
	uint64_t next_seq;                     /* job / execution queue order */
	uint64_t next_job_check_ms;
	uint64_t job_id_counter;
	/* counters, for logs and benchmarks */
	uint64_t n_commits, n_commit_failures, n_rejections, n_messages;
	uint64_t n_direct_dropped;             /* delivery.direct: device without a verified session */
};

/* Monotonic and wall clocks in ms. */
uint64_t fleetmq_now_ms(void);
uint64_t fleetmq_mono_ms(void);

/* device.c */
/* A shared, reference-counted copy of s (never NULL: "" when s is empty or
 * memory is short); give it back with device__unintern. */
const char *device__intern(struct fleetmq_plugin *pl, const char *s);
void device__unintern(struct fleetmq_plugin *pl, const char *s);
int device__load_all(struct fleetmq_plugin *pl);
struct fleetmq_device *device__find(struct fleetmq_plugin *pl, const char *id);
/* Find or create (in memory and store) a device record. */
struct fleetmq_device *device__ensure(struct fleetmq_plugin *pl, const char *id, uint64_t now_ms);
int device__persist(struct fleetmq_plugin *pl, struct fleetmq_device *dev, const char *hw_revision,
		const char *software_json, const char *attributes_json);
/* Presence events, each publishing/persisting transitions. */
void device__on_activity(struct fleetmq_plugin *pl, struct fleetmq_device *dev,
		const struct mosquitto *client, uint64_t now_ms);
void device__on_hello(struct fleetmq_plugin *pl, struct fleetmq_device *dev,
		const struct mosquitto *client, uint64_t now_ms);
void device__on_disconnect(struct fleetmq_plugin *pl, const struct mosquitto *client, uint64_t now_ms);
void device__tick(struct fleetmq_plugin *pl, uint64_t now_ms);
void device__publish_presence(struct fleetmq_plugin *pl, struct fleetmq_device *dev);
void device__mark_all_offline_at_start(struct fleetmq_plugin *pl, uint64_t now_ms);
void device__cleanup(struct fleetmq_plugin *pl);

/* publish.c */
/* Queue a message; takes ownership of payload (fm_malloc'd or NULL). */
int publish__queue(struct fleetmq_plugin *pl, const char *topic, void *payload, size_t len, int qos, bool retain);
/* Same, with MQTT v5 properties (mosquitto_property *, ownership taken). */
int publish__queue_props(struct fleetmq_plugin *pl, const char *topic, void *payload, size_t len, int qos,
		bool retain, void *props);
/* Queue "<prefix>/<id>/<suffix>". */
int publish__queue_device(struct fleetmq_plugin *pl, const char *id, const char *suffix,
		void *payload, size_t len, int qos, bool retain);
/* Commit the group transaction (if any) and hand queued messages to the
 * broker. On commit failure queued acknowledgements are replaced by
 * rejections is not possible generically: they are dropped and the error
 * logged; devices retry on missing acknowledgement. */
void publish__flush(struct fleetmq_plugin *pl);
/* Called at the end of every callback that may have queued output: flushes
 * at once when group commit is off or ticks are not arriving. */
void publish__maybe_flush(struct fleetmq_plugin *pl);
void publish__cleanup(struct fleetmq_plugin *pl);

/* handlers.c */
int handlers__message(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen);
/* Apply a partial update to one side of a device's shadow and store it in
 * the current group transaction (the device is registered if new). On
 * success *s holds the new shadow (caller clears it). On error *s is empty
 * but s->version holds the current version, and reason says why. */
int handlers__shadow_apply(struct fleetmq_plugin *pl, const char *id, enum fleetmq_shadow_side side,
		const cJSON *patch, uint64_t expected_version, uint64_t now_ms, struct fleetmq_shadow *s,
		char *reason, size_t reason_len);
/* Queue the ShadowUpdateAccepted of patch (applied to side, giving s) on
 * <prefix>/<id>/shadow/update/accepted; token "" for none. */
void handlers__shadow_queue_accepted(struct fleetmq_plugin *pl, const char *id, enum fleetmq_shadow_side side,
		const cJSON *patch, const struct fleetmq_shadow *s, const char *token, uint64_t now_ms);
/* Queue the delta of s to the device if it is connected and a delta exists. */
void handlers__shadow_push_delta(struct fleetmq_plugin *pl, const char *id, const struct fleetmq_shadow *s, uint64_t now_ms);
/* Send a Rejection to <topic>/rejected. */
void handlers__reject(struct fleetmq_plugin *pl, const char *request_topic, int code,
		const char *reason, const char *client_token, uint64_t version);

/* ================================================================
 * Operator API (control.c)
 * ================================================================ */
struct control_ctx {
	const char *actor;                     /* operator username */
	const char *client_id;
	bool is_operator;
	uint64_t now_ms;
	const char *response_topic;            /* NULL = FLEETMQ_CONTROL_RESPONSE_TOPIC */
	const void *correlation;
	uint16_t correlation_len;
};

int control__handle(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen, const void *properties);
const char *control__string(const cJSON *cmd, const char *key);
int control__uint(const cJSON *cmd, const char *key, uint64_t def, uint64_t max, uint64_t *out,
		char *err, size_t errlen);
const char *control__audit_target(const cJSON *cmd);
/* Record an audit entry in the current group transaction. */
void control__audit(struct fleetmq_plugin *pl, uint64_t now_ms, const char *actor, const char *action,
		const char *target, const cJSON *detail);
cJSON *control__device_json(struct fleetmq_plugin *pl, const struct fleetmq_device_rec *rec);

/* ================================================================
 * Jobs (job.c): job queue adapter over jobs.c / rollout.c and the store.
 * ================================================================ */
int job__load_all(struct fleetmq_plugin *pl);
void job__cleanup(struct fleetmq_plugin *pl);
void job__tick(struct fleetmq_plugin *pl, uint64_t now_ms);
/* A device said hello: deliver its queue (JobNotify); continuous jobs. */
void job__on_hello(struct fleetmq_plugin *pl, struct fleetmq_device *dev, const char *execution_in_progress,
		uint64_t now_ms);
/* A device's attributes/groups/type changed or it was registered. */
void job__on_device_changed(struct fleetmq_plugin *pl, struct fleetmq_device *dev, uint64_t now_ms);
uint64_t job__pending_count(struct fleetmq_plugin *pl, const char *device_id);
/* The artifact name of an update job, or NULL (not an update job / unknown). */
const char *job__artifact_of(struct fleetmq_plugin *pl, const char *job_id);

/* artifact.c */
void artifact__handle_get(struct fleetmq_plugin *pl, const char *device_id, const char *name, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms);
/* Device requests on <prefix>/<id>/jobs/... */
void job__handle_next_get(struct fleetmq_plugin *pl, const char *device_id, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms);
void job__handle_update(struct fleetmq_plugin *pl, const char *device_id, const char *job_id, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms);
/* Operator commands (signature of control.c's command table). */
int job__cmd_create(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
int job__cmd_cancel(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
int job__cmd_describe(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
int job__cmd_list(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
int job__cmd_list_executions(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
int job__cmd_describe_execution(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data, char *err, size_t errlen);
/* Convert a protobuf CreateJobRequest into the JSON createJob command (new object) or NULL. */
struct Fleetmq__V1__CreateJobRequest;
cJSON *job__pb_to_json(const struct Fleetmq__V1__CreateJobRequest *req);

/* plugin.c */
bool plugin__is_operator(struct fleetmq_plugin *pl, const struct mosquitto *client);

#endif
