/*
 * test_rollout.c - rollout pacing, canary gate and abort decisions driven by
 * a fake clock (plain uint64_t milliseconds passed in by each test).
 */
#include <CUnit/Basic.h>
#include <stdint.h>
#include <string.h>

#include "jobs.h"
#include "rollout.h"

#define MINUTE_MS 60000u

/* ---- helpers ------------------------------------------------------------ */

static struct fleetmq_rollout_policy rpolicy(uint32_t max_per_minute, uint32_t ramp_base, uint32_t ramp_factor_pct,
		uint32_t ramp_step, uint32_t canary_pct)
{
	struct fleetmq_rollout_policy p;

	memset(&p, 0, sizeof(p));
	p.max_per_minute = max_per_minute;
	p.ramp_base_per_minute = ramp_base;
	p.ramp_factor_pct = ramp_factor_pct;
	p.ramp_step_successes = ramp_step;
	p.canary_success_pct = canary_pct;
	return p;
}

static void add_abort(struct fleetmq_rollout_policy *p, enum fleetmq_failure_type t, uint32_t threshold_pct,
		uint32_t min_executed)
{
	p->abort[p->n_abort].failure_type = t;
	p->abort[p->n_abort].threshold_pct = threshold_pct;
	p->abort[p->n_abort].min_executed = min_executed;
	p->n_abort++;
}

static void start(struct fleetmq_rollout_state *s, uint64_t targets, uint64_t canary_targets, bool complete,
		uint64_t now)
{
	fleetmq_rollout_init(s, now);
	s->targets = targets;
	s->canary_targets = canary_targets;
	s->targets_complete = complete;
}

/* What an adapter does on every tick: release whatever is allowed. */
static uint64_t tick(const struct fleetmq_rollout_policy *p, struct fleetmq_rollout_state *s, uint64_t now)
{
	bool canary = false;
	uint64_t n = fleetmq_rollout_releasable(p, s, now, &canary);

	fleetmq_rollout_consume(s, n, canary);
	return n;
}

static void record_n(struct fleetmq_rollout_state *s, enum fleetmq_exec_status st, bool canary, unsigned n)
{
	while(n-- > 0) fleetmq_rollout_record_final(s, st, canary);
}

/* ---- init, names, counters ---------------------------------------------- */

static void test_rollout_init_defaults(void)
{
	struct fleetmq_rollout_state s;
	size_t i;

	memset(&s, 0xab, sizeof(s));
	fleetmq_rollout_init(&s, 4242);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_CANARY);
	CU_ASSERT_EQUAL(s.targets, 0);
	CU_ASSERT_EQUAL(s.canary_targets, 0);
	CU_ASSERT_EQUAL(s.released, 0);
	CU_ASSERT_EQUAL(s.canary_released, 0);
	CU_ASSERT_EQUAL(s.final_total, 0);
	for(i = 0; i < FM_EXEC_STATUS_COUNT; i++) CU_ASSERT_EQUAL(s.final_by_status[i], 0);
	CU_ASSERT_EQUAL(s.canary_final, 0);
	CU_ASSERT_EQUAL(s.canary_succeeded, 0);
	CU_ASSERT_EQUAL(s.bucket_millitokens, FLEETMQ_ROLLOUT_BUCKET_FULL);
	CU_ASSERT_EQUAL(s.bucket_updated_ms, 4242);
	CU_ASSERT_FALSE(s.targets_complete);
}

static void test_rollout_phase_name_all_phases(void)
{
	CU_ASSERT_STRING_EQUAL(fleetmq_rollout_phase_name(FM_ROLLOUT_CANARY), "CANARY");
	CU_ASSERT_STRING_EQUAL(fleetmq_rollout_phase_name(FM_ROLLOUT_MAIN), "MAIN");
	CU_ASSERT_STRING_EQUAL(fleetmq_rollout_phase_name(FM_ROLLOUT_DONE), "DONE");
	CU_ASSERT_STRING_EQUAL(fleetmq_rollout_phase_name(FM_ROLLOUT_ABORTED), "ABORTED");
	CU_ASSERT_STRING_EQUAL(fleetmq_rollout_phase_name((enum fleetmq_rollout_phase)4), "UNKNOWN");
}

