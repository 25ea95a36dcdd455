/*
 * test_e2e_shadow.c - device shadows end to end: a real mosquitto with the
 * fleetmq plugin, real MQTT v5 devices and an operator.
 *
 * One broker for the suite; every test uses its own device ids so tests do
 * not see each other's state. The bad-configuration tests start their own
 * brokers and expect them to refuse to start.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

static struct fm_broker g_broker;

static const char *const OPS_FILTERS[] = { "fleet/+/shadow/#", NULL };

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
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

static struct fm_client *device_online(const char *id, uint64_t shadow_version)
{
	struct fm_client *c = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;
	if(!c) return NULL;
	ha = fm_device_hello(c, id, shadow_version, FM_TIMEOUT_MS);
	if(!ha){
		fm_client_destroy(c);
		return NULL;
	}
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	return c;
}

/* Accepted update expected; returns its version (0 on failure, recorded). */
static uint64_t update_ok(struct fm_client *c, const char *id, const char *token, uint64_t expected,
		const char *reported, const char *desired)
{
	struct fm_update_result r;
	uint64_t v = 0;
	int rc = fm_shadow_update(c, id, token, expected, reported, desired, &r, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 1, "update '%s' on %s: expected accepted, got %s%s%s", token, id,
			rc == 1 ? "accepted" : rc == 0 ? "rejected " : "no reply",
			r.rejected ? fm_error_code_name(r.rejected->code) : "",
			r.rejected ? r.rejected->reason : "");
	if(rc == 1){
		v = r.accepted->version;
		FM_ASSERT_STR_EQ(r.accepted->client_token, token);
	}
	fm_update_result_clear(&r);
	return v;
}

/* Rejected update expected with `code`. */
static void update_rejected(struct fm_client *c, const char *id, const char *token,
		const char *reported, const char *desired, int code)
{
	struct fm_update_result r;
	int rc = fm_shadow_update(c, id, token, 0, reported, desired, &r, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 0, "update '%s' on %s: expected rejected %s, got %s (version %llu)", token, id,
			fm_error_code_name(code), rc == 1 ? "accepted" : "no reply",
			rc == 1 ? (unsigned long long)r.accepted->version : 0ULL);
	if(rc == 0){
		FM_ASSERT_CODE(r.rejected->code, code);
		FM_ASSERT_STR_EQ(r.rejected->client_token, token);
		FM_ASSERT(r.rejected->reason[0] != '\0', "rejection %s has no reason text", token);
	}
	fm_update_result_clear(&r);
}

/* The shadow is still at `version` with reported.<key> == value and the
 * broker still answers. */
static void assert_state(struct fm_client *c, const char *id, uint64_t version, const char *key,
		double value)
{
	char path[128];
	Fleetmq__V1__ShadowDocument *d = fm_shadow_get(c, id, "state-check", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "no shadow/get reply for %s", id);
	FM_ASSERT(fm_broker_alive(&g_broker), "broker died");
	if(!d) return;
	FM_ASSERT_EQ(d->version, version);
	snprintf(path, sizeof(path), "reported.%s", key);
	FM_ASSERT(fm_json_number(d->state_json, path, -1e9) == value, "%s: %s != %g in %s", id, path, value,
			d->state_json);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);
}

static bool ts_plausible(double ts, uint64_t lo, uint64_t hi)
{
	return ts >= (double)lo - 2000.0 && ts <= (double)hi + 2000.0;
}

/* Publish raw bytes to fleet/<id>/<suffix> (QoS 1); the PUBACK must succeed. */
static void publish_raw(struct fm_client *c, const char *id, const char *suffix, const void *data,
		size_t len)
{
	char topic[256];
	int rc = fm_client_publish_wait(c, fm_topic(topic, sizeof(topic), id, suffix), data, len, 1, false,
			FM_TIMEOUT_MS);
	FM_ASSERT(rc >= 0 && rc < 0x80, "PUBACK for %s: %d", topic, rc);
}

static const uint8_t GARBAGE[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };

/* ---- tests ------------------------------------------------------------- */

