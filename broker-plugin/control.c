/*
 * control.c - operator API on $CONTROL/fleetmq/v1 (JSON, cJSON).
 *
 * Shape follows Mosquitto's dynamic-security API:
 *   request  {"commands":[{"command":"createJob", ..., "correlationData":"x"}, ...]}
 *   response {"responses":[{"command":"createJob","correlationData":"x","data":{...}}
 *                          | {"command":..., "correlationData":..., "error":"reason", "code":"NOT_FOUND"}]}
 * The response goes to the request's MQTT v5 response topic, with its
 * correlation data, when given; else to $CONTROL/fleetmq/v1/response.
 * Responses wait for the group commit like every other acknowledgement, so
 * "created" means durable.
 *
 * Only clients whose username has the operator role may use it; $CONTROL
 * topics bypass ordinary routing and anyone may publish them, so the role is
 * checked here for every message. Every state-changing command is recorded
 * in the audit log with the operator's identity (reads are not).
 *
 * Also served: $CONTROL/fleetmq/v1/jobs/create with a protobuf
 * CreateJobRequest, answered with the same JSON response.
 */
#include <stdio.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <cjson/cJSON.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

#define MAX_COMMANDS 100

typedef int (*command_fn)(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen);

struct command {
	const char *name;
	command_fn fn;
	bool audited;          /* changes state: recorded in the audit log */
};

/* ---------------------------------------------------------------- helpers */

const char *control__string(const cJSON *cmd, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, key);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

int control__uint(const cJSON *cmd, const char *key, uint64_t def, uint64_t max, uint64_t *out,
		char *err, size_t errlen)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, key);

	if(!v || cJSON_IsNull(v)){
		*out = def;
		return FLEETMQ_OK;
	}
	if(!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > (double)max
			|| v->valuedouble != (double)(uint64_t)v->valuedouble){
		snprintf(err, errlen, "'%s' must be an integer from 0 to %llu", key, (unsigned long long)max);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	*out = (uint64_t)v->valuedouble;
	return FLEETMQ_OK;
}

