/*
 * client_shadow.c - the device's view of its shadow, and feature flags.
 *
 * Owns: the desired view (last full document + deltas + operators' desired
 * updates seen on the device's topics), the merged reported state of this
 * process, the FIFO of reported patches not yet accepted (one in flight at a
 * time, resent with the same token after request_timeout_ms), the last
 * applied shadow version (persisted to <state_dir>/shadow_version
 * atomically, on the event thread, after on_delta returned 0), and the
 * feature flag table.
 *
 * Reported patches made while offline are composed into as few requests as
 * possible, but only where composition is exact under the shadow merge rules
 * (a deletion or scalar followed by an object for the same key is kept as
 * two requests, because merging the object would not delete the old keys).
 *
 * Must never: persist a version before the application applied it; call
 * application code (events go through the event thread).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

#define VERSION_FILE "shadow_version"

/* ---------------------------------------------------------------- JSON helpers */

void shadow__merge_patch(cJSON *target, const cJSON *patch)
{
	const cJSON *p;

	if(!cJSON_IsObject(target) || !cJSON_IsObject(patch)) return;
	cJSON_ArrayForEach(p, patch){
		cJSON *cur = cJSON_GetObjectItemCaseSensitive(target, p->string);

		if(cJSON_IsNull(p)){
			cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
		}else if(cJSON_IsObject(p)){
			if(!cJSON_IsObject(cur)){
				cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
				cur = cJSON_AddObjectToObject(target, p->string);
				if(!cur) return;
			}
			shadow__merge_patch(cur, p);
			/* an object this patch emptied by deletions disappears */
			if(p->child && !cur->child) cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
		}else{
			cJSON *copy = cJSON_Duplicate(p, 1);
			if(!copy) return;
			if(cur) cJSON_ReplaceItemViaPointer(target, cur, copy);
			else cJSON_AddItemToObject(target, p->string, copy);
		}
	}
}

/* Can patch b be folded into a (a then b == compose(a, b)) exactly? */
static bool composable(const cJSON *a, const cJSON *b)
{
	const cJSON *p;

	cJSON_ArrayForEach(p, b){
		const cJSON *cur = cJSON_GetObjectItemCaseSensitive(a, p->string);
		if(!cur || !cJSON_IsObject(p)) continue;
		if(!cJSON_IsObject(cur)) return false;
		if(!composable(cur, p)) return false;
	}
	return true;
}

/* Fold b into a (a composable with b), keeping nulls (they are deletions). */
static void compose(cJSON *a, const cJSON *b)
{
	const cJSON *p;

	cJSON_ArrayForEach(p, b){
		cJSON *cur = cJSON_GetObjectItemCaseSensitive(a, p->string);
		if(cur && cJSON_IsObject(p) && cJSON_IsObject(cur)){
			compose(cur, p);
		}else{
			cJSON *copy = cJSON_Duplicate(p, 1);
			if(!copy) return;
			if(cur) cJSON_ReplaceItemViaPointer(a, cur, copy);
			else cJSON_AddItemToObject(a, p->string, copy);
		}
	}
}

static char *print_json(const cJSON *j)
{
	char *s = j ? cJSON_PrintUnformatted(j) : NULL, *r;

	if(!s) return NULL;
	r = fm_strdup(s);
	cJSON_free(s);
	return r;
}

/* ---------------------------------------------------------------- version persistence */

int shadow__load_version(struct fleetmq_client *c)
{
	char *text = NULL, *end = NULL;
	unsigned long long v;
	int rc;

	c->shadow_version = 0;
	if(!c->state_dir) return FLEETMQ_CLIENT_OK;
	rc = statefile__read(c->state_dir, VERSION_FILE, &text, NULL);
	if(rc == FLEETMQ_CLIENT_ERR_NOT_FOUND) return FLEETMQ_CLIENT_OK;
	if(rc != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot read %s/%s", c->state_dir, VERSION_FILE);
		return rc;
	}
	v = strtoull(text, &end, 10);
	if(end == text){
		/* unreadable: 0 is always safe (the broker sends the full document) */
		client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "%s/%s is not a number; starting from version 0", c->state_dir, VERSION_FILE);
		v = 0;
	}
	c->shadow_version = (uint64_t)v;
	fm_free(text);
	return FLEETMQ_CLIENT_OK;
}