static void test_rollout_record_final_counts(void)
{
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_FAILED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, false);
	fleetmq_rollout_record_final(&s, FM_EXEC_TIMED_OUT, false);
	fleetmq_rollout_record_final(&s, FM_EXEC_CANCELED, true);
	CU_ASSERT_EQUAL(s.final_total, 5);
	CU_ASSERT_EQUAL(s.final_by_status[FM_EXEC_SUCCEEDED], 2);
	CU_ASSERT_EQUAL(s.final_by_status[FM_EXEC_FAILED], 1);
	CU_ASSERT_EQUAL(s.final_by_status[FM_EXEC_TIMED_OUT], 1);
	CU_ASSERT_EQUAL(s.final_by_status[FM_EXEC_CANCELED], 1);
	CU_ASSERT_EQUAL(s.canary_final, 3);
	CU_ASSERT_EQUAL(s.canary_succeeded, 1);
}

static void test_rollout_record_final_ignores_non_terminal(void)
{
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_PENDING, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_QUEUED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_IN_PROGRESS, false);
	fleetmq_rollout_record_final(&s, (enum fleetmq_exec_status)9, false);
	fleetmq_rollout_record_final(NULL, FM_EXEC_SUCCEEDED, false);
	CU_ASSERT_EQUAL(s.final_total, 0);
	CU_ASSERT_EQUAL(s.canary_final, 0);
	CU_ASSERT_EQUAL(s.final_by_status[FM_EXEC_QUEUED], 0);
}

static void test_rollout_consume_counts_and_tokens(void)
{
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	s.bucket_millitokens = 5500;
	fleetmq_rollout_consume(&s, 2, true);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 3500);
	CU_ASSERT_EQUAL(s.released, 2);
	CU_ASSERT_EQUAL(s.canary_released, 2);
	fleetmq_rollout_consume(&s, 3, false);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 500);
	CU_ASSERT_EQUAL(s.released, 5);
	CU_ASSERT_EQUAL(s.canary_released, 2);
	/* never below 0 */
	fleetmq_rollout_consume(&s, 1, false);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 0);
	CU_ASSERT_EQUAL(s.released, 6);
	s.bucket_millitokens = 1000;
	fleetmq_rollout_consume(&s, UINT64_MAX / 10, false);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 0);
	fleetmq_rollout_consume(NULL, 1, false);
}

/* ---- rate --------------------------------------------------------------- */

static void test_rollout_rate_constant_and_unlimited(void)
{
	struct fleetmq_rollout_policy p = rpolicy(10, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 10);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 1000;   /* no ramp: successes do not matter */
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 10);
	p.max_per_minute = 0;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(NULL, &s), 0);
}

static void test_rollout_rate_ramp_growth(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 2, 200, 5, 100);
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 2);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 4;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 2);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 5;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 4);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 14;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 8);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 15;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 16);
	/* failures do not ramp */
	s.final_by_status[FM_EXEC_FAILED] = 100;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 16);
	/* capped by max_per_minute */
	p.max_per_minute = 10;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 10);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 0;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 2);
	/* a base above the cap is capped */
	p.ramp_base_per_minute = 50;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 10);
}

static void test_rollout_rate_ramp_fractional_factor(void)
{
	/* 1/min x 1.5 per success: 1, 1.5, 2.25, 3.375, 5.06 -> 1, 1, 2, 3, 5 */
	struct fleetmq_rollout_policy p = rpolicy(0, 1, 150, 1, 100);
	struct fleetmq_rollout_state s;
	static const uint32_t want[] = { 1, 1, 2, 3, 5 };
	uint64_t i;

	fleetmq_rollout_init(&s, 0);
	for(i = 0; i < 5; i++){
		s.final_by_status[FM_EXEC_SUCCEEDED] = i;
		CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), want[i]);
	}
}

