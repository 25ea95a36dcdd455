/*
 * test_shadow.c - CUnit suite for the pure shadow core (broker-plugin/shadow.c).
 *
 * No broker, no clock: every timestamp is passed in. Out-of-memory paths are
 * exercised by installing a failing allocator through fleetmq_alloc_set(),
 * which also drives cJSON's hooks.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CUnit/Basic.h>
#include <cjson/cJSON.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "shadow.h"

#define D FLEETMQ_SHADOW_DESIRED
#define R FLEETMQ_SHADOW_REPORTED

static const struct fleetmq_shadow_limits DEFAULT_LIMITS = { 8192, 8 };

/* ---- helpers ---------------------------------------------------------------- */

static void shadow_new(struct fleetmq_shadow *s)
{
	memset(s, 0xA5, sizeof(*s)); /* init must not rely on a zeroed struct */
	CU_ASSERT_EQUAL_FATAL(fleetmq_shadow_init(s), FLEETMQ_OK);
}

static cJSON *parse(const char *txt)
{
	cJSON *j = cJSON_Parse(txt);

	if(j == NULL) fprintf(stderr, "\n  test bug: cannot parse %s\n", txt);
	CU_ASSERT_PTR_NOT_NULL_FATAL(j);
	return j;
}

static int apply_lim(struct fleetmq_shadow *s, enum fleetmq_shadow_side side, const char *patch,
		uint64_t expected, uint64_t now, const struct fleetmq_shadow_limits *lim,
		char *reason, size_t reason_len)
{
	cJSON *p = parse(patch);
	int rc = fleetmq_shadow_apply(s, side, p, expected, now, lim, reason, reason_len);

	cJSON_Delete(p);
	return rc;
}

static int apply(struct fleetmq_shadow *s, enum fleetmq_shadow_side side, const char *patch,
		uint64_t now)
{
	return apply_lim(s, side, patch, 0, now, &DEFAULT_LIMITS, NULL, 0);
}

/* Semantic JSON equality (key order ignored); prints both on mismatch. */
static bool json_is(const cJSON *got, const char *expected, int line)
{
	cJSON *want = parse(expected);
	bool ok = got != NULL && cJSON_Compare(got, want, 1);

	if(!ok){
		char *g = got ? cJSON_PrintUnformatted(got) : NULL;
		fprintf(stderr, "\n  line %d: expected %s\n           got      %s\n",
				line, expected, g ? g : "(null)");
		cJSON_free(g);
	}
	cJSON_Delete(want);
	return ok;
}
#define ASSERT_JSON(got, expected) CU_ASSERT(json_is((got), (expected), __LINE__))

/* Same for JSON text; frees txt. */
static bool text_is(char *txt, const char *expected, int line)
{
	cJSON *got = txt ? cJSON_Parse(txt) : NULL;
	bool ok = got != NULL && json_is(got, expected, line);

	if(got == NULL) fprintf(stderr, "\n  line %d: no JSON text (%s)\n", line, txt ? txt : "null");
	cJSON_Delete(got);
	fm_free(txt);
	return ok;
}
#define ASSERT_TEXT_JSON(txt, expected) CU_ASSERT(text_is((txt), (expected), __LINE__))

/* Exact text equality; frees txt. */
static bool text_exact(char *txt, const char *expected, int line)
{
	bool ok = txt != NULL && strcmp(txt, expected) == 0;

	if(!ok){
		fprintf(stderr, "\n  line %d: expected %s\n           got      %s\n",
				line, expected, txt ? txt : "(null)");
	}
	fm_free(txt);
	return ok;
}
#define ASSERT_TEXT(txt, expected) CU_ASSERT(text_exact((txt), (expected), __LINE__))

/* The whole shadow, as text, to check "unchanged". Caller frees. */
static char *snapshot(const struct fleetmq_shadow *s)
{
	char *txt = fleetmq_shadow_serialize(s);

	CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
	return txt;
}
#define ASSERT_UNCHANGED(s, before) ASSERT_TEXT(fleetmq_shadow_serialize(s), (before))

/* "{"k1":{"k2":...{"kN":leaf}...}}": a patch of depth N (+ depth of leaf). */
static char *nested(int n, const char *leaf)
{
	size_t cap = (size_t)n * 16 + strlen(leaf) + 16;
	char *buf = malloc(cap);
	size_t used = 0;
	int i;

	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	used += (size_t)snprintf(buf + used, cap - used, "{");
	for(i = 1; i < n; i++) used += (size_t)snprintf(buf + used, cap - used, "\"k%d\":{", i);
	used += (size_t)snprintf(buf + used, cap - used, "\"k%d\":%s", n, leaf);
	for(i = 0; i < n; i++) used += (size_t)snprintf(buf + used, cap - used, "}");
	return buf;
}

/* Failing allocator: the next `budget` allocations succeed, then all fail. */
static long alloc_budget = -1;

static bool alloc_allowed(void)
{
	if(alloc_budget == 0) return false;
	if(alloc_budget > 0) alloc_budget--;
	return true;
}
static void *fail_malloc(size_t n) { return alloc_allowed() ? malloc(n) : NULL; }
static void *fail_calloc(size_t m, size_t n) { return alloc_allowed() ? calloc(m, n) : NULL; }
static void *fail_realloc(void *p, size_t n) { return alloc_allowed() ? realloc(p, n) : NULL; }

static void budget_set(long n)
{
	static const struct fleetmq_allocator failing = { fail_malloc, fail_calloc, fail_realloc, free };

	alloc_budget = n;
	fleetmq_alloc_set(&failing);
}

static void budget_off(void)
{
	fleetmq_alloc_set(NULL);
	alloc_budget = -1;
}

#define OOM_MAX_STEPS 100000L

/* ---- init / clear / depth ----------------------------------------------------- */

static void test_shadow_init_empty(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(s.version, 0);
	CU_ASSERT_EQUAL(s.updated_ms, 0);
	CU_ASSERT(cJSON_IsObject(s.desired) && s.desired->child == NULL);
	CU_ASSERT(cJSON_IsObject(s.reported) && s.reported->child == NULL);
	CU_ASSERT(cJSON_IsObject(s.meta_desired) && s.meta_desired->child == NULL);
	CU_ASSERT(cJSON_IsObject(s.meta_reported) && s.meta_reported->child == NULL);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 1), "{\"desired\":{},\"reported\":{}}");
	ASSERT_TEXT(fleetmq_shadow_metadata_json(&s), "{\"desired\":{},\"reported\":{}}");
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta(&s));
	fleetmq_shadow_clear(&s);
}

static void test_shadow_init_null(void)
{
	CU_ASSERT_EQUAL(fleetmq_shadow_init(NULL), FLEETMQ_ERR_INTERNAL);
}

static void test_shadow_init_nomem(void)
{
	struct fleetmq_shadow s;
	long n;
	int rc = -1;

	for(n = 0; n < OOM_MAX_STEPS; n++){
		budget_set(n);
		rc = fleetmq_shadow_init(&s);
		budget_off();
		if(rc == FLEETMQ_OK) break;
		CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_NOMEM);
		CU_ASSERT_PTR_NULL(s.desired);
		CU_ASSERT_PTR_NULL(s.meta_reported);
	}
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	CU_ASSERT(n > 0);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_clear_resets_and_reinit(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":1}}", 100), FLEETMQ_OK);
	fleetmq_shadow_clear(&s);
	CU_ASSERT_PTR_NULL(s.desired);
	CU_ASSERT_PTR_NULL(s.reported);
	CU_ASSERT_PTR_NULL(s.meta_desired);
	CU_ASSERT_PTR_NULL(s.meta_reported);
	CU_ASSERT_EQUAL(s.version, 0);
	CU_ASSERT_EQUAL(s.updated_ms, 0);
	fleetmq_shadow_clear(&s); /* twice is fine */
	fleetmq_shadow_clear(NULL);
	/* a cleared shadow is refused, not crashed on */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 1), FLEETMQ_ERR_INTERNAL);
	CU_ASSERT_PTR_NULL(fleetmq_shadow_serialize(&s));
	CU_ASSERT_EQUAL(fleetmq_shadow_init(&s), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 1), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":1}");
	fleetmq_shadow_clear(&s);
}

