/*
 * store.c - the SQLite backend of store.h.
 *
 * Owns one SQLite connection (WAL, synchronous=FULL unless configured
 * NORMAL), its prepared statements and a scratch copy of the last device
 * record handed out by fleetmq_store_device_get(). It knows rows and columns,
 * nothing about MQTT, shadows' contents or presence rules.
 *
 * - Schema: PRAGMA user_version counts the applied entries of migrations[];
 *   entry i takes the schema from version i to i + 1 and runs in its own
 *   BEGIN IMMEDIATE transaction together with the user_version bump, so a
 *   crash mid-migration leaves the previous version intact. A newer database
 *   is refused before anything is written to it.
 * - Statements are prepared once at open (SQLITE_PREPARE_PERSISTENT) and
 *   reset + unbound right after each use, so no read transaction lingers
 *   (a lingering reader would hold back WAL checkpoints).
 * - Transactions: the caller's group transaction is plain BEGIN IMMEDIATE /
 *   COMMIT; whether one is open is asked from SQLite (sqlite3_get_autocommit),
 *   which also notices the automatic rollbacks SQLite does after I/O errors.
 *   A failed COMMIT is rolled back here, so callers never see a half-open
 *   state. Operations made of several statements (shadow_put) run inside a
 *   SAVEPOINT so they are atomic with or without a group transaction.
 * - Durability of names: SQLite fsyncs the directory when it creates the WAL;
 *   for a newly created database file we fsync the directory ourselves.
 * - Checkpoints: wal_autocheckpoint stays at SQLite's default (1000 pages,
 *   ~4 MiB): the commit that crosses it runs a PASSIVE checkpoint on the
 *   caller's thread (a few ms with an fsync of the main file). That keeps the
 *   WAL bounded without a helper thread; a TICK-driven checkpoint can replace
 *   it if that latency ever matters.
 *
 * Must never: hold a statement un-reset across calls, write a database newer
 * than this code, or hand out pointers into SQLite memory beyond the
 * documented lifetime. Single-threaded (SQLITE_OPEN_NOMUTEX).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "store.h"

#define STORE_DEFAULT_BUSY_TIMEOUT_MS 5000
#define STORE_ERRMSG_BYTES 512

/* ---- schema ------------------------------------------------------------- */

/* migrations[i] migrates user_version i -> i + 1. Append only; never edit an
 * entry that has shipped. */
static const char *const migrations[] = {
	/* 0 -> 1: device registry and shadows. */
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
	") WITHOUT ROWID;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == FLEETMQ_STORE_SCHEMA_VERSION,
		"one migration per schema version");

/* ---- prepared statements ------------------------------------------------ */

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_DEVICE_PUT,
	ST_DEVICE_SET_PRESENCE,
	ST_DEVICE_GET,
	ST_DEVICE_ALL,
	ST_SHADOW_PUT,
	ST_SHADOW_SET_DEVICE_VERSION,
	ST_SHADOW_GET,
	ST__COUNT
};

#define DEVICE_COLUMNS "id, device_type, hw_revision, agent_version, software_json, attributes_json," \
	" presence, presence_since_ms, last_seen_ms, connected_at_ms, created_ms, shadow_version"

