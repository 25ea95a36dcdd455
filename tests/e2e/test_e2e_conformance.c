/*
 * test_e2e_conformance.c - the fleetmq plugin does not change what the
 * broker does for non-fleet traffic.
 *
 * Every check runs twice, against stock mosquitto without the plugin and
 * against mosquitto with fleetmq_plugin.so (security.other_topics: allow).
 * A check asserts the MQTT behaviour it expects on each broker and writes a
 * transcript of everything its clients observed (messages with topic, QoS,
 * retain flag and payload, reason codes, session-present flags, what did not
 * arrive); the two transcripts must be identical. Covered: QoS 0/1/2
 * delivery, downgrade and ordering; retained set / replace / clear / retain
 * handling options; wildcards (+, #, $SYS not matched by # or +); will
 * messages (abrupt disconnect: delivered; clean disconnect: not; retained
 * will); persistent sessions (v3.1.1 and v5, QoS 1 queued while offline,
 * QoS 0 not queued, v5 session expiry, clean start); MQTT v3.1.1 and v5
 * interworking with user properties; unsubscribe; overlapping subscriptions
 * with subscription identifiers; no-local; 1 MiB payloads at QoS 1 and 2;
 * $CONTROL topics of other plugins: unknown $CONTROL/... topics are not
 * routed, and the dynamic-security plugin loaded before fleetmq answers its
 * API and makes its ACL decisions exactly as without fleetmq. That pair runs
 * with other_topics: defer, the setting for brokers with another access
 * control mechanism: dynamic-security's default deny is a DEFER, which
 * other_topics: allow would turn into a grant.
 *
 * The harness's fm_client speaks MQTT v5 only and has no will, session
 * expiry or abrupt drop, so this file has its own small libmosquitto client
 * (same design: one network thread per client, no automatic reconnect).
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define DYNSEC_PLUGIN "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
/* Waits, scaled like the harness's (fm_timeout_scale(): FLEETMQ_TIMEOUT_SCALE,
 * or 5 under FLEETMQ_BROKER_WRAPPER). */
#define QUIET_MS (600 * fm_timeout_scale())
#define WAIT_MS (3000 * fm_timeout_scale())

enum { B_VANILLA, B_PLUGIN, B_COUNT };
static const char *const broker_name[B_COUNT] = { "vanilla", "fleetmq" };
static struct fm_broker g_b[B_COUNT];

/* =========================================================================
 * transcript
 * ========================================================================= */

struct tr {
	char *buf;
	size_t len, cap;
	const char *broker;
	char *fails;              /* failed expectations, one per line */
	size_t fails_len;
	int nfails;
	int nexpect;              /* expectations evaluated */
};

/* The transcript of the check running on this thread (checks of the two
 * brokers run in parallel; CUnit is told about failures afterwards, from
 * the test's own thread). */
static __thread struct tr *g_tr;

static void tr_add(struct tr *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tr_add(struct tr *t, const char *fmt, ...)
{
	va_list ap;
	int n;
	for(;;){
		size_t room = t->cap - t->len;
		va_start(ap, fmt);
		n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? room : 0, fmt, ap);
		va_end(ap);
		if(n < 0) return;
		if(t->buf && (size_t)n + 2 <= room) break;
		t->cap = (t->cap + (size_t)n + 2) * 2;
		t->buf = realloc(t->buf, t->cap);
		if(!t->buf) abort();
	}
	t->len += (size_t)n;
	t->buf[t->len++] = '\n';
	t->buf[t->len] = '\0';
}

static void tr_fail(struct tr *t, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tr_fail(struct tr *t, int line, const char *fmt, ...)
{
	char msg[700];
	size_t n;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if(!t) return;
	n = strlen(msg) + 32;
	t->fails = realloc(t->fails, t->fails_len + n + 1);
	if(!t->fails) abort();
	t->fails_len += (size_t)snprintf(t->fails + t->fails_len, n + 1, "line %d: %s\n", line, msg);
	t->nfails++;
}

/* Expectation on one broker, reported with the broker's name. */
#define EXPECT(t, cond, ...) do{ \
		(t)->nexpect++; \
		if(!(cond)) tr_fail((t), __LINE__, __VA_ARGS__); \
	}while(0)

