/*
 * cli_jobs.c - `fleetmq jobs create | list | show | cancel | watch`.
 *
 * create builds a createJob request for the operator API from a JSON file
 * (--file), flags, or both (flags override the file's members), and for an
 * update job with --artifact copies the artifact's signed metadata
 * (<artifacts dir>/<name>.json) into the job document, so devices can check
 * compatibility and the signature before downloading anything.
 *
 * watch polls describeJob every --interval-ms on one connection and draws
 * the execution counts per state: redrawn in place on a terminal, one line
 * per change (at least every WATCH_HEARTBEAT_MS) otherwise, one JSON object
 * per change with --json. It ends when the job is COMPLETED or CANCELED;
 * the exit status says how it went (see watch_exit_code).
 *
 * Must never: change a job except through createJob / cancelJob, or claim
 * success for a job that did not complete with every execution succeeded.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifact_sig.h"
#include "cli.h"
#include "fleetmq_alloc.h"

#define WATCH_DEFAULT_INTERVAL_MS 1000
#define WATCH_HEARTBEAT_MS 10000
#define WATCH_RECONNECT_GRACE_MS 30000
#define BAR_CELLS 30
#define PAGE_JOBS 1000

/* Execution states in display order: counts key, label. */
static const struct { const char *key; const char *label; } states[] = {
	{ "pending", "pending" },
	{ "queued", "queued" },
	{ "inProgress", "in progress" },
	{ "succeeded", "succeeded" },
	{ "failed", "failed" },
	{ "rejected", "rejected" },
	{ "timedOut", "timed out" },
	{ "canceled", "canceled" },
	{ "removed", "removed" },
};
#define N_STATES (sizeof(states) / sizeof(states[0]))

static const char *const job_types[] = { "update", "config", "feature", "custom", NULL };

/* ================================================================
 * shared: counts and progress
 * ================================================================ */

static uint64_t count_of(const cJSON *counts, const char *key)
{
	return cli_ju64(counts, key);
}

/* Executions that ended without success (failed, rejected, timed out). */
static uint64_t bad_count(const cJSON *counts)
{
	return count_of(counts, "failed") + count_of(counts, "rejected") + count_of(counts, "timedOut");
}

static uint64_t final_count(const cJSON *counts)
{
	return count_of(counts, "succeeded") + bad_count(counts) + count_of(counts, "canceled")
			+ count_of(counts, "removed");
}

/* Print the per-state bars, one line each, indented. */
static void print_progress(FILE *out, const cJSON *job)
{
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(job, "counts");
	uint64_t total = count_of(counts, "total");
	char bar[BAR_CELLS + 8];
	size_t i;

	for(i = 0; i < N_STATES; i++){
		uint64_t n = count_of(counts, states[i].key);
		if(!strcmp(states[i].key, "removed") && n == 0) continue;   /* only after cancel --remove */
		cli_format_bar(bar, sizeof(bar), n, total, BAR_CELLS);
		fprintf(out, "  %-12s %s %6" PRIu64 "\n", states[i].label, bar, n);
	}
}

/* "update job fw-1 IN_PROGRESS, 7/10 final (70%)" style summary. */
static void format_summary(char *buf, size_t len, const cJSON *job)
{
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(job, "counts");
	uint64_t total = count_of(counts, "total"), fin = final_count(counts);

	snprintf(buf, len, "%" PRIu64 " target%s, %" PRIu64 " final (%d%%): %" PRIu64 " succeeded, %" PRIu64 " failed, %"
			PRIu64 " rejected, %" PRIu64 " timed out, %" PRIu64 " canceled; %" PRIu64 " pending, %" PRIu64
			" queued, %" PRIu64 " in progress", total, total == 1 ? "" : "s", fin,
			total ? (int)(fin * 100 / total) : 0, count_of(counts, "succeeded"), count_of(counts, "failed"),
			count_of(counts, "rejected"), count_of(counts, "timedOut"), count_of(counts, "canceled"),
			count_of(counts, "pending"), count_of(counts, "queued"), count_of(counts, "inProgress"));
}

/*
 * Exit status of a job that ended (documented in docs/CLI.md):
 *   0  COMPLETED and no execution failed, was rejected or timed out;
 *   5  COMPLETED with at least one failed / rejected / timed-out execution,
 *      or CANCELED (by an operator or aborted by the rollout's criteria).
 * -1 while the job is still open.
 */
static int watch_exit_code(const cJSON *job, const char **outcome)
{
	const char *status = cli_jstr(job, "status");
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(job, "counts");

	if(!strcmp(status, "COMPLETED")){
		if(bad_count(counts) == 0){
			*outcome = "succeeded";
			return CLI_EXIT_OK;
		}
		*outcome = "completed with failures";
		return CLI_EXIT_JOB_FAILED;
	}
	if(!strcmp(status, "CANCELED")){
		*outcome = !strncmp(cli_jstr(job, "statusReason"), "aborted", 7) ? "aborted" : "canceled";
		return CLI_EXIT_JOB_FAILED;
	}
	*outcome = "running";
	return -1;
}

/* ================================================================
 * create
 * ================================================================ */