/* Column indexes of DEVICE_COLUMNS (also the bind indexes of ST_DEVICE_PUT, minus one). */
enum device_col {
	DC_ID, DC_TYPE, DC_HW, DC_AGENT, DC_SOFTWARE, DC_ATTRIBUTES,
	DC_PRESENCE, DC_PRESENCE_SINCE, DC_LAST_SEEN, DC_CONNECTED_AT, DC_CREATED, DC_SHADOW_VERSION,
	DC__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT fleetmq_op",
	[ST_RELEASE] = "RELEASE fleetmq_op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO fleetmq_op",
	[ST_DEVICE_PUT] =
		"INSERT INTO devices(" DEVICE_COLUMNS ")"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
		" ON CONFLICT(id) DO UPDATE SET"
		"  device_type = excluded.device_type,"
		"  hw_revision = excluded.hw_revision,"
		"  agent_version = excluded.agent_version,"
		"  software_json = excluded.software_json,"
		"  attributes_json = excluded.attributes_json,"
		"  presence = excluded.presence,"
		"  presence_since_ms = excluded.presence_since_ms,"
		"  last_seen_ms = excluded.last_seen_ms,"
		"  connected_at_ms = excluded.connected_at_ms,"
		"  created_ms = CASE WHEN excluded.created_ms = 0 THEN devices.created_ms"
		"                    ELSE excluded.created_ms END,"
		"  shadow_version = excluded.shadow_version",
	[ST_DEVICE_SET_PRESENCE] =
		"UPDATE devices SET presence = ?2, presence_since_ms = ?3, last_seen_ms = ?4,"
		" connected_at_ms = ?5 WHERE id = ?1",
	[ST_DEVICE_GET] = "SELECT " DEVICE_COLUMNS " FROM devices WHERE id = ?1",
	[ST_DEVICE_ALL] = "SELECT " DEVICE_COLUMNS " FROM devices ORDER BY id",
	[ST_SHADOW_PUT] =
		"INSERT INTO shadows(device_id, version, doc) VALUES(?1, ?2, ?3)"
		" ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
	[ST_SHADOW_SET_DEVICE_VERSION] = "UPDATE devices SET shadow_version = ?2 WHERE id = ?1",
	[ST_SHADOW_GET] = "SELECT version, doc FROM shadows WHERE device_id = ?1",
};

struct fleetmq_store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST__COUNT];
	int schema_version;
	int in_foreach;
	char *scratch;                   /* strings of the last device_get record */
	char errmsg[STORE_ERRMSG_BYTES];
};

/* ---- helpers ------------------------------------------------------------ */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if(!err || errlen == 0) return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Translate an SQLite result code to a fleetmq status. */
static int status_from_sqlite(int rc)
{
	switch(rc & 0xff){
		case SQLITE_OK:
		case SQLITE_DONE:
		case SQLITE_ROW:
			return FLEETMQ_OK;
		case SQLITE_NOMEM:
			return FLEETMQ_ERR_NOMEM;
		case SQLITE_TOOBIG:
			return FLEETMQ_ERR_TOO_LARGE;
		default:
			return FLEETMQ_ERR_IO;
	}
}

/* Record the connection's current error for fleetmq_store_last_error() and
 * return the matching status. */
static int db_fail(struct fleetmq_store *st, const char *what, int rc)
{
	snprintf(st->errmsg, sizeof(st->errmsg), "%s: %s (sqlite %d)", what, sqlite3_errmsg(st->db), rc);
	return status_from_sqlite(rc);
}

static int arg_fail(struct fleetmq_store *st, const char *what)
{
	snprintf(st->errmsg, sizeof(st->errmsg), "%s: missing argument", what);
	return FLEETMQ_ERR_BAD_REQUEST;
}

static void stmt_done(sqlite3_stmt *s)
{
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
}

/* Run a statement that returns no rows. */
static int run(struct fleetmq_store *st, enum stmt_id id, const char *what)
{
	sqlite3_stmt *s = st->stmt[id];
	int rc;

	rc = sqlite3_step(s);
	stmt_done(s);
	if(rc != SQLITE_DONE) return db_fail(st, what, rc);
	return FLEETMQ_OK;
}

static int bind_u64(sqlite3_stmt *s, int idx, uint64_t v)
{
	/* Stored as the int64 with the same bits; read back with the inverse cast. */
	return sqlite3_bind_int64(s, idx, (sqlite3_int64)v);
}

static uint64_t column_u64(sqlite3_stmt *s, int col)
{
	return (uint64_t)sqlite3_column_int64(s, col);
}

static const char *column_str(sqlite3_stmt *s, int col, const char *none)
{
	const char *v = (const char *)sqlite3_column_text(s, col);

	return v ? v : none;
}

