/*
 * test_e2e_jobs.c - durable per-device job queues end to end: a real
 * mosquitto with the fleetmq plugin, real MQTT v5 devices, and an operator
 * ("ops") driving the JSON API on $CONTROL/fleetmq/v1.
 *
 * One broker for the suite, with jobs.check_interval_ms at 50 ms so
 * releases, timeouts and retries happen quickly. Every test uses its own
 * device and job ids, so tests do not see each other's queues. The kill -9
 * test restarts the broker on the same database and port; clients are
 * created per test, so later tests just connect again.
 */
#include "harness.h"

#include <CUnit/Basic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define JOBS_CHECK_INTERVAL_MS 50
#define JOBS_YAML FM_DEFAULT_YAML "jobs:\n  check_interval_ms: 50\n"

/* How long a released job may take to reach a connected device. */
#define PROMPT_MS 1500

#define ST_QUEUED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_QUEUED
#define ST_IN_PROGRESS FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS
#define ST_SUCCEEDED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED
#define ST_FAILED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED
#define ST_CANCELED FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_CANCELED

static struct fm_broker g_broker;

static int suite_init(void)
{
	struct fm_broker_opts o = FM_BROKER_OPTS_INITIALIZER;
	o.yaml = JOBS_YAML;
	if(fm_broker_start(&g_broker, &o) != 0){
		fm_broker_cleanup(&g_broker);
		return -1;
	}
	return 0;
}

static int suite_cleanup(void)
{
	if(CU_get_number_of_failures() > 0) fm_broker_dump_log(&g_broker, 80);
	fm_broker_cleanup(&g_broker);
	return 0;
}

/* ---- JSON response helpers ---------------------------------------------- */

/* String at a dotted path of root, "" if absent (never NULL). */
static const char *jstr(const cJSON *root, const char *path)
{
	const cJSON *it = root ? fm_json_path(root, path) : NULL;
	return cJSON_IsString(it) ? it->valuestring : "";
}

