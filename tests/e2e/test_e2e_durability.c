/*
 * test_e2e_durability.c - an acknowledged shadow update survives the broker.
 *
 * The plugin sends update/accepted only after the write is fsync'd, so
 * whatever a device saw accepted must be in the document after kill -9 and
 * a restart on the same database. The device streams QoS 1 updates, each
 * adding one key k<i>; the test kills the broker with SIGKILL while many
 * updates are in flight, restarts it and checks every acknowledged key, the
 * version, and that version and content agree (one key per version).
 *
 * max_document_bytes is raised to 1 MiB (the maximum) so thousands of keys
 * fit in one document.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdlib.h>
#include <string.h>

#define DURABILITY_YAML FM_DEFAULT_YAML "shadow:\n  max_document_bytes: 1048576\n"

#define ROUNDS 3
#define UPDATES_PER_ROUND 1000
#define TOTAL_UPDATES (ROUNDS * UPDATES_PER_ROUND)
/* Kill after this many update/accepted in each round. Not multiples of the
 * broker's default receive-maximum (20), so the kill can fall inside a
 * group-commit batch as well as between two. */
static const int KILL_AFTER[ROUNDS] = { 307, 113, 499 };

static struct fm_broker g_broker;

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	o.yaml = DURABILITY_YAML;
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

static Fleetmq__V1__ShadowDocument *operator_get(const char *id)
{
	const char *const filters[] = { "fleet/+/shadow/#", NULL };
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", filters);
	Fleetmq__V1__ShadowDocument *d;
	if(!ops) return NULL;
	d = fm_shadow_get(ops, id, "durability-check", 10000);
	fm_client_destroy(ops);
	return d;
}

static void test_durability_clean_restart_keeps_shadow(void)
{
	const char *id = "dur-clean";
	const char *const filters[] = { "fleet/+/shadow/#", NULL };
	struct fm_client *dev = fm_device_connect(g_broker.port, id);
	struct fm_client *ops;
	struct fm_update_result r;
	Fleetmq__V1__ShadowDocument *before, *after;
	Fleetmq__V1__HelloAccepted *ha;
	int rc;

	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, 0, FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(ha != NULL);
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	rc = fm_shadow_update(dev, id, "c-1", 0, "{\"fw\":\"2.1\",\"net\":{\"rssi\":-70}}", NULL, &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 1);
	fm_update_result_clear(&r);
	ops = fm_operator_connect(g_broker.port, "ops", filters);
	CU_ASSERT_FATAL(ops != NULL);
	rc = fm_shadow_update(ops, id, "c-2", 0, NULL, "{\"fw\":\"2.2\"}", &r, FM_TIMEOUT_MS);
	FM_ASSERT_EQ(rc, 1);
	fm_update_result_clear(&r);
	fm_client_destroy(ops);
	before = fm_shadow_get(dev, id, "before", FM_TIMEOUT_MS);
	CU_ASSERT_FATAL(before != NULL);
	FM_ASSERT_EQ(before->version, 2);
	fm_client_destroy(dev);

	FM_ASSERT_EQ_FATAL(fm_broker_stop(&g_broker), 0);
	FM_ASSERT_EQ_FATAL(fm_broker_restart(&g_broker), 0);

	after = operator_get(id);
	FM_ASSERT(after != NULL, "no shadow after a clean restart");
	if(after){
		FM_ASSERT_EQ(after->version, before->version);
		FM_ASSERT_STR_EQ(after->state_json, before->state_json);
		FM_ASSERT_STR_EQ(after->metadata_json, before->metadata_json);
		fleetmq__v1__shadow_document__free_unpacked(after, NULL);
	}

	/* The device is up to date after the restart: NONE. */
	dev = fm_device_connect(g_broker.port, id);
	CU_ASSERT_FATAL(dev != NULL);
	ha = fm_device_hello(dev, id, before->version, FM_TIMEOUT_MS);
	FM_ASSERT(ha != NULL, "no hello/accepted after restart");
	if(ha){
		FM_ASSERT_EQ(ha->shadow_version, before->version);
		FM_ASSERT_EQ(ha->shadow_sync, FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE);
		fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	}
	fleetmq__v1__shadow_document__free_unpacked(before, NULL);
	fm_client_destroy(dev);
}

/* Record one update/accepted or update/rejected reply. Returns true if it
 * was an accepted one. */
static bool record_reply(const struct fm_msg *m, bool *accepted, uint64_t *max_version, int *rejected)
{
	size_t tl = strlen(m->topic);
	if(tl >= 9 && strcmp(m->topic + tl - 9, "/accepted") == 0){
		Fleetmq__V1__ShadowUpdateAccepted *a = fm_pb_update_accepted(m);
		int k = -1;
		FM_ASSERT(a != NULL, "undecodable update/accepted");
		if(!a) return false;
		if(sscanf(a->client_token, "t%d", &k) == 1 && k >= 0 && k < TOTAL_UPDATES){
			FM_ASSERT(!accepted[k], "update %d accepted twice", k);
			accepted[k] = true;
		}else{
			FM_ASSERT(false, "accepted with unknown token '%s'", a->client_token);
		}
		FM_ASSERT(a->version > *max_version, "accepted version %llu not above %llu",
				(unsigned long long)a->version, (unsigned long long)*max_version);
		if(a->version > *max_version) *max_version = a->version;
		fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
		return true;
	}
	if(tl >= 9 && strcmp(m->topic + tl - 9, "/rejected") == 0){
		Fleetmq__V1__Rejection *r = fm_pb_rejection(m);
		(*rejected)++;
		FM_ASSERT(false, "update rejected: %s %s (token %s)", r ? fm_error_code_name(r->code) : "?",
				r ? r->reason : "", r ? r->client_token : "");
		if(r) fleetmq__v1__rejection__free_unpacked(r, NULL);
	}
	return false;
}

