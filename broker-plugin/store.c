/*
 * store.c - the SQLite backend of store.h.
 *
 * Owns one SQLite connection (WAL, synchronous=FULL unless configured
 * NORMAL), its prepared statements and one scratch copy per kind of get (the
 * strings of the last device, job and execution record handed out). It knows
 * rows and columns, nothing about MQTT, shadows' contents, presence rules or
 * the job lifecycle (jobs.h) and rollout (rollout.h) it persists.
 *
 * - Schema: PRAGMA user_version counts the applied entries of migrations[];
 *   entry i takes the schema from version i to i + 1 and runs in its own
 *   BEGIN IMMEDIATE transaction together with the user_version bump, so a
 *   crash mid-migration leaves the previous version intact. A newer database
 *   is refused before anything is written to it.
 * - Statements are prepared once at open (SQLITE_PREPARE_PERSISTENT) and
 *   reset + unbound right after each use, so no read transaction lingers
 *   (a lingering reader would hold back WAL checkpoints).
 * - Walks (statements stepped while a caller's callback runs) set in_walk;
 *   while it is set, another walk, any write and transaction control are
 *   refused before any statement is touched: re-binding a statement that is
 *   mid-walk would reset it, and writing the table being walked makes SQLite
 *   free to show or skip the changed rows. Gets and counts use their own
 *   statements and stay allowed.
 * - Queries are written so the planner can use the indexes: the partial
 *   indexes of exec_due repeat the index's WHERE terms literally, and each
 *   shape of audit_query (actor / target / prefix) has its own statement
 *   rather than "?1 IS NULL OR ..." terms, which defeat index selection.
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

	/* 1 -> 2: operator-owned device fields, the durable job queue, the audit
	 * log. ADD COLUMN with a constant default does not rewrite the table. */
	"ALTER TABLE devices ADD COLUMN groups_json TEXT NOT NULL DEFAULT '[]';"
	"ALTER TABLE devices ADD COLUMN op_attributes_json TEXT NOT NULL DEFAULT '{}';"
	"CREATE TABLE jobs("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  seq INTEGER NOT NULL UNIQUE,"
	"  type TEXT NOT NULL,"
	"  spec_json TEXT NOT NULL,"
	"  spec_hash TEXT NOT NULL,"
	"  status INTEGER NOT NULL,"
	"  status_reason TEXT NOT NULL DEFAULT '',"
	"  continuous INTEGER NOT NULL,"
	"  fanout_done INTEGER NOT NULL DEFAULT 0,"
	"  fanout_cursor TEXT NOT NULL DEFAULT '',"
	"  rollout_json TEXT NOT NULL DEFAULT '{}',"
	"  created_ms INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL,"
	"  created_by TEXT NOT NULL"
	");"
	"CREATE TABLE executions("
	"  job_id TEXT NOT NULL,"
	"  device_id TEXT NOT NULL,"
	"  seq INTEGER NOT NULL,"
	"  canary INTEGER NOT NULL DEFAULT 0,"
	"  status INTEGER NOT NULL,"
	"  version INTEGER NOT NULL,"
	"  attempt INTEGER NOT NULL,"
	"  queued_ms INTEGER NOT NULL DEFAULT 0,"
	"  started_ms INTEGER NOT NULL DEFAULT 0,"
	"  updated_ms INTEGER NOT NULL DEFAULT 0,"
	"  deadline_ms INTEGER NOT NULL DEFAULT 0,"
	"  retry_at_ms INTEGER NOT NULL DEFAULT 0,"
	"  progress INTEGER NOT NULL DEFAULT -1,"
	"  step TEXT NOT NULL DEFAULT '',"
	"  details_json TEXT NOT NULL DEFAULT '{}',"
	"  PRIMARY KEY(job_id, device_id)"
	") WITHOUT ROWID;"
	"CREATE INDEX executions_device ON executions(device_id, status, seq);"
	"CREATE INDEX executions_job ON executions(job_id, status, canary, seq);"
	"CREATE INDEX executions_deadline ON executions(deadline_ms) WHERE status = 2 AND deadline_ms > 0;"
	"CREATE INDEX executions_retry ON executions(retry_at_ms) WHERE retry_at_ms > 0;"
	"CREATE TABLE audit("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  ts_ms INTEGER NOT NULL,"
	"  actor TEXT NOT NULL,"
	"  action TEXT NOT NULL,"
	"  target TEXT NOT NULL,"
	"  detail_json TEXT NOT NULL DEFAULT '{}'"
	");"
	"CREATE INDEX audit_target ON audit(target, seq);"
	"CREATE INDEX audit_actor ON audit(actor, seq);",
};

/* The status values the SQL below spells out literally (partial indexes,
 * active / open / final filters) must stay those of the enums. */
_Static_assert(FM_EXEC_PENDING == 0 && FM_EXEC_QUEUED == 1 && FM_EXEC_IN_PROGRESS == 2
		&& FM_EXEC_SUCCEEDED == 3 && FM_EXEC_REMOVED == FM_EXEC_STATUS_COUNT - 1,
		"executions SQL hard-codes these status values");
_Static_assert(FM_JOB_COMPLETED == 2 && FM_JOB_CANCELED == 3 && FM_JOB_STATUS_COUNT == 4,
		"jobs SQL hard-codes these status values");

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
	ST_DEVICE_SET_GROUPS,
	ST_DEVICE_GET,
	ST_DEVICE_ALL,
	ST_SHADOW_PUT,
	ST_SHADOW_SET_DEVICE_VERSION,
	ST_SHADOW_GET,
	ST_JOB_PUT,
	ST_JOB_GET,
	ST_JOB_FOREACH,
	ST_JOB_LIST,
	ST_EXEC_PUT,
	ST_EXEC_GET,
	ST_EXEC_DEVICE_ACTIVE,
	ST_EXEC_DEVICE_ALL,
	ST_EXEC_JOB,
	ST_EXEC_PENDING,
	ST_EXEC_DUE_DEADLINE,
	ST_EXEC_DUE_RETRY,
	ST_EXEC_COUNTS,
	ST_EXEC_COUNT_DEVICE_ACTIVE,
	ST_MAX_SEQ,
	ST_AUDIT_ADD,
	/* audit_query, one per filter shape: ST_AUDIT_Q + (actor ? 1 : 0) + 2 * target mode */
	ST_AUDIT_Q,                      /* no filter */
	ST_AUDIT_Q_ACTOR,
	ST_AUDIT_Q_TARGET,
	ST_AUDIT_Q_ACTOR_TARGET,
	ST_AUDIT_Q_PREFIX,
	ST_AUDIT_Q_ACTOR_PREFIX,
	ST__COUNT
};

