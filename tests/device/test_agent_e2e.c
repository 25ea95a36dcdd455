/*
 * test_agent_e2e.c - end-to-end suite for fleetmq-agent: a real mosquitto
 * with the fleetmq plugin (serving artifacts from a directory), and real
 * fleetmq-agent processes (fork/exec of the built binary, one state
 * directory and A/B slot directory per device). Operators act through the
 * control API ($CONTROL/fleetmq/v1: createJob, describeJobExecution) and
 * read shadows like any operator client; assertions look at what the
 * operator sees and at the device's files.
 *
 * Artifacts are signed with keys generated per run (common/artifact_sig.h),
 * stored as <artifacts.dir>/<name> + <name>.json, and the update job
 * document is the metadata plus "artifact": <name>, as the CLI does it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "fleetmq_client.h"
#include "artifact_sig.h"

#define JOB_TIMEOUT_MS 30000
#define CHUNK_BYTES 4096
/* The broker answers one chunk per main-loop pass (~40 ms here): the kill
 * test uses bigger chunks to stay fast. */
#define BIG_CHUNK_BYTES 16384

static int g_chunk = CHUNK_BYTES;     /* update.chunk_bytes of the next dev_init */

static struct fm_broker g_broker;
static char g_root[256];
static char g_artifacts[512];
static char g_key1[512], g_pub1[512], g_key2[512], g_pub2[512], g_key3[512], g_pub3[512];
static struct fm_client *g_ctl;       /* control API client ("ops") */
static struct fm_client *g_ops;       /* shadow reads ("ops2") */

/* ================================================================
 * small helpers
 * ================================================================ */

