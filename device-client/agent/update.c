/*
 * update.c - the update executor: a persisted state machine that takes an
 * update job document (artifact metadata, see common/artifact_sig.h) to a
 * committed new version or back to the old one, surviving kill -9 and
 * power loss at any instant.
 *
 *   pre-checks  (nothing persisted; REJECTED with a reason, device unchanged)
 *               document -> device type -> hw revision -> signature over the
 *               manifest (known key) -> anti-downgrade (unless the signed
 *               allowDowngrade) -> same version = SUCCEEDED at once
 *   policy      critical-only: a non-critical update is parked, reported
 *               IN_PROGRESS step "deferred" (re-evaluated when the policy
 *               changes); ask: parked in step AWAITING ("awaiting-approval",
 *               deadline persisted) until approved / rejected through the
 *               approval file or the deadline passes (update.on_deadline)
 *   DOWNLOAD    chunks from the fetcher written at their offset into
 *               <state_dir>/update-payload; every persist_every_chunks the
 *               data is fdatasync'd and THEN the offset persisted, so the
 *               persisted offset never exceeds durable data; resume
 *               truncates to it and continues
 *   VERIFY      SHA-256 and size of the whole file against the signed
 *               metadata (mismatch: REJECTED, device unchanged)
 *   INSTALL     handler install (into the inactive slot; a redo wipes it)
 *   REBOOT      handler reboot (A/B: switch `current`)
 *   HEALTH      handler health check
 *   COMMIT      handler commit, then SUCCEEDED
 *   ROLLBACK    after any failure of the four above: handler rollback, FAILED
 *
 * The step is written to <state_dir>/update-state.json (atomically: tmp,
 * fsync, rename, directory fsync) BEFORE the step runs, together with the
 * job document and the handler's own state. Restart rules
 * (agent__update_resume):
 *   AWAITING            park again with the persisted deadline
 *   DOWNLOAD            resume from the persisted offset
 *   VERIFY, INSTALL     redo
 *   REBOOT, HEALTH      the new software was (maybe) switched on but never
 *                       committed: ROLLBACK, FAILED ("restart before
 *                       commit"). Exception: with handler.reboots (a Reboot
 *                       step that really reboots) the step is persisted with
 *                       "expectRestart": true; the FIRST restart in REBOOT or
 *                       HEALTH counts as that reboot ("restarts": 1 is
 *                       persisted) and continues with the health check; a
 *                       second one rolls back.
 *   COMMIT              redo the commit, SUCCEEDED
 *   ROLLBACK            redo the rollback, FAILED with the persisted reason
 * A final outcome (SUCCEEDED, FAILED, REJECTED) is handed to
 * reporter.final - the agent puts the job report into the library's
 * durable outbox there - and only THEN are the payload and the state file
 * deleted, so a crash in between only repeats an idempotent step and its
 * report.
 *
 * Flash wear: per update a handful of state writes plus one per
 * persist_every_chunks chunks; nothing else is persisted.
 *
 * Must never: install anything that failed a pre-check or verification;
 * advance a persisted step before the previous step's effects are durable;
 * talk to MQTT (the fetcher and reporter are injected).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "fleetmq_alloc.h"

#define PROGRESS_STEP_PERCENT 10

struct upd {
	struct agent_update_env *env;
	char *job_id;
	cJSON *doc;                        /* job document (owned) */
	struct fleetmq_artifact_meta meta;
	enum agent_update_step step;
	uint64_t offset;
	uint64_t deadline_ms;              /* AWAITING: 0 = none */
	bool expect_restart;
	int restarts;
	char failure_type[32];             /* ROLLBACK: why */
	char failure_reason[256];
	cJSON *hstate;                     /* handler state (owned) */
	bool finalized;                    /* reporter.final was called */
	char state_path[PATH_MAX];
	char payload_path[PATH_MAX];
};

static const char *const step_names[] = {
	"none", "awaiting-approval", "download", "verify", "install", "reboot", "health-check", "commit", "rollback",
};

const char *agent__update_step_name(enum agent_update_step s)
{
	return (unsigned)s < sizeof(step_names) / sizeof(step_names[0]) ? step_names[s] : "?";
}

static enum agent_update_step step_parse(const char *s)
{
	size_t i;

