/*
 * client_internal.h - private declarations shared by the .c files of
 * libfleetmq-client. One banner per module; cross-file functions are named
 * module__verb(). Nothing here is part of the public API.
 *
 * Locking: one mutex, c->mu, guards every field of struct fleetmq_client
 * below the "guarded by mu" line. Functions ending in _locked must be called
 * with mu held. Paho is never called with mu held: code running under mu
 * collects what it wants to publish in a struct fm_out list and sends it
 * with client__flush() after unlocking (so no lock-order problem with
 * Paho's internal mutex can arise).
 */
#ifndef FLEETMQ_CLIENT_INTERNAL_H
#define FLEETMQ_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include <MQTTAsync.h>
#include <cjson/cJSON.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_client.h"

#define FM_MAX_ID_BYTES 128
#define FM_MAX_TOKEN_BYTES 64
#define FM_MAX_HELLO_LIST 32
#define FM_MAX_STEP_BYTES 64
#define FM_MAX_DETAILS 16
#define FM_MAX_DETAIL_KEY_BYTES 64
#define FM_MAX_DETAIL_VALUE_BYTES 256
#define FM_MAX_HANDLER_NAME_BYTES 64
#define FM_MAX_PAYLOAD_BYTES 65536
#define FM_DONE_RING 64
#define FM_TRANSIENT_RETRY_MS 2000
#define FM_DISCONNECT_TIMEOUT_MS 1000

/* =========================================================================
 * outbound messages (built under mu, sent after unlocking)
 * ========================================================================= */

struct fm_out {
	char *topic;
	uint8_t *payload;
	size_t len;
	struct fm_out *next;
};

/* A FIFO of messages to publish. */
struct fm_outq {
	struct fm_out *head, *tail;
	bool unsubscribe;          /* then drop the <prefix>/<id>/# subscription */
};

/* =========================================================================
 * events (queued under mu, run on the event thread)
 * ========================================================================= */

enum fm_event_type {
	FM_EV_CONNECTION,
	FM_EV_DELTA,          /* on_delta, then persist version if applied */
	FM_EV_DOCUMENT,       /* on_document, then the delta part as FM_EV_DELTA */
	FM_EV_PERSIST_VERSION,/* persist version (no callback) */
	FM_EV_FEATURE,
	FM_EV_JOB,
	FM_EV_JOB_CANCEL,
	FM_EV_REPORT_RESULT,
};

struct fm_event {
	enum fm_event_type type;
	struct fm_event *next;
	/* CONNECTION */
	struct fleetmq_client_connection_info conn;
	char *text;           /* CONNECTION reason, DELTA/DOCUMENT json, FEATURE name, report reason */
	char *text2;          /* DOCUMENT: its delta json (NULL = none) */
	uint64_t version;     /* DELTA, DOCUMENT, PERSIST_VERSION */
	bool enabled;         /* FEATURE */
	/* JOB */
	Fleetmq__V1__JobExecution *exec;   /* unpacked by protobuf-c (freed with free_unpacked) */
	char *handler_name;
	fleetmq_client_job_handler handler;
	void *handler_ud;
	/* JOB_CANCEL, REPORT_RESULT */
	char *job_id;
	uint32_t attempt;
	int status;
	struct fleetmq_client_report_result result;
};

/* =========================================================================
 * outbox (outbox.c) - durable, ordered job status reports
 * ========================================================================= */

struct outbox_entry {
	uint64_t seq;
	char *job_id;
	int status;                 /* Fleetmq__V1__ExecutionStatus */
	int32_t progress_percent;
	char *step;                 /* never NULL */
	char *failure_type;         /* never NULL */
	char **detail_keys;
	char **detail_values;
	size_t n_details;
	char token[FM_MAX_TOKEN_BYTES + 1];
	bool ev_known;              /* expected_version resolved (and persisted) */
	uint64_t expected_version;
	struct outbox_entry *next;
};

struct outbox {
	char *path;                 /* <state_dir>/outbox.jsonl, NULL = memory only */
	char *dir;
	int fd;                     /* append fd, -1 = memory only or not open */
	bool needs_compact;         /* a write failed half-way: rewrite before appending */
	struct outbox_entry *head, *tail;
	size_t count;
	size_t dead_records;        /* records in the file that describe no live entry */
	uint64_t next_seq;
};

