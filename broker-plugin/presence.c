/*
 * presence.c - presence transitions (see presence.h). Pure: no clock, no I/O.
 */
#include "presence.h"

static bool set_state(struct fleetmq_presence *p, enum fleetmq_presence_state s, uint64_t now_ms)
{
	if(p->state == s) return false;
	p->state = s;
	p->since_ms = now_ms;
	return true;
}

bool fleetmq_presence_on_session(struct fleetmq_presence *p, uint64_t now_ms)
{
	p->last_seen_ms = now_ms;
	p->connected_at_ms = now_ms;
	return set_state(p, FM_PRESENCE_ONLINE, now_ms);
}

bool fleetmq_presence_on_activity(struct fleetmq_presence *p, uint64_t now_ms)
{
	if(now_ms > p->last_seen_ms) p->last_seen_ms = now_ms;
	if(p->state != FM_PRESENCE_ONLINE && p->state != FM_PRESENCE_SILENT){
		p->connected_at_ms = now_ms;
	}
	return set_state(p, FM_PRESENCE_ONLINE, now_ms);
}

bool fleetmq_presence_on_disconnect(struct fleetmq_presence *p, uint64_t now_ms)
{
	return set_state(p, FM_PRESENCE_OFFLINE, now_ms);
}

bool fleetmq_presence_check_silence(struct fleetmq_presence *p, uint64_t now_ms, uint64_t threshold_ms)
{
	if(p->state != FM_PRESENCE_ONLINE) return false;
	if(now_ms < p->last_seen_ms || now_ms - p->last_seen_ms < threshold_ms) return false;
	return set_state(p, FM_PRESENCE_SILENT, now_ms);
}

bool fleetmq_presence_connected(const struct fleetmq_presence *p)
{
	return p->state == FM_PRESENCE_ONLINE || p->state == FM_PRESENCE_SILENT;
}

const char *fleetmq_presence_name(enum fleetmq_presence_state s)
{
	switch(s){
		case FM_PRESENCE_ONLINE: return "online";
		case FM_PRESENCE_OFFLINE: return "offline";
		case FM_PRESENCE_SILENT: return "silent";
		default: return "unknown";
	}
}