static int require_device_id(const cJSON *cmd, const char **id, char *err, size_t errlen)
{
	*id = control__string(cmd, "deviceId");
	if(!*id){
		snprintf(err, errlen, "'deviceId' (string) is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(!fleetmq_id_valid(*id, strlen(*id))){
		snprintf(err, errlen, "'deviceId' is not a valid device id (1..128 bytes of UTF-8, no '/', '+', '#')");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	return FLEETMQ_OK;
}

static cJSON *parse_json_or_null(const char *text)
{
	return text ? cJSON_Parse(text) : NULL;
}

/* ---------------------------------------------------------------- shadows */

static int cmd_get_shadow(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	struct fleetmq_shadow s;
	const char *id;
	char *doc = NULL;
	size_t len = 0;
	uint64_t version = 0;
	int rc;

	if((rc = require_device_id(cmd, &id, err, errlen))) return rc;
	if(!device__find(pl, id)){
		snprintf(err, errlen, "no device '%s'", id);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	if(fleetmq_shadow_init(&s)) return FLEETMQ_ERR_NOMEM;
	rc = fleetmq_store_shadow_get(pl->store, id, &doc, &len, &version);
	if(rc == FLEETMQ_OK){
		rc = fleetmq_shadow_load(&s, doc, len);
		fm_free(doc);
		if(rc){
			snprintf(err, errlen, "stored shadow is corrupt");
			fleetmq_shadow_clear(&s);
			return FLEETMQ_ERR_INTERNAL;
		}
	}else if(rc != FLEETMQ_ERR_NOT_FOUND){
		fleetmq_shadow_clear(&s);
		snprintf(err, errlen, "cannot read the shadow");
		return FLEETMQ_ERR_INTERNAL;
	}
	{
		char *state = fleetmq_shadow_state_json(&s, 1);
		char *meta = fleetmq_shadow_metadata_json(&s);
		cJSON_AddStringToObject(data, "deviceId", id);
		cJSON_AddNumberToObject(data, "version", (double)s.version);
		cJSON_AddItemToObject(data, "state", parse_json_or_null(state));
		cJSON_AddItemToObject(data, "metadata", parse_json_or_null(meta));
		cJSON_AddNumberToObject(data, "updatedMs", (double)s.updated_ms);
		fm_free(state);
		fm_free(meta);
	}
	fleetmq_shadow_clear(&s);
	return FLEETMQ_OK;
}

static int cmd_update_desired(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	struct fleetmq_shadow s;
	const cJSON *desired;
	const char *id;
	uint64_t expected;
	int rc;

	if((rc = require_device_id(cmd, &id, err, errlen))) return rc;
	desired = cJSON_GetObjectItemCaseSensitive(cmd, "desired");
	if(!desired){
		snprintf(err, errlen, "'desired' (object) is required");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if((rc = control__uint(cmd, "expectedVersion", 0, UINT64_MAX >> 11, &expected, err, errlen))) return rc;
	rc = handlers__shadow_apply(pl, id, FLEETMQ_SHADOW_DESIRED, desired, expected, c->now_ms, &s, err, errlen);
	if(rc != FLEETMQ_OK){
		if(rc == FLEETMQ_ERR_VERSION_CONFLICT) cJSON_AddNumberToObject(data, "currentVersion", (double)s.version);
		return rc;
	}
	/* like an update on the device topic: accepted (the device's desired view
	 * learns deletions from it), then the delta */
	handlers__shadow_queue_accepted(pl, id, FLEETMQ_SHADOW_DESIRED, desired, &s, "", c->now_ms);
	handlers__shadow_push_delta(pl, id, &s, c->now_ms);
	cJSON_AddStringToObject(data, "deviceId", id);
	cJSON_AddNumberToObject(data, "version", (double)s.version);
	fleetmq_shadow_clear(&s);
	return FLEETMQ_OK;
}

/* ---------------------------------------------------------------- devices */

struct list_devices_ctx {
	struct fleetmq_plugin *pl;
	cJSON *arr;
	const char *group;
	const char *after;
	uint64_t limit;
	uint64_t count;
	const char *last;
	char last_buf[FLEETMQ_MAX_ID_BYTES + 1];
	bool more;
};

static bool json_array_has_string(const cJSON *arr, const char *s)
{
	const cJSON *it;
	cJSON_ArrayForEach(it, arr){
		if(cJSON_IsString(it) && !strcmp(it->valuestring, s)) return true;
	}
	return false;
}

cJSON *control__device_json(struct fleetmq_plugin *pl, const struct fleetmq_device_rec *rec)
{
	struct fleetmq_device *dev = device__find(pl, rec->id);
	cJSON *o = cJSON_CreateObject();
	int presence = dev ? (int)dev->presence.state : rec->presence;

	if(!o) return NULL;
	cJSON_AddStringToObject(o, "deviceId", rec->id);
	cJSON_AddStringToObject(o, "presence", fleetmq_presence_name((enum fleetmq_presence_state)presence));
	cJSON_AddNumberToObject(o, "presenceSinceMs", (double)(dev ? dev->presence.since_ms : rec->presence_since_ms));
	cJSON_AddNumberToObject(o, "lastSeenMs", (double)(dev ? dev->presence.last_seen_ms : rec->last_seen_ms));
	cJSON_AddNumberToObject(o, "connectedAtMs", (double)(dev ? dev->presence.connected_at_ms : rec->connected_at_ms));
	cJSON_AddStringToObject(o, "deviceType", rec->device_type ? rec->device_type : "");
	cJSON_AddStringToObject(o, "hwRevision", rec->hw_revision ? rec->hw_revision : "");
	cJSON_AddStringToObject(o, "agentVersion", rec->agent_version ? rec->agent_version : "");
	cJSON_AddItemToObject(o, "software", parse_json_or_null(rec->software_json));
	cJSON_AddItemToObject(o, "reportedAttributes", parse_json_or_null(rec->attributes_json));
	cJSON_AddItemToObject(o, "attributes", parse_json_or_null(rec->op_attributes_json));
	cJSON_AddItemToObject(o, "groups", parse_json_or_null(rec->groups_json));
	cJSON_AddNumberToObject(o, "shadowVersion", (double)(dev ? dev->shadow_version : rec->shadow_version));
	cJSON_AddNumberToObject(o, "pendingJobs", (double)job__pending_count(pl, rec->id));
	cJSON_AddNumberToObject(o, "createdMs", (double)rec->created_ms);
	return o;
}

static int list_devices_cb(const struct fleetmq_device_rec *rec, void *ud)
{
	struct list_devices_ctx *x = ud;

	if(x->after && strcmp(rec->id, x->after) <= 0) return 0;
	if(x->group){
		cJSON *g = parse_json_or_null(rec->groups_json);
		bool in = g && json_array_has_string(g, x->group);
		cJSON_Delete(g);
		if(!in) return 0;
	}
	if(x->count >= x->limit){
		x->more = true;
		return 1;
	}
	cJSON_AddItemToArray(x->arr, control__device_json(x->pl, rec));
	snprintf(x->last_buf, sizeof(x->last_buf), "%s", rec->id);
	x->count++;
	return 0;
}

static int cmd_list_devices(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	struct list_devices_ctx x;
	int rc;

	memset(&x, 0, sizeof(x));
	x.pl = pl;
	x.group = control__string(cmd, "group");
	x.after = control__string(cmd, "after");
	if((rc = control__uint(cmd, "limit", 100, 10000, &x.limit, err, errlen))) return rc;
	if(x.limit == 0){
		snprintf(err, errlen, "'limit' must be 1..10000");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	x.arr = cJSON_AddArrayToObject(data, "devices");
	rc = fleetmq_store_device_foreach(pl->store, list_devices_cb, &x);
	if(rc < 0 || (rc != 0 && rc != 1)){
		snprintf(err, errlen, "cannot list devices: %s", fleetmq_store_last_error(pl->store));
		return FLEETMQ_ERR_INTERNAL;
	}
	cJSON_AddNumberToObject(data, "count", (double)x.count);
	cJSON_AddNumberToObject(data, "totalDevices", (double)pl->device_count);
	if(x.more) cJSON_AddStringToObject(data, "next", x.last_buf);
	return FLEETMQ_OK;
}

static int cmd_describe_device(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	struct fleetmq_device_rec rec;
	const char *id;
	cJSON *o;
	int rc;

	if((rc = require_device_id(cmd, &id, err, errlen))) return rc;
	memset(&rec, 0, sizeof(rec));
	if(fleetmq_store_device_get(pl->store, id, &rec) != FLEETMQ_OK){
		snprintf(err, errlen, "no device '%s'", id);
		return FLEETMQ_ERR_NOT_FOUND;
	}
	o = control__device_json(pl, &rec);
	cJSON_AddItemToObject(data, "device", o);
	return FLEETMQ_OK;
}

static int validate_string_map(const cJSON *obj, const char *what, char *err, size_t errlen)
{
	const cJSON *it;
	int n = 0;

	if(!cJSON_IsObject(obj)){
		snprintf(err, errlen, "'%s' must be an object of strings", what);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	cJSON_ArrayForEach(it, obj){
		if(++n > 64 || !it->string || !it->string[0] || strlen(it->string) > 64
				|| !cJSON_IsString(it) || strlen(it->valuestring) > 256){
			snprintf(err, errlen, "'%s' must hold at most 64 entries, keys 1..64 bytes, string values of at most 256 bytes", what);
			return FLEETMQ_ERR_BAD_REQUEST;
		}
	}
	return FLEETMQ_OK;
}

static int cmd_set_device_attributes(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(cmd, "attributes");
	const cJSON *groups = cJSON_GetObjectItemCaseSensitive(cmd, "groups");
	const cJSON *it;
	char *attrs_s = NULL, *groups_s = NULL;
	struct fleetmq_device *dev;
	const char *id;
	int rc, n = 0;

	if((rc = require_device_id(cmd, &id, err, errlen))) return rc;
	if(!attrs && !groups){
		snprintf(err, errlen, "give 'attributes' (object of strings) and/or 'groups' (array of strings)");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	if(attrs && (rc = validate_string_map(attrs, "attributes", err, errlen))) return rc;
	if(groups){
		if(!cJSON_IsArray(groups)){
			snprintf(err, errlen, "'groups' must be an array of strings");
			return FLEETMQ_ERR_BAD_REQUEST;
		}
		cJSON_ArrayForEach(it, groups){
			if(++n > 32 || !cJSON_IsString(it) || !fleetmq_id_valid(it->valuestring, strlen(it->valuestring))){
				snprintf(err, errlen, "'groups' must hold at most 32 valid names (1..128 bytes of UTF-8, no '/', '+', '#')");
				return FLEETMQ_ERR_BAD_REQUEST;
			}
		}
	}
	dev = device__ensure(pl, id, c->now_ms);
	if(!dev){
		snprintf(err, errlen, "cannot register device");
		return FLEETMQ_ERR_INTERNAL;
	}
	attrs_s = attrs ? cJSON_PrintUnformatted(attrs) : NULL;
	groups_s = groups ? cJSON_PrintUnformatted(groups) : NULL;
	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_device_set_groups(pl->store, id, groups_s, attrs_s);
	fm_free(attrs_s);
	fm_free(groups_s);
	if(rc != FLEETMQ_OK){
		snprintf(err, errlen, "cannot store attributes: %s", fleetmq_store_last_error(pl->store));
		return FLEETMQ_ERR_INTERNAL;
	}
	job__on_device_changed(pl, dev, c->now_ms);
	cJSON_AddStringToObject(data, "deviceId", id);
	return FLEETMQ_OK;
}

/* ---------------------------------------------------------------- audit */

struct audit_ctx {
	cJSON *arr;
	uint64_t last_seq;
	uint64_t count;
};

static int audit_cb(const struct fleetmq_audit_rec *rec, void *ud)
{
	struct audit_ctx *x = ud;
	cJSON *o = cJSON_CreateObject();

	if(!o) return 0;
	cJSON_AddNumberToObject(o, "seq", (double)rec->seq);
	cJSON_AddNumberToObject(o, "timestampMs", (double)rec->ts_ms);
	cJSON_AddStringToObject(o, "actor", rec->actor);
	cJSON_AddStringToObject(o, "action", rec->action);
	cJSON_AddStringToObject(o, "target", rec->target);
	cJSON_AddItemToObject(o, "detail", parse_json_or_null(rec->detail_json));
	cJSON_AddItemToArray(x->arr, o);
	x->last_seq = rec->seq;
	x->count++;
	return 0;
}

static int cmd_get_audit_log(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd,
		cJSON *data, char *err, size_t errlen)
{
	struct audit_ctx x;
	uint64_t since, before, limit;
	int rc;

	memset(&x, 0, sizeof(x));
	if((rc = control__uint(cmd, "sinceMs", 0, UINT64_MAX >> 11, &since, err, errlen))) return rc;
	if((rc = control__uint(cmd, "beforeSeq", 0, UINT64_MAX >> 11, &before, err, errlen))) return rc;
	if((rc = control__uint(cmd, "limit", 100, 10000, &limit, err, errlen))) return rc;
	if(limit == 0){
		snprintf(err, errlen, "'limit' must be 1..10000");
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	x.arr = cJSON_AddArrayToObject(data, "entries");
	rc = fleetmq_store_audit_query(pl->store, control__string(cmd, "actor"), control__string(cmd, "target"),
			since, before, (int)limit, audit_cb, &x);
	if(rc){
		snprintf(err, errlen, "cannot read the audit log: %s", fleetmq_store_last_error(pl->store));
		return FLEETMQ_ERR_INTERNAL;
	}
	cJSON_AddNumberToObject(data, "count", (double)x.count);
	if(x.count == limit && x.last_seq > 1) cJSON_AddNumberToObject(data, "nextBeforeSeq", (double)x.last_seq);
	return FLEETMQ_OK;
}

/* ---------------------------------------------------------------- dispatch */

static const struct command commands[] = {
	{ "createJob", job__cmd_create, true },
	{ "cancelJob", job__cmd_cancel, true },
	{ "describeJob", job__cmd_describe, false },
	{ "listJobs", job__cmd_list, false },
	{ "listJobExecutions", job__cmd_list_executions, false },
	{ "describeJobExecution", job__cmd_describe_execution, false },
	{ "listDevices", cmd_list_devices, false },
	{ "describeDevice", cmd_describe_device, false },
	{ "getShadow", cmd_get_shadow, false },
	{ "updateDesired", cmd_update_desired, true },
	{ "setDeviceAttributes", cmd_set_device_attributes, true },
	{ "getAuditLog", cmd_get_audit_log, false },
};

void control__audit(struct fleetmq_plugin *pl, uint64_t now_ms, const char *actor, const char *action,
		const char *target, const cJSON *detail)
{
	char *d = detail ? cJSON_PrintUnformatted(detail) : NULL;

	fleetmq_store_begin(pl->store);
	if(fleetmq_store_audit_add(pl->store, now_ms, actor ? actor : "", action, target ? target : "", d ? d : "{}")){
		mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot write audit record: %s", fleetmq_store_last_error(pl->store));
	}
	fm_free(d);
}

static const char *code_name(int code)
{
	switch(code){
		case FLEETMQ_ERR_BAD_REQUEST: return "BAD_REQUEST";
		case FLEETMQ_ERR_MALFORMED: return "MALFORMED";
		case FLEETMQ_ERR_FORBIDDEN: return "FORBIDDEN";
		case FLEETMQ_ERR_NOT_FOUND: return "NOT_FOUND";
		case FLEETMQ_ERR_VERSION_CONFLICT: return "CONFLICT";
		case FLEETMQ_ERR_TOO_LARGE: return "TOO_LARGE";
		case FLEETMQ_ERR_TOO_DEEP: return "TOO_DEEP";
		case FLEETMQ_ERR_WRONG_TYPE: return "WRONG_TYPE";
		case FLEETMQ_ERR_UNAVAILABLE: return "UNAVAILABLE";
		case FLEETMQ_ERR_NOMEM: return "INTERNAL";
		default: return "INTERNAL";
	}
}

static void add_error(cJSON *resp, int code, const char *msg)
{
	cJSON_AddStringToObject(resp, "error", msg && msg[0] ? msg : fleetmq_strerror(code));
	cJSON_AddStringToObject(resp, "code", code_name(code));
}

/* Run one command object; append its response to `responses`. */
static void run_command(struct fleetmq_plugin *pl, const struct control_ctx *c, const cJSON *cmd, cJSON *responses)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(cmd, "command");
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(cmd, "correlationData");
	cJSON *resp = cJSON_CreateObject();
	cJSON *data;
	char err[512];
	size_t i;
	int rc;

	if(!resp) return;
	cJSON_AddItemToArray(responses, resp);
	if(!cJSON_IsObject(cmd)){
		cJSON_AddStringToObject(resp, "command", "");
		add_error(resp, FLEETMQ_ERR_BAD_REQUEST, "each entry of 'commands' must be an object");
		return;
	}
	cJSON_AddStringToObject(resp, "command", cJSON_IsString(name) ? name->valuestring : "");
	if(corr) cJSON_AddItemToObject(resp, "correlationData", cJSON_Duplicate(corr, 1));
	if(!cJSON_IsString(name)){
		add_error(resp, FLEETMQ_ERR_BAD_REQUEST, "'command' (string) is required");
		return;
	}
	for(i = 0; i < sizeof(commands) / sizeof(commands[0]); i++){
		if(!strcmp(commands[i].name, name->valuestring)) break;
	}
	if(i == sizeof(commands) / sizeof(commands[0])){
		snprintf(err, sizeof(err), "unknown command '%.64s'; see docs/OPERATOR_API.md", name->valuestring);
		add_error(resp, FLEETMQ_ERR_BAD_REQUEST, err);
		return;
	}
	data = cJSON_CreateObject();
	err[0] = '\0';
	rc = commands[i].fn(pl, c, cmd, data, err, sizeof(err));
	if(rc == FLEETMQ_OK){
		cJSON_AddItemToObject(resp, "data", data);
	}else{
		add_error(resp, rc, err);
		if(cJSON_GetArraySize(data) > 0){
			cJSON_AddItemToObject(resp, "data", data);
		}else{
			cJSON_Delete(data);
		}
	}
	if(commands[i].audited){
		cJSON *detail = cJSON_Duplicate(cmd, 1);
		if(detail){
			cJSON_DeleteItemFromObjectCaseSensitive(detail, "document");  /* may be large; kept with the job */
			cJSON_AddStringToObject(detail, "result", rc == FLEETMQ_OK ? "ok" : code_name(rc));
			if(rc != FLEETMQ_OK) cJSON_AddStringToObject(detail, "error", err);
		}
		{
			const char *target = control__audit_target(cmd);
			const cJSON *d = cJSON_GetObjectItemCaseSensitive(resp, "data");
			if(!target[0] && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(d, "jobId"))){
				target = cJSON_GetObjectItemCaseSensitive(d, "jobId")->valuestring;
			}
			control__audit(pl, c->now_ms, c->actor, commands[i].name, target, detail);
		}
		cJSON_Delete(detail);
	}
}

const char *control__audit_target(const cJSON *cmd)
{
	const char *job = control__string(cmd, "jobId");
	const char *dev = control__string(cmd, "deviceId");

	if(job) return job;
	if(dev) return dev;
	return "";
}

/* Queue the JSON response to the right topic with the right properties. */
static void send_response(struct fleetmq_plugin *pl, const struct control_ctx *c, cJSON *root)
{
	mosquitto_property *props = NULL;
	char *text = cJSON_PrintUnformatted(root);
	char *payload;
	size_t len;

	if(!text) return;
	len = strlen(text);
	payload = fm_malloc(len ? len : 1);
	if(!payload){
		fm_free(text);
		return;
	}
	memcpy(payload, text, len);
	fm_free(text);
	if(c->correlation && c->correlation_len){
		mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, c->correlation, c->correlation_len);
	}
	publish__queue_props(pl, c->response_topic ? c->response_topic : FLEETMQ_CONTROL_RESPONSE_TOPIC,
			payload, len, 1, false, props);
}

static void read_properties(const mosquitto_property *props, struct control_ctx *c, char **resp_topic, void **corr)
{
	uint16_t len = 0;

	*resp_topic = NULL;
	*corr = NULL;
	if(mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, resp_topic, false)){
		/* validated: a publishable topic only */
		if(*resp_topic && (strpbrk(*resp_topic, "+#") || !(*resp_topic)[0])){
			mosquitto_free(*resp_topic);
			*resp_topic = NULL;
		}
	}
	if(mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, corr, &len, false)){
		c->correlation_len = len;
	}
	c->response_topic = *resp_topic;
	c->correlation = *corr;
}

/* May a client without the operator role get its answer on topic t? Not on
 * a device topic (<prefix> or <prefix>/...) nor on a '$' topic ($SYS,
 * $CONTROL...): its FORBIDDEN answer would be published there past the ACL. */
static bool response_topic_outside_fleet(const struct fleetmq_plugin *pl, const char *t)
{
	size_t plen = strlen(pl->cfg.topic_prefix);

	return !(strncmp(t, pl->cfg.topic_prefix, plen) == 0 && (t[plen] == '/' || t[plen] == '\0'));
}

static bool response_topic_ok_for_anyone(const struct fleetmq_plugin *pl, const char *t)
{
	return t[0] != '$' && response_topic_outside_fleet(pl, t);
}

/* Parse a JSON text that must span the whole buffer (trailing white space
 * allowed, nothing else). */
static cJSON *parse_whole(const void *buf, size_t len)
{
	const char *end = NULL, *p = buf;
	cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);

	if(!root) return NULL;
	while(end && end < p + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n' || *end == '\0')) end++;
	if(!end || end != p + len){
		cJSON_Delete(root);
		return NULL;
	}
	return root;
}

static void handle_json(struct fleetmq_plugin *pl, struct control_ctx *c, const void *payload, uint32_t len)
{
	cJSON *req = NULL, *root = cJSON_CreateObject(), *responses;
	const cJSON *cmds, *cmd;
	char err[256];

	if(!root) return;
	responses = cJSON_AddArrayToObject(root, "responses");
	if(!c->is_operator){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "");
		snprintf(err, sizeof(err), "not authorised: user '%s' does not have the operator role",
				c->actor ? c->actor : "");
		add_error(r, FLEETMQ_ERR_FORBIDDEN, err);
		mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: control: %s", err);
		goto send;
	}
	if(len > (uint64_t)pl->cfg.control_max_payload_bytes){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "");
		snprintf(err, sizeof(err), "payload of %u bytes exceeds control.max_payload_bytes (%lld)",
				(unsigned)len, pl->cfg.control_max_payload_bytes);
		add_error(r, FLEETMQ_ERR_TOO_LARGE, err);
		goto send;
	}
	req = parse_whole(payload, len);
	cmds = req ? cJSON_GetObjectItemCaseSensitive(req, "commands") : NULL;
	if(!req || !cJSON_IsArray(cmds)){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "");
		add_error(r, req ? FLEETMQ_ERR_BAD_REQUEST : FLEETMQ_ERR_MALFORMED,
				req ? "expected an object {\"commands\":[...]}" : "payload is not valid JSON");
		mosquitto_log_printf(MOSQ_LOG_WARNING, "fleetmq: control: rejected request from %s: %s",
				c->actor, req ? "no commands array" : "invalid JSON");
		goto send;
	}
	if(cJSON_GetArraySize(cmds) > MAX_COMMANDS){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "");
		add_error(r, FLEETMQ_ERR_TOO_LARGE, "at most 100 commands per request");
		goto send;
	}
	cJSON_ArrayForEach(cmd, cmds){
		run_command(pl, c, cmd, responses);
	}
