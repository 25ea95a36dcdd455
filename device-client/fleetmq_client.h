/*
 * fleetmq_client.h - libfleetmq-client: the device side of fleetmq.
 *
 * A C library, built on Paho MQTT C (MQTTAsync, MQTT v5), that a device
 * application (or the fleetmq agent) embeds to talk to a fleetmq broker:
 *
 *   - connection: persistent MQTT v5 session (Clean Start 0, session expiry),
 *     one subscription <prefix>/<id>/# (QoS 1, No Local), a Hello on every
 *     (re)connect, reconnects with exponential backoff and full jitter;
 *   - shadow: report reported state, receive deltas, read desired state; the
 *     last applied shadow version is persisted in the state directory;
 *   - feature flags derived from the shadow's desired "features" object and
 *     from the application;
 *   - telemetry: application gauges + caller-supplied metrics batched into a
 *     TelemetryBatch, buffered (bounded, oldest dropped) while offline;
 *   - jobs: per-type handlers, progress and final status reports that are
 *     NEVER dropped (durable outbox in the state directory, resent in order
 *     until the broker accepts or rejects them), cancellation callback;
 *   - artifacts: a blocking chunk read for update executors.
 *
 * Wire protocol: docs/PROTOCOL.md and proto/fleetmq.proto.
 *
 * ---------------------------------------------------------------------------
 * THREADS
 * ---------------------------------------------------------------------------
 * A started client runs three kinds of threads:
 *
 *   Paho's threads     - network I/O. The library decodes messages there and
 *                        updates its state under its mutex; NO application
 *                        callback ever runs on a Paho thread (except on_log).
 *   the event thread   - one library thread that runs EVERY application
 *                        callback (on_connection, on_delta, on_document,
 *                        on_feature, job handlers, on_job_cancel,
 *                        on_job_report_result), one at a time, in the order
 *                        the events happened.
 *   the timer thread   - one library thread for reconnects, periodic
 *                        telemetry and outbox retransmissions. It never runs
 *                        application code.
 *
 * Callbacks should return quickly (say < 100 ms): while one runs, later
 * events wait. Callbacks MAY call every function of this header, including
 * the blocking ones (fleetmq_client_artifact_read(),
 * fleetmq_client_shadow_fetch(), fleetmq_client_wait_connected()) because
 * responses are received on Paho's threads - but a blocking call inside a
 * callback delays all later callbacks, so long work (downloads, installs)
 * belongs on an application worker thread. The one exception:
 * fleetmq_client_destroy() must not be called from a callback (it joins the
 * event thread); it returns immediately without doing anything if it is.
 *
 * on_log is the only callback that may run on any thread (Paho's, the
 * library's, or the caller's); it must be thread-safe and must not call
 * back into the client.
 *
 * All functions of this header are thread-safe (one internal mutex) unless
 * stated otherwise.
 *
 * ---------------------------------------------------------------------------
 * OWNERSHIP
 * ---------------------------------------------------------------------------
 * - Every pointer passed TO the library (options, strings, arrays) is only
 *   read during the call; the library copies what it keeps. The options
 *   struct and its strings may be freed right after fleetmq_client_new().
 * - Every pointer passed to a CALLBACK (strings, structs) is owned by the
 *   library and valid only until the callback returns; copy what you keep.
 * - Strings RETURNED by the library through a char ** out parameter are
 *   owned by the caller and must be released with fleetmq_client_free().
 *
 * ---------------------------------------------------------------------------
 * STATE DIRECTORY (options.state_dir)
 * ---------------------------------------------------------------------------
 *   shadow_version   last shadow version fully applied (decimal text),
 *                    written atomically (tmp + fsync + rename + fsync dir).
 *   outbox.jsonl     durable job status reports not yet answered by the
 *                    broker: append + fsync per report, compacted
 *                    atomically when answered entries dominate.
 * The directory must exist and be writable; it belongs to one device id and
 * one client instance at a time. Without a state_dir (NULL) nothing survives
 * a process restart (testing only).
 *
 * ---------------------------------------------------------------------------
 * DELIVERY GUARANTEES (summary)
 * ---------------------------------------------------------------------------
 *   telemetry    at most options.telemetry_buffer_messages batches are
 *                buffered by Paho while disconnected; when full the OLDEST
 *                batch is dropped. Buffer is in memory only.
 *   shadow       reported patches made while offline are merged in memory
 *                and sent after the next Hello; lost on process exit.
 *   job reports  never dropped: persisted before fleetmq_client_job_report()
 *                returns, resent (same client_token) on every reconnect and
 *                after request_timeout_ms until the broker answers
 *                .../update/accepted or .../update/rejected, strictly in the
 *                order they were made (one in flight at a time).
 */
