/*
 * handlers.c - device and operator requests on <prefix>/<id>/...
 *
 * Each handler decodes the request once (protobuf), validates it, hands the
 * data to the pure core (shadow.c, presence via device.c), writes the result
 * to the store inside the current group transaction and queues its
 * responses; publish.c sends them after the commit. A request that fails
 * any check gets a Rejection with a machine-readable code and a reason on
 * <request topic>/rejected, changes nothing and is logged.
 *
 * Must never: block (beyond SQLite on the local disk), trust a device id that
 * the ACL did not verify, or keep pointers into the broker's message.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <cjson/cJSON.h>

#include "acl.h"
#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

#define MAX_TOKEN_BYTES 64
#define MAX_HELLO_STRING_BYTES 128
#define MAX_HELLO_LIST 32
#define MAX_ATTR_VALUE_BYTES 256

struct request {
	struct fleetmq_plugin *pl;
	const struct mosquitto *client;
	const char *client_id;
	const char *topic;
	const struct fleetmq_topic *t;
	const void *payload;
	uint32_t payloadlen;
	bool is_operator;
	uint64_t now_ms;
};

static int queue_pb(struct fleetmq_plugin *pl, const char *id, const char *suffix, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = fm_malloc(len ? len : 1);

	if(!buf) return FLEETMQ_ERR_NOMEM;
	protobuf_c_message_pack(m, buf);
	return publish__queue_device(pl, id, suffix, buf, len, 1, false);
}

void handlers__reject(struct fleetmq_plugin *pl, const char *request_topic, int code,
		const char *reason, const char *client_token, uint64_t version)
{
	Fleetmq__V1__Rejection rej = FLEETMQ__V1__REJECTION__INIT;
	char topic[600];
	size_t len;
	uint8_t *buf;

	pl->n_rejections++;
	if(pl->cfg.log_rejections){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: rejected %s: %s (%s)", request_topic,
				fleetmq_strerror(code), reason ? reason : "");
	}
	if(snprintf(topic, sizeof(topic), "%s/rejected", request_topic) >= (int)sizeof(topic)) return;
	rej.code = (Fleetmq__V1__ErrorCode)code;
	rej.reason = (char *)(reason ? reason : fleetmq_strerror(code));
	rej.client_token = (char *)(client_token ? client_token : "");
	rej.version = version;
	rej.timestamp_ms = fleetmq_now_ms();
	len = fleetmq__v1__rejection__get_packed_size(&rej);
	buf = fm_malloc(len ? len : 1);
	if(!buf) return;
	fleetmq__v1__rejection__pack(&rej, buf);
	publish__queue(pl, topic, buf, len, 1, false);
}

static void reject(const struct request *r, int code, const char *reason, const char *token, uint64_t version)
{
	handlers__reject(r->pl, r->topic, code, reason, token, version);
}

/* Load a device's shadow from the store into s (initialised here). A device
 * without a shadow gets an empty one (version 0). */
static int shadow_load(struct fleetmq_plugin *pl, const char *id, struct fleetmq_shadow *s)
{
	char *doc = NULL;
	size_t len = 0;
	uint64_t version = 0;
	int rc;

	rc = fleetmq_shadow_init(s);
	if(rc) return rc;
	rc = fleetmq_store_shadow_get(pl->store, id, &doc, &len, &version);
	if(rc == FLEETMQ_ERR_NOT_FOUND) return FLEETMQ_OK;
	if(rc){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot read shadow of %s: %s", id,
				fleetmq_store_last_error(pl->store));
		return FLEETMQ_ERR_INTERNAL;
	}
	rc = fleetmq_shadow_load(s, doc, len);
	fm_free(doc);
	if(rc){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: stored shadow of %s is corrupt", id);
		return FLEETMQ_ERR_INTERNAL;
	}
	return FLEETMQ_OK;
}

