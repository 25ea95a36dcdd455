/*
 * acl.h - device isolation decisions (pure core).
 *
 * The plugin answers ACL checks only for topics under the fleet prefix and
 * defers everything else, so it composes with password_file, acl_file or
 * dynamic-security. Under the prefix:
 *   - operators may read and subscribe to everything, and publish any
 *     request topic, but never plugin output topics;
 *   - a device (client id == username, unless require_username_match is
 *     off) may read/subscribe only inside <prefix>/<own id>/ and publish
 *     only non-output topics there;
 *   - anyone else is denied;
 *   - unsubscribing inside the prefix is always allowed.
 * DEFER means "not ours": the adapter either defers to the next mechanism
 * (password_file/acl_file, dynamic-security) or, with
 * security.other_topics = allow, grants it (Mosquitto 2.0 denies what every
 * mechanism defers, so a broker whose only ACL is fleetmq needs "allow" for
 * non-fleet topics to work at all).
 */
#ifndef FLEETMQ_ACL_H
#define FLEETMQ_ACL_H

#include <stdbool.h>

/* Operator API topic tree: requests from anyone (the handler checks the
 * role), replies readable by operators only. */
#define FLEETMQ_ACL_CONTROL "$CONTROL/fleetmq/v1"

enum fleetmq_acl_result {
	FM_ACL_DEFER = 0,
	FM_ACL_ALLOW = 1,
	FM_ACL_DENY = 2,
};

/* Same values as MOSQ_ACL_* */
enum fleetmq_acl_access {
	FM_ACCESS_READ = 1,
	FM_ACCESS_WRITE = 2,
	FM_ACCESS_SUBSCRIBE = 4,
	FM_ACCESS_UNSUBSCRIBE = 8,
};

struct fleetmq_acl_subject {
	const char *client_id;     /* may be NULL */
	const char *username;      /* may be NULL */
	bool is_operator;
	bool require_username_match;
};

/* Decide access of subject to topic (a topic filter for SUBSCRIBE). If
 * reason is non-NULL it receives a static string explaining a DENY. */
enum fleetmq_acl_result fleetmq_acl_check(const char *prefix, const struct fleetmq_acl_subject *who,
		const char *topic, int access, const char **reason);

/* The identity a client acts as for fleet topics, or NULL if it has none
 * (no client id, or username mismatch under require_username_match). */
const char *fleetmq_acl_device_identity(const struct fleetmq_acl_subject *who);

#endif