static void test_json_depth_values(void)
{
	struct { const char *txt; int depth; } cases[] = {
		{ "1", 0 }, { "\"s\"", 0 }, { "null", 0 }, { "true", 0 },
		{ "{}", 1 }, { "[]", 1 }, { "{\"a\":1}", 1 }, { "[1,2]", 1 },
		{ "{\"a\":{}}", 2 }, { "[[1]]", 2 }, { "{\"a\":[{\"b\":1}]}", 3 },
		{ "{\"a\":1,\"b\":{\"c\":{\"d\":[]}},\"e\":{}}", 4 },
	};
	size_t i;

	CU_ASSERT_EQUAL(fleetmq_json_depth(NULL), 0);
	for(i = 0; i < sizeof(cases) / sizeof(cases[0]); i++){
		cJSON *j = parse(cases[i].txt);
		int d = fleetmq_json_depth(j);

		if(d != cases[i].depth) fprintf(stderr, "\n  depth(%s) = %d\n", cases[i].txt, d);
		CU_ASSERT_EQUAL(d, cases[i].depth);
		cJSON_Delete(j);
	}
}

/* ---- merges ------------------------------------------------------------------- */

static void test_shadow_apply_reported_merge(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"temp\":21.5,\"fw\":\"1.0\"}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"temp\":22,\"up\":true}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"temp\":22,\"fw\":\"1.0\",\"up\":true}");
	ASSERT_JSON(s.meta_reported, "{\"temp\":200,\"fw\":100,\"up\":200}");
	ASSERT_JSON(s.desired, "{}");
	ASSERT_JSON(s.meta_desired, "{}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_desired_merge_nested(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"led\":{\"color\":\"red\",\"on\":true},\"rate\":5}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"led\":{\"color\":\"blue\",\"dim\":{\"pct\":50}}}", 200),
			FLEETMQ_OK);
	ASSERT_JSON(s.desired,
			"{\"led\":{\"color\":\"blue\",\"on\":true,\"dim\":{\"pct\":50}},\"rate\":5}");
	ASSERT_JSON(s.meta_desired,
			"{\"led\":{\"color\":200,\"on\":100,\"dim\":{\"pct\":200}},\"rate\":100}");
	ASSERT_JSON(s.reported, "{}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_sides_independent(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":2}", 200), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":null}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":1}");
	ASSERT_JSON(s.meta_desired, "{\"a\":100}");
	ASSERT_JSON(s.reported, "{}");
	ASSERT_JSON(s.meta_reported, "{}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_replace_keeps_key_order(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"b\":{\"x\":1},\"c\":3}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"b\":7,\"d\":4}", 200), FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 0),
			"{\"desired\":{\"a\":1,\"b\":7,\"c\":3,\"d\":4},\"reported\":{}}");
	ASSERT_TEXT(fleetmq_shadow_metadata_json(&s),
			"{\"desired\":{\"a\":100,\"b\":200,\"c\":100,\"d\":200},\"reported\":{}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_case_sensitive_keys(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"Mode\":\"a\",\"mode\":\"b\"}", 100), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"Mode\":\"a\",\"mode\":\"b\"}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"MODE\":null,\"mode\":\"c\"}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"Mode\":\"a\",\"mode\":\"c\"}");
	ASSERT_JSON(s.meta_desired, "{\"Mode\":100,\"mode\":200}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"Mode\":null}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"mode\":\"c\"}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_repeated_keys_in_patch(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"a\":2}", 100), FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 0), "{\"desired\":{\"a\":2},\"reported\":{}}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"o\":{\"x\":1,\"x\":null,\"y\":2},\"o\":{\"z\":3}}", 200),
			FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 0),
			"{\"desired\":{\"a\":2,\"o\":{\"y\":2,\"z\":3}},\"reported\":{}}");
	ASSERT_TEXT(fleetmq_shadow_metadata_json(&s),
			"{\"desired\":{\"a\":100,\"o\":{\"y\":200,\"z\":200}},\"reported\":{}}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"a\":null}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"o\":{\"y\":2,\"z\":3}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_patch_not_modified(void)
{
	struct fleetmq_shadow s;
	const char *txt = "{\"a\":{\"b\":null,\"c\":[1,{\"d\":null}]},\"e\":null,\"f\":1}";
	cJSON *p = parse(txt);
	char *after;

	shadow_new(&s);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 100, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	after = cJSON_PrintUnformatted(p);
	CU_ASSERT_PTR_NOT_NULL(after);
	if(after) CU_ASSERT_STRING_EQUAL(after, "{\"a\":{\"b\":null,\"c\":[1,{\"d\":null}]},\"e\":null,\"f\":1}");
	cJSON_free(after);
	/* the stored tree does not share nodes with the patch */
	cJSON_Delete(p);
	ASSERT_JSON(s.desired, "{\"a\":{\"c\":[1,{\"d\":null}]},\"f\":1}");
	fleetmq_shadow_clear(&s);
}

/* ---- deletion ------------------------------------------------------------------ */

static void test_shadow_apply_null_deletes_key(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1,\"b\":[1,2],\"c\":{\"d\":1}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":null,\"b\":null}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"c\":{\"d\":1}}");
	ASSERT_JSON(s.meta_reported, "{\"c\":{\"d\":100}}");
	CU_ASSERT_EQUAL(apply(&s, R, "{\"c\":null}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{}");
	ASSERT_JSON(s.meta_reported, "{}");
	CU_ASSERT_EQUAL(s.version, 3);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_null_missing_key_ok(void)
{
	struct fleetmq_shadow s;
	char reason[64] = "junk";

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"zz\":null,\"a\":{\"q\":null}}", 0, 200, &DEFAULT_LIMITS,
			reason, sizeof(reason)), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(reason, "");
	/* an object patch replaces the scalar, then ends up empty: "a" is gone */
	ASSERT_JSON(s.desired, "{}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"nothing\":null}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{}");
	ASSERT_JSON(s.meta_desired, "{}");
	CU_ASSERT_EQUAL(s.version, 3);
	CU_ASSERT_EQUAL(s.updated_ms, 300);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_null_nested_removes_emptied_parents(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":{\"c\":1}},\"x\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":{\"c\":null}}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"x\":1}");
	ASSERT_JSON(s.meta_desired, "{\"x\":100}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_null_nested_keeps_nonempty_parent(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":{\"c\":1},\"k\":2}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":{\"c\":null}}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{\"k\":2}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{\"k\":100}}");
	/* delete one of two, and add in the same emptied object */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"k\":null,\"n\":3}}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{\"n\":3}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{\"n\":300}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_nulls_in_new_object_not_stored(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":null,\"c\":1,\"d\":{\"e\":null}}}", 100),
			FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{\"c\":1}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{\"c\":100}}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"n\":{\"m\":null}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{\"c\":1}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_empty_object_value(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	/* an explicit empty object is stored (it was not emptied by deletion) */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{},\"b\":5}", 100), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{},\"b\":5}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{},\"b\":100}");
	/* and replaces a scalar */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"b\":{}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{},\"b\":{}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{},\"b\":{}}");
	/* merging {} into an existing object changes nothing */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"c\":{\"x\":1}}", 300), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"c\":{}}", 400), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{},\"b\":{},\"c\":{\"x\":1}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{},\"b\":{},\"c\":{\"x\":300}}");
	/* a deletion in an already empty object removes it */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"zz\":null}}", 500), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"b\":{},\"c\":{\"x\":1}}");
	ASSERT_JSON(s.meta_desired, "{\"b\":{},\"c\":{\"x\":300}}");
	fleetmq_shadow_clear(&s);
}

/* ---- replacement ------------------------------------------------------------------ */