static void test_rollout_rate_ramp_degenerate_settings(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 3, 200, 0, 100);
	struct fleetmq_rollout_state s;

	fleetmq_rollout_init(&s, 0);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 1000;
	/* step 0: no growth (and no division by zero) */
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 3);
	/* factor 0: no growth */
	p.ramp_step_successes = 1;
	p.ramp_factor_pct = 0;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 3);
	/* shrinking ramp bottoms out at 1, never 0 (= unlimited) */
	p.ramp_factor_pct = 50;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 1);
	/* uncapped growth saturates at UINT32_MAX without overflow or truncation */
	p.ramp_factor_pct = 1000;
	s.final_by_status[FM_EXEC_SUCCEEDED] = 9;      /* 3e9 fits */
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 3000000000u);
	s.final_by_status[FM_EXEC_SUCCEEDED] = 10;     /* 3e10 does not */
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), UINT32_MAX);
	s.final_by_status[FM_EXEC_SUCCEEDED] = UINT64_MAX;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), UINT32_MAX);
	p.max_per_minute = 500;
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 500);
}

/* ---- releasable: pacing -------------------------------------------------- */

/* 10/min: 10 at once, then exactly one every 6 s. */
static void test_rollout_releasable_rate_limit_ten_per_minute(void)
{
	struct fleetmq_rollout_policy p = rpolicy(10, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = true;
	uint64_t t;

	start(&s, 100, 0, true, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 10);
	CU_ASSERT_FALSE(canary);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
	/* releasable does not consume */
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 10);
	fleetmq_rollout_consume(&s, 10, canary);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 5999, &canary), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 6000, &canary), 1);
	fleetmq_rollout_consume(&s, 1, canary);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 11999, &canary), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 12000, &canary), 1);
	fleetmq_rollout_consume(&s, 1, canary);
	CU_ASSERT_EQUAL(s.released, 12);

	/* simulated minutes, polled every millisecond: 10 + t/6 s */
	for(t = 12001; t <= 540000; t++){
		tick(&p, &s, t);
		if(t == 60000) CU_ASSERT_EQUAL(s.released, 20);
		if(t == 539999) CU_ASSERT_EQUAL(s.released, 99);
	}
	CU_ASSERT_EQUAL(s.released, 100);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
	CU_ASSERT_EQUAL(tick(&p, &s, 600000), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
}

/* 7/min does not divide a second: polling every ms or every 5 s gives the
 * same count at every minute, with no drift over an hour. */
static void test_rollout_releasable_rate_no_drift(void)
{
	struct fleetmq_rollout_policy p = rpolicy(7, 0, 0, 0, 100);
	struct fleetmq_rollout_state fine, coarse;
	uint64_t t;

	start(&fine, 100000, 0, false, 0);
	start(&coarse, 100000, 0, false, 0);
	for(t = 0; t <= 60 * (uint64_t)MINUTE_MS; t++){
		tick(&p, &fine, t);
		if(t % 5000 == 0) tick(&p, &coarse, t);
		if(t % MINUTE_MS == 0){
			CU_ASSERT_EQUAL(fine.released, 7 + 7 * (t / MINUTE_MS));
			CU_ASSERT_EQUAL(coarse.released, fine.released);
		}
	}
	CU_ASSERT_EQUAL(fine.released, 427);
	CU_ASSERT_EQUAL(coarse.released, 427);
}

/* The bucket holds one minute's worth: a long pause is no burst. */
static void test_rollout_releasable_bucket_capacity_one_minute(void)
{
	struct fleetmq_rollout_policy p = rpolicy(10, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 1000, 0, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 10);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 10 * (uint64_t)MINUTE_MS, NULL), 10);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 10000);
	/* a partly used bucket refills to capacity, not beyond */
	fleetmq_rollout_consume(&s, 4, false);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 10 * (uint64_t)MINUTE_MS + 6000, NULL), 7);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 11 * (uint64_t)MINUTE_MS, NULL), 10);
	/* a restored state with an epoch-sized gap does not overflow */
	s.bucket_millitokens = 0;
	s.bucket_updated_ms = 0;
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, UINT64_MAX, NULL), 10);
}

