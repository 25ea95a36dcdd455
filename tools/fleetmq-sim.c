/*
 * fleetmq-sim.c - a simulated fleetmq device, for demos and manual tests.
 *
 * Speaks the device side of the fleetmq protocol (proto/fleetmq.proto) over
 * MQTT v5 with libmosquitto:
 *   - connects with client id = username = <id>, clean start false and a
 *     session expiry of SESSION_EXPIRY_S, so QoS 1 messages queued while it
 *     is briefly away are delivered when it comes back; reconnects on its
 *     own with exponential backoff;
 *   - subscribes to <prefix>/<id>/# with no-local and says Hello on every
 *     connect, carrying the last shadow version it is known to have applied
 *     (kept in <state-dir>/<id>.version across restarts; 0 if absent);
 *   - every interval reports {"temperature":..,"uptime_s":..} as reported
 *     state (client_token "r<n>") and sends a TelemetryBatch; all QoS 1;
 *   - applies desired state from a ShadowDelta (shadow/update/delta) or a
 *     full ShadowDocument (shadow/get/accepted) by reporting the delta keys
 *     back (client_token "a<n>"), which closes the delta, and logs one line.
 *
 * "Applied version": the version saved and sent in Hello is advanced only
 * when every apply report of this session has been acknowledged (or the
 * plugin said there is nothing to do), so a restart never skips a delta
 * whose keys were not yet stored by the plugin.
 *
 * Threads: libmosquitto's network thread runs the callbacks; the main thread
 * runs the report timer and takes SIGINT/SIGTERM with sigtimedwait (the
 * signals are blocked in every thread). struct sim is shared and guarded by
 * sim.lock; no libmosquitto call is made while holding it.
 *
 * Must never: publish desired state, or act on a message for another device.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
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

#define AGENT_VERSION "fleetmq-sim/0.1"
#define FIRMWARE_VERSION "1.0.0"
#define SESSION_EXPIRY_S 3600
#define KEEPALIVE_S 30
#define RECONNECT_MIN_S 1
#define RECONNECT_MAX_S 30
#define DRAIN_TIMEOUT_MS 2000     /* wait for PUBACKs before a clean stop */
#define MAX_ID_BYTES 128          /* same limit as the plugin (topic.h) */
#define MAX_TOPIC_BYTES 512

#define EXIT_USAGE 2
#define EXIT_FAILURE_RUNTIME 3

struct sim_opts {
	const char *host;
	int port;
	const char *id;
	const char *device_type;
	const char *hw_revision;
	const char *state_dir;        /* NULL: applied version kept in memory only */
	const char *prefix;
	long interval_ms;
	long count_limit;             /* periodic reports before stopping; 0 = no limit */
};

struct sim {
	struct sim_opts o;
	struct mosquitto *mosq;
	pthread_mutex_t lock;
	/* guarded by lock */
	bool connected;
	uint64_t applied_version;     /* sent in Hello; persisted */
	uint64_t report_seq;          /* tokens r<n> */
	uint64_t apply_seq;           /* tokens a<n> */
	unsigned apply_pending;       /* apply reports not yet acknowledged */
	unsigned qos1_pending;        /* QoS 1 publishes without PUBACK */
	cJSON *reported;              /* what this session has reported */
	/* main thread only */
	uint64_t started_mono_ms;
	uint64_t telemetry_seq;
	int temperature_dc;           /* deci-degrees, random walk */
	char topic_base[MAX_TOPIC_BYTES];   /* "<prefix>/<id>/" */
};

/* ================================================================
 * Small helpers
 * ================================================================ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
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

/* ================================================================
 * Applied version, persisted in <state-dir>/<id>.version
 * ================================================================ */

static uint64_t version_load(const struct sim_opts *o)
{
	char path[PATH_MAX], buf[32];
	unsigned long long v;
	char *end;
	FILE *f;

	if(!o->state_dir) return 0;
	if(snprintf(path, sizeof(path), "%s/%s.version", o->state_dir, o->id) >= (int)sizeof(path)) return 0;
	f = fopen(path, "r");
	if(!f) return 0;
	if(!fgets(buf, sizeof(buf), f)) buf[0] = '\0';
	fclose(f);
	errno = 0;
	v = strtoull(buf, &end, 10);
	if(errno || end == buf || (*end && *end != '\n')){
		fprintf(stderr, "[%s] ignoring %s: not a version number\n", o->id, path);
		return 0;
	}
	return (uint64_t)v;
}

