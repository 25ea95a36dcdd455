/*
 * fleetmq.c - the fleetmq operator command line: `fleetmq <noun> <verb> ...`.
 *
 * Talks to the broker plugin like any operator application does: an MQTT v5
 * client (libmosquitto) whose username is listed in the plugin's
 * security.operator_usernames, sending protobuf requests (proto/fleetmq.proto)
 * on <prefix>/<device>/... and waiting for the response that echoes its
 * client_token on .../accepted or .../rejected.
 *
 * Layout, top to bottom:
 *   session  - a synchronous request/response layer over libmosquitto's
 *              network thread: connect, subscribe, publish (QoS 1) and wait
 *              for a matching response, all bounded by one deadline
 *              (--timeout-ms covers the whole command);
 *   output   - JSON pretty printing and human-friendly times;
 *   commands - one function per noun/verb, registered in `commands[]`, which
 *              also drives argument checking and --help. A new command is
 *              one function and one table row.
 *
 * Exit status: 0 success; 1 rejected by the plugin (a Rejection, or its ACL
 * refused a subscription/publish); 2 usage error; 3 broker unreachable or no
 * answer in time. Results go to stdout (--json: one JSON document), errors to
 * stderr.
 *
 * Must never: publish anything but requests, or leave the connection open
 * past the deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_status.h"

#define EXIT_OK 0
#define EXIT_REJECTED 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3

#define DEFAULT_TIMEOUT_MS 5000
#define KEEPALIVE_S 30
#define MAX_ID_BYTES 128             /* device ids: same limit as the plugin */
#define MAX_TOPIC_BYTES 600
#define MAX_DEVICES 1024             /* devices per `devices presence` call */
#define ACK_RING 32                  /* remembered SUBACK/PUBACK results */

/* ================================================================
 * Options
 * ================================================================ */

struct global_opts {
	const char *host;
	int port;
	const char *username;
	const char *client_id;
	const char *prefix;
	long timeout_ms;
	bool json;
	char client_id_buf[64];
};

/* Per-command options and positional arguments. */
struct cmd_args {
	bool has_expected_version;
	uint64_t expected_version;
	char **pos;                  /* positional arguments after <noun> <verb> */
	int npos;
};

struct command;
typedef int (*command_fn)(const struct global_opts *g, const struct cmd_args *a);

struct command {
	const char *noun;
	const char *verb;
	const char *args_usage;      /* shown after "fleetmq <noun> <verb>" */
	int min_args, max_args;      /* positional argument count */
	bool expected_version_opt;   /* accepts --expected-version */
	const char *summary;         /* one line for the command list */
	const char *help;            /* paragraph for <noun> <verb> --help */
	command_fn run;
};

enum {
	OPT_HOST = 1000, OPT_PORT, OPT_USERNAME, OPT_CLIENT_ID, OPT_TIMEOUT, OPT_JSON, OPT_PREFIX,
	OPT_HELP, OPT_EXPECTED_VERSION,
};

static const char *const global_help =
	"global options (before or after the command):\n"
	"  --host HOST          broker address (default 127.0.0.1)\n"
	"  --port N             broker port (default 1883)\n"
	"  --username NAME      MQTT username, must be an operator (default ops)\n"
	"  --client-id ID       MQTT client id (default fleetmq-cli-<pid>)\n"
	"  --timeout-ms N       give up after N ms for the whole command (default 5000)\n"
	"  --json               print results as JSON\n"
	"  --prefix P           fleet topic prefix (default fleet)\n"
	"  -h, --help           help (for a command: fleetmq <noun> <verb> --help)\n";

static const char *const exit_help =
	"exit status: 0 ok, 1 rejected by the plugin, 2 usage error,\n"
	"             3 broker unreachable or no answer in time\n";

/* ================================================================
 * Small helpers
 * ================================================================ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if(!s || !*s) return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if(errno || *end || v < min || v > max) return false;
	*out = v;
	return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if(!s || *s < '0' || *s > '9') return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if(errno || *end) return false;
	*out = (uint64_t)v;
	return true;
}

static bool id_valid(const char *id)
{
	size_t i, len = strlen(id);

	if(len == 0 || len > MAX_ID_BYTES) return false;
	for(i = 0; i < len; i++){
		unsigned char c = (unsigned char)id[i];
		if(c == '/' || c == '+' || c == '#' || c < 0x20 || c == 0x7f) return false;
	}
	return true;
}

static bool check_device_arg(const char *id)
{
	if(id_valid(id)) return true;
	fprintf(stderr, "fleetmq: invalid device id '%s': 1..%d bytes, no '/', '+', '#' or control characters\n",
			id, MAX_ID_BYTES);
	return false;
}

/* A client token unlikely to collide with anyone else's. */
static void make_token(char *buf, size_t len)
{
	uint64_t r = 0;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	if(fd < 0 || read(fd, &r, sizeof(r)) != (ssize_t)sizeof(r)){
		r = now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)clock();
	}
	if(fd >= 0) close(fd);
	snprintf(buf, len, "cli-%016" PRIx64, r);
}

static const char *error_code_name(int code)
{
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&fleetmq__v1__error_code__descriptor, code);
	return v ? v->name : "ERROR_CODE_?";
}

/* ================================================================
 * session: synchronous requests over libmosquitto's network thread
 * ================================================================ */

struct session;
/* Called on the network thread with s->lock held, for every message. Sets
 * s->done when the awaited response has arrived. The message belongs to
 * libmosquitto: copy what must be kept. */
typedef void (*message_fn)(struct session *s, const struct mosquitto_message *msg);