static void test_shadow_apply_object_replaces_scalar(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":5,\"z\":0}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":{\"b\":1,\"c\":{\"d\":2}}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"a\":{\"b\":1,\"c\":{\"d\":2}},\"z\":0}");
	ASSERT_JSON(s.meta_reported, "{\"a\":{\"b\":200,\"c\":{\"d\":200}},\"z\":100}");
	/* and an array */
	CU_ASSERT_EQUAL(apply(&s, R, "{\"z\":[1]}", 300), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"z\":{\"y\":true}}", 400), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"a\":{\"b\":1,\"c\":{\"d\":2}},\"z\":{\"y\":true}}");
	ASSERT_JSON(s.meta_reported, "{\"a\":{\"b\":200,\"c\":{\"d\":200}},\"z\":{\"y\":400}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_scalar_replaces_object(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":{\"b\":1,\"c\":{\"d\":2}},\"e\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":\"flat\"}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"a\":\"flat\",\"e\":1}");
	ASSERT_JSON(s.meta_reported, "{\"a\":200,\"e\":100}");
	CU_ASSERT_EQUAL(apply(&s, R, "{\"e\":{\"x\":1}}", 300), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"e\":[{\"x\":1}]}", 400), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"a\":\"flat\",\"e\":[{\"x\":1}]}");
	ASSERT_JSON(s.meta_reported, "{\"a\":200,\"e\":400}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_array_replaces(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"l\":[1,2,3],\"m\":[{\"a\":1}]}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"l\":[4]}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"l\":[4],\"m\":[{\"a\":1}]}");
	/* arrays are values: objects and nulls inside them are kept as they are */
	CU_ASSERT_EQUAL(apply(&s, D, "{\"m\":[{\"b\":null},null,[]]}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"l\":[4],\"m\":[{\"b\":null},null,[]]}");
	ASSERT_JSON(s.meta_desired, "{\"l\":200,\"m\":300}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"l\":[]}", 400), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"l\":[],\"m\":[{\"b\":null},null,[]]}");
	fleetmq_shadow_clear(&s);
}

/* ---- versions --------------------------------------------------------------------- */

static void test_shadow_apply_version_increments(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 1);
	CU_ASSERT_EQUAL(s.updated_ms, 100);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1}", 150), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 2);
	CU_ASSERT_EQUAL(s.updated_ms, 150);
	/* same value again: still an accepted update */
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1}", 170), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 3);
	CU_ASSERT_EQUAL(s.updated_ms, 170);
	ASSERT_JSON(s.meta_reported, "{\"a\":170}");
	/* rejected updates do not count */
	CU_ASSERT_EQUAL(apply(&s, R, "{}", 180), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(s.version, 3);
	CU_ASSERT_EQUAL(s.updated_ms, 170);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_expected_version_match(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":2}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":3}", 2, 300, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 3);
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"a\":3}", 3, 400, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 4);
	ASSERT_JSON(s.desired, "{\"a\":3}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_expected_version_conflict_unchanged(void)
{
	struct fleetmq_shadow s;
	char reason[128];
	char *before;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"o\":{\"x\":1}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1}", 200), FLEETMQ_OK);
	before = snapshot(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":2,\"o\":null}", 1, 300, &DEFAULT_LIMITS,
			reason, sizeof(reason)), FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "1"));
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "2"));
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":2}", 3, 300, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_EQUAL(s.version, 2);
	CU_ASSERT_EQUAL(s.updated_ms, 200);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

/* ---- rejected patches ------------------------------------------------------------- */

static void test_shadow_apply_wrong_type(void)
{
	const char *bad[] = { "[]", "[{\"a\":1}]", "\"str\"", "5", "null", "true" };
	struct fleetmq_shadow s;
	char reason[128];
	char *before;
	size_t i;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	before = snapshot(&s);
	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		reason[0] = '\0';
		CU_ASSERT_EQUAL(apply_lim(&s, D, bad[i], 0, 200, &DEFAULT_LIMITS, reason, sizeof(reason)),
				FLEETMQ_ERR_WRONG_TYPE);
		CU_ASSERT_PTR_NOT_NULL(strstr(reason, "object"));
	}
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, R, NULL, 0, 200, &DEFAULT_LIMITS, reason,
			sizeof(reason)), FLEETMQ_ERR_WRONG_TYPE);
	/* wrong type wins over a version conflict */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "[]", 99, 200, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_WRONG_TYPE);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_unstorable_values_rejected(void)
{
	struct fleetmq_shadow s;
	char reason[128];
	char *before;
	cJSON *p;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	before = snapshot(&s);
	/* cJSON parses 1e999 as infinity, which it would print as null */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"b\":1e999}", 0, 200, &DEFAULT_LIMITS, reason,
			sizeof(reason)), FLEETMQ_ERR_WRONG_TYPE);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "'b'"));
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"b\":{\"c\":[1,-1e999]}}", 0, 200, &DEFAULT_LIMITS,
			reason, sizeof(reason)), FLEETMQ_ERR_WRONG_TYPE);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "'b.c[1]'"));
	p = parse("{\"ok\":1}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(cJSON_AddRawToObject(p, "raw", "{\"injected\":1}"));
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 200, &DEFAULT_LIMITS, reason,
			sizeof(reason)), FLEETMQ_ERR_WRONG_TYPE);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "raw"));
	cJSON_Delete(p);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_empty_patch(void)
{
	struct fleetmq_shadow s;
	char reason[128] = "";
	char *before;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 100), FLEETMQ_OK);
	before = snapshot(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{}", 0, 200, &DEFAULT_LIMITS, reason, sizeof(reason)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT(strlen(reason) > 0);
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{}", 1, 200, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_BAD_REQUEST);
	/* an empty update is a bad request even with a stale version */
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{}", 7, 200, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_BAD_REQUEST);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_invalid_arguments(void)
{
	struct fleetmq_shadow s, zero;
	cJSON *p = parse("{\"a\":1}");
	char reason[64];
	char *before;

	shadow_new(&s);
	before = snapshot(&s);
	memset(&zero, 0, sizeof(zero));
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(NULL, D, p, 0, 1, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_INTERNAL);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&zero, D, p, 0, 1, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_INTERNAL);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 1, NULL, reason, sizeof(reason)),
			FLEETMQ_ERR_INTERNAL);
	CU_ASSERT(strlen(reason) > 0);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, (enum fleetmq_shadow_side)7, p, 0, 1,
			&DEFAULT_LIMITS, NULL, 0), FLEETMQ_ERR_INTERNAL);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	cJSON_Delete(p);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_reason_buffer(void)
{
	struct fleetmq_shadow s;
	char tiny[8];
	char reason[128];

	shadow_new(&s);
	/* truncated but terminated */
	memset(tiny, 'x', sizeof(tiny));
	CU_ASSERT_EQUAL(apply_lim(&s, D, "[]", 0, 1, &DEFAULT_LIMITS, tiny, sizeof(tiny)),
			FLEETMQ_ERR_WRONG_TYPE);
	CU_ASSERT_EQUAL(strlen(tiny), sizeof(tiny) - 1);
	/* zero length: untouched */
	tiny[0] = 'q';
	CU_ASSERT_EQUAL(apply_lim(&s, D, "[]", 0, 1, &DEFAULT_LIMITS, tiny, 0),
			FLEETMQ_ERR_WRONG_TYPE);
	CU_ASSERT_EQUAL(tiny[0], 'q');
	/* cleared on success */
	strcpy(reason, "stale");
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":1}", 0, 1, &DEFAULT_LIMITS, reason, sizeof(reason)),
			FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(reason, "");
	fleetmq_shadow_clear(&s);
}

/* ---- depth limit ---------------------------------------------------------------------- */

