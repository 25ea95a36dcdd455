/*
 * fleetmq_config.h - table-driven YAML configuration (libyaml).
 *
 * Each component declares one table of options (dotted key, type, default,
 * range, help). The same table drives parsing, validation, defaults,
 * printing the effective configuration (--print-config) and the reference
 * documentation, so the four can never disagree.
 *
 * A value is stored into the caller's struct at the option's offset:
 *   FM_CFG_STRING  -> char *            (owned by the struct; fleetmq_cfg_free)
 *   FM_CFG_INT     -> long long
 *   FM_CFG_BOOL    -> bool
 *   FM_CFG_ENUM    -> int (index into choices)
 *   FM_CFG_STRLIST -> struct fleetmq_strlist (owned by the struct)
 *
 * YAML file format
 *   The top level is a mapping. A dotted key "store.path" is written either
 *   nested (store: {path: x}, in block or flow style) or flat ("store.path: x");
 *   both may be mixed. A mapping is accepted only where some table key starts
 *   with "<prefix>."; anything else is an unknown key. An empty section
 *   ("store:" with nothing below) is allowed. An empty file, a file of only
 *   comments or an empty document means "all defaults". Only one document.
 *   Values (the text of the scalar; quoting does not matter, except for null):
 *     STRING   any scalar, stored as a copy. A plain null (empty, ~, null)
 *              stores NULL ("no value"); write "" for an empty string.
 *     INT      a base-10 integer with optional sign: no units, no suffixes,
 *              no spaces, no 0x; must lie in [min, max] (inclusive).
 *     BOOL     true/false, yes/no, on/off, case-insensitive.
 *     ENUM     exactly one of choices (case-sensitive).
 *     STRLIST  a sequence of non-null scalars (block or flow); it replaces the
 *              default list. A plain null stores the empty list.
 *   Errors (the first one found is reported; the text is for humans, but its
 *   form is stable):
 *     "<file>:<line>: <dotted.key>: <reason>"   line is 1-based, taken from
 *                                                the offending node
 *     "<file>:<line>: YAML syntax error: <libyaml problem> [(context)]"
 *     "<file>: <dotted.key>: required key missing"
 *     "<file>: cannot open: <strerror>" / "<file>: out of memory"
 *   A FM_CFG_REQUIRED key must appear in the file; a required STRING must
 *   moreover be non-empty.
 *
 * Tables are checked by fleetmq_cfg_defaults() (and therefore by every load):
 * keys are non-empty, made of segments [A-Za-z0-9_-] joined by '.', unique,
 * and no key is also a section of another ("a" and "a.b"); an ENUM has at
 * least one choice; an INT has min <= max; every default parses with the
 * option's own converter and lies in range; an INT, BOOL or ENUM that is not
 * FM_CFG_REQUIRED has a default. A bad table is a programming error and is
 * reported as FLEETMQ_ERR_CONFIG ("config table default: <key>: <reason>").
 *
 * Ownership of target: the functions below that fill target overwrite the
 * pointer fields named by the table without freeing them, so pass a zeroed
 * struct or one already released with fleetmq_cfg_free(). After success
 * target owns its strings and lists until fleetmq_cfg_free(). After any
 * error other than FLEETMQ_ERR_BAD_REQUEST, target holds no allocation:
 * every STRING is NULL and every STRLIST empty (other fields unspecified),
 * and calling fleetmq_cfg_free() on it is harmless. Fields of target that
 * are not in the table are never touched.
 *
 * Memory comes from fm_malloc & co. (fleetmq_alloc.h); libyaml's own
 * temporary allocations use libc.
 */
#ifndef FLEETMQ_CONFIG_H
#define FLEETMQ_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

enum fleetmq_cfg_type {
	FM_CFG_STRING,
	FM_CFG_INT,
	FM_CFG_BOOL,
	FM_CFG_ENUM,
	FM_CFG_STRLIST,
};

/* A list of owned, NUL-terminated strings. */
struct fleetmq_strlist {
	char **items;
	size_t count;
};