static void test_durability_kill9_loses_no_acknowledged_update(void)
{
	const char *id = "dur-kill";
	char update_topic[128], reply_filter[128];
	bool *accepted = calloc(TOTAL_UPDATES, sizeof(bool));
	uint64_t max_version = 0;
	int rejected = 0;

	CU_ASSERT_FATAL(accepted != NULL);
	fm_topic(update_topic, sizeof(update_topic), id, "shadow/update");
	fm_topic(reply_filter, sizeof(reply_filter), id, "shadow/update/+");

	for(int round = 0; round < ROUNDS; round++){
		int first = round * UPDATES_PER_ROUND, acked = 0, acked_at_kill, missing = 0, present = 0;
		struct fm_client *dev = fm_device_connect(g_broker.port, id);
		Fleetmq__V1__HelloAccepted *ha;
		Fleetmq__V1__ShadowDocument *d;
		struct fm_msg *m;
		cJSON *state;
		const cJSON *reported;

		CU_ASSERT_FATAL(dev != NULL);
		ha = fm_device_hello(dev, id, max_version, FM_TIMEOUT_MS);
		CU_ASSERT_FATAL(ha != NULL);
		fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);

		/* Stream the whole round without waiting; libmosquitto keeps the
		 * broker's receive-maximum worth of QoS 1 messages in flight. */
		for(int i = first; i < first + UPDATES_PER_ROUND; i++){
			char token[16], rep[32];
			size_t len;
			uint8_t *buf;
			snprintf(token, sizeof(token), "t%d", i);
			snprintf(rep, sizeof(rep), "{\"k%d\":%d}", i, i);
			buf = fm_pb_update_request(token, 0, rep, NULL, &len);
			FM_ASSERT_EQ(fm_client_publish(dev, update_topic, buf, len, 1, false, NULL), MOSQ_ERR_SUCCESS);
			free(buf);
		}
		while(acked < KILL_AFTER[round]){
			m = fm_client_wait_message(dev, reply_filter, 10000);
			FM_ASSERT(m != NULL, "round %d: replies stopped after %d accepted", round, acked);
			if(!m) break;
			if(record_reply(m, accepted, &max_version, &rejected)) acked++;
			fm_msg_free(m);
		}

		/* kill -9 with updates in flight. */
		FM_ASSERT_EQ(fm_broker_kill9(&g_broker), 128 + 9);
		acked_at_kill = acked;
		/* Replies the broker wrote before it died are acknowledgements too. */
		fm_client_wait_disconnect(dev, FM_TIMEOUT_MS);
		while((m = fm_client_wait_message(dev, reply_filter, 200)) != NULL){
			if(record_reply(m, accepted, &max_version, &rejected)) acked++;
			fm_msg_free(m);
		}
		fm_client_destroy(dev);
		FM_ASSERT(acked < UPDATES_PER_ROUND, "round %d: all %d updates acknowledged before the kill; "
				"nothing was in flight", round, acked);

		FM_ASSERT_EQ_FATAL(fm_broker_restart(&g_broker), 0);
		d = operator_get(id);
		FM_ASSERT(d != NULL, "round %d: no shadow after kill -9 + restart", round);
		if(!d) break;
		state = fm_json_parse(d->state_json);
		reported = state ? fm_json_path(state, "reported") : NULL;
		FM_ASSERT(cJSON_IsObject(reported), "round %d: no reported object: %.200s", round, d->state_json);
		for(int k = 0; k < first + UPDATES_PER_ROUND && reported; k++){
			char key[16];
			const cJSON *v;
			snprintf(key, sizeof(key), "k%d", k);
			v = cJSON_GetObjectItemCaseSensitive(reported, key);
			if(v) present++;
			if(accepted[k]){
				if(!v || !cJSON_IsNumber(v) || v->valueint != k){
					if(missing < 10) fprintf(stderr, "\n    round %d: acknowledged update %s lost\n", round, key);
					missing++;
				}
			}
		}
		FM_ASSERT(missing == 0, "round %d: %d acknowledged updates lost by kill -9", round, missing);
		FM_ASSERT(d->version >= max_version, "round %d: version %llu after restart < acknowledged %llu",
				round, (unsigned long long)d->version, (unsigned long long)max_version);
		/* Each update added exactly one key: version and content agree. */
		FM_ASSERT(reported && d->version == (uint64_t)cJSON_GetArraySize(reported),
				"round %d: version %llu but %d keys", round, (unsigned long long)d->version,
				reported ? cJSON_GetArraySize(reported) : -1);
		fprintf(stderr, "\n    round %d: %d acknowledged (%d at kill), max version %llu, after restart "
				"version %llu with %d keys\n", round, acked, acked_at_kill,
				(unsigned long long)max_version, (unsigned long long)d->version, present);
		if(d->version > max_version) max_version = d->version;
		cJSON_Delete(state);
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}
	FM_ASSERT_EQ(rejected, 0);
	free(accepted);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_durability_clean_restart_keeps_shadow", test_durability_clean_restart_keeps_shadow },
		{ "test_durability_kill9_loses_no_acknowledged_update", test_durability_kill9_loses_no_acknowledged_update },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_durability", suite_init, suite_cleanup, tests);
}
