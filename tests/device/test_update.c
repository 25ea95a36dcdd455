/*
 * test_update.c - CUnit suite for the device side's pure-ish core:
 * common/artifact_sig.c (manifest, Ed25519 sign/verify, key rotation,
 * versions, SHA-256) and the agent's executors (update state machine with
 * the real A/B handler on real files, config and feature executors).
 *
 * Crashes are real: crash_run() forks a child that runs the executor and
 * _exit()s at a chosen point (right after a step was persisted, after a
 * handler step had its effect, or in the middle of the download), exactly
 * like kill -9. The parent then restarts from what is on disk with
 * agent__update_resume() and checks the device's state (slots, `current`
 * symlink, VERSION, files left behind).
 *
 * Keys are generated per run (OpenSSL); everything lives in a mkdtemp dir.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "agent.h"
#include "artifact_sig.h"
#include "fleetmq_alloc.h"

#define PAYLOAD_BYTES (100 * 1024 + 123)
#define CHUNK_BYTES 4096
#define PERSIST_EVERY 4
#define CRASH_EXIT 42

static char g_root[PATH_MAX];
static char g_key1[PATH_MAX], g_pub1[PATH_MAX], g_key2[PATH_MAX], g_pub2[PATH_MAX];
static char g_key3[PATH_MAX], g_pub3[PATH_MAX];
static int g_case;

/* ================================================================
 * helpers
 * ================================================================ */

/* Also called from suite_init (no CUnit assertions there): a path that
 * does not fit is a broken test environment, so give up loudly. */
static void path_join(char *out, const char *a, const char *b)
{
	int n = snprintf(out, PATH_MAX, "%s/%s", a, b);

	if(n <= 0 || n >= PATH_MAX){
		fprintf(stderr, "path too long: %s/%s\n", a, b);
		abort();
	}
}

static char *slurp(const char *path)
{
	char *text = NULL;
	size_t len;

	if(agent__read_file(path, 16u << 20, &text, &len) != 0) return NULL;
	return text;
}

static bool file_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	fputs(text, f);
	fclose(f);
}

/* ================================================================
 * device fixture: state dir, A/B slots (a = 1.0.0), artifact payload
 * ================================================================ */

struct fixture {
	char dir[PATH_MAX];
	char state[PATH_MAX];
	char slots[PATH_MAX];
	uint8_t *payload;
	size_t payload_len;
	uint8_t *served;            /* what the fetcher serves (tampering) */
	size_t served_len;
	struct agent_ab_handler ab;
	struct fleetmq_sig_keyring *keys;
	struct agent_update_env env;
	/* fetcher instrumentation */
	uint64_t first_offset;      /* first offset asked in this run */
	bool first_seen;
	int reads;
	int transient_left;         /* fail this many reads transiently */
	/* crash injection (in a crash_run child) */
	const char *crash_point;    /* "progress:<step>", "after:<op>", "fetch" */
	uint64_t crash_offset;
	bool health_fail;
	/* reporter */
	char steps[64][32];
	int n_steps;
	int last_percent;
	int finals;                 /* reporter.final calls */
	enum agent_outcome final_outcome;
	bool state_at_final;        /* the state file still existed at that moment */
	/* canceled / clock */
	bool cancel;
	uint64_t clock_ms;
};

static struct fixture *g_fx;

static void maybe_crash(struct fixture *f, const char *point)
{
	if(f->crash_point && !strcmp(f->crash_point, point)) _exit(CRASH_EXIT);
}

static int fake_read(void *ctx, const char *artifact, uint64_t offset, uint8_t *buf, uint32_t len,
		uint32_t *got, uint64_t *total, char *err, size_t errlen)
{
	struct fixture *f = ctx;
	size_t n;

	if(!f->first_seen){
		f->first_seen = true;
		f->first_offset = offset;
	}
	f->reads++;
	if(f->crash_point && !strcmp(f->crash_point, "fetch") && offset >= f->crash_offset) _exit(CRASH_EXIT);
	if(f->transient_left > 0){
		f->transient_left--;
		snprintf(err, errlen, "timeout");
		return 1;
	}
	if(strcmp(artifact, "fw-1.1.0.bin") && strcmp(artifact, "fw-0.9.0.bin") && strcmp(artifact, "fw-1.0.0.bin")){
		snprintf(err, errlen, "not found");
		return -1;
	}
	*total = f->served_len;
	if(offset > f->served_len){
		snprintf(err, errlen, "offset past the end");
		return -1;
	}
	n = f->served_len - offset < len ? f->served_len - offset : len;
	memcpy(buf, f->served + offset, n);
	*got = (uint32_t)n;
	return 0;
}

static void fake_progress(void *ctx, const char *job_id, const struct agent_result *r, int percent)
{
	struct fixture *f = ctx;
	char point[64];

	(void)job_id;
	if(f->n_steps < 64 && (f->n_steps == 0 || strcmp(f->steps[f->n_steps - 1], r->step))){
		snprintf(f->steps[f->n_steps++], sizeof(f->steps[0]), "%s", r->step);
	}
	if(percent >= 0) f->last_percent = percent;
	snprintf(point, sizeof(point), "progress:%s", r->step);
	maybe_crash(f, point);
}

static void fake_final(void *ctx, const char *job_id, const struct agent_result *r)
{
	struct fixture *f = ctx;
	char path[PATH_MAX];
	struct stat st;

	(void)job_id;
	f->finals++;
	f->final_outcome = r->outcome;
	path_join(path, f->state, AGENT_UPDATE_STATE_FILE);
	f->state_at_final = stat(path, &st) == 0;
	maybe_crash(f, "final");
}

/* Handler ops: the real A/B handler plus crash / failure injection. */
static int h_install(void *ctx, const char *payload, const struct fleetmq_artifact_meta *m, cJSON *hs, char *err, size_t errlen)
{
	int rc = agent__ab_ops.install(&g_fx->ab, payload, m, hs, err, errlen);
	maybe_crash(g_fx, "after:install");
	(void)ctx;
	return rc;
}

static int h_reboot(void *ctx, const char *payload, cJSON *hs, char *err, size_t errlen)
{
	int rc = agent__ab_ops.reboot(&g_fx->ab, payload, hs, err, errlen);
	maybe_crash(g_fx, "after:reboot");
	(void)ctx;
	return rc;
}

static int h_health(void *ctx, const char *payload, cJSON *hs, char *err, size_t errlen)
{
	int rc = agent__ab_ops.health(&g_fx->ab, payload, hs, err, errlen);
	maybe_crash(g_fx, "after:health");
	(void)ctx;
	if(g_fx->health_fail){
		snprintf(err, errlen, "injected health failure");
		return -1;
	}
	return rc;
}

static int h_commit(void *ctx, const char *payload, cJSON *hs, char *err, size_t errlen)
{
	int rc = agent__ab_ops.commit(&g_fx->ab, payload, hs, err, errlen);
	maybe_crash(g_fx, "after:commit");
	(void)ctx;
	return rc;
}

static int h_rollback(void *ctx, const char *payload, cJSON *hs, char *err, size_t errlen)
{
	int rc = agent__ab_ops.rollback(&g_fx->ab, payload, hs, err, errlen);
	maybe_crash(g_fx, "after:rollback");
	(void)ctx;
	return rc;
}

static void h_version(void *ctx, char *buf, size_t size)
{
	(void)ctx;
	agent__ab_ops.current_version(&g_fx->ab, buf, size);
}

static const struct agent_handler_ops test_ops = {
	h_install, h_reboot, h_health, h_commit, h_rollback, h_version,
};