/* Number at a dotted path, dflt if absent. */
static double jnum(const cJSON *root, const char *path, double dflt)
{
	const cJSON *it = root ? fm_json_path(root, path) : NULL;
	return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

static bool jtrue(const cJSON *root, const char *path)
{
	return root && cJSON_IsTrue(fm_json_path(root, path));
}

static bool starts_with(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Print a response for failure messages (static buffer). */
static const char *show(const cJSON *r)
{
	static char buf[1200];
	char *text = r ? cJSON_PrintUnformatted(r) : NULL;
	snprintf(buf, sizeof(buf), "%.1100s", text ? text : "(no response)");
	free(text);
	return buf;
}

/* Send one command (printf-style JSON object); returns responses[0] or NULL. */
static cJSON *cmdv(struct fm_client *ops, const char *fmt, va_list ap)
{
	char *text = NULL;
	cJSON *r;
	if(vasprintf(&text, fmt, ap) < 0) return NULL;
	r = fm_control_command(ops, text, FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no response to %.300s", text);
	free(text);
	return r;
}

/* A command that must succeed (no "error"); returns the response or NULL. */
static cJSON *cmd_ok(struct fm_client *ops, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static cJSON *cmd_ok(struct fm_client *ops, const char *fmt, ...)
{
	va_list ap;
	cJSON *r;
	va_start(ap, fmt);
	r = cmdv(ops, fmt, ap);
	va_end(ap);
	if(!r) return NULL;
	FM_ASSERT(!cJSON_GetObjectItemCaseSensitive(r, "error") && cJSON_IsObject(fm_json_path(r, "data")),
			"command failed: %s", show(r));
	return r;
}

/* A command that must fail with `code`; the error text must contain
 * `needle` (NULL = any). */
static void expect_error(struct fm_client *ops, const char *code, const char *needle, const char *fmt, ...)
		__attribute__((format(printf, 4, 5)));
static void expect_error(struct fm_client *ops, const char *code, const char *needle, const char *fmt, ...)
{
	va_list ap;
	cJSON *r;
	va_start(ap, fmt);
	r = cmdv(ops, fmt, ap);
	va_end(ap);
	if(!r) return;
	FM_ASSERT(strcmp(jstr(r, "code"), code) == 0, "expected code %s, got %s", code, show(r));
	FM_ASSERT(jstr(r, "error")[0] != '\0', "error without a reason: %s", show(r));
	if(needle) FM_ASSERT(strstr(jstr(r, "error"), needle) != NULL, "error does not mention '%s': %s", needle, show(r));
	FM_ASSERT(!fm_json_path(r, "data.created"), "failed command reports data.created: %s", show(r));
	cJSON_Delete(r);
}

static struct fm_client *ops_connect(void)
{
	struct fm_client *ops = fm_control_connect(g_broker.port, "ops");
	FM_ASSERT(ops != NULL, "operator cannot connect");
	return ops;
}

/* createJob with jobId = id and the remaining members `body`; must create. */
static void create_job(struct fm_client *ops, const char *id, const char *body)
{
	cJSON *r = cmd_ok(ops, "{\"command\":\"createJob\",\"jobId\":\"%s\",%s}", id, body);
	if(!r) return;
	FM_ASSERT(jtrue(r, "data.created"), "job %s not created: %s", id, show(r));
	FM_ASSERT_STR_EQ(jstr(r, "data.jobId"), id);
	cJSON_Delete(r);
}

/* describeJob: the response (caller frees) or NULL. */
static cJSON *describe_job(struct fm_client *ops, const char *id)
{
	return cmd_ok(ops, "{\"command\":\"describeJob\",\"jobId\":\"%s\"}", id);
}

/* describeJobExecution: the response (caller frees) or NULL. */
static cJSON *describe_exec(struct fm_client *ops, const char *job, const char *dev)
{
	return cmd_ok(ops, "{\"command\":\"describeJobExecution\",\"jobId\":\"%s\",\"deviceId\":\"%s\"}", job, dev);
}

/* Poll describeJobExecution until its status is `status` (and attempt >=
 * min_attempt). Returns the last response (caller frees) whatever happened;
 * the caller asserts on it. */
static cJSON *wait_exec(struct fm_client *ops, const char *job, const char *dev, const char *status,
		int min_attempt, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	cJSON *r = NULL;
	for(;;){
		cJSON_Delete(r);
		r = fm_control_commandf(ops, "{\"command\":\"describeJobExecution\",\"jobId\":\"%s\",\"deviceId\":\"%s\"}",
				job, dev);
		if(r && !strcmp(jstr(r, "data.execution.status"), status)
				&& jnum(r, "data.execution.attempt", 0) >= min_attempt) return r;
		if(fm_mono_ms() >= deadline) return r;
		fm_sleep_ms(JOBS_CHECK_INTERVAL_MS);
	}
}

/* Poll describeJob until its status is `status`; returns the last response. */
static cJSON *wait_job(struct fm_client *ops, const char *job, const char *status, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	cJSON *r = NULL;
	for(;;){
		cJSON_Delete(r);
		r = fm_control_commandf(ops, "{\"command\":\"describeJob\",\"jobId\":\"%s\"}", job);
		if(r && !strcmp(jstr(r, "data.job.status"), status)) return r;
		if(fm_mono_ms() >= deadline) return r;
		fm_sleep_ms(JOBS_CHECK_INTERVAL_MS);
	}
}

/* Number of executions of job in `status` (listJobExecutions), -1 on error. */
static int count_execs(struct fm_client *ops, const char *job, const char *status)
{
	cJSON *r = fm_control_commandf(ops, "{\"command\":\"listJobExecutions\",\"jobId\":\"%s\",\"status\":\"%s\"}",
			job, status);
	int n = r && !cJSON_GetObjectItemCaseSensitive(r, "error") ? (int)jnum(r, "data.count", -1) : -1;
	cJSON_Delete(r);
	return n;
}

/* Poll until count_execs(job, status) == want; returns the last count. */
static int wait_count(struct fm_client *ops, const char *job, const char *status, int want, int timeout_ms)
{
	uint64_t deadline = fm_mono_ms() + (uint64_t)timeout_ms;
	for(;;){
		int n = count_execs(ops, job, status);
		if(n == want || fm_mono_ms() >= deadline) return n;
		fm_sleep_ms(JOBS_CHECK_INTERVAL_MS);
	}
}

/* ---- device helpers ----------------------------------------------------- */

/* Connect + subscribe + hello. *pending (may be NULL) receives
 * HelloAccepted.pending_jobs. The JobNotify that follows the hello stays
 * queued for the caller. */
static struct fm_client *device_online(const char *id, uint32_t *pending)
{
	struct fm_client *c = fm_device_connect(g_broker.port, id);
	Fleetmq__V1__HelloAccepted *ha;
	if(!c) return NULL;
	ha = fm_device_hello(c, id, 0, FM_TIMEOUT_MS);
	if(!ha){
		fm_client_destroy(c);
		return NULL;
	}
	if(pending) *pending = ha->pending_jobs;
	fleetmq__v1__hello_accepted__free_unpacked(ha, NULL);
	return c;
}

/* Connect, hello, and consume the JobNotify that follows the hello. */
static struct fm_client *device_ready(const char *id)
{
	struct fm_client *c = device_online(id, NULL);
	Fleetmq__V1__JobNotify *n;
	FM_ASSERT(c != NULL, "device %s cannot come online", id);
	if(!c) return NULL;
	n = fm_wait_job_notify(c, id, NULL, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "%s: no JobNotify after hello", id);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	return c;
}

static bool notify_queued_has(const Fleetmq__V1__JobNotify *n, void *job)
{
	return fm_job_summary_index(n->queued, n->n_queued, job) >= 0;
}

/* The job is neither queued nor in progress in n. */
static bool notify_lacks(const Fleetmq__V1__JobNotify *n, void *job)
{
	return fm_job_summary_index(n->queued, n->n_queued, job) < 0
			&& fm_job_summary_index(n->in_progress, n->n_in_progress, job) < 0;
}

static bool notify_canceled_has(const Fleetmq__V1__JobNotify *n, void *job)
{
	return fm_job_summary_index(n->canceled, n->n_canceled, job) >= 0;
}

struct attempt_ctx {
	const char *job;
	uint32_t attempt;
};

static bool notify_queued_attempt(const Fleetmq__V1__JobNotify *n, void *ctx)
{
	const struct attempt_ctx *x = ctx;
	int i = fm_job_summary_index(n->queued, n->n_queued, x->job);
	return i >= 0 && n->queued[i]->attempt == x->attempt;
}

/* Wait for a notify listing job as queued; assert; return it (caller frees). */
static Fleetmq__V1__JobNotify *expect_queued_notify(struct fm_client *c, const char *dev, const char *job, int timeout_ms)
{
	Fleetmq__V1__JobNotify *n = fm_wait_job_notify(c, dev, notify_queued_has, (void *)job, timeout_ms);
	FM_ASSERT(n != NULL, "%s: no JobNotify listing %s as queued within %d ms", dev, job, timeout_ms);
	return n;
}

/* Number of queued JobNotify messages (already received) that list job as
 * queued or in progress; consumes every notify. */
static int drain_notifies_listing(struct fm_client *c, const char *dev, const char *job)
{
	char topic[256];
	struct fm_msg *m;
	int count = 0;
	fm_topic(topic, sizeof(topic), dev, "jobs/notify");
	while((m = fm_client_wait_message(c, topic, 0)) != NULL){
		Fleetmq__V1__JobNotify *n = fm_pb_job_notify(m);
		FM_ASSERT(n != NULL, "%s: undecodable JobNotify", dev);
		if(n && !notify_lacks(n, (void *)job)) count++;
		if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
		fm_msg_free(m);
	}
	return count;
}

/* jobs/next/get must return `job`; returns its version (0 on failure). */
static uint64_t next_get_expect(struct fm_client *c, const char *dev, const char *job, uint32_t attempt)
{
	char token[64];
	Fleetmq__V1__JobNextGetAccepted *a;
	uint64_t v = 0;
	snprintf(token, sizeof(token), "next-%s", job);
	a = fm_job_next_get(c, dev, token, FM_TIMEOUT_MS);
	FM_ASSERT(a != NULL, "%s: no jobs/next/get/accepted", dev);
	if(!a) return 0;
	FM_ASSERT_STR_EQ(a->client_token, token);
	FM_ASSERT(a->has_execution && a->execution, "%s: next/get has no execution (expected %s)", dev, job);
	if(a->has_execution && a->execution){
		FM_ASSERT_STR_EQ(a->execution->job_id, job);
		FM_ASSERT(a->execution->status == ST_QUEUED, "%s: next/get status %s", dev,
				fm_exec_status_name(a->execution->status));
		FM_ASSERT_EQ(a->execution->attempt, attempt);
		FM_ASSERT(a->execution->version > 0, "%s: next/get version 0", dev);
		if(!strcmp(a->execution->job_id, job)) v = a->execution->version;
	}
	fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
	return v;
}

/* next/get must report an empty queue. */
static void next_get_empty(struct fm_client *c, const char *dev)
{
	Fleetmq__V1__JobNextGetAccepted *a = fm_job_next_get(c, dev, "next-empty", FM_TIMEOUT_MS);
	FM_ASSERT(a != NULL, "%s: no jobs/next/get/accepted", dev);
	if(!a) return;
	FM_ASSERT(!a->has_execution, "%s: queue not empty: %s", dev,
			a->execution ? a->execution->job_id : "(no execution message)");
	fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
}

/* Report `status` with expected_version ev; must be accepted (not a
 * duplicate). Returns the new version (0 on failure); *retry (may be NULL)
 * receives retry_scheduled. */
static uint64_t report_ok(struct fm_client *c, const char *dev, const char *job, int status, uint64_t ev, bool *retry)
{
	char token[96];
	struct fm_job_update_result r;
	uint64_t v = 0;
	int rc;
	snprintf(token, sizeof(token), "%s-%s-%llu", job, fm_exec_status_name(status), (unsigned long long)ev);
	rc = fm_job_update(c, dev, job, status, ev, -1, token, &r, FM_TIMEOUT_MS);
	FM_ASSERT(rc == 1, "%s: %s %s (expected version %llu): expected accepted, got %s %s %s", dev, job,
			fm_exec_status_name(status), (unsigned long long)ev,
			rc == 1 ? "accepted" : rc == 0 ? "rejected" : "no reply",
			r.rejected ? fm_error_code_name(r.rejected->code) : "", r.rejected ? r.rejected->reason : "");
	if(rc == 1){
		FM_ASSERT_STR_EQ(r.accepted->job_id, job);
		FM_ASSERT_STR_EQ(r.accepted->client_token, token);
		FM_ASSERT(r.accepted->status == (Fleetmq__V1__ExecutionStatus)status, "accepted status %s, reported %s",
				fm_exec_status_name(r.accepted->status), fm_exec_status_name(status));
		FM_ASSERT(!r.accepted->duplicate, "%s: fresh report flagged duplicate", job);
		FM_ASSERT(ev == 0 || r.accepted->version == ev + 1, "%s: version %llu after expected %llu", job,
				(unsigned long long)r.accepted->version, (unsigned long long)ev);
		v = r.accepted->version;
		if(retry) *retry = r.accepted->retry_scheduled;
	}
	fm_job_update_result_clear(&r);
	return v;
}

/* Report that must be rejected with `code`; returns the rejection's
 * version (current execution version) and copies its reason. */
static uint64_t report_rejected(struct fm_client *c, const char *dev, const char *job, int status, uint64_t ev,
		int code, char *reason, size_t reason_len)
{
	struct fm_job_update_result r;
	uint64_t v = 0;
	int rc = fm_job_update(c, dev, job, status, ev, -1, "rej", &r, FM_TIMEOUT_MS);
	if(reason && reason_len) reason[0] = '\0';
	FM_ASSERT(rc == 0, "%s: %s %s (expected version %llu): expected rejected %s, got %s (version %llu)", dev, job,
			fm_exec_status_name(status), (unsigned long long)ev, fm_error_code_name(code),
			rc == 1 ? "accepted" : "no reply", rc == 1 ? (unsigned long long)r.accepted->version : 0ULL);
	if(rc == 0){
		FM_ASSERT_CODE(r.rejected->code, code);
		FM_ASSERT_STR_EQ(r.rejected->client_token, "rej");
		FM_ASSERT(r.rejected->reason[0] != '\0', "%s: rejection without reason", job);
		v = r.rejected->version;
		if(reason) snprintf(reason, reason_len, "%s", r.rejected->reason);
	}
	fm_job_update_result_clear(&r);
	return v;
}

/* next/get, IN_PROGRESS, SUCCEEDED. Returns the final version. */
static uint64_t run_to_success(struct fm_client *c, const char *dev, const char *job)
{
	uint64_t v = next_get_expect(c, dev, job, 1);
	if(!v) return 0;
	v = report_ok(c, dev, job, ST_IN_PROGRESS, v, NULL);
	if(!v) return 0;
	return report_ok(c, dev, job, ST_SUCCEEDED, v, NULL);
}

/* ---- 1. fan-out, online and offline devices ------------------------------ */

static void test_jobs_fanout_online_and_offline_device(void)
{
	static const char *const devs[3] = { "jf-a", "jf-b", "jf-c" };
	const char *job = "job-fanout";
	const char *doc = "{\"set\":{\"interval\":30,\"mode\":\"eco\"}}";
	struct fm_client *c[3] = { NULL, NULL, NULL };
	struct fm_client *ops;
	Fleetmq__V1__JobNotify *n;
	char body[512];
	uint32_t pending = 99;
	uint64_t t0;
	cJSON *r;
	int i;

	/* jf-c registers, then goes offline. */
	c[2] = device_ready(devs[2]);
	CU_ASSERT_FATAL(c[2] != NULL);
	fm_client_destroy(c[2]);
	c[2] = NULL;
	for(i = 0; i < 2; i++){
		c[i] = device_ready(devs[i]);
		CU_ASSERT_FATAL(c[i] != NULL);
	}
	ops = ops_connect();
	CU_ASSERT_FATAL(ops != NULL);

	t0 = fm_mono_ms();
	snprintf(body, sizeof(body), "\"type\":\"config\",\"document\":%s,"
			"\"targets\":{\"devices\":[\"jf-a\",\"jf-b\",\"jf-c\"]}", doc);
	create_job(ops, job, body);
	for(i = 0; i < 2; i++){
		n = expect_queued_notify(c[i], devs[i], job, FM_TIMEOUT_MS);
		if(n){
			int k = fm_job_summary_index(n->queued, n->n_queued, job);
			uint64_t dt = fm_mono_ms() - t0;
			FM_ASSERT(dt <= PROMPT_MS, "%s: JobNotify %llu ms after createJob", devs[i], (unsigned long long)dt);
			FM_ASSERT_EQ(n->n_queued, 1);
			FM_ASSERT_EQ(n->n_in_progress, 0);
			FM_ASSERT_EQ(n->n_canceled, 0);
			FM_ASSERT(n->queued[k]->status == ST_QUEUED, "summary status %s",
					fm_exec_status_name(n->queued[k]->status));
			FM_ASSERT_EQ(n->queued[k]->attempt, 1);
			FM_ASSERT_EQ(n->queued[k]->type, FLEETMQ__V1__JOB_TYPE__JOB_TYPE_CONFIG);
			FM_ASSERT(n->queued[k]->version > 0 && n->queued[k]->queued_at_ms > 0,
					"summary version %llu queued_at %llu", (unsigned long long)n->queued[k]->version,
					(unsigned long long)n->queued[k]->queued_at_ms);
			fleetmq__v1__job_notify__free_unpacked(n, NULL);
		}
	}

	/* The offline device learns about it on reconnect: pending_jobs, then
	 * the JobNotify that follows the hello. */
	c[2] = device_online(devs[2], &pending);
	CU_ASSERT_FATAL(c[2] != NULL);
	FM_ASSERT_EQ(pending, 1);
	n = fm_wait_job_notify(c[2], devs[2], NULL, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "jf-c: no JobNotify after hello");
	if(n){
		FM_ASSERT(notify_queued_has(n, (void *)job), "jf-c: hello JobNotify does not list %s (queued %zu)", job,
				n->n_queued);
		FM_ASSERT_EQ(n->n_queued, 1);
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}

	/* Each device: next/get (with the document), IN_PROGRESS, SUCCEEDED. */
	for(i = 0; i < 3; i++){
		Fleetmq__V1__JobNextGetAccepted *a = fm_job_next_get(c[i], devs[i], "fan-next", FM_TIMEOUT_MS);
		uint64_t v = 0;
		FM_ASSERT(a != NULL && a->has_execution && a->execution, "%s: next/get without execution", devs[i]);
		if(a && a->has_execution && a->execution){
			cJSON *got = cJSON_Parse(a->execution->document_json), *want = cJSON_Parse(doc);
			FM_ASSERT_STR_EQ(a->execution->job_id, job);
			FM_ASSERT(got && want && cJSON_Compare(got, want, true), "%s: document_json %s, expected %s", devs[i],
					a->execution->document_json, doc);
			FM_ASSERT_EQ(a->execution->type, FLEETMQ__V1__JOB_TYPE__JOB_TYPE_CONFIG);
			FM_ASSERT(a->execution->status == ST_QUEUED, "%s: status %s", devs[i],
					fm_exec_status_name(a->execution->status));
			FM_ASSERT(a->execution->version > 0, "%s: version 0", devs[i]);
			v = a->execution->version;
			cJSON_Delete(got);
			cJSON_Delete(want);
		}
		if(a) fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
		if(!v) continue;
		v = report_ok(c[i], devs[i], job, ST_IN_PROGRESS, v, NULL);
		if(v) report_ok(c[i], devs[i], job, ST_SUCCEEDED, v, NULL);
	}

	r = wait_job(ops, job, "COMPLETED", FM_TIMEOUT_MS);
	FM_ASSERT(!strcmp(jstr(r, "data.job.status"), "COMPLETED"), "job not COMPLETED: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.succeeded", -1) == 3, "counts: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.total", -1) == 3, "counts: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.failed", -1) == 0, "counts: %s", show(r));
	FM_ASSERT_STR_EQ(jstr(r, "data.job.createdBy"), "ops");
	cJSON_Delete(r);
	for(i = 0; i < 3; i++) fm_client_destroy(c[i]);
	fm_client_destroy(ops);
}

/* ---- 2. in-order delivery ------------------------------------------------ */

static bool notify_has_all_three(const Fleetmq__V1__JobNotify *n, void *ctx)
{
	const char *const *jobs = ctx;
	for(int i = 0; i < 3; i++){
		if(fm_job_summary_index(n->queued, n->n_queued, jobs[i]) < 0) return false;
	}
	return true;
}

static void test_jobs_in_order_delivery(void)
{
	const char *dev = "jo-dev";
	static const char *const jobs[3] = { "job-order-1", "job-order-2", "job-order-3" };
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	uint64_t v2 = 0, v;
	char reason[256];
	int i;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	for(i = 0; i < 3; i++){
		char body[256];
		snprintf(body, sizeof(body), "\"type\":\"feature\",\"document\":{\"enable\":[\"f%d\"]},"
				"\"targets\":{\"devices\":[\"%s\"]}", i + 1, dev);
		create_job(ops, jobs[i], body);
	}
	n = fm_wait_job_notify(c, dev, notify_has_all_three, (void *)jobs, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "no JobNotify listing all three jobs");
	if(n){
		FM_ASSERT_EQ(n->n_queued, 3);
		for(i = 0; i < 3 && (size_t)i < n->n_queued; i++){
			FM_ASSERT(!strcmp(n->queued[i]->job_id, jobs[i]), "queued[%d] = %s, expected %s", i,
					n->queued[i]->job_id, jobs[i]);
			if(i > 0){
				FM_ASSERT(n->queued[i]->queue_position > n->queued[i - 1]->queue_position,
						"queue_position not increasing: %llu then %llu",
						(unsigned long long)n->queued[i - 1]->queue_position,
						(unsigned long long)n->queued[i]->queue_position);
			}
		}
		i = fm_job_summary_index(n->queued, n->n_queued, jobs[1]);
		if(i >= 0) v2 = n->queued[i]->version;
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}

	v = next_get_expect(c, dev, jobs[0], 1);
	/* Starting the second before the first is refused, naming the first. */
	FM_ASSERT(v2 > 0, "no version for %s", jobs[1]);
	report_rejected(c, dev, jobs[1], ST_IN_PROGRESS, v2, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
			reason, sizeof(reason));
	FM_ASSERT(strstr(reason, jobs[0]) != NULL, "rejection reason does not name %s: '%s'", jobs[0], reason);
	/* ...and so is finishing the third out of order. */
	report_rejected(c, dev, jobs[2], ST_SUCCEEDED, 0, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
			reason, sizeof(reason));
	FM_ASSERT(strstr(reason, jobs[0]) != NULL, "rejection reason does not name %s: '%s'", jobs[0], reason);

	v = report_ok(c, dev, jobs[0], ST_IN_PROGRESS, v, NULL);
	/* One at a time (jobs.max_in_progress_per_device = 1). */
	report_rejected(c, dev, jobs[1], ST_IN_PROGRESS, v2, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST,
			reason, sizeof(reason));
	FM_ASSERT(strstr(reason, "in progress") != NULL, "rejection reason: '%s'", reason);
	report_ok(c, dev, jobs[0], ST_SUCCEEDED, v, NULL);

	for(i = 1; i < 3; i++){
		v = next_get_expect(c, dev, jobs[i], 1);
		if(i == 1) FM_ASSERT_EQ(v, v2);
		v = report_ok(c, dev, jobs[i], ST_IN_PROGRESS, v, NULL);
		report_ok(c, dev, jobs[i], ST_SUCCEEDED, v, NULL);
	}
	next_get_empty(c, dev);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 3. cancel -------------------------------------------------------------- */

static void test_jobs_cancel_queued_execution(void)
{
	const char *dev = "jc-dev", *job = "job-cancel-q";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	cJSON *r;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},\"targets\":{\"devices\":[\"jc-dev\"]}");
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);

	r = cmd_ok(ops, "{\"command\":\"cancelJob\",\"jobId\":\"%s\",\"reason\":\"wrong config\"}", job);
	FM_ASSERT_STR_EQ(jstr(r, "data.status"), "CANCELED");
	cJSON_Delete(r);

	n = fm_wait_job_notify(c, dev, notify_canceled_has, (void *)job, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "no JobNotify with %s canceled", job);
	if(n){
		int k = fm_job_summary_index(n->canceled, n->n_canceled, job);
		FM_ASSERT(notify_lacks(n, (void *)job), "canceled job still queued / in progress");
		FM_ASSERT(n->canceled[k]->status == ST_CANCELED, "canceled entry status %s",
				fm_exec_status_name(n->canceled[k]->status));
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	r = describe_job(ops, job);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "CANCELED");
	FM_ASSERT(starts_with(jstr(r, "data.job.statusReason"), "canceled by ops"), "statusReason: %s", show(r));
	FM_ASSERT(strstr(jstr(r, "data.job.statusReason"), "wrong config") != NULL, "statusReason: %s", show(r));
	cJSON_Delete(r);
	r = wait_exec(ops, job, dev, "CANCELED", 1, FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "CANCELED");
	cJSON_Delete(r);
	next_get_empty(c, dev);
	/* A closed job cannot be canceled again. */
	expect_error(ops, "CONFLICT", "CANCELED", "{\"command\":\"cancelJob\",\"jobId\":\"%s\"}", job);
	expect_error(ops, "NOT_FOUND", NULL, "{\"command\":\"cancelJob\",\"jobId\":\"job-no-such\"}");
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