#ifndef FLEETMQ_CLIENT_H
#define FLEETMQ_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================
 * Status codes
 * ===========================================================================
 * 0 is success. Values 1..11 are the broker's rejection codes
 * (fleetmq.v1.ErrorCode, same numbers as common/fleetmq_status.h): a call
 * that waits for the broker returns the rejection code unchanged.
 * 100..102 are the shared local statuses; 200+ are client-specific. */
enum fleetmq_client_status {
	FLEETMQ_CLIENT_OK = 0,
	/* broker rejections (fleetmq.v1.ErrorCode) */
	FLEETMQ_CLIENT_ERR_BAD_REQUEST = 1,
	FLEETMQ_CLIENT_ERR_MALFORMED = 2,
	FLEETMQ_CLIENT_ERR_FORBIDDEN = 3,
	FLEETMQ_CLIENT_ERR_NOT_FOUND = 4,
	FLEETMQ_CLIENT_ERR_VERSION_CONFLICT = 5,
	FLEETMQ_CLIENT_ERR_TOO_LARGE = 6,
	FLEETMQ_CLIENT_ERR_TOO_DEEP = 7,
	FLEETMQ_CLIENT_ERR_WRONG_TYPE = 8,
	FLEETMQ_CLIENT_ERR_UNKNOWN_TOPIC = 9,   /* broker does not serve this (older plugin) */
	FLEETMQ_CLIENT_ERR_INTERNAL = 10,
	FLEETMQ_CLIENT_ERR_UNAVAILABLE = 11,    /* broker temporarily unable; retry later */
	/* shared local statuses */
	FLEETMQ_CLIENT_ERR_NOMEM = 100,
	FLEETMQ_CLIENT_ERR_IO = 101,            /* state directory read/write/fsync failed */
	FLEETMQ_CLIENT_ERR_CONFIG = 102,        /* invalid options */
	/* client-specific */
	FLEETMQ_CLIENT_ERR_INVALID = 200,       /* invalid argument (NULL, bad JSON, too long...) */
	FLEETMQ_CLIENT_ERR_STATE = 201,         /* not allowed now (not started, already started, in a callback) */
	FLEETMQ_CLIENT_ERR_DISCONNECTED = 202,  /* not connected, or the connection dropped while waiting */
	FLEETMQ_CLIENT_ERR_TIMEOUT = 203,       /* no answer within the timeout */
	FLEETMQ_CLIENT_ERR_MQTT = 204,          /* a Paho call failed */
	FLEETMQ_CLIENT_ERR_OUTBOX_FULL = 205,   /* progress report refused: outbox at outbox_max_entries */
	FLEETMQ_CLIENT_ERR_PROTOCOL = 206,      /* undecodable or inconsistent answer from the broker */
	FLEETMQ_CLIENT_ERR_STOPPED = 207,       /* the client is being destroyed */
};

/* Short, stable, human-readable text for any status above (and for unknown
 * values). Static string, never NULL. */
const char *fleetmq_client_strerror(int status);

/* ===========================================================================
 * Types used by options and callbacks
 * =========================================================================== */

struct fleetmq_client;

/* A name/value pair of strings (software list, hello attributes, job status
 * details). */
struct fleetmq_client_kv {
	const char *key;
	const char *value;
};

/* One telemetry sample. */
struct fleetmq_client_metric {
	const char *name;         /* dotted, e.g. "sys.cpu.percent" */
	double value;
	uint64_t timestamp_ms;    /* 0 = the batch time */
};

/* Job execution statuses: numerically equal to fleetmq.v1.ExecutionStatus. */
enum fleetmq_client_exec_status {
	FLEETMQ_CLIENT_EXEC_QUEUED = 1,
	FLEETMQ_CLIENT_EXEC_IN_PROGRESS = 2,
	FLEETMQ_CLIENT_EXEC_SUCCEEDED = 3,
	FLEETMQ_CLIENT_EXEC_FAILED = 4,
	FLEETMQ_CLIENT_EXEC_REJECTED = 5,
	FLEETMQ_CLIENT_EXEC_TIMED_OUT = 6,
	FLEETMQ_CLIENT_EXEC_CANCELED = 7,
	FLEETMQ_CLIENT_EXEC_REMOVED = 8,
};

/* Job types: numerically equal to fleetmq.v1.JobType. */
enum fleetmq_client_job_type {
	FLEETMQ_CLIENT_JOB_UNSPECIFIED = 0,
	FLEETMQ_CLIENT_JOB_UPDATE = 1,
	FLEETMQ_CLIENT_JOB_CONFIG = 2,
	FLEETMQ_CLIENT_JOB_FEATURE = 3,
	FLEETMQ_CLIENT_JOB_CUSTOM = 4,
};