/* Atomic replace: write .tmp, fsync, rename, fsync the directory. */
static void version_store(const struct sim_opts *o, uint64_t v)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8], buf[32];
	int fd, len, dfd;

	if(!o->state_dir) return;
	if(snprintf(path, sizeof(path), "%s/%s.version", o->state_dir, o->id) >= (int)sizeof(path)) return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", v);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if(fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) != 0){
		fprintf(stderr, "[%s] cannot write %s: %s\n", o->id, tmp, strerror(errno));
		if(fd >= 0) close(fd);
		return;
	}
	close(fd);
	if(rename(tmp, path) != 0){
		fprintf(stderr, "[%s] cannot rename %s: %s\n", o->id, tmp, strerror(errno));
		return;
	}
	dfd = open(o->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(dfd >= 0){
		fsync(dfd);
		close(dfd);
	}
}

/* Caller holds s->lock. Versions only move forward. */
static void applied_version_advance(struct sim *s, uint64_t v)
{
	if(s->apply_pending > 0 || v <= s->applied_version) return;
	s->applied_version = v;
	version_store(&s->o, v);
}

/* ================================================================
 * Shadow JSON: local reported state and delta application
 * ================================================================ */

/* Merge patch into target with the plugin's rules: null deletes, objects
 * merge key by key, anything else replaces. */
static void json_merge(cJSON *target, const cJSON *patch)
{
	const cJSON *p;

	cJSON_ArrayForEach(p, patch){
		cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, p->string);
		if(cJSON_IsNull(p)){
			cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
		}else if(cJSON_IsObject(p) && cJSON_IsObject(cur)){
			json_merge(cur, p);
		}else{
			cJSON *copy = cJSON_Duplicate(p, 1);
			if(!copy) continue;
			if(cur) cJSON_ReplaceItemInObjectCaseSensitive(target, p->string, copy);
			else cJSON_AddItemToObject(target, p->string, copy);
		}
	}
}

/* The part of desired (a delta) that have is missing or holds differently,
 * as a new object; NULL if have already contains all of it. */
static cJSON *json_missing(const cJSON *want, const cJSON *have)
{
	cJSON *out = NULL;
	const cJSON *w;

	cJSON_ArrayForEach(w, want){
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(have, w->string);
		cJSON *part;

		if(cJSON_IsObject(w) && cJSON_IsObject(h)){
			part = json_missing(w, h);
		}else if(h && cJSON_Compare(w, h, true)){
			part = NULL;
		}else{
			part = cJSON_Duplicate(w, 1);
		}
		if(!part) continue;
		if(!out && !(out = cJSON_CreateObject())){
			cJSON_Delete(part);
			return NULL;
		}
		cJSON_AddItemToObject(out, w->string, part);
	}
	return out;
}

/* Everything this device sends is QoS 1, so the PUBACK count tells when a
 * clean stop has nothing left in flight. */
static int publish_pb(struct sim *s, const char *suffix, const ProtobufCMessage *m)
{
	char topic[MAX_TOPIC_BYTES + 32];
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;
	int rc, mid = 0;

	snprintf(topic, sizeof(topic), "%s%s", s->topic_base, suffix);
	buf = fm_malloc(len ? len : 1);
	if(!buf) return MOSQ_ERR_NOMEM;
	protobuf_c_message_pack(m, buf);
	/* Count before sending: the PUBACK may beat mosquitto_publish_v5's return. */
	pthread_mutex_lock(&s->lock);
	s->qos1_pending++;
	pthread_mutex_unlock(&s->lock);
	rc = mosquitto_publish_v5(s->mosq, &mid, topic, (int)len, buf, 1, false, NULL);
	fm_free(buf);
	if(rc != MOSQ_ERR_SUCCESS){
		pthread_mutex_lock(&s->lock);
		if(s->qos1_pending > 0) s->qos1_pending--;
		pthread_mutex_unlock(&s->lock);
		if(rc != MOSQ_ERR_NO_CONN){
			fprintf(stderr, "[%s] cannot publish %s: %s\n", s->o.id, topic, mosquitto_strerror(rc));
		}
	}
	return rc;
}

