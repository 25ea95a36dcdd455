/*
 * fake_broker.h - the few Mosquitto broker functions the plugin calls, for
 * running the real plugin in-process under libFuzzer.
 *
 * A fuzzing shim, not a test mock: it records what the plugin registers and
 * publishes only so the targets can drive the real callbacks (MESSAGE,
 * CONTROL, TICK, ACL_CHECK, DISCONNECT) and keep state bounded. Every
 * payload handed to mosquitto_broker_publish() is read in full and freed, so
 * AddressSanitizer sees a wrong length or a double ownership at once.
 *
 * The plugin runs on a real SQLite store in a temporary directory created
 * once per process (fake_broker_start) and recreated by fake_broker_reset.
 */
#ifndef FLEETMQ_FAKE_BROKER_H
#define FLEETMQ_FAKE_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mosquitto_broker.h>

/* A connected client as the broker sees it. Only the plugin's accessors
 * (mosquitto_client_id/username) look inside. */
struct mosquitto {
	char id[160];
	char username[160];
	bool has_username;
};

/* Counters of what the plugin did, for sanity checks and stats. */
struct fake_broker_stats {
	uint64_t published;          /* mosquitto_broker_publish calls */
	uint64_t published_bytes;
	uint64_t logs;               /* mosquitto_log_printf calls */
	uint64_t resets;
};
extern struct fake_broker_stats fake_stats;

/* Extra YAML appended to the generated config (NULL = none); set before
 * fake_broker_start. */
extern const char *fake_broker_extra_yaml;

/* Create the temp dir, write fleetmq.yaml (store there, synchronous normal,
 * operator_usernames [ops], artifacts dir with a small file "fw.bin") and run
 * mosquitto_plugin_init. Aborts on failure. Idempotent. */
void fake_broker_start(void);
/* mosquitto_plugin_cleanup, delete the database, init again. */
void fake_broker_reset(void);
/* Plugin userdata (struct fleetmq_plugin *). */
void *fake_broker_plugin(void);

/* Fire an event at the callbacks the plugin registered for it (CONTROL only
 * at the one registered for evt->topic). Returns the callback's result, or
 * -1 if none is registered. */
int fake_broker_fire(int event, void *event_data);
/* A broker loop pass: MOSQ_EVT_TICK. */
void fake_broker_tick(void);

/* Fill a client: id, username (NULL = none). */
void fake_client_set(struct mosquitto *c, const char *id, const char *username);

/* Helpers to send one message / control request through the real callbacks.
 * The payload is copied into a heap buffer of exactly len bytes. */
void fake_broker_message(struct mosquitto *client, const char *topic, const void *payload, size_t len);
/* props: a property list built with mosquitto_property_add_* (not freed). */
void fake_broker_control(struct mosquitto *client, const char *topic, const void *payload, size_t len,
		const void *props);

/* Minimal property list support (the real ones live in libmosquitto). */
int fake_property_add_string(void **proplist, int identifier, const char *value);

/* True if s[0..len) is valid UTF-8 without U+0000 (what MQTT requires of
 * strings and topics). */
bool fake_utf8_valid(const char *s, size_t len);

#endif
