/*
 * agent.c - fleetmq-agent: the device daemon. Glue between libfleetmq-client
 * (MQTT, shadow, jobs, durable reports) and the executors (update.c,
 * settings.c), plus telemetry and main().
 *
 * Threads:
 *   main     signals (sigtimedwait) and the telemetry timer;
 *   library  its event thread runs our callbacks: job handlers only queue
 *            work; shadow deltas (desired config / features /
 *            update_policy) are applied right there (they are quick and
 *            on_delta must say whether they were applied);
 *   worker   runs the queued jobs one at a time (downloads and installs
 *            block it, nothing else) and re-evaluates a parked update
 *            (deferred by policy, awaiting approval) when the policy
 *            changes or every AGENT_PARK_POLL_MS.
 * One mutex (struct agent.mu) guards the queue and flags; another
 * (files_mu) serialises the config and feature files between the worker
 * and the event thread.
 *
 * Startup: a persisted update (update-state.json) is declared to the
 * library as the execution in progress and resumed first by the worker
 * (crash recovery: rollback, redo, resume download - see update.c). The
 * library never hands out an execution whose final report is in its
 * outbox; the agent additionally remembers the executions it finished in
 * this process, so a late duplicate delivery is ignored.
 *
 * Local approval for the ask policy: write "approve <job-id>" (or
 * "reject <job-id>", "*" for any) into <state_dir>/update-approval.
 * Runtime policy from desired.update_policy is persisted in
 * <state_dir>/policy.json (it must survive restarts like the shadow version).
 *
 * Must never: block the library's event thread on a download or install,
 * report a final status before the effect is durable, or write to disk per
 * telemetry sample.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fleetmq_alloc.h"
#include "fleetmq_client.h"
#include "fleetmq_status.h"

#define AGENT_DEFAULT_CONFIG "/etc/fleetmq/agent.yaml"
#define AGENT_PARK_POLL_MS 500
#define AGENT_FINISHED_RING 32
#define AGENT_MAX_APP_METRICS 64
#define AGENT_ARTIFACT_RETRY_MS 1000
#define AGENT_POLICY_FILE "policy.json"

enum item_kind { ITEM_JOB, ITEM_RESUME };

struct item {
	enum item_kind kind;
	enum fleetmq_client_job_type type;
	char *job_id;
	char *doc;
	struct item *next;
};

struct agent {
	struct agent_config cfg;
	struct fleetmq_client *client;
	struct fleetmq_sig_keyring *keys;
	struct agent_ab_handler ab;
	struct agent_module_handler module;
	bool use_module;
	struct agent_update_env env;
	struct agent_settings settings;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct item *head, *tail;
	bool stop;
	int policy;                         /* effective update policy */
	bool policy_changed;
	char active_job[160];               /* the job the worker runs now */
	bool cancel_active;
	char *parked_job, *parked_doc;      /* an update parked IN_PROGRESS */
	char finished[AGENT_FINISHED_RING][160];
	size_t finished_next;
	char last_progress[200];            /* dedup of identical progress reports */

	pthread_mutex_t files_mu;
	cJSON *reported_config;             /* last config reported (for null deletions) */
	pthread_t worker;
	bool worker_started;
	struct agent_cpu_times cpu_prev;
};

static int g_log_level = 2;
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

static void agent_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void agent_log(int level, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	va_list ap;

	if(level > g_log_level) return;
	pthread_mutex_lock(&g_log_mu);
	fprintf(stderr, "fleetmq-agent: %s: ", names[level < 0 ? 0 : level > 3 ? 3 : level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&g_log_mu);
}

static void on_lib_log(enum fleetmq_client_log_level level, const char *message, void *ud)
{
	(void)ud;
	agent_log((int)level, "client: %s", message);
}

/* ================================================================
 * queue and bookkeeping (a->mu held unless noted)
 * ================================================================ */

static void item_free(struct item *it)
{
	if(!it) return;
	fm_free(it->job_id);
	fm_free(it->doc);
	fm_free(it);
}

static void enqueue(struct agent *a, enum item_kind kind, enum fleetmq_client_job_type type, const char *job_id,
		const char *doc)
{
	struct item *it = fm_calloc(1, sizeof(*it));

	if(!it) return;
	it->kind = kind;
	it->type = type;
	it->job_id = job_id ? fm_strdup(job_id) : NULL;
	it->doc = doc ? fm_strdup(doc) : NULL;
	pthread_mutex_lock(&a->mu);
	if(a->tail) a->tail->next = it;
	else a->head = it;
	a->tail = it;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->mu);
}

static bool finished_has_locked(struct agent *a, const char *job_id)
{
	size_t i;

	for(i = 0; i < AGENT_FINISHED_RING; i++){
		if(a->finished[i][0] && !strcmp(a->finished[i], job_id)) return true;
	}
	return false;
}