#define FM_CFG_REQUIRED 0x1u

struct fleetmq_cfg_option {
	const char *key;             /* dotted path, e.g. "store.path" */
	enum fleetmq_cfg_type type;
	const char *default_value;   /* textual default, parsed like a YAML value;
	                              * STRLIST: comma-separated ("a,b", spaces
	                              * around items trimmed, "" = empty);
	                              * NULL = none: STRING NULL, STRLIST empty,
	                              * INT/BOOL/ENUM only if FM_CFG_REQUIRED (0) */
	long long min, max;          /* FM_CFG_INT range, inclusive */
	const char *const *choices;  /* FM_CFG_ENUM: NULL-terminated names */
	size_t offset;               /* offsetof(target struct, field) */
	unsigned flags;              /* FM_CFG_REQUIRED */
	const char *unit;            /* e.g. "bytes", "ms"; NULL if none */
	const char *help;            /* one sentence for docs and --print-config */
};

/* Check the table and apply every default to target (see "Ownership").
 * Returns FLEETMQ_OK, FLEETMQ_ERR_BAD_REQUEST (table or target NULL),
 * FLEETMQ_ERR_CONFIG (bad table or default) or FLEETMQ_ERR_NOMEM. */
int fleetmq_cfg_defaults(const struct fleetmq_cfg_option *table, size_t n, void *target);

/* Parse YAML file `path` into target (defaults applied first, then the
 * file's values). On error returns non-zero and, if err != NULL and
 * errlen > 0, writes a NUL-terminated message (see "Errors"; truncated to
 * errlen) into err; on success err holds "".
 * Returns FLEETMQ_OK, FLEETMQ_ERR_BAD_REQUEST (table, target or path NULL),
 * FLEETMQ_ERR_IO (cannot open or read; larger than 16 MiB),
 * FLEETMQ_ERR_CONFIG (syntax or validation error) or FLEETMQ_ERR_NOMEM. */
int fleetmq_cfg_load_file(const struct fleetmq_cfg_option *table, size_t n, void *target,
		const char *path, char *err, size_t errlen);

/* Same, from buf[0..len) (need not be NUL-terminated; buf may be NULL if
 * len == 0). `name` is used in error messages (NULL: "<buffer>"). buf is
 * only read during the call. Returns as fleetmq_cfg_load_file(), never
 * FLEETMQ_ERR_IO. */
int fleetmq_cfg_load_buffer(const struct fleetmq_cfg_option *table, size_t n, void *target,
		const char *buf, size_t len, const char *name, char *err, size_t errlen);

/* Print the effective configuration held by target as YAML: dotted keys
 * nested back into mappings (table order, keys sharing a prefix grouped at
 * the first one), each key preceded by "# help" comment lines plus a line
 * for required / range / unit / choices. Strings are double-quoted with
 * escapes (NULL prints as ~), lists as flow sequences ["a", "b"]. The
 * output loads back with fleetmq_cfg_load_buffer() to the same values
 * (strings must be valid UTF-8, which every loaded value is).
 * Does nothing if table, target or out is NULL. */
void fleetmq_cfg_print(const struct fleetmq_cfg_option *table, size_t n, const void *target, FILE *out);

/* Print the table as a Markdown table with the columns
 * | key | type | default | range / choices | description |
 * (the unit follows the type, "integer (ms)"; required keys say so in the
 * default and description columns). Does nothing if table or out is NULL. */
void fleetmq_cfg_print_markdown(const struct fleetmq_cfg_option *table, size_t n, FILE *out);

/* Free the strings and lists held by target and reset them (NULL / empty),
 * so calling it twice is harmless. NULL table or target: no-op. */
void fleetmq_cfg_free(const struct fleetmq_cfg_option *table, size_t n, void *target);

/* True if list contains s (exact, byte-wise). False if l or s is NULL. */
bool fleetmq_strlist_contains(const struct fleetmq_strlist *l, const char *s);

#endif
