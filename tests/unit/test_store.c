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
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 2);
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));

	CU_ASSERT_EQUAL(peer_int(path, "PRAGMA user_version"), 2);
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA journal_mode", mode, sizeof(mode)), 0);
	CU_ASSERT_STRING_EQUAL(mode, "wal");
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				" AND name IN ('devices', 'shadows', 'jobs', 'executions', 'audit')"), 5);
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
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 2);
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
			"database schema version 99 is newer than this fleetmq (2); refusing to open");
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

/* ---- schema v2 ---------------------------------------------------------- */

/* The v1 schema exactly as fleetmq 0.1 created it (migration 0 -> 1). */
static const char v1_ddl[] =
	"CREATE TABLE devices("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  device_type TEXT NOT NULL DEFAULT '',"
	"  hw_revision TEXT NOT NULL DEFAULT '',"
	"  agent_version TEXT NOT NULL DEFAULT '',"
	"  software_json TEXT NOT NULL DEFAULT '[]',"
	"  attributes_json TEXT NOT NULL DEFAULT '{}',"
	"  presence INTEGER NOT NULL DEFAULT 0,"
	"  presence_since_ms INTEGER NOT NULL DEFAULT 0,"
	"  last_seen_ms INTEGER NOT NULL DEFAULT 0,"
	"  connected_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  created_ms INTEGER NOT NULL DEFAULT 0,"
	"  shadow_version INTEGER NOT NULL DEFAULT 0"
	") WITHOUT ROWID;"
	"CREATE TABLE shadows("
	"  device_id TEXT PRIMARY KEY NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  doc TEXT NOT NULL"
	") WITHOUT ROWID;";

static void test_migrate_v1_to_v2_in_place(void)
{
	char path[256], mode[32];
	struct fleetmq_store *st;
	struct fleetmq_device_rec out;
	char *doc = NULL;

	new_db_path(path, sizeof(path));
	CU_ASSERT_EQUAL_FATAL(peer_exec(path, "PRAGMA journal_mode = WAL;"), 0);
	CU_ASSERT_EQUAL_FATAL(peer_exec(path, v1_ddl), 0);
	CU_ASSERT_EQUAL_FATAL(peer_exec(path,
				"INSERT INTO devices(id, device_type, hw_revision, software_json, attributes_json,"
				" presence, last_seen_ms, created_ms, shadow_version)"
				" VALUES('old-1', 'gateway', 'rev-a', '[{\"name\":\"fw\",\"version\":\"1\"}]',"
				" '{\"site\":\"south\"}', 2, 1234, 1000, 3);"
				"INSERT INTO shadows(device_id, version, doc) VALUES('old-1', 3, '{\"v\":3}');"
				"PRAGMA user_version = 1;"), 0);
	CU_ASSERT_EQUAL_FATAL(peer_int(path, "PRAGMA user_version"), 1);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'"), 0);

	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 2);
	CU_ASSERT_EQUAL(peer_int(path, "PRAGMA user_version"), 2);
	/* the row is kept, with the new columns at their defaults */
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "old-1", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.device_type, "gateway");
	CU_ASSERT_STRING_EQUAL(out.hw_revision, "rev-a");
	CU_ASSERT_STRING_EQUAL(out.attributes_json, "{\"site\":\"south\"}");
	CU_ASSERT_EQUAL(out.presence, 2);
	CU_ASSERT_EQUAL(out.last_seen_ms, 1234);
	CU_ASSERT_EQUAL(out.created_ms, 1000);
	CU_ASSERT_EQUAL(out.shadow_version, 3);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{}");
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_shadow_get(st, "old-1", &doc, NULL, NULL), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(doc, "{\"v\":3}");
	fm_free(doc);
	/* the new tables and indexes exist */
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				" AND name IN ('jobs', 'executions', 'audit')"), 3);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN"
				" ('executions_device', 'executions_job', 'executions_deadline', 'executions_retry',"
				"  'audit_target', 'audit_actor')"), 6);
	/* and are usable right away */
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "old-1", "[\"g\"]", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 1, "op", "migrate", "old-1", NULL), FLEETMQ_OK);
	fleetmq_store_close(st);

	/* a second open finds version 2 and migrates nothing again */
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_schema_version(st), 2);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "old-1", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[\"g\"]");
	fleetmq_store_close(st);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM audit"), 1);
	CU_ASSERT_EQUAL(peer_text(path, "PRAGMA integrity_check", mode, sizeof(mode)), 0);
	CU_ASSERT_STRING_EQUAL(mode, "ok");
}

