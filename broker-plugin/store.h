/*
 * store.h - durable state of the broker plugin (SQLite, WAL).
 *
 * The store is the source of truth for devices, shadows, jobs and their
 * executions, and the audit log; in-memory structures are caches rebuilt
 * from it at start-up.
 * The interface is deliberately narrow (records in, records out, explicit
 * transactions) so another backend (e.g. PostgreSQL) can implement it.
 *
 * Durability: the database runs in WAL mode with synchronous=FULL by default,
 * so a committed transaction survives kill -9 and power loss. Callers batch
 * the writes of one broker loop pass into one transaction (group commit):
 * fleetmq_store_begin() opens it if none is open, every write joins it, and
 * fleetmq_store_commit() makes it durable; only then may the caller
 * acknowledge those writes. Writes issued with no open transaction
 * autocommit (each one durable on return).
 *
 * Schema: versioned with PRAGMA user_version and migrated forward at open,
 * each migration in its own transaction. A database newer than this code is
 * refused (never downgraded silently).
 *
 * Strings in records returned by the store are valid only during the
 * callback (walks: *_foreach, *_list, exec_pending, exec_due, audit_query) or
 * until the next successful get of the same kind (device_get, job_get,
 * exec_get: one scratch copy each) or fleetmq_store_close(); copy to keep
 * them. In particular the strings of a record from a get may be passed back
 * into the matching put, or used as the key of the next get.
 *
 * Walks: a callback returning non-zero stops the walk and that value is
 * returned. Inside a callback only reads that are not walks are allowed
 * (the gets, exec_counts*, exec_count_device_active, max_seq, shadow_get);
 * a nested walk, any write, begin, commit and rollback return
 * FLEETMQ_ERR_BAD_REQUEST without touching the database. To change what a
 * walk found, collect the keys (bound the batch with limit) and write after
 * it returns.
 *
 * Integers: uint64_t values are stored with the bits of an int64. Sequence
 * numbers (jobs and executions share one space) must be 1..INT64_MAX;
 * timestamps compared by queries (deadline_ms, retry_at_ms, audit ts_ms)
 * beyond INT64_MAX count as "never". A limit <= 0 means no limit.
 *
 * Single-threaded use only (the connection is opened with SQLITE_OPEN_NOMUTEX).
 *
 * Every function returns an enum fleetmq_status (fleetmq_status.h):
 * FLEETMQ_OK, FLEETMQ_ERR_BAD_REQUEST for NULL/empty required arguments,
 * FLEETMQ_ERR_NOT_FOUND where stated, FLEETMQ_ERR_NOMEM, FLEETMQ_ERR_TOO_LARGE
 * (value beyond SQLite's limits) and FLEETMQ_ERR_IO for any other SQLite
 * failure; fleetmq_store_last_error() then says why.
 */
#ifndef FLEETMQ_STORE_H
#define FLEETMQ_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs.h"

struct fleetmq_store;

enum fleetmq_store_sync {
	FLEETMQ_STORE_SYNC_FULL = 0,     /* survives power loss (default) */
	FLEETMQ_STORE_SYNC_NORMAL = 1,   /* survives kill -9 only */
};

/* A zero-initialised struct means the defaults. */
struct fleetmq_store_options {
	enum fleetmq_store_sync sync;
	int busy_timeout_ms;             /* sqlite busy timeout; <= 0 means 5000 */
};

/* Device registry record. On put, NULL strings are stored as their "none"
 * value ("", "[]" or "{}"), except groups_json and op_attributes_json: NULL
 * keeps the existing row's value (and means "[]" / "{}" for a new row), so
 * a zero-initialised record written by the device-report path never clobbers
 * what an operator set. On get, no string is NULL. The store does not parse
 * any of the JSON columns; callers validate them. */
struct fleetmq_device_rec {
	const char *id;
	const char *device_type;         /* "" if unknown */
	const char *hw_revision;
	const char *agent_version;
	const char *software_json;       /* JSON array of {"name","version"}; "[]" if none */
	const char *attributes_json;     /* JSON object of strings; "{}" if none */
	int presence;                    /* fleetmq.v1.PresenceState value */
	uint64_t presence_since_ms;
	uint64_t last_seen_ms;
	uint64_t connected_at_ms;
	uint64_t created_ms;
	uint64_t shadow_version;
	const char *groups_json;         /* operator-set JSON array of group names; "[]" if none */
	const char *op_attributes_json;  /* operator-set JSON object; "{}" if none */
};