static const char *none_of(enum device_col col)
{
	if(col == DC_SOFTWARE) return "[]";
	if(col == DC_ATTRIBUTES) return "{}";
	return "";
}

/* Fill rec from the current row of s; strings point into SQLite's row. */
static void device_from_row(sqlite3_stmt *s, struct fleetmq_device_rec *rec)
{
	rec->id = column_str(s, DC_ID, "");
	rec->device_type = column_str(s, DC_TYPE, none_of(DC_TYPE));
	rec->hw_revision = column_str(s, DC_HW, none_of(DC_HW));
	rec->agent_version = column_str(s, DC_AGENT, none_of(DC_AGENT));
	rec->software_json = column_str(s, DC_SOFTWARE, none_of(DC_SOFTWARE));
	rec->attributes_json = column_str(s, DC_ATTRIBUTES, none_of(DC_ATTRIBUTES));
	rec->presence = sqlite3_column_int(s, DC_PRESENCE);
	rec->presence_since_ms = column_u64(s, DC_PRESENCE_SINCE);
	rec->last_seen_ms = column_u64(s, DC_LAST_SEEN);
	rec->connected_at_ms = column_u64(s, DC_CONNECTED_AT);
	rec->created_ms = column_u64(s, DC_CREATED);
	rec->shadow_version = column_u64(s, DC_SHADOW_VERSION);
}

/* Copy the six strings of rec into one new buffer and repoint rec at it. */
static char *device_copy_strings(struct fleetmq_device_rec *rec)
{
	const char **f[] = {
		&rec->id, &rec->device_type, &rec->hw_revision,
		&rec->agent_version, &rec->software_json, &rec->attributes_json,
	};
	size_t n = sizeof(f) / sizeof(f[0]);
	size_t total = 0, len, i;
	char *buf, *p;

	for(i = 0; i < n; i++) total += strlen(*f[i]) + 1;
	buf = fm_malloc(total);
	if(!buf) return NULL;
	p = buf;
	for(i = 0; i < n; i++){
		len = strlen(*f[i]) + 1;
		memcpy(p, *f[i], len);
		*f[i] = p;
		p += len;
	}
	return buf;
}

/* fsync the directory holding path, so a newly created file's name is durable. */
static int sync_parent_dir(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len;
	int fd;

	if(!slash){
		strcpy(dir, ".");
	}else{
		len = slash == path ? 1 : (size_t)(slash - path);
		if(len >= sizeof(dir)){
			set_err(err, errlen, "path too long: %s", path);
			return FLEETMQ_ERR_IO;
		}
		memcpy(dir, path, len);
		dir[len] = '\0';
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if(fd < 0 || fsync(fd) != 0){
		set_err(err, errlen, "cannot sync directory %s: %s", dir, strerror(errno));
		if(fd >= 0) close(fd);
		return FLEETMQ_ERR_IO;
	}
	close(fd);
	return FLEETMQ_OK;
}

/* ---- open / migrate / close -------------------------------------------- */

/* Run one-row PRAGMA sql and copy its first column as text into out. */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *v;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
	if(rc == SQLITE_OK) rc = sqlite3_step(s);
	if(rc != SQLITE_ROW){
		set_err(err, errlen, "%s: %s", sql, sqlite3_errmsg(db));
		sqlite3_finalize(s);
		/* SQLITE_DONE (no row) is a failure here too. */
		return rc == SQLITE_DONE ? FLEETMQ_ERR_IO : status_from_sqlite(rc);
	}
	v = (const char *)sqlite3_column_text(s, 0);
	snprintf(out, outlen, "%s", v ? v : "");
	sqlite3_finalize(s);
	return FLEETMQ_OK;
}

static int read_user_version(sqlite3 *db, int *version, char *err, size_t errlen)
{
	char buf[32];
	int rc;

	rc = pragma_text(db, "PRAGMA user_version", buf, sizeof(buf), err, errlen);
	if(rc == FLEETMQ_OK) *version = atoi(buf);
	return rc;
}

