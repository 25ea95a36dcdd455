/*
 * test_store.c - the SQLite store against real database files.
 *
 * Every test works on its own file in a mkdtemp() directory under /tmp. What
 * other processes would see is checked through a second, independent sqlite3
 * connection ("peer"); durability is checked by kill -9'ing a writer child.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CUnit/Basic.h>
#include <sqlite3.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "store.h"

static char tmpdir[64];
static int db_seq;

/* ---- helpers ------------------------------------------------------------ */

static void new_db_path(char *buf, size_t len)
{
	snprintf(buf, len, "%s/t%03d.db", tmpdir, ++db_seq);
}

static struct fleetmq_store *open_ok(const char *path)
{
	struct fleetmq_store *st = NULL;
	char err[256] = "";
	int rc;

	rc = fleetmq_store_open(path, NULL, &st, err, sizeof(err));
	if(rc != FLEETMQ_OK) fprintf(stderr, "open %s: %s\n", path, err);
	CU_ASSERT_EQUAL(rc, FLEETMQ_OK);
	return st;
}

/* A second connection, as another process would have. */
static sqlite3 *peer_open(const char *path)
{
	sqlite3 *db = NULL;

	if(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK){
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 2000);
	return db;
}

/* First column of the first row of sql as an integer; -1 on error or no row. */
static long long peer_int(const char *path, const char *sql)
{
	sqlite3 *db = peer_open(path);
	sqlite3_stmt *s = NULL;
	long long v = -1;

	if(!db) return -1;
	if(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW){
		v = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static int peer_text(const char *path, const char *sql, char *out, size_t len)
{
	sqlite3 *db = peer_open(path);
	sqlite3_stmt *s = NULL;
	int rc = -1;

	out[0] = '\0';
	if(!db) return -1;
	if(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW){
		snprintf(out, len, "%s", (const char *)sqlite3_column_text(s, 0));
		rc = 0;
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rc;
}

static int peer_exec(const char *path, const char *sql)
{
	sqlite3 *db = peer_open(path);
	int rc;

	if(!db) return -1;
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK ? 0 : -1;
}

static long long peer_count_device(const char *path, const char *id)
{
	char sql[160];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM devices WHERE id = '%s'", id);
	return peer_int(path, sql);
}

static struct fleetmq_device_rec sample_device(const char *id)
{
	struct fleetmq_device_rec r;

	memset(&r, 0, sizeof(r));
	r.id = id;
	r.device_type = "gateway";
	r.hw_revision = "rev-b";
	r.agent_version = "1.2.3";
	r.software_json = "[{\"name\":\"fw\",\"version\":\"7\"}]";
	r.attributes_json = "{\"site\":\"north\"}";
	r.presence = 1;
	r.presence_since_ms = 1700000000001ULL;
	r.last_seen_ms = 1700000000002ULL;
	r.connected_at_ms = 1700000000003ULL;
	r.created_ms = 1600000000000ULL;
	r.shadow_version = 0;
	return r;
}

static int suite_init(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/fleetmq_test_store_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_clean(void)
{
	char path[512];
	struct dirent *de;
	DIR *d = opendir(tmpdir);

	if(!d) return -1;
	while((de = readdir(d)) != NULL){
		if(!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, de->d_name);
		unlink(path);
	}
	closedir(d);
	return rmdir(tmpdir);
}

/* ---- open --------------------------------------------------------------- */

static void test_open_creates_schema_wal(void)
{
	char path[256], mode[32];
	struct fleetmq_store *st;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), FLEETMQ_STORE_SCHEMA_VERSION);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 1);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));

	CU_ASSERT_EQUAL(peer_int(path, "PRAGMA user_version"), 1);
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA journal_mode", mode, sizeof(mode)), 0);
	CU_ASSERT_STRING_EQUAL(mode, "wal");
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				" AND name IN ('devices', 'shadows')"), 2);
	fleetmq_store_close(st);

	/* WAL mode is persistent: still set with the store closed. */
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA journal_mode", mode, sizeof(mode)), 0);
	CU_ASSERT_STRING_EQUAL(mode, "wal");
}