#define DEVICE_COLUMNS "id, device_type, hw_revision, agent_version, software_json, attributes_json," \
	" presence, presence_since_ms, last_seen_ms, connected_at_ms, created_ms, shadow_version," \
	" groups_json, op_attributes_json"

/* Column indexes of DEVICE_COLUMNS (also the bind indexes of ST_DEVICE_PUT, minus one). */
enum device_col {
	DC_ID, DC_TYPE, DC_HW, DC_AGENT, DC_SOFTWARE, DC_ATTRIBUTES,
	DC_PRESENCE, DC_PRESENCE_SINCE, DC_LAST_SEEN, DC_CONNECTED_AT, DC_CREATED, DC_SHADOW_VERSION,
	DC_GROUPS, DC_OP_ATTRIBUTES,
	DC__COUNT
};

#define JOB_COLUMNS "id, seq, type, spec_json, spec_hash, status, status_reason, continuous," \
	" fanout_done, fanout_cursor, rollout_json, created_ms, updated_ms, created_by"

/* Column indexes of JOB_COLUMNS (also the bind indexes of ST_JOB_PUT, minus one). */
enum job_col {
	JC_ID, JC_SEQ, JC_TYPE, JC_SPEC, JC_SPEC_HASH, JC_STATUS, JC_STATUS_REASON, JC_CONTINUOUS,
	JC_FANOUT_DONE, JC_FANOUT_CURSOR, JC_ROLLOUT, JC_CREATED, JC_UPDATED, JC_CREATED_BY,
	JC__COUNT
};

#define EXEC_COLUMNS "job_id, device_id, seq, canary, status, version, attempt, queued_ms, started_ms," \
	" updated_ms, deadline_ms, retry_at_ms, progress, step, details_json"

/* Column indexes of EXEC_COLUMNS (also the bind indexes of ST_EXEC_PUT, minus one). */
enum exec_col {
	EC_JOB, EC_DEVICE, EC_SEQ, EC_CANARY, EC_STATUS, EC_VERSION, EC_ATTEMPT, EC_QUEUED, EC_STARTED,
	EC_UPDATED, EC_DEADLINE, EC_RETRY_AT, EC_PROGRESS, EC_STEP, EC_DETAILS,
	EC__COUNT
};

#define AUDIT_COLUMNS "seq, ts_ms, actor, action, target, detail_json"

enum audit_col { AC_SEQ, AC_TS, AC_ACTOR, AC_ACTION, AC_TARGET, AC_DETAIL, AC__COUNT };

/* audit_query binds: ?1 actor, ?2 target or prefix, ?3 prefix upper bound
 * (exclusive), ?4 since_ms, ?5 before_seq, ?6 limit. */
#define AUDIT_SELECT "SELECT " AUDIT_COLUMNS " FROM audit WHERE "
/* Without statistics the planner would serve a target range by scanning the
 * whole log backwards (to avoid a sort), and actor + target by the actor
 * index; the target index bounds the work by the matching rows instead (the
 * sort for a prefix keeps only LIMIT rows). */
#define AUDIT_SELECT_BY_TARGET "SELECT " AUDIT_COLUMNS " FROM audit INDEXED BY audit_target WHERE "
#define AUDIT_ACTOR "actor = ?1 AND "
#define AUDIT_TARGET "target = ?2 AND "
#define AUDIT_PREFIX "target >= ?2 AND target < ?3 AND "
#define AUDIT_TAIL "ts_ms >= ?4 AND seq < ?5 ORDER BY seq DESC LIMIT ?6"

