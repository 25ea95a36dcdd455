/*
 * fleetmq_alloc.h - the single allocation wrapper of a fleetmq binary.
 *
 * Shared code allocates only through fm_malloc/fm_calloc/fm_realloc/
 * fm_strdup/fm_free. They default to libc; the broker plugin points them at
 * mosquitto_malloc & co. at init (so Mosquitto's memory accounting and
 * memory_limit see the plugin), and tests can inject failures.
 * fleetmq_alloc_set() also installs the same functions as cJSON's hooks.
 */
#ifndef FLEETMQ_ALLOC_H
#define FLEETMQ_ALLOC_H

#include <stddef.h>

struct fleetmq_allocator {
	void *(*malloc_fn)(size_t size);
	void *(*calloc_fn)(size_t nmemb, size_t size);
	void *(*realloc_fn)(void *ptr, size_t size);
	void (*free_fn)(void *ptr);
};

/* Install an allocator; NULL restores libc. Call before any allocation. */
void fleetmq_alloc_set(const struct fleetmq_allocator *a);

void *fm_malloc(size_t size);
void *fm_calloc(size_t nmemb, size_t size);
void *fm_realloc(void *ptr, size_t size);
char *fm_strdup(const char *s);
char *fm_strndup(const char *s, size_t n);
void fm_free(void *ptr);

#endif
