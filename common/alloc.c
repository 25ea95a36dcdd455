/*
 * alloc.c - allocation indirection (see fleetmq_alloc.h).
 */
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "fleetmq_alloc.h"

static struct fleetmq_allocator current = { malloc, calloc, realloc, free };

void fleetmq_alloc_set(const struct fleetmq_allocator *a)
{
	cJSON_Hooks hooks;

	if(a){
		current = *a;
	}else{
		current.malloc_fn = malloc;
		current.calloc_fn = calloc;
		current.realloc_fn = realloc;
		current.free_fn = free;
	}
	hooks.malloc_fn = current.malloc_fn;
	hooks.free_fn = current.free_fn;
	cJSON_InitHooks(&hooks);
}

void *fm_malloc(size_t size) { return current.malloc_fn(size); }
void *fm_calloc(size_t nmemb, size_t size) { return current.calloc_fn(nmemb, size); }
void *fm_realloc(void *ptr, size_t size) { return current.realloc_fn(ptr, size); }
void fm_free(void *ptr) { if(ptr) current.free_fn(ptr); }

char *fm_strndup(const char *s, size_t n)
{
	char *r;
	size_t len;

	if(!s) return NULL;
	len = strnlen(s, n);
	r = current.malloc_fn(len + 1);
	if(r){
		memcpy(r, s, len);
		r[len] = '\0';
	}
	return r;
}

char *fm_strdup(const char *s)
{
	return s ? fm_strndup(s, strlen(s)) : NULL;
}