/* All "detail" columns of EXPLAIN QUERY PLAN sql, joined by "; ". */
static void peer_plan(const char *path, const char *sql, char *out, size_t len)
{
	char q[1024];
	sqlite3 *db = peer_open(path);
	sqlite3_stmt *s = NULL;
	size_t used = 0;

	out[0] = '\0';
	if(!db) return;
	snprintf(q, sizeof(q), "EXPLAIN QUERY PLAN %s", sql);
	if(sqlite3_prepare_v2(db, q, -1, &s, NULL) == SQLITE_OK){
		while(sqlite3_step(s) == SQLITE_ROW && used < len){
			used += (size_t)snprintf(out + used, len - used, "%s; ", (const char *)sqlite3_column_text(s, 3));
		}
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* The due / pending / per-device predicates the store runs are served by the
 * v2 indexes (the partial ones only apply when the WHERE implies theirs). */
static void test_schema_v2_indexes_serve_queries(void)
{
	char path[256], plan[1024];
	struct fleetmq_store *st;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	fleetmq_store_close(st);

	peer_plan(path, "SELECT * FROM executions WHERE status = 2 AND deadline_ms > 0 AND deadline_ms <= ?1"
			" ORDER BY deadline_ms LIMIT ?2", plan, sizeof(plan));
	CU_ASSERT_PTR_NOT_NULL(strstr(plan, "executions_deadline"));
	peer_plan(path, "SELECT * FROM executions WHERE retry_at_ms > 0 AND retry_at_ms <= ?1"
			" AND NOT (status = 2 AND deadline_ms > 0 AND deadline_ms <= ?1) ORDER BY retry_at_ms LIMIT ?2",
			plan, sizeof(plan));
	CU_ASSERT_PTR_NOT_NULL(strstr(plan, "executions_retry"));
	peer_plan(path, "SELECT * FROM executions WHERE job_id = ?1 AND status = 0 AND canary = ?2"
			" ORDER BY seq LIMIT ?3", plan, sizeof(plan));
	CU_ASSERT_PTR_NOT_NULL(strstr(plan, "executions_job"));
	CU_ASSERT_PTR_NULL(strstr(plan, "TEMP B-TREE")); /* no sort: the index gives seq order */
	peer_plan(path, "SELECT count(*) FROM executions WHERE device_id = ?1 AND status IN (1, 2)",
			plan, sizeof(plan));
	CU_ASSERT_PTR_NOT_NULL(strstr(plan, "executions_device"));
	peer_plan(path, "SELECT * FROM audit WHERE target = ?2 AND ts_ms >= ?4 AND seq < ?5"
			" ORDER BY seq DESC LIMIT ?6", plan, sizeof(plan));
	CU_ASSERT_PTR_NOT_NULL(strstr(plan, "audit_target"));
	CU_ASSERT_PTR_NULL(strstr(plan, "TEMP B-TREE"));
}

/* ---- device groups ------------------------------------------------------ */

static void test_device_groups_set_get(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-g"), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-g", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{}");

	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "dev-g", "[\"north\",\"beta\"]", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-g", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[\"north\",\"beta\"]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{}");

	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "dev-g", NULL, "{\"ring\":\"2\"}"), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-g", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[\"north\",\"beta\"]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{\"ring\":\"2\"}");
	/* device-reported fields are not touched */
	CU_ASSERT_STRING_EQUAL(out.attributes_json, "{\"site\":\"north\"}");
	CU_ASSERT_EQUAL(out.presence, in.presence);

	/* both NULL: an existence check that changes nothing */
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "dev-g", NULL, NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "ghost", NULL, NULL), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "ghost", "[]", "{}"), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "ghost"));
	CU_ASSERT_EQUAL(peer_count_device(path, "ghost"), 0);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, NULL, "[]", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "", "[]", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(NULL, "dev-g", "[]", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(peer_text(path, "SELECT groups_json FROM devices WHERE id = 'dev-g'", path, sizeof(path)), 0);
	CU_ASSERT_STRING_EQUAL(path, "[\"north\",\"beta\"]");
	fleetmq_store_close(st);
}

struct group_walk {
	char groups[4][32];
	int n;
};

static int group_walk_cb(const struct fleetmq_device_rec *rec, void *userdata)
{
	struct group_walk *w = userdata;

	if(w->n < 4) snprintf(w->groups[w->n], sizeof(w->groups[0]), "%s", rec->groups_json);
	w->n++;
	return 0;
}

/* The device-report path writes zero-initialised records (groups NULL): they
 * must not clobber what an operator set. */
static void test_device_put_null_groups_keeps_existing(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_device_rec in = sample_device("dev-k"), out, old;
	struct group_walk w;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	/* a new row with explicit values */
	in.groups_json = "[\"a\"]";
	in.op_attributes_json = "{\"k\":\"v\"}";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-k", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[\"a\"]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{\"k\":\"v\"}");

	/* NULL keeps both, while the other fields are replaced */
	in.groups_json = NULL;
	in.op_attributes_json = NULL;
	in.device_type = "sensor";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-k", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.device_type, "sensor");
	CU_ASSERT_STRING_EQUAL(out.groups_json, "[\"a\"]");
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{\"k\":\"v\"}");

	/* one replaced, the other kept */
	in.groups_json = "[]";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, "dev-k", &old), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(old.groups_json, "[]");
	CU_ASSERT_STRING_EQUAL(old.op_attributes_json, "{\"k\":\"v\"}");

	/* get -> put round trip of the same record (strings from the scratch copy) */
	old.presence = 0;
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &old), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_device_get(st, old.id, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.presence, 0);
	CU_ASSERT_STRING_EQUAL(out.op_attributes_json, "{\"k\":\"v\"}");

	/* a new row with NULL gets the defaults; foreach returns the columns */
	memset(&in, 0, sizeof(in));
	in.id = "dev-new";
	CU_ASSERT_EQUAL(fleetmq_store_device_put(st, &in), FLEETMQ_OK);
	memset(&w, 0, sizeof(w));
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, group_walk_cb, &w), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(w.n, 2);
	CU_ASSERT_STRING_EQUAL(w.groups[0], "[]");       /* dev-k */
	CU_ASSERT_STRING_EQUAL(w.groups[1], "[]");       /* dev-new */
	CU_ASSERT_EQUAL(fleetmq_store_device_set_groups(st, "dev-new", "[\"z\"]", NULL), FLEETMQ_OK);
	memset(&w, 0, sizeof(w));
	CU_ASSERT_EQUAL(fleetmq_store_device_foreach(st, group_walk_cb, &w), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(w.groups[1], "[\"z\"]");
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM devices WHERE op_attributes_json = '{}'"), 1);
	fleetmq_store_close(st);
}

/* ---- jobs --------------------------------------------------------------- */

static struct fleetmq_job_rec sample_job(const char *id, uint64_t seq, enum fleetmq_job_status status)
{
	struct fleetmq_job_rec j;

	memset(&j, 0, sizeof(j));
	j.id = id;
	j.seq = seq;
	j.type = "update";
	j.spec_json = "{\"artifact\":\"fw-7.bin\"}";
	j.spec_hash = "sha256:abcd";
	j.status = status;
	j.created_ms = 1700000000000ULL;
	j.updated_ms = 1700000000500ULL;
	j.created_by = "alice";
	return j;
}

/* What a walk saw: keys in order, optionally stopping early, optionally
 * trying what a callback must not do. */
struct collect {
	char keys[16][48];
	uint64_t seqs[16];
	int n;
	int stop_at;                   /* return 9 when n reaches it; 0 = never */
	struct fleetmq_store *st;      /* set: probe forbidden / allowed calls once */
	int nested_rc, put_rc, begin_rc, commit_rc, audit_rc, get_rc, count_rc;
};

static int collect_add(struct collect *c, const char *key, uint64_t seq)
{
	if(c->n < 16){
		snprintf(c->keys[c->n], sizeof(c->keys[0]), "%s", key);
		c->seqs[c->n] = seq;
	}
	c->n++;
	return c->stop_at && c->n == c->stop_at ? 9 : 0;
}

static int job_collect_cb(const struct fleetmq_job_rec *rec, void *userdata)
{
	return collect_add(userdata, rec->id, rec->seq);
}

