/*
 * test_e2e_security.c - device isolation end to end (the plugin's ACL).
 *
 * A device (client id = username = device id) may publish only requests
 * under fleet/{own}/ and read only fleet/{own}/...; a client whose id is
 * not its username may not touch fleet/ at all; nobody but the plugin may
 * publish responses (.../accepted, .../rejected, .../delta, presence);
 * operators read all of fleet/ and publish requests for any device; topics
 * outside fleet/ are left alone. Denied QoS 1 publishes get PUBACK 0x87,
 * denied subscriptions SUBACK 0x87.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

static struct fm_broker g_broker;

static const char *const OPS_SHADOW[] = { "fleet/+/shadow/#", NULL };

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

static struct fm_client *device_online(const char *id)
{
	struct fm_client *c = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;
	if(!c) return NULL;
	ha = fm_device_hello(c, id, 0, FM_TIMEOUT_MS);
	if(!ha){
		fm_client_destroy(c);
		return NULL;
	}
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	return c;
}

/* QoS 1 publish of payload to topic must get PUBACK 0x87. */
static void expect_pub_denied(struct fm_client *c, const char *topic, const void *payload, size_t len,
		bool retain)
{
	int rc = fm_client_publish_wait(c, topic, payload, len, 1, retain, FM_TIMEOUT_MS);
	FM_ASSERT(rc == FM_RC_NOT_AUTHORIZED, "%s publishing to %s: PUBACK 0x%02x, expected 0x87",
			fm_client_id(c), topic, rc < 0 ? 0xFF : rc);
}

static void expect_pub_allowed(struct fm_client *c, const char *topic, const void *payload, size_t len)
{
	int rc = fm_client_publish_wait(c, topic, payload, len, 1, false, FM_TIMEOUT_MS);
	FM_ASSERT(rc >= 0 && rc < 0x80, "%s publishing to %s: PUBACK %d, expected success",
			fm_client_id(c), topic, rc);
}

static void expect_sub_denied(struct fm_client *c, const char *filter)
{
	int rc = fm_client_subscribe(c, filter, 1, 0, FM_TIMEOUT_MS);
	FM_ASSERT(rc == FM_RC_NOT_AUTHORIZED, "%s subscribing to %s: SUBACK %d, expected 0x87",
			fm_client_id(c), filter, rc);
}

static void expect_sub_granted(struct fm_client *c, const char *filter)
{
	int rc = fm_client_subscribe(c, filter, 1, 0, FM_TIMEOUT_MS);
	FM_ASSERT(rc >= 0 && rc < 0x80, "%s subscribing to %s: SUBACK %d, expected granted",
			fm_client_id(c), filter, rc);
}

/* Every fleet/ message c received is under fleet/<own>/. Consumes them. */
static void assert_only_own_fleet_traffic(struct fm_client *c, const char *own)
{
	char prefix[128];
	struct fm_msg *m;
	snprintf(prefix, sizeof(prefix), FM_TOPIC_PREFIX "/%s/", own);
	while((m = fm_client_wait_message(c, FM_TOPIC_PREFIX "/#", 0)) != NULL){
		FM_ASSERT(strncmp(m->topic, prefix, strlen(prefix)) == 0, "%s received another device's %s",
				fm_client_id(c), m->topic);
		fm_msg_free(m);
	}
}

/* The shadow of id, read by the operator, has version `version` and no
 * reported/desired key `key`. */
static void assert_shadow_untouched(struct fm_client *ops, const char *id, uint64_t version, const char *key)
{
	char rp[64], dp[64];
	Fleetmq__V1__ShadowDocument *d = fm_shadow_get(ops, id, "untouched", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "operator got no shadow of %s", id);
	if(!d) return;
	snprintf(rp, sizeof(rp), "reported.%s", key);
	snprintf(dp, sizeof(dp), "desired.%s", key);
	FM_ASSERT_EQ(d->version, version);
	FM_ASSERT(!fm_json_has(d->state_json, rp) && !fm_json_has(d->state_json, dp),
			"forged update reached the shadow of %s: %s", id, d->state_json);
	fleetmq__v1__shadow_document__free_unpacked(d, NULL);
}

