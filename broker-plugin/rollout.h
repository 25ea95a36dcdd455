/*
 * rollout.h - who gets a job next, and when to stop (pure core).
 *
 * A job's targets are released into device queues by the rollout:
 *   1. canary phase: the canary targets (a count or percentage of the
 *      targets, or the members of a canary group, chosen by the adapter)
 *      are released first; the rest wait. canary_targets must be set before
 *      the first fleetmq_rollout_releasable() call; 0 = no canary phase;
 *   2. gate: when every canary execution is released and final, the canary
 *      success rate canary_succeeded / canary_targets must be >=
 *      canary_success_pct, else the job aborts. A canceled or removed canary
 *      counts as not succeeded;
 *   3. main phase: the remaining targets are released at the configured
 *      rate: a constant max_per_minute, or an exponential ramp starting at
 *      ramp_base_per_minute and multiplied by ramp_factor_pct/100 after every
 *      ramp_step_successes successes (all SUCCEEDED executions, canaries
 *      included), capped at max_per_minute (0 = no cap).
 * Rates are enforced with a token bucket counted in millitokens (1 release =
 * 1000): capacity = rate * 1000 (one minute's worth), refilled at exactly
 * rate * 1000 per 60000 ms (rate/60 releases per second), with no rounding
 * loss however often it is polled (whole refill periods of at most 60 ms are
 * credited; the rest carries over). The bucket starts full
 * (FLEETMQ_ROLLOUT_BUCKET_FULL), so the first minute's batch goes out at
 * once: 10/min releases 10 at t = 0, then one every 6 s. The canary batch
 * draws on the same bucket. When the rate grows (ramp) the capacity grows
 * with it; the bucket is not topped up. Rate 0 = unlimited: everything
 * remaining in the current set is releasable.
 * Abort criteria are checked whenever an execution becomes final, in every
 * phase (canary executions count too): for each criterion, when at least
 * min_executed executions have finished (final and not CANCELED/REMOVED:
 * operator cancels do not dilute the failure share) and the share of them
 * that ended with the criterion's failure type is >= threshold_pct, the job
 * aborts (the adapter cancels whatever is not yet final).
 *
 * All percentage comparisons are exact integer cross-multiplications (no
 * rounding, no overflow); percentages in reason strings are rounded down.
 * Nothing here reads the clock, allocates or keeps global state.
 */
#ifndef FLEETMQ_ROLLOUT_H
#define FLEETMQ_ROLLOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs.h"

#define FLEETMQ_ROLLOUT_MAX_ABORT 4

/* bucket_millitokens value meaning "full, whatever the capacity": set by
 * fleetmq_rollout_init() and clamped to the capacity on the first
 * fleetmq_rollout_releasable() call. A store keeping the state as a signed
 * 64-bit integer must round-trip it (it casts to -1). */
#define FLEETMQ_ROLLOUT_BUCKET_FULL UINT64_MAX

enum fleetmq_failure_type {
	FM_FAILURE_ANY = 0,        /* FAILED, REJECTED or TIMED_OUT */
	FM_FAILURE_FAILED = 1,
	FM_FAILURE_REJECTED = 2,
	FM_FAILURE_TIMED_OUT = 3,
};

struct fleetmq_abort_criterion {
	enum fleetmq_failure_type failure_type;
	uint32_t threshold_pct;    /* 1..100; 0 (or an unknown failure_type) disables the criterion */
	uint32_t min_executed;     /* finished executions (final, not canceled/removed) needed before judging */
};

struct fleetmq_rollout_policy {
	uint32_t max_per_minute;           /* 0 = unlimited (constant rate); with a ramp: its cap, 0 = none */
	uint32_t ramp_base_per_minute;     /* 0 = no ramp */
	uint32_t ramp_factor_pct;          /* e.g. 200 doubles the rate per step; 0 = 100 (no growth) */
	uint32_t ramp_step_successes;      /* successes per ramp step; >= 1 when ramping (0 = no growth) */
	uint32_t canary_success_pct;       /* required share of SUCCEEDED among canaries; the config
	                                    * default is 100; 0 = any result passes; > 100 counts as 100 */
	size_t n_abort;                    /* entries of abort[] in use; more than MAX counts as MAX */
	struct fleetmq_abort_criterion abort[FLEETMQ_ROLLOUT_MAX_ABORT];
};

enum fleetmq_rollout_phase {
	FM_ROLLOUT_CANARY = 0,     /* releasing / waiting for canaries */
	FM_ROLLOUT_MAIN = 1,       /* releasing the rest */
	FM_ROLLOUT_DONE = 2,       /* every target released (executions may still run; abort criteria still apply) */
	FM_ROLLOUT_ABORTED = 3,    /* sticky: nothing is released any more */
};