static void finished_add_locked(struct agent *a, const char *job_id)
{
	snprintf(a->finished[a->finished_next % AGENT_FINISHED_RING], sizeof(a->finished[0]), "%s", job_id);
	a->finished_next++;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ================================================================
 * shadow reports
 * ================================================================ */

static void report_json(struct agent *a, cJSON *patch)
{
	char *text = cJSON_PrintUnformatted(patch);
	int rc;

	if(!text) return;
	rc = fleetmq_client_shadow_report(a->client, text);
	if(rc) agent_log(1, "shadow report failed: %s", fleetmq_client_strerror(rc));
	cJSON_free(text);
}

static void report_software(struct agent *a)
{
	char ver[128];
	struct fleetmq_client_kv sw;
	cJSON *patch = cJSON_CreateObject(), *s;

	agent__update_current_version(&a->env, ver, sizeof(ver));
	s = cJSON_AddObjectToObject(patch, "software");
	cJSON_AddStringToObject(s, a->cfg.software_name, ver);
	report_json(a, patch);
	cJSON_Delete(patch);
	sw.key = a->cfg.software_name;
	sw.value = ver;
	fleetmq_client_set_software(a->client, &sw, 1);
}

/* files_mu held: report the config object, deleting keys that went away. */
static void report_config_locked(struct agent *a, const cJSON *cfg)
{
	cJSON *patch = cJSON_CreateObject(), *c, *it;

	c = cJSON_AddItemToObject(patch, "config", cJSON_Duplicate(cfg, 1)) ? cJSON_GetObjectItem(patch, "config") : NULL;
	if(c && a->reported_config){
		cJSON_ArrayForEach(it, a->reported_config){
			if(!cJSON_GetObjectItemCaseSensitive(cfg, it->string)) cJSON_AddNullToObject(c, it->string);
		}
	}
	if(c && cJSON_GetArraySize(c) > 0) report_json(a, patch);
	cJSON_Delete(patch);
	cJSON_Delete(a->reported_config);
	a->reported_config = cJSON_Duplicate(cfg, 1);
}

/* files_mu held: push the feature map into the library and the shadow. */
static void apply_features_locked(struct agent *a, const cJSON *map)
{
	cJSON *patch, *it;

	cJSON_ArrayForEach(it, map){
		if(cJSON_IsBool(it)) fleetmq_client_feature_set(a->client, it->string, cJSON_IsTrue(it));
	}
	if(cJSON_GetArraySize(map) == 0) return;
	patch = cJSON_CreateObject();
	cJSON_AddItemToObject(patch, "features", cJSON_Duplicate(map, 1));
	report_json(a, patch);
	cJSON_Delete(patch);
}

static void report_policy(struct agent *a, int policy)
{
	cJSON *patch = cJSON_CreateObject();

	cJSON_AddStringToObject(patch, "update_policy", agent__policy_name(policy));
	report_json(a, patch);
	cJSON_Delete(patch);
}

/* ================================================================
 * job reports
 * ================================================================ */

static void send_report(struct agent *a, const char *job_id, const struct agent_result *r, int percent)
{
	struct fleetmq_client_report rep = FLEETMQ_CLIENT_REPORT_INITIALIZER;
	struct fleetmq_client_kv kv[AGENT_MAX_DETAILS];
	size_t i;
	int rc;

	switch(r->outcome){
		case AGENT_OUT_IN_PROGRESS: rep.status = FLEETMQ_CLIENT_EXEC_IN_PROGRESS; break;
		case AGENT_OUT_SUCCEEDED: rep.status = FLEETMQ_CLIENT_EXEC_SUCCEEDED; break;
		case AGENT_OUT_FAILED: rep.status = FLEETMQ_CLIENT_EXEC_FAILED; break;
		case AGENT_OUT_REJECTED: rep.status = FLEETMQ_CLIENT_EXEC_REJECTED; break;
		default: return;
	}
	for(i = 0; i < r->n_details; i++){
		kv[i].key = r->keys[i];
		kv[i].value = r->values[i];
	}
	rep.progress_percent = percent;
	rep.step = r->step[0] ? r->step : NULL;
	rep.failure_type = r->failure_type[0] ? r->failure_type : NULL;
	rep.details = kv;
	rep.details_count = r->n_details;
	rc = fleetmq_client_job_report(a->client, job_id, &rep);
	if(rc) agent_log(rep.status == FLEETMQ_CLIENT_EXEC_IN_PROGRESS ? 2 : 0, "job %s: report %s failed: %s", job_id,
			agent__outcome_name(r->outcome), fleetmq_client_strerror(rc));
	else if(rep.status != FLEETMQ_CLIENT_EXEC_IN_PROGRESS){
		agent_log(2, "job %s: %s (step %s%s%s)", job_id, agent__outcome_name(r->outcome), r->step,
				agent__result_detail_get(r, "reason") ? ": " : "", agent__result_detail_get(r, "reason") ?: "");
	}
}

static void reporter_progress(void *ctx, const char *job_id, const struct agent_result *r, int percent)
{
	struct agent *a = ctx;
	char key[200];
	bool same;

	snprintf(key, sizeof(key), "%.120s/%s/%d", job_id, r->step, percent);
	pthread_mutex_lock(&a->mu);
	same = !strcmp(key, a->last_progress);
	if(!same) snprintf(a->last_progress, sizeof(a->last_progress), "%s", key);
	pthread_mutex_unlock(&a->mu);
	if(same) return;
	agent_log(3, "job %s: %s %d%%", job_id, r->step, percent);
	send_report(a, job_id, r, percent);
}

/* The update executor's final outcome: durable in the outbox before the
 * executor deletes its state. */
static void reporter_final(void *ctx, const char *job_id, const struct agent_result *r)
{
	send_report(ctx, job_id, r, r->outcome == AGENT_OUT_SUCCEEDED ? 100 : -1);
}

/* ================================================================
 * executor hooks
 * ================================================================ */

static int fetch_chunk(void *ctx, const char *artifact, uint64_t offset, uint8_t *buf, uint32_t len,
		uint32_t *got, uint64_t *total, char *err, size_t errlen)
{
	struct agent *a = ctx;
	int rc;

	rc = fleetmq_client_artifact_read(a->client, artifact, offset, len, buf, got, total, NULL,
			(int)a->cfg.update_read_timeout_ms);
	switch(rc){
		case FLEETMQ_CLIENT_OK:
			return 0;
		case FLEETMQ_CLIENT_ERR_DISCONNECTED:
			fleetmq_client_wait_connected(a->client, AGENT_ARTIFACT_RETRY_MS);
			/* fall through */
		case FLEETMQ_CLIENT_ERR_TIMEOUT:
		case FLEETMQ_CLIENT_ERR_STATE:
		case FLEETMQ_CLIENT_ERR_STOPPED:
		case FLEETMQ_CLIENT_ERR_UNAVAILABLE:
		case FLEETMQ_CLIENT_ERR_INTERNAL:
		case FLEETMQ_CLIENT_ERR_NOMEM:
			snprintf(err, errlen, "%s", fleetmq_client_strerror(rc));
			return 1;
		default:
			snprintf(err, errlen, "%s", fleetmq_client_strerror(rc));
			return -1;
	}
}

static bool hook_should_stop(void *ctx)
{
	struct agent *a = ctx;
	bool s;

	pthread_mutex_lock(&a->mu);
	s = a->stop;
	pthread_mutex_unlock(&a->mu);
	return s;
}

static bool hook_canceled(void *ctx, const char *job_id)
{
	struct agent *a = ctx;
	bool c;

	pthread_mutex_lock(&a->mu);
	c = a->cancel_active && !strcmp(a->active_job, job_id);
	pthread_mutex_unlock(&a->mu);
	return c;
}

/* ================================================================
 * worker
 * ================================================================ */

static void set_parked_locked(struct agent *a, const char *job_id, const char *doc)
{
	fm_free(a->parked_job);
	fm_free(a->parked_doc);
	a->parked_job = job_id ? fm_strdup(job_id) : NULL;
	a->parked_doc = doc ? fm_strdup(doc) : NULL;
}

/* The document of the persisted update (for a resumed parked job). */
static char *persisted_doc(struct agent *a)
{
	char path[4200], err[AGENT_ERR_BYTES];
	cJSON *o = NULL;
	char *text = NULL;

	snprintf(path, sizeof(path), "%s/" AGENT_UPDATE_STATE_FILE, a->cfg.state_dir);
	if(agent__read_json(path, &o, err, sizeof(err)) != 0) return NULL;
	text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(o, "document"));
	cJSON_Delete(o);
	return text;
}