/* Replace (or add) member key of obj with item (taken). */
static void set_item(cJSON *obj, const char *key, cJSON *item)
{
	if(!item) return;
	if(cJSON_GetObjectItemCaseSensitive(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item);
	else cJSON_AddItemToObject(obj, key, item);
}

/* The object member key of obj, created if absent (or not an object). */
static cJSON *sub_object(cJSON *obj, const char *key)
{
	cJSON *o = cJSON_GetObjectItemCaseSensitive(obj, key);

	if(cJSON_IsObject(o)) return o;
	o = cJSON_CreateObject();
	set_item(obj, key, o);
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Integer option into obj.key (if given). */
static int uint_member(const struct cli_args *a, int opt, uint64_t min, uint64_t max, cJSON *obj, const char *key)
{
	uint64_t v = 0;
	bool given = false;
	int rc = cli_opt_uint(a, opt, min, max, &v, &given);

	if(rc == CLI_EXIT_OK && given) set_item(obj, key, cJSON_CreateNumber((double)v));
	return rc;
}

/* --abort TYPE:PERCENT[:MIN] -> {"failureType","thresholdPercent","minExecuted"} */
static cJSON *parse_abort(const char *spec)
{
	char type[32], *p;
	const char *colon = strchr(spec, ':');
	uint64_t pct = 0, min = 1;
	cJSON *o;
	size_t i, n;

	if(!colon || (size_t)(colon - spec) >= sizeof(type)) goto bad;
	n = (size_t)(colon - spec);
	for(i = 0; i < n; i++) type[i] = spec[i] == '-' ? '_' : (char)toupper((unsigned char)spec[i]);
	type[n] = '\0';
	if(strcmp(type, "ANY") && strcmp(type, "FAILED") && strcmp(type, "REJECTED") && strcmp(type, "TIMED_OUT")) goto bad;
	pct = strtoull(colon + 1, &p, 10);
	if(p == colon + 1 || pct < 1 || pct > 100) goto bad;
	if(*p == ':'){
		const char *m = p + 1;
		min = strtoull(m, &p, 10);
		if(p == m || min < 1 || min > 10000000) goto bad;
	}
	if(*p) goto bad;
	o = cJSON_CreateObject();
	if(!o) return NULL;
	cJSON_AddStringToObject(o, "failureType", type);
	cJSON_AddNumberToObject(o, "thresholdPercent", (double)pct);
	cJSON_AddNumberToObject(o, "minExecuted", (double)min);
	return o;
bad:
	fprintf(stderr, "fleetmq: --abort '%s': expected TYPE:PERCENT[:MIN] with TYPE one of ANY, FAILED, REJECTED,\n"
			"fleetmq: TIMED_OUT, PERCENT 1..100 and MIN (executions finished before judging) >= 1, e.g. FAILED:20:5\n", spec);
	return NULL;
}

/* Fill the document of an update job from <dir>/<name>.json. */
static int artifact_document(const struct cli_globals *g, const char *name, cJSON *req)
{
	struct fleetmq_artifact_meta meta;
	char path[4096 + 8], payload[4096], err[256];
	cJSON *md = NULL, *doc, *it;
	struct stat st;
	int rc;

	memset(&meta, 0, sizeof(meta));
	if(!g->artifacts_dir){
		fprintf(stderr, "fleetmq: --artifact needs the artifact store: give --artifacts-dir DIR (or artifacts.dir in the config file)\n");
		return CLI_EXIT_USAGE;
	}
	if(!cli_check_id("artifact name", name)) return CLI_EXIT_USAGE;
	snprintf(payload, sizeof(payload), "%s/%s", g->artifacts_dir, name);
	snprintf(path, sizeof(path), "%s.json", payload);
	rc = cli_read_json_file(path, "artifact metadata", true, &md);
	if(rc != CLI_EXIT_OK) return rc;
	if(fleetmq_artifact_meta_parse(md, &meta, err, sizeof(err)) != FLEETMQ_SIG_OK){
		fprintf(stderr, "fleetmq: artifact metadata %s: %s\n", path, err);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	if(strcmp(meta.name, name)){
		fprintf(stderr, "fleetmq: artifact metadata %s names artifact '%s', not '%s'\n", path, meta.name, name);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	if(!meta.signature || !meta.key_id[0]){
		fprintf(stderr, "fleetmq: artifact %s is not signed: devices refuse unsigned updates (fleetmq keys sign %s --key KEY)\n",
				name, path);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	if(stat(payload, &st) != 0 || !S_ISREG(st.st_mode)){
		fprintf(stderr, "fleetmq: warning: no payload %s next to its metadata; the broker must serve it from its artifacts.dir\n",
				payload);
	}else if((uint64_t)st.st_size != meta.size){
		fprintf(stderr, "fleetmq: artifact %s: payload is %lld bytes, its metadata says %" PRIu64 "\n", payload,
				(long long)st.st_size, meta.size);
		rc = CLI_EXIT_LOCAL;
		goto cleanup;
	}
	doc = sub_object(req, "document");
	for(it = md->child; it; it = it->next){
		set_item(doc, it->string, cJSON_Duplicate(it, 1));
	}
	set_item(doc, "artifact", cJSON_CreateString(name));
	rc = CLI_EXIT_OK;

cleanup:
	fleetmq_artifact_meta_free(&meta);
	cJSON_Delete(md);
	return rc;
}

/* Apply the target flags to req.targets. */
static int build_targets(const struct cli_args *a, cJSON *req)
{
	cJSON *targets = NULL, *list;
	int i;

	if(cli_flag(a, OPT_DEVICES) || cli_flag(a, OPT_GROUPS) || cli_flag(a, OPT_MATCH) || cli_flag(a, OPT_ALL)){
		targets = sub_object(req, "targets");
		if(!targets) return cli_oom();
	}
	if(cli_flag(a, OPT_DEVICES)){
		if(!(list = cli_split_list(a, OPT_DEVICES, true))) return CLI_EXIT_USAGE;
		set_item(targets, "devices", list);
	}
	if(cli_flag(a, OPT_GROUPS)){
		if(!(list = cli_split_list(a, OPT_GROUPS, true))) return CLI_EXIT_USAGE;
		set_item(targets, "groups", list);
	}
	if(cli_flag(a, OPT_ALL)) set_item(targets, "all", cJSON_CreateTrue());
	for(i = 0; i < a->nvals[OPT_MATCH]; i++){
		const char *kv = a->vals[OPT_MATCH][i], *eq = strchr(kv, '=');
		cJSON *match = sub_object(targets, "match");
		char key[65];

		if(!eq || eq == kv || (size_t)(eq - kv) >= sizeof(key)){
			fprintf(stderr, "fleetmq: --match '%s': expected KEY=VALUE (deviceType=..., hwRevision=..., or an attribute)\n", kv);
			return CLI_EXIT_USAGE;
		}
		memcpy(key, kv, (size_t)(eq - kv));
		key[eq - kv] = '\0';
		if(!strcmp(key, "deviceType") || !strcmp(key, "hwRevision")){
			set_item(match, key, cJSON_CreateString(eq + 1));
		}else{
			set_item(sub_object(match, "attributes"), key, cJSON_CreateString(eq + 1));
		}
	}
	return CLI_EXIT_OK;
}

static int build_policies(const struct cli_args *a, cJSON *req)
{
	cJSON *rollout = NULL, *canary, *ramp, *retry, *arr;
	int rc = CLI_EXIT_OK, i;

	if(cli_flag(a, OPT_CONTINUOUS)) set_item(req, "continuous", cJSON_CreateTrue());
	if(cli_flag(a, OPT_MAX_PER_MINUTE) || cli_flag(a, OPT_RAMP_BASE) || cli_flag(a, OPT_RAMP_FACTOR_PERCENT)
			|| cli_flag(a, OPT_RAMP_STEP_SUCCESSES) || cli_flag(a, OPT_CANARY_COUNT) || cli_flag(a, OPT_CANARY_PERCENT)
			|| cli_flag(a, OPT_CANARY_GROUP) || cli_flag(a, OPT_CANARY_SUCCESS_PERCENT)){
		rollout = sub_object(req, "rollout");
		if(!rollout) return cli_oom();
	}
	if(!rc) rc = uint_member(a, OPT_MAX_PER_MINUTE, 0, 10000000, rollout, "maxPerMinute");
	if(!rc && (cli_flag(a, OPT_RAMP_BASE) || cli_flag(a, OPT_RAMP_FACTOR_PERCENT) || cli_flag(a, OPT_RAMP_STEP_SUCCESSES))){
		ramp = sub_object(rollout, "ramp");
		rc = uint_member(a, OPT_RAMP_BASE, 1, 10000000, ramp, "basePerMinute");
		if(!rc) rc = uint_member(a, OPT_RAMP_FACTOR_PERCENT, 100, 10000, ramp, "factorPercent");
		if(!rc) rc = uint_member(a, OPT_RAMP_STEP_SUCCESSES, 1, 1000000, ramp, "stepSuccesses");
	}
	if(!rc && (cli_flag(a, OPT_CANARY_COUNT) || cli_flag(a, OPT_CANARY_PERCENT) || cli_flag(a, OPT_CANARY_GROUP)
			|| cli_flag(a, OPT_CANARY_SUCCESS_PERCENT))){
		canary = sub_object(rollout, "canary");
		rc = uint_member(a, OPT_CANARY_COUNT, 1, 1000000, canary, "count");
		if(!rc) rc = uint_member(a, OPT_CANARY_PERCENT, 1, 100, canary, "percent");
		if(!rc) rc = uint_member(a, OPT_CANARY_SUCCESS_PERCENT, 0, 100, canary, "successPercent");
		if(!rc && cli_flag(a, OPT_CANARY_GROUP)){
			if(!cli_check_id("canary group", cli_opt(a, OPT_CANARY_GROUP))) return CLI_EXIT_USAGE;
			set_item(canary, "group", cJSON_CreateString(cli_opt(a, OPT_CANARY_GROUP)));
		}
	}
	if(rc) return rc;
	if(a->nvals[OPT_ABORT] > 0){
		arr = cJSON_CreateArray();
		if(!arr) return cli_oom();
		set_item(req, "abort", arr);
		for(i = 0; i < a->nvals[OPT_ABORT]; i++){
			cJSON *c = parse_abort(a->vals[OPT_ABORT][i]);
			if(!c) return CLI_EXIT_USAGE;
			cJSON_AddItemToArray(arr, c);
		}
	}
	rc = uint_member(a, OPT_EXEC_TIMEOUT_MS, 0, 30ULL * 24 * 3600 * 1000, req, "timeoutMs");
	if(rc) return rc;
	if(cli_flag(a, OPT_RETRY_FAILED) || cli_flag(a, OPT_RETRY_TIMED_OUT) || cli_flag(a, OPT_RETRY_BACKOFF_MS)){
		retry = sub_object(req, "retry");
		rc = uint_member(a, OPT_RETRY_FAILED, 0, 100, retry, "failed");
		if(!rc) rc = uint_member(a, OPT_RETRY_TIMED_OUT, 0, 100, retry, "timedOut");
		if(!rc) rc = uint_member(a, OPT_RETRY_BACKOFF_MS, 0, 7ULL * 24 * 3600 * 1000, retry, "backoffMs");
	}
	return rc;
}

/* Build the createJob command from --file and the flags. */
static int build_create(const struct cli_globals *g, const struct cli_args *a, cJSON **out)
{
	cJSON *req = NULL, *doc = NULL;
	const char *type, *s;
	const cJSON *targets;
	int rc, i;
	bool type_ok = false;

	*out = NULL;
	if(cli_flag(a, OPT_DOCUMENT) && cli_flag(a, OPT_DOCUMENT_FILE)){
		fprintf(stderr, "fleetmq: give --document or --document-file, not both\n");
		return CLI_EXIT_USAGE;
	}
	if(cli_flag(a, OPT_FILE)){
		rc = cli_read_json_file(cli_opt(a, OPT_FILE), "job file", true, &req);
		if(rc != CLI_EXIT_OK) return rc;
		s = cli_jstr(req, "command");
		if(s[0] && strcmp(s, "createJob")){
			fprintf(stderr, "fleetmq: job file %s: \"command\" is '%s'; a job file holds a createJob request\n",
					cli_opt(a, OPT_FILE), s);
			cJSON_Delete(req);
			return CLI_EXIT_LOCAL;
		}
	}else{
		req = cJSON_CreateObject();
		if(!req) return cli_oom();
	}
	set_item(req, "command", cJSON_CreateString("createJob"));

	if((s = cli_opt(a, OPT_ID)) != NULL){
		if(!cli_check_id("job id", s)){
			rc = CLI_EXIT_USAGE;
			goto fail;
		}
		set_item(req, "jobId", cJSON_CreateString(s));
	}
	if((s = cli_opt(a, OPT_TYPE)) != NULL){
		set_item(req, "type", cJSON_CreateString(s));
	}else if(cli_flag(a, OPT_ARTIFACT) && !cJSON_GetObjectItemCaseSensitive(req, "type")){
		set_item(req, "type", cJSON_CreateString("update"));
	}
	type = cli_jstr(req, "type");
	for(i = 0; job_types[i]; i++){
		if(!strcmp(type, job_types[i])) type_ok = true;
	}
	if(!type_ok){
		if(type[0]) fprintf(stderr, "fleetmq: --type '%s': must be update, config, feature or custom\n", type);
		else fprintf(stderr, "fleetmq: jobs create needs --type update|config|feature|custom (or \"type\" in --file)\n");
		rc = CLI_EXIT_USAGE;
		goto fail;
	}
	if((s = cli_opt(a, OPT_DESCRIPTION)) != NULL) set_item(req, "description", cJSON_CreateString(s));

	if(cli_flag(a, OPT_DOCUMENT)){
		rc = cli_parse_json_arg(cli_opt(a, OPT_DOCUMENT), "--document", true, &doc);
		if(rc != CLI_EXIT_OK) goto fail;
		set_item(req, "document", doc);
	}else if(cli_flag(a, OPT_DOCUMENT_FILE)){
		rc = cli_read_json_file(cli_opt(a, OPT_DOCUMENT_FILE), "document file", true, &doc);
		if(rc != CLI_EXIT_OK) goto fail;
		set_item(req, "document", doc);
	}
	if(cli_flag(a, OPT_ARTIFACT)){
		if(strcmp(type, "update")){
			fprintf(stderr, "fleetmq: --artifact is for --type update jobs, not %s\n", type);
			rc = CLI_EXIT_USAGE;
			goto fail;
		}
		rc = artifact_document(g, cli_opt(a, OPT_ARTIFACT), req);
		if(rc != CLI_EXIT_OK) goto fail;
	}
	if(!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(req, "document"))){
		fprintf(stderr, "fleetmq: the job needs a document: --document '{...}', --document-file FILE%s\n",
				strcmp(type, "update") ? "" : " or --artifact NAME");
		rc = CLI_EXIT_USAGE;
		goto fail;
	}
	rc = build_targets(a, req);
	if(rc == CLI_EXIT_OK) rc = build_policies(a, req);
	if(rc != CLI_EXIT_OK) goto fail;
	targets = cJSON_GetObjectItemCaseSensitive(req, "targets");
	if(!cJSON_IsObject(targets) || !targets->child){
		fprintf(stderr, "fleetmq: the job has no targets: give --devices, --groups, --match or --all\n");
		rc = CLI_EXIT_USAGE;
		goto fail;
	}
	*out = req;
	return CLI_EXIT_OK;

fail:
	cJSON_Delete(req);
	return rc;
}

static int watch_job(const struct cli_globals *g, const struct cli_args *a, const char *id);

int cmd_jobs_create(const struct cli_globals *g, const struct cli_args *a)
{
	cJSON *req = NULL, *root = NULL;
	const cJSON *data;
	const char *id;
	int rc;

	rc = build_create(g, a, &req);
	if(rc != CLI_EXIT_OK) return rc;
	if(cli_flag(a, OPT_DRY_RUN)){
		if(g->json) cli_print_json(req);
		else cli_print_json_pretty(stdout, req, 0);
		cJSON_Delete(req);
		return CLI_EXIT_OK;
	}
	rc = cli_control_one(g, req, "jobs create", &root, &data);
	cJSON_Delete(req);
	if(rc != CLI_EXIT_OK) return rc;
	id = cli_jstr(data, "jobId");
	if(g->json && !cli_flag(a, OPT_WATCH)){
		cli_print_json(data);
	}else if(!g->json){
		if(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(data, "created"))){
			printf("job %s already exists with the same definition (%s); nothing changed\n", id, cli_jstr(data, "status"));
		}else{
			printf("job %s created (%s)\n", id, cli_jstr(data, "status"));
		}
		if(!cli_flag(a, OPT_WATCH)) printf("follow it with: fleetmq jobs watch %s\n", id);
	}
	if(cli_flag(a, OPT_WATCH)){
		char idbuf[CLI_MAX_ID_BYTES + 1];
		snprintf(idbuf, sizeof(idbuf), "%s", id);
		cJSON_Delete(root);
		fflush(stdout);
		return watch_job(g, a, idbuf);
	}
	cJSON_Delete(root);
	return CLI_EXIT_OK;
}

/* ================================================================
 * list
 * ================================================================ */

/* "in-progress" -> "IN_PROGRESS"; NULL (message printed) if unknown. */
static const char *job_status_arg(const char *s, char *buf, size_t len)
{
	static const char *const names[] = { "SCHEDULED", "IN_PROGRESS", "COMPLETED", "CANCELED", NULL };
	size_t i;

	for(i = 0; s[i] && i + 1 < len; i++) buf[i] = s[i] == '-' ? '_' : (char)toupper((unsigned char)s[i]);
	buf[i] = '\0';
	for(i = 0; names[i]; i++){
		if(!strcmp(buf, names[i])) return buf;
	}
	fprintf(stderr, "fleetmq: --status '%s': must be scheduled, in-progress, completed or canceled\n", s);
	return NULL;
}

int cmd_jobs_list(const struct cli_globals *g, const struct cli_args *a)
{
	struct cli_session *s = NULL;
	struct cli_table *t = NULL;
	cJSON *all = NULL, *root = NULL, *out = NULL;
	const char *status = NULL;
	char status_buf[32];
	uint64_t limit = UINT64_MAX;
	int rc;

	rc = cli_opt_uint(a, OPT_LIMIT, 1, 100000000, &limit, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	if(cli_flag(a, OPT_STATUS) && !(status = job_status_arg(cli_opt(a, OPT_STATUS), status_buf, sizeof(status_buf)))){
		return CLI_EXIT_USAGE;
	}
	all = cJSON_CreateArray();
	if(!all) return cli_oom();
	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK){
		cJSON *filter = cJSON_CreateObject();
		if(!filter){
			rc = cli_oom();
		}else{
			if(status) cJSON_AddStringToObject(filter, "status", status);
			rc = cli_collect_pages(s, "listJobs", "jobs list", filter, "afterSeq", "nextAfterSeq", "jobs",
					PAGE_JOBS, limit, all, NULL);
			cJSON_Delete(filter);
		}
	}
	cli_session_close(s);
	if(rc != CLI_EXIT_OK) goto cleanup;

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(all));
		cJSON_AddItemToObject(out, "jobs", all);
		all = NULL;
		cli_print_json(out);
	}else{
		static const char *const headers[] = { "JOB", "TYPE", "STATUS", "TARGETS", "DONE", "SUCCEEDED", "FAILED",
			"ACTIVE", "CREATED", "BY", "REASON" };
		const cJSON *it;

		t = cli_table_new(11, headers);
		if(!t){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_ArrayForEach(it, all){
			const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "counts");
			char total[24], done[32], ok[24], bad[24], active[24], created[32];
			const char *cells[11];
			uint64_t tot = count_of(c, "total"), fin = final_count(c);

			snprintf(total, sizeof(total), "%" PRIu64, tot);
			snprintf(done, sizeof(done), "%d%%", tot ? (int)(fin * 100 / tot) : 0);
			snprintf(ok, sizeof(ok), "%" PRIu64, count_of(c, "succeeded"));
			snprintf(bad, sizeof(bad), "%" PRIu64, bad_count(c));
			snprintf(active, sizeof(active), "%" PRIu64, count_of(c, "queued") + count_of(c, "inProgress"));
			cli_format_time(created, sizeof(created), cli_ju64(it, "createdMs"));
			cells[0] = cli_jstr(it, "jobId");
			cells[1] = cli_jstr(it, "type");
			cells[2] = cli_jstr(it, "status");
			cells[3] = total;
			cells[4] = done;
			cells[5] = ok;
			cells[6] = bad;
			cells[7] = active;
			cells[8] = created;
			cells[9] = cli_jstr(it, "createdBy");
			cells[10] = cli_jstr(it, "statusReason");
			if(cli_table_add(t, cells) != 0){
				rc = cli_oom();
				goto cleanup;
			}
		}
		cli_table_print(t, stdout);
		printf("%d job%s%s%s (FAILED counts failed, rejected and timed-out executions)\n", cJSON_GetArraySize(all),
				cJSON_GetArraySize(all) == 1 ? "" : "s", status ? " with status " : "", status ? status : "");
	}

cleanup:
	cli_table_free(t);
	cJSON_Delete(root);
	cJSON_Delete(out);
	cJSON_Delete(all);
	return rc;
}

/* ================================================================
 * show
 * ================================================================ */

static void print_targets(const cJSON *targets)
{
	const cJSON *match = cJSON_GetObjectItemCaseSensitive(targets, "match");
	char buf[1024];
	bool any = false;

	printf("targets      ");
	if(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(targets, "all"))){
		printf("all devices");
		any = true;
	}
	if(cJSON_GetObjectItemCaseSensitive(targets, "devices")){
		cli_format_strings(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(targets, "devices"));
		printf("%sdevices %s", any ? "; " : "", buf);
		any = true;
	}
	if(cJSON_GetObjectItemCaseSensitive(targets, "groups")){
		cli_format_strings(buf, sizeof(buf), cJSON_GetObjectItemCaseSensitive(targets, "groups"));
		printf("%sgroups %s", any ? "; " : "", buf);
		any = true;
	}
	if(match){
		const cJSON *it;
		printf("%smatch", any ? "; " : "");
		cJSON_ArrayForEach(it, match){
			if(cJSON_IsString(it)){
				printf(" %s=%s", it->string, it->valuestring);
			}else{
				cli_format_strings(buf, sizeof(buf), it);
				printf(" %s", buf);
			}
		}
		any = true;
	}
	printf("%s\n", any ? "" : "-");
}