	for(i = 1; s && i < sizeof(step_names) / sizeof(step_names[0]); i++){
		if(!strcmp(s, step_names[i])) return (enum agent_update_step)i;
	}
	return UPD_NONE;
}

static uint64_t now_ms(const struct agent_update_env *env)
{
	struct timespec ts;

	if(env->now_ms) return env->now_ms(env->hook_ctx);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static bool stopping(const struct upd *u)
{
	return u->env->should_stop && u->env->should_stop(u->env->hook_ctx);
}

static bool canceled(const struct upd *u)
{
	return u->env->canceled && u->env->canceled(u->env->hook_ctx, u->job_id);
}

static void paths(struct upd *u, const char *state_dir)
{
	snprintf(u->state_path, sizeof(u->state_path), "%s/" AGENT_UPDATE_STATE_FILE, state_dir);
	snprintf(u->payload_path, sizeof(u->payload_path), "%s/" AGENT_UPDATE_PAYLOAD_FILE, state_dir);
}

static void upd_clear(struct upd *u)
{
	fm_free(u->job_id);
	cJSON_Delete(u->doc);
	cJSON_Delete(u->hstate);
	fleetmq_artifact_meta_free(&u->meta);
	u->job_id = NULL;
	u->doc = u->hstate = NULL;
}

/* ---------------------------------------------------------------- results */

static void progress(struct upd *u, struct agent_result *r, const char *step, int percent)
{
	struct agent_result p;

	agent__result_init(&p);
	p.outcome = AGENT_OUT_IN_PROGRESS;
	snprintf(p.step, sizeof(p.step), "%s", step);
	agent__result_detail(&p, "version", "%s", u->meta.version ? u->meta.version : "");
	if(r && r->n_details){
		size_t i;
		for(i = 0; i < r->n_details; i++) agent__result_detail(&p, r->keys[i], "%s", r->values[i]);
	}
	if(u->env->reporter.progress) u->env->reporter.progress(u->env->reporter.ctx, u->job_id, &p, percent);
}

static void finish(struct agent_result *r, enum agent_outcome o, const char *step, const char *failure_type,
		const char *reason)
{
	r->outcome = o;
	snprintf(r->step, sizeof(r->step), "%s", step);
	if(failure_type) snprintf(r->failure_type, sizeof(r->failure_type), "%s", failure_type);
	if(reason) agent__result_detail(r, "reason", "%s", reason);
}

/* ---------------------------------------------------------------- persistence */

static int persist(struct upd *u, struct agent_result *r)
{
	cJSON *o = cJSON_CreateObject();
	char err[AGENT_ERR_BYTES];
	int rc = -1;

	if(!o) goto fail;
	cJSON_AddNumberToObject(o, "format", 1);
	cJSON_AddStringToObject(o, "jobId", u->job_id);
	cJSON_AddStringToObject(o, "step", agent__update_step_name(u->step));
	cJSON_AddNumberToObject(o, "offset", (double)u->offset);
	if(u->deadline_ms) cJSON_AddNumberToObject(o, "deadlineMs", (double)u->deadline_ms);
	if(u->expect_restart) cJSON_AddBoolToObject(o, "expectRestart", true);
	if(u->restarts) cJSON_AddNumberToObject(o, "restarts", u->restarts);
	if(u->step == UPD_ROLLBACK){
		cJSON_AddStringToObject(o, "failureType", u->failure_type);
		cJSON_AddStringToObject(o, "failureReason", u->failure_reason);
	}
	cJSON_AddItemToObject(o, "handler", cJSON_Duplicate(u->hstate, 1));
	cJSON_AddItemToObject(o, "document", cJSON_Duplicate(u->doc, 1));
	if(!cJSON_GetObjectItemCaseSensitive(o, "document") || !cJSON_GetObjectItemCaseSensitive(o, "handler")) goto fail;
	rc = agent__write_json_atomic(u->state_path, o, err, sizeof(err));
	cJSON_Delete(o);
	if(rc == 0) return 0;
	if(r) finish(r, AGENT_OUT_FAILED, agent__update_step_name(u->step), "io", err);
	return -1;

fail:
	cJSON_Delete(o);
	if(r) finish(r, AGENT_OUT_FAILED, agent__update_step_name(u->step), "internal", "out of memory");
	return -1;
}

/* Go to step s and persist it (before running it). */
static int enter(struct upd *u, enum agent_update_step s, struct agent_result *r)
{
	u->step = s;
	return persist(u, r);
}

void agent__update_forget(const char *state_dir)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/" AGENT_UPDATE_PAYLOAD_FILE, state_dir);
	agent__unlink_durable(path);
	snprintf(path, sizeof(path), "%s/" AGENT_UPDATE_STATE_FILE, state_dir);
	agent__unlink_durable(path);
}