send:
	send_response(pl, c, root);
	cJSON_Delete(root);
	cJSON_Delete(req);
}

static void handle_create_pb(struct fleetmq_plugin *pl, struct control_ctx *c, const void *payload, uint32_t len)
{
	Fleetmq__V1__CreateJobRequest *req = NULL;
	cJSON *root = cJSON_CreateObject(), *responses, *cmd = NULL;

	if(!root) return;
	responses = cJSON_AddArrayToObject(root, "responses");
	if(!c->is_operator){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "createJob");
		add_error(r, FLEETMQ_ERR_FORBIDDEN, "not authorised: the operator role is required");
		goto send;
	}
	if(len > (uint64_t)pl->cfg.control_max_payload_bytes){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "createJob");
		add_error(r, FLEETMQ_ERR_TOO_LARGE, "payload exceeds control.max_payload_bytes");
		goto send;
	}
	if(!(req = fleetmq__v1__create_job_request__unpack(NULL, len, payload))){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "createJob");
		add_error(r, FLEETMQ_ERR_MALFORMED, "payload is not a fleetmq.v1.CreateJobRequest protobuf message");
		goto send;
	}
	cmd = job__pb_to_json(req);
	if(!cmd){
		cJSON *r = cJSON_CreateObject();
		cJSON_AddItemToArray(responses, r);
		cJSON_AddStringToObject(r, "command", "createJob");
		add_error(r, FLEETMQ_ERR_BAD_REQUEST, "invalid CreateJobRequest (document_json or options_json is not a JSON object)");
		goto send;
	}
	run_command(pl, c, cmd, responses);