/* ---- tests ------------------------------------------------------------- */

static void test_acl_forged_device_publish_denied(void)
{
	const char *suffixes[] = { "shadow/update", "shadow/get", "hello", "telemetry", "jobs/next/get" };
	char topic[128];
	struct fm_client *alice = device_online("sec-alice");
	struct fm_client *ops;
	size_t len;
	uint8_t *upd = fm_pb_update_request("forged-1", 0, "{\"pwned\":true}", NULL, &len);

	CU_ASSERT_FATAL(alice != NULL);
	for(size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++){
		expect_pub_denied(alice, fm_topic(topic, sizeof(topic), "sec-bob", suffixes[i]), upd, len, false);
	}
	free(upd);

	ops = fm_operator_connect(g_broker.port, "ops", OPS_SHADOW);
	CU_ASSERT_FATAL(ops != NULL);
	assert_shadow_untouched(ops, "sec-bob", 0, "pwned");
	FM_ASSERT_EQ(fm_client_count(ops, "fleet/sec-bob/shadow/update/accepted"), 0);
	fm_client_destroy(ops);
	fm_client_destroy(alice);
}

static void test_acl_subscribe_other_device_denied(void)
{
	struct fm_client *alice = fm_device_connect(g_broker.port, "sec-alice");   /* own # granted */
	CU_ASSERT_FATAL(alice != NULL);
	expect_sub_denied(alice, "fleet/sec-bob/#");
	expect_sub_denied(alice, "fleet/sec-bob/presence");
	expect_sub_denied(alice, "fleet/sec-bob/shadow/update/delta");
	expect_sub_granted(alice, "fleet/sec-alice/shadow/get/accepted");
	fm_client_destroy(alice);
}

static void test_acl_wildcard_subscriber_sees_no_other_device(void)
{
	const char *bob_id = "sec-bob2";
	struct fm_client *alice = fm_device_connect(g_broker.port, "sec-alice");
	struct fm_client *plain, *bob, *ops;
	struct fm_update_result r;
	struct fm_msg *m;
	int rc;

	CU_ASSERT_FATAL(alice != NULL);
	rc = fm_client_subscribe(alice, "#", 1, 0, FM_TIMEOUT_MS);
	FM_ASSERT(rc >= 0 && rc < 0x80, "device subscribing to '#': SUBACK %d", rc);

	plain = fm_client_new("sec-plain", "sec-plain", true);
	CU_ASSERT_FATAL(plain != NULL);
	FM_ASSERT_EQ_FATAL(fm_client_connect(plain, g_broker.port, 60, FM_TIMEOUT_MS), 0);

	/* Another device's whole life: hello, presence, update, delta, get. */
	bob = device_online(bob_id);
	CU_ASSERT_FATAL(bob != NULL);
	rc = fm_shadow_update(bob, bob_id, "bob-1", 0, "{\"secret\":42}", NULL, &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 1);
	fm_update_result_clear(&r);
	ops = fm_operator_connect(g_broker.port, "ops", OPS_SHADOW);
	CU_ASSERT_FATAL(ops != NULL);
	rc = fm_shadow_update(ops, bob_id, "ops-1", 0, NULL, "{\"secret\":43}", &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 1);
	fm_update_result_clear(&r);
	m = fm_client_wait_message(bob, "fleet/sec-bob2/shadow/update/delta", FM_TIMEOUT_MS);
	FM_ASSERT(m != NULL, "bob got no delta");
	fm_msg_free(m);
	FM_ASSERT_EQ(fm_client_disconnect(bob), 0);

	/* Non-fleet traffic still flows to the '#' subscriber. */
	expect_pub_allowed(plain, "plain/news", "hello all", 9);
	m = fm_client_wait_message(alice, "plain/news", FM_TIMEOUT_MS);
	FM_ASSERT(m != NULL, "'#' subscriber did not get non-fleet traffic");
	fm_msg_free(m);

	fm_sleep_ms(300);
	FM_ASSERT_EQ(fm_client_count(alice, "fleet/sec-bob2/#"), 0);
	assert_only_own_fleet_traffic(alice, "sec-alice");

	fm_client_destroy(ops);
	fm_client_destroy(bob);
	fm_client_destroy(plain);
	fm_client_destroy(alice);
}

