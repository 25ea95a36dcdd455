/*
 * test_presence.c - presence state machine driven by a fake clock.
 */
#include <CUnit/Basic.h>

#include "presence.h"

static void test_presence_on_session_goes_online(void)
{
	struct fleetmq_presence p = { FM_PRESENCE_OFFLINE, 0, 0, 0 };

	CU_ASSERT_TRUE(fleetmq_presence_on_session(&p, 1000));
	CU_ASSERT_EQUAL(p.state, FM_PRESENCE_ONLINE);
	CU_ASSERT_EQUAL(p.since_ms, 1000);
	CU_ASSERT_EQUAL(p.connected_at_ms, 1000);
	CU_ASSERT_EQUAL(p.last_seen_ms, 1000);
	/* a second hello in the same state is not a transition */
	CU_ASSERT_FALSE(fleetmq_presence_on_session(&p, 2000));
	CU_ASSERT_EQUAL(p.since_ms, 1000);
	CU_ASSERT_EQUAL(p.connected_at_ms, 2000);
}

static void test_presence_check_silence_threshold(void)
{
	struct fleetmq_presence p = { FM_PRESENCE_OFFLINE, 0, 0, 0 };

	fleetmq_presence_on_session(&p, 1000);
	CU_ASSERT_FALSE(fleetmq_presence_check_silence(&p, 1999, 1000));
	CU_ASSERT_EQUAL(p.state, FM_PRESENCE_ONLINE);
	CU_ASSERT_TRUE(fleetmq_presence_check_silence(&p, 2000, 1000));
	CU_ASSERT_EQUAL(p.state, FM_PRESENCE_SILENT);
	CU_ASSERT_EQUAL(p.since_ms, 2000);
	CU_ASSERT_TRUE(fleetmq_presence_connected(&p));
	/* already silent: no new transition */
	CU_ASSERT_FALSE(fleetmq_presence_check_silence(&p, 5000, 1000));
}

static void test_presence_on_activity_wakes_silent(void)
{
	struct fleetmq_presence p = { FM_PRESENCE_OFFLINE, 0, 0, 0 };

	fleetmq_presence_on_session(&p, 1000);
	fleetmq_presence_check_silence(&p, 3000, 1000);
	CU_ASSERT_TRUE(fleetmq_presence_on_activity(&p, 3500));
	CU_ASSERT_EQUAL(p.state, FM_PRESENCE_ONLINE);
	CU_ASSERT_EQUAL(p.last_seen_ms, 3500);
	CU_ASSERT_EQUAL(p.connected_at_ms, 1000); /* same session */
	CU_ASSERT_FALSE(fleetmq_presence_on_activity(&p, 3600));
	/* time never goes backwards for last_seen */
	fleetmq_presence_on_activity(&p, 100);
	CU_ASSERT_EQUAL(p.last_seen_ms, 3600);
}

static void test_presence_on_disconnect_offline(void)
{
	struct fleetmq_presence p = { FM_PRESENCE_OFFLINE, 0, 0, 0 };

	fleetmq_presence_on_session(&p, 1000);
	CU_ASSERT_TRUE(fleetmq_presence_on_disconnect(&p, 4000));
	CU_ASSERT_EQUAL(p.state, FM_PRESENCE_OFFLINE);
	CU_ASSERT_FALSE(fleetmq_presence_connected(&p));
	CU_ASSERT_FALSE(fleetmq_presence_on_disconnect(&p, 5000));
	CU_ASSERT_EQUAL(p.since_ms, 4000);
	/* offline devices never become silent */
	CU_ASSERT_FALSE(fleetmq_presence_check_silence(&p, 100000, 1000));
	/* an offline device that talks is connected again, new session start */
	CU_ASSERT_TRUE(fleetmq_presence_on_activity(&p, 6000));
	CU_ASSERT_EQUAL(p.connected_at_ms, 6000);
}

static void test_presence_name_all_states(void)
{
	CU_ASSERT_STRING_EQUAL(fleetmq_presence_name(FM_PRESENCE_ONLINE), "online");
	CU_ASSERT_STRING_EQUAL(fleetmq_presence_name(FM_PRESENCE_OFFLINE), "offline");
	CU_ASSERT_STRING_EQUAL(fleetmq_presence_name(FM_PRESENCE_SILENT), "silent");
	CU_ASSERT_STRING_EQUAL(fleetmq_presence_name(FM_PRESENCE_UNKNOWN), "unknown");
}

int main(void)
{
	CU_pSuite s;
	unsigned failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite("presence", NULL, NULL);
	CU_add_test(s, "test_presence_on_session_goes_online", test_presence_on_session_goes_online);
	CU_add_test(s, "test_presence_check_silence_threshold", test_presence_check_silence_threshold);
	CU_add_test(s, "test_presence_on_activity_wakes_silent", test_presence_on_activity_wakes_silent);
	CU_add_test(s, "test_presence_on_disconnect_offline", test_presence_on_disconnect_offline);
	CU_add_test(s, "test_presence_name_all_states", test_presence_name_all_states);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