static void test_open_reopen_keeps_data(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-1"), out;
	char *doc = NULL;
	size_t len = 0;
	uint64_t ver = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-1", 5, "{\"a\":1}", 7), FLEETMQ_OK);
	fleetmq_store_close(st);

	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 1);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-1", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.device_type, "gateway");
	CU_ASSERT_EQUAL(out.created_ms, in.created_ms);
	CU_ASSERT_EQUAL(out.shadow_version, 5);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_shadow_get(st, "dev-1", &doc, &len, &ver), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(doc, "{\"a\":1}");
	CU_ASSERT_EQUAL(ver, 5);
	fm_free(doc);
	fleetmq_store_close(st);
}

static void test_open_refuses_newer_schema(void)
{
	char path[256], err[256] = "";
	struct fleetmq_store *st = (struct fleetmq_store *)&st; /* must be reset to NULL */

	new_db_path(path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(peer_exec(path, "CREATE TABLE future(x); PRAGMA user_version = 99;"), 0);

	CU_ASSERT_NOT_EQUAL(fleetmq_store_open(path, NULL, &st, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_STRING_EQUAL(err,
			"database schema version 99 is newer than this fleetmq (1); refusing to open");
	/* Nothing was changed: neither version, nor schema, nor journal mode. */
	CU_ASSERT_EQUAL(peer_int(path, "PRAGMA user_version"), 99);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'devices'"), 0);
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA journal_mode", err, sizeof(err)), 0);
	CU_ASSERT_STRING_EQUAL(err, "delete");
}

static void test_open_rejects_bad_arguments(void)
{
	char path[256], err[256];
	struct fleetmq_store *st = NULL;
	struct fleetmq_store_options bad = { (enum fleetmq_store_sync)7, 0 };

	new_db_path(path, sizeof(path));
	CU_ASSERT_EQUAL(fleetmq_store_open(NULL, NULL, &st, err, sizeof(err)), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_NOT_EQUAL(err[0], '\0');
	CU_ASSERT_EQUAL(fleetmq_store_open(path, NULL, NULL, err, sizeof(err)), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_open(path, &bad, &st, err, sizeof(err)), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_EQUAL(access(path, F_OK), -1); /* nothing created */

	/* WAL needs a file. */
	CU_ASSERT_NOT_EQUAL(fleetmq_store_open(":memory:", NULL, &st, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "WAL"));

	CU_ASSERT_NOT_EQUAL(fleetmq_store_open("/nonexistent-dir/x.db", NULL, &st, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "/nonexistent-dir/x.db"));

	/* NULL-tolerant helpers. */
	fleetmq_store_close(NULL);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(NULL), -1);
	CU_ASSERT_PTR_NOT_NULL(fleetmq_store_last_error(NULL));
}

static void test_open_not_a_database(void)
{
	char path[256], err[256] = "";
	struct fleetmq_store *st = NULL;
	FILE *f;

	new_db_path(path, sizeof(path));
	f = fopen(path, "w");
	CU_ASSERT_PTR_NOT_NULL_FATAL(f);
	for(int i = 0; i < 100; i++) fputs("this is not an sqlite database\n", f);
	fclose(f);
	CU_ASSERT_EQUAL(fleetmq_store_open(path, NULL, &st, err, sizeof(err)), FLEETMQ_ERR_IO);
	CU_ASSERT_PTR_NULL(st);
	CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a database"));
}

static void test_open_sync_normal_option(void)
{
	char path[256], err[256] = "";
	struct fleetmq_store *st = NULL;
	struct fleetmq_store_options o = { FLEETMQ_STORE_SYNC_NORMAL, 100 };
	struct fleetmq_device_rec in = sample_device("n1"), out;

	new_db_path(path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_open(path, &o, &st, err, sizeof(err)), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "n1", &out), FLEETMQ_OK);
	fleetmq_store_close(st);
	CU_ASSERT_EQUAL(peer_count_device(path, "n1"), 1);
}

/* ---- devices ------------------------------------------------------------ */

static void test_device_put_get_roundtrip(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-rt"), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	in.last_seen_ms = UINT64_MAX;          /* beyond int64: must round-trip */
	in.shadow_version = 42;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-rt", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.id, "dev-rt");
	CU_ASSERT_STRING_EQUAL(out.device_type, in.device_type);
	CU_ASSERT_STRING_EQUAL(out.hw_revision, in.hw_revision);
	CU_ASSERT_STRING_EQUAL(out.agent_version, in.agent_version);
	CU_ASSERT_STRING_EQUAL(out.software_json, in.software_json);
	CU_ASSERT_STRING_EQUAL(out.attributes_json, in.attributes_json);
	CU_ASSERT_EQUAL(out.presence, in.presence);
	CU_ASSERT_EQUAL(out.presence_since_ms, in.presence_since_ms);
	CU_ASSERT_EQUAL(out.last_seen_ms, UINT64_MAX);
	CU_ASSERT_EQUAL(out.connected_at_ms, in.connected_at_ms);
	CU_ASSERT_EQUAL(out.created_ms, in.created_ms);
	CU_ASSERT_EQUAL(out.shadow_version, 42);
	/* The record is a copy, not the caller's strings. */
	CU_ASSERT_PTR_NOT_EQUAL(out.device_type, in.device_type);

	/* NULL strings are stored as their "none" values. */
	memset(&in, 0, sizeof(in));
	in.id = "dev-null";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-null", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.device_type, "");
	CU_ASSERT_STRING_EQUAL(out.hw_revision, "");
	CU_ASSERT_STRING_EQUAL(out.agent_version, "");
	CU_ASSERT_STRING_EQUAL(out.software_json, "[]");
	CU_ASSERT_STRING_EQUAL(out.attributes_json, "{}");

	/* Missing id is a bad request, not an I/O error. */
	in.id = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in.id = "";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(NULL, &in), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, NULL, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "dev-rt", NULL), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_device_put_upsert_preserves_created_ms(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-up"), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	in.created_ms = 1000;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);

	in.created_ms = 0;
	in.device_type = "sensor";
	in.presence = 2;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-up", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.created_ms, 1000);
	CU_ASSERT_STRING_EQUAL(out.device_type, "sensor");
	CU_ASSERT_EQUAL(out.presence, 2);

	/* A non-zero created_ms replaces it (the record is "all fields"). */
	in.created_ms = 2000;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-up", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.created_ms, 2000);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices"), 1);
	fleetmq_store_close(st);
}

static void test_device_get_missing_not_found(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "ghost", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "ghost"));
	fleetmq_store_close(st);
}

