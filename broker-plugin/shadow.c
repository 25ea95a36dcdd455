/*
 * shadow.c - pure core of device shadows (see shadow.h for the contract).
 *
 * Owns the desired/reported value trees of one shadow, their metadata mirrors
 * and the version. Never touches the clock, I/O, Mosquitto or SQLite, and
 * keeps no mutable global state: everything lives in struct fleetmq_shadow.
 *
 * Design:
 *  - An update is validated first (type, emptiness, depth, storable values,
 *    version), then merged into *copies* of the side's value and metadata
 *    trees. The copies are checked against the limits and swapped in only
 *    when everything passed, so a rejected or out-of-memory update leaves the
 *    shadow exactly as it was. The copy costs O(size of the side) per update,
 *    as does the unformatted print the size limit needs; documents are small
 *    and bounded, so this is cheaper and simpler than an undo log.
 *  - Value trees never hold null members (null means "delete") or duplicate
 *    keys: object values of a patch are always merged key by key (into the
 *    existing object or into a new empty one), never copied whole, so nulls
 *    and repeated keys inside them are resolved. Arrays are opaque values and
 *    are copied as they are.
 *  - Metadata trees have exactly the shape of the value trees: an object for
 *    every object, a number (ms) for every other value. A replaced member
 *    keeps its position, so both trees also keep the same key order.
 *  - Every key lookup is case-sensitive (cJSON_GetObjectItem is not). Each
 *    patch member costs one linear lookup in its target object, which is what
 *    cJSON's list-based objects imply; nothing else is quadratic.
 *  - Strings returned to callers are cJSON_PrintUnformatted output, allocated
 *    through cJSON's hooks; fleetmq_alloc_set() keeps those hooks equal to
 *    fm_malloc/fm_free, so callers release them with fm_free(). Temporaries
 *    printed inside this file are released with cJSON_free().
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "shadow.h"

/* Largest integer a JSON number (a double) holds exactly: 2^53. */
#define SHADOW_MAX_EXACT_INT 9007199254740992.0
/* Room for the key path named in a reason ("a.b[3].c"); longer paths are cut. */
#define SHADOW_PATH_MAX_BYTES 128
/* Bytes the size limit counts around the two sides: {"desired":,"reported":} */
#define SHADOW_STATE_OVERHEAD_BYTES (sizeof("{\"desired\":,\"reported\":}") - 1)

/* ---- small helpers ------------------------------------------------------ */

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(char *reason, size_t reason_len, const char *fmt, ...)
{
	va_list ap;

	if(reason == NULL || reason_len == 0) return;
	va_start(ap, fmt);
	vsnprintf(reason, reason_len, fmt, ap);
	va_end(ap);
}

