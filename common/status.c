/*
 * status.c - names for enum fleetmq_status.
 */
#include "fleetmq_status.h"

const char *fleetmq_strerror(int status)
{
	switch(status){
		case FLEETMQ_OK: return "success";
		case FLEETMQ_ERR_BAD_REQUEST: return "bad request";
		case FLEETMQ_ERR_MALFORMED: return "malformed message";
		case FLEETMQ_ERR_FORBIDDEN: return "forbidden";
		case FLEETMQ_ERR_NOT_FOUND: return "not found";
		case FLEETMQ_ERR_VERSION_CONFLICT: return "version conflict";
		case FLEETMQ_ERR_TOO_LARGE: return "too large";
		case FLEETMQ_ERR_TOO_DEEP: return "nested too deeply";
		case FLEETMQ_ERR_WRONG_TYPE: return "wrong type";
		case FLEETMQ_ERR_UNKNOWN_TOPIC: return "unknown topic";
		case FLEETMQ_ERR_INTERNAL: return "internal error";
		case FLEETMQ_ERR_UNAVAILABLE: return "unavailable";
		case FLEETMQ_ERR_NOMEM: return "out of memory";
		case FLEETMQ_ERR_IO: return "I/O error";
		case FLEETMQ_ERR_CONFIG: return "configuration error";
		default: return "unknown status";
	}
}
