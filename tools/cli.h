/*
 * cli.h - private header of the fleetmq operator command line.
 *
 * The CLI is one binary, `fleetmq <noun> <verb>`, split by noun:
 *
 *   fleetmq.c        main(): option table, argument parsing, command table,
 *                    --help, dispatch
 *   cli_config.c     effective settings: flags > environment > --config
 *                    file (YAML, common/fleetmq_config.h) > table defaults
 *   cli_session.c    MQTT v5 session (libmosquitto network thread, TLS,
 *                    password), the operator API call on $CONTROL/fleetmq/v1
 *                    and the protobuf request/response exchange on fleet
 *                    topics
 *   cli_output.c     JSON printing, tables, times, sizes, progress bars
 *   cli_files.c      reading files, atomic writes (tmp + fsync + rename)
 *   cli_devices.c    devices list | show | presence
 *   cli_shadow.c     shadow get | set-desired
 *   cli_jobs.c       jobs create | list | show | cancel | watch
 *   cli_artifacts.c  artifacts add | list, keys generate | sign | verify | id
 *   cli_audit.c      audit
 *
 * Conventions: every command function takes the resolved settings and the
 * parsed arguments, prints its result on stdout (one JSON document with
 * --json), its errors on stderr prefixed "fleetmq: ", and returns one of
 * the CLI_EXIT_* codes below. Memory comes from fm_malloc & co.
 */
#ifndef FLEETMQ_CLI_H
#define FLEETMQ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

/* ================================================================
 * Exit status (documented in docs/CLI.md; never renumber)
 * ================================================================ */

#define CLI_EXIT_OK 0
#define CLI_EXIT_REFUSED 1        /* the plugin refused or failed the operation (FORBIDDEN, NOT_FOUND, ...) */
#define CLI_EXIT_USAGE 2          /* bad command line (unknown option, bad value, invalid JSON argument) */
#define CLI_EXIT_UNREACHABLE 3    /* broker unreachable, connection lost, no answer in time; watch time limit */
#define CLI_EXIT_LOCAL 4          /* local file or key error (unreadable, invalid, signature mismatch) */
#define CLI_EXIT_JOB_FAILED 5     /* jobs watch: the job was canceled/aborted or an execution did not succeed */

#define CLI_MAX_ID_BYTES 128      /* device ids, job ids, group names, artifact names */
#define CLI_MAX_TOPIC_BYTES 600

/* ================================================================
 * Options and arguments (fleetmq.c)
 * ================================================================ */

enum cli_opt {
	/* global */
	OPT_HOST, OPT_PORT, OPT_USERNAME, OPT_PASSWORD, OPT_CLIENT_ID, OPT_TLS_CA, OPT_TLS_CERT, OPT_TLS_KEY,
	OPT_TIMEOUT_MS, OPT_JSON, OPT_CONFIG, OPT_PREFIX, OPT_HELP,
	/* per command */
	OPT_EXPECTED_VERSION, OPT_GROUP, OPT_LIMIT, OPT_STATUS,
	OPT_ID, OPT_TYPE, OPT_DOCUMENT, OPT_DOCUMENT_FILE, OPT_FILE, OPT_DESCRIPTION, OPT_DEVICES, OPT_GROUPS,
	OPT_MATCH, OPT_ALL, OPT_CONTINUOUS, OPT_CANARY_COUNT, OPT_CANARY_PERCENT, OPT_CANARY_GROUP,
	OPT_CANARY_SUCCESS_PERCENT, OPT_MAX_PER_MINUTE, OPT_RAMP_BASE, OPT_RAMP_FACTOR_PERCENT,
	OPT_RAMP_STEP_SUCCESSES, OPT_ABORT, OPT_EXEC_TIMEOUT_MS, OPT_RETRY_FAILED, OPT_RETRY_TIMED_OUT,
	OPT_RETRY_BACKOFF_MS, OPT_ARTIFACT, OPT_ARTIFACTS_DIR, OPT_WATCH, OPT_DRY_RUN,
	OPT_EXECUTIONS, OPT_FORCE, OPT_REMOVE, OPT_REASON, OPT_INTERVAL_MS, OPT_UNTIL_TIMEOUT,
	OPT_NAME, OPT_VERSION, OPT_DEVICE_TYPES, OPT_HW_REVISIONS, OPT_CRITICAL, OPT_ALLOW_DOWNGRADE, OPT_KEY,
	OPT_PAYLOAD, OPT_ACTOR, OPT_TARGET, OPT_SINCE,
	OPT_COUNT
};

