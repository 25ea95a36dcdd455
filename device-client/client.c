/*
 * client.c - libfleetmq-client core: options, lifecycle, the connection
 * state machine, message dispatch, the event and timer threads.
 *
 * Design. Paho MQTTAsync owns the socket and calls us on its own threads.
 * Those callbacks only decode, update state under c->mu and queue two kinds
 * of work: publishes (struct fm_outq, sent after unlocking: Paho is never
 * called with mu held) and application events (struct fm_event, run by the
 * event thread, so application code never runs on a Paho thread and may
 * block without stalling the network). The timer thread schedules
 * reconnects (exponential backoff with "equal jitter"; Paho's
 * automaticReconnect is off), abandons attempts that do not complete
 * (CONNECT + SUBSCRIBE + Hello) in time, and drives periodic work
 * (telemetry interval, retransmission of unanswered requests).
 *
 * Connection sequence (PROTOCOL.md section 3): CONNECT (MQTT 5, Clean Start
 * 0, Session Expiry) -> SUBSCRIBE <prefix>/<id>/# QoS 1 No Local -> Hello ->
 * hello/accepted = ONLINE: shadow resync, queued reported patches, outbox
 * head, then normal operation.
 *
 * Must never: call an application callback (other than on_log) on a Paho
 * thread or with mu held; call Paho with mu held; drop a job report.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "client_internal.h"

_Static_assert((int)FLEETMQ_CLIENT_ERR_UNAVAILABLE == (int)FLEETMQ_ERR_UNAVAILABLE, "wire codes match fleetmq_status.h");
_Static_assert((int)FLEETMQ_CLIENT_ERR_CONFIG == (int)FLEETMQ_ERR_CONFIG, "local codes match fleetmq_status.h");
_Static_assert((int)FLEETMQ_CLIENT_EXEC_REMOVED == (int)FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_REMOVED, "exec status = proto");
_Static_assert((int)FLEETMQ_CLIENT_JOB_CUSTOM == (int)FLEETMQ__V1__JOB_TYPE__JOB_TYPE_CUSTOM, "job type = proto");

/* ---------------------------------------------------------------- status */

const char *fleetmq_client_strerror(int status)
{
	switch(status){
		case FLEETMQ_CLIENT_ERR_INVALID: return "invalid argument";
		case FLEETMQ_CLIENT_ERR_STATE: return "not allowed in the current state";
		case FLEETMQ_CLIENT_ERR_DISCONNECTED: return "not connected";
		case FLEETMQ_CLIENT_ERR_TIMEOUT: return "timed out";
		case FLEETMQ_CLIENT_ERR_MQTT: return "MQTT library error";
		case FLEETMQ_CLIENT_ERR_OUTBOX_FULL: return "job report outbox full";
		case FLEETMQ_CLIENT_ERR_PROTOCOL: return "protocol error";
		case FLEETMQ_CLIENT_ERR_STOPPED: return "client stopped";
		default: return fleetmq_strerror(status);
	}
}

/* ---------------------------------------------------------------- small helpers */

void client__log(struct fleetmq_client *c, enum fleetmq_client_log_level level, const char *fmt, ...)
{
	static const char *names[] = { "error", "warning", "info", "debug" };
	char msg[1024];
	va_list ap;

	if(level > c->cb.log_level) return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if(c->cb.on_log){
		c->cb.on_log(level, msg, c->cb.userdata);
	}else{
		fprintf(stderr, "fleetmq-client[%s] %s: %s\n", c->device_id ? c->device_id : "?",
				names[level <= FLEETMQ_CLIENT_LOG_DEBUG ? level : FLEETMQ_CLIENT_LOG_DEBUG], msg);
	}
}

uint64_t client__mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t client__wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint32_t random_u32(void)
{
	uint32_t r = 0;

	if(getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)){
		r = (uint32_t)client__mono_ms() ^ (uint32_t)getpid() ^ (uint32_t)(uintptr_t)&r;
		r ^= (uint32_t)rand();
	}
	return r;
}

void client__token_locked(struct fleetmq_client *c, char letter, char *buf, size_t size)
{
	snprintf(buf, size, "%c%s-%" PRIu64, letter, c->token_prefix, ++c->token_counter);
}

bool client__valid_id(const char *s)
{
	size_t n;
	const unsigned char *p;

	if(!s) return false;
	n = strlen(s);
	if(n < 1 || n > FM_MAX_ID_BYTES) return false;
	for(p = (const unsigned char *)s; *p; p++){
		if(*p < 0x20 || *p == 0x7f || *p == '/' || *p == '+' || *p == '#') return false;
	}
	return true;
}

char *client__topic(struct fleetmq_client *c, const char *suffix)
{
	size_t n = c->topic_base_len + strlen(suffix) + 1;
	char *t = fm_malloc(n);

	if(t) snprintf(t, n, "%s%s", c->topic_base, suffix);
	return t;
}

int client__queue_pb(struct fleetmq_client *c, struct fm_outq *q, const char *suffix, const ProtobufCMessage *msg)
{
	struct fm_out *o = fm_calloc(1, sizeof(*o));
	size_t len = protobuf_c_message_get_packed_size(msg);

	if(!o) return FLEETMQ_CLIENT_ERR_NOMEM;
	o->topic = client__topic(c, suffix);
	o->payload = fm_malloc(len ? len : 1);
	if(!o->topic || !o->payload){
		fm_free(o->topic);
		fm_free(o->payload);
		fm_free(o);
		return FLEETMQ_CLIENT_ERR_NOMEM;
	}
	o->len = protobuf_c_message_pack(msg, o->payload);
	if(q->tail) q->tail->next = o;
	else q->head = o;
	q->tail = o;
	return FLEETMQ_CLIENT_OK;
}