/* Connection events (on_connection). */
enum fleetmq_client_conn_event {
	/* The connection is up, subscribed, and the broker accepted our Hello. */
	FLEETMQ_CLIENT_CONNECTED = 1,
	/* The connection was lost or an attempt failed; a retry is scheduled. */
	FLEETMQ_CLIENT_DISCONNECTED = 2,
	/* The broker refused the Hello (hello/rejected) or the subscription
	 * (wrong identity); the library keeps retrying with backoff. */
	FLEETMQ_CLIENT_REFUSED = 3,
};

struct fleetmq_client_connection_info {
	enum fleetmq_client_conn_event event;
	/* CONNECTED: from HelloAccepted. */
	uint64_t shadow_version;      /* the broker's current shadow version */
	uint64_t server_time_ms;
	uint32_t pending_jobs;
	bool session_present;         /* the broker resumed our MQTT session */
	/* DISCONNECTED / REFUSED */
	int status;                   /* fleetmq_client_status, or the rejection code */
	const char *reason;           /* text for logs; never NULL */
	uint32_t retry_in_ms;         /* delay before the next attempt */
	uint32_t attempt;             /* consecutive failed attempts so far */
};

/* A job execution handed to a job handler. */
struct fleetmq_client_job {
	const char *job_id;
	enum fleetmq_client_job_type type;
	/* The handler name the execution was routed to: "update", "config",
	 * "feature", or for custom jobs the document's "handler" string member
	 * if a handler of that name is registered, else "custom". */
	const char *handler;
	const char *document_json;    /* the job document (JSON object text) */
	enum fleetmq_client_exec_status status; /* QUEUED, or IN_PROGRESS when resuming */
	uint64_t version;             /* execution version; tracked by the library afterwards */
	uint32_t attempt;             /* 1-based */
	int32_t progress_percent;     /* last reported progress, -1 = unknown */
	const char *step;             /* last reported step ("" = none) */
	uint64_t timeout_ms;          /* in-progress timeout of the job, 0 = none */
	uint64_t queued_at_ms;
	uint64_t started_at_ms;       /* 0 = not started yet */
};

/* The broker's answer to one job status report (on_job_report_result). */
struct fleetmq_client_report_result {
	const char *job_id;
	enum fleetmq_client_exec_status reported;  /* the status we reported */
	/* FLEETMQ_CLIENT_OK = accepted; otherwise the rejection code (e.g.
	 * NOT_FOUND, VERSION_CONFLICT, BAD_REQUEST for an illegal transition).
	 * Transient rejections (INTERNAL, UNAVAILABLE) are retried, not reported. */
	int status;
	const char *reason;           /* rejection reason, "" when accepted */
	uint64_t version;             /* execution version after the report (accepted) */
	enum fleetmq_client_exec_status exec_status; /* execution status after the report (accepted) */
	bool duplicate;               /* accepted as a repeat of an applied report */
	bool retry_scheduled;         /* FAILED attempt; the broker will queue a new attempt */
};

/* ===========================================================================
 * Callbacks (all on the event thread, see THREADS; pointers valid only during
 * the call). userdata is options.userdata.
 * =========================================================================== */

/* Connection state changes. */
typedef void (*fleetmq_client_on_connection)(struct fleetmq_client *c,
		const struct fleetmq_client_connection_info *info, void *userdata);

/* The shadow's delta: desired keys that differ from reported, as a JSON
 * object, computed at shadow `version` (always the complete current delta;
 * applying it must be idempotent). Called for every ShadowDelta and for the
 * "delta" member of a full document received at resynchronisation.
 * Return 0 when the delta was applied: the library then persists `version`
 * as the last applied version (sent in the next Hello). Any other value:
 * not applied; the version is not advanced and the next Hello resends it.
 * With on_delta NULL every delta counts as applied. The delta also contains
 * "features" when the desired feature flags differ from reported ones; the
 * library applies and reports those itself (see FEATURE FLAGS). */
typedef int (*fleetmq_client_on_delta)(struct fleetmq_client *c, const char *delta_json,
		uint64_t version, void *userdata);

/* A full shadow document arrived (resynchronisation after a Hello, or the
 * library's initial get after start). state_json is
 * {"desired":{...},"reported":{...}[,"delta":{...}]}. Informational: on_delta
 * follows if the document has a delta. */
typedef void (*fleetmq_client_on_document)(struct fleetmq_client *c, const char *state_json,
		uint64_t version, void *userdata);

