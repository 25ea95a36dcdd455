/*
 * config.c - table-driven YAML configuration (see fleetmq_config.h).
 *
 * Everything is driven by the caller's table of options; this file holds no
 * knowledge of any particular key. One set of converters (text -> typed
 * field) serves both the table's textual defaults and the YAML scalars, so a
 * default can never be something the file could not say.
 *
 * Loading uses libyaml's document API: the whole file becomes a node tree
 * (each node carrying its start line), which is walked recursively. The
 * dotted key of a node is its parent's key plus "." plus its own; a mapping
 * is descended into only if it is a section of the table (some key starts
 * with "<dotted>."), so the recursion is bounded by the longest table key
 * even for cyclic aliases. Duplicates are caught twice: per mapping (same
 * key text, including repeated sections) and per option (the line where
 * each option was set, so "store.path" flat and nested collide too).
 *
 * Values go straight into the caller's struct. Pointer fields are zeroed
 * before anything else, so on any error fleetmq_cfg_free() can release a
 * half-filled struct; the public functions do that themselves before
 * returning an error, so callers never leak.
 *
 * This file must never print to stdout/stderr (only into the caller's err
 * buffer or FILE), never keep state between calls, and never allocate
 * other than through fm_* (libyaml's internal buffers excepted).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "fleetmq_alloc.h"
#include "fleetmq_config.h"
#include "fleetmq_status.h"

#define CFG_MAX_FILE_BYTES (16u * 1024u * 1024u)
#define CFG_READ_CHUNK_BYTES 4096u
#define CFG_COMMENT_WIDTH 78
#define CFG_INDENT 2

/* Where error messages go: "<name>:<line>: <key>: <reason>". */
struct cfg_err {
	const char *name;
	char *buf;
	size_t len;
};

/* State of one load. */
struct cfg_load {
	const struct fleetmq_cfg_option *table;
	size_t n;
	void *target;
	struct cfg_err *e;
	yaml_document_t *doc;
	size_t *seen_line;      /* per option: 1-based line it was set at; 0 = not set */
};

/* ================================================================
 * Errors
 * ================================================================ */

/* Format an error into e (if any). line 0 = no line, key NULL = no key.
 * Returns FLEETMQ_ERR_CONFIG so callers can `return cfg__fail(...)`. */
static int cfg__fail(struct cfg_err *e, size_t line, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int cfg__fail(struct cfg_err *e, size_t line, const char *key, const char *fmt, ...)
{
	va_list ap;
	int used;
	size_t off;

	if(!e || !e->buf || e->len == 0) return FLEETMQ_ERR_CONFIG;
	if(line > 0){
		used = snprintf(e->buf, e->len, "%s:%zu: ", e->name, line);
	}else{
		used = snprintf(e->buf, e->len, "%s: ", e->name);
	}
	off = used < 0 ? 0 : (size_t)used;
	if(key && off < e->len){
		used = snprintf(e->buf + off, e->len - off, "%s: ", key);
		off += used < 0 ? 0 : (size_t)used;
	}
	if(off < e->len){
		va_start(ap, fmt);
		vsnprintf(e->buf + off, e->len - off, fmt, ap);
		va_end(ap);
	}
	return FLEETMQ_ERR_CONFIG;
}

static int cfg__nomem(struct cfg_err *e)
{
	cfg__fail(e, 0, NULL, "out of memory");
	return FLEETMQ_ERR_NOMEM;
}

/* ================================================================
 * Fields and lists
 * ================================================================ */

static void *cfg__field(void *target, const struct fleetmq_cfg_option *opt)
{
	return (char *)target + opt->offset;
}

static const void *cfg__cfield(const void *target, const struct fleetmq_cfg_option *opt)
{
	return (const char *)target + opt->offset;
}

static void cfg__strlist_clear(struct fleetmq_strlist *l)
{
	size_t i;

	for(i = 0; i < l->count; i++){
		fm_free(l->items[i]);
	}
	fm_free(l->items);
	l->items = NULL;
	l->count = 0;
}

/* Replace the list field of opt with l (ownership moves; l is emptied). */
static void cfg__strlist_set(void *target, const struct fleetmq_cfg_option *opt, struct fleetmq_strlist *l)
{
	struct fleetmq_strlist *dst = cfg__field(target, opt);

	cfg__strlist_clear(dst);
	*dst = *l;
	l->items = NULL;
	l->count = 0;
}

/* Reset every pointer field named by the table, without freeing. */
static void cfg__zero(const struct fleetmq_cfg_option *table, size_t n, void *target)
{
	size_t i;

	for(i = 0; i < n; i++){
		if(table[i].type == FM_CFG_STRING){
			*(char **)cfg__field(target, &table[i]) = NULL;
		}else if(table[i].type == FM_CFG_STRLIST){
			struct fleetmq_strlist *l = cfg__field(target, &table[i]);
			l->items = NULL;
			l->count = 0;
		}
	}
}

/* ================================================================
 * Converters: text -> field, shared by defaults and YAML scalars
 * ================================================================ */

static int cfg__set_int(const struct fleetmq_cfg_option *opt, void *target, const char *text,
		struct cfg_err *e, size_t line)
{
	const char *p = text;
	char *end = NULL;
	long long v;

	if(*p == '+' || *p == '-') p++;
	if(*p < '0' || *p > '9'){
		return cfg__fail(e, line, opt->key, "expected an integer, got '%s'", text);
	}
	errno = 0;
	v = strtoll(text, &end, 10);
	if(*end != '\0'){
		return cfg__fail(e, line, opt->key, "expected an integer, got '%s'", text);
	}
	if(errno == ERANGE){
		return cfg__fail(e, line, opt->key, "value %s out of range %lld..%lld", text, opt->min, opt->max);
	}
	if(v < opt->min || v > opt->max){
		return cfg__fail(e, line, opt->key, "value %lld out of range %lld..%lld", v, opt->min, opt->max);
	}
	*(long long *)cfg__field(target, opt) = v;
	return FLEETMQ_OK;
}

static int cfg__set_bool(const struct fleetmq_cfg_option *opt, void *target, const char *text,
		struct cfg_err *e, size_t line)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	size_t i;

	for(i = 0; i < sizeof(yes) / sizeof(yes[0]); i++){
		if(!strcasecmp(text, yes[i])){
			*(bool *)cfg__field(target, opt) = true;
			return FLEETMQ_OK;
		}
		if(!strcasecmp(text, no[i])){
			*(bool *)cfg__field(target, opt) = false;
			return FLEETMQ_OK;
		}
	}
	return cfg__fail(e, line, opt->key, "expected true or false, got '%s'", text);
}