/* Refill stops exactly at capacity: a period whose credit would only
 * partly fit still has to elapse in full. 8/min = 2 millitokens per 15 ms. */
static void test_rollout_releasable_refill_exact_near_capacity(void)
{
	struct fleetmq_rollout_policy p = rpolicy(8, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 1000, 0, true, 0);
	s.phase = FM_ROLLOUT_MAIN;
	s.bucket_millitokens = 1;                 /* room 7999: 3999.5 periods */
	s.bucket_updated_ms = 0;
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 3999 * 15, NULL), 7);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 7999);
	CU_ASSERT_EQUAL(s.bucket_updated_ms, 3999 * 15);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 4000 * 15, NULL), 8);
	CU_ASSERT_EQUAL(s.bucket_millitokens, 8000);
}

static void test_rollout_releasable_clock_backwards(void)
{
	struct fleetmq_rollout_policy p = rpolicy(10, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 100, 0, true, 100000);
	CU_ASSERT_EQUAL(tick(&p, &s, 100000), 10);
	/* the clock jumps back a minute: nothing is credited */
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 40000, NULL), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 45999, NULL), 0);
	/* ...and time counts again from there */
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 46000, NULL), 1);
}

static void test_rollout_releasable_unlimited(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = true;

	start(&s, 100000, 0, true, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 100000);
	CU_ASSERT_FALSE(canary);
	fleetmq_rollout_consume(&s, 60000, false);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 40000);
	fleetmq_rollout_consume(&s, 40000, false);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 1, &canary), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
}

static void test_rollout_releasable_never_exceeds_remaining(void)
{
	struct fleetmq_rollout_policy p = rpolicy(100, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 3, 0, false, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 3);
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 0);
	/* more released than targets (adapter miscount) still yields 0 */
	s.released = 5;
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 2, NULL), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
}

/* A continuous job (targets not complete) stays in MAIN and picks up
 * devices that join later. */
static void test_rollout_releasable_continuous_job_stays_main(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 5, 0, false, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 5);
	CU_ASSERT_EQUAL(tick(&p, &s, 1000), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
	s.targets = 7;
	CU_ASSERT_EQUAL(tick(&p, &s, 2000), 2);
	s.targets_complete = true;
	CU_ASSERT_EQUAL(tick(&p, &s, 3000), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
	/* DONE is final for releasing */
	s.targets = 9;
	CU_ASSERT_EQUAL(tick(&p, &s, 4000), 0);
}

/* Ramp over simulated minutes: 2/min, doubling every 2 successes, max 8. */
static void test_rollout_releasable_ramp_over_minutes(void)
{
	struct fleetmq_rollout_policy p = rpolicy(8, 2, 200, 2, 100);
	struct fleetmq_rollout_state s;

	start(&s, 1000, 0, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 2);
	CU_ASSERT_EQUAL(tick(&p, &s, 29999), 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 30000), 1);            /* 2/min: one per 30 s */
	record_n(&s, FM_EXEC_SUCCEEDED, false, 2);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 4);
	CU_ASSERT_EQUAL(tick(&p, &s, 44999), 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 45000), 1);            /* 4/min: one per 15 s */
	record_n(&s, FM_EXEC_SUCCEEDED, false, 2);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 8);
	CU_ASSERT_EQUAL(tick(&p, &s, 52499), 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 52500), 1);            /* 8/min: one per 7.5 s */
	record_n(&s, FM_EXEC_SUCCEEDED, false, 10);
	CU_ASSERT_EQUAL(fleetmq_rollout_rate(&p, &s), 8);   /* capped */
	/* over the next 10 minutes: 8 per minute */
	{
		uint64_t t, before = s.released;

		for(t = 52600; t <= 52500 + 10 * (uint64_t)MINUTE_MS; t += 100) tick(&p, &s, t);
		CU_ASSERT_EQUAL(s.released - before, 80);
	}
}

/* ---- releasable: canary and phases --------------------------------------- */