/* A feature flag's effective value changed (see FEATURE FLAGS). */
typedef void (*fleetmq_client_on_feature)(struct fleetmq_client *c, const char *name,
		bool enabled, void *userdata);

/* A job handler (registered with fleetmq_client_job_handler_add()). Called
 * once per execution attempt. Return FLEETMQ_CLIENT_OK when the application
 * takes the job: it must then eventually report a final status with
 * fleetmq_client_job_report() (from any thread). Any other return value:
 * the library reports REJECTED with status details {"reason": <strerror>}.
 * Start long work on a worker thread and return. */
typedef int (*fleetmq_client_job_handler)(struct fleetmq_client *c, const struct fleetmq_client_job *job,
		void *handler_userdata);

/* An execution the application was given must stop: the broker reported it
 * in JobNotify.canceled (operator cancel, timeout, removal while offline...).
 * status is its broker status (CANCELED, TIMED_OUT, REMOVED...). The library
 * already forgot it as the running execution; reports for it made afterwards
 * are still sent and will be rejected by the broker (see on_job_report_result). */
typedef void (*fleetmq_client_on_job_cancel)(struct fleetmq_client *c, const char *job_id,
		uint32_t attempt, enum fleetmq_client_exec_status status, void *userdata);

/* The broker answered a job status report (accepted or definitively rejected). */
typedef void (*fleetmq_client_on_job_report_result)(struct fleetmq_client *c,
		const struct fleetmq_client_report_result *result, void *userdata);

/* Log levels for on_log / options.log_level. */
enum fleetmq_client_log_level {
	FLEETMQ_CLIENT_LOG_ERROR = 0,
	FLEETMQ_CLIENT_LOG_WARNING = 1,
	FLEETMQ_CLIENT_LOG_INFO = 2,
	FLEETMQ_CLIENT_LOG_DEBUG = 3,
};

/* Log sink. ANY THREAD (see THREADS). NULL in the options = messages at or
 * below options.log_level go to stderr. */
typedef void (*fleetmq_client_on_log)(enum fleetmq_client_log_level level, const char *message,
		void *userdata);

/* ===========================================================================
 * Options
 * =========================================================================== */

#define FLEETMQ_CLIENT_OPTIONS_VERSION 1

/* Defaults (used when the corresponding option is 0 / NULL). */
#define FLEETMQ_CLIENT_DEFAULT_PORT 1883
#define FLEETMQ_CLIENT_DEFAULT_TLS_PORT 8883
#define FLEETMQ_CLIENT_DEFAULT_KEEPALIVE_S 60
#define FLEETMQ_CLIENT_DEFAULT_SESSION_EXPIRY_S 604800       /* 7 days */
#define FLEETMQ_CLIENT_DEFAULT_TELEMETRY_BUFFER_MESSAGES 1000
#define FLEETMQ_CLIENT_DEFAULT_RECONNECT_MIN_MS 1000
#define FLEETMQ_CLIENT_DEFAULT_RECONNECT_MAX_MS 60000
#define FLEETMQ_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define FLEETMQ_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS 30000
#define FLEETMQ_CLIENT_DEFAULT_OUTBOX_MAX_ENTRIES 1024

struct fleetmq_client_options {
	int version;                  /* FLEETMQ_CLIENT_OPTIONS_VERSION */

	/* --- where ---------------------------------------------------------
	 * Either uri ("tcp://host:port", "mqtt://host:port", "ssl://host:port",
	 * "mqtts://host:port") or host + port. TLS is used when the uri scheme
	 * is ssl/mqtts, or when tls is true (with host/port). */
	const char *uri;              /* NULL = built from host, port, tls */
	const char *host;             /* NULL = "localhost" */
	int port;                     /* 0 = 1883, or 8883 with TLS */

	/* --- who ----------------------------------------------------------- */
	const char *device_id;        /* REQUIRED: MQTT client id and username; 1-128 bytes, no / + # or control chars */
	const char *password;         /* NULL = none */

	/* --- TLS (only when TLS is in use) ---------------------------------- */
	bool tls;                     /* use TLS with host/port */
	const char *tls_ca_file;      /* PEM CA bundle; NULL = system default paths */
	const char *tls_ca_path;      /* directory of hashed CA certs; NULL = none */
	const char *tls_cert_file;    /* client certificate (PEM); NULL = none */
	const char *tls_key_file;     /* its private key (PEM); NULL = in cert file */
	const char *tls_key_password; /* NULL = unencrypted key */
	bool tls_insecure;            /* true = do NOT verify the server certificate / host name (testing only) */

