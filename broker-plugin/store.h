/*
 * store.h - durable state of the broker plugin (SQLite, WAL).
 *
 * The store is the source of truth for devices and shadows (and, later,
 * jobs); in-memory structures are caches rebuilt from it at start-up.
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
 * callback (foreach) or until the next fleetmq_store_device_get() or
 * fleetmq_store_close() (get); copy to keep them. In particular the strings of
 * a record from device_get may be passed back into device_put.
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

#include <stddef.h>
#include <stdint.h>

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
 * value ("", "[]" or "{}"); on get, they are never NULL. */
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
};

/* Latest schema version this code knows. */
#define FLEETMQ_STORE_SCHEMA_VERSION 1

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
 * keeps the existing row's created_ms. */
int fleetmq_store_device_put(struct fleetmq_store *st, const struct fleetmq_device_rec *rec);

/* Update only the presence fields of an existing device. FLEETMQ_ERR_NOT_FOUND
 * if it does not exist. */
int fleetmq_store_device_set_presence(struct fleetmq_store *st, const char *id, int presence,
		uint64_t since_ms, uint64_t last_seen_ms, uint64_t connected_at_ms);

/* Fetch one device. FLEETMQ_ERR_NOT_FOUND if absent (*rec untouched). Strings
 * in *rec are the store's copies, valid until the next successful device_get
 * or close; other store calls (device_put included) leave them alone. */
int fleetmq_store_device_get(struct fleetmq_store *st, const char *id, struct fleetmq_device_rec *rec);

/* Call cb for every device, in id order (bytewise); cb returning non-zero
 * stops the walk and that value is returned. cb may call device_get and
 * shadow_get, but must not write, end the transaction or walk again
 * (a nested walk returns FLEETMQ_ERR_BAD_REQUEST). */
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

/* Text of the most recent failure on st (the operation, SQLite's message and
 * extended result code), for logs; "no error" before any failure. Not cleared
 * by successful calls. Owned by st: valid until fleetmq_store_close(), its
 * contents replaced by the next failure. Never NULL (also for st == NULL). */
const char *fleetmq_store_last_error(struct fleetmq_store *st);

#endif
