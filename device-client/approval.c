/*
 * approval.c - the application's decision on a held update (see
 * fleetmq_client_update_decide() in fleetmq_client.h).
 *
 * Writes "<approve|reject> <job-id>\n" to <state_dir>/update-approval, the
 * file fleetmq-agent reads while an update waits under the "ask" policy.
 */
#include <stdio.h>
#include <string.h>

#include "client_internal.h"
#include "fleetmq_client.h"

#define APPROVAL_FILE "update-approval"

int fleetmq_client_update_decide(const char *state_dir, const char *job_id, bool approve)
{
	char line[160];
	size_t len, i;
	int n;

	if(!state_dir || !state_dir[0] || !job_id || !job_id[0]) return FLEETMQ_CLIENT_ERR_INVALID;
	len = strlen(job_id);
	if(len > 128) return FLEETMQ_CLIENT_ERR_INVALID;
	for(i = 0; i < len; i++){
		if(job_id[i] == ' ' || job_id[i] == '\t' || job_id[i] == '\n' || job_id[i] == '\r') return FLEETMQ_CLIENT_ERR_INVALID;
	}
	n = snprintf(line, sizeof(line), "%s %s\n", approve ? "approve" : "reject", job_id);
	if(n <= 0 || (size_t)n >= sizeof(line)) return FLEETMQ_CLIENT_ERR_INVALID;
	return statefile__write_atomic(state_dir, APPROVAL_FILE, line, (size_t)n);
}
