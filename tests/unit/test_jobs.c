/*
 * test_jobs.c - job execution state machine driven by a fake clock (plain
 * uint64_t milliseconds passed in by each test).
 */
#include <CUnit/Basic.h>
#include <stdint.h>
#include <string.h>

#include "fleetmq_status.h"
#include "jobs.h"

/* ---- helpers ------------------------------------------------------------ */

static const enum fleetmq_exec_status all_statuses[] = {
	FM_EXEC_PENDING, FM_EXEC_QUEUED, FM_EXEC_IN_PROGRESS, FM_EXEC_SUCCEEDED, FM_EXEC_FAILED,
	FM_EXEC_REJECTED, FM_EXEC_TIMED_OUT, FM_EXEC_CANCELED, FM_EXEC_REMOVED,
};
#define N_STATUSES (sizeof(all_statuses) / sizeof(all_statuses[0]))

static struct fleetmq_job_policy policy(uint64_t timeout_ms, uint32_t max_failed, uint32_t max_timed_out,
		uint64_t backoff_ms, uint32_t factor_pct, uint64_t backoff_max_ms)
{
	struct fleetmq_job_policy p;

	memset(&p, 0, sizeof(p));
	p.in_progress_timeout_ms = timeout_ms;
	p.retry.max_retries_failed = max_failed;
	p.retry.max_retries_timed_out = max_timed_out;
	p.retry.backoff_ms = backoff_ms;
	p.retry.backoff_factor_pct = factor_pct;
	p.retry.backoff_max_ms = backoff_max_ms;
	return p;
}

static struct fleetmq_exec_report report(enum fleetmq_exec_status st, uint64_t expected, int32_t progress)
{
	struct fleetmq_exec_report r;

	memset(&r, 0, sizeof(r));
	r.status = st;
	r.expected_version = expected;
	r.progress_percent = progress;
	return r;
}

/* An execution put directly into a status (for transition tables). */
static struct fleetmq_execution exec_in(enum fleetmq_exec_status st)
{
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 1000);
	e.status = st;
	e.version = 5;
	e.progress_percent = 40;
	if(st == FM_EXEC_IN_PROGRESS){
		e.started_ms = 1500;
		e.deadline_ms = 9000;
	}
	return e;
}

static bool exec_equal(const struct fleetmq_execution *a, const struct fleetmq_execution *b)
{
	return a->status == b->status && a->version == b->version && a->attempt == b->attempt
		&& a->queued_ms == b->queued_ms && a->started_ms == b->started_ms
		&& a->updated_ms == b->updated_ms && a->deadline_ms == b->deadline_ms
		&& a->retry_at_ms == b->retry_at_ms && a->progress_percent == b->progress_percent;
}

static bool reportable(enum fleetmq_exec_status s)
{
	return s == FM_EXEC_IN_PROGRESS || s == FM_EXEC_SUCCEEDED || s == FM_EXEC_FAILED || s == FM_EXEC_REJECTED;
}

/* Apply and return the status code; outcome into *out. */
static int apply(struct fleetmq_execution *e, enum fleetmq_exec_status st, uint64_t expected, int32_t progress,
		const struct fleetmq_job_policy *p, uint64_t now, enum fleetmq_exec_outcome *out)
{
	struct fleetmq_exec_report r = report(st, expected, progress);

	return fleetmq_exec_apply_report(e, &r, p, now, out, NULL, 0);
}

/* ---- names -------------------------------------------------------------- */

static void test_exec_is_terminal_all_statuses(void)
{
	CU_ASSERT_FALSE(fleetmq_exec_is_terminal(FM_EXEC_PENDING));
	CU_ASSERT_FALSE(fleetmq_exec_is_terminal(FM_EXEC_QUEUED));
	CU_ASSERT_FALSE(fleetmq_exec_is_terminal(FM_EXEC_IN_PROGRESS));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_SUCCEEDED));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_FAILED));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_REJECTED));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_TIMED_OUT));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_CANCELED));
	CU_ASSERT_TRUE(fleetmq_exec_is_terminal(FM_EXEC_REMOVED));
	CU_ASSERT_FALSE(fleetmq_exec_is_terminal((enum fleetmq_exec_status)42));
}

static void test_exec_is_final_retry_pending(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_FAILED);

	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	e.retry_at_ms = 7000;
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
	e = exec_in(FM_EXEC_IN_PROGRESS);
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
	e = exec_in(FM_EXEC_PENDING);
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
	CU_ASSERT_FALSE(fleetmq_exec_is_final(NULL));
}

static void test_exec_status_name_all_statuses(void)
{
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_PENDING), "PENDING");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_QUEUED), "QUEUED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_IN_PROGRESS), "IN_PROGRESS");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_SUCCEEDED), "SUCCEEDED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_FAILED), "FAILED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_REJECTED), "REJECTED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_TIMED_OUT), "TIMED_OUT");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_CANCELED), "CANCELED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name(FM_EXEC_REMOVED), "REMOVED");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name((enum fleetmq_exec_status)9), "UNKNOWN");
	CU_ASSERT_STRING_EQUAL(fleetmq_exec_status_name((enum fleetmq_exec_status)-1), "UNKNOWN");
}

static void test_exec_status_parse_round_trip(void)
{
	size_t i;

	for(i = 0; i < N_STATUSES; i++){
		CU_ASSERT_EQUAL(fleetmq_exec_status_parse(fleetmq_exec_status_name(all_statuses[i])),
				(int)all_statuses[i]);
	}
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse("in_progress"), FM_EXEC_IN_PROGRESS);
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse("Succeeded"), FM_EXEC_SUCCEEDED);
}

