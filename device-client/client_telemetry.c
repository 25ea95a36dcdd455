/*
 * client_telemetry.c - application gauges and TelemetryBatch publishing.
 *
 * Owns: the gauge table (name -> latest value) and the batch sequence
 * counter. A batch is every gauge plus the caller's extra metrics, published
 * at QoS 1 on <prefix>/<id>/telemetry through Paho, whose offline buffer
 * (sendWhileDisconnected, maxBufferedMessages = telemetry_buffer_messages,
 * deleteOldestMessages) keeps at most that many batches while disconnected
 * and drops the oldest first.
 *
 * Must never: block on the network, or let telemetry displace job reports
 * (those go through the durable outbox, not this buffer).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fleetmq_alloc.h"
#include "client_internal.h"

#define MAX_METRIC_NAME 128

int fleetmq_client_metric_set(struct fleetmq_client *c, const char *name, double value)
{
	struct fm_gauge *g;
	int rc = FLEETMQ_CLIENT_OK;

	if(!c || !name || !name[0] || strlen(name) > MAX_METRIC_NAME) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	for(g = c->gauges; g; g = g->next){
		if(!strcmp(g->name, name)) break;
	}
	if(!g){
		g = fm_calloc(1, sizeof(*g));
		if(g) g->name = fm_strdup(name);
		if(!g || !g->name){
			fm_free(g);
			g = NULL;
			rc = FLEETMQ_CLIENT_ERR_NOMEM;
		}else{
			/* append: batches list gauges in creation order */
			struct fm_gauge **pp = &c->gauges;
			while(*pp) pp = &(*pp)->next;
			*pp = g;
		}
	}
	if(g) g->value = value;
	pthread_mutex_unlock(&c->mu);
	return rc;
}

int fleetmq_client_metric_remove(struct fleetmq_client *c, const char *name)
{
	struct fm_gauge **pp, *g;

	if(!c || !name || !name[0]) return FLEETMQ_CLIENT_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	for(pp = &c->gauges; *pp; pp = &(*pp)->next){
		if(!strcmp((*pp)->name, name)){
			g = *pp;
			*pp = g->next;
			fm_free(g->name);
			fm_free(g);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return FLEETMQ_CLIENT_OK;
}

int fleetmq_client_telemetry_publish(struct fleetmq_client *c, const struct fleetmq_client_metric *extra, size_t count)
{
	Fleetmq__V1__TelemetryBatch b = FLEETMQ__V1__TELEMETRY_BATCH__INIT;
	Fleetmq__V1__Metric *ms = NULL, **mp = NULL;
	MQTTAsync_message m = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
	struct fm_gauge *g;
	char **names = NULL;
	uint8_t *buf = NULL;
	char *topic = NULL;
	size_t n_gauges = 0, n = 0, i, len;
	int rc = FLEETMQ_CLIENT_OK, prc;

	if(!c || (count && !extra)) return FLEETMQ_CLIENT_ERR_INVALID;
	for(i = 0; i < count; i++){
		if(!extra[i].name || !extra[i].name[0] || strlen(extra[i].name) > MAX_METRIC_NAME) return FLEETMQ_CLIENT_ERR_INVALID;
	}

	pthread_mutex_lock(&c->mu);
	if(!c->started || c->stopping){
		pthread_mutex_unlock(&c->mu);
		return c->stopping ? FLEETMQ_CLIENT_ERR_STOPPED : FLEETMQ_CLIENT_ERR_STATE;
	}
	for(g = c->gauges; g; g = g->next) n_gauges++;
	ms = fm_calloc(n_gauges + count + 1, sizeof(*ms));
	mp = fm_calloc(n_gauges + count + 1, sizeof(*mp));
	names = fm_calloc(n_gauges + 1, sizeof(*names));
	if(!ms || !mp || !names){
		pthread_mutex_unlock(&c->mu);
		rc = FLEETMQ_CLIENT_ERR_NOMEM;
		goto cleanup;
	}
	for(g = c->gauges; g; g = g->next){
		names[n] = fm_strdup(g->name);
		if(!names[n]){
			pthread_mutex_unlock(&c->mu);
			rc = FLEETMQ_CLIENT_ERR_NOMEM;
			goto cleanup;
		}
		fleetmq__v1__metric__init(&ms[n]);
		ms[n].name = names[n];
		ms[n].value = g->value;
		mp[n] = &ms[n];
		n++;
	}
	b.sequence = ++c->telemetry_seq;
	c->telemetry_batches++;
	pthread_mutex_unlock(&c->mu);

	for(i = 0; i < count; i++){
		fleetmq__v1__metric__init(&ms[n]);
		ms[n].name = (char *)extra[i].name;
		ms[n].value = extra[i].value;
		ms[n].timestamp_ms = extra[i].timestamp_ms;
		mp[n] = &ms[n];
		n++;
	}
	b.timestamp_ms = client__wall_ms();
	b.n_metrics = n;
	b.metrics = mp;
	len = fleetmq__v1__telemetry_batch__get_packed_size(&b);
	if(len > FM_MAX_PAYLOAD_BYTES){
		rc = FLEETMQ_CLIENT_ERR_TOO_LARGE;
		goto cleanup;
	}
	buf = fm_malloc(len ? len : 1);
	topic = client__topic(c, "telemetry");
	if(!buf || !topic){
		rc = FLEETMQ_CLIENT_ERR_NOMEM;
		goto cleanup;
	}
	fleetmq__v1__telemetry_batch__pack(&b, buf);
	m.payload = buf;
	m.payloadlen = (int)len;
	m.qos = 1;
	prc = MQTTAsync_sendMessage(c->mqtt, topic, &m, &ro);
	if(prc != MQTTASYNC_SUCCESS){
		client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "telemetry batch %" PRIu64 " not queued (paho rc %d)", b.sequence, prc);
		rc = FLEETMQ_CLIENT_ERR_MQTT;
	}

cleanup:
	for(i = 0; names && i < n_gauges; i++) fm_free(names[i]);
	fm_free(names);
	fm_free(ms);
	fm_free(mp);
	fm_free(buf);
	fm_free(topic);
	return rc;
}

void telemetry__tick_locked(struct fleetmq_client *c, uint64_t now, uint64_t *next_wake, bool *publish_now)
{
	if(!c->telemetry_interval_ms || !c->next_telemetry_ms) return;
	if(now >= c->next_telemetry_ms){
		*publish_now = true;
		c->next_telemetry_ms += (uint64_t)c->telemetry_interval_ms;
		if(c->next_telemetry_ms <= now) c->next_telemetry_ms = now + (uint64_t)c->telemetry_interval_ms;
	}
	if(c->next_telemetry_ms < *next_wake) *next_wake = c->next_telemetry_ms;
}

void telemetry__message_locked(struct fleetmq_client *c, const char *rest, const uint8_t *p, size_t len)
{
	Fleetmq__V1__Rejection *r;

	if(strcmp(rest, "telemetry/rejected")) return;
	r = fleetmq__v1__rejection__unpack(NULL, len, p);
	if(!r) return;
	client__log(c, FLEETMQ_CLIENT_LOG_WARNING, "telemetry rejected: %s (%s)", fleetmq_client_strerror((int)r->code), r->reason);
	fleetmq__v1__rejection__free_unpacked(r, NULL);
}

void telemetry__cleanup(struct fleetmq_client *c)
{
	struct fm_gauge *g, *n;

	for(g = c->gauges; g; g = n){
		n = g->next;
		fm_free(g->name);
		fm_free(g);
	}
	c->gauges = NULL;
}