static int exec_collect_cb(const struct fleetmq_exec_rec *rec, void *userdata)
{
	char key[48];

	snprintf(key, sizeof(key), "%s/%s", rec->job_id, rec->device_id);
	return collect_add(userdata, key, rec->seq);
}

static int exec_device_cb(const struct fleetmq_exec_rec *rec, void *userdata)
{
	return collect_add(userdata, rec->device_id, rec->seq);
}

static void test_job_put_get_roundtrip(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_job_rec in = sample_job("job-1", 7, FM_JOB_IN_PROGRESS), out, again;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	in.status_reason = "rolling";
	in.continuous = true;
	in.fanout_done = true;
	in.fanout_cursor = "dev-0042";
	in.rollout_json = "{\"phase\":1}";
	in.updated_ms = UINT64_MAX;                    /* beyond int64: must round-trip */
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_OK);
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_job_get(st, "job-1", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.id, "job-1");
	CU_ASSERT_EQUAL(out.seq, 7);
	CU_ASSERT_STRING_EQUAL(out.type, "update");
	CU_ASSERT_STRING_EQUAL(out.spec_json, in.spec_json);
	CU_ASSERT_STRING_EQUAL(out.spec_hash, "sha256:abcd");
	CU_ASSERT_EQUAL(out.status, FM_JOB_IN_PROGRESS);
	CU_ASSERT_STRING_EQUAL(out.status_reason, "rolling");
	CU_ASSERT_TRUE(out.continuous);
	CU_ASSERT_TRUE(out.fanout_done);
	CU_ASSERT_STRING_EQUAL(out.fanout_cursor, "dev-0042");
	CU_ASSERT_STRING_EQUAL(out.rollout_json, "{\"phase\":1}");
	CU_ASSERT_EQUAL(out.created_ms, in.created_ms);
	CU_ASSERT_EQUAL(out.updated_ms, UINT64_MAX);
	CU_ASSERT_STRING_EQUAL(out.created_by, "alice");
	CU_ASSERT_PTR_NOT_EQUAL(out.spec_json, in.spec_json); /* a copy */

	/* upsert: every field replaced, still one row */
	in.status = FM_JOB_COMPLETED;
	in.status_reason = NULL;
	in.continuous = false;
	in.fanout_done = false;
	in.fanout_cursor = NULL;
	in.rollout_json = NULL;
	in.updated_ms = 9;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_job_get(st, "job-1", &again), FLEETMQ_OK);
	CU_ASSERT_EQUAL(again.status, FM_JOB_COMPLETED);
	CU_ASSERT_STRING_EQUAL(again.status_reason, "");
	CU_ASSERT_FALSE(again.continuous);
	CU_ASSERT_FALSE(again.fanout_done);
	CU_ASSERT_STRING_EQUAL(again.fanout_cursor, "");
	CU_ASSERT_STRING_EQUAL(again.rollout_json, "{}");
	CU_ASSERT_EQUAL(again.updated_ms, 9);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM jobs"), 1);

	/* the get's strings survive other calls; they can be the next key and be put back */
	CU_ASSERT_EQUAL(fleetmq_store_job_get(st, "ghost", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "ghost"));
	CU_ASSERT_STRING_EQUAL(again.created_by, "alice");
	again.status_reason = "done";
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &again), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_job_get(st, again.id, &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.status_reason, "done");
	CU_ASSERT_STRING_EQUAL(out.id, "job-1");
	fleetmq_store_close(st);
}

static void test_job_put_rejects_bad_records(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_job_rec in, ok = sample_job("job-a", 1, FM_JOB_SCHEDULED), out;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &ok), FLEETMQ_OK);

	in = ok; in.id = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.id = "";
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.type = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.spec_json = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.spec_hash = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.created_by = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.seq = 0;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.seq = (uint64_t)INT64_MAX + 1;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in = ok; in.status = (enum fleetmq_job_status)4;
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(NULL, &ok), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_get(st, NULL, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_get(st, "job-a", NULL), FLEETMQ_ERR_BAD_REQUEST);

	/* seq is unique among jobs: another job cannot take it */
	in = sample_job("job-b", 1, FM_JOB_SCHEDULED);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &in), FLEETMQ_ERR_IO);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "UNIQUE"));
	CU_ASSERT_EQUAL(fleetmq_store_job_get(st, "job-b", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM jobs"), 1);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT seq FROM jobs WHERE id = 'job-a'"), 1);
	fleetmq_store_close(st);
}

static void put_jobs(struct fleetmq_store *st)
{
	/* inserted out of seq order; statuses mixed */
	static const struct { const char *id; uint64_t seq; enum fleetmq_job_status status; } jobs[] = {
		{ "j-c", 30, FM_JOB_SCHEDULED },
		{ "j-a", 10, FM_JOB_COMPLETED },
		{ "j-e", 50, FM_JOB_IN_PROGRESS },
		{ "j-b", 20, FM_JOB_IN_PROGRESS },
		{ "j-d", 40, FM_JOB_CANCELED },
	};
	struct fleetmq_job_rec j;

	for(size_t i = 0; i < sizeof(jobs) / sizeof(jobs[0]); i++){
		j = sample_job(jobs[i].id, jobs[i].seq, jobs[i].status);
		CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &j), FLEETMQ_OK);
	}
}

