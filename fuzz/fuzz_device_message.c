/*
 * fuzz_device_message - device and operator requests on fleet/{id}/...
 *
 * Runs the real plugin (mosquitto_plugin_init, real SQLite store, real
 * config) behind the fake broker. The input is a sequence of up to 16
 * records, each one broker event followed by a TICK (group commit, then the
 * queued responses are published):
 *
 *   byte 0  kind (low 4 bits, see below) | 0x10 sender is the operator
 *           | 0x20 device publishes on another device's topic
 *           | 0x40 username differs from the client id | 0x80 no TICK after
 *   byte 1  bits 0-1 device, bits 2-3 job (or ACL access), bits 4-5
 *           artifact, bit 6 second session of the device
 *   byte 2-3 payload length, little endian (truncated to what is left)
 *   payload
 *
 * Kinds: 0 hello, 1 shadow/get, 2 shadow/update, 3 telemetry,
 * 4 jobs/next/get, 5 jobs/<job>/update, 6 artifacts/<name>/get,
 * 7 fleet/<id>/<payload as topic levels>, 8 DISCONNECT, 9 ACL check of
 * fleet/<id>/<payload> (access from bits 2-3 of byte 1: read, write,
 * subscribe), 10 MESSAGE on the payload as the whole topic, 11 ACL check of
 * the payload as the whole topic; 12-15 as 0-3.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "fuzz_world.h"

#define MAX_RECORDS 16
#define RESET_EVERY 2000
#define MAX_NEW_SEQ 200

static bool topic_text(const uint8_t *p, size_t n, bool allow_wildcards, char *out, size_t outlen,
		const char *head)
{
	size_t hl = strlen(head);

	if(hl + n + 1 > outlen || !fake_utf8_valid((const char *)p, n)) return false;
	memcpy(out, head, hl);
	memcpy(out + hl, p, n);
	out[hl + n] = '\0';
	if(!out[0]) return false;   /* an MQTT topic is never empty */
	if(!allow_wildcards && strpbrk(out, "+#")) return false;
	return true;
}

static void acl_check(struct mosquitto *client, const char *topic, int access)
{
	struct mosquitto_evt_acl_check ed;

	memset(&ed, 0, sizeof(ed));
	ed.client = client;
	ed.topic = topic;
	ed.access = access;
	ed.qos = 1;
	fake_broker_fire(MOSQ_EVT_ACL_CHECK, &ed);
}

static void one_record(uint8_t h0, uint8_t h1, const uint8_t *payload, size_t len)
{
	static const int access_of[4] = { MOSQ_ACL_READ, MOSQ_ACL_WRITE, MOSQ_ACL_SUBSCRIBE, MOSQ_ACL_UNSUBSCRIBE };
	unsigned kind = (h0 & 0x0f);
	unsigned dev = h1 & 3, topic_dev = dev;
	struct mosquitto *client;
	char topic[1024], head[64];

	if(kind >= 12) kind -= 12;
	if(h0 & 0x10) client = fuzz_operator_client();
	else if(h0 & 0x40) client = fuzz_impostor_client(dev);
	else client = fuzz_device_client(dev, (h1 >> 6) & 1);
	if(h0 & 0x20) topic_dev = (dev + 1) % FUZZ_N_DEVICES;
	snprintf(head, sizeof(head), "fleet/%s/", fuzz_device_ids[topic_dev]);

	switch(kind){
		case 0: snprintf(topic, sizeof(topic), "%shello", head); break;
		case 1: snprintf(topic, sizeof(topic), "%sshadow/get", head); break;
		case 2: snprintf(topic, sizeof(topic), "%sshadow/update", head); break;
		case 3: snprintf(topic, sizeof(topic), "%stelemetry", head); break;
		case 4: snprintf(topic, sizeof(topic), "%sjobs/next/get", head); break;
		case 5: snprintf(topic, sizeof(topic), "%sjobs/%s/update", head, fuzz_job_ids[(h1 >> 2) & 3]); break;
		case 6: snprintf(topic, sizeof(topic), "%sartifacts/%s/get", head, fuzz_artifact_names[(h1 >> 4) & 3]); break;
		case 7:
			if(!topic_text(payload, len, false, topic, sizeof(topic), head)) return;
			len = 0;
			break;
		case 8: {
			struct mosquitto_evt_disconnect ed;
			memset(&ed, 0, sizeof(ed));
			ed.client = client;
			fake_broker_fire(MOSQ_EVT_DISCONNECT, &ed);
			return;
		}
		case 9:
		case 11: {
			int access = access_of[(h1 >> 2) & 3];
			if(!topic_text(payload, len, access == MOSQ_ACL_SUBSCRIBE || access == MOSQ_ACL_UNSUBSCRIBE,
						topic, sizeof(topic), kind == 9 ? head : "")) return;
			acl_check(client, topic, access);
			return;
		}
		case 10:
			if(!topic_text(payload, len, false, topic, sizeof(topic), "")) return;
			len = 0;
			break;
		default:
			return;
	}
	fake_broker_message(client, topic, payload, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_reader r = { data, size };
	uint8_t h0, h1, l0, l1;
	const uint8_t *payload;
	size_t len;
	int n = 0;

	/* Device messages are answered by direct delivery here (the target
	 * session is computed from the topic and the sender); fuzz_control runs
	 * with the default, delivery to subscribers. */
	fake_broker_extra_yaml = "delivery:\n  direct: true\n";
	fuzz_world_maybe_reset(RESET_EVERY, MAX_NEW_SEQ);
	while(n++ < MAX_RECORDS && fuzz_read_u8(&r, &h0) && fuzz_read_u8(&r, &h1)){
		if(!fuzz_read_u8(&r, &l0)) l0 = 0;
		if(!fuzz_read_u8(&r, &l1)) l1 = 0;
		len = fuzz_take(&r, (size_t)l0 | ((size_t)l1 << 8), &payload);
		one_record(h0, h1, payload, len);
		if(!(h0 & 0x80)) fuzz_world_settle(1);
	}
	fake_broker_tick();
	return 0;
}