static void test_jobs_cancel_in_progress_needs_force(void)
{
	const char *dev = "jcf-dev", *soft = "job-cancel-soft", *hard = "job-cancel-force";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	uint64_t v;
	cJSON *r;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	/* Without force: the running execution is left alone. */
	create_job(ops, soft, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},\"targets\":{\"devices\":[\"jcf-dev\"]}");
	n = expect_queued_notify(c, dev, soft, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	v = next_get_expect(c, dev, soft, 1);
	v = report_ok(c, dev, soft, ST_IN_PROGRESS, v, NULL);
	CU_ASSERT_FATAL(v != 0);
	r = cmd_ok(ops, "{\"command\":\"cancelJob\",\"jobId\":\"%s\"}", soft);
	cJSON_Delete(r);
	fm_sleep_ms(FM_QUIET_MS);
	n = fm_wait_job_notify(c, dev, notify_canceled_has, (void *)soft, 0);
	FM_ASSERT(n == NULL, "in-progress execution canceled without force");
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	r = describe_exec(ops, soft, dev);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "IN_PROGRESS");
	FM_ASSERT(jnum(r, "data.execution.version", 0) == (double)v, "version changed: %s", show(r));
	cJSON_Delete(r);
	r = describe_job(ops, soft);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "CANCELED");
	cJSON_Delete(r);
	/* The device may still finish what it was running. */
	report_ok(c, dev, soft, ST_SUCCEEDED, v, NULL);

	/* With force: canceled, and the device is told. */
	create_job(ops, hard, "\"type\":\"config\",\"document\":{\"set\":{\"b\":2}},\"targets\":{\"devices\":[\"jcf-dev\"]}");
	n = expect_queued_notify(c, dev, hard, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	v = next_get_expect(c, dev, hard, 1);
	v = report_ok(c, dev, hard, ST_IN_PROGRESS, v, NULL);
	CU_ASSERT_FATAL(v != 0);
	r = cmd_ok(ops, "{\"command\":\"cancelJob\",\"jobId\":\"%s\",\"force\":true}", hard);
	cJSON_Delete(r);
	n = fm_wait_job_notify(c, dev, notify_canceled_has, (void *)hard, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "no JobNotify with forced-canceled %s", hard);
	if(n){
		FM_ASSERT(notify_lacks(n, (void *)hard), "force-canceled job still in progress");
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	r = wait_exec(ops, hard, dev, "CANCELED", 1, FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "CANCELED");
	FM_ASSERT(jnum(r, "data.execution.version", 0) > (double)v, "version not bumped: %s", show(r));
	cJSON_Delete(r);
	/* Its late SUCCEEDED is refused: the execution is final. */
	report_rejected(c, dev, hard, ST_SUCCEEDED, 0, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, NULL, 0);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 4. in-progress timeout ---------------------------------------------- */

static void test_jobs_in_progress_timeout(void)
{
	const char *dev = "jt-dev", *job = "job-timeout";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__JobNextGetAccepted *a;
	Fleetmq__V1__JobNotify *n;
	uint64_t v = 0, t0, dt;
	cJSON *r;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},\"timeoutMs\":300,"
			"\"targets\":{\"devices\":[\"jt-dev\"]}");
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	a = fm_job_next_get(c, dev, "t-next", FM_TIMEOUT_MS);
	FM_ASSERT(a && a->has_execution && a->execution, "no execution from next/get");
	if(a && a->has_execution && a->execution){
		FM_ASSERT_EQ(a->execution->timeout_ms, 300);
		v = a->execution->version;
	}
	if(a) fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
	CU_ASSERT_FATAL(v != 0);
	v = report_ok(c, dev, job, ST_IN_PROGRESS, v, NULL);
	t0 = fm_mono_ms();
	CU_ASSERT_FATAL(v != 0);
	r = describe_exec(ops, job, dev);
	FM_ASSERT(jnum(r, "data.execution.deadlineMs", 0) > 0, "no deadline: %s", show(r));
	cJSON_Delete(r);

	/* The device goes quiet: the execution times out and the device is
	 * told (it disappears from in_progress). */
	n = fm_wait_job_notify(c, dev, notify_lacks, (void *)job, FM_TIMEOUT_MS);
	dt = fm_mono_ms() - t0;
	FM_ASSERT(n != NULL, "no JobNotify after the timeout");
	if(n){
		/* ...and told to stop working on it. */
		int k = fm_job_summary_index(n->canceled, n->n_canceled, job);
		FM_ASSERT(k >= 0, "timed-out %s not listed in JobNotify.canceled", job);
		if(k >= 0){
			FM_ASSERT(n->canceled[k]->status == FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_TIMED_OUT,
					"canceled entry status %s", fm_exec_status_name(n->canceled[k]->status));
		}
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	/* t0 is taken when the accepted arrives, a little after the broker
	 * set the deadline: allow for that, but not for an early timeout. */
	FM_ASSERT(dt >= 150 && dt <= 2000, "timed out after %llu ms (timeoutMs 300)", (unsigned long long)dt);
	r = wait_exec(ops, job, dev, "TIMED_OUT", 1, FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "TIMED_OUT");
	FM_ASSERT(!fm_json_path(r, "data.execution.retryAtMs"), "retry scheduled without a policy: %s", show(r));
	cJSON_Delete(r);
	/* A late report cannot revive it. */
	report_rejected(c, dev, job, ST_SUCCEEDED, v, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_VERSION_CONFLICT, NULL, 0);
	r = wait_job(ops, job, "COMPLETED", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "COMPLETED");
	FM_ASSERT(jnum(r, "data.job.counts.timedOut", -1) == 1, "counts: %s", show(r));
	cJSON_Delete(r);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 5. retry ---------------------------------------------------------------- */

static void test_jobs_retry_after_failure(void)
{
	const char *dev = "jr-dev", *job = "job-retry";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	struct attempt_ctx ax = { job, 2 };
	Fleetmq__V1__JobNotify *n;
	bool retry = false;
	uint64_t v, t0, dt;
	cJSON *r;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"retry\":{\"failed\":1,\"backoffMs\":200},\"targets\":{\"devices\":[\"jr-dev\"]}");
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	v = next_get_expect(c, dev, job, 1);
	v = report_ok(c, dev, job, ST_IN_PROGRESS, v, NULL);
	v = report_ok(c, dev, job, ST_FAILED, v, &retry);
	t0 = fm_mono_ms();
	CU_ASSERT_FATAL(v != 0);
	FM_ASSERT(retry, "first FAILED: retry_scheduled false");

	/* After the backoff: QUEUED again as attempt 2, device notified. */
	n = fm_wait_job_notify(c, dev, notify_queued_attempt, &ax, FM_TIMEOUT_MS);
	dt = fm_mono_ms() - t0;
	FM_ASSERT(n != NULL, "no JobNotify with attempt 2 queued");
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	FM_ASSERT(dt >= 100, "retry after %llu ms, backoff is 200 ms", (unsigned long long)dt);
	r = describe_exec(ops, job, dev);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "QUEUED");
	FM_ASSERT(jnum(r, "data.execution.attempt", 0) == 2, "attempt: %s", show(r));
	cJSON_Delete(r);

	v = next_get_expect(c, dev, job, 2);
	v = report_ok(c, dev, job, ST_IN_PROGRESS, v, NULL);
	retry = true;
	report_ok(c, dev, job, ST_FAILED, v, &retry);
	FM_ASSERT(!retry, "second FAILED: retry scheduled beyond retry.failed = 1");

	fm_sleep_ms(400);   /* twice the backoff: no third attempt */
	r = describe_exec(ops, job, dev);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "FAILED");
	FM_ASSERT(jnum(r, "data.execution.attempt", 0) == 2, "attempt: %s", show(r));
	cJSON_Delete(r);
	r = wait_job(ops, job, "COMPLETED", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "COMPLETED");
	FM_ASSERT(jnum(r, "data.job.counts.failed", -1) == 1, "counts: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.total", -1) == 1, "counts: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.retryPending", -1) == 0, "counts: %s", show(r));
	cJSON_Delete(r);
	next_get_empty(c, dev);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 6. abort criteria ------------------------------------------------------ */