	/* --- MQTT session --------------------------------------------------- */
	int keepalive_s;              /* 0 = 60 */
	uint32_t session_expiry_s;    /* 0 = 7 days */
	int connect_timeout_ms;       /* 0 = 10000: the CONNACK must arrive within it (Paho connectTimeout,
	                               * rounded up to seconds), then SUBACK + hello/accepted within it
	                               * again; otherwise the attempt is abandoned and retried */

	/* --- reconnect: delay before attempt n (n = consecutive failures, from 1)
	 * is a random value in [d/2, d] with d = min(max_ms, min_ms * 2^(n-1))
	 * ("equal jitter"). Reset after a connection whose Hello was accepted.
	 * The library schedules reconnects itself on its timer thread (Paho's
	 * automaticReconnect is not used). */
	int reconnect_min_ms;         /* 0 = 1000 */
	int reconnect_max_ms;         /* 0 = 60000 */

	/* --- protocol ------------------------------------------------------- */
	const char *topic_prefix;     /* NULL = "fleet" */
	int request_timeout_ms;       /* 0 = 30000: resend an unanswered job report after this */

	/* --- Hello contents (copied) --------------------------------------- */
	const char *device_type;      /* NULL = "" */
	const char *hw_revision;      /* NULL = "" */
	const char *agent_version;    /* NULL = "" */
	const struct fleetmq_client_kv *software;   /* key = name, value = version; max 32 */
	size_t software_count;
	const struct fleetmq_client_kv *attributes; /* max 32 */
	size_t attribute_count;

	/* --- local state ---------------------------------------------------- */
	const char *state_dir;        /* see STATE DIRECTORY; NULL = no persistence (tests only) */
	int outbox_max_entries;       /* 0 = 1024 unanswered job reports; only progress reports are refused when full */

	/* --- telemetry ------------------------------------------------------ */
	int telemetry_buffer_messages;/* 0 = 1000 batches buffered while offline (Paho maxBufferedMessages) */
	int telemetry_interval_ms;    /* 0 = no automatic batches; else publish the gauges every interval */

	/* --- callbacks (any may be NULL) ------------------------------------ */
	fleetmq_client_on_connection on_connection;
	fleetmq_client_on_delta on_delta;
	fleetmq_client_on_document on_document;
	fleetmq_client_on_feature on_feature;
	fleetmq_client_on_job_cancel on_job_cancel;
	fleetmq_client_on_job_report_result on_job_report_result;
	fleetmq_client_on_log on_log;
	enum fleetmq_client_log_level log_level;   /* most verbose level passed to on_log / stderr; 0 = errors only */
	void *userdata;               /* passed to every callback above */
};

#define FLEETMQ_CLIENT_OPTIONS_INITIALIZER { FLEETMQ_CLIENT_OPTIONS_VERSION, \
	NULL, NULL, 0, NULL, NULL, \
	false, NULL, NULL, NULL, NULL, NULL, false, \
	0, 0, 0, 0, 0, \
	NULL, 0, \
	NULL, NULL, NULL, NULL, 0, NULL, 0, \
	NULL, 0, \
	0, 0, \
	NULL, NULL, NULL, NULL, NULL, NULL, NULL, FLEETMQ_CLIENT_LOG_ERROR, NULL }

/* ===========================================================================
 * Lifecycle
 * =========================================================================== */

/*
 * Validate the options, load the state directory (last shadow version,
 * pending outbox entries) and create the Paho client. Nothing is sent and no
 * thread is started until fleetmq_client_start().
 *
 * out: receives the new client (caller owns it; free with
 *      fleetmq_client_destroy()). Set to NULL on failure.
 * Returns FLEETMQ_CLIENT_OK, ERR_INVALID (NULL argument), ERR_CONFIG (bad
 * option, logged), ERR_IO (state dir unreadable), ERR_NOMEM, ERR_MQTT.
 */
int fleetmq_client_new(struct fleetmq_client **out, const struct fleetmq_client_options *opts);

/*
 * Start the event and timer threads and the first connection attempt. Does
 * not wait for the connection (see fleetmq_client_wait_connected()). Register
 * job handlers before starting so no execution finds its handler missing.
 * Returns OK, ERR_STATE (already started), ERR_NOMEM, ERR_MQTT.
 */
int fleetmq_client_start(struct fleetmq_client *c);

/*
 * Block until the client is connected (Hello accepted) or timeout_ms passes
 * (< 0 = forever). Returns OK, ERR_TIMEOUT, ERR_STATE (not started),
 * ERR_STOPPED.
 */
int fleetmq_client_wait_connected(struct fleetmq_client *c, int timeout_ms);

/* True while connected and the current connection's Hello was accepted. */
bool fleetmq_client_is_connected(struct fleetmq_client *c);

