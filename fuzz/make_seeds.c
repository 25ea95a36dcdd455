/*
 * make_seeds.c - writes the seed corpus of the fuzz targets.
 *
 *   fuzz_make_seeds <dir>      (dir = fuzz/corpus; run once, output committed)
 *
 * Protobuf requests are encoded with the generated code, wrapped in the
 * record formats of fuzz_device_message.c and fuzz_control.c. JSON, YAML
 * and shadow seeds are plain text written here too, so the whole corpus can
 * be regenerated after a format change.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fleetmq.pb-c.h"

static const char *outdir;

/* ---------------------------------------------------------------- buffers */

struct buf {
	unsigned char data[65536];
	size_t len;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if(b->len + n > sizeof(b->data)) abort();
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void put_u8(struct buf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(b, &c, 1);
}

static void put_u16(struct buf *b, size_t v)
{
	put_u8(b, v & 0xff);
	put_u8(b, (v >> 8) & 0xff);
}

static void save(const char *target, const char *name, const struct buf *b)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", outdir, target);
	if(mkdir(path, 0755) != 0 && errno != EEXIST){
		perror(path);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s/%s", outdir, target, name);
	f = fopen(path, "wb");
	if(!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0){
		perror(path);
		exit(1);
	}
}

static void save_text(const char *target, const char *name, const char *text)
{
	struct buf b;

	b.len = 0;
	put(&b, text, strlen(text));
	save(target, name, &b);
}

/* A protobuf message packed into a scratch buffer. */
static size_t pack(const ProtobufCMessage *m, unsigned char *out, size_t outlen)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	if(n > outlen) abort();
	return protobuf_c_message_pack(m, out);
}

/* ---------------------------------------------------------------- device records */

enum kind { K_HELLO, K_SGET, K_SUPDATE, K_TELEMETRY, K_NEXT, K_JOBUPD, K_ART, K_RAWSUFFIX, K_DISCONNECT,
	K_ACL, K_RAWTOPIC, K_ACL_RAW };
#define OPERATOR 0x10
#define FOREIGN 0x20
#define IMPOSTOR 0x40

static void rec(struct buf *b, unsigned h0, unsigned dev, unsigned job, unsigned art, const void *payload, size_t len)
{
	put_u8(b, h0);
	put_u8(b, (dev & 3) | ((job & 3) << 2) | ((art & 3) << 4));
	put_u16(b, len);
	put(b, payload, len);
}

static void rec_msg(struct buf *b, unsigned h0, unsigned dev, unsigned job, unsigned art, const ProtobufCMessage *m)
{
	unsigned char tmp[4096];
	size_t n = pack(m, tmp, sizeof(tmp));
	rec(b, h0, dev, job, art, tmp, n);
}

static void rec_text(struct buf *b, unsigned h0, unsigned dev, unsigned sel, const char *text)
{
	rec(b, h0, dev, sel, 0, text, strlen(text));
}

static void hello(struct buf *b, unsigned dev, uint64_t shadow_version, const char *in_progress)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	Fleetmq__V1__Software sw = FLEETMQ__V1__SOFTWARE__INIT, *swp[1] = { &sw };
	Fleetmq__V1__Hello__AttributesEntry at = FLEETMQ__V1__HELLO__ATTRIBUTES_ENTRY__INIT, *atp[1] = { &at };

	h.agent_version = (char *)"1.2.3";
	h.device_type = (char *)"sensor";
	h.hw_revision = (char *)"rev-b";
	sw.name = (char *)"firmware";
	sw.version = (char *)"1.0";
	h.n_software = 1;
	h.software = swp;
	at.key = (char *)"region";
	at.value = (char *)"eu";
	h.n_attributes = 1;
	h.attributes = atp;
	h.shadow_version = shadow_version;
	h.execution_in_progress = (char *)(in_progress ? in_progress : "");
	h.sent_at_ms = 1700000000000ULL;
	rec_msg(b, K_HELLO, dev, 0, 0, &h.base);
}