/* The plugin's pattern: get the old record, then put one built from its strings. */
static void test_device_get_strings_survive_put(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-s"), old, rec, again;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-s", &old), FLEETMQ_OK);

	rec = old;
	rec.presence = 3;
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &rec), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, old.id, 4, 1, 2, 3), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	/* still the old strings after other store calls */
	CU_ASSERT_STRING_EQUAL(old.hw_revision, "rev-b");
	CU_ASSERT_STRING_EQUAL(old.attributes_json, "{\"site\":\"north\"}");

	/* A get keyed by the previous record's id (which lives in the scratch area). */
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, old.id, &again), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(again.id, "dev-s");
	CU_ASSERT_STRING_EQUAL(again.hw_revision, "rev-b");
	CU_ASSERT_EQUAL(again.presence, 4);
	CU_ASSERT_EQUAL(again.last_seen_ms, 2);
	fleetmq_store_close(st);
}

static void test_device_set_presence_updates_fields(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-p"), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, "dev-p", 0, 11, 22, 33), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-p", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.presence, 0);
	CU_ASSERT_EQUAL(out.presence_since_ms, 11);
	CU_ASSERT_EQUAL(out.last_seen_ms, 22);
	CU_ASSERT_EQUAL(out.connected_at_ms, 33);
	/* other fields untouched */
	CU_ASSERT_STRING_EQUAL(out.device_type, "gateway");
	CU_ASSERT_EQUAL(out.created_ms, in.created_ms);
	fleetmq_store_close(st);
}

static void test_device_set_presence_missing_not_found(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-x");

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, "ghost", 1, 1, 1, 1), FLEETMQ_ERR_NOT_FOUND);
	/* also with another row present, and inside a transaction */
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, "ghost", 1, 1, 1, 1), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_TRUE(fleetmq_store_in_txn(st)); /* a miss does not end the transaction */
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(peer_count_device(path, "ghost"), 0);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, NULL, 1, 1, 1, 1), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

