/*
 * device.c - device registry and presence adapter.
 *
 * Owns the in-memory registry (uthash by id): a small cache of the store's
 * devices table holding what the broker needs on its hot path (presence,
 * shadow version, current session). Connected devices are also kept in a
 * list ordered by last activity, so the silence check only looks at the
 * devices that have gone quiet, not at the whole fleet.
 *
 * Presence rules (see docs/ARCHITECTURE.md):
 *   - ONLINE on hello or on any message from the device's session;
 *   - a DISCONNECT of the session we last heard from starts a grace period
 *     (presence.offline_grace_ms); a new session of the same device within
 *     it cancels the OFFLINE. This covers Mosquitto 2.0's order on a session
 *     takeover, where the old session's DISCONNECT precedes the new one's
 *     first packet. A DISCONNECT of any other session is ignored;
 *   - SILENT when connected and quiet for presence.silence_threshold_ms.
 * Transitions are persisted (in the current group transaction) and
 * published on <prefix>/<id>/presence, retained unless presence.retain is
 * false. last_seen is flushed
 * periodically, not per message, to spare the disk.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>
#include <utlist.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

/* Device types and agent versions repeat across a fleet: each distinct
 * value is stored once and reference counted. */
struct fm_interned {
	UT_hash_handle hh;
	size_t refs;
	char s[];
};

static const char no_string[] = "";

const char *device__intern(struct fleetmq_plugin *pl, const char *s)
{
	struct fm_interned *in = NULL;
	size_t len;

	if(!s || !s[0]) return no_string;
	len = strlen(s);
	HASH_FIND(hh, pl->interned, s, len, in);
	if(!in){
		in = fm_malloc(sizeof(*in) + len + 1);
		if(!in) return no_string;
		memcpy(in->s, s, len + 1);
		in->refs = 0;
		HASH_ADD_KEYPTR(hh, pl->interned, in->s, len, in);
	}
	in->refs++;
	return in->s;
}

void device__unintern(struct fleetmq_plugin *pl, const char *s)
{
	struct fm_interned *in;

	if(!s || s == no_string) return;
	in = (struct fm_interned *)(void *)((char *)(uintptr_t)s - offsetof(struct fm_interned, s));
	if(--in->refs == 0){
		HASH_DEL(pl->interned, in);
		fm_free(in);
	}
}

static void device_free(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	if(!dev) return;
	device__unintern(pl, dev->device_type);
	device__unintern(pl, dev->agent_version);
	fm_free(dev);
}

static struct fleetmq_device *device_new(const char *id)
{
	size_t len = strlen(id);
	struct fleetmq_device *dev = fm_calloc(1, sizeof(*dev) + len + 1);

	if(!dev) return NULL;
	memcpy(dev->id, id, len + 1);
	dev->device_type = no_string;
	dev->agent_version = no_string;
	return dev;
}

static void connected_touch(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	if(dev->in_connected_list){
		DL_DELETE(pl->connected, dev);
	}
	DL_APPEND(pl->connected, dev);
	dev->in_connected_list = true;
}

static void connected_remove(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	if(dev->in_connected_list){
		DL_DELETE(pl->connected, dev);
		dev->in_connected_list = false;
	}
}

static int load_cb(const struct fleetmq_device_rec *rec, void *userdata)
{
	struct fleetmq_plugin *pl = userdata;
	struct fleetmq_device *dev = device_new(rec->id);

	if(!dev) return FLEETMQ_ERR_NOMEM;
	dev->device_type = device__intern(pl, rec->device_type);
	dev->agent_version = device__intern(pl, rec->agent_version);
	dev->presence.state = (enum fleetmq_presence_state)rec->presence;
	dev->presence.since_ms = rec->presence_since_ms;
	dev->presence.last_seen_ms = rec->last_seen_ms;
	dev->presence.connected_at_ms = rec->connected_at_ms;
	dev->persisted_last_seen_ms = rec->last_seen_ms;
	dev->shadow_version = rec->shadow_version;
	HASH_ADD_KEYPTR(hh, pl->devices, dev->id, strlen(dev->id), dev);
	pl->device_count++;
	return 0;
}

int device__load_all(struct fleetmq_plugin *pl)
{
	return fleetmq_store_device_foreach(pl->store, load_cb, pl);
}

struct fleetmq_device *device__find(struct fleetmq_plugin *pl, const char *id)
{
	struct fleetmq_device *dev = NULL;