static void test_shadow_apply_patch_depth_at_max_accepted(void)
{
	struct fleetmq_shadow_limits lim = { 8192, 3 };
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":1}}}", 0, 100, &lim, NULL, 0),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"l\":[[1]]}", 0, 200, &lim, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"m\":[{\"x\":1}]}", 0, 300, &lim, NULL, 0), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"a\":{\"b\":{\"c\":1}},\"l\":[[1]],\"m\":[{\"x\":1}]}");
	CU_ASSERT_EQUAL(fleetmq_json_depth(s.desired), 3);
	CU_ASSERT_EQUAL(s.version, 3);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_patch_depth_over_max_rejected(void)
{
	struct fleetmq_shadow_limits lim = { 8192, 3 };
	struct fleetmq_shadow s;
	char reason[128];
	char *before;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"x\":1}", 0, 100, &lim, NULL, 0), FLEETMQ_OK);
	before = snapshot(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{}}}}", 0, 200, &lim, reason,
			sizeof(reason)), FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_STRING_EQUAL(reason, "key 'a.b.c' nests deeper than 3 levels");
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"ok\":1,\"a\":[[[1]]]}", 0, 200, &lim, reason,
			sizeof(reason)), FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_STRING_EQUAL(reason, "key 'a[0][0]' nests deeper than 3 levels");
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":[1,{\"b\":[]}]}", 0, 200, &lim, reason,
			sizeof(reason)), FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_STRING_EQUAL(reason, "key 'a[1].b' nests deeper than 3 levels");
	/* deletions nested too deep are rejected too: the patch itself is checked */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{\"d\":null}}}}", 0, 200, &lim,
			NULL, 0), FLEETMQ_ERR_TOO_DEEP);
	/* depth is checked before the version */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{}}}}", 42, 200, &lim, NULL, 0),
			FLEETMQ_ERR_TOO_DEEP);
	ASSERT_UNCHANGED(&s, before);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_default_depth_limit(void)
{
	struct fleetmq_shadow s;
	char reason[128];
	char *ok = nested(7, "{\"k8\":1}");   /* depth 8 */
	char *deep = nested(8, "{}");         /* depth 9 */

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, R, ok, 0, 100, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_json_depth(s.reported), 8);
	CU_ASSERT_EQUAL(apply_lim(&s, R, deep, 0, 200, &DEFAULT_LIMITS, reason, sizeof(reason)),
			FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_STRING_EQUAL(reason, "key 'k1.k2.k3.k4.k5.k6.k7.k8' nests deeper than 8 levels");
	CU_ASSERT_EQUAL(s.version, 1);
	free(ok);
	free(deep);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_depth_long_path_cut(void)
{
	struct fleetmq_shadow_limits lim = { 1 << 20, 2 };
	struct fleetmq_shadow s;
	char reason[512];
	char key[200];
	char patch[512];

	memset(key, 'k', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	snprintf(patch, sizeof(patch), "{\"%s\":{\"b\":{}}}", key);
	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, patch, 0, 1, &lim, reason, sizeof(reason)),
			FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "...' nests deeper than 2 levels"));
	CU_ASSERT_EQUAL(strncmp(reason, "key 'kkkk", 9), 0);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_result_depth_at_max_accepted(void)
{
	struct fleetmq_shadow_limits lim4 = { 8192, 4 };
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{\"d\":1}}}}", 0, 100, &lim4, NULL, 0),
			FLEETMQ_OK);
	/* a shallow patch merging into the deepest object: the result is exactly 4 */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{\"e\":2}}}}", 0, 200, &lim4, NULL, 0),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"x\":[1]}", 0, 300, &lim4, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_json_depth(s.desired), 4);
	CU_ASSERT_EQUAL(s.version, 3);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_result_depth_over_max_rejected(void)
{
	struct fleetmq_shadow_limits lim4 = { 8192, 4 }, lim3 = { 8192, 3 };
	struct fleetmq_shadow s;
	char reason[128];
	char *before;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":{\"c\":{\"d\":1}}}}", 0, 100, &lim4, NULL, 0),
			FLEETMQ_OK);
	before = snapshot(&s);
	/* the limit was lowered: a shallow patch is fine, the result is not */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"x\":1}", 0, 200, &lim3, reason, sizeof(reason)),
			FLEETMQ_ERR_TOO_DEEP);
	CU_ASSERT_STRING_EQUAL(reason, "update would make key 'a.b.c' nest deeper than 3 levels");
	ASSERT_UNCHANGED(&s, before);
	/* the reported side does not count for the desired side's depth */
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"x\":1}", 0, 200, &lim3, NULL, 0), FLEETMQ_OK);
	/* an update that removes the deep part is accepted */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":{\"b\":null}}", 0, 300, &lim3, NULL, 0), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{}");
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

/* ---- size limit ----------------------------------------------------------------------- */

/* Length of the state after applying patch (desired side) to an empty shadow. */
static size_t state_len_after(const char *patch)
{
	struct fleetmq_shadow_limits big = { 1 << 20, 8 };
	struct fleetmq_shadow p;
	char *txt;
	size_t len;

	shadow_new(&p);
	CU_ASSERT_EQUAL_FATAL(apply_lim(&p, D, patch, 0, 1, &big, NULL, 0), FLEETMQ_OK);
	txt = fleetmq_shadow_state_json(&p, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
	len = strlen(txt);
	fm_free(txt);
	fleetmq_shadow_clear(&p);
	return len;
}

static void test_shadow_apply_size_at_limit_accepted(void)
{
	const char *patch = "{\"name\":\"sensor-\\u00e9\",\"vals\":[1.5,2,3],\"o\":{\"k\":true}}";
	size_t len = state_len_after(patch);
	struct fleetmq_shadow_limits lim = { len, 8 };
	struct fleetmq_shadow s;
	char *txt;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, patch, 0, 100, &lim, NULL, 0), FLEETMQ_OK);
	txt = fleetmq_shadow_state_json(&s, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
	CU_ASSERT_EQUAL(strlen(txt), len);
	fm_free(txt);
	/* deletions and same-size replacements stay within the limit */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"o\":{\"k\":false}}", 0, 200, &lim, NULL, 0),
			FLEETMQ_ERR_TOO_LARGE); /* "false" is one byte longer than "true" */
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"vals\":[1.5,2,4]}", 0, 200, &lim, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 2);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_size_over_limit_rejected(void)
{
	const char *patch = "{\"name\":\"sensor-\\u00e9\",\"vals\":[1.5,2,3],\"o\":{\"k\":true}}";
	size_t len = state_len_after(patch);
	struct fleetmq_shadow_limits lim = { len - 1, 8 };
	struct fleetmq_shadow s;
	char reason[128];
	char *before;

	shadow_new(&s);
	before = snapshot(&s);
	CU_ASSERT_EQUAL(apply_lim(&s, D, patch, 0, 100, &lim, reason, sizeof(reason)),
			FLEETMQ_ERR_TOO_LARGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "bytes"));
	ASSERT_UNCHANGED(&s, before);
	CU_ASSERT_EQUAL(s.version, 0);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_size_counts_both_sides(void)
{
	struct fleetmq_shadow_limits lim = { 0, 8 };
	struct fleetmq_shadow s;
	char *txt, *before;
	size_t len;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"blob\":\"0123456789012345678901234567890123456789\"}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 200), FLEETMQ_OK);
	txt = fleetmq_shadow_state_json(&s, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(txt);
	len = strlen(txt);
	fm_free(txt);
	before = snapshot(&s);
	/* one more desired byte ("a":10) than the current full document */
	lim.max_document_bytes = len;
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":10}", 0, 300, &lim, NULL, 0), FLEETMQ_ERR_TOO_LARGE);
	ASSERT_UNCHANGED(&s, before);
	lim.max_document_bytes = len + 1;
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":10}", 0, 300, &lim, NULL, 0), FLEETMQ_OK);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_apply_size_shrinking_update_accepted(void)
{
	struct fleetmq_shadow_limits small = { 40, 8 };
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"big\":\"0123456789012345678901234567890123456789\","
			"\"k\":1}", 100), FLEETMQ_OK);
	/* limit lowered below the current size: growth and half-measures are refused */
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"k\":2}", 0, 200, &small, NULL, 0), FLEETMQ_ERR_TOO_LARGE);
	/* an update that brings it back within the limit is accepted */
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"big\":null}", 0, 300, &small, NULL, 0), FLEETMQ_OK);
	ASSERT_JSON(s.reported, "{\"k\":1}");
	fleetmq_shadow_clear(&s);
}

/* ---- metadata --------------------------------------------------------------------------- */