static void test_rollout_releasable_no_canary_goes_main(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = true;

	start(&s, 4, 0, true, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 4);
	CU_ASSERT_FALSE(canary);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
}

static void test_rollout_releasable_canary_gate_pass(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = false;
	char reason[128] = "x";

	start(&s, 10, 2, true, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 2);
	CU_ASSERT_TRUE(canary);
	fleetmq_rollout_consume(&s, 2, canary);
	CU_ASSERT_EQUAL(s.canary_released, 2);
	/* waiting for the canaries to finish */
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 1000, &canary), 0);
	CU_ASSERT_TRUE(canary);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_CANARY);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 2000, &canary), 0);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "");
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_CANARY);   /* should_abort does not advance */
	/* the gate passes: the rest, from the main set */
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 3000, &canary), 8);
	CU_ASSERT_FALSE(canary);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
	fleetmq_rollout_consume(&s, 8, canary);
	CU_ASSERT_EQUAL(s.canary_released, 2);
	CU_ASSERT_EQUAL(s.released, 10);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 4000, &canary), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
}

static void test_rollout_releasable_canary_rate_limited(void)
{
	struct fleetmq_rollout_policy p = rpolicy(2, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = false;

	start(&s, 20, 5, true, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 2);
	CU_ASSERT_TRUE(canary);
	fleetmq_rollout_consume(&s, 2, canary);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 29999, &canary), 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 30000), 1);
	CU_ASSERT_EQUAL(tick(&p, &s, 60000), 1);
	CU_ASSERT_EQUAL(tick(&p, &s, 10 * (uint64_t)MINUTE_MS), 1);   /* only 5 canaries */
	CU_ASSERT_EQUAL(s.canary_released, 5);
	CU_ASSERT_EQUAL(s.released, 5);
	CU_ASSERT_EQUAL(tick(&p, &s, 11 * (uint64_t)MINUTE_MS), 0);   /* gate not reached */
	CU_ASSERT_EQUAL(s.released, 5);
}

/* Canaries limited by the targets known so far. */
static void test_rollout_releasable_canary_bounded_by_targets(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = false;

	start(&s, 3, 5, false, 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 3);
	CU_ASSERT_TRUE(canary);
}

/* Every target is a canary: gate and DONE in one call. */
static void test_rollout_releasable_all_canaries_done(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;

	start(&s, 2, 2, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 2);
	record_n(&s, FM_EXEC_SUCCEEDED, true, 2);
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
}

static void test_rollout_releasable_done_and_aborted_release_nothing(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	bool canary = true;

	start(&s, 10, 0, true, 0);
	s.phase = FM_ROLLOUT_ABORTED;
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 0);
	CU_ASSERT_FALSE(canary);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
	s.phase = FM_ROLLOUT_DONE;
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, &s, 0, &canary), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(NULL, &s, 0, &canary), 0);
	CU_ASSERT_EQUAL(fleetmq_rollout_releasable(&p, NULL, 0, &canary), 0);
}

/* ---- should_abort: canary gate ------------------------------------------- */

static void test_rollout_should_abort_canary_gate_fail(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	start(&s, 10, 2, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 2);
	fleetmq_rollout_record_final(&s, FM_EXEC_FAILED, true);
	/* one canary still running: no verdict yet */
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	/* the gate failed: nothing more is released, even before should_abort */
	CU_ASSERT_EQUAL(tick(&p, &s, 1000), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_CANARY);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "canary gate: 1 of 2 canary executions succeeded (50%) < required 100%");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
	CU_ASSERT_EQUAL(tick(&p, &s, 2000), 0);
	/* stable */
	reason[0] = '\0';
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "canary gate: 1 of 2 canary executions succeeded (50%) < required 100%");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
}