void shadow__persist_version(struct fleetmq_client *c, uint64_t version)
{
	char buf[32];
	int n;

	pthread_mutex_lock(&c->mu);
	if(c->shadow_version == version){
		pthread_mutex_unlock(&c->mu);
		return;
	}
	c->shadow_version = version;
	pthread_mutex_unlock(&c->mu);
	/* only the event thread writes this file: no concurrent writers */
	if(!c->state_dir) return;
	n = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", version);
	if(statefile__write_atomic(c->state_dir, VERSION_FILE, buf, (size_t)n) != FLEETMQ_CLIENT_OK){
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "cannot persist shadow version %" PRIu64 " in %s", version, c->state_dir);
	}
}

/* ---------------------------------------------------------------- reported patches */

static int enqueue_patch_locked(struct fleetmq_client *c, const cJSON *patch)
{
	struct fm_patch *p;

	if(c->patch_tail && composable(c->patch_tail->patch, patch)){
		compose(c->patch_tail->patch, patch);
		return FLEETMQ_CLIENT_OK;
	}
	p = fm_calloc(1, sizeof(*p));
	if(!p) return FLEETMQ_CLIENT_ERR_NOMEM;
	p->patch = cJSON_Duplicate(patch, 1);
	if(!p->patch){
		fm_free(p);
		return FLEETMQ_CLIENT_ERR_NOMEM;
	}
	if(c->patch_tail) c->patch_tail->next = p;
	else c->patch_head = p;
	c->patch_tail = p;
	return FLEETMQ_CLIENT_OK;
}

static void send_inflight_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	Fleetmq__V1__ShadowUpdateRequest r = FLEETMQ__V1__SHADOW_UPDATE_REQUEST__INIT;
	char *json = print_json(c->inflight_patch);

	if(!json) return;
	r.client_token = c->inflight_patch_token;
	r.reported_json = json;
	client__queue_pb(c, q, "shadow/update", &r.base);
	c->inflight_patch_sent_ms = client__mono_ms();
	fm_free(json);
}

/* Send the next queued patch if connected and nothing is in flight. */
static void kick_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	struct fm_patch *p = c->patch_head;

	if(c->state != FM_CONN_ONLINE || c->inflight_patch || !p) return;
	if(c->patch_retry_at_ms && client__mono_ms() < c->patch_retry_at_ms) return;
	c->patch_retry_at_ms = 0;
	c->patch_head = p->next;
	if(!c->patch_head) c->patch_tail = NULL;
	c->inflight_patch = p->patch;
	fm_free(p);
	client__token_locked(c, 's', c->inflight_patch_token, sizeof(c->inflight_patch_token));
	send_inflight_locked(c, q);
}

/* Put the in-flight patch back at the head of the queue. */
static void requeue_inflight_locked(struct fleetmq_client *c)
{
	struct fm_patch *p;

	if(!c->inflight_patch) return;
	p = fm_calloc(1, sizeof(*p));
	if(!p){
		/* cannot keep it: it is still merged in reported_cache, which is
		 * republished if the broker loses the shadow */
		client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "out of memory: a reported patch was dropped");
		cJSON_Delete(c->inflight_patch);
	}else{
		p->patch = c->inflight_patch;
		p->next = c->patch_head;
		c->patch_head = p;
		if(!c->patch_tail) c->patch_tail = p;
	}
	c->inflight_patch = NULL;
	c->inflight_patch_token[0] = '\0';
}

int fleetmq_client_shadow_report(struct fleetmq_client *c, const char *reported_json)
{
	struct fm_outq q = {0};
	cJSON *patch;
	int rc;

	if(!c || !reported_json) return FLEETMQ_CLIENT_ERR_INVALID;
	patch = cJSON_ParseWithOpts(reported_json, NULL, 1);
	if(!cJSON_IsObject(patch) || !patch->child){
		cJSON_Delete(patch);
		return FLEETMQ_CLIENT_ERR_INVALID;
	}
	pthread_mutex_lock(&c->mu);
	rc = enqueue_patch_locked(c, patch);
	if(rc == FLEETMQ_CLIENT_OK){
		shadow__merge_patch(c->reported_cache, patch);
		kick_locked(c, &q);
	}
	pthread_mutex_unlock(&c->mu);
	cJSON_Delete(patch);
	client__flush(c, &q);
	return rc;
}

/* ---------------------------------------------------------------- features */

static struct fm_feature *feature_find(struct fleetmq_client *c, const char *name, bool create)
{
	struct fm_feature *f;