void client__flush(struct fleetmq_client *c, struct fm_outq *q)
{
	struct fm_out *o, *n;

	for(o = q->head; o; o = n){
		MQTTAsync_message m = MQTTAsync_message_initializer;
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		int rc;

		n = o->next;
		m.payload = o->payload;
		m.payloadlen = (int)o->len;
		m.qos = 1;
		m.retained = 0;
		rc = MQTTAsync_sendMessage(c->mqtt, o->topic, &m, &ro);
		if(rc != MQTTASYNC_SUCCESS){
			client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "publish on %s not sent (paho rc %d); retried later", o->topic, rc);
		}
		fm_free(o->topic);
		fm_free(o->payload);
		fm_free(o);
	}
	q->head = q->tail = NULL;
	if(q->unsubscribe){
		/* The broker delivers to our session directly: the subscription only
		 * costs it memory. Best effort; a failure changes nothing. */
		MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
		char *filter = client__topic(c, "#");
		if(!filter || MQTTAsync_unsubscribe(c->mqtt, filter, &ro) != MQTTASYNC_SUCCESS){
			client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "unsubscribe not sent; the subscription stays");
		}
		fm_free(filter);
		q->unsubscribe = false;
	}
}

void client__kvlist_free(struct fm_kvlist *l)
{
	size_t i;

	for(i = 0; i < l->n; i++){
		fm_free(l->keys[i]);
		fm_free(l->values[i]);
	}
	fm_free(l->keys);
	fm_free(l->values);
	memset(l, 0, sizeof(*l));
}

int client__kvlist_copy(struct fm_kvlist *dst, const struct fleetmq_client_kv *src, size_t n)
{
	struct fm_kvlist l = {0};
	size_t i;

	if(n){
		l.keys = fm_calloc(n, sizeof(char *));
		l.values = fm_calloc(n, sizeof(char *));
		if(!l.keys || !l.values) goto fail;
		for(i = 0; i < n; i++){
			l.keys[i] = fm_strdup(src[i].key);
			l.values[i] = fm_strdup(src[i].value ? src[i].value : "");
			l.n = i + 1;
			if(!l.keys[i] || !l.values[i]) goto fail;
		}
	}
	*dst = l;
	return FLEETMQ_CLIENT_OK;

fail:
	client__kvlist_free(&l);
	return FLEETMQ_CLIENT_ERR_NOMEM;
}

static int check_kv(const struct fleetmq_client_kv *kv, size_t n, size_t max_n, size_t max_key, size_t max_value)
{
	size_t i;

	if(n > max_n || (n && !kv)) return FLEETMQ_CLIENT_ERR_INVALID;
	for(i = 0; i < n; i++){
		if(!kv[i].key || !kv[i].key[0] || strlen(kv[i].key) > max_key) return FLEETMQ_CLIENT_ERR_INVALID;
		if(kv[i].value && strlen(kv[i].value) > max_value) return FLEETMQ_CLIENT_ERR_INVALID;
	}
	return FLEETMQ_CLIENT_OK;
}

/* ---------------------------------------------------------------- events */

struct fm_event *client__event_new(enum fm_event_type type)
{
	struct fm_event *ev = fm_calloc(1, sizeof(*ev));
	if(ev) ev->type = type;
	return ev;
}

void client__event_free(struct fm_event *ev)
{
	if(!ev) return;
	fm_free(ev->text);
	fm_free(ev->text2);
	if(ev->exec) fleetmq__v1__job_execution__free_unpacked(ev->exec, NULL);
	fm_free(ev->handler_name);
	fm_free(ev->job_id);
	fm_free(ev);
}

void client__event_locked(struct fleetmq_client *c, struct fm_event *ev)
{
	if(!ev) return;
	if(c->stopping){
		client__event_free(ev);
		return;
	}
	ev->next = NULL;
	if(c->ev_tail) c->ev_tail->next = ev;
	else c->ev_head = ev;
	c->ev_tail = ev;
	pthread_cond_signal(&c->ev_cond);
}

bool client__on_event_thread(struct fleetmq_client *c)
{
	return c->threads_started && pthread_equal(pthread_self(), c->event_thread);
}

static void run_event(struct fleetmq_client *c, struct fm_event *ev)
{
	void *ud = c->cb.userdata;
	int rc;

	switch(ev->type){
		case FM_EV_CONNECTION:
			ev->conn.reason = ev->text ? ev->text : "";
			if(c->cb.on_connection) c->cb.on_connection(c, &ev->conn, ud);
			break;
		case FM_EV_DELTA:
			rc = c->cb.on_delta ? c->cb.on_delta(c, ev->text ? ev->text : "{}", ev->version, ud) : 0;
			if(rc == 0) shadow__persist_version(c, ev->version);
			else client__log(c, FLEETMQ_CLIENT_LOG_INFO, "delta of version %" PRIu64 " not applied (%d)", ev->version, rc);
			break;
		case FM_EV_DOCUMENT:
			if(c->cb.on_document) c->cb.on_document(c, ev->text ? ev->text : "{}", ev->version, ud);
			rc = 0;
			if(ev->text2 && c->cb.on_delta) rc = c->cb.on_delta(c, ev->text2, ev->version, ud);
			if(rc == 0) shadow__persist_version(c, ev->version);
			break;
		case FM_EV_PERSIST_VERSION:
			shadow__persist_version(c, ev->version);
			break;
		case FM_EV_FEATURE:
			if(c->cb.on_feature) c->cb.on_feature(c, ev->text, ev->enabled, ud);
			break;
		case FM_EV_JOB: {
			struct fleetmq_client_job j;
			Fleetmq__V1__JobExecution *x = ev->exec;

			memset(&j, 0, sizeof(j));
			j.job_id = x->job_id;
			j.type = (enum fleetmq_client_job_type)x->type;
			j.handler = ev->handler_name ? ev->handler_name : "";
			j.document_json = x->document_json;
			j.status = (enum fleetmq_client_exec_status)x->status;
			j.version = x->version;
			j.attempt = x->attempt;
			j.progress_percent = x->progress_percent;
			j.step = x->step;
			j.timeout_ms = x->timeout_ms;
			j.queued_at_ms = x->queued_at_ms;
			j.started_at_ms = x->started_at_ms;
			rc = ev->handler(c, &j, ev->handler_ud);
			if(rc != FLEETMQ_CLIENT_OK) jobs__handler_refused(c, x->job_id, rc);
			break;
		}
		case FM_EV_JOB_CANCEL:
			if(c->cb.on_job_cancel){
				c->cb.on_job_cancel(c, ev->job_id, ev->attempt, (enum fleetmq_client_exec_status)ev->status, ud);
			}
			break;
		case FM_EV_REPORT_RESULT:
			ev->result.job_id = ev->job_id;
			ev->result.reason = ev->text ? ev->text : "";
			if(c->cb.on_job_report_result) c->cb.on_job_report_result(c, &ev->result, ud);
			break;
	}
}