static void shadow_update(struct buf *b, unsigned h0, unsigned dev, const char *reported, const char *desired,
		uint64_t expected)
{
	Fleetmq__V1__ShadowUpdateRequest u = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;

	u.client_token = (char *)"tok-1";
	u.reported_json = (char *)(reported ? reported : "");
	u.desired_json = (char *)(desired ? desired : "");
	u.expected_version = expected;
	rec_msg(b, h0 | K_SUPDATE, dev, 0, 0, &u.base);
}

static void shadow_get(struct buf *b, unsigned h0, unsigned dev)
{
	Fleetmq__V1__ShadowGetRequest g = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;

	g.client_token = (char *)"get-1";
	rec_msg(b, h0 | K_SGET, dev, 0, 0, &g.base);
}

static void next_get(struct buf *b, unsigned dev)
{
	Fleetmq__V1__JobNextGetRequest r = FLEETMQ__V1__JOB_NEXT_GET_REQUEST__INIT;

	r.client_token = (char *)"next";
	rec_msg(b, K_NEXT, dev, 0, 0, &r.base);
}

static void job_update(struct buf *b, unsigned dev, unsigned job, Fleetmq__V1__ExecutionStatus st, uint64_t expected,
		const char *failure_type, int with_details)
{
	Fleetmq__V1__JobExecutionUpdate u = FLEETMQ__V1__JOB_EXECUTION_UPDATE__INIT;
	Fleetmq__V1__JobExecutionUpdate__StatusDetailsEntry d = FLEETMQ__V1__JOB_EXECUTION_UPDATE__STATUS_DETAILS_ENTRY__INIT;
	Fleetmq__V1__JobExecutionUpdate__StatusDetailsEntry *dp[1] = { &d };

	u.status = st;
	u.expected_version = expected;
	u.progress_percent = st == FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS ? 40 : -1;
	u.step = (char *)"download";
	u.client_token = (char *)"ju";
	u.failure_type = (char *)(failure_type ? failure_type : "");
	if(with_details){
		d.key = (char *)"detail";
		d.value = (char *)"value";
		u.n_status_details = 1;
		u.status_details = dp;
	}
	rec_msg(b, K_JOBUPD, dev, job, 0, &u.base);
}

static void artifact_get(struct buf *b, unsigned dev, unsigned art, uint64_t offset, uint32_t length)
{
	Fleetmq__V1__ArtifactGetRequest r = FLEETMQ__V1__ARTIFACT_GET_REQUEST__INIT;

	r.offset = offset;
	r.length = length;
	r.client_token = (char *)"art";
	rec_msg(b, K_ART, dev, 0, art, &r.base);
}