	for(f = c->features; f; f = f->next){
		if(!strcmp(f->name, name)) return f;
	}
	if(!create) return NULL;
	f = fm_calloc(1, sizeof(*f));
	if(!f) return NULL;
	f->name = fm_strdup(name);
	if(!f->name){
		fm_free(f);
		return NULL;
	}
	f->effective = true;
	f->next = c->features;
	c->features = f;
	return f;
}

/* Recompute effective values from overrides and the desired view; queue an
 * event per change. */
static void features_recompute_locked(struct fleetmq_client *c)
{
	const cJSON *df = cJSON_GetObjectItemCaseSensitive(c->desired, "features"), *it;
	struct fm_feature *f;

	for(f = c->features; f; f = f->next) f->has_desired = false;
	if(cJSON_IsObject(df)){
		cJSON_ArrayForEach(it, df){
			if(!cJSON_IsBool(it) || !it->string || !it->string[0] || strlen(it->string) > FM_MAX_ID_BYTES) continue;
			f = feature_find(c, it->string, true);
			if(!f) continue;
			f->has_desired = true;
			f->desired_value = cJSON_IsTrue(it);
		}
	}
	for(f = c->features; f; f = f->next){
		bool eff = f->has_override ? f->override_value : f->has_desired ? f->desired_value : true;
		if(eff != f->effective){
			struct fm_event *ev = client__event_new(FM_EV_FEATURE);
			f->effective = eff;
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "feature %s %s", f->name, eff ? "enabled" : "disabled");
			if(ev){
				ev->text = fm_strdup(f->name);
				ev->enabled = eff;
				if(ev->text) client__event_locked(c, ev);
				else client__event_free(ev);
			}
		}
	}
}

/* Report the effective value of every feature named in desired.features
 * whose reported value differs, so the delta clears. */
static void features_report_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	const cJSON *rf = cJSON_GetObjectItemCaseSensitive(c->reported_cache, "features"), *cur;
	cJSON *inner = NULL, *patch;
	struct fm_feature *f;

	for(f = c->features; f; f = f->next){
		if(!f->has_desired) continue;
		cur = cJSON_IsObject(rf) ? cJSON_GetObjectItemCaseSensitive(rf, f->name) : NULL;
		if(cJSON_IsBool(cur) && (cJSON_IsTrue(cur) ? true : false) == f->effective) continue;
		if(!inner && !(inner = cJSON_CreateObject())) return;
		cJSON_AddBoolToObject(inner, f->name, f->effective);
	}
	if(!inner) return;
	patch = cJSON_CreateObject();
	if(patch){
		cJSON_AddItemToObject(patch, "features", inner);
		inner = NULL;
		if(enqueue_patch_locked(c, patch) == FLEETMQ_CLIENT_OK){
			shadow__merge_patch(c->reported_cache, patch);
			kick_locked(c, q);
		}
	}
	cJSON_Delete(inner);
	cJSON_Delete(patch);
}

static void desired_changed_locked(struct fleetmq_client *c, struct fm_outq *q)
{
	features_recompute_locked(c);
	features_report_locked(c, q);
}

bool fleetmq_client_feature_enabled(struct fleetmq_client *c, const char *name)
{
	struct fm_feature *f;
	bool on = true;

	if(!c || !name) return true;
	pthread_mutex_lock(&c->mu);
	f = feature_find(c, name, false);
	if(f) on = f->effective;
	pthread_mutex_unlock(&c->mu);
	return on;
}

static int feature_override(struct fleetmq_client *c, const char *name, bool set, bool enabled)
{
	struct fm_outq q = {0};
	struct fm_feature *f;
	int rc = FLEETMQ_CLIENT_OK;

	if(!c || !name || !name[0] || strlen(name) > FM_MAX_ID_BYTES) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	f = feature_find(c, name, set);
	if(f){
		f->has_override = set;
		f->override_value = enabled;
		desired_changed_locked(c, &q);
	}else if(set){
		rc = FLEETMQ_CLIENT_ERR_NOMEM;
	}
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);
	return rc;
}

int fleetmq_client_feature_set(struct fleetmq_client *c, const char *name, bool enabled)
{
	return feature_override(c, name, true, enabled);
}

int fleetmq_client_feature_clear(struct fleetmq_client *c, const char *name)
{
	return feature_override(c, name, false, false);
}

/* ---------------------------------------------------------------- desired view */