struct session {
	const struct global_opts *g;
	struct mosquitto *mosq;
	uint64_t deadline_mono_ms;
	bool loop_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* guarded by lock */
	bool connack;                /* CONNACK received */
	int connack_rc;              /* its reason code */
	bool lost;                   /* connection failed or dropped */
	int lost_rc;
	struct { int mid; int rc; } acks[ACK_RING];  /* SUBACK/PUBACK results, rc = worst code */
	unsigned ack_next;
	message_fn on_message;
	void *ctx;
	bool done;
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void ack_record(struct session *s, int mid, int rc)
{
	pthread_mutex_lock(&s->lock);
	s->acks[s->ack_next % ACK_RING].mid = mid;
	s->acks[s->ack_next % ACK_RING].rc = rc;
	s->ack_next++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Caller holds lock. Returns the recorded rc, or -1 if mid is not acked yet. */
static int ack_find(const struct session *s, int mid)
{
	unsigned i;

	for(i = 0; i < ACK_RING && i < s->ack_next; i++){
		if(s->acks[i].mid == mid) return s->acks[i].rc;
	}
	return -1;
}

static void cb_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	struct session *s = obj;

	pthread_mutex_lock(&s->lock);
	s->connack = true;
	s->connack_rc = rc;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void cb_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	struct session *s = obj;

	pthread_mutex_lock(&s->lock);
	if(rc != 0){
		s->lost = true;
		s->lost_rc = rc;
	}
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void cb_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted_qos,
		const mosquitto_property *props)
{
	int i, worst = 0;

	for(i = 0; i < qos_count; i++){
		if(granted_qos[i] >= 0x80 && worst < 0x80) worst = granted_qos[i];
	}
	ack_record(obj, mid, worst);
}

static void cb_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props)
{
	ack_record(obj, mid, reason_code);
}

static void cb_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct session *s = obj;

	pthread_mutex_lock(&s->lock);
	if(s->on_message && !s->done) s->on_message(s, msg);
	if(s->done) pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Wait (lock held) for a condition change or the deadline. Returns false at
 * the deadline. */
static bool session_wait_locked(struct session *s)
{
	uint64_t now = mono_ms();
	struct timespec ts;

	if(now >= s->deadline_mono_ms) return false;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)((s->deadline_mono_ms - now) / 1000u);
	ts.tv_nsec += (long)((s->deadline_mono_ms - now) % 1000u) * 1000000L;
	if(ts.tv_nsec >= 1000000000L){
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	return true;
}

static void report_lost(const struct session *s)
{
	const struct global_opts *g = s->g;

	if(s->lost_rc == MOSQ_ERR_ERRNO || s->lost_rc == MOSQ_ERR_CONN_LOST){
		fprintf(stderr, "fleetmq: connection to %s:%d lost\n", g->host, g->port);
	}else{
		fprintf(stderr, "fleetmq: connection to %s:%d closed by the broker: %s\n", g->host, g->port,
				mosquitto_reason_string(s->lost_rc));
	}
}

/* Connect and wait for a successful CONNACK. Returns an exit status. */
static int session_open(struct session *s, const struct global_opts *g)
{
	pthread_condattr_t ca;
	int rc;

	memset(s, 0, sizeof(*s));
	s->g = g;
	s->deadline_mono_ms = mono_ms() + (uint64_t)g->timeout_ms;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);

	s->mosq = mosquitto_new(g->client_id, true, s);
	if(!s->mosq){
		fprintf(stderr, "fleetmq: cannot create an MQTT client: %s\n", strerror(errno));
		return EXIT_UNREACHABLE;
	}
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_username_pw_set(s->mosq, g->username, NULL);
	/* One attempt only: a failed connection ends the command, so make the
	 * network thread's retry delay longer than any sensible timeout. */
	mosquitto_reconnect_delay_set(s->mosq, 3600, 3600, false);
	mosquitto_connect_v5_callback_set(s->mosq, cb_connect);
	mosquitto_disconnect_v5_callback_set(s->mosq, cb_disconnect);
	mosquitto_subscribe_v5_callback_set(s->mosq, cb_subscribe);
	mosquitto_publish_v5_callback_set(s->mosq, cb_publish);
	mosquitto_message_v5_callback_set(s->mosq, cb_message);

	/* Asynchronous connect, so an unreachable host honours --timeout-ms. */
	rc = mosquitto_connect_bind_async(s->mosq, g->host, g->port, KEEPALIVE_S, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "fleetmq: cannot connect to %s:%d: %s\n", g->host, g->port,
				rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		if(rc == MOSQ_ERR_ERRNO && errno == ECONNREFUSED){
			fprintf(stderr, "fleetmq: is the broker running and listening on that port?\n");
		}
		return EXIT_UNREACHABLE;
	}
	rc = mosquitto_loop_start(s->mosq);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "fleetmq: cannot start the network thread: %s\n", mosquitto_strerror(rc));
		return EXIT_UNREACHABLE;
	}
	s->loop_started = true;

	pthread_mutex_lock(&s->lock);
	while(!s->connack && !s->lost){
		if(!session_wait_locked(s)) break;
	}
	if(s->connack && s->connack_rc == 0){
		pthread_mutex_unlock(&s->lock);
		return EXIT_OK;
	}
	if(s->connack){
		fprintf(stderr, "fleetmq: the broker at %s:%d refused the connection: %s\n", g->host, g->port,
				mosquitto_reason_string(s->connack_rc));
	}else if(s->lost){
		fprintf(stderr, "fleetmq: cannot connect to %s:%d (connection failed)\n", g->host, g->port);
	}else{
		fprintf(stderr, "fleetmq: no answer from a broker at %s:%d within %ld ms\n", g->host, g->port, g->timeout_ms);
	}
	pthread_mutex_unlock(&s->lock);
	return EXIT_UNREACHABLE;
}

