/*
 * test_topic_acl.c - topic classification and device isolation decisions.
 */
#include <string.h>
#include <CUnit/Basic.h>

#include "acl.h"
#include "topic.h"

static enum fleetmq_topic_kind kind(const char *topic)
{
	struct fleetmq_topic t;
	fleetmq_topic_parse("fleet", topic, &t);
	return t.kind;
}

static void test_topic_parse_requests(void)
{
	struct fleetmq_topic t;

	CU_ASSERT_EQUAL(kind("fleet/dev1/hello"), FM_TOPIC_HELLO);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow/get"), FM_TOPIC_SHADOW_GET);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow/update"), FM_TOPIC_SHADOW_UPDATE);
	CU_ASSERT_EQUAL(kind("fleet/dev1/telemetry"), FM_TOPIC_TELEMETRY);
	CU_ASSERT_EQUAL(kind("fleet/dev1/jobs/next/get"), FM_TOPIC_JOBS_NEXT_GET);
	fleetmq_topic_parse("fleet", "fleet/dev1/jobs/job-7/update", &t);
	CU_ASSERT_EQUAL(t.kind, FM_TOPIC_JOB_UPDATE);
	CU_ASSERT_STRING_EQUAL(t.sub_id, "job-7");
	CU_ASSERT_STRING_EQUAL(t.device_id, "dev1");
	fleetmq_topic_parse("fleet", "fleet/dev1/artifacts/fw-1.2/get", &t);
	CU_ASSERT_EQUAL(t.kind, FM_TOPIC_ARTIFACT_GET);
	CU_ASSERT_STRING_EQUAL(t.sub_id, "fw-1.2");
}

static void test_topic_parse_outputs(void)
{
	CU_ASSERT_EQUAL(kind("fleet/dev1/presence"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow/update/accepted"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow/update/rejected"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow/update/delta"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/hello/accepted"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/jobs/notify"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/artifacts/x/data"), FM_TOPIC_OUTPUT);
	CU_ASSERT_EQUAL(kind("fleet/dev1/bogus/rejected"), FM_TOPIC_OUTPUT);
}

static void test_topic_parse_outside_invalid_unknown(void)
{
	CU_ASSERT_EQUAL(kind("other/dev1/hello"), FM_TOPIC_OUTSIDE);
	CU_ASSERT_EQUAL(kind("fleetx/dev1/hello"), FM_TOPIC_OUTSIDE);
	CU_ASSERT_EQUAL(kind("$SYS/broker/uptime"), FM_TOPIC_OUTSIDE);
	CU_ASSERT_EQUAL(kind("fleet"), FM_TOPIC_INVALID);
	CU_ASSERT_EQUAL(kind("fleet/dev1"), FM_TOPIC_INVALID);
	CU_ASSERT_EQUAL(kind("fleet//hello"), FM_TOPIC_INVALID);
	CU_ASSERT_EQUAL(kind("fleet/dev1/bogus"), FM_TOPIC_UNKNOWN);
	CU_ASSERT_EQUAL(kind("fleet/dev1/shadow"), FM_TOPIC_UNKNOWN);
	CU_ASSERT_EQUAL(kind("fleet/dev1/jobs//update"), FM_TOPIC_UNKNOWN);
}

static void test_id_valid_limits(void)
{
	char id[FLEETMQ_MAX_ID_BYTES + 2];

	memset(id, 'a', sizeof(id));
	CU_ASSERT_TRUE(fleetmq_id_valid(id, FLEETMQ_MAX_ID_BYTES));
	CU_ASSERT_FALSE(fleetmq_id_valid(id, FLEETMQ_MAX_ID_BYTES + 1));
	CU_ASSERT_FALSE(fleetmq_id_valid("", 0));
	CU_ASSERT_FALSE(fleetmq_id_valid("a+b", 3));
	CU_ASSERT_FALSE(fleetmq_id_valid("a#", 2));
	/* ids become topic levels: well-formed UTF-8 only */
	CU_ASSERT_TRUE(fleetmq_id_valid("caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x9a\x80", 14));
	CU_ASSERT_FALSE(fleetmq_id_valid("de\xdf\xdfv", 5));          /* lead byte, no continuation */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\xc0\xaf", 3));            /* overlong '/' */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\xe0\x80\xaf", 4));        /* overlong, 3 bytes */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\xed\xa0\x80", 4));        /* surrogate U+D800 */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\xf4\x90\x80\x80", 5));    /* above U+10FFFF */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\xe2\x82", 3));            /* truncated */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\x80", 2));                /* stray continuation */
	CU_ASSERT_TRUE(fleetmq_utf8_valid("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7)); /* U+FFFF, U+10FFFF */
	CU_ASSERT_FALSE(fleetmq_id_valid("a\nb", 3));
}

static enum fleetmq_acl_result dev_check(const char *cid, const char *user, const char *topic, int access)
{
	struct fleetmq_acl_subject who = { cid, user, false, true };
	return fleetmq_acl_check("fleet", &who, topic, access, NULL);
}

static void test_acl_check_device_own_subtree(void)
{
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/hello", FM_ACCESS_WRITE), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/shadow/update", FM_ACCESS_WRITE), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/shadow/update/accepted", FM_ACCESS_READ), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/#", FM_ACCESS_SUBSCRIBE), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/bogus", FM_ACCESS_WRITE), FM_ACL_ALLOW);
}