int fleetmq_client_shadow_desired(struct fleetmq_client *c, char **json_out, uint64_t *version)
{
	if(!c || !json_out) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	*json_out = print_json(c->desired);
	if(version) *version = c->desired_version;
	pthread_mutex_unlock(&c->mu);
	return *json_out ? FLEETMQ_CLIENT_OK : FLEETMQ_CLIENT_ERR_NOMEM;
}

uint64_t fleetmq_client_shadow_version(struct fleetmq_client *c)
{
	uint64_t v;

	if(!c) return 0;
	pthread_mutex_lock(&c->mu);
	v = c->shadow_version;
	pthread_mutex_unlock(&c->mu);
	return v;
}

/* A full document: replace the desired view. Returns its parsed state (caller deletes). */
static cJSON *take_document_locked(struct fleetmq_client *c, const Fleetmq__V1__ShadowDocument *d)
{
	cJSON *state = cJSON_Parse(d->state_json ? d->state_json : "");
	cJSON *des, *rep, *rf;

	if(!cJSON_IsObject(state)){
		cJSON_Delete(state);
		client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "shadow document with invalid state_json ignored");
		return NULL;
	}
	des = cJSON_GetObjectItemCaseSensitive(state, "desired");
	cJSON_Delete(c->desired);
	c->desired = cJSON_IsObject(des) ? cJSON_Duplicate(des, 1) : cJSON_CreateObject();
	if(!c->desired) c->desired = cJSON_CreateObject();
	c->desired_version = d->version;
	c->desired_known = true;
	/* what the broker already has for features, so we do not re-report it */
	rep = cJSON_GetObjectItemCaseSensitive(state, "reported");
	rf = cJSON_IsObject(rep) ? cJSON_GetObjectItemCaseSensitive(rep, "features") : NULL;
	if(cJSON_IsObject(rf)){
		cJSON *patch = cJSON_CreateObject();
		cJSON *copy = cJSON_Duplicate(rf, 1);
		if(patch && copy){
			cJSON_DeleteItemFromObjectCaseSensitive(c->reported_cache, "features");
			cJSON_AddItemToObject(patch, "features", copy);
			copy = NULL;
			shadow__merge_patch(c->reported_cache, patch);
		}
		cJSON_Delete(copy);
		cJSON_Delete(patch);
	}
	return state;
}

static void document_event_locked(struct fleetmq_client *c, const Fleetmq__V1__ShadowDocument *d, cJSON *state)
{
	struct fm_event *ev = client__event_new(FM_EV_DOCUMENT);
	const cJSON *delta = cJSON_GetObjectItemCaseSensitive(state, "delta");

	if(!ev) return;
	ev->text = fm_strdup(d->state_json);
	ev->version = d->version;
	if(cJSON_IsObject(delta) && delta->child) ev->text2 = print_json(delta);
	client__event_locked(c, ev);
}

/* ---------------------------------------------------------------- connection hooks */

void shadow__on_online_locked(struct fleetmq_client *c, const Fleetmq__V1__HelloAccepted *ack, struct fm_outq *q)
{
	struct fm_event *ev;

	if(ack->shadow_sync == FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE){
		if(ack->shadow_version == 0 && c->shadow_version > 0){
			/* The broker has no shadow for us (new or wiped store):
			 * publish our complete reported state again (section 8.3). */
			struct fm_patch *p, *n;
			client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "broker has no shadow (we had version %" PRIu64 "): republishing reported state",
					c->shadow_version);
			for(p = c->patch_head; p; p = n){
				n = p->next;
				cJSON_Delete(p->patch);
				fm_free(p);
			}
			c->patch_head = c->patch_tail = NULL;
			if(c->reported_cache && c->reported_cache->child) enqueue_patch_locked(c, c->reported_cache);
			cJSON_Delete(c->desired);
			c->desired = cJSON_CreateObject();
			c->desired_version = 0;
			c->desired_known = true;
			desired_changed_locked(c, q);
		}
		if(ack->shadow_version != c->shadow_version){
			ev = client__event_new(FM_EV_PERSIST_VERSION);
			if(ev){
				ev->version = ack->shadow_version;
				client__event_locked(c, ev);
			}
		}
	}
	if(!c->desired_known && ack->shadow_sync != FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_FULL){
		if(ack->shadow_version == 0){
			c->desired_known = true;   /* no shadow at all: desired is {} */
		}else{
			Fleetmq__V1__ShadowGetRequest g = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;
			client__token_locked(c, 'i', c->init_get_token, sizeof(c->init_get_token));
			g.client_token = c->init_get_token;
			client__queue_pb(c, q, "shadow/get", &g.base);
		}
	}
	kick_locked(c, q);
}