static void test_jobs_abort_after_failures_stops_rollout(void)
{
	static const char *const devs[3] = { "ja-1", "ja-2", "ja-3" };
	const char *job = "job-abort";
	struct fm_client *c[3] = { NULL, NULL, NULL }, *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	uint64_t v[3] = { 0, 0, 0 };
	cJSON *r;
	int i;

	CU_ASSERT_FATAL(ops != NULL);
	for(i = 0; i < 3; i++){
		c[i] = device_ready(devs[i]);
		CU_ASSERT_FATAL(c[i] != NULL);
	}
	/* ja-4..6 are never online: their executions stay queued. */
	create_job(ops, job, "\"type\":\"update\",\"document\":{\"artifact\":\"fw-2.0.bin\",\"version\":\"2.0\"},"
			"\"targets\":{\"devices\":[\"ja-1\",\"ja-2\",\"ja-3\",\"ja-4\",\"ja-5\",\"ja-6\"]},"
			"\"rollout\":{\"maxPerMinute\":60000},"
			"\"abort\":[{\"failureType\":\"FAILED\",\"thresholdPercent\":50,\"minExecuted\":2}]");
	for(i = 0; i < 3; i++){
		n = expect_queued_notify(c[i], devs[i], job, FM_TIMEOUT_MS);
		if(n){
			int k = fm_job_summary_index(n->queued, n->n_queued, job);
			v[i] = n->queued[k]->version;
			FM_ASSERT_EQ(n->queued[k]->type, FLEETMQ__V1__JOB_TYPE__JOB_TYPE_UPDATE);
			fleetmq__v1__job_notify__free_unpacked(n, NULL);
		}
	}
	FM_ASSERT_EQ(wait_count(ops, job, "QUEUED", 6, FM_TIMEOUT_MS), 6);

	/* One failure out of one finished: below minExecuted, still running. */
	report_ok(c[0], devs[0], job, ST_FAILED, v[0], NULL);
	r = describe_job(ops, job);
	FM_ASSERT(!strcmp(jstr(r, "data.job.status"), "IN_PROGRESS"), "aborted too early: %s", show(r));
	cJSON_Delete(r);
	/* Second failure: 2 of 2 finished failed >= 50%: abort. */
	report_ok(c[1], devs[1], job, ST_FAILED, v[1], NULL);
	r = wait_job(ops, job, "CANCELED", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "CANCELED");
	FM_ASSERT(starts_with(jstr(r, "data.job.statusReason"), "aborted"), "statusReason: %s", show(r));
	cJSON_Delete(r);

	/* The online bystander is told to drop it; the rest are canceled. */
	n = fm_wait_job_notify(c[2], devs[2], notify_canceled_has, (void *)job, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "ja-3: no JobNotify with the aborted job canceled");
	if(n){
		FM_ASSERT(notify_lacks(n, (void *)job), "ja-3: aborted job still queued");
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	FM_ASSERT_EQ(wait_count(ops, job, "CANCELED", 4, FM_TIMEOUT_MS), 4);
	FM_ASSERT_EQ(count_execs(ops, job, "QUEUED"), 0);
	FM_ASSERT_EQ(count_execs(ops, job, "PENDING"), 0);
	FM_ASSERT_EQ(count_execs(ops, job, "FAILED"), 2);
	report_rejected(c[2], devs[2], job, ST_IN_PROGRESS, 0, FLEETMQ__V1__ERROR_CODE__ERROR_CODE_BAD_REQUEST, NULL, 0);
	next_get_empty(c[2], devs[2]);
	for(i = 0; i < 3; i++) fm_client_destroy(c[i]);
	fm_client_destroy(ops);
}

/* ---- 7. canary gate ------------------------------------------------------- */

static void test_jobs_canary_gates_rollout(void)
{
	static const char *const devs[4] = { "jk-1", "jk-2", "jk-3", "jk-4" };
	const char *job = "job-canary";
	struct fm_client *c[4] = { NULL, NULL, NULL, NULL }, *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	cJSON *r;
	int i;

	CU_ASSERT_FATAL(ops != NULL);
	for(i = 0; i < 4; i++){
		c[i] = device_ready(devs[i]);
		CU_ASSERT_FATAL(c[i] != NULL);
	}
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"targets\":{\"devices\":[\"jk-1\",\"jk-2\",\"jk-3\",\"jk-4\"]},"
			"\"rollout\":{\"canary\":{\"count\":1}}");
	/* Exactly one canary is released. */
	n = expect_queued_notify(c[0], devs[0], job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	fm_sleep_ms(FM_QUIET_MS);
	for(i = 1; i < 4; i++){
		FM_ASSERT(drain_notifies_listing(c[i], devs[i], job) == 0, "%s got the job before the canary finished",
				devs[i]);
	}
	FM_ASSERT_EQ(count_execs(ops, job, "QUEUED"), 1);
	FM_ASSERT_EQ(count_execs(ops, job, "PENDING"), 3);
	r = describe_exec(ops, job, devs[0]);
	FM_ASSERT(jtrue(r, "data.execution.canary"), "jk-1 is not the canary: %s", show(r));
	cJSON_Delete(r);
	r = describe_exec(ops, job, devs[1]);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "PENDING");
	cJSON_Delete(r);
	/* A pending execution is invisible to its device. */
	next_get_empty(c[1], devs[1]);

	/* The canary succeeds: the rest are released. */
	run_to_success(c[0], devs[0], job);
	for(i = 1; i < 4; i++){
		n = expect_queued_notify(c[i], devs[i], job, FM_TIMEOUT_MS);
		if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	FM_ASSERT_EQ(wait_count(ops, job, "PENDING", 0, FM_TIMEOUT_MS), 0);
	FM_ASSERT_EQ(count_execs(ops, job, "QUEUED"), 3);
	for(i = 1; i < 4; i++) run_to_success(c[i], devs[i], job);
	r = wait_job(ops, job, "COMPLETED", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "COMPLETED");
	FM_ASSERT(jnum(r, "data.job.counts.succeeded", -1) == 4, "counts: %s", show(r));
	cJSON_Delete(r);
	for(i = 0; i < 4; i++) fm_client_destroy(c[i]);
	fm_client_destroy(ops);
}

static void test_jobs_failing_canary_aborts(void)
{
	static const char *const devs[2] = { "jkf-1", "jkf-2" };
	const char *job = "job-canary-fail";
	struct fm_client *c[2] = { NULL, NULL }, *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	uint64_t v;
	cJSON *r;
	int i;

	CU_ASSERT_FATAL(ops != NULL);
	for(i = 0; i < 2; i++){
		c[i] = device_ready(devs[i]);
		CU_ASSERT_FATAL(c[i] != NULL);
	}
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"targets\":{\"devices\":[\"jkf-1\",\"jkf-2\",\"jkf-3\",\"jkf-4\"]},"
			"\"rollout\":{\"canary\":{\"count\":1,\"successPercent\":100}}");
	n = expect_queued_notify(c[0], devs[0], job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	v = next_get_expect(c[0], devs[0], job, 1);
	v = report_ok(c[0], devs[0], job, ST_IN_PROGRESS, v, NULL);
	report_ok(c[0], devs[0], job, ST_FAILED, v, NULL);

	r = wait_job(ops, job, "CANCELED", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "CANCELED");
	FM_ASSERT(starts_with(jstr(r, "data.job.statusReason"), "aborted"), "statusReason: %s", show(r));
	FM_ASSERT(strstr(jstr(r, "data.job.statusReason"), "canary") != NULL, "statusReason: %s", show(r));
	cJSON_Delete(r);
	FM_ASSERT_EQ(wait_count(ops, job, "CANCELED", 3, FM_TIMEOUT_MS), 3);
	FM_ASSERT_EQ(count_execs(ops, job, "PENDING"), 0);
	FM_ASSERT_EQ(count_execs(ops, job, "QUEUED"), 0);
	FM_ASSERT_EQ(count_execs(ops, job, "FAILED"), 1);
	fm_sleep_ms(3 * JOBS_CHECK_INTERVAL_MS);
	FM_ASSERT(drain_notifies_listing(c[1], devs[1], job) == 0, "jkf-2 was released the job of a failed canary");
	next_get_empty(c[1], devs[1]);
	for(i = 0; i < 2; i++) fm_client_destroy(c[i]);
	fm_client_destroy(ops);
}

/* ---- 8. operator API: role, errors, validation, idempotent create ------------ */

static void test_control_non_operator_forbidden(void)
{
	const char *who[2] = { "intruder", "jn-dev" };   /* a stranger, and a device */
	struct fm_client *ops = ops_connect();
	int i;

	CU_ASSERT_FATAL(ops != NULL);
	for(i = 0; i < 2; i++){
		struct fm_client *x = fm_control_connect(g_broker.port, who[i]);
		Fleetmq__V1__CreateJobRequest req = FLEETMQ__V1__CREATE_JOB_REQUEST__INIT;
		char *targets[1] = { (char *)"jn-dev" };
		uint8_t *buf;
		size_t len;
		cJSON *r;

		FM_ASSERT(x != NULL, "%s cannot connect", who[i]);
		if(!x) continue;
		r = fm_control_command(x, "{\"command\":\"createJob\",\"jobId\":\"job-forbidden\",\"type\":\"config\","
				"\"document\":{\"set\":{\"a\":1}},\"targets\":{\"devices\":[\"jn-dev\"]}}", FM_TIMEOUT_MS);
		FM_ASSERT(r != NULL, "%s: no response", who[i]);
		FM_ASSERT_STR_EQ(jstr(r, "code"), "FORBIDDEN");
		FM_ASSERT(strstr(jstr(r, "error"), who[i]) != NULL, "error does not name the user: %s", show(r));
		FM_ASSERT(!fm_json_path(r, "data"), "forbidden command returned data: %s", show(r));
		cJSON_Delete(r);
		r = fm_control_command(x, "{\"command\":\"listJobs\"}", FM_TIMEOUT_MS);
		FM_ASSERT_STR_EQ(jstr(r, "code"), "FORBIDDEN");
		FM_ASSERT(!fm_json_path(r, "data"), "forbidden read returned data: %s", show(r));
		cJSON_Delete(r);

		/* The protobuf create topic checks the role too. */
		req.job_id = (char *)"job-forbidden";
		req.type = FLEETMQ__V1__JOB_TYPE__JOB_TYPE_CONFIG;
		req.document_json = (char *)"{\"set\":{\"a\":1}}";
		req.n_target_devices = 1;
		req.target_devices = targets;
		len = fleetmq__v1__create_job_request__get_packed_size(&req);
		buf = malloc(len ? len : 1);
		CU_ASSERT_FATAL(buf != NULL);
		fleetmq__v1__create_job_request__pack(&req, buf);
		r = fm_control_request_raw(x, FM_CONTROL_CREATE_PB_TOPIC, buf, len, FM_TIMEOUT_MS);
		free(buf);
		FM_ASSERT(r != NULL, "%s: no response on the protobuf topic", who[i]);
		{
			const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
			FM_ASSERT_STR_EQ(jstr(first, "code"), "FORBIDDEN");
		}
		cJSON_Delete(r);
		fm_client_destroy(x);
	}
	expect_error(ops, "NOT_FOUND", "job-forbidden", "{\"command\":\"describeJob\",\"jobId\":\"job-forbidden\"}");
	fm_client_destroy(ops);
}

static void test_control_malformed_and_unknown_command(void)
{
	struct fm_client *ops = ops_connect();
	const cJSON *first;
	cJSON *r;

	CU_ASSERT_FATAL(ops != NULL);
	r = fm_control_request(ops, "{\"commands\":[{\"command\":\"listJobs\"", FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no response to malformed JSON");
	first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
	FM_ASSERT_STR_EQ(jstr(first, "code"), "MALFORMED");
	cJSON_Delete(r);

	r = fm_control_request(ops, "{\"commands\":{}}", FM_TIMEOUT_MS);
	first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
	FM_ASSERT_STR_EQ(jstr(first, "code"), "BAD_REQUEST");
	cJSON_Delete(r);

	expect_error(ops, "BAD_REQUEST", "unknown command", "{\"command\":\"frobnicateJobs\",\"correlationData\":\"u1\"}");
	/* Several commands: one response each, in order, correlation echoed. */
	r = fm_control_request(ops, "{\"commands\":[{\"command\":\"nope\",\"correlationData\":\"c1\"},"
			"{\"command\":\"listJobs\",\"limit\":1,\"correlationData\":\"c2\"}]}", FM_TIMEOUT_MS);
	FM_ASSERT(r != NULL, "no response to a batch");
	if(r){
		const cJSON *arr = cJSON_GetObjectItemCaseSensitive(r, "responses");
		FM_ASSERT_EQ(cJSON_GetArraySize(arr), 2);
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(arr, 0), "correlationData"), "c1");
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(arr, 0), "code"), "BAD_REQUEST");
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(arr, 1), "correlationData"), "c2");
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(arr, 1), "command"), "listJobs");
		FM_ASSERT(cJSON_IsArray(fm_json_path(cJSON_GetArrayItem(arr, 1), "data.jobs")), "listJobs: %s", show(r));
	}
	cJSON_Delete(r);
	fm_client_destroy(ops);
}