static void test_exec_status_parse_unknown(void)
{
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse("UNKNOWN"), -1);
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse(""), -1);
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse("IN PROGRESS"), -1);
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse("QUEUED "), -1);
	CU_ASSERT_EQUAL(fleetmq_exec_status_parse(NULL), -1);
}

/* ---- init / release ----------------------------------------------------- */

static void test_exec_init_pending(void)
{
	struct fleetmq_execution e;

	memset(&e, 0xab, sizeof(e));
	fleetmq_exec_init(&e, false, 1234);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_PENDING);
	CU_ASSERT_EQUAL(e.version, 1);
	CU_ASSERT_EQUAL(e.attempt, 1);
	CU_ASSERT_EQUAL(e.queued_ms, 0);
	CU_ASSERT_EQUAL(e.started_ms, 0);
	CU_ASSERT_EQUAL(e.updated_ms, 1234);
	CU_ASSERT_EQUAL(e.deadline_ms, 0);
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_EQUAL(e.progress_percent, -1);
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
}

static void test_exec_init_released(void)
{
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 1234);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_QUEUED);
	CU_ASSERT_EQUAL(e.version, 1);
	CU_ASSERT_EQUAL(e.attempt, 1);
	CU_ASSERT_EQUAL(e.queued_ms, 1234);
	CU_ASSERT_EQUAL(e.progress_percent, -1);
}

static void test_exec_release_pending_to_queued(void)
{
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, false, 1000);
	CU_ASSERT_EQUAL(fleetmq_exec_release(&e, 5000), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_QUEUED);
	CU_ASSERT_EQUAL(e.version, 2);
	CU_ASSERT_EQUAL(e.queued_ms, 5000);
	CU_ASSERT_EQUAL(e.updated_ms, 5000);
}

static void test_exec_release_not_pending(void)
{
	size_t i;

	for(i = 0; i < N_STATUSES; i++){
		struct fleetmq_execution e = exec_in(all_statuses[i]), before = e;

		if(all_statuses[i] == FM_EXEC_PENDING) continue;
		CU_ASSERT_EQUAL(fleetmq_exec_release(&e, 5000), FLEETMQ_ERR_BAD_REQUEST);
		CU_ASSERT_TRUE(exec_equal(&e, &before));
	}
	CU_ASSERT_EQUAL(fleetmq_exec_release(NULL, 5000), FLEETMQ_ERR_BAD_REQUEST);
}

/* ---- transitions -------------------------------------------------------- */

/* Every (current status, reported status) pair with the current version:
 * legal exactly from QUEUED/IN_PROGRESS to IN_PROGRESS/SUCCEEDED/FAILED/REJECTED. */
static void test_exec_apply_report_transition_table(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 0, 0, 100, 0);
	size_t i, j;

	for(i = 0; i < N_STATUSES; i++){
		for(j = 0; j < N_STATUSES; j++){
			struct fleetmq_execution e = exec_in(all_statuses[i]), before = e;
			enum fleetmq_exec_outcome out = FM_OUTCOME_DUPLICATE;
			bool legal = (all_statuses[i] == FM_EXEC_QUEUED || all_statuses[i] == FM_EXEC_IN_PROGRESS)
				&& reportable(all_statuses[j]);
			int rc = apply(&e, all_statuses[j], e.version, -1, &p, 2000, &out);

			if(legal){
				CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
				CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
				CU_ASSERT_EQUAL(e.status, all_statuses[j]);
				CU_ASSERT_EQUAL(e.version, before.version + 1);
				CU_ASSERT_EQUAL(e.updated_ms, 2000);
			}else{
				CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_BAD_REQUEST);
				CU_ASSERT_TRUE(exec_equal(&e, &before));
			}
		}
	}
}

static void test_exec_apply_report_queued_to_each_legal(void)
{
	static const enum fleetmq_exec_status to[] = {
		FM_EXEC_IN_PROGRESS, FM_EXEC_SUCCEEDED, FM_EXEC_FAILED, FM_EXEC_REJECTED,
	};
	struct fleetmq_job_policy p = policy(30000, 0, 0, 0, 100, 0);
	size_t i;

	for(i = 0; i < sizeof(to) / sizeof(to[0]); i++){
		struct fleetmq_execution e;
		enum fleetmq_exec_outcome out = FM_OUTCOME_DUPLICATE;

		fleetmq_exec_init(&e, true, 1000);
		CU_ASSERT_EQUAL(apply(&e, to[i], 1, 10, &p, 2000, &out), FLEETMQ_OK);
		CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
		CU_ASSERT_EQUAL(e.status, to[i]);
		CU_ASSERT_EQUAL(e.version, 2);
		CU_ASSERT_EQUAL(e.progress_percent, 10);
		/* only IN_PROGRESS starts the attempt and arms the deadline */
		CU_ASSERT_EQUAL(e.started_ms, to[i] == FM_EXEC_IN_PROGRESS ? 2000 : 0);
		CU_ASSERT_EQUAL(e.deadline_ms, to[i] == FM_EXEC_IN_PROGRESS ? 32000 : 0);
		CU_ASSERT_EQUAL(e.retry_at_ms, 0);
		CU_ASSERT_EQUAL(fleetmq_exec_is_final(&e), to[i] != FM_EXEC_IN_PROGRESS);
	}
}

