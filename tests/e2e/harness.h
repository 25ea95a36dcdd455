/*
 * harness.h - end-to-end test harness: a real mosquitto (with or without the
 * fleetmq plugin) on a free loopback port, MQTT v5 test clients, protobuf
 * helpers for the fleetmq wire schema, and a CUnit runner.
 *
 * Everything here talks to 127.0.0.1 only and never uses a fixed port.
 *
 * Modules (one banner each below):
 *   broker   - temp dir, mosquitto.conf, fleetmq.yaml, fork/exec, stop/kill/restart
 *   client   - libmosquitto wrapper with its own network thread, a received
 *              message queue, PUBACK/SUBACK reason codes
 *   raw      - a hand-rolled MQTT v5 socket client, for abrupt disconnects
 *   device   - fleetmq conveniences: device/operator connect, hello, shadow
 *   jobs     - device side of job queues: next/get, update, notify
 *   control  - the operator API ($CONTROL/fleetmq/v1): JSON request/response
 *   pb       - pack requests / unpack responses (build/proto/fleetmq.pb-c.h)
 *   json     - small cJSON helpers for assertions
 *   run      - CUnit main() helper
 *
 * Ownership: functions returning a pointer return a new allocation owned by
 * the caller unless stated otherwise; free messages with fm_msg_free(),
 * protobuf messages with their generated *__free_unpacked(msg, NULL), and
 * plain buffers with free().
 *
 * Thread-safety: one test thread drives everything. Each fm_client runs one
 * network thread of its own; the received-message queue and the reason-code
 * tables are protected by the client's mutex, so the test thread may wait
 * on them while messages arrive.
 */
#ifndef FLEETMQ_E2E_HARNESS_H
#define FLEETMQ_E2E_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

#include <CUnit/CUnit.h>
#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "fleetmq.pb-c.h"

/* Multiplier of the harness timeouts: FLEETMQ_TIMEOUT_SCALE if set, else 5
 * when the broker runs under FLEETMQ_BROKER_WRAPPER (e.g. valgrind), else 1. */
int fm_timeout_scale(void);

/* Default time to wait for one expected message. Generous: a failing test
 * waits this long, a passing one never does. */
#define FM_TIMEOUT_MS (3000 * fm_timeout_scale())
/* Time to wait when asserting that something does NOT arrive. */
#define FM_QUIET_MS (500 * fm_timeout_scale())

#define FM_TOPIC_PREFIX "fleet"

/* MQTT v5 reason codes the tests check. */
#define FM_RC_SUCCESS 0x00
#define FM_RC_NOT_AUTHORIZED 0x87

/* =========================================================================
 * broker
 * ========================================================================= */

/*
 * Default plugin configuration used by the e2e suites. "@DB@" is replaced by
 * <dir>/fleetmq.db and "@DIR@" by the broker's temp dir. Suites that need more
 * keys append their own top-level blocks, e.g.
 *   FM_DEFAULT_YAML "shadow:\n  max_document_bytes: 1048576\n"
 */
#define FM_YAML_STORE "store:\n  path: @DB@\n"
#define FM_YAML_SECURITY "security:\n  operator_usernames: [ops]\n  other_topics: allow\n"
#define FM_YAML_PRESENCE "presence:\n  silence_threshold_ms: 1500\n  check_interval_ms: 100\n"
#define FM_DEFAULT_YAML FM_YAML_STORE FM_YAML_SECURITY FM_YAML_PRESENCE

/* The presence silence threshold of FM_DEFAULT_YAML, for timing assertions. */
#define FM_DEFAULT_SILENCE_MS 1500

#define FM_BROKER_OPTS_VERSION 1
struct fm_broker_opts {
	int version;              /* FM_BROKER_OPTS_VERSION */
	bool with_plugin;         /* false: plain mosquitto (harness self-check) */
	const char *yaml;         /* fleetmq.yaml text; NULL = FM_DEFAULT_YAML */
	const char *extra_conf;   /* extra mosquitto.conf lines; NULL = none */
	int start_timeout_ms;     /* 0 = 10000; times fm_timeout_scale() */
};
#define FM_BROKER_OPTS_INITIALIZER { FM_BROKER_OPTS_VERSION, true, NULL, NULL, 0 }