static const char *jstr(const cJSON *o, const char *path)
{
	const cJSON *v = fm_json_path(o, path);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static char *show(const cJSON *r)
{
	static char buf[1500];
	char *text = r ? cJSON_PrintUnformatted(r) : NULL;
	snprintf(buf, sizeof(buf), "%.1400s", text ? text : "(no response)");
	free(text);
	return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	FM_ASSERT_FATAL(f != NULL, "cannot write %s: %s", path, strerror(errno));
	fwrite(data, 1, len, f);
	fclose(f);
}

static char *read_text(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if(!f) return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	if(buf && fread(buf, 1, (size_t)n, f) != (size_t)n){
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* ================================================================
 * agent processes
 * ================================================================ */

struct dev {
	char id[64];
	char dir[512];
	char state[600];
	char slots[600];
	char config_path[600];
	char log_path[600];
	char app_config[600];
	pid_t pid;
};

/* Create the device's dirs and agent config; extra = more YAML lines. */
static void dev_init(struct dev *d, const char *id, const char *extra)
{
	char yaml[4096], path[700];

	memset(d, 0, sizeof(*d));
	snprintf(d->id, sizeof(d->id), "%s", id);
	snprintf(d->dir, sizeof(d->dir), "%s/%s", g_root, id);
	snprintf(d->state, sizeof(d->state), "%s/state", d->dir);
	snprintf(d->slots, sizeof(d->slots), "%s/slots", d->dir);
	snprintf(d->config_path, sizeof(d->config_path), "%s/agent.yaml", d->dir);
	snprintf(d->log_path, sizeof(d->log_path), "%s/agent.log", d->dir);
	snprintf(d->app_config, sizeof(d->app_config), "%s/app-config.json", d->dir);
	mkdir(d->dir, 0755);
	mkdir(d->slots, 0755);
	snprintf(path, sizeof(path), "%s/a", d->slots);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/a/VERSION", d->slots);
	write_file(path, "1.0.0\n", 6);
	snprintf(path, sizeof(path), "%s/current", d->slots);
	symlink("a", path);
	snprintf(yaml, sizeof(yaml),
			"broker:\n  host: 127.0.0.1\n  port: %d\n  reconnect_min_ms: 100\n  reconnect_max_ms: 1000\n"
			"device:\n  id: %s\n  type: sensor-v2\n  hw_revision: r2\n  software_version: 1.0.0\n"
			"state_dir: %s\n"
			"update:\n  slots_dir: %s\n  public_keys: [%s, %s]\n  chunk_bytes: %d\n  persist_every_chunks: 4\n"
			"  read_timeout_ms: 3000\n  health_timeout_ms: 5000\n"
			"config:\n  file: %s\n"
			"telemetry:\n  interval_ms: 500\n"
			"log:\n  level: debug\n"
			"%s",
			g_broker.port, id, d->state, d->slots, g_pub1, g_pub2, g_chunk, d->app_config, extra ? extra : "");
	write_file(d->config_path, yaml, strlen(yaml));
}

/* Every agent started and not yet reaped, so a test that stops early
 * (fatal assertion) leaves no process behind: suite_cleanup kills them. */
static pid_t g_live[64];

static void live_set(pid_t old, pid_t now)
{
	size_t i;

	for(i = 0; i < sizeof(g_live) / sizeof(g_live[0]); i++){
		if(g_live[i] == old){
			g_live[i] = now;
			return;
		}
	}
}

/* FLEETMQ_AGENT_WRAPPER (optional, e.g. "valgrind --error-exitcode=99
 * --leak-check=full") prefixes the agent command: words split on blanks, no
 * quoting, the first looked up in PATH. agent_stop() then also checks the
 * wrapper's exit status. */
static void agent_start(struct dev *d)
{
	const char *wrap = getenv("FLEETMQ_AGENT_WRAPPER");
	char *words = wrap && *wrap ? strdup(wrap) : NULL, *argv[64], *save = NULL, *w;
	int argc = 0;
	pid_t pid;

	for(w = words ? strtok_r(words, " \t\n", &save) : NULL; w && argc < 60; w = strtok_r(NULL, " \t\n", &save)){
		argv[argc++] = w;
	}
	argv[argc++] = (char *)FLEETMQ_AGENT_BIN;
	argv[argc++] = (char *)"--config";
	argv[argc++] = d->config_path;
	argv[argc] = NULL;
	pid = fork();
	FM_ASSERT_FATAL(pid >= 0, "fork: %s", strerror(errno));
	if(pid == 0){
		int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if(fd >= 0){
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	free(words);
	d->pid = pid;
	live_set(0, pid);
}

static void agent_dump_log(const struct dev *d)
{
	char *text = read_text(d->log_path);
	size_t n = text ? strlen(text) : 0;
	const char *p = text && n > 6000 ? text + n - 6000 : text;

	fprintf(stderr, "\n----- %s (last lines) -----\n%s\n-----\n", d->log_path, p ? p : "(none)");
	free(text);
}

/* Stop: SIGTERM (or SIGKILL) and reap. Returns the exit status. */
static int agent_stop_sig(struct dev *d, int sig)
{
	int status = 0, i;

	if(d->pid <= 0) return -1;
	live_set(d->pid, 0);
	kill(d->pid, sig);
	for(i = 0; i < 200; i++){
		if(waitpid(d->pid, &status, WNOHANG) == d->pid){
			d->pid = 0;
			return status;
		}
		fm_sleep_ms(50);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, &status, 0);
	d->pid = 0;
	return status;
}

static void agent_stop(struct dev *d)
{
	int st = agent_stop_sig(d, SIGTERM);
	FM_ASSERT(st == 0, "agent %s exited with status %d", d->id, st);
}

/* ================================================================
 * operator side
 * ================================================================ */

static cJSON *exec_status(const char *job, const char *dev)
{
	return fm_control_commandf(g_ctl, "{\"command\":\"describeJobExecution\",\"jobId\":\"%s\",\"deviceId\":\"%s\"}", job, dev);
}

/* Poll until the execution has `status` (and step, if given). Returns the
 * last describeJobExecution response (caller frees). */
static cJSON *wait_exec(const char *job, const char *dev, const char *status, const char *step, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	cJSON *r = NULL;

	for(;;){
		cJSON_Delete(r);
		r = exec_status(job, dev);
		if(r && !strcmp(jstr(r, "data.execution.status"), status)
				&& (!step || !strcmp(jstr(r, "data.execution.step"), step))) return r;
		if(r && strcmp(status, "IN_PROGRESS") && strcmp(jstr(r, "data.execution.status"), "IN_PROGRESS")
				&& strcmp(jstr(r, "data.execution.status"), "QUEUED") && strcmp(jstr(r, "data.execution.status"), "PENDING")){
			return r;     /* another final status: no point waiting */
		}
		if(fm_mono_ms() >= deadline) return r;
		fm_sleep_ms(100);
	}
}

static void create_job(const char *id, const char *type, const char *doc, const char *dev)
{
	cJSON *r = fm_control_commandf(g_ctl, "{\"command\":\"createJob\",\"jobId\":\"%s\",\"type\":\"%s\",\"document\":%s,"
			"\"targets\":{\"devices\":[\"%s\"]}}", id, type, doc, dev);
	FM_ASSERT(r && !cJSON_GetObjectItemCaseSensitive(r, "error") && cJSON_IsTrue(fm_json_path(r, "data.created")),
			"createJob %s failed: %s", id, show(r));
	cJSON_Delete(r);
}

/* Expect the job to end in `status`; on mismatch dump the agent log. */
static cJSON *expect_exec(struct dev *d, const char *job, const char *status, int timeout_ms)
{
	cJSON *r = wait_exec(job, d->id, status, NULL, timeout_ms);
	bool ok = r && !strcmp(jstr(r, "data.execution.status"), status);

	FM_ASSERT(ok, "job %s on %s: expected %s, got %s", job, d->id, status, show(r));
	if(!ok) agent_dump_log(d);
	return r;
}

/* The device's shadow state_json (caller frees) or NULL. */
static char *shadow_state(const char *dev)
{
	static int n;
	char token[32];
	Fleetmq__V1__ShadowDocument *doc;
	char *text;
	char filter[200];
	const char *filters[2] = { filter, NULL };

	snprintf(filter, sizeof(filter), "fleet/%s/shadow/get/accepted", dev);
	fm_client_subscribe(g_ops, filter, 1, 0, FM_TIMEOUT_MS);
	snprintf(token, sizeof(token), "e2e-%d", ++n);
	doc = fm_shadow_get(g_ops, dev, token, FM_TIMEOUT_MS);
	(void)filters;
	if(!doc) return NULL;
	text = strdup(doc->state_json);
	fleetmq__v1__shadow_document__free_unpacked(doc, NULL);
	return text;
}

/* Poll the shadow until reported.<path> is a string equal to want (or, for
 * want == NULL, present). Returns true when seen. */
static bool wait_reported_str(const char *dev, const char *path, const char *want, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	char full[200], buf[256];

	snprintf(full, sizeof(full), "reported.%s", path);
	for(;;){
		char *s = shadow_state(dev);
		bool ok = s && fm_json_has(s, full) && (!want || !strcmp(fm_json_string(s, full, buf, sizeof(buf)), want));
		if(!ok && fm_mono_ms() >= deadline) fprintf(stderr, "\n  shadow of %s: %s\n", dev, s ? s : "(none)");
		free(s);
		if(ok) return true;
		if(fm_mono_ms() >= deadline) return false;
		fm_sleep_ms(100);
	}
}

static bool wait_reported_num(const char *dev, const char *path, double want, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	char full[200];

	snprintf(full, sizeof(full), "reported.%s", path);
	for(;;){
		char *s = shadow_state(dev);
		bool ok = s && fm_json_number(s, full, -12345) == want;
		if(!ok && fm_mono_ms() >= deadline) fprintf(stderr, "\n  shadow of %s: %s\n", dev, s ? s : "(none)");
		free(s);
		if(ok) return true;
		if(fm_mono_ms() >= deadline) return false;
		fm_sleep_ms(100);
	}
}

static bool wait_reported_bool(const char *dev, const char *path, bool want, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	char full[200];

	snprintf(full, sizeof(full), "reported.%s", path);
	for(;;){
		char *s = shadow_state(dev);
		cJSON *root = fm_json_parse(s);
		const cJSON *v = fm_json_path(root, full);
		bool ok = v && cJSON_IsBool(v) && cJSON_IsTrue(v) == want;
		if(!ok && fm_mono_ms() >= deadline) fprintf(stderr, "\n  shadow of %s: %s\n", dev, s ? s : "(none)");
		cJSON_Delete(root);
		free(s);
		if(ok) return true;
		if(fm_mono_ms() >= deadline) return false;
		fm_sleep_ms(100);
	}
}

/* ================================================================
 * artifacts
 * ================================================================ */

static uint8_t *make_payload(size_t len, unsigned seed)
{
	uint8_t *p = malloc(len);
	size_t i;

	for(i = 0; i < len; i++) p[i] = (uint8_t)((i * 131u + seed * 7u) ^ (i >> 9));
	return p;
}

/* Store an artifact (payload + signed metadata) in the broker's artifact
 * dir and return the update job document (caller frees). */
static char *publish_artifact(const char *name, const char *version, const uint8_t *payload, size_t len,
		const char *types, const char *key, bool allow_downgrade)
{
	char path[700], hex[65], err[512];
	cJSON *meta = cJSON_CreateObject();
	char *text;

	fleetmq_sha256_hex(payload, len, hex);
	cJSON_AddStringToObject(meta, "name", name);
	cJSON_AddStringToObject(meta, "version", version);
	cJSON_AddItemToObject(meta, "deviceTypes", cJSON_Parse(types));
	cJSON_AddItemToObject(meta, "hwRevisions", cJSON_Parse("[]"));
	cJSON_AddNumberToObject(meta, "size", (double)len);
	cJSON_AddStringToObject(meta, "sha256", hex);
	cJSON_AddBoolToObject(meta, "critical", false);
	cJSON_AddBoolToObject(meta, "allowDowngrade", allow_downgrade);
	FM_ASSERT(fleetmq_artifact_sign(meta, key, err, sizeof(err)) == FLEETMQ_SIG_OK, "sign: %s", err);
	snprintf(path, sizeof(path), "%s/%s", g_artifacts, name);
	write_file(path, payload, len);
	text = cJSON_Print(meta);
	snprintf(path, sizeof(path), "%s/%s.json", g_artifacts, name);
	write_file(path, text, strlen(text));
	free(text);
	cJSON_AddStringToObject(meta, "artifact", name);
	text = cJSON_PrintUnformatted(meta);
	cJSON_Delete(meta);
	return text;
}

static void slot_state(const struct dev *d, char *slot, size_t slot_size, char *version, size_t vsize)
{
	char path[700], target[32];
	ssize_t n;
	char *v;

	snprintf(path, sizeof(path), "%s/current", d->slots);
	n = readlink(path, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	snprintf(slot, slot_size, "%s", target);
	snprintf(path, sizeof(path), "%s/current/VERSION", d->slots);
	v = read_text(path);
	if(v && strchr(v, '\n')) *strchr(v, '\n') = '\0';
	snprintf(version, vsize, "%s", v ? v : "");
	free(v);
}

static void assert_slot(const struct dev *d, const char *slot, const char *version)
{
	char s[32], v[64];

	slot_state(d, s, sizeof(s), v, sizeof(v));
	FM_ASSERT(!strcmp(s, slot) && !strcmp(v, version), "%s: current -> %s (version %s), expected %s (%s)",
			d->id, s, v, slot, version);
}

/* ================================================================
 * tests
 * ================================================================ */

static void test_agent_config_job_applies_and_reports(void)
{
	struct dev d;
	cJSON *r, *cfg;
	char *text;

	dev_init(&d, "agent-cfg", NULL);
	agent_start(&d);
	FM_ASSERT(wait_reported_str(d.id, "software.firmware", "1.0.0", 15000), "agent did not report its software");
	create_job("cfg-1", "config", "{\"set\":{\"rate\":5,\"mode\":\"eco\"},\"unset\":[\"old\"]}", d.id);
	r = expect_exec(&d, "cfg-1", "SUCCEEDED", JOB_TIMEOUT_MS);
	cJSON_Delete(r);
	text = read_text(d.app_config);
	cfg = fm_json_parse(text);
	FM_ASSERT(cfg && fm_json_number(text, "rate", 0) == 5, "config file: %s", text ? text : "(missing)");
	cJSON_Delete(cfg);
	free(text);
	FM_ASSERT(wait_reported_num(d.id, "config.rate", 5, 10000), "reported.config.rate is not 5");
	FM_ASSERT(wait_reported_str(d.id, "config.mode", "eco", 1000), "reported.config.mode is not eco");

	/* desired state: config and update policy through the shadow */
	{
		struct fm_update_result res = { 0 };
		int rc = fm_shadow_update(g_ops, d.id, "ops2-desired", 0, NULL,
				"{\"config\":{\"rate\":7},\"update_policy\":\"critical-only\"}", &res, FM_TIMEOUT_MS);
		FM_ASSERT(rc == 1, "desired update refused (%d)", rc);
		fm_update_result_clear(&res);
	}
	FM_ASSERT(wait_reported_num(d.id, "config.rate", 7, 10000), "desired config.rate 7 not reported");
	FM_ASSERT(wait_reported_str(d.id, "update_policy", "critical-only", 10000), "desired update_policy not reported");
	text = read_text(d.app_config);
	FM_ASSERT(text && fm_json_number(text, "rate", 0) == 7 && fm_json_has(text, "mode"), "config file: %s", text ? text : "");
	free(text);
	agent_stop(&d);
}

static void test_agent_feature_job_applies_and_reports(void)
{
	struct dev d;
	cJSON *r;
	char path[700], *text;

	dev_init(&d, "agent-feat", NULL);
	agent_start(&d);
	create_job("feat-1", "feature", "{\"disable\":[\"beta-ui\"],\"enable\":[\"metrics\"]}", d.id);
	r = expect_exec(&d, "feat-1", "SUCCEEDED", JOB_TIMEOUT_MS);
	cJSON_Delete(r);
	FM_ASSERT(wait_reported_bool(d.id, "features.beta-ui", false, 10000), "reported.features.beta-ui is not false");
	FM_ASSERT(wait_reported_bool(d.id, "features.metrics", true, 1000), "reported.features.metrics is not true");
	snprintf(path, sizeof(path), "%s/features.json", d.state);
	text = read_text(path);
	{
		cJSON *f = fm_json_parse(text);
		FM_ASSERT(cJSON_IsFalse(fm_json_path(f, "beta-ui")) && cJSON_IsTrue(fm_json_path(f, "metrics")),
				"features file: %s", text ? text : "(missing)");
		cJSON_Delete(f);
	}
	free(text);
	/* a bad document is rejected */
	create_job("feat-2", "feature", "{\"disable\":[\"x\"],\"enable\":[\"x\"]}", d.id);
	r = expect_exec(&d, "feat-2", "REJECTED", JOB_TIMEOUT_MS);
	cJSON_Delete(r);
	agent_stop(&d);
}

static void test_agent_update_ab_succeeds(void)
{
	struct dev d;
	uint8_t *payload = make_payload(50000, 1);
	char *doc = publish_artifact("fw-ok-1.1.0.bin", "1.1.0", payload, 50000, "[\"sensor-v2\"]", g_key1, false);
	char path[700], *text;
	cJSON *r;

	dev_init(&d, "agent-upd", NULL);
	agent_start(&d);
	create_job("upd-ok", "update", doc, d.id);
	r = expect_exec(&d, "upd-ok", "SUCCEEDED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.version"), "1.1.0"), "details: %s", show(r));
	cJSON_Delete(r);
	assert_slot(&d, "b", "1.1.0");
	snprintf(path, sizeof(path), "%s/b/fw-ok-1.1.0.bin", d.slots);
	text = read_text(path);
	FM_ASSERT(text && memcmp(text, payload, 50000) == 0, "installed payload differs");
	free(text);
	snprintf(path, sizeof(path), "%s/committed", d.slots);
	text = read_text(path);
	FM_ASSERT(text && !strcmp(text, "b"), "committed slot: %s", text ? text : "(none)");
	free(text);
	FM_ASSERT(wait_reported_str(d.id, "software.firmware", "1.1.0", 10000), "new version not reported");
	snprintf(path, sizeof(path), "%s/update-state.json", d.state);
	FM_ASSERT(access(path, F_OK) != 0, "update state left behind");
	agent_stop(&d);
	free(payload);
	free(doc);
}

static void test_agent_update_rejections_leave_device_unchanged(void)
{
	struct dev d;
	uint8_t *payload = make_payload(8000, 2), *evil;
	char *doc_tamper, *doc_sig, *doc_type, *doc_down, path[700];
	cJSON *r;

	/* tampered: the store's payload is replaced after signing */
	doc_tamper = publish_artifact("fw-tamper.bin", "1.2.0", payload, 8000, "[\"sensor-v2\"]", g_key1, false);
	evil = make_payload(8000, 3);
	snprintf(path, sizeof(path), "%s/fw-tamper.bin", g_artifacts);
	write_file(path, evil, 8000);
	/* signed with a key the device does not trust */
	doc_sig = publish_artifact("fw-badsig.bin", "1.2.0", payload, 8000, "[\"sensor-v2\"]", g_key3, false);
	doc_type = publish_artifact("fw-camera.bin", "1.2.0", payload, 8000, "[\"camera-v1\"]", g_key1, false);
	doc_down = publish_artifact("fw-old.bin", "0.9.0", payload, 8000, "[\"sensor-v2\"]", g_key2, false);

	dev_init(&d, "agent-rej", NULL);
	agent_start(&d);
	create_job("rej-tamper", "update", doc_tamper, d.id);
	create_job("rej-sig", "update", doc_sig, d.id);
	create_job("rej-type", "update", doc_type, d.id);
	create_job("rej-down", "update", doc_down, d.id);
	r = expect_exec(&d, "rej-tamper", "REJECTED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "verify"), "tamper: %s", show(r));
	cJSON_Delete(r);
	r = expect_exec(&d, "rej-sig", "REJECTED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "signature"), "sig: %s", show(r));
	cJSON_Delete(r);
	r = expect_exec(&d, "rej-type", "REJECTED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "incompatible"), "type: %s", show(r));
	cJSON_Delete(r);
	r = expect_exec(&d, "rej-down", "REJECTED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "downgrade"), "downgrade: %s", show(r));
	cJSON_Delete(r);
	assert_slot(&d, "a", "1.0.0");
	snprintf(path, sizeof(path), "%s/b/fw-tamper.bin", d.slots);
	FM_ASSERT(access(path, F_OK) != 0, "tampered payload was installed");
	FM_ASSERT(wait_reported_str(d.id, "software.firmware", "1.0.0", 5000), "version changed");
	agent_stop(&d);
	free(payload);
	free(evil);
	free(doc_tamper);
	free(doc_sig);
	free(doc_type);
	free(doc_down);
}

static void test_agent_update_failed_health_check_rolls_back(void)
{
	struct dev d;
	uint8_t *payload = make_payload(6000, 4);
	char *doc = publish_artifact("fw-sick.bin", "1.3.0", payload, 6000, "[\"sensor-v2\"]", g_key2, false);
	char extra[600];
	cJSON *r;

	/* healthy only if the running slot is still the old one */
	snprintf(extra, sizeof(extra), "update.health_check: \"grep -q 1.0.0 %s/agent-sick/slots/current/VERSION\"\n", g_root);
	dev_init(&d, "agent-sick", extra);
	agent_start(&d);
	create_job("upd-sick", "update", doc, d.id);
	r = expect_exec(&d, "upd-sick", "FAILED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "health-check"), "details: %s", show(r));
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.rolledBack"), "true"), "details: %s", show(r));
	cJSON_Delete(r);
	assert_slot(&d, "a", "1.0.0");
	agent_stop(&d);
	free(payload);
	free(doc);
}

/* Offsets the device asks for, seen by an operator subscribed to its
 * artifact requests. */
static uint64_t next_get_offset(struct fm_client *c, const char *dev, int timeout_ms, bool *got)
{
	char filter[200];
	struct fm_msg *m;
	uint64_t off = 0;

	snprintf(filter, sizeof(filter), "fleet/%s/artifacts/+/get", dev);
	m = fm_client_wait_message(c, filter, timeout_ms);
	*got = m != NULL;
	if(m){
		Fleetmq__V1__ArtifactGetRequest *req = fleetmq__v1__artifact_get_request__unpack(NULL, m->payloadlen, m->payload);
		if(req){
			off = req->offset;
			fleetmq__v1__artifact_get_request__free_unpacked(req, NULL);
		}
		fm_msg_free(m);
	}
	return off;
}

static void test_agent_update_kill9_during_download_resumes(void)
{
	struct dev d;
	size_t len = 2u << 20;          /* 2 MiB in 16 KiB chunks: a few seconds */
	uint8_t *payload = make_payload(len, 5);
	char *doc = publish_artifact("fw-big.bin", "2.0.0", payload, len, "[\"sensor-v2\"]", g_key1, false);
	char path[700], filter[200];
	const char *filters[2] = { filter, NULL };
	struct fm_client *spy;
	uint64_t persisted = 0, first = 0, deadline;
	bool got = false;
	cJSON *r;

	g_chunk = BIG_CHUNK_BYTES;
	dev_init(&d, "agent-kill", NULL);
	g_chunk = CHUNK_BYTES;
	snprintf(filter, sizeof(filter), "fleet/%s/artifacts/+/get", d.id);
	spy = fm_operator_connect(g_broker.port, "ops3", filters);
	FM_ASSERT_FATAL(spy != NULL, "spy cannot connect");
	agent_start(&d);
	create_job("upd-kill", "update", doc, d.id);
	/* wait until some progress was persisted, then kill -9 */
	snprintf(path, sizeof(path), "%s/update-state.json", d.state);
	deadline = fm_mono_ms() + JOB_TIMEOUT_MS;
	while(fm_mono_ms() < deadline){
		char *s = read_text(path);
		persisted = s && strstr(s, "\"download\"") ? (uint64_t)fm_json_number(s, "offset", 0) : 0;
		free(s);
		if(persisted >= 8 * BIG_CHUNK_BYTES) break;
		fm_sleep_ms(20);
	}
	FM_ASSERT_FATAL(persisted >= 8 * BIG_CHUNK_BYTES, "no download progress persisted");
	agent_stop_sig(&d, SIGKILL);
	{
		char *s = read_text(path);
		persisted = s ? (uint64_t)fm_json_number(s, "offset", 0) : 0;
		free(s);
	}
	FM_ASSERT(persisted > 0 && persisted < len, "persisted offset %llu", (unsigned long long)persisted);
	fm_sleep_ms(300);
	fm_client_drain(spy);
	agent_start(&d);
	first = next_get_offset(spy, d.id, 15000, &got);
	FM_ASSERT(got, "no artifact request after the restart");
	FM_ASSERT(first == persisted, "after the restart the download asked for offset %llu, persisted was %llu",
			(unsigned long long)first, (unsigned long long)persisted);
	r = expect_exec(&d, "upd-kill", "SUCCEEDED", 60000);
	cJSON_Delete(r);
	assert_slot(&d, "b", "2.0.0");
	{
		char *text;
		snprintf(path, sizeof(path), "%s/b/fw-big.bin", d.slots);
		text = read_text(path);
		FM_ASSERT(text && memcmp(text, payload, len) == 0, "installed payload differs after the resumed download");
		free(text);
	}
	agent_stop(&d);
	fm_client_destroy(spy);
	free(payload);
	free(doc);
}

/* After a broker restart: the harness clients never reconnect on their own,
 * so the suite's operator clients are connected again. */
static void operators_reconnect(void)
{
	fm_client_destroy(g_ctl);
	fm_client_destroy(g_ops);
	g_ctl = fm_control_connect(g_broker.port, "ops");
	g_ops = fm_operator_connect(g_broker.port, "ops2", NULL);
	FM_ASSERT_FATAL(g_ctl && g_ops, "operators cannot reconnect after the broker restart");
	fm_client_subscribe(g_ops, "fleet/+/shadow/update/+", 1, 0, FM_TIMEOUT_MS);
}

/* Every artifact request queued at the spy: count, lowest and highest offset. */
static size_t drain_get_offsets(struct fm_client *spy, const char *dev, uint64_t *lo, uint64_t *hi)
{
	size_t n = 0;
	bool got = true;

	*lo = UINT64_MAX;
	*hi = 0;
	for(;;){
		uint64_t off = next_get_offset(spy, dev, 0, &got);
		if(!got) break;
		n++;
		if(off < *lo) *lo = off;
		if(off > *hi) *hi = off;
	}
	return n;
}

/* The broker (not the agent) dies with kill -9 in the middle of a download
 * and comes back on the same port and database ~1 s later: the same agent
 * process reconnects, continues the download where it was (never from 0,
 * never below the persisted offset), verifies, installs and commits, and
 * the job (durable in the broker's store) ends SUCCEEDED. */
static void test_update_broker_restart_mid_download_resumes(void)
{
	struct dev d;
	size_t len = 2u << 20;          /* 2 MiB in 16 KiB chunks: a few seconds */
	uint8_t *payload = make_payload(len, 9);
	char *doc = publish_artifact("fw-brk.bin", "2.1.0", payload, len, "[\"sensor-v2\"]", g_key2, false);
	char path[700], state_path[700], filter[200];
	const char *filters[2] = { filter, NULL };
	struct fm_client *spy;
	uint64_t seen = 0, persisted = 0, first = 0, lo, hi, deadline;
	size_t n;
	bool got = false;
	pid_t pid;
	cJSON *r;

	g_chunk = BIG_CHUNK_BYTES;
	dev_init(&d, "agent-brk", NULL);
	g_chunk = CHUNK_BYTES;
	snprintf(filter, sizeof(filter), "fleet/%s/artifacts/+/get", d.id);
	snprintf(state_path, sizeof(state_path), "%s/update-state.json", d.state);
	spy = fm_operator_connect(g_broker.port, "ops3", filters);
	FM_ASSERT_FATAL(spy != NULL, "spy cannot connect");
	agent_start(&d);
	pid = d.pid;
	create_job("upd-brk", "update", doc, d.id);

	/* wait until the agent asks for the 9th chunk: 8 are written, 2 persists done */
	deadline = fm_mono_ms() + JOB_TIMEOUT_MS;
	while(seen < 8 * BIG_CHUNK_BYTES && fm_mono_ms() < deadline){
		uint64_t off = next_get_offset(spy, d.id, 500, &got);
		if(got && off > seen) seen = off;
	}
	if(seen < 8 * BIG_CHUNK_BYTES) agent_dump_log(&d);
	FM_ASSERT_FATAL(seen >= 8 * BIG_CHUNK_BYTES, "the download never got past offset %llu", (unsigned long long)seen);

	FM_ASSERT_FATAL(fm_broker_kill9(&g_broker) >= 0, "broker kill -9 failed");
	fm_sleep_ms(1000);
	/* requests the spy got before the kill; the agent's offset only grows */
	if(drain_get_offsets(spy, d.id, &lo, &hi) && hi > seen) seen = hi;
	fm_client_destroy(spy);
	{
		char *s = read_text(state_path);
		persisted = s && strstr(s, "\"download\"") ? (uint64_t)fm_json_number(s, "offset", 0) : 0;
		free(s);
	}
	FM_ASSERT(persisted > 0 && persisted < len, "persisted offset %llu while the broker is down",
			(unsigned long long)persisted);
	FM_ASSERT(d.pid == pid && kill(d.pid, 0) == 0, "the agent died with the broker");

	FM_ASSERT_FATAL(fm_broker_restart(&g_broker) == 0, "broker restart on port %d failed", g_broker.port);
	spy = fm_operator_connect(g_broker.port, "ops3", filters);
	FM_ASSERT_FATAL(spy != NULL, "spy cannot reconnect");
	operators_reconnect();

	first = next_get_offset(spy, d.id, 15000, &got);
	if(!got) agent_dump_log(&d);
	FM_ASSERT_FATAL(got, "no artifact request after the broker restart");
	FM_ASSERT(first > 0 && first >= persisted && first >= seen && first < len,
			"first request after the restart at offset %llu (persisted %llu, last seen before the kill %llu)",
			(unsigned long long)first, (unsigned long long)persisted, (unsigned long long)seen);

	r = expect_exec(&d, "upd-brk", "SUCCEEDED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.version"), "2.1.0"), "details: %s", show(r));
	cJSON_Delete(r);
	/* nothing after the restart went back below where it was */
	n = drain_get_offsets(spy, d.id, &lo, &hi);
	FM_ASSERT(n == 0 || (lo >= first && hi < len), "requests after the restart: %zu, offsets %llu..%llu, first %llu",
			n, (unsigned long long)lo, (unsigned long long)hi, (unsigned long long)first);
	FM_ASSERT(n + 1 <= (len - first) / BIG_CHUNK_BYTES + 8, "%zu requests after the restart for %llu bytes",
			n + 1, (unsigned long long)(len - first));

	assert_slot(&d, "b", "2.1.0");
	{
		char *text;
		const char *lost;
		snprintf(path, sizeof(path), "%s/b/fw-brk.bin", d.slots);
		text = read_text(path);
		FM_ASSERT(text && memcmp(text, payload, len) == 0, "installed payload differs after the resumed download");
		free(text);
		snprintf(path, sizeof(path), "%s/committed", d.slots);
		text = read_text(path);
		FM_ASSERT(text && !strcmp(text, "b"), "committed slot: %s", text ? text : "(none)");
		free(text);
		/* one process: it lost the connection, then connected again */
		text = read_text(d.log_path);
		lost = text ? strstr(text, "connection: ") : NULL;
		FM_ASSERT(lost && strstr(lost, "connected (shadow version"),
				"the agent log shows no lost and regained connection");
		free(text);
	}
	FM_ASSERT(access(state_path, F_OK) != 0, "update state left behind");
	FM_ASSERT(wait_reported_str(d.id, "software.firmware", "2.1.0", 10000), "new version not reported");
	FM_ASSERT(d.pid == pid, "the agent was restarted");
	agent_stop(&d);
	fm_client_destroy(spy);
	free(payload);
	free(doc);
}

static void test_agent_update_ask_policy_waits_for_approval(void)
{
	struct dev d;
	uint8_t *payload = make_payload(5000, 6);
	char *doc = publish_artifact("fw-ask.bin", "1.4.0", payload, 5000, "[\"sensor-v2\"]", g_key1, false);
	char path[700];
	cJSON *r;

	dev_init(&d, "agent-ask", "update.policy: ask\n");
	agent_start(&d);
	create_job("upd-ask", "update", doc, d.id);
	r = wait_exec("upd-ask", d.id, "IN_PROGRESS", "awaiting-approval", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.step"), "awaiting-approval"), "not held: %s", show(r));
	cJSON_Delete(r);
	fm_sleep_ms(1500);
	r = exec_status("upd-ask", d.id);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.status"), "IN_PROGRESS"), "not held: %s", show(r));
	cJSON_Delete(r);
	assert_slot(&d, "a", "1.0.0");
	/* also held across an agent restart */
	agent_stop(&d);
	agent_start(&d);
	fm_sleep_ms(1000);
	assert_slot(&d, "a", "1.0.0");
	/* the local approval */
	/* the local approval, as the device's application gives it: through the library */
	FM_ASSERT(fleetmq_client_update_decide(d.state, "upd-ask", true) == FLEETMQ_CLIENT_OK, "approval not written");
	snprintf(path, sizeof(path), "%s/update-approval", d.state);
	r = expect_exec(&d, "upd-ask", "SUCCEEDED", JOB_TIMEOUT_MS);
	cJSON_Delete(r);
	assert_slot(&d, "b", "1.4.0");
	agent_stop(&d);
	free(payload);
	free(doc);
}

static void test_agent_update_kill9_before_commit_rolls_back(void)
{
	struct dev d;
	uint8_t *payload = make_payload(6000, 7);
	char *doc = publish_artifact("fw-hang.bin", "1.5.0", payload, 6000, "[\"sensor-v2\"]", g_key1, false);
	char path[700], marker[400], extra[1200];
	uint64_t deadline;
	bool switched = false;
	cJSON *r;

	/* the health check hangs (and leaves a marker) the first time only */
	snprintf(marker, sizeof(marker), "%s/agent-hang/health-ran", g_root);
	snprintf(extra, sizeof(extra), "update.health_check: \"if [ -f %s ]; then exit 0; fi; echo $$ > %s; exec sleep 60\"\n",
			marker, marker);
	dev_init(&d, "agent-hang", extra);
	agent_start(&d);
	create_job("upd-hang", "update", doc, d.id);
	deadline = fm_mono_ms() + JOB_TIMEOUT_MS;
	while(fm_mono_ms() < deadline && !switched){
		char *pid = read_text(marker);
		switched = pid && strchr(pid, '\n');
		free(pid);
		fm_sleep_ms(20);
	}
	FM_ASSERT_FATAL(switched, "the health check never ran");
	assert_slot(&d, "b", "1.5.0");          /* switched on, not committed */
	agent_stop_sig(&d, SIGKILL);
	{
		/* kill -9 leaves the hanging check behind (systemd would kill the cgroup) */
		char *pid = read_text(marker);
		if(pid && atoi(pid) > 1) kill((pid_t)atoi(pid), SIGKILL);
		free(pid);
	}
	/* the restart rolls back: never run uncommitted software after a crash */
	agent_start(&d);
	r = expect_exec(&d, "upd-hang", "FAILED", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.statusDetails.failure_type"), "restart"), "details: %s", show(r));
	cJSON_Delete(r);
	assert_slot(&d, "a", "1.0.0");
	snprintf(path, sizeof(path), "%s/update-state.json", d.state);
	FM_ASSERT(access(path, F_OK) != 0, "update state left behind");
	FM_ASSERT(wait_reported_str(d.id, "software.firmware", "1.0.0", 5000), "version changed");
	agent_stop(&d);
	free(payload);
	free(doc);
}

static void test_agent_update_deferred_until_policy_changes(void)
{
	struct dev d;
	uint8_t *payload = make_payload(7000, 8);
	char *doc = publish_artifact("fw-minor.bin", "1.6.0", payload, 7000, "[\"sensor-v2\"]", g_key2, false);
	struct fm_update_result res = { 0 };
	cJSON *r;

	dev_init(&d, "agent-defer", "update.policy: critical-only\n");
	agent_start(&d);
	create_job("upd-defer", "update", doc, d.id);
	r = wait_exec("upd-defer", d.id, "IN_PROGRESS", "deferred", JOB_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.execution.step"), "deferred"), "not deferred: %s", show(r));
	cJSON_Delete(r);
	fm_sleep_ms(1000);
	assert_slot(&d, "a", "1.0.0");
	/* the operator changes the policy through the shadow; desired features too */
	FM_ASSERT(fm_shadow_update(g_ops, d.id, "ops2-policy", 0, NULL,
			"{\"update_policy\":\"auto\",\"features\":{\"night-mode\":false}}", &res, FM_TIMEOUT_MS) == 1,
			"desired update refused");
	fm_update_result_clear(&res);
	r = expect_exec(&d, "upd-defer", "SUCCEEDED", JOB_TIMEOUT_MS);
	cJSON_Delete(r);
	assert_slot(&d, "b", "1.6.0");
	FM_ASSERT(wait_reported_str(d.id, "update_policy", "auto", 5000), "policy not reported");
	FM_ASSERT(wait_reported_bool(d.id, "features.night-mode", false, 5000), "desired feature not reported");
	/* the runtime policy survives a restart */
	agent_stop(&d);
	{
		char path[700], *text;
		snprintf(path, sizeof(path), "%s/policy.json", d.state);
		text = read_text(path);
		FM_ASSERT(text && strstr(text, "\"auto\""), "policy.json: %s", text ? text : "(missing)");
		free(text);
	}
	free(payload);
	free(doc);
}

static void test_agent_telemetry_published(void)
{
	struct dev d;
	char filter[200];
	const char *filters[2] = { filter, NULL };
	struct fm_client *spy;
	struct fm_msg *m;
	bool cpu = false, mem = false, disk = false, net = false;
	int i;

	dev_init(&d, "agent-tel", NULL);
	snprintf(filter, sizeof(filter), "fleet/%s/telemetry", d.id);
	spy = fm_operator_connect(g_broker.port, "ops4", filters);
	FM_ASSERT_FATAL(spy != NULL, "spy cannot connect");
	agent_start(&d);
	for(i = 0; i < 6 && !(cpu && mem && disk && net); i++){
		Fleetmq__V1__TelemetryBatch *b;
		size_t k;
		m = fm_client_wait_message(spy, filter, 5000);
		if(!m) break;
		b = fleetmq__v1__telemetry_batch__unpack(NULL, m->payloadlen, m->payload);
		for(k = 0; b && k < b->n_metrics; k++){
			if(!strcmp(b->metrics[k]->name, "sys.cpu.percent")) cpu = true;
			if(!strcmp(b->metrics[k]->name, "sys.mem.used_percent")) mem = true;
			if(!strcmp(b->metrics[k]->name, "sys.disk.free_bytes")) disk = true;
			if(!strcmp(b->metrics[k]->name, "sys.net.rx_bytes")) net = true;
		}
		if(b) fleetmq__v1__telemetry_batch__free_unpacked(b, NULL);
		fm_msg_free(m);
	}
	FM_ASSERT(cpu && mem && disk && net, "telemetry metrics seen: cpu %d mem %d disk %d net %d", cpu, mem, disk, net);
	agent_stop(&d);
	fm_client_destroy(spy);
}

/* ================================================================
 * suite
 * ================================================================ */

static int suite_init(void)
{
	struct fm_broker_opts opts = FM_BROKER_OPTS_INITIALIZER;
	char err[512];

	snprintf(g_root, sizeof(g_root), "/tmp/fleetmq-agent-e2e-XXXXXX");
	if(!mkdtemp(g_root)) return 1;
	/* the broker drops privileges (user mosquitto) and reads the artifacts */
	chmod(g_root, 0755);
	snprintf(g_artifacts, sizeof(g_artifacts), "%s/artifacts", g_root);
	mkdir(g_artifacts, 0755);
	snprintf(g_key1, sizeof(g_key1), "%s/k1.pem", g_root);
	snprintf(g_pub1, sizeof(g_pub1), "%s/k1.pub", g_root);
	snprintf(g_key2, sizeof(g_key2), "%s/k2.pem", g_root);
	snprintf(g_pub2, sizeof(g_pub2), "%s/k2.pub", g_root);
	snprintf(g_key3, sizeof(g_key3), "%s/k3.pem", g_root);
	snprintf(g_pub3, sizeof(g_pub3), "%s/k3.pub", g_root);
	if(fleetmq_sig_keygen(g_key1, g_pub1, err, sizeof(err)) || fleetmq_sig_keygen(g_key2, g_pub2, err, sizeof(err))
			|| fleetmq_sig_keygen(g_key3, g_pub3, err, sizeof(err))){
		fprintf(stderr, "keygen: %s\n", err);
		return 1;
	}
	{
		static char yaml[2048];
		snprintf(yaml, sizeof(yaml), FM_YAML_STORE
				"security:\n  operator_usernames: [ops, ops2, ops3, ops4]\n  other_topics: allow\n"
				FM_YAML_PRESENCE
				"jobs:\n  check_interval_ms: 50\n"
				"artifacts:\n  dir: %s\n  max_chunk_bytes: 16384\n", g_artifacts);
		opts.yaml = yaml;
	}
	if(fm_broker_start(&g_broker, &opts) != 0) return 1;
	g_ctl = fm_control_connect(g_broker.port, "ops");
	g_ops = fm_operator_connect(g_broker.port, "ops2", NULL);
	if(!g_ctl || !g_ops) return 1;
	{
		char f[64];
		snprintf(f, sizeof(f), "fleet/+/shadow/update/+");
		fm_client_subscribe(g_ops, f, 1, 0, FM_TIMEOUT_MS);
	}
	return 0;
}

static int suite_cleanup(void)
{
	size_t i;

	for(i = 0; i < sizeof(g_live) / sizeof(g_live[0]); i++){
		if(g_live[i] > 0){
			kill(g_live[i], SIGKILL);
			waitpid(g_live[i], NULL, 0);
		}
	}
	fm_client_destroy(g_ctl);
	fm_client_destroy(g_ops);
	if(getenv("FLEETMQ_KEEP_TMP")){
		fm_broker_stop(&g_broker);
		fprintf(stderr, "kept %s and %s\n", g_root, g_broker.dir);
	}else{
		fm_broker_cleanup(&g_broker);
	}
	if(!getenv("FLEETMQ_KEEP_TMP")){
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_root);
		if(system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_root);
	}
	return 0;
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_agent_config_job_applies_and_reports", test_agent_config_job_applies_and_reports },
		{ "test_agent_feature_job_applies_and_reports", test_agent_feature_job_applies_and_reports },
		{ "test_agent_update_ab_succeeds", test_agent_update_ab_succeeds },
		{ "test_agent_update_rejections_leave_device_unchanged", test_agent_update_rejections_leave_device_unchanged },
		{ "test_agent_update_failed_health_check_rolls_back", test_agent_update_failed_health_check_rolls_back },
		{ "test_agent_update_kill9_during_download_resumes", test_agent_update_kill9_during_download_resumes },
		{ "test_agent_update_kill9_before_commit_rolls_back", test_agent_update_kill9_before_commit_rolls_back },
		{ "test_agent_update_ask_policy_waits_for_approval", test_agent_update_ask_policy_waits_for_approval },
		{ "test_agent_update_deferred_until_policy_changes", test_agent_update_deferred_until_policy_changes },
		{ "test_agent_telemetry_published", test_agent_telemetry_published },
		{ "test_update_broker_restart_mid_download_resumes", test_update_broker_restart_mid_download_resumes },
		{ NULL, NULL },
	};

	return fm_cunit_main("agent_e2e", suite_init, suite_cleanup, tests);
}
