/*
 * fuzz_world.h - the small, fixed fleet the plugin targets run against.
 *
 * Four devices (dev-0..dev-3, client id == username), one operator
 * (username "ops"), three jobs created through the real operator API (an
 * update job for fw.bin, a continuous config job with a canary group, a
 * feature job with an abort criterion) and a served artifact. Inputs pick
 * devices, jobs and artifacts from these small sets, so the database stays
 * small; fuzz_world_maybe_reset() rebuilds everything every N inputs.
 */
#ifndef FLEETMQ_FUZZ_WORLD_H
#define FLEETMQ_FUZZ_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "fake_broker.h"

#define FUZZ_N_DEVICES 4
extern const char *const fuzz_device_ids[FUZZ_N_DEVICES];
extern const char *const fuzz_job_ids[4];        /* three real ones, one unknown */
extern const char *const fuzz_artifact_names[4]; /* fw.bin, tiny, missing, .hidden */

/* Client structs: devices (one per device and session variant), the
 * operator, a device whose username differs from its id, and an anonymous
 * client. */
struct mosquitto *fuzz_device_client(unsigned idx, unsigned session);
struct mosquitto *fuzz_operator_client(void);
struct mosquitto *fuzz_impostor_client(unsigned idx);
struct mosquitto *fuzz_anonymous_client(void);

/* Start the broker and build the world once; afterwards reset and rebuild
 * it every `every` calls, or as soon as more than max_new_seq jobs and
 * executions were created since the last build (0 = no such limit), so the
 * work per input stays bounded. Call at the start of each input. */
void fuzz_world_maybe_reset(unsigned every, unsigned max_new_seq);

/* Send JSON to the operator API as the operator (used by the world setup
 * and by seeds). */
void fuzz_world_control_json(const char *json);

/* A few TICKs, each as if jobs.check_interval_ms and
 * presence.check_interval_ms had passed, so fan-out, release, timeouts,
 * retries and silence checks run. */
void fuzz_world_settle(int ticks);

/* Little-endian u16 reader over the input. */
struct fuzz_reader {
	const uint8_t *p;
	size_t left;
};
int fuzz_read_u8(struct fuzz_reader *r, uint8_t *out);
/* Take up to n bytes (fewer if the input ends); returns the count. */
size_t fuzz_take(struct fuzz_reader *r, size_t n, const uint8_t **out);

#endif