/* A final outcome: hand it to reporter.final (the agent queues the job
 * report durably), THEN drop the persisted state. A crash in between
 * repeats the last (idempotent) step and its report after the restart. */
static void report_final(struct upd *u, struct agent_result *r);

static void finalize(struct upd *u, struct agent_result *r)
{
	report_final(u, r);
	u->finalized = true;
	agent__update_forget(u->env->state_dir);
}

/* Load the persisted state into u (job, document, step...). 0 ok, 1 none, -1 bad. */
static int load(struct upd *u, const char *state_dir, char *err, size_t errlen)
{
	cJSON *o = NULL;
	const cJSON *v;
	int rc;

	paths(u, state_dir);
	rc = agent__read_json(u->state_path, &o, err, errlen);
	if(rc != 0) return rc;
	v = cJSON_GetObjectItemCaseSensitive(o, "jobId");
	if(!cJSON_IsString(v) || !(u->job_id = fm_strdup(v->valuestring))) goto bad;
	u->step = step_parse(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "step")));
	if(u->step == UPD_NONE) goto bad;
	v = cJSON_GetObjectItemCaseSensitive(o, "offset");
	u->offset = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint64_t)v->valuedouble : 0;
	v = cJSON_GetObjectItemCaseSensitive(o, "deadlineMs");
	u->deadline_ms = cJSON_IsNumber(v) && v->valuedouble >= 0 ? (uint64_t)v->valuedouble : 0;
	u->expect_restart = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "expectRestart"));
	v = cJSON_GetObjectItemCaseSensitive(o, "restarts");
	u->restarts = cJSON_IsNumber(v) ? v->valueint : 0;
	snprintf(u->failure_type, sizeof(u->failure_type), "%s",
			cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "failureType")) ?: "");
	snprintf(u->failure_reason, sizeof(u->failure_reason), "%s",
			cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "failureReason")) ?: "");
	u->hstate = cJSON_DetachItemFromObjectCaseSensitive(o, "handler");
	if(!cJSON_IsObject(u->hstate)){
		cJSON_Delete(u->hstate);
		u->hstate = cJSON_CreateObject();
	}
	u->doc = cJSON_DetachItemFromObjectCaseSensitive(o, "document");
	if(!u->hstate || !cJSON_IsObject(u->doc)) goto bad;
	if(fleetmq_artifact_meta_parse(u->doc, &u->meta, err, errlen) != FLEETMQ_SIG_OK) goto bad;
	cJSON_Delete(o);
	return 0;

bad:
	if(err && errlen && !err[0]) snprintf(err, errlen, "%.300s: not a valid update state", u->state_path);
	cJSON_Delete(o);
	return -1;
}

int agent__update_peek(const char *state_dir, char **job_id, enum agent_update_step *step)
{
	struct upd u;
	char err[AGENT_ERR_BYTES] = "";
	int rc;

	memset(&u, 0, sizeof(u));
	*job_id = NULL;
	rc = load(&u, state_dir, err, sizeof(err));
	if(rc == 0){
		*job_id = u.job_id;
		u.job_id = NULL;
		if(step) *step = u.step;
	}
	upd_clear(&u);
	return rc;
}

/* ---------------------------------------------------------------- approval */

int agent__update_read_approval(const char *state_dir, const char *job_id)
{
	char path[PATH_MAX], *text = NULL, *line, *save = NULL;
	int verdict = 0;

	snprintf(path, sizeof(path), "%s/" AGENT_UPDATE_APPROVAL_FILE, state_dir);
	if(agent__read_file(path, 65536, &text, NULL) != 0) return 0;
	for(line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		char verb[16], id[160];
		if(sscanf(line, "%15s %159s", verb, id) != 2) continue;
		if(strcmp(id, job_id) != 0 && strcmp(id, "*") != 0) continue;
		if(!strcmp(verb, "approve")) verdict = 1;
		else if(!strcmp(verb, "reject")) verdict = -1;
	}
	fm_free(text);
	if(verdict) agent__unlink_durable(path);
	return verdict;
}

