/*
 * shadow.h - pure core of device shadows (no Mosquitto, no SQLite, no clock).
 *
 * A shadow is two JSON object trees, desired and reported, plus a metadata
 * tree for each with the same shape whose leaves are the update time (ms
 * since the Unix epoch) of the corresponding key, and a document version
 * that increases by exactly one on every accepted update.
 *
 * Merge rules for a partial update (a JSON object "patch" applied to one side):
 *   - a key whose value is null is deleted (with its metadata); deleting a
 *     missing key is allowed and is not an error;
 *   - a key whose value is an object merges recursively into an existing
 *     object, or replaces a non-object;
 *   - any other value (string, number, bool, array) replaces the old value;
 *   - an object left empty by deletions is removed: after a non-empty patch
 *     object is merged, an object with no members left is deleted (with its
 *     metadata), recursively up the tree. So {"a":{"b":null}} deletes a
 *     scalar "a" too (the object replaces it, then ends up empty), while an
 *     empty patch object {"a":{}} stores an empty object (or leaves an
 *     existing object "a" as it is).
 * Nulls inside a patch's objects never reach the document; arrays are opaque
 * values (stored and compared whole, nulls inside them kept). Keys are
 * case-sensitive; a key repeated in a patch is applied occurrence by
 * occurrence, in order (so a later value wins and repeated objects merge).
 * The metadata of an object is an object; of any other value, the time (ms)
 * of the update that last set it. An update touches exactly the keys it
 * names: the other keys keep their values and timestamps.
 * Delta = the keys of desired whose value differs from reported (recursively
 * for objects), or that reported lacks. Arrays compare as whole values.
 *
 * Limits: the serialized state ({"desired":..,"reported":..}, unformatted)
 * must stay <= max_document_bytes, and no patch or resulting tree may nest
 * objects/arrays deeper than max_depth (the top-level object is depth 1).
 * A rejected update leaves the shadow untouched.
 *
 * Memory: all cJSON trees are owned by the struct fleetmq_shadow and freed
 * by fleetmq_shadow_clear(). Functions returning char * or cJSON * return a
 * new allocation owned by the caller (free with fm_free / cJSON_Delete); they
 * return NULL on out-of-memory. The strings are cJSON_PrintUnformatted output,
 * allocated through cJSON's hooks, which fleetmq_alloc_set() keeps equal to
 * fm_malloc/fm_free; that is why fm_free is the right way to release them.
 * Not thread-safe; the broker calls it from its single thread.
 */
#ifndef FLEETMQ_SHADOW_H
#define FLEETMQ_SHADOW_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

enum fleetmq_shadow_side {
	FLEETMQ_SHADOW_DESIRED = 0,
	FLEETMQ_SHADOW_REPORTED = 1,
};

struct fleetmq_shadow_limits {
	size_t max_document_bytes;   /* default 8192 */
	int max_depth;               /* default 8 */
};

struct fleetmq_shadow {
	uint64_t version;            /* 0 = never updated */
	uint64_t updated_ms;         /* time of last accepted update */
	cJSON *desired;              /* object, never NULL after init */
	cJSON *reported;             /* object, never NULL after init */
	cJSON *meta_desired;         /* object mirroring desired; leaves = ms */
	cJSON *meta_reported;        /* object mirroring reported; leaves = ms */
};

/* Initialise an empty shadow (version 0). Returns FLEETMQ_OK, FLEETMQ_ERR_NOMEM
 * (s left cleared) or FLEETMQ_ERR_INTERNAL (s NULL). */
int fleetmq_shadow_init(struct fleetmq_shadow *s);

/* Free everything held by s and zero it; s may be re-initialised afterwards.
 * Safe on a cleared shadow and on NULL. */
void fleetmq_shadow_clear(struct fleetmq_shadow *s);

/* Depth of a JSON value: scalars (and NULL) 0, object/array 1 + max depth of
 * children. */
int fleetmq_json_depth(const cJSON *v);