static void device_seeds(void)
{
	const char *T = "fuzz_device_message";
	struct buf b;

	b.len = 0;
	hello(&b, 0, 0, NULL);
	shadow_get(&b, 0, 0);
	save(T, "hello_get", &b);

	b.len = 0;
	hello(&b, 1, 0, NULL);
	shadow_update(&b, 0, 1, "{\"temp\":21.5,\"fw\":{\"version\":\"1.0\",\"ok\":true},\"list\":[1,2,null]}", NULL, 0);
	shadow_update(&b, OPERATOR, 1, NULL, "{\"temp\":22,\"fw\":{\"version\":\"2.0\"},\"mode\":\"eco\"}", 1);
	shadow_update(&b, 0, 1, "{\"fw\":{\"ok\":null},\"temp\":null}", NULL, 0);
	shadow_get(&b, OPERATOR, 1);
	hello(&b, 1, 1, NULL);
	save(T, "shadow_cycle", &b);

	b.len = 0;
	shadow_update(&b, 0, 2, "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":1}}}}}}", NULL, 7);
	shadow_update(&b, 0, 2, NULL, "{\"x\":1}", 0);
	shadow_update(&b, OPERATOR, 2, "{\"x\":1}", NULL, 0);
	shadow_update(&b, 0, 2, "not json", NULL, 0);
	save(T, "shadow_rejections", &b);

	{
		Fleetmq__V1__TelemetryBatch t = FLEETMQ__V1__TELEMETRY_BATCH__INIT;
		Fleetmq__V1__Metric m = FLEETMQ__V1__METRIC__INIT, *mp[1] = { &m };
		b.len = 0;
		m.name = (char *)"sys.cpu.percent";
		m.value = 12.5;
		t.sequence = 7;
		t.timestamp_ms = 1700000000000ULL;
		t.n_metrics = 1;
		t.metrics = mp;
		rec_msg(&b, K_TELEMETRY, 3, 0, 0, &t.base);
		rec_msg(&b, K_TELEMETRY | OPERATOR, 3, 0, 0, &t.base);
		save(T, "telemetry", &b);
	}

	b.len = 0;
	hello(&b, 0, 0, NULL);
	next_get(&b, 0);
	job_update(&b, 0, 0, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS, 0, NULL, 1);
	artifact_get(&b, 0, 0, 0, 512);
	artifact_get(&b, 0, 0, 2900, 0);
	artifact_get(&b, 0, 0, 5000, 10);
	artifact_get(&b, 0, 1, 0, 0);
	job_update(&b, 0, 0, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED, 0, NULL, 1);
	next_get(&b, 0);
	save(T, "update_job", &b);

	b.len = 0;
	next_get(&b, 1);
	job_update(&b, 1, 2, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS, 0, NULL, 0);
	job_update(&b, 1, 2, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED, 0, "TIMED_OUT", 1);
	job_update(&b, 1, 1, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_REJECTED, 0, "unsupported", 0);
	job_update(&b, 1, 3, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS, 0, NULL, 0);
	hello(&b, 1, 0, "feat-1");
	save(T, "job_failures", &b);

	b.len = 0;
	job_update(&b, 2, 1, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS, 1, NULL, 0);
	job_update(&b, 2, 1, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS, 1, NULL, 0);
	job_update(&b, 2, 1, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED, 2, NULL, 0);
	job_update(&b, 2, 0, FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_QUEUED, 0, NULL, 0);
	save(T, "job_versions", &b);

	b.len = 0;
	rec_text(&b, K_RAWSUFFIX, 0, 0, "shadow/name/get");
	rec_text(&b, K_RAWSUFFIX, 0, 0, "jobs/x/y/update");
	rec_text(&b, K_RAWTOPIC, 0, 0, "fleet/dev-0");
	rec_text(&b, K_RAWTOPIC, 0, 0, "fleet//hello");
	rec_text(&b, K_RAWTOPIC, 0, 0, "other/topic");
	rec_text(&b, K_ACL, 0, 2, "+/presence");        /* subscribe */
	rec_text(&b, K_ACL_RAW, 0, 2, "fleet/#");
	rec_text(&b, K_ACL_RAW | OPERATOR, 0, 0, "fleet/dev-1/shadow/update/accepted");
	rec_text(&b, K_ACL, 0, 1, "telemetry");        /* write */
	rec(&b, K_DISCONNECT, 0, 0, 0, "", 0);
	save(T, "topics_acl", &b);

	b.len = 0;
	shadow_get(&b, FOREIGN, 0);
	shadow_get(&b, IMPOSTOR, 1);
	hello(&b, 2, 0, NULL);
	rec(&b, K_HELLO | OPERATOR, 2, 0, 0, "", 0);
	rec(&b, K_SGET, 2, 0, 0, "\xff\xff\xff", 3);
	save(T, "isolation", &b);

	b.len = 0;
	{
		/* the same device from its second session, then the first disconnects */
		Fleetmq__V1__ShadowGetRequest g = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;
		unsigned char tmp[64];
		size_t n = pack(&g.base, tmp, sizeof(tmp));
		hello(&b, 3, 0, NULL);
		put_u8(&b, K_SGET);
		put_u8(&b, 3 | 0x40);
		put_u16(&b, n);
		put(&b, tmp, n);
		rec(&b, K_DISCONNECT, 3, 0, 0, "", 0);
		put_u8(&b, K_DISCONNECT);
		put_u8(&b, 3 | 0x40);
		put_u16(&b, 0);
	}
	save(T, "takeover", &b);
}