/* Wait for the SUBACK/PUBACK of mid. Returns an exit status; `what` names
 * the operation for messages. */
static int session_wait_ack(struct session *s, int mid, const char *what, const char *topic)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	while((rc = ack_find(s, mid)) < 0 && !s->lost){
		if(!session_wait_locked(s)) break;
	}
	if(rc < 0){
		if(s->lost) report_lost(s);
		else fprintf(stderr, "fleetmq: the broker did not acknowledge the %s of %s within %ld ms\n",
				what, topic, s->g->timeout_ms);
		pthread_mutex_unlock(&s->lock);
		return EXIT_UNREACHABLE;
	}
	pthread_mutex_unlock(&s->lock);
	if(rc >= 0x80){
		fprintf(stderr, "fleetmq: the broker refused the %s of %s: %s\n", what, topic, mosquitto_reason_string(rc));
		if(rc == MQTT_RC_NOT_AUTHORIZED){
			fprintf(stderr, "fleetmq: is user '%s' listed in security.operator_usernames of the plugin?\n",
					s->g->username);
		}
		return EXIT_REJECTED;
	}
	return EXIT_OK;
}

/* Subscribe to `count` filters with one SUBSCRIBE and wait for the SUBACK. */
static int session_subscribe(struct session *s, char *const *filters, int count, int qos, int options)
{
	int mid = 0, rc;

	rc = mosquitto_subscribe_multiple(s->mosq, &mid, count, filters, qos, options, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "fleetmq: cannot subscribe to %s: %s\n", filters[0], mosquitto_strerror(rc));
		return EXIT_UNREACHABLE;
	}
	return session_wait_ack(s, mid, "subscription", count > 1 ? "the requested topics" : filters[0]);
}

/* Publish a protobuf request at QoS 1 and wait for the PUBACK. */
static int session_request(struct session *s, const char *topic, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = fm_malloc(len ? len : 1);
	int mid = 0, rc;

	if(!buf){
		fprintf(stderr, "fleetmq: out of memory\n");
		return EXIT_UNREACHABLE;
	}
	protobuf_c_message_pack(m, buf);
	rc = mosquitto_publish_v5(s->mosq, &mid, topic, (int)len, buf, 1, false, NULL);
	fm_free(buf);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "fleetmq: cannot publish to %s: %s\n", topic, mosquitto_strerror(rc));
		return EXIT_UNREACHABLE;
	}
	return session_wait_ack(s, mid, "publish", topic);
}

/* Wait until the message handler sets done. */
static int session_wait_done(struct session *s, const char *what)
{
	pthread_mutex_lock(&s->lock);
	while(!s->done && !s->lost){
		if(!session_wait_locked(s)) break;
	}
	if(s->done){
		pthread_mutex_unlock(&s->lock);
		return EXIT_OK;
	}
	if(s->lost){
		report_lost(s);
	}else{
		fprintf(stderr, "fleetmq: no %s within %ld ms; is the fleetmq plugin loaded in the broker at %s:%d?\n",
				what, s->g->timeout_ms, s->g->host, s->g->port);
	}
	pthread_mutex_unlock(&s->lock);
	return EXIT_UNREACHABLE;
}