static void send_report(struct sim *s, const char *token, const char *reported_json)
{
	Fleetmq__V1__ShadowUpdateRequest req = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;

	req.client_token = (char *)token;
	req.reported_json = (char *)reported_json;
	publish_pb(s, "shadow/update", &req.base);
}

/*
 * Apply desired keys (a delta object): report back whatever this session has
 * not reported yet. `from` names the source for the log line.
 */
static void apply_desired(struct sim *s, const cJSON *delta, uint64_t version, const char *from)
{
	cJSON *todo;
	char *todo_s = NULL, *delta_s = NULL;
	char token[32];

	pthread_mutex_lock(&s->lock);
	todo = json_missing(delta, s->reported);
	if(todo){
		json_merge(s->reported, todo);
		snprintf(token, sizeof(token), "a%" PRIu64, ++s->apply_seq);
		s->apply_pending++;
	}
	pthread_mutex_unlock(&s->lock);
	if(!todo) return;   /* already reported in this session, waiting for the plugin */

	todo_s = cJSON_PrintUnformatted(todo);
	delta_s = cJSON_PrintUnformatted(delta);
	if(todo_s){
		send_report(s, token, todo_s);
		printf("[%s] applied desired %s (shadow v%" PRIu64 ", %s)\n", s->o.id,
				delta_s ? delta_s : todo_s, version, from);
	}
	cJSON_free(todo_s);
	cJSON_free(delta_s);
	cJSON_Delete(todo);
}

/* ================================================================
 * Device messages
 * ================================================================ */

static void send_hello(struct sim *s)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	Fleetmq__V1__Software fw = FLEETMQ__V1__SOFTWARE__INIT;
	Fleetmq__V1__Software *sw[1] = { &fw };
	uint64_t version;

	pthread_mutex_lock(&s->lock);
	version = s->applied_version;
	pthread_mutex_unlock(&s->lock);

	fw.name = (char *)"firmware";
	fw.version = (char *)FIRMWARE_VERSION;
	h.agent_version = (char *)AGENT_VERSION;
	h.device_type = (char *)s->o.device_type;
	h.hw_revision = (char *)s->o.hw_revision;
	h.n_software = 1;
	h.software = sw;
	h.shadow_version = version;
	h.sent_at_ms = now_ms();
	if(publish_pb(s, "hello", &h.base) == MOSQ_ERR_SUCCESS){
		printf("[%s] hello sent (type %s, last applied shadow v%" PRIu64 ")\n", s->o.id, s->o.device_type, version);
	}
}

static void send_periodic(struct sim *s)
{
	Fleetmq__V1__TelemetryBatch batch = FLEETMQ__V1__TELEMETRY_BATCH__INIT;
	Fleetmq__V1__Metric m_temp = FLEETMQ__V1__METRIC__INIT, m_up = FLEETMQ__V1__METRIC__INIT;
	Fleetmq__V1__Metric *metrics[2] = { &m_temp, &m_up };
	uint64_t uptime_s = (mono_ms() - s->started_mono_ms) / 1000u;
	double temperature;
	char json[128], token[32];
	cJSON *patch;

	/* random walk between 18.0 and 26.0 degrees */
	s->temperature_dc += (rand() % 5) - 2;
	if(s->temperature_dc < 180) s->temperature_dc = 180;
	if(s->temperature_dc > 260) s->temperature_dc = 260;
	temperature = s->temperature_dc / 10.0;

	snprintf(json, sizeof(json), "{\"temperature\":%.1f,\"uptime_s\":%" PRIu64 "}", temperature, uptime_s);
	patch = cJSON_Parse(json);
	pthread_mutex_lock(&s->lock);
	if(patch) json_merge(s->reported, patch);
	snprintf(token, sizeof(token), "r%" PRIu64, ++s->report_seq);
	pthread_mutex_unlock(&s->lock);
	cJSON_Delete(patch);
	send_report(s, token, json);

	m_temp.name = (char *)"sys.temperature_c";
	m_temp.value = temperature;
	m_up.name = (char *)"sys.uptime_s";
	m_up.value = (double)uptime_s;
	batch.sequence = ++s->telemetry_seq;
	batch.timestamp_ms = now_ms();
	batch.n_metrics = 2;
	batch.metrics = metrics;
	publish_pb(s, "telemetry", &batch.base);
}