/* ---------------------------------------------------------------- control records */

#define C_PB 0x01
#define C_OPERATOR 0x02
#define C_RESPONSE_TOPIC 0x04
#define C_CORRELATION 0x08
#define C_ANONYMOUS 0x10
#define C_DEVICES 0x20
#define C_SETTLE 0x40

static void crec(struct buf *b, unsigned flags, const char *rt, const char *corr, const void *payload, size_t len)
{
	if(rt) flags |= C_RESPONSE_TOPIC;
	if(corr) flags |= C_CORRELATION;
	put_u8(b, flags);
	if(rt){
		put_u8(b, strlen(rt));
		put(b, rt, strlen(rt));
	}
	if(corr){
		put_u8(b, strlen(corr));
		put(b, corr, strlen(corr));
	}
	put_u16(b, len);
	put(b, payload, len);
}

static void cjson(struct buf *b, unsigned flags, const char *json)
{
	crec(b, flags | C_OPERATOR, NULL, NULL, json, strlen(json));
}

static void cpb(struct buf *b, unsigned flags, const Fleetmq__V1__CreateJobRequest *r)
{
	unsigned char tmp[4096];
	size_t n = pack(&r->base, tmp, sizeof(tmp));
	crec(b, flags | C_PB | C_OPERATOR, NULL, NULL, tmp, n);
}