/* After an update call: report, remember, park. */
static void update_done(struct agent *a, const char *job_id, const char *doc, struct agent_result *r)
{
	switch(r->outcome){
		case AGENT_OUT_IN_PROGRESS:
			pthread_mutex_lock(&a->mu);
			set_parked_locked(a, job_id, doc);
			pthread_mutex_unlock(&a->mu);
			return;
		case AGENT_OUT_SUCCEEDED:
		case AGENT_OUT_FAILED:
		case AGENT_OUT_REJECTED:
			/* the job report was made through reporter_final */
			report_software(a);
			if(r->outcome == AGENT_OUT_SUCCEEDED) fleetmq_client_resend_hello(a->client);
			break;
		case AGENT_OUT_CANCELED:
			agent_log(2, "job %s: canceled, update dropped", job_id);
			break;
		case AGENT_OUT_INTERRUPTED:
			agent_log(2, "job %s: interrupted in step %s; resumes at the next start", job_id, r->step);
			return;
		case AGENT_OUT_NONE:
			return;
	}
	pthread_mutex_lock(&a->mu);
	finished_add_locked(a, job_id);
	if(a->parked_job && !strcmp(a->parked_job, job_id)) set_parked_locked(a, NULL, NULL);
	pthread_mutex_unlock(&a->mu);
}

static void run_update(struct agent *a, const char *job_id, const char *doc)
{
	struct agent_result r;

	pthread_mutex_lock(&a->mu);
	a->env.policy = a->policy;
	pthread_mutex_unlock(&a->mu);
	agent__update_run(&a->env, job_id, doc, &r);
	update_done(a, job_id, doc, &r);
}