static void session_close(struct session *s)
{
	bool connected;

	if(s->mosq){
		pthread_mutex_lock(&s->lock);
		s->on_message = NULL;
		connected = s->connack && s->connack_rc == 0 && !s->lost;
		pthread_mutex_unlock(&s->lock);
		if(s->loop_started){
			if(connected) mosquitto_disconnect_v5(s->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
			else mosquitto_disconnect(s->mosq);
			mosquitto_loop_stop(s->mosq, !connected);
		}
		mosquitto_destroy(s->mosq);
		s->mosq = NULL;
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

/* ---------------------------------------------------------------- responses */

/* A request/response exchange: the response is the first message on
 * accepted_topic whose client_token equals token (unpacked with
 * accepted_desc), or on rejected_topic (a Rejection) with that token. A
 * Rejection without a token is taken too when it says TOO_LARGE: the plugin
 * rejects oversized payloads before it can read the token. */
struct exchange {
	const ProtobufCMessageDescriptor *accepted_desc;
	char accepted_topic[MAX_TOPIC_BYTES + 16];
	char rejected_topic[MAX_TOPIC_BYTES + 16];
	char token[40];
	ProtobufCMessage *accepted;          /* owned; free with protobuf_c_message_free_unpacked */
	Fleetmq__V1__Rejection *rejected;    /* owned */
};

static const char *message_token(const ProtobufCMessage *m)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(m->descriptor, "client_token");

	if(!f || f->type != PROTOBUF_C_TYPE_STRING) return "";
	return *(char *const *)((const char *)m + f->offset);
}

static void exchange_on_message(struct session *s, const struct mosquitto_message *msg)
{
	struct exchange *x = s->ctx;

	if(!strcmp(msg->topic, x->accepted_topic)){
		ProtobufCMessage *m = protobuf_c_message_unpack(x->accepted_desc, NULL, (size_t)msg->payloadlen, msg->payload);
		if(m && !strcmp(message_token(m), x->token)){
			x->accepted = m;
			s->done = true;
		}else if(m){
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}else if(!strcmp(msg->topic, x->rejected_topic)){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		if(r && (!strcmp(r->client_token, x->token)
					|| (!r->client_token[0] && r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_TOO_LARGE))){
			x->rejected = r;
			s->done = true;
		}else if(r){
			fleetmq__v1__rejection__free_unpacked(r, NULL);
		}
	}
}

static void exchange_free(struct exchange *x)
{
	if(x->accepted) protobuf_c_message_free_unpacked(x->accepted, NULL);
	if(x->rejected) fleetmq__v1__rejection__free_unpacked(x->rejected, NULL);
	x->accepted = NULL;
	x->rejected = NULL;
}

/*
 * Run one exchange on <prefix>/<device>/<request>: subscribe to
 * <request>/+, publish the request, wait for the response. On EXIT_OK
 * exactly one of x->accepted / x->rejected is set.
 */
static int exchange_run(const struct global_opts *g, const char *device, const char *request,
		const ProtobufCMessage *req, struct exchange *x)
{
	struct session s;
	char topic[MAX_TOPIC_BYTES], filter[MAX_TOPIC_BYTES + 16];
	char *filters[1] = { filter };
	int rc;

	snprintf(topic, sizeof(topic), "%s/%s/%s", g->prefix, device, request);
	snprintf(filter, sizeof(filter), "%s/+", topic);
	snprintf(x->accepted_topic, sizeof(x->accepted_topic), "%s/accepted", topic);
	snprintf(x->rejected_topic, sizeof(x->rejected_topic), "%s/rejected", topic);

	rc = session_open(&s, g);
	if(rc == EXIT_OK){
		pthread_mutex_lock(&s.lock);
		s.on_message = exchange_on_message;
		s.ctx = x;
		pthread_mutex_unlock(&s.lock);
		rc = session_subscribe(&s, filters, 1, 1, 0);
	}
	if(rc == EXIT_OK) rc = session_request(&s, topic, req);
	if(rc == EXIT_OK) rc = session_wait_done(&s, "response from the plugin");
	session_close(&s);
	if(rc != EXIT_OK) exchange_free(x);
	return rc;
}

/* ================================================================
 * output
 * ================================================================ */

/* Pretty-print v with two-space indents, "{}" for empty containers. */
static void json_pretty_rec(FILE *out, const cJSON *v, int depth)
{
	const cJSON *c;
	bool obj = cJSON_IsObject(v);
	char *s;

	if(!obj && !cJSON_IsArray(v)){
		s = cJSON_PrintUnformatted(v);
		fputs(s ? s : "?", out);
		cJSON_free(s);
		return;
	}
	if(!v->child){
		fputs(obj ? "{}" : "[]", out);
		return;
	}
	fputc(obj ? '{' : '[', out);
	for(c = v->child; c; c = c->next){
		fprintf(out, "\n%*s", 2 * (depth + 1), "");
		if(obj){
			cJSON *key = cJSON_CreateString(c->string);
			s = key ? cJSON_PrintUnformatted(key) : NULL;
			fprintf(out, "%s: ", s ? s : "?");
			cJSON_free(s);
			cJSON_Delete(key);
		}
		json_pretty_rec(out, c, depth + 1);
		if(c->next) fputc(',', out);
	}
	fprintf(out, "\n%*s%c", 2 * depth, "", obj ? '}' : ']');
}

static void print_json_pretty(FILE *out, const cJSON *v)
{
	json_pretty_rec(out, v, 0);
	fputc('\n', out);
}

static void print_json_line(const cJSON *v)
{
	char *s = cJSON_PrintUnformatted(v);

	if(s) puts(s);
	cJSON_free(s);
}

/* "just now", "42s ago", "3m 5s ago", "2h 10m ago", "4d 1h ago"; "-" for 0. */
static void format_age(char *buf, size_t len, uint64_t then_ms, uint64_t now)
{
	uint64_t s;

	if(then_ms == 0){
		snprintf(buf, len, "-");
		return;
	}
	s = now > then_ms ? (now - then_ms) / 1000u : 0;
	if(s < 1) snprintf(buf, len, "just now");
	else if(s < 60) snprintf(buf, len, "%" PRIu64 "s ago", s);
	else if(s < 3600) snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s ago", s / 60, s % 60);
	else if(s < 86400) snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m ago", s / 3600, (s % 3600) / 60);
	else snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h ago", s / 86400, (s % 86400) / 3600);
}

/* Report a Rejection: stderr always, stdout too with --json. */
static int print_rejection(const struct global_opts *g, const char *what, const char *device,
		const Fleetmq__V1__Rejection *r)
{
	fprintf(stderr, "fleetmq: %s %s: rejected by the plugin: %s (%s, code %d): %s\n", what, device,
			fleetmq_strerror((int)r->code), error_code_name((int)r->code), (int)r->code, r->reason);
	if(g->json){
		cJSON *o = cJSON_CreateObject(), *e = cJSON_CreateObject();
		if(o && e){
			cJSON_AddStringToObject(o, "device", device);
			cJSON_AddNumberToObject(e, "code", (double)r->code);
			cJSON_AddStringToObject(e, "name", error_code_name((int)r->code));
			cJSON_AddStringToObject(e, "reason", r->reason);
			cJSON_AddNumberToObject(e, "version", (double)r->version);
			cJSON_AddItemToObject(o, "rejected", e);
			e = NULL;
			print_json_line(o);
		}
		cJSON_Delete(e);
		cJSON_Delete(o);
	}
	return EXIT_REJECTED;
}

/* ================================================================
 * commands
 * ================================================================ */

static int cmd_shadow_get(const struct global_opts *g, const struct cmd_args *a)
{
	const char *device = a->pos[0];
	Fleetmq__V1__ShadowGetRequest req = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;
	const Fleetmq__V1__ShadowDocument *doc;
	struct exchange x;
	cJSON *state = NULL, *meta = NULL, *delta = NULL, *out = NULL;
	int rc;

	if(!check_device_arg(device)) return EXIT_USAGE;
	memset(&x, 0, sizeof(x));
	x.accepted_desc = &fleetmq__v1__shadow_document__descriptor;
	make_token(x.token, sizeof(x.token));
	req.client_token = x.token;

	rc = exchange_run(g, device, "shadow/get", &req.base, &x);
	if(rc != EXIT_OK) return rc;
	if(x.rejected){
		rc = print_rejection(g, "shadow get", device, x.rejected);
		goto cleanup;
	}
	doc = (const Fleetmq__V1__ShadowDocument *)x.accepted;
	state = cJSON_Parse(doc->state_json);
	meta = cJSON_Parse(doc->metadata_json);
	if(!cJSON_IsObject(state)){
		fprintf(stderr, "fleetmq: the plugin sent a shadow document whose state is not a JSON object\n");
		rc = EXIT_REJECTED;
		goto cleanup;
	}
	delta = cJSON_DetachItemFromObjectCaseSensitive(state, "delta");
	if(delta && (!cJSON_IsObject(delta) || !delta->child)){
		cJSON_Delete(delta);
		delta = NULL;
	}

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = EXIT_UNREACHABLE;
			goto cleanup;
		}
		cJSON_AddStringToObject(out, "device", device);
		cJSON_AddNumberToObject(out, "version", (double)doc->version);
		cJSON_AddItemToObject(out, "state", state);
		state = NULL;
		cJSON_AddItemToObject(out, "delta", delta ? delta : cJSON_CreateNull());
		delta = NULL;
		cJSON_AddItemToObject(out, "metadata", meta ? meta : cJSON_CreateNull());
		meta = NULL;
		cJSON_AddNumberToObject(out, "timestamp_ms", (double)doc->timestamp_ms);
		print_json_line(out);
	}else{
		printf("shadow of %s, version %" PRIu64 "%s\n", device, doc->version,
				doc->version == 0 ? " (never updated)" : "");
		print_json_pretty(stdout, state);
		if(delta){
			char *d = cJSON_PrintUnformatted(delta);
			printf("delta: %s  (desired, not yet reported by the device)\n", d ? d : "?");
			cJSON_free(d);
		}else{
			printf("delta: none (reported matches desired)\n");
		}
	}
	rc = EXIT_OK;

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(state);
	cJSON_Delete(meta);
	cJSON_Delete(delta);
	exchange_free(&x);
	return rc;
}

static int cmd_shadow_set_desired(const struct global_opts *g, const struct cmd_args *a)
{
	const char *device = a->pos[0];
	Fleetmq__V1__ShadowUpdateRequest req = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;
	const Fleetmq__V1__ShadowUpdateAccepted *ack;
	struct exchange x;
	cJSON *patch, *out = NULL, *applied = NULL;
	char *desired = NULL;
	int rc;

	if(!check_device_arg(device)) return EXIT_USAGE;
	patch = cJSON_Parse(a->pos[1]);
	if(!cJSON_IsObject(patch)){
		fprintf(stderr, "fleetmq: desired state must be a JSON object, e.g. '{\"led\":\"on\"}' (got: %s)\n", a->pos[1]);
		if(!patch) fprintf(stderr, "fleetmq: JSON syntax error near: %.40s\n", cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "");
		cJSON_Delete(patch);
		return EXIT_USAGE;
	}
	if(!patch->child){
		fprintf(stderr, "fleetmq: desired state is empty: give at least one key (null deletes a key)\n");
		cJSON_Delete(patch);
		return EXIT_USAGE;
	}
	desired = cJSON_PrintUnformatted(patch);
	cJSON_Delete(patch);
	if(!desired){
		fprintf(stderr, "fleetmq: out of memory\n");
		return EXIT_UNREACHABLE;
	}

	memset(&x, 0, sizeof(x));
	x.accepted_desc = &fleetmq__v1__shadow_update_accepted__descriptor;
	make_token(x.token, sizeof(x.token));
	req.client_token = x.token;
	req.desired_json = desired;
	req.expected_version = a->has_expected_version ? a->expected_version : 0;

	rc = exchange_run(g, device, "shadow/update", &req.base, &x);
	if(rc != EXIT_OK) goto cleanup;
	if(x.rejected){
		rc = print_rejection(g, "shadow set-desired", device, x.rejected);
		goto cleanup;
	}
	ack = (const Fleetmq__V1__ShadowUpdateAccepted *)x.accepted;
	applied = cJSON_Parse(ack->state_json);
	if(g->json){
		out = cJSON_CreateObject();
		if(out){
			cJSON_AddStringToObject(out, "device", device);
			cJSON_AddNumberToObject(out, "version", (double)ack->version);
			cJSON_AddItemToObject(out, "state", applied ? applied : cJSON_CreateNull());
			applied = NULL;
			cJSON_AddNumberToObject(out, "timestamp_ms", (double)ack->timestamp_ms);
			print_json_line(out);
		}
	}else{
		printf("%s: desired state updated, shadow version %" PRIu64 "\n", device, ack->version);
	}
	rc = EXIT_OK;

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(applied);
	exchange_free(&x);
	cJSON_free(desired);
	return rc;
}

/* ---------------------------------------------------------------- devices presence */

struct presence_row {
	const char *device;
	char topic[MAX_TOPIC_BYTES];
	bool found;
	bool bad;                    /* undecodable payload */
	Fleetmq__V1__PresenceState state;
	uint64_t since_ms, last_seen_ms, connected_at_ms;
	char device_type[130];
	char agent_version[130];
};

struct presence_ctx {
	struct presence_row *rows;
	int count;
	int sentinel_mid;            /* SUBACK after which all retained messages are in */
};

static void presence_on_message(struct session *s, const struct mosquitto_message *msg)
{
	struct presence_ctx *c = s->ctx;
	int i;

	for(i = 0; i < c->count; i++){
		struct presence_row *r = &c->rows[i];
		Fleetmq__V1__Presence *p;

		if(strcmp(msg->topic, r->topic)) continue;   /* (a device may be listed twice) */
		if(msg->payloadlen == 0) continue;            /* retained record cleared */
		p = fleetmq__v1__presence__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
		r->found = true;
		r->bad = !p;
		if(p){
			r->state = p->state;
			r->since_ms = p->since_ms;
			r->last_seen_ms = p->last_seen_ms;
			r->connected_at_ms = p->connected_at_ms;
			snprintf(r->device_type, sizeof(r->device_type), "%s", p->device_type);
			snprintf(r->agent_version, sizeof(r->agent_version), "%s", p->agent_version);
			fleetmq__v1__presence__free_unpacked(p, NULL);
		}
	}
}

static const char *presence_name(const struct presence_row *r)
{
	if(!r->found) return "unknown";
	if(r->bad) return "invalid";
	switch(r->state){
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE: return "online";
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_OFFLINE: return "offline";
		case FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_SILENT: return "silent";
		default: return "unknown";
	}
}

static void presence_print(const struct global_opts *g, const struct presence_row *rows, int count)
{
	uint64_t now = now_ms();
	int i, w = (int)strlen("DEVICE");
	bool connected = false;

	if(g->json){
		cJSON *arr = cJSON_CreateArray();
		for(i = 0; arr && i < count; i++){
			const struct presence_row *r = &rows[i];
			cJSON *o = cJSON_CreateObject();
			if(!o) break;
			cJSON_AddItemToArray(arr, o);
			cJSON_AddStringToObject(o, "device", r->device);
			cJSON_AddStringToObject(o, "state", presence_name(r));
			cJSON_AddBoolToObject(o, "found", r->found && !r->bad);
			cJSON_AddNumberToObject(o, "since_ms", (double)r->since_ms);
			cJSON_AddNumberToObject(o, "last_seen_ms", (double)r->last_seen_ms);
			cJSON_AddNumberToObject(o, "connected_at_ms", (double)r->connected_at_ms);
			cJSON_AddStringToObject(o, "device_type", r->device_type);
			cJSON_AddStringToObject(o, "agent_version", r->agent_version);
		}
		if(arr) print_json_line(arr);
		cJSON_Delete(arr);
		return;
	}

	for(i = 0; i < count; i++){
		int l = (int)strlen(rows[i].device);
		if(l > w) w = l;
	}
	printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, "DEVICE", "STATE", "SINCE", "LAST SEEN", "TYPE");
	for(i = 0; i < count; i++){
		const struct presence_row *r = &rows[i];
		char since[32], seen[32];

		if(!r->found || r->bad){
			printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, r->device, presence_name(r), "-", "-",
					r->bad ? "(undecodable presence record)" : "(no presence record: never connected?)");
			continue;
		}
		format_age(since, sizeof(since), r->since_ms, now);
		format_age(seen, sizeof(seen), r->last_seen_ms, now);
		printf("%-*s  %-8s  %-12s  %-12s  %s\n", w, r->device, presence_name(r), since, seen,
				r->device_type[0] ? r->device_type : "-");
		if(r->state == FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE
				|| r->state == FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_SILENT) connected = true;
	}
	if(connected){
		/* The record is republished on state changes only (see device.c). */
		printf("(last seen: as of the latest state change; presence is republished on changes only)\n");
	}
}