static void print_job(const cJSON *job)
{
	const cJSON *rollout = cJSON_GetObjectItemCaseSensitive(job, "rollout");
	const cJSON *spec = cJSON_GetObjectItemCaseSensitive(job, "spec");
	const cJSON *doc = cJSON_GetObjectItemCaseSensitive(job, "document");
	char created[32], updated[32], summary[512];
	uint64_t now = cli_now_ms();

	cli_format_time(created, sizeof(created), cli_ju64(job, "createdMs"));
	cli_format_age(updated, sizeof(updated), cli_ju64(job, "updatedMs"), now);
	printf("job          %s (%s%s)\n", cli_jstr(job, "jobId"), cli_jstr(job, "type"),
			cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(job, "continuous")) ? ", continuous" : "");
	printf("status       %s%s%s\n", cli_jstr(job, "status"), cli_jstr(job, "statusReason")[0] ? ": " : "",
			cli_jstr(job, "statusReason"));
	if(cli_jstr(job, "description")[0]) printf("description  %s\n", cli_jstr(job, "description"));
	printf("created      %s by %s; updated %s\n", created, cli_jstr(job, "createdBy"), updated);
	print_targets(cJSON_GetObjectItemCaseSensitive(job, "targets"));
	if(rollout){
		const cJSON *canary = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "rollout"), "canary");
		uint64_t rate = cli_ju64(rollout, "ratePerMinute");
		char ratebuf[32];

		if(rate) snprintf(ratebuf, sizeof(ratebuf), "%" PRIu64 "/min", rate);
		else snprintf(ratebuf, sizeof(ratebuf), "unlimited");
		printf("rollout      phase %s; %" PRIu64 " targets%s, %" PRIu64 " released; rate %s\n",
				cli_jstr(rollout, "phase"), cli_ju64(rollout, "targets"),
				cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rollout, "targetsComplete")) ? "" : " so far",
				cli_ju64(rollout, "released"), ratebuf);
		if(canary || cli_ju64(rollout, "canaryTargets")){
			printf("canary       %" PRIu64 " targets, %" PRIu64 " released, %" PRIu64 " succeeded (needs %d%%)\n",
					cli_ju64(rollout, "canaryTargets"), cli_ju64(rollout, "canaryReleased"),
					cli_ju64(rollout, "canarySucceeded"), (int)cli_jnum(canary, "successPercent", 100));
		}
	}
	if(cJSON_GetObjectItemCaseSensitive(spec, "abort")){
		const cJSON *it;
		const char *sep = "";
		printf("abort        when ");
		cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(spec, "abort")){
			printf("%s%d%% of at least %d finished ended %s", sep, (int)cli_jnum(it, "thresholdPercent", 0),
					(int)cli_jnum(it, "minExecuted", 1), cli_jstr(it, "failureType"));
			sep = ", or ";
		}
		printf("\n");
	}
	if(cli_ju64(spec, "timeoutMs")) printf("timeout      %" PRIu64 " ms in progress\n", cli_ju64(spec, "timeoutMs"));
	if(cJSON_GetObjectItemCaseSensitive(spec, "retry")){
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(spec, "retry");
		printf("retry        %d after failure, %d after timeout, backoff %d ms\n", (int)cli_jnum(r, "failed", 0),
				(int)cli_jnum(r, "timedOut", 0), (int)cli_jnum(r, "backoffMs", 60000));
	}
	format_summary(summary, sizeof(summary), job);
	printf("progress     %s\n", summary);
	print_progress(stdout, job);
	if(cli_ju64(cJSON_GetObjectItemCaseSensitive(job, "counts"), "retryPending")){
		printf("  (%" PRIu64 " waiting for a retry)\n", cli_ju64(cJSON_GetObjectItemCaseSensitive(job, "counts"), "retryPending"));
	}
	if(doc){
		printf("document\n");
		cli_print_json_pretty(stdout, doc, 2);
	}
}

