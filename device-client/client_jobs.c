/*
 * client_jobs.c - job executions on the device side.
 *
 * Owns: the handler table, the execution versions the library tracked
 * (from next/get, JobNotify and accepted reports), the running execution
 * (c->execution_in_progress / c->current_attempt, also sent in the Hello),
 * a ring of executions finished in this process, and the sending side of
 * the durable outbox (outbox.c stores it).
 *
 * Rules:
 *   - Fetch (jobs/next/get) only when no execution is running and a notify
 *     says there is work; one next/get in flight at a time.
 *   - Hand an execution (job id + attempt) to a handler at most once: an
 *     execution that is running, finished in this process, or has a final
 *     report waiting in the outbox is never handed out again.
 *   - Reports leave the outbox strictly in order, one in flight; each is
 *     resent with the same token (and the same persisted expected_version)
 *     until answered, so the broker can recognise duplicates.
 *
 * Must never: drop an outbox entry that was not answered; run a handler on
 * a Paho thread (handlers run as FM_EV_JOB events).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

#define MAX_TRACKED 256

/* ---------------------------------------------------------------- tracked versions */

static struct fm_tracked *tracked_find(struct fleetmq_client *c, const char *job_id)
{
	struct fm_tracked *t;

	for(t = c->tracked; t; t = t->next){
		if(!strcmp(t->job_id, job_id)) return t;
	}
	return NULL;
}

static struct fm_tracked *tracked_set(struct fleetmq_client *c, const char *job_id, uint64_t version, uint32_t attempt)
{
	struct fm_tracked *t = tracked_find(c, job_id), **pp;
	size_t n = 0;

	if(!t){
		t = fm_calloc(1, sizeof(*t));
		if(!t) return NULL;
		t->job_id = fm_strdup(job_id);
		if(!t->job_id){
			fm_free(t);
			return NULL;
		}
		t->next = c->tracked;
		c->tracked = t;
		/* bounded: forget the oldest entries */
		for(pp = &c->tracked; *pp; pp = &(*pp)->next){
			if(++n > MAX_TRACKED){
				struct fm_tracked *x = *pp;
				*pp = x->next;
				fm_free(x->job_id);
				fm_free(x);
				break;
			}
		}
	}
	t->version = version;
	if(attempt) t->attempt = attempt;
	return t;
}

/* ---------------------------------------------------------------- finished ring */

static void done_add(struct fleetmq_client *c, const char *job_id, uint32_t attempt)
{
	size_t i = c->done_next % FM_DONE_RING;

	snprintf(c->done_jobs[i], sizeof(c->done_jobs[i]), "%s", job_id);
	c->done_attempts[i] = attempt;
	c->done_next++;
}

static bool done_has(struct fleetmq_client *c, const char *job_id, uint32_t attempt)
{
	size_t i;

	for(i = 0; i < FM_DONE_RING; i++){
		if(c->done_jobs[i][0] && !strcmp(c->done_jobs[i], job_id)
				&& (c->done_attempts[i] == 0 || c->done_attempts[i] == attempt)){
			return true;
		}
	}
	return false;
}

/* ---------------------------------------------------------------- outbox sending */

static void send_head_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	struct outbox_entry *e = c->outbox.head;
	Fleetmq__V1__JobExecutionUpdate u = FLEETMQ__V1__JOB_EXECUTION_UPDATE__INIT;
	Fleetmq__V1__JobExecutionUpdate__StatusDetailsEntry det[FM_MAX_DETAILS], *detp[FM_MAX_DETAILS];
	char suffix[FM_MAX_ID_BYTES + 32];
	size_t i;

	if(!e->ev_known){
		struct fm_tracked *t = tracked_find(c, e->job_id);
		uint64_t ev = t ? t->version : 0;
		if(outbox__set_expected_version(&c->outbox, e, ev) != FLEETMQ_CLIENT_OK){
			client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot persist the expected version of a job report; sending anyway");
			e->ev_known = true;
			e->expected_version = ev;
		}
	}
	u.status = (Fleetmq__V1__ExecutionStatus)e->status;
	u.expected_version = e->expected_version;
	u.progress_percent = e->progress_percent;
	u.step = e->step;
	u.failure_type = e->failure_type;
	u.client_token = e->token;
	for(i = 0; i < e->n_details && i < FM_MAX_DETAILS; i++){
		fleetmq__v1__job_execution_update__status_details_entry__init(&det[i]);
		det[i].key = e->detail_keys[i];
		det[i].value = e->detail_values[i];
		detp[i] = &det[i];
	}
	u.n_status_details = i;
	u.status_details = detp;
	snprintf(suffix, sizeof(suffix), "jobs/%s/update", e->job_id);
	if(client__queue_pb(c, q, suffix, &u.base) != FLEETMQ_CLIENT_OK) return;
	c->outbox_inflight = true;
	c->outbox_sent_ms = client__mono_ms();
	c->n_reports_sent++;
	client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "job report %s: %s status %d (expected version %" PRIu64 ")",
			e->token, e->job_id, e->status, e->expected_version);
}