static void test_rollout_should_abort_canary_gate_boundary(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 50);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	/* 1 of 2 = 50% >= 50%: passes */
	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_REJECTED, true);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 8);
	/* 51% required: fails */
	p.canary_success_pct = 51;
	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_REJECTED, true);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "canary gate: 1 of 2 canary executions succeeded (50%) < required 51%");
	/* 2 of 3 = 66.67% vs 67%: exact comparison, fails */
	p.canary_success_pct = 67;
	start(&s, 10, 3, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_SUCCEEDED, true, 2);
	fleetmq_rollout_record_final(&s, FM_EXEC_TIMED_OUT, true);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "canary gate: 2 of 3 canary executions succeeded (66%) < required 67%");
	/* 66%: passes */
	p.canary_success_pct = 66;
	start(&s, 10, 3, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_SUCCEEDED, true, 2);
	fleetmq_rollout_record_final(&s, FM_EXEC_TIMED_OUT, true);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
}

/* A canceled canary counts as not succeeded; pct 0 passes anything; > 100
 * counts as 100. */
static void test_rollout_should_abort_canary_gate_settings(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_CANCELED, true);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));

	p.canary_success_pct = 0;
	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_FAILED, true, 2);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 8);

	p.canary_success_pct = 150;
	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_SUCCEEDED, true, 2);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 8);
}

/* The gate is judged once, in CANARY: tightening the policy after the
 * rollout moved on does not abort it. */
static void test_rollout_should_abort_canary_gate_only_in_canary_phase(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 50);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	start(&s, 10, 2, true, 0);
	tick(&p, &s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, true);
	fleetmq_rollout_record_final(&s, FM_EXEC_FAILED, true);
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 8);
	CU_ASSERT_EQUAL(tick(&p, &s, 2), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
	p.canary_success_pct = 100;
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
	s.phase = FM_ROLLOUT_MAIN;
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
}

/* ---- should_abort: criteria ---------------------------------------------- */

static void test_rollout_should_abort_threshold_with_min_executed(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	add_abort(&p, FM_FAILURE_FAILED, 25, 10);
	start(&s, 100, 0, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_FAILED, false, 3);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 6);
	/* 3 of 9 = 33% but fewer than 10 finished: no verdict */
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_MAIN);
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, false);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 3 of 10 finished executions (30%) ended FAILED, threshold 25%");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
}

static void test_rollout_should_abort_threshold_boundary(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	add_abort(&p, FM_FAILURE_FAILED, 25, 1);
	start(&s, 100, 0, true, 0);
	tick(&p, &s, 0);
	fleetmq_rollout_record_final(&s, FM_EXEC_FAILED, false);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 4);
	/* 1 of 5 = 20% < 25% */
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "");
	record_n(&s, FM_EXEC_FAILED, false, 1);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 2);
	/* 2 of 8 = exactly 25%: aborts */
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 2 of 8 finished executions (25%) ended FAILED, threshold 25%");
}

static void test_rollout_should_abort_failure_types(void)
{
	struct fleetmq_rollout_policy p;
	struct fleetmq_rollout_state s;
	char reason[160] = "";

	/* 1 FAILED, 1 REJECTED, 1 TIMED_OUT, 7 SUCCEEDED: each type 10%, any 30% */
	start(&s, 100, 0, true, 0);
	s.phase = FM_ROLLOUT_MAIN;
	record_n(&s, FM_EXEC_FAILED, false, 1);
	record_n(&s, FM_EXEC_REJECTED, false, 1);
	record_n(&s, FM_EXEC_TIMED_OUT, false, 1);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 7);

	p = rpolicy(0, 0, 0, 0, 100);
	add_abort(&p, FM_FAILURE_FAILED, 20, 1);
	add_abort(&p, FM_FAILURE_REJECTED, 20, 1);
	add_abort(&p, FM_FAILURE_TIMED_OUT, 20, 1);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));

	p = rpolicy(0, 0, 0, 0, 100);
	add_abort(&p, FM_FAILURE_ANY, 30, 1);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason,
			"abort: 3 of 10 finished executions (30%) ended FAILED, REJECTED or TIMED_OUT, threshold 30%");

	s.phase = FM_ROLLOUT_MAIN;
	p = rpolicy(0, 0, 0, 0, 100);
	add_abort(&p, FM_FAILURE_FAILED, 50, 1);
	add_abort(&p, FM_FAILURE_REJECTED, 10, 1);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 1 of 10 finished executions (10%) ended REJECTED, threshold 10%");

	s.phase = FM_ROLLOUT_MAIN;
	p = rpolicy(0, 0, 0, 0, 100);
	add_abort(&p, FM_FAILURE_TIMED_OUT, 10, 1);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 1 of 10 finished executions (10%) ended TIMED_OUT, threshold 10%");
}