static int cfg__set_enum(const struct fleetmq_cfg_option *opt, void *target, const char *text,
		struct cfg_err *e, size_t line)
{
	char choices[256];
	size_t i, off = 0;
	int used;

	for(i = 0; opt->choices[i]; i++){
		if(!strcmp(text, opt->choices[i])){
			*(int *)cfg__field(target, opt) = (int)i;
			return FLEETMQ_OK;
		}
	}
	choices[0] = '\0';
	for(i = 0; opt->choices[i] && off < sizeof(choices); i++){
		used = snprintf(choices + off, sizeof(choices) - off, "%s%s", i ? ", " : "", opt->choices[i]);
		off += used < 0 ? 0 : (size_t)used;
	}
	return cfg__fail(e, line, opt->key, "'%s' is not one of %s", text, choices);
}

/* text NULL stores NULL. */
static int cfg__set_string(const struct fleetmq_cfg_option *opt, void *target, const char *text,
		struct cfg_err *e)
{
	char **dst = cfg__field(target, opt);
	char *copy = NULL;

	if(text){
		copy = fm_strdup(text);
		if(!copy) return cfg__nomem(e);
	}
	fm_free(*dst);
	*dst = copy;
	return FLEETMQ_OK;
}

/* Store a scalar's text into a STRING, INT, BOOL or ENUM field. */
static int cfg__set_scalar(const struct fleetmq_cfg_option *opt, void *target, const char *text,
		struct cfg_err *e, size_t line)
{
	switch(opt->type){
		case FM_CFG_STRING: return cfg__set_string(opt, target, text, e);
		case FM_CFG_INT: return cfg__set_int(opt, target, text, e, line);
		case FM_CFG_BOOL: return cfg__set_bool(opt, target, text, e, line);
		case FM_CFG_ENUM: return cfg__set_enum(opt, target, text, e, line);
		case FM_CFG_STRLIST: break;
	}
	return cfg__fail(e, line, opt->key, "internal error: not a scalar option");
}

/* ================================================================
 * Table checks and defaults
 * ================================================================ */