/* Lifecycle of a job (the store's record values; stored as integers). */
enum fleetmq_job_status {
	FM_JOB_SCHEDULED = 0,
	FM_JOB_IN_PROGRESS = 1,
	FM_JOB_COMPLETED = 2,
	FM_JOB_CANCELED = 3,
};
#define FM_JOB_STATUS_COUNT 4

/* A job. On put, id must be non-empty and type, spec_json, spec_hash and
 * created_by non-NULL; NULL status_reason / fanout_cursor are stored as "",
 * NULL rollout_json as "{}". On get, no string is NULL. */
struct fleetmq_job_rec {
	const char *id;
	uint64_t seq;                    /* 1..INT64_MAX, unique among jobs */
	const char *type;                /* e.g. "update" */
	const char *spec_json;           /* the job document as submitted */
	const char *spec_hash;           /* hash of spec_json (idempotent submits) */
	enum fleetmq_job_status status;
	const char *status_reason;       /* why it completed or was canceled; "" if none */
	bool continuous;                 /* also targets devices that join a group later */
	bool fanout_done;                /* every target has an execution row */
	const char *fanout_cursor;       /* last device id fanned out; "" = not started */
	const char *rollout_json;        /* persisted rollout state; "{}" if none */
	uint64_t created_ms;
	uint64_t updated_ms;
	const char *created_by;          /* actor that submitted the job */
};

/* One job on one device (key: job_id, device_id). On put, job_id and
 * device_id must be non-empty and e.status a valid enum fleetmq_exec_status;
 * NULL step is stored as "", NULL details_json as "{}". On get, no string is
 * NULL. The store applies no lifecycle rule (that is jobs.h's job). */
struct fleetmq_exec_rec {
	const char *job_id;
	const char *device_id;
	uint64_t seq;                    /* queue order, 1..INT64_MAX */
	bool canary;                     /* part of the job's canary set */
	struct fleetmq_execution e;      /* progress_percent is stored as "progress" */
	const char *step;                /* device-reported step name; "" if none */
	const char *details_json;        /* device-reported details; "{}" if none */
};

/* One audit log entry. */
struct fleetmq_audit_rec {
	uint64_t seq;                    /* assigned by the store, increasing, never reused */
	uint64_t ts_ms;
	const char *actor;
	const char *action;
	const char *target;
	const char *detail_json;
};

/* Latest schema version this code knows. */
#define FLEETMQ_STORE_SCHEMA_VERSION 2

/* Open (creating if needed) and migrate the database at path (a file: WAL
 * needs one, so ":memory:" is refused). opts may be NULL for defaults. A
 * database whose schema is newer than FLEETMQ_STORE_SCHEMA_VERSION is refused.
 * On error returns non-zero, *out = NULL, and a NUL-terminated reason in err
 * (err may be NULL). The store is freed by fleetmq_store_close(). */
int fleetmq_store_open(const char *path, const struct fleetmq_store_options *opts,
		struct fleetmq_store **out, char *err, size_t errlen);

/* Roll back any open transaction and close. NULL is allowed. */
void fleetmq_store_close(struct fleetmq_store *st);

/* Schema version of the open database (after migration); -1 if st is NULL. */
int fleetmq_store_schema_version(struct fleetmq_store *st);

/* Group transaction control. begin ("BEGIN IMMEDIATE": takes the write lock
 * at once, waiting up to busy_timeout_ms) is a no-op if one is open. commit
 * and rollback are no-ops if none is open. If COMMIT fails the transaction is
 * rolled back and FLEETMQ_ERR_IO returned: no transaction is left open and
 * none of its writes happened. in_txn is 1 if a transaction is open, else 0
 * (SQLite may also end one on its own after a severe error such as a full
 * disk; in_txn reports that truthfully). */
int fleetmq_store_begin(struct fleetmq_store *st);
int fleetmq_store_commit(struct fleetmq_store *st);
int fleetmq_store_rollback(struct fleetmq_store *st);
int fleetmq_store_in_txn(const struct fleetmq_store *st);

/* Insert or replace a device record (all fields), except that created_ms == 0
 * keeps the existing row's created_ms and NULL groups_json /
 * op_attributes_json keep the existing row's values. */
int fleetmq_store_device_put(struct fleetmq_store *st, const struct fleetmq_device_rec *rec);