static void test_exec_apply_report_in_progress_to_each_legal(void)
{
	static const enum fleetmq_exec_status to[] = {
		FM_EXEC_IN_PROGRESS, FM_EXEC_SUCCEEDED, FM_EXEC_FAILED, FM_EXEC_REJECTED,
	};
	struct fleetmq_job_policy p = policy(30000, 0, 0, 0, 100, 0);
	size_t i;

	for(i = 0; i < sizeof(to) / sizeof(to[0]); i++){
		struct fleetmq_execution e;

		fleetmq_exec_init(&e, true, 1000);
		CU_ASSERT_EQUAL_FATAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 2000, NULL), FLEETMQ_OK);
		CU_ASSERT_EQUAL(apply(&e, to[i], 2, 90, &p, 5000, NULL), FLEETMQ_OK);
		CU_ASSERT_EQUAL(e.status, to[i]);
		CU_ASSERT_EQUAL(e.version, 3);
		CU_ASSERT_EQUAL(e.updated_ms, 5000);
		CU_ASSERT_EQUAL(e.started_ms, 2000);
		CU_ASSERT_EQUAL(e.progress_percent, 90);
		/* the deadline stays while running, and is cleared when the attempt ends */
		CU_ASSERT_EQUAL(e.deadline_ms, to[i] == FM_EXEC_IN_PROGRESS ? 32000 : 0);
	}
}

static void test_exec_apply_report_device_cannot_report_operator_statuses(void)
{
	static const enum fleetmq_exec_status bad[] = {
		FM_EXEC_PENDING, FM_EXEC_QUEUED, FM_EXEC_TIMED_OUT, FM_EXEC_CANCELED, FM_EXEC_REMOVED,
		(enum fleetmq_exec_status)9, (enum fleetmq_exec_status)-1,
	};
	size_t i;

	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		struct fleetmq_execution q = exec_in(FM_EXEC_QUEUED), ip = exec_in(FM_EXEC_IN_PROGRESS);
		struct fleetmq_execution q0 = q, ip0 = ip;
		char reason[128] = "";

		/* neither conditional nor unconditional */
		CU_ASSERT_EQUAL(apply(&q, bad[i], q.version, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
		CU_ASSERT_EQUAL(apply(&q, bad[i], 0, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
		CU_ASSERT_EQUAL(apply(&ip, bad[i], ip.version, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
		CU_ASSERT_TRUE(exec_equal(&q, &q0));
		CU_ASSERT_TRUE(exec_equal(&ip, &ip0));
		{
			struct fleetmq_exec_report r = report(bad[i], 0, -1);

			CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&ip, &r, NULL, 2000, NULL, reason, sizeof(reason)),
					FLEETMQ_ERR_BAD_REQUEST);
			CU_ASSERT_PTR_NOT_NULL(strstr(reason, "cannot report"));
		}
	}
}

/* Even a stale or duplicate-looking report is bad when the status is not
 * reportable: validity comes before the version checks. */
static void test_exec_apply_report_timed_out_repeat_not_duplicate(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_TIMED_OUT), before = e;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_TIMED_OUT, e.version - 1, -1, NULL, 2000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_TIMED_OUT, 0, -1, NULL, 2000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_TIMED_OUT, 77, -1, NULL, 2000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_apply_report_pending_not_visible(void)
{
	struct fleetmq_execution e;
	struct fleetmq_execution before;
	char reason[128] = "";
	struct fleetmq_exec_report r = report(FM_EXEC_IN_PROGRESS, 1, -1);

	fleetmq_exec_init(&e, false, 1000);
	before = e;
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 2000, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_STRING_EQUAL(reason, "illegal transition PENDING -> IN_PROGRESS");
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 0, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_apply_report_terminal_is_final(void)
{
	static const enum fleetmq_exec_status terminal[] = {
		FM_EXEC_SUCCEEDED, FM_EXEC_FAILED, FM_EXEC_REJECTED, FM_EXEC_TIMED_OUT, FM_EXEC_CANCELED, FM_EXEC_REMOVED,
	};
	static const enum fleetmq_exec_status to[] = {
		FM_EXEC_IN_PROGRESS, FM_EXEC_SUCCEEDED, FM_EXEC_FAILED, FM_EXEC_REJECTED,
	};
	size_t i, j;

	for(i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++){
		for(j = 0; j < sizeof(to) / sizeof(to[0]); j++){
			struct fleetmq_execution e = exec_in(terminal[i]), before = e;

			/* with the current version */
			CU_ASSERT_EQUAL(apply(&e, to[j], e.version, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
			/* unconditional, unless it repeats the current status (duplicate) */
			if(to[j] != terminal[i]){
				CU_ASSERT_EQUAL(apply(&e, to[j], 0, -1, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
			}
			CU_ASSERT_TRUE(exec_equal(&e, &before));
		}
	}
}

static void test_exec_apply_report_terminal_with_retry_pending_rejects_reports(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_FAILED), before;
	char reason[128] = "";
	struct fleetmq_exec_report r = report(FM_EXEC_IN_PROGRESS, 5, -1);

	e.retry_at_ms = 9000;
	before = e;
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 2000, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_STRING_EQUAL(reason, "illegal transition FAILED -> IN_PROGRESS");
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_apply_report_progress_range(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_IN_PROGRESS), before = e;
	char reason[128] = "";
	struct fleetmq_exec_report r = report(FM_EXEC_IN_PROGRESS, 5, 101);

	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 2000, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_STRING_EQUAL(reason, "progress 101 outside 0..100");
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 5, -2, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 5, INT32_MIN, NULL, 2000, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));

	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 5, 0, NULL, 2000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.progress_percent, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 6, 100, NULL, 2100, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.progress_percent, 100);
	/* -1 = not given: the last progress is kept */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 7, -1, NULL, 2200, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.progress_percent, 100);
}

static void test_exec_apply_report_progress_update_bumps_version(void)
{
	struct fleetmq_job_policy p = policy(60000, 0, 0, 0, 100, 0);
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out = FM_OUTCOME_DUPLICATE;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 1000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 2);
	CU_ASSERT_EQUAL(e.progress_percent, -1);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 2, 25, &p, 20000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_EQUAL(e.version, 3);
	CU_ASSERT_EQUAL(e.progress_percent, 25);
	CU_ASSERT_EQUAL(e.updated_ms, 20000);
	/* started and deadline come from the start, not from the update */
	CU_ASSERT_EQUAL(e.started_ms, 1000);
	CU_ASSERT_EQUAL(e.deadline_ms, 61000);
	/* a progress update that repeats the same percentage is still a change */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 3, 25, &p, 21000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_EQUAL(e.version, 4);
	/* unconditional progress updates apply too (not a terminal repeat) */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 0, 25, &p, 22000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_EQUAL(e.version, 5);
}

/* ---- versions, duplicates, conflicts ----------------------------------- */

static void test_exec_apply_report_version_sequence(void)
{
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, false, 0);
	CU_ASSERT_EQUAL(e.version, 1);
	CU_ASSERT_EQUAL(fleetmq_exec_release(&e, 10), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 2);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 2, 0, NULL, 20, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 3);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 3, 50, NULL, 30, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 4);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 4, 100, NULL, 40, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 5);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_SUCCEEDED);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
}

