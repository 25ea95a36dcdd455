/*
 * publish.c - ordered output queue and group commit.
 *
 * Every message the plugin sends (acknowledgements, rejections, deltas,
 * presence) is queued here in order. Writes made while handling the
 * messages of one broker loop pass share one store transaction; on the next
 * TICK (once per loop pass) the transaction is committed - fsync'd - and
 * only then is the queue handed to mosquitto_broker_publish(). So nothing
 * is acknowledged before it is durable, and a response never reveals state
 * that a crash could still take back.
 *
 * If group commit is off, or TICK events are not arriving (Mosquitto 2.0.11
 * does not send them with per_listener_settings true), the queue is flushed
 * at the end of each callback instead.
 *
 * Must never: publish before commit; block on anything but the fsync.
 */
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mosquitto.h>

#include "fleetmq_alloc.h"
#include "fleetmq_plugin.h"

#define TICK_STALE_MS 500   /* no TICK for this long: ticks are not coming */

static void outmsg_free(struct fleetmq_outmsg *m)
{
	if(!m) return;
	fm_free(m->topic);
	fm_free(m->clientid);
	fm_free(m->payload);
	if(m->props){
		mosquitto_property *p = m->props;
		mosquitto_property_free_all(&p);
	}
	fm_free(m);
}

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);
	return n >= m && !memcmp(s + n - m, tail, m);
}

/* delivery.direct: the client id that should get a message on topic, or
 * NULL to publish it to subscribers. Responses (.../accepted, .../rejected)
 * go to whoever made the request being handled, everything else on a device
 * topic (deltas, job notifications, artifact chunks) to the device; presence
 * and everything outside the fleet prefix to subscribers.
 * A message for a device is sent only while the device has a session the
 * plugin has heard from (it authenticated as the device): direct delivery
 * skips Mosquitto's READ check, and a client that merely took the device's
 * client id must not get it. Otherwise *drop is set: the device catches up
 * with its next hello anyway. */
static char *direct_target(struct fleetmq_plugin *pl, const char *topic, bool retain, bool *drop)
{
	const char *prefix = pl->cfg.topic_prefix, *id, *slash;
	size_t plen = strlen(prefix);
	struct fleetmq_device *dev;
	char *target;

	*drop = false;
	if(!pl->cfg.delivery_direct || retain) return NULL;
	if(strncmp(topic, prefix, plen) || topic[plen] != '/') return NULL;
	id = topic + plen + 1;
	slash = strchr(id, '/');
	if(!slash || slash == id || !strcmp(slash + 1, "presence")) return NULL;
	if(pl->requester_id && (ends_with(topic, "/accepted") || ends_with(topic, "/rejected"))){
		return fm_strdup(pl->requester_id);
	}
	target = fm_strndup(id, (size_t)(slash - id));
	dev = target ? device__find(pl, target) : NULL;
	if(!dev || !dev->conn){
		fm_free(target);
		*drop = true;
		return NULL;
	}
	return target;
}

int publish__queue(struct fleetmq_plugin *pl, const char *topic, void *payload, size_t len, int qos, bool retain)
{
	return publish__queue_props(pl, topic, payload, len, qos, retain, NULL);
}

int publish__queue_props(struct fleetmq_plugin *pl, const char *topic, void *payload, size_t len, int qos,
		bool retain, void *props)
{
	struct fleetmq_outmsg *m;
	char *target;
	bool drop;

	target = direct_target(pl, topic, retain, &drop);
	if(drop){
		mosquitto_property *p = props;
		fm_free(payload);
		mosquitto_property_free_all(&p);
		pl->n_direct_dropped++;
		return FLEETMQ_OK;
	}
	m = fm_calloc(1, sizeof(*m));
	if(!m || !(m->topic = fm_strdup(topic))){
		mosquitto_property *p = props;
		fm_free(target);
		fm_free(m);
		fm_free(payload);
		mosquitto_property_free_all(&p);
		return FLEETMQ_ERR_NOMEM;
	}
	m->clientid = target;
	m->props = props;
	m->payload = payload;
	m->payloadlen = (uint32_t)len;
	m->qos = (uint8_t)qos;
	m->retain = retain;
	if(pl->out_tail) pl->out_tail->next = m; else pl->out_head = m;
	pl->out_tail = m;
	pl->out_count++;
	return FLEETMQ_OK;
}

int publish__queue_device(struct fleetmq_plugin *pl, const char *id, const char *suffix,
		void *payload, size_t len, int qos, bool retain)
{
	char topic[512];

	if(!fleetmq_topic_build(topic, sizeof(topic), pl->cfg.topic_prefix, id, suffix)){
		fm_free(payload);
		return FLEETMQ_ERR_BAD_REQUEST;
	}
	return publish__queue(pl, topic, payload, len, qos, retain);
}

void publish__flush(struct fleetmq_plugin *pl)
{
	struct fleetmq_outmsg *m, *next;
	bool committed = true;

	if(fleetmq_store_in_txn(pl->store)){
		if(fleetmq_store_commit(pl->store) != FLEETMQ_OK){
			committed = false;
			pl->n_commit_failures++;
			mosquitto_log_printf(MOSQ_LOG_ERR,
					"fleetmq: store commit failed (%s); %zu queued responses dropped, in-memory state reloaded",
					fleetmq_store_last_error(pl->store), pl->out_count);
		}else{
			pl->n_commits++;
		}
	}

	for(m = pl->out_head; m; m = next){
		next = m->next;
		if(committed){
			/* The broker takes ownership of payload (allocated by mosquitto_malloc via fm_malloc). */
			if(mosquitto_broker_publish(m->clientid, m->topic, (int)m->payloadlen, m->payload, m->qos,
						m->retain, m->props) == MOSQ_ERR_SUCCESS){
				m->payload = NULL;   /* the broker owns them now */
				m->props = NULL;
			}
		}
		outmsg_free(m);
	}
	pl->out_head = pl->out_tail = NULL;
	pl->out_count = 0;

	if(!committed){
		/* The store is the source of truth: rebuild the cache from it. */
		job__cleanup(pl);
		device__cleanup(pl);
		device__load_all(pl);
		job__load_all(pl);
	}
}

void publish__maybe_flush(struct fleetmq_plugin *pl)
{
	if(!pl->cfg.store_group_commit || fleetmq_mono_ms() - pl->last_tick_mono_ms > TICK_STALE_MS){
		publish__flush(pl);
	}
}

void publish__cleanup(struct fleetmq_plugin *pl)
{
	struct fleetmq_outmsg *m, *next;

	for(m = pl->out_head; m; m = next){
		next = m->next;
		outmsg_free(m);
	}
	pl->out_head = pl->out_tail = NULL;
	pl->out_count = 0;
}