static void test_shadow_update_roundtrip(void)
{
	const char *id = "sh-roundtrip";
	struct fm_update_result r;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__ShadowDocument *d;
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	uint64_t t0, t1, t2;
	double fw_ts;
	int rc;

	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	FM_ASSERT_EQ(ha->shadow_version, 0);
	FM_ASSERT_EQ(ha->shadow_sync, FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE);
	FM_ASSERT(ts_plausible((double)ha->server_time_ms, fm_wall_ms(), fm_wall_ms()),
			"server_time_ms %llu vs local %llu", (unsigned long long)ha->server_time_ms,
			(unsigned long long)fm_wall_ms());
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	t0 = fm_wall_ms();
	rc = fm_shadow_update(dev, id, "rt-1", 0, "{\"temp\":21.5,\"fw\":\"1.0\"}", NULL, &r, FM_TIMEOUT_MS);
	t1 = fm_wall_ms();
	FM_ASSERT_EQ_FATAL(rc, 1);
	FM_ASSERT_EQ(r.accepted->version, 1);
	FM_ASSERT_STR_EQ(r.accepted->client_token, "rt-1");
	FM_ASSERT(fm_json_number(r.accepted->state_json, "reported.temp", 0) == 21.5,
			"accepted state_json %s", r.accepted->state_json);
	FM_ASSERT(fm_json_has(r.accepted->state_json, "reported.fw"), "accepted state_json %s",
			r.accepted->state_json);
	FM_ASSERT(ts_plausible(fm_json_number(r.accepted->metadata_json, "reported.temp", 0), t0, t1),
			"accepted metadata_json %s (now %llu)", r.accepted->metadata_json, (unsigned long long)t1);
	fm_update_result_clear(&r);

	d = fm_shadow_get(dev, id, "rt-get-1", FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(d != NULL);
	FM_ASSERT_EQ(d->version, 1);
	FM_ASSERT_STR_EQ(d->client_token, "rt-get-1");
	FM_ASSERT(fm_json_number(d->state_json, "reported.temp", 0) == 21.5, "state_json %s", d->state_json);
	{
		char fw[32];
		FM_ASSERT_STR_EQ(fm_json_string(d->state_json, "reported.fw", fw, sizeof(fw)), "1.0");
	}
	FM_ASSERT(fm_json_object_size(d->state_json, "desired") == 0, "desired not an empty object: %s",
			d->state_json);
	FM_ASSERT(!fm_json_has(d->state_json, "delta"), "empty delta not omitted: %s", d->state_json);
	FM_ASSERT(ts_plausible(fm_json_number(d->metadata_json, "reported.temp", 0), t0, t1),
			"metadata_json %s", d->metadata_json);
	FM_ASSERT(ts_plausible(fm_json_number(d->metadata_json, "reported.fw", 0), t0, t1),
			"metadata_json %s", d->metadata_json);
	FM_ASSERT(fm_json_object_size(d->metadata_json, "desired") == 0, "metadata desired: %s",
			d->metadata_json);
	FM_ASSERT(ts_plausible((double)d->timestamp_ms, t0, fm_wall_ms()), "timestamp_ms %llu",
			(unsigned long long)d->timestamp_ms);
	fw_ts = fm_json_number(d->metadata_json, "reported.fw", 0);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);

	/* A second partial update merges: fw stays, and keeps its timestamp. */
	fm_sleep_ms(20);
	FM_ASSERT_EQ(update_ok(dev, id, "rt-2", 0, "{\"temp\":22}", NULL), 2);
	t2 = fm_wall_ms();
	d = fm_shadow_get(dev, id, "rt-get-2", FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(d != NULL);
	FM_ASSERT_EQ(d->version, 2);
	FM_ASSERT(fm_json_number(d->state_json, "reported.temp", 0) == 22, "state_json %s", d->state_json);
	FM_ASSERT(fm_json_has(d->state_json, "reported.fw"), "merge lost fw: %s", d->state_json);
	FM_ASSERT(fm_json_number(d->metadata_json, "reported.fw", 0) == fw_ts,
			"untouched key's timestamp changed: %s", d->metadata_json);
	FM_ASSERT(fm_json_number(d->metadata_json, "reported.temp", 0) >= fw_ts
			&& ts_plausible(fm_json_number(d->metadata_json, "reported.temp", 0), t1, t2),
			"metadata_json %s", d->metadata_json);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	fm_client_destroy(dev);
}

static void test_shadow_get_without_shadow(void)
{
	const char *id = "sh-empty";
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__ShadowDocument *d;

	CU_ASSERT_FATAL(dev != NULL);
	d = fm_shadow_get(dev, id, "empty-1", FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(d != NULL);
	FM_ASSERT_EQ(d->version, 0);
	FM_ASSERT_STR_EQ(d->client_token, "empty-1");
	FM_ASSERT(fm_json_object_size(d->state_json, "desired") == 0
			&& fm_json_object_size(d->state_json, "reported") == 0
			&& !fm_json_has(d->state_json, "delta"),
			"state_json of a device without shadow: %s", d->state_json);
	FM_ASSERT(fm_json_object_size(d->metadata_json, "") >= 0, "metadata_json not a JSON object: %s",
			d->metadata_json);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	fm_client_destroy(dev);
}

static void test_shadow_null_deletes_key(void)
{
	const char *id = "sh-null";
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__ShadowDocument *d;

	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "n-1", 0, "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", NULL), 1);
	FM_ASSERT_EQ(update_ok(dev, id, "n-2", 0, "{\"a\":null,\"b\":{\"c\":null},\"gone\":null}", NULL), 2);
	FM_ASSERT_EQ(update_ok(dev, id, "n-3", 0, "{\"b\":{\"e\":4}}", NULL), 3);

	d = fm_shadow_get(dev, id, "n-get", FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(d != NULL);
	FM_ASSERT_EQ(d->version, 3);
	FM_ASSERT(!fm_json_has(d->state_json, "reported.a"), "a not deleted: %s", d->state_json);
	FM_ASSERT(!fm_json_has(d->state_json, "reported.b.c"), "b.c not deleted: %s", d->state_json);
	FM_ASSERT(!fm_json_has(d->state_json, "reported.gone"), "null stored: %s", d->state_json);
	FM_ASSERT(fm_json_number(d->state_json, "reported.b.d", 0) == 3, "b.d lost: %s", d->state_json);
	FM_ASSERT(fm_json_number(d->state_json, "reported.b.e", 0) == 4, "b.e not merged: %s", d->state_json);
	FM_ASSERT(!fm_json_has(d->metadata_json, "reported.a") && !fm_json_has(d->metadata_json, "reported.b.c"),
			"metadata of deleted keys kept: %s", d->metadata_json);
	FM_ASSERT(fm_json_has(d->metadata_json, "reported.b.d"), "metadata of b.d lost: %s", d->metadata_json);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	fm_client_destroy(dev);
}

static void test_shadow_desired_delta_to_online_device(void)
{
	const char *id = "sh-delta";
	char delta_topic[128];
	struct fm_client *dev = device_online(id, 0);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", OPS_FILTERS);
	Fleetmq__V1__ShadowDelta *delta;
	Fleetmq__V1__ShadowDocument *d;
	struct fm_msg *m;
	uint64_t v, t0;

	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	fm_topic(delta_topic, sizeof(delta_topic), id, "shadow/update/delta");

	t0 = fm_mono_ms();
	v = update_ok(ops, id, "op-1", 0, NULL, "{\"led\":\"on\",\"rate\":5}");
	FM_ASSERT_EQ(v, 1);
	m = fm_client_wait_message(dev, delta_topic, 1500);
	FM_ASSERT(m != NULL, "online device got no delta within 1.5 s of the desired update");
	if(m){
		char led[16];
		FM_ASSERT(fm_mono_ms() - t0 < 1500, "delta took %llu ms", (unsigned long long)(fm_mono_ms() - t0));
		delta = fm_pb_shadow_delta(m);
		FM_ASSERT(delta != NULL, "undecodable ShadowDelta");
		if(delta){
			FM_ASSERT_EQ(delta->version, v);
			FM_ASSERT_STR_EQ(fm_json_string(delta->delta_json, "led", led, sizeof(led)), "on");
			FM_ASSERT(fm_json_number(delta->delta_json, "rate", 0) == 5, "delta_json %s", delta->delta_json);
			FM_ASSERT(fm_json_object_size(delta->delta_json, "") == 2, "delta_json %s", delta->delta_json);
			fleetmq__v1__shadow_delta__free_unpacked(delta, NULL);
		}
		fm_msg_free(m);
	}

	/* The device catches up: the delta becomes empty and is omitted. */
	FM_ASSERT_EQ(update_ok(dev, id, "dev-1", 0, "{\"led\":\"on\",\"rate\":5}", NULL), 2);
	d = fm_shadow_get(ops, id, "op-get-1", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "no get reply");
	if(d){
		FM_ASSERT(!fm_json_has(d->state_json, "delta"), "delta should be empty: %s", d->state_json);
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	fm_client_drain_filter(dev, delta_topic);

	/* Desired changes but the delta stays empty: no delta message. */
	FM_ASSERT_EQ(update_ok(ops, id, "op-2", 0, NULL, "{\"rate\":5}"), 3);
	m = fm_client_wait_message(dev, delta_topic, FM_QUIET_MS);
	FM_ASSERT(m == NULL, "delta sent although desired == reported: %s",
			m ? (char *)m->payload : "");
	fm_msg_free(m);

	/* Only the differing key is in the delta. */
	FM_ASSERT_EQ(update_ok(ops, id, "op-3", 0, NULL, "{\"rate\":7}"), 4);
	m = fm_client_wait_message(dev, delta_topic, 1500);
	FM_ASSERT(m != NULL, "no delta for rate 7");
	if(m){
		delta = fm_pb_shadow_delta(m);
		FM_ASSERT(delta != NULL, "undecodable ShadowDelta");
		if(delta){
			FM_ASSERT_EQ(delta->version, 4);
			FM_ASSERT(fm_json_number(delta->delta_json, "rate", 0) == 7
					&& !fm_json_has(delta->delta_json, "led"), "delta_json %s", delta->delta_json);
			fleetmq__v1__shadow_delta__free_unpacked(delta, NULL);
		}
		fm_msg_free(m);
	}
	fm_client_destroy(ops);
	fm_client_destroy(dev);
}

static void test_shadow_version_conflict_rejected(void)
{
	const char *id = "sh-conflict";
	struct fm_client *dev = device_online(id, 0);
	struct fm_update_result r;
	int rc;

	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "c-1", 0, "{\"x\":1}", NULL), 1);

	rc = fm_shadow_update(dev, id, "c-2", 5, "{\"x\":2,\"y\":2}", NULL, &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 0);
	if(rc == 0){
		FM_ASSERT_CODE(r.rejected->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_VERSION_CONFLICT);
		FM_ASSERT_EQ(r.rejected->version, 1);
		FM_ASSERT_STR_EQ(r.rejected->client_token, "c-2");
	}
	fm_update_result_clear(&r);
	assert_state(dev, id, 1, "x", 1);
	{
		Fleetmq__V1__ShadowDocument *d = fm_shadow_get(dev, id, "c-get", FM_TIMEOUT_MS);
		FM_ASSERT(d && !fm_json_has(d->state_json, "reported.y"), "part of a conflicting update applied: %s",
				d ? d->state_json : "(no reply)");
		if(d) fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}

	/* The right expected version is accepted. */
	FM_ASSERT_EQ(update_ok(dev, id, "c-3", 1, "{\"x\":3}", NULL), 2);
	assert_state(dev, id, 2, "x", 3);
	fm_client_destroy(dev);
}