static int exec_sql(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc;

	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if(rc != SQLITE_OK){
		set_err(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return status_from_sqlite(rc);
	}
	return FLEETMQ_OK;
}

/* Bring the schema from *version up to FLEETMQ_STORE_SCHEMA_VERSION. */
static int migrate(sqlite3 *db, int *version, char *err, size_t errlen)
{
	char sql[64];
	char what[64];
	int v, rc = FLEETMQ_OK;

	while(*version < FLEETMQ_STORE_SCHEMA_VERSION){
		rc = exec_sql(db, "BEGIN IMMEDIATE", "begin migration", err, errlen);
		if(rc) goto cleanup;
		/* Another process may have migrated while we waited for the lock. */
		rc = read_user_version(db, &v, err, errlen);
		if(rc) goto rollback;
		if(v != *version){
			exec_sql(db, "ROLLBACK", "rollback", NULL, 0);
			if(v > FLEETMQ_STORE_SCHEMA_VERSION || v < *version){
				set_err(err, errlen, "schema version changed to %d during migration", v);
				rc = FLEETMQ_ERR_IO;
				goto cleanup;
			}
			*version = v;
			continue;
		}
		snprintf(what, sizeof(what), "migration %d -> %d", v, v + 1);
		rc = exec_sql(db, migrations[v], what, err, errlen);
		if(rc) goto rollback;
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		rc = exec_sql(db, sql, what, err, errlen);
		if(rc) goto rollback;
		rc = exec_sql(db, "COMMIT", what, err, errlen);
		if(rc) goto rollback;
		*version = v + 1;
	}
	goto cleanup;

rollback:
	if(!sqlite3_get_autocommit(db)) exec_sql(db, "ROLLBACK", "rollback", NULL, 0);
cleanup:
	return rc;
}

int fleetmq_store_open(const char *path, const struct fleetmq_store_options *opts,
		struct fleetmq_store **out, char *err, size_t errlen)
{
	struct fleetmq_store *st = NULL;
	char buf[32];
	int busy_ms = STORE_DEFAULT_BUSY_TIMEOUT_MS;
	enum fleetmq_store_sync sync = FLEETMQ_STORE_SYNC_FULL;
	int created, version, i, rc;

	set_err(err, errlen, "%s", "");
	if(out) *out = NULL;
	if(!path || !path[0] || !out){
		set_err(err, errlen, "store open: missing path or output argument");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(opts){
		if(opts->sync != FLEETMQ_STORE_SYNC_FULL && opts->sync != FLEETMQ_STORE_SYNC_NORMAL){
			set_err(err, errlen, "store open: unknown synchronous mode %d", (int)opts->sync);
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		sync = opts->sync;
		if(opts->busy_timeout_ms > 0) busy_ms = opts->busy_timeout_ms;
	}

	st = fm_calloc(1, sizeof(*st));
	if(!st){
		set_err(err, errlen, "out of memory");
		return FLEETMQ_ERR_NOMEM;
	}
	created = access(path, F_OK) != 0;
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if(rc != SQLITE_OK){
		set_err(err, errlen, "cannot open %s: %s", path, st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		rc = status_from_sqlite(rc);
		goto cleanup;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, busy_ms);

	/* Check the version before changing anything in the file. */
	rc = read_user_version(st->db, &version, err, errlen);
	if(rc) goto cleanup;
	if(version > FLEETMQ_STORE_SCHEMA_VERSION){
		set_err(err, errlen, "database schema version %d is newer than this fleetmq (%d); refusing to open",
				version, FLEETMQ_STORE_SCHEMA_VERSION);
		rc = FLEETMQ_ERR_IO;
		goto cleanup;
	}

	rc = pragma_text(st->db, "PRAGMA journal_mode = WAL", buf, sizeof(buf), err, errlen);
	if(rc) goto cleanup;
	if(strcasecmp(buf, "wal") != 0){
		set_err(err, errlen, "cannot switch %s to WAL mode (journal_mode is '%s')", path, buf);
		rc = FLEETMQ_ERR_IO;
		goto cleanup;
	}
	rc = exec_sql(st->db, sync == FLEETMQ_STORE_SYNC_FULL ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
			"set synchronous", err, errlen);
	if(rc) goto cleanup;
	rc = exec_sql(st->db, "PRAGMA foreign_keys = ON", "enable foreign keys", err, errlen);
	if(rc) goto cleanup;

	rc = migrate(st->db, &version, err, errlen);
	if(rc) goto cleanup;
	st->schema_version = version;

	for(i = 0; i < ST__COUNT; i++){
		rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i], NULL);
		if(rc != SQLITE_OK){
			set_err(err, errlen, "prepare '%s': %s", stmt_sql[i], sqlite3_errmsg(st->db));
			rc = status_from_sqlite(rc);
			goto cleanup;
		}
	}
	if(created){
		rc = sync_parent_dir(path, err, errlen);
		if(rc) goto cleanup;
	}
	snprintf(st->errmsg, sizeof(st->errmsg), "no error");
	*out = st;
	st = NULL;
	rc = FLEETMQ_OK;

cleanup:
	if(st) fleetmq_store_close(st);
	return rc;
}

void fleetmq_store_close(struct fleetmq_store *st)
{
	int i;

	if(!st) return;
	for(i = 0; i < ST__COUNT; i++){
		if(st->stmt[i]) sqlite3_reset(st->stmt[i]);
	}
	if(st->db && !sqlite3_get_autocommit(st->db)){
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	}
	for(i = 0; i < ST__COUNT; i++){
		sqlite3_finalize(st->stmt[i]);
	}
	/* Last connection closing checkpoints the WAL and removes it. */
	sqlite3_close_v2(st->db);
	fm_free(st->scratch);
	fm_free(st);
}

int fleetmq_store_schema_version(struct fleetmq_store *st)
{
	return st ? st->schema_version : -1;
}

const char *fleetmq_store_last_error(struct fleetmq_store *st)
{
	return st ? st->errmsg : "no store";
}

/* ---- transactions ------------------------------------------------------- */

int fleetmq_store_in_txn(const struct fleetmq_store *st)
{
	return st && !sqlite3_get_autocommit(st->db);
}

int fleetmq_store_begin(struct fleetmq_store *st)
{
	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(fleetmq_store_in_txn(st)) return FLEETMQ_OK;
	return run(st, ST_BEGIN, "begin");
}

int fleetmq_store_commit(struct fleetmq_store *st)
{
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!fleetmq_store_in_txn(st)) return FLEETMQ_OK;
	rc = run(st, ST_COMMIT, "commit");
	if(rc != FLEETMQ_OK){
		/* Keep the commit's error message: rollback() only overwrites it on failure. */
		if(fleetmq_store_in_txn(st)) run(st, ST_ROLLBACK, "rollback after failed commit");
		rc = FLEETMQ_ERR_IO;
	}
	return rc;
}

int fleetmq_store_rollback(struct fleetmq_store *st)
{
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!fleetmq_store_in_txn(st)) return FLEETMQ_OK;
	rc = run(st, ST_ROLLBACK, "rollback");
	return rc ? FLEETMQ_ERR_IO : FLEETMQ_OK;
}