int cmd_jobs_show(const struct cli_globals *g, const struct cli_args *a)
{
	const char *id = a->pos[0];
	struct cli_session *s = NULL;
	cJSON *cmds = NULL, *root = NULL, *out = NULL, *c;
	const cJSON *d0, *d1 = NULL;
	const char *status = NULL;
	bool execs = cli_flag(a, OPT_EXECUTIONS) || cli_flag(a, OPT_STATUS);
	uint64_t limit = 1000;
	int rc;

	if(!cli_check_id("job id", id)) return CLI_EXIT_USAGE;
	rc = cli_opt_uint(a, OPT_LIMIT, 1, 10000, &limit, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	if(cli_flag(a, OPT_STATUS)){
		char buf[32];
		size_t i;
		const char *v = cli_opt(a, OPT_STATUS);
		for(i = 0; v[i] && i + 1 < sizeof(buf); i++) buf[i] = v[i] == '-' ? '_' : (char)toupper((unsigned char)v[i]);
		buf[i] = '\0';
		if(strcmp(buf, "PENDING") && strcmp(buf, "QUEUED") && strcmp(buf, "IN_PROGRESS") && strcmp(buf, "SUCCEEDED")
				&& strcmp(buf, "FAILED") && strcmp(buf, "REJECTED") && strcmp(buf, "TIMED_OUT") && strcmp(buf, "CANCELED")
				&& strcmp(buf, "REMOVED")){
			fprintf(stderr, "fleetmq: --status '%s': an execution status: pending, queued, in-progress, succeeded,\n"
					"fleetmq: failed, rejected, timed-out, canceled or removed\n", v);
			return CLI_EXIT_USAGE;
		}
		status = v;
	}
	cmds = cJSON_CreateArray();
	if(!cmds) return cli_oom();
	c = cJSON_CreateObject();
	cJSON_AddItemToArray(cmds, c);
	cJSON_AddStringToObject(c, "command", "describeJob");
	cJSON_AddStringToObject(c, "jobId", id);
	if(execs){
		char buf[32];
		size_t i;
		c = cJSON_CreateObject();
		cJSON_AddItemToArray(cmds, c);
		cJSON_AddStringToObject(c, "command", "listJobExecutions");
		cJSON_AddStringToObject(c, "jobId", id);
		cJSON_AddNumberToObject(c, "limit", (double)limit);
		if(status){
			for(i = 0; status[i] && i + 1 < sizeof(buf); i++) buf[i] = status[i] == '-' ? '_' : (char)toupper((unsigned char)status[i]);
			buf[i] = '\0';
			cJSON_AddStringToObject(c, "status", buf);
		}
	}
	rc = cli_session_open(g, &s);
	if(rc == CLI_EXIT_OK) rc = cli_control_call(s, cmds, &root);
	cli_session_close(s);
	cJSON_Delete(cmds);
	if(rc != CLI_EXIT_OK) return rc;
	d0 = cli_response_data(root, 0, "jobs show", &rc, NULL);
	if(!d0) goto cleanup;
	if(execs && !(d1 = cli_response_data(root, 1, "jobs show (executions)", &rc, NULL))) goto cleanup;

	if(g->json){
		out = cJSON_CreateObject();
		if(!out){
			rc = cli_oom();
			goto cleanup;
		}
		cJSON_AddItemToObject(out, "job", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(d0, "job"), 1));
		if(d1){
			cJSON_AddItemToObject(out, "executions", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(d1, "executions"), 1));
			if(cli_jstr(d1, "next")[0]) cJSON_AddStringToObject(out, "executionsNext", cli_jstr(d1, "next"));
		}
		cli_print_json(out);
	}else{
		print_job(cJSON_GetObjectItemCaseSensitive(d0, "job"));
		if(d1){
			printf("\n");
			cli_print_executions(cJSON_GetObjectItemCaseSensitive(d1, "executions"), "DEVICE");
			if(cli_jstr(d1, "next")[0]) printf("(more executions: raise --limit)\n");
		}
	}