/*
 * Disconnect cleanly (if connected), stop the threads, drop queued events
 * (pending callbacks are not called), wake blocked calls with ERR_STOPPED
 * and free everything. The outbox file stays for the next run. NULL is a
 * no-op. Must not be called from a callback (it would join its own thread):
 * then it logs an error and returns without doing anything.
 */
void fleetmq_client_destroy(struct fleetmq_client *c);

/* Free a string returned by this library. NULL is a no-op. */
void fleetmq_client_free(void *p);

/* ===========================================================================
 * Hello contents
 * =========================================================================== */

/*
 * Job execution the device is working on, sent as Hello.execution_in_progress
 * (max 128 bytes; NULL or "" = none). The library maintains it by itself (set
 * when a job handler takes an execution, cleared by its final report); the
 * agent calls this at startup to declare an execution it resumes after a
 * reboot, before fleetmq_client_start(). If the broker no longer considers
 * that execution active it answers with a JobNotify.canceled -> on_job_cancel.
 * Takes effect with the next Hello. Returns OK or ERR_INVALID.
 */
int fleetmq_client_set_execution_in_progress(struct fleetmq_client *c, const char *job_id);

/*
 * Replace the software list of the Hello (e.g. after an update was
 * installed). Copied. Sent with the next Hello; call
 * fleetmq_client_resend_hello() to send it now. Returns OK, ERR_INVALID
 * (> 32 entries, NULL names), ERR_NOMEM.
 */
int fleetmq_client_set_software(struct fleetmq_client *c, const struct fleetmq_client_kv *software,
		size_t count);

/* Send a Hello now (if connected). Returns OK or ERR_DISCONNECTED. */
int fleetmq_client_resend_hello(struct fleetmq_client *c);

/* ===========================================================================
 * Shadow
 * =========================================================================== */

/*
 * Report reported state: reported_json is a JSON object patch (shadow merge
 * rules: null deletes a key, objects merge, other values replace). Non-blocking:
 * the patch is merged into the pending reported state and published when
 * connected (immediately if connected now). Patches made while offline are
 * merged and sent after the next Hello; they live in memory only. The
 * library also keeps the merged reported state of this process and
 * re-publishes it if the broker turns out to have lost the shadow.
 * Returns OK, ERR_INVALID (not a JSON object, or {}), ERR_NOMEM.
 * Rejections by the broker are logged (there is no per-patch result).
 */
int fleetmq_client_shadow_report(struct fleetmq_client *c, const char *reported_json);

/*
 * The library's current view of the DESIRED state: the last full document,
 * updated with every delta and every desired update seen on the device's
 * topics. *json_out receives a JSON object text ("{}" before anything was
 * received); free it with fleetmq_client_free(). *version (may be NULL)
 * receives the shadow version the view was last updated from.
 * Returns OK, ERR_INVALID, ERR_NOMEM.
 */
int fleetmq_client_shadow_desired(struct fleetmq_client *c, char **json_out, uint64_t *version);

/*
 * Ask the broker for the full shadow document and wait for it (blocking).
 * *state_json_out: {"desired":{...},"reported":{...}[,"delta":{...}]}, free
 * with fleetmq_client_free(); *version (may be NULL): its version. Also
 * refreshes the desired view (on_document / on_delta are not called for it;
 * on_feature is, if a flag changed). Does not advance the applied version.
 * Returns OK, ERR_DISCONNECTED, ERR_TIMEOUT, ERR_STOPPED, a rejection code,
 * ERR_INVALID, ERR_NOMEM.
 */
int fleetmq_client_shadow_fetch(struct fleetmq_client *c, char **state_json_out, uint64_t *version,
		int timeout_ms);

/* The last shadow version applied and persisted (0 = none). */
uint64_t fleetmq_client_shadow_version(struct fleetmq_client *c);

/* ===========================================================================
 * Feature flags
 * ===========================================================================
 * Effective value of feature <name>, highest precedence first:
 *   1. an application override (fleetmq_client_feature_set(), e.g. by the
 *      agent's "feature" job executor), until fleetmq_client_feature_clear();
 *   2. the shadow's desired state: {"features": {"<name>": false|true}}
 *      (a non-boolean value counts as absent);
 *   3. enabled (true).
 * When a desired "features" object is received the library also reports the
 * applied values in reported state ({"features": {...}}) so the delta clears.
 * on_feature fires whenever an effective value changes.
 * Names are 1-128 bytes. */

/* Effective value (true for unknown names, NULL or invalid names). */
bool fleetmq_client_feature_enabled(struct fleetmq_client *c, const char *name);