static void test_job_foreach_seq_order_open_only(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, false, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	put_jobs(st);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, false, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 5);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-a");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "j-b");
	CU_ASSERT_STRING_EQUAL(c.keys[2], "j-c");
	CU_ASSERT_STRING_EQUAL(c.keys[3], "j-d");
	CU_ASSERT_STRING_EQUAL(c.keys[4], "j-e");
	CU_ASSERT_EQUAL(c.seqs[4], 50);

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, true, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 3);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-b");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "j-c");
	CU_ASSERT_STRING_EQUAL(c.keys[2], "j-e");

	/* early stop returns the callback's value; the next walk starts over */
	memset(&c, 0, sizeof(c));
	c.stop_at = 2;
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, false, job_collect_cb, &c), 9);
	CU_ASSERT_EQUAL(c.n, 2);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, true, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 3);
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, true, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(NULL, true, job_collect_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_job_list_paging_status_filter(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;
	uint64_t after = 0;
	int pages = 0, total = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_jobs(st);

	/* pages of 2: 10 20 | 30 40 | 50 | (empty) */
	for(;;){
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(fleetmq_store_job_list(st, -1, after, 2, job_collect_cb, &c), FLEETMQ_OK);
		if(c.n == 0) break;
		CU_ASSERT_TRUE(c.n <= 2);
		CU_ASSERT_TRUE(c.seqs[0] > after);
		if(pages == 0) CU_ASSERT_STRING_EQUAL(c.keys[0], "j-a");
		if(pages == 1) CU_ASSERT_EQUAL(c.seqs[1], 40);
		if(pages == 2){
			CU_ASSERT_EQUAL(c.n, 1);
			CU_ASSERT_STRING_EQUAL(c.keys[0], "j-e");
		}
		after = c.seqs[c.n - 1];
		total += c.n;
		CU_ASSERT_FATAL(++pages <= 5);
	}
	CU_ASSERT_EQUAL(pages, 3);
	CU_ASSERT_EQUAL(total, 5);

	/* status filter, also combined with paging */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, FM_JOB_IN_PROGRESS, 0, 0, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-b");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "j-e");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, FM_JOB_IN_PROGRESS, 20, 1, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 1);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-e");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, FM_JOB_CANCELED, 0, -1, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 1);
	/* after the last seq: nothing */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, -1, 50, 10, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, 4, 0, 10, job_collect_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, -2, 0, 10, job_collect_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_job_list(st, -1, 0, 10, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

/* ---- executions --------------------------------------------------------- */

static struct fleetmq_exec_rec sample_exec(const char *job, const char *device, uint64_t seq,
		enum fleetmq_exec_status status, bool canary)
{
	struct fleetmq_exec_rec x;

	memset(&x, 0, sizeof(x));
	x.job_id = job;
	x.device_id = device;
	x.seq = seq;
	x.canary = canary;
	x.e.status = status;
	x.e.version = 1;
	x.e.attempt = 1;
	x.e.progress_percent = -1;
	return x;
}

static void put_exec(struct fleetmq_store *st, const char *job, const char *device, uint64_t seq,
		enum fleetmq_exec_status status, bool canary)
{
	struct fleetmq_exec_rec x = sample_exec(job, device, seq, status, canary);

	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &x), FLEETMQ_OK);
}

static void test_exec_put_get_roundtrip(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_exec_rec in = sample_exec("job-1", "dev-1", 12, FM_EXEC_IN_PROGRESS, true), out, again;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	in.e.version = 4;
	in.e.attempt = 3;
	in.e.queued_ms = 100;
	in.e.started_ms = 200;
	in.e.updated_ms = 300;
	in.e.deadline_ms = 400;
	in.e.retry_at_ms = 500;
	in.e.progress_percent = 42;
	in.step = "flashing";
	in.details_json = "{\"bytes\":1024}";
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_OK);
	memset(&out, 0, sizeof(out));
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_exec_get(st, "job-1", "dev-1", &out), FLEETMQ_OK);
	CU_ASSERT_STRING_EQUAL(out.job_id, "job-1");
	CU_ASSERT_STRING_EQUAL(out.device_id, "dev-1");
	CU_ASSERT_EQUAL(out.seq, 12);
	CU_ASSERT_TRUE(out.canary);
	CU_ASSERT_EQUAL(out.e.status, FM_EXEC_IN_PROGRESS);
	CU_ASSERT_EQUAL(out.e.version, 4);
	CU_ASSERT_EQUAL(out.e.attempt, 3);
	CU_ASSERT_EQUAL(out.e.queued_ms, 100);
	CU_ASSERT_EQUAL(out.e.started_ms, 200);
	CU_ASSERT_EQUAL(out.e.updated_ms, 300);
	CU_ASSERT_EQUAL(out.e.deadline_ms, 400);
	CU_ASSERT_EQUAL(out.e.retry_at_ms, 500);
	CU_ASSERT_EQUAL(out.e.progress_percent, 42);
	CU_ASSERT_STRING_EQUAL(out.step, "flashing");
	CU_ASSERT_STRING_EQUAL(out.details_json, "{\"bytes\":1024}");
	CU_ASSERT_PTR_NOT_EQUAL(out.step, in.step);

	/* upsert keyed by (job, device); NULL strings -> "" / "{}"; -1 progress kept as -1 */
	in.e.status = FM_EXEC_SUCCEEDED;
	in.e.version = 5;
	in.e.progress_percent = -1;
	in.canary = false;
	in.step = NULL;
	in.details_json = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_exec_get(st, "job-1", "dev-1", &again), FLEETMQ_OK);
	CU_ASSERT_EQUAL(again.e.status, FM_EXEC_SUCCEEDED);
	CU_ASSERT_EQUAL(again.e.version, 5);
	CU_ASSERT_EQUAL(again.e.progress_percent, -1);
	CU_ASSERT_FALSE(again.canary);
	CU_ASSERT_STRING_EQUAL(again.step, "");
	CU_ASSERT_STRING_EQUAL(again.details_json, "{}");
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM executions"), 1);
	/* the same device in another job is another row */
	put_exec(st, "job-2", "dev-1", 13, FM_EXEC_QUEUED, false);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM executions"), 2);

	/* gets: miss leaves earlier strings alone; keys may come from the scratch copy */
	CU_ASSERT_EQUAL(fleetmq_store_exec_get(st, "job-1", "ghost", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "job-1/ghost"));
	CU_ASSERT_EQUAL(fleetmq_store_exec_get(st, "job-3", "dev-1", &out), FLEETMQ_ERR_NOT_FOUND);
	CU_ASSERT_STRING_EQUAL(again.job_id, "job-1");
	CU_ASSERT_EQUAL_FATAL(fleetmq_store_exec_get(st, again.job_id, again.device_id, &out), FLEETMQ_OK);
	CU_ASSERT_EQUAL(out.e.version, 5);

	/* bad arguments */
	in = sample_exec("job-1", "dev-1", 12, FM_EXEC_QUEUED, false);
	in.job_id = NULL;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in.job_id = "job-1";
	in.device_id = "";
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in.device_id = "dev-1";
	in.e.status = (enum fleetmq_exec_status)FM_EXEC_STATUS_COUNT;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	in.e.status = FM_EXEC_QUEUED;
	in.seq = 0;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &in), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_get(st, "job-1", NULL, &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_get(st, NULL, "dev-1", &out), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_get(st, "job-1", "dev-1", NULL), FLEETMQ_ERR_BAD_REQUEST);
	/* nothing above changed the row */
	CU_ASSERT_EQUAL(peer_int(path, "SELECT status FROM executions WHERE job_id = 'job-1'"), FM_EXEC_SUCCEEDED);
	fleetmq_store_close(st);
}

