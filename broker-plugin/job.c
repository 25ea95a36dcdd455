/*
 * job.c - durable per-device job queues: the adapter around jobs.c and
 * rollout.c (pure) and the store.
 *
 * Owns the open jobs in memory (uthash by id) with their parsed policies,
 * targets, rollout state and per-status execution counters. Executions
 * themselves live only in the store (one row per job and device), so a job
 * for 100,000 devices costs 100,000 rows on disk and a few hundred bytes in
 * memory.
 *
 * Work is incremental, on the TICK event, so the single broker thread never
 * stalls:
 *   - fan-out: a new job's targets are resolved jobs.fanout_batch devices per
 *     loop pass; each becomes a PENDING execution (idempotent: the primary key
 *     (job, device) means a restart that walks again duplicates nothing);
 *   - release: every jobs.check_interval_ms the rollout decides how many
 *     PENDING executions become QUEUED (canaries first, then at the rate),
 *     and the affected devices are notified if connected;
 *   - timeouts and retries: due executions are read from the store's partial
 *     indexes;
 *   - cancellation walks the job's executions in batches.
 * Device reports (jobs/{job}/update) are applied synchronously: validated,
 * run through the pure state machine, stored in the group transaction, and
 * answered after the commit like every other acknowledgement.
 *
 * Must never: deliver a PENDING execution; let a device act on another
 * device's execution; publish before the group commit (all output goes
 * through publish.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <cjson/cJSON.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"
#include "jobs.h"
#include "rollout.h"

#define MAX_DETAILS 16
#define MAX_DETAIL_KEY 64
#define MAX_DETAIL_VALUE 256
#define MAX_STEP 64
#define MAX_TARGET_DEVICES 1000000
#define MAX_BATCH_IDS 4096

struct fleetmq_job {
	UT_hash_handle hh;
	char *id;
	uint64_t seq;
	int type;                          /* Fleetmq__V1__JobType */
	int status;                        /* enum fleetmq_job_status */
	char *status_reason;
	bool continuous;
	char *spec_json;                   /* normalized creation request */
	char *document_json;
	char *created_by;
	uint64_t created_ms, updated_ms;
	cJSON *spec;                       /* parsed spec_json (owned) */
	struct fleetmq_job_policy policy;
	struct fleetmq_rollout_policy rollout;
	struct fleetmq_rollout_state rs;
	/* targets (pointers into spec) */
	const cJSON *t_devices, *t_groups, *t_match;
	bool t_all;
	char canary_group[FLEETMQ_MAX_ID_BYTES + 1];
	uint64_t canary_count;
	uint32_t canary_pct;
	/* execution counters by current status */
	uint64_t counts[FM_EXEC_STATUS_COUNT];
	uint64_t retry_pending[FM_EXEC_STATUS_COUNT];
	uint64_t canary_counts[FM_EXEC_STATUS_COUNT];
	uint64_t canary_retry[FM_EXEC_STATUS_COUNT];
	/* fan-out */
	bool fanout_done;
	size_t fanout_index;               /* position in t_devices */
	bool registry_walk_started;
	char *registry_cursor;             /* id of the next registry device to look at */
	/* cancellation */
	bool cancel_pending;
	bool cancel_force;
	bool cancel_remove;
	char cancel_cursor[FLEETMQ_MAX_ID_BYTES + 1];
	bool counted;                      /* counters loaded */
};

static const char *const job_type_names[] = { "", "update", "config", "feature", "custom" };
static const char *const job_status_names[] = { "SCHEDULED", "IN_PROGRESS", "COMPLETED", "CANCELED" };

/* ---------------------------------------------------------------- small helpers */

static const char *job_type_name(int t)
{
	return (t >= 1 && t <= 4) ? job_type_names[t] : "unknown";
}

static int job_type_parse(const char *s)
{
	int i;
	for(i = 1; i <= 4; i++){
		if(s && !strcmp(s, job_type_names[i])) return i;
	}
	return -1;
}

static const char *job_status_name(int s)
{
	return (s >= 0 && s <= 3) ? job_status_names[s] : "UNKNOWN";
}

static bool job_open(const struct fleetmq_job *j)
{
	return j->status == FM_JOB_SCHEDULED || j->status == FM_JOB_IN_PROGRESS;
}

static uint64_t fnv1a(const char *a, const char *b)
{
	uint64_t h = 1469598103934665603ULL;
	const unsigned char *p;
	for(p = (const unsigned char *)a; *p; p++){ h ^= *p; h *= 1099511628211ULL; }
	h ^= '/'; h *= 1099511628211ULL;
	for(p = (const unsigned char *)b; *p; p++){ h ^= *p; h *= 1099511628211ULL; }
	return h;
}

static void job_free(struct fleetmq_job *j)
{
	if(!j) return;
	fm_free(j->id);
	fm_free(j->status_reason);
	fm_free(j->spec_json);
	fm_free(j->document_json);
	fm_free(j->created_by);
	fm_free(j->registry_cursor);
	cJSON_Delete(j->spec);
	fm_free(j);
}

static void set_str(char **dst, const char *src)
{
	char *n = fm_strdup(src ? src : "");
	if(!n) return;
	fm_free(*dst);
	*dst = n;
}

static const char *json_str(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Read an optional non-negative integer member; false (and err) on a wrong value. */
static bool json_uint(const cJSON *o, const char *key, uint64_t def, uint64_t max, uint64_t *out,
		const char *ctx, char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if(!v || cJSON_IsNull(v)){
		*out = def;
		return true;
	}
	if(!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)max
			|| v->valuedouble != (double)(uint64_t)v->valuedouble){
		snprintf(err, errlen, "'%s%s' must be an integer from 0 to %" PRIu64, ctx, key, max);
		return false;
	}
	*out = (uint64_t)v->valuedouble;
	return true;
}

/* ---------------------------------------------------------------- spec parsing */

static bool check_string_array(const cJSON *a, const char *what, size_t max, char *err, size_t errlen)
{
	const cJSON *it;
	size_t n = 0;

	if(!cJSON_IsArray(a)){
		snprintf(err, errlen, "'%s' must be an array of strings", what);
		return false;
	}
	cJSON_ArrayForEach(it, a){
		if(++n > max || !cJSON_IsString(it) || !fleetmq_id_valid(it->valuestring, strlen(it->valuestring))){
			snprintf(err, errlen, "'%s' must hold at most %zu valid ids (1..128 bytes of UTF-8, no '/', '+', '#')", what, max);
			return false;
		}
	}
	return true;
}

static bool validate_document(int type, const cJSON *doc, size_t max_bytes, char *err, size_t errlen)
{
	char *text;
	size_t len;
	const cJSON *a, *b;

	if(!cJSON_IsObject(doc)){
		snprintf(err, errlen, "'document' must be a JSON object");
		return false;
	}
	text = cJSON_PrintUnformatted(doc);
	len = text ? strlen(text) : 0;
	fm_free(text);
	if(len > max_bytes){
		snprintf(err, errlen, "'document' is %zu bytes; jobs.max_document_bytes is %zu", len, max_bytes);
		return false;
	}
	switch(type){
		case 1: /* update */
			if(!json_str(doc, "version") || !json_str(doc, "artifact")){
				snprintf(err, errlen, "an update job's document needs 'artifact' and 'version' (strings)");
				return false;
			}
			break;
		case 2: /* config */
			a = cJSON_GetObjectItemCaseSensitive(doc, "set");
			b = cJSON_GetObjectItemCaseSensitive(doc, "unset");
			if((!a && !b) || (a && !cJSON_IsObject(a)) || (b && !cJSON_IsArray(b))){
				snprintf(err, errlen, "a config job's document needs 'set' (object of key/values) and/or 'unset' (array of keys)");
				return false;
			}
			break;
		case 3: /* feature */
			a = cJSON_GetObjectItemCaseSensitive(doc, "disable");
			b = cJSON_GetObjectItemCaseSensitive(doc, "enable");
			if((!a && !b) || (a && !check_string_array(a, "document.disable", 256, err, errlen))
					|| (b && !check_string_array(b, "document.enable", 256, err, errlen))){
				if(!a && !b) snprintf(err, errlen, "a feature job's document needs 'disable' and/or 'enable' (arrays of feature names)");
				return false;
			}
			break;
		default:
			break;
	}
	return true;
}

static bool parse_failure_type(const char *s, enum fleetmq_failure_type *out)
{
	if(!s || !strcmp(s, "ANY")) *out = FM_FAILURE_ANY;
	else if(!strcmp(s, "FAILED")) *out = FM_FAILURE_FAILED;
	else if(!strcmp(s, "REJECTED")) *out = FM_FAILURE_REJECTED;
	else if(!strcmp(s, "TIMED_OUT")) *out = FM_FAILURE_TIMED_OUT;
	else return false;
	return true;
}

/* Fill j's policies and targets from j->spec. The spec was normalized at
 * creation; the same parser runs at load time, so a job always behaves as
 * it did when it was acknowledged. */