/* Set an application override. Returns OK, ERR_INVALID, ERR_NOMEM. */
int fleetmq_client_feature_set(struct fleetmq_client *c, const char *name, bool enabled);

/* Remove an application override (the shadow / default apply again).
 * Returns OK (also when there was none) or ERR_INVALID. */
int fleetmq_client_feature_clear(struct fleetmq_client *c, const char *name);

/* ===========================================================================
 * Telemetry
 * =========================================================================== */

/* Set (create or update) an application gauge; its latest value goes into
 * every following batch. name: 1-128 bytes. Returns OK, ERR_INVALID, ERR_NOMEM. */
int fleetmq_client_metric_set(struct fleetmq_client *c, const char *name, double value);

/* Remove a gauge. Returns OK (also when absent) or ERR_INVALID. */
int fleetmq_client_metric_remove(struct fleetmq_client *c, const char *name);

/*
 * Publish one TelemetryBatch (QoS 1) on <prefix>/<id>/telemetry with every
 * gauge followed by the `count` extra metrics (e.g. the agent's system
 * metrics; copied). Works while disconnected: Paho buffers up to
 * telemetry_buffer_messages batches and drops the oldest beyond that.
 * Batch sequence numbers start at 1 per process and increase by one per
 * batch (a batch dropped from the buffer leaves a gap).
 * Returns OK, ERR_INVALID, ERR_TOO_LARGE (batch > 65536 bytes), ERR_STATE
 * (not started), ERR_NOMEM, ERR_MQTT.
 */
int fleetmq_client_telemetry_publish(struct fleetmq_client *c, const struct fleetmq_client_metric *extra,
		size_t count);

/* ===========================================================================
 * Jobs
 * ===========================================================================
 * Flow: on every JobNotify (sent by the broker after each Hello and each
 * change of the device's queue) the library requests the next execution
 * (jobs/next/get) when no execution is running, and hands it to the handler
 * registered for its type. An execution (job id + attempt) is handed out at
 * most once per process, however many notifies or replies repeat it. While
 * an execution is running (from the handler call until its final report
 * was MADE, not acknowledged), no other execution is fetched. */

/*
 * Register the handler for `name`: "update", "config", "feature", "custom",
 * or any other name, which receives custom jobs whose document has
 * {"handler": "<name>"}. A custom job without a matching named handler goes
 * to "custom". An execution without any handler is reported REJECTED by the
 * library (details {"reason":"no handler for ..."}). Re-registering a name
 * replaces its handler; fn NULL removes it. name: 1-64 bytes.
 * Returns OK, ERR_INVALID, ERR_NOMEM.
 */
int fleetmq_client_job_handler_add(struct fleetmq_client *c, const char *name,
		fleetmq_client_job_handler fn, void *handler_userdata);

#define FLEETMQ_CLIENT_REPORT_VERSION 1

/* A job status report. */
struct fleetmq_client_report {
	int version;                                /* FLEETMQ_CLIENT_REPORT_VERSION */
	enum fleetmq_client_exec_status status;     /* IN_PROGRESS, SUCCEEDED, FAILED or REJECTED */
	int32_t progress_percent;                   /* -1 = not given, else 0..100 */
	const char *step;                           /* NULL = none; max 64 bytes ("download", "install") */
	const char *failure_type;                   /* FAILED/REJECTED: NULL or e.g. "download", "verify"; max 64 bytes */
	const struct fleetmq_client_kv *details;    /* status details; max 16; keys 1-64 bytes, values max 256 */
	size_t details_count;
};
#define FLEETMQ_CLIENT_REPORT_INITIALIZER { FLEETMQ_CLIENT_REPORT_VERSION, \
	FLEETMQ_CLIENT_EXEC_IN_PROGRESS, -1, NULL, NULL, NULL, 0 }

/*
 * Report the status of execution `job_id` (any thread). The report is
 * validated, appended to the durable outbox (fsync'd) and then sent; it is
 * resent until the broker answers (see DELIVERY GUARANTEES). The
 * expected_version of each report is the execution version the library
 * tracked when the report is first sent (from next/get, JobNotify and the
 * previous accepted report of that execution), so retransmissions are
 * recognised by the broker as duplicates. The answer arrives through
 * on_job_report_result.
 *
 * A final status (SUCCEEDED, FAILED, REJECTED) ends the running execution:
 * the library then fetches the next one. Final reports are never refused for
 * space; IN_PROGRESS reports are refused with ERR_OUTBOX_FULL when
 * outbox_max_entries reports are unanswered.
 *
 * Returns OK (durably queued), ERR_INVALID (bad status, limits), ERR_IO (the
 * outbox could not be written: NOT queued), ERR_OUTBOX_FULL, ERR_NOMEM.
 */