/* ---- devices ------------------------------------------------------------ */

static int bind_text_or(sqlite3_stmt *s, int idx, const char *v, const char *none)
{
	return sqlite3_bind_text(s, idx, v ? v : none, -1, SQLITE_STATIC);
}

int fleetmq_store_device_put(struct fleetmq_store *st, const struct fleetmq_device_rec *rec)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!rec || !rec->id || !rec->id[0]) return arg_fail(st, "device_put");
	s = st->stmt[ST_DEVICE_PUT];

	rc = bind_text_or(s, DC_ID + 1, rec->id, "");
	if(rc == SQLITE_OK) rc = bind_text_or(s, DC_TYPE + 1, rec->device_type, none_of(DC_TYPE));
	if(rc == SQLITE_OK) rc = bind_text_or(s, DC_HW + 1, rec->hw_revision, none_of(DC_HW));
	if(rc == SQLITE_OK) rc = bind_text_or(s, DC_AGENT + 1, rec->agent_version, none_of(DC_AGENT));
	if(rc == SQLITE_OK) rc = bind_text_or(s, DC_SOFTWARE + 1, rec->software_json, none_of(DC_SOFTWARE));
	if(rc == SQLITE_OK) rc = bind_text_or(s, DC_ATTRIBUTES + 1, rec->attributes_json, none_of(DC_ATTRIBUTES));
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, DC_PRESENCE + 1, rec->presence);
	if(rc == SQLITE_OK) rc = bind_u64(s, DC_PRESENCE_SINCE + 1, rec->presence_since_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, DC_LAST_SEEN + 1, rec->last_seen_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, DC_CONNECTED_AT + 1, rec->connected_at_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, DC_CREATED + 1, rec->created_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, DC_SHADOW_VERSION + 1, rec->shadow_version);
	if(rc != SQLITE_OK){
		stmt_done(s);
		return db_fail(st, "device_put: bind", rc);
	}
	return run(st, ST_DEVICE_PUT, "device_put");
}