/*
 * Apply a partial update to one side.
 *   patch            JSON object (not owned; not modified)
 *   expected_version 0 = unconditional; else must equal s->version
 *   now_ms           timestamp recorded in metadata for every touched key
 *   reason           optional buffer (may be NULL) for a human-readable,
 *                    NUL-terminated reason on error, naming the offending
 *                    key path where there is one ("key 'a.b[2]' nests deeper
 *                    than 8 levels"); set to "" on success
 * Returns FLEETMQ_OK (version incremented, updated_ms = now_ms, even when the
 * patch changed nothing, e.g. it only deleted missing keys) or, checked in
 * this order:
 *   FLEETMQ_ERR_INTERNAL         s not initialised, limits NULL or side invalid
 *   FLEETMQ_ERR_WRONG_TYPE       patch is not an object, or holds a value a
 *                                shadow cannot store (raw JSON, NaN/infinity:
 *                                cJSON parses 1e999 as infinity)
 *   FLEETMQ_ERR_BAD_REQUEST      patch is an empty object
 *   FLEETMQ_ERR_TOO_DEEP         patch deeper than max_depth
 *   FLEETMQ_ERR_VERSION_CONFLICT expected_version mismatch
 *   FLEETMQ_ERR_TOO_LARGE        version is already 2^53, the largest a
 *                                stored document may hold (see load)
 *   FLEETMQ_ERR_TOO_DEEP         resulting side deeper than max_depth (only
 *                                possible if the limit was lowered)
 *   FLEETMQ_ERR_TOO_LARGE        result larger than max_document_bytes
 *                                (counting both sides)
 *   FLEETMQ_ERR_NOMEM
 * The request's own errors come before the version check: a patch that can
 * never be accepted is not reported as a (retryable) conflict. Limits apply
 * to the result, so after a limit was lowered an update that brings the
 * document back within it is accepted.
 * On any error the shadow is unchanged.
 */
int fleetmq_shadow_apply(struct fleetmq_shadow *s, enum fleetmq_shadow_side side,
		const cJSON *patch, uint64_t expected_version, uint64_t now_ms,
		const struct fleetmq_shadow_limits *limits, char *reason, size_t reason_len);

/* Delta (desired minus reported). Returns a new object, or NULL when there
 * is no difference (also on out-of-memory; fleetmq_shadow_state_json() tells
 * the two apart). An object in desired that reported lacks, or holds as a
 * non-object, appears whole; objects on both sides recurse and appear only
 * if some member differs. Numbers compare as cJSON_Compare does. */
cJSON *fleetmq_shadow_delta(const struct fleetmq_shadow *s);

/* Metadata for a delta: the desired-side timestamps of exactly the delta's
 * keys (same shape as delta). Returns a new object, or NULL if delta is NULL
 * or not an object, or on out-of-memory. */
cJSON *fleetmq_shadow_delta_metadata(const struct fleetmq_shadow *s, const cJSON *delta);

/* Metadata subtree for the keys touched by a patch on one side, after it was
 * applied: the timestamps of the keys the patch set, in the shape of the
 * patch. Deleted keys are omitted (they have no metadata any more), and so
 * are objects that end up with nothing timestamped in them (emptied objects,
 * empty patch objects). New object, possibly empty; NULL if patch is not an
 * object or on out-of-memory. */
cJSON *fleetmq_shadow_patch_metadata(const struct fleetmq_shadow *s,
		enum fleetmq_shadow_side side, const cJSON *patch);

/* {"desired":..,"reported":..[,"delta":..]} unformatted JSON, new string;
 * "delta" only when with_delta and there is one. Without delta, its length is
 * what max_document_bytes limits. */
char *fleetmq_shadow_state_json(const struct fleetmq_shadow *s, int with_delta);

/* {"desired":..,"reported":..} metadata trees, unformatted JSON, new string. */
char *fleetmq_shadow_metadata_json(const struct fleetmq_shadow *s);

/* Serialize the whole shadow for storage (version, updated_ms, state and
 * metadata) as one unformatted JSON text, new string:
 *   {"version":N,"updated_ms":N,"desired":{..},"reported":{..},
 *    "metadata":{"desired":{..},"reported":{..}}}
 * Parse it back with fleetmq_shadow_load(). */
char *fleetmq_shadow_serialize(const struct fleetmq_shadow *s);

/* Replace s (initialised) with the serialized form: json is len bytes, need
 * not be NUL-terminated; trailing JSON whitespace is allowed.
 * FLEETMQ_ERR_MALFORMED if the text is not a valid serialized shadow: it must
 * be an object with exactly the five keys above (and metadata exactly
 * desired/reported), each once; version and updated_ms non-negative integers
 * <= 2^53; desired/reported objects without null members, repeated keys or
 * non-finite numbers; each metadata tree mirroring its side exactly (an
 * object for every object, a non-negative integer for every other value, no
 * extra keys). cJSON cannot tell out-of-memory from a syntax error while
 * parsing, so that is reported as FLEETMQ_ERR_MALFORMED too: callers must not
 * discard a stored document on this status alone.
 * FLEETMQ_ERR_INTERNAL if s is NULL. s unchanged on error. */
int fleetmq_shadow_load(struct fleetmq_shadow *s, const char *json, size_t len);

#endif
