/*
 * test_e2e_presence.c - retained presence on fleet/{id}/presence, end to end:
 * ONLINE on hello, OFFLINE on clean disconnect, socket drop and keepalive
 * timeout, SILENT after presence.silence_threshold_ms without traffic and
 * back to ONLINE, and no OFFLINE across a session takeover.
 *
 * One broker for the suite, silence threshold 1500 ms, check every 100 ms.
 * An operator "ops" watches fleet/+/presence; a second operator "ops2"
 * connects fresh to read the retained state, as a dashboard would.
 * Abrupt disconnects use the harness's raw socket client, which can vanish
 * without an MQTT DISCONNECT. The last test runs its own broker with
 * presence.retain false (events only).
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#define PRESENCE_YAML FM_YAML_STORE \
	"security:\n  operator_usernames: [ops, ops2]\n  other_topics: allow\n" \
	FM_YAML_PRESENCE

static struct fm_broker g_broker;

static const char *const PRESENCE_FILTERS[] = { "fleet/+/presence", NULL };

#define ONLINE FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE
#define OFFLINE FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_OFFLINE
#define SILENT FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_SILENT

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	o.yaml = PRESENCE_YAML;
	if(fm_broker_start(&g_broker, &o) != 0){
		fm_broker_cleanup(&g_broker);
		return -1;
	}
	return 0;
}

static int suite_cleanup(void)
{
	if(CU_get_number_of_failures() > 0) fm_broker_dump_log(&g_broker, 60);
	fm_broker_cleanup(&g_broker);
	return 0;
}

/* ---- helpers ----------------------------------------------------------- */

static struct fm_client *observer(void)
{
	return fm_operator_connect(g_broker.port, "ops", PRESENCE_FILTERS);
}

/* What a fresh subscriber sees: the retained presence of id (caller
 * frees), or NULL if there is none. *retained gets the retain flag. */
static Fleetmq__V1__Presence *retained_presence(const char *id, bool *retained)
{
	char topic[128];
	const char *const filters[] = { fm_topic(topic, sizeof(topic), id, "presence"), NULL };
	struct fm_client *c = fm_operator_connect(g_broker.port, "ops2", filters);
	Fleetmq__V1__Presence *p = NULL;
	struct fm_msg *m;

	if(!c) return NULL;
	m = fm_client_wait_message(c, topic, 1500);
	if(m){
		p = fm_pb_presence(m);
		if(retained) *retained = m->retain;
		fm_msg_free(m);
	}
	fm_client_destroy(c);
	return p;
}

/* The retained presence of id must be `state`. */
static void assert_retained(const char *id, int state)
{
	bool retained = false;
	Fleetmq__V1__Presence *p = retained_presence(id, &retained);
	FM_ASSERT(p != NULL, "no retained presence for %s (expected %s)", id, fm_presence_state_name(state));
	if(p){
		FM_ASSERT(p->state == (Fleetmq__V1__PresenceState)state, "retained presence of %s is %s, expected %s", id,
				fm_presence_state_name(p->state), fm_presence_state_name(state));
		FM_ASSERT(retained, "presence of %s not delivered as retained", id);
		fleetmq__v1__presence__free_unpacked(p, NULL);
	}
}

static bool in_range(uint64_t ts, uint64_t lo, uint64_t hi)
{
	return ts + 2000 >= lo && ts <= hi + 2000;
}

/* Presence messages of id in the observer's queue that are in `state`;
 * consumes every queued presence of id. */
static int count_presence_state(struct fm_client *obs, const char *id, int state)
{
	char topic[128];
	struct fm_msg *m;
	int n = 0;
	fm_topic(topic, sizeof(topic), id, "presence");
	while((m = fm_client_wait_message(obs, topic, 0)) != NULL){
		Fleetmq__V1__Presence *p = fm_pb_presence(m);
		if(p && p->state == (Fleetmq__V1__PresenceState)state) n++;
		if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
		fm_msg_free(m);
	}
	return n;
}