static const char *const stmt_sql[ST__COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT fleetmq_op",
	[ST_RELEASE] = "RELEASE fleetmq_op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO fleetmq_op",
	/* ?13 / ?14 NULL: "[]" / "{}" for a new row, the old value for an existing one. */
	[ST_DEVICE_PUT] =
		"INSERT INTO devices(" DEVICE_COLUMNS ")"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
		"        coalesce(?13, '[]'), coalesce(?14, '{}'))"
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
		"  shadow_version = excluded.shadow_version,"
		"  groups_json = coalesce(?13, devices.groups_json),"
		"  op_attributes_json = coalesce(?14, devices.op_attributes_json)",
	[ST_DEVICE_SET_PRESENCE] =
		"UPDATE devices SET presence = ?2, presence_since_ms = ?3, last_seen_ms = ?4,"
		" connected_at_ms = ?5 WHERE id = ?1",
	[ST_DEVICE_SET_GROUPS] =
		"UPDATE devices SET groups_json = coalesce(?2, groups_json),"
		" op_attributes_json = coalesce(?3, op_attributes_json) WHERE id = ?1",
	[ST_DEVICE_GET] = "SELECT " DEVICE_COLUMNS " FROM devices WHERE id = ?1",
	[ST_DEVICE_ALL] = "SELECT " DEVICE_COLUMNS " FROM devices ORDER BY id",
	[ST_SHADOW_PUT] =
		"INSERT INTO shadows(device_id, version, doc) VALUES(?1, ?2, ?3)"
		" ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
	[ST_SHADOW_SET_DEVICE_VERSION] = "UPDATE devices SET shadow_version = ?2 WHERE id = ?1",
	[ST_SHADOW_GET] = "SELECT version, doc FROM shadows WHERE device_id = ?1",
	[ST_JOB_PUT] =
		"INSERT INTO jobs(" JOB_COLUMNS ")"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
		" ON CONFLICT(id) DO UPDATE SET"
		"  seq = excluded.seq, type = excluded.type, spec_json = excluded.spec_json,"
		"  spec_hash = excluded.spec_hash, status = excluded.status,"
		"  status_reason = excluded.status_reason, continuous = excluded.continuous,"
		"  fanout_done = excluded.fanout_done, fanout_cursor = excluded.fanout_cursor,"
		"  rollout_json = excluded.rollout_json, created_ms = excluded.created_ms,"
		"  updated_ms = excluded.updated_ms, created_by = excluded.created_by",
	[ST_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
	/* ?1: open only (not COMPLETED / CANCELED) */
	[ST_JOB_FOREACH] = "SELECT " JOB_COLUMNS " FROM jobs WHERE ?1 = 0 OR status NOT IN (2, 3) ORDER BY seq",
	/* ?1 status (-1 any), ?2 after_seq, ?3 limit */
	[ST_JOB_LIST] =
		"SELECT " JOB_COLUMNS " FROM jobs WHERE seq > ?2 AND (?1 < 0 OR status = ?1)"
		" ORDER BY seq LIMIT ?3",
	[ST_EXEC_PUT] =
		"INSERT INTO executions(" EXEC_COLUMNS ")"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
		" ON CONFLICT(job_id, device_id) DO UPDATE SET"
		"  seq = excluded.seq, canary = excluded.canary, status = excluded.status,"
		"  version = excluded.version, attempt = excluded.attempt,"
		"  queued_ms = excluded.queued_ms, started_ms = excluded.started_ms,"
		"  updated_ms = excluded.updated_ms, deadline_ms = excluded.deadline_ms,"
		"  retry_at_ms = excluded.retry_at_ms, progress = excluded.progress,"
		"  step = excluded.step, details_json = excluded.details_json",
	[ST_EXEC_GET] = "SELECT " EXEC_COLUMNS " FROM executions WHERE job_id = ?1 AND device_id = ?2",
	/* active = QUEUED (1) or IN_PROGRESS (2); IN_PROGRESS first. A range,
	 * not "IN (1, 2)": SQLite builds an ephemeral table for an IN list on
	 * every run, which was most of the cost of a hello (docs/BENCHMARKS.md). */
	[ST_EXEC_DEVICE_ACTIVE] =
		"SELECT " EXEC_COLUMNS " FROM executions WHERE device_id = ?1 AND status BETWEEN 1 AND 2"
		" ORDER BY status = 2 DESC, seq",
	[ST_EXEC_DEVICE_ALL] = "SELECT " EXEC_COLUMNS " FROM executions WHERE device_id = ?1 ORDER BY seq",
	/* ?2 status (-1 any), ?3 after_device, ?4 limit. The status term is an OR
	 * on purpose: the primary key then serves device_id order and LIMIT. */
	[ST_EXEC_JOB] =
		"SELECT " EXEC_COLUMNS " FROM executions WHERE job_id = ?1 AND device_id > ?3"
		" AND (?2 < 0 OR status = ?2) ORDER BY device_id LIMIT ?4",
	[ST_EXEC_PENDING] =
		"SELECT " EXEC_COLUMNS " FROM executions WHERE job_id = ?1 AND status = 0 AND canary = ?2"
		" ORDER BY seq LIMIT ?3",
	/* The WHERE terms repeat those of the partial indexes, so they apply. */
	[ST_EXEC_DUE_DEADLINE] =
		"SELECT " EXEC_COLUMNS " FROM executions"
		" WHERE status = 2 AND deadline_ms > 0 AND deadline_ms <= ?1 ORDER BY deadline_ms LIMIT ?2",
	[ST_EXEC_DUE_RETRY] =
		"SELECT " EXEC_COLUMNS " FROM executions"
		" WHERE retry_at_ms > 0 AND retry_at_ms <= ?1"
		" AND NOT (status = 2 AND deadline_ms > 0 AND deadline_ms <= ?1)"
		" ORDER BY retry_at_ms LIMIT ?2",
	/* ?2 canary only, ?3 final only (terminal status and no retry pending) */
	[ST_EXEC_COUNTS] =
		"SELECT status, count(*) FROM executions WHERE job_id = ?1"
		" AND (?2 = 0 OR canary = 1) AND (?3 = 0 OR (status >= 3 AND retry_at_ms = 0))"
		" GROUP BY status",
	[ST_EXEC_COUNT_DEVICE_ACTIVE] =
		"SELECT count(*) FROM executions WHERE device_id = ?1 AND status BETWEEN 1 AND 2",
	[ST_MAX_SEQ] =
		"SELECT max(coalesce((SELECT max(seq) FROM jobs), 0),"
		"           coalesce((SELECT max(seq) FROM executions), 0))",
	[ST_AUDIT_ADD] =
		"INSERT INTO audit(ts_ms, actor, action, target, detail_json) VALUES(?1, ?2, ?3, ?4, ?5)",
	[ST_AUDIT_Q] = AUDIT_SELECT AUDIT_TAIL,
	[ST_AUDIT_Q_ACTOR] = AUDIT_SELECT AUDIT_ACTOR AUDIT_TAIL,
	[ST_AUDIT_Q_TARGET] = AUDIT_SELECT_BY_TARGET AUDIT_TARGET AUDIT_TAIL,
	[ST_AUDIT_Q_ACTOR_TARGET] = AUDIT_SELECT_BY_TARGET AUDIT_ACTOR AUDIT_TARGET AUDIT_TAIL,
	[ST_AUDIT_Q_PREFIX] = AUDIT_SELECT_BY_TARGET AUDIT_PREFIX AUDIT_TAIL,
	[ST_AUDIT_Q_ACTOR_PREFIX] = AUDIT_SELECT AUDIT_ACTOR AUDIT_PREFIX AUDIT_TAIL,
};

struct fleetmq_store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST__COUNT];
	int schema_version;
	int in_walk;                     /* a walk's callback is running */
	char *device_scratch;            /* strings of the last device_get record */
	char *job_scratch;               /* ... job_get */
	char *exec_scratch;              /* ... exec_get */
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

/* For values compared in SQL (now, since, before): beyond INT64_MAX would
 * turn negative, so clamp. */