static int cmd_devices_presence(const struct global_opts *g, const struct cmd_args *a)
{
	struct presence_row *rows;
	struct presence_ctx ctx;
	struct session s;
	char **filters = NULL;
	int i, rc;

	if(a->npos > MAX_DEVICES){
		fprintf(stderr, "fleetmq: at most %d devices per call\n", MAX_DEVICES);
		return EXIT_USAGE;
	}
	for(i = 0; i < a->npos; i++){
		if(!check_device_arg(a->pos[i])) return EXIT_USAGE;
	}
	rows = fm_calloc((size_t)a->npos, sizeof(*rows));
	filters = fm_calloc((size_t)a->npos, sizeof(*filters));
	if(!rows || !filters){
		fprintf(stderr, "fleetmq: out of memory\n");
		rc = EXIT_UNREACHABLE;
		goto cleanup;
	}
	for(i = 0; i < a->npos; i++){
		rows[i].device = a->pos[i];
		snprintf(rows[i].topic, sizeof(rows[i].topic), "%s/%s/presence", g->prefix, a->pos[i]);
		filters[i] = rows[i].topic;
	}
	ctx.rows = rows;
	ctx.count = a->npos;

	rc = session_open(&s, g);
	if(rc == EXIT_OK){
		pthread_mutex_lock(&s.lock);
		s.on_message = presence_on_message;
		s.ctx = &ctx;
		pthread_mutex_unlock(&s.lock);
		/* QoS 0 keeps the retained records in order with the SUBACKs. */
		rc = session_subscribe(&s, filters, a->npos, 0, 0);
	}
	if(rc == EXIT_OK){
		/* The broker sends retained messages right after a SUBACK. Subscribing
		 * once more (without retained messages) and waiting for that SUBACK
		 * means every record that exists has arrived; missing ones do not. */
		rc = session_subscribe(&s, filters, 1, 0, MQTT_SUB_OPT_SEND_RETAIN_NEVER);
	}
	session_close(&s);
	if(rc == EXIT_OK) presence_print(g, rows, a->npos);

cleanup:
	fm_free(rows);
	fm_free(filters);
	return rc;
}