static cJSON *get(const cJSON *obj, const char *key)
{
	return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static bool shadow_ready(const struct fleetmq_shadow *s)
{
	return s != NULL && s->desired != NULL && s->reported != NULL
		&& s->meta_desired != NULL && s->meta_reported != NULL;
}

static bool side_valid(enum fleetmq_shadow_side side)
{
	return side == FLEETMQ_SHADOW_DESIRED || side == FLEETMQ_SHADOW_REPORTED;
}

static const char *type_name(const cJSON *v)
{
	switch(v ? (v->type & 0xFF) : cJSON_Invalid){
		case cJSON_False:
		case cJSON_True: return "a boolean";
		case cJSON_NULL: return "null";
		case cJSON_Number: return "a number";
		case cJSON_String: return "a string";
		case cJSON_Array: return "an array";
		case cJSON_Object: return "an object";
		case cJSON_Raw: return "raw JSON";
		default: return "nothing";
	}
}

/* A JSON number holding a non-negative integer a double represents exactly. */
static bool json_u64(const cJSON *v, uint64_t *out)
{
	double d;

	if(!cJSON_IsNumber(v)) return false;
	d = v->valuedouble;
	if(!(d >= 0.0 && d <= SHADOW_MAX_EXACT_INT)) return false; /* also NaN */
	if((double)(uint64_t)d != d) return false;
	*out = (uint64_t)d;
	return true;
}

/* A value a shadow can store and print back unchanged: no raw JSON, no
 * invalid items, no NaN/infinity (cJSON parses 1e999 as infinity and would
 * print it as null). Recurses into arrays and objects. */
static bool storable(const cJSON *v)
{
	const cJSON *child;

	switch(v->type & 0xFF){
		case cJSON_False:
		case cJSON_True:
		case cJSON_NULL:
			return true;
		case cJSON_String:
			return v->valuestring != NULL;
		case cJSON_Number:
			return isfinite(v->valuedouble);
		case cJSON_Array:
		case cJSON_Object:
			cJSON_ArrayForEach(child, v){
				if(!storable(child)) return false;
			}
			return true;
		default:
			return false;
	}
}

/*
 * Put item under key in obj, taking ownership of item even on failure. An
 * existing member is replaced in place (same position); its key string is
 * handed over to the replacement, so replacing never allocates (cJSON's own
 * ReplaceItemInObject does not check its strdup).
 */
static int obj_put(cJSON *obj, const char *key, cJSON *item)
{
	cJSON *old = get(obj, key);

	if(old == NULL){
		if(!cJSON_AddItemToObject(obj, key, item)){
			cJSON_Delete(item);
			return FLEETMQ_ERR_NOMEM;
		}
		return FLEETMQ_OK;
	}
	if(item->string != NULL && !(item->type & cJSON_StringIsConst)){
		cJSON_free(item->string);
	}
	item->string = old->string;
	item->type = (item->type & ~cJSON_StringIsConst) | (old->type & cJSON_StringIsConst);
	old->string = NULL;
	cJSON_ReplaceItemViaPointer(obj, old, item); /* cannot fail: old is in obj */
	return FLEETMQ_OK;
}

/* Add a member to obj that prints as the object tree without owning it. */
static bool add_ref(cJSON *obj, const char *key, const cJSON *tree)
{
	cJSON *ref = cJSON_CreateObjectReference(tree->child);

	if(ref == NULL) return false;
	if(!cJSON_AddItemToObject(obj, key, ref)){
		cJSON_Delete(ref); /* a reference does not free what it points to */
		return false;
	}
	return true;
}

static int printed_bytes(const cJSON *v, size_t *bytes)
{
	char *txt = cJSON_PrintUnformatted(v);

	if(txt == NULL) return FLEETMQ_ERR_NOMEM;
	*bytes = strlen(txt);
	cJSON_free(txt);
	return FLEETMQ_OK;
}

/* ---- depth and value checks with a key path for the reason ---------------- */

struct tree_check {
	int max_depth;
	bool patch;                       /* also require storable scalars */
	const char *what;                 /* what is wrong (WRONG_TYPE) */
	size_t path_used;                 /* strlen(path) at the offending item */
	char path[SHADOW_PATH_MAX_BYTES]; /* "a.b[2].c" */
};

/* Append ".key" (or "key" at the start) or "[index]" to path; returns the new
 * length. A path that does not fit stays cut at SHADOW_PATH_MAX_BYTES - 1. */
static size_t path_push(char *path, size_t used, const char *key, int index)
{
	size_t room = SHADOW_PATH_MAX_BYTES - used;
	int n;

	if(used >= SHADOW_PATH_MAX_BYTES - 1) return used;
	if(key == NULL){
		n = snprintf(path + used, room, "[%d]", index);
	}else if(used == 0){
		n = snprintf(path, room, "%s", key);
	}else{
		n = snprintf(path + used, room, ".%s", key);
	}
	if(n < 0){
		path[used] = '\0';
		return used;
	}
	if((size_t)n >= room) return SHADOW_PATH_MAX_BYTES - 1;
	return used + (size_t)n;
}

/* Check the members of container (an object or array at depth `depth`). */
static int check_members(const cJSON *container, int depth, struct tree_check *c, size_t used)
{
	const cJSON *v;
	bool is_object = cJSON_IsObject(container);
	int index = 0;
	int rc;

	cJSON_ArrayForEach(v, container){
		size_t u;

		if(is_object && v->string == NULL){
			c->what = "a member without a key";
			c->path_used = used;
			return FLEETMQ_ERR_WRONG_TYPE;
		}
		u = path_push(c->path, used, is_object ? v->string : NULL, index++);
		if(cJSON_IsObject(v) || cJSON_IsArray(v)){
			if(depth + 1 > c->max_depth){
				c->path_used = u;
				return FLEETMQ_ERR_TOO_DEEP;
			}
			rc = check_members(v, depth + 1, c, u);
			if(rc != FLEETMQ_OK) return rc;
		}else if(c->patch && !storable(v)){
			c->what = cJSON_IsNumber(v) ? "a non-finite number"
				: cJSON_IsRaw(v) ? "raw JSON" : "an invalid value";
			c->path_used = u;
			return FLEETMQ_ERR_WRONG_TYPE;
		}
		c->path[used] = '\0';
	}
	return FLEETMQ_OK;
}

/* Check a patch (is_patch) or a resulting side against the depth limit. */
static int check_tree(const cJSON *root, int max_depth, bool is_patch,
		char *reason, size_t reason_len)
{
	struct tree_check c;
	const char *cut;
	int rc;

	if(max_depth < 1){
		set_reason(reason, reason_len, "%s nests deeper than %d levels",
				is_patch ? "update" : "document", max_depth);
		return FLEETMQ_ERR_TOO_DEEP;
	}
	memset(&c, 0, sizeof(c));
	c.max_depth = max_depth;
	c.patch = is_patch;
	rc = check_members(root, 1, &c, 0);
	cut = c.path_used >= SHADOW_PATH_MAX_BYTES - 1 ? "..." : "";
	if(rc == FLEETMQ_ERR_TOO_DEEP){
		if(is_patch){
			set_reason(reason, reason_len, "key '%s%s' nests deeper than %d levels",
					c.path, cut, max_depth);
		}else{
			set_reason(reason, reason_len,
					"update would make key '%s%s' nest deeper than %d levels",
					c.path, cut, max_depth);
		}
	}else if(rc == FLEETMQ_ERR_WRONG_TYPE){
		if(c.path_used == 0){
			set_reason(reason, reason_len, "update holds %s", c.what);
		}else{
			set_reason(reason, reason_len, "key '%s%s' holds %s, which a shadow cannot store",
					c.path, cut, c.what);
		}
	}
	return rc;
}

/* ---- lifecycle ----------------------------------------------------------- */

int fleetmq_shadow_init(struct fleetmq_shadow *s)
{
	if(s == NULL) return FLEETMQ_ERR_INTERNAL;
	memset(s, 0, sizeof(*s));
	s->desired = cJSON_CreateObject();
	s->reported = cJSON_CreateObject();
	s->meta_desired = cJSON_CreateObject();
	s->meta_reported = cJSON_CreateObject();
	if(!shadow_ready(s)){
		fleetmq_shadow_clear(s);
		return FLEETMQ_ERR_NOMEM;
	}
	return FLEETMQ_OK;
}

void fleetmq_shadow_clear(struct fleetmq_shadow *s)
{
	if(s == NULL) return;
	cJSON_Delete(s->desired);
	cJSON_Delete(s->reported);
	cJSON_Delete(s->meta_desired);
	cJSON_Delete(s->meta_reported);
	memset(s, 0, sizeof(*s));
}

int fleetmq_json_depth(const cJSON *v)
{
	const cJSON *child;
	int deepest = 0;

	if(!cJSON_IsObject(v) && !cJSON_IsArray(v)) return 0;
	cJSON_ArrayForEach(child, v){
		int d = fleetmq_json_depth(child);
		if(d > deepest) deepest = d;
	}
	return deepest + 1;
}

/* ---- update -------------------------------------------------------------- */

/*
 * Merge the members of patch into dst (a value object) and meta (its
 * metadata). On error dst/meta are half-merged: callers work on copies.
 */
static int merge_object(cJSON *dst, cJSON *meta, const cJSON *patch, double now)
{
	const cJSON *p;
	int rc;

	cJSON_ArrayForEach(p, patch){
		const char *key = p->string;

		if(cJSON_IsNull(p)){
			cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
			cJSON_DeleteItemFromObjectCaseSensitive(meta, key);
		}else if(cJSON_IsObject(p)){
			cJSON *d = get(dst, key);
			cJSON *m = get(meta, key);
			bool fresh = !cJSON_IsObject(d);

			if(fresh){
				/* an object replaces a non-object, then merges into it */
				d = cJSON_CreateObject();
				if(d == NULL) return FLEETMQ_ERR_NOMEM;
				rc = obj_put(dst, key, d);
				if(rc != FLEETMQ_OK) return rc;
			}
			if(fresh || !cJSON_IsObject(m)){
				m = cJSON_CreateObject();
				if(m == NULL) return FLEETMQ_ERR_NOMEM;
				rc = obj_put(meta, key, m);
				if(rc != FLEETMQ_OK) return rc;
			}
			rc = merge_object(d, m, p, now);
			if(rc != FLEETMQ_OK) return rc;
			if(p->child != NULL && d->child == NULL){
				/* emptied by this patch: remove it and its metadata */
				cJSON_DeleteItemFromObjectCaseSensitive(dst, key);
				cJSON_DeleteItemFromObjectCaseSensitive(meta, key);
			}
		}else{
			cJSON *v = cJSON_Duplicate(p, 1);
			cJSON *t;

			if(v == NULL) return FLEETMQ_ERR_NOMEM;
			rc = obj_put(dst, key, v);
			if(rc != FLEETMQ_OK) return rc;
			t = cJSON_CreateNumber(now);
			if(t == NULL) return FLEETMQ_ERR_NOMEM;
			rc = obj_put(meta, key, t);
			if(rc != FLEETMQ_OK) return rc;
		}
	}
	return FLEETMQ_OK;
}

/* Bytes of {"desired":..,"reported":..} printed unformatted. */
static int state_bytes(const cJSON *desired, const cJSON *reported, size_t *bytes)
{
	size_t d = 0, r = 0;
	int rc;

	rc = printed_bytes(desired, &d);
	if(rc == FLEETMQ_OK) rc = printed_bytes(reported, &r);
	*bytes = SHADOW_STATE_OVERHEAD_BYTES + d + r;
	return rc;
}

int fleetmq_shadow_apply(struct fleetmq_shadow *s, enum fleetmq_shadow_side side,
		const cJSON *patch, uint64_t expected_version, uint64_t now_ms,
		const struct fleetmq_shadow_limits *limits, char *reason, size_t reason_len)
{
	cJSON **value_slot, **meta_slot;
	cJSON *value = NULL, *meta = NULL, *tmp;
	size_t bytes = 0;
	int rc;

	if(reason != NULL && reason_len > 0) reason[0] = '\0';
	if(!shadow_ready(s) || limits == NULL || !side_valid(side)){
		set_reason(reason, reason_len, "invalid arguments");
		return FLEETMQ_ERR_INTERNAL;
	}
	if(!cJSON_IsObject(patch)){
		set_reason(reason, reason_len, "state must be a JSON object, not %s", type_name(patch));
		return FLEETMQ_ERR_WRONG_TYPE;
	}
	if(patch->child == NULL){
		set_reason(reason, reason_len, "update is an empty object");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	rc = check_tree(patch, limits->max_depth, true, reason, reason_len);
	if(rc != FLEETMQ_OK) return rc;
	if(expected_version != 0 && expected_version != s->version){
		set_reason(reason, reason_len, "expected version %" PRIu64 ", current version is %" PRIu64,
				expected_version, s->version);
		return FLEETMQ_ERR_VERSION_CONFLICT;
	}
	/* A version past 2^53 would not load back (fleetmq_shadow_load). */
	if(s->version >= (uint64_t)SHADOW_MAX_EXACT_INT){
		set_reason(reason, reason_len, "document version %" PRIu64 " is at its limit (2^53)", s->version);
		return FLEETMQ_ERR_TOO_LARGE;
	}

	value_slot = side == FLEETMQ_SHADOW_DESIRED ? &s->desired : &s->reported;
	meta_slot = side == FLEETMQ_SHADOW_DESIRED ? &s->meta_desired : &s->meta_reported;
	value = cJSON_Duplicate(*value_slot, 1);
	meta = cJSON_Duplicate(*meta_slot, 1);
	if(value == NULL || meta == NULL){
		rc = FLEETMQ_ERR_NOMEM;
		goto cleanup;
	}
	rc = merge_object(value, meta, patch, (double)now_ms);
	if(rc != FLEETMQ_OK) goto cleanup;
	rc = check_tree(value, limits->max_depth, false, reason, reason_len);
	if(rc != FLEETMQ_OK) goto cleanup;
	rc = state_bytes(side == FLEETMQ_SHADOW_DESIRED ? value : s->desired,
			side == FLEETMQ_SHADOW_REPORTED ? value : s->reported, &bytes);
	if(rc != FLEETMQ_OK) goto cleanup;
	if(bytes > limits->max_document_bytes){
		set_reason(reason, reason_len, "document would be %zu bytes, limit is %zu",
				bytes, limits->max_document_bytes);
		rc = FLEETMQ_ERR_TOO_LARGE;
		goto cleanup;
	}

	/* Commit: nothing below can fail; cleanup frees the old trees. */
	tmp = *value_slot;
	*value_slot = value;
	value = tmp;
	tmp = *meta_slot;
	*meta_slot = meta;
	meta = tmp;
	s->version++;
	s->updated_ms = now_ms;

cleanup:
	if(rc == FLEETMQ_ERR_NOMEM) set_reason(reason, reason_len, "out of memory");
	cJSON_Delete(value);
	cJSON_Delete(meta);
	return rc;
}

/* ---- delta and metadata views --------------------------------------------- */

/* Add to out the members of desired that reported lacks or holds differently. */
static int delta_members(cJSON *out, const cJSON *desired, const cJSON *reported)
{
	const cJSON *d;
	int rc;

	cJSON_ArrayForEach(d, desired){
		const cJSON *r = get(reported, d->string);
		cJSON *add;

		if(cJSON_IsObject(d) && cJSON_IsObject(r)){
			add = cJSON_CreateObject();
			if(add == NULL) return FLEETMQ_ERR_NOMEM;
			rc = delta_members(add, d, r);
			if(rc != FLEETMQ_OK || add->child == NULL){
				cJSON_Delete(add);
				if(rc != FLEETMQ_OK) return rc;
				continue;
			}
		}else if(r == NULL || !cJSON_Compare(d, r, 1)){
			add = cJSON_Duplicate(d, 1);
			if(add == NULL) return FLEETMQ_ERR_NOMEM;
		}else{
			continue;
		}
		if(!cJSON_AddItemToObject(out, d->string, add)){
			cJSON_Delete(add);
			return FLEETMQ_ERR_NOMEM;
		}
	}
	return FLEETMQ_OK;
}

/* *delta = new object, or NULL when there is no difference. */
static int shadow_delta(const struct fleetmq_shadow *s, cJSON **delta)
{
	cJSON *out = cJSON_CreateObject();
	int rc;

	*delta = NULL;
	if(out == NULL) return FLEETMQ_ERR_NOMEM;
	rc = delta_members(out, s->desired, s->reported);
	if(rc != FLEETMQ_OK || out->child == NULL){
		cJSON_Delete(out);
		return rc;
	}
	*delta = out;
	return FLEETMQ_OK;
}

cJSON *fleetmq_shadow_delta(const struct fleetmq_shadow *s)
{
	cJSON *delta = NULL;

	if(!shadow_ready(s)) return NULL;
	shadow_delta(s, &delta); /* NULL on out-of-memory too */
	return delta;
}

/*
 * Copy into out the metadata of the members of keys (a delta or a patch):
 * objects recurse, other members copy their metadata entry. Members without
 * metadata (deleted keys) are skipped; with prune, objects that end up empty
 * are left out. A key already in out (a patch may repeat keys) is merged,
 * not repeated.
 */
static int mirror_meta(cJSON *out, const cJSON *keys, const cJSON *meta, bool prune)
{
	const cJSON *k;
	int rc;

	cJSON_ArrayForEach(k, keys){
		const cJSON *m;
		cJSON *have, *add;

		if(k->string == NULL) continue;
		m = get(meta, k->string);
		if(m == NULL) continue;
		have = get(out, k->string);
		if(cJSON_IsObject(k) && cJSON_IsObject(m)){
			if(have != NULL){
				if(!cJSON_IsObject(have)) continue;
				rc = mirror_meta(have, k, m, prune);
				if(rc != FLEETMQ_OK) return rc;
				continue;
			}
			add = cJSON_CreateObject();
			if(add == NULL) return FLEETMQ_ERR_NOMEM;
			rc = mirror_meta(add, k, m, prune);
			if(rc != FLEETMQ_OK || (prune && add->child == NULL)){
				cJSON_Delete(add);
				if(rc != FLEETMQ_OK) return rc;
				continue;
			}
		}else{
			if(have != NULL) continue;
			add = cJSON_Duplicate(m, 1);
			if(add == NULL) return FLEETMQ_ERR_NOMEM;
		}
		if(!cJSON_AddItemToObject(out, k->string, add)){
			cJSON_Delete(add);
			return FLEETMQ_ERR_NOMEM;
		}
	}
	return FLEETMQ_OK;
}

static cJSON *mirror_new(const cJSON *keys, const cJSON *meta, bool prune)
{
	cJSON *out = cJSON_CreateObject();

	if(out != NULL && mirror_meta(out, keys, meta, prune) != FLEETMQ_OK){
		cJSON_Delete(out);
		out = NULL;
	}
	return out;
}

cJSON *fleetmq_shadow_delta_metadata(const struct fleetmq_shadow *s, const cJSON *delta)
{
	if(!shadow_ready(s) || !cJSON_IsObject(delta)) return NULL;
	return mirror_new(delta, s->meta_desired, false);
}

cJSON *fleetmq_shadow_patch_metadata(const struct fleetmq_shadow *s,
		enum fleetmq_shadow_side side, const cJSON *patch)
{
	if(!shadow_ready(s) || !side_valid(side) || !cJSON_IsObject(patch)) return NULL;
	return mirror_new(patch,
			side == FLEETMQ_SHADOW_DESIRED ? s->meta_desired : s->meta_reported, true);
}

/* ---- text forms ------------------------------------------------------------ */

char *fleetmq_shadow_state_json(const struct fleetmq_shadow *s, int with_delta)
{
	cJSON *doc = NULL, *delta = NULL;
	char *txt = NULL;

	if(!shadow_ready(s)) return NULL;
	doc = cJSON_CreateObject();
	if(doc == NULL || !add_ref(doc, "desired", s->desired)
			|| !add_ref(doc, "reported", s->reported)){
		goto cleanup;
	}
	if(with_delta){
		if(shadow_delta(s, &delta) != FLEETMQ_OK) goto cleanup;
		if(delta != NULL){
			if(!cJSON_AddItemToObject(doc, "delta", delta)) goto cleanup;
			delta = NULL; /* owned by doc now */
		}
	}
	txt = cJSON_PrintUnformatted(doc);

cleanup:
	cJSON_Delete(delta);
	cJSON_Delete(doc);
	return txt;
}

char *fleetmq_shadow_metadata_json(const struct fleetmq_shadow *s)
{
	cJSON *doc = NULL;
	char *txt = NULL;

	if(!shadow_ready(s)) return NULL;
	doc = cJSON_CreateObject();
	if(doc == NULL || !add_ref(doc, "desired", s->meta_desired)
			|| !add_ref(doc, "reported", s->meta_reported)){
		goto cleanup;
	}
	txt = cJSON_PrintUnformatted(doc);

cleanup:
	cJSON_Delete(doc);
	return txt;
}

char *fleetmq_shadow_serialize(const struct fleetmq_shadow *s)
{
	cJSON *doc = NULL, *meta = NULL;
	char version[24], updated_ms[24];
	char *txt = NULL;

	if(!shadow_ready(s)) return NULL;
	/* Printed by hand: cJSON prints numbers >= 10^15 with 15 significant
	 * digits, which would lose the low digits of a large version. */
	snprintf(version, sizeof(version), "%" PRIu64, s->version);
	snprintf(updated_ms, sizeof(updated_ms), "%" PRIu64, s->updated_ms);
	doc = cJSON_CreateObject();
	if(doc == NULL
			|| cJSON_AddRawToObject(doc, "version", version) == NULL
			|| cJSON_AddRawToObject(doc, "updated_ms", updated_ms) == NULL
			|| !add_ref(doc, "desired", s->desired)
			|| !add_ref(doc, "reported", s->reported)
			|| (meta = cJSON_AddObjectToObject(doc, "metadata")) == NULL
			|| !add_ref(meta, "desired", s->meta_desired)
			|| !add_ref(meta, "reported", s->meta_reported)){
		goto cleanup;
	}
	txt = cJSON_PrintUnformatted(doc);

cleanup:
	cJSON_Delete(doc);
	return txt;
}

/* ---- load ------------------------------------------------------------------ */

/* obj has exactly the keys in names, each once. */
static bool has_exactly(const cJSON *obj, const char *const *names, size_t count)
{
	const cJSON *m;
	size_t seen = 0, i;

	cJSON_ArrayForEach(m, obj){
		if(m->string == NULL || get(obj, m->string) != m) return false; /* repeated */
		for(i = 0; i < count; i++){
			if(strcmp(m->string, names[i]) == 0) break;
		}
		if(i == count) return false; /* unknown */
		seen++;
	}
	return seen == count;
}

/* value is an object of a value tree (no null members, no repeated keys,
 * storable values) and meta mirrors it exactly, with integer ms leaves. */
static bool valid_side(const cJSON *value, const cJSON *meta)
{
	const cJSON *v, *m;
	size_t members = 0;
	uint64_t ts;

	if(!cJSON_IsObject(value) || !cJSON_IsObject(meta)) return false;
	cJSON_ArrayForEach(v, value){
		if(v->string == NULL || get(value, v->string) != v) return false;
		m = get(meta, v->string);
		if(cJSON_IsObject(v)){
			if(!valid_side(v, m)) return false;
		}else if(cJSON_IsNull(v) || !storable(v) || !json_u64(m, &ts)){
			return false;
		}
		members++;
	}
	/* every value key has its own metadata entry; no extra entries */
	cJSON_ArrayForEach(m, meta){
		if(members == 0) return false;
		members--;
	}
	return members == 0;
}

static bool only_whitespace(const char *p, size_t len)
{
	size_t i;

	for(i = 0; i < len; i++){
		if(p[i] != ' ' && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') return false;
	}
	return true;
}

int fleetmq_shadow_load(struct fleetmq_shadow *s, const char *json, size_t len)
{
	static const char *const top_keys[] = {
		"version", "updated_ms", "desired", "reported", "metadata"
	};
	static const char *const meta_keys[] = { "desired", "reported" };
	cJSON *root = NULL;
	cJSON *desired, *reported, *metadata, *meta_desired, *meta_reported;
	const char *end = NULL;
	uint64_t version, updated_ms;
	int rc = FLEETMQ_ERR_MALFORMED;

	if(s == NULL) return FLEETMQ_ERR_INTERNAL;
	if(json == NULL || len == 0) return FLEETMQ_ERR_MALFORMED;

	/* cJSON does not tell out-of-memory from bad syntax: both are MALFORMED */
	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if(root == NULL || end == NULL || end < json || (size_t)(end - json) > len) goto cleanup;
	if(!only_whitespace(end, len - (size_t)(end - json))) goto cleanup;
	if(!cJSON_IsObject(root) || !has_exactly(root, top_keys, 5)) goto cleanup;
	if(!json_u64(get(root, "version"), &version)) goto cleanup;
	if(!json_u64(get(root, "updated_ms"), &updated_ms)) goto cleanup;
	desired = get(root, "desired");
	reported = get(root, "reported");
	metadata = get(root, "metadata");
	if(!cJSON_IsObject(metadata) || !has_exactly(metadata, meta_keys, 2)) goto cleanup;
	meta_desired = get(metadata, "desired");
	meta_reported = get(metadata, "reported");
	if(!valid_side(desired, meta_desired) || !valid_side(reported, meta_reported)) goto cleanup;

	/* Commit: detaching does not allocate, so nothing below can fail. */
	cJSON_DetachItemViaPointer(root, desired);
	cJSON_DetachItemViaPointer(root, reported);
	cJSON_DetachItemViaPointer(metadata, meta_desired);
	cJSON_DetachItemViaPointer(metadata, meta_reported);
	fleetmq_shadow_clear(s);
	s->version = version;
	s->updated_ms = updated_ms;
	s->desired = desired;
	s->reported = reported;
	s->meta_desired = meta_desired;
	s->meta_reported = meta_reported;
	rc = FLEETMQ_OK;

cleanup:
	cJSON_Delete(root);
	return rc;
}
