/*
 * topic.h - classify topics under the fleet prefix (pure core).
 *
 * Device topics have the shape <prefix>/<device-id>/<rest>. This module
 * splits a topic into its device id and request kind, and tells plugin
 * output topics (responses, deltas, presence) from device requests, which
 * the ACL uses to stop anyone but the plugin from forging responses.
 */
#ifndef FLEETMQ_TOPIC_H
#define FLEETMQ_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define FLEETMQ_MAX_ID_BYTES 128        /* device ids, job ids, artifact names */

enum fleetmq_topic_kind {
	FM_TOPIC_OUTSIDE = 0,        /* not under the prefix: not ours */
	FM_TOPIC_INVALID,            /* under the prefix but no valid device id */
	FM_TOPIC_UNKNOWN,            /* <prefix>/<id>/<something we do not serve> */
	FM_TOPIC_OUTPUT,             /* written only by the plugin (responses, delta, presence, notify, data) */
	FM_TOPIC_HELLO,
	FM_TOPIC_SHADOW_GET,
	FM_TOPIC_SHADOW_UPDATE,
	FM_TOPIC_TELEMETRY,
	FM_TOPIC_JOBS_NEXT_GET,
	FM_TOPIC_JOB_UPDATE,         /* <prefix>/<id>/jobs/<job>/update */
	FM_TOPIC_ARTIFACT_GET,       /* <prefix>/<id>/artifacts/<name>/get */
};

struct fleetmq_topic {
	enum fleetmq_topic_kind kind;
	char device_id[FLEETMQ_MAX_ID_BYTES + 1];
	char sub_id[FLEETMQ_MAX_ID_BYTES + 1];   /* job id or artifact name, else "" */
};

/* Classify a concrete (wildcard-free) topic. Never fails: the result's kind
 * says what it is. device_id is filled for every kind but OUTSIDE/INVALID. */
void fleetmq_topic_parse(const char *prefix, const char *topic, struct fleetmq_topic *out);

/* Well-formed UTF-8 (what MQTT requires of topic names and client ids). */
bool fleetmq_utf8_valid(const char *s, size_t len);

/* A valid id: 1..FLEETMQ_MAX_ID_BYTES bytes of well-formed UTF-8, no '/',
 * '+', '#', no control characters. */
bool fleetmq_id_valid(const char *id, size_t len);

/* Build "<prefix>/<id>/<suffix>" into buf. Returns false if it did not fit. */
bool fleetmq_topic_build(char *buf, size_t buflen, const char *prefix, const char *id, const char *suffix);

#endif
