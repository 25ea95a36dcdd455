/*
 * acl.c - device isolation (see acl.h).
 *
 * Runs on every publish, delivery and subscription that touches the fleet
 * prefix, so it must stay allocation-free and O(topic length).
 */
#include <string.h>

#include "acl.h"
#include "topic.h"

const char *fleetmq_acl_device_identity(const struct fleetmq_acl_subject *who)
{
	if(!who || !who->client_id || !who->client_id[0]) return NULL;
	if(who->require_username_match){
		if(!who->username || strcmp(who->username, who->client_id)) return NULL;
	}
	return who->client_id;
}

/* For subscriptions: the filter's second level, or NULL if the filter does
 * not start with "<prefix>/". Wildcards are returned as they are. */
static bool filter_device_level(const char *prefix, const char *filter, const char **lvl, size_t *len)
{
	size_t plen = strlen(prefix);
	const char *s, *e;

	if(strncmp(filter, prefix, plen) != 0) return false;
	if(filter[plen] == '\0'){
		*lvl = ""; *len = 0;
		return true;
	}
	if(filter[plen] != '/') return false;
	s = filter + plen + 1;
	e = strchr(s, '/');
	*lvl = s;
	*len = e ? (size_t)(e - s) : strlen(s);
	return true;
}

enum fleetmq_acl_result fleetmq_acl_check(const char *prefix, const struct fleetmq_acl_subject *who,
		const char *topic, int access, const char **reason)
{
	struct fleetmq_topic t;
	const char *self, *lvl;
	size_t len;
	const char *dummy;

	if(!reason) reason = &dummy;
	*reason = NULL;
	if(!prefix || !who || !topic) return FM_ACL_DEFER;

	/* The operator API: anyone may send a request (the CONTROL handler checks
	 * the role and answers a clear FORBIDDEN), only operators read replies. */
	if(!strncmp(topic, FLEETMQ_ACL_CONTROL, sizeof(FLEETMQ_ACL_CONTROL) - 1)
			&& (topic[sizeof(FLEETMQ_ACL_CONTROL) - 1] == '\0' || topic[sizeof(FLEETMQ_ACL_CONTROL) - 1] == '/')){
		if(access == FM_ACCESS_WRITE || access == FM_ACCESS_UNSUBSCRIBE || who->is_operator) return FM_ACL_ALLOW;
		*reason = "operator API replies are for operators";
		return FM_ACL_DENY;
	}

	if(access == FM_ACCESS_UNSUBSCRIBE){
		/* Dropping a subscription is always harmless inside our prefix. */
		return filter_device_level(prefix, topic, &lvl, &len) ? FM_ACL_ALLOW : FM_ACL_DEFER;
	}

	if(access == FM_ACCESS_SUBSCRIBE){
		if(!filter_device_level(prefix, topic, &lvl, &len)) return FM_ACL_DEFER; /* includes '#', '+/...' */
		if(who->is_operator) return FM_ACL_ALLOW;
		self = fleetmq_acl_device_identity(who);
		if(!self){
			*reason = "client id and username differ: no fleet identity";
			return FM_ACL_DENY;
		}
		if(len != strlen(self) || strncmp(lvl, self, len)){
			*reason = "devices may subscribe only inside their own subtree";
			return FM_ACL_DENY;
		}
		return FM_ACL_ALLOW;
	}

	fleetmq_topic_parse(prefix, topic, &t);
	if(t.kind == FM_TOPIC_OUTSIDE) return FM_ACL_DEFER;

	if(who->is_operator){
		if(access == FM_ACCESS_WRITE && (t.kind == FM_TOPIC_OUTPUT || t.kind == FM_TOPIC_INVALID)){
			*reason = t.kind == FM_TOPIC_OUTPUT ? "only the plugin publishes response topics" : "no device id in topic";
			return FM_ACL_DENY;
		}
		return FM_ACL_ALLOW;
	}

	self = fleetmq_acl_device_identity(who);
	if(!self){
		*reason = "client id and username differ: no fleet identity";
		return FM_ACL_DENY;
	}
	if(t.kind == FM_TOPIC_INVALID || strcmp(t.device_id, self)){
		*reason = "topic belongs to another device";
		return FM_ACL_DENY;
	}
	if(access == FM_ACCESS_WRITE && t.kind == FM_TOPIC_OUTPUT){
		*reason = "only the plugin publishes response topics";
		return FM_ACL_DENY;
	}
	return FM_ACL_ALLOW;
}