static void *event_thread_main(void *arg)
{
	struct fleetmq_client *c = arg;
	struct fm_event *ev;

	pthread_mutex_lock(&c->mu);
	for(;;){
		while(!c->ev_head && !c->stopping) pthread_cond_wait(&c->ev_cond, &c->mu);
		if(c->stopping) break;
		ev = c->ev_head;
		c->ev_head = ev->next;
		if(!c->ev_head) c->ev_tail = NULL;
		pthread_mutex_unlock(&c->mu);
		run_event(c, ev);
		client__event_free(ev);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---------------------------------------------------------------- connection */

static uint32_t backoff_ms_locked(struct fleetmq_client *c)
{
	uint64_t d = (uint64_t)c->reconnect_min_ms;
	uint32_t i;

	for(i = 1; i < c->failures && d < (uint64_t)c->reconnect_max_ms; i++) d *= 2;
	if(d > (uint64_t)c->reconnect_max_ms) d = (uint64_t)c->reconnect_max_ms;
	/* equal jitter: [d/2, d] */
	return (uint32_t)(d / 2 + (d - d / 2 > 0 ? random_u32() % (uint32_t)(d - d / 2 + 1) : 0));
}

/* The current attempt or connection ended: back to IDLE, schedule the next
 * attempt, tell everybody. need_disconnect: the MQTT connection may still be
 * up and must be closed by the timer thread. */
static void fail_locked(struct fleetmq_client *c, enum fleetmq_client_conn_event type, int status,
		const char *reason, bool need_disconnect)
{
	struct fm_event *ev;
	uint32_t delay;
	bool was_online = c->state == FM_CONN_ONLINE;

	c->state = FM_CONN_IDLE;
	c->gen++;
	c->failures++;
	c->n_failures++;
	delay = backoff_ms_locked(c);
	c->reconnect_at_ms = client__mono_ms() + delay;
	if(need_disconnect) c->disconnect_requested = true;
	shadow__on_disconnect_locked(c);
	jobs__on_disconnect_locked(c);
	waiters__fail_all_locked(c, FLEETMQ_CLIENT_ERR_DISCONNECTED);
	client__log(c, was_online ? FLEETMQ_CLIENT_LOG_WARNING : FLEETMQ_CLIENT_LOG_INFO,
			"%s: %s; next attempt in %u ms", was_online ? "connection lost" : "connection attempt failed",
			reason, delay);
	ev = client__event_new(FM_EV_CONNECTION);
	if(ev){
		ev->conn.event = type;
		ev->conn.status = status;
		ev->conn.retry_in_ms = delay;
		ev->conn.attempt = c->failures;
		ev->text = fm_strdup(reason ? reason : "");
		client__event_locked(c, ev);
	}
	pthread_cond_broadcast(&c->cond);
	pthread_cond_signal(&c->timer_cond);
}

static struct fm_attempt_ctx *attempt_slot_locked(struct fleetmq_client *c)
{
	struct fm_attempt_ctx *s = &c->attempt_ctx[c->gen % FM_ATTEMPT_SLOTS];
	s->c = c;
	s->gen = c->gen;
	return s;
}

static bool attempt_current_locked(const struct fm_attempt_ctx *s)
{
	return s->gen == s->c->gen;
}

static void queue_hello_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	Fleetmq__V1__Software sw[FM_MAX_HELLO_LIST], *swp[FM_MAX_HELLO_LIST];
	Fleetmq__V1__Hello__AttributesEntry at[FM_MAX_HELLO_LIST], *atp[FM_MAX_HELLO_LIST];
	size_t i;

	h.agent_version = c->agent_version;
	h.device_type = c->device_type;
	h.hw_revision = c->hw_revision;
	client__token_locked(c, 'h', c->hello_token, sizeof(c->hello_token));
	h.client_token = c->hello_token;
	for(i = 0; i < c->software.n && i < FM_MAX_HELLO_LIST; i++){
		fleetmq__v1__software__init(&sw[i]);
		sw[i].name = c->software.keys[i];
		sw[i].version = c->software.values[i];
		swp[i] = &sw[i];
	}
	h.n_software = i;
	h.software = swp;
	for(i = 0; i < c->attributes.n && i < FM_MAX_HELLO_LIST; i++){
		fleetmq__v1__hello__attributes_entry__init(&at[i]);
		at[i].key = c->attributes.keys[i];
		at[i].value = c->attributes.values[i];
		atp[i] = &at[i];
	}
	h.n_attributes = i;
	h.attributes = atp;
	h.shadow_version = c->shadow_version;
	h.execution_in_progress = c->execution_in_progress;
	h.sent_at_ms = client__wall_ms();
	client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "hello: shadow_version %" PRIu64 ", execution_in_progress '%s'",
			c->shadow_version, c->execution_in_progress);
	client__queue_pb(c, q, "hello", &h.base);
}

static void on_subscribe_success(void *context, MQTTAsync_successData5 *resp)
{
	struct fm_attempt_ctx *s = context;
	struct fleetmq_client *c = s->c;
	struct fm_outq q = {0};
	int code = resp ? (int)resp->reasonCode : 0;

	pthread_mutex_lock(&c->mu);
	if(!attempt_current_locked(s) || c->state != FM_CONN_SUBSCRIBING){
		pthread_mutex_unlock(&c->mu);
		return;
	}
	if(code >= 0x80){
		char why[96];
		snprintf(why, sizeof(why), "subscription refused (reason code 0x%02x): wrong identity?", code);
		fail_locked(c, FLEETMQ_CLIENT_REFUSED, FLEETMQ_CLIENT_ERR_FORBIDDEN, why, true);
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->state = FM_CONN_HELLO;
	c->subscribed = true;
	queue_hello_locked(c, &q);
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);
}