int fleetmq_store_device_set_presence(struct fleetmq_store *st, const char *id, int presence,
		uint64_t since_ms, uint64_t last_seen_ms, uint64_t connected_at_ms)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0]) return arg_fail(st, "device_set_presence");
	s = st->stmt[ST_DEVICE_SET_PRESENCE];

	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, 2, presence);
	if(rc == SQLITE_OK) rc = bind_u64(s, 3, since_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, 4, last_seen_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, 5, connected_at_ms);
	if(rc != SQLITE_OK){
		stmt_done(s);
		return db_fail(st, "device_set_presence: bind", rc);
	}
	rc = run(st, ST_DEVICE_SET_PRESENCE, "device_set_presence");
	if(rc == FLEETMQ_OK && sqlite3_changes(st->db) == 0){
		snprintf(st->errmsg, sizeof(st->errmsg), "device_set_presence: no device '%s'", id);
		rc = FLEETMQ_ERR_NOT_FOUND;
	}
	return rc;
}

int fleetmq_store_device_get(struct fleetmq_store *st, const char *id, struct fleetmq_device_rec *rec)
{
	sqlite3_stmt *s;
	char *copy = NULL;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0] || !rec) return arg_fail(st, "device_get");
	s = st->stmt[ST_DEVICE_GET];

	/* id may point into st->scratch (a previous get): keep it until the end. */
	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK){
		rc = db_fail(st, "device_get: bind", rc);
		goto cleanup;
	}
	rc = sqlite3_step(s);
	if(rc == SQLITE_DONE){
		snprintf(st->errmsg, sizeof(st->errmsg), "device_get: no device '%s'", id);
		rc = FLEETMQ_ERR_NOT_FOUND;
		goto cleanup;
	}
	if(rc != SQLITE_ROW){
		rc = db_fail(st, "device_get", rc);
		goto cleanup;
	}
	device_from_row(s, rec);
	copy = device_copy_strings(rec);
	if(!copy){
		memset(rec, 0, sizeof(*rec));
		snprintf(st->errmsg, sizeof(st->errmsg), "device_get: out of memory");
		rc = FLEETMQ_ERR_NOMEM;
		goto cleanup;
	}
	fm_free(st->scratch);
	st->scratch = copy;
	rc = FLEETMQ_OK;

cleanup:
	stmt_done(s);
	return rc;
}

int fleetmq_store_device_foreach(struct fleetmq_store *st,
		int (*cb)(const struct fleetmq_device_rec *rec, void *userdata), void *userdata)
{
	struct fleetmq_device_rec rec;
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "device_foreach");
	if(st->in_foreach){
		snprintf(st->errmsg, sizeof(st->errmsg), "device_foreach: nested walk");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	s = st->stmt[ST_DEVICE_ALL];
	st->in_foreach = 1;
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		device_from_row(s, &rec);
		rc = cb(&rec, userdata);
		if(rc != 0) goto cleanup;
	}
	if(rc != SQLITE_DONE){
		rc = db_fail(st, "device_foreach", rc);
		goto cleanup;
	}
	rc = FLEETMQ_OK;

