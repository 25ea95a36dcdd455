/*
 * jobs.h - job execution lifecycle (pure core: no Mosquitto, no SQLite, no clock).
 *
 * One execution = one job on one device. Its status moves
 *
 *   PENDING --release--> QUEUED --device--> IN_PROGRESS --device--> SUCCEEDED | FAILED | REJECTED
 *                          |                     |--deadline--> TIMED_OUT
 *                          |                     |--operator (force)--> CANCELED / REMOVED
 *                          |--operator--> CANCELED / REMOVED
 *   PENDING --operator--> CANCELED / REMOVED
 *
 * PENDING is internal: the device is targeted but the rollout has not
 * released the execution yet (rate limit, canary gate); devices never see it.
 * A device may also go QUEUED -> SUCCEEDED/FAILED/REJECTED directly, and may
 * repeat IN_PROGRESS (a progress update: a change, so version + 1).
 * Everything else a device asks for is FLEETMQ_ERR_BAD_REQUEST: a device can
 * never report QUEUED, TIMED_OUT, CANCELED, REMOVED (or PENDING), never act
 * on a PENDING execution, and never leave a terminal status.
 *
 * Terminal statuses (SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED,
 * REMOVED) end an attempt. A FAILED or TIMED_OUT attempt is retried when the
 * job's retry policy allows it: retry_at_ms is set, and once it is due the
 * execution becomes QUEUED again with attempt + 1. An execution with no
 * retry pending in a terminal status is final. REJECTED (the device refused
 * the job: incompatible, downgrade...) is never retried.
 *
 * Retry budget: after attempt a ends FAILED, a retry is scheduled when
 * a - 1 < max_retries_failed; after it ends TIMED_OUT, when
 * a - 1 < max_retries_timed_out. Both compare the total number of retries
 * so far (whatever ended the earlier attempts), not separate counters.
 *
 * In-progress timeout: the first IN_PROGRESS of an attempt sets started_ms
 * and deadline_ms = now + in_progress_timeout_ms (0 = no deadline). The
 * timeout bounds the whole attempt from its start: progress updates do NOT
 * extend it, and the stored deadline_ms (not the current policy) decides.
 * Only fleetmq_exec_check_timeout() enforces it (at now >= deadline_ms);
 * fleetmq_exec_apply_report() does not look at the deadline, so a report
 * that arrives before the adapter's timeout sweep is still applied. An
 * adapter that wants strict deadlines calls check_timeout before applying a
 * report. QUEUED executions have no timeout.
 *
 * Every change increments version (optimistic concurrency for devices) and
 * sets updated_ms. A device report carries the version it last saw
 * (expected_version):
 *   - equal to the current version: applied if the transition is legal;
 *   - a repeat of the report that produced the current version (expected
 *     = version - 1, same status, progress not given or the same): DUPLICATE,
 *     nothing changes, the same answer is sent again (idempotent retries of
 *     lost acks);
 *   - anything else: VERSION_CONFLICT, nothing changes.
 * expected_version 0 is unconditional: no concurrency check. An
 * unconditional report that repeats the current terminal status (progress
 * not given or the same) is also a DUPLICATE, so a device re-sending
 * SUCCEEDED after a lost ack gets the same answer. Unconditional reports
 * cannot tell attempts apart (a stale FAILED for attempt 1 arriving after the
 * retry re-queued the execution fails attempt 2): devices should always send
 * the version they saw.
 *
 * Checks run in this order: report validity (BAD_REQUEST), duplicate
 * (OK/DUPLICATE), version (VERSION_CONFLICT), transition legality
 * (BAD_REQUEST). So a stale device is told "conflict" (re-read your queue)
 * even when its report would also be illegal now.
 *
 * Clock values are plain milliseconds passed in by the caller; 0 in
 * started_ms, deadline_ms and retry_at_ms means "none", so a scheduled retry
 * is never at 0 (retry_at_ms is at least 1). All time sums saturate.
 * No function allocates, keeps global state, or writes through a NULL
 * pointer: NULL arguments make functions return false / BAD_REQUEST / 0.
 */
#ifndef FLEETMQ_JOBS_H
#define FLEETMQ_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values equal fleetmq.v1.ExecutionStatus; PENDING (0) is internal. */
enum fleetmq_exec_status {
	FM_EXEC_PENDING = 0,
	FM_EXEC_QUEUED = 1,
	FM_EXEC_IN_PROGRESS = 2,
	FM_EXEC_SUCCEEDED = 3,
	FM_EXEC_FAILED = 4,
	FM_EXEC_REJECTED = 5,
	FM_EXEC_TIMED_OUT = 6,
	FM_EXEC_CANCELED = 7,
	FM_EXEC_REMOVED = 8,
};
#define FM_EXEC_STATUS_COUNT 9

struct fleetmq_retry_policy {
	uint32_t max_retries_failed;      /* extra attempts after FAILED (0 = none) */
	uint32_t max_retries_timed_out;   /* extra attempts after TIMED_OUT */
	uint64_t backoff_ms;              /* delay before the first retry */
	uint32_t backoff_factor_pct;      /* growth per retry in percent, e.g. 200 = x2; 100 (or 0) = constant */
	uint64_t backoff_max_ms;          /* cap; 0 = none */
};

struct fleetmq_job_policy {
	uint64_t in_progress_timeout_ms;  /* 0 = no timeout */
	struct fleetmq_retry_policy retry;
};

