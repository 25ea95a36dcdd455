/*
 * fuzz_control - the operator API: $CONTROL/fleetmq/v1 (JSON commands) and
 * $CONTROL/fleetmq/v1/jobs/create (protobuf CreateJobRequest).
 *
 * Real plugin behind the fake broker (see fuzz_device_message.c). The input
 * is a sequence of up to 8 records, each one CONTROL event followed by
 * TICKs (job fan-out, release, cancellation, completion run there):
 *
 *   byte 0  0x01 protobuf topic (else JSON) | 0x02 sender is the operator
 *           | 0x04 MQTT v5 response topic follows | 0x08 correlation data
 *           follows | 0x10 non-operator without username | 0x20 the
 *           devices say hello and ask for their next job afterwards
 *           | 0x40 three TICKs instead of one (lets rollouts release)
 *   [response topic: 1 length byte + bytes, used when valid UTF-8]
 * What a non-operator's request queues may go only to
 * $CONTROL/fleetmq/v1/response or to a topic outside the fleet prefix that
 * does not start with '$' (the plugin publishes past the ACL).
 *   [correlation data: 1 length byte + bytes]
 *   2 bytes payload length, little endian (truncated to what is left)
 *   payload
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "fleetmq.pb-c.h"
#include "fleetmq_plugin.h"
#include "fuzz_world.h"

#define MAX_RECORDS 8
#define RESET_EVERY 1000
#define MAX_NEW_SEQ 64

static void check_non_operator_output(void)
{
	struct fleetmq_plugin *pl = fake_broker_plugin();
	const struct fleetmq_outmsg *m;

	for(m = pl->out_head; m; m = m->next){
		if(!strcmp(m->topic, FLEETMQ_CONTROL_RESPONSE_TOPIC)) continue;
		if(m->topic[0] == '$' || !strncmp(m->topic, "fleet/", 6) || !strcmp(m->topic, "fleet")){
			fprintf(stderr, "fuzz_control: a non-operator request made the plugin publish to '%s'\n", m->topic);
			abort();
		}
	}
}

static void devices_catch_up(void)
{
	Fleetmq__V1__Hello h = FLEETMQ__V1__HELLO__INIT;
	uint8_t buf[64];
	char topic[64];
	size_t len;
	unsigned i;

	h.agent_version = (char *)"1.0.0";
	h.device_type = (char *)"sensor";
	h.shadow_version = 1;
	h.execution_in_progress = (char *)"upd-1";
	len = fleetmq__v1__hello__pack(&h, buf);
	for(i = 0; i < FUZZ_N_DEVICES; i++){
		snprintf(topic, sizeof(topic), "fleet/%s/hello", fuzz_device_ids[i]);
		fake_broker_message(fuzz_device_client(i, 0), topic, buf, len);
		snprintf(topic, sizeof(topic), "fleet/%s/jobs/next/get", fuzz_device_ids[i]);
		fake_broker_message(fuzz_device_client(i, 0), topic, "", 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_reader r = { data, size };
	uint8_t flags, n8, l0, l1;
	const uint8_t *p, *payload;
	size_t len;
	int n = 0;

	fuzz_world_maybe_reset(RESET_EVERY, MAX_NEW_SEQ);
	while(n++ < MAX_RECORDS && fuzz_read_u8(&r, &flags)){
		void *props = NULL;
		struct mosquitto *client;
		char rt[256];

		if(flags & 0x04){
			if(!fuzz_read_u8(&r, &n8)) n8 = 0;
			len = fuzz_take(&r, n8, &p);
			/* The broker only accepts UTF-8 strings without U+0000. */
			if(fake_utf8_valid((const char *)p, len)){
				memcpy(rt, p, len);
				rt[len] = '\0';
				fake_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, rt);
			}
		}
		if(flags & 0x08){
			if(!fuzz_read_u8(&r, &n8)) n8 = 0;
			len = fuzz_take(&r, n8, &p);
			mosquitto_property_add_binary((mosquitto_property **)&props, MQTT_PROP_CORRELATION_DATA, p, (uint16_t)len);
		}
		if(!fuzz_read_u8(&r, &l0)) l0 = 0;
		if(!fuzz_read_u8(&r, &l1)) l1 = 0;
		len = fuzz_take(&r, (size_t)l0 | ((size_t)l1 << 8), &payload);

		if(flags & 0x02) client = fuzz_operator_client();
		else if(flags & 0x10) client = fuzz_anonymous_client();
		else client = fuzz_device_client(0, 0);
		fake_broker_control(client, (flags & 0x01) ? "$CONTROL/fleetmq/v1/jobs/create" : "$CONTROL/fleetmq/v1",
				payload, len, props);
		mosquitto_property_free_all((mosquitto_property **)&props);
		if(!(flags & 0x02)) check_non_operator_output();
		fake_broker_tick();
		if(flags & 0x20){
			devices_catch_up();
			fake_broker_tick();
		}
		if(flags & 0x40) fuzz_world_settle(3);
	}
	return 0;
}