struct walk {
	char ids[8][16];
	int n;
	int stop_at;            /* return 7 when n reaches this; 0 = never */
	struct fleetmq_store *st;
	int nested_rc;
};

static int walk_cb(const struct fleetmq_device_rec *rec, void *userdata)
{
	struct walk *w = userdata;

	if(w->n < 8) snprintf(w->ids[w->n], sizeof(w->ids[0]), "%s", rec->id);
	w->n++;
	if(w->st) w->nested_rc = fleetmq_store_device_foreach(w->st, walk_cb, w);
	return w->stop_at && w->n == w->stop_at ? 7 : 0;
}

static void put_ids(struct fleetmq_store *st, const char *const *ids, int n)
{
	struct fleetmq_device_rec in;

	for(int i = 0; i < n; i++){
		in = sample_device(ids[i]);
		CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	}
}

static void test_device_foreach_id_order(void)
{
	static const char *const ids[] = { "c-3", "a-1", "b-2", "B-0" };
	char path[256];
	struct fleetmq_store *st;
	struct walk w;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	memset(&w, 0, sizeof(w));
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, walk_cb, &w), FLEETMQ_OK);
	CU_ASSERT_EQUAL(w.n, 0);

	put_ids(st, ids, 4);
	memset(&w, 0, sizeof(w));
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, walk_cb, &w), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(w.n, 4);
	CU_ASSERT_STRING_EQUAL(w.ids[0], "B-0"); /* bytewise: upper case first */
	CU_ASSERT_STRING_EQUAL(w.ids[1], "a-1");
	CU_ASSERT_STRING_EQUAL(w.ids[2], "b-2");
	CU_ASSERT_STRING_EQUAL(w.ids[3], "c-3");
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, NULL, NULL), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_device_foreach_early_stop(void)
{
	static const char *const ids[] = { "d1", "d2", "d3", "d4" };
	char path[256];
	struct fleetmq_store *st;
	struct walk w;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_ids(st, ids, 4);
	memset(&w, 0, sizeof(w));
	w.stop_at = 2;
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, walk_cb, &w), 7);
	CU_ASSERT_EQUAL(w.n, 2);
	CU_ASSERT_STRING_EQUAL(w.ids[1], "d2");

	/* The walk's statement is reset: a new walk starts from the beginning. */
	memset(&w, 0, sizeof(w));
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, walk_cb, &w), FLEETMQ_OK);
	CU_ASSERT_EQUAL(w.n, 4);
	CU_ASSERT_STRING_EQUAL(w.ids[0], "d1");

	/* A nested walk is refused rather than corrupting the outer one. */
	memset(&w, 0, sizeof(w));
	w.st = st;
	w.stop_at = 1;
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, walk_cb, &w), 7);
	CU_ASSERT_EQUAL(w.nested_rc, FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

/* ---- shadows ------------------------------------------------------------ */

static void test_shadow_put_get_roundtrip(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-sh"), out;
	const char buf[] = "{\"desired\":{\"led\":\"on\"}}XXXX"; /* only the JSON part is stored */
	size_t json_len = strlen(buf) - 4;
	char *doc = NULL;
	size_t len = 0;
	uint64_t ver = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-sh", 3, buf, json_len), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_shadow_get(st, "dev-sh", &doc, &len, &ver), FLEETMQ_OK);
	CU_ASSERT_EQUAL(len, json_len);
	CU_ASSERT_EQUAL(strlen(doc), json_len);
	CU_ASSERT_NSTRING_EQUAL(doc, buf, json_len);
	CU_ASSERT_EQUAL(ver, 3);
	fm_free(doc);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-sh", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.shadow_version, 3);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT shadow_version FROM devices WHERE id = 'dev-sh'"), 3);

	/* Replace; len and version outputs are optional. */
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-sh", 4, "{}", 2), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_shadow_get(st, "dev-sh", &doc, NULL, NULL), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(doc, "{}");
	fm_free(doc);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-sh", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.shadow_version, 4);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM shadows"), 1);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st)); /* the savepoint did not leak a transaction */

	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-sh", 5, NULL, 0), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "dev-sh", NULL, NULL, NULL), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_shadow_put_without_device(void)
{
	char path[256];
	struct fleetmq_store *st;
	char *doc = NULL;
	uint64_t ver = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "orphan", 9, "{\"x\":1}", 7), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "orphan", &doc, NULL, &ver), FLEETMQ_OK);
	CU_ASSERT_EQUAL(ver, 9);
	fm_free(doc);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices"), 0);
	fleetmq_store_close(st);
}

