/*
 * jobs.c - job execution state machine (see jobs.h for the contract).
 *
 * Owns the rules for one execution: which device reports are legal, version
 * checks and duplicate detection, in-progress timeouts, retry scheduling
 * with exponential backoff, and operator cancel. It takes an execution, a
 * policy and "now" (ms, supplied by the caller) and returns data: it must
 * never read the clock, allocate, log, or touch Mosquitto or SQLite, and it
 * keeps no global state. Persisting the result is the adapter's job.
 *
 * Every function that changes an execution goes through bump(), so "every
 * change is version + 1 and sets updated_ms" holds by construction, and
 * every error path returns before the first write, so errors leave the
 * execution untouched.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fleetmq_status.h"
#include "jobs.h"

/* Fixed point for backoff growth: values are carried in millionths of a ms
 * so that small bases with fractional factors (1 ms x 150%) still grow. */
#define JOBS_FIXED_ONE 1000000u

static const char *const status_names[FM_EXEC_STATUS_COUNT] = {
	[FM_EXEC_PENDING] = "PENDING",
	[FM_EXEC_QUEUED] = "QUEUED",
	[FM_EXEC_IN_PROGRESS] = "IN_PROGRESS",
	[FM_EXEC_SUCCEEDED] = "SUCCEEDED",
	[FM_EXEC_FAILED] = "FAILED",
	[FM_EXEC_REJECTED] = "REJECTED",
	[FM_EXEC_TIMED_OUT] = "TIMED_OUT",
	[FM_EXEC_CANCELED] = "CANCELED",
	[FM_EXEC_REMOVED] = "REMOVED",
};