struct fm_broker {
	char dir[256];            /* mkdtemp'd; removed by fm_broker_cleanup() */
	char conf_path[320];
	char yaml_path[320];
	char db_path[320];
	char log_path[320];       /* mosquitto's log_dest file */
	char stderr_path[320];    /* the broker's stdout+stderr */
	int port;                 /* chosen once, kept across restarts */
	pid_t pid;                /* 0 when not running */
	int start_timeout_ms;
	int last_status;          /* raw waitpid status of the last exit */
};

/* Create the temp dir, pick a free port, write mosquitto.conf and (with the
 * plugin) fleetmq.yaml, then start the broker and wait until its port
 * accepts TCP. Returns 0 when the broker is up; otherwise non-zero, the log
 * has been printed to stderr and b is still valid for fm_broker_cleanup(). */
int fm_broker_start(struct fm_broker *b, const struct fm_broker_opts *opts);

/* Start a broker that is expected NOT to come up (bad configuration). Waits
 * up to opts->start_timeout_ms (0 = 10 s) for it to exit. Returns 0 if it
 * exited, with *exit_status = its exit code (or 128+signal) and *log_text =
 * mosquitto.log followed by its stderr (caller frees); returns -1 if it was
 * still running (it is then killed) or could not be started. */
int fm_broker_start_expect_failure(struct fm_broker *b, const struct fm_broker_opts *opts,
		int *exit_status, char **log_text);

/* SIGTERM and wait (SIGKILL after 5 s, times fm_timeout_scale()). Returns
 * the exit code, or -1. */
int fm_broker_stop(struct fm_broker *b);
/* SIGKILL and wait: the broker gets no chance to flush anything. */
int fm_broker_kill9(struct fm_broker *b);
/* Start again with the same dir, config, db and port. 0 = up. */
int fm_broker_restart(struct fm_broker *b);
/* True if the broker process is still running (reaps it if it exited). */
bool fm_broker_alive(struct fm_broker *b);
/* Path of mosquitto's log file (owned by b). */
const char *fm_broker_log_path(const struct fm_broker *b);
/* mosquitto.log + the broker's stderr, as one string (caller frees). */
char *fm_broker_log_text(const struct fm_broker *b);
/* Print the last `lines` lines of the log to stderr. */
void fm_broker_dump_log(const struct fm_broker *b, int lines);
/* Stop the broker if running and remove its temp dir. Idempotent. */
void fm_broker_cleanup(struct fm_broker *b);

/* 1-based line number of the first line of text containing needle, or 0. */
int fm_text_line_of(const char *text, const char *needle);
/* True if text mentions line `line` as ":<line>" or "line <line>",
 * followed by a non-digit (e.g. "fleetmq.yaml:7: shadow.max_depth: ..."). */
bool fm_text_mentions_line(const char *text, int line);

/* =========================================================================
 * client
 * ========================================================================= */

/* One received message. */
struct fm_msg {
	char *topic;
	uint8_t *payload;         /* NUL-terminated for convenience (not counted) */
	size_t payloadlen;
	int qos;
	bool retain;
	uint64_t seq;             /* arrival order within its client, from 1 */
	uint8_t *correlation;     /* MQTT v5 correlation data, NULL if none */
	size_t correlation_len;
	struct fm_msg *next;      /* queue link; NULL once returned to the caller */
};
void fm_msg_free(struct fm_msg *m);

struct fm_client;

/* Create an MQTT v5 client. username NULL = none. clean_start true = new
 * session (session expiry 0). Returns NULL on failure. */
struct fm_client *fm_client_new(const char *client_id, const char *username, bool clean_start);

/* Connect to 127.0.0.1:port and wait for CONNACK. Returns the CONNACK reason
 * code (0 = accepted), or -1 on timeout / TCP error. */
int fm_client_connect(struct fm_client *c, int port, int keepalive_s, int timeout_ms);

/* Subscribe and wait for SUBACK. options: MQTT_SUB_OPT_* (e.g. NO_LOCAL).
 * Returns the granted QoS (0..2) or the failure reason code (>= 0x80), or -1
 * on timeout. */
int fm_client_subscribe(struct fm_client *c, const char *filter, int qos, int options, int timeout_ms);

/* Unsubscribe and wait for UNSUBACK. libmosquitto 2.0.11 does not expose
 * UNSUBACK reason codes, so check the effect (no more messages) instead.
 * Returns 0, or -1 on error / timeout. */