/* Without a response topic the reply goes to $CONTROL/fleetmq/v1/response,
 * with the correlation data; only operators may read that topic. */
static void test_control_default_response_topic(void)
{
	static const char *const filters[] = { "$CONTROL/fleetmq/v1/response", NULL };
	struct fm_client *ops = fm_operator_connect(g_broker.port, "ops", filters);
	struct fm_client *x;
	struct fm_msg *m;
	cJSON *root;
	const char *req = "{\"commands\":[{\"command\":\"listJobs\",\"limit\":1,\"correlationData\":\"fb\"}]}";
	int rc;

	CU_ASSERT_FATAL(ops != NULL);
	rc = fm_client_publish_request(ops, FM_CONTROL_TOPIC, req, strlen(req), NULL, "fb-corr", 7, NULL);
	FM_ASSERT_EQ(rc, MOSQ_ERR_SUCCESS);
	m = fm_client_wait_message(ops, "$CONTROL/fleetmq/v1/response", FM_TIMEOUT_MS);
	FM_ASSERT(m != NULL, "no reply on $CONTROL/fleetmq/v1/response");
	if(m){
		root = cJSON_ParseWithLength((const char *)m->payload, m->payloadlen);
		FM_ASSERT(m->correlation_len == 7 && !memcmp(m->correlation, "fb-corr", 7), "correlation data not echoed");
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "responses"), 0), "command"),
				"listJobs");
		FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "responses"), 0),
				"correlationData"), "fb");
		cJSON_Delete(root);
		fm_msg_free(m);
	}
	/* A non-operator may not listen to operators' replies. */
	x = fm_client_new("intruder", "intruder", true);
	CU_ASSERT_FATAL(x != NULL);
	FM_ASSERT_EQ_FATAL(fm_client_connect(x, g_broker.port, 60, FM_TIMEOUT_MS), 0);
	rc = fm_client_subscribe(x, "$CONTROL/fleetmq/v1/response", 1, 0, FM_TIMEOUT_MS);
	FM_ASSERT(rc >= 0x80, "non-operator subscribed to $CONTROL/fleetmq/v1/response (SUBACK %d)", rc);
	fm_client_destroy(x);
	fm_client_destroy(ops);
}