static int bind_u64_clamped(sqlite3_stmt *s, int idx, uint64_t v)
{
	return sqlite3_bind_int64(s, idx, v > (uint64_t)INT64_MAX ? INT64_MAX : (sqlite3_int64)v);
}

/* SQLite's LIMIT: negative means none. */
static int bind_limit(sqlite3_stmt *s, int idx, int limit)
{
	return sqlite3_bind_int(s, idx, limit > 0 ? limit : -1);
}

static int bind_text_or(sqlite3_stmt *s, int idx, const char *v, const char *none)
{
	return sqlite3_bind_text(s, idx, v ? v : none, -1, SQLITE_STATIC);
}

/* Bind v, or SQL NULL when v is NULL. */
static int bind_text_or_null(sqlite3_stmt *s, int idx, const char *v)
{
	return v ? sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, idx);
}

static int bind_fail(struct fleetmq_store *st, sqlite3_stmt *s, const char *what, int rc)
{
	char buf[96];

	stmt_done(s);
	snprintf(buf, sizeof(buf), "%s: bind", what);
	return db_fail(st, buf, rc);
}

/* Refuse what may not run inside a walk's callback (see store.h "Walks"). */
static int in_walk(struct fleetmq_store *st, const char *what)
{
	if(!st->in_walk) return 0;
	snprintf(st->errmsg, sizeof(st->errmsg), "%s: not allowed inside a walk callback", what);
	return 1;
}

/* Step a bound statement, calling emit for each row with the caller's walk
 * context, until the rows end or emit returns non-zero (returned as is).
 * *rows (optional) counts the rows delivered. Always resets s. The caller
 * checked in_walk() before binding s. */
static int walk_rows(struct fleetmq_store *st, sqlite3_stmt *s, const char *what,
		int (*emit)(sqlite3_stmt *s, void *walk), void *walk, int *rows)
{
	int rc;

	st->in_walk = 1;
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		if(rows) (*rows)++;
		rc = emit(s, walk);
		if(rc != 0) goto cleanup;
	}
	if(rc != SQLITE_DONE){
		rc = db_fail(st, what, rc);
		goto cleanup;
	}
	rc = FLEETMQ_OK;

cleanup:
	stmt_done(s);
	st->in_walk = 0;
	return rc;
}

/* Step a bound statement once for a get. FLEETMQ_OK with s on its row,
 * FLEETMQ_ERR_NOT_FOUND (errmsg says "<what>: no <noun> '<key>'") or an
 * error; on anything but FLEETMQ_OK s has been reset. */
static int step_one(struct fleetmq_store *st, sqlite3_stmt *s, const char *what, const char *noun,
		const char *key)
{
	int rc = sqlite3_step(s);

	if(rc == SQLITE_ROW) return FLEETMQ_OK;
	stmt_done(s);
	if(rc == SQLITE_DONE){
		snprintf(st->errmsg, sizeof(st->errmsg), "%s: no %s '%s'", what, noun, key);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	return db_fail(st, what, rc);
}

static const char *column_str(sqlite3_stmt *s, int col, const char *none)
{
	const char *v = (const char *)sqlite3_column_text(s, col);

	return v ? v : none;
}

static const char *none_of(enum device_col col)
{
	if(col == DC_SOFTWARE || col == DC_GROUPS) return "[]";
	if(col == DC_ATTRIBUTES || col == DC_OP_ATTRIBUTES) return "{}";
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
	rec->groups_json = column_str(s, DC_GROUPS, none_of(DC_GROUPS));
	rec->op_attributes_json = column_str(s, DC_OP_ATTRIBUTES, none_of(DC_OP_ATTRIBUTES));
}

/* Copy the n strings *f[i] into one new buffer and repoint each at its copy. */
static char *copy_strings(const char **f[], size_t n)
{
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

static char *device_copy_strings(struct fleetmq_device_rec *rec)
{
	const char **f[] = {
		&rec->id, &rec->device_type, &rec->hw_revision,
		&rec->agent_version, &rec->software_json, &rec->attributes_json,
		&rec->groups_json, &rec->op_attributes_json,
	};

	return copy_strings(f, sizeof(f) / sizeof(f[0]));
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
	fm_free(st->device_scratch);
	fm_free(st->job_scratch);
	fm_free(st->exec_scratch);
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
	if(in_walk(st, "begin")) return FLEETMQ_ERR_BAD_REQUEST;
	if(fleetmq_store_in_txn(st)) return FLEETMQ_OK;
	return run(st, ST_BEGIN, "begin");
}

int fleetmq_store_commit(struct fleetmq_store *st)
{
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(in_walk(st, "commit")) return FLEETMQ_ERR_BAD_REQUEST;
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
	if(in_walk(st, "rollback")) return FLEETMQ_ERR_BAD_REQUEST;
	if(!fleetmq_store_in_txn(st)) return FLEETMQ_OK;
	rc = run(st, ST_ROLLBACK, "rollback");
	return rc ? FLEETMQ_ERR_IO : FLEETMQ_OK;
}

/* ---- devices ------------------------------------------------------------ */

int fleetmq_store_device_put(struct fleetmq_store *st, const struct fleetmq_device_rec *rec)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!rec || !rec->id || !rec->id[0]) return arg_fail(st, "device_put");
	if(in_walk(st, "device_put")) return FLEETMQ_ERR_BAD_REQUEST;
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
	if(rc == SQLITE_OK) rc = bind_text_or_null(s, DC_GROUPS + 1, rec->groups_json);
	if(rc == SQLITE_OK) rc = bind_text_or_null(s, DC_OP_ATTRIBUTES + 1, rec->op_attributes_json);
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
	if(in_walk(st, "device_set_presence")) return FLEETMQ_ERR_BAD_REQUEST;
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

int fleetmq_store_device_set_groups(struct fleetmq_store *st, const char *id, const char *groups_json,
		const char *op_attributes_json)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0]) return arg_fail(st, "device_set_groups");
	if(in_walk(st, "device_set_groups")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_DEVICE_SET_GROUPS];

	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_text_or_null(s, 2, groups_json);
	if(rc == SQLITE_OK) rc = bind_text_or_null(s, 3, op_attributes_json);
	if(rc != SQLITE_OK) return bind_fail(st, s, "device_set_groups", rc);
	rc = run(st, ST_DEVICE_SET_GROUPS, "device_set_groups");
	/* changes() counts matched rows, also when both values stay the same. */
	if(rc == FLEETMQ_OK && sqlite3_changes(st->db) == 0){
		snprintf(st->errmsg, sizeof(st->errmsg), "device_set_groups: no device '%s'", id);
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

	/* id may point into st->device_scratch (a previous get): keep it until the end. */
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
	fm_free(st->device_scratch);
	st->device_scratch = copy;
	rc = FLEETMQ_OK;

cleanup:
	stmt_done(s);
	return rc;
}