int fleetmq_client_job_report(struct fleetmq_client *c, const char *job_id,
		const struct fleetmq_client_report *report);

/* Shorthand: IN_PROGRESS with step (may be NULL) and percent (-1..100). */
int fleetmq_client_job_progress(struct fleetmq_client *c, const char *job_id, const char *step,
		int32_t percent);

/* Id of the execution currently running (as sent in the Hello), copied into
 * buf (size bytes, 129 is always enough); "" = none. Returns OK or
 * ERR_INVALID. */
int fleetmq_client_job_current(struct fleetmq_client *c, char *buf, size_t size);

/* ===========================================================================
 * Artifacts
 * =========================================================================== */

/*
 * Read one chunk of artifact `artifact` (blocking; meant for the update
 * executor's worker thread). Publishes ArtifactGetRequest{offset, len,
 * token} on <prefix>/<id>/artifacts/<artifact>/get and waits for the
 * ArtifactChunk with that token on .../data, or a Rejection on
 * .../get/rejected.
 *
 * buf:        receives the data; at least len bytes. The broker may return
 *             fewer bytes than asked (it caps chunks; the last chunk is short).
 * got:        bytes written to buf (0 at the end of the artifact).
 * total_size: (may be NULL) the artifact's size; the artifact is complete
 *             when offset + *got == *total_size.
 * sha256_hex: (may be NULL) char[65]: hex SHA-256 of the WHOLE artifact
 *             ("" if the broker has none). Verify it after the last chunk.
 * timeout_ms: how long to wait for the answer (> 0).
 *
 * Returns OK; NOT_FOUND (no such artifact, or not part of an active update
 * job of this device); BAD_REQUEST (offset past the end); UNAVAILABLE
 * (broker not configured for artifacts); UNKNOWN_TOPIC (broker without
 * artifact support); ERR_DISCONNECTED (not connected, or the connection
 * dropped while waiting: retry from the same offset after reconnecting);
 * ERR_TIMEOUT (retry); ERR_STOPPED; ERR_PROTOCOL (answer inconsistent with
 * the request, e.g. wrong offset or more than len bytes); ERR_INVALID.
 * Several threads may read concurrently (tokens keep answers apart).
 */
int fleetmq_client_artifact_read(struct fleetmq_client *c, const char *artifact, uint64_t offset,
		uint32_t len, uint8_t *buf, uint32_t *got, uint64_t *total_size, char *sha256_hex,
		int timeout_ms);

/* ===========================================================================
 * Statistics (for tests, health checks and the agent's own telemetry)
 * =========================================================================== */

struct fleetmq_client_stats {
	bool connected;               /* Hello accepted on the current connection */
	uint64_t connects;            /* connections whose Hello was accepted */
	uint64_t connect_failures;    /* failed attempts + lost connections */
	uint64_t telemetry_batches;   /* batches handed to Paho (sent or buffered) */
	uint64_t telemetry_sequence;  /* sequence number of the last batch (0 = none) */
	uint64_t outbox_pending;      /* job reports not yet answered */
	uint64_t reports_sent;        /* job report transmissions incl. retries */
	uint64_t jobs_started;        /* executions handed to handlers */
	uint64_t shadow_version;      /* last applied (persisted) version */
	bool subscribed;              /* the connection holds a <prefix>/<id>/# subscription
	                                 (false once the broker said it delivers directly) */
	bool direct_delivery;         /* the last HelloAccepted said direct_delivery */
};

/* Snapshot of the counters. Returns OK or ERR_INVALID. */
int fleetmq_client_get_stats(struct fleetmq_client *c, struct fleetmq_client_stats *out);

/* ---- update approval (the agent's "ask" policy) ----------------------------
 * Under update.policy "ask", fleetmq-agent holds an update job (reported as
 * IN_PROGRESS, step "awaiting-approval") until the device's application
 * decides. The decision is a small file in the agent's state directory,
 * written atomically (tmp + fsync + rename + directory fsync) so it survives
 * a power cut and is never read half-written:
 *   state_dir  the agent's state_dir (config key state_dir)
 *   job_id     the held job's id, or "*" for whichever update is held
 *   approve    true = install now, false = refuse it (the job ends
 *              REJECTED on this device)
 * Does not need a client object and may be called from any process that can
 * write the directory. Returns OK, ERR_INVALID (NULL/empty arguments, a
 * job id with white space or longer than 128 bytes) or ERR_IO. */
int fleetmq_client_update_decide(const char *state_dir, const char *job_id, bool approve);

#ifdef __cplusplus
}
#endif

#endif