static void queue_full_document(struct fleetmq_plugin *pl, const char *id, const struct fleetmq_shadow *s,
		const char *token, uint64_t now_ms)
{
	Fleetmq__V1__ShadowDocument doc = FLEETMQ__V1__SHADOW_DOCUMENT__INIT;
	char *state = fleetmq_shadow_state_json(s, 1);
	char *meta = fleetmq_shadow_metadata_json(s);

	if(state && meta){
		doc.version = s->version;
		doc.state_json = state;
		doc.metadata_json = meta;
		doc.timestamp_ms = now_ms;
		doc.client_token = (char *)(token ? token : "");
		queue_pb(pl, id, "shadow/get/accepted", &doc.base);
	}
	fm_free(state);
	fm_free(meta);
}

/* Queue a delta if desired and reported differ. Returns true if one was sent. */
static bool queue_delta(struct fleetmq_plugin *pl, const char *id, const struct fleetmq_shadow *s, uint64_t now_ms)
{
	Fleetmq__V1__ShadowDelta msg = FLEETMQ__V1__SHADOW_DELTA__INIT;
	cJSON *delta = fleetmq_shadow_delta(s);
	cJSON *meta = NULL;
	char *delta_s = NULL, *meta_s = NULL;
	bool sent = false;

	if(!delta) return false;
	meta = fleetmq_shadow_delta_metadata(s, delta);
	delta_s = cJSON_PrintUnformatted(delta);
	meta_s = meta ? cJSON_PrintUnformatted(meta) : NULL;
	if(delta_s){
		msg.version = s->version;
		msg.delta_json = delta_s;
		msg.metadata_json = meta_s ? meta_s : (char *)"{}";
		msg.timestamp_ms = now_ms;
		sent = queue_pb(pl, id, "shadow/update/delta", &msg.base) == FLEETMQ_OK;
	}
	fm_free(delta_s);
	fm_free(meta_s);
	cJSON_Delete(delta);
	cJSON_Delete(meta);
	return sent;
}

static bool payload_too_large(const struct request *r)
{
	if(r->payloadlen > (uint64_t)r->pl->cfg.shadow_max_payload_bytes){
		char reason[128];
		snprintf(reason, sizeof(reason), "payload of %" PRIu32 " bytes exceeds the limit of %lld bytes",
				r->payloadlen, r->pl->cfg.shadow_max_payload_bytes);
		reject(r, FLEETMQ_ERR_TOO_LARGE, reason, NULL, 0);
		return true;
	}
	return false;
}

/* ---------------------------------------------------------------- hello */

static char *hello_software_json(const Fleetmq__V1__Hello *h)
{
	cJSON *arr = cJSON_CreateArray();
	char *s = NULL;
	size_t i;

	if(!arr) return NULL;
	for(i = 0; i < h->n_software; i++){
		cJSON *o = cJSON_CreateObject();
		if(!o) goto cleanup;
		cJSON_AddItemToArray(arr, o);
		if(!cJSON_AddStringToObject(o, "name", h->software[i]->name)
				|| !cJSON_AddStringToObject(o, "version", h->software[i]->version)) goto cleanup;
	}
	s = cJSON_PrintUnformatted(arr);
cleanup:
	cJSON_Delete(arr);
	return s;
}

static char *hello_attributes_json(const Fleetmq__V1__Hello *h)
{
	cJSON *obj = cJSON_CreateObject();
	char *s = NULL;
	size_t i;

	if(!obj) return NULL;
	for(i = 0; i < h->n_attributes; i++){
		cJSON_DeleteItemFromObjectCaseSensitive(obj, h->attributes[i]->key);
		if(!cJSON_AddStringToObject(obj, h->attributes[i]->key, h->attributes[i]->value)) goto cleanup;
	}
	s = cJSON_PrintUnformatted(obj);
cleanup:
	cJSON_Delete(obj);
	return s;
}