static void test_exec_foreach_device_order_active_only(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_exec(st, "j-a", "d1", 5, FM_EXEC_QUEUED, false);
	put_exec(st, "j-b", "d1", 3, FM_EXEC_IN_PROGRESS, false);
	put_exec(st, "j-c", "d1", 1, FM_EXEC_SUCCEEDED, false);
	put_exec(st, "j-d", "d1", 2, FM_EXEC_PENDING, false);
	put_exec(st, "j-e", "d1", 4, FM_EXEC_QUEUED, false);
	put_exec(st, "j-f", "d1", 6, FM_EXEC_IN_PROGRESS, false);
	put_exec(st, "j-g", "d1", 7, FM_EXEC_FAILED, false);
	put_exec(st, "j-a", "d2", 8, FM_EXEC_IN_PROGRESS, false);   /* another device */

	/* active: IN_PROGRESS by seq, then QUEUED by seq */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "d1", true, exec_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 4);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-b/d1");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "j-f/d1");
	CU_ASSERT_STRING_EQUAL(c.keys[2], "j-e/d1");
	CU_ASSERT_STRING_EQUAL(c.keys[3], "j-a/d1");

	/* all: by seq, whatever the status */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "d1", false, exec_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 7);
	for(int i = 0; i < 7; i++) CU_ASSERT_EQUAL(c.seqs[i], (uint64_t)i + 1);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "j-c/d1");
	CU_ASSERT_STRING_EQUAL(c.keys[6], "j-g/d1");

	/* a device with nothing active / unknown device */
	put_exec(st, "j-a", "d3", 9, FM_EXEC_SUCCEEDED, false);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "d3", true, exec_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "nobody", false, exec_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	/* early stop */
	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "d1", true, exec_collect_cb, &c), 9);
	CU_ASSERT_EQUAL(c.n, 1);
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, NULL, true, exec_collect_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_device(st, "d1", true, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_exec_foreach_job_paging_status_filter(void)
{
	static const enum fleetmq_exec_status statuses[7] = {
		FM_EXEC_QUEUED, FM_EXEC_SUCCEEDED, FM_EXEC_QUEUED, FM_EXEC_FAILED,
		FM_EXEC_PENDING, FM_EXEC_QUEUED, FM_EXEC_SUCCEEDED,
	};
	char path[256], dev[16], after[48] = "";
	struct fleetmq_store *st;
	struct collect c;
	int pages = 0, total = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	/* d6 .. d0, inserted in reverse and with seq unrelated to device id */
	for(int i = 6; i >= 0; i--){
		snprintf(dev, sizeof(dev), "d%d", i);
		put_exec(st, "job", dev, (uint64_t)(100 - i), statuses[i], false);
	}
	put_exec(st, "other", "d3", 1, FM_EXEC_QUEUED, false);
	put_exec(st, "joc", "d0", 2, FM_EXEC_QUEUED, false);      /* id sorting right after "job" */

	/* pages of 3 by device id: d0 d1 d2 | d3 d4 d5 | d6 */
	for(;;){
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(fleetmq_store_exec_foreach_job(st, "job", -1, after, 3, exec_device_cb, &c),
				FLEETMQ_OK);
		if(c.n == 0) break;
		if(pages == 0){
			CU_ASSERT_EQUAL(c.n, 3);
			CU_ASSERT_STRING_EQUAL(c.keys[0], "d0");
			CU_ASSERT_STRING_EQUAL(c.keys[2], "d2");
		}
		if(pages == 1) CU_ASSERT_STRING_EQUAL(c.keys[0], "d3");
		if(pages == 2){
			CU_ASSERT_EQUAL(c.n, 1);
			CU_ASSERT_STRING_EQUAL(c.keys[0], "d6");
		}
		snprintf(after, sizeof(after), "%s", c.keys[c.n - 1]);
		total += c.n;
		CU_ASSERT_FATAL(++pages <= 5);
	}
	CU_ASSERT_EQUAL(pages, 3);
	CU_ASSERT_EQUAL(total, 7);

	/* status filter: QUEUED are d0 d2 d5; paged by 2 */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", FM_EXEC_QUEUED, "", 2, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "d0");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "d2");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", FM_EXEC_QUEUED, "d2", 2, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 1);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "d5");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", FM_EXEC_SUCCEEDED, "", 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 2);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", FM_EXEC_REMOVED, "", 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", -1, NULL, 3, exec_device_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", 9, "", 3, exec_device_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "", -1, "", 3, exec_device_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_exec_pending_by_canary_in_seq_order(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_exec(st, "job", "m3", 30, FM_EXEC_PENDING, false);
	put_exec(st, "job", "c2", 25, FM_EXEC_PENDING, true);
	put_exec(st, "job", "m1", 10, FM_EXEC_PENDING, false);
	put_exec(st, "job", "c1", 15, FM_EXEC_PENDING, true);
	put_exec(st, "job", "m2", 20, FM_EXEC_PENDING, false);
	put_exec(st, "job", "c0", 5, FM_EXEC_QUEUED, true);         /* released already */
	put_exec(st, "job", "m0", 1, FM_EXEC_CANCELED, false);
	put_exec(st, "other", "m9", 2, FM_EXEC_PENDING, false);     /* other job */

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, "job", true, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "c1");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "c2");

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, "job", false, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 3);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "m1");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "m2");
	CU_ASSERT_STRING_EQUAL(c.keys[2], "m3");

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, "job", false, 2, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[1], "m2");

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, "nojob", false, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, NULL, false, 0, exec_device_cb, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_pending(st, "job", false, 0, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void put_exec_times(struct fleetmq_store *st, const char *device, uint64_t seq,
		enum fleetmq_exec_status status, uint64_t deadline_ms, uint64_t retry_at_ms)
{
	struct fleetmq_exec_rec x = sample_exec("job", device, seq, status, false);

	x.e.deadline_ms = deadline_ms;
	x.e.retry_at_ms = retry_at_ms;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &x), FLEETMQ_OK);
}

