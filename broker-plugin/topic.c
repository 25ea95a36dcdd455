/*
 * topic.c - topic classification for the fleet prefix.
 *
 * Owns nothing; pure string work on caller buffers. Must never allocate:
 * it runs on every ACL check of every fleet message.
 */
#include <stdio.h>
#include <string.h>

#include "topic.h"

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. The second byte's allowed range depends on the lead byte;
 * later continuation bytes are always 0x80..0xBF. */
bool fleetmq_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n, k;
	unsigned char lo, hi;

	while(i < len){
		unsigned char c = p[i];
		if(c < 0x80){
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xbf;
		if(c >= 0xc2 && c <= 0xdf) n = 1;
		else if(c == 0xe0){ n = 2; lo = 0xa0; }
		else if(c == 0xed){ n = 2; hi = 0x9f; }
		else if(c >= 0xe1 && c <= 0xef) n = 2;
		else if(c == 0xf0){ n = 3; lo = 0x90; }
		else if(c == 0xf4){ n = 3; hi = 0x8f; }
		else if(c >= 0xf1 && c <= 0xf3) n = 3;
		else return false;
		if(len - i <= n) return false;
		if(p[i + 1] < lo || p[i + 1] > hi) return false;
		for(k = 2; k <= n; k++){
			if(p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
		}
		i += n + 1;
	}
	return true;
}

bool fleetmq_id_valid(const char *id, size_t len)
{
	size_t i;

	if(!id || len == 0 || len > FLEETMQ_MAX_ID_BYTES) return false;
	for(i = 0; i < len; i++){
		unsigned char c = (unsigned char)id[i];
		if(c == '/' || c == '+' || c == '#' || c < 0x20 || c == 0x7f) return false;
	}
	/* ids become topic levels, which MQTT requires to be UTF-8 */
	return fleetmq_utf8_valid(id, len);
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