static void test_exec_apply_report_version_conflict(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_IN_PROGRESS), before = e;   /* version 5 */
	char reason[128] = "";
	struct fleetmq_exec_report r = report(FM_EXEC_SUCCEEDED, 3, -1);

	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 2000, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_STRING_EQUAL(reason, "version conflict: expected 3, current 5");
	/* from the future */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 6, -1, NULL, 2000, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	/* version - 1 but a different status: not a duplicate */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 4, -1, NULL, 2000, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	/* version - 1, same status, different progress: not a duplicate */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 4, 41, NULL, 2000, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	/* version - 2 with the same status and progress: too old */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 3, 40, NULL, 2000, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* the current version applies */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 5, -1, NULL, 2000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.version, 6);
}

/* A stale device is told "conflict" even when its report is now illegal. */
static void test_exec_apply_report_conflict_before_illegal(void)
{
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);                              /* v1 QUEUED */
	CU_ASSERT_TRUE(fleetmq_exec_cancel(&e, false, false, 100));  /* v2 CANCELED */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, NULL, 200, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 2, -1, NULL, 200, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 0, -1, NULL, 200, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(e.version, 2);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_CANCELED);
}

static void test_exec_apply_report_duplicate_in_progress(void)
{
	struct fleetmq_job_policy p = policy(60000, 0, 0, 0, 100, 0);
	struct fleetmq_execution e, before;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, 30, &p, 1000, &out), FLEETMQ_OK);
	before = e;
	/* the ack was lost: the device sends the same report again, later */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, 30, &p, 5000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* progress not given also counts as the same */
	out = FM_OUTCOME_APPLIED;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 6000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_apply_report_duplicate_terminal(void)
{
	struct fleetmq_execution e, before;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;
	char reason[64] = "x";
	struct fleetmq_exec_report r = report(FM_EXEC_SUCCEEDED, 2, 100);

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, NULL, 1000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 2, 100, NULL, 2000, NULL), FLEETMQ_OK);
	before = e;
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 9000, &out, reason, sizeof(reason)), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_STRING_EQUAL(reason, "");
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* ...but not with the version it now has: terminal is final */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 3, 100, NULL, 9000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_apply_report_unconditional_terminal_repeat_is_duplicate(void)
{
	struct fleetmq_execution e, before;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 0, 100, NULL, 1000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	before = e;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 0, 100, NULL, 5000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	out = FM_OUTCOME_APPLIED;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 0, -1, NULL, 5000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* not an exact repeat: a terminal execution cannot change */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 0, 50, NULL, 5000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 0, -1, NULL, 5000, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));

	/* REJECTED repeats the same way */
	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_REJECTED, 0, -1, NULL, 1000, NULL), FLEETMQ_OK);
	before = e;
	out = FM_OUTCOME_APPLIED;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_REJECTED, 0, -1, NULL, 2000, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

/* A re-sent FAILED while its retry is pending must not reschedule it. */
static void test_exec_apply_report_duplicate_failed_keeps_retry(void)
{
	struct fleetmq_job_policy p = policy(0, 3, 0, 1000, 200, 0);
	struct fleetmq_execution e, before;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 500, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_RETRY_SCHEDULED);
	CU_ASSERT_EQUAL(e.retry_at_ms, 1500);
	before = e;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 900, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 0, -1, &p, 900, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_DUPLICATE);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

/* Once the retry has re-queued the execution, the old report is stale. */
static void test_exec_apply_report_stale_after_retry(void)
{
	struct fleetmq_job_policy p = policy(0, 3, 0, 1000, 100, 0);
	struct fleetmq_execution e, before;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 0, NULL), FLEETMQ_OK);     /* v2 */
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 1000));                             /* v3 */
	before = e;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 1100, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* documented hazard: an unconditional stale FAILED fails the new attempt */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 0, -1, &p, 1100, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.attempt, 2);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_FAILED);
}

static void test_exec_apply_report_null_arguments(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_QUEUED), before = e;
	struct fleetmq_exec_report r = report(FM_EXEC_IN_PROGRESS, 5, -1);
	char reason[64] = "";

	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(NULL, &r, NULL, 0, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_NOT_EQUAL(reason[0], '\0');
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, NULL, NULL, 0, NULL, NULL, 0), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	/* outcome, policy and reason are all optional */
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 10, NULL, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_IN_PROGRESS);
	CU_ASSERT_EQUAL(e.deadline_ms, 0);
}