static bool cfg__key_is_valid(const char *key)
{
	const char *p;
	bool seg_empty = true;

	if(!key) return false;
	for(p = key; *p; p++){
		if(*p == '.'){
			if(seg_empty) return false;
			seg_empty = true;
		}else if((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
				|| (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'){
			seg_empty = false;
		}else{
			return false;
		}
	}
	return !seg_empty;
}

/* True if `key` names a section of `section` (key starts with "section."). */
static bool cfg__is_under(const char *key, const char *section, size_t section_len)
{
	return !strncmp(key, section, section_len) && key[section_len] == '.';
}

static int cfg__check_option(const struct fleetmq_cfg_option *table, size_t n, size_t i,
		struct cfg_err *e)
{
	const struct fleetmq_cfg_option *opt = &table[i];
	size_t j;

	if(!cfg__key_is_valid(opt->key)){
		return cfg__fail(e, 0, opt->key ? opt->key : "(null)",
				"key must be segments of [A-Za-z0-9_-] joined by '.'");
	}
	if(opt->type > FM_CFG_STRLIST){
		return cfg__fail(e, 0, opt->key, "unknown type %d", (int)opt->type);
	}
	if(opt->type == FM_CFG_ENUM && (!opt->choices || !opt->choices[0])){
		return cfg__fail(e, 0, opt->key, "enum without choices");
	}
	if(opt->type == FM_CFG_INT && opt->min > opt->max){
		return cfg__fail(e, 0, opt->key, "min %lld > max %lld", opt->min, opt->max);
	}
	if(!opt->default_value && !(opt->flags & FM_CFG_REQUIRED)
			&& (opt->type == FM_CFG_INT || opt->type == FM_CFG_BOOL || opt->type == FM_CFG_ENUM)){
		return cfg__fail(e, 0, opt->key, "optional key without a default");
	}
	for(j = 0; j < i; j++){
		if(!strcmp(table[j].key, opt->key)){
			return cfg__fail(e, 0, opt->key, "key defined twice in the table");
		}
		if(cfg__is_under(table[j].key, opt->key, strlen(opt->key))
				|| cfg__is_under(opt->key, table[j].key, strlen(table[j].key))){
			return cfg__fail(e, 0, opt->key, "key is also a section of '%s'", table[j].key);
		}
	}
	return FLEETMQ_OK;
}

/* Parse a comma-separated default into the list field. */
static int cfg__default_list(const struct fleetmq_cfg_option *opt, void *target, struct cfg_err *e)
{
	struct fleetmq_strlist l = { NULL, 0 };
	const char *p, *start, *end;
	size_t count = 1;
	int rc = FLEETMQ_OK;

	for(p = opt->default_value; *p == ' ' || *p == '\t'; p++){}
	if(*p == '\0'){
		cfg__strlist_set(target, opt, &l);
		return FLEETMQ_OK;
	}
	for(p = opt->default_value; *p; p++){
		if(*p == ',') count++;
	}
	l.items = fm_calloc(count, sizeof(char *));
	if(!l.items){
		rc = cfg__nomem(e);
		goto cleanup;
	}
	start = opt->default_value;
	while(l.count < count){
		end = strchr(start, ',');
		if(!end) end = start + strlen(start);
		p = end;
		while(start < end && (*start == ' ' || *start == '\t')) start++;
		while(end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
		if(end == start){
			rc = cfg__fail(e, 0, opt->key, "empty item in list default '%s'", opt->default_value);
			goto cleanup;
		}
		l.items[l.count] = fm_strndup(start, (size_t)(end - start));
		if(!l.items[l.count]){
			rc = cfg__nomem(e);
			goto cleanup;
		}
		l.count++;
		start = *p ? p + 1 : p;
	}
	cfg__strlist_set(target, opt, &l);
cleanup:
	cfg__strlist_clear(&l);
	return rc;
}

/* Check the table and apply its defaults. The table's pointer fields of
 * target are zeroed first; on error whatever was set is freed again. */
static int cfg__defaults(const struct fleetmq_cfg_option *table, size_t n, void *target,
		struct cfg_err *e)
{
	struct cfg_err derr = { "config table default", e ? e->buf : NULL, e ? e->len : 0 };
	size_t i;
	int rc = FLEETMQ_OK;

	cfg__zero(table, n, target);
	for(i = 0; i < n; i++){
		rc = cfg__check_option(table, n, i, &derr);
		if(rc) goto cleanup;
	}
	for(i = 0; i < n; i++){
		const struct fleetmq_cfg_option *opt = &table[i];

		if(opt->type == FM_CFG_STRLIST){
			if(opt->default_value) rc = cfg__default_list(opt, target, &derr);
		}else if(opt->default_value){
			rc = cfg__set_scalar(opt, target, opt->default_value, &derr, 0);
		}else if(opt->type == FM_CFG_INT){
			*(long long *)cfg__field(target, opt) = 0;
		}else if(opt->type == FM_CFG_BOOL){
			*(bool *)cfg__field(target, opt) = false;
		}else if(opt->type == FM_CFG_ENUM){
			*(int *)cfg__field(target, opt) = 0;
		}
		if(rc) goto cleanup;
	}
cleanup:
	if(rc == FLEETMQ_ERR_NOMEM) cfg__nomem(e);   /* not the table's fault: name the file */
	if(rc) fleetmq_cfg_free(table, n, target);
	return rc;
}

int fleetmq_cfg_defaults(const struct fleetmq_cfg_option *table, size_t n, void *target)
{
	if(!table || !target) return FLEETMQ_ERR_BAD_REQUEST;
	return cfg__defaults(table, n, target, NULL);
}

/* ================================================================
 * YAML walk
 * ================================================================ */

static size_t cfg__line(const yaml_node_t *node)
{
	return node->start_mark.line + 1;
}

static const char *cfg__kind(const yaml_node_t *node)
{
	switch(node->type){
		case YAML_SCALAR_NODE: return "scalar";
		case YAML_SEQUENCE_NODE: return "sequence";
		case YAML_MAPPING_NODE: return "mapping";
		case YAML_NO_NODE: break;
	}
	return "nothing";
}

/* A plain empty, ~ or null scalar: YAML's "no value". */
static bool cfg__is_null(const yaml_node_t *node)
{
	const char *v;

	if(node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE){
		return false;
	}
	v = (const char *)node->data.scalar.value;
	return v[0] == '\0' || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null")
		|| !strcmp(v, "NULL");
}

/* A scalar's text may contain "\0" escapes; such text is not a C string. */
static bool cfg__has_nul(const yaml_node_t *node)
{
	return strlen((const char *)node->data.scalar.value) != node->data.scalar.length;
}

static int cfg__find(const struct cfg_load *ld, const char *key)
{
	size_t i;

	for(i = 0; i < ld->n; i++){
		if(!strcmp(ld->table[i].key, key)) return (int)i;
	}
	return -1;
}

static bool cfg__is_section(const struct cfg_load *ld, const char *key)
{
	size_t i, len = strlen(key);

	for(i = 0; i < ld->n; i++){
		if(cfg__is_under(ld->table[i].key, key, len)) return true;
	}
	return false;
}

static int cfg__load_list(struct cfg_load *ld, const struct fleetmq_cfg_option *opt,
		yaml_node_t *value)
{
	struct fleetmq_strlist l = { NULL, 0 };
	yaml_node_item_t *it;
	yaml_node_t *item;
	size_t count;
	int rc = FLEETMQ_OK;

	if(cfg__is_null(value)){
		cfg__strlist_set(ld->target, opt, &l);
		return FLEETMQ_OK;
	}
	if(value->type != YAML_SEQUENCE_NODE){
		return cfg__fail(ld->e, cfg__line(value), opt->key, "expected a sequence, got a %s",
				cfg__kind(value));
	}
	count = (size_t)(value->data.sequence.items.top - value->data.sequence.items.start);
	if(count > 0){
		l.items = fm_calloc(count, sizeof(char *));
		if(!l.items){
			rc = cfg__nomem(ld->e);
			goto cleanup;
		}
	}
	for(it = value->data.sequence.items.start; it < value->data.sequence.items.top; it++){
		item = yaml_document_get_node(ld->doc, *it);
		if(!item || item->type != YAML_SCALAR_NODE){
			rc = cfg__fail(ld->e, item ? cfg__line(item) : cfg__line(value), opt->key,
					"item %zu: expected a scalar, got a %s", l.count + 1,
					item ? cfg__kind(item) : "nothing");
			goto cleanup;
		}
		if(cfg__is_null(item)){
			rc = cfg__fail(ld->e, cfg__line(item), opt->key, "item %zu: empty list item", l.count + 1);
			goto cleanup;
		}
		if(cfg__has_nul(item)){
			rc = cfg__fail(ld->e, cfg__line(item), opt->key, "item %zu: contains a NUL character",
					l.count + 1);
			goto cleanup;
		}
		l.items[l.count] = fm_strdup((const char *)item->data.scalar.value);
		if(!l.items[l.count]){
			rc = cfg__nomem(ld->e);
			goto cleanup;
		}
		l.count++;
	}
	cfg__strlist_set(ld->target, opt, &l);
cleanup:
	cfg__strlist_clear(&l);
	return rc;
}

/* Set option idx from the value node of the pair whose key node is `key`. */
static int cfg__load_option(struct cfg_load *ld, size_t idx, const yaml_node_t *key, yaml_node_t *value)
{
	const struct fleetmq_cfg_option *opt = &ld->table[idx];
	const char *text;

	if(ld->seen_line[idx]){
		return cfg__fail(ld->e, cfg__line(key), opt->key, "key given twice (first at line %zu)",
				ld->seen_line[idx]);
	}
	ld->seen_line[idx] = cfg__line(key);

	if(opt->type == FM_CFG_STRLIST){
		return cfg__load_list(ld, opt, value);
	}
	if(value->type != YAML_SCALAR_NODE){
		return cfg__fail(ld->e, cfg__line(value), opt->key, "expected a scalar, got a %s",
				cfg__kind(value));
	}
	if(cfg__has_nul(value)){
		return cfg__fail(ld->e, cfg__line(value), opt->key, "contains a NUL character");
	}
	text = (const char *)value->data.scalar.value;
	if(opt->type == FM_CFG_STRING && cfg__is_null(value)){
		text = NULL;
	}
	return cfg__set_scalar(opt, ld->target, text, ld->e, cfg__line(value));
}

/* "prefix.key" (or "key" at the top level), fm_malloc'd. */
static char *cfg__join(const char *prefix, const yaml_node_t *key)
{
	size_t plen = prefix ? strlen(prefix) : 0;
	size_t klen = key->data.scalar.length;
	char *s = fm_malloc(plen + 1 + klen + 1);

	if(!s) return NULL;
	if(plen){
		memcpy(s, prefix, plen);
		s[plen++] = '.';
	}
	memcpy(s + plen, key->data.scalar.value, klen);
	s[plen + klen] = '\0';
	return s;
}

static int cfg__load_mapping(struct cfg_load *ld, const yaml_node_t *map, const char *prefix)
{
	yaml_node_pair_t *pair, *prev;
	yaml_node_t *key, *value, *pkey;
	char *dotted = NULL;
	int idx;
	int rc = FLEETMQ_OK;

	for(pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++){
		key = yaml_document_get_node(ld->doc, pair->key);
		value = yaml_document_get_node(ld->doc, pair->value);
		if(!key || !value){
			rc = cfg__fail(ld->e, cfg__line(map), prefix, "malformed mapping");
			goto cleanup;
		}
		if(key->type != YAML_SCALAR_NODE){
			rc = cfg__fail(ld->e, cfg__line(key), prefix ? prefix : "(top level)",
					"expected a scalar key, got a %s", cfg__kind(key));
			goto cleanup;
		}
		if(cfg__has_nul(key)){
			rc = cfg__fail(ld->e, cfg__line(key), prefix ? prefix : "(top level)",
					"key contains a NUL character");
			goto cleanup;
		}
		dotted = cfg__join(prefix, key);
		if(!dotted){
			rc = cfg__nomem(ld->e);
			goto cleanup;
		}
		for(prev = map->data.mapping.pairs.start; prev < pair; prev++){
			pkey = yaml_document_get_node(ld->doc, prev->key);
			if(pkey && pkey->type == YAML_SCALAR_NODE
					&& pkey->data.scalar.length == key->data.scalar.length
					&& !memcmp(pkey->data.scalar.value, key->data.scalar.value, key->data.scalar.length)){
				rc = cfg__fail(ld->e, cfg__line(key), dotted, "key given twice (first at line %zu)",
						cfg__line(pkey));
				goto cleanup;
			}
		}
		idx = cfg__find(ld, dotted);
		if(idx >= 0){
			rc = cfg__load_option(ld, (size_t)idx, key, value);
		}else if(!cfg__is_section(ld, dotted)){
			rc = cfg__fail(ld->e, cfg__line(key), dotted, "unknown key");
		}else if(value->type == YAML_MAPPING_NODE){
			rc = cfg__load_mapping(ld, value, dotted);
		}else if(!cfg__is_null(value)){
			rc = cfg__fail(ld->e, cfg__line(value), dotted, "expected a mapping, got a %s",
					cfg__kind(value));
		}
		if(rc) goto cleanup;
		fm_free(dotted);
		dotted = NULL;
	}
cleanup:
	fm_free(dotted);
	return rc;
}

static int cfg__yaml_error(struct cfg_err *e, const yaml_parser_t *parser)
{
	if(parser->error == YAML_MEMORY_ERROR){
		return cfg__nomem(e);
	}
	if(parser->error == YAML_READER_ERROR){
		return cfg__fail(e, 0, NULL, "YAML syntax error: %s at byte %zu",
				parser->problem ? parser->problem : "unreadable input", parser->problem_offset);
	}
	if(parser->context){
		return cfg__fail(e, parser->problem_mark.line + 1, NULL, "YAML syntax error: %s (%s at line %zu)",
				parser->problem ? parser->problem : "unknown problem", parser->context,
				parser->context_mark.line + 1);
	}
	return cfg__fail(e, parser->problem_mark.line + 1, NULL, "YAML syntax error: %s",
			parser->problem ? parser->problem : "unknown problem");
}

static int cfg__check_required(struct cfg_load *ld)
{
	size_t i;
	const char *s;

	for(i = 0; i < ld->n; i++){
		const struct fleetmq_cfg_option *opt = &ld->table[i];

		if(!(opt->flags & FM_CFG_REQUIRED)) continue;
		if(!ld->seen_line[i]){
			return cfg__fail(ld->e, 0, opt->key, "required key missing");
		}
		if(opt->type == FM_CFG_STRING){
			s = *(char **)cfg__field(ld->target, opt);
			if(!s || !s[0]){
				return cfg__fail(ld->e, ld->seen_line[i], opt->key, "required value is empty");
			}
		}
	}
	return FLEETMQ_OK;
}

/* Load from an initialised parser. On error target is released. */
static int cfg__load(const struct fleetmq_cfg_option *table, size_t n, void *target,
		yaml_parser_t *parser, struct cfg_err *e)
{
	struct cfg_load ld = { table, n, target, e, NULL, NULL };
	yaml_document_t doc, extra;
	yaml_node_t *root;
	bool have_doc = false;
	int rc;

	rc = cfg__defaults(table, n, target, e);
	if(rc) return rc;

	ld.seen_line = fm_calloc(n ? n : 1, sizeof(size_t));
	if(!ld.seen_line){
		rc = cfg__nomem(e);
		goto cleanup;
	}
	if(!yaml_parser_load(parser, &doc)){
		rc = cfg__yaml_error(e, parser);
		goto cleanup;
	}
	have_doc = true;
	ld.doc = &doc;

	root = yaml_document_get_root_node(&doc);
	if(root){
		if(root->type == YAML_MAPPING_NODE){
			rc = cfg__load_mapping(&ld, root, NULL);
		}else if(!cfg__is_null(root)){
			rc = cfg__fail(e, cfg__line(root), NULL, "expected a mapping at the top level, got a %s",
					cfg__kind(root));
		}
		if(rc) goto cleanup;

		if(!yaml_parser_load(parser, &extra)){
			rc = cfg__yaml_error(e, parser);
			goto cleanup;
		}
		if(yaml_document_get_root_node(&extra)){
			rc = cfg__fail(e, extra.start_mark.line + 1, NULL, "only one YAML document is allowed");
		}
		yaml_document_delete(&extra);
		if(rc) goto cleanup;
	}
	rc = cfg__check_required(&ld);
cleanup:
	if(have_doc) yaml_document_delete(&doc);
	fm_free(ld.seen_line);
	if(rc) fleetmq_cfg_free(table, n, target);
	return rc;
}

int fleetmq_cfg_load_buffer(const struct fleetmq_cfg_option *table, size_t n, void *target,
		const char *buf, size_t len, const char *name, char *err, size_t errlen)
{
	struct cfg_err e = { name ? name : "<buffer>", err, errlen };
	yaml_parser_t parser;
	int rc;

	if(err && errlen) err[0] = '\0';
	if(!table || !target || (!buf && len)) return FLEETMQ_ERR_BAD_REQUEST;

	if(!yaml_parser_initialize(&parser)){
		cfg__zero(table, n, target);
		return cfg__nomem(&e);
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)(buf ? buf : ""), len);
	rc = cfg__load(table, n, target, &parser, &e);
	yaml_parser_delete(&parser);
	return rc;
}

/* Read the whole file into an fm_malloc'd buffer. */
static int cfg__read_file(const char *path, char **out, size_t *outlen, struct cfg_err *e)
{
	FILE *fp = NULL;
	char *buf = NULL, *grown;
	size_t len = 0, cap = 0, got;
	int rc = FLEETMQ_OK;

	fp = fopen(path, "rb");
	if(!fp){
		cfg__fail(e, 0, NULL, "cannot open: %s", strerror(errno));
		rc = FLEETMQ_ERR_IO;
		goto cleanup;
	}
	for(;;){
		if(len > CFG_MAX_FILE_BYTES){
			cfg__fail(e, 0, NULL, "larger than %u bytes", CFG_MAX_FILE_BYTES);
			rc = FLEETMQ_ERR_IO;
			goto cleanup;
		}
		if(cap - len < CFG_READ_CHUNK_BYTES){
			cap = cap ? cap * 2 : 4 * CFG_READ_CHUNK_BYTES;
			grown = fm_realloc(buf, cap);
			if(!grown){
				rc = cfg__nomem(e);
				goto cleanup;
			}
			buf = grown;
		}
		got = fread(buf + len, 1, cap - len, fp);
		len += got;
		if(got == 0) break;
	}
	if(ferror(fp)){
		cfg__fail(e, 0, NULL, "read error: %s", strerror(errno));
		rc = FLEETMQ_ERR_IO;
		goto cleanup;
	}
	*out = buf;
	*outlen = len;
	buf = NULL;
cleanup:
	if(fp) fclose(fp);
	fm_free(buf);
	return rc;
}

int fleetmq_cfg_load_file(const struct fleetmq_cfg_option *table, size_t n, void *target,
		const char *path, char *err, size_t errlen)
{
	struct cfg_err e = { path, err, errlen };
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if(err && errlen) err[0] = '\0';
	if(!table || !target || !path) return FLEETMQ_ERR_BAD_REQUEST;

	rc = cfg__read_file(path, &buf, &len, &e);
	if(rc){
		cfg__zero(table, n, target);
		goto cleanup;
	}
	rc = fleetmq_cfg_load_buffer(table, n, target, buf, len, path, err, errlen);
cleanup:
	fm_free(buf);
	return rc;
}

/* ================================================================
 * Printing
 * ================================================================ */

/* YAML double-quoted string. Escapes what libyaml would not read back
 * verbatim: quotes, backslash, C0/C1 controls, DEL, the characters
 * YAML treats as line breaks (U+0085, U+2028, U+2029) or BOM (U+FEFF), and
 * the non-characters U+FFFE and U+FFFF, which libyaml refuses to read. */
static void cfg__print_quoted(FILE *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', out);
	for(; *p; p++){
		switch(*p){
			case '"': fputs("\\\"", out); continue;
			case '\\': fputs("\\\\", out); continue;
			case '\n': fputs("\\n", out); continue;
			case '\t': fputs("\\t", out); continue;
			case '\r': fputs("\\r", out); continue;
			default: break;
		}
		if(*p < 0x20 || *p == 0x7f){
			fprintf(out, "\\x%02x", *p);
		}else if(p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f){
			fprintf(out, "\\x%02x", p[1]);
			p++;
		}else if(p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)){
			fprintf(out, "\\u20%02x", p[2] == 0xa8 ? 0x28 : 0x29);
			p += 2;
		}else if(p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf){
			fputs("\\ufeff", out);
			p += 2;
		}else if(p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)){
			/* U+FFFE, U+FFFF: not printable for libyaml's reader */
			fprintf(out, "\\uff%02x", p[2] == 0xbe ? 0xfe : 0xff);
			p += 2;
		}else{
			fputc(*p, out);
		}
	}
	fputc('"', out);
}