/* Canceled/removed executions neither count as finished nor dilute. */
static void test_rollout_should_abort_canceled_not_counted(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	add_abort(&p, FM_FAILURE_FAILED, 50, 2);
	start(&s, 100, 0, true, 0);
	s.phase = FM_ROLLOUT_MAIN;
	record_n(&s, FM_EXEC_CANCELED, false, 5);
	record_n(&s, FM_EXEC_REMOVED, false, 5);
	record_n(&s, FM_EXEC_FAILED, false, 1);
	CU_ASSERT_EQUAL(s.final_total, 11);
	/* only 1 finished < min 2 */
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, false);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 1 of 2 finished executions (50%) ended FAILED, threshold 50%");
}

static void test_rollout_should_abort_disabled_criteria(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	start(&s, 100, 0, true, 0);
	s.phase = FM_ROLLOUT_MAIN;
	record_n(&s, FM_EXEC_FAILED, false, 10);
	/* no criteria */
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	/* threshold 0 and an unknown type are ignored */
	add_abort(&p, FM_FAILURE_FAILED, 0, 1);
	add_abort(&p, (enum fleetmq_failure_type)9, 1, 1);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	/* threshold above 100 can never trip */
	add_abort(&p, FM_FAILURE_FAILED, 101, 1);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	/* n_abort beyond the array with nothing tripping: no read past abort[] */
	add_abort(&p, FM_FAILURE_REJECTED, 1, 1);
	p.n_abort = (size_t)-1;
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	p.n_abort = 3;
	/* n_abort beyond the array is clamped: the 4th criterion is used, no overrun */
	add_abort(&p, FM_FAILURE_ANY, 100, 10);
	p.n_abort = 1000;
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason,
			"abort: 10 of 10 finished executions (100%) ended FAILED, REJECTED or TIMED_OUT, threshold 100%");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
}

/* Canary failures count toward the criteria before the gate is reached. */
static void test_rollout_should_abort_criteria_during_canary(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	add_abort(&p, FM_FAILURE_REJECTED, 50, 1);
	start(&s, 100, 5, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 5);
	fleetmq_rollout_record_final(&s, FM_EXEC_REJECTED, true);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "abort: 1 of 1 finished executions (100%) ended REJECTED, threshold 50%");
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 0);
}

/* Executions still run after everything is released: criteria apply in DONE. */
static void test_rollout_should_abort_in_done_phase(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";

	add_abort(&p, FM_FAILURE_ANY, 50, 4);
	start(&s, 4, 0, true, 0);
	CU_ASSERT_EQUAL(tick(&p, &s, 0), 4);
	CU_ASSERT_EQUAL(tick(&p, &s, 1), 0);
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_DONE);
	record_n(&s, FM_EXEC_TIMED_OUT, false, 2);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 2);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
}

static void test_rollout_should_abort_stable_once_aborted(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[128] = "";
	int i;

	add_abort(&p, FM_FAILURE_FAILED, 25, 4);
	start(&s, 100, 0, true, 0);
	tick(&p, &s, 0);
	record_n(&s, FM_EXEC_FAILED, false, 1);
	record_n(&s, FM_EXEC_SUCCEEDED, false, 3);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	for(i = 0; i < 3; i++){
		reason[0] = '\0';
		CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
		CU_ASSERT_STRING_EQUAL(reason, "abort: 1 of 4 finished executions (25%) ended FAILED, threshold 25%");
		CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
	}
	/* later successes do not un-abort */
	record_n(&s, FM_EXEC_SUCCEEDED, false, 50);
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "rollout aborted");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_ABORTED);
	/* aborted by the adapter (operator) with no criteria at all */
	p = rpolicy(0, 0, 0, 0, 100);
	start(&s, 100, 0, true, 0);
	s.phase = FM_ROLLOUT_ABORTED;
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "rollout aborted");
	CU_ASSERT_TRUE(fleetmq_rollout_should_abort(NULL, &s, NULL, 0));
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, NULL, reason, sizeof(reason)));
}

