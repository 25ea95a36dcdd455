/*
 * fuzz_shadow - the pure shadow core: a stored document and two patches.
 *
 * Input: byte 0 = options, then "<stored document>\0<desired patch>\0<reported patch>".
 *   bits 0-2  max_depth - 1 (1..8)
 *   bits 3-5  max_document_bytes = 256 << n
 *   bit 6     first patch carries the current version as expected_version
 *   bit 7     first patch carries a wrong expected_version
 * The document goes through fleetmq_shadow_load (an empty shadow if it is
 * refused), each patch through fleetmq_shadow_apply on its side, then delta,
 * metadata, state and serialize run, and the serialized text must load back
 * to the same shadow.
 *
 * Checked (all documented in shadow.h): a refused load or update leaves the
 * shadow unchanged; an accepted update increments the version by one and
 * keeps the state within max_document_bytes and max_depth; serialize output
 * always loads back and re-serializes to the same text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fleetmq_alloc.h"
#include "fleetmq_status.h"
#include "shadow.h"

#define NOW_MS 1700000000000ULL

static void fail(const char *what, const char *a, const char *b)
{
	fprintf(stderr, "fuzz_shadow: %s\n  before: %s\n  after:  %s\n", what, a ? a : "(null)", b ? b : "(null)");
	abort();
}

static char *ser(const struct fleetmq_shadow *s)
{
	char *t = fleetmq_shadow_serialize(s);
	if(!t) abort();   /* no allocation failures here: NULL is a bug */
	return t;
}

static void apply_one(struct fleetmq_shadow *s, enum fleetmq_shadow_side side, const char *text, size_t len,
		uint64_t expected, const struct fleetmq_shadow_limits *lim)
{
	cJSON *patch, *meta;
	char reason[256];
	char *before, *after, *state;
	uint64_t old_version = s->version;
	int rc;

	if(!len) return;
	patch = cJSON_ParseWithLength(text, len);
	if(!patch) return;
	before = ser(s);
	memset(reason, 'x', sizeof(reason));
	rc = fleetmq_shadow_apply(s, side, patch, expected, NOW_MS, lim, reason, sizeof(reason));
	if(!memchr(reason, '\0', sizeof(reason))) fail("reason not terminated", before, NULL);
	after = ser(s);
	if(rc != FLEETMQ_OK){
		if(strcmp(before, after)) fail("a refused update changed the shadow", before, after);
		if(rc == FLEETMQ_ERR_INTERNAL || rc == FLEETMQ_ERR_NOMEM) fail("unexpected status", before, reason);
	}else{
		if(s->version != old_version + 1) fail("version not incremented by one", before, after);
		state = fleetmq_shadow_state_json(s, 0);
		if(!state) abort();
		if(strlen(state) > lim->max_document_bytes) fail("accepted update exceeds max_document_bytes", before, state);
		fm_free(state);
		if(fleetmq_json_depth(side == FLEETMQ_SHADOW_DESIRED ? s->desired : s->reported) > lim->max_depth){
			fail("accepted update exceeds max_depth", before, after);
		}
		meta = fleetmq_shadow_patch_metadata(s, side, patch);
		if(!meta && cJSON_IsObject(patch)) fail("no patch metadata for an object patch", before, after);
		cJSON_Delete(meta);
	}
	fm_free(before);
	fm_free(after);
	cJSON_Delete(patch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fleetmq_shadow s, s2;
	struct fleetmq_shadow_limits lim;
	const char *p, *end, *parts[3];
	size_t lens[3];
	char *text, *text2, *before, *after, *str;
	cJSON *delta, *dmeta;
	uint8_t opt;
	int i, rc;

	if(size < 1) return 0;
	opt = data[0];
	lim.max_depth = (opt & 7) + 1;
	lim.max_document_bytes = (size_t)256 << ((opt >> 3) & 7);
	p = (const char *)data + 1;
	end = (const char *)data + size;
	for(i = 0; i < 3; i++){
		const char *z = p < end ? memchr(p, '\0', (size_t)(end - p)) : NULL;
		parts[i] = p;
		lens[i] = z ? (size_t)(z - p) : (size_t)(end - p);
		p = z ? z + 1 : end;
	}

	if(fleetmq_shadow_init(&s) != FLEETMQ_OK) abort();
	before = ser(&s);
	rc = fleetmq_shadow_load(&s, parts[0], lens[0]);
	if(rc != FLEETMQ_OK){
		after = ser(&s);
		if(strcmp(before, after)) fail("a refused load changed the shadow", before, after);
		fm_free(after);
	}
	fm_free(before);

	apply_one(&s, FLEETMQ_SHADOW_DESIRED, parts[1], lens[1],
			(opt & 0x40) ? s.version : (opt & 0x80) ? s.version + 1 : 0, &lim);
	apply_one(&s, FLEETMQ_SHADOW_REPORTED, parts[2], lens[2], 0, &lim);

	delta = fleetmq_shadow_delta(&s);
	dmeta = fleetmq_shadow_delta_metadata(&s, delta);
	if(delta && !dmeta) fail("delta without metadata", NULL, NULL);
	cJSON_Delete(dmeta);
	cJSON_Delete(delta);
	str = fleetmq_shadow_state_json(&s, 1);
	if(!str) abort();
	fm_free(str);
	str = fleetmq_shadow_metadata_json(&s);
	if(!str) abort();
	fm_free(str);

	/* Round trip: what we store must load back, identically. */
	text = ser(&s);
	if(fleetmq_shadow_init(&s2) != FLEETMQ_OK) abort();
	if(fleetmq_shadow_load(&s2, text, strlen(text)) != FLEETMQ_OK) fail("serialized shadow does not load back", text, NULL);
	text2 = ser(&s2);
	if(strcmp(text, text2)) fail("serialize/load/serialize is not stable", text, text2);
	fm_free(text);
	fm_free(text2);
	fleetmq_shadow_clear(&s2);
	fleetmq_shadow_clear(&s);
	return 0;
}