static int raw_device_online(const char *id, int keepalive_s)
{
	char topic[128];
	size_t len;
	uint8_t *buf;
	int fd = fm_raw_connect(g_broker.port, id, id, keepalive_s, FM_TIMEOUT_MS);
	if(fd < 0) return -1;
	buf = fm_pb_hello(0, "raw-sensor", "raw-1.0", &len);
	if(fm_raw_publish(fd, fm_topic(topic, sizeof(topic), id, "hello"), buf, len) != 0){
		fm_raw_drop(fd);
		fd = -1;
	}
	free(buf);
	return fd;
}

/* ---- tests ------------------------------------------------------------- */

static void test_presence_online_on_hello(void)
{
	const char *id = "pr-online";
	struct fm_client *obs = observer();
	struct fm_client *dev;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Presence *p;
	bool retained = true;
	uint64_t t0 = fm_wall_ms(), t1;

	CU_ASSERT_FATAL(obs != NULL);
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	p = fm_wait_presence(obs, id, ONLINE, &retained, FM_TIMEOUT_MS);
	t1 = fm_wall_ms();
	FM_ASSERT(p != NULL, "no ONLINE presence after hello");
	if(p){
		FM_ASSERT_STR_EQ(p->device_type, "e2e-sensor");
		FM_ASSERT_STR_EQ(p->agent_version, "e2e-1.0");
		FM_ASSERT(in_range(p->since_ms, t0, t1), "since_ms %llu not in [%llu, %llu]",
				(unsigned long long)p->since_ms, (unsigned long long)t0, (unsigned long long)t1);
		FM_ASSERT(in_range(p->connected_at_ms, t0, t1), "connected_at_ms %llu not in [%llu, %llu]",
				(unsigned long long)p->connected_at_ms, (unsigned long long)t0, (unsigned long long)t1);
		FM_ASSERT(in_range(p->last_seen_ms, t0, t1), "last_seen_ms %llu not in [%llu, %llu]",
				(unsigned long long)p->last_seen_ms, (unsigned long long)t0, (unsigned long long)t1);
		FM_ASSERT(p->connected_at_ms <= p->last_seen_ms, "connected_at_ms %llu > last_seen_ms %llu",
				(unsigned long long)p->connected_at_ms, (unsigned long long)p->last_seen_ms);
		fleetmq__v1__presence__free_unpacked(p, NULL);
	}
	/* Published retained: a dashboard connecting now sees it. */
	assert_retained(id, ONLINE);
	fm_client_destroy(dev);
	fm_client_destroy(obs);
}