static bool fx_canceled(void *ctx, const char *job_id)
{
	(void)job_id;
	return ((struct fixture *)ctx)->cancel;
}

static uint64_t fx_now(void *ctx)
{
	return ((struct fixture *)ctx)->clock_ms;
}

static void fx_setup(struct fixture *f)
{
	char path[PATH_MAX], err[512], name[32];
	size_t i;

	memset(f, 0, sizeof(*f));
	g_fx = f;
	snprintf(name, sizeof(name), "case%d", ++g_case);
	path_join(f->dir, g_root, name);
	CU_ASSERT_EQUAL_FATAL(agent__mkdir_p(f->dir, 0755), 0);
	path_join(f->state, f->dir, "state");
	path_join(f->slots, f->dir, "slots");
	CU_ASSERT_EQUAL_FATAL(agent__mkdir_p(f->state, 0755), 0);
	CU_ASSERT_EQUAL_FATAL(agent__ab_init(&f->ab, f->slots, NULL, 5000, err, sizeof(err)), 0);
	path_join(path, f->slots, "a/VERSION");
	write_text(path, "1.0.0\n");

	f->payload_len = PAYLOAD_BYTES;
	f->payload = malloc(f->payload_len);
	for(i = 0; i < f->payload_len; i++) f->payload[i] = (uint8_t)(i * 31 + (i >> 8));
	f->served = f->payload;
	f->served_len = f->payload_len;

	CU_ASSERT_EQUAL_FATAL(fleetmq_sig_keyring_new(&f->keys), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_sig_keyring_add_file(f->keys, g_pub1, err, sizeof(err)), FLEETMQ_SIG_OK);

	f->env.state_dir = f->state;
	f->env.device_type = "sensor-v2";
	f->env.hw_revision = "r2";
	f->env.fallback_version = "0.0.0";
	f->env.keys = f->keys;
	f->env.handler.ops = &test_ops;
	f->env.handler.ctx = f;
	f->env.fetcher.read = fake_read;
	f->env.fetcher.ctx = f;
	f->env.reporter.progress = fake_progress;
	f->env.reporter.final = fake_final;
	f->env.reporter.ctx = f;
	f->env.policy = AGENT_POLICY_AUTO;
	f->env.chunk_bytes = CHUNK_BYTES;
	f->env.persist_every_chunks = PERSIST_EVERY;
	f->env.retry_pause_ms = 1;
	f->env.canceled = fx_canceled;
	f->env.now_ms = fx_now;
	f->env.hook_ctx = f;
	f->last_percent = -1;
	f->clock_ms = 1000000;
}

static void fx_teardown(struct fixture *f)
{
	if(f->served != f->payload) free(f->served);
	free(f->payload);
	agent__ab_clear(&f->ab);
	fleetmq_sig_keyring_free(f->keys);
	g_fx = NULL;
}

/* Metadata for payload p, signed with key (NULL = unsigned). */
static char *make_doc(const uint8_t *p, size_t len, const char *name, const char *version, const char *types,
		const char *hw, bool critical, bool allow_downgrade, const char *key)
{
	char hex[65], err[512];
	cJSON *o = cJSON_CreateObject();
	char *text;

	fleetmq_sha256_hex(p, len, hex);
	cJSON_AddStringToObject(o, "artifact", name);
	cJSON_AddStringToObject(o, "name", name);
	cJSON_AddStringToObject(o, "version", version);
	cJSON_AddItemToObject(o, "deviceTypes", cJSON_Parse(types));
	cJSON_AddItemToObject(o, "hwRevisions", cJSON_Parse(hw));
	cJSON_AddNumberToObject(o, "size", (double)len);
	cJSON_AddStringToObject(o, "sha256", hex);
	cJSON_AddBoolToObject(o, "critical", critical);
	cJSON_AddBoolToObject(o, "allowDowngrade", allow_downgrade);
	if(key) CU_ASSERT_EQUAL(fleetmq_artifact_sign(o, key, err, sizeof(err)), FLEETMQ_SIG_OK);
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

static char *std_doc(struct fixture *f)
{
	return make_doc(f->payload, f->payload_len, "fw-1.1.0.bin", "1.1.0", "[\"sensor-v1\",\"sensor-v2\"]",
			"[\"r1\",\"r2\"]", false, false, g_key1);
}

static void current_slot(struct fixture *f, char *buf)
{
	agent__ab_current_slot(&f->ab, buf, 8);
}

static void installed_version(struct fixture *f, char *buf, size_t size)
{
	agent__update_current_version(&f->env, buf, size);
}

/* The device is as before the update: current -> a, version 1.0.0. */
static void assert_unchanged(struct fixture *f)
{
	char slot[8], ver[64], path[PATH_MAX];

	current_slot(f, slot);
	installed_version(f, ver, sizeof(ver));
	CU_ASSERT_STRING_EQUAL(slot, "a");
	CU_ASSERT_STRING_EQUAL(ver, "1.0.0");
	path_join(path, f->state, AGENT_UPDATE_STATE_FILE);
	CU_ASSERT_FALSE(file_exists(path));
	path_join(path, f->state, AGENT_UPDATE_PAYLOAD_FILE);
	CU_ASSERT_FALSE(file_exists(path));
}

/* Updated: current -> b with VERSION 1.1.0 and the payload, committed. */
static void assert_updated(struct fixture *f)
{
	char slot[8], ver[64], path[PATH_MAX], *text;

	current_slot(f, slot);
	installed_version(f, ver, sizeof(ver));
	CU_ASSERT_STRING_EQUAL(slot, "b");
	CU_ASSERT_STRING_EQUAL(ver, "1.1.0");
	path_join(path, f->slots, "b/fw-1.1.0.bin");
	text = slurp(path);
	CU_ASSERT_PTR_NOT_NULL(text);
	if(text) CU_ASSERT_EQUAL(memcmp(text, f->payload, f->payload_len), 0);
	fm_free(text);
	path_join(path, f->slots, "committed");
	text = slurp(path);
	CU_ASSERT_PTR_NOT_NULL(text);
	if(text) CU_ASSERT_STRING_EQUAL(text, "b");
	fm_free(text);
	path_join(path, f->state, AGENT_UPDATE_STATE_FILE);
	CU_ASSERT_FALSE(file_exists(path));
	path_join(path, f->state, AGENT_UPDATE_PAYLOAD_FILE);
	CU_ASSERT_FALSE(file_exists(path));
}

/* Run the executor in a child that crashes at f->crash_point. Returns the
 * child's exit code (CRASH_EXIT if it crashed there). */
static int crash_run(struct fixture *f, const char *job, const char *doc)
{
	pid_t pid = fork();
	int status = 0;

	if(pid == 0){
		struct agent_result r;
		agent__update_run(&f->env, job, doc, &r);
		_exit(r.outcome);
	}
	waitpid(pid, &status, 0);
	f->crash_point = NULL;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *state_step(struct fixture *f)
{
	char *job = NULL;
	enum agent_update_step step = UPD_NONE;

	if(agent__update_peek(f->state, &job, &step) != 0) return NULL;
	fm_free(job);
	return (char *)agent__update_step_name(step);
}

/* ================================================================
 * versions, manifest, signatures
 * ================================================================ */

static void test_version_compare_rules(void)
{
	static const struct { const char *a, *b; int cmp; } cases[] = {
		{ "1.0.0", "1.0.0", 0 }, { "1.2", "1.2.0", 0 }, { "1.2.0", "1.10.0", -1 },
		{ "2", "1.99.99", 1 }, { "1.0.0-rc.1", "1.0.0", -1 }, { "1.0.0-rc.2", "1.0.0-rc.10", -1 },
		{ "1.0.0-alpha", "1.0.0-alpha.1", -1 }, { "1.0.0-alpha.beta", "1.0.0-beta", -1 },
		{ "1.0.0-1", "1.0.0-alpha", -1 }, { "1.0.0+build.7", "1.0.0+build.9", 0 },
		{ "0.9.9", "1.0.0-rc.1", -1 }, { "10.0", "9.9", 1 }, { "1.0.0-rc.01", "1.0.0-rc.1", 0 },
	};
	static const char *const bad[] = { "", "v1.0", "1..2", "1.2.", ".1", "1.0-", "1.0.0-a..b", "1.0 ", "1.0.0+",
		"1.2.3.4.5.6.7.8.9", "1234567890123456789", "1.x" };
	size_t i;
	int cmp;

	for(i = 0; i < sizeof(cases) / sizeof(cases[0]); i++){
		CU_ASSERT_EQUAL(fleetmq_version_compare(cases[i].a, cases[i].b, &cmp), FLEETMQ_SIG_OK);
		CU_ASSERT_EQUAL(cmp, cases[i].cmp);
		CU_ASSERT_EQUAL(fleetmq_version_compare(cases[i].b, cases[i].a, &cmp), FLEETMQ_SIG_OK);
		CU_ASSERT_EQUAL(cmp, -cases[i].cmp);
	}
	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		CU_ASSERT_FALSE(fleetmq_version_valid(bad[i]));
		CU_ASSERT_EQUAL(fleetmq_version_compare(bad[i], "1.0", &cmp), FLEETMQ_SIG_ERR_VERSION);
	}
	CU_ASSERT_TRUE(fleetmq_version_valid("1.2.3.4.5.6.7.8"));
	CU_ASSERT_EQUAL(fleetmq_version_compare(NULL, "1", &cmp), FLEETMQ_SIG_ERR_ARGS);
}

static void test_manifest_build_canonical(void)
{
	const char *json = "{\"name\":\"fw.bin\",\"version\":\"2.0.0-rc.1\",\"deviceTypes\":[\"t1\",\"t2\"],"
		"\"hwRevisions\":[],\"size\":42,\"sha256\":\"ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\","
		"\"critical\":true,\"extra\":1}";
	cJSON *o = cJSON_Parse(json);
	char *m = NULL, err[256];

	CU_ASSERT_EQUAL(fleetmq_artifact_manifest_from_json(o, &m, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_STRING_EQUAL(m, "fleetmq-artifact-v1\nname=fw.bin\nversion=2.0.0-rc.1\nsize=42\n"
			"sha256=abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n"
			"device_types=t1,t2\nhw_revisions=\ncritical=1\nallow_downgrade=0\n");
	fm_free(m);
	cJSON_Delete(o);
}

static void test_manifest_build_invalid_fields(void)
{
	static const char *const bad[] = {
		"{\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\"}",                     /* no name */
		"{\"name\":\"a/b\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\".x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\\nsize=9\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"a,b\"],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"hwRevisions\":[\"r\\n\"],\"size\":1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":-1,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1.5,\"sha256\":\"%s\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s0\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\",\"critical\":\"yes\"}",
		"{\"name\":\"x\",\"version\":\"1.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\",\"keyId\":\"xyz\"}",
		/* a repeated member is ambiguous between parsers */
		"{\"name\":\"x\",\"version\":\"1.0\",\"version\":\"9.0\",\"deviceTypes\":[\"t\"],\"size\":1,\"sha256\":\"%s\"}",
	};
	const char *sha = "0000000000000000000000000000000000000000000000000000000000000000";
	char text[512], err[256], *m;
	size_t i;

	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		cJSON *o;
		snprintf(text, sizeof(text), bad[i], sha);
		o = cJSON_Parse(text);
		CU_ASSERT_PTR_NOT_NULL_FATAL(o);
		m = NULL;
		err[0] = '\0';
		CU_ASSERT_EQUAL(fleetmq_artifact_manifest_from_json(o, &m, err, sizeof(err)), FLEETMQ_SIG_ERR_METADATA);
		CU_ASSERT_PTR_NULL(m);
		CU_ASSERT_TRUE(err[0] != '\0');
		cJSON_Delete(o);
	}
}

static struct fleetmq_sig_keyring *ring(const char *a, const char *b)
{
	struct fleetmq_sig_keyring *kr = NULL;
	char err[256];

	fleetmq_sig_keyring_new(&kr);
	if(a) CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_file(kr, a, err, sizeof(err)), FLEETMQ_SIG_OK);
	if(b) CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_file(kr, b, err, sizeof(err)), FLEETMQ_SIG_OK);
	return kr;
}