static void test_shadow_apply_metadata_touched_keys_only(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"b\":{\"c\":1,\"d\":2,\"e\":{\"f\":1}},\"g\":[1]}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"b\":{\"c\":5,\"e\":{\"h\":2}}}", 200), FLEETMQ_OK);
	ASSERT_JSON(s.meta_desired,
			"{\"a\":100,\"b\":{\"c\":200,\"d\":100,\"e\":{\"f\":100,\"h\":200}},\"g\":100}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"g\":[1],\"b\":{\"d\":null}}", 300), FLEETMQ_OK);
	ASSERT_JSON(s.meta_desired,
			"{\"a\":100,\"b\":{\"c\":200,\"e\":{\"f\":100,\"h\":200}},\"g\":300}");
	ASSERT_JSON(s.meta_reported, "{}");
	ASSERT_TEXT_JSON(fleetmq_shadow_metadata_json(&s),
			"{\"desired\":{\"a\":100,\"b\":{\"c\":200,\"e\":{\"f\":100,\"h\":200}},\"g\":300},"
			"\"reported\":{}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_patch_metadata_touched_keys(void)
{
	struct fleetmq_shadow s;
	const char *patch = "{\"b\":{\"c\":5,\"d\":null},\"e\":[1],\"f\":null,\"g\":{\"h\":{}}}";
	cJSON *p;
	cJSON *m;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1,\"b\":{\"c\":1,\"d\":2,\"x\":3},\"f\":1}", 100),
			FLEETMQ_OK);
	p = parse(patch);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, R, p, 0, 200, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	m = fleetmq_shadow_patch_metadata(&s, R, p);
	/* deleted keys and objects with nothing timestamped are omitted */
	ASSERT_JSON(m, "{\"b\":{\"c\":200},\"e\":200}");
	cJSON_Delete(m);
	/* the other side has none of these keys */
	m = fleetmq_shadow_patch_metadata(&s, D, p);
	ASSERT_JSON(m, "{}");
	cJSON_Delete(m);
	CU_ASSERT_PTR_NULL(fleetmq_shadow_patch_metadata(&s, (enum fleetmq_shadow_side)5, p));
	CU_ASSERT_PTR_NULL(fleetmq_shadow_patch_metadata(NULL, R, p));
	cJSON_Delete(p);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_patch_metadata_emptied_and_repeated(void)
{
	struct fleetmq_shadow s;
	cJSON *p, *m;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"o\":{\"x\":1},\"k\":1}", 100), FLEETMQ_OK);
	p = parse("{\"o\":{\"x\":null}}");
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 200, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	m = fleetmq_shadow_patch_metadata(&s, D, p);
	ASSERT_JSON(m, "{}");
	cJSON_Delete(m);
	cJSON_Delete(p);

	p = parse("{\"r\":{\"x\":1},\"r\":{\"y\":2},\"k\":1,\"k\":{\"z\":3}}");
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 300, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	ASSERT_JSON(s.desired, "{\"k\":{\"z\":3},\"r\":{\"x\":1,\"y\":2}}");
	m = fleetmq_shadow_patch_metadata(&s, D, p);
	ASSERT_JSON(m, "{\"r\":{\"x\":300,\"y\":300},\"k\":{\"z\":300}}");
	CU_ASSERT_EQUAL(cJSON_GetArraySize(m), 2); /* no repeated keys */
	cJSON_Delete(m);
	cJSON_Delete(p);

	p = parse("[1]");
	CU_ASSERT_PTR_NULL(fleetmq_shadow_patch_metadata(&s, D, p));
	cJSON_Delete(p);
	fleetmq_shadow_clear(&s);
}

/* ---- delta ---------------------------------------------------------------------------------- */

static void test_shadow_delta_empty(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta(&s));
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"o\":{\"x\":[1,{\"y\":2}],\"s\":\"v\"},\"f\":0.5}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"f\":0.5,\"o\":{\"s\":\"v\",\"x\":[1,{\"y\":2}]},\"a\":1.0,"
			"\"extra\":true}", 200), FLEETMQ_OK);
	/* equal values (key order and extra reported keys do not matter) */
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta(&s));
	ASSERT_TEXT_JSON(fleetmq_shadow_state_json(&s, 1),
			"{\"desired\":{\"a\":1,\"o\":{\"x\":[1,{\"y\":2}],\"s\":\"v\"},\"f\":0.5},"
			"\"reported\":{\"f\":0.5,\"o\":{\"s\":\"v\",\"x\":[1,{\"y\":2}]},\"a\":1,\"extra\":true}}");
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta(NULL));
	fleetmq_shadow_clear(&s);
}

static void test_shadow_delta_missing_and_different(void)
{
	struct fleetmq_shadow s;
	cJSON *d;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"b\":2,\"c\":\"x\",\"t\":true,\"n\":\"1\"}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1,\"b\":5,\"t\":false,\"n\":1,\"r\":9}", 200), FLEETMQ_OK);
	d = fleetmq_shadow_delta(&s);
	ASSERT_JSON(d, "{\"b\":2,\"c\":\"x\",\"t\":true,\"n\":\"1\"}");
	cJSON_Delete(d);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_delta_nested(void)
{
	struct fleetmq_shadow s;
	cJSON *d;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"led\":{\"color\":\"red\",\"on\":true,\"dim\":{\"pct\":5,"
			"\"curve\":\"lin\"}},\"same\":{\"q\":1},\"o\":{\"p\":1},\"e\":{}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"led\":{\"color\":\"red\",\"on\":false,\"dim\":{\"pct\":5}},"
			"\"same\":{\"q\":1,\"w\":2},\"o\":7}", 200), FLEETMQ_OK);
	d = fleetmq_shadow_delta(&s);
	/* only differing subkeys; an object the reported side lacks or holds as a
	 * non-object appears whole */
	ASSERT_JSON(d, "{\"led\":{\"on\":true,\"dim\":{\"curve\":\"lin\"}},\"o\":{\"p\":1},\"e\":{}}");
	cJSON_Delete(d);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_delta_array(void)
{
	struct fleetmq_shadow s;
	cJSON *d;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"l\":[1,2,3],\"m\":[{\"a\":1,\"b\":2}],\"e\":[],\"k\":[1]}", 100),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"l\":[1,2],\"m\":[{\"b\":2,\"a\":1}],\"e\":[],\"k\":{\"0\":1}}",
			200), FLEETMQ_OK);
	d = fleetmq_shadow_delta(&s);
	/* arrays compare whole: a longer array appears entirely */
	ASSERT_JSON(d, "{\"l\":[1,2,3],\"k\":[1]}");
	cJSON_Delete(d);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"l\":[3,2,1],\"k\":[1]}", 300), FLEETMQ_OK);
	d = fleetmq_shadow_delta(&s);
	ASSERT_JSON(d, "{\"l\":[1,2,3]}");
	cJSON_Delete(d);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"l\":[1,2,3]}", 400), FLEETMQ_OK);
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta(&s));
	fleetmq_shadow_clear(&s);
}

static void test_shadow_delta_metadata(void)
{
	struct fleetmq_shadow s;
	cJSON *d, *m;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"o\":{\"x\":1,\"y\":2,\"z\":{\"w\":1}},\"e\":{},"
			"\"l\":[1]}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"o\":{\"y\":3}}", 200), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1,\"o\":{\"x\":1,\"y\":2},\"l\":[2]}", 300), FLEETMQ_OK);
	d = fleetmq_shadow_delta(&s);
	ASSERT_JSON(d, "{\"o\":{\"y\":3,\"z\":{\"w\":1}},\"e\":{},\"l\":[1]}");
	m = fleetmq_shadow_delta_metadata(&s, d);
	/* desired-side timestamps, same shape as the delta */
	ASSERT_JSON(m, "{\"o\":{\"y\":200,\"z\":{\"w\":100}},\"e\":{},\"l\":100}");
	cJSON_Delete(m);
	cJSON_Delete(d);
	CU_ASSERT_PTR_NULL(fleetmq_shadow_delta_metadata(&s, NULL));
	fleetmq_shadow_clear(&s);
}

/* ---- text forms ------------------------------------------------------------------------------ */