/* ---------------------------------------------------------------- table */

static const struct command commands[] = {
	{ "shadow", "get", "<device>", 1, 1, false,
		"print a device's shadow: version, desired and reported state, delta",
		"Sends a ShadowGetRequest on <prefix>/<device>/shadow/get and prints the\n"
		"document the plugin answers with. A device that never had a shadow shows\n"
		"version 0 and empty state. Exits 1 with the plugin's reason on rejection.\n",
		cmd_shadow_get },
	{ "shadow", "set-desired", "<device> '<json object>'", 2, 2, true,
		"merge a JSON object into a device's desired state",
		"Sends a ShadowUpdateRequest with desired_json on <prefix>/<device>/shadow/update\n"
		"and prints the new shadow version. The object is merged: nested objects merge\n"
		"key by key, a key set to null is deleted, other values replace. If the device\n"
		"is connected the plugin pushes it the delta at once; otherwise it gets it when\n"
		"it says hello again.\n"
		"\n"
		"options:\n"
		"  --expected-version N  apply only if the shadow is at version N (0 = always);\n"
		"                        otherwise rejected with VERSION_CONFLICT\n"
		"\n"
		"example:  fleetmq shadow set-desired dev-1 '{\"led\":\"on\",\"sample_rate_hz\":10}'\n",
		cmd_shadow_set_desired },
	{ "devices", "presence", "<device>...", 1, MAX_DEVICES, false,
		"show whether devices are online, offline or silent",
		"Reads the retained Presence record of each device from <prefix>/<device>/presence\n"
		"and prints a table: state (online, offline, silent = connected but quiet),\n"
		"since when, when the plugin last heard from the device, and its type.\n"
		"A device with no record has never connected (or the broker lost its\n"
		"retained messages in a restart; it republishes them when devices reconnect).\n",
		cmd_devices_presence },
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage_main(FILE *out)
{
	size_t i;

	fprintf(out, "usage: fleetmq [global options] <noun> <verb> [arguments]\n\n"
			"Operator command line for the fleetmq broker plugin.\n\ncommands:\n");
	for(i = 0; i < N_COMMANDS; i++){
		char left[64];
		snprintf(left, sizeof(left), "%s %s", commands[i].noun, commands[i].verb);
		fprintf(out, "  %-22s %s\n", left, commands[i].summary);
	}
	fprintf(out, "\n%s\n%s", global_help, exit_help);
}

static void usage_noun(FILE *out, const char *noun)
{
	size_t i;

	fprintf(out, "usage: fleetmq [global options] %s <verb> [arguments]\n\nverbs:\n", noun);
	for(i = 0; i < N_COMMANDS; i++){
		if(strcmp(commands[i].noun, noun)) continue;
		fprintf(out, "  %-14s %s\n", commands[i].verb, commands[i].summary);
	}
	fprintf(out, "\nfleetmq %s <verb> --help for details.\n", noun);
}

static void usage_command(FILE *out, const struct command *c)
{
	fprintf(out, "usage: fleetmq [global options] %s %s %s\n\n%s.\n\n%s\n%s\n%s", c->noun, c->verb,
			c->args_usage, c->summary, c->help, global_help, exit_help);
}

/*
 * Parse options in argv[0..argc) (argv[0] is skipped, getopt style). Global
 * options are always accepted; --expected-version only if allow_ev. With
 * stop_at_operand, parsing stops at the first non-option (used before the
 * noun); otherwise operands are collected in order into a->pos.
 * Returns 0, EXIT_USAGE, or -1 for --help.
 */
static int parse_options(int argc, char **argv, struct global_opts *g, struct cmd_args *a,
		bool allow_ev, bool stop_at_operand, int *next)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, OPT_HOST },
		{ "port", required_argument, NULL, OPT_PORT },
		{ "username", required_argument, NULL, OPT_USERNAME },
		{ "client-id", required_argument, NULL, OPT_CLIENT_ID },
		{ "timeout-ms", required_argument, NULL, OPT_TIMEOUT },
		{ "json", no_argument, NULL, OPT_JSON },
		{ "prefix", required_argument, NULL, OPT_PREFIX },
		{ "help", no_argument, NULL, OPT_HELP },
		{ "expected-version", required_argument, NULL, OPT_EXPECTED_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	optind = 0;   /* full reinitialisation (glibc) */
	opterr = 0;
	while((c = getopt_long(argc, argv, stop_at_operand ? "+:h" : "-:h", longopts, NULL)) != -1){
		switch(c){
			case 1:   /* operand, in order ("-" optstring) */
				a->pos[a->npos++] = optarg;
				break;
			case OPT_HOST: g->host = optarg; break;
			case OPT_PORT:
				if(!parse_long(optarg, 1, 65535, &v)){
					fprintf(stderr, "fleetmq: --port: '%s' is not a port number (1..65535)\n", optarg);
					return EXIT_USAGE;
				}
				g->port = (int)v;
				break;
			case OPT_USERNAME: g->username = optarg; break;
			case OPT_CLIENT_ID: g->client_id = optarg; break;
			case OPT_TIMEOUT:
				if(!parse_long(optarg, 1, 3600000, &g->timeout_ms)){
					fprintf(stderr, "fleetmq: --timeout-ms: '%s' must be 1..3600000\n", optarg);
					return EXIT_USAGE;
				}
				break;
			case OPT_JSON: g->json = true; break;
			case OPT_PREFIX: g->prefix = optarg; break;
			case 'h':
			case OPT_HELP: return -1;
			case OPT_EXPECTED_VERSION:
				if(!allow_ev){
					fprintf(stderr, "fleetmq: --expected-version applies only to shadow set-desired\n");
					return EXIT_USAGE;
				}
				if(!parse_u64(optarg, &a->expected_version)){
					fprintf(stderr, "fleetmq: --expected-version: '%s' is not a version number\n", optarg);
					return EXIT_USAGE;
				}
				a->has_expected_version = true;
				break;
			case ':':
				fprintf(stderr, "fleetmq: option '%s' needs a value\n", argv[optind - 1]);
				return EXIT_USAGE;
			default:
				fprintf(stderr, "fleetmq: unknown option '%s'\n", argv[optind - 1]);
				return EXIT_USAGE;
		}
	}
	*next = optind;
	return 0;
}