/* ---------------------------------------------------------------- versions */

void agent__update_current_version(const struct agent_update_env *env, char *buf, size_t size)
{
	buf[0] = '\0';
	if(env->handler.ops && env->handler.ops->current_version) env->handler.ops->current_version(env->handler.ctx, buf, size);
	if(!buf[0] || !fleetmq_version_valid(buf)) snprintf(buf, size, "%s", env->fallback_version ? env->fallback_version : "");
}

/* ---------------------------------------------------------------- pre-checks */

/* 0 = go on; 1 = finished (r filled: REJECTED or SUCCEEDED). */
static int prechecks(struct upd *u, struct agent_result *r)
{
	char err[AGENT_ERR_BYTES], cur[128], msg[512];
	int cmp, rc;

	if(!fleetmq_artifact_fits_type(&u->meta, u->env->device_type)){
		snprintf(msg, sizeof(msg), "device type '%s' is not among the artifact's device types", u->env->device_type);
		finish(r, AGENT_OUT_REJECTED, "verify", "incompatible", msg);
		return 1;
	}
	if(!fleetmq_artifact_fits_hw(&u->meta, u->env->hw_revision)){
		snprintf(msg, sizeof(msg), "hardware revision '%s' is not among the artifact's hw revisions",
				u->env->hw_revision ? u->env->hw_revision : "");
		finish(r, AGENT_OUT_REJECTED, "verify", "incompatible", msg);
		return 1;
	}
	if(!u->env->keys){
		finish(r, AGENT_OUT_REJECTED, "verify", "signature", "no trusted public keys are configured");
		return 1;
	}
	rc = fleetmq_artifact_verify(&u->meta, u->env->keys, err, sizeof(err));
	if(rc != FLEETMQ_SIG_OK){
		snprintf(msg, sizeof(msg), "%s: %.400s", fleetmq_sig_strerror(rc), err);
		finish(r, AGENT_OUT_REJECTED, "verify", "signature", msg);
		return 1;
	}
	agent__update_current_version(u->env, cur, sizeof(cur));
	if(cur[0] && fleetmq_version_compare(u->meta.version, cur, &cmp) == FLEETMQ_SIG_OK){
		if(cmp < 0 && !u->meta.allow_downgrade){
			snprintf(msg, sizeof(msg), "version %s is older than the installed %s and the artifact does not allow a downgrade",
					u->meta.version, cur);
			finish(r, AGENT_OUT_REJECTED, "verify", "downgrade", msg);
			agent__result_detail(r, "installed", "%s", cur);
			return 1;
		}
		if(cmp == 0){
			finish(r, AGENT_OUT_SUCCEEDED, "commit", NULL, NULL);
			agent__result_detail(r, "result", "version %s is already installed", cur);
			agent__result_detail(r, "version", "%s", cur);
			return 1;
		}
	}
	return 0;
}