static void test_exec_apply_report_reason_truncated(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_IN_PROGRESS);
	struct fleetmq_exec_report r = report(FM_EXEC_SUCCEEDED, 3, -1);
	char reason[9];

	memset(reason, 'x', sizeof(reason));
	CU_ASSERT_EQUAL(fleetmq_exec_apply_report(&e, &r, NULL, 0, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_STRING_EQUAL(reason, "version ");
}

/* ---- timeouts ----------------------------------------------------------- */

static void test_exec_check_timeout_before_and_at_deadline(void)
{
	struct fleetmq_job_policy p = policy(10000, 0, 0, 0, 100, 0);
	struct fleetmq_execution e, before;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 5000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.deadline_ms, 15000);
	before = e;
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, 5000));
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, 14999));
	CU_ASSERT_TRUE(exec_equal(&e, &before));
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 15000));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_TIMED_OUT);
	CU_ASSERT_EQUAL(e.version, before.version + 1);
	CU_ASSERT_EQUAL(e.updated_ms, 15000);
	CU_ASSERT_EQUAL(e.deadline_ms, 0);
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	/* already timed out: nothing more happens */
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, 99999));
	CU_ASSERT_EQUAL(e.version, before.version + 1);
}

static void test_exec_check_timeout_progress_does_not_extend(void)
{
	struct fleetmq_job_policy p = policy(10000, 0, 0, 0, 100, 0);
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, 0, &p, 1000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 2, 50, &p, 9000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 3, 99, &p, 10999, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.deadline_ms, 11000);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 11000));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_TIMED_OUT);
	CU_ASSERT_EQUAL(e.progress_percent, 99);
}

/* The stored deadline decides, not the policy at check time. */
static void test_exec_check_timeout_uses_stored_deadline(void)
{
	struct fleetmq_job_policy p = policy(10000, 0, 0, 0, 100, 0);
	struct fleetmq_job_policy none = policy(0, 0, 0, 0, 100, 0);
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &none, 10000));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_TIMED_OUT);

	/* no timeout configured at start: never times out */
	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &none, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.deadline_ms, 0);
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, UINT64_MAX));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_IN_PROGRESS);
}

static void test_exec_check_timeout_deadline_saturates(void)
{
	struct fleetmq_job_policy p = policy(UINT64_MAX - 5, 0, 0, 0, 100, 0);
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 1000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.deadline_ms, UINT64_MAX);
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, UINT64_MAX - 1));
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, UINT64_MAX));
}

static void test_exec_check_timeout_only_in_progress(void)
{
	struct fleetmq_job_policy p = policy(10000, 5, 5, 1000, 100, 0);
	size_t i;

	for(i = 0; i < N_STATUSES; i++){
		struct fleetmq_execution e = exec_in(all_statuses[i]), before;

		if(all_statuses[i] == FM_EXEC_IN_PROGRESS) continue;
		e.deadline_ms = 100;   /* even with a stale deadline */
		before = e;
		CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, 1000000));
		CU_ASSERT_TRUE(exec_equal(&e, &before));
	}
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(NULL, &p, 1000000));
}

static void test_exec_check_timeout_schedules_retry(void)
{
	struct fleetmq_job_policy p = policy(10000, 0, 1, 3000, 200, 0);
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, 10, &p, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 10000));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_TIMED_OUT);
	CU_ASSERT_EQUAL(e.retry_at_ms, 13000);
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));

	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 12999));
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 13000));
	CU_ASSERT_EQUAL(e.attempt, 2);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, e.version, -1, &p, 14000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.started_ms, 14000);
	CU_ASSERT_EQUAL(e.deadline_ms, 24000);
	/* the single timed-out retry is used up */
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 24000));
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	/* no retries on timeout with a NULL policy */
	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, NULL, 10000));
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
}

/* apply_report does not enforce the deadline: until the sweep runs, a late
 * report wins; once the sweep ran, the late report is illegal. */
static void test_exec_check_timeout_late_report_before_sweep(void)
{
	struct fleetmq_job_policy p = policy(10000, 0, 0, 0, 100, 0);
	struct fleetmq_execution e, f;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 0, NULL), FLEETMQ_OK);
	f = e;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 2, -1, &p, 12000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.status, FM_EXEC_SUCCEEDED);
	CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, &p, 12000));

	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&f, &p, 12000));
	CU_ASSERT_EQUAL(apply(&f, FM_EXEC_SUCCEEDED, 2, -1, &p, 12000, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_EQUAL(apply(&f, FM_EXEC_SUCCEEDED, 0, -1, &p, 12000, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(f.status, FM_EXEC_TIMED_OUT);
}

/* ---- retries ------------------------------------------------------------ */

/* FAILED attempts: backoff doubles (1 s, 2 s, 4 s), capped at 5 s, until
 * max_retries_failed is used up; the last failure is final. */
static void test_exec_apply_report_failed_retry_growth_cap_exhaustion(void)
{
	struct fleetmq_job_policy p = policy(0, 4, 0, 1000, 200, 5000);
	static const uint64_t delay[] = { 1000, 2000, 4000, 5000 };
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out;
	uint64_t now = 100000;
	uint32_t a;

	fleetmq_exec_init(&e, true, now);
	for(a = 1; a <= 4; a++){
		out = FM_OUTCOME_APPLIED;
		CU_ASSERT_EQUAL(e.attempt, a);
		CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, e.version, -1, &p, now, NULL), FLEETMQ_OK);
		now += 10;
		CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, e.version, -1, &p, now, &out), FLEETMQ_OK);
		CU_ASSERT_EQUAL(out, FM_OUTCOME_RETRY_SCHEDULED);
		CU_ASSERT_EQUAL(e.status, FM_EXEC_FAILED);
		CU_ASSERT_EQUAL(e.retry_at_ms, now + delay[a - 1]);
		CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
		CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, now + delay[a - 1] - 1));
		now += delay[a - 1];
		CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, now));
	}
	/* attempt 5 = 1 + max_retries_failed: its failure is final */
	CU_ASSERT_EQUAL(e.attempt, 5);
	out = FM_OUTCOME_RETRY_SCHEDULED;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, e.version, -1, &p, now, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, UINT64_MAX));
}