static void on_subscribe_failure(void *context, MQTTAsync_failureData5 *resp)
{
	struct fm_attempt_ctx *s = context;
	struct fleetmq_client *c = s->c;
	char why[160];

	pthread_mutex_lock(&c->mu);
	if(attempt_current_locked(s) && c->state == FM_CONN_SUBSCRIBING){
		snprintf(why, sizeof(why), "subscribe failed (code %d, reason 0x%02x%s%s)", resp ? resp->code : 0,
				resp ? (int)resp->reasonCode : 0, resp && resp->message ? ": " : "",
				resp && resp->message ? resp->message : "");
		fail_locked(c, resp && resp->reasonCode >= 0x80 ? FLEETMQ_CLIENT_REFUSED : FLEETMQ_CLIENT_DISCONNECTED,
				FLEETMQ_CLIENT_ERR_MQTT, why, true);
	}
	pthread_mutex_unlock(&c->mu);
}

static void on_connect_success(void *context, MQTTAsync_successData5 *resp)
{
	struct fm_attempt_ctx *s = context;
	struct fleetmq_client *c = s->c;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	char *filter;
	int rc;

	pthread_mutex_lock(&c->mu);
	if(!attempt_current_locked(s) || c->state != FM_CONN_CONNECTING){
		/* a late CONNACK of an abandoned attempt: close it before the next one */
		if(c->state == FM_CONN_IDLE) c->disconnect_requested = true;
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->session_present = resp ? resp->alt.connect.sessionPresent != 0 : false;
	c->attempt_started_ms = client__mono_ms();
	c->subscribed = false;
	if(c->direct_delivery){
		/* The broker said last time that it sends to our session directly:
		 * no subscription needed. If that changed, the hello goes
		 * unanswered and the next attempt subscribes again. */
		struct fm_outq q = {0};
		c->state = FM_CONN_HELLO;
		/* a resumed session may still hold a subscription whose UNSUBSCRIBE
		 * was lost with the previous connection: drop it (cheap if none) */
		q.unsubscribe = c->session_present;
		queue_hello_locked(c, &q);
		pthread_mutex_unlock(&c->mu);
		client__flush(c, &q);
		return;
	}
	c->state = FM_CONN_SUBSCRIBING;
	pthread_mutex_unlock(&c->mu);

	filter = client__topic(c, "#");
	ro.onSuccess5 = on_subscribe_success;
	ro.onFailure5 = on_subscribe_failure;
	ro.context = s;
	ro.subscribeOptions.noLocal = 1;
	rc = filter ? MQTTAsync_subscribe(c->mqtt, filter, 1, &ro) : MQTTASYNC_FAILURE;
	fm_free(filter);
	if(rc != MQTTASYNC_SUCCESS){
		pthread_mutex_lock(&c->mu);
		if(attempt_current_locked(s)){
			fail_locked(c, FLEETMQ_CLIENT_DISCONNECTED, FLEETMQ_CLIENT_ERR_MQTT, "cannot subscribe", true);
		}
		pthread_mutex_unlock(&c->mu);
	}
}

static void on_connect_failure(void *context, MQTTAsync_failureData5 *resp)
{
	struct fm_attempt_ctx *s = context;
	struct fleetmq_client *c = s->c;
	char why[200];

	pthread_mutex_lock(&c->mu);
	if(attempt_current_locked(s) && c->state == FM_CONN_CONNECTING){
		snprintf(why, sizeof(why), "connect failed (code %d, reason 0x%02x%s%s)", resp ? resp->code : 0,
				resp ? (int)resp->reasonCode : 0, resp && resp->message ? ": " : "",
				resp && resp->message ? resp->message : "");
		fail_locked(c, resp && resp->reasonCode >= 0x80 ? FLEETMQ_CLIENT_REFUSED : FLEETMQ_CLIENT_DISCONNECTED,
				FLEETMQ_CLIENT_ERR_DISCONNECTED, why, false);
	}
	pthread_mutex_unlock(&c->mu);
}

static void on_connection_lost(void *context, char *cause)
{
	struct fleetmq_client *c = context;

	pthread_mutex_lock(&c->mu);
	if(c->state != FM_CONN_IDLE && !c->stopping){
		fail_locked(c, FLEETMQ_CLIENT_DISCONNECTED, FLEETMQ_CLIENT_ERR_DISCONNECTED,
				cause && cause[0] ? cause : "connection lost", false);
	}
	pthread_mutex_unlock(&c->mu);
}

/* hello/accepted or hello/rejected */
static void hello_message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len,
		struct fm_outq *q)
{
	struct fm_event *ev;

	if(!strcmp(rest, "hello/accepted")){
		Fleetmq__V1__HelloAccepted *ack = fleetmq__v1__hello_accepted__unpack(NULL, len, p);
		bool first = c->state == FM_CONN_HELLO;

		if(!ack){
			client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "undecodable hello/accepted ignored");
			return;
		}
		/* An answer to an earlier hello, still queued in a resumed session
		 * (a broker that does not echo the token sends none). */
		if(ack->client_token[0] && strcmp(ack->client_token, c->hello_token)){
			client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "stale hello/accepted (%s) ignored", ack->client_token);
			fleetmq__v1__hello_accepted__free_unpacked(ack, NULL);
			return;
		}
		if(c->state != FM_CONN_HELLO && c->state != FM_CONN_ONLINE){
			fleetmq__v1__hello_accepted__free_unpacked(ack, NULL);
			return;
		}
		if(first){
			c->state = FM_CONN_ONLINE;
			c->failures = 0;
			c->n_connects++;
			c->direct_delivery = ack->direct_delivery;
			if(ack->direct_delivery && c->subscribed){
				q->unsubscribe = true;
				c->subscribed = false;
			}
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "online (shadow %" PRIu64 "/%" PRIu64 ", sync %d, %u pending jobs, session %s)",
					c->shadow_version, ack->shadow_version, (int)ack->shadow_sync, ack->pending_jobs,
					c->session_present ? "resumed" : "new");
			ev = client__event_new(FM_EV_CONNECTION);
			if(ev){
				ev->conn.event = FLEETMQ_CLIENT_CONNECTED;
				ev->conn.shadow_version = ack->shadow_version;
				ev->conn.server_time_ms = ack->server_time_ms;
				ev->conn.pending_jobs = ack->pending_jobs;
				ev->conn.session_present = c->session_present;
				client__event_locked(c, ev);
			}
			pthread_cond_broadcast(&c->cond);
		}
		shadow__on_online_locked(c, ack, q);
		if(first) jobs__on_online_locked(c, q);
		fleetmq__v1__hello_accepted__free_unpacked(ack, NULL);
	}else if(!strcmp(rest, "hello/rejected")){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);
		char why[320];

		if(c->state != FM_CONN_HELLO || (r && r->client_token[0] && strcmp(r->client_token, c->hello_token))){
			/* not waiting, or the answer to an earlier hello */
			if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
			return;
		}
		snprintf(why, sizeof(why), "hello rejected: %s (%s)", r ? fleetmq_client_strerror((int)r->code) : "?",
				r && r->reason ? r->reason : "");
		fail_locked(c, FLEETMQ_CLIENT_REFUSED, r ? (int)r->code : FLEETMQ_CLIENT_ERR_PROTOCOL, why, true);
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
}