static void test_shadow_client_token_echoed(void)
{
	const char *id = "sh-token";
	const char *tokens[] = { "tok-a", "tok-b", "tok-c" };
	/* 64 bytes, the documented maximum. */
	const char *long_token = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char topic[128], filter[128];
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__ShadowDocument *d;
	uint64_t last_version = 0;

	CU_ASSERT_FATAL(dev != NULL);
	/* Three pipelined requests: each reply carries its own token, in order. */
	for(int i = 0; i < 3; i++){
		char rep[64];
		size_t len;
		uint8_t *buf;
		snprintf(rep, sizeof(rep), "{\"n\":%d}", i);
		buf = fm_pb_update_request(tokens[i], 0, rep, NULL, &len);
		FM_ASSERT_EQ(fm_client_publish(dev, fm_topic(topic, sizeof(topic), id, "shadow/update"), buf, len, 1,
					false, NULL), MOSQ_ERR_SUCCESS);
		free(buf);
	}
	fm_topic(filter, sizeof(filter), id, "shadow/update/accepted");
	for(int i = 0; i < 3; i++){
		struct fm_msg *m = fm_client_wait_message(dev, filter, FM_TIMEOUT_MS);
		Fleetmq__V1__ShadowUpdateAccepted *a = m ? fm_pb_update_accepted(m) : NULL;
		FM_ASSERT(a != NULL, "accepted #%d missing", i);
		if(a){
			FM_ASSERT_STR_EQ(a->client_token, tokens[i]);
			FM_ASSERT(a->version == last_version + 1, "versions not consecutive: %llu after %llu",
					(unsigned long long)a->version, (unsigned long long)last_version);
			FM_ASSERT(fm_json_number(a->state_json, "reported.n", -1) == i, "state_json %s", a->state_json);
			last_version = a->version;
			fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
		}
		fm_msg_free(m);
	}

	update_rejected(dev, id, "tok-bad-json", "{oops", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);

	d = fm_shadow_get(dev, id, long_token, FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "no get reply for a 64-byte token");
	if(d){
		FM_ASSERT_STR_EQ(d->client_token, long_token);
		FM_ASSERT_EQ(d->version, 3);
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	fm_client_destroy(dev);
}

static void test_shadow_offline_device_gets_delta_on_hello(void)
{
	const char *id = "sh-offline";
	char delta_topic[128], hello_acc[128];
	struct fm_client *dev = device_online(id, 0);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", OPS_FILTERS);
	struct fm_msg *m_hello, *m_delta;
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__ShadowDelta *delta;
	size_t len;
	uint8_t *buf;

	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	fm_topic(delta_topic, sizeof(delta_topic), id, "shadow/update/delta");
	fm_topic(hello_acc, sizeof(hello_acc), id, "hello/accepted");

	FM_ASSERT_EQ(update_ok(dev, id, "off-1", 0, "{\"mode\":\"eco\"}", NULL), 1);
	FM_ASSERT_EQ_FATAL(fm_client_disconnect(dev), 0);
	fm_client_destroy(dev);
	fm_sleep_ms(100);

	FM_ASSERT_EQ(update_ok(ops, id, "off-op", 0, NULL, "{\"mode\":\"turbo\"}"), 2);

	/* Reconnect with a clean start: nothing was queued for us. */
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	m_delta = fm_client_wait_message(dev, delta_topic, 300);
	FM_ASSERT(m_delta == NULL, "delta delivered before hello");
	fm_msg_free(m_delta);

	buf = fm_pb_hello(1, "e2e-sensor", "e2e-1.0", &len);
	publish_raw(dev, id, "hello", buf, len);
	free(buf);
	m_hello = fm_client_wait_message(dev, hello_acc, FM_TIMEOUT_MS);
	m_delta = fm_client_wait_message(dev, delta_topic, FM_TIMEOUT_MS);
	FM_ASSERT(m_hello != NULL, "no hello/accepted");
	FM_ASSERT(m_delta != NULL, "no delta after hello with an old shadow_version");
	if(m_hello){
		ha = fm_pb_hello_accepted(m_hello);
		FM_ASSERT(ha != NULL, "undecodable HelloAccepted");
		if(ha){
			FM_ASSERT_EQ(ha->shadow_version, 2);
			FM_ASSERT_EQ(ha->shadow_sync, FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_DELTA);
			fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
		}
	}
	if(m_delta){
		char mode[16];
		if(m_hello) FM_ASSERT(m_hello->seq < m_delta->seq, "delta arrived before hello/accepted");
		delta = fm_pb_shadow_delta(m_delta);
		FM_ASSERT(delta != NULL, "undecodable ShadowDelta");
		if(delta){
			FM_ASSERT_EQ(delta->version, 2);
			FM_ASSERT_STR_EQ(fm_json_string(delta->delta_json, "mode", mode, sizeof(mode)), "turbo");
			fleetmq__v1__shadow_delta__free_unpacked(delta, NULL);
		}
	}
	/* DELTA sync: no full document on top of it. */
	{
		char get_acc[128];
		struct fm_msg *full = fm_client_wait_message(dev, fm_topic(get_acc, sizeof(get_acc), id,
					"shadow/get/accepted"), 300);
		FM_ASSERT(full == NULL, "full document sent although shadow_sync=DELTA");
		fm_msg_free(full);
	}
	fm_msg_free(m_hello);
	fm_msg_free(m_delta);
	fm_client_destroy(ops);
	fm_client_destroy(dev);
}

/* Device with a document (reported k, desired d) at version 2, offline. */
static void make_offline_document(const char *id)
{
	struct fm_client *dev = device_online(id, 0);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", OPS_FILTERS);
	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "doc-1", 0, "{\"k\":\"v\"}", NULL), 1);
	FM_ASSERT_EQ(update_ok(ops, id, "doc-2", 0, NULL, "{\"d\":1}"), 2);
	fm_client_destroy(ops);
	fm_client_destroy(dev);
}