/* The response topic is the requester's choice, but the plugin publishes
 * the reply itself, past every ACL: a non-operator must not be able to aim
 * its (FORBIDDEN) reply into a device's topic tree. */
static void test_control_non_operator_response_topic_confined(void)
{
	static const char *const aims[] = { "fleet/jv-victim/jobs/notify", "fleet/jv-victim/shadow/update/delta", NULL };
	const char *victim = "jv-victim";
	struct fm_client *v = device_ready(victim);
	struct fm_client *x = fm_control_connect(g_broker.port, "intruder");
	const char *req = "{\"commands\":[{\"command\":\"listJobs\",\"limit\":1}]}";
	char filter[128];
	struct fm_msg *m;
	cJSON *r;
	int i, rc;

	CU_ASSERT_FATAL(v != NULL && x != NULL);
	fm_client_drain(v);
	for(i = 0; aims[i]; i++){
		rc = fm_client_publish_request(x, FM_CONTROL_TOPIC, req, strlen(req), aims[i], "i1", 2, NULL);
		FM_ASSERT_EQ(rc, MOSQ_ERR_SUCCESS);
	}
	fm_sleep_ms(FM_QUIET_MS);
	fm_topic(filter, sizeof(filter), victim, "#");
	while((m = fm_client_wait_message(v, filter, 0)) != NULL){
		/* the victim's own presence may come late from a slow (valgrind) broker */
		size_t tl = strlen(m->topic);
		if(!(tl > 9 && !strcmp(m->topic + tl - 9, "/presence"))){
			FM_ASSERT(false, "a non-operator's control reply reached %s: %.200s", m->topic, (const char *)m->payload);
		}
		fm_msg_free(m);
	}
	/* Its own response topic still gets the FORBIDDEN answer. */
	r = fm_control_command(x, "{\"command\":\"listJobs\"}", FM_TIMEOUT_MS);
	FM_ASSERT_STR_EQ(jstr(r, "code"), "FORBIDDEN");
	cJSON_Delete(r);
	fm_client_destroy(v);
	fm_client_destroy(x);
}

static void test_create_job_invalid_rejected(void)
{
	struct fm_client *ops = ops_connect();
	const char *tgt = "\"targets\":{\"devices\":[\"jv-dev\"]}";

	CU_ASSERT_FATAL(ops != NULL);
	/* no type */
	expect_error(ops, "BAD_REQUEST", "'type'",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"document\":{\"set\":{\"a\":1}},%s}", tgt);
	/* unknown type */
	expect_error(ops, "BAD_REQUEST", "type",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"frobnicate\",\"document\":{},%s}", tgt);
	/* no targets */
	expect_error(ops, "BAD_REQUEST", "'targets'",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":{\"set\":{\"a\":1}}}");
	/* targets selecting nothing */
	expect_error(ops, "BAD_REQUEST", "targets",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"targets\":{}}");
	/* no document */
	expect_error(ops, "BAD_REQUEST", "'document'",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",%s}", tgt);
	/* document that does not fit the type */
	expect_error(ops, "BAD_REQUEST", "artifact",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"update\",\"document\":{\"version\":\"2.0\"},%s}", tgt);
	expect_error(ops, "BAD_REQUEST", "'set'",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":{\"keys\":[1]},%s}", tgt);
	expect_error(ops, "BAD_REQUEST", "document",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":[1,2],%s}", tgt);
	/* bad policies */
	expect_error(ops, "BAD_REQUEST", "timeoutMs",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"timeoutMs\":-5,%s}", tgt);
	expect_error(ops, "BAD_REQUEST", "abort",
			"{\"command\":\"createJob\",\"jobId\":\"job-inv\",\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},"
			"\"abort\":[{\"failureType\":\"EXPLODED\",\"thresholdPercent\":10}],%s}", tgt);
	expect_error(ops, "BAD_REQUEST", "jobId",
			"{\"command\":\"createJob\",\"jobId\":\"bad/id\",\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},%s}", tgt);
	/* none of them created anything */
	expect_error(ops, "NOT_FOUND", NULL, "{\"command\":\"describeJob\",\"jobId\":\"job-inv\"}");
	fm_client_destroy(ops);
}

static void test_create_job_idempotent(void)
{
	const char *def = "\"type\":\"config\",\"description\":\"idem\",\"document\":{\"set\":{\"a\":1}},"
			"\"targets\":{\"devices\":[\"ji-dev\"]}";
	struct fm_client *ops = ops_connect();
	cJSON *r;

	CU_ASSERT_FATAL(ops != NULL);
	create_job(ops, "job-idem", def);
	/* Same id, same definition (another correlationData): a no-op. */
	r = cmd_ok(ops, "{\"command\":\"createJob\",\"jobId\":\"job-idem\",\"correlationData\":\"again\",%s}", def);
	FM_ASSERT(cJSON_IsFalse(fm_json_path(r, "data.created")), "repeat create: %s", show(r));
	FM_ASSERT_STR_EQ(jstr(r, "data.jobId"), "job-idem");
	FM_ASSERT_STR_EQ(jstr(r, "correlationData"), "again");
	cJSON_Delete(r);
	/* Same id, other definition: CONFLICT, the job is unchanged. */
	expect_error(ops, "CONFLICT", "job-idem",
			"{\"command\":\"createJob\",\"jobId\":\"job-idem\",\"type\":\"config\",\"description\":\"idem\","
			"\"document\":{\"set\":{\"a\":2}},\"targets\":{\"devices\":[\"ji-dev\"]}}");
	r = describe_job(ops, "job-idem");
	FM_ASSERT(jnum(r, "data.job.document.set.a", 0) == 1, "document changed: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.counts.total", -1) == 1, "counts: %s", show(r));
	cJSON_Delete(r);
	r = cmd_ok(ops, "{\"command\":\"listJobExecutions\",\"jobId\":\"job-idem\"}");
	FM_ASSERT(jnum(r, "data.count", -1) == 1, "executions: %s", show(r));
	cJSON_Delete(r);
	fm_client_destroy(ops);
}

/* ---- 9. duplicate and stale device reports --------------------------------- */