cleanup:
	cJSON_Delete(out);
	cJSON_Delete(root);
	return rc;
}

/* ================================================================
 * cancel
 * ================================================================ */

int cmd_jobs_cancel(const struct cli_globals *g, const struct cli_args *a)
{
	const char *id = a->pos[0];
	cJSON *cmd, *root = NULL;
	const cJSON *data;
	int rc;

	if(!cli_check_id("job id", id)) return CLI_EXIT_USAGE;
	cmd = cJSON_CreateObject();
	if(!cmd) return cli_oom();
	cJSON_AddStringToObject(cmd, "command", "cancelJob");
	cJSON_AddStringToObject(cmd, "jobId", id);
	if(cli_flag(a, OPT_FORCE)) cJSON_AddTrueToObject(cmd, "force");
	if(cli_flag(a, OPT_REMOVE)) cJSON_AddTrueToObject(cmd, "remove");
	if(cli_opt(a, OPT_REASON)) cJSON_AddStringToObject(cmd, "reason", cli_opt(a, OPT_REASON));
	rc = cli_control_one(g, cmd, "jobs cancel", &root, &data);
	cJSON_Delete(cmd);
	if(rc != CLI_EXIT_OK) return rc;
	if(g->json){
		cli_print_json(data);
	}else{
		printf("job %s %s: pending and queued executions are withdrawn%s\n", cli_jstr(data, "jobId"),
				cli_jstr(data, "status"), cli_flag(a, OPT_FORCE)
				? "; in-progress ones are canceled too (devices are told to stop)"
				: "; in-progress ones may finish (--force stops them)");
	}
	cJSON_Delete(root);
	return CLI_EXIT_OK;
}