struct device_walk {
	int (*cb)(const struct fleetmq_device_rec *rec, void *userdata);
	void *userdata;
};

static int device_emit(sqlite3_stmt *s, void *walk)
{
	struct device_walk *w = walk;
	struct fleetmq_device_rec rec;

	device_from_row(s, &rec);
	return w->cb(&rec, w->userdata);
}

int fleetmq_store_device_foreach(struct fleetmq_store *st,
		int (*cb)(const struct fleetmq_device_rec *rec, void *userdata), void *userdata)
{
	struct device_walk w = { cb, userdata };

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "device_foreach");
	if(in_walk(st, "device_foreach")) return FLEETMQ_ERR_BAD_REQUEST;
	return walk_rows(st, st->stmt[ST_DEVICE_ALL], "device_foreach", device_emit, &w, NULL);
}

/* ---- shadows ------------------------------------------------------------ */

int fleetmq_store_shadow_put(struct fleetmq_store *st, const char *id, uint64_t version,
		const char *doc, size_t len)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0] || !doc) return arg_fail(st, "shadow_put");
	if(in_walk(st, "shadow_put")) return FLEETMQ_ERR_BAD_REQUEST;

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

/* ---- jobs --------------------------------------------------------------- */

static void job_from_row(sqlite3_stmt *s, struct fleetmq_job_rec *rec)
{
	rec->id = column_str(s, JC_ID, "");
	rec->seq = column_u64(s, JC_SEQ);
	rec->type = column_str(s, JC_TYPE, "");
	rec->spec_json = column_str(s, JC_SPEC, "");
	rec->spec_hash = column_str(s, JC_SPEC_HASH, "");
	rec->status = (enum fleetmq_job_status)sqlite3_column_int(s, JC_STATUS);
	rec->status_reason = column_str(s, JC_STATUS_REASON, "");
	rec->continuous = sqlite3_column_int(s, JC_CONTINUOUS) != 0;
	rec->fanout_done = sqlite3_column_int(s, JC_FANOUT_DONE) != 0;
	rec->fanout_cursor = column_str(s, JC_FANOUT_CURSOR, "");
	rec->rollout_json = column_str(s, JC_ROLLOUT, "{}");
	rec->created_ms = column_u64(s, JC_CREATED);
	rec->updated_ms = column_u64(s, JC_UPDATED);
	rec->created_by = column_str(s, JC_CREATED_BY, "");
}

static char *job_copy_strings(struct fleetmq_job_rec *rec)
{
	const char **f[] = {
		&rec->id, &rec->type, &rec->spec_json, &rec->spec_hash, &rec->status_reason,
		&rec->fanout_cursor, &rec->rollout_json, &rec->created_by,
	};

	return copy_strings(f, sizeof(f) / sizeof(f[0]));
}

static bool seq_valid(uint64_t seq)
{
	return seq >= 1 && seq <= (uint64_t)INT64_MAX;
}

int fleetmq_store_job_put(struct fleetmq_store *st, const struct fleetmq_job_rec *rec)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!rec || !rec->id || !rec->id[0] || !rec->type || !rec->spec_json || !rec->spec_hash
			|| !rec->created_by){
		return arg_fail(st, "job_put");
	}
	if(!seq_valid(rec->seq) || (int)rec->status < 0 || (int)rec->status >= FM_JOB_STATUS_COUNT){
		snprintf(st->errmsg, sizeof(st->errmsg), "job_put: seq %llu or status %d out of range",
				(unsigned long long)rec->seq, (int)rec->status);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(in_walk(st, "job_put")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_JOB_PUT];

	rc = sqlite3_bind_text(s, JC_ID + 1, rec->id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_u64(s, JC_SEQ + 1, rec->seq);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, JC_TYPE + 1, rec->type, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, JC_SPEC + 1, rec->spec_json, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, JC_SPEC_HASH + 1, rec->spec_hash, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, JC_STATUS + 1, (int)rec->status);
	if(rc == SQLITE_OK) rc = bind_text_or(s, JC_STATUS_REASON + 1, rec->status_reason, "");
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, JC_CONTINUOUS + 1, rec->continuous ? 1 : 0);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, JC_FANOUT_DONE + 1, rec->fanout_done ? 1 : 0);
	if(rc == SQLITE_OK) rc = bind_text_or(s, JC_FANOUT_CURSOR + 1, rec->fanout_cursor, "");
	if(rc == SQLITE_OK) rc = bind_text_or(s, JC_ROLLOUT + 1, rec->rollout_json, "{}");
	if(rc == SQLITE_OK) rc = bind_u64(s, JC_CREATED + 1, rec->created_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, JC_UPDATED + 1, rec->updated_ms);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, JC_CREATED_BY + 1, rec->created_by, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK) return bind_fail(st, s, "job_put", rc);
	return run(st, ST_JOB_PUT, "job_put");
}