static const char *hello_invalid(const Fleetmq__V1__Hello *h)
{
	size_t i;

	if(strlen(h->agent_version) > MAX_HELLO_STRING_BYTES || strlen(h->device_type) > MAX_HELLO_STRING_BYTES
			|| strlen(h->hw_revision) > MAX_HELLO_STRING_BYTES || strlen(h->execution_in_progress) > MAX_HELLO_STRING_BYTES){
		return "agent_version, device_type, hw_revision and execution_in_progress are limited to 128 bytes";
	}
	if(strlen(h->client_token) > MAX_TOKEN_BYTES) return "client_token is longer than 64 bytes";
	if(h->n_software > MAX_HELLO_LIST || h->n_attributes > MAX_HELLO_LIST){
		return "at most 32 software entries and 32 attributes";
	}
	for(i = 0; i < h->n_software; i++){
		if(strlen(h->software[i]->name) > MAX_HELLO_STRING_BYTES || strlen(h->software[i]->version) > MAX_HELLO_STRING_BYTES){
			return "software name and version are limited to 128 bytes";
		}
	}
	for(i = 0; i < h->n_attributes; i++){
		if(!h->attributes[i]->key[0] || strlen(h->attributes[i]->key) > MAX_TOKEN_BYTES
				|| strlen(h->attributes[i]->value) > MAX_ATTR_VALUE_BYTES){
			return "attribute keys must be 1..64 bytes and values at most 256 bytes";
		}
	}
	return NULL;
}