/* Verify the document text against kr after mutate(o) (may be NULL). */
static int verify_doc(const char *doc, struct fleetmq_sig_keyring *kr, void (*mutate)(cJSON *))
{
	struct fleetmq_artifact_meta m;
	cJSON *o = cJSON_Parse(doc);
	char err[512];
	int rc;

	if(mutate) mutate(o);
	rc = fleetmq_artifact_meta_parse(o, &m, err, sizeof(err));
	if(rc == FLEETMQ_SIG_OK) rc = fleetmq_artifact_verify(&m, kr, err, sizeof(err));
	fleetmq_artifact_meta_free(&m);
	cJSON_Delete(o);
	return rc;
}

static void set_str(cJSON *o, const char *k, const char *v)
{
	cJSON_ReplaceItemInObjectCaseSensitive(o, k, cJSON_CreateString(v));
}

static void mut_sha(cJSON *o) { set_str(o, "sha256", "1111111111111111111111111111111111111111111111111111111111111111"); }
static void mut_version(cJSON *o) { set_str(o, "version", "9.9.9"); }
static void mut_downgrade(cJSON *o) { cJSON_ReplaceItemInObjectCaseSensitive(o, "allowDowngrade", cJSON_CreateTrue()); }
static void mut_types(cJSON *o) { cJSON_ReplaceItemInObjectCaseSensitive(o, "deviceTypes", cJSON_Parse("[\"other\"]")); }
static void mut_size(cJSON *o) { cJSON_ReplaceItemInObjectCaseSensitive(o, "size", cJSON_CreateNumber(7)); }
static void mut_no_keyid(cJSON *o) { cJSON_DeleteItemFromObjectCaseSensitive(o, "keyId"); }
static void mut_no_sig(cJSON *o) { cJSON_DeleteItemFromObjectCaseSensitive(o, "signature"); }
static void mut_sig_garbage(cJSON *o) { set_str(o, "signature", "AAAA"); }
static void mut_artifact_field(cJSON *o) { set_str(o, "artifact", "whatever"); }   /* not signed, not checked here */

static void test_sign_verify_good_and_tampered(void)
{
	uint8_t data[100] = { 1, 2, 3 };
	char *doc = make_doc(data, sizeof(data), "fw.bin", "1.2.0", "[\"t\"]", "[]", false, false, g_key1);
	struct fleetmq_sig_keyring *kr = ring(g_pub1, NULL);

	CU_ASSERT_EQUAL(verify_doc(doc, kr, NULL), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_artifact_field), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_no_keyid), FLEETMQ_SIG_OK);            /* tries all keys */
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_sha), FLEETMQ_SIG_ERR_BAD_SIGNATURE);   /* tampered payload hash */
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_version), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_downgrade), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_types), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_size), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_no_sig), FLEETMQ_SIG_ERR_NO_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_sig_garbage), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	fleetmq_sig_keyring_free(kr);
	cJSON_free(doc);
}