int fm_client_unsubscribe(struct fm_client *c, const char *filter, int timeout_ms);

/* Queue a publish. *mid (may be NULL) receives its message id. Returns a
 * MOSQ_ERR_* code. Message ids are never reused within one client in these
 * tests (< 65535 publishes per client), so fm_client_wait_puback() is exact. */
int fm_client_publish(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain, int *mid);

/* Queue a QoS 1 publish with the MQTT v5 request properties: response
 * topic (NULL = none) and correlation data (NULL / 0 = none). *mid (may be
 * NULL) receives its message id. Returns a MOSQ_ERR_* code. */
int fm_client_publish_request(struct fm_client *c, const char *topic, const void *payload, size_t len,
		const char *response_topic, const void *correlation, size_t correlation_len, int *mid);

/* Wait for the PUBACK of mid. Returns its reason code (0 = success, 0x10 = no
 * matching subscribers, 0x87 = not authorized...), or -1 on timeout. For QoS 0
 * returns 0 once the packet was written. */
int fm_client_wait_puback(struct fm_client *c, int mid, int timeout_ms);

/* Publish and wait for the PUBACK (QoS 1) / the write (QoS 0). Returns the
 * reason code, or -1 on error / timeout. */
int fm_client_publish_wait(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int qos, bool retain, int timeout_ms);

/* Predicate for fm_client_wait_match(); ctx is the caller's. */
typedef bool (*fm_msg_pred)(const struct fm_msg *m, void *ctx);

/* Remove and return the oldest queued message whose topic matches filter (an
 * exact topic or a wildcard filter), waiting up to timeout_ms. Messages that
 * do not match stay queued. NULL on timeout. */
struct fm_msg *fm_client_wait_message(struct fm_client *c, const char *filter, int timeout_ms);

/* Same, also requiring pred(m, ctx) (pred NULL = any). */
struct fm_msg *fm_client_wait_match(struct fm_client *c, const char *filter, fm_msg_pred pred,
		void *ctx, int timeout_ms);

/* Number of queued messages matching filter (NULL = all), without removing. */
size_t fm_client_count(struct fm_client *c, const char *filter);

/* Discard all queued messages. Returns how many were discarded. */
size_t fm_client_drain(struct fm_client *c);

/* Discard queued messages whose topic matches filter. */
size_t fm_client_drain_filter(struct fm_client *c, const char *filter);

/* True while the MQTT connection is up. */
bool fm_client_connected(struct fm_client *c);

/* Wait until the connection is gone (e.g. taken over, broker killed).
 * Returns the libmosquitto disconnect rc, or -1 on timeout. */
int fm_client_wait_disconnect(struct fm_client *c, int timeout_ms);

/* Clean MQTT DISCONNECT; waits until it was sent. Returns 0, or -1. */
int fm_client_disconnect(struct fm_client *c);

/* Disconnect (cleanly if still connected), stop the thread, free. NULL ok. */
void fm_client_destroy(struct fm_client *c);

/* The client id given to fm_client_new() (owned by c). */
const char *fm_client_id(const struct fm_client *c);

/* =========================================================================
 * raw - minimal MQTT v5 over a plain socket, to drop connections abruptly
 * ========================================================================= */

/* TCP connect, send CONNECT (clean start, keepalive_s), wait for CONNACK.
 * username NULL = none. Returns the socket (CLOEXEC) or -1 (also if refused). */
int fm_raw_connect(int port, const char *client_id, const char *username, int keepalive_s,
		int timeout_ms);
/* Send one QoS 0 PUBLISH. Returns 0 or -1. */
int fm_raw_publish(int fd, const char *topic, const void *payload, size_t len);
/* Close the socket without an MQTT DISCONNECT (the broker sees EOF). */
void fm_raw_drop(int fd);

/* =========================================================================
 * device - fleetmq conveniences
 * ========================================================================= */

/* Build "fleet/<id>/<suffix>" into buf; returns buf. */
char *fm_topic(char *buf, size_t size, const char *device_id, const char *suffix);

/* Connect as a device (client id = username = id, clean start, keepalive
 * 60 s) and subscribe to fleet/<id>/# at QoS 1 with no-local. NULL on
 * failure (the reason is printed). */