static int on_message(void *context, char *topic, int topic_len, MQTTAsync_message *m)
{
	struct fleetmq_client *c = context;
	struct fm_outq q = {0};
	char *t = NULL;
	const char *rest;
	const uint8_t *p = m->payload;
	size_t len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;

	if(topic_len > 0){
		t = fm_strndup(topic, (size_t)topic_len);
	}else{
		t = fm_strdup(topic);
	}
	if(!t || strncmp(t, c->topic_base, c->topic_base_len)) goto done;
	rest = t + c->topic_base_len;
	if(!p) p = (const uint8_t *)"";

	pthread_mutex_lock(&c->mu);
	if(c->stopping || c->state == FM_CONN_IDLE || c->state == FM_CONN_CONNECTING){
		/* nothing is expected before our subscription is active */
	}else if(!strncmp(rest, "hello/", 6)){
		hello_message_locked(c, rest, p, len, &q);
	}else if(!strncmp(rest, "shadow/", 7)){
		shadow__message_locked(c, rest, p, len, &q);
	}else if(!strncmp(rest, "jobs/", 5)){
		jobs__message_locked(c, rest, p, len, &q);
	}else if(!strncmp(rest, "artifacts/", 10)){
		artifact__message_locked(c, rest, p, len);
	}else if(!strncmp(rest, "telemetry/", 10)){
		telemetry__message_locked(c, rest, p, len);
	}
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);

done:
	fm_free(t);
	MQTTAsync_freeMessage(&m);
	MQTTAsync_free(topic);
	return 1;
}

/* Timer thread: start a connection attempt (mu NOT held). */
static void start_attempt(struct fleetmq_client *c, struct fm_attempt_ctx *s)
{
	MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer5;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	MQTTProperties props = MQTTProperties_initializer;
	MQTTProperty prop;
	int rc;

	memset(&prop, 0, sizeof(prop));
	prop.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
	prop.value.integer4 = c->session_expiry_s;
	MQTTProperties_add(&props, &prop);

	co.keepAliveInterval = c->keepalive_s;
	co.cleanstart = 0;
	co.connectProperties = &props;
	co.username = c->device_id;
	co.password = c->password;
	co.connectTimeout = (c->connect_timeout_ms + 999) / 1000;
	co.automaticReconnect = 0;
	co.onSuccess5 = on_connect_success;
	co.onFailure5 = on_connect_failure;
	co.context = s;
	if(c->tls){
		ssl.trustStore = c->tls_ca_file;
		ssl.CApath = c->tls_ca_path;
		ssl.keyStore = c->tls_cert_file;
		ssl.privateKey = c->tls_key_file;
		ssl.privateKeyPassword = c->tls_key_password;
		ssl.enableServerCertAuth = c->tls_insecure ? 0 : 1;
		ssl.verify = c->tls_insecure ? 0 : 1;
		co.ssl = &ssl;
	}
	rc = MQTTAsync_connect(c->mqtt, &co);
	MQTTProperties_free(&props);
	if(rc != MQTTASYNC_SUCCESS){
		char why[64];
		snprintf(why, sizeof(why), "cannot start connecting (paho rc %d)", rc);
		pthread_mutex_lock(&c->mu);
		if(attempt_current_locked(s) && c->state == FM_CONN_CONNECTING){
			fail_locked(c, FLEETMQ_CLIENT_DISCONNECTED, FLEETMQ_CLIENT_ERR_MQTT, why, false);
		}
		pthread_mutex_unlock(&c->mu);
	}
}

static void paho_disconnect(struct fleetmq_client *c, int timeout_ms)
{
	MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer5;

	d.timeout = timeout_ms;
	MQTTAsync_disconnect(c->mqtt, &d);
}

static void abs_deadline(struct timespec *ts, uint64_t wake_mono_ms)
{
	ts->tv_sec = (time_t)(wake_mono_ms / 1000);
	ts->tv_nsec = (long)(wake_mono_ms % 1000) * 1000000L;
}