/* Parsed command line: positional arguments after <noun> <verb>, and every
 * value of every option in command-line order (pointers into argv). */
struct cli_args {
	char **pos;
	int npos;
	const char **vals[OPT_COUNT];
	int nvals[OPT_COUNT];
};

/* Last value of opt, or NULL if not given. */
const char *cli_opt(const struct cli_args *a, int opt);
/* True if opt was given at least once. */
bool cli_flag(const struct cli_args *a, int opt);
/* Long name of opt ("--max-per-minute"), for messages. */
const char *cli_opt_name(int opt);
/* Parse the last value of opt as an integer in [min, max] into *out.
 * Absent: *out untouched, *given (may be NULL) false, CLI_EXIT_OK.
 * Invalid: message on stderr, CLI_EXIT_USAGE. */
int cli_opt_uint(const struct cli_args *a, int opt, uint64_t min, uint64_t max, uint64_t *out, bool *given);

/* ================================================================
 * Settings (cli_config.c)
 * ================================================================ */

struct cli_globals {
	const char *host;
	int port;
	const char *username;
	const char *password;        /* NULL = none */
	const char *client_id;
	const char *tls_ca;          /* any TLS setting switches TLS on */
	const char *tls_cert;
	const char *tls_key;
	long timeout_ms;
	bool json;
	const char *prefix;
	const char *artifacts_dir;   /* NULL = not configured */
	const char *signing_key;     /* NULL = not configured */
	const char *config_path;     /* NULL = no file */
	bool tls;
	char client_id_buf[64];
	void *file_cfg;              /* owned: the loaded configuration struct */
};

/* Resolve every setting from the flags in a, the environment and the
 * configuration file (--config or FLEETMQ_CONFIG). Returns CLI_EXIT_OK,
 * CLI_EXIT_USAGE (bad flag / environment value) or CLI_EXIT_LOCAL (bad
 * file); the message is printed. Free with cli_globals_free(). */
int cli_globals_resolve(struct cli_globals *g, const struct cli_args *a);
void cli_globals_free(struct cli_globals *g);

/* ================================================================
 * Helpers shared by commands (fleetmq.c)
 * ================================================================ */

uint64_t cli_now_ms(void);            /* CLOCK_REALTIME, ms since the epoch */
uint64_t cli_mono_ms(void);           /* CLOCK_MONOTONIC */
void cli_sleep_ms(long ms);
bool cli_parse_u64(const char *s, uint64_t *out);
/* Valid id: 1..128 bytes, no '/', '+', '#' or control characters. */
bool cli_id_valid(const char *id);
/* Same, printing "fleetmq: invalid <what> '<id>': ..." when not. */
bool cli_check_id(const char *what, const char *id);
/* Random token "<prefix>-<16 hex>" into buf. */
void cli_make_token(const char *prefix, char *buf, size_t len);
/* Split "a,b,c" (repeated options add up) into a new JSON array of
 * strings; empty items are refused. Checks each with cli_check_id when
 * ids is true. NULL (message printed) on error. */
cJSON *cli_split_list(const struct cli_args *a, int opt, bool ids);
/* Out-of-memory message; returns CLI_EXIT_LOCAL. */
int cli_oom(void);

/* ================================================================
 * Session (cli_session.c)
 * ================================================================ */

struct cli_session;