struct fm_client *fm_device_connect(int port, const char *device_id);

/* Connect as an operator (client id = username = name) and subscribe at
 * QoS 1 to each filter in the NULL-terminated list (may be NULL). */
struct fm_client *fm_operator_connect(int port, const char *name, const char *const *filters);

/* Send a Hello (device_type "e2e-sensor", agent_version "e2e-1.0") to
 * fleet/<id>/hello and wait for fleet/<id>/hello/accepted. Returns the
 * HelloAccepted (caller frees) or NULL on timeout / bad payload. */
Fleetmq__V1__HelloAccepted *fm_device_hello(struct fm_client *c, const char *device_id,
		uint64_t shadow_version, int timeout_ms);

/* Result of a shadow update; exactly one of accepted / rejected is set. */
struct fm_update_result {
	Fleetmq__V1__ShadowUpdateAccepted *accepted;
	Fleetmq__V1__Rejection *rejected;
};
void fm_update_result_clear(struct fm_update_result *r);

/* Publish a ShadowUpdateRequest (QoS 1) to fleet/<id>/shadow/update and wait
 * for the update/accepted or update/rejected carrying the same client token.
 * reported / desired NULL = "" (not touched). Returns 1 accepted, 0
 * rejected, -1 on timeout or undecodable reply. The requester must be
 * subscribed to the response topics. */
int fm_shadow_update(struct fm_client *c, const char *device_id, const char *token,
		uint64_t expected_version, const char *reported, const char *desired,
		struct fm_update_result *out, int timeout_ms);

/* Publish a ShadowGetRequest and wait for get/accepted with that token.
 * Returns the document (caller frees) or NULL. */
Fleetmq__V1__ShadowDocument *fm_shadow_get(struct fm_client *c, const char *device_id,
		const char *token, int timeout_ms);

/* Wait for a Rejection on exactly `topic`, optionally with client token
 * `token` (NULL = any). Returns it (caller frees) or NULL. */
Fleetmq__V1__Rejection *fm_wait_rejection(struct fm_client *c, const char *topic,
		const char *token, int timeout_ms);

/* Wait for a Presence on fleet/<id>/presence whose state is `state`,
 * discarding presences in other states. *retained (may be NULL) receives the
 * message's retain flag. Returns it (caller frees) or NULL. */
Fleetmq__V1__Presence *fm_wait_presence(struct fm_client *c, const char *device_id,
		Fleetmq__V1__PresenceState state, bool *retained, int timeout_ms);

/* =========================================================================
 * jobs - device side of the job queue (fleet/<id>/jobs/...)
 * ========================================================================= */

/* Publish a JobNextGetRequest to fleet/<id>/jobs/next/get and wait for
 * next/get/accepted carrying the token. Returns it (caller frees) or NULL on
 * timeout, rejection (printed) or bad payload. */
Fleetmq__V1__JobNextGetAccepted *fm_job_next_get(struct fm_client *c, const char *device_id,
		const char *token, int timeout_ms);

/* Result of a job execution update; exactly one of accepted / rejected is set. */
struct fm_job_update_result {
	Fleetmq__V1__JobExecutionUpdateAccepted *accepted;
	Fleetmq__V1__Rejection *rejected;
};
void fm_job_update_result_clear(struct fm_job_update_result *r);

/* Publish a JobExecutionUpdate (status: Fleetmq__V1__ExecutionStatus,
 * progress -1 = not given) to fleet/<id>/jobs/<job>/update and wait for the
 * .../update/accepted or .../update/rejected carrying the token. Returns 1
 * accepted, 0 rejected, -1 on timeout or undecodable reply. */
int fm_job_update(struct fm_client *c, const char *device_id, const char *job_id, int status,
		uint64_t expected_version, int32_t progress, const char *token,
		struct fm_job_update_result *out, int timeout_ms);

/* Predicate on a decoded JobNotify; ctx is the caller's. */
typedef bool (*fm_notify_pred)(const Fleetmq__V1__JobNotify *n, void *ctx);

/* Wait for a JobNotify on fleet/<id>/jobs/notify for which pred(n, ctx)
 * holds (pred NULL = any), discarding the notifications before it that do
 * not. Returns it (caller frees) or NULL on timeout. */
