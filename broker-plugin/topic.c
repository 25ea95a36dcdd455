/*
 * topic.c - topic classification for the fleet prefix.
 *
 * Owns nothing; pure string work on caller buffers. Must never allocate:
 * it runs on every ACL check of every fleet message.
 */
#include <stdio.h>
#include <string.h>

#include "topic.h"

bool fleetmq_id_valid(const char *id, size_t len)
{
	size_t i;

	if(!id || len == 0 || len > FLEETMQ_MAX_ID_BYTES) return false;
	for(i = 0; i < len; i++){
		unsigned char c = (unsigned char)id[i];
		if(c == '/' || c == '+' || c == '#' || c < 0x20 || c == 0x7f) return false;
	}
	return true;
}

/* Copy segment [s, s+len) into dst (FLEETMQ_MAX_ID_BYTES+1) if it is a valid id. */
static bool copy_id(char *dst, const char *s, size_t len)
{
	if(!fleetmq_id_valid(s, len)) return false;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return true;
}

static bool ends_with_output_word(const char *rest)
{
	const char *last = strrchr(rest, '/');
	last = last ? last + 1 : rest;
	return !strcmp(last, "accepted") || !strcmp(last, "rejected") || !strcmp(last, "delta")
		|| !strcmp(last, "data") || !strcmp(last, "notify");
}

void fleetmq_topic_parse(const char *prefix, const char *topic, struct fleetmq_topic *out)
{
	size_t plen;
	const char *id, *slash, *rest, *mid;

	memset(out, 0, sizeof(*out));
	out->kind = FM_TOPIC_OUTSIDE;
	if(!prefix || !topic) return;

	plen = strlen(prefix);
	if(strncmp(topic, prefix, plen) != 0 || (topic[plen] != '/' && topic[plen] != '\0')){
		return;
	}
	out->kind = FM_TOPIC_INVALID;
	if(topic[plen] == '\0') return;

	id = topic + plen + 1;
	slash = strchr(id, '/');
	if(!slash || !copy_id(out->device_id, id, (size_t)(slash - id))){
		return;
	}
	rest = slash + 1;

	if(!strcmp(rest, "presence") || ends_with_output_word(rest)){
		out->kind = FM_TOPIC_OUTPUT;
	}else if(!strcmp(rest, "hello")){
		out->kind = FM_TOPIC_HELLO;
	}else if(!strcmp(rest, "shadow/get")){
		out->kind = FM_TOPIC_SHADOW_GET;
	}else if(!strcmp(rest, "shadow/update")){
		out->kind = FM_TOPIC_SHADOW_UPDATE;
	}else if(!strcmp(rest, "telemetry")){
		out->kind = FM_TOPIC_TELEMETRY;
	}else if(!strcmp(rest, "jobs/next/get")){
		out->kind = FM_TOPIC_JOBS_NEXT_GET;
	}else if(!strncmp(rest, "jobs/", 5) && (mid = strchr(rest + 5, '/')) && !strcmp(mid, "/update")
			&& copy_id(out->sub_id, rest + 5, (size_t)(mid - (rest + 5)))){
		out->kind = FM_TOPIC_JOB_UPDATE;
	}else if(!strncmp(rest, "artifacts/", 10) && (mid = strchr(rest + 10, '/')) && !strcmp(mid, "/get")
			&& copy_id(out->sub_id, rest + 10, (size_t)(mid - (rest + 10)))){
		out->kind = FM_TOPIC_ARTIFACT_GET;
	}else{
		out->kind = FM_TOPIC_UNKNOWN;
	}
}

bool fleetmq_topic_build(char *buf, size_t buflen, const char *prefix, const char *id, const char *suffix)
{
	int n = snprintf(buf, buflen, "%s/%s/%s", prefix, id, suffix);
	return n > 0 && (size_t)n < buflen;
}
