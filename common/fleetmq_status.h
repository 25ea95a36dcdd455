/*
 * fleetmq_status.h - the one status enum shared by every fleetmq component.
 *
 * 0 is success. The numeric values equal fleetmq.v1.ErrorCode on the wire
 * (proto/fleetmq.proto), so a status can be sent to a device unchanged.
 * Translation to MOSQ_ERR_* happens only at the Mosquitto plugin edge.
 */
#ifndef FLEETMQ_STATUS_H
#define FLEETMQ_STATUS_H

enum fleetmq_status {
	FLEETMQ_OK = 0,
	FLEETMQ_ERR_BAD_REQUEST = 1,
	FLEETMQ_ERR_MALFORMED = 2,
	FLEETMQ_ERR_FORBIDDEN = 3,
	FLEETMQ_ERR_NOT_FOUND = 4,
	FLEETMQ_ERR_VERSION_CONFLICT = 5,
	FLEETMQ_ERR_TOO_LARGE = 6,
	FLEETMQ_ERR_TOO_DEEP = 7,
	FLEETMQ_ERR_WRONG_TYPE = 8,
	FLEETMQ_ERR_UNKNOWN_TOPIC = 9,
	FLEETMQ_ERR_INTERNAL = 10,
	FLEETMQ_ERR_UNAVAILABLE = 11,
	/* Local-only statuses (never sent on the wire) start at 100. */
	FLEETMQ_ERR_NOMEM = 100,
	FLEETMQ_ERR_IO = 101,
	FLEETMQ_ERR_CONFIG = 102,
};

/* Short, stable, human-readable name of a status ("version conflict").
 * Returns a static string; never NULL. */
const char *fleetmq_strerror(int status);

#endif
