/*
 * fuzz_config - fleetmq.yaml through fleetmq_cfg_load_buffer() with the
 * plugin's real configuration table.
 *
 * Checks beyond "no crash, no leak, no UB":
 *   - on error the message is NUL-terminated and the target holds no
 *     allocation (every STRING NULL, every STRLIST empty), as documented;
 *   - on success fleetmq_cfg_print() output loads back to the same values
 *     (the documented round trip).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleetmq_config.h"
#include "fleetmq_plugin.h"

static void *field(void *target, const struct fleetmq_cfg_option *o)
{
	return (char *)target + o->offset;
}

static void fail(const char *what, const char *key, const char *text)
{
	fprintf(stderr, "fuzz_config: %s (key %s)\n%s\n", what, key ? key : "-", text ? text : "");
	abort();
}

static void check_empty(struct fleetmq_plugin_config *c)
{
	size_t i;

	for(i = 0; i < fleetmq_plugin_config_table_len; i++){
		const struct fleetmq_cfg_option *o = &fleetmq_plugin_config_table[i];
		if(o->type == FM_CFG_STRING && *(char **)field(c, o)) fail("string left allocated after an error", o->key, NULL);
		if(o->type == FM_CFG_STRLIST){
			struct fleetmq_strlist *l = field(c, o);
			if(l->items || l->count) fail("list left allocated after an error", o->key, NULL);
		}
	}
}

static void compare(struct fleetmq_plugin_config *a, struct fleetmq_plugin_config *b, const char *printed)
{
	size_t i, k;

	for(i = 0; i < fleetmq_plugin_config_table_len; i++){
		const struct fleetmq_cfg_option *o = &fleetmq_plugin_config_table[i];
		void *fa = field(a, o), *fb = field(b, o);
		switch(o->type){
			case FM_CFG_STRING: {
				const char *sa = *(char **)fa, *sb = *(char **)fb;
				if((!sa) != (!sb) || (sa && strcmp(sa, sb))) fail("string changed by print/load", o->key, printed);
				break;
			}
			case FM_CFG_INT:
				if(*(long long *)fa != *(long long *)fb) fail("integer changed by print/load", o->key, printed);
				break;
			case FM_CFG_BOOL:
				if(*(bool *)fa != *(bool *)fb) fail("bool changed by print/load", o->key, printed);
				break;
			case FM_CFG_ENUM:
				if(*(int *)fa != *(int *)fb) fail("enum changed by print/load", o->key, printed);
				break;
			case FM_CFG_STRLIST: {
				struct fleetmq_strlist *la = fa, *lb = fb;
				if(la->count != lb->count) fail("list length changed by print/load", o->key, printed);
				for(k = 0; k < la->count; k++){
					if(strcmp(la->items[k], lb->items[k])) fail("list item changed by print/load", o->key, printed);
				}
				break;
			}
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fleetmq_plugin_config cfg, again;
	char err[256], err2[256];
	char *printed = NULL;
	size_t plen = 0;
	FILE *f;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	memset(err, 'x', sizeof(err));
	rc = fleetmq_cfg_load_buffer(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &cfg,
			(const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if(!memchr(err, '\0', sizeof(err))) fail("error message not terminated", NULL, NULL);
	if(rc != 0){
		if(!err[0]) fail("error without a message", NULL, NULL);
		check_empty(&cfg);
		fleetmq_cfg_free(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &cfg);
		return 0;
	}
	if(err[0]) fail("success with an error message", NULL, err);

	f = open_memstream(&printed, &plen);
	if(!f) abort();
	fleetmq_cfg_print(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &cfg, f);
	fclose(f);
	memset(&again, 0, sizeof(again));
	rc = fleetmq_cfg_load_buffer(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &again,
			printed, plen, "printed.yaml", err2, sizeof(err2));
	if(rc != 0) fail("printed configuration does not load back", err2, printed);
	compare(&cfg, &again, printed);
	fleetmq_cfg_free(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &again);
	fleetmq_cfg_free(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &cfg);
	/* Freeing twice is documented as harmless. */
	fleetmq_cfg_free(fleetmq_plugin_config_table, fleetmq_plugin_config_table_len, &cfg);
	free(printed);
	return 0;
}