/* Tell CUnit about the failed expectations of t (test thread only). */
static void tr_report(struct tr *t)
{
	char *line, *save = NULL;
	for(int i = t->nfails; i < t->nexpect; i++) CU_PASS("expectation met");
	if(!t->nfails) return;
	for(line = strtok_r(t->fails, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		FM_ASSERT(false, "[%s] %s", t->broker, line);
	}
}

static void tr_free(struct tr *t)
{
	free(t->buf);
	free(t->fails);
}

typedef void (*check_fn)(int port, struct tr *t);

struct check_run {
	check_fn fn;
	int port;
	struct tr *t;
};

static void *check_thread(void *arg)
{
	struct check_run *r = arg;
	g_tr = r->t;
	r->fn(r->port, r->t);
	return NULL;
}

/* Run a check on both brokers (in parallel, each with its own clients);
 * both must meet its expectations and observe exactly the same thing. */
static void run_both(check_fn fn)
{
	struct tr t[B_COUNT];
	struct check_run r[B_COUNT];
	pthread_t th[B_COUNT];
	bool started[B_COUNT] = { false, false };
	int i;

	memset(t, 0, sizeof(t));
	for(i = 0; i < B_COUNT; i++){
		t[i].broker = broker_name[i];
		tr_add(&t[i], "-");
		if(!fm_broker_alive(&g_b[i])){
			FM_ASSERT(false, "[%s] broker is not running", broker_name[i]);
			continue;
		}
		r[i] = (struct check_run){ fn, g_b[i].port, &t[i] };
		started[i] = pthread_create(&th[i], NULL, check_thread, &r[i]) == 0;
		FM_ASSERT(started[i], "cannot start a thread");
	}
	for(i = 0; i < B_COUNT; i++){
		if(started[i]) pthread_join(th[i], NULL);
		tr_report(&t[i]);
	}
	if(strcmp(t[B_VANILLA].buf, t[B_PLUGIN].buf) != 0){
		FM_ASSERT(false, "observable behaviour differs:\n--- vanilla ---\n%.900s\n--- fleetmq ---\n%.900s",
				t[B_VANILLA].buf, t[B_PLUGIN].buf);
		fprintf(stderr, "\n--- vanilla ---\n%s--- fleetmq ---\n%s", t[B_VANILLA].buf, t[B_PLUGIN].buf);
	}
	tr_free(&t[B_VANILLA]);
	tr_free(&t[B_PLUGIN]);
}

/* =========================================================================
 * a small MQTT client: v3.1.1 or v5, will, session expiry, abrupt drop
 * ========================================================================= */

struct ccmsg {
	char *topic;
	uint8_t *payload;
	int len;
	int qos;
	bool retain;
	int sub_ids[4];
	int n_sub_ids;
	char *user_prop;          /* "name=value" of the first user property */
	struct ccmsg *next;
};

struct cc {
	struct mosquitto *mosq;
	char id[64];
	int proto;
	uint32_t session_expiry;
	pthread_t thread;
	bool thread_started;
	atomic_int stop;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ccmsg *head, *tail;
	int connack;              /* -1 until CONNACK */
	int session_present;
	bool disconnected;
	int16_t *pub_rc;          /* by mid: -1 pending */
	int16_t *sub_rc;
	uint8_t *unsub_done;
};

static void ccmsg_free(struct ccmsg *m)
{
	if(!m) return;
	free(m->topic);
	free(m->payload);
	free(m->user_prop);
	free(m);
}

static void cc_on_connect(struct mosquitto *mosq, void *obj, int rc, int flags, const mosquitto_property *props)
{
	struct cc *c = obj;
	(void)mosq; (void)props;
	pthread_mutex_lock(&c->lock);
	c->connack = rc;
	c->session_present = flags & 1;
	if(rc) c->disconnected = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cc_on_disconnect(struct mosquitto *mosq, void *obj, int rc, const mosquitto_property *props)
{
	struct cc *c = obj;
	(void)mosq; (void)rc; (void)props;
	pthread_mutex_lock(&c->lock);
	c->disconnected = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cc_on_publish(struct mosquitto *mosq, void *obj, int mid, int rc, const mosquitto_property *props)
{
	struct cc *c = obj;
	(void)mosq; (void)props;
	pthread_mutex_lock(&c->lock);
	c->pub_rc[mid & 0xFFFF] = (int16_t)rc;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cc_on_subscribe(struct mosquitto *mosq, void *obj, int mid, int n, const int *granted,
		const mosquitto_property *props)
{
	struct cc *c = obj;
	(void)mosq; (void)props;
	pthread_mutex_lock(&c->lock);
	c->sub_rc[mid & 0xFFFF] = (int16_t)(n > 0 ? granted[0] : 0x80);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cc_on_unsubscribe(struct mosquitto *mosq, void *obj, int mid, const mosquitto_property *props)
{
	struct cc *c = obj;
	(void)mosq; (void)props;
	pthread_mutex_lock(&c->lock);
	c->unsub_done[mid & 0xFFFF] = 1;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void cc_on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg,
		const mosquitto_property *props)
{
	struct cc *c = obj;
	struct ccmsg *m = calloc(1, sizeof(*m));
	const mosquitto_property *p;
	(void)mosq;
	if(!m) return;
	m->topic = strdup(msg->topic);
	m->payload = malloc((size_t)msg->payloadlen + 1);
	if(!m->topic || !m->payload){
		ccmsg_free(m);
		return;
	}
	if(msg->payloadlen) memcpy(m->payload, msg->payload, (size_t)msg->payloadlen);
	m->payload[msg->payloadlen] = 0;
	m->len = msg->payloadlen;
	m->qos = msg->qos;
	m->retain = msg->retain;
	for(p = props; p; p = mosquitto_property_next(p)){
		int id = mosquitto_property_identifier(p);
		if(id == MQTT_PROP_SUBSCRIPTION_IDENTIFIER && m->n_sub_ids < 4){
			uint32_t v = 0;
			mosquitto_property_read_varint(p, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &v, false);
			m->sub_ids[m->n_sub_ids++] = (int)v;
		}else if(id == MQTT_PROP_USER_PROPERTY && !m->user_prop){
			char *name = NULL, *value = NULL;
			if(mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false)){
				if(asprintf(&m->user_prop, "%s=%s", name, value) < 0) m->user_prop = NULL;
			}
			free(name);
			free(value);
		}
	}
	pthread_mutex_lock(&c->lock);
	if(c->tail) c->tail->next = m;
	else c->head = m;
	c->tail = m;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void *cc_thread(void *arg)
{
	struct cc *c = arg;
	while(!atomic_load(&c->stop)){
		if(mosquitto_loop(c->mosq, 20, 1) != MOSQ_ERR_SUCCESS) fm_sleep_ms(5);
	}
	return NULL;
}

struct will { const char *topic; const char *payload; int qos; bool retain; };

/* proto: MQTT_PROTOCOL_V311 or MQTT_PROTOCOL_V5. clean: clean session /
 * clean start. session_expiry: v5 only (seconds). */
static struct cc *cc_new(const char *id, int proto, bool clean, uint32_t session_expiry, const struct will *w)
{
	struct cc *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	if(!c) return NULL;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->proto = proto;
	c->session_expiry = session_expiry;
	c->connack = -1;
	c->pub_rc = malloc(65536 * sizeof(int16_t));
	c->sub_rc = malloc(65536 * sizeof(int16_t));
	c->unsub_done = calloc(65536, 1);
	if(!c->pub_rc || !c->sub_rc || !c->unsub_done) abort();
	memset(c->pub_rc, 0xFF, 65536 * sizeof(int16_t));
	memset(c->sub_rc, 0xFF, 65536 * sizeof(int16_t));
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->mosq = mosquitto_new(id, clean, c);
	if(!c->mosq) abort();
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, proto);
	/* Receive Maximum 1000 instead of libmosquitto's 20: stock mosquitto
	 * 2.0.11 (with or without fleetmq) can have more than 20 QoS 1/2 messages
	 * unacknowledged towards one client (QoS 2 seems to free its slot at
	 * PUBREC, not PUBCOMP; we saw 23 in flight), and libmosquitto 2.0.11
	 * then closes the connection as a protocol error. */
	mosquitto_int_option(c->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 1000);
	mosquitto_threaded_set(c->mosq, true);
	mosquitto_connect_v5_callback_set(c->mosq, cc_on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, cc_on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, cc_on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, cc_on_subscribe);
	mosquitto_unsubscribe_v5_callback_set(c->mosq, cc_on_unsubscribe);
	mosquitto_message_v5_callback_set(c->mosq, cc_on_message);
	if(w) mosquitto_will_set_v5(c->mosq, w->topic, (int)strlen(w->payload), w->payload, w->qos, w->retain, NULL);
	return c;
}

static struct timespec deadline(int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if(ts.tv_nsec >= 1000000000L){
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

/* Connect and wait for CONNACK: its reason code, or -1. */
static int cc_connect(struct cc *c, int port)
{
	mosquitto_property *props = NULL;
	struct timespec dl;
	int rc;
	if(c->proto == MQTT_PROTOCOL_V5 && c->session_expiry){
		mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, c->session_expiry);
	}
	rc = mosquitto_connect_bind_v5(c->mosq, "127.0.0.1", port, 60, NULL, props);
	mosquitto_property_free_all(&props);
	if(rc != MOSQ_ERR_SUCCESS) return -1;
	if(pthread_create(&c->thread, NULL, cc_thread, c) != 0) return -1;
	c->thread_started = true;
	dl = deadline(WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while(c->connack < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->connack;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static struct cc *cc_open(int port, const char *id, int proto, bool clean, uint32_t expiry, const struct will *w)
{
	struct cc *c = cc_new(id, proto, clean, expiry, w);
	int rc = c ? cc_connect(c, port) : -1;
	if(rc != 0) tr_fail(g_tr, __LINE__, "%s: CONNACK %d", id, rc);
	return c;
}

/* Subscribe, wait for SUBACK: the granted QoS / reason code, or -1. */
static int cc_subscribe(struct cc *c, const char *filter, int qos, int options, int sub_id)
{
	mosquitto_property *props = NULL;
	struct timespec dl;
	int mid = 0, rc;
	if(sub_id) mosquitto_property_add_varint(&props, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, (uint32_t)sub_id);
	rc = mosquitto_subscribe_v5(c->mosq, &mid, filter, qos, options, props);
	mosquitto_property_free_all(&props);
	if(rc != MOSQ_ERR_SUCCESS) return -1;
	dl = deadline(WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while(c->sub_rc[mid] < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->sub_rc[mid];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cc_unsubscribe(struct cc *c, const char *filter)
{
	struct timespec dl;
	int mid = 0, rc;
	if(mosquitto_unsubscribe_v5(c->mosq, &mid, filter, NULL) != MOSQ_ERR_SUCCESS) return -1;
	dl = deadline(WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while(!c->unsub_done[mid] && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->unsub_done[mid] ? 0 : -1;
	pthread_mutex_unlock(&c->lock);
	return rc;
}

/* Queue a publish; *mid receives its id. */
static int cc_publish_async(struct cc *c, const char *topic, const void *payload, int len, int qos, bool retain,
		const mosquitto_property *props, int *mid)
{
	return mosquitto_publish_v5(c->mosq, mid, topic, len, payload, qos, retain, props);
}

/* Wait until the publish flow of mid finished (QoS 0: written; 1: PUBACK;
 * 2: PUBCOMP). Its reason code, or -1 on timeout. */
static int cc_wait_pub(struct cc *c, int mid)
{
	struct timespec dl = deadline(WAIT_MS);
	int rc;
	pthread_mutex_lock(&c->lock);
	while(c->pub_rc[mid & 0xFFFF] < 0 && !c->disconnected){
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
	}
	rc = c->pub_rc[mid & 0xFFFF];
	pthread_mutex_unlock(&c->lock);
	return rc;
}

static int cc_publish(struct cc *c, const char *topic, const void *payload, int len, int qos, bool retain)
{
	int mid = 0;
	if(cc_publish_async(c, topic, payload, len, qos, retain, NULL, &mid) != MOSQ_ERR_SUCCESS) return -1;
	return cc_wait_pub(c, mid);
}

static int cc_publish_str(struct cc *c, const char *topic, const char *payload, int qos, bool retain)
{
	return cc_publish(c, topic, payload, (int)strlen(payload), qos, retain);
}

/* Oldest message whose topic matches filter (NULL = any), waiting up to ms. */
static struct ccmsg *cc_wait(struct cc *c, const char *filter, int ms)
{
	struct timespec dl = deadline(ms);
	struct ccmsg *found = NULL;
	bool timed_out = false;
	pthread_mutex_lock(&c->lock);
	for(;;){
		struct ccmsg *prev = NULL;
		for(struct ccmsg *m = c->head; m; prev = m, m = m->next){
			bool match = true;
			if(filter) mosquitto_topic_matches_sub(filter, m->topic, &match);
			if(match){
				if(prev) prev->next = m->next;
				else c->head = m->next;
				if(c->tail == m) c->tail = prev;
				m->next = NULL;
				found = m;
				break;
			}
		}
		if(found || timed_out) break;
		if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) timed_out = true;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

/* Collect messages matching filter until none arrives for QUIET_MS (at
 * most 1000). Appends a line per message to t; returns the count. */
static int cc_collect(struct cc *c, const char *filter, struct tr *t, const char *label)
{
	int n = 0;
	struct ccmsg *m;
	while(n < 1000 && (m = cc_wait(c, filter, QUIET_MS)) != NULL){
		tr_add(t, "%s: %s q%d r%d len %d '%.40s'%s%s", label, m->topic, m->qos, m->retain, m->len,
				(const char *)m->payload, m->user_prop ? " up " : "", m->user_prop ? m->user_prop : "");
		n++;
		ccmsg_free(m);
	}
	return n;
}

/* Nothing matching filter arrives within QUIET_MS. */
static bool cc_quiet(struct cc *c, const char *filter, struct tr *t, const char *label)
{
	struct ccmsg *m = cc_wait(c, filter, QUIET_MS);
	if(!m){
		tr_add(t, "%s: nothing", label);
		return true;
	}
	tr_add(t, "%s: UNEXPECTED %s '%.40s'", label, m->topic, (const char *)m->payload);
	ccmsg_free(m);
	return false;
}

static void cc_stop_thread(struct cc *c)
{
	if(c->thread_started){
		atomic_store(&c->stop, 1);
		pthread_join(c->thread, NULL);
		c->thread_started = false;
	}
}

static void cc_free(struct cc *c)
{
	struct ccmsg *m, *n;
	for(m = c->head; m; m = n){
		n = m->next;
		ccmsg_free(m);
	}
	mosquitto_destroy(c->mosq);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c->pub_rc);
	free(c->sub_rc);
	free(c->unsub_done);
	free(c);
}

/* Clean MQTT DISCONNECT, then free. */
static void cc_close(struct cc *c)
{
	struct timespec dl;
	if(!c) return;
	if(c->thread_started && !c->disconnected){
		mosquitto_disconnect_v5(c->mosq, 0, NULL);
		dl = deadline(WAIT_MS);
		pthread_mutex_lock(&c->lock);
		while(!c->disconnected){
			if(pthread_cond_timedwait(&c->cond, &c->lock, &dl) == ETIMEDOUT) break;
		}
		pthread_mutex_unlock(&c->lock);
	}
	cc_stop_thread(c);
	cc_free(c);
}

/* Drop the TCP connection without an MQTT DISCONNECT (network failure). */
static void cc_drop(struct cc *c)
{
	int fd;
	cc_stop_thread(c);
	fd = mosquitto_socket(c->mosq);
	if(fd >= 0) shutdown(fd, SHUT_RDWR);
	cc_free(c);
}

/* =========================================================================
 * checks
 * ========================================================================= */

static void check_qos(int port, struct tr *t)
{
	struct cc *sub = cc_open(port, "cf-qos-sub", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *pub = cc_open(port, "cf-qos-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	char topic[64], payload[32];
	int q, i, sq, mids[50];

	if(!sub || !pub) goto out;
	EXPECT(t, cc_subscribe(sub, "cf/qos/#", 2, 0, 0) == 2, "SUBACK QoS 2");
	for(q = 0; q <= 2; q++){
		int n = 0, in_order = 1, rc_ok = 1;
		snprintf(topic, sizeof(topic), "cf/qos/%d", q);
		/* at most 10 publishes outstanding (see cc_new about flow control) */
		for(i = 0; i < 50; i++){
			snprintf(payload, sizeof(payload), "m%d", i);
			cc_publish_async(pub, topic, payload, (int)strlen(payload), q, false, NULL, &mids[i]);
			if(i >= 9 && cc_wait_pub(pub, mids[i - 9]) != 0) rc_ok = 0;
		}
		for(i = 41; i < 50; i++){
			int rc = cc_wait_pub(pub, mids[i]);
			if(rc != 0) rc_ok = 0;
		}
		for(i = 0; i < 50; i++){
			struct ccmsg *m = cc_wait(sub, topic, WAIT_MS);
			if(!m) break;
			snprintf(payload, sizeof(payload), "m%d", i);
			if(strcmp((char *)m->payload, payload) || m->qos != q || m->retain) in_order = 0;
			n++;
			ccmsg_free(m);
		}
		tr_add(t, "qos %d: publish flows ok %d, received %d, in order with qos %d: %d", q, rc_ok, n, q, in_order);
		EXPECT(t, rc_ok, "QoS %d publish flows completed with reason 0", q);
		EXPECT(t, n == 50 && in_order, "QoS %d: %d of 50 received, in order %d", q, n, in_order);
	}
	cc_quiet(sub, "cf/qos/#", t, "qos: extra copies");
	/* delivered QoS = min(published, granted) */
	for(sq = 0; sq <= 2; sq++){
		snprintf(topic, sizeof(topic), "cf/qosdown/%d", sq);
		EXPECT(t, cc_subscribe(sub, topic, sq, 0, 0) == sq, "SUBACK QoS %d", sq);
		for(q = 0; q <= 2; q++){
			struct ccmsg *m;
			snprintf(payload, sizeof(payload), "p%d", q);
			cc_publish_str(pub, topic, payload, q, false);
			m = cc_wait(sub, topic, WAIT_MS);
			tr_add(t, "sub qos %d pub qos %d: %s qos %d", sq, q, m ? "received" : "lost", m ? m->qos : -1);
			EXPECT(t, m && m->qos == (q < sq ? q : sq), "sub %d pub %d delivered qos %d", sq, q, m ? m->qos : -1);
			ccmsg_free(m);
		}
	}
	/* v5 reason codes without subscribers: PUBACK 0x10 (QoS 1); for QoS 2
	 * libmosquitto reports the PUBCOMP's code, recorded only */
	for(q = 1; q <= 2; q++){
		int rc = cc_publish_str(pub, "cf/nobody/listens", "x", q, false);
		tr_add(t, "qos %d to a topic without subscribers: reason 0x%02x", q, rc);
		if(q == 1) EXPECT(t, rc == 0x10, "QoS 1 without subscribers: PUBACK 0x%02x, expected 0x10", rc);
	}
	/* no-local: a client does not receive its own publishes */
	EXPECT(t, cc_subscribe(pub, "cf/nolocal", 1, MQTT_SUB_OPT_NO_LOCAL, 0) == 1, "SUBACK no-local");
	EXPECT(t, cc_subscribe(sub, "cf/nolocal", 1, 0, 0) == 1, "SUBACK");
	cc_publish_str(pub, "cf/nolocal", "self", 1, false);
	EXPECT(t, cc_collect(sub, "cf/nolocal", t, "no-local other client") == 1, "the other client gets it");
	EXPECT(t, cc_quiet(pub, "cf/nolocal", t, "no-local publisher"), "no-local: own message not delivered");
out:
	cc_close(pub);
	cc_close(sub);
}

static void check_retained(int port, struct tr *t)
{
	struct cc *pub = cc_open(port, "cf-ret-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *live = cc_open(port, "cf-ret-live", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *rap = cc_open(port, "cf-ret-rap", MQTT_PROTOCOL_V311, true, 0, NULL);
	struct cc *s;
	int n;

	if(!pub || !live || !rap) goto out;
	EXPECT(t, cc_subscribe(live, "cf/ret/#", 1, 0, 0) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(rap, "cf/ret/#", 1, 0, 0) == 1, "SUBACK");
	cc_publish_str(pub, "cf/ret/a", "v1", 1, true);
	n = cc_collect(live, "cf/ret/#", t, "live after set");
	EXPECT(t, n == 1, "live subscriber: %d messages after set", n);
	n = cc_collect(rap, "cf/ret/#", t, "v3.1.1 live after set");
	EXPECT(t, n == 1, "v3.1.1 live subscriber: %d messages after set", n);

	/* a new subscriber gets the retained message, with retain set */
	s = cc_open(port, "cf-ret-new1", MQTT_PROTOCOL_V5, true, 0, NULL);
	if(s){
		struct ccmsg *m;
		EXPECT(t, cc_subscribe(s, "cf/ret/+", 1, 0, 0) == 1, "SUBACK");
		m = cc_wait(s, "cf/ret/#", WAIT_MS);
		EXPECT(t, m && m->retain && !strcmp((char *)m->payload, "v1"), "retained v1 delivered on subscribe");
		if(m) tr_add(t, "new subscriber: %s '%s' r%d q%d", m->topic, (char *)m->payload, m->retain, m->qos);
		ccmsg_free(m);
		cc_quiet(s, "cf/ret/#", t, "new subscriber, more");
		/* retain handling 2: no retained messages at subscribe */
		EXPECT(t, cc_subscribe(s, "cf/ret/a", 1, MQTT_SUB_OPT_SEND_RETAIN_NEVER, 0) == 1, "SUBACK");
		cc_quiet(s, "cf/ret/#", t, "retain handling 2");
		cc_close(s);
	}

	/* replace */
	cc_publish_str(pub, "cf/ret/a", "v2", 1, true);
	cc_collect(live, "cf/ret/#", t, "live after replace");
	s = cc_open(port, "cf-ret-new2", MQTT_PROTOCOL_V5, true, 0, NULL);
	if(s){
		/* retain-as-published: forwarded retained messages keep the flag */
		EXPECT(t, cc_subscribe(s, "cf/ret/#", 1, MQTT_SUB_OPT_RETAIN_AS_PUBLISHED, 0) == 1, "SUBACK");
		n = cc_collect(s, "cf/ret/#", t, "new subscriber after replace");
		EXPECT(t, n == 1, "exactly the replaced value is retained (%d messages)", n);
		cc_publish_str(pub, "cf/ret/b", "vb", 1, true);
		cc_collect(s, "cf/ret/#", t, "retain-as-published live");
		cc_publish_str(pub, "cf/ret/b", "", 1, true);
		cc_collect(s, "cf/ret/#", t, "retain-as-published clear b");
		cc_close(s);
	}
	cc_collect(live, "cf/ret/#", t, "live after b");

	/* clear with an empty retained payload */
	cc_publish_str(pub, "cf/ret/a", "", 1, true);
	cc_collect(live, "cf/ret/#", t, "live after clear");
	cc_collect(rap, "cf/ret/#", t, "v3.1.1 live after clear");
	s = cc_open(port, "cf-ret-new3", MQTT_PROTOCOL_V5, true, 0, NULL);
	if(s){
		EXPECT(t, cc_subscribe(s, "cf/ret/#", 1, 0, 0) == 1, "SUBACK");
		EXPECT(t, cc_quiet(s, "cf/ret/#", t, "new subscriber after clear"), "cleared retained message not delivered");
		cc_close(s);
	}
	/* retained QoS 0 and QoS 2, v3.1.1 subscriber */
	cc_publish_str(pub, "cf/ret/q0", "zero", 0, true);
	cc_publish_str(pub, "cf/ret/q2", "two", 2, true);
	cc_collect(live, "cf/ret/#", t, "live q0/q2");
	cc_collect(rap, "cf/ret/#", t, "v3.1.1 live q0/q2");
	s = cc_open(port, "cf-ret-new4", MQTT_PROTOCOL_V311, true, 0, NULL);
	if(s){
		EXPECT(t, cc_subscribe(s, "cf/ret/#", 2, 0, 0) == 2, "SUBACK");
		/* retained messages of several topics: the order is the broker's, sort by topic */
		struct ccmsg *a = cc_wait(s, "cf/ret/q0", WAIT_MS), *b = cc_wait(s, "cf/ret/q2", WAIT_MS);
		EXPECT(t, a && b && a->qos == 0 && b->qos == 2 && a->retain && b->retain, "retained q0/q2 delivered");
		tr_add(t, "v3.1.1 new subscriber: q0 %s r%d q%d, q2 %s r%d q%d", a ? (char *)a->payload : "-", a ? a->retain : -1,
				a ? a->qos : -1, b ? (char *)b->payload : "-", b ? b->retain : -1, b ? b->qos : -1);
		ccmsg_free(a);
		ccmsg_free(b);
		cc_quiet(s, "cf/ret/#", t, "v3.1.1 new subscriber, more");
		cc_close(s);
	}
	cc_publish_str(pub, "cf/ret/q0", "", 0, true);
	cc_publish_str(pub, "cf/ret/q2", "", 2, true);
out:
	cc_close(pub);
	cc_close(live);
	cc_close(rap);
}

/* Subscriptions of check_wildcards and the topics they must get. */
static void check_wildcards(int port, struct tr *t)
{
	static const char *const filters[] = { "cf/wc/+/x", "cf/wc/#", "#", "+/wc/+/+", "cf/+", "+", "cf/wc/+/x/#",
			"$SYS/broker/uptime", "+/broker/uptime", "$SYS/#" };
	static const char *const topics[] = { "cf/wc/a/x", "cf/wc/a/y", "cf/wc/b/x/z", "cf/wc", "cf/wc/", "top",
			"cf/wc/a/x/" };
	enum { NF = sizeof(filters) / sizeof(filters[0]), NT = sizeof(topics) / sizeof(topics[0]) };
	struct cc *s[NF];
	struct cc *pub = cc_open(port, "cf-wc-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	char id[32];
	int i, k;

	for(i = 0; i < NF; i++){
		snprintf(id, sizeof(id), "cf-wc-%d", i);
		s[i] = cc_open(port, id, i % 2 ? MQTT_PROTOCOL_V311 : MQTT_PROTOCOL_V5, true, 0, NULL);
		if(s[i]) EXPECT(t, cc_subscribe(s[i], filters[i], 1, 0, 0) == 1, "SUBACK %s", filters[i]);
	}
	if(!pub) goto out;
	for(k = 0; k < NT; k++) cc_publish_str(pub, topics[k], topics[k], 1, false);
	/* $SYS is published every sys_interval (1 s here): wait for two rounds */
	fm_sleep_ms(2200);
	for(i = 0; i < NF; i++){
		int got[NT] = {0}, sys = 0, other = 0;
		struct ccmsg *m;
		char line[512];
		size_t n;
		if(!s[i]) continue;
		for(int guard = 0; guard < 10000 && (m = cc_wait(s[i], NULL, 200)) != NULL; guard++){
			bool known = false;
			for(k = 0; k < NT; k++){
				if(!strcmp(m->topic, topics[k])){
					got[k]++;
					known = true;
				}
			}
			if(!known){
				if(m->topic[0] == '$') sys++;
				else other++;
			}
			ccmsg_free(m);
		}
		n = (size_t)snprintf(line, sizeof(line), "%-20s:", filters[i]);
		for(k = 0; k < NT; k++){
			bool match = false;
			mosquitto_topic_matches_sub(filters[i], topics[k], &match);
			n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%d", topics[k], got[k]);
			EXPECT(t, got[k] == (match ? 1 : 0), "%s / %s: got %d copies", filters[i], topics[k], got[k]);
		}
		snprintf(line + n, sizeof(line) - n, " $-topics:%s other:%d", sys ? "some" : "none", other);
		tr_add(t, "%s", line);
		if(!strcmp(filters[i], "#") || !strcmp(filters[i], "+") || !strcmp(filters[i], "+/broker/uptime")){
			EXPECT(t, sys == 0, "%s must not match $SYS topics (got %d)", filters[i], sys);
		}
		if(filters[i][0] == '$') EXPECT(t, sys > 0, "%s: no $SYS message in 2 s", filters[i]);
		EXPECT(t, other == 0, "%s: %d messages on unexpected topics", filters[i], other);
	}
out:
	for(i = 0; i < NF; i++) cc_close(s[i]);
	cc_close(pub);
}

static void check_will(int port, struct tr *t)
{
	static const int protos[2] = { MQTT_PROTOCOL_V311, MQTT_PROTOCOL_V5 };
	struct cc *watch = cc_open(port, "cf-will-watch", MQTT_PROTOCOL_V5, true, 0, NULL);
	int p;

	if(!watch) return;
	EXPECT(t, cc_subscribe(watch, "cf/will/#", 1, 0, 0) == 1, "SUBACK");
	for(p = 0; p < 2; p++){
		const char *v = protos[p] == MQTT_PROTOCOL_V5 ? "v5" : "v311";
		char topic[64], payload[64], id[64];
		struct will w;
		struct cc *c;
		struct ccmsg *m;

		/* abrupt: the will is published */
		snprintf(topic, sizeof(topic), "cf/will/%s/abrupt", v);
		snprintf(payload, sizeof(payload), "gone-%s", v);
		w = (struct will){ topic, payload, 1, false };
		snprintf(id, sizeof(id), "cf-will-a-%s", v);
		c = cc_open(port, id, protos[p], true, 0, &w);
		if(c) cc_drop(c);
		m = cc_wait(watch, topic, WAIT_MS);
		EXPECT(t, m && !strcmp((char *)m->payload, payload), "%s: will after an abrupt disconnect", v);
		tr_add(t, "%s abrupt: %s q%d r%d '%s'", v, m ? "will" : "no will", m ? m->qos : -1, m ? m->retain : -1,
				m ? (char *)m->payload : "");
		ccmsg_free(m);

		/* clean disconnect: no will */
		snprintf(topic, sizeof(topic), "cf/will/%s/clean", v);
		w = (struct will){ topic, payload, 1, false };
		snprintf(id, sizeof(id), "cf-will-c-%s", v);
		c = cc_open(port, id, protos[p], true, 0, &w);
		cc_close(c);
		EXPECT(t, cc_quiet(watch, topic, t, "clean disconnect"), "%s: no will after a clean disconnect", v);

		/* retained will: kept for later subscribers */
		snprintf(topic, sizeof(topic), "cf/will/%s/retained", v);
		w = (struct will){ topic, payload, 2, true };
		snprintf(id, sizeof(id), "cf-will-r-%s", v);
		c = cc_open(port, id, protos[p], true, 0, &w);
		if(c) cc_drop(c);
		cc_collect(watch, topic, t, "retained will, live");
		{
			struct cc *late = cc_open(port, "cf-will-late", MQTT_PROTOCOL_V5, true, 0, NULL);
			if(late){
				cc_subscribe(late, topic, 2, 0, 0);
				EXPECT(t, cc_collect(late, topic, t, "retained will, late subscriber") == 1, "%s: retained will kept", v);
				cc_close(late);
			}
		}
		cc_publish_str(watch, topic, "", 1, true);   /* clear it */
		cc_collect(watch, topic, t, "retained will cleared");
	}
	cc_close(watch);
}

static void check_persistent_sessions(int port, struct tr *t)
{
	static const int protos[2] = { MQTT_PROTOCOL_V311, MQTT_PROTOCOL_V5 };
	struct cc *pub = cc_open(port, "cf-ps-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	int p, i, rc;
	char topic[64], payload[32];

	if(!pub) return;
	for(p = 0; p < 2; p++){
		const char *v = protos[p] == MQTT_PROTOCOL_V5 ? "v5" : "v311";
		char id[32], filter[64];
		struct cc *c;
		int n = 0, in_order = 1;

		snprintf(id, sizeof(id), "cf-ps-%s", v);
		snprintf(filter, sizeof(filter), "cf/ps/%s/#", v);
		c = cc_open(port, id, protos[p], false, 300, NULL);
		if(!c) continue;
		tr_add(t, "%s first connect: session present %d", v, c->session_present);
		EXPECT(t, cc_subscribe(c, filter, 1, 0, 0) == 1, "SUBACK");
		cc_close(c);
		/* offline: QoS 1 is queued, QoS 0 is not */
		for(i = 0; i < 5; i++){
			snprintf(topic, sizeof(topic), "cf/ps/%s/%d", v, i);
			snprintf(payload, sizeof(payload), "q1-%d", i);
			rc = cc_publish_str(pub, topic, payload, 1, false);
			if(i == 0) tr_add(t, "%s offline subscriber, PUBACK reason 0x%02x", v, rc);
		}
		snprintf(topic, sizeof(topic), "cf/ps/%s/zero", v);
		cc_publish_str(pub, topic, "q0", 0, false);
		c = cc_new(id, protos[p], false, 300, NULL);
		rc = cc_connect(c, port);
		EXPECT(t, rc == 0 && c->session_present, "%s: reconnect with session present (rc %d, present %d)", v, rc,
				c->session_present);
		tr_add(t, "%s reconnect: rc %d session present %d", v, rc, c->session_present);
		for(i = 0; i < 5; i++){
			struct ccmsg *m = cc_wait(c, filter, WAIT_MS);
			if(!m) break;
			snprintf(payload, sizeof(payload), "q1-%d", i);
			if(strcmp((char *)m->payload, payload) || m->qos != 1) in_order = 0;
			n++;
			ccmsg_free(m);
		}
		tr_add(t, "%s queued QoS 1: %d of 5, in order %d", v, n, in_order);
		EXPECT(t, n == 5 && in_order, "%s: %d of 5 queued QoS 1 delivered (in order %d)", v, n, in_order);
		EXPECT(t, cc_quiet(c, filter, t, "QoS 0 while offline"), "%s: QoS 0 was queued for an offline client", v);
		cc_close(c);
		/* clean start / clean session discards the session */
		c = cc_open(port, id, protos[p], true, 0, NULL);
		if(c){
			tr_add(t, "%s clean reconnect: session present %d", v, c->session_present);
			EXPECT(t, !c->session_present, "%s: clean start reports a session", v);
			cc_close(c);
		}
	}
	/* v5 session expiry: a session of 1 s is gone 2.5 s after the disconnect */
	{
		struct cc *c = cc_open(port, "cf-ps-exp", MQTT_PROTOCOL_V5, false, 1, NULL);
		if(c){
			EXPECT(t, cc_subscribe(c, "cf/ps/exp", 1, 0, 0) == 1, "SUBACK");
			cc_close(c);
			fm_sleep_ms(2500);
			rc = cc_publish_str(pub, "cf/ps/exp", "late", 1, false);
			tr_add(t, "expired session: PUBACK reason 0x%02x", rc);
			c = cc_new("cf-ps-exp", MQTT_PROTOCOL_V5, false, 1, NULL);
			rc = cc_connect(c, port);
			tr_add(t, "expired session: reconnect rc %d session present %d", rc, c->session_present);
			EXPECT(t, rc == 0 && !c->session_present, "session expiry 1 s: session still present after 2.5 s");
			cc_quiet(c, "cf/ps/#", t, "expired session");
			cc_close(c);
		}
		/* and one that has not expired yet (60 s) survives */
		c = cc_open(port, "cf-ps-live", MQTT_PROTOCOL_V5, false, 60, NULL);
		if(c){
			EXPECT(t, cc_subscribe(c, "cf/ps/live", 1, 0, 0) == 1, "SUBACK");
			cc_close(c);
			fm_sleep_ms(1200);
			cc_publish_str(pub, "cf/ps/live", "kept", 1, false);
			c = cc_new("cf-ps-live", MQTT_PROTOCOL_V5, false, 60, NULL);
			rc = cc_connect(c, port);
			tr_add(t, "unexpired session: reconnect rc %d session present %d", rc, c->session_present);
			EXPECT(t, rc == 0 && c->session_present, "session expiry 60 s: session lost");
			EXPECT(t, cc_collect(c, "cf/ps/#", t, "unexpired session") == 1, "queued message of the unexpired session");
			cc_close(c);
		}
	}
	cc_close(pub);
}

static void check_versions(int port, struct tr *t)
{
	struct cc *v3 = cc_open(port, "cf-ver-v3", MQTT_PROTOCOL_V311, true, 0, NULL);
	struct cc *v5 = cc_open(port, "cf-ver-v5", MQTT_PROTOCOL_V5, true, 0, NULL);
	mosquitto_property *props = NULL;
	int q, mid = 0;

	if(!v3 || !v5) goto out;
	EXPECT(t, cc_subscribe(v3, "cf/ver/to3/#", 2, 0, 0) == 2, "v3.1.1 SUBACK");
	EXPECT(t, cc_subscribe(v5, "cf/ver/to5/#", 2, 0, 0) == 2, "v5 SUBACK");
	for(q = 0; q <= 2; q++){
		char topic[32];
		snprintf(topic, sizeof(topic), "cf/ver/to5/%d", q);
		tr_add(t, "v3.1.1 -> v5 qos %d: rc %d", q, cc_publish_str(v3, topic, "from-v311", q, false));
		snprintf(topic, sizeof(topic), "cf/ver/to3/%d", q);
		tr_add(t, "v5 -> v3.1.1 qos %d: rc %d", q, cc_publish_str(v5, topic, "from-v5", q, false));
	}
	EXPECT(t, cc_collect(v5, "cf/ver/to5/#", t, "v5 received") == 3, "v5 subscriber got 3");
	EXPECT(t, cc_collect(v3, "cf/ver/to3/#", t, "v3.1.1 received") == 3, "v3.1.1 subscriber got 3");
	/* v5 properties travel v5 -> v5 (user property) */
	mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "origin", "conformance");
	mosquitto_property_add_string(&props, MQTT_PROP_CONTENT_TYPE, "text/plain");
	cc_publish_async(v5, "cf/ver/to5/props", "p", 1, 1, false, props, &mid);
	cc_wait_pub(v5, mid);
	mosquitto_property_free_all(&props);
	{
		struct cc *v5b = cc_open(port, "cf-ver-v5b", MQTT_PROTOCOL_V5, true, 0, NULL);
		if(v5b){
			cc_subscribe(v5b, "cf/ver/to5/props2", 1, 0, 0);
			mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "origin", "conformance");
			cc_publish_async(v5, "cf/ver/to5/props2", "p2", 2, 1, false, props, &mid);
			cc_wait_pub(v5, mid);
			mosquitto_property_free_all(&props);
			EXPECT(t, cc_collect(v5b, "cf/ver/to5/props2", t, "user property") == 1, "user property message");
			cc_close(v5b);
		}
	}
	/* v5 is subscribed to cf/ver/to5/# itself (no no-local): both messages */
	EXPECT(t, cc_collect(v5, "cf/ver/#", t, "v5 props") == 2, "v5 -> v5 messages with properties");
out:
	cc_close(v3);
	cc_close(v5);
}

static void check_unsubscribe(int port, struct tr *t)
{
	struct cc *s = cc_open(port, "cf-uns-sub", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *s3 = cc_open(port, "cf-uns-sub3", MQTT_PROTOCOL_V311, true, 0, NULL);
	struct cc *pub = cc_open(port, "cf-uns-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	if(!s || !s3 || !pub) goto out;
	EXPECT(t, cc_subscribe(s, "cf/uns/#", 1, 0, 0) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(s, "cf/uns/keep", 1, 0, 0) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(s3, "cf/uns/#", 1, 0, 0) == 1, "SUBACK");
	cc_publish_str(pub, "cf/uns/a", "before", 1, false);
	EXPECT(t, cc_collect(s, "cf/uns/#", t, "v5 before unsubscribe") == 1, "delivered before unsubscribe");
	EXPECT(t, cc_collect(s3, "cf/uns/#", t, "v3.1.1 before unsubscribe") == 1, "delivered before unsubscribe");
	EXPECT(t, cc_unsubscribe(s, "cf/uns/#") == 0, "UNSUBACK");
	EXPECT(t, cc_unsubscribe(s3, "cf/uns/#") == 0, "UNSUBACK");
	EXPECT(t, cc_unsubscribe(s, "cf/uns/never-subscribed") == 0, "UNSUBACK for an unknown filter");
	cc_publish_str(pub, "cf/uns/a", "after", 1, false);
	cc_publish_str(pub, "cf/uns/keep", "kept", 1, false);
	EXPECT(t, cc_collect(s, "cf/uns/#", t, "v5 after unsubscribe") == 1, "only the remaining subscription delivers");
	EXPECT(t, cc_quiet(s3, "cf/uns/#", t, "v3.1.1 after unsubscribe"), "nothing after unsubscribe");
	tr_add(t, "PUBACK with no subscriber left: 0x%02x", cc_publish_str(pub, "cf/uns/a", "x", 1, false));
out:
	cc_close(s);
	cc_close(s3);
	cc_close(pub);
}

static void check_overlapping(int port, struct tr *t)
{
	struct cc *s5 = cc_open(port, "cf-ov-v5", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *s3 = cc_open(port, "cf-ov-v3", MQTT_PROTOCOL_V311, true, 0, NULL);
	struct cc *pub = cc_open(port, "cf-ov-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	int q;

	if(!s5 || !s3 || !pub) goto out;
	EXPECT(t, cc_subscribe(s5, "cf/ov/#", 1, 0, 11) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(s5, "cf/ov/+", 2, 0, 22) == 2, "SUBACK");
	EXPECT(t, cc_subscribe(s5, "cf/ov/x", 0, 0, 33) == 0, "SUBACK");
	EXPECT(t, cc_subscribe(s3, "cf/ov/#", 1, 0, 0) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(s3, "cf/ov/+", 2, 0, 0) == 2, "SUBACK");
	for(q = 0; q <= 2; q++){
		char payload[16];
		struct ccmsg *m;
		int copies = 0;
		snprintf(payload, sizeof(payload), "ov%d", q);
		cc_publish_str(pub, "cf/ov/x", payload, q, false);
		while((m = cc_wait(s5, "cf/ov/#", QUIET_MS)) != NULL){
			char ids[64] = "";
			size_t n = 0;
			/* sort the identifiers: their order within a message is not part of the contract */
			for(int a = 0; a < m->n_sub_ids; a++) for(int b = a + 1; b < m->n_sub_ids; b++){
				if(m->sub_ids[b] < m->sub_ids[a]){ int x = m->sub_ids[a]; m->sub_ids[a] = m->sub_ids[b]; m->sub_ids[b] = x; }
			}
			for(int a = 0; a < m->n_sub_ids; a++) n += (size_t)snprintf(ids + n, sizeof(ids) - n, "%d,", m->sub_ids[a]);
			tr_add(t, "v5 pub qos %d: copy q%d ids %s", q, m->qos, ids);
			copies++;
			ccmsg_free(m);
		}
		EXPECT(t, copies >= 1, "v5 overlapping subscriptions: %d copies", copies);
		copies = cc_collect(s3, "cf/ov/#", t, "v3.1.1 overlapping");
		EXPECT(t, copies >= 1, "v3.1.1 overlapping subscriptions: %d copies", copies);
	}
out:
	cc_close(s5);
	cc_close(s3);
	cc_close(pub);
}

static void check_large_payload(int port, struct tr *t)
{
	const int size = 1024 * 1024;
	struct cc *s = cc_open(port, "cf-big-sub", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *pub = cc_open(port, "cf-big-pub", MQTT_PROTOCOL_V311, true, 0, NULL);
	uint8_t *data = malloc((size_t)size);
	int q, i;

	if(!s || !pub || !data) goto out;
	for(i = 0; i < size; i++) data[i] = (uint8_t)((i * 2654435761u) >> 13);
	EXPECT(t, cc_subscribe(s, "cf/big/#", 2, 0, 0) == 2, "SUBACK");
	for(q = 1; q <= 2; q++){
		char topic[32];
		struct ccmsg *m;
		int rc;
		snprintf(topic, sizeof(topic), "cf/big/%d", q);
		rc = cc_publish(pub, topic, data, size, q, false);
		m = cc_wait(s, topic, 10000);
		tr_add(t, "1 MiB qos %d: publish rc %d, received %d bytes q%d, identical %d", q, rc, m ? m->len : -1,
				m ? m->qos : -1, m && m->len == size && !memcmp(m->payload, data, (size_t)size));
		EXPECT(t, rc == 0 && m && m->len == size && !memcmp(m->payload, data, (size_t)size), "1 MiB at QoS %d", q);
		ccmsg_free(m);
	}
	/* retained 1 MiB */
	cc_publish(pub, "cf/big/retained", data, size, 1, true);
	cc_collect(s, "cf/big/retained", t, "1 MiB retained live");
	{
		struct cc *late = cc_open(port, "cf-big-late", MQTT_PROTOCOL_V5, true, 0, NULL);
		if(late){
			struct ccmsg *m;
			cc_subscribe(late, "cf/big/retained", 1, 0, 0);
			m = cc_wait(late, "cf/big/retained", 10000);
			EXPECT(t, m && m->len == size && m->retain && !memcmp(m->payload, data, (size_t)size), "1 MiB retained");
			tr_add(t, "1 MiB retained on subscribe: %d bytes r%d", m ? m->len : -1, m ? m->retain : -1);
			ccmsg_free(m);
			cc_close(late);
		}
	}
	cc_publish(pub, "cf/big/retained", "", 0, 1, true);
	cc_collect(s, "cf/big/retained", t, "1 MiB retained cleared");
out:
	free(data);
	cc_close(s);
	cc_close(pub);
}

/* $CONTROL topics of other plugins: not routed to subscribers, answered by
 * nobody when no plugin serves them. */
static void check_other_control(int port, struct tr *t)
{
	static const char *const topics[] = { "$CONTROL/dynamic-security/v1", "$CONTROL/other-plugin/v1",
			"$CONTROL/fleetmq/v2", "$CONTROL" };
	struct cc *s = cc_open(port, "cf-ctl-sub", MQTT_PROTOCOL_V5, true, 0, NULL);
	struct cc *pub = cc_open(port, "cf-ctl-pub", MQTT_PROTOCOL_V5, true, 0, NULL);
	mosquitto_property *props = NULL;
	size_t i;

	if(!s || !pub) goto out;
	tr_add(t, "subscribe $CONTROL/#: %d", cc_subscribe(s, "$CONTROL/#", 1, 0, 0));
	tr_add(t, "subscribe cf/ctl/response: %d", cc_subscribe(s, "cf/ctl/response", 1, 0, 0));
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "cf/ctl/response");
	mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, "c1", 2);
	for(i = 0; i < sizeof(topics) / sizeof(topics[0]); i++){
		int mid = 0, rc;
		rc = cc_publish_async(pub, topics[i], "{\"commands\":[{\"command\":\"listClients\"}]}", 40, 1, false, props, &mid);
		tr_add(t, "publish %s: %d, PUBACK 0x%02x", topics[i], rc, rc == 0 ? cc_wait_pub(pub, mid) : -1);
	}
	mosquitto_property_free_all(&props);
	{
		/* "$CONTROL" itself is an ordinary topic (no "$CONTROL/" prefix): whatever
		 * happens to it must just be the same on both brokers */
		struct ccmsg *m;
		int routed = 0;
		while((m = cc_wait(s, NULL, QUIET_MS)) != NULL){
			tr_add(t, "received %s '%.40s'", m->topic, (char *)m->payload);
			if(!strncmp(m->topic, "$CONTROL/", 9) || !strcmp(m->topic, "cf/ctl/response")) routed++;
			ccmsg_free(m);
		}
		EXPECT(t, routed == 0, "%d $CONTROL/... messages were routed or answered", routed);
	}
out:
	cc_close(s);
	cc_close(pub);
}

/* =========================================================================
 * dynamic-security next to fleetmq: its $CONTROL API answers identically
 * ========================================================================= */

static char g_dynsec_dir[B_COUNT][256];
static struct fm_broker g_d[B_COUNT];
static bool g_dynsec_ok;

/* Both brokers load dynamic-security; the second one also fleetmq, after
 * it (docs/CONFIG.md: with other_topics allow, load fleetmq after any other
 * ACL plugin). dynsec has an anonymous group, so it decides every access of
 * the (anonymous) test client itself. */
static int dynsec_setup(int i)
{
	char path[320], yaml[320], conf[1400];
	FILE *f;
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;

	snprintf(g_dynsec_dir[i], sizeof(g_dynsec_dir[i]), "%s/fleetmq-conf-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if(!mkdtemp(g_dynsec_dir[i])) return -1;
	chmod(g_dynsec_dir[i], 0755);
	snprintf(path, sizeof(path), "%s/dynsec.json", g_dynsec_dir[i]);
	snprintf(yaml, sizeof(yaml), "%s/fleetmq.yaml", g_dynsec_dir[i]);
	f = fopen(path, "w");
	if(!f) return -1;
	fputs("{\"defaultACLAccess\":{\"publishClientSend\":false,\"publishClientReceive\":true,\"subscribe\":false,"
			"\"unsubscribe\":true},\"clients\":[],"
			"\"groups\":[{\"groupname\":\"anon\",\"roles\":[{\"rolename\":\"anon-role\"}]}],"
			"\"roles\":[{\"rolename\":\"anon-role\",\"acls\":["
			"{\"acltype\":\"publishClientSend\",\"topic\":\"$CONTROL/dynamic-security/#\",\"allow\":true},"
			"{\"acltype\":\"publishClientReceive\",\"topic\":\"$CONTROL/dynamic-security/#\",\"allow\":true},"
			"{\"acltype\":\"subscribePattern\",\"topic\":\"$CONTROL/dynamic-security/#\",\"allow\":true},"
			"{\"acltype\":\"subscribePattern\",\"topic\":\"cf/dyn/#\",\"allow\":true},"
			"{\"acltype\":\"publishClientSend\",\"topic\":\"cf/dyn/#\",\"allow\":true}]}],"
			"\"anonymousGroup\":\"anon\"}\n", f);
	fclose(f);
	chmod(path, 0644);
	f = fopen(yaml, "w");
	if(!f) return -1;
	fprintf(f, "store:\n  path: %s/fleetmq.db\nsecurity:\n  operator_usernames: [ops]\n  other_topics: defer\n", g_dynsec_dir[i]);
	fclose(f);
	chmod(yaml, 0644);
	if(geteuid() == 0){
		struct passwd *pw = getpwnam("mosquitto");
		if(pw){
			if(chown(g_dynsec_dir[i], pw->pw_uid, pw->pw_gid) != 0 || chown(path, pw->pw_uid, pw->pw_gid) != 0) return -1;
		}
	}
	snprintf(conf, sizeof(conf), "plugin %s\nplugin_opt_config_file %s\n%s%s%s%s", DYNSEC_PLUGIN, path,
			i == B_PLUGIN ? "plugin " FLEETMQ_PLUGIN_PATH "\n" : "", i == B_PLUGIN ? "plugin_opt_config_file " : "",
			i == B_PLUGIN ? yaml : "", i == B_PLUGIN ? "\n" : "");
	o.with_plugin = false;      /* plugins in our order, from extra_conf */
	o.extra_conf = conf;
	return fm_broker_start(&g_d[i], &o);
}

static void dynsec_cleanup(void)
{
	char cmd[600];
	for(int i = 0; i < B_COUNT; i++){
		fm_broker_cleanup(&g_d[i]);
		if(g_dynsec_dir[i][0] && !getenv("FLEETMQ_E2E_KEEP")){
			snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dynsec_dir[i]);
			if(system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dynsec_dir[i]);
		}
	}
}

static void check_dynsec(int port, struct tr *t)
{
	static const char *const requests[] = {
		"{\"commands\":[{\"command\":\"listRoles\"}]}",
		"{\"commands\":[{\"command\":\"createRole\",\"rolename\":\"r1\",\"textname\":\"conformance\"},"
			"{\"command\":\"addRoleACL\",\"rolename\":\"r1\",\"acltype\":\"subscribePattern\",\"topic\":\"cf/dyn/#\",\"allow\":true}]}",
		"{\"commands\":[{\"command\":\"getRole\",\"rolename\":\"r1\"},{\"command\":\"listRoles\",\"verbose\":true}]}",
		"{\"commands\":[{\"command\":\"createGroup\",\"groupname\":\"g1\"},{\"command\":\"addGroupRole\",\"groupname\":\"g1\",\"rolename\":\"r1\"},"
			"{\"command\":\"getGroup\",\"groupname\":\"g1\"}]}",
		"{\"commands\":[{\"command\":\"getRole\",\"rolename\":\"nope\"},{\"command\":\"noSuchCommand\"}]}",
		"{\"commands\":[{\"command\":\"deleteGroup\",\"groupname\":\"g1\"},{\"command\":\"deleteRole\",\"rolename\":\"r1\"},"
			"{\"command\":\"listGroups\"},{\"command\":\"getDefaultACLAccess\"}]}",
		"not json",
	};
	struct cc *c = cc_open(port, "cf-dyn", MQTT_PROTOCOL_V5, true, 0, NULL);
	mosquitto_property *props = NULL;
	size_t i;

	if(!c) return;
	EXPECT(t, cc_subscribe(c, "cf/dyn/response", 1, 0, 0) == 1, "SUBACK");
	EXPECT(t, cc_subscribe(c, "$CONTROL/dynamic-security/#", 1, 0, 0) == 1, "SUBACK");
	/* dynsec's own ACL decisions are unchanged */
	tr_add(t, "subscribe cf/denied/#: 0x%02x", cc_subscribe(c, "cf/denied/#", 1, 0, 0));
	tr_add(t, "publish cf/denied/x: 0x%02x", cc_publish_str(c, "cf/denied/x", "x", 1, false));
	tr_add(t, "publish cf/dyn/x: 0x%02x", cc_publish_str(c, "cf/dyn/x", "x", 1, false));
	mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, "cf/dyn/response");
	for(i = 0; i < sizeof(requests) / sizeof(requests[0]); i++){
		int mid = 0;
		struct ccmsg *m;
		cc_publish_async(c, "$CONTROL/dynamic-security/v1", requests[i], (int)strlen(requests[i]), 1, false, props, &mid);
		tr_add(t, "request %zu PUBACK 0x%02x", i, cc_wait_pub(c, mid));
		/* dynsec answers on $CONTROL/dynamic-security/v1/response */
		m = cc_wait(c, NULL, WAIT_MS);
		EXPECT(t, m != NULL, "no dynamic-security response to request %zu", i);
		if(m) tr_add(t, "response on %s: %s", m->topic, (char *)m->payload);
		ccmsg_free(m);
	}
	mosquitto_property_free_all(&props);
	cc_quiet(c, NULL, t, "after the requests");
	cc_close(c);
}

/* =========================================================================
 * tests
 * ========================================================================= */

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	o.with_plugin = false;
	o.extra_conf = "sys_interval 1";
	if(fm_broker_start(&g_b[B_VANILLA], &o) != 0) return -1;
	o = (struct fm_broker_opts)FM_BROKER_OPTS_INITIALIZER;
	o.yaml = FM_YAML_STORE "security:\n  operator_usernames: [ops]\n  other_topics: allow\n";
	o.extra_conf = "sys_interval 1";
	if(fm_broker_start(&g_b[B_PLUGIN], &o) != 0) return -1;
	return 0;
}

static int suite_cleanup(void)
{
	for(int i = 0; i < B_COUNT; i++){
		if(CU_get_number_of_failures() > 0) fm_broker_dump_log(&g_b[i], 30);
		fm_broker_cleanup(&g_b[i]);
	}
	dynsec_cleanup();
	return 0;
}

static void test_conformance_qos(void) { run_both(check_qos); }
static void test_conformance_retained(void) { run_both(check_retained); }
static void test_conformance_wildcards(void) { run_both(check_wildcards); }
static void test_conformance_will(void) { run_both(check_will); }
static void test_conformance_persistent_sessions(void) { run_both(check_persistent_sessions); }
static void test_conformance_v311_and_v5(void) { run_both(check_versions); }
static void test_conformance_unsubscribe(void) { run_both(check_unsubscribe); }
static void test_conformance_overlapping(void) { run_both(check_overlapping); }
static void test_conformance_large_payload(void) { run_both(check_large_payload); }
static void test_conformance_other_control(void) { run_both(check_other_control); }

static void test_conformance_dynsec_control(void)
{
	struct tr t[B_COUNT];
	int i;

	if(access(DYNSEC_PLUGIN, R_OK) != 0){
		fprintf(stderr, "\n    %s not installed: skipped\n", DYNSEC_PLUGIN);
		return;
	}
	g_dynsec_ok = dynsec_setup(B_VANILLA) == 0 && dynsec_setup(B_PLUGIN) == 0;
	FM_ASSERT_FATAL(g_dynsec_ok, "brokers with the dynamic-security plugin did not start");
	memset(t, 0, sizeof(t));
	for(i = 0; i < B_COUNT; i++){
		t[i].broker = broker_name[i];
		g_tr = &t[i];
		check_dynsec(g_d[i].port, &t[i]);
		g_tr = NULL;
		tr_report(&t[i]);
	}
	FM_ASSERT(t[0].buf && t[1].buf && !strcmp(t[0].buf, t[1].buf),
			"dynamic-security answers differently with fleetmq loaded:\n--- vanilla ---\n%.900s\n--- fleetmq ---\n%.900s",
			t[0].buf ? t[0].buf : "", t[1].buf ? t[1].buf : "");
	if(t[0].buf && t[1].buf && strcmp(t[0].buf, t[1].buf)) fprintf(stderr, "\n%s\n---\n%s", t[0].buf, t[1].buf);
	tr_free(&t[0]);
	tr_free(&t[1]);
	dynsec_cleanup();
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_conformance_wildcards", test_conformance_wildcards },
		{ "test_conformance_qos", test_conformance_qos },
		{ "test_conformance_retained", test_conformance_retained },
		{ "test_conformance_will", test_conformance_will },
		{ "test_conformance_persistent_sessions", test_conformance_persistent_sessions },
		{ "test_conformance_v311_and_v5", test_conformance_v311_and_v5 },
		{ "test_conformance_unsubscribe", test_conformance_unsubscribe },
		{ "test_conformance_overlapping", test_conformance_overlapping },
		{ "test_conformance_large_payload", test_conformance_large_payload },
		{ "test_conformance_other_control", test_conformance_other_control },
		{ "test_conformance_dynsec_control", test_conformance_dynsec_control },
		{ NULL, NULL },
	};
	mosquitto_lib_init();
	return fm_cunit_main("e2e_conformance", suite_init, suite_cleanup, tests);
}