/* ================================================================
 * watch
 * ================================================================ */

struct watch_view {
	bool tty;
	int lines;                   /* lines drawn last time (tty) */
	bool show_removed;           /* the "removed" line is part of the view */
	char last[1024];             /* last summary printed (lines mode) */
	uint64_t last_print_mono;
	uint64_t started_mono;
};

/* Terminal width (80 if unknown). */
static int tty_columns(void)
{
	struct winsize ws;

	if(ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
	return 80;
}

/* One line of the in-place view: cleared first, cut to the terminal width
 * so it never wraps (a wrapped line would break the redraw). */
static void tty_line(int cols, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tty_line(int cols, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if((int)strlen(buf) > cols - 1) buf[cols - 1] = '\0';
	printf("\033[2K%s\n", buf);
}

static void watch_draw_tty(struct watch_view *v, const cJSON *job, const char *note)
{
	const cJSON *counts = cJSON_GetObjectItemCaseSensitive(job, "counts");
	const cJSON *rollout = cJSON_GetObjectItemCaseSensitive(job, "rollout");
	uint64_t secs = (cli_mono_ms() - v->started_mono) / 1000u;
	uint64_t total = count_of(counts, "total"), fin = final_count(counts);
	int cols = tty_columns(), lines = 0;
	char bar[BAR_CELLS + 8];
	size_t i;

	if(v->lines > 0) printf("\033[%dA", v->lines);
	tty_line(cols, "job %s (%s)  %s  phase %s  watching %" PRIu64 "m%02" PRIu64 "s", cli_jstr(job, "jobId"),
			cli_jstr(job, "type"), cli_jstr(job, "status"), cli_jstr(rollout, "phase"), secs / 60, secs % 60);
	lines++;
	for(i = 0; i < N_STATES; i++){
		uint64_t n = count_of(counts, states[i].key);
		if(!strcmp(states[i].key, "removed")){
			if(n > 0) v->show_removed = true;    /* once shown, the line stays */
			if(!v->show_removed) continue;
		}
		cli_format_bar(bar, sizeof(bar), n, total, BAR_CELLS);
		tty_line(cols, "  %-12s %s %6" PRIu64, states[i].label, bar, n);
		lines++;
	}
	tty_line(cols, "  %" PRIu64 " target%s, %" PRIu64 " final (%d%%)%s%s", total, total == 1 ? "" : "s", fin,
			total ? (int)(fin * 100 / total) : 0, count_of(counts, "retryPending") ? ", waiting for retries" : "",
			note ? note : "");
	lines++;
	tty_line(cols, "  %s", cli_jstr(job, "statusReason"));
	lines++;
	fflush(stdout);
	v->lines = lines;
}

static void watch_draw_line(struct watch_view *v, const cJSON *job, bool force)
{
	char summary[512], line[1024], when[32];
	uint64_t now = cli_mono_ms();

	format_summary(summary, sizeof(summary), job);
	snprintf(line, sizeof(line), "%s %s: %s%s%s", cli_jstr(job, "jobId"), cli_jstr(job, "status"), summary,
			cli_jstr(job, "statusReason")[0] ? "; " : "", cli_jstr(job, "statusReason"));
	if(!force && !strcmp(line, v->last) && now - v->last_print_mono < WATCH_HEARTBEAT_MS) return;
	cli_format_time(when, sizeof(when), cli_now_ms());
	printf("%s %s\n", when, line);
	fflush(stdout);
	snprintf(v->last, sizeof(v->last), "%s", line);
	v->last_print_mono = now;
}

static void watch_emit_json(struct watch_view *v, const cJSON *job, int exit_code, const char *outcome, bool force)
{
	cJSON *o = cJSON_CreateObject();
	char *text;

	if(!o) return;
	cJSON_AddStringToObject(o, "jobId", cli_jstr(job, "jobId"));
	cJSON_AddStringToObject(o, "status", cli_jstr(job, "status"));
	cJSON_AddStringToObject(o, "statusReason", cli_jstr(job, "statusReason"));
	cJSON_AddStringToObject(o, "phase", cli_jstr(cJSON_GetObjectItemCaseSensitive(job, "rollout"), "phase"));
	cJSON_AddItemToObject(o, "counts", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(job, "counts"), 1));
	text = cJSON_PrintUnformatted(o);
	if(text && (force || strcmp(text, v->last))){
		snprintf(v->last, sizeof(v->last), "%s", text);
		if(exit_code >= 0){
			cJSON_AddBoolToObject(o, "final", true);
			cJSON_AddStringToObject(o, "outcome", outcome);
			cJSON_AddNumberToObject(o, "exitCode", exit_code);
		}
		cJSON_AddNumberToObject(o, "timestampMs", (double)cli_now_ms());
		cli_print_json(o);
		fflush(stdout);
	}
	cJSON_free(text);
	cJSON_Delete(o);
}

/* One describeJob on s. *job receives the job object (caller deletes). */
static int watch_poll(struct cli_session *s, const char *id, cJSON **job, const char **code)
{
	cJSON *cmds = cJSON_CreateArray(), *cmd = cJSON_CreateObject(), *root = NULL;
	const cJSON *data;
	int rc;

	*job = NULL;
	*code = "";
	if(!cmds || !cmd || !cJSON_AddItemToArray(cmds, cmd)){
		cJSON_Delete(cmds);
		cJSON_Delete(cmd);
		return cli_oom();
	}
	cJSON_AddStringToObject(cmd, "command", "describeJob");
	cJSON_AddStringToObject(cmd, "jobId", id);
	cli_session_rearm(s);
	rc = cli_control_call(s, cmds, &root);
	cJSON_Delete(cmds);
	if(rc != CLI_EXIT_OK) return rc;
	data = cli_response_data(root, 0, "jobs watch", &rc, code);
	if(data) *job = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(data, "job"), 1);
	cJSON_Delete(root);
	return rc;
}