static void test_acl_username_mismatch_denied(void)
{
	struct fm_client *mallory = fm_client_new("sec-mallory", "sec-alice", true);
	struct fm_client *anon = fm_client_new("sec-anon", NULL, true);
	struct fm_client *ops;
	char topic[128];
	size_t len;
	uint8_t *upd = fm_pb_update_request("mallory-1", 0, "{\"mallory\":1}", NULL, &len);
	uint8_t *hello;
	size_t hlen;

	CU_ASSERT_FATAL(mallory != NULL && anon != NULL);
	FM_ASSERT_EQ_FATAL(fm_client_connect(mallory, g_broker.port, 60, FM_TIMEOUT_MS), 0);
	FM_ASSERT_EQ_FATAL(fm_client_connect(anon, g_broker.port, 60, FM_TIMEOUT_MS), 0);
	hello = fm_pb_hello(0, "evil", "0", &hlen);

	/* Pretending to be alice (username) from another client id. */
	expect_pub_denied(mallory, fm_topic(topic, sizeof(topic), "sec-alice", "shadow/update"), upd, len, false);
	expect_pub_denied(mallory, fm_topic(topic, sizeof(topic), "sec-alice", "hello"), hello, hlen, false);
	/* Its own client id does not make it a device either. */
	expect_pub_denied(mallory, fm_topic(topic, sizeof(topic), "sec-mallory", "hello"), hello, hlen, false);
	expect_pub_denied(mallory, fm_topic(topic, sizeof(topic), "sec-mallory", "shadow/update"), upd, len, false);
	expect_sub_denied(mallory, "fleet/sec-alice/#");
	expect_sub_denied(mallory, "fleet/sec-mallory/#");
	/* No username at all. */
	expect_pub_denied(anon, fm_topic(topic, sizeof(topic), "sec-anon", "hello"), hello, hlen, false);
	expect_sub_denied(anon, "fleet/sec-anon/#");
	/* Outside fleet/ nothing changes. */
	expect_pub_allowed(mallory, "plain/mallory", "m", 1);
	expect_pub_allowed(anon, "plain/anon", "a", 1);
	free(upd);
	free(hello);

	ops = fm_operator_connect(g_broker.port, "ops", OPS_SHADOW);
	CU_ASSERT_FATAL(ops != NULL);
	{
		Fleetmq__V1__ShadowDocument *d = fm_shadow_get(ops, "sec-alice", "mm", FM_TIMEOUT_MS);
		FM_ASSERT(d && !fm_json_has(d->state_json, "reported.mallory"), "mismatched client changed alice: %s",
				d ? d->state_json : "(no reply)");
		if(d) fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	fm_client_destroy(ops);
	fm_client_destroy(anon);
	fm_client_destroy(mallory);
}

static void test_acl_operator_allowed(void)
{
	const char *id = "sec-opsdev";
	struct fm_client *dev = device_online(id);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", OPS_SHADOW);
	struct fm_update_result r;
	Fleetmq__V1__ShadowDocument *d;
	char topic[128];
	int rc;

	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	expect_sub_granted(ops, "fleet/#");
	expect_sub_granted(ops, "fleet/sec-alice/presence");

	rc = fm_shadow_update(ops, id, "ops-allowed", 0, NULL, "{\"fan\":\"high\"}", &r, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 1, "operator desired update not accepted (rc %d, %s)", rc,
			r.rejected ? fm_error_code_name(r.rejected->code) : "-");
	fm_update_result_clear(&r);
	d = fm_shadow_get(ops, id, "ops-get", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "operator get not answered");
	if(d){
		char fan[16];
		FM_ASSERT_STR_EQ(fm_json_string(d->state_json, "desired.fan", fan, sizeof(fan)), "high");
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}

	/* Operators do not publish responses either. */
	expect_pub_denied(ops, fm_topic(topic, sizeof(topic), id, "shadow/update/accepted"), "FORGED", 6, false);
	expect_pub_denied(ops, fm_topic(topic, sizeof(topic), id, "shadow/update/delta"), "FORGED", 6, false);
	expect_pub_denied(ops, fm_topic(topic, sizeof(topic), id, "hello/accepted"), "FORGED", 6, false);
	expect_pub_denied(ops, fm_topic(topic, sizeof(topic), id, "presence"), "FORGED", 6, true);
	fm_client_destroy(ops);
	fm_client_destroy(dev);
}

static void test_acl_device_cannot_publish_responses(void)
{
	const char *id = "sec-resp";
	const char *suffixes[] = {
		"shadow/update/accepted", "shadow/update/rejected", "shadow/update/delta",
		"shadow/get/accepted", "shadow/get/rejected", "hello/accepted", "hello/rejected",
		"telemetry/rejected", "bogus/rejected", "presence",
	};
	const char *const watch[] = { "fleet/sec-resp/#", NULL };
	struct fm_client *dev = device_online(id);
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", watch);
	char topic[128];

	CU_ASSERT_FATAL(dev != NULL);
	CU_ASSERT_FATAL(ops != NULL);
	fm_sleep_ms(200);
	fm_client_drain(ops);
	for(size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++){
		bool retain = strcmp(suffixes[i], "presence") == 0;
		expect_pub_denied(dev, fm_topic(topic, sizeof(topic), id, suffixes[i]), "FORGED", 6, retain);
	}
	fm_sleep_ms(300);
	{
		struct fm_msg *m;
		while((m = fm_client_wait_message(ops, "#", 0)) != NULL){
			FM_ASSERT(strcmp((const char *)m->payload, "FORGED") != 0, "forged message delivered on %s", m->topic);
			fm_msg_free(m);
		}
	}
	fm_client_destroy(ops);

	/* The retained presence is still the plugin's. */
	{
		const char *const pf[] = { "fleet/sec-resp/presence", NULL };
		struct fm_msg *m;
		ops = fm_operator_connect(g_broker.port, "ops", pf);
		CU_ASSERT_FATAL(ops != NULL);
		m = fm_client_wait_message(ops, "fleet/sec-resp/presence", 1500);
		FM_ASSERT(m != NULL, "no retained presence for %s", id);
		if(m){
			Fleetmq__V1__Presence *p = fm_pb_presence(m);
			FM_ASSERT(p != NULL && p->state == FLEETMQ__V1__PRESENCE_STATE__PRESENCE_STATE_ONLINE,
					"retained presence overwritten: %zu bytes", m->payloadlen);
			if(p) fleetmq__v1__presence__free_unpacked(p, NULL);
			fm_msg_free(m);
		}
		fm_client_destroy(ops);
	}
	fm_client_destroy(dev);
}

static void test_acl_device_own_requests_allowed(void)
{
	const char *id = "sec-own";
	struct fm_client *dev = device_online(id);   /* hello allowed */
	struct fm_update_result r;
	Fleetmq__V1__ShadowDocument *d;
	char topic[128];
	size_t len;
	uint8_t *buf;
	int rc;

	CU_ASSERT_FATAL(dev != NULL);
	rc = fm_shadow_update(dev, id, "own-1", 0, "{\"ok\":true}", NULL, &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 1);
	fm_update_result_clear(&r);
	d = fm_shadow_get(dev, id, "own-get", FM_TIMEOUT_MS);
	FM_ASSERT(d != NULL, "own shadow/get not answered");
	if(d) fleetmq__v1__shadow_document__free_unpacked(d, NULL);

	buf = fm_pb_telemetry(1, "sys.mem.percent", 40.0, &len);
	expect_pub_allowed(dev, fm_topic(topic, sizeof(topic), id, "telemetry"), buf, len);
	free(buf);
	expect_pub_allowed(dev, fm_topic(topic, sizeof(topic), id, "jobs/next/get"), "", 0);
	expect_pub_allowed(dev, fm_topic(topic, sizeof(topic), id, "artifacts/fw-1/get"), "", 0);
	expect_pub_allowed(dev, "plain/device-says", "hi", 2);
	fm_client_destroy(dev);
}

/* Unsubscribing works for devices, inside and outside fleet/ (Mosquitto
 * 2.0 ACL-checks UNSUBSCRIBE too). Checked by effect: libmosquitto 2.0.11
 * does not report UNSUBACK reason codes. */
static void test_acl_device_unsubscribe_effective(void)
{
	const char *id = "sec-unsub";
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	struct fm_client *plain = fm_client_new("sec-plain2", "sec-plain2", true);
	struct fm_msg *m;
	size_t len;
	uint8_t *buf;

	CU_ASSERT_FATAL(dev != NULL && plain != NULL);
	FM_ASSERT_EQ_FATAL(fm_client_connect(plain, g_broker.port, 60, FM_TIMEOUT_MS), 0);
	expect_sub_granted(dev, "plain/unsub");

	/* Outside fleet/. */
	FM_ASSERT_EQ(fm_client_unsubscribe(dev, "plain/unsub", FM_TIMEOUT_MS), 0);
	fm_client_drain(dev);
	fm_client_publish_wait(plain, "plain/unsub", "after", 5, 1, false, FM_TIMEOUT_MS);
	m = fm_client_wait_message(dev, "plain/unsub", FM_QUIET_MS);
	FM_ASSERT(m == NULL, "still subscribed to plain/unsub after UNSUBSCRIBE (unsubscribe denied?)");
	fm_msg_free(m);

	/* Its own fleet subtree: no more replies after unsubscribing. */
	FM_ASSERT_EQ(fm_client_unsubscribe(dev, "fleet/sec-unsub/#", FM_TIMEOUT_MS), 0);
	fm_client_drain(dev);
	buf = fm_pb_get_request("after-unsub", &len);
	fm_client_publish_wait(dev, "fleet/sec-unsub/shadow/get", buf, len, 1, false, FM_TIMEOUT_MS);
	free(buf);
	m = fm_client_wait_message(dev, "fleet/sec-unsub/#", FM_QUIET_MS);
	FM_ASSERT(m == NULL, "still subscribed to fleet/sec-unsub/# after UNSUBSCRIBE: got %s",
			m ? m->topic : "");
	fm_msg_free(m);
	fm_client_destroy(plain);
	fm_client_destroy(dev);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_acl_forged_device_publish_denied", test_acl_forged_device_publish_denied },
		{ "test_acl_subscribe_other_device_denied", test_acl_subscribe_other_device_denied },
		{ "test_acl_wildcard_subscriber_sees_no_other_device", test_acl_wildcard_subscriber_sees_no_other_device },
		{ "test_acl_username_mismatch_denied", test_acl_username_mismatch_denied },
		{ "test_acl_operator_allowed", test_acl_operator_allowed },
		{ "test_acl_device_cannot_publish_responses", test_acl_device_cannot_publish_responses },
		{ "test_acl_device_own_requests_allowed", test_acl_device_own_requests_allowed },
		{ "test_acl_device_unsubscribe_effective", test_acl_device_unsubscribe_effective },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_security", suite_init, suite_cleanup, tests);
}