static void on_hello_accepted(struct sim *s, const struct mosquitto_message *msg)
{
	Fleetmq__V1__HelloAccepted *a = fleetmq__v1__hello_accepted__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	const char *sync;

	if(!a) return;
	switch(a->shadow_sync){
		case FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_DELTA: sync = "a delta follows"; break;
		case FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_FULL: sync = "the full document follows"; break;
		default: sync = "up to date"; break;
	}
	printf("[%s] hello accepted: plugin holds shadow v%" PRIu64 ", %s\n", s->o.id, a->shadow_version, sync);
	if(a->shadow_sync == FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE){
		pthread_mutex_lock(&s->lock);
		applied_version_advance(s, a->shadow_version);
		pthread_mutex_unlock(&s->lock);
	}
	fleetmq__v1__hello_accepted__free_unpacked(a, NULL);
}

static void on_delta(struct sim *s, const struct mosquitto_message *msg)
{
	Fleetmq__V1__ShadowDelta *d = fleetmq__v1__shadow_delta__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	cJSON *delta;

	if(!d){
		fprintf(stderr, "[%s] ignoring undecodable ShadowDelta on %s\n", s->o.id, msg->topic);
		return;
	}
	delta = cJSON_Parse(d->delta_json);
	if(cJSON_IsObject(delta)){
		apply_desired(s, delta, d->version, "delta");
	}else{
		fprintf(stderr, "[%s] ignoring ShadowDelta v%" PRIu64 ": delta_json is not a JSON object\n", s->o.id, d->version);
	}
	cJSON_Delete(delta);
	fleetmq__v1__shadow_delta__free_unpacked(d, NULL);
}

/* Full document: sent after a Hello (empty token) and as the answer to any
 * shadow/get of this device (an operator's too, since we see the topic). */
static void on_document(struct sim *s, const struct mosquitto_message *msg)
{
	Fleetmq__V1__ShadowDocument *doc = fleetmq__v1__shadow_document__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	cJSON *state, *delta;

	if(!doc){
		fprintf(stderr, "[%s] ignoring undecodable ShadowDocument on %s\n", s->o.id, msg->topic);
		return;
	}
	state = cJSON_Parse(doc->state_json);
	delta = cJSON_GetObjectItemCaseSensitive(state, "delta");
	if(cJSON_IsObject(delta) && delta->child){
		apply_desired(s, delta, doc->version, doc->client_token[0] ? "document" : "full document after hello");
	}else if(cJSON_IsObject(state)){
		pthread_mutex_lock(&s->lock);
		applied_version_advance(s, doc->version);
		pthread_mutex_unlock(&s->lock);
	}
	cJSON_Delete(state);
	fleetmq__v1__shadow_document__free_unpacked(doc, NULL);
}

static void on_update_accepted(struct sim *s, const struct mosquitto_message *msg)
{
	Fleetmq__V1__ShadowUpdateAccepted *a = fleetmq__v1__shadow_update_accepted__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	const char *t;

	if(!a) return;
	t = a->client_token;
	pthread_mutex_lock(&s->lock);
	if(t[0] == 'a' && s->apply_pending > 0){
		s->apply_pending--;
		applied_version_advance(s, a->version);
	}else if(t[0] == 'r'){
		applied_version_advance(s, a->version);
	}
	/* other tokens: an operator's desired update, answered on the same topic */
	pthread_mutex_unlock(&s->lock);
	fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
}