static void *timer_thread_main(void *arg)
{
	struct fleetmq_client *c = arg;
	struct timespec ts;

	pthread_mutex_lock(&c->mu);
	while(!c->stopping){
		uint64_t now = client__mono_ms(), next = now + 1000, deadline;
		struct fm_outq q = {0};
		bool publish_now = false;

		if(c->disconnect_requested){
			c->disconnect_requested = false;
			pthread_mutex_unlock(&c->mu);
			paho_disconnect(c, 0);
			pthread_mutex_lock(&c->mu);
			continue;
		}
		switch(c->state){
			case FM_CONN_IDLE:
				if(now >= c->reconnect_at_ms){
					struct fm_attempt_ctx *s;
					c->gen++;
					s = attempt_slot_locked(c);
					c->state = FM_CONN_CONNECTING;
					c->attempt_started_ms = now;
					pthread_mutex_unlock(&c->mu);
					client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "connecting to %s", c->uri);
					start_attempt(c, s);
					pthread_mutex_lock(&c->mu);
					continue;
				}
				if(c->reconnect_at_ms < next) next = c->reconnect_at_ms;
				break;
			case FM_CONN_CONNECTING:
			case FM_CONN_SUBSCRIBING:
			case FM_CONN_HELLO:
				deadline = c->attempt_started_ms + (uint64_t)c->connect_timeout_ms
						+ (c->state == FM_CONN_CONNECTING ? (uint64_t)c->connect_timeout_ms + 1000 : 0);
				if(now >= deadline){
					const char *why = c->state == FM_CONN_HELLO ? "no answer to hello" : "connect timed out";
					if(c->state == FM_CONN_HELLO && !c->subscribed && c->direct_delivery){
						/* the broker no longer delivers directly: subscribe next time */
						c->direct_delivery = false;
						why = "no answer to hello without a subscription (broker not in direct delivery any more?)";
					}
					fail_locked(c, FLEETMQ_CLIENT_DISCONNECTED, FLEETMQ_CLIENT_ERR_TIMEOUT, why, true);
					continue;
				}
				if(deadline < next) next = deadline;
				break;
			case FM_CONN_ONLINE:
				shadow__tick_locked(c, now, &q, &next);
				jobs__tick_locked(c, now, &q, &next);
				break;
		}
		telemetry__tick_locked(c, now, &next, &publish_now);
		if(q.head || publish_now){
			pthread_mutex_unlock(&c->mu);
			client__flush(c, &q);
			if(publish_now) fleetmq_client_telemetry_publish(c, NULL, 0);
			pthread_mutex_lock(&c->mu);
			continue;
		}
		abs_deadline(&ts, next);
		pthread_cond_timedwait(&c->timer_cond, &c->mu, &ts);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---------------------------------------------------------------- lifecycle */

static char *dup_or(const char *s, const char *dflt)
{
	return fm_strdup(s ? s : dflt);
}

static void client_free(struct fleetmq_client *c)
{
	struct fm_event *ev, *evn;

	if(c->mqtt) MQTTAsync_destroy(&c->mqtt);
	for(ev = c->ev_head; ev; ev = evn){
		evn = ev->next;
		client__event_free(ev);
	}
	shadow__cleanup(c);
	telemetry__cleanup(c);
	jobs__cleanup(c);
	outbox__close(&c->outbox);
	client__kvlist_free(&c->software);
	client__kvlist_free(&c->attributes);
	fm_free(c->uri);
	fm_free(c->device_id);
	fm_free(c->password);
	fm_free(c->prefix);
	fm_free(c->topic_base);
	fm_free(c->state_dir);
	fm_free(c->tls_ca_file);
	fm_free(c->tls_ca_path);
	fm_free(c->tls_cert_file);
	fm_free(c->tls_key_file);
	fm_free(c->tls_key_password);
	fm_free(c->device_type);
	fm_free(c->hw_revision);
	fm_free(c->agent_version);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cond);
	pthread_cond_destroy(&c->ev_cond);
	pthread_cond_destroy(&c->timer_cond);
	fm_free(c);
}

static int init_sync(struct fleetmq_client *c)
{
	pthread_condattr_t ca;

	if(pthread_mutex_init(&c->mu, NULL) != 0) return -1;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_cond_init(&c->ev_cond, &ca);
	pthread_cond_init(&c->timer_cond, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

/* Build the server URI; sets c->tls from its scheme. */
static int build_uri(struct fleetmq_client *c, const struct fleetmq_client_options *o)
{
	char buf[600];

	if(o->uri && o->uri[0]){
		const char *rest;
		if(!strncmp(o->uri, "tcp://", 6) || !strncmp(o->uri, "mqtt://", 7)){
			rest = strstr(o->uri, "://") + 3;
			snprintf(buf, sizeof(buf), "tcp://%s", rest);
		}else if(!strncmp(o->uri, "ssl://", 6) || !strncmp(o->uri, "mqtts://", 8)){
			rest = strstr(o->uri, "://") + 3;
			snprintf(buf, sizeof(buf), "ssl://%s", rest);
			c->tls = true;
		}else{
			client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "uri '%s': scheme must be tcp://, mqtt://, ssl:// or mqtts://", o->uri);
			return FLEETMQ_CLIENT_ERR_CONFIG;
		}
		if(!rest[0]){
			client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "uri '%s' has no host", o->uri);
			return FLEETMQ_CLIENT_ERR_CONFIG;
		}
	}else{
		int port = o->port ? o->port : (o->tls ? FLEETMQ_CLIENT_DEFAULT_TLS_PORT : FLEETMQ_CLIENT_DEFAULT_PORT);
		if(port < 1 || port > 65535){
			client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "port %d out of range", port);
			return FLEETMQ_CLIENT_ERR_CONFIG;
		}
		c->tls = o->tls;
		snprintf(buf, sizeof(buf), "%s://%s:%d", o->tls ? "ssl" : "tcp", o->host && o->host[0] ? o->host : "localhost", port);
	}
	c->uri = fm_strdup(buf);
	return c->uri ? FLEETMQ_CLIENT_OK : FLEETMQ_CLIENT_ERR_NOMEM;
}

static bool valid_prefix(const char *p)
{
	return p && p[0] && p[0] != '$' && !strpbrk(p, "/+#") && strlen(p) <= 64;
}