static void test_presence_offline_on_clean_disconnect(void)
{
	const char *id = "pr-clean";
	struct fm_client *obs = observer();
	struct fm_client *dev;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Presence *on, *off;

	CU_ASSERT_FATAL(obs != NULL);
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	on = fm_wait_presence(obs, id, ONLINE, NULL, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(on != NULL);

	FM_ASSERT_EQ(fm_client_disconnect(dev), 0);
	off = fm_wait_presence(obs, id, OFFLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(off != NULL, "no OFFLINE after a clean disconnect");
	if(off){
		FM_ASSERT(off->since_ms >= on->since_ms, "OFFLINE since %llu < ONLINE since %llu",
				(unsigned long long)off->since_ms, (unsigned long long)on->since_ms);
		FM_ASSERT_EQ(off->connected_at_ms, on->connected_at_ms);
		FM_ASSERT(off->last_seen_ms >= on->connected_at_ms, "last_seen_ms %llu < connected_at_ms %llu",
				(unsigned long long)off->last_seen_ms, (unsigned long long)on->connected_at_ms);
		FM_ASSERT_STR_EQ(off->device_type, "e2e-sensor");
		fleetmq__v1__presence__free_unpacked(off, NULL);
	}
	fleetmq__v1__presence__free_unpacked(on, NULL);
	assert_retained(id, OFFLINE);
	fm_client_destroy(dev);
	fm_client_destroy(obs);
}

static void test_presence_offline_on_socket_drop(void)
{
	const char *id = "pr-drop";
	struct fm_client *obs = observer();
	Fleetmq__V1__Presence *p;
	int fd;

	CU_ASSERT_FATAL(obs != NULL);
	fd = raw_device_online(id, 60);
	CU_ASSERT_FATAL(fd >= 0);
	p = fm_wait_presence(obs, id, ONLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no ONLINE after hello (raw client)");
	if(p){
		FM_ASSERT_STR_EQ(p->device_type, "raw-sensor");
		fleetmq__v1__presence__free_unpacked(p, NULL);
	}

	fm_raw_drop(fd);   /* no DISCONNECT packet */
	p = fm_wait_presence(obs, id, OFFLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no OFFLINE after the socket was closed without DISCONNECT");
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
	assert_retained(id, OFFLINE);
	fm_client_destroy(obs);
}

static void test_presence_offline_on_keepalive_timeout(void)
{
	const char *id = "pr-keepalive";
	struct fm_client *obs = observer();
	Fleetmq__V1__Presence *p;
	uint64_t t0;
	int fd;

	CU_ASSERT_FATAL(obs != NULL);
	fd = raw_device_online(id, 1);   /* broker gives up after 1.5 keepalives */
	CU_ASSERT_FATAL(fd >= 0);
	p = fm_wait_presence(obs, id, ONLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no ONLINE after hello (raw client)");
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);

	/* Hold the socket open but stay mute: no PINGREQ, no DISCONNECT. */
	t0 = fm_mono_ms();
	p = fm_wait_presence(obs, id, OFFLINE, NULL, 6000);
	FM_ASSERT(p != NULL, "no OFFLINE within 6 s of a keepalive timeout (keepalive 1 s)");
	FM_ASSERT(fm_mono_ms() - t0 >= 900, "OFFLINE after %llu ms, before the keepalive expired",
			(unsigned long long)(fm_mono_ms() - t0));
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
	fm_raw_drop(fd);
	assert_retained(id, OFFLINE);
	fm_client_destroy(obs);
}

static void test_presence_silent_then_online(void)
{
	const char *id = "pr-silent";
	char topic[128];
	struct fm_client *obs = observer();
	struct fm_client *dev;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Presence *silent, *back;
	uint64_t t_hello;
	size_t len;
	uint8_t *buf;
	int rc;

	CU_ASSERT_FATAL(obs != NULL);
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	t_hello = fm_mono_ms();
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	silent = fm_wait_presence(obs, id, SILENT, NULL, FM_DEFAULT_SILENCE_MS + 3000);
	FM_ASSERT(silent != NULL, "no SILENT within %d ms of the last message", FM_DEFAULT_SILENCE_MS + 3000);
	if(!silent){
		fm_client_destroy(dev);
		fm_client_destroy(obs);
		return;
	}
	FM_ASSERT(fm_mono_ms() - t_hello >= FM_DEFAULT_SILENCE_MS - 100, "SILENT after only %llu ms (threshold %d)",
			(unsigned long long)(fm_mono_ms() - t_hello), FM_DEFAULT_SILENCE_MS);
	FM_ASSERT_STR_EQ(silent->device_type, "e2e-sensor");
	assert_retained(id, SILENT);

	/* Any message brings it back. */
	buf = fm_pb_telemetry(1, "sys.cpu.percent", 3.0, &len);
	rc = fm_client_publish_wait(dev, fm_topic(topic, sizeof(topic), id, "telemetry"), buf, len, 1, false,
			FM_TIMEOUT_MS);
	free(buf);
	FM_ASSERT(rc >= 0 && rc < 0x80, "telemetry PUBACK %d", rc);
	back = fm_wait_presence(obs, id, ONLINE, NULL, 1500);
	FM_ASSERT(back != NULL, "no ONLINE after the silent device sent telemetry");
	if(back){
		FM_ASSERT(back->since_ms >= silent->since_ms, "ONLINE since %llu < SILENT since %llu",
				(unsigned long long)back->since_ms, (unsigned long long)silent->since_ms);
		FM_ASSERT(back->last_seen_ms >= silent->since_ms, "last_seen_ms %llu not updated (SILENT since %llu)",
				(unsigned long long)back->last_seen_ms, (unsigned long long)silent->since_ms);
		FM_ASSERT_EQ(back->connected_at_ms, silent->connected_at_ms);
		fleetmq__v1__presence__free_unpacked(back, NULL);
	}
	fleetmq__v1__presence__free_unpacked(silent, NULL);
	assert_retained(id, ONLINE);
	fm_client_destroy(dev);
	fm_client_destroy(obs);
}

static void test_presence_active_device_never_silent(void)
{
	const char *id = "pr-active";
	char topic[128];
	struct fm_client *obs = observer();
	struct fm_client *dev;
	Fleetmq__V1__HelloAccepted *ha;
	uint64_t until;

	CU_ASSERT_FATAL(obs != NULL);
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	fm_topic(topic, sizeof(topic), id, "telemetry");
	until = fm_mono_ms() + 2 * FM_DEFAULT_SILENCE_MS;
	for(uint64_t seq = 1; fm_mono_ms() < until; seq++){
		size_t len;
		uint8_t *buf = fm_pb_telemetry(seq, "app.queue_depth", (double)seq, &len);
		fm_client_publish(dev, topic, buf, len, 1, false, NULL);
		free(buf);
		fm_sleep_ms(FM_DEFAULT_SILENCE_MS / 4);
	}
	fm_sleep_ms(200);
	FM_ASSERT_EQ(count_presence_state(obs, id, SILENT), 0);
	assert_retained(id, ONLINE);
	fm_client_destroy(dev);
	fm_client_destroy(obs);
}

static void test_presence_session_takeover_stays_online(void)
{
	const char *id = "pr-takeover";
	struct fm_client *obs = observer();
	struct fm_client *a, *b;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Presence *p;
	bool retained = false;

	CU_ASSERT_FATAL(obs != NULL);
	a = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(a != NULL);
	ha = fm_device_hello(a, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	p = fm_wait_presence(obs, id, ONLINE, NULL, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(p != NULL);
	fleetmq__v1__presence__free_unpacked(p, NULL);

	/* Same client id connects again while the first connection is open:
	 * the broker takes the session over and closes connection a
	 * (DISCONNECT of a fires after the new connection authenticated). */
	b = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(b != NULL);
	FM_ASSERT(fm_client_wait_disconnect(a, FM_TIMEOUT_MS) >= 0, "old connection not taken over");
	fm_sleep_ms(700);
	FM_ASSERT_EQ(count_presence_state(obs, id, OFFLINE), 0);
	p = retained_presence(id, &retained);
	FM_ASSERT(p != NULL, "no retained presence after takeover");
	if(p){
		FM_ASSERT(p->state != OFFLINE, "device left %s by a session takeover (before its new hello)",
				fm_presence_state_name(p->state));
		fleetmq__v1__presence__free_unpacked(p, NULL);
	}

	/* The new connection says hello: ONLINE, and still never OFFLINE. */
	ha = fm_device_hello(b, id, 0, FM_TIMEOUT_MS);
	FM_ASSERT(ha != NULL, "hello on the new connection not accepted");
	if(ha) fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	fm_sleep_ms(300);
	FM_ASSERT_EQ(count_presence_state(obs, id, OFFLINE), 0);
	assert_retained(id, ONLINE);

	/* The plugin still tracks the new connection: its disconnect counts. */
	FM_ASSERT_EQ(fm_client_disconnect(b), 0);
	p = fm_wait_presence(obs, id, OFFLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no OFFLINE when the new connection disconnected");
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
	assert_retained(id, OFFLINE);
	fm_client_destroy(a);
	fm_client_destroy(b);
	fm_client_destroy(obs);
}

/* presence.retain: false - presence is an event stream: subscribers see the
 * transitions, a late subscriber gets nothing replayed, and the state is read
 * with describeDevice. Own broker (the suite's publishes retained). */
static const char *device_presence(struct fm_client *ops, const char *id)
{
	static char state[32];
	cJSON *r = fm_control_commandf(ops, "{\"command\":\"describeDevice\",\"deviceId\":\"%s\"}", id);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "data"), "device"), "presence");

	snprintf(state, sizeof(state), "%s", cJSON_IsString(p) ? p->valuestring : "(none)");
	cJSON_Delete(r);
	return state;
}

static void test_presence_events_only_when_not_retained(void)
{
	const char *id = "pr-events";
	struct fm_broker b;
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	char topic[128];
	const char *const filters[] = { fm_topic(topic, sizeof(topic), id, "presence"), NULL };
	struct fm_client *obs = NULL, *dev = NULL, *late = NULL, *ops = NULL;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Presence *p;
	struct fm_msg *m;

	o.yaml = PRESENCE_YAML "  retain: false\n";
	if(fm_broker_start(&b, &o) != 0){
		fm_broker_cleanup(&b);
		CU_FAIL_FATAL("broker with presence.retain false did not start");
	}
	obs = fm_operator_connect(b.port, "ops", filters);
	dev = fm_device_connect(b.port, id);
	FM_ASSERT(obs && dev, "clients did not connect");
	if(!obs || !dev) goto out;
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	FM_ASSERT(ha != NULL, "hello not accepted");
	if(ha) fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	/* the subscriber sees the transition as it happens */
	p = fm_wait_presence(obs, id, ONLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no ONLINE event for a subscriber");
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);

	/* nothing is replayed to a subscriber that comes later */
	late = fm_operator_connect(b.port, "ops2", filters);
	FM_ASSERT(late != NULL, "late subscriber did not connect");
	if(late){
		m = fm_client_wait_message(late, topic, 1000);
		FM_ASSERT(m == NULL, "a late subscriber got a presence record (retain %d) with presence.retain false",
				m ? (int)m->retain : -1);
		fm_msg_free(m);
		fm_client_destroy(late);
		late = NULL;
	}

	/* the state is in the registry */
	ops = fm_control_connect(b.port, "ops2");
	FM_ASSERT(ops != NULL, "control client did not connect");
	if(!ops) goto out;
	FM_ASSERT_STR_EQ(device_presence(ops, id), "online");
	FM_ASSERT_EQ(fm_client_disconnect(dev), 0);
	p = fm_wait_presence(obs, id, OFFLINE, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(p != NULL, "no OFFLINE event for a subscriber");
	if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
	FM_ASSERT_STR_EQ(device_presence(ops, id), "offline");
out:
	fm_client_destroy(ops);
	fm_client_destroy(dev);
	fm_client_destroy(obs);
	if(CU_get_number_of_failures() > 0) fm_broker_dump_log(&b, 40);
	fm_broker_cleanup(&b);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_presence_online_on_hello", test_presence_online_on_hello },
		{ "test_presence_offline_on_clean_disconnect", test_presence_offline_on_clean_disconnect },
		{ "test_presence_offline_on_socket_drop", test_presence_offline_on_socket_drop },
		{ "test_presence_offline_on_keepalive_timeout", test_presence_offline_on_keepalive_timeout },
		{ "test_presence_silent_then_online", test_presence_silent_then_online },
		{ "test_presence_active_device_never_silent", test_presence_active_device_never_silent },
		{ "test_presence_session_takeover_stays_online", test_presence_session_takeover_stays_online },
		{ "test_presence_events_only_when_not_retained", test_presence_events_only_when_not_retained },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_presence", suite_init, suite_cleanup, tests);
}
