/*
 * presence.h - device presence state machine (pure core, caller's clock).
 *
 *   OFFLINE --hello/activity--> ONLINE --silence threshold--> SILENT
 *      ^                          |  ^                           |
 *      +------- disconnect -------+  +--------- activity --------+
 *
 * Every function takes the current time (ms since the Unix epoch) and
 * returns true when the visible state changed, i.e. when the adapter must
 * publish and persist a new presence record.
 */
#ifndef FLEETMQ_PRESENCE_H
#define FLEETMQ_PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

/* Values equal fleetmq.v1.PresenceState */
enum fleetmq_presence_state {
	FM_PRESENCE_UNKNOWN = 0,
	FM_PRESENCE_ONLINE = 1,
	FM_PRESENCE_OFFLINE = 2,
	FM_PRESENCE_SILENT = 3,
};

struct fleetmq_presence {
	enum fleetmq_presence_state state;
	uint64_t since_ms;          /* when state began */
	uint64_t last_seen_ms;      /* last message from the device */
	uint64_t connected_at_ms;   /* start of the current/last session */
};

/* A new session announced itself (hello): ONLINE, connected_at = now. */
bool fleetmq_presence_on_session(struct fleetmq_presence *p, uint64_t now_ms);

/* Any message from the device: last_seen = now; SILENT/OFFLINE/UNKNOWN -> ONLINE
 * (an OFFLINE device that talks is evidently connected; connected_at = now). */
bool fleetmq_presence_on_activity(struct fleetmq_presence *p, uint64_t now_ms);

/* The device's session ended: OFFLINE. */
bool fleetmq_presence_on_disconnect(struct fleetmq_presence *p, uint64_t now_ms);

/* ONLINE and nothing heard for >= threshold_ms: SILENT. */
bool fleetmq_presence_check_silence(struct fleetmq_presence *p, uint64_t now_ms, uint64_t threshold_ms);

/* True for ONLINE and SILENT (connected). */
bool fleetmq_presence_connected(const struct fleetmq_presence *p);

const char *fleetmq_presence_name(enum fleetmq_presence_state s);

#endif