static void test_shadow_state_json_with_delta(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"b\":{\"c\":2}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1}", 200), FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 1),
			"{\"desired\":{\"a\":1,\"b\":{\"c\":2}},\"reported\":{\"a\":1},\"delta\":{\"b\":{\"c\":2}}}");
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 0),
			"{\"desired\":{\"a\":1,\"b\":{\"c\":2}},\"reported\":{\"a\":1}}");
	CU_ASSERT_EQUAL(apply(&s, R, "{\"b\":{\"c\":2}}", 300), FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_state_json(&s, 1),
			"{\"desired\":{\"a\":1,\"b\":{\"c\":2}},\"reported\":{\"a\":1,\"b\":{\"c\":2}}}");
	CU_ASSERT_PTR_NULL(fleetmq_shadow_state_json(NULL, 1));
	CU_ASSERT_PTR_NULL(fleetmq_shadow_metadata_json(NULL));
	fleetmq_shadow_clear(&s);
}

static void test_shadow_serialize_format(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	ASSERT_TEXT(fleetmq_shadow_serialize(&s),
			"{\"version\":0,\"updated_ms\":0,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}}}");
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1}", 1700000000123ULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"b\":{\"c\":\"x\"}}", 1700000000456ULL), FLEETMQ_OK);
	ASSERT_TEXT(fleetmq_shadow_serialize(&s),
			"{\"version\":2,\"updated_ms\":1700000000456,\"desired\":{\"a\":1},"
			"\"reported\":{\"b\":{\"c\":\"x\"}},\"metadata\":{\"desired\":{\"a\":1700000000123},"
			"\"reported\":{\"b\":{\"c\":1700000000456}}}}");
	CU_ASSERT_PTR_NULL(fleetmq_shadow_serialize(NULL));
	fleetmq_shadow_clear(&s);
}

/* ---- load ------------------------------------------------------------------------------------ */

static const char *VALID_DOC =
	"{\"version\":3,\"updated_ms\":300,\"desired\":{\"a\":1,\"o\":{\"x\":true}},"
	"\"reported\":{\"a\":2},\"metadata\":{\"desired\":{\"a\":100,\"o\":{\"x\":200}},"
	"\"reported\":{\"a\":300}}}";

static int load_str(struct fleetmq_shadow *s, const char *txt)
{
	return fleetmq_shadow_load(s, txt, strlen(txt));
}

static void test_shadow_load_round_trip(void)
{
	struct fleetmq_shadow a, b;
	char *ser, *ser_b;
	cJSON *da, *db;

	shadow_new(&a);
	shadow_new(&b);
	CU_ASSERT_EQUAL(apply(&a, D, "{\"s\":\"q\\\"uote \\u00e9 \\ud83d\\ude00\",\"f\":-0.125,"
			"\"big\":12345678901234,\"l\":[null,{\"x\":null},[]],\"o\":{\"p\":{\"q\":false}},"
			"\"e\":{}}", 1700000000001ULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&a, R, "{\"s\":\"other\",\"o\":{\"p\":{\"q\":false}}}", 1700000000002ULL),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&a, D, "{\"o\":{\"r\":1}}", 1700000000003ULL), FLEETMQ_OK);
	ser = snapshot(&a);
	CU_ASSERT_EQUAL(load_str(&b, ser), FLEETMQ_OK);
	CU_ASSERT_EQUAL(b.version, 3);
	CU_ASSERT_EQUAL(b.updated_ms, 1700000000003ULL);
	ser_b = snapshot(&b);
	CU_ASSERT_STRING_EQUAL(ser_b, ser);
	fm_free(ser_b);
	CU_ASSERT(cJSON_Compare(a.desired, b.desired, 1));
	CU_ASSERT(cJSON_Compare(a.meta_reported, b.meta_reported, 1));
	da = fleetmq_shadow_delta(&a);
	db = fleetmq_shadow_delta(&b);
	CU_ASSERT_PTR_NOT_NULL(da);
	CU_ASSERT(cJSON_Compare(da, db, 1));
	cJSON_Delete(da);
	cJSON_Delete(db);
	/* the loaded shadow behaves the same from here on */
	CU_ASSERT_EQUAL(apply_lim(&a, R, "{\"o\":{\"p\":null}}", 3, 5000, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&b, R, "{\"o\":{\"p\":null}}", 3, 5000, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_OK);
	fm_free(ser);
	ser = snapshot(&a);
	ASSERT_TEXT(fleetmq_shadow_serialize(&b), ser);
	fm_free(ser);
	fleetmq_shadow_clear(&a);
	fleetmq_shadow_clear(&b);
}

static void test_shadow_load_replaces_content(void)
{
	struct fleetmq_shadow s;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"old\":1}", 50), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"old\":1}", 60), FLEETMQ_OK);
	CU_ASSERT_EQUAL(load_str(&s, VALID_DOC), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 3);
	CU_ASSERT_EQUAL(s.updated_ms, 300);
	ASSERT_JSON(s.desired, "{\"a\":1,\"o\":{\"x\":true}}");
	ASSERT_JSON(s.reported, "{\"a\":2}");
	ASSERT_JSON(s.meta_desired, "{\"a\":100,\"o\":{\"x\":200}}");
	ASSERT_JSON(s.meta_reported, "{\"a\":300}");
	ASSERT_TEXT(fleetmq_shadow_serialize(&s), VALID_DOC);
	/* versions continue from the loaded one */
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"a\":1}", 2, 400, &DEFAULT_LIMITS, NULL, 0),
			FLEETMQ_ERR_VERSION_CONFLICT);
	CU_ASSERT_EQUAL(apply_lim(&s, R, "{\"a\":1}", 3, 400, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 4);
	ASSERT_JSON(s.meta_desired, "{\"a\":100,\"o\":{\"x\":200}}");
	fleetmq_shadow_clear(&s);
}