cleanup:
	stmt_done(s);
	st->in_foreach = 0;
	return rc;
}

/* ---- shadows ------------------------------------------------------------ */

int fleetmq_store_shadow_put(struct fleetmq_store *st, const char *id, uint64_t version,
		const char *doc, size_t len)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0] || !doc) return arg_fail(st, "shadow_put");

	/* Two statements, one atomic unit, inside or outside a group transaction. */
	rc = run(st, ST_SAVEPOINT, "shadow_put: savepoint");
	if(rc) return rc;

	s = st->stmt[ST_SHADOW_PUT];
	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_u64(s, 2, version);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text64(s, 3, doc, (sqlite3_uint64)len, SQLITE_STATIC, SQLITE_UTF8);
	if(rc != SQLITE_OK){
		stmt_done(s);
		rc = db_fail(st, "shadow_put: bind", rc);
		goto rollback;
	}
	rc = run(st, ST_SHADOW_PUT, "shadow_put");
	if(rc) goto rollback;

	s = st->stmt[ST_SHADOW_SET_DEVICE_VERSION];
	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_u64(s, 2, version);
	if(rc != SQLITE_OK){
		stmt_done(s);
		rc = db_fail(st, "shadow_put: bind", rc);
		goto rollback;
	}
	rc = run(st, ST_SHADOW_SET_DEVICE_VERSION, "shadow_put: device version");
	if(rc) goto rollback;

	rc = run(st, ST_RELEASE, "shadow_put: release");
	if(rc) goto rollback;
	return FLEETMQ_OK;

rollback:
	/* ROLLBACK TO keeps the savepoint open; RELEASE ends it (and, outside a
	 * group transaction, the implicit transaction it started). The caller
	 * gets the first error; these only overwrite errmsg if they fail too. */
	if(fleetmq_store_in_txn(st)){
		run(st, ST_ROLLBACK_TO, "shadow_put: rollback to savepoint");
		run(st, ST_RELEASE, "shadow_put: release after rollback");
	}
	return rc;
}

int fleetmq_store_shadow_get(struct fleetmq_store *st, const char *id, char **doc, size_t *len,
		uint64_t *version)
{
	sqlite3_stmt *s;
	const char *text;
	size_t n;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(doc) *doc = NULL;
	if(len) *len = 0;
	if(!id || !id[0] || !doc) return arg_fail(st, "shadow_get");
	s = st->stmt[ST_SHADOW_GET];

	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK){
		rc = db_fail(st, "shadow_get: bind", rc);
		goto cleanup;
	}
	rc = sqlite3_step(s);
	if(rc == SQLITE_DONE){
		snprintf(st->errmsg, sizeof(st->errmsg), "shadow_get: no shadow for '%s'", id);
		rc = FLEETMQ_ERR_NOT_FOUND;
		goto cleanup;
	}
	if(rc != SQLITE_ROW){
		rc = db_fail(st, "shadow_get", rc);
		goto cleanup;
	}
	text = (const char *)sqlite3_column_text(s, 1);
	n = (size_t)sqlite3_column_bytes(s, 1);
	if(!text && sqlite3_errcode(st->db) == SQLITE_NOMEM){
		rc = db_fail(st, "shadow_get", SQLITE_NOMEM);
		goto cleanup;
	}
	*doc = fm_malloc(n + 1);
	if(!*doc){
		snprintf(st->errmsg, sizeof(st->errmsg), "shadow_get: out of memory");
		rc = FLEETMQ_ERR_NOMEM;
		goto cleanup;
	}
	if(n) memcpy(*doc, text, n);
	(*doc)[n] = '\0';
	if(len) *len = n;
	if(version) *version = column_u64(s, 0);
	rc = FLEETMQ_OK;

cleanup:
	stmt_done(s);
	return rc;
}