static void control_seeds(void)
{
	const char *T = "fuzz_control";
	struct buf b;

	b.len = 0;
	cjson(&b, 0, "{\"commands\":[{\"command\":\"listDevices\",\"limit\":2},"
			"{\"command\":\"listDevices\",\"group\":\"fleet-a\",\"after\":\"dev-0\"},"
			"{\"command\":\"describeDevice\",\"deviceId\":\"dev-1\"},"
			"{\"command\":\"getShadow\",\"deviceId\":\"dev-0\"}]}");
	save(T, "devices", &b);

	b.len = 0;
	{
		const char *j = "{\"commands\":[{\"command\":\"updateDesired\",\"deviceId\":\"dev-0\","
			"\"desired\":{\"led\":\"on\",\"cfg\":{\"rate\":5}},\"correlationData\":\"u1\"},"
			"{\"command\":\"updateDesired\",\"deviceId\":\"dev-0\",\"desired\":{\"led\":null},\"expectedVersion\":1},"
			"{\"command\":\"getShadow\",\"deviceId\":\"dev-0\"}]}";
		crec(&b, C_OPERATOR | C_DEVICES, "replies/ops", "c0rr", j, strlen(j));
	}
	save(T, "desired", &b);

	b.len = 0;
	cjson(&b, C_SETTLE, "{\"commands\":[{\"command\":\"createJob\",\"jobId\":\"ramp\",\"type\":\"update\","
			"\"document\":{\"artifact\":\"fw.bin\",\"version\":\"3\"},\"targets\":{\"all\":true},"
			"\"rollout\":{\"maxPerMinute\":60,\"ramp\":{\"basePerMinute\":1,\"factorPercent\":300,\"stepSuccesses\":1},"
			"\"canary\":{\"count\":1,\"percent\":10,\"successPercent\":100}},"
			"\"abort\":[{\"failureType\":\"ANY\",\"thresholdPercent\":10,\"minExecuted\":1}],"
			"\"timeoutMs\":1,\"retry\":{\"timedOut\":2,\"backoffMs\":0,\"backoffFactorPercent\":150,\"backoffMaxMs\":10}},"
			"{\"command\":\"describeJob\",\"jobId\":\"ramp\"}]}");
	cjson(&b, C_DEVICES | C_SETTLE, "{\"commands\":[{\"command\":\"listJobExecutions\",\"jobId\":\"ramp\"},"
			"{\"command\":\"describeJobExecution\",\"jobId\":\"ramp\",\"deviceId\":\"dev-0\"}]}");
	save(T, "create_ramp", &b);

	b.len = 0;
	cjson(&b, 0, "{\"commands\":[{\"command\":\"createJob\",\"type\":\"custom\",\"document\":{\"op\":\"reboot\"},"
			"\"targets\":{\"match\":{\"deviceType\":\"sensor\",\"attributes\":{\"region\":\"eu\"}}},\"continuous\":true},"
			"{\"command\":\"createJob\",\"jobId\":\"cfg-1\",\"type\":\"config\",\"document\":{\"set\":{}},\"targets\":{\"all\":true}},"
			"{\"command\":\"listJobs\",\"status\":\"IN_PROGRESS\",\"limit\":5},"
			"{\"command\":\"setDeviceAttributes\",\"deviceId\":\"dev-3\",\"groups\":[\"fleet-a\"],\"attributes\":{\"region\":\"eu\"}}]}");
	save(T, "create_match", &b);

	b.len = 0;
	cjson(&b, C_SETTLE, "{\"commands\":[{\"command\":\"cancelJob\",\"jobId\":\"upd-1\",\"reason\":\"bad build\"},"
			"{\"command\":\"cancelJob\",\"jobId\":\"feat-1\",\"force\":true,\"remove\":true},"
			"{\"command\":\"describeJob\",\"jobId\":\"upd-1\"},{\"command\":\"listJobs\"}]}");
	cjson(&b, C_DEVICES, "{\"commands\":[{\"command\":\"getAuditLog\",\"actor\":\"ops\",\"limit\":3},"
			"{\"command\":\"getAuditLog\",\"target\":\"upd-1\",\"sinceMs\":0,\"beforeSeq\":100}]}");
	save(T, "cancel_audit", &b);

	b.len = 0;
	crec(&b, 0, NULL, NULL, "{\"commands\":[{\"command\":\"listDevices\"}]}", 40);
	crec(&b, C_ANONYMOUS, "bad/+", NULL, "{}", 2);
	cjson(&b, 0, "{\"commands\":[1,{\"command\":7},{\"command\":\"nope\"},{\"command\":\"getShadow\"}]}");
	cjson(&b, 0, "{\"commands\":{}}");
	cjson(&b, 0, "[1,2");
	save(T, "errors", &b);

	{
		Fleetmq__V1__CreateJobRequest r = FLEETMQ__V1__CREATE_JOB_REQUEST__INIT;
		Fleetmq__V1__CreateJobRequest__TargetMatchEntry m1 = FLEETMQ__V1__CREATE_JOB_REQUEST__TARGET_MATCH_ENTRY__INIT;
		Fleetmq__V1__CreateJobRequest__TargetMatchEntry m2 = FLEETMQ__V1__CREATE_JOB_REQUEST__TARGET_MATCH_ENTRY__INIT;
		Fleetmq__V1__CreateJobRequest__TargetMatchEntry *mp[2] = { &m1, &m2 };
		char *devs[2] = { (char *)"dev-1", (char *)"dev-2" };
		char *groups[1] = { (char *)"fleet-a" };

		b.len = 0;
		r.job_id = (char *)"pb-1";
		r.type = FLEETMQ__V1__JOB_TYPE__JOB_TYPE_UPDATE;
		r.document_json = (char *)"{\"artifact\":\"fw.bin\",\"version\":\"4\"}";
		r.n_target_devices = 2;
		r.target_devices = devs;
		r.n_target_groups = 1;
		r.target_groups = groups;
		r.options_json = (char *)"{\"rollout\":{\"maxPerMinute\":10},\"timeoutMs\":5000,\"retry\":{\"failed\":1},\"ignored\":1}";
		r.description = (char *)"from protobuf";
		r.correlation = (char *)"pb-corr";
		cpb(&b, C_SETTLE, &r);
		cpb(&b, 0, &r);   /* idempotent repeat */
		save(T, "pb_create", &b);

		b.len = 0;
		memset(&r, 0, sizeof(r));
		fleetmq__v1__create_job_request__init(&r);
		r.type = FLEETMQ__V1__JOB_TYPE__JOB_TYPE_FEATURE;
		r.document_json = (char *)"{\"enable\":[\"a\",\"b\"]}";
		m1.key = (char *)"deviceType";
		m1.value = (char *)"sensor";
		m2.key = (char *)"region";
		m2.value = (char *)"eu";
		r.n_target_match = 2;
		r.target_match = mp;
		r.continuous = 1;
		cpb(&b, C_DEVICES, &r);
		r.target_all = 1;
		r.n_target_match = 0;
		r.options_json = (char *)"[]";
		cpb(&b, 0, &r);
		crec(&b, C_PB, NULL, NULL, "\x0a\x01x", 3);   /* not an operator */
		crec(&b, C_PB | C_OPERATOR, NULL, NULL, "\x0a\xff", 2);
		save(T, "pb_match", &b);
	}
}