static void test_rollout_should_abort_nothing_final(void)
{
	struct fleetmq_rollout_policy p = rpolicy(0, 0, 0, 0, 100);
	struct fleetmq_rollout_state s;
	char reason[16];

	add_abort(&p, FM_FAILURE_ANY, 1, 0);
	start(&s, 100, 0, true, 0);
	memset(reason, 'x', sizeof(reason));
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
	CU_ASSERT_STRING_EQUAL(reason, "");
	CU_ASSERT_EQUAL(s.phase, FM_ROLLOUT_CANARY);
	/* one success, min 0: 0% failed is below 1% */
	fleetmq_rollout_record_final(&s, FM_EXEC_SUCCEEDED, false);
	CU_ASSERT_FALSE(fleetmq_rollout_should_abort(&p, &s, reason, sizeof(reason)));
}

int main(void)
{
	CU_pSuite s;
	unsigned int failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite("rollout", NULL, NULL);
	if(s == NULL){
		CU_cleanup_registry();
		return 2;
	}
#define ADD(t) CU_add_test(s, #t, t)
	ADD(test_rollout_init_defaults);
	ADD(test_rollout_phase_name_all_phases);
	ADD(test_rollout_record_final_counts);
	ADD(test_rollout_record_final_ignores_non_terminal);
	ADD(test_rollout_consume_counts_and_tokens);
	ADD(test_rollout_rate_constant_and_unlimited);
	ADD(test_rollout_rate_ramp_growth);
	ADD(test_rollout_rate_ramp_fractional_factor);
	ADD(test_rollout_rate_ramp_degenerate_settings);
	ADD(test_rollout_releasable_rate_limit_ten_per_minute);
	ADD(test_rollout_releasable_rate_no_drift);
	ADD(test_rollout_releasable_bucket_capacity_one_minute);
	ADD(test_rollout_releasable_refill_exact_near_capacity);
	ADD(test_rollout_releasable_clock_backwards);
	ADD(test_rollout_releasable_unlimited);
	ADD(test_rollout_releasable_never_exceeds_remaining);
	ADD(test_rollout_releasable_continuous_job_stays_main);
	ADD(test_rollout_releasable_ramp_over_minutes);
	ADD(test_rollout_releasable_no_canary_goes_main);
	ADD(test_rollout_releasable_canary_gate_pass);
	ADD(test_rollout_releasable_canary_rate_limited);
	ADD(test_rollout_releasable_canary_bounded_by_targets);
	ADD(test_rollout_releasable_all_canaries_done);
	ADD(test_rollout_releasable_done_and_aborted_release_nothing);
	ADD(test_rollout_should_abort_canary_gate_fail);
	ADD(test_rollout_should_abort_canary_gate_boundary);
	ADD(test_rollout_should_abort_canary_gate_settings);
	ADD(test_rollout_should_abort_canary_gate_only_in_canary_phase);
	ADD(test_rollout_should_abort_threshold_with_min_executed);
	ADD(test_rollout_should_abort_threshold_boundary);
	ADD(test_rollout_should_abort_failure_types);
	ADD(test_rollout_should_abort_canceled_not_counted);
	ADD(test_rollout_should_abort_disabled_criteria);
	ADD(test_rollout_should_abort_criteria_during_canary);
	ADD(test_rollout_should_abort_in_done_phase);
	ADD(test_rollout_should_abort_stable_once_aborted);
	ADD(test_rollout_should_abort_nothing_final);
#undef ADD
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed() + CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures != 0 ? 1 : 0;
}