send:
	send_response(pl, c, root);
	cJSON_Delete(root);
	cJSON_Delete(cmd);
	if(req) fleetmq__v1__create_job_request__free_unpacked(req, NULL);
}

int control__handle(struct fleetmq_plugin *pl, const struct mosquitto *client, const char *topic,
		const void *payload, uint32_t payloadlen, const void *properties)
{
	struct control_ctx c;
	char *resp_topic = NULL;
	void *corr = NULL;

	memset(&c, 0, sizeof(c));
	c.actor = mosquitto_client_username(client);
	if(!c.actor) c.actor = "";
	c.client_id = mosquitto_client_id(client);
	c.is_operator = plugin__is_operator(pl, client);
	c.now_ms = fleetmq_now_ms();
	read_properties(properties, &c, &resp_topic, &corr);
	/* Replies are published by the plugin, past the ACL: never into a
	 * device's topic tree (for anyone), and never onto '$' topics for
	 * non-operators. Such requests are answered on the default topic. */
	if(c.response_topic && (c.is_operator ? !response_topic_outside_fleet(pl, c.response_topic)
				: !response_topic_ok_for_anyone(pl, c.response_topic))){
		c.response_topic = NULL;
	}

	if(!strcmp(topic, FLEETMQ_CONTROL_TOPIC)){
		handle_json(pl, &c, payload, payloadlen);
	}else{
		handle_create_pb(pl, &c, payload, payloadlen);
	}
	mosquitto_free(resp_topic);
	mosquitto_free(corr);
	return FLEETMQ_OK;
}