/* ---------------------------------------------------------------- config */

static void config_seeds(void)
{
	const char *T = "fuzz_config";

	save_text(T, "full.yaml",
			"topic_prefix: fleet\n"
			"store:\n  path: /var/lib/mosquitto/fleetmq.db\n  synchronous: full\n  group_commit: true\n"
			"shadow:\n  max_document_bytes: 8192\n  max_depth: 8\n  max_payload_bytes: 65536\n"
			"presence:\n  silence_threshold_ms: 300000\n  check_interval_ms: 1000\n  offline_grace_ms: 1500\n  flush_interval_ms: 60000\n"
			"security:\n  operator_usernames: [ops, \"admin\"]\n  require_username_match: true\n  other_topics: allow\n"
			"control:\n  max_payload_bytes: 4194304\n"
			"jobs:\n  max_in_progress_per_device: 1\n  fanout_batch: 2000\n  release_batch: 1000\n  check_interval_ms: 200\n  max_document_bytes: 65536\n"
			"artifacts:\n  dir: /var/lib/mosquitto/artifacts\n  max_chunk_bytes: 65536\n"
			"log:\n  rejections: true\n");
	save_text(T, "flat.yaml",
			"store.path: /tmp/x.db\nstore.synchronous: normal\nsecurity.operator_usernames:\n  - ops\n  - 'o p s'\n"
			"shadow.max_depth: 3\nlog.rejections: off\n");
	save_text(T, "flow.yaml",
			"{store: {path: \"/tmp/\\u00e9t\\u00e9.db\", group_commit: no}, topic_prefix: 'devices', security: {operator_usernames: ~}}\n");
	save_text(T, "errors.yaml",
			"store:\n  path: ''\nshadow:\n  max_depth: 0x10\nunknown: 1\n");
	save_text(T, "anchors.yaml",
			"# comment only\n---\nstore: &s\n  path: !!str /tmp/a.db\nartifacts: {dir: null}\n...\n");
	save_text(T, "empty.yaml", "");
}

/* ---------------------------------------------------------------- shadow */

static void shadow_seed(const char *name, unsigned opt, const char *doc, const char *p1, const char *p2)
{
	struct buf b;

	b.len = 0;
	put_u8(&b, opt);
	put(&b, doc, strlen(doc));
	put_u8(&b, 0);
	put(&b, p1, strlen(p1));
	put_u8(&b, 0);
	put(&b, p2, strlen(p2));
	save("fuzz_shadow", name, &b);
}