static void on_rejected(struct sim *s, const struct mosquitto_message *msg, const char *what)
{
	Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
	const char *t;

	if(!r) return;
	t = r->client_token;
	if(!strcmp(what, "shadow/update") && t[0] != 'a' && t[0] != 'r'){
		goto cleanup;   /* an operator's request, not ours */
	}
	if(!strcmp(what, "shadow/get")){
		goto cleanup;   /* we never send shadow/get: someone else's */
	}
	fprintf(stderr, "[%s] %s rejected (token '%s'): %s: %s\n", s->o.id, what, t,
			fleetmq_strerror((int)r->code), r->reason);
	if(t[0] == 'a'){
		pthread_mutex_lock(&s->lock);
		if(s->apply_pending > 0) s->apply_pending--;
		/* Forget what we reported so the next delta is applied again. */
		cJSON_Delete(s->reported);
		s->reported = cJSON_CreateObject();
		pthread_mutex_unlock(&s->lock);
	}
cleanup:
	fleetmq__v1__rejection__free_unpacked(r, NULL);
}

/* ================================================================
 * libmosquitto callbacks (network thread)
 * ================================================================ */

static void cb_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	struct sim *s = obj;
	char filter[MAX_TOPIC_BYTES + 2];
	int src;

	if(rc != 0){
		fprintf(stderr, "[%s] broker refused the connection: %s\n", s->o.id, mosquitto_reason_string(rc));
		return;
	}
	printf("[%s] connected to %s:%d (session %s)\n", s->o.id, s->o.host, s->o.port,
			(flags & 1) ? "resumed" : "new");
	pthread_mutex_lock(&s->lock);
	s->connected = true;
	/* A new connection starts a new resync: the Hello below decides what the
	 * plugin sends; report whatever it asks for, even if reported before. */
	cJSON_Delete(s->reported);
	s->reported = cJSON_CreateObject();
	s->apply_pending = 0;
	s->qos1_pending = 0;
	pthread_mutex_unlock(&s->lock);

	snprintf(filter, sizeof(filter), "%s#", s->topic_base);
	src = mosquitto_subscribe_v5(mosq, NULL, filter, 1, MQTT_SUB_OPT_NO_LOCAL, NULL);
	if(src != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "[%s] cannot subscribe to %s: %s\n", s->o.id, filter, mosquitto_strerror(src));
	}
	send_hello(s);
}

static void cb_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	struct sim *s = obj;
	bool was;

	pthread_mutex_lock(&s->lock);
	was = s->connected;
	s->connected = false;
	pthread_mutex_unlock(&s->lock);
	if(rc == 0) return;   /* our own DISCONNECT */
	if(was){
		if(rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_KEEPALIVE){
			fprintf(stderr, "[%s] connection lost (%s); reconnecting\n", s->o.id, mosquitto_strerror(rc));
		}else{
			fprintf(stderr, "[%s] disconnected by the broker (%s); reconnecting\n", s->o.id, mosquitto_reason_string(rc));
		}
	}
}

static void cb_subscribe(struct mosquitto *mosq, void *obj, int mid, int qos_count, const int *granted_qos,
		const mosquitto_property *props)
{
	struct sim *s = obj;
	int i;

	for(i = 0; i < qos_count; i++){
		if(granted_qos[i] >= 0x80){
			fprintf(stderr, "[%s] subscription to %s# refused: %s (client id and username must both be the device id)\n",
					s->o.id, s->topic_base, mosquitto_reason_string(granted_qos[i]));
		}
	}
}

static void cb_publish(struct mosquitto *mosq, void *obj, int mid, int reason_code, const mosquitto_property *props)
{
	struct sim *s = obj;

	/* PUBACK (every publish is QoS 1). Clamped: messages resent after a
	 * reconnect were counted in the previous connection. */
	pthread_mutex_lock(&s->lock);
	if(s->qos1_pending > 0) s->qos1_pending--;
	pthread_mutex_unlock(&s->lock);
	if(reason_code >= 0x80){
		fprintf(stderr, "[%s] broker refused a publish: %s\n", s->o.id, mosquitto_reason_string(reason_code));
	}
}

