/*
 * test_config.c - CUnit suite for common/config.c (table-driven YAML config).
 *
 * A sample table covers the five option types, keys nested two levels deep
 * (store.wal.max_bytes), a required key, INT ranges and ENUM choices. Its
 * rows are deliberately out of section order (store.wal.* after shadow.*)
 * so printing must regroup them. A counting allocator checks that every
 * error path leaves no allocation behind, also without ASan.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "fleetmq_alloc.h"
#include "fleetmq_config.h"
#include "fleetmq_status.h"

/* ================================================================
 * Sample table
 * ================================================================ */
struct sample {
	char *name;
	char *store_path;
	int store_sync;
	bool store_group_commit;
	long long shadow_max_depth;
	long long wal_max_bytes;
	bool wal_enabled;
	struct fleetmq_strlist operators;
	struct fleetmq_strlist topics;
	char *banner;
	long long log_offset_ms;
};

#define OFF(field) offsetof(struct sample, field)

static const char *const sync_choices[] = { "full", "normal", NULL };

static const struct fleetmq_cfg_option sample_table[] = {
	{ "name", FM_CFG_STRING, "fleet", 0, 0, NULL, OFF(name), 0, NULL,
		"Name of this fleet; appears in logs." },
	{ "store.path", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(store_path), FM_CFG_REQUIRED, NULL,
		"SQLite database file." },
	{ "store.synchronous", FM_CFG_ENUM, "full", 0, 0, sync_choices, OFF(store_sync), 0, NULL,
		"Durability level of acknowledged writes." },
	{ "store.group_commit", FM_CFG_BOOL, "true", 0, 0, NULL, OFF(store_group_commit), 0, NULL,
		"Commit one loop pass in one transaction." },
	{ "shadow.max_depth", FM_CFG_INT, "8", 1, 64, NULL, OFF(shadow_max_depth), 0, "levels",
		"Deepest nesting of a shadow document; this help text is deliberately long enough that "
		"the printer has to wrap it over more than one comment line." },
	{ "store.wal.max_bytes", FM_CFG_INT, "4096", 1024, 1048576, NULL, OFF(wal_max_bytes), 0, "bytes",
		"Largest write-ahead log | before a <checkpoint>." },
	{ "store.wal.enabled", FM_CFG_BOOL, "no", 0, 0, NULL, OFF(wal_enabled), 0, NULL,
		"Use a write-ahead log." },
	{ "security.operators", FM_CFG_STRLIST, NULL, 0, 0, NULL, OFF(operators), 0, NULL,
		"Usernames with the operator role." },
	{ "security.topics", FM_CFG_STRLIST, "telemetry, shadow", 0, 0, NULL, OFF(topics), 0, NULL,
		"Topic kinds devices may use." },
	{ "log.banner", FM_CFG_STRING, NULL, 0, 0, NULL, OFF(banner), 0, NULL,
		"Optional line logged at start." },
	{ "log.offset_ms", FM_CFG_INT, "-5", -100, 100, NULL, OFF(log_offset_ms), 0, "ms",
		"Clock offset added to log timestamps." },
};
#define SAMPLE_N (sizeof(sample_table) / sizeof(sample_table[0]))

/* ================================================================
 * Counting allocator: live allocations, optional failure injection
 * ================================================================ */
static long live_allocs;
static long allocs_until_failure = -1;  /* -1: never fail */

static bool should_fail(void)
{
	if(allocs_until_failure < 0) return false;
	if(allocs_until_failure == 0) return true;
	allocs_until_failure--;
	return false;
}

static void *count_malloc(size_t size)
{
	void *p = should_fail() ? NULL : malloc(size);
	if(p) live_allocs++;
	return p;
}

static void *count_calloc(size_t nmemb, size_t size)
{
	void *p = should_fail() ? NULL : calloc(nmemb, size);
	if(p) live_allocs++;
	return p;
}

static void *count_realloc(void *ptr, size_t size)
{
	void *p = should_fail() ? NULL : realloc(ptr, size);
	if(p && !ptr) live_allocs++;
	return p;
}

static void count_free(void *ptr)
{
	if(ptr) live_allocs--;
	free(ptr);
}

static const struct fleetmq_allocator counting = { count_malloc, count_calloc, count_realloc, count_free };

/* ================================================================
 * Helpers
 * ================================================================ */
static char err[512];

static int load(struct sample *s, const char *yaml)
{
	memset(s, 0, sizeof(*s));
	return fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, s, yaml, strlen(yaml), "t.yaml",
			err, sizeof(err));
}

/* Load yaml, expect FLEETMQ_ERR_CONFIG with exactly `expected` in err. */
static void expect_error(const char *yaml, const char *expected)
{
	struct sample s;
	int rc = load(&s, yaml);

	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_CONFIG);
	CU_ASSERT_STRING_EQUAL(err, expected);
	if(strcmp(err, expected)){
		fprintf(stderr, "\n  yaml: %s\n  want: %s\n  got:  %s\n", yaml, expected, err);
	}
	CU_ASSERT_PTR_NULL(s.name);
	CU_ASSERT_PTR_NULL(s.store_path);
	CU_ASSERT_PTR_NULL(s.topics.items);
	CU_ASSERT_EQUAL(s.topics.count, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
}

/* Write content to a fresh temp file; path receives its name. */
static bool write_temp(const char *content, char *path, size_t pathlen)
{
	int fd;
	size_t len = strlen(content);

	snprintf(path, pathlen, "/tmp/fleetmq_test_config_XXXXXX");
	fd = mkstemp(path);
	if(fd < 0) return false;
	if(write(fd, content, len) != (ssize_t)len){
		close(fd);
		unlink(path);
		return false;
	}
	return close(fd) == 0;
}

