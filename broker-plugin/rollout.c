/*
 * rollout.c - release pacing, canary gate and abort decisions (see rollout.h).
 *
 * Owns the decisions of one job's rollout: how many executions may be
 * released now (token bucket, exponential ramp), when the canary phase ends,
 * and when the job must abort. It works on counters the adapter keeps in
 * struct fleetmq_rollout_state and on a "now" passed in; it must never read
 * the clock, allocate, log, pick which devices get released, or touch
 * Mosquitto or SQLite, and it keeps no global state.
 *
 * Token bucket without rounding drift: rate r per minute is r * 1000
 * millitokens per 60000 ms, i.e. r/60 per ms. With g = gcd(60, r) that is
 * exactly r/g millitokens per 60/g ms, so refill credits whole periods of
 * 60/g ms (at most 60 ms) and leaves the rest of the elapsed time in
 * bucket_updated_ms for the next call. Polling every millisecond gives the
 * same result as polling once a minute.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "jobs.h"
#include "rollout.h"

#define ROLLOUT_MILLITOKENS_PER_RELEASE 1000u
#define ROLLOUT_MINUTE_MS 60000u

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

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	return (b != 0 && a > UINT64_MAX / b) ? UINT64_MAX : a * b;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
	while(b != 0){
		uint32_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* a * m as a 96-bit number (hi:lo, hi holding bits 64..95). */
static void mul_wide(uint64_t a, uint32_t m, uint64_t *hi, uint64_t *lo)
{
	uint64_t low = (a & 0xffffffffu) * m;       /* < 2^64 */
	uint64_t high = (a >> 32) * m;              /* <= (2^32 - 1)^2 */
	uint64_t mid = high + (low >> 32);          /* < 2^64, see above */

	*hi = mid >> 32;
	*lo = (mid << 32) | (low & 0xffffffffu);
}

/* Exactly: num * 100 >= pct * den. */
static bool share_at_least(uint64_t num, uint64_t den, uint32_t pct)
{
	uint64_t lh, ll, rh, rl;

	mul_wide(num, 100, &lh, &ll);
	mul_wide(den, pct, &rh, &rl);
	return lh > rh || (lh == rh && ll >= rl);
}

/* floor(num * 100 / den) for reason strings (den > 0). */
static unsigned long long pct_floor(uint64_t num, uint64_t den)
{
	if(num <= UINT64_MAX / 100) return (unsigned long long)(num * 100 / den);
	if(den / 100 == 0) return (unsigned long long)UINT64_MAX;
	return (unsigned long long)(num / (den / 100));
}

static uint64_t remaining(const struct fleetmq_rollout_state *s)
{
	return s->targets > s->released ? s->targets - s->released : 0;
}

/* Credit the bucket with whole refill periods up to now_ms (see the top of
 * this file). A full bucket does not accumulate time. */
static void bucket_refill(struct fleetmq_rollout_state *s, uint32_t rate, uint64_t now_ms)
{
	uint64_t cap, room, period_ms, per_period, periods, needed;
	uint32_t g;

	if(rate == 0){                          /* unlimited: nothing to count */
		s->bucket_updated_ms = now_ms;
		return;
	}
	cap = (uint64_t)rate * ROLLOUT_MILLITOKENS_PER_RELEASE;
	if(s->bucket_millitokens >= cap){
		s->bucket_millitokens = cap;
		s->bucket_updated_ms = now_ms;
		return;
	}
	if(now_ms <= s->bucket_updated_ms){
		s->bucket_updated_ms = now_ms;  /* clock went back: credit nothing */
		return;
	}
	g = gcd_u32(ROLLOUT_MINUTE_MS / ROLLOUT_MILLITOKENS_PER_RELEASE, rate);
	period_ms = (ROLLOUT_MINUTE_MS / ROLLOUT_MILLITOKENS_PER_RELEASE) / g;
	per_period = rate / g;
	periods = (now_ms - s->bucket_updated_ms) / period_ms;
	room = cap - s->bucket_millitokens;
	needed = room / per_period + (room % per_period != 0);
	if(periods >= needed){
		s->bucket_millitokens = cap;
		s->bucket_updated_ms = now_ms;
	}else{
		/* periods * per_period < room: no overflow */
		s->bucket_millitokens += periods * per_period;
		s->bucket_updated_ms += periods * period_ms;
	}
}

static uint64_t rate_limited(uint64_t want, uint32_t rate, const struct fleetmq_rollout_state *s)
{
	if(rate == 0) return want;
	return min_u64(want, s->bucket_millitokens / ROLLOUT_MILLITOKENS_PER_RELEASE);
}