static void cb_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct sim *s = obj;
	size_t blen = strlen(s->topic_base);
	const char *rest;

	if(strncmp(msg->topic, s->topic_base, blen) != 0) return;
	rest = msg->topic + blen;

	if(!strcmp(rest, "hello/accepted")){
		on_hello_accepted(s, msg);
	}else if(!strcmp(rest, "hello/rejected")){
		on_rejected(s, msg, "hello");
	}else if(!strcmp(rest, "shadow/update/delta")){
		on_delta(s, msg);
	}else if(!strcmp(rest, "shadow/get/accepted")){
		on_document(s, msg);
	}else if(!strcmp(rest, "shadow/update/accepted")){
		on_update_accepted(s, msg);
	}else if(!strcmp(rest, "shadow/update/rejected")){
		on_rejected(s, msg, "shadow/update");
	}else if(!strcmp(rest, "shadow/get/rejected")){
		on_rejected(s, msg, "shadow/get");
	}else if(!strcmp(rest, "telemetry/rejected")){
		on_rejected(s, msg, "telemetry");
	}
	/* presence (retained), requests of operators, jobs: not for this simulator */
}

/* ================================================================
 * Main
 * ================================================================ */

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fleetmq-sim --id ID [options]\n"
		"\n"
		"A simulated fleetmq device: says hello, reports state and telemetry every\n"
		"interval, and applies desired shadow state pushed by the broker plugin.\n"
		"\n"
		"options:\n"
		"  --host HOST          broker address (default 127.0.0.1)\n"
		"  --port N             broker port (default 1883)\n"
		"  --id ID              device id; also the MQTT client id and username (required)\n"
		"  --type TYPE          device type sent in hello (default sensor-v1)\n"
		"  --hw REV             hardware revision sent in hello (default rev-a)\n"
		"  --interval-ms N      report and telemetry period (default 1000)\n"
		"  --state-dir DIR      keep the last applied shadow version in DIR/ID.version\n"
		"                       (default: in memory only)\n"
		"  --count-limit N      stop cleanly after N periodic reports (default 0 = never)\n"
		"  --prefix P           fleet topic prefix (default fleet)\n"
		"  -h, --help           this help\n"
		"\n"
		"Stops with a clean DISCONNECT on SIGINT or SIGTERM. Exit status: 0 stopped\n"
		"cleanly, 2 usage error, 3 setup failure.\n");
}