static void test_exec_due_deadline_and_retry_boundaries(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_exec_times(st, "dl-at",     1, FM_EXEC_IN_PROGRESS, 1000, 0);     /* due: deadline == now */
	put_exec_times(st, "dl-early",  2, FM_EXEC_IN_PROGRESS, 400, 0);      /* due, earlier deadline */
	put_exec_times(st, "dl-after",  3, FM_EXEC_IN_PROGRESS, 1001, 0);     /* not yet */
	put_exec_times(st, "dl-none",   4, FM_EXEC_IN_PROGRESS, 0, 0);        /* no deadline */
	put_exec_times(st, "dl-queued", 5, FM_EXEC_QUEUED, 500, 0);           /* deadline only counts IN_PROGRESS */
	put_exec_times(st, "dl-huge",   6, FM_EXEC_IN_PROGRESS, UINT64_MAX, 0); /* never */
	put_exec_times(st, "rt-at",     7, FM_EXEC_FAILED, 0, 1000);          /* due: retry == now */
	put_exec_times(st, "rt-early",  8, FM_EXEC_TIMED_OUT, 0, 300);        /* due, earlier */
	put_exec_times(st, "rt-after",  9, FM_EXEC_FAILED, 0, 1001);          /* not yet */
	put_exec_times(st, "rt-none",  10, FM_EXEC_FAILED, 0, 0);             /* final */
	put_exec_times(st, "both",     11, FM_EXEC_IN_PROGRESS, 900, 800);    /* both due: reported once */

	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 5);
	/* deadlines first, by deadline; then retries, by retry time */
	CU_ASSERT_STRING_EQUAL(c.keys[0], "dl-early");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "both");
	CU_ASSERT_STRING_EQUAL(c.keys[2], "dl-at");
	CU_ASSERT_STRING_EQUAL(c.keys[3], "rt-early");
	CU_ASSERT_STRING_EQUAL(c.keys[4], "rt-at");

	/* one ms earlier: the "== now" rows are not due yet */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 999, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 3);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1001, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 7);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 299, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);
	/* a far-future now does not make "huge" due (and now is clamped, not wrapped) */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, UINT64_MAX, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 7);

	/* the limit spans both queries */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 2, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 2);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 4, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 4);
	CU_ASSERT_STRING_EQUAL(c.keys[3], "rt-early");
	/* a stop in the first query ends the walk */
	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 0, exec_device_cb, &c), 9);
	CU_ASSERT_EQUAL(c.n, 1);

	/* handled (deadline passed -> TIMED_OUT with a retry later): no longer due now */
	put_exec_times(st, "dl-early", 2, FM_EXEC_TIMED_OUT, 400, 5000);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 0, exec_device_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 4);
	CU_ASSERT_EQUAL(fleetmq_store_exec_due(st, 1000, 0, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_exec_counts_and_canary_counts(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_exec_rec x;
	uint64_t counts[FM_EXEC_STATUS_COUNT];

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_exec(st, "job", "a", 1, FM_EXEC_SUCCEEDED, true);
	put_exec(st, "job", "b", 2, FM_EXEC_SUCCEEDED, true);
	put_exec(st, "job", "c", 3, FM_EXEC_FAILED, true);
	put_exec(st, "job", "d", 4, FM_EXEC_SUCCEEDED, false);
	put_exec(st, "job", "e", 5, FM_EXEC_PENDING, false);
	put_exec(st, "job", "f", 6, FM_EXEC_PENDING, false);
	put_exec(st, "job", "g", 7, FM_EXEC_IN_PROGRESS, false);
	put_exec(st, "job", "h", 8, FM_EXEC_REMOVED, false);
	x = sample_exec("job", "i", 9, FM_EXEC_FAILED, false);      /* retry pending: not final */
	x.e.retry_at_ms = 123;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &x), FLEETMQ_OK);
	x = sample_exec("job", "j", 10, FM_EXEC_TIMED_OUT, true);   /* canary, retry pending */
	x.e.retry_at_ms = 456;
	CU_ASSERT_EQUAL(fleetmq_store_exec_put(st, &x), FLEETMQ_OK);
	put_exec(st, "other", "a", 11, FM_EXEC_SUCCEEDED, true);

	memset(counts, 0xff, sizeof(counts));             /* must be overwritten */
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts(st, "job", counts), FLEETMQ_OK);
	CU_ASSERT_EQUAL(counts[FM_EXEC_PENDING], 2);
	CU_ASSERT_EQUAL(counts[FM_EXEC_QUEUED], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_IN_PROGRESS], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_SUCCEEDED], 3);
	CU_ASSERT_EQUAL(counts[FM_EXEC_FAILED], 2);
	CU_ASSERT_EQUAL(counts[FM_EXEC_REJECTED], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_TIMED_OUT], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_CANCELED], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_REMOVED], 1);

	memset(counts, 0xff, sizeof(counts));
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts_canary(st, "job", counts), FLEETMQ_OK);
	CU_ASSERT_EQUAL(counts[FM_EXEC_SUCCEEDED], 2);
	CU_ASSERT_EQUAL(counts[FM_EXEC_FAILED], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_TIMED_OUT], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_PENDING], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_REMOVED], 0);

	/* final: terminal and no retry pending */
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts_final(st, "job", false, counts), FLEETMQ_OK);
	CU_ASSERT_EQUAL(counts[FM_EXEC_SUCCEEDED], 3);
	CU_ASSERT_EQUAL(counts[FM_EXEC_FAILED], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_TIMED_OUT], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_REMOVED], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_PENDING], 0);
	CU_ASSERT_EQUAL(counts[FM_EXEC_IN_PROGRESS], 0);
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts_final(st, "job", true, counts), FLEETMQ_OK);
	CU_ASSERT_EQUAL(counts[FM_EXEC_SUCCEEDED], 2);
	CU_ASSERT_EQUAL(counts[FM_EXEC_FAILED], 1);
	CU_ASSERT_EQUAL(counts[FM_EXEC_TIMED_OUT], 0);

	/* unknown job: all zero */
	memset(counts, 0xff, sizeof(counts));
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts(st, "nojob", counts), FLEETMQ_OK);
	for(int i = 0; i < FM_EXEC_STATUS_COUNT; i++) CU_ASSERT_EQUAL(counts[i], 0);
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts(st, NULL, counts), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts(st, "job", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_counts_canary(st, "", counts), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_exec_count_device_active(void)
{
	char path[256];
	struct fleetmq_store *st;
	uint64_t n = 99;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, "d1", &n), FLEETMQ_OK);
	CU_ASSERT_EQUAL(n, 0);
	put_exec(st, "j1", "d1", 1, FM_EXEC_QUEUED, false);
	put_exec(st, "j2", "d1", 2, FM_EXEC_IN_PROGRESS, false);
	put_exec(st, "j3", "d1", 3, FM_EXEC_QUEUED, true);
	put_exec(st, "j4", "d1", 4, FM_EXEC_PENDING, false);
	put_exec(st, "j5", "d1", 5, FM_EXEC_SUCCEEDED, false);
	put_exec(st, "j6", "d1", 6, FM_EXEC_CANCELED, false);
	put_exec(st, "j1", "d2", 7, FM_EXEC_IN_PROGRESS, false);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, "d1", &n), FLEETMQ_OK);
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, "d2", &n), FLEETMQ_OK);
	CU_ASSERT_EQUAL(n, 1);
	put_exec(st, "j2", "d1", 2, FM_EXEC_SUCCEEDED, false);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, "d1", &n), FLEETMQ_OK);
	CU_ASSERT_EQUAL(n, 2);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, NULL, &n), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_exec_count_device_active(st, "d1", NULL), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