/* Hello with shadow_version hv on a fresh connection; expects FULL. */
static void hello_expect_full(const char *id, uint64_t hv)
{
	char get_acc[128], delta_topic[128];
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__ShadowDocument *d;
	struct fm_msg *m;

	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, hv, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	FM_ASSERT_EQ(ha->shadow_version, 2);
	FM_ASSERT_EQ(ha->shadow_sync, FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_FULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

	m = fm_client_wait_message(dev, fm_topic(get_acc, sizeof(get_acc), id, "shadow/get/accepted"),
			FM_TIMEOUT_MS);
	FM_ASSERT(m != NULL, "no full document after hello(shadow_version=%llu)", (unsigned long long)hv);
	if(m){
		char k[16];
		d = fm_pb_shadow_document(m);
		FM_ASSERT(d != NULL, "undecodable ShadowDocument");
		if(d){
			FM_ASSERT_EQ(d->version, 2);
			FM_ASSERT_STR_EQ(d->client_token, "");
			FM_ASSERT_STR_EQ(fm_json_string(d->state_json, "reported.k", k, sizeof(k)), "v");
			FM_ASSERT(fm_json_number(d->state_json, "desired.d", 0) == 1, "state_json %s", d->state_json);
			FM_ASSERT(fm_json_number(d->state_json, "delta.d", 0) == 1, "state_json %s", d->state_json);
			FM_ASSERT(fm_json_has(d->metadata_json, "reported.k") && fm_json_has(d->metadata_json, "desired.d"),
					"metadata_json %s", d->metadata_json);
			fleetmq__v1__shadow_document__free_unpacked(d, NULL);
		}
		fm_msg_free(m);
	}
	m = fm_client_wait_message(dev, fm_topic(delta_topic, sizeof(delta_topic), id, "shadow/update/delta"), 300);
	FM_ASSERT(m == NULL, "delta sent although shadow_sync=FULL");
	fm_msg_free(m);
	fm_client_destroy(dev);
}

static void test_shadow_hello_version_zero_gets_full_document(void)
{
	make_offline_document("sh-full0");
	hello_expect_full("sh-full0", 0);
}

static void test_shadow_hello_version_ahead_gets_full_document(void)
{
	make_offline_document("sh-ahead");
	hello_expect_full("sh-ahead", 99);
}

static void test_shadow_hello_up_to_date_gets_nothing(void)
{
	const char *id = "sh-uptodate";
	char filter[128];
	struct fm_client *dev;
	Fleetmq__V1__HelloAccepted *ha;
	struct fm_msg *m;

	make_offline_document(id);
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 2, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	FM_ASSERT_EQ(ha->shadow_version, 2);
	FM_ASSERT_EQ(ha->shadow_sync, FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	m = fm_client_wait_message(dev, fm_topic(filter, sizeof(filter), id, "shadow/#"), FM_QUIET_MS);
	FM_ASSERT(m == NULL, "shadow message sent to an up-to-date device on %s", m ? m->topic : "");
	fm_msg_free(m);
	fm_client_destroy(dev);
}

static void test_shadow_malformed_protobuf_rejected(void)
{
	const char *id = "sh-badpb";
	char rej[128];
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__Rejection *r;

	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	publish_raw(dev, id, "shadow/update", GARBAGE, sizeof(GARBAGE));
	r = fm_wait_rejection(dev, fm_topic(rej, sizeof(rej), id, "shadow/update/rejected"), NULL, FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no rejection for a non-protobuf update");
	if(r){
		FM_ASSERT_CODE(r->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	assert_state(dev, id, 1, "base", 1);
	fm_client_destroy(dev);
}

static void test_shadow_get_malformed_rejected(void)
{
	const char *id = "sh-badget";
	char rej[128];
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__Rejection *r;

	CU_ASSERT_FATAL(dev != NULL);
	publish_raw(dev, id, "shadow/get", GARBAGE, sizeof(GARBAGE));
	r = fm_wait_rejection(dev, fm_topic(rej, sizeof(rej), id, "shadow/get/rejected"), NULL, FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no get/rejected for a non-protobuf get");
	if(r){
		FM_ASSERT_CODE(r->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	FM_ASSERT(fm_broker_alive(&g_broker), "broker died");
	fm_client_destroy(dev);
}

static void test_shadow_non_json_rejected(void)
{
	const char *id = "sh-nonjson";
	struct fm_client *dev = device_online(id, 0);
	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	update_rejected(dev, id, "nj-1", "{\"a\":", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	update_rejected(dev, id, "nj-2", "not json at all", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	update_rejected(dev, id, "nj-3", "{\"a\":1} trailing", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
	assert_state(dev, id, 1, "base", 1);
	fm_client_destroy(dev);
}

static void test_shadow_json_not_object_rejected(void)
{
	const char *id = "sh-array";
	struct fm_client *dev = device_online(id, 0);
	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	update_rejected(dev, id, "arr-1", "[1,2,3]", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_WRONG_TYPE);
	update_rejected(dev, id, "arr-2", "42", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_WRONG_TYPE);
	update_rejected(dev, id, "arr-3", "\"text\"", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_WRONG_TYPE);
	update_rejected(dev, id, "arr-4", "null", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_WRONG_TYPE);
	assert_state(dev, id, 1, "base", 1);
	fm_client_destroy(dev);
}

static char *json_big_string(const char *key, size_t n)
{
	char *s = malloc(n + strlen(key) + 16);
	size_t off = (size_t)sprintf(s, "{\"%s\":\"", key);
	memset(s + off, 'x', n);
	strcpy(s + off + n, "\"}");
	return s;
}

static void test_shadow_too_large_rejected(void)
{
	const char *id = "sh-large";
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__ShadowDocument *d;
	char *big = json_big_string("big", 9000);
	char *half1 = json_big_string("half1", 5000);
	char *half2 = json_big_string("half2", 5000);

	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	/* One update larger than max_document_bytes (8192). */
	update_rejected(dev, id, "big-1", big, NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_TOO_LARGE);
	assert_state(dev, id, 1, "base", 1);
	/* Two updates that fit alone but not together. */
	FM_ASSERT_EQ(update_ok(dev, id, "half-1", 0, half1, NULL), 2);
	update_rejected(dev, id, "half-2", half2, NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_TOO_LARGE);
	d = fm_shadow_get(dev, id, "large-get", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "no get reply");
	if(d){
		FM_ASSERT_EQ(d->version, 2);
		FM_ASSERT(fm_json_has(d->state_json, "reported.half1") && !fm_json_has(d->state_json, "reported.half2"),
				"document after TOO_LARGE: %.200s...", d->state_json);
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	free(big);
	free(half1);
	free(half2);
	fm_client_destroy(dev);
}

/* {"l1":{"l2":...{"l<levels-1>":1}}}: `levels` nested objects counting
 * the top-level one (shadow.h: the top-level object is depth 1). */
static char *json_nested(int levels)
{
	char *s = malloc((size_t)levels * 12 + 16);
	size_t off = 0;
	off += (size_t)sprintf(s + off, "{");
	for(int i = 1; i < levels; i++) off += (size_t)sprintf(s + off, "\"l%d\":{", i);
	off += (size_t)sprintf(s + off, "\"leaf\":1");
	for(int i = 0; i < levels; i++) s[off++] = '}';
	s[off] = '\0';
	return s;
}

static void test_shadow_too_deep_rejected(void)
{
	const char *id = "sh-deep";
	struct fm_client *dev = device_online(id, 0);
	char *deep9 = json_nested(9), *deep20 = json_nested(20), *deep8 = json_nested(8);
	Fleetmq__V1__ShadowDocument *d;

	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	update_rejected(dev, id, "deep-20", deep20, NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_TOO_DEEP);
	update_rejected(dev, id, "deep-9", deep9, NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_TOO_DEEP);
	assert_state(dev, id, 1, "base", 1);
	/* Exactly max_depth (8) is allowed. */
	FM_ASSERT_EQ(update_ok(dev, id, "deep-8", 0, deep8, NULL), 2);
	d = fm_shadow_get(dev, id, "deep-get", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "no get reply");
	if(d){
		FM_ASSERT(fm_json_number(d->state_json, "reported.l1.l2.l3.l4.l5.l6.l7.leaf", 0) == 1,
				"state_json %s", d->state_json);
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	free(deep8);
	free(deep9);
	free(deep20);
	fm_client_destroy(dev);
}

static void test_shadow_forbidden_side_rejected(void)
{
	const char *id = "sh-forbid";
	struct fm_client *dev = device_online(id, 0);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", OPS_FILTERS);
	Fleetmq__V1__ShadowDocument *d;

	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	update_rejected(dev, id, "fb-1", NULL, "{\"led\":\"on\"}", FLEETMQ__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN);
	update_rejected(dev, id, "fb-2", "{\"base\":2}", "{\"led\":\"on\"}",
			FLEETMQ__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN);
	update_rejected(ops, id, "fb-3", "{\"base\":3}", NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN);
	assert_state(dev, id, 1, "base", 1);
	d = fm_shadow_get(dev, id, "fb-get", FM_TIMEOUT_MS);
	FM_ASSERT(d && !fm_json_has(d->state_json, "desired.led"), "forbidden desired applied: %s",
			d ? d->state_json : "(no reply)");
	if(d) fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	fm_client_destroy(ops);
	fm_client_destroy(dev);
}

static void test_shadow_empty_update_rejected(void)
{
	const char *id = "sh-emptyupd";
	struct fm_client *dev = device_online(id, 0);
	CU_ASSERT_FATAL(dev != NULL);
	FM_ASSERT_EQ(update_ok(dev, id, "base", 0, "{\"base\":1}", NULL), 1);
	update_rejected(dev, id, "empty-1", NULL, NULL, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST);
	assert_state(dev, id, 1, "base", 1);
	fm_client_destroy(dev);
}

static void test_topic_unknown_rejected(void)
{
	const char *id = "sh-unknown";
	const char *suffixes[] = { "bogus", "shadow/frobnicate" };
	struct fm_client *dev = device_online(id, 0);

	CU_ASSERT_FATAL(dev != NULL);
	for(size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++){
		char rej_suffix[64], rej[128];
		Fleetmq__V1__Rejection *r;
		publish_raw(dev, id, suffixes[i], "x", 1);
		snprintf(rej_suffix, sizeof(rej_suffix), "%s/rejected", suffixes[i]);
		r = fm_wait_rejection(dev, fm_topic(rej, sizeof(rej), id, rej_suffix), NULL, FM_TIMEOUT_MS);
		FM_ASSERT(r != NULL, "no rejection on %s", rej);
		if(r){
			FM_ASSERT_CODE(r->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_UNKNOWN_TOPIC);
			fleetmq__v1__rejection__free_unpacked(r, NULL);
		}
	}
	fm_client_destroy(dev);
}

static void test_hello_malformed_rejected(void)
{
	const char *id = "sh-badhello";
	char rej[128];
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__Rejection *r;

	CU_ASSERT_FATAL(dev != NULL);
	publish_raw(dev, id, "hello", GARBAGE, sizeof(GARBAGE));
	r = fm_wait_rejection(dev, fm_topic(rej, sizeof(rej), id, "hello/rejected"), NULL, FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no hello/rejected for a malformed hello");
	if(r){
		FM_ASSERT_CODE(r->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	/* A good hello still works afterwards. */
	{
		Fleetmq__V1__HelloAccepted *ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
		FM_ASSERT(ha != NULL, "hello after a malformed hello not accepted");
		if(ha) fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	}
	fm_client_destroy(dev);
}

static void test_telemetry_malformed_rejected(void)
{
	const char *id = "sh-telemetry";
	char rej[128];
	struct fm_client *dev = device_online(id, 0);
	Fleetmq__V1__Rejection *r;
	size_t len;
	uint8_t *buf;

	CU_ASSERT_FATAL(dev != NULL);
	fm_topic(rej, sizeof(rej), id, "telemetry/rejected");
	buf = fm_pb_telemetry(1, "sys.cpu.percent", 12.5, &len);
	publish_raw(dev, id, "telemetry", buf, len);
	free(buf);
	r = fm_wait_rejection(dev, rej, NULL, FM_QUIET_MS);
	FM_ASSERT(r == NULL, "valid telemetry rejected: %s", r ? fm_error_code_name(r->code) : "");
	if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);

	publish_raw(dev, id, "telemetry", GARBAGE, sizeof(GARBAGE));
	r = fm_wait_rejection(dev, rej, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no telemetry/rejected for a malformed batch");
	if(r){
		FM_ASSERT_CODE(r->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_MALFORMED);
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	fm_client_destroy(dev);
}

/* Start a broker with `yaml`; it must refuse, naming `key` (and the line of
 * `line_needle` in the YAML when not NULL). */
static void expect_bad_config(const char *yaml, const char *key, const char *line_needle)
{
	struct fm_broker b;
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	char *log = NULL;
	int status = -1, rc;

	o.yaml = yaml;
	rc = fm_broker_start_expect_failure(&b, &o, &status, &log);
	FM_ASSERT(rc == 0, "broker started with a bad config (%s)", key);
	if(rc == 0){
		FM_ASSERT(status != 0, "broker exited with status 0 on a bad config (%s)", key);
		bool named = log && strstr(log, key);
		FM_ASSERT(named, "log does not name '%s'", key);
		if(line_needle){
			int line = fm_text_line_of(yaml, line_needle);
			FM_ASSERT(fm_text_mentions_line(log, line), "log does not give line %d for '%s'", line, key);
			named = named && fm_text_mentions_line(log, line);
		}
		if(!named) fprintf(stderr, "\n--- fleetmq.yaml ---\n%s--- log ---\n%s\n", yaml, log ? log : "");
	}
	free(log);
	fm_broker_cleanup(&b);
}

static void test_config_bad_value_refused(void)
{
	expect_bad_config(FM_DEFAULT_YAML "shadow:\n  max_depth: 0\n", "max_depth", "max_depth");
}

static void test_config_unknown_key_refused(void)
{
	expect_bad_config(FM_DEFAULT_YAML "shadow:\n  max_depth: 8\n  frobnicate_level: 3\n",
			"frobnicate_level", "frobnicate_level");
}

static void test_config_below_minimum_refused(void)
{
	expect_bad_config(FM_YAML_STORE FM_YAML_SECURITY
			"presence:\n  silence_threshold_ms: 50\n  check_interval_ms: 100\n",
			"silence_threshold_ms", "silence_threshold_ms");
}

static void test_config_missing_store_path_refused(void)
{
	expect_bad_config(FM_YAML_SECURITY FM_YAML_PRESENCE, "store.path", NULL);
}

/* Send a hello carrying token; return the answer on hello/<answer>. */
static struct fm_msg *hello_with_token(struct fm_client *dev, const char *id, const char *token, const char *answer)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	char topic[128], suffix[32];
	uint8_t buf[512];
	size_t len;

	h.device_type = (char *)"e2e-sensor";
	h.agent_version = (char *)"e2e-1.0";
	h.client_token = (char *)token;
	len = fleetmq__v1__hello__pack(&h, buf);
	publish_raw(dev, id, "hello", buf, len);
	snprintf(suffix, sizeof(suffix), "hello/%s", answer);
	return fm_client_wait_message(dev, fm_topic(topic, sizeof(topic), id, suffix), FM_TIMEOUT_MS);
}

/* Hello.client_token comes back in HelloAccepted (and in the Rejection of a
 * refused hello), so a device can tell the answer to its current hello from
 * one still queued in its session. */
static void test_shadow_hello_token_echoed(void)
{
	const char *id = "sh-hello-token";
	char long_token[80];
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;
	Fleetmq__V1__Rejection *rej;
	struct fm_msg *m;

	CU_ASSERT_FATAL(dev != NULL);
	m = hello_with_token(dev, id, "tok-42", "accepted");
	FM_ASSERT(m != NULL, "no hello/accepted");
	ha = m ? fm_pb_hello_accepted(m) : NULL;
	if(ha){
		FM_ASSERT_STR_EQ(ha->client_token, "tok-42");
		fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	}
	fm_msg_free(m);

	memset(long_token, 'x', 65);
	long_token[65] = '\0';
	m = hello_with_token(dev, id, long_token, "rejected");
	FM_ASSERT(m != NULL, "a 65-byte hello token was not rejected");
	rej = m ? fm_pb_rejection(m) : NULL;
	if(rej){
		FM_ASSERT_EQ(rej->code, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST);
		FM_ASSERT(strstr(rej->reason, "client_token") != NULL, "reason: %s", rej->reason);
		fleetmq__v1__rejection__free_unpacked(rej, NULL);
	}
	fm_msg_free(m);
	fm_client_destroy(dev);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_shadow_update_roundtrip", test_shadow_update_roundtrip },
		{ "test_shadow_get_without_shadow", test_shadow_get_without_shadow },
		{ "test_shadow_null_deletes_key", test_shadow_null_deletes_key },
		{ "test_shadow_desired_delta_to_online_device", test_shadow_desired_delta_to_online_device },
		{ "test_shadow_version_conflict_rejected", test_shadow_version_conflict_rejected },
		{ "test_shadow_client_token_echoed", test_shadow_client_token_echoed },
		{ "test_shadow_offline_device_gets_delta_on_hello", test_shadow_offline_device_gets_delta_on_hello },
		{ "test_shadow_hello_version_zero_gets_full_document", test_shadow_hello_version_zero_gets_full_document },
		{ "test_shadow_hello_version_ahead_gets_full_document", test_shadow_hello_version_ahead_gets_full_document },
		{ "test_shadow_hello_up_to_date_gets_nothing", test_shadow_hello_up_to_date_gets_nothing },
		{ "test_shadow_hello_token_echoed", test_shadow_hello_token_echoed },
		{ "test_shadow_malformed_protobuf_rejected", test_shadow_malformed_protobuf_rejected },
		{ "test_shadow_get_malformed_rejected", test_shadow_get_malformed_rejected },
		{ "test_shadow_non_json_rejected", test_shadow_non_json_rejected },
		{ "test_shadow_json_not_object_rejected", test_shadow_json_not_object_rejected },
		{ "test_shadow_too_large_rejected", test_shadow_too_large_rejected },
		{ "test_shadow_too_deep_rejected", test_shadow_too_deep_rejected },
		{ "test_shadow_forbidden_side_rejected", test_shadow_forbidden_side_rejected },
		{ "test_shadow_empty_update_rejected", test_shadow_empty_update_rejected },
		{ "test_topic_unknown_rejected", test_topic_unknown_rejected },
		{ "test_hello_malformed_rejected", test_hello_malformed_rejected },
		{ "test_telemetry_malformed_rejected", test_telemetry_malformed_rejected },
		{ "test_config_bad_value_refused", test_config_bad_value_refused },
		{ "test_config_unknown_key_refused", test_config_unknown_key_refused },
		{ "test_config_below_minimum_refused", test_config_below_minimum_refused },
		{ "test_config_missing_store_path_refused", test_config_missing_store_path_refused },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_shadow", suite_init, suite_cleanup, tests);
}