/* 0 = proceed now; 1 = parked or finished (r filled). Persists AWAITING. */
static int policy_gate(struct upd *u, struct agent_result *r)
{
	uint64_t now;
	int verdict;

	if(u->env->policy == AGENT_POLICY_CRITICAL_ONLY && !u->meta.critical){
		struct agent_result d;
		agent__result_init(&d);
		agent__result_detail(&d, "reason", "update policy critical-only defers non-critical updates");
		progress(u, &d, "deferred", -1);
		finish(r, AGENT_OUT_IN_PROGRESS, "deferred", NULL, "update policy critical-only defers non-critical updates");
		return 1;
	}
	/* (a policy changed to auto while waiting needs no approval any more) */
	if(u->env->policy != AGENT_POLICY_ASK) return 0;
	verdict = agent__update_read_approval(u->env->state_dir, u->job_id);
	if(verdict > 0){
		agent__result_detail(r, "approval", "approved");
		return 0;
	}
	if(verdict < 0){
		finish(r, AGENT_OUT_REJECTED, "awaiting-approval", "declined", "the update was declined on the device");
		if(u->step == UPD_AWAITING) finalize(u, r);
		return 1;
	}
	now = now_ms(u->env);
	if(u->step != UPD_AWAITING){
		u->deadline_ms = u->env->ask_deadline_ms ? now + u->env->ask_deadline_ms : 0;
		if(enter(u, UPD_AWAITING, r) != 0) return 1;
	}
	if(u->deadline_ms && now >= u->deadline_ms){
		if(u->env->on_deadline == AGENT_DEADLINE_REJECT){
			finish(r, AGENT_OUT_REJECTED, "awaiting-approval", "approval-timeout", "no approval before the deadline");
			finalize(u, r);
			return 1;
		}
		agent__result_detail(r, "approval", "deadline passed, installing");
		return 0;
	}
	{
		struct agent_result d;
		agent__result_init(&d);
		if(u->deadline_ms) agent__result_detail(&d, "deadlineMs", "%" PRIu64, u->deadline_ms);
		agent__result_detail(&d, "approve", "write 'approve %s' to %s/" AGENT_UPDATE_APPROVAL_FILE, u->job_id, u->env->state_dir);
		progress(u, &d, "awaiting-approval", -1);
	}
	finish(r, AGENT_OUT_IN_PROGRESS, "awaiting-approval", NULL, NULL);
	return 1;
}

/* ---------------------------------------------------------------- download / verify */

static void pause_ms(const struct upd *u, int ms)
{
	while(ms > 0 && !stopping(u) && !canceled(u)){
		int slice = ms > 100 ? 100 : ms;
		usleep((useconds_t)slice * 1000u);
		ms -= slice;
	}
}