static void test_shadow_get_missing_not_found(void)
{
	char path[256];
	struct fleetmq_store *st;
	char *doc = (char *)"sentinel";
	size_t len = 99;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "ghost", &doc, &len, NULL), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_PTR_NULL(doc);
	CU_ASSERT_EQUAL(len, 0);
	fleetmq_store_close(st);
}

/* A failure of the second statement of shadow_put undoes the first, and
 * leaves the surrounding group transaction usable. */
static void test_shadow_put_atomic_on_failure(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec a = sample_device("dev-a"), b = sample_device("dev-b");
	char *doc = NULL;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(peer_exec(path,
				"CREATE TRIGGER no_shadow_version BEFORE UPDATE OF shadow_version ON devices"
				" BEGIN SELECT RAISE(ABORT, 'shadow_version frozen'); END;"), 0);

	/* inside a group transaction */
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &b), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-a", 1, "{}", 2), FLEETMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "shadow_version frozen"));
	CU_ASSERT_TRUE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "dev-a", &doc, NULL, NULL), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(peer_count_device(path, "dev-b"), 1);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM shadows"), 0);

	/* and in autocommit mode */
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-a", 1, "{}", 2), FLEETMQ_ERR_IO);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM shadows"), 0);
	fleetmq_store_close(st);
}

/* ---- transactions ------------------------------------------------------- */

/* Can another connection take the write lock right now (without waiting)? */
static int peer_can_write(const char *path)
{
	sqlite3 *db = peer_open(path);
	int rc;

	if(!db) return -1;
	sqlite3_busy_timeout(db, 0);
	rc = sqlite3_exec(db, "BEGIN IMMEDIATE; ROLLBACK;", NULL, NULL, NULL);
	sqlite3_close(db);
	return rc == SQLITE_OK;
}

static void test_begin_twice_is_noop(void)
{
	char path[256];
	struct fleetmq_store *st;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	/* commit and rollback without a transaction are no-ops */
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_rollback(st), FLEETMQ_OK);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));

	CU_ASSERT_EQUAL(peer_can_write(path), 1);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_store_in_txn(st));
	/* IMMEDIATE: the write lock is taken at begin, not at the first write */
	CU_ASSERT_EQUAL(peer_can_write(path), 0);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(peer_can_write(path), 1);
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_begin(NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(NULL));
	fleetmq_store_close(st);
}

static void test_commit_visibility_to_other_connection(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec a = sample_device("dev-1"), b = sample_device("dev-2"), out;
	char *doc = NULL;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK); /* joins, does not commit */
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &b), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "dev-1", 2, "{}", 2), FLEETMQ_OK);
	CU_ASSERT_TRUE(fleetmq_store_in_txn(st));

	/* visible to the store itself ... */
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "dev-1", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.shadow_version, 2);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "dev-1", &doc, NULL, NULL), FLEETMQ_OK);
	fm_free(doc);
	/* ... but not to anyone else before commit */
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices"), 0);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM shadows"), 0);

	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices"), 2);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM shadows"), 1);
	fleetmq_store_close(st);
}

static void test_rollback_discards_writes(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec a = sample_device("keep"), b = sample_device("drop"), out;
	char *doc = NULL;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &b), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, "keep", 9, 9, 9, 9), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_put(st, "drop", 1, "{}", 2), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "drop", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_rollback(st), FLEETMQ_OK);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));

	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "drop", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(fleetmq_store_shadow_get(st, "drop", &doc, NULL, NULL), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "keep", &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.presence, a.presence);
	fleetmq_store_close(st);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices"), 1);
}