/* Open (or create) the outbox in dir (NULL = memory only), load live entries
 * and compact the file. Returns FLEETMQ_CLIENT_OK or ERR_IO / ERR_NOMEM. */
int outbox__open(struct outbox *o, const char *dir);
/* Append e (takes ownership on success; e->seq is assigned) and fsync.
 * Returns OK or ERR_IO (e not taken) / ERR_NOMEM. */
int outbox__append(struct outbox *o, struct outbox_entry *e);
/* Record the resolved expected_version of e (fsync'd). */
int outbox__set_expected_version(struct outbox *o, struct outbox_entry *e, uint64_t ev);
/* Remove the head entry (answered); compacts when worthwhile. */
void outbox__pop(struct outbox *o);
/* True if an entry for job_id exists (final_only: with a final status). */
bool outbox__has_job(const struct outbox *o, const char *job_id, bool final_only);
void outbox__close(struct outbox *o);
void outbox__entry_free(struct outbox_entry *e);

/* =========================================================================
 * statefile (statefile.c) - atomic small files in the state directory
 * ========================================================================= */

/* Write dir/name atomically: name.tmp, fsync, rename, fsync dir. */
int statefile__write_atomic(const char *dir, const char *name, const void *data, size_t len);
/* Read dir/name entirely (NUL-terminated, caller fm_free()s). ERR_NOT_FOUND
 * if it does not exist, ERR_IO otherwise. */
int statefile__read(const char *dir, const char *name, char **data, size_t *len);
/* fsync a directory. */
int statefile__fsync_dir(const char *dir);

/* =========================================================================
 * the client
 * ========================================================================= */

enum fm_conn_state {
	FM_CONN_IDLE,           /* not connected; reconnect_at says when to try */
	FM_CONN_CONNECTING,     /* CONNECT sent */
	FM_CONN_SUBSCRIBING,    /* CONNACK received, SUBSCRIBE sent */
	FM_CONN_HELLO,          /* Hello sent, waiting for hello/accepted */
	FM_CONN_ONLINE,         /* Hello accepted */
};

struct fm_kvlist {
	char **keys;
	char **values;
	size_t n;
};

struct fm_gauge {
	char *name;
	double value;
	struct fm_gauge *next;
};

struct fm_feature {
	char *name;
	bool has_override, override_value;
	bool has_desired, desired_value;
	bool effective;          /* last value announced */
	struct fm_feature *next;
};

struct fm_handler {
	char *name;
	fleetmq_client_job_handler fn;
	void *ud;
	struct fm_handler *next;
};

struct fm_tracked {          /* known execution versions, by job id */
	char *job_id;
	uint64_t version;
	uint32_t attempt;
	bool dispatched;         /* handed to a handler (or declared) in this process */
	struct fm_tracked *next;
};

struct fm_patch {            /* queued reported patch */
	cJSON *patch;
	struct fm_patch *next;
};

/* A blocking request waiting for its answer (artifact chunk, shadow get). */
enum fm_waiter_kind { FM_WAIT_ARTIFACT, FM_WAIT_SHADOW_GET };
struct fm_waiter {
	enum fm_waiter_kind kind;
	char token[FM_MAX_TOKEN_BYTES + 1];
	bool done;
	int status;
	/* artifact */
	uint64_t offset;
	uint32_t len;
	uint8_t *buf;
	uint32_t got;
	uint64_t total_size;
	char sha256[65];
	/* shadow get */
	char *state_json;
	uint64_t version;
	struct fm_waiter *next;
};

/* Per-attempt context handed to Paho, to ignore late callbacks of an
 * abandoned attempt. */
struct fm_attempt_ctx {
	struct fleetmq_client *c;
	uint64_t gen;
};
#define FM_ATTEMPT_SLOTS 8