static char *print_to_string(const struct sample *s)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&buf, &len);

	if(!fp) return NULL;
	fleetmq_cfg_print(sample_table, SAMPLE_N, s, fp);
	fclose(fp);
	return buf;
}

static size_t count_occurrences(const char *hay, const char *needle)
{
	size_t n = 0;
	const char *p = hay;

	while((p = strstr(p, needle)) != NULL){
		n++;
		p += strlen(needle);
	}
	return n;
}

static bool strlist_equal(const struct fleetmq_strlist *a, const struct fleetmq_strlist *b)
{
	size_t i;

	if(a->count != b->count) return false;
	for(i = 0; i < a->count; i++){
		if(strcmp(a->items[i], b->items[i])) return false;
	}
	return true;
}

static bool str_equal(const char *a, const char *b)
{
	if(!a || !b) return a == b;
	return !strcmp(a, b);
}

static const char *valid_yaml =
	"# a complete configuration\n"
	"name: \"north fleet\"\n"
	"store:\n"
	"  path: /var/lib/fleetmq/fleet.db\n"
	"  synchronous: normal\n"
	"  group_commit: off\n"
	"  wal:\n"
	"    max_bytes: 65536\n"
	"    enabled: Yes\n"
	"shadow: {max_depth: 64}\n"
	"security:\n"
	"  operators:\n"
	"    - alice\n"
	"    - \"bob smith\"\n"
	"  topics: [telemetry]\n"
	"log.banner: 'hello: world'\n"
	"log.offset_ms: -100\n";

static void check_valid_yaml_values(const struct sample *s)
{
	CU_ASSERT_STRING_EQUAL(s->name, "north fleet");
	CU_ASSERT_STRING_EQUAL(s->store_path, "/var/lib/fleetmq/fleet.db");
	CU_ASSERT_EQUAL(s->store_sync, 1);
	CU_ASSERT_FALSE(s->store_group_commit);
	CU_ASSERT_EQUAL(s->wal_max_bytes, 65536);
	CU_ASSERT_TRUE(s->wal_enabled);
	CU_ASSERT_EQUAL(s->shadow_max_depth, 64);
	CU_ASSERT_EQUAL(s->operators.count, 2);
	CU_ASSERT_TRUE(fleetmq_strlist_contains(&s->operators, "alice"));
	CU_ASSERT_TRUE(fleetmq_strlist_contains(&s->operators, "bob smith"));
	CU_ASSERT_EQUAL(s->topics.count, 1);
	CU_ASSERT_TRUE(fleetmq_strlist_contains(&s->topics, "telemetry"));
	CU_ASSERT_FALSE(fleetmq_strlist_contains(&s->topics, "shadow"));
	CU_ASSERT_STRING_EQUAL(s->banner, "hello: world");
	CU_ASSERT_EQUAL(s->log_offset_ms, -100);
}

/* ================================================================
 * fleetmq_cfg_defaults
 * ================================================================ */
static void test_fleetmq_cfg_defaults_applies_every_default(void)
{
	struct sample s;

	memset(&s, 0xa5, sizeof(s));   /* pointer fields must be overwritten, not freed */
	CU_ASSERT_EQUAL_FATAL(fleetmq_cfg_defaults(sample_table, SAMPLE_N, &s), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(s.name, "fleet");
	CU_ASSERT_PTR_NULL(s.store_path);
	CU_ASSERT_EQUAL(s.store_sync, 0);
	CU_ASSERT_TRUE(s.store_group_commit);
	CU_ASSERT_EQUAL(s.shadow_max_depth, 8);
	CU_ASSERT_EQUAL(s.wal_max_bytes, 4096);
	CU_ASSERT_FALSE(s.wal_enabled);
	CU_ASSERT_EQUAL(s.operators.count, 0);
	CU_ASSERT_PTR_NULL(s.operators.items);
	CU_ASSERT_EQUAL_FATAL(s.topics.count, 2);
	CU_ASSERT_STRING_EQUAL(s.topics.items[0], "telemetry");
	CU_ASSERT_STRING_EQUAL(s.topics.items[1], "shadow");
	CU_ASSERT_PTR_NULL(s.banner);
	CU_ASSERT_EQUAL(s.log_offset_ms, -5);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	CU_ASSERT_PTR_NULL(s.name);
	CU_ASSERT_EQUAL(s.topics.count, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);   /* twice is harmless */
	CU_ASSERT_PTR_NULL(s.topics.items);
}

struct one {
	long long i;
	char *s;
	struct fleetmq_strlist l;
	int e;
	bool b;
};

static void expect_bad_table(const struct fleetmq_cfg_option *t, size_t n, const char *expected)
{
	struct one o;
	int rc;

	memset(&o, 0, sizeof(o));
	CU_ASSERT_EQUAL(fleetmq_cfg_defaults(t, n, &o), FLEETMQ_ERR_CONFIG);
	CU_ASSERT_PTR_NULL(o.s);
	CU_ASSERT_PTR_NULL(o.l.items);
	rc = fleetmq_cfg_load_buffer(t, n, &o, "", 0, "t.yaml", err, sizeof(err));
	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_CONFIG);
	CU_ASSERT_STRING_EQUAL(err, expected);
	if(strcmp(err, expected)) fprintf(stderr, "\n  want: %s\n  got:  %s\n", expected, err);
	CU_ASSERT_PTR_NULL(o.s);
	CU_ASSERT_PTR_NULL(o.l.items);
}