static void shadow_seeds(void)
{
	const char *doc = "{\"version\":3,\"updated_ms\":1700000000000,"
		"\"desired\":{\"led\":\"on\",\"cfg\":{\"rate\":5,\"list\":[1,null]}},"
		"\"reported\":{\"led\":\"off\",\"cfg\":{\"rate\":5}},"
		"\"metadata\":{\"desired\":{\"led\":1,\"cfg\":{\"rate\":2,\"list\":3}},"
		"\"reported\":{\"led\":1,\"cfg\":{\"rate\":2}}}}";

	shadow_seed("merge", 0x07 | (4 << 3), doc, "{\"cfg\":{\"rate\":null,\"new\":{\"a\":1}},\"led\":null}",
			"{\"led\":\"on\",\"cfg\":{\"list\":[1,null]}}");
	shadow_seed("empty_doc", 0x03, "", "{\"a\":{\"b\":{\"c\":{}}}}", "{\"a\":1,\"a\":{\"x\":true}}");
	shadow_seed("version", 0x40 | 0x07, doc, "{\"z\":1e308}", "{\"z\":-0.0}");
	shadow_seed("conflict", 0x80 | 0x07, doc, "{\"z\":1}", "{}");
	shadow_seed("deep", 0x01, doc, "{\"a\":{\"b\":{\"c\":1}}}", "[1]");
	shadow_seed("big", 0x07, doc, "{\"s\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "{\"b\":\"\\u0000\\ud83d\\ude00\"}");
	shadow_seed("bad_doc", 0x07 | (2 << 3),
			"{\"version\":1,\"updated_ms\":1,\"desired\":{\"a\":null},\"reported\":{},\"metadata\":{\"desired\":{\"a\":1},\"reported\":{}}}",
			"{\"a\":1}", "{\"b\":2}");
}

/* ---------------------------------------------------------------- artifact metadata */

static void artifact_seeds(void)
{
	const char *T = "fuzz_artifact_meta";

	/* Signed with the fuzzer's throw-away test key (fuzz_artifact_meta.c). */
	save_text(T, "signed.json",
			"{\"name\":\"fw-1.2.0.bin\",\"version\":\"1.2.0\",\"deviceTypes\":[\"sensor\"],"
			"\"hwRevisions\":[\"r1\",\"r2\"],\"size\":3000,"
			"\"sha256\":\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
			"\"critical\":false,\"allowDowngrade\":false,"
			"\"signature\":\"HcTDu5jNpgMXjqlMYd1/ciAVBxPzMLMgt/zLynbVBc+2/bvrQpztmTNyhEyBVmtSJqpw48zHluCevSIkDyFtBw==\","
			"\"keyId\":\"de0cd1e61a7956d2\"}");
	save_text(T, "job_document.json",
			"{\"artifact\":\"fw-2.0.0-rc.1.bin\",\"name\":\"fw-2.0.0-rc.1.bin\",\"version\":\"2.0.0-rc.1+b7\","
			"\"deviceTypes\":[\"sensor\",\"gateway\"],\"hwRevisions\":[],\"size\":0,"
			"\"sha256\":\"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855\","
			"\"critical\":true,\"allowDowngrade\":true,\"unknown\":{\"x\":1},"
			"\"versions\":[\"1.2\",\"1.2.0\",\"1.2.0-rc.2\",\"1.2.0-rc.10\",\"1.2.0-beta\",\"v1\",\"1..2\",\"1.2.3.4.5.6.7.8.9\"]}");
	save_text(T, "bad_fields.json",
			"{\"name\":\".hidden\",\"version\":\"01.2\",\"deviceTypes\":[\"a,b\"],\"size\":-1,"
			"\"sha256\":\"xyz\",\"keyId\":\"12\",\"signature\":\"!!!\"}");
	save_text(T, "unknown_key.json",
			"{\"name\":\"a\",\"version\":\"1\",\"deviceTypes\":[\"t\"],\"size\":9007199254740992,"
			"\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\","
			"\"signature\":\"AAAA\",\"keyId\":\"0123456789abcdef\"}");
	save_text(T, "public_key.pem",
			"-----BEGIN PUBLIC KEY-----\n"
			"MCowBQYDK2VwAyEA1n9YcftZsmNfTYoZm7ZdnwhkGbV2DE1Jq71n2VDwKpY=\n"
			"-----END PUBLIC KEY-----\n");
}

int main(int argc, char **argv)
{
	if(argc != 2){
		fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
		return 2;
	}
	outdir = argv[1];
	if(mkdir(outdir, 0755) != 0 && errno != EEXIST){
		perror(outdir);
		return 1;
	}
	device_seeds();
	control_seeds();
	config_seeds();
	shadow_seeds();
	artifact_seeds();
	return 0;
}