static int audit_count(struct fm_client *ops, const char *target, const char *actor, const char *action)
{
	cJSON *r = cmd_ok(ops, "{\"command\":\"getAuditLog\",\"target\":\"%s\",\"limit\":1000}", target);
	const cJSON *it;
	int n = 0;
	if(!r) return -1;
	cJSON_ArrayForEach(it, fm_json_path(r, "data.entries")){
		if((!actor || !strcmp(jstr(it, "actor"), actor)) && !strcmp(jstr(it, "action"), action)) n++;
	}
	cJSON_Delete(r);
	return n;
}

static void test_jobs_duplicate_report_idempotent(void)
{
	const char *dev = "jd-dev", *job = "job-dup";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	struct fm_job_update_result u;
	Fleetmq__V1__JobNotify *n;
	uint64_t v_start, v_prog, v_done;
	cJSON *r;
	int rc, i;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},\"targets\":{\"devices\":[\"jd-dev\"]}");
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	v_start = next_get_expect(c, dev, job, 1);
	v_prog = report_ok(c, dev, job, ST_IN_PROGRESS, v_start, NULL);
	v_done = report_ok(c, dev, job, ST_SUCCEEDED, v_prog, NULL);
	CU_ASSERT_FATAL(v_done != 0);

	/* The same report again (a lost ack): same answer, flagged duplicate. */
	for(i = 0; i < 2; i++){
		uint64_t ev = i == 0 ? v_prog : 0;   /* with the version seen, then unconditional */
		rc = fm_job_update(c, dev, job, ST_SUCCEEDED, ev, -1, "dup", &u, FM_TIMEOUT_MS);
		FM_ASSERT(rc == 1, "duplicate SUCCEEDED (expected version %llu): %s %s", (unsigned long long)ev,
				rc == 0 ? fm_error_code_name(u.rejected->code) : "no reply", rc == 0 ? u.rejected->reason : "");
		if(rc == 1){
			FM_ASSERT(u.accepted->duplicate, "repeat not flagged duplicate");
			FM_ASSERT_EQ(u.accepted->version, v_done);
			FM_ASSERT(u.accepted->status == ST_SUCCEEDED, "status %s", fm_exec_status_name(u.accepted->status));
			FM_ASSERT_STR_EQ(u.accepted->client_token, "dup");
		}
		fm_job_update_result_clear(&u);
	}
	/* Stale versions conflict, naming the current version. */
	FM_ASSERT_EQ(report_rejected(c, dev, job, ST_IN_PROGRESS, v_start,
			FLEETMQ__V1__ERROR_CODE__ERROR_CODE_VERSION_CONFLICT, NULL, 0), v_done);
	FM_ASSERT_EQ(report_rejected(c, dev, job, ST_FAILED, v_prog,
			FLEETMQ__V1__ERROR_CODE__ERROR_CODE_VERSION_CONFLICT, NULL, 0), v_done);

	/* Nothing changed: one execution, SUCCEEDED once, nothing new queued. */
	r = cmd_ok(ops, "{\"command\":\"listJobExecutions\",\"deviceId\":\"%s\"}", dev);
	FM_ASSERT(jnum(r, "data.count", -1) == 1, "executions of %s: %s", dev, show(r));
	FM_ASSERT_STR_EQ(jstr(cJSON_GetArrayItem(fm_json_path(r, "data.executions"), 0), "status"), "SUCCEEDED");
	FM_ASSERT(jnum(cJSON_GetArrayItem(fm_json_path(r, "data.executions"), 0), "version", 0) == (double)v_done,
			"version: %s", show(r));
	cJSON_Delete(r);
	r = describe_job(ops, job);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "COMPLETED");
	FM_ASSERT(jnum(r, "data.job.counts.succeeded", -1) == 1 && jnum(r, "data.job.counts.total", -1) == 1,
			"counts: %s", show(r));
	cJSON_Delete(r);
	FM_ASSERT_EQ(audit_count(ops, job, dev, "execution.SUCCEEDED"), 1);
	fm_sleep_ms(3 * JOBS_CHECK_INTERVAL_MS);
	FM_ASSERT(drain_notifies_listing(c, dev, job) == 0, "finished job offered again");
	next_get_empty(c, dev);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 10. kill -9 ------------------------------------------------------------- */