/* Counters the adapter keeps up to date (from the store at start-up). */
struct fleetmq_rollout_state {
	enum fleetmq_rollout_phase phase;
	uint64_t targets;                  /* known targets so far */
	uint64_t canary_targets;
	uint64_t released;                 /* total released (canary included) */
	uint64_t canary_released;
	uint64_t final_total;              /* executions final (no retry pending), canceled included */
	uint64_t final_by_status[FM_EXEC_STATUS_COUNT];
	uint64_t canary_final;
	uint64_t canary_succeeded;
	/* token bucket */
	uint64_t bucket_millitokens;       /* 1000 per release; FLEETMQ_ROLLOUT_BUCKET_FULL after init */
	uint64_t bucket_updated_ms;        /* time up to which refill has been credited */
	bool targets_complete;             /* fan-out finished: targets is the final count */
};

/* Phase CANARY, every counter 0, targets_complete false, bucket full
 * (FLEETMQ_ROLLOUT_BUCKET_FULL) as of now_ms. The adapter then sets targets
 * and canary_targets. */
void fleetmq_rollout_init(struct fleetmq_rollout_state *s, uint64_t now_ms);

/* Current release rate in executions per minute (0 = unlimited).
 * Without a ramp: max_per_minute. With one: ramp_base_per_minute *
 * (ramp_factor_pct/100)^floor(final_by_status[SUCCEEDED] / ramp_step_successes),
 * computed exactly as fleetmq_retry_backoff_ms() grows a delay, capped at
 * max_per_minute when non-zero, and never below 1 (a shrinking ramp must not
 * turn into "unlimited"). 0 for a NULL p. */
uint32_t fleetmq_rollout_rate(const struct fleetmq_rollout_policy *p, const struct fleetmq_rollout_state *s);

/* How many executions may be released now, and from which set
 * (*canary = true: canary targets only; canary may be NULL). Refills the
 * token bucket up to now_ms, then advances phases (CANARY -> MAIN when there
 * are no canaries or the canary gate passes, MAIN -> DONE when everything is
 * released and targets_complete; both can happen in one call). In CANARY:
 * canary_targets - canary_released; in MAIN: targets - released; never more
 * than targets - released, and at most the whole tokens in the bucket unless
 * the rate is unlimited. While the canaries run, or when the gate fails,
 * returns 0 (the gate failure itself is reported by
 * fleetmq_rollout_should_abort(), which sets ABORTED). 0 in DONE and
 * ABORTED. *canary is true while the phase is CANARY, false otherwise. Does
 * not consume tokens: call fleetmq_rollout_consume() with the number actually
 * released. A clock that goes backwards credits nothing. */
uint64_t fleetmq_rollout_releasable(const struct fleetmq_rollout_policy *p, struct fleetmq_rollout_state *s,
		uint64_t now_ms, bool *canary);

/* n executions were released: takes n * 1000 millitokens from the bucket (not
 * below 0), adds n to released and, when canary, to canary_released. Pass the
 * *canary that fleetmq_rollout_releasable() returned. */
void fleetmq_rollout_consume(struct fleetmq_rollout_state *s, uint64_t n, bool canary);

/* Record an execution that became final (fleetmq_exec_is_final() turned
 * true): final_total, final_by_status[status], and for a canary canary_final
 * and (if SUCCEEDED) canary_succeeded. A status that is not terminal is
 * ignored. Call it once per execution, not per attempt. */
void fleetmq_rollout_record_final(struct fleetmq_rollout_state *s, enum fleetmq_exec_status status, bool canary);

/* Check the canary gate (phase CANARY, every canary released and final) and
 * then the abort criteria in order; the first that trips sets phase ABORTED
 * and writes a reason (optional, caller-owned, truncated to reason_len; ""
 * when not aborting) such as
 *   "canary gate: 1 of 2 canary executions succeeded (50%) < required 100%"
 *   "abort: 3 of 10 finished executions (30%) ended FAILED, threshold 25%"
 * Idempotent: once ABORTED it returns true on every call (with the reason
 * re-derived from the counters, or "rollout aborted" when none applies any
 * more, e.g. the adapter set ABORTED itself). */
bool fleetmq_rollout_should_abort(const struct fleetmq_rollout_policy *p, struct fleetmq_rollout_state *s,
		char *reason, size_t reason_len);

/* "CANARY", "MAIN", "DONE", "ABORTED"; "UNKNOWN" for other values. Static, never NULL. */
const char *fleetmq_rollout_phase_name(enum fleetmq_rollout_phase ph);

#endif