int fleetmq_client_new(struct fleetmq_client **out, const struct fleetmq_client_options *o)
{
	struct fleetmq_client *c = NULL;
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer5;
	struct stat st;
	uint32_t r;
	int rc = FLEETMQ_CLIENT_ERR_CONFIG;

	if(!out || !o) return FLEETMQ_CLIENT_ERR_INVALID;
	*out = NULL;
	if(o->version < 1 || o->version > FLEETMQ_CLIENT_OPTIONS_VERSION) return FLEETMQ_CLIENT_ERR_CONFIG;

	c = fm_calloc(1, sizeof(*c));
	if(!c) return FLEETMQ_CLIENT_ERR_NOMEM;
	if(init_sync(c) != 0){
		fm_free(c);
		return FLEETMQ_CLIENT_ERR_NOMEM;
	}
	c->outbox.fd = -1;
	c->cb.on_connection = o->on_connection;
	c->cb.on_delta = o->on_delta;
	c->cb.on_document = o->on_document;
	c->cb.on_feature = o->on_feature;
	c->cb.on_job_cancel = o->on_job_cancel;
	c->cb.on_job_report_result = o->on_job_report_result;
	c->cb.on_log = o->on_log;
	c->cb.log_level = o->log_level;
	c->cb.userdata = o->userdata;

	/* validate first */
	if(!client__valid_id(o->device_id)){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "device_id must be 1-128 bytes without / + # or control characters");
		goto fail;
	}
	c->device_id = fm_strdup(o->device_id);
	if(o->topic_prefix && !valid_prefix(o->topic_prefix)){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "topic_prefix '%s' must be one topic level (no / + #, no leading $)", o->topic_prefix);
		goto fail;
	}
	if(o->keepalive_s < 0 || o->connect_timeout_ms < 0 || o->reconnect_min_ms < 0 || o->reconnect_max_ms < 0
			|| o->request_timeout_ms < 0 || o->outbox_max_entries < 0 || o->telemetry_buffer_messages < 0
			|| o->telemetry_interval_ms < 0){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "negative durations / sizes are not allowed");
		goto fail;
	}
	if((o->device_type && strlen(o->device_type) > 128) || (o->hw_revision && strlen(o->hw_revision) > 128)
			|| (o->agent_version && strlen(o->agent_version) > 128)){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "device_type, hw_revision and agent_version are limited to 128 bytes");
		goto fail;
	}
	if(check_kv(o->software, o->software_count, FM_MAX_HELLO_LIST, 128, 128) != FLEETMQ_CLIENT_OK
			|| check_kv(o->attributes, o->attribute_count, FM_MAX_HELLO_LIST, 64, 256) != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "software (max 32, 128-byte names/versions) or attributes (max 32, 1-64 byte keys, 256-byte values) invalid");
		goto fail;
	}
	if(o->state_dir && (stat(o->state_dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(o->state_dir, W_OK) != 0)){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "state_dir '%s' is not a writable directory", o->state_dir);
		goto fail;
	}
	if((rc = build_uri(c, o)) != FLEETMQ_CLIENT_OK) goto fail;
	rc = FLEETMQ_CLIENT_ERR_CONFIG;

	c->keepalive_s = o->keepalive_s ? o->keepalive_s : FLEETMQ_CLIENT_DEFAULT_KEEPALIVE_S;
	c->session_expiry_s = o->session_expiry_s ? o->session_expiry_s : FLEETMQ_CLIENT_DEFAULT_SESSION_EXPIRY_S;
	c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : FLEETMQ_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
	c->reconnect_min_ms = o->reconnect_min_ms ? o->reconnect_min_ms : FLEETMQ_CLIENT_DEFAULT_RECONNECT_MIN_MS;
	c->reconnect_max_ms = o->reconnect_max_ms ? o->reconnect_max_ms : FLEETMQ_CLIENT_DEFAULT_RECONNECT_MAX_MS;
	if(c->reconnect_max_ms < c->reconnect_min_ms) c->reconnect_max_ms = c->reconnect_min_ms;
	c->request_timeout_ms = o->request_timeout_ms ? o->request_timeout_ms : FLEETMQ_CLIENT_DEFAULT_REQUEST_TIMEOUT_MS;
	c->outbox_max_entries = o->outbox_max_entries ? o->outbox_max_entries : FLEETMQ_CLIENT_DEFAULT_OUTBOX_MAX_ENTRIES;
	c->telemetry_buffer_messages = o->telemetry_buffer_messages ? o->telemetry_buffer_messages
			: FLEETMQ_CLIENT_DEFAULT_TELEMETRY_BUFFER_MESSAGES;
	c->telemetry_interval_ms = o->telemetry_interval_ms;

	rc = FLEETMQ_CLIENT_ERR_NOMEM;
	c->prefix = dup_or(o->topic_prefix, "fleet");
	c->password = o->password ? fm_strdup(o->password) : NULL;
	c->state_dir = o->state_dir ? fm_strdup(o->state_dir) : NULL;
	c->tls_ca_file = o->tls_ca_file ? fm_strdup(o->tls_ca_file) : NULL;
	c->tls_ca_path = o->tls_ca_path ? fm_strdup(o->tls_ca_path) : NULL;
	c->tls_cert_file = o->tls_cert_file ? fm_strdup(o->tls_cert_file) : NULL;
	c->tls_key_file = o->tls_key_file ? fm_strdup(o->tls_key_file) : NULL;
	c->tls_key_password = o->tls_key_password ? fm_strdup(o->tls_key_password) : NULL;
	c->tls_insecure = o->tls_insecure;
	c->device_type = dup_or(o->device_type, "");
	c->hw_revision = dup_or(o->hw_revision, "");
	c->agent_version = dup_or(o->agent_version, "");
	if(!c->device_id || !c->prefix || !c->device_type || !c->hw_revision || !c->agent_version
			|| (o->password && !c->password) || (o->state_dir && !c->state_dir)) goto fail;
	if(client__kvlist_copy(&c->software, o->software, o->software_count) != FLEETMQ_CLIENT_OK) goto fail;
	if(client__kvlist_copy(&c->attributes, o->attributes, o->attribute_count) != FLEETMQ_CLIENT_OK) goto fail;
	c->topic_base_len = strlen(c->prefix) + strlen(c->device_id) + 2;
	c->topic_base = fm_malloc(c->topic_base_len + 1);
	if(!c->topic_base) goto fail;
	snprintf(c->topic_base, c->topic_base_len + 1, "%s/%s/", c->prefix, c->device_id);

	c->desired = cJSON_CreateObject();
	c->reported_cache = cJSON_CreateObject();
	if(!c->desired || !c->reported_cache) goto fail;

	r = random_u32();
	snprintf(c->token_prefix, sizeof(c->token_prefix), "%08x", r);

	/* local state */
	if((rc = shadow__load_version(c)) != FLEETMQ_CLIENT_OK) goto fail;
	if((rc = outbox__open(&c->outbox, c->state_dir)) != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot open the job report outbox in %s", c->state_dir);
		goto fail;
	}
	if(c->outbox.count){
		client__log(c, FLEETMQ_CLIENT_LOG_INFO, "%zu unanswered job report(s) in the outbox", c->outbox.count);
	}

	/* Paho: offline buffering for telemetry, oldest dropped first */
	co.sendWhileDisconnected = 1;
	co.maxBufferedMessages = c->telemetry_buffer_messages;
	co.allowDisconnectedSendAtAnyTime = 1;
	co.deleteOldestMessages = 1;
	co.restoreMessages = 0;
	co.persistQoS0 = 0;
	if(MQTTAsync_createWithOptions(&c->mqtt, c->uri, c->device_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co)
			!= MQTTASYNC_SUCCESS){
		c->mqtt = NULL;
		rc = FLEETMQ_CLIENT_ERR_MQTT;
		goto fail;
	}
	if(MQTTAsync_setCallbacks(c->mqtt, c, on_connection_lost, on_message, NULL) != MQTTASYNC_SUCCESS){
		rc = FLEETMQ_CLIENT_ERR_MQTT;
		goto fail;
	}
	c->state = FM_CONN_IDLE;
	*out = c;
	return FLEETMQ_CLIENT_OK;