/* Update only the presence fields of an existing device. FLEETMQ_ERR_NOT_FOUND
 * if it does not exist. */
int fleetmq_store_device_set_presence(struct fleetmq_store *st, const char *id, int presence,
		uint64_t since_ms, uint64_t last_seen_ms, uint64_t connected_at_ms);

/* Set the operator-owned fields of an existing device; NULL leaves that
 * field unchanged (both NULL: only checks that the device exists).
 * FLEETMQ_ERR_NOT_FOUND if there is no such device. */
int fleetmq_store_device_set_groups(struct fleetmq_store *st, const char *id, const char *groups_json,
		const char *op_attributes_json);

/* Fetch one device. FLEETMQ_ERR_NOT_FOUND if absent (*rec untouched). Strings
 * in *rec are the store's copies, valid until the next successful device_get
 * or close; other store calls (device_put included) leave them alone. */
int fleetmq_store_device_get(struct fleetmq_store *st, const char *id, struct fleetmq_device_rec *rec);

/* Call cb for every device, in id order (bytewise); cb returning non-zero
 * stops the walk and that value is returned. See "Walks" above for what cb
 * may call (a nested walk returns FLEETMQ_ERR_BAD_REQUEST). */
int fleetmq_store_device_foreach(struct fleetmq_store *st,
		int (*cb)(const struct fleetmq_device_rec *rec, void *userdata), void *userdata);

/* Store (insert or replace) a shadow document of len bytes (serialized by
 * fleetmq_shadow_serialize; need not be NUL-terminated) and its version; also
 * sets devices.shadow_version when the device exists. Both writes happen
 * together or not at all. */
int fleetmq_store_shadow_put(struct fleetmq_store *st, const char *id, uint64_t version,
		const char *doc, size_t len);

/* Read a shadow document. *doc is a new fm_malloc'd NUL-terminated string
 * owned by the caller (free with fm_free); len and version may be NULL.
 * FLEETMQ_ERR_NOT_FOUND if none (then *doc = NULL). */
int fleetmq_store_shadow_get(struct fleetmq_store *st, const char *id, char **doc, size_t *len,
		uint64_t *version);

/* ---- jobs --------------------------------------------------------------- */

/* Insert or replace a job (all fields). FLEETMQ_ERR_BAD_REQUEST for a
 * missing string, seq outside 1..INT64_MAX or an unknown status;
 * FLEETMQ_ERR_IO if seq belongs to another job (UNIQUE). */
int fleetmq_store_job_put(struct fleetmq_store *st, const struct fleetmq_job_rec *rec);

/* Fetch one job. FLEETMQ_ERR_NOT_FOUND if absent (*rec untouched). Strings
 * in *rec are the store's copies, valid until the next successful job_get or
 * close. */
int fleetmq_store_job_get(struct fleetmq_store *st, const char *id, struct fleetmq_job_rec *rec);

/* Walk the jobs in seq order; open_only: only those not COMPLETED or
 * CANCELED. Strings valid during cb only. */
int fleetmq_store_job_foreach(struct fleetmq_store *st, bool open_only,
		int (*cb)(const struct fleetmq_job_rec *rec, void *userdata), void *userdata);

/* One page of jobs in seq order: status == status_filter (-1 = any), seq >
 * after_seq (0 = from the start), at most limit (<= 0: no limit). The next
 * page starts after the last seq delivered. FLEETMQ_ERR_BAD_REQUEST for a
 * status_filter that is neither -1 nor a job status. */
int fleetmq_store_job_list(struct fleetmq_store *st, int status_filter, uint64_t after_seq, int limit,
		int (*cb)(const struct fleetmq_job_rec *rec, void *userdata), void *userdata);

/* ---- executions --------------------------------------------------------- */

/* Insert or replace an execution (all fields). The job need not exist (the
 * store keeps no foreign key; the adapter writes job and executions in one
 * group transaction). */
int fleetmq_store_exec_put(struct fleetmq_store *st, const struct fleetmq_exec_rec *rec);

/* Fetch the execution of job_id on device_id. FLEETMQ_ERR_NOT_FOUND if absent
 * (*rec untouched). Strings in *rec are the store's copies, valid until the
 * next successful exec_get or close. */
int fleetmq_store_exec_get(struct fleetmq_store *st, const char *job_id, const char *device_id,
		struct fleetmq_exec_rec *rec);