static void run_resume(struct agent *a)
{
	struct agent_result r;
	char *job_id = NULL, *doc;

	pthread_mutex_lock(&a->mu);
	a->env.policy = a->policy;
	pthread_mutex_unlock(&a->mu);
	agent__update_resume(&a->env, &job_id, &r);
	if(!job_id) return;
	agent_log(2, "resumed update job %s: %s (step %s)", job_id, agent__outcome_name(r.outcome), r.step);
	doc = r.outcome == AGENT_OUT_IN_PROGRESS ? persisted_doc(a) : NULL;
	update_done(a, job_id, doc, &r);
	cJSON_free(doc);
	fm_free(job_id);
}

static void run_config_job(struct agent *a, const char *job_id, const char *doc_text)
{
	struct agent_result r;
	cJSON *doc = cJSON_Parse(doc_text ? doc_text : ""), *applied = NULL;

	pthread_mutex_lock(&a->files_mu);
	agent__config_apply(&a->settings, doc, &applied, &r);
	if(applied) report_config_locked(a, applied);
	pthread_mutex_unlock(&a->files_mu);
	send_report(a, job_id, &r, r.outcome == AGENT_OUT_SUCCEEDED ? 100 : -1);
	cJSON_Delete(applied);
	cJSON_Delete(doc);
}

static void run_feature_job(struct agent *a, const char *job_id, const char *doc_text)
{
	struct agent_result r;
	cJSON *doc = cJSON_Parse(doc_text ? doc_text : ""), *applied = NULL;

	pthread_mutex_lock(&a->files_mu);
	agent__features_apply(&a->settings, doc, &applied, &r);
	if(applied) apply_features_locked(a, applied);
	pthread_mutex_unlock(&a->files_mu);
	send_report(a, job_id, &r, r.outcome == AGENT_OUT_SUCCEEDED ? 100 : -1);
	cJSON_Delete(applied);
	cJSON_Delete(doc);
}

static void process(struct agent *a, struct item *it)
{
	if(it->kind == ITEM_RESUME){
		run_resume(a);
		return;
	}
	switch(it->type){
		case FLEETMQ_CLIENT_JOB_UPDATE:
			run_update(a, it->job_id, it->doc);
			return;
		case FLEETMQ_CLIENT_JOB_CONFIG:
			run_config_job(a, it->job_id, it->doc);
			break;
		case FLEETMQ_CLIENT_JOB_FEATURE:
			run_feature_job(a, it->job_id, it->doc);
			break;
		default:
			break;
	}
	pthread_mutex_lock(&a->mu);
	finished_add_locked(a, it->job_id);
	pthread_mutex_unlock(&a->mu);
}