static void test_shadow_load_length_and_whitespace(void)
{
	struct fleetmq_shadow s;
	char buf[1024];
	size_t len = strlen(VALID_DOC);

	shadow_new(&s);
	/* not NUL-terminated: only len bytes count */
	memcpy(buf, VALID_DOC, len);
	memcpy(buf + len, "garbage", 8);
	CU_ASSERT_EQUAL(fleetmq_shadow_load(&s, buf, len), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 3);
	/* trailing JSON whitespace is fine, a second value is not */
	snprintf(buf, sizeof(buf), " \n%s \r\n\t", VALID_DOC);
	CU_ASSERT_EQUAL(load_str(&s, buf), FLEETMQ_OK);
	snprintf(buf, sizeof(buf), "%s{}", VALID_DOC);
	CU_ASSERT_EQUAL(load_str(&s, buf), FLEETMQ_ERR_MALFORMED);
	/* cut short by len */
	CU_ASSERT_EQUAL(fleetmq_shadow_load(&s, VALID_DOC, len - 1), FLEETMQ_ERR_MALFORMED);
	CU_ASSERT_EQUAL(fleetmq_shadow_load(&s, VALID_DOC, 0), FLEETMQ_ERR_MALFORMED);
	CU_ASSERT_EQUAL(fleetmq_shadow_load(&s, NULL, 10), FLEETMQ_ERR_MALFORMED);
	CU_ASSERT_EQUAL(fleetmq_shadow_load(NULL, VALID_DOC, len), FLEETMQ_ERR_INTERNAL);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_load_large_integers(void)
{
	struct fleetmq_shadow s;
	const char *max =
		"{\"version\":9007199254740992,\"updated_ms\":9007199254740992,\"desired\":{\"a\":1},"
		"\"reported\":{},\"metadata\":{\"desired\":{\"a\":1700000000000},\"reported\":{}}}";
	const char *exp =
		"{\"version\":4.0e0,\"updated_ms\":5e3,\"desired\":{},\"reported\":{},"
		"\"metadata\":{\"desired\":{},\"reported\":{}}}";

	shadow_new(&s);
	CU_ASSERT_EQUAL(load_str(&s, max), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 9007199254740992ULL);
	CU_ASSERT_EQUAL(s.updated_ms, 9007199254740992ULL);
	ASSERT_TEXT(fleetmq_shadow_serialize(&s), max);
	/* integral values in any notation are integers */
	CU_ASSERT_EQUAL(load_str(&s, exp), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.version, 4);
	CU_ASSERT_EQUAL(s.updated_ms, 5000);
	fleetmq_shadow_clear(&s);
}

/* An update never takes the version past 2^53, where the stored document
 * would no longer load (found by fuzz_shadow). */
static void test_shadow_version_limit(void)
{
	struct fleetmq_shadow s;
	const char *max =
		"{\"version\":9007199254740992,\"updated_ms\":1,\"desired\":{},"
		"\"reported\":{},\"metadata\":{\"desired\":{},\"reported\":{}}}";
	char reason[128];
	char *text;

	shadow_new(&s);
	CU_ASSERT_EQUAL(load_str(&s, max), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply_lim(&s, D, "{\"a\":1}", 0, 100, &DEFAULT_LIMITS, reason, sizeof(reason)),
			FLEETMQ_ERR_TOO_LARGE);
	CU_ASSERT_PTR_NOT_NULL(strstr(reason, "limit"));
	CU_ASSERT_EQUAL(s.version, 9007199254740992ULL);
	text = fleetmq_shadow_serialize(&s);
	CU_ASSERT_STRING_EQUAL(text, max);
	cJSON_free(text);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_load_rejects_malformed(void)
{
#define DOC(ver, upd, des, rep, md, mr) \
	"{\"version\":" ver ",\"updated_ms\":" upd ",\"desired\":" des ",\"reported\":" rep \
	",\"metadata\":{\"desired\":" md ",\"reported\":" mr "}}"
	static const char *const bad[] = {
		" ",
		"not json",
		"{",
		"[]",
		"null",
		"42",
		"\"text\"",
		"{}",
		/* version */
		"{\"updated_ms\":1,\"desired\":{},\"reported\":{},\"metadata\":{\"desired\":{},\"reported\":{}}}",
		DOC("\"3\"", "1", "{}", "{}", "{}", "{}"),
		DOC("-1", "1", "{}", "{}", "{}", "{}"),
		DOC("1.5", "1", "{}", "{}", "{}", "{}"),
		DOC("9007199254740994", "1", "{}", "{}", "{}", "{}"),
		DOC("1e300", "1", "{}", "{}", "{}", "{}"),
		DOC("null", "1", "{}", "{}", "{}", "{}"),
		DOC("true", "1", "{}", "{}", "{}", "{}"),
		DOC("{}", "1", "{}", "{}", "{}", "{}"),
		/* updated_ms */
		"{\"version\":1,\"desired\":{},\"reported\":{},\"metadata\":{\"desired\":{},\"reported\":{}}}",
		DOC("1", "-5", "{}", "{}", "{}", "{}"),
		DOC("1", "0.5", "{}", "{}", "{}", "{}"),
		DOC("1", "\"now\"", "{}", "{}", "{}", "{}"),
		/* sides */
		"{\"version\":1,\"updated_ms\":1,\"reported\":{},\"metadata\":{\"desired\":{},\"reported\":{}}}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"metadata\":{\"desired\":{},\"reported\":{}}}",
		DOC("1", "1", "[]", "{}", "{}", "{}"),
		DOC("1", "1", "null", "{}", "{}", "{}"),
		DOC("1", "1", "{}", "\"x\"", "{}", "{}"),
		DOC("1", "1", "{}", "5", "{}", "{}"),
		/* metadata container */
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{}}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},\"metadata\":[]}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},\"metadata\":null}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},\"metadata\":{\"desired\":{}}}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{},\"delta\":{}}}",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"desired\":{}}}",
		DOC("1", "1", "{}", "{}", "{}", "5"),
		DOC("1", "1", "{}", "{}", "[]", "{}"),
		/* unknown or repeated top-level keys */
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}},\"extra\":1}",
		"{\"version\":1,\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}}}",
		"{\"Version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}}}",
		/* metadata does not mirror the values */
		DOC("1", "1", "{\"a\":1,\"b\":2}", "{}", "{\"a\":1}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":1,\"z\":1}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"A\":1}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{}", "{\"a\":1}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":\"100\"}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":-1}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":1.5}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":null}", "{}"),
		DOC("1", "1", "{\"a\":1}", "{}", "{\"a\":{\"t\":1}}", "{}"),
		DOC("1", "1", "{\"a\":[1]}", "{}", "{\"a\":[1]}", "{}"),
		DOC("1", "1", "{\"o\":{\"x\":1}}", "{}", "{\"o\":1}", "{}"),
		DOC("1", "1", "{\"o\":{\"x\":1}}", "{}", "{\"o\":{}}", "{}"),
		DOC("1", "1", "{\"o\":{}}", "{}", "{\"o\":{\"x\":1}}", "{}"),
		DOC("1", "1", "{}", "{\"o\":{\"p\":{\"q\":1}}}", "{}", "{\"o\":{\"p\":{\"r\":1}}}"),
		/* value trees that cannot come from accepted updates */
		DOC("1", "1", "{\"a\":null}", "{}", "{\"a\":1}", "{}"),
		DOC("1", "1", "{\"o\":{\"x\":null}}", "{}", "{\"o\":{\"x\":1}}", "{}"),
		DOC("1", "1", "{\"a\":1,\"a\":2}", "{}", "{\"a\":1,\"b\":2}", "{}"),
		DOC("1", "1", "{\"a\":1e999}", "{}", "{\"a\":1}", "{}"),
		DOC("1", "1", "{\"a\":[1,-1e999]}", "{}", "{\"a\":1}", "{}"),
		/* syntax */
		DOC("1", "1", "{\"a\":1,}", "{}", "{\"a\":1}", "{}"),
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}}} x",
		"{\"version\":1,\"updated_ms\":1,\"desired\":{},\"reported\":{},"
			"\"metadata\":{\"desired\":{},\"reported\":{}}",
	};
#undef DOC
	struct fleetmq_shadow s;
	char *before;
	size_t i;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"keep\":{\"me\":[1]}}", 10), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"keep\":true}", 20), FLEETMQ_OK);
	before = snapshot(&s);
	/* positive control: the template is valid */
	{
		struct fleetmq_shadow t;
		shadow_new(&t);
		CU_ASSERT_EQUAL(load_str(&t, "{\"version\":1,\"updated_ms\":1,\"desired\":{\"a\":1},"
				"\"reported\":{},\"metadata\":{\"desired\":{\"a\":1},\"reported\":{}}}"), FLEETMQ_OK);
		fleetmq_shadow_clear(&t);
	}
	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		int rc = load_str(&s, bad[i]);

		if(rc != FLEETMQ_ERR_MALFORMED) fprintf(stderr, "\n  accepted (%d): %s\n", rc, bad[i]);
		CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_MALFORMED);
	}
	ASSERT_UNCHANGED(&s, before);
	CU_ASSERT_EQUAL(s.version, 2);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

/* ---- out of memory ----------------------------------------------------------------------- */