static void test_exec_apply_report_failed_no_retries(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 5, 1000, 100, 0);
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out = FM_OUTCOME_RETRY_SCHEDULED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 10, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	/* NULL policy: no retries either */
	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, NULL, 10, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
}

static void test_exec_apply_report_rejected_never_retried(void)
{
	struct fleetmq_job_policy p = policy(0, 5, 5, 1000, 100, 0);
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out = FM_OUTCOME_RETRY_SCHEDULED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_REJECTED, 2, -1, &p, 10, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 1000000));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_REJECTED);
}

/* Both budgets compare the total number of retries so far. */
static void test_exec_apply_report_retry_budget_shared_attempts(void)
{
	struct fleetmq_job_policy p = policy(1000, 2, 1, 100, 100, 0);
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out;

	fleetmq_exec_init(&e, true, 0);
	/* attempt 1 times out: 0 < 1 timed-out retries -> retry */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, -1, &p, 0, NULL), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 1000));
	CU_ASSERT_NOT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 1100));
	/* attempt 2 fails: 1 < 2 failed retries -> retry */
	out = FM_OUTCOME_APPLIED;
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, e.version, -1, &p, 1200, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_RETRY_SCHEDULED);
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 1300));
	/* attempt 3 times out: 2 < 1 is false -> final */
	CU_ASSERT_EQUAL(e.attempt, 3);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, e.version, -1, &p, 1300, NULL), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_exec_check_timeout(&e, &p, 2300));
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
}

static void test_exec_retry_if_due_resets_attempt(void)
{
	struct fleetmq_job_policy p = policy(5000, 1, 0, 2000, 100, 0);
	struct fleetmq_execution e;
	uint64_t v;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_IN_PROGRESS, 1, 70, &p, 100, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 2, -1, &p, 1000, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.retry_at_ms, 3000);
	v = e.version;
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 2999));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_FAILED);
	CU_ASSERT_EQUAL(e.version, v);
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 3500));
	CU_ASSERT_EQUAL(e.status, FM_EXEC_QUEUED);
	CU_ASSERT_EQUAL(e.attempt, 2);
	CU_ASSERT_EQUAL(e.version, v + 1);
	CU_ASSERT_EQUAL(e.queued_ms, 3500);
	CU_ASSERT_EQUAL(e.updated_ms, 3500);
	CU_ASSERT_EQUAL(e.started_ms, 0);
	CU_ASSERT_EQUAL(e.deadline_ms, 0);
	CU_ASSERT_EQUAL(e.retry_at_ms, 0);
	CU_ASSERT_EQUAL(e.progress_percent, -1);
	/* only once */
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 3600));
	CU_ASSERT_EQUAL(e.attempt, 2);
}

static void test_exec_retry_if_due_nothing_pending(void)
{
	size_t i;

	for(i = 0; i < N_STATUSES; i++){
		struct fleetmq_execution e = exec_in(all_statuses[i]), before = e;

		CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, UINT64_MAX));
		CU_ASSERT_TRUE(exec_equal(&e, &before));
		/* a stray retry_at on a live execution (bad restore) is ignored */
		if(!fleetmq_exec_is_terminal(all_statuses[i])){
			e.retry_at_ms = 1;
			before = e;
			CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, UINT64_MAX));
			CU_ASSERT_TRUE(exec_equal(&e, &before));
		}
	}
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(NULL, 1));
}

/* With a fake clock at 0 and no backoff, the retry is still pending (at 1). */
static void test_exec_retry_if_due_zero_backoff_at_time_zero(void)
{
	struct fleetmq_job_policy p = policy(0, 1, 0, 0, 100, 0);
	struct fleetmq_execution e;
	enum fleetmq_exec_outcome out = FM_OUTCOME_APPLIED;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, 0, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_RETRY_SCHEDULED);
	CU_ASSERT_EQUAL(e.retry_at_ms, 1);
	CU_ASSERT_FALSE(fleetmq_exec_is_final(&e));
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 0));
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, 1));
	/* the single retry is used up: this failure is final */
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, e.version, -1, &p, 500, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out, FM_OUTCOME_APPLIED);
	CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
}

static void test_exec_retry_if_due_retry_at_saturates(void)
{
	struct fleetmq_job_policy p = policy(0, 1, 0, UINT64_MAX / 2, 100, 0);
	struct fleetmq_execution e;

	fleetmq_exec_init(&e, true, 0);
	CU_ASSERT_EQUAL(apply(&e, FM_EXEC_FAILED, 1, -1, &p, UINT64_MAX - 10, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(e.retry_at_ms, UINT64_MAX);
	CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, UINT64_MAX - 1));
	CU_ASSERT_TRUE(fleetmq_exec_retry_if_due(&e, UINT64_MAX));
}

/* ---- cancel ------------------------------------------------------------- */