static int parse_args(int argc, char **argv, struct sim_opts *o)
{
	static const struct option longopts[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "id", required_argument, NULL, 'i' },
		{ "type", required_argument, NULL, 't' },
		{ "hw", required_argument, NULL, 'w' },
		{ "interval-ms", required_argument, NULL, 'n' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "count-limit", required_argument, NULL, 'c' },
		{ "prefix", required_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	long v;
	int c;

	o->host = "127.0.0.1";
	o->port = 1883;
	o->device_type = "sensor-v1";
	o->hw_revision = "rev-a";
	o->prefix = "fleet";
	o->interval_ms = 1000;
	opterr = 0;
	while((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1){
		switch(c){
			case 'H': o->host = optarg; break;
			case 'p':
				if(!parse_long(optarg, 1, 65535, &v)){
					fprintf(stderr, "fleetmq-sim: --port: '%s' is not a port number (1..65535)\n", optarg);
					return EXIT_USAGE;
				}
				o->port = (int)v;
				break;
			case 'i': o->id = optarg; break;
			case 't': o->device_type = optarg; break;
			case 'w': o->hw_revision = optarg; break;
			case 'n':
				if(!parse_long(optarg, 10, 3600000, &o->interval_ms)){
					fprintf(stderr, "fleetmq-sim: --interval-ms: '%s' must be 10..3600000\n", optarg);
					return EXIT_USAGE;
				}
				break;
			case 's': o->state_dir = optarg; break;
			case 'c':
				if(!parse_long(optarg, 0, LONG_MAX, &o->count_limit)){
					fprintf(stderr, "fleetmq-sim: --count-limit: '%s' is not a count\n", optarg);
					return EXIT_USAGE;
				}
				break;
			case 'P': o->prefix = optarg; break;
			case 'h': usage(stdout); return -1;
			default:
				fprintf(stderr, "fleetmq-sim: unknown or incomplete option '%s'\n", argv[optind - 1]);
				usage(stderr);
				return EXIT_USAGE;
		}
	}
	if(optind < argc){
		fprintf(stderr, "fleetmq-sim: unexpected argument '%s'\n", argv[optind]);
		return EXIT_USAGE;
	}
	if(!o->id){
		fprintf(stderr, "fleetmq-sim: --id is required\n");
		usage(stderr);
		return EXIT_USAGE;
	}
	if(!id_valid(o->id)){
		fprintf(stderr, "fleetmq-sim: --id: '%s' must be 1..128 bytes without '/', '+', '#' or control characters\n", o->id);
		return EXIT_USAGE;
	}
	if(!o->prefix[0] || strpbrk(o->prefix, "/+#")){
		fprintf(stderr, "fleetmq-sim: --prefix: '%s' must be one topic level\n", o->prefix);
		return EXIT_USAGE;
	}
	if(strlen(o->device_type) > 128 || strlen(o->hw_revision) > 128){
		fprintf(stderr, "fleetmq-sim: --type and --hw are limited to 128 bytes\n");
		return EXIT_USAGE;
	}
	if(o->state_dir && access(o->state_dir, W_OK) != 0){
		fprintf(stderr, "fleetmq-sim: --state-dir %s: %s\n", o->state_dir, strerror(errno));
		return EXIT_USAGE;
	}
	return 0;
}

/* Wait up to timeout_ms for SIGINT/SIGTERM. Returns the signal or 0. */
static int wait_signal(const sigset_t *set, uint64_t timeout_ms)
{
	struct timespec ts;
	int sig;

	ts.tv_sec = (time_t)(timeout_ms / 1000u);
	ts.tv_nsec = (long)(timeout_ms % 1000u) * 1000000L;
	do{
		sig = sigtimedwait(set, NULL, &ts);
	}while(sig < 0 && errno == EINTR);
	return sig > 0 ? sig : 0;
}

static void sim_configure(struct sim *s)
{
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	mosquitto_username_pw_set(s->mosq, s->o.id, NULL);
	mosquitto_reconnect_delay_set(s->mosq, RECONNECT_MIN_S, RECONNECT_MAX_S, true);
	mosquitto_connect_v5_callback_set(s->mosq, cb_connect);
	mosquitto_disconnect_v5_callback_set(s->mosq, cb_disconnect);
	mosquitto_subscribe_v5_callback_set(s->mosq, cb_subscribe);
	mosquitto_publish_v5_callback_set(s->mosq, cb_publish);
	mosquitto_message_v5_callback_set(s->mosq, cb_message);
}

/*
 * First connection, then the network thread. libmosquitto's thread only
 * reconnects once a connection has been made (after a failed first
 * mosquitto_connect it waits forever), so the first one is retried here,
 * with the same backoff, until it works or a stop signal arrives.
 * Returns 0, a signal number, or EXIT_FAILURE_RUNTIME (as a negative number).
 */
static int sim_setup(struct sim *s, const sigset_t *set)
{
	mosquitto_property *props = NULL;
	unsigned delay_s = RECONNECT_MIN_S;
	bool told = false;
	int rc, sig;

	s->mosq = mosquitto_new(s->o.id, false, s);   /* clean start false */
	if(!s->mosq){
		fprintf(stderr, "[%s] cannot create the MQTT client: %s\n", s->o.id, strerror(errno));
		return -EXIT_FAILURE_RUNTIME;
	}
	sim_configure(s);
	/* libmosquitto keeps these CONNECT properties for every reconnect. */
	mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, SESSION_EXPIRY_S);
	for(;;){
		rc = mosquitto_connect_bind_v5(s->mosq, s->o.host, s->o.port, KEEPALIVE_S, NULL, props);
		if(rc == MOSQ_ERR_SUCCESS) break;
		if(rc != MOSQ_ERR_ERRNO && rc != MOSQ_ERR_EAI && rc != MOSQ_ERR_NO_CONN && rc != MOSQ_ERR_CONN_LOST){
			fprintf(stderr, "[%s] cannot connect to %s:%d: %s\n", s->o.id, s->o.host, s->o.port, mosquitto_strerror(rc));
			mosquitto_property_free_all(&props);
			return -EXIT_FAILURE_RUNTIME;
		}
		if(!told){
			fprintf(stderr, "[%s] cannot connect to %s:%d yet (%s); retrying\n", s->o.id, s->o.host, s->o.port,
					rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
			told = true;
		}
		sig = wait_signal(set, (uint64_t)delay_s * 1000u);
		if(sig){
			mosquitto_property_free_all(&props);
			return sig;
		}
		delay_s = delay_s * 2 > RECONNECT_MAX_S ? RECONNECT_MAX_S : delay_s * 2;
	}
	mosquitto_property_free_all(&props);
	rc = mosquitto_loop_start(s->mosq);
	if(rc != MOSQ_ERR_SUCCESS){
		fprintf(stderr, "[%s] cannot start the network thread: %s\n", s->o.id, mosquitto_strerror(rc));
		return -EXIT_FAILURE_RUNTIME;
	}
	return 0;
}

static void sim_stop(struct sim *s, const sigset_t *set)
{
	uint64_t deadline = mono_ms() + DRAIN_TIMEOUT_MS;
	bool connected;
	unsigned pending;

	for(;;){
		pthread_mutex_lock(&s->lock);
		connected = s->connected;
		pending = s->qos1_pending;
		pthread_mutex_unlock(&s->lock);
		if(!connected || pending == 0 || mono_ms() >= deadline) break;
		if(wait_signal(set, 20)) break;   /* a second signal: stop now */
	}
	mosquitto_disconnect_v5(s->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
	mosquitto_loop_stop(s->mosq, !connected);
}

int main(int argc, char **argv)
{
	struct sim s;
	sigset_t set;
	uint64_t next;
	long reports = 0;
	int rc, sig = 0;

	memset(&s, 0, sizeof(s));
	setvbuf(stdout, NULL, _IOLBF, 0);
	rc = parse_args(argc, argv, &s.o);
	if(rc) return rc < 0 ? 0 : rc;
	if(snprintf(s.topic_base, sizeof(s.topic_base), "%s/%s/", s.o.prefix, s.o.id) >= (int)sizeof(s.topic_base)){
		fprintf(stderr, "fleetmq-sim: prefix and id too long\n");
		return EXIT_USAGE;
	}

	/* Block the stop signals in every thread (the network thread inherits
	 * the mask); the main thread takes them with sigtimedwait. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	pthread_mutex_init(&s.lock, NULL);
	s.reported = cJSON_CreateObject();
	s.applied_version = version_load(&s.o);
	s.started_mono_ms = mono_ms();
	srand((unsigned)(now_ms() ^ (uint64_t)getpid()));
	s.temperature_dc = 200 + rand() % 30;

	printf("[%s] simulated %s device, reporting every %ld ms to %s:%d\n", s.o.id, s.o.device_type,
			s.o.interval_ms, s.o.host, s.o.port);
	mosquitto_lib_init();
	rc = sim_setup(&s, &set);
	if(rc < 0){
		rc = -rc;
		goto cleanup;
	}
	if(rc > 0){
		printf("[%s] %s received before the first connection; stopping\n", s.o.id, rc == SIGINT ? "SIGINT" : "SIGTERM");
		rc = 0;
		goto cleanup;
	}

	next = mono_ms() + (uint64_t)s.o.interval_ms;
	for(;;){
		uint64_t now = mono_ms();
		bool connected;

		if(now < next){
			sig = wait_signal(&set, next - now);
			if(sig) break;
			continue;
		}
		next += (uint64_t)s.o.interval_ms;
		if(next < now) next = now + (uint64_t)s.o.interval_ms;   /* fell behind: do not burst */
		pthread_mutex_lock(&s.lock);
		connected = s.connected;
		pthread_mutex_unlock(&s.lock);
		if(!connected) continue;
		send_periodic(&s);
		if(s.o.count_limit > 0 && ++reports >= s.o.count_limit){
			printf("[%s] sent %ld reports (--count-limit); stopping\n", s.o.id, reports);
			break;
		}
	}
	if(sig) printf("[%s] %s received; disconnecting\n", s.o.id, sig == SIGINT ? "SIGINT" : "SIGTERM");
	sim_stop(&s, &set);
	rc = 0;

cleanup:
	if(s.mosq) mosquitto_destroy(s.mosq);
	mosquitto_lib_cleanup();
	cJSON_Delete(s.reported);
	pthread_mutex_destroy(&s.lock);
	return rc;
}