/* 0 = complete; 1 = finished/interrupted (r filled). */
static int download(struct upd *u, struct agent_result *r)
{
	uint32_t chunk = u->env->chunk_bytes ? u->env->chunk_bytes : 32768;
	uint32_t every = u->env->persist_every_chunks ? u->env->persist_every_chunks : 1;
	uint32_t since = 0, got;
	uint64_t total = 0;
	uint8_t *buf = NULL;
	char err[AGENT_ERR_BYTES], msg[AGENT_ERR_BYTES + 64];
	int fd = -1, rc, last_pct = -1, ret = 1;

	fd = open(u->payload_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if(fd < 0 || ftruncate(fd, (off_t)u->offset) != 0){
		snprintf(msg, sizeof(msg), "%.300s: %s", u->payload_path, strerror(errno));
		finish(r, AGENT_OUT_FAILED, "download", "io", msg);
		goto fail_forget;
	}
	buf = fm_malloc(chunk);
	if(!buf){
		finish(r, AGENT_OUT_FAILED, "download", "internal", "out of memory");
		goto fail_forget;
	}
	progress(u, NULL, "download", (int)(u->meta.size ? u->offset * 100 / u->meta.size : 0));
	while(u->offset < u->meta.size){
		uint32_t want = chunk;
		if(u->meta.size - u->offset < want) want = (uint32_t)(u->meta.size - u->offset);
		if(canceled(u)){
			finish(r, AGENT_OUT_CANCELED, "download", NULL, "canceled");
			goto fail_forget;
		}
		if(stopping(u)){
			/* leave it resumable: data first, then the offset */
			if(fdatasync(fd) == 0) persist(u, NULL);
			finish(r, AGENT_OUT_INTERRUPTED, "download", NULL, NULL);
			goto out;
		}
		err[0] = '\0';
		got = 0;
		rc = u->env->fetcher.read(u->env->fetcher.ctx, u->meta.name, u->offset, buf, want, &got, &total, err, sizeof(err));
		if(rc == AGENT_HANDLER_CRASH){
			finish(r, AGENT_OUT_INTERRUPTED, "download", NULL, "crash");
			goto out;
		}
		if(rc > 0){
			pause_ms(u, u->env->retry_pause_ms > 0 ? u->env->retry_pause_ms : 1000);
			continue;
		}
		if(rc < 0){
			snprintf(msg, sizeof(msg), "cannot download artifact '%s': %s", u->meta.name, err);
			finish(r, AGENT_OUT_FAILED, "download", "download", msg);
			goto fail_forget;
		}
		if(total != u->meta.size){
			snprintf(msg, sizeof(msg), "the served artifact has %" PRIu64 " bytes, the signed metadata says %" PRIu64,
					total, u->meta.size);
			finish(r, AGENT_OUT_REJECTED, "verify", "verify", msg);
			goto fail_forget;
		}
		if(got == 0 || got > want){
			snprintf(msg, sizeof(msg), "bad chunk at offset %" PRIu64 " (%u bytes)", u->offset, got);
			finish(r, AGENT_OUT_FAILED, "download", "download", msg);
			goto fail_forget;
		}
		if(pwrite(fd, buf, got, (off_t)u->offset) != (ssize_t)got){
			snprintf(msg, sizeof(msg), "%.300s: write: %s", u->payload_path, strerror(errno));
			finish(r, AGENT_OUT_FAILED, "download", "io", msg);
			goto fail_forget;
		}
		u->offset += got;
		if(++since >= every && u->offset < u->meta.size){
			since = 0;
			if(fdatasync(fd) != 0){
				snprintf(msg, sizeof(msg), "%.300s: fdatasync: %s", u->payload_path, strerror(errno));
				finish(r, AGENT_OUT_FAILED, "download", "io", msg);
				goto fail_forget;
			}
			if(persist(u, r) != 0) goto fail_forget;
		}
		{
			int pct = (int)(u->offset * 100 / u->meta.size);
			if(pct / PROGRESS_STEP_PERCENT != last_pct / PROGRESS_STEP_PERCENT && pct < 100){
				last_pct = pct;
				progress(u, NULL, "download", pct);
			}
		}
	}
	if(fsync(fd) != 0){
		snprintf(msg, sizeof(msg), "%.300s: fsync: %s", u->payload_path, strerror(errno));
		finish(r, AGENT_OUT_FAILED, "download", "io", msg);
		goto fail_forget;
	}
	ret = 0;
	goto out;

fail_forget:
	finalize(u, r);
out:
	fm_free(buf);
	if(fd >= 0) close(fd);
	return ret;
}

static int verify(struct upd *u, struct agent_result *r)
{
	char hex[FLEETMQ_SHA256_HEX_BYTES + 1], err[AGENT_ERR_BYTES], msg[AGENT_ERR_BYTES + 64];
	uint64_t size = 0;

	progress(u, NULL, "verify", -1);
	if(fleetmq_sha256_file(u->payload_path, hex, &size, err, sizeof(err)) != FLEETMQ_SIG_OK){
		finish(r, AGENT_OUT_FAILED, "verify", "io", err);
		finalize(u, r);
		return 1;
	}
	if(size != u->meta.size){
		snprintf(msg, sizeof(msg), "downloaded %" PRIu64 " bytes, the signed metadata says %" PRIu64, size, u->meta.size);
		finish(r, AGENT_OUT_REJECTED, "verify", "verify", msg);
		finalize(u, r);
		return 1;
	}
	if(strcmp(hex, u->meta.sha256) != 0){
		snprintf(msg, sizeof(msg), "payload SHA-256 %.16s... does not match the signed %.16s...", hex, u->meta.sha256);
		finish(r, AGENT_OUT_REJECTED, "verify", "verify", msg);
		finalize(u, r);
		return 1;
	}
	return 0;
}

/* ---------------------------------------------------------------- install .. commit */

/* Enter ROLLBACK with a reason and run it. Always finishes (FAILED). */
static void rollback(struct upd *u, const char *type, const char *reason, struct agent_result *r)
{
	const struct agent_handler_ops *ops = u->env->handler.ops;
	char err[AGENT_ERR_BYTES] = "", msg[600];
	int rc;

	if(u->step != UPD_ROLLBACK){
		snprintf(u->failure_type, sizeof(u->failure_type), "%s", type);
		snprintf(u->failure_reason, sizeof(u->failure_reason), "%s", reason);
		/* even if the step cannot be persisted, roll back now */
		enter(u, UPD_ROLLBACK, NULL);
	}
	progress(u, NULL, "rollback", -1);
	rc = ops->rollback(u->env->handler.ctx, u->payload_path, u->hstate, err, sizeof(err));
	if(rc == AGENT_HANDLER_CRASH){
		finish(r, AGENT_OUT_INTERRUPTED, "rollback", NULL, "crash");
		return;
	}
	agent__result_init(r);
	if(rc != 0){
		snprintf(msg, sizeof(msg), "%.200s; rollback failed too: %.300s", u->failure_reason, err);
		finish(r, AGENT_OUT_FAILED, "rollback", "rollback", msg);
	}else{
		finish(r, AGENT_OUT_FAILED, "rollback", u->failure_type, u->failure_reason);
		agent__result_detail(r, "rolledBack", "true");
	}
	finalize(u, r);
}

typedef int (*step_fn)(void *ctx, const char *payload, cJSON *hstate, char *err, size_t errlen);

/* Run the steps from u->step to the end. */
static void run_steps(struct upd *u, struct agent_result *r)
{
	const struct agent_handler_ops *ops = u->env->handler.ops;
	char err[AGENT_ERR_BYTES];
	step_fn fn;
	int rc;

	for(;;){
		err[0] = '\0';
		switch(u->step){
			case UPD_NONE:
			case UPD_AWAITING:
				u->offset = 0;
				if(enter(u, UPD_DOWNLOAD, r) != 0) return;
				continue;
			case UPD_DOWNLOAD:
				if(download(u, r) != 0) return;
				if(enter(u, UPD_VERIFY, r) != 0) return;
				continue;
			case UPD_VERIFY:
				if(verify(u, r) != 0) return;
				cJSON_Delete(u->hstate);
				u->hstate = cJSON_CreateObject();
				if(enter(u, UPD_INSTALL, r) != 0) return;
				continue;
			case UPD_INSTALL:
				progress(u, NULL, "install", -1);
				rc = ops->install(u->env->handler.ctx, u->payload_path, &u->meta, u->hstate, err, sizeof(err));
				if(rc == AGENT_HANDLER_CRASH) goto crash;
				if(rc != 0){
					rollback(u, "install", err, r);
					return;
				}
				u->expect_restart = u->env->handler.reboots;
				u->restarts = 0;
				if(enter(u, UPD_REBOOT, r) != 0) return;
				continue;
			case UPD_REBOOT:
			case UPD_HEALTH:
			case UPD_COMMIT:
				fn = u->step == UPD_REBOOT ? ops->reboot : u->step == UPD_HEALTH ? ops->health : ops->commit;
				progress(u, NULL, agent__update_step_name(u->step), -1);
				rc = fn(u->env->handler.ctx, u->payload_path, u->hstate, err, sizeof(err));
				if(rc == AGENT_HANDLER_CRASH) goto crash;
				if(rc != 0){
					rollback(u, u->step == UPD_REBOOT ? "reboot" : u->step == UPD_HEALTH ? "health-check" : "commit", err, r);
					return;
				}
				if(u->step == UPD_COMMIT){
					finish(r, AGENT_OUT_SUCCEEDED, "commit", NULL, NULL);
					agent__result_detail(r, "version", "%s", u->meta.version);
					agent__result_detail(r, "result", "installed and committed");
					finalize(u, r);
					return;
				}
				if(enter(u, u->step == UPD_REBOOT ? UPD_HEALTH : UPD_COMMIT, r) != 0) return;
				continue;
			case UPD_ROLLBACK:
				rollback(u, u->failure_type, u->failure_reason, r);
				return;
		}
	}

crash:
	finish(r, AGENT_OUT_INTERRUPTED, agent__update_step_name(u->step), NULL, "crash");
}

/* ---------------------------------------------------------------- entry points */

/* Pre-check outcomes (nothing persisted) still go through reporter.final. */
static void report_final(struct upd *u, struct agent_result *r)
{
	if(u->finalized || !u->env->reporter.final) return;
	if(r->outcome != AGENT_OUT_SUCCEEDED && r->outcome != AGENT_OUT_FAILED && r->outcome != AGENT_OUT_REJECTED) return;
	u->finalized = true;
	u->env->reporter.final(u->env->reporter.ctx, u->job_id ? u->job_id : "", r);
}

/* Continue a loaded (persisted) update after a restart. */
static void continue_persisted(struct upd *u, bool restarted, struct agent_result *r)
{
	char reason[300];

	if(restarted && (u->step == UPD_REBOOT || u->step == UPD_HEALTH)){
		if(u->expect_restart && u->restarts < 1){
			/* the handler's Reboot restarted us: this is the new software */
			u->restarts = 1;
			if(enter(u, UPD_HEALTH, r) != 0) return;
		}else{
			snprintf(reason, sizeof(reason), "the agent restarted during %s, before the update was committed",
					agent__update_step_name(u->step));
			rollback(u, "restart", reason, r);
			return;
		}
	}
	if(u->step == UPD_AWAITING){
		if(policy_gate(u, r) != 0) return;
	}
	run_steps(u, r);
}

void agent__update_resume(struct agent_update_env *env, char **job_id, struct agent_result *r)
{
	struct upd u;
	char err[AGENT_ERR_BYTES] = "";
	int rc;

	agent__result_init(r);
	*job_id = NULL;
	memset(&u, 0, sizeof(u));
	u.env = env;
	rc = load(&u, env->state_dir, err, sizeof(err));
	if(rc == 1){
		upd_clear(&u);
		return;
	}
	if(rc < 0){
		/* unreadable state: nothing can be trusted; drop it (a half-done
		 * install is never switched on without a readable state) */
		agent__update_forget(env->state_dir);
		finish(r, AGENT_OUT_NONE, "none", NULL, err);
		upd_clear(&u);
		return;
	}
	*job_id = fm_strdup(u.job_id);
	continue_persisted(&u, true, r);
	report_final(&u, r);
	upd_clear(&u);
}

void agent__update_run(struct agent_update_env *env, const char *job_id, const char *doc_json,
		struct agent_result *r)
{
	struct upd u, old;
	char err[AGENT_ERR_BYTES] = "", msg[AGENT_ERR_BYTES + 64];
	int rc;

	agent__result_init(r);
	memset(&u, 0, sizeof(u));
	u.env = env;
	paths(&u, env->state_dir);

	/* 1. the persisted update: the same job continues where it was */
	memset(&old, 0, sizeof(old));
	old.env = env;
	rc = load(&old, env->state_dir, err, sizeof(err));
	if(rc == 0 && !strcmp(old.job_id, job_id)){
		continue_persisted(&old, false, r);
		report_final(&old, r);
		upd_clear(&old);
		return;
	}
	if(rc == 0){
		/* another job's leftovers: before the install nothing changed on the
		 * device, drop them; later steps were finished at startup */
		if(old.step <= UPD_VERIFY) agent__update_forget(env->state_dir);
		else{
			/* finish the device side; its report goes to the old job */
			struct agent_result other;
			agent__result_init(&other);
			continue_persisted(&old, true, &other);
			report_final(&old, &other);
		}
	}else if(rc < 0){
		agent__update_forget(env->state_dir);
	}
	upd_clear(&old);

	/* 2. a new job: parse and check before anything is written */
	u.job_id = fm_strdup(job_id);
	u.doc = cJSON_Parse(doc_json ? doc_json : "");
	u.hstate = cJSON_CreateObject();
	if(!u.job_id || !u.hstate){
		finish(r, AGENT_OUT_FAILED, "verify", "internal", "out of memory");
		goto cleanup;
	}
	if(!cJSON_IsObject(u.doc)){
		finish(r, AGENT_OUT_REJECTED, "verify", "document", "the job document is not a JSON object");
		goto cleanup;
	}
	err[0] = '\0';
	if(fleetmq_artifact_meta_parse(u.doc, &u.meta, err, sizeof(err)) != FLEETMQ_SIG_OK){
		snprintf(msg, sizeof(msg), "invalid update document: %s", err);
		finish(r, AGENT_OUT_REJECTED, "verify", "document", msg);
		goto cleanup;
	}
	{
		const char *a = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(u.doc, "artifact"));
		if(a && strcmp(a, u.meta.name) != 0){
			snprintf(msg, sizeof(msg), "document 'artifact' (%.100s) differs from the signed name (%.100s)", a, u.meta.name);
			finish(r, AGENT_OUT_REJECTED, "verify", "document", msg);
			goto cleanup;
		}
	}
	if(prechecks(&u, r) != 0) goto cleanup;
	if(policy_gate(&u, r) != 0) goto cleanup;
	run_steps(&u, r);

cleanup:
	report_final(&u, r);
	upd_clear(&u);
}