static void handle_hello(const struct request *r)
{
	struct fleetmq_plugin *pl = r->pl;
	Fleetmq__V1__Hello *h = NULL;
	Fleetmq__V1__HelloAccepted ack = FLEETMQ__V1__HELLO_ACCEPTED__INIT;
	struct fleetmq_device *dev;
	struct fleetmq_shadow s;
	const char *why;
	char *sw = NULL, *attrs = NULL;
	bool shadow_loaded = false;

	memset(&s, 0, sizeof(s));
	if(r->is_operator){
		reject(r, FLEETMQ_ERR_FORBIDDEN, "only the device itself sends hello", NULL, 0);
		return;
	}
	if(payload_too_large(r)) return;
	h = fleetmq__v1__hello__unpack(NULL, r->payloadlen, r->payload);
	if(!h){
		reject(r, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.Hello protobuf message", NULL, 0);
		return;
	}
	if((why = hello_invalid(h)) != NULL){
		reject(r, FLEETMQ_ERR_BAD_REQUEST, why, strlen(h->client_token) <= MAX_TOKEN_BYTES ? h->client_token : NULL, 0);
		goto cleanup;
	}
	dev = device__ensure(pl, r->t->device_id, r->now_ms);
	if(!dev){
		reject(r, FLEETMQ_ERR_INTERNAL, "cannot register device", h->client_token, 0);
		goto cleanup;
	}
	sw = hello_software_json(h);
	attrs = hello_attributes_json(h);
	{
		/* intern first: the old and new value may be the same string */
		const char *type = device__intern(pl, h->device_type), *agent = device__intern(pl, h->agent_version);
		device__unintern(pl, dev->device_type);
		device__unintern(pl, dev->agent_version);
		dev->device_type = type;
		dev->agent_version = agent;
	}
	device__on_hello(pl, dev, r->client, r->now_ms);
	if(device__persist(pl, dev, h->hw_revision, sw, attrs) != FLEETMQ_OK){
		reject(r, FLEETMQ_ERR_INTERNAL, "cannot store device record", h->client_token, 0);
		goto cleanup;
	}

	ack.shadow_version = dev->shadow_version;
	ack.server_time_ms = r->now_ms;
	ack.pending_jobs = (uint32_t)job__pending_count(pl, dev->id);
	ack.direct_delivery = pl->cfg.delivery_direct;
	ack.client_token = h->client_token;
	ack.shadow_sync = FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_NONE;
	if(dev->shadow_version > 0 && h->shadow_version != dev->shadow_version){
		if(shadow_load(pl, dev->id, &s) == FLEETMQ_OK){
			shadow_loaded = true;
			if(h->shadow_version == 0 || h->shadow_version > s.version){
				ack.shadow_sync = FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_FULL;
			}else{
				cJSON *delta = fleetmq_shadow_delta(&s);
				if(delta) ack.shadow_sync = FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_DELTA;
				cJSON_Delete(delta);
			}
		}
	}
	queue_pb(pl, dev->id, "hello/accepted", &ack.base);
	if(ack.shadow_sync == FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_FULL){
		queue_full_document(pl, dev->id, &s, "", r->now_ms);
	}else if(ack.shadow_sync == FLEETMQ__V1__SHADOW_SYNC__SHADOW_SYNC_DELTA){
		queue_delta(pl, dev->id, &s, r->now_ms);
	}
	/* Pending jobs: continuous jobs that now match, then the queue. */
	job__on_hello(pl, dev, h->execution_in_progress, r->now_ms);

cleanup:
	if(shadow_loaded) fleetmq_shadow_clear(&s);
	fm_free(sw);
	fm_free(attrs);
	fleetmq__v1__hello__free_unpacked(h, NULL);
}

/* ---------------------------------------------------------------- shadow */

static void handle_shadow_get(const struct request *r)
{
	Fleetmq__V1__ShadowGetRequest *req;
	struct fleetmq_shadow s;

	if(payload_too_large(r)) return;
	req = fleetmq__v1__shadow_get_request__unpack(NULL, r->payloadlen, r->payload);
	if(!req){
		reject(r, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.ShadowGetRequest protobuf message", NULL, 0);
		return;
	}
	if(strlen(req->client_token) > MAX_TOKEN_BYTES){
		reject(r, FLEETMQ_ERR_BAD_REQUEST, "client_token is longer than 64 bytes", NULL, 0);
	}else if(shadow_load(r->pl, r->t->device_id, &s) != FLEETMQ_OK){
		reject(r, FLEETMQ_ERR_INTERNAL, "cannot read the shadow", req->client_token, 0);
	}else{
		queue_full_document(r->pl, r->t->device_id, &s, req->client_token, r->now_ms);
		fleetmq_shadow_clear(&s);
	}
	fleetmq__v1__shadow_get_request__free_unpacked(req, NULL);
}

static char *wrap_side(enum fleetmq_shadow_side side, const cJSON *inner)
{
	cJSON *o = cJSON_CreateObject();
	cJSON *copy = inner ? cJSON_Duplicate(inner, 1) : cJSON_CreateObject();
	char *s = NULL;

	if(o && copy){
		cJSON_AddItemToObject(o, side == FLEETMQ_SHADOW_DESIRED ? "desired" : "reported", copy);
		copy = NULL;
		s = cJSON_PrintUnformatted(o);
	}
	cJSON_Delete(copy);
	cJSON_Delete(o);
	return s;
}

int handlers__shadow_apply(struct fleetmq_plugin *pl, const char *id, enum fleetmq_shadow_side side,
		const cJSON *patch, uint64_t expected_version, uint64_t now_ms, struct fleetmq_shadow *s,
		char *reason, size_t reason_len)
{
	struct fleetmq_device *dev;
	char *doc = NULL;
	int rc;

	if(reason && reason_len) reason[0] = '\0';
	memset(s, 0, sizeof(*s));
	dev = device__ensure(pl, id, now_ms);
	if(!dev){
		snprintf(reason, reason_len, "cannot register device");
		return FLEETMQ_ERR_INTERNAL;
	}
	if(shadow_load(pl, dev->id, s) != FLEETMQ_OK){
		snprintf(reason, reason_len, "cannot read the shadow");
		return FLEETMQ_ERR_INTERNAL;
	}
	rc = fleetmq_shadow_apply(s, side, patch, expected_version, now_ms, &pl->limits, reason, reason_len);
	if(rc != FLEETMQ_OK) goto fail;
	doc = fleetmq_shadow_serialize(s);
	fleetmq_store_begin(pl->store);
	if(!doc || fleetmq_store_shadow_put(pl->store, dev->id, s->version, doc, strlen(doc)) != FLEETMQ_OK){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot store shadow of %s: %s", dev->id,
				fleetmq_store_last_error(pl->store));
		snprintf(reason, reason_len, "cannot store the shadow");
		s->version = dev->shadow_version;   /* nothing was applied */
		rc = FLEETMQ_ERR_INTERNAL;
		goto fail;
	}
	fm_free(doc);
	dev->shadow_version = s->version;
	return FLEETMQ_OK;

fail:
	fm_free(doc);
	{
		uint64_t v = s->version;
		fleetmq_shadow_clear(s);
		s->version = v;  /* callers report the current version in rejections */
	}
	return rc;
}

void handlers__shadow_push_delta(struct fleetmq_plugin *pl, const char *id, const struct fleetmq_shadow *s, uint64_t now_ms)
{
	struct fleetmq_device *dev = device__find(pl, id);

	if(dev && dev->conn && fleetmq_presence_connected(&dev->presence)){
		queue_delta(pl, id, s, now_ms);
	}
}

/* Queue the ShadowUpdateAccepted of an applied patch on the device's
 * shadow/update/accepted. The device learns desired changes from it: a
 * delta carries neither deleted keys nor keys that now equal reported. */
void handlers__shadow_queue_accepted(struct fleetmq_plugin *pl, const char *id, enum fleetmq_shadow_side side,
		const cJSON *patch, const struct fleetmq_shadow *s, const char *token, uint64_t now_ms)
{
	Fleetmq__V1__ShadowUpdateAccepted ack = FLEETMQ__V1__SHADOW_UPDATE_ACCEPTED__INIT;
	cJSON *meta = fleetmq_shadow_patch_metadata(s, side, patch);
	char *state_s = wrap_side(side, patch), *meta_s = wrap_side(side, meta);

	ack.version = s->version;
	ack.state_json = state_s ? state_s : (char *)"{}";
	ack.metadata_json = meta_s ? meta_s : (char *)"{}";
	ack.timestamp_ms = now_ms;
	ack.client_token = (char *)(token ? token : "");
	queue_pb(pl, id, "shadow/update/accepted", &ack.base);
	fm_free(state_s);
	fm_free(meta_s);
	cJSON_Delete(meta);
}

static void handle_shadow_update(const struct request *r)
{
	struct fleetmq_plugin *pl = r->pl;
	Fleetmq__V1__ShadowUpdateRequest *req = NULL;
	struct fleetmq_shadow s = {0};
	enum fleetmq_shadow_side side;
	const char *json, *token;
	cJSON *patch = NULL;
	char reason[256];
	bool loaded = false;
	int rc;

	if(payload_too_large(r)) return;
	req = fleetmq__v1__shadow_update_request__unpack(NULL, r->payloadlen, r->payload);
	if(!req){
		reject(r, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.ShadowUpdateRequest protobuf message", NULL, 0);
		return;
	}
	token = req->client_token;
	if(strlen(token) > MAX_TOKEN_BYTES){
		reject(r, FLEETMQ_ERR_BAD_REQUEST, "client_token is longer than 64 bytes", NULL, 0);
		goto cleanup;
	}
	if(r->is_operator){
		if(req->reported_json[0]){
			reject(r, FLEETMQ_ERR_FORBIDDEN, "operators may update only desired state", token, 0);
			goto cleanup;
		}
		side = FLEETMQ_SHADOW_DESIRED;
		json = req->desired_json;
	}else{
		if(req->desired_json[0]){
			reject(r, FLEETMQ_ERR_FORBIDDEN, "devices may update only reported state", token, 0);
			goto cleanup;
		}
		side = FLEETMQ_SHADOW_REPORTED;
		json = req->reported_json;
	}
	if(!json[0]){
		reject(r, FLEETMQ_ERR_BAD_REQUEST, side == FLEETMQ_SHADOW_DESIRED ? "desired_json is empty" : "reported_json is empty", token, 0);
		goto cleanup;
	}
	patch = cJSON_ParseWithOpts(json, NULL, 1);   /* whole string: no trailing garbage */
	if(!patch){
		reject(r, FLEETMQ_ERR_MALFORMED, side == FLEETMQ_SHADOW_DESIRED ? "desired_json is not valid JSON" : "reported_json is not valid JSON", token, 0);
		goto cleanup;
	}
	rc = handlers__shadow_apply(pl, r->t->device_id, side, patch, req->expected_version, r->now_ms, &s,
			reason, sizeof(reason));
	loaded = (rc == FLEETMQ_OK);
	if(rc != FLEETMQ_OK){
		reject(r, rc, reason[0] ? reason : fleetmq_strerror(rc), token, s.version);
		goto cleanup;
	}

	handlers__shadow_queue_accepted(pl, r->t->device_id, side, patch, &s, token, r->now_ms);
	if(side == FLEETMQ_SHADOW_DESIRED){
		if(pl->cfg.delivery_direct){
			/* The answer went to the operator only; the device gets its own
			 * copy (addressed to the device: no requester). */
			const char *requester = pl->requester_id;
			pl->requester_id = NULL;
			handlers__shadow_queue_accepted(pl, r->t->device_id, side, patch, &s, token, r->now_ms);
			pl->requester_id = requester;
		}
		handlers__shadow_push_delta(pl, r->t->device_id, &s, r->now_ms);
	}

cleanup:
	if(loaded) fleetmq_shadow_clear(&s);
	cJSON_Delete(patch);
	fleetmq__v1__shadow_update_request__free_unpacked(req, NULL);
}

/* ---------------------------------------------------------------- telemetry */

/* Bump allocator for a message that is decoded only to be validated: the
 * decoded tree lives in a caller's buffer (heap blocks for what does not
 * fit) and is dropped in one go, so a batch of N metrics costs no 2N+2
 * malloc/free pairs and no free_unpacked() walk. protobuf-c parses exactly
 * as with the default allocator. See docs/BENCHMARKS.md (telemetry). */
struct scratch {
	unsigned char *buf;
	size_t cap, used;
	void *spill;                 /* heap blocks, linked through their first word */
};

#define SCRATCH_ALIGN sizeof(max_align_t)

static void *scratch_alloc(void *data, size_t size)
{
	struct scratch *s = data;
	size_t need = (size + SCRATCH_ALIGN - 1) & ~(SCRATCH_ALIGN - 1);
	void **blk;

	if(need >= size && s->cap - s->used >= need){
		void *p = s->buf + s->used;
		s->used += need;
		return p;
	}
	if(size > SIZE_MAX - SCRATCH_ALIGN) return NULL;
	blk = fm_malloc(SCRATCH_ALIGN + size);
	if(!blk) return NULL;
	*blk = s->spill;
	s->spill = blk;
	return (unsigned char *)blk + SCRATCH_ALIGN;
}

static void scratch_free(void *data, void *ptr)
{
	(void)data;
	(void)ptr;                   /* everything goes at scratch_release() */
}

static void scratch_release(struct scratch *s)
{
	while(s->spill){
		void **blk = s->spill;
		s->spill = *blk;
		fm_free(blk);
	}
	s->used = 0;
}

static void handle_telemetry(const struct request *r)
{
	_Alignas(max_align_t) unsigned char buf[8192];
	struct scratch s = { buf, sizeof(buf), 0, NULL };
	ProtobufCAllocator a = { scratch_alloc, scratch_free, &s };
	Fleetmq__V1__TelemetryBatch *b;

	if(r->is_operator){
		reject(r, FLEETMQ_ERR_FORBIDDEN, "only the device itself sends telemetry", NULL, 0);
		return;
	}
	if(payload_too_large(r)) return;
	b = fleetmq__v1__telemetry_batch__unpack(&a, r->payloadlen, r->payload);
	scratch_release(&s);         /* the batch is not used beyond validation */
	if(!b){
		reject(r, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.TelemetryBatch protobuf message", NULL, 0);
		return;
	}
}

/* ---------------------------------------------------------------- dispatch */

static int handle_message(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen);

int handlers__message(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen)
{
	int rc;

	/* responses queued while handling this message go to its sender (delivery.direct) */
	pl->requester_id = mosquitto_client_id(client);
	rc = handle_message(pl, client, topic, payload, payloadlen);
	pl->requester_id = NULL;
	return rc;
}

static int handle_message(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen)
{
	struct fleetmq_topic t;
	struct request r;
	struct fleetmq_acl_subject who;
	struct fleetmq_device *dev;
	const char *self;

	fleetmq_topic_parse(pl->cfg.topic_prefix, topic, &t);
	if(t.kind == FM_TOPIC_OUTSIDE) return FLEETMQ_OK;
	pl->n_messages++;

	memset(&r, 0, sizeof(r));
	r.pl = pl;
	r.client = client;
	r.client_id = mosquitto_client_id(client);
	r.topic = topic;
	r.t = &t;
	r.payload = payload;
	r.payloadlen = payloadlen;
	r.is_operator = plugin__is_operator(pl, client);
	r.now_ms = fleetmq_now_ms();

	if(!r.is_operator){
		who.client_id = r.client_id;
		who.username = mosquitto_client_username(client);
		who.is_operator = false;
		who.require_username_match = pl->cfg.require_username_match;
		self = fleetmq_acl_device_identity(&who);
		if(!self || t.kind == FM_TOPIC_INVALID || strcmp(self, t.device_id)){
			/* The ACL already refuses this; never act on it. */
			mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: ignored %s from %s: not its own device topic",
					topic, r.client_id ? r.client_id : "?");
			return FLEETMQ_ERR_FORBIDDEN;
		}
		if(t.kind != FM_TOPIC_HELLO){
			dev = device__ensure(pl, self, r.now_ms);
			if(dev) device__on_activity(pl, dev, client, r.now_ms);
		}
	}

	switch(t.kind){
		case FM_TOPIC_HELLO: handle_hello(&r); break;
		case FM_TOPIC_SHADOW_GET: handle_shadow_get(&r); break;
		case FM_TOPIC_SHADOW_UPDATE: handle_shadow_update(&r); break;
		case FM_TOPIC_TELEMETRY: handle_telemetry(&r); break;
		case FM_TOPIC_JOBS_NEXT_GET:
		case FM_TOPIC_JOB_UPDATE:
			if(r.is_operator){
				reject(&r, FLEETMQ_ERR_FORBIDDEN, "only the device itself reports on its jobs; operators use $CONTROL/fleetmq/v1", NULL, 0);
			}else if(!payload_too_large(&r)){
				if(t.kind == FM_TOPIC_JOBS_NEXT_GET){
					job__handle_next_get(pl, t.device_id, topic, payload, payloadlen, r.now_ms);
				}else{
					job__handle_update(pl, t.device_id, t.sub_id, topic, payload, payloadlen, r.now_ms);
				}
			}
			break;
		case FM_TOPIC_ARTIFACT_GET:
			if(r.is_operator){
				reject(&r, FLEETMQ_ERR_FORBIDDEN, "artifacts are fetched by devices for their update jobs", NULL, 0);
			}else if(!payload_too_large(&r)){
				artifact__handle_get(pl, t.device_id, t.sub_id, topic, payload, payloadlen, r.now_ms);
			}
			break;
		case FM_TOPIC_OUTPUT:
			break; /* refused by the ACL before we get here */
		default:
			reject(&r, FLEETMQ_ERR_UNKNOWN_TOPIC, "no such topic under the fleet prefix; see docs/PROTOCOL.md", NULL, 0);
			break;
	}
	return FLEETMQ_OK;
}