static void test_acl_check_device_denied(void)
{
	const char *reason = NULL;
	struct fleetmq_acl_subject who = { "d1", "d1", false, true };

	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d2/hello", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d2/presence", FM_ACCESS_READ), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d2/#", FM_ACCESS_SUBSCRIBE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/+/shadow/#", FM_ACCESS_SUBSCRIBE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/#", FM_ACCESS_SUBSCRIBE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/presence", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/shadow/update/accepted", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/shadow/update/delta", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1", FM_ACCESS_WRITE), FM_ACL_DENY);
	/* forged id: client id says d2, username says d1 */
	CU_ASSERT_EQUAL(dev_check("d2", "d1", "fleet/d2/hello", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(dev_check("d2", NULL, "fleet/d2/hello", FM_ACCESS_WRITE), FM_ACL_DENY);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &who, "fleet/d2/hello", FM_ACCESS_WRITE, &reason), FM_ACL_DENY);
	CU_ASSERT_PTR_NOT_NULL(reason);
}

static void test_acl_check_defers_outside(void)
{
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "sensors/d2/temp", FM_ACCESS_WRITE), FM_ACL_DEFER);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "#", FM_ACCESS_SUBSCRIBE), FM_ACL_DEFER);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "+/d2/#", FM_ACCESS_SUBSCRIBE), FM_ACL_DEFER);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "other/x", FM_ACCESS_UNSUBSCRIBE), FM_ACL_DEFER);
	CU_ASSERT_EQUAL(dev_check("d1", "d1", "fleet/d1/#", FM_ACCESS_UNSUBSCRIBE), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(dev_check("x", "y", "other/topic", FM_ACCESS_WRITE), FM_ACL_DEFER);
}

static void test_acl_check_username_match_off(void)
{
	struct fleetmq_acl_subject who = { "d1", NULL, false, false };
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &who, "fleet/d1/hello", FM_ACCESS_WRITE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &who, "fleet/d2/hello", FM_ACCESS_WRITE, NULL), FM_ACL_DENY);
}

static void test_acl_check_operator(void)
{
	struct fleetmq_acl_subject op = { "console-1", "ops", true, true };
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "fleet/#", FM_ACCESS_SUBSCRIBE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "fleet/d9/presence", FM_ACCESS_READ, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "fleet/d9/shadow/update", FM_ACCESS_WRITE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "fleet/d9/shadow/update/accepted", FM_ACCESS_WRITE, NULL), FM_ACL_DENY);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "fleet/d9/presence", FM_ACCESS_WRITE, NULL), FM_ACL_DENY);
}

static void test_acl_check_control_topics(void)
{
	struct fleetmq_acl_subject op = { "console-1", "ops", true, true };
	struct fleetmq_acl_subject dev = { "d1", "d1", false, true };

	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/fleetmq/v1", FM_ACCESS_WRITE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/fleetmq/v1/jobs/create", FM_ACCESS_WRITE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/fleetmq/v1/response", FM_ACCESS_SUBSCRIBE, NULL), FM_ACL_DENY);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/fleetmq/v1/response", FM_ACCESS_READ, NULL), FM_ACL_DENY);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "$CONTROL/fleetmq/v1/response", FM_ACCESS_SUBSCRIBE, NULL), FM_ACL_ALLOW);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &op, "$CONTROL/fleetmq/v1/response", FM_ACCESS_READ, NULL), FM_ACL_ALLOW);
	/* another plugin's control tree is not ours */
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/dynamic-security/v1", FM_ACCESS_WRITE, NULL), FM_ACL_DEFER);
	CU_ASSERT_EQUAL(fleetmq_acl_check("fleet", &dev, "$CONTROL/fleetmq/v10", FM_ACCESS_WRITE, NULL), FM_ACL_DEFER);
}

int main(void)
{
	CU_pSuite s;
	unsigned failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite("topic_acl", NULL, NULL);
	CU_add_test(s, "test_topic_parse_requests", test_topic_parse_requests);
	CU_add_test(s, "test_topic_parse_outputs", test_topic_parse_outputs);
	CU_add_test(s, "test_topic_parse_outside_invalid_unknown", test_topic_parse_outside_invalid_unknown);
	CU_add_test(s, "test_id_valid_limits", test_id_valid_limits);
	CU_add_test(s, "test_acl_check_device_own_subtree", test_acl_check_device_own_subtree);
	CU_add_test(s, "test_acl_check_device_denied", test_acl_check_device_denied);
	CU_add_test(s, "test_acl_check_defers_outside", test_acl_check_defers_outside);
	CU_add_test(s, "test_acl_check_username_match_off", test_acl_check_username_match_off);
	CU_add_test(s, "test_acl_check_operator", test_acl_check_operator);
	CU_add_test(s, "test_acl_check_control_topics", test_acl_check_control_topics);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