static void test_fleetmq_cfg_defaults_bad_default_rejected(void)
{
	static const char *const ab[] = { "a", "b", NULL };
	/* a good string and list first, so a failure must free them again */
	const struct fleetmq_cfg_option bad_int[] = {
		{ "s", FM_CFG_STRING, "x", 0, 0, NULL, offsetof(struct one, s), 0, NULL, "" },
		{ "l", FM_CFG_STRLIST, "p,q", 0, 0, NULL, offsetof(struct one, l), 0, NULL, "" },
		{ "x.i", FM_CFG_INT, "12abc", 0, 100, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option out_of_range[] = {
		{ "s", FM_CFG_STRING, "x", 0, 0, NULL, offsetof(struct one, s), 0, NULL, "" },
		{ "i", FM_CFG_INT, "0", 1, 64, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option bad_bool[] = {
		{ "b", FM_CFG_BOOL, "maybe", 0, 0, NULL, offsetof(struct one, b), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option bad_enum[] = {
		{ "e", FM_CFG_ENUM, "c", 0, 0, ab, offsetof(struct one, e), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option bad_list[] = {
		{ "s", FM_CFG_STRING, "x", 0, 0, NULL, offsetof(struct one, s), 0, NULL, "" },
		{ "l", FM_CFG_STRLIST, "a,,b", 0, 0, NULL, offsetof(struct one, l), 0, NULL, "" },
	};

	expect_bad_table(bad_int, 3, "config table default: x.i: expected an integer, got '12abc'");
	expect_bad_table(out_of_range, 2, "config table default: i: value 0 out of range 1..64");
	expect_bad_table(bad_bool, 1, "config table default: b: expected true or false, got 'maybe'");
	expect_bad_table(bad_enum, 1, "config table default: e: 'c' is not one of a, b");
	expect_bad_table(bad_list, 2, "config table default: l: empty item in list default 'a,,b'");
}

static void test_fleetmq_cfg_defaults_bad_table_rejected(void)
{
	const struct fleetmq_cfg_option dup[] = {
		{ "a.i", FM_CFG_INT, "1", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
		{ "a.i", FM_CFG_INT, "1", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option leaf_and_section[] = {
		{ "a", FM_CFG_STRING, "x", 0, 0, NULL, offsetof(struct one, s), 0, NULL, "" },
		{ "a.i", FM_CFG_INT, "1", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option no_choices[] = {
		{ "e", FM_CFG_ENUM, "a", 0, 0, NULL, offsetof(struct one, e), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option min_gt_max[] = {
		{ "i", FM_CFG_INT, "1", 5, 4, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option no_default[] = {
		{ "i", FM_CFG_INT, NULL, 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option bad_key[] = {
		{ "a..i", FM_CFG_INT, "1", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
	};
	const struct fleetmq_cfg_option bad_char[] = {
		{ "a i", FM_CFG_INT, "1", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
	};

	expect_bad_table(dup, 2, "config table default: a.i: key defined twice in the table");
	expect_bad_table(leaf_and_section, 2, "config table default: a.i: key is also a section of 'a'");
	expect_bad_table(no_choices, 1, "config table default: e: enum without choices");
	expect_bad_table(min_gt_max, 1, "config table default: i: min 5 > max 4");
	expect_bad_table(no_default, 1, "config table default: i: optional key without a default");
	expect_bad_table(bad_key, 1,
			"config table default: a..i: key must be segments of [A-Za-z0-9_-] joined by '.'");
	expect_bad_table(bad_char, 1,
			"config table default: a i: key must be segments of [A-Za-z0-9_-] joined by '.'");
}

static void test_fleetmq_cfg_defaults_null_arguments(void)
{
	struct sample s;

	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(fleetmq_cfg_defaults(NULL, 1, &s), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_cfg_defaults(sample_table, SAMPLE_N, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, &s, NULL, 3, "t", err, sizeof(err)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, NULL, err, sizeof(err)),
			FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_PTR_NULL(s.name);
}

/* ================================================================
 * fleetmq_cfg_load_file / fleetmq_cfg_load_buffer: valid input
 * ================================================================ */
static void test_fleetmq_cfg_load_file_full_valid(void)
{
	struct sample s;
	char path[64];
	int rc;

	CU_ASSERT_TRUE_FATAL(write_temp(valid_yaml, path, sizeof(path)));
	memset(&s, 0, sizeof(s));
	strcpy(err, "stale");
	rc = fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, path, err, sizeof(err));
	unlink(path);
	CU_ASSERT_EQUAL_FATAL(rc, FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(err, "");
	check_valid_yaml_values(&s);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
}

static void test_fleetmq_cfg_load_file_error_names_file(void)
{
	struct sample s;
	char path[64], expected[128];
	int rc;

	CU_ASSERT_TRUE_FATAL(write_temp("store:\n  path: /x\n  sync: full\n", path, sizeof(path)));
	memset(&s, 0, sizeof(s));
	rc = fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, path, err, sizeof(err));
	unlink(path);
	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_CONFIG);
	snprintf(expected, sizeof(expected), "%s:3: store.sync: unknown key", path);
	CU_ASSERT_STRING_EQUAL(err, expected);
	CU_ASSERT_PTR_NULL(s.store_path);
}

static void test_fleetmq_cfg_load_file_missing(void)
{
	struct sample s;
	int rc;

	memset(&s, 0, sizeof(s));
	rc = fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, "/nonexistent/fleetmq.yaml", err, sizeof(err));
	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_IO);
	CU_ASSERT_STRING_EQUAL(err, "/nonexistent/fleetmq.yaml: cannot open: No such file or directory");
	CU_ASSERT_PTR_NULL(s.name);
	rc = fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, "/tmp", err, sizeof(err));
	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/tmp: "));
}

static void test_fleetmq_cfg_load_buffer_empty_means_defaults(void)
{
	static const char *const empties[] = { "", "# only a comment\n", "---\n", "~\n", "---\n...\n" };
	const struct fleetmq_cfg_option optional_only[] = {
		{ "a.b.i", FM_CFG_INT, "7", 0, 9, NULL, offsetof(struct one, i), 0, NULL, "" },
		{ "l", FM_CFG_STRLIST, "x", 0, 0, NULL, offsetof(struct one, l), 0, NULL, "" },
	};
	struct one o;
	size_t i;
	int rc;

	for(i = 0; i < sizeof(empties) / sizeof(empties[0]); i++){
		memset(&o, 0, sizeof(o));
		rc = fleetmq_cfg_load_buffer(optional_only, 2, &o, empties[i], strlen(empties[i]), "e.yaml",
				err, sizeof(err));
		CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
		CU_ASSERT_EQUAL(o.i, 7);
		CU_ASSERT_TRUE(fleetmq_strlist_contains(&o.l, "x"));
		fleetmq_cfg_free(optional_only, 2, &o);
	}
	memset(&o, 0, sizeof(o));
	CU_ASSERT_EQUAL(fleetmq_cfg_load_buffer(optional_only, 2, &o, NULL, 0, NULL, err, sizeof(err)),
			FLEETMQ_OK);
	fleetmq_cfg_free(optional_only, 2, &o);
	/* an empty section is fine too */
	memset(&o, 0, sizeof(o));
	rc = fleetmq_cfg_load_buffer(optional_only, 2, &o, "a:\n", 3, "e.yaml", err, sizeof(err));
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	fleetmq_cfg_free(optional_only, 2, &o);
	/* but required keys are still required */
	expect_error("", "t.yaml: store.path: required key missing");
	expect_error("# nothing\n", "t.yaml: store.path: required key missing");
}

static void test_fleetmq_cfg_load_buffer_flat_and_nested_keys(void)
{
	struct sample s;

	CU_ASSERT_EQUAL_FATAL(load(&s, "store.path: /a\nstore:\n  wal.max_bytes: 2048\n"
			"store.wal:\n  enabled: on\n"), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(s.store_path, "/a");
	CU_ASSERT_EQUAL(s.wal_max_bytes, 2048);
	CU_ASSERT_TRUE(s.wal_enabled);
	CU_ASSERT_STRING_EQUAL(s.name, "fleet");   /* untouched keys keep defaults */
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
}

static void test_fleetmq_cfg_load_buffer_scalar_conversions(void)
{
	static const char *const yes[] = { "true", "TRUE", "yes", "Yes", "on", "ON" };
	static const char *const no[] = { "false", "False", "no", "NO", "off", "Off" };
	struct sample s;
	char yaml[128];
	size_t i;

	for(i = 0; i < sizeof(yes) / sizeof(yes[0]); i++){
		snprintf(yaml, sizeof(yaml), "store: {path: /a, group_commit: %s}\nstore.wal.enabled: %s\n",
				no[i], yes[i]);
		CU_ASSERT_EQUAL(load(&s, yaml), FLEETMQ_OK);
		CU_ASSERT_FALSE(s.store_group_commit);
		CU_ASSERT_TRUE(s.wal_enabled);
		fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	}
	CU_ASSERT_EQUAL(load(&s, "store: {path: /a}\nshadow: {max_depth: +1}\nlog: {offset_ms: \"-0\"}\n"),
			FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.shadow_max_depth, 1);
	CU_ASSERT_EQUAL(s.log_offset_ms, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	/* plain null for a STRING is "no value", quoted "" is an empty string */
	CU_ASSERT_EQUAL(load(&s, "store: {path: /a}\nname: ~\nlog: {banner: \"\"}\n"), FLEETMQ_OK);
	CU_ASSERT_PTR_NULL(s.name);
	CU_ASSERT_STRING_EQUAL(s.banner, "");
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	/* aliases resolve to their anchor's value */
	CU_ASSERT_EQUAL(load(&s, "store: {path: &p /same}\nname: *p\n"), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(s.name, "/same");
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
}

static void test_fleetmq_cfg_load_buffer_list_parse(void)
{
	struct sample s;

	CU_ASSERT_EQUAL_FATAL(load(&s, "store: {path: /a}\nsecurity:\n  operators:\n  - root\n  - 'o''neil'\n"
			"  topics: [\"x y\", z, '#']\n"), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.operators.count, 2);
	CU_ASSERT_STRING_EQUAL(s.operators.items[0], "root");
	CU_ASSERT_STRING_EQUAL(s.operators.items[1], "o'neil");
	CU_ASSERT_EQUAL_FATAL(s.topics.count, 3);   /* replaces the default, not appended */
	CU_ASSERT_STRING_EQUAL(s.topics.items[0], "x y");
	CU_ASSERT_STRING_EQUAL(s.topics.items[1], "z");
	CU_ASSERT_STRING_EQUAL(s.topics.items[2], "#");
	CU_ASSERT_FALSE(fleetmq_strlist_contains(&s.topics, "telemetry"));
	CU_ASSERT_FALSE(fleetmq_strlist_contains(NULL, "z"));
	CU_ASSERT_FALSE(fleetmq_strlist_contains(&s.topics, NULL));
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);

	CU_ASSERT_EQUAL(load(&s, "store: {path: /a}\nsecurity: {topics: []}\n"), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.topics.count, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	CU_ASSERT_EQUAL(load(&s, "store: {path: /a}\nsecurity:\n  topics:\n"), FLEETMQ_OK);
	CU_ASSERT_EQUAL(s.topics.count, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);

	expect_error("store: {path: /a}\nsecurity:\n  topics: [a, ~]\n",
			"t.yaml:3: security.topics: item 2: empty list item");
	expect_error("store: {path: /a}\nsecurity:\n  topics:\n    - a\n    - [b]\n",
			"t.yaml:5: security.topics: item 2: expected a scalar, got a sequence");
}

/* ================================================================
 * fleetmq_cfg_load_buffer: every error class
 * ================================================================ */
static void test_fleetmq_cfg_load_buffer_int_out_of_range(void)
{
	expect_error("store:\n  path: /x\nshadow:\n  max_depth: 0\n",
			"t.yaml:4: shadow.max_depth: value 0 out of range 1..64");
	expect_error("store:\n  path: /x\nshadow:\n  max_depth: 65\n",
			"t.yaml:4: shadow.max_depth: value 65 out of range 1..64");
	expect_error("store:\n  path: /x\n  wal:\n    max_bytes: 1023\n",
			"t.yaml:4: store.wal.max_bytes: value 1023 out of range 1024..1048576");
	expect_error("store.path: /x\nshadow.max_depth: 99999999999999999999\n",
			"t.yaml:2: shadow.max_depth: value 99999999999999999999 out of range 1..64");
	expect_error("store.path: /x\nlog.offset_ms: -99999999999999999999\n",
			"t.yaml:2: log.offset_ms: value -99999999999999999999 out of range -100..100");
}

static void test_fleetmq_cfg_load_buffer_int_not_integer(void)
{
	static const char *const bad[] = { "12abc", "8k", "1.5", "0x10", "\" 5\"", "\"5 \"", "--1", "+", "", "1_000", "true" };
	static const char *const shown[] = { "12abc", "8k", "1.5", "0x10", " 5", "5 ", "--1", "+", "", "1_000", "true" };
	char yaml[128], expected[128];
	size_t i;

	for(i = 0; i < sizeof(bad) / sizeof(bad[0]); i++){
		snprintf(yaml, sizeof(yaml), "store.path: /x\n\nshadow:\n  max_depth: %s\n", bad[i]);
		snprintf(expected, sizeof(expected), "t.yaml:4: shadow.max_depth: expected an integer, got '%s'",
				shown[i]);
		/* an empty value sits on the key's line */
		if(!bad[i][0]) snprintf(expected, sizeof(expected),
				"t.yaml:%d: shadow.max_depth: expected an integer, got ''", 4);
		expect_error(yaml, expected);
	}
}

static void test_fleetmq_cfg_load_buffer_bool_invalid(void)
{
	expect_error("store:\n  group_commit: maybe\n  path: /x\n",
			"t.yaml:2: store.group_commit: expected true or false, got 'maybe'");
	expect_error("store:\n  path: /x\n  wal:\n    enabled: 1\n",
			"t.yaml:4: store.wal.enabled: expected true or false, got '1'");
}

static void test_fleetmq_cfg_load_buffer_enum_invalid(void)
{
	expect_error("store:\n  path: /x\n\n  synchronous: fast\n",
			"t.yaml:4: store.synchronous: 'fast' is not one of full, normal");
	expect_error("store:\n  path: /x\n  synchronous: Full\n",
			"t.yaml:3: store.synchronous: 'Full' is not one of full, normal");
}

static void test_fleetmq_cfg_load_buffer_unknown_key(void)
{
	expect_error("store:\n  path: /x\n  sync: full\n", "t.yaml:3: store.sync: unknown key");
	expect_error("store.path: /x\nnmae: typo\n", "t.yaml:2: nmae: unknown key");
	expect_error("store:\n  path: /x\n  wal:\n    enabled: true\n    bogus: 1\n",
			"t.yaml:5: store.wal.bogus: unknown key");
	/* a leaf name used as a section */
	expect_error("store.path: /x\nname:\n  first: a\n", "t.yaml:3: name: expected a scalar, got a mapping");
}

static void test_fleetmq_cfg_load_buffer_unknown_nested_section(void)
{
	expect_error("store.path: /x\nstorage:\n  path: /y\n", "t.yaml:2: storage: unknown key");
	expect_error("store:\n  path: /x\n  wal2:\n    enabled: true\n", "t.yaml:3: store.wal2: unknown key");
	expect_error("store:\n  path: /x\n  wal:\n    deeper:\n      x: 1\n",
			"t.yaml:4: store.wal.deeper: unknown key");
	/* a cyclic alias ends at the first unknown section */
	expect_error("store.path: /x\nshadow: &s {again: *s}\n", "t.yaml:2: shadow.again: unknown key");
}

static void test_fleetmq_cfg_load_buffer_duplicate_key(void)
{
	expect_error("store:\n  path: /a\n  path: /b\n",
			"t.yaml:3: store.path: key given twice (first at line 2)");
	expect_error("store.path: /a\nstore:\n  path: /b\n",
			"t.yaml:3: store.path: key given twice (first at line 1)");
	expect_error("store:\n  path: /a\nname: x\nstore:\n  group_commit: true\n",
			"t.yaml:4: store: key given twice (first at line 1)");
	expect_error("store.path: /a\nsecurity: {topics: [a], topics: [b]}\n",
			"t.yaml:2: security.topics: key given twice (first at line 2)");
}

static void test_fleetmq_cfg_load_buffer_wrong_node_kind(void)
{
	expect_error("store:\n  path:\n    x: 1\n", "t.yaml:3: store.path: expected a scalar, got a mapping");
	expect_error("store: {path: [a, b]}\n", "t.yaml:1: store.path: expected a scalar, got a sequence");
	expect_error("store.path: /x\nsecurity:\n  operators: alice\n",
			"t.yaml:3: security.operators: expected a sequence, got a scalar");
	expect_error("store.path: /x\nsecurity:\n  operators: {alice: 1}\n",
			"t.yaml:3: security.operators: expected a sequence, got a mapping");
	expect_error("store.path: /x\nsecurity:\n  operators:\n    - alice\n    - {a: b}\n",
			"t.yaml:5: security.operators: item 2: expected a scalar, got a mapping");
	expect_error("store: 5\n", "t.yaml:1: store: expected a mapping, got a scalar");
	expect_error("store.path: /x\nstore.wal: [1]\n", "t.yaml:2: store.wal: expected a mapping, got a sequence");
	expect_error("store.path: /x\n? [a]\n: 1\n", "t.yaml:2: (top level): expected a scalar key, got a sequence");
	expect_error("store:\n  path: \"a\\0b\"\n", "t.yaml:2: store.path: contains a NUL character");
}

static void test_fleetmq_cfg_load_buffer_root_not_mapping(void)
{
	expect_error("- a\n- b\n", "t.yaml:1: expected a mapping at the top level, got a sequence");
	expect_error("\n\nhello\n", "t.yaml:3: expected a mapping at the top level, got a scalar");
}

static void test_fleetmq_cfg_load_buffer_yaml_syntax_error(void)
{
	struct sample s;

	CU_ASSERT_EQUAL(load(&s, "store:\n  path: /x\n  synchronous: [full\nname: x\n"), FLEETMQ_ERR_CONFIG);
	CU_ASSERT_EQUAL(strncmp(err, "t.yaml:4: YAML syntax error: ", 29), 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "flow sequence"));
	CU_ASSERT_PTR_NULL(s.name);

	expect_error("store.path: /x\nname: a: b\n",
			"t.yaml:2: YAML syntax error: mapping values are not allowed in this context");
	expect_error("store.path: /x\nname: *nowhere\n",
			"t.yaml:2: YAML syntax error: found undefined alias");
	expect_error("store.path: /x\nname: \"a\xff\"\n",
			"t.yaml: YAML syntax error: invalid leading UTF-8 octet at byte 23");
	/* the error of a second document is a syntax error, too */
	CU_ASSERT_EQUAL(load(&s, "store.path: /x\n---\n]\n"), FLEETMQ_ERR_CONFIG);
	CU_ASSERT_EQUAL(strncmp(err, "t.yaml:3: YAML syntax error: ", 29), 0);
}

static void test_fleetmq_cfg_load_buffer_multiple_documents(void)
{
	expect_error("store.path: /x\n---\nname: y\n", "t.yaml:2: only one YAML document is allowed");
}

static void test_fleetmq_cfg_load_buffer_required_missing(void)
{
	expect_error("store:\n  group_commit: true\n", "t.yaml: store.path: required key missing");
	expect_error("name: x\nstore:\n  path:\n", "t.yaml:3: store.path: required value is empty");
	expect_error("store.path: ''\n", "t.yaml:1: store.path: required value is empty");
}

static void test_fleetmq_cfg_load_buffer_err_truncated(void)
{
	struct sample s;
	char small[12];

	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL(fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, &s, "x: 1\n", 5, "t.yaml",
			small, sizeof(small)), FLEETMQ_ERR_CONFIG);
	CU_ASSERT_STRING_EQUAL(small, "t.yaml:1: x");
	/* no err buffer at all is fine */
	CU_ASSERT_EQUAL(fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, &s, "x: 1\n", 5, "t.yaml",
			NULL, 0), FLEETMQ_ERR_CONFIG);
}

/* ================================================================
 * Memory: no leak on any error path
 * ================================================================ */
static void test_fleetmq_cfg_free_after_error_no_leak(void)
{
	struct sample s;
	int rc;

	fleetmq_alloc_set(&counting);
	live_allocs = 0;
	/* the error comes after strings and lists have been stored */
	rc = load(&s, "name: n\nstore:\n  path: /x\nsecurity:\n  operators: [a, b]\n"
			"log:\n  banner: hi\n  offset_ms: 1000\n");
	CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_CONFIG);
	CU_ASSERT_STRING_EQUAL(err, "t.yaml:8: log.offset_ms: value 1000 out of range -100..100");
	CU_ASSERT_EQUAL(live_allocs, 0);
	CU_ASSERT_PTR_NULL(s.name);
	CU_ASSERT_PTR_NULL(s.banner);
	CU_ASSERT_PTR_NULL(s.operators.items);
	CU_ASSERT_EQUAL(s.operators.count, 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);   /* harmless after an error */
	CU_ASSERT_EQUAL(live_allocs, 0);

	/* success: everything owned by s is released by free */
	CU_ASSERT_EQUAL(load(&s, valid_yaml), FLEETMQ_OK);
	CU_ASSERT_TRUE(live_allocs > 0);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	CU_ASSERT_EQUAL(live_allocs, 0);
	fleetmq_alloc_set(NULL);
}

static void test_fleetmq_cfg_load_buffer_out_of_memory(void)
{
	struct sample s;
	char path[64], expected[2][96] = { "t.yaml: out of memory", "" };
	long k;
	int rc = FLEETMQ_ERR_NOMEM;
	bool use_file;

	CU_ASSERT_TRUE_FATAL(write_temp(valid_yaml, path, sizeof(path)));
	snprintf(expected[1], sizeof(expected[1]), "%s: out of memory", path);
	fleetmq_alloc_set(&counting);
	for(use_file = false; ; use_file = true){
		for(k = 0; k < 1000; k++){
			live_allocs = 0;
			allocs_until_failure = k;
			memset(&s, 0, sizeof(s));
			if(use_file){
				rc = fleetmq_cfg_load_file(sample_table, SAMPLE_N, &s, path, err, sizeof(err));
			}else{
				rc = load(&s, valid_yaml);
			}
			allocs_until_failure = -1;
			if(rc == FLEETMQ_OK) break;
			CU_ASSERT_EQUAL(rc, FLEETMQ_ERR_NOMEM);
			CU_ASSERT_STRING_EQUAL(err, expected[use_file]);
			if(strcmp(err, expected[use_file])) fprintf(stderr, "\n  k=%ld file=%d got: %s\n", k, use_file, err);
			CU_ASSERT_EQUAL(live_allocs, 0);
			CU_ASSERT_PTR_NULL(s.name);
		}
		CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
		CU_ASSERT_TRUE(k > 5);   /* several allocation sites were exercised */
		check_valid_yaml_values(&s);
		fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
		CU_ASSERT_EQUAL(live_allocs, 0);
		if(use_file) break;
	}
	fleetmq_alloc_set(NULL);
	unlink(path);
}

/* ================================================================
 * fleetmq_cfg_print / fleetmq_cfg_print_markdown
 * ================================================================ */
static void test_fleetmq_cfg_print_round_trip(void)
{
	static const char *const ops[] = { "alice", "b: ob", "", "true", "~", "- x", "[y]", "#z" };
	struct sample a, b;
	char *out;
	size_t i;
	int rc;

	/* start from a loaded config with an empty topic list, then set odd values */
	CU_ASSERT_EQUAL_FATAL(load(&a, "store.path: /x\nsecurity.topics: []\n"), FLEETMQ_OK);
	fm_free(a.name);
	a.name = fm_strdup("q\" b\\ n\n t\t r\r c\x01 d\x7f: # x &y *z \xc3\xa9 \xe2\x9c\x93 "
			"nel\xc2\x85 ls\xe2\x80\xa8 ps\xe2\x80\xa9 bom\xef\xbb\xbf c1\xc2\x9f "
			"nonchars\xef\xbf\xbe\xef\xbf\xbf end ");
	fm_free(a.store_path);
	a.store_path = fm_strdup("  leading and trailing  ");
	a.store_sync = 1;
	a.store_group_commit = false;
	a.wal_enabled = true;
	a.wal_max_bytes = 1048576;
	a.shadow_max_depth = 1;
	a.log_offset_ms = -100;
	a.operators.items = fm_calloc(sizeof(ops) / sizeof(ops[0]), sizeof(char *));
	CU_ASSERT_PTR_NOT_NULL_FATAL(a.operators.items);
	for(i = 0; i < sizeof(ops) / sizeof(ops[0]); i++){
		a.operators.items[i] = fm_strdup(ops[i]);
		a.operators.count++;
	}
	CU_ASSERT_PTR_NULL(a.banner);
	CU_ASSERT_EQUAL(a.topics.count, 0);

	out = print_to_string(&a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	memset(&b, 0, sizeof(b));
	rc = fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, &b, out, strlen(out), "printed", err, sizeof(err));
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	if(rc) fprintf(stderr, "\n%s\n%s\n", err, out);
	CU_ASSERT_TRUE(str_equal(a.name, b.name));
	CU_ASSERT_TRUE(str_equal(a.store_path, b.store_path));
	CU_ASSERT_PTR_NULL(b.banner);
	CU_ASSERT_EQUAL(a.store_sync, b.store_sync);
	CU_ASSERT_EQUAL(a.store_group_commit, b.store_group_commit);
	CU_ASSERT_EQUAL(a.wal_enabled, b.wal_enabled);
	CU_ASSERT_EQUAL(a.wal_max_bytes, b.wal_max_bytes);
	CU_ASSERT_EQUAL(a.shadow_max_depth, b.shadow_max_depth);
	CU_ASSERT_EQUAL(a.log_offset_ms, b.log_offset_ms);
	CU_ASSERT_TRUE(strlist_equal(&a.operators, &b.operators));
	CU_ASSERT_EQUAL(b.topics.count, 0);
	free(out);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &b);

	/* and the defaults round-trip as well (with the required key set) */
	fleetmq_cfg_free(sample_table, SAMPLE_N, &a);
	CU_ASSERT_EQUAL_FATAL(load(&a, valid_yaml), FLEETMQ_OK);
	out = print_to_string(&a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);
	memset(&b, 0, sizeof(b));
	CU_ASSERT_EQUAL(fleetmq_cfg_load_buffer(sample_table, SAMPLE_N, &b, out, strlen(out), "printed",
			err, sizeof(err)), FLEETMQ_OK);
	check_valid_yaml_values(&b);
	free(out);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &a);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &b);
}

static void test_fleetmq_cfg_print_nests_and_comments(void)
{
	struct sample s;
	char *out, *line, *save = NULL;
	const char *prev = "";
	size_t keys = 0;

	CU_ASSERT_EQUAL_FATAL(load(&s, valid_yaml), FLEETMQ_OK);
	out = print_to_string(&s);
	fleetmq_cfg_free(sample_table, SAMPLE_N, &s);
	CU_ASSERT_PTR_NOT_NULL_FATAL(out);

	/* store.wal.* comes after shadow.* in the table but is grouped under store */
	CU_ASSERT_EQUAL(count_occurrences(out, "store:\n"), 1);
	CU_ASSERT_EQUAL(count_occurrences(out, "\n  wal:\n"), 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n    max_bytes: 65536\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "\n  # required\n  path: \"/var/lib/fleetmq/fleet.db\"\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  # one of: full, normal\n  synchronous: normal\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "    # range: 1024..1048576 bytes\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  operators: [\"alice\", \"bob smith\"]\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(out, "  banner: \"hello: world\"\n"));
	CU_ASSERT_TRUE(strstr(out, "\nshadow:\n") < strstr(out, "\nsecurity:\n"));
	CU_ASSERT_TRUE(strstr(out, "store:\n") < strstr(out, "\nshadow:\n"));
	/* long help is wrapped: no line longer than 78 columns */
	/* every key line is preceded by a comment line */
	for(line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)){
		const char *t = line + strspn(line, " ");
		size_t len = strlen(line);

		CU_ASSERT_TRUE(len <= 78);
		if(*t != '#' && line[len - 1] != ':'){
			const char *pt = prev + strspn(prev, " ");
			CU_ASSERT_EQUAL(*pt, '#');
			keys++;
		}
		prev = line;
	}
	CU_ASSERT_EQUAL(keys, SAMPLE_N);
	free(out);
}

static void test_fleetmq_cfg_print_markdown_contains_every_key(void)
{
	char *buf = NULL, needle[128];
	size_t len = 0, i;
	FILE *fp = open_memstream(&buf, &len);

	CU_ASSERT_PTR_NOT_NULL_FATAL(fp);
	fleetmq_cfg_print_markdown(sample_table, SAMPLE_N, fp);
	fclose(fp);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	CU_ASSERT_EQUAL(strncmp(buf, "| key | type | default | range / choices | description |\n", 57), 0);
	for(i = 0; i < SAMPLE_N; i++){
		snprintf(needle, sizeof(needle), "| `%s` | ", sample_table[i].key);
		CU_ASSERT_PTR_NOT_NULL(strstr(buf, needle));
	}
	CU_ASSERT_EQUAL(count_occurrences(buf, "\n"), SAMPLE_N + 2);
	CU_ASSERT_PTR_NOT_NULL(strstr(buf,
			"| `shadow.max_depth` | integer (levels) | `8` | 1 .. 64 | Deepest nesting"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf,
			"| `store.synchronous` | enum | `full` | `full`, `normal` | Durability"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf,
			"| `store.path` | string | *required* |  | **Required.** SQLite database file. |\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "| `security.operators` | list of strings | `[]` |"));
	CU_ASSERT_PTR_NOT_NULL(strstr(buf, "write-ahead log \\| before a &lt;checkpoint&gt;."));
	free(buf);
}

/* ================================================================
 * Runner
 * ================================================================ */
int main(void)
{
	static const struct { const char *name; CU_TestFunc fn; } tests[] = {
#define T(f) { #f, f }
		T(test_fleetmq_cfg_defaults_applies_every_default),
		T(test_fleetmq_cfg_defaults_bad_default_rejected),
		T(test_fleetmq_cfg_defaults_bad_table_rejected),
		T(test_fleetmq_cfg_defaults_null_arguments),
		T(test_fleetmq_cfg_load_file_full_valid),
		T(test_fleetmq_cfg_load_file_error_names_file),
		T(test_fleetmq_cfg_load_file_missing),
		T(test_fleetmq_cfg_load_buffer_empty_means_defaults),
		T(test_fleetmq_cfg_load_buffer_flat_and_nested_keys),
		T(test_fleetmq_cfg_load_buffer_scalar_conversions),
		T(test_fleetmq_cfg_load_buffer_list_parse),
		T(test_fleetmq_cfg_load_buffer_int_out_of_range),
		T(test_fleetmq_cfg_load_buffer_int_not_integer),
		T(test_fleetmq_cfg_load_buffer_bool_invalid),
		T(test_fleetmq_cfg_load_buffer_enum_invalid),
		T(test_fleetmq_cfg_load_buffer_unknown_key),
		T(test_fleetmq_cfg_load_buffer_unknown_nested_section),
		T(test_fleetmq_cfg_load_buffer_duplicate_key),
		T(test_fleetmq_cfg_load_buffer_wrong_node_kind),
		T(test_fleetmq_cfg_load_buffer_root_not_mapping),
		T(test_fleetmq_cfg_load_buffer_yaml_syntax_error),
		T(test_fleetmq_cfg_load_buffer_multiple_documents),
		T(test_fleetmq_cfg_load_buffer_required_missing),
		T(test_fleetmq_cfg_load_buffer_err_truncated),
		T(test_fleetmq_cfg_free_after_error_no_leak),
		T(test_fleetmq_cfg_load_buffer_out_of_memory),
		T(test_fleetmq_cfg_print_round_trip),
		T(test_fleetmq_cfg_print_nests_and_comments),
		T(test_fleetmq_cfg_print_markdown_contains_every_key),
#undef T
	};
	CU_pSuite suite;
	size_t i;
	unsigned failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 1;
	suite = CU_add_suite("config", NULL, NULL);
	if(!suite){
		CU_cleanup_registry();
		return 1;
	}
	for(i = 0; i < sizeof(tests) / sizeof(tests[0]); i++){
		if(!CU_add_test(suite, tests[i].name, tests[i].fn)){
			CU_cleanup_registry();
			return 1;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