static int watch_job(const struct cli_globals *g, const struct cli_args *a, const char *id)
{
	struct watch_view v;
	struct cli_session *s = NULL;
	cJSON *job = NULL;
	uint64_t interval = WATCH_DEFAULT_INTERVAL_MS, until = 0, deadline = 0, failing_since = 0;
	const char *outcome = "", *code;
	bool ever_ok = false;
	int rc, exit_code = -1;

	rc = cli_opt_uint(a, OPT_INTERVAL_MS, 100, 3600000, &interval, NULL);
	if(rc == CLI_EXIT_OK) rc = cli_opt_uint(a, OPT_UNTIL_TIMEOUT, 1, 30ULL * 24 * 3600 * 1000, &until, NULL);
	if(rc != CLI_EXIT_OK) return rc;
	memset(&v, 0, sizeof(v));
	v.tty = !g->json && isatty(STDOUT_FILENO);
	v.started_mono = cli_mono_ms();
	if(until) deadline = v.started_mono + until;

	for(;;){
		cJSON *next = NULL;

		if(!s){
			rc = cli_session_open(g, &s);
			if(rc != CLI_EXIT_OK) s = NULL;
		}
		if(s){
			rc = watch_poll(s, id, &next, &code);
			if(rc == CLI_EXIT_UNREACHABLE){
				cli_session_close(s);
				s = NULL;
			}
		}
		if(rc == CLI_EXIT_OK && next){
			cJSON_Delete(job);
			job = next;
			ever_ok = true;
			if(failing_since && !v.tty){
				cli_session_set_quiet(false);
				fprintf(stderr, "fleetmq: jobs watch: reconnected\n");
			}
			failing_since = 0;
			/* on a terminal, connection trouble shows in the view, not on stderr */
			if(v.tty) cli_session_set_quiet(true);
			exit_code = watch_exit_code(job, &outcome);
			if(g->json) watch_emit_json(&v, job, exit_code, outcome, false);
			else if(v.tty) watch_draw_tty(&v, job, NULL);
			else watch_draw_line(&v, job, exit_code >= 0);
			if(exit_code >= 0) break;
		}else if(rc == CLI_EXIT_UNREACHABLE && ever_ok){
			/* Keep watching through a broker restart, for a while. */
			uint64_t now = cli_mono_ms(), grace = (uint64_t)g->timeout_ms;
			if(grace < WATCH_RECONNECT_GRACE_MS) grace = WATCH_RECONNECT_GRACE_MS;
			if(!failing_since){
				failing_since = now;
				if(!v.tty) fprintf(stderr, "fleetmq: jobs watch: reconnecting for up to %" PRIu64 " s...\n", grace / 1000u);
				cli_session_set_quiet(true);
			}
			if(now - failing_since > grace){
				cli_session_set_quiet(false);
				fprintf(stderr, "fleetmq: jobs watch: no answer from the broker for %" PRIu64 " ms; giving up\n",
						now - failing_since);
				break;
			}
			if(v.tty && job) watch_draw_tty(&v, job, "  (connection lost, reconnecting...)");
		}else{
			break;   /* refused (not found, forbidden), or never reachable */
		}
		if(deadline && cli_mono_ms() + interval > deadline){
			char summary[512];
			if(job){
				format_summary(summary, sizeof(summary), job);
				fprintf(stderr, "fleetmq: jobs watch: job %s still %s after %" PRIu64 " ms (--until-timeout): %s\n",
						id, cli_jstr(job, "status"), until, summary);
			}
			rc = CLI_EXIT_UNREACHABLE;
			break;
		}
		cli_sleep_ms((long)interval);
	}
	cli_session_close(s);
	cli_session_set_quiet(false);
	if(exit_code >= 0){
		if(!g->json){
			char summary[512];
			format_summary(summary, sizeof(summary), job);
			printf("job %s %s: %s\n", id, outcome, summary);
			if(cli_jstr(job, "statusReason")[0]) printf("reason: %s\n", cli_jstr(job, "statusReason"));
		}
		rc = exit_code;
	}else if(rc == CLI_EXIT_OK){
		rc = CLI_EXIT_UNREACHABLE;
	}
	cJSON_Delete(job);
	return rc;
}

int cmd_jobs_watch(const struct cli_globals *g, const struct cli_args *a)
{
	if(!cli_check_id("job id", a->pos[0])) return CLI_EXIT_USAGE;
	return watch_job(g, a, a->pos[0]);
}