static void test_max_seq_over_jobs_and_executions(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_job_rec j;
	uint64_t seq = 99;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, &seq), FLEETMQ_OK);
	CU_ASSERT_EQUAL(seq, 0);

	j = sample_job("j1", 10, FM_JOB_SCHEDULED);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &j), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, &seq), FLEETMQ_OK);
	CU_ASSERT_EQUAL(seq, 10);
	put_exec(st, "j1", "d1", 15, FM_EXEC_QUEUED, false);
	put_exec(st, "j1", "d2", 11, FM_EXEC_QUEUED, false);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, &seq), FLEETMQ_OK);
	CU_ASSERT_EQUAL(seq, 15);
	j = sample_job("j2", 20, FM_JOB_SCHEDULED);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &j), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, &seq), FLEETMQ_OK);
	CU_ASSERT_EQUAL(seq, 20);
	/* large values survive (seq is 1..INT64_MAX) */
	put_exec(st, "j2", "d1", (uint64_t)INT64_MAX, FM_EXEC_PENDING, false);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, &seq), FLEETMQ_OK);
	CU_ASSERT_EQUAL(seq, (uint64_t)INT64_MAX);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(st, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_max_seq(NULL, &seq), FLEETMQ_ERR_BAD_REQUEST);
	fleetmq_store_close(st);
}

/* ---- audit -------------------------------------------------------------- */

static int audit_collect_cb(const struct fleetmq_audit_rec *rec, void *userdata)
{
	char key[48];

	snprintf(key, sizeof(key), "%s:%s:%s", rec->actor, rec->action, rec->target);
	return collect_add(userdata, key, rec->seq);
}

/* seq 1..8 in this order */
static void put_audit(struct fleetmq_store *st)
{
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 100, "alice", "create", "jobs/j1", "{\"n\":1}"), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 200, "bob", "cancel", "jobs/j1", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 300, "alice", "set", "devices/d1", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 400, "alice", "create", "jobs/j2", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 500, "bob", "set", "jobs", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 600, "carol", "set", "jobsX", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 700, "bob", "set", "jobs/*", NULL), FLEETMQ_OK);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 800, "alice", "set", "jobs0", NULL), FLEETMQ_OK);
}

static void test_audit_add_query_filters(void)
{
	char path[256], detail[64];
	struct fleetmq_store *st;
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);
	put_audit(st);
	CU_ASSERT_EQUAL(peer_text(path, "SELECT detail_json FROM audit WHERE seq = 1", detail, sizeof(detail)), 0);
	CU_ASSERT_STRING_EQUAL(detail, "{\"n\":1}");
	CU_ASSERT_EQUAL(peer_text(path, "SELECT detail_json FROM audit WHERE seq = 2", detail, sizeof(detail)), 0);
	CU_ASSERT_STRING_EQUAL(detail, "{}");

	/* everything, newest first */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 8);
	for(int i = 0; i < 8; i++) CU_ASSERT_EQUAL(c.seqs[i], (uint64_t)(8 - i));
	CU_ASSERT_STRING_EQUAL(c.keys[7], "alice:create:jobs/j1");

	/* actor */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "bob", NULL, 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 3);
	CU_ASSERT_EQUAL(c.seqs[0], 7);
	CU_ASSERT_EQUAL(c.seqs[1], 5);
	CU_ASSERT_EQUAL(c.seqs[2], 2);

	/* exact target: a trailing '*' is what makes a prefix, nothing else */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "jobs/j1", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "bob:cancel:jobs/j1");
	CU_ASSERT_STRING_EQUAL(c.keys[1], "alice:create:jobs/j1");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "jobs", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 1);
	CU_ASSERT_EQUAL(c.seqs[0], 5);

	/* prefix: "jobs/" + anything, including the target literally named
	 * "jobs/" "*"; not "jobs", "jobsX" or "jobs0" ('0' is '/' + 1: the end
	 * of the range) */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "jobs/*", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 4);
	CU_ASSERT_EQUAL(c.seqs[0], 7);
	CU_ASSERT_EQUAL(c.seqs[1], 4);
	CU_ASSERT_EQUAL(c.seqs[2], 2);
	CU_ASSERT_EQUAL(c.seqs[3], 1);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "jobs*", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 7);                       /* all but devices/d1 */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "*", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 8);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, "zzz*", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	/* actor + prefix, actor + exact */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "alice", "jobs/*", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_STRING_EQUAL(c.keys[0], "alice:create:jobs/j2");
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "bob", "jobs/j1", 0, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 1);
	CU_ASSERT_EQUAL(c.seqs[0], 2);

	/* since_ms is inclusive */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, 600, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 3);
	CU_ASSERT_EQUAL(c.seqs[2], 6);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "alice", "jobs/*", 101, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 1);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, UINT64_MAX, 0, 0, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 1, NULL, "x", "y", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 1, "x", NULL, "y", NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 1, "x", "y", NULL, NULL), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, 0, 0, 0, NULL, &c), FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM audit"), 8);
	fleetmq_store_close(st);
}