static void *worker_main(void *arg)
{
	struct agent *a = arg;
	uint64_t next_poll = 0;

	pthread_mutex_lock(&a->mu);
	while(!a->stop){
		struct item *it = a->head;
		bool rerun = false;

		if(it){
			a->head = it->next;
			if(!a->head) a->tail = NULL;
			if(it->job_id && it->kind == ITEM_JOB && finished_has_locked(a, it->job_id)){
				item_free(it);
				continue;
			}
			snprintf(a->active_job, sizeof(a->active_job), "%s", it->job_id ? it->job_id : "");
			a->cancel_active = false;
			pthread_mutex_unlock(&a->mu);
			process(a, it);
			item_free(it);
			pthread_mutex_lock(&a->mu);
			a->active_job[0] = '\0';
			continue;
		}
		if(a->parked_job){
			uint64_t now = mono_ms();
			if(a->policy_changed || now >= next_poll) rerun = true;
		}
		if(rerun){
			char *job = fm_strdup(a->parked_job), *doc = a->parked_doc ? fm_strdup(a->parked_doc) : NULL;
			a->policy_changed = false;
			snprintf(a->active_job, sizeof(a->active_job), "%s", job ? job : "");
			a->cancel_active = false;
			pthread_mutex_unlock(&a->mu);
			if(job) run_update(a, job, doc);
			fm_free(job);
			fm_free(doc);
			pthread_mutex_lock(&a->mu);
			a->active_job[0] = '\0';
			next_poll = mono_ms() + AGENT_PARK_POLL_MS;
			continue;
		}
		{
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += AGENT_PARK_POLL_MS * 1000000L;
			if(ts.tv_nsec >= 1000000000L){
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&a->cond, &a->mu, &ts);
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

/* ================================================================
 * library callbacks (event thread)
 * ================================================================ */

static int on_job(struct fleetmq_client *c, const struct fleetmq_client_job *job, void *ud)
{
	struct agent *a = ud;
	bool known;

	(void)c;
	pthread_mutex_lock(&a->mu);
	known = !strcmp(a->active_job, job->job_id) || (a->parked_job && !strcmp(a->parked_job, job->job_id))
			|| finished_has_locked(a, job->job_id);
	pthread_mutex_unlock(&a->mu);
	agent_log(2, "job %s (%s, attempt %u)%s", job->job_id, job->handler, job->attempt, known ? ": already being handled" : "");
	if(!known) enqueue(a, ITEM_JOB, job->type, job->job_id, job->document_json);
	return FLEETMQ_CLIENT_OK;
}

static void on_job_cancel(struct fleetmq_client *c, const char *job_id, uint32_t attempt,
		enum fleetmq_client_exec_status status, void *ud)
{
	struct agent *a = ud;
	enum agent_update_step step = UPD_NONE;
	char *persisted = NULL;

	(void)c;
	(void)attempt;
	agent_log(2, "job %s canceled by the broker (status %d)", job_id, (int)status);
	pthread_mutex_lock(&a->mu);
	if(!strcmp(a->active_job, job_id)) a->cancel_active = true;
	if(a->parked_job && !strcmp(a->parked_job, job_id)){
		set_parked_locked(a, NULL, NULL);
		finished_add_locked(a, job_id);
		/* parked = nothing installed yet: drop its persisted wait */
		if(agent__update_peek(a->cfg.state_dir, &persisted, &step) == 0 && !strcmp(persisted, job_id)
				&& step <= UPD_VERIFY){
			agent__update_forget(a->cfg.state_dir);
		}
		fm_free(persisted);
	}
	pthread_mutex_unlock(&a->mu);
}

static void on_report_result(struct fleetmq_client *c, const struct fleetmq_client_report_result *res, void *ud)
{
	(void)c;
	(void)ud;
	if(res->status != FLEETMQ_CLIENT_OK){
		agent_log(1, "job %s: the broker refused our report: %s (%s)", res->job_id,
				fleetmq_client_strerror(res->status), res->reason);
	}
}

static void on_connection(struct fleetmq_client *c, const struct fleetmq_client_connection_info *info, void *ud)
{
	(void)c;
	(void)ud;
	if(info->event == FLEETMQ_CLIENT_CONNECTED) agent_log(2, "connected (shadow version %" PRIu64 ")", info->shadow_version);
	else agent_log(1, "connection: %s; retry in %u ms", info->reason, info->retry_in_ms);
}

static int persist_policy(struct agent *a, int policy)
{
	char path[4200], err[AGENT_ERR_BYTES];
	cJSON *o = cJSON_CreateObject();
	int rc;

	snprintf(path, sizeof(path), "%s/" AGENT_POLICY_FILE, a->cfg.state_dir);
	cJSON_AddStringToObject(o, "update_policy", agent__policy_name(policy));
	rc = agent__write_json_atomic(path, o, err, sizeof(err));
	if(rc) agent_log(0, "%s", err);
	cJSON_Delete(o);
	return rc;
}

static int on_delta(struct fleetmq_client *c, const char *delta_json, uint64_t version, void *ud)
{
	struct agent *a = ud;
	cJSON *delta = cJSON_Parse(delta_json), *applied = NULL;
	const cJSON *v;
	struct agent_result r;
	int rc = 0;

	(void)c;
	if(!cJSON_IsObject(delta)){
		cJSON_Delete(delta);
		return 0;
	}
	agent_log(3, "delta v%" PRIu64 ": %s", version, delta_json);
	pthread_mutex_lock(&a->files_mu);
	v = cJSON_GetObjectItemCaseSensitive(delta, "config");
	if(cJSON_IsObject(v)){
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddItemToObject(doc, "set", cJSON_Duplicate(v, 1));
		agent__config_apply(&a->settings, doc, &applied, &r);
		cJSON_Delete(doc);
		if(applied){
			cJSON *patch = cJSON_CreateObject();
			report_config_locked(a, applied);
			cJSON_Delete(applied);
			applied = NULL;
			cJSON_AddNullToObject(patch, "config_error");
			report_json(a, patch);
			cJSON_Delete(patch);
		}else{
			/* not applicable as asked: say why instead of retrying forever */
			cJSON *patch = cJSON_CreateObject();
			cJSON_AddStringToObject(patch, "config_error", agent__result_detail_get(&r, "reason") ?: r.failure_type);
			report_json(a, patch);
			cJSON_Delete(patch);
			agent_log(1, "desired config not applied: %s", agent__result_detail_get(&r, "reason") ?: "");
		}
	}
	v = cJSON_GetObjectItemCaseSensitive(delta, "features");
	if(cJSON_IsObject(v)){
		cJSON *bools = cJSON_CreateObject(), *it;
		cJSON_ArrayForEach(it, v){
			if(cJSON_IsBool(it)) cJSON_AddItemToObject(bools, it->string, cJSON_Duplicate(it, 0));
		}
		agent__features_apply_map(&a->settings, bools, &applied, &r);
		if(applied){
			apply_features_locked(a, applied);
			cJSON_Delete(applied);
		}else if(r.outcome == AGENT_OUT_FAILED){
			rc = -1;   /* I/O: let the next hello resend it */
		}
		cJSON_Delete(bools);
	}
	pthread_mutex_unlock(&a->files_mu);
	v = cJSON_GetObjectItemCaseSensitive(delta, "update_policy");
	if(cJSON_IsString(v)){
		int p = agent__policy_parse(v->valuestring);
		if(p < 0){
			agent_log(1, "desired update_policy '%s' is not auto, critical-only or ask", v->valuestring);
		}else{
			if(persist_policy(a, p) != 0) rc = -1;
			pthread_mutex_lock(&a->mu);
			a->policy = p;
			a->policy_changed = true;
			pthread_cond_signal(&a->cond);
			pthread_mutex_unlock(&a->mu);
			report_policy(a, p);
			agent_log(2, "update policy is now %s", agent__policy_name(p));
		}
	}
	cJSON_Delete(delta);
	return rc;
}

/* ================================================================
 * telemetry (main thread)
 * ================================================================ */

static void publish_telemetry(struct agent *a)
{
	struct agent_sysinfo si;
	struct fleetmq_client_metric m[16 + AGENT_MAX_APP_METRICS];
	char names[AGENT_MAX_APP_METRICS][64];
	double values[AGENT_MAX_APP_METRICS];
	size_t n = 0, napp, i;
	int rc;

	agent__sysinfo_sample("/proc", a->cfg.state_dir, &a->cpu_prev, &si);
#define ADD(name_, v_) do{ if((v_) >= 0){ m[n].name = (name_); m[n].value = (v_); m[n].timestamp_ms = 0; n++; } }while(0)
	ADD("sys.cpu.percent", si.cpu_percent);
	ADD("sys.load1", si.load1);
	ADD("sys.mem.total_bytes", si.mem_total_bytes);
	ADD("sys.mem.available_bytes", si.mem_available_bytes);
	ADD("sys.mem.used_percent", si.mem_used_percent);
	ADD("sys.disk.total_bytes", si.disk_total_bytes);
	ADD("sys.disk.free_bytes", si.disk_free_bytes);
	ADD("sys.disk.used_percent", si.disk_used_percent);
	ADD("sys.uptime_s", si.uptime_s);
	ADD("sys.net.rx_bytes", si.net_rx_bytes);
	ADD("sys.net.tx_bytes", si.net_tx_bytes);
#undef ADD
	napp = agent__read_app_metrics(a->cfg.telemetry_app_metrics_file, names, values, AGENT_MAX_APP_METRICS);
	for(i = 0; i < napp; i++){
		m[n].name = names[i];
		m[n].value = values[i];
		m[n].timestamp_ms = 0;
		n++;
	}
	rc = fleetmq_client_telemetry_publish(a->client, m, n);
	if(rc) agent_log(3, "telemetry: %s", fleetmq_client_strerror(rc));
}

/* ================================================================
 * startup / shutdown
 * ================================================================ */

static int load_policy(struct agent *a)
{
	char path[4200], err[AGENT_ERR_BYTES];
	cJSON *o = NULL;
	int p = (int)a->cfg.update_policy;

	snprintf(path, sizeof(path), "%s/" AGENT_POLICY_FILE, a->cfg.state_dir);
	if(agent__read_json(path, &o, err, sizeof(err)) == 0){
		int q = agent__policy_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "update_policy")));
		if(q >= 0) p = q;
	}
	cJSON_Delete(o);
	return p;
}