static uint32_t required_canary_pct(const struct fleetmq_rollout_policy *p)
{
	return p->canary_success_pct > 100 ? 100 : p->canary_success_pct;
}

static bool canaries_done(const struct fleetmq_rollout_state *s)
{
	return s->canary_released >= s->canary_targets && s->canary_final >= s->canary_targets;
}

static bool canary_gate_passes(const struct fleetmq_rollout_policy *p, const struct fleetmq_rollout_state *s)
{
	return share_at_least(s->canary_succeeded, s->canary_targets, required_canary_pct(p));
}

/* ---- public ------------------------------------------------------------ */

void fleetmq_rollout_init(struct fleetmq_rollout_state *s, uint64_t now_ms)
{
	if(s == NULL) return;
	memset(s, 0, sizeof(*s));
	s->phase = FM_ROLLOUT_CANARY;
	s->bucket_millitokens = FLEETMQ_ROLLOUT_BUCKET_FULL;
	s->bucket_updated_ms = now_ms;
}

uint32_t fleetmq_rollout_rate(const struct fleetmq_rollout_policy *p, const struct fleetmq_rollout_state *s)
{
	struct fleetmq_retry_policy growth;
	uint64_t steps, rate;

	if(p == NULL) return 0;
	if(p->ramp_base_per_minute == 0) return p->max_per_minute;

	steps = 0;
	if(s != NULL && p->ramp_step_successes != 0){
		steps = s->final_by_status[FM_EXEC_SUCCEEDED] / p->ramp_step_successes;
	}
	/* The ramp grows exactly like a retry delay: base * (factor/100)^steps,
	 * capped. Beyond UINT32_MAX - 1 steps the value is long saturated (or
	 * at its floor), so clamping steps changes nothing. */
	memset(&growth, 0, sizeof(growth));
	growth.backoff_ms = p->ramp_base_per_minute;
	growth.backoff_factor_pct = p->ramp_factor_pct;
	growth.backoff_max_ms = p->max_per_minute ? p->max_per_minute : UINT32_MAX;
	if(steps > UINT32_MAX - 1) steps = UINT32_MAX - 1;
	rate = fleetmq_retry_backoff_ms(&growth, (uint32_t)steps + 1);
	return rate == 0 ? 1 : (uint32_t)rate;
}

uint64_t fleetmq_rollout_releasable(const struct fleetmq_rollout_policy *p, struct fleetmq_rollout_state *s,
		uint64_t now_ms, bool *canary)
{
	uint32_t rate;
	uint64_t n = 0;

	if(canary) *canary = false;
	if(p == NULL || s == NULL) return 0;
	if(s->phase == FM_ROLLOUT_DONE || s->phase == FM_ROLLOUT_ABORTED) return 0;

	rate = fleetmq_rollout_rate(p, s);
	bucket_refill(s, rate, now_ms);

	if(s->phase == FM_ROLLOUT_CANARY){
		if(s->canary_targets == 0){
			s->phase = FM_ROLLOUT_MAIN;
		}else if(s->canary_released < s->canary_targets){
			if(canary) *canary = true;
			n = min_u64(s->canary_targets - s->canary_released, remaining(s));
			return rate_limited(n, rate, s);
		}else if(canaries_done(s) && canary_gate_passes(p, s)){
			s->phase = FM_ROLLOUT_MAIN;
		}else{
			/* canaries still running, or the gate failed (should_abort) */
			if(canary) *canary = true;
			return 0;
		}
	}

	/* FM_ROLLOUT_MAIN */
	n = remaining(s);
	if(n == 0){
		if(s->targets_complete) s->phase = FM_ROLLOUT_DONE;
		return 0;
	}
	return rate_limited(n, rate, s);
}

void fleetmq_rollout_consume(struct fleetmq_rollout_state *s, uint64_t n, bool canary)
{
	uint64_t cost;

	if(s == NULL) return;
	cost = mul_sat(n, ROLLOUT_MILLITOKENS_PER_RELEASE);
	s->bucket_millitokens -= min_u64(cost, s->bucket_millitokens);
	s->released += n;
	if(canary) s->canary_released += n;
}

void fleetmq_rollout_record_final(struct fleetmq_rollout_state *s, enum fleetmq_exec_status status, bool canary)
{
	if(s == NULL || !fleetmq_exec_is_terminal(status)) return;
	s->final_total++;
	s->final_by_status[status]++;
	if(canary){
		s->canary_final++;
		if(status == FM_EXEC_SUCCEEDED) s->canary_succeeded++;
	}
}