static void test_audit_query_paging_newest_first(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct collect c;
	uint64_t before = 0, seen[8];
	int pages = 0, total = 0;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	put_audit(st);

	/* pages of 3 over everything: 8 7 6 | 5 4 3 | 2 1 */
	for(;;){
		memset(&c, 0, sizeof(c));
		CU_ASSERT_EQUAL_FATAL(fleetmq_store_audit_query(st, NULL, NULL, 0, before, 3, audit_collect_cb, &c),
				FLEETMQ_OK);
		if(c.n == 0) break;
		CU_ASSERT_TRUE(c.n <= 3);
		for(int i = 0; i < c.n && total + i < 8; i++) seen[total + i] = c.seqs[i];
		total += c.n;
		before = c.seqs[c.n - 1];
		CU_ASSERT_FATAL(++pages <= 5);
	}
	CU_ASSERT_EQUAL(pages, 3);
	CU_ASSERT_EQUAL_FATAL(total, 8);
	for(int i = 0; i < 8; i++) CU_ASSERT_EQUAL(seen[i], (uint64_t)(8 - i));

	/* paging with a filter: alice's (8 4 3 1) by 2 */
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "alice", NULL, 0, 0, 2, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_EQUAL(c.seqs[0], 8);
	CU_ASSERT_EQUAL(c.seqs[1], 4);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "alice", NULL, 0, 4, 2, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL_FATAL(c.n, 2);
	CU_ASSERT_EQUAL(c.seqs[0], 3);
	CU_ASSERT_EQUAL(c.seqs[1], 1);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, "alice", NULL, 0, 1, 2, audit_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 0);

	/* seq is AUTOINCREMENT: never reused after the newest row is deleted */
	CU_ASSERT_EQUAL_FATAL(peer_exec(path, "DELETE FROM audit WHERE seq = 8;"), 0);
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 900, "dave", "x", "y", NULL), FLEETMQ_OK);
	memset(&c, 0, sizeof(c));
	c.stop_at = 1;
	CU_ASSERT_EQUAL(fleetmq_store_audit_query(st, NULL, NULL, 0, 0, 0, audit_collect_cb, &c), 9);
	CU_ASSERT_EQUAL(c.seqs[0], 9);
	fleetmq_store_close(st);
}

/* ---- walks -------------------------------------------------------------- */

static int probing_cb(const struct fleetmq_exec_rec *rec, void *userdata)
{
	struct collect *c = userdata;
	struct fleetmq_exec_rec x = *rec;
	struct fleetmq_job_rec j;
	struct collect inner;
	uint64_t counts[FM_EXEC_STATUS_COUNT];

	if(c->st && c->n == 0){
		memset(&inner, 0, sizeof(inner));
		c->nested_rc = fleetmq_store_job_foreach(c->st, false, job_collect_cb, &inner);
		x.e.version++;
		c->put_rc = fleetmq_store_exec_put(c->st, &x);
		c->begin_rc = fleetmq_store_begin(c->st);
		c->commit_rc = fleetmq_store_commit(c->st);
		c->audit_rc = fleetmq_store_audit_add(c->st, 1, "a", "b", "c", NULL);
		/* reads that are not walks stay allowed */
		c->get_rc = fleetmq_store_job_get(c->st, rec->job_id, &j);
		c->count_rc = fleetmq_store_exec_counts(c->st, rec->job_id, counts);
	}
	return exec_device_cb(rec, userdata);
}

/* A callback can read, but not walk again, write or end the transaction; the
 * outer walk goes on undisturbed. */
static void test_walk_callback_refuses_writes_and_nesting(void)
{
	char path[256];
	struct fleetmq_store *st;
	struct fleetmq_job_rec j = sample_job("job", 1, FM_JOB_IN_PROGRESS);
	struct collect c;

	new_db_path(path, sizeof(path));
	st = open_ok(path);
	CU_ASSERT_PTR_NOT_NULL_FATAL(st);
	CU_ASSERT_EQUAL(fleetmq_store_job_put(st, &j), FLEETMQ_OK);
	put_exec(st, "job", "d1", 2, FM_EXEC_QUEUED, false);
	put_exec(st, "job", "d2", 3, FM_EXEC_QUEUED, false);
	put_exec(st, "job", "d3", 4, FM_EXEC_QUEUED, false);

	memset(&c, 0, sizeof(c));
	c.st = st;
	CU_ASSERT_EQUAL(fleetmq_store_exec_foreach_job(st, "job", -1, "", 0, probing_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 3);                       /* the walk was not disturbed */
	CU_ASSERT_STRING_EQUAL(c.keys[2], "d3");
	CU_ASSERT_EQUAL(c.nested_rc, FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(c.put_rc, FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(c.begin_rc, FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(c.commit_rc, FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(c.audit_rc, FLEETMQ_ERR_BAD_REQUEST);
	CU_ASSERT_EQUAL(c.get_rc, FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.count_rc, FLEETMQ_OK);
	CU_ASSERT_PTR_NOT_NULL(strstr(fleetmq_store_last_error(st), "walk"));
	CU_ASSERT_FALSE(fleetmq_store_in_txn(st));
	CU_ASSERT_EQUAL(peer_int(path, "SELECT max(version) FROM executions"), 1);
	CU_ASSERT_EQUAL(peer_int(path, "SELECT count(*) FROM audit"), 0);

	/* after the walk, everything works again */
	CU_ASSERT_EQUAL(fleetmq_store_audit_add(st, 1, "a", "b", "c", NULL), FLEETMQ_OK);
	memset(&c, 0, sizeof(c));
	CU_ASSERT_EQUAL(fleetmq_store_job_foreach(st, false, job_collect_cb, &c), FLEETMQ_OK);
	CU_ASSERT_EQUAL(c.n, 1);
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
		T(test_migrate_v1_to_v2_in_place),
		T(test_schema_v2_indexes_serve_queries),
		T(test_device_groups_set_get),
		T(test_device_put_null_groups_keeps_existing),
		T(test_job_put_get_roundtrip),
		T(test_job_put_rejects_bad_records),
		T(test_job_foreach_seq_order_open_only),
		T(test_job_list_paging_status_filter),
		T(test_exec_put_get_roundtrip),
		T(test_exec_foreach_device_order_active_only),
		T(test_exec_foreach_job_paging_status_filter),
		T(test_exec_pending_by_canary_in_seq_order),
		T(test_exec_due_deadline_and_retry_boundaries),
		T(test_exec_counts_and_canary_counts),
		T(test_exec_count_device_active),
		T(test_max_seq_over_jobs_and_executions),
		T(test_audit_add_query_filters),
		T(test_audit_query_paging_newest_first),
		T(test_walk_callback_refuses_writes_and_nesting),
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
