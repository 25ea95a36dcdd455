/*
 * fuzz_world.c - see fuzz_world.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_plugin.h"
#include "fuzz_world.h"

const char *const fuzz_device_ids[FUZZ_N_DEVICES] = { "dev-0", "dev-1", "dev-2", "dev-3" };
const char *const fuzz_job_ids[4] = { "upd-1", "cfg-1", "feat-1", "nope" };
const char *const fuzz_artifact_names[4] = { "fw.bin", "tiny", "missing", ".hidden" };

static struct mosquitto devices[FUZZ_N_DEVICES][2];
static struct mosquitto impostors[FUZZ_N_DEVICES];
static struct mosquitto operator_client, anonymous_client;
static bool clients_ready;
static unsigned runs;
static uint64_t seq_after_build;

static void clients_init(void)
{
	char name[64];
	unsigned i;

	if(clients_ready) return;
	for(i = 0; i < FUZZ_N_DEVICES; i++){
		fake_client_set(&devices[i][0], fuzz_device_ids[i], fuzz_device_ids[i]);
		fake_client_set(&devices[i][1], fuzz_device_ids[i], fuzz_device_ids[i]);
		snprintf(name, sizeof(name), "not-%s", fuzz_device_ids[i]);
		fake_client_set(&impostors[i], fuzz_device_ids[i], name);
	}
	fake_client_set(&operator_client, "ops-console", "ops");
	fake_client_set(&anonymous_client, "anon", NULL);
	clients_ready = true;
}

struct mosquitto *fuzz_device_client(unsigned idx, unsigned session)
{
	clients_init();
	return &devices[idx % FUZZ_N_DEVICES][session & 1];
}

struct mosquitto *fuzz_operator_client(void)
{
	clients_init();
	return &operator_client;
}

struct mosquitto *fuzz_impostor_client(unsigned idx)
{
	clients_init();
	return &impostors[idx % FUZZ_N_DEVICES];
}

struct mosquitto *fuzz_anonymous_client(void)
{
	clients_init();
	return &anonymous_client;
}

void fuzz_world_control_json(const char *json)
{
	fake_broker_control(fuzz_operator_client(), "$CONTROL/fleetmq/v1", json, strlen(json), NULL);
}

void fuzz_world_settle(int ticks)
{
	struct fleetmq_plugin *pl = fake_broker_plugin();
	int i;

	for(i = 0; i < ticks; i++){
		/* As if the check intervals had passed: run the periodic work now
		 * rather than sleeping for it. */
		pl->next_job_check_ms = 0;
		pl->next_silence_check_ms = 0;
		fake_broker_tick();
	}
}

static void hello(unsigned idx)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	char topic[64];
	uint8_t buf[256];
	size_t len;

	h.agent_version = (char *)"1.0.0";
	h.device_type = (char *)"sensor";
	h.hw_revision = (char *)"B";
	len = fleetmq__v1__hello__get_packed_size(&h);
	if(len > sizeof(buf)) abort();
	fleetmq__v1__hello__pack(&h, buf);
	snprintf(topic, sizeof(topic), "fleet/%s/hello", fuzz_device_ids[idx]);
	fake_broker_message(fuzz_device_client(idx, 0), topic, buf, len);
}

static void world_build(void)
{
	unsigned i;

	fuzz_world_control_json("{\"commands\":["
			"{\"command\":\"setDeviceAttributes\",\"deviceId\":\"dev-0\",\"groups\":[\"canary\",\"fleet-a\"],\"attributes\":{\"region\":\"eu\"}},"
			"{\"command\":\"setDeviceAttributes\",\"deviceId\":\"dev-1\",\"groups\":[\"fleet-a\"]},"
			"{\"command\":\"setDeviceAttributes\",\"deviceId\":\"dev-2\",\"attributes\":{\"region\":\"us\"}},"
			"{\"command\":\"createJob\",\"jobId\":\"upd-1\",\"type\":\"update\","
			"\"document\":{\"artifact\":\"fw.bin\",\"version\":\"2.0\"},"
			"\"targets\":{\"devices\":[\"dev-0\",\"dev-1\",\"dev-2\",\"dev-3\"]},"
			"\"timeoutMs\":60000,\"retry\":{\"failed\":2,\"timedOut\":1,\"backoffMs\":0}},"
			"{\"command\":\"createJob\",\"jobId\":\"cfg-1\",\"type\":\"config\",\"continuous\":true,"
			"\"document\":{\"set\":{\"mode\":\"eco\"},\"unset\":[\"old\"]},"
			"\"targets\":{\"all\":true},"
			"\"rollout\":{\"maxPerMinute\":100000,\"canary\":{\"group\":\"canary\"}}},"
			"{\"command\":\"createJob\",\"jobId\":\"feat-1\",\"type\":\"feature\","
			"\"document\":{\"enable\":[\"x\"],\"disable\":[\"y\"]},"
			"\"targets\":{\"groups\":[\"fleet-a\"],\"match\":{\"deviceType\":\"sensor\"}},"
			"\"abort\":[{\"failureType\":\"FAILED\",\"thresholdPercent\":50,\"minExecuted\":1}]}"
			"]}");
	for(i = 0; i < FUZZ_N_DEVICES; i++) hello(i);
	fuzz_world_settle(4);
	seq_after_build = ((struct fleetmq_plugin *)fake_broker_plugin())->next_seq;
}

void fuzz_world_maybe_reset(unsigned every, unsigned max_new_seq)
{
	struct fleetmq_plugin *pl;

	if(runs++ == 0){
		fake_broker_start();
		world_build();
		return;
	}
	pl = fake_broker_plugin();
	if((every && runs % every == 0) || (max_new_seq && pl->next_seq > seq_after_build + max_new_seq)){
		fake_broker_reset();
		world_build();
	}
}

int fuzz_read_u8(struct fuzz_reader *r, uint8_t *out)
{
	if(!r->left) return 0;
	*out = *r->p++;
	r->left--;
	return 1;
}

size_t fuzz_take(struct fuzz_reader *r, size_t n, const uint8_t **out)
{
	if(n > r->left) n = r->left;
	*out = r->p;
	r->p += n;
	r->left -= n;
	return n;
}