/* Connect to the broker (TLS and password as configured) and wait for a
 * successful CONNACK within g->timeout_ms. On success *out is a new
 * session (free with cli_session_close). Returns CLI_EXIT_OK,
 * CLI_EXIT_UNREACHABLE (message printed), CLI_EXIT_REFUSED (the broker
 * refused the login: bad username/password, not authorised) or
 * CLI_EXIT_LOCAL (TLS files). */
int cli_session_open(const struct cli_globals *g, struct cli_session **out);
/* Disconnect and free. NULL is harmless. */
void cli_session_close(struct cli_session *s);
/* Silence (true) or restore the session's own messages about connection
 * problems; refusals by the plugin are always printed. */
void cli_session_set_quiet(bool quiet);
/* Restart the session deadline: the next wait may last g->timeout_ms. */
void cli_session_rearm(struct cli_session *s);

/* Send the JSON array `commands` (borrowed) to $CONTROL/fleetmq/v1 with a
 * private response topic and correlation data, wait for the answer and
 * return it in *root ({"responses":[...]}, caller cJSON_Delete's it).
 * Returns CLI_EXIT_OK, CLI_EXIT_UNREACHABLE (timeout, connection lost),
 * CLI_EXIT_REFUSED (the broker's access control refused the request or the
 * response subscription; message printed). */
int cli_control_call(struct cli_session *s, const cJSON *commands, cJSON **root);

/* Page through a list command of the operator API: send `command` with
 * "limit" (at most page_max) plus the members of `extra` (borrowed, may be
 * NULL) and, from the second page on, <cursor_req> = the previous
 * response's <cursor_resp>; append (copies of) data.<array_key> items to
 * `all` until it holds `limit` items, a page comes back empty or there is no
 * next cursor. `what` names the command in error messages. *more (may be
 * NULL) tells whether the server had a next page when collection stopped.
 * Returns CLI_EXIT_OK or the error of the failing call. */
int cli_collect_pages(struct cli_session *s, const char *command, const char *what, const cJSON *extra,
		const char *cursor_req, const char *cursor_resp, const char *array_key,
		uint64_t page_max, uint64_t limit, cJSON *all, bool *more_out);

/* Check response i of root: returns its "data" (borrowed; an empty object
 * is returned as is) or NULL after printing "fleetmq: <what>: <error>" (with
 * hints for FORBIDDEN) and setting *rc = CLI_EXIT_REFUSED. code_out (may be
 * NULL) receives the error code name ("NOT_FOUND") or "". */
const cJSON *cli_response_data(const cJSON *root, int i, const char *what, int *rc, const char **code_out);

/* One command: open a session, call, close, check response 0. On
 * CLI_EXIT_OK *root owns the response and *data points into it. cmd is
 * borrowed. */
int cli_control_one(const struct cli_globals *g, const cJSON *cmd, const char *what, cJSON **root,
		const cJSON **data);

/* Wait for the retained messages of filters (QoS 0 subscribe + a sentinel
 * subscribe); on_message is called for each (topic, payload). Used by
 * `devices presence`. Returns an exit status. */
typedef void (*cli_retained_fn)(void *ctx, const char *topic, const void *payload, int len);
int cli_session_read_retained(struct cli_session *s, char *const *filters, int count, cli_retained_fn fn,
		void *ctx);

/* ================================================================
 * Output (cli_output.c)
 * ================================================================ */

void cli_print_json(const cJSON *v);                   /* one line, stdout */
void cli_print_json_pretty(FILE *out, const cJSON *v, int indent);
/* "42s ago", "3m 5s ago", ..., "-" for 0. */
void cli_format_age(char *buf, size_t len, uint64_t then_ms, uint64_t now_ms);
/* "2024-06-01 12:00:03Z" (UTC), "-" for 0. */
void cli_format_time(char *buf, size_t len, uint64_t ms);
/* "1.5 MiB", "512 B". */
void cli_format_bytes(char *buf, size_t len, uint64_t n);
/* "[#####.....]" of width cells (plus brackets) for part/total. */
void cli_format_bar(char *buf, size_t len, uint64_t part, uint64_t total, int width);
/* JSON helpers: member as string ("" if absent), as number (dflt). */
const char *cli_jstr(const cJSON *o, const char *key);
double cli_jnum(const cJSON *o, const char *key, double dflt);
uint64_t cli_ju64(const cJSON *o, const char *key);
/* "a, b" from an array of strings, "k=v, k2=v2" from an object of strings,
 * "-" when empty. */