/* Plain if made of [A-Za-z0-9_.-], not starting with '-' and not a null
 * (enum choices normally are), else quoted. */
static void cfg__print_word(FILE *out, const char *s)
{
	const char *p;

	for(p = s; *p; p++){
		if(!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')
				|| *p == '_' || *p == '-' || *p == '.')){
			break;
		}
	}
	if(*s && !*p && *s != '-' && strcmp(s, "~") && strcasecmp(s, "null")){
		fputs(s, out);
	}else{
		cfg__print_quoted(out, s);
	}
}

static void cfg__indent(FILE *out, int depth)
{
	fprintf(out, "%*s", depth * CFG_INDENT, "");
}

/* "# text" lines, words wrapped to CFG_COMMENT_WIDTH columns. */
static void cfg__print_comment(FILE *out, int depth, const char *text)
{
	const char *p = text, *word;
	size_t wlen, col = 0, width;
	size_t left = (size_t)(depth * CFG_INDENT) + 2;

	width = CFG_COMMENT_WIDTH > left + 20 ? CFG_COMMENT_WIDTH - left : 20;
	for(;;){
		while(*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
		if(!*p) break;
		word = p;
		while(*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
		wlen = (size_t)(p - word);
		if(col > 0 && col + 1 + wlen > width){
			fputc('\n', out);
			col = 0;
		}
		if(col == 0){
			cfg__indent(out, depth);
			fputs("#", out);
		}
		fprintf(out, " %.*s", (int)wlen, word);
		col += 1 + wlen;
	}
	if(col > 0) fputc('\n', out);
}

/* The second comment line: required / range and unit / choices. */
static void cfg__print_facts(FILE *out, int depth, const struct fleetmq_cfg_option *opt)
{
	const char *sep = "";
	size_t i;

	if(!(opt->flags & FM_CFG_REQUIRED) && opt->type != FM_CFG_INT && opt->type != FM_CFG_ENUM
			&& !opt->unit){
		return;
	}
	cfg__indent(out, depth);
	fputc('#', out);
	if(opt->flags & FM_CFG_REQUIRED){
		fputs(" required", out);
		sep = ";";
	}
	if(opt->type == FM_CFG_INT){
		fprintf(out, "%s range: %lld..%lld", sep, opt->min, opt->max);
		if(opt->unit) fprintf(out, " %s", opt->unit);
		sep = ";";
	}else if(opt->unit){
		fprintf(out, "%s unit: %s", sep, opt->unit);
		sep = ";";
	}
	if(opt->type == FM_CFG_ENUM){
		fprintf(out, "%s one of:", sep);
		for(i = 0; opt->choices && opt->choices[i]; i++){
			fprintf(out, "%s %s", i ? "," : "", opt->choices[i]);
		}
	}
	fputc('\n', out);
}

static void cfg__print_value(FILE *out, const struct fleetmq_cfg_option *opt, const void *target)
{
	const void *field = cfg__cfield(target, opt);
	const struct fleetmq_strlist *l;
	const char *s;
	size_t i, nchoices;
	int idx;

	switch(opt->type){
		case FM_CFG_STRING:
			s = *(char *const *)field;
			if(s){
				cfg__print_quoted(out, s);
			}else{
				fputc('~', out);
			}
			break;
		case FM_CFG_INT:
			fprintf(out, "%lld", *(const long long *)field);
			break;
		case FM_CFG_BOOL:
			fputs(*(const bool *)field ? "true" : "false", out);
			break;
		case FM_CFG_ENUM:
			idx = *(const int *)field;
			for(nchoices = 0; opt->choices && opt->choices[nchoices]; nchoices++){}
			if(idx >= 0 && (size_t)idx < nchoices){
				cfg__print_word(out, opt->choices[idx]);
			}else{
				fputc('~', out);
			}
			break;
		case FM_CFG_STRLIST:
			l = field;
			fputc('[', out);
			for(i = 0; i < l->count; i++){
				if(i) fputs(", ", out);
				cfg__print_quoted(out, l->items[i] ? l->items[i] : "");
			}
			fputc(']', out);
			break;
	}
}

/* Print every option under `prefix` (its first plen characters, ending in
 * '.', or empty at the top level). Each segment is printed at its first
 * table row; later rows of the same section join it there. */
static void cfg__print_section(const struct fleetmq_cfg_option *table, size_t n, const void *target,
		FILE *out, const char *prefix, size_t plen, int depth)
{
	size_t i, j, seglen;
	const char *rest;
	bool first = true, printed;

	for(i = 0; i < n; i++){
		if(!table[i].key || strncmp(table[i].key, prefix, plen)) continue;
		rest = table[i].key + plen;
		seglen = strcspn(rest, ".");
		printed = false;
		for(j = 0; j < i && !printed; j++){
			printed = table[j].key && !strncmp(table[j].key, table[i].key, plen + seglen)
				&& (table[j].key[plen + seglen] == '.' || table[j].key[plen + seglen] == '\0');
		}
		if(printed) continue;
		if(depth == 0 && !first) fputc('\n', out);
		first = false;
		if(rest[seglen] == '.'){
			cfg__indent(out, depth);
			fprintf(out, "%.*s:\n", (int)seglen, rest);
			cfg__print_section(table, n, target, out, table[i].key, plen + seglen + 1, depth + 1);
		}else{
			if(table[i].help) cfg__print_comment(out, depth, table[i].help);
			cfg__print_facts(out, depth, &table[i]);
			cfg__indent(out, depth);
			fprintf(out, "%s: ", rest);
			cfg__print_value(out, &table[i], target);
			fputc('\n', out);
		}
	}
}

void fleetmq_cfg_print(const struct fleetmq_cfg_option *table, size_t n, const void *target, FILE *out)
{
	if(!table || !target || !out) return;
	cfg__print_section(table, n, target, out, "", 0, 0);
}

/* A Markdown table cell: '|' escaped, line breaks as spaces; outside code
 * spans '<' and '>' too, so "<prefix>" is not taken for an HTML tag. */
static void cfg__md_text(FILE *out, const char *s, bool in_code)
{
	for(; s && *s; s++){
		if(*s == '|'){
			fputs("\\|", out);
		}else if(*s == '\n' || *s == '\r'){
			fputc(' ', out);
		}else if(!in_code && *s == '<'){
			fputs("&lt;", out);
		}else if(!in_code && *s == '>'){
			fputs("&gt;", out);
		}else{
			fputc(*s, out);
		}
	}
}

static const char *cfg__type_name(enum fleetmq_cfg_type type)
{
	switch(type){
		case FM_CFG_STRING: return "string";
		case FM_CFG_INT: return "integer";
		case FM_CFG_BOOL: return "boolean";
		case FM_CFG_ENUM: return "enum";
		case FM_CFG_STRLIST: return "list of strings";
	}
	return "?";
}

void fleetmq_cfg_print_markdown(const struct fleetmq_cfg_option *table, size_t n, FILE *out)
{
	size_t i, j;

	if(!table || !out) return;
	fputs("| key | type | default | range / choices | description |\n", out);
	fputs("|-----|------|---------|-----------------|-------------|\n", out);
	for(i = 0; i < n; i++){
		const struct fleetmq_cfg_option *opt = &table[i];
		bool required = opt->flags & FM_CFG_REQUIRED;

		fputs("| `", out);
		cfg__md_text(out, opt->key, true);
		fprintf(out, "` | %s", cfg__type_name(opt->type));
		if(opt->unit){
			fputs(" (", out);
			cfg__md_text(out, opt->unit, false);
			fputc(')', out);
		}
		fputs(" | ", out);
		if(opt->default_value){
			fputc('`', out);
			cfg__md_text(out, opt->default_value, true);
			fputc('`', out);
		}else if(required){
			fputs("*required*", out);
		}else if(opt->type == FM_CFG_STRLIST){
			fputs("`[]`", out);
		}else{
			fputs("*none*", out);
		}
		fputs(" | ", out);
		if(opt->type == FM_CFG_INT){
			fprintf(out, "%lld .. %lld", opt->min, opt->max);
		}else if(opt->type == FM_CFG_ENUM && opt->choices){
			for(j = 0; opt->choices[j]; j++){
				fputs(j ? ", `" : "`", out);
				cfg__md_text(out, opt->choices[j], true);
				fputc('`', out);
			}
		}
		fputs(" | ", out);
		if(required) fputs("**Required.** ", out);
		cfg__md_text(out, opt->help, false);
		fputs(" |\n", out);
	}
}

/* ================================================================
 * Release and lookup
 * ================================================================ */

void fleetmq_cfg_free(const struct fleetmq_cfg_option *table, size_t n, void *target)
{
	size_t i;
	char **s;

	if(!table || !target) return;
	for(i = 0; i < n; i++){
		if(table[i].type == FM_CFG_STRING){
			s = cfg__field(target, &table[i]);
			fm_free(*s);
			*s = NULL;
		}else if(table[i].type == FM_CFG_STRLIST){
			cfg__strlist_clear(cfg__field(target, &table[i]));
		}
	}
}

bool fleetmq_strlist_contains(const struct fleetmq_strlist *l, const char *s)
{
	size_t i;

	if(!l || !s) return false;
	for(i = 0; i < l->count; i++){
		if(l->items[i] && !strcmp(l->items[i], s)) return true;
	}
	return false;
}