/* Walk the executions of one device. active_only: QUEUED and IN_PROGRESS
 * only, the IN_PROGRESS ones first, each group in seq order (the device's
 * queue as it should see it). Otherwise every execution of the device, in
 * seq order. */
int fleetmq_store_exec_foreach_device(struct fleetmq_store *st, const char *device_id, bool active_only,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata);

/* One page of a job's executions in device_id order (bytewise): status ==
 * status_filter (-1 = any), device_id > after_device ("" = from the start;
 * NULL is a bad request), at most limit (<= 0: no limit). The next page
 * starts after the last device_id delivered. */
int fleetmq_store_exec_foreach_job(struct fleetmq_store *st, const char *job_id, int status_filter,
		const char *after_device, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata);

/* The PENDING executions of a job with the given canary flag, in seq order,
 * at most limit (<= 0: no limit): the next ones the rollout may release. */
int fleetmq_store_exec_pending(struct fleetmq_store *st, const char *job_id, bool canary, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata);

/* Executions needing the clock's attention at now_ms, at most limit in all
 * (<= 0: no limit): first the IN_PROGRESS ones with 0 < deadline_ms <= now_ms
 * (by deadline), then those with 0 < retry_at_ms <= now_ms (by retry_at_ms;
 * an execution matching both comes once, as a deadline). Handle the batch
 * after the walk (which makes those rows no longer due) and call again while
 * a full batch came back. */
int fleetmq_store_exec_due(struct fleetmq_store *st, uint64_t now_ms, int limit,
		int (*cb)(const struct fleetmq_exec_rec *rec, void *userdata), void *userdata);

/* Number of executions of job_id per status (index = enum
 * fleetmq_exec_status); counts is overwritten (all zero for an unknown job).
 * _canary counts only canary executions. _final counts only final ones
 * (terminal status, i.e. >= FM_EXEC_SUCCEEDED, and no retry pending:
 * retry_at_ms == 0), of every execution or only the canaries: what
 * fleetmq_rollout_state.final_by_status / canary_final need at start-up. */
int fleetmq_store_exec_counts(struct fleetmq_store *st, const char *job_id,
		uint64_t counts[FM_EXEC_STATUS_COUNT]);
int fleetmq_store_exec_counts_canary(struct fleetmq_store *st, const char *job_id,
		uint64_t counts[FM_EXEC_STATUS_COUNT]);
int fleetmq_store_exec_counts_final(struct fleetmq_store *st, const char *job_id, bool canary_only,
		uint64_t counts[FM_EXEC_STATUS_COUNT]);

/* *count = number of QUEUED + IN_PROGRESS executions of device_id. */
int fleetmq_store_exec_count_device_active(struct fleetmq_store *st, const char *device_id, uint64_t *count);

/* *seq = the largest seq of any job or execution, 0 if there is none. The
 * adapter allocates new sequence numbers in memory from there. Scans the
 * executions table (no index leads with seq): meant for start-up. */
int fleetmq_store_max_seq(struct fleetmq_store *st, uint64_t *seq);

/* ---- audit log ---------------------------------------------------------- */

/* Append an entry; actor, action and target must be non-NULL; NULL
 * detail_json is stored as "{}". The store assigns seq. */
int fleetmq_store_audit_add(struct fleetmq_store *st, uint64_t ts_ms, const char *actor, const char *action,
		const char *target, const char *detail_json);

/* Walk audit entries newest first (seq descending): actor == actor (NULL =
 * any); target == target (NULL = any), or, when target ends with '*', every
 * target starting with the part before it (bytewise; "*" alone = any);
 * ts_ms >= since_ms; seq < before_seq (0 = from the newest); at most limit
 * (<= 0: no limit). The next page passes the last seq delivered as
 * before_seq. Strings valid during cb only. */
int fleetmq_store_audit_query(struct fleetmq_store *st, const char *actor, const char *target,
		uint64_t since_ms, uint64_t before_seq, int limit,
		int (*cb)(const struct fleetmq_audit_rec *rec, void *userdata), void *userdata);

/* Text of the most recent failure on st (the operation, SQLite's message and
 * extended result code), for logs; "no error" before any failure. Not cleared
 * by successful calls. Owned by st: valid until fleetmq_store_close(), its
 * contents replaced by the next failure. Never NULL (also for st == NULL). */
const char *fleetmq_store_last_error(struct fleetmq_store *st);

#endif