struct fleetmq_execution {
	enum fleetmq_exec_status status;
	uint64_t version;                 /* 1 when created, +1 on every change */
	uint32_t attempt;                 /* 1-based */
	uint64_t queued_ms;               /* when released (QUEUED) for this attempt */
	uint64_t started_ms;              /* first IN_PROGRESS of this attempt, 0 = not started */
	uint64_t updated_ms;
	uint64_t deadline_ms;             /* IN_PROGRESS timeout, 0 = none; cleared when the attempt ends */
	uint64_t retry_at_ms;             /* retry pending when non-zero */
	int32_t progress_percent;         /* -1 = unknown, else 0..100; kept when the attempt ends */
};

/* A status report from the device. */
struct fleetmq_exec_report {
	enum fleetmq_exec_status status;  /* IN_PROGRESS, SUCCEEDED, FAILED or REJECTED */
	uint64_t expected_version;        /* 0 = unconditional (no concurrency check) */
	int32_t progress_percent;         /* -1 = not given, else 0..100 */
};

enum fleetmq_exec_outcome {
	FM_OUTCOME_APPLIED = 0,           /* state changed */
	FM_OUTCOME_DUPLICATE = 1,         /* repeat of the last applied report: no change */
	FM_OUTCOME_RETRY_SCHEDULED = 2,   /* applied; the attempt failed and a retry is pending */
};

/* SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, REMOVED. */
bool fleetmq_exec_is_terminal(enum fleetmq_exec_status s);
/* Terminal and no retry pending (false for NULL). */
bool fleetmq_exec_is_final(const struct fleetmq_execution *e);
/* "PENDING", "QUEUED", "IN_PROGRESS", ...; "UNKNOWN" for other values.
 * Returns a static string; never NULL. */
const char *fleetmq_exec_status_name(enum fleetmq_exec_status s);
/* Parse a name as printed by fleetmq_exec_status_name (case-insensitive,
 * "UNKNOWN" excluded); returns the status, or -1 if unknown or NULL. */
int fleetmq_exec_status_parse(const char *name);

/* New execution: PENDING (or QUEUED with queued_ms = now if released),
 * version 1, attempt 1, progress -1, updated_ms = now, every other time 0. */
void fleetmq_exec_init(struct fleetmq_execution *e, bool released, uint64_t now_ms);

/* PENDING -> QUEUED (queued_ms = now, version + 1). FLEETMQ_ERR_BAD_REQUEST
 * if not PENDING (unchanged). */
int fleetmq_exec_release(struct fleetmq_execution *e, uint64_t now_ms);

/* Apply a device report (see the top of this file for the rules). Returns
 * FLEETMQ_OK with *outcome (optional) set to APPLIED, DUPLICATE or
 * RETRY_SCHEDULED, or
 *   FLEETMQ_ERR_VERSION_CONFLICT  expected_version mismatch (not a duplicate)
 *   FLEETMQ_ERR_BAD_REQUEST       illegal transition (e.g. terminal -> anything,
 *                                 PENDING -> anything, report status QUEUED/CANCELED...,
 *                                 progress outside -1..100), or e or r NULL
 * The execution is unchanged on error and on DUPLICATE. A given progress
 * (0..100) is stored, also with a terminal status; -1 keeps the current one.
 * Leaving IN_PROGRESS clears deadline_ms. A FAILED report with retries left
 * sets retry_at_ms = now + fleetmq_retry_backoff_ms(&p->retry, attempt).
 * p may be NULL (no timeout, no retries). reason (optional, written on every
 * call: "" on success) explains errors; caller-owned, truncated to reason_len. */
int fleetmq_exec_apply_report(struct fleetmq_execution *e, const struct fleetmq_exec_report *r,
		const struct fleetmq_job_policy *p, uint64_t now_ms, enum fleetmq_exec_outcome *outcome,
		char *reason, size_t reason_len);

/* IN_PROGRESS with deadline_ms != 0 and now >= deadline_ms -> TIMED_OUT
 * (version + 1, deadline cleared, retry scheduled per p->retry with
 * max_retries_timed_out; p may be NULL: no retry). Returns true if the
 * execution changed. */
bool fleetmq_exec_check_timeout(struct fleetmq_execution *e, const struct fleetmq_job_policy *p, uint64_t now_ms);

/* A pending retry that is due (retry_at_ms != 0 and now >= retry_at_ms):
 * -> QUEUED, attempt + 1, queued_ms = now, started/deadline/retry_at 0,
 * progress -1, version + 1. Returns true if the execution changed. */
bool fleetmq_exec_retry_if_due(struct fleetmq_execution *e, uint64_t now_ms);

/* Operator cancel: PENDING/QUEUED -> CANCELED (or REMOVED if remove is
 * true); IN_PROGRESS only when force (deadline cleared); a pending retry is
 * dropped (the execution stays in its terminal status, whatever remove says,
 * and becomes final). Every such change is version + 1. A final execution,
 * or IN_PROGRESS without force, is left alone: returns false. Returns true
 * if the execution changed. */
bool fleetmq_exec_cancel(struct fleetmq_execution *e, bool force, bool remove, uint64_t now_ms);

/* Delay before retry number n (1-based; 0 is taken as 1) under policy p:
 * backoff_ms * (backoff_factor_pct / 100)^(n - 1), capped at backoff_max_ms
 * when non-zero. A factor of 0 means 100 (constant); below 100 the delay
 * shrinks. Computed with integers only, step by step in 1e-6 ms fixed point
 * (so 1 ms x 150% still grows); exact for whole-number growth such as 200%,
 * otherwise rounded down with a relative error below 1e-4. Saturates at
 * UINT64_MAX, never overflows, and runs in few steps even for huge n.
 * 0 for a NULL p. */
uint64_t fleetmq_retry_backoff_ms(const struct fleetmq_retry_policy *p, uint32_t n);

#endif