static void test_autocommit_write_visible_at_once(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec a = sample_device("auto");

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(peer_count_device(path, "auto"), 1);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_presence(st, "auto", 0, 5, 6, 7), FLEETMQ_OK);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT last_seen_ms FROM devices WHERE id = 'auto'"), 6);
	fleetmq_store_close(st);
}

/* COMMIT itself fails (a deferred foreign key, planted by a trigger): the
 * store must roll back, report FLEETMQ_ERR_IO and leave no transaction. */
static void test_commit_failure_rolls_back(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec a = sample_device("doomed"), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL_FATAL(peer_exec(path,
				"CREATE TABLE parent(id TEXT PRIMARY KEY);"
				"CREATE TABLE child(pid TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
				"CREATE TRIGGER dangle AFTER INSERT ON devices"
				" BEGIN INSERT INTO child(pid) VALUES('missing'); END;"), 0);

	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK); /* violation deferred */
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_ERR_IO);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "FOREIGN KEY"));
	CU_ASSERT_EQUAL(fleetmq_store_device_get(st, "doomed", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM child"), 0);

	/* the store keeps working */
	CU_ASSERT_EQUAL_FATAL(peer_exec(path, "DROP TRIGGER dangle;"), 0);
	CU_ASSERT_EQUAL(fleetmq_store_begin(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &a), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_commit(st), FLEETMQ_OK);
	CU_ASSERT_EQUAL(peer_count_device(path, "doomed"), 1);
	fleetmq_store_close(st);
}

/* ---- durability --------------------------------------------------------- */

#define KILL_ROWS_MAX 1000000
#define KILL_AFTER_COMMITS 400
#define KILL_DEADLINE_MS 4000

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Child: one transaction per row (device + shadow), "committed i" after each. */
static void kill9_child(const char *path, int fd)
{
	struct fleetmq_store *st = NULL;
	struct fleetmq_device_rec rec;
	char id[32], line[32], doc[64];
	int n;

	if(fleetmq_store_open(path, NULL, &st, NULL, 0) != FLEETMQ_OK) _exit(2);
	for(int i = 0; i < KILL_ROWS_MAX; i++){
		snprintf(id, sizeof(id), "dev-%07d", i);
		rec = sample_device(id);
		rec.last_seen_ms = (uint64_t)i;
		n = snprintf(doc, sizeof(doc), "{\"i\":%d}", i);
		if(fleetmq_store_begin(st) != FLEETMQ_OK
				|| fleetmq_store_device_put(st, &rec) != FLEETMQ_OK
				|| fleetmq_store_shadow_put(st, id, (uint64_t)i + 1, doc, (size_t)n) != FLEETMQ_OK
				|| fleetmq_store_commit(st) != FLEETMQ_OK){
			_exit(3);
		}
		n = snprintf(line, sizeof(line), "committed %d\n", i);
		if(write(fd, line, (size_t)n) != n) _exit(4);
	}
	_exit(0);
}

static void test_commit_survives_kill9(void)
{
	char path[256], buf[4096], line[64], id[32];
	size_t linelen = 0;
	struct fleetmq_store *st;
	struct fleetmq_device_rec out;
	struct pollfd pfd;
	long long start, first_ms = 0, kill_ms = 0;
	int fds[2], status = 0, reported = 0, bad_lines = 0, killed = 0, missing = 0, v;
	char *doc;
	uint64_t ver;
	ssize_t r;
	pid_t pid;

	new_db_path(path, sizeof(path));
	/* create the schema first so the child only writes rows */
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	fleetmq_store_close(st);

	CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	if(pid == 0){
		close(fds[0]);
		kill9_child(path, fds[1]);
	}
	close(fds[1]);

	start = now_ms();
	pfd.fd = fds[0];
	pfd.events = POLLIN;
	for(;;){
		if(!killed && (reported >= KILL_AFTER_COMMITS || now_ms() - start > KILL_DEADLINE_MS)){
			kill(pid, SIGKILL);
			kill_ms = now_ms();
			killed = 1;
		}
		if(poll(&pfd, 1, 100) < 0 && errno != EINTR) break;
		if(!(pfd.revents & (POLLIN | POLLHUP))) continue;
		r = read(fds[0], buf, sizeof(buf));
		if(r < 0 && errno == EINTR) continue;
		if(r <= 0) break; /* EOF: the child is gone and the pipe drained */
		for(ssize_t k = 0; k < r; k++){
			if(buf[k] != '\n'){
				if(linelen < sizeof(line) - 1) line[linelen++] = buf[k];
				continue;
			}
			line[linelen] = '\0';
			linelen = 0;
			/* lines arrive in order: each must be the next row */
			if(sscanf(line, "committed %d", &v) == 1 && v == reported){
				if(reported == 0) first_ms = now_ms();
				reported++;
			}else{
				bad_lines++;
			}
		}
	}
	close(fds[0]);
	CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
	CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); /* killed mid-stream */
	CU_ASSERT_EQUAL(bad_lines, 0);
	CU_ASSERT_TRUE(reported > 0);
	if(reported > 1 && kill_ms > first_ms){
		printf("\n    kill -9 after %d reported commits (~%lld commits/s, synchronous=FULL, 2 rows each) ",
				reported, (reported - 1) * 1000LL / (kill_ms - first_ms + 1));
	}

	/* Every reported commit is there, whole. */
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	for(int i = 0; i < reported; i++){
		snprintf(id, sizeof(id), "dev-%07d", i);
		doc = NULL;
		ver = 0;
		if(fleetmq_store_device_get(st, id, &out) != FLEETMQ_OK || out.last_seen_ms != (uint64_t)i
				|| out.shadow_version != (uint64_t)i + 1
				|| fleetmq_store_shadow_get(st, id, &doc, NULL, &ver) != FLEETMQ_OK
				|| ver != (uint64_t)i + 1){
			missing++;
		}
		fm_free(doc);
	}
	CU_ASSERT_EQUAL(missing, 0);
	/* at most the one commit in flight beyond what was reported */
	CU_ASSERT_TRUE(peer_int(path, "SELECT count(*) FROM devices") >= reported);
	CU_ASSERT_TRUE(peer_int(path, "SELECT count(*) FROM devices") <= reported + 1);
	fleetmq_store_close(st);
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA integrity_check", line, sizeof(line)), 0);
	CU_ASSERT_STRING_EQUAL(line, "ok");
}