static void test_exec_cancel_pending_and_queued(void)
{
	static const enum fleetmq_exec_status from[] = { FM_EXEC_PENDING, FM_EXEC_QUEUED };
	size_t i;
	int force, remove;

	for(i = 0; i < 2; i++){
		for(force = 0; force <= 1; force++){
			for(remove = 0; remove <= 1; remove++){
				struct fleetmq_execution e = exec_in(from[i]);

				CU_ASSERT_TRUE(fleetmq_exec_cancel(&e, force, remove, 7000));
				CU_ASSERT_EQUAL(e.status, remove ? FM_EXEC_REMOVED : FM_EXEC_CANCELED);
				CU_ASSERT_EQUAL(e.version, 6);
				CU_ASSERT_EQUAL(e.updated_ms, 7000);
				CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
				/* a second cancel changes nothing */
				CU_ASSERT_FALSE(fleetmq_exec_cancel(&e, true, !remove, 8000));
				CU_ASSERT_EQUAL(e.version, 6);
				CU_ASSERT_EQUAL(e.status, remove ? FM_EXEC_REMOVED : FM_EXEC_CANCELED);
			}
		}
	}
}

static void test_exec_cancel_in_progress_needs_force(void)
{
	struct fleetmq_execution e = exec_in(FM_EXEC_IN_PROGRESS), before = e;

	CU_ASSERT_FALSE(fleetmq_exec_cancel(&e, false, false, 7000));
	CU_ASSERT_FALSE(fleetmq_exec_cancel(&e, false, true, 7000));
	CU_ASSERT_TRUE(exec_equal(&e, &before));
}

static void test_exec_cancel_in_progress_force(void)
{
	int remove;

	for(remove = 0; remove <= 1; remove++){
		struct fleetmq_execution e = exec_in(FM_EXEC_IN_PROGRESS);

		CU_ASSERT_TRUE(fleetmq_exec_cancel(&e, true, remove, 7000));
		CU_ASSERT_EQUAL(e.status, remove ? FM_EXEC_REMOVED : FM_EXEC_CANCELED);
		CU_ASSERT_EQUAL(e.version, 6);
		CU_ASSERT_EQUAL(e.deadline_ms, 0);
		CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
		/* the deadline no longer applies, the device can no longer report */
		CU_ASSERT_FALSE(fleetmq_exec_check_timeout(&e, NULL, 100000));
		CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 6, -1, NULL, 7100, NULL), FLEETMQ_ERR_BAD_REQUEST);
		CU_ASSERT_EQUAL(apply(&e, FM_EXEC_SUCCEEDED, 5, -1, NULL, 7100, NULL), FLEETMQ_ERR_VERSION_CONFLICT);
	}
}

static void test_exec_cancel_drops_pending_retry(void)
{
	static const enum fleetmq_exec_status from[] = { FM_EXEC_FAILED, FM_EXEC_TIMED_OUT };
	size_t i;
	int force, remove;

	for(i = 0; i < 2; i++){
		for(force = 0; force <= 1; force++){
			for(remove = 0; remove <= 1; remove++){
				struct fleetmq_execution e = exec_in(from[i]);

				e.retry_at_ms = 9000;
				CU_ASSERT_TRUE(fleetmq_exec_cancel(&e, force, remove, 7000));
				CU_ASSERT_EQUAL(e.status, from[i]);   /* keeps its terminal status */
				CU_ASSERT_EQUAL(e.retry_at_ms, 0);
				CU_ASSERT_EQUAL(e.version, 6);
				CU_ASSERT_EQUAL(e.updated_ms, 7000);
				CU_ASSERT_TRUE(fleetmq_exec_is_final(&e));
				CU_ASSERT_FALSE(fleetmq_exec_retry_if_due(&e, 9000));
				CU_ASSERT_FALSE(fleetmq_exec_cancel(&e, force, remove, 7500));
				CU_ASSERT_EQUAL(e.version, 6);
			}
		}
	}
}

static void test_exec_cancel_final_unchanged(void)
{
	static const enum fleetmq_exec_status terminal[] = {
		FM_EXEC_SUCCEEDED, FM_EXEC_FAILED, FM_EXEC_REJECTED, FM_EXEC_TIMED_OUT, FM_EXEC_CANCELED, FM_EXEC_REMOVED,
	};
	size_t i;
	int force, remove;

	for(i = 0; i < sizeof(terminal) / sizeof(terminal[0]); i++){
		for(force = 0; force <= 1; force++){
			for(remove = 0; remove <= 1; remove++){
				struct fleetmq_execution e = exec_in(terminal[i]), before = e;

				CU_ASSERT_FALSE(fleetmq_exec_cancel(&e, force, remove, 7000));
				CU_ASSERT_TRUE(exec_equal(&e, &before));
			}
		}
	}
	CU_ASSERT_FALSE(fleetmq_exec_cancel(NULL, true, true, 0));
}

/* ---- backoff ------------------------------------------------------------ */

static void test_retry_backoff_ms_constant(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 0, 1500, 100, 0);

	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 1), 1500);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), 1500);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, UINT32_MAX), 1500);
	/* factor 0 means constant too */
	p.retry.backoff_factor_pct = 0;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 7), 1500);
	/* no backoff at all */
	p.retry.backoff_ms = 0;
	p.retry.backoff_factor_pct = 300;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 7), 0);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(NULL, 1), 0);
}

static void test_retry_backoff_ms_growth_and_cap(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 0, 1000, 200, 0);

	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 0), 1000);  /* 0 taken as 1 */
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 1), 1000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), 2000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 3), 4000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 11), 1024000);
	p.retry.backoff_max_ms = 60000;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 6), 32000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 7), 60000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, UINT32_MAX), 60000);
	/* a first delay above the cap is capped too */
	p.retry.backoff_ms = 90000;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 1), 60000);
}