int fleetmq_store_job_get(struct fleetmq_store *st, const char *id, struct fleetmq_job_rec *rec)
{
	struct fleetmq_job_rec tmp;
	sqlite3_stmt *s;
	char *copy;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!id || !id[0] || !rec) return arg_fail(st, "job_get");
	s = st->stmt[ST_JOB_GET];

	/* id may point into st->job_scratch: it is freed only on success, at the end. */
	rc = sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK) return bind_fail(st, s, "job_get", rc);
	rc = step_one(st, s, "job_get", "job", id);
	if(rc) return rc;
	job_from_row(s, &tmp);
	copy = job_copy_strings(&tmp);
	stmt_done(s);
	if(!copy){
		snprintf(st->errmsg, sizeof(st->errmsg), "job_get: out of memory");
		return FLEETMQ_ERR_NOMEM;
	}
	fm_free(st->job_scratch);
	st->job_scratch = copy;
	*rec = tmp;
	return FLEETMQ_OK;
}

struct job_walk {
	int (*cb)(const struct fleetmq_job_rec *rec, void *userdata);
	void *userdata;
};

static int job_emit(sqlite3_stmt *s, void *walk)
{
	struct job_walk *w = walk;
	struct fleetmq_job_rec rec;

	job_from_row(s, &rec);
	return w->cb(&rec, w->userdata);
}

int fleetmq_store_job_foreach(struct fleetmq_store *st, bool open_only,
		int (*cb)(const struct fleetmq_job_rec *rec, void *userdata), void *userdata)
{
	struct job_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "job_foreach");
	if(in_walk(st, "job_foreach")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_JOB_FOREACH];
	rc = sqlite3_bind_int(s, 1, open_only ? 1 : 0);
	if(rc != SQLITE_OK) return bind_fail(st, s, "job_foreach", rc);
	return walk_rows(st, s, "job_foreach", job_emit, &w, NULL);
}

int fleetmq_store_job_list(struct fleetmq_store *st, int status_filter, uint64_t after_seq, int limit,
		int (*cb)(const struct fleetmq_job_rec *rec, void *userdata), void *userdata)
{
	struct job_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "job_list");
	if(status_filter < -1 || status_filter >= FM_JOB_STATUS_COUNT){
		snprintf(st->errmsg, sizeof(st->errmsg), "job_list: unknown status %d", status_filter);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(in_walk(st, "job_list")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_JOB_LIST];
	rc = sqlite3_bind_int(s, 1, status_filter);
	if(rc == SQLITE_OK) rc = bind_u64_clamped(s, 2, after_seq);
	if(rc == SQLITE_OK) rc = bind_limit(s, 3, limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "job_list", rc);
	return walk_rows(st, s, "job_list", job_emit, &w, NULL);
}

/* ---- executions --------------------------------------------------------- */

static void exec_from_row(sqlite3_stmt *s, struct fleetmq_exec_rec *rec)
{
	rec->job_id = column_str(s, EC_JOB, "");
	rec->device_id = column_str(s, EC_DEVICE, "");
	rec->seq = column_u64(s, EC_SEQ);
	rec->canary = sqlite3_column_int(s, EC_CANARY) != 0;
	rec->e.status = (enum fleetmq_exec_status)sqlite3_column_int(s, EC_STATUS);
	rec->e.version = column_u64(s, EC_VERSION);
	rec->e.attempt = (uint32_t)sqlite3_column_int64(s, EC_ATTEMPT);
	rec->e.queued_ms = column_u64(s, EC_QUEUED);
	rec->e.started_ms = column_u64(s, EC_STARTED);
	rec->e.updated_ms = column_u64(s, EC_UPDATED);
	rec->e.deadline_ms = column_u64(s, EC_DEADLINE);
	rec->e.retry_at_ms = column_u64(s, EC_RETRY_AT);
	rec->e.progress_percent = (int32_t)sqlite3_column_int(s, EC_PROGRESS);
	rec->step = column_str(s, EC_STEP, "");
	rec->details_json = column_str(s, EC_DETAILS, "{}");
}

static char *exec_copy_strings(struct fleetmq_exec_rec *rec)
{
	const char **f[] = { &rec->job_id, &rec->device_id, &rec->step, &rec->details_json };

	return copy_strings(f, sizeof(f) / sizeof(f[0]));
}

static bool exec_status_valid(int status)
{
	return status >= 0 && status < FM_EXEC_STATUS_COUNT;
}

int fleetmq_store_exec_put(struct fleetmq_store *st, const struct fleetmq_exec_rec *rec)
{
	const struct fleetmq_execution *e;
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!rec || !rec->job_id || !rec->job_id[0] || !rec->device_id || !rec->device_id[0]){
		return arg_fail(st, "exec_put");
	}
	e = &rec->e;
	if(!seq_valid(rec->seq) || !exec_status_valid((int)e->status)){
		snprintf(st->errmsg, sizeof(st->errmsg), "exec_put: seq %llu or status %d out of range",
				(unsigned long long)rec->seq, (int)e->status);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(in_walk(st, "exec_put")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_EXEC_PUT];

	rc = sqlite3_bind_text(s, EC_JOB + 1, rec->job_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, EC_DEVICE + 1, rec->device_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_SEQ + 1, rec->seq);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, EC_CANARY + 1, rec->canary ? 1 : 0);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, EC_STATUS + 1, (int)e->status);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_VERSION + 1, e->version);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int64(s, EC_ATTEMPT + 1, (sqlite3_int64)e->attempt);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_QUEUED + 1, e->queued_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_STARTED + 1, e->started_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_UPDATED + 1, e->updated_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_DEADLINE + 1, e->deadline_ms);
	if(rc == SQLITE_OK) rc = bind_u64(s, EC_RETRY_AT + 1, e->retry_at_ms);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, EC_PROGRESS + 1, (int)e->progress_percent);
	if(rc == SQLITE_OK) rc = bind_text_or(s, EC_STEP + 1, rec->step, "");
	if(rc == SQLITE_OK) rc = bind_text_or(s, EC_DETAILS + 1, rec->details_json, "{}");
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_put", rc);
	return run(st, ST_EXEC_PUT, "exec_put");
}