int main(void)
{
	static const struct {
		const char *name;
		CU_TestFunc fn;
	} tests[] = {
#define T(f) { #f, f }
		T(test_open_creates_schema_wal),
		T(test_open_reopen_keeps_data),
		T(test_open_refuses_newer_schema),
		T(test_open_rejects_bad_arguments),
		T(test_open_not_a_database),
		T(test_open_sync_normal_option),
		T(test_device_put_get_roundtrip),
		T(test_device_put_upsert_preserves_created_ms),
		T(test_device_get_missing_not_found),
		T(test_device_get_strings_survive_put),
		T(test_device_set_presence_updates_fields),
		T(test_device_set_presence_missing_not_found),
		T(test_device_foreach_id_order),
		T(test_device_foreach_early_stop),
		T(test_shadow_put_get_roundtrip),
		T(test_shadow_put_without_device),
		T(test_shadow_get_missing_not_found),
		T(test_shadow_put_atomic_on_failure),
		T(test_begin_twice_is_noop),
		T(test_commit_visibility_to_other_connection),
		T(test_rollback_discards_writes),
		T(test_autocommit_write_visible_at_once),
		T(test_commit_failure_rolls_back),
		T(test_commit_survives_kill9),
#undef T
	};
	CU_pSuite s;
	unsigned failures;

	if(CU_initialize_registry() != CUE_SUCCESS) return 2;
	s = CU_add_suite("store", suite_init, suite_clean);
	if(!s){
		CU_cleanup_registry();
		return 2;
	}
	for(size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++){
		if(!CU_add_test(s, tests[i].name, tests[i].fn)){
			CU_cleanup_registry();
			return 2;
		}
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failures = CU_get_number_of_tests_failed() + CU_get_number_of_suites_failed()
		+ CU_get_number_of_failures();
	CU_cleanup_registry();
	return failures ? 1 : 0;
}