static int setup(struct agent *a, char *err, size_t errlen)
{
	struct fleetmq_client_options o = FLEETMQ_CLIENT_OPTIONS_INITIALIZER;
	struct fleetmq_client_kv sw;
	char ver[128], msg[AGENT_ERR_BYTES];
	size_t i;
	int rc;

	if(agent__mkdir_p(a->cfg.state_dir, 0700) != 0){
		snprintf(err, errlen, "%s: cannot create: %s", a->cfg.state_dir, strerror(errno));
		return -1;
	}
	if(fleetmq_sig_keyring_new(&a->keys) != FLEETMQ_SIG_OK) return -1;
	for(i = 0; i < a->cfg.update_public_keys.count; i++){
		if(fleetmq_sig_keyring_add_file(a->keys, a->cfg.update_public_keys.items[i], msg, sizeof(msg))){
			snprintf(err, errlen, "update.public_keys: %.400s", msg);
			return -1;
		}
	}
	if(fleetmq_sig_keyring_count(a->keys) == 0) agent_log(1, "update.public_keys is empty: every update job will be rejected");

	if(a->cfg.update_handler && a->cfg.update_handler[0]){
		if(agent__module_init(&a->module, a->cfg.update_handler, a->cfg.state_dir, a->cfg.update_health_check,
				(int)a->cfg.update_health_timeout_ms, (int)a->cfg.update_step_timeout_ms, err, errlen) != 0) return -1;
		a->use_module = true;
		a->env.handler.ops = &agent__module_ops;
		a->env.handler.ctx = &a->module;
		a->env.handler.reboots = a->cfg.update_handler_reboots;
	}else{
		if(agent__ab_init(&a->ab, a->cfg.update_slots_dir, a->cfg.update_health_check,
				(int)a->cfg.update_health_timeout_ms, err, errlen) != 0) return -1;
		a->env.handler.ops = &agent__ab_ops;
		a->env.handler.ctx = &a->ab;
		a->env.handler.reboots = false;
	}
	a->policy = load_policy(a);
	a->env.state_dir = a->cfg.state_dir;
	a->env.device_type = a->cfg.device_type;
	a->env.hw_revision = a->cfg.device_hw_revision ? a->cfg.device_hw_revision : "";
	a->env.fallback_version = a->cfg.software_version;
	a->env.keys = a->keys;
	a->env.fetcher.read = fetch_chunk;
	a->env.fetcher.ctx = a;
	a->env.reporter.progress = reporter_progress;
	a->env.reporter.final = reporter_final;
	a->env.reporter.ctx = a;
	a->env.policy = a->policy;
	a->env.ask_deadline_ms = (uint64_t)a->cfg.update_ask_deadline_s * 1000u;
	a->env.on_deadline = a->cfg.update_on_deadline;
	a->env.chunk_bytes = (uint32_t)a->cfg.update_chunk_bytes;
	a->env.persist_every_chunks = (uint32_t)a->cfg.update_persist_every_chunks;
	a->env.retry_pause_ms = AGENT_ARTIFACT_RETRY_MS;
	a->env.should_stop = hook_should_stop;
	a->env.canceled = hook_canceled;
	a->env.hook_ctx = a;

	a->settings.config_file = a->cfg.config_file;
	a->settings.validate_cmd = a->cfg.config_validate_cmd;
	a->settings.reload_cmd = a->cfg.config_reload_cmd;
	a->settings.cmd_timeout_ms = (int)a->cfg.config_cmd_timeout_ms;
	a->settings.features_file = a->cfg.features_file;

	agent__update_current_version(&a->env, ver, sizeof(ver));
	sw.key = a->cfg.software_name;
	sw.value = ver;
	o.host = a->cfg.broker_host;
	o.port = (int)a->cfg.broker_port;
	o.device_id = a->cfg.device_id;
	o.password = a->cfg.broker_password;
	o.tls = a->cfg.tls_enabled;
	o.tls_ca_file = a->cfg.tls_ca_file;
	o.tls_cert_file = a->cfg.tls_cert_file;
	o.tls_key_file = a->cfg.tls_key_file;
	o.tls_insecure = a->cfg.tls_insecure;
	o.keepalive_s = (int)a->cfg.broker_keepalive_s;
	o.reconnect_min_ms = (int)a->cfg.broker_reconnect_min_ms;
	o.reconnect_max_ms = (int)a->cfg.broker_reconnect_max_ms;
	o.topic_prefix = a->cfg.broker_topic_prefix;
	o.device_type = a->cfg.device_type;
	o.hw_revision = a->cfg.device_hw_revision;
	o.agent_version = AGENT_VERSION;
	o.software = &sw;
	o.software_count = 1;
	o.state_dir = a->cfg.state_dir;
	o.on_connection = on_connection;
	o.on_delta = on_delta;
	o.on_job_cancel = on_job_cancel;
	o.on_job_report_result = on_report_result;
	o.on_log = on_lib_log;
	o.log_level = (enum fleetmq_client_log_level)a->cfg.log_level;
	o.userdata = a;
	rc = fleetmq_client_new(&a->client, &o);
	if(rc){
		snprintf(err, errlen, "cannot create the MQTT client: %s", fleetmq_client_strerror(rc));
		return -1;
	}
	if(fleetmq_client_job_handler_add(a->client, "update", on_job, a)
			|| fleetmq_client_job_handler_add(a->client, "config", on_job, a)
			|| fleetmq_client_job_handler_add(a->client, "feature", on_job, a)){
		snprintf(err, errlen, "cannot register job handlers");
		return -1;
	}
	return 0;
}