static void test_retry_backoff_ms_fractional_factor(void)
{
	/* 1 ms x 1.5^(n-1): 1, 1.5, 2.25, 3.375, 5.0625, 7.59375 -> rounded down */
	struct fleetmq_job_policy p = policy(0, 0, 0, 1, 150, 0);

	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 1), 1);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), 1);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 3), 2);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 4), 3);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 5), 5);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 6), 7);
	/* 100 ms x 1.1^10 = 259.37 */
	p.retry.backoff_ms = 100;
	p.retry.backoff_factor_pct = 110;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 11), 259);
	/* 10 s x 1.01^100 = 27048.1 */
	p.retry.backoff_ms = 10000;
	p.retry.backoff_factor_pct = 101;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 101), 27048);
}

static void test_retry_backoff_ms_shrinking_factor(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 0, 8000, 50, 0);

	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), 4000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 4), 1000);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 100), 0);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, UINT32_MAX), 0);
}

static void test_retry_backoff_ms_saturates(void)
{
	struct fleetmq_job_policy p = policy(0, 0, 0, 1000, 1000, 0);

	/* 1000 * 10^15 = 1e18 still fits; 1e19 does not... */
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 16), 1000000000000000000ull);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 17), 10000000000000000000ull);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 18), UINT64_MAX);
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, UINT32_MAX), UINT64_MAX);
	/* the largest factor, a huge base */
	p.retry.backoff_ms = UINT64_MAX / 2;
	p.retry.backoff_factor_pct = UINT32_MAX;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), UINT64_MAX);
	p.retry.backoff_max_ms = 123;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 2), 123);
	/* a base too large for the fixed point still grows exactly */
	p.retry.backoff_ms = 100000000000000ull;       /* 1e14 ms */
	p.retry.backoff_factor_pct = 150;
	p.retry.backoff_max_ms = 0;
	CU_ASSERT_EQUAL(fleetmq_retry_backoff_ms(&p.retry, 3), 225000000000000ull);
}

int main(void)
{
	CU_pSuite s;
	unsigned int failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite("jobs", NULL, NULL);
	if(s == NULL){
		CU_cleanup_registry();
		return 2;
	}
#define ADD(t) CU_add_test(s, #t, t)
	ADD(test_exec_is_terminal_all_statuses);
	ADD(test_exec_is_final_retry_pending);
	ADD(test_exec_status_name_all_statuses);
	ADD(test_exec_status_parse_round_trip);
	ADD(test_exec_status_parse_unknown);
	ADD(test_exec_init_pending);
	ADD(test_exec_init_released);
	ADD(test_exec_release_pending_to_queued);
	ADD(test_exec_release_not_pending);
	ADD(test_exec_apply_report_transition_table);
	ADD(test_exec_apply_report_queued_to_each_legal);
	ADD(test_exec_apply_report_in_progress_to_each_legal);
	ADD(test_exec_apply_report_device_cannot_report_operator_statuses);
	ADD(test_exec_apply_report_timed_out_repeat_not_duplicate);
	ADD(test_exec_apply_report_pending_not_visible);
	ADD(test_exec_apply_report_terminal_is_final);
	ADD(test_exec_apply_report_terminal_with_retry_pending_rejects_reports);
	ADD(test_exec_apply_report_progress_range);
	ADD(test_exec_apply_report_progress_update_bumps_version);
	ADD(test_exec_apply_report_version_sequence);
	ADD(test_exec_apply_report_version_conflict);
	ADD(test_exec_apply_report_conflict_before_illegal);
	ADD(test_exec_apply_report_duplicate_in_progress);
	ADD(test_exec_apply_report_duplicate_terminal);
	ADD(test_exec_apply_report_unconditional_terminal_repeat_is_duplicate);
	ADD(test_exec_apply_report_duplicate_failed_keeps_retry);
	ADD(test_exec_apply_report_stale_after_retry);
	ADD(test_exec_apply_report_null_arguments);
	ADD(test_exec_apply_report_reason_truncated);
	ADD(test_exec_check_timeout_before_and_at_deadline);
	ADD(test_exec_check_timeout_progress_does_not_extend);
	ADD(test_exec_check_timeout_uses_stored_deadline);
	ADD(test_exec_check_timeout_deadline_saturates);
	ADD(test_exec_check_timeout_only_in_progress);
	ADD(test_exec_check_timeout_schedules_retry);
	ADD(test_exec_check_timeout_late_report_before_sweep);
	ADD(test_exec_apply_report_failed_retry_growth_cap_exhaustion);
	ADD(test_exec_apply_report_failed_no_retries);
	ADD(test_exec_apply_report_rejected_never_retried);
	ADD(test_exec_apply_report_retry_budget_shared_attempts);
	ADD(test_exec_retry_if_due_resets_attempt);
	ADD(test_exec_retry_if_due_nothing_pending);
	ADD(test_exec_retry_if_due_zero_backoff_at_time_zero);
	ADD(test_exec_retry_if_due_retry_at_saturates);
	ADD(test_exec_cancel_pending_and_queued);
	ADD(test_exec_cancel_in_progress_needs_force);
	ADD(test_exec_cancel_in_progress_force);
	ADD(test_exec_cancel_drops_pending_retry);
	ADD(test_exec_cancel_final_unchanged);
	ADD(test_retry_backoff_ms_constant);
	ADD(test_retry_backoff_ms_growth_and_cap);
	ADD(test_retry_backoff_ms_fractional_factor);
	ADD(test_retry_backoff_ms_shrinking_factor);
	ADD(test_retry_backoff_ms_saturates);
#undef ADD
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed() + CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0 ? 1 : 0;
}