static int job_from_spec(struct fleetmq_plugin *pl, struct fleetmq_job *j, char *err, size_t errlen)
{
	const cJSON *spec = j->spec, *targets, *rollout, *ramp, *canary, *abort_arr, *retry, *it, *doc, *v;
	uint64_t u;
	const char *type_s;

	if(!cJSON_IsObject(spec)){
		snprintf(err, errlen, "the request must be a JSON object");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	type_s = json_str(spec, "type");
	if(!type_s){
		snprintf(err, errlen, "'type' is required: update, config, feature or custom");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j->type = job_type_parse(type_s);
	if(j->type < 0){
		snprintf(err, errlen, "unknown job type '%.32s' (update, config, feature, custom)", type_s);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	doc = cJSON_GetObjectItemCaseSensitive(spec, "document");
	if(!doc){
		snprintf(err, errlen, "'document' (object) is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(!validate_document(j->type, doc, (size_t)pl->cfg.jobs_max_document_bytes, err, errlen)){
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	v = cJSON_GetObjectItemCaseSensitive(spec, "continuous");
	if(v && !cJSON_IsBool(v)){
		snprintf(err, errlen, "'continuous' must be true or false");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j->continuous = cJSON_IsTrue(v);

	/* targets */
	targets = cJSON_GetObjectItemCaseSensitive(spec, "targets");
	if(!cJSON_IsObject(targets)){
		snprintf(err, errlen, "'targets' (object with devices, groups, match and/or all) is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j->t_devices = cJSON_GetObjectItemCaseSensitive(targets, "devices");
	j->t_groups = cJSON_GetObjectItemCaseSensitive(targets, "groups");
	j->t_match = cJSON_GetObjectItemCaseSensitive(targets, "match");
	v = cJSON_GetObjectItemCaseSensitive(targets, "all");
	if(v && !cJSON_IsBool(v)){
		snprintf(err, errlen, "'targets.all' must be true or false");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j->t_all = cJSON_IsTrue(v);
	if(j->t_devices && !check_string_array(j->t_devices, "targets.devices", MAX_TARGET_DEVICES, err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	if(j->t_groups && !check_string_array(j->t_groups, "targets.groups", 256, err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	if(j->t_match){
		const cJSON *attrs;
		if(!cJSON_IsObject(j->t_match)){
			snprintf(err, errlen, "'targets.match' must be an object");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		cJSON_ArrayForEach(it, j->t_match){
			if(strcmp(it->string, "deviceType") && strcmp(it->string, "hwRevision") && strcmp(it->string, "attributes")){
				snprintf(err, errlen, "'targets.match' knows deviceType, hwRevision and attributes, not '%.64s'", it->string);
				return FLEETMQ_ERR_BAD_REQUEST;
			}
			if(strcmp(it->string, "attributes") && !cJSON_IsString(it)){
				snprintf(err, errlen, "'targets.match.%s' must be a string", it->string);
				return FLEETMQ_ERR_BAD_REQUEST;
			}
		}
		attrs = cJSON_GetObjectItemCaseSensitive(j->t_match, "attributes");
		if(attrs){
			if(!cJSON_IsObject(attrs)){
				snprintf(err, errlen, "'targets.match.attributes' must be an object of strings");
				return FLEETMQ_ERR_BAD_REQUEST;
			}
			cJSON_ArrayForEach(it, attrs){
				if(!cJSON_IsString(it)){
					snprintf(err, errlen, "'targets.match.attributes.%.64s' must be a string", it->string);
					return FLEETMQ_ERR_BAD_REQUEST;
				}
			}
		}
	}
	if(!j->t_all && !j->t_devices && !j->t_groups && !j->t_match){
		snprintf(err, errlen, "'targets' selects nothing: give devices, groups, match or all: true");
		return FLEETMQ_ERR_BAD_REQUEST;
	}

	/* timeout and retry */
	if(!json_uint(spec, "timeoutMs", 0, 30ULL * 24 * 3600 * 1000, &j->policy.in_progress_timeout_ms, "", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	retry = cJSON_GetObjectItemCaseSensitive(spec, "retry");
	if(retry && !cJSON_IsObject(retry)){
		snprintf(err, errlen, "'retry' must be an object");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(!json_uint(retry, "failed", 0, 100, &u, "retry.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	j->policy.retry.max_retries_failed = (uint32_t)u;
	if(!json_uint(retry, "timedOut", 0, 100, &u, "retry.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	j->policy.retry.max_retries_timed_out = (uint32_t)u;
	if(!json_uint(retry, "backoffMs", 60000, 7ULL * 24 * 3600 * 1000, &j->policy.retry.backoff_ms, "retry.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	if(!json_uint(retry, "backoffFactorPercent", 200, 1000, &u, "retry.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	if(u < 100){
		snprintf(err, errlen, "'retry.backoffFactorPercent' must be at least 100");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j->policy.retry.backoff_factor_pct = (uint32_t)u;
	if(!json_uint(retry, "backoffMaxMs", 3600000, 30ULL * 24 * 3600 * 1000, &j->policy.retry.backoff_max_ms, "retry.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;

	/* rollout */
	rollout = cJSON_GetObjectItemCaseSensitive(spec, "rollout");
	if(rollout && !cJSON_IsObject(rollout)){
		snprintf(err, errlen, "'rollout' must be an object");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	memset(&j->rollout, 0, sizeof(j->rollout));
	if(!json_uint(rollout, "maxPerMinute", 0, 10000000, &u, "rollout.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
	j->rollout.max_per_minute = (uint32_t)u;
	ramp = cJSON_GetObjectItemCaseSensitive(rollout, "ramp");
	if(ramp){
		if(!cJSON_IsObject(ramp)){
			snprintf(err, errlen, "'rollout.ramp' must be an object");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		if(!json_uint(ramp, "basePerMinute", 1, 10000000, &u, "rollout.ramp.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		j->rollout.ramp_base_per_minute = (uint32_t)(u ? u : 1);
		if(!json_uint(ramp, "factorPercent", 200, 10000, &u, "rollout.ramp.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		j->rollout.ramp_factor_pct = (uint32_t)u;
		if(!json_uint(ramp, "stepSuccesses", 10, 1000000, &u, "rollout.ramp.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		j->rollout.ramp_step_successes = (uint32_t)(u ? u : 1);
	}
	canary = cJSON_GetObjectItemCaseSensitive(rollout, "canary");
	j->canary_group[0] = '\0';
	j->canary_count = 0;
	j->canary_pct = 0;
	j->rollout.canary_success_pct = 100;
	if(canary){
		const char *g;
		if(!cJSON_IsObject(canary)){
			snprintf(err, errlen, "'rollout.canary' must be an object");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		if(!json_uint(canary, "count", 0, 1000000, &j->canary_count, "rollout.canary.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		if(!json_uint(canary, "percent", 0, 100, &u, "rollout.canary.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		j->canary_pct = (uint32_t)u;
		if(!json_uint(canary, "successPercent", 100, 100, &u, "rollout.canary.", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
		j->rollout.canary_success_pct = (uint32_t)u;
		g = json_str(canary, "group");
		if(g){
			if(!fleetmq_id_valid(g, strlen(g))){
				snprintf(err, errlen, "'rollout.canary.group' is not a valid group name");
				return FLEETMQ_ERR_BAD_REQUEST;
			}
			snprintf(j->canary_group, sizeof(j->canary_group), "%s", g);
		}
		if(!j->canary_count && !j->canary_pct && !j->canary_group[0]){
			snprintf(err, errlen, "'rollout.canary' needs count, percent or group");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
	}
	abort_arr = cJSON_GetObjectItemCaseSensitive(spec, "abort");
	if(abort_arr){
		if(!cJSON_IsArray(abort_arr) || cJSON_GetArraySize(abort_arr) > FLEETMQ_ROLLOUT_MAX_ABORT){
			snprintf(err, errlen, "'abort' must be an array of at most %d criteria", FLEETMQ_ROLLOUT_MAX_ABORT);
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		cJSON_ArrayForEach(it, abort_arr){
			struct fleetmq_abort_criterion *c = &j->rollout.abort[j->rollout.n_abort];
			if(!cJSON_IsObject(it) || !parse_failure_type(json_str(it, "failureType"), &c->failure_type)){
				snprintf(err, errlen, "each 'abort' entry is an object with failureType ANY, FAILED, REJECTED or TIMED_OUT");
				return FLEETMQ_ERR_BAD_REQUEST;
			}
			if(!json_uint(it, "thresholdPercent", 0, 100, &u, "abort[].", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
			if(u == 0){
				snprintf(err, errlen, "'abort[].thresholdPercent' must be 1..100");
				return FLEETMQ_ERR_BAD_REQUEST;
			}
			c->threshold_pct = (uint32_t)u;
			if(!json_uint(it, "minExecuted", 1, 10000000, &u, "abort[].", err, errlen)) return FLEETMQ_ERR_BAD_REQUEST;
			c->min_executed = (uint32_t)u;
			j->rollout.n_abort++;
		}
	}
	return FLEETMQ_OK;
}

/* ---------------------------------------------------------------- registry of jobs */

static struct fleetmq_job *job_find(struct fleetmq_plugin *pl, const char *id)
{
	struct fleetmq_job *j = NULL;
	HASH_FIND_STR(pl->jobs, id, j);
	return j;
}

static void count_add(struct fleetmq_job *j, const struct fleetmq_execution *e, bool canary, int delta)
{
	unsigned s = (unsigned)e->status;

	if(s >= FM_EXEC_STATUS_COUNT) return;
	j->counts[s] += (uint64_t)delta;
	if(e->retry_at_ms) j->retry_pending[s] += (uint64_t)delta;
	if(canary){
		j->canary_counts[s] += (uint64_t)delta;
		if(e->retry_at_ms) j->canary_retry[s] += (uint64_t)delta;
	}
}

/* Rebuild counters of j from its executions (one pass over its rows). */
static int job_count(struct fleetmq_plugin *pl, struct fleetmq_job *j)
{
	uint64_t fin[FM_EXEC_STATUS_COUNT], cfin[FM_EXEC_STATUS_COUNT];
	int rc, s;

	memset(j->retry_pending, 0, sizeof(j->retry_pending));
	memset(j->canary_retry, 0, sizeof(j->canary_retry));
	rc = fleetmq_store_exec_counts(pl->store, j->id, j->counts);
	if(!rc) rc = fleetmq_store_exec_counts_canary(pl->store, j->id, j->canary_counts);
	if(!rc) rc = fleetmq_store_exec_counts_final(pl->store, j->id, false, fin);
	if(!rc) rc = fleetmq_store_exec_counts_final(pl->store, j->id, true, cfin);
	if(rc) return rc;
	for(s = 0; s < FM_EXEC_STATUS_COUNT; s++){
		if(fleetmq_exec_is_terminal((enum fleetmq_exec_status)s)){
			j->retry_pending[s] = j->counts[s] - fin[s];
			j->canary_retry[s] = j->canary_counts[s] - cfin[s];
		}
	}
	j->counted = true;
	return FLEETMQ_OK;
}

static uint64_t sum(const uint64_t *a)
{
	uint64_t s = 0;
	int i;
	for(i = 0; i < FM_EXEC_STATUS_COUNT; i++) s += a[i];
	return s;
}

/* Derive the rollout counters from the execution counters. */
static void sync_rollout(struct fleetmq_job *j)
{
	struct fleetmq_rollout_state *rs = &j->rs;
	int s;

	rs->targets = sum(j->counts);
	rs->canary_targets = sum(j->canary_counts);
	rs->released = rs->targets - j->counts[FM_EXEC_PENDING];
	rs->canary_released = rs->canary_targets - j->canary_counts[FM_EXEC_PENDING];
	rs->final_total = 0;
	rs->canary_final = 0;
	for(s = 0; s < FM_EXEC_STATUS_COUNT; s++){
		rs->final_by_status[s] = 0;
		if(fleetmq_exec_is_terminal((enum fleetmq_exec_status)s)){
			rs->final_by_status[s] = j->counts[s] - j->retry_pending[s];
			rs->final_total += rs->final_by_status[s];
			rs->canary_final += j->canary_counts[s] - j->canary_retry[s];
		}
	}
	rs->canary_succeeded = j->canary_counts[FM_EXEC_SUCCEEDED];
	rs->targets_complete = j->fanout_done && !j->continuous;
}

static struct fleetmq_job *job_from_rec(struct fleetmq_plugin *pl, const struct fleetmq_job_rec *rec)
{
	struct fleetmq_job *j = fm_calloc(1, sizeof(*j));
	char err[256];

	if(!j) return NULL;
	j->id = fm_strdup(rec->id);
	j->seq = rec->seq;
	j->status = (int)rec->status;
	j->status_reason = fm_strdup(rec->status_reason);
	j->spec_json = fm_strdup(rec->spec_json);
	j->created_by = fm_strdup(rec->created_by);
	j->created_ms = rec->created_ms;
	j->updated_ms = rec->updated_ms;
	j->fanout_done = rec->fanout_done;
	j->spec = j->spec_json ? cJSON_Parse(j->spec_json) : NULL;
	if(!j->id || !j->spec || job_from_spec(pl, j, err, sizeof(err)) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: stored job %s cannot be loaded", rec->id);
		job_free(j);
		return NULL;
	}
	j->document_json = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(j->spec, "document"));
	fleetmq_rollout_init(&j->rs, fleetmq_now_ms());
	if(rec->rollout_json && strstr(rec->rollout_json, "\"cancelForce\":true")) j->cancel_force = true;
	if(rec->rollout_json && strstr(rec->rollout_json, "\"cancelRemove\":true")) j->cancel_remove = true;
	if(j->status == FM_JOB_CANCELED && j->status_reason && !strncmp(j->status_reason, "aborted", 7)){
		j->rs.phase = FM_ROLLOUT_ABORTED;
	}
	return j;
}

/* Open jobs live in the hash; a closed one is loaded on demand. */
static struct fleetmq_job *job_get(struct fleetmq_plugin *pl, const char *id)
{
	struct fleetmq_job *j = job_find(pl, id);
	struct fleetmq_job_rec rec;

	if(j) return j;
	memset(&rec, 0, sizeof(rec));
	if(fleetmq_store_job_get(pl->store, id, &rec) != FLEETMQ_OK) return NULL;
	j = job_from_rec(pl, &rec);
	if(!j) return NULL;
	HASH_ADD_KEYPTR(hh, pl->jobs, j->id, strlen(j->id), j);
	job_count(pl, j);
	return j;
}

static int job_persist(struct fleetmq_plugin *pl, struct fleetmq_job *j)
{
	struct fleetmq_job_rec rec;
	int rc;

	memset(&rec, 0, sizeof(rec));
	rec.id = j->id;
	rec.seq = j->seq;
	rec.type = job_type_name(j->type);
	rec.spec_json = j->spec_json;
	rec.spec_hash = "";
	rec.status = (enum fleetmq_job_status)j->status;
	rec.status_reason = j->status_reason ? j->status_reason : "";
	rec.continuous = j->continuous;
	rec.fanout_done = j->fanout_done;
	rec.fanout_cursor = "";
	rec.rollout_json = j->cancel_force ? (j->cancel_remove ? "{\"cancelForce\":true,\"cancelRemove\":true}" : "{\"cancelForce\":true}")
			: (j->cancel_remove ? "{\"cancelRemove\":true}" : "{}");
	rec.created_ms = j->created_ms;
	rec.updated_ms = j->updated_ms;
	rec.created_by = j->created_by ? j->created_by : "";
	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_job_put(pl->store, &rec);
	if(rc) mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot store job %s: %s", j->id, fleetmq_store_last_error(pl->store));
	return rc;
}

static int load_job_cb(const struct fleetmq_job_rec *rec, void *ud)
{
	struct fleetmq_plugin *pl = ud;
	struct fleetmq_job *j = job_from_rec(pl, rec);

	if(j){
		HASH_ADD_KEYPTR(hh, pl->jobs, j->id, strlen(j->id), j);
	}
	return 0;
}

static int canceled_job_cb(const struct fleetmq_job_rec *rec, void *ud)
{
	struct fleetmq_plugin *pl = ud;
	uint64_t counts[FM_EXEC_STATUS_COUNT];

	if(fleetmq_store_exec_counts(pl->store, rec->id, counts) != FLEETMQ_OK) return 0;
	if(counts[FM_EXEC_PENDING] + counts[FM_EXEC_QUEUED] > 0) load_job_cb(rec, pl);
	return 0;
}

int job__load_all(struct fleetmq_plugin *pl)
{
	struct fleetmq_job *j, *tmp;
	int rc;
	uint64_t max_seq = 0;

	if(fleetmq_store_max_seq(pl->store, &max_seq) != FLEETMQ_OK) return FLEETMQ_ERR_INTERNAL;
	pl->next_seq = max_seq + 1;
	rc = fleetmq_store_job_foreach(pl->store, true, load_job_cb, pl);
	if(rc) return rc;
	/* A cancellation interrupted by a crash: canceled jobs that still have
	 * pending or queued executions resume their cancellation. */
	rc = fleetmq_store_job_list(pl->store, FM_JOB_CANCELED, 0, 0, canceled_job_cb, pl);
	if(rc) return rc;
	HASH_ITER(hh, pl->jobs, j, tmp){
		if(job_count(pl, j) != FLEETMQ_OK) return FLEETMQ_ERR_INTERNAL;
		if(j->status == FM_JOB_CANCELED){
			j->cancel_pending = j->counts[FM_EXEC_PENDING] + j->counts[FM_EXEC_QUEUED] > 0;
		}
	}
	return FLEETMQ_OK;
}

void job__cleanup(struct fleetmq_plugin *pl)
{
	struct fleetmq_job *j, *tmp;

	HASH_ITER(hh, pl->jobs, j, tmp){
		HASH_DEL(pl->jobs, j);
		job_free(j);
	}
	pl->jobs = NULL;
}

/* ---------------------------------------------------------------- device side: notify */

struct queue_ctx {
	struct fleetmq_plugin *pl;
	Fleetmq__V1__JobExecutionSummary *items;
	char **job_ids;
	bool *resolved;         /* items[i] filled during the walk */
	size_t n, cap;
	size_t n_in_progress, n_unresolved;
};

static void summary_from_rec(Fleetmq__V1__JobExecutionSummary *s, const struct fleetmq_exec_rec *rec,
		const struct fleetmq_job *j)
{
	fleetmq__v1__job_execution_summary__init(s);
	s->status = (Fleetmq__V1__ExecutionStatus)rec->e.status;
	s->version = rec->e.version;
	s->attempt = rec->e.attempt;
	s->queued_at_ms = rec->e.queued_ms;
	s->started_at_ms = rec->e.started_ms;
	s->queue_position = rec->seq;
	s->type = j ? (Fleetmq__V1__JobType)j->type : FLEETMQ__V1__JOB_TYPE__JOB_TYPE_UNSPECIFIED;
}

static void fill_summary(struct fleetmq_plugin *pl, Fleetmq__V1__JobExecutionSummary *s, const struct fleetmq_exec_rec *rec)
{
	summary_from_rec(s, rec, job_get(pl, rec->job_id));
}

static int queue_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	struct queue_ctx *x = ud;
	struct fleetmq_job *j;

	if(x->n == x->cap){
		size_t cap = x->cap ? x->cap * 2 : 8;
		void *a = fm_realloc(x->items, cap * sizeof(*x->items));
		void *b;
		if(!a) return FLEETMQ_ERR_NOMEM;
		x->items = a;
		b = fm_realloc(x->job_ids, cap * sizeof(*x->job_ids));
		if(!b) return FLEETMQ_ERR_NOMEM;
		x->job_ids = b;
		b = fm_realloc(x->resolved, cap * sizeof(*x->resolved));
		if(!b) return FLEETMQ_ERR_NOMEM;
		x->resolved = b;
		x->cap = cap;
	}
	x->job_ids[x->n] = fm_strdup(rec->job_id);
	if(!x->job_ids[x->n]) return FLEETMQ_ERR_NOMEM;
	/* Open jobs are in memory; the type of a job that is not is looked up
	 * after the walk, since job_get may query the store. */
	j = job_find(x->pl, rec->job_id);
	summary_from_rec(&x->items[x->n], rec, j);
	if(!j) x->n_unresolved++;
	x->resolved[x->n] = j != NULL;
	x->items[x->n].job_id = x->job_ids[x->n];
	if(rec->e.status == FM_EXEC_IN_PROGRESS) x->n_in_progress++;
	x->n++;
	return 0;
}

static void queue_ctx_free(struct queue_ctx *x)
{
	size_t i;
	for(i = 0; i < x->n; i++) fm_free(x->job_ids[i]);
	fm_free(x->job_ids);
	fm_free(x->resolved);
	fm_free(x->items);
}

/* Collect the device's active executions (in progress first, then queue order). */
static int device_queue(struct fleetmq_plugin *pl, const char *device_id, struct queue_ctx *x)
{
	size_t i;
	int rc;

	memset(x, 0, sizeof(*x));
	x->pl = pl;
	rc = fleetmq_store_exec_foreach_device(pl->store, device_id, true, queue_cb, x);
	if(rc) return rc;
	for(i = 0; i < x->n && x->n_unresolved; i++){
		struct fleetmq_job *j;
		if(x->resolved[i]) continue;
		j = job_get(pl, x->job_ids[i]);
		if(j) x->items[i].type = (Fleetmq__V1__JobType)j->type;
	}
	return FLEETMQ_OK;
}

/* Queue a JobNotify for the device. canceled: execution records to report
 * as canceled (may be NULL). Sent only if the device is connected unless
 * force is set (hello). */
static void notify_device(struct fleetmq_plugin *pl, const char *device_id, const struct fleetmq_exec_rec *canceled,
		size_t n_canceled, bool force, uint64_t now_ms)
{
	Fleetmq__V1__JobNotify msg = FLEETMQ__V1__JOB_NOTIFY__INIT;
	struct fleetmq_device *dev = device__find(pl, device_id);
	struct queue_ctx x;
	Fleetmq__V1__JobExecutionSummary **ip = NULL, **q = NULL, **cp = NULL;
	Fleetmq__V1__JobExecutionSummary *cs = NULL;
	char **cids = NULL;
	size_t i, ni = 0, nq = 0;
	uint8_t *buf;
	size_t len;

	memset(&x, 0, sizeof(x));
	if(!force && (!dev || !dev->conn)) return;
	/* canceled records may point into the store's exec_get scratch, which
	 * device_queue() reuses: summarise and copy them first */
	cp = fm_calloc(n_canceled + 1, sizeof(*cp));
	cs = fm_calloc(n_canceled + 1, sizeof(*cs));
	cids = fm_calloc(n_canceled + 1, sizeof(*cids));
	if(!cp || !cs || !cids) goto cleanup;
	for(i = 0; i < n_canceled; i++){
		cids[i] = fm_strdup(canceled[i].job_id);
		if(!cids[i]) goto cleanup;
		fill_summary(pl, &cs[i], &canceled[i]);
		cs[i].job_id = cids[i];
		cp[i] = &cs[i];
	}
	if(device_queue(pl, device_id, &x) != FLEETMQ_OK) goto cleanup;
	ip = fm_calloc(x.n + 1, sizeof(*ip));
	q = fm_calloc(x.n + 1, sizeof(*q));
	if(!ip || !q) goto cleanup;
	for(i = 0; i < x.n; i++){
		if(x.items[i].status == FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS) ip[ni++] = &x.items[i];
		else q[nq++] = &x.items[i];
	}
	msg.n_in_progress = ni;
	msg.in_progress = ip;
	msg.n_queued = nq;
	msg.queued = q;
	msg.n_canceled = n_canceled;
	msg.canceled = cp;
	msg.timestamp_ms = now_ms;
	len = fleetmq__v1__job_notify__get_packed_size(&msg);
	buf = fm_malloc(len ? len : 1);
	if(buf){
		fleetmq__v1__job_notify__pack(&msg, buf);
		publish__queue_device(pl, device_id, "jobs/notify", buf, len, 1, false);
	}
cleanup:
	if(cids){
		for(i = 0; i < n_canceled; i++) fm_free(cids[i]);
	}
	fm_free(cids);
	fm_free(ip);
	fm_free(q);
	fm_free(cp);
	fm_free(cs);
	queue_ctx_free(&x);
}

uint64_t job__pending_count(struct fleetmq_plugin *pl, const char *device_id)
{
	uint64_t n = 0;
	if(fleetmq_store_exec_count_device_active(pl->store, device_id, &n) != FLEETMQ_OK) return 0;
	return n;
}

/* ---------------------------------------------------------------- targets */

/* What target matching needs to know about one device. The record is read
 * from the store at most once, however many jobs are matched against it
 * (a hello re-evaluates every open continuous job), and the attribute
 * objects are parsed only when a job matches on attributes. */
struct device_view {
	const char *id;
	bool tried, ok;
	char *device_type, *hw_revision, *op_attrs_json, *attrs_json;
	cJSON *groups, *op_attrs, *attrs;
};

static void view_init(struct device_view *v, const char *device_id)
{
	memset(v, 0, sizeof(*v));
	v->id = device_id;
}

static void view_free(struct device_view *v)
{
	fm_free(v->device_type);
	fm_free(v->hw_revision);
	fm_free(v->op_attrs_json);
	fm_free(v->attrs_json);
	cJSON_Delete(v->groups);
	cJSON_Delete(v->op_attrs);
	cJSON_Delete(v->attrs);
	view_init(v, NULL);
}

static bool view_load(struct fleetmq_plugin *pl, struct device_view *v)
{
	struct fleetmq_device_rec rec;

	if(v->tried) return v->ok;
	v->tried = true;
	memset(&rec, 0, sizeof(rec));
	if(fleetmq_store_device_get(pl->store, v->id, &rec) != FLEETMQ_OK) return false;
	/* copies: the record points into the store's scratch, which the next
	 * store call reuses */
	v->device_type = fm_strdup(rec.device_type ? rec.device_type : "");
	v->hw_revision = fm_strdup(rec.hw_revision ? rec.hw_revision : "");
	v->op_attrs_json = fm_strdup(rec.op_attributes_json ? rec.op_attributes_json : "{}");
	v->attrs_json = fm_strdup(rec.attributes_json ? rec.attributes_json : "{}");
	v->groups = cJSON_Parse(rec.groups_json ? rec.groups_json : "[]");
	v->ok = v->device_type && v->hw_revision && v->op_attrs_json && v->attrs_json;
	return v->ok;
}

static bool view_attrs(struct device_view *v)
{
	if(!v->op_attrs) v->op_attrs = cJSON_Parse(v->op_attrs_json);
	if(!v->attrs) v->attrs = cJSON_Parse(v->attrs_json);
	return v->op_attrs || v->attrs;
}

static bool match_device(struct fleetmq_plugin *pl, struct fleetmq_job *j, struct device_view *v,
		bool *canary_group_member)
{
	const cJSON *it, *m_attrs;
	const char *s;
	bool need_rec = j->t_groups || j->t_match || j->canary_group[0];

	*canary_group_member = false;
	if(!need_rec) return j->t_all;
	if(!view_load(pl, v)) return false;
	if(j->canary_group[0]){
		cJSON_ArrayForEach(it, v->groups){
			if(cJSON_IsString(it) && !strcmp(it->valuestring, j->canary_group)) *canary_group_member = true;
		}
	}
	if(j->t_all) return true;
	if(j->t_groups){
		const cJSON *g;
		cJSON_ArrayForEach(g, j->t_groups){
			cJSON_ArrayForEach(it, v->groups){
				if(cJSON_IsString(it) && !strcmp(it->valuestring, g->valuestring)) return true;
			}
		}
	}
	if(!j->t_match) return false;
	if((s = json_str(j->t_match, "deviceType")) && strcmp(s, v->device_type)) return false;
	if((s = json_str(j->t_match, "hwRevision")) && strcmp(s, v->hw_revision)) return false;
	m_attrs = cJSON_GetObjectItemCaseSensitive(j->t_match, "attributes");
	if(!m_attrs) return true;
	if(!view_attrs(v)) return false;
	cJSON_ArrayForEach(it, m_attrs){
		const char *val = json_str(v->op_attrs, it->string);
		if(!val) val = json_str(v->attrs, it->string);
		if(!val || strcmp(val, it->valuestring)) return false;
	}
	return true;
}

static bool explicit_target(const struct fleetmq_job *j, const char *device_id)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, j->t_devices){
		if(!strcmp(it->valuestring, device_id)) return true;
	}
	return false;
}

/* Make device a target of j: a PENDING execution, unless one exists. */
static int add_target(struct fleetmq_plugin *pl, struct fleetmq_job *j, const char *device_id, bool canary_group_member,
		uint64_t now_ms, bool *added)
{
	struct fleetmq_exec_rec rec;
	int rc;

	*added = false;
	memset(&rec, 0, sizeof(rec));
	rc = fleetmq_store_exec_get(pl->store, j->id, device_id, &rec);
	if(rc == FLEETMQ_OK) return FLEETMQ_OK;
	if(rc != FLEETMQ_ERR_NOT_FOUND) return rc;
	if(!device__ensure(pl, device_id, now_ms)) return FLEETMQ_ERR_INTERNAL;

	memset(&rec, 0, sizeof(rec));
	rec.job_id = j->id;
	rec.device_id = device_id;
	rec.seq = pl->next_seq++;
	/* Canaries are chosen while the canary phase is open; a device that joins
	 * a continuous job later is an ordinary target. */
	if(j->rs.phase == FM_ROLLOUT_CANARY){
		if(j->canary_group[0]) rec.canary = canary_group_member;
		else if(j->canary_count) rec.canary = sum(j->canary_counts) < j->canary_count;
		else if(j->canary_pct) rec.canary = fnv1a(j->id, device_id) % 100 < j->canary_pct;
	}
	fleetmq_exec_init((struct fleetmq_execution *)&rec.e, false, now_ms);
	rec.step = "";
	rec.details_json = "{}";
	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_exec_put(pl->store, &rec);
	if(rc) return rc;
	count_add(j, &rec.e, rec.canary, 1);
	*added = true;
	return FLEETMQ_OK;
}

/* Resolve up to `budget` targets of j. Returns the number looked at. */
static uint64_t fanout_step(struct fleetmq_plugin *pl, struct fleetmq_job *j, uint64_t budget, uint64_t now_ms)
{
	uint64_t done = 0;
	bool added, cg;
	const cJSON *it;
	size_t i;

	/* 1. explicit device list */
	if(j->t_devices){
		i = 0;
		cJSON_ArrayForEach(it, j->t_devices){
			if(i++ < j->fanout_index) continue;
			if(done >= budget) return done;
			cg = false;
			if(j->canary_group[0]){
				struct device_view v;
				view_init(&v, it->valuestring);
				match_device(pl, j, &v, &cg);
				view_free(&v);
			}
			if(add_target(pl, j, it->valuestring, cg, now_ms, &added) != FLEETMQ_OK){
				mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: job %s: cannot add target %s", j->id, it->valuestring);
			}
			j->fanout_index++;
			done++;
		}
	}
	/* 2. registry walk for all / groups / match, in registry order: devices
	 * loaded from the store at start-up (id order) first, then devices in
	 * the order they registered since. That order also picks count-based
	 * canaries (the first N targets). The cursor is the next device's id. */
	if(j->t_all || j->t_groups || j->t_match){
		struct fleetmq_device *d;
		if(!j->registry_walk_started){
			j->registry_walk_started = true;
			d = pl->devices;
		}else{
			d = j->registry_cursor ? device__find(pl, j->registry_cursor) : NULL;
		}
		while(d && done < budget){
			if(!(j->t_devices && explicit_target(j, d->id))){
				struct device_view v;
				view_init(&v, d->id);
				if(match_device(pl, j, &v, &cg)){
					add_target(pl, j, d->id, cg, now_ms, &added);
				}
				view_free(&v);
			}
			done++;
			d = (struct fleetmq_device *)d->hh.next;
		}
		fm_free(j->registry_cursor);
		j->registry_cursor = d ? fm_strdup(d->id) : NULL;
		if(d) return done;
	}
	j->fanout_done = true;
	j->updated_ms = now_ms;
	job_persist(pl, j);
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: job %s: fan-out complete, %" PRIu64 " targets", j->id, sum(j->counts));
	return done;
}

void job__on_device_changed(struct fleetmq_plugin *pl, struct fleetmq_device *dev, uint64_t now_ms)
{
	struct fleetmq_job *j, *tmp;
	struct device_view v;
	bool added, cg;

	view_init(&v, dev->id);
	HASH_ITER(hh, pl->jobs, j, tmp){
		if(!j->continuous || !job_open(j) || j->cancel_pending) continue;
		if((j->t_devices && explicit_target(j, dev->id)) || match_device(pl, j, &v, &cg)){
			cg = false;
			if(j->canary_group[0]) match_device(pl, j, &v, &cg);
			if(add_target(pl, j, dev->id, cg, now_ms, &added) == FLEETMQ_OK && added){
				mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: continuous job %s now targets %s", j->id, dev->id);
			}
		}
	}
	view_free(&v);
}

/* ---------------------------------------------------------------- execution changes */

static const char *exec_detail_step(const struct fleetmq_exec_rec *rec)
{
	return rec->step ? rec->step : "";
}

/* Persist an execution change, update counters, audit it. old = state before. */
static int exec_store(struct fleetmq_plugin *pl, struct fleetmq_job *j, const struct fleetmq_exec_rec *rec,
		const struct fleetmq_execution *old, const char *actor, uint64_t now_ms)
{
	cJSON *detail;
	char action[64];
	int rc;

	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_exec_put(pl->store, rec);
	if(rc){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot store execution %s/%s: %s", rec->job_id, rec->device_id,
				fleetmq_store_last_error(pl->store));
		return rc;
	}
	if(j){
		count_add(j, old, rec->canary, -1);
		count_add(j, &rec->e, rec->canary, 1);
	}
	/* Audited: every status change a device reports, and the plugin's own
	 * verdicts (timeouts, retries). Releases and per-execution cancels are
	 * not: the operator command that caused them is audited once, and a
	 * 100,000-device job must not write 100,000 audit rows for them. */
	if((strcmp(actor, "fleetmq") || rec->e.status == FM_EXEC_TIMED_OUT || old->attempt != rec->e.attempt)
			&& (old->status != rec->e.status || old->attempt != rec->e.attempt
				|| (old->retry_at_ms != 0) != (rec->e.retry_at_ms != 0))){
		detail = cJSON_CreateObject();
		if(detail){
			cJSON_AddStringToObject(detail, "deviceId", rec->device_id);
			cJSON_AddStringToObject(detail, "from", fleetmq_exec_status_name(old->status));
			cJSON_AddStringToObject(detail, "to", fleetmq_exec_status_name(rec->e.status));
			cJSON_AddNumberToObject(detail, "version", (double)rec->e.version);
			cJSON_AddNumberToObject(detail, "attempt", rec->e.attempt);
			if(rec->e.retry_at_ms) cJSON_AddNumberToObject(detail, "retryAtMs", (double)rec->e.retry_at_ms);
			if(exec_detail_step(rec)[0]) cJSON_AddStringToObject(detail, "step", rec->step);
			cJSON_AddItemToObject(detail, "statusDetails", cJSON_Parse(rec->details_json ? rec->details_json : "{}"));
		}
		snprintf(action, sizeof(action), "execution.%s", fleetmq_exec_status_name(rec->e.status));
		control__audit(pl, now_ms, actor, action, rec->job_id, detail);
		cJSON_Delete(detail);
	}
	return FLEETMQ_OK;
}

/* After an execution of j became final (or its retry was scheduled): check
 * the rollout's abort criteria and completion. */
static void job_cancel_begin(struct fleetmq_plugin *pl, struct fleetmq_job *j, const char *reason, bool force,
		bool remove, uint64_t now_ms);

static void job_after_change(struct fleetmq_plugin *pl, struct fleetmq_job *j, uint64_t now_ms)
{
	char reason[256];

	if(!job_open(j) || j->cancel_pending) return;
	sync_rollout(j);
	reason[0] = '\0';
	if(fleetmq_rollout_should_abort(&j->rollout, &j->rs, reason, sizeof(reason))){
		char full[300];
		snprintf(full, sizeof(full), "%s%s", strncmp(reason, "abort", 5) ? "aborted: " : "", reason);
		if(strncmp(full, "aborted", 7)) snprintf(full, sizeof(full), "aborted (%s)", reason);
		mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: job %s %s", j->id, full);
		job_cancel_begin(pl, j, full, false, false, now_ms);
		{
			cJSON *d = cJSON_CreateObject();
			if(d) cJSON_AddStringToObject(d, "reason", full);
			control__audit(pl, now_ms, "fleetmq", "abortJob", j->id, d);
			cJSON_Delete(d);
		}
		return;
	}
}

static void maybe_complete(struct fleetmq_plugin *pl, struct fleetmq_job *j, uint64_t now_ms)
{
	uint64_t not_final;
	int s;

	if(!job_open(j) || j->cancel_pending || j->continuous || !j->fanout_done) return;
	not_final = j->counts[FM_EXEC_PENDING] + j->counts[FM_EXEC_QUEUED] + j->counts[FM_EXEC_IN_PROGRESS];
	for(s = 0; s < FM_EXEC_STATUS_COUNT; s++) not_final += j->retry_pending[s];
	if(not_final) return;
	j->status = FM_JOB_COMPLETED;
	j->updated_ms = now_ms;
	set_str(&j->status_reason, "");
	job_persist(pl, j);
	control__audit(pl, now_ms, "fleetmq", "completeJob", j->id, NULL);
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: job %s completed: %" PRIu64 " succeeded, %" PRIu64 " failed, %" PRIu64
			" rejected, %" PRIu64 " timed out", j->id, j->counts[FM_EXEC_SUCCEEDED], j->counts[FM_EXEC_FAILED],
			j->counts[FM_EXEC_REJECTED], j->counts[FM_EXEC_TIMED_OUT]);
}

/* ---------------------------------------------------------------- release */

struct id_batch {
	char *ids[MAX_BATCH_IDS];
	char *jobs[MAX_BATCH_IDS];
	size_t n;
	size_t max;
};

static void batch_free(struct id_batch *b)
{
	size_t i;
	for(i = 0; i < b->n; i++){
		fm_free(b->ids[i]);
		fm_free(b->jobs[i]);
	}
	b->n = 0;
}

static int batch_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	struct id_batch *b = ud;

	if(b->n >= b->max) return 1;
	b->ids[b->n] = fm_strdup(rec->device_id);
	b->jobs[b->n] = fm_strdup(rec->job_id);
	if(!b->ids[b->n] || !b->jobs[b->n]){
		fm_free(b->ids[b->n]);
		fm_free(b->jobs[b->n]);
		return FLEETMQ_ERR_NOMEM;
	}
	b->n++;
	return 0;
}

static void release_step(struct fleetmq_plugin *pl, struct fleetmq_job *j, uint64_t now_ms)
{
	struct id_batch b;
	uint64_t n;
	bool canary = false;
	size_t i;

	if(!job_open(j) || j->cancel_pending) return;
	/* With a canary set, nothing is released before fan-out has found every
	 * canary: the gate must judge the whole canary set, not the first few. */
	if(!j->fanout_done && (j->canary_count || j->canary_pct || j->canary_group[0])) return;
	sync_rollout(j);
	n = fleetmq_rollout_releasable(&j->rollout, &j->rs, now_ms, &canary);
	if(j->rs.phase == FM_ROLLOUT_ABORTED){
		job_after_change(pl, j, now_ms);
		return;
	}
	if(n == 0){
		/* the canary gate may have failed with nothing left to release */
		job_after_change(pl, j, now_ms);
		return;
	}
	if(n > (uint64_t)pl->cfg.jobs_release_batch) n = (uint64_t)pl->cfg.jobs_release_batch;
	if(n > MAX_BATCH_IDS) n = MAX_BATCH_IDS;
	memset(&b, 0, sizeof(b));
	b.max = (size_t)n;
	fleetmq_store_exec_pending(pl->store, j->id, canary, (int)n, batch_cb, &b);
	for(i = 0; i < b.n; i++){
		struct fleetmq_exec_rec rec;
		struct fleetmq_execution old;
		memset(&rec, 0, sizeof(rec));
		if(fleetmq_store_exec_get(pl->store, j->id, b.ids[i], &rec) != FLEETMQ_OK) continue;
		old = rec.e;
		if(fleetmq_exec_release(&rec.e, now_ms) != FLEETMQ_OK) continue;
		if(exec_store(pl, j, &rec, &old, "fleetmq", now_ms) != FLEETMQ_OK) continue;
		notify_device(pl, b.ids[i], NULL, 0, false, now_ms);
	}
	fleetmq_rollout_consume(&j->rs, b.n, canary);
	if(b.n && j->status == FM_JOB_SCHEDULED){
		j->status = FM_JOB_IN_PROGRESS;
		j->updated_ms = now_ms;
		job_persist(pl, j);
	}
	batch_free(&b);
}

/* ---------------------------------------------------------------- cancel */

static void job_cancel_begin(struct fleetmq_plugin *pl, struct fleetmq_job *j, const char *reason, bool force,
		bool remove, uint64_t now_ms)
{
	j->status = FM_JOB_CANCELED;
	set_str(&j->status_reason, reason);
	j->updated_ms = now_ms;
	j->cancel_pending = true;
	j->cancel_force = force;
	j->cancel_remove = remove;
	j->cancel_cursor[0] = '\0';
	if(j->rs.phase != FM_ROLLOUT_ABORTED && !strncmp(reason, "aborted", 7)) j->rs.phase = FM_ROLLOUT_ABORTED;
	job_persist(pl, j);
}

static void cancel_step(struct fleetmq_plugin *pl, struct fleetmq_job *j, uint64_t now_ms)
{
	struct id_batch b;
	size_t i;

	memset(&b, 0, sizeof(b));
	b.max = (size_t)pl->cfg.jobs_release_batch < MAX_BATCH_IDS ? (size_t)pl->cfg.jobs_release_batch : MAX_BATCH_IDS;
	fleetmq_store_exec_foreach_job(pl->store, j->id, -1, j->cancel_cursor, (int)b.max, batch_cb, &b);
	for(i = 0; i < b.n; i++){
		struct fleetmq_exec_rec rec;
		struct fleetmq_execution old;
		bool visible;
		memset(&rec, 0, sizeof(rec));
		snprintf(j->cancel_cursor, sizeof(j->cancel_cursor), "%s", b.ids[i]);
		if(fleetmq_store_exec_get(pl->store, j->id, b.ids[i], &rec) != FLEETMQ_OK) continue;
		old = rec.e;
		visible = old.status == FM_EXEC_QUEUED || old.status == FM_EXEC_IN_PROGRESS;
		if(!fleetmq_exec_cancel(&rec.e, j->cancel_force, j->cancel_remove, now_ms)) continue;
		if(exec_store(pl, j, &rec, &old, "fleetmq", now_ms) != FLEETMQ_OK) continue;
		if(visible) notify_device(pl, b.ids[i], &rec, 1, false, now_ms);
	}
	if(b.n < b.max){
		j->cancel_pending = false;
		mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: job %s canceled (%s)", j->id, j->status_reason);
	}
	batch_free(&b);
}

/* ---------------------------------------------------------------- timeouts and retries */

static int due_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	return batch_cb(rec, ud);
}

static void due_step(struct fleetmq_plugin *pl, uint64_t now_ms)
{
	struct id_batch b;
	size_t i;

	memset(&b, 0, sizeof(b));
	b.max = MAX_BATCH_IDS;
	fleetmq_store_exec_due(pl->store, now_ms, (int)b.max, due_cb, &b);
	for(i = 0; i < b.n; i++){
		struct fleetmq_exec_rec rec;
		struct fleetmq_execution old;
		struct fleetmq_job *j = job_get(pl, b.jobs[i]);
		bool changed = false;

		memset(&rec, 0, sizeof(rec));
		if(!j || fleetmq_store_exec_get(pl->store, b.jobs[i], b.ids[i], &rec) != FLEETMQ_OK) continue;
		old = rec.e;
		if(!job_open(j) && rec.e.retry_at_ms){
			changed = fleetmq_exec_cancel(&rec.e, false, false, now_ms); /* drop the retry of a closed job */
		}else{
			changed = fleetmq_exec_check_timeout(&rec.e, &j->policy, now_ms);
			if(!changed && fleetmq_exec_retry_if_due(&rec.e, now_ms)){
				/* a new attempt starts with a clean slate */
				changed = true;
				rec.step = "";
				rec.details_json = "{}";
			}
		}
		if(!changed) continue;
		if(exec_store(pl, j, &rec, &old, "fleetmq", now_ms) != FLEETMQ_OK) continue;
		if(rec.e.status == FM_EXEC_TIMED_OUT){
			mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: job %s on %s timed out (attempt %u)%s", j->id, b.ids[i],
					rec.e.attempt, rec.e.retry_at_ms ? ", retry scheduled" : "");
			/* the device may still be working on it: tell it to stop */
			notify_device(pl, b.ids[i], &rec, 1, false, now_ms);
		}else{
			notify_device(pl, b.ids[i], NULL, 0, false, now_ms);
		}
		job_after_change(pl, j, now_ms);
	}
	batch_free(&b);
}

/* ---------------------------------------------------------------- tick */

void job__tick(struct fleetmq_plugin *pl, uint64_t now_ms)
{
	struct fleetmq_job *j, *tmp;
	uint64_t budget = (uint64_t)pl->cfg.jobs_fanout_batch;
	bool checks = now_ms >= pl->next_job_check_ms;

	/* fan-out runs every loop pass, bounded per pass */
	HASH_ITER(hh, pl->jobs, j, tmp){
		if(budget == 0) break;
		if(job_open(j) && !j->fanout_done && !j->cancel_pending){
			uint64_t used = fanout_step(pl, j, budget, now_ms);
			budget = used >= budget ? 0 : budget - used;
		}
	}
	if(!checks) return;
	pl->next_job_check_ms = now_ms + (uint64_t)pl->cfg.jobs_check_interval_ms;
	due_step(pl, now_ms);
	HASH_ITER(hh, pl->jobs, j, tmp){
		if(j->cancel_pending){
			cancel_step(pl, j, now_ms);
		}else if(job_open(j)){
			release_step(pl, j, now_ms);
			maybe_complete(pl, j, now_ms);
		}
	}
}

const char *job__artifact_of(struct fleetmq_plugin *pl, const char *job_id)
{
	struct fleetmq_job *j = job_get(pl, job_id);

	if(!j || j->type != 1) return NULL;
	return json_str(cJSON_GetObjectItemCaseSensitive(j->spec, "document"), "artifact");
}

/* ---------------------------------------------------------------- device requests */

void job__on_hello(struct fleetmq_plugin *pl, struct fleetmq_device *dev, const char *execution_in_progress,
		uint64_t now_ms)
{
	struct fleetmq_exec_rec rec;
	bool stale = false;

	job__on_device_changed(pl, dev, now_ms);
	/* The device believes it runs an execution that is no longer active
	 * (canceled while it was offline, timed out...): tell it to stop. */
	if(execution_in_progress && execution_in_progress[0]){
		memset(&rec, 0, sizeof(rec));
		if(fleetmq_store_exec_get(pl->store, execution_in_progress, dev->id, &rec) == FLEETMQ_OK
				&& rec.e.status != FM_EXEC_IN_PROGRESS && rec.e.status != FM_EXEC_QUEUED
				&& rec.e.status != FM_EXEC_PENDING){
			stale = true;
		}
	}
	notify_device(pl, dev->id, stale ? &rec : NULL, stale ? 1 : 0, true, now_ms);
}

static int queue_msg(struct fleetmq_plugin *pl, const char *topic, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = fm_malloc(len ? len : 1);

	if(!buf) return FLEETMQ_ERR_NOMEM;
	protobuf_c_message_pack(m, buf);
	return publish__queue(pl, topic, buf, len, 1, false);
}

/* Fill a JobExecution message; strings point into rec/j; details must be
 * freed with free_details(). */
static void fill_execution(Fleetmq__V1__JobExecution *x, const struct fleetmq_job *j, const struct fleetmq_exec_rec *rec,
		Fleetmq__V1__JobExecution__StatusDetailsEntry ***entries, cJSON **details)
{
	const cJSON *it;
	size_t n = 0;

	fleetmq__v1__job_execution__init(x);
	x->job_id = (char *)rec->job_id;
	x->type = (Fleetmq__V1__JobType)j->type;
	x->status = (Fleetmq__V1__ExecutionStatus)rec->e.status;
	x->version = rec->e.version;
	x->attempt = rec->e.attempt;
	x->queued_at_ms = rec->e.queued_ms;
	x->started_at_ms = rec->e.started_ms;
	x->updated_at_ms = rec->e.updated_ms;
	x->document_json = j->document_json ? j->document_json : (char *)"{}";
	x->progress_percent = rec->e.progress_percent;
	x->step = (char *)(rec->step ? rec->step : "");
	x->timeout_ms = j->policy.in_progress_timeout_ms;
	x->queue_position = rec->seq;
	*details = cJSON_Parse(rec->details_json ? rec->details_json : "{}");
	*entries = NULL;
	if(*details && cJSON_GetArraySize(*details) > 0){
		*entries = fm_calloc((size_t)cJSON_GetArraySize(*details), sizeof(**entries));
		if(*entries){
			cJSON_ArrayForEach(it, *details){
				Fleetmq__V1__JobExecution__StatusDetailsEntry *e = fm_malloc(sizeof(*e));
				if(!e || !cJSON_IsString(it)){
					fm_free(e);
					continue;
				}
				fleetmq__v1__job_execution__status_details_entry__init(e);
				e->key = it->string;
				e->value = it->valuestring;
				(*entries)[n++] = e;
			}
		}
	}
	x->n_status_details = n;
	x->status_details = *entries;
}

static void free_details(Fleetmq__V1__JobExecution *x, Fleetmq__V1__JobExecution__StatusDetailsEntry **entries, cJSON *details)
{
	size_t i;
	for(i = 0; i < x->n_status_details; i++) fm_free(entries[i]);
	fm_free(entries);
	cJSON_Delete(details);
}

static void reject(struct fleetmq_plugin *pl, const char *topic, int code, const char *reason, const char *token,
		uint64_t version)
{
	handlers__reject(pl, topic, code, reason, token, version);
}

void job__handle_next_get(struct fleetmq_plugin *pl, const char *device_id, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms)
{
	Fleetmq__V1__JobNextGetRequest *req;
	Fleetmq__V1__JobNextGetAccepted ack = FLEETMQ__V1__JOB_NEXT_GET_ACCEPTED__INIT;
	Fleetmq__V1__JobExecution x;
	Fleetmq__V1__JobExecution__StatusDetailsEntry **entries = NULL;
	cJSON *details = NULL;
	struct queue_ctx q;
	struct fleetmq_exec_rec rec;
	struct fleetmq_job *j = NULL;
	char out_topic[600];

	req = fleetmq__v1__job_next_get_request__unpack(NULL, len, payload);
	if(!req){
		reject(pl, topic, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.JobNextGetRequest protobuf message", NULL, 0);
		return;
	}
	if(strlen(req->client_token) > 64){
		reject(pl, topic, FLEETMQ_ERR_BAD_REQUEST, "client_token is longer than 64 bytes", NULL, 0);
		fleetmq__v1__job_next_get_request__free_unpacked(req, NULL);
		return;
	}
	memset(&x, 0, sizeof(x));
	if(device_queue(pl, device_id, &q) == FLEETMQ_OK && q.n > 0){
		memset(&rec, 0, sizeof(rec));
		if(fleetmq_store_exec_get(pl->store, q.job_ids[0], device_id, &rec) == FLEETMQ_OK
				&& (j = job_get(pl, rec.job_id)) != NULL){
			fill_execution(&x, j, &rec, &entries, &details);
			ack.has_execution = true;
			ack.execution = &x;
		}
	}
	ack.client_token = req->client_token;
	ack.timestamp_ms = now_ms;
	snprintf(out_topic, sizeof(out_topic), "%s/accepted", topic);
	queue_msg(pl, out_topic, &ack.base);
	if(ack.has_execution) free_details(&x, entries, details);
	queue_ctx_free(&q);
	fleetmq__v1__job_next_get_request__free_unpacked(req, NULL);
}

static const char *validate_update(const Fleetmq__V1__JobExecutionUpdate *u)
{
	size_t i;

	switch(u->status){
		case FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_IN_PROGRESS:
		case FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_SUCCEEDED:
		case FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_FAILED:
		case FLEETMQ__V1__EXECUTION_STATUS__EXECUTION_STATUS_REJECTED:
			break;
		default:
			return "status must be IN_PROGRESS, SUCCEEDED, FAILED or REJECTED";
	}
	if(u->progress_percent < -1 || u->progress_percent > 100) return "progress_percent must be -1 (unknown) or 0..100";
	if(strlen(u->step) > MAX_STEP) return "step is longer than 64 bytes";
	if(strlen(u->client_token) > 64) return "client_token is longer than 64 bytes";
	if(strlen(u->failure_type) > MAX_STEP) return "failure_type is longer than 64 bytes";
	if(u->n_status_details > MAX_DETAILS) return "at most 16 status_details entries";
	for(i = 0; i < u->n_status_details; i++){
		if(!u->status_details[i]->key[0] || strlen(u->status_details[i]->key) > MAX_DETAIL_KEY
				|| strlen(u->status_details[i]->value) > MAX_DETAIL_VALUE){
			return "status_details keys must be 1..64 bytes and values at most 256 bytes";
		}
	}
	return NULL;
}

struct order_ctx {
	const char *job_id;
	uint64_t seq;
	uint64_t in_progress;
	uint64_t queued_before;
	char first_before[FLEETMQ_MAX_ID_BYTES + 1];
};

static int order_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	struct order_ctx *x = ud;

	if(!strcmp(rec->job_id, x->job_id)) return 0;
	if(rec->e.status == FM_EXEC_IN_PROGRESS){
		x->in_progress++;
	}else if(rec->e.status == FM_EXEC_QUEUED && rec->seq < x->seq){
		if(!x->queued_before) snprintf(x->first_before, sizeof(x->first_before), "%s", rec->job_id);
		x->queued_before++;
	}
	return 0;
}

void job__handle_update(struct fleetmq_plugin *pl, const char *device_id, const char *job_id, const char *topic,
		const void *payload, uint32_t len, uint64_t now_ms)
{
	Fleetmq__V1__JobExecutionUpdate *u;
	Fleetmq__V1__JobExecutionUpdateAccepted ack = FLEETMQ__V1__JOB_EXECUTION_UPDATE_ACCEPTED__INIT;
	struct fleetmq_exec_rec rec;
	struct fleetmq_execution old;
	struct fleetmq_exec_report report;
	enum fleetmq_exec_outcome outcome = FM_OUTCOME_APPLIED;
	struct fleetmq_job *j;
	cJSON *details = NULL;
	char *details_s = NULL;
	char reason[256], out_topic[600];
	const char *why;
	size_t i;
	int rc;

	u = fleetmq__v1__job_execution_update__unpack(NULL, len, payload);
	if(!u){
		reject(pl, topic, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.JobExecutionUpdate protobuf message", NULL, 0);
		return;
	}
	if((why = validate_update(u)) != NULL){
		reject(pl, topic, FLEETMQ_ERR_BAD_REQUEST, why, strlen(u->client_token) <= 64 ? u->client_token : NULL, 0);
		goto cleanup;
	}
	memset(&rec, 0, sizeof(rec));
	if(fleetmq_store_exec_get(pl->store, job_id, device_id, &rec) != FLEETMQ_OK
			|| rec.e.status == FM_EXEC_PENDING || !(j = job_get(pl, job_id))){
		snprintf(reason, sizeof(reason), "no execution of job '%s' for this device", job_id);
		reject(pl, topic, FLEETMQ_ERR_NOT_FOUND, reason, u->client_token, 0);
		goto cleanup;
	}
	/* The job was canceled and the batch has not reached this execution
	 * yet: cancel it now instead of letting the device start it. */
	if(j->status == FM_JOB_CANCELED && (rec.e.status == FM_EXEC_QUEUED
				|| (rec.e.status == FM_EXEC_IN_PROGRESS && j->cancel_force))){
		old = rec.e;
		if(fleetmq_exec_cancel(&rec.e, j->cancel_force, j->cancel_remove, now_ms)){
			exec_store(pl, j, &rec, &old, "fleetmq", now_ms);
		}
		snprintf(reason, sizeof(reason), "job '%s' was canceled", job_id);
		reject(pl, topic, FLEETMQ_ERR_VERSION_CONFLICT, reason, u->client_token, rec.e.version);
		notify_device(pl, device_id, NULL, 0, false, now_ms);
		goto cleanup;
	}
	/* In-order delivery: a queued execution may start only when it is at the
	 * head of the queue and fewer than max_in_progress are running. */
	if(rec.e.status == FM_EXEC_QUEUED && (u->expected_version == 0 || u->expected_version == rec.e.version)){
		/* (a stale version is left to the state machine: conflict or duplicate) */
		struct order_ctx oc;
		memset(&oc, 0, sizeof(oc));
		oc.job_id = job_id;
		oc.seq = rec.seq;
		fleetmq_store_exec_foreach_device(pl->store, device_id, true, order_cb, &oc);
		if(oc.queued_before > 0 || oc.in_progress >= (uint64_t)pl->cfg.jobs_max_in_progress){
			if(oc.queued_before > 0){
				snprintf(reason, sizeof(reason), "job '%s' is ahead in this device's queue and must run first", oc.first_before);
			}else{
				snprintf(reason, sizeof(reason), "%" PRIu64 " execution(s) already in progress (jobs.max_in_progress_per_device = %lld)",
						oc.in_progress, pl->cfg.jobs_max_in_progress);
			}
			/* re-read: the walk reused the store's scratch */
			fleetmq_store_exec_get(pl->store, job_id, device_id, &rec);
			reject(pl, topic, FLEETMQ_ERR_BAD_REQUEST, reason, u->client_token, rec.e.version);
			goto cleanup;
		}
		fleetmq_store_exec_get(pl->store, job_id, device_id, &rec);
	}

	old = rec.e;
	report.status = (enum fleetmq_exec_status)u->status;
	report.expected_version = u->expected_version;
	report.progress_percent = u->progress_percent;
	reason[0] = '\0';
	rc = fleetmq_exec_apply_report(&rec.e, &report, &j->policy, now_ms, &outcome, reason, sizeof(reason));
	if(rc != FLEETMQ_OK){
		reject(pl, topic, rc, reason[0] ? reason : fleetmq_strerror(rc), u->client_token, rec.e.version);
		goto cleanup;
	}
	if(outcome != FM_OUTCOME_DUPLICATE){
		/* status details: merge the report's entries into the stored map */
		details = cJSON_Parse(rec.details_json ? rec.details_json : "{}");
		if(!cJSON_IsObject(details)){
			cJSON_Delete(details);
			details = cJSON_CreateObject();
		}
		for(i = 0; details && i < u->n_status_details; i++){
			cJSON_DeleteItemFromObjectCaseSensitive(details, u->status_details[i]->key);
			cJSON_AddStringToObject(details, u->status_details[i]->key, u->status_details[i]->value);
		}
		if(details && u->failure_type[0]){
			cJSON_DeleteItemFromObjectCaseSensitive(details, "failure_type");
			cJSON_AddStringToObject(details, "failure_type", u->failure_type);
		}
		while(details && cJSON_GetArraySize(details) > MAX_DETAILS){
			cJSON_DeleteItemFromArray(details, 0);   /* bounded: oldest entries go first */
		}
		details_s = details ? cJSON_PrintUnformatted(details) : NULL;
		rec.details_json = details_s ? details_s : "{}";
		if(u->step[0]) rec.step = u->step;
		if(exec_store(pl, j, &rec, &old, device_id, now_ms) != FLEETMQ_OK){
			reject(pl, topic, FLEETMQ_ERR_INTERNAL, "cannot store the execution", u->client_token, old.version);
			goto cleanup;
		}
	}
	ack.job_id = (char *)job_id;
	ack.status = (Fleetmq__V1__ExecutionStatus)rec.e.status;
	ack.version = rec.e.version;
	ack.duplicate = outcome == FM_OUTCOME_DUPLICATE;
	ack.retry_scheduled = rec.e.retry_at_ms != 0;
	ack.client_token = u->client_token;
	ack.timestamp_ms = now_ms;
	snprintf(out_topic, sizeof(out_topic), "%s/accepted", topic);
	queue_msg(pl, out_topic, &ack.base);
	if(outcome != FM_OUTCOME_DUPLICATE && fleetmq_exec_is_terminal(rec.e.status)){
		notify_device(pl, device_id, NULL, 0, false, now_ms);
		job_after_change(pl, j, now_ms);
		maybe_complete(pl, j, now_ms);
	}

cleanup:
	cJSON_Delete(details);
	fm_free(details_s);
	fleetmq__v1__job_execution_update__free_unpacked(u, NULL);
}

/* ---------------------------------------------------------------- operator commands */

static cJSON *counts_json(const uint64_t *counts, const uint64_t *retry)
{
	static const char *const names[FM_EXEC_STATUS_COUNT] = {
		"pending", "queued", "inProgress", "succeeded", "failed", "rejected", "timedOut", "canceled", "removed"
	};
	cJSON *o = cJSON_CreateObject();
	uint64_t r = 0;
	int s;

	for(s = 0; s < FM_EXEC_STATUS_COUNT; s++){
		cJSON_AddNumberToObject(o, names[s], (double)counts[s]);
		if(retry) r += retry[s];
	}
	if(retry) cJSON_AddNumberToObject(o, "retryPending", (double)r);
	cJSON_AddNumberToObject(o, "total", (double)sum(counts));
	return o;
}

static void job_json(struct fleetmq_job *j, cJSON *o, bool full)
{
	cJSON_AddStringToObject(o, "jobId", j->id);
	cJSON_AddStringToObject(o, "type", job_type_name(j->type));
	cJSON_AddStringToObject(o, "status", job_status_name(j->status));
	cJSON_AddStringToObject(o, "statusReason", j->status_reason ? j->status_reason : "");
	cJSON_AddBoolToObject(o, "continuous", j->continuous);
	cJSON_AddNumberToObject(o, "createdMs", (double)j->created_ms);
	cJSON_AddNumberToObject(o, "updatedMs", (double)j->updated_ms);
	cJSON_AddStringToObject(o, "createdBy", j->created_by ? j->created_by : "");
	if(json_str(j->spec, "description")) cJSON_AddStringToObject(o, "description", json_str(j->spec, "description"));
	cJSON_AddItemToObject(o, "counts", counts_json(j->counts, j->retry_pending));
	if(full){
		cJSON *r;
		sync_rollout(j);
		cJSON_AddItemToObject(o, "document", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j->spec, "document"), 1));
		cJSON_AddItemToObject(o, "targets", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j->spec, "targets"), 1));
		r = cJSON_AddObjectToObject(o, "rollout");
		cJSON_AddStringToObject(r, "phase", job_open(j) || j->rs.phase == FM_ROLLOUT_ABORTED
				? fleetmq_rollout_phase_name(j->rs.phase) : (j->status == FM_JOB_CANCELED ? "CANCELED" : "DONE"));
		cJSON_AddNumberToObject(r, "targets", (double)j->rs.targets);
		cJSON_AddBoolToObject(r, "targetsComplete", j->fanout_done);
		cJSON_AddNumberToObject(r, "released", (double)j->rs.released);
		cJSON_AddNumberToObject(r, "canaryTargets", (double)j->rs.canary_targets);
		cJSON_AddNumberToObject(r, "canaryReleased", (double)j->rs.canary_released);
		cJSON_AddNumberToObject(r, "canarySucceeded", (double)j->rs.canary_succeeded);
		cJSON_AddNumberToObject(r, "ratePerMinute", (double)fleetmq_rollout_rate(&j->rollout, &j->rs));
		cJSON_AddItemToObject(r, "canaryCounts", counts_json(j->canary_counts, j->canary_retry));
		cJSON_AddItemToObject(o, "spec", cJSON_Duplicate(j->spec, 1));
	}
}

static int require_job_id(const cJSON *cmd, const char **id, char *err, size_t errlen)
{
	*id = control__string(cmd, "jobId");
	if(!*id || !fleetmq_id_valid(*id, strlen(*id))){
		snprintf(err, errlen, "'jobId' (string, 1..128 bytes of UTF-8, no '/', '+', '#') is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	return FLEETMQ_OK;
}

int job__cmd_create(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct fleetmq_job *j = NULL, *existing;
	cJSON *spec = NULL;
	const char *id = control__string(cmd, "jobId");
	char gen_id[64];
	int rc;

	if(cJSON_GetObjectItemCaseSensitive(cmd, "jobId") && !id){
		snprintf(err, errlen, "'jobId' must be a string");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(id && !fleetmq_id_valid(id, strlen(id))){
		snprintf(err, errlen, "'jobId' must be 1..128 bytes without '/', '+', '#'");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(!id){
		snprintf(gen_id, sizeof(gen_id), "job-%" PRIu64 "-%" PRIu64, c->now_ms, ++pl->job_id_counter);
		id = gen_id;
	}
	/* normalized spec: the command minus transport fields */
	spec = cJSON_Duplicate(cmd, 1);
	if(!spec) return FLEETMQ_ERR_NOMEM;
	cJSON_DeleteItemFromObjectCaseSensitive(spec, "command");
	cJSON_DeleteItemFromObjectCaseSensitive(spec, "correlationData");
	cJSON_DeleteItemFromObjectCaseSensitive(spec, "jobId");

	existing = job_get(pl, id);
	if(existing){
		rc = cJSON_Compare(existing->spec, spec, true) ? FLEETMQ_OK : FLEETMQ_ERR_VERSION_CONFLICT;
		cJSON_Delete(spec);
		if(rc){
			snprintf(err, errlen, "job '%s' exists with a different definition", id);
			return rc;
		}
		cJSON_AddStringToObject(data, "jobId", id);
		cJSON_AddBoolToObject(data, "created", false);
		cJSON_AddStringToObject(data, "status", job_status_name(existing->status));
		return FLEETMQ_OK;
	}

	j = fm_calloc(1, sizeof(*j));
	if(!j){
		cJSON_Delete(spec);
		return FLEETMQ_ERR_NOMEM;
	}
	j->spec = spec;
	rc = job_from_spec(pl, j, err, errlen);
	if(rc) goto fail;
	j->id = fm_strdup(id);
	j->spec_json = cJSON_PrintUnformatted(spec);
	j->document_json = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(spec, "document"));
	j->created_by = fm_strdup(c->actor);
	j->status_reason = fm_strdup("");
	if(!j->id || !j->spec_json || !j->document_json || !j->created_by || !j->status_reason){
		rc = FLEETMQ_ERR_NOMEM;
		goto fail;
	}
	j->seq = pl->next_seq++;
	j->status = FM_JOB_SCHEDULED;
	j->created_ms = j->updated_ms = c->now_ms;
	j->counted = true;
	fleetmq_rollout_init(&j->rs, c->now_ms);
	if(job_persist(pl, j) != FLEETMQ_OK){
		snprintf(err, errlen, "cannot store the job");
		rc = FLEETMQ_ERR_INTERNAL;
		goto fail;
	}
	HASH_ADD_KEYPTR(hh, pl->jobs, j->id, strlen(j->id), j);
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: job %s (%s) created by %s", j->id, job_type_name(j->type), c->actor);
	cJSON_AddStringToObject(data, "jobId", j->id);
	cJSON_AddBoolToObject(data, "created", true);
	cJSON_AddStringToObject(data, "status", job_status_name(j->status));
	return FLEETMQ_OK;

fail:
	job_free(j);
	return rc;
}

int job__cmd_cancel(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct fleetmq_job *j;
	const cJSON *force = cJSON_GetObjectItemCaseSensitive(cmd, "force");
	const cJSON *remove = cJSON_GetObjectItemCaseSensitive(cmd, "remove");
	const char *id, *why = control__string(cmd, "reason");
	char reason[300];
	int rc;

	if((rc = require_job_id(cmd, &id, err, errlen))) return rc;
	if((force && !cJSON_IsBool(force)) || (remove && !cJSON_IsBool(remove))){
		snprintf(err, errlen, "'force' and 'remove' must be true or false");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	j = job_get(pl, id);
	if(!j){
		snprintf(err, errlen, "no job '%s'", id);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	if(!job_open(j)){
		snprintf(err, errlen, "job '%s' is already %s", id, job_status_name(j->status));
		return FLEETMQ_ERR_VERSION_CONFLICT;
	}
	snprintf(reason, sizeof(reason), "canceled by %s%s%.200s", c->actor, why ? ": " : "", why ? why : "");
	job_cancel_begin(pl, j, reason, cJSON_IsTrue(force), cJSON_IsTrue(remove), c->now_ms);
	cJSON_AddStringToObject(data, "jobId", id);
	cJSON_AddStringToObject(data, "status", job_status_name(j->status));
	return FLEETMQ_OK;
}

int job__cmd_describe(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct fleetmq_job *j;
	const char *id;
	int rc;

	if((rc = require_job_id(cmd, &id, err, errlen))) return rc;
	j = job_get(pl, id);
	if(!j){
		snprintf(err, errlen, "no job '%s'", id);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	job_json(j, cJSON_AddObjectToObject(data, "job"), true);
	return FLEETMQ_OK;
}

struct list_ctx {
	struct fleetmq_plugin *pl;
	char *ids[1000];
	uint64_t seqs[1000];
	size_t n, max;
};

static int list_cb(const struct fleetmq_job_rec *rec, void *ud)
{
	struct list_ctx *x = ud;
	if(x->n >= x->max) return 1;
	x->ids[x->n] = fm_strdup(rec->id);
	x->seqs[x->n] = rec->seq;
	if(x->ids[x->n]) x->n++;
	return 0;
}

int job__cmd_list(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct list_ctx x;
	const char *status = control__string(cmd, "status");
	cJSON *arr;
	uint64_t limit, after;
	int filter = -1, rc, i;
	size_t k;

	if((rc = control__uint(cmd, "limit", 100, 1000, &limit, err, errlen))) return rc;
	if((rc = control__uint(cmd, "afterSeq", 0, UINT64_MAX >> 11, &after, err, errlen))) return rc;
	if(status){
		for(i = 0; i < 4; i++) if(!strcmp(status, job_status_names[i])) filter = i;
		if(filter < 0){
			snprintf(err, errlen, "'status' must be SCHEDULED, IN_PROGRESS, COMPLETED or CANCELED");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
	}
	memset(&x, 0, sizeof(x));
	x.pl = pl;
	x.max = (size_t)limit;
	rc = fleetmq_store_job_list(pl->store, filter, after, (int)limit, list_cb, &x);
	arr = cJSON_AddArrayToObject(data, "jobs");
	for(k = 0; k < x.n; k++){
		struct fleetmq_job *j = job_get(pl, x.ids[k]);
		if(j){
			cJSON *o = cJSON_CreateObject();
			job_json(j, o, false);
			cJSON_AddNumberToObject(o, "seq", (double)j->seq);
			cJSON_AddItemToArray(arr, o);
		}
		fm_free(x.ids[k]);
	}
	if(x.n == x.max && x.n > 0) cJSON_AddNumberToObject(data, "nextAfterSeq", (double)x.seqs[x.n - 1]);
	return rc < 0 ? FLEETMQ_ERR_INTERNAL : FLEETMQ_OK;
}

static cJSON *exec_json(const struct fleetmq_exec_rec *rec)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "jobId", rec->job_id);
	cJSON_AddStringToObject(o, "deviceId", rec->device_id);
	cJSON_AddStringToObject(o, "status", rec->e.status == FM_EXEC_PENDING ? "PENDING" : fleetmq_exec_status_name(rec->e.status));
	cJSON_AddNumberToObject(o, "version", (double)rec->e.version);
	cJSON_AddNumberToObject(o, "attempt", rec->e.attempt);
	cJSON_AddNumberToObject(o, "queuePosition", (double)rec->seq);
	cJSON_AddBoolToObject(o, "canary", rec->canary);
	cJSON_AddNumberToObject(o, "queuedMs", (double)rec->e.queued_ms);
	cJSON_AddNumberToObject(o, "startedMs", (double)rec->e.started_ms);
	cJSON_AddNumberToObject(o, "updatedMs", (double)rec->e.updated_ms);
	if(rec->e.deadline_ms) cJSON_AddNumberToObject(o, "deadlineMs", (double)rec->e.deadline_ms);
	if(rec->e.retry_at_ms) cJSON_AddNumberToObject(o, "retryAtMs", (double)rec->e.retry_at_ms);
	cJSON_AddNumberToObject(o, "progressPercent", rec->e.progress_percent);
	cJSON_AddStringToObject(o, "step", rec->step ? rec->step : "");
	cJSON_AddItemToObject(o, "statusDetails", cJSON_Parse(rec->details_json ? rec->details_json : "{}"));
	return o;
}

struct exec_list_ctx {
	cJSON *arr;
	size_t n, max;
	char last[FLEETMQ_MAX_ID_BYTES + 1];
	int status;
};

static int exec_list_cb(const struct fleetmq_exec_rec *rec, void *ud)
{
	struct exec_list_ctx *x = ud;
	if(x->status >= 0 && (int)rec->e.status != x->status) return 0;
	if(x->n >= x->max) return 1;
	cJSON_AddItemToArray(x->arr, exec_json(rec));
	snprintf(x->last, sizeof(x->last), "%s", rec->device_id);
	x->n++;
	return 0;
}

int job__cmd_list_executions(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct exec_list_ctx x;
	const char *job = control__string(cmd, "jobId");
	const char *dev = control__string(cmd, "deviceId");
	const char *status = control__string(cmd, "status");
	const char *after = control__string(cmd, "after");
	uint64_t limit;
	int rc;

	if((rc = control__uint(cmd, "limit", 100, 10000, &limit, err, errlen))) return rc;
	if(!job == !dev){
		snprintf(err, errlen, "give exactly one of 'jobId' or 'deviceId'");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	memset(&x, 0, sizeof(x));
	x.max = (size_t)limit;
	x.status = -1;
	if(status){
		x.status = !strcmp(status, "PENDING") ? 0 : fleetmq_exec_status_parse(status);
		if(x.status < 0){
			snprintf(err, errlen, "unknown execution status '%.32s'", status);
			return FLEETMQ_ERR_BAD_REQUEST;
		}
	}
	x.arr = cJSON_AddArrayToObject(data, "executions");
	if(job){
		if(!job_get(pl, job)){
			snprintf(err, errlen, "no job '%s'", job);
			return FLEETMQ_ERR_NOT_FOUND;
		}
		rc = fleetmq_store_exec_foreach_job(pl->store, job, x.status, after ? after : "", (int)limit + 1, exec_list_cb, &x);
	}else{
		rc = fleetmq_store_exec_foreach_device(pl->store, dev, false, exec_list_cb, &x);
	}
	if(rc < 0){
		snprintf(err, errlen, "cannot list executions: %s", fleetmq_store_last_error(pl->store));
		return FLEETMQ_ERR_INTERNAL;
	}
	cJSON_AddNumberToObject(data, "count", (double)x.n);
	if(rc == 1 && job) cJSON_AddStringToObject(data, "next", x.last);
	return FLEETMQ_OK;
}

int job__cmd_describe_execution(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *data,
		char *err, size_t errlen)
{
	struct fleetmq_exec_rec rec;
	const char *job, *dev = control__string(cmd, "deviceId");
	int rc;

	if((rc = require_job_id(cmd, &job, err, errlen))) return rc;
	if(!dev){
		snprintf(err, errlen, "'deviceId' (string) is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	memset(&rec, 0, sizeof(rec));
	if(fleetmq_store_exec_get(pl->store, job, dev, &rec) != FLEETMQ_OK){
		snprintf(err, errlen, "no execution of job '%s' on device '%s'", job, dev);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	cJSON_AddItemToObject(data, "execution", exec_json(&rec));
	return FLEETMQ_OK;
}

cJSON *job__pb_to_json(const struct Fleetmq__V1__CreateJobRequest *req)
{
	cJSON *cmd = cJSON_CreateObject(), *targets, *doc, *opts = NULL, *it, *next;
	size_t i;

	if(!cmd) return NULL;
	cJSON_AddStringToObject(cmd, "command", "createJob");
	if(req->job_id[0]) cJSON_AddStringToObject(cmd, "jobId", req->job_id);
	if(req->correlation[0]) cJSON_AddStringToObject(cmd, "correlationData", req->correlation);
	cJSON_AddStringToObject(cmd, "type", job_type_name(req->type));
	if(req->description[0]) cJSON_AddStringToObject(cmd, "description", req->description);
	doc = cJSON_ParseWithOpts(req->document_json[0] ? req->document_json : "{}", NULL, 1);
	if(!cJSON_IsObject(doc)){
		cJSON_Delete(doc);   /* valid JSON but not an object (e.g. an array) */
		goto fail;
	}
	cJSON_AddItemToObject(cmd, "document", doc);
	targets = cJSON_AddObjectToObject(cmd, "targets");
	if(req->n_target_devices){
		cJSON *a = cJSON_AddArrayToObject(targets, "devices");
		for(i = 0; i < req->n_target_devices; i++) cJSON_AddItemToArray(a, cJSON_CreateString(req->target_devices[i]));
	}
	if(req->n_target_groups){
		cJSON *a = cJSON_AddArrayToObject(targets, "groups");
		for(i = 0; i < req->n_target_groups; i++) cJSON_AddItemToArray(a, cJSON_CreateString(req->target_groups[i]));
	}
	if(req->target_all) cJSON_AddBoolToObject(targets, "all", true);
	if(req->n_target_match){
		cJSON *m = cJSON_AddObjectToObject(targets, "match");
		cJSON *attrs = NULL;
		for(i = 0; i < req->n_target_match; i++){
			const char *k = req->target_match[i]->key, *v = req->target_match[i]->value;
			if(!strcmp(k, "deviceType") || !strcmp(k, "hwRevision")){
				cJSON_AddStringToObject(m, k, v);
			}else{
				if(!attrs) attrs = cJSON_AddObjectToObject(m, "attributes");
				cJSON_AddStringToObject(attrs, k, v);
			}
		}
	}
	if(req->continuous) cJSON_AddBoolToObject(cmd, "continuous", true);
	if(req->options_json[0]){
		opts = cJSON_ParseWithOpts(req->options_json, NULL, 1);
		if(!cJSON_IsObject(opts)) goto fail;
		for(it = opts->child; it; it = next){
			next = it->next;
			if(!strcmp(it->string, "rollout") || !strcmp(it->string, "abort") || !strcmp(it->string, "retry")
					|| !strcmp(it->string, "timeoutMs")){
				cJSON_AddItemToObject(cmd, it->string, cJSON_DetachItemViaPointer(opts, it));
			}
		}
		cJSON_Delete(opts);
	}
	return cmd;
fail:
	cJSON_Delete(opts);
	cJSON_Delete(cmd);
	return NULL;
}