static const char *failure_type_text(enum fleetmq_failure_type t)
{
	switch(t){
		case FM_FAILURE_ANY: return "FAILED, REJECTED or TIMED_OUT";
		case FM_FAILURE_FAILED: return "FAILED";
		case FM_FAILURE_REJECTED: return "REJECTED";
		case FM_FAILURE_TIMED_OUT: return "TIMED_OUT";
		default: return NULL;
	}
}

static uint64_t failures_of(const struct fleetmq_rollout_state *s, enum fleetmq_failure_type t)
{
	const uint64_t *b = s->final_by_status;

	switch(t){
		case FM_FAILURE_ANY: return b[FM_EXEC_FAILED] + b[FM_EXEC_REJECTED] + b[FM_EXEC_TIMED_OUT];
		case FM_FAILURE_FAILED: return b[FM_EXEC_FAILED];
		case FM_FAILURE_REJECTED: return b[FM_EXEC_REJECTED];
		case FM_FAILURE_TIMED_OUT: return b[FM_EXEC_TIMED_OUT];
		default: return 0;
	}
}

/* Final executions that ran to an outcome: canceled and removed ones are
 * left out so operator cancels do not dilute the failure share. */
static uint64_t finished(const struct fleetmq_rollout_state *s)
{
	uint64_t skipped = s->final_by_status[FM_EXEC_CANCELED] + s->final_by_status[FM_EXEC_REMOVED];

	return s->final_total > skipped ? s->final_total - skipped : 0;
}

/* The first abort criterion that trips, with its reason; false if none. */
static bool criteria_trip(const struct fleetmq_rollout_policy *p, const struct fleetmq_rollout_state *s,
		char *reason, size_t reason_len)
{
	uint64_t done = finished(s);
	size_t i, n = p->n_abort < FLEETMQ_ROLLOUT_MAX_ABORT ? p->n_abort : FLEETMQ_ROLLOUT_MAX_ABORT;

	if(done == 0) return false;
	for(i = 0; i < n; i++){
		const struct fleetmq_abort_criterion *c = &p->abort[i];
		const char *what = failure_type_text(c->failure_type);
		uint64_t bad;

		if(what == NULL || c->threshold_pct == 0 || done < c->min_executed) continue;
		bad = failures_of(s, c->failure_type);
		if(bad == 0 || !share_at_least(bad, done, c->threshold_pct)) continue;
		set_reason(reason, reason_len,
				"abort: %llu of %llu finished executions (%llu%%) ended %s, threshold %u%%",
				(unsigned long long)bad, (unsigned long long)done, pct_floor(bad, done),
				what, (unsigned)c->threshold_pct);
		return true;
	}
	return false;
}

bool fleetmq_rollout_should_abort(const struct fleetmq_rollout_policy *p, struct fleetmq_rollout_state *s,
		char *reason, size_t reason_len)
{
	bool aborted;
	bool gate_checked;

	set_reason(reason, reason_len, "%s", "");
	if(s == NULL) return false;
	aborted = s->phase == FM_ROLLOUT_ABORTED;
	if(p == NULL){
		if(aborted) set_reason(reason, reason_len, "rollout aborted");
		return aborted;
	}

	/* Once aborted, the gate is looked at again only to explain why. */
	gate_checked = (s->phase == FM_ROLLOUT_CANARY || aborted)
		&& s->canary_targets > 0 && canaries_done(s);
	if(gate_checked && !canary_gate_passes(p, s)){
		set_reason(reason, reason_len,
				"canary gate: %llu of %llu canary executions succeeded (%llu%%) < required %u%%",
				(unsigned long long)s->canary_succeeded, (unsigned long long)s->canary_targets,
				pct_floor(s->canary_succeeded, s->canary_targets),
				(unsigned)required_canary_pct(p));
		s->phase = FM_ROLLOUT_ABORTED;
		return true;
	}
	if(criteria_trip(p, s, reason, reason_len)){
		s->phase = FM_ROLLOUT_ABORTED;
		return true;
	}
	if(aborted) set_reason(reason, reason_len, "rollout aborted");
	return aborted;
}

const char *fleetmq_rollout_phase_name(enum fleetmq_rollout_phase ph)
{
	switch(ph){
		case FM_ROLLOUT_CANARY: return "CANARY";
		case FM_ROLLOUT_MAIN: return "MAIN";
		case FM_ROLLOUT_DONE: return "DONE";
		case FM_ROLLOUT_ABORTED: return "ABORTED";
		default: return "UNKNOWN";
	}
}