/* ---- small helpers ------------------------------------------------------ */

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
{
	va_list ap;

	if(reason == NULL || reason_len == 0) return;
	va_start(ap, fmt);
	vsnprintf(reason, reason_len, fmt, ap);
	va_end(ap);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* floor(v * pct / 100) without overflow; false (and *out untouched) if the
 * exact result does not fit in 64 bits. */
static bool mul_pct(uint64_t v, uint32_t pct, uint64_t *out)
{
	uint64_t q = v / 100, r = v % 100;
	uint64_t hi, lo;

	if(pct != 0 && q > UINT64_MAX / pct) return false;
	hi = q * pct;
	lo = r * pct / 100;                 /* r * pct < 100 * 2^32: no overflow */
	if(hi > UINT64_MAX - lo) return false;
	*out = hi + lo;
	return true;
}

static bool reportable(enum fleetmq_exec_status s)
{
	return s == FM_EXEC_IN_PROGRESS || s == FM_EXEC_SUCCEEDED
		|| s == FM_EXEC_FAILED || s == FM_EXEC_REJECTED;
}

static bool progress_matches(const struct fleetmq_execution *e, const struct fleetmq_exec_report *r)
{
	return r->progress_percent == -1 || r->progress_percent == e->progress_percent;
}

/* Record a change: the single place that bumps version and updated_ms. */
static void bump(struct fleetmq_execution *e, uint64_t now_ms)
{
	e->version++;
	e->updated_ms = now_ms;
}

/* The attempt ended FAILED or TIMED_OUT: schedule a retry if the budget
 * allows one. Returns true if a retry was scheduled. */
static bool schedule_retry(struct fleetmq_execution *e, const struct fleetmq_job_policy *p,
		uint32_t max_retries, uint64_t now_ms)
{
	uint64_t at;

	if(p == NULL || e->attempt == 0 || e->attempt - 1 >= max_retries) return false;
	at = add_sat(now_ms, fleetmq_retry_backoff_ms(&p->retry, e->attempt));
	e->retry_at_ms = at == 0 ? 1 : at;  /* 0 would mean "no retry" */
	return true;
}

/* ---- names ------------------------------------------------------------- */

bool fleetmq_exec_is_terminal(enum fleetmq_exec_status s)
{
	switch(s){
		case FM_EXEC_SUCCEEDED:
		case FM_EXEC_FAILED:
		case FM_EXEC_REJECTED:
		case FM_EXEC_TIMED_OUT:
		case FM_EXEC_CANCELED:
		case FM_EXEC_REMOVED:
			return true;
		default:
			return false;
	}
}

bool fleetmq_exec_is_final(const struct fleetmq_execution *e)
{
	return e != NULL && fleetmq_exec_is_terminal(e->status) && e->retry_at_ms == 0;
}

const char *fleetmq_exec_status_name(enum fleetmq_exec_status s)
{
	if((unsigned)s >= FM_EXEC_STATUS_COUNT) return "UNKNOWN";
	return status_names[s];
}

int fleetmq_exec_status_parse(const char *name)
{
	int i;

	if(name == NULL) return -1;
	for(i = 0; i < FM_EXEC_STATUS_COUNT; i++){
		if(strcasecmp(name, status_names[i]) == 0) return i;
	}
	return -1;
}

/* ---- lifecycle --------------------------------------------------------- */

void fleetmq_exec_init(struct fleetmq_execution *e, bool released, uint64_t now_ms)
{
	if(e == NULL) return;
	memset(e, 0, sizeof(*e));
	e->status = released ? FM_EXEC_QUEUED : FM_EXEC_PENDING;
	e->version = 1;
	e->attempt = 1;
	e->queued_ms = released ? now_ms : 0;
	e->updated_ms = now_ms;
	e->progress_percent = -1;
}

int fleetmq_exec_release(struct fleetmq_execution *e, uint64_t now_ms)
{
	if(e == NULL || e->status != FM_EXEC_PENDING) return FLEETMQ_ERR_BAD_REQUEST;
	e->status = FM_EXEC_QUEUED;
	e->queued_ms = now_ms;
	bump(e, now_ms);
	return FLEETMQ_OK;
}

int fleetmq_exec_apply_report(struct fleetmq_execution *e, const struct fleetmq_exec_report *r,
		const struct fleetmq_job_policy *p, uint64_t now_ms, enum fleetmq_exec_outcome *outcome,
		char *reason, size_t reason_len)
{
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	set_reason(reason, reason_len, "%s", "");
	if(e == NULL || r == NULL){
		set_reason(reason, reason_len, "no execution or no report");
		return FLEETMQ_ERR_BAD_REQUEST;
	}

	/* 1. The report itself. */
	if(!reportable(r->status)){
		set_reason(reason, reason_len, "a device cannot report status %s",
				fleetmq_exec_status_name(r->status));
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(r->progress_percent < -1 || r->progress_percent > 100){
		set_reason(reason, reason_len, "progress %d outside 0..100", (int)r->progress_percent);
		return FLEETMQ_ERR_BAD_REQUEST;
	}

	/* 2. A repeat of the report that produced the current version. */
	if(r->status == e->status && progress_matches(e, r)){
		bool repeat_of_last = r->expected_version != 0 && r->expected_version == e->version - 1;
		bool unconditional_terminal = r->expected_version == 0 && fleetmq_exec_is_terminal(e->status);

		if(repeat_of_last || unconditional_terminal){
			if(outcome) *outcome = FM_OUTCOME_DUPLICATE;
			return FLEETMQ_OK;
		}
	}

	/* 3. Optimistic concurrency. */
	if(r->expected_version != 0 && r->expected_version != e->version){
		set_reason(reason, reason_len, "version conflict: expected %llu, current %llu",
				(unsigned long long)r->expected_version, (unsigned long long)e->version);
		return FLEETMQ_ERR_VERSION_CONFLICT;
	}

	/* 4. Legal from here? Only QUEUED and IN_PROGRESS accept reports, and
	 * every reportable status is legal from both. */
	if(e->status != FM_EXEC_QUEUED && e->status != FM_EXEC_IN_PROGRESS){
		set_reason(reason, reason_len, "illegal transition %s -> %s",
				fleetmq_exec_status_name(e->status), fleetmq_exec_status_name(r->status));
		return FLEETMQ_ERR_BAD_REQUEST;
	}

	/* 5. Apply. */
	if(r->status == FM_EXEC_IN_PROGRESS){
		if(e->status == FM_EXEC_QUEUED){
			/* Start of the attempt: the deadline is fixed here and
			 * progress updates never move it. */
			uint64_t timeout = p ? p->in_progress_timeout_ms : 0;

			e->started_ms = now_ms;
			e->deadline_ms = timeout ? add_sat(now_ms, timeout) : 0;
		}
	}else{
		e->deadline_ms = 0;
		if(r->status == FM_EXEC_FAILED
				&& schedule_retry(e, p, p ? p->retry.max_retries_failed : 0, now_ms)){
			out = FM_OUTCOME_RETRY_SCHEDULED;
		}
	}
	e->status = r->status;
	if(r->progress_percent != -1) e->progress_percent = r->progress_percent;
	bump(e, now_ms);
	if(outcome) *outcome = out;
	return FLEETMQ_OK;
}

bool fleetmq_exec_check_timeout(struct fleetmq_execution *e, const struct fleetmq_job_policy *p, uint64_t now_ms)
{
	if(e == NULL || e->status != FM_EXEC_IN_PROGRESS) return false;
	if(e->deadline_ms == 0 || now_ms < e->deadline_ms) return false;
	e->status = FM_EXEC_TIMED_OUT;
	e->deadline_ms = 0;
	schedule_retry(e, p, p ? p->retry.max_retries_timed_out : 0, now_ms);
	bump(e, now_ms);
	return true;
}

bool fleetmq_exec_retry_if_due(struct fleetmq_execution *e, uint64_t now_ms)
{
	if(e == NULL || !fleetmq_exec_is_terminal(e->status)) return false;
	if(e->retry_at_ms == 0 || now_ms < e->retry_at_ms) return false;
	e->status = FM_EXEC_QUEUED;
	e->attempt++;
	e->retry_at_ms = 0;
	e->started_ms = 0;
	e->deadline_ms = 0;
	e->progress_percent = -1;
	e->queued_ms = now_ms;
	bump(e, now_ms);
	return true;
}

bool fleetmq_exec_cancel(struct fleetmq_execution *e, bool force, bool remove, uint64_t now_ms)
{
	if(e == NULL) return false;
	switch(e->status){
		case FM_EXEC_IN_PROGRESS:
			if(!force) return false;
			/* fall through */
		case FM_EXEC_PENDING:
		case FM_EXEC_QUEUED:
			e->status = remove ? FM_EXEC_REMOVED : FM_EXEC_CANCELED;
			e->deadline_ms = 0;
			bump(e, now_ms);
			return true;
		default:
			if(!fleetmq_exec_is_terminal(e->status) || e->retry_at_ms == 0) return false;
			e->retry_at_ms = 0;
			bump(e, now_ms);
			return true;
	}
}

/* ---- backoff ----------------------------------------------------------- */

uint64_t fleetmq_retry_backoff_ms(const struct fleetmq_retry_policy *p, uint32_t n)
{
	uint64_t limit, scale, v;
	uint32_t factor, i;

	if(p == NULL) return 0;
	limit = p->backoff_max_ms ? p->backoff_max_ms : UINT64_MAX;
	factor = p->backoff_factor_pct ? p->backoff_factor_pct : 100;
	if(n <= 1 || factor == 100 || p->backoff_ms == 0){
		return p->backoff_ms < limit ? p->backoff_ms : limit;
	}

	/* v / scale approximates backoff_ms * (factor/100)^i from below. Start
	 * in fixed point when it fits, drop to whole ms when it no longer does.
	 * The loop ends early once the cap is reached or v stops changing
	 * (0 when shrinking), so it is short even for huge n. */
	scale = p->backoff_ms <= UINT64_MAX / JOBS_FIXED_ONE ? JOBS_FIXED_ONE : 1;
	v = p->backoff_ms * scale;
	for(i = 1; i < n; i++){
		uint64_t next;

		if(!mul_pct(v, factor, &next)){
			if(scale == 1) return limit;    /* the true value exceeds 2^64 > limit */
			v /= scale;
			scale = 1;
			i--;                            /* redo this step in whole ms */
			continue;
		}
		if(next / scale >= limit) return limit;
		if(next == v) break;
		v = next;
	}
	return v / scale;
}