static void test_shadow_apply_nomem_unchanged(void)
{
	struct fleetmq_shadow s;
	cJSON *p = parse("{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"e\"}],\"n\":null},\"x\":7},"
			"\"k\":null,\"s\":\"str\",\"new\":{\"deep\":{\"er\":1}}}");
	char *before;
	long n;
	int rc = -1;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":{\"b\":{\"n\":1,\"m\":2},\"y\":1},\"k\":1,\"s\":5}", 100),
			FLEETMQ_OK);
	before = snapshot(&s);
	for(n = 0; n < OOM_MAX_STEPS; n++){
		budget_set(n);
		rc = fleetmq_shadow_apply(&s, D, p, 0, 200, &DEFAULT_LIMITS, NULL, 0);
		budget_off();
		if(rc == FLEETMQ_OK) break;
		CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_NOMEM);
		ASSERT_UNCHANGED(&s, before);
	}
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	CU_ASSERT(n > 5);
	ASSERT_JSON(s.desired, "{\"a\":{\"b\":{\"c\":[1,2,{\"d\":\"e\"}],\"m\":2},\"x\":7,\"y\":1},"
			"\"s\":\"str\",\"new\":{\"deep\":{\"er\":1}}}");
	ASSERT_JSON(s.meta_desired, "{\"a\":{\"b\":{\"c\":200,\"m\":100},\"x\":200,\"y\":100},"
			"\"s\":200,\"new\":{\"deep\":{\"er\":200}}}");
	fm_free(before);
	cJSON_Delete(p);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_views_nomem(void)
{
	struct fleetmq_shadow s;
	cJSON *p = parse("{\"o\":{\"y\":3},\"l\":[1]}");
	char *want_state, *want_meta, *want_ser, *txt;
	cJSON *want_delta, *want_dmeta, *want_pmeta, *j;
	long n;
	int kind;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, D, "{\"a\":1,\"o\":{\"x\":1,\"y\":2,\"z\":{\"w\":1}}}", 100), FLEETMQ_OK);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"a\":1,\"o\":{\"x\":1}}", 150), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_shadow_apply(&s, D, p, 0, 200, &DEFAULT_LIMITS, NULL, 0), FLEETMQ_OK);
	want_state = fleetmq_shadow_state_json(&s, 1);
	want_meta = fleetmq_shadow_metadata_json(&s);
	want_ser = fleetmq_shadow_serialize(&s);
	want_delta = fleetmq_shadow_delta(&s);
	want_dmeta = fleetmq_shadow_delta_metadata(&s, want_delta);
	want_pmeta = fleetmq_shadow_patch_metadata(&s, D, p);
	CU_ASSERT_FATAL(want_state && want_meta && want_ser && want_delta && want_dmeta && want_pmeta);

	for(kind = 0; kind < 6; kind++){
		for(n = 0; n < OOM_MAX_STEPS; n++){
			txt = NULL;
			j = NULL;
			budget_set(n);
			switch(kind){
				case 0: txt = fleetmq_shadow_state_json(&s, 1); break;
				case 1: txt = fleetmq_shadow_metadata_json(&s); break;
				case 2: txt = fleetmq_shadow_serialize(&s); break;
				case 3: j = fleetmq_shadow_delta(&s); break;
				case 4: j = fleetmq_shadow_delta_metadata(&s, want_delta); break;
				default: j = fleetmq_shadow_patch_metadata(&s, D, p); break;
			}
			budget_off();
			if(txt != NULL || j != NULL) break;
		}
		CU_ASSERT(n > 0 && n < OOM_MAX_STEPS);
		switch(kind){
			case 0: CU_ASSERT(txt && strcmp(txt, want_state) == 0); break;
			case 1: CU_ASSERT(txt && strcmp(txt, want_meta) == 0); break;
			case 2: CU_ASSERT(txt && strcmp(txt, want_ser) == 0); break;
			case 3: CU_ASSERT(cJSON_Compare(j, want_delta, 1)); break;
			case 4: CU_ASSERT(cJSON_Compare(j, want_dmeta, 1)); break;
			default: CU_ASSERT(cJSON_Compare(j, want_pmeta, 1)); break;
		}
		fm_free(txt);
		cJSON_Delete(j);
	}
	fm_free(want_state);
	fm_free(want_meta);
	fm_free(want_ser);
	cJSON_Delete(want_delta);
	cJSON_Delete(want_dmeta);
	cJSON_Delete(want_pmeta);
	cJSON_Delete(p);
	fleetmq_shadow_clear(&s);
}

static void test_shadow_load_nomem_unchanged(void)
{
	struct fleetmq_shadow s;
	char *before;
	long n;
	int rc = -1;

	shadow_new(&s);
	CU_ASSERT_EQUAL(apply(&s, R, "{\"keep\":1}", 10), FLEETMQ_OK);
	before = snapshot(&s);
	for(n = 0; n < OOM_MAX_STEPS; n++){
		budget_set(n);
		rc = load_str(&s, VALID_DOC);
		budget_off();
		if(rc == FLEETMQ_OK) break;
		/* cJSON cannot tell out-of-memory from bad syntax */
		CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_MALFORMED);
		ASSERT_UNCHANGED(&s, before);
	}
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	CU_ASSERT(n > 0);
	ASSERT_TEXT(fleetmq_shadow_serialize(&s), VALID_DOC);
	fm_free(before);
	fleetmq_shadow_clear(&s);
}

/* ---- runner ------------------------------------------------------------------------------- */

#define TEST(fn) { #fn, fn }

int main(void)
{
	static const struct { const char *name; CU_TestFunc fn; } tests[] = {
		TEST(test_shadow_init_empty),
		TEST(test_shadow_init_null),
		TEST(test_shadow_init_nomem),
		TEST(test_shadow_clear_resets_and_reinit),
		TEST(test_json_depth_values),
		TEST(test_shadow_apply_reported_merge),
		TEST(test_shadow_apply_desired_merge_nested),
		TEST(test_shadow_apply_sides_independent),
		TEST(test_shadow_apply_replace_keeps_key_order),
		TEST(test_shadow_apply_case_sensitive_keys),
		TEST(test_shadow_apply_repeated_keys_in_patch),
		TEST(test_shadow_apply_patch_not_modified),
		TEST(test_shadow_apply_null_deletes_key),
		TEST(test_shadow_apply_null_missing_key_ok),
		TEST(test_shadow_apply_null_nested_removes_emptied_parents),
		TEST(test_shadow_apply_null_nested_keeps_nonempty_parent),
		TEST(test_shadow_apply_nulls_in_new_object_not_stored),
		TEST(test_shadow_apply_empty_object_value),
		TEST(test_shadow_apply_object_replaces_scalar),
		TEST(test_shadow_apply_scalar_replaces_object),
		TEST(test_shadow_apply_array_replaces),
		TEST(test_shadow_apply_version_increments),
		TEST(test_shadow_apply_expected_version_match),
		TEST(test_shadow_apply_expected_version_conflict_unchanged),
		TEST(test_shadow_apply_wrong_type),
		TEST(test_shadow_apply_unstorable_values_rejected),
		TEST(test_shadow_apply_empty_patch),
		TEST(test_shadow_apply_invalid_arguments),
		TEST(test_shadow_apply_reason_buffer),
		TEST(test_shadow_apply_patch_depth_at_max_accepted),
		TEST(test_shadow_apply_patch_depth_over_max_rejected),
		TEST(test_shadow_apply_default_depth_limit),
		TEST(test_shadow_apply_depth_long_path_cut),
		TEST(test_shadow_apply_result_depth_at_max_accepted),
		TEST(test_shadow_apply_result_depth_over_max_rejected),
		TEST(test_shadow_apply_size_at_limit_accepted),
		TEST(test_shadow_apply_size_over_limit_rejected),
		TEST(test_shadow_apply_size_counts_both_sides),
		TEST(test_shadow_apply_size_shrinking_update_accepted),
		TEST(test_shadow_apply_metadata_touched_keys_only),
		TEST(test_shadow_patch_metadata_touched_keys),
		TEST(test_shadow_patch_metadata_emptied_and_repeated),
		TEST(test_shadow_delta_empty),
		TEST(test_shadow_delta_missing_and_different),
		TEST(test_shadow_delta_nested),
		TEST(test_shadow_delta_array),
		TEST(test_shadow_delta_metadata),
		TEST(test_shadow_state_json_with_delta),
		TEST(test_shadow_serialize_format),
		TEST(test_shadow_load_round_trip),
		TEST(test_shadow_load_replaces_content),
		TEST(test_shadow_load_length_and_whitespace),
		TEST(test_shadow_load_large_integers),
		TEST(test_shadow_version_limit),
		TEST(test_shadow_load_rejects_malformed),
		TEST(test_shadow_apply_nomem_unchanged),
		TEST(test_shadow_views_nomem),
		TEST(test_shadow_load_nomem_unchanged),
	};
	CU_pSuite suite;
	unsigned failed;
	size_t i;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	suite = CU_add_suite("shadow", NULL, NULL);
	if(suite == NULL){
		CU_cleanup_registry();
		return 2;
	}
	for(i = 0; i < sizeof(tests) / sizeof(tests[0]); i++){
		if(CU_add_test(suite, tests[i].name, tests[i].fn) == NULL){
			CU_cleanup_registry();
			return 2;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_tests_failed() + CU_get_number_of_failures();
	CU_cleanup_registry();
	return failed ? 1 : 0;
}