void cli_format_strings(char *buf, size_t len, const cJSON *v);
/* Table of job executions (listJobExecutions entries); first_col "JOB"
 * shows their job ids, anything else their device ids. */
void cli_print_executions(const cJSON *execs, const char *first_col);

/* A text table: add rows of ncols strings (copied), print with columns
 * padded to their widest cell; the last column is not padded. */
struct cli_table;
struct cli_table *cli_table_new(int ncols, const char *const *headers);
int cli_table_add(struct cli_table *t, const char *const *cells);   /* 0 or -1 (no memory) */
void cli_table_print(const struct cli_table *t, FILE *out);
void cli_table_free(struct cli_table *t);

/* ================================================================
 * Files (cli_files.c)
 * ================================================================ */

/* Read the whole file (at most max_bytes) into a new NUL-terminated buffer.
 * Returns CLI_EXIT_OK or CLI_EXIT_LOCAL (message "fleetmq: <what> <path>:
 * <reason>" printed). */
int cli_read_file(const char *path, const char *what, size_t max_bytes, char **out, size_t *len);
/* Read and parse a JSON file; must be an object when want_object. */
int cli_read_json_file(const char *path, const char *what, bool want_object, cJSON **out);
/* Parse JSON text from the command line (option opt_name); errors are usage
 * errors (CLI_EXIT_USAGE), with the position of the syntax error. */
int cli_parse_json_arg(const char *text, const char *opt_name, bool want_object, cJSON **out);
/* Atomically replace path with data: <path>.tmp.<pid>, fsync, rename,
 * fsync the directory. mode is the new file's mode. Returns CLI_EXIT_OK or
 * CLI_EXIT_LOCAL (message printed). */
int cli_write_atomic(const char *path, const void *data, size_t len, int mode);
/* Copy src into dst_tmp (created exclusively, mode 0644) and fsync it. */
int cli_copy_to_tmp(const char *src, const char *dst_tmp);
/* fsync the directory holding path. */
int cli_fsync_dir_of(const char *path);

/* ================================================================
 * Commands
 * ================================================================ */

int cmd_devices_list(const struct cli_globals *g, const struct cli_args *a);
int cmd_devices_show(const struct cli_globals *g, const struct cli_args *a);
int cmd_devices_presence(const struct cli_globals *g, const struct cli_args *a);
int cmd_shadow_get(const struct cli_globals *g, const struct cli_args *a);
int cmd_shadow_set_desired(const struct cli_globals *g, const struct cli_args *a);
int cmd_jobs_create(const struct cli_globals *g, const struct cli_args *a);
int cmd_jobs_list(const struct cli_globals *g, const struct cli_args *a);
int cmd_jobs_show(const struct cli_globals *g, const struct cli_args *a);
int cmd_jobs_cancel(const struct cli_globals *g, const struct cli_args *a);
int cmd_jobs_watch(const struct cli_globals *g, const struct cli_args *a);
int cmd_artifacts_add(const struct cli_globals *g, const struct cli_args *a);
int cmd_artifacts_list(const struct cli_globals *g, const struct cli_args *a);
int cmd_keys_generate(const struct cli_globals *g, const struct cli_args *a);
int cmd_keys_sign(const struct cli_globals *g, const struct cli_args *a);
int cmd_keys_verify(const struct cli_globals *g, const struct cli_args *a);
int cmd_keys_id(const struct cli_globals *g, const struct cli_args *a);
int cmd_audit(const struct cli_globals *g, const struct cli_args *a);

#endif