static void kick_outbox_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	if(c->state != FM_CONN_ONLINE || c->outbox_inflight || !c->outbox.head) return;
	if(c->outbox_retry_at_ms && client__mono_ms() < c->outbox_retry_at_ms) return;
	c->outbox_retry_at_ms = 0;
	send_head_locked(c, q);
}

static void send_next_get_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	Fleetmq__V1__JobNextGetRequest r = FLEETMQ__V1__JOB_NEXT_GET_REQUEST__INIT;

	if(c->state != FM_CONN_ONLINE) return;
	client__token_locked(c, 'n', c->next_get_token, sizeof(c->next_get_token));
	r.client_token = c->next_get_token;
	c->next_get_sent_ms = client__mono_ms();
	c->next_get_again = false;
	if(client__queue_pb(c, q, "jobs/next/get", &r.base) != FLEETMQ_CLIENT_OK) c->next_get_token[0] = '\0';
}

static bool running_locked(struct fleetmq_client *c)
{
	/* a declared (setter) execution does not block fetching: next/get
	 * re-delivers it if it is still active */
	return c->execution_in_progress[0] && c->current_attempt != 0;
}

/* ---------------------------------------------------------------- reports */

static int validate_report(const char *job_id, const struct fleetmq_client_report *r)
{
	size_t i;

	if(!client__valid_id(job_id) || !r || r->version < 1) return FLEETMQ_CLIENT_ERR_INVALID;
	switch(r->status){
		case FLEETMQ_CLIENT_EXEC_IN_PROGRESS:
		case FLEETMQ_CLIENT_EXEC_SUCCEEDED:
		case FLEETMQ_CLIENT_EXEC_FAILED:
		case FLEETMQ_CLIENT_EXEC_REJECTED:
			break;
		default:
			return FLEETMQ_CLIENT_ERR_INVALID;
	}
	if(r->progress_percent < -1 || r->progress_percent > 100) return FLEETMQ_CLIENT_ERR_INVALID;
	if(r->step && strlen(r->step) > FM_MAX_STEP_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
	if(r->failure_type && strlen(r->failure_type) > FM_MAX_STEP_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
	if(r->details_count > FM_MAX_DETAILS || (r->details_count && !r->details)) return FLEETMQ_CLIENT_ERR_INVALID;
	for(i = 0; i < r->details_count; i++){
		const char *k = r->details[i].key, *v = r->details[i].value;
		if(!k || !k[0] || strlen(k) > FM_MAX_DETAIL_KEY_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
		if(v && strlen(v) > FM_MAX_DETAIL_VALUE_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
	}
	return FLEETMQ_CLIENT_OK;
}

static struct outbox_entry *entry_new(struct fleetmq_client *c, const char *job_id, const struct fleetmq_client_report *r)
{
	struct outbox_entry *e = fm_calloc(1, sizeof(*e));
	size_t i;

	if(!e) return NULL;
	e->job_id = fm_strdup(job_id);
	e->status = (int)r->status;
	e->progress_percent = r->progress_percent;
	e->step = fm_strdup(r->step ? r->step : "");
	e->failure_type = fm_strdup(r->failure_type ? r->failure_type : "");
	if(r->details_count){
		e->detail_keys = fm_calloc(r->details_count, sizeof(char *));
		e->detail_values = fm_calloc(r->details_count, sizeof(char *));
		if(!e->detail_keys || !e->detail_values) goto fail;
		for(i = 0; i < r->details_count; i++){
			e->detail_keys[i] = fm_strdup(r->details[i].key);
			e->detail_values[i] = fm_strdup(r->details[i].value ? r->details[i].value : "");
			e->n_details = i + 1;
			if(!e->detail_keys[i] || !e->detail_values[i]) goto fail;
		}
	}
	if(!e->job_id || !e->step || !e->failure_type) goto fail;
	client__token_locked(c, 'r', e->token, sizeof(e->token));
	return e;

fail:
	outbox__entry_free(e);
	return NULL;
}

/* Validated report: persist it, update the running execution, send. */
static int report_locked(struct fleetmq_client *c, const char *job_id, const struct fleetmq_client_report *r,
		struct fm_outq *q)
{
	struct outbox_entry *e;
	bool final = r->status != FLEETMQ_CLIENT_EXEC_IN_PROGRESS;
	int rc;

	if(!final && c->outbox.count >= (size_t)c->outbox_max_entries) return FLEETMQ_CLIENT_ERR_OUTBOX_FULL;
	e = entry_new(c, job_id, r);
	if(!e) return FLEETMQ_CLIENT_ERR_NOMEM;
	if(!outbox__has_job(&c->outbox, job_id, false)){
		/* nothing of this execution is pending: its version is known now */
		struct fm_tracked *t = tracked_find(c, job_id);
		e->ev_known = true;
		e->expected_version = t ? t->version : 0;
	}
	rc = outbox__append(&c->outbox, e);
	if(rc != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot write the job report of %s to the outbox: %s", job_id,
				fleetmq_client_strerror(rc));
		outbox__entry_free(e);
		return rc;
	}
	if(final){
		struct fm_tracked *t = tracked_find(c, job_id);
		uint32_t attempt = 0;
		if(!strcmp(c->execution_in_progress, job_id)){
			attempt = c->current_attempt;
			c->execution_in_progress[0] = '\0';
			c->current_attempt = 0;
		}
		if(!attempt && t) attempt = t->attempt;
		done_add(c, job_id, attempt);
	}
	kick_outbox_locked(c, q);
	return FLEETMQ_CLIENT_OK;
}

int fleetmq_client_job_report(struct fleetmq_client *c, const char *job_id, const struct fleetmq_client_report *report)
{
	struct fm_outq q = {0};
	int rc;

	if(!c) return FLEETMQ_CLIENT_ERR_INVALID;
	if((rc = validate_report(job_id, report)) != FLEETMQ_CLIENT_OK) return rc;
	pthread_mutex_lock(&c->mu);
	rc = report_locked(c, job_id, report, &q);
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);
	return rc;
}

int fleetmq_client_job_progress(struct fleetmq_client *c, const char *job_id, const char *step, int32_t percent)
{
	struct fleetmq_client_report r = FLEETMQ_CLIENT_REPORT_INITIALIZER;

	r.status = FLEETMQ_CLIENT_EXEC_IN_PROGRESS;
	r.step = step;
	r.progress_percent = percent;
	return fleetmq_client_job_report(c, job_id, &r);
}

int fleetmq_client_job_current(struct fleetmq_client *c, char *buf, size_t size)
{
	if(!c || !buf || !size) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	snprintf(buf, size, "%s", c->execution_in_progress);
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

static void reject_locally_locked(struct fleetmq_client *c, const char *job_id, const char *reason, struct fm_outq *q)
{
	struct fleetmq_client_report r = FLEETMQ_CLIENT_REPORT_INITIALIZER;
	struct fleetmq_client_kv kv = { "reason", reason };

	r.status = FLEETMQ_CLIENT_EXEC_REJECTED;
	r.failure_type = "no-handler";
	r.details = &kv;
	r.details_count = 1;
	report_locked(c, job_id, &r, q);
}

void jobs__handler_refused(struct fleetmq_client *c, const char *job_id, int rc)
{
	struct fleetmq_client_report r = FLEETMQ_CLIENT_REPORT_INITIALIZER;
	struct fleetmq_client_kv kv;
	char reason[200];

	snprintf(reason, sizeof(reason), "handler refused the job: %s", fleetmq_client_strerror(rc));
	kv.key = "reason";
	kv.value = reason;
	r.status = FLEETMQ_CLIENT_EXEC_REJECTED;
	r.failure_type = "handler";
	r.details = &kv;
	r.details_count = 1;
	if(fleetmq_client_job_report(c, job_id, &r) != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot report the refusal of job %s", job_id);
	}
}

/* ---------------------------------------------------------------- handlers */

int fleetmq_client_job_handler_add(struct fleetmq_client *c, const char *name, fleetmq_client_job_handler fn, void *ud)
{
	struct fm_handler *h, **pp;
	int rc = FLEETMQ_CLIENT_OK;

	if(!c || !name || !name[0] || strlen(name) > FM_MAX_HANDLER_NAME_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	for(pp = &c->handlers; *pp; pp = &(*pp)->next){
		if(!strcmp((*pp)->name, name)) break;
	}
	if(*pp){
		if(fn){
			(*pp)->fn = fn;
			(*pp)->ud = ud;
		}else{
			h = *pp;
			*pp = h->next;
			fm_free(h->name);
			fm_free(h);
		}
	}else if(fn){
		h = fm_calloc(1, sizeof(*h));
		if(h) h->name = fm_strdup(name);
		if(!h || !h->name){
			fm_free(h);
			rc = FLEETMQ_CLIENT_ERR_NOMEM;
		}else{
			h->fn = fn;
			h->ud = ud;
			h->next = c->handlers;
			c->handlers = h;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static struct fm_handler *handler_find(struct fleetmq_client *c, const char *name)
{
	struct fm_handler *h;

	for(h = c->handlers; h; h = h->next){
		if(!strcmp(h->name, name)) return h;
	}
	return NULL;
}

/* Route an execution: returns the handler (or NULL) and the routing name. */
static struct fm_handler *route(struct fleetmq_client *c, const Fleetmq__V1__JobExecution *x, char *name, size_t size)
{
	static const char *names[] = { "", "update", "config", "feature", "custom" };
	struct fm_handler *h;

	if(x->type == FLEETMQ__V1__JOB_TYPE__JOB_TYPE_CUSTOM){
		cJSON *doc = cJSON_Parse(x->document_json ? x->document_json : "");
		const cJSON *hn = cJSON_GetObjectItemCaseSensitive(doc, "handler");
		if(cJSON_IsString(hn) && hn->valuestring[0] && (h = handler_find(c, hn->valuestring)) != NULL){
			snprintf(name, size, "%s", hn->valuestring);
			cJSON_Delete(doc);
			return h;
		}
		cJSON_Delete(doc);
	}
	snprintf(name, size, "%s", (x->type >= 1 && x->type <= 4) ? names[x->type] : "unspecified");
	return handler_find(c, name);
}

static Fleetmq__V1__JobExecution *exec_copy(const Fleetmq__V1__JobExecution *x)
{
	size_t len = fleetmq__v1__job_execution__get_packed_size(x);
	uint8_t *buf = fm_malloc(len ? len : 1);
	Fleetmq__V1__JobExecution *copy = NULL;

	if(!buf) return NULL;
	fleetmq__v1__job_execution__pack(x, buf);
	copy = fleetmq__v1__job_execution__unpack(NULL, len, buf);
	fm_free(buf);
	return copy;
}

/* next/get returned x: hand it out unless it is a repeat. */
static void consider_execution_locked(struct fleetmq_client *c, const Fleetmq__V1__JobExecution *x, struct fm_outq *q)
{
	struct fm_handler *h;
	struct fm_tracked *t;
	struct fm_event *ev;
	char name[FM_MAX_HANDLER_NAME_BYTES + 1], reason[160];

	if(!x->job_id || !client__valid_id(x->job_id)) return;
	t = tracked_set(c, x->job_id, x->version, x->attempt);
	if(done_has(c, x->job_id, x->attempt) || outbox__has_job(&c->outbox, x->job_id, true)){
		client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "execution %s/%u already finished here: not started again", x->job_id, x->attempt);
		return;
	}
	if(running_locked(c)){
		if(strcmp(c->execution_in_progress, x->job_id) || c->current_attempt != x->attempt){
			client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "execution %s offered while %s runs: later", x->job_id, c->execution_in_progress);
		}
		return;   /* running already (duplicate reply) or another one runs */
	}
	h = route(c, x, name, sizeof(name));
	if(!h){
		snprintf(reason, sizeof(reason), "no handler for job type '%s' on this device", name);
		client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "job %s: %s: rejecting", x->job_id, reason);
		if(t) t->dispatched = true;
		reject_locally_locked(c, x->job_id, reason, q);
		return;
	}
	ev = client__event_new(FM_EV_JOB);
	if(!ev) return;
	ev->exec = exec_copy(x);
	ev->handler_name = fm_strdup(name);
	ev->handler = h->fn;
	ev->handler_ud = h->ud;
	if(!ev->exec || !ev->handler_name){
		client__event_free(ev);
		return;
	}
	snprintf(c->execution_in_progress, sizeof(c->execution_in_progress), "%s", x->job_id);
	c->current_attempt = x->attempt ? x->attempt : 1;
	if(t) t->dispatched = true;
	c->n_jobs_started++;
	client__log(c, FLEETMQ_CLIENT_LOG_INFO, "job %s (attempt %u) -> handler '%s'", x->job_id, x->attempt, name);
	client__event_locked(c, ev);
}

/* ---------------------------------------------------------------- messages */

static void on_notify_locked(struct fleetmq_client *c, const Fleetmq__V1__JobNotify *n, struct fm_outq *q)
{
	size_t i;

	for(i = 0; i < n->n_in_progress; i++){
		if(n->in_progress[i]->job_id) tracked_set(c, n->in_progress[i]->job_id, n->in_progress[i]->version, n->in_progress[i]->attempt);
	}
	for(i = 0; i < n->n_queued; i++){
		if(n->queued[i]->job_id) tracked_set(c, n->queued[i]->job_id, n->queued[i]->version, n->queued[i]->attempt);
	}
	for(i = 0; i < n->n_canceled; i++){
		const Fleetmq__V1__JobExecutionSummary *s = n->canceled[i];
		struct fm_tracked *t;
		bool current;

		if(!s->job_id || !s->job_id[0]) continue;
		t = tracked_set(c, s->job_id, s->version, s->attempt);
		current = !strcmp(c->execution_in_progress, s->job_id);
		if(current){
			c->execution_in_progress[0] = '\0';
			c->current_attempt = 0;
			done_add(c, s->job_id, s->attempt);
		}
		if(current || (t && t->dispatched)){
			struct fm_event *ev = client__event_new(FM_EV_JOB_CANCEL);
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "execution %s canceled by the broker (status %d)", s->job_id, (int)s->status);
			if(ev){
				ev->job_id = fm_strdup(s->job_id);
				ev->attempt = s->attempt;
				ev->status = (int)s->status;
				if(ev->job_id) client__event_locked(c, ev);
				else client__event_free(ev);
			}
		}
	}
	if(running_locked(c) || n->n_in_progress + n->n_queued == 0) return;
	if(c->next_get_token[0]) c->next_get_again = true;
	else send_next_get_locked(c, q);
}

void jobs__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len, struct fm_outq *q)
{
	const char *s;

	if(!strcmp(rest, "jobs/notify")){
		Fleetmq__V1__JobNotify *n = fleetmq__v1__job_notify__unpack(NULL, len, p);
		if(!n) return;
		if(c->state == FM_CONN_ONLINE) on_notify_locked(c, n, q);
		fleetmq__v1__job_notify__free_unpacked(n, NULL);
	}else if(!strcmp(rest, "jobs/next/get/accepted")){
		Fleetmq__V1__JobNextGetAccepted *a = fleetmq__v1__job_next_get_accepted__unpack(NULL, len, p);
		if(!a) return;
		if(c->next_get_token[0] && !strcmp(a->client_token, c->next_get_token)){
			c->next_get_token[0] = '\0';
			if(a->has_execution && a->execution) consider_execution_locked(c, a->execution, q);
			if(c->next_get_again && !running_locked(c)) send_next_get_locked(c, q);
			c->next_get_again = false;
		}
		fleetmq__v1__job_next_get_accepted__free_unpacked(a, NULL);
	}else if(!strcmp(rest, "jobs/next/get/rejected")){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);
		if(!r) return;
		if(c->next_get_token[0] && !strcmp(r->client_token, c->next_get_token)){
			client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "jobs/next/get rejected: %s (%s)", fleetmq_client_strerror((int)r->code), r->reason);
			c->next_get_token[0] = '\0';
		}
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}else if(strncmp(rest, "jobs/", 5) == 0 && (s = strchr(rest + 5, '/')) != NULL
			&& (!strcmp(s, "/update/accepted") || !strcmp(s, "/update/rejected"))){
		struct outbox_entry *head = c->outbox.head;
		struct fm_event *ev;

		if(!strcmp(s, "/update/accepted")){
			Fleetmq__V1__JobExecutionUpdateAccepted *a = fleetmq__v1__job_execution_update_accepted__unpack(NULL, len, p);
			if(!a) return;
			/* the answer to the head, also when it arrives after a reconnect
			 * (resumed session) and the head was not resent yet */
			if(head && !strcmp(a->client_token, head->token)){
				tracked_set(c, head->job_id, a->version, 0);
				ev = client__event_new(FM_EV_REPORT_RESULT);
				if(ev){
					ev->job_id = fm_strdup(head->job_id);
					ev->result.reported = (enum fleetmq_client_exec_status)head->status;
					ev->result.status = FLEETMQ_CLIENT_OK;
					ev->result.version = a->version;
					ev->result.exec_status = (enum fleetmq_client_exec_status)a->status;
					ev->result.duplicate = a->duplicate;
					ev->result.retry_scheduled = a->retry_scheduled;
					client__event_locked(c, ev);
				}
				client__log(c, FLEETMQ_CLIENT_LOG_DEBUG, "job report %s accepted (version %" PRIu64 "%s)", head->token,
						a->version, a->duplicate ? ", duplicate" : "");
				outbox__pop(&c->outbox);
				c->outbox_inflight = false;
				kick_outbox_locked(c, q);
			}
			fleetmq__v1__job_execution_update_accepted__free_unpacked(a, NULL);
		}else{
			Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);
			if(!r) return;
			if(head && !strcmp(r->client_token, head->token)){
				c->outbox_inflight = false;
				if(r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_INTERNAL
						|| r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE){
					client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "job report %s: broker busy (%s): retrying", head->token, r->reason);
					c->outbox_retry_at_ms = client__mono_ms() + FM_TRANSIENT_RETRY_MS;
				}else{
					client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "job report %s for %s rejected: %s (%s)", head->token,
							head->job_id, fleetmq_client_strerror((int)r->code), r->reason);
					if(r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_VERSION_CONFLICT && r->version){
						tracked_set(c, head->job_id, r->version, 0);
					}
					ev = client__event_new(FM_EV_REPORT_RESULT);
					if(ev){
						ev->job_id = fm_strdup(head->job_id);
						ev->text = fm_strdup(r->reason ? r->reason : "");
						ev->result.reported = (enum fleetmq_client_exec_status)head->status;
						ev->result.status = r->code ? (int)r->code : FLEETMQ_CLIENT_ERR_PROTOCOL;
						ev->result.version = r->version;
						client__event_locked(c, ev);
					}
					outbox__pop(&c->outbox);
					kick_outbox_locked(c, q);
				}
			}
			fleetmq__v1__rejection__free_unpacked(r, NULL);
		}
	}
}