	HASH_FIND_STR(pl->devices, id, dev);
	return dev;
}

static int persist_presence(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	int rc;

	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_device_set_presence(pl->store, dev->id, dev->presence.state,
			dev->presence.since_ms, dev->presence.last_seen_ms, dev->presence.connected_at_ms);
	if(rc == FLEETMQ_OK) dev->persisted_last_seen_ms = dev->presence.last_seen_ms;
	return rc;
}

int device__persist(struct fleetmq_plugin *pl, struct fleetmq_device *dev, const char *hw_revision,
		const char *software_json, const char *attributes_json)
{
	struct fleetmq_device_rec rec;
	struct fleetmq_device_rec old;
	int rc;

	memset(&rec, 0, sizeof(rec));
	memset(&old, 0, sizeof(old));
	fleetmq_store_begin(pl->store);
	rc = fleetmq_store_device_get(pl->store, dev->id, &old);
	rec.id = dev->id;
	rec.device_type = dev->device_type;
	rec.agent_version = dev->agent_version;
	rec.hw_revision = hw_revision ? hw_revision : (rc == FLEETMQ_OK ? old.hw_revision : "");
	rec.software_json = software_json ? software_json : (rc == FLEETMQ_OK ? old.software_json : "[]");
	rec.attributes_json = attributes_json ? attributes_json : (rc == FLEETMQ_OK ? old.attributes_json : "{}");
	rec.presence = dev->presence.state;
	rec.presence_since_ms = dev->presence.since_ms;
	rec.last_seen_ms = dev->presence.last_seen_ms;
	rec.connected_at_ms = dev->presence.connected_at_ms;
	rec.created_ms = rc == FLEETMQ_OK ? old.created_ms : fleetmq_now_ms();
	rec.shadow_version = dev->shadow_version;
	rc = fleetmq_store_device_put(pl->store, &rec);
	if(rc == FLEETMQ_OK) dev->persisted_last_seen_ms = dev->presence.last_seen_ms;
	else mosquitto_log_printf(MOSQ_LOG_ERR, "fleetmq: cannot store device %s: %s", dev->id,
			fleetmq_store_last_error(pl->store));
	return rc;
}

struct fleetmq_device *device__ensure(struct fleetmq_plugin *pl, const char *id, uint64_t now_ms)
{
	struct fleetmq_device *dev = device__find(pl, id);

	if(dev) return dev;
	dev = device_new(id);
	if(!dev) return NULL;
	dev->presence.state = FM_PRESENCE_OFFLINE;
	dev->presence.since_ms = now_ms;
	if(device__persist(pl, dev, NULL, NULL, NULL) != FLEETMQ_OK){
		device_free(pl, dev);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, pl->devices, dev->id, strlen(dev->id), dev);
	pl->device_count++;
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: registered device %s", id);
	return dev;
}

void device__publish_presence(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	Fleetmq__V1__Presence msg = FLEETMQ__V1__PRESENCE__INIT;
	size_t len;
	uint8_t *buf;

	msg.state = (Fleetmq__V1__PresenceState)dev->presence.state;
	msg.since_ms = dev->presence.since_ms;
	msg.last_seen_ms = dev->presence.last_seen_ms;
	msg.connected_at_ms = dev->presence.connected_at_ms;
	msg.device_type = (char *)dev->device_type;
	msg.agent_version = (char *)dev->agent_version;
	len = fleetmq__v1__presence__get_packed_size(&msg);
	buf = fm_malloc(len ? len : 1);
	if(!buf) return;
	fleetmq__v1__presence__pack(&msg, buf);
	publish__queue_device(pl, dev->id, "presence", buf, len, 1, pl->cfg.presence_retain);
}

static void transition(struct fleetmq_plugin *pl, struct fleetmq_device *dev)
{
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: device %s is %s", dev->id,
			fleetmq_presence_name(dev->presence.state));
	persist_presence(pl, dev);
	device__publish_presence(pl, dev);
}

void device__on_activity(struct fleetmq_plugin *pl, struct fleetmq_device *dev,
		const struct mosquitto *client, uint64_t now_ms)
{
	if(dev->conn != client){
		/* A new session (takeover or reconnect): it alone counts from now on. */
		dev->conn = client;
		dev->hello_seen = false;
	}
	dev->disconnect_at_ms = 0;
	if(fleetmq_presence_on_activity(&dev->presence, now_ms)){
		transition(pl, dev);
	}
	connected_touch(pl, dev);
}