void shadow__on_disconnect_locked(struct fleetmq_client *c)
{
	requeue_inflight_locked(c);
	c->init_get_token[0] = '\0';
}

void shadow__tick_locked(struct fleetmq_client *c, uint64_t now, struct fm_outq *q, uint64_t *next_wake)
{
	if(c->inflight_patch){
		uint64_t due = c->inflight_patch_sent_ms + (uint64_t)c->request_timeout_ms;
		if(now >= due){
			client__log(c, FLEETMQ_CLIENT_LOG_INFO, "reported update %s unanswered: resending", c->inflight_patch_token);
			send_inflight_locked(c, q);
			due = now + (uint64_t)c->request_timeout_ms;
		}
		if(due < *next_wake) *next_wake = due;
	}else if(c->patch_head){
		if(c->patch_retry_at_ms && c->patch_retry_at_ms > now){
			if(c->patch_retry_at_ms < *next_wake) *next_wake = c->patch_retry_at_ms;
		}else{
			kick_locked(c, q);
		}
	}
}

/* ---------------------------------------------------------------- messages */

void shadow__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len, struct fm_outq *q)
{
	if(!strcmp(rest, "shadow/get/accepted")){
		Fleetmq__V1__ShadowDocument *d = fleetmq__v1__shadow_document__unpack(NULL, len, p);
		struct fm_waiter *w;
		cJSON *state;

		if(!d) return;
		w = d->client_token[0] ? waiters__find_locked(c, FM_WAIT_SHADOW_GET, d->client_token) : NULL;
		if(w){
			w->state_json = fm_strdup(d->state_json);
			w->version = d->version;
			w->status = w->state_json ? FLEETMQ_CLIENT_OK : FLEETMQ_CLIENT_ERR_NOMEM;
			w->done = true;
			pthread_cond_broadcast(&c->cond);
			state = take_document_locked(c, d);
			desired_changed_locked(c, q);
			cJSON_Delete(state);
		}else if(!d->client_token[0] || (c->init_get_token[0] && !strcmp(d->client_token, c->init_get_token))){
			/* SHADOW_SYNC_FULL (empty token) or our initial get */
			c->init_get_token[0] = '\0';
			state = take_document_locked(c, d);
			if(state){
				document_event_locked(c, d, state);
				desired_changed_locked(c, q);
				cJSON_Delete(state);
			}
		}
		fleetmq__v1__shadow_document__free_unpacked(d, NULL);
	}else if(!strcmp(rest, "shadow/get/rejected")){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);
		struct fm_waiter *w;

		if(!r) return;
		w = r->client_token[0] ? waiters__find_locked(c, FM_WAIT_SHADOW_GET, r->client_token) : NULL;
		if(w){
			w->status = r->code ? (int)r->code : FLEETMQ_CLIENT_ERR_PROTOCOL;
			w->done = true;
			pthread_cond_broadcast(&c->cond);
		}else if(c->init_get_token[0] && !strcmp(r->client_token, c->init_get_token)){
			client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "initial shadow get rejected: %s", r->reason);
			c->init_get_token[0] = '\0';
		}
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}else if(!strcmp(rest, "shadow/update/accepted")){
		Fleetmq__V1__ShadowUpdateAccepted *a = fleetmq__v1__shadow_update_accepted__unpack(NULL, len, p);

		if(!a) return;
		if(c->inflight_patch && !strcmp(a->client_token, c->inflight_patch_token)){
			cJSON_Delete(c->inflight_patch);
			c->inflight_patch = NULL;
			c->inflight_patch_token[0] = '\0';
			kick_locked(c, q);
		}else{
			/* someone else's update: an operator's desired update changes our view */
			cJSON *st = cJSON_Parse(a->state_json ? a->state_json : "");
			const cJSON *des = cJSON_GetObjectItemCaseSensitive(st, "desired");
			if(cJSON_IsObject(des) && a->version > c->desired_version){
				shadow__merge_patch(c->desired, des);
				c->desired_version = a->version;
				desired_changed_locked(c, q);
			}
			cJSON_Delete(st);
		}
		fleetmq__v1__shadow_update_accepted__free_unpacked(a, NULL);
	}else if(!strcmp(rest, "shadow/update/rejected")){
		Fleetmq__V1__Rejection *r = fleetmq__v1__rejection__unpack(NULL, len, p);

		if(!r) return;
		if(c->inflight_patch && !strcmp(r->client_token, c->inflight_patch_token)){
			if(r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_INTERNAL
					|| r->code == FLEETMQ__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE){
				client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "reported update rejected (%s: %s): retrying",
						fleetmq_client_strerror((int)r->code), r->reason);
				requeue_inflight_locked(c);
				c->patch_retry_at_ms = client__mono_ms() + FM_TRANSIENT_RETRY_MS;
			}else{
				client__log(c, FLEETMQ_CLIENT_LOG_ERROR, "reported update rejected (%s: %s): dropped",
						fleetmq_client_strerror((int)r->code), r->reason);
				cJSON_Delete(c->inflight_patch);
				c->inflight_patch = NULL;
				c->inflight_patch_token[0] = '\0';
				kick_locked(c, q);
			}
		}
		fleetmq__v1__rejection__free_unpacked(r, NULL);
	}else if(!strcmp(rest, "shadow/update/delta")){
		Fleetmq__V1__ShadowDelta *d = fleetmq__v1__shadow_delta__unpack(NULL, len, p);
		cJSON *delta;
		struct fm_event *ev;

		if(!d) return;
		delta = cJSON_Parse(d->delta_json ? d->delta_json : "");
		if(cJSON_IsObject(delta)){
			shadow__merge_patch(c->desired, delta);
			if(d->version > c->desired_version) c->desired_version = d->version;
			ev = client__event_new(FM_EV_DELTA);
			if(ev){
				ev->text = fm_strdup(d->delta_json);
				ev->version = d->version;
				client__event_locked(c, ev);
			}
			desired_changed_locked(c, q);
		}else{
			client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "delta with invalid JSON ignored");
		}
		cJSON_Delete(delta);
		fleetmq__v1__shadow_delta__free_unpacked(d, NULL);
	}
}