/* ---------------------------------------------------------------- connection hooks */

void jobs__on_online_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	c->outbox_retry_at_ms = 0;
	kick_outbox_locked(c, q);
	/* next/get follows the JobNotify the broker sends after every hello */
}

void jobs__on_disconnect_locked(struct fleetmq_client *c)
{
	c->outbox_inflight = false;
	c->next_get_token[0] = '\0';
	c->next_get_again = false;
}

void jobs__tick_locked(struct fleetmq_client *c, uint64_t now, struct fm_outq *q, uint64_t *next_wake)
{
	uint64_t due;

	if(c->outbox_inflight){
		due = c->outbox_sent_ms + (uint64_t)c->request_timeout_ms;
		if(now >= due){
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "job report %s unanswered: resending", c->outbox.head->token);
			c->outbox_inflight = false;
			kick_outbox_locked(c, q);
			due = now + (uint64_t)c->request_timeout_ms;
		}
		if(due < *next_wake) *next_wake = due;
	}else if(c->outbox.head){
		if(c->outbox_retry_at_ms > now){
			if(c->outbox_retry_at_ms < *next_wake) *next_wake = c->outbox_retry_at_ms;
		}else{
			kick_outbox_locked(c, q);
		}
	}
	if(c->next_get_token[0]){
		due = c->next_get_sent_ms + (uint64_t)c->request_timeout_ms;
		if(now >= due){
			send_next_get_locked(c, q);
			due = now + (uint64_t)c->request_timeout_ms;
		}
		if(due < *next_wake) *next_wake = due;
	}
}

void jobs__cleanup(struct fleetmq_client *c)
{
	struct fm_handler *h, *hn;
	struct fm_tracked *t, *tn;

	for(h = c->handlers; h; h = hn){
		hn = h->next;
		fm_free(h->name);
		fm_free(h);
	}
	c->handlers = NULL;
	for(t = c->tracked; t; t = tn){
		tn = t->next;
		fm_free(t->job_id);
		fm_free(t);
	}
	c->tracked = NULL;
}