/* Reported state at startup, queued until the first Hello is accepted. */
static void initial_reports(struct agent *a)
{
	char err[AGENT_ERR_BYTES];
	cJSON *cfg, *features;

	report_software(a);
	report_policy(a, a->policy);
	pthread_mutex_lock(&a->files_mu);
	cfg = agent__config_read(&a->settings, err, sizeof(err));
	if(cfg){
		report_config_locked(a, cfg);
		cJSON_Delete(cfg);
	}else{
		agent_log(1, "%s", err);
	}
	features = agent__features_read(&a->settings, err, sizeof(err));
	if(features){
		apply_features_locked(a, features);
		cJSON_Delete(features);
	}else{
		agent_log(1, "%s", err);
	}
	pthread_mutex_unlock(&a->files_mu);
}

static void teardown(struct agent *a)
{
	struct item *it;

	if(a->worker_started){
		pthread_mutex_lock(&a->mu);
		a->stop = true;
		pthread_cond_broadcast(&a->cond);
		pthread_mutex_unlock(&a->mu);
		pthread_join(a->worker, NULL);
	}
	fleetmq_client_destroy(a->client);
	while((it = a->head) != NULL){
		a->head = it->next;
		item_free(it);
	}
	set_parked_locked(a, NULL, NULL);
	cJSON_Delete(a->reported_config);
	if(a->use_module) agent__module_clear(&a->module);
	else agent__ab_clear(&a->ab);
	fleetmq_sig_keyring_free(a->keys);
	agent__config_free(&a->cfg);
	pthread_mutex_destroy(&a->mu);
	pthread_mutex_destroy(&a->files_mu);
	pthread_cond_destroy(&a->cond);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fleetmq-agent [--config FILE] [--print-config] [--help] [--version]\n"
		"\n"
		"The fleetmq device agent: connects the device to its fleetmq broker, runs\n"
		"update, config and feature jobs, applies desired state and sends telemetry.\n"
		"\n"
		"  -c, --config FILE   YAML configuration (default " AGENT_DEFAULT_CONFIG ")\n"
		"  -p, --print-config  print the effective configuration (all keys, with help) and exit\n"
		"  -h, --help          this text\n"
		"  -V, --version       print the agent version\n"
		"\n"
		"Approve an update held by the 'ask' policy:\n"
		"  echo \"approve <job-id>\" > <state_dir>/" AGENT_UPDATE_APPROVAL_FILE "\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "print-config", no_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = AGENT_DEFAULT_CONFIG;
	bool print_config = false;
	struct agent a;
	char err[AGENT_ERR_BYTES] = "";
	sigset_t sigs;
	uint64_t next_telemetry;
	int opt, rc;

	while((opt = getopt_long(argc, argv, "c:phV", longopts, NULL)) != -1){
		switch(opt){
			case 'c': config_path = optarg; break;
			case 'p': print_config = true; break;
			case 'h': usage(stdout); return 0;
			case 'V': printf("fleetmq-agent %s\n", AGENT_VERSION); return 0;
			default: usage(stderr); return 2;
		}
	}
	if(optind < argc){
		fprintf(stderr, "fleetmq-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	memset(&a, 0, sizeof(a));
	rc = agent__config_load(config_path, &a.cfg, err, sizeof(err));
	if(rc != FLEETMQ_OK){
		fprintf(stderr, "fleetmq-agent: %s\n", err);
		return rc == FLEETMQ_ERR_CONFIG ? 2 : 1;
	}
	if(print_config){
		fleetmq_cfg_print(agent__config_table, agent__config_table_size, &a.cfg, stdout);
		agent__config_free(&a.cfg);
		return 0;
	}
	g_log_level = a.cfg.log_level;

	/* every thread created from here on inherits the blocked signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	pthread_mutex_init(&a.mu, NULL);
	pthread_mutex_init(&a.files_mu, NULL);
	pthread_cond_init(&a.cond, NULL);
	if(setup(&a, err, sizeof(err)) != 0){
		fprintf(stderr, "fleetmq-agent: %s\n", err);
		teardown(&a);
		return 1;
	}
	{
		char *job = NULL;
		enum agent_update_step step;
		if(agent__update_peek(a.cfg.state_dir, &job, &step) == 0){
			agent_log(2, "update job %s was in step %s when the agent stopped: resuming", job, agent__update_step_name(step));
			fleetmq_client_set_execution_in_progress(a.client, job);
			pthread_mutex_lock(&a.mu);
			snprintf(a.active_job, sizeof(a.active_job), "%s", job);
			pthread_mutex_unlock(&a.mu);
			enqueue(&a, ITEM_RESUME, FLEETMQ_CLIENT_JOB_UPDATE, job, NULL);
		}
		fm_free(job);
	}
	initial_reports(&a);
	rc = fleetmq_client_start(a.client);
	if(rc){
		fprintf(stderr, "fleetmq-agent: cannot start the MQTT client: %s\n", fleetmq_client_strerror(rc));
		teardown(&a);
		return 1;
	}
	if(pthread_create(&a.worker, NULL, worker_main, &a) != 0){
		fprintf(stderr, "fleetmq-agent: cannot start the worker thread\n");
		teardown(&a);
		return 1;
	}
	a.worker_started = true;
	agent_log(2, "started: device %s (%s), broker %s:%lld, update policy %s", a.cfg.device_id, a.cfg.device_type,
			a.cfg.broker_host, a.cfg.broker_port, agent__policy_name(a.policy));

	next_telemetry = a.cfg.telemetry_interval_ms ? mono_ms() + (uint64_t)a.cfg.telemetry_interval_ms : 0;
	for(;;){
		struct timespec ts;
		uint64_t now = mono_ms(), wait_ms = 1000;
		int sig;

		if(next_telemetry){
			if(now >= next_telemetry){
				publish_telemetry(&a);
				next_telemetry += (uint64_t)a.cfg.telemetry_interval_ms;
				if(next_telemetry <= now) next_telemetry = now + (uint64_t)a.cfg.telemetry_interval_ms;
			}
			wait_ms = next_telemetry > now ? next_telemetry - now : 0;
			if(wait_ms > 1000) wait_ms = 1000;
		}
		ts.tv_sec = (time_t)(wait_ms / 1000);
		ts.tv_nsec = (long)(wait_ms % 1000) * 1000000L;
		sig = sigtimedwait(&sigs, NULL, &ts);
		if(sig == SIGTERM || sig == SIGINT){
			agent_log(2, "signal %d: stopping", sig);
			break;
		}
		if(sig == SIGHUP) agent_log(2, "SIGHUP ignored (restart the agent to reload its configuration)");
	}
	teardown(&a);
	return 0;
}