static int check_globals(struct global_opts *g)
{
	if(!g->prefix[0] || strpbrk(g->prefix, "/+#") || strlen(g->prefix) > MAX_ID_BYTES){
		fprintf(stderr, "fleetmq: --prefix: '%s' must be one topic level of at most %d bytes\n", g->prefix, MAX_ID_BYTES);
		return EXIT_USAGE;
	}
	if(!g->username[0]){
		fprintf(stderr, "fleetmq: --username must not be empty\n");
		return EXIT_USAGE;
	}
	if(!g->client_id){
		snprintf(g->client_id_buf, sizeof(g->client_id_buf), "fleetmq-cli-%ld", (long)getpid());
		g->client_id = g->client_id_buf;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct global_opts g;
	struct cmd_args a;
	const struct command *cmd = NULL;
	const char *noun, *verb;
	bool noun_known = false;
	char **operands = NULL;
	size_t i;
	int rc, next = 0;

	memset(&g, 0, sizeof(g));
	memset(&a, 0, sizeof(a));
	g.host = "127.0.0.1";
	g.port = 1883;
	g.username = "ops";
	g.prefix = "fleet";
	g.timeout_ms = DEFAULT_TIMEOUT_MS;
	signal(SIGPIPE, SIG_IGN);

	/* global options, up to the noun */
	rc = parse_options(argc, argv, &g, &a, false, true, &next);
	if(rc < 0){
		usage_main(stdout);
		return EXIT_OK;
	}
	if(rc) return rc;
	if(next >= argc){
		usage_main(stderr);
		return EXIT_USAGE;
	}
	noun = argv[next];
	for(i = 0; i < N_COMMANDS; i++){
		if(!strcmp(commands[i].noun, noun)) noun_known = true;
	}
	if(!noun_known){
		fprintf(stderr, "fleetmq: unknown command '%s'\n\n", noun);
		usage_main(stderr);
		return EXIT_USAGE;
	}

	/* "<verb> [operands and options in any order]"; the noun stands in for
	 * argv[0] of the second parse. */
	operands = fm_calloc((size_t)(argc - next) + 1, sizeof(*operands));
	if(!operands) return EXIT_UNREACHABLE;
	a.pos = operands;
	rc = parse_options(argc - next, argv + next, &g, &a, true, false, &next);
	if(rc > 0) goto done;
	verb = a.npos > 0 ? a.pos[0] : NULL;
	for(i = 0; verb && i < N_COMMANDS; i++){
		if(!strcmp(commands[i].noun, noun) && !strcmp(commands[i].verb, verb)) cmd = &commands[i];
	}
	if(!cmd){
		if(rc < 0 && !verb){
			usage_noun(stdout, noun);
			rc = EXIT_OK;
			goto done;
		}
		if(verb) fprintf(stderr, "fleetmq: unknown command '%s %s'\n\n", noun, verb);
		usage_noun(stderr, noun);
		rc = EXIT_USAGE;
		goto done;
	}
	if(rc < 0){
		usage_command(stdout, cmd);
		rc = EXIT_OK;
		goto done;
	}
	if(a.has_expected_version && !cmd->expected_version_opt){
		fprintf(stderr, "fleetmq: --expected-version does not apply to %s %s\n", cmd->noun, cmd->verb);
		rc = EXIT_USAGE;
		goto done;
	}
	a.pos = operands + 1;   /* drop the verb */
	a.npos--;
	if(a.npos < cmd->min_args || a.npos > cmd->max_args){
		fprintf(stderr, "fleetmq: %s %s takes %s\n", cmd->noun, cmd->verb, cmd->args_usage);
		fprintf(stderr, "usage: fleetmq [global options] %s %s %s   (--help for details)\n",
				cmd->noun, cmd->verb, cmd->args_usage);
		rc = EXIT_USAGE;
		goto done;
	}
	rc = check_globals(&g);
	if(rc) goto done;

	mosquitto_lib_init();
	rc = cmd->run(&g, &a);
	mosquitto_lib_cleanup();

done:
	fm_free(operands);
	return rc;
}