int fleetmq_store_exec_get(struct fleetmq_store *st, const char *job_id, const char *device_id,
		struct fleetmq_exec_rec *rec)
{
	struct fleetmq_exec_rec tmp;
	char key[128];
	sqlite3_stmt *s;
	char *copy;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!job_id || !job_id[0] || !device_id || !device_id[0] || !rec) return arg_fail(st, "exec_get");
	s = st->stmt[ST_EXEC_GET];

	/* The keys may point into st->exec_scratch: it is freed only on success, at the end. */
	rc = sqlite3_bind_text(s, 1, job_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, 2, device_id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_get", rc);
	snprintf(key, sizeof(key), "%s/%s", job_id, device_id);
	rc = step_one(st, s, "exec_get", "execution", key);
	if(rc) return rc;
	exec_from_row(s, &tmp);
	copy = exec_copy_strings(&tmp);
	stmt_done(s);
	if(!copy){
		snprintf(st->errmsg, sizeof(st->errmsg), "exec_get: out of memory");
		return FLEETMQ_ERR_NOMEM;
	}
	fm_free(st->exec_scratch);
	st->exec_scratch = copy;
	*rec = tmp;
	return FLEETMQ_OK;
}

struct exec_walk {
	int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata);
	void *userdata;
};

static int exec_emit(sqlite3_stmt *s, void *walk)
{
	struct exec_walk *w = walk;
	struct fleetmq_exec_rec rec;

	exec_from_row(s, &rec);
	return w->cb(&rec, w->userdata);
}

int fleetmq_store_exec_foreach_device(struct fleetmq_store *st, const char *device_id, bool active_only,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata)
{
	struct exec_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!device_id || !device_id[0] || !cb) return arg_fail(st, "exec_foreach_device");
	if(in_walk(st, "exec_foreach_device")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[active_only ? ST_EXEC_DEVICE_ACTIVE : ST_EXEC_DEVICE_ALL];
	rc = sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_foreach_device", rc);
	return walk_rows(st, s, "exec_foreach_device", exec_emit, &w, NULL);
}

int fleetmq_store_exec_foreach_job(struct fleetmq_store *st, const char *job_id, int status_filter,
		const char *after_device, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata)
{
	struct exec_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!job_id || !job_id[0] || !after_device || !cb) return arg_fail(st, "exec_foreach_job");
	if(status_filter != -1 && !exec_status_valid(status_filter)){
		snprintf(st->errmsg, sizeof(st->errmsg), "exec_foreach_job: unknown status %d", status_filter);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(in_walk(st, "exec_foreach_job")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_EXEC_JOB];
	rc = sqlite3_bind_text(s, 1, job_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, 2, status_filter);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, 3, after_device, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_limit(s, 4, limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_foreach_job", rc);
	return walk_rows(st, s, "exec_foreach_job", exec_emit, &w, NULL);
}

int fleetmq_store_exec_pending(struct fleetmq_store *st, const char *job_id, bool canary, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata)
{
	struct exec_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!job_id || !job_id[0] || !cb) return arg_fail(st, "exec_pending");
	if(in_walk(st, "exec_pending")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_EXEC_PENDING];
	rc = sqlite3_bind_text(s, 1, job_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, 2, canary ? 1 : 0);
	if(rc == SQLITE_OK) rc = bind_limit(s, 3, limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_pending", rc);
	return walk_rows(st, s, "exec_pending", exec_emit, &w, NULL);
}

int fleetmq_store_exec_due(struct fleetmq_store *st, uint64_t now_ms, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata)
{
	struct exec_walk w = { cb, userdata };
	sqlite3_stmt *s;
	int rows = 0, rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "exec_due");
	if(in_walk(st, "exec_due")) return FLEETMQ_ERR_BAD_REQUEST;

	/* Two statements, each served by its partial index. */
	s = st->stmt[ST_EXEC_DUE_DEADLINE];
	rc = bind_u64_clamped(s, 1, now_ms);
	if(rc == SQLITE_OK) rc = bind_limit(s, 2, limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_due", rc);
	rc = walk_rows(st, s, "exec_due: deadlines", exec_emit, &w, &rows);
	if(rc != FLEETMQ_OK) return rc;
	if(limit > 0 && rows >= limit) return FLEETMQ_OK;

	s = st->stmt[ST_EXEC_DUE_RETRY];
	rc = bind_u64_clamped(s, 1, now_ms);
	if(rc == SQLITE_OK) rc = bind_limit(s, 2, limit > 0 ? limit - rows : limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_due", rc);
	return walk_rows(st, s, "exec_due: retries", exec_emit, &w, NULL);
}

static int exec_counts(struct fleetmq_store *st, const char *what, const char *job_id, bool canary_only,
		bool final_only, uint64_t counts[FM_EXEC_STATUS_COUNT])
{
	sqlite3_stmt *s;
	int status, rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!job_id || !job_id[0] || !counts) return arg_fail(st, what);
	memset(counts, 0, sizeof(counts[0]) * FM_EXEC_STATUS_COUNT);
	s = st->stmt[ST_EXEC_COUNTS];
	rc = sqlite3_bind_text(s, 1, job_id, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, 2, canary_only ? 1 : 0);
	if(rc == SQLITE_OK) rc = sqlite3_bind_int(s, 3, final_only ? 1 : 0);
	if(rc != SQLITE_OK) return bind_fail(st, s, what, rc);
	while((rc = sqlite3_step(s)) == SQLITE_ROW){
		status = sqlite3_column_int(s, 0);
		/* exec_put admits only known statuses; ignore anything written by others. */
		if(exec_status_valid(status)) counts[status] = column_u64(s, 1);
	}
	stmt_done(s);
	if(rc != SQLITE_DONE){
		memset(counts, 0, sizeof(counts[0]) * FM_EXEC_STATUS_COUNT);
		return db_fail(st, what, rc);
	}
	return FLEETMQ_OK;
}

int fleetmq_store_exec_counts(struct fleetmq_store *st, const char *job_id,
		uint64_t counts[FM_EXEC_STATUS_COUNT])
{
	return exec_counts(st, "exec_counts", job_id, false, false, counts);
}

int fleetmq_store_exec_counts_canary(struct fleetmq_store *st, const char *job_id,
		uint64_t counts[FM_EXEC_STATUS_COUNT])
{
	return exec_counts(st, "exec_counts_canary", job_id, true, false, counts);
}

int fleetmq_store_exec_counts_final(struct fleetmq_store *st, const char *job_id, bool canary_only,
		uint64_t counts[FM_EXEC_STATUS_COUNT])
{
	return exec_counts(st, "exec_counts_final", job_id, canary_only, true, counts);
}

/* Run a one-row, one-column integer query already bound; *out = its value. */
static int query_u64(struct fleetmq_store *st, sqlite3_stmt *s, const char *what, uint64_t *out)
{
	int rc = sqlite3_step(s);

	if(rc == SQLITE_ROW){
		*out = column_u64(s, 0);
		rc = FLEETMQ_OK;
	}else{
		rc = db_fail(st, what, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
	}
	stmt_done(s);
	return rc;
}

int fleetmq_store_exec_count_device_active(struct fleetmq_store *st, const char *device_id, uint64_t *count)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!device_id || !device_id[0] || !count) return arg_fail(st, "exec_count_device_active");
	s = st->stmt[ST_EXEC_COUNT_DEVICE_ACTIVE];
	rc = sqlite3_bind_text(s, 1, device_id, -1, SQLITE_STATIC);
	if(rc != SQLITE_OK) return bind_fail(st, s, "exec_count_device_active", rc);
	return query_u64(st, s, "exec_count_device_active", count);
}