Fleetmq__V1__JobNotify *fm_wait_job_notify(struct fm_client *c, const char *device_id,
		fm_notify_pred pred, void *ctx, int timeout_ms);

/* Position of job_id in a JobNotify list (e.g. n->queued, n->n_queued), or -1. */
int fm_job_summary_index(Fleetmq__V1__JobExecutionSummary *const *list, size_t n, const char *job_id);

/* =========================================================================
 * control - operator API on $CONTROL/fleetmq/v1
 * ========================================================================= */

#define FM_CONTROL_TOPIC "$CONTROL/fleetmq/v1"
#define FM_CONTROL_CREATE_PB_TOPIC "$CONTROL/fleetmq/v1/jobs/create"

/* Connect a control client (client id = username = name, operator or not)
 * and subscribe to its own response topic fm_control_response_topic(). NULL
 * on failure (printed). */
struct fm_client *fm_control_connect(int port, const char *name);

/* "fleetmq-e2e/<client id>/control-response" into buf; returns buf. */
char *fm_control_response_topic(const struct fm_client *c, char *buf, size_t size);

/* Publish payload (QoS 1) to topic (FM_CONTROL_TOPIC or
 * FM_CONTROL_CREATE_PB_TOPIC) with the MQTT v5 response topic of c and fresh
 * correlation data, then wait for the reply on the response topic carrying
 * the same correlation data. Returns the parsed JSON ({"responses":[...]},
 * free with cJSON_Delete) or NULL on timeout / invalid JSON (printed). */
cJSON *fm_control_request_raw(struct fm_client *c, const char *topic, const void *payload, size_t len,
		int timeout_ms);

/* fm_control_request_raw() of a JSON text to FM_CONTROL_TOPIC. */
cJSON *fm_control_request(struct fm_client *c, const char *json, int timeout_ms);

/* Send one command (a JSON object text, e.g. {"command":"describeJob",...})
 * as {"commands":[cmd]} and return responses[0], detached (free with
 * cJSON_Delete), or NULL on timeout / unexpected shape (printed). */
cJSON *fm_control_command(struct fm_client *c, const char *cmd_json, int timeout_ms);

/* printf-style fm_control_command() with FM_TIMEOUT_MS. */
cJSON *fm_control_commandf(struct fm_client *c, const char *fmt, ...)
		__attribute__((format(printf, 2, 3)));

/* =========================================================================
 * pb - protobuf packing / unpacking. Pack functions return a malloc'd
 * buffer (never NULL on success, even for an empty message) and its length.
 * ========================================================================= */

uint8_t *fm_pb_hello(uint64_t shadow_version, const char *device_type, const char *agent_version,
		size_t *len);
uint8_t *fm_pb_update_request(const char *token, uint64_t expected_version, const char *reported,
		const char *desired, size_t *len);
uint8_t *fm_pb_get_request(const char *token, size_t *len);
uint8_t *fm_pb_telemetry(uint64_t sequence, const char *metric, double value, size_t *len);
uint8_t *fm_pb_job_next_get(const char *token, size_t *len);
/* status: Fleetmq__V1__ExecutionStatus; progress -1 = not given. */
uint8_t *fm_pb_job_update(int status, uint64_t expected_version, int32_t progress, const char *token,
		size_t *len);

/* Unpack the payload of m; NULL if it does not decode. */
Fleetmq__V1__HelloAccepted *fm_pb_hello_accepted(const struct fm_msg *m);
Fleetmq__V1__ShadowDocument *fm_pb_shadow_document(const struct fm_msg *m);
Fleetmq__V1__ShadowUpdateAccepted *fm_pb_update_accepted(const struct fm_msg *m);
Fleetmq__V1__ShadowDelta *fm_pb_shadow_delta(const struct fm_msg *m);
Fleetmq__V1__Rejection *fm_pb_rejection(const struct fm_msg *m);
Fleetmq__V1__Presence *fm_pb_presence(const struct fm_msg *m);
Fleetmq__V1__JobNotify *fm_pb_job_notify(const struct fm_msg *m);
Fleetmq__V1__JobNextGetAccepted *fm_pb_job_next_accepted(const struct fm_msg *m);
Fleetmq__V1__JobExecutionUpdateAccepted *fm_pb_job_update_accepted(const struct fm_msg *m);