static void test_jobs_kill9_loses_and_duplicates_nothing(void)
{
	const char *dev = "jk9-dev", *job = "job-kill9";
	const char *def = "\"type\":\"config\",\"document\":{\"set\":{\"k\":9}},\"targets\":{\"devices\":[\"jk9-dev\"]}";
	struct fm_client *c, *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	uint32_t pending = 99;
	uint64_t v;
	cJSON *r;
	int k, before;

	CU_ASSERT_FATAL(ops != NULL);
	/* Acknowledged create, then kill -9 at once: before fan-out/release. */
	create_job(ops, job, def);
	FM_ASSERT(fm_broker_kill9(&g_broker) == 128 + 9, "broker did not die of SIGKILL");
	fm_client_destroy(ops);
	FM_ASSERT_EQ_FATAL(fm_broker_restart(&g_broker), 0);

	c = device_online(dev, &pending);
	CU_ASSERT_FATAL(c != NULL);
	FM_ASSERT(pending <= 1, "pending_jobs %u after restart", pending);
	n = expect_queued_notify(c, dev, job, 5000);
	if(n){
		int copies = 0;
		for(size_t i = 0; i < n->n_queued; i++) copies += !strcmp(n->queued[i]->job_id, job);
		FM_ASSERT_EQ(copies, 1);
		FM_ASSERT_EQ(n->n_queued, 1);
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	ops = ops_connect();
	CU_ASSERT_FATAL(ops != NULL);
	/* An operator unsure whether its create made it simply repeats it. */
	r = cmd_ok(ops, "{\"command\":\"createJob\",\"jobId\":\"%s\",%s}", job, def);
	FM_ASSERT(cJSON_IsFalse(fm_json_path(r, "data.created")), "repeat create after restart: %s", show(r));
	cJSON_Delete(r);
	r = cmd_ok(ops, "{\"command\":\"listJobExecutions\",\"jobId\":\"%s\"}", job);
	FM_ASSERT(jnum(r, "data.count", -1) == 1, "executions after restart: %s", show(r));
	cJSON_Delete(r);
	r = describe_job(ops, job);
	FM_ASSERT(jnum(r, "data.job.counts.total", -1) == 1, "counts after restart: %s", show(r));
	FM_ASSERT_STR_EQ(jstr(r, "data.job.createdBy"), "ops");
	cJSON_Delete(r);

	/* Run it; kill -9 right after SUCCEEDED was accepted. */
	v = run_to_success(c, dev, job);
	CU_ASSERT_FATAL(v != 0);
	before = audit_count(ops, job, dev, "execution.SUCCEEDED");
	FM_ASSERT_EQ(before, 1);
	fm_client_destroy(ops);
	FM_ASSERT(fm_broker_kill9(&g_broker) == 128 + 9, "broker did not die of SIGKILL");
	FM_ASSERT(fm_client_wait_disconnect(c, FM_TIMEOUT_MS) >= 0, "device still connected to a dead broker");
	fm_client_destroy(c);
	FM_ASSERT_EQ_FATAL(fm_broker_restart(&g_broker), 0);

	ops = ops_connect();
	CU_ASSERT_FATAL(ops != NULL);
	r = describe_exec(ops, job, dev);
	FM_ASSERT_STR_EQ(jstr(r, "data.execution.status"), "SUCCEEDED");
	FM_ASSERT(jnum(r, "data.execution.version", 0) == (double)v, "version after restart: %s", show(r));
	FM_ASSERT(jnum(r, "data.execution.attempt", 0) == 1, "attempt after restart: %s", show(r));
	cJSON_Delete(r);
	r = describe_job(ops, job);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.status"), "COMPLETED");
	FM_ASSERT(jnum(r, "data.job.counts.succeeded", -1) == 1 && jnum(r, "data.job.counts.total", -1) == 1,
			"counts after restart: %s", show(r));
	cJSON_Delete(r);

	r = cmd_ok(ops, "{\"command\":\"createJob\",\"jobId\":\"%s\",%s}", job, def);
	FM_ASSERT(cJSON_IsFalse(fm_json_path(r, "data.created")), "repeat create of a finished job: %s", show(r));
	FM_ASSERT_STR_EQ(jstr(r, "data.status"), "COMPLETED");
	cJSON_Delete(r);

	c = device_online(dev, &pending);
	CU_ASSERT_FATAL(c != NULL);
	FM_ASSERT_EQ(pending, 0);
	n = fm_wait_job_notify(c, dev, NULL, NULL, FM_TIMEOUT_MS);
	FM_ASSERT(n != NULL, "no JobNotify after hello");
	if(n){
		k = fm_job_summary_index(n->queued, n->n_queued, job);
		FM_ASSERT(k < 0 && n->n_in_progress == 0, "finished job offered again after restart");
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	fm_sleep_ms(3 * JOBS_CHECK_INTERVAL_MS);
	FM_ASSERT(drain_notifies_listing(c, dev, job) == 0, "finished job offered again after restart");
	next_get_empty(c, dev);
	r = cmd_ok(ops, "{\"command\":\"listJobExecutions\",\"deviceId\":\"%s\"}", dev);
	FM_ASSERT(jnum(r, "data.count", -1) == 1, "executions of %s: %s", dev, show(r));
	cJSON_Delete(r);
	FM_ASSERT_EQ(audit_count(ops, job, dev, "execution.SUCCEEDED"), 1);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 11. protobuf create --------------------------------------------------- */

static void test_jobs_protobuf_create(void)
{
	const char *dev = "jp-dev", *job = "job-pb";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__CreateJobRequest req = FLEETMQ__V1__CREATE_JOB_REQUEST__INIT;
	char *targets[1] = { (char *)"jp-dev" };
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	Fleetmq__V1__JobNotify *n;
	const cJSON *first;
	uint8_t *buf;
	size_t len;
	cJSON *r;
	int round;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	req.job_id = (char *)job;
	req.type = FLEETMQ__V1__JOB_TYPE__JOB_TYPE_FEATURE;
	req.document_json = (char *)"{\"enable\":[\"telemetry-v2\"]}";
	req.n_target_devices = 1;
	req.target_devices = targets;
	req.options_json = (char *)"{\"timeoutMs\":60000,\"retry\":{\"failed\":2}}";
	req.description = (char *)"pb create";
	req.correlation = (char *)"pb-corr";
	len = fleetmq__v1__create_job_request__get_packed_size(&req);
	buf = malloc(len);
	CU_ASSERT_FATAL(buf != NULL);
	fleetmq__v1__create_job_request__pack(&req, buf);
	for(round = 0; round < 2; round++){   /* the second time it is a no-op */
		r = fm_control_request_raw(ops, FM_CONTROL_CREATE_PB_TOPIC, buf, len, FM_TIMEOUT_MS);
		FM_ASSERT(r != NULL, "no response to CreateJobRequest");
		first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
		FM_ASSERT(first && !cJSON_GetObjectItemCaseSensitive(first, "error"), "protobuf create failed: %s", show(r));
		FM_ASSERT_STR_EQ(jstr(first, "command"), "createJob");
		FM_ASSERT_STR_EQ(jstr(first, "correlationData"), "pb-corr");
		FM_ASSERT_STR_EQ(jstr(first, "data.jobId"), job);
		FM_ASSERT(round == 0 ? jtrue(first, "data.created") : cJSON_IsFalse(fm_json_path(first, "data.created")),
				"round %d: %s", round, show(r));
		cJSON_Delete(r);
	}
	free(buf);

	r = describe_job(ops, job);
	FM_ASSERT_STR_EQ(jstr(r, "data.job.type"), "feature");
	FM_ASSERT_STR_EQ(jstr(r, "data.job.createdBy"), "ops");
	FM_ASSERT_STR_EQ(jstr(r, "data.job.description"), "pb create");
	FM_ASSERT(jnum(r, "data.job.spec.timeoutMs", 0) == 60000, "spec: %s", show(r));
	FM_ASSERT(jnum(r, "data.job.spec.retry.failed", 0) == 2, "spec: %s", show(r));
	{
		const char *t0 = cJSON_GetStringValue(cJSON_GetArrayItem(fm_json_path(r, "data.job.targets.devices"), 0));
		FM_ASSERT(t0 && !strcmp(t0, dev), "targets: %s", show(r));
	}
	cJSON_Delete(r);
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n){
		int k = fm_job_summary_index(n->queued, n->n_queued, job);
		FM_ASSERT_EQ(n->queued[k]->type, FLEETMQ__V1__JOB_TYPE__JOB_TYPE_FEATURE);
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}
	{
		Fleetmq__V1__JobNextGetAccepted *a = fm_job_next_get(c, dev, "pb-next", FM_TIMEOUT_MS);
		FM_ASSERT(a && a->has_execution && a->execution && !strcmp(a->execution->job_id, job),
				"next/get does not return %s", job);
		if(a && a->execution){
			FM_ASSERT(fm_json_has(a->execution->document_json, "enable"), "document %s",
					a->execution->document_json);
			FM_ASSERT_EQ(a->execution->timeout_ms, 60000);
		}
		if(a) fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
	}

	/* Not a CreateJobRequest: MALFORMED. */
	r = fm_control_request_raw(ops, FM_CONTROL_CREATE_PB_TOPIC, garbage, sizeof(garbage), FM_TIMEOUT_MS);
	first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "responses"), 0);
	FM_ASSERT_STR_EQ(jstr(first, "code"), "MALFORMED");
	cJSON_Delete(r);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

/* ---- 12. audit log ------------------------------------------------------------ */

static void test_jobs_audit_log(void)
{
	const char *dev = "jau-dev", *job = "job-audit";
	struct fm_client *c = device_ready(dev), *ops = ops_connect();
	Fleetmq__V1__JobNotify *n;
	const cJSON *it;
	bool created = false, in_progress = false, succeeded = false;
	uint64_t t0 = fm_wall_ms();
	cJSON *r;

	CU_ASSERT_FATAL(c != NULL && ops != NULL);
	create_job(ops, job, "\"type\":\"config\",\"document\":{\"set\":{\"a\":1}},\"targets\":{\"devices\":[\"jau-dev\"]}");
	n = expect_queued_notify(c, dev, job, FM_TIMEOUT_MS);
	if(n) fleetmq__v1__job_notify__free_unpacked(n, NULL);
	FM_ASSERT(run_to_success(c, dev, job) != 0, "job did not run");

	r = cmd_ok(ops, "{\"command\":\"getAuditLog\",\"target\":\"%s\",\"limit\":100}", job);
	cJSON_ArrayForEach(it, fm_json_path(r, "data.entries")){
		const char *actor = jstr(it, "actor"), *action = jstr(it, "action");
		double ts = jnum(it, "timestampMs", 0);
		FM_ASSERT_STR_EQ(jstr(it, "target"), job);
		FM_ASSERT(ts >= (double)t0 - 2000 && ts <= (double)fm_wall_ms() + 2000, "timestamp %.0f", ts);
		if(!strcmp(action, "createJob")){
			created = true;
			FM_ASSERT_STR_EQ(actor, "ops");
			FM_ASSERT_STR_EQ(jstr(it, "detail.result"), "ok");
		}else if(!strcmp(action, "execution.IN_PROGRESS")){
			in_progress = true;
			FM_ASSERT_STR_EQ(actor, dev);
			FM_ASSERT_STR_EQ(jstr(it, "detail.deviceId"), dev);
			FM_ASSERT_STR_EQ(jstr(it, "detail.from"), "QUEUED");
		}else if(!strcmp(action, "execution.SUCCEEDED")){
			succeeded = true;
			FM_ASSERT_STR_EQ(actor, dev);
			FM_ASSERT_STR_EQ(jstr(it, "detail.deviceId"), dev);
			FM_ASSERT_STR_EQ(jstr(it, "detail.from"), "IN_PROGRESS");
			FM_ASSERT_STR_EQ(jstr(it, "detail.to"), "SUCCEEDED");
		}
	}
	FM_ASSERT(created, "no createJob by ops in the audit log: %s", show(r));
	FM_ASSERT(in_progress, "no execution.IN_PROGRESS by %s in the audit log: %s", dev, show(r));
	FM_ASSERT(succeeded, "no execution.SUCCEEDED by %s in the audit log: %s", dev, show(r));
	cJSON_Delete(r);
	/* The actor filter finds the device's own entries. */
	FM_ASSERT_EQ(audit_count(ops, job, dev, "execution.SUCCEEDED"), 1);
	r = cmd_ok(ops, "{\"command\":\"getAuditLog\",\"actor\":\"%s\",\"limit\":100}", dev);
	cJSON_ArrayForEach(it, fm_json_path(r, "data.entries")){
		FM_ASSERT_STR_EQ(jstr(it, "actor"), dev);
	}
	FM_ASSERT(cJSON_GetArraySize(fm_json_path(r, "data.entries")) >= 2, "actor filter: %s", show(r));
	cJSON_Delete(r);
	fm_client_destroy(c);
	fm_client_destroy(ops);
}

int main(void)
{
	static const struct fm_test tests[] = {
		{ "test_jobs_fanout_online_and_offline_device", test_jobs_fanout_online_and_offline_device },
		{ "test_jobs_in_order_delivery", test_jobs_in_order_delivery },
		{ "test_jobs_cancel_queued_execution", test_jobs_cancel_queued_execution },
		{ "test_jobs_cancel_in_progress_needs_force", test_jobs_cancel_in_progress_needs_force },
		{ "test_jobs_in_progress_timeout", test_jobs_in_progress_timeout },
		{ "test_jobs_retry_after_failure", test_jobs_retry_after_failure },
		{ "test_jobs_abort_after_failures_stops_rollout", test_jobs_abort_after_failures_stops_rollout },
		{ "test_jobs_canary_gates_rollout", test_jobs_canary_gates_rollout },
		{ "test_jobs_failing_canary_aborts", test_jobs_failing_canary_aborts },
		{ "test_control_non_operator_forbidden", test_control_non_operator_forbidden },
		{ "test_control_malformed_and_unknown_command", test_control_malformed_and_unknown_command },
		{ "test_control_default_response_topic", test_control_default_response_topic },
		{ "test_control_non_operator_response_topic_confined", test_control_non_operator_response_topic_confined },
		{ "test_create_job_invalid_rejected", test_create_job_invalid_rejected },
		{ "test_create_job_idempotent", test_create_job_idempotent },
		{ "test_jobs_duplicate_report_idempotent", test_jobs_duplicate_report_idempotent },
		{ "test_jobs_kill9_loses_and_duplicates_nothing", test_jobs_kill9_loses_and_duplicates_nothing },
		{ "test_jobs_protobuf_create", test_jobs_protobuf_create },
		{ "test_jobs_audit_log", test_jobs_audit_log },
		{ NULL, NULL },
	};
	return fm_cunit_main("e2e_jobs", suite_init, suite_cleanup, tests);
}