struct fleetmq_client {
	/* --- immutable after new() ---------------------------------------- */
	char *uri;
	char *device_id;
	char *password;
	char *prefix;
	char *topic_base;            /* "<prefix>/<id>/" */
	size_t topic_base_len;
	char *state_dir;
	bool tls;
	char *tls_ca_file, *tls_ca_path, *tls_cert_file, *tls_key_file, *tls_key_password;
	bool tls_insecure;
	int keepalive_s;
	uint32_t session_expiry_s;
	int connect_timeout_ms;
	int reconnect_min_ms, reconnect_max_ms;
	int request_timeout_ms;
	int outbox_max_entries;
	int telemetry_buffer_messages;
	int telemetry_interval_ms;
	char *device_type, *hw_revision, *agent_version;
	struct fm_kvlist attributes;
	struct fleetmq_client_options cb;    /* callbacks, log level and userdata only */
	char token_prefix[12];               /* random per process */
	MQTTAsync mqtt;

	/* --- threads ------------------------------------------------------- */
	pthread_t event_thread, timer_thread;
	bool threads_started;

	/* --- guarded by mu -------------------------------------------------- */
	pthread_mutex_t mu;
	pthread_cond_t cond;                 /* waiters: connected, artifact, shadow get */
	pthread_cond_t ev_cond;              /* event queue */
	pthread_cond_t timer_cond;           /* timer thread wake-up */
	bool started, stopping;
	uint64_t token_counter;

	/* connection */
	enum fm_conn_state state;
	uint64_t gen;                        /* connection attempt generation */
	struct fm_attempt_ctx attempt_ctx[FM_ATTEMPT_SLOTS];
	uint64_t attempt_started_ms;         /* monotonic */
	uint64_t reconnect_at_ms;            /* monotonic; when IDLE */
	uint32_t failures;                   /* consecutive failed attempts */
	bool session_present;
	bool subscribed;                     /* this connection subscribed to <prefix>/<id>/# */
	bool direct_delivery;                /* the last HelloAccepted: the broker sends to our session directly */
	bool disconnect_requested;           /* timer thread must MQTTAsync_disconnect (abandoned attempt) */
	struct fm_kvlist software;
	char execution_in_progress[FM_MAX_ID_BYTES + 1];
	uint32_t current_attempt;            /* 0 = declared (setter) or none */

	/* events */
	struct fm_event *ev_head, *ev_tail;

	/* shadow (client_shadow.c) */
	uint64_t shadow_version;             /* last applied, persisted */
	cJSON *desired;                      /* desired view */
	uint64_t desired_version;
	bool desired_known;
	char init_get_token[FM_MAX_TOKEN_BYTES + 1];
	char hello_token[FM_MAX_TOKEN_BYTES + 1]; /* of the last hello sent; answers must echo it */
	cJSON *reported_cache;               /* merged reported state of this process */
	struct fm_patch *patch_head, *patch_tail;  /* pending reported patches */
	cJSON *inflight_patch;               /* sent, not answered */
	char inflight_patch_token[FM_MAX_TOKEN_BYTES + 1];
	uint64_t inflight_patch_sent_ms;
	uint64_t patch_retry_at_ms;

	/* features */
	struct fm_feature *features;

	/* telemetry */
	struct fm_gauge *gauges;
	uint64_t telemetry_seq;
	uint64_t telemetry_batches;
	uint64_t next_telemetry_ms;

	/* jobs (client_jobs.c) */
	struct fm_handler *handlers;
	struct fm_tracked *tracked;
	struct outbox outbox;
	bool outbox_inflight;
	uint64_t outbox_sent_ms;
	uint64_t outbox_retry_at_ms;         /* transient rejection: not before */
	char next_get_token[FM_MAX_TOKEN_BYTES + 1];  /* "" = none in flight */
	uint64_t next_get_sent_ms;
	bool next_get_again;                 /* a notify arrived while in flight */
	char done_jobs[FM_DONE_RING][FM_MAX_ID_BYTES + 1];
	uint32_t done_attempts[FM_DONE_RING];
	size_t done_next;

	/* blocking requests */
	struct fm_waiter *waiters;

	/* stats */
	uint64_t n_connects, n_failures, n_reports_sent, n_jobs_started;
};