/* ---------------------------------------------------------------- blocking get */

int fleetmq_client_shadow_fetch(struct fleetmq_client *c, char **state_json_out, uint64_t *version, int timeout_ms)
{
	Fleetmq__V1__ShadowGetRequest g = FLEETMQ__V1__SHADOW_GET_REQUEST__INIT;
	struct fm_outq q = {0};
	struct fm_waiter w;
	int rc;

	if(!c || !state_json_out || timeout_ms <= 0) return FLEETMQ_CLIENT_ERR_INVALID;
	*state_json_out = NULL;
	memset(&w, 0, sizeof(w));
	w.kind = FM_WAIT_SHADOW_GET;
	pthread_mutex_lock(&c->mu);
	if(c->stopping){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_STOPPED;
	}
	if(c->state != FM_CONN_ONLINE){
		pthread_mutex_unlock(&c->mu);
		return FLEETMQ_CLIENT_ERR_DISCONNECTED;
	}
	client__token_locked(c, 'g', w.token, sizeof(w.token));
	g.client_token = w.token;
	if((rc = client__queue_pb(c, &q, "shadow/get", &g.base)) != FLEETMQ_CLIENT_OK){
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	w.next = c->waiters;
	c->waiters = &w;
	pthread_mutex_unlock(&c->mu);
	client__flush(c, &q);

	pthread_mutex_lock(&c->mu);
	rc = waiters__wait_locked(c, &w, client__mono_ms() + (uint64_t)timeout_ms);
	waiters__remove_locked(c, &w);
	pthread_mutex_unlock(&c->mu);
	if(rc == FLEETMQ_CLIENT_OK){
		*state_json_out = w.state_json;
		w.state_json = NULL;
		if(version) *version = w.version;
	}
	fm_free(w.state_json);
	return rc;
}

void shadow__cleanup(struct fleetmq_client *c)
{
	struct fm_patch *p, *n;
	struct fm_feature *f, *fn;

	for(p = c->patch_head; p; p = n){
		n = p->next;
		cJSON_Delete(p->patch);
		fm_free(p);
	}
	c->patch_head = c->patch_tail = NULL;
	cJSON_Delete(c->inflight_patch);
	c->inflight_patch = NULL;
	cJSON_Delete(c->desired);
	c->desired = NULL;
	cJSON_Delete(c->reported_cache);
	c->reported_cache = NULL;
	for(f = c->features; f; f = fn){
		fn = f->next;
		fm_free(f->name);
		fm_free(f);
	}
	c->features = NULL;
}