/* Enum value names for failure messages ("VERSION_CONFLICT"). */
const char *fm_error_code_name(int code);
const char *fm_presence_state_name(int state);
/* "EXECUTION_STATUS_QUEUED"... for Fleetmq__V1__ExecutionStatus values. */
const char *fm_exec_status_name(int status);

/* =========================================================================
 * json - assertions on shadow documents
 * ========================================================================= */

/* Parse text (NULL or invalid -> NULL). Free with cJSON_Delete. */
cJSON *fm_json_parse(const char *text);
/* Item at a dotted path ("reported.b.c") or NULL; borrowed from root. */
const cJSON *fm_json_path(const cJSON *root, const char *dotted);
/* Parse text and look up path: true if present. */
bool fm_json_has(const char *text, const char *dotted);
/* Number at path, or `dflt` if absent / not a number. */
double fm_json_number(const char *text, const char *dotted, double dflt);
/* String at path copied into buf ("" if absent); returns buf. */
char *fm_json_string(const char *text, const char *dotted, char *buf, size_t size);
/* Number of members of the object at path (-1 if not an object). */
int fm_json_object_size(const char *text, const char *dotted);

/* =========================================================================
 * assertions that say what they saw: CUnit records the formatted message
 * (it copies the condition string), so the summary shows actual values.
 * ========================================================================= */

#define FM_CHECK_(ok, fatal, ...) do{ \
		char fm_cond_[2048]; \
		bool fm_ok_ = (ok); \
		if(!fm_ok_) snprintf(fm_cond_, sizeof(fm_cond_), __VA_ARGS__); \
		CU_assertImplementation(fm_ok_ ? CU_TRUE : CU_FALSE, __LINE__, \
				fm_ok_ ? "ok" : fm_cond_, __FILE__, "", (fatal) ? CU_TRUE : CU_FALSE); \
	}while(0)

/* cond must hold; otherwise record the printf-style message. */
#define FM_ASSERT(cond, ...) FM_CHECK_((cond), false, __VA_ARGS__)
#define FM_ASSERT_FATAL(cond, ...) FM_CHECK_((cond), true, __VA_ARGS__)

#define FM_ASSERT_EQ_(actual, expected, fatal) do{ \
		long long fm_a_ = (long long)(actual), fm_e_ = (long long)(expected); \
		FM_CHECK_(fm_a_ == fm_e_, fatal, "%s == %lld, expected %lld", #actual, fm_a_, fm_e_); \
	}while(0)
#define FM_ASSERT_EQ(actual, expected) FM_ASSERT_EQ_(actual, expected, false)
#define FM_ASSERT_EQ_FATAL(actual, expected) FM_ASSERT_EQ_(actual, expected, true)

#define FM_ASSERT_STR_EQ(actual, expected) do{ \
		const char *fm_sa_ = (actual), *fm_se_ = (expected); \
		FM_CHECK_(fm_sa_ && strcmp(fm_sa_, fm_se_) == 0, false, "%s == \"%.200s\", expected \"%.200s\"", \
				#actual, fm_sa_ ? fm_sa_ : "(null)", fm_se_); \
	}while(0)

/* Compare fleetmq.v1.ErrorCode values, printing their names. */
#define FM_ASSERT_CODE(actual, expected) do{ \
		int fm_ca_ = (int)(actual), fm_ce_ = (int)(expected); \
		FM_CHECK_(fm_ca_ == fm_ce_, false, "%s == %s (%d), expected %s (%d)", #actual, \
				fm_error_code_name(fm_ca_), fm_ca_, fm_error_code_name(fm_ce_), fm_ce_); \
	}while(0)

/* =========================================================================
 * time + run
 * ========================================================================= */

uint64_t fm_mono_ms(void);     /* CLOCK_MONOTONIC */
uint64_t fm_wall_ms(void);     /* CLOCK_REALTIME, ms since the epoch */
void fm_sleep_ms(int ms);

struct fm_test {
	const char *name;          /* test_<feature>_<scenario> */
	CU_TestFunc fn;
};

/* Register one suite with the NULL-terminated tests, run it verbosely and
 * return non-zero if anything failed (use as main's return value). Also
 * ignores SIGPIPE and makes sure brokers die with the test process. */
int fm_cunit_main(const char *suite, CU_InitializeFunc init, CU_CleanupFunc cleanup,
		const struct fm_test *tests);

#endif