int fleetmq_store_max_seq(struct fleetmq_store *st, uint64_t *seq)
{
	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!seq) return arg_fail(st, "max_seq");
	return query_u64(st, st->stmt[ST_MAX_SEQ], "max_seq", seq);
}

/* ---- audit log ---------------------------------------------------------- */

int fleetmq_store_audit_add(struct fleetmq_store *st, uint64_t ts_ms, const char *actor, const char *action,
		const char *target, const char *detail_json)
{
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!actor || !action || !target) return arg_fail(st, "audit_add");
	if(in_walk(st, "audit_add")) return FLEETMQ_ERR_BAD_REQUEST;
	s = st->stmt[ST_AUDIT_ADD];
	rc = bind_u64(s, 1, ts_ms);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, 2, actor, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, 3, action, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = sqlite3_bind_text(s, 4, target, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK) rc = bind_text_or(s, 5, detail_json, "{}");
	if(rc != SQLITE_OK) return bind_fail(st, s, "audit_add", rc);
	return run(st, ST_AUDIT_ADD, "audit_add");
}

struct audit_walk {
	int (*cb)(const struct fleetmq_audit_rec *rec, void *userdata);
	void *userdata;
};

static int audit_emit(sqlite3_stmt *s, void *walk)
{
	struct audit_walk *w = walk;
	struct fleetmq_audit_rec rec;

	rec.seq = column_u64(s, AC_SEQ);
	rec.ts_ms = column_u64(s, AC_TS);
	rec.actor = column_str(s, AC_ACTOR, "");
	rec.action = column_str(s, AC_ACTION, "");
	rec.target = column_str(s, AC_TARGET, "");
	rec.detail_json = column_str(s, AC_DETAIL, "{}");
	return w->cb(&rec, w->userdata);
}

/* Bind ?3 to the smallest string above every string starting with the n
 * bytes of prefix (bytewise): the prefix up to its last byte that is not
 * 0xFF, that byte incremented. If there is none, bind an empty BLOB, which
 * SQLite orders after every TEXT value. */
static int bind_prefix_end(sqlite3_stmt *s, int idx, const char *prefix, size_t n)
{
	char *end;
	size_t k = n;
	int rc;

	while(k > 0 && (unsigned char)prefix[k - 1] == 0xFF) k--;
	if(k == 0) return sqlite3_bind_zeroblob(s, idx, 0);
	end = fm_malloc(k);
	if(!end) return SQLITE_NOMEM;
	memcpy(end, prefix, k);
	end[k - 1] = (char)((unsigned char)end[k - 1] + 1);
	rc = sqlite3_bind_text64(s, idx, end, k, SQLITE_TRANSIENT, SQLITE_UTF8);
	fm_free(end);
	return rc;
}

int fleetmq_store_audit_query(struct fleetmq_store *st, const char *actor, const char *target,
		uint64_t since_ms, uint64_t before_seq, int limit,
		int (*cb)(const struct fleetmq_audit_rec *rec, void *userdata), void *userdata)
{
	struct audit_walk w = { cb, userdata };
	enum { T_ANY = 0, T_EXACT = 1, T_PREFIX = 2 } mode = T_ANY;
	size_t tlen = 0;
	sqlite3_stmt *s;
	int rc;

	if(!st) return FLEETMQ_ERR_BAD_REQUEST;
	if(!cb) return arg_fail(st, "audit_query");
	if(in_walk(st, "audit_query")) return FLEETMQ_ERR_BAD_REQUEST;
	if(target){
		tlen = strlen(target);
		if(tlen > 0 && target[tlen - 1] == '*'){
			tlen--;
			mode = tlen > 0 ? T_PREFIX : T_ANY;  /* "*" alone: any target */
		}else{
			mode = T_EXACT;
		}
	}
	s = st->stmt[ST_AUDIT_Q + (actor ? 1 : 0) + 2 * (int)mode];

	rc = SQLITE_OK;
	if(actor) rc = sqlite3_bind_text(s, 1, actor, -1, SQLITE_STATIC);
	if(rc == SQLITE_OK && mode != T_ANY) rc = sqlite3_bind_text64(s, 2, target, tlen, SQLITE_STATIC, SQLITE_UTF8);
	if(rc == SQLITE_OK && mode == T_PREFIX) rc = bind_prefix_end(s, 3, target, tlen);
	if(rc == SQLITE_OK) rc = bind_u64_clamped(s, 4, since_ms);
	if(rc == SQLITE_OK) rc = bind_u64_clamped(s, 5, before_seq ? before_seq : UINT64_MAX);
	if(rc == SQLITE_OK) rc = bind_limit(s, 6, limit);
	if(rc != SQLITE_OK) return bind_fail(st, s, "audit_query", rc);
	return walk_rows(st, s, "audit_query", audit_emit, &w, NULL);
}