/* =========================================================================
 * client.c - core
 * ========================================================================= */

void client__log(struct fleetmq_client *c, enum fleetmq_client_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
uint64_t client__mono_ms(void);
uint64_t client__wall_ms(void);
/* New unique client token "<letter><prefix>-<n>" into buf (>= 65 bytes). */
void client__token_locked(struct fleetmq_client *c, char letter, char *buf, size_t size);
/* "<prefix>/<id>/<suffix>" (fm_malloc'd) or NULL. */
char *client__topic(struct fleetmq_client *c, const char *suffix);
/* Pack msg and append a publish of it on <base><suffix> to q. Returns OK or ERR_NOMEM. */
int client__queue_pb(struct fleetmq_client *c, struct fm_outq *q, const char *suffix, const ProtobufCMessage *msg);
/* Publish everything in q (QoS 1, no retain) and free it. Call WITHOUT mu. */
void client__flush(struct fleetmq_client *c, struct fm_outq *q);
/* Queue an event for the event thread (takes ownership of ev). */
void client__event_locked(struct fleetmq_client *c, struct fm_event *ev);
struct fm_event *client__event_new(enum fm_event_type type);
void client__event_free(struct fm_event *ev);
bool client__valid_id(const char *s);
bool client__on_event_thread(struct fleetmq_client *c);
void client__kvlist_free(struct fm_kvlist *l);
int client__kvlist_copy(struct fm_kvlist *dst, const struct fleetmq_client_kv *src, size_t n);

/* =========================================================================
 * client_shadow.c - shadow, features
 * ========================================================================= */

/* Connection is ONLINE: flush pending patches; sync is the HelloAccepted. */
void shadow__on_online_locked(struct fleetmq_client *c, const Fleetmq__V1__HelloAccepted *ack, struct fm_outq *q);
void shadow__on_disconnect_locked(struct fleetmq_client *c);
/* Messages on shadow/... topics (rest = after "<prefix>/<id>/"). */
void shadow__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len, struct fm_outq *q);
/* Resend unanswered patches (timer). */
void shadow__tick_locked(struct fleetmq_client *c, uint64_t now, struct fm_outq *q, uint64_t *next_wake);
/* Persist version (event thread, mu NOT held). */
void shadow__persist_version(struct fleetmq_client *c, uint64_t version);
int shadow__load_version(struct fleetmq_client *c);
void shadow__cleanup(struct fleetmq_client *c);
/* JSON merge helpers */
void shadow__merge_patch(cJSON *target, const cJSON *patch);

/* =========================================================================
 * client_jobs.c - jobs, outbox sending
 * ========================================================================= */

void jobs__on_online_locked(struct fleetmq_client *c, struct fm_outq *q);
void jobs__on_disconnect_locked(struct fleetmq_client *c);
void jobs__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len, struct fm_outq *q);
void jobs__tick_locked(struct fleetmq_client *c, uint64_t now, struct fm_outq *q, uint64_t *next_wake);
void jobs__cleanup(struct fleetmq_client *c);
/* The event thread ran a job handler that refused the job. */
void jobs__handler_refused(struct fleetmq_client *c, const char *job_id, int rc);

/* =========================================================================
 * client_telemetry.c
 * ========================================================================= */

void telemetry__tick_locked(struct fleetmq_client *c, uint64_t now, uint64_t *next_wake, bool *publish_now);
void telemetry__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len);
void telemetry__cleanup(struct fleetmq_client *c);

/* =========================================================================
 * client_artifact.c + waiters
 * ========================================================================= */

void artifact__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len);
/* Finish every waiter with status (disconnect, stop). */
void waiters__fail_all_locked(struct fleetmq_client *c, int status);
struct fm_waiter *waiters__find_locked(struct fleetmq_client *c, enum fm_waiter_kind kind, const char *token);
void waiters__remove_locked(struct fleetmq_client *c, struct fm_waiter *w);
/* Wait on c->cond until w->done, stopping or the deadline (monotonic ms). */
int waiters__wait_locked(struct fleetmq_client *c, struct fm_waiter *w, uint64_t deadline_ms);

#endif