static void test_sign_verify_unknown_key(void)
{
	uint8_t data[10] = { 9 };
	char *doc = make_doc(data, sizeof(data), "fw.bin", "1.2.0", "[\"t\"]", "[]", false, false, g_key3);
	struct fleetmq_sig_keyring *kr = ring(g_pub1, g_pub2), *empty = ring(NULL, NULL);

	CU_ASSERT_EQUAL(verify_doc(doc, kr, NULL), FLEETMQ_SIG_ERR_UNKNOWN_KEY);
	/* without keyId every key is tried, and none matches */
	CU_ASSERT_EQUAL(verify_doc(doc, kr, mut_no_keyid), FLEETMQ_SIG_ERR_BAD_SIGNATURE);
	CU_ASSERT_EQUAL(verify_doc(doc, empty, NULL), FLEETMQ_SIG_ERR_UNKNOWN_KEY);
	fleetmq_sig_keyring_free(kr);
	fleetmq_sig_keyring_free(empty);
	cJSON_free(doc);
}

static void test_sign_verify_rotated_keys(void)
{
	uint8_t data[10] = { 7 };
	char *old_doc = make_doc(data, sizeof(data), "fw.bin", "1.2.0", "[\"t\"]", "[]", false, false, g_key1);
	char *new_doc = make_doc(data, sizeof(data), "fw.bin", "1.3.0", "[\"t\"]", "[]", false, false, g_key2);
	struct fleetmq_sig_keyring *both = ring(g_pub1, g_pub2), *only_new = ring(g_pub2, NULL);
	char id1[17], id2[17], idp[17], err[256];

	CU_ASSERT_EQUAL(verify_doc(old_doc, both, NULL), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(verify_doc(new_doc, both, NULL), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(verify_doc(new_doc, both, mut_no_keyid), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(verify_doc(old_doc, only_new, NULL), FLEETMQ_SIG_ERR_UNKNOWN_KEY);  /* old key retired */
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_count(both), 2);
	/* adding the same key again does not duplicate it */
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_file(both, g_pub1, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_count(both), 2);
	/* key ids: from the public key file and from the private key agree */
	CU_ASSERT_EQUAL(fleetmq_sig_key_id_file(g_pub1, id1, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(fleetmq_sig_key_id_file(g_key1, idp, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_EQUAL(fleetmq_sig_key_id_file(g_pub2, id2, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_STRING_EQUAL(id1, idp);
	CU_ASSERT_STRING_NOT_EQUAL(id1, id2);
	CU_ASSERT_EQUAL(strlen(id1), 16);
	CU_ASSERT_STRING_EQUAL(fleetmq_sig_keyring_key_id(both, 0), id1);
	/* a private key is refused in a trust store; garbage too */
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_file(only_new, g_key1, err, sizeof(err)), FLEETMQ_SIG_ERR_KEY);
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_pem(only_new, "junk", 4, err, sizeof(err)), FLEETMQ_SIG_ERR_KEY);
	CU_ASSERT_EQUAL(fleetmq_sig_keyring_add_file(only_new, "/nonexistent.pem", err, sizeof(err)), FLEETMQ_SIG_ERR_IO);
	fleetmq_sig_keyring_free(both);
	fleetmq_sig_keyring_free(only_new);
	cJSON_free(old_doc);
	cJSON_free(new_doc);
}

static void test_sha256_file_known_vector(void)
{
	char path[PATH_MAX], hex[65], err[256];
	uint64_t size = 0;

	path_join(path, g_root, "abc.txt");
	write_text(path, "abc");
	CU_ASSERT_EQUAL(fleetmq_sha256_file(path, hex, &size, err, sizeof(err)), FLEETMQ_SIG_OK);
	CU_ASSERT_STRING_EQUAL(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	CU_ASSERT_EQUAL(size, 3);
	CU_ASSERT_EQUAL(fleetmq_sha256_file("/nonexistent", hex, &size, err, sizeof(err)), FLEETMQ_SIG_ERR_IO);
}

/* ================================================================
 * update executor
 * ================================================================ */

static void test_update_run_happy_path(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-1", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_STRING_EQUAL(agent__result_detail_get(&r, "version"), "1.1.0");
	assert_updated(&f);
	/* the final report was made once, while the state still existed */
	CU_ASSERT_EQUAL(f.finals, 1);
	CU_ASSERT_EQUAL(f.final_outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_TRUE(f.state_at_final);
	CU_ASSERT_EQUAL(f.first_offset, 0);
	CU_ASSERT_EQUAL(f.reads, (PAYLOAD_BYTES + CHUNK_BYTES - 1) / CHUNK_BYTES);
	/* steps were reported in order */
	CU_ASSERT_EQUAL_FATAL(f.n_steps, 6);
	CU_ASSERT_STRING_EQUAL(f.steps[0], "download");
	CU_ASSERT_STRING_EQUAL(f.steps[1], "verify");
	CU_ASSERT_STRING_EQUAL(f.steps[2], "install");
	CU_ASSERT_STRING_EQUAL(f.steps[3], "reboot");
	CU_ASSERT_STRING_EQUAL(f.steps[4], "health-check");
	CU_ASSERT_STRING_EQUAL(f.steps[5], "commit");

	/* a second update goes to slot a and keeps b as the previous one */
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_same_version_succeeds_at_once(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = make_doc(f.payload, f.payload_len, "fw-1.0.0.bin", "1.0.0", "[\"sensor-v2\"]", "[]", false, false, g_key1);
	agent__update_run(&f.env, "job-same", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_EQUAL(f.reads, 0);
	assert_unchanged(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

/* Each rejection: REJECTED with a failure type, no download, device unchanged. */
static void expect_rejected(struct fixture *f, const char *doc, const char *failure_type)
{
	struct agent_result r;

	f->reads = 0;
	f->finals = 0;
	agent__update_run(&f->env, "job-rej", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_EQUAL(f->finals, 1);
	CU_ASSERT_EQUAL(f->final_outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, failure_type);
	CU_ASSERT_PTR_NOT_NULL(agent__result_detail_get(&r, "reason"));
	CU_ASSERT_EQUAL(f->reads, 0);
	assert_unchanged(f);
}

static void test_update_run_rejects_incompatible(void)
{
	struct fixture f;
	char *doc;

	fx_setup(&f);
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.1.0", "[\"camera\"]", "[]", false, false, g_key1);
	expect_rejected(&f, doc, "incompatible");
	cJSON_free(doc);
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.1.0", "[\"sensor-v2\"]", "[\"r9\"]", false, false, g_key1);
	expect_rejected(&f, doc, "incompatible");
	cJSON_free(doc);
	expect_rejected(&f, "{\"artifact\":\"x\"}", "document");
	expect_rejected(&f, "not json", "document");
	fx_teardown(&f);
}

static void test_update_run_rejects_downgrade_unless_signed(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, path[PATH_MAX];

	fx_setup(&f);
	doc = make_doc(f.payload, f.payload_len, "fw-0.9.0.bin", "0.9.0", "[\"sensor-v2\"]", "[]", false, false, g_key1);
	expect_rejected(&f, doc, "downgrade");
	cJSON_free(doc);
	/* allowDowngrade set after signing: signature check fails first */
	{
		cJSON *o;
		doc = make_doc(f.payload, f.payload_len, "fw-0.9.0.bin", "0.9.0", "[\"sensor-v2\"]", "[]", false, false, g_key1);
		o = cJSON_Parse(doc);
		cJSON_ReplaceItemInObjectCaseSensitive(o, "allowDowngrade", cJSON_CreateTrue());
		cJSON_free(doc);
		doc = cJSON_PrintUnformatted(o);
		cJSON_Delete(o);
		expect_rejected(&f, doc, "signature");
		cJSON_free(doc);
	}
	/* signed with allowDowngrade: installs */
	doc = make_doc(f.payload, f.payload_len, "fw-0.9.0.bin", "0.9.0", "[\"sensor-v2\"]", "[]", false, true, g_key1);
	agent__update_run(&f.env, "job-down", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	path_join(path, f.slots, "b/VERSION");
	{
		char *t = slurp(path);
		CU_ASSERT_PTR_NOT_NULL(t);
		if(t) CU_ASSERT_STRING_EQUAL(t, "0.9.0\n");
		fm_free(t);
	}
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_rejects_bad_signatures(void)
{
	struct fixture f;
	char *doc;

	fx_setup(&f);
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.1.0", "[\"sensor-v2\"]", "[]", false, false, NULL);
	expect_rejected(&f, doc, "signature");            /* unsigned */
	cJSON_free(doc);
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.1.0", "[\"sensor-v2\"]", "[]", false, false, g_key3);
	expect_rejected(&f, doc, "signature");            /* unknown key */
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_rejects_tampered_payload(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	/* same size, one byte changed in the store */
	f.served = malloc(f.payload_len);
	memcpy(f.served, f.payload, f.payload_len);
	f.served[777] ^= 0x55;
	agent__update_run(&f.env, "job-t", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "verify");
	assert_unchanged(&f);
	/* different size */
	f.served_len = f.payload_len - 1;
	agent__update_run(&f.env, "job-t2", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "verify");
	assert_unchanged(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_failed_health_rolls_back(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, err[256];

	fx_setup(&f);
	/* a real failing health check command */
	agent__ab_clear(&f.ab);
	CU_ASSERT_EQUAL_FATAL(agent__ab_init(&f.ab, f.slots, "test -f \"$1/fw-1.1.0.bin\" && echo unhealthy && exit 3", 5000,
			err, sizeof(err)), 0);
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-h", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "health-check");
	CU_ASSERT_PTR_NOT_NULL(strstr(agent__result_detail_get(&r, "reason") ?: "", "exited with 3: unhealthy"));
	CU_ASSERT_STRING_EQUAL(agent__result_detail_get(&r, "rolledBack") ?: "", "true");
	assert_unchanged(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_health_timeout_rolls_back(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, err[256];

	fx_setup(&f);
	agent__ab_clear(&f.ab);
	CU_ASSERT_EQUAL_FATAL(agent__ab_init(&f.ab, f.slots, "sleep 30", 300, err, sizeof(err)), 0);
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-ht", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_PTR_NOT_NULL(strstr(agent__result_detail_get(&r, "reason") ?: "", "timed out"));
	assert_unchanged(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_resume_download_from_persisted_offset(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, *job = NULL;
	uint64_t crash_at = 11 * CHUNK_BYTES;        /* during the 12th chunk */

	fx_setup(&f);
	doc = std_doc(&f);
	f.crash_point = "fetch";
	f.crash_offset = crash_at;
	CU_ASSERT_EQUAL(crash_run(&f, "job-dl", doc), CRASH_EXIT);
	CU_ASSERT_STRING_EQUAL(state_step(&f) ?: "", "download");

	/* restart: resumes from the last persisted offset (every 4 chunks: 8) */
	f.first_seen = false;
	f.reads = 0;
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_STRING_EQUAL(job ?: "", "job-dl");
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_EQUAL(f.first_offset, 8 * CHUNK_BYTES);
	CU_ASSERT_EQUAL(f.reads, (PAYLOAD_BYTES + CHUNK_BYTES - 1) / CHUNK_BYTES - 8);
	assert_updated(&f);
	fm_free(job);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_resume_download_via_same_job(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	f.crash_point = "fetch";
	f.crash_offset = 5 * CHUNK_BYTES;
	CU_ASSERT_EQUAL(crash_run(&f, "job-dl2", doc), CRASH_EXIT);
	/* the library hands the same job again: it continues, it does not restart */
	f.first_seen = false;
	agent__update_run(&f.env, "job-dl2", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_EQUAL(f.first_offset, 4 * CHUNK_BYTES);
	assert_updated(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

/* Crash at `point`, restart, expect the final outcome and device state. */
static void crash_then_resume(const char *point, bool health_fail, enum agent_outcome expect, bool updated)
{
	struct fixture f;
	struct agent_result r;
	char *doc, *job = NULL;
	int rc;

	fx_setup(&f);
	doc = std_doc(&f);
	f.crash_point = point;
	f.health_fail = health_fail;
	rc = crash_run(&f, "job-c", doc);
	if(rc != CRASH_EXIT) fprintf(stderr, "\n  crash point %s: child exited %d\n", point, rc);
	CU_ASSERT_EQUAL(rc, CRASH_EXIT);
	f.health_fail = false;
	f.finals = 0;
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_EQUAL(f.finals, 1);
	CU_ASSERT_EQUAL(f.final_outcome, expect);
	if(r.outcome != expect){
		fprintf(stderr, "\n  crash point %s: outcome %s, expected %s (%s)\n", point, agent__outcome_name(r.outcome),
				agent__outcome_name(expect), agent__result_detail_get(&r, "reason") ?: "");
	}
	CU_ASSERT_EQUAL(r.outcome, expect);
	CU_ASSERT_STRING_EQUAL(job ?: "", "job-c");
	if(updated) assert_updated(&f);
	else assert_unchanged(&f);
	/* a second restart finds nothing to do */
	fm_free(job);
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_NONE);
	CU_ASSERT_PTR_NULL(job);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_resume_after_crash_at_every_step(void)
{
	/* persisted, not yet run: redo or roll back */
	crash_then_resume("progress:download", false, AGENT_OUT_SUCCEEDED, true);
	crash_then_resume("progress:verify", false, AGENT_OUT_SUCCEEDED, true);
	crash_then_resume("progress:install", false, AGENT_OUT_SUCCEEDED, true);
	crash_then_resume("after:install", false, AGENT_OUT_SUCCEEDED, true);       /* still in INSTALL: redo */
	/* after the switch, before commit: roll back */
	crash_then_resume("progress:reboot", false, AGENT_OUT_FAILED, false);
	crash_then_resume("after:reboot", false, AGENT_OUT_FAILED, false);
	crash_then_resume("progress:health-check", false, AGENT_OUT_FAILED, false);
	crash_then_resume("after:health", false, AGENT_OUT_FAILED, false);
	/* commit persisted: redo it, success */
	crash_then_resume("progress:commit", false, AGENT_OUT_SUCCEEDED, true);
	crash_then_resume("after:commit", false, AGENT_OUT_SUCCEEDED, true);
	/* crash while rolling back a failed health check: roll back again */
	crash_then_resume("progress:rollback", true, AGENT_OUT_FAILED, false);
	crash_then_resume("after:rollback", true, AGENT_OUT_FAILED, false);
	/* crash while the final report is made: the state is still there, the
	 * restart repeats the last step and the report (a duplicate) */
	crash_then_resume("final", false, AGENT_OUT_SUCCEEDED, true);
	crash_then_resume("final", true, AGENT_OUT_FAILED, false);
}

static void test_update_resume_expected_reboot_continues(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, *job = NULL;

	fx_setup(&f);
	f.env.handler.reboots = true;
	doc = std_doc(&f);
	/* the Reboot step "reboots" (the process dies after the switch) */
	f.crash_point = "after:reboot";
	CU_ASSERT_EQUAL(crash_run(&f, "job-rb", doc), CRASH_EXIT);
	/* first start after it: health check and commit on the new slot */
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	assert_updated(&f);
	fm_free(job);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_resume_second_restart_rolls_back(void)
{
	struct fixture f;
	char *doc, *job = NULL;
	int status = 0;
	pid_t pid;
	struct agent_result r;

	fx_setup(&f);
	f.env.handler.reboots = true;
	doc = std_doc(&f);
	f.crash_point = "after:reboot";
	CU_ASSERT_EQUAL(crash_run(&f, "job-rb2", doc), CRASH_EXIT);
	/* the first start dies in the health check (the new software hangs) */
	pid = fork();
	if(pid == 0){
		f.crash_point = "progress:health-check";
		agent__update_resume(&f.env, &job, &r);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	CU_ASSERT_EQUAL(WEXITSTATUS(status), CRASH_EXIT);
	/* the second start rolls back */
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "restart");
	assert_unchanged(&f);
	fm_free(job);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_transient_fetch_errors_retried(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	f.transient_left = 3;
	agent__update_run(&f.env, "job-tr", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	assert_updated(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_cancel_during_download(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	f.cancel = true;
	agent__update_run(&f.env, "job-cx", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_CANCELED);
	CU_ASSERT_EQUAL(f.finals, 0);
	assert_unchanged(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_policy_critical_only_defers(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, path[PATH_MAX];

	fx_setup(&f);
	f.env.policy = AGENT_POLICY_CRITICAL_ONLY;
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-p", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	CU_ASSERT_STRING_EQUAL(r.step, "deferred");
	CU_ASSERT_EQUAL(f.finals, 0);
	CU_ASSERT_STRING_EQUAL(f.steps[0], "deferred");
	CU_ASSERT_EQUAL(f.reads, 0);
	path_join(path, f.state, AGENT_UPDATE_STATE_FILE);
	CU_ASSERT_FALSE(file_exists(path));          /* nothing persisted for a deferral */
	/* the policy changes (desired.update_policy): the same job proceeds */
	f.env.policy = AGENT_POLICY_AUTO;
	agent__update_run(&f.env, "job-p", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	assert_updated(&f);
	cJSON_free(doc);
	/* a critical update is not deferred */
	fx_teardown(&f);
	fx_setup(&f);
	f.env.policy = AGENT_POLICY_CRITICAL_ONLY;
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.1.0", "[\"sensor-v2\"]", "[]", true, false, g_key1);
	agent__update_run(&f.env, "job-crit", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_policy_ask_holds_until_approved(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, path[PATH_MAX], *job = NULL;

	fx_setup(&f);
	f.env.policy = AGENT_POLICY_ASK;
	f.env.ask_deadline_ms = 60000;
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-ask", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	CU_ASSERT_STRING_EQUAL(r.step, "awaiting-approval");
	CU_ASSERT_STRING_EQUAL(state_step(&f) ?: "", "awaiting-approval");
	CU_ASSERT_EQUAL(f.reads, 0);
	/* still waiting later, also across a restart */
	f.clock_ms += 30000;
	agent__update_resume(&f.env, &job, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	fm_free(job);
	/* approval for another job does nothing */
	path_join(path, f.state, AGENT_UPDATE_APPROVAL_FILE);
	write_text(path, "approve job-other\n");
	agent__update_run(&f.env, "job-ask", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	/* approved: installs; the approval file is consumed */
	write_text(path, "approve job-ask\n");
	agent__update_run(&f.env, "job-ask", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_FALSE(file_exists(path));
	assert_updated(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_policy_ask_deadline(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc, path[PATH_MAX];

	/* on_deadline reject */
	fx_setup(&f);
	f.env.policy = AGENT_POLICY_ASK;
	f.env.ask_deadline_ms = 1000;
	f.env.on_deadline = AGENT_DEADLINE_REJECT;
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-dl", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	f.clock_ms += 1000;
	agent__update_run(&f.env, "job-dl", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "approval-timeout");
	agent__update_forget(f.state);     /* the agent does this after a final report */
	assert_unchanged(&f);
	/* explicit decline */
	f.env.on_deadline = AGENT_DEADLINE_INSTALL;
	agent__update_run(&f.env, "job-dl2", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	path_join(path, f.state, AGENT_UPDATE_APPROVAL_FILE);
	write_text(path, "reject job-dl2\n");
	agent__update_run(&f.env, "job-dl2", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "declined");
	agent__update_forget(f.state);
	/* on_deadline install */
	agent__update_run(&f.env, "job-dl3", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_IN_PROGRESS);
	f.clock_ms += 5000;
	agent__update_run(&f.env, "job-dl3", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	assert_updated(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_run_other_job_drops_stale_download(void)
{
	struct fixture f;
	struct agent_result r;
	char *doc;

	fx_setup(&f);
	doc = std_doc(&f);
	f.crash_point = "fetch";
	f.crash_offset = 5 * CHUNK_BYTES;
	CU_ASSERT_EQUAL(crash_run(&f, "job-old", doc), CRASH_EXIT);
	/* job-old was canceled meanwhile; job-new starts from scratch */
	f.first_seen = false;
	agent__update_run(&f.env, "job-new", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_EQUAL(f.first_offset, 0);
	assert_updated(&f);
	cJSON_free(doc);
	fx_teardown(&f);
}

static void test_update_module_handler_steps(void)
{
	struct fixture f;
	struct agent_module_handler mh;
	struct agent_result r;
	char script[PATH_MAX], log[PATH_MAX], err[256], *doc, *text;

	fx_setup(&f);
	path_join(script, f.dir, "module.sh");
	path_join(log, f.dir, "module.log");
	{
		char body[PATH_MAX * 3];
		snprintf(body, sizeof(body), "#!/bin/sh\necho \"$1 $(basename \"$2\") $FLEETMQ_ARTIFACT_VERSION\" >> %s\n"
				"[ \"$1\" = HealthCheck ] && [ -f %s/sick ] && { echo sick; exit 1; }\nexit 0\n", log, f.dir);
		write_text(script, body);
		chmod(script, 0755);
	}
	CU_ASSERT_EQUAL_FATAL(agent__module_init(&mh, script, f.state, NULL, 5000, 5000, err, sizeof(err)), 0);
	f.env.handler.ops = &agent__module_ops;
	f.env.handler.ctx = &mh;
	doc = std_doc(&f);
	agent__update_run(&f.env, "job-m", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	text = slurp(log);
	CU_ASSERT_STRING_EQUAL(text ?: "", "Install update-payload 1.1.0\nReboot update-payload 1.1.0\n"
			"HealthCheck update-payload 1.1.0\nCommit update-payload 1.1.0\n");
	fm_free(text);
	{
		char ver[64];
		agent__update_current_version(&f.env, ver, sizeof(ver));
		CU_ASSERT_STRING_EQUAL(ver, "1.1.0");
	}
	/* failing health: Rollback is called */
	cJSON_free(doc);
	{
		char sick[PATH_MAX];
		path_join(sick, f.dir, "sick");
		write_text(sick, "1");
	}
	unlink(log);
	doc = make_doc(f.payload, f.payload_len, "fw-1.1.0.bin", "1.2.0", "[\"sensor-v2\"]", "[]", false, false, g_key1);
	agent__update_run(&f.env, "job-m2", doc, &r);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_PTR_NOT_NULL(strstr(agent__result_detail_get(&r, "reason") ?: "", "HealthCheck exited with 1: sick"));
	text = slurp(log);
	CU_ASSERT_PTR_NOT_NULL(strstr(text ?: "", "Rollback update-payload 1.2.0\n"));
	CU_ASSERT_PTR_NULL(strstr(text ?: "", "Commit"));
	fm_free(text);
	cJSON_free(doc);
	agent__module_clear(&mh);
	fx_teardown(&f);
}

/* ================================================================
 * config and feature executors
 * ================================================================ */

struct settings_fx {
	char dir[PATH_MAX], cfg[PATH_MAX], feat[PATH_MAX];
	struct agent_settings s;
};

static void settings_setup(struct settings_fx *x)
{
	char name[32];

	snprintf(name, sizeof(name), "settings%d", ++g_case);
	path_join(x->dir, g_root, name);
	CU_ASSERT_EQUAL_FATAL(agent__mkdir_p(x->dir, 0755), 0);
	path_join(x->cfg, x->dir, "app.json");
	path_join(x->feat, x->dir, "features.json");
	memset(&x->s, 0, sizeof(x->s));
	x->s.config_file = x->cfg;
	x->s.features_file = x->feat;
	x->s.cmd_timeout_ms = 5000;
}

static void config_job(struct settings_fx *x, const char *doc_text, struct agent_result *r, cJSON **applied)
{
	cJSON *doc = cJSON_Parse(doc_text);
	agent__config_apply(&x->s, doc, applied, r);
	cJSON_Delete(doc);
}

static void test_config_apply_set_unset_atomic(void)
{
	struct settings_fx x;
	struct agent_result r;
	cJSON *applied = NULL, *file;
	char tmp[PATH_MAX + 32], cand[PATH_MAX + 32], err[256];

	settings_setup(&x);
	config_job(&x, "{\"set\":{\"rate\":5,\"mode\":\"eco\",\"nested\":{\"a\":[1,2]}}}", &r, &applied);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_PTR_NOT_NULL_FATAL(applied);
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(applied, "rate")->valueint, 5);
	cJSON_Delete(applied);
	config_job(&x, "{\"set\":{\"rate\":7},\"unset\":[\"mode\",\"missing\"]}", &r, &applied);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	cJSON_Delete(applied);
	CU_ASSERT_EQUAL(agent__read_json(x.cfg, &file, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(cJSON_GetObjectItem(file, "rate")->valueint, 7);
	CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(file, "mode"));
	CU_ASSERT_PTR_NOT_NULL(cJSON_GetObjectItem(file, "nested"));
	cJSON_Delete(file);
	/* no temporary files left behind */
	snprintf(tmp, sizeof(tmp), "%s.tmp", x.cfg);
	snprintf(cand, sizeof(cand), "%s.candidate", x.cfg);
	CU_ASSERT_FALSE(file_exists(tmp));
	CU_ASSERT_FALSE(file_exists(cand));
	/* the same values again: unchanged */
	config_job(&x, "{\"set\":{\"rate\":7}}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_STRING_EQUAL(agent__result_detail_get(&r, "result") ?: "", "unchanged");
	/* bad documents are rejected */
	config_job(&x, "{\"other\":1}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	config_job(&x, "{\"set\":[1]}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	config_job(&x, "{\"set\":{\"a\":1},\"unset\":[\"a\"]}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	config_job(&x, "{\"unset\":[3]}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
}

static void test_config_apply_validate_failure_keeps_old(void)
{
	struct settings_fx x;
	struct agent_result r;
	char *before, *after, cand[PATH_MAX + 32], marker[PATH_MAX], cmd[PATH_MAX * 2];

	settings_setup(&x);
	config_job(&x, "{\"set\":{\"rate\":5}}", &r, NULL);
	CU_ASSERT_EQUAL_FATAL(r.outcome, AGENT_OUT_SUCCEEDED);
	before = slurp(x.cfg);
	/* the validator refuses rate > 10, and sees the candidate via $1 and the env */
	path_join(marker, x.dir, "validated");
	snprintf(cmd, sizeof(cmd), "cp \"$FLEETMQ_CONFIG_FILE\" %s; grep -q '\"rate\":[[:space:]]*99' \"$1\" && { echo 'rate too high'; exit 2; }; exit 0",
			marker);
	x.s.validate_cmd = cmd;
	config_job(&x, "{\"set\":{\"rate\":99}}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "validate");
	CU_ASSERT_PTR_NOT_NULL(strstr(agent__result_detail_get(&r, "reason") ?: "", "exited with 2: rate too high"));
	after = slurp(x.cfg);
	CU_ASSERT_STRING_EQUAL(after ?: "", before ?: "-");
	snprintf(cand, sizeof(cand), "%s.candidate", x.cfg);
	CU_ASSERT_FALSE(file_exists(cand));
	CU_ASSERT_TRUE(file_exists(marker));
	fm_free(after);
	/* a valid value passes */
	config_job(&x, "{\"set\":{\"rate\":9}}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	fm_free(before);
}

static void test_config_apply_reload_failure_restores_old(void)
{
	struct settings_fx x;
	struct agent_result r;
	char *before, *after, cmd[PATH_MAX * 2], count[PATH_MAX];

	settings_setup(&x);
	config_job(&x, "{\"set\":{\"rate\":5}}", &r, NULL);
	before = slurp(x.cfg);
	path_join(count, x.dir, "reloads");
	snprintf(cmd, sizeof(cmd), "echo r >> %s; grep -q '\"bad\"' \"$1\" && exit 1; exit 0", count);
	x.s.reload_cmd = cmd;
	config_job(&x, "{\"set\":{\"bad\":true}}", &r, NULL);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_FAILED);
	CU_ASSERT_STRING_EQUAL(r.failure_type, "reload");
	after = slurp(x.cfg);
	CU_ASSERT_STRING_EQUAL(after ?: "", before ?: "-");
	fm_free(after);
	after = slurp(count);
	CU_ASSERT_STRING_EQUAL(after ?: "", "r\nr\n");      /* failed reload, then reload of the old file */
	fm_free(after);
	fm_free(before);
}

static void test_features_apply_persists(void)
{
	struct settings_fx x;
	struct agent_result r;
	cJSON *doc, *applied = NULL, *stored;
	char err[256];

	settings_setup(&x);
	doc = cJSON_Parse("{\"disable\":[\"beta-ui\",\"uploads\"],\"enable\":[\"metrics\"]}");
	agent__features_apply(&x.s, doc, &applied, &r);
	cJSON_Delete(doc);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_TRUE(cJSON_IsFalse(cJSON_GetObjectItem(applied, "beta-ui")));
	CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(applied, "metrics")));
	cJSON_Delete(applied);
	/* persisted: a new reader (restart) sees it */
	stored = agent__features_read(&x.s, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(stored);
	CU_ASSERT_EQUAL(cJSON_GetArraySize(stored), 3);
	CU_ASSERT_TRUE(cJSON_IsFalse(cJSON_GetObjectItem(stored, "uploads")));
	cJSON_Delete(stored);
	/* enable again; desired map form */
	doc = cJSON_Parse("{\"uploads\":true}");
	agent__features_apply_map(&x.s, doc, &applied, &r);
	cJSON_Delete(doc);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_SUCCEEDED);
	CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(applied, "uploads")));
	CU_ASSERT_TRUE(cJSON_IsFalse(cJSON_GetObjectItem(applied, "beta-ui")));
	cJSON_Delete(applied);
	/* contradictions and bad names are rejected, file unchanged */
	doc = cJSON_Parse("{\"disable\":[\"x\"],\"enable\":[\"x\"]}");
	agent__features_apply(&x.s, doc, NULL, &r);
	cJSON_Delete(doc);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	doc = cJSON_Parse("{\"enable\":[\"\"]}");
	agent__features_apply(&x.s, doc, NULL, &r);
	cJSON_Delete(doc);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	doc = cJSON_Parse("{\"uploads\":\"yes\"}");
	agent__features_apply_map(&x.s, doc, NULL, &r);
	cJSON_Delete(doc);
	CU_ASSERT_EQUAL(r.outcome, AGENT_OUT_REJECTED);
	stored = agent__features_read(&x.s, err, sizeof(err));
	CU_ASSERT_TRUE(cJSON_IsTrue(cJSON_GetObjectItem(stored, "uploads")));
	cJSON_Delete(stored);
}

/* ================================================================
 * telemetry parsers
 * ================================================================ */

static void test_telemetry_parsers(void)
{
	struct agent_cpu_times a, b;
	double total, avail, rx, tx;
	char path[PATH_MAX], names[4][64];
	double values[4];

	CU_ASSERT_EQUAL(agent__parse_proc_stat("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n", &a), 0);
	CU_ASSERT_EQUAL(agent__parse_proc_stat("cpu  150 0 150 900 0 0 0 0 0 0\n", &b), 0);
	CU_ASSERT_DOUBLE_EQUAL(agent__cpu_percent(&a, &b), 50.0, 0.001);
	CU_ASSERT_DOUBLE_EQUAL(agent__cpu_percent(&b, &a), -1.0, 0.001);
	CU_ASSERT_EQUAL(agent__parse_proc_stat("garbage", &a), -1);
	CU_ASSERT_EQUAL(agent__parse_meminfo("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    250 kB\n", &total, &avail), 0);
	CU_ASSERT_DOUBLE_EQUAL(total, 1024000.0, 0.1);
	CU_ASSERT_DOUBLE_EQUAL(avail, 256000.0, 0.1);
	CU_ASSERT_EQUAL(agent__parse_net_dev("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
			"    lo: 500 5 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"
			"  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
			"  wlan0: 1 1 0 0 0 0 0 0 2 1 0 0 0 0 0 0\n", &rx, &tx), 0);
	CU_ASSERT_DOUBLE_EQUAL(rx, 1001.0, 0.1);
	CU_ASSERT_DOUBLE_EQUAL(tx, 2002.0, 0.1);
	path_join(path, g_root, "app-metrics");
	write_text(path, "# comment\napp.queue 12\napp.temp -3.5\nbad line here\n\napp.ok 1e3\n");
	CU_ASSERT_EQUAL(agent__read_app_metrics(path, names, values, 4), 3);
	CU_ASSERT_STRING_EQUAL(names[0], "app.queue");
	CU_ASSERT_DOUBLE_EQUAL(values[1], -3.5, 0.001);
	CU_ASSERT_DOUBLE_EQUAL(values[2], 1000.0, 0.001);
	{
		struct agent_cpu_times prev = { 0, 0, false };
		struct agent_sysinfo si;
		agent__sysinfo_sample("/proc", g_root, &prev, &si);
		CU_ASSERT_TRUE(si.mem_total_bytes > 0);
		CU_ASSERT_TRUE(si.disk_total_bytes > 0);
		CU_ASSERT_TRUE(si.uptime_s > 0);
		CU_ASSERT_TRUE(prev.valid);
	}
}

/* ================================================================
 * main
 * ================================================================ */

static int suite_init(void)
{
	char err[512];

	snprintf(g_root, sizeof(g_root), "/tmp/fleetmq-test-update-XXXXXX");
	if(!mkdtemp(g_root)) return 1;
	path_join(g_key1, g_root, "k1.pem");
	path_join(g_pub1, g_root, "k1.pub");
	path_join(g_key2, g_root, "k2.pem");
	path_join(g_pub2, g_root, "k2.pub");
	path_join(g_key3, g_root, "k3.pem");
	path_join(g_pub3, g_root, "k3.pub");
	if(fleetmq_sig_keygen(g_key1, g_pub1, err, sizeof(err)) || fleetmq_sig_keygen(g_key2, g_pub2, err, sizeof(err))
			|| fleetmq_sig_keygen(g_key3, g_pub3, err, sizeof(err))){
		fprintf(stderr, "keygen: %s\n", err);
		return 1;
	}
	return 0;
}

static int suite_cleanup(void)
{
	if(!getenv("FLEETMQ_KEEP_TMP")) agent__rm_rf(g_root);
	return 0;
}

int main(void)
{
	static const struct { const char *name; CU_TestFunc fn; } tests[] = {
		{ "test_version_compare_rules", test_version_compare_rules },
		{ "test_manifest_build_canonical", test_manifest_build_canonical },
		{ "test_manifest_build_invalid_fields", test_manifest_build_invalid_fields },
		{ "test_sign_verify_good_and_tampered", test_sign_verify_good_and_tampered },
		{ "test_sign_verify_unknown_key", test_sign_verify_unknown_key },
		{ "test_sign_verify_rotated_keys", test_sign_verify_rotated_keys },
		{ "test_sha256_file_known_vector", test_sha256_file_known_vector },
		{ "test_update_run_happy_path", test_update_run_happy_path },
		{ "test_update_run_same_version_succeeds_at_once", test_update_run_same_version_succeeds_at_once },
		{ "test_update_run_rejects_incompatible", test_update_run_rejects_incompatible },
		{ "test_update_run_rejects_downgrade_unless_signed", test_update_run_rejects_downgrade_unless_signed },
		{ "test_update_run_rejects_bad_signatures", test_update_run_rejects_bad_signatures },
		{ "test_update_run_rejects_tampered_payload", test_update_run_rejects_tampered_payload },
		{ "test_update_run_failed_health_rolls_back", test_update_run_failed_health_rolls_back },
		{ "test_update_run_health_timeout_rolls_back", test_update_run_health_timeout_rolls_back },
		{ "test_update_resume_download_from_persisted_offset", test_update_resume_download_from_persisted_offset },
		{ "test_update_resume_download_via_same_job", test_update_resume_download_via_same_job },
		{ "test_update_resume_after_crash_at_every_step", test_update_resume_after_crash_at_every_step },
		{ "test_update_resume_expected_reboot_continues", test_update_resume_expected_reboot_continues },
		{ "test_update_resume_second_restart_rolls_back", test_update_resume_second_restart_rolls_back },
		{ "test_update_run_transient_fetch_errors_retried", test_update_run_transient_fetch_errors_retried },
		{ "test_update_run_cancel_during_download", test_update_run_cancel_during_download },
		{ "test_update_policy_critical_only_defers", test_update_policy_critical_only_defers },
		{ "test_update_policy_ask_holds_until_approved", test_update_policy_ask_holds_until_approved },
		{ "test_update_policy_ask_deadline", test_update_policy_ask_deadline },
		{ "test_update_run_other_job_drops_stale_download", test_update_run_other_job_drops_stale_download },
		{ "test_update_module_handler_steps", test_update_module_handler_steps },
		{ "test_config_apply_set_unset_atomic", test_config_apply_set_unset_atomic },
		{ "test_config_apply_validate_failure_keeps_old", test_config_apply_validate_failure_keeps_old },
		{ "test_config_apply_reload_failure_restores_old", test_config_apply_reload_failure_restores_old },
		{ "test_features_apply_persists", test_features_apply_persists },
		{ "test_telemetry_parsers", test_telemetry_parsers },
	};
	CU_pSuite suite;
	unsigned failures;
	size_t i;

	if(CU_initialize_registry() != CUE_SUCCESS) return 1;
	suite = CU_add_suite("update", suite_init, suite_cleanup);
	if(!suite){
		CU_cleanup_registry();
		return 1;
	}
	for(i = 0; i < sizeof(tests) / sizeof(tests[0]); i++){
		if(!CU_add_test(suite, tests[i].name, tests[i].fn)){
			CU_cleanup_registry();
			return 1;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