void device__on_hello(struct fleetmq_plugin *pl, struct fleetmq_device *dev,
		const struct mosquitto *client, uint64_t now_ms)
{
	bool changed;

	dev->conn = client;
	dev->hello_seen = true;
	dev->disconnect_at_ms = 0;
	changed = fleetmq_presence_on_session(&dev->presence, now_ms);
	connected_touch(pl, dev);
	/* Always republish on hello: type/agent version may have changed and a
	 * retained presence may have been lost with a broker restart. */
	(void)changed;
	mosquitto_log_printf(MOSQ_LOG_INFO, "fleetmq: device %s is online (hello)", dev->id);
	device__publish_presence(pl, dev);
}

void device__on_disconnect(struct fleetmq_plugin *pl, const struct mosquitto *client, uint64_t now_ms)
{
	const char *id = mosquitto_client_id(client);
	struct fleetmq_device *dev;

	if(!id) return;
	dev = device__find(pl, id);
	if(!dev || dev->conn != client) return;   /* not a device, or a stale session */
	dev->conn = NULL;
	dev->hello_seen = false;
	dev->disconnect_at_ms = now_ms ? now_ms : 1;
	if(pl->cfg.presence_offline_grace_ms == 0){
		dev->disconnect_at_ms = 0;
		connected_remove(pl, dev);
		if(fleetmq_presence_on_disconnect(&dev->presence, now_ms)) transition(pl, dev);
	}
}

void device__tick(struct fleetmq_plugin *pl, uint64_t now_ms)
{
	struct fleetmq_device *dev, *tmp;
	uint64_t grace = (uint64_t)pl->cfg.presence_offline_grace_ms;
	uint64_t threshold = (uint64_t)pl->cfg.presence_silence_threshold_ms;

	if(now_ms < pl->next_silence_check_ms) return;
	pl->next_silence_check_ms = now_ms + (uint64_t)pl->cfg.presence_check_interval_ms;

	/* Oldest activity first: stop at the first device that is neither quiet
	 * for long enough nor pending disconnect... pending disconnects may sit
	 * anywhere, so walk while entries are older than min(grace, threshold). */
	DL_FOREACH_SAFE(pl->connected, dev, tmp){
		uint64_t quiet = now_ms > dev->presence.last_seen_ms ? now_ms - dev->presence.last_seen_ms : 0;
		if(quiet < grace && quiet < threshold) break;
		if(dev->disconnect_at_ms && now_ms - dev->disconnect_at_ms >= grace){
			dev->disconnect_at_ms = 0;
			connected_remove(pl, dev);
			if(fleetmq_presence_on_disconnect(&dev->presence, now_ms)) transition(pl, dev);
			continue;
		}
		if(!dev->disconnect_at_ms && fleetmq_presence_check_silence(&dev->presence, now_ms, threshold)){
			transition(pl, dev);
		}
	}

	if(now_ms >= pl->next_flush_ms){
		pl->next_flush_ms = now_ms + (uint64_t)pl->cfg.presence_flush_interval_ms;
		DL_FOREACH(pl->connected, dev){
			if(dev->presence.last_seen_ms > dev->persisted_last_seen_ms){
				persist_presence(pl, dev);
			}
		}
	}
}

void device__mark_all_offline_at_start(struct fleetmq_plugin *pl, uint64_t now_ms)
{
	struct fleetmq_device *dev, *tmp;

	/* After a restart no session exists yet: whoever the store thinks is
	 * connected is not (devices say hello again when they reconnect). */
	HASH_ITER(hh, pl->devices, dev, tmp){
		if(fleetmq_presence_connected(&dev->presence)){
			if(fleetmq_presence_on_disconnect(&dev->presence, now_ms)) transition(pl, dev);
		}
	}
}

void device__cleanup(struct fleetmq_plugin *pl)
{
	struct fleetmq_device *dev, *tmp;
	struct fm_interned *in, *itmp;

	HASH_ITER(hh, pl->devices, dev, tmp){
		HASH_DEL(pl->devices, dev);
		device_free(pl, dev);
	}
	pl->devices = NULL;
	HASH_ITER(hh, pl->interned, in, itmp){   /* empty unless a count is off */
		HASH_DEL(pl->interned, in);
		fm_free(in);
	}
	pl->interned = NULL;
	pl->connected = NULL;
	pl->device_count = 0;
}