fail:
	client_free(c);
	return rc;
}

int fleetmq_client_start(struct fleetmq_client *c)
{
	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if(c->started || c->stopping){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_STATE;
	}
	c->started = true;
	c->reconnect_at_ms = 0;
	if(c->telemetry_interval_ms) c->next_telemetry_ms = client__mono_ms() + (uint64_t)c->telemetry_interval_ms;
	pthread_mutex_unlock(&c->mu);

	if(pthread_create(&c->event_thread, NULL, event_thread_main, c) != 0){
		pthread_mutex_lock(&c->mu);
		c->started = false;
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_NOMEM;
	}
	if(pthread_create(&c->timer_thread, NULL, timer_thread_main, c) != 0){
		pthread_mutex_lock(&c->mu);
		c->stopping = true;
		pthread_cond_broadcast(&c->ev_cond);
		pthread_mutex_unlock(&c->mu);
		pthread_join(c->event_thread, NULL);
		pthread_mutex_lock(&c->mu);
		c->stopping = false;
		c->started = false;
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_NOMEM;
	}
	pthread_mutex_lock(&c->mu);
	c->threads_started = true;
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

int fleetmq_client_wait_connected(struct fleetmq_client *c, int timeout_ms)
{
	struct timespec ts;
	uint64_t deadline;
	int rc = FLEETMQ_CLIENT_OK;

	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	deadline = client__mono_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
	abs_deadline(&ts, deadline);
	pthread_mutex_lock(&c->mu);
	if(!c->started){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_STATE;
	}
	while(c->state != FM_CONN_ONLINE && !c->stopping){
		if(timeout_ms < 0){
			pthread_cond_wait(&c->cond, &c->mu);
		}else if(pthread_cond_timedwait(&c->cond, &c->mu, &ts) == ETIMEDOUT){
			break;
		}
	}
	if(c->stopping) rc = FLEETMQ_CLIENT_ERR_STOPPED;
	else if(c->state != FM_CONN_ONLINE) rc = FLEETMQ_CLIENT_ERR_TIMEOUT;
	pthread_mutex_unlock(&c->mu);
	return rc;
}

bool fleetmq_client_is_connected(struct fleetmq_client *c)
{
	bool on;

	if(!c) return false;
	pthread_mutex_lock(&c->mu);
	on = c->state == FM_CONN_ONLINE;
	pthread_mutex_unlock(&c->mu);
	return on;
}

void fleetmq_client_destroy(struct fleetmq_client *c)
{
	bool was_online;

	if(!c) return;
	if(client__on_event_thread(c)){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "fleetmq_client_destroy() called from a callback: ignored");
		return;
	}
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	was_online = c->state != FM_CONN_IDLE;
	waiters__fail_all_locked(c, FLEETMQ_CLIENT_ERR_STOPPED);
	pthread_cond_broadcast(&c->cond);
	pthread_cond_broadcast(&c->timer_cond);
	pthread_cond_broadcast(&c->ev_cond);
	pthread_mutex_unlock(&c->mu);

	if(c->threads_started) pthread_join(c->timer_thread, NULL);
	if(c->mqtt && was_online){
		paho_disconnect(c, FM_DISCONNECT_TIMEOUT_MS);
		/* MQTTAsync_disconnect is asynchronous: give it a moment to send
		 * DISCONNECT so the broker sees a clean close. */
		for(int i = 0; i < 50 && MQTTAsync_isConnected(c->mqtt); i++) usleep(10000);
	}
	if(c->mqtt) MQTTAsync_destroy(&c->mqtt);   /* no Paho callback after this */
	c->mqtt = NULL;
	if(c->threads_started) pthread_join(c->event_thread, NULL);
	c->threads_started = false;
	client_free(c);
}

void fleetmq_client_free(void *p)
{
	fm_free(p);
}

int fleetmq_client_get_stats(struct fleetmq_client *c, struct fleetmq_client_stats *out)
{
	if(!c || !out) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	memset(out, 0, sizeof(*out));
	out->connected = c->state == FM_CONN_ONLINE;
	out->connects = c->n_connects;
	out->connect_failures = c->n_failures;
	out->telemetry_batches = c->telemetry_batches;
	out->telemetry_sequence = c->telemetry_seq;
	out->outbox_pending = c->outbox.count;
	out->reports_sent = c->n_reports_sent;
	out->jobs_started = c->n_jobs_started;
	out->shadow_version = c->shadow_version;
	out->subscribed = c->subscribed;
	out->direct_delivery = c->direct_delivery;
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

/* ---------------------------------------------------------------- hello contents */

int fleetmq_client_set_execution_in_progress(struct fleetmq_client *c, const char *job_id)
{
	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	if(job_id && job_id[0] && !client__valid_id(job_id)) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	snprintf(c->execution_in_progress, sizeof(c->execution_in_progress), "%s", job_id ? job_id : "");
	c->current_attempt = 0;   /* declared, not dispatched */
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

int fleetmq_client_set_software(struct fleetmq_client *c, const struct fleetmq_client_kv *software, size_t count)
{
	struct fm_kvlist l;
	int rc;

	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	if((rc = check_kv(software, count, FM_MAX_HELLO_LIST, 128, 128)) != FLEETMQ_CLIENT_OK) return rc;
	if((rc = client__kvlist_copy(&l, software, count)) != FLEETMQ_CLIENT_OK) return rc;
	pthread_mutex_lock(&c->mu);
	client__kvlist_free(&c->software);
	c->software = l;
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

int fleetmq_client_resend_hello(struct fleetmq_client *c)
{
	struct fm_outq q = {0};

	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	if(c->state != FM_CONN_ONLINE){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_DISCONNECTED;
	}
	queue_hello_locked(c, &q);
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);
	return FLEETMQ_CLIENT_OK;
}
